"""One frame's faces, found and classified: the per-frame part of the pipeline.

Detection runs on a frame no wider than ``processing.detect_width`` (F12: large sensors are
shrunk for detection), while crops for the classifier come from the full-resolution frame so
small faces keep every pixel they have.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from maskwatch.config import Config
from maskwatch.types import Classification, Face, FaceResult, Label
from maskwatch.vision.face_detector import FaceDetector, shrink
from maskwatch.vision.face_follower import FaceFollower
from maskwatch.vision.face_gates import QualityGates
from maskwatch.vision.face_landmarks import FaceLandmarks
from maskwatch.vision.head_pose import estimate_head_pose
from maskwatch.vision.mask_classifier import MaskClassifier
from maskwatch.vision.nose_check import NoseCheck
from maskwatch.vision.tflite_runtime import Accelerator, choose_accelerator
from maskwatch.vision.verdict_reuse import VerdictReuse
from maskwatch.vision.view_rotation import ViewRotation, frames_per_cycle
from maskwatch.vision.wear_check import WearCheck, WearRules

log = logging.getLogger(__name__)

UNCLASSIFIED = Classification(Label.UNKNOWN, 0.0, {})


class FaceAnalyzer:
    """``live``: frames are consecutive video frames (at ``processing.fps_cap``), so the face
    mesh follows each known face (:class:`FaceFollower`, which gives the track ids), the
    detector runs a few views per frame in turn to find new faces (:class:`ViewRotation`), and
    a followed face with a stable verdict is classified every few frames only
    (:class:`VerdictReuse`); otherwise every image gets a full scan and fresh meshes."""

    def __init__(
        self, config: Config, accelerator: Accelerator | None = None, live: bool = False
    ) -> None:
        models_dir = config.paths.models()
        runtime = config.runtime
        self.accelerator = accelerator or choose_accelerator(
            runtime.accelerator, runtime.edgetpu_device
        )
        det = config.detector
        self.detect_width = config.processing.detect_width
        self.min_face = det.min_face
        self.detector = FaceDetector(
            models_dir, det.min_face, det.score_threshold, det.nms_iou, det.max_faces,
            runtime.threads,
        )
        cls = config.classifier
        threads, device = runtime.threads, runtime.edgetpu_device
        on_tpu = self.accelerator.name == "edgetpu"
        main_file, tpu = self._pick(models_dir, cls.model, cls.edgetpu_model)
        self.classifier = MaskClassifier(models_dir, main_file, threads, tpu, device)
        if on_tpu and tpu is None:
            self.accelerator = replace(self.accelerator, name="cpu")
        nose = None
        if cls.nose_model:
            nose_file, tpu = self._pick(models_dir, cls.nose_model, cls.nose_edgetpu_model)
            nose = NoseCheck(models_dir, nose_file, threads, tpu, device)
        self.wear = WearCheck(nose, WearRules.of(cls))
        self.landmarks = FaceLandmarks(models_dir, runtime.threads)
        self.gates = QualityGates(config.gates)
        fps = config.processing.fps_cap
        self.rotation = ViewRotation(frames_per_cycle(fps)) if live else None
        self.follower = FaceFollower(
            self.landmarks, math.ceil(config.tracker.max_gap_s * fps), det.max_faces
        ) if live else None
        self.verdicts = VerdictReuse()

    def _pick(
        self, models_dir: Path, model_file: str, edgetpu_file: str
    ) -> tuple[str, Accelerator | None]:
        """The compiled file and the Edge TPU when it is in use and the file is there, else
        the CPU file (with a warning when the Edge TPU goes unused)."""
        if self.accelerator.name != "edgetpu":
            return model_file, None
        if (models_dir / edgetpu_file).is_file():
            return edgetpu_file, self.accelerator
        log.warning(
            "Edge TPU present but %s is missing (compile it with edgetpu_compiler, see "
            "models/README.md); running %s on the CPU", edgetpu_file, model_file,
        )
        return model_file, None

    def describe(self) -> str:
        """The model files in use, for the status page (F20)."""
        nose = self.wear.nose
        return self.classifier.model_file + (f", nose check {nose.model_file}" if nose else "")

    def classify(
        self, image: np.ndarray, faces: list[Face], crops: np.ndarray
    ) -> list[Classification]:
        """Verdicts on ``faces`` (placed by the face mesh) from their classifier ``crops``.

        The classifier answers for each crop and its mirror image together: a face is no more
        masked in the mirror, so one side of it (a shadow, a hand, a shoulder in front) cannot
        decide alone. Then the wear check looks at the noses of the faces called masked."""
        return self.wear.apply(image, faces, self.classifier.classify(crops, mirrored=True))

    def find_faces(self, image: np.ndarray) -> list[Face]:
        """Faces in frame pixels; detection itself may run on a shrunk copy."""
        width = image.shape[1]
        if width <= self.detect_width:
            return self._detect(image, self.min_face)
        small = shrink(image, self.detect_width / width)
        scale = small.shape[1] / width
        back = 1.0 / scale
        return [
            Face(tuple(v * back for v in f.box), f.score, f.keypoints * back)  # type: ignore[arg-type]
            for f in self._detect(small, self.min_face * scale)
        ]

    def _detect(self, image: np.ndarray, min_face: float) -> list[Face]:
        if self.rotation is None:
            return self.detector.detect(image, min_face)
        height, width = image.shape[:2]
        views = self.rotation.next(self.detector.plan(width, height, min_face))
        return self.detector.detect(image, min_face, views)

    def forget(self) -> None:
        """Drop what earlier frames said about where faces are (after a pause)."""
        if self.follower is not None:
            self.follower.forget()

    def analyze(self, image: np.ndarray, classify_gated: bool = False) -> list[FaceResult]:
        """The frame's faces, classified, each with the face mesh's pose and presence.

        On the device (F3/F4) a face failing a pose or quality gate is not classified: its
        label is "unknown" and ``reason`` names the gate; an alarming verdict (no_mask,
        incorrect) on a detection the face mesh doubts is a face (low presence) is "unknown"
        too. ``classify_gated`` (still-image reports) classifies every face and keeps the classifier's label, with ``reason`` naming the gate the device would apply.
        Live, each result carries the follower's ``track_id``.
        """
        track_ids: list[int | None]
        if self.follower is not None:
            followed = self.follower.step(image, self.find_faces(image))
            self.verdicts.next_frame(self.follower.track_ids())
            faces = [f.face for f in followed]
            meshes = [f.mesh for f in followed]
            track_ids = [f.track_id for f in followed]
        else:
            faces = self.find_faces(image)
            meshes = self.landmarks.run(image, faces)
            track_ids = [None] * len(faces)
        if not faces:
            return []
        # A mesh that found no face has no pose to gate on: the presence floor holds back its
        # alarming verdicts, and a masked face stays masked.
        poses = [estimate_head_pose(m.points) if m.found else None for m in meshes]
        aligned = [m.aligned(f) for f, m in zip(faces, meshes)]
        crops = [self.classifier.crop(image, f) for f in aligned]
        reasons = [
            self.gates.check(image, f, c, p) for f, c, p in zip(faces, crops, poses)
        ]
        carried = {
            i: verdict for i, (r, track_id) in enumerate(zip(reasons, track_ids))
            if r is None and track_id is not None
            and (verdict := self.verdicts.carried(track_id)) is not None
        }
        todo = [
            i for i, r in enumerate(reasons) if (r is None or classify_gated) and i not in carried
        ]
        found: list[Classification] = []
        if todo:
            found = self.classify(
                image, [aligned[i] for i in todo], np.stack([crops[i] for i in todo])
            )
        classes = dict(zip(todo, found))
        for i in todo:
            if track_ids[i] is not None:
                self.verdicts.classified(track_ids[i], classes[i])  # type: ignore[arg-type]
        classes.update(carried)
        results = []
        for i, (face, reason) in enumerate(zip(faces, reasons)):
            pose, presence = poses[i], meshes[i].presence
            classification = classes.get(i, UNCLASSIFIED)
            if i in classes:
                reason = reason or self.gates.alarm_doubt(presence, classification.label)
                if reason is not None and not classify_gated:
                    classification = replace(classification, label=Label.UNKNOWN)
            results.append(
                FaceResult(face, classification, track_ids[i], reason, pose, presence)
            )
        return results
