"""BlazeFace detector: anchors, view planning (coverage proof), weighted NMS, and the real model
on the demo photo pasted into a frame at many sizes and positions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from maskwatch.config import PathsConfig
from maskwatch.types import Face
from maskwatch.vision.face_detector import (
    FULL_RANGE_MODEL,
    MIN_FACE_IN_INPUT,
    SMALL_BOX_RATIO,
    FaceDetector,
    View,
    box_iou,
    plan_views,
    ssd_anchors,
    weighted_nms,
    without_parts,
)

from conftest import require_data

FRAME_W, FRAME_H = 1280, 720
INPUT = 192  # full-range BlazeFace input size
# _not_cut_by_tile drops boxes within this many pixels of a tile edge inside the frame.
TILE_EDGE_MARGIN = 2.0


# ---------------------------------------------------------------------------- anchors


def test_full_range_anchors() -> None:
    anchors = ssd_anchors(192, 192, [4], 1)
    assert anchors.shape == (2304, 2)
    assert anchors.dtype == np.float32
    grid = 48
    # Row-major: x runs fastest.
    assert anchors[0] == pytest.approx([0.5 / grid, 0.5 / grid])
    assert anchors[1] == pytest.approx([1.5 / grid, 0.5 / grid])
    assert anchors[grid] == pytest.approx([0.5 / grid, 1.5 / grid])
    assert anchors[-1] == pytest.approx([(grid - 0.5) / grid, (grid - 0.5) / grid])
    gy, gx = np.divmod(np.arange(2304), grid)
    np.testing.assert_allclose(anchors[:, 0], (gx + 0.5) / grid, atol=1e-6)
    np.testing.assert_allclose(anchors[:, 1], (gy + 0.5) / grid, atol=1e-6)


def test_short_range_anchors() -> None:
    anchors = ssd_anchors(128, 128, [8, 16, 16, 16], 2)
    assert anchors.shape == (896, 2)
    # Stride 8: a 16x16 grid, two anchors per cell.
    fine = anchors[:512].reshape(16, 16, 2, 2)
    assert np.all(fine[:, :, 0] == fine[:, :, 1])
    gy, gx = np.mgrid[0:16, 0:16]
    np.testing.assert_allclose(fine[:, :, 0, 0], (gx + 0.5) / 16, atol=1e-6)
    np.testing.assert_allclose(fine[:, :, 0, 1], (gy + 0.5) / 16, atol=1e-6)
    # Three stride-16 layers share one 8x8 grid: six anchors per cell.
    coarse = anchors[512:].reshape(8, 8, 6, 2)
    assert np.all(coarse == coarse[:, :, :1])
    gy, gx = np.mgrid[0:8, 0:8]
    np.testing.assert_allclose(coarse[:, :, 0, 0], (gx + 0.5) / 8, atol=1e-6)
    np.testing.assert_allclose(coarse[:, :, 0, 1], (gy + 0.5) / 8, atol=1e-6)


# ------------------------------------------------------------------------- plan_views


def uncovered(
    width: int, height: int, min_face: int, max_face: int, step: int = 1, width_step: int = 1
) -> tuple[int, int, list]:
    """Count square face boxes (widths min_face..max_face, top-left corners on a grid of
    ``step`` px plus the last position, all inside the frame) not wholly inside a view that
    shows them at >= MIN_FACE_IN_INPUT model pixels.

    Returns (boxes checked, boxes not covered, a few uncovered (w, x, y) examples)."""
    views = plan_views(width, height, min_face, INPUT)
    checked = missed = 0
    examples: list[tuple[int, int, int]] = []
    for w in range(min_face, max_face + 1, width_step):
        nx, ny = width - w + 1, height - w + 1  # positions 0..nx-1
        if nx <= 0 or ny <= 0:
            break
        xs = np.unique(np.append(np.arange(0, nx, step), nx - 1))
        ys = np.unique(np.append(np.arange(0, ny, step), ny - 1))
        covered = np.zeros((len(ys), len(xs)), bool)
        for view in views:
            if w * view.scale < MIN_FACE_IN_INPUT:
                continue
            if view.whole_frame:
                covered[:] = True
                break
            # Face [x, x+w) must keep clear of the tile edges that lie inside the frame.
            inner = TILE_EDGE_MARGIN + 1e-9
            lo_x = view.x + inner if view.x > 0 else 0
            hi_x = view.x + view.width - inner - w if view.x + view.width < width else nx
            lo_y = view.y + inner if view.y > 0 else 0
            hi_y = view.y + view.height - inner - w if view.y + view.height < height else ny
            i0, i1 = np.searchsorted(xs, lo_x, "left"), np.searchsorted(xs, hi_x, "right")
            j0, j1 = np.searchsorted(ys, lo_y, "left"), np.searchsorted(ys, hi_y, "right")
            covered[j0:j1, i0:i1] = True
        checked += covered.size
        missed += int((~covered).sum())
        if not covered.all() and len(examples) < 3:
            j, i = np.argwhere(~covered)[0]
            examples.append((w, int(xs[i]), int(ys[j])))
    return checked, missed, examples


def test_plan_views_1280x720_covers_every_face_40_to_400() -> None:
    views = plan_views(FRAME_W, FRAME_H, 40, INPUT)
    assert views[0] == View(0, 0, FRAME_W, FRAME_W, INPUT / FRAME_W, True)
    tiles = [v for v in views if not v.whole_frame]
    assert tiles, "a 40 px face needs tiles at 1280x720"
    for v in tiles:
        assert v.width == v.height and v.input_shape() == (INPUT, INPUT)
        assert 40 * v.scale >= MIN_FACE_IN_INPUT
        assert 0 <= v.x and v.x + v.width <= FRAME_W and 0 <= v.y and v.y + v.height <= FRAME_H
    checked, missed, examples = uncovered(FRAME_W, FRAME_H, 40, 400)
    assert checked > 100_000_000  # every integer position of every width 40..400
    assert missed == 0, f"{missed}/{checked} boxes not covered, e.g. (w, x, y) {examples}"


@pytest.mark.parametrize(
    "width, height, min_face, max_face, step, width_step",
    [
        (640, 480, 20, 300, 1, 1),
        (1920, 1080, 40, 400, 2, 1),
        (1280, 720, 16, 300, 2, 1),
        # Large frames with small faces need intermediate tile sizes: with tiles of one size
        # only, the overlap cap (half a tile) left faces straddling tile edges undetected.
        (1920, 1080, 16, 200, 2, 3),
        (3840, 2160, 40, 400, 5, 3),
    ],
)
def test_plan_views_coverage_other_frames(
    width: int, height: int, min_face: int, max_face: int, step: int, width_step: int
) -> None:
    checked, missed, examples = uncovered(width, height, min_face, max_face, step, width_step)
    assert missed == 0, f"{missed}/{checked} boxes not covered, e.g. (w, x, y) {examples}"


def test_plan_views_whole_frame_only_when_it_suffices() -> None:
    # 1280 / 192 * 14 = 93.3 px: a 100 px minimum face needs no tiles.
    assert plan_views(FRAME_W, FRAME_H, 100, INPUT) == [
        View(0, 0, FRAME_W, FRAME_W, INPUT / FRAME_W, True)
    ]
    assert len(plan_views(FRAME_W, FRAME_H, 40, INPUT)) > 1


def test_plan_views_tiles_span_the_frame() -> None:
    views = plan_views(FRAME_W, FRAME_H, 40, INPUT)
    tiles = [v for v in views if not v.whole_frame]
    assert min(v.x for v in tiles) == 0 and max(v.x + v.width for v in tiles) == FRAME_W
    assert min(v.y for v in tiles) == 0 and max(v.y + v.height for v in tiles) == FRAME_H


# ------------------------------------------------------------------------------- NMS


def test_box_iou() -> None:
    box = np.array([0.0, 0.0, 10.0, 10.0])
    others = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], float)
    np.testing.assert_allclose(box_iou(box, others), [1.0, 50 / 150, 0.0])


def test_weighted_nms_merges_overlaps_by_score_and_keeps_separate_boxes() -> None:
    boxes = np.array(
        [
            [100, 100, 200, 200],  # best of the first group
            [110, 104, 210, 204],  # overlaps the first (IoU ~0.78)
            [500, 300, 560, 360],  # on its own
            [96, 100, 196, 200],  # overlaps the first, lowest score
        ],
        float,
    )
    scores = np.array([0.9, 0.6, 0.8, 0.3])
    kps = np.stack([np.full((6, 2), float(i)) for i in range(4)])
    merged = weighted_nms(boxes, scores, kps, iou_threshold=0.3)
    assert len(merged) == 2
    (box_a, score_a, kps_a), (box_b, score_b, kps_b) = merged
    weights = np.array([0.9, 0.6, 0.3])
    group = boxes[[0, 1, 3]]
    np.testing.assert_allclose(box_a, (group * weights[:, None]).sum(0) / weights.sum())
    assert score_a == pytest.approx(0.9)
    np.testing.assert_allclose(kps_a, np.full((6, 2), (0 * 0.9 + 1 * 0.6 + 3 * 0.3) / 1.8))
    np.testing.assert_allclose(box_b, boxes[2])
    assert score_b == pytest.approx(0.8)
    np.testing.assert_allclose(kps_b, kps[2])


def test_weighted_nms_keeps_boxes_overlapping_at_or_below_threshold() -> None:
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], float)  # IoU 1/3
    kps = np.zeros((2, 6, 2))
    assert len(weighted_nms(boxes, np.array([0.9, 0.8]), kps, iou_threshold=0.4)) == 2
    assert len(weighted_nms(boxes, np.array([0.9, 0.8]), kps, iou_threshold=0.3)) == 1


def test_weighted_nms_empty() -> None:
    assert weighted_nms(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 6, 2)), 0.3) == []


# ------------------------------------------------------------------------ real model

MODELS = PathsConfig().models()
PHOTO = MODELS / "demo" / "astronaut.png"
needs_models = pytest.mark.skipif(
    not (MODELS / FULL_RANGE_MODEL).is_file() or not PHOTO.is_file(), reason="run maskwatch setup"
)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(MODELS, min_face=40)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    bgr = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
    assert bgr is not None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # the detector wants RGB


@pytest.fixture(scope="module")
def reference(detector: FaceDetector, photo: np.ndarray) -> Face:
    """The astronaut's face as the detector sees it in the photo itself."""
    faces = detector.detect(photo)
    assert len(faces) == 1
    face = faces[0]
    assert 60 < face.width < 200 and face.score > 0.8
    return face


