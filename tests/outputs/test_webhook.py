"""HTTP webhook (F15) against a real http.server: the receiver checks the signature the way
the README tells integrators to; 5xx and timeouts are retryable, 4xx are not."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from maskwatch.alarm_format import AlarmMessage
from maskwatch.config import parse_config
from maskwatch.events.destination import OutputError
from maskwatch.events.dispatcher import Dispatcher
from maskwatch.events.store import EventStore
from maskwatch.outputs.factory import build_outputs
from maskwatch.outputs.webhook import WebhookOutput, body_of, sign

from test_dispatcher import FAST, wait_until
from test_store import make_config, make_event

SECRET = "s3cret-äö"
MESSAGE = AlarmMessage(
    event_id="ev-1", utc_ms=1714564800123, device="entrance-1", label="incorrect",
    confidence=0.8125, track_id=3, box=(1.0, 2.0, 3.0, 4.0),
    snapshot_url="http://10.0.0.9/events/ev-1/snapshot.jpg",
)


class Hook:
    """A webhook receiver answering with the next status of ``statuses`` (then 200)."""

    def __init__(self, statuses: list[int], delay_s: float = 0.0) -> None:
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                timestamp = self.headers["X-Maskwatch-Timestamp"]
                expected = "sha256=" + hmac.new(
                    SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
                ).hexdigest()
                hook.requests.append({
                    "path": self.path,
                    "body": body,
                    "headers": dict(self.headers),
                    "signature_ok": hmac.compare_digest(
                        expected, self.headers.get("X-Maskwatch-Signature", "")),
                    "fresh": abs(time.time() - int(timestamp)) < 60,
                })
                time.sleep(delay_s)
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # clients that gave up
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/maskwatch"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook_500_then_200():
    hook = Hook([500])
    yield hook
    hook.close()


def test_500_is_retryable_then_200_delivers_a_verified_signature(hook_500_then_200):
    hook = hook_500_then_200
    out = WebhookOutput(hook.url, SECRET, timeout_s=5)
    with pytest.raises(OutputError, match="HTTP 500") as err:
        out.send(MESSAGE)
    assert err.value.retry is True
    out.send(MESSAGE)  # the dispatcher's retry
    assert len(hook.requests) == 2
    for req in hook.requests:
        assert req["path"] == "/hooks/maskwatch"
        assert req["signature_ok"] and req["fresh"]
        assert req["headers"]["Content-Type"] == "application/json"
        assert req["headers"]["X-Maskwatch-Event"] == "ev-1"
    assert json.loads(hook.requests[1]["body"]) == {
        "message_id": 69, "event_id": "ev-1", "utc": "2024-05-01T12:00:00.123Z",
        "device": "entrance-1", "class": "incorrect", "confidence": 0.812,
        "box": [1, 2, 3, 4], "track": 3,
        "snapshot_url": "http://10.0.0.9/events/ev-1/snapshot.jpg",
    }


def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    body = body_of(MESSAGE)
    assert body.startswith(b'{"message_id":69,"event_id":"ev-1","utc":"2024-05-01T12:00:00.123Z"')
    expected = hmac.new(SECRET.encode(), b"1714564800." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1714564800", body) == "sha256=" + expected
    sent, headers = WebhookOutput("http://h/x", SECRET).request_for(MESSAGE, now=1714564800.9)
    assert sent == body
    assert headers["X-Maskwatch-Timestamp"] == "1714564800"
    assert headers["X-Maskwatch-Signature"] == "sha256=" + expected
    _, unsigned = WebhookOutput("http://h/x", "").request_for(MESSAGE)
    assert "X-Maskwatch-Signature" not in unsigned


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_4xx_is_not_retried(status):
    hook = Hook([status])
    try:
        with pytest.raises(OutputError, match=f"HTTP {status}") as err:
            WebhookOutput(hook.url, SECRET).send(MESSAGE)
        assert err.value.retry is False
    finally:
        hook.close()


@pytest.mark.parametrize("status", [408, 429, 502, 503])
def test_transient_statuses_are_retried(status):
    hook = Hook([status])
    try:
        with pytest.raises(OutputError) as err:
            WebhookOutput(hook.url, SECRET).send(MESSAGE)
        assert err.value.retry is True
    finally:
        hook.close()


def test_redirect_is_not_followed():
    hook = Hook([307])
    try:
        with pytest.raises(OutputError, match="redirect") as err:
            WebhookOutput(hook.url, SECRET).send(MESSAGE)
        assert err.value.retry is False
    finally:
        hook.close()


def test_timeout_and_refused_are_retryable():
    hook = Hook([], delay_s=2.0)
    try:
        start = time.monotonic()
        with pytest.raises(OutputError, match="no complete answer within 0.5 s") as err:
            WebhookOutput(hook.url, SECRET, timeout_s=0.5).send(MESSAGE)
        assert err.value.retry is True
        assert time.monotonic() - start < 1.9
    finally:
        hook.close()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(OutputError, match="refused") as err:
        WebhookOutput(f"http://127.0.0.1:{port}/x", SECRET).send(MESSAGE)
    assert err.value.retry is True


def test_built_from_config():
    cfg = parse_config({"outputs": {"webhook": [
        {"url": "https://example.com/a", "secret": "k"},
        {"url": "http://example.com:8080/b", "enabled": False},
    ]}})
    outs = build_outputs(cfg)
    assert [o.name for o in outs] == ["webhook:https://example.com/a"]


def test_tls_is_verified_by_default(tmp_path):
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl (Debian package openssl) is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    hook = Hook([])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    hook.server.socket = context.wrap_socket(hook.server.socket, server_side=True)
    url = hook.url.replace("http://", "https://")
    try:
        with pytest.raises(OutputError, match="not trusted"):
            WebhookOutput(url, SECRET).send(MESSAGE)
        WebhookOutput(url, SECRET, ca_file=str(cert)).send(MESSAGE)
        WebhookOutput(url, SECRET, verify_tls=False).send(MESSAGE)
        assert len(hook.requests) == 2 and all(r["signature_ok"] for r in hook.requests)
    finally:
        hook.close()


# ------------------------------------------- hardening (issue "Hardening", rows 12 and 15)

OK_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


class RawHook:
    """An HTTP endpoint on a raw socket, for answers http.server cannot give: it reads each
    request whole, answers with the next of ``answers`` (then OK_ANSWER), sent one byte every
    ``byte_pause_s`` when trickling, and closes the connection."""

    def __init__(self, answers: list[bytes], byte_pause_s: float = 0.0) -> None:
        self.answers = list(answers)
        self.byte_pause_s = byte_pause_s
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    self._answer(conn)
                except OSError:
                    pass  # the client gave up

    def _answer(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(4096)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        while len(body) < length:
            body += conn.recv(4096)
        self.requests.append(body)
        answer = self.answers.pop(0) if self.answers else OK_ANSWER
        if not self.byte_pause_s:
            conn.sendall(answer)
            return
        for i in range(len(answer)):
            conn.sendall(answer[i:i + 1])
            time.sleep(self.byte_pause_s)

    def close(self) -> None:
        self.sock.close()


def test_a_trickling_answer_is_cut_off_at_the_total_deadline():
    hook = RawHook([OK_ANSWER], byte_pause_s=0.1)  # the whole answer would take 6 s
    out = WebhookOutput(hook.url, timeout_s=0.5)
    try:
        start = time.monotonic()
        with pytest.raises(OutputError, match="within 0.5 s") as err:
            out.send(MESSAGE)
        assert err.value.retry is True
        assert time.monotonic() - start < 2.0
        assert out.deadline_s == 0.5  # what the dispatcher's "stuck" check goes by
    finally:
        hook.close()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part of the body",
    b"HTTP/1.1 200 OK\r\nContent-Le",
    b"HTTP/1.1 200 OK\r\nServer: x\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
    b"HTTP/1.1 20",
    b"",
], ids=["short-body", "mid-header", "before-the-blank-line", "mid-chunk",
        "mid-status", "no-answer"])
def test_a_cut_off_answer_is_a_retryable_failure(answer):
    hook = RawHook([answer])
    try:
        with pytest.raises(OutputError) as err:
            WebhookOutput(hook.url, timeout_s=5).send(MESSAGE)
        assert err.value.retry is True
    finally:
        hook.close()


def test_the_dispatcher_retries_a_cut_off_answer_until_a_whole_one_arrives(tmp_path):
    hook = RawHook([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ncut"])
    out = WebhookOutput(hook.url, timeout_s=5)
    config = make_config(tmp_path / "state", outputs=FAST)
    store = EventStore(config, [out.name])
    dispatcher = Dispatcher(store, [out], config.outputs)
    try:
        dispatcher.submit(store.add(make_event(1)))
        wait_until(lambda: dispatcher.health()[out.name]["delivered"] == 1, what="delivery")
        assert len(hook.requests) == 2
        (delivery,) = store.get_event("ev00001").deliveries
        assert (delivery.state, delivery.attempts) == ("delivered", 2)
    finally:
        dispatcher.stop(1.0)
        store.close()
        hook.close()


@pytest.mark.parametrize("userinfo", ["alice:hunter2", "alice:p@ss/hunter2", "hunter2"])
def test_a_url_with_credentials_is_refused_without_showing_them(userinfo):
    with pytest.raises(ValueError, match="secret") as err:
        WebhookOutput(f"https://{userinfo}@hooks.example/alarm", SECRET)
    assert "hunter2" not in str(err.value) and "***@hooks.example" in str(err.value)
