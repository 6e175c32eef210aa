"""A fault network for tests: userspace UDP (QUIC) and TCP (MQTT, HTTPS) proxies with faults.

Put it between the phone and the provider or the broker, and break the path
while they run: real packets between real processes, nothing mocked.

* :class:`UdpProxy` forwards datagrams like a NAT: each client address gets its
  own upstream socket (its own source port).  Faults, per direction or both:
  loss, delay and jitter, reordering, duplication, a blackhole for N seconds,
  and :meth:`UdpProxy.rebind` (NAT rebinding: the client's packets suddenly
  come from a new source port, as after a home router's NAT timeout).
* :class:`TcpProxy` pipes TCP connections: delay, a blackhole (nothing goes
  through; what was sent waits, as in a real outage), and :meth:`TcpProxy.cut`
  (every connection reset at once).

In a test: ``with UdpProxy(("127.0.0.1", provider_port)) as net: ...`` runs the
proxy on its own thread and loop (so it serves subprocesses and any asyncio
loop of the test alike); point the phone at ``net.address``.  By hand::

    python tests/faultnet.py udp --to 127.0.0.1:4433 --listen 127.0.0.1:5433 --control /tmp/fn.sock
    python tests/faultnet.py ctl /tmp/fn.sock blackhole 3
    python tests/faultnet.py ctl /tmp/fn.sock set loss=0.1 delay=0.04 jitter=0.02
    python tests/faultnet.py ctl /tmp/fn.sock rebind
    python tests/faultnet.py ctl /tmp/fn.sock stats

(docs/fault-network.md says more.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Literal, Self

Address = tuple[str, int]
Direction = Literal["up", "down"]
"""``up``: client to server (the phone's packets); ``down``: server to client."""


@dataclasses.dataclass
class Faults:
    """What happens to the packets of one direction; all off by default."""

    loss: float = 0.0  # probability a packet is dropped
    delay: float = 0.0  # seconds added to every packet
    jitter: float = 0.0  # up to this many seconds more, at random
    reorder: float = 0.0  # probability a packet is held back behind the next ones
    duplicate: float = 0.0  # probability a packet is sent twice


@dataclasses.dataclass
class Counters:
    forwarded: int = 0
    dropped: int = 0
    duplicated: int = 0


class _Proxy:
    """What both proxies share: faults, a blackhole, counters, and a loop on a thread."""

    def __init__(self, upstream: Address, listen: Address, seed: int | None) -> None:
        self.upstream = upstream
        self.listen = listen
        self.faults: dict[Direction, Faults] = {"up": Faults(), "down": Faults()}
        self.counters: dict[Direction, Counters] = {"up": Counters(), "down": Counters()}
        self._blackhole_until = 0.0
        self._blackhole_only: Callable[[Address], bool] | None = None
        self._blackhole_clients: dict[Address, bool] = {}
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.address: Address = listen

    # -- controls (any thread) ------------------------------------------------------

    def set(self, direction: Direction | Literal["both"] = "both", **faults: float) -> None:
        """Change faults, e.g. ``set(loss=0.03, delay=0.02, jitter=0.04)``."""
        for name in ("up", "down") if direction == "both" else (direction,):
            current = self.faults[name]  # type: ignore[index]
            self.faults[name] = dataclasses.replace(current, **faults)  # type: ignore[index]

    def clear(self) -> None:
        self.faults = {"up": Faults(), "down": Faults()}
        self._blackhole_until = 0.0

    def blackhole(self, seconds: float, only: Callable[[Address], bool] | None = None) -> None:
        """Drop everything (UDP) or hold everything (TCP) for ``seconds`` from now.

        ``only`` (UDP): the blackhole covers the clients it says yes to (asked once per
        client address, so a client that opens a new socket meanwhile is asked again),
        e.g. ``only=ports_of(pid)``: one phone's fade while the others talk on.
        """
        self._blackhole_only = only
        self._blackhole_clients = {}
        self._blackhole_until = time.monotonic() + seconds

    @property
    def blackholed(self) -> bool:
        return time.monotonic() < self._blackhole_until

    def _blackholed_for(self, client: Address | None) -> bool:
        if not self.blackholed:
            return False
        only = self._blackhole_only
        if only is None or client is None:
            return only is None
        covered = self._blackhole_clients.get(client)
        if covered is None:
            covered = self._blackhole_clients[client] = only(client)
        return covered

    def stats(self) -> dict[str, dict[str, int]]:
        return {d: dataclasses.asdict(c) for d, c in self.counters.items()}

    # -- the packet decision ------------------------------------------------------------

    def _plan(self, direction: Direction, client: Address | None = None) -> list[float] | None:
        """The delays at which one packet goes out (one per copy), or None to drop it."""
        faults = self.faults[direction]
        counters = self.counters[direction]
        rng = self._rng
        if self._blackholed_for(client) or (faults.loss and rng.random() < faults.loss):
            counters.dropped += 1
            return None
        delay = faults.delay + (rng.uniform(0, faults.jitter) if faults.jitter else 0.0)
        if faults.reorder and rng.random() < faults.reorder:
            delay += max(0.005, 2 * faults.delay + faults.jitter)  # overtaken by the next ones
        delays = [delay]
        if faults.duplicate and rng.random() < faults.duplicate:
            delays.append(delay + 0.001)
            counters.duplicated += 1
        counters.forwarded += 1
        return delays

    # -- the thread ---------------------------------------------------------------------

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._main, name=type(self).__name__, daemon=True)
        self._thread.start()
        self._started.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._started.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        await self._open()
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await self._close()

    def call(self, work: Callable[[], object]) -> None:
        """Run ``work`` on the proxy's loop (for controls that touch sockets)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(work)

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _open(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError


class _Mapping(asyncio.DatagramProtocol):
    """One client's NAT mapping: the upstream socket its packets leave from."""

    def __init__(self, proxy: UdpProxy, client: Address) -> None:
        self.proxy = proxy
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] = []  # what the client sent while the socket was opening

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        pending, self.pending = self.pending, []
        for data in pending:
            self.proxy._forward("up", data, self.transport, None, self.client)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.proxy._forward("down", data, self.proxy._listener, self.client, self.client)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable and the like: a network drops such packets too


