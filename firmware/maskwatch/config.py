"""The one config file (TOML), validated with pydantic.

Every section forbids unknown keys so a typo is reported instead of silently ignored, and
every numeric value carries its allowed range so the error can say what is allowed.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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
    kind: Literal["demo", "file"] = "demo"
    path: str = ""
    loop: bool = False

    @model_validator(mode="after")
    def _file_needs_path(self) -> "SourceConfig":
        if self.kind == "file" and not self.path:
            raise ValueError("kind = 'file' needs path = '<video file>'")
        return self


class PathsConfig(Section):
    models_dir: str = ""

    def models(self) -> Path:
        """Where model files live: the config, then $MASKWATCH_MODELS_DIR, then the checkout."""
        chosen = self.models_dir or os.environ.get("MASKWATCH_MODELS_DIR", "")
        return Path(chosen) if chosen else REPO_MODELS_DIR


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
        return f"{path}: unknown key (allowed: {', '.join(_allowed_keys(error['loc']))})"
    message = error["msg"].removeprefix("Value error, ")
    return f"{path}: {message} (got {error.get('input')!r})"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys of the section holding the unknown key at ``loc``."""
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not (
            isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        ):
            return []
        model = field.annotation
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
