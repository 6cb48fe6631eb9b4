"""Live video: a followed face whose verdict is stable is not classified on every frame.

The classifier and the wear check cost about 0.5 ms a face; a face the mesh
follows keeps its identity, so its verdict may carry over a few frames. Rule: a face is
classified on each of its first ``FIRST_FRAMES`` frames (the decision's first window is made
of fresh verdicts), whenever its last two verdicts disagree or either is below
``STABLE_CONFIDENCE`` (a doubtful verdict is looked at again), and otherwise on every
``EVERY``-th processed frame, the faces' turns spread by track id so that each frame classifies
about the same number of faces; in between it carries its last verdict (label, confidence and
probabilities). Gates and the doubt rule still apply on every frame (see
:class:`maskwatch.vision.face_analyzer.FaceAnalyzer`), and a gated frame is never carried.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from maskwatch.types import Classification

FIRST_FRAMES = 4
EVERY = 4
# Verdicts this confident (both of the last two, same label) are stable enough to carry.
STABLE_CONFIDENCE = 0.9


@dataclass
class _History:
    seen: int = 0  # frames classified or carried
    last: list[Classification] = field(default_factory=list)  # the last two verdicts


class VerdictReuse:
    """Per track id: whether this frame must classify, and the verdict to carry if not."""

    def __init__(self) -> None:
        self._tracks: dict[int, _History] = {}
        self._frame = 0

    def carried(self, track_id: int) -> Classification | None:
        """The verdict to carry on this frame, or None when the face must be classified."""
        history = self._tracks.get(track_id)
        if history is None or history.seen < FIRST_FRAMES or (self._frame + track_id) % EVERY == 0:
            return None
        if len(history.last) < 2 or history.last[0].label != history.last[1].label or min(
            v.confidence for v in history.last
        ) < STABLE_CONFIDENCE:
            return None
        history.seen += 1
        return history.last[-1]

    def classified(self, track_id: int, verdict: Classification) -> None:
        history = self._tracks.setdefault(track_id, _History())
        history.seen += 1
        history.last = [*history.last[-1:], verdict]

    def next_frame(self, track_ids: list[int]) -> None:
        """A new processed frame; forget the faces no longer known (``track_ids`` are those
        still known)."""
        self._frame += 1
        alive = set(track_ids)
        self._tracks = {i: h for i, h in self._tracks.items() if i in alive}
