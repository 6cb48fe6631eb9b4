"""Second opinions: the confirming classifier holds alarm classes to its own probability, the
wear checks (nose check and wear classifier) turn masks worn below the nose or on the chin into
"incorrect" — on hand-made verdicts, on the demo photo with masks drawn on, and on the shared
wear/ and faces/test sets."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from maskwatch.cli.image_io import read_rgb
from maskwatch.config import parse_config
from maskwatch.sources.mask_overlay import Placement, draw_mask, random_style
from maskwatch.types import Classification, Label
from maskwatch.vision.face_analyzer import FaceAnalyzer
from maskwatch.vision.face_detector import FaceDetector, box_iou
from maskwatch.vision.mask_classifier import MaskClassifier
from maskwatch.vision.nose_check import NoseCheck
from maskwatch.vision.photo_crops import find_photo_face
from maskwatch.vision.second_opinion import (
    FaceBatch,
    SecondOpinion,
    WearRules,
    confirmed,
    worn_wrong,
)

from conftest import MODELS, require_data, require_models, run_maskwatch


def verdict(label: str, **probs: float) -> Classification:
    return Classification(Label(label), probs[label], probs)


def test_an_alarm_class_needs_the_second_model_to_agree() -> None:
    first = verdict("no_mask", mask=0.1, no_mask=0.9)
    doubt = confirmed(first, verdict("mask", mask=0.7, no_mask=0.3))
    assert doubt.label == Label.MASK
    assert doubt.probs == {"no_mask": 0.3, "mask": 0.7}
    agree = confirmed(first, verdict("no_mask", mask=0.05, no_mask=0.95))
    assert (agree.label, agree.confidence) == (Label.NO_MASK, 0.9)


def test_a_class_the_second_model_lacks_keeps_the_first_probability() -> None:
    first = verdict("incorrect", mask=0.2, no_mask=0.1, incorrect=0.7)
    result = confirmed(first, verdict("mask", mask=0.9, no_mask=0.1))
    assert (result.label, result.confidence) == (Label.INCORRECT, 0.7)
    assert result.probs["mask"] == pytest.approx(0.2)


def test_worn_wrong_moves_the_label_share_to_incorrect() -> None:
    masked = worn_wrong(verdict("mask", mask=0.9, no_mask=0.1))
    assert (masked.label, masked.confidence) == (Label.INCORRECT, 0.9)
    assert masked.probs == {"mask": 0.0, "no_mask": 0.1, "incorrect": 0.9}
    on_chin = worn_wrong(verdict("no_mask", mask=0.2, no_mask=0.8))
    assert on_chin.probs == {"mask": 0.2, "no_mask": 0.0, "incorrect": 0.8}


RULES = WearRules(min_uncovered=0.5, min_incorrect_below_nose=0.1, min_incorrect_on_chin=0.99)
MAIN_MODEL = "mask_classifier_v3_float.tflite"
NOSE_MODEL = "nose_check_v2_float.tflite"
WEAR_MODEL = "mask_classifier_v4_float.tflite"
WEAR_INCORRECT_FLOOR = 0.85


def judged(
    nose: bool, wear: bool, uncovered: list[float], incorrect: list[float], on_chin: float = 0.99
) -> tuple[list[str], dict[str, list[int]]]:
    """Labels of four faces (masked, masked, unmasked, unmasked) after the wear rules, given
    each model's answers, and which faces each model was asked about."""
    require_models()
    opinion = SecondOpinion(
        MaskClassifier(MODELS, MAIN_MODEL), None,
        NoseCheck(MODELS, NOSE_MODEL) if nose else None,
        dataclasses.replace(RULES, min_incorrect_on_chin=on_chin),
        MaskClassifier(MODELS, WEAR_MODEL) if wear else None,
    )
    faces = [verdict("mask", mask=0.9, no_mask=0.1), verdict("mask", mask=0.8, no_mask=0.2),
             verdict("no_mask", mask=0.1, no_mask=0.9), verdict("no_mask", mask=0.3, no_mask=0.7)]
    asked: dict[str, list[int]] = {}

    def answers(name: str, values: list[float]):
        def lookup(chosen: list[int]) -> np.ndarray:
            asked[name] = chosen
            return np.array([values[i] for i in chosen])
        return lookup

    result = opinion.wear_verdicts(faces, answers("nose", uncovered), answers("wear", incorrect))
    return [v.label.value for v in result], asked


def test_a_mask_is_worn_wrong_only_when_nose_check_and_wear_classifier_agree() -> None:
    labels, asked = judged(True, True, [0.6, 0.9, 0.0, 0.0], [0.05, 0.2, 0.5, 0.995])
    assert labels == ["mask", "incorrect", "no_mask", "incorrect"]
    # The nose check sees only masked faces; the wear classifier only the nose check's
    # suspects and the unmasked faces.
    assert asked == {"nose": [0, 1], "wear": [0, 1, 2, 3]}
    labels, asked = judged(True, True, [0.4, 0.3, 0.0, 0.0], [0.9, 0.9, 0.0, 0.0])
    assert labels == ["mask", "mask", "no_mask", "no_mask"]
    assert asked["wear"] == [2, 3]


