"""MQTT (F16) against a real mosquitto started by the test: discovery, availability and its
last will, alarm events, the retained state ON -> OFF, snapshots, user/password and TLS."""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from maskwatch.alarm_format import AlarmMessage
from maskwatch.config import parse_config
from maskwatch.events.destination import OutputError
from maskwatch.events.dispatcher import Dispatcher
from maskwatch.events.store import EventStore
from maskwatch.outputs.factory import build_outputs
from maskwatch.outputs.mqtt import MqttOutput, device_slug

from test_dispatcher import FAST, wait_until
from test_store import make_config, make_event, outbox

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
pytestmark = pytest.mark.skipif(
    MOSQUITTO is None,
    reason="mosquitto not installed (Debian package 'mosquitto'; scripts/setup.sh test)")

REPO = Path(__file__).resolve().parents[2]
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00fake-jpeg\xff\xd9"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(tmp_path: Path, conf: str | None = None,
                 port: int | None = None) -> tuple[subprocess.Popen, int]:
    port = port or free_port()
    log = open(tmp_path / f"mosquitto-{port}.log", "wb")
    if conf is None:
        cmd = [MOSQUITTO, "-p", str(port), "-v"]
    else:
        conf_file = tmp_path / f"mosquitto-{port}.conf"
        root = "user root\n" if os.geteuid() == 0 else ""  # keep access to tmp_path files
        conf_file.write_text(root + conf.format(port=port))
        cmd = [MOSQUITTO, "-c", str(conf_file), "-v"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("mosquitto exited: "
                               + (tmp_path / f"mosquitto-{port}.log").read_text())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mosquitto did not start listening within 10 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def broker(tmp_path):
    proc, port = start_broker(tmp_path)
    yield port
    stop(proc)


class Subscriber:
    def __init__(self, port: int, topics: tuple[str, ...] = ("maskwatch/#", "homeassistant/#"),
                 **tls) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        subscribed = queue.Queue()
        self.client.on_subscribe = lambda *a: subscribed.put(True)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        for t in topics:
            self.client.subscribe(t, qos=1)
            subscribed.get(timeout=5)

    def expect(self, topic: str, timeout: float = 10.0) -> mqtt.MQTTMessage:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"nothing on {topic} within {timeout} s")
            try:
                m = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            if m.topic == topic:
                return m

    def retained(self, wait: float = 1.0) -> dict[str, bytes]:
        """Topic -> payload of every retained message delivered so far (after ``wait``)."""
        time.sleep(wait)
        out = {}
        while not self.messages.empty():
            m = self.messages.get()
            if m.retain:
                out[m.topic] = m.payload
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def alarm(snapshot_path: str = "", n: int = 1) -> AlarmMessage:
    return AlarmMessage(
        event_id=f"ev-{n}", utc_ms=1714564800123, device="Entrance 1", label="no_mask",
        confidence=0.9, track_id=n, box=(10, 20, 30, 40), snapshot_path=snapshot_path,
        snapshot_url=f"http://10.0.0.9/events/ev-{n}/snapshot.jpg",
    )


def test_device_slug():
    assert device_slug("Entrance 1") == "entrance_1"
    assert device_slug("Halle/Tor#3+") == "halle_tor_3"
    assert device_slug("***") == "maskwatch"


