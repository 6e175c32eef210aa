"""Audio quality under loss: PESQ (ITU-T P.862) of speech through the echo far end.

The phone's microphone is a file (alsa-lib's file plugin): 2 s of silence,
then speech.  The far end echoes every chunk at once with the phone's own
sequence number (the provider's ``media = "echo-in-order"``), so the speech
crosses the network twice (phone -> provider -> phone) before the phone
plays it into the playback file, and the phone's jitter buffer faces the
whole round trip's reordering and loss.  Plain ``media = "echo"`` numbers
the chunks in the order they arrived, so every pair the path swapped on the
way in would be played swapped at the phone (about a third of the frames at
40 ms of jitter): a score of the test's far end, not of the phone.

tests/faultnet.py's UDP proxy sits between phone and
provider (the provider's ``[server] origin`` names the proxy), and once the
call is answered it drops ``loss`` % of the packets each way at random and
delays each by up to 40 ms (so packets also come out of order).

The played file is brought to the scoring rate (8 kHz narrow-band, P.862;
16 kHz wide-band, P.862.2, for Opus), aligned with the speech by
cross-correlation (which cuts the echo path's delay), and scored with the
``pesq`` package.

The speech: the eight recorded channel names of alsa-utils
(/usr/share/sounds/alsa/Front_Left.wav ..., a human voice, 48 kHz), a
package of the phone's image; about 12 s with short pauses.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import wave
from pathlib import Path

from pesq import pesq

from alsa.fileplugin import write_asoundrc
from bench.benchlib import (
    CODEC_RATE,
    CONFIG_CODEC,
    PESQ_MODES,
    Case,
    QualityRun,
    align,
    mismatches,
    pcm16,
    quality_line,
    quality_table,
    with_server_key,
)
from bench.compare import own_loopback
from bench.harness import bench_provider_toml, call_info, case_processes, dial, hang_up
from faultnet import UdpProxy
from integration.procs import PROVIDER_TOML
from ript.media import codecs
from ript.media.codecs import FRAME_MS
from ript.media.resample import Resampler
from riptdev.processes import free_udp_port
from riptphone.control.client import ControlConnection, request

SPEECH_DIR = Path("/usr/share/sounds/alsa")
WORDS = (
    "Front_Left",
    "Front_Center",
    "Front_Right",
    "Side_Left",
    "Side_Right",
    "Rear_Left",
    "Rear_Center",
    "Rear_Right",
)
SPEECH_RATE = 48000
LEAD_S = 2.0  # silence before the speech: the faults are on before it starts
GAP_S = 0.3
TAIL_S = 3.0  # the echo path's delay and the jitter buffer, with room to spare


def speech_48k() -> bytes:
    """The speech, S16_LE mono at 48 kHz, a whole number of 20 ms frames."""
    gap = bytes(int(GAP_S * SPEECH_RATE) * 2)
    parts = []
    for word in WORDS:
        path = SPEECH_DIR / f"{word}.wav"
        if not path.exists():
            raise SystemExit(f"bench: {path} is missing: apt-get install alsa-utils")
        with wave.open(str(path), "rb") as wav:
            if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (SPEECH_RATE, 1, 2):
                raise SystemExit(f"bench: {path} is not 48 kHz 16-bit mono")
            parts.append(wav.readframes(wav.getnframes()))
        parts.append(gap)
    pcm = b"".join(parts)
    frame = SPEECH_RATE // 50 * 2
    return pcm + bytes(-len(pcm) % frame)


def at_rate(pcm: bytes, rate_in: int, rate_out: int) -> bytes:
    """``pcm`` resampled with the firmware's own resampler (whole blocks: padded)."""
    if rate_in == rate_out:
        return pcm
    block = 2 * max(rate_in, rate_out) // min(rate_in, rate_out)
    return Resampler(rate_in, rate_out).process(pcm + bytes(-len(pcm) % block))


def score(
    speech: bytes, played: bytes, codec_rate: int, codec: str
) -> dict[str, tuple[float, float]]:
    """{mode: (MOS-LQO, seconds into ``played`` where the speech starts)}."""
    scores = {}
    for mode, rate in PESQ_MODES[codec]:
        reference = pcm16(at_rate(speech, SPEECH_RATE, rate))
        degraded = pcm16(at_rate(played, codec_rate, rate))
        lag, cut = align(reference, degraded)
        scores[mode] = (float(pesq(rate, reference, cut, mode)), lag / rate)
    return scores


