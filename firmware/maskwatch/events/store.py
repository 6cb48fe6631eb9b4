"""The event log (F18): every alarm in SQLite with its JPEG snapshot on disk, and the outbox
the dispatcher delivers from.

One alarm is stored in this order: the snapshot is written to a temporary name, fsync'ed,
renamed and its directory fsync'ed; THEN a single transaction commits the event row and one
outbox row per destination. The database runs in WAL mode with ``synchronous=FULL`` for these
commits, so a kill -9 or a power cut at any moment leaves either no row (at most an orphan
snapshot, removed at the next open) or the complete event with its snapshot and its outbox
rows. Outputs are only tried after the commit.

An outbox row goes ``pending`` → ``delivered``, ``failed`` (the destination refused it and
trying again cannot help) or ``dropped`` (still undelivered when [outputs] max_age_s had
passed). Delivery marks are committed with ``synchronous=NORMAL``: a power cut may forget a
"delivered", which only means the alarm is sent again (delivery is at-least-once; receivers
deduplicate by event id).

Retention (``prune``) deletes the oldest events beyond [storage] max_events, max_bytes (of
snapshots) and max_age_days, but never one still pending for a destination unless it is older
than [outputs] max_age_s.

Rows are read defensively: SQLite keeps whatever value a column was given, so a manual edit,
a bad sector or an older version can leave text where a number belongs or a box that is not
JSON. Such a row is never sent (``pending`` marks it failed with the reason and goes on), is
shown with what can be read (``problems`` names the rest), and its snapshot path is only used
when it is ``snapshots/<event id>.jpg``, so it can neither serve nor delete another file.

Threads: ``add``, ``prune`` and the marks serialise on one write lock; reads (the dispatcher's
``pending``, the web page's queries) use their own connection, which WAL lets run alongside a
write.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from maskwatch.alarm_format import AlarmMessage
from maskwatch.config import Config
from maskwatch.redact import redact_text
from maskwatch.types import AlarmEvent

log = logging.getLogger(__name__)

DB_NAME = "events.db"
SNAPSHOT_DIR = "snapshots"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 10.0
MAX_LIST = 1000
_EVENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SNAPSHOT_NAME = re.compile(rf"{SNAPSHOT_DIR}/[A-Za-z0-9_-]{{1,64}}\.jpg")
_TMP_SUFFIX = ".tmp"

PENDING, DELIVERED, FAILED, DROPPED = "pending", "delivered", "failed", "dropped"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- event order
    id TEXT NOT NULL UNIQUE,
    utc_ms INTEGER NOT NULL,
    device TEXT NOT NULL,
    label TEXT NOT NULL,
    confidence REAL NOT NULL,
    track INTEGER NOT NULL,
    box TEXT NOT NULL,                       -- JSON [x1, y1, x2, y2], pixels of the frame
    width INTEGER NOT NULL,                  -- frame size the box refers to
    height INTEGER NOT NULL,
    snapshot TEXT NOT NULL DEFAULT '',       -- relative to the state directory, '' = none
    snapshot_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_utc ON events (utc_ms);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER NOT NULL,                    -- events.seq
    destination TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',   -- pending, delivered, failed, dropped
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (destination, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (destination, seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_seq ON outbox (seq);
"""

_EVENT_COLUMNS = (
    "e.seq, e.id, e.utc_ms, e.device, e.label, e.confidence, e.track, e.box, e.width, e.height, "
    "e.snapshot, e.snapshot_bytes"
)
# snapshot_bytes where it is a number, else 0: sums and retention never trip over a bad row.
_SNAPSHOT_BYTES = "(CASE WHEN typeof(snapshot_bytes) = 'integer' THEN snapshot_bytes ELSE 0 END)"


class EventStoreError(Exception):
    """The event log cannot be used; the message says what to do."""


class EventStoreCorrupt(EventStoreError):
    """The database file is damaged or is not a maskwatch event log."""


@dataclass(frozen=True)
class Delivery:
    destination: str
    state: str  # pending, delivered, failed, dropped
    attempts: int
    last_error: str
    updated_ms: int


