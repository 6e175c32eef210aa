"""RFC 4733 telephone-events: payload codec, key-press sender, receiver (ript.media.dtmf)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ript.media.dtmf import (
    DIGITS,
    DTMFError,
    DTMFReceiver,
    EventSender,
    TelephoneEvent,
    decode_event,
    encode_event,
    event_code,
    press_packets,
)


def test_payload_layout_rfc4733_section_2_3() -> None:
    # Event 5, E bit set, volume 10, duration 800 (100 ms at 8 kHz).
    assert encode_event(TelephoneEvent(5, True, 10, 800)) == b"\x05\x8a\x03\x20"
    assert decode_event(b"\x05\x8a\x03\x20") == TelephoneEvent(5, True, 10, 800)
    # The reserved R bit (0x40) is ignored on receipt.
    assert decode_event(b"\x0b\x4a\x00\xa0") == TelephoneEvent(11, False, 10, 160)


def test_event_codes_rfc4733_section_3_2() -> None:
    assert [event_code(d) for d in "0123456789*#ABCD"] == list(range(16))
    assert event_code("a") == 12
    assert TelephoneEvent(11, False, 0, 0).digit == "#"
    assert TelephoneEvent(16, False, 0, 0).digit is None  # flash, not a key
    with pytest.raises(DTMFError, match="not a DTMF key"):
        event_code("55")


def test_bad_values_are_refused() -> None:
    with pytest.raises(DTMFError, match="volume"):
        TelephoneEvent(1, False, 64, 0)
    with pytest.raises(DTMFError, match="duration"):
        TelephoneEvent(1, False, 0, 70000)
    with pytest.raises(DTMFError, match="4 bytes, got 3"):
        decode_event(b"\x01\x02\x03")
    with pytest.raises(DTMFError, match="overflows"):
        press_packets("1", 9000)
    with pytest.raises(DTMFError, match="positive"):
        press_packets("1", 0)


def test_press_packets_start_updates_and_three_ends() -> None:
    packets = press_packets("9", 100)
    events = [decode_event(p.payload) for p in packets]
    assert [p.offset_ms for p in packets] == [0, 20, 40, 60, 80, 100, 120]
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert all(e.event == 9 and e.volume == 10 for e in events)
    assert [e.duration for e in events[:4]] == [160, 320, 480, 640]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.duration for e in events[4:]} == {800}
    assert packets[4].payload == packets[5].payload == packets[6].payload


def test_a_press_shorter_than_a_packet_is_three_end_packets() -> None:
    packets = press_packets("#", 10, clock_rate=16000)
    events = [decode_event(p.payload) for p in packets]
    assert [e.end for e in events] == [True, True, True]
    assert events[0].duration == 160
    assert packets[0].marker


def test_receiver_reports_each_press_once() -> None:
    rx = DTMFReceiver()
    got = [rx.receive(1000, p.payload) for p in press_packets("4", 120)]
    got += [rx.receive(1000, p.payload) for p in press_packets("4", 120)]  # all repeated
    got += [rx.receive(1400, p.payload) for p in press_packets("4", 60)]  # a new press
    assert [d for d in got if d is not None] == ["4", "4"]


def test_receiver_reports_a_press_whose_start_was_lost() -> None:
    rx = DTMFReceiver()
    ends = [p for p in press_packets("*", 100) if decode_event(p.payload).end]
    assert [rx.receive(50, p.payload) for p in ends] == ["*", None, None]


def test_receiver_ignores_non_dtmf_events_and_refuses_bad_payloads() -> None:
    rx = DTMFReceiver()
    assert rx.receive(10, encode_event(TelephoneEvent(16, False, 0, 160))) is None
    with pytest.raises(DTMFError):
        rx.receive(20, b"\x01")


@given(st.binary(max_size=8), st.integers(min_value=0, max_value=2**64 - 1))
def test_any_bytes_decode_or_raise_the_module_error(payload: bytes, ts: int) -> None:
    try:
        digit = DTMFReceiver().receive(ts, payload)
    except DTMFError:
        assert len(payload) != 4
    else:
        assert digit is None or digit in DIGITS
        assert encode_event(decode_event(payload)) == bytes(
            (payload[0], payload[1] & 0xBF, *payload[2:])
        )


def test_the_event_sender_stamps_each_press_with_its_start() -> None:
    sender = EventSender(60)
    assert sender.next_packet(1000) is None and not sender.pending
    sender.press("9")
    sender.press("*")
    sent = []
    t = 1000
    while sender.pending:
        packet = sender.next_packet(t)
        assert packet is not None
        sent.append((packet[0], decode_event(packet[1])))
        t += 60
    # ptime 60: one start packet (480 units), then three end packets of 800 units (100 ms).
    assert [(ts, e.event, e.end, e.duration) for ts, e in sent] == [
        (1000, 9, False, 480),
        (1000, 9, True, 800),
        (1000, 9, True, 800),
        (1000, 9, True, 800),
        (1240, 10, False, 480),
        (1240, 10, True, 800),
        (1240, 10, True, 800),
        (1240, 10, True, 800),
    ]
    with pytest.raises(DTMFError, match="not a DTMF key"):
        sender.press("x")
