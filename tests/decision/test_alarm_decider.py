"""Alarm decisions (F6, F7) on synthetic, video-time-stamped face results."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import numpy as np
import pytest

from maskwatch.config import DecisionConfig
from maskwatch.decision.alarm_decider import AlarmDecider
from maskwatch.decision.tracker import Tracker
from maskwatch.types import Alarm, Box, Classification, Face, FaceResult, Label

BOX: Box = (100.0, 100.0, 180.0, 180.0)
OTHER_BOX: Box = (600.0, 100.0, 680.0, 180.0)


def result(
    label: Label,
    confidence: float = 0.9,
    track_id: int | None = 1,
    box: Box = BOX,
    reason: str | None = None,
) -> FaceResult:
    return FaceResult(
        face=Face(box=box, score=0.9, keypoints=np.zeros((6, 2))),
        classification=Classification(label, confidence),
        track_id=track_id,
        reason=reason,
    )


def counter_ids() -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"ev{next(numbers)}"


def make(**overrides: float) -> AlarmDecider:
    return AlarmDecider(DecisionConfig(**overrides), event_id=counter_ids())


def run(
    decider: AlarmDecider,
    start: float,
    end: float,
    fps: float,
    make_results: Callable[[int, float], list[FaceResult]],
) -> list[Alarm]:
    """Feeds frames at ``fps`` for video times in [start, end); frame i gets make_results(i, t)."""
    alarms = []
    i = 0
    while (t := start + i / fps) < end - 1e-9:
        alarms += decider.update(t, i, make_results(i, t))
        i += 1
    return alarms


def steady(
    label: Label, confidence: float = 0.9, track_id: int = 1, box: Box = BOX
) -> Callable[[int, float], list[FaceResult]]:
    return lambda i, t: [result(label, confidence, track_id, box)]


# --- F6: latency and robustness --------------------------------------------------------------


@pytest.mark.parametrize("fps", [10.0, 15.0])
@pytest.mark.parametrize("t0", [0.0, 1234.567])
def test_defaults_alarm_within_one_second_of_unmasked_face(fps: float, t0: float) -> None:
    decider = make()
    alarms = run(decider, t0, t0 + 3.0, fps, steady(Label.NO_MASK, 0.85))
    assert len(alarms) == 1
    assert alarms[0].t - t0 <= 1.0
    assert alarms[0].label is Label.NO_MASK


@pytest.mark.parametrize("fps", [10.0, 15.0])
def test_defaults_alarm_within_one_second_with_noisy_classifier(fps: float) -> None:
    """Every 5th frame misread as mask and every 7th low-confidence: still fast enough."""

    def noisy(i: int, t: float) -> list[FaceResult]:
        if i % 5 == 4:
            return [result(Label.MASK, 0.8)]
        return [result(Label.NO_MASK, 0.6 if i % 7 == 6 else 0.9)]

    alarms = run(make(), 0.0, 3.0, fps, noisy)
    assert len(alarms) == 1
    assert alarms[0].t <= 1.0


def test_end_to_end_with_tracker_walking_face_alarms_within_one_second() -> None:
    tracker = Tracker(iou_threshold=0.3, max_gap_s=1.0)
    decider = make()
    alarms: list[Alarm] = []
    for i in range(30):
        t = 50.0 + i / 10.0
        box = (100.0 + 15 * i, 200.0, 170.0 + 15 * i, 270.0)
        tracked = tracker.update(t, [result(Label.NO_MASK, track_id=None, box=box)])
        alarms += decider.update(t, i, tracked, tracker.pop_ended())
    assert len(alarms) == 1
    assert alarms[0].t - 50.0 <= 1.0
    assert alarms[0].track_id == 1


@pytest.mark.parametrize("fps", [10.0, 15.0])
def test_never_alarms_on_person_wearing_mask_throughout(fps: float) -> None:
    def masked(i: int, t: float) -> list[FaceResult]:
        if i % 10 == 3:  # occasional confident misread
            return [result(Label.NO_MASK, 0.95)]
        if i % 10 == 7:
            return [result(Label.INCORRECT, 0.8)]
        return [result(Label.MASK, 0.7 + 0.05 * (i % 5))]

    assert run(make(), 0.0, 120.0, fps, masked) == []


def test_single_red_frame_never_alarms() -> None:
    def one_red(i: int, t: float) -> list[FaceResult]:
        return [result(Label.NO_MASK, 0.99) if i == 20 else result(Label.MASK)]

    assert run(make(), 0.0, 10.0, 10.0, one_red) == []


def test_face_seen_for_a_single_frame_never_alarms() -> None:
    decider = make()
    assert decider.update(0.0, 0, [result(Label.NO_MASK, 0.99)]) == []
    assert decider.update(0.1, 1, [], [1]) == []
    assert run(decider, 0.2, 5.0, 10.0, lambda i, t: []) == []


def test_needs_min_dwell_even_with_many_frames() -> None:
    decider = make(window_s=1.0, min_dwell_s=0.8, min_frames=2)
    alarms = run(decider, 0.0, 2.0, 30.0, steady(Label.NO_MASK))
    assert len(alarms) == 1
    assert 0.8 - 1e-6 <= alarms[0].t <= 0.8 + 1 / 30


def test_low_confidence_no_mask_does_not_alarm() -> None:
    assert run(make(), 0.0, 10.0, 10.0, steady(Label.NO_MASK, 0.65)) == []


def test_a_bare_nose_alarms_however_the_mask_classifier_leaned() -> None:
    """A face the mask classifier thought masked at 0.6 and the wear checks found worn wrong
    carries incorrect 0.6 and no_mask 0.4: both are alarms, so it is sure to alarm (the
    bald man of tomeranna_test_results.mp4 with his mask off)."""
    leaned = Classification(Label.INCORRECT, 0.6, {"mask": 0.0, "no_mask": 0.4, "incorrect": 0.6})
    assert leaned.alarm_probability == pytest.approx(1.0)

    def frames(i: int, t: float) -> list[FaceResult]:
        return [dataclasses.replace(result(Label.INCORRECT), classification=leaned)]

    alarms = run(make(), 0.0, 2.0, 15.0, frames)
    assert [a.label for a in alarms] == [Label.INCORRECT]
    assert alarms[0].confidence == pytest.approx(1.0)
    unsure = Classification(Label.NO_MASK, 0.6, {"mask": 0.4, "no_mask": 0.6})
    assert run(make(), 0.0, 2.0, 15.0, lambda i, t: [
        dataclasses.replace(result(Label.NO_MASK), classification=unsure)
    ]) == []


def test_unknown_and_gated_results_are_not_observations() -> None:
    # Only quality-gated results, whatever label they carry: nothing to decide on.
    def gated(i: int, t: float) -> list[FaceResult]:
        return [result(Label.NO_MASK, 0.95, reason="pose_out_of_range")]

    assert run(make(), 0.0, 5.0, 10.0, gated) == []
    assert run(make(), 0.0, 5.0, 10.0, steady(Label.UNKNOWN, 0.95)) == []

    # Every other frame unknown: they neither count towards min_frames nor dilute the share,
    # so the alarm comes when the 4th real observation is in the window (t = 0.6 s).
    def alternating(i: int, t: float) -> list[FaceResult]:
        return [result(Label.UNKNOWN if i % 2 else Label.NO_MASK)]

    alarms = run(make(), 0.0, 3.0, 10.0, alternating)
    assert [round(a.t, 3) for a in alarms] == [0.6]


def test_alarm_fields() -> None:
    decider = AlarmDecider(DecisionConfig(), event_id=lambda: "fixed-id")

    def moving(i: int, t: float) -> list[FaceResult]:
        return [result(Label.NO_MASK, 0.8 + 0.01 * i, track_id=7, box=(10.0 + i, 20, 90 + i, 100))]

    alarms = run(decider, 0.0, 2.0, 10.0, moving)
    assert len(alarms) == 1
    alarm = alarms[0]
    assert alarm.event_id == "fixed-id"
    assert alarm.track_id == 7
    assert alarm.frame_index == 3
    assert alarm.t == pytest.approx(0.3)
    assert alarm.box == (13.0, 20, 93, 100)  # the latest box, not the first
    assert alarm.confidence == pytest.approx((0.80 + 0.81 + 0.82 + 0.83) / 4)


def test_mixed_labels_choose_the_more_frequent_and_average_its_confidence() -> None:
    labels = [
        (Label.INCORRECT, 0.8),
        (Label.NO_MASK, 0.95),
        (Label.INCORRECT, 0.9),
        (Label.INCORRECT, 0.75),
    ]
    decider = make()
    alarms = run(decider, 0.0, 0.4, 10.0, lambda i, t: [result(*labels[i])])
    assert len(alarms) == 1
    assert alarms[0].label is Label.INCORRECT
    assert alarms[0].confidence == pytest.approx((0.8 + 0.9 + 0.75) / 3)

    # Unconfident frames do not vote: 3 incorrect frames but only 1 confident one.
    labels = [
        (Label.INCORRECT, 0.95),
        (Label.INCORRECT, 0.5),
        (Label.NO_MASK, 0.8),
        (Label.INCORRECT, 0.55),
        (Label.NO_MASK, 0.9),
    ]
    decider = make(min_dwell_s=0.4, alarm_share=0.5)
    alarms = run(decider, 0.0, 0.5, 10.0, lambda i, t: [result(*labels[i])])
    assert len(alarms) == 1
    assert alarms[0].t == pytest.approx(0.4)
    assert alarms[0].label is Label.NO_MASK
    assert alarms[0].confidence == pytest.approx((0.8 + 0.9) / 2)


def test_tie_between_no_mask_and_incorrect_goes_to_no_mask() -> None:
    labels = [
        (Label.INCORRECT, 0.9),
        (Label.NO_MASK, 0.8),
        (Label.INCORRECT, 0.95),
        (Label.NO_MASK, 0.85),
    ]
    alarms = run(make(), 0.0, 0.4, 10.0, lambda i, t: [result(*labels[i])])
    assert [a.label for a in alarms] == [Label.NO_MASK]
    assert alarms[0].confidence == pytest.approx((0.8 + 0.85) / 2)


# --- F7: one person, one alarm ---------------------------------------------------------------


def test_one_alarm_per_person_however_long_they_stay_unmasked() -> None:
    alarms = run(make(alarm_mask_time_s=0.0), 0.0, 120.0, 15.0, steady(Label.NO_MASK))
    assert len(alarms) == 1


def test_rearms_after_wearing_mask_for_rearm_time() -> None:
    def script(i: int, t: float) -> list[FaceResult]:
        return [result(Label.MASK if 2.0 <= t < 8.0 else Label.NO_MASK)]

    alarms = run(make(), 0.0, 12.0, 10.0, script)
    assert [a.event_id for a in alarms] == ["ev1", "ev2"]
    assert alarms[0].t == pytest.approx(0.3)
    assert 8.0 < alarms[1].t <= 9.0


def test_short_mask_does_not_rearm() -> None:
    def script(i: int, t: float) -> list[FaceResult]:
        return [result(Label.MASK if 6.0 <= t < 7.5 else Label.NO_MASK)]

    assert len(run(make(), 0.0, 15.0, 10.0, script)) == 1


def test_mask_must_be_continuous_to_rearm() -> None:
    def script(i: int, t: float) -> list[FaceResult]:
        if 6.0 <= t < 9.0 and abs(t - 7.5) > 1e-6:
            return [result(Label.MASK)]
        return [result(Label.NO_MASK)]  # one red frame at 7.5 s splits the mask into 1.5 s runs

    assert len(run(make(), 0.0, 15.0, 10.0, script)) == 1


def test_no_second_alarm_across_a_short_detection_gap() -> None:
    """The tracker gave the same person a new id after a gap; that is not a new alarm."""
    decider = make(alarm_mask_time_s=0.0)
    first = run(decider, 0.0, 3.0, 10.0, steady(Label.NO_MASK, track_id=1))
    assert len(first) == 1
    assert decider.update(4.0, 40, [], [1]) == []  # track 1 ended (last seen at 2.9 s)
    shifted: Box = (115.0, 105.0, 195.0, 185.0)
    again = run(decider, 4.5, 10.0, 10.0, steady(Label.NO_MASK, track_id=2, box=shifted))
    assert again == []


def test_gap_through_real_tracker_does_not_alarm_twice() -> None:
    tracker = Tracker(iou_threshold=0.3, max_gap_s=1.0)
    decider = make(alarm_mask_time_s=0.0)
    alarms: list[Alarm] = []
    track_ids = set()
    for i in range(100):
        t = i / 10.0
        visible = not 3.0 <= t < 5.0  # 2 s detection gap: longer than max_gap_s
        faces = [result(Label.NO_MASK, track_id=None)] if visible else []
        tracked = tracker.update(t, faces)
        track_ids |= {r.track_id for r in tracked}
        alarms += decider.update(t, i, tracked, tracker.pop_ended())
    assert track_ids == {1, 2}
    assert len(alarms) == 1


def test_different_place_after_gap_is_a_different_person() -> None:
    decider = make(alarm_mask_time_s=0.0)
    run(decider, 0.0, 3.0, 10.0, steady(Label.NO_MASK, track_id=1))
    decider.update(4.0, 40, [], [1])
    alarms = run(decider, 4.5, 10.0, 10.0, steady(Label.NO_MASK, track_id=2, box=OTHER_BOX))
    assert [a.track_id for a in alarms] == [2]


def test_gone_memory_is_forgotten_after_rearm_after_gone() -> None:
    decider = make(alarm_mask_time_s=0.0, rearm_after_gone_s=10.0)
    run(decider, 0.0, 3.0, 10.0, steady(Label.NO_MASK, track_id=1))
    decider.update(4.0, 40, [], [1])  # last seen at 2.9 s: forgotten after 12.9 s
    alarms = run(decider, 13.0, 16.0, 10.0, steady(Label.NO_MASK, track_id=2))
    assert [a.track_id for a in alarms] == [2]


def test_alarm_mask_time_suppresses_then_allows_later_alarm() -> None:
    decider = make()

    def two_people(i: int, t: float) -> list[FaceResult]:
        out = [result(Label.NO_MASK, track_id=1)]
        if t >= 1.0 - 1e-9:
            out.append(result(Label.INCORRECT, track_id=2, box=OTHER_BOX))
        return out

    alarms = run(decider, 0.0, 10.0, 10.0, two_people)
    assert [a.track_id for a in alarms] == [1, 2]
    assert alarms[0].t == pytest.approx(0.3)
    # Person 2 qualifies at 1.3 s but is held back until the 5 s mask time after 0.3 s ends.
    assert alarms[1].t == pytest.approx(5.3)
    assert alarms[1].label is Label.INCORRECT


def test_suppressed_person_who_puts_on_mask_never_alarms() -> None:
    def two_people(i: int, t: float) -> list[FaceResult]:
        second = Label.NO_MASK if t < 3.0 else Label.MASK
        return [result(Label.NO_MASK, track_id=1), result(second, track_id=2, box=OTHER_BOX)]

    alarms = run(make(), 0.0, 12.0, 10.0, two_people)
    assert [a.track_id for a in alarms] == [1]


# --- bookkeeping -----------------------------------------------------------------------------


def test_memory_stays_bounded() -> None:
    decider = make()
    run(decider, 0.0, 60.0, 15.0, steady(Label.NO_MASK))
    track = decider._tracks[1]
    assert len(track.history) <= 0.6 * 15 + 1
    decider.update(61.0, 0, [], [1])
    decider.update(80.0, 0, [], [])
    assert decider._tracks == {}
    assert decider._gone == []


def test_results_must_be_tracked() -> None:
    with pytest.raises(ValueError):
        make().update(0.0, 0, [result(Label.NO_MASK, track_id=None)])


def test_video_time_going_back_starts_over() -> None:
    decider = make()
    first = run(decider, 100.0, 101.0, 10.0, steady(Label.NO_MASK, track_id=1))
    assert len(first) == 1
    # A restarted source clock comes with the tracker's new ids; the mask time from 100 s must
    # not hold the new alarm back.
    again = run(decider, 0.0, 1.0, 10.0, steady(Label.NO_MASK, track_id=2))
    assert [a.track_id for a in again] == [2]


# --- F5: posters, dolls and screens -----------------------------------------------------------


def jittered(label: Label, track_id: int, amount: float) -> Callable[[int, float], list[FaceResult]]:
    """A face whose box wobbles by ``amount`` px, as detector jitter does on a printed face."""
    def make_results(i: int, t: float) -> list[FaceResult]:
        d = amount * ((i % 3) - 1)
        box = (BOX[0] + d, BOX[1] - d, BOX[2] + d, BOX[3] + d)
        return [result(label, 0.95, track_id, box)]
    return make_results


def test_a_face_that_never_moves_becomes_static_and_never_alarms_again() -> None:
    # rearm_after_mask_s = 0 would let a moving person alarm again after each mask frame;
    # the poster shows a mask for a moment (a reflection) and then no mask again.
    decider = make(static_after_s=60.0, rearm_after_mask_s=0.0, alarm_mask_time_s=0.0)
    first = run(decider, 0.0, 61.0, 10.0, jittered(Label.NO_MASK, 1, 1.0))
    assert len(first) == 1, "the poster alarms once before it can be known to be static"
    run(decider, 61.0, 62.0, 10.0, jittered(Label.MASK, 1, 1.0))
    assert run(decider, 62.0, 70.0, 10.0, jittered(Label.NO_MASK, 1, 1.0)) == []


def test_a_static_face_stays_static_when_its_track_restarts() -> None:
    decider = make(static_after_s=60.0, rearm_after_gone_s=1.0)
    run(decider, 0.0, 61.0, 10.0, jittered(Label.NO_MASK, 1, 1.0))
    # A passer-by hides the poster for 5 s (the tracker ends track 1), then it shows again as
    # track 2, long after the 1 s "gone" memory of the alarmed person has expired.
    decider.update(61.0, 610, [], ended_tracks=[1])
    assert run(decider, 66.0, 75.0, 10.0, jittered(Label.NO_MASK, 2, 1.0)) == []


def test_a_person_who_moves_is_never_static() -> None:
    decider = make(static_after_s=5.0, rearm_after_mask_s=0.5, alarm_mask_time_s=0.0)
    moving = jittered(Label.NO_MASK, 1, 8.0)  # 10 % of the face width: a living person
    assert len(run(decider, 0.0, 6.0, 10.0, moving)) == 1
    run(decider, 6.0, 7.0, 10.0, jittered(Label.MASK, 1, 8.0))
    assert len(run(decider, 7.0, 9.0, 10.0, moving)) == 1, "re-armed person did not alarm"


def test_static_detection_can_be_switched_off() -> None:
    decider = make(static_after_s=0.0, rearm_after_mask_s=0.5, alarm_mask_time_s=0.0)
    run(decider, 0.0, 61.0, 10.0, jittered(Label.NO_MASK, 1, 0.0))
    run(decider, 61.0, 62.0, 10.0, jittered(Label.MASK, 1, 0.0))
    assert len(run(decider, 62.0, 64.0, 10.0, jittered(Label.NO_MASK, 1, 0.0))) == 1