class UdpProxy(_Proxy, asyncio.DatagramProtocol):
    """UDP between clients and ``upstream``; listen on ``listen`` (port 0: any free one)."""

    def __init__(
        self, upstream: Address, listen: Address = ("127.0.0.1", 0), *, seed: int | None = None
    ) -> None:
        _Proxy.__init__(self, upstream, listen, seed)
        self._listener: asyncio.DatagramTransport | None = None
        self._mappings: dict[Address, _Mapping] = {}
        self._dead: set[Address] = set()  # client addresses whose flow was cut
        self.rebinds = 0
        self.cuts = 0

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=self.listen)
        self._listener = transport
        self.address = transport.get_extra_info("sockname")[:2]

    async def _close(self) -> None:
        for mapping in self._mappings.values():
            if mapping.transport is not None:
                mapping.transport.close()
        if self._listener is not None:
            self._listener.close()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if addr in self._dead:
            self.counters["up"].dropped += 1  # a flow that was cut stays cut
            return
        mapping = self._mappings.get(addr)
        if mapping is None:
            mapping = self._mappings[addr] = _Mapping(self, addr)
            asyncio.get_running_loop().create_task(self._open_mapping(mapping))
        if mapping.transport is None:
            mapping.pending.append(data)
            return
        self._forward("up", data, mapping.transport, None, addr)

    async def _open_mapping(self, mapping: _Mapping) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(
            lambda: mapping, local_addr=("127.0.0.1", 0), remote_addr=self.upstream
        )

    def _forward(
        self,
        direction: Direction,
        data: bytes,
        transport: asyncio.DatagramTransport | None,
        to: Address | None,
        client: Address,
    ) -> None:
        delays = self._plan(direction, client)
        if delays is None or transport is None:
            return
        loop = asyncio.get_running_loop()
        for delay in delays:
            if delay <= 0:
                _send(transport, data, to)
            else:
                loop.call_later(delay, _send, transport, data, to)

    def cut(self) -> None:
        """Kill every flow now: packets of the clients seen so far are dropped for good, both ways.

        What a NAT or firewall that lost its state does to a QUIC connection (UDP has no
        reset to send): the endpoints only notice by the silence.  A client that opens a
        new socket (a new connection) gets a new mapping and goes through.
        """
        self.run(self._cut_flows())

    async def _cut_flows(self) -> None:
        self._dead.update(self._mappings)
        for mapping in self._mappings.values():
            if mapping.transport is not None:
                mapping.transport.close()
        self._mappings.clear()
        self.cuts += 1

    def rebind(self) -> None:
        """NAT rebinding: every client's packets leave from a new source port from now on."""
        self.run(self._rebind())

    async def _rebind(self) -> None:
        loop = asyncio.get_running_loop()
        for client, old in list(self._mappings.items()):
            fresh = _Mapping(self, client)
            await loop.create_datagram_endpoint(
                lambda fresh=fresh: fresh,  # type: ignore[misc]
                local_addr=("127.0.0.1", 0),
                remote_addr=self.upstream,
            )
            self._mappings[client] = fresh
            if old.transport is not None:
                # The old port stays open a moment: answers in flight still arrive, as at a NAT.
                loop.call_later(1.0, old.transport.close)
        self.rebinds += 1

    def source_ports(self) -> list[int]:
        """The upstream source port of each client mapping (what the server sees)."""
        return [
            m.transport.get_extra_info("sockname")[1]
            for m in self._mappings.values()
            if m.transport is not None
        ]

    def error_received(self, exc: Exception) -> None:
        pass


