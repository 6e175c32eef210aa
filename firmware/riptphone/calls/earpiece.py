"""The earpiece: the local tones and the ringer, taking the playback device in turn.

A tone and a call's media must not hold the same ALSA device at once; every
use goes through one lock, and :meth:`Earpiece.free` (called before a call's
media starts) silences both players first.
"""

from __future__ import annotations

import asyncio

from riptphone.hw.tone_player import TonePlayer


class Earpiece:
    """The tone player and the ringer player behind one lock."""

    def __init__(self, tones: TonePlayer, ringer: TonePlayer) -> None:
        self.tones = tones
        self.ringer = ringer
        self._lock = asyncio.Lock()

    async def free(self) -> None:
        """Before a call's media starts: no tone may hold the playback device."""
        async with self._lock:
            await asyncio.to_thread(self.tones.play, None)
            await asyncio.to_thread(self.ringer.play, None)

    async def tone(self, kind: str | None) -> None:
        """Play the local tone ``kind`` (dial, busy...), or stop it (None)."""
        async with self._lock:
            await asyncio.to_thread(self.tones.play, kind)

    async def ring(self, on: bool) -> None:
        async with self._lock:
            await asyncio.to_thread(self.ringer.play, "ring" if on else None)

    async def retarget(self, tones: TonePlayer, ringer: TonePlayer) -> None:
        """Play tones and rings on other devices from now on (a re-read configuration)."""
        async with self._lock:
            old = (self.tones, self.ringer)
            self.tones, self.ringer = tones, ringer
            for player in old:
                await asyncio.to_thread(player.close)

    async def close(self) -> None:
        await asyncio.to_thread(self.tones.close)
        await asyncio.to_thread(self.ringer.close)
