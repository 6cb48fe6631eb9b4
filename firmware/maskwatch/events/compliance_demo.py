"""A believable month of compliance statistics for the demo source (F29), so the Statistics
page shows hours and days out of the box.

The demo scene has two people who never leave, so what the pipeline really counts from it is a
handful of people; the days before it are made up here, only when [source] kind = "demo" (the
service checks), and stored with ``demo = 1`` so the page, the API and the MQTT sensor say
"demo" wherever such a number is shown. Every hour with no count at all since 30 local days
ago, up to the current hour, gets made-up counts: so a restart fills only the hours the
device was off, and the measured counts of the demo scene are never touched.

The shape: a shop open 07:00-19:00 local time (Saturday shorter, Sunday closed) with morning,
lunch and evening peaks; about 85 % masked, fewer at lunch, and a reminder sign put up ten days
ago that lifts compliance by six points. Each hour's numbers come from a random generator
seeded with the hour, so they are the same after every restart.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

import numpy as np

from maskwatch.events.compliance import HOUR_S, ComplianceStats, hour_of
from maskwatch.types import PersonState

log = logging.getLogger(__name__)

DAYS = 30
SIGN_DAYS_AGO = 10
DEFAULT_HOURS = (7, 19)  # open, close (local hours), Monday to Friday
OPEN_HOURS = {5: (8, 16), 6: None}  # by weekday (Monday = 0): Saturday shorter, Sunday closed
# Visitors per hour by local hour: (centre hour, width, height) of the day's peaks.
PEAKS = ((8.5, 1.0, 28.0), (12.5, 0.8, 34.0), (17.5, 1.2, 26.0))
BASE_VISITORS = 8.0


def _visitors(local_hour: float, weekday: int) -> float:
    hours = OPEN_HOURS.get(weekday, DEFAULT_HOURS)
    if hours is None or not hours[0] <= local_hour < hours[1]:
        return 0.0
    peaks = sum(h * math.exp(-((local_hour + 0.5 - c) / w) ** 2) for c, w, h in PEAKS)
    return (BASE_VISITORS + peaks) * (0.6 if weekday == 5 else 1.0)


def _masked_share(local_hour: int, days_ago: float) -> float:
    share = 0.84 - (0.10 if 12 <= local_hour < 14 else 0.0)
    return share + (0.06 if days_ago < SIGN_DAYS_AGO else 0.0)


def seed_demo_history(stats: ComplianceStats) -> int:
    """Fill the empty hours of the last ``DAYS`` local days (up to the current hour) with
    made-up demo counts; returns how many hours were filled."""
    now = stats.clock()
    today = stats.local_date(now)
    start = int(stats.day_start(today - timedelta(days=DAYS)))
    end = hour_of(now)
    taken = stats.counted_hours(start, end)
    rows: list[tuple[int, PersonState, int]] = []
    filled = 0
    for hour in range(start, end, HOUR_S):
        if hour in taken:
            continue
        local = datetime.fromtimestamp(hour, stats.zone)
        visitors = _visitors(local.hour, local.weekday())
        if visitors <= 0:
            continue
        rng = np.random.default_rng(hour)
        people = int(rng.poisson(visitors))
        masked = _masked_share(local.hour, (now - hour) / 86_400)
        shares = [masked, (1 - masked) * 0.72, (1 - masked) * 0.18, (1 - masked) * 0.10]
        counts = rng.multinomial(people, shares)
        states = (PersonState.MASKED, PersonState.UNMASKED, PersonState.INCORRECT,
                  PersonState.UNDECIDED)
        rows += [(hour, state, int(n)) for state, n in zip(states, counts) if n]
        filled += people > 0
    stats.add_demo_hours(rows)
    stats.flush()
    if filled:
        log.info("demo source: %d hour(s) of made-up statistics added (marked as demo)", filled)
    return filled
