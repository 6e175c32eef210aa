"""A thin wrapper over libopus (through opuslib) for 20 ms mono voice frames.

Why opuslib: it is the maintained ctypes binding to the system's libopus
(Debian's ``libopus0``) and needs no compiler on the Pi.  It loads the library
and creates and destroys the codec states, and its ``encoder_ctl`` /
``decoder_ctl`` set the controls.  Two of its property setters are broken
(``inband_fec`` and ``dtx`` send the wrong request), so those controls are set
with ``encoder_ctl`` directly.

Why the per-frame calls bypass opuslib's wrappers: its ``decode`` allocates a
ctypes array, casts it, slices the pointer into a Python list of 960 ints and
packs them back with ``array`` for every frame, and its ``encode`` casts and
allocates too; in a call that cost more than libopus's own decoding (issue #12).
So ``opus_encode`` / ``opus_decode`` are called here through our own ctypes
prototypes whose arguments take ``bytes`` and a buffer preallocated once per
coder, with no cast; each frame costs one copy of its result into ``bytes``.

:class:`OpusEncoder` takes exactly one frame of 16-bit little-endian PCM and
returns one packet; :class:`OpusDecoder` turns a packet back into one frame,
conceals a lost frame (libopus PLC) or rebuilds it from the next packet's
in-band FEC.  Wrong frame sizes and undecodable packets raise
:class:`OpusCodecError`.
"""

from __future__ import annotations

import ctypes
from typing import Any

import opuslib
import opuslib.api
import opuslib.api.ctl
import opuslib.api.decoder
import opuslib.api.encoder

__all__ = ["OpusCodecError", "OpusDecoder", "OpusEncoder"]

SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)
FRAME_LENGTHS_MS = (10, 20, 40, 60)
MAX_PACKET = 1275  # RFC 6716 section 3.2.1: the largest single-frame packet


class OpusCodecError(ValueError):
    """A frame or packet handed to the Opus codec cannot be encoded or decoded."""


def _prototype(name: str, restype: Any, *argtypes: Any) -> Any:
    """A ctypes function object for libopus's ``name`` with our own argument types.

    Indexing the library (unlike attribute access, which opuslib uses and which
    the CDLL caches) makes a new function object, so opuslib's own prototype of
    the same symbol is left as it was.
    """
    func = opuslib.api.libopus[name]
    func.argtypes = argtypes
    func.restype = restype
    return func


# c_char_p takes ``bytes`` (and a ``create_string_buffer``) as a pointer to its
# contents, with no copy and no cast; libopus only reads the PCM / packet.
# opus_int32 opus_encode(OpusEncoder *st, const opus_int16 *pcm, int frame_size,
#                        unsigned char *data, opus_int32 max_data_bytes)
_opus_encode = _prototype(
    "opus_encode",
    ctypes.c_int32,
    ctypes.c_void_p,
    ctypes.c_char_p,
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_int32,
)
# int opus_decode(OpusDecoder *st, const unsigned char *data, opus_int32 len,
#                 opus_int16 *pcm, int frame_size, int decode_fec)
_opus_decode = _prototype(
    "opus_decode",
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.c_char_p,
    ctypes.c_int32,
    ctypes.c_char_p,
    ctypes.c_int,
    ctypes.c_int,
)


def _frame_samples(sample_rate: int, frame_ms: int) -> int:
    if sample_rate not in SAMPLE_RATES:
        raise OpusCodecError(f"Opus runs at {SAMPLE_RATES} Hz, not {sample_rate}")
    if frame_ms not in FRAME_LENGTHS_MS:
        raise OpusCodecError(f"Opus frames here are {FRAME_LENGTHS_MS} ms, not {frame_ms}")
    return sample_rate * frame_ms // 1000


