#!/usr/bin/env python3
"""Score `maskwatch detect --json` output against annotated scene photos.

    maskwatch detect --min-face 20 --json ../shared/data/scenes/andrewmvd/images > det.jsonl
    python scripts/score_scenes.py det.jsonl ../shared/data/scenes/andrewmvd/annotations.json

A prediction matches a labelled face at IoU >= 0.4 (greedy, best IoU first). For each minimum
size (shorter side of the labelled box) it prints face recall, no_mask recall and no_mask
precision, where an unmatched no_mask prediction of at least that size is a false alarm and
faces smaller than the size are left out on both sides. `incorrect` faces are reported on
their own: what the predictions called them; and how many masked faces were called incorrect
(an alarm class too).

A prediction with a "gate" (the device would not alarm on it: F3 pose, F4 quality, low face
score) counts as no alarm, i.e. as if not labelled no_mask, unless the gate is listed in
--ignore-gates; `--ignore-gates pose_out_of_range cut_by_edge` scores the classifier on faces
the device leaves out by design.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

MATCH_IOU = 0.4


def iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def shorter_side(box: list[float]) -> float:
    return min(box[2] - box[0], box[3] - box[1])


def match(truth: list[dict], preds: list[dict]) -> dict[int, int]:
    """Prediction index -> labelled face index."""
    pairs = sorted(
        (
            (iou(t["box"], p["box"]), ti, pi)
            for ti, t in enumerate(truth)
            for pi, p in enumerate(preds)
        ),
        reverse=True,
    )
    used_t: set[int] = set()
    result: dict[int, int] = {}
    for value, ti, pi in pairs:
        if value < MATCH_IOU:
            break
        if ti in used_t or pi in result:
            continue
        used_t.add(ti)
        result[pi] = ti
    return result


def device_label(prediction: dict, ignore_gates: frozenset[str] = frozenset()) -> str:
    """What the device makes of a prediction: its label, or "gated" when a gate holds it."""
    gate = prediction.get("gate")
    return prediction["label"] if gate is None or gate in ignore_gates else "gated"


def score(
    detections: dict[str, list[dict]],
    annotations: dict,
    min_side: float,
    ignore_gates: frozenset[str] = frozenset(),
) -> dict:
    faces = found = nm_total = nm_found = nm_tp = nm_fp = mask_as_incorrect = 0
    incorrect_as: Counter[str] = Counter()
    for image in annotations["images"]:
        name = Path(image["file"]).name
        if name not in detections:
            raise SystemExit(f"no detection line for {name}: run detect on the whole folder")
        truth, preds = image["faces"], detections[name]
        matched = match(truth, preds)
        matched_truth = {ti: pi for pi, ti in matched.items()}
        for ti, t in enumerate(truth):
            if shorter_side(t["box"]) < min_side:
                continue
            pi = matched_truth.get(ti)
            label = device_label(preds[pi], ignore_gates) if pi is not None else "missed"
            faces += 1
            found += pi is not None
            if t["label"] == "no_mask":
                nm_total += 1
                nm_found += label == "no_mask"
            elif t["label"] == "incorrect":
                incorrect_as[label] += 1
            else:
                mask_as_incorrect += label == "incorrect"
        for pi, p in enumerate(preds):
            if device_label(p, ignore_gates) != "no_mask":
                continue
            ti = matched.get(pi)
            if ti is None:
                nm_fp += shorter_side(p["box"]) >= min_side
                continue
            t = truth[ti]
            if shorter_side(t["box"]) < min_side or t["label"] == "incorrect":
                continue
            if t["label"] == "no_mask":
                nm_tp += 1
            else:
                nm_fp += 1
    return {
        "min_side": min_side,
        "faces": faces,
        "face_recall": round(found / faces, 4) if faces else None,
        "no_mask_faces": nm_total,
        "no_mask_recall": round(nm_found / nm_total, 4) if nm_total else None,
        "no_mask_precision": round(nm_tp / (nm_tp + nm_fp), 4) if nm_tp + nm_fp else None,
        "no_mask_false_alarms": nm_fp,
        "incorrect_predicted_as": dict(incorrect_as),
        "mask_predicted_incorrect": mask_as_incorrect,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("detections", type=Path, help="JSON lines from maskwatch detect --json")
    parser.add_argument("annotations", type=Path, help="scenes annotations.json")
    parser.add_argument("--sizes", type=float, nargs="+", default=[40, 24])
    parser.add_argument(
        "--ignore-gates", nargs="*", default=[], metavar="GATE",
        help="gates whose predictions keep their label (e.g. pose_out_of_range cut_by_edge)",
    )
    args = parser.parse_args()
    detections = {}
    for line in args.detections.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            detections[Path(record["image"]).name] = record["faces"]
    annotations = json.loads(args.annotations.read_text())
    for size in args.sizes:
        print(json.dumps(score(detections, annotations, size, frozenset(args.ignore_gates))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
