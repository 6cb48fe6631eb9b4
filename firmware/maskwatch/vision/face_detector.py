"""BlazeFace face detection over a whole frame, small faces included.

The full-range BlazeFace model sees a 192x192 input. Letterboxing a 1280x720 frame into it
shrinks a 40 px face to 6 px, below what the model finds reliably, so a full scan runs the
model on the whole frame (large faces) plus on overlapping tiles sized so that the configured
minimum face width still covers ``MIN_FACE_IN_INPUT`` pixels of model input. All views go
through the model one after another (its output shape fixes the batch at 1), and the
results are merged by MediaPipe's weighted NMS.

On live video every tile of a level runs once per cycle of views
(:mod:`maskwatch.vision.view_rotation`), so the tiles run as one view (:func:`merged_view`): the
network is rewritten in
memory for that view's input size (:mod:`maskwatch.vision.blazeface_resize`), and the tiles'
overlaps and padding are no longer computed (at 1280x720 with 40 px faces: one 448x256 input
instead of six 192x192 ones, half the pixels).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from maskwatch.types import Face
from maskwatch.vision.blazeface_resize import STRIDE, resized_model
from maskwatch.vision.tflite_runtime import Model

log = logging.getLogger(__name__)

FULL_RANGE_MODEL = "blazeface/face_detection_full_range.tflite"
# Smallest face width (in model-input pixels) the full-range model finds reliably; measured
# by scripts/measure_detector_scale.py on the demo photo (recall >= 0.95 from this size up).
MIN_FACE_IN_INPUT = 14.0
# Tiles overlap by this factor times the smallest face the whole-frame view can find, so a
# face is always wholly inside some view.
OVERLAP_MARGIN = 1.3
# BlazeFace draws the box of a face seen at 14-20 model pixels about a fifth smaller than that
# of the same face seen large (demo photo, 40-46 px faces at min_face 40: 0.82 on average,
# 0.72 at worst), so the min_face check allows for it instead of dropping faces just above
# min_face (with an exact check, min_face = 40 lost every face narrower than about 48 px).
SMALL_BOX_RATIO = 0.75
# A detection is a part of a face (an eye, an ear, a mask's edge, hair) when that face is at
# least ``area`` times larger and ``inside`` of the detection lies within the face's box grown
# ``grow`` times about its centre. The first rule: parts on the face; the second: much smaller
# parts beside it (ears, hair), chosen on the validation halves of the scene and wear/ photos
# (scripts/evaluate_alarms.py) as the rule removing most wear/ extra boxes at 1024 px while
# dropping no labelled scene face.
PART_RULES = ((2.0, 1.0, 0.6), (10.0, 2.0, 0.9))
# The full-range network's output: one anchor per cell of a grid this much coarser than the
# input.
ANCHOR_STRIDE = 4


@dataclass(frozen=True)
class View:
    """A region of the frame fed to the model: frame pixels [x, x+width) x [y, y+height),
    shrunk by ``scale`` (model input pixels per frame pixel)."""

    x: int
    y: int
    width: int
    height: int
    scale: float
    whole_frame: bool

    def input_shape(self) -> tuple[int, int]:
        """Model input height and width: the shrunk region, padded up to the network's
        stride."""
        return _padded(self.height * self.scale), _padded(self.width * self.scale)


def _padded(pixels: float) -> int:
    return max(1, math.ceil(round(pixels) / STRIDE)) * STRIDE


def plan_views(width: int, height: int, min_face: float, input_size: int) -> list[View]:
    """The whole frame plus, when needed, a grid of tiles small enough for ``min_face``.

    Tiles of one size overlap by the largest face the next coarser view cannot find. An
    overlap is at most half a tile, so when the whole frame is too coarse for that (large
    frames, small ``min_face``) levels of larger tiles are put in between."""
    longest = max(width, height)
    views = [View(0, 0, longest, longest, input_size / longest, True)]
    max_ratio = input_size / (2 * OVERLAP_MARGIN * MIN_FACE_IN_INPUT)
    sizes = []
    tile = int(input_size * min_face / MIN_FACE_IN_INPUT)
    while tile < longest:
        sizes.append(tile)
        tile = int(tile * max_ratio)
    for i, tile in enumerate(sizes):
        coarser = sizes[i + 1] if i + 1 < len(sizes) else longest
        overlap = int(math.ceil(OVERLAP_MARGIN * MIN_FACE_IN_INPUT * coarser / input_size))
        overlap = min(overlap, tile // 2)
        xs = _tile_starts(width, tile, overlap)
        ys = _tile_starts(height, tile, overlap)
        views += [View(x, y, tile, tile, input_size / tile, False) for y in ys for x in xs]
    return views


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1)
    return [int(round(i * step)) for i in range(count)]


def merged_view(tiles: list[View]) -> View:
    """One view over the tiles' bounding box, at their common scale."""
    scale = tiles[0].scale
    if any(t.scale != scale or t.whole_frame for t in tiles):
        raise ValueError("only tiles of one level can be merged")
    x1, y1 = min(t.x for t in tiles), min(t.y for t in tiles)
    x2 = max(t.x + t.width for t in tiles)
    y2 = max(t.y + t.height for t in tiles)
    return View(x1, y1, x2 - x1, y2 - y1, scale, False)


