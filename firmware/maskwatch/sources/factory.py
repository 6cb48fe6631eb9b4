"""Turning ``[source]`` config into a frame source, and keeping a live source alive.

:func:`open_source` picks the back-end by ``kind`` (``auto`` probes what the device has) and
applies the configured rotation, so every back-end delivers upright RGB frames.
:class:`ReopeningSource` is what the service reads from: it never raises, reopens a failed or
ended camera with exponential back-off, and reports ``camera_up`` / ``last_error`` for the
status page. Back-ends are imported only when chosen, so a laptop without picamera2 or
GStreamer never touches them.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from maskwatch.config import SourceConfig
from maskwatch.redact import redact_text
from maskwatch.sources.frame_source import FrameSource, SourceError
from maskwatch.types import Frame

log = logging.getLogger(__name__)

DEFAULT_V4L2_DEVICE = "/dev/video0"
GST_INSPECT_TIMEOUT_S = 30.0  # the first call builds GStreamer's plugin registry
_ROTATE_CODES = {
    90: cv2.ROTATE_90_CLOCKWISE,
    180: cv2.ROTATE_180,
    270: cv2.ROTATE_90_COUNTERCLOCKWISE,
}


def rotate_image(image: np.ndarray, rotation: int) -> np.ndarray:
    """``image`` turned clockwise by ``rotation`` degrees (0, 90, 180 or 270), for a camera
    mounted sideways or upside down. cv2.rotate returns a contiguous copy, which every later
    OpenCV call needs (np.rot90 would return a strided view)."""
    if rotation == 0:
        return image
    if rotation not in _ROTATE_CODES:
        raise ValueError(f"rotation must be 0, 90, 180 or 270, not {rotation}")
    return cv2.rotate(image, _ROTATE_CODES[rotation])


class RotatedSource(FrameSource):
    """Any source with its frames turned by :func:`rotate_image`, so rotation is done once,
    here, for every back-end."""

    def __init__(self, source: FrameSource, rotation: int) -> None:
        if rotation not in _ROTATE_CODES:
            raise ValueError(f"rotation must be 90, 180 or 270, not {rotation}")
        self.source = source
        self.rotation = rotation

    @property
    def description(self) -> str:
        return f"{self.source.description}, rotated {self.rotation}°"

    def read(self) -> Frame | None:
        frame = self.source.read()
        if frame is None:
            return None
        return Frame(rotate_image(frame.image, self.rotation), frame.t, frame.index)

    def close(self) -> None:
        self.source.close()


def _rotated(source: FrameSource, rotation: int) -> FrameSource:
    return RotatedSource(source, rotation) if rotation else source


def open_source(cfg: SourceConfig, models_dir: Path) -> FrameSource:
    """The configured source, opened and delivering, rotated as configured.

    Raises :class:`SourceError` with an installer-facing reason when it cannot be opened;
    ``auto`` raises when no camera is found (the demo scene runs only when asked for by
    ``kind = "demo"``: a device whose camera cable came loose must not raise its alarms).
    """
    if cfg.kind == "auto":
        return _rotated(_probe(cfg, models_dir)[1], cfg.rotation)
    return _rotated(_OPENERS[cfg.kind](cfg, models_dir), cfg.rotation)


def open_reopening_source(
    cfg: SourceConfig,
    models_dir: Path,
    sleep: Callable[[float], None] | None = None,
) -> ReopeningSource:
    """What the service reads: the configured source, reopened whenever it fails.

    With ``kind = "auto"`` the probe is repeated until a camera is found, and the back-end
    found then is kept for every reopen, so a camera that drops out is waited for. Only a
    non-looping file has a real end.
    """
    chosen = cfg

    def factory() -> FrameSource:
        nonlocal chosen
        if chosen.kind != "auto":
            return open_source(chosen, models_dir)
        kind, source = _probe(cfg, models_dir)
        chosen = cfg.model_copy(update={"kind": kind})
        return _rotated(source, cfg.rotation)

    return ReopeningSource(factory, end_is_final=cfg.kind == "file" and not cfg.loop, sleep=sleep)


class ReopeningSource(FrameSource):
    """Wraps a source made by ``factory`` and keeps it delivering: when it fails (raises, or
    a live source ends) it is closed and made again after a back-off that doubles from
    ``backoff_initial`` to ``backoff_max`` seconds and resets after the next frame.

    ``read()`` never raises; it blocks until a frame comes, and returns ``None`` only after
    ``close()`` or, with ``end_is_final``, at the end of a finite source (a non-looping file).
    Status for the service and status page: ``camera_up`` (a frame came from the current
    source and it has not failed since), ``last_error`` (the newest failure, kept after
    recovery; "" if none), ``reopen_count`` (successful opens after a failure).

    Frame indices and times continue across reopens (a reopened file restarts at t = 0), so
    trackers and alarm timers downstream see one stream whose time never goes backwards.
    ``close()`` may be called from another thread and never blocks: it wakes a back-off wait
    at once; a read or open in progress finishes first (within the source's read timeout) and
    then releases the source and returns ``None``.
    """

    def __init__(
        self,
        factory: Callable[[], FrameSource],
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        end_is_final: bool = False,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        self.factory = factory
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.end_is_final = end_is_final
        self.camera_up = False
        self.last_error = ""
        self.reopen_count = 0
        self._closing = threading.Event()
        self._sleep = sleep if sleep is not None else self._closing.wait
        self._lock = threading.Lock()  # held while the inner source is opened or read
        self._source: FrameSource | None = None
        self._delay = backoff_initial
        self._failed_before = False  # the next successful open is a reopen
        self._ended = False
        self._index = 0
        self._t_offset = 0.0
        self._last_t: float | None = None
        self._last_step = 0.0
        self._first_after_open = False
        self._description = "camera not opened yet"

    @property
    def description(self) -> str:
        state = "up" if self.camera_up else "down"
        return f"{self._description} [{state}]"

    def read(self) -> Frame | None:
        while not self._ended:
            frame = None
            with self._lock:
                if not self._closing.is_set():
                    frame = self._read_once()
            if self._closing.is_set():
                # close() may have found the lock taken and left the release to this thread.
                with self._lock:
                    self._close_inner()
                return None
            if frame is not None:
                return frame
            if not self._ended:
                log.info("reopening the source in %.1f s", self._delay)
                self._sleep(self._delay)
                self._delay = min(self._delay * 2, self.backoff_max)
        return None

    def close(self) -> None:
        self._closing.set()
        self.camera_up = False
        # Never wait for a read or an open in progress (a hung camera can take read_timeout_s
        # plus the start grace): the reading thread releases the source when it returns.
        if self._lock.acquire(blocking=False):
            try:
                self._close_inner()
            finally:
                self._lock.release()

    def _read_once(self) -> Frame | None:
        """One attempt: open if needed, then read. ``None`` means wait and try again (or the
        end, when ``_ended`` is set)."""
        if self._source is None:
            try:
                self._source = self.factory()
            except Exception as exc:  # whatever a back-end throws, the service stays up
                self._failed(_reason(exc))
                return None
            self._description = redact_text(self._source.description)
            self._first_after_open = True
            if self._failed_before:
                self.reopen_count += 1
                log.info("reopened %s", self._description)
        try:
            frame = self._source.read()
        except Exception as exc:
            self._failed(_reason(exc))
            return None
        if frame is None:
            if self.end_is_final:
                log.info("%s ended", self._description)
                self._ended = True
                self._close_inner()
                self.camera_up = False
                return None
            self._failed(f"{self._description} stopped delivering frames")
            return None
        self.camera_up = True
        self._delay = self.backoff_initial
        return self._renumber(frame)

    def _renumber(self, frame: Frame) -> Frame:
        if self._first_after_open and self._last_t is not None:
            if frame.t + self._t_offset <= self._last_t:
                self._t_offset = self._last_t + (self._last_step or 1e-3) - frame.t
        self._first_after_open = False
        t = frame.t + self._t_offset
        if self._last_t is not None and t > self._last_t:
            self._last_step = t - self._last_t
        self._last_t = t
        out = Frame(frame.image, t, self._index)
        self._index += 1
        return out

    def _failed(self, reason: str) -> None:
        reason = redact_text(reason)  # it goes to the log and the status page
        if self.camera_up or reason != self.last_error:
            log.warning("camera down, retrying: %s", reason)
        self.camera_up = False
        self.last_error = reason
        self._failed_before = True
        self._close_inner()

    def _close_inner(self) -> None:
        if self._source is not None:
            source, self._source = self._source, None
            try:
                source.close()
            except Exception as exc:
                log.warning("closing %s: %s", self._description, _reason(exc))


def _reason(exc: BaseException) -> str:
    """SourceError messages are written for the installer; anything else is a bug in a
    back-end and keeps its type name for the report."""
    return str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"


def _open_picamera2(cfg: SourceConfig, models_dir: Path) -> FrameSource:
    from maskwatch.sources.pi_camera import Picamera2Source

    return Picamera2Source(
        _camera_number(cfg), cfg.width, cfg.height, cfg.fps, cfg.read_timeout_s
    )


def _open_jetson(cfg: SourceConfig, models_dir: Path) -> FrameSource:
    from maskwatch.sources.gstreamer import GstSource, jetson_head

    head = cfg.gst_pipeline or jetson_head(_camera_number(cfg), cfg.width, cfg.height, cfg.fps)
    return GstSource(head, cfg.width, cfg.height, cfg.read_timeout_s)


def _open_v4l2(cfg: SourceConfig, models_dir: Path) -> FrameSource:
    from maskwatch.sources.opencv_capture import OpenCVSource

    return OpenCVSource(
        _v4l2_device(cfg), cfg.width, cfg.height, cfg.fps, cfg.read_timeout_s
    )


def _open_rtsp(cfg: SourceConfig, models_dir: Path) -> FrameSource:
    from maskwatch.sources.opencv_capture import OpenCVSource

    return OpenCVSource(cfg.url, read_timeout_s=cfg.read_timeout_s)


def _open_file(cfg: SourceConfig, models_dir: Path) -> FrameSource:
    from maskwatch.sources.video_file import VideoFileSource

    return VideoFileSource(cfg.path, loop=cfg.loop)


def _open_demo(cfg: SourceConfig, models_dir: Path) -> FrameSource:
    from maskwatch.sources.demo import DemoSource

    return DemoSource(models_dir, fps=cfg.fps, width=cfg.width, height=cfg.height)


_OPENERS: dict[str, Callable[[SourceConfig, Path], FrameSource]] = {
    "picamera2": _open_picamera2,
    "jetson": _open_jetson,
    "v4l2": _open_v4l2,
    "rtsp": _open_rtsp,
    "file": _open_file,
    "demo": _open_demo,
}


def _probe(cfg: SourceConfig, models_dir: Path) -> tuple[str, FrameSource]:
    """``auto``: the first camera back-end that opens, logging why each one before it was
    skipped, so an installer can see what is missing. Raises :class:`SourceError` when
    there is none."""
    reasons = []
    for kind in ("picamera2", "jetson", "v4l2"):
        reason = _unavailable(kind, cfg)
        if reason is None:
            try:
                source = _OPENERS[kind](cfg, models_dir)
            except SourceError as exc:
                reason = str(exc)
            else:
                log.info("source auto: using %s", kind)
                return kind, source
        log.info("source auto: skipping %s: %s", kind, reason)
        reasons.append(f"{kind}: {reason}")
    raise SourceError("no camera found (" + "; ".join(reasons) + ")")


def _unavailable(kind: str, cfg: SourceConfig) -> str | None:
    """Why ``kind`` is not worth opening here, found without touching a camera (None = try)."""
    if kind in ("picamera2", "jetson") and cfg.device.startswith("/dev/"):
        return f"device = '{cfg.device}' names a V4L2 camera"
    if kind == "jetson":
        return _no_nvargus()
    if kind == "v4l2" and not Path(device := _v4l2_device(cfg)).exists():
        return f"{device} does not exist"
    return None


def _no_nvargus() -> str | None:
    inspect = shutil.which("gst-inspect-1.0")
    if inspect is None:
        return "gst-inspect-1.0 not installed (no GStreamer)"
    try:
        result = subprocess.run(
            [inspect, "nvarguscamerasrc"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=GST_INSPECT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "gst-inspect-1.0 did not answer"
    if result.returncode != 0:
        return "GStreamer has no nvarguscamerasrc (not a Jetson)"
    return None


def _camera_number(cfg: SourceConfig) -> int:
    """picamera2 camera / Jetson sensor-id: a numeric ``device``, else the first camera."""
    return int(cfg.device) if cfg.device.isdigit() else 0


def _v4l2_device(cfg: SourceConfig) -> str:
    if cfg.device.isdigit():
        return f"/dev/video{cfg.device}"
    return cfg.device or DEFAULT_V4L2_DEVICE