def test_discovery_availability_alarm_state_and_snapshot(broker, tmp_path):
    sub = Subscriber(broker)
    out = MqttOutput("127.0.0.1", broker, device="Entrance 1", state_hold_s=0.5)
    try:
        assert out.wait_connected(10)
        base = "maskwatch/entrance_1"
        sensor = json.loads(
            sub.expect("homeassistant/binary_sensor/entrance_1_no_mask/config").payload)
        assert sensor["state_topic"] == f"{base}/state"
        assert sensor["availability_topic"] == f"{base}/availability"
        assert sensor["json_attributes_topic"] == f"{base}/alarm"
        assert (sensor["payload_on"], sensor["payload_off"]) == ("ON", "OFF")
        assert sensor["unique_id"] == "maskwatch_entrance_1_no_mask"
        assert sensor["device"]["identifiers"] == ["maskwatch_entrance_1"]
        assert sensor["device"]["name"] == "Entrance 1"
        image = json.loads(sub.expect("homeassistant/image/entrance_1_snapshot/config").payload)
        assert image["image_topic"] == f"{base}/snapshot"
        assert image["content_type"] == "image/jpeg"
        assert sub.expect(f"{base}/state").payload == b"OFF"
        assert sub.expect(f"{base}/availability").payload == b"online"

        jpg = tmp_path / "snap.jpg"
        jpg.write_bytes(JPEG)
        sent = time.monotonic()
        out.send(alarm(str(jpg)))
        assert sub.expect(f"{base}/snapshot").payload == JPEG
        assert sub.expect(f"{base}/state").payload == b"ON"
        event = sub.expect(f"{base}/alarm")
        assert event.qos == 1
        assert json.loads(event.payload) == {
            "message_id": 69, "event_id": "ev-1", "utc": "2024-05-01T12:00:00.123Z",
            "device": "Entrance 1", "class": "no_mask", "confidence": 0.9,
            "box": [10, 20, 30, 40], "track": 1,
            "snapshot_url": "http://10.0.0.9/events/ev-1/snapshot.jpg",
        }
        assert sub.expect(f"{base}/state", timeout=5).payload == b"OFF"
        assert time.monotonic() - sent >= 0.45

        # A client connecting later gets the retained topics: what Home Assistant sees
        # after its own restart.
        late = Subscriber(broker)
        kept = late.retained()
        late.close()
        assert kept[f"{base}/availability"] == b"online"
        assert kept[f"{base}/state"] == b"OFF"
        assert kept[f"{base}/snapshot"] == JPEG
        assert "homeassistant/binary_sensor/entrance_1_no_mask/config" in kept
        assert "homeassistant/image/entrance_1_snapshot/config" in kept
        assert f"{base}/alarm" not in kept  # events are not retained
    finally:
        out.close()
    assert sub.expect("maskwatch/entrance_1/availability").payload == b"offline"
    sub.close()


def test_alarm_during_hold_extends_it(broker):
    sub = Subscriber(broker, topics=("maskwatch/+/state",))
    out = MqttOutput("127.0.0.1", broker, device="d", state_hold_s=0.6, discovery=False)
    try:
        assert out.wait_connected(10)
        assert sub.expect("maskwatch/d/state").payload == b"OFF"
        out.send(alarm(n=1))
        assert sub.expect("maskwatch/d/state").payload == b"ON"
        time.sleep(0.4)
        out.send(alarm(n=2))
        assert sub.expect("maskwatch/d/state").payload == b"ON"
        start = time.monotonic()
        assert sub.expect("maskwatch/d/state").payload == b"OFF"
        assert time.monotonic() - start >= 0.5  # counted from the second alarm
    finally:
        out.close()
        sub.close()


def test_snapshot_url_mode(broker):
    sub = Subscriber(broker, topics=("site/#", "homeassistant/#"))
    out = MqttOutput("127.0.0.1", broker, device="d", snapshot="url", topic_prefix="site/a")
    try:
        assert out.wait_connected(10)
        image = json.loads(sub.expect("homeassistant/image/d_snapshot/config").payload)
        assert image["url_topic"] == "site/a/d/snapshot_url"
        out.send(alarm())
        assert sub.expect("site/a/d/snapshot_url").payload == \
            b"http://10.0.0.9/events/ev-1/snapshot.jpg"
    finally:
        out.close()
        sub.close()


