"""The event log (F18): WAL, snapshot before row, queries, retention, outbox, damaged files."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

from maskwatch.config import Config, parse_config
from maskwatch.events import store as event_store_module
from maskwatch.events.store import (
    EventStore,
    EventStoreCorrupt,
    EventStoreError,
    open_event_store,
)
from maskwatch.types import Alarm, AlarmEvent, Frame, Label

DESTS = ("tcp:a", "webhook:b")


def make_config(
    state_dir: Path, storage: dict | None = None, outputs: dict | None = None
) -> Config:
    return parse_config({
        "storage": {"state_dir": str(state_dir), **(storage or {})},
        "outputs": outputs or {},
    })


def make_event(
    n: int, utc: datetime | None = None, label: Label = Label.NO_MASK,
    image: np.ndarray | None = None,
) -> AlarmEvent:
    if image is None:
        image = np.full((48, 64, 3), (n * 7) % 256, np.uint8)
        image[10:20, 10:30] = (200, 30, 30)
    alarm = Alarm(f"ev{n:05d}", t=n * 0.1, frame_index=n, track_id=n % 7 + 1, label=label,
                  confidence=0.875, box=(10.0 + n, 12.5, 30.0, 40.25))
    return AlarmEvent(alarm, Frame(image, n * 0.1, n), "door-1",
                      utc or datetime.now(timezone.utc))


def noise(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)


@pytest.fixture
def store(tmp_path: Path):
    with EventStore(make_config(tmp_path / "state"), DESTS) as s:
        yield s


def test_database_is_wal_with_full_sync_for_events(store: EventStore) -> None:
    store.add(make_event(1))
    with sqlite3.connect(store.path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert (store.dir / "events.db-wal").exists()


def test_snapshot_is_durable_before_the_row_is_committed(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[str] = []
    real_fsync, real_replace, real_write = os.fsync, os.replace, store._write

    def fsync(fd: int) -> None:
        steps.append("fsync")
        real_fsync(fd)

    def replace(src, dst) -> None:
        steps.append("rename")
        real_replace(src, dst)

    def write(db, work):
        steps.append("commit")
        jpg = store.snapshot_dir / "ev00003.jpg"
        # At commit time the snapshot is complete under its final name, and no row exists.
        assert simplejpeg.decode_jpeg(jpg.read_bytes()).shape == (48, 64, 3)
        assert not list(store.snapshot_dir.glob("*.tmp"))
        assert store.get_event("ev00003") is None
        return real_write(db, work)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(store, "_write", write)
    message = store.add(make_event(3))
    assert steps == ["fsync", "rename", "fsync", "commit"]  # file, rename, directory, row
    assert store.get_event("ev00003") is not None
    assert Path(message.snapshot_path).is_file()


def test_add_returns_the_message_and_creates_one_outbox_row_per_destination(
    store: EventStore,
) -> None:
    utc = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)
    message = store.add(make_event(5, utc))
    assert message.event_id == "ev00005"
    assert message.utc_ms == 1714564800123
    assert (message.device, message.label, message.confidence) == ("door-1", "no_mask", 0.875)
    assert message.track_id == 6 and message.box == (15.0, 12.5, 30.0, 40.25)
    assert message.message_id == 69 and message.snapshot_url == ""
    decoded = simplejpeg.decode_jpeg(Path(message.snapshot_path).read_bytes())
    assert decoded.shape == (48, 64, 3)
    assert abs(int(decoded[15, 20, 0]) - 200) < 30 and int(decoded[15, 20, 2]) < 80  # RGB kept

    event = store.get_event("ev00005")
    assert event is not None
    assert event.to_dict()["utc"] == "2024-05-01T12:00:00.123+00:00"
    assert (event.width, event.height) == (64, 48)
    assert event.snapshot_bytes == Path(message.snapshot_path).stat().st_size
    assert sorted((d.destination, d.state) for d in event.deliveries) == [
        ("tcp:a", "pending"), ("webhook:b", "pending")
    ]
    assert store.pending("tcp:a") == [message]
    assert store.snapshot_path("ev00005") == Path(message.snapshot_path)

    store.snapshot_url_format = "http://cam/api/events/{event_id}/snapshot"
    assert store.pending("tcp:a")[0].snapshot_url == "http://cam/api/events/ev00005/snapshot"


def test_queries_filter_by_time_and_label_newest_first(store: EventStore) -> None:
    base = datetime(2024, 5, 1, tzinfo=timezone.utc)
    for n in range(10):
        label = Label.INCORRECT if n % 3 == 0 else Label.NO_MASK
        store.add(make_event(n, base + timedelta(minutes=n), label))
    ms = lambda minutes: int((base + timedelta(minutes=minutes)).timestamp() * 1000)  # noqa: E731

    assert [e.event_id for e in store.list_events(limit=3)] == ["ev00009", "ev00008", "ev00007"]
    assert [e.event_id for e in store.list_events(limit=3, offset=3)] == [
        "ev00006", "ev00005", "ev00004"
    ]
    window = store.list_events(since_ms=ms(2), until_ms=ms(5))  # since inclusive, until not
    assert [e.event_id for e in window] == ["ev00004", "ev00003", "ev00002"]
    incorrect = store.list_events(label="incorrect")
    assert [e.event_id for e in incorrect] == ["ev00009", "ev00006", "ev00003", "ev00000"]
    assert store.count_events() == 10
    assert store.count_events(since_ms=ms(2), until_ms=ms(5)) == 3
    assert store.count_events(label="incorrect", since_ms=ms(4)) == 2
    assert store.get_event("nope") is None
    assert store.snapshot_path("nope") is None
    assert store.snapshot_path("../../etc/passwd") is None
    assert len(store.list_events(limit=10**6)) == 10


def test_outbox_marks_expire_and_survive_reopen(tmp_path: Path) -> None:
    config = make_config(tmp_path / "state")
    now = time.time()
    with EventStore(config, DESTS) as store:
        old = datetime.fromtimestamp(now - 500, timezone.utc)
        for n in range(4):
            store.add(make_event(n, old if n == 0 else None))
        assert store.mark_delivered("ev00001", "tcp:a")
        assert store.mark_failed("ev00002", "tcp:a", "connection refused")
        assert store.mark_failed("ev00003", "webhook:b", "HTTP 400", final=True)
        assert not store.mark_delivered("ev00003", "webhook:b")  # final stays final
        assert not store.mark_delivered("unknown", "tcp:a")
        assert store.expire(300, now=now) == {"tcp:a": 1, "webhook:b": 1}  # ev00000
    with EventStore(config, DESTS) as store:
        assert [m.event_id for m in store.pending("tcp:a")] == ["ev00002", "ev00003"]
        assert [m.event_id for m in store.pending("webhook:b")] == ["ev00001", "ev00002"]
        assert store.pending_by_destination() == {"tcp:a": 2, "webhook:b": 2}
        states = {d.destination: d for d in store.get_event("ev00002").deliveries}
        assert (states["tcp:a"].attempts, states["tcp:a"].last_error) == (1, "connection refused")
        assert {d.state for d in store.get_event("ev00000").deliveries} == {"dropped"}
        assert {d.destination: d.state for d in store.get_event("ev00003").deliveries} == {
            "tcp:a": "pending", "webhook:b": "failed"
        }


def _deliver_all(store: EventStore) -> None:
    for d in DESTS:
        for m in store.pending(d, 10_000):
            store.mark_delivered(m.event_id, d)


def test_prune_by_count_deletes_the_oldest_with_their_snapshots(tmp_path: Path) -> None:
    with EventStore(make_config(tmp_path / "s", {"max_events": 5}), DESTS) as store:
        messages = [store.add(make_event(n)) for n in range(8)]
        _deliver_all(store)
        result = store.prune()
        assert result["by_count"] == 3 and result["by_age"] == result["by_bytes"] == 0
        assert [e.event_id for e in store.list_events()] == [f"ev{n:05d}" for n in range(7, 2, -1)]
        assert [Path(m.snapshot_path).exists() for m in messages] == [False] * 3 + [True] * 5
        assert store.prune()["by_count"] == 0


def test_prune_by_snapshot_bytes(tmp_path: Path) -> None:
    with EventStore(make_config(tmp_path / "s", {"max_bytes": 1_000_000}), DESTS) as store:
        sizes = []
        n = 0
        while sum(sizes) <= 1_600_000:
            sizes.append(store.add(make_event(n, image=noise(240, 320, n))).snapshot_path)
            sizes[-1] = Path(sizes[-1]).stat().st_size
            n += 1
        _deliver_all(store)
        result = store.prune()
        assert result["by_bytes"] >= 1 and result["by_count"] == 0
        stats = store.stats()
        assert stats["snapshot_bytes"] <= 1_000_000
        assert stats["snapshot_bytes"] + result["bytes_freed"] == sum(sizes)
        # The oldest went first; what is left is the newest run of events.
        kept = [e.event_id for e in store.list_events(limit=1000)]
        assert kept == [f"ev{i:05d}" for i in range(n - 1, n - 1 - len(kept), -1)]
        on_disk = sum(p.stat().st_size for p in store.snapshot_dir.glob("*.jpg"))
        assert on_disk == stats["snapshot_bytes"]


def test_prune_by_age(tmp_path: Path) -> None:
    now = time.time()
    with EventStore(make_config(tmp_path / "s", {"max_age_days": 1}), DESTS) as store:
        for n, days in enumerate([3, 2, 0.5, 0]):
            store.add(make_event(n, datetime.fromtimestamp(now - days * 86400, timezone.utc)))
        _deliver_all(store)
        assert store.prune(now=now)["by_age"] == 2
        assert sorted(e.event_id for e in store.list_events()) == ["ev00002", "ev00003"]


def test_prune_keeps_pending_events_until_the_outbox_max_age(tmp_path: Path) -> None:
    now = time.time()
    config = make_config(tmp_path / "s", {"max_events": 2, "max_age_days": 1},
                         {"max_age_s": 600})
    with EventStore(config, DESTS) as store:
        ages = [90000, 3000, 500, 400, 300, 200]  # seconds; 90000 s is beyond max_age_days
        for n, age in enumerate(ages):
            store.add(make_event(n, datetime.fromtimestamp(now - age, timezone.utc)))
        store.mark_delivered("ev00004", "tcp:a")
        store.mark_delivered("ev00004", "webhook:b")
        # Pending and younger than 600 s: ev00002, ev00003, ev00005 are kept although over
        # max_events; ev00000 (too old) and ev00001 (pending beyond 600 s) and the delivered
        # ev00004 go.
        result = store.prune(now=now)
        assert sorted(e.event_id for e in store.list_events()) == ["ev00002", "ev00003", "ev00005"]
        assert result["by_age"] == 1 and result["by_count"] == 2
        # Once delivered, they are no longer protected.
        _deliver_all(store)
        store.prune(now=now)
        assert sorted(e.event_id for e in store.list_events()) == ["ev00003", "ev00005"]


def test_full_disk_stores_the_event_without_snapshot(
    store: EventStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def full(fd: int, data) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(event_store_module.os, "write", full)
    with caplog.at_level(logging.ERROR):
        message = store.add(make_event(7))
    assert message.snapshot_path == ""
    event = store.get_event("ev00007")
    assert event is not None and event.snapshot_path == "" and event.snapshot_bytes == 0
    assert len(store.pending("tcp:a")) == 1
    assert store.snapshot_errors == 1
    assert not list(store.snapshot_dir.iterdir())
    assert "No space left on device" in caplog.text and "stored without it" in caplog.text
    monkeypatch.undo()
    assert store.add(make_event(8)).snapshot_path  # recovers once there is room


def test_snapshots_can_be_turned_off(tmp_path: Path) -> None:
    with EventStore(make_config(tmp_path / "s", {"snapshots": False}), DESTS) as store:
        assert store.add(make_event(1)).snapshot_path == ""
        assert not list(store.snapshot_dir.iterdir())


def test_damaged_database_gives_a_clear_message_and_the_service_moves_it_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    config = make_config(state)
    with EventStore(config, DESTS) as store:
        store.add(make_event(1))
    (state / "events.db-wal").unlink(missing_ok=True)
    (state / "events.db").write_bytes(b"this is not a database" * 300)
    with pytest.raises(EventStoreCorrupt) as info:
        EventStore(config, DESTS)
    message = str(info.value)
    assert str(state / "events.db") in message
    assert "damaged or not an SQLite database" in message and "aside" in message

    with caplog.at_level(logging.ERROR), open_event_store(config, DESTS) as store:
        assert store.count_events() == 0
        store.add(make_event(2))
    assert len(list(state.glob("events.db.corrupt-*"))) == 1
    assert len(list(state.glob("snapshots.corrupt-*/ev00001.jpg"))) == 1
    assert "moved aside" in caplog.text


def test_unusable_state_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EventStoreError, match=r"cannot use the event log directory .*state_dir"):
        EventStore(make_config(blocker / "state"), DESTS)


def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with sqlite3.connect(state / "events.db") as other:
        other.execute("CREATE TABLE events (x)")
    with pytest.raises(EventStoreCorrupt, match="not a maskwatch event log"):
        EventStore(make_config(state), DESTS)


def test_orphan_snapshots_and_temporary_files_are_removed_at_open(tmp_path: Path) -> None:
    config = make_config(tmp_path / "state")
    with EventStore(config, DESTS) as store:
        kept = Path(store.add(make_event(1)).snapshot_path)
        (store.snapshot_dir / "ev00002.jpg").write_bytes(b"crash before commit")
        (store.snapshot_dir / "ev00003.jpg.tmp").write_bytes(b"crash mid-write")
    with EventStore(config, DESTS) as store:
        assert sorted(p.name for p in store.snapshot_dir.iterdir()) == [kept.name]


def test_bad_event_id_is_refused(store: EventStore) -> None:
    event = make_event(1)
    bad = AlarmEvent(Alarm("../x", 0.0, 0, 1, Label.NO_MASK, 0.9, (0, 0, 1, 1)), event.frame,
                     event.device, event.utc)
    with pytest.raises(ValueError, match="event id"):
        store.add(bad)


# ------------------------------------------------- malformed rows (issue "Hardening", row 5)


def corrupt(store: EventStore, *statements: str) -> None:
    """Damage rows the way a manual edit, a bad sector or an older version could: valid
    SQLite, wrong values. Written through a connection of its own, as another process would."""
    db = sqlite3.connect(store.path)
    try:
        with db:
            for sql in statements:
                db.execute(sql)
    finally:
        db.close()


def outbox(store: EventStore, destination: str) -> dict[int, tuple[str, str]]:
    db = sqlite3.connect(store.path)
    try:
        return {seq: (state, error) for seq, state, error in db.execute(
            "SELECT seq, state, last_error FROM outbox WHERE destination = ?", (destination,))}
    finally:
        db.close()


def test_malformed_rows_are_failed_in_the_outbox_and_the_others_stay_pending(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(6):
        store.add(make_event(n))  # seq n + 1
    corrupt(
        store,
        "UPDATE events SET box = 'not json' WHERE id = 'ev00001'",
        "UPDATE events SET utc_ms = 'yesterday', confidence = 'high' WHERE id = 'ev00002'",
        "UPDATE events SET device = x'00ff', box = '[1, 2]' WHERE id = 'ev00003'",
        "UPDATE events SET id = x'0102' WHERE id = 'ev00004'",
    )
    bad: list[tuple[str, str]] = []
    with caplog.at_level(logging.WARNING):
        found = store.pending("tcp:a", limit=2, on_bad=lambda ref, why: bad.append((ref, why)))
    # The limit counts good alarms: the bad rows in between do not end the batch early.
    assert [m.event_id for m in found] == ["ev00000", "ev00005"]
    rows = outbox(store, "tcp:a")
    assert rows[1] == ("pending", "") and rows[6] == ("pending", "")
    assert {seq: rows[seq][0] for seq in (2, 3, 4, 5)} == dict.fromkeys((2, 3, 4, 5), "failed")
    assert "box" in rows[2][1] and "utc_ms" in rows[3][1] and "confidence" in rows[3][1]
    assert "device" in rows[4][1] and "box" in rows[4][1] and "id" in rows[5][1]
    assert [ref for ref, _ in bad] == ["ev00001", "ev00002", "ev00003", "event #5"]
    assert "ev00001" in caplog.text and "tcp:a" in caplog.text
    # Read again: the failed rows do not come back; the other destination has its own rows.
    assert [m.event_id for m in store.pending("tcp:a")] == ["ev00000", "ev00005"]
    assert [m.event_id for m in store.pending("webhook:b")] == ["ev00000", "ev00005"]
    assert store.pending_count() == 4


def test_the_events_api_shows_what_can_be_read_of_malformed_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from maskwatch.web import create_app
    from maskwatch.web.auth import set_password

    from test_web_api import PASSWORD, FakeService, _login

    set_password(tmp_path, PASSWORD)
    service = FakeService(tmp_path)
    store = service.store
    app = create_app(service)
    try:
        for n in range(5):
            store.add(make_event(n))
        (store.snapshot_dir / "ev00000.jpg").unlink()  # snapshot file gone
        corrupt(
            store,
            "UPDATE events SET box = 'not json', utc_ms = 'yesterday' WHERE id = 'ev00001'",
            "UPDATE events SET snapshot = 'events.db' WHERE id = 'ev00002'",  # not a snapshot
            "UPDATE events SET id = x'0102' WHERE id = 'ev00003'",
            "UPDATE events SET device = x'00ff', snapshot_bytes = 'many' WHERE id = 'ev00004'",
            "UPDATE outbox SET attempts = 'x', last_error = x'01' WHERE seq = 5",
        )
        client = app.test_client()
        assert _login(client).status_code == 303
        with caplog.at_level(logging.WARNING):
            response = client.get("/api/events")
        assert response.status_code == 200, response.get_data(as_text=True)
        events = {e["event_id"]: e for e in response.json["events"]}
        assert list(events) == ["ev00004", "ev00002", "ev00001", "ev00000"]
        assert "event #4" in caplog.text  # its id is unreadable: left out, with a log line
        assert events["ev00000"]["problems"] == []
        assert {p.split(":")[0] for p in events["ev00001"]["problems"]} == {"utc_ms", "box"}
        assert events["ev00001"]["label"] == "no_mask" and events["ev00001"]["utc"] is None
        assert events["ev00002"]["snapshot_url"] is None
        assert {p.split(":")[0] for p in events["ev00004"]["problems"]} == {
            "device", "snapshot_bytes"}
        (delivery,) = events["ev00004"]["deliveries"]
        assert delivery["attempts"] == 0 and delivery["state"] == "pending"
        assert client.get("/api/events/ev00001").status_code == 200
        assert client.get("/api/events/ev00002/snapshot.jpg").status_code == 404
        assert client.get("/api/events/ev00000/snapshot.jpg").status_code == 404
        assert client.get("/api/status").status_code == 200
    finally:
        app.extensions["maskwatch"]["hub"].close()
        store.close()


def test_prune_and_stats_tolerate_malformed_rows(tmp_path: Path) -> None:
    with EventStore(make_config(tmp_path / "state", {"max_events": 2}), DESTS) as store:
        for n in range(4):
            store.add(make_event(n))
        store.expire(0.0, now=time.time() + 60)  # nothing pending protects them from pruning
        corrupt(
            store,
            "UPDATE events SET snapshot_bytes = 'many', snapshot = 'events.db' "
            "WHERE id = 'ev00000'",
            "UPDATE events SET snapshot = 5 WHERE id = 'ev00001'",
            "UPDATE events SET utc_ms = 'yesterday'",
        )
        stats = store.stats()
        assert stats["events"] == 4 and stats["oldest_utc_ms"] == 0
        result = store.prune()
        assert result["by_count"] == 2
        assert store.path.is_file()  # a snapshot path pointing at it deleted nothing
        assert sorted(e.event_id for e in store.list_events()) == ["ev00002", "ev00003"]
