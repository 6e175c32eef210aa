"""The floor under issue #12's goals: the design card's stack carrying a call's audio, nothing else.

    PYTHONPATH=firmware .venv/bin/python tests/bench/bench_floor.py \
        [--quic aioquic] [--quic qh3] [--transport webtransport] [--transport byways] \
        [--no-phone] [--no-peer] [--runs 5] [--seconds 20]

What a phone cannot do without, and nothing more (the "floor" client):

* a capture thread reading 20 ms frames from an ALSA PCM (alsa-lib's file
  plugin, a 1 kHz tone, paced by the thread as the phone's is) and posting each
  into the asyncio loop;
* Opus at the phone's settings on this machine (48 kHz mono, 24 kbit/s,
  complexity 9, FEC allowed, through the phone's own ctypes encoder);
* each packet sent over HTTP/3 on QUIC (aioquic, the design card's library, or
  qh3, the fork issue #12 names): as a WebTransport datagram, or (byways) as
  one request per chunk whose answer is the echo, fewer streams than the
  phone's PUT and held GET.  On aioquic with the phone's ACK policy (an ACK
  waits up to 20 ms and rides on the next packet); qh3's core schedules each
  ACK 1 ms after its packet and has no setting for it, so the floor moves
  that timer to 20 ms (``_hold_acks_for_data``) and the ACK rides on data as
  on aioquic;
* each packet received decoded and queued for a playback thread writing
  20 ms frames to an ALSA PCM.  The two audio threads' share is reported on
  its own (``audio_threads_s_per_min``): baresip's peerbench run reads a WAV
  file and plays nothing.

It leaves out everything RIPT adds: chunk framing and sealing, acknowledgements
and re-sends, the jitter buffer and concealment, the control socket, MQTT, the
screen.  It also sends nothing after a packet in (the phone schedules a transmit
so that a due ACK or a reopened request goes out), so it is a lower bound, not
a competitor.  The far end is a minimal aioquic server echoing each datagram
or body.  A run fails unless the echoed tone is heard (Goertzel, as the call
bench checks the phone's audio) in 90 % of the measured frames.

Each run measures, back to back on the same machine: the floor client for each
``--quic`` and ``--transport``, the phone in an Opus call on each transport
(tests/bench/compare.py) and
baresip calling itself (``../shared/peerbench``), all over ``--seconds`` of
established audio.  CPU is utime + stime of all threads (/proc/PID/stat), given
per call-minute; memory is the peak RSS (VmHWM, the highest of the runs).  One
JSON line per kind, with medians and the ratio to baresip's median.  Measure
with the Python the phone ships on (Debian's ``/usr/bin/python3``, see
provisioning/deb/build.sh): an interpreter built without PGO and LTO, such as
pyenv's default, runs the same code about a quarter slower.  Results go in
docs/performance.md.

qh3 is not a dependency: ``--quic qh3`` needs it importable (``pip install
qh3``, or ``--qh3-path DIR`` for a ``pip install --target DIR qh3``).
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: alsa, integration, bench
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "firmware"))

RATE = 48000
FRAME_SAMPLES = 960  # 20 ms
PERIOD_S = 0.020
ACK_DELAY_S = 0.020  # as riptphone.net.h3.ACK_DELAY
SETTLE_S = 1.0
PEERBENCH = Path(__file__).resolve().parents[3] / "shared" / "peerbench"


def _quic(lib: str) -> dict[str, Any]:
    """The names the floor uses, from ``aioquic`` or ``qh3`` (the same API)."""
    return {
        "asyncio": importlib.import_module(f"{lib}.asyncio"),
        "h3": importlib.import_module(f"{lib}.h3.connection"),
        "h3_events": importlib.import_module(f"{lib}.h3.events"),
        "config": importlib.import_module(f"{lib}.quic.configuration"),
        "events": importlib.import_module(f"{lib}.quic.events"),
        # aioquic's packet spaces are keyed by Epoch; qh3 keeps them in Rust.
        "one_rtt": importlib.import_module("aioquic.tls").Epoch.ONE_RTT
        if lib == "aioquic"
        else None,
    }


# _delay_acks and _ack_now copy riptphone.net.h3's delay_acks and ack_now rather
# than import them: that module brings the phone's HTTP/3 client with it, 3.9 MB
# that would count in the floor client's peak RSS.


def _delay_acks(quic: Any) -> None:
    # aioquic only (a private attribute, as the phone sets it); qh3 has no such setting.
    if hasattr(quic, "_ack_delay"):
        quic._ack_delay = ACK_DELAY_S


def _hold_acks_for_data(quic: Any) -> None:
    """qh3 only: let an ACK wait up to ``ACK_DELAY_S`` for a packet of data to ride on.

    qh3's packet core schedules each ACK 1 ms after the packet that needs it
    (its timer kind ``ack_application``) and has no setting for that delay; at
    20 ms a tick, the ACK would leave alone before the next packet of data.
    The protocol arms its timer from ``get_timer()``, so the floor moves an ACK
    timer to ``ACK_DELAY_S`` after the packet (the aioquic floor's and the
    phone's delay); a packet of data built sooner carries the ACK and the
    core's timer moves on.  Only the ACK's timer moves (a loss-detection time
    inside the hold waits for it, at most 19 ms; none is due on loopback
    without loss).
    """
    core = getattr(quic, "_core", None)
    if core is None or not hasattr(core, "get_timer"):
        return
    core_timer = core.get_timer
    hold = ACK_DELAY_S - 0.001  # qh3's own 1 ms is already in the time it gives

    def get_timer() -> float | None:
        timer = core_timer()
        if timer is None:
            return None
        kind, at = timer
        return at + hold if kind == "ack_application" else at

    quic.get_timer = get_timer


def _ack_now(quic: Any, now: float, one_rtt: Any) -> None:
    """The ACK owed rides on the packet about to be built (riptphone.net.h3.ack_now)."""
    if one_rtt is None:
        return
    space = quic._spaces.get(one_rtt)
    if space is not None and space.ack_at is not None and space.ack_at > now:
        space.ack_at = now


# --------------------------------------------------------------------------- the echo far end


def serve(port_file: Path, cert: Path, key: Path) -> None:
    q = _quic("aioquic")
    h3_events, events = q["h3_events"], q["events"]

    class Echo(q["asyncio"].QuicConnectionProtocol):  # type: ignore[misc]
        h3: Any = None

        def quic_event_received(self, event: Any) -> None:
            if isinstance(event, events.ProtocolNegotiated):
                self.h3 = q["h3"].H3Connection(self._quic, enable_webtransport=True)
            elif isinstance(event, events.HandshakeCompleted):
                _delay_acks(self._quic)
            if self.h3 is None:
                return
            for h3_event in self.h3.handle_event(event):
                if isinstance(h3_event, h3_events.HeadersReceived):
                    if (b":method", b"CONNECT") in h3_event.headers:
                        self.h3.send_headers(h3_event.stream_id, [(b":status", b"200")])
                elif isinstance(h3_event, h3_events.DataReceived) and h3_event.stream_ended:
                    # A byway: the chunk comes back as the answer's body.
                    stream_id = h3_event.stream_id
                    self.h3.send_headers(stream_id, [(b":status", b"200")])
                    self.h3.send_data(stream_id, h3_event.data, end_stream=True)
                    _ack_now(self._quic, self._loop.time(), q["one_rtt"])
                elif isinstance(h3_event, h3_events.DatagramReceived):
                    self.h3.send_datagram(h3_event.stream_id, h3_event.data)
                    _ack_now(self._quic, self._loop.time(), q["one_rtt"])

    async def main() -> None:
        config = q["config"].QuicConfiguration(
            is_client=False, alpn_protocols=q["h3"].H3_ALPN, max_datagram_frame_size=65536
        )
        config.load_cert_chain(str(cert), str(key))
        server = await q["asyncio"].serve(
            "127.0.0.1", 0, configuration=config, create_protocol=Echo
        )
        port_file.write_text(str(server._transport.get_extra_info("sockname")[1]))
        await asyncio.Event().wait()

    asyncio.run(main())


# --------------------------------------------------------------------------- the floor client


def client(lib: str, transport: str, port: int, ca_file: Path, audio_threads: int) -> None:
    import alsaaudio

    from ript.media.opus_codec import OpusDecoder, OpusEncoder

    q = _quic(lib)
    h3_events, events = q["h3_events"], q["events"]
    encoder = OpusEncoder(RATE, 24000, fec=True, expected_loss_pct=0, complexity=9)
    decoder = OpusDecoder(RATE)
    played: collections.deque[bytes] = collections.deque(maxlen=10)
    silence = bytes(2 * FRAME_SAMPLES)
    stop = threading.Event()

    class Floor(q["asyncio"].QuicConnectionProtocol):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.h3 = q["h3"].H3Connection(self._quic, enable_webtransport=True)
            self.answered: asyncio.Future[None] = self._loop.create_future()
            self.session = -1
            self.put_headers: list[tuple[bytes, bytes]] = []

        def quic_event_received(self, event: Any) -> None:
            if isinstance(event, events.HandshakeCompleted):
                _delay_acks(self._quic)
                _hold_acks_for_data(self._quic)
            for h3_event in self.h3.handle_event(event):
                if isinstance(h3_event, h3_events.DatagramReceived | h3_events.DataReceived):
                    if h3_event.data:
                        played.append(decoder.decode(h3_event.data))
                elif isinstance(h3_event, h3_events.HeadersReceived) and not self.answered.done():
                    self.answered.set_result(None)

        def datagram_received(self, data: bytes, addr: Any) -> None:
            # The lower bound: no transmit after a packet in (the phone schedules one).
            self._quic.receive_datagram(data, addr, now=self._loop.time())
            self._process_events()

        def on_mic(self, pcm: bytes) -> None:
            self.h3.send_datagram(self.session, encoder.encode(pcm))
            _ack_now(self._quic, self._loop.time(), q["one_rtt"])
            self.transmit()

        def on_mic_byway(self, pcm: bytes) -> None:
            # One request per chunk, its answer the echo: fewer streams than the
            # phone's PUT and held GET per chunk, so still a lower bound.
            stream_id = self._quic.get_next_available_stream_id()
            self.h3.send_headers(stream_id, self.put_headers)
            self.h3.send_data(stream_id, encoder.encode(pcm), end_stream=True)
            _ack_now(self._quic, self._loop.time(), q["one_rtt"])
            self.transmit()

    def open_pcm(kind: int, device: str, periods: int) -> Any:
        # The phone's format (riptphone.hw.alsa): 20 ms periods, 4 in, 3 out (a call's
        # earpiece now has 4; over the file plugin, which never blocks, no difference).
        return alsaaudio.PCM(
            kind, alsaaudio.PCM_NORMAL, device=device, channels=1, rate=RATE,
            format=alsaaudio.PCM_FORMAT_S16_LE, periodsize=FRAME_SAMPLES, periods=periods,
        )  # fmt: skip

    def capture(loop: asyncio.AbstractEventLoop, on_mic: Callable[[bytes], None]) -> None:
        pcm = open_pcm(alsaaudio.PCM_CAPTURE, "phone_in", 4)
        due = time.monotonic() + PERIOD_S
        while not stop.is_set():
            _, data = pcm.read()
            wait = due - time.monotonic()
            if wait > 0:
                stop.wait(wait)
            due += PERIOD_S
            loop.call_soon_threadsafe(on_mic, data)

    def playback() -> None:
        pcm = open_pcm(alsaaudio.PCM_PLAYBACK, "phone_out", 3)
        due = time.monotonic() + PERIOD_S
        while not stop.is_set():
            wait = due - time.monotonic()
            if wait > 0:
                stop.wait(wait)
            due += PERIOD_S
            pcm.write(played.popleft() if played else silence)

    def duplex(loop: asyncio.AbstractEventLoop, on_mic: Callable[[bytes], None]) -> None:
        # Both directions on one thread, one wake-up a frame: possible where
        # neither device paces (the file plugin) or both run on one clock.
        capture_pcm = open_pcm(alsaaudio.PCM_CAPTURE, "phone_in", 4)
        playback_pcm = open_pcm(alsaaudio.PCM_PLAYBACK, "phone_out", 3)
        due = time.monotonic() + PERIOD_S
        while not stop.is_set():
            _, data = capture_pcm.read()
            wait = due - time.monotonic()
            if wait > 0:
                stop.wait(wait)
            due += PERIOD_S
            loop.call_soon_threadsafe(on_mic, data)
            playback_pcm.write(played.popleft() if played else silence)

    async def main() -> None:
        config = q["config"].QuicConfiguration(
            is_client=True,
            alpn_protocols=q["h3"].H3_ALPN,
            max_datagram_frame_size=65536,
            server_name="localhost",
        )
        config.load_verify_locations(str(ca_file))
        connect = q["asyncio"].connect
        async with connect("127.0.0.1", port, configuration=config, create_protocol=Floor) as p:
            p.session = p._quic.get_next_available_stream_id()
            p.h3.send_headers(
                p.session,
                [
                    (b":method", b"CONNECT"),
                    (b":protocol", b"webtransport"),
                    (b":scheme", b"https"),
                    (b":authority", f"localhost:{port}".encode()),
                    (b":path", b"/media"),
                ],
            )
            p.transmit()
            await asyncio.wait_for(p.answered, 20)
            loop = asyncio.get_running_loop()
            p.put_headers = [
                (b":method", b"PUT"),
                (b":scheme", b"https"),
                (b":authority", f"localhost:{port}".encode()),
                (b":path", b"/media/chunk"),
                (b"content-type", b"application/octet-stream"),
            ]
            on_mic = p.on_mic if transport == "webtransport" else p.on_mic_byway
            if audio_threads == 1:
                threading.Thread(target=duplex, args=(loop, on_mic), daemon=True).start()
            else:
                threading.Thread(target=capture, args=(loop, on_mic), daemon=True).start()
                threading.Thread(target=playback, daemon=True).start()
            print("ready", flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())


# --------------------------------------------------------------------------- measuring


def _cpu_and_hwm(pid: int) -> tuple[float, float]:
    from bench.compare import cpu_seconds
    from bench.harness import proc_status_kb

    return cpu_seconds(pid), proc_status_kb(pid, "VmHWM") / 1024


def _main_thread_cpu(pid: int) -> float:
    """CPU seconds of the process's main thread (the asyncio loop's); the rest is its audio."""
    from bench.compare import TICKS

    with open(f"/proc/{pid}/task/{pid}/stat") as stat:
        text = stat.read()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def heard_fraction(played: bytes, seconds: float) -> float:
    """Of the last ``seconds`` the playback thread wrote, the share of frames holding the tone."""
    from riptdev.processes import OTHER_HZ, TONE_HZ, goertzel, tone_found

    size = 2 * FRAME_SAMPLES
    frames = [played[i : i + size] for i in range(0, len(played) - size + 1, size)]
    tail = frames[-int(seconds / PERIOD_S) :]
    heard = sum(
        1
        for frame in tail
        if tone_found(goertzel(frame, RATE, TONE_HZ), goertzel(frame, RATE, OTHER_HZ))
    )
    return heard / max(1, len(tail))


def measure_floor(
    work: Path,
    lib: str,
    transport: str,
    seconds: float,
    qh3_path: str | None,
    *,
    audio_threads: int,
) -> tuple[float, float, float]:
    """One call of the floor client: CPU s per call-minute (all, audio threads), peak RSS in MB."""
    from alsa.fileplugin import write_asoundrc
    from integration.h3_test_server import make_pki
    from riptdev.processes import stop_process, tone_pcm

    work.mkdir(parents=True)
    pki = make_pki(work)
    alsa = write_asoundrc(work / "alsa", tone_pcm(seconds + 20, RATE))
    port_file = work / "port"
    me = [sys.executable, __file__]
    server = subprocess.Popen(
        [*me, "--role", "server", str(port_file), str(pki.cert_file), str(pki.key_file)]
    )
    floor: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text()):
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("bench: the echo server did not start")
            time.sleep(0.05)
        env = alsa.env()
        if qh3_path:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [qh3_path, env.get("PYTHONPATH")]))
        role = [lib, transport, port_file.read_text(), str(pki.ca_file), str(audio_threads)]
        floor = subprocess.Popen(
            [*me, "--role", "client", *role],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert floor.stdout is not None
        started, _, _ = select.select([floor.stdout], [], [], 30)
        if not started or floor.stdout.readline().strip() != "ready":
            raise SystemExit(f"bench: the floor client on {lib} did not start its call")
        time.sleep(SETTLE_S)
        before, _ = _cpu_and_hwm(floor.pid)
        main_before = _main_thread_cpu(floor.pid)
        start = time.monotonic()
        time.sleep(seconds)
        after, hwm = _cpu_and_hwm(floor.pid)
        main_after = _main_thread_cpu(floor.pid)
        window = time.monotonic() - start
        heard = heard_fraction(alsa.playback_file.read_bytes(), seconds)
        if heard < 0.9:  # not a call: the echo did not come back (or not in time)
            raise SystemExit(f"bench: floor-{lib}-{transport} heard the echo in {heard:.0%}")
        audio = (after - before) - (main_after - main_before)
        return (after - before) * 60 / window, audio * 60 / window, hwm
    finally:
        if floor is not None:
            stop_process(floor)
        stop_process(server)


def main() -> int:
    # The far end and the floor client are this file run again; argparse, json and
    # the bench's helpers stay out of them, as the client's memory is measured.
    if sys.argv[1:2] == ["--role"]:
        role, *rest = sys.argv[2:]
        if role == "server":
            serve(Path(rest[0]), Path(rest[1]), Path(rest[2]))
        else:
            client(rest[0], rest[1], int(rest[2]), Path(rest[3]), int(rest[4]))
        return 0

    import argparse
    import contextlib
    import json
    import statistics
    import tempfile

    from bench.benchlib import cases, mismatches
    from bench.compare import PeerError, measure_baresip, measure_phone, own_loopback

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quic", action="append", choices=["aioquic", "qh3"])
    parser.add_argument("--transport", action="append", choices=["webtransport", "byways"])
    parser.add_argument("--qh3-path", default=None, help="a folder holding the qh3 package")
    parser.add_argument(
        "--audio-threads",
        action="append",
        type=int,
        choices=[1, 2],
        help="the floor's audio on two threads (the phone's design, default) or one for both",
    )
    parser.add_argument("--no-phone", action="store_true", help="leave out the phone's call")
    parser.add_argument("--no-peer", action="store_true", help="leave out baresip")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--peerbench", default=str(PEERBENCH))
    args = parser.parse_args()
    transports = args.transport or ["webtransport"]
    kinds = [
        f"floor-{lib}-{t}" + ("" if threads == 2 else "-1thread")
        for t in transports
        for threads in args.audio_threads or [2]
        for lib in args.quic or ["aioquic"]
    ]
    kinds += [] if args.no_phone else [f"phone-{t}" for t in transports]
    kinds += [] if args.no_peer else ["baresip"]
    peerbench = Path(args.peerbench)
    if "baresip" in kinds and not (peerbench / "run_baresip_bench.sh").exists():
        raise SystemExit(f"bench: no run_baresip_bench.sh in {peerbench}")
    opus_case = {case.transport: case for case in cases(transports, ["opus"])}
    cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
    rss: dict[str, list[float]] = {kind: [] for kind in kinds}
    audio: dict[str, list[float]] = {kind: [] for kind in kinds if kind.startswith("floor-")}
    work = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    # baresip's own network namespace (root only) is made only when baresip runs.
    loopback = own_loopback() if "baresip" in kinds else contextlib.nullcontext([])
    with loopback as prefix:
        for run in range(1, args.runs + 1):
            for kind in kinds:
                where = work / f"r{run}" / kind
                if kind.startswith("floor-"):
                    _, lib, transport, *one = kind.split("-")
                    total, threads, peak = measure_floor(
                        where, lib, transport, args.seconds, args.qh3_path,
                        audio_threads=1 if one else 2,
                    )  # fmt: skip
                    audio[kind].append(threads)
                    got = total, peak
                elif kind.startswith("phone-"):
                    case = opus_case[kind[6:]]
                    phone = measure_phone(where, case, args.seconds)
                    # A call that fell back to byways is not a WebTransport figure.
                    problems = mismatches(case, phone.transport, phone.codec) + phone.notes
                    for problem in problems:
                        print(f"bench: {kind} run {run}: {problem}", file=sys.stderr)
                    if mismatches(case, phone.transport, phone.codec):
                        continue
                    got = phone.phone_cpu_s_per_min, phone.phone_peak_rss_mb
                else:
                    try:
                        peer = measure_baresip(peerbench, where, "opus", args.seconds, prefix)
                    except PeerError as exc:  # one lost comparison, not the whole run
                        print(f"bench: baresip run {run} failed: {exc}", file=sys.stderr)
                        continue
                    got = peer.caller_cpu_s_per_min, peer.caller_peak_rss_mb
                cpu[kind].append(got[0])
                rss[kind].append(got[1])
                print(
                    f"run {run} {kind}: {got[0]:.2f} s/min, peak RSS {got[1]:.1f} MB"
                    f" (load {os.getloadavg()[0]:.2f})",
                    file=sys.stderr,
                    flush=True,
                )
    peer_median = statistics.median(cpu["baresip"]) if cpu.get("baresip") else None
    for kind in kinds:
        if not cpu[kind]:
            print(f"bench: {kind}: no run gave a figure", file=sys.stderr)
            continue
        median = statistics.median(cpu[kind])
        line: dict[str, object] = {
            "kind": kind,
            "cpu_s_per_min": round(median, 3),
            "runs": [round(value, 3) for value in cpu[kind]],
            "peak_rss_mb": round(max(rss[kind]), 1),
        }
        if kind in audio:  # the capture and playback threads' share (baresip's run has neither)
            line["audio_threads_s_per_min"] = round(statistics.median(audio[kind]), 3)
        if peer_median:
            line["ratio_to_baresip"] = round(median / peer_median, 2)
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
