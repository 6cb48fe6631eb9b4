"""The mask-overlay generator: deterministic, masks where each placement puts them, robust to
roll, yaw and tiny faces, and train / held-out palettes that share nothing."""

from __future__ import annotations

import dataclasses
import itertools

import cv2
import numpy as np
import pytest

from maskwatch.sources.mask_overlay import (
    HELDOUT_COLOURS,
    HELDOUT_PATTERNS,
    PATTERNS,
    TRAIN_COLOURS,
    TRAIN_PATTERNS,
    MaskStyle,
    Placement,
    Shape,
    draw_mask,
    draw_mask_with_coverage,
    random_style,
)

SIZE = 240
# A frontal face: right eye, left eye, nose tip, mouth, right ear, left ear (image px).
KEYPOINTS = np.array(
    [[92, 100], [148, 100], [120, 134], [120, 160], [66, 114], [174, 114]], np.float32
)
# Strongly coloured against skin, so "covered" is unambiguous.
CONTRAST = (142, 192, 224)


def synthetic_face(keypoints: np.ndarray = KEYPOINTS, size: int = SIZE) -> np.ndarray:
    """A plain drawn face whose features sit at the keypoints: skin oval, eyes, nostrils and
    mouth on a shaded wall, with a little noise."""
    rng = np.random.default_rng(7)
    ys = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    image = np.array([170, 165, 150], np.float32) * (0.8 + 0.3 * ys) * np.ones((1, size, 3))
    re, le, nose, mouth, rear, lear = keypoints
    ipd = float(np.linalg.norm(le - re))
    centre = (re + le) / 2 * 0.35 + mouth * 0.65
    roll = float(np.degrees(np.arctan2(*(le - re)[::-1])))
    image = image.astype(np.uint8)
    axes = (int(0.5 * np.linalg.norm(lear - rear)), int(1.25 * ipd))
    cv2.ellipse(image, tuple(int(v) for v in centre), axes, roll, 0, 360, (205, 160, 135), -1,
                cv2.LINE_AA)
    for eye in (re, le):
        cv2.ellipse(image, tuple(int(v) for v in eye), (int(ipd * 0.14), int(ipd * 0.07)), roll,
                    0, 360, (60, 45, 40), -1, cv2.LINE_AA)
    for side in (-1, 1):
        nostril = nose + side * 0.08 * ipd * (le - re) / ipd + 0.05 * ipd
        cv2.circle(image, tuple(int(v) for v in nostril), max(1, int(ipd * 0.03)), (120, 80, 70),
                   -1)
    cv2.ellipse(image, tuple(int(v) for v in mouth), (int(ipd * 0.3), int(ipd * 0.08)), roll, 0,
                360, (160, 70, 70), -1, cv2.LINE_AA)
    noise = rng.normal(0, 2.0, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def changed(before: np.ndarray, after: np.ndarray, point: np.ndarray, radius: int) -> float:
    """Mean absolute change (0..255) in a square neighbourhood of ``point``."""
    x, y = (int(round(v)) for v in point)
    a = before[y - radius : y + radius + 1, x - radius : x + radius + 1].astype(np.float32)
    b = after[y - radius : y + radius + 1, x - radius : x + radius + 1].astype(np.float32)
    return float(np.abs(a - b).mean())


def rotated(image: np.ndarray, keypoints: np.ndarray, degrees: float):
    matrix = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), degrees, 1.0)
    image = cv2.warpAffine(image, matrix, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT)
    points = np.hstack([keypoints, np.ones((6, 1), np.float32)]) @ matrix.T
    return image, points.astype(np.float32)


def style_for(shape: Shape, placement: Placement, seed: int = 0) -> MaskStyle:
    return MaskStyle(shape=shape, placement=placement, colour=CONTRAST, seed=seed)


def test_same_rng_same_image_other_rng_other_noise() -> None:
    image = synthetic_face()
    style = random_style(np.random.default_rng(3), placement=Placement.CORRECT)
    a = draw_mask(image, KEYPOINTS, style, np.random.default_rng(11))
    b = draw_mask(image, KEYPOINTS, style, np.random.default_rng(11))
    c = draw_mask(image, KEYPOINTS, style, np.random.default_rng(12))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # random_style is deterministic too.
    assert random_style(np.random.default_rng(5)) == random_style(np.random.default_rng(5))


