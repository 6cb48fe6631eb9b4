"""The web page's routes (F19-F22) through Flask's test client, on a small in-process stand-in
for the service (real config, status, event bus and event log; no camera, no models)."""

from __future__ import annotations

import base64
import http.cookiejar
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import numpy as np
import pytest
import simplejpeg
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from maskwatch.config import Config, ConfigError, StorageConfig, WebConfig, parse_config
from maskwatch.decision.pipeline import FrameOutcome, PipelineState
from maskwatch.events.bus import EventBus
from maskwatch.events.compliance import ComplianceStats
from maskwatch.events.store import EventStore
from maskwatch.service.status import ServiceStatus
from maskwatch.types import (
    Alarm,
    AlarmEvent,
    Classification,
    Face,
    FaceResult,
    Frame,
    Label,
)
from maskwatch.web import WebServer, WebServerError, create_app
from maskwatch.web.auth import PASSWORD_FILE, SECRET_FILE, LoginGate, set_password
from maskwatch.web.live import FrameHub, mjpeg_stream

PASSWORD = "correct horse battery"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def _image(w: int = 320, h: int = 180, value: int = 90) -> np.ndarray:
    image = np.full((h, w, 3), value, np.uint8)
    image[40:120, 100:180] = (200, 160, 140)
    return image


def _face(label: str, box=(100.0, 40.0, 180.0, 120.0), track: int = 1) -> FaceResult:
    return FaceResult(
        face=Face(box=box, score=0.9, keypoints=np.zeros((6, 2), np.float32)),
        classification=Classification(Label(label), 0.93), track_id=track,
    )


def _outcome(index: int, state: PipelineState = PipelineState.ACTIVE,
             faces: list[FaceResult] | None = None) -> FrameOutcome:
    frame = Frame(_image(value=60 + index % 100), t=index / 15, index=index)
    return FrameOutcome(frame, state, faces if faces is not None else [_face("no_mask")], [])


class FakeService:
    """The narrow interface create_app uses: config, status, bus, store, dispatcher, stats
    (the statistics' clock stands at T0 + 30 min)."""

    def __init__(self, state_dir: Path, web: WebConfig | None = None) -> None:
        self.config = Config(storage=StorageConfig(state_dir=str(state_dir)),
                             web=web or WebConfig())
        # Status time stands still just after 2 s of frames at 12.5 fps: fps and frame
        # age are worked out when a snapshot is taken, so the fake service stays healthy.
        self.now = 0.0
        self.status = ServiceStatus(clock=lambda: self.now)
        for n in range(26):
            self.now = n * 0.08
            self.status.loop_turned()
            self.status.frame_processed(2)
        self.status.update(
            device="door-1", source="demo", camera_up=True, state="active", fps_cap=15.0,
            detector_model="blazeface.tflite", classifier_model="mask.tflite",
            accelerator="cpu", alarms=3,
        )
        self.bus = EventBus()
        self.store = EventStore(self.config, ["tcp-1"])
        self.stats = ComplianceStats(self.config, self.store.path,
                                     clock=lambda: T0.timestamp() + 1800)
        self.dispatcher = SimpleNamespace(health=lambda: {
            "tcp-1": {"state": "retrying", "queued": 1, "delivered": 7, "dropped": 0,
                      "failed_attempts": 2, "last_success_utc": None,
                      "last_error": "connection refused", "last_error_utc": None},
        })

    def add_event(self, event_id: str, label: Label, minutes: int) -> None:
        alarm = Alarm(event_id=event_id, t=1.0, frame_index=1, track_id=4, label=label,
                      confidence=0.91, box=(100.0, 40.0, 180.0, 120.0))
        frame = Frame(_image(640, 360), t=1.0, index=1)
        self.store.add(AlarmEvent(alarm, frame, "door-1", T0 + timedelta(minutes=minutes)))


@pytest.fixture
def service(tmp_path: Path) -> FakeService:
    set_password(tmp_path, PASSWORD)
    svc = FakeService(tmp_path)
    svc.add_event("ev-a", Label.NO_MASK, 0)
    svc.add_event("ev-b", Label.INCORRECT, 10)
    svc.add_event("ev-c", Label.NO_MASK, 20)
    yield svc
    svc.stats.close()
    svc.store.close()


