"""`maskwatch run` as systemd runs it: a subprocess with a real notify socket, signals, and
alarms coming out of the event interface (the alarm journal subscriber logs them)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import MODELS, require_data, require_models

START_TIMEOUT_S = 90


class RunningService:
    def __init__(self, tmp_path: Path, source_toml: str) -> None:
        self.config = tmp_path / "maskwatch.toml"
        self.config.write_text(
            f'[paths]\nmodels_dir = "{MODELS}"\n[web]\nbind = "127.0.0.1"\nport = 0\n{source_toml}'
        )
        self.sock_path = tmp_path / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.sock_path))
        self.sock.settimeout(1.0)
        self.messages: list[str] = []
        self.lines: list[str] = []
        env = dict(
            os.environ, NOTIFY_SOCKET=str(self.sock_path), WATCHDOG_USEC="2000000",
            MASKWATCH_STATE_DIR=str(tmp_path / "state"),
        )
        env.pop("WATCHDOG_PID", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "maskwatch", "run", "--config", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, env=env,
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_message(self, wanted: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(wanted in m for m in self.messages):
                return
            assert self.proc.poll() is None, "service exited:\n" + "\n".join(self.lines[-30:])
            try:
                self.messages += self.sock.recv(4096).decode().splitlines()
            except socket.timeout:
                pass
        raise AssertionError(f"no {wanted} in {timeout} s; got {self.messages[-10:]}\n"
                             + "\n".join(self.lines[-30:]))

    def wait_line(self, wanted: str, timeout: float, after: int = 0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if wanted in line:
                    return line
            time.sleep(0.1)
        raise AssertionError(f"no log line with {wanted!r}:\n" + "\n".join(self.lines[-30:]))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()


@pytest.fixture
def service_factory(tmp_path: Path):
    running: list[RunningService] = []

    def start(source_toml: str) -> RunningService:
        require_models()
        service = RunningService(tmp_path, source_toml)
        running.append(service)
        return service

    yield start
    for service in running:
        service.close()


def test_demo_service_ready_alarms_reload_and_stop(service_factory) -> None:
    service = service_factory('[source]\nkind = "demo"\n')
    service.wait_message("READY=1", START_TIMEOUT_S)
    alarm_line = service.wait_line("ALARM ", 30)
    alarm = json.loads(alarm_line.split("ALARM ", 1)[1])
    assert alarm["label"] == "no_mask" and alarm["device"] == "maskwatch"
    service.wait_message("WATCHDOG=1", 5)
    service.wait_message("STATUS=", 10)

    service.config.write_text("[detector]\nmin_face = 1\n")
    mark = len(service.lines)
    service.messages.clear()
    service.proc.send_signal(signal.SIGHUP)
    service.wait_message("RELOADING=1", 10)
    service.wait_message("READY=1", 10)
    refused = service.wait_line("reload refused", 10, after=mark)
    assert "detector.min_face" in refused or any(
        "detector.min_face" in line for line in service.lines[mark:]
    )
    service.messages.clear()
    service.wait_message("WATCHDOG=1", 5)
    assert service.proc.poll() is None

    started = time.monotonic()
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(10) == 0
    assert time.monotonic() - started < 5.0
    service.sock.settimeout(0.2)
    try:
        while True:
            service.messages += service.sock.recv(4096).decode().splitlines()
    except socket.timeout:
        pass
    assert "STOPPING=1" in service.messages


def test_file_source_service_alarms(service_factory) -> None:
    video = require_data("videos", "gituatu_nomask.mp4")
    service = service_factory(f'[source]\nkind = "file"\npath = "{video}"\nloop = true\n')
    service.wait_message("READY=1", START_TIMEOUT_S)
    service.wait_line("ALARM ", 30)
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(10) == 0
