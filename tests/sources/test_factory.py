"""Choosing the source from [source] config, rotation, the source keys' validation, and
ReopeningSource's back-off and status, with scripted sources so timing needs no sleeping."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import pytest

from maskwatch.config import ConfigError, SourceConfig, parse_config
from maskwatch.sources.demo import DemoSource
from maskwatch.sources.factory import (
    ReopeningSource,
    RotatedSource,
    open_reopening_source,
    open_source,
    rotate_image,
)
from maskwatch.sources.frame_source import FrameSource, SourceError
from maskwatch.sources.video_file import VideoFileSource
from maskwatch.types import Frame

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
SMALL = {"width": 320, "height": 180}  # the demo scene's smallest size starts fastest


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """A 64x48 clip: 6 frames whose left half is red and right half blue."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG")
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, :32] = (230, 20, 20)
    rgb[:, 32:] = (20, 20, 230)
    for _ in range(6):
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def config(**keys: Any) -> SourceConfig:
    return parse_config({"source": keys}).source


# --- rotation -----------------------------------------------------------------------------


@pytest.mark.parametrize(("rotation", "k"), [(90, -1), (180, 2), (270, 1)])
def test_rotation_turns_clockwise(rotation: int, k: int) -> None:
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    turned = rotate_image(image, rotation)
    np.testing.assert_array_equal(turned, np.rot90(image, k))
    assert turned.flags.c_contiguous
    assert rotate_image(image, 0) is image


def test_open_source_applies_rotation(clip: Path) -> None:
    with open_source(config(kind="file", path=str(clip), rotation=90), MODELS) as source:
        assert isinstance(source, RotatedSource) and "rotated 90°" in source.description
        frame = source.read()
    assert frame is not None and frame.image.shape == (64, 48, 3)
    # Turned clockwise, the left (red) half of the picture is now on top.
    assert frame.image[5, 24, 0] > 200 and frame.image[60, 24, 2] > 200


# --- config keys --------------------------------------------------------------------------


