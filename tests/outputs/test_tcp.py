"""TCP alarm notification (F14) against real sockets: a receiver that reads and closes, a
closed port, one that accepts but never reads, one whose backlog is full, one that resets;
byte-exact formats; and `maskwatch alarm-listen` as a real subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from maskwatch.alarm_format import FORMATS, AlarmMessage, check_template, utc_iso
from maskwatch.config import parse_config
from maskwatch.events.destination import OutputError
from maskwatch.outputs.factory import build_outputs
from maskwatch.outputs.tcp import ENCODERS, EncodeOptions, TcpOutput

REPO = Path(__file__).resolve().parents[2]

MESSAGE = AlarmMessage(
    event_id="0190f2c4-7a1b-7c3d-9e8f-0123456789ab",
    utc_ms=1714564800123,  # 2024-05-01T12:00:00.123Z
    device="entrance-1",
    label="no_mask",
    confidence=0.93449,
    track_id=7,
    box=(100.4, 50.6, 180.0, 150.2),
    snapshot_path="/var/lib/maskwatch/snapshots/x.jpg",
    snapshot_url="http://10.0.0.9/events/0190f2c4/snapshot.jpg",
)

JSON_BYTES = (
    b'{"message_id":69,"event_id":"0190f2c4-7a1b-7c3d-9e8f-0123456789ab",'
    b'"utc":"2024-05-01T12:00:00.123Z","device":"entrance-1","class":"no_mask",'
    b'"confidence":0.934}\n'
)
JSON_ADDITIONAL_BYTES = (
    b'{"message_id":69,"event_id":"0190f2c4-7a1b-7c3d-9e8f-0123456789ab",'
    b'"utc":"2024-05-01T12:00:00.123Z","device":"entrance-1","class":"no_mask",'
    b'"confidence":0.934,"box":[100,51,180,150],"track":7,'
    b'"snapshot_url":"http://10.0.0.9/events/0190f2c4/snapshot.jpg"}\n'
)
TEMPLATE_BYTES = (
    b"MASKWATCH 69 entrance-1 no_mask 2024-05-01T12:00:00.123Z "
    b"0190f2c4-7a1b-7c3d-9e8f-0123456789ab\n"
)


def message(n: int) -> AlarmMessage:
    return AlarmMessage(event_id=f"ev-{n}", utc_ms=1714564800000 + n, device="d",
                        label="no_mask", confidence=0.9, track_id=n, box=(0, 0, 10, 10))


class Listener:
    """A local TCP server whose accept loop hands every connection to :meth:`handle`."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def start(self) -> None:
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.sock.close()


