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

The message encoding is pluggable: ``ENCODERS`` maps a ``format`` name to a function turning an
``AlarmMessage`` into bytes. ``json`` and ``template`` are built in; the vendor's binary framing
can be added with ``@register_encoder("name")`` and is then accepted by the config.

This module also holds the message rendering every output shares: ``message_fields`` (the
JSON object webhook and MQTT send too), ``utc_iso`` and the template placeholders, with the
bounds every rendered line keeps (MAX_FIELD_WIDTH, MAX_MESSAGE_BYTES).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import socket
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from maskwatch.alarm_message import AlarmMessage, Output, OutputError

log = logging.getLogger(__name__)

DEFAULT_PORT = 1818
DEFAULT_TEMPLATE = "MASKWATCH {message_id} {device} {class} {utc} {event_id}"
LINE_ENDS = ("\n", "\r\n", "\r", "")
MAX_FIELD_WIDTH = 1024  # of a template placeholder's width or precision
MAX_MESSAGE_BYTES = 64 * 1024  # of a rendered template line, its line end included

# Template placeholders and what each renders as (README "Alarm messages").
PLACEHOLDERS: dict[str, str] = {
    "message_id": "69, the maskwatch alarm message id",
    "event_id": "the event's id (the same on every destination and every retry)",
    "utc": "event time, ISO-8601 UTC with milliseconds, e.g. 2024-05-01T12:00:00.123Z",
    "utc_ms": "event time, milliseconds since 1970-01-01 UTC",
    "unix": "event time, whole seconds since 1970-01-01 UTC",
    "device": "the device name ([device] name)",
    "class": "no_mask or incorrect",
    "confidence": "classifier confidence 0..1, 3 decimals",
    "track": "track id of the person",
    "box": "face box x1,y1,x2,y2 in whole pixels of the frame",
    "snapshot_url": "where the web page serves the snapshot ('' without one)",
}


def utc_iso(utc_ms: int) -> str:
    """``2024-05-01T12:00:00.123Z``: ISO-8601, UTC, always exactly three decimals."""
    seconds, millis = divmod(int(utc_ms), 1000)
    stamp = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{millis:03d}Z"


def _box(message: AlarmMessage) -> list[int]:
    return [int(round(v)) for v in message.box]


def message_fields(message: AlarmMessage, additional_data: bool = True) -> dict[str, Any]:
    """The alarm as a JSON object, keys in this order; ``additional_data`` adds box, track
    and snapshot_url."""
    fields: dict[str, Any] = {
        "message_id": message.message_id,
        "event_id": message.event_id,
        "utc": utc_iso(message.utc_ms),
        "device": message.device,
        "class": message.label,
        "confidence": round(float(message.confidence), 3),
    }
    if additional_data:
        fields["box"] = _box(message)
        fields["track"] = message.track_id
        fields["snapshot_url"] = message.snapshot_url
    return fields


def json_text(message: AlarmMessage, additional_data: bool = True) -> str:
    """One line of compact, ASCII-only JSON (no line end)."""
    return json.dumps(message_fields(message, additional_data), separators=(",", ":"),
                      ensure_ascii=True)


def _one_line(text: str) -> str:
    return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def placeholder_values(message: AlarmMessage) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "event_id": _one_line(message.event_id),
        "utc": utc_iso(message.utc_ms),
        "utc_ms": int(message.utc_ms),
        "unix": int(message.utc_ms) // 1000,
        "device": _one_line(message.device),
        "class": message.label,
        "confidence": round(float(message.confidence), 3),
        "track": message.track_id,
        "box": ",".join(str(v) for v in _box(message)),
        "snapshot_url": _one_line(message.snapshot_url),
    }


SAMPLE_MESSAGE = AlarmMessage(
    event_id="sample", utc_ms=0, device="sample", label="no_mask", confidence=0.5, track_id=1,
    box=(0.0, 0.0, 1.0, 1.0), snapshot_url="http://sample/",
)


@functools.lru_cache(maxsize=64)
def check_template(template: str) -> str:
    """Raise ValueError (naming the allowed placeholders) unless ``template`` renders, with
    no width or precision above MAX_FIELD_WIDTH (a format spec such as ``{device:>50000000}``
    would otherwise make a 50 MB message)."""
    allowed = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
    if any(ch in template for ch in "\r\n") or any(ord(ch) < 32 for ch in template):
        raise ValueError("the template is one line: no line breaks or control characters "
                         "(the line end is the separate line_end key)")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{exc}; write a literal brace as {{{{ or }}}}") from None
    for _, name, spec, _ in parts:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{name}}} (allowed: {allowed})")
        if spec and "{" in spec:
            raise ValueError(f"nested placeholder in {{{name}:{spec}}} is not supported")
        # Every number in a spec is a fill digit, a width or a precision: bounding them all
        # bounds the width and precision without parsing the format mini-language.
        if any(int(number) > MAX_FIELD_WIDTH for number in re.findall(r"\d+", spec or "")):
            raise ValueError(f"{{{name}:{spec}}}: a width or precision is at most "
                             f"{MAX_FIELD_WIDTH}")
    try:
        template.format_map(placeholder_values(SAMPLE_MESSAGE))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"the template does not render: {exc}") from None
    return template


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
ENCODERS: dict[str, Encoder] = {}


def register_encoder(name: str) -> Callable[[Encoder], Encoder]:
    """Make ``format = "<name>"`` valid for TCP destinations."""

    def add(encoder: Encoder) -> Encoder:
        ENCODERS[name] = encoder
        return encoder

    return add


@register_encoder("json")
def encode_json(message: AlarmMessage, options: EncodeOptions) -> bytes:
    return (json_text(message, options.additional_data) + options.line_end).encode("ascii")


@register_encoder("template")
def encode_template(message: AlarmMessage, options: EncodeOptions) -> bytes:
    return render_line(options.template, message, options.line_end)


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
