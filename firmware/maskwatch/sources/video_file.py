"""Frames from a video file, timed by the file's own clock.

``Frame.t`` is video time (frame index / fps), never wall-clock time, so `analyze` gives the same
alarms for a clip whether the machine decodes it at 5 or 500 fps.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np

from maskwatch.sources.frame_source import FrameSource, SourceError
from maskwatch.types import Frame

log = logging.getLogger(__name__)


class VideoFileSource(FrameSource):
    """Decodes a video file with OpenCV; ``loop=True`` replays it forever for demos, with time
    still increasing so trackers and alarm timers see one continuous stream."""

    def __init__(self, path: str | Path, loop: bool = False) -> None:
        self.path = Path(path)
        self.loop = loop
        if not self.path.exists():
            raise SourceError(f"video file {self.path} does not exist")
        if not self.path.is_file():
            raise SourceError(f"video file {self.path} is not a regular file")
        self._capture = self._open()
        self.fps = _valid_fps(self._capture.get(cv2.CAP_PROP_FPS))
        self.frame_count = max(0, int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        # The first frame is decoded here so that a file OpenCV opens but cannot decode (a
        # truncated upload, a renamed document) fails at start-up, not as an empty stream.
        self._pending = self._decode()
        if self._pending is None:
            self._capture.release()
            raise SourceError(
                f"cannot read video file {self.path}: it opened but has no decodable frames "
                "(truncated, or a codec this OpenCV build lacks)"
            )
        self._width = self._pending.shape[1]
        self._height = self._pending.shape[0]
        self._index = 0  # of the next frame, within the current pass over the file
        self._time_offset = 0.0  # video time at which the current pass started
        self._last_t = 0.0
        self._closed = False
        log.info("opened %s", self.description)

    @property
    def description(self) -> str:
        fps = f"{self.fps:.2f} fps" if self.fps else "fps unknown"
        frames = f"{self.frame_count} frames" if self.frame_count else "length unknown"
        looping = ", looping" if self.loop else ""
        return (
            f"video file {self.path.name} ({self._width}x{self._height}, {fps}, {frames}{looping})"
        )

    def read(self) -> Frame | None:
        if self._closed:
            return None
        image = self._pending if self._pending is not None else self._decode()
        self._pending = None
        if image is None:
            if not self.loop or self._index == 0:
                return None
            image = self._restart()
            if image is None:
                return None
        t = self._time_offset + self._time_in_pass()
        frame = Frame(image=image, t=t, index=self._index)
        self._last_t = t
        self._index += 1
        return frame

    def close(self) -> None:
        if not self._closed:
            self._capture.release()
            self._closed = True

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            raise SourceError(
                f"cannot open {self.path} as a video: OpenCV found no demuxer/decoder for it "
                "(not a video file, or an unsupported container)"
            )
        return capture

    def _decode(self) -> np.ndarray | None:
        ok, bgr = self._capture.read()
        if not ok or bgr is None:
            return None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _time_in_pass(self) -> float:
        """Seconds since the start of the file for the frame just decoded; the container's
        timestamps are only trusted when the file does not state a frame rate."""
        if self.fps:
            return self._index / self.fps
        return max(0.0, self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)

    def _restart(self) -> np.ndarray | None:
        """Reopen the file for the next pass; reopening is more reliable than seeking to frame 0,
        which some containers do not support."""
        frames_in_pass = self._index
        if self.fps:
            pass_duration = frames_in_pass / self.fps
        else:
            # Without a frame rate the last frame's duration is unknown; the mean frame interval
            # of the pass keeps the step between passes like the steps inside one.
            elapsed = self._last_t - self._time_offset
            pass_duration = elapsed + elapsed / max(frames_in_pass - 1, 1)
        self._capture.release()
        self._capture = self._open()
        self._time_offset += pass_duration
        self._index = 0
        log.debug("restarting %s at t=%.3f", self.path.name, self._time_offset)
        return self._decode()


def _valid_fps(value: float) -> float:
    """OpenCV reports 0, NaN or absurd rates for streams without timing; 0 means unknown."""
    if not math.isfinite(value) or value <= 0 or value > 1000:
        return 0.0
    return float(value)
