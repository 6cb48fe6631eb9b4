"""`maskwatch run`: the appliance service.

A capture thread reads the camera into a one-frame slot (old frames are dropped, never
queued); the main thread takes the newest frame, runs the pipeline at the fps cap and
publishes frames and alarms on the event bus, which alarm outputs and the web page subscribe
to. systemd hears READY once models and page are up (a missing camera is reported as "camera
down, retrying" and waited for, never replaced by the demo scene), a watchdog ping from every
loop turn (a stuck loop gets the service restarted) and a STATUS= line every few seconds.

SIGTERM stops within a few seconds; SIGHUP reloads the config: a bad new config is logged
and the running one kept, a changed [source] restarts the capture side (F13), and tracks and
decisions are kept unless the detection settings changed.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections import Counter
from datetime import datetime, timezone

from maskwatch.config import EX_CONFIG, Config, ConfigError, load_config
from maskwatch.decision import FrameOutcome, Pipeline, detection_changed
from maskwatch.events import (
    AlarmRecorder,
    ComplianceStats,
    Dispatcher,
    EventBus,
    EventStore,
    EventStoreError,
    Subscription,
    open_event_store,
    seed_demo_history,
)
from maskwatch.outputs import build_outputs
from maskwatch.service.sd_notify import Notifier
from maskwatch.service.status import ServiceStatus
from maskwatch.sources import LatestFrameSlot, ReopeningSource, open_reopening_source
from maskwatch.stream import RecorderStream
from maskwatch.types import AlarmEvent, PersonCount
from maskwatch.vision import FaceAnalyzer
from maskwatch.web import WebServer, WebServerError

log = logging.getLogger(__name__)

STATUS_EVERY_S = 5.0
LOOP_WAIT_S = 0.25
JOIN_TIMEOUT_S = 3.0
# A frame whose time runs ahead of the wall clock (a file or the demo scene) is held back
# until its moment; more than this far behind, the pacing starts over (after a reopen).
PACING_RESET_S = 1.0


class Capture:
    """The capture thread: source → latest-frame slot, paced to frame time."""

    def __init__(self, source: ReopeningSource, slot: LatestFrameSlot) -> None:
        self.source = source
        self.slot = slot
        self.ended = False
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        offset: float | None = None
        while True:
            frame = self.source.read()
            if frame is None:
                self.ended = True
                log.info("source finished: %s", self.source.description)
                return
            now = time.monotonic()
            if offset is None or now - (frame.t + offset) > PACING_RESET_S:
                offset = now - frame.t
            ahead = frame.t + offset - now
            if ahead > 0:
                time.sleep(ahead)
            self.slot.put(frame)

    def stop(self) -> None:
        self.source.close()
        self._thread.join(JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("capture thread did not stop within %.0f s", JOIN_TIMEOUT_S)


class AlarmJournal:
    """Writes every alarm from the bus to the log (the journal on a device) as one JSON line;
    it is the first subscriber of the event interface and needs no configuration."""

    def __init__(self, bus: EventBus) -> None:
        self._sub: Subscription = bus.subscribe("journal", {"alarm"}, maxsize=1000)
        self._thread = threading.Thread(target=self._run, name="alarm-journal", daemon=True)
        self._stop = threading.Event()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            event = self._sub.get(timeout=LOOP_WAIT_S)
            if event is None:
                continue
            ev: AlarmEvent = event.payload
            a = ev.alarm
            log.warning("ALARM %s", json.dumps({
                "id": a.event_id, "utc": ev.utc.isoformat(timespec="milliseconds"),
                "device": ev.device, "label": a.label.value, "confidence": round(a.confidence, 4),
                "track": a.track_id, "box": [round(v, 1) for v in a.box], "t": round(a.t, 3),
            }))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(JOIN_TIMEOUT_S)
        self._sub.close()


class Service:
    def __init__(self, config_path: str | None, config: Config, notifier: Notifier | None = None):
        self.config_path = config_path
        self.config = config
        self.notifier = notifier or Notifier()
        self.bus = EventBus()
        self.status = ServiceStatus()
        self.slot = LatestFrameSlot()
        self.people: Counter[str] = Counter()  # counted since the start, for /metrics
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._ready_sent = False
        self.web: WebServer | None = None
        self.stream: RecorderStream | None = None

    def start(self) -> None:
        """Load models and open the camera (separate from __init__ so signal handlers are in
        place before the slow part)."""
        self.pipeline = self._build_pipeline(self.config)
        self._start_outputs(self.config)
        self.capture = self._start_capture(self.config)
        self.journal = AlarmJournal(self.bus)
        self.stream = self._start_stream(self.config)
        if self.config.web.enabled:
            # Binds, serves and answers its own /healthz before returning (WebServerError
            # otherwise), so READY below really means the page is up (F23).
            self.web = WebServer(self, self.config.web)
            self.web.start()

    def _start_outputs(self, config: Config) -> None:
        """Event log, dispatcher (resuming undelivered alarms) and the bus subscriber that
        stores then dispatches every alarm. Raises ConfigError for unusable destinations and
        EventStoreError for an unusable state directory."""
        outputs = build_outputs(config, self.config_path or "config")
        try:
            self.store: EventStore = open_event_store(config, [o.name for o in outputs])
        except BaseException:
            for output in outputs:
                output.close()
            raise
        stats = self.store.stats()
        log.info("event log: %s (%d event(s), %d undelivered)", self.store.path,
                 stats["events"], stats["pending"])
        self.dispatcher = Dispatcher(self.store, outputs, config.outputs)
        self.recorder = AlarmRecorder(self.bus, self.store, self.dispatcher)
        self.stats = ComplianceStats(config, self.store.path)
        if config.source.kind == "demo":
            seed_demo_history(self.stats)
        self.stats.show_with(self.dispatcher.show_compliance)

    def _restart_outputs(self, new: Config) -> Config:
        """Swap the event log and the destinations for the new settings, camera and
        detection untouched. This thread is the one that publishes alarms, so none is raised
        meanwhile; undelivered ones stay in the outbox. New settings that cannot be used are
        logged and the old ones started again: the config in force is returned."""
        self._stop_outputs()
        try:
            self._start_outputs(new)
        except (ConfigError, EventStoreError) as exc:
            log.error("new [outputs] or [storage] not usable, keeping the old ones: %s", exc)
            self.status.update(config_error=str(exc))
            self._start_outputs(self.config)
            return new.model_copy(update={"outputs": self.config.outputs,
                                          "storage": self.config.storage})
        log.info("alarm outputs restarted with the new settings")
        return new

    def _stop_outputs(self) -> None:
        self.stats.close()
        self.recorder.stop()
        self.dispatcher.stop()
        self.store.close()

    def _build_pipeline(self, config: Config) -> Pipeline:
        pipeline = Pipeline(
            config, FaceAnalyzer(config, live=True), clock=lambda: datetime.now(timezone.utc)
        )
        self._show_pipeline(config, pipeline)
        return pipeline

    def _show_pipeline(self, config: Config, pipeline: Pipeline) -> None:
        self.status.update(
            device=config.device.name,
            detector_model=pipeline.analyzer.detector.model.path.name,
            classifier_model=pipeline.analyzer.describe(),
            accelerator=pipeline.analyzer.accelerator.name,
            fps_cap=config.processing.fps_cap,
            timezone=pipeline.schedule.zone_name,
            ir_source=pipeline.ir.description,
        )

    def _start_capture(self, config: Config) -> Capture:
        capture = Capture(open_reopening_source(config.source, config.paths.models()), self.slot)
        capture.start()
        return capture

    def _start_stream(self, config: Config) -> RecorderStream | None:
        """The RTSP stream when enabled; one that cannot run is logged and shown on the
        status page, and the service goes on without it."""
        if not config.stream.enabled:
            return None
        stream = RecorderStream(config.stream, self.bus)
        stream.start()
        return stream

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def request_reload(self, *_: object) -> None:
        self._reload.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)

    def run(self) -> int:
        ping_every = self.notifier.watchdog_interval()
        last_ping = last_status = 0.0
        log.info("maskwatch running: %s", self.capture.source.description)
        while not self._stop.is_set():
            frame = self.slot.take(LOOP_WAIT_S)
            now = time.monotonic()
            self.status.loop_turned()
            if ping_every is not None and now - last_ping >= ping_every:
                self.notifier.watchdog()
                last_ping = now
            if self._reload.is_set():
                self._reload.clear()
                self._apply_reload()
            if frame is not None:
                outcome = self.pipeline.process(frame)
                if outcome is not None:
                    self._publish(outcome)
            self.stats.maybe_flush()
            self._refresh_status()
            # READY once models and page are up, camera or not: a missing camera is reported
            # (status, STATUS=, /healthz) and retried, and systemd must not restart-loop.
            if not self._ready_sent and (self.web is None or self.web.up):
                self.notifier.ready()
                self._ready_sent = True
                log.info("ready: %s", self.status.summary())
            if now - last_status >= STATUS_EVERY_S:
                self.notifier.status(self.status.summary())
                last_status = now
        self._shutdown()
        return 0

    def _count(self, people: list[PersonCount]) -> None:
        self.stats.count(people)
        if people:
            self.people.update(p.state.value for p in people)
            self.status.update(people=dict(self.people))

    def _publish(self, outcome: FrameOutcome) -> None:
        self.status.frame_processed(len(outcome.faces))
        self._count(outcome.counted)
        self.bus.publish("frame", outcome)
        for alarm in outcome.alarms:
            self.status.alarm()
            self.bus.publish(
                "alarm",
                AlarmEvent(alarm, outcome.frame, self.config.device.name,
                           datetime.now(timezone.utc)),
            )

    def _refresh_status(self) -> None:
        source = self.capture.source
        schedule = self.pipeline.schedule
        now = datetime.now(timezone.utc)
        next_change = schedule.next_change(now)
        self.status.update(
            source=source.description,
            camera_up=source.camera_up and not self.capture.ended,
            camera_error="source ended" if self.capture.ended else source.last_error,
            camera_reopens=source.reopen_count,
            state=self.pipeline.state.value,
            schedule_active=schedule.is_active(now),
            schedule_next_change_utc=next_change.isoformat() if next_change else None,
            ir_mode=self.pipeline.ir.active,
            frames_captured=self.slot.captured,
            frames_dropped=self.slot.dropped,
            outputs=self.dispatcher.health(),
            event_log_error=self.recorder.last_error,
            stream=self.stream.status() if self.stream else {"enabled": False},
        )

    def _apply_reload(self) -> None:
        self.notifier.reloading()
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", exc.report())
            self.status.update(config_error="; ".join(exc.problems))
            self.notifier.ready()
            return
        try:
            if detection_changed(self.config, new):
                pipeline = self._build_pipeline(new)
                self._count(self.pipeline.finish())
                self.pipeline.close()
                self.pipeline = pipeline
                log.info("detection settings changed: tracks and decisions start afresh")
            else:
                self.pipeline.adopt_conditions(new)
                self._show_pipeline(new, self.pipeline)
        except (OSError, ValueError, RuntimeError) as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            self.status.update(config_error=str(exc))
            self.notifier.ready()
            return
        self.status.update(config_error="")
        if new.source != self.config.source or new.paths != self.config.paths:
            log.info("source settings changed: restarting capture")
            self.capture.stop()
            self.capture = self._start_capture(new)
        if new.outputs != self.config.outputs or new.storage != self.config.storage:
            new = self._restart_outputs(new)
        else:
            self.stats.adopt(new)
        failed = self.stream is not None and not self.stream.running
        if new.stream != self.config.stream or failed:
            log.info("[stream] changed or not running: (re)starting the stream")
            if self.stream is not None:
                self.stream.stop()
            self.stream = self._start_stream(new)
        if new.web != self.config.web:
            log.warning("[web] changed: takes effect at the next restart "
                        "(systemctl restart maskwatch)")
        self.config = new
        log.info("config reloaded from %s", self.config_path)
        self.notifier.ready()

    def _shutdown(self) -> None:
        log.info("stopping")
        self.status.update(state="stopping")
        self.notifier.stopping()
        if self.web is not None:
            self.web.stop()
        if self.stream is not None:
            self.stream.stop()
        self.capture.stop()
        self.journal.stop()
        self._count(self.pipeline.finish())
        self._stop_outputs()
        self.pipeline.close()
        self.notifier.close()
        log.info("stopped")


def run_service(config_path: str | None, config: Config) -> int:
    service = Service(config_path, config)
    service.install_signal_handlers()
    try:
        service.start()
    except ConfigError as exc:
        log.error("%s", exc.report())
        return EX_CONFIG
    except WebServerError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except EventStoreError as exc:
        # A state directory that cannot be used is an installation/config problem: a
        # restart cannot fix it, so exit as a config error (systemd does not loop).
        log.error("%s", exc)
        return EX_CONFIG
    return service.run()
