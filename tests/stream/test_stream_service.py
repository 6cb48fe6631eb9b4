"""The stream of the running service (`maskwatch run` on a looping video): what a recorder
gets with and without the login, and that a recorder that stops reading holds up neither
detection nor another recorder."""

from __future__ import annotations

import json
import signal
import socket
import time

from conftest import require_data
from rtsp_client import RtspTcpClient, unsent_bytes
from stream_helpers import alarm_box_pixels, discover, require_stream_stack, video_size
from test_service import START_TIMEOUT_S, get, service_factory, set_password, web_url
from test_web_browser import CHROMIUM, CHROMIUM_ARGS, _browser

__all__ = ["service_factory"]  # the fixture, used by name below

WAIT_S = 60.0
PAGE_PASSWORD = "correct horse"


def video_service(service_factory, stream_toml: str):
    require_stream_stack()
    video = require_data("videos", "gituatu_nomask.mp4")
    service = service_factory(
        f'[source]\nkind = "file"\npath = "{video}"\nloop = true\n'
        f'[stream]\nenabled = true\nbind = "127.0.0.1"\nport = 0\n{stream_toml}')
    service.wait_message("READY=1", START_TIMEOUT_S)
    return service


def stream_port(service, after: int = 0) -> int:
    line = service.wait_line("stream: rtsp on 127.0.0.1:", 30, after=after)
    return int(line.split("stream: rtsp on 127.0.0.1:", 1)[1].split(",", 1)[0])


def status(service) -> dict:
    code, data = get(web_url(service) + "/api/status", auth=PAGE_PASSWORD)
    assert code == 200, data
    return data


def status_page_stream_card(base: str) -> str:
    """The text of the status page's "Video for recorders" card, as a browser shows it."""
    sync_api = _browser()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(base + "/status")
            page.fill("#password", PAGE_PASSWORD)
            page.click("#login")
            page.wait_for_selector("#stream dd")
            return page.inner_text("#stream")
        finally:
            browser.close()


def test_recorders_get_h264_at_the_configured_size_with_the_login_only(service_factory):
    service = video_service(
        service_factory, 'width = 640\nheight = 360\nuser = "nvr"\npassword = "rtsp-pa55word"\n')
    port = stream_port(service)
    for mount in ("/live", "/boxes"):
        report = discover(f"rtsp://nvr:rtsp-pa55word@127.0.0.1:{port}{mount}")
        assert video_size(report) == (640, 360), report
    # The looping video shows one unmasked man: /boxes has his alarm box, /live does not.
    login = f"rtsp://nvr:rtsp-pa55word@127.0.0.1:{port}"
    assert alarm_box_pixels(login + "/boxes") > 500
    assert alarm_box_pixels(login + "/live") < 50
    for refused in (f"rtsp://127.0.0.1:{port}/live", f"rtsp://nvr:guess@127.0.0.1:{port}/live"):
        report = discover(refused)
        assert video_size(report) is None and "Unauthorized" in report, report

    set_password(service, PAGE_PASSWORD)
    shown = status(service)["stream"]
    assert shown["running"] and shown["port"] == port and shown["user"] == "nvr"
    assert shown["auth"] == "digest" and shown["mounts"] == ["/live", "/boxes"]
    assert shown["clients_served"] >= 4
    everything = json.dumps(shown) + "\n".join(service.lines)
    assert "rtsp-pa55word" not in everything
    page_text = status_page_stream_card(web_url(service))
    assert f"rtsp://127.0.0.1:{port}/live" in page_text
    assert f"rtsp://127.0.0.1:{port}/boxes" in page_text
    assert "digest, user nvr" in page_text and "rtsp-pa55word" not in page_text

    # A new password on reload: the stream restarts with it, detection untouched.
    service.config.write_text(service.config.read_text().replace("rtsp-pa55word", "n3w-pa55"))
    mark = len(service.lines)
    service.proc.send_signal(signal.SIGHUP)
    service.wait_line("config reloaded", 30, after=mark)
    port = stream_port(service, after=mark)
    assert video_size(discover(f"rtsp://nvr:n3w-pa55@127.0.0.1:{port}/live")) == (640, 360)
    assert "Unauthorized" in discover(f"rtsp://nvr:rtsp-pa55word@127.0.0.1:{port}/live")


def test_a_recorder_that_stops_reading_stalls_neither_detection_nor_another(service_factory):
    # The hung client must stay connected for the whole test (the timeout that drops it is
    # tested in test_recorder_stream).
    service = video_service(service_factory, "width = 640\nheight = 360\nbitrate_kbps = 8000\n"
                                             "stalled_client_timeout_s = 3600\n")
    port = stream_port(service)
    set_password(service, PAGE_PASSWORD)

    # A recorder that plays and then never reads: a tiny receive window, so the device's
    # socket fills up with what it cannot send, and stays full.
    hung = RtspTcpClient("127.0.0.1", port, "/live", receive_buffer=4096)
    hung.play()
    deadline = time.monotonic() + WAIT_S
    previous = -1
    while True:
        queued = unsent_bytes(port, hung.local_port)
        if queued > 100_000 and queued == previous:
            break
        assert time.monotonic() < deadline, f"the hung client's queue never filled ({queued})"
        previous = queued
        time.sleep(1.0)

    processed = status(service)["frames_processed"]
    reader = RtspTcpClient("127.0.0.1", port, "/live")
    reader.play()
    assert reader.count_frames(45, WAIT_S) == 45  # 3 s of video, within a minute
    deadline = time.monotonic() + WAIT_S
    while status(service)["frames_processed"] < processed + 45:
        assert time.monotonic() < deadline, "detection stalled"
        time.sleep(0.5)
    assert unsent_bytes(port, hung.local_port) > 100_000  # still connected, still not reading
    assert status(service)["stream"]["clients"] == 2

    # The service stops in time with both still connected, the hung one included.
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(10) == 0
    reader.close()
    hung.close()


def test_a_stream_that_cannot_start_leaves_detection_running_and_is_retried_on_reload(
        service_factory):
    """The stream's port is taken at start: the service runs anyway, says why on the status
    page and in /healthz, and a reload once the port is free starts the stream."""
    require_stream_stack()
    video = require_data("videos", "gituatu_nomask.mp4")
    blocker = socket.create_server(("127.0.0.1", 0))
    port = blocker.getsockname()[1]
    service = service_factory(
        f'[source]\nkind = "file"\npath = "{video}"\nloop = true\n'
        f'[stream]\nenabled = true\nbind = "127.0.0.1"\nport = {port}\n')
    service.wait_message("READY=1", START_TIMEOUT_S)
    service.wait_line("stream: not available, detection and alarms go on without it", 30)
    service.wait_line("ALARM ", 60)  # detection goes on
    code, health = get(web_url(service) + "/healthz")
    assert code == 503 and "video stream not running" in health["problems"]
    set_password(service, PAGE_PASSWORD)
    shown = status(service)["stream"]
    assert not shown["running"] and f"127.0.0.1:{port}" in shown["error"]

    blocker.close()
    mark = len(service.lines)
    service.proc.send_signal(signal.SIGHUP)
    service.wait_line("config reloaded", 30, after=mark)
    assert stream_port(service, after=mark) == port
    assert video_size(discover(f"rtsp://127.0.0.1:{port}/live")) == (1280, 720)
    assert status(service)["stream"]["running"]
