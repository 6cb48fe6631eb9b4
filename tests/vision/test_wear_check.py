"""The wear check: a face the classifier calls masked whose nose is bare, and whose own
P(incorrect) agrees, wears its mask below the nose ("incorrect") — on hand-made verdicts, on
the demo photo with masks drawn on, and on the shared wear/ and faces/test sets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from maskwatch.cli.image_io import read_rgb
from maskwatch.config import ClassifierConfig, parse_config
from maskwatch.sources.mask_overlay import Placement, draw_mask, random_style
from maskwatch.types import Classification, Label
from maskwatch.vision.face_analyzer import FaceAnalyzer
from maskwatch.vision.face_detector import FaceDetector
from maskwatch.vision.nose_check import NoseCheck
from maskwatch.vision.photo_crops import find_photo_face
from maskwatch.vision.wear_check import WearCheck, WearRules, worn_wrong

from conftest import MODELS, require_data, require_models, run_maskwatch


def verdict(label: str, **probs: float) -> Classification:
    return Classification(Label(label), probs[label], probs)


def test_worn_wrong_moves_the_label_share_to_incorrect() -> None:
    masked = worn_wrong(verdict("mask", mask=0.9, no_mask=0.05, incorrect=0.05))
    assert (masked.label, masked.confidence) == (Label.INCORRECT, 0.95)
    assert masked.probs == {"mask": 0.0, "no_mask": 0.05, "incorrect": 0.95}
    two_class = worn_wrong(verdict("mask", mask=0.9, no_mask=0.1))
    assert two_class.probs == {"mask": 0.0, "no_mask": 0.1, "incorrect": 0.9}


RULES = WearRules(min_uncovered=0.9, min_incorrect_below_nose=0.1)
MAIN_MODEL = ClassifierConfig().model
NOSE_MODEL = ClassifierConfig().nose_model
WEAR_INCORRECT_FLOOR = 0.85


def judged(
    verdicts: list[Classification], uncovered: list[float], nose: bool = True
) -> tuple[list[str], list[int] | None]:
    """Labels after the wear check, given the nose check's answers, and which faces the nose
    check was asked about (None: never)."""
    require_models()
    check = WearCheck(NoseCheck(MODELS, NOSE_MODEL) if nose else None, RULES)
    asked: list[list[int]] = []

    def lookup(chosen: list[int]) -> np.ndarray:
        asked.append(chosen)
        return np.array([uncovered[i] for i in chosen])

    result = check.judge(verdicts, lookup)
    return [v.label.value for v in result], (asked[0] if asked else None)


FACES = [
    verdict("mask", mask=0.9, no_mask=0.05, incorrect=0.05),
    verdict("mask", mask=0.7, no_mask=0.1, incorrect=0.2),
    verdict("no_mask", mask=0.1, no_mask=0.8, incorrect=0.1),
    verdict("incorrect", mask=0.1, no_mask=0.2, incorrect=0.7),
]


def test_a_mask_is_worn_wrong_only_when_the_nose_is_bare_and_the_classifier_agrees() -> None:
    labels, asked = judged(FACES, [0.9, 0.9, 0.9, 0.9])
    assert labels == ["mask", "incorrect", "no_mask", "incorrect"]
    assert asked == [0, 1]  # the nose check sees only faces called masked
    labels, _ = judged(FACES, [0.5, 0.8, 0.9, 0.9])
    assert labels == ["mask", "mask", "no_mask", "incorrect"]


def test_without_a_nose_check_the_classifier_decides_alone() -> None:
    labels, asked = judged(FACES, [1.0, 1.0, 1.0, 1.0], nose=False)
    assert labels == ["mask", "mask", "no_mask", "incorrect"]
    assert asked is None


def test_a_classifier_without_the_incorrect_class_leaves_the_nose_check_to_decide() -> None:
    two_class = [verdict("mask", mask=0.9, no_mask=0.1), verdict("mask", mask=0.8, no_mask=0.2)]
    labels, _ = judged(two_class, [0.95, 0.8])
    assert labels == ["incorrect", "mask"]


def make_analyzer(**classifier: object) -> FaceAnalyzer:
    require_models()
    return FaceAnalyzer(
        parse_config({"paths": {"models_dir": str(MODELS)}, "classifier": classifier})
    )


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    """The shipped configuration: the mask classifier and the nose check."""
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
    back just like a mask on the chin (the classifier's own verdict), since it may not be a
    face at all. The still-image
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
    """Measured on this path: 86.25 % of the masks worn wrong flagged, every correctly worn
    one called mask (models/README.md)."""
    wear = require_data("wear")
    assert shares(analyzer, wear / "incorrect").get("incorrect", 0) >= WEAR_INCORRECT_FLOOR
    assert shares(analyzer, wear / "correct").get("mask", 0) >= 0.95


@pytest.mark.parametrize("label", ["mask", "no_mask"])
def test_faces_test_set_shipped_configuration(analyzer, label) -> None:
    """Among the development test faces the detector finds (the largest face of each photo;
    scripts/evaluate_classifier.py, which also keeps the photos where no face is found, with
    the whole photo as the box, measures 97.89 % / 99.61 %): this path measures 95.5 % of the
    masked ones labelled mask (3.1 % called incorrect by the wear check, 1.4 % no_mask) and
    99.8 % of the unmasked ones no_mask, and the floor sits a little under the lower."""
    found = {k: v for k, v in shares(analyzer, require_data("faces/test") / label).items()}
    missed = found.pop("missed", 0.0)
    assert found.get(label, 0.0) / (1.0 - missed) >= 0.95


def test_the_status_names_every_model_in_use(analyzer) -> None:
    assert analyzer.describe() == f"{MAIN_MODEL}, nose check {NOSE_MODEL}"
    assert make_analyzer(nose_model="").describe() == MAIN_MODEL


@pytest.mark.parametrize(
    ("key", "model", "message"),
    [
        ("model", NOSE_MODEL, "is not a mask classifier"),
        ("nose_model", MAIN_MODEL, "is not a nose check"),
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
