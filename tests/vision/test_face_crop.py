"""The classifier's face crop: size, framing, roll correction and frame edges."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from maskwatch.vision.face_crop import (
    CROP_SCALE,
    CROP_SIZE,
    CropGeometry,
    crop_face,
    eye_angle,
)

GREY = 160
H, W = 480, 640
CENTRE = (320.0, 240.0)
FACE = 120.0  # box side in pixels
EYE_DX, EYE_DY = 28.0, -18.0  # eye offsets from the box centre (right eye is image-left)
NOSE_DY = 22.0


def face_points() -> dict[str, tuple[float, float]]:
    cx, cy = CENTRE
    return {
        "right_eye": (cx - EYE_DX, cy + EYE_DY),
        "left_eye": (cx + EYE_DX, cy + EYE_DY),
        "nose": (cx, cy + NOSE_DY),
    }


def synthetic_face() -> np.ndarray:
    """Grey image with two black 'eye' dots and a white 'nose' dot around CENTRE."""
    image = np.full((H, W, 3), GREY, np.uint8)
    pts = face_points()
    for name in ("right_eye", "left_eye"):
        cv2.circle(image, tuple(int(v) for v in pts[name]), 7, (0, 0, 0), -1, cv2.LINE_AA)
    cv2.circle(image, tuple(int(v) for v in pts["nose"]), 7, (255, 255, 255), -1, cv2.LINE_AA)
    return image


def rotate(image: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """The image rotated about CENTRE (positive = counter-clockwise on screen) and the matrix."""
    matrix = cv2.getRotationMatrix2D(CENTRE, degrees, 1.0)
    rotated = cv2.warpAffine(
        image, matrix, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return rotated, matrix


def transform(matrix: np.ndarray, point: tuple[float, float]) -> np.ndarray:
    return matrix @ np.array([point[0], point[1], 1.0])


def box_around(cx: float, cy: float, side: float = FACE) -> tuple[float, float, float, float]:
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def blobs(crop: np.ndarray, dark: bool) -> list[tuple[float, float]]:
    """Centroids (x, y) of the dark (or bright) dots in a crop, largest first."""
    grey = crop.mean(axis=2)
    mask = (grey < GREY - 60) if dark else (grey > GREY + 50)
    count, _, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    order = sorted(range(1, count), key=lambda i: -stats[i, cv2.CC_STAT_AREA])
    return [tuple(centroids[i]) for i in order]


def keypoints_for(matrix: np.ndarray) -> np.ndarray:
    pts = face_points()
    kps = np.zeros((6, 2))
    kps[0] = transform(matrix, pts["right_eye"])
    kps[1] = transform(matrix, pts["left_eye"])
    kps[2] = transform(matrix, pts["nose"])
    return kps


def test_shape_and_dtype() -> None:
    image = synthetic_face()
    crop = crop_face(image, box_around(*CENTRE))
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3)
    assert crop.dtype == np.uint8
    assert crop_face(image, box_around(*CENTRE), size=96).shape == (96, 96, 3)


@pytest.mark.parametrize("side", [20.0, 120.0, 400.0])
def test_crop_keeps_the_box_centred_at_the_documented_scale(side: float) -> None:
    # A white square exactly the box on black: in the crop it spans size / CROP_SCALE pixels.
    image = np.zeros((900, 900, 3), np.uint8)
    x1, y1, x2, y2 = box_around(450, 450, side)
    image[int(y1) : int(y2), int(x1) : int(x2)] = 255
    crop = crop_face(image, (x1, y1, x2, y2))
    bright = crop.mean(axis=2) > 127
    ys, xs = np.nonzero(bright)
    expected = CROP_SIZE / CROP_SCALE
    assert abs((xs.max() - xs.min() + 1) - expected) <= 2
    assert abs((ys.max() - ys.min() + 1) - expected) <= 2
    assert abs(xs.mean() - (CROP_SIZE - 1) / 2) <= 1
    assert abs(ys.mean() - (CROP_SIZE - 1) / 2) <= 1


@pytest.mark.parametrize("roll", [0.0, 30.0, -45.0])
def test_geometry_scales_and_moves_the_crop_towards_the_chin(roll: float) -> None:
    # A white box on black, rolled with the face: with shift s the box centre sits s x box
    # side above the crop centre (the crop moved chin-wards), and the box spans size / scale.
    geometry = CropGeometry(scale=1.3, shift=0.1)
    side = 200.0
    image = np.zeros((H, W, 3), np.uint8)
    image[int(CENTRE[1] - side / 2) : int(CENTRE[1] + side / 2),
          int(CENTRE[0] - side / 2) : int(CENTRE[0] + side / 2)] = 255
    rotated, matrix = rotate(image, roll)
    crop = crop_face(rotated, box_around(*CENTRE, side), keypoints_for(matrix), geometry=geometry)
    ys, xs = np.nonzero(crop.mean(axis=2) > 127)
    span = CROP_SIZE / geometry.scale
    assert abs((ys.max() - ys.min() + 1) - span) <= 2
    assert abs(xs.mean() - (CROP_SIZE - 1) / 2) <= 1
    expected_y = (CROP_SIZE - 1) / 2 - geometry.shift * side * CROP_SIZE / (side * geometry.scale)
    assert abs(ys.mean() - expected_y) <= 1


def test_upright_face_without_keypoints_is_not_rotated() -> None:
    crop = crop_face(synthetic_face(), box_around(*CENTRE))
    eyes = blobs(crop, dark=True)[:2]
    assert len(eyes) == 2
    assert abs(eyes[0][1] - eyes[1][1]) <= 1.0
    assert eye_angle(None) == 0.0


@pytest.mark.parametrize("roll", [20.0, -20.0, 35.0])
def test_rolled_face_comes_out_upright(roll: float) -> None:
    rotated, matrix = rotate(synthetic_face(), roll)
    kps = keypoints_for(matrix)
    assert eye_angle(kps) == pytest.approx(-roll, abs=1e-6)

    # Without keypoints the eye line stays tilted in the crop ...
    tilted = blobs(crop_face(rotated, box_around(*CENTRE)), dark=True)[:2]
    (ax, ay), (bx, by) = sorted(tilted)
    assert abs(ay - by) > 0.5 * abs(math.tan(math.radians(roll))) * abs(bx - ax)

    # ... with them it comes out level, right eye on the image left, nose below the eyes.
    crop = crop_face(rotated, box_around(*CENTRE), kps)
    eyes = sorted(blobs(crop, dark=True)[:2])
    assert len(eyes) == 2
    (rx, ry), (lx, ly) = eyes
    assert abs(ry - ly) <= 1.5
    scale = CROP_SIZE / (FACE * CROP_SCALE)
    assert abs((lx - rx) - 2 * EYE_DX * scale) <= 1.5
    assert abs((rx + lx) / 2 - (CROP_SIZE - 1) / 2) <= 1.5
    (nx, ny) = blobs(crop, dark=False)[0]
    assert abs(nx - (CROP_SIZE - 1) / 2) <= 1.5
    assert ny > ry + 0.5 * (NOSE_DY - EYE_DY) * scale


def test_rolled_face_off_centre_in_a_large_frame() -> None:
    # The same face shifted into a corner region of a bigger frame, rolled 20 degrees.
    rotated, matrix = rotate(synthetic_face(), 20.0)
    big = np.full((1000, 1400, 3), GREY, np.uint8)
    ox, oy = 750, 37
    big[oy : oy + H, ox : ox + W] = rotated
    kps = keypoints_for(matrix) + (ox, oy)
    crop = crop_face(big, box_around(CENTRE[0] + ox, CENTRE[1] + oy), kps)
    eyes = sorted(blobs(crop, dark=True)[:2])
    assert abs(eyes[0][1] - eyes[1][1]) <= 1.5


def edge_image() -> np.ndarray:
    """Blue image with a red left column band and a green top row band (3 px each)."""
    image = np.zeros((200, 300, 3), np.uint8)
    image[:, :] = (0, 0, 255)
    image[:, :3] = (255, 0, 0)
    image[:3, 3:] = (0, 255, 0)
    return image


@pytest.mark.parametrize(
    "box",
    [(-60.0, 50.0, 40.0, 150.0), (-150.0, -150.0, -10.0, 130.0), (250.0, 150.0, 350.0, 250.0)],
)
def test_box_partly_outside_does_not_crash(box: tuple[float, float, float, float]) -> None:
    kps = np.array([[box[0] + 20, box[1] + 30], [box[2] - 20, box[1] + 40]] + [[0, 0]] * 4, float)
    for keypoints in (None, kps):
        crop = crop_face(edge_image(), box, keypoints)
        assert crop.shape == (CROP_SIZE, CROP_SIZE, 3) and crop.dtype == np.uint8


def test_box_partly_outside_replicates_edges() -> None:
    # Box hanging 60 px off the left edge: the part outside repeats the red edge column
    # instead of turning black, the inside stays blue.
    crop = crop_face(edge_image(), (-60.0, 50.0, 40.0, 150.0)).astype(int)
    left, right = crop[:, :10], crop[:, -10:]
    assert np.all(left[..., 0] > 200) and np.all(left[..., 2] < 50)
    assert np.all(right[..., 2] > 200) and np.all(right[..., 0] < 50)
    # Off the top-left corner: the top rows repeat the green edge row, the corner is red.
    corner = crop_face(edge_image(), (-40.0, -40.0, 20.0, 20.0)).astype(int)
    assert np.all(corner[:5, -5:, 1] > 200)
    assert np.all(corner[-5:, :5, 0] > 200)
    assert (crop.sum(axis=2) > 0).all() and (corner.sum(axis=2) > 0).all()


@pytest.mark.parametrize(
    "box",
    [
        (1000.0, 1000.0, 1100.0, 1100.0),
        (-500.0, -300.0, -400.0, -200.0),
        (400.0, 10.0, 480.0, 90.0),  # beside the 300 px wide image
    ],
)
def test_box_fully_outside_gives_a_valid_crop(box: tuple[float, float, float, float]) -> None:
    kps = np.array([[box[0] + 20, box[1] + 30], [box[2] - 20, box[1] + 40]] + [[0, 0]] * 4, float)
    crop = crop_face(edge_image(), box, kps)
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3)
    assert crop.dtype == np.uint8


def test_degenerate_box_gives_a_valid_crop() -> None:
    crop = crop_face(synthetic_face(), (100.0, 100.0, 100.0, 100.0))
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3) and crop.dtype == np.uint8
    assert np.all(crop == GREY)
