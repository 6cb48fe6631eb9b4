"""The one config file (TOML), validated with pydantic.

Every section forbids unknown keys so a typo is reported instead of silently ignored, and
every numeric value carries its allowed range so the error can say what is allowed.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from maskwatch.alarm_format import DEFAULT_TEMPLATE as DEFAULT_ALARM_TEMPLATE
from maskwatch.alarm_format import FORMATS, check_template
from maskwatch.redact import SECRET_PARAM, has_userinfo, redact_text, redact_url

USERINFO_REFUSED = (
    "a user name or password in the url is not supported (it would show in logs and status "
    "pages): remove it and set secret instead; the receiver checks the HMAC signature in the "
    "X-Maskwatch-Signature header"
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 on JetPack 6
    import tomli as tomllib

log = logging.getLogger(__name__)

EX_CONFIG = 78
REPO_MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DeviceConfig(Section):
    name: str = Field("maskwatch", min_length=1, max_length=64)


class RuntimeConfig(Section):
    accelerator: Literal["cpu", "edgetpu", "auto"] = "auto"
    edgetpu_device: str = Field("", description="'' = first found, 'usb', 'usb:0', 'pci:0'")
    threads: int = Field(1, ge=1, le=8)


class DetectorConfig(Section):
    min_face: int = Field(40, ge=16, le=1000)
    score_threshold: float = Field(0.15, gt=0.0, lt=1.0)
    nms_iou: float = Field(0.3, gt=0.0, lt=1.0)
    max_faces: int = Field(8, ge=1, le=8)


class ClassifierConfig(Section):
    """The mask classifier and the nose check of the wear check (maskwatch.vision.wear_check)."""

    model: str = Field("mask_classifier_v6_float.tflite", min_length=1)
    edgetpu_model: str = "mask_classifier_v6_int8_edgetpu.tflite"
    nose_model: str = "nose_check_v2_float.tflite"
    nose_edgetpu_model: str = "nose_check_v2_int8_edgetpu.tflite"
    min_uncovered: float = Field(0.9, gt=0.0, lt=1.0)
    min_incorrect_below_nose: float = Field(0.01, gt=0.0, lt=1.0)


class TrackerConfig(Section):
    iou_threshold: float = Field(0.3, gt=0.0, lt=1.0)
    max_gap_s: float = Field(1.0, gt=0.0, le=30.0)


class DecisionConfig(Section):
    window_s: float = Field(0.6, gt=0.0, le=10.0)
    min_dwell_s: float = Field(0.3, ge=0.0, le=10.0)
    min_frames: int = Field(4, ge=1, le=100)
    alarm_share: float = Field(0.7, gt=0.0, le=1.0)
    min_confidence: float = Field(0.7, ge=0.5, lt=1.0)
    rearm_after_mask_s: float = Field(2.0, ge=0.0, le=600.0)
    rearm_after_gone_s: float = Field(10.0, ge=0.0, le=3600.0)
    alarm_mask_time_s: float = Field(5.0, ge=0.0, le=600.0)
    static_after_s: float = Field(60.0, ge=0.0, le=3600.0)

    @model_validator(mode="after")
    def _dwell_fits_window(self) -> "DecisionConfig":
        if self.min_dwell_s > self.window_s:
            raise ValueError(
                f"min_dwell_s ({self.min_dwell_s}) must not exceed window_s ({self.window_s})"
            )
        return self


class ProcessingConfig(Section):
    fps_cap: float = Field(15.0, gt=0.0, le=60.0)
    detect_width: int = Field(1280, ge=320, le=3840)


class SourceConfig(Section):
    kind: Literal["auto", "picamera2", "jetson", "v4l2", "rtsp", "file", "demo"] = "auto"
    path: str = ""
    loop: bool = False
    device: str = Field("", max_length=256)
    url: str = Field("", max_length=2048)
    width: int = Field(1280, ge=320, le=4096)
    height: int = Field(720, ge=180, le=3040)
    fps: int = Field(15, ge=1, le=120)
    rotation: int = 0
    read_timeout_s: float = Field(5.0, ge=0.5, le=60.0)
    gst_pipeline: str = Field("", max_length=2048)

    @field_validator("width", "height")
    @classmethod
    def _even(cls, value: int) -> int:
        # libcamera and the Jetson ISP reject odd sizes; saying so here beats a camera error.
        if value % 2:
            raise ValueError(f"must be an even number of pixels (got {value})")
        return value

    @field_validator("rotation")
    @classmethod
    def _quarter_turn(cls, value: int) -> int:
        if value not in (0, 90, 180, 270):
            raise ValueError("rotation must be 0, 90, 180 or 270 (degrees, clockwise)")
        return value

    @field_validator("device")
    @classmethod
    def _device_form(cls, value: str) -> str:
        if value and not (value.isdigit() or value.startswith("/dev/")):
            raise ValueError(
                "device must be a camera number (0, 1, ...) or a V4L2 device path like "
                "'/dev/video0'"
            )
        return value

    @field_validator("url")
    @classmethod
    def _stream_url(cls, value: str) -> str:
        if value and not re.match(r"(rtsps?|https?)://[^/\s]", value, re.IGNORECASE):
            raise ValueError(
                "url must start with rtsp://, rtsps://, http:// or https:// and name a host"
            )
        return value

    @field_validator("gst_pipeline")
    @classmethod
    def _head_only(cls, value: str) -> str:
        if "fdsink" in value or value.rstrip().endswith("!"):
            raise ValueError(
                "gst_pipeline is only the head of the pipeline (source and caps); maskwatch "
                "appends '! videoconvert ! ... ! fdsink' itself"
            )
        return value

    @model_validator(mode="after")
    def _kind_needs(self) -> "SourceConfig":
        if self.kind == "file" and not self.path:
            raise ValueError("kind = 'file' needs path = '<video file>'")
        if self.kind == "rtsp" and not self.url:
            raise ValueError("kind = 'rtsp' needs url = 'rtsp://<camera>/<stream>'")
        if self.kind in ("picamera2", "jetson") and self.device.startswith("/dev/"):
            raise ValueError(
                f"kind = '{self.kind}' takes a camera number as device (0, 1, ...), "
                f"not a path ({self.device})"
            )
        return self


class PathsConfig(Section):
    models_dir: str = ""

    def models(self) -> Path:
        """Where model files live: the config, then $MASKWATCH_MODELS_DIR, then the checkout."""
        chosen = self.models_dir or os.environ.get("MASKWATCH_MODELS_DIR", "")
        return Path(chosen) if chosen else REPO_MODELS_DIR


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_CLOCK = re.compile(r"(\d{2}):(\d{2})")
MINUTES_PER_DAY = 24 * 60


def clock_minutes(text: str, last: int = MINUTES_PER_DAY) -> int:
    """Minutes after midnight of a wall-clock time "HH:MM", at most ``last``; "24:00" (1440) is
    the end of a day, so a range can reach midnight without crossing into the next day."""
    match = _CLOCK.fullmatch(text)
    minutes = int(match[1]) * 60 + int(match[2]) if match else -1
    if match is None or int(match[2]) > 59 or minutes > last:
        raise ValueError(
            f"must be a time 'HH:MM' from '00:00' to '{last // 60:02d}:{last % 60:02d}'"
        )
    return minutes


class ScheduleRange(Section):
    """One weekly range. An end earlier than the start runs into the next day (a night shift
    "fri 22:00-06:00" ends on Saturday morning); no days means every day."""

    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)
    start: str
    end: str

    @field_validator("start")
    @classmethod
    def _start_is_a_time_of_day(cls, value: str) -> str:
        clock_minutes(value, MINUTES_PER_DAY - 1)
        return value

    @field_validator("end")
    @classmethod
    def _end_is_a_time_of_day(cls, value: str) -> str:
        clock_minutes(value)
        return value

    @model_validator(mode="after")
    def _start_differs_from_end(self) -> "ScheduleRange":
        if self.start_minute == self.end_minute:
            raise ValueError(
                f"start and end are both {self.start!r}: a range needs two different times "
                "(a whole day is start = '00:00', end = '24:00')"
            )
        return self

    @property
    def start_minute(self) -> int:
        return clock_minutes(self.start)

    @property
    def end_minute(self) -> int:
        return clock_minutes(self.end)


class ScheduleConfig(Section):
    timezone: str = Field("", description="IANA name, e.g. 'Europe/Berlin'; '' = the device's")
    ranges: list[ScheduleRange] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                raise ValueError(
                    f"unknown time zone {value!r}: use an IANA name such as 'Europe/Berlin' "
                    "or 'America/New_York', or '' for the device's own zone"
                ) from None
        return value


class IrConfig(Section):
    mode: Literal["auto", "image", "input", "off"] = "auto"
    on_below: float = Field(6.0, ge=0.0, le=255.0)
    off_above: float = Field(10.0, ge=0.0, le=255.0)
    hold_s: float = Field(1.0, ge=0.0, le=10.0)
    input_file: str = ""
    gpio_pin: int = Field(-1, ge=-1, le=53, description="BCM number; -1 = no GPIO input")
    active_high: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> "IrConfig":
        if self.on_below >= self.off_above:
            raise ValueError(
                f"on_below ({self.on_below}) must be less than off_above ({self.off_above}); "
                "the gap between them keeps the IR state from flickering"
            )
        if self.input_file and self.gpio_pin >= 0:
            raise ValueError("set either input_file or gpio_pin, not both")
        if self.mode == "input" and not self.input_file and self.gpio_pin < 0:
            raise ValueError("mode = 'input' needs input_file = '<path>' or gpio_pin = <BCM pin>")
        return self

    @property
    def has_input(self) -> bool:
        return bool(self.input_file) or self.gpio_pin >= 0


class PrivacyZone(Section):
    """A polygon blacked out before detection: pixels of the full (rotated) frame, or fractions
    of its width and height with ``normalized = true`` so it survives a resolution change."""

    points: list[tuple[float, float]] = Field(min_length=3)
    normalized: bool = False

    @model_validator(mode="after")
    def _inside_and_not_empty(self) -> "PrivacyZone":
        coords = [c for p in self.points for c in p]
        if self.normalized and not all(0.0 <= c <= 1.0 for c in coords):
            raise ValueError("normalized = true needs every coordinate within 0..1")
        if not self.normalized and min(coords) < 0.0:
            raise ValueError("pixel coordinates must be >= 0")
        # Shoelace formula: a zone must cover something, which also catches 0..1 coordinates
        # written without normalized = true (a zone smaller than one pixel).
        area = 0.5 * abs(sum(
            x0 * y1 - x1 * y0
            for (x0, y0), (x1, y1) in zip(self.points, self.points[1:] + self.points[:1])
        ))
        if area == 0.0:
            raise ValueError(
                "the points enclose no area (all on one line, or the outline crosses itself)"
            )
        if not self.normalized and area < 1.0:
            raise ValueError(
                "the zone is smaller than one pixel; for coordinates in 0..1 set normalized = true"
            )
        return self


class PrivacyConfig(Section):
    zones: list[PrivacyZone] = Field(default_factory=list)


class GatesConfig(Section):
    """Pose and quality gates (F3, F4): a face failing one is "unknown", never classified."""

    enabled: bool = True
    max_yaw_deg: float = Field(45.0, gt=0.0, le=90.0)
    max_pitch_deg: float = Field(30.0, gt=0.0, le=90.0)
    edge_margin: float = Field(0.3, ge=0.0, le=0.9)
    min_sharpness: float = Field(10.0, ge=0.0, le=10000.0)
    min_luminance: float = Field(25.0, ge=0.0, le=255.0)
    max_luminance: float = Field(235.0, ge=0.0, le=255.0)
    max_clipped: float = Field(0.5, gt=0.0, le=1.0)
    min_presence: float = Field(0.995, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _luminance_range(self) -> "GatesConfig":
        if self.min_luminance >= self.max_luminance:
            raise ValueError(
                f"min_luminance ({self.min_luminance}) must be less than max_luminance "
                f"({self.max_luminance})"
            )
        return self


class StorageConfig(Section):
    """The event log (F18): every alarm with its JPEG snapshot, under ``state_dir``."""

    state_dir: str = Field("", max_length=1024)
    max_events: int = Field(10000, ge=1, le=1_000_000)
    max_bytes: int = Field(1_000_000_000, ge=1_000_000, le=10**13)
    max_age_days: float = Field(30.0, gt=0.0, le=3650.0)
    snapshots: bool = True
    snapshot_quality: int = Field(85, ge=10, le=100)

    def resolve_state_dir(self) -> Path:
        """Where the event log lives: the config, then systemd's $STATE_DIRECTORY, then
        $MASKWATCH_STATE_DIR, then /var/lib/maskwatch."""
        if self.state_dir:
            return Path(self.state_dir)
        from_systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        chosen = from_systemd or os.environ.get("MASKWATCH_STATE_DIR", "")
        return Path(chosen) if chosen else Path("/var/lib/maskwatch")


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
LineEnd = Literal["\n", "\r\n", "\r", ""]


def valid_host(value: str) -> str:
    """A host name (RFC 1123) or an IPv4/IPv6 address, else ValueError saying why."""
    if not value:
        raise ValueError("host is empty: give a host name or an IP address")
    if "://" in value or "/" in value:
        raise ValueError("host is a name or an IP address only, without scheme or path")
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if ":" in value:
        raise ValueError("not a valid host name or IP address (the port goes in 'port'; an "
                         "IPv6 address is written without brackets)")
    name = value[:-1] if value.endswith(".") else value
    labels = name.split(".")
    if (len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels)
            or labels[-1].isdigit()):
        raise ValueError("not a valid host name or IP address (a name has letters, digits, "
                         "'-' and '.'; an IPv4 address is four numbers 0-255)")
    return value


class TcpDestinationConfig(Section):
    """One TCP alarm destination (F14): connect, send one message, close."""

    host: str
    port: int = Field(1818, ge=1, le=65535)
    enabled: bool = True
    format: str = Field("json", description="'json', 'template' or a registered encoder")
    template: str = Field(DEFAULT_ALARM_TEMPLATE, max_length=1024)
    additional_data: bool = False
    line_end: LineEnd = "\n"
    retries: int = Field(2, ge=0, le=30)
    retry_pause_s: float = Field(0.5, ge=0.0, le=10.0)
    connect_timeout_s: float = Field(3.0, gt=0.0, le=60.0)
    send_timeout_s: float = Field(5.0, gt=0.0, le=60.0)
    wait_for_close: bool = True

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str) -> str:
        return valid_host(value)

    @field_validator("template")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        return check_template(value)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in FORMATS:
            raise ValueError(f"unknown format {value!r} (allowed: {', '.join(FORMATS)})")
        return value


class WebhookConfig(Section):
    """An HTTP webhook (F15): a signed JSON POST per alarm."""

    url: str = Field(max_length=2048)
    enabled: bool = True
    secret: str = Field("", max_length=1024, description="HMAC-SHA256 key; '' = unsigned")
    timeout_s: float = Field(5.0, gt=0.0, le=60.0,
                             description="the whole send: connect, request, complete answer")
    verify_tls: bool = True
    ca_file: str = ""

    @model_validator(mode="before")
    @classmethod
    def _hide_userinfo(cls, data: Any) -> Any:
        """A url with a password is refused below; the refusal quotes the value, so the
        password is masked first and never reaches the terminal or the journal."""
        url = data.get("url") if isinstance(data, dict) else None
        if isinstance(url, str) and has_userinfo(url):
            return {**data, "url": redact_url(url)}
        return data

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if has_userinfo(value):
            raise ValueError(USERINFO_REFUSED)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be http://<host>[:port]/<path> or https://...")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("the port in the url must be 1-65535") from None
        if port == 0:
            raise ValueError("the port in the url must be 1-65535")
        valid_host(parts.hostname)
        return value


class MqttConfig(Section):
    """An MQTT broker (F16): alarm events, retained state, availability, HA discovery."""

    host: str
    port: int | None = Field(None, ge=1, le=65535, description="unset = 1883, 8883 with TLS")
    enabled: bool = True
    # password before username: the pair is checked on username, so that the error (which
    # quotes the value checked) never shows the password.
    password: str = ""
    username: str = Field("", validate_default=True)
    tls: bool = False
    ca_file: str = ""
    client_id: str = Field("", max_length=128, description="'' = maskwatch-<device>")
    topic_prefix: str = Field("maskwatch", min_length=1, max_length=128)
    keepalive_s: int = Field(30, ge=5, le=3600)
    publish_timeout_s: float = Field(5.0, gt=0.0, le=60.0)
    state_hold_s: float = Field(10.0, ge=0.0, le=3600.0)
    discovery: bool = True
    discovery_prefix: str = Field("homeassistant", min_length=1, max_length=128)
    snapshot: Literal["image", "url", "off"] = "image"

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str) -> str:
        return valid_host(value)

    @field_validator("topic_prefix", "discovery_prefix")
    @classmethod
    def _topic_part(cls, value: str) -> str:
        if any(ch in value for ch in "+#\0") or value.startswith("/") or value.endswith("/"):
            raise ValueError("a topic prefix has no '+', '#' and no leading or trailing '/'")
        return value

    @field_validator("username")
    @classmethod
    def _user_for_password(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("password") and not value:
            raise ValueError("a password needs a username")
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca_needs_tls(cls, value: str, info: ValidationInfo) -> str:
        if value and not info.data.get("tls"):
            raise ValueError("needs tls = true")
        return value

    @property
    def broker_port(self) -> int:
        return self.port if self.port is not None else (8883 if self.tls else 1883)


class SerialOutputConfig(Section):
    """A line per alarm on a serial port (F17)."""

    port: str = Field(min_length=1, max_length=256, description="e.g. /dev/ttyUSB0")
    enabled: bool = True
    baudrate: int = Field(9600, ge=50, le=4_000_000)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    template: str = Field(DEFAULT_ALARM_TEMPLATE, max_length=1024)
    line_end: LineEnd = "\r\n"
    write_timeout_s: float = Field(2.0, gt=0.0, le=30.0)

    @field_validator("template")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        return check_template(value)


class GpioOutputConfig(Section):
    """A relay pulse per alarm (F17)."""

    pin: int = Field(ge=0, le=53, description="BCM number")
    enabled: bool = True
    active_high: bool = True
    pulse_s: float = Field(1.0, ge=0.01, le=600.0)


MAX_TCP_DESTINATIONS = 8


def _unique(items: list[Any], key: str, what: str) -> None:
    seen: set[Any] = set()
    for item in items:
        if key == "host:port":
            value = f"{item.host.lower()}:{getattr(item, 'broker_port', item.port)}"
        else:
            value = getattr(item, key)
        if value in seen:
            raise ValueError(f"{what} {value!r} is listed twice")
        seen.add(value)


# Each destination list: the key that must be unique in it, and how to name it in an error.
UNIQUE_DESTINATION_KEYS = {
    "webhook": ("url", "webhook url"),
    "mqtt": ("host:port", "MQTT broker"),
    "serial": ("port", "serial port"),
    "gpio": ("pin", "GPIO pin"),
}


class OutputsConfig(Section):
    """Alarm delivery common to every destination: the dispatcher retries a failed delivery
    with back-off (retry_initial_s doubling up to retry_max_s) until the alarm is max_age_s
    old; undelivered alarms wait in the event log's outbox, also across restarts."""

    max_age_s: float = Field(3600.0, ge=10.0, le=7 * 86400.0)
    retry_initial_s: float = Field(1.0, gt=0.0, le=60.0)
    retry_max_s: float = Field(60.0, gt=0.0, le=3600.0)
    queue_size: int = Field(1000, ge=10, le=100_000)
    # The destinations (SPEC F14-F17), built by outputs.build_outputs in this order.
    tcp: list[TcpDestinationConfig] = Field(default_factory=list)
    webhook: list[WebhookConfig] = Field(default_factory=list)
    mqtt: list[MqttConfig] = Field(default_factory=list)
    serial: list[SerialOutputConfig] = Field(default_factory=list)
    gpio: list[GpioOutputConfig] = Field(default_factory=list)

    @field_validator("tcp")
    @classmethod
    def _at_most_8(cls, value: list[TcpDestinationConfig]) -> list[TcpDestinationConfig]:
        if len(value) > MAX_TCP_DESTINATIONS:
            raise ValueError(f"at most {MAX_TCP_DESTINATIONS} TCP destinations "
                             f"(got {len(value)})")
        _unique(value, "host:port", "TCP destination")
        return value

    @field_validator("webhook", "mqtt", "serial", "gpio")
    @classmethod
    def _unique_destinations(cls, value: list, info: ValidationInfo) -> list:
        key, what = UNIQUE_DESTINATION_KEYS[info.field_name]
        _unique(value, key, what)
        return value

    @model_validator(mode="after")
    def _backoff_range(self) -> "OutputsConfig":
        if self.retry_initial_s > self.retry_max_s:
            raise ValueError(
                f"retry_initial_s ({self.retry_initial_s}) must not exceed retry_max_s "
                f"({self.retry_max_s})"
            )
        return self


