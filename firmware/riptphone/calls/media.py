"""One call's audio: microphone to chunks to the transport, chunks from it to earpiece.

A :class:`MediaSession` is started when the call machine says ``OpenMedia``
and stopped on ``CloseMedia``, ``CloseByways`` or the end of the call.  It
runs on the daemon's asyncio loop; the two ALSA adapters run their blocking
I/O on their own threads and post frames into the loop.

The bodies travel on the leg's :mod:`~riptphone.calls.transport` (one
WebTransport datagram each, or one media-byway ``PUT`` each and held
``GET`` requests), chosen before the session is built; the session only encodes,
seals, opens and decodes.

* Send: every 20 ms capture frame is encoded (PCMU at 8 kHz or Opus at
  48 kHz, whichever the client directive's first stream names first), sealed
  by a :class:`ChunkSender` and handed to the transport as one body: the
  framed chunk followed by the acks owed to the provider.
* Receive: every body the transport delivers (a datagram, a PUT's reply, a
  GET's answer) is opened by a :class:`ChunkReceiver`, and its media chunks go
  into a :class:`JitterBuffer`; a playout task pops it every 20 ms, decodes,
  and writes the PCM to the earpiece.
* Acks owed are carried by the next body, or sent alone once the oldest has
  waited ``ACK_HOLD`` (60 ms) with no media going out.

The session never touches the call machine: it notes when media last came
in, when it last sent media no ack has answered yet, and whether an ack came
(:class:`MediaActivity`); the call's runner, which alone owns the machine,
collects that with :meth:`MediaSession.take_activity` and hands it on, so the
machine's no-media and no-ack timers see the traffic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ript.media import codecs
from ript.media.codecs import FRAME_MS
from ript.media.jitter import Frame, JitterBuffer
from ript.media.tones import ToneGenerator, dtmf_spec
from ript.protocol.advertisement import GrammarError, parse_directive
from ript.protocol.chunks import frame
from ript.protocol.descriptions import MediaKey
from ript.protocol.events import Direction
from ript.protocol.media_crypto import MediaKeyError, MediaKeys
from ript.protocol.media_streams import ChunkReceiver, ChunkSender
from riptphone.calls.transport import MediaTransport
from riptphone.hw.alsa import AlsaCapture, AlsaPlayback
from riptphone.hw.audio import AudioError

log = logging.getLogger(__name__)

CARRIED = ("pcmu", "opus")
"""The codecs of :mod:`ript.media.codecs` this session sends, in the order it picks them."""

DTMF_FRAMES = 5  # 100 ms of tone, above the 40 ms minimum of ITU-T Q.24
DTMF_GAP_FRAMES = 2


def volume_gain_db(percent: int) -> float:
    """The earpiece gain for a volume setting: 70 % (the default) is 0 dB, 3 dB per 10 %.

    So 0 % is -21 dB (quiet, not silent: a phone must never go dead) and 100 % is +9 dB.
    """
    return (max(0, min(100, percent)) - 70) * 0.3


class MediaError(Exception):
    """The session cannot start: a directive or key it cannot use."""


class _Codec:
    """The session's codec (:mod:`ript.media.codecs`) with both directions' coders."""

    def __init__(self, name: str) -> None:
        codec = codecs.find(name)
        if codec is None or codec.new_encoder is None or codec.new_decoder is None:
            raise MediaError(f"the client directive asks for {name}, which the phone cannot send")
        self.payload_type = codec.payload_type
        self.rate = codec.clock_rate
        self.silence = bytes(codec.frame_bytes(FRAME_MS))
        encoder = codec.new_encoder(FRAME_MS)
        self._decoder = codec.new_decoder(FRAME_MS)
        self.encode = encoder.encode
        self.conceal = self._decoder.conceal

    def decode(self, payload: bytes) -> bytes:
        return self._decoder.decode(payload)

    def set_gain(self, gain_db: float) -> None:
        """Playback volume: folded into the decoder, so it costs nothing per frame."""
        self._decoder.set_gain(gain_db)


def choose(directive_text: str | None) -> tuple[int, int, str]:
    """(source, sink, codec name) of the first stream of the client directive we can send."""
    if not directive_text:
        raise MediaError("the call has no client directive: nothing to send")
    try:
        directive = parse_directive(directive_text)
    except GrammarError as exc:
        raise MediaError(f"the client directive is unreadable: {exc}") from exc
    for stream in directive.streams:
        for codec in stream.codecs:
            if codec.name.lower() in CARRIED:
                return stream.source, stream.sink, codec.name
    raise MediaError(f"the client directive {directive_text!r} names no PCMU or Opus stream")


@dataclass(frozen=True, slots=True)
class MediaActivity:
    """Media traffic since the runner last looked (all times on the session's clock).

    ``received_at``: the last media chunk in; ``acked``: an ack of ours came;
    ``sent_unacked_at``: the first media chunk sent after the last ack (or since
    the runner last looked, when no ack came).
    """

    received_at: float | None
    acked: bool
    sent_unacked_at: float | None


NO_ACTIVITY = MediaActivity(None, False, None)


@dataclass(frozen=True, slots=True)
class MediaStats:
    """One leg's media counters: the control socket's ``call.stats`` (docs/control-socket.md).

    Chunk counts cover the whole leg (numbering carries on over re-established
    byways); the PUT, GET and playout counters are this session's (over
    WebTransport ``put_failures`` counts bodies the ended session could not carry).
    """

    sealed: bool
    chunks_sent: int
    chunks_received: int
    acks_received: int
    chunks_unacked: int
    chunks_lost: int
    auth_failures: int
    malformed: int
    duplicates: int
    late: int
    puts_dropped: int
    put_failures: int
    get_failures: int
    frames_played: int
    bad_frames: int
    rtt_ms: float | None
    jitter_ms: float
    audio_error: str | None = None
    """Why the microphone or earpiece is unusable right now (a card unplugged), else None."""
    audio_recoveries: int = 0

    def to_json(self) -> dict[str, int | float | bool | None]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What flows on a call's media: codec (lower-case name), transport, counters."""

    codec: str
    transport: str
    stats: MediaStats


