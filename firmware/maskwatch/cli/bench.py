"""`maskwatch bench`: median cost of detection + classification per 1280x720 frame (F27).

Frames are built from the demo photo with 1 and with 8 faces, so the figure can be reproduced
on any device without data. "full scan" is every detector view on every frame (what a still
image gets); "live" is the service's view scheduling on a run of video frames (see
:mod:`maskwatch.vision.view_scheduler`). "classify" includes the second opinions
(:mod:`maskwatch.vision.second_opinion`): the demo face is unmasked, so every face is also confirmed.
"landmarks" is the face mesh with the head pose (:mod:`maskwatch.vision.face_landmarks`); the
per-face cost is classify plus landmarks over the faces found.
Medians, not single timings; the result is a report, never a pass/fail test, because absolute
speed depends on the machine.
"""

from __future__ import annotations

import json
import logging
import resource
import statistics
import time

import cv2
import numpy as np

from maskwatch.cli.image_io import read_rgb
from maskwatch.config import Config
from maskwatch.vision import FaceAnalyzer, FaceBatch, estimate_head_pose

log = logging.getLogger(__name__)

FRAME_W, FRAME_H = 1280, 720
PHOTO_HEAD = (120, 10, 340, 250)  # x1, y1, x2, y2 of the head in the 512 px demo photo
# (name, faces, head size in px): 300 px heads have faces of about 125 px, which the
# whole-frame view finds; 160 px heads about 60 px faces, found only in tiles: the worst case
# for live scheduling, whose tiles holding faces run on every frame.
CASES = (("faces_1", 1, 300), ("faces_8", 8, 300), ("faces_8_small", 8, 160))


def bench_frame(photo: np.ndarray, faces: int, size: int) -> np.ndarray:
    """A grey 1280x720 frame with ``faces`` copies of the demo head on a grid."""
    frame = np.full((FRAME_H, FRAME_W, 3), 96, np.uint8)
    x1, y1, x2, y2 = PHOTO_HEAD
    head = cv2.resize(photo[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_AREA)
    cols = 1 if faces == 1 else 4
    rows = int(np.ceil(faces / cols))
    cell_w, cell_h = FRAME_W // cols, FRAME_H // rows
    for i in range(faces):
        cx = (i % cols) * cell_w + (cell_w - size) // 2
        cy = (i // cols) * cell_h + max(0, (cell_h - size) // 2)
        frame[cy : cy + size, cx : cx + size] = head[: FRAME_H - cy]
    return frame


def _median_ms(fn, frames: int) -> float:
    fn()  # warm-up: first invokes allocate and plan
    times = []
    for _ in range(frames):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def _case(full: FaceAnalyzer, live: FaceAnalyzer, frame: np.ndarray, frames: int) -> dict:
    found = full.find_faces(frame)
    total = _median_ms(lambda: full.analyze(frame), frames)
    detect = _median_ms(lambda: full.find_faces(frame), frames)
    crops = np.stack([full.classifier.crop(frame, f) for f in found]) if found else None
    classify = _median_ms(
        lambda: full.opinion.apply(
            FaceBatch(frame, found, crops), full.classifier.classify(crops)
        ), frames
    ) if found else 0
    landmarks = _median_ms(
        lambda: [estimate_head_pose(m.points) for m in full.landmarks.run(frame, found)], frames
    ) if found else 0
    live.forget()
    live_total = _median_ms(lambda: live.analyze(frame), frames)
    return {
        "faces_found": len(found),
        "median_ms_total": round(total, 2),
        "median_ms_detect": round(detect, 2),
        "median_ms_classify": round(classify, 2),
        "classify_ms_per_face": round(classify / max(len(found), 1), 3),
        "median_ms_landmarks": round(landmarks, 2),
        "ms_per_face": round((classify + landmarks) / max(len(found), 1), 3),
        "fps": round(1000.0 / total, 1),
        "live_median_ms_total": round(live_total, 2),
        "live_fps": round(1000.0 / live_total, 1),
    }


def run_bench(config: Config, frames: int, as_json: bool) -> int:
    config.runtime.threads = 1
    full = FaceAnalyzer(config)
    live = FaceAnalyzer(config, full.accelerator, live=True)
    photo = read_rgb(config.paths.models() / "demo/astronaut.png")
    result: dict[str, object] = {
        "frame": f"{FRAME_W}x{FRAME_H}",
        "threads": 1,
        "accelerator": full.accelerator.name,
        "min_face": config.detector.min_face,
        "tiles_per_frame": config.processing.tiles_per_frame,
    }
    for name, count, size in CASES:
        result[name] = _case(full, live, bench_frame(photo, count, size), frames)
    result["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    if as_json:
        print(json.dumps(result))
        return 0
    print(f"maskwatch bench: {result['frame']}, 1 thread, {result['accelerator']}, "
          f"min face {result['min_face']} px, live: {result['tiles_per_frame']} tiles per frame")
    for name, count, size in CASES:
        r = result[name]
        print(
            f"  {count} face(s) of {size} px (found {r['faces_found']}): full scan "
            f"{r['median_ms_total']:.1f} ms median ({r['fps']} fps) = detect "
            f"{r['median_ms_detect']:.1f} + classify {r['median_ms_classify']:.2f} ms "
            f"({r['classify_ms_per_face']:.3f} ms/face) + landmarks "
            f"{r['median_ms_landmarks']:.2f} ms ({r['ms_per_face']:.3f} ms/face in all); "
            f"live {r['live_median_ms_total']:.1f} ms "
            f"({r['live_fps']} fps)"
        )
    print(f"  peak resident memory {result['max_rss_mb']} MB")
    return 0
