"""What an alarm message says and how it is written, for every output and for the config
check of templates.

The message is built once from the stored event, so every destination reports the same event
id, time and values; receivers deduplicate by ``event_id`` (delivery is at-least-once).
``message_fields`` is the JSON object TCP, webhook and MQTT send; templates (TCP and serial
lines) have the placeholders of ``PLACEHOLDERS``, within bounds that keep every rendered line
small (MAX_FIELD_WIDTH, MAX_MESSAGE_BYTES).
"""

from __future__ import annotations

import functools
import json
import re
import string
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

MESSAGE_ID = 69


@dataclass(frozen=True)
class AlarmMessage:
    event_id: str
    utc_ms: int  # milliseconds since the Unix epoch, UTC
    device: str
    label: str  # "no_mask" or "incorrect"
    confidence: float
    track_id: int
    box: tuple[float, float, float, float]
    snapshot_path: str = ""  # JPEG on the device's disk; "" if none was stored
    snapshot_url: str = ""  # where the web page serves it; "" without a web page
    message_id: int = MESSAGE_ID



DEFAULT_TEMPLATE = "MASKWATCH {message_id} {device} {class} {utc} {event_id}"
LINE_ENDS = ("\n", "\r\n", "\r", "")
# Message formats a TCP destination may use (outputs.tcp has an encoder for each).
FORMATS = ("json", "template")
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


