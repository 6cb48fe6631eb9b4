"""The settings page as an installer uses it (F28), on the real service (`maskwatch run` on the
demo scene) in Debian's Chromium: a bad value is shown at its field and never reaches the
file; a TCP destination added on the page receives a test alarm; a privacy zone drawn by
clicks is black on the live image; a schedule that excludes now pauses detection.

The screenshot for the README is written to docs/screenshots/settings.png.
"""

from __future__ import annotations

import socket
import time
from datetime import datetime

import cv2
import numpy as np
import pytest

from stream_helpers import discover, require_stream_stack, video_size
from test_tcp import JsonReceiver
from test_web_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    SCREENSHOTS,
    Service,
    _browser,
    _save_small_png,
    started_service,
)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    yield from started_service(tmp_path_factory.mktemp("settings"))


def live_jpeg(service: Service) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(service.fetch("/live.jpg"), np.uint8), cv2.IMREAD_GRAYSCALE)


def log_in_to_settings(page, service: Service, field: str, value: str) -> None:
    """Log in on the settings page and wait until the form shows ``field`` = ``value``."""
    page.goto(service.base + "/settings")
    page.fill("#password", PASSWORD)
    page.click("#login")
    page.wait_for_url("**/settings")
    page.wait_for_function(f"document.querySelector('[name=\"{field}\"]').value === '{value}'")


def test_settings_page_saves_validates_tests_outputs_draws_zones(service: Service) -> None:
    sync_api = _browser()
    listener = JsonReceiver()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 900},
                                          bypass_csp=True)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            log_in_to_settings(page, service, "detector.min_face", "40")

            # A value out of range: its field says what is allowed, the file is unchanged.
            before = service.config.read_bytes()
            detection = page.locator('form[data-section="detector"]')
            detection.locator('[name="detector.min_face"]').fill("5000")
            detection.locator('button[type="submit"]').click()
            error = detection.locator('.field-error[data-for="detector.min_face"]')
            error.wait_for(state="visible")
            assert "less than or equal" in error.inner_text()
            assert service.config.read_bytes() == before

            # A TCP destination added on the page gets a test alarm through the real output.
            page.click("#tcp-add")
            row = page.locator("#tcp-table tbody tr").last
            row.locator('[data-key="host"]').fill("127.0.0.1")
            row.locator('[data-key="port"]').fill(str(listener.port))
            row.locator('[data-key="format"]').fill("json")
            outputs = page.locator("#outputs-form")
            outputs.locator('button[type="submit"]').click()
            outputs.locator(".saved").filter(has_text="Saved").wait_for()
            name = f"tcp:127.0.0.1:{listener.port}"
            item = page.locator(f'[data-test="{name}"]')
            deadline = time.monotonic() + 20
            while item.count() == 0:  # the outputs restart on the reload the save started
                assert time.monotonic() < deadline, "the new destination never ran"
                time.sleep(0.5)
                page.evaluate("loadTests()")
            item.locator("button").click()
            item.locator(".result").filter(has_text="delivered").wait_for(timeout=15_000)
            assert [m["class"] for m in listener.messages] == ["test"]
            assert listener.messages[0]["event_id"].startswith("test-")

            # A webhook's secret is write-only: saved, never shown, kept by the next save.
            page.click("#webhook-add")
            hook = page.locator("#webhook-table tbody tr").last
            hook.locator('[data-key="url"]').fill("http://127.0.0.1:9/hook")
            hook.locator('[data-key="secret"]').fill("hmac-key-123")
            outputs.locator('button[type="submit"]').click()
            outputs.locator(".saved").filter(has_text="Saved").wait_for()
            assert 'secret = "hmac-key-123"' in service.config.read_text()
            page.reload()
            secret = page.locator('#webhook-table [data-key="secret"]')
            secret.wait_for()
            assert secret.input_value() == "" and "keep" in secret.get_attribute("placeholder")
            assert "hmac-key-123" not in page.content()
            page.locator('#outputs-form button[type="submit"]').click()
            page.locator("#outputs-form .saved").filter(has_text="Saved").wait_for()
            assert 'secret = "hmac-key-123"' in service.config.read_text()

            # A privacy zone drawn by clicks is black on the live image.
            page.wait_for_function("document.getElementById('still').naturalWidth > 0")
            canvas = page.locator("#zones")
            box = canvas.bounding_box()
            for fx, fy in ((0.05, 0.05), (0.35, 0.05), (0.35, 0.35), (0.05, 0.35)):
                canvas.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
            page.click("#zone-close")
            privacy = page.locator("#privacy-form")
            privacy.locator('button[type="submit"]').click()
            privacy.locator(".saved").filter(has_text="Saved").wait_for()
            deadline = time.monotonic() + 20
            while True:
                image = live_jpeg(service)
                h, w = image.shape
                inside = image[int(h * 0.1):int(h * 0.3), int(w * 0.1):int(w * 0.3)]
                if inside.mean() < 8:
                    break
                assert time.monotonic() < deadline, f"zone not black: mean {inside.mean():.0f}"
                time.sleep(0.5)
            page.evaluate("window.scrollTo(0, 0)")
            _save_small_png(page.screenshot(full_page=True), SCREENSHOTS / "settings.png")

            # A schedule that excludes now: the live page says outside the schedule.
            grid = page.locator("#schedule-grid")
            for day in range(7):  # drag across each row: every hour off
                first = grid.locator("tr").nth(day + 1).locator("td").first.bounding_box()
                last = grid.locator("tr").nth(day + 1).locator("td").last.bounding_box()
                page.mouse.move(first["x"] + 3, first["y"] + 3)
                page.mouse.down()
                page.mouse.move(last["x"] + 3, last["y"] + 3, steps=30)
                page.mouse.up()
            now = datetime.now().astimezone()
            other = grid.locator("tr").nth(now.weekday() + 1).locator("td").nth(
                (now.hour + 12) % 24)
            other.click()
            assert grid.locator("td.on").count() == 1
            schedule = page.locator("#schedule-form")
            schedule.locator('button[type="submit"]').click()
            schedule.locator(".saved").filter(has_text="Saved").wait_for()
            page.goto(service.base + "/live")
            page.locator("#state").filter(has_text="outside schedule").wait_for(timeout=20_000)
            assert not errors, errors
        finally:
            browser.close()


