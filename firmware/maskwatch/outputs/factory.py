"""Every enabled alarm destination of the config, as ``Output`` objects for the dispatcher.

Order: TCP destinations (in config order, each its own output), webhooks, MQTT brokers,
serial ports, GPIO relays. Names are stable across restarts and unique (the config rejects
duplicates), so the dispatcher can key its queues, health and outbox rows by ``Output.name``:
``tcp:<host>:<port>``, ``webhook:<scheme>://<host[:port]><path>``, ``mqtt:<host>:<port>``,
``serial:<port>``, ``gpio:<pin>``.

The config is validated when loaded; what can only be found out here (gpiozero missing, a GPIO
pin that cannot be used, a pin shared with the IR input) raises ConfigError, so the service
refuses to start with a clear message (exit 78) instead of dropping alarms later.
"""

from __future__ import annotations

import logging
import ssl

from maskwatch.config import Config, ConfigError
from maskwatch.events import Output
from maskwatch.outputs.tcp import EncodeOptions, TcpOutput

log = logging.getLogger(__name__)


def build_outputs(cfg: Config, source: str = "config") -> list[Output]:
    outs = cfg.outputs
    built: list[Output] = []
    problems: list[str] = []
    try:
        for d in outs.tcp:
            if d.enabled:
                built.append(TcpOutput(
                    d.host, d.port, format=d.format,
                    options=EncodeOptions(template=d.template, additional_data=d.additional_data,
                                          line_end=d.line_end),
                    retries=d.retries, retry_pause_s=d.retry_pause_s,
                    connect_timeout_s=d.connect_timeout_s, send_timeout_s=d.send_timeout_s,
                    wait_for_close=d.wait_for_close,
                ))
        if any(w.enabled for w in outs.webhook):
            from maskwatch.outputs.webhook import WebhookOutput

            for i, w in enumerate(outs.webhook):
                if w.enabled:
                    try:
                        built.append(WebhookOutput(w.url, w.secret, timeout_s=w.timeout_s,
                                                   verify_tls=w.verify_tls, ca_file=w.ca_file))
                    except (OSError, ssl.SSLError) as exc:  # ca_file missing or not PEM
                        problems.append(f"outputs.webhook.{i}.ca_file: cannot be used: {exc}")
        if any(m.enabled for m in outs.mqtt):
            from maskwatch.outputs.mqtt import MqttOutput

            for i, m in enumerate(outs.mqtt):
                if not m.enabled:
                    continue
                try:
                    built.append(MqttOutput(
                        m.host, m.broker_port, device=cfg.device.name, username=m.username,
                        password=m.password, tls=m.tls, ca_file=m.ca_file,
                        client_id=m.client_id, topic_prefix=m.topic_prefix,
                        keepalive_s=m.keepalive_s, publish_timeout_s=m.publish_timeout_s,
                        state_hold_s=m.state_hold_s, discovery=m.discovery,
                        discovery_prefix=m.discovery_prefix, snapshot=m.snapshot,
                    ))
                except (OSError, ssl.SSLError) as exc:
                    problems.append(f"outputs.mqtt.{i}.ca_file: cannot be used: {exc}")
        if any(s.enabled for s in outs.serial):
            from maskwatch.outputs.serial_port import SerialOutput

            for s in outs.serial:
                if s.enabled:
                    built.append(SerialOutput(
                        s.port, s.baudrate, template=s.template, line_end=s.line_end,
                        parity=s.parity, stopbits=s.stopbits, write_timeout_s=s.write_timeout_s,
                    ))
        for i, g in enumerate(outs.gpio):
            if not g.enabled:
                continue
            if cfg.ir.gpio_pin == g.pin:
                problems.append(f"outputs.gpio.{i}.pin: GPIO {g.pin} is already the IR input "
                                "(ir.gpio_pin)")
                continue
            try:
                from maskwatch.outputs.gpio import GpioOutput

                built.append(GpioOutput(g.pin, active_high=g.active_high, pulse_s=g.pulse_s))
            except ImportError:
                problems.append(f"outputs.gpio.{i}: needs the gpiozero package (pip install "
                                "'maskwatch[gpio]', or apt install python3-gpiozero)")
            except Exception as exc:  # noqa: BLE001 - gpiozero's pin and factory errors
                problems.append(f"outputs.gpio.{i}: GPIO {g.pin} cannot be used: {exc}")
        if problems:
            raise ConfigError(source, problems)
    except BaseException:
        for out in built:
            out.close()
        raise
    log.info("alarm outputs: %s", ", ".join(o.name for o in built) or "none")
    return built
