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

Every person is also counted once for the compliance statistics (``PersonCounter``): with the
alarm label as soon as the alarm rule is met (even while the mask time holds the alarm back),
else with the state their tracks reached when they are gone.
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
from maskwatch.decision.person_count import PersonCounter, same_place
from maskwatch.types import (
    ALARM_LABELS,
    Alarm,
    Box,
    FaceResult,
    Label,
    PersonCount,
    PersonState,
)
from maskwatch.vision import box_iou

log = logging.getLogger(__name__)

# Timestamps are floats built from frame counters (e.g. 5.3 - 5.0 < 0.3); without slack a
# boundary like "dwell >= 0.3 s" would randomly cost one more frame.
TIME_EPS = 1e-6
# A track counts as a person only when its face was found in at least this share of the
# processed frames of its life: a real face is found in nearly all of them, while a detector's
# false face (a mask held in a hand, a blurred patch of background) blinks in and out.
PRESENT_SHARE = 0.5
ALARM_STATE = {Label.NO_MASK: PersonState.UNMASKED, Label.INCORRECT: PersonState.INCORRECT}


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
    first_update: int = 0  # processed-frame numbers of the first and last sighting
    last_update: int = 0
    frames: int = 0  # frames the face was seen in, for the end-of-track verdict
    observed: int = 0  # of those, classified ones
    masked: int = 0  # of those, confident MASK ones


@dataclass(frozen=True)
class _Gone:
    """Last box of an alarmed track that ended; new tracks over it stay silent."""

    box: Box
    last_t: float


def _is_observation(result: FaceResult) -> bool:
    return result.reason is None and result.classification.label != Label.UNKNOWN


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
        self.counter = PersonCounter(cfg.rearm_after_gone_s)
        self._updates = 0  # processed frames so far

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
            self._end(list(self._tracks))
            self.counter.finish()
            self._gone.clear()
            self._quiet_until = -math.inf
        self._last_t = t
        self._updates += 1
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

    def pop_counts(self, t: float) -> list[PersonCount]:
        """People counted up to video time ``t`` (see ``PersonCounter``)."""
        return self.counter.pop(t)

    def finish(self) -> list[PersonCount]:
        """End every track and count everyone not counted yet (end of input, stop, pause)."""
        self._end(list(self._tracks))
        self.counter.finish()
        return self.counter.pop(-math.inf)

    def _verdict(self, track: _TrackState) -> PersonState | None:
        """How a track that never met the alarm rule ends: None when it was too short to be
        decided (or too rarely seen to be a face), masked when its confident MASK frames hold
        the alarm share."""
        cfg = self.cfg
        life = track.last_update - track.first_update + 1
        if (track.last_t - track.first_t < cfg.min_dwell_s - TIME_EPS
                or track.frames < max(cfg.min_frames, PRESENT_SHARE * life)):
            return None
        if track.static:
            return PersonState.STATIC
        if track.masked >= cfg.min_frames and track.masked >= cfg.alarm_share * track.observed:
            return PersonState.MASKED
        return PersonState.UNDECIDED

    def _end(self, ended_tracks: Iterable[int]) -> None:
        for track_id in ended_tracks:
            track = self._tracks.pop(track_id, None)
            if track is None:
                continue
            self.counter.ended(track_id, track.box, track.last_t, self._verdict(track))
            if track.alarmed:
                self._gone.append(_Gone(track.box, track.last_t))
            if track.static:
                # A passer-by hiding the poster ends its track; the poster is still there.
                self._static_places = [*self._static_places[-MAX_STATIC_PLACES + 1:], track.box]

    def _start(self, t: float, track_id: int, box: Box) -> _TrackState:
        track = _TrackState(first_t=t, box=box, last_t=t, first_update=self._updates)
        self.counter.started(t, track_id, box)
        if self._static_places:
            ious = box_iou(np.asarray(box, float), np.asarray(self._static_places, float))
            best = int(np.argmax(ious))
            if ious[best] > STATIC_PLACE_IOU:
                del self._static_places[best]
                track.static, track.still_box, track.still_since = True, box, t
                log.debug("track %d starts where a static face stood; stays static", track_id)
        best = same_place(box, [g.box for g in self._gone])
        if best is not None:
            # The best-overlapping memory is consumed: one remembered person, one heir.
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
        track.frames += 1
        track.last_update = self._updates
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
        track.observed += 1
        if label == Label.MASK and confidence >= self.cfg.min_confidence:
            track.masked += 1
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
        no_mask = [o for o in red if o.label == Label.NO_MASK]
        incorrect = [o for o in red if o.label == Label.INCORRECT]
        # A tie goes to no_mask: the stronger message when the classifier cannot tell.
        chosen = no_mask if len(no_mask) >= len(incorrect) else incorrect
        self.counter.decided(t, track_id, ALARM_STATE[chosen[0].label])
        if t < self._quiet_until - TIME_EPS:
            # Not marked alarmed: if the person is still unmasked when the mask time ends,
            # that is a new alarm.
            log.debug("track %d would alarm but the alarm mask time runs", track_id)
            return None

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
