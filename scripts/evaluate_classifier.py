#!/usr/bin/env python3
"""Print every accuracy figure of the mask classifier from ../shared/data in one run.

For the shipped classifiers (the mask classifier and the nose check of the wear check:
maskwatch.vision.wear_check), float and int8, the mask classifier alone and with the wear check,
on crops placed by the face mesh as on the device:
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
from dataset import CLASSES, REPO, list_faces, list_folder, make_crops
from score_scenes import score

from maskwatch.cli.detect import face_json
from maskwatch.cli.image_io import read_rgb
from maskwatch.config import ClassifierConfig, Config
from maskwatch.vision.face_analyzer import FaceAnalyzer
from maskwatch.vision.mask_classifier import MaskClassifier, model_crop
from maskwatch.vision.nose_check import NoseCheck
from maskwatch.vision.wear_check import WearCheck, WearRules

log = logging.getLogger("evaluate_classifier")

# The pose and quality gates (F3, F4): faces the device leaves out by design; the low face
# score rule stays, since it is about whether a detection is a face at all.
POSE_QUALITY = frozenset(
    {"pose_out_of_range", "cut_by_edge", "blurred", "underexposed", "overexposed"}
)


def classify_all(classifier: MaskClassifier, crops: np.ndarray, batch: int = 64) -> list:
    """Verdicts as the device makes them: each crop with its mirror image."""
    results = []
    for start in range(0, len(crops), batch):
        results += classifier.classify(crops[start : start + batch], mirrored=True)
    return results


class Judge:
    """The device's verdict on data-set crops: the mask classifier, then the wear check
    (maskwatch.vision.wear_check) with nose patches made from the same photos."""

    def __init__(self, models: Path, main: str, nose: str, cache: Path) -> None:
        self.models, self.cache = models, cache
        self.main = MaskClassifier(models, main)
        self.wear = WearCheck(
            NoseCheck(models, nose) if nose else None, WearRules.of(ClassifierConfig())
        )

    def labels(
        self, items: list, crops: dict, overlays: str = "", seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Class index per crop (CLASSES order), alone and with the wear check."""
        verdicts = classify_all(self.main, crops["x"])
        alone = np.array([CLASSES.index(v.label.value) for v in verdicts])
        nose = self.wear.nose
        # Photos whose face the detector missed have no patch: no nose seen uncovered.
        uncovered = {}
        if nose is not None:
            patches = make_crops(
                items, self.models, self.cache, overlays, seed, nose_size=nose.input_size,
                aligned=True,
            )
            uncovered = dict(zip(patches["paths"], nose.classify_patches(patches["x"])))
        verdicts = self.wear.judge(
            verdicts,
            lambda chosen: np.array([uncovered.get(crops["paths"][i], 0.0) for i in chosen]),
        )
        return alone, np.array([CLASSES.index(v.label.value) for v in verdicts])


def share(labels: np.ndarray, y: np.ndarray, label: str) -> float:
    sel = y == CLASSES.index(label)
    return round(float((labels[sel] == CLASSES.index(label)).mean()), 4)


def recall_of(labels: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {name: share(labels, y, name) for name in CLASSES[:2]}


def scene_figures(classifier: ClassifierConfig, models_dir: Path, scenes: Path) -> list[dict]:
    config = Config(classifier=classifier)
    config.paths.models_dir = str(models_dir)
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
    shipped = ClassifierConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data")
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--stem", default=shipped.model.removesuffix("_float.tflite"))
    parser.add_argument(
        "--nose", default=shipped.nose_model.removesuffix("_float.tflite"),
        help='stem of the nose check ("" = none)',
    )
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/maskwatch")
    parser.add_argument("--skip-scenes", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    geometry = model_crop(args.models, f"{args.stem}_float.tflite")
    sets = {
        "test": (list_faces(args.data, "test"), ""),
        "wear": (
            list_folder(args.data / "wear/correct", "mask")
            + list_folder(args.data / "wear/incorrect", "incorrect"),
            "",
        ),
        "heldout": (list_folder(args.data / "faces/test/no_mask", "no_mask"), "heldout"),
    }
    seed = {"": 0, "heldout": 99}
    crops = {
        name: make_crops(
            items, args.models, args.cache, overlays, seed[overlays], geometry, aligned=True
        )
        for name, (items, overlays) in sets.items()
    }

    report: dict[str, dict] = {}
    for kind in ("float", "int8"):
        stems = (args.stem, args.nose)
        files = [f"{stem}_{kind}.tflite" if stem else "" for stem in stems]
        judge = Judge(args.models, *files, args.cache)
        labels = {
            name: judge.labels(items, crops[name], overlays, seed[overlays])
            for name, (items, overlays) in sets.items()
        }
        figures: dict[str, object] = {}
        for view, which in (("alone", 0), ("with the wear check", 1)):
            test, wear, held = (labels[n][which] for n in ("test", "wear", "heldout"))
            figures[view] = {
                "faces_test_recall": recall_of(test, crops["test"]["y"]),
                "wear_incorrect_recall": share(wear, crops["wear"]["y"], "incorrect"),
                "wear_correct_as_mask": share(wear, crops["wear"]["y"], "mask"),
                "heldout_overlay_as_drawn": round(float((held == crops["heldout"]["y"]).mean()), 4),
                "heldout_overlay_images": int(len(held)),
            }
        if not args.skip_scenes:
            device = ClassifierConfig(model=files[0], nose_model=files[1])
            figures["scenes"] = scene_figures(device, args.models, args.data / "scenes/andrewmvd")
        report[kind] = figures
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for kind, figures in report.items():
        print(f"== {kind}: {args.stem}, nose check {args.nose or '-'}")
        for view in ("alone", "with the wear check"):
            for key, value in figures[view].items():
                print(f"  {view}: {key}: {value}")
        for row in figures.get("scenes", []):
            print(f"  scenes >= {row.pop('min_side'):.0f} px, {row.pop('view')}: {json.dumps(row)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