@pytest.fixture
def app(service: FakeService):
    app = create_app(service)
    yield app
    app.extensions["maskwatch"]["hub"].close()


def _csrf(client) -> str:
    html = client.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _login(client, password: str = PASSWORD):
    return client.post("/login", data={"csrf_token": _csrf(client), "password": password})


@pytest.fixture
def user(app):
    client = app.test_client()
    assert _login(client).status_code == 303
    return client


@contextmanager
def logged_in(service) -> Iterator[FlaskClient]:
    """A test client of a new app on ``service``, logged in; the app's frame hub is closed
    after."""
    app = create_app(service)
    client = app.test_client()
    assert _login(client).status_code == 303
    try:
        yield client
    finally:
        app.extensions["maskwatch"]["hub"].close()


def _get_routes(app) -> list[str]:
    """Every GET route of the app, with a real event id in place of <event_id>."""
    routes = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods:
            continue
        path = rule.rule.replace("<event_id>", "ev-a").replace("<path:filename>", "style.css")
        routes.append(path)
    return sorted(set(routes))


# ---------------------------------------------------------------------------- access


def test_every_route_needs_a_login_except_healthz(app) -> None:
    client = app.test_client()
    routes = _get_routes(app)
    assert {"/live", "/events", "/status", "/api/events", "/api/events/ev-a",
            "/api/events/ev-a/snapshot.jpg", "/api/status", "/metrics", "/healthz",
            "/stream.mjpg", "/static/style.css"} <= set(routes)
    for path in routes:
        response = client.get(path)
        if path == "/healthz":
            assert response.status_code == 200 and response.json["status"] == "ok"
        elif path == "/login":
            assert response.status_code == 200
        else:
            assert response.status_code in (302, 401), path
            if response.status_code == 302:
                assert response.headers["Location"].startswith("/login?next=")
            else:
                assert "login required" in response.json["error"]
    # Nothing secret leaks from an unknown path either.
    assert client.get("/api/nothing").status_code == 401
    assert client.get("/nothing").status_code == 302


def test_login_sets_a_strict_httponly_session_and_logout_ends_it(app) -> None:
    client = app.test_client()
    response = _login(client)
    assert response.status_code == 303 and response.headers["Location"] == "/live"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    assert client.get("/live").status_code == 200
    assert client.get("/api/status").status_code == 200
    html = client.get("/live").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/api/status").status_code == 401


def test_login_redirects_only_within_the_site(app) -> None:
    client = app.test_client()
    for target, expected in [("/events", "/events"), ("//evil.example/x", "/live"),
                             ("https://evil.example/", "/live"), ("/\\evil", "/live")]:
        client = app.test_client()
        response = client.post("/login", data={"csrf_token": _csrf(client),
                                                "password": PASSWORD, "next": target})
        assert response.headers["Location"] == expected, target


def test_wrong_password_and_no_password_set(app, service, tmp_path: Path) -> None:
    client = app.test_client()
    response = _login(client, "wrong password")
    assert response.status_code == 401 and "Wrong password" in response.get_data(as_text=True)
    (tmp_path / PASSWORD_FILE).unlink()
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    assert "maskwatch set-password" in page
    assert _login(client, PASSWORD).status_code == 401


def test_a_new_password_ends_existing_sessions(user, tmp_path: Path) -> None:
    assert user.get("/api/status").status_code == 200
    time.sleep(0.01)
    set_password(tmp_path, "another password")
    assert user.get("/api/status").status_code == 401


def test_password_is_stored_as_a_salted_hash(tmp_path: Path) -> None:
    first = set_password(tmp_path / "a", PASSWORD).read_text()
    second = set_password(tmp_path / "b", PASSWORD).read_text()
    assert PASSWORD not in first and first.startswith("scrypt:")
    assert first != second  # salted
    assert oct((tmp_path / "a" / PASSWORD_FILE).stat().st_mode & 0o777) == "0o600"


