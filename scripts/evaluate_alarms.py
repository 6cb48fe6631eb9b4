#!/usr/bin/env python3
"""Alarm figures on the andrewmvd scene and wear/ photos, the alarm gates chosen on validation halves.

    python scripts/evaluate_alarms.py                       # run the device path, choose, report
    python scripts/evaluate_alarms.py --detections d.jsonl  # score `maskwatch detect --json` as is

The scene photos and the wear/ photos are each split by file name into two fixed halves
(:func:`half`: the first byte of the SHA-1 of the file name, even = validation, odd =
held-out). The device path runs once on every scene photo, on every wear/ photo as given
(256 px) and enlarged to 512 and 1024 px, and on the faces/train photos that every training
script held out (dataset.held_out), with the pose and presence gates opened wide and the wear
check's verdict left open (each face keeps the classifier's verdict and the nose check's
P(uncovered)); a face-score floor, the presence floor and the wear check's two floors are then
chosen on the two validation halves and those faces/train photos together (:func:`choose`,
one objective: net alarms) and every figure is printed on the full sets and on the held-out
halves, for the chosen and for the configured thresholds. wear/ figures:
incorrectly worn photos whose largest face is flagged incorrect on the device
(``incorrect_to_incorrect``) and correctly worn ones called mask (``correct_to_mask``); no
face found counts as wrong; ``other_boxes_per_photo``: further detections per photo (each
photo holds one face, so each is a box that is not a face).

Matching differs from scripts/score_scenes.py (IoU >= 0.4): a detection belongs to a labelled
face when at least 70 % of the smaller of the two boxes lies inside the other, one detection
per face, greedily by IoU among the pairs that pass. The upstream boxes are mostly loose head
boxes around BlazeFace's tighter face boxes (IoU under-counts small faces), but on some large
faces the labelled box is the tighter one (maksssksksss218, 455: only 67-68 % of the detection
box lies inside it), so containment is measured on whichever box is smaller.

Figures per minimum size (shorter side of the labelled box; unmatched detections by their own
box):
  unmasked_alarmed      no_mask faces whose detection alarms (no_mask or incorrect, after gates)
  alarm_precision       alarms on no_mask or incorrect faces / all alarms (an alarm on a
                        masked face or on no labelled face counts against)
  false_alarms_no_face  alarms on no labelled face (hands, logos, background)
  incorrect_alarmed     incorrect faces whose detection alarms (incorrect_labelled_incorrect:
                        is labelled incorrect)

With --photos it also runs the configured device (gates on) on faces/test (each crop on a
grey canvas, as in training): the share of photos whose largest face gets the true label on
the device and as reported (gates ignored), over all photos (no face found counts as wrong),
and how many further boxes per photo were found.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from dataset import REPO, held_out

from maskwatch.cli.detect import face_json
from maskwatch.cli.image_io import read_rgb
from maskwatch.config import Config
from maskwatch.types import Label
from maskwatch.vision.face_analyzer import FaceAnalyzer
from maskwatch.vision.nose_check import NoseCheck
from maskwatch.vision.photo_crops import find_photo_face

log = logging.getLogger("evaluate_alarms")

ALARMS = ("no_mask", "incorrect")
INSIDE_SHARE = 0.7
SIZES = (40, 24)
# Gates the wide-open run still applies (pose, presence and a face-score floor are applied here).
QUALITY_GATES = frozenset({"cut_by_edge", "blurred", "underexposed", "overexposed"})
# A false alarm (on a masked face or on no face alike: the precision target counts both) costs
# as much as this many alarms on unmasked or incorrectly masked faces.
FALSE_ALARM_COST = 10
SCORE_FLOORS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
PRESENCE_FLOORS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998,
                   0.999)
# The wear check's two floors (maskwatch.vision.wear_check).
UNCOVERED_FLOORS = (0.5, 0.7, 0.9)
INCORRECT_FLOORS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
WEAR_SIZES = (256, 512, 1024)
# wear/ folders and the label their photos should get.
WEAR_FOLDERS = (("correct", "mask"), ("incorrect", "incorrect"))


@dataclass(frozen=True)
class Thresholds:
    min_score: float
    min_presence: float
    max_yaw: float
    max_pitch: float
    min_uncovered: float
    min_incorrect_below_nose: float


def half(name: str) -> str:
    """The fixed half a photo belongs to: "validation" or "heldout"."""
    return "validation" if hashlib.sha1(name.encode()).digest()[0] % 2 == 0 else "heldout"


def shorter_side(box: list[float]) -> float:
    return min(box[2] - box[0], box[3] - box[1])


def inside_share(det: list[float], head: list[float]) -> float:
    """Share of the smaller of the two boxes that lies inside the other."""
    ix = max(0.0, min(det[2], head[2]) - max(det[0], head[0]))
    iy = max(0.0, min(det[3], head[3]) - max(det[1], head[1]))
    area = min((det[2] - det[0]) * (det[3] - det[1]), (head[2] - head[0]) * (head[3] - head[1]))
    return ix * iy / area if area > 0 else 0.0


def iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def match(truth: list[dict], preds: list[dict]) -> dict[int, int]:
    """Prediction index -> labelled face index: pairs that pass the containment rule, best
    IoU first (so a whole face wins over a small detection inside the same head box)."""
    pairs = sorted(
        ((iou(p["box"], t["box"]), ti, pi)
         for ti, t in enumerate(truth) for pi, p in enumerate(preds)
         if inside_share(p["box"], t["box"]) >= INSIDE_SHARE),
        reverse=True,
    )
    used: set[int] = set()
    result: dict[int, int] = {}
    for _, ti, pi in pairs:
        if ti not in used and pi not in result:
            used.add(ti)
            result[pi] = ti
    return result


def device_label(pred: dict, th: Thresholds | None) -> str:
    """The label the device acts on: "gated" when a gate holds the face. ``th`` None: the
    prediction's own "gate" key decides (output of the configured device); otherwise the
    prediction is the classifier's own, with the nose check's P(uncovered) of a face called
    masked (``uncovered``), and the wear check runs here with ``th``'s floors."""
    if pred.get("gate") is not None and (th is None or pred["gate"] in QUALITY_GATES):
        return "gated"
    if th is None:
        return pred["label"]
    label = pred["label"]
    if (
        label == "mask"
        and pred.get("uncovered", 0.0) >= th.min_uncovered
        and pred["probs"].get("incorrect", 1.0) >= th.min_incorrect_below_nose
    ):
        label = "incorrect"
    pose = pred.get("pose")
    if pose is not None and (abs(pose["yaw"]) > th.max_yaw or abs(pose["pitch"]) > th.max_pitch):
        return "gated"
    if label in ALARMS and (
        pred["score"] < th.min_score or (pred.get("presence") or 0.0) < th.min_presence
    ):
        return "gated"
    return label


