"""OpenCVSource on real video files written here (standing in for a stream, as this machine has
no camera or RTSP server), a truncated file, and a local HTTP stream that stalls."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskwatch.redact import redact_url as redact
from maskwatch.sources.factory import ReopeningSource
from maskwatch.sources.frame_source import SourceError
from maskwatch.sources.opencv_capture import OpenCVSource

FPS = 10.0
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 50, 220)]  # RGB, saturated to survive coding


def write_clip(path: Path, fourcc: str, frames: int, size: tuple[int, int], noise: bool) -> Path:
    """A real video: a run of solid colours, with noise when the file must be large."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, size)
    if not writer.isOpened():
        pytest.skip(f"this OpenCV build cannot write {fourcc} into {path.suffix}")
    rng = np.random.default_rng(0)
    for i in range(frames):
        rgb = np.zeros((size[1], size[0], 3), np.uint8)
        rgb[:] = COLOURS[(i // 4) % len(COLOURS)]
        if noise:
            rgb[: size[1] // 2] = rng.integers(0, 256, (size[1] // 2, size[0], 3), np.uint8)
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.mp4", "mp4v", 12, (64, 48), noise=False)


@pytest.mark.parametrize("as_url", [False, True])
def test_a_file_reads_as_a_live_rgb_stream(clip: Path, as_url: bool) -> None:
    target = clip.as_uri() if as_url else str(clip)
    before = time.monotonic()
    with OpenCVSource(target, read_timeout_s=2.0) as source:
        frames = [source.read() for _ in range(12)]
        # A live stream has no end: running out is a failure for the caller to handle.
        with pytest.raises(SourceError, match="ended or broke off"):
            source.read()
    assert "64x48" in source.description
    times = [f.t for f in frames if f]
    assert before <= times[0] and times == sorted(times) and times[-1] <= time.monotonic()
    for i, frame in enumerate(frames):
        assert frame is not None and frame.index == i
        assert frame.image.shape == (48, 64, 3)
        expected = np.array(COLOURS[(i // 4) % len(COLOURS)])
        assert np.abs(frame.image[24, 32].astype(int) - expected).max() <= 12


def test_a_file_truncated_while_read_is_reopened(tmp_path: Path) -> None:
    original = write_clip(tmp_path / "original.mp4", "mp4v", 40, (320, 240), noise=True)
    live = tmp_path / "live.mp4"
    shutil.copyfile(original, live)

    delays: list[float] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 3:  # the camera "comes back" after the third wait
            shutil.copyfile(original, live)

    source = ReopeningSource(lambda: OpenCVSource(live, read_timeout_s=2.0), sleep=sleep)
    first = [source.read() for _ in range(5)]
    with live.open("r+b") as f:
        f.truncate(live.stat().st_size // 3)  # its end (and mp4's index, the moov box) is gone
    # Fewer than the 40 frames of the repaired file, whose own end would be one more reopen.
    rest = [source.read() for _ in range(30)]
    source.close()

    frames = [f for f in first + rest if f is not None]
    assert len(frames) == 35
    assert [f.index for f in frames] == list(range(35))
    assert all(a.t <= b.t for a, b in zip(frames, frames[1:], strict=False))
    # Failing reopens of the damaged file back off; the first one after the repair works.
    assert delays == [0.5, 1.0, 2.0]
    assert source.reopen_count == 1
    assert "cannot open" in source.last_error


@pytest.fixture
def stalling_http_stream(tmp_path: Path) -> Iterator[str]:
    """An HTTP server that sends the first half of a video, then keeps the connection open and
    silent: a camera or NVR that hangs."""
    data = write_clip(tmp_path / "cam.avi", "MJPG", 40, (64, 48), noise=False).read_bytes()
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: video/x-msvideo\r\n\r\n"
                    + data[: len(data) // 2]
                )
                stop.wait(30)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/cam.avi"
    stop.set()
    thread.join(timeout=5)


def test_a_hung_stream_is_noticed_within_the_read_timeout(stalling_http_stream: str) -> None:
    with OpenCVSource(stalling_http_stream, read_timeout_s=0.5) as source:
        delivered = 0
        started = time.monotonic()
        with pytest.raises(SourceError, match="delivered no frame for"):
            while True:
                assert source.read() is not None
                delivered += 1
        assert time.monotonic() - started < 5.0
    assert delivered > 0


def test_missing_device_and_file_are_named() -> None:
    with pytest.raises(SourceError, match="/dev/video99 does not exist"):
        OpenCVSource("/dev/video99")
    with pytest.raises(SourceError, match="no such file"):
        OpenCVSource("file:///nonexistent/clip.mp4")


def test_passwords_stay_out_of_logs() -> None:
    assert redact("rtsp://admin:s3cret@10.0.0.5:554/h264") == "rtsp://admin:***@10.0.0.5:554/h264"
    assert redact("rtsp://10.0.0.5/h264") == "rtsp://10.0.0.5/h264"
