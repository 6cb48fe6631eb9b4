"""Operation schedule (F8): weekly wall-clock ranges in which the device detects and notifies.

Ranges are wall-clock times in one IANA time zone, because an installer writes "Mon-Fri
08:00-18:00" meaning the clock on the wall, also on the days daylight saving time changes. The
service asks with an aware ``datetime`` (normally ``datetime.now(timezone.utc)``), so tests can
freeze the clock and the answer never depends on the process's own TZ setting.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from maskwatch.config import MINUTES_PER_DAY, WEEKDAYS, ScheduleConfig

log = logging.getLogger(__name__)

LOCALTIME = Path("/etc/localtime")
# Far enough ahead that every weekly boundary is seen once, plus the day before today (a range
# that started yesterday evening may end this morning).
_HORIZON_DAYS = range(-1, 9)


def device_zone(localtime: Path = LOCALTIME) -> tzinfo:
    """The device's own time zone as a DST-aware zone, not a fixed offset: the offset of
    ``datetime.now().astimezone()`` would be wrong for every instant across the next DST change.

    $TZ wins (as for every other program), then the /etc/localtime link that timedatectl and
    raspi-config maintain; UTC only when neither can be read."""
    tz = os.environ.get("TZ", "").removeprefix(":")
    if tz:
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            log.warning("TZ=%r is not an IANA time zone; using %s instead", tz, localtime)
    try:
        target = localtime.resolve(strict=True)
    except OSError:
        log.warning("%s is missing: the schedule runs in UTC (set schedule.timezone)", localtime)
        return timezone.utc
    parts = target.parts
    if "zoneinfo" in parts:
        key = "/".join(parts[len(parts) - parts[::-1].index("zoneinfo"):])
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass  # a zone file outside the tz database's search path: read it directly below
    try:
        with open(target, "rb") as f:
            return ZoneInfo.from_file(f, key=str(localtime))
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s (%s): the schedule runs in UTC", localtime, exc)
        return timezone.utc


@dataclass(frozen=True)
class _Range:
    days: frozenset[int]  # datetime.weekday() numbers the range starts on
    start: int  # seconds after local midnight
    end: int  # seconds after local midnight; <= start means on the next day

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def covers(self, weekday: int, second: int) -> bool:
        if not self.crosses_midnight:
            return weekday in self.days and self.start <= second < self.end
        return (weekday in self.days and second >= self.start) or (
            (weekday - 1) % 7 in self.days and second < self.end
        )


class Schedule:
    """When the device works. No ranges means always on, so a fresh install works without
    settings."""

    def __init__(self, config: ScheduleConfig) -> None:
        self.zone = ZoneInfo(config.timezone) if config.timezone else device_zone()
        self._ranges = [
            _Range(
                frozenset(WEEKDAYS.index(d) for d in r.days),
                r.start_minute * 60,
                r.end_minute % MINUTES_PER_DAY * 60,
            )
            for r in config.ranges
        ]
        log.info(
            "schedule: %s in %s",
            f"{len(self._ranges)} weekly range(s)" if self._ranges else "always on",
            self.zone_name,
        )

    @property
    def zone_name(self) -> str:
        return str(getattr(self.zone, "key", None) or self.zone)

    def is_active(self, now: datetime) -> bool:
        """Whether detection and alarms run at the instant ``now`` (an aware datetime)."""
        if not self._ranges:
            return True
        local = _aware(now).astimezone(self.zone)
        second = local.hour * 3600 + local.minute * 60 + local.second
        return any(r.covers(local.weekday(), second) for r in self._ranges)

    def next_change(self, now: datetime) -> datetime | None:
        """The first instant after ``now`` (in UTC) at which :meth:`is_active` flips, for the
        status page ("on until 18:00"); None when it never does.

        The state can only flip where the wall clock reaches a range boundary or jumps (a DST
        change), so those instants are the only ones tried. A boundary wall time is tried at
        both of its readings (``fold``), which covers the hour that a DST change repeats."""
        if not self._ranges:
            return None
        now = _aware(now).astimezone(timezone.utc)
        state = self.is_active(now)
        for candidate in sorted(self._candidates(now)):
            if self.is_active(candidate) != state:
                return candidate
        return None

    def _candidates(self, now: datetime) -> set[datetime]:
        today = now.astimezone(self.zone).date()
        days = [today + timedelta(days=d) for d in _HORIZON_DAYS]
        walls: set[datetime] = set()
        for day in days:
            for r in self._ranges:
                if day.weekday() in r.days:
                    walls.add(_wall(day, r.start))
                    walls.add(_wall(day + timedelta(days=int(r.crosses_midnight)), r.end))
        found = {
            wall.replace(tzinfo=self.zone, fold=fold).astimezone(timezone.utc)
            for wall in walls
            for fold in (0, 1)
        }
        found |= _offset_changes(self.zone, _wall(days[0], 0), _wall(days[-1], 0))
        return {c for c in found if c > now}


def _wall(day: date, second: int) -> datetime:
    """Naive local wall time ``second`` seconds after midnight of ``day``."""
    return datetime.combine(day, time()) + timedelta(seconds=second)


def _aware(now: datetime) -> datetime:
    """Refuses naive datetimes: which zone they mean is a guess, and a guess an hour off is a
    silent hour of missed or unwanted alarms."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("the schedule needs an aware datetime, e.g. datetime.now(timezone.utc)")
    return now


def _offset_changes(zone: tzinfo, first: datetime, last: datetime) -> set[datetime]:
    """UTC instants between two naive wall times where the zone's UTC offset changes (DST),
    found hour by hour and then to the second, since zoneinfo does not list its transitions."""
    start = first.replace(tzinfo=zone).astimezone(timezone.utc)
    end = last.replace(tzinfo=zone).astimezone(timezone.utc)
    changes: set[datetime] = set()
    step = timedelta(hours=1)
    t = start
    while t < end:
        if t.astimezone(zone).utcoffset() != (t + step).astimezone(zone).utcoffset():
            lo, hi = int(t.timestamp()), int((t + step).timestamp())
            offset = _offset_at(zone, lo)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if _offset_at(zone, mid) == offset else (lo, mid)
            changes.add(datetime.fromtimestamp(hi, timezone.utc))
        t += step
    return changes


def _offset_at(zone: tzinfo, timestamp: int) -> timedelta | None:
    return datetime.fromtimestamp(timestamp, zone).utcoffset()