def test_secret_key_is_made_once_and_kept(tmp_path: Path, service) -> None:
    create_app(service)
    key = (tmp_path / SECRET_FILE).read_text()
    create_app(service)
    assert (tmp_path / SECRET_FILE).read_text() == key
    assert oct((tmp_path / SECRET_FILE).stat().st_mode & 0o777) == "0o600"


def test_csrf_token_required_on_every_post(app) -> None:
    client = app.test_client()
    client.get("/login")
    for data in ({"password": PASSWORD}, {"password": PASSWORD, "csrf_token": "forged"}):
        response = client.post("/login", data=data)
        assert response.status_code in (400, 403)
        assert "CSRF" in response.get_data(as_text=True)
    assert client.get("/api/status").status_code == 401  # not logged in by either
    logged = app.test_client()
    _login(logged)
    assert logged.post("/logout").status_code in (400, 403)
    assert logged.get("/api/status").status_code == 200  # still logged in
    # A token from another session is no good either.
    other = app.test_client()
    token = _csrf(other)
    assert logged.post("/logout", data={"csrf_token": token}).status_code in (400, 403)


def test_login_attempts_are_rate_limited_per_client(app) -> None:
    client = app.test_client()
    for _ in range(5):
        assert _login(client, "guess").status_code == 401
    response = _login(client, PASSWORD)  # even the right password now
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    # Basic auth from the same address is limited too.
    creds = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    assert client.get("/metrics", headers={"Authorization": f"Basic {creds}"}).status_code == 429
    # Another address is not affected.
    other = app.test_client()
    response = other.post("/login", environ_base={"REMOTE_ADDR": "10.0.0.9"}, data={
        "csrf_token": _csrf(other), "password": PASSWORD})
    assert response.status_code == 303


def test_limiter_forgets_after_a_minute() -> None:
    now = [0.0]
    gate = LoginGate(5, 100, clock=lambda: now[0])
    for _ in range(5):
        assert gate.check("a", lambda: False) is False
    assert gate.check("a", lambda: True).retry_after == 60
    now[0] = 30.0
    assert 29 <= gate.check("a", lambda: True).retry_after <= 30
    now[0] = 60.0
    assert gate.check("a", lambda: True) is True
    assert gate.check("b", lambda: False) is False
    assert gate.check("b", lambda: True) is True  # a success forgets the failures
    for _ in range(5):
        assert gate.check("b", lambda: False) is False


def test_basic_auth_for_scripts_and_prometheus(app) -> None:
    client = app.test_client()
    good = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    bad = base64.b64encode(b"admin:nope").decode()
    assert client.get("/metrics", headers={"Authorization": f"Basic {good}"}).status_code == 200
    response = client.get("/metrics", headers={"Authorization": f"Basic {bad}"})
    assert response.status_code == 401 and "Basic" in response.headers["WWW-Authenticate"]
    assert client.get("/metrics", headers={"Authorization": "Basic %%%"}).status_code == 401
    # Basic auth is for the API, not a way into the pages.
    assert client.get("/live", headers={"Authorization": f"Basic {good}"}).status_code == 302


def test_security_headers(user) -> None:
    response = user.get("/live")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    # No asset from elsewhere: the device has no internet (no CDN).
    for page in ("/live", "/events", "/status", "/login"):
        html = user.get(page).get_data(as_text=True)
        assert not re.search(r'(src|href)="(https?:)?//', html), page


# ---------------------------------------------------------------------------- bad input


BAD_QUERIES = {
    "/api/events": ["since=yesterday", "until=2024-13-45T99:00", "since=-5", "limit=0",
                    "limit=501", "limit=ten", "offset=-1", "offset=1e3", "label=hat",
                    "since=2024-05-02&until=2024-05-01", "bogus=1", "limit=1&limit=2",
                    "since=99999999999999999999", "until=" + "9" * 5000, "since=%00"],
    "/api/events/ev-a": ["x=1"],
    "/api/events/ev-a/snapshot.jpg": ["size=big"],
    "/api/events/ev-a/thumb.jpg": ["w=10"],
    "/api/status": ["verbose=1"],
    "/api/live": ["c=../../etc", "c=" + "a" * 40, "x=1"],
    "/stream.mjpg": ["c=<script>", "fps=100"],
    "/live.jpg": ["q=1"],
    "/metrics": ["name[]=x"],
    "/healthz": ["deep=1"],
}


