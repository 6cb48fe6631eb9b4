"""The recorder on a real, really full file system: health follows the last store result, so
it says so while alarms cannot be stored and recovers by itself once there is room."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from maskwatch.events.bus import EventBus
from maskwatch.events.dispatcher import AlarmRecorder, Dispatcher
from maskwatch.events.store import EventStore
from maskwatch.service.status import ServiceStatus
from maskwatch.web.health import assess_health

from test_store import make_config, make_event


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs: a file system that really fills up (needs root, as CI has)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # the disk is full: that is the point
    finally:
        os.close(fd)


def wait_for(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_health_recovers_after_the_disk_fills_and_frees(small_disk: Path) -> None:
    config = make_config(small_disk / "state")
    store = EventStore(config, [])
    dispatcher = Dispatcher(store, [], config.outputs)
    bus = EventBus()
    recorder = AlarmRecorder(bus, store, dispatcher)
    status = ServiceStatus()
    image = np.random.default_rng(0).integers(0, 256, (360, 640, 3), np.uint8)

    def health() -> str:
        status.update(state="active", camera_up=True, event_log_error=recorder.last_error)
        status.frame_processed(0)
        return assess_health(status.snapshot()).status

    try:
        bus.publish("alarm", make_event(0, image=image))
        wait_for(lambda: store.stats()["events"] == 1, "the first alarm stored")
        assert health() == "ok"

        fill(small_disk / "filler")
        for n in range(1, 4):
            bus.publish("alarm", make_event(n, image=image))
        wait_for(lambda: recorder.last_error != "", "a failed store")
        assert health() == "degraded"

        (small_disk / "filler").unlink()
        bus.publish("alarm", make_event(9, image=image))
        wait_for(lambda: store.get_event("ev00009") is not None, "an alarm stored again")
        assert recorder.last_error == ""
        assert health() == "ok"
    finally:
        recorder.stop()
        dispatcher.stop()
        store.close()
