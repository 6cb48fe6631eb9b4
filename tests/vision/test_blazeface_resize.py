"""BlazeFace rewritten for other input sizes: the real network, run on the demo face."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from maskwatch.cli.image_io import read_rgb
from maskwatch.config import ClassifierConfig
from maskwatch.types import ModelMismatch
from maskwatch.vision.blazeface_resize import resized_model
from maskwatch.vision.face_detector import FULL_RANGE_MODEL, FaceDetector, View, box_iou

from conftest import MODELS, require_models

ROWS, COLS = 256, 448


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    require_models()
    return FaceDetector(MODELS, min_face=40, score_threshold=0.5)


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """The demo face with some head around it, 120 px square."""
    require_models()
    photo = read_rgb(MODELS / "demo/astronaut.png")
    found = FaceDetector(MODELS).detect(photo)[0]
    x1, y1, x2, y2 = (int(v) for v in found.box)
    pad = (x2 - x1) // 2
    crop = photo[max(0, y1 - pad) : y2 + pad, max(0, x1 - pad) : x2 + pad]
    return cv2.resize(crop, (120, 120), interpolation=cv2.INTER_AREA)


def pasted(face: np.ndarray, x: int, y: int) -> np.ndarray:
    canvas = np.full((ROWS, COLS, 3), 90, np.uint8)
    canvas[y : y + face.shape[0], x : x + face.shape[1]] = face
    return canvas


def found_in(detector: FaceDetector, image: np.ndarray) -> list:
    rows, cols = image.shape[:2]
    return detector.detect(image, views=[View(0, 0, cols, rows, 1.0, False)])


def test_at_its_own_size_the_model_is_unchanged() -> None:
    require_models()
    content = (MODELS / FULL_RANGE_MODEL).read_bytes()
    assert resized_model(content, 192, 192) == content
    assert resized_model(content, ROWS, COLS) != content


@pytest.mark.parametrize("rows, cols", [(250, 448), (256, 0), (-32, 64)])
def test_sizes_off_the_network_stride_are_refused(rows: int, cols: int) -> None:
    require_models()
    with pytest.raises(ValueError, match="multiples of 32"):
        resized_model((MODELS / FULL_RANGE_MODEL).read_bytes(), rows, cols)


def test_a_model_without_a_feature_pyramid_is_refused() -> None:
    require_models()
    classifier = (MODELS / ClassifierConfig().model).read_bytes()
    with pytest.raises(ModelMismatch, match="not the full-range BlazeFace"):
        resized_model(classifier, ROWS, COLS)


def test_a_face_moved_by_whole_cells_moves_its_box_by_as_much(detector, face) -> None:
    """Every output cell sees its neighbourhood through the same weights wherever it is: a
    shift by whole cells of the coarsest feature map moves the box by exactly the shift.
    A wrongly rewritten upsampling (misaligned pyramid levels) breaks this."""
    first = found_in(detector, pasted(face, 32, 32))
    moved = found_in(detector, pasted(face, 32 + 224, 32 + 96))
    assert len(first) == len(moved) == 1
    np.testing.assert_allclose(
        np.array(moved[0].box) - (224, 96, 224, 96), first[0].box, atol=0.5
    )
    assert moved[0].score == pytest.approx(first[0].score, abs=1e-3)


def test_the_rewritten_network_sees_what_the_original_sees(detector, face) -> None:
    """The same face through the file's 192 px network and through the rewritten 448x256 one
    (more grey around it): the same box, within a pixel or two, and the same score."""
    image = pasted(face, 64, 32)
    small = detector.detect(image[:192, :192], views=[View(0, 0, 192, 192, 1.0, False)])
    large = found_in(detector, image)
    assert len(small) == len(large) == 1
    assert box_iou(np.array(small[0].box), np.array([large[0].box]))[0] > 0.95
    assert large[0].score == pytest.approx(small[0].score, abs=0.05)
