"""One frame's faces, found and classified: the per-frame part of the pipeline.

Detection runs on a frame no wider than ``processing.detect_width`` (F12: large sensors are
shrunk for detection), while crops for the classifier come from the full-resolution frame so
small faces keep every pixel they have.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import cv2
import numpy as np

from maskwatch.config import Config
from maskwatch.face_crop import crop_face
from maskwatch.face_detector import FaceDetector
from maskwatch.face_gates import QualityGates
from maskwatch.mask_classifier import MaskClassifier
from maskwatch.tflite_runtime import Accelerator, choose_accelerator
from maskwatch.types import ALARM_LABELS, Classification, Face, FaceResult, Label

log = logging.getLogger(__name__)


class FaceAnalyzer:
    def __init__(self, config: Config, accelerator: Accelerator | None = None) -> None:
        models_dir = config.paths.models()
        runtime = config.runtime
        self.accelerator = accelerator or choose_accelerator(
            runtime.accelerator, runtime.edgetpu_device
        )
        det = config.detector
        self.detect_width = config.processing.detect_width
        self.min_face = det.min_face
        self.unmasked_min_score = det.unmasked_min_score
        self.detector = FaceDetector(
            models_dir, det.min_face, det.score_threshold, det.nms_iou, det.max_faces,
            runtime.threads,
        )
        model_file = config.classifier.model
        if self.accelerator.name == "edgetpu":
            if (models_dir / config.classifier.edgetpu_model).is_file():
                model_file = config.classifier.edgetpu_model
            else:
                log.warning(
                    "Edge TPU present but %s is missing (compile it with edgetpu_compiler, see "
                    "models/README.md); classifying on the CPU", config.classifier.edgetpu_model,
                )
                self.accelerator = replace(self.accelerator, name="cpu")
        self.classifier = MaskClassifier(
            models_dir, model_file, runtime.threads, self.accelerator, runtime.edgetpu_device
        )
        self.gates = QualityGates(config.gates)

    def find_faces(self, image: np.ndarray) -> list[Face]:
        """Faces in frame pixels; detection itself may run on a shrunk copy."""
        width = image.shape[1]
        if width <= self.detect_width:
            return self.detector.detect(image)
        scale = self.detect_width / width
        small = cv2.resize(
            image, (self.detect_width, int(round(image.shape[0] * scale))),
            interpolation=cv2.INTER_AREA,
        )
        back = 1.0 / scale
        return [
            Face(tuple(v * back for v in f.box), f.score, f.keypoints * back)  # type: ignore[arg-type]
            for f in self.detector.detect(small, self.min_face * scale)
        ]

    def analyze(self, image: np.ndarray) -> list[FaceResult]:
        faces = self.find_faces(image)
        if not faces:
            return []
        crops = [crop_face(image, f.box, f.keypoints, self.classifier.input_size) for f in faces]
        # F3/F4: a face failing a pose or quality gate is "unknown" and is not classified.
        reasons = [self.gates.check(image, f, c) for f, c in zip(faces, crops)]
        passed = [c for c, r in zip(crops, reasons) if r is None]
        classes = iter(self.classifier.classify(np.stack(passed)) if passed else [])
        return [
            self._trusted(FaceResult(f, next(classes))) if r is None
            else FaceResult(f, Classification(Label.UNKNOWN, 0.0, {}), reason=r)
            for f, r in zip(faces, reasons)
        ]

    def _trusted(self, result: FaceResult) -> FaceResult:
        """BlazeFace scores masked faces low, so a low score is normal for a mask, but a
        low-scoring "face" without a mask is more likely a patch of background."""
        if (
            result.classification.label in ALARM_LABELS
            and result.face.score < self.unmasked_min_score
        ):
            unknown = Classification(
                Label.UNKNOWN, result.classification.confidence, result.classification.probs
            )
            return FaceResult(result.face, unknown, reason="low_face_score")
        return result
