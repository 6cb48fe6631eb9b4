"""Frames into the encoding pipelines of one mount (``/live`` or ``/boxes``).

A mount's media exists only while clients watch it (the RTSP server prepares it for the first
and unprepares it after the last), and its ``appsrc`` is registered here meanwhile. Frames
are pushed only into registered sources, so with no client nothing is converted, scaled or
encoded. Pushing never waits: the ``appsrc`` keeps at most two frames and drops the oldest
when the encoder falls behind, so a slow encoder or client costs frames of the stream, never
time of the caller.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class MountFeed:
    def __init__(self, path: str, gst: Any) -> None:
        self.path = path
        self._gst = gst
        self._lock = threading.Lock()
        # Each prepared media's appsrc with the frame size its caps announce (None: none yet).
        self._sources: dict[Any, tuple[int, int] | None] = {}

    @property
    def active(self) -> bool:
        """True while a media of this mount is prepared (at least one client watches)."""
        with self._lock:
            return bool(self._sources)

    def attach(self, appsrc: Any) -> None:
        with self._lock:
            self._sources[appsrc] = None
        log.info("stream %s: encoding started", self.path)

    def detach(self, appsrc: Any) -> None:
        with self._lock:
            if self._sources.pop(appsrc, False) is False:
                return
            left = len(self._sources)
        if not left:
            log.info("stream %s: no client, encoding stopped", self.path)

    def push(self, image: np.ndarray) -> None:
        """``image`` (H x W x 3 RGB uint8) to every prepared media of the mount."""
        with self._lock:
            sources = list(self._sources.items())
        if not sources:
            return
        height, width = image.shape[:2]
        buffer = self._gst.Buffer.new_wrapped(np.ascontiguousarray(image).tobytes())
        for appsrc, size in sources:
            if size != (width, height):
                # The first frame, or the camera changed its size (a reload): the scaler
                # behind keeps the stream's own size.
                appsrc.set_property("caps", self._gst.Caps.from_string(
                    f"video/x-raw,format=RGB,width={width},height={height},framerate=0/1"))
                with self._lock:
                    if appsrc in self._sources:
                        self._sources[appsrc] = (width, height)
            appsrc.emit("push-buffer", buffer)
