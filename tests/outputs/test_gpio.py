"""Relay pulse output (F17) on gpiozero's mock pin factory: the pin goes to its active level
at once, and back after the pulse, without send waiting for it."""

from __future__ import annotations

import time

import pytest

from maskwatch.alarm_format import AlarmMessage
from maskwatch.events.destination import OutputError

gpiozero = pytest.importorskip("gpiozero", reason="gpiozero not installed ([gpio] extra)")
from gpiozero.pins.mock import MockFactory  # noqa: E402

from maskwatch.outputs.gpio import GpioOutput  # noqa: E402

MESSAGE = AlarmMessage(event_id="e", utc_ms=0, device="d", label="no_mask", confidence=0.9,
                       track_id=1, box=(0, 0, 1, 1))


def wait_for(pin, state: bool, timeout: float = 3.0) -> float:
    start = time.monotonic()
    while pin.state != state:
        if time.monotonic() - start > timeout:
            raise AssertionError(f"pin never became {state}")
        time.sleep(0.005)
    return time.monotonic() - start


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.close()


def test_pulse_goes_high_then_low(factory):
    out = GpioOutput(17, pulse_s=0.2, pin_factory=factory)
    pin = factory.pin(17)
    assert not pin.state
    start = time.monotonic()
    out.send(MESSAGE)
    assert time.monotonic() - start < 0.05  # send does not wait for the pulse
    assert pin.state
    wait_for(pin, False)
    assert 0.19 <= time.monotonic() - start < 1.0
    assert out.name == "gpio:17"
    out.close()


def test_active_low_relay_board(factory):
    out = GpioOutput(22, active_high=False, pulse_s=0.1, pin_factory=factory)
    pin = factory.pin(22)
    assert pin.state  # idle = high for an active-low board
    out.send(MESSAGE)
    assert not pin.state
    wait_for(pin, True)
    out.close()


def test_alarm_during_pulse_extends_it(factory):
    out = GpioOutput(5, pulse_s=0.3, pin_factory=factory)
    pin = factory.pin(5)
    out.send(MESSAGE)
    time.sleep(0.2)
    second = time.monotonic()
    out.send(MESSAGE)
    time.sleep(0.15)
    assert pin.state  # the first pulse would have ended by now
    wait_for(pin, False)
    assert time.monotonic() - second >= 0.28
    out.close()


def test_closed_output_turns_off_and_refuses(factory):
    out = GpioOutput(6, pulse_s=10, pin_factory=factory)
    out.send(MESSAGE)
    out.close()
    with pytest.raises(OutputError) as err:
        out.send(MESSAGE)
    assert err.value.retry is False