def test_output_is_a_new_image_of_the_same_shape_and_dtype() -> None:
    image = synthetic_face()
    before = image.copy()
    out, coverage = draw_mask_with_coverage(
        image, KEYPOINTS, style_for(Shape.PLEATED, Placement.CORRECT), np.random.default_rng(0)
    )
    assert out.shape == image.shape and out.dtype == np.uint8
    assert coverage.shape == image.shape[:2] and coverage.dtype == np.float32
    assert 0.0 <= coverage.min() and coverage.max() <= 1.0
    assert np.array_equal(image, before)
    assert not np.array_equal(out, image)
    # Non-square images, and float keypoints given as a list, work as well.
    wide = np.ascontiguousarray(np.hstack([image, image[:, :100]]))
    out = draw_mask(wide, KEYPOINTS.tolist(), style_for(Shape.KN95, Placement.CORRECT),
                    np.random.default_rng(0))
    assert out.shape == wide.shape and out.dtype == np.uint8


def test_rejects_non_rgb_uint8() -> None:
    style = style_for(Shape.FLAT, Placement.CORRECT)
    with pytest.raises(ValueError):
        draw_mask(synthetic_face().astype(np.float32), KEYPOINTS, style, np.random.default_rng())
    with pytest.raises(ValueError):
        draw_mask(synthetic_face()[:, :, 0], KEYPOINTS, style, np.random.default_rng())


@pytest.mark.parametrize("roll", [0.0, 20.0, -20.0])
@pytest.mark.parametrize("shape", list(Shape))
def test_each_placement_covers_what_it_should(shape: Shape, roll: float) -> None:
    """Correct: nose tip and mouth covered. Under the nose: mouth covered, nose tip free. On
    the chin: both free, the chin covered. Upright and rolled by 20 degrees either way."""
    image, kp = rotated(synthetic_face(), KEYPOINTS, roll)
    nose, mouth = kp[2], kp[3]
    down = (mouth - (kp[0] + kp[1]) / 2) / np.linalg.norm(mouth - (kp[0] + kp[1]) / 2)
    chin = mouth + down * 1.3 * np.linalg.norm(mouth - nose)
    expected = {
        Placement.CORRECT: (True, True),
        Placement.UNDER_NOSE: (False, True),
        Placement.ON_CHIN: (False, False),
    }
    for placement, (nose_covered, mouth_covered) in expected.items():
        for fit in (0.0, 1.0) if roll == 0 else (0.5,):
            style = dataclasses.replace(style_for(shape, placement), fit=fit)
            out = draw_mask(image, kp, style, np.random.default_rng(1))
            nose_change = changed(image, out, nose, 2)
            mouth_change = changed(image, out, mouth, 4)
            where = f"{shape.value} {placement.value} fit={fit} roll={roll}"
            assert (nose_change > 25) if nose_covered else (nose_change < 4), (where, nose_change)
            assert (mouth_change > 25) if mouth_covered else (mouth_change < 4), (
                where, mouth_change)
            assert changed(image, out, chin, 3) > 25, (where, "chin")


def test_turned_face_narrows_the_mask_on_the_far_side() -> None:
    """Nose and mouth shifted towards the left ear, which is closer to them: the face is
    turned to its left, and the mask reaches less far on that (image-right) side."""
    kp = KEYPOINTS.copy()
    kp[[0, 1]] += (8, 0)
    kp[[2, 3]] += (22, 0)
    kp[5] -= (18, 0)
    image = synthetic_face(kp)
    style = style_for(Shape.PLEATED, Placement.CORRECT)
    _, coverage = draw_mask_with_coverage(image, kp, dataclasses.replace(style, ear_loops=False),
                                          np.random.default_rng(0))
    row = coverage[int(kp[3][1])]
    cols = np.nonzero(row > 0.5)[0]
    towards_right_ear = kp[2][0] - cols.min()
    towards_left_ear = cols.max() - kp[2][0]
    assert towards_left_ear < 0.75 * towards_right_ear
    # Frontal, the two sides match.
    _, coverage = draw_mask_with_coverage(
        synthetic_face(), KEYPOINTS, dataclasses.replace(style, ear_loops=False),
        np.random.default_rng(0))
    cols = np.nonzero(coverage[int(KEYPOINTS[3][1])] > 0.5)[0]
    assert abs((KEYPOINTS[2][0] - cols.min()) - (cols.max() - KEYPOINTS[2][0])) <= 2


