"""A synthetic, deterministic entrance scene, so the whole pipeline runs with no camera and no
recorded data (first start, CI, a laptop demo).

One person (the public-domain astronaut photo, cut out) walks about in front of an indoor wall,
nearer and farther, and puts a surgical mask on and off in a fixed cycle; a second, smaller person
stands in a doorway and always wears one. Every frame is a pure function of its index and the
seed, and :meth:`DemoSource.truth` says where the faces are and whether they are masked, so tests
can check detection, classification and alarm timing end to end.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from maskwatch.sources.frame_source import FrameSource, SourceError
from maskwatch.sources.mask_overlay import (
    MaskStyle,
    Placement,
    Shape,
    draw_mask_with_coverage,
)
from maskwatch.sources.model_fetch import ASSETS, sha256_of
from maskwatch.types import Box, Frame

log = logging.getLogger(__name__)

PHOTO = "demo/astronaut.png"
# BlazeFace (full range) on the 512x512 photo, measured once with FaceDetector and kept here so
# the source never needs the detector. Keypoints: right eye, left eye, nose, mouth, right ear,
# left ear (the subject's right is on the image's left).
PHOTO_FACE_BOX = (173.27, 67.93, 279.83, 174.48)
PHOTO_KEYPOINTS = np.array(
    [[205.3, 102.0], [246.6, 105.3], [224.6, 130.3], [223.4, 148.3], [181.6, 109.1],
     [269.8, 115.0]],
    np.float32,
)
# The person's outline in the photo: hair and face inside the head ellipse (its background is
# keyed out by colour), shoulders, suit and the helmet held in front inside the body polygon.
HEAD_ELLIPSE = ((228, 100), (78, 88))
FACE_CORE_ELLIPSE = ((226, 124), (44, 58))
BODY_OUTLINE = np.array(
    [[112, 196], [120, 178], [134, 163], [155, 152], [185, 147], [225, 150], [250, 172],
     [262, 176], [276, 186], [290, 200], [300, 218], [304, 240], [318, 246], [332, 256],
     [344, 270], [350, 290], [355, 320], [360, 346], [372, 343], [392, 341], [412, 343],
     [432, 349], [452, 359], [470, 374], [485, 392], [495, 412], [501, 434], [512, 452],
     [512, 512], [20, 512], [22, 400], [25, 360], [29, 330], [37, 308], [45, 288], [53, 265],
     [63, 248], [76, 232], [95, 218], [106, 208]],
    np.int32,
)
# Sprites are drawn at twice the photo's resolution: the near person's face is up to 2.4 times
# the photo's, and the mask's thin pleat and loop lines need the extra pixels.
SPRITE_SCALE = 2.0

# Scene layout for a 1280x720 frame; other sizes scale it (x by width, sizes and y by height).
REF_HEIGHT = 720.0
NEAR_FACE_WIDTH = (120.0, 260.0)
FAR_FACE_WIDTH = (70.0, 84.0)
FLOOR_Y = 0.80
DOOR = (0.775, 0.13, 0.945)  # left x, top y, right x of the opening (it reaches the floor)
COUNTER_TOP_Y = 0.64
FAR_FACE_Y = 0.40

# The masks are drawn by maskwatch.sources.mask_overlay, like the training overlays: pleated
# surgical masks, light-blue non-woven fabric on the near person and white on the far one.
NEAR_MASK = MaskStyle(
    shape=Shape.PLEATED, placement=Placement.CORRECT, colour=(142, 192, 224),
    loop_colour=(236, 238, 240), seed=1,
)
FAR_MASK = MaskStyle(
    shape=Shape.PLEATED, placement=Placement.CORRECT, colour=(226, 230, 233),
    loop_colour=(236, 238, 240), seed=2,
)


@dataclass(frozen=True)
class _Sprite:
    """A person cut out as premultiplied RGBA uint8, with and without a mask; premultiplied so
    that warping does not bleed the transparent pixels' colour into the edge."""

    plain: np.ndarray
    masked: np.ndarray
    face_centre: tuple[float, float]  # in sprite pixels
    face_width: float  # in sprite pixels
    head_right: float  # sprite pixels from the face centre to the head's right edge


@dataclass(frozen=True)
class _Pose:
    centre: tuple[float, float]  # face-box centre in frame pixels
    face_width: float
    roll_deg: float


