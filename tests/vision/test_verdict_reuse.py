"""When a followed face is classified and when its verdict carries over
(maskwatch.vision.verdict_reuse)."""

from __future__ import annotations

from itertools import pairwise

from maskwatch.types import Classification, Label
from maskwatch.vision.verdict_reuse import EVERY, FIRST_FRAMES, VerdictReuse

SURE = Classification(Label.NO_MASK, 0.98)
MASKED = Classification(Label.MASK, 0.97)
DOUBTFUL = Classification(Label.NO_MASK, 0.6)


def run(reuse: VerdictReuse, track_id: int, verdicts: list[Classification]) -> list[bool]:
    """Frame by frame: whether the face was classified (True) or carried its verdict."""
    classified = []
    for verdict in verdicts:
        reuse.next_frame([track_id])
        if reuse.carried(track_id) is None:
            reuse.classified(track_id, verdict)
            classified.append(True)
        else:
            classified.append(False)
    return classified


def test_first_frames_always_then_every_nth_frame_for_a_stable_verdict() -> None:
    done = run(VerdictReuse(), 1, [SURE] * 40)
    assert all(done[:FIRST_FRAMES])
    tail = done[FIRST_FRAMES:]
    assert sum(tail) == len(tail) // EVERY or sum(tail) == len(tail) // EVERY + 1
    gaps = [i for i, d in enumerate(tail) if d]
    assert all(b - a == EVERY for a, b in pairwise(gaps))


def test_a_changing_or_doubtful_verdict_is_classified_every_frame() -> None:
    assert all(run(VerdictReuse(), 1, [SURE, MASKED] * 10))
    assert all(run(VerdictReuse(), 2, [DOUBTFUL] * 20))


def test_carried_verdict_is_the_last_one_and_turns_are_spread_by_track_id() -> None:
    reuse = VerdictReuse()
    for _ in range(FIRST_FRAMES):
        reuse.next_frame([1, 2, 3, 4])
        for track_id in (1, 2, 3, 4):
            assert reuse.carried(track_id) is None
            reuse.classified(track_id, SURE)
    for _ in range(8):
        reuse.next_frame([1, 2, 3, 4])
        due = [t for t in (1, 2, 3, 4) if reuse.carried(t) is None]
        assert len(due) == 4 // EVERY
        for track_id in due:
            reuse.classified(track_id, SURE)
    reuse.next_frame([2])
    assert reuse.carried(1) is None  # forgotten: a face seen again starts over
