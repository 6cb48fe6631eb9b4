"""TCP alarm notification (SPEC F14): connect, send one message, close.

Each configured destination is its own ``TcpOutput`` (``outputs.build_outputs`` returns them in
config order), so the dispatcher gives each its own queue and worker: a dead destination never
delays the others, and a failed delivery is retried to that destination only, never resent to
the ones that already have it.

One ``send`` is one delivery as the receiver sees it: up to ``1 + retries`` attempts with a
short pause between them. An attempt connects (``connect_timeout_s``), sends the encoded bytes,
half-closes, and - with ``wait_for_close`` (default) - waits up to ``send_timeout_s`` for the
receiver to close its side. A clean close proves the receiver read everything (a peer closing
with unread data answers with a reset instead); a receiver that accepts but never reads times
out and the attempt fails. Receivers that keep the connection open after the sender closed need
``wait_for_close = false``: then an attempt succeeds once the bytes are handed to TCP.

The message is one of ``alarm_format.FORMATS``: ``json`` (one line of compact JSON) or
``template`` (a line of placeholders); ``render_line`` is shared with the serial output.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from maskwatch.alarm_format import (
    DEFAULT_TEMPLATE,
    MAX_MESSAGE_BYTES,
    AlarmMessage,
    check_template,
    json_text,
    placeholder_values,
)
from maskwatch.events import Output, OutputError

log = logging.getLogger(__name__)

DEFAULT_PORT = 1818


def render_line(template: str, message: AlarmMessage, line_end: str) -> bytes:
    """``template`` filled in for ``message`` and ``line_end``, UTF-8 encoded (TCP and serial
    lines). OutputError(retry=False) for a template that is not valid (only possible when it
    did not come through the config) or a line longer than MAX_MESSAGE_BYTES: the same alarm
    would render the same on every retry."""
    try:
        check_template(template)
    except ValueError as exc:
        raise OutputError(f"template refused: {exc}", retry=False) from None
    data = (template.format_map(placeholder_values(message)) + line_end).encode("utf-8")
    if len(data) > MAX_MESSAGE_BYTES:
        raise OutputError(f"the rendered template is {len(data)} bytes, more than the "
                          f"{MAX_MESSAGE_BYTES // 1024} KiB a message may have", retry=False)
    return data


@dataclass(frozen=True)
class EncodeOptions:
    template: str = DEFAULT_TEMPLATE
    additional_data: bool = False
    line_end: str = "\n"


Encoder = Callable[[AlarmMessage, EncodeOptions], bytes]


def encode_json(message: AlarmMessage, options: EncodeOptions) -> bytes:
    return (json_text(message, options.additional_data) + options.line_end).encode("ascii")


def encode_template(message: AlarmMessage, options: EncodeOptions) -> bytes:
    return render_line(options.template, message, options.line_end)


ENCODERS: dict[str, Encoder] = {"json": encode_json, "template": encode_template}


def _reason(exc: BaseException, stage: str, timeout: float) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listening on that port?)"
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError since 3.10
        if stage == "connecting":
            return f"no connection within {timeout:g} s"
        if stage == "waiting for the close":
            return f"the receiver did not close the connection within {timeout:g} s"
        return f"sending took longer than {timeout:g} s"
    if isinstance(exc, ConnectionResetError):
        return f"connection reset by the receiver while {stage}"
    return f"{type(exc).__name__} while {stage}: {exc}"


class TcpOutput(Output):
    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        format: str = "json",
        options: EncodeOptions | None = None,
        retries: int = 2,
        retry_pause_s: float = 0.5,
        connect_timeout_s: float = 3.0,
        send_timeout_s: float = 5.0,
        wait_for_close: bool = True,
    ) -> None:
        if format not in ENCODERS:
            raise ValueError(f"unknown format {format!r} (known: {', '.join(ENCODERS)})")
        self.host = host
        self.port = port
        self.name = f"tcp:{host}:{port}"
        self.encoder = ENCODERS[format]
        self.options = options or EncodeOptions()
        self.retries = retries
        self.retry_pause_s = retry_pause_s
        self.connect_timeout_s = connect_timeout_s
        self.send_timeout_s = send_timeout_s
        self.wait_for_close = wait_for_close
        self.attempts = 0  # connection attempts made, for tests and health
        self._closed = threading.Event()

    @property
    def deadline_s(self) -> float:
        """Every attempt at its longest, and the pauses between them."""
        attempts = self.retries + 1
        return (attempts * (self.connect_timeout_s + self.send_timeout_s)
                + self.retries * self.retry_pause_s)

    def encode(self, message: AlarmMessage) -> bytes:
        return self.encoder(message, self.options)

    def send(self, message: AlarmMessage) -> None:
        data = self.encode(message)
        last = ""
        for attempt in range(self.retries + 1):
            if attempt and self._closed.wait(self.retry_pause_s):
                break
            try:
                self._attempt(data)
                return
            except OutputError as exc:
                last = str(exc)
                log.debug("%s: attempt %d failed: %s", self.name, attempt + 1, last)
        if self._closed.is_set():
            raise OutputError(f"{self.name}: closed while retrying (last: {last})", retry=True)
        raise OutputError(f"{self.name}: {self.retries + 1} attempt(s) failed, last: {last}",
                          retry=True)

    def close(self) -> None:
        """Stop the retries of a send in progress (at its next pause); nothing is kept open."""
        self._closed.set()

    def _attempt(self, data: bytes) -> None:
        self.attempts += 1
        stage = "connecting"
        timeout = self.connect_timeout_s
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            raise OutputError(_reason(exc, stage, timeout)) from None
        try:
            with sock:
                stage, timeout = "sending", self.send_timeout_s
                deadline = time.monotonic() + timeout
                sock.settimeout(timeout)
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
                if self.wait_for_close:
                    stage = "waiting for the close"
                    # Whatever the receiver answers (some echo) is read and discarded.
                    while True:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise TimeoutError
                        sock.settimeout(remaining)
                        if not sock.recv(4096):
                            break
        except OSError as exc:
            raise OutputError(_reason(exc, stage, timeout)) from None
