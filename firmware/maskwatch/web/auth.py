"""Access control for the web page (F21): the admin password, the session key, the sessions
and the limits on password checks.

The admin password is stored only as a salted scrypt hash (werkzeug.security) in
``<state dir>/web_password``, written by ``maskwatch set-password``; the key that signs cookies
is made once, at the first start, in ``<state dir>/web_secret_key``; the login sessions are
kept in ``<state dir>/web_sessions``. The files are 0600 and owned like the state directory,
so the service user reads them and nobody else. A session remembers a fingerprint of the
password hash: setting a new password logs every open session out.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadData, URLSafeTimedSerializer
from werkzeug.security import check_password_hash, generate_password_hash

log = logging.getLogger(__name__)

USERNAME = "admin"
PASSWORD_FILE = "web_password"
SECRET_FILE = "web_secret_key"
SESSIONS_FILE = "web_sessions"
MAX_CHECKS_IN_FLIGHT = 2  # scrypt checks at once: ~32 MB each
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


class PasswordError(ValueError):
    """A password that cannot be set; the message says why."""


def _write_private(path: Path, data: str) -> None:
    """Write ``data`` to ``path`` atomically, mode 0600, owned like its directory (when run
    as root for a service user, e.g. by install.sh)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if os.geteuid() == 0:
            st = path.parent.stat()
            if (st.st_uid, st.st_gid) != (0, 0):
                os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def check_new_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise PasswordError(f"the password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise PasswordError(f"the password may have at most {MAX_PASSWORD} characters")
    if password.strip() != password or "\n" in password or "\r" in password:
        raise PasswordError("the password must not start or end with a space or hold a "
                            "line break")
    return password


def set_password(state_dir: Path, password: str) -> Path:
    """Hash and store the admin password; returns the file written."""
    check_new_password(password)
    state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    path = state_dir / PASSWORD_FILE
    _write_private(path, generate_password_hash(password, method="scrypt") + "\n")
    return path


class PasswordStore:
    """Reads the hash from the state directory whenever the file changes, so a password
    set while the service runs takes effect at once."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / PASSWORD_FILE
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._hash = ""

    def _current(self) -> str:
        try:
            st = self.path.stat()
        except OSError:
            return ""
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._hash = self.path.read_text(encoding="utf-8").strip()
                except (OSError, UnicodeDecodeError) as exc:
                    log.error("cannot read the web password file %s: %s", self.path, exc)
                    self._hash = ""
                self._stamp = stamp
            return self._hash

    @property
    def is_set(self) -> bool:
        return bool(self._current())

    def fingerprint(self) -> str:
        """Changes when the password changes; kept in the session."""
        current = self._current()
        return hashlib.sha256(current.encode()).hexdigest()[:16] if current else ""

    def verify(self, username: str, password: str) -> bool:
        current = self._current()
        if not current or len(password) > MAX_PASSWORD:
            return False
        try:
            ok = check_password_hash(current, password)
        except (ValueError, TypeError):
            log.error("the web password file %s holds no valid hash: set it again with "
                      "maskwatch set-password", self.path)
            return False
        return ok and hmac.compare_digest(username, USERNAME)


def secret_key(state_dir: Path) -> bytes:
    """The session-signing key: made once (32 random bytes) and kept in the state dir."""
    path = state_dir / SECRET_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
        if len(text) >= 64:
            return bytes.fromhex(text)
        log.warning("%s is too short or damaged: making a new session key", path)
    except FileNotFoundError:
        pass
    except (ValueError, UnicodeDecodeError):
        log.warning("%s is damaged: making a new session key (sessions end)", path)
    state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    _write_private(path, key.hex() + "\n")
    return key


@dataclass(frozen=True)
class Refusal:
    """A login attempt answered without checking the password: ``status`` 429 (a limit) or
    503 (busy), ``retry_after`` seconds, and a message for the person."""

    status: int
    retry_after: int
    message: str


class LoginGate:
    """Which password checks may run now (F21; issue "Hardening" rows 8, 10, 11).

    Each check is an scrypt run: ~32 MB and CPU time taken from detection. So checks are
    bounded three ways, and an attempt over a bound is refused at once, never queued:

    - at most ``max_in_flight`` run at once (503 beyond);
    - each key (a client address, or a known browser) may fail ``per_minute`` times in any
      60 s (429 beyond). The failure is counted *before* the check and forgotten on success,
      so parallel guesses cannot run past the limit;
    - the checks of keys that are not ``known`` share ``global_per_minute`` in any 60 s,
      whatever their address, so rotating addresses gains nothing.

    A known browser (see ``KnownBrowsers``) counts on its own key only: guesses from its
    address neither lock it out nor use up its budget, and it cannot be had by guessing.
    """

    WINDOW_S = 60.0
    SWEEP_AT = 1000  # keys held before the ones without recent failures are dropped

    def __init__(self, per_minute: int, global_per_minute: int,
                 max_in_flight: int = MAX_CHECKS_IN_FLIGHT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.global_per_minute = global_per_minute
        self.max_in_flight = max_in_flight
        self.failures = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight = 0
        self._checks: deque[float] = deque()  # times of the checks of unknown keys
        self._failed: dict[str, deque[float]] = {}  # times of the failures of each key

    def check(self, key: str, verify: Callable[[], bool], *,
              known: bool = False) -> bool | Refusal:
        """The result of ``verify()`` when the limits let it run now, else why not."""
        refusal = self._reserve(key, known)
        if refusal is not None:
            return refusal
        ok = False
        try:
            ok = verify()
        finally:
            self._finish(key, ok)
        return ok

    def _recent(self, times: deque[float], now: float) -> deque[float]:
        while times and now - times[0] >= self.WINDOW_S:
            times.popleft()
        return times

    def _wait(self, times: deque[float], now: float) -> int:
        return max(1, math.ceil(self.WINDOW_S - (now - times[0])))

    def _reserve(self, key: str, known: bool) -> Refusal | None:
        now = self._clock()
        with self._lock:
            if len(self._failed) >= self.SWEEP_AT:
                self._failed = {k: v for k, v in self._failed.items() if self._recent(v, now)}
            failed = self._recent(self._failed.get(key, deque()), now)
            if len(failed) >= self.per_minute:
                wait = self._wait(failed, now)
                return Refusal(429, wait, f"Too many failed logins from here: wait {wait} s.")
            checks = self._recent(self._checks, now)
            if not known and len(checks) >= self.global_per_minute:
                wait = self._wait(checks, now)
                return Refusal(429, wait, "Too many logins tried on this device in the last "
                                          f"minute: wait {wait} s.")
            if self._in_flight >= self.max_in_flight:
                return Refusal(503, 1, "Busy checking other logins: try again in a second.")
            self._in_flight += 1
            failed.append(now)
            self._failed[key] = failed
            if not known:
                checks.append(now)
        return None

    def _finish(self, key: str, ok: bool) -> None:
        with self._lock:
            self._in_flight -= 1
            if ok:
                self._failed.pop(key, None)
            else:
                self.failures += 1


class KnownBrowsers:
    """Browsers that logged in before, for the password they used (issue "Hardening" row 11):
    a random id signed with the session key, in a cookie only ``/login`` receives. Nobody
    gets one by guessing, so a browser that has one is not locked out by guesses from its
    address (a shared NAT or proxy) and has a budget of its own (see ``LoginGate``)."""

    MAX_AGE_S = 90 * 86400

    def __init__(self, secret: bytes) -> None:
        self._signer = URLSafeTimedSerializer(secret, salt="maskwatch known browser")

    def issue(self, browser: str | None, fingerprint: str) -> str:
        """The cookie value after a successful login (``browser``: its id, if it had one)."""
        return self._signer.dumps([browser or secrets.token_urlsafe(16), fingerprint])

    def identify(self, cookie: str, fingerprint: str) -> str | None:
        """The browser's id, or None for no, a forged, an old or another password's cookie."""
        if not cookie or not fingerprint:
            return None
        try:
            browser, signed_for = self._signer.loads(cookie, max_age=self.MAX_AGE_S)
        except (BadData, TypeError, ValueError):
            return None
        if not isinstance(browser, str) or not hmac.compare_digest(str(signed_for),
                                                                   fingerprint):
            return None
        return browser


class SessionStore:
    """Login sessions kept on the device (issue "Hardening" row 7). The signed cookie holds
    only a random id; the record (when, for which password) stays here, so logging out ends
    the session for every copy of the cookie, and a session ends ``lifetime_s`` after the
    login however much it is used. The records are kept in ``<state dir>/web_sessions``
    (0600, SHA-256 digests of the ids, never the ids) so that a restart (an update, a
    watchdog) does not log everyone out; wall-clock time, since they outlive the process."""

    MAX_SESSIONS = 64
    CLOCK_SLACK_S = 300.0  # a session made "later than now" (clock stepped back) ends

    def __init__(self, state_dir: Path, lifetime_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = state_dir / SESSIONS_FILE
        self.lifetime_s = lifetime_s
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions = self._load()  # digest -> (created, password fingerprint)

    @staticmethod
    def _digest(sid: str) -> str:
        return hashlib.sha256(sid.encode()).hexdigest()

    def _load(self) -> dict[str, tuple[float, str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {str(k): (float(v[0]), str(v[1])) for k, v in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, LookupError, AttributeError) as exc:
            log.warning("%s is unreadable (%s): everybody must log in again", self.path, exc)
            return {}

    def _live(self, created: float, now: float) -> bool:
        return created - self.CLOCK_SLACK_S <= now < created + self.lifetime_s

    def _save(self) -> None:
        try:
            _write_private(self.path, json.dumps(
                {k: list(v) for k, v in self._sessions.items()}) + "\n")
        except OSError as exc:
            log.error("cannot keep the web sessions in %s: %s; they end at the next restart",
                      self.path, exc.strerror or exc)

    def create(self, fingerprint: str) -> str:
        """A new session for the password with ``fingerprint``; returns its id."""
        sid = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            live = [(k, v) for k, v in self._sessions.items()  # oldest first
                    if self._live(v[0], now) and v[1] == fingerprint]
            self._sessions = dict(live[-(self.MAX_SESSIONS - 1):])
            self._sessions[self._digest(sid)] = (now, fingerprint)
            self._save()
        return sid

    def valid(self, sid: str, fingerprint: str) -> bool:
        """Whether ``sid`` is a session not ended, within its lifetime and made for the
        current password (a new password ends every session)."""
        if not sid or not fingerprint:
            return False
        with self._lock:
            record = self._sessions.get(self._digest(sid))
        return (record is not None and self._live(record[0], self._clock())
                and hmac.compare_digest(record[1], fingerprint))

    def end(self, sid: str) -> None:
        with self._lock:
            if self._sessions.pop(self._digest(sid), None) is not None:
                self._save()


def read_new_password(stdin=None) -> str:
    """The password for ``maskwatch set-password``: typed twice at a terminal, or the first
    line of standard input when it is not one (install scripts pipe it)."""
    stdin = stdin or sys.stdin
    if stdin.isatty():
        first = getpass.getpass("New admin password: ")
        check_new_password(first)
        if getpass.getpass("Again: ") != first:
            raise PasswordError("the two passwords differ")
        return first
    line = stdin.readline()
    return check_new_password(line.rstrip("\r\n"))


def run_set_password(state_dir: Path) -> int:
    try:
        password = read_new_password()
        path = set_password(state_dir, password)
    except PasswordError as exc:
        print(f"maskwatch set-password: {exc}", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        print("maskwatch set-password: no password given", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"maskwatch set-password: cannot write under {state_dir}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"admin password stored (salted scrypt hash) in {path}; log in as '{USERNAME}'")
    return 0
