"""Alarm decisions from each track's recent history (F6, F7).

A single frame's label is too noisy to alarm on: a turned head or motion blur flips the
classifier for a frame or two. So a track alarms only when it has been visible for a minimum
dwell and a clear share of its recent, confidently classified frames say no_mask/incorrect.
Everything is driven by the frame's video time ``t`` so results do not depend on how fast the
machine runs, and tests can replay any timing.

One person should cause one alarm, not one per second: a track alarms once and re-arms only
after it has been seen with a mask for a while, and a track that ends soon after alarming
leaves a memory of where it was, so the same person re-detected after a gap (and given a new
track id) does not alarm again. A device-wide mask time caps the alarm rate whatever happens.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from maskwatch.config import DecisionConfig
from maskwatch.types import ALARM_LABELS, Alarm, Box, FaceResult, Label, box_centre
from maskwatch.vision import box_iou

log = logging.getLogger(__name__)

# Timestamps are floats built from frame counters (e.g. 5.3 - 5.0 < 0.3); without slack a
# boundary like "dwell >= 0.3 s" would randomly cost one more frame.
TIME_EPS = 1e-6
# A new track counts as the same person as a recently ended, alarmed one when its first box
# overlaps that track's last box by more than this IoU (or its centre lies inside it).
INHERIT_IOU = 0.1


# How far (as a share of the face width) any box edge may wander and still count as "not
# moving": detector jitter on a printed face stays well inside this, a breathing, talking
# person does not for long.
STILL_TOLERANCE = 0.04
# A new track this much over the place of an ended static track is the same poster.
STATIC_PLACE_IOU = 0.6
MAX_STATIC_PLACES = 16


@dataclass(frozen=True)
class _Observation:
    t: float
    label: Label
    confidence: float


@dataclass
class _TrackState:
    first_t: float
    box: Box
    last_t: float
    history: deque[_Observation] = field(default_factory=deque)
    alarmed: bool = False
    mask_since: float | None = None  # start of the current run of confident MASK frames
    still_box: Box | None = None  # where the face has stood since still_since
    still_since: float = 0.0
    static: bool = False  # a poster, doll or screen: never alarmed on (F5)


@dataclass(frozen=True)
class _Gone:
    """Last box of an alarmed track that ended; new tracks over it stay silent."""

    box: Box
    last_t: float


def _is_observation(result: FaceResult) -> bool:
    return result.reason is None and result.classification.label != Label.UNKNOWN


def _centre_inside(box: Box, other: Box) -> bool:
    cx, cy = box_centre(box)
    return other[0] <= cx <= other[2] and other[1] <= cy <= other[3]


class AlarmDecider:
    """Turns tracked face results into alarms, one call per processed frame."""

    def __init__(
        self, cfg: DecisionConfig, event_id: Callable[[], str] = lambda: uuid.uuid4().hex
    ) -> None:
        self.cfg = cfg
        self._event_id = event_id
        self._tracks: dict[int, _TrackState] = {}
        self._gone: list[_Gone] = []
        self._static_places: list[Box] = []  # where static faces stood when their track ended
        self._quiet_until = -math.inf
        self._last_t: float | None = None

    def update(
        self,
        t: float,
        frame_index: int,
        results: list[FaceResult],
        ended_tracks: Iterable[int] = (),
    ) -> list[Alarm]:
        """Alarms raised at this frame.

        ``results`` must carry track ids (from ``Tracker.update``); ``ended_tracks`` are the
        ids the tracker ended since the previous call (``Tracker.pop_ended``). Ended tracks
        are handled first so a new track in this same frame can inherit their alarmed state.
        """
        if self._last_t is not None and t < self._last_t:
            # The clock restarted (the tracker ends every track then): timers from the old
            # clock would hold alarms back or keep memories for the wrong span.
            log.info("video time went back from %.3f to %.3f s; forgetting all tracks",
                     self._last_t, t)
            self._tracks.clear()
            self._gone.clear()
            self._quiet_until = -math.inf
        self._last_t = t
        self._end(ended_tracks)
        self._gone = [g for g in self._gone if t - g.last_t <= self.cfg.rearm_after_gone_s]

        alarms = []
        for result in results:
            track_id = result.track_id
            if track_id is None:
                raise ValueError("AlarmDecider needs tracked results (track_id is None)")
            track = self._observe(t, track_id, result)
            alarm = self._decide(t, frame_index, track_id, track)
            if alarm is not None:
                alarms.append(alarm)
        return alarms

    def _end(self, ended_tracks: Iterable[int]) -> None:
        for track_id in ended_tracks:
            track = self._tracks.pop(track_id, None)
            if track is not None and track.alarmed:
                self._gone.append(_Gone(track.box, track.last_t))
            if track is not None and track.static:
                # A passer-by hiding the poster ends its track; the poster is still there.
                self._static_places = [*self._static_places[-MAX_STATIC_PLACES + 1:], track.box]

    def _start(self, t: float, track_id: int, box: Box) -> _TrackState:
        track = _TrackState(first_t=t, box=box, last_t=t)
        if self._static_places:
            ious = box_iou(np.asarray(box, float), np.asarray(self._static_places, float))
            best = int(np.argmax(ious))
            if ious[best] > STATIC_PLACE_IOU:
                del self._static_places[best]
                track.static, track.still_box, track.still_since = True, box, t
                log.debug("track %d starts where a static face stood; stays static", track_id)
        if self._gone:
            ious = box_iou(np.asarray(box, float), np.asarray([g.box for g in self._gone], float))
            matches = [
                i for i, g in enumerate(self._gone)
                if ious[i] > INHERIT_IOU or _centre_inside(box, g.box)
            ]
            if matches:
                # The best-overlapping memory is consumed: one remembered person, one heir.
                best = max(matches, key=lambda i: ious[i])
                del self._gone[best]
                track.alarmed = True
                log.debug("track %d continues an alarmed person; stays silent", track_id)
        return track

    def _observe(self, t: float, track_id: int, result: FaceResult) -> _TrackState:
        track = self._tracks.get(track_id)
        if track is None:
            track = self._tracks[track_id] = self._start(t, track_id, result.face.box)
        track.box = result.face.box
        track.last_t = t
        self._watch_stillness(t, track_id, track)
        while track.history and t - track.history[0].t > self.cfg.window_s + TIME_EPS:
            track.history.popleft()
        if not _is_observation(result):
            return track

        label = result.classification.label
        confidence = (
            result.classification.alarm_probability if label in ALARM_LABELS
            else result.classification.confidence
        )
        track.history.append(_Observation(t, label, confidence))
        if label == Label.MASK and confidence >= self.cfg.min_confidence:
            if track.mask_since is None:
                track.mask_since = t
            if track.alarmed and t - track.mask_since >= self.cfg.rearm_after_mask_s - TIME_EPS:
                track.alarmed = False
                track.mask_since = None
                log.debug("track %d re-armed after wearing a mask", track_id)
        elif label in ALARM_LABELS:
            track.mask_since = None
        return track

    def _watch_stillness(self, t: float, track_id: int, track: _TrackState) -> None:
        """A living person's face always moves a little; one that stays put to a few percent
        of its width for ``static_after_s`` is a poster, a doll or a screen (F5)."""
        if self.cfg.static_after_s <= 0:
            return
        box = track.box
        still = track.still_box
        width = max(box[2] - box[0], 1.0)
        if still is None or max(abs(a - b) for a, b in zip(box, still)) > STILL_TOLERANCE * width:
            track.still_box, track.still_since = box, t
            if track.static:
                log.info("track %d moves again: no longer static", track_id)
            track.static = False
        elif not track.static and t - track.still_since >= self.cfg.static_after_s - TIME_EPS:
            track.static = True
            log.info("track %d has not moved for %.0f s: static face, never alarmed on",
                     track_id, t - track.still_since)

    def _decide(
        self, t: float, frame_index: int, track_id: int, track: _TrackState
    ) -> Alarm | None:
        cfg = self.cfg
        if track.alarmed or track.static or t - track.first_t < cfg.min_dwell_s - TIME_EPS:
            return None
        observations = track.history
        if len(observations) < cfg.min_frames:
            return None
        red = [
            o for o in observations
            if o.label in ALARM_LABELS and o.confidence >= cfg.min_confidence
        ]
        if len(red) / len(observations) < cfg.alarm_share:
            return None
        if t < self._quiet_until - TIME_EPS:
            # Not marked alarmed: if the person is still unmasked when the mask time ends,
            # that is a new alarm.
            log.debug("track %d would alarm but the alarm mask time runs", track_id)
            return None

        no_mask = [o for o in red if o.label == Label.NO_MASK]
        incorrect = [o for o in red if o.label == Label.INCORRECT]
        # A tie goes to no_mask: the stronger message when the classifier cannot tell.
        chosen = no_mask if len(no_mask) >= len(incorrect) else incorrect
        track.alarmed = True
        track.mask_since = None
        self._quiet_until = t + cfg.alarm_mask_time_s
        alarm = Alarm(
            event_id=self._event_id(),
            t=t,
            frame_index=frame_index,
            track_id=track_id,
            label=chosen[0].label,
            confidence=sum(o.confidence for o in chosen) / len(chosen),
            box=track.box,
        )
        log.info("alarm %s: track %d %s (%.2f) at t=%.3f", alarm.event_id, track_id,
                 alarm.label.value, alarm.confidence, t)
        return alarm
