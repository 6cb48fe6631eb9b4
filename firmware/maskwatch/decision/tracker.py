"""Stable track ids for faces across frames.

The alarm decision is made from a face's history, so the same person must keep the same id
from frame to frame. Faces are matched greedily by box overlap (IoU); a small face that moves
fast can leave no overlap between two processed frames, so unmatched boxes are then paired by
centre distance relative to the face size. A track survives a detection gap of up to
``max_gap_s`` of video time, so a missed detection or a brief turn of the head keeps the id.

On live video the face analyzer's follower already gives each face its id (the face mesh
follows it, see ``maskwatch.vision.face_follower``): results that carry a ``track_id`` keep it,
and only the track ends (gap over ``max_gap_s``) are decided here.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np

from maskwatch.types import Box, FaceResult, box_centre
from maskwatch.vision import box_iou

log = logging.getLogger(__name__)

# Timestamps are floats built from frame counters; this keeps "gap == max_gap_s" a survival.
TIME_EPS = 1e-6
# Fallback pairing: how far (in track widths) a centre may move. Face width is about the same
# in metres for everyone, so a brisk walk is ~12 face widths per second at any distance; the
# reach grows with the time since the track was last seen, within [min, max] widths.
WALK_WIDTHS_PER_S = 12.0
CENTRE_GATE_MIN = 1.0
CENTRE_GATE_MAX = 2.5
# Fallback pairing also needs box widths within this factor of each other, so a near large
# face is never taken for a far small one that happens to be close on the image.
SIZE_RATIO_GATE = 2.0


@dataclass
class _Track:
    track_id: int
    box: Box
    last_t: float


def _width(box: Box) -> float:
    return max(box[2] - box[0], 1e-9)


class Tracker:
    """Assigns increasing track ids (from 1) to face results, frame by frame.

    Call ``update`` once per processed frame, then ``pop_ended`` to learn which tracks ended
    (so the alarm decider can forget them).
    """

    def __init__(self, iou_threshold: float, max_gap_s: float) -> None:
        self.iou_threshold = iou_threshold
        self.max_gap_s = max_gap_s
        self._tracks: list[_Track] = []
        self._ended: list[int] = []
        self._next_id = 1
        self._last_t: float | None = None

    def update(self, t: float, results: list[FaceResult]) -> list[FaceResult]:
        """The same results, in the same order, each with ``track_id`` set.

        Tracks unseen for more than ``max_gap_s`` end before matching, so a face that returns
        after a longer gap gets a new id. Results that already carry a ``track_id`` (the live
        follower's) keep it instead of being matched.
        """
        if self._last_t is not None and t < self._last_t:
            # A source whose clock restarts (e.g. reopened after an error) makes gaps measured
            # across the jump meaningless, so every track ends and the faces start over.
            log.info("video time went back from %.3f to %.3f s; ending all tracks", self._last_t, t)
            self._end([tr.track_id for tr in self._tracks])
        self._last_t = t
        limit = self.max_gap_s + TIME_EPS
        self._end([tr.track_id for tr in self._tracks if t - tr.last_t > limit])

        boxes = [r.face.box for r in results]
        if results and all(r.track_id is not None for r in results):
            known = {tr.track_id: tr for tr in self._tracks}
            assigned = {i: known[r.track_id] for i, r in enumerate(results) if r.track_id in known}
        else:
            assigned = self._match(t, boxes)
        out = []
        for i, result in enumerate(results):
            track = assigned.get(i)
            if track is None:
                track_id = result.track_id if result.track_id is not None else self._next_id
                track = _Track(track_id, boxes[i], t)
                self._next_id = max(self._next_id, track_id) + 1
                self._tracks.append(track)
                log.debug("track %d started at t=%.3f", track.track_id, t)
            track.box = boxes[i]
            track.last_t = t
            out.append(replace(result, track_id=track.track_id))
        return out

    def pop_ended(self) -> list[int]:
        """Ids of tracks that ended since the last call, oldest first."""
        ended, self._ended = self._ended, []
        return ended

    def _end(self, ids: list[int]) -> None:
        if not ids:
            return
        gone = set(ids)
        self._tracks = [tr for tr in self._tracks if tr.track_id not in gone]
        self._ended.extend(ids)
        log.debug("tracks ended: %s", ids)

    def _match(self, t: float, boxes: list[Box]) -> dict[int, _Track]:
        """Detection index -> existing track, one to one: best IoU first, then nearest centre."""
        if not boxes or not self._tracks:
            return {}
        dets = np.asarray(boxes, float)
        ious = np.stack([box_iou(np.asarray(tr.box, float), dets) for tr in self._tracks])
        pairs = [
            (-float(ious[ti, di]), ti, di)
            for ti in range(len(self._tracks))
            for di in range(len(boxes))
            if ious[ti, di] >= self.iou_threshold
        ]
        for ti, track in enumerate(self._tracks):
            tcx, tcy = box_centre(track.box)
            tw = _width(track.box)
            reach = WALK_WIDTHS_PER_S * (t - track.last_t)
            gate = min(max(reach, CENTRE_GATE_MIN), CENTRE_GATE_MAX)
            for di, box in enumerate(boxes):
                ratio = _width(box) / tw
                if ious[ti, di] >= self.iou_threshold or not (
                    1 / SIZE_RATIO_GATE <= ratio <= SIZE_RATIO_GATE
                ):
                    continue
                dcx, dcy = box_centre(box)
                distance = math.hypot(dcx - tcx, dcy - tcy) / tw
                if distance <= gate:
                    # Ranked after every IoU pair: any overlap is better evidence than nearness.
                    pairs.append((1.0 + distance, ti, di))
        pairs.sort()
        assigned: dict[int, _Track] = {}
        used_tracks: set[int] = set()
        for _, ti, di in pairs:
            if ti in used_tracks or di in assigned:
                continue
            used_tracks.add(ti)
            assigned[di] = self._tracks[ti]
        return assigned
