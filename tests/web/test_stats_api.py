"""The Statistics page, /api/stats, its CSV and the Prometheus figures (F29), through Flask's
test client on the web tests' stand-in service with a real statistics table."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_web_api import PASSWORD, FakeService, _login

from maskwatch.config import parse_config
from maskwatch.events.compliance import ComplianceStats
from maskwatch.types import PersonState
from maskwatch.web import create_app
from maskwatch.web.auth import set_password

ZONE = "Europe/Berlin"
MASKED, UNMASKED, INCORRECT = PersonState.MASKED, PersonState.UNMASKED, PersonState.INCORRECT


def local(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2024, 5, day, hour, minute, tzinfo=ZoneInfo(ZONE)).timestamp()


NOW = local(1, 15, 20)


@pytest.fixture
def service(tmp_path):
    set_password(tmp_path, PASSWORD)
    svc = FakeService(tmp_path)
    config = parse_config({"storage": {"state_dir": str(tmp_path)},
                           "schedule": {"timezone": ZONE}})
    svc.stats.close()
    svc.stats = ComplianceStats(config, svc.store.path, clock=lambda: NOW)
    # Today (1 May): 3 masked and 1 unmasked at 09:xx, 1 incorrect at 14:xx, 1 static.
    for state in (MASKED, MASKED, MASKED, UNMASKED):
        svc.stats.record(state, utc=local(1, 9, 10))
    svc.stats.record(INCORRECT, utc=local(1, 14, 59))
    svc.stats.record(PersonState.STATIC, utc=local(1, 14, 0))
    # 00:30 local on 1 May is 22:30 UTC on 30 April: it belongs to today.
    svc.stats.record(MASKED, utc=local(1, 0, 30))
    svc.stats.record(UNMASKED, utc=local(1, 12) - 2 * 86_400)  # 29 April
    svc.stats.flush()
    yield svc
    svc.stats.close()
    svc.store.close()


@pytest.fixture
def user(service):
    app = create_app(service)
    client = app.test_client()
    assert _login(client).status_code == 303
    yield client
    app.extensions["maskwatch"]["hub"].close()


def test_today_by_hour_in_the_configured_zone(user) -> None:
    data = user.get("/api/stats").json
    assert data["bucket"] == "hour" and data["timezone"] == ZONE
    assert data["from"] == "2024-05-01T00:00:00+02:00"
    assert data["to"] == "2024-05-02T00:00:00+02:00"
    buckets = data["buckets"]
    assert len(buckets) == 24
    nine = buckets[9]
    assert nine["start"] == "2024-05-01T09:00:00+02:00"
    assert (nine["masked"], nine["unmasked"], nine["total"]) == (3, 1, 4)
    assert nine["compliance_percent"] == 75.0
    assert buckets[0]["masked"] == 1
    assert buckets[14]["incorrect"] == 1 and buckets[14]["static"] == 1
    assert buckets[14]["compliance_percent"] == 0.0
    assert buckets[3]["total"] == 0 and buckets[3]["compliance_percent"] is None
    total = data["total"]
    assert (total["masked"], total["unmasked"], total["incorrect"]) == (4, 1, 1)
    assert total["compliance_percent"] == pytest.approx(66.7)
    assert total["demo"] is False


def test_the_last_30_days_by_day_and_a_chosen_range(user) -> None:
    days = user.get("/api/stats?bucket=day").json["buckets"]
    assert len(days) == 30
    assert days[-1]["start"] == "2024-05-01T00:00:00+02:00" and days[-1]["total"] == 7
    assert days[-3]["start"].startswith("2024-04-29") and days[-3]["unmasked"] == 1
    chosen = user.get("/api/stats?bucket=day&from=2024-04-29&to=2024-05-01").json
    assert [b["total"] for b in chosen["buckets"]] == [1, 0]
    iso = user.get("/api/stats?from=2024-05-01T07:00:00Z&to=2024-05-01T08:00:00Z").json
    assert [b["masked"] for b in iso["buckets"]] == [3]  # 07:00 UTC = 09:00 local


@pytest.mark.parametrize(("query", "says"), [
    ("bucket=week", "hour, day"),
    ("bucket=", "hour, day"),
    ("from=yesterday", "from"),
    ("from=2024-02-30", "calendar date"),
    ("from=2024-05-02&to=2024-05-01", "earlier"),
    ("from=2020-01-01&to=2024-01-01", "at most"),
    ("to=" + "9" * 30, "to"),
    ("day=1", "bucket"),
    ("bucket=hour&bucket=day", "2 times"),
])
def test_bad_parameters_answer_400_saying_what_is_allowed(user, query: str, says: str) -> None:
    for path in ("/api/stats", "/api/stats.csv"):
        response = user.get(f"{path}?{query}")
        assert response.status_code == 400, (path, query)
        assert says in response.json["error"], response.json["error"]


def test_csv_download(user) -> None:
    response = user.get("/api/stats.csv?bucket=hour")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert 'filename="maskwatch-stats-hour-2024-05-01.csv"' in response.headers[
        "Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 24
    assert rows[9]["start"] == "2024-05-01T09:00:00+02:00"
    assert (rows[9]["masked"], rows[9]["unmasked"], rows[9]["compliance_percent"]) == (
        "3", "1", "75.0")
    assert rows[3]["compliance_percent"] == "" and rows[3]["demo"] == "0"


def test_page_shows_today_and_two_charts_with_bars(user) -> None:
    html = user.get("/stats").get_data(as_text=True)
    assert "67&nbsp;%" in html  # 4 of 6 decided people
    charts = re.findall(r'<svg class="chart" data-bucket="(\w+)"', html)
    assert charts == ["hour", "day"]
    hour_svg = html[html.index('data-bucket="hour"'):html.index('data-bucket="day"')]
    assert len(re.findall(r'<rect class="bar masked"', hour_svg)) == 2  # 00:xx and 09:xx
    assert len(re.findall(r'<rect class="bar unmasked"', hour_svg)) == 1
    assert "09: 3 masked, 1 unmasked, 0 incorrect, 0 undecided; compliance 75 %" in html
    assert "Demo data" not in html
    assert 'href="/stats" aria-current="page"' in html


def test_demo_rows_are_labelled_as_demo(user, service) -> None:
    service.stats.add_demo_hours([(int(local(1, 10)), MASKED, 5)])
    html = user.get("/stats").get_data(as_text=True)
    assert "Demo data" in html
    hours = user.get("/api/stats").json["buckets"]
    assert hours[10]["demo"] is True and hours[9]["demo"] is False


def test_prometheus_counts_per_state(user, service) -> None:
    service.status.update(people={"masked": 7, "unmasked": 2})
    text = user.get("/metrics").get_data(as_text=True)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    counted = {s.labels["state"]: s.value for s in families["maskwatch_people"].samples
               if s.name == "maskwatch_people_total"}
    assert counted == {"masked": 7, "unmasked": 2, "incorrect": 0, "undecided": 0, "static": 0}
    today = {s.labels["state"]: s.value for s in families["maskwatch_people_today"].samples}
    assert today["masked"] == 4 and today["static"] == 1
    percent = families["maskwatch_compliance_today_percent"].samples[0].value
    assert percent == pytest.approx(66.67, abs=0.1)


def test_without_statistics_the_routes_answer_503(tmp_path) -> None:
    set_password(tmp_path, PASSWORD)
    svc = FakeService(tmp_path)
    svc.stats.close()
    svc.stats = None
    app = create_app(svc)
    client = app.test_client()
    _login(client)
    for path in ("/stats", "/api/stats", "/api/stats.csv"):
        assert client.get(path).status_code == 503
    assert client.get("/metrics").status_code == 200
    app.extensions["maskwatch"]["hub"].close()
    svc.store.close()
