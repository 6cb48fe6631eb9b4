"""The web server of the running service: waitress in a thread, with optional HTTPS.

Waitress speaks plain HTTP only (its documentation says so and points to a reverse proxy for
TLS). With ``[web] tls_cert``/``tls_key`` set, this module puts a small TLS front end in front
of it instead, so the device needs no nginx: an asyncio server (its own thread) accepts TLS on
the configured address, and pipes each connection's plain bytes to waitress, which then
listens on a loopback port only. The front end remembers which loopback connection belongs
to which client, so login rate limits still count per real client address. A reverse proxy
(nginx, Caddy) in front of plain HTTP on 127.0.0.1 remains possible; see the README.

``WebServer.start`` binds the socket (a port in use or a bad certificate raise
``WebServerError`` at once), starts serving and then fetches its own ``/healthz``: when it
returns, the page is really up, which is what READY waits for (F23).
"""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import logging
import socket
import ssl
import threading
from typing import Any

from flask import request
from waitress import wasyncore
from waitress.server import create_server

from maskwatch.config import EX_CONFIG, WebConfig
from maskwatch.web.app import create_app
from maskwatch.web.live import lower_thread_priority

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 3.0
SELF_CHECK_TIMEOUT_S = 10.0


class WebServerError(Exception):
    """The web server cannot start; the message says why and what to change. ``exit_code``
    is 78 (EX_CONFIG) for a bad certificate or key, which a restart cannot fix, and 1 for an
    address in use, which may free itself (systemd restarts the service)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 too
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise WebServerError(
            f"web page: cannot listen on {host}:{port}: {exc.strerror or exc}; set [web] bind "
            "and port to a free address of this device (or enabled = false)"
        ) from None
    sock.setblocking(False)
    return sock


def _loopback(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


class TlsFront:
    """TLS on the public socket, plain HTTP to waitress on loopback (one asyncio thread)."""

    HANDSHAKE_TIMEOUT_S = 10.0
    CHUNK = 65536

    def __init__(self, sock: socket.socket, cert: str, key: str, upstream: tuple[str, int]):
        self.sock = sock
        self.upstream = upstream
        self.peers: dict[int, str] = {}  # loopback source port -> client address
        try:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise WebServerError(
                f"web page: cannot load [web] tls_cert {cert!r} / tls_key {key!r}: {exc}",
                EX_CONFIG,
            ) from None
        self.ctx = ctx
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="web-tls", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise WebServerError(f"web page: TLS front end failed: {self._error}")

    def _run(self) -> None:
        lower_thread_priority()
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        server = await asyncio.start_server(
            self._handle, sock=self.sock, ssl=self.ctx,
            ssl_handshake_timeout=self.HANDSHAKE_TIMEOUT_S,
        )
        self._ready.set()
        async with server:
            await self._stopped.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("unknown",)
        port = None
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError as exc:
            log.warning("web TLS: upstream unreachable: %s", exc)
            writer.close()
            return
        try:
            port = up_writer.get_extra_info("sockname")[1]
            self.peers[port] = str(peer[0])
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            if port is not None:
                self.peers.pop(port, None)
            for w in (writer, up_writer):
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(self.CHUNK)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def client_for(self, local_port: int) -> str | None:
        return self.peers.get(local_port)

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(JOIN_TIMEOUT_S)


class WebServer:
    """The page, API and stream for a running ``Service`` (or anything with its narrow
    interface, see maskwatch.web.app)."""

    def __init__(self, service: Any, web: WebConfig) -> None:
        self.service = service
        self.web = web
        self.up = False
        self.port = web.port
        self._server: Any = None
        self._front: TlsFront | None = None
        self._thread: threading.Thread | None = None
        self.app: Any = None

    @property
    def scheme(self) -> str:
        return "https" if self.web.tls else "http"

    @property
    def url(self) -> str:
        host = self.web.bind
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}"

    def _client_ip(self) -> str:
        addr = request.remote_addr or "unknown"
        if self._front is not None and addr in ("127.0.0.1", "::1"):
            try:
                real = self._front.client_for(int(request.environ.get("REMOTE_PORT", "0")))
            except ValueError:
                real = None
            if real:
                return real
        return addr

    def start(self) -> None:
        web = self.web
        public = _bind(web.bind, web.port)
        self.port = public.getsockname()[1]
        try:
            if web.tls:
                inner = _bind("127.0.0.1", 0)
                self._front = TlsFront(public, web.tls_cert, web.tls_key, inner.getsockname()[:2])
            else:
                inner = public
            self.app = create_app(self.service, client_ip=self._client_ip, web=web)
            self.app.config["MASKWATCH_PORT"] = self.port
            store = getattr(self.service, "store", None)
            if web.public_url and store is not None:
                store.snapshot_url_format = web.public_url + "/api/events/{event_id}/snapshot.jpg"
            self._server = create_server(
                self.app, sockets=[inner], threads=web.max_viewers + 4, ident="maskwatch",
                channel_timeout=60, connection_limit=200, outbuf_high_watermark=1 << 20,
                clear_untrusted_proxy_headers=True, asyncore_use_poll=True,
            )
            self._thread = threading.Thread(target=self._serve, name="web", daemon=True)
            self._thread.start()
            if self._front is not None:
                self._front.start()
            self._self_check()
        except BaseException:
            self.stop()
            public.close()
            raise
        self.up = True
        log.info("web: listening on %s (login required%s)", self.url,
                 "" if self.app.extensions["maskwatch"]["passwords"].is_set
                 else "; NO PASSWORD SET: run maskwatch set-password")

    def _serve(self) -> None:
        lower_thread_priority()
        self._server.run()

    def _self_check(self) -> None:
        host = _loopback(self.web.bind)
        if self.web.tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, self.port, timeout=SELF_CHECK_TIMEOUT_S, context=ctx)
        else:
            conn = http.client.HTTPConnection(host, self.port, timeout=SELF_CHECK_TIMEOUT_S)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise WebServerError(f"web page: not answering on {self.url}: {exc}") from None
        finally:
            conn.close()
        if response.status not in (200, 503):
            raise WebServerError(f"web page: /healthz answered {response.status}")

    def stop(self) -> None:
        self.up = False
        if self.app is not None:
            self.app.extensions["maskwatch"]["hub"].close()  # ends the live streams
        if self._front is not None:
            self._front.stop()
        server = self._server
        if server is not None:
            try:
                server.task_dispatcher.shutdown(cancel_pending=True, timeout=2)
                # Closing every channel empties waitress's socket map, which ends its loop.
                wasyncore.close_all(server._map, ignore_all=True)
            except Exception:  # stopping must not raise
                log.exception("web: error while stopping")
            if self._thread is not None:
                self._thread.join(JOIN_TIMEOUT_S)
                if self._thread.is_alive():
                    log.warning("web: server thread did not stop within %.0f s", JOIN_TIMEOUT_S)
        self._server = None
