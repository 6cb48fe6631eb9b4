"""The stream in-process, on a real event bus and real RTSP clients: who may watch, that
nothing is encoded (not even subscribed to) without a client, and clear refusals."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from maskwatch.config import StreamConfig
from maskwatch.decision import FrameOutcome
from maskwatch.events import EventBus
from maskwatch.stream import RecorderStream
from maskwatch.stream.rtsp_server import STREAM_NICE, streaming_thread_ids
from maskwatch.types import Frame

from rtsp_client import RtspTcpClient
from stream_helpers import discover, read_frames, require_stream_stack, video_size

WAIT_S = 30.0


class FramePublisher:
    """The service's processing loop as the stream sees it: a processed frame on the bus
    every 1/15 s (a moving bar, so the encoder has something to encode)."""

    def __init__(self, bus: EventBus, state: str = "active") -> None:
        self.bus = bus
        self.state = state
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            image = np.zeros((240, 320, 3), np.uint8)
            image[:, (index * 8) % 320:(index * 8) % 320 + 16] = 255
            self.bus.publish("frame", FrameOutcome(Frame(image, index / 15, index),
                                                   self.state, [], []))
            index += 1
            time.sleep(1 / 15)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def bus() -> Iterator[EventBus]:
    bus = EventBus()
    publisher = FramePublisher(bus)
    yield bus
    publisher.stop()


def start_stream(bus: EventBus, **settings: object) -> RecorderStream:
    config = StreamConfig(enabled=True, bind="127.0.0.1", port=0, width=320, height=240,
                          **settings)
    stream = RecorderStream(config, bus)
    assert stream.start(), stream.error
    return stream


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT_S} s: {what}"
        time.sleep(0.05)


def test_basic_login_lets_the_right_user_in_only(bus: EventBus) -> None:
    require_stream_stack()
    stream = start_stream(bus, user="nvr", password="pa:ss word", auth="basic")
    try:
        base = f"127.0.0.1:{stream.port}/live"
        assert video_size(discover(f"rtsp://nvr:pa%3Ass%20word@{base}")) == (320, 240)
        for refused in (f"rtsp://{base}", f"rtsp://nvr:wrong@{base}",
                        f"rtsp://other:pa%3Ass%20word@{base}"):
            report = discover(refused)
            assert video_size(report) is None and "Unauthorized" in report, refused
        assert stream.status()["auth"] == "basic"
        assert "pa:ss" not in repr(stream.status())
    finally:
        stream.stop()


def test_no_client_means_no_subscription_and_no_encoding(bus: EventBus) -> None:
    """The stream takes frames from the bus only while a client plays a mount, and the
    mount's pipeline exists only meanwhile: with no client, detection pays nothing."""
    require_stream_stack()
    stream = start_stream(bus)
    try:
        time.sleep(1.0)
        assert not bus.has_subscribers("frame")
        assert stream.status()["encoding"] == []
        client = RtspTcpClient("127.0.0.1", stream.port, "/boxes")
        client.play()
        assert client.count_frames(15, WAIT_S) == 15
        assert bus.has_subscribers("frame")
        assert stream.status()["encoding"] == ["/boxes"]
        assert stream.status()["clients"] == 1
        client.request("TEARDOWN", client.url)
        client.close()
        wait_until(lambda: stream.status()["encoding"] == [], "the pipeline stops")
        wait_until(lambda: not bus.has_subscribers("frame"), "the bus subscription ends")
        wait_until(lambda: stream.status()["clients"] == 0, "the client is gone")
    finally:
        stream.stop()


def streaming_thread_priorities() -> list[int]:
    """The nice values of the media's streaming threads and the encoder's workers."""
    found = []
    for tid in streaming_thread_ids():
        try:
            found.append(os.getpriority(os.PRIO_PROCESS, tid))
        except OSError:  # the thread ended meanwhile
            continue
    return found


def test_encoding_gives_way_to_detection(bus: EventBus) -> None:
    require_stream_stack()
    stream = start_stream(bus)
    try:
        client = RtspTcpClient("127.0.0.1", stream.port, "/live")
        client.play()
        assert client.count_frames(15, WAIT_S) == 15
        wait_until(lambda: streaming_thread_priorities()
                   and min(streaming_thread_priorities()) >= STREAM_NICE,
                   "the streaming threads run at a lower priority")
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < STREAM_NICE
        client.close()
    finally:
        stream.stop()


