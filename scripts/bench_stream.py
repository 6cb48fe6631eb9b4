#!/usr/bin/env python3
"""What the RTSP stream costs detection: `maskwatch run` on a looping video, measured with 0,
1 and 2 stream clients in turn, in one run.

    python scripts/bench_stream.py [--video FILE] [--seconds 20] [--rounds 3] [--json]

The clients are gst-launch-1.0 processes (rtspsrc over TCP into a fakesink: they receive and
depayload every packet but decode nothing, like a recorder that stores the stream). Per phase
it reads the service's processed-frame counter (/api/status) and its CPU time (utime + stime
from /proc/<pid>/stat). The fps cap is lifted to 60 so that it hides nothing: detection runs
as fast as the video's own frame rate and the CPU allow, and where the CPU is the limit
anything the stream costs shows as lost detection fps. The phases rotate
(0, 1, 2 clients, then again) so a change of load on the machine spreads over all of them,
and medians over the rounds are reported. A benchmark, not a test: figures depend on the
machine.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "videos" / "gituatu_nomask.mp4"
PASSWORD = "bench-stream"
CLIENT_COUNTS = (0, 1, 2)
SETTLE_S = 4.0  # after clients connect or leave, before measuring
START_TIMEOUT_S = 120.0
TICKS = os.sysconf("SC_CLK_TCK")


class Service:
    """`maskwatch run` with the stream on, the page on a free port and a known password."""

    def __init__(self, tmp: Path, video: Path, stream_port: int) -> None:
        self.state = tmp / "state"
        self.config = tmp / "bench.toml"
        self.config.write_text(
            f'[source]\nkind = "file"\npath = "{video}"\nloop = true\n'
            '[processing]\nfps_cap = 60\n'
            '[web]\nbind = "127.0.0.1"\nport = 0\n'
            f'[stream]\nenabled = true\nbind = "127.0.0.1"\nport = {stream_port}\n')
        env = dict(os.environ, MASKWATCH_STATE_DIR=str(self.state))
        subprocess.run([sys.executable, "-m", "maskwatch", "set-password", "--config",
                        str(self.config)], input=PASSWORD + "\n", text=True, env=env,
                       check=True, capture_output=True)
        self.log = tmp / "service.log"
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "maskwatch", "run", "--config", str(self.config)],
            stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        self.base = self._wait_for("web: listening on ").split()[0].rstrip("/")
        self._wait_for("stream: rtsp on ")

    def _wait_for(self, marker: str) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("service exited:\n" + self.log.read_text()[-3000:])
            for line in self.log.read_text().splitlines():
                if marker in line:
                    return line.split(marker, 1)[1]
            time.sleep(0.2)
        raise RuntimeError(f"no {marker!r} in the log:\n" + self.log.read_text()[-3000:])

    def status(self) -> dict:
        request = urllib.request.Request(self.base + "/api/status")
        token = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(15)
        self._log_file.close()


def start_clients(count: int, url: str) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            ["gst-launch-1.0", "-q", "rtspsrc", f"location={url}", "protocols=tcp",
             "latency=200", "!", "rtph264depay", "!", "fakesink", "sync=false"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        for _ in range(count)
    ]


def stop_clients(clients: list[subprocess.Popen]) -> None:
    for client in clients:
        client.send_signal(signal.SIGINT)
    for client in clients:
        try:
            client.wait(10)
        except subprocess.TimeoutExpired:
            client.kill()
            client.wait()


def measure(service: Service, clients: int, url: str, seconds: float) -> dict:
    running = start_clients(clients, url)
    try:
        time.sleep(SETTLE_S)
        before, cpu_before, t0 = service.status(), service.cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        after, cpu_after, t1 = service.status(), service.cpu_seconds(), time.monotonic()
        watching = after["stream"]["clients"]
        if watching != clients or any(c.poll() is not None for c in running):
            raise RuntimeError(f"{clients} client(s) started, {watching} connected")
    finally:
        stop_clients(running)
    time.sleep(SETTLE_S)
    span = t1 - t0
    return {
        "clients": clients,
        "fps": round((after["frames_processed"] - before["frames_processed"]) / span, 2),
        "cpu_pct": round(100.0 * (cpu_after - cpu_before) / span, 1),
        "encoding": after["stream"]["encoding"],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def summarise(phases: list[dict]) -> dict:
    by_count = {
        n: {"fps": round(statistics.median(p["fps"] for p in phases if p["clients"] == n), 2),
            "cpu_pct": round(statistics.median(p["cpu_pct"] for p in phases
                                               if p["clients"] == n), 1)}
        for n in CLIENT_COUNTS
    }
    zero, one, two = (by_count[n] for n in CLIENT_COUNTS)
    return {
        "by_clients": by_count,
        "fps_ratio_2_to_0": round(two["fps"] / zero["fps"], 3) if zero["fps"] else None,
        # CPU of the whole service process per stream client, in % of one core.
        "cpu_pct_per_client": round((two["cpu_pct"] - zero["cpu_pct"]) / 2, 1),
        "cpu_pct_first_client": round(one["cpu_pct"] - zero["cpu_pct"], 1),
        "cpu_pct_second_client": round(two["cpu_pct"] - one["cpu_pct"], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON object, no table")
    args = parser.parse_args()
    if not args.video.is_file():
        print(f"no video {args.video}: give one with --video", file=sys.stderr)
        return 2
    port = free_port()
    url = f"rtsp://127.0.0.1:{port}/live"
    with tempfile.TemporaryDirectory() as tmp:
        service = Service(Path(tmp), args.video, port)
        try:
            time.sleep(SETTLE_S)  # models warm, the video looping
            phases = []
            for _ in range(args.rounds):
                for clients in CLIENT_COUNTS:
                    phase = measure(service, clients, url, args.seconds)
                    phases.append(phase)
                    if not args.json:
                        print(f"{clients} client(s): {phase['fps']:.2f} fps detection, "
                              f"{phase['cpu_pct']:.1f} % CPU, encoding {phase['encoding']}",
                              flush=True)
            stream = service.status()["stream"]
        finally:
            service.stop()
    result = summarise(phases) | {
        "phases": phases, "seconds": args.seconds, "rounds": args.rounds,
        "video": args.video.name, "encoder": stream["encoder"], "stream": stream["size"],
        "stream_fps": stream["fps"], "cores": os.cpu_count()}
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