_MATCHES: dict[tuple, dict[int, int]] = {}


def matches_of(truth: list[dict], preds: list[dict]) -> dict[int, int]:
    """:func:`match`, worked out once per set of boxes (the thresholds do not move it, and
    :func:`choose` scores the same photos thousands of times)."""
    key = (tuple(tuple(t["box"]) for t in truth), tuple(tuple(p["box"]) for p in preds))
    if key not in _MATCHES:
        _MATCHES[key] = match(truth, preds)
    return _MATCHES[key]


def score(images: list[dict], detections: dict[str, list[dict]], size: float,
          th: Thresholds | None) -> dict:
    unmasked = alarmed = incorrect = inc_alarmed = inc_labelled = tp = fp = no_face = 0
    for image in images:
        name = Path(image["file"]).name
        truth, preds = image["faces"], detections[name]
        matched = matches_of(truth, preds)
        by_truth = {ti: pi for pi, ti in matched.items()}
        labels = [device_label(p, th) for p in preds]
        for ti, t in enumerate(truth):
            if shorter_side(t["box"]) < size:
                continue
            pi = by_truth.get(ti)
            label = labels[pi] if pi is not None else "missed"
            if t["label"] == "no_mask":
                unmasked += 1
                alarmed += label in ALARMS
            elif t["label"] == "incorrect":
                incorrect += 1
                inc_alarmed += label in ALARMS
                inc_labelled += label == "incorrect"
        for pi, label in enumerate(labels):
            if label not in ALARMS:
                continue
            ti = matched.get(pi)
            if ti is None:
                fp += shorter_side(preds[pi]["box"]) >= size
                no_face += shorter_side(preds[pi]["box"]) >= size
            elif shorter_side(truth[ti]["box"]) >= size:
                tp += truth[ti]["label"] in ALARMS
                fp += truth[ti]["label"] == "mask"
    return {
        "min_side": size,
        "unmasked_faces": unmasked,
        "unmasked_alarmed": round(alarmed / unmasked, 4) if unmasked else None,
        "alarms": tp + fp,
        "false_alarms": fp,
        "false_alarms_no_face": no_face,
        "alarm_precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "incorrect_faces": incorrect,
        "incorrect_alarmed": inc_alarmed,
        "incorrect_labelled_incorrect": inc_labelled,
    }