def test_a_recorder_switching_mounts_gets_frames_every_time(bus: EventBus) -> None:
    """Each new client of a mount right after the last client of the other left: the new
    media must preroll at once (CI once saw DESCRIBE answered 503 after 20 s)."""
    require_stream_stack()
    stream = start_stream(bus)
    try:
        for path in ("/live", "/boxes") * 5:
            client = RtspTcpClient("127.0.0.1", stream.port, path)
            client.play()
            assert client.count_frames(5, WAIT_S) == 5, path
            client.request("TEARDOWN", client.url)
            client.close()
    finally:
        stream.stop()


def test_outside_the_schedule_the_stream_stays_up_and_shows_nothing() -> None:
    """F8, as on the page: no picture outside the operation schedule; black frames keep the
    recorder connected."""
    require_stream_stack()
    bus = EventBus()
    publisher = FramePublisher(bus, state="outside_schedule")
    stream = start_stream(bus)
    try:
        url = f"rtsp://127.0.0.1:{stream.port}/live"
        frames = read_frames(url, 15)
        assert all(image.shape == (240, 320, 3) for image in frames)
        assert max(int(image.max()) for image in frames) < 30
        publisher.state = "active"
        assert max(int(image.max()) for image in read_frames(url, 30)) > 200  # the white bar
    finally:
        stream.stop()
        publisher.stop()


def test_a_client_that_stops_reading_is_dropped_and_its_encoding_stops(bus: EventBus) -> None:
    """RTSP sessions over TCP never expire, so without the stalled-client timeout a hung
    recorder would keep the encoder running as long as its connection stays open."""
    require_stream_stack()
    stream = start_stream(bus, stalled_client_timeout_s=5)
    try:
        hung = RtspTcpClient("127.0.0.1", stream.port, "/live", receive_buffer=4096)
        hung.play()
        assert stream.status()["encoding"] == ["/live"]
        wait_until(lambda: stream.status()["clients"] == 0, "the hung client is dropped")
        wait_until(lambda: stream.status()["encoding"] == [], "the pipeline stops")
        hung.close()
    finally:
        stream.stop()


def test_a_missing_encoder_or_a_taken_port_is_a_message_not_a_crash(bus: EventBus) -> None:
    require_stream_stack()
    from maskwatch.stream.gst_stack import load_rtsp_stack

    if load_rtsp_stack().Gst.ElementFactory.find("nvv4l2h264enc") is None:
        stream = RecorderStream(StreamConfig(enabled=True, port=0, encoder="nvv4l2h264enc"),
                                bus)
        assert not stream.start()
        assert "nvv4l2h264enc" in stream.error and 'encoder = "auto"' in stream.error
        assert stream.status()["running"] is False
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        stream = RecorderStream(StreamConfig(enabled=True, bind="127.0.0.1", port=port), bus)
        assert not stream.start()
        assert f"127.0.0.1:{port}" in stream.error and "[stream] bind or port" in stream.error


def test_without_pygobject_the_stream_says_what_to_install() -> None:
    """A device without python3-gi: start() reports it, naming the packages (``gi`` is made
    unimportable in a child process, as on a machine where it is not installed)."""
    code = ("import sys; sys.modules['gi'] = None\n"
            "from maskwatch.config import StreamConfig\n"
            "from maskwatch.events import EventBus\n"
            "from maskwatch.stream import RecorderStream\n"
            "stream = RecorderStream(StreamConfig(enabled=True, port=0), EventBus())\n"
            "assert not stream.start()\n"
            "print(stream.status()['error'])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    for words in ("PyGObject", "python3-gi", "gir1.2-gst-rtsp-server-1.0", "scripts/install.sh",
                  "maskwatch[stream]"):
        assert words in result.stdout
    assert "detection and alarms go on without it" in result.stderr


def test_a_disabled_stream_imports_nothing_of_gstreamer() -> None:
    code = ("import sys, maskwatch.service.service, maskwatch.stream; "
            "assert not [m for m in sys.modules if m == 'gi' or m.startswith('gi.')], "
            "sorted(m for m in sys.modules if m.startswith('gi'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
