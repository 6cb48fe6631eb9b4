"""The compliance sensor (F29) in a real mosquitto: Home Assistant discovery, and today's
figures updated by the people the alarm decider counts, right after an alarm."""

from __future__ import annotations

import json
import queue
import time
from datetime import datetime, timezone

import numpy as np
from test_alarm_decider import BOX, OTHER_BOX, make, result
from test_compliance import Clock, make_config
from test_mqtt import Subscriber, broker  # noqa: F401 - the fixture is used by name

from maskwatch.events.compliance import ComplianceStats
from maskwatch.events.dispatcher import Dispatcher
from maskwatch.events.store import EventStore
from maskwatch.outputs.mqtt import MqttOutput
from maskwatch.types import AlarmEvent, Frame, Label

BASE = "maskwatch/entrance_1"
SENSOR = "homeassistant/sensor/entrance_1_compliance_today/config"
NOON = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc).timestamp()
FPS = 10


def expect_each(sub: Subscriber, *topics: str, timeout: float = 10.0) -> dict[str, bytes]:
    """The first payload on each topic, in whatever order they come (the alarm goes through
    the dispatcher's worker, the statistics straight from the processing loop)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, bytes] = {}
    while set(seen) != set(topics):
        try:
            m = sub.messages.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            raise AssertionError(f"only {sorted(seen)} of {topics} within {timeout} s") from None
        if m.topic in topics:
            seen.setdefault(m.topic, m.payload)
    return seen


def test_compliance_sensor_is_discovered_and_updates_after_an_alarm(broker, tmp_path):  # noqa: F811
    config, clock = make_config(tmp_path), Clock(NOON)
    store = EventStore(config)
    stats = ComplianceStats(config, store.path, clock=clock)
    sub = Subscriber(broker)
    out = MqttOutput("127.0.0.1", broker, device="Entrance 1")
    dispatcher = Dispatcher(store, [out], config)
    stats.show_with(dispatcher.show_compliance)
    decider = make()
    try:
        assert out.wait_connected(10)
        sensor = json.loads(sub.expect(SENSOR).payload)
        assert sensor["state_topic"] == f"{BASE}/compliance"
        assert sensor["unit_of_measurement"] == "%"
        assert sensor["value_template"] == "{{ value_json.compliance_percent }}"
        assert sensor["availability_topic"] == f"{BASE}/availability"
        assert sensor["device"]["identifiers"] == ["maskwatch_entrance_1"]
        for state in ("masked", "unmasked", "incorrect"):
            count = json.loads(sub.expect(
                f"homeassistant/sensor/entrance_1_{state}_today/config").payload)
            assert count["value_template"] == f"{{{{ value_json.{state} }}}}"

        # A masked person passes and leaves; a second one comes in without a mask.
        frame = 0
        for i in range(3 * FPS):
            decider.update(i / FPS, frame, [result(Label.MASK, 0.9, 1, BOX)])
            frame += 1
        for i in range(3 * FPS, 15 * FPS):
            decider.update(i / FPS, frame, [], [1] if i == 3 * FPS else [])
            stats.count(decider.pop_counts(i / FPS))
            frame += 1
        first = json.loads(sub.expect(f"{BASE}/compliance").payload)
        assert first["masked"] == 1 and first["compliance_percent"] == 100.0
        assert first["date"] == "2024-05-01" and first["demo"] is False

        alarms = []
        image = np.zeros((240, 320, 3), np.uint8)
        for i in range(15 * FPS, 18 * FPS):
            t = i / FPS
            alarms = decider.update(t, frame, [result(Label.NO_MASK, 0.9, 2, OTHER_BOX)])
            frame += 1
            if alarms:
                break
        assert alarms, "no alarm for the unmasked person"
        event = AlarmEvent(alarms[0], Frame(image, t, frame), "Entrance 1",
                           datetime.now(timezone.utc))
        dispatcher.submit(store.add(event))
        stats.count(decider.pop_counts(t))
        seen = expect_each(sub, f"{BASE}/alarm", f"{BASE}/compliance")
        assert json.loads(seen[f"{BASE}/alarm"])["class"] == "no_mask"
        update = json.loads(seen[f"{BASE}/compliance"])
        assert (update["masked"], update["unmasked"]) == (1, 1)
        assert update["compliance_percent"] == 50.0

        # Home Assistant restarting later still finds the sensor and today's figures.
        late = Subscriber(broker)
        kept = late.retained()
        late.close()
        assert SENSOR in kept
        assert json.loads(kept[f"{BASE}/compliance"]) == update
    finally:
        dispatcher.stop()
        out.close()
        sub.close()
        stats.close()
        store.close()
