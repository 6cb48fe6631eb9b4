"""Operation schedule (F8) on frozen clocks: ranges, midnight crossing, DST days, time zones."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from maskwatch.conditions.schedule import Schedule, device_zone
from maskwatch.config import ConfigError, ScheduleConfig, parse_config

BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
ZONEINFO = Path("/usr/share/zoneinfo")


def schedule(ranges: list[dict[str, Any]], tz: str = "Europe/Berlin") -> Schedule:
    return Schedule(ScheduleConfig.model_validate({"timezone": tz, "ranges": ranges}))


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
           ) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=BERLIN)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
        ) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_no_ranges_is_always_on() -> None:
    s = Schedule(parse_config({}).schedule)
    for hour in range(0, 24 * 7, 5):
        assert s.is_active(utc(2026, 6, 1) + timedelta(hours=hour))
    assert s.next_change(utc(2026, 6, 1)) is None


def test_weekday_office_hours() -> None:
    # 2026-06-01 is a Monday; Berlin is on CEST (UTC+2).
    s = schedule([{"days": WEEKDAYS, "start": "08:00", "end": "18:00"}])
    assert not s.is_active(berlin(2026, 6, 1, 7, 59, 59))
    assert s.is_active(berlin(2026, 6, 1, 8, 0))
    assert s.is_active(berlin(2026, 6, 5, 17, 59, 59))
    assert not s.is_active(berlin(2026, 6, 5, 18, 0))
    assert not s.is_active(berlin(2026, 6, 6, 12, 0))  # Saturday
    # The same instants given in UTC: the schedule converts, it does not read the offset as local.
    assert s.is_active(utc(2026, 6, 1, 6, 0))
    assert not s.is_active(utc(2026, 6, 1, 5, 59))
    assert not s.is_active(utc(2026, 6, 1, 16, 0))


def test_days_left_out_mean_every_day() -> None:
    s = schedule([{"start": "10:00", "end": "11:00"}])
    for day in range(1, 8):
        assert s.is_active(berlin(2026, 6, day, 10, 30))
        assert not s.is_active(berlin(2026, 6, day, 11, 0))


def test_range_crossing_midnight_runs_into_the_next_day() -> None:
    s = schedule([{"days": ["fri"], "start": "22:00", "end": "06:00"}])
    assert not s.is_active(berlin(2026, 6, 5, 21, 59))  # Friday
    assert s.is_active(berlin(2026, 6, 5, 22, 0))
    assert s.is_active(berlin(2026, 6, 6, 5, 59, 59))  # Saturday morning
    assert not s.is_active(berlin(2026, 6, 6, 6, 0))
    assert not s.is_active(berlin(2026, 6, 6, 23, 0))  # Saturday night is not Friday night
    assert not s.is_active(berlin(2026, 6, 5, 3, 0))  # Friday morning belongs to Thursday
    assert s.next_change(berlin(2026, 6, 5, 23, 0)) == berlin(2026, 6, 6, 6, 0)


def test_end_24_00_reaches_midnight_and_stops() -> None:
    s = schedule([{"days": ["sun"], "start": "20:00", "end": "24:00"}])
    assert s.is_active(berlin(2026, 6, 7, 23, 59, 59))
    assert not s.is_active(berlin(2026, 6, 8, 0, 0))
    assert s.next_change(berlin(2026, 6, 7, 21, 0)) == berlin(2026, 6, 8, 0, 0)


def test_whole_week_ranges_never_change() -> None:
    s = schedule([{"start": "00:00", "end": "24:00"}])
    assert s.is_active(berlin(2026, 6, 3, 0, 0))
    assert s.next_change(berlin(2026, 6, 3, 12, 0)) is None


def test_next_change_for_the_status_page() -> None:
    s = schedule([{"days": WEEKDAYS, "start": "08:00", "end": "18:00"},
                  {"days": ["fri"], "start": "18:00", "end": "20:00"}])
    assert s.next_change(berlin(2026, 6, 1, 7, 0)) == berlin(2026, 6, 1, 8, 0)
    assert s.next_change(berlin(2026, 6, 1, 9, 0)) == berlin(2026, 6, 1, 18, 0)
    # Adjacent ranges on Friday join: the change is at 20:00, not at 18:00.
    assert s.next_change(berlin(2026, 6, 5, 9, 0)) == berlin(2026, 6, 5, 20, 0)
    # Over the weekend to Monday morning; the answer is in UTC.
    change = s.next_change(berlin(2026, 6, 5, 21, 0))
    assert change == berlin(2026, 6, 8, 8, 0) and change.tzinfo == UTC


def test_next_change_is_consistent_over_a_week() -> None:
    """Stepping a frozen clock hour by hour: the state holds until next_change and flips there."""
    s = schedule([{"days": WEEKDAYS, "start": "07:30", "end": "12:00"},
                  {"days": WEEKDAYS, "start": "13:00", "end": "18:15"},
                  {"days": ["sat"], "start": "23:00", "end": "02:00"}])
    now = berlin(2026, 3, 23, 0, 17)  # the week that ends with the spring DST change
    for _ in range(24 * 8):
        state = s.is_active(now)
        change = s.next_change(now)
        assert change is not None and change > now
        assert s.is_active(change - timedelta(seconds=1)) == state
        assert s.is_active(change) != state
        now += timedelta(hours=1)


def test_spring_dst_day_keeps_wall_clock_times() -> None:
    # 2026-03-29: Berlin goes from 02:00 CET (UTC+1) straight to 03:00 CEST (UTC+2).
    s = schedule([{"start": "08:00", "end": "18:00"}])
    assert not s.is_active(utc(2026, 3, 28, 6, 59))  # Saturday 07:59 CET
    assert s.is_active(utc(2026, 3, 28, 7, 0))  # Saturday 08:00 CET
    assert not s.is_active(utc(2026, 3, 29, 5, 59))  # Sunday 07:59 CEST
    assert s.is_active(utc(2026, 3, 29, 6, 0))  # Sunday 08:00 CEST
    assert s.next_change(utc(2026, 3, 28, 20, 0)) == utc(2026, 3, 29, 6, 0)
    assert s.next_change(utc(2026, 3, 29, 12, 0)) == utc(2026, 3, 29, 16, 0)


def test_spring_dst_gap_switches_at_the_jump() -> None:
    # 02:00-03:00 does not exist that night: a range ending (or starting) in the gap changes
    # state at the jump itself, 01:00 UTC.
    ends_in_gap = schedule([{"days": ["sun"], "start": "01:00", "end": "02:30"}])
    assert ends_in_gap.is_active(utc(2026, 3, 29, 0, 59, 59))  # 01:59:59 CET
    assert not ends_in_gap.is_active(utc(2026, 3, 29, 1, 0))  # 03:00 CEST
    assert ends_in_gap.next_change(utc(2026, 3, 29, 0, 30)) == utc(2026, 3, 29, 1, 0)
    starts_in_gap = schedule([{"days": ["sun"], "start": "02:30", "end": "04:00"}])
    assert starts_in_gap.next_change(utc(2026, 3, 28, 23, 0)) == utc(2026, 3, 29, 1, 0)
    assert starts_in_gap.next_change(utc(2026, 3, 29, 1, 0)) == berlin(2026, 3, 29, 4, 0)


def test_autumn_dst_repeated_hour() -> None:
    # 2026-10-25: 03:00 CEST becomes 02:00 CET again, so 02:00-03:00 happens twice.
    s = schedule([{"days": ["sun"], "start": "02:30", "end": "02:45"}])
    assert s.is_active(utc(2026, 10, 25, 0, 35))  # first 02:35 (CEST)
    assert not s.is_active(utc(2026, 10, 25, 0, 50))
    assert s.is_active(utc(2026, 10, 25, 1, 35))  # second 02:35 (CET)
    assert s.next_change(utc(2026, 10, 25, 0, 50)) == utc(2026, 10, 25, 1, 30)
    day = schedule([{"start": "08:00", "end": "18:00"}])
    assert day.is_active(utc(2026, 10, 25, 7, 0))  # 08:00 CET
    assert not day.is_active(utc(2026, 10, 25, 6, 59))


def test_time_zone_of_the_ranges() -> None:
    ranges = [{"days": ["mon"], "start": "09:00", "end": "10:00"}]
    instant = utc(2026, 6, 1, 13, 30)  # Monday 09:30 in New York, 15:30 in Berlin
    assert schedule(ranges, "America/New_York").is_active(instant)
    assert not schedule(ranges, "Europe/Berlin").is_active(instant)
    assert schedule(ranges, "UTC").is_active(utc(2026, 6, 1, 9, 30))


def test_naive_datetime_is_refused() -> None:
    s = schedule([{"start": "08:00", "end": "18:00"}])
    with pytest.raises(ValueError, match="aware datetime"):
        s.is_active(datetime(2026, 6, 1, 9, 0))


def test_empty_timezone_uses_tz_of_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    s = schedule([{"days": ["mon"], "start": "09:00", "end": "10:00"}], tz="")
    assert s.zone_name == "America/New_York"
    assert s.is_active(utc(2026, 6, 1, 13, 30))


@pytest.mark.skipif(not (ZONEINFO / "Asia/Tokyo").is_file(), reason="no system tz database")
def test_device_zone_from_localtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TZ", raising=False)
    link = tmp_path / "localtime"
    link.symlink_to(ZONEINFO / "Asia/Tokyo")
    assert str(device_zone(link)) == "Asia/Tokyo"
    copy = tmp_path / "copied"
    shutil.copyfile(ZONEINFO / "Asia/Tokyo", copy)
    zone = device_zone(copy)
    assert utc(2026, 1, 1).astimezone(zone).utcoffset() == timedelta(hours=9)
    monkeypatch.setenv("TZ", "Not/AZone")  # unusable TZ falls back to /etc/localtime
    assert str(device_zone(link)) == "Asia/Tokyo"
    assert device_zone(tmp_path / "missing") == UTC


def config_problems(schedule_section: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({"schedule": schedule_section})
    return info.value.problems


def test_unknown_time_zone_is_a_config_error_naming_it() -> None:
    (problem,) = config_problems({"timezone": "Europe/Berlln"})
    assert problem.startswith("schedule.timezone:") and "'Europe/Berlln'" in problem
    assert "IANA" in problem


def test_bad_ranges_are_config_errors_naming_what_is_allowed() -> None:
    problems = config_problems({"ranges": [
        {"days": ["mon", "Tues"], "start": "08:00", "end": "18:00"},
        {"start": "8:00", "end": "24:01"},
        {"start": "24:00", "end": "06:00"},
        {"start": "09:30", "end": "09:30"},
        {"days": [], "start": "09:00", "end": "10:00"},
        {"start": "09:00"},
    ]})
    by_key = {p.split(":", 1)[0]: p for p in problems}
    assert len(by_key) == len(problems) == 7, problems
    day = by_key["schedule.ranges.0.days.1"]
    assert "'Tues'" in day and all(f"'{d}'" in day for d in ("mon", "sat", "sun"))
    assert "'00:00' to '23:59'" in by_key["schedule.ranges.1.start"]
    assert "'00:00' to '24:00'" in by_key["schedule.ranges.1.end"]
    assert "'24:00'" in by_key["schedule.ranges.2.start"]
    assert "two different times" in by_key["schedule.ranges.3"]
    assert "at least 1 item" in by_key["schedule.ranges.4.days"]
    assert "required" in by_key["schedule.ranges.5.end"].lower()


def test_schedule_section_round_trips() -> None:
    config = parse_config({"schedule": {"timezone": "Europe/Berlin", "ranges": [
        {"days": ["sat", "sun"], "start": "22:00", "end": "06:00"}]}})
    assert parse_config(config.model_dump()) == config
