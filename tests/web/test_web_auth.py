"""Login, sessions and picture caching on the real server (issue "Hardening", rows 7, 8, 10,
11, 17, 19): waitress on 127.0.0.1 with the real app, real HTTP from real threads, each client
with its own loopback source address (the whole 127.0.0.0/8 is this host) and its own cookies,
and the real state directory."""

from __future__ import annotations

import base64
import http.client
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from maskwatch.config import WebConfig
from maskwatch.types import Label
from maskwatch.web import WebServer
from maskwatch.web.auth import (
    SESSIONS_FILE,
    LoginGate,
    Refusal,
    SessionStore,
    set_password,
)

from test_web_api import PASSWORD, FakeService

Serve = Callable[..., WebServer]


class Client:
    """One browser or script: its own source address and cookie jar (every cookie is sent to
    every path; the server's own Path attributes only narrow what a real browser sends)."""

    def __init__(self, port: int, address: str = "127.0.0.1") -> None:
        self.port = port
        self.address = address
        self.cookies: dict[str, str] = {}
        self.set_cookies: list[str] = []

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage,
                                                                 bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20,
                                          source_address=(self.address, 0))
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        for header in response.headers.get_all("Set-Cookie") or []:
            self.set_cookies.append(header)
            for name, morsel in SimpleCookie(header).items():
                if morsel.value:
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        return response.status, response.headers, data

    def get(self, path: str, **kwargs: Any) -> int:
        return self.request("GET", path, **kwargs)[0]

    def csrf(self, page: str = "/login") -> str:
        html = self.request("GET", page)[2].decode()
        return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)

    def login(self, password: str = PASSWORD) -> int:
        return self.request("POST", "/login", {"csrf_token": self.csrf(),
                                               "password": password})[0]

    def logout(self) -> int:
        return self.request("POST", "/logout", {"csrf_token": self.csrf("/live")})[0]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Starts the real web server on 127.0.0.1 for a service whose state dir is tmp_path."""
    set_password(tmp_path, PASSWORD)
    started: list[tuple[WebServer, FakeService]] = []

    def start(**web: Any) -> WebServer:
        svc = FakeService(tmp_path, WebConfig(bind="127.0.0.1", port=0, **web))
        if svc.store.get_event("ev-a") is None:  # a restart finds it stored
            svc.add_event("ev-a", Label.NO_MASK, 0)
        server = WebServer(svc, svc.config.web)
        server.start()
        started.append((server, svc))
        return server

    yield start
    for server, svc in started:
        server.stop()
        svc.store.close()


class CountingChecks:
    """Wraps the app's password check: counts the checks, the most at once, and makes each
    take a while (as scrypt does on the device) so parallel requests really overlap."""

    def __init__(self, server: WebServer, hold_s: float = 0.15) -> None:
        self.passwords = server.app.extensions["maskwatch"]["passwords"]
        self.real = self.passwords.verify
        self.hold_s = hold_s
        self.lock = threading.Lock()
        self.calls = 0
        self.running = 0
        self.most_at_once = 0
        self.passwords.verify = self.verify

    def verify(self, username: str, password: str) -> bool:
        with self.lock:
            self.calls += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(self.hold_s)
            return self.real(username, password)
        finally:
            with self.lock:
                self.running -= 1


def _in_parallel(count: int, work: Callable[[int], None]) -> None:
    """``work(i)`` in ``count`` threads started together; fails if any raised or hung."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(10)
            work(i)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert not errors, errors


# ------------------------------------------------------------------------- row 7: sessions


def test_a_cookie_copied_before_logout_is_refused_after_it(serve: Serve) -> None:
    server = serve()
    owner = Client(server.port)
    assert owner.login() == 303
    thief = Client(server.port, "127.0.0.2")
    thief.cookies = dict(owner.cookies)
    assert thief.get("/api/status") == 200  # a copy works while the session lives ...
    assert owner.logout() == 303
    assert owner.get("/api/status") == 401
    assert thief.get("/api/status") == 401  # ... and not a moment longer
    assert thief.get("/live") == 302
    assert owner.login() == 303 and owner.get("/api/status") == 200


