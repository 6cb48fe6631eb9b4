"""HTTP webhook (F15) against a real http.server: the receiver checks the signature the way
the README tells integrators to; 5xx and timeouts are retryable, 4xx are not."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from maskwatch.alarm_message import AlarmMessage, OutputError
from maskwatch.config import parse_config
from maskwatch.outputs import build_outputs
from maskwatch.webhook_output import WebhookOutput, body_of, sign

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
    req = WebhookOutput("http://h/x", SECRET).request_for(MESSAGE, now=1714564800.9)
    assert req.get_header("X-maskwatch-timestamp") == "1714564800"
    assert req.get_header("X-maskwatch-signature") == "sha256=" + expected
    unsigned = WebhookOutput("http://h/x", "").request_for(MESSAGE)
    assert unsigned.get_header("X-maskwatch-signature") is None


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
        with pytest.raises(OutputError, match="no answer within 0.5 s") as err:
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