def test_the_stream_is_turned_on_from_the_page_and_its_password_stays_hidden(
        service: Service) -> None:
    """F28 for F30: the stream form saves, the reload starts the stream with the login typed
    on the page, and the page never shows that password again."""
    require_stream_stack()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sync_api = _browser()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(bypass_csp=True).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            log_in_to_settings(page, service, "stream.port", "8554")
            form = page.locator('form[data-section="stream"]')
            assert not form.locator('[name="stream.enabled"]').is_checked()
            form.locator('[name="stream.enabled"]').check()
            form.locator('[name="stream.port"]').fill(str(port))
            form.locator('[name="stream.width"]').fill("640")
            form.locator('[name="stream.height"]').fill("360")
            form.locator('[name="stream.user"]').fill("nvr")
            form.locator('[name="stream.password"]').fill("page-pa55word")
            form.locator('button[type="submit"]').click()
            page.wait_for_function("document.querySelector('form[data-section=\"stream\"] "
                                   ".saved').textContent === 'Saved and applied.'")
            assert form.locator('[name="stream.password"]').input_value() == ""

            url = f"rtsp://nvr:page-pa55word@127.0.0.1:{port}/live"
            deadline = time.monotonic() + 60
            while video_size(discover(url)) != (640, 360):
                assert time.monotonic() < deadline, "the stream did not start after the save"
                time.sleep(1.0)

            page.reload()
            page.wait_for_function(
                f"document.querySelector('[name=\"stream.port\"]').value === '{port}'")
            secret = form.locator('[name="stream.password"]')
            assert secret.input_value() == "" and "set" in secret.get_attribute("placeholder")
            assert "page-pa55word" not in page.content()
            assert 'password = "page-pa55word"' in service.config.read_text()
            assert errors == [], errors
        finally:
            browser.close()
