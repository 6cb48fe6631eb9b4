"""Frame-rate cap (F12) decided by frame timestamps, so a video file is processed exactly as
the device would process the same scene live, however fast the machine reads the file."""

from __future__ import annotations


class FpsGate:
    def __init__(self, fps_cap: float) -> None:
        self.interval = 1.0 / fps_cap
        self._next_due: float | None = None

    def admit(self, t: float) -> bool:
        """True if the frame taken at ``t`` should be processed.

        Due times advance by whole intervals, so a 25 fps input capped at 15 fps yields 15
        processed frames a second on average instead of every second frame (12.5).
        """
        # A quarter interval of slack absorbs the timestamp jitter of real cameras.
        if self._next_due is not None and t < self._next_due - 0.25 * self.interval:
            return False
        if self._next_due is None or t - self._next_due > self.interval:
            self._next_due = t + self.interval
        else:
            self._next_due += self.interval
        return True
