"""The demo source's made-up history (F29): believable, marked as demo, and never over a
measured hour."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from test_compliance import Clock, close, make_config, open_stats

from maskwatch.events.compliance_demo import DAYS, seed_demo_history
from maskwatch.types import PersonState

ZONE = "Europe/Berlin"


def local(day: int, hour: int, minute: int) -> float:
    return datetime(2024, 5, day, hour, minute, tzinfo=ZoneInfo(ZONE)).timestamp()


def test_a_month_of_labelled_demo_hours_around_the_measured_ones(tmp_path: Path) -> None:
    config = make_config(tmp_path, ZONE)
    store, stats = open_stats(config, Clock(local(8, 15, 20)))  # Wednesday 8 May, 15:20
    measured_at = local(8, 11, 5)
    stats.record(PersonState.UNMASKED, utc=measured_at)
    assert seed_demo_history(stats) > 200
    assert seed_demo_history(stats) == 0  # every open hour is taken now

    days = stats.buckets(stats.day_start(date(2024, 4, 8)), stats.clock(), "day")
    assert len(days) == DAYS + 1
    sundays = [b for b in days if b.start.weekday() == 6]
    assert sundays and all(sum(b.counts.values()) == 0 for b in sundays)  # closed
    weekdays = [b for b in days[:-1] if b.start.weekday() < 5]
    assert all(150 <= sum(b.counts.values()) <= 400 for b in weekdays)
    assert all(b.demo for b in days if sum(b.counts.values()))
    assert all(70 <= b.compliance <= 98 for b in weekdays)

    today = stats.buckets(stats.day_start(date(2024, 5, 8)), stats.clock(), "hour")
    by_hour = {b.start.hour: b for b in today}
    assert by_hour[11].counts["unmasked"] == 1 and not by_hour[11].demo  # left alone
    assert by_hour[9].demo and sum(by_hour[9].counts.values()) > 0
    assert sum(by_hour[15].counts.values()) == 0  # the current hour is the pipeline's
    assert all(sum(by_hour[h].counts.values()) == 0 for h in (0, 3, 6))  # closed
    close(store, stats)