@dataclass(frozen=True)
class _Layout:
    """Where the fixed scenery is, in frame pixels; shared by the painter and the compositor."""

    floor_y: int
    door: tuple[int, int, int, int]  # the opening: x0, y0, x1, y1 (y1 is the floor)
    counter_y: int

    @classmethod
    def of(cls, width: int, height: int) -> _Layout:
        floor_y = int(FLOOR_Y * height)
        door = (int(DOOR[0] * width), int(DOOR[1] * height), int(DOOR[2] * width), floor_y)
        return cls(floor_y, door, int(COUNTER_TOP_Y * height))


class DemoSource(FrameSource):
    """The demo scene as an endless stream (or ``max_frames`` long); ``Frame.t`` is
    ``index / fps``. The near person is unmasked for ``unmasked_s``, then masked for
    ``masked_s``, repeating from t = 0; the far person always wears a mask. ``seed`` varies the
    noise and where on their paths the people start. ``pace`` speeds up the near person's walk
    across the scene (1: a stroll; 15: across the room and back in 2 s, up to about 60 px a
    frame at 15 fps: a person running or dancing, for tracking tests)."""

    def __init__(
        self,
        models_dir: Path,
        fps: float = 15.0,
        width: int = 1280,
        height: int = 720,
        seed: int = 0,
        unmasked_s: float = 6.0,
        masked_s: float = 6.0,
        max_frames: int | None = None,
        pace: float = 1.0,
    ) -> None:
        if (
            fps <= 0 or width < 320 or height < 180 or unmasked_s < 0 or masked_s <= 0
            or pace <= 0
        ):
            raise ValueError(
                "DemoSource needs fps > 0, at least 320x180 pixels, unmasked_s >= 0, "
                "masked_s > 0 and pace > 0"
            )
        self.fps = float(fps)
        self.width = int(width)
        self.height = int(height)
        self.seed = seed
        self.unmasked_s = float(unmasked_s)
        self.masked_s = float(masked_s)
        self.max_frames = max_frames
        self.pace = float(pace)
        photo = _load_photo(Path(models_dir) / PHOTO)
        rng = np.random.default_rng(seed)
        self._phases = rng.uniform(0.0, 2 * math.pi, 8)
        self._layout = _Layout.of(self.width, self.height)
        self._background = _draw_background(self.width, self.height, self._layout, rng)
        self._noise = _sensor_noise(self.width, self.height, rng)
        self._near = _make_sprite(photo, rng, NEAR_MASK, mirror=False, scale=SPRITE_SCALE)
        # The far sprite is made at the largest size it is drawn, so it is only ever shrunk.
        far_scale = self._k * FAR_FACE_WIDTH[1] / _photo_face_width()
        self._far = _make_sprite(photo, rng, FAR_MASK, mirror=True, scale=far_scale)
        self._next_index = 0
        self._closed = False
        log.info("opened %s", self.description)

    @property
    def description(self) -> str:
        return (
            f"demo scene ({self.width}x{self.height}, {self.fps:g} fps, mask off "
            f"{self.unmasked_s:g} s / on {self.masked_s:g} s, seed {self.seed})"
        )

    def read(self) -> Frame | None:
        if self._closed:
            return None
        index = self._next_index
        if self.max_frames is not None and index >= self.max_frames:
            return None
        self._next_index += 1
        return self.frame_at(index)

    def close(self) -> None:
        self._closed = True

    def frame_at(self, index: int) -> Frame:
        """Frame ``index`` without rendering the ones before it, so tests can sample the
        cycle cheaply."""
        t = index / self.fps
        image = self._background.copy()
        _paste(image, self._far.masked, self._far, self._far_pose(t), clip=self._layout.door)
        # The counter in the doorway stands in front of the far person.
        x0, _, x1, y1 = self._layout.door
        y0 = self._layout.counter_y
        image[y0:y1, x0:x1] = self._background[y0:y1, x0:x1]
        sprite = self._near.masked if self._near_masked(t) else self._near.plain
        _paste(image, sprite, self._near, self._near_pose(t), (0, 0, self.width, self.height))
        plus, minus = self._noise[index % len(self._noise)]
        image = cv2.subtract(cv2.add(image, plus), minus)
        return Frame(image=image, t=t, index=index)

    def truth(self, t: float) -> list[tuple[Box, bool]]:
        """Face boxes (square and upright, as BlazeFace draws them) and whether each face is
        masked at time ``t``: the near person first, then the far one."""
        return [
            (_face_box(self._near_pose(t)), self._near_masked(t)),
            (_face_box(self._far_pose(t)), True),
        ]

    @property
    def _k(self) -> float:
        """Frame pixels per pixel of the 1280x720 reference layout."""
        return self.height / REF_HEIGHT

    def _near_masked(self, t: float) -> bool:
        return (t % (self.unmasked_s + self.masked_s)) >= self.unmasked_s

    def _wave(self, t: float, period: float, phase: int) -> float:
        """0..1, smooth; the periods are mutually prime-ish so the motion does not visibly
        repeat within a demo."""
        return 0.5 * (1 - math.cos(2 * math.pi * t / period + self._phases[phase]))

    def _near_pose(self, t: float) -> _Pose:
        """The person walks about and nearer and farther, but only as far right as keeps their
        head clear of the far person's face, so the truth never lists a hidden face."""
        lo, hi = NEAR_FACE_WIDTH
        face_width = self._k * (lo + (hi - lo) * self._wave(t, 23.0, 0))
        scale = face_width / self._near.face_width
        far_left = _face_box(self._far_pose(t))[0]
        head_clear = far_left - 0.03 * self.width - self._near.head_right * scale
        left, right = 0.2 * self.width, min(0.68 * self.width, head_clear)
        x = left + self._wave(t, 31.0 / self.pace, 1) * max(right - left, 0.0)
        y = self.height * 0.42 + self._k * 12 * (self._wave(t, 2.3, 2) - 0.5)
        roll = 10.0 * (self._wave(t, 7.0, 3) - 0.5)
        return _Pose((x, y), face_width, roll)

    def _far_pose(self, t: float) -> _Pose:
        lo, hi = FAR_FACE_WIDTH
        face_width = self._k * (lo + (hi - lo) * self._wave(t, 29.0, 4))
        door_centre = 0.5 * (self._layout.door[0] + self._layout.door[2])
        x = door_centre + self._k * 28 * (self._wave(t, 17.0, 5) - 0.5)
        y = FAR_FACE_Y * self.height + self._k * 6 * (self._wave(t, 3.1, 6) - 0.5)
        roll = 6.0 * (self._wave(t, 11.0, 7) - 0.5)
        return _Pose((x, y), face_width, roll)


