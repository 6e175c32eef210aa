"""Power cuts: SIGKILL the phone or the provider at random instants, check what survives.

Issue #14 item 2.  :class:`PhoneCuts` runs ``ript-phone run`` (OAuth login, no lab
token) against ``ript-provider serve`` and, for each cut, takes the phone through one
phase, kills it (SIGKILL, the nearest a test gets to pulling the plug) at an instant
drawn uniformly over the phase's measured length, restarts it and checks:

* every state file is whole: each ``NAME.json`` and ``NAME.json.last-good`` is a
  state-store envelope with a matching checksum (read here, independently of the store);
* a registration the phone had saved before the cut is still there after the restart,
  with the same handler URI (the store's recovery may not silently drop it);
* the phone comes up registered with that handler URI (after a login again when the
  cut left it without tokens, which is counted, not failed: see ``relogins``);
* the provider holds exactly one handler for the phone, and saw no ``POST /handlers``
  during the restart when the phone had a handler URI saved (the provider's
  ``event=handler_registered`` lines are counted).

Phases: ``enrol`` (a new phone: the device login from the code on the screen to
registered and enrolled), ``restart`` (a registered phone starting again: discovery,
``GET`` of its handler, push), ``refresh`` (the access token expired at the provider:
a call's 401, the refresh grant, the rotated tokens saved, the retried call),
``calllog`` (a call to the echo far end and its hang-up: the call log written).

:class:`ProviderCuts` kills ``ript-provider serve`` while a client registers handlers
and a phone places calls, and checks after each kill that its SQLite passes ``PRAGMA
integrity_check``, that every handler answered ``201`` is still there (durable), that
the calls' rows are consistent, and that it starts again and the phone is back online.

Used by ``tests/integration/test_power_cut.py`` (a few cuts) and
``tests/bench/bench_power_cut.py`` (1,000).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ript.protocol.descriptions import HandlerDescription
from ript.protocol.events import CallStatus
from riptdev.processes import (
    ProcessError,
    ProviderProcess,
    provider_command,
    start_provider,
    stop_process,
    wait_for_line,
)
from riptphone.control.client import ControlClientError
from riptphone.control.client import request as control_request
from riptphone.net.h3 import H3Client
from riptphone.net.ript_client import RiptClient, RiptError, StaticToken
from riptprovider.admin import request_admin
from riptprovider.passwords import hash_password

from .procs import ECHO, NUMBER, TOKEN, WAIT, PhoneProcess

ACCOUNT = "bob"
PASSWORD_HASH = hash_password("bob-power-cut-password", n=2**14)
PHASES = ("enrol", "restart", "refresh", "calllog")
LONG = 40.0
CALL_END = 20.0
"""Seconds after the restart by which the call a cut interrupted must be over.

The restarted phone, its handset down, hangs up the call it claims again
(docs/phone-states.md, "A call found after a restart") within a second or two of
coming online; the provider's idle timer would end it only 30 s after the cut."""

PROVIDER_TOML = f"""
[server]
host = "127.0.0.1"
port = 0
state_dir = "provider-state"

[oauth]
client_ids = ["ript-phone"]
poll_interval = 1

[accounts.{ACCOUNT}]
name = "Bob"
numbers = ["{NUMBER}"]
destinations = "+1408*"
password = "{PASSWORD_HASH}"
tokens = ["{TOKEN}"]

[[accounts.{ACCOUNT}.far-end]]
match = "{ECHO}"
outcome = "answer"
answer-after = 0.2
media = "echo"
"""

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


class CutError(AssertionError):
    """A check after a cut failed: what, in one sentence."""


# ---------------------------------------------------------------------------- state files


def damaged_files(state_dir: Path) -> list[str]:
    """Every record file of the state store that is not a whole envelope: 'name: why'."""
    bad: list[str] = []
    for path in sorted(state_dir.iterdir()):
        if not (path.name.endswith(".json") or path.name.endswith(".json.last-good")):
            continue
        if path.name.startswith("."):
            continue  # a temp file a cut interrupted: the store removes it at the next open
        why = envelope_problem(path.read_bytes())
        if why is not None:
            bad.append(f"{path.name}: {why}")
    return bad


