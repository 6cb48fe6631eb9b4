"""Live detector views: every view of a full scan runs once per cycle of at most 0.5 s
(maskwatch.vision.view_rotation)."""

from __future__ import annotations

import pytest

from maskwatch.vision.face_detector import plan_views
from maskwatch.vision.view_rotation import (
    MAX_MERGED_INPUT,
    ViewRotation,
    frames_per_cycle,
    merged_levels,
)


@pytest.mark.parametrize("fps, frames", [(15.0, 7), (30.0, 15), (10.0, 5), (1.0, 1)])
def test_a_cycle_never_exceeds_half_a_second(fps: float, frames: int) -> None:
    assert frames_per_cycle(fps) == frames
    assert frames / fps <= 0.5 or frames == 1


def test_each_tile_level_runs_as_one_merged_view_when_small() -> None:
    views = plan_views(1280, 720, 40, 192)
    merged = merged_levels(views)
    assert len(views) == 7 and len(merged) == 2
    assert merged[0].whole_frame and max(merged[1].input_shape()) <= MAX_MERGED_INPUT
    large = plan_views(3840, 2160, 40, 192)
    assert len(merged_levels(large)) > 2  # big levels keep their tiles


@pytest.mark.parametrize("width, height, min_face", [(1280, 720, 40), (3840, 2160, 40)])
def test_every_view_runs_exactly_once_per_cycle(width: int, height: int, min_face: int) -> None:
    views = plan_views(width, height, min_face, 192)
    rotation = ViewRotation(frames_per_cycle(15.0))
    expected = merged_levels(views)
    for _ in range(3):
        ran = [v for _ in range(7) for v in rotation.next(views)]
        assert sorted(ran, key=repr) == sorted(expected, key=repr)
