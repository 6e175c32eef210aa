"""The call benchmark's pure helpers (tests/bench/benchlib.py): options, JSON lines, alignment.

The benchmark itself is run on demand, never by pytest; these catch a broken
option, a wrong median or ratio, a lost mismatch flag, or an alignment that is
off, in milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.benchlib import (
    CONFIG_CODEC,
    LOSSES,
    Case,
    PeerRun,
    PhoneRun,
    QualityRun,
    align,
    case_line,
    cases,
    csv_path,
    only_codec_advertisement,
    parse_options,
    pcm16,
    peerbench_runs,
    peerbench_warnings,
    quality_line,
    quality_table,
    with_audio_codecs,
    with_server_key,
)
from integration.procs import PROVIDER_TOML
from ript.protocol.advertisement import negotiate, parse_advertisement
from riptphone.config import load_config
from riptprovider.core import PROVIDER_ADVERTISEMENT


def test_no_comparison_option_keeps_the_old_benchmark() -> None:
    args = parse_options([])
    assert not args.compare
    assert (args.runs, args.calls, args.seconds) == (3, 20, 30.0)


def test_each_unnamed_option_means_all_its_values() -> None:
    args = parse_options(["--peer", "baresip"])
    assert args.compare and args.peers == ("baresip",)
    assert [c.name for c in args.cases] == [
        "webtransport-opus",
        "webtransport-pcmu",
        "byways-opus",
        "byways-pcmu",
    ]
    assert args.losses == LOSSES


def test_repeated_options_give_their_cases_in_order_once() -> None:
    args = parse_options(
        ["--codec", "pcmu", "--transport", "byways", "--codec", "opus", "--codec", "pcmu"]
    )
    assert args.cases == [Case("byways", "pcmu"), Case("byways", "opus")]
    assert args.peers == ()


@pytest.mark.parametrize(
    "argv",
    [["--transport", "sip"], ["--codec", "g729"], ["--runs", "0"], ["--pesq", "--loss", "100"]],
)
def test_bad_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_options(argv)


def test_cases_without_choice_cover_every_transport_and_codec() -> None:
    assert len(cases(None, None)) == 4
    assert cases(["webtransport"], ["opus", "opus"]) == [Case("webtransport", "opus")]


def phone_run(cpu: float, transport: str = "byways", codec: str = "opus") -> PhoneRun:
    return PhoneRun(cpu, cpu / 2, 60.0 + cpu, transport, codec)


def test_case_line_takes_medians_and_the_ratio_of_medians() -> None:
    case = Case("byways", "opus")
    phone = [phone_run(12.0), phone_run(10.0), phone_run(30.0)]
    peer = [PeerRun(1.0, 1.1, 17.0), PeerRun(2.0, 2.2, 18.0), PeerRun(1.5, 1.4, 19.0)]
    line = case_line(case, phone, peer)
    assert line["phone_cpu_s_per_min"] == 12.0
    assert line["provider_cpu_s_per_min"] == 6.0
    assert line["baresip_cpu_s_per_min"] == 1.5
    assert line["baresip_callee_cpu_s_per_min"] == 1.4
    assert line["ratio"] == 8.0
    assert line["phone_peak_rss_mb"] == 72.0
    assert line["baresip_peak_rss_mb"] == 18.0
    assert line["mismatch"] == []
    assert [r["baresip_cpu_s_per_min"] for r in line["runs"]] == [1.0, 2.0, 1.5]
    assert json.loads(json.dumps(line)) == line  # one JSON line, nothing unserialisable


def test_case_line_without_a_peer_has_no_ratio() -> None:
    line = case_line(Case("byways", "pcmu"), [phone_run(5.0, codec="pcmu")], [])
    assert line["ratio"] is None and line["baresip_cpu_s_per_min"] is None
    assert line["phone_cpu_s_per_min"] == 5.0


def test_a_failed_baresip_run_leaves_the_others() -> None:
    phone = [phone_run(10.0), phone_run(11.0)]
    line = case_line(Case("byways", "opus"), phone, [None, PeerRun(2.0, 2.0, 18.0)])
    assert line["baresip_cpu_s_per_min"] == 2.0 and line["ratio"] == 5.25
    assert "baresip_cpu_s_per_min" not in line["runs"][0]
    assert line["runs"][1]["baresip_cpu_s_per_min"] == 2.0


def test_a_call_on_another_transport_or_codec_is_flagged_once() -> None:
    case = Case("webtransport", "pcmu")
    runs = [phone_run(5.0, "byways", "pcmu"), phone_run(6.0, "byways", "opus")]
    line = case_line(case, runs, [])
    assert line["mismatch"] == [
        "transport byways instead of webtransport",
        "codec opus instead of pcmu",
    ]


def quality_run(mos: float, *, restarts: int = 0, transport: str = "byways") -> QualityRun:
    return QualityRun(mos, 120.0, transport, "opus", 3, 1, restarts)


def test_quality_line_and_table() -> None:
    case = Case("byways", "opus")
    lines = [
        quality_line(
            case,
            "wb",
            loss=loss,
            jitter_ms=40.0,
            runs=[quality_run(4.0 - loss / 10), quality_run(3.0), quality_run(4.2)],
        )
        for loss in (0.0, 10.0)
    ]
    assert [line["mos_lqo"] for line in lines] == [4.0, 3.0]
    assert lines[0]["mismatch"] == [] and len(lines[0]["runs"]) == 3
    table = quality_table(lines).splitlines()
    assert table[0] == "| case | PESQ | 0 % loss | 10 % loss |"
    assert table[2] == "| byways-opus | wb | 4.00 | 3.00 |"


def test_quality_line_flags_a_restarted_media_session_and_another_transport() -> None:
    line = quality_line(
        Case("webtransport", "opus"),
        "nb",
        loss=3.0,
        jitter_ms=40.0,
        runs=[quality_run(3.5, restarts=1)],
    )
    assert line["mismatch"][0] == "transport byways instead of webtransport"
    assert "media restarted" in line["mismatch"][1]


def speechlike(seconds: float, rate: int, seed: int = 7) -> np.ndarray:
    """Noise bursts under a syllable-rate envelope: a signal with one clear alignment."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = np.clip(np.sin(2 * np.pi * 3.3 * t) + 0.2 * np.sin(2 * np.pi * 0.7 * t), 0, None)
    return 8000 * envelope * rng.standard_normal(len(t))


