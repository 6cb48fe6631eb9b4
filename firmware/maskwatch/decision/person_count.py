"""One count per person for the compliance statistics (F29).

A track is not a person: a turned head or a hand in front of the face ends a track and the
same person comes back under a new id. So a person is a chain of tracks: a track that starts
where one ended less than ``memory_s`` before (the alarm decider's own "same person" rule,
``same_place``) continues that person. A person counts once:

- at once when a track of theirs meets the alarm rule (unmasked or incorrect): that is final,
  so a person who takes the mask off in view counts as unmasked whatever happens after;
- otherwise when they have been gone for ``memory_s``, with the best state any of their tracks
  reached (masked, else undecided, else static); a person whose tracks were all too short to be
  decided does not count at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from maskwatch.types import Box, PersonCount, PersonState, box_centre
from maskwatch.vision import box_iou

# A new track is the same person as a recently ended one when its first box overlaps that
# track's last box by more than this IoU (or its centre lies inside it).
SAME_PLACE_IOU = 0.1
# Which verdict of an uncounted person's tracks wins: a clear look beats an unclear one.
_RANK = {PersonState.MASKED: 3, PersonState.UNDECIDED: 2, PersonState.STATIC: 1}


def same_place(box: Box, boxes: Sequence[Box]) -> int | None:
    """Index of the box in ``boxes`` that ``box`` continues (best IoU among those it overlaps
    enough or whose area holds its centre), None when there is none."""
    if not boxes:
        return None
    ious = box_iou(np.asarray(box, float), np.asarray(boxes, float))
    cx, cy = box_centre(box)
    matches = [
        i for i, other in enumerate(boxes)
        if ious[i] > SAME_PLACE_IOU or (other[0] <= cx <= other[2] and other[1] <= cy <= other[3])
    ]
    return max(matches, key=lambda i: ious[i]) if matches else None


@dataclass
class _Person:
    track_id: int
    box: Box
    last_t: float
    counted: bool = False
    verdict: PersonState | None = None


class PersonCounter:
    """Fed by the alarm decider (``started``, ``decided``, ``ended``); ``pop`` hands out the
    people counted so far."""

    def __init__(self, memory_s: float) -> None:
        self.memory_s = memory_s
        self._live: dict[int, _Person] = {}
        self._gone: list[_Person] = []
        self._counted: list[PersonCount] = []

    def started(self, t: float, track_id: int, box: Box) -> None:
        index = same_place(box, [p.box for p in self._gone])
        person = self._gone.pop(index) if index is not None else _Person(track_id, box, t)
        person.track_id = track_id
        self._live[track_id] = person

    def decided(self, t: float, track_id: int, state: PersonState) -> None:
        """The track met the alarm rule: its person counts now, once."""
        person = self._live[track_id]
        if not person.counted:
            person.counted = True
            self._counted.append(PersonCount(t, track_id, state))

    def ended(self, track_id: int, box: Box, last_t: float, verdict: PersonState | None) -> None:
        """The track ended with ``verdict`` (None: too short to say anything)."""
        person = self._live.pop(track_id, None)
        if person is None:
            return
        person.box, person.last_t = box, last_t
        if verdict is not None and _RANK[verdict] > _RANK.get(person.verdict, 0):
            person.verdict = verdict
        self._gone.append(person)

    def pop(self, t: float) -> list[PersonCount]:
        """People counted since the last call, including those gone ``memory_s`` by ``t``."""
        self._expire([p for p in self._gone if t - p.last_t > self.memory_s])
        counted, self._counted = self._counted, []
        return counted

    def finish(self) -> None:
        """Count everyone gone now, without waiting (end of a video, a stop, a pause, a clock
        that went back): live tracks must have been ended first. ``pop`` hands them out."""
        self._expire(list(self._gone))

    def _expire(self, people: list[_Person]) -> None:
        for person in people:
            self._gone.remove(person)
            if not person.counted and person.verdict is not None:
                self._counted.append(PersonCount(person.last_t, person.track_id, person.verdict))