def problems(**keys: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({"source": keys})
    return info.value.problems


def test_source_defaults_are_valid() -> None:
    cfg = SourceConfig()
    assert (cfg.kind, cfg.width, cfg.height, cfg.fps, cfg.rotation) == ("auto", 1280, 720, 15, 0)


def test_bad_rotation_lists_the_allowed_values() -> None:
    (problem,) = problems(rotation=45)
    assert problem.startswith("source.rotation:")
    assert all(v in problem for v in ("0, 90, 180 or 270", "45"))


@pytest.mark.parametrize(
    ("keys", "key", "words"),
    [
        ({"width": 641}, "source.width", ["even"]),
        ({"height": 100}, "source.height", ["180"]),
        ({"fps": 0}, "source.fps", ["1"]),
        ({"read_timeout_s": 0.1}, "source.read_timeout_s", ["0.5"]),
        ({"device": "video0"}, "source.device", ["/dev/video0"]),
        ({"url": "ftp://cam/x"}, "source.url", ["rtsp://"]),
        ({"gst_pipeline": "videotestsrc ! fdsink"}, "source.gst_pipeline", ["head"]),
        ({"kind": "rtsp"}, "source", ["url"]),
        ({"kind": "jetson", "device": "/dev/video0"}, "source", ["camera number"]),
        ({"kind": "usb"}, "source.kind", ["'v4l2'", "'auto'"]),
    ],
)
def test_bad_source_keys_are_reported(keys: dict[str, Any], key: str, words: list[str]) -> None:
    (problem,) = problems(**keys)
    assert problem.split(":", 1)[0] == key, problem
    assert all(w in problem for w in words), problem


# --- kind selection -----------------------------------------------------------------------


def test_kind_file_and_demo(clip: Path) -> None:
    with open_source(config(kind="file", path=str(clip)), MODELS) as source:
        assert isinstance(source, VideoFileSource)
    with open_source(config(kind="demo", fps=10, **SMALL), MODELS) as source:
        assert isinstance(source, DemoSource)
        frame = source.read()
        assert frame is not None and frame.image.shape == (180, 320, 3)


def test_kind_picamera2_uses_size_fps_and_device(fake_picamera2: ModuleType) -> None:
    fake_picamera2.cameras = 2
    with open_source(config(kind="picamera2", device="1", fps=10, **SMALL), MODELS) as source:
        assert "Raspberry Pi camera 1" in source.description
        (camera,) = fake_picamera2.instances
        assert camera.camera_idx == 1
        assert camera.camera_configuration()["main"]["size"] == (320, 180)


@pytest.mark.skipif(shutil.which("gst-launch-1.0") is None, reason="gst-launch-1.0 missing")
def test_kind_jetson_runs_the_configured_pipeline_head() -> None:
    head = "videotestsrc pattern=blue is-live=true ! video/x-raw,width=320,height=180"
    with open_source(config(kind="jetson", gst_pipeline=head, **SMALL), MODELS) as source:
        frame = source.read()
    assert frame is not None and frame.image.shape == (180, 320, 3)
    assert frame.image[90, 160, 2] > 200 and frame.image[90, 160, 0] < 40


def test_kind_v4l2_and_rtsp_say_what_failed() -> None:
    with pytest.raises(SourceError, match="V4L2 camera /dev/video7 does not exist"):
        open_source(config(kind="v4l2", device="7"), MODELS)
    url = "rtsp://admin:secret@127.0.0.1:1/stream"
    with pytest.raises(SourceError, match=r"cannot open stream rtsp://admin:\*\*\*@127") as info:
        open_source(config(kind="rtsp", url=url, read_timeout_s=1.0), MODELS)
    assert "secret" not in str(info.value)


def test_auto_without_a_camera_says_why_and_never_shows_the_demo_scene(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A device whose camera is missing must not run (and alarm on) the synthetic scene."""
    if Path("/dev/video0").exists() or importlib.util.find_spec("picamera2") is not None:
        pytest.skip("this machine has a camera or picamera2")
    caplog.set_level(logging.INFO, logger="maskwatch.sources.factory")
    with pytest.raises(SourceError, match=r"no camera found \(picamera2: .*python3-picamera2"):
        open_source(config(kind="auto", **SMALL), MODELS)
    skipped = " ".join(r.getMessage() for r in caplog.records)
    assert "skipping jetson: " in skipped
    assert "skipping v4l2: /dev/video0 does not exist" in skipped


def test_auto_waits_for_a_camera_that_is_plugged_in_later(fake_picamera2: ModuleType) -> None:
    fake_picamera2.cameras = 0
    delays: list[float] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        assert not source.camera_up and "no camera found" in source.last_error
        fake_picamera2.cameras = 1 if len(delays) == 3 else 0

    source = open_reopening_source(config(kind="auto", **SMALL), MODELS, sleep=sleep)
    with source:
        frame = source.read()
        assert frame is not None and source.camera_up
        assert "picamera2" in source.description
    assert delays == [0.5, 1.0, 2.0]


def test_auto_prefers_the_pi_camera(fake_picamera2: ModuleType) -> None:
    with open_source(config(kind="auto", **SMALL), MODELS) as source:
        assert "picamera2" in source.description


def test_auto_with_a_v4l2_path_skips_the_csi_cameras(
    fake_picamera2: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="maskwatch.sources.factory")
    with pytest.raises(SourceError, match="v4l2: /dev/video9 does not exist"):
        open_source(config(kind="auto", device="/dev/video9", **SMALL), MODELS)
    assert not fake_picamera2.instances
    assert "skipping picamera2: device = '/dev/video9' names a V4L2 camera" in caplog.text


def test_auto_keeps_its_choice_when_the_camera_drops_out(fake_picamera2: ModuleType) -> None:
    """A Pi camera that fails is waited for, not replaced by the demo scene on reopen."""
    fake_picamera2.stall_after = 1
    delays: list[float] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        fake_picamera2.cameras = 0 if len(delays) == 1 else 1  # unplugged, then back

    cfg = config(kind="auto", read_timeout_s=0.5, **SMALL)
    with open_reopening_source(cfg, MODELS, sleep=sleep) as source:
        assert source.read() is not None
        assert source.read() is not None
        assert "picamera2" in source.description
    assert delays == [0.5, 1.0]  # stalled, then not found, then reopened
    assert "Raspberry Pi camera 0 not found" in source.last_error
    assert source.reopen_count == 1


def test_a_non_looping_file_ends_and_a_looping_one_does_not(clip: Path) -> None:
    with open_reopening_source(config(kind="file", path=str(clip)), MODELS) as once:
        assert len(list(once)) == 6
        assert once.reopen_count == 0 and once.last_error == ""
    looping = open_reopening_source(config(kind="file", path=str(clip), loop=True), MODELS)
    with looping:
        frames = [looping.read() for _ in range(15)]
    assert all(f is not None for f in frames)


# --- ReopeningSource with scripted sources -------------------------------------------------


class Scripted(FrameSource):
    """Delivers ``count`` frames timed from t = 0, then fails with ``error`` (None = ends)."""

    def __init__(self, count: int, error: Exception | None = None) -> None:
        self.count = count
        self.error = error
        self.index = 0
        self.closed = False

    @property
    def description(self) -> str:
        return "scripted"

    def read(self) -> Frame | None:
        if self.index >= self.count:
            if self.error is not None:
                raise self.error
            return None
        frame = Frame(np.zeros((2, 2, 3), np.uint8), self.index * 0.1, self.index)
        self.index += 1
        return frame

    def close(self) -> None:
        self.closed = True


def factory_from(plan: list[Callable[[], FrameSource]]) -> Callable[[], FrameSource]:
    """Each open takes the next step of ``plan``: a source, or an exception to raise."""
    steps = iter(plan)
    return lambda: next(steps)()


def fail(message: str) -> Callable[[], FrameSource]:
    def open_() -> FrameSource:
        raise SourceError(message)

    return open_


def test_back_off_doubles_to_the_cap_and_resets_after_a_frame() -> None:
    delays: list[float] = []
    first = Scripted(2, SourceError("cable pulled"))
    plan = [lambda: first, *[fail("no camera")] * 6, lambda: Scripted(1, RuntimeError("bug")),
            fail("no camera"), lambda: Scripted(5)]
    source = ReopeningSource(factory_from(plan), backoff_initial=0.5, backoff_max=4.0,
                             sleep=delays.append)
    assert source.read() is not None and source.read() is not None
    assert source.camera_up and source.last_error == ""
    frame = source.read()  # fails, six failed opens, then a source that gives one frame
    assert frame is not None and first.closed
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert source.reopen_count == 1 and source.last_error == "no camera"
    frame = source.read()  # a non-SourceError is reported with its type, never raised
    assert frame is not None
    assert delays[7:] == [0.5, 1.0]  # reset by the frame in between
    assert source.last_error == "no camera" and source.reopen_count == 2


def test_unexpected_errors_are_reported_with_their_type() -> None:
    source = ReopeningSource(
        factory_from([lambda: Scripted(0, RuntimeError("driver bug")), lambda: Scripted(1)]),
        sleep=lambda _: None,
    )
    assert source.read() is not None
    assert source.last_error == "RuntimeError: driver bug"


def test_time_and_index_continue_across_reopens() -> None:
    source = ReopeningSource(
        factory_from([lambda: Scripted(3), lambda: Scripted(3)]), sleep=lambda _: None
    )
    frames = [source.read() for _ in range(6)]
    assert [f.index for f in frames if f] == list(range(6))
    times = [f.t for f in frames if f]
    assert times[:3] == [0.0, 0.1, 0.2]
    assert times[3:] == pytest.approx([0.3, 0.4, 0.5])  # the second pass restarted at t = 0


def test_end_is_final_only_when_asked() -> None:
    final = ReopeningSource(factory_from([lambda: Scripted(2)]), end_is_final=True,
                            sleep=lambda _: pytest.fail("no reopen expected"))
    assert len(list(final)) == 2 and final.read() is None and not final.camera_up


def test_close_from_another_thread_wakes_the_back_off() -> None:
    source = ReopeningSource(fail("no camera"), backoff_initial=30.0, backoff_max=30.0)
    result: list[Frame | None] = []
    reader = threading.Thread(target=lambda: result.append(source.read()))
    reader.start()
    while source.last_error != "no camera":
        threading.Event().wait(0.01)
    source.close()
    reader.join(timeout=2.0)
    assert not reader.is_alive() and result == [None]


def test_close_never_waits_for_a_hung_read() -> None:
    """A camera stuck in read() must not hold up the service's shutdown; the reading thread
    releases it once the read returns."""
    entered, release = threading.Event(), threading.Event()

    class Hung(Scripted):
        def read(self) -> Frame | None:
            entered.set()
            release.wait(5.0)
            return super().read()

    inner = Hung(5)
    source = ReopeningSource(lambda: inner, sleep=lambda _: None)
    result: list[Frame | None] = []
    reader = threading.Thread(target=lambda: result.append(source.read()))
    reader.start()
    assert entered.wait(2.0)
    done = threading.Thread(target=source.close)
    done.start()
    done.join(timeout=1.0)
    assert not done.is_alive() and not inner.closed  # returned at once, read still going
    release.set()
    reader.join(timeout=2.0)
    assert result == [None] and inner.closed
