"""The device's web page (SPEC F19-F22): live view, events, status, health and metrics,
behind a login (F21). ``create_app`` builds the Flask app; ``WebServer`` serves it with
waitress in a thread of the running service."""

from maskwatch.web.app import create_app
from maskwatch.web.auth import run_set_password
from maskwatch.web.live import draw_faces, lower_thread_priority
from maskwatch.web.server import WebServer, WebServerError

__all__ = [
    "WebServer", "WebServerError", "create_app", "draw_faces", "lower_thread_priority",
    "run_set_password",
]
