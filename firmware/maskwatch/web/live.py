"""The live image for the page (F19): every processed frame drawn and JPEG-encoded ONCE,
shared by all viewers; nothing drawn or encoded while nobody watches.

``FrameHub`` subscribes to the bus's "frame" events only while at least one viewer holds it
(``acquire``/``release``): with no viewer the processing loop's ``publish`` finds no
subscriber and the frames go nowhere. Its own thread takes the newest outcome (older ones
waiting in its queue are skipped), draws the boxes on a copy, scales it to
``[web] stream_width`` and encodes it with simplejpeg; every viewer's MJPEG generator then
sends the same bytes. A viewer that is slow only misses frames, it never holds up another
viewer or the detection; one whose socket takes nothing for ``[web] send_timeout_s`` is
disconnected by the server (maskwatch.web.server), which closes its generator and so gives
its viewer slot and its server thread back.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import simplejpeg

log = logging.getLogger(__name__)

# RGB box colours by class (F19): red no mask, blue mask, yellow incorrect, grey unknown.
COLOURS: dict[str, tuple[int, int, int]] = {
    "no_mask": (255, 0, 0),
    "mask": (0, 0, 255),
    "incorrect": (255, 215, 0),
    "unknown": (160, 160, 160),
}
LABEL_TEXT = {"no_mask": "NO MASK", "mask": "mask", "incorrect": "INCORRECT",
              "unknown": "unknown"}
ALARM_SHOW_S = 5.0  # the page shows "ALARM" this long after an alarm
BOUNDARY = b"maskwatchframe"


WEB_NICE = 5  # the web threads yield the CPU to detection when both want it


def lower_thread_priority(nice: int = WEB_NICE) -> None:
    """Make the calling thread "nicer" (Linux: per-thread nice value), so drawing, encoding
    and serving the live view give way to the processing loop on a busy CPU."""
    if threading.current_thread() is threading.main_thread():
        return  # never the process's main thread (in-process tests), only server threads
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except (AttributeError, OSError):  # not Linux, or not allowed: keep the priority
        pass


def _label(face: Any) -> tuple[str, float]:
    c = face.classification
    label = getattr(c.label, "value", str(c.label))
    return label, float(c.confidence)


def draw_faces(image: np.ndarray, faces: list[Any], scale: float = 1.0) -> np.ndarray:
    """Boxes and labels drawn in place on ``image`` (RGB); boxes are in pixels of the
    original frame, ``scale`` maps them onto ``image``."""
    h, w = image.shape[:2]
    thick = max(3, int(round(w / 320)))
    font_scale = max(0.5, w / 1600)
    for face in faces:
        label, conf = _label(face)
        colour = COLOURS.get(label, COLOURS["unknown"])
        x1, y1, x2, y2 = (int(round(v * scale)) for v in face.face.box)
        x1, y1 = max(0, min(w - 1, x1)), max(0, min(h - 1, y1))
        x2, y2 = max(0, min(w - 1, x2)), max(0, min(h - 1, y2))
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thick, cv2.LINE_8)
        text = f"{LABEL_TEXT.get(label, label)} {conf * 100:.0f}%"
        if getattr(face, "track_id", None) is not None:
            text += f" #{face.track_id}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        ty = y1 - thick if y1 - th - base - thick > 0 else min(h - 1, y2 + th + base + thick)
        cv2.rectangle(image, (x1 - thick // 2, ty - th - base), (x1 + tw + 4, ty + base // 2),
                      colour, -1)
        ink = (0, 0, 0) if label in ("incorrect", "unknown") else (255, 255, 255)
        cv2.putText(image, text, (x1 + 2, ty - base // 2), cv2.FONT_HERSHEY_SIMPLEX,
                    font_scale, ink, 1, cv2.LINE_AA)
    return image


@dataclass
class LiveFrame:
    seq: int
    jpeg: bytes
    width: int
    height: int
    encoded_at: float  # monotonic


@dataclass
class LiveState:
    """What the page shows next to the image; refreshed with every frame the hub sees."""

    state: str = "unknown"  # active, ir_mode, outside_schedule (pipeline.PipelineState)
    faces: list[dict[str, Any]] = field(default_factory=list)
    frame_width: int = 0
    frame_height: int = 0
    last_alarm_mono: float | None = None
    last_alarm_label: str = ""
    updated_mono: float | None = None


class Viewer:
    """One viewer's hold on the hub; ``release`` may be called any number of times (by the
    stream's end and by the server closing the response) and counts once."""

    def __init__(self, hub: FrameHub) -> None:
        self._hub: FrameHub | None = hub
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            hub, self._hub = self._hub, None
        if hub is not None:
            hub._release()


