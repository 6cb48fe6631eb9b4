"""Picamera2Source against tests/fakes/picamera2, a fake with picamera2's real API shape (this
machine has no Pi camera; see the fake's docstring for what it mirrors and where it deviates)."""

from __future__ import annotations

import sys
import time
from types import ModuleType

import numpy as np
import pytest

from maskwatch.sources.factory import ReopeningSource
from maskwatch.sources.frame_source import SourceError
from maskwatch.sources.pi_camera import Picamera2Source

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def test_frames_are_rgb_timed_by_the_sensor(fake_picamera2: ModuleType) -> None:
    with Picamera2Source(0, width=64, height=48, fps=10) as source:
        frames = [source.read() for _ in range(3)]
        (camera,) = fake_picamera2.instances
        config = camera.camera_configuration()
        assert config["main"]["format"] == "RGB888"
        assert config["main"]["size"] == (64, 48)
        assert config["controls"]["FrameDurationLimits"] == (100_000, 100_000)
        assert "64x48" in source.description and "10 fps" in source.description
    for i, frame in enumerate(frames):
        assert frame is not None
        assert frame.image.shape == (48, 64, 3) and frame.image.dtype == np.uint8
        # The fake paints the left half red, the right half blue; RGB888 memory is B, G, R.
        assert tuple(frame.image[10, 5]) == RED
        assert tuple(frame.image[10, 60]) == BLUE
        assert frame.index == i
        assert frame.t == pytest.approx(1000.0 + 0.1 * i)  # SensorTimestamp, in seconds
    assert not camera.is_open and not camera.started
    assert camera.requests and all(r.released for r in camera.requests)


def test_time_falls_back_to_the_monotonic_clock(fake_picamera2: ModuleType) -> None:
    fake_picamera2.timestamps = False
    before = time.monotonic()
    with Picamera2Source(0, width=64, height=48) as source:
        first, second = source.read(), source.read()
    after = time.monotonic()
    assert first is not None and second is not None
    assert before <= first.t <= second.t <= after


def test_a_stalled_camera_is_an_error_and_gets_reopened(fake_picamera2: ModuleType) -> None:
    fake_picamera2.stall_after = 2  # each opened camera sends two frames, then nothing
    source = Picamera2Source(0, width=64, height=48, read_timeout_s=0.5)
    assert source.read() is not None and source.read() is not None
    with pytest.raises(SourceError, match="camera 0 delivered no frame for 0.5 s"):
        source.read()
    source.close()

    delays: list[float] = []
    reopening = ReopeningSource(
        lambda: Picamera2Source(0, width=64, height=48, read_timeout_s=0.5), sleep=delays.append
    )
    with reopening:
        frames = [reopening.read() for _ in range(5)]
    assert all(f is not None for f in frames)
    assert [f.index for f in frames if f] == [0, 1, 2, 3, 4]
    # The fake refuses a second open of a camera that was not closed, so each reopen proves
    # the failed one was released.
    assert reopening.reopen_count == 2 and delays == [0.5, 0.5]
    assert "delivered no frame" in reopening.last_error
    assert not any(camera.is_open for camera in fake_picamera2.instances)


def test_missing_picamera2_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    with pytest.raises(SourceError) as info:
        Picamera2Source(0)
    message = str(info.value)
    assert "sudo apt install python3-picamera2" in message
    assert "--system-site-packages" in message


def test_no_camera_attached(fake_picamera2: ModuleType) -> None:
    fake_picamera2.cameras = 0
    with pytest.raises(SourceError, match="camera 0 not found or busy.*ribbon cable"):
        Picamera2Source(0)


def test_close_frees_the_camera_for_the_next_open(fake_picamera2: ModuleType) -> None:
    source = Picamera2Source(0, width=64, height=48)
    with pytest.raises(SourceError, match="busy"):
        Picamera2Source(0)  # libcamera lets one process hold a camera at a time
    source.close()
    source.close()
    assert source.read() is None
    with Picamera2Source(0, width=64, height=48) as again:
        assert again.read() is not None
