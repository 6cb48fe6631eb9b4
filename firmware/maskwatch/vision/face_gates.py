"""Pose and quality gates (SPEC F3, F4): faces the classifier is not asked to judge.

A face turned too far, cut by the frame edge, blurred, or too dark or too bright gives the
classifier a crop unlike anything it learnt from, and a confident "no_mask" on such a crop is a
false alarm. Such faces stay "unknown" (with the gate's name as the reason) and never alarm.

Pose comes from BlazeFace's six keypoints alone, through a 3-D mean face (:data:`MEAN_FACE`):
its frontal layout is the median layout of BlazeFace's keypoints on the (mostly frontal)
development test photos, its depths are those of MediaPipe's canonical face model (eyes, nose
tip, mouth), and the depth of BlazeFace's "ear" points (which sit on the face outline rather
than on the tragion) is the one that makes the nose-between-the-ears and nose-between-the-eyes
cues agree on real faces (their ratio is 1.2 on about 1700 test and scene faces).
:func:`project_mean_face` turns that face to a known yaw and pitch; :func:`estimate_pose`
inverts exactly that projection, so it is exact on projected keypoints and its error on real
faces is how far a face differs from the mean one.

The thresholds of the quality gates (see ``[gates]`` in config/maskwatch.toml) were measured on
64-px classifier crops of the development test photos and of the annotated scene photos: with
the pose gate they keep more than 98 % of the test faces and remove flat, blurred or black
background patches.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from maskwatch.config import GatesConfig
from maskwatch.types import Face

RIGHT_EYE, LEFT_EYE, NOSE, MOUTH, RIGHT_EAR, LEFT_EAR = range(6)

# The six keypoints of a frontal mean face in cm, image axes: x to the image right (the
# subject's left), y down, z towards the camera. Eyes are 6.35 cm apart.
_EYE_X, _EYE_Z = 3.175, 4.0
_NOSE_Y, _NOSE_Z = 3.94, 7.3
_MOUTH_Y, _MOUTH_Z = 6.54, 5.4
_EAR_X, _EAR_Y = 6.57, 1.0
# Ear depth from the measured cue ratio: (nose - ears) / ear span = 1.2 x (nose - eyes) / eye span.
_CUE_RATIO = 1.2
_EAR_Z = _NOSE_Z - _CUE_RATIO * (_NOSE_Z - _EYE_Z) / (2 * _EYE_X) * (2 * _EAR_X)
MEAN_FACE = np.array(
    [
        [-_EYE_X, 0.0, _EYE_Z],
        [_EYE_X, 0.0, _EYE_Z],
        [0.0, _NOSE_Y, _NOSE_Z],
        [0.0, _MOUTH_Y, _MOUTH_Z],
        [-_EAR_X, _EAR_Y, _EAR_Z],
        [_EAR_X, _EAR_Y, _EAR_Z],
    ]
)
# How far the nose moves off the eye (ear) midpoint, in eye (ear) spans, per unit of tan(yaw).
_K_EYE = (_NOSE_Z - _EYE_Z) / (2 * _EYE_X)
_K_EAR = (_NOSE_Z - _EAR_Z) / (2 * _EAR_X)
# Weights of the two yaw cues; the ear cue has the longer lever, the eye cue the surer points.
_W_EYE, _W_EAR = 0.5, 0.5

# Quality gates look at the classifier crop at this size (other sizes are resized to it).
QUALITY_SIZE = 64
# Grey levels counted as clipped (black / white) by the exposure gate.
CLIP_LOW, CLIP_HIGH = 5, 250
# Keypoints that must lie inside the frame (the ear points may sit on hair or the outline).
_CORE_POINTS = (RIGHT_EYE, LEFT_EYE, NOSE, MOUTH)
# A box side this close to the frame border (px) counts as touching it.
_TOUCH_PX = 1.0


def project_mean_face(
    yaw_deg: float,
    pitch_deg: float,
    roll_deg: float = 0.0,
    scale: float = 10.0,
    centre: tuple[float, float] = (320.0, 240.0),
    distance_cm: float | None = None,
) -> np.ndarray:
    """The 6 x 2 keypoints of :data:`MEAN_FACE` turned by yaw (positive: the nose towards the
    image right), then pitch (positive: face up), then rolled in the image (positive: clockwise
    on screen), at ``scale`` px per cm. Orthographic, or a pinhole camera ``distance_cm`` from
    the face when given."""
    yaw, pitch, roll = (math.radians(v) for v in (yaw_deg, pitch_deg, roll_deg))
    x, y, z = MEAN_FACE.T
    x, z = x * math.cos(yaw) + z * math.sin(yaw), -x * math.sin(yaw) + z * math.cos(yaw)
    y, z = y * math.cos(pitch) - z * math.sin(pitch), y * math.sin(pitch) + z * math.cos(pitch)
    if distance_cm is not None:
        focus = distance_cm / (distance_cm - z)
        x, y = x * focus, y * focus
    c, s = math.cos(roll), math.sin(roll)
    x, y = x * c - y * s, x * s + y * c
    return np.stack([x * scale + centre[0], y * scale + centre[1]], axis=1).astype(np.float32)


def estimate_pose(keypoints: np.ndarray) -> tuple[float, float]:
    """Yaw and pitch in degrees (signs as in :func:`project_mean_face`) from BlazeFace's six
    keypoints.

    Roll first, so the points can be turned upright: the eye line alone would do for a face
    turned one way only, but a face turned sideways and nodded tilts its eye line by
    atan(tan(yaw) sin(pitch)) with no roll at all. The line from the eye midpoint to the point
    of the nose-mouth line at the eyes' depth is upright at any yaw and pitch, so it gives the
    roll directly; the mean of it and the eye line corrected for the tilt is used.

    Yaw: where the nose tip sits between the ears and between the eyes (each in its own span,
    so distance and face size cancel). Pitch: the nose's height between the eyes and the mouth
    against the frontal ratio; nodding moves the nose, which stands out furthest, more than the
    eyes and the mouth. Degenerate layouts (eyes or ears in the wrong order: a profile or the
    back of a head) come out at +-90 degrees yaw.
    """
    k = np.asarray(keypoints, np.float64).reshape(6, 2)
    eye_mid = (k[RIGHT_EYE] + k[LEFT_EYE]) / 2.0
    dx, dy = k[LEFT_EYE] - k[RIGHT_EYE]
    eye_angle = math.atan2(dy, dx)
    # The nose-mouth line at eye depth: mouth + t (nose - mouth), t = (Ze - Zm) / (Zn - Zm).
    t = (_EYE_Z - _MOUTH_Z) / (_NOSE_Z - _MOUTH_Z)
    down = k[MOUTH] + t * (k[NOSE] - k[MOUTH]) - eye_mid
    midline_roll = math.atan2(-down[0], down[1])
    pose = _pose_at_roll(k, eye_mid, midline_roll)
    if pose is None:
        return _profile(k)
    yaw, pitch = pose
    eye_roll = eye_angle - math.atan2(math.sin(yaw) * math.sin(pitch), math.cos(yaw))
    mean_roll = midline_roll + _wrap(eye_roll - midline_roll) / 2.0
    pose = _pose_at_roll(k, eye_mid, mean_roll)
    if pose is None:
        return _profile(k)
    return math.degrees(pose[0]), math.degrees(pose[1])


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def _profile(k: np.ndarray) -> tuple[float, float]:
    side = k[NOSE, 0] - (k[LEFT_EAR, 0] + k[RIGHT_EAR, 0]) / 2.0
    return math.copysign(90.0, side), 0.0


def _pose_at_roll(k: np.ndarray, eye_mid: np.ndarray, roll: float) -> tuple[float, float] | None:
    """Yaw and pitch (radians) of keypoints turned upright by ``roll``; None if degenerate."""
    c, s = math.cos(-roll), math.sin(-roll)
    rel = k - eye_mid
    x = rel[:, 0] * c - rel[:, 1] * s
    y = rel[:, 0] * s + rel[:, 1] * c
    eye_span = x[LEFT_EYE] - x[RIGHT_EYE]
    ear_span = x[LEFT_EAR] - x[RIGHT_EAR]
    if eye_span <= 1e-6 or ear_span <= 1e-6:
        return None
    eye_cue = x[NOSE] / eye_span / _K_EYE  # the eye midpoint is the origin
    ear_cue = (x[NOSE] - (x[LEFT_EAR] + x[RIGHT_EAR]) / 2.0) / ear_span / _K_EAR
    yaw = math.atan(_W_EYE * eye_cue + _W_EAR * ear_cue)
    # Heights below the eye line: nose a cos(p) - b cos(yaw) sin(p), mouth the same with c, d;
    # their ratio r solves to tan(p) = (a - r c) / ((b - r d) cos(yaw)).
    nose_y, mouth_y = y[NOSE], y[MOUTH]
    if mouth_y <= 1e-3 * eye_span:  # mouth at or above the eyes: far up or down
        return yaw, math.copysign(math.pi / 2, -nose_y)
    r = nose_y / mouth_y
    num = _NOSE_Y - r * _MOUTH_Y
    den = ((_NOSE_Z - _EYE_Z) - r * (_MOUTH_Z - _EYE_Z)) * math.cos(yaw)
    pitch = max(-math.pi / 2, min(math.pi / 2, math.atan2(num, den)))
    return yaw, pitch


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

    def check(self, image: np.ndarray, face: Face, crop: np.ndarray) -> str | None:
        """The reason ``face`` is not to be classified, or None. ``crop`` is its classifier
        crop (any size; measured at 64 px)."""
        cfg = self.cfg
        if not cfg.enabled:
            return None
        height, width = image.shape[:2]
        if outside_share(face, width, height) > cfg.edge_margin:
            return "cut_by_edge"
        yaw, pitch = estimate_pose(face.keypoints)
        if abs(yaw) > cfg.max_yaw_deg or abs(pitch) > cfg.max_pitch_deg:
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


def _share(mask: np.ndarray) -> float:
    return np.count_nonzero(mask) / mask.size