def codec_only(speech: bytes, codec: str) -> dict[str, float]:
    """{mode: MOS-LQO} of the speech through the phone's own encoder and decoder alone.

    No network, no jitter buffer, no devices: the ceiling the call can reach with
    this codec, to tell the codec's share of a score from the path's.
    """
    spec = codecs.find(CONFIG_CODEC[codec])
    assert spec is not None and spec.new_encoder is not None and spec.new_decoder is not None
    encoder, decoder = spec.new_encoder(FRAME_MS), spec.new_decoder(FRAME_MS)
    rate = CODEC_RATE[codec]
    pcm = at_rate(speech, SPEECH_RATE, rate)
    size = spec.frame_bytes(FRAME_MS)
    pcm += bytes(-len(pcm) % size)
    played = b"".join(
        decoder.decode(encoder.encode(pcm[i : i + size])) for i in range(0, len(pcm), size)
    )
    return {mode: mos for mode, (mos, _start) in score(speech, played, rate, codec).items()}


BARESIP_WAV = {"opus": "tone48k_mono_100s.wav", "pcmu": "tone8k_mono_100s.wav"}
"""The source file peerbench's mkconf.sh gives baresip per codec: we put the speech there."""


def baresip_quality(
    peerbench: Path, work: Path, codec: str, speech: bytes, prefix: list[str]
) -> dict[str, float]:
    """{mode: MOS-LQO} of the speech sent by one baresip to another, no fault, one way.

    peerbench's configurations (mkconf.sh), with the speech as the callee's file
    source and the caller's decoded audio dumped by baresip's sndfile module.
    Neither loss nor an echo is available there: this is baresip's path at 0 %
    loss, crossing loopback once (the phone's echo crosses it twice).
    """
    rate = CODEC_RATE[codec]
    (work / "wav").mkdir(parents=True, exist_ok=True)
    pcm = at_rate(
        bytes(int(LEAD_S * SPEECH_RATE) * 2) + speech + bytes(8 * SPEECH_RATE * 2),
        SPEECH_RATE,
        rate,
    )
    with wave.open(str(work / "wav" / BARESIP_WAV[codec]), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    env = {**os.environ, "PEERBENCH_DIR": str(work)}
    for side in ("a", "b"):
        subprocess.run(
            [str(peerbench / "mkconf.sh"), str(work / side), side, codec, "none", "aufile"],
            env=env,
            check=True,
            capture_output=True,
        )
    dump = work / "dump"
    dump.mkdir(exist_ok=True)
    with (work / "a" / "config").open("a") as config:
        config.write(f"module\t\t\tsndfile.so\nsnd_path\t\t{dump}\n")
    seconds = int(LEAD_S + len(speech) / 2 / SPEECH_RATE + TAIL_S)
    script = (
        f'baresip -4 -f "{work}/b" </dev/null >"{work}/b.log" 2>&1 & B=$!; sleep 1.5; '
        f'baresip -4 -f "{work}/a" -e "/dial sip:b@127.0.0.1:5070" -t {seconds} '
        f'</dev/null >"{work}/a.log" 2>&1; kill -TERM $B; wait $B'
    )
    subprocess.run([*prefix, "bash", "-c", script], check=False, timeout=seconds + 30)
    decoded = sorted(dump.glob("*-dec.wav"))
    if not decoded:
        raise SystemExit(f"bench: baresip dumped no decoded audio (see {work}/a.log)")
    with wave.open(str(decoded[-1]), "rb") as wav:
        played = wav.readframes(wav.getnframes())
        played_rate = wav.getframerate()
    return {mode: mos for mode, (mos, _) in score(speech, played, played_rate, codec).items()}


def measure_quality(
    work: Path, case: Case, *, loss_pct: float, jitter_ms: float, seed: int, speech: bytes
) -> tuple[dict[str, QualityRun], list[str]]:
    """One call of ``case`` at ``loss_pct``: {PESQ mode: its figures}, and notes on the run."""
    rate = CODEC_RATE[case.codec]
    lead = bytes(int(LEAD_S * rate) * 2)
    capture = lead + at_rate(speech, SPEECH_RATE, rate) + bytes(int((TAIL_S + 5) * rate) * 2)
    alsa = write_asoundrc(work / "alsa", capture)
    notes: list[str] = []
    proxy_port = free_udp_port()
    base = with_server_key(
        bench_provider_toml(PROVIDER_TOML, "echo-in-order"),
        "origin",
        f'"https://localhost:{proxy_port}"',
    )
    call_s = LEAD_S + len(speech) / 2 / SPEECH_RATE + TAIL_S
    # The upstream is the provider's port, known once it runs: case_processes sets it.
    with (
        UdpProxy(("127.0.0.1", 9), ("127.0.0.1", proxy_port), seed=seed) as net,
        case_processes(work, base, case, alsa, notes, net=net) as (_provider, phone),
        ControlConnection(phone.socket, timeout=20.0) as watch,
    ):
        watch.request({"cmd": "watch"})
        dial(phone, watch)
        net.set(loss=loss_pct / 100, jitter=jitter_ms / 1000)
        time.sleep(call_s)
        transport, codec, stats = call_info(request(phone.socket, {"cmd": "status"}))
        net.clear()
        hang_up(phone, watch)
    # A media session restarted (byways re-established after a stall) reopens both
    # devices: the file plugin then truncates the played file and capture starts over.
    restarts = phone.log_text().count("event=media_started") - 1
    played = alsa.playback_file.read_bytes()
    scored = {}
    for mode, (mos, start) in score(speech, played, rate, case.codec).items():
        # The speech left the microphone LEAD_S into the capture; where it starts in
        # the played file, less that, is the echo path's delay (both devices open together).
        scored[mode] = QualityRun(
            mos_lqo=mos,
            echo_delay_ms=(start - LEAD_S) * 1000,
            transport=transport,
            codec=codec,
            chunks_lost=int(stats.get("chunks_lost") or 0),
            late=int(stats.get("late") or 0),
            media_restarts=restarts,
            concealed=int(stats.get("frames_concealed") or 0),
        )
    return scored, notes


def run_quality(  # noqa: PLR0917 (the command line's choices, each its own)
    work: Path,
    cases: list[Case],
    losses: tuple[float, ...],
    jitter_ms: float,
    runs: int,
    peerbench: Path | None,
) -> list[dict[str, object]]:
    """Every case at every loss, ``runs`` times; prints and returns the JSON lines.

    First the ceiling of each codec alone and, with ``peerbench``, baresip's
    one-way path at 0 % loss (median of ``runs``).
    """
    speech = speech_48k()
    codecs_used = list(dict.fromkeys(case.codec for case in cases))
    for codec in codecs_used:
        for mode, mos in codec_only(speech, codec).items():
            line = {"pesq": mode, "case": f"codec-only-{codec}", "codec": codec, "loss_pct": 0.0}
            print(json.dumps({**line, "jitter_ms": 0.0, "mos_lqo": round(mos, 3)}), flush=True)
    if peerbench is not None:
        with own_loopback() as prefix:
            for codec in codecs_used:
                scores: dict[str, list[float]] = {}
                for run in range(1, runs + 1):
                    where = work / f"baresip-q{run}-{codec}"
                    for mode, mos in baresip_quality(
                        peerbench, where, codec, speech, prefix
                    ).items():
                        scores.setdefault(mode, []).append(mos)
                for mode, got in scores.items():
                    line = {"pesq": mode, "case": f"baresip-one-way-{codec}", "codec": codec}
                    line |= {"loss_pct": 0.0, "jitter_ms": 0.0}
                    line |= {"mos_lqo": round(statistics.median(got), 3)}
                    print(json.dumps({**line, "runs": [round(x, 3) for x in got]}), flush=True)
    got: dict[tuple[Case, float, str], list[QualityRun]] = {}
    for run in range(1, runs + 1):
        for case in cases:
            for loss in losses:
                scored, notes = measure_quality(
                    work / f"q{run}" / f"{case.name}-{loss:g}",
                    case,
                    loss_pct=loss,
                    jitter_ms=jitter_ms,
                    seed=run,
                    speech=speech,
                )
                for note in notes:
                    print(f"bench: {case.name} {loss:g} % run {run}: {note}", file=sys.stderr)
                for mode, figures in scored.items():
                    got.setdefault((case, loss, mode), []).append(figures)
                    for problem in mismatches(case, figures.transport, figures.codec):
                        print(f"bench: {case.name} run {run}: {problem}", file=sys.stderr)
                shown = ", ".join(f"{m} {q.mos_lqo:.2f}" for m, q in scored.items())
                print(f"run {run} {case.name} {loss:g} % loss: PESQ {shown}", file=sys.stderr)
    lines = []
    for (case, loss, mode), figures in got.items():
        line = quality_line(case, mode, loss=loss, jitter_ms=jitter_ms, runs=figures)
        lines.append(line)
        print(json.dumps(line), flush=True)
    print(quality_table(lines), flush=True)
    return lines
