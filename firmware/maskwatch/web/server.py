"""The web server of the running service: waitress in a thread, with optional HTTPS.

Waitress speaks plain HTTP only (its documentation says so and points to a reverse proxy for
TLS). With ``[web] tls_cert``/``tls_key`` set, this module puts a small TLS front end in front
of it instead, so the device needs no nginx: an asyncio server (its own thread) accepts TLS on
the configured address, and pipes each connection's plain bytes to waitress, which then
listens on a loopback port only. The front end remembers which loopback connection belongs
to which client, so login rate limits still count per real client address. A reverse proxy
(nginx, Caddy) in front of plain HTTP on 127.0.0.1 remains possible; see the README.

Limits against a hostile client (a neighbour on the network), over HTTP and HTTPS alike:
request heads and bodies are refused from their size before they are read, so nothing is
spooled to the SD card; each client address may hold ``[web] connections_per_client``
connections; a request must arrive whole within ``request_timeout_s`` (over HTTPS the TLS
handshake too); a client that takes no response data for ``send_timeout_s`` (a live viewer
that stopped reading) is disconnected, which frees the server thread writing to it. Waitress
has none of the last three (only a total connection limit and an inactivity timeout, which a
client sending a byte now and then never reaches), hence the subclasses below.

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
import struct
import threading
import time
from collections import Counter
from typing import Any

from flask import request
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer

from maskwatch.config import EX_CONFIG, WebConfig
from maskwatch.web.app import create_app
from maskwatch.web.live import lower_thread_priority

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 3.0
SELF_CHECK_TIMEOUT_S = 10.0
LOOPBACK = "127.0.0.1"  # where waitress listens behind the TLS front end
MAX_CONNECTIONS = 200  # in all; connections_per_client keeps one address well below it
MAX_HEADER_BYTES = 16 * 1024  # request line and headers; a browser sends about 1 KB
IDLE_TIMEOUT_S = 60  # a kept-alive connection between requests
OUTBUF_BYTES = 1 << 20  # unsent response per connection before its thread waits
NOTICE_INTERVAL_S = 60.0
LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets the connection


class WebServerError(Exception):
    """The web server cannot start; the message says why and what to change. ``exit_code``
    is 78 (EX_CONFIG) for a bad certificate or key, which a restart cannot fix, and 1 for an
    address in use, which may free itself (systemd restarts the service)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Notices:
    """A warning per kind of refused or dropped connection at most once a minute, the rest
    at debug level: a hostile client must not be able to flood the journal."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            loud = now - self._last.get(kind, float("-inf")) >= NOTICE_INTERVAL_S
            if loud:
                self._last[kind] = now
        log.log(logging.WARNING if loud else logging.DEBUG, message, *args)


_notice = _Notices()


def _dropped(client: str, reason: str) -> None:
    _notice("deadline", "web: closed the connection from %s: it %s", client, reason)


class ConnectionCap:
    """Open connections per client address, at most ``limit`` each (0: no limit), so one
    client cannot take all ``MAX_CONNECTIONS`` and lock everyone else out. Shared by waitress
    and the TLS front end (two threads); each connection counts once, under the address of
    its real client."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def admit(self, client: str) -> bool:
        with self._lock:
            if not self.limit or self._open[client] < self.limit:
                self._open[client] += 1
                return True
        _notice("cap", "web: refused a connection from %s: it has %d open already "
                "([web] connections_per_client)", client, self.limit)
        return False

    def release(self, client: str) -> None:
        with self._lock:
            self._open[client] -= 1
            if self._open[client] <= 0:
                del self._open[client]


class _RequestParser(HTTPRequestParser):
    """Waitress's request parser, stamped with when its request began, which is where the
    request deadline counts from."""

    def __init__(self, adj: Adjustments) -> None:
        super().__init__(adj)
        self.began = time.monotonic()


class _Channel(HTTPChannel):
    """One client connection, with the deadlines waitress lacks: a request must be complete
    within request_timeout_s of its first byte (the first request: of the accept), and
    output must move: none taken by the socket for send_timeout_s ends the connection, and
    with it the task thread blocked writing to it (waitress raises ClientDisconnected there,
    which closes the response, so a live viewer's slot is given back)."""

    parser_class = _RequestParser
    server: _Server

    def __init__(self, server: _Server, sock: socket.socket, addr: Any, adj: Adjustments,
                 client: str, counted: bool, map: dict | None = None) -> None:
        super().__init__(server, sock, addr, adj, map)
        self.client = client
        self.counted = counted  # False for the TLS front end's connections: it counts them
        self.request = self.parser_class(adj)  # the first request's clock starts at accept
        self.waiting_since: float | None = None  # output pending, none sent since

    def _flush_some(self, do_close: bool = True) -> bool:
        sent = super()._flush_some(do_close=do_close)
        if not self.total_outbufs_len:
            self.waiting_since = None
        elif sent or self.waiting_since is None:
            self.waiting_since = time.monotonic()
        return sent

    def overdue(self, now: float) -> str | None:
        """Why this connection must be closed now, or None."""
        server = self.server
        waiting = self.waiting_since
        if waiting is not None and now - waiting > server.send_timeout_s:
            return f"took no response data for {server.send_timeout_s:g} s"
        partial = self.request
        if not self.requests and partial is not None and (
                now - partial.began > server.request_timeout_s):
            return f"sent no complete request within {server.request_timeout_s:g} s"
        return None

    def cut_off(self) -> None:
        """End the connection from the maintenance tick, which runs while waitress builds its
        poll set: the socket is shut down, not closed, so its number stays valid until the
        loop's own handler closes it on the hang-up this causes (a number closed and reused
        in between would take the old socket's events). Closing then resets it, dropping
        what it still holds, as nginx's reset_timedout_connection does."""
        self.will_close = True
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:  # gone already; the loop closes it all the same
            pass

    def del_channel(self, map: dict | None = None) -> None:
        super().del_channel(map)
        if self.counted:
            self.counted = False
            self.server.cap.release(self.client)


