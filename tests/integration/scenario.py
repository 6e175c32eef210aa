"""One user's line end to end: the provider, its mosquitto and phone daemons, all real processes.

:class:`Line` runs ``ript-provider serve`` (with ``[push] broker = "spawn"``,
so the provider starts and manages a real mosquitto) in a temporary folder;
:meth:`Line.phone` starts ``ript-phone run`` daemons on the same account, each
with its own state folder, control socket and file-plugin ALSA, and a handler
name of its own (so that admin commands can name it).  Everything talks real
HTTP/3 over loopback and real MQTT over TLS.

The provider is driven through its admin socket (:meth:`Line.admin`, the
interface ``ript-provider admin`` uses; :meth:`Line.admin_cli` runs the CLI
itself); the phones only through their control sockets, as a user or a script
would (:class:`PhoneProc`).  For taps the provider would never send (bad taps),
:meth:`Line.publish` logs in to the broker as the provider's publisher user and
publishes straight to a phone's topic.  For broker outages,
:meth:`Line.kill_broker` signals the provider's mosquitto (which the provider
starts again by itself) and :func:`hold_wrapper` makes a ``[push] mosquitto``
that waits while a file exists, so that a test holds the outage open.

:meth:`Line.close` stops every phone and the provider and checks that nothing
is left behind: exit status 0 everywhere, no control or admin socket, no
mosquitto, the provider's UDP port and the broker's TCP port free.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from alsa.fileplugin import FilePluginAlsa, write_asoundrc
from faultnet import UdpProxy, ports_of
from riptdev.processes import ProviderProcess, stop_process, tone_pcm
from riptphone.control.client import ControlClientError, request
from riptphone.net.push import tls_context
from riptprovider.admin import request_admin
from riptprovider.broker import MOSQUITTO, MosquittoBroker

from .mqtt import mqtt_client
from .procs import (
    ECHO,
    NUMBER,
    TOKEN,
    UNREACHABLE,
    WAIT,
    PhoneProcess,
    Watch,
    provider_process,
)

ACCOUNT = "bob"
CALLER = "+14085550100"
"""Who calls the line in the inbound scenarios (an E.164 number outside the account)."""

LINE_TOML = f"""
[server]
host = "127.0.0.1"
port = 0
state_dir = "provider-state"

[accounts.bob]
name = "Bob"
numbers = ["{NUMBER}"]
destinations = "+1408*"
tokens = ["{TOKEN}"]
unreachable = ["{UNREACHABLE}"]
inbound-ring-timeout = 60

[[accounts.bob.far-end]]
match = "{ECHO}"
outcome = "answer"
answer-after = 0.3
media = "echo"

[push]
broker = "spawn"
"""


HOLD_SCRIPT = """#!/bin/sh
# mosquitto, started by the provider; while the file {hold} exists it waits
# first: the tests hold a broker outage open for as long as they need.
trap '' HUP  # a reload meanwhile must not end the wait (mosquitto sets its own handler)
while [ -e '{hold}' ]; do sleep 0.05; done
exec {mosquitto} "$@"
"""


def hold_wrapper(directory: Path, mosquitto: str = MOSQUITTO) -> tuple[Path, Path]:
    """A ``[push] mosquitto`` that does not start while a file exists: (script, that file)."""
    directory.mkdir(parents=True, exist_ok=True)
    script, hold = directory / "mosquitto-held", directory / "hold"
    script.write_text(HOLD_SCRIPT.format(hold=hold, mosquitto=mosquitto))
    script.chmod(0o755)
    return script, hold


class AdminRefusedError(AssertionError):
    """The provider's admin interface answered ``ok: false``; the message is its sentence."""


