"""The one config file (TOML), validated with pydantic.

Every section forbids unknown keys so a typo is reported instead of silently ignored, and
every numeric value carries its allowed range so the error can say what is allowed.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
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
    score_threshold: float = Field(0.25, gt=0.0, lt=1.0)
    unmasked_min_score: float = Field(0.5, gt=0.0, lt=1.0)
    nms_iou: float = Field(0.3, gt=0.0, lt=1.0)
    max_faces: int = Field(8, ge=1, le=8)


class ClassifierConfig(Section):
    model: str = "mask_classifier_v1_float.tflite"
    edgetpu_model: str = "mask_classifier_v1_int8_edgetpu.tflite"


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


def _describe(error: dict[str, Any]) -> str:
    path = ".".join(str(p) for p in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(error["loc"])
        return f"{path}: unknown key" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    message = error["msg"].removeprefix("Value error, ")
    return f"{path}: {message} (got {error.get('input')!r})"


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
    return parse_config(data, str(p))
