#!/usr/bin/env python3
"""Score `maskwatch detect --json` output against annotated scene photos.

    maskwatch detect --min-face 20 --json ../shared/data/scenes/andrewmvd/images > det.jsonl
    python scripts/score_scenes.py det.jsonl ../shared/data/scenes/andrewmvd/annotations.json

A prediction matches a labelled face at IoU >= 0.4 (greedy, best IoU first). For each minimum
size (shorter side of the labelled box) it prints face recall, the share of unmasked faces
that alarm (labelled no_mask or incorrect: both alarm, by one rule) and the alarms'
precision, where an alarm on a masked face or an unmatched alarm of at least that size is a
false alarm, one on an unmasked or incorrectly masked face a true one, and faces smaller than
the size are left out on both sides. `incorrect` faces are reported on their own too: what the
predictions called them; and how many masked faces were called incorrect.

A prediction with a "gate" (the device would not alarm on it: F3 pose, F4 quality, low face
presence) counts as no alarm unless the gate is listed in
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
ALARMS = ("no_mask", "incorrect")


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
    faces = found = unmasked = alarmed = tp = fp = mask_as_incorrect = 0
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
                unmasked += 1
                alarmed += label in ALARMS
            elif t["label"] == "incorrect":
                incorrect_as[label] += 1
            else:
                mask_as_incorrect += label == "incorrect"
        for pi, p in enumerate(preds):
            if device_label(p, ignore_gates) not in ALARMS:
                continue
            ti = matched.get(pi)
            if ti is None:
                fp += shorter_side(p["box"]) >= min_side
            elif shorter_side(truth[ti]["box"]) >= min_side:
                tp += truth[ti]["label"] in ALARMS
                fp += truth[ti]["label"] == "mask"
    return {
        "min_side": min_side,
        "faces": faces,
        "face_recall": round(found / faces, 4) if faces else None,
        "unmasked_faces": unmasked,
        "unmasked_alarmed": round(alarmed / unmasked, 4) if unmasked else None,
        "alarm_precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "false_alarms": fp,
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
