"""Hardware behind small interfaces: audio (ALSA), and later hook, keypad and display."""
