"""A thin wrapper over libopus (through opuslib) for 20 ms mono voice frames.

Why opuslib: it is the maintained ctypes binding to the system's libopus
(Debian's ``libopus0``), needs no compiler on the Pi, and its per-frame cost is
the codec's own (~320 µs encode, ~60 µs decode at 48 kHz on x86).  Two of its
property setters are broken (``inband_fec`` and ``dtx`` send the wrong
request), so those controls are set with ``encoder_ctl`` directly.

:class:`OpusEncoder` takes exactly one frame of 16-bit little-endian PCM and
returns one packet; :class:`OpusDecoder` turns a packet back into one frame,
conceals a lost frame (libopus PLC) or rebuilds it from the next packet's
in-band FEC.  Wrong frame sizes and undecodable packets raise
:class:`OpusCodecError`.
"""

from __future__ import annotations

from typing import Any

import opuslib
import opuslib.api.ctl
import opuslib.api.decoder
import opuslib.api.encoder

__all__ = ["OpusCodecError", "OpusDecoder", "OpusEncoder"]

SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)
FRAME_LENGTHS_MS = (10, 20, 40, 60)
MAX_PACKET = 1275  # RFC 6716 section 3.2.1: the largest single-frame packet


class OpusCodecError(ValueError):
    """A frame or packet handed to the Opus codec cannot be encoded or decoded."""


def _frame_samples(sample_rate: int, frame_ms: int) -> int:
    if sample_rate not in SAMPLE_RATES:
        raise OpusCodecError(f"Opus runs at {SAMPLE_RATES} Hz, not {sample_rate}")
    if frame_ms not in FRAME_LENGTHS_MS:
        raise OpusCodecError(f"Opus frames here are {FRAME_LENGTHS_MS} ms, not {frame_ms}")
    return sample_rate * frame_ms // 1000


class OpusEncoder:
    """Voice encoder: one ``frame_ms`` PCM frame in, one packet out."""

    __slots__ = ("_encoder", "frame_bytes", "frame_samples", "sample_rate")

    def __init__(
        self,
        sample_rate: int = 48000,
        bitrate: int = 32000,
        *,
        fec: bool = True,
        expected_loss_pct: int = 10,
        dtx: bool = False,
        complexity: int = 9,
        frame_ms: int = 20,
    ) -> None:
        self.frame_samples = _frame_samples(sample_rate, frame_ms)
        self.frame_bytes = 2 * self.frame_samples
        self.sample_rate = sample_rate
        if not 6000 <= bitrate <= 510000:
            raise OpusCodecError(f"Opus bitrate must be 6000..510000 bit/s, got {bitrate}")
        if not 0 <= expected_loss_pct <= 100:
            raise OpusCodecError(f"expected loss must be 0..100 %, got {expected_loss_pct}")
        if not 0 <= complexity <= 10:
            raise OpusCodecError(f"Opus complexity must be 0..10, got {complexity}")
        self._encoder: Any = opuslib.Encoder(sample_rate, 1, opuslib.APPLICATION_VOIP)
        state = self._encoder.encoder_state
        ctl = opuslib.api.encoder.encoder_ctl
        ctl(state, opuslib.api.ctl.set_bitrate, bitrate)
        ctl(state, opuslib.api.ctl.set_complexity, complexity)
        # In-band FEC is only produced when the encoder expects loss (packet_loss_perc > 0).
        ctl(state, opuslib.api.ctl.set_inband_fec, int(fec))
        ctl(state, opuslib.api.ctl.set_packet_loss_perc, expected_loss_pct)
        ctl(state, opuslib.api.ctl.set_dtx, int(dtx))

    def encode(self, pcm: bytes) -> bytes:
        """Encode exactly one frame of 16-bit little-endian mono PCM."""
        if len(pcm) != self.frame_bytes:
            raise OpusCodecError(
                f"Opus frame must be {self.frame_bytes} bytes ({self.frame_samples} samples "
                f"at {self.sample_rate} Hz), got {len(pcm)}"
            )
        try:
            return bytes(self._encoder.encode(pcm, self.frame_samples))
        except opuslib.OpusError as exc:  # pragma: no cover - libopus refuses only bad state
            raise OpusCodecError(f"libopus could not encode the frame: {exc}") from exc


class OpusDecoder:
    """Voice decoder producing one ``frame_ms`` PCM frame per call."""

    __slots__ = ("_decoder", "frame_samples", "sample_rate")

    def __init__(self, sample_rate: int = 48000, *, frame_ms: int = 20) -> None:
        self.frame_samples = _frame_samples(sample_rate, frame_ms)
        self.sample_rate = sample_rate
        self._decoder: Any = opuslib.Decoder(sample_rate, 1)

    def _run(self, packet: bytes, fec: bool) -> bytes:
        try:
            pcm = bytes(self._decoder.decode(packet, self.frame_samples, decode_fec=fec))
        except opuslib.OpusError as exc:
            raise OpusCodecError(f"libopus could not decode the packet: {exc}") from exc
        if len(pcm) != 2 * self.frame_samples:
            # A valid packet of another duration: refuse it rather than break the 20 ms clock.
            raise OpusCodecError(
                f"Opus packet holds {len(pcm) // 2} samples, expected {self.frame_samples}"
            )
        return pcm

    def decode(self, packet: bytes) -> bytes:
        """Decode one packet to one frame of PCM."""
        if not packet or len(packet) > MAX_PACKET:
            raise OpusCodecError(f"Opus packet must be 1..{MAX_PACKET} bytes, got {len(packet)}")
        return self._run(packet, False)

    def conceal(self) -> bytes:
        """One frame of packet-loss concealment for a frame that never came."""
        return self._run(b"", False)

    def decode_fec(self, next_packet: bytes) -> bytes:
        """Rebuild the lost frame from the FEC data in the packet that follows it.

        Falls back to plain PLC inside libopus when ``next_packet`` carries no FEC;
        decode ``next_packet`` itself with :meth:`decode` afterwards, as usual.
        """
        if not next_packet or len(next_packet) > MAX_PACKET:
            raise OpusCodecError(
                f"Opus packet must be 1..{MAX_PACKET} bytes, got {len(next_packet)}"
            )
        return self._run(next_packet, True)

    def reset(self) -> None:
        """Forget the decoder's history (a new stream starts)."""
        self._decoder.reset_state()

    def set_gain(self, gain_db: float) -> None:
        """Make the output ``gain_db`` louder (-128..+128 dB); libopus applies it while decoding."""
        if not -128.0 <= gain_db <= 128.0:
            raise OpusCodecError(f"Opus decoder gain must be -128..128 dB, not {gain_db}")
        q8 = round(gain_db * 256)  # OPUS_SET_GAIN takes Q8 dB
        opuslib.api.decoder.decoder_ctl(self._decoder.decoder_state, opuslib.api.ctl.set_gain, q8)
