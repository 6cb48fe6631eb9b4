"""Compliance statistics (F29): how many people passed masked, unmasked, with the mask worn
incorrectly (and, apart, undecided and static faces), per hour, in the event database.

Counts are kept per UTC hour and state in their own table of ``events.db``. A UTC hour maps to
exactly one local hour in every zone with whole-hour offsets, so hour buckets need no zone; days
are made from the hours whose start falls on that local date of the configured zone
([schedule] timezone, else the device's), so a daylight-saving day has 23 or 25 hours. (In the
few zones with half-hour offsets an hour bucket shows as 05:30-06:30 local time.)

Counting happens in memory and is written at least every ``FLUSH_EVERY_S`` (and on ``close``),
as one transaction that adds the new counts to the stored ones: a kill -9 or a power cut loses
at most the counts of the last minute, never a stored one. Reads add the counts not yet
written, so the page is always current. Retention follows the event log's [storage]
max_age_days: an hour that ended before it is deleted.

Whoever shows today's figures elsewhere (the MQTT sensor, through the dispatcher) registers with
``show_with``; it is told when people are counted and after every minute's write, so a new day
starts at zero there too.

Rows made by the demo-history generator (``compliance_demo``) carry ``demo = 1``, and every
bucket they are in says so, so a made-up number is never shown as a measured one.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from maskwatch.conditions import device_zone
from maskwatch.config import Config
from maskwatch.events.store import EventStoreError
from maskwatch.types import COMPLIANCE_STATES, PersonCount, PersonState

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 60.0
PRUNE_EVERY_S = 3600.0
HOUR_S = 3600
BUCKETS = ("hour", "day")
BUSY_TIMEOUT_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS people_hourly (
    hour_utc INTEGER NOT NULL,      -- start of the UTC hour, Unix seconds
    state TEXT NOT NULL,            -- masked, unmasked, incorrect, undecided, static
    demo INTEGER NOT NULL DEFAULT 0, -- 1: made up by the demo-history generator
    count INTEGER NOT NULL,
    PRIMARY KEY (hour_utc, state, demo)
) WITHOUT ROWID
"""

_Key = tuple[int, str, int]  # hour_utc, state, demo


