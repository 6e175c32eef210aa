"""The call benchmark's pure parts: options, cases, the JSON lines, alignment, peerbench's CSV.

Nothing here starts a process or opens a socket, so ``tests/unit/test_benchlib.py``
checks it in milliseconds: a broken option, a wrong median or ratio, or an
alignment off by one sample is caught without running the benchmark itself.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

TRANSPORTS: Final = ("webtransport", "byways")
CODECS: Final = ("opus", "pcmu")
PEERS: Final = ("baresip",)
LOSSES: Final = (0.0, 3.0, 10.0)
"""Random loss, in percent, of the quality measurement (each with JITTER_MS of jitter)."""
JITTER_MS: Final = 40.0
"""Each packet is delayed by a random 0..JITTER_MS (so some also overtake others)."""

CODEC_RATE: Final = {"opus": 48000, "pcmu": 8000}
"""The rate the phone opens its ALSA devices at for each codec (the codec's clock rate)."""
CONFIG_CODEC: Final = {"opus": "opus", "pcmu": "PCMU"}
"""``--codec`` -> the name in the phone's ``[audio] codecs`` and in advertisements."""
PESQ_MODES: Final = {"opus": (("wb", 16000), ("nb", 8000)), "pcmu": (("nb", 8000),)}
"""PESQ (ITU-T P.862) modes scored per codec: P.862.2 wide-band only where the codec is."""

Samples = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Case:
    transport: str
    codec: str

    @property
    def name(self) -> str:
        return f"{self.transport}-{self.codec}"


def parse_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The benchmark's command line; ``compare`` says whether any comparison option was given.

    Without ``--transport``, ``--codec``, ``--peer`` or ``--pesq`` the benchmark does
    what it always did (set-up times and CPU of one Opus call); with any of them it
    runs the cases (each unnamed option: all its values) and prints JSON lines.
    """
    parser = argparse.ArgumentParser(
        prog="bench_call.py", description="Call benchmark on loopback (tests/bench/bench_call.py)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--calls", type=int, default=20, help="calls per set-up run")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of a CPU sample")
    parser.add_argument(
        "--transport", action="append", choices=TRANSPORTS, help="media transport (repeatable)"
    )
    parser.add_argument("--codec", action="append", choices=CODECS, help="codec (repeatable)")
    parser.add_argument(
        "--peer", action="append", choices=PEERS, help="measure this peer in the same run"
    )
    parser.add_argument(
        "--pesq", action="store_true", help="audio quality (PESQ) of speech under loss"
    )
    parser.add_argument(
        "--loss",
        action="append",
        type=float,
        help=f"loss in percent for --pesq (repeatable; default {', '.join(map(str, LOSSES))})",
    )
    parser.add_argument(
        "--jitter-ms",
        type=float,
        default=JITTER_MS,
        help=f"jitter for --pesq: each packet delayed 0..N ms (default {JITTER_MS:g})",
    )
    parser.add_argument(
        "--no-cpu", action="store_true", help="with --pesq: skip the CPU comparison"
    )
    parser.add_argument(
        "--peerbench", default=None, help="the peerbench folder (default: ../shared/peerbench)"
    )
    parser.add_argument(
        "--phone-audio",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an [audio] key of the phone, as TOML (repeatable); e.g. opus_fec=false",
    )
    args = parser.parse_args(argv)
    for item in args.phone_audio:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier() or not value.strip():
            parser.error(f"--phone-audio {item!r}: must be KEY=VALUE (a TOML value)")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    for loss in args.loss or ():
        if not 0 <= loss < 100:
            parser.error(f"--loss {loss:g}: must be 0 to below 100 (percent)")
    if args.jitter_ms < 0:
        parser.error("--jitter-ms must not be negative")
    args.compare = bool(args.transport or args.codec or args.peer or args.pesq)
    args.cases = cases(args.transport, args.codec)
    args.losses = tuple(dict.fromkeys(args.loss)) if args.loss else LOSSES
    args.peers = tuple(dict.fromkeys(args.peer or ()))
    return args


def cases(transports: Iterable[str] | None, codecs: Iterable[str] | None) -> list[Case]:
    """Every transport x codec named (each in the order first named, duplicates once)."""
    chosen_t = tuple(dict.fromkeys(transports)) if transports else TRANSPORTS
    chosen_c = tuple(dict.fromkeys(codecs)) if codecs else CODECS
    return [Case(t, c) for t in chosen_t for c in chosen_c]


@dataclass(slots=True)
class PhoneRun:
    """One measured call of the phone: CPU per minute, memory, and what the call really used."""

    phone_cpu_s_per_min: float
    provider_cpu_s_per_min: float
    phone_peak_rss_mb: float
    transport: str | None
    codec: str | None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PeerRun:
    """One peerbench rep: the caller (``a``, the side like our phone) and the callee."""

    caller_cpu_s_per_min: float
    callee_cpu_s_per_min: float
    caller_peak_rss_mb: float
    warnings: tuple[str, ...] = ()


def mismatches(case: Case, transport: str | None, codec: str | None) -> list[str]:
    """What the call used (``status.call``) that the case did not ask for, one phrase each."""
    found = []
    if transport != case.transport:
        found.append(f"transport {transport} instead of {case.transport}")
    if codec != case.codec:
        found.append(f"codec {codec} instead of {case.codec}")
    return found


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def case_line(
    case: Case, phone: Sequence[PhoneRun], peer_runs: Sequence[PeerRun | None]
) -> dict[str, Any]:
    """The JSON line of one case: medians over the runs, the ratio, and every run.

    ``peer_runs[i]`` is the baresip call measured right after ``phone[i]`` (None
    if it failed; empty without a peer).  ``ratio`` is the median phone figure
    over the median baresip caller's (None without a peer). ``mismatch`` lists,
    once each, what some run used instead of the case's transport or codec:
    such a case does not measure what it says.
    """
    peer = [p for p in peer_runs if p is not None]
    phone_cpu = _median([r.phone_cpu_s_per_min for r in phone])
    peer_cpu = _median([r.caller_cpu_s_per_min for r in peer])
    problems = list(dict.fromkeys(m for r in phone for m in mismatches(case, r.transport, r.codec)))
    runs: list[dict[str, Any]] = []
    for i, r in enumerate(phone):
        run: dict[str, Any] = {
            "phone_cpu_s_per_min": round(r.phone_cpu_s_per_min, 3),
            "provider_cpu_s_per_min": round(r.provider_cpu_s_per_min, 3),
            "phone_peak_rss_mb": round(r.phone_peak_rss_mb, 1),
            "transport": r.transport,
            "codec": r.codec,
        }
        if r.notes:
            run["notes"] = r.notes
        p = peer_runs[i] if i < len(peer_runs) else None
        if p is not None:
            run["baresip_cpu_s_per_min"] = round(p.caller_cpu_s_per_min, 3)
            run["baresip_callee_cpu_s_per_min"] = round(p.callee_cpu_s_per_min, 3)
            run["baresip_peak_rss_mb"] = round(p.caller_peak_rss_mb, 1)
            if p.warnings:
                run["baresip_warnings"] = list(p.warnings)
        runs.append(run)
    return {
        "case": case.name,
        "transport": case.transport,
        "codec": case.codec,
        "phone_cpu_s_per_min": phone_cpu,
        "provider_cpu_s_per_min": _median([r.provider_cpu_s_per_min for r in phone]),
        "baresip_cpu_s_per_min": peer_cpu,
        "baresip_callee_cpu_s_per_min": _median([r.callee_cpu_s_per_min for r in peer]),
        "ratio": round(phone_cpu / peer_cpu, 2) if phone_cpu is not None and peer_cpu else None,
        "phone_peak_rss_mb": _median([r.phone_peak_rss_mb for r in phone]),
        "baresip_peak_rss_mb": _median([r.caller_peak_rss_mb for r in peer]),
        "mismatch": problems,
        "runs": runs,
    }


@dataclass(frozen=True, slots=True)
class QualityRun:
    """One scored call: MOS-LQO, where the echo came back, and what the call went through."""

    mos_lqo: float
    echo_delay_ms: float
    transport: str | None
    codec: str | None
    chunks_lost: int
    late: int
    media_restarts: int
    """Media sessions after the first (re-established byways): the played file is the last one's."""
    concealed: int = 0
    """Frames the phone's earpiece played as concealment (``frames_concealed``)."""


def quality_line(
    case: Case, mode: str, *, loss: float, jitter_ms: float, runs: Sequence[QualityRun]
) -> dict[str, Any]:
    """The JSON line of one PESQ condition: the median MOS-LQO of the runs, and each."""
    problems = list(dict.fromkeys(m for r in runs for m in mismatches(case, r.transport, r.codec)))
    if any(r.media_restarts for r in runs):
        problems.append("media restarted in a call: that run scored the last session only")
    return {
        "pesq": mode,
        "case": case.name,
        "transport": case.transport,
        "codec": case.codec,
        "loss_pct": loss,
        "jitter_ms": jitter_ms,
        "mos_lqo": _median([r.mos_lqo for r in runs]),
        "echo_delay_ms": _median([r.echo_delay_ms for r in runs]),
        "mismatch": problems,
        "runs": [
            {
                "mos_lqo": round(r.mos_lqo, 3),
                "echo_delay_ms": round(r.echo_delay_ms, 1),
                "chunks_lost": r.chunks_lost,
                "late": r.late,
                "media_restarts": r.media_restarts,
                "concealed": r.concealed,
            }
            for r in runs
        ],
    }


def quality_table(lines: Sequence[dict[str, Any]]) -> str:
    """The PESQ lines as a Markdown table: one row per case and mode, one column per loss."""
    losses = sorted({float(line["loss_pct"]) for line in lines})
    rows: dict[tuple[str, str], dict[float, Any]] = {}
    for line in lines:
        rows.setdefault((line["case"], line["pesq"]), {})[float(line["loss_pct"])] = line["mos_lqo"]
    head = "| case | PESQ | " + " | ".join(f"{loss:g} % loss" for loss in losses) + " |"
    out = [head, "|" + " --- |" * (2 + len(losses))]
    for (name, mode), scores in rows.items():
        cells = [f"{scores[x]:.2f}" if scores.get(x) is not None else "-" for x in losses]
        out.append(f"| {name} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def align(reference: Samples, degraded: Samples) -> tuple[int, Samples]:
    """Where ``reference`` starts in ``degraded`` (in samples) and the aligned cut.

    The lag is the peak of the cross-correlation over the lags at which the
    reference starts inside the degraded signal, never before it (the echo
    path only adds delay); the cut is as long as the reference, zero-padded if
    the recording ended early.  FFT-based, zero-padded to at least the sum of
    both lengths so no lag wraps round: a minute of 16 kHz audio takes
    milliseconds.
    """
    if len(reference) == 0 or len(degraded) == 0:
        raise ValueError("cannot align an empty signal")
    size = 1 << (len(reference) + len(degraded)).bit_length()
    spectrum = np.fft.rfft(degraded, size) * np.conj(np.fft.rfft(reference, size))
    correlation = np.fft.irfft(spectrum, size)[: len(degraded)]
    lag = int(np.argmax(correlation))
    cut = degraded[lag : lag + len(reference)]
    if len(cut) < len(reference):
        cut = np.concatenate([cut, np.zeros(len(reference) - len(cut))])
    return lag, cut


def pcm16(data: bytes) -> Samples:
    """S16_LE bytes as float samples (PESQ and the alignment work on floats)."""
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float64)


def peerbench_runs(csv_text: str, codec: str) -> list[PeerRun]:
    """peerbench's CSV (``run_baresip_bench.sh``) -> one PeerRun per rep of ``codec``'s variant."""
    by_rep: dict[str, dict[str, dict[str, str]]] = {}
    for row in csv.DictReader(io.StringIO(csv_text)):
        if row["variant"].split(":")[0] == codec:
            by_rep.setdefault(row["rep"], {})[row["side"]] = row
    runs = []
    for rep in sorted(by_rep, key=int):
        sides = by_rep[rep]
        if {"a", "b"} - sides.keys():
            raise ValueError(f"peerbench rep {rep} of {codec} lacks a side: {sorted(sides)}")
        runs.append(
            PeerRun(
                caller_cpu_s_per_min=float(sides["a"]["cpu_s_per_min"]),
                callee_cpu_s_per_min=float(sides["b"]["cpu_s_per_min"]),
                caller_peak_rss_mb=int(sides["a"]["vmhwm_kb"]) / 1024,
            )
        )
    return runs


def peerbench_warnings(output: str) -> tuple[str, ...]:
    """The ``WARN:`` lines of a peerbench run (a call not established or ended early)."""
    return tuple(line.strip() for line in output.splitlines() if line.startswith("WARN"))


def csv_path(output: str) -> str | None:
    """The CSV file a peerbench run names on its ``CSV: PATH`` line."""
    match = re.search(r"(?m)^CSV: (\S+)$", output)
    return match.group(1) if match else None


def with_server_key(provider_toml: str, key: str, value: str) -> str:
    """``provider_toml`` with ``key = value`` added to its ``[server]`` section."""
    text, found = re.subn(r"(?m)^\[server\]\n", f"[server]\n{key} = {value}\n", provider_toml)
    if found != 1:
        raise ValueError("the provider's configuration needs exactly one [server] section")
    return text


def with_audio_codecs(phone_toml: str, codecs: Sequence[str], extra: Sequence[str] = ()) -> str:
    """``phone_toml`` with ``[audio] codecs`` set to ``codecs``, and the ``KEY=VALUE`` lines."""
    listed = ", ".join(f'"{c}"' for c in codecs)
    lines = "".join(f"{item.strip()}\n" for item in extra)
    text, found = re.subn(r"(?m)^\[audio\]\n", f"[audio]\ncodecs = [{listed}]\n{lines}", phone_toml)
    if found != 1:
        raise ValueError("the phone's configuration needs exactly one [audio] section")
    return text


def only_codec_advertisement(codec: str) -> str:
    """A one-port-each-way advertisement offering ``codec`` alone (``--codec``'s fallback)."""
    name = CONFIG_CODEC[codec]
    return f"1 in: {name};\n1 out: {name};"
