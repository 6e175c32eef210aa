"""G.711 μ-law (PCMU) and A-law (PCMA) for 16-bit signed little-endian mono PCM.

The quantisers follow ITU-T G.711 (11/88), tables 1a/1b (μ-law) and 2a/2b
(A-law), in the widely used form of Sun Microsystems' public-domain ``g711.c``:
μ-law works on the top 14 bits with a bias of 33 (132 at 16-bit scale), A-law on
the top 13 bits, and A-law code words have their even bits inverted (XOR 0x55).

Encoding is one lookup per sample in a 64 KiB table indexed by the sample's
unsigned 16-bit pattern (``bytes(map(table.__getitem__, samples))``); decoding
is two ``bytes.translate`` calls (code → low byte, code → high byte) interleaved
by slice assignment, all in C.  Both tables are built once at
import.  Malformed input (an odd number of PCM bytes) raises :class:`G711Error`.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable

__all__ = [
    "G711Error",
    "alaw_decode",
    "alaw_decode_sample",
    "alaw_decoder",
    "alaw_encode",
    "alaw_encode_sample",
    "ulaw_decode",
    "ulaw_decode_sample",
    "ulaw_decoder",
    "ulaw_encode",
    "ulaw_encode_sample",
]


class G711Error(ValueError):
    """PCM handed to a G.711 encoder is not whole 16-bit samples."""


_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159  # largest 14-bit magnitude μ-law can represent (8158 + 1)
_ULAW_SEG_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEG_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for seg, end in enumerate(ends):
        if value <= end:
            return seg
    return len(ends)


def ulaw_encode_sample(sample: int) -> int:
    """Return the μ-law code byte for one 16-bit signed sample (reference quantiser)."""
    value = sample >> 2  # μ-law is defined on 14-bit linear values
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = _segment(value, _ULAW_SEG_END)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((value >> (seg + 1)) & 0x0F)) ^ mask


def ulaw_decode_sample(code: int) -> int:
    """Return the 16-bit signed sample for one μ-law code byte."""
    code = ~code & 0xFF
    t = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return _ULAW_BIAS - t if code & 0x80 else t - _ULAW_BIAS


def alaw_encode_sample(sample: int) -> int:
    """Return the A-law code byte (even bits already inverted) for one 16-bit signed sample."""
    value = sample >> 3  # A-law is defined on 13-bit linear values
    if value >= 0:
        mask = 0xD5  # sign bit set for positive values, plus the even-bit inversion
    else:
        mask = 0x55
        value = -value - 1
    seg = _segment(value, _ALAW_SEG_END)
    if seg >= 8:
        return 0x7F ^ mask
    quant = (value >> 1) if seg < 2 else (value >> seg)
    return ((seg << 4) | (quant & 0x0F)) ^ mask


def alaw_decode_sample(code: int) -> int:
    """Return the 16-bit signed sample for one A-law code byte."""
    code ^= 0x55
    t = (code & 0x0F) << 4
    seg = (code & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if code & 0x80 else -t


def _encode_table(quantise: Callable[[int], int]) -> bytes:
    # Index = the sample's unsigned 16-bit pattern, so 0x8000..0xFFFF are the negatives.
    return bytes(quantise(i - 0x10000 if i & 0x8000 else i) for i in range(0x10000))


def _decode_tables(expand: Callable[[int], int]) -> tuple[bytes, bytes]:
    """Two ``bytes.translate`` tables: code → low byte and code → high byte of the sample."""
    pairs = [expand(code).to_bytes(2, "little", signed=True) for code in range(256)]
    return bytes(p[0] for p in pairs), bytes(p[1] for p in pairs)


_ULAW_ENC = _encode_table(ulaw_encode_sample)
_ALAW_ENC = _encode_table(alaw_encode_sample)
_ULAW_DEC = _decode_tables(ulaw_decode_sample)
_ALAW_DEC = _decode_tables(alaw_decode_sample)
_BIG_ENDIAN = sys.byteorder == "big"


def _samples(pcm: bytes) -> array[int]:
    if len(pcm) % 2:
        raise G711Error(f"PCM must be whole 16-bit samples, got an odd length of {len(pcm)} bytes")
    samples = array("H", pcm)
    if _BIG_ENDIAN:
        samples.byteswap()
    return samples


def ulaw_encode(pcm: bytes) -> bytes:
    """Encode 16-bit little-endian PCM to μ-law, one byte per sample."""
    return bytes(map(_ULAW_ENC.__getitem__, _samples(pcm)))


def alaw_encode(pcm: bytes) -> bytes:
    """Encode 16-bit little-endian PCM to A-law, one byte per sample."""
    return bytes(map(_ALAW_ENC.__getitem__, _samples(pcm)))


def _expand(payload: bytes, tables: tuple[bytes, bytes]) -> bytes:
    # Two C-speed translations interleaved by slice assignment: no per-sample Python work.
    out = bytearray(2 * len(payload))
    out[0::2] = payload.translate(tables[0])
    out[1::2] = payload.translate(tables[1])
    return bytes(out)


def ulaw_decode(payload: bytes) -> bytes:
    """Decode μ-law (any length; every byte is a valid code) to 16-bit little-endian PCM."""
    return _expand(payload, _ULAW_DEC)


def alaw_decode(payload: bytes) -> bytes:
    """Decode A-law (any length; every byte is a valid code) to 16-bit little-endian PCM."""
    return _expand(payload, _ALAW_DEC)


def _scaled(expand: Callable[[int], int], gain: float) -> Callable[[int], int]:
    def scaled(code: int) -> int:
        return max(-32768, min(32767, round(expand(code) * gain)))

    return scaled


def ulaw_decoder(gain_db: float = 0.0) -> Callable[[bytes], bytes]:
    """A μ-law decoder whose output is ``gain_db`` louder (clipped at full scale).

    The gain is folded into the two 256-byte tables, so a volume control costs
    nothing per frame; build a new decoder when the volume changes.
    """
    if gain_db == 0.0:
        return ulaw_decode
    tables = _decode_tables(_scaled(ulaw_decode_sample, 10 ** (gain_db / 20)))
    return lambda payload: _expand(payload, tables)


def alaw_decoder(gain_db: float = 0.0) -> Callable[[bytes], bytes]:
    """An A-law decoder whose output is ``gain_db`` louder; see :func:`ulaw_decoder`."""
    if gain_db == 0.0:
        return alaw_decode
    tables = _decode_tables(_scaled(alaw_decode_sample, 10 ** (gain_db / 20)))
    return lambda payload: _expand(payload, tables)