def test_every_route_answers_bad_query_parameters_with_a_4xx_message(app, user) -> None:
    routes = _get_routes(app)
    tested = set()
    for path in routes:
        for query in BAD_QUERIES.get(path, []):
            response = user.get(f"{path}?{query}")
            assert 400 <= response.status_code < 500, (path, query, response.status_code)
            assert response.json["error"], (path, query)
            tested.add(path)
        # Pages ignore their query string; none of them may fail on junk.
        response = user.get(f"{path}?%ff=%00&next=//x&since=nonsense")
        assert response.status_code < 500, (path, response.status_code)
    assert set(BAD_QUERIES) <= tested
    # Bad path parts: ids that cannot be event ids are 400, unknown ones 404.
    for bad in ("a.b", "x" * 65, "%00", "..%2f..%2fetc"):
        for suffix in ("", "/snapshot.jpg", "/thumb.jpg"):
            response = user.get(f"/api/events/{bad}{suffix}")
            assert response.status_code in (400, 404), (bad, suffix)
    for suffix in ("", "/snapshot.jpg", "/thumb.jpg"):
        response = user.get(f"/api/events/unknown{suffix}")
        assert response.status_code == 404 and response.json["error"]
    # Wrong methods and oversized bodies are 4xx too.
    assert user.post("/api/status", headers={"X-CSRF-Token": "x"}).status_code in (400, 405)
    assert user.delete("/api/events/ev-a").status_code in (400, 405)


# ---------------------------------------------------------------------------- events


def test_events_api_filters_and_pages(user) -> None:
    data = user.get("/api/events").json
    assert [e["event_id"] for e in data["events"]] == ["ev-c", "ev-b", "ev-a"]
    assert data["total"] == 3
    first = data["events"][0]
    assert first["label"] == "no_mask" and first["confidence"] == pytest.approx(0.91)
    assert first["snapshot_url"] == "/api/events/ev-c/snapshot.jpg"
    assert "snapshot_path" not in first  # no file-system paths to the browser
    assert [e["event_id"] for e in user.get("/api/events?label=no_mask").json["events"]] \
        == ["ev-c", "ev-a"]
    since = quote((T0 + timedelta(minutes=5)).isoformat())
    ids = [e["event_id"] for e in user.get(f"/api/events?since={since}").json["events"]]
    assert ids == ["ev-c", "ev-b"]
    until_ms = int((T0 + timedelta(minutes=15)).timestamp() * 1000)
    ids = [e["event_id"] for e in user.get(f"/api/events?until={until_ms}").json["events"]]
    assert ids == ["ev-b", "ev-a"]
    # "Z", an offset, and no offset (UTC) all name the same moment.
    for text in ("2024-05-01T12:10:00Z", "2024-05-01T14:10:00%2B02:00", "2024-05-01T12:10:00"):
        events = user.get(f"/api/events?since={text}").json["events"]
        assert [e["event_id"] for e in events] == ["ev-c", "ev-b"], text
    page = user.get("/api/events?limit=1&offset=1").json
    assert [e["event_id"] for e in page["events"]] == ["ev-b"] and page["total"] == 3
    one = user.get("/api/events/ev-b").json
    assert one["label"] == "incorrect" and one["deliveries"][0]["destination"] == "tcp-1"


def test_snapshot_and_thumbnail_are_jpegs(user) -> None:
    response = user.get("/api/events/ev-a/snapshot.jpg")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    full = simplejpeg.decode_jpeg(response.data)
    assert full.shape[:2] == (360, 640)
    thumb = user.get("/api/events/ev-a/thumb.jpg")
    assert thumb.status_code == 200
    small = simplejpeg.decode_jpeg(thumb.data)
    assert small.shape[1] <= 240 and len(thumb.data) < len(response.data)


# ---------------------------------------------------------------------------- status, metrics


