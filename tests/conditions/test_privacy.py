"""Privacy zones (F10): a face inside a zone is blacked out before detection, so the real
detector no longer finds it, while everything outside the zones is left as it was."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from maskwatch.conditions.privacy import PrivacyMask
from maskwatch.config import ConfigError, PrivacyConfig, parse_config
from maskwatch.sources.demo import PHOTO, DemoSource
from maskwatch.types import Box
from maskwatch.vision.face_detector import FULL_RANGE_MODEL, FaceDetector, box_iou

MODELS = Path(__file__).parents[2] / "models"

pytestmark = pytest.mark.skipif(
    not (MODELS / PHOTO).is_file() or not (MODELS / FULL_RANGE_MODEL).is_file(),
    reason="demo photo or BlazeFace missing: run maskwatch setup",
)


@pytest.fixture(scope="module")
def demo() -> DemoSource:
    return DemoSource(MODELS)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(MODELS, min_face=40)


def mask(*zones: dict[str, Any]) -> PrivacyMask:
    return PrivacyMask(PrivacyConfig.model_validate({"zones": list(zones)}))


def around(box: Box, margin: float) -> list[list[float]]:
    """The box grown by ``margin`` on every side, as polygon points."""
    x1, y1, x2, y2 = box[0] - margin, box[1] - margin, box[2] + margin, box[3] + margin
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def found(detector: FaceDetector, image: np.ndarray, box: Box) -> bool:
    boxes = np.array([face.box for face in detector.detect(image)]).reshape(-1, 4)
    return bool((box_iou(np.array(box), boxes) > 0.5).any())


def test_a_zone_over_a_face_hides_it_from_the_detector(
    demo: DemoSource, detector: FaceDetector
) -> None:
    frame = demo.frame_at(0)
    (near_box, _), (far_box, _) = demo.truth(frame.t)
    assert found(detector, frame.image, near_box) and found(detector, frame.image, far_box)

    zoned = mask({"points": around(near_box, 20.0)}).apply(frame.image)
    assert not found(detector, zoned, near_box)
    assert found(detector, zoned, far_box)  # a face outside the zone is still found
    assert frame.image.any(axis=2)[int(near_box[1]), int(near_box[0])]  # the input is untouched


def test_pixels_outside_the_zones_are_unchanged(demo: DemoSource) -> None:
    image = demo.frame_at(5).image
    zones = mask({"points": [[100, 50], [400, 80], [250, 300]]},
                 {"points": [[1000, 600], [1279, 600], [1279, 719], [1000, 719]]})
    out = zones.apply(image)
    hidden = ~out.any(axis=2)
    assert hidden[150, 250] and hidden[700, 1200] and not hidden[400, 640]
    assert np.array_equal(out[~hidden], image[~hidden])
    assert 0.05 < hidden.mean() < 0.15  # the two zones, about 31 000 + 34 000 pixels


def test_normalized_zone_matches_its_pixel_zone_and_scales_with_the_frame(
    demo: DemoSource,
) -> None:
    pixel = mask({"points": [[320, 180], [960, 180], [640, 540]]})
    normalized = mask({"normalized": True, "points": [[0.25, 0.25], [0.75, 0.25], [0.5, 0.75]]})
    image = demo.frame_at(0).image
    assert np.array_equal(pixel.apply(image), normalized.apply(image))

    small = DemoSource(MODELS, width=640, height=360, max_frames=1).frame_at(0).image
    hidden = ~normalized.apply(small).any(axis=2)
    assert hidden[200, 320] and not hidden[60, 320] and not hidden[280, 100]
    assert hidden.mean() == pytest.approx(0.125, abs=0.005)  # half of 0.5 x 0.5
    # Back to the first size: the mask follows the frame size again.
    assert np.array_equal(normalized.apply(image), pixel.apply(image))


def test_a_full_frame_normalized_zone_hides_everything(demo: DemoSource) -> None:
    whole = mask({"normalized": True, "points": [[0, 0], [1, 0], [1, 1], [0, 1]]})
    assert not whole.apply(demo.frame_at(0).image).any()


def test_no_zones_costs_nothing(demo: DemoSource) -> None:
    image = demo.frame_at(0).image
    assert PrivacyMask(parse_config({}).privacy).apply(image) is image


def test_zone_outside_the_frame_warns(
    demo: DemoSource, caplog: pytest.LogCaptureFixture
) -> None:
    image = demo.frame_at(0).image
    off_frame = mask({"points": [[2000, 100], [2500, 100], [2500, 900]]})
    with caplog.at_level(logging.WARNING, logger="maskwatch.conditions.privacy"):
        assert np.array_equal(off_frame.apply(image), image)
    assert any("normalized = true" in r.message for r in caplog.records)


def test_zone_validation_errors() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"privacy": {"zones": [
            {"points": [[0, 0], [10, 10]]},
            {"normalized": True, "points": [[0, 0], [1.2, 0], [1, 1]]},
            {"points": [[-5, 0], [10, 0], [10, 10]]},
            {"points": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]},
            {"points": [[0, 0], [5, 5], [10, 10]]},
            {"points": [[0, 0], [5], [10, 10]]},
        ]}})
    by_key = {p.split(":", 1)[0]: p for p in info.value.problems}
    assert "at least 3 items" in by_key["privacy.zones.0.points"]
    assert "within 0..1" in by_key["privacy.zones.1"]
    assert ">= 0" in by_key["privacy.zones.2"]
    assert "normalized = true" in by_key["privacy.zones.3"]
    assert "no area" in by_key["privacy.zones.4"]
    assert any(k.startswith("privacy.zones.5.points.1") for k in by_key)
    assert len(info.value.problems) == 6
