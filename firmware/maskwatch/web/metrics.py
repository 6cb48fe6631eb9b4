"""`/metrics` (F22): Prometheus text made by prometheus-client from the status snapshot at
scrape time, so the processing loop keeps no metric state of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

STATES = ("starting", "active", "ir_mode", "outside_schedule", "stopping")
PERSON_STATES = ("masked", "unmasked", "incorrect", "undecided", "static")


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


class ServiceCollector:
    def __init__(self, snapshot: Callable[[], dict[str, Any]],
                 web: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot
        self._web = web

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot()
        w = self._web()

        def gauge(name: str, doc: str, value: Any) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"maskwatch_{name}", doc, value=_num(value))

        def counter(name: str, doc: str, value: Any) -> CounterMetricFamily:
            return CounterMetricFamily(f"maskwatch_{name}", doc, value=_num(value))

        yield InfoMetricFamily("maskwatch_build", "version and models in use", value={
            "version": str(s.get("version", "")), "device": str(s.get("device", "")),
            "accelerator": str(s.get("accelerator", "")),
            "detector_model": str(s.get("detector_model", "")),
            "classifier_model": str(s.get("classifier_model", "")),
        })
        yield gauge("fps", "processed frames per second (last 5 s)", s.get("fps"))
        yield gauge("fps_cap", "configured processing frame-rate cap", s.get("fps_cap"))
        age = s.get("frame_age_s")
        yield gauge("frame_age_seconds", "seconds since the last processed frame (NaN: none yet)",
                    float("nan") if age is None else age)
        yield gauge("faces", "faces in the last processed frame", s.get("faces_in_frame"))
        yield counter("frames_processed", "frames run through detection", s.get("frames_processed"))
        yield counter("frames_captured", "frames read from the camera", s.get("frames_captured"))
        yield counter("frames_dropped", "camera frames replaced before processing",
                      s.get("frames_dropped"))
        yield counter("alarms", "alarms raised since start", s.get("alarms"))
        yield gauge("camera_up", "1 while the camera delivers frames", bool(s.get("camera_up")))
        yield counter("camera_reopens", "times the camera was reopened", s.get("camera_reopens"))
        yield gauge("ir_mode", "1 while detection is paused for IR light", bool(s.get("ir_mode")))
        yield gauge("schedule_active", "1 inside the operation schedule",
                    bool(s.get("schedule_active")))
        state = GaugeMetricFamily("maskwatch_state", "1 for the current service state",
                                  labels=["state"])
        for name in STATES:
            state.add_metric([name], 1.0 if s.get("state") == name else 0.0)
        yield state
        yield gauge("uptime_seconds", "seconds since the service started", s.get("uptime_s"))

        outputs: dict[str, dict[str, Any]] = s.get("outputs") or {}
        families = {
            "delivered": CounterMetricFamily(
                "maskwatch_output_delivered", "alarms delivered, per destination",
                labels=["destination"]),
            "failed_attempts": CounterMetricFamily(
                "maskwatch_output_errors", "failed delivery attempts, per destination",
                labels=["destination"]),
            "dropped": CounterMetricFamily(
                "maskwatch_output_dropped", "alarms given up, per destination",
                labels=["destination"]),
            "queued": GaugeMetricFamily(
                "maskwatch_output_queued", "alarms waiting, per destination",
                labels=["destination"]),
        }
        for name, health in sorted(outputs.items()):
            for key, family in families.items():
                family.add_metric([name], _num(health.get(key)))
        yield from families.values()

        people = s.get("people") or {}
        counted = CounterMetricFamily("maskwatch_people", "people counted since start, by "
                                      "decided state (compliance statistics)", labels=["state"])
        for name in PERSON_STATES:
            counted.add_metric([name], _num(people.get(name, 0)))
        yield counted
        if "people_today" in w:
            today = GaugeMetricFamily("maskwatch_people_today", "people counted today (local "
                                      "day), by decided state", labels=["state"])
            for name in PERSON_STATES:
                today.add_metric([name], _num(w["people_today"].get(name, 0)))
            yield today
            percent = w.get("compliance_today_percent")
            yield gauge("compliance_today_percent", "masked share of today's decided people "
                        "(NaN: nobody decided yet)", float("nan") if percent is None else percent)

        stream = s.get("stream") or {}
        if stream.get("enabled"):
            yield gauge("stream_up", "1 while the RTSP stream for recorders runs",
                        bool(stream.get("running")))
            yield gauge("stream_clients", "RTSP stream connections now", stream.get("clients"))
            yield gauge("stream_mounts_encoding", "stream mounts being encoded now (0: no client)",
                        len(stream.get("encoding") or []))
        yield gauge("web_viewers", "live-view connections now", w.get("viewers"))
        yield counter("web_frames_encoded", "live-view JPEGs encoded (once per frame)",
                      w.get("frames_encoded"))
        yield counter("web_encode_seconds", "time spent drawing and encoding live JPEGs",
                      w.get("encode_seconds"))
        yield counter("web_login_failures", "failed logins", w.get("login_failures"))
        if "events" in w:
            yield gauge("event_log_events", "events in the event log", w.get("events"))
            yield gauge("event_log_pending", "outbox rows waiting for delivery", w.get("pending"))


def metrics_text(collector: ServiceCollector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    return generate_latest(registry)
