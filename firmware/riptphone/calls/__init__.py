"""The phone's calls: runners, media sessions, and the registry joining them to the machine."""
