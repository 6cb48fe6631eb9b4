"""Pose and quality gates (SPEC F3, F4, issue 3): each gate's decision on given poses and
crops, the doubt rule every alarming verdict passes, and the real detector, face mesh and
classifier on demo frames made sharp, blurred, dark or cut by the frame edge. The pose
estimate itself is tested in test_head_pose.py."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from maskwatch.cli.detect import face_json
from maskwatch.config import ConfigError, GatesConfig, parse_config
from maskwatch.sources.demo import DemoSource
from maskwatch.types import Face, HeadPose, Label
from maskwatch.vision.face_analyzer import FaceAnalyzer
from maskwatch.vision.face_crop import crop_face
from maskwatch.vision.face_detector import FaceDetector, box_iou
from maskwatch.vision.face_gates import QualityGates, outside_share

from conftest import MODELS, require_models

FRAME_W, FRAME_H = 1280, 720


def textured_crop(seed: int = 0) -> np.ndarray:
    """A sharp, mid-grey 64 px crop: passes the exposure and blur gates."""
    rng = np.random.default_rng(seed)
    return rng.integers(70, 190, (64, 64, 3), dtype=np.uint8)


def frontal_keypoints(
    scale: float = 8.0, centre: tuple[float, float] = (640.0, 360.0)
) -> np.ndarray:
    """BlazeFace's six keypoints of a frontal face (eyes, nose, mouth, ears), in pixels."""
    layout = np.array([[-3.2, 0.0], [3.2, 0.0], [0.0, 3.9], [0.0, 6.5], [-6.6, 1.0], [6.6, 1.0]])
    return (layout * scale + centre).astype(np.float32)


FACE = Face((560.0, 280.0, 720.0, 440.0), 0.9, frontal_keypoints())
GATES = QualityGates(GatesConfig())


FRAME = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)

# ---------------------------------------------------------------------------- gate decisions


@pytest.mark.parametrize(
    ("yaw", "pitch", "reason"),
    [(0, 0, None), (30, 0, None), (-30, 0, None), (40, 0, None), (0, 20, None), (0, -20, None),
     (25, 15, None), (60, 0, "pose_out_of_range"), (-60, 0, "pose_out_of_range"),
     (0, 45, "pose_out_of_range"), (0, -45, "pose_out_of_range"),
     (52, 10, "pose_out_of_range"), (10, -38, "pose_out_of_range")],
)
def test_pose_gate(yaw, pitch, reason) -> None:
    assert GATES.check(FRAME, FACE, textured_crop(), HeadPose(yaw, pitch, 8.0)) == reason


def test_pose_limits_come_from_the_config() -> None:
    pose, crop = HeadPose(35, 0, 0), textured_crop()
    assert QualityGates(GatesConfig()).check(FRAME, FACE, crop, pose) is None
    assert QualityGates(GatesConfig(max_yaw_deg=30)).check(FRAME, FACE, crop, pose) == (
        "pose_out_of_range"
    )
    assert QualityGates(GatesConfig(max_yaw_deg=30, enabled=False)).check(
        FRAME, FACE, crop, pose
    ) is None
    # An unknown pose is not gated.
    assert GATES.check(FRAME, FACE, crop, None) is None


@pytest.mark.parametrize("label", [Label.NO_MASK, Label.INCORRECT])
def test_every_alarming_verdict_passes_the_same_doubt_gate(label) -> None:
    assert GATES.alarm_doubt(0.2, label) == "no_face_presence"
    assert GATES.alarm_doubt(0.99, label) == "no_face_presence"
    assert GATES.alarm_doubt(0.999, label) is None
    assert GATES.alarm_doubt(None, label) is None  # no mesh ran


def test_doubt_gate_leaves_masked_faces_masked() -> None:
    assert GATES.alarm_doubt(0.05, Label.MASK) is None


def test_presence_floor_comes_from_the_config() -> None:
    lenient = QualityGates(GatesConfig(min_presence=0.9))
    assert lenient.alarm_doubt(0.95, Label.NO_MASK) is None
    assert lenient.alarm_doubt(0.85, Label.NO_MASK) == "no_face_presence"
    off = QualityGates(GatesConfig(enabled=False))
    assert off.alarm_doubt(0.05, Label.NO_MASK) is None


def test_exposure_and_blur_gates_on_flat_crops() -> None:
    gates, face = GATES, FACE
    sharp = textured_crop()
    assert gates.check(FRAME, face, sharp, None) is None
    assert gates.check(FRAME, face, (sharp * 0.1).astype(np.uint8), None) == "underexposed"
    assert gates.check(FRAME, face, np.full((64, 64, 3), 245, np.uint8), None) == "overexposed"
    assert gates.check(FRAME, face, np.full((64, 64, 3), 128, np.uint8), None) == "blurred"
    # Half the middle clipped white (a blown-out face) is overexposed even at a normal mean.
    half = sharp.copy()
    half[16:48, 16:40] = 255
    half[16:48, 40:48] = 0
    assert gates.check(FRAME, face, half, None) == "overexposed"
    # Any crop size is measured at 64 px.
    big = cv2.resize(sharp, (128, 128), interpolation=cv2.INTER_NEAREST)
    assert gates.check(FRAME, face, big, None) is None


def test_edge_gate_uses_the_square_box_the_detector_clipped() -> None:
    kp = frontal_keypoints(centre=(40.0, 300.0))
    whole = Face((0.0, 280.0, 80.0, 360.0), 0.9, kp)  # touches the border, nothing lost
    assert outside_share(whole, FRAME_W, FRAME_H) == 0.0
    clipped = Face((0.0, 280.0, 60.0, 360.0), 0.9, kp)  # a quarter of the square is gone
    assert outside_share(clipped, FRAME_W, FRAME_H) == pytest.approx(0.25)
    cut = Face((0.0, 280.0, 48.0, 360.0), 0.9, kp)  # 40 %: beyond the trained cuts
    gates = GATES
    assert gates.check(FRAME, cut, textured_crop(), None) == "cut_by_edge"
    assert gates.check(FRAME, clipped, textured_crop(), None) is None
    assert gates.check(FRAME, whole, textured_crop(), None) is None
    # An eye outside the frame is a cut face, whatever the box says.
    kp_out = kp.copy()
    kp_out[0, 0] = -3.0
    assert gates.check(FRAME, Face(whole.box, 0.9, kp_out), textured_crop(), None) == "cut_by_edge"


def test_config_section() -> None:
    gates = {"max_yaw_deg": 40, "min_sharpness": 20, "min_presence": 0.7}
    cfg = parse_config({"gates": gates}).gates
    assert (cfg.enabled, cfg.max_yaw_deg, cfg.min_sharpness) == (True, 40.0, 20.0)
    assert cfg.min_presence == 0.7
    with pytest.raises(ConfigError, match="gates.min_presence"):
        parse_config({"gates": {"min_presence": 1.5}})
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
    return GATES.check(image, face, crop_face(image, face.box, face.keypoints, 64), None)


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
        analyzer.classifier, "classify",
        lambda crops, **kw: batches.append(len(crops)) or classify(crops, **kw),
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
