"""`maskwatch bench`: median cost of detection + classification per 1280x720 frame (F27).

Frames are built from the demo photo with 1 and with 8 faces, so the figure can be reproduced
on any device without data. Medians, not single timings; the result is a report, never a
pass/fail test, because absolute speed depends on the machine.
"""

from __future__ import annotations

import json
import logging
import resource
import statistics
import time

import cv2
import numpy as np

from maskwatch.config import Config
from maskwatch.face_analyzer import FaceAnalyzer
from maskwatch.face_crop import crop_face
from maskwatch.image_io import read_rgb

log = logging.getLogger(__name__)

FRAME_W, FRAME_H = 1280, 720
PHOTO_HEAD = (120, 10, 340, 250)  # x1, y1, x2, y2 of the head in the 512 px demo photo


def bench_frame(photo: np.ndarray, faces: int) -> np.ndarray:
    """A grey 1280x720 frame with ``faces`` copies of the demo head on a grid."""
    frame = np.full((FRAME_H, FRAME_W, 3), 96, np.uint8)
    x1, y1, x2, y2 = PHOTO_HEAD
    head = photo[y1:y2, x1:x2]
    cols = 1 if faces == 1 else 4
    rows = int(np.ceil(faces / cols))
    size = 300 if faces == 1 else 220
    head = cv2.resize(head, (size, size), interpolation=cv2.INTER_AREA)
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


def run_bench(config: Config, frames: int, as_json: bool) -> int:
    config.runtime.threads = 1
    analyzer = FaceAnalyzer(config)
    photo = read_rgb(config.paths.models() / "demo/astronaut.png")
    result: dict[str, object] = {
        "frame": f"{FRAME_W}x{FRAME_H}",
        "threads": 1,
        "accelerator": analyzer.accelerator.name,
        "min_face": config.detector.min_face,
    }
    for count in (1, 8):
        frame = bench_frame(photo, count)
        found = analyzer.find_faces(frame)
        total = _median_ms(lambda: analyzer.analyze(frame), frames)
        detect = _median_ms(lambda: analyzer.find_faces(frame), frames)
        crops = np.stack([crop_face(frame, f.box, f.keypoints) for f in found]) if found else None
        classify = _median_ms(lambda: analyzer.classifier.classify(crops), frames) if found else 0
        result[f"faces_{count}"] = {
            "faces_found": len(found),
            "median_ms_total": round(total, 2),
            "median_ms_detect": round(detect, 2),
            "median_ms_classify": round(classify, 2),
            "classify_ms_per_face": round(classify / max(len(found), 1), 3),
            "fps": round(1000.0 / total, 1),
        }
    result["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    if as_json:
        print(json.dumps(result))
    else:
        print(f"maskwatch bench: {result['frame']}, 1 thread, {result['accelerator']}, "
              f"min face {result['min_face']} px")
        for count in (1, 8):
            r = result[f"faces_{count}"]
            print(
                f"  {count} face(s) (found {r['faces_found']}): {r['median_ms_total']:.1f} ms "
                f"median ({r['fps']} fps) = detect {r['median_ms_detect']:.1f} + classify "
                f"{r['median_ms_classify']:.2f} ms ({r['classify_ms_per_face']:.3f} ms/face)"
            )
        print(f"  peak resident memory {result['max_rss_mb']} MB")
    return 0
