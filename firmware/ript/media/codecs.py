"""The one codec table both programs use: name, payload type, clock rate, frames, coders.

A media session (the phone's, or the provider's far end) looks a codec up by
the name a directive gives it (:func:`find`) or by the payload type of a chunk
(:func:`by_payload_type`), and builds its coders from the entry.  Codecs that
carry no audio of their own (``telephone-event``, ``CN``) have no coders.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from ript.media.g711 import alaw_decoder, alaw_encode, ulaw_decoder, ulaw_encode
from ript.media.plc import PitchRepeat
from ript.protocol.chunks import PayloadType

FRAME_MS = 20
"""The packetisation both programs use unless a directive says otherwise (ptime 20)."""


class Encoder(Protocol):
    def encode(self, pcm: bytes) -> bytes:
        """One frame of 16-bit little-endian mono PCM in, one payload out."""
        ...


class Decoder(Protocol):
    def decode(self, payload: bytes) -> bytes:
        """One payload in, one frame of PCM out (ValueError when it does not decode)."""
        ...

    def conceal(self) -> bytes:
        """One frame standing in for a lost payload."""
        ...

    def set_gain(self, gain_db: float) -> None:
        """Playback volume, folded into the decoder so it costs nothing per frame."""
        ...


@dataclass(frozen=True, slots=True)
class CodecSpec:
    """One entry of the table; ``new_encoder``/``new_decoder`` take the frame length in ms."""

    name: str
    payload_type: PayloadType
    clock_rate: int
    frame_ms: tuple[int, ...]
    new_encoder: Callable[[int], Encoder] | None = None
    new_decoder: Callable[[int], Decoder] | None = None

    @property
    def audio(self) -> bool:
        """True when the phone can send and play this codec."""
        return self.new_encoder is not None and self.new_decoder is not None

    def frame_bytes(self, frame_ms: int = FRAME_MS) -> int:
        """Bytes of one frame of 16-bit PCM at the codec's rate."""
        return 2 * self.clock_rate * frame_ms // 1000


class _G711Encoder:
    __slots__ = ("encode",)

    def __init__(self, encode: Callable[[bytes], bytes]) -> None:
        self.encode = encode


class _G711Decoder:
    """G.711 with the volume folded into its tables; a lost frame is concealed by
    :class:`~ript.media.plc.PitchRepeat` (the last pitch period repeated, fading out)."""

    __slots__ = ("_make", "_plc", "_table")

    def __init__(self, make: Callable[[float], Callable[[bytes], bytes]], frame_ms: int) -> None:
        self._make = make
        self._plc = PitchRepeat(8000, 8 * frame_ms)
        self._table = make(0.0)

    def decode(self, payload: bytes) -> bytes:
        pcm = self._table(payload)
        self._plc.good(pcm)
        return pcm

    def conceal(self) -> bytes:
        return self._plc.conceal()

    def set_gain(self, gain_db: float) -> None:
        self._table = self._make(gain_db)


def _opus_encoder(frame_ms: int) -> Encoder:
    from ript.media.opus_codec import OpusEncoder  # noqa: PLC0415 - libopus loads on first use

    return OpusEncoder(48000, frame_ms=frame_ms)


def _opus_decoder(frame_ms: int) -> Decoder:
    from ript.media.opus_codec import OpusDecoder  # noqa: PLC0415 - libopus loads on first use

    return OpusDecoder(48000, frame_ms=frame_ms)


_G711_FRAMES = (10, 20, 30, 40, 60)
CODECS: Mapping[str, CodecSpec] = {
    codec.name.lower(): codec
    for codec in (
        CodecSpec("opus", PayloadType.OPUS, 48000, (10, 20, 40, 60), _opus_encoder, _opus_decoder),
        CodecSpec(
            "PCMU",
            PayloadType.PCMU,
            8000,
            _G711_FRAMES,
            lambda _ms: _G711Encoder(ulaw_encode),
            lambda ms: _G711Decoder(ulaw_decoder, ms),
        ),
        CodecSpec(
            "PCMA",
            PayloadType.PCMA,
            8000,
            _G711_FRAMES,
            lambda _ms: _G711Encoder(alaw_encode),
            lambda ms: _G711Decoder(alaw_decoder, ms),
        ),
        CodecSpec("telephone-event", PayloadType.TELEPHONE_EVENT, 8000, _G711_FRAMES),
        CodecSpec("CN", PayloadType.CN, 8000, _G711_FRAMES),
    )
}
"""Every codec this implementation knows, by lower-case name."""

_BY_PAYLOAD_TYPE: dict[int, CodecSpec] = {int(c.payload_type): c for c in CODECS.values()}


def find(name: str) -> CodecSpec | None:
    """The codec a directive or advertisement names (any case), or None."""
    return CODECS.get(name.lower())


def by_payload_type(payload_type: int) -> CodecSpec | None:
    """The codec of a chunk's payload type, or None."""
    return _BY_PAYLOAD_TYPE.get(int(payload_type))


def audio_codecs() -> tuple[CodecSpec, ...]:
    """The codecs that carry audio (both directions), in the table's order of preference."""
    return tuple(codec for codec in CODECS.values() if codec.audio)