@dataclass(frozen=True)
class StoredEvent:
    """One row of the event log, for the web page and its JSON API. A value that cannot be
    read is None (the snapshot: "") and its column is named in ``problems``."""

    event_id: str
    utc_ms: int | None
    device: str | None
    label: str | None
    confidence: float | None
    track_id: int | None
    box: tuple[float, float, float, float] | None
    width: int | None
    height: int | None
    snapshot_path: str  # absolute; "" if none was stored
    snapshot_bytes: int | None
    deliveries: tuple[Delivery, ...] = ()
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["utc"] = None if self.utc_ms is None else _iso(self.utc_ms)
        data["box"] = None if self.box is None else list(self.box)
        data["deliveries"] = [asdict(d) for d in self.deliveries]
        data["problems"] = list(self.problems)
        return data


def _iso(utc_ms: int) -> str:
    return datetime.fromtimestamp(utc_ms / 1000, timezone.utc).isoformat(timespec="milliseconds")


def _integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError("not an integer")


def _number(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ValueError("not a number")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ValueError("not text")


def _event_id(value: Any) -> str:
    if isinstance(value, str) and _EVENT_ID.fullmatch(value):
        return value
    raise ValueError("not an event id")


def _box(value: Any) -> tuple[float, float, float, float]:
    try:
        box = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        box = None
    if not isinstance(box, list) or len(box) != 4:
        raise ValueError("not a JSON list of 4 numbers")
    x1, y1, x2, y2 = (_number(v) for v in box)
    return x1, y1, x2, y2


def _snapshot(value: Any) -> str:
    """A stored snapshot path: "" or snapshots/<event id>.jpg, nothing that could point to
    another file (the database itself) when it is served or deleted."""
    if value == "" or (isinstance(value, str) and _SNAPSHOT_NAME.fullmatch(value)):
        return value
    raise ValueError(f"not {SNAPSHOT_DIR}/<event id>.jpg")


def _or(convert: Callable[[Any], Any], value: Any, default: Any) -> Any:
    try:
        return convert(value)
    except ValueError:
        return default


def _shown(value: Any) -> str:
    """A bad value, short and without credentials, for a problem text."""
    if isinstance(value, bytes):
        return f"{len(value)} bytes of binary data"
    text = redact_text(repr(value))
    return text if len(text) <= 40 else text[:37] + "..."


# Each event column and how its value is checked; StoredEvent's name where it differs.
_COLUMNS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "id": (_event_id, "event_id"), "utc_ms": (_integer, "utc_ms"), "device": (_text, "device"),
    "label": (_text, "label"), "confidence": (_number, "confidence"),
    "track": (_integer, "track_id"), "box": (_box, "box"), "width": (_integer, "width"),
    "height": (_integer, "height"), "snapshot": (_snapshot, "snapshot"),
    "snapshot_bytes": (_integer, "snapshot_bytes"),
}


