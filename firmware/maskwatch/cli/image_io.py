"""Reading still images from disk for the offline tools."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8; ValueError names the file when it is not a readable image."""
    try:
        data = np.fromfile(str(path), np.uint8)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise ValueError(f"{path}: not a readable image (JPEG, PNG, BMP, WebP or TIFF expected)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def expand_image_paths(paths: list[str]) -> list[Path]:
    """Files as given, directories replaced by the images inside them, sorted by name."""
    result: list[Path] = []
    for given in paths:
        p = Path(given)
        if p.is_dir():
            result += sorted(c for c in p.iterdir() if c.suffix.lower() in IMAGE_SUFFIXES)
        else:
            result.append(p)
    return result
