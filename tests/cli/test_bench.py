"""`maskwatch bench` reports the live path (face mesh following, views in turn) for 1 face, 8
faces and a face moving fast; its figures are a report, so only their shape is checked here."""

from __future__ import annotations

import json

import pytest

from maskwatch.cli.bench import run_bench
from maskwatch.config import parse_config

from conftest import MODELS, require_models


def test_bench_follows_each_face_once(capsys: pytest.CaptureFixture[str]) -> None:
    require_models()
    config = parse_config({"paths": {"models_dir": str(MODELS)}})
    assert run_bench(config, frames=2, as_json=True) == 0
    result = json.loads(capsys.readouterr().out)
    faces = {name: result[name]["live_faces"] for name in
             ("faces_1", "faces_8", "faces_8_small", "fast_1")}
    assert faces == {"faces_1": 1, "faces_8": 8, "faces_8_small": 8, "fast_1": 1}
    for name in faces:
        live = result[name]
        assert 0 < live["live_median_ms_total"] <= live["live_mean_ms_total"] * 2