def test_status_has_snapshot_output_health_version_and_uptime(user) -> None:
    data = user.get("/api/status").json
    assert data["device"] == "door-1" and data["camera_up"] is True
    assert data["outputs"]["tcp-1"]["last_error"] == "connection refused"
    assert data["version"] and data["uptime_s"] >= 0
    assert data["event_log"]["events"] == 3
    assert data["web"]["password_set"] is True


def test_healthz_needs_no_login_and_reports_a_dead_camera(app, service) -> None:
    client = app.test_client()
    assert client.get("/healthz").json["status"] == "ok"
    service.status.update(camera_up=False, camera_error="stream rtsp://cam.lan/x: no such device")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "degraded"
    assert response.json["problems"] == ["camera down, retrying"]
    # nothing more than health without a login: no version, no address, no error text
    assert "version" not in response.json and "cam.lan" not in response.get_data(as_text=True)


def test_metrics_parse_with_prometheus_client(user) -> None:
    text = user.get("/metrics").get_data(as_text=True)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    assert samples[("maskwatch_fps", ())] == 12.5
    assert samples[("maskwatch_faces", ())] == 2
    assert samples[("maskwatch_alarms_total", ())] == 3
    assert samples[("maskwatch_camera_up", ())] == 1
    assert samples[("maskwatch_output_errors_total", (("destination", "tcp-1"),))] == 2
    assert samples[("maskwatch_output_delivered_total", (("destination", "tcp-1"),))] == 7
    assert samples[("maskwatch_state", (("state", "active"),))] == 1
    assert samples[("maskwatch_event_log_events", ())] == 3
    assert families["maskwatch_alarms"].type == "counter"


def test_stream_metrics_only_while_the_stream_is_on(service, user) -> None:
    def samples() -> dict[str, float]:
        text = user.get("/metrics").get_data(as_text=True)
        return {s.name: s.value for f in text_string_to_metric_families(text)
                for s in f.samples if s.name.startswith("maskwatch_stream")}

    assert samples() == {}
    service.status.update(stream={"enabled": True, "running": True, "clients": 2,
                                  "encoding": ["/live"]})
    assert samples() == {"maskwatch_stream_up": 1, "maskwatch_stream_clients": 2,
                         "maskwatch_stream_mounts_encoding": 1}


def test_a_stalled_loop_shows_in_health_and_metrics_and_recovers(app, service, user) -> None:
    """fps and health come from the age of the last processed frame, not the last value the
    loop wrote, so a loop that stops processing is seen at once (and recovers by itself)."""
    service.now += 8.0  # no frame for 8 s; the loop still turns
    service.status.loop_turned()
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["problems"] == ["no frame processed for 8 s"]
    text = user.get("/metrics").get_data(as_text=True)
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["maskwatch_fps"] == 0 and samples["maskwatch_frame_age_seconds"] == 8.0
    service.status.frame_processed(1)
    assert app.test_client().get("/healthz").json["status"] == "ok"


# ---------------------------------------------------------------------------- live view


def test_nothing_is_encoded_while_nobody_watches(app, service) -> None:
    hub: FrameHub = app.extensions["maskwatch"]["hub"]
    assert not service.bus.has_subscribers("frame")
    for i in range(10):
        service.bus.publish("frame", _outcome(i))
    time.sleep(0.3)
    assert hub.frames_encoded == 0 and not hub.subscribed


def test_each_frame_is_encoded_once_for_all_viewers(service) -> None:
    hub = FrameHub(service.bus, max_viewers=4, max_fps=60)
    streams = []
    for _ in range(3):
        viewer = hub.acquire()
        assert viewer is not None
        streams.append(mjpeg_stream(hub, viewer, idle_timeout_s=2))
    assert service.bus.has_subscribers("frame")
    received: list[list[bytes]] = [[], [], []]
    frames = 6

    def read(i: int) -> None:
        for part in streams[i]:
            received[i].append(part)
            if len(received[i]) >= frames:
                break

    readers = [threading.Thread(target=read, args=(i,)) for i in range(3)]
    for thread in readers:
        thread.start()
    for i in range(frames):
        service.bus.publish("frame", _outcome(i))
        time.sleep(0.1)
    for thread in readers:
        thread.join(5)
    assert all(len(r) == frames for r in received)
    assert received[0] == received[1] == received[2]  # the same bytes for every viewer
    assert hub.frames_encoded == frames  # once per frame, not once per viewer
    for stream in streams:
        stream.close()  # the server closes the generator when the client goes
    assert hub.viewers == 0 and not service.bus.has_subscribers("frame")
    hub.close()


