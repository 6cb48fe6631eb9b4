"""`maskwatch detect`: faces and mask classes in still images (F27).

The JSON line shape is a contract other tools (scripts/score_scenes.py, installers' checks)
depend on: {"image", "width", "height", "faces": [{"box", "score", "label", "confidence",
"probs", "pose", "presence"}], "ms"}, label one of mask, no_mask, incorrect; "pose" is
{"yaw", "pitch", "roll"} in degrees from the face mesh (null when unknown) and "presence" the
mesh's face presence 0-1 (null when unknown). A face the device would not alarm on (F3 pose,
F4 quality gates, an alarming verdict on a face with a low face score or presence) also has
a "gate" key naming why; its label is still the classifier's, so a still image is always fully
reported.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from pydantic import ValidationError

from maskwatch.cli.image_io import expand_image_paths, read_rgb
from maskwatch.config import Config
from maskwatch.types import FaceResult
from maskwatch.vision import FaceAnalyzer

log = logging.getLogger(__name__)

EX_BAD_INPUT = 2


def face_json(result: FaceResult) -> dict:
    line = {
        "box": [round(v, 1) for v in result.face.box],
        "score": round(result.face.score, 4),
        "label": result.classification.label.value,
        "confidence": round(result.classification.confidence, 4),
        "probs": result.classification.probs,
        "pose": result.pose.as_dict() if result.pose is not None else None,
        "presence": round(result.presence, 4) if result.presence is not None else None,
    }
    if result.reason is not None:
        line["gate"] = result.reason
    return line


def _table_lines(path: str, width: int, height: int, results: list[FaceResult], ms: float):
    yield f"{path}  {width}x{height}  {len(results)} face(s)  {ms:.1f} ms"
    for i, r in enumerate(results, 1):
        x1, y1, x2, y2 = (int(round(v)) for v in r.face.box)
        yield (
            f"  #{i}  {r.classification.label.value:9} {r.classification.confidence:6.1%}"
            f"  box {x1},{y1}-{x2},{y2} ({x2 - x1} px)  face score {r.face.score:.2f}"
            + (f"  presence {r.presence:.2f}" if r.presence is not None else "")
            + (f"  yaw {r.pose.yaw:.0f} pitch {r.pose.pitch:.0f}" if r.pose is not None else "")
            + (f"  gate: {r.reason}" if r.reason else "")
        )


def run_detect(config: Config, paths: list[str], as_json: bool, min_face: int | None) -> int:
    if min_face is not None:
        try:
            config.detector.min_face = min_face
        except ValidationError as exc:
            print(f"maskwatch detect: --min-face {min_face}: {exc.errors()[0]['msg']}",
                  file=sys.stderr)
            return EX_BAD_INPUT
    files = expand_image_paths(paths)
    if not files:
        print("maskwatch detect: no images found in " + ", ".join(paths), file=sys.stderr)
        return EX_BAD_INPUT
    analyzer = FaceAnalyzer(config)
    failed = 0
    for path in files:
        try:
            image = read_rgb(path)
        except ValueError as exc:
            print(f"maskwatch detect: {exc}", file=sys.stderr)
            failed += 1
            continue
        started = time.perf_counter()
        results = analyzer.analyze(image, classify_gated=True)
        ms = (time.perf_counter() - started) * 1000.0
        height, width = image.shape[:2]
        if as_json:
            line = {
                "image": str(path), "width": width, "height": height,
                "faces": [face_json(r) for r in results], "ms": round(ms, 2),
            }
            print(json.dumps(line), flush=True)
        else:
            print("\n".join(_table_lines(str(path), width, height, results, ms)), flush=True)
    return EX_BAD_INPUT if failed else 0
