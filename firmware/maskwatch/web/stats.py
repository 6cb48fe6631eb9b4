"""The Statistics page, its JSON API and CSV download (F29).

- ``/stats``: today by hour and the last 30 days by day, as stacked bars drawn on the device
  (``stats_chart``), with today's compliance percentage and counts;
- ``/api/stats?from=&to=&bucket=hour|day``: the buckets as JSON;
- ``/api/stats.csv`` (same parameters): the same as a CSV file.

``from`` and ``to`` are a local date (``2024-05-01``: its midnight in the configured time zone),
an ISO-8601 time or epoch milliseconds; ``to`` is exclusive. Without them: today for hours,
the last 30 days (today included) for days. The service must have ``stats`` (a
``ComplianceStats``); without it the routes answer 503.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from flask import Flask, Response, abort, jsonify, render_template

from maskwatch.events import BUCKETS, ComplianceStats, EventStoreError, StatsBucket
from maskwatch.types import PersonState
from maskwatch.web.stats_chart import stacked_bars_svg

DAYS_SHOWN = 30
MAX_BUCKETS = {"hour": 24 * 62, "day": 3700}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
PARAMS = {
    "from": "a local date (2024-05-01), ISO-8601 time or epoch ms; inclusive",
    "to": "a local date, ISO-8601 time or epoch ms; exclusive",
    "bucket": "|".join(BUCKETS),
}
CSV_COLUMNS = ("start", "end", *(s.value for s in PersonState), "total", "compliance_percent",
               "demo")


def add_stats_routes(
    app: Flask, service: Any, params: Callable[[dict[str, str]], dict[str, str]],
    parse_time_ms: Callable[[str, str], int], param_error: type[ValueError],
) -> None:
    """Register the statistics routes; ``params``, ``parse_time_ms`` and ``param_error`` are
    the app's strict query-parameter helpers, so bad input answers 400 like everywhere."""

    def stats() -> ComplianceStats:
        found = getattr(service, "stats", None)
        if found is None:
            abort(503, description="the statistics are not available (no event log)")
        return found

    @app.errorhandler(EventStoreError)
    def _unreadable(exc: EventStoreError) -> Any:
        """The event database cannot be read (being reopened after a settings change, or
        damaged): 503 with the reason, never a 500 (for every route of the app)."""
        return jsonify({"error": str(exc), "status": 503}), 503

    def moment(name: str, text: str, st: ComplianceStats) -> float:
        if _DATE.fullmatch(text.strip()):
            try:
                day = date.fromisoformat(text.strip())
            except ValueError:
                raise param_error(f"{name}: {text!r} is not a calendar date") from None
            return st.day_start(day)
        return parse_time_ms(name, text) / 1000

    def query() -> tuple[ComplianceStats, str, float, float]:
        args = params(PARAMS)
        bucket = args.get("bucket", "hour")
        if bucket not in BUCKETS:
            raise param_error(f"bucket: {bucket!r} is not one of {', '.join(BUCKETS)}")
        st = stats()
        today = st.local_date(st.clock())
        days = 1 if bucket == "hour" else DAYS_SHOWN
        start = (moment("from", args["from"], st) if "from" in args
                 else st.day_start(today - timedelta(days=days - 1)))
        end = (moment("to", args["to"], st) if "to" in args
               else st.day_start(today + timedelta(days=1)))
        if start >= end:
            raise param_error("from must be earlier than to")
        span = (end - start) / (3600 if bucket == "hour" else 86_400)
        if span > MAX_BUCKETS[bucket]:
            raise param_error(f"from-to spans too many {bucket}s: at most "
                              f"{MAX_BUCKETS[bucket]} per request")
        return st, bucket, start, end

    @app.get("/api/stats")
    def api_stats() -> Any:
        st, bucket, start, end = query()
        buckets = st.buckets(start, end, bucket)
        total = _sum(buckets)
        return jsonify({
            "bucket": bucket, "timezone": str(st.zone), "from": buckets[0].start.isoformat(),
            "to": buckets[-1].end.isoformat(), "buckets": [b.to_dict() for b in buckets],
            "total": total.to_dict(),
        })

    @app.get("/api/stats.csv")
    def api_stats_csv() -> Any:
        st, bucket, start, end = query()
        out = io.StringIO()
        writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        for b in st.buckets(start, end, bucket):
            row = b.to_dict()
            row["compliance_percent"] = "" if b.compliance is None else b.compliance
            row["demo"] = int(b.demo)
            writer.writerow(row)
        name = f"maskwatch-stats-{bucket}-{st.local_date(start).isoformat()}.csv"
        return Response(out.getvalue(), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/stats")
    def stats_page() -> Any:
        st = stats()
        now = st.clock()
        today = st.local_date(now)
        hours = st.buckets(st.day_start(today), st.day_start(today + timedelta(days=1)), "hour")
        days = st.buckets(st.day_start(today - timedelta(days=DAYS_SHOWN - 1)), now, "day")
        return render_template(
            "stats.html", page="stats", today=_sum(hours), days_total=_sum(days),
            demo=any(b.demo for b in days), zone=str(st.zone), date=today.isoformat(),
            hours_svg=stacked_bars_svg(hours, lambda b: f"{b.start.hour:02d}", 3,
                                       f"People per hour on {today.isoformat()}", "hour"),
            days_svg=stacked_bars_svg(days, lambda b: b.start.strftime("%d.%m"), 5,
                                      f"People per day, last {DAYS_SHOWN} days", "day"),
        )


def _sum(buckets: list[StatsBucket]) -> StatsBucket:
    """All ``buckets`` as one."""
    counts = {s.value: sum(b.counts[s.value] for b in buckets) for s in PersonState}
    return StatsBucket(buckets[0].start, buckets[-1].end, counts, any(b.demo for b in buckets))
