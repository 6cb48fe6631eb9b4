"""The web server against a hostile neighbour (issue "Hardening", rows 3, 4 and 14): the real
waitress server, and its TLS front end, on 127.0.0.1 with an ephemeral port, driven with raw
sockets. Deadlines are set small (2 s) so a test takes seconds; every wait around them is
bounded and generous, for a slow shared machine."""

from __future__ import annotations

import base64
import http.client
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from waitress import buffers

from maskwatch.config import WebConfig
from maskwatch.decision.pipeline import FrameOutcome, PipelineState
from maskwatch.types import Frame
from maskwatch.web import WebServer
from maskwatch.web.auth import set_password

from test_web_api import PASSWORD, FakeService

ATTACKER = "127.0.0.2"  # a second loopback source address: another client of this machine
AUTH = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
DEADLINE_S = 2.0
HEALTH = (200, 503)  # /healthz answers, whether or not it finds the fake camera healthy


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl command missing: cannot make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(params=["http", "https"])
def scheme(request: pytest.FixtureRequest) -> str:
    return request.param


@contextmanager
def serving(tmp_path: Path, scheme: str = "http", tls: tuple[Path, Path] | None = None,
            **web: object) -> Iterator[WebServer]:
    set_password(tmp_path, PASSWORD)
    if scheme == "https":
        assert tls is not None
        web.update(tls_cert=str(tls[0]), tls_key=str(tls[1]))
    config = WebConfig(bind="127.0.0.1", port=0, **web)
    service = FakeService(tmp_path, config)
    server = WebServer(service, config)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        service.store.close()


def connect(server: WebServer, source: str = "127.0.0.1", handshake: bool = True,
            rcvbuf: int = 0) -> socket.socket:
    """A client socket; over HTTPS with its TLS handshake done unless ``handshake`` is off."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", server.port))
    if server.scheme == "https" and handshake:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock)
    return sock


def read_head(sock: socket.socket, limit: float) -> bytes:
    """The response head, or whatever came before the connection ended or ``limit`` s."""
    data = b""
    end = time.monotonic() + limit
    while b"\r\n\r\n" not in data and (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionError, ssl.SSLError):
            break
        if not chunk:
            break
        data += chunk
    return data


def wait_closed(sock: socket.socket, limit: float) -> float | None:
    """Seconds until the server ended ``sock`` (what it still sent is read and dropped);
    None if it is still open after ``limit`` s."""
    start = time.monotonic()
    while (left := limit - (time.monotonic() - start)) > 0:
        sock.settimeout(min(left, 0.5))
        try:
            if not sock.recv(1 << 20):
                return time.monotonic() - start
        except TimeoutError:
            continue
        except (ConnectionError, ssl.SSLError):
            return time.monotonic() - start
    return None


def status(head: bytes) -> int:
    """The status code of a response head; 0 for no answer."""
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", head)
    return int(match.group(1)) if match else 0


def get(server: WebServer, path: str, source: str = "127.0.0.1") -> bytes:
    with connect(server, source) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {AUTH}\r\n"
                     "Connection: close\r\n\r\n".encode())
        return read_head(sock, 10)


@pytest.fixture
def spooled(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every request or response buffer waitress moves to a temporary file (the SD card)."""
    made: list[int] = []
    original = buffers.TempfileBasedBuffer.__init__

    def spy(self: buffers.TempfileBasedBuffer, *args: object) -> None:
        made.append(1)
        original(self, *args)

    monkeypatch.setattr(buffers.TempfileBasedBuffer, "__init__", spy)
    return made


# ---------------------------------------------------------------------------- row 3: sizes


def test_a_body_over_the_limit_is_refused_from_its_length_alone(tmp_path: Path,
                                                                  spooled: list[int]) -> None:
    with serving(tmp_path) as server, connect(server) as sock:
        sock.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 104857600\r\n\r\n")
        head = read_head(sock, 5)  # not one byte of the 100 MB sent
        assert status(head) == 413, head
        assert wait_closed(sock, 5) is not None
    assert not spooled


def test_a_chunked_body_is_refused_past_the_limit_and_never_spooled(
        tmp_path: Path, spooled: list[int]) -> None:
    piece = b"a" * 65536
    sent = 0
    with serving(tmp_path) as server, connect(server) as sock:
        sock.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % (1 << 20))
        head = b""
        while sent < 1 << 20 and not head:
            try:
                sock.sendall(piece)
            except ConnectionError:
                break
            sent += len(piece)
            head = read_head(sock, 0.3)
        head += read_head(sock, 5)
        assert status(head) == 413, (head, sent)
    assert sent <= 4 * len(piece)
    assert not spooled


def test_an_oversize_request_head_is_refused(tmp_path: Path) -> None:
    with serving(tmp_path) as server, connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: "
                     + b"a" * 65536 + b"\r\n\r\n")
        head = read_head(sock, 5)
        assert status(head) == 431, head
        assert status(get(server, "/healthz")) in HEALTH


# ---------------------------------------------------------------- row 4: slow and many clients


