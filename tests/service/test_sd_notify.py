"""maskwatch.service.sd_notify against real unix datagram sockets standing in for systemd."""

from __future__ import annotations

import logging
import os
import socket
import uuid

import pytest

from maskwatch.service.sd_notify import Notifier


def _bound(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2.0)
    return sock


@pytest.fixture
def path_socket(tmp_path):
    path = str(tmp_path / "notify")
    sock = _bound(path)
    yield path, sock
    sock.close()


@pytest.fixture
def abstract_socket():
    name = f"maskwatch-test-{uuid.uuid4().hex}"
    sock = _bound("\0" + name)
    yield "@" + name, sock
    sock.close()


@pytest.fixture(params=["path_socket", "abstract_socket"])
def listener(request):
    return request.getfixturevalue(request.param)


def test_messages_arrive(listener):
    address, sock = listener
    notifier = Notifier({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    notifier.ready()
    notifier.status("camera up, 14.8 fps")
    notifier.watchdog()
    notifier.reloading()
    notifier.stopping()
    notifier.close()
    got = [sock.recv(4096).decode() for _ in range(5)]
    assert got[:3] == ["READY=1", "STATUS=camera up, 14.8 fps", "WATCHDOG=1"]
    reload_lines = got[3].split("\n")
    assert reload_lines[0] == "RELOADING=1"
    key, value = reload_lines[1].split("=")
    assert key == "MONOTONIC_USEC" and int(value) > 0
    assert got[4] == "STOPPING=1"


def test_status_cannot_inject_assignments(path_socket):
    address, sock = path_socket
    notifier = Notifier({"NOTIFY_SOCKET": address})
    notifier.status("camera down\nREADY=1")
    notifier.close()
    assert sock.recv(4096).decode() == "STATUS=camera down READY=1"


def test_reads_process_environment(path_socket, monkeypatch):
    address, sock = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    notifier = Notifier()
    notifier.ready()
    notifier.close()
    assert sock.recv(4096) == b"READY=1"


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:1234"}])
def test_no_socket_is_a_no_op(env):
    notifier = Notifier(env)
    assert not notifier.enabled
    notifier.ready()
    notifier.status("x")
    notifier.watchdog()
    notifier.reloading()
    notifier.stopping()
    notifier.close()


def test_send_failure_is_logged_once_and_never_raises(tmp_path, caplog):
    # systemd gone (socket path without a listener): the service must carry on.
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "missing")})
    with caplog.at_level(logging.DEBUG, logger="maskwatch.service.sd_notify"):
        for _ in range(3):
            notifier.watchdog()
    notifier.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "WATCHDOG" in warnings[0].getMessage()
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 2


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 15.0),
        ("30000000", "self", 15.0),
        ("500000", "self", 0.25),
        ("30000000", "other", None),
        ("0", None, None),
        ("-5", None, None),
        ("thirty", None, None),
        ("30000000", "abc", None),
        (None, None, None),
    ],
)
def test_watchdog_interval(usec, pid, expected):
    env = {}
    if usec is not None:
        env["WATCHDOG_USEC"] = usec
    if pid is not None:
        env["WATCHDOG_PID"] = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(pid, pid)
    assert Notifier(env).watchdog_interval() == expected
