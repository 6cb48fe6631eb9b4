#!/usr/bin/env python3
"""Measure how small a face the full-range BlazeFace finds, in model-input pixels.

The demo photo's face is shrunk to each width and placed at random spots of a grey 192x192
input; the share of placements where any anchor passes the score threshold is printed. The
result sets MIN_FACE_IN_INPUT in firmware/maskwatch/vision/face_detector.py.

    python scripts/measure_detector_scale.py [--threshold 0.5] [--trials 30]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np

from maskwatch.cli.image_io import read_rgb
from maskwatch.vision.face_detector import FaceDetector, View

MODELS = Path(__file__).resolve().parents[1] / "models"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 10, 11, 12, 14, 16, 20, 40])
    args = parser.parse_args()
    photo = read_rgb(MODELS / "demo/astronaut.png")
    detector = FaceDetector(MODELS, min_face=40, score_threshold=args.threshold)
    reference = detector.detect(photo)[0]
    size = detector.input_size
    logit = math.log(args.threshold / (1 - args.threshold))
    rng = np.random.default_rng(0)
    cx = (reference.box[0] + reference.box[2]) / 2
    cy = (reference.box[1] + reference.box[3]) / 2
    for width in args.widths:
        scale = width / reference.width
        small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        hits = 0
        for _ in range(args.trials):
            ox, oy = rng.integers(width, size - width, 2)
            shift = np.float32([[1, 0, ox - cx * scale], [0, 1, oy - cy * scale]])
            canvas = cv2.warpAffine(small, shift, (size, size), borderValue=(120, 120, 120))
            _, logits, _ = detector.raw_outputs(canvas, View(0, 0, size, size, 1.0, True))
            hits += bool((logits[0, :, 0] > logit).any())
        print(f"face {width:3d} px in a {size} px input: found {hits / args.trials:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
