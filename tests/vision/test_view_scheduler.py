"""Live view scheduling: tiles in turn, tiles holding small faces on every frame, and the real
detector on a frame of small faces finding what a full scan finds."""

from __future__ import annotations

import numpy as np
import pytest

from maskwatch.cli.bench import bench_frame
from maskwatch.cli.image_io import read_rgb
from maskwatch.config import parse_config
from maskwatch.types import Face
from maskwatch.vision.face_analyzer import FaceAnalyzer
from maskwatch.vision.face_detector import (
    MIN_FACE_IN_INPUT,
    box_iou,
    merged_view,
    plan_views,
)
from maskwatch.vision.view_scheduler import ViewScheduler

from conftest import MODELS, require_models

INPUT = 192  # full-range BlazeFace input size
VIEWS = plan_views(1280, 720, 40, INPUT)
TILES = [v for v in VIEWS if not v.whole_frame]
WHOLE_MIN = MIN_FACE_IN_INPUT * 1280 / INPUT


def face_at(x: float, y: float, width: float) -> Face:
    return Face((x, y, x + width, y + width), 0.9, np.zeros((6, 2), np.float32))


def inside(face: Face, view) -> bool:
    x1, y1, x2, y2 = face.box
    right, bottom = view.x + view.width, view.y + view.height
    return view.x <= x1 and view.y <= y1 and x2 <= right and y2 <= bottom


def test_without_faces_every_tile_runs_once_in_three_frames() -> None:
    assert len(TILES) == 6
    scheduler = ViewScheduler(tiles_per_frame=2)
    seen = []
    for _ in range(3):
        chosen = scheduler.choose(VIEWS, WHOLE_MIN)
        assert chosen[0].whole_frame and len(chosen) == 3
        seen += chosen[1:]
    assert sorted(seen, key=lambda v: (v.y, v.x)) == sorted(TILES, key=lambda v: (v.y, v.x))


@pytest.mark.parametrize("x, y", [(10, 10), (600, 300), (1200, 650), (530, 20)])
def test_a_small_face_keeps_a_tile_holding_it_on_every_frame(x: float, y: float) -> None:
    scheduler = ViewScheduler(tiles_per_frame=2)
    face = face_at(x, y, 60)
    scheduler.remember([face])
    for _ in range(6):
        chosen = scheduler.choose(VIEWS, WHOLE_MIN)
        assert any(inside(face, v) for v in chosen if not v.whole_frame)
        assert len(chosen) <= 4


def test_a_large_face_needs_no_tile() -> None:
    scheduler = ViewScheduler(tiles_per_frame=2)
    scheduler.remember([face_at(500, 200, WHOLE_MIN + 1)])
    assert len(scheduler.choose(VIEWS, WHOLE_MIN)) == 3


def test_when_every_tile_must_run_they_run_as_one_view() -> None:
    """Small faces in four of the six tiles, plus two tiles in turn: the whole frame and one
    view over the frame at the tiles' scale, half the input pixels of the six tiles."""
    scheduler = ViewScheduler(tiles_per_frame=2)
    scheduler.remember([face_at(x, y, 60) for x in (10, 1200) for y in (10, 650)])
    whole, merged = scheduler.choose(VIEWS, WHOLE_MIN)
    assert whole.whole_frame and not merged.whole_frame
    assert (merged.x, merged.y, merged.width, merged.height) == (0, 0, 1280, 720)
    assert merged.scale == TILES[0].scale and merged.input_shape() == (256, 448)
    rows, cols = merged.input_shape()
    assert rows * cols < 0.55 * sum(t.input_shape()[0] * t.input_shape()[1] for t in TILES)


def test_forget_drops_the_faces_and_zero_means_full_scan() -> None:
    scheduler = ViewScheduler(tiles_per_frame=2)
    scheduler.remember([face_at(x, 300, 60) for x in (10, 1200)])
    assert len(scheduler.choose(VIEWS, WHOLE_MIN)) > 3
    scheduler.forget()
    assert len(scheduler.choose(VIEWS, WHOLE_MIN)) == 3
    assert ViewScheduler(tiles_per_frame=0).choose(VIEWS, WHOLE_MIN) == VIEWS


@pytest.mark.parametrize("head", [300, 160])
def test_live_detection_keeps_every_face_a_full_scan_finds(head: int) -> None:
    require_models()
    config = parse_config({"paths": {"models_dir": str(MODELS)}})
    frame = bench_frame(read_rgb(MODELS / "demo/astronaut.png"), 8, head)
    full = FaceAnalyzer(config).find_faces(frame)
    assert len(full) == 8
    live = FaceAnalyzer(config, live=True)
    counts = []
    for _ in range(7):
        found = live.find_faces(frame)
        counts.append(len(found))
        # Fewer views merge into a box than in a full scan, so boxes differ a little.
        for face in found:
            assert max(box_iou(np.array(face.box), np.array([f.box for f in full]))) > 0.4
    # Small faces appear within one round of tiles and are then seen on every frame.
    assert counts[3:] == [8] * 4


def test_a_merged_view_finds_the_faces_the_tiles_find() -> None:
    require_models()
    detector = FaceAnalyzer(parse_config({"paths": {"models_dir": str(MODELS)}})).detector
    frame = bench_frame(read_rgb(MODELS / "demo/astronaut.png"), 8, 160)
    views = detector.plan(1280, 720)
    full = detector.detect(frame)
    merged = detector.detect(frame, views=[views[0], merged_view(views[1:])])
    assert len(full) == len(merged) == 8
    for face in merged:
        assert max(box_iou(np.array(face.box), np.array([f.box for f in full]))) > 0.8
