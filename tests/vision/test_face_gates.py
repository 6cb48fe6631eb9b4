"""Pose and quality gates (SPEC F3, F4, issue 3): the pose estimator on keypoints of the 3-D
mean face turned to known angles, each gate's decision, and the real detector and classifier on
demo frames made sharp, blurred, dark or cut by the frame edge."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from maskwatch.cli.detect import face_json
from maskwatch.config import ConfigError, GatesConfig, parse_config
from maskwatch.sources.demo import DemoSource
from maskwatch.types import Face, Label
from maskwatch.vision.face_analyzer import FaceAnalyzer
from maskwatch.vision.face_crop import crop_face
from maskwatch.vision.face_detector import FaceDetector, box_iou
from maskwatch.vision.face_gates import (
    QualityGates,
    estimate_pose,
    outside_share,
    project_mean_face,
)

from conftest import MODELS, require_models

POSE_TOLERANCE_DEG = 8.0
FRAME_W, FRAME_H = 1280, 720


def textured_crop(seed: int = 0) -> np.ndarray:
    """A sharp, mid-grey 64 px crop: passes the exposure and blur gates."""
    rng = np.random.default_rng(seed)
    return rng.integers(70, 190, (64, 64, 3), dtype=np.uint8)


def synthetic_face(yaw: float, pitch: float, roll: float = 0.0) -> Face:
    keypoints = project_mean_face(yaw, pitch, roll, scale=8.0, centre=(640.0, 360.0))
    return Face((560.0, 280.0, 720.0, 440.0), 0.9, keypoints)


FRAME = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)

# ---------------------------------------------------------------------------- pose estimator


@pytest.mark.parametrize(
    ("yaw", "pitch"),
    [(30, 0), (-30, 0), (60, 0), (-60, 0), (0, 20), (0, -20), (0, 45), (0, -45),
     (30, 20), (-30, -20), (40, -25), (-45, 30), (60, 20), (-30, 45)],
)
@pytest.mark.parametrize("roll", [0.0, 12.0, -35.0])
@pytest.mark.parametrize("distance_cm", [None, 150.0])
def test_pose_of_projected_mean_face(yaw, pitch, roll, distance_cm) -> None:
    keypoints = project_mean_face(yaw, pitch, roll, distance_cm=distance_cm)
    est_yaw, est_pitch = estimate_pose(keypoints)
    assert est_yaw == pytest.approx(yaw, abs=POSE_TOLERANCE_DEG)
    assert est_pitch == pytest.approx(pitch, abs=POSE_TOLERANCE_DEG)


def test_pose_is_exact_for_orthographic_projection_and_ignores_scale_and_place() -> None:
    for yaw, pitch, roll in itertools.product((-50, -15, 0, 25, 55), (-35, 0, 28), (-20, 0, 30)):
        for scale, centre in ((3.0, (20.0, 30.0)), (25.0, (900.0, 500.0))):
            keypoints = project_mean_face(yaw, pitch, roll, scale=scale, centre=centre)
            assert estimate_pose(keypoints) == pytest.approx((yaw, pitch), abs=1e-3)


def test_pose_signs() -> None:
    # Nose towards the image right is positive yaw; face up (nose up) is positive pitch.
    kp = project_mean_face(0, 0)
    turned = kp.copy()
    turned[2, 0] += 10.0
    assert estimate_pose(turned)[0] > 5
    turned[2, 0] -= 20.0
    assert estimate_pose(turned)[0] < -5
    nodded = kp.copy()
    nodded[2, 1] -= 10.0
    assert estimate_pose(nodded)[1] > 5
    nodded[2, 1] += 20.0
    assert estimate_pose(nodded)[1] < -5


def test_degenerate_keypoints_are_a_profile() -> None:
    kp = project_mean_face(0, 0)
    kp[[0, 1]] = kp[[1, 0]]  # eyes the wrong way round: the back of a head, or a profile
    yaw, _ = estimate_pose(kp)
    assert abs(yaw) == 90.0


# ---------------------------------------------------------------------------- gate decisions


@pytest.mark.parametrize(
    ("yaw", "pitch", "reason"),
    [(0, 0, None), (30, 0, None), (-30, 0, None), (40, 0, None), (0, 20, None), (0, -20, None),
     (25, 15, None), (60, 0, "pose_out_of_range"), (-60, 0, "pose_out_of_range"),
     (0, 45, "pose_out_of_range"), (0, -45, "pose_out_of_range"),
     (52, 10, "pose_out_of_range"), (10, -38, "pose_out_of_range")],
)
def test_pose_gate(yaw, pitch, reason) -> None:
    gates = QualityGates(GatesConfig())
    assert gates.check(FRAME, synthetic_face(yaw, pitch, roll=8.0), textured_crop()) == reason


def test_pose_limits_come_from_the_config() -> None:
    face, crop = synthetic_face(35, 0), textured_crop()
    assert QualityGates(GatesConfig()).check(FRAME, face, crop) is None
    assert QualityGates(GatesConfig(max_yaw_deg=30)).check(FRAME, face, crop) == (
        "pose_out_of_range"
    )
    assert QualityGates(GatesConfig(max_yaw_deg=30, enabled=False)).check(
        FRAME, face, crop
    ) is None


def test_exposure_and_blur_gates_on_flat_crops() -> None:
    gates, face = QualityGates(GatesConfig()), synthetic_face(0, 0)
    sharp = textured_crop()
    assert gates.check(FRAME, face, sharp) is None
    assert gates.check(FRAME, face, (sharp * 0.1).astype(np.uint8)) == "underexposed"
    assert gates.check(FRAME, face, np.full((64, 64, 3), 245, np.uint8)) == "overexposed"
    assert gates.check(FRAME, face, np.full((64, 64, 3), 128, np.uint8)) == "blurred"
    # Half the middle clipped white (a blown-out face) is overexposed even at a normal mean.
    half = sharp.copy()
    half[16:48, 16:40] = 255
    half[16:48, 40:48] = 0
    assert gates.check(FRAME, face, half) == "overexposed"
    # Any crop size is measured at 64 px.
    big = cv2.resize(sharp, (128, 128), interpolation=cv2.INTER_NEAREST)
    assert gates.check(FRAME, face, big) is None


def test_edge_gate_uses_the_square_box_the_detector_clipped() -> None:
    kp = project_mean_face(0, 0, scale=8.0, centre=(40.0, 360.0))
    whole = Face((0.0, 280.0, 80.0, 360.0), 0.9, kp)  # touches the border, nothing lost
    assert outside_share(whole, FRAME_W, FRAME_H) == 0.0
    clipped = Face((0.0, 280.0, 60.0, 360.0), 0.9, kp)  # a quarter of the square is gone
    assert outside_share(clipped, FRAME_W, FRAME_H) == pytest.approx(0.25)
    cut = Face((0.0, 280.0, 48.0, 360.0), 0.9, kp)  # 40 %: beyond the trained cuts
    gates = QualityGates(GatesConfig())
    assert gates.check(FRAME, cut, textured_crop()) == "cut_by_edge"
    assert gates.check(FRAME, clipped, textured_crop()) is None
    assert gates.check(FRAME, whole, textured_crop()) is None
    # An eye outside the frame is a cut face, whatever the box says.
    kp_out = kp.copy()
    kp_out[0, 0] = -3.0
    assert gates.check(FRAME, Face(whole.box, 0.9, kp_out), textured_crop()) == "cut_by_edge"


def test_config_section() -> None:
    cfg = parse_config({"gates": {"max_yaw_deg": 40, "min_sharpness": 20}}).gates
    assert (cfg.enabled, cfg.max_yaw_deg, cfg.min_sharpness) == (True, 40.0, 20.0)
    with pytest.raises(ConfigError, match="min_luminance"):
        parse_config({"gates": {"min_luminance": 200, "max_luminance": 100}})
    with pytest.raises(ConfigError, match="gates.max_pitch_deg"):
        parse_config({"gates": {"max_pitch_deg": 120}})
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config({"gates": {"max_roll_deg": 10}})


# ---------------------------------------------------------------------------- real frames


@pytest.fixture(scope="module")
def demo_face() -> tuple[np.ndarray, Face]:
    """Frame 0 of the demo scene and its near (unmasked, frontal, about 235 px) face."""
    require_models()
    frame = DemoSource(MODELS).frame_at(0).image
    faces = FaceDetector(MODELS, min_face=40, score_threshold=0.25).detect(frame)
    assert faces, "the demo frame's faces must be found"
    return frame, faces[0]


def check(image: np.ndarray, face: Face) -> str | None:
    return QualityGates(GatesConfig()).check(
        image, face, crop_face(image, face.box, face.keypoints, 64)
    )


def test_sharp_demo_face_passes(demo_face) -> None:
    frame, face = demo_face
    assert face.width > 150
    assert check(frame, face) is None


def test_blurred_demo_face_is_blurred(demo_face) -> None:
    frame, face = demo_face
    blurred = cv2.GaussianBlur(frame, (0, 0), face.width / 10)
    assert check(blurred, face) == "blurred"


def test_dark_demo_face_is_underexposed(demo_face) -> None:
    frame, face = demo_face
    dark = (frame * 0.1).astype(np.uint8)
    assert check(dark, face) == "underexposed"


def test_demo_face_cut_by_the_frame_edge(demo_face) -> None:
    frame, face = demo_face
    # Cut the frame through the face: 38 % of it is left of the new frame's border (the right
    # eye too), more than the classifier was trained on.
    cut = np.ascontiguousarray(frame[:, int(face.box[0] + 0.38 * face.width) :])
    faces = FaceDetector(MODELS, min_face=40, score_threshold=0.25).detect(cut)
    near = [f for f in faces if f.box[0] <= 1.0 and f.height > 150]
    assert near, "the detector still finds the cut face"
    assert check(cut, near[0]) == "cut_by_edge"


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    require_models()
    return FaceAnalyzer(parse_config({"paths": {"models_dir": str(MODELS)}}))


def in_shadow(frame: np.ndarray, face: Face) -> np.ndarray:
    """The frame with the unmasked near face in deep shadow; the far (masked) face untouched."""
    x1, y1, x2, y2 = (int(v) for v in face.box)
    m = int(0.3 * face.width)
    shaded = frame.copy()
    shaded[max(y1 - m, 0) : y2 + m, max(x1 - m, 0) : x2 + m] //= 10
    return shaded


def test_analyzer_leaves_a_gated_face_unknown_and_classifies_the_rest(
    demo_face, analyzer, monkeypatch
) -> None:
    frame, face = demo_face
    shaded = in_shadow(frame, face)
    batches: list[int] = []
    classify = analyzer.classifier.classify
    monkeypatch.setattr(
        analyzer.classifier, "classify", lambda crops: batches.append(len(crops)) or classify(crops)
    )
    results = analyzer.analyze(shaded)
    near = max(results, key=lambda r: float(box_iou(np.array(face.box), np.array([r.face.box]))[0]))
    assert near.classification.label == Label.UNKNOWN
    assert near.classification.confidence == 0.0 and near.classification.probs == {}
    assert near.reason == "underexposed"
    assert all(r.classification.label != Label.NO_MASK for r in results if r.reason)
    others = [r for r in results if r is not near]
    assert others and all(r.reason is None for r in others)
    assert others[0].classification.label == Label.MASK
    assert batches == [len(others)]  # the gated face never reached the classifier
    line = face_json(near)
    assert line["label"] == "unknown" and line["gate"] == "underexposed"
    assert "gate" not in face_json(others[0])


def test_still_image_report_classifies_a_gated_face_and_names_the_gate(
    demo_face, analyzer
) -> None:
    frame, face = demo_face
    shaded = in_shadow(frame, face)
    results = analyzer.analyze(shaded, classify_gated=True)
    near = max(results, key=lambda r: float(box_iou(np.array(face.box), np.array([r.face.box]))[0]))
    assert near.reason == "underexposed"
    assert near.classification.label in (Label.MASK, Label.NO_MASK)
    assert sum(near.classification.probs.values()) == pytest.approx(1.0, abs=0.01)
    assert face_json(near)["gate"] == "underexposed"


def test_analyzer_with_every_face_gated_does_not_classify(demo_face, analyzer, monkeypatch) -> None:
    frame, _ = demo_face
    monkeypatch.setattr(analyzer.classifier, "classify", lambda crops: pytest.fail("classified"))
    results = analyzer.analyze((frame * 0.1).astype(np.uint8))
    assert results
    assert all(r.classification.label == Label.UNKNOWN and r.reason for r in results)