def _read_row(row: sqlite3.Row) -> tuple[dict[str, Any], list[str]]:
    """The values of an event row by StoredEvent's names (None where unreadable, the
    snapshot ""), and a problem per unreadable column."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for column, (convert, name) in _COLUMNS.items():
        try:
            values[name] = convert(row[column])
        except ValueError as exc:
            values[name] = "" if column == "snapshot" else None
            problems.append(f"{column}: {exc} (got {_shown(row[column])})")
    return values, problems


def message_for(event: AlarmEvent, snapshot_path: str = "") -> AlarmMessage:
    """The message for an alarm straight from the bus (used when it could not be stored)."""
    a = event.alarm
    return AlarmMessage(
        event_id=a.event_id, utc_ms=_utc_ms(event.utc), device=event.device,
        label=a.label.value, confidence=float(a.confidence), track_id=int(a.track_id),
        box=tuple(float(v) for v in a.box), snapshot_path=snapshot_path,  # type: ignore[arg-type]
    )


def _utc_ms(utc: datetime) -> int:
    if utc.tzinfo is None:
        raise ValueError("alarm time must be timezone-aware (UTC)")
    return int(round(utc.timestamp() * 1000))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot delete %s: %s", path, exc.strerror)


class EventStore:
    """The event log under ``[storage] state_dir``: ``events.db`` and ``snapshots/``.

    ``destinations`` are the names of the configured outputs: ``add`` creates one outbox row
    per name. ``snapshot_url_format`` (e.g. ``"http://cam:8080/api/events/{event_id}/snapshot"``)
    is set by the web page so messages carry a snapshot URL.
    """

    def __init__(
        self, config: Config, destinations: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = config.storage
        self.outbox_max_age_s = config.outputs.max_age_s
        self.dir = self.storage.resolve_state_dir()
        self.path = self.dir / DB_NAME
        self.snapshot_dir = self.dir / SNAPSHOT_DIR
        self.destinations: tuple[str, ...] = tuple(destinations)
        self.snapshot_url_format = ""
        self.snapshot_errors = 0
        self._clock = clock
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._db: sqlite3.Connection | None = None  # events: synchronous=FULL
        self._marks: sqlite3.Connection | None = None  # delivery marks: synchronous=NORMAL
        self._reader: sqlite3.Connection | None = None
        self._open()

    # ----------------------------------------------------------------- opening and closing

    def _open(self) -> None:
        try:
            self.dir.mkdir(mode=0o750, parents=True, exist_ok=True)
            self.snapshot_dir.mkdir(mode=0o750, exist_ok=True)
            probe = self.dir / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise EventStoreError(
                f"cannot use the event log directory {self.dir}: {exc.strerror or exc}; set "
                "[storage] state_dir (or $MASKWATCH_STATE_DIR) to a directory the service can "
                "write"
            ) from None
        try:
            self._db = self._connect("FULL")
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise EventStoreError(
                    f"event log {self.path}: SQLite could not switch to WAL mode (got {mode!r}); "
                    "the state directory must be on a local file system"
                )
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise EventStoreCorrupt(self._corrupt_message(check))
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise EventStoreError(
                    f"event log {self.path} was written by a newer maskwatch (schema {version}, "
                    f"this one knows {SCHEMA_VERSION}); update maskwatch or move the file aside"
                )
            has_events = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'events'"
            ).fetchone()
            if version == 0 and has_events:
                raise EventStoreCorrupt(
                    f"event log {self.path} holds tables but no maskwatch schema version; it is "
                    "not a maskwatch event log. Move it aside (the service then starts a new one)"
                )
            with self._transaction(self._db):
                for statement in _SCHEMA.split(";\n"):  # no ";" at a line end in comments
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._marks = self._connect("NORMAL")
            self._reader = self._connect("NORMAL")
            self._reader.execute("PRAGMA query_only = 1")
        except EventStoreError:
            self.close()
            raise
        except sqlite3.DatabaseError as exc:
            self.close()
            # DatabaseError itself is SQLITE_CORRUPT / SQLITE_NOTADB; its subclasses
            # (OperationalError: cannot open, read-only, locked, I/O) are not damage.
            if type(exc) is sqlite3.DatabaseError:
                raise EventStoreCorrupt(self._corrupt_message(str(exc))) from None
            raise EventStoreError(
                f"cannot open the event log {self.path}: {exc}; check that the state "
                "directory is writable and not full"
            ) from None
        self._sweep_orphans()

    def _corrupt_message(self, detail: str) -> str:
        return (
            f"event log {self.path} is damaged or not an SQLite database ({detail}). Move "
            f"{DB_NAME} (with {DB_NAME}-wal and {DB_NAME}-shm) aside to start a new one; the "
            "service does so itself and keeps the old file as events.db.corrupt-<time>"
        )

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA synchronous = {synchronous}")
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        return db

    def close(self) -> None:
        for name in ("_reader", "_marks", "_db"):
            db = getattr(self, name)
            if db is not None:
                try:
                    db.close()
                except sqlite3.Error as exc:  # pragma: no cover - closing a broken handle
                    log.warning("closing the event log: %s", exc)
                setattr(self, name, None)

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        db.execute("COMMIT")

    def _sweep_orphans(self) -> None:
        """Snapshots without a row: a crash between the snapshot and the commit, or between
        a prune's commit and its file deletions; and temporary files of an unfinished write."""
        known = {
            row[0] for row in self._read("SELECT snapshot FROM events WHERE snapshot != ''")
        }
        removed = 0
        for path in self.snapshot_dir.iterdir():
            relative = f"{SNAPSHOT_DIR}/{path.name}"
            if path.name.endswith(_TMP_SUFFIX) or (path.suffix == ".jpg" and relative not in known):
                _unlink_quietly(path)
                removed += 1
        if removed:
            log.info("event log: removed %d snapshot file(s) without an event", removed)

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        if self._reader is None:
            raise EventStoreError("the event log is closed")
        with self._read_lock:
            try:
                return self._reader.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise EventStoreError(f"reading the event log {self.path}: {exc}") from None

    def _write(
        self, db: sqlite3.Connection | None, work: Callable[[sqlite3.Connection], Any]
    ) -> Any:
        if db is None:
            raise EventStoreError("the event log is closed")
        with self._write_lock:
            try:
                with self._transaction(db):
                    return work(db)
            except sqlite3.Error as exc:
                raise EventStoreError(f"writing the event log {self.path}: {exc}") from None

    # ------------------------------------------------------------------------------ adding

    def add(self, event: AlarmEvent) -> AlarmMessage:
        """Store one alarm (snapshot first, then the row and its outbox rows in one commit)
        and return the message every output sends. A snapshot that cannot be written (disk
        full) is logged and the event stored without it; a row that cannot be committed
        raises EventStoreError."""
        alarm = event.alarm
        event_id = alarm.event_id
        if not _EVENT_ID.fullmatch(event_id):
            raise ValueError(f"event id {event_id!r}: 1-64 letters, digits, '-' or '_' expected")
        utc_ms = _utc_ms(event.utc)
        snapshot, size = ("", 0)
        if self.storage.snapshots:
            snapshot, size = self._write_snapshot(event_id, event.frame.image)
        box = [float(v) for v in alarm.box]
        now_ms = int(self._clock() * 1000)

        def insert(db: sqlite3.Connection) -> None:
            seq = db.execute(
                "INSERT INTO events (id, utc_ms, device, label, confidence, track, box, width, "
                "height, snapshot, snapshot_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (event_id, utc_ms, event.device, alarm.label.value, float(alarm.confidence),
                 int(alarm.track_id), json.dumps(box), event.frame.width, event.frame.height,
                 snapshot, size),
            ).lastrowid
            db.executemany(
                "INSERT INTO outbox (seq, destination, updated_ms) VALUES (?, ?, ?)",
                [(seq, name, now_ms) for name in self.destinations],
            )

        try:
            self._write(self._db, insert)
        except EventStoreError:
            if snapshot:
                _unlink_quietly(self.dir / snapshot)
            raise
        return self._message(
            event_id, utc_ms, event.device, alarm.label.value, float(alarm.confidence),
            int(alarm.track_id), (box[0], box[1], box[2], box[3]), snapshot,
        )

    def _write_snapshot(self, event_id: str, image: np.ndarray) -> tuple[str, int]:
        import simplejpeg

        try:
            data = simplejpeg.encode_jpeg(
                np.ascontiguousarray(image, dtype=np.uint8), quality=self.storage.snapshot_quality,
                colorspace="RGB", colorsubsampling="420",
            )
        except (ValueError, TypeError, RuntimeError) as exc:
            self.snapshot_errors += 1
            log.error("alarm %s: snapshot not encoded (%s); event stored without it",
                      event_id, exc)
            return "", 0
        final = self.snapshot_dir / f"{event_id}.jpg"
        tmp = final.with_name(final.name + _TMP_SUFFIX)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
            _fsync_dir(self.snapshot_dir)
        except OSError as exc:
            self.snapshot_errors += 1
            _unlink_quietly(tmp)
            _unlink_quietly(final)
            log.error("alarm %s: snapshot not written to %s (%s); event stored without it",
                      event_id, self.snapshot_dir, exc.strerror or exc)
            return "", 0
        return f"{SNAPSHOT_DIR}/{final.name}", len(data)

    def _message(
        self, event_id: str, utc_ms: int, device: str, label: str, confidence: float,
        track: int, box: tuple[float, float, float, float], snapshot: str,
    ) -> AlarmMessage:
        url = ""
        if snapshot and self.snapshot_url_format:
            url = self.snapshot_url_format.format(event_id=event_id)
        return AlarmMessage(
            event_id=event_id, utc_ms=utc_ms, device=device, label=label,
            confidence=confidence, track_id=track, box=box,
            snapshot_path=str(self.dir / snapshot) if snapshot else "", snapshot_url=url,
        )

    # ------------------------------------------------------------------------------ outbox

    def pending(
        self, destination: str, limit: int = 100,
        on_bad: Callable[[str, str], None] | None = None,
    ) -> list[AlarmMessage]:
        """The oldest undelivered alarms for ``destination``, in event order, at most
        ``limit``. A row with an unreadable value is not returned but marked failed with the
        reason, logged and passed to ``on_bad(event, reason)``; the read goes on past it, so
        fewer than ``limit`` alarms still means there are no more."""
        limit = max(1, int(limit))
        messages: list[AlarmMessage] = []
        after = 0
        while len(messages) < limit:
            wanted = limit - len(messages)
            rows = self._read(
                f"SELECT {_EVENT_COLUMNS} FROM outbox o JOIN events e ON e.seq = o.seq "
                "WHERE o.destination = ? AND o.state = 'pending' AND o.seq > ? "
                "ORDER BY o.seq LIMIT ?",
                (destination, after, wanted),
            )
            for row in rows:
                values, problems = _read_row(row)
                if not problems:
                    messages.append(self._message(
                        values["event_id"], values["utc_ms"], values["device"],
                        values["label"], values["confidence"], values["track_id"],
                        values["box"], values["snapshot"],
                    ))
                    continue
                event = values["event_id"] or f"event #{row['seq']}"
                reason = "unreadable event row: " + "; ".join(problems)
                self._set_state(destination, "?", row["seq"], FAILED, reason, attempt=False)
                log.warning("event log: alarm %s not sent to %s: %s", event, destination,
                            reason)
                if on_bad is not None:
                    on_bad(event, reason)
            if len(rows) < wanted:
                break
            after = rows[-1]["seq"]
        return messages

    def pending_count(self, destination: str | None = None) -> int:
        if destination is None:
            rows = self._read("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")
        else:
            rows = self._read(
                "SELECT COUNT(*) FROM outbox WHERE destination = ? AND state = 'pending'",
                (destination,),
            )
        return int(rows[0][0])

    def pending_by_destination(self) -> dict[str, int]:
        rows = self._read(
            "SELECT destination, COUNT(*) FROM outbox WHERE state = 'pending' "
            "GROUP BY destination"
        )
        return {r[0]: int(r[1]) for r in rows}

    def _mark(
        self, event_id: str, destination: str, state: str, error: str = "", attempt: bool = True
    ) -> bool:
        return self._set_state(destination, "(SELECT seq FROM events WHERE id = ?)", event_id,
                               state, error, attempt)

    def _set_state(
        self, destination: str, seq_sql: str, key: Any, state: str, error: str, attempt: bool
    ) -> bool:
        """Move the pending outbox row of ``destination`` whose seq is ``seq_sql`` (with the
        parameter ``key``) to ``state``; False when there was none."""
        now_ms = int(self._clock() * 1000)

        def update(db: sqlite3.Connection) -> int:
            return db.execute(
                "UPDATE outbox SET state = ?, attempts = attempts + ?, last_error = ?, "
                f"updated_ms = ? WHERE destination = ? AND state = 'pending' AND seq = {seq_sql}",
                (state, int(attempt), error[:500], now_ms, destination, key),
            ).rowcount

        return bool(self._write(self._marks, update))

    def mark_delivered(self, event_id: str, destination: str) -> bool:
        """False when there was no pending row (pruned, expired, or never stored)."""
        return self._mark(event_id, destination, DELIVERED)

    def mark_failed(self, event_id: str, destination: str, error: str, final: bool = False) -> bool:
        """Record a failed attempt; the row stays pending (to be retried) unless ``final``."""
        return self._mark(event_id, destination, FAILED if final else PENDING, error)

    def mark_dropped(self, event_id: str, destination: str, reason: str) -> bool:
        return self._mark(event_id, destination, DROPPED, reason, attempt=False)

    def expire(self, max_age_s: float, now: float | None = None) -> dict[str, int]:
        """Mark pending rows of alarms older than ``max_age_s`` as dropped; returns the count
        per destination."""
        now_ms = int((self._clock() if now is None else now) * 1000)
        cutoff = now_ms - int(max_age_s * 1000)
        reason = f"not delivered within {max_age_s:g} s"

        def update(db: sqlite3.Connection) -> dict[str, int]:
            rows = db.execute(
                "SELECT o.destination, COUNT(*) FROM outbox o JOIN events e ON e.seq = o.seq "
                "WHERE o.state = 'pending' AND e.utc_ms < ? GROUP BY o.destination", (cutoff,),
            ).fetchall()
            if rows:
                db.execute(
                    "UPDATE outbox SET state = 'dropped', last_error = ?, updated_ms = ? "
                    "WHERE state = 'pending' AND seq IN (SELECT seq FROM events WHERE utc_ms < ?)",
                    (reason, now_ms, cutoff),
                )
            return {r[0]: int(r[1]) for r in rows}

        return self._write(self._db, update)

    # --------------------------------------------------------------------------- retention

    def prune(self, now: float | None = None) -> dict[str, int]:
        """Delete the oldest events (rows, outbox rows, snapshots) beyond max_age_days,
        max_events and max_bytes, sparing those still pending younger than the outbox max
        age. Returns how many went for each reason and the snapshot bytes freed."""
        now_ms = int((self._clock() if now is None else now) * 1000)
        age_cutoff = now_ms - int(self.storage.max_age_days * 86_400_000)
        keep_pending_after = now_ms - int(self.outbox_max_age_s * 1000)
        unprotected = (
            "NOT (typeof(e.utc_ms) = 'integer' AND e.utc_ms >= :keep AND EXISTS (SELECT 1 "
            "FROM outbox o WHERE o.seq = e.seq AND o.state = 'pending'))"
        )
        params = {"keep": keep_pending_after, "age": age_cutoff}
        columns = f"seq, snapshot, {_SNAPSHOT_BYTES} AS snapshot_bytes"
        result = {"by_age": 0, "by_count": 0, "by_bytes": 0, "bytes_freed": 0}
        files: list[str] = []

        def delete(db: sqlite3.Connection, rows: list[sqlite3.Row], reason: str) -> None:
            db.executemany("DELETE FROM outbox WHERE seq = ?", [(r["seq"],) for r in rows])
            db.executemany("DELETE FROM events WHERE seq = ?", [(r["seq"],) for r in rows])
            result[reason] += len(rows)
            result["bytes_freed"] += sum(r["snapshot_bytes"] for r in rows)
            files.extend(_or(_snapshot, r["snapshot"], "") for r in rows)

        def work(db: sqlite3.Connection) -> None:
            rows = db.execute(
                f"SELECT {columns} FROM events e WHERE e.utc_ms < :age AND {unprotected}",
                params,
            ).fetchall()
            delete(db, rows, "by_age")
            excess = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            excess -= self.storage.max_events
            if excess > 0:
                rows = db.execute(
                    f"SELECT {columns} FROM events e WHERE {unprotected} ORDER BY seq LIMIT :n",
                    {**params, "n": excess},
                ).fetchall()
                delete(db, rows, "by_count")
            total = db.execute(
                f"SELECT COALESCE(SUM({_SNAPSHOT_BYTES}), 0) FROM events").fetchone()[0]
            if total > self.storage.max_bytes:
                chosen = []
                for row in db.execute(
                    f"SELECT {columns} FROM events e WHERE {_SNAPSHOT_BYTES} > 0 AND "
                    f"{unprotected} ORDER BY seq", params,
                ).fetchall():  # all read before deleting: no statement left open
                    if total <= self.storage.max_bytes:
                        break
                    chosen.append(row)
                    total -= row["snapshot_bytes"]
                delete(db, chosen, "by_bytes")

        self._write(self._db, work)
        for relative in filter(None, files):  # after the commit: a crash leaves orphans only
            _unlink_quietly(self.dir / relative)
        if any(result[k] for k in ("by_age", "by_count", "by_bytes")):
            log.info("event log pruned: %s", result)
        return result

    # ----------------------------------------------------------------------------- queries

    def _where(
        self, since_ms: int | None, until_ms: int | None, label: str | None
    ) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if since_ms is not None:
            clauses.append("e.utc_ms >= ?")
            params.append(int(since_ms))
        if until_ms is not None:
            clauses.append("e.utc_ms < ?")
            params.append(int(until_ms))
        if label:
            clauses.append("e.label = ?")
            params.append(label)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def list_events(
        self, since_ms: int | None = None, until_ms: int | None = None,
        label: str | None = None, limit: int = 100, offset: int = 0,
    ) -> list[StoredEvent]:
        """Events newest first; ``since_ms`` inclusive, ``until_ms`` exclusive (UTC ms);
        ``limit`` is clamped to 1..1000."""
        where, params = self._where(since_ms, until_ms, label)
        limit = min(max(1, int(limit)), MAX_LIST)
        rows = self._read(
            f"SELECT {_EVENT_COLUMNS} FROM events e{where} ORDER BY e.seq DESC LIMIT ? OFFSET ?",
            [*params, limit, max(0, int(offset))],
        )
        return self._stored(rows)

    def count_events(
        self, since_ms: int | None = None, until_ms: int | None = None, label: str | None = None
    ) -> int:
        where, params = self._where(since_ms, until_ms, label)
        return int(self._read(f"SELECT COUNT(*) FROM events e{where}", params)[0][0])

    def get_event(self, event_id: str) -> StoredEvent | None:
        rows = self._read(f"SELECT {_EVENT_COLUMNS} FROM events e WHERE e.id = ?", (event_id,))
        found = self._stored(rows)
        return found[0] if found else None

    def snapshot_path(self, event_id: str) -> Path | None:
        """The JPEG of an event, or None (unknown id, no snapshot, file gone). The path comes
        from the database, never from the id, so an id from a URL cannot point elsewhere."""
        rows = self._read("SELECT snapshot FROM events WHERE id = ?", (event_id,))
        relative = _or(_snapshot, rows[0][0], "") if rows else ""
        if not relative:
            return None
        path = self.dir / relative
        return path if path.is_file() else None

    def stats(self) -> dict[str, int]:
        row = self._read(
            f"SELECT COUNT(*), COALESCE(SUM({_SNAPSHOT_BYTES}), 0), COALESCE(MIN(CASE WHEN "
            "typeof(utc_ms) = 'integer' THEN utc_ms END), 0) FROM events"
        )[0]
        return {
            "events": int(row[0]), "snapshot_bytes": int(row[1]), "oldest_utc_ms": int(row[2]),
            "pending": self.pending_count(), "snapshot_errors": self.snapshot_errors,
        }

    def _stored(self, rows: list[sqlite3.Row]) -> list[StoredEvent]:
        """The events of ``rows`` with their deliveries; a row whose id cannot be read is
        left out (logged), as nothing could address it."""
        if not rows:
            return []
        by_seq: dict[int, list[Delivery]] = {r["seq"]: [] for r in rows}
        marks = ",".join("?" * len(by_seq))
        for d in self._read(
            f"SELECT seq, destination, state, attempts, last_error, updated_ms FROM outbox "
            f"WHERE seq IN ({marks}) ORDER BY destination", list(by_seq),
        ):
            by_seq[d["seq"]].append(Delivery(
                redact_text(_or(_text, d["destination"], "?")), _or(_text, d["state"], "?"),
                _or(_integer, d["attempts"], 0), redact_text(_or(_text, d["last_error"], "")),
                _or(_integer, d["updated_ms"], 0),
            ))
        events = []
        for row in rows:
            values, problems = _read_row(row)
            if values["event_id"] is None:
                log.warning("event log: event #%d left out, its id is unreadable (%s)",
                            row["seq"], "; ".join(problems))
                continue
            relative = values.pop("snapshot")
            events.append(StoredEvent(
                **values, snapshot_path=str(self.dir / relative) if relative else "",
                deliveries=tuple(by_seq[row["seq"]]), problems=tuple(problems),
            ))
        return events


def open_event_store(
    config: Config, destinations: Iterable[str] = (), clock: Callable[[], float] = time.time
) -> EventStore:
    """The service's way in: a damaged database is moved aside (kept as
    ``events.db.corrupt-<UTC time>`` with its snapshots) and a new one started, so a broken
    SD-card sector does not stop detection; any other problem raises EventStoreError."""
    destinations = tuple(destinations)
    try:
        return EventStore(config, destinations, clock)
    except EventStoreCorrupt as exc:
        state_dir = config.storage.resolve_state_dir()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        moved = []
        for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", SNAPSHOT_DIR):
            source = state_dir / name
            if source.exists():
                target = state_dir / f"{name}.corrupt-{stamp}"
                try:
                    source.rename(target)
                except OSError as move_error:
                    raise EventStoreError(
                        f"{exc}; moving it aside failed: {move_error.strerror}"
                    ) from None
                moved.append(target.name)
        log.error("%s -- moved aside as %s; starting a new event log", exc, ", ".join(moved))
        return EventStore(config, destinations, clock)
