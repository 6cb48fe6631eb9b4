"""The device pipeline after the frame source: faces → tracker → alarm decision, by frame time.

`maskwatch analyze` and the live service drive this same object, so a video file replays
exactly what the device would have decided on that scene.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from maskwatch.config import Config
from maskwatch.decision import AlarmDecider
from maskwatch.face_analyzer import FaceAnalyzer
from maskwatch.fps_gate import FpsGate
from maskwatch.tracker import Tracker
from maskwatch.types import Alarm, FaceResult, Frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameOutcome:
    frame: Frame
    faces: list[FaceResult]
    alarms: list[Alarm]


class Pipeline:
    def __init__(self, config: Config, analyzer: FaceAnalyzer | None = None) -> None:
        self.analyzer = analyzer or FaceAnalyzer(config)
        self.gate = FpsGate(config.processing.fps_cap)
        self.tracker = Tracker(config.tracker.iou_threshold, config.tracker.max_gap_s)
        self.decider = AlarmDecider(config.decision)

    def process(self, frame: Frame) -> FrameOutcome | None:
        """The frame's faces and alarms, or None when the fps cap skips it."""
        if not self.gate.admit(frame.t):
            return None
        faces = self.tracker.update(frame.t, self.analyzer.analyze(frame.image))
        alarms = self.decider.update(frame.t, frame.index, faces, self.tracker.pop_ended())
        return FrameOutcome(frame, faces, alarms)