def subset(images: list[dict], which: str) -> list[dict]:
    return images if which == "full" else [
        i for i in images if half(Path(i["file"]).name) == which
    ]


def choose(
    images: list[dict], detections: dict[str, list[dict]], wear: dict[str, dict | None],
    photos: dict[str, dict | None],
) -> Thresholds:
    """The face-score, presence and wear-check floors with the most net alarms on ``images``
    (at >= 40 px, the acceptance size and the device's default ``detector.min_face``),
    ``wear`` and ``photos`` together: +1 for an alarm on an unmasked or incorrectly masked
    face, -FALSE_ALARM_COST for one on a masked face or on no labelled face, +1 / -1 for a
    wear/ photo worn wrongly / rightly that alarms, -1 for a masked faces/train photo the
    wear check calls incorrect (:func:`photo_net`). The
    score and presence floors ask whether a detection is a face at all; the wear photos
    (synthetic masks worn wrong, on faces BlazeFace scores 0.4-0.7) are in the objective so
    that a floor cannot buy scene precision by hiding true faces. The wear check's floors
    trade masks worn below the nose found (wear/) against masked faces called incorrect
    (scenes, and the faces/train photos no model was trained on). A score floor of 0 is no
    floor (presence alone; the device has none, so a score floor must earn its place: ties
    go to the lower one). Among presence floors that tie, the highest wins: a false alarm
    costs FALSE_ALARM_COST alarms, so where the validation photos cannot tell floors apart
    the one that lets the fewest doubtful faces alarm is the safer bet; likewise the wear
    floors that tie go to the stricter ones.

    The pose range stays the SPEC's (F3): faces beyond it are never alarmed on by
    definition, and on these photos they are true unmasked faces, so widening the range can
    only look better here. The mesh also reads a full profile as 61-63 degrees of yaw (its
    far side is guessed), which leaves no room to widen the yaw range safely."""
    spec = configured()
    grid = itertools.product(SCORE_FLOORS, PRESENCE_FLOORS, UNCOVERED_FLOORS, INCORRECT_FLOORS)
    return max(
        (Thresholds(score_floor, presence_floor, spec.max_yaw, spec.max_pitch, uncovered, wrong)
         for score_floor, presence_floor, uncovered, wrong in grid),
        key=lambda th: (
            _net(score(images, detections, 40, th)) + wear_net(wear, th)
            + photo_net(photos, th),
            -th.min_score, th.min_presence, th.min_uncovered, th.min_incorrect_below_nose,
        ),
    )


def _net(row: dict) -> float:
    return row["alarms"] - (1 + FALSE_ALARM_COST) * row["false_alarms"]


def device_config(models: Path, int8: bool) -> Config:
    """The shipped configuration on the CPU, with the int8 classifiers when asked."""
    config = Config()
    config.paths.models_dir = str(models)
    config.runtime.accelerator = "cpu"
    if int8:
        cls = config.classifier
        for key in ("model", "nose_model"):
            setattr(cls, key, getattr(cls, key).replace("_float.", "_int8."))
    return config


class WideOpen:
    """The device path with the pose and presence gates opened wide and the wear check left
    to :func:`device_label`: each face keeps the classifier's own verdict, and one called
    masked carries the nose check's P(uncovered) (``uncovered``) of its mesh-placed nose."""

    def __init__(self, models: Path, int8: bool, min_face: int = 20) -> None:
        config = device_config(models, int8)
        self.nose = NoseCheck(config.paths.models(), config.classifier.nose_model)
        config.classifier.nose_model = ""
        config.detector.min_face = min_face
        config.gates.max_yaw_deg = config.gates.max_pitch_deg = 90.0
        config.gates.min_presence = 0.0
        self.analyzer = FaceAnalyzer(config)

    def faces(self, image: np.ndarray) -> list[dict]:
        """``maskwatch detect --json``'s faces of ``image``, plus ``uncovered``."""
        results = self.analyzer.analyze(image, classify_gated=True)
        records = [face_json(r) for r in results]
        masked = [i for i, r in enumerate(results) if r.classification.label == Label.MASK]
        if masked:
            found = [results[i].face for i in masked]
            meshes = self.analyzer.landmarks.run(image, found)
            placed = [m.aligned(f) for m, f in zip(meshes, found)]
            for i, p in zip(masked, self.nose.uncovered(image, placed)):
                records[i]["uncovered"] = round(float(p), 4)
        return records

    def largest(self, image: np.ndarray) -> dict | None:
        """The largest face's record with ``other_boxes``, the number of further detections
        (None: no face found)."""
        records = self.faces(image)
        if not records:
            return None
        widest = max(records, key=lambda r: r["box"][2] - r["box"][0])
        return {**widest, "other_boxes": len(records) - 1}


