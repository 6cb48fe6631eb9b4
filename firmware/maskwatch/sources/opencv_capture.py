"""Live frames through OpenCV's VideoCapture: USB/V4L2 cameras and network streams (RTSP,
HTTP), which the pip OpenCV wheel reads with its built-in V4L2 and FFmpeg back-ends.

Everything here is treated as live: ``Frame.t`` is ``time.monotonic()`` at arrival, and a
stream that ends or stalls is a failure (:class:`SourceError`), for the caller to reopen. Video
files with their own clock are :class:`~maskwatch.sources.video_file.VideoFileSource`'s job.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np

from maskwatch.redact import redact_url
from maskwatch.sources.frame_source import LiveSource, SourceError
from maskwatch.types import Frame

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")
# Opening an RTSP stream (DESCRIBE, SETUP, the first key frame) can take several seconds.
START_GRACE_S = 10.0


class OpenCVSource(LiveSource):
    """A V4L2 device (``/dev/videoN``, a ``/dev/v4l/by-id/...`` path or an index), or a URL
    (``rtsp://``, ``http://``, ..., ``file://``) or plain path read as a live stream.

    Width, height and fps are asked of V4L2 cameras only; a camera may round them and the
    frames keep whatever size it delivers. A read that gets no frame for ``read_timeout_s``
    raises :class:`SourceError`, so a hung stream is noticed instead of blocking the service.
    """

    def __init__(
        self,
        target: str | int | os.PathLike[str],
        width: int | None = None,
        height: int | None = None,
        fps: int | None = None,
        read_timeout_s: float = 5.0,
    ) -> None:
        self.read_timeout_s = read_timeout_s
        self._index = 0
        if isinstance(target, os.PathLike):
            target = os.fspath(target)
        device = _device(target)
        if device is not None:
            self.name = f"V4L2 camera {device}"
            self._capture = self._open_device(device, width, height, fps)
        else:
            self.name = f"stream {redact_url(str(target))}"
            self._capture = self._open_stream(str(target))
        self._size = (
            int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        # The first frame proves the source delivers, so a wrong device or URL fails at open.
        try:
            self._pending = self._read_frame()
        except SourceError:
            self._capture.release()
            raise
        log.info("opened %s", self.description)

    @property
    def description(self) -> str:
        return f"{self.name} ({self._size[0]}x{self._size[1]})"

    def _next_frame(self) -> Frame:
        return self._read_frame()

    def _release(self) -> None:
        self._capture.release()

    def _open_device(
        self, device: str | int, width: int | None, height: int | None, fps: int | None
    ) -> cv2.VideoCapture:
        if isinstance(device, str) and not Path(device).exists():
            raise SourceError(f"{self.name} does not exist (is the camera plugged in?)")
        # OpenCV's V4L2 back-end waits 10 s per frame by default and reads this setting once,
        # on its first use in the process.
        os.environ.setdefault(
            "OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", str(math.ceil(self.read_timeout_s))
        )
        capture = cv2.VideoCapture(device, cv2.CAP_V4L2)
        if not capture.isOpened():
            capture.release()
            raise SourceError(
                f"cannot open {self.name}: not a capture device, busy, or no permission "
                "(the service user needs the 'video' group)"
            )
        # Most USB cameras reach 720p at 15-30 fps only in MJPG; YUYV is limited by USB 2.
        capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        for prop, value in (
            (cv2.CAP_PROP_FRAME_WIDTH, width),
            (cv2.CAP_PROP_FRAME_HEIGHT, height),
            (cv2.CAP_PROP_FPS, fps),
        ):
            if value is not None:
                capture.set(prop, value)
        return capture

    def _open_stream(self, target: str) -> cv2.VideoCapture:
        scheme = urlsplit(target).scheme.lower()
        if scheme == "file":
            target = unquote(urlsplit(target).path)
        elif scheme in ("rtsp", "rtsps"):
            # RTSP over UDP loses packets on busy networks and the picture smears; TCP
            # retransmits. An installer's own OPENCV_FFMPEG_CAPTURE_OPTIONS wins.
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        if scheme not in STREAM_SCHEMES and not Path(target).is_file():
            raise SourceError(f"{self.name}: no such file")
        capture = cv2.VideoCapture(
            target,
            cv2.CAP_FFMPEG,
            [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int((self.read_timeout_s + START_GRACE_S) * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000),
            ],
        )
        if not capture.isOpened():
            capture.release()
            raise SourceError(
                f"cannot open {self.name}: unreachable, wrong path or credentials, or not a "
                "video stream OpenCV's FFmpeg can read"
            )
        return capture

    def _read_frame(self) -> Frame:
        started = time.monotonic()
        ok, bgr = self._capture.read()
        if not ok or bgr is None:
            waited = time.monotonic() - started
            if waited >= self.read_timeout_s * 0.9:
                raise SourceError(f"{self.name} delivered no frame for {waited:.1f} s")
            raise SourceError(f"{self.name} ended or broke off")
        frame = Frame(image=_to_rgb(bgr), t=time.monotonic(), index=self._index)
        self._index += 1
        return frame


def _device(target: str | int) -> str | int | None:
    """The V4L2 device a target names (an index or a /dev path), or None for a URL or file."""
    if isinstance(target, int):
        return target
    if target.isdigit():
        return int(target)
    if target.startswith("/dev/"):
        return target
    return None


def _to_rgb(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
