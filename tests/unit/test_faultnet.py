"""The fault network itself (tests/faultnet.py): each fault on real loopback sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faultnet import TcpProxy, UdpProxy, ports_of, udp_ports


@pytest.fixture
def udp_echo() -> Iterator[tuple[tuple[str, int], list[tuple[str, int]]]]:
    """A UDP echo server; the list collects the source address of each packet it got."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    seen: list[tuple[str, int]] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(2048)
            except TimeoutError:
                continue
            seen.append(addr)
            sock.sendto(data, addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname(), seen
    stop.set()
    thread.join()
    sock.close()


def client(proxy: UdpProxy) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.3)
    sock.connect(proxy.address)
    return sock


def echoes(sock: socket.socket, count: int) -> list[bytes]:
    got = []
    for i in range(count):
        sock.send(b"%d" % i)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            got.append(sock.recv(2048))
        except TimeoutError:
            break
    return got


def test_udp_passes_through_and_drops_everything_in_a_blackhole(udp_echo) -> None:  # type: ignore[no-untyped-def]
    upstream, _seen = udp_echo
    with UdpProxy(upstream) as net:
        sock = client(net)
        assert sorted(echoes(sock, 5)) == sorted(b"%d" % i for i in range(5))
        net.blackhole(0.5)
        assert echoes(sock, 5) == []
        time.sleep(0.5)
        assert len(echoes(sock, 5)) == 5
        assert net.stats()["up"]["dropped"] == 5
        sock.close()


def test_a_blackhole_of_one_process_leaves_the_others_through(udp_echo) -> None:  # type: ignore[no-untyped-def]
    server, _ = udp_echo
    with UdpProxy(server) as net:
        mine, theirs = client(net), client(net)
        assert len(echoes(mine, 3)) == 3 and len(echoes(theirs, 3)) == 3
        assert mine.getsockname()[1] in udp_ports(os.getpid())
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            net.blackhole(5, only=ports_of(other.pid))  # a process that holds neither socket
            assert len(echoes(mine, 3)) == 3
            net.blackhole(5, only=lambda client: client[1] == mine.getsockname()[1])
            assert echoes(mine, 3) == [] and len(echoes(theirs, 3)) == 3
        finally:
            other.kill()
            other.wait()


def test_a_cut_kills_the_flows_seen_so_far_and_lets_new_ones_through(udp_echo) -> None:  # type: ignore[no-untyped-def]
    server, _ = udp_echo
    with UdpProxy(server) as net:
        old = client(net)
        assert len(echoes(old, 3)) == 3
        net.cut()
        assert echoes(old, 3) == []  # the old flow is dead, for good
        net.clear()
        assert echoes(old, 3) == []
        fresh = client(net)  # a new socket: a new connection
        assert len(echoes(fresh, 3)) == 3
        assert net.cuts == 1 and net.stats()["up"]["dropped"] == 6


def test_udp_loss_duplication_and_delay(udp_echo) -> None:  # type: ignore[no-untyped-def]
    upstream, _seen = udp_echo
    with UdpProxy(upstream, seed=1) as net:
        sock = client(net)
        net.set("up", loss=1.0)
        assert echoes(sock, 3) == []
        net.set("up", loss=0.0, duplicate=1.0)
        assert len(echoes(sock, 3)) == 6  # each packet twice, each echoed
        net.clear()
        net.set("down", delay=0.15)
        started = time.monotonic()
        sock.send(b"x")
        sock.settimeout(1.0)
        assert sock.recv(10) == b"x"
        assert time.monotonic() - started >= 0.15
        sock.close()


def test_udp_reordering_changes_the_order(udp_echo) -> None:  # type: ignore[no-untyped-def]
    upstream, _seen = udp_echo
    with UdpProxy(upstream, seed=3) as net:
        sock = client(net)
        net.set("up", reorder=0.5, delay=0.01)
        got = echoes(sock, 40)
        assert sorted(got) == sorted(b"%d" % i for i in range(40))
        assert got != [b"%d" % i for i in range(40)]
        sock.close()


def test_nat_rebinding_moves_the_client_to_a_new_source_port(udp_echo) -> None:  # type: ignore[no-untyped-def]
    upstream, seen = udp_echo
    with UdpProxy(upstream) as net:
        sock = client(net)
        assert len(echoes(sock, 1)) == 1
        before = seen[-1]
        net.rebind()
        assert len(echoes(sock, 1)) == 1  # the client notices nothing
        after = seen[-1]
        assert before[1] != after[1] and net.source_ports() == [after[1]]
        sock.close()


@pytest.fixture
def tcp_echo() -> Iterator[tuple[str, int]]:
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()
    stop.set()
    thread.join()
    server.close()


def _echo(conn: socket.socket) -> None:
    with conn:
        try:
            while data := conn.recv(4096):
                conn.sendall(data)
        except OSError:
            pass


def test_tcp_holds_data_in_a_blackhole_and_cut_resets(tcp_echo) -> None:  # type: ignore[no-untyped-def]
    with TcpProxy(tcp_echo) as net:
        sock = socket.create_connection(net.address, timeout=2)
        sock.sendall(b"hello")
        assert sock.recv(10) == b"hello"
        net.blackhole(0.4)
        started = time.monotonic()
        sock.sendall(b"later")
        assert sock.recv(10) == b"later"  # held, then delivered: nothing lost
        assert time.monotonic() - started >= 0.35
        net.cut()
        with pytest.raises((ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
            sock.sendall(b"x")
            if not sock.recv(10):
                raise ConnectionResetError("closed")
        sock.close()
        again = socket.create_connection(net.address, timeout=2)  # a new connection works
        again.sendall(b"ok")
        assert again.recv(10) == b"ok"
        again.close()
        assert net.connections == 2


def test_by_hand_through_the_command_line(udp_echo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    upstream, _seen = udp_echo
    control = tmp_path / "fn.sock"
    script = Path(__file__).resolve().parents[1] / "faultnet.py"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(script),
            "udp",
            "--to",
            f"{upstream[0]}:{upstream[1]}",
            "--control",
            str(control),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        port = int(line.rsplit(":", 1)[1])
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(0.3)
        sock.connect(("127.0.0.1", port))
        assert len(echoes(sock, 2)) == 2
        done = subprocess.run(
            [sys.executable, str(script), "ctl", str(control), "blackhole", "5"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert '"ok": true' in done.stdout
        assert echoes(sock, 2) == []
        sock.close()
    finally:
        proc.terminate()
        proc.wait(5)
