"""Shared locations and skips: tests that need the shared data or fetched models skip with a
reason a person can act on, and run in CI where both are present."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
DATA = REPO.parent / "shared" / "data"
FAKES = Path(__file__).parent / "fakes"


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """tests/fakes/picamera2 (a fake with picamera2's real API shape: there is no camera here)
    importable as ``picamera2`` for one test only, so no other test finds it."""
    monkeypatch.syspath_prepend(str(FAKES))
    sys.modules.pop("picamera2", None)
    module = importlib.import_module("picamera2")
    module.reset()
    yield module
    sys.modules.pop("picamera2", None)


def require_models() -> None:
    if not (MODELS / "blazeface" / "face_detection_full_range.tflite").is_file():
        pytest.skip("BlazeFace missing: run maskwatch setup (scripts/setup.sh)")
    if not (MODELS / "blazeface" / "face_landmark.tflite").is_file():
        pytest.skip("face mesh missing: run maskwatch setup (scripts/setup.sh)")
    if not (MODELS / "manifest.json").is_file():
        pytest.skip("models/manifest.json missing: train with scripts/train_classifier.py")


def require_data(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} absent: the shared data set is only on developer and CI machines")
    return path


def run_maskwatch(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The installed command line, as a user or another tool runs it."""
    env = dict(os.environ, MASKWATCH_MODELS_DIR=str(MODELS))
    return subprocess.run(
        [sys.executable, "-m", "maskwatch", *args],
        capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL,
    )
