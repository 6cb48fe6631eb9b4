"""Compliance statistics (F29) in the event database: restarts, kill -9, time zones across
daylight saving, retention. Real SQLite files; an injected clock, never a sleep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import date, datetime, timezone
from itertools import pairwise
from pathlib import Path

import pytest

from maskwatch.config import Config, parse_config
from maskwatch.events.compliance import (
    FLUSH_EVERY_S,
    ComplianceStats,
    compliance_percent,
)
from maskwatch.events.store import EventStore
from maskwatch.types import PersonState

MASKED, UNMASKED, INCORRECT = PersonState.MASKED, PersonState.UNMASKED, PersonState.INCORRECT
NOON = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc).timestamp()


def make_config(state_dir: Path, zone: str = "UTC", max_age_days: float = 30.0) -> Config:
    return parse_config({
        "storage": {"state_dir": str(state_dir), "max_age_days": max_age_days},
        "schedule": {"timezone": zone},
    })


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def open_stats(config: Config, clock: Clock) -> tuple[EventStore, ComplianceStats]:
    store = EventStore(config, clock=clock)
    return store, ComplianceStats(config, store.path, clock=clock)


def close(store: EventStore, stats: ComplianceStats) -> None:
    stats.close()
    store.close()


def day_counts(stats: ComplianceStats, utc: float) -> dict[str, int]:
    bucket = stats.buckets(utc, utc, "day")[0]
    return {k: v for k, v in bucket.counts.items() if v}


def test_counts_survive_a_clean_restart_and_add_up(tmp_path: Path) -> None:
    config, clock = make_config(tmp_path), Clock(NOON)
    store, stats = open_stats(config, clock)
    for state in (MASKED, MASKED, UNMASKED):
        stats.record(state)
    assert day_counts(stats, NOON) == {"masked": 2, "unmasked": 1}  # shown before written
    close(store, stats)
    store, stats = open_stats(config, clock)
    stats.record(INCORRECT)
    close(store, stats)
    store, stats = open_stats(config, clock)
    assert day_counts(stats, NOON) == {"masked": 2, "unmasked": 1, "incorrect": 1}
    assert stats.today().compliance == 50.0
    close(store, stats)


def test_counts_are_written_once_a_minute(tmp_path: Path) -> None:
    config, clock = make_config(tmp_path), Clock(NOON)
    store, stats = open_stats(config, clock)
    reader = ComplianceStats(config, store.path, clock=clock)  # sees only what is written
    stats.record(MASKED)
    clock.now += FLUSH_EVERY_S - 1
    assert not stats.maybe_flush()
    assert day_counts(reader, NOON) == {}
    clock.now += 1
    assert stats.maybe_flush()
    assert day_counts(reader, NOON) == {"masked": 1}
    reader.close()
    close(store, stats)


CHILD = textwrap.dedent("""
    import sys
    from maskwatch.config import parse_config
    from maskwatch.events.compliance import FLUSH_EVERY_S, ComplianceStats
    from maskwatch.events.store import EventStore
    from maskwatch.types import PersonState

    config = parse_config({"storage": {"state_dir": sys.argv[1]}, "schedule": {"timezone": "UTC"}})
    now = [float(sys.argv[2])]
    store = EventStore(config, clock=lambda: now[0])
    stats = ComplianceStats(config, store.path, clock=lambda: now[0])
    for _ in range(5):
        stats.record(PersonState.MASKED)
    now[0] += FLUSH_EVERY_S
    assert stats.maybe_flush()
    for _ in range(3):
        stats.record(PersonState.UNMASKED)  # the current minute: not written yet
    print("ready", flush=True)
    sys.stdin.read()
