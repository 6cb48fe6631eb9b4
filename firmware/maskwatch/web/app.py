"""The Flask application: pages, JSON API, live stream, health and metrics (F19-F22).

``create_app(service)`` needs only a narrow view of the running service, so route tests can
hand it a small fake:

- ``config``: the ``Config`` (``web``, ``storage`` for the state dir, ``device``);
- ``status.snapshot()``: a dict as ``ServiceStatus.snapshot`` gives;
- ``bus``: the ``EventBus`` (the live view subscribes to "frame" while somebody watches);
- ``store`` (optional, may be missing or None): the ``EventStore`` (``list_events``,
  ``count_events``, ``get_event``, ``snapshot_path``, ``stats``);
- ``dispatcher`` (optional): ``health()`` per destination;
- ``stats`` (optional): the ``ComplianceStats`` of the Statistics page and ``/api/stats``.

Access (F21): every route but ``/healthz`` needs the admin login (a session cookie, or HTTP
Basic auth as ``admin`` for scripts and Prometheus). Pages redirect to ``/login``; the API,
stream, metrics and static files answer 401. Every POST carries the session's CSRF token.
Sessions live on the device (``SessionStore``): logout ends them, and they end a fixed time
after the login. Every password check, by form or Basic auth, goes through one ``LoginGate``
(per client or known browser, for all clients together, and at most two at once). Query
parameters of the API are checked strictly: an unknown or malformed one answers 400 with a
message, never 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import cv2
import simplejpeg
from flask import (
    Flask,
    Response,
    abort,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    session,
)
from werkzeug.exceptions import HTTPException

from maskwatch import __version__
from maskwatch.config import WebConfig
from maskwatch.web.auth import (
    USERNAME,
    KnownBrowsers,
    LoginGate,
    PasswordError,
    PasswordStore,
    Refusal,
    SessionStore,
    secret_key,
    set_password,
)
from maskwatch.web.config_store import MAX_FILE_BYTES
from maskwatch.web.health import assess_health
from maskwatch.web.live import BOUNDARY, FrameHub, lower_thread_priority, mjpeg_stream
from maskwatch.web.metrics import ServiceCollector, metrics_text
from maskwatch.web.settings import add_settings_routes
from maskwatch.web.stats import add_stats_routes

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
LABELS = ("mask", "no_mask", "incorrect", "unknown")
MAX_LIMIT = 500
MAX_OFFSET = 10**9
MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
EVENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
STREAM_ID = re.compile(r"[A-Za-z0-9]{1,32}")
THUMB_WIDTH = 240
BROWSER_COOKIE = "maskwatch_browser"
PUBLIC_ENDPOINTS = {"healthz", "login", "login_post"}
# Answer 401 (not a redirect to the login page) under these paths.
API_PREFIXES = ("/api/", "/stream.mjpg", "/live.jpg", "/metrics", "/static/")


class ParamError(ValueError):
    """A bad query parameter; the message tells the caller what is allowed."""


def _params(allowed: dict[str, str]) -> dict[str, str]:
    """The query parameters, each at most once and all known; ``allowed`` maps each name to
    what it takes, for the message."""
    out: dict[str, str] = {}
    for name in request.args:
        values = request.args.getlist(name)
        if name not in allowed:
            known = ", ".join(f"{k} ({v})" for k, v in allowed.items()) or "none"
            raise ParamError(f"unknown query parameter {name!r}; this route takes: {known}")
        if len(values) > 1:
            raise ParamError(f"query parameter {name!r} is given {len(values)} times")
        out[name] = values[0]
    return out


def parse_time_ms(name: str, text: str) -> int:
    """Epoch milliseconds, or an ISO-8601 time (UTC when it has no offset)."""
    value = text.strip()
    if not value or len(value) > 40:
        raise ParamError(f"{name}: give an ISO-8601 time such as 2024-05-01T12:00:00Z or "
                         "epoch milliseconds")
    if re.fullmatch(r"\d{1,15}", value):
        ms = int(value)
    else:
        try:
            when = datetime.fromisoformat(value.replace("z", "Z"))
        except ValueError:
            raise ParamError(
                f"{name}: {text!r} is neither an ISO-8601 time (2024-05-01T12:00:00Z, "
                "2024-05-01T14:00:00+02:00; UTC when no offset is given) nor epoch "
                "milliseconds") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        try:
            ms = int(when.timestamp() * 1000)
        except (OverflowError, OSError, ValueError):
            raise ParamError(f"{name}: {text!r} is out of range") from None
    if not 0 <= ms <= MAX_EPOCH_MS:
        raise ParamError(f"{name}: {text!r} is out of range (1970 to 9999)")
    return ms


def parse_int(name: str, text: str, low: int, high: int) -> int:
    if not re.fullmatch(r"\s*-?\d{1,12}\s*", text):
        raise ParamError(f"{name}: {text!r} is not a whole number ({low}-{high})")
    value = int(text)
    if not low <= value <= high:
        raise ParamError(f"{name}: {value} is out of range ({low}-{high})")
    return value


def _event_id(event_id: str) -> str:
    if not EVENT_ID.fullmatch(event_id):
        raise ParamError("event id: 1-64 letters, digits, '-' or '_' expected")
    return event_id


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, host or '//'), else the live page."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/live"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in target):
        return "/live"
    return target


def _iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds")


def create_app(service: Any, *, client_ip: Callable[[], str] | None = None,
               web: WebConfig | None = None) -> Flask:
    """The WSGI app for ``service`` (see the module docstring for what it must have).
    ``client_ip`` overrides how the client address is found (the TLS front end maps its
    loopback connections back to the real client)."""
    config = service.config
    web = web or getattr(config, "web", None) or WebConfig()
    state_dir = Path(config.storage.resolve_state_dir())
    key = secret_key(state_dir)
    app = Flask("maskwatch.web", root_path=str(HERE), static_folder="static",
                template_folder="templates")
    app.config.update(
        SECRET_KEY=key,
        SESSION_COOKIE_NAME="maskwatch_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=web.tls,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=web.session_hours),
        SESSION_REFRESH_EACH_REQUEST=False,  # the cookie ends with the session it names
        SEND_FILE_MAX_AGE_DEFAULT=0,
        MAX_CONTENT_LENGTH=16 * 1024,
        # The one larger body: a config backup restored from the settings page.
        MASKWATCH_MAX_UPLOAD=MAX_FILE_BYTES + 16 * 1024,
        MAX_FORM_MEMORY_SIZE=16 * 1024,
        JSON_SORT_KEYS=False,
        TEMPLATES_AUTO_RELOAD=False,
    )
    lifetime_s = web.session_hours * 3600
    passwords = PasswordStore(state_dir)
    sessions = SessionStore(state_dir, lifetime_s)
    gate = LoginGate(web.login_attempts_per_minute, web.login_checks_per_minute)
    browsers = KnownBrowsers(key)
    hub = FrameHub(service.bus, quality=web.jpeg_quality, width=web.stream_width,
                   max_fps=web.stream_max_fps, max_viewers=web.max_viewers)
    basic_ok: OrderedDict[str, float] = OrderedDict()
    thumbs: OrderedDict[str, bytes] = OrderedDict()
    cache_lock = threading.Lock()  # both caches are shared by the server threads
    css = (HERE / "static" / "style.css").read_text(encoding="utf-8")
    started = time.monotonic()

    def store() -> Any:
        return getattr(service, "store", None)

    def snapshot() -> dict[str, Any]:
        data = dict(service.status.snapshot())
        dispatcher = getattr(service, "dispatcher", None)
        if dispatcher is not None:
            try:
                data["outputs"] = dispatcher.health()
            except Exception:  # the status page must not fail because of one output
                log.exception("output health")
        data.setdefault("version", __version__)
        data.setdefault("uptime_s", round(time.monotonic() - started, 1))
        return data

    def web_stats() -> dict[str, Any]:
        out: dict[str, Any] = {
            "viewers": hub.viewers, "frames_encoded": hub.frames_encoded,
            "encode_seconds": round(hub.encode_seconds, 3),
            "streams_served": hub.streams_served, "login_failures": gate.failures,
            "bind": web.bind, "port": app.config.get("MASKWATCH_PORT", web.port),
            "https": web.tls,
            "password_set": passwords.is_set,
        }
        return out

    def store_stats() -> dict[str, Any]:
        st = store()
        if st is None:
            return {"error": "no event log"}
        try:
            return dict(st.stats())
        except Exception as exc:
            return {"error": str(exc)}

    def collector_web() -> dict[str, Any]:
        data = web_stats()
        ev = store_stats()
        if "error" not in ev:
            data["events"] = ev.get("events", 0)
            data["pending"] = ev.get("pending", 0)
        stats = getattr(service, "stats", None)
        if stats is not None:
            try:
                today = stats.today()
            except Exception:  # the metrics must not fail because of the statistics
                log.exception("statistics for /metrics")
            else:
                data["people_today"] = today.counts
                data["compliance_today_percent"] = today.compliance
        return data

    collector = ServiceCollector(snapshot, collector_web)

    def remote() -> str:
        if client_ip is not None:
            return client_ip()
        return request.remote_addr or "unknown"

    # ------------------------------------------------------------------ access

    def logged_in() -> bool:
        return sessions.valid(str(session.get("sid", "")), passwords.fingerprint())

    def basic_auth() -> bool | Refusal | None:
        """True/False (or why it was not checked) for a Basic Authorization header, None
        when there is none. A correct header is remembered for a session's lifetime, so a
        script or Prometheus already let in is not locked out by somebody else's guessing."""
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return None
        remembered = hashlib.sha256(key + header.encode()
                                    + passwords.fingerprint().encode()).hexdigest()
        now = time.monotonic()
        with cache_lock:
            if basic_ok.get(remembered, 0.0) > now:
                return True
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True) \
                .decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        result = gate.check(remote(), lambda: passwords.verify(user, password))
        if result is True:
            with cache_lock:
                basic_ok[remembered] = now + lifetime_s
                while len(basic_ok) > 64:
                    basic_ok.popitem(last=False)
        return result

    def csrf_token() -> str:
        token = session.get("csrf")
        if not token:
            token = secrets.token_urlsafe(32)
            session["csrf"] = token
        return token

    @app.context_processor
    def _template_globals() -> dict[str, Any]:
        return {"csrf_token": csrf_token, "device": config.device.name,
                "version": __version__, "nonce": getattr(g, "nonce", "")}

    def api_error(status: int, message: str, **extra: Any) -> Response:
        response = jsonify({"error": message, "status": status, **extra})
        response.status_code = status
        return response

    niced = threading.local()

    @app.before_request
    def _guard() -> Response | None:
        if not getattr(niced, "done", False):  # each server thread, once
            lower_thread_priority()
            niced.done = True
        g.nonce = secrets.token_urlsafe(12)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
            expected = session.get("csrf", "")
            if not sent or not expected or not hmac.compare_digest(str(sent), str(expected)):
                return api_error(400, "CSRF token missing or wrong: reload the page and try "
                                      "again") if request.path.startswith("/api/") else \
                    Response("CSRF token missing or wrong: reload the page and try again.\n",
                             400, mimetype="text/plain")
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        if logged_in():
            return None
        is_api = request.path.startswith(API_PREFIXES)
        if is_api:
            auth = basic_auth()
            if auth is True:
                return None
            if isinstance(auth, Refusal):
                response = api_error(auth.status, auth.message)
                response.headers["Retry-After"] = str(auth.retry_after)
                return response
            response = api_error(401, "login required (POST /login, or HTTP Basic auth as "
                                      f"{USERNAME!r})")
            if request.path.startswith("/metrics"):
                response.headers["WWW-Authenticate"] = 'Basic realm="maskwatch"'
            return response
        target = request.full_path if request.query_string else request.path
        return redirect(f"/login?next={quote(target, safe='/')}", 302)

    @app.after_request
    def _headers(response: Response) -> Response:
        nonce = getattr(g, "nonce", "")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; script-src 'self'; "
            f"style-src 'self' 'nonce-{nonce}'; connect-src 'self'; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'self'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
        if web.tls:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    @app.errorhandler(ParamError)
    def _bad_param(exc: ParamError) -> Response:
        return api_error(400, str(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        if request.path.startswith(API_PREFIXES) or request.path == "/healthz":
            return api_error(exc.code or 500, exc.description or exc.name)
        return Response(f"{exc.code} {exc.name}: {exc.description}\n", exc.code or 500,
                        mimetype="text/plain")

    @app.errorhandler(Exception)
    def _crash(exc: Exception) -> Response:
        log.exception("web: %s %s failed", request.method, request.path)
        return api_error(500, "internal error (logged on the device)")

    # ------------------------------------------------------------------ login

    @app.get("/login")
    def login() -> Any:
        if logged_in():
            return redirect(_safe_next(request.args.get("next")))
        return render_template("login.html", css=css, error="", next=request.args.get("next", ""),
                               password_set=passwords.is_set)

    @app.post("/login")
    def login_post() -> Any:
        client = remote()
        nxt = request.form.get("next", "")
        password = request.form.get("password", "")
        fingerprint = passwords.fingerprint()
        browser = browsers.identify(request.cookies.get(BROWSER_COOKIE, ""), fingerprint)
        result = gate.check(f"browser {browser}" if browser else client,
                            lambda: passwords.verify(USERNAME, password),
                            known=browser is not None)
        if isinstance(result, Refusal):
            response = Response(render_template(
                "login.html", css=css, next=nxt, password_set=passwords.is_set,
                error=result.message), result.status)
            response.headers["Retry-After"] = str(result.retry_after)
            return response
        if not result:
            log.warning("web: failed login from %s", client)
            error = ("Wrong password." if passwords.is_set else
                     "No admin password is set yet: run 'maskwatch set-password' on the device.")
            return Response(render_template("login.html", css=css, next=nxt, error=error,
                                            password_set=passwords.is_set), 401)
        session.clear()
        session.permanent = True
        session["sid"] = sessions.create(fingerprint)
        session["csrf"] = secrets.token_urlsafe(32)
        log.info("web: %s logged in from %s", USERNAME, client)
        response = redirect(_safe_next(nxt), 303)
        response.set_cookie(BROWSER_COOKIE, browsers.issue(browser, fingerprint),
                            max_age=KnownBrowsers.MAX_AGE_S, path="/login", httponly=True,
                            samesite="Strict", secure=web.tls)
        return response

    @app.post("/logout")
    def logout() -> Any:
        sessions.end(str(session.get("sid", "")))
        session.clear()
        return redirect("/login", 303)

    @app.post("/api/settings/password")
    def api_password() -> Any:
        """Change the admin password (F21) from the settings page: the current one is checked
        under the same limits as a login; other sessions end, this one goes on."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return api_error(400, 'send {"current": "…", "new": "…"}')
        current, new = str(body.get("current", "")), str(body.get("new", ""))
        result = gate.check(remote(), lambda: passwords.verify(USERNAME, current))
        if isinstance(result, Refusal):
            return api_error(result.status, result.message)
        if not result:
            return api_error(400, "the current password is wrong",
                             problems={"current": "wrong password"})
        try:
            set_password(state_dir, new)
        except PasswordError as exc:
            return api_error(400, str(exc), problems={"new": str(exc)})
        sessions.end(str(session.get("sid", "")))
        session["sid"] = sessions.create(passwords.fingerprint())
        log.info("web: admin password changed from the page (%s)", remote())
        return jsonify({"changed": True})

    # ------------------------------------------------------------------ pages

    @app.get("/")
    def index() -> Any:
        return redirect("/live", 302)

    @app.get("/live")
    def live_page() -> Any:
        return render_template("live.html", page="live")

    @app.get("/events")
    def events_page() -> Any:
        return render_template("events.html", page="events")

    @app.get("/status")
    def status_page() -> Any:
        return render_template("status.html", page="status")

    @app.get("/settings")
    def settings_page() -> Any:
        return render_template("settings.html", page="settings")

    # ------------------------------------------------------------------ live

    @app.get("/stream.mjpg")
    def stream() -> Any:
        stream_id = _params({"c": "a stream id, 1-32 letters or digits"}).get("c", "")
        if stream_id and not STREAM_ID.fullmatch(stream_id):
            raise ParamError("c: 1-32 letters or digits expected")
        if snapshot().get("state") == "outside_schedule":
            return api_error(409, "outside the operation schedule: no live image (F8)")
        viewer = hub.acquire(stream=True)
        if viewer is None:
            if hub.closed:
                return api_error(503, "the web page is shutting down")
            return api_error(503, f"too many live viewers (at most {web.max_viewers}); "
                                  "close another live page", max_viewers=web.max_viewers)
        response = Response(mjpeg_stream(hub, viewer, stream_id),
                            mimetype=f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
        response.call_on_close(viewer.release)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Accel-Buffering"] = "no"  # behind nginx: do not buffer
        return response

    @app.get("/live.jpg")
    def live_jpeg() -> Any:
        """The next live frame as one JPEG (for scripts and tests); counts as a viewer while
        it waits, so even this encodes only while asked."""
        _params({})
        if snapshot().get("state") == "outside_schedule":
            return api_error(409, "outside the operation schedule: no live image (F8)")
        viewer = hub.acquire(stream=False)
        if viewer is None:
            return api_error(503, "the web page is shutting down")
        try:
            frame = hub.wait_frame(0, timeout=5.0)
        finally:
            viewer.release()
        if frame is None:
            return api_error(503, "no frame within 5 s (camera down, IR start-up or outside "
                                  "the schedule)")
        response = Response(frame.jpeg, mimetype="image/jpeg")
        response.headers["X-Frame-Seq"] = str(frame.seq)
        return response

    @app.get("/api/live")
    def api_live() -> Any:
        args = _params({"c": "the page's stream id"})
        stream_id = args.get("c", "")
        if stream_id and not STREAM_ID.fullmatch(stream_id):
            raise ParamError("c: 1-32 letters or digits expected")
        s = snapshot()
        data = hub.live_state()
        if data["state"] == "unknown" or not data["subscribed"]:
            data["state"] = s.get("state", "unknown")
        data.update({
            "service_state": s.get("state"), "fps": s.get("fps"),
            "camera_up": s.get("camera_up"), "camera_error": s.get("camera_error"),
            "ir_mode": s.get("ir_mode"), "schedule_active": s.get("schedule_active"),
            "schedule_next_change_utc": s.get("schedule_next_change_utc"),
            "alarms": s.get("alarms"), "last_alarm_utc": s.get("last_alarm_utc"),
            "stream_age_s": hub.stream_age(stream_id) if stream_id else None,
            "max_viewers": web.max_viewers,
        })
        return jsonify(data)

    # ------------------------------------------------------------------ events

    def require_store() -> Any:
        st = store()
        if st is None:
            abort(503, description="the event log is not available")
        return st

    def event_json(event: Any) -> dict[str, Any]:
        data = event.to_dict()
        data.pop("snapshot_path", None)
        base = f"/api/events/{event.event_id}"
        has_snapshot = bool(event.snapshot_path)
        data["snapshot_url"] = f"{base}/snapshot.jpg" if has_snapshot else None
        data["thumbnail_url"] = f"{base}/thumb.jpg" if has_snapshot else None
        return data

    @app.get("/api/events")
    def api_events() -> Any:
        args = _params({
            "since": "ISO-8601 time or epoch ms, inclusive",
            "until": "ISO-8601 time or epoch ms, exclusive",
            "label": "|".join(LABELS), "limit": f"1-{MAX_LIMIT}", "offset": ">= 0",
        })
        since = parse_time_ms("since", args["since"]) if "since" in args else None
        until = parse_time_ms("until", args["until"]) if "until" in args else None
        if since is not None and until is not None and since >= until:
            raise ParamError("since must be earlier than until")
        label = args.get("label") or None
        if label is not None and label not in LABELS:
            raise ParamError(f"label: {label!r} is not one of {', '.join(LABELS)}")
        limit = parse_int("limit", args["limit"], 1, MAX_LIMIT) if "limit" in args else 50
        offset = parse_int("offset", args["offset"], 0, MAX_OFFSET) if "offset" in args else 0
        st = require_store()
        events = st.list_events(since_ms=since, until_ms=until, label=label, limit=limit,
                                offset=offset)
        total = None
        if hasattr(st, "count_events"):
            total = st.count_events(since_ms=since, until_ms=until, label=label)
        return jsonify({
            "events": [event_json(e) for e in events], "total": total, "limit": limit,
            "offset": offset, "since": _iso_ms(since), "until": _iso_ms(until), "label": label,
        })

    @app.get("/api/events/<event_id>")
    def api_event(event_id: str) -> Any:
        _params({})
        event_id = _event_id(event_id)
        event = require_store().get_event(event_id)
        if event is None:
            abort(404, description=f"no event {event_id}")
        return jsonify(event_json(event))

    def snapshot_file(event_id: str) -> Path:
        event_id = _event_id(event_id)
        path = require_store().snapshot_path(event_id)
        if path is None:
            abort(404, description=f"no snapshot for event {event_id}")
        return Path(path)

    def picture(response: Response) -> Response:
        """A picture of people: never kept in the browser's cache, where it would outlive
        the logout and the event's retention."""
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/api/events/<event_id>/snapshot.jpg")
    def api_snapshot(event_id: str) -> Any:
        _params({})
        return picture(send_file(snapshot_file(event_id), mimetype="image/jpeg"))

    @app.get("/api/events/<event_id>/thumb.jpg")
    def api_thumb(event_id: str) -> Any:
        """The thumbnail, from the cache only while the event and its snapshot are still in
        the event log (retention removes them)."""
        _params({})
        path = snapshot_file(event_id)
        with cache_lock:
            data = thumbs.get(str(path))
        if data is None:
            try:
                raw = path.read_bytes()
                image = simplejpeg.decode_jpeg(raw, colorspace="RGB",
                                               min_width=THUMB_WIDTH, min_height=1)
            except (OSError, ValueError) as exc:
                abort(404, description=f"snapshot of event {event_id} unreadable: {exc}")
            if image.shape[1] > THUMB_WIDTH:
                height = max(1, round(image.shape[0] * THUMB_WIDTH / image.shape[1]))
                image = cv2.resize(image, (THUMB_WIDTH, height), interpolation=cv2.INTER_AREA)
            data = simplejpeg.encode_jpeg(image, quality=70, colorspace="RGB")
            with cache_lock:
                thumbs[str(path)] = data
                while len(thumbs) > 256:
                    thumbs.popitem(last=False)
        return picture(Response(data, mimetype="image/jpeg"))

    # ------------------------------------------------------------------ status

    @app.get("/api/status")
    def api_status() -> Any:
        _params({})
        data = snapshot()
        data["web"] = web_stats()
        data["event_log"] = store_stats()
        return jsonify(data)

    @app.get("/healthz")
    def healthz() -> Any:
        """For anyone (no login): ok / degraded / down and why, in words that name no
        address, host, user or path; the details are in /api/status behind the login."""
        _params({})
        s = snapshot()
        health = assess_health(s)
        response = jsonify({
            "status": health.status, "state": s.get("state"),
            "camera_up": bool(s.get("camera_up")), "fps": s.get("fps"),
            "uptime_s": s.get("uptime_s"), "problems": health.problems,
        })
        response.status_code = 200 if health.status == "ok" else 503
        return response

    @app.get("/metrics")
    def metrics() -> Any:
        _params({})
        return Response(metrics_text(collector),
                        mimetype="text/plain; version=0.0.4; charset=utf-8")

    add_settings_routes(app, service, api_error)
    add_stats_routes(app, service, _params, parse_time_ms, ParamError)
    app.extensions["maskwatch"] = {"hub": hub, "gate": gate, "passwords": passwords,
                                   "sessions": sessions}
    return app
