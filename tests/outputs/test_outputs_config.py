"""Alarm destination config (issue 5, acceptance 4): a bad host, port 0, 9 TCP destinations or
an unknown template placeholder is refused at start with the key path and what is allowed."""

from __future__ import annotations

import time

import pytest

from maskwatch.config import EX_CONFIG, ConfigError, load_config, parse_config
from maskwatch.outputs.factory import build_outputs

from conftest import run_maskwatch


def problems(outputs: dict, **rest) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config({"outputs": outputs, **rest})
    return err.value.problems


@pytest.mark.parametrize("host", [
    "bad host", "under_score", "-lead.example", "trail-.example", "999.1.1.1", "1.2.3",
    "vms:1818", "tcp://vms", "vms/path", "", "a" * 64 + ".example", "[::1]",
])
def test_bad_host(host):
    (problem,) = problems({"tcp": [{"host": host}]})
    assert problem.startswith("outputs.tcp.0.host: ")
    assert "host" in problem


@pytest.mark.parametrize("host", [
    "vms", "vms.example.com", "VMS-01.local", "192.168.1.20", "::1", "fe80::1", "vms.",
])
def test_good_host(host):
    assert parse_config({"outputs": {"tcp": [{"host": host}]}}).outputs.tcp[0].host == host


@pytest.mark.parametrize("port", [0, -1, 65536, 70000])
def test_port_out_of_range(port):
    (problem,) = problems({"tcp": [{"host": "vms", "port": port}]})
    assert problem.startswith("outputs.tcp.0.port: ")
    assert f"(got {port})" in problem


def test_port_limits_everywhere():
    found = problems({
        "mqtt": [{"host": "broker", "port": 0}],
        "webhook": [{"url": "http://hook:0/x"}, {"url": "http://hook:99999/x"}],
    })
    assert [p.split(":")[0] for p in found] == [
        "outputs.webhook.0.url", "outputs.webhook.1.url", "outputs.mqtt.0.port"]


def test_nine_tcp_destinations():
    (problem,) = problems({"tcp": [{"host": f"10.0.0.{i}"} for i in range(1, 10)]})
    assert problem.startswith("outputs.tcp: at most 8 TCP destinations (got 9)")
    assert len(parse_config({"outputs": {"tcp": [{"host": f"10.0.0.{i}"}
                                                  for i in range(1, 9)]}}).outputs.tcp) == 8


def test_unknown_template_placeholder():
    (problem,) = problems({"tcp": [{"host": "vms", "format": "template",
                                    "template": "ALARM {camera} {class}"}]})
    assert problem.startswith("outputs.tcp.0.template: unknown placeholder {camera} (allowed: ")
    for name in ("message_id", "event_id", "utc", "device", "class", "confidence", "track",
                 "box", "snapshot_url"):
        assert "{" + name + "}" in problem
    (problem,) = problems({"serial": [{"port": "/dev/ttyS0", "template": "{camera}"}]})
    assert problem.startswith("outputs.serial.0.template: unknown placeholder {camera}")


def test_other_destination_mistakes():
    found = problems({
        "tcp": [{"host": "vms", "format": "xml"}, {"host": "vms", "colour": "red"},
                {"host": "vms", "retries": 31}],
        "mqtt": [{"host": "b", "ca_file": "/x.pem"}, {"host": "b", "topic_prefix": "a/#"}],
        "gpio": [{"pin": 17}, {"pin": 17}],
    })
    text = "\n".join(found)
    assert "outputs.tcp.0.format: unknown format 'xml' (allowed: json, template" in text
    assert "outputs.tcp.1.colour: unknown key (allowed: host, port, enabled" in text
    assert "outputs.tcp.2.retries: Input should be less than or equal to 30" in text
    assert "outputs.mqtt.0.ca_file: needs tls = true" in text
    assert "outputs.mqtt.1.topic_prefix:" in text
    assert "outputs.gpio: GPIO pin 17 is listed twice" in text
    (problem,) = problems({"tcp": [{"host": "a"}, {"host": "A", "port": 1818}]})
    assert problem.startswith("outputs.tcp: TCP destination 'a:1818' is listed twice")


def test_rejected_at_start_with_exit_78(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[outputs.tcp]]\nhost = "vms..example"\n'
        '[[outputs.tcp]]\nhost = "10.0.0.1"\nport = 0\n'
        '[[outputs.tcp]]\nhost = "10.0.0.2"\nformat = "template"\ntemplate = "{nope}"\n'
    )
    with pytest.raises(ConfigError):
        load_config(bad)
    result = run_maskwatch("check-config", str(bad), timeout=60)
    assert result.returncode == EX_CONFIG
    assert "outputs.tcp.0.host: not a valid host name" in result.stderr
    assert "outputs.tcp.1.port: Input should be greater than or equal to 1 (got 0)" \
        in result.stderr
    assert "outputs.tcp.2.template: unknown placeholder {nope}" in result.stderr
    result = run_maskwatch("run", "--config", str(bad), timeout=60)
    assert result.returncode == EX_CONFIG


