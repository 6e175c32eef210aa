"""What a call's media is coded with: the advertisement, the directive's codec, the coders.

The phone's advertisement comes from ``[audio] codecs`` (order = preference),
kept to the codecs this engine carries, with ``ptime`` at the configured
packetisation, then ``telephone-event`` and ``CN``.  :func:`choose` reads the
client directive the provider chose and gives the :class:`MediaPlan`: which
stream and codec to send, the ptime (the largest the phone supports within the
configuration and the directive's bound), and whether RFC 4733 events and
RFC 3389 comfort noise may be sent.  :class:`CallCodec` holds both
directions' coders for that plan.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ript.media import codecs
from ript.media.codecs import Decoder
from ript.protocol.advertisement import (
    Advertisement,
    Codec,
    GrammarError,
    MediaPort,
    PortDirection,
    parse_directive,
)
from ript.protocol.chunks import PayloadType
from riptphone.config import AudioConfig

CARRIED = ("opus", "pcmu", "pcma")
"""The audio codecs of :mod:`ript.media.codecs` the phone sends and plays (lower-case)."""
PTIMES = (10, 20, 40, 60)
"""Packetisations both G.711 and Opus (RFC 6716 frame sizes) support here."""
EVENTS = ("telephone-event", "CN")
"""Carried alongside the audio codec when the directive names them."""
DEFAULT_PTIME = 30
"""The ``ptime`` bound of a codec entry that leaves it out (docs/protocol.md section 4)."""

PI_COMPLEXITY = 3
"""Opus complexity on an ARM board (a Raspberry Pi): docs/daemon.md gives the figures."""
DESKTOP_COMPLEXITY = 9


class MediaError(Exception):
    """The session cannot start: a directive or key it cannot use."""


def board_complexity(machine: str | None = None, cpuinfo: str | None = None) -> int:
    """The Opus complexity ``auto`` stands for on this board.

    An ARM machine (``aarch64``, ``armv7l``...) or a ``/proc/cpuinfo`` naming a
    Raspberry Pi gets :data:`PI_COMPLEXITY`: the encoder then costs about a
    third of complexity 9 for a small loss in quality at voice bit rates.
    """
    machine = platform.machine() if machine is None else machine
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    if machine.lower().startswith(("aarch64", "arm")) or "raspberry pi" in cpuinfo.lower():
        return PI_COMPLEXITY
    return DESKTOP_COMPLEXITY


@functools.cache
def _this_board() -> int:
    """:func:`board_complexity` of the machine we run on, read once (not at every call)."""
    return board_complexity()


@dataclass(frozen=True, slots=True)
class CodecSettings:
    """The ``[audio]`` keys that shape a call's media (docs/daemon.md)."""

    codecs: tuple[str, ...] = ("opus", "PCMU", "PCMA")
    ptime: int = 20
    opus_bitrate: int = 24000
    opus_complexity: int = DESKTOP_COMPLEXITY
    opus_fec: bool = True
    jitter_max_ms: int = 200


def codec_settings(audio: AudioConfig) -> CodecSettings:
    """The call settings of the ``[audio]`` section, ``opus_complexity = "auto"`` resolved."""
    complexity = audio.opus_complexity
    return CodecSettings(
        codecs=tuple(audio.codecs),
        ptime=audio.ptime,
        opus_bitrate=audio.opus_bitrate,
        opus_complexity=_this_board() if isinstance(complexity, str) else complexity,
        opus_fec=audio.opus_fec,
        jitter_max_ms=audio.jitter_max_ms,
    )


def advertised_codecs(configured: Sequence[str]) -> tuple[str, ...]:
    """The configured codecs the engine carries, in their order, then the event codecs."""
    audio = tuple(name for name in configured if name.lower() in CARRIED)
    return (*audio, *EVENTS)


def configured_advertisement(settings: CodecSettings) -> Advertisement:
    """One audio sink and one audio source offering :func:`advertised_codecs`.

    The audio codecs carry ``ptime`` at the configured value (the grammar's
    default, 30, is left out by the canonical form), so the provider's
    directive never asks for longer chunks than the phone is set to send.
    """
    entries = tuple(
        Codec(name, None if name in EVENTS else {"ptime": settings.ptime})
        for name in advertised_codecs(settings.codecs)
    )
    return Advertisement(
        (MediaPort(1, PortDirection.IN, entries), MediaPort(1, PortDirection.OUT, entries))
    )


