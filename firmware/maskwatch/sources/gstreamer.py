"""Frames from a GStreamer pipeline run as a ``gst-launch-1.0`` child process: the Jetson's
CSI camera (``nvarguscamerasrc``), or any pipeline head an installer configures.

The pip OpenCV wheels are built without GStreamer, and PyGObject would tie the firmware to the
system Python, so the pipeline runs as a separate process that writes raw RGB frames to its
stdout (``fdsink fd=1``). A crash in a camera driver then kills only the child; the parent
notices EOF, reports the camera down, and a reopen starts a fresh pipeline.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import shlex
import shutil
import signal
import subprocess
import threading
import time

import numpy as np

from maskwatch.sources.frame_source import LiveSource, SourceError
from maskwatch.types import Frame

log = logging.getLogger(__name__)

GST_LAUNCH = "gst-launch-1.0"
# nvarguscamerasrc takes a second or two to start the sensor; GStreamer's first run also builds
# its plugin registry. The first frame may take this much longer than later ones.
START_GRACE_S = 10.0
STOP_TIMEOUT_S = 2.0
STDERR_LINES_KEPT = 20


def jetson_head(sensor_id: int, width: int, height: int, fps: int) -> str:
    """The Jetson CSI camera at the wanted size and rate, converted by the VIC out of NVMM
    memory into BGRx, which ``videoconvert`` can turn into packed RGB."""
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1 ! "
        "nvvidconv ! video/x-raw,format=BGRx"
    )


def pipeline_argv(head: str, width: int, height: int) -> list[str]:
    """``gst-launch-1.0`` arguments: the head, then conversion to exactly ``width`` x
    ``height`` packed RGB on stdout, so every frame is ``width * height * 3`` bytes."""
    tail = (
        "videoconvert ! videoscale ! "
        f"video/x-raw,format=RGB,width={width},height={height} ! fdsink fd=1"
    )
    return [GST_LAUNCH, "-q", *shlex.split(head), "!", *shlex.split(tail)]


class GstSource(LiveSource):
    """A live stream read from a ``gst-launch-1.0`` child; ``Frame.t`` is ``time.monotonic()``
    when the frame's last byte arrived.

    ``read()`` raises :class:`SourceError` when the child dies or sends nothing for
    ``read_timeout_s``; the message carries the child's last stderr lines (GStreamer's own
    explanation). ``close()`` terminates and reaps the child and closes its pipes.
    """

    def __init__(
        self,
        head: str,
        width: int,
        height: int,
        read_timeout_s: float = 5.0,
        start_timeout_s: float | None = None,
    ) -> None:
        if shutil.which(GST_LAUNCH) is None:
            raise SourceError(
                f"{GST_LAUNCH} not found: install GStreamer's tools "
                "(`sudo apt install gstreamer1.0-tools gstreamer1.0-plugins-base`; on a Jetson "
                "they come with JetPack)"
            )
        self.head = head
        self.width = width
        self.height = height
        self.read_timeout_s = read_timeout_s
        self._frame_bytes = width * height * 3
        self._index = 0
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES_KEPT)
        argv = pipeline_argv(head, width, height)
        log.debug("starting %s", shlex.join(argv))
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Its own session: a Ctrl-C or a signal to the service's process group does not
            # kill the pipeline before close() has stopped it in order.
            start_new_session=True,
        )
        self._stderr_thread = threading.Thread(
            target=self._log_stderr, name=f"gst-stderr-{self._proc.pid}", daemon=True
        )
        self._stderr_thread.start()
        try:
            first_timeout = (
                start_timeout_s if start_timeout_s is not None else read_timeout_s + START_GRACE_S
            )
            self._pending = self._read_frame(first_timeout)
        except SourceError:
            self._stop()
            raise
        log.info("opened %s", self.description)

    @property
    def description(self) -> str:
        return f"GStreamer pipeline '{self.head}' ({self.width}x{self.height}, pid {self.pid})"

    @property
    def pid(self) -> int:
        """The ``gst-launch-1.0`` child's process id."""
        return self._proc.pid

    def _next_frame(self) -> Frame:
        return self._read_frame(self.read_timeout_s)

    def _release(self) -> None:
        self._stop()

    def _read_frame(self, timeout_s: float) -> Frame:
        buffer = bytearray(self._frame_bytes)
        view = memoryview(buffer)
        assert self._proc.stdout is not None
        # Read the fd directly: select() cannot see data already pulled into a Python buffer.
        stdout = self._proc.stdout.fileno()
        got = 0
        deadline = time.monotonic() + timeout_s
        while got < self._frame_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([stdout], [], [], remaining)[0]:
                raise SourceError(
                    f"GStreamer pipeline '{self.head}' sent no complete frame for "
                    f"{timeout_s:g} s{self._stderr_hint()}"
                )
            count = os.readv(stdout, [view[got:]])
            if not count:
                raise SourceError(self._death_message())
            got += count
        image = np.frombuffer(buffer, np.uint8).reshape(self.height, self.width, 3)
        frame = Frame(image=image, t=time.monotonic(), index=self._index)
        self._index += 1
        return frame

    def _death_message(self) -> str:
        try:
            code = self._proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return f"GStreamer pipeline '{self.head}' closed its output{self._stderr_hint()}"
        # Let the stderr reader take the child's last words before quoting them.
        self._stderr_thread.join(timeout=STOP_TIMEOUT_S)
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return f"GStreamer pipeline '{self.head}' {how}{self._stderr_hint()}"

    def _stderr_hint(self) -> str:
        lines = list(self._stderr_tail)
        return ": " + " | ".join(lines[-3:]) if lines else ""

    def _log_stderr(self) -> None:
        """GStreamer reports errors on stderr; they go to our log and into error messages."""
        assert self._proc.stderr is not None
        # This thread owns the pipe and closes it at EOF: closing it from another thread
        # while a read is blocked on it could hand the fd number to someone else mid-read.
        with self._proc.stderr as stderr:
            for raw in stderr:
                line = raw.decode("utf-8", "replace").strip()
                if line:
                    self._stderr_tail.append(line)
                    log.warning("gst[%d]: %s", self._proc.pid, line)

    def _stop(self) -> None:
        """Terminate and reap the child (no zombie) and close both pipes (no fd leak)."""
        if self._proc.poll() is None:
            # On SIGINT gst-launch takes the pipeline down in order (to the NULL state), which
            # lets nvarguscamerasrc release the sensor; a killed one can leave nvargus-daemon
            # holding it, and the reopen then fails.
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("gst-launch-1.0 pid %d ignored SIGINT; killing it", self._proc.pid)
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr_thread.join(timeout=STOP_TIMEOUT_S)
        if self._stderr_thread.is_alive():
            # Only when a grandchild inherited the pipe; the thread closes it at EOF.
            log.debug("gst-launch-1.0 pid %d: stderr still open after exit", self._proc.pid)
        log.debug("gst-launch-1.0 pid %d stopped (exit %s)", self._proc.pid, self._proc.returncode)
