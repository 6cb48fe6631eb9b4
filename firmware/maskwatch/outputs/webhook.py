"""HTTP webhook (SPEC F15): one signed JSON POST per alarm.

The body is the alarm's JSON object (``alarm_format.message_fields`` with every field), compact
UTF-8. Two headers let the receiver check it came from this device and is fresh:

    X-Maskwatch-Timestamp: <unix seconds when sent>
    X-Maskwatch-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

(no signature header when ``secret`` is empty). One ``send`` is one POST: the dispatcher
retries with back-off. A 2xx answer, read to its end, is success; 5xx, 408, 429, timeouts,
connection errors and answers cut off before their end (Content-Length, chunks, headers) are
worth retrying; any other 4xx and redirects are not (the request itself is wrong). TLS
certificates are verified unless ``verify_tls = false``; ``ca_file`` adds a private CA.
Proxy variables of the environment are not used: the appliance talks to the URL directly.

``timeout_s`` bounds the whole send (connect, TLS handshake, request, complete answer), not
each socket read: a watchdog shuts the socket down when it runs out, so an endpoint trickling
its answer byte by byte holds the worker no longer than that. A URL with ``user:password@`` is
refused: the password would show in logs and status pages (``secret`` signs instead).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from maskwatch import __version__
from maskwatch.alarm_format import AlarmMessage, message_fields
from maskwatch.config import USERINFO_REFUSED
from maskwatch.events import Output, OutputError
from maskwatch.redact import has_userinfo, redact_url

RETRYABLE_4XX = (408, 429)
MAX_ANSWER_BYTES = 64 * 1024  # of an answer's body read; the rest is not waited for


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Maskwatch-Signature value for this timestamp and body."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body,
                   hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def body_of(message: AlarmMessage) -> bytes:
    return json.dumps(message_fields(message, additional_data=True), separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


class _LastLine:
    """The socket file of a response, remembering the last line read from it."""

    def __init__(self, fp: Any) -> None:
        self._fp = fp
        self.last_line = b""

    def readline(self, limit: int = -1) -> bytes:
        self.last_line = self._fp.readline(limit)
        return self.last_line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


class _Response(http.client.HTTPResponse):
    """An HTTPResponse that knows whether its header block ended with the blank line:
    http.client takes a connection closed in the middle of the headers for their end."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp = _LastLine(self.fp)

    def begin(self) -> None:
        super().begin()
        if self.fp.last_line not in (b"\r\n", b"\n"):
            raise http.client.IncompleteRead(self.fp.last_line)


def _read_answer(response: http.client.HTTPResponse) -> None:
    """Read the answer's body (up to MAX_ANSWER_BYTES), so one cut off before its end raises
    and the alarm counts as not delivered."""
    left = MAX_ANSWER_BYTES
    while left > 0:
        piece = response.read(min(left, 16384))
        if not piece:
            if response.length:  # the connection ended before Content-Length bytes came
                raise http.client.IncompleteRead(b"", response.length)
            return
        left -= len(piece)


def _cut(connection: http.client.HTTPConnection, expired: threading.Event) -> None:
    """The watchdog: end a send that ran out of time by shutting its socket down, which
    wakes the blocked read or write at once."""
    expired.set()
    sock = connection.sock
    if sock is not None:
        try:
            # socket.socket's shutdown, not SSLSocket's: that one also drops the TLS state
            # under the thread still reading from it.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass  # closed in the meantime: the send ended on its own


class WebhookOutput(Output):
    def __init__(
        self,
        url: str,
        secret: str = "",
        *,
        timeout_s: float = 5.0,
        verify_tls: bool = True,
        ca_file: str = "",
    ) -> None:
        if has_userinfo(url):
            raise ValueError(f"webhook url {redact_url(url)}: {USERINFO_REFUSED}")
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self.deadline_s = timeout_s
        parts = urlsplit(url)
        self.name = "webhook:" + redact_url(f"{parts.scheme}://{parts.netloc}{parts.path}")
        self._host, self._port = parts.hostname or "", parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            if verify_tls:
                self._tls = ssl.create_default_context(cafile=ca_file or None)
            else:
                self._tls = ssl.create_default_context()
                self._tls.check_hostname = False
                self._tls.verify_mode = ssl.CERT_NONE

    def request_for(self, message: AlarmMessage,
                    now: float | None = None) -> tuple[bytes, dict[str, str]]:
        """The body and headers of the POST for ``message``."""
        body = body_of(message)
        timestamp = str(int(time.time() if now is None else now))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"maskwatch/{__version__}",
            "X-Maskwatch-Timestamp": timestamp,
            "X-Maskwatch-Event": message.event_id,
        }
        if self.secret:
            headers["X-Maskwatch-Signature"] = sign(self.secret, timestamp, body)
        return body, headers

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection
        if self._tls is not None:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout_s, context=self._tls)
        else:
            connection = http.client.HTTPConnection(self._host, self._port,
                                                    timeout=self.timeout_s)
        connection.response_class = _Response
        return connection

    def send(self, message: AlarmMessage) -> None:
        body, headers = self.request_for(message)
        connection = self._connection()
        expired = threading.Event()
        watchdog = threading.Timer(self.timeout_s, _cut, (connection, expired))
        watchdog.daemon = True
        watchdog.start()
        try:
            connection.connect()
            if expired.is_set():  # during the connect the watchdog had no socket to shut
                raise TimeoutError
            connection.request("POST", self._target, body=body, headers=headers)
            response = connection.getresponse()
            _read_answer(response)
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            raise OutputError(self._failure(exc, expired.is_set())) from None
        finally:
            watchdog.cancel()
            connection.close()
        if 200 <= status < 300:
            return
        if status >= 500 or status in RETRYABLE_4XX:
            raise OutputError(f"{self.name}: HTTP {status}", retry=True)
        if 300 <= status < 400:
            raise OutputError(f"{self.name}: HTTP {status} redirect; set url to the final "
                              "address", retry=False)
        raise OutputError(f"{self.name}: HTTP {status} (rejected; not retried)", retry=False)

    def _failure(self, exc: BaseException, expired: bool) -> str:
        """Why a send failed, for the status page: every one of these is worth a retry."""
        if expired or isinstance(exc, TimeoutError):
            return f"{self.name}: no complete answer within {self.timeout_s:g} s"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (f"{self.name}: TLS certificate not trusted ({exc.verify_message}); "
                    "set ca_file")
        if isinstance(exc, socket.gaierror):
            return f"{self.name}: cannot resolve the host name ({exc.strerror or exc})"
        if isinstance(exc, ConnectionRefusedError):
            return f"{self.name}: connection refused (nothing listening on that port?)"
        if isinstance(exc, (http.client.HTTPException, ConnectionError)):
            return (f"{self.name}: the connection ended before a complete answer "
                    f"({type(exc).__name__}: {exc})")
        return f"{self.name}: {exc}"
