"""The stream for recorders (F30): processed frames from the event bus into the RTSP mounts.

The frames are the ones the page shows: privacy zones already blacked out, at the detection
rate, so a recorder never sees what the device is set to hide. ``/live`` carries them as they
are, ``/boxes`` with the page's boxes drawn. Outside the operation schedule the page shows no
picture and the stream sends black frames (recorders stay connected instead of reconnecting
in a loop).

The bus subscription exists only while a mount has a client, and frames are taken by this
object's own thread, newest first: publishing on the bus never waits for it, so neither a
slow encoder nor a client that stops reading can hold up detection.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from maskwatch.config import StreamConfig
from maskwatch.decision import FpsGate, FrameOutcome, PipelineState
from maskwatch.events import EventBus, Subscription
from maskwatch.stream.encoder import Encoder, choose_encoder
from maskwatch.stream.gst_stack import StreamUnavailable, load_rtsp_stack
from maskwatch.stream.mount_feed import MountFeed
from maskwatch.stream.rtsp_server import RtspServer, nice_streaming_threads
from maskwatch.web import draw_faces, lower_thread_priority

log = logging.getLogger(__name__)

LIVE, BOXES = "/live", "/boxes"
WAIT_S = 0.25
# How often the feed thread looks for new streaming threads to lower their priority: a
# media's threads start with its first client and run at full priority until then.
RENICE_S = 1.0


class RecorderStream:
    """Owns the RTSP server and the thread feeding it. A device that cannot stream as
    configured (packages missing, port taken) still detects and alarms: ``start`` logs why
    and the status page shows it, rather than the service refusing to run."""

    def __init__(self, config: StreamConfig, bus: EventBus) -> None:
        self.config = config
        self._bus = bus
        self._stop = threading.Event()
        self._sub: Subscription | None = None
        self._server: RtspServer | None = None
        self.encoder: Encoder | None = None
        self.error = ""
        self._thread = threading.Thread(target=self._run, name="rtsp-feed", daemon=True)

    def start(self) -> bool:
        """Serve the mounts; False (logged, and in ``status``) when the stream cannot run."""
        try:
            stack = load_rtsp_stack()
            self.encoder = choose_encoder(stack, self.config)
            paths = [LIVE, BOXES] if self.config.boxes else [LIVE]
            feeds = [MountFeed(path, stack.Gst) for path in paths]
            server = RtspServer(stack, self.config, self.encoder, feeds)
            server.start()
        except StreamUnavailable as exc:
            self.error = str(exc)
            log.error("stream: not available, detection and alarms go on without it: %s",
                      self.error)
            return False
        self._server = server
        self._thread.start()
        login = (f"{self.config.auth} login as {self.config.user!r}" if self.config.credentials
                 else "NO LOGIN: anyone who reaches the port may watch")
        log.info("stream: rtsp on %s:%d, mounts %s, %s %dx%d@%d %d kbit/s, %s",
                 self.config.bind, self._server.port, " ".join(paths), self.encoder.name,
                 self.config.width, self.config.height, self.config.fps,
                 self.config.bitrate_kbps, login)
        return True

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        return self._server.port if self._server is not None else self.config.port

    def status(self) -> dict[str, Any]:
        """For the status page: where to connect (never the password) and who watches."""
        server = self._server
        return {
            "enabled": True,
            "running": self.running,
            "port": self.port,
            "bind": self.config.bind,
            "mounts": [f.path for f in server.feeds] if server else [],
            "encoding": [f.path for f in server.feeds if f.active] if server else [],
            "user": self.config.user,
            "auth": self.config.auth if self.config.credentials else "none",
            "encoder": self.encoder.name if self.encoder else "",
            "clients": server.clients if server else 0,
            "clients_served": server.clients_served if server else 0,
            "size": f"{self.config.width}x{self.config.height}",
            "fps": self.config.fps,
            "error": self.error,
        }

    # ------------------------------------------------------------------ feeding

    def _run(self) -> None:
        lower_thread_priority()
        assert self._server is not None
        feeds = {f.path: f for f in self._server.feeds}
        # Frames beyond the stream's rate would only be dropped again by videorate.
        gate = FpsGate(self.config.fps)
        reniced = 0.0
        while not self._stop.is_set():
            wanted = any(f.active for f in feeds.values())
            if wanted and time.monotonic() - reniced >= RENICE_S:
                nice_streaming_threads()
                reniced = time.monotonic()
            outcome = self._next_outcome(wanted)
            if outcome is None or not gate.admit(outcome.frame.t):
                continue
            try:
                self._push(outcome, feeds)
            except Exception:  # a bad frame must not end the stream
                log.exception("stream: cannot send a frame")
        self._unsubscribe()

    def _next_outcome(self, wanted: bool) -> FrameOutcome | None:
        """The newest processed frame while a mount has a client (subscribing to the bus for
        as long as that lasts), else None after a short wait."""
        if not wanted:
            self._unsubscribe()
            self._stop.wait(WAIT_S)
            return None
        if self._sub is None:
            self._sub = self._bus.subscribe("rtsp-stream", {"frame"}, maxsize=2)
        event = self._sub.get(timeout=WAIT_S)
        if event is None:
            return None
        while (newer := self._sub.get(timeout=0)) is not None:
            event = newer
        return event.payload

    def _unsubscribe(self) -> None:
        if self._sub is not None:
            self._sub.close()
            self._sub = None

    def _push(self, outcome: FrameOutcome, feeds: dict[str, MountFeed]) -> None:
        image = outcome.frame.image
        if outcome.state == PipelineState.OUTSIDE_SCHEDULE:
            image = np.zeros_like(image)
        feeds[LIVE].push(image)
        boxes = feeds.get(BOXES)
        if boxes is not None and boxes.active:
            boxes.push(draw_faces(image.copy(), outcome.faces))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(WAIT_S * 8)
        if self._server is not None:
            self._server.stop()
        log.info("stream: stopped")
