"""Synthetic face masks drawn onto unmasked faces, placed by BlazeFace's six keypoints.

There is no licensed real training data for masks worn under the nose or on the chin, so the
classifier learns them from masks drawn here: flat cloth, pleated surgical and KN95/KF94 shapes;
plain colours, geometric patterns and procedural prints; worn correctly, under the nose or on
the chin. The demo scene uses the same drawer for its surgical mask.

Geometry. The keypoints are right eye, left eye, nose tip, mouth centre, right ear tragion, left
ear tragion ("right" is the subject's right, on the image's left). The face frame has its origin
between the eyes, ``u`` along the eye line (so in-plane roll is followed) and ``v`` down the
face in units of the eye-to-mouth distance (v = 0 eye line, v = 1 mouth). Across the face the
mask lies on an elliptic cylinder about the head's vertical axis, half-width ``W`` at the ears and
depth ``DEPTH_RATIO * W`` at the front, turned by the yaw that puts the cylinder's front on the
nose keypoint. A point of the mask is (theta, v); theta = 0 runs down the middle of the face.
Projecting the cylinder orthographically narrows the side turned away from the camera; there
the mask ends at the face's silhouette (a little past the cylinder's, see FAR_FLAP). The
placements set the top and bottom edges in v from the nose, mouth and an estimated chin.

Rendering. Coverage, shading and texture are computed per pixel at up to 4x supersampling from
the inverse mapping (pixel -> theta, v), so textures follow the surface (stripes compress round
the cheeks, pleats fold the print) and every edge is anti-aliased. The result is lit by the
face's own brightness, blurred to the photo's estimated sharpness and given its noise level.

Palettes. ``"train"`` and ``"heldout"`` have disjoint colours and disjoint pattern kinds, so a
held-out evaluation set shows colours and patterns the classifier never trained on.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from enum import Enum
from typing import Callable

import cv2
import numpy as np

Colour = tuple[int, int, int]


class Placement(str, Enum):
    CORRECT = "correct"  # over the nose bridge down below the chin
    UNDER_NOSE = "under_nose"  # nostrils free, mouth and chin covered
    ON_CHIN = "on_chin"  # below the lower lip, mouth and nose free


class Shape(str, Enum):
    FLAT = "flat"  # cloth mask, smooth, with a centre seam
    PLEATED = "pleated"  # surgical mask, three horizontal pleats, bound edges, nose wire
    KN95 = "kn95"  # KN95/KF94: two panels meeting at a vertical centre seam, pointed nose


# Realistic mask colours, split so that no held-out colour is near a training one (CIELAB
# distance >= 15 between any pair; tests check it).
TRAIN_COLOURS: dict[str, Colour] = {
    "white": (236, 238, 240),
    "light_blue": (142, 192, 224),
    "medical_blue": (88, 150, 205),
    "black": (28, 29, 33),
    "grey": (128, 131, 136),
    "light_grey": (192, 194, 197),
    "navy": (30, 40, 78),
    "pink": (238, 168, 190),
    "beige": (214, 192, 162),
    "red": (192, 30, 42),
    "royal_blue": (38, 72, 176),
    "green": (34, 139, 76),
    "yellow": (240, 204, 40),
    "purple": (104, 52, 140),
}
HELDOUT_COLOURS: dict[str, Colour] = {
    "mint": (160, 218, 190),
    "teal": (0, 120, 124),
    "lavender": (184, 164, 222),
    "burgundy": (108, 22, 48),
    "orange": (240, 118, 28),
    "olive": (104, 108, 44),
    "coral": (248, 112, 96),
    "dark_brown": (74, 58, 50),
    "cream": (248, 240, 208),
    "mustard": (196, 150, 30),
    "magenta": (200, 40, 140),
    "slate": (84, 100, 118),
}
# "plain" and "heather" are the (near-)solid kinds of each palette.
TRAIN_PATTERNS = ("plain", "stripes", "dots", "floral", "camo", "print")
HELDOUT_PATTERNS = ("heather", "checks", "chevron", "paisley", "logo", "tiedye")
PALETTES = {
    "train": (TRAIN_COLOURS, TRAIN_PATTERNS),
    "heldout": (HELDOUT_COLOURS, HELDOUT_PATTERNS),
}
SOLID_PATTERNS = ("plain", "heather")

# Head model: mask surface depth at the front over the half-width at the ears. The same ratio
# turns the nose's offset from the ears' midpoint into the yaw, so the mask's middle is on the
# nose whatever the turn.
DEPTH_RATIO = 1.1
MAX_YAW = math.radians(55)
FAR_FLAP = 0.25
# Chin below the mouth in multiples of the nose-to-mouth distance: on 79 training photos the
# BlazeFace box bottom (at the chin) sits at mouth + 1.37 x (mouth - nose), median (10-90 %:
# 1.25-1.42), and at 1.55 eye-to-mouth distances below the eyes.
CHIN_FROM_MOUTH = 1.35
# Supersampling: 4x for small faces, less for large ones (their edges are many pixels long
# anyway), never below 2x; the longest side of the supersampled fabric region is kept near
# SUPERSAMPLE_BUDGET.
SUPERSAMPLE = 4
SUPERSAMPLE_BUDGET = 420


@dataclass(frozen=True)
class MaskStyle:
    """Everything about a mask's look; together with the keypoints it fixes the drawing up to
    the sensor noise, which comes from the ``rng`` given to :func:`draw_mask`."""

    shape: Shape = Shape.PLEATED
    placement: Placement = Placement.CORRECT
    colour: Colour = TRAIN_COLOURS["light_blue"]
    pattern: str = "plain"
    pattern_colours: tuple[Colour, ...] = ()
    pattern_scale: float = 0.25  # pattern period in eye-to-mouth distances
    pattern_angle: float = 0.0  # degrees, on the mask's surface
    ear_loops: bool = True
    loop_colour: Colour | None = None  # None: a light loop on light masks, the mask's own colour
    shading: float = 1.0  # strength of folds, pleats and curvature shading (0 = none)
    fit: float = 0.5  # 0..1: where in the placement's range the mask sits (0 = highest)
    size: float = 1.0  # overall size, about 0.9..1.1
    seed: int = 0  # the print's layout and the fabric grain

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", Shape(self.shape))
        object.__setattr__(self, "placement", Placement(self.placement))
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown mask pattern {self.pattern!r}; one of {sorted(PATTERNS)}")
        if self.pattern not in SOLID_PATTERNS and not self.pattern_colours:
            raise ValueError(f"pattern {self.pattern!r} needs at least one pattern colour")
        if self.pattern_scale <= 0 or self.size <= 0 or self.shading < 0:
            raise ValueError("pattern_scale and size must be > 0, shading >= 0")


# --------------------------------------------------------------------------------------------
# Styles


def random_style(
    rng: np.random.Generator,
    *,
    placement: Placement | str | None = None,
    palette: str = "train",
) -> MaskStyle:
    """A random mask from one palette: shape, colours, pattern and fit. ``placement=None``
    picks each placement equally often."""
    if palette not in PALETTES:
        raise ValueError(f"palette must be one of {sorted(PALETTES)}, not {palette!r}")
    colours, patterns = PALETTES[palette]
    names = list(colours)
    if placement is None:
        placement = list(Placement)[int(rng.integers(3))]
    shape = [Shape.PLEATED, Shape.KN95, Shape.FLAT][
        int(rng.choice(3, p=[0.4, 0.3, 0.3]))
    ]
    solid = SOLID_PATTERNS[0] if palette == "train" else SOLID_PATTERNS[1]
    solid_share = {Shape.PLEATED: 0.7, Shape.KN95: 0.75, Shape.FLAT: 0.3}[shape]
    if rng.random() < solid_share:
        pattern = solid
    else:
        pattern = str(rng.choice([p for p in patterns if p != solid]))

    # Surgical and KN95 masks are mostly white, blue, black or grey; cloth masks any colour.
    common = {
        "train": ["white", "light_blue", "medical_blue", "black", "light_grey"],
        "heldout": ["mint", "cream", "slate", "lavender"],
    }[palette]
    if shape is not Shape.FLAT and pattern == solid and rng.random() < 0.6:
        base_name = str(rng.choice(common))
    else:
        base_name = str(rng.choice(names))
    base = colours[base_name]
    others = [c for n, c in colours.items() if n != base_name and _lab_distance(c, base) > 30]
    count = 0 if pattern in SOLID_PATTERNS and rng.random() < 0.5 else int(rng.integers(1, 4))
    if pattern not in SOLID_PATTERNS:
        count = max(count, 1)
    picks = rng.choice(len(others), size=min(count, len(others)), replace=False)
    pattern_colours = tuple(others[int(i)] for i in picks)

    scale_range = {
        "plain": (0.2, 0.3), "heather": (0.04, 0.08), "stripes": (0.09, 0.3),
        "dots": (0.1, 0.26), "checks": (0.1, 0.34), "chevron": (0.14, 0.3),
        "floral": (0.25, 0.5), "paisley": (0.3, 0.55), "camo": (0.35, 0.8),
        "tiedye": (0.5, 1.2), "print": (0.22, 0.4), "logo": (0.3, 0.5),
    }[pattern]
    if pattern in ("stripes", "checks", "chevron"):
        angle = float(rng.choice([0.0, 90.0, 45.0, -45.0, float(rng.uniform(-90, 90))]))
    else:
        angle = float(rng.uniform(-180, 180))
    if palette == "train" and rng.random() < 0.6:
        loop_colour: Colour | None = colours["white"]
    else:
        loop_colour = None
    return MaskStyle(
        shape=shape,
        placement=Placement(placement),
        colour=base,
        pattern=pattern,
        pattern_colours=pattern_colours,
        pattern_scale=float(rng.uniform(*scale_range)),
        pattern_angle=angle,
        ear_loops=bool(rng.random() < 0.9),
        loop_colour=loop_colour,
        shading=float(rng.uniform(0.7, 1.25)),
        fit=float(rng.random()),
        size=float(rng.uniform(0.93, 1.07)),
        seed=int(rng.integers(2**31 - 1)),
    )


def _lab(colour: Colour) -> np.ndarray:
    rgb = np.array([[colour]], np.float32) / 255.0
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)[0, 0]


def _lab_distance(a: Colour, b: Colour) -> float:
    return float(np.linalg.norm(_lab(a) - _lab(b)))


# --------------------------------------------------------------------------------------------
# Face geometry


@dataclass(frozen=True)
class _Face:
    origin: np.ndarray  # between the eyes, image px
    ex: np.ndarray  # unit, along the eye line towards the subject's left eye (image right)
    ey: np.ndarray  # unit, down the face
    unit: float  # eye line to mouth, px: one unit of v
    v_nose: float
    v_chin: float
    yaw: float  # radians; > 0: the nose is turned towards +u, that side is the far one
    half_width: float  # at the ears, in units of v
    centre_v: np.ndarray  # where the middle of the face is (u, in units) at these v
    centre_u: np.ndarray
    ears: np.ndarray  # (2, 2) right and left tragion, face units

    @classmethod
    def from_keypoints(cls, keypoints: np.ndarray) -> _Face:
        kp = np.asarray(keypoints, np.float64).reshape(6, 2)
        right_eye, left_eye = kp[0], kp[1]
        eye_vec = left_eye - right_eye
        ipd = float(np.linalg.norm(eye_vec))
        if not np.isfinite(ipd) or ipd < 1e-3:
            raise ValueError("the eye keypoints coincide: no face geometry")
        ex = eye_vec / ipd
        ey = np.array([-ex[1], ex[0]])
        origin = (left_eye + right_eye) / 2
        local = (kp - origin) @ np.stack([ex, ey], 1)  # (6, 2) px
        # Eye-to-mouth distance: the vertical unit; kept within reason of the eye distance,
        # which shrinks with yaw (hence the wide range) but not with pitch.
        unit = float(np.clip(local[3, 1], 0.75 * ipd, 2.2 * ipd))
        loc = local / unit
        v_nose = float(np.clip(loc[2, 1], 0.35, 0.8))
        v_chin = 1.0 + CHIN_FROM_MOUTH * (1.0 - v_nose)
        ear_r, ear_l = loc[4], loc[5]
        span = float(ear_l[0] - ear_r[0])
        nose_u, mouth_u = float(loc[2, 0]), float(loc[3, 0])
        ipd_u = ipd / unit
        if span > 0.8 * ipd_u:
            ear_mid = float(ear_l[0] + ear_r[0]) / 2
            ratio = (nose_u - ear_mid) / (span / 2)
            yaw = math.atan(ratio / DEPTH_RATIO)
        else:  # ears unusable: the nose's offset from between the eyes, relative to the eyes
            yaw = math.atan(nose_u / (0.5 * ipd_u) / 1.2)
        yaw = float(np.clip(yaw, -MAX_YAW, MAX_YAW))
        # Half-width from the ears (span = 2 W cos yaw) and from the eyes (about W cos yaw).
        from_eyes = 1.0 * ipd_u / math.cos(yaw)
        if span > 0.8 * ipd_u:
            half_width = 0.6 * span / 2 / math.cos(yaw) + 0.4 * from_eyes
        else:
            half_width = from_eyes
        half_width = float(np.clip(half_width, 0.7, 1.5))
        # The face's middle line: the nose bridge between the eyes and the nose tip, then the
        # nose tip, the mouth and on towards the chin.
        slope = (mouth_u - nose_u) / max(1.0 - v_nose, 0.2)
        chin_u = mouth_u + 0.6 * slope * (v_chin - 1.0)
        centre_v = np.array([-1.0, 0.0, v_nose, 1.0, v_chin, v_chin + 1.0])
        centre_u = np.array(
            [0.4 * nose_u, 0.4 * nose_u, nose_u, mouth_u, chin_u, chin_u + 0.3 * slope]
        )
        return cls(origin, ex, ey, unit, v_nose, v_chin, yaw, half_width, centre_v, centre_u,
                   np.stack([ear_r, ear_l]))

    def width_at(self, v: np.ndarray) -> np.ndarray:
        """Head half-width at height v: the jaw narrows below the mouth towards the chin."""
        jaw = _smoothstep(0.6, 1.1, v) * 0.12 + _smoothstep(1.1, self.v_chin + 0.2, v) * 0.38
        return self.half_width * (1.0 - jaw)

    def axis_at(self, v: np.ndarray) -> np.ndarray:
        """u of the head's vertical axis, chosen so that theta = 0 lands on the middle line."""
        middle = np.interp(v, self.centre_v, self.centre_u).astype(np.float32)
        return middle - DEPTH_RATIO * self.width_at(v) * math.sin(self.yaw)

    @property
    def silhouette(self) -> float:
        """|theta| beyond which the far side of the cylinder is hidden."""
        t = abs(math.tan(self.yaw))
        return math.pi / 2 if t < 1e-6 else math.atan(1.0 / (DEPTH_RATIO * t))

    def to_image(self, theta: np.ndarray, v: np.ndarray) -> np.ndarray:
        theta, v = np.broadcast_arrays(np.asarray(theta, float), np.asarray(v, float))
        w = self.width_at(v)
        u = self.axis_at(v) + w * (
            np.sin(theta) * math.cos(self.yaw) + DEPTH_RATIO * np.cos(theta) * math.sin(self.yaw)
        )
        return self.face_to_image(u, v)

    def face_to_image(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        u, v = np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float))
        return self.origin + self.unit * (u[..., None] * self.ex + v[..., None] * self.ey)

    def image_to_face(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = x - self.origin[0], y - self.origin[1]
        u = (dx * self.ex[0] + dy * self.ex[1]) / self.unit
        v = (dx * self.ey[0] + dy * self.ey[1]) / self.unit
        return u, v

    def theta_of(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """theta of the visible surface point at (u, v), and whether (u, v) is on the head.

        On the side turned away, fabric pulled taut from the nose to the ear stands out past
        the cheek, and real cheeks are fuller than the cylinder: up to FAR_FLAP (times the sine
        of the yaw) beyond the silhouette still counts, at the silhouette's theta."""
        w = self.width_at(v)
        a = w * math.cos(self.yaw)
        b = w * DEPTH_RATIO * math.sin(self.yaw)
        radius = np.hypot(a, b)
        rel = (u - self.axis_at(v)) / radius
        far = np.sign(rel) == math.copysign(1.0, self.yaw)
        on = np.abs(rel) <= 1.0 + far * (FAR_FLAP * abs(math.sin(self.yaw)))
        theta = np.arcsin(np.clip(rel, -1.0, 1.0)) - np.arctan2(b, a)
        return theta.astype(np.float32), on


# --------------------------------------------------------------------------------------------
# Outline: where on the surface the mask is, per placement and shape


@dataclass(frozen=True)
class _Outline:
    theta_edge: float  # the sides, in theta
    s_lo: float  # visible part of s = theta / theta_edge (the far side may be cut by the
    s_hi: float  # silhouette)
    top_c: float  # v of the top edge in the middle and at the sides
    top_side: float
    bot_c: float
    bot_side: float
    top_pow: float
    bot_pow: float
    bot_q: float
    pleats: tuple[float, ...]  # fractions of the height (t) where pleat creases run

    def top(self, a: np.ndarray) -> np.ndarray:
        return self.top_c + (self.top_side - self.top_c) * a**self.top_pow

    def bottom(self, a: np.ndarray) -> np.ndarray:
        body = np.clip(1.0 - a**self.bot_pow, 0.0, 1.0) ** self.bot_q
        return self.bot_side + (self.bot_c - self.bot_side) * body

    def boundary(self, n: int = 48) -> np.ndarray:
        """(theta, v) round the visible outline, clockwise from the top middle."""
        s = np.linspace(self.s_lo, self.s_hi, n)
        a = np.abs(s)
        top = np.stack([s, self.top(a)], 1)
        bottom = np.stack([s, self.bottom(a)], 1)[::-1]
        pts = np.vstack([top, bottom])
        pts[:, 0] *= self.theta_edge
        return pts


def _outline(face: _Face, style: MaskStyle) -> _Outline:
    vn, vc = face.v_nose, face.v_chin
    fit, size, shape = style.fit, style.size, style.shape
    edge_deg = {Shape.PLEATED: 78.0, Shape.FLAT: 72.0, Shape.KN95: 70.0}[shape]
    top_pow = {Shape.PLEATED: 1.7, Shape.FLAT: 1.35, Shape.KN95: 0.8}[shape]
    bot_pow, bot_q = {
        Shape.PLEATED: (2.0, 0.6), Shape.FLAT: (2.2, 0.75), Shape.KN95: (1.15, 1.0)
    }[shape]
    grow = size - 1.0
    if style.placement is Placement.CORRECT:
        top_c = vn * (0.40 + 0.15 * fit)  # 40-55 % of the way from the eye line to the nose
        top_side = 0.85 * vn + (0.05 if shape is Shape.KN95 else 0.0)
        bot_c = vc + 0.10 + 0.5 * grow
        bot_side = 1.05 - (0.07 if shape is Shape.KN95 else 0.0)
        pleats = (0.30, 0.52, 0.74)
    elif style.placement is Placement.UNDER_NOSE:
        # From just under the nostrils (the commonest slip) to well down the upper lip.
        top_c = vn + (0.12 + 0.28 * fit) * (1.0 - vn)
        top_side = top_c + (0.12 if shape is Shape.KN95 else -0.02)
        bot_c = vc + 0.18 + 0.5 * grow
        bot_side = 1.15
        pleats = (0.22, 0.45, 0.68)
        top_pow = max(top_pow, 1.3) if shape is not Shape.KN95 else top_pow
    else:
        top_c = 1.0 + (0.42 + 0.15 * fit) * (vc - 1.0)
        top_side = top_c - 0.10
        bot_c = vc + 0.16 + 0.3 * grow
        bot_side = top_side + 0.32
        pleats = (0.25, 0.5, 0.72)
        top_pow = max(top_pow, 1.5)
    theta_edge = math.radians(edge_deg * (1.0 + 0.5 * grow))
    sil = face.silhouette / theta_edge
    s_lo, s_hi = (-1.0, min(1.0, sil)) if face.yaw > 0 else (-min(1.0, sil), 1.0)
    return _Outline(theta_edge, s_lo, s_hi, top_c, top_side, bot_c, bot_side, top_pow, bot_pow,
                    bot_q, pleats)


# --------------------------------------------------------------------------------------------
# Drawing


def draw_mask(
    image: np.ndarray, keypoints: np.ndarray, style: MaskStyle, rng: np.random.Generator
) -> np.ndarray:
    """``image`` (RGB uint8, any size) with a mask drawn on the face whose BlazeFace keypoints
    (6 x 2, image pixels) are given; a new image, the input is not changed."""
    return draw_mask_with_coverage(image, keypoints, style, rng)[0]


def draw_mask_with_coverage(
    image: np.ndarray, keypoints: np.ndarray, style: MaskStyle, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`draw_mask`, also returning how much of each pixel the mask and its loops
    cover (float32, 0..1), e.g. to keep them opaque in a cut-out."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("draw_mask needs an RGB uint8 image (H x W x 3)")
    face = _Face.from_keypoints(keypoints)
    outline = _outline(face, style)
    h, w = image.shape[:2]
    out = image.copy()
    coverage = np.zeros((h, w), np.float32)
    if face.unit < 2.0:  # a face a few pixels high: no mask to speak of
        return out, coverage

    # The patch: the mask, the loops to the ears, and a margin for shadow and blur.
    boundary = outline.boundary()
    mask_pts = face.to_image(boundary[:, 0], boundary[:, 1])
    pts = [mask_pts]
    if style.ear_loops:
        pts.append(face.face_to_image(face.ears[:, 0], face.ears[:, 1] - 0.4))
        pts.append(face.face_to_image(face.ears[:, 0], face.ears[:, 1] + 0.45))
    pts_all = np.vstack(pts)
    margin = 0.2 * face.unit + 4
    x0 = max(int(math.floor(pts_all[:, 0].min() - margin)), 0)
    y0 = max(int(math.floor(pts_all[:, 1].min() - margin)), 0)
    x1 = min(int(math.ceil(pts_all[:, 0].max() + margin)), w)
    y1 = min(int(math.ceil(pts_all[:, 1].max() + margin)), h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return out, coverage
    patch = image[y0:y1, x0:x1].astype(np.float32) / 255.0
    ph, pw = patch.shape[:2]
    scene = _Scene.measure(image, patch, face, (x0, y0))

    # The fabric is rendered supersampled over its own bounding box only.
    edge = 0.03 * face.unit + 2
    fx0 = int(np.clip(math.floor(mask_pts[:, 0].min() - edge) - x0, 0, pw))
    fy0 = int(np.clip(math.floor(mask_pts[:, 1].min() - edge) - y0, 0, ph))
    fx1 = int(np.clip(math.ceil(mask_pts[:, 0].max() + edge) - x0, 0, pw))
    fy1 = int(np.clip(math.ceil(mask_pts[:, 1].max() + edge) - y0, 0, ph))
    fabric = np.zeros((ph, pw, 3), np.float32)
    alpha = np.zeros((ph, pw), np.float32)
    if fx1 - fx0 >= 1 and fy1 - fy0 >= 1:
        fh, fw = fy1 - fy0, fx1 - fx0
        ss = int(np.clip(SUPERSAMPLE_BUDGET // max(fh, fw), 2, SUPERSAMPLE))
        rgb_ss, alpha_ss = _render_fabric(
            face, outline, style, scene, (x0 + fx0, y0 + fy0),
            scene.luminance[fy0:fy1, fx0:fx1], ss,
        )
        # Down to image resolution, premultiplied so that the edges do not darken.
        fabric[fy0:fy1, fx0:fx1] = _downsample(rgb_ss * alpha_ss[:, :, None], (fw, fh))
        alpha[fy0:fy1, fx0:fx1] = _downsample(alpha_ss, (fw, fh))
    loop_ss = int(np.clip(SUPERSAMPLE_BUDGET // max(ph, pw), 2, SUPERSAMPLE))
    if style.ear_loops:
        loops = _render_loops(face, outline, style, (x0, y0), (ph, pw), loop_ss)
        loop_a = _downsample(loops, (pw, ph))
    else:
        loop_a = np.zeros_like(alpha)

    # The mask stands off the face: the skin just outside it is in its shadow.
    sigma = 0.05 * face.unit + 0.3
    shift = np.float32([[1, 0, face.unit * 0.02 * scene.light[0]],
                        [0, 1, face.unit * 0.05]])
    shadow = cv2.warpAffine(alpha, shift, (pw, ph))
    shadow = cv2.GaussianBlur(shadow, (0, 0), sigma) * (1.0 - alpha)
    shadow *= 0.35 * min(style.shading, 1.2)
    loop_shadow = cv2.GaussianBlur(loop_a, (0, 0), 0.03 * face.unit + 0.5) * 0.25

    # Match the photo's sharpness: the render itself is about as soft as a 0.4 px blur.
    extra = math.sqrt(max(scene.blur**2 - 0.4**2, 0.0)) * float(rng.uniform(0.85, 1.15))
    if extra > 0.15:
        fabric = cv2.GaussianBlur(fabric, (0, 0), extra)
        alpha = cv2.GaussianBlur(alpha, (0, 0), extra)
        loop_a = cv2.GaussianBlur(loop_a, (0, 0), extra)
    loop_rgb = scene.tint(_loop_colour(style)) * 0.92

    skin = patch * (1.0 - np.maximum(shadow, loop_shadow * (1 - loop_a)))[:, :, None]
    loop_a = loop_a * (1.0 - alpha)
    skin = skin * (1.0 - loop_a[:, :, None]) + loop_rgb * loop_a[:, :, None]
    result = skin * (1.0 - alpha[:, :, None]) + fabric
    cover = np.clip(np.maximum(alpha, loop_a), 0.0, 1.0)

    # Sensor noise at the photo's level, on the drawn pixels only (the rest keeps its own).
    # Mostly luminance noise, as soft as the photo (its noise went through the same blur).
    noise_sigma = scene.noise * float(rng.uniform(0.8, 1.2)) / 255.0
    if noise_sigma > 0:
        grain = rng.normal(0.0, 1.0, (ph, pw, 1)) + 0.4 * rng.normal(0.0, 1.0, (ph, pw, 3))
        grain = grain.astype(np.float32)
        if scene.blur > 0.5:
            grain = cv2.GaussianBlur(grain, (0, 0), 0.6 * scene.blur)
        grain *= noise_sigma / (float(grain.std()) + 1e-6)
        result = result + grain * cover[:, :, None]
    out[y0:y1, x0:x1] = np.clip(np.round(result * 255.0), 0, 255).astype(np.uint8)
    coverage[y0:y1, x0:x1] = cover
    return out, coverage


def _downsample(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if img.shape[1] == size[0] and img.shape[0] == size[1]:
        return img.astype(np.float32)
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def _loop_colour(style: MaskStyle) -> np.ndarray:
    if style.loop_colour is not None:
        return np.array(style.loop_colour, np.float32) / 255.0
    base = np.array(style.colour, np.float32) / 255.0
    if _luma(base) > 0.55:
        return np.clip(base * 0.3 + 0.7 * base.max(), 0, 1)  # a lighter, greyer version
    return base * 0.9


def _luma(rgb: np.ndarray) -> float:
    return float(rgb[0] * 0.299 + rgb[1] * 0.587 + rgb[2] * 0.114)


@dataclass(frozen=True)
class _Scene:
    """What the photo says about how the mask should look: exposure, white balance, lighting
    across the face, sharpness and noise."""

    exposure: float
    cast: np.ndarray  # (3,) white balance multiplier
    light: np.ndarray  # (3,) unit direction towards the light, face frame (u, v, towards camera)
    luminance: np.ndarray  # patch luminance, float32 0..1
    blur: float  # Gaussian sigma, px
    noise: float  # sigma, 0..255

    @classmethod
    def measure(
        cls, image: np.ndarray, patch: np.ndarray, face: _Face, offset: tuple[int, int]
    ) -> _Scene:
        step = max(1, max(image.shape[:2]) // 256)  # the photo's statistics, cheaply
        sample = image[::step, ::step]
        lum_img = cv2.cvtColor(sample, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        white = float(np.percentile(lum_img, 98))
        exposure = float(np.clip((white / 0.9) ** 0.8, 0.4, 1.05))
        bright = sample.reshape(-1, 3)[lum_img.reshape(-1) >= np.percentile(lum_img, 90)]
        mean = bright.astype(np.float32).mean(axis=0) + 1.0
        cast = np.clip((mean / mean.mean()) ** 0.4, 0.88, 1.12).astype(np.float32)

        lum = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)
        # Light direction from the brightness of the two cheeks, below the eyes.
        x0, y0 = offset
        ys, xs = np.mgrid[0 : lum.shape[0], 0 : lum.shape[1]].astype(np.float32)
        u, v = face.image_to_face(xs + x0, ys + y0)
        middle = np.interp(v, face.centre_v, face.centre_u)
        rel = u - middle
        cheeks = (v > 0.3) & (v < 1.0) & (np.abs(rel) > 0.15) & (np.abs(rel) < 0.75)
        left = lum[cheeks & (rel > 0)]
        right = lum[cheeks & (rel < 0)]
        lx = 0.0
        if left.size > 3 and right.size > 3:
            a, b = float(np.median(left)), float(np.median(right))
            lx = float(np.clip(2.0 * (a - b) / max(a + b, 1e-3), -0.5, 0.5))
        light = np.array([lx, -0.45, 1.0], np.float32)
        light /= np.linalg.norm(light)
        return cls(exposure, cast, light, lum, _estimate_blur(lum), _estimate_noise(lum))

    def tint(self, rgb: np.ndarray) -> np.ndarray:
        return np.clip(rgb * self.cast * self.exposure, 0.0, 1.0)


# Gradient ratio (sharp / re-blurred by 1.5 px, median over the strongest 2 % of edges) against
# the Gaussian blur that produced it, measured on drawn shapes rendered at 8x and area-averaged.
_BLUR_RATIO = np.array([2.006, 1.878, 1.732, 1.549, 1.409, 1.31, 1.221, 1.153, 1.111])
_BLUR_SIGMA = np.array([0.3, 0.5, 0.7, 1.0, 1.3, 1.6, 2.0, 2.5, 3.0])


def _estimate_blur(lum: np.ndarray) -> float:
    """Gaussian sigma (px) of the photo's blur, from how much its strongest edges soften when
    blurred again by a known amount: a sharp edge loses much of its slope, a soft one little."""
    if min(lum.shape) < 8:
        return 0.5

    def slope(img: np.ndarray) -> np.ndarray:
        gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
        return np.hypot(gx, gy)

    g0 = slope(lum)
    g1 = slope(cv2.GaussianBlur(lum, (0, 0), 1.5))
    strong = g0 >= max(float(np.percentile(g0, 98)), 1e-4)
    ratio = float(np.median(g0[strong] / (g1[strong] + 1e-6)))
    return float(np.interp(-ratio, -_BLUR_RATIO, _BLUR_SIGMA))


def _estimate_noise(lum: np.ndarray) -> float:
    """Noise sigma (0..255) from the median absolute high-pass residual: texture raises it a
    little, so it is scaled down and capped."""
    residual = lum - cv2.GaussianBlur(lum, (0, 0), 1.0)
    mad = float(np.median(np.abs(residual))) * 255.0
    return float(np.clip(1.4826 * mad * 0.9, 0.5, 5.0))


def _render_fabric(
    face: _Face,
    outline: _Outline,
    style: MaskStyle,
    scene: _Scene,
    offset: tuple[int, int],
    lum_small: np.ndarray,
    ss: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The mask's colour and coverage over the region of the photo at ``offset`` whose
    luminance is ``lum_small``, at ``ss`` times its resolution."""
    ph, pw = lum_small.shape
    H, W = ph * ss, pw * ss
    x0, y0 = offset
    xs = (np.arange(W, dtype=np.float32) + 0.5) / ss - 0.5 + x0
    ys = (np.arange(H, dtype=np.float32) + 0.5) / ss - 0.5 + y0
    gx, gy = np.meshgrid(xs, ys)
    u, v = face.image_to_face(gx, gy)
    u, v = u.astype(np.float32), v.astype(np.float32)
    theta, on_head = face.theta_of(u, v)
    s = theta / outline.theta_edge
    a = np.abs(s)
    top, bottom = outline.top(np.minimum(a, 1.0)), outline.bottom(np.minimum(a, 1.0))
    height = np.maximum(bottom - top, 1e-3)
    t = (v - top) / height
    tol = 1e-3  # the far side is cut exactly at the silhouette, where theta is clamped
    inside = on_head & (s >= outline.s_lo - tol) & (s <= outline.s_hi + tol)
    inside &= (t >= 0) & (t <= 1)
    alpha = inside.astype(np.float32)
    if not inside.any():
        return np.zeros((H, W, 3), np.float32), alpha

    px_per_unit = face.unit * ss  # supersampled pixels per unit of v
    # Distance to the mask's edge (for hems, seams and the shade where it meets the face).
    edge_px = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 3)
    edge = np.minimum(edge_px / px_per_unit, 10.0)

    rng = np.random.default_rng(style.seed)
    shade = np.ones((H, W), np.float32)
    k = style.shading

    # --- surface normal and Lambert shading
    w_at = face.width_at(v)
    d_at = DEPTH_RATIO * w_at
    nx, nz = d_at * np.sin(theta), w_at * np.cos(theta)
    if style.shape is Shape.KN95:
        # Two flat panels folded at the seam: each faces partly to its own side.
        nx = nx + 0.22 * np.tanh(theta / 0.06) * np.sqrt(nx**2 + nz**2)
    cy, sy = math.cos(face.yaw), math.sin(face.yaw)
    nx, nz = nx * cy + nz * sy, -nx * sy + nz * cy
    norm = np.sqrt(nx**2 + nz**2) + 1e-6
    nx, nz = nx / norm, nz / norm
    # Up and down the face (ny > 0 faces down): over the nose the fabric slopes up to the
    # bridge, below the nose tip it runs back towards the mouth, under the chin it turns in.
    wrap = _smoothstep(face.v_chin - 0.25, face.v_chin + 0.15, v)
    vn = face.v_nose
    if style.placement is Placement.CORRECT:
        ny = -0.45 * (1.0 - _smoothstep(vn - 0.1, vn + 0.1, v)) + 0.2 * _smoothstep(vn, 1.0, v)
    elif style.placement is Placement.UNDER_NOSE:
        ny = -0.2 * (1.0 - _smoothstep(outline.top_c, outline.top_c + 0.25, v)) + 0.1
    else:
        ny = np.full_like(v, 0.3)
    ny = ny * (1.0 - wrap) + 0.9 * wrap
    n = np.stack([nx, ny, nz], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    lam = np.clip(n @ scene.light, 0.0, 1.0)
    flat = max(float(scene.light[2]), 1e-3)
    geo = (0.4 + 0.6 * lam) / (0.4 + 0.6 * flat)
    shade *= 1.0 + k * (geo - 1.0)

    # --- pleats, seams, edges
    tv_shift = np.zeros((H, W), np.float32)
    if style.shape is Shape.PLEATED:
        pleats = list(outline.pleats)
        jitter = rng.uniform(-0.03, 0.03, len(pleats))
        for tk, jk in zip(pleats, jitter):
            # The crease dips in the middle less than at the sides: t fraction bends a little.
            d = (t - (tk + jk + 0.03 * (a**2 - 0.3))) * height  # in units of v
            wdt = 0.028
            dark = np.exp(-(((d - 0.6 * wdt) / wdt) ** 2)) * (d > -0.2 * wdt)
            lit = np.exp(-(((d + 1.6 * wdt) / (1.8 * wdt)) ** 2))
            depth = rng.uniform(0.2, 0.32)
            shade *= 1.0 - depth * k * dark
            shade *= 1.0 + 0.07 * k * lit
            tv_shift += (d > 0) * 0.09  # fabric tucked into the pleat
        # Bound edges: a denser band along top and bottom, and binding strips at the sides.
        band = (edge < 0.06).astype(np.float32)
        side_band = (a > 1.0 - 0.07 / max(outline.theta_edge, 0.1)) & inside
        shade *= 1.0 - 0.06 * k * np.maximum(band, side_band)
        shade *= 1.0 - 0.12 * k * np.exp(-(((edge - 0.06) / 0.01) ** 2))
        if style.placement is Placement.CORRECT:
            wire = np.exp(-(((v - outline.top_c - 0.05) / 0.025) ** 2)) * (a < 0.35)
            shade *= 1.0 + 0.08 * k * wire
    elif style.shape is Shape.KN95:
        seam = np.exp(-((theta / 0.018) ** 2))
        shade *= 1.0 - 0.25 * k * seam
        # Two panels: the one turned towards the light is the brighter.
        side = float(np.sign(scene.light[0])) or (1.0 if rng.random() < 0.5 else -1.0)
        shade *= 1.0 + 0.05 * k * np.tanh(theta / 0.05) * side
        weld = np.exp(-(((edge - 0.055) / 0.008) ** 2))
        shade *= 1.0 - 0.18 * k * weld
        if style.placement is Placement.CORRECT:
            wire = np.exp(-(((v - outline.top_c - 0.06) / 0.02) ** 2)) * (a < 0.3)
            shade *= 1.0 + 0.06 * k * wire
    else:  # cloth: a curved centre seam, stitching near the edge, soft drape folds
        seam = np.exp(-((theta / 0.015) ** 2))
        shade *= 1.0 - 0.18 * k * seam
        stitch = np.exp(-(((edge - 0.05) / 0.007) ** 2))
        dashes = 0.5 + 0.5 * np.sign(np.sin((theta * 3.0 + v) * 70.0))
        shade *= 1.0 - 0.14 * k * stitch * dashes
        folds = np.sin(theta * 5.0 + rng.uniform(0, 2 * np.pi)) * np.sin(v * 4.0)
        shade *= 1.0 + 0.035 * k * folds

    if style.placement is Placement.CORRECT:
        # The nose pushes the fabric out: a lit bump on it, and the fabric spanning from the
        # nose to the cheeks leaves a soft hollow on either side below it.
        dv = v - face.v_nose
        shade *= 1.0 + 0.07 * k * np.exp(-((theta / 0.3) ** 2 + (dv / 0.22) ** 2))
        hollow = np.exp(-(((np.abs(theta) - 0.4 - 0.35 * np.clip(dv, 0, None)) / 0.16) ** 2))
        hollow *= _smoothstep(-0.1, 0.1, dv) * (1 - _smoothstep(0.3, 0.6, dv))
        shade *= 1.0 - 0.07 * k * hollow
    else:
        # A mask pulled down is rumpled: a few soft horizontal wrinkles.
        for _ in range(3):
            tk = rng.uniform(0.15, 0.85)
            d = (t - tk - 0.05 * np.sin(theta * rng.uniform(2, 5))) * height
            shade *= 1.0 - 0.12 * k * np.exp(-((d / 0.04) ** 2))

    # The fabric darkens where it turns in to meet the face.
    shade *= 1.0 - 0.15 * np.exp(-edge / 0.035)

    # --- texture, on the surface: arc length across, v down (plus what pleats tuck away)
    arc = _arc_length(theta, face.half_width)
    tu, tv = arc, v + tv_shift
    colour = _texture(style, tu, tv, inside, px_per_unit, rng)

    grain = rng.normal(0.0, 1.0, (H, W)).astype(np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), max(0.5, 0.4 * ss))
    amount = 0.025 if style.shape is Shape.FLAT else 0.018
    shade *= 1.0 + amount * grain / (grain.std() + 1e-6)

    # --- the photo's own lighting across the face, gently
    weight = cv2.resize(alpha, (pw, ph), interpolation=cv2.INTER_AREA)
    sigma = 0.3 * face.unit + 0.5
    num = cv2.GaussianBlur(lum_small * weight, (0, 0), sigma)
    den = cv2.GaussianBlur(weight, (0, 0), sigma) + 1e-4
    local = num / den
    ref = float(np.sum(local * weight) / max(weight.sum(), 1e-6))
    mod = np.clip((local / max(ref, 1e-3)) ** 0.85, 0.45, 1.35).astype(np.float32)
    mod = cv2.resize(mod, (W, H), interpolation=cv2.INTER_LINEAR)

    # Fabric scatters some light whatever its dye (black masks photograph dark grey), and a
    # photo mutes saturated dyes a little.
    colour = colour * 0.92 + 0.06
    luma = colour @ np.array([0.299, 0.587, 0.114], np.float32)
    colour = 0.9 * colour + 0.1 * luma[:, :, None]
    rgb = colour * (shade * mod)[:, :, None]
    rgb = scene.tint(rgb)
    return rgb.astype(np.float32), alpha


def _render_loops(
    face: _Face, outline: _Outline, style: MaskStyle, offset: tuple[int, int],
    size: tuple[int, int], ss: int,
) -> np.ndarray:
    """Ear loops: elastic from the mask's corners round the ears; the ear on the side turned
    away is hidden behind the head, and so is its loop."""
    ph, pw = size
    canvas = np.zeros((ph * ss, pw * ss), np.uint8)
    curves = []
    for side, ear in ((-1, face.ears[0]), (1, face.ears[1])):
        far = side * face.yaw > math.radians(18)
        if far:
            continue
        s_edge = outline.s_lo if side < 0 else outline.s_hi
        th = s_edge * outline.theta_edge
        a = abs(s_edge)
        v_top = float(outline.top(np.array(a))) + 0.04
        v_bot = float(outline.bottom(np.array(a))) - 0.05
        start_top = face.to_image(th, v_top)
        start_bot = face.to_image(th, v_bot)
        out_u = ear[0] + side * 0.08
        end_top = face.face_to_image(out_u, ear[1] - 0.28)
        end_bot = face.face_to_image(out_u - side * 0.02, ear[1] + 0.38)
        # Bend outwards: the elastic runs along the cheek, then over / under the ear.
        mid_top = face.face_to_image(0.5 * (ear[0] + float(face.image_to_face(*start_top)[0]))
                                     + side * 0.05, ear[1] - 0.22)
        mid_bot = face.face_to_image(0.5 * (ear[0] + float(face.image_to_face(*start_bot)[0]))
                                     + side * 0.1, ear[1] + 0.3)
        curves.append(_quadratic(start_top, mid_top, end_top))
        curves.append(_quadratic(start_bot, mid_bot, end_bot))
    if not curves:
        return canvas.astype(np.float32)
    thick = max(1, int(round(0.028 * face.unit * ss)))
    x0, y0 = offset
    shifted = [(c - (x0, y0) + 0.5) * ss - 0.5 for c in curves]
    cv2.polylines(canvas, [_fixed(c) for c in shifted], False, 255, thick, cv2.LINE_AA, shift=4)
    return canvas.astype(np.float32) / 255.0


def _arc_length(theta: np.ndarray, half_width: float) -> np.ndarray:
    """Arc length along the elliptic section from theta = 0, in units of v."""
    grid = np.linspace(-math.pi / 2, math.pi / 2, 361)
    speed = half_width * np.sqrt(np.cos(grid) ** 2 + (DEPTH_RATIO * np.sin(grid)) ** 2)
    cum = np.concatenate([[0.0], np.cumsum((speed[1:] + speed[:-1]) / 2 * np.diff(grid))])
    cum -= np.interp(0.0, grid, cum)
    return np.interp(theta, grid, cum).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Textures


def _texture(
    style: MaskStyle,
    tu: np.ndarray,
    tv: np.ndarray,
    inside: np.ndarray,
    px_per_unit: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """The fabric's colour (H x W x 3, 0..1) at surface coordinates (tu, tv)."""
    base = np.array(style.colour, np.float32) / 255.0
    if style.pattern == "plain":
        return np.broadcast_to(base, tu.shape + (3,)).copy()
    angle = math.radians(style.pattern_angle)
    ca, sa = math.cos(angle), math.sin(angle)
    pu = (ca * tu + sa * tv).astype(np.float32)
    pv = (-sa * tu + ca * tv).astype(np.float32)
    sel_u, sel_v = pu[inside], pv[inside]
    pad = 0.1
    u0, u1 = float(sel_u.min()) - pad, float(sel_u.max()) + pad
    v0, v1 = float(sel_v.min()) - pad, float(sel_v.max()) + pad
    res = px_per_unit
    longest = max(u1 - u0, v1 - v0) * res
    if longest > 1400:
        res *= 1400 / longest
    tw, th = max(2, int(math.ceil((u1 - u0) * res))), max(2, int(math.ceil((v1 - v0) * res)))
    colours = [np.array(c, np.float32) / 255.0 for c in style.pattern_colours] or [base * 0.8]
    tex = PATTERNS[style.pattern](
        _TextureCanvas(tw, th, u0, v0, res, style.pattern_scale), base, colours, rng
    )
    map_x = ((pu - u0) * res - 0.5).astype(np.float32)
    map_y = ((pv - v0) * res - 0.5).astype(np.float32)
    return cv2.remap(tex.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)


@dataclass(frozen=True)
class _TextureCanvas:
    """A texture image covering pattern coordinates [u0, u0 + w / res) x [v0, v0 + h / res)."""

    w: int
    h: int
    u0: float
    v0: float
    res: float  # texels per unit
    period: float  # pattern period, units

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        u = self.u0 + (np.arange(self.w, dtype=np.float32) + 0.5) / self.res
        v = self.v0 + (np.arange(self.h, dtype=np.float32) + 0.5) / self.res
        return np.meshgrid(u, v)

    def fill(self, colour: np.ndarray) -> np.ndarray:
        return np.broadcast_to(colour, (self.h, self.w, 3)).astype(np.float32).copy()

    def px(self, u: float, v: float) -> tuple[float, float]:
        return (u - self.u0) * self.res, (v - self.v0) * self.res

    def grid_points(self, spacing: float, rng: np.random.Generator, jitter: float,
                    stagger: bool = True) -> list[tuple[float, float]]:
        """Centres of a (jittered, staggered) grid covering the canvas, in texels."""
        pts = []
        i0 = math.floor(self.v0 / spacing) - 1
        i1 = math.ceil((self.v0 + self.h / self.res) / spacing) + 1
        j0 = math.floor(self.u0 / spacing) - 1
        j1 = math.ceil((self.u0 + self.w / self.res) / spacing) + 1
        for i in range(i0, i1):
            off = 0.5 * spacing if (stagger and i % 2) else 0.0
            for j in range(j0, j1):
                du, dv = rng.uniform(-jitter, jitter, 2) * spacing
                pts.append(self.px(j * spacing + off + du, i * spacing + dv))
        return pts


def _mix(a: np.ndarray, colour: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return a * (1 - weight[..., None]) + colour * weight[..., None]


def _soft_step(x: np.ndarray, edge: float, width: float) -> np.ndarray:
    return np.clip((x - edge) / max(width, 1e-6) + 0.5, 0.0, 1.0).astype(np.float32)


def _p_heather(c: _TextureCanvas, base, colours, rng) -> np.ndarray:
    """Heathered (melange) knit: streaky fibre noise in lighter and darker tones of the colour."""
    noise = rng.normal(0, 1, (c.h, c.w)).astype(np.float32)
    streak = max(1.0, c.period * c.res)
    noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=streak, sigmaY=max(0.6, streak * 0.2))
    noise /= noise.std() + 1e-6
    tone = np.clip(1.0 + 0.09 * noise, 0.75, 1.25)
    tex = c.fill(base) * tone[..., None]
    if colours:
        fleck = _soft_step(noise, 1.6, 0.3)
        tex = _mix(tex, colours[0], 0.5 * fleck)
    return np.clip(tex, 0, 1)


def _band(phase: np.ndarray, duty: float, texels: float) -> np.ndarray:
    """Anti-aliased 0..1 band over phase [0, duty) of a period ``texels`` texels long."""
    inside = phase < duty
    dist = np.where(inside, np.minimum(phase, duty - phase), -np.minimum(phase - duty, 1 - phase))
    return np.clip(dist * texels + 0.5, 0.0, 1.0).astype(np.float32)


def _bands_in_turn(
    tex: np.ndarray, colours: list[np.ndarray], band: np.ndarray, index: np.ndarray
) -> np.ndarray:
    """``band`` painted over ``tex``, band number n in colours[n % len(colours)]."""
    for i, col in enumerate(colours):
        tex = _mix(tex, col, band * (index == i))
    return tex


def _p_stripes(c: _TextureCanvas, base, colours, rng) -> np.ndarray:
    u, _ = c.coords()
    phase = (u / c.period) % 1.0
    stripe = _band(phase, rng.uniform(0.3, 0.6), c.period * c.res)
    index = np.floor(u / c.period).astype(np.int64) % len(colours)
    return _bands_in_turn(c.fill(base), colours, stripe, index)


def _p_dots(c: _TextureCanvas, base, colours, rng) -> np.ndarray:
    canvas = (c.fill(base) * 255).astype(np.uint8)
    radius = rng.uniform(0.18, 0.32) * c.period * c.res
    for i, (x, y) in enumerate(c.grid_points(c.period, rng, 0.0)):
        col = colours[i % len(colours)] * 255
        _circle(canvas, (x, y), radius, col)
    return canvas.astype(np.float32) / 255.0


def _p_checks(c: _TextureCanvas, base, colours, rng) -> np.ndarray:
    """Gingham / buffalo check: two crossing sets of half-transparent bands."""
    u, v = c.coords()
    texels = c.period * c.res
    bu = _band((u / c.period) % 1.0, 0.5, texels)
    bv = _band((v / c.period) % 1.0, 0.5, texels)
    col = colours[0]
    tex = c.fill(base)
    tex = _mix(tex, col, 0.5 * bu)
    tex = _mix(tex, col, 0.5 * bv)
    tex = _mix(tex, col, bu * bv)
    if len(colours) > 1:  # a thin overcheck line
        line = _band((u / c.period + 0.27) % 1.0, 0.06, texels)
        tex = _mix(tex, colours[1], 0.8 * line)
    return tex


def _p_chevron(c: _TextureCanvas, base, colours, rng) -> np.ndarray:
    u, v = c.coords()
    zig = np.abs((u / c.period) % 1.0 - 0.5) * c.period * rng.uniform(0.6, 1.0)
    phase = ((v + zig) / (0.6 * c.period)) % 1.0
    band = _band(phase, 0.5, 0.6 * c.period * c.res)
    index = np.floor((v + zig) / (0.6 * c.period)).astype(np.int64) % len(colours)
    return _bands_in_turn(c.fill(base), colours, band, index)


def _p_floral(c: _TextureCanvas, base, colours, rng) -> np.ndarray:
    """Small flowers: petals round a centre, a leaf or two, scattered on a jittered grid."""
    canvas = (c.fill(base) * 255).astype(np.uint8)
    size = c.period * c.res
    leaf = np.array([70, 130, 60], np.float32) if len(colours) < 3 else colours[2] * 255
    for i, (x, y) in enumerate(c.grid_points(c.period, rng, 0.3)):
        r = size * rng.uniform(0.13, 0.22)
        rot = rng.uniform(0, 360)
        for j in range(2 if rng.random() < 0.6 else 1):
            ang = math.radians(rot + 140 * j + rng.uniform(-20, 20))
            lx, ly = x + 1.6 * r * math.cos(ang), y + 1.6 * r * math.sin(ang)
            _ellipse(canvas, (lx, ly), (r * 0.9, r * 0.38), math.degrees(ang), leaf)
        petal = colours[i % len(colours)] * 255
        n_petals = int(rng.integers(5, 7))
        for p in range(n_petals):
            ang = math.radians(rot + 360 * p / n_petals)
            _ellipse(canvas, (x + 0.6 * r * math.cos(ang), y + 0.6 * r * math.sin(ang)),
                     (r * 0.62, r * 0.4), math.degrees(ang), petal)
        centre = colours[(i + 1) % len(colours)] * 255 if len(colours) > 1 else base * 255 * 0.6
        _circle(canvas, (x, y), r * 0.3, centre)
    return canvas.astype(np.float32) / 255.0


def _p_paisley(c: _TextureCanvas, base, colours, rng) -> np.ndarray:
    """Paisley-like teardrops with a curled tail, an inner outline and a ring of dots."""
    canvas = (c.fill(base) * 255).astype(np.uint8)
    size = c.period * c.res
    ts = np.linspace(0, 2 * math.pi, 40)
    for i, (x, y) in enumerate(c.grid_points(c.period, rng, 0.2)):
        r = size * rng.uniform(0.22, 0.3)
        rot = rng.uniform(0, 2 * math.pi)
        # Teardrop: a circle whose far side is drawn out into a bent tail.
        rr = r * (1 + 0.9 * np.clip(np.cos(ts), 0, 1) ** 3)
        bend = 0.5 * np.clip(np.cos(ts), 0, 1) ** 3 * r
        px = rr * np.cos(ts)
        py = rr * np.sin(ts) * 0.75 + bend
        cr, sr = math.cos(rot), math.sin(rot)
        poly = np.stack([x + cr * px - sr * py, y + sr * px + cr * py], 1)
        col = colours[i % len(colours)] * 255
        cv2.fillPoly(canvas, [_fixed(poly)], col.tolist(), cv2.LINE_AA, shift=4)
        inner = np.stack([x + 0.55 * (cr * px - sr * py), y + 0.55 * (sr * px + cr * py)], 1)
        line = base * 255 if len(colours) < 2 else colours[(i + 1) % len(colours)] * 255
        cv2.polylines(canvas, [_fixed(inner)], True, line.tolist(), max(1, int(r * 0.08)),
                      cv2.LINE_AA, shift=4)
        _circle(canvas, (x, y), r * 0.15, line)
        for q in range(8):
            ang = rot + math.pi / 2 + q * math.pi / 8
            _circle(canvas, (x + 1.25 * r * math.cos(ang), y + 1.25 * r * math.sin(ang)),
                    r * 0.06, col)
    return canvas.astype(np.float32) / 255.0


def _smooth_noise(c: _TextureCanvas, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Smooth random field (zero mean, unit std) with features about ``scale`` units big."""
    cells = max(2.0, scale * c.res / 2)
    gh, gw = int(c.h / cells) + 3, int(c.w / cells) + 3
    coarse = rng.normal(0, 1, (gh, gw)).astype(np.float32)
    field = cv2.resize(coarse, (int(gw * cells), int(gh * cells)), interpolation=cv2.INTER_CUBIC)
    field = cv2.GaussianBlur(field[: c.h, : c.w], (0, 0), cells * 0.4)
    return (field - field.mean()) / (field.std() + 1e-6)


def _p_camo(c: _TextureCanvas, base, colours, rng) -> np.ndarray:
    tex = c.fill(base)
    soft = 1.0 / (c.period * c.res) * 3
    for i, col in enumerate(colours[:3]):
        field = _smooth_noise(c, rng, c.period) + 0.35 * _smooth_noise(c, rng, c.period * 0.4)
        tex = _mix(tex, col, _soft_step(field, 0.45 + 0.1 * i, soft))
    return tex


def _p_tiedye(c: _TextureCanvas, base, colours, rng) -> np.ndarray:
    """Tie-dye spiral: soft rings twisted round a centre, bleeding into each other."""
    u, v = c.coords()
    cu = c.u0 + c.w / c.res * rng.uniform(0.3, 0.7)
    cv_ = c.v0 + c.h / c.res * rng.uniform(0.3, 0.7)
    r = np.hypot(u - cu, v - cv_)
    ang = np.arctan2(v - cv_, u - cu)
    wobble = 0.08 * _smooth_noise(c, rng, c.period * 0.3)
    phase = (r / (c.period * 0.35) + ang / (2 * math.pi) * rng.choice([-3, 3]) + wobble) % 1.0
    tex = c.fill(base)
    n = len(colours)
    for i, col in enumerate(colours):
        centre = (i + 0.5) / (n + 1)
        weight = np.clip(1 - np.abs(phase - centre) * (n + 1) * 1.4, 0, 1) ** 0.7
        tex = _mix(tex, col, weight.astype(np.float32))
    return cv2.GaussianBlur(tex, (0, 0), max(0.5, 0.02 * c.period * c.res))


_WORDS = ["LOVE", "SMILE", "STAY SAFE", "HELLO", "GOOD VIBES", "CITY", "SPORT", "ART", "JOY",
          "NYC", "TEAM", "HOME"]


def _p_print(c: _TextureCanvas, base, colours, rng) -> np.ndarray:
    """Printed text and small marks in rows, as on novelty and brand cloth masks."""
    canvas = (c.fill(base) * 255).astype(np.uint8)
    size = c.period * c.res
    font = [cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX,
            cv2.FONT_HERSHEY_SCRIPT_SIMPLEX][int(rng.integers(4))]
    scale = size * 0.35 / 22.0
    thick = max(1, int(round(scale * 2)))
    y = -size * 0.3
    row = 0
    while y < c.h + size:
        x = -rng.uniform(0, size * 2)
        while x < c.w + size:
            word = str(rng.choice(_WORDS))
            col = (colours[(row + int(x)) % len(colours)] * 255).tolist()
            cv2.putText(canvas, word, (int(x), int(y)), font, scale, col, thick, cv2.LINE_AA)
            (tw, _), _ = cv2.getTextSize(word, font, scale, thick)
            x += tw + size * rng.uniform(0.3, 0.6)
            if rng.random() < 0.4:
                _star(canvas, (x - size * 0.2, y - size * 0.12), size * 0.1, col)
        y += size * 0.55
        row += 1
    return canvas.astype(np.float32) / 255.0


def _p_logo(c: _TextureCanvas, base, colours, rng) -> np.ndarray:
    """Monogram print: small emblems (ringed letters, diamonds, four-point stars) on a
    diagonal grid, as on designer masks."""
    canvas = (c.fill(base) * 255).astype(np.uint8)
    size = c.period * c.res
    letters = "".join(rng.choice(list(string.ascii_uppercase), 2))
    font = cv2.FONT_HERSHEY_TRIPLEX
    scale = size * 0.26 / 22.0
    thick = max(1, int(round(scale * 1.5)))
    for i, (x, y) in enumerate(c.grid_points(0.6 * c.period, rng, 0.0)):
        col = (colours[i % len(colours)] * 255).tolist()
        kind = (i + (int(y / max(size, 1)) % 3)) % 3
        if kind == 0:
            (tw, th), _ = cv2.getTextSize(letters, font, scale, thick)
            cv2.putText(canvas, letters, (int(x - tw / 2), int(y + th / 2)), font, scale, col,
                        thick, cv2.LINE_AA)
            cv2.circle(canvas, (int(x), int(y)), int(max(tw, th) * 0.8), col, thick, cv2.LINE_AA)
        elif kind == 1:
            r = size * 0.16
            poly = np.array([[x, y - r], [x + r * 0.7, y], [x, y + r], [x - r * 0.7, y]])
            cv2.fillPoly(canvas, [_fixed(poly)], col, cv2.LINE_AA, shift=4)
        else:
            _star(canvas, (x, y), size * 0.16, col, points=4)
    return canvas.astype(np.float32) / 255.0


def _circle(canvas: np.ndarray, centre: tuple[float, float], radius: float, colour) -> None:
    cv2.circle(canvas, (int(round(centre[0] * 16)), int(round(centre[1] * 16))),
               max(1, int(round(radius * 16))), np.asarray(colour).tolist(), -1, cv2.LINE_AA,
               shift=4)


def _ellipse(canvas: np.ndarray, centre, axes, angle: float, colour) -> None:
    cv2.ellipse(canvas, (int(round(centre[0] * 16)), int(round(centre[1] * 16))),
                (max(1, int(round(axes[0] * 16))), max(1, int(round(axes[1] * 16)))), angle, 0,
                360, np.asarray(colour).tolist(), -1, cv2.LINE_AA, shift=4)


def _star(canvas: np.ndarray, centre, radius: float, colour, points: int = 5) -> None:
    angles = np.arange(2 * points) * math.pi / points - math.pi / 2
    radii = np.where(np.arange(2 * points) % 2 == 0, radius, radius * 0.42)
    poly = np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], 1)
    cv2.fillPoly(canvas, [_fixed(poly)], np.asarray(colour).tolist(), cv2.LINE_AA, shift=4)


PATTERNS: dict[str, Callable[..., np.ndarray] | None] = {
    "plain": None,
    "stripes": _p_stripes,
    "dots": _p_dots,
    "floral": _p_floral,
    "camo": _p_camo,
    "print": _p_print,
    "heather": _p_heather,
    "checks": _p_checks,
    "chevron": _p_chevron,
    "paisley": _p_paisley,
    "logo": _p_logo,
    "tiedye": _p_tiedye,
}


# --------------------------------------------------------------------------------------------
# Small geometry helpers (also the demo's)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((np.asarray(x, np.float32) - e0) / max(e1 - e0, 1e-6), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _quadratic(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int = 24) -> np.ndarray:
    s = np.linspace(0, 1, n)[:, None]
    return (1 - s) ** 2 * p0 + 2 * (1 - s) * s * p1 + s**2 * p2


def _fixed(points: np.ndarray) -> np.ndarray:
    """Sub-pixel coordinates for OpenCV drawing (``shift=4``): 1/16 px keeps thin lines smooth."""
    return np.round(np.asarray(points, np.float64) * 16).astype(np.int32).reshape(-1, 1, 2)
