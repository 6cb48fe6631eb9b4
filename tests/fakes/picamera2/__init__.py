"""A FAKE of Raspberry Pi's ``picamera2`` package, for tests on machines with no Pi camera.

This is not picamera2. It keeps the real package's API shape (raspberrypi/picamera2,
``picamera2/picamera2.py`` and ``request.py``) for the calls maskwatch makes, so code written
against it runs unchanged on a Pi:

- ``Picamera2(camera_num=0, verbose_console=None, tuning=None, allocator=None)``; like the real
  one it raises ``IndexError`` when camera ``camera_num`` is not attached (the real one indexes
  ``global_camera_info()``) and ``RuntimeError`` when the camera is already open elsewhere.
- ``create_video_configuration(main={}, lores=None, raw={}, transform=None, colour_space=None,
  buffer_count=6, controls={}, display="main", encode="main", queue=True, sensor={},
  use_case="video")`` returns the same dict keys, with the same defaults (main XBGR8888
  1280x720, FrameDurationLimits 33333 us) and the same checks (unknown stream keys →
  ``ValueError``; odd sizes, non-tuple sizes → ``RuntimeError`` at ``configure``).
- ``configure``, ``start``, ``stop``, ``close``, ``camera_configuration``, ``capture_array``,
  ``capture_metadata``, and ``capture_request(wait=None, signal_function=None, flush=None)``
  returning a request with ``make_array(name)``, ``get_metadata()`` and ``release()``.
- Memory layouts as picamera2 documents them: ``RGB888`` arrays are B, G, R; ``BGR888`` are
  R, G, B; ``XBGR8888`` are R, G, B, 255; ``XRGB8888`` are B, G, R, 255.
- ``capture_request(wait=<seconds>)`` raises ``TimeoutError`` when no frame comes (the real
  one's job future times out). Deviation: with ``wait=None`` the real call would block forever;
  the fake raises ``RuntimeError`` instead so a broken test cannot hang.

Knobs for tests (module attributes; ``reset()`` restores them): ``cameras`` (how many are
attached), ``scene(index, width, height) -> RGB uint8`` (the picture), ``stall_after`` (frames
delivered before the camera stops sending, None = never), ``timestamps`` (whether metadata
carries ``SensorTimestamp``), ``instances`` (every Picamera2 made, for inspection).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

SENSOR_FORMAT = "SRGGB10_CSI2P"
SENSOR_RESOLUTION = (3280, 2464)
BASE_TIMESTAMP_NS = 1_000_000_000_000  # where the fake sensor clock starts (1000 s)
RGB_FORMATS = ("RGB888", "BGR888", "XBGR8888", "XRGB8888")


def colour_halves(index: int, width: int, height: int) -> np.ndarray:
    """Left half red, right half blue: channel order and orientation are both visible."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (255, 0, 0)
    image[:, width // 2 :] = (0, 0, 255)
    return image


cameras = 1
scene: Callable[[int, int, int], np.ndarray] = colour_halves
stall_after: int | None = None
timestamps = True
instances: list[Picamera2] = []
_open_cameras: set[int] = set()


def reset() -> None:
    """Back to one attached, healthy camera and no recorded instances."""
    global cameras, scene, stall_after, timestamps
    cameras, scene, stall_after, timestamps = 1, colour_halves, None, True
    instances.clear()
    _open_cameras.clear()


class CompletedRequest:
    """One captured frame; its buffer belongs to the camera until ``release()``."""

    def __init__(self, rgb: np.ndarray, config: dict[str, Any], metadata: dict[str, Any]):
        self._rgb = rgb
        self._config = config
        self._metadata = metadata
        self.released = False

    def make_array(self, name: str) -> np.ndarray:
        if self.released:
            raise RuntimeError("request used after release()")
        stream = self._config.get(name)
        if stream is None:
            raise KeyError(name)
        fmt = stream["format"]
        if fmt == "RGB888":
            return np.ascontiguousarray(self._rgb[..., ::-1])
        if fmt == "BGR888":
            return self._rgb.copy()
        alpha = np.full(self._rgb.shape[:2] + (1,), 255, np.uint8)
        if fmt == "XBGR8888":
            return np.concatenate([self._rgb, alpha], axis=2)
        return np.concatenate([self._rgb[..., ::-1], alpha], axis=2)  # XRGB8888

    def get_metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    def release(self) -> None:
        self.released = True


class Picamera2:
    def __init__(
        self,
        camera_num: int = 0,
        verbose_console: Any = None,
        tuning: Any = None,
        allocator: Any = None,
    ) -> None:
        self.is_open = False
        self.started = False
        self.camera_config: dict[str, Any] | None = None
        self.camera_idx = [i for i in range(cameras)][camera_num]  # IndexError, as the real one
        if self.camera_idx in _open_cameras:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        _open_cameras.add(self.camera_idx)
        self.is_open = True
        self.frames = 0
        self.requests: list[CompletedRequest] = []
        instances.append(self)

    def __enter__(self) -> Picamera2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_video_configuration(
        self,
        main: dict[str, Any] = {},  # noqa: B006 - the real signature; never mutated
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = {},  # noqa: B006
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict[str, Any] = {},  # noqa: B006
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        sensor: dict[str, Any] | None = {},  # noqa: B006
        use_case: str = "video",
    ) -> dict[str, Any]:
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        main_cfg = _stream({"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True},
                           main)
        main_cfg["size"] = (main_cfg["size"][0] - main_cfg["size"][0] % 2,
                            main_cfg["size"][1] - main_cfg["size"][1] % 2)  # align_stream
        lores_cfg = None if lores is None else _stream(
            {"format": "YUV420", "size": main_cfg["size"], "preserve_ar": False}, lores)
        raw_cfg = None if raw is None else _stream(
            {"format": SENSOR_FORMAT, "size": main_cfg["size"]}, raw)
        return {
            "use_case": use_case,
            "transform": transform,
            "colour_space": colour_space,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main_cfg,
            "lores": lores_cfg,
            "raw": raw_cfg,
            "controls": {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)}
            | controls,
            "sensor": sensor,
            "display": display,
            "encode": encode,
        }

    def configure(self, camera_config: dict[str, Any] | None = None) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if camera_config is None:
            camera_config = self.create_video_configuration()
        config = dict(camera_config)
        main = dict(config["main"])
        if not isinstance(main.get("format"), str):
            raise RuntimeError("format in main stream should be a string")
        size = main.get("size")
        if type(size) is not tuple or len(size) != 2:
            raise RuntimeError("size in main stream should be (width, height)")
        if size[0] % 2 or size[1] % 2:
            raise RuntimeError("width and height should be even")
        if main["format"] not in RGB_FORMATS:
            raise RuntimeError(f"fake picamera2 only makes arrays for {RGB_FORMATS}")
        main["stride"] = size[0] * (3 if main["format"] in ("RGB888", "BGR888") else 4)
        main["framesize"] = main["stride"] * size[1]
        config["main"] = main
        self.camera_config = config

    def camera_configuration(self) -> dict[str, Any] | None:
        return self.camera_config

    def start(
        self, config: dict[str, Any] | None = None, show_preview: bool | None = False
    ) -> None:
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        if not self.is_open:
            return
        self.stop()
        self.is_open = False
        _open_cameras.discard(self.camera_idx)

    def capture_request(
        self, wait: float | bool | None = None, signal_function: Any = None, flush: Any = None
    ) -> CompletedRequest:
        stalled = stall_after is not None and self.frames >= stall_after
        if not self.started or stalled:
            if wait is None or wait is True:
                raise RuntimeError("fake picamera2: the real call would block forever here")
            raise TimeoutError()
        assert self.camera_config is not None
        width, height = self.camera_config["main"]["size"]
        frame_us = self.camera_config["controls"]["FrameDurationLimits"][0]
        metadata: dict[str, Any] = {"ExposureTime": 10000, "FrameDuration": frame_us}
        if timestamps:
            metadata["SensorTimestamp"] = BASE_TIMESTAMP_NS + self.frames * frame_us * 1000
        rgb = np.asarray(scene(self.frames, width, height), np.uint8)
        self.frames += 1
        request = CompletedRequest(rgb, self.camera_config, metadata)
        self.requests.append(request)
        return request

    def capture_array(
        self, name: str = "main", wait: float | bool | None = None, signal_function: Any = None
    ) -> np.ndarray:
        request = self.capture_request(wait=wait)
        try:
            return request.make_array(name)
        finally:
            request.release()

    def capture_metadata(
        self, wait: float | bool | None = None, signal_function: Any = None
    ) -> dict[str, Any]:
        request = self.capture_request(wait=wait)
        try:
            return request.get_metadata()
        finally:
            request.release()


def _stream(initial: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """picamera2's _make_initial_stream_config: only these keys may be set."""
    valid = ("format", "size", "stride", "preserve_ar")
    for key, value in updates.items():
        if key not in valid:
            raise ValueError(f"Bad key {key!r}: valid stream configuration keys are {valid}")
        initial[key] = value
    return initial