@dataclass(frozen=True, slots=True)
class MediaPlan:
    """What the phone sends on a call: from which source to which sink, how."""

    source: int
    sink: int
    codec: str
    ptime: int
    telephone_event: bool
    comfort_noise: bool


def choose(directive_text: str | None, ptime: int = 20) -> MediaPlan:
    """The first stream of the client directive with a codec the phone carries.

    ``ptime`` is the configured packetisation; the plan's is the largest of
    :data:`PTIMES` within both it and the directive's bound.
    """
    if not directive_text:
        raise MediaError("the call has no client directive: nothing to send")
    try:
        directive = parse_directive(directive_text)
    except GrammarError as exc:
        raise MediaError(f"the client directive is unreadable: {exc}") from exc
    for stream in directive.streams:
        names = {codec.name.lower() for codec in stream.codecs}
        for codec in stream.codecs:
            if codec.name.lower() not in CARRIED:
                continue
            bound = min(ptime, codec.value("ptime") or DEFAULT_PTIME)
            fitting = [p for p in PTIMES if p <= bound]
            if not fitting:
                raise MediaError(f"the client directive asks for ptime {bound}, below 10 ms")
            return MediaPlan(
                stream.source,
                stream.sink,
                codec.name.lower(),
                fitting[-1],
                "telephone-event" in names,
                "cn" in names,
            )
    raise MediaError(
        f"the client directive {directive_text!r} names no stream in {', '.join(CARRIED)}"
    )


class CallCodec:
    """The session's audio codec (:mod:`ript.media.codecs`) with both directions' coders."""

    def __init__(self, name: str, frame_ms: int, settings: CodecSettings | None = None) -> None:
        codec = codecs.find(name)
        if codec is None or codec.new_encoder is None or codec.new_decoder is None:
            raise MediaError(f"the client directive asks for {name}, which the phone cannot send")
        settings = settings or CodecSettings()
        self._expect_loss: Callable[[int], None] | None = None
        self.name = codec.name.lower()
        self.payload_type: PayloadType = codec.payload_type
        self.rate = codec.clock_rate
        self.frame_ms = frame_ms
        self.silence = bytes(codec.frame_bytes(frame_ms))
        if codec.payload_type is PayloadType.OPUS:
            from ript.media.opus_codec import OpusEncoder  # noqa: PLC0415 - libopus on first use

            encoder = OpusEncoder(
                codec.clock_rate,
                settings.opus_bitrate,
                fec=settings.opus_fec,
                # No loss expected until the path shows some (expect_loss): in-band FEC
                # costs bits and CPU for nothing on a clean path (ript.media.loss_hint).
                expected_loss_pct=0,
                dtx=True,
                complexity=settings.opus_complexity,
                frame_ms=frame_ms,
            )
            self.encode = encoder.encode
            if settings.opus_fec:
                self._expect_loss = encoder.set_packet_loss
        else:
            self.encode = codec.new_encoder(frame_ms).encode
        self._decoder: Decoder = codec.new_decoder(frame_ms)
        self.decode = self._decoder.decode
        self.conceal = self._decoder.conceal

    @property
    def adapts_to_loss(self) -> bool:
        """Whether :meth:`expect_loss` does anything: Opus with ``opus_fec`` on."""
        return self._expect_loss is not None

    def expect_loss(self, pct: int) -> None:
        """Tell the encoder the path's loss (per cent): with any, Opus adds in-band FEC."""
        if self._expect_loss is not None:
            self._expect_loss(pct)

    def recover(self, next_payload: bytes) -> bytes:
        """A lost frame rebuilt from the next payload (Opus in-band FEC), else concealed."""
        fec = getattr(self._decoder, "decode_fec", None)
        if fec is None:
            return self._decoder.conceal()
        pcm: bytes = fec(next_payload)
        return pcm

    def set_gain(self, gain_db: float) -> None:
        """Playback volume: folded into the decoder, so it costs nothing per frame."""
        self._decoder.set_gain(gain_db)
        # G.711's decoder swaps its table function: pick the new one up.
        self.decode = self._decoder.decode
