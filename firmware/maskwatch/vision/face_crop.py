"""The classifier's view of a face: one function used by training, evaluation and the device.

Training crops are made with this same function on boxes from our own detector, so the
classifier never sees a framing, rotation or resampling it will not meet on the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from maskwatch.types import Box

CROP_SIZE = 64
# Square side relative to the longer box side: BlazeFace boxes run from the brows to the chin,
# a little context shows the upper edge of a mask on the nose and its lower edge on the chin.
CROP_SCALE = 1.15
RIGHT_EYE, LEFT_EYE = 0, 1


@dataclass(frozen=True)
class CropGeometry:
    """How a classifier's crops are framed; it belongs to the model (models/manifest.json),
    because a classifier only works on crops framed the way it was trained on.

    ``scale``: crop side / longer box side. ``shift``: the crop centre moved this share of
    the box side towards the chin (along the face's own up-down axis), since BlazeFace boxes
    sit high on the face (scene photos: 8-11 % of the face height) and a mask worn on the
    chin, or a beard, is told by the part below the mouth."""

    scale: float = CROP_SCALE
    shift: float = 0.0


def eye_angle(keypoints: np.ndarray | None) -> float:
    """Roll of the face in degrees (eyes line against the horizontal); 0 without keypoints."""
    if keypoints is None:
        return 0.0
    dx, dy = keypoints[LEFT_EYE] - keypoints[RIGHT_EYE]
    return math.degrees(math.atan2(dy, dx))


def crop_face(
    image: np.ndarray,
    box: Box,
    keypoints: np.ndarray | None = None,
    size: int = CROP_SIZE,
    geometry: CropGeometry = CropGeometry(),
) -> np.ndarray:
    """A size x size RGB crop centred on the box, rolled upright by the eye line."""
    x1, y1, x2, y2 = box
    longer = max(x2 - x1, y2 - y1, 1.0)
    roll = eye_angle(keypoints)
    down = geometry.shift * longer
    cx = (x1 + x2) / 2.0 - down * math.sin(math.radians(roll))
    cy = (y1 + y2) / 2.0 + down * math.cos(math.radians(roll))
    side = longer * geometry.scale
    # Cut a region large enough for any roll, shrink it with area averaging (warpAffine alone
    # would alias on large faces), then rotate at the small size.
    half = int(math.ceil(side * 0.75))
    region = _region(image, int(round(cx)) - half, int(round(cy)) - half, 2 * half)
    scale = size / side
    shrunk_side = max(size, int(round(2 * half * scale)))
    interp = cv2.INTER_AREA if shrunk_side < region.shape[0] else cv2.INTER_LINEAR
    region = cv2.resize(region, (shrunk_side, shrunk_side), interpolation=interp)
    centre = shrunk_side / 2.0
    matrix = cv2.getRotationMatrix2D((centre, centre), roll, 1.0)
    matrix[:, 2] += size / 2.0 - centre
    return cv2.warpAffine(
        region, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def _region(image: np.ndarray, x: int, y: int, side: int) -> np.ndarray:
    """image[y:y+side, x:x+side], with edge pixels repeated where it leaves the image."""
    h, w = image.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + side, w), min(y + side, h)
    if x0 >= x1 or y0 >= y1:
        return np.zeros((side, side, 3), np.uint8)
    part = image[y0:y1, x0:x1]
    return cv2.copyMakeBorder(
        part, y0 - y, y + side - y1, x0 - x, x + side - x1, cv2.BORDER_REPLICATE
    )
