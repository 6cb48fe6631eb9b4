"""Which detector views run on a live frame when the face mesh follows the known faces.

Once a face is found, the face mesh follows it (:mod:`maskwatch.vision.face_follower`), so the
detector is only needed for faces new to the scene, and those may wait a few frames. The views
of a full scan (the whole frame plus its tiles, see :mod:`maskwatch.vision.face_detector`) run
spread evenly over ``frames_per_cycle`` processed frames, each once per cycle: a new face
anywhere in the frame is looked for within that many frames.

Since every tile runs once per cycle, each level of tiles runs as one merged view
(:func:`maskwatch.vision.face_detector.merged_view`) when that view stays small: at 1280x720
with 40 px faces one 448x256 input instead of six 192x192 ones, which skips the tiles'
overlaps and padding (about 60 % of the six tiles' cost). A cycle is then two views, and the
frames between them run no detector at all.
"""

from __future__ import annotations

import math

from maskwatch.vision.face_detector import View, merged_view

# Every view runs within this much video time at the processing rate (a new face is found
# within it): 7 frames at the service's 15 fps.
SEARCH_PERIOD_S = 0.5
# Longest side (input pixels) of a merged view; larger levels (big frames, small faces) keep
# their tiles, so the rewritten network stays small.
MAX_MERGED_INPUT = 512


def frames_per_cycle(fps: float) -> int:
    """Processed frames in which every view must run once, at ``fps`` processed frames a
    second (never more than :data:`SEARCH_PERIOD_S` of video time)."""
    return max(1, math.floor(SEARCH_PERIOD_S * fps + 1e-6))


def merged_levels(views: list[View]) -> list[View]:
    """A full scan's views with each level of tiles as one merged view where it stays small."""
    result = [v for v in views if v.whole_frame]
    tiles = [v for v in views if not v.whole_frame]
    for scale in dict.fromkeys(t.scale for t in tiles):
        level = [t for t in tiles if t.scale == scale]
        merged = merged_view(level)
        result += [merged] if max(merged.input_shape()) <= MAX_MERGED_INPUT else level
    return result


class ViewRotation:
    """Hands out a full scan's views spread over a cycle of frames."""

    def __init__(self, frames_per_cycle: int) -> None:
        self.frames_per_cycle = frames_per_cycle
        self._frame = 0

    def next(self, views: list[View]) -> list[View]:
        """This frame's share of ``views`` (the full scan of the current frame size): view
        ``j`` of ``n`` runs on frame ``j * cycle // n`` of each cycle."""
        chosen = merged_levels(views)
        slot = self._frame % self.frames_per_cycle
        self._frame += 1
        count = len(chosen)
        return [v for j, v in enumerate(chosen) if j * self.frames_per_cycle // count == slot]
