"""The benchmarks that compare with baresip run, end to end, in short smoke runs.

``tests/bench/bench_call.py --transport byways --codec pcmu --runs 1 --seconds 2``
starts a real provider and phone, calls the echoing far end with the case's
codec, and prints one JSON line.  PCMU is the case that needs the bench's own
codec choice (the provider prefers Opus), so a broken choice shows here as a
mismatch.  12-18 s (a loaded machine); baresip and PESQ are left to the on-demand runs.

``tests/bench/bench_floor.py --no-phone --no-peer`` runs its floor client (the
design card's stack carrying a call's audio, no RIPT) on both transports against
its echo server, and fails unless the echoed tone is heard.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

CASE = ("--transport", "byways", "--codec", "pcmu")
BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_call.py"


def test_one_case_gives_one_json_line_with_the_asked_codec() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), *CASE, "--runs", "1", "--seconds", "2"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env=os.environ,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == 1, done.stdout
    line = lines[0]
    assert (line["case"], line["transport"], line["codec"]) == ("byways-pcmu", "byways", "pcmu")
    assert line["mismatch"] == [], line
    assert line["runs"][0]["codec"] == "pcmu" and line["runs"][0]["transport"] == "byways"
    assert line["phone_cpu_s_per_min"] > 0 and line["provider_cpu_s_per_min"] > 0
    assert 10 < line["phone_peak_rss_mb"] < 1000  # VmHWM of a Python daemon, in MB
    assert line["ratio"] is None and line["baresip_cpu_s_per_min"] is None  # no --peer


FLOOR = Path(__file__).resolve().parents[1] / "bench" / "bench_floor.py"


def test_the_floor_bench_carries_audio_both_ways_on_both_transports() -> None:
    # The floor client's call is real: the bench fails unless the echo of the tone
    # comes back (heard in 90 % of the measured frames); baresip and qh3 stay on-demand.
    done = subprocess.run(
        [sys.executable, str(FLOOR), "--no-phone", "--no-peer", "--runs", "1", "--seconds", "2",
         "--transport", "webtransport", "--transport", "byways", "--audio-threads", "2",
         "--audio-threads", "1"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env=os.environ,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    assert [line["kind"] for line in lines] == [
        "floor-aioquic-webtransport",
        "floor-aioquic-webtransport-1thread",
        "floor-aioquic-byways",
        "floor-aioquic-byways-1thread",
    ], done.stdout
    for line in lines:
        assert line["cpu_s_per_min"] > 0 and len(line["runs"]) == 1
        assert 10 < line["peak_rss_mb"] < 1000
        assert "ratio_to_baresip" not in line  # no --peer run to compare with


IMPORT_RSS = Path(__file__).resolve().parents[1] / "bench" / "import_rss.py"


def test_the_import_rss_bench_weighs_the_phones_imports() -> None:
    # qh3 is not a dependency, so only the aioquic run is checked here.
    done = subprocess.run(
        [sys.executable, str(IMPORT_RSS)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout)
    assert line["quic"] == "aioquic" and 10 < line["vm_rss_mb"] < 1000
    assert line["modules"] > 100