class PhoneProc(PhoneProcess):
    """A ``ript-phone run`` daemon on the line, named ``name``, driven through its socket.

    ``status``, ``hook``, ``pull``, ``dial`` and ``key`` are single control-socket
    requests (``cli`` runs the ``ript-phone`` command instead, as a user would).
    """

    def __init__(self, work: Path, provider: ProviderProcess, name: str) -> None:
        alsa = write_asoundrc(work / "alsa", tone_pcm(6))
        super().__init__(work, provider, alsa=alsa)
        self.name = name
        self.alsa: FilePluginAlsa = alsa
        self._handler: str | None = None
        text = self.config.read_text()
        self.config.write_text(text.replace("[phone]\n", f'[phone]\nname = "{name}"\n', 1))

    # -- the control socket ------------------------------------------------------------

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        return request(self.socket, req)

    def status(self) -> dict[str, Any]:
        return self.request({"cmd": "status"})

    def hook(self, state: str) -> None:
        self.request({"cmd": "hook", "state": state})

    def pull(self) -> None:
        self.request({"cmd": "pull"})

    def dial(self, number: str) -> None:
        self.request({"cmd": "dial", "number": number})

    def key(self, key: str) -> None:
        self.request({"cmd": "key", "key": key})

    def refused(self, req: dict[str, Any]) -> str:
        """The daemon's sentence for a request it refuses (fails if it accepts it)."""
        try:
            self.request(req)
        except ControlClientError as exc:
            return str(exc)
        raise AssertionError(f"{self.name} accepted {req}")

    @contextmanager
    def watch(self) -> Iterator[Events]:
        """The phone's watch lines from now on (see :class:`Events`)."""
        events = Events(self)
        try:
            yield events
        finally:
            events.close()

    def wait_state(self, state: str, timeout: float = WAIT) -> dict[str, Any]:
        """Poll ``status`` until the phone is in ``state``; the status reply."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            self.assert_running()
            last = self.status()
            if last.get("state") == state:
                return last
            time.sleep(0.05)
        raise AssertionError(f"{self.name} never became {state} within {timeout:g} s: {last}")

    def wait_status(
        self, accept: Callable[[dict[str, Any]], bool], what: str, timeout: float = WAIT
    ) -> dict[str, Any]:
        """Poll ``status`` until ``accept`` takes it."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            self.assert_running()
            last = self.status()
            if accept(last):
                return last
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: {what} not within {timeout:g} s: {last}")

    # -- the process -------------------------------------------------------------------

    @property
    def handler(self) -> str:
        """The phone's handler URI (the last one it reported, when it is not running)."""
        if self.process is not None:
            uri = self.status()["handler"]
            assert isinstance(uri, str), uri
            self._handler = uri
        assert self._handler is not None, f"{self.name} never reported a handler"
        return self._handler

    def assert_running(self) -> None:
        assert self.process is not None and self.process.poll() is None, (
            f"{self.name} is not running:\n{self.log_text()[-3000:]}"
        )

    def fade(self, net: UdpProxy, seconds: float) -> None:
        """The phone's network goes for ``seconds`` (every packet of its sockets dropped)."""
        assert self.process is not None
        net.blackhole(seconds, only=ports_of(self.process.pid))

    def log_lines(self, needle: str) -> list[str]:
        return [line for line in self.log_text().splitlines() if needle in line]