def envelope_problem(raw: bytes) -> str | None:
    """Why ``raw`` is not a state-store envelope (docs/state-store.md "Format"), or None."""
    try:
        doc = json.loads(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return "not JSON (truncated?)"
    if not isinstance(doc, dict) or set(doc) != {"format", "secret", "sha256", "data"}:
        return "not an envelope"
    if doc["format"] != 1 or not isinstance(doc["sha256"], str) or not _HEX64.match(doc["sha256"]):
        return "bad format or checksum field"
    body = {"data": doc["data"], "format": 1, "secret": doc["secret"]}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    if hashlib.sha256(canonical.encode("ascii")).hexdigest() != doc["sha256"]:
        return "checksum mismatch"
    return None


def saved_handler(state_dir: Path) -> str | None:
    """The handler URI in the phone's saved registration (main file, else last-good)."""
    for name in ("registration.json", "registration.json.last-good"):
        path = state_dir / name
        if path.exists() and envelope_problem(raw := path.read_bytes()) is None:
            uri = json.loads(raw)["data"].get("handler_uri")
            return str(uri) if uri else None
    return None


def has_tokens(state_dir: Path) -> bool:
    path = state_dir / "tokens.json"
    return path.exists() and envelope_problem(path.read_bytes()) is None


# ---------------------------------------------------------------------------- the provider


class ProviderView:
    """The provider's database (read-only) and its log, as the checks need them."""

    def __init__(self, provider: ProviderProcess) -> None:
        self.provider = provider
        self.db_path = provider.config.parent / "provider-state" / "provider.sqlite3"

    def _query(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=WAIT)
        try:
            return list(conn.execute(sql, args))
        finally:
            conn.close()

    def handlers(self) -> list[str]:
        rows = self._query("SELECT uri FROM handlers WHERE account = ?", ACCOUNT)
        return [str(row[0]) for row in rows]

    def expire_access_tokens(self) -> int:
        """The login's access tokens stop working (the phone learns it from a 401)."""
        conn = sqlite3.connect(self.db_path, isolation_level=None, timeout=WAIT)
        try:
            return conn.execute("UPDATE tokens SET expires = 0 WHERE login IS NOT NULL").rowcount
        finally:
            conn.close()

    def live_calls(self) -> list[dict[str, Any]]:
        """The account's calls not over (the admin ``calls`` command)."""
        reply = request_admin(
            self.db_path.parent / "admin.sock", {"cmd": "calls", "account": ACCOUNT}
        )
        calls: list[dict[str, Any]] = reply.get("calls", [])
        return calls

    def hang_up(self, uri: str) -> None:
        request_admin(self.db_path.parent / "admin.sock", {"cmd": "hangup", "call": uri})

    def posts(self) -> int:
        """``POST /handlers`` the provider accepted so far (its log lines)."""
        text = self.provider.log.read_text(errors="replace")
        return text.count("event=handler_registered")

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "riptprovider",
                "admin",
                "--config",
                str(self.provider.config),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )


# ---------------------------------------------------------------------------- the phone


@dataclass
class CutReport:
    """What a series of cuts found."""

    cuts: Counter[str] = field(default_factory=Counter)
    relogins: Counter[str] = field(default_factory=Counter)
    hung_up: Counter[str] = field(default_factory=Counter)
    """Cuts after which the restarted phone claimed the interrupted call and hung it up."""
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        kinds = " ".join(f"{k}={v}" for k, v in sorted(self.cuts.items()))
        relog = " ".join(f"{k}={v}" for k, v in sorted(self.relogins.items())) or "none"
        ended = " ".join(f"{k}={v}" for k, v in sorted(self.hung_up.items())) or "none"
        return (
            f"cuts={sum(self.cuts.values())} ({kinds}) failures={len(self.failures)} "
            f"relogins: {relog}; interrupted calls hung up at the restart: {ended}; "
            f"in {self.seconds:.0f} s"
        )


