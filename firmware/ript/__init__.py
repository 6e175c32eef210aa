"""What the phone and the provider share: the sans-IO RIPT core, the codecs, small utilities.

Imports neither :mod:`riptphone` nor :mod:`riptprovider` (tests/unit/test_layers.py).
"""
