"""GStreamer and its RTSP server, imported only when the stream is enabled.

The stream is the one part of maskwatch that needs PyGObject and GStreamer's typelibs; a
device without them still detects and alarms, so the import happens here, on demand, and a
missing piece becomes one message that names the packages to install.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from types import ModuleType

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "install the GStreamer RTSP server: 'sudo scripts/install.sh' does it; by hand, on "
    "Raspberry Pi OS/Debian/Ubuntu: sudo apt install python3-gi gir1.2-gst-rtsp-server-1.0 "
    "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad "
    "gstreamer1.0-plugins-ugly, and in a venv without system packages also "
    "pip install 'maskwatch[stream]'"
)

_lock = threading.Lock()
_stack: RtspStack | None = None


class StreamUnavailable(RuntimeError):
    """The stream cannot run on this device as configured; the text says what to do."""


@dataclass(frozen=True)
class RtspStack:
    """The PyGObject modules the stream uses, GStreamer initialised."""

    Gst: ModuleType
    GstRtsp: ModuleType
    GstRtspServer: ModuleType
    GLib: ModuleType


def load_rtsp_stack() -> RtspStack:
    """The modules, imported and initialised once per process; StreamUnavailable when the
    Python bindings or a typelib is missing."""
    global _stack
    with _lock:
        if _stack is None:
            _stack = _import_stack()
        return _stack


def _import_stack() -> RtspStack:
    try:
        import gi
    except ImportError:
        raise StreamUnavailable(f"PyGObject (module gi) is missing: {INSTALL_HINT}") from None
    try:
        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtsp", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtsp, GstRtspServer
    except (ImportError, ValueError) as exc:
        raise StreamUnavailable(f"{exc}: {INSTALL_HINT}") from None
    Gst.init(None)
    log.info("stream: %s", Gst.version_string())
    return RtspStack(Gst=Gst, GstRtsp=GstRtsp, GstRtspServer=GstRtspServer, GLib=GLib)
