"""Frames from a Raspberry Pi CSI camera through picamera2 (libcamera).

picamera2 is not on PyPI in a usable form for the Pi: it comes from Raspberry Pi OS
(``python3-picamera2``) together with libcamera's Python bindings, so it is imported only when
this source is opened and its absence is an installer-facing message, not an import error at
start-up.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import cv2
import numpy as np

from maskwatch.sources.frame_source import LiveSource, SourceError
from maskwatch.types import Frame

log = logging.getLogger(__name__)

# libcamera needs a moment to start the sensor and settle exposure before the first frame.
START_GRACE_S = 10.0
# picamera2's "RGB888" is named after libcamera's DRM fourcc: its bytes are B, G, R in memory,
# which is the layout OpenCV calls BGR. Asking for it (rather than "BGR888") keeps the format
# the Pi's ISP produces natively on every model; the channel swap happens here.
CAMERA_FORMAT = "RGB888"

INSTALL_HINT = (
    "picamera2 is not importable: install it with `sudo apt install python3-picamera2` and make "
    "the venv with `python3 -m venv --system-site-packages` so it can see the system package"
)


class Picamera2Source(LiveSource):
    """The Pi's CSI camera as a live stream; ``Frame.t`` is the sensor's own timestamp.

    The sensor timestamp is when the frame was exposed, so the decision logic's timing does not
    include capture or queueing delay; ``time.monotonic()`` is the fallback when libcamera does
    not report one. Raises :class:`SourceError` when the camera stops delivering frames (cable,
    power), so a :class:`~maskwatch.sources.factory.ReopeningSource` can reopen it.
    """

    def __init__(
        self,
        camera_num: int = 0,
        width: int = 1280,
        height: int = 720,
        fps: int = 15,
        read_timeout_s: float = 5.0,
    ) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise SourceError(f"{INSTALL_HINT} ({exc})") from None
        self.camera_num = camera_num
        self.fps = fps
        self.read_timeout_s = read_timeout_s
        self._index = 0
        try:
            self._camera: Any = Picamera2(camera_num)
        except Exception as exc:  # picamera2 raises IndexError/RuntimeError when none is found
            raise SourceError(
                f"Raspberry Pi camera {camera_num} not found or busy ({type(exc).__name__}: "
                f"{exc}); check the ribbon cable and `rpicam-hello --list-cameras`, and that no "
                "other program holds the camera"
            ) from None
        try:
            frame_us = round(1_000_000 / fps)
            config = self._camera.create_video_configuration(
                main={"size": (width, height), "format": CAMERA_FORMAT},
                controls={"FrameDurationLimits": (frame_us, frame_us)},
            )
            self._camera.configure(config)
            self._camera.start()
            # picamera2 may align the size; the configured one is what frames will have.
            self._size = tuple(self._camera.camera_configuration()["main"]["size"])
            if self._size != (width, height):
                log.warning(
                    "camera %d delivers %dx%d instead of the requested %dx%d",
                    camera_num, self._size[0], self._size[1], width, height,
                )
            # The first frame proves the camera streams, so a dead sensor fails at open.
            self._pending = self._capture(read_timeout_s + START_GRACE_S)
        except Exception as exc:
            self._release()
            if isinstance(exc, SourceError):
                raise
            raise SourceError(
                f"Raspberry Pi camera {camera_num} could not start at {width}x{height} "
                f"{fps} fps: {type(exc).__name__}: {exc}"
            ) from None
        log.info("opened %s", self.description)

    @property
    def description(self) -> str:
        return (
            f"Raspberry Pi camera {self.camera_num} (picamera2, {self._size[0]}x{self._size[1]}, "
            f"{self.fps} fps)"
        )

    def _next_frame(self) -> Frame:
        try:
            return self._capture(self.read_timeout_s)
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(
                f"Raspberry Pi camera {self.camera_num} failed: {type(exc).__name__}: {exc}"
            ) from None

    def _capture(self, timeout_s: float) -> Frame:
        try:
            # wait=<seconds> makes picamera2 give up instead of blocking forever on a dead camera.
            request = self._camera.capture_request(wait=timeout_s)
        except TimeoutError:
            raise SourceError(
                f"Raspberry Pi camera {self.camera_num} delivered no frame for {timeout_s:g} s"
            ) from None
        try:
            bgr = request.make_array("main")
            metadata = request.get_metadata()
        finally:
            # The buffer goes back to libcamera at once; cvtColor below works on our copy.
            request.release()
        timestamp_ns = metadata.get("SensorTimestamp")
        t = timestamp_ns / 1e9 if timestamp_ns else time.monotonic()
        frame = Frame(image=_to_rgb(bgr), t=t, index=self._index)
        self._index += 1
        return frame

    def _release(self) -> None:
        """Stop and close the camera, so libcamera lets the next open (a reopen) acquire it."""
        try:
            self._camera.stop()
        except Exception as exc:  # a camera that vanished may fail to stop; closing still matters
            log.debug("stopping camera %d: %s", self.camera_num, exc)
        try:
            self._camera.close()
        except Exception as exc:
            log.warning("closing Raspberry Pi camera %d: %s", self.camera_num, exc)


def _to_rgb(bgr: np.ndarray) -> np.ndarray:
    """picamera2's RGB888 array (B, G, R bytes) as an RGB copy owned by the frame."""
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
