"""Access control for the web page (F21): the admin password, the session secret and the
login rate limit.

The admin password is stored only as a salted scrypt hash (werkzeug.security) in
``<state dir>/web_password``, written by ``maskwatch set-password``; the key that signs session
cookies is made once, at the first start, in ``<state dir>/web_secret_key``. Both files are
0600 and owned like the state directory, so the service user reads them and nobody else.
A session remembers a fingerprint of the password hash: setting a new password logs every
open session out.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import logging
import os
import secrets
import sys
import threading
import time
from collections import deque
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

log = logging.getLogger(__name__)

USERNAME = "admin"
PASSWORD_FILE = "web_password"
SECRET_FILE = "web_secret_key"
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


class LoginLimiter:
    """At most ``per_minute`` failed logins per client address in any 60 s; beyond that,
    every attempt from the address is refused (429) until the oldest failure ages out."""

    WINDOW_S = 60.0
    MAX_CLIENTS = 10_000

    def __init__(self, per_minute: int, clock=time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}

    def _trim(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and now - times[0] >= self.WINDOW_S:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, client: str) -> int:
        """0 when ``client`` may try now, else the seconds to wait."""
        now = self._clock()
        with self._lock:
            times = self._trim(client, now)
            if times is None or len(times) < self.per_minute:
                return 0
            return max(1, int(self.WINDOW_S - (now - times[0]) + 0.999))

    def failed(self, client: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._failures) >= self.MAX_CLIENTS:
                for key in list(self._failures):
                    self._trim(key, now)
                if len(self._failures) >= self.MAX_CLIENTS:  # a flood: forget the oldest
                    self._failures.pop(next(iter(self._failures)))
            self._failures.setdefault(client, deque()).append(now)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


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
