"""The dispatcher: one queue and worker per destination, in-order delivery with retries, the
outbox across restarts; and the two delivery acceptance tests of issue 5 (a destination down
for 60 s; kill -9 during a burst)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from maskwatch.alarm_format import AlarmMessage
from maskwatch.events.bus import EventBus
from maskwatch.events.destination import Output, OutputError
from maskwatch.events.dispatcher import AlarmRecorder, Dispatcher
from maskwatch.events.store import EventStore, EventStoreError
from maskwatch.outputs.tcp import TcpOutput

from test_store import corrupt, make_config, make_event, outbox
from test_tcp import Receiver as TcpReceiver

FAST = {"retry_initial_s": 0.05, "retry_max_s": 0.2, "max_age_s": 60}


class ListOutput(Output):
    """Records what it is sent; can be told to fail, refuse or hang."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.received: list[str] = []
        self.attempts = 0
        self.fail_next = 0  # raise OutputError(retry=True) this many times
        self.refuse: set[str] = set()  # event ids answered with OutputError(retry=False)
        self.gate = threading.Event()  # cleared: send blocks (a hanging destination)
        self.gate.set()
        self.on_send = None
        self.closed = False
        self._lock = threading.Lock()

    def send(self, message: AlarmMessage) -> None:
        self.gate.wait()
        with self._lock:
            self.attempts += 1
            if self.on_send is not None:
                self.on_send(message)
            if message.event_id in self.refuse:
                raise OutputError("HTTP 400 bad request", retry=False)
            if self.fail_next > 0:
                self.fail_next -= 1
                raise OutputError("connection refused")
            self.received.append(message.event_id)

    def close(self) -> None:
        self.closed = True
        self.gate.set()