def test_tiny_faces_and_faces_at_the_border() -> None:
    """Eye distance 8 px, every shape, placement and pattern; and a face half out of frame
    or wholly outside it."""
    scale = 8 / 56  # KEYPOINTS have the eyes 56 px apart
    small = cv2.resize(synthetic_face(), (34, 34), interpolation=cv2.INTER_AREA)
    kp = KEYPOINTS * scale
    assert np.linalg.norm(kp[1] - kp[0]) == pytest.approx(8)
    rng = np.random.default_rng(0)
    kinds = list(PATTERNS)
    for i, (shape, placement) in enumerate(itertools.product(Shape, Placement)):
        for pattern in kinds[i::9][:2] or ["plain"]:
            style = MaskStyle(shape=shape, placement=placement, pattern=pattern,
                              pattern_colours=((200, 30, 40), (20, 20, 20)), colour=CONTRAST)
            out = draw_mask(small, kp, style, rng)
            assert out.shape == small.shape and out.dtype == np.uint8
    assert not np.array_equal(
        draw_mask(small, kp, style_for(Shape.PLEATED, Placement.CORRECT), rng), small
    )
    image = synthetic_face()
    for shift in ((-110, 0), (0, 90), (400, 400)):
        out = draw_mask(image, KEYPOINTS + shift, style_for(Shape.FLAT, Placement.CORRECT), rng)
        assert out.shape == image.shape
    assert np.array_equal(out, image)  # wholly outside: nothing drawn


def test_every_pattern_draws_something_of_its_colours() -> None:
    image = synthetic_face()
    rng = np.random.default_rng(2)
    for pattern in PATTERNS:
        style = MaskStyle(shape=Shape.FLAT, pattern=pattern, colour=(240, 240, 240),
                          pattern_colours=((30, 30, 160),), pattern_scale=0.25)
        out = draw_mask(image, KEYPOINTS, style, rng)
        mask = out[150:175, 95:145].reshape(-1, 3).astype(int)
        blue = (mask[:, 2] - mask[:, 0]) > 60
        if pattern in ("plain", "heather"):
            assert blue.mean() < 0.5, pattern
        else:
            assert 0.005 < blue.mean() < 0.98, (pattern, blue.mean())


def test_palettes_are_disjoint() -> None:
    assert not set(TRAIN_COLOURS) & set(HELDOUT_COLOURS)
    assert not set(TRAIN_COLOURS.values()) & set(HELDOUT_COLOURS.values())
    assert not set(TRAIN_PATTERNS) & set(HELDOUT_PATTERNS)
    assert set(TRAIN_PATTERNS) | set(HELDOUT_PATTERNS) == set(PATTERNS)

    def lab(c):
        return cv2.cvtColor(np.float32([[c]]) / 255, cv2.COLOR_RGB2Lab)[0, 0]

    # Not just different numbers: no held-out colour is a near-copy of a training one.
    closest = min(
        float(np.linalg.norm(lab(a) - lab(b)))
        for a, b in itertools.product(TRAIN_COLOURS.values(), HELDOUT_COLOURS.values())
    )
    assert closest >= 15

    rng = np.random.default_rng(0)
    for palette, colours, patterns in (("train", TRAIN_COLOURS, TRAIN_PATTERNS),
                                       ("heldout", HELDOUT_COLOURS, HELDOUT_PATTERNS)):
        seen_shapes, seen_patterns, seen_places = set(), set(), set()
        for _ in range(300):
            style = random_style(rng, palette=palette)
            assert style.colour in colours.values()
            assert set(style.pattern_colours) <= set(colours.values())
            assert style.pattern in patterns
            seen_shapes.add(style.shape)
            seen_patterns.add(style.pattern)
            seen_places.add(style.placement)
        assert seen_shapes == set(Shape)
        assert seen_patterns == set(patterns)
        assert seen_places == set(Placement)
    assert random_style(rng, placement="on_chin").placement is Placement.ON_CHIN


def test_style_validation() -> None:
    with pytest.raises(ValueError):
        MaskStyle(pattern="tartan")
    with pytest.raises(ValueError):
        MaskStyle(pattern="stripes")  # no stripe colour
    with pytest.raises(ValueError):
        random_style(np.random.default_rng(), palette="test")
    assert MaskStyle(shape="kn95").shape is Shape.KN95


