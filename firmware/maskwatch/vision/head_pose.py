"""Head pose (yaw, pitch, roll) from the face mesh's 3-D landmarks (SPEC F3).

The mesh (:mod:`maskwatch.vision.face_landmarks`) gives every landmark a depth in the scale of its
image coordinates, so the head's axes can be read off the points directly instead of being
inferred from a 2-D layout as the detector's keypoints must be:

* the lateral axis (subject's right to left) is the mean of the vectors between mirror-image
  landmark pairs (eye corners, temples, cheek outline, brow ends): symmetric pairs, so it is
  unbiased whichever way the head turns, and long levers, so a few pixels of error hardly tilt it;
* the vertical axis runs from the forehead's top (10) to the chin (152), made orthogonal to
  the lateral axis; that line leans back from the head's vertical by :data:`FOREHEAD_CHIN_LEAN`
  (measured, see below), which is taken out as a fixed pitch;
* the third axis is their cross product.

These three unit vectors are the columns of the head's rotation matrix in camera axes, which is
decomposed into angles. Conventions (camera axes: x to the image right, y down, z away from
the camera; ``R = Rz(roll) Ry(-yaw) Rx(-pitch)`` turns the frontal face into the seen one):

* yaw > 0: the nose turns towards the image right (the subject's left); ±90° is a full profile;
* pitch > 0: the face turns up (chin forward, nose up in the image);
* roll > 0: the face tilts clockwise on screen.

A full profile is recognised: the mesh still places both eyes in 3-D, so yaw comes out near
±90° rather than saturating as a 2-D estimate does. When the mesh fails altogether on a face
its presence score is low, and the gates treat the face as doubtful instead.
"""

from __future__ import annotations

import math

import numpy as np

from maskwatch.types import HeadPose

# Mirror-image landmark pairs (subject's right, subject's left): outer and inner eye corners,
# temples, cheek outline at the ears, outer brow ends.
MIRROR_PAIRS = ((33, 263), (133, 362), (127, 356), (234, 454), (70, 300))
FOREHEAD, CHIN = 10, 152
# How far the forehead-to-chin line of the mesh leans back from the head's vertical, degrees:
# the median pitch measured with no correction on 500 frontal faces/test no_mask photos.
FOREHEAD_CHIN_LEAN = -12.5


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """3 x 3 rotation (camera axes) of a head at these angles in degrees."""
    y, p, r = (math.radians(v) for v in (-yaw, -pitch, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def angles_of(rotation: np.ndarray) -> HeadPose:
    """Inverse of :func:`rotation_matrix` (yaw within ±90°, pitch and roll within ±180°)."""
    r = rotation
    y = math.asin(max(-1.0, min(1.0, -r[2, 0])))
    p = math.atan2(r[2, 1], r[2, 2])
    z = math.atan2(r[1, 0], r[0, 0])
    return HeadPose(-math.degrees(y), -math.degrees(p), math.degrees(z))


def head_axes(points: np.ndarray) -> np.ndarray:
    """The head's rotation matrix (columns: lateral, down, backward unit vectors in camera
    axes) from 468 x 3 mesh landmarks, before the lean correction."""
    p = np.asarray(points, np.float64)
    right, left = zip(*MIRROR_PAIRS)
    lateral = (p[list(left)] - p[list(right)]).sum(axis=0)
    lateral /= np.linalg.norm(lateral)
    down = p[CHIN] - p[FOREHEAD]
    down -= (down @ lateral) * lateral
    down /= np.linalg.norm(down)
    return np.stack([lateral, down, np.cross(lateral, down)], axis=1)


def estimate_head_pose(points: np.ndarray) -> HeadPose:
    """Yaw, pitch and roll in degrees of a face from its mesh landmarks (468 x 3, x and y in
    pixels, z depth in the same scale, larger is further from the camera)."""
    return angles_of(head_axes(points) @ rotation_matrix(0.0, FOREHEAD_CHIN_LEAN, 0.0).T)