def _photo_face_width() -> float:
    return PHOTO_FACE_BOX[2] - PHOTO_FACE_BOX[0]


def _face_box(pose: _Pose) -> Box:
    half = pose.face_width / 2
    cx, cy = pose.centre
    return (cx - half, cy - half, cx + half, cy + half)


def _load_photo(path: Path) -> np.ndarray:
    """The photo as RGB; its checksum is checked because the face geometry above is measured on
    exactly this file."""
    if not path.is_file():
        raise SourceError(f"demo photo {path} is missing: run `maskwatch setup` to install it")
    expected = next(a.sha256 for a in ASSETS if a.target == PHOTO)
    if sha256_of(path) != expected:
        raise SourceError(
            f"demo photo {path} is not the expected file: run `maskwatch setup` to reinstall it"
        )
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SourceError(f"cannot decode demo photo {path}: run `maskwatch setup` again")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _paste(
    image: np.ndarray,
    rgba: np.ndarray,
    sprite: _Sprite,
    pose: _Pose,
    clip: tuple[int, int, int, int],
) -> None:
    """Composite the sprite, rotated and scaled about its face centre, into ``image`` within
    ``clip``. Only the covered rectangle is warped, and blending stays in 8 bits, which keeps
    a frame to a few milliseconds."""
    scale = pose.face_width / sprite.face_width
    matrix = cv2.getRotationMatrix2D(sprite.face_centre, pose.roll_deg, scale)
    matrix[:, 2] += np.array(pose.centre) - np.array(sprite.face_centre)
    h, w = rgba.shape[:2]
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ matrix.T
    x0 = max(clip[0], int(math.floor(corners[:, 0].min())))
    y0 = max(clip[1], int(math.floor(corners[:, 1].min())))
    x1 = min(clip[2], int(math.ceil(corners[:, 0].max())))
    y1 = min(clip[3], int(math.ceil(corners[:, 1].max())))
    if x1 <= x0 or y1 <= y0:
        return
    matrix[:, 2] -= (x0, y0)
    warped = cv2.warpAffine(
        rgba, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
    transparency = cv2.cvtColor(255 - warped[:, :, 3], cv2.COLOR_GRAY2RGB)
    roi = image[y0:y1, x0:x1]
    behind = cv2.multiply(roi, transparency, scale=1 / 255)
    roi[:] = cv2.add(behind, cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB))