class PhoneCuts:
    """One provider and one phone; :meth:`cut` runs one phase and pulls the plug in it."""

    def __init__(self, work: Path, rng: random.Random) -> None:
        self.work = work
        self.rng = rng
        (work / "provider").mkdir(parents=True, exist_ok=True)
        self.provider = start_provider(work / "provider", PROVIDER_TOML)
        self.view = ProviderView(self.provider)
        self.phone = PhoneProcess(work / "phone", self.provider, token=None, number=None)
        self.handler: str | None = None
        # Each phase's length (s) as measured uncut: where the cut instants are drawn.
        self.lengths: dict[str, float] = {}
        self.report = CutReport()
        self.on_failure: Callable[[str], None] | None = None
        """Told each failure as it happens (a long run shows them before its end)."""

    def close(self) -> None:
        if self.phone.process is not None:
            self.phone.process.kill()
            self.phone.process.wait()
            self.phone.process = None
        stop_process(self.provider.process)

    # -- driving the phone

    def _ask(self, req: dict[str, Any]) -> dict[str, Any]:
        """One control-socket request in this process (a CLI subprocess costs 0.3 s)."""
        return control_request(self.phone.socket, req)

    def _status(self) -> dict[str, Any]:
        try:
            return self._ask({"cmd": "status"})
        except ControlClientError:
            return {}  # not listening yet, or gone

    def _alive(self) -> None:
        process = self.phone.process
        if process is None or process.poll() is not None:
            raise CutError(f"the phone exited:\n{self.phone.log_text()[-3000:]}")

    def _until(self, check: Callable[[dict[str, Any]], bool], wait: float = LONG) -> dict[str, Any]:
        deadline = time.monotonic() + wait
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            self._alive()
            status = self._status()
            if status and check(status):
                return status
            time.sleep(0.02)
        raise CutError(f"never reached within {wait:g} s; last status {status}")

    def _code(self) -> str:
        def showing(status: dict[str, Any]) -> bool:
            screen = status.get("screen") or []
            return status.get("state") == "provisioning" and any(
                str(line).startswith("code ") for line in screen
            )

        screen = self._until(showing)["screen"]
        return next(str(line) for line in screen if str(line).startswith("code "))[5:]

    def _approve(self) -> None:
        done = self.view.admin("approve", self._code(), "--account", ACCOUNT)
        if done.returncode != 0:
            raise CutError(f"admin approve failed: {done.stderr.strip()}")

    def _spawn(self) -> None:
        from riptdev.processes import start_phone

        self.phone.runs += 1
        self.phone.process = start_phone(self.phone.config, self.phone.log, self.phone.env)

    def _up(self) -> dict[str, Any]:
        """Until idle and registered, approving a login when the phone asks for one."""
        relogin = False
        deadline = time.monotonic() + 2 * LONG
        while time.monotonic() < deadline:
            status = self._until(
                lambda s: (
                    (s.get("state") == "idle" and bool(s.get("registered")))
                    or s.get("state") == "provisioning"
                )
            )
            if status["state"] == "idle":
                status["relogin"] = relogin
                return status
            relogin = True
            self._approve()
            self._until(lambda s: s.get("state") != "provisioning")
        raise CutError("the phone never came up registered")

    def _kill(self) -> None:
        process = self.phone.process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.phone.process = None

    def _hook(self, where: str) -> None:
        self._ask({"cmd": "hook", "state": where})

    # -- the phases: each runs to its end (uncut) in a thread-free, step-by-step way

    def _run_phase(self, phase: str) -> None:
        """The phase itself (timed, and where the cut falls), from where _prepare left it."""
        if phase == "enrol":
            self._approve()
            self._until(lambda s: s.get("state") == "idle" and bool(s.get("registered")))
        elif phase == "restart":
            self._spawn()
            self._until(lambda s: s.get("state") == "idle" and bool(s.get("registered")))
        elif phase == "refresh":
            self.view.expire_access_tokens()
            self._call()
        elif phase == "calllog":
            self._call()

    def _call(self) -> None:
        self._hook("off")
        with contextlib.suppress(ControlClientError):  # refused: the login is over
            self._ask({"cmd": "dial", "number": ECHO})
        self._until(lambda s: s.get("state") in ("in-call", "ended", "idle", "provisioning"))
        self._hook("on")
        self._until(lambda s: s.get("state") in ("idle", "provisioning"))

    def _prepare(self, phase: str) -> None:
        """What must hold before ``phase``: a phone registered, stopped, or showing a code."""
        if phase == "restart":
            if self.phone.process is not None:
                self._kill()
            return
        if self.phone.process is None:
            self._spawn()
            self._up()
        if phase == "enrol":
            # A new phone: the factory reset deletes the handler at the provider (the
            # account's devices may not delete each other's) and wipes the state.
            self._ask({"cmd": "reset"})
            self._code()

    def measure(self, phases: tuple[str, ...] = PHASES) -> None:
        """Each phase once, uncut: its length bounds where the cuts fall."""
        for phase in phases:
            self._prepare(phase)
            start = time.monotonic()
            self._run_phase(phase)
            self.lengths[phase] = time.monotonic() - start
            self.handler = self._status().get("handler") or self.handler

    def cut(self, phase: str) -> None:
        """One cut in ``phase``, the restart, and the checks; failures go to the report."""
        at = self.rng.uniform(0.0, self.lengths[phase] * 1.1)
        try:
            self._prepare(phase)
            worker = threading.Thread(target=self._phase_quietly, args=(phase,), daemon=True)
            worker.start()
            time.sleep(at)
            if self.phone.process is not None:
                self._kill()
            worker.join(LONG)
            if self.phone.process is not None:
                # The cut came before the phase started its phone (restart: the worker's
                # spawn was still to come): cut that one, or two phones would share the
                # state directory and the control socket at the check below.
                self._kill()
            self.report.cuts[phase] += 1
            self._check_after(phase)
        except (
            CutError,
            RiptError,
            OSError,
            ControlClientError,
            subprocess.SubprocessError,
        ) as exc:
            # (SubprocessError: the admin's approve timed out on a loaded machine.)
            self.report.failures.append(f"{phase} at {at:.3f} s: {exc}")
            if self.on_failure is not None:
                self.on_failure(self.report.failures[-1])
            # Start afresh next time: the phone's state may be what failed.
            if self.phone.process is not None:
                self._kill()

    def _phase_quietly(self, phase: str) -> None:
        # The phase meets the cut: its errors are expected (the phone vanished).
        with contextlib.suppress(Exception):
            self._run_phase(phase)

    def _check_after(self, phase: str) -> None:
        state = self.phone.state_dir
        bad = damaged_files(state)
        if bad:
            raise CutError(f"damaged state files after the cut: {bad}")
        saved = saved_handler(state)
        posts = self.view.posts()
        # Temp files the cut left: the store removes them at the next start.  Not any
        # temp file seen later: the restarted phone may be writing (its call log, when
        # it hangs up the call the cut interrupted), and each write's name is new.
        stale = {path.name for path in state.iterdir() if ".tmp-" in path.name}
        self._spawn()
        status = self._up()
        if status["relogin"]:
            self.report.relogins[phase] += 1
        bad = damaged_files(state)
        if bad:
            raise CutError(f"damaged state files after the restart: {bad}")
        uri = status.get("handler")
        if saved is not None:
            if uri != saved:
                raise CutError(f"the handler changed from {saved} to {uri}")
            if self.view.posts() != posts:
                raise CutError(f"a POST /handlers at the restart, with {saved} saved")
        if saved_handler(state) != uri:
            raise CutError(f"registration.json does not hold the handler {uri}")
        handlers = self.view.handlers()
        if handlers != [uri]:
            raise CutError(f"the provider holds {handlers} for the phone's {uri}")
        leftovers = [p.name for p in state.iterdir() if p.name in stale]
        if leftovers:
            raise CutError(f"temp files the cut left, still there after the restart: {leftovers}")
        self.handler = uri
        self._no_call_left(phase)

    def _no_call_left(self, phase: str) -> None:
        """A call the cut interrupted is over soon after the restart: the phone, handset
        down, hangs up the call it claims again (not the provider's 30 s idle timer).

        Failures: the restarted phone in that call with its handset down, or a call of the
        account still up :data:`CALL_END` s after the restart (hung up then, so that the
        next cut starts clean)."""
        deadline = time.monotonic() + CALL_END
        try:
            while calls := self.view.live_calls():
                if self._status().get("state") == "in-call":
                    raise CutError(
                        "the restarted phone is in the interrupted call, handset down: "
                        f"{[call.get('uri') for call in calls]}"
                    )
                if time.monotonic() >= deadline:
                    raise CutError(
                        f"the interrupted call was still up {CALL_END:g} s after the restart: "
                        f"{[call.get('uri') for call in calls]}"
                    )
                time.sleep(0.2)
        except CutError:
            self._clear()
            raise
        if "event=call_reclaimed" in self.phone.log_text():
            self.report.hung_up[phase] += 1

    def _clear(self) -> None:
        """Every call of the account hung up, the phone's handset down."""
        with contextlib.suppress(ControlClientError):
            self._hook("off")
            self._hook("on")
        for call in self.view.live_calls():
            with contextlib.suppress(Exception):
                self.view.hang_up(str(call["uri"]))

    def run(
        self,
        cuts: int,
        progress: Callable[[str], None] | None = None,
        phases: tuple[str, ...] = PHASES,
    ) -> CutReport:
        start = time.monotonic()
        self.measure(phases)
        for i in range(cuts):
            self.cut(phases[i % len(phases)])
            if progress is not None and (i + 1) % 20 == 0:
                self.report.seconds = time.monotonic() - start
                progress(f"{i + 1}: {self.report.line()}")
        self.report.seconds = time.monotonic() - start
        return self.report


