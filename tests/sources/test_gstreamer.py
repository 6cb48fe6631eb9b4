"""GstSource with a real gst-launch-1.0 child fed by videotestsrc (Debian packages
gstreamer1.0-tools and gstreamer1.0-plugins-base) in place of the Jetson's nvarguscamerasrc."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from pathlib import Path

import pytest

from maskwatch.sources.factory import ReopeningSource
from maskwatch.sources.frame_source import SourceError
from maskwatch.sources.gstreamer import GstSource

pytestmark = pytest.mark.skipif(
    shutil.which("gst-launch-1.0") is None,
    reason="gst-launch-1.0 missing: sudo apt install gstreamer1.0-tools gstreamer1.0-plugins-base",
)

WIDTH, HEIGHT = 64, 48


def head(pattern: str = "red", size: tuple[int, int] = (WIDTH, HEIGHT), fps: str = "30/1") -> str:
    return (
        f"videotestsrc pattern={pattern} is-live=true ! "
        f"video/x-raw,width={size[0]},height={size[1]},framerate={fps}"
    )


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize(("pattern", "rgb"), [("red", (255, 0, 0)), ("blue", (0, 0, 255))])
def test_frames_arrive_as_rgb_at_the_asked_size(pattern: str, rgb: tuple[int, int, int]) -> None:
    # The head makes 80x60; the appended tail scales to the asked size, so every frame is
    # exactly width * height * 3 bytes whatever the head delivers.
    with GstSource(head(pattern, size=(80, 60)), WIDTH, HEIGHT) as source:
        frames = [source.read() for _ in range(3)]
    assert [f.index for f in frames if f] == [0, 1, 2]
    for frame in frames:
        assert frame is not None
        assert frame.image.shape == (HEIGHT, WIDTH, 3)
        centre = frame.image[HEIGHT // 2, WIDTH // 2].astype(int)
        assert all(abs(c - e) <= 4 for c, e in zip(centre, rgb, strict=True)), centre
    assert frames[0].t < frames[1].t < frames[2].t  # type: ignore[union-attr]


def test_a_killed_pipeline_is_reopened_and_leaves_nothing_behind() -> None:
    fds_before = open_fds()
    threads_before = threading.active_count()
    opened: list[GstSource] = []

    def factory() -> GstSource:
        opened.append(GstSource(head(), WIDTH, HEIGHT, read_timeout_s=2.0))
        return opened[-1]

    delays: list[float] = []
    source = ReopeningSource(factory, sleep=delays.append)
    assert all(source.read() is not None for _ in range(3))
    assert source.camera_up
    first_pid = opened[0].pid
    os.kill(first_pid, signal.SIGKILL)
    frames = [source.read() for _ in range(5)]
    assert all(f is not None for f in frames)
    assert [f.index for f in frames if f] == [3, 4, 5, 6, 7]
    assert len(opened) == 2 and opened[1].pid != first_pid
    assert source.reopen_count == 1 and delays == [0.5] and source.camera_up
    assert "killed by signal 9" in source.last_error
    # The killed child was reaped (a zombie keeps its /proc entry until waited for).
    assert not Path(f"/proc/{first_pid}").exists()
    with pytest.raises(ChildProcessError):
        os.waitpid(first_pid, os.WNOHANG)

    source.close()
    second_pid = opened[1].pid
    assert not Path(f"/proc/{second_pid}").exists()
    assert source.read() is None and not source.camera_up
    assert open_fds() == fds_before
    assert threading.active_count() == threads_before


def test_a_silent_pipeline_times_out() -> None:
    # One frame every 5 s: the first arrives at once, the next not within the read timeout.
    with GstSource(head(fps="1/5"), WIDTH, HEIGHT, read_timeout_s=0.3) as source:
        assert source.read() is not None
        with pytest.raises(SourceError, match="sent no complete frame for 0.3 s"):
            source.read()


def test_a_broken_pipeline_reports_gstreamers_reason() -> None:
    fds_before = open_fds()
    with pytest.raises(SourceError, match=r'exited with code 1: .*no element "nosuchelement"'):
        GstSource("nosuchelement ! video/x-raw", WIDTH, HEIGHT)
    assert open_fds() == fds_before