def grey_canvas() -> np.ndarray:
    return np.full((FRAME_H, FRAME_W, 3), 128, np.uint8)


def paste_face(
    canvas: np.ndarray, photo: np.ndarray, ref: Face, width: float, cx: float, cy: float
) -> np.ndarray:
    """Paste the photo around its face, scaled to a face ``width`` centred at (cx, cy); returns
    the expected face box."""
    x1, y1, x2, y2 = ref.box
    margin = 0.6 * ref.width
    px1, py1 = int(max(x1 - margin, 0)), int(max(y1 - margin, 0))
    px2 = int(min(x2 + margin, photo.shape[1]))
    py2 = int(min(y2 + margin, photo.shape[0]))
    scale = width / ref.width
    part = photo[py1:py2, px1:px2]
    part = cv2.resize(
        part,
        None,
        fx=scale,
        fy=scale,
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
    )
    # Where the face box lands on the canvas.
    fx1 = cx - width / 2
    fy1 = cy - ref.height * scale / 2
    ox = int(round(fx1 - (x1 - px1) * scale))
    oy = int(round(fy1 - (y1 - py1) * scale))
    h, w = part.shape[:2]
    cx0, cy0 = max(ox, 0), max(oy, 0)
    cx1, cy1 = min(ox + w, canvas.shape[1]), min(oy + h, canvas.shape[0])
    canvas[cy0:cy1, cx0:cx1] = part[cy0 - oy : cy1 - oy, cx0 - ox : cx1 - ox]
    # The box in canvas pixels, from the same rounding as the paste.
    bx1 = ox + (x1 - px1) * scale
    by1 = oy + (y1 - py1) * scale
    return np.array([bx1, by1, bx1 + ref.width * scale, by1 + ref.height * scale])


