#!/usr/bin/env python3
"""Train the nose check (maskwatch.vision.nose_check) and export it to TFLite (float and full-int8).

Classes: covered (real masked photos of faces/train, masks drawn on correctly) and uncovered
(real unmasked photos, masks drawn below the nose or on the chin). The uncovered class is
mostly real noses, so the model learns skin against fabric, not the look of a drawing.
Needs the `[train]` extra and ../shared/data; reproducible from --seed; about 12 minutes here.

    python scripts/train_nose_check.py --data ../shared/data --out models
"""

from __future__ import annotations

import json
import logging
import sys
import time

import numpy as np
from dataset import CLASSES, held_out, list_faces, list_folder, make_crops
from train_classifier import (
    augment,
    export,
    seeded_tensorflow,
    separable_cnn,
    tflite_predict,
    training_args,
)

from maskwatch.sources.model_fetch import sha256_of
from maskwatch.vision.mask_classifier import MANIFEST
from maskwatch.vision.nose_check import UNCOVERED

log = logging.getLogger("train_nose_check")

NOSE_CLASSES = ("covered", UNCOVERED)
PATCH_SIZE = 32
# The report's figures are at this threshold: the nose check deciding alone, without the wear
# classifier (config [classifier] min_uncovered is lower because the two must agree).
MIN_UNCOVERED = 0.9


def uncovered_label(y: np.ndarray) -> np.ndarray:
    """Mask-classifier labels to nose labels: only a mask worn correctly covers the nose."""
    return (y != CLASSES.index("mask")).astype(np.int64)


def build_model(tf):
    """A 32 px patch costs a fraction of the face model."""
    blocks = ((32, 2), (32, 1), (64, 2), (64, 1), (96, 2))
    return separable_cnn(tf, PATCH_SIZE, "nose", (16, 1), blocks, 0.2, len(NOSE_CLASSES))


def flagged_share(probs: np.ndarray, y: np.ndarray, label: int) -> float:
    """Share of the patches of ``label`` that the device would call uncovered."""
    sel = y == label
    return round(float((probs[sel, 1] >= MIN_UNCOVERED).mean()), 4) if sel.any() else 0.0


def main() -> int:
    args = training_args(__doc__.splitlines()[0], epochs=12).parse_args()
    tf = seeded_tensorflow(args)
    if tf is None:
        return 2
    started = time.time()

    def patches(items: list[tuple[str, int]], overlays: str = "") -> dict[str, np.ndarray]:
        return make_crops(
            items, args.detector_models, args.cache, overlays, args.seed, nose_size=PATCH_SIZE
        )

    train = patches(list_faces(args.data, "train"), "train")
    test = patches(list_faces(args.data, "test"))
    wear = patches(
        list_folder(args.data / "wear/correct", "mask")
        + list_folder(args.data / "wear/incorrect", "incorrect")
    )
    y_all = uncovered_label(train["y"])
    held = np.array([held_out(p) for p in train["paths"]])
    fit_idx = np.flatnonzero(~held)
    x_fit, y_fit = train["x"][fit_idx], y_all[fit_idx]
    log.info("patches: train %d (%d synthetic), test %d, wear %d",
             len(y_fit), int(train["synthetic"][fit_idx].sum()), len(test["y"]), len(wear["y"]))

    model = build_model(tf)
    steps = args.epochs * int(np.ceil(len(y_fit) / 64))
    model.compile(
        optimizer=tf.keras.optimizers.Adam(tf.keras.optimizers.schedules.CosineDecay(2e-3, steps)),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    rng = np.random.default_rng(args.seed)
    for epoch in range(args.epochs):
        x_aug = np.stack([augment(c, rng, strong=True) for c in x_fit])
        hist = model.fit(
            x_aug, y_fit, batch_size=64, epochs=epoch + 1,
            initial_epoch=epoch, verbose=0, shuffle=True,
        )
        log.info("epoch %d/%d loss %.4f acc %.4f (%.0f s)", epoch + 1, args.epochs,
                 hist.history["loss"][-1], hist.history["accuracy"][-1], time.time() - started)

    args.out.mkdir(parents=True, exist_ok=True)
    calibration = train["x"][rng.choice(fit_idx, 400, replace=False)]
    paths = export(tf, model, args.out, "nose_check_v2", calibration)
    metrics = {}
    for kind, path in paths.items():
        val_probs = tflite_predict(path, train["x"][held])
        test_probs = tflite_predict(path, test["x"])
        wear_probs = tflite_predict(path, wear["x"])
        test_y, wear_y = uncovered_label(test["y"]), uncovered_label(wear["y"])
        metrics[kind] = {
            "val_accuracy": round(float((val_probs.argmax(1) == y_all[held]).mean()), 4),
            "faces_test_masked_flagged": flagged_share(test_probs, test_y, 0),
            "faces_test_unmasked_flagged": flagged_share(test_probs, test_y, 1),
            "wear_incorrect_flagged": flagged_share(wear_probs, wear_y, 1),
            "wear_correct_flagged": flagged_share(wear_probs, wear_y, 0),
        }
        log.info("%s: %s", kind, json.dumps(metrics[kind]))

    manifest_path = args.out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    for kind, path in paths.items():
        manifest.setdefault("files", {})[path.name] = {
            "kind": f"nose check ({kind})",
            "classes": list(NOSE_CLASSES),
            "input": {"size": PATCH_SIZE, "patch": "maskwatch.vision.nose_check.nose_patch"},
            "sha256": sha256_of(path),
            "source": f"trained by scripts/train_nose_check.py --seed {args.seed} "
                      f"--epochs {args.epochs}",
            "data": "../shared/data/faces/train (facemask12k, chandrikadeb7, rmfd_part1) plus "
                    "masks drawn on its no_mask photos by maskwatch.sources.mask_overlay (train palette)",
            "metrics": metrics[kind],
        }
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log.info("done in %.0f s", time.time() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