def test_each_wear_check_alone() -> None:
    """Without the wear classifier the nose check decides alone; without the nose check no
    mask is called worn below the nose, but the chin rule still holds."""
    labels, asked = judged(True, False, [0.6, 0.4, 0, 0], [1, 1, 1, 1])
    assert labels == ["incorrect", "mask", "no_mask", "no_mask"]
    assert "wear" not in asked
    labels, asked = judged(False, True, [1, 1, 1, 1], [1, 1, 0.5, 0.995])
    assert labels == ["mask", "mask", "no_mask", "incorrect"]
    assert "nose" not in asked


def test_a_chin_floor_of_one_switches_the_chin_rule_off() -> None:
    labels, asked = judged(True, True, [0.9, 0.0, 0, 0], [1, 1, 1, 1], on_chin=1.0)
    assert labels == ["incorrect", "mask", "no_mask", "no_mask"]
    assert asked["wear"] == [0]


def make_analyzer(**classifier: object) -> FaceAnalyzer:
    require_models()
    return FaceAnalyzer(
        parse_config({"paths": {"models_dir": str(MODELS)}, "classifier": classifier})
    )


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    """The shipped configuration: v3 confirmed by v1, the nose check and the wear classifier."""
    return make_analyzer()


def with_drawn_mask(placement: Placement | None) -> np.ndarray:
    """The demo photo, with a mask in held-out colours and patterns (no model was trained on
    them) drawn on the astronaut's face."""
    photo = read_rgb(MODELS / "demo/astronaut.png")
    if placement is None:
        return photo
    face = FaceDetector(MODELS).detect(photo)[0]
    rng = np.random.default_rng(3)
    style = random_style(rng, placement=placement, palette="heldout")
    return draw_mask(photo, face.keypoints, style, rng)


def label_of(analyzer: FaceAnalyzer, image: np.ndarray) -> Label:
    results = analyzer.analyze(image)
    assert results, "the demo face must be found"
    return results[0].classification.label


@pytest.mark.parametrize(
    ("placement", "expected"),
    [
        (None, Label.NO_MASK),
        (Placement.CORRECT, Label.MASK),
        (Placement.UNDER_NOSE, Label.INCORRECT),
        (Placement.ON_CHIN, Label.INCORRECT),
    ],
)
def test_demo_photo_shipped_configuration(analyzer, placement, expected) -> None:
    assert label_of(analyzer, with_drawn_mask(placement)) == expected


@pytest.mark.parametrize("placement", [Placement.UNDER_NOSE, Placement.ON_CHIN])
def test_every_alarming_verdict_passes_the_presence_rule(placement, monkeypatch) -> None:
    """One rule for every verdict that can alarm (F4): a mask worn below the nose (a masked
    verdict made incorrect by the wear checks) on a detection the face mesh doubts is held
    back just like a mask on the chin, since it may not be a face at all. The still-image
    report keeps the label and names the gate."""
    doubtful = make_analyzer()
    run = doubtful.landmarks.run
    monkeypatch.setattr(
        doubtful.landmarks, "run",
        lambda image, faces: [dataclasses.replace(m, presence=0.9) for m in run(image, faces)],
    )
    device = doubtful.analyze(with_drawn_mask(placement))[0]
    assert (device.classification.label, device.reason) == (Label.UNKNOWN, "no_face_presence")
    reported = doubtful.analyze(with_drawn_mask(placement), classify_gated=True)[0]
    assert (reported.classification.label, reported.reason) == (
        Label.INCORRECT, "no_face_presence"
    )


def shares(analyzer: FaceAnalyzer, folder: Path) -> dict[str, float]:
    """Share of each label over the photos of a folder (largest face of each). The photos are
    cut tight around the face, so they go on a canvas first, as in training."""
    labels = []
    for path in sorted(folder.glob("*.jpg")):
        canvas = find_photo_face(read_rgb(path), analyzer.detector).canvas
        results = analyzer.analyze(canvas, classify_gated=True)
        labels.append(results[0].classification.label.value if results else "missed")
    return {name: labels.count(name) / len(labels) for name in set(labels)}


def test_wear_set_shipped_configuration(analyzer) -> None:
    """Floors a little under what the models measure (models/README.md)."""
    wear = require_data("wear")
    assert shares(analyzer, wear / "incorrect").get("incorrect", 0) >= WEAR_INCORRECT_FLOOR
    assert shares(analyzer, wear / "correct").get("mask", 0) >= 0.95


