"""The screen the phone shows in each state, built from the machine's state.

:func:`make_screen` is the machine's own view of itself, apart from
:mod:`riptphone.app.machine` (which holds the transition table and its
handlers) only for size: it reads the machine's private fields, and the
machine calls it after every input (:meth:`PhoneMachine.handle`) to find out
whether the screen changed.  It builds :mod:`riptphone.ui.model` values and
changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ript.protocol.numbers import DialMatch, NumberError
from riptphone.app.states import State
from riptphone.ui import model
from riptphone.ui.model import Screen

if TYPE_CHECKING:
    from riptphone.app.machine import PhoneMachine


def make_screen(m: PhoneMachine) -> Screen:
    """What the OLED shows in the machine's present state."""
    s = m._state
    call = m._call
    if m.resetting and s in (State.OFFLINE, State.PROVISIONING):
        return model.Resetting()
    if s is State.PROVISIONING:
        p = m._provisioning
        assert p is not None
        return model.NotProvisioned(p.url, p.user_code, p.expires_in_s)
    if s is State.OFFLINE:
        o = m._offline
        return model.NotConnected(o.reason, o.registering, o.retry_in_s)
    if s is State.IDLE:
        # The clock is the daemon's to fill in at render time: the machine
        # reads no wall clock and no time zone.
        return model.Idle(
            m.number,
            m.name,
            clock="",
            registered=m.registered,
            push=m.push,
            missed=m.missed,
            dnd=m.dnd,
            last_error=m._notice,
        )
    if s is State.DIALLING:
        return dialling_screen(m)
    if s is State.ENDED:
        assert m._ended is not None
        return m._ended
    assert call is not None
    if s is State.CALLING:
        return model.Calling(call.peer, call.peer_name, call.alerting)
    if s is State.RINGING:
        return model.Ringing(call.peer, call.peer_name, call.offer_outbound)
    if s is State.REMOTE:
        return model.RemoteInUse(call.peer, call.device, call.peer_name)
    return model.InCall(
        call.peer,
        m._talk_seconds(call) if call.talk_from is not None else 0,
        call.peer_name,
        codec=call.codec,
        quality=call.quality,
        no_audio=call.no_audio,
        muted=m.muted,
        reconnecting=call.reconnecting,
        volume=m.volume if m._volume_until is not None else None,
    )


def dialling_screen(m: PhoneMachine) -> model.Dialling:
    """The dialling screen: what was typed, its E.164 preview, or why it cannot be dialled."""
    typed = m._typed
    preview = problem = None
    if typed and not typed.startswith("*"):  # feature codes are not numbers
        try:
            preview = m.plan.normalise(typed)
        except NumberError as exc:
            if m.plan.match(typed) is DialMatch.NO_MATCH:
                problem = str(exc)
    return model.Dialling(typed, preview, m._notice or problem)