def detect_all(scenes: Path, wide: WideOpen, images: list[dict]) -> dict[str, list[dict]]:
    """The wide-open device path on every scene photo."""
    return {Path(i["file"]).name: wide.faces(read_rgb(scenes / i["file"])) for i in images}


def wear_photos(data: Path) -> list[tuple[int, str, Path]]:
    """(size, key, path) of every wear/ photo at every size; the key is
    "<size>/<folder>/<file name>"."""
    return [
        (size, f"{size}/{folder}/{path.name}", path)
        for size in WEAR_SIZES
        for folder, _ in WEAR_FOLDERS
        for path in sorted((data / "wear" / folder).glob("*.jpg"))
    ]


def wear_subset(wear: dict[str, dict | None], which: str) -> dict[str, dict | None]:
    """The wear/ results of the photos in ``which`` half ("full": all)."""
    return wear if which == "full" else {
        k: v for k, v in wear.items() if half(k.rsplit("/", 1)[1]) == which
    }


def detect_wear(data: Path, wide: WideOpen) -> dict[str, dict | None]:
    """The wide-open device path's largest face of every wear/ photo at every size (None: no
    face found)."""
    return {
        key: wide.largest(
            cv2.resize(read_rgb(path), (size, size), interpolation=cv2.INTER_LINEAR)
        )
        for size, key, path in wear_photos(data)
    }


def detect_photos(data: Path, wide: WideOpen) -> dict[str, dict | None]:
    """The wide-open device path's largest face of every faces/train photo in the split every
    training script held out ("<label>/<file name>"; None: no face found), each photo on a
    grey canvas as in training."""
    return {
        f"{label}/{path.name}": wide.largest(
            find_photo_face(read_rgb(path), wide.analyzer.detector).canvas
        )
        for label in ("mask", "no_mask")
        for path in sorted((data / "faces/train" / label).glob("*.jpg"))
        if held_out(str(path))
    }


def wear_score(wear: dict[str, dict | None], th: Thresholds | None, which: str) -> list[dict]:
    """Per size: incorrectly worn photos flagged incorrect and correctly worn ones called mask
    on the device (no face found counts as wrong), on the photos of ``which`` half."""
    chosen = wear_subset(wear, which)
    rows = []
    for size in WEAR_SIZES:
        row: dict = {"size": size}
        for folder, truth in WEAR_FOLDERS:
            keys = [k for k in chosen if k.startswith(f"{size}/{folder}/")]
            right = sum(wear[k] is not None and device_label(wear[k], th) == truth for k in keys)
            row[f"{folder}_photos"] = len(keys)
            row[f"{folder}_to_{truth}"] = round(right / len(keys), 4) if keys else None
        found = [wear[k] for k in chosen if k.startswith(f"{size}/") and wear[k] is not None]
        row["other_boxes_per_photo"] = (
            round(statistics.mean(f.get("other_boxes", 0) for f in found), 3) if found else None
        )
        rows.append(row)
    return rows


def wear_net(wear: dict[str, dict | None], th: Thresholds) -> int:
    """Alarms on incorrectly worn wear/ photos minus alarms on correctly worn ones."""
    net = 0
    for key, pred in wear.items():
        if pred is not None and device_label(pred, th) in ALARMS:
            net += 1 if key.split("/")[1] == "incorrect" else -1
    return net


def photo_net(photos: dict[str, dict | None], th: Thresholds) -> int:
    """Minus the masked held-out faces/train photos the wear check calls incorrect: the
    photos are web crops with a face in each, so they speak for the wear check's floors only
    (drawings, pink and printed masks whose nose looks bare), not for whether a detection is
    a face."""
    return -sum(
        1 for key, pred in photos.items()
        if key.startswith("mask/") and pred is not None and pred["label"] == "mask"
        and device_label(pred, th) == "incorrect"
    )


