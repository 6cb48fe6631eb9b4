"""Alarm delivery: one bounded queue and one worker thread per destination (SPEC F14-F18).

The flow of an alarm: the processing loop publishes it on the event bus; ``AlarmRecorder``
(its own thread) stores it in the event log (snapshot, row and one outbox row per destination
in one commit) and hands the message to ``Dispatcher.submit``, which only appends to in-memory
queues and never waits. Each destination's worker sends its queue in event order, retrying a
failed send with back-off until the alarm is [outputs] max_age_s old; ``OutputError(retry=
False)`` gives up at once. A dead or hanging destination therefore holds up only its own
queue.

Nothing is lost when a queue is full or the service restarts: every stored alarm has a
pending outbox row until its destination took it (or gave up), and a worker whose queue
overflowed, or that just started, reads the pending rows back from the event log in order.
Delivery is at-least-once; receivers deduplicate by event id.

A worker never ends before ``stop``: a row of the event log that cannot be read is marked
failed by the store and counted as dropped; any other unexpected error shows as state
"error" and the worker starts over after a back-off (retry_initial_s doubling up to
retry_max_s), reading what is pending back from the event log. A send running far beyond its
output's ``deadline_s`` shows as "stuck". Output names and error texts pass through
``redact_text`` before they are stored, logged or shown, so a credential never leaves here.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from maskwatch.alarm_format import AlarmMessage
from maskwatch.config import Config, OutputsConfig
from maskwatch.events.bus import EventBus, Subscription
from maskwatch.events.compliance import StatsBucket
from maskwatch.events.destination import Output, OutputError
from maskwatch.events.store import EventStore, EventStoreError, message_for
from maskwatch.redact import redact_text

log = logging.getLogger(__name__)

WAIT_S = 0.25
STORE_RETRY_S = 1.0
# A send is stuck when it has run this many times its output's deadline_s, and this long more.
STUCK_FACTOR = 2.0
STUCK_GRACE_S = 1.0


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def _bug_report(exc: BaseException) -> str:
    """An unexpected exception with its traceback for the log, credentials removed (the
    message may quote an address)."""
    return redact_text("".join(traceback.format_exception(exc)).rstrip())


class _Destination:
    """The queue, worker and health of one output."""

    def __init__(self, output: Output, name: str, queue_size: int) -> None:
        self.output = output
        self.name = name
        self.cond = threading.Condition()
        self.queue: deque[AlarmMessage] = deque()
        self.queue_size = queue_size
        # True: the event log holds pending alarms that are not in the queue; the worker
        # reads them back once the queue is empty. Set at start, to resume after a restart.
        self.overflow = True
        self.overflow_generation = 0  # bumped by every submit that could not be queued
        self.backlog = 0  # alarms pending in the event log only (approximate, for health)
        # Ids the last read-back took from the outbox: a submit racing with that read (its
        # row committed just before the read) must not queue the alarm a second time.
        self.read_back: set[str] = set()
        self.in_flight = False
        self.state = "starting"  # idle, sending, retrying, error, stopped
        self.busy_since: float | None = None  # time.monotonic() when the running send began
        self.delivered = 0
        self.dropped = 0  # given up: expired, refused (retry=False) or not storable
        self.failed_attempts = 0
        self.last_success: float | None = None
        self.last_error = ""
        self.last_error_time: float | None = None
        self.thread: threading.Thread | None = None

    def health(self) -> dict[str, Any]:
        with self.cond:
            state, error = self.state, self.last_error
            deadline = self.output.deadline_s
            busy = None if self.busy_since is None else time.monotonic() - self.busy_since
            alive = self.thread is not None and self.thread.is_alive()
            if state not in ("starting", "error", "stopped") and not alive:
                state = "error"
                error = f"the worker ended unexpectedly (last error: {error or '-'})"
            elif busy is not None and busy > STUCK_FACTOR * deadline + STUCK_GRACE_S:
                state = "stuck"
                error = (f"one send has been running for {busy:.0f} s; its deadline is "
                         f"{deadline:g} s")
            return {
                "state": state,
                "queued": len(self.queue) + self.backlog + int(self.in_flight),
                "delivered": self.delivered,
                "dropped": self.dropped,
                "failed_attempts": self.failed_attempts,
                "last_success_utc": _iso(self.last_success),
                "last_error": error,
                "last_error_utc": _iso(self.last_error_time),
            }

    def record_error(self, error: str, when: float) -> None:
        with self.cond:
            self.last_error = error
            self.last_error_time = when


class Dispatcher:
    """Delivers stored alarms to ``outputs``; starts one worker per output at once and
    resumes whatever the event log still has pending for them."""

    def __init__(
        self, store: EventStore, outputs: Sequence[Output], cfg: OutputsConfig | Config,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg: OutputsConfig = cfg.outputs if isinstance(cfg, Config) else cfg
        names = [getattr(o, "name", "") for o in outputs]
        if any(not isinstance(n, str) or not n for n in names):
            raise ValueError("every output needs a non-empty name")
        names = [redact_text(n) for n in names]  # keys of the outbox, health and metrics
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"output names must be unique: {', '.join(duplicates)}")
        self.store = store
        self._clock = clock
        self._stop = threading.Event()
        self._dests = {
            name: _Destination(o, name, self.cfg.queue_size) for name, o in zip(names, outputs)
        }
        store.destinations = tuple(names)
        self._resume_report()
        for dest in self._dests.values():
            dest.thread = threading.Thread(
                target=self._run, args=(dest,), name=f"output-{dest.name}", daemon=True
            )
            dest.thread.start()

    @property
    def names(self) -> list[str]:
        return list(self._dests)

    def _resume_report(self) -> None:
        try:
            expired = self.store.expire(self.cfg.max_age_s, now=self._clock())
            pending = self.store.pending_by_destination()
        except EventStoreError as exc:
            log.error("outputs: cannot read the outbox: %s", exc)
            return
        for name, count in expired.items():
            log.warning("output %s: %d alarm(s) older than %g s dropped undelivered", name,
                        count, self.cfg.max_age_s)
            if name in self._dests:
                self._dests[name].dropped += count
        for name, count in pending.items():
            if name in self._dests:
                self._dests[name].backlog = count
                log.info("output %s: resuming %d undelivered alarm(s)", name, count)
            else:
                log.warning(
                    "%d undelivered alarm(s) for %r, which is no longer configured: kept "
                    "until they are %g s old", count, name, self.cfg.max_age_s,
                )

    # ------------------------------------------------------------------------- producer side

    def submit(self, message: AlarmMessage, stored: bool = True) -> None:
        """Queue a message for every destination; never blocks. ``stored=False`` is for an
        alarm the event log could not take: it is sent if the queues have room, else lost
        (counted as dropped), as nothing could read it back."""
        if self._stop.is_set():
            return  # stored alarms stay pending and are sent after the restart
        for dest in self._dests.values():
            with dest.cond:
                if not stored:
                    # Nothing could read it back: queue it if there is room at all (ahead of
                    # a backlog still in the event log), else it is lost.
                    if len(dest.queue) < dest.queue_size:
                        dest.queue.append(message)
                    else:
                        dest.dropped += 1
                        log.error("output %s: queue full, unstored alarm %s dropped",
                                  dest.name, message.event_id)
                elif dest.overflow or len(dest.queue) >= dest.queue_size:
                    dest.overflow = True
                    dest.overflow_generation += 1
                    dest.backlog += 1
                elif message.event_id not in dest.read_back:
                    dest.queue.append(message)
                dest.cond.notify()

    # --------------------------------------------------------------------------- worker side

    def _run(self, dest: _Destination) -> None:
        with dest.cond:
            dest.state = "idle"
        failures = 0
        while not self._stop.is_set():
            try:
                message = self._next(dest)
                if message is not None:
                    self._deliver(dest, message)
                failures = 0
            except Exception as exc:  # a bug must not end this destination's deliveries
                failures += 1
                wait = min(self.cfg.retry_initial_s * 2 ** (failures - 1), self.cfg.retry_max_s)
                self._worker_failed(dest, exc, wait)
                if self._stop.wait(wait):
                    break
                with dest.cond:
                    dest.state = "idle"
        with dest.cond:
            dest.state = "stopped"

    def _worker_failed(self, dest: _Destination, exc: Exception, wait: float) -> None:
        """Show the failure, and start over from the event log: the queue is dropped (its
        alarms are pending there, in order; only alarms it could not store are lost)."""
        dest.record_error(redact_text(f"worker failed: {type(exc).__name__}: {exc}"),
                          self._clock())
        with dest.cond:
            dest.state = "error"
            dest.busy_since = None
            dest.in_flight = False
            dest.backlog += len(dest.queue)
            dest.queue.clear()
            dest.overflow = True
            dest.overflow_generation += 1
        log.error("output %s: worker failed, starting over in %.1f s: %s", dest.name, wait,
                  _bug_report(exc))

    def _next(self, dest: _Destination) -> AlarmMessage | None:
        """The next message in order: from the queue, else read back from the outbox."""
        with dest.cond:
            if not dest.queue and not dest.overflow:
                dest.cond.wait(WAIT_S)
            if self._stop.is_set():
                return None
            if dest.queue:
                dest.in_flight = True
                return dest.queue.popleft()
            if not dest.overflow:
                return None
            generation = dest.overflow_generation
        # The queue is empty and submits do not append while overflow is set, so the
        # outbox's pending rows (oldest first) are exactly what comes next, in order.
        try:
            rows = self.store.pending(
                dest.name, limit=dest.queue_size,
                on_bad=lambda event, reason: self._unreadable(dest, event, reason),
            )
        except EventStoreError as exc:
            log.error("output %s: cannot read the outbox: %s", dest.name, exc)
            self._stop.wait(STORE_RETRY_S)
            return None
        with dest.cond:
            dest.queue.extend(rows)
            dest.read_back = {m.event_id for m in rows}
            more = len(rows) >= dest.queue_size or dest.overflow_generation != generation
            dest.overflow = more
            dest.backlog = max(0, dest.backlog - len(rows)) if more else 0
        return None

    def _unreadable(self, dest: _Destination, event: str, reason: str) -> None:
        """A pending row the event log could not read back: it was marked failed there."""
        dest.record_error(redact_text(f"alarm {event}: {reason}"), self._clock())
        with dest.cond:
            dest.dropped += 1

    def _deliver(self, dest: _Destination, message: AlarmMessage) -> None:
        delay = self.cfg.retry_initial_s
        attempts = 0
        try:
            while True:
                age_s = self._clock() - message.utc_ms / 1000.0
                if age_s > self.cfg.max_age_s:
                    reason = f"not delivered within {self.cfg.max_age_s:g} s"
                    self._mark(self.store.mark_dropped, message, dest, reason)
                    with dest.cond:
                        dest.dropped += 1
                    log.error("output %s: alarm %s dropped: %s (%d attempt(s), last error: %s)",
                              dest.name, message.event_id, reason, attempts,
                              dest.last_error or "-")
                    return
                with dest.cond:
                    dest.state = "sending"
                    dest.busy_since = time.monotonic()
                try:
                    dest.output.send(message)
                except OutputError as exc:
                    error, retry = redact_text(str(exc) or type(exc).__name__), exc.retry
                except Exception as exc:  # a bug in an output must not kill its worker
                    if attempts == 0:
                        log.error("output %s: unexpected error sending alarm %s: %s",
                                  dest.name, message.event_id, _bug_report(exc))
                    error, retry = redact_text(f"{type(exc).__name__}: {exc}"), True
                else:
                    self._mark(self.store.mark_delivered, message, dest)
                    with dest.cond:
                        dest.delivered += 1
                        dest.last_success = self._clock()
                    if attempts:
                        log.info("output %s: alarm %s delivered after %d failed attempt(s)",
                                 dest.name, message.event_id, attempts)
                    return
                finally:
                    with dest.cond:
                        dest.busy_since = None
                attempts += 1
                dest.record_error(error, self._clock())
                with dest.cond:
                    dest.failed_attempts += 1
                if not retry:
                    self._mark(self.store.mark_failed, message, dest, error, True)
                    with dest.cond:
                        dest.dropped += 1
                    log.error("output %s: alarm %s refused, not retried: %s", dest.name,
                              message.event_id, error)
                    return
                self._mark(self.store.mark_failed, message, dest, error)
                wait = max(0.0, min(delay, self.cfg.max_age_s - age_s))
                (log.warning if attempts == 1 else log.debug)(
                    "output %s: alarm %s not delivered (%s); retry %d in %.1f s", dest.name,
                    message.event_id, error, attempts, wait,
                )
                with dest.cond:
                    dest.state = "retrying"
                if self._stop.wait(wait):
                    return  # still pending in the outbox: sent after the restart
                delay = min(delay * 2.0, self.cfg.retry_max_s)
        finally:
            with dest.cond:
                dest.in_flight = False
                if dest.state != "stopped":
                    dest.state = "idle"

    def _mark(self, mark: Callable[..., bool], message: AlarmMessage, dest: _Destination,
              *args: Any) -> None:
        try:
            mark(message.event_id, dest.name, *args)
        except EventStoreError as exc:
            # The send already happened (or was given up); a lost mark only means the alarm
            # may be sent again after a restart.
            log.error("output %s: alarm %s: %s", dest.name, message.event_id, exc)

    # ------------------------------------------------------------------------------ control

    def send_test(self, name: str, device: str) -> str:
        """Send a clearly marked test alarm (class "test", event id "test-…") to one
        destination through its real output, beside its queue: not stored, not retried, so an
        installer sees at once what the receiver makes of it. Returns "delivered"; raises
        OutputError with the reason (refused, timed out) and KeyError for an unknown name."""
        dest = self._dests[name]
        message = AlarmMessage(
            event_id=f"test-{uuid.uuid4().hex[:12]}", utc_ms=int(self._clock() * 1000),
            device=device, label="test", confidence=0.0, track_id=0, box=(0.0, 0.0, 0.0, 0.0),
        )
        outcome: list[BaseException | None] = []

        def send() -> None:
            try:
                dest.output.send(message)
                outcome.append(None)
            except BaseException as exc:  # reported to the caller below
                outcome.append(exc)

        thread = threading.Thread(target=send, name=f"test-{name}", daemon=True)
        thread.start()
        thread.join(dest.output.deadline_s + 1.0)
        if not outcome:
            raise OutputError(f"timed out: no answer within {dest.output.deadline_s + 1.0:g} s")
        error = outcome[0]
        if error is None:
            log.info("output %s: test alarm %s delivered", name, message.event_id)
            return "delivered"
        reason = redact_text(str(error) or type(error).__name__)
        log.warning("output %s: test alarm refused: %s", name, reason)
        raise OutputError(reason, retry=False)

    def show_compliance(self, today: StatsBucket) -> None:
        """Hand today's compliance statistics to every output (F29); a failing one is logged
        and the others still get them."""
        for dest in self._dests.values():
            try:
                dest.output.show_compliance(today)
            except Exception as exc:  # an output's bug must not stop the processing loop
                log.warning("%s: compliance statistics not shown: %s", dest.name,
                            redact_text(str(exc)))

    def health(self) -> dict[str, dict[str, Any]]:
        """Per destination (by its redacted name): ``state``, ``queued``, ``delivered``,
        ``dropped``, ``failed_attempts``, ``last_success_utc``, ``last_error``,
        ``last_error_utc`` (ISO 8601 UTC or None). ``state`` is one of "starting", "idle",
        "sending", "retrying", "stopped", and the two a status page must flag: "error" (the
        worker failed unexpectedly and waits to start over, or its thread has ended) and
        "stuck" (one send running more than STUCK_FACTOR times its output's deadline_s plus
        STUCK_GRACE_S); for both, ``last_error`` says what happened."""
        return {name: dest.health() for name, dest in self._dests.items()}

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the workers (an alarm being retried stays pending for the next start) and
        close the outputs. A worker stuck in a send longer than ``timeout`` is left behind
        (daemon thread) after its output was closed."""
        self._stop.set()
        for dest in self._dests.values():
            with dest.cond:
                dest.cond.notify_all()
        deadline = time.monotonic() + timeout
        for dest in self._dests.values():
            assert dest.thread is not None
            dest.thread.join(max(0.0, deadline - time.monotonic()))
            if dest.thread.is_alive():
                log.warning("output %s did not stop within %.1f s (a send is hanging)",
                            dest.name, timeout)
        for dest in self._dests.values():
            try:
                dest.output.close()
            except Exception:
                log.exception("output %s: error while closing", dest.name)


