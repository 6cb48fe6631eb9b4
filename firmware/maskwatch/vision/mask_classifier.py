"""Mask classifier: face crops in, class probabilities out, all faces of a frame in one invoke."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from maskwatch.types import Classification, Face, Label, ModelMismatch
from maskwatch.vision.face_crop import CropGeometry, crop_face
from maskwatch.vision.tflite_runtime import Accelerator, Model

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def model_entry(models_dir: Path, model_file: str) -> dict:
    """What the models manifest says of a model file: written by the training script."""
    manifest_path = models_dir / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        entry = manifest["files"][model_file]
        if "classes" not in entry:
            raise KeyError("classes")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FileNotFoundError(
            f"{manifest_path} does not describe {model_file} ({exc.__class__.__name__}: {exc})"
        ) from None
    return entry


def model_classes(models_dir: Path, model_file: str) -> list[Label]:
    """Class order of a model file."""
    return [Label(n) for n in model_entry(models_dir, model_file)["classes"]]


def model_crop(models_dir: Path, model_file: str) -> CropGeometry:
    """How the model's crops are framed; models from before the manifest said so used the
    default framing."""
    crop = model_entry(models_dir, model_file).get("crop", {})
    return CropGeometry(**crop)


class ManifestModel:
    """A TFLite classifier that models/manifest.json describes, run on a batch per invoke."""

    def __init__(
        self,
        models_dir: Path,
        model_file: str,
        threads: int = 1,
        accelerator: Accelerator | None = None,
        edgetpu_device: str = "",
    ) -> None:
        self.model_file = model_file
        self.models_dir = models_dir
        self.entry = model_entry(models_dir, model_file)
        self.setup()
        self.model = Model(models_dir / model_file, threads, accelerator, edgetpu_device)
        self.input_size = self.model.input_shape[1]

    def setup(self) -> None:
        """What a subclass reads from its manifest entry, before the model file is loaded."""

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """N x classes probabilities of N x size x size x 3 inputs (RGB uint8), one invoke."""
        self.model.resize_batch(len(batch))
        return self.model.run(self.model.quantize_input(batch.astype(np.float32)))[0]


class MaskClassifier(ManifestModel):
    def setup(self) -> None:
        names = self.entry["classes"]
        if not set(names) <= {label.value for label in Label}:
            raise ModelMismatch(
                f"{self.model_file} is not a mask classifier: its classes are {names}"
            )
        self.classes = model_classes(self.models_dir, self.model_file)
        self.geometry = model_crop(self.models_dir, self.model_file)

    def crop(self, image: np.ndarray, face: Face) -> np.ndarray:
        """The face framed the way this classifier was trained."""
        return crop_face(image, face.box, face.keypoints, self.input_size, self.geometry)

    def classify(self, crops: np.ndarray, mirrored: bool = False) -> list[Classification]:
        """Classify N crops (N x size x size x 3, RGB uint8).

        ``mirrored``: by the mean of each crop's and its mirror image's probabilities (one
        invoke of 2N crops). A face is no more masked in the mirror, so an answer that flips
        with it rests on one side of the face (a shadow, a hand, a shoulder in front) and
        the mean of the two is the steadier one."""
        if len(crops) == 0:
            return []
        if mirrored:
            both = self.probabilities(np.concatenate([crops, crops[:, :, ::-1]]))
            rows = (both[: len(crops)] + both[len(crops) :]) / 2.0
        else:
            rows = self.probabilities(crops)
        results = []
        for row in rows:
            best = int(np.argmax(row))
            results.append(
                Classification(
                    self.classes[best],
                    float(row[best]),
                    {c.value: round(float(p), 4) for c, p in zip(self.classes, row)},
                )
            )
        return results
