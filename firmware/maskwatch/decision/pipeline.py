"""The device pipeline after the frame source: fps cap → privacy zones → IR and schedule
checks → faces → tracker → alarm decision, all by frame time.

`maskwatch analyze` and the live service drive this same object, so a video file replays
exactly what the device would have decided on that scene.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum

from maskwatch.conditions import IrDetector, PrivacyMask, Schedule
from maskwatch.config import Config
from maskwatch.decision.alarm_decider import AlarmDecider
from maskwatch.decision.fps_gate import FpsGate
from maskwatch.decision.tracker import Tracker
from maskwatch.types import Alarm, FaceResult, Frame, PersonCount
from maskwatch.vision import FaceAnalyzer

log = logging.getLogger(__name__)

# Sections that change what is detected or decided. A reload that changes one of them starts
# with fresh tracks and decisions; any other change keeps them, and with them the alarm mask
# time, so re-reading an unchanged file never alarms on the same person twice.
DETECTION_SECTIONS = (
    "runtime", "detector", "classifier", "tracker", "decision", "processing", "gates", "paths",
)


def detection_changed(old: Config, new: Config) -> bool:
    return any(getattr(old, name) != getattr(new, name) for name in DETECTION_SECTIONS)


class PipelineState(str, Enum):
    ACTIVE = "active"
    IR_MODE = "ir_mode"
    OUTSIDE_SCHEDULE = "outside_schedule"


@dataclass(frozen=True)
class FrameOutcome:
    """One processed frame; ``frame`` is already privacy-masked, so whatever shows or stores
    it (page, snapshots) never sees inside a privacy zone. ``counted`` are the people whose
    count for the compliance statistics was settled at this frame."""

    frame: Frame
    state: PipelineState
    faces: list[FaceResult]
    alarms: list[Alarm]
    counted: list[PersonCount] = field(default_factory=list)


class Pipeline:
    def __init__(
        self,
        config: Config,
        analyzer: FaceAnalyzer | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """``clock`` gives the wall-clock time for the operation schedule; None (offline
        analysis of a recording) means the schedule does not apply."""
        self.config = config
        self.analyzer = analyzer or FaceAnalyzer(config, live=True)
        self.gate = FpsGate(config.processing.fps_cap)
        self.privacy = PrivacyMask(config.privacy)
        self.ir = IrDetector(config.ir)
        self.schedule = Schedule(config.schedule)
        self.clock = clock
        self.state = PipelineState.ACTIVE
        self._new_decision()

    def _new_decision(self) -> None:
        self.tracker = Tracker(self.config.tracker.iou_threshold, self.config.tracker.max_gap_s)
        self.decider = AlarmDecider(self.config.decision)

    def process(self, frame: Frame) -> FrameOutcome | None:
        """The frame's faces and alarms, or None when the fps cap skips it."""
        if not self.gate.admit(frame.t):
            return None
        frame = replace(frame, image=self.privacy.apply(frame.image))
        state = self._state(frame)
        if state != self.state:
            log.info("detection %s", "resumed" if state is PipelineState.ACTIVE else state.value)
            if state is not PipelineState.ACTIVE:
                # History from before a pause must not complete an alarm after it; the people
                # seen before it are counted now.
                counted = self.finish()
                self._new_decision()
                self.analyzer.forget()
                self.state = state
                return FrameOutcome(frame, state, [], [], counted)
            self.state = state
        if state is not PipelineState.ACTIVE:
            return FrameOutcome(frame, state, [], [])
        found = [
            r for r in self.analyzer.analyze(frame.image) if not self.privacy.covers(*r.face.centre)
        ]
        faces = self.tracker.update(frame.t, found)
        alarms = self.decider.update(frame.t, frame.index, faces, self.tracker.pop_ended())
        return FrameOutcome(frame, state, faces, alarms, self.decider.pop_counts(frame.t))

    def finish(self) -> list[PersonCount]:
        """Count every person still in view or remembered (end of a video, a stop, a reload
        that starts decisions afresh)."""
        return self.decider.finish()

    def _state(self, frame: Frame) -> PipelineState:
        # The IR detector sees every frame, paused or not, so its hold time runs on.
        if self.ir.update(frame):
            return PipelineState.IR_MODE
        if self.clock is not None and not self.schedule.is_active(self.clock()):
            return PipelineState.OUTSIDE_SCHEDULE
        return PipelineState.ACTIVE

    def adopt_conditions(self, config: Config) -> None:
        """Take a reloaded config whose detection settings are unchanged: the schedule,
        privacy zones and IR settings are replaced, tracks and decisions go on. The new
        conditions are all made before anything is swapped, so a failure changes nothing."""
        if detection_changed(self.config, config):
            raise ValueError("detection settings changed: build a new Pipeline")
        privacy, schedule = PrivacyMask(config.privacy), Schedule(config.schedule)
        ir = self.ir if config.ir == self.config.ir else IrDetector(config.ir)
        if ir is not self.ir:
            self.ir.close()
        self.config, self.privacy, self.schedule, self.ir = config, privacy, schedule, ir

    def close(self) -> None:
        self.ir.close()
