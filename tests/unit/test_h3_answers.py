"""The phone's reading of a whole 200 answer (riptphone.net.h3's shortcut past aioquic's
frame loop, for the media byways): the same events and errors as aioquic's own reading,
byte input by byte input, and the shortcut taken only for what it covers."""

from __future__ import annotations

from typing import Any

import pylsqpack
import pytest
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import FrameType, H3Connection, H3Stream, encode_frame
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import StreamDataReceived

from riptphone.net.h3 import _StaticQpackH3


def section(*headers: tuple[bytes, bytes]) -> bytes:
    _, block = pylsqpack.Encoder().encode(0, list(headers))  # as a peer with no table
    return block


OK = section((b":status", b"200"))
OK_TYPED = section((b":status", b"200"), (b"content-type", b"application/octet-stream"))
BODY = bytes(range(120))  # a two-byte DATA length
HEADERS = encode_frame(FrameType.HEADERS, OK)
DATA = encode_frame(FrameType.DATA, BODY)

# (name, pieces of the stream: (data, FIN), whether the shortcut reads it)
CASES: list[tuple[str, list[tuple[bytes, bool]], bool]] = [
    ("200 and a body", [(HEADERS + DATA, True)], True),
    ("200, no body", [(HEADERS, True)], True),
    ("200, empty body", [(HEADERS + encode_frame(FrameType.DATA, b""), True)], True),
    ("200 with content-type", [(encode_frame(FrameType.HEADERS, OK_TYPED) + DATA, True)], True),
    (
        "content-length right",
        [
            (
                encode_frame(
                    FrameType.HEADERS, section((b":status", b"200"), (b"content-length", b"120"))
                )
                + DATA,
                True,
            )
        ],
        True,
    ),
    (
        "content-length wrong",
        [
            (
                encode_frame(
                    FrameType.HEADERS, section((b":status", b"200"), (b"content-length", b"7"))
                )
                + DATA,
                True,
            )
        ],
        True,
    ),
    (
        "bad header name",
        [(encode_frame(FrameType.HEADERS, section((b":status", b"200"), (b"Bad", b"x"))), True)],
        True,
    ),
    ("404", [(encode_frame(FrameType.HEADERS, section((b":status", b"404"))) + DATA, True)], False),
    ("no FIN yet", [(HEADERS + DATA, False), (b"", True)], False),
    ("in two pieces", [(HEADERS, False), (DATA, True)], False),
    ("two DATA frames", [(HEADERS + DATA + DATA, True)], False),
    ("a reserved frame after", [(HEADERS + DATA + encode_uint_var(0x21) + b"\x00", True)], False),
    ("DATA cut short", [(HEADERS + DATA[:-1], True)], False),
    ("HEADERS cut short", [(HEADERS[:-1], True)], False),
    ("DATA first", [(DATA, True)], False),
    (
        "interim first",
        [(encode_frame(FrameType.HEADERS, section((b":status", b"103"))) + HEADERS, True)],
        False,
    ),
]


def client(cls: type[H3Connection]) -> H3Connection:
    quic = QuicConnection(configuration=QuicConfiguration(is_client=True))
    h3 = cls(quic)
    h3._stream.clear()
    closed: list[Any] = []
    quic.close = lambda **kw: closed.append(kw)  # type: ignore[method-assign]
    h3.closed = closed  # type: ignore[attr-defined]
    return h3


def read(cls: type[H3Connection], pieces: list[tuple[bytes, bool]]) -> tuple[list[Any], Any]:
    h3 = client(cls)
    h3._quic.send_stream_data(0, b"", end_stream=False)  # our request's stream
    events: list[Any] = []
    for data, fin in pieces:
        events += h3.handle_event(StreamDataReceived(data=data, end_stream=fin, stream_id=0))
    return events, (h3.closed, sorted(h3._stream))  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "pieces", "short"), CASES, ids=[c[0] for c in CASES])
def test_a_whole_answer_reads_as_aioquic_reads_it(
    name: str, pieces: list[tuple[bytes, bool]], short: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = read(H3Connection, pieces)
    generic: list[int] = []
    loop = H3Connection._receive_request_or_push_data

    def counting(self: H3Connection, *args: Any) -> Any:
        generic.append(1)
        return loop(self, *args)

    monkeypatch.setattr(H3Connection, "_receive_request_or_push_data", counting)
    assert read(_StaticQpackH3, pieces) == expected
    assert (not generic) == short


def test_the_usual_answer_gives_its_headers_and_body() -> None:
    events, (closed, _) = read(_StaticQpackH3, [(HEADERS + DATA, True)])
    assert [type(e).__name__ for e in events] == ["HeadersReceived", "DataReceived"]
    assert events[0].headers == [(b":status", b"200")] and not events[0].stream_ended
    assert events[1].data == BODY and events[1].stream_ended
    assert closed == []


def test_the_end_of_a_webtransport_stream_is_not_taken_for_an_answer() -> None:
    # A peer-opened WebTransport stream whose last piece happens to look like a
    # whole 200 answer: it is stream data, as aioquic reads it.
    def events(cls: type[H3Connection]) -> list[str]:
        h3 = client(cls)
        h3._enable_webtransport = True
        opened = encode_uint_var(FrameType.WEBTRANSPORT_STREAM) + encode_uint_var(0)
        stream_id = 1  # opened by the server, both ways
        got = h3.handle_event(
            StreamDataReceived(data=opened, end_stream=False, stream_id=stream_id)
        )
        got += h3.handle_event(
            StreamDataReceived(data=HEADERS + DATA, end_stream=True, stream_id=stream_id)
        )
        return [type(e).__name__ for e in got]

    assert events(_StaticQpackH3) == events(H3Connection)
    assert "HeadersReceived" not in events(_StaticQpackH3)


def test_a_request_on_a_stream_the_peer_already_ended_is_dropped_as_aioquic_drops_it() -> None:
    # send_encoded leaves the H3 stream table as send_headers + send_data with FIN do.
    def table(cls: type[_StaticQpackH3], encoded: bool) -> list[int]:
        h3 = client(cls)
        h3._quic.send_stream_data(0, b"", end_stream=False)
        stream = h3._stream[0] = H3Stream(0)
        stream.receiving_ended = True  # the peer's side is over already
        if encoded:
            h3.send_encoded(0, encode_frame(FrameType.HEADERS, OK))
        else:
            h3.send_headers(0, [(b":method", b"GET")], end_stream=True)
        return sorted(h3._stream)

    assert table(_StaticQpackH3, encoded=True) == table(_StaticQpackH3, encoded=False) == []
