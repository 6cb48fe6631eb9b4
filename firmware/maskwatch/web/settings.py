"""The settings API (F28): read the config, change one section, back it up and restore it.

Every change goes through :class:`ConfigStore` (validated as the config file is, written
atomically, comments kept) and is then applied through the same reload path as
``systemctl reload`` (``service.request_reload``). The login and CSRF checks of the app guard
these routes like every other. Errors come back as ``{"error", "problems": {key: message}}``
so the page can show each one next to its field.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, abort, jsonify, request

from maskwatch.config import ConfigError
from maskwatch.events import OutputError
from maskwatch.web.config_store import ConfigStore

log = logging.getLogger(__name__)

# Sections the page may change; [paths] and [storage] stay with the installer.
EDITABLE = (
    "device", "schedule", "privacy", "outputs", "detector", "processing", "decision",
    "gates", "ir", "source", "web", "stream",
)

ApiError = Callable[..., Response]


def add_settings_routes(app: Flask, service: Any, api_error: ApiError) -> None:
    """Register the /api/settings routes on ``app`` for ``service`` (which needs
    ``config_path`` and ``request_reload`` for saving)."""

    def store() -> ConfigStore:
        """The service's config file; 409 when it runs on the built-in defaults."""
        path = getattr(service, "config_path", None)
        if not path:
            abort(409, description="the service runs without a config file (--config): "
                                   "nothing to save to")
        return ConfigStore(path)

    def refused(exc: ConfigError) -> Response:
        problems: dict[str, str] = {}
        for problem in exc.problems:
            key, colon, message = problem.partition(": ")
            problems[key if colon else ""] = message if colon else problem
        return api_error(400, "not saved: " + "; ".join(exc.problems), problems=problems)

    def saved(section: str) -> Response:
        reload = getattr(service, "request_reload", None)
        if reload is not None:
            reload()
        log.info("settings: [%s] saved from the page", section)
        return jsonify({"saved": section, "applying": reload is not None})

    @app.get("/api/settings")
    def api_settings() -> Any:
        st = store()
        try:
            settings, effective = st.settings(), st.effective()
        except ConfigError as exc:
            return api_error(500, "; ".join(exc.problems))
        return jsonify({"settings": settings, "effective": effective,
                        "editable": list(EDITABLE)})

    @app.post("/api/settings/<section>")
    def api_settings_save(section: str) -> Any:
        if section not in EDITABLE:
            return api_error(404, f"no section {section!r} to change here (allowed: "
                                  f"{', '.join(EDITABLE)})")
        values = request.get_json(silent=True)
        if not isinstance(values, dict):
            return api_error(400, "send the section's keys as a JSON object")
        st = store()
        try:
            st.update(section, values)
        except ConfigError as exc:
            return refused(exc)
        return saved(section)

    @app.post("/api/settings/test-alarm")
    def api_test_alarm() -> Any:
        """``{"destination": name}`` or ``{}`` for every destination the service runs now (a
        destination added on the page is there once its save has been applied)."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return api_error(400, 'send {"destination": "<name>"} or {} for all')
        dispatcher = getattr(service, "dispatcher", None)
        if dispatcher is None:
            return api_error(503, "the alarm outputs are not running")
        names = list(dispatcher.health())
        wanted = body.get("destination")
        if wanted is not None and wanted not in names:
            return api_error(404, f"no destination {wanted!r} (running: {', '.join(names)})")
        results = {}
        for name in [wanted] if wanted is not None else names:
            try:
                results[name] = {"result": dispatcher.send_test(name, service.config.device.name),
                                 "error": ""}
            except OutputError as exc:
                timed_out = str(exc).startswith("timed out")
                results[name] = {"result": "timed out" if timed_out else "refused",
                                 "error": str(exc)}
        return jsonify({"results": results})

    @app.get("/api/settings/config.toml")
    def api_settings_download() -> Any:
        st = store()
        try:
            text = st.backup_text()
        except ConfigError as exc:
            return api_error(500, "; ".join(exc.problems))
        response = Response(text, mimetype="application/toml")
        response.headers["Content-Disposition"] = 'attachment; filename="maskwatch.toml"'
        return response

    @app.post("/api/settings/config.toml")
    def api_settings_restore() -> Any:
        request.max_content_length = app.config["MASKWATCH_MAX_UPLOAD"]
        upload = request.files.get("file")
        text = upload.read().decode("utf-8", "replace") if upload else request.get_data(
            as_text=True)
        st = store()
        try:
            st.restore(text)
        except ConfigError as exc:
            return refused(exc)
        return saved("all")