def test_boxes_are_drawn_in_the_class_colours(service) -> None:
    hub = FrameHub(service.bus, width=0, quality=95)
    viewer = hub.acquire(stream=False)
    faces = [_face("no_mask", (20.0, 20.0, 120.0, 120.0), 1),
             _face("mask", (180.0, 30.0, 290.0, 140.0), 2)]
    service.bus.publish("frame", _outcome(1, faces=faces))
    frame = hub.wait_frame(0, 3.0)
    viewer.release()
    hub.close()
    assert frame is not None
    image = simplejpeg.decode_jpeg(frame.jpeg).astype(int)
    red = image[70, 18:23]  # left edge of the no_mask box
    blue = image[90, 178:183]  # left edge of the mask box
    assert (red[:, 0] > 200).any() and (red[:, 1] < 60).all()
    assert (blue[:, 2] > 200).any() and (blue[:, 0] < 60).all()


def test_live_stream_route_and_viewer_limit(app, user, service) -> None:
    hub: FrameHub = app.extensions["maskwatch"]["hub"]
    hub.max_viewers = 1
    stop = threading.Event()

    def camera() -> None:  # the processing loop, publishing whether or not anyone listens
        i = 0
        while not stop.is_set():
            service.bus.publish("frame", _outcome(i))
            i += 1
            time.sleep(0.05)

    publisher = threading.Thread(target=camera)
    publisher.start()
    try:
        # The test client reads up to the first part before it returns.
        response = user.get("/stream.mjpg?c=abc", buffered=False)
        assert response.status_code == 200
        assert response.mimetype == "multipart/x-mixed-replace"
        assert hub.viewers == 1
        second = user.get("/stream.mjpg?c=def")
        assert second.status_code == 503 and "too many" in second.json["error"]
        parts = iter(response.response)
        for _ in range(3):
            part = next(parts)
            assert part.startswith(b"--maskwatchframe\r\nContent-Type: image/jpeg")
            assert b"\xff\xd8" in part  # a JPEG follows
        live = user.get("/api/live?c=abc").json
        assert live["state"] == "active" and live["faces"][0]["label"] == "no_mask"
        assert live["stream_age_s"] is not None and live["fps"] == 12.5
        response.close()
        assert hub.viewers == 0 and not service.bus.has_subscribers("frame")
        # A response whose body never starts (HEAD, a client gone at once) frees its place.
        # (A WSGI server closes the body it got, as the test client's close() does.)
        for _ in range(3):
            head = user.head("/stream.mjpg")
            assert head.status_code == 200
            head.close()
            assert hub.viewers == 0
    finally:
        stop.set()
        publisher.join()


def test_outside_schedule_there_is_no_live_image(app, user, service) -> None:
    service.status.update(state="outside_schedule", schedule_active=False)
    response = user.get("/stream.mjpg")
    assert response.status_code == 409 and "schedule" in response.json["error"]
    assert user.get("/live.jpg").status_code == 409
    hub: FrameHub = app.extensions["maskwatch"]["hub"]
    viewer = hub.acquire(stream=False)
    service.bus.publish("frame", _outcome(1, PipelineState.OUTSIDE_SCHEDULE, []))
    assert hub.wait_frame(0, 0.5) is None  # no picture is made for it
    assert hub.live_state()["state"] == "outside_schedule"
    viewer.release()
    viewer.release()  # counts once
    assert hub.viewers == 0
    assert user.get("/api/live").json["state"] == "outside_schedule"


def test_ir_mode_is_reported(app, user, service) -> None:
    service.status.update(state="ir_mode", ir_mode=True)
    data = user.get("/api/live").json
    assert data["state"] == "ir_mode" and data["ir_mode"] is True
    page = user.get("/static/live.js").get_data(as_text=True)
    assert "IR mode — detection paused" in page


