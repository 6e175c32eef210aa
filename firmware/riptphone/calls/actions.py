"""What a call's state machine says, as the phone machine's call inputs.

Pure: :func:`call_inputs` maps one :class:`ript.protocol.call.Action` of one
:class:`~ript.protocol.call.Call` to the inputs of
:class:`~riptphone.app.machine.PhoneMachine`; the registry feeds them.  The
inputs name the call by its ``first_uri``, so a call the provider moves to
another URI (``migrate``) stays the same call on screen and in the call log.
"""

from __future__ import annotations

from typing import Literal

from ript.protocol.call import (
    Action,
    BywaysChanged,
    BywayState,
    Call,
    CallEnded,
    CallState,
    PeerConnectivity,
    Ring,
    StateChanged,
)
from ript.protocol.descriptions import CallDirection
from riptphone.app.inputs import (
    CallGone,
    CallOffered,
    CallProgress,
    CallReconnecting,
    CallRemote,
    CallResumed,
    Input,
)

PHASES: dict[CallState, Literal["calling", "alerting", "in-call"]] = {
    CallState.PROCEEDING: "calling",
    CallState.ALERTING: "alerting",
    CallState.ACTIVE: "in-call",
}
"""The call states the phone shows as a call of its own under way."""


def call_inputs(call: Call, action: Action, codec: str | None = None) -> list[Input]:
    """The inputs ``action`` of ``call`` makes; ``codec`` is the call's media codec, if any."""
    if isinstance(action, StateChanged):
        value = state_input(call, action.new, codec)
        return [] if value is None else [value]
    if isinstance(action, Ring):
        return [offered(call)]
    if isinstance(action, BywaysChanged):
        if action.state is BywayState.UP:
            return [CallReconnecting(call.first_uri, False)]
        if action.reason is not None:  # re-establishing after a fault
            return [CallReconnecting(call.first_uri, True)]
        return []
    if isinstance(action, PeerConnectivity):
        return [CallReconnecting(call.first_uri, action.reconnecting)]
    if isinstance(action, CallEnded):
        return [CallGone(call.first_uri, action.reason)]
    return []


def state_input(call: Call, state: CallState, codec: str | None = None) -> Input | None:
    """The input for ``call`` entering ``state``, or None for a passing state."""
    if state in PHASES:
        return CallProgress(
            call.first_uri, PHASES[state], codec=codec if state is CallState.ACTIVE else None
        )
    if state is CallState.REMOTE:
        return remote(call)
    if state is CallState.RINGING:
        return offered(call)
    return None  # answering, pulling: a moment; ended: CallEnded follows


def started_inputs(call: Call, *, resumed: bool) -> list[Input]:
    """What a call just followed shows at once: in use elsewhere, or (resumed) ours again."""
    if call.state is CallState.REMOTE:
        return [remote(call)]
    if resumed and call.state in PHASES:
        # A call this phone carried before it restarted: the machine takes it up again or
        # hangs it up, as the handset is up or down (docs/phone-states.md).
        outbound = call.direction is CallDirection.OUTBOUND
        return [CallResumed(call.first_uri, call.peer, PHASES[call.state], outbound=outbound)]
    return []


def remote(call: Call) -> CallRemote:
    return CallRemote(call.first_uri, call.peer, outbound=call.direction is CallDirection.OUTBOUND)


def offered(call: Call) -> CallOffered:
    return CallOffered(call.first_uri, call.peer, outbound=call.direction is CallDirection.OUTBOUND)