class FrameHub:
    def __init__(self, bus: Any, *, quality: int = 75, width: int = 960, max_fps: float = 15.0,
                 max_viewers: int = 4) -> None:
        self.bus = bus
        self.quality = quality
        self.width = width
        self.min_interval = 1.0 / max_fps
        self.max_viewers = max_viewers
        self._cond = threading.Condition()
        self._viewers = 0
        self._sub: Any = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._frame: LiveFrame | None = None
        self._live = LiveState()
        self._seq = 0  # over the hub's life, so a viewer never sees the count go back
        self.frames_encoded = 0
        self.encode_seconds = 0.0
        self.streams_served = 0
        self._streams: dict[str, float] = {}  # stream id -> when it last sent a frame

    # ------------------------------------------------------------------ viewers

    @property
    def viewers(self) -> int:
        with self._cond:
            return self._viewers

    @property
    def subscribed(self) -> bool:
        with self._cond:
            return self._sub is not None

    def acquire(self, stream: bool = True) -> Viewer | None:
        """Count a viewer until its ``release()``; None when the hub is closed or, for a
        ``stream``, max_viewers are already watching."""
        with self._cond:
            if self._closed:
                return None
            if stream and self._viewers >= self.max_viewers:
                return None
            self._viewers += 1
            if stream:
                self.streams_served += 1
            if self._sub is None:
                self._sub = self.bus.subscribe("web-live", {"frame"}, maxsize=4)
                self._thread = threading.Thread(
                    target=self._run, args=(self._sub,), name="web-live", daemon=True
                )
                self._thread.start()
            return Viewer(self)

    def _release(self) -> None:
        with self._cond:
            self._viewers = max(0, self._viewers - 1)
            if self._viewers == 0 and self._sub is not None:
                self._sub.close()  # the publisher skips us from now on
                self._sub = None
                # An old picture must not be shown as live to the next viewer.
                self._frame = None
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            if self._sub is not None:
                self._sub.close()
                self._sub = None
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ frames

    def wait_frame(self, after_seq: int, timeout: float) -> LiveFrame | None:
        """The newest frame with a sequence number above ``after_seq``, waiting up to
        ``timeout`` s; None on timeout or when the hub closed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                frame = self._frame
                if frame is not None and frame.seq > after_seq:
                    return frame
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return None

    def stream_sent(self, stream_id: str, done: bool = False) -> None:
        with self._cond:
            if done:
                self._streams.pop(stream_id, None)
            else:
                self._streams[stream_id] = time.monotonic()

    def stream_age(self, stream_id: str) -> float | None:
        """Seconds since stream ``stream_id`` last sent a frame; None if it is not open or
        sent none yet. The page reconnects its image when this says the stream is gone."""
        with self._cond:
            sent = self._streams.get(stream_id)
        return None if sent is None else round(time.monotonic() - sent, 2)

    def live_state(self) -> dict[str, Any]:
        now = time.monotonic()
        with self._cond:
            s = self._live
            frame = self._frame
            alarm_age = None if s.last_alarm_mono is None else now - s.last_alarm_mono
            return {
                "state": s.state,
                "faces": list(s.faces),
                "frame_width": s.frame_width,
                "frame_height": s.frame_height,
                "frame_seq": frame.seq if frame else 0,
                "frame_age_s": None if frame is None else round(now - frame.encoded_at, 2),
                "alarm": alarm_age is not None and alarm_age < ALARM_SHOW_S,
                "alarm_label": s.last_alarm_label,
                "alarm_age_s": None if alarm_age is None else round(alarm_age, 1),
                "viewers": self._viewers,
                "subscribed": self._sub is not None,
            }

    def _run(self, sub: Any) -> None:
        lower_thread_priority()
        last_encode = 0.0
        while True:
            with self._cond:
                if self._closed or self._sub is not sub:
                    return
            event = sub.get(timeout=0.25)
            if event is None:
                continue
            while True:  # skip to the newest waiting outcome
                newer = sub.get(timeout=0)
                if newer is None:
                    break
                event = newer
            outcome = event.payload
            try:
                with self._cond:
                    self._seq += 1
                    seq = self._seq
                last_encode = self._handle(outcome, seq, last_encode)
            except Exception:  # a bad frame must not end the live view
                log.exception("live view: cannot draw frame")

    def _handle(self, outcome: Any, seq: int, last_encode: float) -> float:
        state = getattr(outcome.state, "value", str(outcome.state))
        frame = outcome.frame
        now = time.monotonic()
        faces = []
        for f in outcome.faces:
            label, conf = _label(f)
            faces.append({"label": label, "confidence": round(conf, 3),
                          "track_id": f.track_id, "box": [round(float(v), 1) for v in f.face.box]})
        with self._cond:
            live = self._live
            live.state, live.faces, live.updated_mono = state, faces, now
            live.frame_width, live.frame_height = frame.width, frame.height
            if outcome.alarms:
                live.last_alarm_mono = now
                alarm = outcome.alarms[-1]
                live.last_alarm_label = getattr(alarm.label, "value", str(alarm.label))
            if state == "outside_schedule":
                # F8/F19: no picture outside the operation schedule.
                self._frame = None
                self._cond.notify_all()
                return last_encode
        if now - last_encode < self.min_interval * 0.9:
            return last_encode
        started = time.perf_counter()
        image = frame.image
        scale = 1.0
        if self.width and image.shape[1] > self.width:
            scale = self.width / image.shape[1]
            size = (self.width, max(2, int(round(image.shape[0] * scale))))
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)  # 5x cheaper than AREA
        else:
            image = image.copy()  # the frame is shared (snapshots): draw on a copy
        draw_faces(image, outcome.faces, scale)
        jpeg = simplejpeg.encode_jpeg(
            np.ascontiguousarray(image), quality=self.quality, colorspace="RGB",
            colorsubsampling="420", fastdct=True,
        )
        with self._cond:
            self.encode_seconds += time.perf_counter() - started
            self.frames_encoded += 1
            self._frame = LiveFrame(seq, jpeg, image.shape[1], image.shape[0], now)
            self._cond.notify_all()
        return now


def mjpeg_stream(hub: FrameHub, viewer: Viewer, stream_id: str = "",
                 idle_timeout_s: float = 15.0):
    """The multipart/x-mixed-replace body: one part per new frame. Ends after
    ``idle_timeout_s`` without a frame (outside the schedule, camera down) so a left page
    does not hold a server thread; the page reconnects by itself when frames come back.
    ``viewer`` is released at the end (the route also releases it when the server closes
    the response, which covers a body that was never started, e.g. HEAD)."""
    last_seq = 0
    idle_since = time.monotonic()
    try:
        while not hub.closed:
            frame = hub.wait_frame(last_seq, timeout=1.0)
            if frame is None:
                if time.monotonic() - idle_since > idle_timeout_s:
                    return
                continue
            last_seq = frame.seq
            idle_since = time.monotonic()
            if stream_id:
                hub.stream_sent(stream_id)
            yield (b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                   + str(len(frame.jpeg)).encode() + b"\r\n\r\n" + frame.jpeg + b"\r\n")
    finally:
        if stream_id:
            hub.stream_sent(stream_id, done=True)
        viewer.release()
