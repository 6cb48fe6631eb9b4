"""GStreamer's RTSP server on its own GLib main loop thread, one shared media per mount.

Each mount's factory is *shared*: all clients of ``/live`` get the packets of one encoding
pipeline, so a second client costs sending, not encoding. The factory builds the pipeline
when the first client asks for the mount and the server tears it down after the last one
left; the ``media-configure`` and ``unprepared`` signals hand its ``appsrc`` to the mount's
:class:`MountFeed` and take it back. The feed thread makes GStreamer's streaming threads
"nicer" (:func:`nice_streaming_threads`), so encoding gives way to detection on a busy CPU.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from maskwatch.config import StreamConfig
from maskwatch.stream.encoder import Encoder
from maskwatch.stream.gst_stack import RtspStack, StreamUnavailable
from maskwatch.stream.mount_feed import MountFeed

log = logging.getLogger(__name__)

ROLE = "recorder"
REALM = "maskwatch"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
# Sessions of clients that vanished (a recorder switched off, UDP with no more RTCP) expire
# after the server's session timeout (60 s); removing them this often stops their encoding.
SESSION_CLEANUP_S = 10
STREAM_NICE = 5  # as the web page's threads: detection first
SOURCE = "frames"  # the appsrc's name; GStreamer names its streaming thread "frames:src"
STREAMING_THREAD = f"{SOURCE}:src"
TASKS = "/proc/self/task"
# appsrc keeps this many frames; when full the oldest goes (never blocks the caller).
APPSRC_FRAMES = 2


def media_pipeline(config: StreamConfig, encoder: Encoder) -> str:
    """The launch text of one mount's media: RGB frames in, scaled to the configured size
    with black borders (never stretched), repeated or dropped to the configured rate, H.264
    in RTP out."""
    return (
        f"( appsrc name={SOURCE} is-live=true format=time do-timestamp=true block=false "
        f"max-buffers={APPSRC_FRAMES} max-bytes=0 max-time=0 leaky-type=downstream "
        "! videoscale add-borders=true ! videoconvert ! videorate "
        f"! video/x-raw,format=I420,width={config.width},height={config.height},"
        f"pixel-aspect-ratio=1/1,framerate={config.fps}/1 "
        f"! {encoder.pipeline} ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )


def streaming_thread_ids() -> list[int]:
    """The ids of this process's threads that GStreamer named after the media's ``appsrc``:
    its streaming thread and the encoder's workers, which inherit the name (none: not Linux)."""
    found = []
    try:
        tasks = os.listdir(TASKS)
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"{TASKS}/{task}/comm", encoding="utf-8") as comm:
                if comm.read().startswith(STREAMING_THREAD):
                    found.append(int(task))
        except (OSError, ValueError):  # the thread ended meanwhile
            continue
    return found


def nice_streaming_threads() -> None:
    """Lower the priority of the media's streaming threads. Done from the feed thread, not by
    a bus sync handler in the streaming threads themselves: Python there must take the GIL
    from inside the pipeline, and with that handler a new client sometimes got no frame for
    20 s and then "503 Service Unavailable" (2 runs in 11 of a service test)."""
    for tid in streaming_thread_ids():
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < STREAM_NICE:
                os.setpriority(os.PRIO_PROCESS, tid, STREAM_NICE)
        except OSError:  # the thread ended meanwhile, or not allowed
            continue


