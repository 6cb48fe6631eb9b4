"""What the running service is doing, for the status page, /api/status and systemd's STATUS=.

One object, written by the processing loop and read by the web threads; readers take a
snapshot (a plain dict) so they never see a half-updated state.
"""

from __future__ import annotations

import threading
import time
from collections import deque
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


class ServiceStatus:
    FPS_WINDOW_S = 5.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fields = StatusFields()
        self._started = time.monotonic()
        self._processed_at: deque[float] = deque()

    def update(self, **changes: object) -> None:
        with self._lock:
            for key, value in changes.items():
                if not hasattr(self._fields, key):
                    raise AttributeError(f"no status field {key}")
                setattr(self._fields, key, value)

    def frame_processed(self, faces: int) -> None:
        """Count a processed frame; fps is measured over the last few wall-clock seconds."""
        now = time.monotonic()
        with self._lock:
            self._processed_at.append(now)
            while self._processed_at and now - self._processed_at[0] > self.FPS_WINDOW_S:
                self._processed_at.popleft()
            span = now - self._processed_at[0] if len(self._processed_at) > 1 else 0.0
            self._fields.fps = round((len(self._processed_at) - 1) / span, 2) if span else 0.0
            self._fields.frames_processed += 1
            self._fields.faces_in_frame = faces

    def alarm(self) -> None:
        with self._lock:
            self._fields.alarms += 1
            self._fields.last_alarm_utc = datetime.now(timezone.utc).isoformat()

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            data = asdict(self._fields)
        data["uptime_s"] = round(time.monotonic() - self._started, 1)
        return data

    def summary(self) -> str:
        """One line for systemd's STATUS= and the journal."""
        s = self.snapshot()
        camera = "camera up" if s["camera_up"] else f"camera DOWN ({s['camera_error'] or 'waiting'})"
        return (
            f"{s['state']}, {camera}, {s['fps']:.1f} fps, {s['faces_in_frame']} face(s), "
            f"{s['alarms']} alarm(s)"
        )
