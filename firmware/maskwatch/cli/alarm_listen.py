"""``maskwatch alarm-listen``: a TCP receiver for installers, to see what a maskwatch device
(or anything else) sends before the VMS is set up.

Every line received is printed as it arrives, with the time, the sender and its size; line
ends and other control characters are shown escaped (``\\r``, ``\\n``, ``\\x00``) so the exact
bytes are visible, and bytes that are not UTF-8 as ``\\xNN``. A connection is closed when the
sender closes its side (which is what maskwatch's ``wait_for_close`` waits for) or after
``idle_s`` without data. Runs until Ctrl-C.
"""

from __future__ import annotations

import socket
import socketserver
import sys
import threading
from datetime import datetime
from typing import TextIO

IDLE_S = 30.0
_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}


def show(data: bytes) -> str:
    text = data.decode("utf-8", errors="backslashreplace")
    return "".join(
        _ESCAPES.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 32 or ord(ch) == 127 else ch)
        for ch in text
    )


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], out: TextIO, idle_s: float) -> None:
        self.out = out
        self.idle_s = idle_s
        self.print_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def emit(self, peer: str, data: bytes, note: str = "") -> None:
        now = datetime.now().astimezone().isoformat(timespec="milliseconds")
        with self.print_lock:
            print(f"{now} {peer} {len(data)} bytes{note}: {show(data)}", file=self.out,
                  flush=True)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        host, port = self.client_address[:2]
        peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        sock: socket.socket = self.request
        sock.settimeout(self.server.idle_s)
        pending = b""
        note = ""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                note = f" (idle {self.server.idle_s:g} s, closing)"
                break
            except OSError as exc:
                note = f" ({exc.strerror or exc})"
                break
            if not chunk:
                break
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                self.server.emit(peer, line + b"\n")
        if pending or note:
            self.server.emit(peer, pending, note)


def run_alarm_listen(host: str = "0.0.0.0", port: int = 1818, out: TextIO | None = None,
                     idle_s: float = IDLE_S) -> int:
    out = out or sys.stdout
    if not 0 <= port <= 65535:
        print(f"maskwatch alarm-listen: port must be 0-65535 (got {port})", file=sys.stderr)
        return 2
    try:
        server = _Server((host, port), out, idle_s)
    except OSError as exc:
        print(f"maskwatch alarm-listen: cannot listen on {host}:{port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    bound = server.server_address[1]
    print(f"listening on {host}:{bound} (TCP); Ctrl-C to stop", file=out, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
