"""Hardware behind small interfaces: audio (ALSA), hook switch, keypad, buttons, OLED, tones.

Each adapter reports :mod:`riptphone.hw.events` values from its own thread;
:mod:`riptphone.handset` builds them from ``[hardware]`` and posts into the loop.
"""
