"""The systemd notify protocol (sd_notify(3)), spoken directly so no C binding is needed.

systemd passes a unix datagram socket in $NOTIFY_SOCKET (a path, or '@name' for the abstract
namespace); each message is newline-separated VAR=value assignments. Outside systemd (a
laptop, tests, `maskwatch run` in a shell) the variable is absent and every call is a no-op,
so the service loop calls these unconditionally.

Service loop use::

    notifier = Notifier()
    ...                                   # camera, models and web page up
    notifier.ready()
    ping_every = notifier.watchdog_interval()   # None: no watchdog configured
    while running:                        # each frame; ping when ping_every has elapsed
        notifier.watchdog()
    # SIGHUP: notifier.reloading(); load the config; notifier.ready()
    notifier.stopping()
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends state changes to systemd. Never raises into the caller: a failed send is logged
    once (a warning), later failures only at debug level, and the service carries on."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._env = env
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._sock: socket.socket | None = None
        self._warned = False
        if self._address is None:
            return
        try:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        except OSError as exc:
            self._warn(f"cannot create a socket for NOTIFY_SOCKET: {exc}")
            return
        # The frame loop sends watchdog pings: it must never stall because systemd's queue is
        # full. A dropped ping is harmless, the next one comes at half the watchdog interval.
        self._sock.setblocking(False)

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a usable notify socket."""
        return self._sock is not None

    def ready(self) -> None:
        """Startup (or a reload) is complete: systemd marks the service active."""
        self._send("READY=1")

    def status(self, text: str) -> None:
        """A one-line status shown by `systemctl status`."""
        # A newline would start a new assignment and could forge e.g. READY=1.
        self._send("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> None:
        """Keep-alive: without one within WatchdogSec= systemd kills and restarts us."""
        self._send("WATCHDOG=1")

    def stopping(self) -> None:
        """Shutdown has begun (call on SIGTERM before tearing down)."""
        self._send("STOPPING=1")

    def reloading(self) -> None:
        """A config reload has begun; call ready() when it is done (or rejected).

        MONOTONIC_USEC lets systemd ≥ 253 tell this reload from an older one; earlier
        versions ignore the field.
        """
        self._send(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog() calls: half of $WATCHDOG_USEC, as sd_watchdog_enabled(3)
        recommends, so one late ping is not fatal. None when no watchdog is configured, the
        value is unusable, or $WATCHDOG_PID names another process (the variable was inherited).
        """
        usec = self._env.get("WATCHDOG_USEC", "")
        pid = self._env.get("WATCHDOG_PID", "")
        try:
            interval = int(usec)
            if pid and int(pid) != os.getpid():
                return None
        except ValueError:
            return None
        if interval <= 0:
            return None
        return interval / 2 / 1_000_000

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, message: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto(message.encode("utf-8"), self._address)
        except OSError as exc:
            self._warn(f"sending {message.split('=', 1)[0]} to {self._env['NOTIFY_SOCKET']}: {exc}")

    def _warn(self, text: str) -> None:
        if self._warned:
            log.debug("sd_notify: %s", text)
        else:
            self._warned = True
            log.warning("sd_notify: %s (further failures are logged at debug level)", text)


def _socket_address(value: str) -> str | None:
    """The address to sendto(): a filesystem path, or '\\0name' for an abstract '@name'."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value:
        # e.g. vsock: addresses (systemd ≥ 254 in VMs) — not used on an appliance.
        log.warning("sd_notify: unsupported NOTIFY_SOCKET %r; notifications disabled", value)
    return None
