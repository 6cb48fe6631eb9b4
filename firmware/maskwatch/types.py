"""Value types passed between pipeline stages.

They are plain dataclasses so every stage can be driven by tests with hand-made values and the
stages never import each other just to share a shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

import numpy as np

Box = tuple[float, float, float, float]


class ModelMismatch(ValueError):
    """A model file whose manifest entry is not the kind of model the config puts it in."""


class Label(str, Enum):
    MASK = "mask"
    NO_MASK = "no_mask"
    INCORRECT = "incorrect"
    UNKNOWN = "unknown"


ALARM_LABELS = (Label.NO_MASK, Label.INCORRECT)
ALARM_NAMES = frozenset(label.value for label in ALARM_LABELS)


class PersonState(str, Enum):
    """How one person passed, for the compliance statistics (F29). ``undecided`` is a person
    seen long enough but never clearly classified; ``static`` a face that never moved (a
    poster or a screen). Compliance counts only the first three."""

    MASKED = "masked"
    UNMASKED = "unmasked"
    INCORRECT = "incorrect"
    UNDECIDED = "undecided"
    STATIC = "static"


COMPLIANCE_STATES = (PersonState.MASKED, PersonState.UNMASKED, PersonState.INCORRECT)


@dataclass(frozen=True)
class PersonCount:
    """One person counted once with their decided state; ``t`` is the video time of the
    decision (an alarm-worthy one at once, any other when the person is gone for good)."""

    t: float
    track_id: int
    state: PersonState


@dataclass(frozen=True)
class Frame:
    """One image with the time it was taken; ``t`` is video/sensor time in seconds, so the
    decision logic never depends on how fast the machine runs."""

    image: np.ndarray  # H x W x 3, RGB, uint8
    t: float
    index: int

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


def box_centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0


@dataclass(frozen=True)
class Face:
    """A detected face in pixels of the frame it came from."""

    box: Box  # x1, y1, x2, y2
    score: float
    keypoints: np.ndarray  # 6 x 2: right eye, left eye, nose, mouth, right ear, left ear

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def centre(self) -> tuple[float, float]:
        return box_centre(self.box)


@dataclass(frozen=True)
class Classification:
    label: Label
    confidence: float
    probs: dict[str, float] = field(default_factory=dict)

    @property
    def alarm_probability(self) -> float:
        """How sure the classifiers are that the face should alarm: no_mask and incorrect
        together. A face whose nose the wear checks find bare alarms whichever way the mask
        classifier leaned (its lean only names the alarm), so one rule holds for both."""
        if not self.probs:
            return self.confidence if self.label in ALARM_LABELS else 0.0
        return sum(p for name, p in self.probs.items() if name in ALARM_NAMES)


@dataclass(frozen=True)
class HeadPose:
    """Head pose in degrees (see :mod:`maskwatch.vision.head_pose`): yaw > 0 nose towards the image
    right, pitch > 0 face up, roll > 0 tilted clockwise on screen."""

    yaw: float
    pitch: float
    roll: float

    def as_dict(self) -> dict[str, float]:
        return {name: round(getattr(self, name), 1) for name in ("yaw", "pitch", "roll")}


@dataclass(frozen=True)
class FaceResult:
    """A face after classification; ``reason`` says why a face was not classified (or, for
    an alarming verdict, why it may not alarm). ``pose`` and ``presence`` come from the face
    mesh (None when it did not run)."""

    face: Face
    classification: Classification
    track_id: int | None = None
    reason: str | None = None
    pose: HeadPose | None = None
    presence: float | None = None


@dataclass(frozen=True)
class Alarm:
    """An alarm decided for one track; outputs turn it into messages."""

    event_id: str
    t: float
    frame_index: int
    track_id: int
    label: Label
    confidence: float
    box: Box


@dataclass(frozen=True)
class AlarmEvent:
    """An alarm with the (privacy-masked) frame it was raised on, for snapshots."""

    alarm: Alarm
    frame: Frame
    device: str
    utc: datetime
