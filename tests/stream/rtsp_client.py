"""A minimal RTSP client over one TCP connection (RTP interleaved, RFC 2326 §10.12), for
tests: it can play a mount and count the video frames that arrive, or play and then never
read, the way a hung recorder does. No authentication: the tests that log in use
gst-discoverer-1.0, a real client."""

from __future__ import annotations

import re
import socket
import time


class RtspTcpClient:
    def __init__(self, host: str, port: int, path: str, *, receive_buffer: int = 0,
                 timeout: float = 10.0) -> None:
        self.url = f"rtsp://{host}:{port}{path}"
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer:
            # Set before connecting, so the window offered to the server stays this small.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.local_port = self.sock.getsockname()[1]
        self._pending = b""
        self._cseq = 0
        self._session = ""

    def _read(self, n: int) -> bytes:
        while len(self._pending) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self._pending += chunk
        data, self._pending = self._pending[:n], self._pending[n:]
        return data

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self._pending += chunk
        head, self._pending = self._pending.split(marker, 1)
        return head

    def request(self, method: str, url: str, **headers: str) -> tuple[int, dict[str, str], str]:
        self._cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self._cseq}"]
        if self._session:
            lines.append(f"Session: {self._session}")
        lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        first = self._read(1)
        while first == b"$":  # an interleaved packet before the answer: skip it
            self._read(int.from_bytes(self._read(3)[1:], "big"))
            first = self._read(1)
        head = first + self._read_until(b"\r\n\r\n")
        status_line, *rest = head.decode().split("\r\n")
        answer = {k.strip().lower(): v.strip() for k, v in (r.split(":", 1) for r in rest)}
        body = self._read(int(answer.get("content-length", "0"))).decode()
        return int(status_line.split()[1]), answer, body

    def play(self) -> None:
        """DESCRIBE, SETUP the video track over this connection, PLAY."""
        status, answer, sdp = self.request("DESCRIBE", self.url, Accept="application/sdp")
        if status != 200:
            raise ConnectionError(f"DESCRIBE answered {status}")
        base = answer.get("content-base", self.url + "/")
        control = re.search(r"a=control:(\S+)", sdp.split("m=video", 1)[1]).group(1)
        track = control if control.startswith("rtsp://") else base.rstrip("/") + "/" + control
        status, answer, _ = self.request(
            "SETUP", track, Transport="RTP/AVP/TCP;unicast;interleaved=0-1")
        if status != 200:
            raise ConnectionError(f"SETUP answered {status}")
        self._session = answer["session"].split(";")[0]
        status, _, _ = self.request("PLAY", self.url, Range="npt=0-")
        if status != 200:
            raise ConnectionError(f"PLAY answered {status}")

    def count_frames(self, frames: int, timeout: float) -> int:
        """Read RTP until ``frames`` video frames have ended (marker bit) or ``timeout`` s
        passed; the number of frames seen."""
        seen = 0
        deadline = time.monotonic() + timeout
        while seen < frames and time.monotonic() < deadline:
            if self._read(1) != b"$":
                self._read_until(b"\r\n\r\n")  # a server request (none expected): skip
                continue
            channel, length = self._read(1)[0], int.from_bytes(self._read(2), "big")
            packet = self._read(length)
            if channel == 0 and length > 12 and packet[1] & 0x80:
                seen += 1
        return seen

    def close(self) -> None:
        self.sock.close()


def unsent_bytes(local_port: int, peer_port: int) -> int:
    """Bytes the socket from ``local_port`` to ``peer_port`` on this machine holds unsent
    or unacknowledged (the tx_queue of /proc/net/tcp): a client that stops reading shows
    here as a queue that grows to the socket's buffer and stays."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as rows:
                next(rows)
                for row in rows:
                    fields = row.split()
                    local, remote = fields[1], fields[2]
                    if (int(local.rsplit(":", 1)[1], 16) == local_port
                            and int(remote.rsplit(":", 1)[1], 16) == peer_port):
                        return int(fields[4].split(":")[0], 16)
        except FileNotFoundError:
            continue
    raise LookupError(f"no TCP connection {local_port} -> {peer_port}")
