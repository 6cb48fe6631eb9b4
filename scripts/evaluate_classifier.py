#!/usr/bin/env python3
"""Print every accuracy figure of the mask classifier from ../shared/data in one run.

For each exported model (float and int8):
  1. faces/test: recall of mask and no_mask
  2. wear/ (synthetic, evaluation only): incorrect recall, correctly worn labelled mask
  3. held-out overlays: masks in colours and patterns training never used, drawn on the
     faces/test no_mask photos: share labelled mask (incorrect where drawn incorrect)
  4. scenes/andrewmvd through the whole device path (detector, gates, classifier): face
     recall, no_mask recall and precision, what `incorrect` faces were called

    python scripts/evaluate_classifier.py [--models models] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from dataset import CLASSES, REPO, list_faces, list_folder, make_crops, recall_by_class
from maskwatch.config import Config
from maskwatch.detect_cmd import face_json
from maskwatch.face_analyzer import FaceAnalyzer
from maskwatch.image_io import read_rgb
from maskwatch.mask_classifier import MaskClassifier, model_crop
from score_scenes import score

log = logging.getLogger("evaluate_classifier")

# The pose and quality gates (F3, F4): faces the device leaves out by design; the low face
# score rule stays, since it is about whether a detection is a face at all.
POSE_QUALITY = frozenset(
    {"pose_out_of_range", "cut_by_edge", "blurred", "underexposed", "overexposed"}
)


def classify_all(classifier: MaskClassifier, crops: np.ndarray, batch: int = 64) -> np.ndarray:
    probs = []
    for start in range(0, len(crops), batch):
        results = classifier.classify(crops[start : start + batch])
        probs += [[r.probs.get(c, 0.0) for c in CLASSES] for r in results]
    return np.array(probs)


def share(probs: np.ndarray, y: np.ndarray, label: str) -> float:
    sel = y == CLASSES.index(label)
    return round(float((probs[sel].argmax(axis=1) == CLASSES.index(label)).mean()), 4)


def scene_figures(model_file: str, models_dir: Path, scenes: Path) -> list[dict]:
    config = Config()
    config.paths.models_dir = str(models_dir)
    config.classifier.model = model_file
    config.detector.min_face = 20
    config.runtime.accelerator = "cpu"
    analyzer = FaceAnalyzer(config)
    annotations = json.loads((scenes / "annotations.json").read_text())
    detections = {}
    for image in annotations["images"]:
        results = analyzer.analyze(read_rgb(scenes / image["file"]), classify_gated=True)
        detections[Path(image["file"]).name] = [face_json(r) for r in results]
    return [
        {"view": view, **score(detections, annotations, size, ignored)}
        for view, ignored in (("device", frozenset()), ("F3/F4 gates ignored", POSE_QUALITY))
        for size in (40, 24)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data")
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--stem", default="mask_classifier_v2")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/maskwatch")
    parser.add_argument("--skip-scenes", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    geometry = model_crop(args.models, f"{args.stem}_float.tflite")
    test = make_crops(list_faces(args.data, "test"), args.models, args.cache, geometry=geometry)
    wear = make_crops(
        list_folder(args.data / "wear/correct", "mask")
        + list_folder(args.data / "wear/incorrect", "incorrect"),
        args.models, args.cache, geometry=geometry,
    )
    no_mask_test = list_folder(args.data / "faces/test/no_mask", "no_mask")
    heldout = make_crops(no_mask_test, args.models, args.cache, "heldout", 99, geometry)

    report: dict[str, dict] = {}
    for kind in ("float", "int8"):
        model_file = f"{args.stem}_{kind}.tflite"
        classifier = MaskClassifier(args.models, model_file)
        test_probs = classify_all(classifier, test["x"])
        wear_probs = classify_all(classifier, wear["x"])
        held_probs = classify_all(classifier, heldout["x"])
        figures = {
            "faces_test_recall": recall_by_class(test_probs, test["y"]),
            "wear_incorrect_recall": share(wear_probs, wear["y"], "incorrect"),
            "wear_correct_as_mask": share(wear_probs, wear["y"], "mask"),
            "heldout_overlay_as_drawn": round(
                float((held_probs.argmax(axis=1) == heldout["y"]).mean()), 4
            ),
            "heldout_overlay_images": int(len(heldout["y"])),
        }
        if not args.skip_scenes:
            scenes = args.data / "scenes/andrewmvd"
            figures["scenes"] = scene_figures(model_file, args.models, scenes)
        report[kind] = figures
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for kind, figures in report.items():
        print(f"== {args.stem}_{kind}.tflite")
        for key, value in figures.items():
            if key == "scenes":
                for row in value:
                    print(
                        f"  scenes >= {row.pop('min_side'):.0f} px, {row.pop('view')}: "
                        f"{json.dumps(row)}"
                    )
            else:
                print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
