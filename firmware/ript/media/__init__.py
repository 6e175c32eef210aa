"""Media engine building blocks: codecs, tones, jitter buffer, DTMF, comfort noise, resampling.

Everything here is sans-IO and pure: 16-bit signed little-endian mono PCM in and
out, ``now`` passed in where time matters.  The 20 ms audio loop, ALSA and the
network live elsewhere.
"""