def hour_of(utc: float) -> int:
    return int(utc // HOUR_S) * HOUR_S


def compliance_percent(counts: dict[str, int]) -> float | None:
    """masked / (masked + unmasked + incorrect) in percent; None when nobody was decided."""
    decided = sum(counts.get(s.value, 0) for s in COMPLIANCE_STATES)
    if decided == 0:
        return None
    return round(100.0 * counts.get(PersonState.MASKED.value, 0) / decided, 1)


@dataclass(frozen=True)
class StatsBucket:
    """People per state in [start, end) (aware datetimes in the configured zone)."""

    start: datetime
    end: datetime
    counts: dict[str, int]
    demo: bool = False

    @property
    def compliance(self) -> float | None:
        return compliance_percent(self.counts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(), "end": self.end.isoformat(), **self.counts,
            "total": sum(self.counts.values()), "compliance_percent": self.compliance,
            "demo": self.demo,
        }


def _empty() -> dict[str, int]:
    return {s.value: 0 for s in PersonState}


class ComplianceStats:
    """Counts people into the ``people_hourly`` table of the event database at ``path``
    (which the EventStore has already made, in WAL mode). Thread-safe: the processing loop
    records and flushes, the web page reads."""

    def __init__(self, config: Config, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.adopt(config)
        self._lock = threading.Lock()
        self._pending: Counter[_Key] = Counter()
        self._last_flush = clock()
        self._last_prune = -PRUNE_EVERY_S
        self._show: Callable[[StatsBucket], None] | None = None
        try:
            self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise EventStoreError(f"cannot keep statistics in {path}: {exc}") from None

    def adopt(self, config: Config) -> None:
        """Take the time zone ([schedule] timezone, else the device's) and the retention of
        ``config``: a zone changed on the settings page applies at once."""
        zone_name = config.schedule.timezone
        self.zone: tzinfo = ZoneInfo(zone_name) if zone_name else device_zone()
        self.max_age_days = config.storage.max_age_days

    # ---------------------------------------------------------------------------- writing

    def show_with(self, show: Callable[[StatsBucket], None] | None) -> None:
        """``show(today)`` is called when people are counted and after each minute's write."""
        self._show = show

    def count(self, people: Iterable[PersonCount]) -> None:
        """The pipeline's counted people, each in the hour it is now; shown if any."""
        people = list(people)
        for person in people:
            self.record(person.state)
        if people:
            self._show_today()

    def _show_today(self) -> None:
        if self._show is not None:
            self._show(self.today())

    def record(self, state: PersonState, utc: float | None = None) -> None:
        """One person, counted in the hour of ``utc`` (now when None)."""
        when = self.clock() if utc is None else utc
        with self._lock:
            self._pending[(hour_of(when), state.value, 0)] += 1

    def add_demo_hours(self, rows: Iterable[tuple[int, PersonState, int]]) -> None:
        """Made-up counts of whole hours (hour start, state, count), marked as demo: for the
        demo-history generator only."""
        with self._lock:
            for hour, state, count in rows:
                self._pending[(hour_of(hour), state.value, 1)] += count

    def maybe_flush(self) -> bool:
        """Write the counts when the last write is ``FLUSH_EVERY_S`` old (and prune hourly);
        True when it wrote."""
        now = self.clock()
        if now - self._last_prune >= PRUNE_EVERY_S:
            self.prune(now)
        if now - self._last_flush < FLUSH_EVERY_S:
            return False
        self.flush()
        self._show_today()
        return True

    def flush(self) -> None:
        """Add the counts kept in memory to the table in one transaction. When the disk
        refuses, they stay in memory and the next flush tries again."""
        with self._lock:
            self._last_flush = self.clock()
            if not self._pending:
                return
            rows = [(*key, n) for key, n in self._pending.items()]
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT INTO people_hourly (hour_utc, state, demo, count) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (hour_utc, state, demo) DO UPDATE SET count = count + "
                    "excluded.count", rows)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                log.warning("statistics not written, kept for the next try: %s", exc)
                return
            self._pending.clear()

    def prune(self, now: float | None = None) -> int:
        """Delete the hours that ended more than [storage] max_age_days ago; how many rows."""
        now = self.clock() if now is None else now
        self._last_prune = now
        cutoff = int(now - self.max_age_days * 86_400)
        with self._lock:
            for key in [k for k in self._pending if k[0] + HOUR_S <= cutoff]:
                del self._pending[key]
            try:
                deleted = self._db.execute(
                    "DELETE FROM people_hourly WHERE hour_utc + ? <= ?", (HOUR_S, cutoff)
                ).rowcount
            except sqlite3.Error as exc:
                log.warning("old statistics not deleted: %s", exc)
                return 0
        if deleted:
            log.info("statistics: %d hour row(s) older than %g days deleted", deleted,
                     self.max_age_days)
        return deleted

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._db.close()

    # ---------------------------------------------------------------------------- reading

    def _hours(self, start: int, end: int) -> dict[int, tuple[dict[str, int], bool]]:
        """Counts per stored hour in [start, end), the unwritten ones added."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT hour_utc, state, demo, count FROM people_hourly "
                    "WHERE hour_utc >= ? AND hour_utc < ?", (start, end)).fetchall()
            except sqlite3.Error as exc:
                raise EventStoreError(f"reading statistics from {self.path}: {exc}") from None
            rows += [(*k, n) for k, n in self._pending.items() if start <= k[0] < end]
        hours: dict[int, tuple[dict[str, int], bool]] = {}
        for hour, state, demo, count in rows:
            if state not in _empty() or not isinstance(count, int):
                continue  # a row edited by hand: not a count
            counts, was_demo = hours.get(hour, (_empty(), False))
            counts[state] += count
            hours[hour] = (counts, was_demo or bool(demo))
        return hours

    def counted_hours(self, start: int, end: int) -> set[int]:
        """The UTC hours in [start, end) that hold any count."""
        return set(self._hours(start, end))

    def day_start(self, day: date) -> float:
        """The UTC time of ``day``'s local midnight in the configured zone."""
        return datetime(day.year, day.month, day.day, tzinfo=self.zone).timestamp()

    def local_date(self, utc: float) -> date:
        return datetime.fromtimestamp(utc, self.zone).date()

    def buckets(self, start: float, end: float, bucket: str) -> list[StatsBucket]:
        """Every hour (or local day) that overlaps [start, end), empty ones included: hours
        from the whole UTC hour holding ``start``, days from the local day holding it."""
        if bucket not in BUCKETS:
            raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}")
        if bucket == "hour":
            edges = list(range(hour_of(start), int(end), HOUR_S)) or [hour_of(start)]
            edges.append(edges[-1] + HOUR_S)
        else:
            day, last = self.local_date(start), self.local_date(max(start, end - 1))
            edges = []
            while day <= last + timedelta(days=1):
                edges.append(int(self.day_start(day)))
                day += timedelta(days=1)
        hours = self._hours(edges[0], edges[-1])
        out = []
        for lo, hi in pairwise(edges):
            counts, demo = _empty(), False
            for hour in range(lo - lo % HOUR_S, hi, HOUR_S):
                if hour in hours and lo <= hour < hi:
                    for state, n in hours[hour][0].items():
                        counts[state] += n
                    demo = demo or hours[hour][1]
            out.append(StatsBucket(datetime.fromtimestamp(lo, self.zone),
                                   datetime.fromtimestamp(hi, self.zone), counts, demo))
        return out

    def today(self) -> StatsBucket:
        """Today (local day in the configured zone) so far, as one bucket."""
        now = self.clock()
        return self.buckets(now, now, "day")[0]