@pytest.mark.parametrize("lag", [0, 1, 1234, 4000])
def test_align_finds_the_delay_of_a_noisy_copy(lag: int) -> None:
    reference = speechlike(2.0, 8000)
    rng = np.random.default_rng(1)
    degraded = np.concatenate([np.zeros(lag), 0.5 * reference, np.zeros(3000)])
    degraded += 200 * rng.standard_normal(len(degraded))
    found, cut = align(reference, degraded)
    assert found == lag
    assert len(cut) == len(reference)
    assert np.corrcoef(cut, reference)[0, 1] > 0.95


def test_align_pads_a_recording_that_ended_early() -> None:
    reference = speechlike(1.0, 8000)
    degraded = np.concatenate([np.zeros(500), reference[:6000]])
    found, cut = align(reference, degraded)
    assert found == 500
    assert len(cut) == len(reference) and not cut[6000:].any()


def test_align_refuses_nothing() -> None:
    with pytest.raises(ValueError, match="empty"):
        align(np.zeros(0), np.ones(10))


def test_pcm16_reads_little_endian_and_ignores_an_odd_byte() -> None:
    assert pcm16(b"\x01\x00\xff\xff\x00\x80\x07").tolist() == [1.0, -1.0, -32768.0]


PEERBENCH_CSV = """\
variant,rep,side,cpu_s_stat,cpu_s_schedstat,win_s,cpu_s_per_min,vmhwm_kb,vmrss_kb,threads,pcap_pps_sent,call_tx_pkts,call_rx_pkts
opus:none:aufile,1,a,0.620,0.600,30.01,1.240,18124,18000,5,50.0,NA,NA
opus:none:aufile,1,b,0.610,0.600,30.01,1.220,18000,17900,5,50.0,NA,NA
pcmu:none:aufile,1,a,0.510,0.500,30.01,1.020,9216,9000,5,50.0,NA,NA
pcmu:none:aufile,1,b,0.515,0.500,30.01,1.030,9100,9000,5,50.0,NA,NA
"""


def test_peerbench_csv_gives_one_run_per_rep_of_the_codec() -> None:
    runs = peerbench_runs(PEERBENCH_CSV, "opus")
    assert runs == [PeerRun(1.24, 1.22, 18124 / 1024)]
    assert peerbench_runs(PEERBENCH_CSV, "pcmu")[0].caller_cpu_s_per_min == 1.02


