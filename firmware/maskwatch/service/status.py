"""What the running service is doing, for the status page, /api/status, /healthz and
systemd's STATUS=.

One object, written by the processing loop and read by the web threads; readers take a
snapshot (a plain dict) so they never see a half-updated state. Rates and ages are worked out
when the snapshot is taken, not when the loop last wrote, so a stalled loop shows as stalled.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from maskwatch import __version__


@dataclass
class StatusFields:
    version: str = __version__
    started_utc: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    device: str = ""
    source: str = ""
    camera_up: bool = False
    camera_error: str = ""
    camera_reopens: int = 0
    detector_model: str = ""
    classifier_model: str = ""
    accelerator: str = ""
    state: str = "starting"  # starting, active, ir_mode, outside_schedule, stopping
    schedule_active: bool = True
    schedule_next_change_utc: str | None = None
    timezone: str = ""
    ir_mode: bool = False
    ir_source: str = ""
    fps: float = 0.0
    fps_cap: float = 0.0
    frames_captured: int = 0
    frames_dropped: int = 0
    frames_processed: int = 0
    faces_in_frame: int = 0
    alarms: int = 0
    last_alarm_utc: str | None = None
    config_error: str = ""
    # Alarm destinations by name: state, queued, delivered, dropped, failed_attempts,
    # last_success_utc, last_error, last_error_utc (dispatcher.Dispatcher.health).
    outputs: dict[str, dict[str, object]] = field(default_factory=dict)
    event_log_error: str = ""  # the last alarm the event log could not store
    # People counted since the start, by decided state (compliance statistics, F29).
    people: dict[str, int] = field(default_factory=dict)
    # The RTSP stream for recorders (RecorderStream.status): where, who watches, any error.
    stream: dict[str, object] = field(default_factory=lambda: {"enabled": False})


class ServiceStatus:
    FPS_WINDOW_S = 5.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._fields = StatusFields()
        self._started = clock()
        self._processed_at: deque[float] = deque()
        self._last_frame: float | None = None
        self._loop_turned = self._started

    def update(self, **changes: object) -> None:
        with self._lock:
            for key, value in changes.items():
                if not hasattr(self._fields, key):
                    raise AttributeError(f"no status field {key}")
                setattr(self._fields, key, value)

    def loop_turned(self) -> None:
        """The processing loop is alive (it turns at least every quarter second)."""
        now = self._clock()
        with self._lock:
            self._loop_turned = now

    def frame_processed(self, faces: int) -> None:
        """Count a processed frame; fps is measured over the last few wall-clock seconds."""
        now = self._clock()
        with self._lock:
            self._processed_at.append(now)
            self._last_frame = now
            self._forget_before(now)
            self._fields.frames_processed += 1
            self._fields.faces_in_frame = faces

    def alarm(self) -> None:
        with self._lock:
            self._fields.alarms += 1
            self._fields.last_alarm_utc = datetime.now(timezone.utc).isoformat()

    def snapshot(self) -> dict[str, object]:
        now = self._clock()
        with self._lock:
            self._forget_before(now)
            times = self._processed_at
            span = times[-1] - times[0] if len(times) > 1 else 0.0
            self._fields.fps = round((len(times) - 1) / span, 2) if span else 0.0
            data = asdict(self._fields)
            last = self._last_frame
            data["frame_age_s"] = None if last is None else round(now - last, 1)
            data["loop_age_s"] = round(now - self._loop_turned, 1)
        data["uptime_s"] = round(now - self._started, 1)
        return data

    def _forget_before(self, now: float) -> None:
        while self._processed_at and now - self._processed_at[0] > self.FPS_WINDOW_S:
            self._processed_at.popleft()

    def summary(self) -> str:
        """One line for systemd's STATUS= and the journal."""
        s = self.snapshot()
        camera = ("camera up" if s["camera_up"] else
                  f"camera down, retrying ({s['camera_error'] or 'waiting for frames'})")
        return (
            f"{s['state']}, {camera}, {s['fps']:.1f} fps, {s['faces_in_frame']} face(s), "
            f"{s['alarms']} alarm(s)"
        )