def photo_score(photos: dict[str, dict | None], th: Thresholds) -> list[dict]:
    """Share of the held-out faces/train photos of each label that alarm, and of the masked
    ones the wear check calls incorrect (no face found: no alarm)."""
    rows = []
    for label in ("mask", "no_mask"):
        found = [p for k, p in photos.items() if k.startswith(f"{label}/") and p is not None]
        total = sum(k.startswith(f"{label}/") for k in photos)
        labels = [(p["label"], device_label(p, th)) for p in found]
        row = {"label": label, "photos": total,
               "alarmed": round(sum(d in ALARMS for _, d in labels) / total, 4)}
        if label == "mask":
            flagged = sum(own == "mask" and d == "incorrect" for own, d in labels)
            row["called_incorrect_by_the_wear_check"] = round(flagged / total, 4)
        rows.append(row)
    return rows


def photo_figures(data: Path, models: Path, int8: bool = False) -> list[dict]:
    """faces/test through the configured device path (see the module docstring)."""
    analyzer = FaceAnalyzer(device_config(models, int8))
    rows = []
    for folder, truth in (("faces/test/mask", "mask"), ("faces/test/no_mask", "no_mask")):
        device = reported = missed = 0
        extra: list[int] = []
        paths = sorted((data / folder).glob("*.jpg"))
        for path in paths:
            image = find_photo_face(read_rgb(path), analyzer.detector).canvas
            results = analyzer.analyze(image, classify_gated=True)
            if not results:
                missed += 1
                extra.append(0)
                continue
            face = max(results, key=lambda r: r.face.width)
            reported += face.classification.label.value == truth
            device += face.reason is None and face.classification.label.value == truth
            extra.append(len(results) - 1)
        rows.append({
            "set": folder, "photos": len(paths),
            "no_face_found": missed,
            f"{truth}_device": round(device / len(paths), 4),
            f"{truth}_reported": round(reported / len(paths), 4),
            "other_boxes_per_photo": round(statistics.mean(extra), 3),
        })
    return rows


def configured() -> Thresholds:
    cfg = Config()
    return Thresholds(0.0, cfg.gates.min_presence, cfg.gates.max_yaw_deg,
                      cfg.gates.max_pitch_deg, cfg.classifier.min_uncovered,
                      cfg.classifier.min_incorrect_below_nose)


def report(images: list[dict], detections: dict[str, list[dict]],
           th: Thresholds | None) -> list[dict]:
    return [
        {"set": which, **score(subset(images, which), detections, size, th)}
        for which in ("full", "heldout", "validation") for size in SIZES
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data")
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--detections", type=Path,
                        help="score these `maskwatch detect --json` lines as they are")
    parser.add_argument("--int8", action="store_true", help="the int8 classifiers")
    parser.add_argument("--photos", action="store_true",
                        help="also faces/test and wear/ through the device path")
    parser.add_argument("--cache", type=Path,
                        help="the wide-open run's detections: read if present, else written")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    scenes = args.data / "scenes/andrewmvd"
    images = json.loads((scenes / "annotations.json").read_text())["images"]
    if args.detections is not None:
        detections = {}
        for line in args.detections.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                detections[Path(record["image"]).name] = record["faces"]
        for row in report(images, detections, None):
            print(json.dumps(row))
        return 0
    if args.cache is not None and args.cache.is_file():
        cached = json.loads(args.cache.read_text())
        detections, wear, photos = cached["scenes"], cached["wear"], cached["photos"]
    else:
        detections = detect_all(scenes, WideOpen(args.models, args.int8), images)
        device_size = WideOpen(args.models, args.int8, Config().detector.min_face)
        wear = detect_wear(args.data, device_size)
        photos = detect_photos(args.data, device_size)
        if args.cache is not None:
            args.cache.write_text(
                json.dumps({"scenes": detections, "wear": wear, "photos": photos})
            )
    chosen = choose(
        subset(images, "validation"), detections, wear_subset(wear, "validation"), photos
    )
    print("chosen on validation:", json.dumps(chosen.__dict__))
    print("configured:", json.dumps(configured().__dict__))
    for name, th in (("chosen", chosen), ("configured", configured())):
        for row in report(images, detections, th):
            print(name, json.dumps(row))
        for which in ("full", "heldout", "validation"):
            for row in wear_score(wear, th, which):
                print(name, "wear", json.dumps({"set": which, **row}))
        for row in photo_score(photos, th):
            print(name, "faces/train held out", json.dumps(row))
    if args.photos:
        for row in photo_figures(args.data, args.models, args.int8):
            print("photos", json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