def ssd_anchors(
    height: int, width: int, strides: list[int], anchors_per_layer: int
) -> np.ndarray:
    """Anchor centres (N x 2, x then y, in 0..1 of the input) as MediaPipe's
    SsdAnchorsCalculator makes them with fixed anchor size: consecutive layers with the same
    stride share one grid."""
    centres = []
    i = 0
    while i < len(strides):
        stride = strides[i]
        repeats = 0
        while i < len(strides) and strides[i] == stride:
            repeats += anchors_per_layer
            i += 1
        rows, cols = int(math.ceil(height / stride)), int(math.ceil(width / stride))
        for gy in range(rows):
            for gx in range(cols):
                centres.extend([((gx + 0.5) / cols, (gy + 0.5) / rows)] * repeats)
    return np.asarray(centres, dtype=np.float32)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, iou_threshold: float
) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's WEIGHTED overlap suppression: overlapping candidates are averaged by score
    instead of discarded, which steadies boxes between frames."""
    order = np.argsort(-scores)
    remaining = order
    results = []
    while remaining.size:
        best = remaining[0]
        ious = box_iou(boxes[best], boxes[remaining])
        group = remaining[ious > iou_threshold]
        results.append(blend(boxes[group], scores[group], keypoints[group]))
        remaining = remaining[ious <= iou_threshold]
    return results


def without_parts(faces: list[Face]) -> list[Face]:
    """``faces`` (largest first) without the detections that are parts of a larger one.

    The tiles see a face that fills the frame in pieces, and BlazeFace takes an eye and brow,
    a mouth, a mask's edge, an ear or a lock of hair for small faces (wear/ photos enlarged to
    1024 px: 1.3 such boxes per photo). A real face cannot be mostly inside another's box: the
    nearer face would hide it (of the 3845 labelled andrewmvd faces, 2 lie 60 % inside a larger
    labelled head box), and one a tenth the size of a face right beside it is not a head
    either. A part is much smaller than its face; two boxes of about one size are two guesses
    at one face or two faces, which overlap suppression, not this, settles."""
    kept: list[Face] = []
    for face in faces:
        box = np.asarray(face.box, np.float64)
        area = face.width * face.height
        if not any(
            k.width * k.height >= larger * area
            and _share_inside(box, _grown(np.asarray(k.box, np.float64), grow)) >= inside
            for k in kept
            for larger, grow, inside in PART_RULES
        ):
            kept.append(face)
    return kept


def _grown(box: np.ndarray, factor: float) -> np.ndarray:
    """``box`` scaled by ``factor`` about its centre."""
    centre, half = (box[:2] + box[2:]) / 2.0, (box[2:] - box[:2]) * factor / 2.0
    return np.concatenate([centre - half, centre + half])


def _share_inside(box: np.ndarray, other: np.ndarray) -> float:
    """The share of ``box``'s area that lies inside ``other``."""
    ix = max(0.0, min(box[2], other[2]) - max(box[0], other[0]))
    iy = max(0.0, min(box[3], other[3]) - max(box[1], other[1]))
    area = (box[2] - box[0]) * (box[3] - box[1])
    return ix * iy / area if area > 0 else 1.0


