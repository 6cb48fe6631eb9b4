"""Status and health are worked out when asked, from ages and the latest results: a stalled
loop shows as stalled, and a cause that went away stops being reported."""

from __future__ import annotations

from maskwatch.service.status import ServiceStatus
from maskwatch.web.health import STALE_FRAME_S, STUCK_LOOP_S, assess_health


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def running(clock: Clock) -> ServiceStatus:
    status = ServiceStatus(clock=clock)
    status.update(state="active", camera_up=True)
    for _ in range(30):  # 15 fps for 2 s
        clock.now += 1 / 15
        status.loop_turned()
        status.frame_processed(1)
    return status


def test_fps_and_health_follow_a_stalled_loop_and_recover() -> None:
    clock = Clock()
    status = running(clock)
    s = status.snapshot()
    assert abs(s["fps"] - 15.0) < 0.1 and s["frame_age_s"] == 0.0
    assert assess_health(s).status == "ok"

    clock.now += STALE_FRAME_S + 1  # the loop turns but no frame is processed
    status.loop_turned()
    s = status.snapshot()
    assert s["fps"] == 0.0 and s["frame_age_s"] == STALE_FRAME_S + 1
    health = assess_health(s)
    assert health.status == "degraded"
    assert health.problems == [f"no frame processed for {STALE_FRAME_S + 1:.0f} s"]

    clock.now += STUCK_LOOP_S + 1  # not even the loop turns
    assert assess_health(status.snapshot()).status == "down"

    status.loop_turned()
    status.frame_processed(0)
    assert assess_health(status.snapshot()).status == "ok"


def test_health_words_never_quote_the_details() -> None:
    clock = Clock()
    status = running(clock)
    status.update(
        camera_up=False, camera_error="stream rtsp://u:***@10.1.2.3/x stopped delivering",
        event_log_error="[Errno 28] No space left on device: '/var/lib/maskwatch/snapshots'",
        outputs={"webhook hooks.example": {"state": "error", "last_error": "refused"},
                 "tcp 10.1.2.4:1818": {"state": "idle"}},
    )
    health = assess_health(status.snapshot())
    assert health.status == "degraded"
    assert health.problems == [
        "camera down, retrying", "event log cannot store alarms", "1 alarm output(s) not working",
    ]
    status.update(camera_up=True, event_log_error="", outputs={})
    assert assess_health(status.snapshot()).problems == []


def test_an_enabled_stream_that_cannot_run_degrades_health_without_saying_why() -> None:
    status = running(Clock())
    status.update(stream={"enabled": True, "running": False, "port": 8554,
                          "error": "cannot listen on 10.1.2.3:8554 for RTSP"})
    health = assess_health(status.snapshot())
    assert health.status == "degraded" and health.problems == ["video stream not running"]
    status.update(stream={"enabled": True, "running": True})
    assert assess_health(status.snapshot()).status == "ok"
    status.update(stream={"enabled": False})
    assert assess_health(status.snapshot()).status == "ok"


def test_stopping_is_down_and_starting_degraded() -> None:
    clock = Clock()
    status = running(clock)
    status.update(state="starting")
    assert assess_health(status.snapshot()).status == "degraded"
    status.update(state="stopping")
    assert assess_health(status.snapshot()).status == "down"
