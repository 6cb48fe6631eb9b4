"""Operating conditions applied by the pipeline the service runs (issue 4, acceptance 3):
schedule with a frozen clock, IR pause and resume by frame time, privacy zones removing a
face from results, the shown frame and alarms. Real models on demo frames."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import cv2
import numpy as np
import pytest

from maskwatch.config import parse_config
from maskwatch.decision.pipeline import Pipeline, PipelineState
from maskwatch.sources.demo import DemoSource
from maskwatch.types import Label, PersonState
from maskwatch.vision.face_analyzer import FaceAnalyzer
from maskwatch.vision.face_detector import box_iou

from conftest import MODELS, require_models

FPS = 15


@pytest.fixture(scope="module")
def demo() -> DemoSource:
    require_models()
    return DemoSource(MODELS, fps=FPS)


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    require_models()
    return FaceAnalyzer(parse_config({"paths": {"models_dir": str(MODELS)}}))


def make_pipeline(analyzer: FaceAnalyzer, clock=None, **sections) -> Pipeline:
    config = parse_config({"paths": {"models_dir": str(MODELS)}, **sections})
    return Pipeline(config, analyzer, clock=clock)


def run(pipeline: Pipeline, demo: DemoSource, seconds: float, start: int = 0, grey=False):
    outcomes = []
    for index in range(start, start + int(seconds * FPS)):
        frame = demo.frame_at(index)
        if grey:
            g = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
            frame = replace(frame, image=np.repeat(g[:, :, None], 3, axis=2))
        outcome = pipeline.process(frame)
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes


def test_nothing_is_processed_outside_the_schedule(demo, analyzer) -> None:
    # Monday 2026-11-23 is the frozen day; the device works 08:00-18:00 Berlin time.
    schedule = {"timezone": "Europe/Berlin",
                "ranges": [{"days": ["mon"], "start": "08:00", "end": "18:00"}]}
    night = lambda: datetime(2026, 11, 23, 20, 0, tzinfo=timezone.utc)  # 21:00 in Berlin
    day = lambda: datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)  # 11:00 in Berlin
    outside = run(make_pipeline(analyzer, night, schedule=schedule), demo, 3)
    assert outside and all(o.state is PipelineState.OUTSIDE_SCHEDULE for o in outside)
    assert all(o.faces == [] and o.alarms == [] for o in outside)
    inside = run(make_pipeline(analyzer, day, schedule=schedule), demo, 3)
    assert all(o.state is PipelineState.ACTIVE for o in inside)
    assert sum(len(o.alarms) for o in inside) == 1  # the demo starts unmasked


def test_ir_frames_pause_detection_within_two_seconds_and_colour_resumes(demo, analyzer) -> None:
    pipeline = make_pipeline(analyzer)
    colour = run(pipeline, demo, 1)
    assert colour[-1].state is PipelineState.ACTIVE and colour[-1].faces
    grey = run(pipeline, demo, 3, start=FPS, grey=True)
    paused_at = next(o.frame.t for o in grey if o.state is PipelineState.IR_MODE)
    assert paused_at - grey[0].frame.t <= 2.0
    assert all(o.alarms == [] and o.faces == [] for o in grey if o.state is PipelineState.IR_MODE)
    assert grey[-1].state is PipelineState.IR_MODE
    back = run(pipeline, demo, 3, start=4 * FPS)
    resumed_at = next(o.frame.t for o in back if o.state is PipelineState.ACTIVE)
    assert resumed_at - back[0].frame.t <= 2.0
    assert back[-1].faces


def test_privacy_zone_over_the_face_removes_it_everywhere(demo, analyzer) -> None:
    # A zone over the whole area the near person's face moves through in the first 4 s.
    boxes = [demo.truth(i / FPS)[0][0] for i in range(4 * FPS)]
    x1 = min(b[0] for b in boxes) - 20
    y1 = min(b[1] for b in boxes) - 20
    x2 = max(b[2] for b in boxes) + 20
    y2 = max(b[3] for b in boxes) + 20
    zone = {"zones": [{"points": [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]}]}
    outcomes = run(make_pipeline(analyzer, privacy=zone), demo, 4)
    assert sum(len(o.alarms) for o in outcomes) == 0
    for o in outcomes:
        near = demo.truth(o.frame.t)[0][0]
        for face in o.faces:
            assert box_iou(np.array(near), np.array([face.face.box]))[0] < 0.3, (
                "the face inside the privacy zone was found"
            )
            assert face.classification.label is not Label.NO_MASK
        inner = o.frame.image[int(near[1]):int(near[3]), int(near[0]):int(near[2])]
        assert inner.max() == 0, "the shown/stored frame still has pixels inside the zone"
    unmasked = run(make_pipeline(analyzer), demo, 4)
    assert sum(len(o.alarms) for o in unmasked) == 1


def test_people_are_counted_once_and_everyone_in_view_when_detection_pauses(
    demo, analyzer
) -> None:
    pipeline = make_pipeline(analyzer)
    colour = run(pipeline, demo, 3)
    counted = [c for o in colour for c in o.counted]
    # The near person starts unmasked: counted at the alarm, in the same frame.
    assert [c.state for c in counted] == [PersonState.UNMASKED]
    alarm = next(o for o in colour if o.alarms)
    assert alarm.counted and alarm.counted[0].track_id == alarm.alarms[0].track_id
    grey = run(pipeline, demo, 3, start=3 * FPS, grey=True)
    paused = next(o for o in grey if o.state is PipelineState.IR_MODE)
    # The pause ends every track: the far person, masked all along, counts now; the near
    # one is not counted again.
    assert [c.state for c in paused.counted] == [PersonState.MASKED]
    assert all(o.counted == [] for o in grey if o is not paused)
    assert pipeline.finish() == []