class RtspServer:
    """The server and its loop thread: ``start`` binds (StreamUnavailable when it cannot),
    ``stop`` disconnects every client and ends the thread; ``clients`` counts connections."""

    def __init__(self, stack: RtspStack, config: StreamConfig, encoder: Encoder,
                 feeds: list[MountFeed]) -> None:
        self._stack = stack
        self._config = config
        self._encoder = encoder
        self.feeds = feeds
        self._lock = threading.Lock()
        self._clients = 0
        self.clients_served = 0
        self.port = config.port
        self._context = stack.GLib.MainContext.new()
        self._loop = stack.GLib.MainLoop.new(self._context, False)
        self._server = self._build_server()
        self._source_id = 0
        self._cleanup: Any = None
        self._thread = threading.Thread(target=self._run, name="rtsp-server", daemon=True)

    @property
    def clients(self) -> int:
        with self._lock:
            return self._clients

    def _build_server(self) -> Any:
        rtsp = self._stack.GstRtspServer
        server = rtsp.RTSPServer()
        server.set_address(self._config.bind)
        server.set_service(str(self._config.port))
        if self._config.credentials:
            server.set_auth(self._auth())
        mounts = server.get_mount_points()
        launch = media_pipeline(self._config, self._encoder)
        for feed in self.feeds:
            factory = rtsp.RTSPMediaFactory()
            factory.set_launch(launch)
            factory.set_shared(True)
            factory.connect("media-configure", self._media_configure, feed)
            if self._config.credentials:
                permissions = rtsp.RTSPPermissions()
                permissions.add_permission_for_role(ROLE, "media.factory.access", True)
                permissions.add_permission_for_role(ROLE, "media.factory.construct", True)
                factory.set_permissions(permissions)
            mounts.add_factory(feed.path, factory)
        server.connect("client-connected", self._client_connected)
        return server

    def _auth(self) -> Any:
        rtsp = self._stack.GstRtspServer
        auth = rtsp.RTSPAuth()
        token = rtsp.RTSPToken()
        token.set_string("media.factory.role", ROLE)
        user, password = self._config.user, self._config.password
        if self._config.auth == "digest":
            auth.add_digest(user, password, token)
            auth.set_supported_methods(self._stack.GstRtsp.RTSPAuthMethod.DIGEST)
        else:
            auth.add_basic(rtsp.RTSPAuth.make_basic(user, password), token)
            auth.set_supported_methods(self._stack.GstRtsp.RTSPAuthMethod.BASIC)
        auth.set_realm(REALM)
        return auth

    # ------------------------------------------------------------------ GLib thread

    def _media_configure(self, _factory: Any, media: Any, feed: MountFeed) -> None:
        appsrc = media.get_element().get_by_name(SOURCE)
        media.connect("unprepared", lambda _media: feed.detach(appsrc))
        feed.attach(appsrc)

    def _client_connected(self, _server: Any, client: Any) -> None:
        with self._lock:
            self._clients += 1
            self.clients_served += 1
        client.connect("closed", self._client_closed)
        self._drop_when_stalled(client.get_connection().get_read_socket())

    def _drop_when_stalled(self, sock: Any) -> None:
        """A client that stops reading keeps its TCP connection, and with it its session
        and the mount's encoder, for ever (RTSP sessions over TCP do not expire). With
        TCP_USER_TIMEOUT the kernel ends a connection whose data stays unacknowledged, or
        whose receive window stays shut, this long; keepalive finds a peer that vanished."""
        timeout_ms = self._config.stalled_client_timeout_s * 1000
        try:
            sock.set_option(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)
            sock.set_keepalive(True)
        except Exception as exc:  # GLib.Error: not TCP, or not supported here
            log.warning("stream: cannot set a timeout for stalled clients: %s", exc)

    def _client_closed(self, _client: Any) -> None:
        with self._lock:
            self._clients -= 1

    def _run(self) -> None:
        self._context.push_thread_default()
        try:
            self._loop.run()
        finally:
            self._context.pop_thread_default()

    # ------------------------------------------------------------------ service side

    def start(self) -> None:
        """Bind and serve; StreamUnavailable when the address cannot be used."""
        self._source_id = self._server.attach(self._context)
        if not self._source_id:
            raise StreamUnavailable(
                f"cannot listen on {self._config.bind}:{self._config.port} for RTSP (port in "
                "use, or an address this device does not have): change [stream] bind or port")
        self.port = self._server.get_bound_port()
        self._cleanup = self._stack.GLib.timeout_source_new_seconds(SESSION_CLEANUP_S)
        self._cleanup.set_callback(self._remove_expired_sessions)
        self._cleanup.attach(self._context)
        self._thread.start()

    def _remove_expired_sessions(self, *_: Any) -> bool:
        removed = self._server.get_session_pool().cleanup()
        if removed:
            log.info("stream: %d expired session(s) removed", removed)
        return True

    def stop(self) -> None:
        """Disconnect every client (their media stop) and end the loop thread."""
        if not self._thread.is_alive():
            return
        done = threading.Event()

        def close_all() -> bool:
            remove = self._stack.GstRtspServer.RTSPFilterResult.REMOVE
            self._server.client_filter(lambda _server, _client: remove)
            source = self._context.find_source_by_id(self._source_id)
            if source is not None:
                source.destroy()
            self._cleanup.destroy()
            done.set()
            return False

        self._context.invoke_full(self._stack.GLib.PRIORITY_DEFAULT, close_all)
        if not done.wait(STOP_TIMEOUT_S):
            log.warning("stream: clients not closed within %.0f s", STOP_TIMEOUT_S)
        self._loop.quit()
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("stream: server thread did not stop within %.0f s", STOP_TIMEOUT_S)
