"""IR / night-mode detection (F9): detection and alarms pause while the camera sees by IR light.

Under IR illumination the image turns monochrome and the mask classifier, trained on colour
faces, is no longer trustworthy. The state comes either from the image itself (colour spread on a
tiny copy, with hysteresis and a hold time in frame time so a dark coloured scene or a borderline
camera does not flicker) or from an input the camera's IR-cut switch drives (a file or a GPIO
pin), which is authoritative and used as it is.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from maskwatch.config import IrConfig
from maskwatch.types import Frame

log = logging.getLogger(__name__)

# Wide enough to average out sensor chroma noise, small enough to cost well under a millisecond.
CHECK_WIDTH = 64
_FILE_ON = {"", "1", "on", "true"}  # an empty file counts: its existence is the signal
_FILE_OFF = {"0", "off", "false"}


class IrInputError(Exception):
    """The configured IR input cannot be used; raised at start so the service refuses to run
    with a silently dead input rather than alarming through the night."""


def colour_spread(image: np.ndarray) -> float:
    """Mean per-pixel max(R,G,B) - min(R,G,B) (0 = grey, up to 255) of an RGB image shrunk to
    ``CHECK_WIDTH`` pixels wide.

    Pure black pixels are left out: privacy zones are filled black before this check and carry
    no colour information, so counting them would push a coloured scene towards "IR"."""
    height, width = image.shape[:2]
    small = cv2.resize(
        image, (CHECK_WIDTH, max(1, round(height * CHECK_WIDTH / width))),
        interpolation=cv2.INTER_AREA,
    )
    spread = small.max(axis=2) - small.min(axis=2)  # uint8: max >= min, no wrap-around
    lit = small.max(axis=2) > 0
    return float(spread[lit].mean()) if lit.any() else 0.0


class _Hysteresis:
    """Switches only after the opposite condition held for ``hold_s`` of frame time without a
    break; values between the two thresholds restart the wait, so alternating borderline frames
    never switch."""

    def __init__(self, on_below: float, off_above: float, hold_s: float) -> None:
        self.on_below = on_below
        self.off_above = off_above
        self.hold_s = hold_s
        self.state = False
        self._since: float | None = None

    def update(self, spread: float, t: float) -> bool:
        wants_switch = spread > self.off_above if self.state else spread < self.on_below
        if not wants_switch or (self._since is not None and t < self._since):
            # The condition broke, or frame time went back (a source was reopened).
            self._since = t if wants_switch else None
        elif self._since is None:
            self._since = t
        if self._since is not None and t - self._since >= self.hold_s:
            self.state = not self.state
            self._since = None
        return self.state


class _Input(Protocol):
    description: str

    def read(self) -> bool | None:
        """The IR state, or None when it cannot be told right now (the last state then holds)."""

    def close(self) -> None: ...


class _FileInput:
    """A file whose content says whether IR is on ("1"/"0", "on"/"off", "true"/"false"; empty
    means on, a missing file means off), so any script or camera tool can drive the state."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.description = f"file {self.path}"
        self._complained = False

    def read(self) -> bool | None:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace").strip().lower()
        except FileNotFoundError:
            return False
        except OSError as exc:
            self._complain(f"cannot read IR input {self.path}: {exc.strerror}")
            return None
        if text in _FILE_ON:
            self._complained = False
            return True
        if text in _FILE_OFF:
            self._complained = False
            return False
        self._complain(f"IR input {self.path} says {text[:20]!r}; expected '1' or '0'")
        return None

    def _complain(self, message: str) -> None:
        """Warns once per bad spell instead of at every frame."""
        if not self._complained:
            log.warning("%s; keeping the last IR state", message)
            self._complained = True

    def close(self) -> None:
        """Nothing is held open between reads."""


class _GpioInput:
    """A GPIO pin read through gpiozero; pulled towards its inactive level so a loose wire reads
    as "no IR" instead of floating."""

    def __init__(self, pin: int, active_high: bool) -> None:
        try:
            from gpiozero import DigitalInputDevice
        except ImportError:
            raise IrInputError(
                f"ir.gpio_pin = {pin} needs the gpiozero package: on Raspberry Pi OS "
                "'sudo apt install python3-gpiozero' (venv made with --system-site-packages), "
                "elsewhere 'pip install gpiozero'"
            ) from None
        try:
            self._device = DigitalInputDevice(pin, pull_up=not active_high)
        except Exception as exc:  # gpiozero raises many kinds: no pin factory, pin in use, ...
            raise IrInputError(f"cannot use GPIO {pin} as the IR input: {exc}") from exc
        level = "high" if active_high else "low"
        self.description = f"GPIO {pin} (IR on when {level})"

    def read(self) -> bool:
        return bool(self._device.is_active)

    def close(self) -> None:
        self._device.close()


class IrDetector:
    """The IR state per frame, by the configured mode: "image" checks the picture, "input" reads
    the file or GPIO pin, "auto" uses the input when one is configured and else the picture,
    "off" never reports IR."""

    def __init__(self, config: IrConfig) -> None:
        self.mode = config.mode
        self._input: _Input | None = None
        self._hysteresis: _Hysteresis | None = None
        if config.mode in ("input", "auto") and config.has_input:
            self._input = (
                _FileInput(config.input_file) if config.input_file
                else _GpioInput(config.gpio_pin, config.active_high)
            )
        elif config.mode in ("image", "auto"):
            self._hysteresis = _Hysteresis(config.on_below, config.off_above, config.hold_s)
        self.active = False
        self.spread: float | None = None  # last colour spread, shown to installers for tuning
        log.info("IR detection: %s", self.description)

    @property
    def description(self) -> str:
        if self._input is not None:
            return f"input {self._input.description}"
        if self._hysteresis is not None:
            h = self._hysteresis
            return (f"image colour spread (on below {h.on_below:g}, off above {h.off_above:g}, "
                    f"hold {h.hold_s:g} s)")
        return "off"

    def update(self, frame: Frame) -> bool:
        """The IR state after ``frame``; True means pause detection and alarms."""
        if self._input is not None:
            state = self._input.read()
            active = self.active if state is None else state
        elif self._hysteresis is not None:
            self.spread = colour_spread(frame.image)
            active = self._hysteresis.update(self.spread, frame.t)
        else:
            active = False
        if active != self.active:
            detail = "" if self.spread is None else f", colour spread {self.spread:.1f}"
            log.info("IR mode %s at t=%.2f s%s", "on" if active else "off", frame.t, detail)
            self.active = active
        return active

    def close(self) -> None:
        if self._input is not None:
            self._input.close()
