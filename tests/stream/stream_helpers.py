"""What the stream tests share: skips with a reason when the RTSP stack or the client is not
installed, and gst-discoverer-1.0 (GStreamer's own media prober) as the real RTSP client."""

from __future__ import annotations

import os
import shutil
import subprocess

import cv2
import numpy as np
import pytest

DISCOVER_TIMEOUT_S = 20


def require_stream_stack() -> None:
    """Skip unless PyGObject, the RTSP server typelib, x264enc and gst-discoverer exist (the
    test setup installs them: scripts/setup.sh test)."""
    from maskwatch.stream import StreamUnavailable
    from maskwatch.stream.gst_stack import load_rtsp_stack

    try:
        stack = load_rtsp_stack()
    except StreamUnavailable as exc:
        pytest.skip(f"RTSP stack missing: {exc}")
    if stack.Gst.ElementFactory.find("x264enc") is None:
        pytest.skip("x264enc missing: apt install gstreamer1.0-plugins-ugly")
    if shutil.which("gst-discoverer-1.0") is None:
        pytest.skip("gst-discoverer-1.0 missing: apt install gstreamer1.0-plugins-base-apps")


def discover(url: str) -> str:
    """gst-discoverer-1.0's report on ``url`` (it plays the stream until it knows the
    format, so a report with the size means real H.264 frames arrived). GStreamer's
    warnings are part of it, so a failed assertion shows why."""
    result = subprocess.run(
        ["gst-discoverer-1.0", "-t", str(DISCOVER_TIMEOUT_S), url],
        capture_output=True, text=True, timeout=DISCOVER_TIMEOUT_S + 10,
        env=dict(os.environ, GST_DEBUG="*:2"),
    )
    return result.stdout + result.stderr


def video_size(report: str) -> tuple[int, int] | None:
    """(width, height) of the H.264 video a discoverer report describes, else None."""
    if "H.264" not in report:
        return None
    fields = dict(
        line.strip().split(": ", 1) for line in report.splitlines() if ": " in line
    )
    return int(fields["Width"]), int(fields["Height"])


def read_frames(url: str, frames: int) -> list[np.ndarray]:
    """``frames`` decoded frames (RGB) from ``url``, read with OpenCV's FFmpeg RTSP client."""
    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;tcp"
    capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    try:
        assert capture.isOpened(), f"OpenCV cannot open {url}"
        images = []
        for _ in range(frames):
            ok, bgr = capture.read()
            assert ok, f"no frame from {url}"
            images.append(bgr[:, :, ::-1])
        return images
    finally:
        capture.release()


def alarm_box_pixels(url: str, frames: int = 30) -> int:
    """The most pixels of an alarm box's colour (the page's red no-mask or yellow incorrect
    box: strong red, no blue) in any of ``frames`` frames from ``url``: a few hundred or more
    where such a box is drawn, none on the camera picture itself."""
    most = 0
    for image in read_frames(url, frames):
        r, g, b = (image[:, :, i].astype(np.int16) for i in range(3))
        most = max(most, int(((r > 180) & (b < 70) & ((g < 70) | (g > 170))).sum()))
    return most
