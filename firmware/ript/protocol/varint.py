"""QUIC variable-length integers (RFC 9000 §16), the length unit of media chunks.

The two most significant bits of the first byte give the length (00: 1 byte,
01: 2, 10: 4, 11: 8); the remaining 6, 14, 30 or 62 bits hold the value, big
endian.  :func:`encode_varint` always picks the shortest form;
:func:`decode_varint` also accepts longer forms, as RFC 9000 allows.
"""

from __future__ import annotations

from ript.protocol.errors import LocalProtocolError, RemoteProtocolError

Buffer = bytes | bytearray | memoryview
"""What the parsers of the media modules accept: any byte buffer, sliced without copying."""

VARINT_MAX = (1 << 62) - 1

_VALUE_MASKS = (0x3F, 0x3FFF, 0x3FFF_FFFF, 0x3FFF_FFFF_FFFF_FFFF)


class VarintError(RemoteProtocolError):
    """Bytes received from the peer do not hold a complete varint."""


class VarintRangeError(LocalProtocolError):
    """This side asked to encode a number a varint cannot hold."""


def varint_size(value: int) -> int:
    """Number of bytes :func:`encode_varint` uses for ``value``."""
    if value < 0x40:
        return 1
    if value < 0x4000:
        return 2
    if value < 0x4000_0000:
        return 4
    return 8


def encode_varint(value: int) -> bytes:
    """Shortest encoding of ``value`` (0 .. 2^62-1); raise :class:`VarintRangeError` otherwise."""
    if value < 0 or value > VARINT_MAX:
        raise VarintRangeError(f"varint value {value} is outside 0 .. 2^62-1")
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return (value | 0x4000).to_bytes(2, "big")
    if value < 0x4000_0000:
        return (value | 0x8000_0000).to_bytes(4, "big")
    return (value | 0xC000_0000_0000_0000).to_bytes(8, "big")


def decode_varint(buf: Buffer, offset: int = 0) -> tuple[int, int]:
    """Read one varint at ``offset``; return ``(value, offset just after it)``.

    Raises :class:`VarintError` when ``buf`` ends before the varint does.
    """
    size = len(buf)
    if offset < 0 or offset >= size:
        raise VarintError(f"varint expected at offset {offset}, but the data ends at {size}")
    first = buf[offset]
    prefix = first >> 6
    if prefix == 0:
        return first, offset + 1
    end = offset + (1 << prefix)
    if end > size:
        raise VarintError(
            f"varint at offset {offset} needs {1 << prefix} bytes, only {size - offset} remain"
        )
    return int.from_bytes(buf[offset:end], "big") & _VALUE_MASKS[prefix], end