def test_peerbench_rep_missing_a_side_is_an_error() -> None:
    text = "\n".join(PEERBENCH_CSV.splitlines()[:2]) + "\n"
    with pytest.raises(ValueError, match="lacks a side"):
        peerbench_runs(text, "opus")


def test_peerbench_output_lines() -> None:
    out = (
        "opus...,1,a\nWARN: call not established (opus:none:aufile r1)\nCSV: /tmp/x/r.csv\nvariant"
    )
    assert csv_path(out) == "/tmp/x/r.csv"
    assert peerbench_warnings(out) == ("WARN: call not established (opus:none:aufile r1)",)
    assert csv_path("nothing") is None


def test_the_provider_key_lands_in_server() -> None:
    text = with_server_key(PROVIDER_TOML, "webtransport", "false")
    assert "[server]\nwebtransport = false\n" in text
    with pytest.raises(ValueError):
        with_server_key("[accounts]\n", "webtransport", "true")


@pytest.mark.parametrize("codec", ["opus", "pcmu"])
def test_the_codec_key_is_one_the_phone_config_accepts(tmp_path: Path, codec: str) -> None:
    text = '[provider]\ndomain = "example.com"\n\n[audio]\ncapture = "phone_in"\n'
    path = tmp_path / "phone.toml"
    path.write_text(with_audio_codecs(text, [CONFIG_CODEC[codec]]))
    config = load_config(path)
    assert config.audio.codecs == [CONFIG_CODEC[codec]]
    assert config.audio.capture == "phone_in"
    with pytest.raises(ValueError, match="audio"):
        with_audio_codecs("[provider]\n", ["opus"])


def test_phone_audio_keys_reach_the_phone_config(tmp_path: Path) -> None:
    # --phone-audio: baresip's encoder settings for a like-with-like comparison.
    text = '[provider]\ndomain = "example.com"\n\n[audio]\ncapture = "phone_in"\n'
    path = tmp_path / "phone.toml"
    extra = ["opus_fec=false", "opus_complexity = 10", "opus_bitrate=32000"]
    path.write_text(with_audio_codecs(text, ["opus"], extra))
    audio = load_config(path).audio
    assert (audio.opus_fec, audio.opus_complexity, audio.opus_bitrate) == (False, 10, 32000)
    assert parse_options(["--peer", "baresip", "--phone-audio", "opus_fec=false"]).phone_audio == [
        "opus_fec=false"
    ]
    with pytest.raises(SystemExit):
        parse_options(["--phone-audio", "opus_fec"])


@pytest.mark.parametrize("codec", ["opus", "pcmu"])
def test_the_fallback_advertisement_makes_the_provider_pick_the_codec(codec: str) -> None:
    directive = negotiate(
        parse_advertisement(only_codec_advertisement(codec)),
        parse_advertisement(PROVIDER_ADVERTISEMENT),
    )
    assert [c.name.lower() for s in directive.streams for c in s.codecs] == [codec]


def voiced(seconds: float, rate: int = 48000) -> bytes:
    """A vowel-like signal (120 Hz harmonics under a syllable envelope), S16_LE: PESQ scores it."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(120 + 20 * np.sin(2 * np.pi * 0.5 * t)) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 25))
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.5
    return np.round(6000 * envelope * x / np.abs(x).max()).astype("<i2").tobytes()


def test_scoring_finds_the_delay_and_tells_a_clean_copy_from_lost_frames() -> None:
    from bench.quality import score  # imports pesq: only this test needs it

    speech = voiced(4.0)
    played = bytes(2 * 24000) + speech + bytes(2 * 4800)  # 0.5 s late, as an echo would be
    clean = score(speech, played, 48000, "opus")
    assert set(clean) == {"wb", "nb"}
    assert all(abs(start - 0.5) < 0.001 for _, start in clean.values())
    assert all(mos > 4.3 for mos, _ in clean.values())
    holed = bytearray(played)
    frame = 2 * 960
    for i in range(2 * 24000, len(holed), 10 * frame):  # every 10th 20 ms frame lost
        holed[i : i + frame] = bytes(len(holed[i : i + frame]))
    lossy = score(speech, bytes(holed), 48000, "opus")
    assert all(lossy[mode][0] < clean[mode][0] - 1.5 for mode in clean)
