"""MQTT (SPEC F16, paho-mqtt 2.x): alarm events, a retained state, availability with a last
will, and Home Assistant discovery.

Topics, with ``<base>`` = ``<topic_prefix>/<device slug>`` (the device name in lower case,
anything but ``a-z 0-9 _ -`` turned into ``_``):

- ``<base>/alarm``         every alarm as JSON (QoS 1, not retained); ``send`` waits for the
                           broker's acknowledgement (``publish_timeout_s``)
- ``<base>/state``         ``ON`` when an alarm is raised, ``OFF`` ``state_hold_s`` after the
                           last one (retained)
- ``<base>/availability``  ``online`` once connected, ``offline`` at shutdown or, as the last
                           will, when the connection is lost (retained)
- ``<base>/snapshot``      the alarm's JPEG (``snapshot = "image"``, retained), or
  ``<base>/snapshot_url``  its URL on the web page (``snapshot = "url"``, retained)
- ``<base>/compliance``    today's compliance statistics (F29) as JSON, retained: ``date``
                           (local), ``compliance_percent`` (null before anyone was decided),
                           ``masked``, ``unmasked``, ``incorrect``, ``undecided``, ``static``,
                           ``demo``; sent when a person is counted and every minute
- ``<discovery_prefix>/binary_sensor/<slug>_no_mask/config``,
  ``<discovery_prefix>/image/<slug>_snapshot/config`` and
  ``<discovery_prefix>/sensor/<slug>_<compliance|masked|unmasked|incorrect>_today/config``:
  Home Assistant discovery (retained), republished on every connect.

The connection is made and kept in paho's background thread (``loop_start``), reconnecting
with back-off; ``send`` fails at once with a retryable OutputError while it is down.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from maskwatch import __version__
from maskwatch.alarm_format import AlarmMessage, message_fields
from maskwatch.events import Output, OutputError, StatsBucket

log = logging.getLogger(__name__)

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
# Today's count sensors besides the compliance percentage: (state, Home Assistant name).
COUNT_SENSORS = (("masked", "Masked today"), ("unmasked", "Unmasked today"),
                 ("incorrect", "Mask worn incorrectly today"))


def device_slug(device: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]", "_", device.lower()).strip("_")
    return slug or "maskwatch"


class MqttOutput(Output):
    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        device: str,
        username: str = "",
        password: str = "",
        tls: bool = False,
        ca_file: str = "",
        client_id: str = "",
        topic_prefix: str = "maskwatch",
        keepalive_s: int = 30,
        publish_timeout_s: float = 5.0,
        state_hold_s: float = 10.0,
        discovery: bool = True,
        discovery_prefix: str = "homeassistant",
        snapshot: str = "image",
    ) -> None:
        self.device = device
        self.slug = device_slug(device)
        self.name = f"mqtt:{host}:{port}"
        base = f"{topic_prefix}/{self.slug}"
        self.alarm_topic = f"{base}/alarm"
        self.state_topic = f"{base}/state"
        self.availability_topic = f"{base}/availability"
        self.compliance_topic = f"{base}/compliance"
        self._compliance: bytes | None = None  # the last statistics, sent again on connect
        self.snapshot_topic = f"{base}/snapshot" if snapshot == "image" else f"{base}/snapshot_url"
        self.snapshot = snapshot
        self.discovery = discovery
        self.discovery_prefix = discovery_prefix
        self.publish_timeout_s = publish_timeout_s
        self.deadline_s = publish_timeout_s
        self.state_hold_s = state_hold_s
        self._lock = threading.Lock()
        self._off_timer: threading.Timer | None = None
        self._state_on = False
        self._hold = 0  # which hold the running timer ends; a stale timer does nothing
        self._connected = threading.Event()
        self._last_problem = "not connected yet"
        self._closed = False

        client = mqtt.Client(CallbackAPIVersion.VERSION2,
                             client_id=client_id or f"maskwatch-{self.slug}",
                             protocol=mqtt.MQTTv311, clean_session=True)
        client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        if username:
            client.username_pw_set(username, password or None)
        if tls:
            client.tls_set(ca_certs=ca_file or None)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_queued_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        self._client = client
        client.connect_async(host, port, keepalive=keepalive_s)
        client.loop_start()

    # --- connection (paho's thread) -------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any = None) -> None:
        if reason.is_failure:
            self._last_problem = f"broker refused the connection: {reason}"
            log.warning("%s: %s", self.name, self._last_problem)
            return
        log.info("%s: connected", self.name)
        if self.discovery:
            for topic, payload in self.discovery_messages().items():
                client.publish(topic, json.dumps(payload), qos=1, retain=True)
        # No self._lock here: paho holds its callback lock, and send() holds self._lock
        # while publishing (which may take paho's callback lock): reading a bool is safe.
        state = "ON" if self._state_on else "OFF"
        client.publish(self.state_topic, state, qos=1, retain=True)
        client.publish(self.availability_topic, "online", qos=1, retain=True)
        if self._compliance is not None:
            client.publish(self.compliance_topic, self._compliance, qos=1, retain=True)
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any = None) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        # A refused login also ends in a disconnect: keep its reason ("Not authorized").
        if was_connected and not self._closed:
            self._last_problem = f"connection lost: {reason}"
            log.warning("%s: %s", self.name, self._last_problem)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._last_problem = "cannot connect to the broker"

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and self._client.is_connected()

    # --- Home Assistant discovery ---------------------------------------------------------

    def discovery_messages(self) -> dict[str, dict[str, Any]]:
        device = {
            "identifiers": [f"maskwatch_{self.slug}"],
            "name": self.device,
            "manufacturer": "maskwatch",
            "model": "maskwatch",
            "sw_version": __version__,
        }
        availability = {
            "availability_topic": self.availability_topic,
            "payload_available": "online",
            "payload_not_available": "offline",
        }
        messages: dict[str, dict[str, Any]] = {
            f"{self.discovery_prefix}/binary_sensor/{self.slug}_no_mask/config": {
                "name": "No-mask alarm",
                "unique_id": f"maskwatch_{self.slug}_no_mask",
                "state_topic": self.state_topic,
                "payload_on": "ON",
                "payload_off": "OFF",
                "device_class": "problem",
                "json_attributes_topic": self.alarm_topic,
                **availability,
                "device": device,
            },
        }
        compliance = {"state_topic": self.compliance_topic, **availability, "device": device}
        messages[f"{self.discovery_prefix}/sensor/{self.slug}_compliance_today/config"] = {
            "name": "Mask compliance today",
            "unique_id": f"maskwatch_{self.slug}_compliance_today",
            "unit_of_measurement": "%",
            "state_class": "measurement",
            "icon": "mdi:face-mask",
            "value_template": "{{ value_json.compliance_percent }}",
            "json_attributes_topic": self.compliance_topic,
            **compliance,
        }
        for state, name in COUNT_SENSORS:
            messages[f"{self.discovery_prefix}/sensor/{self.slug}_{state}_today/config"] = {
                "name": name,
                "unique_id": f"maskwatch_{self.slug}_{state}_today",
                "unit_of_measurement": "people",
                "state_class": "total_increasing",  # back to 0 at midnight: a reset
                "value_template": f"{{{{ value_json.{state} }}}}",
                **compliance,
            }
        if self.snapshot != "off":
            image: dict[str, Any] = {
                "name": "No-mask snapshot",
                "unique_id": f"maskwatch_{self.slug}_snapshot",
            }
            if self.snapshot == "image":
                image.update(image_topic=self.snapshot_topic, content_type="image/jpeg")
            else:
                image.update(url_topic=self.snapshot_topic)
            messages[f"{self.discovery_prefix}/image/{self.slug}_snapshot/config"] = {
                **image, **availability, "device": device,
            }
        return messages

    # --- alarms ---------------------------------------------------------------------------

    def send(self, message: AlarmMessage) -> None:
        if not self.connected:
            raise OutputError(f"{self.name}: not connected to the broker ({self._last_problem})")
        self._publish_snapshot(message)
        with self._lock:
            self._state_on = True
            if self._off_timer is not None:
                self._off_timer.cancel()
            self._client.publish(self.state_topic, "ON", qos=1, retain=True)
            self._hold += 1
            self._off_timer = threading.Timer(self.state_hold_s, self._state_off,
                                              args=(self._hold,))
            self._off_timer.daemon = True
            self._off_timer.start()
        payload = json.dumps(message_fields(message, additional_data=True),
                             separators=(",", ":"), ensure_ascii=False)
        info = self._client.publish(self.alarm_topic, payload.encode("utf-8"), qos=1)
        try:
            info.wait_for_publish(self.publish_timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise OutputError(f"{self.name}: publish failed: {exc}") from None
        if not info.is_published():
            raise OutputError(f"{self.name}: the broker did not acknowledge the alarm within "
                              f"{self.publish_timeout_s:g} s")

    def show_compliance(self, today: StatsBucket) -> None:
        """Publish today's statistics (retained); while disconnected they are kept and sent
        on the next connect."""
        payload = {"date": today.start.date().isoformat(),
                   "compliance_percent": today.compliance, **today.counts, "demo": today.demo}
        data = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        if data == self._compliance:
            return
        self._compliance = data
        if self.connected:
            self._client.publish(self.compliance_topic, data, qos=1, retain=True)

    def _publish_snapshot(self, message: AlarmMessage) -> None:
        if self.snapshot == "image" and message.snapshot_path:
            try:
                data = Path(message.snapshot_path).read_bytes()
            except OSError as exc:
                log.warning("%s: snapshot not sent: %s", self.name, exc)
                return
            self._client.publish(self.snapshot_topic, data, qos=1, retain=True)
        elif self.snapshot == "url" and message.snapshot_url:
            self._client.publish(self.snapshot_topic, message.snapshot_url, qos=1, retain=True)

    def _state_off(self, hold: int) -> None:
        with self._lock:
            if hold != self._hold or self._closed:
                return
            self._state_on = False
            self._off_timer = None
            self._client.publish(self.state_topic, "OFF", qos=1, retain=True)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            if self._off_timer is not None:
                self._off_timer.cancel()
                self._off_timer = None
            self._state_on = False
        if self.connected:
            self._client.publish(self.state_topic, "OFF", qos=1, retain=True)
            info = self._client.publish(self.availability_topic, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(2.0)
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()
