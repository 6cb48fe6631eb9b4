#!/usr/bin/env python3
"""Run `maskwatch run` for a while and watch it for leaks: resident memory, threads and open
file descriptors of the service process, sampled from /proc.

    python scripts/soak.py --minutes 10 [--config config/maskwatch.toml]

Prints one JSON line per sample and a summary: memory growth after warm-up (the first
--warmup seconds are excluded), and the range of thread and descriptor counts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sample(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024.0,
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds left out of growth")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--config", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = args.config
        if config is None:
            config = Path(tmp) / "soak.toml"
            config.write_text('[source]\nkind = "demo"\n[web]\nbind = "127.0.0.1"\nport = 0\n')
        log_path = Path(tmp) / "service.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "maskwatch", "run", "--config", str(config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
            started = time.monotonic()
            samples = []
            try:
                while time.monotonic() - started < args.minutes * 60:
                    time.sleep(args.every)
                    if proc.poll() is not None:
                        print(log_path.read_text()[-3000:], file=sys.stderr)
                        print(f"service exited with {proc.returncode}", file=sys.stderr)
                        return 1
                    s = sample(proc.pid) | {"t": round(time.monotonic() - started, 1)}
                    samples.append(s)
                    print(json.dumps(s), flush=True)
            finally:
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(15)
        alarms = log_path.read_text().count(" ALARM ")
    warm = [s for s in samples if s["t"] >= args.warmup]
    if len(warm) < 2:
        print("run too short for a growth figure", file=sys.stderr)
        return 1
    first, peak = warm[0]["rss_mb"], max(s["rss_mb"] for s in warm)
    summary = {
        "minutes": args.minutes,
        "rss_mb_after_warmup": round(first, 1),
        "rss_mb_end": round(warm[-1]["rss_mb"], 1),
        "rss_growth_pct": round(100.0 * (peak - first) / first, 2),
        "threads": [min(s["threads"] for s in warm), max(s["threads"] for s in warm)],
        "fds": [min(s["fds"] for s in warm), max(s["fds"] for s in warm)],
        "alarms": alarms,
        "exit_status": code,
    }
    print(json.dumps({"summary": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
