"""Classifier crops from face photos (training and test sets), made by the device's detector.

Data-set images are already cut tight around one face; BlazeFace misses faces that fill the
whole input, so the photo is placed on a grey canvas first. When the detector still finds no
face (drawings, heavily upscaled crops), the whole photo stands in for the box: the label is
still right, and the crop function is the same one the device uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from maskwatch.types import Box, Face
from maskwatch.vision.face_crop import CropGeometry, crop_face
from maskwatch.vision.face_detector import FaceDetector

log = logging.getLogger(__name__)

PAD_FRACTION = 1.0
PAD_GREY = (128, 128, 128)


@dataclass(frozen=True)
class PhotoFace:
    """A photo on its grey canvas with the face found in it (None: the detector missed)."""

    canvas: np.ndarray
    face: Face | None
    photo_box: Box

    @property
    def detected(self) -> bool:
        return self.face is not None

    def crop(
        self,
        canvas: np.ndarray | None = None,
        geometry: CropGeometry = CropGeometry(),
        face: Face | None = None,
    ) -> np.ndarray:
        """The classifier crop; ``canvas`` replaces the photo (e.g. with a mask drawn on) and
        ``face`` the detected face (e.g. placed by the face mesh)."""
        image = self.canvas if canvas is None else canvas
        face = self.face if face is None else face
        if face is None:
            return crop_face(image, self.photo_box)
        return crop_face(image, face.box, face.keypoints, geometry=geometry)


def find_photo_face(image: np.ndarray, detector: FaceDetector) -> PhotoFace:
    h, w = image.shape[:2]
    pad = int(max(h, w) * PAD_FRACTION)
    canvas = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=PAD_GREY)
    # The face fills most of the photo: asking only for large faces keeps it to one model view.
    faces = detector.detect(canvas, min_face=0.3 * max(h, w))
    return PhotoFace(canvas, faces[0] if faces else None, (pad, pad, pad + w, pad + h))