class Events(Watch):
    """Watch lines on the control socket; an iterator whose ``next`` waits at most a timeout."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        return self.next(WAIT)

    def next(self, timeout: float) -> dict[str, Any]:
        """The next line within ``timeout`` seconds (AssertionError if none or the watch ended)."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no watch line from {self.phone.work.name} within {timeout:g} s"
            ) from None
        if line is None:
            raise AssertionError("the watch ended")
        event: dict[str, Any] = json.loads(line)
        self.seen.append(event)
        return event

    def quiet(self, reject: Callable[[dict[str, Any]], bool], seconds: float) -> None:
        """Fail if a line ``reject`` takes arrives within ``seconds`` (others are kept)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.next(left)
            except AssertionError:
                return
            assert not reject(event), f"unexpected watch line {event}"


def is_state(state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event.get("event") == "state" and event.get("state") == state


def is_ring(event: dict[str, Any]) -> bool:
    return event.get("event") == "ring" or is_state("ringing")(event)


def call_in(state: str) -> Callable[[dict[str, Any]], bool]:
    """A status reply (or watch line) whose call is in the call-description ``state``."""

    def accept(status: dict[str, Any]) -> bool:
        call = status.get("call")
        return isinstance(call, dict) and call.get("state") == state

    return accept


class Line:
    """The provider (with its broker) for account ``bob`` in ``work``, and the phones on it."""

    def __init__(
        self, work: Path, config_text: str = LINE_TOML, *, net: UdpProxy | None = None
    ) -> None:
        self.work = work
        self.net = net
        if net is not None:
            # The phones reach the provider only through the fault network: every URI the
            # provider hands out names the proxy (docs/fault-network.md).
            origin = f'[server]\norigin = "https://localhost:{net.address[1]}"\n'
            config_text = config_text.replace("[server]\n", origin, 1)
        self.provider = provider_process(work / "provider", config_text)
        self.reach = self.provider
        """The provider as the phones reach it: through ``net`` when there is one."""
        if net is not None:
            net.upstream = ("127.0.0.1", self.provider.port)
            self.reach = dataclasses.replace(self.provider, port=net.address[1])
        self.state_dir = self.provider.config.parent / "provider-state"
        self.phones: dict[str, PhoneProc] = {}
        devices = self._devices()
        self.broker_port = int(devices["port"])
        self.mosquitto_pid = int((self.state_dir / "push" / "mosquitto.pid").read_text())

    # -- the provider ------------------------------------------------------------------

    def admin(self, cmd: str, **members: Any) -> dict[str, Any]:
        """One admin request (``from_`` stands for ``from``); the reply, or AdminRefusedError."""
        req: dict[str, Any] = {"cmd": cmd}
        req.update({key.rstrip("_"): value for key, value in members.items()})
        reply = request_admin(self.state_dir / "admin.sock", req)
        if reply.get("ok") is not True:
            raise AdminRefusedError(str(reply.get("error", reply)))
        return reply

    def admin_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``ript-provider admin --config F ARGS``, as a shell user types it."""
        return subprocess.run(
            [
                sys.executable,
                *("-m", "riptprovider", "admin", "--config", str(self.provider.config)),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )

    def inbound(self, caller: str = CALLER) -> str:
        """Inject an inbound call from ``caller``; its URI."""
        uri = self.admin("inbound", account=ACCOUNT, from_=caller)["call"]["uri"]
        assert isinstance(uri, str)
        return uri

    def calls(self) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = self.admin("calls", account=ACCOUNT)["calls"]
        return calls

    def call(self, uri: str) -> dict[str, Any] | None:
        """The live call ``uri`` as the provider describes it; None once over."""
        return next((c for c in self.calls() if c["uri"] == uri), None)

    def wait_call(
        self, uri: str, accept: Callable[[dict[str, Any] | None], bool], what: str
    ) -> dict[str, Any] | None:
        deadline = time.monotonic() + WAIT
        while True:
            call = self.call(uri)
            if accept(call):
                return call
            if time.monotonic() > deadline:
                raise AssertionError(f"call {uri}: {what} not within {WAIT:g} s: {call}")
            time.sleep(0.05)

    def hang_up_everything(self) -> None:
        for call in self.calls():
            with contextlib.suppress(AdminRefusedError):  # ended meanwhile
                self.admin("hangup", call=call["uri"], reason="test cleanup")

    # -- the broker --------------------------------------------------------------------

    def _devices(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.state_dir / "push" / "devices.json").read_text())
        return doc

    def topic(self, phone: PhoneProc) -> str:
        """The phone's MQTT topic, from the provider's device list."""
        handler_id = self.handler_id(phone)
        device = self._devices()["devices"][handler_id]
        return f"ript/v1/{device['account']}/{handler_id}"

    def handler_id(self, phone: PhoneProc) -> str:
        handler = phone.handler
        for entry in self.admin("handlers", account=ACCOUNT)["handlers"]:
            if entry["uri"] == handler:
                return str(entry["handler-id"])
        raise AssertionError(f"{phone.name}'s handler {handler} is not the provider's")

    def _broker(self) -> MosquittoBroker:
        # mqtt_client needs only where the broker listens and which CA vouches for it.
        return cast(
            MosquittoBroker,
            SimpleNamespace(port=self.broker_port, ca_file=Path(self.provider.ca_file)),
        )

    def _publisher_logins(self) -> int:
        return self.provider.log.read_text(errors="replace").count("push: publisher connected")

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish ``payload`` (QoS 1) to ``topic`` as the provider's publisher user.

        mosquitto takes the username as the client id, so this login takes the
        provider's own publisher session over for a moment; its paho client
        logs in again by itself (within a second or two), which this waits for.
        """
        publisher = self._devices()["publisher"]
        logins = self._publisher_logins()
        with mqtt_client(
            self._broker(), publisher["username"], publisher["username"], publisher["password"]
        ) as client:
            reason = client.connacks.get(timeout=WAIT)
            assert not reason.is_failure, reason
            assert not client.publish(topic, payload).is_failure
        deadline = time.monotonic() + WAIT
        while self._publisher_logins() <= logins:
            assert time.monotonic() < deadline, "the provider's publisher did not log in again"
            time.sleep(0.05)

    def _broker_started(self) -> list[int]:
        """The pids of the mosquittos the provider has started, in order (from its log)."""
        text = self.provider.log.read_text(errors="replace")
        return [int(pid) for pid in re.findall(r"push: mosquitto pid (\d+) listening", text)]

    def broker_starts(self) -> int:
        """How many times the provider has started its mosquitto."""
        return len(self._broker_started())

    def publisher_logins(self) -> int:
        return self._publisher_logins()

    def kill_broker(self, signum: int) -> None:
        """Send ``signum`` to the provider's mosquitto, as a crash (SIGKILL) or an operator would.

        The provider notices it exit and starts it again (on the same port) by itself.
        """
        exits = self._broker_exits()
        os.kill(self.mosquitto_pid, signum)
        deadline = time.monotonic() + WAIT
        while self._broker_exits() <= exits:
            assert time.monotonic() < deadline, "the provider did not notice mosquitto exit"
            time.sleep(0.05)

    def _broker_exits(self) -> int:
        return self.provider.log.read_text(errors="replace").count("exited unbidden")

    def wait_broker_started(self, starts: int, timeout: float = 2 * WAIT) -> None:
        """Wait until the provider has started mosquitto more than ``starts`` times."""
        deadline = time.monotonic() + timeout
        while self.broker_starts() <= starts:
            assert time.monotonic() < deadline, "the provider did not start mosquitto again"
            time.sleep(0.05)
        self.mosquitto_pid = self._broker_started()[-1]

    def forget_session(self, phone: PhoneProc) -> None:
        """Discard the phone's MQTT session at the broker, taps queued for it included.

        What a broker that lost its queue does (or a session that expired while
        the phone was away); the phone must not be running.
        """
        handler_id = self.handler_id(phone)
        password = self._devices()["devices"][handler_id]["password"]
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=handler_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        client.username_pw_set(handler_id, password)
        client.tls_set_context(tls_context(self.provider.ca_file))
        connacks: queue.Queue[Any] = queue.Queue()
        client.on_connect = lambda c, u, flags, reason, p: connacks.put(reason)
        client.connect("127.0.0.1", self.broker_port, clean_start=True)  # expiry 0: gone at once
        client.loop_start()
        try:
            reason = connacks.get(timeout=WAIT)
            assert not reason.is_failure, reason
        finally:
            client.disconnect()
            client.loop_stop()

    # -- phones ------------------------------------------------------------------------

    def phone(self, name: str, *, start: bool = True) -> PhoneProc:
        """The phone called ``name`` (started and idle on first use unless ``start=False``)."""
        phone = self.phones.get(name)
        if phone is None:
            phone = PhoneProc(self.work / name.replace(" ", "-"), self.reach, name)
            self.phones[name] = phone
        if start and phone.process is None:
            phone.start()
            phone.wait_status(lambda s: s.get("push") == "up", "push channel up")
            assert phone.handler  # remembered for when it is stopped
        return phone

    # -- the end -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the phones and the provider; check that nothing is left behind."""
        problems: list[str] = []
        for phone in self.phones.values():
            if phone.process is not None:
                code = phone.stop()
                if code != 0:
                    problems.append(f"{phone.name} exited {code}: {phone.log_text()[-2000:]}")
            if phone.socket.exists():
                problems.append(f"{phone.socket} left behind")
        code = stop_process(self.provider.process)
        if code != 0:
            problems.append(f"the provider exited {code}: {self.provider.log.read_text()[-2000:]}")
        problems += leftovers(self)
        assert not problems, "\n".join(problems)


def leftovers(line: Line) -> list[str]:
    """What a stopped line left behind: sockets, mosquitto, ports still bound."""
    found: list[str] = []
    admin = line.state_dir / "admin.sock"
    if admin.exists():
        found.append(f"{admin} left behind")
    try:
        os.kill(line.mosquitto_pid, 0)
    except ProcessLookupError:
        pass
    else:
        found.append(f"mosquitto (pid {line.mosquitto_pid}) still runs")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        try:
            udp.bind(("127.0.0.1", line.provider.port))
        except OSError:
            found.append(f"UDP port {line.provider.port} still bound")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT does not count
        try:
            tcp.bind(("127.0.0.1", line.broker_port))
        except OSError:
            found.append(f"TCP port {line.broker_port} still bound")
    return found


@contextmanager
def running_line(
    work: Path, config_text: str = LINE_TOML, *, net: UdpProxy | None = None
) -> Iterator[Line]:
    line = Line(work, config_text, net=net)
    try:
        yield line
    finally:
        line.close()