""")


def test_a_kill_9_loses_at_most_the_current_minute(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(NOON)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    store, stats = open_stats(make_config(tmp_path), Clock(NOON + FLUSH_EVERY_S))
    assert day_counts(stats, NOON) == {"masked": 5}
    close(store, stats)


@pytest.mark.parametrize(("day", "hours"), [(date(2024, 3, 31), 23), (date(2024, 10, 27), 25),
                                            (date(2024, 5, 1), 24)])
def test_days_follow_the_configured_zone_across_daylight_saving(
    tmp_path: Path, day: date, hours: int
) -> None:
    config, clock = make_config(tmp_path, "Europe/Berlin"), Clock(NOON)
    store, stats = open_stats(config, clock)
    start, end = stats.day_start(day), stats.day_start(date.fromordinal(day.toordinal() + 1))
    assert end - start == hours * 3600
    # One person in every hour of the local day, and one either side of it.
    for utc in range(int(start) - 1800, int(end) + 3600, 3600):
        stats.record(MASKED, utc=utc)
    close(store, stats)
    store, stats = open_stats(config, clock)
    by_hour = stats.buckets(start, end, "hour")
    assert len(by_hour) == hours
    assert [b.counts["masked"] for b in by_hour] == [1] * hours
    assert by_hour[0].start.hour == 0 and by_hour[-1].start.hour == 23
    assert all(a.end == b.start and a.end.timestamp() - a.start.timestamp() == 3600
               for a, b in pairwise(by_hour))
    days = stats.buckets(start, end, "day")
    assert [(b.start.date(), b.counts["masked"]) for b in days] == [(day, hours)]
    three = stats.buckets(start - 1, end + 1, "day")
    assert [b.counts["masked"] for b in three] == [1, hours, 1]
    close(store, stats)


def test_a_late_evening_person_counts_on_the_local_day_not_the_utc_one(tmp_path: Path) -> None:
    config, clock = make_config(tmp_path, "America/New_York"), Clock(NOON)
    store, stats = open_stats(config, clock)
    evening = datetime(2024, 5, 1, 22, 30, tzinfo=stats.zone).timestamp()  # 02:30 UTC, May 2
    stats.record(UNMASKED, utc=evening)
    days = stats.buckets(stats.day_start(date(2024, 5, 1)), stats.day_start(date(2024, 5, 3)),
                         "day")
    assert [b.counts["unmasked"] for b in days] == [1, 0]
    close(store, stats)


def test_retention_removes_hours_older_than_the_event_log_keeps(tmp_path: Path) -> None:
    config, clock = make_config(tmp_path, max_age_days=2), Clock(NOON)
    store, stats = open_stats(config, clock)
    for days_ago in (3.0, 2.5, 1.0, 0.0):
        stats.record(MASKED, utc=NOON - days_ago * 86_400)
    stats.flush()
    assert stats.prune() == 2
    kept = [b.start.date() for b in stats.buckets(NOON - 4 * 86_400, NOON + 1, "day")
            if b.counts["masked"]]
    assert kept == [date(2024, 4, 30), date(2024, 5, 1)]
    # The processing loop prunes by itself, once an hour.
    stats.record(MASKED, utc=NOON - 86_400)
    clock.now += 86_400 + 3600
    stats.maybe_flush()
    kept = [b.counts["masked"] for b in stats.buckets(NOON - 4 * 86_400, clock.now, "day")]
    assert sum(kept) == 1
    close(store, stats)


def test_compliance_counts_only_decided_people() -> None:
    assert compliance_percent({"masked": 3, "unmasked": 1, "undecided": 5, "static": 2}) == 75.0
    assert compliance_percent({"undecided": 5}) is None


def test_unknown_bucket_is_refused(tmp_path: Path) -> None:
    store, stats = open_stats(make_config(tmp_path), Clock(NOON))
    with pytest.raises(ValueError, match="hour, day"):
        stats.buckets(NOON, NOON, "week")
    close(store, stats)


def test_a_new_time_zone_applies_at_once(tmp_path: Path) -> None:
    config, clock = make_config(tmp_path, "UTC"), Clock(NOON)
    store, stats = open_stats(config, clock)
    stats.record(MASKED, utc=datetime(2024, 5, 1, 23, 30, tzinfo=timezone.utc).timestamp())
    assert day_counts(stats, NOON) == {"masked": 1}
    stats.adopt(make_config(tmp_path, "Asia/Tokyo"))  # 08:30 on 2 May there
    assert day_counts(stats, NOON) == {}
    assert day_counts(stats, NOON + 86_400) == {"masked": 1}
    close(store, stats)