def _make_sprite(
    photo: np.ndarray, rng: np.random.Generator, mask: MaskStyle, mirror: bool, scale: float
) -> _Sprite:
    """Cut the person out at ``scale`` times the photo's resolution. The mask is drawn before
    any mirroring, so its geometry always follows the subject's own left and right."""
    big = cv2.resize(photo, None, fx=SPRITE_SCALE, fy=SPRITE_SCALE, interpolation=cv2.INTER_CUBIC)
    plain = big.astype(np.float32)
    plain_alpha = cv2.resize(_person_alpha(photo), big.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    masked_rgb, coverage = draw_mask_with_coverage(big, PHOTO_KEYPOINTS * SPRITE_SCALE, mask, rng)
    masked = masked_rgb.astype(np.float32)
    # Where the mask reaches past the cheek onto cut-away backdrop it must still be opaque.
    masked_alpha = np.maximum(plain_alpha, coverage)

    ys, xs = np.nonzero(masked_alpha > 0.004)
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    ratio = scale / SPRITE_SCALE
    size = (max(1, round((right - left) * ratio)), max(1, round((bottom - top) * ratio)))
    layers = []
    for rgb, alpha in ((plain, plain_alpha), (masked, masked_alpha)):
        rgba = np.dstack([rgb / 255.0 * alpha[:, :, None], alpha])[top:bottom, left:right]
        if ratio != 1.0:
            rgba = cv2.resize(rgba, size, interpolation=cv2.INTER_AREA)
        if mirror:
            rgba = rgba[:, ::-1]
        layers.append(np.ascontiguousarray(np.clip(np.round(rgba * 255), 0, 255), np.uint8))

    box = PHOTO_FACE_BOX
    cx = (0.5 * (box[0] + box[2]) * SPRITE_SCALE - left) * ratio
    cy = (0.5 * (box[1] + box[3]) * SPRITE_SCALE - top) * ratio
    if mirror:
        cx = layers[1].shape[1] - 1 - cx
    face_width = _photo_face_width() * scale
    # Only rows down to a face height below the face can ever be level with the other person's
    # face; the shoulders and helmet below do not limit how close the two may stand.
    head_rows = layers[1][: int(cy + face_width), :, 3]
    cols = np.nonzero(head_rows.max(axis=0) > 5)[0]
    return _Sprite(
        plain=layers[0],
        masked=layers[1],
        face_centre=(cx, cy),
        face_width=face_width,
        head_right=float(cols.max() - cx),
    )


def _person_alpha(photo: np.ndarray) -> np.ndarray:
    """Soft 0..1 cut-out of the person: the outline shapes, minus the photo's pale grey studio
    backdrop where it shows between the hair and the shape's edge."""
    shape = np.zeros(photo.shape[:2], np.uint8)
    (cx, cy), (ax, ay) = HEAD_ELLIPSE
    cv2.ellipse(shape, (cx, cy), (ax, ay), 0, 0, 360, 255, -1, cv2.LINE_AA)
    cv2.fillPoly(shape, [BODY_OUTLINE], 255, cv2.LINE_AA)

    hsv = cv2.cvtColor(photo, cv2.COLOR_RGB2HSV)
    backdrop = (hsv[:, :, 1] < 45) & (hsv[:, :, 2] > 150)
    keep = np.zeros_like(shape)
    (cx, cy), (ax, ay) = FACE_CORE_ELLIPSE
    cv2.ellipse(keep, (cx, cy), (ax, ay), 0, 0, 360, 255, -1)
    cv2.fillPoly(keep, [BODY_OUTLINE], 255)
    backdrop &= keep == 0
    backdrop = cv2.morphologyEx(
        backdrop.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)
    ).astype(bool)
    shape[backdrop] = 0
    shape = cv2.morphologyEx(shape, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    # Pulled in by a pixel before softening, so the soft edge holds hair, not pale backdrop.
    shape = cv2.erode(shape, np.ones((3, 3), np.uint8))
    return cv2.GaussianBlur(shape.astype(np.float32) / 255.0, (0, 0), 1.0)


def _draw_background(
    width: int, height: int, layout: _Layout, rng: np.random.Generator
) -> np.ndarray:
    """An entrance hall: lit plaster wall, tiled floor, an open door with a counter behind it, a
    picture and an exit sign; textured, because detectors behave differently on flat colour."""
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    xs = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    top = np.array([222, 214, 199], np.float32)
    bottom = np.array([196, 186, 170], np.float32)
    light = 1.06 - 0.20 * np.sqrt((xs - 0.35) ** 2 * 0.6 + (ys + 0.15) ** 2 * 0.5)
    image = (top + (bottom - top) * ys) * light
    plaster = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 2.0)
    image += 9.0 * plaster[:, :, None]

    floor_y = layout.floor_y
    depth = np.linspace(0, 1, height - floor_y, dtype=np.float32)[:, None, None]
    image[floor_y:] = np.array([132, 122, 110], np.float32) * (0.85 + 0.25 * depth)
    dx0, dy0, dx1, _ = layout.door
    depth = np.linspace(0, 1, floor_y - dy0, dtype=np.float32)[:, None, None]
    image[dy0:floor_y, dx0:dx1] = np.array([104, 108, 112], np.float32) * (1.0 - 0.3 * depth)
    px0, py0, px1, py1 = (int(0.05 * width), int(0.16 * height), int(0.19 * width),
                          int(0.42 * height))
    sky = np.linspace(1, 0, py1 - py0, dtype=np.float32)[:, None, None]
    image[py0:py1, px0:px1] = (np.array([120, 160, 205], np.float32) * sky
                               + np.array([215, 200, 170], np.float32) * (1 - sky))
    image = np.clip(image, 0, 255).astype(np.uint8)  # anti-aliased drawing needs 8 bits

    vanish = (0.5 * width, 0.30 * height)
    for x in np.linspace(-1.5 * width, 2.5 * width, 31):
        s = (floor_y - vanish[1]) / (height - vanish[1])
        start = (vanish[0] + s * (x - vanish[0]), floor_y)
        cv2.line(image, _pt(start), _pt((x, height)), (96, 88, 80), 2, cv2.LINE_AA)
    for r in (1 - np.geomspace(1, 0.05, 7)[1:]) / 0.95:
        y = int(floor_y + r * (height - floor_y))
        cv2.line(image, (0, y), (width, y), (100, 92, 84), 2, cv2.LINE_AA)
    board = max(3, int(0.018 * height))
    cv2.rectangle(image, (0, floor_y - board), (width, floor_y), (236, 233, 226), -1)
    cv2.line(image, (0, floor_y), (width, floor_y), (120, 112, 104), 2, cv2.LINE_AA)

    cy = layout.counter_y
    cv2.rectangle(image, (dx0, cy), (dx1, floor_y), (120, 84, 56), -1)
    cv2.rectangle(image, (dx0, cy), (dx1, cy + int(0.012 * height)), (168, 132, 98), -1)
    leaf = np.array([[dx0, dy0], [dx0 + 0.035 * width, dy0 + 0.04 * height],
                     [dx0 + 0.035 * width, floor_y - 0.01 * height], [dx0, floor_y]], np.int32)
    cv2.fillPoly(image, [leaf], (150, 112, 80), cv2.LINE_AA)
    trim = max(4, int(0.02 * height))
    cv2.rectangle(image, (dx0 - trim, dy0 - trim), (dx1 + trim, floor_y), (240, 238, 232), trim)
    cv2.rectangle(image, (dx0 - trim, dy0 - trim), (dx1 + trim, floor_y), (170, 166, 160), 1)

    sx, sy = (dx0 + dx1) // 2, int(0.06 * height)
    sw, sh = int(0.045 * width), int(0.03 * height)
    cv2.rectangle(image, (sx - sw, sy - sh), (sx + sw, sy + sh), (30, 150, 70), -1)
    cv2.putText(image, "EXIT", (sx - int(sw * 0.75), sy + int(sh * 0.5)),
                cv2.FONT_HERSHEY_SIMPLEX, sh / 30.0, (245, 250, 245), max(1, sh // 12),
                cv2.LINE_AA)

    hills = np.array([[px0, py1], [px0, int(py0 + 0.65 * (py1 - py0))],
                      [int(px0 + 0.4 * (px1 - px0)), int(py0 + 0.5 * (py1 - py0))],
                      [px1, int(py0 + 0.7 * (py1 - py0))], [px1, py1]], np.int32)
    cv2.fillPoly(image, [hills], (84, 120, 78), cv2.LINE_AA)
    cv2.rectangle(image, (px0, py0), (px1, py1), (70, 52, 40), max(3, int(0.012 * height)))
    return image


def _pt(p: tuple[float, float]) -> tuple[int, int]:
    return int(round(p[0])), int(round(p[1]))


def _sensor_noise(
    width: int, height: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """A few fields of camera noise (as what to add and what to subtract, for saturating 8-bit
    arithmetic), cycled by frame index: the image is never perfectly still, as from a real
    sensor, while every frame stays reproducible and cheap to make."""
    fields = []
    for _ in range(4):
        noise = np.round(rng.normal(0.0, 2.0, (height, width, 3))).astype(np.int16)
        fields.append(
            (np.clip(noise, 0, 255).astype(np.uint8), np.clip(-noise, 0, 255).astype(np.uint8))
        )
    return fields
