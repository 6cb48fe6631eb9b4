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

from maskwatch.face_crop import crop_face
from maskwatch.face_detector import FaceDetector

log = logging.getLogger(__name__)

PAD_FRACTION = 1.0
PAD_GREY = (128, 128, 128)


@dataclass(frozen=True)
class PhotoCrop:
    crop: np.ndarray
    detected: bool


def crop_from_photo(image: np.ndarray, detector: FaceDetector) -> PhotoCrop:
    """The crop of the photo's largest detected face, or of the whole photo."""
    h, w = image.shape[:2]
    pad = int(max(h, w) * PAD_FRACTION)
    canvas = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=PAD_GREY)
    # The face fills most of the photo: asking only for large faces keeps it to one model view.
    faces = detector.detect(canvas, min_face=0.3 * max(h, w))
    if faces:
        face = faces[0]
        return PhotoCrop(crop_face(canvas, face.box, face.keypoints), True)
    return PhotoCrop(crop_face(canvas, (pad, pad, pad + w, pad + h)), False)

