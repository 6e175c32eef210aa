"""The phone: its state (profile section 11) and what the control socket may do to it.

:class:`Phone` implements :class:`riptphone.control.ControlHandler` and owns
the connection to the provider: :meth:`Phone.connect` discovers the TG,
keeps the one handler (profile section 4) and enrols a certificate, retrying
with backoff while the provider cannot be reached (the phone says
``offline`` and why).  ``dial`` checks the number locally first (dial plan,
then the TG's outbound destinations), so a number the line may not call
never reaches the provider; then it signs a PASSporT and places the call,
whose machine is run by :class:`riptphone.call_runner.CallRunner`.

Every state change is published on the control socket as a ``state`` line,
every call change as a ``call`` line and every refusal as an ``error`` line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, NoReturn

from cryptography.hazmat.primitives.asymmetric import ec

from riptphone.call_runner import CallRunner
from riptphone.config import Config
from riptphone.control import ControlRefused
from riptphone.net.ript_client import RiptClient, RiptError
from riptphone.protocol.advertisement import format_advertisement, phone_advertisement
from riptphone.protocol.call import Action, BywaysChanged, Call, CallEnded, CallState, StateChanged
from riptphone.protocol.csr import build_csr, key_from_pem, key_to_pem, make_key
from riptphone.protocol.descriptions import TrunkGroup
from riptphone.protocol.numbers import NumberError, is_e164
from riptphone.protocol.passport import create_passport
from riptphone.store import Identity, Registration, StateStore

log = logging.getLogger(__name__)

FIRST_RETRY = 1.0
MAX_RETRY = 60.0

_PHONE_STATE = {
    CallState.PROCEEDING: "calling",
    CallState.ALERTING: "calling",
    CallState.RINGING: "ringing",
    CallState.ANSWERING: "ringing",
    CallState.ACTIVE: "in-call",
    CallState.REMOTE: "remote-in-use",
    CallState.PULLING: "remote-in-use",
    CallState.ENDED: "ended",
}


class Phone:
    """One phone on one provider line; see the module docstring."""

    def __init__(self, config: Config, store: StateStore, client: RiptClient) -> None:
        self.config = config
        self.store = store
        self.client = client
        self.plan = config.dialplan.plan()
        self.publish: Callable[[Mapping[str, Any]], None] = lambda _event: None
        self.state = "offline"
        self.offline_reason: str | None = "not connected yet"
        self.off_hook = False
        self.typed = ""
        self.number = config.phone.number or None
        self.tg: TrunkGroup | None = None
        self.registration: Registration | None = None
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._cert_uri: str | None = None
        self._call: Call | None = None
        self._runner: CallRunner | None = None
        self._call_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ going online

    async def connect(self) -> None:
        """Come online, retrying with doubling backoff; returns once the phone is idle."""
        delay = FIRST_RETRY
        while True:
            try:
                await self._connect_once()
                return
            except (RiptError, NumberError, ValueError) as exc:
                self.offline_reason = str(exc)
                log.warning("event=offline reason=%r retry_in=%g", self.offline_reason, delay)
                self._set_state("offline")
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY)

    async def _connect_once(self) -> None:
        tg = await self.client.discover(self.config.provider.trunk_group or None)
        advertisement = format_advertisement(phone_advertisement())
        registration, done = await self.client.ensure_registration(
            self.store, tg, name=self.config.phone.name, advertisement=advertisement
        )
        log.info("event=registration done=%s handler=%s", done, registration.handler_uri)
        number = self.config.phone.number or _own_number(tg)
        await self._ensure_identity(tg, number)
        self.tg, self.registration, self.number = tg, registration, number
        self.offline_reason = None
        self._set_state("dialing" if self.off_hook else "idle")

    async def _ensure_identity(self, tg: TrunkGroup, number: str) -> None:
        loaded = await asyncio.to_thread(self.store.load_identity)
        identity = loaded.data
        if identity is not None and identity.cert_uri and identity.cert_chain_pem:
            self._key = key_from_pem(identity.key_pem)
            self._cert_uri = identity.cert_uri
            return
        key = key_from_pem(identity.key_pem) if identity is not None else make_key()
        chain, cert_uri = await self.client.enroll(tg, build_csr(key, number))
        identity = Identity(key_pem=key_to_pem(key), cert_chain_pem=chain, cert_uri=cert_uri)
        await asyncio.to_thread(self.store.save_identity, identity)
        log.info("event=enrolled cert=%s", cert_uri)
        self._key, self._cert_uri = key, cert_uri

    # ------------------------------------------------------------ ControlHandler

    def status(self) -> dict[str, Any]:
        call = self._call
        return {
            "state": self.state,
            "registered": self.registration is not None,
            "push": "none",
            "number": self.number,
            "handler": self.registration.handler_uri if self.registration else None,
            "call": None if call is None else _call_json(call),
            "screen": self._screen(),
            "reason": self.offline_reason,
        }

    def hook(self, state: Literal["off", "on"]) -> None:
        if state == "on":
            self.off_hook = False
            self.typed = ""
            if self._runner is not None:
                self._runner.hangup()
            elif self.state == "dialing":
                self._set_state("idle")
            return
        self.off_hook = True
        if self.state == "idle":
            self._set_state("dialing")

    async def key(self, key: str) -> None:
        if self.state not in ("idle", "dialing"):
            raise ControlRefused(f"key {key!r} does nothing while the phone is {self.state}")
        if key == "#":
            typed, self.typed = self.typed, ""
            await self.dial(typed + "#")
        elif key.isdigit() or key == "*":
            self.typed += key
            if self.state == "idle":
                self.off_hook = True
                self._set_state("dialing")
        else:
            raise ControlRefused(f"the phone has no button {key!r}")

    async def dial(self, number: str) -> None:
        if self.state == "offline":
            self._refuse(f"cannot dial: the phone is offline ({self.offline_reason})")
        if self.state not in ("idle", "dialing"):
            self._refuse(f"cannot dial while the phone is {self.state}")
        try:
            e164 = self.plan.normalise(number)
        except NumberError as exc:
            self._refuse(f"cannot dial {number.strip()!r}: {exc}")
        tg, registration = self.tg, self.registration
        assert tg is not None and registration is not None and registration.handler_uri
        assert self._key is not None and self._cert_uri is not None and self.number is not None
        if not tg.outbound.destinations.allows(e164):
            self._refuse(
                f"{e164} is outside the numbers this line may call ({tg.outbound.destinations})"
            )
        self._set_state("calling")
        passport = create_passport(self._key, self._cert_uri, self.number, e164, int(time.time()))
        try:
            description = await self.client.place_call(
                tg, handler=registration.handler_uri, destination=e164, passport=passport
            )
        except RiptError as exc:
            self._set_state("dialing" if self.off_hook else "idle")
            refused = exc.status in (403, 404)
            self._refuse(f"the provider refused: {exc}" if refused else f"the call failed: {exc}")
        log.info("event=call_placed call=%s", description.uri)
        call = Call(
            description,
            own_handler=registration.handler_uri,
            media_timeout=tg.media_timeout_ms / 1000,
            retry_backoff=tg.retry_backoff_ms / 1000,
        )
        self._start_call(call)

    def pull(self) -> None:
        raise ControlRefused("nothing to pull")

    # ------------------------------------------------------------ calls

    def _start_call(self, call: Call) -> None:
        self._call = call
        self._runner = CallRunner(self.client, call, self._on_action, audio=self.config.audio)
        self._call_task = asyncio.get_running_loop().create_task(self._run_call(self._runner))

    async def _run_call(self, runner: CallRunner) -> None:
        try:
            await runner.run()
        except Exception:
            log.exception("event=call_failed call=%s", runner.call.uri)
        finally:
            if self._runner is runner:
                self._runner = None
                self._call = None
                self._set_state("dialing" if self.off_hook else "idle")

    def _on_action(self, action: Action) -> None:
        call = self._call
        if call is None:
            return
        if isinstance(action, StateChanged):
            log.info("event=call_state call=%s state=%s", call.uri, action.new.value)
            self.publish({"event": "call", "call": _call_json(call)})
            self._set_state(_PHONE_STATE[action.new])
        elif isinstance(action, BywaysChanged):
            log.info(
                "event=byways call=%s state=%s reason=%r",
                call.uri,
                action.state.value,
                action.reason,
            )
        elif isinstance(action, CallEnded):
            log.info("event=call_ended call=%s reason=%r", call.uri, action.reason)
            self.publish({"event": "call", "call": _call_json(call)})

    async def close(self) -> None:
        """Hang up a call in progress and wait (briefly) for its end to be sent."""
        task = self._call_task
        if self._runner is not None:
            self._runner.hangup()
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(task, 2.0)
            except TimeoutError:
                log.warning("event=call_not_closed")

    # ------------------------------------------------------------ helpers

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        log.info("event=state state=%s", state)
        self.publish({"event": "state", **self.status()})

    def _refuse(self, message: str) -> NoReturn:
        log.info("event=refused error=%r", message)
        self.publish({"event": "error", "error": message})
        raise ControlRefused(message)

    def _screen(self) -> list[str]:
        if self.state == "offline":
            return ["Offline"]
        if self._call is not None:
            return [self._call.peer, self.state]
        if self.typed:
            return [self.typed]
        return [self.number or "", self.state]


def _own_number(tg: TrunkGroup) -> str:
    """The first whole number among the TG's inbound destinations."""
    if tg.inbound is not None:
        for pattern in tg.inbound.destinations.patterns:
            if pattern.exact and is_e164(pattern.prefix):
                return pattern.prefix
    raise ValueError("the phone has no number: set [phone] number, the TG lists no inbound number")


def _call_json(call: Call) -> dict[str, Any]:
    return {
        "uri": call.uri,
        "direction": call.direction.value,
        "peer": call.peer,
        "state": call.status.value,
        "codec": None,
        "transport": None,
        "stats": {},
    }
