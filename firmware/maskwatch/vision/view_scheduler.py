"""Which detector views run on a live frame: tiles holding faces, and the other tiles in turn.

A full scan (the whole frame plus every tile, see :mod:`maskwatch.vision.face_detector`) costs one
model run per view, about 4 ms each on one core. On live video a face found in a tile is,
one processed frame later, still inside that tile (tiles overlap by more than a small face).
So each frame runs the whole-frame view, the tiles holding the previous frame's small faces
(those the whole-frame view is too coarse for), and ``tiles_per_frame`` further tiles in
turn: a new small face is found within ceil(tiles / tiles_per_frame) frames, and a tracked
one is seen in every frame, which the decision's frame counts rely on.

When that leaves every tile of a level to run (small faces all over the frame), the level
runs as one merged view instead (:func:`maskwatch.vision.face_detector.merged_view`), which skips
the tiles' overlaps and padding: at 1280x720 with 40 px faces half the input pixels.
"""

from __future__ import annotations

from maskwatch.types import Face
from maskwatch.vision.face_detector import View, merged_view

# Longest side (input pixels) of a merged view; larger levels (big frames, small faces) keep
# their tiles, so the rewritten network stays small.
MAX_MERGED_INPUT = 512


class ViewScheduler:
    def __init__(self, tiles_per_frame: int) -> None:
        self.tiles_per_frame = tiles_per_frame
        self._cursor = 0
        self._previous: list[Face] = []

    def choose(self, views: list[View], whole_min_face: float) -> list[View]:
        """The views to run on this frame, out of a full scan's ``views``."""
        tiles = [v for v in views if not v.whole_frame]
        if self.tiles_per_frame == 0 or not tiles:
            return views
        if self._cursor >= len(tiles):
            self._cursor = 0
        needed = {
            _holding_tile(tiles, face)
            for face in self._previous
            # Boxes of faces seen near the smallest size come out narrower than the face
            # (face_detector.SMALL_BOX_RATIO), so a box this wide is a face the whole-frame
            # view finds on its own.
            if face.width < whole_min_face
        }
        in_turn: set[int] = set()
        for _ in range(len(tiles)):
            if len(in_turn) == self.tiles_per_frame:
                break
            if self._cursor not in needed:
                in_turn.add(self._cursor)
            self._cursor = (self._cursor + 1) % len(tiles)
        chosen = [tiles[i] for i in sorted(needed | in_turn)]
        return [v for v in views if v.whole_frame] + _merge_full_levels(chosen, tiles)

    def remember(self, faces: list[Face]) -> None:
        """The faces this frame's views found, for the next frame's choice."""
        self._previous = list(faces)

    def forget(self) -> None:
        """After a pause (schedule, IR) the old faces say nothing about the next frame."""
        self._previous = []


def _holding_tile(tiles: list[View], face: Face) -> int:
    """Index of the tile that holds the face with the widest margin to its edges (a tile
    that holds it only partly, when none holds it wholly)."""

    def margin(tile: View) -> float:
        x1, y1, x2, y2 = face.box
        return min(x1 - tile.x, y1 - tile.y, tile.x + tile.width - x2, tile.y + tile.height - y2)

    return max(range(len(tiles)), key=lambda i: margin(tiles[i]))


def _merge_full_levels(chosen: list[View], tiles: list[View]) -> list[View]:
    """``chosen`` with each level whose tiles all run replaced by one merged view."""
    result: list[View] = []
    for scale in dict.fromkeys(t.scale for t in chosen):
        level = [t for t in tiles if t.scale == scale]
        running = [t for t in chosen if t.scale == scale]
        merged = merged_view(level)
        if len(running) == len(level) > 1 and max(merged.input_shape()) <= MAX_MERGED_INPUT:
            result.append(merged)
        else:
            result += running
    return result
