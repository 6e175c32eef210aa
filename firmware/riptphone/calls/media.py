"""One call's audio: microphone to chunks to the transport, chunks from it to earpiece.

A :class:`MediaSession` is started when the call machine says ``OpenMedia``
and stopped on ``CloseMedia``, ``CloseByways`` or the end of the call.  It
runs on the daemon's asyncio loop; the two ALSA adapters run their blocking
I/O on their own threads and post frames into the loop.

The bodies travel on the leg's :mod:`~riptphone.calls.transport` (one
WebTransport datagram each, or one media-byway ``PUT`` each and held
``GET`` requests), chosen before the session is built; the session only encodes,
seals, opens and decodes.

* Send: every capture frame (one ptime: 10, 20, 40 or 60 ms) is encoded with
  the codec the client directive gives (:mod:`riptphone.calls.codec`: Opus,
  PCMU or PCMA; a key press as RFC 4733 events in its place; in silence,
  nothing for Opus DTX, or a CN chunk every :data:`CN_EVERY_MS`), sealed by a
  :class:`ChunkSender` and handed to the transport as one body: the framed
  chunk followed by the acks owed to the provider.
* Receive: every body the transport delivers (a datagram, a PUT's reply, a
  GET's answer) is opened by a :class:`ChunkReceiver`, and its media chunks go
  into a :class:`JitterBuffer`.  Telephone-events are reported (``on_dtmf``),
  not played.
* Play: the same capture frame that sends also pops the jitter buffer once,
  decodes (or conceals a loss: Opus FEC or PLC, G.711 pitch repeat; plays
  comfort noise after a CN chunk), and writes the PCM to the earpiece.  One
  wake-up of the loop per ptime does the whole tick: no playout timer or task
  of its own (docs/performance.md, "one wake-up per tick"), and the earpiece
  is paced by the same sound card clock as the microphone.  The capture thread
  delivers a frame on time even while the microphone is gone (silence), so
  playout never stops with it.  A microphone that stops giving frames without
  an error (a stalled USB card) is caught by a watchdog timer, due
  :data:`STALL_TICKS` ptimes after the last frame: then the loop ticks itself
  with silence, one ptime apart, until capture frames come again (see
  :meth:`MediaSession._check_capture`).
* Acks owed are carried by the next body, or, at the first tick that sends no
  media (Opus DTX, CN silence) once the oldest has waited ``ACK_HOLD`` (60 ms),
  sent alone.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ript.media.cn import CnPlayer
from ript.media.dtmf import DTMFError, DTMFReceiver, EventSender
from ript.media.jitter import Frame, Gap, JitterBuffer
from ript.media.loss_hint import LossHint
from ript.media.tones import NoiseGenerator, ToneGenerator, dtmf_spec
from ript.media.vad import EnergyVad
from ript.protocol.chunks import MEDIA_BODY_LIMIT, PayloadType, frame, pack_datagrams
from ript.protocol.descriptions import MediaKey
from ript.protocol.events import Direction
from ript.protocol.media_crypto import MediaKeyError, MediaKeys
from ript.protocol.media_streams import ChunkReceiver, ChunkSender
from riptphone.calls.codec import CallCodec, CodecSettings, MediaError, choose
from riptphone.calls.transport import HeldTransport, MediaTransport
from riptphone.hw.alsa import AlsaCapture, AlsaPlayback
from riptphone.hw.audio import AudioError

log = logging.getLogger(__name__)

LOSS_WINDOW_MS = 1000
"""How often the loss the acks show is handed to the Opus encoder (ript.media.loss_hint)."""
INITIAL_PLAYOUT_MS = 60
"""The jitter buffer's target delay at the start of a leg, before any jitter is known: the
first words ("Hello?") come after silence with no chunk to measure the path by, and one
frame of delay let 40 ms of jitter stretch them.  It comes down a frame per half second of
received media once the path shows itself calm (the excess drains in the next silence)."""
CN_EVERY_MS = 400
"""In silence with CN negotiated, one CN chunk this often (docs/daemon.md says why)."""
DTX_BYTES = 2
"""An Opus packet this small is libopus's DTX "nothing to say": not sent."""
DTMF_MS = 100  # in-band tone, above the 40 ms minimum of ITU-T Q.24
DTMF_GAP_MS = 40
STALL_TICKS = 3
"""Ptimes without a capture frame after which the loop ticks itself with silence.

The watchdog looks this long after the last capture frame (so while capture
flows, one timer per this many frames, not one per frame).
"""
STALL_REPORT_S = 1.0
"""A capture stall this long is reported like a lost device (``audio_error``)."""