def test_a_session_ends_at_its_lifetime_even_when_used_all_along(serve: Serve) -> None:
    lifetime_s = 2.5
    server = serve(session_hours=lifetime_s / 3600)
    browser = Client(server.port)  # takes every cookie the server sends, as a browser does
    assert browser.login() == 303
    logged_in = time.monotonic()
    assert browser.get("/api/status") == 200
    answers = []
    while time.monotonic() - logged_in <= lifetime_s:
        answers.append(browser.get("/api/status"))
        time.sleep(0.1)
    assert answers[0] == 200
    assert browser.get("/api/status") == 401, answers  # never renewed by being used
    assert browser.get("/live") == 302


def test_sessions_outlive_a_restart_but_not_a_password_change(serve: Serve,
                                                             tmp_path: Path) -> None:
    first = serve()
    browser = Client(first.port)
    assert browser.login() == 303
    first.stop()
    second = serve()
    browser.port = second.port
    assert browser.get("/api/status") == 200  # the record was kept in the state dir
    stored = (tmp_path / SESSIONS_FILE)
    assert oct(stored.stat().st_mode & 0o777) == "0o600"
    assert browser.cookies["maskwatch_session"] not in stored.read_text()
    time.sleep(0.01)
    set_password(tmp_path, "another password")
    assert browser.get("/api/status") == 401


def test_session_store_lifetime_restart_and_end(tmp_path: Path) -> None:
    now = [1_000_000.0]
    store = SessionStore(tmp_path, lifetime_s=3600, clock=lambda: now[0])
    sid = store.create("fp1")
    other = store.create("fp1")
    now[0] += 3599
    assert store.valid(sid, "fp1") and not store.valid(sid, "fp2")
    assert not store.valid("made-up", "fp1")
    again = SessionStore(tmp_path, lifetime_s=3600, clock=lambda: now[0])
    assert again.valid(sid, "fp1")
    again.end(sid)
    assert not again.valid(sid, "fp1") and again.valid(other, "fp1")
    assert not SessionStore(tmp_path, lifetime_s=3600, clock=lambda: now[0]).valid(sid, "fp1")
    now[0] += 1
    assert not again.valid(other, "fp1")  # an hour from its start, however used
    fresh = again.create("fp1")
    now[0] -= 3600  # the clock stepped back an hour: no session gains that hour
    assert not again.valid(fresh, "fp1")


def test_session_store_keeps_a_bounded_number_of_sessions(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, lifetime_s=60)
    first = store.create("fp")
    latest = [store.create("fp") for _ in range(SessionStore.MAX_SESSIONS)]
    assert not store.valid(first, "fp") and all(store.valid(s, "fp") for s in latest)
    assert (tmp_path / SESSIONS_FILE).read_text().count('"fp"') == SessionStore.MAX_SESSIONS


def test_a_damaged_session_file_logs_everyone_out_but_works(tmp_path: Path) -> None:
    (tmp_path / SESSIONS_FILE).write_text("{not json")
    store = SessionStore(tmp_path, lifetime_s=60)
    sid = store.create("fp")
    assert SessionStore(tmp_path, lifetime_s=60).valid(sid, "fp")


# ------------------------------------------------------------------------- row 10: one address


def test_parallel_wrong_passwords_from_one_address_are_checked_at_most_the_limit(
        serve: Serve) -> None:
    server = serve(login_attempts_per_minute=5)
    checks = CountingChecks(server)
    answers: list[int] = []

    def guess(i: int) -> None:
        client = Client(server.port)
        token = client.csrf()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the address is locked; "busy" is retried
            status = client.request("POST", "/login", {"csrf_token": token,
                                                       "password": f"guess {i}"})[0]
            answers.append(status)
            if status == 429:
                return
            time.sleep(0.02)
        raise AssertionError("never locked")

    _in_parallel(10, guess)
    assert checks.calls == 5, answers
    assert answers.count(401) == 5 and set(answers) <= {401, 429, 503}


# ------------------------------------------------------------------------- row 8: all addresses


