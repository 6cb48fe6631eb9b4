"""Mask classifier: face crops in, class probabilities out, all faces of a frame in one invoke."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from maskwatch.tflite_runtime import Accelerator, Model
from maskwatch.types import Classification, Label

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def model_classes(models_dir: Path, model_file: str) -> list[Label]:
    """Class order of a model file as written in the models manifest by the training script."""
    manifest_path = models_dir / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        names = manifest["files"][model_file]["classes"]
    except (OSError, ValueError, KeyError) as exc:
        raise FileNotFoundError(
            f"{manifest_path} does not describe {model_file} ({exc.__class__.__name__}: {exc})"
        ) from None
    return [Label(n) for n in names]


class MaskClassifier:
    def __init__(
        self,
        models_dir: Path,
        model_file: str,
        threads: int = 1,
        accelerator: Accelerator | None = None,
        edgetpu_device: str = "",
    ) -> None:
        self.model_file = model_file
        self.classes = model_classes(models_dir, model_file)
        self.model = Model(models_dir / model_file, threads, accelerator, edgetpu_device)
        self.input_size = self.model.input_shape[1]

    def classify(self, crops: np.ndarray) -> list[Classification]:
        """Classify N crops (N x size x size x 3, RGB uint8)."""
        if len(crops) == 0:
            return []
        self.model.resize_batch(len(crops))
        probs = self.model.run(self.model.quantize_input(crops.astype(np.float32)))[0]
        results = []
        for row in probs:
            best = int(np.argmax(row))
            results.append(
                Classification(
                    self.classes[best],
                    float(row[best]),
                    {c.value: round(float(p), 4) for c, p in zip(self.classes, row)},
                )
            )
        return results
