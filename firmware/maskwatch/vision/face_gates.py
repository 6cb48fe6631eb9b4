"""Pose and quality gates (SPEC F3, F4): faces the classifier is not asked to judge.

A face turned too far, cut by the frame edge, blurred, or too dark or too bright gives the
classifier a crop unlike anything it learnt from, and a confident "no_mask" on such a crop is a
false alarm. Such faces stay "unknown" (with the gate's name as the reason) and never alarm.

Pose comes from the face mesh's 3-D landmarks (:mod:`maskwatch.vision.head_pose`), which also
recognises full profiles. Every verdict that can alarm (no_mask and incorrect alike) must in
addition pass :meth:`QualityGates.alarm_doubt`: the mesh's face-presence floor. It holds back
only alarming verdicts: masked faces score low on it (the mesh saw mostly bare faces), and
must still be reported as masked. BlazeFace's own score is no second face check: it scores
faces with a mask pulled below the nose 0.35-0.7, and a score floor that keeps hands and
background out as well as the presence floor does also held back most of those faces
(scripts/evaluate_alarms.py chose no score floor).

The thresholds of the quality gates (see ``[gates]`` in config/maskwatch.toml) were measured on
64-px classifier crops of the development test photos and of the annotated scene photos: with
the pose gate they keep more than 98 % of the test faces and remove flat, blurred or black
background patches.
"""

from __future__ import annotations

import cv2
import numpy as np

from maskwatch.config import GatesConfig
from maskwatch.types import ALARM_LABELS, Face, HeadPose, Label

RIGHT_EYE, LEFT_EYE, NOSE, MOUTH = range(4)

# Quality gates look at the classifier crop at this size (other sizes are resized to it).
QUALITY_SIZE = 64
# Grey levels counted as clipped (black / white) by the exposure gate.
CLIP_LOW, CLIP_HIGH = 5, 250
# Keypoints that must lie inside the frame (the ear points may sit on hair or the outline).
_CORE_POINTS = (RIGHT_EYE, LEFT_EYE, NOSE, MOUTH)
# A box side this close to the frame border (px) counts as touching it.
_TOUCH_PX = 1.0


def sharpness(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a grey crop, at :data:`QUALITY_SIZE` px."""
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=1)[1:-1, 1:-1]
    return float(cv2.meanStdDev(lap)[1][0, 0] ** 2)


def _grey(crop: np.ndarray) -> np.ndarray:
    """The crop in grey levels (uint8) at :data:`QUALITY_SIZE` px."""
    if crop.shape[0] != QUALITY_SIZE or crop.shape[1] != QUALITY_SIZE:
        shrink = crop.shape[0] > QUALITY_SIZE
        crop = cv2.resize(
            crop, (QUALITY_SIZE, QUALITY_SIZE),
            interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
        )
    return cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)


def outside_share(face: Face, width: int, height: int) -> float:
    """Share of the face box that lies outside the frame. BlazeFace boxes are square and the
    detector clips them to the frame, so a box that touches the border and is no longer square
    lost the difference; a core keypoint outside the frame counts as half the face."""
    x1, y1, x2, y2 = face.box
    side = max(x2 - x1, y2 - y1, 1e-6)
    missing = 0.0
    if x1 <= _TOUCH_PX or x2 >= width - _TOUCH_PX:
        missing = max(missing, side - (x2 - x1))
    if y1 <= _TOUCH_PX or y2 >= height - _TOUCH_PX:
        missing = max(missing, side - (y2 - y1))
    share = missing / side
    pts = np.asarray(face.keypoints)[list(_CORE_POINTS)]
    if ((pts < 0) | (pts > [width, height])).any():
        share = max(share, 0.5)
    return float(share)


class QualityGates:
    """The F3/F4 gates in one call: :meth:`check` names the first gate a face fails."""

    def __init__(self, cfg: GatesConfig) -> None:
        self.cfg = cfg

    def check(
        self, image: np.ndarray, face: Face, crop: np.ndarray, pose: HeadPose | None
    ) -> str | None:
        """The reason ``face`` is not to be classified, or None. ``crop`` is its classifier
        crop (any size; measured at 64 px); ``pose`` its head pose (None: unknown, not gated)."""
        cfg = self.cfg
        if not cfg.enabled:
            return None
        height, width = image.shape[:2]
        if outside_share(face, width, height) > cfg.edge_margin:
            return "cut_by_edge"
        if pose is not None and (
            abs(pose.yaw) > cfg.max_yaw_deg or abs(pose.pitch) > cfg.max_pitch_deg
        ):
            return "pose_out_of_range"
        grey = _grey(crop)
        # Exposure of the middle half (eyes to mouth), so hair, hats and background at the
        # crop's edges do not count; a white mask there stays under max_clipped.
        q = QUALITY_SIZE // 4
        centre = grey[q : QUALITY_SIZE - q, q : QUALITY_SIZE - q]
        mean = float(cv2.mean(centre)[0])
        if mean < cfg.min_luminance or _share(centre <= CLIP_LOW) > cfg.max_clipped:
            return "underexposed"
        if mean > cfg.max_luminance or _share(centre >= CLIP_HIGH) > cfg.max_clipped:
            return "overexposed"
        if sharpness(grey) < cfg.min_sharpness:
            return "blurred"
        return None

    def alarm_doubt(self, presence: float | None, label: Label) -> str | None:
        """Why an alarming ``label`` may not alarm on this face although it passed
        :meth:`check`, or None: a detection the face mesh finds no face in
        (``no_face_presence``) is more likely a hand, a logo or background than an unmasked
        face. The same rule for no_mask and incorrect."""
        if label not in ALARM_LABELS:
            return None
        if self.cfg.enabled and presence is not None and presence < self.cfg.min_presence:
            return "no_face_presence"
        return None


def _share(mask: np.ndarray) -> float:
    return np.count_nonzero(mask) / mask.size