# ---------------------------------------------------------------------------- the provider cut


HANDLER_ADV = "1 in: PCMU;\n1 out: PCMU;"
CALL_STATES = frozenset(status.value for status in CallStatus)


class ProviderCuts:
    """``ript-provider serve`` killed while handlers are registered and calls placed.

    A lab-token phone keeps calling the echo far end; a client registers and deletes
    handlers of its own.  After each kill: ``PRAGMA integrity_check`` is ``ok``, every
    handler the provider answered ``201`` for (and did not delete) is in the database,
    every call row has a known state and names a handler the database holds (or none),
    and the provider starts again on the same port, where the phone comes back online
    with its same handler.
    """

    def __init__(self, work: Path, rng: random.Random) -> None:
        from .procs import PROVIDER_TOML as LAB_TOML

        self.work = work
        self.rng = rng
        (work / "provider").mkdir(parents=True, exist_ok=True)
        self.provider = start_provider(work / "provider", LAB_TOML)
        self.view = ProviderView(self.provider)
        self.phone = PhoneProcess(work / "phone", self.provider)
        self.phone.start()
        self.handler = str(self.phone.status()["handler"])
        self.confirmed: set[str] = set()  # answered 201 and not deleted
        self.report = CutReport()
        self._stop = threading.Event()

    def close(self) -> None:
        self._stop.set()
        if self.phone.process is not None:
            self.phone.stop()
        stop_process(self.provider.process)

    def _restart(self) -> None:
        log = self.provider.log
        log.write_bytes(b"")
        with log.open("ab") as out:
            process = subprocess.Popen(
                provider_command(self.provider.config),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        self.provider.process = process
        wait_for_line(process, log, "ready:", "the provider", WAIT)

    def _start_again(self, attempts: int = 3) -> None:
        """After a failed cut: the provider running again (a starved machine may need more
        than one start), else the run ends."""
        for attempt in range(attempts):
            if self.provider.process.poll() is None:
                return
            try:
                self._restart()
            except ProcessError:
                self.provider.process.kill()
                self.provider.process.wait()
                if attempt == attempts - 1:
                    raise

    def _client_work(self) -> None:
        """Handlers registered and deleted, as fast as the provider answers."""
        import asyncio
        import uuid

        async def go() -> None:
            while not self._stop.is_set():
                try:
                    async with H3Client(ca_file=self.provider.ca_file) as http:
                        client = RiptClient(http, self.provider.domain, StaticToken(TOKEN))
                        tg = await asyncio.wait_for(client.discover(), 5)
                        while not self._stop.is_set():
                            desc = HandlerDescription(str(uuid.uuid4()), HANDLER_ADV, "cut")
                            got = await asyncio.wait_for(client.register_handler(tg, desc), 5)
                            assert got.uri is not None
                            self.confirmed.add(got.uri)
                            if len(self.confirmed) >= 4:
                                gone = sorted(self.confirmed)[0]
                                # Forgotten before the DELETE: a cut may fall after the
                                # provider committed it and before its answer arrived.
                                self.confirmed.discard(gone)
                                await asyncio.wait_for(client.delete_handler(gone), 5)
                except (RiptError, OSError, TimeoutError):
                    await asyncio.sleep(0.1)

        asyncio.run(go())

    def _ask(self, req: dict[str, Any]) -> dict[str, Any]:
        try:
            return control_request(self.phone.socket, req)
        except ControlClientError:
            return {}  # refused (offline while the provider is down): the next turn

    def _phone_work(self) -> None:
        while not self._stop.is_set():
            self._ask({"cmd": "hook", "state": "off"})
            self._ask({"cmd": "dial", "number": ECHO})
            time.sleep(self.rng.uniform(0.2, 1.0))
            self._ask({"cmd": "hook", "state": "on"})
            time.sleep(0.1)

    def run(self, cuts: int, progress: Callable[[str], None] | None = None) -> CutReport:
        start = time.monotonic()
        workers = [
            threading.Thread(target=self._client_work, daemon=True),
            threading.Thread(target=self._phone_work, daemon=True),
        ]
        for worker in workers:
            worker.start()
        for i in range(cuts):
            time.sleep(self.rng.uniform(0.3, 1.5))
            self.provider.process.send_signal(signal.SIGKILL)
            self.provider.process.wait()
            # What the client was told 201 for, as of the kill (a later answer is impossible).
            confirmed = set(self.confirmed)
            self.report.cuts["provider"] += 1
            try:
                self._check_db(confirmed)
                self._restart()
                self._check_back()
            except (CutError, sqlite3.Error, OSError, RiptError, ProcessError) as exc:
                self.report.failures.append(f"provider cut {i}: {exc}")
                if isinstance(exc, ProcessError) and self.provider.process.poll() is None:
                    # Not ready in time (a starved machine): counted, then started afresh
                    # rather than ending the run.
                    self.provider.process.kill()
                    self.provider.process.wait()
                self._start_again()
            if progress is not None and (i + 1) % 10 == 0:
                self.report.seconds = time.monotonic() - start
                progress(f"{i + 1}: {self.report.line()}")
        self._stop.set()
        self.report.seconds = time.monotonic() - start
        return self.report

    def _check_db(self, confirmed: set[str]) -> None:
        conn = sqlite3.connect(self.view.db_path, isolation_level=None, timeout=WAIT)
        try:
            # Opening it read-write replays the WAL, as the provider's next start does.
            verdict = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if verdict != ["ok"]:
                raise CutError(f"integrity_check: {verdict[:5]}")
            handlers = {str(row[0]) for row in conn.execute("SELECT uri FROM handlers")}
            lost = confirmed - handlers
            if lost:
                raise CutError(f"handlers answered 201 but gone after the cut: {sorted(lost)}")
            if self.handler not in handlers:
                raise CutError(f"the phone's handler {self.handler} is gone")
            for uri, state, handler in conn.execute("SELECT uri, state, handler FROM calls"):
                if state not in CALL_STATES:
                    raise CutError(f"call {uri} in an unknown state {state!r}")
                if handler is not None and handler not in handlers:
                    raise CutError(f"call {uri} names a handler the provider lacks: {handler}")
        finally:
            conn.close()

    def _check_back(self) -> None:
        """The restarted provider serves the phone's handler (its status a moment later)."""
        from .procs import ProviderApi

        if ProviderApi(self.provider).get_handler(self.handler) is None:
            raise CutError(f"the restarted provider does not know {self.handler}")
        status = self._ask({"cmd": "status"})
        if status.get("handler") != self.handler:
            raise CutError(f"the phone's handler is now {status.get('handler')}")

    def final_call(self) -> None:
        """After the last cut, the phone still calls: registered, in a call with the echo."""
        self._stop.set()
        time.sleep(1.0)
        self._ask({"cmd": "hook", "state": "on"})
        deadline = time.monotonic() + LONG
        while time.monotonic() < deadline:
            self._ask({"cmd": "hook", "state": "off"})
            self._ask({"cmd": "dial", "number": ECHO})
            until = time.monotonic() + 5
            while time.monotonic() < until:
                if self._ask({"cmd": "status"}).get("state") == "in-call":
                    self._ask({"cmd": "hook", "state": "on"})
                    return
                time.sleep(0.1)
            self._ask({"cmd": "hook", "state": "on"})
            time.sleep(1.0)
        status = self._ask({"cmd": "status"})
        raise CutError(
            f"after the cuts the phone never got a call through; status {status}\n"
            + self.phone.log_text()[-2000:]
        )