@pytest.mark.parametrize("label", ["mask", "no_mask"])
def test_faces_test_set_shipped_configuration(analyzer, label) -> None:
    """Among the development test faces the detector finds (the largest face of each photo;
    scripts/evaluate_classifier.py, which also keeps the photos where no face is found, with
    the whole photo as the box, measures 99.37 % / 99.80 %): this path, with crops placed by
    the face mesh, measures 97.4 % of the masked ones labelled mask (1 % called incorrect) and
    99.6 % of the unmasked ones no_mask, and the floor sits a little under the lower."""
    found = {k: v for k, v in shares(analyzer, require_data("faces/test") / label).items()}
    missed = found.pop("missed", 0.0)
    assert found.get(label, 0.0) / (1.0 - missed) >= 0.97


def test_confirmation_asks_the_confirming_model_about_the_mirror_image_too() -> None:
    require_models()
    main = MaskClassifier(MODELS, MAIN_MODEL)
    confirm = MaskClassifier(MODELS, "mask_classifier_v1_float.tflite")
    photo = read_rgb(MODELS / "demo/astronaut.png")
    crop = main.crop(photo, FaceDetector(MODELS).detect(photo)[0])
    crops = np.stack([crop[::-1]])  # upside down: the two views get different answers
    alarm = verdict("no_mask", mask=0.0, no_mask=1.0)
    opinion = SecondOpinion(main, confirm, None, RULES)
    got = opinion.confirm_verdicts([alarm], lambda chosen: crops[chosen])[0]
    assert got == confirmed(alarm, confirm.classify(crops, mirrored=True)[0])
    assert got != confirmed(alarm, confirm.classify(crops)[0])


def test_a_face_half_hidden_keeps_its_alarm() -> None:
    """A scene photo (andrewmvd 717, at the evaluation's --min-face 20) where a shoulder in
    front hides one side of an unmasked face: v1 alone calls the crop masked (P 0.69) and
    would overrule v3; its mirror image it calls unmasked (P(mask) 0.06), and with the mean
    of the two the alarm stands."""
    photo = read_rgb(require_data("scenes/andrewmvd") / "images/maksssksksss717.jpg")
    analyzer = FaceAnalyzer(
        parse_config({"paths": {"models_dir": str(MODELS)}, "detector": {"min_face": 20}})
    )
    labelled = np.array([76, 128, 142, 185])
    found = {box_iou(labelled, np.array([r.face.box]))[0]: r for r in analyzer.analyze(photo)}
    face = found[max(found)]
    assert max(found) >= 0.4
    assert (face.classification.label, face.reason) == (Label.NO_MASK, None)


def test_the_status_names_every_model_in_use(analyzer) -> None:
    assert analyzer.opinion.describe() == (
        f"{MAIN_MODEL}, confirmed by mask_classifier_v1_float.tflite, "
        f"nose check {NOSE_MODEL}, wear check {WEAR_MODEL}"
    )
    assert make_analyzer(nose_model="", wear_model="").opinion.describe() == (
        f"{MAIN_MODEL}, confirmed by mask_classifier_v1_float.tflite"
    )


def test_a_confirming_model_framed_otherwise_gets_its_own_crops(tmp_path, monkeypatch) -> None:
    require_models()
    manifest = json.loads((MODELS / "manifest.json").read_text())
    v1 = "mask_classifier_v1_float.tflite"
    shutil.copy(MODELS / v1, tmp_path / v1)
    entry = dict(manifest["files"][v1], crop={"scale": 1.25, "shift": 0.08})
    (tmp_path / "manifest.json").write_text(json.dumps({"files": {v1: entry}}))
    main = MaskClassifier(MODELS, MAIN_MODEL)
    confirm = MaskClassifier(tmp_path, v1)
    photo = read_rgb(MODELS / "demo/astronaut.png")
    faces = FaceDetector(MODELS).detect(photo)[:1]
    crops = np.stack([main.crop(photo, f) for f in faces])
    seen = []
    classify = confirm.classify
    monkeypatch.setattr(
        confirm, "classify", lambda c, **kw: seen.append(c) or classify(c, **kw)
    )
    opinion = SecondOpinion(main, confirm, None, RULES)
    verdicts = opinion.apply(FaceBatch(photo, faces, crops), main.classify(crops))
    assert verdicts[0].label == Label.NO_MASK
    assert np.array_equal(seen[0][0], confirm.crop(photo, faces[0]))
    assert not np.array_equal(seen[0][0], crops[0])


@pytest.mark.parametrize(
    ("key", "model", "message"),
    [
        ("confirm_model", NOSE_MODEL, "is not a mask classifier"),
        ("nose_model", "mask_classifier_v1_float.tflite", "is not a nose check"),
        ("wear_model", "mask_classifier_v1_float.tflite", "cannot check how a mask is worn"),
    ],
)
def test_a_model_in_the_wrong_role_is_a_clear_error(tmp_path, key, model, message) -> None:
    require_models()
    config = tmp_path / "maskwatch.toml"
    config.write_text(f'[classifier]\n{key} = "{model}"\n')
    proc = run_maskwatch("detect", "--config", str(config), str(MODELS / "demo/astronaut.png"))
    assert proc.returncode == 78  # EX_CONFIG: systemd does not restart into the same error
    assert f"maskwatch: {model} {message}" in proc.stderr
    assert "Traceback" not in proc.stderr
