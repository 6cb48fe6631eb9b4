"""Tracker behaviour on synthetic boxes and video timestamps."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from maskwatch.decision.tracker import Tracker
from maskwatch.types import Box, Classification, Face, FaceResult, Label

FPS = 10.0


def result(box: Box, label: Label = Label.NO_MASK, reason: str | None = None) -> FaceResult:
    return FaceResult(
        face=Face(box=box, score=0.9, keypoints=np.zeros((6, 2))),
        classification=Classification(label, 0.9),
        reason=reason,
    )


def square(x: float, y: float, size: float = 60.0) -> Box:
    return (x, y, x + size, y + size)


def make_tracker() -> Tracker:
    return Tracker(iou_threshold=0.3, max_gap_s=1.0)


def test_ids_start_at_one_and_increase_per_new_face() -> None:
    tracker = make_tracker()
    out = tracker.update(0.0, [result(square(0, 0)), result(square(500, 0))])
    assert [r.track_id for r in out] == [1, 2]
    faces = [result(square(500, 0)), result(square(0, 0)), result(square(900, 0))]
    out = tracker.update(0.1, faces)
    assert [r.track_id for r in out] == [2, 1, 3]


def test_update_keeps_order_and_other_fields() -> None:
    tracker = make_tracker()
    inputs = [result(square(0, 0), Label.MASK), result(square(300, 0), reason="pose_out_of_range")]
    out = tracker.update(0.0, inputs)
    assert [r.face for r in out] == [r.face for r in inputs]
    assert [r.classification for r in out] == [r.classification for r in inputs]
    assert [r.reason for r in out] == [None, "pose_out_of_range"]


def test_id_stable_while_face_walks_across_frame() -> None:
    tracker = make_tracker()
    ids = {
        tracker.update(i / FPS, [result(square(20 + 12 * i, 100 + 3 * i))])[0].track_id
        for i in range(80)
    }
    assert ids == {1}
    assert tracker.pop_ended() == []


def test_fast_small_face_without_overlap_keeps_id_by_centre_distance() -> None:
    tracker = make_tracker()
    # 40 px face moving 42 px per processed frame: consecutive boxes do not overlap at all.
    ids = {
        tracker.update(i / FPS, [result(square(10 + 42 * i, 200, size=40))])[0].track_id
        for i in range(20)
    }
    assert ids == {1}


def test_fast_face_missed_for_one_frame_keeps_id() -> None:
    tracker = make_tracker()
    tracker.update(0.0, [result(square(10, 200, size=40))])
    tracker.update(0.1, [result(square(52, 200, size=40))])
    tracker.update(0.2, [])  # missed detection while walking on
    out = tracker.update(0.3, [result(square(136, 200, size=40))])
    assert out[0].track_id == 1


def test_far_away_face_is_a_new_track_not_a_jump() -> None:
    tracker = make_tracker()
    tracker.update(0.0, [result(square(0, 0))])
    out = tracker.update(0.1, [result(square(400, 300))])
    assert out[0].track_id == 2


def test_much_smaller_face_nearby_is_not_taken_for_the_same_person() -> None:
    tracker = make_tracker()
    tracker.update(0.0, [result(square(100, 100, size=120))])
    out = tracker.update(0.1, [result(square(180, 100, size=30))])
    assert out[0].track_id == 2


@pytest.mark.parametrize("gap_s", [0.3, 0.9, 1.0])
def test_gap_up_to_max_gap_keeps_id(gap_s: float) -> None:
    tracker = make_tracker()
    for i in range(10):
        tracker.update(i / FPS, [result(square(100 + i, 100))])
    last = 9 / FPS
    for i in range(1, int(round(gap_s * FPS))):
        assert tracker.update(last + i / FPS, []) == []
    out = tracker.update(last + gap_s, [result(square(112, 100))])
    assert out[0].track_id == 1
    assert tracker.pop_ended() == []


def test_gap_longer_than_max_gap_ends_track_and_starts_new_id() -> None:
    tracker = make_tracker()
    for i in range(10):
        tracker.update(i / FPS, [result(square(100, 100))])
    tracker.update(1.5, [])
    assert tracker.pop_ended() == []  # last seen at 0.9 s: 0.6 s gap
    tracker.update(2.0, [])
    assert tracker.pop_ended() == [1]
    assert tracker.pop_ended() == []  # reported once
    out = tracker.update(2.1, [result(square(100, 100))])
    assert out[0].track_id == 2


def test_track_ends_when_next_frame_comes_after_the_gap() -> None:
    """No empty frames in between: expiry is decided by the timestamps alone."""
    tracker = make_tracker()
    tracker.update(0.0, [result(square(100, 100))])
    out = tracker.update(1.2, [result(square(100, 100))])
    assert out[0].track_id == 2
    assert tracker.pop_ended() == [1]


def test_two_faces_crossing_keep_their_ids() -> None:
    tracker = make_tracker()
    # A walks right, B walks left; they pass each other with B a little higher, so near the
    # crossing each face overlaps both tracks above the IoU threshold.
    seen: dict[int, list[float]] = {}
    for i in range(40):
        a = square(50 + 10 * i, 200)
        b = square(450 - 10 * i, 185)
        for r in tracker.update(i / FPS, [result(a), result(b)]):
            seen.setdefault(r.track_id, []).append(r.face.box[0])
    assert set(seen) == {1, 2}
    assert seen[1] == sorted(seen[1])  # track 1 only ever moved right: it stayed on A
    assert seen[2] == sorted(seen[2], reverse=True)


def test_face_overlapping_two_tracks_takes_the_best_one() -> None:
    tracker = make_tracker()
    tracker.update(0.0, [result(square(100, 100)), result(square(130, 100))])
    out = tracker.update(0.1, [result(square(105, 100))])  # IoU 0.85 with track 1, 0.41 with 2
    assert [r.track_id for r in out] == [1]
    tracker.update(1.5, [])
    assert len(tracker.pop_ended()) == 2


def test_video_time_going_back_ends_all_tracks() -> None:
    tracker = make_tracker()
    tracker.update(30.0, [result(square(100, 100))])
    out = tracker.update(0.0, [result(square(100, 100))])
    assert out[0].track_id == 2
    assert tracker.pop_ended() == [1]


def test_ids_given_by_the_live_follower_are_kept_even_across_a_jump() -> None:
    tracker = make_tracker()
    followed = replace(result(square(0, 0)), track_id=7)
    assert [r.track_id for r in tracker.update(0.0, [followed])] == [7]
    jumped = replace(result(square(900, 400)), track_id=7)
    new = replace(result(square(0, 0)), track_id=9)
    assert [r.track_id for r in tracker.update(0.1, [jumped, new])] == [7, 9]
    assert tracker.pop_ended() == []


def test_a_given_id_unseen_for_longer_than_max_gap_ends() -> None:
    tracker = make_tracker()
    tracker.update(0.0, [replace(result(square(0, 0)), track_id=3)])
    tracker.update(1.5, [replace(result(square(500, 0)), track_id=4)])
    assert tracker.pop_ended() == [3]
