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
from pathlib import Path

import cv2
import numpy as np
from dataset import (
    CLASSES,
    held_out,
    list_faces,
    make_crops,
    recall_by_class,
    source_of,
)

from maskwatch.sources.model_fetch import ASSETS, sha256_of
from maskwatch.vision.face_crop import CROP_SIZE, CropGeometry
from maskwatch.vision.mask_classifier import MANIFEST

log = logging.getLogger("train_classifier")

# The shipped classifier (v6): three classes (mask, no_mask, incorrect), masks drawn on the
# no_mask photos (worn correctly, below the nose, on the chin: the same face with and without
# a mask, so that nose and mouth decide, not the photo's style), face turns, tilts and
# frame-edge cuts in the augmentation, hard examples weighted up, and crops placed by the face
# mesh (Mesh.aligned) as on the device, reaching below the chin (scale 1.25, centre moved 8 %
# of the box towards the chin, where a mask worn on the chin shows). Earlier recipes (v1-v5,
# models/README.md) cut their crops from the detector's boxes.
STEM = "mask_classifier_v6"
GEOMETRY = CropGeometry(scale=1.25, shift=0.08)
# Hard-example weighting: from this epoch on, every HARD_EVERY epochs, each training
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
            "source": f"trained by scripts/train_classifier.py --seed {report['seed']} "
                      f"--epochs {report['epochs']}",
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
    args = parser.parse_args()
    tf = seeded_tensorflow(args)
    if tf is None:
        return 2
    started = time.time()
    classes = CLASSES
    stem = STEM

    train = make_crops(
        list_faces(args.data, "train"), args.detector_models, args.cache, "train", args.seed,
        GEOMETRY, aligned=True,
    )
    test = make_crops(
        list_faces(args.data, "test"), args.detector_models, args.cache, geometry=GEOMETRY,
        aligned=True,
    )
    log.info(
        "crops ready: train %d (%d synthetic, detector found %.1f%%), test %d (%.1f%%)",
        len(train["y"]), train["synthetic"].sum(), 100 * train["detected"].mean(),
        len(test["y"]), 100 * test["detected"].mean(),
    )

    rng = np.random.default_rng(args.seed)
    # Validation holds out whole photos (with their drawn-mask variants), one in ten by name.
    held = np.array([held_out(p) for p in train["paths"]])
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
    weights = np.array([class_weight[int(y)] for y in y_fit], np.float32)
    hardness = np.ones(len(y_fit), np.float32)
    for epoch in range(args.epochs):
        if epoch >= HARD_FROM and (epoch - HARD_FROM) % HARD_EVERY == 0:
            own = model.predict(x_fit, batch_size=256, verbose=0)[np.arange(len(y_fit)), y_fit]
            hardness = 1.0 + HARD_GAIN * (1.0 - own)
            log.info("hard examples: %d of %d below 0.5", int((own < 0.5).sum()), len(own))
        x_aug = np.stack([augment(c, rng, strong=True) for c in x_fit])
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
        "classes": list(classes),
        "crop": {"scale": GEOMETRY.scale, "shift": GEOMETRY.shift},
        "input": {"size": CROP_SIZE, "channels": "RGB", "dtype": "uint8 0..255 (int8 model) "
                  "or float32 0..255 (float model)"},
        "seed": args.seed,
        "epochs": args.epochs,
        "train_images": int(len(y_fit)),
        "val_images": int(n_val),
        "train_detector_found_share": round(float(train["detected"].mean()), 4),
        "data": "../shared/data/faces/train (facemask12k, chandrikadeb7, rmfd_part1) plus masks "
        "drawn on its no_mask photos by maskwatch.sources.mask_overlay (train palette)",
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