class _Timer(Protocol):
    def cancel(self) -> None: ...


CallLater = Callable[[float, Callable[[], None]], _Timer]
"""``loop.call_later`` (a fake in tests): how the capture watchdog schedules itself."""


def volume_gain_db(percent: int) -> float:
    """The earpiece gain for a volume setting: 70 % (the default) is 0 dB, 3 dB per 10 %.

    So 0 % is -21 dB (quiet, not silent: a phone must never go dead) and 100 % is +9 dB.
    """
    return (max(0, min(100, percent)) - 70) * 0.3


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
    chunks_resent: int = 0
    """Chunks sent again because a later one was acked first (the backlog of a blip)."""
    chunks_given_up: int = 0
    """Chunks never acked within 8 s: no longer re-sent."""
    frames_too_late: int = 0
    """Received chunks that came after their turn to play (or beyond the buffer): dropped."""
    frames_concealed: int = 0
    """Frames the earpiece played as concealment: for a chunk lost, or one not yet there."""
    playout_delay_ms: int = 0
    """The jitter buffer's target delay: how much media it keeps ahead of the earpiece."""
    audio_error: str | None = None
    """Why the microphone or earpiece is unusable right now (a card unplugged), else None."""
    audio_recoveries: int = 0
    loss_hint_pct: int = 0
    """The loss (per cent) the Opus encoder is told to expect: above 0, it sends in-band FEC."""

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
        settings: CodecSettings | None = None,
        on_dtmf: Callable[[str], None] | None = None,
    ) -> None:
        self.key = media_key
        self.directives = client_directives
        self._transport = transport
        self._clock = clock
        self._received_at: float | None = None
        self._acked = False
        self._sent_unacked_at: float | None = None
        settings = settings or CodecSettings()
        self.plan = plan = choose(client_directives, settings.ptime)
        self._source, self._sink = plan.source, plan.sink
        self._ptime = plan.ptime
        self._codec = CallCodec(plan.codec, plan.ptime, settings)
        self._on_dtmf = on_dtmf
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
        self._loss_hint: LossHint
        if previous is not None and previous.key == media_key:
            # The same leg after its byways were re-established: numbering goes on, so no
            # nonce repeats under the key and the provider's replay window keeps accepting.
            self._sender = previous._sender
            self._receiver = previous._receiver
            self._timestamp = previous._timestamp
            self._loss_hint = previous._loss_hint  # it reads the sender's running totals
            # Full values until one is acked again: a provider that restarted since has
            # no reference to expand our truncated ones against (protocol.md 9.1).
            self._sender.require_full_values()
        else:
            self._sender = ChunkSender(Direction.C2S, keys)
            self._receiver = ChunkReceiver(Direction.S2C, keys)
            # Profile section 8: a chunk's timestamp is the Unix time in ms of its first
            # sample; the first frame is being captured now, each next one ptime later.
            self._timestamp = int(wall() * 1000)
            self._loss_hint = LossHint()
        # Opus's in-band FEC follows the loss the acks show, checked once a second.
        if self._codec.adapts_to_loss and self._loss_hint.pct:
            self._codec.expect_loss(self._loss_hint.pct)
        self._loss_window = max(1, LOSS_WINDOW_MS // plan.ptime)
        self._loss_due = self._loss_window
        self._jitter = JitterBuffer(
            plan.ptime,
            min_delay_ms=plan.ptime,
            max_delay_ms=max(plan.ptime, settings.jitter_max_ms),
            skip_excess_ms=max(plan.ptime, settings.jitter_max_ms),
            initial_delay_ms=INITIAL_PLAYOUT_MS,
        )
        self._capture_device = capture_device
        self._playback_device = playback_device
        self._capture: AlsaCapture | None = None
        self._playback: AlsaPlayback | None = None
        self._stopped = False
        self._dtmf: deque[bytes] = deque()  # in-band tone frames to send
        self._events = EventSender(plan.ptime) if plan.telephone_event else None
        self._dtmf_in = DTMFReceiver()
        # RFC 3389 comfort noise replaces silence on G.711 only: Opus has its own DTX.
        cn = plan.comfort_noise and plan.codec != "opus"
        self._vad: EnergyVad | None = EnergyVad(plan.ptime) if cn else None
        self._cn_at = -CN_EVERY_MS
        self._comfort = CnPlayer(self._codec.rate, plan.ptime)
        self._noise: NoiseGenerator | None = None  # playing after a received CN chunk
        self.muted = False
        self.frames_played = 0
        self.bad_frames = 0
        # The capture watchdog (see _check_capture); times on self._clock.
        self._call_later: CallLater | None = None
        self._timer: _Timer | None = None
        self._mic_at = 0.0  # the last capture frame
        self._tick_at = -1.0  # the last tick (capture or the loop's own)
        self._stall_since: float | None = None  # capture stalled: the last frame's time
        self._fallback_due = 0.0  # the next silent tick, while stalled
        self._silent_ticks = 0  # the loop's own ticks in this stall
        self._taken = 0  # turns the loop's ticks took that late capture frames may claim
        self._taken_until = 0.0  # ... until then (the hand-back)
        self.capture_stalls = 0

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
        jitter = self._jitter.stats()
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
            chunks_resent=sent.resent,
            chunks_given_up=sent.given_up,
            frames_too_late=jitter.late + jitter.discarded,
            frames_concealed=jitter.concealed,
            playout_delay_ms=jitter.target_ms,
            audio_error=self.audio_error(),
            audio_recoveries=sum(
                device.stats().recoveries
                for device in (self._capture, self._playback)
                if device is not None
            ),
            loss_hint_pct=self._loss_hint.pct if self._codec.adapts_to_loss else 0,
        )

    def audio_error(self) -> str | None:
        """The audio devices' trouble in words, or None when both work.

        A microphone that has given no frame for :data:`STALL_REPORT_S` counts as
        lost too (the loop sends silence meanwhile, like for a lost one).
        """
        for name, device in (("microphone", self._capture), ("earpiece", self._playback)):
            if device is not None and (error := device.stats().error) is not None:
                return f"no audio device ({name}: {error})"
        since = self._stall_since
        if since is not None and (quiet := self._clock() - since) >= STALL_REPORT_S:
            return f"no audio device (microphone: no frames for {quiet:.1f} s)"
        return None

    def take_activity(self) -> MediaActivity:
        """The traffic since the last call (for the call machine's timers), then forget it."""
        if self._received_at is None and not self._acked and self._sent_unacked_at is None:
            return NO_ACTIVITY
        activity = MediaActivity(self._received_at, self._acked, self._sent_unacked_at)
        self._received_at, self._acked, self._sent_unacked_at = None, False, None
        return activity

    @property
    def held(self) -> bool:
        """The leg has no transport now (its byways are being re-established)."""
        return isinstance(self._transport, HeldTransport)

    def hold(self) -> None:
        """The byways are being re-established: stop the transport, keep everything else.

        Capture, sealing and playout go on (the earpiece conceals, then goes quiet); the
        chunks sealed meanwhile are re-sent by the acks on the next transport.
        """
        if self._stopped or self.held:
            return
        transport = self._transport
        transport.stop()
        self._transport = HeldTransport(transport.name)
        log.info("event=media_held transport=%s", transport.name)

    def resume(self, transport: MediaTransport) -> None:
        """The byways are back: media flows on ``transport`` from now on."""
        if self._stopped:
            transport.stop()
            return
        self._transport = transport
        # What was sent while held must not start the call machine's no-ack timer: it
        # was never on this transport (its chunks go again once acks come).
        self._received_at, self._acked, self._sent_unacked_at = None, False, None
        # Full values until one is acked again: a provider that restarted meanwhile has
        # no reference to expand our truncated ones against (protocol.md 9.1).
        self._sender.require_full_values()
        transport.start(self._take_body)

    def start(self) -> None:
        """Open the audio devices, start the transport; AudioDeviceError if a device is unusable."""
        loop = asyncio.get_running_loop()
        rate = self._codec.rate
        ptime = self._ptime
        # One thread for both directions: the earpiece takes its turn after each
        # microphone frame (docs/audio.md, "One thread for a call's audio").  Four
        # periods: after each turn the card holds three (60 ms, as an earpiece on its
        # own thread keeps it) and has room for a turn that comes early.
        playback = AlsaPlayback(self._playback_device, rate, frame_ms=ptime, periods=4)
        capture = AlsaCapture(
            self._capture_device,
            rate,
            loop=loop,
            on_frame=self._on_mic,
            frame_ms=ptime,
            drives=playback,
        )
        playback.start(driven=True)
        try:
            capture.start()
        except BaseException:
            playback.stop()
            raise
        self._playback, self._capture = playback, capture
        self._transport.start(self._take_body)
        self._watch_capture(loop.call_later)

    def stop(self) -> None:
        """Stop the transport (GETs reset, session closed), then the audio."""
        if self._stopped:
            return
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport.stop()
        for device in (self._capture, self._playback):
            if device is not None:
                device.stop()
        stats = self.stats()
        earpiece = None if self._playback is None else self._playback.stats()
        log.info(
            "event=media_stopped codec=%s transport=%s sent=%d received=%d acks=%d "
            "lost=%d given_up=%d auth_failures=%d played=%d puts_dropped=%d put_failures=%d "
            "concealed=%d too_late=%d playout_ms=%d underruns=%d",
            self.codec,
            self.transport,
            stats.chunks_sent,
            stats.chunks_received,
            stats.acks_received,
            stats.chunks_lost,
            stats.chunks_given_up,
            stats.auth_failures,
            self.frames_played,
            stats.puts_dropped,
            stats.put_failures,
            stats.frames_concealed,
            stats.frames_too_late,
            stats.playout_delay_ms,
            0 if earpiece is None else earpiece.underruns,
        )

    # ------------------------------------------------------------ send

    def set_muted(self, muted: bool) -> None:
        """Send silence instead of the microphone (chunks keep flowing, so acks and timers do)."""
        self.muted = muted

    def set_volume(self, percent: int) -> None:
        """The earpiece volume; see :func:`volume_gain_db`."""
        self._codec.set_gain(volume_gain_db(percent))

    def send_dtmf(self, key: str) -> None:
        """Send ``key``: as RFC 4733 telephone-events when negotiated, else as an in-band tone.

        Events when the client directive names ``telephone-event`` (a 100 ms
        press: updates every ptime, then the end packet three times, in place of
        the audio); otherwise a 100 ms tone then 40 ms of silence, which reaches
        any far end through any codec.  Either way the packets or frames are made
        here, not on the 20 ms path.
        """
        if self._events is not None:
            self._events.press(key)
            return
        ptime = self._ptime
        tone = ToneGenerator(dtmf_spec(key), self._codec.rate, ptime)
        self._dtmf.extend(tone.frame() for _ in range(max(1, DTMF_MS // ptime)))
        self._dtmf.extend(self._codec.silence for _ in range(max(1, DTMF_GAP_MS // ptime)))

    def _on_mic(self, pcm: bytes) -> None:
        # In the loop, every ptime: a capture frame drives the whole tick.
        if self._stopped:
            return
        now = self._clock()
        self._mic_at = now
        if self._stall_since is not None:
            self._capture_resumed(now)
        if self._taken and self._hand_back(now):
            return
        self._tick(pcm, now)

    def _tick(self, pcm: bytes, now: float) -> None:
        # Send this frame (with the acks owed), or the acks alone when no media goes
        # and they have waited long enough; then play one frame.
        self._tick_at = now
        self._loss_due -= 1
        if not self._loss_due:
            self._adapt_to_loss()
        if not self._send_frame(pcm, now):
            receiver = self._receiver
            deadline = receiver.ack_deadline
            if deadline is not None and deadline <= now:
                self._transport.send(frame(self._sender.acks(receiver.take_pending_acks(now))))
        self._play_turn(now)

    # ------------------------------------------------------------ capture watchdog

    def _watch_capture(self, call_later: CallLater) -> None:
        """Start the watchdog that ticks with silence while capture gives no frames.

        A microphone that fails is handled by its adapter (silence on time, retried);
        one that just stops giving frames (a stalled USB card, reads returning
        nothing) would stop the whole tick: no media out, no acks, no playout.
        """
        self._call_later = call_later
        self._mic_at = self._clock()
        self._timer = call_later(STALL_TICKS * self._ptime / 1000, self._check_capture)

    def _check_capture(self) -> None:
        # STALL_TICKS ptimes after the last capture frame (not every tick: while
        # capture flows this costs one timer per STALL_TICKS frames).
        self._timer = None
        if self._stopped or self._call_later is None:
            return
        now = self._clock()
        ptime_s = self._ptime / 1000
        # Half a ptime of slack: a timer that fires a little early is not a frame late.
        if now - self._mic_at < (STALL_TICKS - 0.5) * ptime_s:
            delay = self._mic_at + STALL_TICKS * ptime_s - now
            self._timer = self._call_later(delay, self._check_capture)
            return
        self._stall_since = self._mic_at
        self.capture_stalls += 1
        log.warning(
            "event=capture_stalled device=%s quiet_ms=%d (the loop ticks with silence)",
            self._capture_device,
            round((now - self._mic_at) * 1000),
        )
        self._fallback_due = now
        self._fallback_tick()

    def _fallback_tick(self) -> None:
        # While capture is stalled: one tick of silence (the codec's preallocated frame,
        # through the same path, so VAD/CN/DTX apply), due times one ptime apart.
        self._timer = None
        if self._stopped or self._call_later is None or self._stall_since is None:
            return
        now = self._clock()
        self._tick(self._codec.silence, now)
        self._silent_ticks += 1
        ptime_s = self._ptime / 1000
        due = self._fallback_due + ptime_s
        if due < now - STALL_TICKS * ptime_s:
            due = now + ptime_s  # the loop was held up: go on from now, no burst
        self._fallback_due = due
        self._timer = self._call_later(max(0.0, due - now), self._fallback_tick)

    def _hand_back(self, now: float) -> bool:
        """True when this capture frame's turn was already taken by a silent tick.

        Right after a stall the capture thread may deliver the frames it owes
        back to back (it works off up to ``max_late_frames`` of lateness); the
        loop has played and sent those turns already, so a frame that comes less
        than half a ptime after the last tick is dropped, at most once per silent
        tick and only during the hand-back: no double tick, no timestamps running
        ahead of the clock, the earpiece queue does not grow.
        """
        if now > self._taken_until:
            self._taken = 0
            return False
        if now - self._tick_at >= self._ptime / 2000:
            return False
        self._taken -= 1
        return True

    def _capture_resumed(self, now: float) -> None:
        """Capture frames are back: they drive the ticks again, the watchdog goes on."""
        since = self._stall_since
        self._stall_since = None
        self._taken = self._silent_ticks
        self._taken_until = now + STALL_TICKS * self._ptime / 1000
        self._silent_ticks = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        log.info(
            "event=capture_resumed device=%s stalled_ms=%d",
            self._capture_device,
            round((now - (since or now)) * 1000),
        )
        if self._call_later is not None:
            self._timer = self._call_later(STALL_TICKS * self._ptime / 1000, self._check_capture)

    def _adapt_to_loss(self) -> None:
        # Once a second (ticks, not a timer: no wake-up of its own).  The window closes
        # whatever the codec: the hint and the sender outlive this session when the leg
        # is re-established (``previous``), and an Opus session after a G.711 one must
        # not take all of the G.711 session's chunks for its first second.
        self._loss_due = self._loss_window
        sent = self._sender.stats()
        pct = self._loss_hint.update(sent.sent, sent.resent_chunks)
        if pct is not None and self._codec.adapts_to_loss:
            self._codec.expect_loss(pct)
            log.debug("event=opus_loss_hint pct=%d", pct)

    def _send_frame(self, pcm: bytes, now: float) -> bool:
        """Encode, seal and send one capture frame; False when nothing went (DTX, CN)."""
        timestamp = self._timestamp
        self._timestamp += self._ptime
        event = None if self._events is None else self._events.next_packet(timestamp)
        if event is not None:
            # A key press going out: its telephone-event packet stands in for the audio.
            payload_type: PayloadType = PayloadType.TELEPHONE_EVENT
            timestamp, payload = event
        else:
            if self._dtmf:
                pcm = self._dtmf.popleft()
            elif self.muted:
                pcm = self._codec.silence
            vad = self._vad
            if vad is not None and not vad(pcm) and not self._dtmf:
                # Silence, and CN negotiated: a noise-level chunk now and then, else nothing.
                if timestamp - self._cn_at < CN_EVERY_MS:
                    return False
                self._cn_at = timestamp
                payload_type = PayloadType.CN
                # The background's level (the VAD's noise floor), not this frame's.
                payload = bytes((min(127, max(0, round(-vad.floor_dbov))),))
            else:
                self._cn_at = -CN_EVERY_MS  # speech: the next silence sends CN at once
                payload_type = self._codec.payload_type
                payload = self._codec.encode(pcm)
                if len(payload) <= DTX_BYTES and payload_type == PayloadType.OPUS:
                    return False  # Opus DTX: a silent frame the decoder conceals; not sent
        chunk = self._sender.media(
            self._source, self._sink, payload_type, timestamp, payload, now=now
        )
        if self._receiver.has_pending_acks:
            body = frame([chunk, *self._sender.acks(self._receiver.take_pending_acks(now))])
        else:
            body = frame([chunk])
        if self._sent_unacked_at is None:
            self._sent_unacked_at = now
        self._transport.send(body)
        return True

    # ------------------------------------------------------------ receive

    def _take_body(self, body: bytes) -> None:
        if self._stopped:
            return
        now = self._clock()
        result = self._receiver.receive(body, now)
        if result.acks:
            sender = self._sender
            for ack in result.acks:
                sender.on_ack(ack, now)
            self._acked = True
            self._sent_unacked_at = None
            # Acks of later chunks show what the path lost (after a blip: its whole
            # backlog, up to 8 s): sent again now, in one burst, with their numbers.
            resend = sender.resends(now)
            if resend:
                # 8 s of chunks can exceed the 64 KiB a media body may have (profile
                # section 1; the provider answers 413): several bodies, split between chunks.
                for part in pack_datagrams(resend, MEDIA_BODY_LIMIT):
                    self._transport.send(part)
        if result.media:
            self._received_at = now
        ours = self._codec.payload_type
        for chunk in result.media:
            payload_type = chunk.payload_type
            if payload_type == ours:
                self._jitter.push(chunk.seq, chunk.timestamp, chunk.payload, now, payload_type)
            elif payload_type == PayloadType.TELEPHONE_EVENT:
                self._take_event(chunk.seq, chunk.timestamp, chunk.payload, now)
            elif payload_type == PayloadType.CN:
                self._jitter.push(chunk.seq, chunk.timestamp, chunk.payload, now, payload_type)

    def _take_event(self, seq: int, timestamp: int, payload: bytes, now: float) -> None:
        """An RFC 4733 packet: a new press is reported; its turn plays silence, not the digit."""
        try:
            digit = self._dtmf_in.receive(timestamp, payload)
        except DTMFError:
            self.bad_frames += 1
            return
        if digit is not None and self._on_dtmf is not None:
            self._on_dtmf(digit)
        # In the jitter buffer so the audio it replaced is not taken for lost and concealed.
        self._jitter.push(seq, timestamp, b"", now, PayloadType.TELEPHONE_EVENT, timed=False)

    def _play_turn(self, now: float) -> None:
        """One ptime of the earpiece: pop the jitter buffer, decode or conceal, queue the PCM."""
        playback = self._playback
        if playback is None:
            return
        try:
            pcm = self._earpiece_pcm(self._jitter.pop(now))
            if pcm is None:
                return  # nothing due: the earpiece plays its filler (silence)
            playback.write(pcm)
        except (ValueError, AudioError):
            # A payload that does not decode to one frame: skip it, the filler plays.
            self.bad_frames += 1
            return
        self.frames_played += 1

    def _earpiece_pcm(self, item: Frame | Gap) -> bytes | None:
        """The PCM one pop of the jitter buffer plays (None: nothing due); ValueError if bad."""
        codec = self._codec
        if isinstance(item, Frame):
            kind = item.payload_type
            if kind == codec.payload_type:
                self._noise = None
                return codec.decode(item.payload)
            if kind == PayloadType.CN:
                # The far end is silent: noise at its level until its voice returns.
                self._noise = self._comfort.level(item.payload)
                return self._noise.frame()
            return codec.silence  # a telephone-event's turn
        if self._noise is not None:
            return self._noise.frame()  # between CN updates nothing is lost
        if item.next is not None and item.next.payload_type == codec.payload_type:
            return codec.recover(item.next.payload)  # Opus FEC from the next chunk
        if item.seq is not None or item.stretch:
            return codec.conceal()
        return None