def test_a_request_must_arrive_within_the_deadline(tmp_path: Path, scheme: str,
                                                   tls_files: tuple[Path, Path]) -> None:
    with serving(tmp_path, scheme, tls_files, request_timeout_s=DEADLINE_S) as server:
        silent = connect(server)  # connected (and TLS done), never says a word
        no_handshake = connect(server, handshake=False)
        trickle = connect(server)
        trickle.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        start = time.monotonic()
        closed_after = None
        while closed_after is None and time.monotonic() - start < DEADLINE_S + 13:
            try:
                trickle.sendall(b"X")  # a header that never ends, one byte at a time
            except (ConnectionError, ssl.SSLError):
                closed_after = time.monotonic() - start
                break
            if wait_closed(trickle, 0.5) is not None:
                closed_after = time.monotonic() - start
        assert closed_after is not None, "a request trickling in is never cut off"
        assert DEADLINE_S - 0.5 <= closed_after <= DEADLINE_S + 8
        assert wait_closed(silent, 5) is not None
        assert wait_closed(no_handshake, 5) is not None
        assert status(get(server, "/healthz")) in HEALTH
        for sock in (silent, no_handshake, trickle):
            sock.close()


def test_a_kept_alive_connection_may_idle_between_requests(tmp_path: Path, scheme: str,
                                                          tls_files: tuple[Path, Path]) -> None:
    """The request deadline counts from a request's first byte: a browser's connection
    waiting for its next request is not a slow request."""
    with serving(tmp_path, scheme, tls_files, request_timeout_s=DEADLINE_S) as server:
        if scheme == "https":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", server.port, timeout=10, context=ctx)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            assert response.status in HEALTH and not response.will_close
            time.sleep(DEADLINE_S + 1.5)
            conn.request("GET", "/healthz")  # on the same connection, which would raise
            assert conn.getresponse().status in HEALTH  # had the server closed it
        finally:
            conn.close()


def test_open_connections_per_client_are_capped(tmp_path: Path, scheme: str,
                                                tls_files: tuple[Path, Path]) -> None:
    with serving(tmp_path, scheme, tls_files, connections_per_client=3,
                 request_timeout_s=60) as server:
        held = [connect(server, ATTACKER, handshake=False) for _ in range(3)]
        extra = connect(server, ATTACKER, handshake=False)
        refused_after = wait_closed(extra, 5)
        assert refused_after is not None, "a connection over the cap is kept open"
        assert all(wait_closed(sock, 0.2) is None for sock in held)
        # Another address is served normally meanwhile, the page and its health check alike.
        assert status(get(server, "/healthz")) in HEALTH
        assert status(get(server, "/api/status")) == 200
        # A connection closed gives its place back.
        held.pop().close()
        end = time.monotonic() + 10
        answer = b""
        while status(answer) not in HEALTH and time.monotonic() < end:
            try:
                answer = get(server, "/healthz", ATTACKER)
            except (ConnectionError, ssl.SSLError):
                time.sleep(0.2)
        assert status(answer) in HEALTH, answer
        for sock in held + [extra]:
            sock.close()


# --------------------------------------------------------------- row 14: a stalled live viewer


def _noise_frames(stop: threading.Event, publish: Callable[[str, object], None]) -> None:
    """The processing loop: frames whose JPEGs are large (noise), so a viewer that reads
    nothing fills its socket buffers in a second or two."""
    rng = np.random.default_rng(14)
    images = [rng.integers(0, 256, (480, 640, 3), np.uint8) for _ in range(3)]
    i = 0
    while not stop.is_set():
        frame = Frame(images[i % 3], t=i / 15, index=i)
        publish("frame", FrameOutcome(frame, PipelineState.ACTIVE, [], []))
        i += 1
        time.sleep(0.05)


def test_a_viewer_that_stops_reading_loses_its_slot(tmp_path: Path, scheme: str,
                                                    tls_files: tuple[Path, Path],
                                                    spooled: list[int]) -> None:
    request = (f"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {AUTH}\r\n"
               "\r\n").encode()
    stop = threading.Event()
    with serving(tmp_path, scheme, tls_files, max_viewers=1,
                 send_timeout_s=DEADLINE_S) as server:
        hub = server.app.extensions["maskwatch"]["hub"]
        camera = threading.Thread(target=_noise_frames, args=(stop, server.service.bus.publish))
        camera.start()
        try:
            stalled = connect(server, rcvbuf=4096)
            stalled.sendall(request)  # ... and never reads a byte
            end = time.monotonic() + 30
            while hub.viewers == 0 and time.monotonic() < end:
                time.sleep(0.1)
            assert hub.viewers == 1
            # A second viewer is turned away while the stalled one holds the only slot, and
            # gets the stream once the stalled one has been dropped.
            head = b""
            while time.monotonic() < end:
                viewer = connect(server)
                viewer.sendall(request)
                head = read_head(viewer, 10)
                if status(head) == 200:
                    break
                assert status(head) == 503, head
                viewer.close()
                time.sleep(0.5)
            assert status(head) == 200, "the stalled viewer keeps its slot"
            with viewer:
                body = head.partition(b"\r\n\r\n")[2]
                while b"\xff\xd8" not in body and time.monotonic() < end:
                    body += viewer.recv(65536)
                assert b"\xff\xd8" in body  # a JPEG
                assert hub.viewers == 1
            assert wait_closed(stalled, 10) is not None
            stalled.close()
        finally:
            stop.set()
            camera.join()
    assert not spooled  # what waits for a slow viewer stays in memory, off the SD card
