"""Sans-IO RIPT protocol core: bytes and a clock in, events and actions out."""
