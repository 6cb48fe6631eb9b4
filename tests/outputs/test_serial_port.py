"""Serial line output (F17) through a real pty pair made by socat: what the device writes on
one end is read on the other, byte for byte."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest
import serial

from maskwatch.alarm_format import AlarmMessage
from maskwatch.config import parse_config
from maskwatch.events.destination import OutputError
from maskwatch.outputs.factory import build_outputs
from maskwatch.outputs.serial_port import SerialOutput

MESSAGE = AlarmMessage(
    event_id="ev-9", utc_ms=1714564800123, device="entrance-1", label="no_mask",
    confidence=0.93449, track_id=7, box=(0, 0, 1, 1),
)


@pytest.fixture
def pty_pair():
    if shutil.which("socat") is None:
        pytest.skip("socat not installed (Debian package 'socat'; scripts/setup.sh test)")
    proc = subprocess.Popen(["socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    ptys: list[str] = []
    deadline = time.monotonic() + 10
    while len(ptys) < 2 and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        found = re.search(r"PTY is (\S+)", line)
        if found:
            ptys.append(found.group(1))
    if len(ptys) < 2:
        proc.kill()
        pytest.fail(f"socat gave no pty pair (got {ptys})")
    yield ptys[0], ptys[1]
    proc.terminate()
    proc.wait(timeout=5)
    proc.stderr.close()


def read_line(port: serial.Serial, end: bytes, timeout: float = 5.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(end) and time.monotonic() < deadline:
        data += port.read(port.in_waiting or 1)
    return data


def test_one_line_per_alarm_with_crlf(pty_pair):
    ours, theirs = pty_pair
    out = SerialOutput(ours, 115200)
    with serial.Serial(theirs, 115200, timeout=0.2) as peer:
        out.send(MESSAGE)
        assert read_line(peer, b"\r\n") == (
            b"MASKWATCH 69 entrance-1 no_mask 2024-05-01T12:00:00.123Z ev-9\r\n")
        out.send(MESSAGE)  # the port stays open between alarms
        assert read_line(peer, b"\r\n").startswith(b"MASKWATCH 69 ")
    out.close()


def test_template_and_line_end_from_config(pty_pair):
    ours, theirs = pty_pair
    cfg = parse_config({"outputs": {"serial": [{
        "port": ours, "baudrate": 9600, "template": "ALARM {device} {confidence:.2f}",
        "line_end": "\n",
    }]}})
    (out,) = build_outputs(cfg)
    assert out.name == f"serial:{ours}"
    with serial.Serial(theirs, 9600, timeout=0.2) as peer:
        out.send(MESSAGE)
        assert read_line(peer, b"\n") == b"ALARM entrance-1 0.93\n"
    out.close()


def test_missing_port_is_a_retryable_error(tmp_path):
    out = SerialOutput(str(tmp_path / "ttyUSB9"))
    with pytest.raises(OutputError, match="ttyUSB9") as err:
        out.send(MESSAGE)
    assert err.value.retry is True
    out.close()


def test_a_message_beyond_the_size_limit_is_refused_and_nothing_is_written(pty_pair):
    ours, theirs = pty_pair
    out = SerialOutput(ours, 115200, template="{device:>50000000}")
    with serial.Serial(theirs, 115200, timeout=0.2) as peer:
        with pytest.raises(OutputError, match="at most 1024") as err:
            out.send(MESSAGE)
        assert err.value.retry is False
        out.template = "OK {device}"
        out.send(MESSAGE)  # the port is usable; nothing of the refused message went out
        assert read_line(peer, b"\r\n") == b"OK entrance-1\r\n"
    out.close()
