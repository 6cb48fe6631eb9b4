"""IR / night mode (F9) on frames of the demo scene: monochrome frames switch IR on within 2 s of
video time, colour frames switch it off again, borderline frames never make it flicker, and the
file and GPIO inputs drive the state directly."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from maskwatch.conditions.ir_mode import IrDetector, IrInputError, colour_spread
from maskwatch.config import ConfigError, IrConfig, parse_config
from maskwatch.sources.demo import PHOTO, DemoSource
from maskwatch.types import Frame

MODELS = Path(__file__).parents[2] / "models"
FPS = 10.0

needs_photo = pytest.mark.skipif(
    not (MODELS / PHOTO).is_file(), reason="demo photo missing: run maskwatch setup"
)


@pytest.fixture(scope="module")
def colour_images() -> list[np.ndarray]:
    """Ten demo frames a second apart (people move, the mask goes on and off), small to be
    quick; the check shrinks every frame to 64 px anyway."""
    demo = DemoSource(MODELS, fps=FPS, width=640, height=360)
    return [demo.frame_at(i * int(FPS)).image for i in range(10)]


@pytest.fixture(scope="module")
def mono_images(colour_images: list[np.ndarray]) -> list[np.ndarray]:
    return [infrared(image, seed) for seed, image in enumerate(colour_images)]


def infrared(image: np.ndarray, seed: int) -> np.ndarray:
    """What the camera gives under IR light: one brightness for all channels, plus the sensor's
    independent per-channel noise."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    noise = np.random.default_rng(seed).standard_normal((*grey.shape, 3), np.float32) * 3.0
    return np.clip(grey[:, :, None] + noise, 0, 255).astype(np.uint8)


def with_spread(image: np.ndarray, target: float) -> np.ndarray:
    """The frame blended towards its own grey version until its colour spread is ``target``:
    blending with grey scales every pixel's max - min by the same factor."""
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    a = target / colour_spread(image)
    return cv2.addWeighted(image, a, grey, 1.0 - a, 0.0)


def detector(**ir: Any) -> IrDetector:
    return IrDetector(IrConfig.model_validate(ir))


def run(det: IrDetector, images: list[np.ndarray], start: float = 0.0) -> list[tuple[float, bool]]:
    """Feeds the images at ``FPS`` from frame time ``start``; returns (t, IR state) per frame."""
    states = []
    for i, image in enumerate(images):
        t = start + i / FPS
        states.append((t, det.update(Frame(image, t, int(round(t * FPS))))))
    return states


def switches(states: list[tuple[float, bool]]) -> list[tuple[float, bool]]:
    return [(t, s) for (t, s), (_, prev) in zip(states[1:], states) if s != prev]