def positions(width: float) -> list[tuple[float, float]]:
    """Face centres: frame centre, the corners, and straddling the tile borders plan_views
    makes for this frame (so a face is cut by some tiles)."""
    tiles = [v for v in plan_views(FRAME_W, FRAME_H, 40, INPUT) if not v.whole_frame]
    xs = sorted(({v.x for v in tiles} | {v.x + v.width for v in tiles}) - {0, FRAME_W})
    ys = sorted(({v.y for v in tiles} | {v.y + v.height for v in tiles}) - {0, FRAME_H})
    assert xs and ys
    half = width * 1.2  # the whole head in the frame, not only the face box

    def clamp(c: float, hi: int) -> float:
        return min(max(c, half), hi - half)

    raw = [
        (FRAME_W / 2, FRAME_H / 2),
        (half, half),
        (FRAME_W - half, FRAME_H - half),
        (xs[0], ys[0]),
        (xs[len(xs) // 2], ys[-1]),
        (xs[-1], FRAME_H / 2),
    ]
    return [(clamp(x, FRAME_W), clamp(y, FRAME_H)) for x, y in raw]


def iou(a: np.ndarray | tuple, b: np.ndarray | tuple) -> float:
    return float(box_iou(np.asarray(a, float), np.asarray(b, float)[None])[0])


def assert_keypoints_inside(face: Face) -> None:
    x1, y1, x2, y2 = face.box
    tol = 0.05 * face.width
    assert face.keypoints.shape == (6, 2)
    assert np.all(face.keypoints[:, 0] >= x1 - tol) and np.all(face.keypoints[:, 0] <= x2 + tol)
    assert np.all(face.keypoints[:, 1] >= y1 - tol) and np.all(face.keypoints[:, 1] <= y2 + tol)
    # The eyes, nose and mouth strictly inside, eyes above the mouth.
    inner = face.keypoints[:4]
    assert np.all((inner[:, 0] > x1) & (inner[:, 0] < x2) & (inner[:, 1] > y1) & (inner[:, 1] < y2))
    assert face.keypoints[:2, 1].max() < face.keypoints[3, 1]


@needs_models
def test_reference_face_in_the_photo(reference: Face) -> None:
    assert_keypoints_inside(reference)


@needs_models
@pytest.mark.parametrize("width", [45, 80, 150, 300])
def test_face_found_once_at_every_size_and_position(
    detector: FaceDetector, photo: np.ndarray, reference: Face, width: int
) -> None:
    missed = []
    for cx, cy in positions(width):
        canvas = grey_canvas()
        expected = paste_face(canvas, photo, reference, width, cx, cy)
        faces = detector.detect(canvas)
        where = f"face {width} px at ({cx:.0f}, {cy:.0f}): {[f.box for f in faces]}"
        if not faces:
            missed.append((round(cx), round(cy)))
            continue
        assert len(faces) == 1, where
        face = faces[0]
        assert iou(face.box, expected) >= 0.5, where
        assert face.width >= SMALL_BOX_RATIO * 40
        assert 0 <= face.box[0] < face.box[2] <= FRAME_W
        assert 0 <= face.box[1] < face.box[3] <= FRAME_H
        assert_keypoints_inside(face)
    if width > 50:
        assert not missed, f"{width} px faces missed at {missed}"
        return
    # A 45 px face is seen at 15.8 model pixels (MIN_FACE_IN_INPUT = 14 at min_face 40), where
    # BlazeFace's score hovers around the 0.6 threshold: measured recall 34/40 positions at
    # 45 px, 39/40 at 50 px, 40/40 from 55 px. Before SMALL_BOX_RATIO every 45 px face was lost.
    assert len(missed) <= 1, f"{width} px faces missed at {missed}"
    if missed:
        pytest.xfail(f"known: {width} px face near threshold missed at {missed}")


@needs_models
def test_faces_below_min_face_are_not_returned(
    detector: FaceDetector, photo: np.ndarray, reference: Face
) -> None:
    canvas = grey_canvas()
    expected = paste_face(canvas, photo, reference, 30, 640, 360)
    # Findable when asked for it ...
    small = detector.detect(canvas, min_face=25)
    assert len(small) == 1 and iou(small[0].box, expected) >= 0.5
    # ... but below the configured 40 px.
    assert detector.detect(canvas) == []

    canvas = grey_canvas()
    paste_face(canvas, photo, reference, 80, 640, 360)
    assert len(detector.detect(canvas)) == 1
    assert detector.detect(canvas, min_face=100) == []


@needs_models
def test_max_faces_keeps_the_largest(photo: np.ndarray, reference: Face) -> None:
    canvas = grey_canvas()
    boxes = {
        w: paste_face(canvas, photo, reference, w, cx, 360)
        for w, cx in ((60, 180), (120, 560), (200, 1000))
    }
    all_faces = FaceDetector(MODELS, min_face=40).detect(canvas)
    assert len(all_faces) == 3
    two = FaceDetector(MODELS, min_face=40, max_faces=2).detect(canvas)
    assert len(two) == 2
    assert iou(two[0].box, boxes[200]) >= 0.5
    assert iou(two[1].box, boxes[120]) >= 0.5
    one = FaceDetector(MODELS, min_face=40, max_faces=1).detect(canvas)
    assert len(one) == 1 and iou(one[0].box, boxes[200]) >= 0.5


@needs_models
def test_black_and_noise_frames_have_no_faces(detector: FaceDetector) -> None:
    assert detector.detect(np.zeros((FRAME_H, FRAME_W, 3), np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 256, (FRAME_H, FRAME_W, 3), dtype=np.uint8)
    assert detector.detect(noise) == []
    assert detector.detect(grey_canvas()) == []


def test_parts_of_a_larger_face_are_dropped_and_neighbours_kept() -> None:
    def face(box: tuple[float, float, float, float]) -> Face:
        return Face(box, 0.5, np.zeros((6, 2)))

    big, eye, neighbour = face((100, 100, 500, 500)), face((90, 150, 190, 250)), face(
        (450, 120, 600, 270)
    )
    # The eye lies 90 % inside the big face; the neighbour only 33 %: a face beside it.
    assert without_parts([big, eye, neighbour]) == [big, neighbour]
    # Two boxes of about one size are not a face and its part, however they overlap.
    guess = face((90, 90, 480, 480))
    assert without_parts([big, guess]) == [big, guess]
    # An ear beside the face: outside its box, but a tenth its size and right next to it.
    ear, small_neighbour = face((510, 250, 560, 300)), face((720, 250, 770, 300))
    assert without_parts([big, ear, small_neighbour]) == [big, small_neighbour]


def test_a_face_filling_the_frame_is_one_box() -> None:
    """A wear/ photo enlarged to 1024 px, as a face right in front of the camera, at the
    device's face threshold: the tiles see its eyes, mouth and mask edge as small faces
    (four of them before), which lie inside the whole face."""
    folder = require_data("wear", "incorrect")
    detector = FaceDetector(MODELS, min_face=40, score_threshold=0.15)
    small = cv2.cvtColor(cv2.imread(str(folder / "maskedfacenet_06043.jpg")), cv2.COLOR_BGR2RGB)
    faces = detector.detect(cv2.resize(small, (1024, 1024)))
    assert len(faces) == 1
    assert faces[0].width > 600