class MediaSession:
    """One handler leg's media; :meth:`start` then :meth:`stop` (idempotent).

    ``previous``: the stopped session of the same call; when it had the same media
    key its chunk numbering and pending acks carry on here.
    """

    def __init__(
        self,
        transport: MediaTransport,
        *,
        media_key: MediaKey | None,
        client_directives: str | None,
        capture_device: str,
        playback_device: str,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        previous: MediaSession | None = None,
    ) -> None:
        self.key = media_key
        self.directives = client_directives
        self._transport = transport
        self._clock = clock
        self._received_at: float | None = None
        self._acked = False
        self._sent_unacked_at: float | None = None
        self._source, self._sink, name = choose(client_directives)
        self._codec = _Codec(name)
        try:
            keys = (
                None
                if media_key is None
                else MediaKeys.from_material(media_key.key, media_key.salt, media_key.tag_length)
            )
        except MediaKeyError as exc:
            raise MediaError(f"the call's media key is unusable: {exc}") from exc
        self._sender: ChunkSender
        self._receiver: ChunkReceiver
        self._timestamp: int
        if previous is not None and previous.key == media_key:
            # The same leg after its byways were re-established: numbering goes on, so no
            # nonce repeats under the key and the provider's replay window keeps accepting.
            self._sender = previous._sender
            self._receiver = previous._receiver
            self._timestamp = previous._timestamp
            # Full values until one is acked again: a provider that restarted since has
            # no reference to expand our truncated ones against (protocol.md 9.1).
            self._sender.require_full_values()
        else:
            self._sender = ChunkSender(Direction.C2S, keys)
            self._receiver = ChunkReceiver(Direction.S2C, keys)
            # Profile section 8: a chunk's timestamp is the Unix time in ms of its first
            # sample; the first frame is being captured now, each next one 20 ms later.
            self._timestamp = int(wall() * 1000)
        self._jitter = JitterBuffer(FRAME_MS)
        self._capture_device = capture_device
        self._playback_device = playback_device
        self._capture: AlsaCapture | None = None
        self._playback: AlsaPlayback | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._acks_owed = asyncio.Event()
        self._stopped = False
        self._dtmf: deque[bytes] = deque()
        self.muted = False
        self.frames_played = 0
        self.bad_frames = 0

    @property
    def codec(self) -> str:
        return self._codec.payload_type.name

    @property
    def transport(self) -> str:
        """``webtransport`` or ``byways``."""
        return self._transport.name

    def stats(self) -> MediaStats:
        """The leg's media counters; see :class:`MediaStats`."""
        sent = self._sender.stats()
        received = self._receiver.stats()
        transport = self._transport
        return MediaStats(
            sealed=self.key is not None,
            chunks_sent=sent.sent,
            chunks_received=received.received,
            acks_received=sent.acked,
            chunks_unacked=sent.lost,
            chunks_lost=received.lost,
            auth_failures=received.auth_failures,
            malformed=received.malformed,
            duplicates=received.duplicates,
            late=received.late,
            puts_dropped=transport.puts_dropped,
            put_failures=transport.put_failures,
            get_failures=transport.get_failures,
            frames_played=self.frames_played,
            bad_frames=self.bad_frames,
            rtt_ms=None if sent.rtt_avg is None else round(sent.rtt_avg * 1000, 1),
            jitter_ms=round(received.jitter_ms, 1),
            audio_error=self.audio_error(),
            audio_recoveries=sum(
                device.stats().recoveries
                for device in (self._capture, self._playback)
                if device is not None
            ),
        )

    def audio_error(self) -> str | None:
        """The audio devices' trouble in words, or None when both work."""
        for name, device in (("microphone", self._capture), ("earpiece", self._playback)):
            if device is not None and (error := device.stats().error) is not None:
                return f"no audio device ({name}: {error})"
        return None

    def take_activity(self) -> MediaActivity:
        """The traffic since the last call (for the call machine's timers), then forget it."""
        if self._received_at is None and not self._acked and self._sent_unacked_at is None:
            return NO_ACTIVITY
        activity = MediaActivity(self._received_at, self._acked, self._sent_unacked_at)
        self._received_at, self._acked, self._sent_unacked_at = None, False, None
        return activity

    def start(self) -> None:
        """Open the audio devices, start the transport; AudioDeviceError if a device is unusable."""
        loop = asyncio.get_running_loop()
        rate = self._codec.rate
        playback = AlsaPlayback(self._playback_device, rate)
        capture = AlsaCapture(self._capture_device, rate, loop=loop, on_frame=self._on_mic)
        playback.start()
        try:
            capture.start()
        except BaseException:
            playback.stop()
            raise
        self._playback, self._capture = playback, capture
        self._transport.start(self._take_body)
        self._spawn(self._ack_loop())
        self._spawn(self._playout())

    def stop(self) -> None:
        """Cancel every task, stop the transport (GETs reset, session closed), stop the audio."""
        if self._stopped:
            return
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        self._transport.stop()
        for device in (self._capture, self._playback):
            if device is not None:
                device.stop()
        stats = self.stats()
        log.info(
            "event=media_stopped codec=%s transport=%s sent=%d received=%d acks=%d "
            "auth_failures=%d played=%d puts_dropped=%d put_failures=%d",
            self.codec,
            self.transport,
            stats.chunks_sent,
            stats.chunks_received,
            stats.acks_received,
            stats.auth_failures,
            self.frames_played,
            stats.puts_dropped,
            stats.put_failures,
        )

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ send

    def set_muted(self, muted: bool) -> None:
        """Send silence instead of the microphone (chunks keep flowing, so acks and timers do)."""
        self.muted = muted

    def set_volume(self, percent: int) -> None:
        """The earpiece volume; see :func:`volume_gain_db`."""
        self._codec.set_gain(volume_gain_db(percent))

    def send_dtmf(self, key: str) -> None:
        """Send ``key`` as an in-band DTMF tone (100 ms, then 40 ms of silence).

        In band, because it reaches any far end through any codec the
        directive picks; the frames are made here, not on the 20 ms path.
        """
        tone = ToneGenerator(dtmf_spec(key), self._codec.rate, FRAME_MS)
        self._dtmf.extend(tone.frame() for _ in range(DTMF_FRAMES))
        self._dtmf.extend(self._codec.silence for _ in range(DTMF_GAP_FRAMES))

    def _on_mic(self, pcm: bytes) -> None:
        # In the loop, every 20 ms: encode, seal, send with the acks owed.
        if self._stopped:
            return
        if self._dtmf:
            pcm = self._dtmf.popleft()
        elif self.muted:
            pcm = self._codec.silence
        now = self._clock()
        payload = self._codec.encode(pcm)
        chunk = self._sender.media(
            self._source, self._sink, self._codec.payload_type, self._timestamp, payload, now=now
        )
        self._timestamp += FRAME_MS
        if self._receiver.has_pending_acks:
            body = frame([chunk, *self._sender.acks(self._receiver.take_pending_acks(now))])
        else:
            body = frame([chunk])
        if self._sent_unacked_at is None:
            self._sent_unacked_at = now
        self._transport.send(body)

    async def _ack_loop(self) -> None:
        # Acks owed leave alone once the oldest has waited ACK_HOLD with no body taking them.
        while True:
            deadline = self._receiver.ack_deadline
            if deadline is None:
                self._acks_owed.clear()
                await self._acks_owed.wait()
                continue
            delay = deadline - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            now = self._clock()
            self._transport.send(frame(self._sender.acks(self._receiver.take_pending_acks(now))))

    # ------------------------------------------------------------ receive

    def _take_body(self, body: bytes) -> None:
        if self._stopped:
            return
        now = self._clock()
        result = self._receiver.receive(body, now)
        if result.acks:
            for ack in result.acks:
                self._sender.on_ack(ack, now)
            self._acked = True
            self._sent_unacked_at = None
        if result.media:
            self._received_at = now
        ours = self._codec.payload_type
        for chunk in result.media:
            if chunk.payload_type == ours:
                self._jitter.push(chunk.seq, chunk.timestamp, chunk.payload, now)
        if self._receiver.has_pending_acks:
            self._acks_owed.set()

    async def _playout(self) -> None:
        # One pop of the jitter buffer per 20 ms, paced by computed due times (no drift).
        loop = asyncio.get_running_loop()
        playback = self._playback
        assert playback is not None
        start = loop.time()
        turn = 0
        codec = self._codec
        while True:
            turn += 1
            await asyncio.sleep(max(0.0, start + turn * FRAME_MS / 1000 - loop.time()))
            item = self._jitter.pop(self._clock())
            try:
                if isinstance(item, Frame):
                    pcm = codec.decode(item.payload)
                elif item.seq is not None or item.stretch:
                    pcm = codec.conceal()
                else:
                    continue  # nothing due: the playback thread plays silence
                playback.write(pcm)
            except (ValueError, AudioError):
                # A payload that does not decode to one frame: skip it, the filler plays.
                self.bad_frames += 1
                continue
            self.frames_played += 1
