"""The web page as a person uses it (F19-F21), on the real service: `maskwatch run` on the demo
scene with a temporary state directory and a password set, driven by Playwright in Debian's
Chromium. Also: three live viewers do not slow detection (acceptance 2), and an open page
recovers by itself when the service restarts (F13).

Screenshots for the README are written to docs/screenshots/ (live.png, events.png).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import MODELS, REPO, require_models

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
PASSWORD = "demo-password-123"
SCREENSHOTS = REPO / "docs" / "screenshots"
START_TIMEOUT_S = 120


def _hex(colour: np.ndarray) -> str:
    return "#%02x%02x%02x" % tuple(int(c) for c in colour)


class Service:
    """`maskwatch run` in a subprocess; stderr is collected for the port and for failures."""

    def __init__(self, tmp: Path, port: int = 0) -> None:
        self.tmp = tmp
        self.state = tmp / "state"
        self.config = tmp / "maskwatch.toml"
        self.config.write_text(
            f'[paths]\nmodels_dir = "{MODELS}"\n[source]\nkind = "demo"\n'
            f'[storage]\nstate_dir = "{self.state}"\n'
            f'[web]\nbind = "127.0.0.1"\nport = {port}\n'
        )
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def set_password(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "maskwatch", "set-password", "--config", str(self.config)],
            input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr

    def start(self) -> None:
        self.lines = []
        env = dict(os.environ, MASKWATCH_MODELS_DIR=str(MODELS))
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "maskwatch", "run", "--config", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, env=env,
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        line = self.wait_line("web: listening on", START_TIMEOUT_S)
        self.port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
        self.wait_line("ready:", START_TIMEOUT_S)

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, wanted: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if wanted in line:
                    return line
            assert self.proc is not None
            if self.proc.poll() is not None:
                time.sleep(0.2)
                raise AssertionError("service exited:\n" + "\n".join(self.lines[-30:]))
            time.sleep(0.1)
        raise AssertionError(f"no {wanted!r} in {timeout} s:\n" + "\n".join(self.lines[-30:]))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fetch(self, path: str) -> bytes:
        """``path`` as the admin (HTTP Basic auth)."""
        creds = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
        request = urllib.request.Request(self.base + path,
                                         headers={"Authorization": f"Basic {creds}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def api(self, path: str) -> dict:
        return json.loads(self.fetch(path))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def started_service(tmp: Path) -> Iterator[Service]:
    """A running service with the password set, stopped afterwards (for module fixtures)."""
    require_models()
    svc = Service(tmp)
    svc.set_password()
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    yield from started_service(tmp_path_factory.mktemp("web"))


# ------------------------------------------------------------------------- three viewers


def _viewer(base: str, stop: threading.Event, parts: dict[int, int], i: int) -> None:
    creds = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1]), timeout=10)
    conn.request("GET", f"/stream.mjpg?c=viewer{i}", headers={"Authorization": f"Basic {creds}"})
    response = conn.getresponse()
    assert response.status == 200
    count = 0
    while not stop.is_set():
        chunk = response.read1(65536)
        if not chunk:
            break
        count += chunk.count(b"--maskwatchframe")
    parts[i] = count
    conn.close()


def _rates_with_and_without_viewers(service: Service, phase_s: float, rounds: int) -> dict:
    def rate(seconds: float) -> tuple[float, dict]:
        before = service.api("/api/status")
        started = time.monotonic()
        time.sleep(seconds)
        after = service.api("/api/status")
        took = time.monotonic() - started
        return (after["frames_processed"] - before["frames_processed"]) / took, after

    idle, watched, encoded, delivered = [], [], [], []
    for i in range(rounds + 1):
        fps, status = rate(phase_s)
        assert status["web"]["viewers"] == 0
        idle.append(fps)
        if i == rounds:
            break
        stop, parts = threading.Event(), {}
        viewers = [threading.Thread(target=_viewer, args=(service.base, stop, parts, n))
                   for n in range(3)]
        for v in viewers:
            v.start()
        time.sleep(1.0)
        first = service.api("/api/status")["web"]["frames_encoded"]
        fps, status = rate(phase_s)
        watched.append(fps)
        assert status["web"]["viewers"] == 3
        encoded.append(status["web"]["frames_encoded"] - first)
        stop.set()
        for v in viewers:
            v.join(15)
        delivered.append(dict(parts))
        time.sleep(0.5)
    ratios = [w / ((idle[k] + idle[k + 1]) / 2) for k, w in enumerate(watched)]
    # How much the rate moves with no change of ours: the machine's own noise.
    noise = float(np.median([abs(b - a) / ((a + b) / 2) for a, b in zip(idle, idle[1:])]))
    change = float(np.median(ratios)) - 1.0
    report = (f"processing fps, {phase_s:.0f} s phases: no viewer "
              f"{' '.join(f'{f:.2f}' for f in idle)} (mean {np.mean(idle):.2f}); 3 viewers "
              f"{' '.join(f'{f:.2f}' for f in watched)} (mean {np.mean(watched):.2f}); "
              f"ratios {' '.join(f'{r:.3f}' for r in ratios)}; median change "
              f"{change * 100:+.1f} %; no-viewer phase-to-phase noise {noise * 100:.1f} %; "
              f"JPEGs encoded per phase {encoded}; parts per viewer {delivered}")
    return {"change": change, "noise": noise, "report": report, "encoded": encoded,
            "watched": watched, "delivered": delivered}


def test_three_viewers_keep_the_processing_rate(service: Service, record_property) -> None:
    """Acceptance 2: with three live viewers the processing fps stays within 10 % of the
    rate with none. The viewers are plain HTTP clients reading the MJPEG stream (a real
    browser's decoding costs the viewer's machine, not the device). Detection runs as fast
    as the CPU allows (up to the 15 fps cap), so the live view's cost would show.

    Phases alternate: none, three, none, three, ..., none; each three-viewer phase is
    compared with the mean of the no-viewer phases on either side (which cancels a drift in
    the machine's other load) and the median of those ratios is the result (one burst of
    other load cannot decide). When the no-viewer phases alone differ by more than 10 % the
    machine is too busy to judge a 10 % effect: the measurement is repeated, and skipped
    with the numbers if it stays so."""
    phase_s = 4.0
    time.sleep(3.0)  # past the start-up
    for attempt in range(3):
        result = _rates_with_and_without_viewers(service, phase_s, rounds=5)
        print(result["report"])
        record_property(f"three_viewers_{attempt}", result["report"])
        report = result["report"]
        assert all(len(p) == 3 and min(p.values()) > 0 for p in result["delivered"]), report
        # Encoded once per frame however many viewers: never more JPEGs than frames.
        for n, fps in zip(result["encoded"], result["watched"]):
            assert n <= fps * phase_s * 1.15 + 2, report
        if result["change"] > -0.10 or result["noise"] <= 0.10:
            break
    if result["change"] <= -0.10 and result["noise"] > 0.10:
        pytest.skip("the machine's other load moves the processing rate by "
                    f"{result['noise'] * 100:.0f} % between identical phases, too much to "
                    f"judge a 10 % effect: {report}")
    assert result["change"] > -0.10, report
    assert service.api("/api/status")["web"]["viewers"] == 0


# ------------------------------------------------------------------------- the browser


def _browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium): run "
                    "scripts/setup.sh test, which installs it with apt-get")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright missing: pip install -e .[test]")
    return sync_api


def _box_colour_at_faces(png: bytes, live: dict, width_px: float) -> set[str]:
    """The classes whose box colour is on the left edge of their face box (in the
    screenshot of the <img>, scaled from frame pixels)."""
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].astype(int)
    scale = image.shape[1] / max(1, live["frame_width"])
    found = set()
    for face in live["faces"]:
        x1, y1, x2, y2 = (v * scale for v in face["box"])
        ys = slice(int(y1 + (y2 - y1) * 0.3), int(y1 + (y2 - y1) * 0.7))
        xs = slice(max(0, int(x1) - 12), int(x1) + 12)  # the box moves a little per frame
        band = image[ys, xs]
        if band.size == 0:
            continue
        r, g, b = band[..., 0], band[..., 1], band[..., 2]
        if face["label"] == "no_mask" and ((r > 190) & (g < 80) & (b < 80)).sum() > 10:
            found.add("no_mask")
        if face["label"] == "mask" and ((b > 190) & (r < 80) & (g < 100)).sum() > 10:
            found.add("mask")
    return found


def _save_small_png(png: bytes, path: Path, max_width: int = 1000) -> None:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    if image.shape[1] > max_width:
        height = round(image.shape[0] * max_width / image.shape[1])
        image = cv2.resize(image, (max_width, height), interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def test_browser_logs_in_sees_live_boxes_events_and_snapshot(service: Service) -> None:
    sync_api = _browser()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1100, "height": 820},
                # The page's CSP (script-src 'self') would block Playwright's polling of
                # wait_for_function predicates; the product's CSP stays as it is.
                bypass_csp=True,
            )
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # A blocked style or script (the CSP) shows as a console error.
            page.on("console", lambda msg: errors.append(msg.text)
                    if msg.type == "error" and "Content Security Policy" in msg.text else None)

            # Login first: the live page redirects there.
            page.goto(service.base + "/live")
            assert "/login" in page.url
            page.fill("#password", "wrong one")
            page.click("#login")
            assert "Wrong password" in page.inner_text("#login-error")
            page.fill("#password", PASSWORD)
            page.click("#login")
            page.wait_for_url(re.compile(r"/live$"))
            cookie = next(c for c in context.cookies() if c["name"] == "maskwatch_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

            # The live image arrives and changes over time.
            page.wait_for_function(
                "document.getElementById('live').naturalWidth > 0", timeout=30_000)
            img = page.locator("#live")
            first = img.screenshot()
            time.sleep(1.5)
            second = img.screenshot()
            assert first != second, "the live image did not change in 1.5 s"
            page.wait_for_function(
                "document.getElementById('fps').textContent !== '– fps'", timeout=10_000)

            # Red (no mask) and blue (mask) boxes where the demo's faces are. The near
            # person takes the mask off and on every 6 s; the far one always wears one.
            seen: set[str] = set()
            deadline = time.monotonic() + 40
            live_shot = None
            while time.monotonic() < deadline and seen != {"no_mask", "mask"}:
                live = page.evaluate("fetch('/api/live').then(r => r.json())")
                shot = img.screenshot()
                found = _box_colour_at_faces(shot, live, img.bounding_box()["width"])
                seen |= found
                if found == {"no_mask", "mask"} and live_shot is None:
                    live_shot = page.screenshot()
                time.sleep(0.3)
            assert seen == {"no_mask", "mask"}, f"box colours seen at the faces: {seen}"
            assert page.inner_text("#state") == "detecting"
            if live_shot is None:
                live_shot = page.screenshot()
            _save_small_png(live_shot, SCREENSHOTS / "live.png")

            # The same page on a phone: no sideways scrolling, the image fits the width.
            phone = browser.new_context(bypass_csp=True, viewport={"width": 390, "height": 844},
                                        device_scale_factor=2, is_mobile=True,
                                        storage_state=context.storage_state())
            mobile = phone.new_page()
            mobile.goto(service.base + "/live")
            mobile.wait_for_function(
                "document.getElementById('live').naturalWidth > 0", timeout=30_000)
            overflow = mobile.evaluate(
                "document.scrollingElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the phone layout scrolls sideways by {overflow} px"
            assert mobile.locator("#live").bounding_box()["width"] <= 390
            phone.close()

            # Events: the demo raises an alarm within its first mask-off phase.
            deadline = time.monotonic() + 60
            while not service.api("/api/events?limit=1")["events"]:
                assert time.monotonic() < deadline, "no alarm stored within 60 s"
                time.sleep(1)
            page.goto(service.base + "/events")
            page.wait_for_selector("#events tbody tr img.thumb", timeout=15_000)
            page.wait_for_function(
                "[...document.querySelectorAll('img.thumb')].every(i => i.complete && "
                "i.naturalWidth > 0)", timeout=15_000)
            row = page.locator("#events tbody tr").first
            assert "no mask" in row.inner_text()
            _save_small_png(page.screenshot(), SCREENSHOTS / "events.png")

            # The snapshot behind the thumbnail opens, as a full-size JPEG.
            link = row.locator("a.snapshot-link")
            with context.expect_page() as opened:
                link.click()
            snapshot = opened.value
            snapshot.wait_for_load_state()
            size = snapshot.evaluate(
                "[document.images[0].naturalWidth, document.images[0].naturalHeight]")
            assert size == [1280, 720]
            assert "/snapshot.jpg" in snapshot.url

            # Status page shows the service.
            page.goto(service.base + "/status")
            page.wait_for_selector("#camera dd")
            assert "demo scene" in page.inner_text("#camera")
            assert errors == [], errors
        finally:
            browser.close()
    for name in ("live.png", "events.png"):
        assert (SCREENSHOTS / name).stat().st_size < 1_500_000


def test_open_page_recovers_after_a_service_restart(service: Service) -> None:
    """F13: stop and start the service on the same port; the open page's image starts
    moving again by itself (no reload), still logged in (the session key is kept)."""
    sync_api = _browser()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 800, "height": 600})
            page.goto(service.base + "/login")
            page.fill("#password", PASSWORD)
            page.click("#login")
            page.wait_for_url(re.compile(r"/live$"))
            page.wait_for_function("document.getElementById('live').naturalWidth > 0",
                                   timeout=30_000)
            port = service.port
            service.stop()
            page.locator("#message").wait_for(state="visible", timeout=15_000)
            assert "reconnecting" in page.inner_text("#message")
            service.config.write_text(service.config.read_text().replace(
                "port = 0", f"port = {port}"))
            service.start()
            assert service.port == port
            page.locator("#message").wait_for(state="hidden", timeout=30_000)
            img = page.locator("#live")
            deadline = time.monotonic() + 30
            before = img.screenshot()
            while img.screenshot() == before:
                assert time.monotonic() < deadline, "the image did not move again in 30 s"
                time.sleep(0.5)
            assert page.url.endswith("/live")  # never sent back to the login page
        finally:
            browser.close()