@needs_photo
def test_colour_spread_of_colour_grey_and_masked_frames(
    colour_images: list[np.ndarray], mono_images: list[np.ndarray]
) -> None:
    for colour, mono in zip(colour_images, mono_images):
        assert colour_spread(colour) > 20.0
        assert colour_spread(mono) < 1.5  # the 64 px copy averages the sensor noise away
    image = colour_images[0]
    # Black privacy zones carry no colour and do not dilute the measure.
    zoned = image.copy()
    zoned[:, : image.shape[1] // 2] = 0
    right = image[:, image.shape[1] // 2:]
    assert colour_spread(zoned) == pytest.approx(colour_spread(right), rel=0.1)
    assert colour_spread(np.zeros_like(image)) == 0.0


@needs_photo
def test_monochrome_turns_ir_on_within_2_s_and_colour_turns_it_off(
    colour_images: list[np.ndarray], mono_images: list[np.ndarray]
) -> None:
    det = detector()
    n = int(4 * FPS)  # 4 s of each, the scene moving on every 0.4 s
    colour = [colour_images[i * len(colour_images) // n] for i in range(n)]
    mono = [mono_images[i * len(mono_images) // n] for i in range(n)]
    states = run(det, colour + mono + colour)
    assert switches(states) == [pytest.approx((4.0 + 1.0, True)), pytest.approx((8.0 + 1.0, False))]
    on_at, off_at = (t for t, _ in switches(states))
    assert 4.0 < on_at <= 4.0 + 2.0 and 8.0 < off_at <= 8.0 + 2.0
    assert det.active is False and det.spread is not None and det.spread > 20.0


@needs_photo
def test_borderline_frames_do_not_flicker(colour_images: list[np.ndarray]) -> None:
    det = detector(on_below=6.0, off_above=10.0, hold_s=1.0)
    image = colour_images[3]
    low, high = with_spread(image, 5.0), with_spread(image, 11.0)
    assert colour_spread(low) < 6.0 < 10.0 < colour_spread(high)
    # Alternating every frame for 20 s: never a whole second of either, so no switch.
    assert not any(s for _, s in run(det, [low, high] * int(10 * FPS)))
    # Between the thresholds nothing changes either, in either state.
    middle = with_spread(image, 8.0)
    assert not any(s for _, s in run(det, [middle] * int(5 * FPS), start=20.0))
    assert run(det, [low] * int(2 * FPS), start=25.0)[-1][1] is True
    states = run(det, [middle, high, low] * int(5 * FPS) + [middle] * 30, start=27.0)
    assert all(s for _, s in states)


@needs_photo
def test_hold_restarts_when_frame_time_goes_back(mono_images: list[np.ndarray]) -> None:
    """A reopened file source starts again at t = 0: the wait starts again rather than
    counting a negative or huge interval."""
    det = detector(hold_s=1.0)
    mono = mono_images[0]
    assert not any(s for _, s in run(det, [mono] * 8, start=100.0))
    assert [s for _, s in run(det, [mono] * 11, start=0.0)] == [False] * 10 + [True]


@needs_photo
def test_mode_off_never_reports_ir(mono_images: list[np.ndarray]) -> None:
    det = detector(mode="off")
    assert not any(s for _, s in run(det, mono_images * 4))
    assert det.description == "off"


@needs_photo
def test_file_input_drives_the_state_at_once(
    tmp_path: Path,
    colour_images: list[np.ndarray],
    mono_images: list[np.ndarray],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "ir_state"
    det = detector(mode="auto", input_file=str(path))
    colour = Frame(colour_images[0], 0.0, 0)
    mono = Frame(mono_images[0], 0.0, 0)
    assert det.update(mono) is False  # missing file = no IR; the image is not looked at
    path.write_text("1\n")
    assert det.update(colour) is True
    path.write_text("0")
    assert det.update(mono) is False
    path.write_text("")  # an empty file: its existence says IR
    assert det.update(colour) is True
    with caplog.at_level(logging.WARNING, logger="maskwatch.conditions.ir_mode"):
        path.write_text("maybe")
        assert det.update(colour) is True and det.update(colour) is True  # last state kept
    assert len([r for r in caplog.records if "expected '1' or '0'" in r.message]) == 1
    path.unlink()
    assert det.update(colour) is False
    assert "file" in det.description
    det.close()


def test_ir_config_validation() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"ir": {"mode": "night", "hold_s": 20}})
    problems = info.value.problems
    assert any(p.startswith("ir.mode:") and "'auto'" in p and "'night'" in p for p in problems)
    assert any(p.startswith("ir.hold_s:") and "10" in p for p in problems)
    for section, words in (
        ({"on_below": 10.0, "off_above": 10.0}, ("on_below", "off_above")),
        ({"input_file": "/run/ir", "gpio_pin": 17}, ("input_file", "gpio_pin", "not both")),
        ({"mode": "input"}, ("input_file", "gpio_pin")),
    ):
        with pytest.raises(ConfigError) as info:
            parse_config({"ir": section})
        (problem,) = info.value.problems
        assert problem.startswith("ir:") and all(w in problem for w in words), problem


def test_missing_gpiozero_is_a_clear_error_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gpiozero", None)  # makes "import gpiozero" fail
    with pytest.raises(IrInputError, match="gpio_pin = 17 needs the gpiozero package"):
        detector(mode="input", gpio_pin=17)


@pytest.fixture
def mock_pins() -> Iterator[Any]:
    """gpiozero's own mock pin factory: the real library, with pins the test drives."""
    gpiozero = pytest.importorskip("gpiozero")
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    previous = gpiozero.Device.pin_factory
    gpiozero.Device.pin_factory = factory
    yield factory
    factory.reset()
    gpiozero.Device.pin_factory = previous


@pytest.mark.parametrize("active_high", [True, False])
def test_gpio_input(mock_pins: Any, active_high: bool) -> None:
    det = detector(gpio_pin=17, active_high=active_high)
    pin = mock_pins.pin(17)
    frame = Frame(np.zeros((36, 64, 3), np.uint8), 0.0, 0)
    assert det.update(frame) is False  # pulled to the inactive level while nothing drives it
    (pin.drive_high if active_high else pin.drive_low)()
    assert det.update(frame) is True
    (pin.drive_low if active_high else pin.drive_high)()
    assert det.update(frame) is False
    assert "GPIO 17" in det.description
    det.close()


def test_gpio_pin_in_use_is_a_clear_error(mock_pins: Any) -> None:
    first = detector(gpio_pin=4)
    with pytest.raises(IrInputError, match="GPIO 4"):
        detector(gpio_pin=4)
    first.close()