class _Server(TcpWSGIServer):
    """Waitress on an already bound socket, with the per-client cap applied at accept and the
    deadlines checked every second (waitress's maintenance tick)."""

    channel_class = _Channel

    def __init__(self, app: Any, sock: socket.socket, web: WebConfig, cap: ConnectionCap,
                 front: TlsFront | None) -> None:
        self.cap = cap
        self.front = front
        self.request_timeout_s = web.request_timeout_s
        self.send_timeout_s = web.send_timeout_s
        # The largest body any route takes (routes refuse more for themselves).
        body_limit = int(app.config.get("MASKWATCH_MAX_UPLOAD", app.config["MAX_CONTENT_LENGTH"]))
        adj = Adjustments(
            sockets=[sock], threads=web.max_viewers + 4, ident="maskwatch",
            channel_timeout=IDLE_TIMEOUT_S, connection_limit=MAX_CONNECTIONS,
            clear_untrusted_proxy_headers=True, asyncore_use_poll=True, cleanup_interval=1,
            # Refused with 431/413 from the head, before any body is read: from the
            # Content-Length alone, or as soon as a chunked body passes the limit. Waitress
            # counts "this size or more", Flask "more than": hence the + 1.
            max_request_header_size=MAX_HEADER_BYTES, max_request_body_size=body_limit + 1,
            # Neither is reached, so nothing is written to a temporary file (the SD card):
            # a body ends at the limit plus one 8 KB read; a response's thread waits while
            # more than the watermark is unsent, so a buffer holds the watermark plus one
            # write (a JPEG) at most.
            inbuf_overflow=4 * body_limit,
            outbuf_high_watermark=OUTBUF_BYTES, outbuf_overflow=2 * OUTBUF_BYTES,
        )
        super().__init__(app, map={}, _sock=sock, adj=adj, bind_socket=False,
                         sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()))

    def handle_accept(self) -> None:
        try:
            pair = self.accept()
        except OSError:  # as waitress: the client may be gone already
            return
        if pair is None:
            return
        conn, addr = pair
        try:
            self.set_socket_options(conn)
        except OSError:
            conn.close()
            return
        real = self.front.client_for(addr) if self.front is not None else None
        client = real or str(addr[0])
        if real is None and not self.cap.admit(client):
            conn.close()
            return
        self.channel_class(self, conn, addr, self.adj, client, real is None, map=self._map)

    def maintenance(self, now: float) -> None:
        super().maintenance(now)
        tick = time.monotonic()
        for channel in list(self.active_channels.values()):
            reason = channel.overdue(tick)
            if reason is not None:
                _dropped(channel.client, reason)
                channel.cut_off()


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
    """TLS on the public socket, plain HTTP to waitress on loopback (one asyncio thread).

    A connection is counted against the cap when accepted, before any TLS work, and must
    finish its handshake within request_timeout_s. Towards the client each write must be
    taken within send_timeout_s, as in waitress: else a client that stopped reading would
    hold its connection here for ever, with waitress's output in this process's buffers."""

    CHUNK = 65536

    def __init__(self, sock: socket.socket, web: WebConfig, cap: ConnectionCap,
                 upstream: tuple[str, int]) -> None:
        self.sock = sock
        self.upstream = upstream
        self.cap = cap
        self.handshake_timeout_s = web.request_timeout_s
        self.send_timeout_s = web.send_timeout_s
        self.peers: dict[int, str] = {}  # loopback source port -> client address
        try:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(web.tls_cert, web.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise WebServerError(
                f"web page: cannot load [web] tls_cert {web.tls_cert!r} / tls_key "
                f"{web.tls_key!r}: {exc}", EX_CONFIG,
            ) from None
        self.ctx = ctx
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._tasks: set[asyncio.Task] = set()
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
        accepting = asyncio.create_task(self._accept())
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            accepting.cancel()
            await asyncio.wait([accepting])  # off the socket's file number before closing it
            self.sock.close()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, addr = await loop.sock_accept(self.sock)
            except OSError as exc:  # e.g. out of file descriptors: wait for some to close
                _notice("accept", "web TLS: cannot accept a connection: %s", exc)
                await asyncio.sleep(1.0)
                continue
            client = str(addr[0])
            if not self.cap.admit(client):
                conn.close()
                continue
            task = asyncio.create_task(self._serve(conn, client))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: socket.socket, client: str) -> None:
        try:
            streams = await self._handshake(conn, client)
            if streams is not None:
                await self._relay(*streams, client)
        finally:
            self.cap.release(client)

    async def _handshake(self, conn: socket.socket, client: str
                         ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        # TLS on a socket accepted by hand, so the cap comes before the handshake (Python
        # 3.10 has no StreamWriter.start_tls); this is how asyncio.start_server builds them.
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=self.CHUNK)
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=self.ctx,
                ssl_handshake_timeout=self.handshake_timeout_s)
        except ConnectionAbortedError:  # what asyncio raises when the handshake timed out
            conn.close()
            _dropped(client, f"made no TLS handshake within {self.handshake_timeout_s:g} s")
            return None
        except OSError as exc:  # a browser not trusting the certificate, a port scan
            conn.close()
            log.debug("web TLS: no session with %s: %s", client, exc)
            return None
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     client: str) -> None:
        loop = asyncio.get_running_loop()
        up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        up.setblocking(False)
        port = None
        try:
            try:
                up.bind((LOOPBACK, 0))
                port = up.getsockname()[1]
                self.peers[port] = client  # before connecting: waitress looks it up at accept
                await loop.sock_connect(up, self.upstream)
                up_reader, up_writer = await asyncio.open_connection(sock=up)
            except OSError as exc:
                log.warning("web TLS: upstream unreachable: %s", exc)
                writer.transport.abort()
                return
            pipes = {asyncio.create_task(self._pipe(reader, up_writer)),
                     asyncio.create_task(self._pipe(up_reader, writer, client))}
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in pipes:
                    task.cancel()
                up_writer.transport.abort()
            await self._close(writer)
        except asyncio.CancelledError:  # the front end stops: no time for goodbyes
            writer.transport.abort()
            raise
        finally:
            up.close()  # if no transport took it over (which has closed it already)
            if port is not None:
                self.peers.pop(port, None)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    client: str | None = None) -> None:
        """Copy until the end or an error; towards a ``client`` within the send deadline."""
        try:
            while data := await reader.read(self.CHUNK):
                writer.write(data)
                if client is None:
                    await writer.drain()
                else:
                    await self._drain(writer)
        except asyncio.TimeoutError:
            _dropped(str(client), f"took no response data for {self.send_timeout_s:g} s")
            writer.transport.abort()
        except OSError:  # the other end is gone (reset, TLS error)
            pass

    async def _drain(self, writer: asyncio.StreamWriter) -> None:
        """Wait for the client to take what is buffered for it; TimeoutError when it took
        none for the send deadline (a slow client taking some is waited for, as waitress
        does)."""
        transport = writer.transport
        while True:
            unsent = transport.get_write_buffer_size()
            try:
                await asyncio.wait_for(writer.drain(), self.send_timeout_s)
                return
            except asyncio.TimeoutError:
                if transport.get_write_buffer_size() >= unsent:
                    raise

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        """Close gracefully, so the end of a response still goes out, but cut the connection
        off should the client not take it within the send deadline. Until then it still
        counts against the client's cap."""
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), self.send_timeout_s)
        except (asyncio.TimeoutError, OSError):
            pass  # cut off below
        finally:
            writer.transport.abort()

    def client_for(self, addr: Any) -> str | None:
        """The real client of a loopback connection ``addr`` from this front end, else None."""
        return self.peers.get(addr[1]) if addr[0] == LOOPBACK else None

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
        self._server: _Server | None = None
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
        if self._front is not None:
            port = request.environ.get("REMOTE_PORT", "0")
            try:
                real = self._front.client_for((addr, int(port)))
            except ValueError:
                real = None
            if real:
                return real
        return addr

    def start(self) -> None:
        web = self.web
        public = _bind(web.bind, web.port)
        self.port = public.getsockname()[1]
        bound = [public]
        try:
            cap = ConnectionCap(web.connections_per_client)
            inner = public
            if web.tls:
                inner = _bind(LOOPBACK, 0)
                bound.append(inner)
                self._front = TlsFront(public, web, cap, inner.getsockname()[:2])
            self.app = create_app(self.service, client_ip=self._client_ip, web=web)
            self.app.config["MASKWATCH_PORT"] = self.port
            store = getattr(self.service, "store", None)
            if web.public_url and store is not None:
                store.snapshot_url_format = web.public_url + "/api/events/{event_id}/snapshot.jpg"
            self._server = _Server(self.app, inner, web, cap, self._front)
            self._thread = threading.Thread(target=self._serve, name="web", daemon=True)
            self._thread.start()
            if self._front is not None:
                self._front.start()
            self._self_check()
        except BaseException:
            self.stop()
            for sock in bound:
                sock.close()
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
