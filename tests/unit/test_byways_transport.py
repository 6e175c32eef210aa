"""BywaysTransport's held GETs against a provider that refuses them (no network: a stub)."""

from __future__ import annotations

import asyncio
from typing import Any

from riptphone.calls.transport import GET_REFUSED_MAX_S, GET_RETRY_S, GETS, BywaysTransport


class _Stream:
    def reset(self) -> None:
        pass


class _Refusing:
    """Media byways whose every GET is answered ``status`` (a 403, then maybe a 200)."""

    def __init__(self) -> None:
        self.status = 403
        self.gets = 0

    def get_nowait(self, on_complete: Any) -> _Stream:
        self.gets += 1
        stream = _Stream()
        asyncio.get_running_loop().call_soon(on_complete, stream, self.status, b"", None)
        return stream

    async def get(self) -> tuple[int, bytes]:
        self.gets += 1
        return self.status, b""

    def close(self) -> None:
        pass


def test_refused_gets_are_asked_again_ever_more_slowly_and_at_once_after_an_answer() -> None:
    async def call() -> tuple[int, int, list[bytes]]:
        byways = _Refusing()
        bodies: list[bytes] = []
        transport = BywaysTransport(byways)  # type: ignore[arg-type]
        transport.start(bodies.append)
        await asyncio.sleep(1.0)
        refused = byways.gets
        # The provider answers again: the next reopened GET is taken, and its slot goes on
        # at once (no pause after an answer), the others at the pause they were given.
        byways.status = 200
        await asyncio.sleep(GET_REFUSED_MAX_S + 0.5)
        answered = byways.gets
        transport.stop()
        return refused, answered, bodies

    refused, answered, bodies = asyncio.run(call())
    # At a fixed GET_RETRY_S the 20 slots would have asked about 100 times in the second.
    assert GETS <= refused <= GETS + 6, refused
    assert answered > refused + 100  # answered GETs reopen at once
    assert len(bodies) > 100
    assert GET_RETRY_S < GET_REFUSED_MAX_S
