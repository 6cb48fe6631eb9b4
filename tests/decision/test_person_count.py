"""One count per person for the compliance statistics (F29), by video time, on synthetic
tracked face results fed to the alarm decider."""

from __future__ import annotations

from collections.abc import Callable

from test_alarm_decider import BOX, OTHER_BOX, make, result

from maskwatch.decision.alarm_decider import AlarmDecider
from maskwatch.types import FaceResult, Label, PersonCount, PersonState

FPS = 10.0
Faces = Callable[[int, float], list[FaceResult]]


class Scene:
    """Drives a decider frame by frame and collects its counts; ``end`` ends tracks at the
    next frame, as the tracker reports them."""

    def __init__(self, decider: AlarmDecider) -> None:
        self.decider = decider
        self.t = 0.0
        self.frame = 0
        self.counted: list[PersonCount] = []
        self._ended: list[int] = []

    def play(self, seconds: float, faces: Faces) -> None:
        stop = self.t + seconds - 1e-9
        while self.t < stop:
            self.decider.update(self.t, self.frame, faces(self.frame, self.t), self._ended)
            self._ended = []
            self.counted += self.decider.pop_counts(self.t)
            self.frame += 1
            self.t = self.frame / FPS

    def end(self, *track_ids: int) -> None:
        self._ended += track_ids

    def states(self) -> list[PersonState]:
        return [c.state for c in self.counted]

    def finish(self) -> list[PersonState]:
        self.counted += self.decider.finish()
        return self.states()


def faces(label: Label, track_id: int = 1, box=BOX, confidence: float = 0.9) -> Faces:
    return lambda i, t: [result(label, confidence, track_id, box)]


def nobody(i: int, t: float) -> list[FaceResult]:
    return []


def test_a_masked_person_counts_once_when_gone_for_the_memory_time() -> None:
    scene = Scene(make())
    scene.play(3.0, faces(Label.MASK))
    scene.end(1)
    scene.play(9.5, nobody)
    assert scene.states() == []  # might still come back
    scene.play(1.0, nobody)
    assert scene.states() == [PersonState.MASKED]
    assert scene.finish() == [PersonState.MASKED]


def test_an_unmasked_person_counts_at_the_alarm_and_only_once() -> None:
    scene = Scene(make())
    scene.play(0.5, nobody)
    scene.play(3.0, faces(Label.NO_MASK))
    assert scene.states() == [PersonState.UNMASKED]
    assert scene.counted[0].t < 1.5
    # Re-detected under a new id after a gap: the same person, not counted again.
    scene.end(1)
    scene.play(2.0, nobody)
    scene.play(3.0, faces(Label.NO_MASK, track_id=2))
    assert scene.finish() == [PersonState.UNMASKED]


def test_taking_the_mask_off_in_view_counts_as_unmasked() -> None:
    scene = Scene(make())
    scene.play(5.0, faces(Label.MASK))
    scene.play(2.0, faces(Label.NO_MASK))
    scene.play(5.0, faces(Label.MASK))
    assert scene.finish() == [PersonState.UNMASKED]


def test_a_masked_person_re_detected_after_a_gap_who_then_unmasks_counts_once_unmasked() -> None:
    scene = Scene(make())
    scene.play(3.0, faces(Label.MASK))
    scene.end(1)
    scene.play(2.0, nobody)
    scene.play(3.0, faces(Label.NO_MASK, track_id=2))
    assert scene.finish() == [PersonState.UNMASKED]


def test_incorrect_wear_counts_as_incorrect_even_while_the_alarm_mask_time_holds() -> None:
    scene = Scene(make(alarm_mask_time_s=60.0))
    def two(i: int, t: float) -> list[FaceResult]:
        return [result(Label.NO_MASK, 0.9, 1, BOX), result(Label.INCORRECT, 0.9, 2, OTHER_BOX)]

    scene.play(3.0, two)
    assert sorted(scene.states()) == [PersonState.INCORRECT, PersonState.UNMASKED]


def test_too_short_tracks_and_flickering_false_faces_do_not_count() -> None:
    scene = Scene(make())
    scene.play(0.2, faces(Label.MASK))  # 2 frames: shorter than min_dwell and min_frames
    scene.end(1)
    scene.play(1.0, nobody)
    # A false face seen in one frame of four for 4 s: enough frames, too rarely present.
    scene.play(4.0, lambda i, t: [result(Label.MASK, 0.9, 2, OTHER_BOX)] if i % 4 == 0 else [])
    assert scene.finish() == []


def test_unclear_faces_are_undecided_and_posters_static() -> None:
    scene = Scene(make(static_after_s=5.0))
    # Mostly unclassifiable (turned away): seen long enough, never clearly masked.
    scene.play(3.0, lambda i, t: [result(Label.UNKNOWN, 0.5, 1, BOX, reason="turned")])
    scene.end(1)
    scene.play(11.0, nobody)
    scene.play(8.0, faces(Label.MASK, track_id=2, box=OTHER_BOX))
    assert scene.finish() == [PersonState.UNDECIDED, PersonState.STATIC]


def test_a_clock_that_goes_back_counts_everyone_seen_before() -> None:
    decider = make()
    for i in range(30):
        decider.update(100.0 + i / FPS, i, [result(Label.MASK)])
    decider.update(0.0, 30, [])
    assert [c.state for c in decider.pop_counts(0.0)] == [PersonState.MASKED]
    assert decider.finish() == []
