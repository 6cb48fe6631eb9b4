"""The classifier: manifest entry (class order and crop framing), mirrored classification."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from maskwatch.cli.image_io import read_rgb
from maskwatch.config import ClassifierConfig
from maskwatch.types import Label
from maskwatch.vision.face_crop import CROP_SCALE, CropGeometry
from maskwatch.vision.face_detector import FaceDetector
from maskwatch.vision.mask_classifier import MaskClassifier, model_classes, model_crop

from conftest import MODELS, require_models


def manifest_dir(tmp_path: Path, entry: dict | str | None) -> Path:
    files = {} if entry is None else {"m.tflite": entry}
    (tmp_path / "manifest.json").write_text(json.dumps({"files": files}))
    return tmp_path


def test_classes_and_crop_come_from_the_manifest(tmp_path: Path) -> None:
    entry = {"classes": ["mask", "no_mask", "incorrect"], "crop": {"scale": 1.25, "shift": 0.08}}
    models = manifest_dir(tmp_path, entry)
    assert model_classes(models, "m.tflite") == [Label.MASK, Label.NO_MASK, Label.INCORRECT]
    assert model_crop(models, "m.tflite") == CropGeometry(1.25, 0.08)


def test_an_entry_without_crop_uses_the_default_framing(tmp_path: Path) -> None:
    models = manifest_dir(tmp_path, {"classes": ["mask", "no_mask"]})
    assert model_crop(models, "m.tflite") == CropGeometry(CROP_SCALE, 0.0)


@pytest.mark.parametrize("entry", [None, {"crop": {}}, "not an object"])
def test_a_missing_or_broken_entry_names_the_manifest(tmp_path: Path, entry) -> None:
    models = manifest_dir(tmp_path, entry)
    with pytest.raises(FileNotFoundError, match="manifest.json does not describe m.tflite"):
        model_classes(models, "m.tflite")


def test_every_shipped_classifier_has_a_complete_entry() -> None:
    require_models()
    manifest = json.loads((MODELS / "manifest.json").read_text())
    classifiers = [name for name, e in manifest["files"].items() if "classes" in e]
    assert classifiers
    for name in classifiers:
        assert (MODELS / name).is_file(), f"{name} is in the manifest but not in models/"
        model_crop(MODELS, name)


def test_mirrored_classification_is_the_mean_of_a_crop_and_its_mirror_image() -> None:
    require_models()
    classifier = MaskClassifier(MODELS, ClassifierConfig().model)
    photo = read_rgb(MODELS / "demo/astronaut.png")
    crops = np.stack([classifier.crop(photo, f) for f in FaceDetector(MODELS).detect(photo)])
    crops = np.concatenate([crops, crops[:, ::-1]])  # upside down: a crop the model is unsure of
    plain = classifier.probabilities(crops)
    mirror = classifier.probabilities(crops[:, :, ::-1])
    assert not np.allclose(plain, mirror, atol=1e-3)
    for got, a, b in zip(classifier.classify(crops, mirrored=True), plain, mirror):
        expected = (a + b) / 2
        assert got.label == classifier.classes[int(np.argmax(expected))]
        assert got.probs == pytest.approx(
            {c.value: float(p) for c, p in zip(classifier.classes, expected)}, abs=1e-3
        )
