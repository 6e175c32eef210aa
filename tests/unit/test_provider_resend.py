"""The provider's re-send of a blip's backlog over media byways (held GETs)."""

from __future__ import annotations

import asyncio
from typing import Any

from ript.protocol.chunks import PayloadType, frame
from ript.protocol.events import Direction
from ript.protocol.media_streams import ChunkReceiver, ChunkSender
from riptprovider.server import RunningServer, _HeldGet, _Media


class _Conn:
    """Records the answers of the held GETs."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, int, bytes]] = []

    def respond(self, stream_id: int, status: int, body: bytes = b"", *_: Any) -> None:
        self.answers.append((stream_id, status, body))


def test_a_resent_backlog_answers_several_held_gets_of_at_most_64_kib_each() -> None:
    async def blip() -> tuple[_Conn, list[_HeldGet]]:
        media = _Media("https://p.example/calls/1", None, None, [])
        sender, now = media.sender, 100.0
        big = bytes(900)  # 8 s of a 360 kbit/s stream fell into a blackhole
        for i in range(400):
            sender.media(1, 1, PayloadType.OPUS, 20 * i, big, now=now)
        now += 1.0
        back = sender.media(1, 1, PayloadType.OPUS, 8000, big, now=now)
        phone = ChunkReceiver(Direction.S2C, None)
        phone.receive(frame([back]), now)
        now += 0.02
        acks = ChunkSender(Direction.C2S, None).acks(phone.take_pending_acks(now))
        for ack in media.receiver.receive(frame(acks), now).acks:
            sender.on_ack(ack, now)
        conn = _Conn()
        loop = asyncio.get_running_loop()
        media.waiting = [_HeldGet(conn, sid, loop.create_future()) for sid in range(20)]  # type: ignore[arg-type]
        RunningServer._resend(media, now)
        return conn, media.waiting

    conn, waiting = asyncio.run(blip())
    bodies = [body for _, status, body in conn.answers if status == 200]
    assert len(bodies) >= 6 and max(len(b) for b in bodies) <= 65536  # the phone reads no more
    phone = ChunkReceiver(Direction.S2C, None)
    got = [c.seq for body in bodies for c in phone.receive(body, 101.0).media]
    assert got == list(range(398))  # every lost chunk once, oldest first
    assert len(waiting) == 20 - len(bodies)  # one GET per body, the others still held