def wait_until(condition, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def ids(numbers) -> list[str]:
    return [f"ev{n:05d}" for n in numbers]


@pytest.fixture
def setup(tmp_path: Path):
    """(config, store, make_dispatcher); everything is stopped and closed afterwards."""
    made: list = []

    def make(outputs, outputs_cfg: dict | None = None, store: EventStore | None = None,
             **kwargs) -> Dispatcher:
        config = make_config(tmp_path / "state", outputs={**FAST, **(outputs_cfg or {})})
        if store is None:
            store = EventStore(config, [o.name for o in outputs])
            made.append(store)
        dispatcher = Dispatcher(store, outputs, config.outputs, **kwargs)
        made.append(dispatcher)
        return dispatcher

    yield make
    for thing in reversed(made):
        if isinstance(thing, Dispatcher):
            thing.stop(1.0)
        else:
            thing.close()


def store_and_submit(dispatcher: Dispatcher, numbers) -> None:
    for n in numbers:
        dispatcher.submit(dispatcher.store.add(make_event(n)))


def test_every_destination_gets_every_alarm_in_order(setup) -> None:
    a, b = ListOutput("a"), ListOutput("b")
    dispatcher = setup([a, b])
    store_and_submit(dispatcher, range(30))
    wait_until(lambda: len(a.received) == len(b.received) == 30, what="delivery")
    assert a.received == b.received == ids(range(30))
    wait_until(lambda: dispatcher.health()["b"]["delivered"] == 30)
    assert dispatcher.store.pending_count() == 0
    health = dispatcher.health()["a"]
    assert health["delivered"] == 30 and health["queued"] == 0 and health["dropped"] == 0
    assert health["last_success_utc"] and health["last_error"] == ""
    assert health["state"] == "idle"


def test_hanging_destination_delays_neither_submit_nor_another_destination(setup) -> None:
    hung, ok = ListOutput("hung"), ListOutput("ok")
    hung.gate.clear()
    dispatcher = setup([hung, ok])
    messages = [dispatcher.store.add(make_event(n)) for n in range(20)]
    longest = 0.0
    for m in messages:
        started = time.perf_counter()
        dispatcher.submit(m)
        longest = max(longest, time.perf_counter() - started)
    assert longest < 0.05
    wait_until(lambda: len(ok.received) == 20, timeout=3, what="the healthy destination")
    assert ok.received == ids(range(20)) and hung.received == []
    health = dispatcher.health()["hung"]
    assert health["state"] == "sending" and health["queued"] == 20
    hung.gate.set()
    wait_until(lambda: len(hung.received) == 20, what="the released destination")
    assert hung.received == ids(range(20))


def test_failed_send_is_retried_with_back_off_then_delivered_once(setup) -> None:
    out = ListOutput("flaky")
    out.fail_next = 3
    dispatcher = setup([out], {"retry_initial_s": 0.1, "retry_max_s": 0.2})
    started = time.monotonic()
    store_and_submit(dispatcher, range(3))
    wait_until(lambda: len(out.received) == 3, what="delivery after retries")
    assert time.monotonic() - started >= 0.1 + 0.2 + 0.2  # back-off 0.1, 0.2, 0.2 (capped)
    assert out.received == ids(range(3)) and out.attempts == 6
    wait_until(lambda: dispatcher.health()["flaky"]["delivered"] == 3)
    health = dispatcher.health()["flaky"]
    assert health["failed_attempts"] == 3 and health["last_error"] == "connection refused"
    assert health["last_error_utc"] and health["dropped"] == 0
    (delivery,) = dispatcher.store.get_event("ev00000").deliveries
    assert (delivery.state, delivery.attempts) == ("delivered", 4)


def test_refusal_without_retry_gives_up_at_once_and_goes_on(setup) -> None:
    out = ListOutput("strict")
    out.refuse = {"ev00001"}
    dispatcher = setup([out])
    store_and_submit(dispatcher, range(3))
    wait_until(lambda: len(out.received) == 2, what="delivery")
    assert out.received == ids([0, 2]) and out.attempts == 3
    wait_until(lambda: dispatcher.health()["strict"]["dropped"] == 1)
    (delivery,) = dispatcher.store.get_event("ev00001").deliveries
    assert (delivery.state, delivery.last_error) == ("failed", "HTTP 400 bad request")


def test_alarm_older_than_max_age_is_dropped(setup) -> None:
    out = ListOutput("down")
    out.fail_next = 10**6
    skew = [0.0]
    dispatcher = setup([out], {"max_age_s": 10}, clock=lambda: time.time() + skew[0])
    store_and_submit(dispatcher, range(2))
    wait_until(lambda: out.attempts >= 2, what="attempts")
    skew[0] = 11.0  # both alarms are now older than max_age_s
    wait_until(lambda: dispatcher.health()["down"]["dropped"] == 2, what="expiry")
    assert out.received == [] and dispatcher.store.pending_count() == 0
    states = {d.state for e in dispatcher.store.list_events() for d in e.deliveries}
    assert states == {"dropped"}


def test_full_queue_is_refilled_from_the_outbox_in_order(setup) -> None:
    out = ListOutput("slow")
    out.gate.clear()
    dispatcher = setup([out], {"queue_size": 10})
    store_and_submit(dispatcher, range(55))
    wait_until(lambda: dispatcher.health()["slow"]["queued"] == 55, what="backlog count")
    out.gate.set()
    wait_until(lambda: len(out.received) == 55, what="delivery")
    time.sleep(0.2)
    assert out.received == ids(range(55))  # every one, once, in order


def test_restart_resumes_undelivered_alarms(tmp_path: Path, setup) -> None:
    down = ListOutput("tcp")
    down.fail_next = 10**6
    other = ListOutput("mqtt")
    first = setup([down, other])
    store_and_submit(first, range(5))
    wait_until(lambda: len(other.received) == 5, what="the healthy destination")
    first.stop(1.0)
    first.store.close()
    assert down.closed and other.closed

    config = make_config(tmp_path / "state", outputs=FAST)
    store = EventStore(config, ["tcp", "mqtt"])
    up, other_again = ListOutput("tcp"), ListOutput("mqtt")
    second = setup([up, other_again], store=store)
    wait_until(lambda: len(up.received) == 5, what="resumed delivery")
    store_and_submit(second, range(5, 7))
    wait_until(lambda: len(up.received) == 7, what="new alarms")
    assert up.received == ids(range(7))
    assert other_again.received == ids(range(5, 7))  # delivered before the restart: not resent
    store.close()


def test_recorder_stores_before_any_output_sees_the_alarm(setup) -> None:
    out = ListOutput("check")
    dispatcher = setup([out])
    seen: list[bool] = []
    out.on_send = lambda m: seen.append(
        dispatcher.store.get_event(m.event_id) is not None and Path(m.snapshot_path).is_file()
    )
    bus = EventBus()
    recorder = AlarmRecorder(bus, dispatcher.store, dispatcher)
    try:
        for n in range(5):
            bus.publish("alarm", make_event(n))
        wait_until(lambda: len(out.received) == 5, what="delivery")
    finally:
        recorder.stop()
    assert seen == [True] * 5 and out.received == ids(range(5))


def test_alarm_the_event_log_cannot_take_is_still_sent(setup, monkeypatch) -> None:
    out = ListOutput("x")
    dispatcher = setup([out])
    bus = EventBus()
    recorder = AlarmRecorder(bus, dispatcher.store, dispatcher)

    def broken(event):
        raise EventStoreError("writing the event log: database or disk is full")

    monkeypatch.setattr(dispatcher.store, "add", broken)
    try:
        bus.publish("alarm", make_event(1))
        wait_until(lambda: out.received == ["ev00001"], what="best-effort delivery")
    finally:
        recorder.stop()
    assert recorder.errors == 1 and "disk is full" in recorder.last_error


def test_submit_after_stop_leaves_the_alarm_pending(setup) -> None:
    out = ListOutput("late")
    dispatcher = setup([out])
    dispatcher.stop(1.0)
    dispatcher.submit(dispatcher.store.add(make_event(1)))
    time.sleep(0.1)
    assert out.received == [] and dispatcher.store.pending_count("late") == 1


def test_output_names_must_be_unique(setup) -> None:
    with pytest.raises(ValueError, match="unique: a"):
        setup([ListOutput("a"), ListOutput("a")])


# ------------------------------------------------------------------------------ acceptance

RECEIVER = textwrap.dedent("""
    # A TCP alarm receiver in its own process (its CPU is not the device's), on one fixed
    # port, switched by lines on stdin: "up" listens (reads one line per connection, prints
    # it, closes), "down" refuses connections (the port stays bound but does not listen).
    import socket, sys, threading

    def bind(port):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    def serve(sock):
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(4096):
                    data += chunk
            sys.stdout.write(data.decode())
            sys.stdout.flush()

    sock = bind(0)
    port = sock.getsockname()[1]
    print(port, flush=True)
    for command in sys.stdin:
        if command.strip() == "up":
            sock.listen(64)
            thread = threading.Thread(target=serve, args=(sock,), daemon=True)
            thread.start()
        elif command.strip() == "down":
            sock.shutdown(socket.SHUT_RDWR)  # wakes accept(); close alone keeps listening
            sock.close()
            thread.join(5)
            sock = bind(port)
        print("ok", flush=True)
""")


class Receiver:
    def __init__(self, tmp_path: Path) -> None:
        script = tmp_path / "receiver.py"
        script.write_text(RECEIVER)
        self.proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.lines: list[dict] = []
        self._acks: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.append(json.loads(line))
            else:
                self._acks.append(line)

    def _command(self, command: str) -> None:
        assert self.proc.stdin is not None
        acks = len(self._acks)
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        wait_until(lambda: len(self._acks) > acks, what=f"receiver {command}")

    def up(self) -> None:
        self._command("up")

    def down(self) -> None:
        self._command("down")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def cpu_work(n: int = 3000) -> int:
    """A fixed CPU-bound step standing in for processing one frame."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


OUTAGE_S = float(os.environ.get("MASKWATCH_TEST_OUTAGE_S", "60"))
BASELINE_S = 12.0
ALARM_EVERY_S = 0.1


def test_acceptance_destination_down_60s_loses_nothing_and_detection_keeps_its_pace(
    tmp_path: Path,
) -> None:
    """Issue 5, acceptance 2: a real TCP receiver refuses connections for 60 s, then accepts
    again; alarms go to it through TcpOutput (JSON lines). Every alarm of that period arrives exactly once and in order, and a CPU-bound
    "detection" loop raising 10 alarms/s through the bus (recorder: event log, then
    dispatcher) keeps >= 95 % of its throughput.

    How throughput is compared: on the shared test machine other jobs swing the loop's
    wall-clock rate by +-30 % and even its rate per CPU second by +-7 % (shared core
    resources), so neither can resolve 5 %. On a device the loop's throughput is
    iterations / (CPU of the loop + CPU of everything else in the process: recorder,
    workers, retries, outbox writes; the receiver is another process), and the machine's
    momentary speed scales both terms alike, so the ratio of throughputs outage / up equals
    the ratio of the loop's share of the process CPU, which the machine's speed cancels out
    of. Waiting, which uses no CPU, is checked directly: the time the loop spends in
    publish() stays negligible."""
    receiver = Receiver(tmp_path)
    config = make_config(tmp_path / "state", outputs={
        "retry_initial_s": 0.5, "retry_max_s": 2.0, "queue_size": 100,
    })
    # The real F14 output; retries=0 leaves every retry to the dispatcher.
    output = TcpOutput("127.0.0.1", receiver.port, retries=0, connect_timeout_s=1.0,
                       send_timeout_s=2.0)
    store = EventStore(config, [output.name])
    dispatcher = Dispatcher(store, [output], config.outputs)
    bus = EventBus()
    recorder = AlarmRecorder(bus, store, dispatcher)
    frame_image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8)
    published: list[str] = []

    def detect_for(seconds: float) -> dict[str, float]:
        iterations = 0
        in_publish = 0.0
        wall_start = time.monotonic()
        loop_cpu, process_cpu = time.thread_time(), time.process_time()
        end = wall_start + seconds
        next_alarm = wall_start
        while (now := time.monotonic()) < end:
            cpu_work()
            iterations += 1
            if now >= next_alarm:
                event = make_event(len(published), image=frame_image)
                published.append(event.alarm.event_id)
                started = time.perf_counter()
                bus.publish("alarm", event)
                in_publish += time.perf_counter() - started
                next_alarm += ALARM_EVERY_S
        wall = time.monotonic() - wall_start
        return {
            "iterations": iterations, "wall": wall, "in_publish": in_publish,
            "loop_cpu": time.thread_time() - loop_cpu,
            "process_cpu": time.process_time() - process_cpu,
        }

    try:
        receiver.up()
        before = detect_for(BASELINE_S)
        receiver.down()
        outage_first = len(published)
        during = detect_for(OUTAGE_S)
        outage_ids = published[outage_first:]
        health = dispatcher.health()[output.name]
        assert health["queued"] >= len(outage_ids) - 5
        assert "refused" in health["last_error"]
        receiver.up()
        wait_until(lambda: len(receiver.lines) >= len(published), timeout=60,
                   what="the backlog after the outage")
        after = detect_for(BASELINE_S)
        wait_until(lambda: len(receiver.lines) >= len(published), timeout=30,
                   what="the last alarms")
        time.sleep(0.5)  # a duplicate would show up now
    finally:
        recorder.stop()
        dispatcher.stop()
        store.close()
        receiver.close()

    received = [line["event_id"] for line in receiver.lines]
    assert len(outage_ids) >= OUTAGE_S / ALARM_EVERY_S * 0.8
    assert received == published  # exactly once each, in order, the outage included

    def share(*phases: dict[str, float]) -> float:
        return sum(p["loop_cpu"] for p in phases) / sum(p["process_cpu"] for p in phases)

    def per_cpu_s(*phases: dict[str, float]) -> float:
        return sum(p["iterations"] for p in phases) / sum(p["process_cpu"] for p in phases)

    def per_wall_s(phase: dict[str, float]) -> float:
        return phase["iterations"] / phase["wall"]

    normal, outage = share(before, after), share(during)
    print(f"\ndetection's share of the process CPU: up {normal:.2%}, outage {outage:.2%} "
          f"(throughput ratio {outage / normal:.1%}); iterations per CPU second: up "
          f"{per_cpu_s(before, after):.0f}, outage {per_cpu_s(during):.0f}; per wall second: "
          f"before {per_wall_s(before):.0f}, outage {per_wall_s(during):.0f}, after "
          f"{per_wall_s(after):.0f}; in publish(): before "
          f"{before['in_publish'] * 1000:.0f} ms, outage {during['in_publish'] * 1000:.0f} ms, "
          f"after {after['in_publish'] * 1000:.0f} ms; {len(published)} alarms, "
          f"{len(outage_ids)} during the outage")
    assert outage >= 0.95 * normal
    # A publish that waited for the destination (a connect timeout per alarm) would add
    # seconds; bus hand-over with GIL switches is well under 1 ms per alarm.
    assert during["in_publish"] < 0.02 * during["wall"]


CHILD = textwrap.dedent("""
    import sys
    from datetime import datetime, timezone
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    from test_store import make_config, make_event
    from maskwatch.events.store import EventStore

    store = EventStore(make_config(sys.argv[1]), ["tcp", "webhook"])
    start = int(sys.argv[3])
    image = np.random.default_rng(start).integers(0, 256, (240, 320, 3), np.uint8)
    n = start
    while True:
        store.add(make_event(n, image=image))
        print(f"ev{n:05d}", flush=True)
        n += 1
""")


def test_acceptance_kill_9_during_a_burst_loses_no_committed_alarm(tmp_path: Path) -> None:
    """Issue 5, acceptance 3: a process storing a burst of alarms is killed with SIGKILL at
    a random moment (three times); every id it reported as committed is in the event log and
    pending, and a dispatcher started afterwards delivers every one (at-least-once)."""
    state = tmp_path / "state"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    tests_dir = str(Path(__file__).parent)
    committed: list[str] = []
    rng = np.random.default_rng(5)
    for round_ in range(3):
        errors = tmp_path / f"child{round_}.err"
        with errors.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, str(script), str(state), tests_dir, str(round_ * 10000)],
                stdout=subprocess.PIPE, stderr=err, text=True,
            )
        assert proc.stdout is not None
        wanted = 20 + int(rng.integers(0, 20))
        for _ in range(wanted):
            line = proc.stdout.readline()
            assert line, errors.read_text() or "child ended"
            committed.append(line.strip())
        time.sleep(float(rng.uniform(0, 0.05)))  # land anywhere inside an add()
        os.kill(proc.pid, signal.SIGKILL)
        # Everything printed before the kill was committed too. (read(), not communicate():
        # that reads the pipe itself and would skip lines readline() buffered already.)
        committed += proc.stdout.read().split()
        assert proc.wait(10) == -signal.SIGKILL

    config = make_config(state, outputs=FAST)
    store = EventStore(config, ["tcp", "webhook"])
    try:
        for event_id in committed:
            event = store.get_event(event_id)
            assert event is not None, f"{event_id} was committed but is missing"
            assert {d.state for d in event.deliveries} == {"pending"}
            assert Path(event.snapshot_path).is_file()
        assert not list(store.snapshot_dir.glob("*.tmp"))
        stored = {e.event_id for e in store.list_events(limit=1000)}
        assert set(committed) <= stored
        assert len(stored - set(committed)) <= 3, sorted(stored - set(committed))  # mid-print
        outputs = [ListOutput("tcp"), ListOutput("webhook")]
        dispatcher = Dispatcher(store, outputs, config.outputs)
        try:
            wait_until(lambda: all(len(o.received) == len(stored) for o in outputs),
                       what="delivery after the crash")
        finally:
            dispatcher.stop(1.0)
        for out in outputs:
            assert set(committed) <= set(out.received)
            order = [e for e in out.received if e in committed]
            assert order == committed  # event order survives the crash
        assert store.pending_count() == 0
    finally:
        store.close()


# ------------------------------------------------------ hardening (issue "Hardening", rows 5, 12)


def test_malformed_rows_are_failed_and_the_worker_goes_on_also_after_a_restart(
    tmp_path: Path,
) -> None:
    receiver = TcpReceiver()
    config = make_config(tmp_path / "state", outputs=FAST)

    def start() -> Dispatcher:
        out = TcpOutput("127.0.0.1", receiver.port, connect_timeout_s=2.0, send_timeout_s=2.0)
        return Dispatcher(store, [out], config.outputs)

    def received() -> list[str]:
        return [json.loads(data)["event_id"] for data in receiver.data]

    store = EventStore(config, [f"tcp:127.0.0.1:{receiver.port}"])
    for n in range(4):
        store.add(make_event(n))
    corrupt(store, "UPDATE events SET box = 'not json' WHERE id = 'ev00001'",
            "UPDATE events SET utc_ms = 'yesterday' WHERE id = 'ev00002'")
    dispatcher = start()
    name = dispatcher.names[0]
    try:
        wait_until(lambda: received() == ["ev00000", "ev00003"], what="the good rows")
        dispatcher.submit(store.add(make_event(4)))  # the worker is still alive
        wait_until(lambda: len(received()) == 3, what="a new alarm")
        assert received() == ["ev00000", "ev00003", "ev00004"]
        wait_until(lambda: dispatcher.health()[name]["delivered"] == 3)
        health = dispatcher.health()[name]
        assert health["state"] == "idle" and health["dropped"] == 2
        assert "ev00002" in health["last_error"] and "utc_ms" in health["last_error"]
        rows = outbox(store, name)
        assert rows[2][0] == rows[3][0] == "failed" and "box" in rows[2][1]
    finally:
        dispatcher.stop(1.0)
    dispatcher = start()  # a restart: the bad rows do not come back, nothing is sent twice
    try:
        dispatcher.submit(store.add(make_event(5)))
        wait_until(lambda: len(received()) == 4, what="delivery after the restart")
        time.sleep(0.2)
        assert received() == ["ev00000", "ev00003", "ev00004", "ev00005"]
        assert dispatcher.health()[name]["state"] == "idle"
        assert store.pending_count() == 0
    finally:
        dispatcher.stop(1.0)
        store.close()
        receiver.close()


def test_a_worker_that_fails_unexpectedly_shows_error_then_restarts(
    tmp_path: Path, setup, monkeypatch
) -> None:
    out = ListOutput("flaky-store")
    config = make_config(tmp_path / "state", outputs=FAST)
    store = EventStore(config, [out.name])
    for n in range(3):
        store.add(make_event(n))
    real_pending = store.pending
    calls = []

    def pending(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # the read-back at start
            raise RuntimeError("a bug in reading the outbox")
        return real_pending(*args, **kwargs)

    monkeypatch.setattr(store, "pending", pending)
    try:
        dispatcher = setup([out], {"retry_initial_s": 1.0, "retry_max_s": 1.0}, store=store)
        wait_until(lambda: dispatcher.health()["flaky-store"]["state"] == "error", what="error")
        health = dispatcher.health()["flaky-store"]
        assert "RuntimeError: a bug in reading the outbox" in health["last_error"]
        assert health["last_error_utc"]
        wait_until(lambda: out.received == ids(range(3)), what="delivery after the restart")
        wait_until(lambda: dispatcher.health()["flaky-store"]["state"] == "idle")
    finally:
        dispatcher.stop(1.0)
        store.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_worker_shows_error(setup) -> None:
    out = ListOutput("dies")

    def die(message):
        raise SystemExit("the worker thread ends")  # no Exception: nothing may catch it

    out.on_send = die
    dispatcher = setup([out])
    store_and_submit(dispatcher, [1])
    wait_until(lambda: dispatcher.health()["dies"]["state"] == "error", what="error")
    assert "worker ended unexpectedly" in dispatcher.health()["dies"]["last_error"]


def test_a_send_far_beyond_its_deadline_shows_stuck(setup) -> None:
    hung = ListOutput("hung")
    hung.deadline_s = 0.2
    hung.gate.clear()
    dispatcher = setup([hung])
    store_and_submit(dispatcher, [1])
    wait_until(lambda: dispatcher.health()["hung"]["state"] == "sending", what="sending")
    wait_until(lambda: dispatcher.health()["hung"]["state"] == "stuck", timeout=5, what="stuck")
    assert "0.2 s" in dispatcher.health()["hung"]["last_error"]
    hung.gate.set()
    wait_until(lambda: hung.received == ["ev00001"], what="delivery")
    wait_until(lambda: dispatcher.health()["hung"]["state"] == "idle", what="idle again")


def test_credentials_in_output_names_and_errors_are_shown_nowhere(
    setup, caplog: pytest.LogCaptureFixture
) -> None:
    out = ListOutput("webhook:https://alice:hunter2@hooks.example/alarm")

    def fail(message):
        raise OutputError("cannot reach https://bob:sw0rdfish@proxy.example/?token=t0ken")

    out.on_send = fail
    with caplog.at_level(logging.DEBUG):
        dispatcher = setup([out], {"retry_initial_s": 5.0, "retry_max_s": 5.0})
        store_and_submit(dispatcher, [1])
        wait_until(lambda: out.attempts == 1 and dispatcher.store.get_event("ev00001")
                   .deliveries[0].last_error, what="a failed attempt")
    (name,) = dispatcher.names
    shown = [name, json.dumps(dispatcher.health()), caplog.text,
             json.dumps(dispatcher.store.get_event("ev00001").to_dict()),
             json.dumps(outbox(dispatcher.store, name))]
    assert name == "webhook:https://alice:***@hooks.example/alarm"
    assert "proxy.example" in dispatcher.health()[name]["last_error"]
    for text in shown:
        assert "hunter2" not in text and "sw0rdfish" not in text and "t0ken" not in text
