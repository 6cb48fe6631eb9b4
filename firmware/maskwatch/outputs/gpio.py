"""Relay pulse per alarm (SPEC F17, gpiozero): the output is switched on for ``pulse_s`` and
then off again by a background timer, so ``send`` returns at once. An alarm during a pulse
extends it to ``pulse_s`` from that alarm. ``active_high = false`` for relay boards that switch
on a low level. Needs gpiozero (the ``[gpio]`` extra, or Raspberry Pi OS's python3-gpiozero).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from maskwatch.alarm_format import AlarmMessage
from maskwatch.events import Output, OutputError

log = logging.getLogger(__name__)


class GpioOutput(Output):
    def __init__(self, pin: int, *, active_high: bool = True, pulse_s: float = 1.0,
                 pin_factory: Any = None) -> None:
        """``pin`` is a BCM number. Raises ImportError without gpiozero and gpiozero's own
        errors when the pin cannot be used (no GPIO on this machine, pin taken)."""
        from gpiozero import DigitalOutputDevice

        self.pin = pin
        self.name = f"gpio:{pin}"
        self.pulse_s = pulse_s
        self._device = DigitalOutputDevice(pin, active_high=active_high, initial_value=False,
                                           pin_factory=pin_factory)
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._pulse = 0  # which pulse the running timer ends; a stale timer does nothing

    def send(self, message: AlarmMessage) -> None:
        with self._lock:
            if self._device.closed:
                raise OutputError(f"{self.name}: closed", retry=False)
            if self._timer is not None:
                self._timer.cancel()
            try:
                self._device.on()
            except Exception as exc:  # noqa: BLE001 - gpiozero raises various pin errors
                raise OutputError(f"{self.name}: {exc}") from None
            self._pulse += 1
            self._timer = threading.Timer(self.pulse_s, self._off, args=(self._pulse,))
            self._timer.daemon = True
            self._timer.start()

    def _off(self, pulse: int) -> None:
        with self._lock:
            if pulse != self._pulse:
                return
            self._timer = None
            if not self._device.closed:
                self._device.off()

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not self._device.closed:
                self._device.off()
                self._device.close()
