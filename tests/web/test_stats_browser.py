"""The Statistics page (F29) in a real headless Chromium, on the real service running the demo
scene: the demo's unmasked person is really counted by the pipeline, the made-up history of the
demo source fills the 30-day chart (and says so), the bars are there on a desktop and on a
phone, and today's counts survive a restart of the service.

The screenshots for the README are written to docs/screenshots/stats.png and
stats-phone.png.
"""

from __future__ import annotations

import time

import pytest
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

COUNT_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    yield from started_service(tmp_path_factory.mktemp("stats"))


def wait_for_people(service: Service, state: str, at_least: int) -> dict:
    """The status once the pipeline has counted ``at_least`` people in ``state``."""
    deadline = time.monotonic() + COUNT_TIMEOUT_S
    while True:
        status = service.api("/api/status")
        if status["people"].get(state, 0) >= at_least:
            return status
        assert time.monotonic() < deadline, f"no {state} person counted: {status['people']}"
        time.sleep(0.5)


def measured_today(service: Service) -> dict[str, int]:
    """Today's counts in the hours the demo history left alone (what the pipeline counted)."""
    hours = service.api("/api/stats?bucket=hour")["buckets"]
    return {s: sum(b[s] for b in hours if not b["demo"])
            for s in ("masked", "unmasked", "incorrect", "undecided", "static")}


def test_statistics_page_shows_the_bars_after_a_demo_run(service: Service) -> None:
    wait_for_people(service, "unmasked", 1)
    assert measured_today(service)["unmasked"] >= 1
    sync_api = _browser()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 900})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text)
                    if msg.type == "error" else None)
            page.goto(service.base + "/stats")
            page.fill("#password", PASSWORD)
            page.click("#login")
            page.wait_for_url("**/stats")

            hour_bars = page.locator('svg.chart[data-bucket="hour"] rect.bar')
            day_bars = page.locator('svg.chart[data-bucket="day"] rect.bar')
            assert hour_bars.count() >= 1
            assert day_bars.count() >= 15  # a month of demo days (Sundays closed) and today
            unmasked = page.locator('svg.chart[data-bucket="hour"] rect.bar.unmasked')
            assert unmasked.count() >= 1 and unmasked.first.bounding_box()["height"] > 0
            # The bars are painted in the stylesheet's colours, not black.
            fill = page.evaluate("getComputedStyle(document.querySelector("
                                 "'svg.chart rect.bar.masked')).fill")
            assert fill == "rgb(10, 60, 255)"
            assert page.locator("#demo-notice").is_visible()
            assert "%" in page.inner_text("#compliance-today")
            assert page.locator('nav a[href="/stats"][aria-current="page"]').count() == 1
            _save_small_png(page.screenshot(full_page=True), SCREENSHOTS / "stats.png")

            # On a phone: both charts fit the width, nothing scrolls sideways.
            phone = browser.new_context(viewport={"width": 390, "height": 844},
                                        device_scale_factor=2, is_mobile=True,
                                        storage_state=context.storage_state())
            mobile = phone.new_page()
            mobile.goto(service.base + "/stats")
            overflow = mobile.evaluate("document.scrollingElement.scrollWidth - innerWidth")
            assert overflow <= 0, f"the phone layout scrolls sideways by {overflow} px"
            for chart in mobile.locator("svg.chart").all():
                box = chart.bounding_box()
                assert 300 <= box["width"] <= 390 and box["height"] >= 140, box
            # Axis labels stay legible at phone width (a line of about 10 px type or more).
            label = mobile.locator("svg.chart text.axis").first.bounding_box()
            assert label["height"] >= 11, label
            _save_small_png(mobile.screenshot(full_page=True), SCREENSHOTS / "stats-phone.png",
                            max_width=390)
            phone.close()
            assert errors == [], errors
        finally:
            browser.close()
    for name in ("stats.png", "stats-phone.png"):
        assert (SCREENSHOTS / name).stat().st_size < 1_500_000


def test_counts_survive_a_restart_of_the_service(service: Service) -> None:
    wait_for_people(service, "unmasked", 1)
    before = measured_today(service)
    service.stop()  # SIGTERM: the people in view are counted and everything is written
    service.start()
    after = measured_today(service)
    assert all(after[s] >= before[s] for s in before), (before, after)
    assert sum(after.values()) > sum(before.values()), "the people in view at the stop"