def bind_address(value: str) -> str:
    """A listening address for the page or the stream: an IP address, not a host name."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(
            "bind must be an IP address: '0.0.0.0' (every IPv4 interface), '127.0.0.1' "
            "(this device only), '::' (every interface) or one of the device's addresses"
        ) from None
    return value


class WebConfig(Section):
    """The web page and its API (F19-F22), served by waitress; login required (F21)."""

    enabled: bool = True
    bind: str = Field("0.0.0.0", description="IP address to listen on; '::' = all IPv6")
    port: int = Field(8080, ge=0, le=65535, description="0 = any free port (tests)")
    tls_cert: str = Field("", max_length=1024, description="PEM certificate (chain) file")
    tls_key: str = Field("", max_length=1024, description="PEM private key file")
    public_url: str = Field("", max_length=512, description="e.g. https://cam.local:8080")
    session_hours: float = Field(12.0, gt=0.0, le=24.0 * 30)
    login_attempts_per_minute: int = Field(5, ge=1, le=100)
    login_checks_per_minute: int = Field(
        20, ge=1, le=600, description="password checks per minute from all addresses")
    max_viewers: int = Field(4, ge=1, le=32)
    stream_width: int = Field(960, ge=0, le=3840, description="0 = the frame's own width")
    stream_max_fps: float = Field(15.0, gt=0.0, le=60.0)
    jpeg_quality: int = Field(75, ge=10, le=100)
    connections_per_client: int = Field(
        16, ge=0, le=100, description="open connections per client address; 0 = no limit")
    request_timeout_s: float = Field(
        10.0, ge=1.0, le=120.0, description="to send a whole request (and TLS handshake)")
    send_timeout_s: float = Field(
        10.0, ge=1.0, le=120.0, description="a client taking no response data is dropped")

    @field_validator("bind")
    @classmethod
    def _ip_address(cls, value: str) -> str:
        return bind_address(value)

    @field_validator("public_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
                raise ValueError("public_url must be http(s)://<host>[:port][/path], as "
                                 "other systems reach this device")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _tls_pair(self) -> "WebConfig":
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("HTTPS needs both tls_cert and tls_key (or neither, for HTTP)")
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ValueError(f"{name}: no such file {path!r}")
        return self

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)


class StreamConfig(Section):
    """The RTSP stream for recorders (F30): the processed frames as H.264, for anyone with the
    credentials; nothing is encoded while no client watches."""

    enabled: bool = False
    bind: str = Field("0.0.0.0", description="IP address to listen on; '::' = all IPv6")
    port: int = Field(8554, ge=0, le=65535, description="0 = any free port (tests)")
    width: int = Field(1280, ge=160, le=3840)
    height: int = Field(720, ge=120, le=2160)
    fps: int = Field(15, ge=1, le=60)
    bitrate_kbps: int = Field(2000, ge=100, le=50000)
    encoder: Literal["auto", "x264enc", "v4l2h264enc", "nvv4l2h264enc"] = "auto"
    boxes: bool = Field(True, description="also serve /boxes: the stream with the boxes drawn")
    stalled_client_timeout_s: int = Field(
        30, ge=5, le=3600, description="a client that takes no data this long is dropped")
    # password before user: the pair is checked on user, so that the error (which quotes the
    # value checked) never shows the password.
    password: str = Field("", max_length=256)
    user: str = Field("", max_length=64, validate_default=True)
    auth: Literal["digest", "basic"] = "digest"

    @field_validator("bind")
    @classmethod
    def _ip_address(cls, value: str) -> str:
        return bind_address(value)

    @field_validator("width", "height")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("must be even (H.264 stores colour at half resolution)")
        return value

    @field_validator("user")
    @classmethod
    def _user_with_password(cls, value: str, info: ValidationInfo) -> str:
        if bool(value) != bool(info.data.get("password")):
            raise ValueError("user and password go together: set both (clients must log in) "
                             "or neither (anyone on the network may watch)")
        if ":" in value:
            raise ValueError("a user name cannot contain ':'")
        return value

    @property
    def credentials(self) -> bool:
        return bool(self.user)


class Config(Section):
    device: DeviceConfig = DeviceConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    detector: DetectorConfig = DetectorConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    tracker: TrackerConfig = TrackerConfig()
    decision: DecisionConfig = DecisionConfig()
    processing: ProcessingConfig = ProcessingConfig()
    source: SourceConfig = SourceConfig()
    paths: PathsConfig = PathsConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    ir: IrConfig = IrConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    gates: GatesConfig = GatesConfig()
    storage: StorageConfig = StorageConfig()
    outputs: OutputsConfig = OutputsConfig()
    web: WebConfig = WebConfig()
    stream: StreamConfig = StreamConfig()


class ConfigError(Exception):
    """A config the service must refuse; ``problems`` lists each one for the user."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))

    def report(self) -> str:
        lines = [f"config {self.source} is invalid ({len(self.problems)} problem(s)):"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


# Keys earlier versions knew, with what became of them: an old config naming one is told so.
RETIRED_KEYS = {
    "processing.tiles_per_frame": (
        "removed: on live video the face mesh follows known faces and the detector's views run "
        "in turn, all within 0.5 s; delete this line"
    ),
    **{
        f"classifier.{key}": (
            "removed: one classifier (mask, no_mask, incorrect) and the nose check decide "
            "every verdict (models/README.md); delete this line"
        )
        for key in (
            "confirm_model", "confirm_edgetpu_model", "wear_model", "wear_edgetpu_model",
            "min_incorrect_on_chin",
        )
    },
    "detector.unmasked_min_score": (
        "removed: the face mesh's presence ([gates] min_presence) is the face check every "
        "no_mask or incorrect verdict passes; delete this line"
    ),
}


def _describe(error: dict[str, Any]) -> str:
    path = ".".join(str(p) for p in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden" and path in RETIRED_KEYS:
        return f"{path}: {RETIRED_KEYS[path]}"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(error["loc"])
        return f"{path}: unknown key" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    message = redact_text(error["msg"].removeprefix("Value error, "))
    if SECRET_PARAM.search(str(error["loc"][-1]) if error["loc"] else ""):
        return f"{path}: {message}"  # a secret is never echoed, not even a mistyped one
    if isinstance(error.get("input"), dict):
        return f"{path}: {message}"  # a whole section may hold a password
    return f"{path}: {message} (got {redact_text(repr(error.get('input')))})"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys of the section (or list item) holding the unknown key at ``loc``."""
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        if isinstance(part, int):  # an item of a list of sections
            continue
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if get_origin(annotation) is list:
            annotation = get_args(annotation)[0]
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def parse_config(data: dict[str, Any], source: str = "<dict>") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(e) for e in exc.errors()]) from None


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate a TOML config; no path means the built-in defaults."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read file: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(str(p), ["file is not UTF-8 text"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), [f"not valid TOML: {exc}"]) from None
    if not data:
        # A truncated or emptied file would silently drop privacy zones and the schedule.
        raise ConfigError(str(p), [
            "the file holds no settings (it is empty or only comments); start from the "
            "commented default config/maskwatch.toml, or give no --config for the defaults"])
    return parse_config(data, str(p))