def ports_of(pid: int) -> Callable[[Address], bool]:
    """A client filter for :meth:`UdpProxy.blackhole`: the client is a UDP socket of ``pid``.

    Linux only: the socket inodes among ``/proc/PID/fd`` matched against ``/proc/net/udp``.
    """

    def covers(client: Address) -> bool:
        return client[1] in udp_ports(pid)

    return covers


def udp_ports(pid: int) -> set[int]:
    """The local ports of the UDP (IPv4 and IPv6) sockets process ``pid`` holds open."""
    inodes: set[str] = set()
    fds = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fds.iterdir():
            with contextlib.suppress(OSError):
                target = fd.readlink().name
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("udp", "udp6"):
        with contextlib.suppress(OSError):
            for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = row.split()
                if len(fields) > 9 and fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _send(transport: asyncio.DatagramTransport, data: bytes, to: Address | None) -> None:
    if transport.is_closing():
        return
    with contextlib.suppress(OSError):
        transport.sendto(data, to) if to is not None else transport.sendto(data)


class TcpProxy(_Proxy):
    """TCP between clients and ``upstream``: delay, blackhole (held), :meth:`cut`."""

    def __init__(
        self, upstream: Address, listen: Address = ("127.0.0.1", 0), *, seed: int | None = None
    ) -> None:
        super().__init__(upstream, listen, seed)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._pipe, *self.listen)
        self.address = self._server.sockets[0].getsockname()[:2]

    async def _close(self) -> None:
        await self._cut()
        if self._server is not None:
            self._server.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(writer)
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(
                self._copy("up", reader, up_writer), self._copy("down", up_reader, writer)
            )
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()

    async def _copy(
        self, direction: Direction, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        faults = self.faults
        try:
            while data := await reader.read(65536):
                while self.blackholed:  # held, not lost: TCP delivers it once the path is back
                    await asyncio.sleep(0.05)
                fault = faults[direction]
                delay = fault.delay + (self._rng.uniform(0, fault.jitter) if fault.jitter else 0)
                if delay > 0:
                    await asyncio.sleep(delay)
                self.counters[direction].forwarded += 1
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                if writer.can_write_eof():
                    writer.write_eof()

    def cut(self) -> None:
        """Reset every open connection now (both ends see a connection reset)."""
        self.run(self._cut())

    async def _cut(self) -> None:
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# -- by hand: the command line and its control socket -------------------------------------


def _address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def _control(proxy: _Proxy, request: list[str]) -> dict[str, Any]:
    command, args = request[0], request[1:]
    if command == "blackhole":
        proxy.blackhole(float(args[0]))
    elif command == "set":
        direction: Any = "both"
        values: dict[str, float] = {}
        for arg in args:
            key, _, value = arg.partition("=")
            if key == "direction":
                direction = value
            else:
                values[key] = float(value)
        proxy.set(direction, **values)
    elif command == "clear":
        proxy.clear()
    elif command == "rebind" and isinstance(proxy, UdpProxy):
        proxy.rebind()
    elif command == "cut" and isinstance(proxy, (TcpProxy, UdpProxy)):
        proxy.cut()
    elif command != "stats":
        return {"ok": False, "error": f"unknown command {command!r}"}
    return {"ok": True, "stats": proxy.stats()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="faultnet", description="A fault network for tests.")
    sub = parser.add_subparsers(dest="what", required=True)
    for kind in ("udp", "tcp"):
        p = sub.add_parser(kind, help=f"run a {kind.upper()} proxy until interrupted")
        p.add_argument("--to", required=True, type=_address, help="upstream host:port")
        p.add_argument("--listen", default="127.0.0.1:0", type=_address, help="host:port")
        p.add_argument("--control", required=True, type=Path, help="control socket path")
    ctl = sub.add_parser("ctl", help="send one command to a running proxy")
    ctl.add_argument("socket", type=Path)
    ctl.add_argument(
        "command", nargs="+", help="blackhole S | set k=v... | clear | rebind | cut | stats"
    )
    args = parser.parse_args(argv)
    if args.what == "ctl":
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(args.socket))
            sock.sendall((json.dumps(args.command) + "\n").encode())
            print(sock.makefile().readline().strip())
        return 0
    proxy: _Proxy = (UdpProxy if args.what == "udp" else TcpProxy)(args.to, args.listen)
    with proxy:
        print(
            f"faultnet {args.what} listening on {proxy.address[0]}:{proxy.address[1]}", flush=True
        )
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            args.control.unlink(missing_ok=True)
            server.bind(str(args.control))
            server.listen()
            try:
                while True:
                    conn, _ = server.accept()
                    with conn:
                        line = conn.makefile().readline()
                        try:
                            reply = _control(proxy, json.loads(line))
                        except (ValueError, IndexError, TypeError) as exc:
                            reply = {"ok": False, "error": str(exc)}
                        conn.sendall((json.dumps(reply) + "\n").encode())
            except KeyboardInterrupt:
                return 0


if __name__ == "__main__":
    sys.exit(main())
