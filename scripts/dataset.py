"""Classifier crops from ../shared/data for training and evaluation, cached on disk.

Every crop is made the way the device makes it (our detector, our crop function and, with
``aligned``, the face placed by the face mesh as the device places it). Synthetic
mask examples are drawn by maskwatch.sources.mask_overlay on the unmasked training photos before
cropping, so a drawn mask goes through exactly the resampling a real one would.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from maskwatch.cli.image_io import read_rgb
from maskwatch.sources.mask_overlay import Placement, draw_mask, random_style
from maskwatch.vision.face_crop import CROP_SIZE, CropGeometry
from maskwatch.vision.face_detector import FaceDetector
from maskwatch.vision.face_landmarks import FaceLandmarks
from maskwatch.vision.nose_check import nose_patch
from maskwatch.vision.photo_crops import find_photo_face

log = logging.getLogger(__name__)

CLASSES = ("mask", "no_mask", "incorrect")
REPO = Path(__file__).resolve().parents[1]
WORKERS = 2
CODE_FILES = (
    "vision/face_crop", "vision/photo_crops", "vision/face_detector", "sources/mask_overlay",
)


def list_folder(folder: Path, label: str) -> list[tuple[str, int]]:
    return [(str(p), CLASSES.index(label)) for p in sorted(folder.glob("*.jpg"))]


def list_faces(data: Path, split: str) -> list[tuple[str, int]]:
    return [
        item
        for label in ("mask", "no_mask")
        for item in list_folder(data / "faces" / split / label, label)
    ]


def held_out(path: str) -> bool:
    """Whether a faces/train photo is in the validation split every training script holds out
    (one in ten, by file name, so a photo's drawn-mask variants go with it)."""
    return zlib.crc32(Path(path).name.encode()) % 10 == 0


def source_of(path: str) -> str:
    """Data-set source from the file-name prefix (see ../shared/data/README.md)."""
    name = Path(path).name
    for prefix in ("facemask12k", "chandrikadeb7", "rmfd_part1", "maskedfacenet"):
        if name.startswith(prefix):
            return prefix
    return "other"


def _cache_key(
    items: Iterable[tuple[str, int]], extra: str, modules: tuple[str, ...] = CODE_FILES
) -> str:
    key = hashlib.sha256(extra.encode())
    for path, label in items:
        key.update(f"{path}:{label}\n".encode())
    for module in modules:
        key.update((REPO / "firmware/maskwatch" / f"{module}.py").read_bytes())
    return key.hexdigest()[:16]


def make_crops(
    items: list[tuple[str, int]],
    models_dir: Path,
    cache: Path,
    overlays: str = "",
    seed: int = 0,
    geometry: CropGeometry = CropGeometry(),
    nose_size: int = 0,
    aligned: bool = False,
) -> dict[str, np.ndarray]:
    """Crops (x), labels (y), whether the detector found the face, and paths.

    ``aligned``: each crop's face placed by the face mesh run on that very canvas (the drawn
    mask included), as :class:`maskwatch.vision.face_analyzer.FaceAnalyzer` places it.

    ``nose_size``: nose patches of that size (maskwatch.vision.nose_check) instead of classifier
    crops; photos whose face the detector missed are left out, a patch needs keypoints.

    ``overlays``: "" none; "train" adds, for every unmasked photo whose face was detected, one
    incorrectly worn mask and (every second photo) one correctly worn mask, drawn with the
    training palette; "heldout" replaces each detected unmasked photo by one correctly or
    incorrectly worn mask in colours and patterns training never saw.
    """
    extra = f"{overlays}:{seed}:{geometry.scale}:{geometry.shift}"
    modules = CODE_FILES
    if aligned:
        extra += ":mesh"
        modules += ("vision/face_landmarks",)
    if nose_size:
        extra += f":nose{nose_size}"
        modules += ("vision/nose_check",)
    cached = cache / f"crops_{_cache_key(items, extra, modules)}.npz"
    if cached.is_file():
        log.info("using cached crops %s", cached)
        with np.load(cached) as z:
            return {k: z[k] for k in z.files}
    jobs = [
        (path, label, overlays, seed, i, str(models_dir), geometry, nose_size, aligned)
        for i, (path, label) in enumerate(items)
    ]
    rows: list[tuple[np.ndarray, int, bool, str, bool]] = []
    # Two worker processes (the machine has two cores); every item seeds its own generator,
    # so the result does not depend on how the work is split.
    with multiprocessing.get_context("spawn").Pool(WORKERS) as pool:
        for i, item_rows in enumerate(pool.imap(_item_crops, jobs, chunksize=64)):
            rows += item_rows
            if i % 2000 == 0:
                log.info("cropped %d / %d", i, len(items))
    crops = [r[0] for r in rows]
    labels, detected, paths, synthetic = ([r[k] for r in rows] for k in range(1, 5))
    out = {
        "x": (
            np.stack(crops).astype(np.uint8) if crops
            else np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8)
        ),
        "y": np.array(labels, np.int64),
        "detected": np.array(detected, bool),
        "paths": np.array(paths),
        "synthetic": np.array(synthetic, bool),
    }
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(cached, **out)
    return out


_detector: FaceDetector | None = None
_mesh: FaceLandmarks | None = None


def _item_crops(job: tuple[str, int, str, int, int, str, CropGeometry, int, bool]) -> list[tuple]:
    """The crops of one photo: the photo itself and any masks drawn on it."""
    global _detector, _mesh
    path, label, overlays, seed, index, models_dir, geometry, nose_size, aligned = job
    if _detector is None:
        _detector = FaceDetector(Path(models_dir), min_face=16, score_threshold=0.5)
        _mesh = FaceLandmarks(Path(models_dir))
    rng = np.random.default_rng([seed, index])
    photo = find_photo_face(read_rgb(path), _detector)
    if nose_size and photo.face is None:
        return []

    def cut(canvas: np.ndarray) -> np.ndarray:
        face = photo.face
        if aligned and face is not None and _mesh is not None:
            face = _mesh.run(canvas, [face])[0].aligned(face)
        if nose_size and face is not None:
            return nose_patch(canvas, face, nose_size)
        return photo.crop(canvas, geometry, face)

    rows = []
    if overlays != "heldout":
        rows.append((cut(photo.canvas), label, photo.detected, path, False))
    if overlays and label == CLASSES.index("no_mask") and photo.face is not None:
        for placement in _placements(overlays, index, rng):
            style = random_style(rng, placement=placement, palette=overlays)
            drawn = draw_mask(photo.canvas, photo.face.keypoints, style, rng)
            target = "mask" if placement is Placement.CORRECT else "incorrect"
            rows.append((cut(drawn), CLASSES.index(target), True, path, True))
    return rows


def _placements(overlays: str, index: int, rng: np.random.Generator) -> list[Placement]:
    wrong = Placement.UNDER_NOSE if rng.random() < 0.5 else Placement.ON_CHIN
    if overlays == "heldout":
        return [Placement.CORRECT if index % 2 == 0 else wrong]
    return [wrong, Placement.CORRECT] if index % 2 == 0 else [wrong]


def recall_by_class(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    pred = probs.argmax(axis=1)
    return {
        name: round(float((pred[y == i] == i).mean()), 4)
        for i, name in enumerate(CLASSES)
        if (y == i).any()
    }
