"""Test helpers for real alsa-lib without a sound card (its ``file`` plugin over ``null``)."""