# ---------------------------------------------------------------------------- config, CLI


def test_web_config_is_validated() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"web": {"bind": "example.com", "port": 70000}})
    text = "; ".join(err.value.problems)
    assert "web.bind" in text and "IP address" in text and "web.port" in text
    with pytest.raises(ConfigError) as err:
        parse_config({"web": {"tls_cert": "/nonexistent.pem"}})
    assert "tls_key" in "; ".join(err.value.problems)
    assert parse_config({"web": {"bind": "127.0.0.1", "port": 0}}).web.port == 0


def test_set_password_command(tmp_path: Path) -> None:
    config = tmp_path / "maskwatch.toml"
    config.write_text(f'[storage]\nstate_dir = "{tmp_path / "state"}"\n')
    env = dict(os.environ)
    run = lambda text: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "maskwatch", "set-password", "--config", str(config)],
        input=text, capture_output=True, text=True, timeout=60, env=env)
    short = run("short\n")
    assert short.returncode == 2 and "at least 8" in short.stderr
    done = run(PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    stored = (tmp_path / "state" / PASSWORD_FILE).read_text()
    assert PASSWORD not in stored and stored.startswith("scrypt:")


# ---------------------------------------------------------------------------- the server


def _fetch(url: str, context: ssl.SSLContext | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_web_server_serves_and_stops(tmp_path: Path) -> None:
    set_password(tmp_path, PASSWORD)
    svc = FakeService(tmp_path, WebConfig(bind="127.0.0.1", port=0))
    server = WebServer(svc, svc.config.web)
    server.start()
    try:
        assert server.up and server.port > 0
        status, _, body = _fetch(f"http://127.0.0.1:{server.port}/healthz")
        assert status == 200 and b'"ok"' in body
        creds = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
        status, _, body = _fetch(f"http://127.0.0.1:{server.port}/api/status",
                                 headers={"Authorization": f"Basic {creds}"})
        assert status == 200 and b'"port":%d' % server.port in body
        # A second server on the same port says what is wrong.
        other = WebServer(svc, WebConfig(bind="127.0.0.1", port=server.port))
        with pytest.raises(WebServerError, match="cannot listen"):
            other.start()
    finally:
        server.stop()
        svc.store.close()
    assert not server.up
    with pytest.raises(OSError):
        _fetch(f"http://127.0.0.1:{server.port}/healthz")


def test_https_with_a_configured_certificate(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl command missing: cannot make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    set_password(tmp_path, PASSWORD)
    web = WebConfig(bind="127.0.0.1", port=0, tls_cert=str(cert), tls_key=str(key))
    svc = FakeService(tmp_path, web)
    server = WebServer(svc, web)
    server.start()
    try:
        assert server.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        status, _, body = _fetch(f"https://127.0.0.1:{server.port}/healthz", ctx)
        assert status == 200
        # Log in over HTTPS: the session cookie is Secure, the client address the real one.
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx),
                                             urllib.request.HTTPCookieProcessor(jar))
        html = opener.open(f"https://127.0.0.1:{server.port}/login", timeout=10).read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        data = f"csrf_token={token}&password={PASSWORD.replace(' ', '+')}".encode()
        response = opener.open(f"https://127.0.0.1:{server.port}/login", data=data, timeout=10)
        assert response.status == 200 and response.url.endswith("/live")
        cookies = list(jar)
        assert cookies and all(c.secure for c in cookies)
        assert cookies[0].has_nonstandard_attr("HttpOnly")
        assert _fetch(f"https://127.0.0.1:{server.port}/api/status", ctx)[0] == 401
        # Plain HTTP on the HTTPS port gets nothing.
        with pytest.raises((OSError, ConnectionError, Exception)):
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5).read()
    finally:
        server.stop()
        svc.store.close()


def test_bad_certificate_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    web = WebConfig(bind="127.0.0.1", port=0, tls_cert=str(bad), tls_key=str(bad))
    svc = FakeService(tmp_path, web)
    with pytest.raises(WebServerError) as err:
        WebServer(svc, web).start()
    assert err.value.exit_code == 78 and "tls_cert" in str(err.value)
    svc.store.close()