def test_password_checks_are_bounded_across_addresses(serve: Serve) -> None:
    server = serve(login_attempts_per_minute=5, login_checks_per_minute=12)
    checks = CountingChecks(server)
    answers: list[int] = []
    creds = base64.b64encode(b"admin:guess").decode()

    def worker(i: int) -> None:
        for j in range(6):  # 8 workers x 6 addresses x 6 tries: 288 tries, 240 unlocked
            client = Client(server.port, f"127.1.{i}.{j + 1}")
            for k in range(6):
                if k % 2:
                    answers.append(client.get("/api/status",
                                              headers={"Authorization": f"Basic {creds}"}))
                else:
                    answers.append(client.login(f"guess {i} {j} {k}"))

    _in_parallel(8, worker)
    assert len(answers) == 288 and set(answers) <= {401, 429, 503}
    assert checks.most_at_once <= 2
    assert answers.count(401) == checks.calls <= 12  # every other try refused unchecked


def test_login_gate_limits_in_flight_per_key_and_globally() -> None:
    now = [0.0]
    gate = LoginGate(per_minute=3, global_per_minute=5, max_in_flight=1,
                     clock=lambda: now[0])
    inner: list[bool | Refusal] = []
    outer = gate.check("a", lambda: inner.append(gate.check("b", lambda: True)) or False)
    assert outer is False
    assert isinstance(inner[0], Refusal) and inner[0].status == 503
    assert gate.check("a", lambda: False) is False
    assert gate.check("a", lambda: False) is False
    locked = gate.check("a", lambda: True)
    assert isinstance(locked, Refusal) and locked.status == 429 and locked.retry_after == 60
    assert gate.check("b", lambda: True) is True
    assert gate.check("b", lambda: False) is False
    spent = gate.check("c", lambda: True)  # 5 checks in this minute, whoever made them
    assert isinstance(spent, Refusal) and spent.status == 429
    assert gate.check("c", lambda: True, known=True) is True  # a known browser's own budget
    now[0] = 60.0
    assert gate.check("a", lambda: True) is True
    assert gate.failures == 4


# ------------------------------------------------------------------------- row 11: locked out


def test_a_known_browser_logs_in_from_a_locked_address(serve: Serve) -> None:
    server = serve(login_attempts_per_minute=5)
    admin = Client(server.port)
    assert admin.login() == 303
    assert admin.logout() == 303
    neighbour = Client(server.port)  # the same address, as behind a proxy or NAT
    for _ in range(5):
        assert neighbour.login("guess") == 401
    assert neighbour.login() == 429  # the address is locked for browsers it does not know
    creds = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    assert neighbour.get("/api/status", headers={"Authorization": f"Basic {creds}"}) == 429
    assert admin.login() == 303  # the admin's own browser is counted apart
    assert admin.get("/api/status") == 200
    assert admin.logout() == 303
    forger = Client(server.port)
    forger.cookies["maskwatch_browser"] = admin.cookies["maskwatch_browser"][:-4] + "AAAA"
    assert forger.login() == 429
    for _ in range(5):  # and is limited too
        assert admin.login("guess") == 401
    assert admin.login() == 429
    assert any("maskwatch_browser=" in c and "HttpOnly" in c and "Path=/login" in c
               and "SameSite=Strict" in c for c in admin.set_cookies)


# ------------------------------------------------------------------------- rows 17, 19: pictures


def test_a_thumbnail_is_gone_once_retention_removed_its_event(serve: Serve) -> None:
    server = serve()
    browser = Client(server.port)
    assert browser.login() == 303
    assert browser.get("/api/events/ev-a/thumb.jpg") == 200  # now in the thumbnail cache
    assert browser.get("/api/events/ev-a/thumb.jpg") == 200
    pruned = server.service.store.prune(now=time.time())  # the event is older than 30 days
    assert pruned["by_age"] == 1
    assert browser.get("/api/events/ev-a/thumb.jpg") == 404
    assert browser.get("/api/events/ev-a/snapshot.jpg") == 404


def test_pictures_of_people_are_not_kept_in_the_browser_cache(serve: Serve) -> None:
    server = serve()
    browser = Client(server.port)
    assert browser.login() == 303
    for path in ("/api/events/ev-a/snapshot.jpg", "/api/events/ev-a/thumb.jpg",
                 "/api/events/ev-a/thumb.jpg"):
        status, headers, data = browser.request("GET", path)
        assert status == 200 and data.startswith(b"\xff\xd8"), path
        assert headers["Cache-Control"] == "no-store", path
