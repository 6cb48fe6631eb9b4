"""Privacy zones (F10): polygons blacked out before anything looks at the frame.

Filling the pixels, rather than only dropping faces found inside a zone afterwards, means
a face there is never detected and so never shown, stored or notified: the page, snapshots
and alarms all get the filled image. A "face" the detector still reports with its centre in
a zone (the black edge against hair or a collar, at a low score) is dropped as well. The
filled image is a copy because sources may reuse their buffers and the page may still be
sending the previous frame.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from maskwatch.config import PrivacyConfig, PrivacyZone

log = logging.getLogger(__name__)

_SHIFT = 4  # cv2.fillPoly fixed-point bits: zone corners keep 1/16 px precision


class PrivacyMask:
    """The configured zones rasterised once per frame size, so a frame costs one copy and one
    masked write limited to the zones' bounding box."""

    def __init__(self, config: PrivacyConfig) -> None:
        self.zones = list(config.zones)
        self._size: tuple[int, int] | None = None
        self._mask = np.zeros((0, 0, 1), bool)  # inside a zone, within the bounding box below
        self._box = (slice(0, 0), slice(0, 0))
        if self.zones:
            log.info("%d privacy zone(s) are blacked out before detection", len(self.zones))

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``image`` (H x W x 3) with every zone filled black; the image itself when there are
        no zones, since there is nothing to hide."""
        if not self.zones:
            return image
        height, width = image.shape[:2]
        if self._size != (height, width):
            self._prepare(height, width)
        out = image.copy()
        np.copyto(out[self._box], 0, where=self._mask)
        return out

    def covers(self, x: float, y: float) -> bool:
        """Whether frame pixel (x, y) lies in a zone of the last frame given to :meth:`apply`."""
        rows, cols = self._box
        row, col = int(y) - (rows.start or 0), int(x) - (cols.start or 0)
        if not (0 <= row < self._mask.shape[0] and 0 <= col < self._mask.shape[1]):
            return False
        return bool(self._mask[row, col, 0])

    def _prepare(self, height: int, width: int) -> None:
        full = np.zeros((height, width), np.uint8)
        for zone in self.zones:
            points = _pixels(zone, width, height)
            cv2.fillPoly(full, [points], (1,), cv2.LINE_8, shift=_SHIFT)
        ys, xs = np.nonzero(full)
        if len(ys) == 0:
            log.warning(
                "no privacy zone overlaps the %dx%d frame: are the pixel zones meant for another "
                "resolution? (normalized = true makes them independent of it)", width, height,
            )
            self._box = (slice(0, 0), slice(0, 0))
        else:
            self._box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        self._mask = full[self._box].astype(bool)[:, :, None]
        self._size = (height, width)
        log.debug("privacy mask for %dx%d covers %d pixels", width, height, len(ys))


def _pixels(zone: PrivacyZone, width: int, height: int) -> np.ndarray:
    """The zone's corners in fixed-point frame pixels, as cv2.fillPoly takes them."""
    points = np.array(zone.points, np.float64)
    if zone.normalized:
        points *= (width, height)
    return np.round(points * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)