def blend(
    boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray
) -> tuple[np.ndarray, float, np.ndarray]:
    """Detections of one face merged as weighted NMS merges them: box and keypoints averaged
    by score, the best score kept."""
    weights = scores[:, None]
    total = float(weights.sum())
    box = (boxes * weights).sum(axis=0) / total
    kps = (keypoints * weights[:, :, None]).sum(axis=0) / total
    return box, float(scores.max()), kps


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x1,y1,x2,y2 box against many."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


class FaceDetector:
    """Finds faces in an RGB frame; returns the ``max_faces`` largest, each >= ``min_face``."""

    def __init__(
        self,
        models_dir: Path,
        min_face: float = 40,
        score_threshold: float = 0.6,
        nms_iou: float = 0.3,
        max_faces: int = 8,
        threads: int = 1,
    ) -> None:
        self.model = Model(models_dir / FULL_RANGE_MODEL, threads=threads)
        self.input_size = self.model.input_shape[1]
        self.threads = threads
        self.min_face = float(min_face)
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.max_faces = max_faces
        self._logit_threshold = math.log(score_threshold / (1.0 - score_threshold))
        # The network and its anchors per input shape: the file's own, plus one rewritten
        # network per merged live view (one per tile level of the camera's frame size).
        size = self.input_size
        self._networks: dict[tuple[int, int], tuple[Model, np.ndarray]] = {
            (size, size): (self.model, _anchors(size, size))
        }

    def plan(self, width: int, height: int, min_face: float | None = None) -> list[View]:
        """Every view a full scan of a width x height image runs."""
        min_face = self.min_face if min_face is None else min_face
        return plan_views(width, height, min_face, self.input_size)

    def detect(
        self, image: np.ndarray, min_face: float | None = None, views: list[View] | None = None
    ) -> list[Face]:
        """Faces of at least ``min_face`` px (default: the configured one) in ``image``,
        from ``views`` (default: a full scan, :meth:`plan`)."""
        min_face = self.min_face if min_face is None else min_face
        height, width = image.shape[:2]
        if views is None:
            views = self.plan(width, height, min_face)
        scaled: dict[float, np.ndarray] = {}
        boxes, scores, kps = [], [], []
        for view in views:
            if view.scale not in scaled:
                scaled[view.scale] = shrink(image, view.scale)
            x0, y0 = int(round(view.x * view.scale)), int(round(view.y * view.scale))
            regressors, logits, anchors = self.raw_outputs(scaled[view.scale][y0:, x0:], view)
            keep = logits[0, :, 0] > self._logit_threshold
            if not keep.any():
                continue
            b, k = _decode(regressors[0][keep], anchors[keep], view)
            inside = self._not_cut_by_tile(b, view, width, height)
            boxes.append(b[inside])
            kps.append(k[inside])
            scores.append(_sigmoid(logits[0, keep, 0])[inside])
        if not boxes:
            return []
        merged = weighted_nms(
            np.concatenate(boxes), np.concatenate(scores), np.concatenate(kps), self.nms_iou
        )
        faces = [
            Face(tuple(float(v) for v in _clip_box(b, width, height)), s, k)  # type: ignore[arg-type]
            for b, s, k in merged
            if (b[2] - b[0]) >= SMALL_BOX_RATIO * min_face
        ]
        faces.sort(key=lambda f: f.width * f.height, reverse=True)
        return without_parts(faces)[: self.max_faces]

    def raw_outputs(
        self, shrunk: np.ndarray, view: View
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The network's regressors (16 values per anchor, in input pixels), score logits and
        anchor centres (input pixels) for a view whose shrunk region starts at the top left
        of ``shrunk``, padded with black to the view's input shape."""
        rows, cols = view.input_shape()
        model, anchors = self._network(rows, cols)
        crop = shrunk[:rows, :cols]
        canvas = np.full((1, rows, cols, 3), -1.0, np.float32)
        canvas[0, : crop.shape[0], : crop.shape[1]] = crop * (1.0 / 127.5) - 1.0
        outputs = model.run(canvas)
        if outputs[0].shape[-1] == 16:
            return outputs[0], outputs[1], anchors
        return outputs[1], outputs[0], anchors

    def _network(self, rows: int, cols: int) -> tuple[Model, np.ndarray]:
        if (rows, cols) not in self._networks:
            log.info("detector: BlazeFace rewritten for a %dx%d input (merged live view)",
                     cols, rows)
            content = resized_model(self.model.path.read_bytes(), rows, cols)
            model = Model(
                self.model.path, self.threads, content=content, input_shape=(1, rows, cols, 3)
            )
            self._networks[(rows, cols)] = (model, _anchors(rows, cols))
        return self._networks[(rows, cols)]

    @staticmethod
    def _not_cut_by_tile(boxes: np.ndarray, view: View, width: int, height: int) -> np.ndarray:
        """Faces touching a tile edge that lies inside the frame are partial; another view
        holds them whole, so they are dropped here instead of skewing the merged box."""
        if view.whole_frame:
            return np.ones(len(boxes), bool)
        margin = 2.0
        keep = np.ones(len(boxes), bool)
        if view.x > 0:
            keep &= boxes[:, 0] > view.x + margin
        if view.y > 0:
            keep &= boxes[:, 1] > view.y + margin
        if view.x + view.width < width:
            keep &= boxes[:, 2] < view.x + view.width - margin
        if view.y + view.height < height:
            keep &= boxes[:, 3] < view.y + view.height - margin
        return keep


def _decode(raw: np.ndarray, anchors: np.ndarray, view: View) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and keypoints in frame pixels from regressors and anchor centres in the view's
    input pixels."""
    cx = raw[:, 0] + anchors[:, 0]
    cy = raw[:, 1] + anchors[:, 1]
    half_w, half_h = raw[:, 2] / 2, raw[:, 3] / 2
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    kps = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
    offset = np.array([view.x, view.y], np.float32)
    return boxes / view.scale + np.tile(offset, 2), kps / view.scale + offset


def _anchors(rows: int, cols: int) -> np.ndarray:
    """Anchor centres of the full-range network in input pixels."""
    return ssd_anchors(rows, cols, [ANCHOR_STRIDE], 1) * np.array([cols, rows], np.float32)


def shrink(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` resized by ``scale`` (<= 1) with area averaging, at a fraction of the cost.

    OpenCV's INTER_AREA is fast for exact halving only (1280x720 to 448x252 costs about 12
    times as much as to 640x360), so the image is halved by area averaging while the factor
    allows (an odd last row or column is dropped each time) and the rest, under 2x, is done
    bilinearly."""
    while scale <= 0.5:
        h, w = image.shape[:2]
        image = cv2.resize(
            image[: h - h % 2, : w - w % 2], (w // 2, h // 2), interpolation=cv2.INTER_AREA
        )
        scale *= 2.0
    h = max(1, int(round(image.shape[0] * scale)))
    w = max(1, int(round(image.shape[1] * scale)))
    if (w, h) == image.shape[1::-1]:
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -100, 100)))


def _clip_box(box: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.array(
        [
            min(max(box[0], 0.0), width),
            min(max(box[1], 0.0), height),
            min(max(box[2], 0.0), width),
            min(max(box[3], 0.0), height),
        ]
    )
