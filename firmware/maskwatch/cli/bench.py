"""`maskwatch bench`: median cost of detection + classification per 1280x720 frame (F27).

Frames are built from the demo photo with 1 and with 8 faces, so the figure can be reproduced
on any device without data. "full scan" is every detector view on every frame (what a still
image gets); "live" is what the service and `maskwatch analyze` run on video: the face mesh
follows the faces and the detector's views run in turn (:mod:`maskwatch.vision.face_follower`),
timed frame by frame over a run of video frames at 15 fps, after the faces are found; besides
its median it has a mean, since the detector runs on two frames of each seven only. "classify" is
the classifier on each crop and its mirror image plus the wear check
(:mod:`maskwatch.vision.wear_check`), whose nose check runs on faces called masked only (the
demo face is unmasked; the nose check's 32 px patch costs less than the classifier's crop).
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
from collections.abc import Callable

import cv2
import numpy as np

from maskwatch.cli.image_io import read_rgb
from maskwatch.config import Config
from maskwatch.vision import FaceAnalyzer, estimate_head_pose

log = logging.getLogger(__name__)

FRAME_W, FRAME_H = 1280, 720
PHOTO_HEAD = (120, 10, 340, 250)  # x1, y1, x2, y2 of the head in the 512 px demo photo
# (name, faces, head size in px): 300 px heads have faces of about 125 px, which the
# whole-frame view finds; 160 px heads about 60 px faces, found only in tiles: the worst case
# for live scheduling, whose tiles holding faces run on every frame.
CASES = (("faces_1", 1, 300), ("faces_8", 8, 300), ("faces_8_small", 8, 160))
# Live only: one face of a 300 px head crossing the frame and back at this many pixels a frame
# (two thirds of its face width: someone running past at 15 fps).
FAST_STEP = 80
# Live runs: frames to find and settle on the faces, then frames timed (ten view cycles).
LIVE_WARM_UP, LIVE_FRAMES = 14, 70


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


def moving_frame(photo: np.ndarray, index: int, size: int = 300) -> np.ndarray:
    """Frame ``index`` of one demo head moving ``FAST_STEP`` px a frame, back and forth."""
    x1, y1, x2, y2 = PHOTO_HEAD
    head = cv2.resize(photo[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_AREA)
    span = FRAME_W - size
    x = (index * FAST_STEP) % (2 * span)
    x = x if x <= span else 2 * span - x
    frame = np.full((FRAME_H, FRAME_W, 3), 96, np.uint8)
    frame[(FRAME_H - size) // 2 : (FRAME_H + size) // 2, x : x + size] = head
    return frame


def _live(live: FaceAnalyzer, frame_at: Callable[[int], np.ndarray]) -> dict:
    """The live path over a run of video frames (``frame_at(index)``, made outside the
    timing): median and mean ms per frame, and the most faces one frame had."""
    live.forget()
    for index in range(LIVE_WARM_UP):
        live.analyze(frame_at(index))
    times, most = [], 0
    for index in range(LIVE_WARM_UP, LIVE_WARM_UP + LIVE_FRAMES):
        frame = frame_at(index)
        started = time.perf_counter()
        most = max(most, len(live.analyze(frame)))
        times.append((time.perf_counter() - started) * 1000.0)
    median, mean = statistics.median(times), statistics.mean(times)
    return {
        "live_faces": most,
        "live_median_ms_total": round(median, 2),
        "live_mean_ms_total": round(mean, 2),
        "live_fps": round(1000.0 / median, 1),
    }


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
        lambda: full.classify(frame, found, crops), frames
    ) if found else 0
    landmarks = _median_ms(
        lambda: [estimate_head_pose(m.points) for m in full.landmarks.run(frame, found)], frames
    ) if found else 0
    return {
        "faces_found": len(found),
        "median_ms_total": round(total, 2),
        "median_ms_detect": round(detect, 2),
        "median_ms_classify": round(classify, 2),
        "classify_ms_per_face": round(classify / max(len(found), 1), 3),
        "median_ms_landmarks": round(landmarks, 2),
        "ms_per_face": round((classify + landmarks) / max(len(found), 1), 3),
        "fps": round(1000.0 / total, 1),
        **_live(live, lambda _: frame),
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
    }
    for name, count, size in CASES:
        result[name] = _case(full, live, bench_frame(photo, count, size), frames)
    result["fast_1"] = _live(live, lambda index: moving_frame(photo, index))
    result["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    if as_json:
        print(json.dumps(result))
        return 0
    print(f"maskwatch bench: {result['frame']}, 1 thread, {result['accelerator']}, "
          f"min face {result['min_face']} px")
    for name, count, size in CASES:
        r = result[name]
        print(
            f"  {count} face(s) of {size} px (found {r['faces_found']}): full scan "
            f"{r['median_ms_total']:.1f} ms median ({r['fps']} fps) = detect "
            f"{r['median_ms_detect']:.1f} + classify {r['median_ms_classify']:.2f} ms "
            f"({r['classify_ms_per_face']:.3f} ms/face) + landmarks "
            f"{r['median_ms_landmarks']:.2f} ms ({r['ms_per_face']:.3f} ms/face in all); "
            f"live {_live_text(r)}"
        )
    print(f"  1 face of 300 px moving {FAST_STEP} px a frame: live {_live_text(result['fast_1'])}")
    print(f"  peak resident memory {result['max_rss_mb']} MB")
    return 0


def _live_text(r: dict) -> str:
    return (f"{r['live_median_ms_total']:.1f} ms median ({r['live_fps']} fps), mean "
            f"{r['live_mean_ms_total']:.1f} ms, {r['live_faces']} face(s) followed")
