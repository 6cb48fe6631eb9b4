"""What ``/healthz`` tells anyone who asks, without a login (F22).

Health is worked out from a status snapshot (``service.status.snapshot()``): from the age of
the last processed frame and loop turn and the latest store and delivery results, so it
recovers by itself once the cause is gone, and a stalled loop shows as stalled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# No processed frame for this long while the camera delivers: the loop is stalled (degraded).
STALE_FRAME_S = 5.0
# The processing loop turns at least every quarter second; this long without a turn, it is
# stuck and systemd's watchdog is about to restart the service (down).
STUCK_LOOP_S = 30.0
# Destination states (dispatcher.Dispatcher.health) that mean alarms are not going out.
FAILED_OUTPUT_STATES = frozenset({"error", "stuck"})


@dataclass(frozen=True)
class Health:
    """What /healthz tells anyone who asks, without a login: ``problems`` are fixed words
    that hold no address, host, user or path (those stay behind the login, in /api/status)."""

    status: str  # ok, degraded, down
    problems: list[str]


def assess_health(s: Mapping[str, Any]) -> Health:
    """Health from a :meth:`ServiceStatus.snapshot`: worked out from ages and the latest
    results, so it recovers by itself once the cause is gone."""
    down: list[str] = []
    degraded: list[str] = []
    if s.get("state") == "stopping":
        down.append("service stopping")
    if (s.get("loop_age_s") or 0.0) > STUCK_LOOP_S:
        down.append("processing loop stuck")
    if s.get("state") == "starting":
        degraded.append("service starting")
    if not s.get("camera_up"):
        degraded.append("camera down, retrying")
    else:
        age = s.get("frame_age_s")
        if age is None:
            degraded.append("no frame processed yet")
        elif age > STALE_FRAME_S:
            degraded.append(f"no frame processed for {age:.0f} s")
    if s.get("event_log_error"):
        degraded.append("event log cannot store alarms")
    outputs = s.get("outputs") or {}
    failing = sum(1 for o in outputs.values() if o.get("state") in FAILED_OUTPUT_STATES)
    if failing:
        degraded.append(f"{failing} alarm output(s) not working")
    stream = s.get("stream") or {}
    if stream.get("enabled") and not stream.get("running"):
        degraded.append("video stream not running")
    status = "down" if down else "degraded" if degraded else "ok"
    return Health(status, down + degraded)
