"""Serial line per alarm (SPEC F17, pyserial): a display, a PLC or a legacy alarm panel.

Each alarm writes ``template`` rendered with the alarm's values (the same placeholders as the
TCP ``template`` format, checked when the config is loaded) followed by ``line_end``
(default CR LF), UTF-8 encoded. The port is opened at the first alarm and kept open; after an
error it is closed and opened again at the next attempt (a USB adapter may be re-plugged).
"""

from __future__ import annotations

import logging
import threading

import serial

from maskwatch.alarm_format import DEFAULT_TEMPLATE, MAX_MESSAGE_BYTES, AlarmMessage
from maskwatch.events import Output, OutputError
from maskwatch.outputs.tcp import render_line

log = logging.getLogger(__name__)

PARITIES = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}


class SerialOutput(Output):
    def __init__(
        self,
        port: str,
        baudrate: int = 9600,
        *,
        template: str = DEFAULT_TEMPLATE,
        line_end: str = "\r\n",
        parity: str = "N",
        stopbits: int = 1,
        write_timeout_s: float = 2.0,
    ) -> None:
        self.port = port
        self.name = f"serial:{port}"
        self.baudrate = baudrate
        self.template = template
        self.line_end = line_end
        self.parity = PARITIES[parity]
        self.stopbits = stopbits
        self.write_timeout_s = write_timeout_s
        self._serial: serial.Serial | None = None
        self._lock = threading.Lock()

    @property
    def deadline_s(self) -> float:
        """The write timeout, then the drain of the longest line at this baud rate (up to
        12 bits a byte)."""
        return self.write_timeout_s + MAX_MESSAGE_BYTES * 12 / self.baudrate

    def encode(self, message: AlarmMessage) -> bytes:
        return render_line(self.template, message, self.line_end)

    def send(self, message: AlarmMessage) -> None:
        data = self.encode(message)
        with self._lock:
            try:
                if self._serial is None:
                    self._serial = serial.Serial(
                        self.port, self.baudrate, parity=self.parity, stopbits=self.stopbits,
                        timeout=0, write_timeout=self.write_timeout_s,
                    )
                self._serial.write(data)
                self._serial.flush()
            except serial.SerialTimeoutException:
                self._drop()
                raise OutputError(f"{self.name}: write not done within "
                                  f"{self.write_timeout_s:g} s (flow control? cable?)") from None
            except (serial.SerialException, OSError, ValueError) as exc:
                self._drop()
                raise OutputError(f"{self.name}: {exc}") from None

    def _drop(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except Exception:  # noqa: BLE001 - already failing; the next attempt reopens
                pass
            self._serial = None

    def close(self) -> None:
        with self._lock:
            self._drop()