class OpusEncoder:
    """Voice encoder: one ``frame_ms`` PCM frame in, one packet out."""

    __slots__ = (
        "_encoder",
        "_loss_pct",
        "_out",
        "_state",
        "frame_bytes",
        "frame_samples",
        "sample_rate",
    )

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
        # opuslib's Encoder owns the state (its __del__ destroys it): keep it alive.
        self._encoder: Any = opuslib.Encoder(sample_rate, 1, opuslib.APPLICATION_VOIP)
        self._state: Any = self._encoder.encoder_state
        # The packet buffer, as large as opuslib's (the frame's PCM size), so that
        # libopus's max_data_bytes, and with it every packet, is the same as before.
        self._out = ctypes.create_string_buffer(self.frame_bytes)
        ctl = opuslib.api.encoder.encoder_ctl
        ctl(self._state, opuslib.api.ctl.set_bitrate, bitrate)
        ctl(self._state, opuslib.api.ctl.set_complexity, complexity)
        # In-band FEC is only produced when the encoder expects loss (packet_loss_perc > 0).
        ctl(self._state, opuslib.api.ctl.set_inband_fec, int(fec))
        ctl(self._state, opuslib.api.ctl.set_packet_loss_perc, expected_loss_pct)
        self._loss_pct = expected_loss_pct
        ctl(self._state, opuslib.api.ctl.set_dtx, int(dtx))

    def encode(self, pcm: bytes) -> bytes:
        """Encode exactly one frame of 16-bit little-endian mono PCM."""
        if len(pcm) != self.frame_bytes:
            raise OpusCodecError(
                f"Opus frame must be {self.frame_bytes} bytes ({self.frame_samples} samples "
                f"at {self.sample_rate} Hz), got {len(pcm)}"
            )
        out = self._out
        n = _opus_encode(self._state, pcm, self.frame_samples, out, self.frame_bytes)
        if n < 0:  # pragma: no cover - libopus refuses only bad state
            raise OpusCodecError(f"libopus could not encode the frame: {opuslib.OpusError(n)}")
        # Slicing a c_char array makes one bytes object of n bytes (typeshed calls it a list).
        return out[:n]  # type: ignore[return-value]

    def set_packet_loss(self, pct: int) -> None:
        """Tell the encoder the loss it should expect (0..100 %), which sizes its in-band FEC.

        Meant to be called as often as loss is measured: an unchanged value costs no ctl call.
        """
        if pct == self._loss_pct:
            return
        if not 0 <= pct <= 100:
            raise OpusCodecError(f"expected loss must be 0..100 %, got {pct}")
        opuslib.api.encoder.encoder_ctl(self._state, opuslib.api.ctl.set_packet_loss_perc, pct)
        self._loss_pct = pct


class OpusDecoder:
    """Voice decoder producing one ``frame_ms`` PCM frame per call."""

    __slots__ = ("_decoder", "_pcm", "_state", "frame_bytes", "frame_samples", "sample_rate")

    def __init__(self, sample_rate: int = 48000, *, frame_ms: int = 20) -> None:
        self.frame_samples = _frame_samples(sample_rate, frame_ms)
        self.frame_bytes = 2 * self.frame_samples
        self.sample_rate = sample_rate
        # opuslib's Decoder owns the state (its __del__ destroys it): keep it alive.
        self._decoder: Any = opuslib.Decoder(sample_rate, 1)
        self._state: Any = self._decoder.decoder_state
        # libopus writes each frame here; every call returns a fresh copy of it.
        self._pcm = ctypes.create_string_buffer(self.frame_bytes)

    def _run(self, packet: bytes | None, length: int, fec: int) -> bytes:
        n = _opus_decode(self._state, packet, length, self._pcm, self.frame_samples, fec)
        if n != self.frame_samples:
            if n < 0:
                raise OpusCodecError(f"libopus could not decode the packet: {opuslib.OpusError(n)}")
            # A valid packet of another duration: refuse it rather than break the 20 ms clock.
            raise OpusCodecError(f"Opus packet holds {n} samples, expected {self.frame_samples}")
        return self._pcm.raw  # the buffer is exactly one frame: one copy into a new bytes

    def decode(self, packet: bytes) -> bytes:
        """Decode one packet to one frame of PCM."""
        if not packet or len(packet) > MAX_PACKET:
            raise OpusCodecError(f"Opus packet must be 1..{MAX_PACKET} bytes, got {len(packet)}")
        return self._run(packet, len(packet), 0)

    def conceal(self) -> bytes:
        """One frame of packet-loss concealment for a frame that never came."""
        return self._run(None, 0, 0)  # NULL data: libopus runs its PLC

    def decode_fec(self, next_packet: bytes) -> bytes:
        """Rebuild the lost frame from the FEC data in the packet that follows it.

        Falls back to plain PLC inside libopus when ``next_packet`` carries no FEC;
        decode ``next_packet`` itself with :meth:`decode` afterwards, as usual.
        """
        if not next_packet or len(next_packet) > MAX_PACKET:
            raise OpusCodecError(
                f"Opus packet must be 1..{MAX_PACKET} bytes, got {len(next_packet)}"
            )
        return self._run(next_packet, len(next_packet), 1)

    def reset(self) -> None:
        """Forget the decoder's history (a new stream starts)."""
        self._decoder.reset_state()

    def set_gain(self, gain_db: float) -> None:
        """Make the output ``gain_db`` louder (-128..+128 dB); libopus applies it while decoding."""
        if not -128.0 <= gain_db <= 128.0:
            raise OpusCodecError(f"Opus decoder gain must be -128..128 dB, not {gain_db}")
        q8 = round(gain_db * 256)  # OPUS_SET_GAIN takes Q8 dB
        opuslib.api.decoder.decoder_ctl(self._state, opuslib.api.ctl.set_gain, q8)
