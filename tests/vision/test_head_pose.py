"""Head pose from face-mesh landmarks (SPEC F3): a synthetic landmark set turned by known
angles must give those angles back, with the documented signs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from maskwatch.vision.head_pose import (
    CHIN,
    FOREHEAD,
    FOREHEAD_CHIN_LEAN,
    MIRROR_PAIRS,
    angles_of,
    estimate_head_pose,
    rotation_matrix,
)

NOSE_TIP = 1


def frontal_mesh(seed: int = 0) -> np.ndarray:
    """468 x 3 landmarks of a frontal head (pixels; z away from the camera): the points the
    pose uses in a symmetric layout, tilted by the mesh's forehead-chin lean, the rest noise."""
    rng = np.random.default_rng(seed)
    shape = rng.normal(0.0, 30.0, (468, 3))
    for k, (right, left) in enumerate(MIRROR_PAIRS):
        x, y, z = 20.0 + 12.0 * k, -10.0 + 5.0 * k, 10.0 + 3.0 * k
        shape[right], shape[left] = (-x, y, z), (x, y, z)
    shape[FOREHEAD], shape[CHIN], shape[NOSE_TIP] = (0, -80, 8), (0, 90, 8), (0, 20, -30)
    return shape @ rotation_matrix(0.0, FOREHEAD_CHIN_LEAN, 0.0).T


def seen(yaw: float, pitch: float, roll: float, scale: float = 1.0,
         centre: tuple[float, float] = (640.0, 360.0)) -> np.ndarray:
    points = frontal_mesh() @ rotation_matrix(yaw, pitch, roll).T * scale
    return points + [centre[0], centre[1], 0.0]


def test_rotation_and_angles_are_inverse() -> None:
    for yaw, pitch, roll in itertools.product((-80, -30, 0, 45, 89), (-60, 0, 25), (-40, 0, 170)):
        pose = angles_of(rotation_matrix(yaw, pitch, roll))
        assert (pose.yaw, pose.pitch, pose.roll) == pytest.approx((yaw, pitch, roll), abs=1e-6)


@pytest.mark.parametrize(
    ("yaw", "pitch", "roll"),
    [(0, 0, 0), (40, 0, 0), (-40, 0, 0), (0, 25, 0), (0, -25, 0), (0, 0, 30),
     (30, 20, -15), (-55, -10, 20), (75, 5, 0), (-88, 0, 0), (20, -40, 45)],
)
def test_known_rotation_is_recovered(yaw, pitch, roll) -> None:
    for scale, centre in ((1.0, (640.0, 360.0)), (0.25, (30.0, 40.0))):
        pose = estimate_head_pose(seen(yaw, pitch, roll, scale, centre))
        assert (pose.yaw, pose.pitch, pose.roll) == pytest.approx((yaw, pitch, roll), abs=1e-6)


def test_noisy_landmarks_stay_close() -> None:
    rng = np.random.default_rng(1)
    for yaw, pitch, roll in ((35, 10, 5), (-60, -15, -10), (10, 25, 20)):
        points = seen(yaw, pitch, roll) + rng.normal(0.0, 1.5, (468, 3))
        pose = estimate_head_pose(points)
        assert (pose.yaw, pose.pitch, pose.roll) == pytest.approx((yaw, pitch, roll), abs=4.0)


def test_signs_follow_the_image() -> None:
    frontal_nose = seen(0, 0, 0)[NOSE_TIP]
    # Positive yaw: the nose moves to the image right; positive pitch: up (smaller y).
    assert seen(30, 0, 0)[NOSE_TIP, 0] > frontal_nose[0] + 5
    assert seen(0, 20, 0)[NOSE_TIP, 1] < frontal_nose[1] - 5
    # Positive roll: clockwise on screen (y down), so the subject's left eye goes down.
    right, left = MIRROR_PAIRS[0]
    tilted = seen(0, 0, 20)
    assert tilted[left, 1] > tilted[right, 1] + 5


def test_full_profile_reads_ninety_degrees() -> None:
    assert estimate_head_pose(seen(90, 0, 0)).yaw == pytest.approx(90.0, abs=1e-6)
    assert estimate_head_pose(seen(-90, 0, 0)).yaw == pytest.approx(-90.0, abs=1e-6)
