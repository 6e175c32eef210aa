"""The phone machine's states and their groups, and how they map onto the profile's states.

Apart from :mod:`riptphone.app.machine` so that :mod:`riptphone.app.screens`
can tell the states apart without importing the machine (which imports it).
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    """The machine's states; :data:`PROFILE_STATE` maps them onto profile section 11."""

    PROVISIONING = "provisioning"
    OFFLINE = "offline"
    IDLE = "idle"
    DIALLING = "dialling"
    CALLING = "calling"
    RINGING = "ringing"
    ANSWERING = "answering"
    IN_CALL = "in-call"
    REMOTE = "remote-in-use"
    ENDED = "ended"


PROFILE_STATE: dict[State, str] = {
    State.PROVISIONING: "provisioning",
    State.OFFLINE: "offline",
    State.IDLE: "idle",
    State.DIALLING: "dialing",
    State.CALLING: "calling",
    State.RINGING: "ringing",
    # Answering is a moment (our POST {call} under way); the call is still
    # ringing as far as the provider and the control socket are concerned.
    State.ANSWERING: "ringing",
    State.IN_CALL: "in-call",
    State.REMOTE: "remote-in-use",
    State.ENDED: "ended",
}

NOT_ONLINE = (State.PROVISIONING, State.OFFLINE)
AT_REST = (State.IDLE, State.DIALLING, State.ENDED)
WITH_CALL = (State.CALLING, State.RINGING, State.ANSWERING, State.IN_CALL, State.REMOTE)
