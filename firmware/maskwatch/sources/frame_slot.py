"""The hand-over between the capture thread and the processing loop: one slot, newest wins.

A queue would let a slow processing loop fall ever further behind the camera; with one slot
the loop always works on the newest frame and the frames it could not take are counted.
"""

from __future__ import annotations

import threading

from maskwatch.types import Frame


class LatestFrameSlot:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self.dropped = 0
        self.captured = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self.captured += 1
            self._cond.notify()

    def take(self, timeout: float) -> Frame | None:
        """The newest frame not yet taken, waiting up to ``timeout`` seconds for one."""
        with self._cond:
            if self._frame is None:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return frame