class AlarmRecorder:
    """The bus subscriber that stores every alarm, then dispatches it, on its own thread;
    it also prunes the event log now and then. Its queue is large so a burst of alarms
    waits for the disk instead of being dropped."""

    PRUNE_EVERY_S = 60.0

    def __init__(
        self, bus: EventBus, store: EventStore, dispatcher: Dispatcher, maxsize: int = 10_000
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.errors = 0
        self.last_error = ""
        self._sub: Subscription = bus.subscribe("recorder", {"alarm"}, maxsize=maxsize)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alarm-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_prune = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_prune:
                self._prune()
                next_prune = now + self.PRUNE_EVERY_S
            event = self._sub.get(timeout=WAIT_S)
            if event is not None:
                self.record(event.payload)

    def _prune(self) -> None:
        try:
            self.store.prune()
        except EventStoreError as exc:
            log.error("event log: prune failed: %s", exc)

    def record(self, event: Any) -> None:
        """Store one AlarmEvent, then hand it to the dispatcher."""
        try:
            message = self.store.add(event)
        except EventStoreError as first:
            self._prune()  # a full disk may have room after retention
            try:
                message = self.store.add(event)
            except EventStoreError as exc:
                self.errors += 1
                self.last_error = str(exc)
                log.error("alarm %s not stored, sent without the event log's guarantee: %s",
                          event.alarm.event_id, exc)
                self.dispatcher.submit(message_for(event), stored=False)
                return
            log.info("alarm %s stored after pruning (first attempt: %s)",
                     event.alarm.event_id, first)
        if self.last_error:
            log.info("event log: storing alarms again")
            self.last_error = ""  # health follows the last store result, not the worst one
        self.dispatcher.submit(message)

    def stop(self, timeout: float = 3.0) -> None:
        """Stop, first storing the alarms still waiting (within ``timeout``) so they are
        sent after the restart."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("alarm recorder did not stop within %.1f s", timeout)
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self._sub.get(timeout=0)
            if event is None:
                break
            self.record(event.payload)
        self._sub.close()
