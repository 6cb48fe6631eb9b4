"""scripts/bench_stream.py end to end, very short: it runs the service, connects its gst-launch
clients and reports every phase. A check that the benchmark works, never of its figures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, require_data, require_models
from stream_helpers import require_stream_stack


def test_the_stream_benchmark_measures_0_1_and_2_clients() -> None:
    require_models()
    require_stream_stack()
    video = require_data("videos", "gituatu_nomask.mp4")
    if shutil.which("gst-launch-1.0") is None:
        pytest.skip("gst-launch-1.0 missing: apt install gstreamer1.0-tools")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_stream.py"), "--video", str(video),
         "--seconds", "2", "--rounds", "1", "--json"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [p["clients"] for p in report["phases"]] == [0, 1, 2]
    assert [p["encoding"] for p in report["phases"]] == [[], ["/live"], ["/live"]]
    assert all(p["fps"] > 0 and p["cpu_pct"] > 0 for p in report["phases"])
    assert set(report["by_clients"]) == {"0", "1", "2"}
    assert report["encoder"] and "cpu_pct_per_client" in report