def test_defaults_build_no_output():
    assert build_outputs(parse_config({})) == []


def test_build_order_and_names():
    cfg = parse_config({"outputs": {
        "gpio": [{"pin": 17, "enabled": False}],
        "serial": [{"port": "/dev/ttyUSB0"}],
        "webhook": [{"url": "http://hook.local:8080/alarm?x=1"}],
        "tcp": [{"host": "b"}, {"host": "a", "port": 1900}],
    }})
    outs = build_outputs(cfg)
    assert [o.name for o in outs] == [
        "tcp:b:1818", "tcp:a:1900", "webhook:http://hook.local:8080/alarm",
        "serial:/dev/ttyUSB0",
    ]


def test_gpio_problems_found_when_building():
    gpiozero = pytest.importorskip("gpiozero")
    from gpiozero.pins.mock import MockFactory

    with pytest.raises(ConfigError, match=r"outputs.gpio.0.pin: GPIO 4 is already the IR input"):
        build_outputs(parse_config({"ir": {"gpio_pin": 4}, "outputs": {"gpio": [{"pin": 4}]}}))

    factory = MockFactory()
    previous = gpiozero.Device.pin_factory
    gpiozero.Device.pin_factory = factory
    taken = gpiozero.DigitalOutputDevice(17)
    try:
        cfg = parse_config({"outputs": {"gpio": [{"pin": 27}, {"pin": 17}]}})
        with pytest.raises(ConfigError, match=r"outputs.gpio.1: GPIO 17 cannot be used"):
            build_outputs(cfg)
        # the output built before the failure was released: pin 27 is free again
        gpiozero.DigitalOutputDevice(27).close()
    finally:
        taken.close()
        gpiozero.Device.pin_factory = previous
        factory.close()


def test_missing_ca_file_is_found_when_building(tmp_path):
    missing = str(tmp_path / "nope.pem")
    cfg = parse_config({"outputs": {
        "webhook": [{"url": "https://hook.example/x", "ca_file": missing}],
        "mqtt": [{"host": "broker", "tls": True, "ca_file": missing}],
    }})
    with pytest.raises(ConfigError) as err:
        build_outputs(cfg)
    assert [p.split(":")[0] for p in err.value.problems] == [
        "outputs.webhook.0.ca_file", "outputs.mqtt.0.ca_file"]


# --------------------------------------- hardening (issue "Hardening", rows 12 and 18)


def test_check_config_refuses_credentials_in_urls_and_never_shows_a_password(tmp_path):
    config = tmp_path / "secrets.toml"
    config.write_text(
        '[[outputs.webhook]]\nurl = "https://alice:hunter2@hooks.example/alarm"\n'
        '[[outputs.webhook]]\nurl = "http://bob:p@ss/hunter2@10.0.0.5:8080/x"\n'
        '[[outputs.webhook]]\nurl = "https://hunter2@hooks.example/b"\n'
        '[[outputs.mqtt]]\nhost = "broker"\npassword = "hunter2"\n'
        '[[outputs.mqtt]]\nhost = "broker2"\nusername = "cam"\npassword = "hunter2"\n'
        'ca_file = "/x.pem"\n'
    )
    result = run_maskwatch("check-config", str(config), timeout=60)
    assert result.returncode == EX_CONFIG
    assert "hunter2" not in result.stdout + result.stderr
    for i in range(3):
        problem = next(line for line in result.stderr.splitlines()
                       if f"outputs.webhook.{i}.url:" in line)
        assert "user name or password" in problem and "secret" in problem, problem
        assert "***@" in problem
    assert "outputs.mqtt.0.username: a password needs a username" in result.stderr
    assert "outputs.mqtt.1.ca_file: needs tls = true" in result.stderr


def test_check_config_refuses_huge_template_widths(tmp_path):
    config = tmp_path / "widths.toml"
    config.write_text(
        '[[outputs.tcp]]\nhost = "vms"\nformat = "template"\n'
        'template = "ALARM {device:>50000000}"\n'
        '[[outputs.tcp]]\nhost = "vms2"\nformat = "template"\n'
        'template = "ALARM {confidence:.2000f} {device:1024}"\n'
        '[[outputs.serial]]\nport = "/dev/ttyS0"\ntemplate = "{event_id:_<99999}"\n'
    )
    started = time.monotonic()
    result = run_maskwatch("check-config", str(config), timeout=60)
    assert result.returncode == EX_CONFIG
    assert time.monotonic() - started < 30
    for key, spec in [("outputs.tcp.0.template", "{device:>50000000}"),
                      ("outputs.tcp.1.template", "{confidence:.2000f}"),
                      ("outputs.serial.0.template", "{event_id:_<99999}")]:
        assert f"{key}: {spec}: a width or precision is at most 1024" in result.stderr
    assert parse_config({"outputs": {"tcp": [{"host": "vms", "template": "{device:>1024}"}]}})