class JsonReceiver(Listener):
    """A real alarm receiver for JSON messages: one per connection, read to the end; the
    messages arrive in ``messages``."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[dict] = []
        self.start()

    def handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
            self.messages.append(json.loads(data))

    def wait(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"{len(self.messages)} of {count} alarms"
            time.sleep(0.1)


class Receiver(Listener):
    """Accepts, reads until the sender closes, records the bytes, closes: a well-behaved VMS
    generic-event input. ``reset_first`` connections are answered with a reset instead."""

    def __init__(self, log: list[tuple[str, bytes]] | None = None, tag: str = "",
                 reset_first: int = 0) -> None:
        super().__init__()
        self.log = log if log is not None else []
        self.tag = tag
        self.reset_first = reset_first
        self.accepted = 0
        self.received = threading.Event()
        self.start()

    def handle(self, conn: socket.socket) -> None:
        self.accepted += 1
        with conn:
            if self.accepted <= self.reset_first:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                b"\x01\x00\x00\x00\x00\x00\x00\x00")
                return  # close with SO_LINGER 0: a reset
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
            self.log.append((self.tag, data))
            self.received.set()

    @property
    def data(self) -> list[bytes]:
        return [d for _, d in self.log]


class Hanger(Listener):
    """Accepts every connection and never reads or closes it."""

    def __init__(self) -> None:
        super().__init__()
        self.conns: list[socket.socket] = []
        self.start()

    def handle(self, conn: socket.socket) -> None:
        self.conns.append(conn)

    def close(self) -> None:
        for c in self.conns:
            c.close()
        super().close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return port


def fast(port: int, **kw) -> TcpOutput:
    kw.setdefault("retries", 0)
    kw.setdefault("retry_pause_s", 0.05)
    kw.setdefault("connect_timeout_s", 1.0)
    kw.setdefault("send_timeout_s", 1.0)
    return TcpOutput("127.0.0.1", port, **kw)


def test_utc_iso_always_has_milliseconds():
    assert utc_iso(1714564800123) == "2024-05-01T12:00:00.123Z"
    assert utc_iso(1714564800000) == "2024-05-01T12:00:00.000Z"
    assert utc_iso(0) == "1970-01-01T00:00:00.000Z"


def test_json_format_bytes_exact_on_the_wire():
    rx = Receiver()
    try:
        fast(rx.port).send(MESSAGE)
        fast(rx.port, options=EncodeOptions(additional_data=True)).send(MESSAGE)
        assert rx.data == [JSON_BYTES, JSON_ADDITIONAL_BYTES]
    finally:
        rx.close()


def test_template_format_bytes_exact_on_the_wire():
    rx = Receiver()
    try:
        fast(rx.port, format="template").send(MESSAGE)
        custom = EncodeOptions(
            template="ALARM;{device};{class};{confidence};{track};{box};{unix};{utc_ms};"
                     "{{literal}};{confidence:.0%}",
            line_end="\r\n")
        fast(rx.port, format="template", options=custom).send(MESSAGE)
        assert rx.data == [
            TEMPLATE_BYTES,
            b"ALARM;entrance-1;no_mask;0.934;7;100,51,180,150;1714564800;1714564800123;"
            b"{literal};93%\r\n",
        ]
    finally:
        rx.close()


def test_template_values_never_break_the_line():
    odd = AlarmMessage(event_id="e", utc_ms=0, device="a\r\nb", label="no_mask",
                       confidence=0.5, track_id=1, box=(0, 0, 1, 1))
    out = TcpOutput("127.0.0.1", 1, format="template",
                    options=EncodeOptions(template="{device}", line_end="\n"))
    assert out.encode(odd) == b"a b\n"


def test_unknown_placeholder_lists_the_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown placeholder \{camera\} \(allowed: "
                                         r"\{message_id\}, \{event_id\}, \{utc\}"):
        check_template("X {camera}")
    for bad in ("{}", "{0}", "{device.upper}", "{device[0]}", "open {", "a\nb",
                "{device:d}"):
        with pytest.raises(ValueError):
            check_template(bad)


def test_refused_connection_is_retried_then_reported():
    port = closed_port()
    out = fast(port, retries=3, retry_pause_s=0.05)
    start = time.monotonic()
    with pytest.raises(OutputError, match="4 attempt\\(s\\) failed.*refused") as err:
        out.send(MESSAGE)
    assert err.value.retry is True
    assert out.attempts == 4
    assert time.monotonic() - start < 2.0  # refusal is immediate; only the pauses count


def test_receiver_that_never_reads_times_out_each_attempt():
    hang = Hanger()
    try:
        out = fast(hang.port, retries=2, send_timeout_s=0.3)
        start = time.monotonic()
        with pytest.raises(OutputError, match="did not close the connection within 0.3 s"):
            out.send(MESSAGE)
        elapsed = time.monotonic() - start
        assert out.attempts == 3
        assert len(hang.conns) == 3  # three real connections were accepted
        assert 0.9 <= elapsed < 3.0
        # A receiver known to keep connections open: wait_for_close = false delivers.
        fast(hang.port, wait_for_close=False).send(MESSAGE)
    finally:
        hang.close()


def test_connect_timeout_when_the_receiver_does_not_accept():
    # A listen backlog of 0 with one connection already queued: further SYNs are dropped,
    # as with a receiver host that is up but overloaded or firewalled with DROP.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=1)
    try:
        out = fast(port, retries=1, connect_timeout_s=0.3)
        start = time.monotonic()
        with pytest.raises(OutputError, match="no connection within 0.3 s"):
            out.send(MESSAGE)
        assert out.attempts == 2
        assert 0.5 <= time.monotonic() - start < 3.0
    finally:
        filler.close()
        srv.close()


def test_retries_deliver_after_resets_and_count():
    rx = Receiver(reset_first=2)
    try:
        out = fast(rx.port, retries=2)
        out.send(MESSAGE)  # attempts 1 and 2 are reset, attempt 3 delivers
        assert out.attempts == 3
        assert rx.data == [JSON_BYTES]
    finally:
        rx.close()
    rx = Receiver(reset_first=2)
    try:
        out = fast(rx.port, retries=1)
        with pytest.raises(OutputError, match="2 attempt"):
            out.send(MESSAGE)
        assert rx.data == []
    finally:
        rx.close()


def test_destinations_built_in_config_order_and_messages_arrive_in_order():
    log: list[tuple[str, bytes]] = []
    receivers = [Receiver(log, tag=t) for t in ("a", "b", "c")]
    down = closed_port()
    try:
        cfg = parse_config({"outputs": {"tcp": [
            {"host": "127.0.0.1", "port": receivers[0].port, "retries": 0},
            {"host": "127.0.0.1", "port": down, "retries": 0},
            {"host": "127.0.0.1", "port": receivers[1].port, "enabled": False},
            {"host": "localhost", "port": receivers[2].port, "format": "template",
             "template": "{track}"},
        ]}})
        outs = build_outputs(cfg)
        assert [o.name for o in outs] == [
            f"tcp:127.0.0.1:{receivers[0].port}", f"tcp:127.0.0.1:{down}",
            f"tcp:localhost:{receivers[2].port}",
        ]
        for n in range(5):
            for out in outs:
                try:
                    out.send(message(n))
                except OutputError:
                    assert out is outs[1]  # only the dead one fails; the others go on
        assert [tag for tag, _ in log] == ["a", "c"] * 5
        assert [d for tag, d in log if tag == "c"] == [f"{n}\n".encode() for n in range(5)]
        json_lines = [d for tag, d in log if tag == "a"]
        assert [f'"event_id":"ev-{n}"'.encode() in d for n, d in enumerate(json_lines)] == \
            [True] * 5
        assert "b" not in [tag for tag, _ in log]  # disabled
    finally:
        for r in receivers:
            r.close()


def test_alarm_listen_subprocess_prints_what_arrives():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "maskwatch", "alarm-listen", "--host", "127.0.0.1",
         "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("listening on 127.0.0.1:"), first + proc.stderr.read()
        port = int(first.split(":")[1].split()[0])
        fast(port, format="template", options=EncodeOptions(line_end="\r\n")).send(MESSAGE)
        fast(port).send(MESSAGE)
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert "127.0.0.1:" in lines[0]
        assert lines[0].rstrip("\n").endswith(
            f"{len(TEMPLATE_BYTES) + 1} bytes: " + TEMPLATE_BYTES.decode().rstrip("\n")
            + "\\r\\n")
        assert lines[1].rstrip("\n").endswith(
            f"{len(JSON_BYTES)} bytes: " + JSON_BYTES.decode().rstrip("\n") + "\\n")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def test_close_ends_the_retries_of_a_send_in_progress():
    out = fast(closed_port(), retries=30, retry_pause_s=1.0)
    errors: list[OutputError] = []

    def run() -> None:
        try:
            out.send(MESSAGE)
        except OutputError as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.2)
    out.close()
    worker.join(timeout=3)
    assert not worker.is_alive()
    assert "closed while retrying" in str(errors[0]) and errors[0].retry is True
    assert out.attempts == 1


# ----------------------------------------------- hardening (issue "Hardening", row 18)


@pytest.mark.parametrize("template", [
    "{device:>50000000}",  # one huge width (a template made in code, not checked by the config)
    "{device:>1000}" * 70,  # every width allowed, the message too big all the same
], ids=["huge-width", "too-long"])
def test_a_message_beyond_the_size_limit_is_refused_and_nothing_is_sent(template):
    receiver = Receiver()
    out = fast(receiver.port, format="template", options=EncodeOptions(template=template))
    try:
        started = time.monotonic()
        with pytest.raises(OutputError, match="64 KiB|at most 1024") as err:
            out.send(MESSAGE)
        assert err.value.retry is False  # the same alarm renders the same every time
        assert time.monotonic() - started < 1.0
        time.sleep(0.1)
        assert receiver.accepted == 0 and out.attempts == 0
    finally:
        receiver.close()


def test_a_message_of_exactly_64_kib_is_sent():
    template = "{device:>1024}" * 63 + "{device:>1023}"  # 65535 characters and the "\n"
    receiver = Receiver()
    out = fast(receiver.port, format="template", options=EncodeOptions(template=template))
    try:
        out.send(MESSAGE)
        assert receiver.received.wait(5) and len(receiver.data[0]) == 65536
    finally:
        receiver.close()


def test_every_format_the_config_accepts_has_an_encoder() -> None:
    assert set(ENCODERS) == set(FORMATS)
