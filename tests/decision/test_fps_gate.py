"""Frame-rate cap decided by frame timestamps (F12)."""

from __future__ import annotations

import random

import pytest

from maskwatch.decision.fps_gate import FpsGate

CAP = 15.0


def admitted(gate: FpsGate, times: list[float]) -> list[float]:
    return [t for t in times if gate.admit(t)]


def frames(fps: float, start: float, seconds: float) -> list[float]:
    return [start + i / fps for i in range(int(round(seconds * fps)))]


def per_second(times: list[float], start: float, seconds: int) -> list[int]:
    return [sum(1 for t in times if start + s <= t < start + s + 1) for s in range(seconds)]


@pytest.mark.parametrize("fps", [25.0, 30.0, 20.0, 16.0, 60.0])
def test_faster_input_is_capped_at_fps_cap(fps: float) -> None:
    kept = admitted(FpsGate(CAP), frames(fps, 0.0, 10.0))
    assert abs(len(kept) - 10 * CAP) <= 1
    for count in per_second(kept, 0.0, 10):
        assert abs(count - CAP) <= 1


def test_25fps_gives_15_not_every_second_frame() -> None:
    kept = admitted(FpsGate(CAP), frames(25.0, 0.0, 10.0))
    # Every second frame would be 125 frames (12.5/s); whole-interval due times give 15/s.
    assert 149 <= len(kept) <= 151
    gaps = [b - a for a, b in zip(kept, kept[1:])]
    # Only whole input frame gaps occur: 1 or 2 frames at 25 fps.
    assert set(round(g * 25) for g in gaps) == {1, 2}


@pytest.mark.parametrize("fps", [10.0, 15.0, 5.0])
def test_input_at_or_below_cap_is_all_admitted(fps: float) -> None:
    times = frames(fps, 100.0, 10.0)
    assert admitted(FpsGate(CAP), times) == times


def test_first_frame_is_admitted_at_any_time() -> None:
    assert FpsGate(CAP).admit(12345.678)
    assert FpsGate(CAP).admit(0.0)


def test_frame_too_soon_is_rejected() -> None:
    gate = FpsGate(10.0)
    assert gate.admit(0.0)
    assert not gate.admit(0.05)
    assert gate.admit(0.1)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("jitter", [0.002, 0.005, 0.01])
def test_jittered_timestamps(seed: int, jitter: float) -> None:
    rng = random.Random(seed)
    fast = [t + rng.uniform(-jitter, jitter) for t in frames(25.0, 0.0, 10.0)]
    kept = admitted(FpsGate(CAP), fast)
    assert abs(len(kept) - 10 * CAP) <= 1
    for count in per_second(kept, 0.0, 10):
        assert abs(count - CAP) <= 2


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("jitter", [0.002, 0.005, 0.008])
def test_jittered_camera_at_the_cap_loses_no_frame(seed: int, jitter: float) -> None:
    # Due times are anchored to the first frame, so two frames may differ by 2 x jitter from
    # their nominal spacing; the quarter-interval slack (16.7 ms at 15 fps) absorbs that.
    rng = random.Random(seed)
    camera = [t + rng.uniform(-jitter, jitter) for t in frames(CAP, 0.0, 10.0)]
    assert admitted(FpsGate(CAP), camera) == camera


def test_jittered_10fps_camera_is_all_admitted() -> None:
    rng = random.Random(7)
    times = [t + rng.uniform(-0.01, 0.01) for t in frames(10.0, 0.0, 10.0)]
    assert admitted(FpsGate(CAP), times) == times


@pytest.mark.parametrize("pause", [0.5, 5.0, 3600.0])
def test_pause_then_resume_without_burst(pause: float) -> None:
    gate = FpsGate(CAP)
    before = admitted(gate, frames(25.0, 0.0, 5.0))
    assert abs(len(before) - 5 * CAP) <= 1
    resume = before[-1] + pause
    after_times = frames(25.0, resume, 5.0)
    after = admitted(gate, after_times)
    assert after[0] == after_times[0]  # the first frame after the pause is processed
    # No catching up on the missed due times: still 15 per second, never a burst.
    for count in per_second(after, resume, 5):
        assert abs(count - CAP) <= 1
    gaps = [b - a for a, b in zip(after, after[1:])]
    assert min(gaps) >= 1 / 25 - 1e-9


def test_pause_then_slow_input_is_all_admitted() -> None:
    gate = FpsGate(CAP)
    admitted(gate, frames(30.0, 0.0, 2.0))
    later = frames(10.0, 60.0, 3.0)
    assert admitted(gate, later) == later