def test_last_will_when_the_process_dies(broker):
    sub = Subscriber(broker, topics=("maskwatch/+/availability",))
    script = textwrap.dedent(f"""
        import sys, time
        from maskwatch.outputs.mqtt import MqttOutput
        out = MqttOutput("127.0.0.1", {broker}, device="victim", keepalive_s=5)
        assert out.wait_connected(10)
        print("ready", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=REPO, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert sub.expect("maskwatch/victim/availability").payload == b"online"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert sub.expect("maskwatch/victim/availability", timeout=10).payload == b"offline"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        sub.close()


def test_send_fails_fast_and_retryable_without_a_broker():
    out = MqttOutput("127.0.0.1", free_port(), device="d")
    try:
        start = time.monotonic()
        with pytest.raises(OutputError, match="not connected") as err:
            out.send(alarm())
        assert err.value.retry is True
        assert time.monotonic() - start < 1.0
    finally:
        out.close()


def test_reconnects_when_the_broker_comes_back(tmp_path):
    proc, port = start_broker(tmp_path)
    out = MqttOutput("127.0.0.1", port, device="d", discovery=False)
    try:
        assert out.wait_connected(10)
        out.send(alarm())
        stop(proc)
        deadline = time.monotonic() + 5
        while out.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(OutputError):
            out.send(alarm(n=2))
        proc, _ = start_broker(tmp_path, "listener {port} 127.0.0.1\nallow_anonymous true\n",
                               port=port)
        assert out.wait_connected(40)  # paho's back-off is at most 30 s
        out.send(alarm(n=3))
    finally:
        out.close()
        stop(proc)


def test_username_password_and_tls(tmp_path):
    if shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("openssl and mosquitto_passwd are needed for the secured broker")
    cert, key, passwd = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "passwd"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "cam", "pw"], check=True,
                   capture_output=True, timeout=30)
    proc, port = start_broker(tmp_path, (
        "listener {port} 127.0.0.1\n"
        f"allow_anonymous false\npassword_file {passwd}\n"
        f"certfile {cert}\nkeyfile {key}\n"
    ))
    good = bad = None
    try:
        good = MqttOutput("127.0.0.1", port, device="sec", username="cam", password="pw",
                          tls=True, ca_file=str(cert))
        assert good.wait_connected(10)
        good.send(alarm())
        bad = MqttOutput("127.0.0.1", port, device="sec2", username="cam", password="wrong",
                         tls=True, ca_file=str(cert))
        assert not bad.wait_connected(2)
        with pytest.raises(OutputError, match="not connected"):
            bad.send(alarm())
    finally:
        for o in (good, bad):
            if o is not None:
                o.close()
        stop(proc)


def test_built_from_config(broker):
    cfg = parse_config({"device": {"name": "Gate"},
                        "outputs": {"mqtt": [{"host": "127.0.0.1", "port": broker}]}})
    outs = build_outputs(cfg)
    try:
        assert [o.name for o in outs] == [f"mqtt:127.0.0.1:{broker}"]
        assert outs[0].alarm_topic == "maskwatch/gate/alarm"
        assert outs[0].wait_connected(10)
    finally:
        for o in outs:
            o.close()
    assert parse_config({"outputs": {"mqtt": [{"host": "h", "tls": True}]}}) \
        .outputs.mqtt[0].broker_port == 8883


def test_the_broker_password_shows_nowhere(tmp_path, caplog):
    """Issue "Hardening", row 12: a refused login leaves the password out of the output's
    name, its errors, the dispatcher's health, the logs, the events API and the outbox."""
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is needed for a broker with a password")
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "cam", "right"], check=True,
                   capture_output=True, timeout=30)
    proc, port = start_broker(tmp_path, "listener {port} 127.0.0.1\n"
                                        f"allow_anonymous false\npassword_file {passwd}\n")
    config = make_config(tmp_path / "state", outputs={**FAST, "mqtt": [{
        "host": "127.0.0.1", "port": port, "username": "cam", "password": "hunter2"}]})
    store = dispatcher = None
    try:
        with caplog.at_level(logging.DEBUG):
            outs = build_outputs(config)
            store = EventStore(config, [o.name for o in outs])
            dispatcher = Dispatcher(store, outs, config)
            dispatcher.submit(store.add(make_event(1)))
            (name,) = dispatcher.names
            wait_until(lambda: "Not authorized" in dispatcher.health()[name]["last_error"],
                       what="the refused login")
        shown = [name, json.dumps(dispatcher.health()), caplog.text,
                 json.dumps(store.get_event("ev00001").to_dict()),
                 json.dumps(outbox(store, name))]
        assert all("hunter2" not in text for text in shown)
    finally:
        if dispatcher is not None:
            dispatcher.stop(1.0)
        if store is not None:
            store.close()
        stop(proc)
