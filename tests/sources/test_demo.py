"""The synthetic demo scene: reproducible, correctly timed, with a ground truth the real face
detector agrees with, masked and unmasked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from maskwatch.sources.demo import PHOTO, DemoSource
from maskwatch.sources.frame_source import SourceError
from maskwatch.vision.face_detector import FULL_RANGE_MODEL, FaceDetector, box_iou

MODELS = Path(__file__).parents[2] / "models"
FPS = 15.0

needs_photo = pytest.mark.skipif(
    not (MODELS / PHOTO).is_file(), reason="demo photo missing: run maskwatch setup"
)
needs_detector = pytest.mark.skipif(
    not (MODELS / FULL_RANGE_MODEL).is_file(), reason="BlazeFace missing: run maskwatch setup"
)


@pytest.fixture(scope="module")
def demo() -> DemoSource:
    """Shared: building the scene (cut-outs, masks, background) takes about a second."""
    return DemoSource(MODELS, fps=FPS)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(MODELS, min_face=40)


def test_missing_photo_says_to_run_setup(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="maskwatch setup"):
        DemoSource(tmp_path)


def test_wrong_photo_says_to_run_setup(tmp_path: Path) -> None:
    (tmp_path / PHOTO).parent.mkdir(parents=True)
    (tmp_path / PHOTO).write_bytes(b"\x89PNG not really")
    with pytest.raises(SourceError, match="maskwatch setup"):
        DemoSource(tmp_path)


@needs_photo
def test_frames_are_rgb_frames_of_the_requested_size(demo: DemoSource) -> None:
    frame = demo.frame_at(0)
    assert frame.image.shape == (720, 1280, 3)
    assert frame.image.dtype == np.uint8
    small = DemoSource(MODELS, width=640, height=360, max_frames=1)
    assert small.read().image.shape == (360, 640, 3)  # type: ignore[union-attr]


@needs_photo
def test_same_seed_same_frames_other_seed_other_frames(demo: DemoSource) -> None:
    again = DemoSource(MODELS, fps=FPS, seed=0)
    other = DemoSource(MODELS, fps=FPS, seed=1)
    for index in (0, 37, 200):
        assert np.array_equal(demo.frame_at(index).image, again.frame_at(index).image)
        assert not np.array_equal(demo.frame_at(index).image, other.frame_at(index).image)


@needs_photo
def test_read_is_sequential_video_time_and_stops_at_max_frames() -> None:
    with DemoSource(MODELS, fps=10.0, max_frames=25) as source:
        frames = list(source)
        assert source.read() is None
    assert [f.index for f in frames] == list(range(25))
    assert [f.t for f in frames] == pytest.approx([i / 10.0 for i in range(25)])
    assert np.array_equal(frames[7].image, source.frame_at(7).image)


@needs_photo
def test_close_ends_the_stream() -> None:
    source = DemoSource(MODELS)
    with source:
        assert source.read() is not None
    assert source.read() is None


@needs_photo
def test_mask_cycle_ground_truth(demo: DemoSource) -> None:
    """Six seconds without a mask, then six with, from t = 0; the far person always wears one."""
    for t, masked in [(0.0, False), (5.9, False), (6.0, True), (11.9, True), (12.0, False),
                      (18.5, True), (125.0, False)]:
        (_, near_masked), (_, far_masked) = demo.truth(t)
        assert near_masked is masked, t
        assert far_masked is True


@needs_photo
def test_mask_cycle_is_configurable() -> None:
    source = DemoSource(MODELS, unmasked_s=2.0, masked_s=3.0)
    states = [source.truth(t)[0][1] for t in (0.5, 1.9, 2.1, 4.9, 5.1)]
    assert states == [False, False, True, True, False]


@needs_photo
def test_faces_stay_in_frame_at_the_promised_sizes(demo: DemoSource) -> None:
    near_widths, far_widths = [], []
    for t in np.arange(0.0, 120.0, 0.5):
        (near, _), (far, _) = demo.truth(float(t))
        for x1, y1, x2, y2 in (near, far):
            assert 0 <= x1 < x2 <= 1280 and 0 <= y1 < y2 <= 720
        # Faces never overlap, so the truth never lists a hidden face.
        assert near[2] < far[0]
        near_widths.append(near[2] - near[0])
        far_widths.append(far[2] - far[0])
    assert 120 <= min(near_widths) < 140 and 240 < max(near_widths) <= 260
    assert 60 <= min(far_widths) and max(far_widths) <= 85


@needs_photo
def test_the_mask_is_drawn_over_the_mouth(demo: DemoSource) -> None:
    """Below the nose the near face is light blue with the mask on and skin-coloured without."""
    for index in range(0, 24 * int(FPS), 23):
        frame = demo.frame_at(index)
        (box, masked), _ = demo.truth(frame.t)
        x1, y1, x2, _ = box
        size = x2 - x1
        cx, cy = (x1 + x2) / 2, y1 + 0.72 * size
        half = 0.08 * size
        patch = frame.image[int(cy - half) : int(cy + half), int(cx - half) : int(cx + half)]
        red, _, blue = patch.reshape(-1, 3).mean(axis=0)
        assert (blue > red + 30) if masked else (red > blue + 30), (index, red, blue)


@needs_photo
@needs_detector
def test_detector_finds_both_faces_masked_and_unmasked(
    demo: DemoSource, detector: FaceDetector
) -> None:
    """BlazeFace must agree with the ground truth, or the demo would teach nothing: the near
    face in >= 95 % of frames with and without the mask, the small far one in >= 90 %."""
    hits: dict[tuple[str, bool], list[bool]] = {}
    for index in range(0, 60 * int(FPS), 13):
        frame = demo.frame_at(index)
        faces = detector.detect(frame.image)
        found = np.array([f.box for f in faces]).reshape(-1, 4)
        for who, (box, masked) in zip(("near", "far"), demo.truth(frame.t)):
            iou = box_iou(np.array(box), found).max(initial=0.0)
            hits.setdefault((who, masked), []).append(bool(iou >= 0.5))
    assert set(hits) == {("near", False), ("near", True), ("far", True)}
    for (who, masked), found_it in hits.items():
        rate = float(np.mean(found_it))
        needed = 0.95 if who == "near" else 0.90
        assert rate >= needed, f"{who} face, masked={masked}: found in {rate:.0%} of frames"
