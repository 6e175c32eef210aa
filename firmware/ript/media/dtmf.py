"""RFC 4733 telephone-events for DTMF: payload codec, key-press sender, de-duplicating receiver.

Payload (RFC 4733 section 2.3)::

    event (8) | E (1) | R (1) | volume (6) | duration (16, big-endian)

Events 0-9 are the digits, 10 ``*``, 11 ``#``, 12-15 ``A``-``D`` (section 3.2).
All packets of one key press share one timestamp (the press's start), which is
how the receiver tells a new press from a retransmission.  Durations are in
units of the telephone-event clock (8000 Hz unless told otherwise).
Malformed payloads raise :class:`DTMFError`.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

__all__ = [
    "DIGITS",
    "DTMFError",
    "DTMFReceiver",
    "EventSender",
    "KeyPress",
    "TelephoneEvent",
    "decode_event",
    "encode_event",
    "press_packets",
]

DIGITS = "0123456789*#ABCD"
"""Index = RFC 4733 event code."""

PAYLOAD_SIZE = 4
MAX_DURATION = 0xFFFF
END_REPEATS = 3
"""RFC 4733 section 2.5.1.4: the end packet is sent three times."""


class DTMFError(ValueError):
    """A telephone-event payload, digit or key-press description is not valid."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 payload: ``event``, ``end`` bit, ``volume`` (-dBm0, 0..63), ``duration``."""

    event: int
    end: bool
    volume: int
    duration: int

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 255:
            raise DTMFError(f"telephone-event code must be 0..255, got {self.event}")
        if not 0 <= self.volume <= 63:
            raise DTMFError(f"telephone-event volume must be 0..63 (-dBm0), got {self.volume}")
        if not 0 <= self.duration <= MAX_DURATION:
            raise DTMFError(f"telephone-event duration must be 0..65535, got {self.duration}")

    @property
    def digit(self) -> str | None:
        """The DTMF key for this event, or None for a non-DTMF event."""
        return DIGITS[self.event] if self.event < len(DIGITS) else None


def encode_event(event: TelephoneEvent) -> bytes:
    """The 4-byte payload for ``event`` (the reserved R bit is sent as 0)."""
    flags = (0x80 if event.end else 0) | event.volume
    return bytes((event.event, flags)) + event.duration.to_bytes(2, "big")


def decode_event(payload: bytes) -> TelephoneEvent:
    """Parse one 4-byte payload; the R bit is ignored as RFC 4733 asks."""
    if len(payload) != PAYLOAD_SIZE:
        raise DTMFError(f"telephone-event payload must be 4 bytes, got {len(payload)}")
    return TelephoneEvent(
        payload[0], bool(payload[1] & 0x80), payload[1] & 0x3F, int.from_bytes(payload[2:], "big")
    )


def event_code(digit: str) -> int:
    """The RFC 4733 event code for a DTMF key."""
    code = DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise DTMFError(f"{digit!r} is not a DTMF key (0-9, *, #, A-D)")
    return code


@dataclass(frozen=True, slots=True)
class KeyPress:
    """One packet to send for a key press: send ``payload`` at ``offset_ms`` after the start.

    Every packet of the press carries the same media timestamp (the press's start);
    ``marker`` is True on the first one only.
    """

    offset_ms: int
    payload: bytes
    marker: bool


def press_packets(
    digit: str,
    duration_ms: int = 100,
    *,
    volume: int = 10,
    packet_ms: int = 20,
    clock_rate: int = 8000,
) -> list[KeyPress]:
    """The packets for one key press of ``duration_ms``: start, updates, then 3 end packets.

    The first packet goes out at once with the duration so far of one packet
    interval; an update follows every ``packet_ms``; the final duration is
    repeated in three end packets, one per interval.
    """
    code = event_code(digit)
    if duration_ms <= 0 or packet_ms <= 0:
        raise DTMFError(
            f"key press and packet interval must be positive, got {duration_ms}, {packet_ms} ms"
        )
    units = duration_ms * clock_rate // 1000
    if units > MAX_DURATION:
        raise DTMFError(f"a {duration_ms} ms key press overflows the 16-bit duration field")
    packets: list[KeyPress] = []
    elapsed = packet_ms
    while elapsed < duration_ms:
        so_far = elapsed * clock_rate // 1000
        payload = encode_event(TelephoneEvent(code, False, volume, so_far))
        packets.append(KeyPress(elapsed - packet_ms, payload, not packets))
        elapsed += packet_ms
    end = encode_event(TelephoneEvent(code, True, volume, units))
    start_at = packets[-1].offset_ms + packet_ms if packets else 0
    for i in range(END_REPEATS):
        packets.append(KeyPress(start_at + i * packet_ms, end, not packets))
    return packets


class DTMFReceiver:
    """Turns received telephone-event payloads into key presses, each reported once.

    A press is identified by its timestamp: the first packet of a new timestamp
    reports the digit (start packets, updates and the three end packets of the
    same press report nothing more), even if its start packets were lost.
    """

    __slots__ = ("_seen",)

    _MEMORY = 32  # presses remembered, enough for any reordering within a jitter window

    def __init__(self) -> None:
        self._seen: OrderedDict[int, None] = OrderedDict()

    def receive(self, timestamp: int, payload: bytes) -> str | None:
        """Feed one payload; returns the digit if it starts a press not seen before."""
        event = decode_event(payload)
        if timestamp in self._seen:
            return None
        self._seen[timestamp] = None
        if len(self._seen) > self._MEMORY:
            self._seen.popitem(last=False)
        return event.digit


class EventSender:
    """Key presses waiting to go out as RFC 4733 packets, one per packet interval.

    The media session asks :meth:`next_packet` once per outgoing chunk (every
    ptime) and, while a press is pending, sends its packet in place of an audio
    frame: RFC 4733 section 2.5.1.1 lets the sender suppress the audio of the
    digit.  Every packet of one press carries the media timestamp of its first
    packet (the press's start), as section 2.5.1.2 requires; presses keyed
    while one is going out follow it.  Pure: the packets are built at the key
    press, none on the 20 ms path.
    """

    __slots__ = ("_duration_ms", "_packet_ms", "_packets", "_start", "_volume")

    def __init__(self, packet_ms: int, duration_ms: int = 100, volume: int = 10) -> None:
        if packet_ms <= 0 or duration_ms <= 0:
            raise DTMFError(
                f"packet interval and press must be positive: {packet_ms}, {duration_ms}"
            )
        self._packet_ms = packet_ms
        self._duration_ms = duration_ms
        self._volume = volume
        self._packets: deque[KeyPress] = deque()
        self._start = 0

    def press(self, digit: str) -> None:
        """Queue one press of ``digit`` (DTMFError if it is not a DTMF key)."""
        self._packets.extend(
            press_packets(digit, self._duration_ms, volume=self._volume, packet_ms=self._packet_ms)
        )

    @property
    def pending(self) -> bool:
        return bool(self._packets)

    def next_packet(self, timestamp_ms: int) -> tuple[int, bytes] | None:
        """(event timestamp, payload) to send now, at media time ``timestamp_ms``; or None."""
        if not self._packets:
            return None
        packet = self._packets.popleft()
        if packet.marker:
            self._start = timestamp_ms  # the first packet of a press: its start
        return self._start, packet.payload
