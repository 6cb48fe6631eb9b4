"""scripts/score_scenes.py: matching and counting on hand-made cases, then the acceptance
figures of the detection core on the real scene photos through `maskwatch detect --json`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO, require_data, require_models, run_maskwatch

sys.path.insert(0, str(REPO / "scripts"))
from score_scenes import score  # noqa: E402

ANNOTATIONS = {
    "images": [
        {"file": "images/a.jpg", "faces": [
            {"box": [0, 0, 50, 50], "label": "no_mask"},
            {"box": [100, 0, 150, 50], "label": "mask"},
            {"box": [200, 0, 250, 50], "label": "no_mask"},
            {"box": [300, 0, 330, 30], "label": "no_mask"},  # 30 px: left out at 40
            {"box": [400, 0, 450, 50], "label": "incorrect"},
        ]},
    ]
}


def pred(box: list[float], label: str, gate: str | None = None) -> dict:
    p = {"box": box, "score": 0.9, "label": label, "confidence": 0.9, "probs": {}}
    if gate:
        p["gate"] = gate
    return p


def test_counts_recall_precision_and_gates() -> None:
    detections = {"a.jpg": [
        pred([2, 2, 52, 52], "no_mask"),  # hit
        pred([100, 0, 150, 50], "no_mask"),  # a masked face called no_mask: false alarm
        pred([200, 0, 250, 50], "no_mask", gate="pose_out_of_range"),  # gated: not an alarm
        pred([600, 0, 660, 60], "no_mask"),  # nothing there: false alarm
        pred([400, 0, 450, 50], "mask"),
    ]}
    device = score(detections, ANNOTATIONS, 40)
    assert device["faces"] == 4 and device["face_recall"] == 1.0
    assert device["unmasked_faces"] == 2 and device["unmasked_alarmed"] == 0.5
    assert device["false_alarms"] == 2
    assert device["alarm_precision"] == pytest.approx(1 / 3, abs=1e-4)
    assert device["incorrect_predicted_as"] == {"mask": 1}
    ignored = score(detections, ANNOTATIONS, 40, frozenset({"pose_out_of_range"}))
    assert ignored["unmasked_alarmed"] == 1.0
    assert ignored["alarm_precision"] == 0.5


def test_every_alarming_verdict_counts_alike() -> None:
    """An unmasked face called incorrect alarms, and is found; a masked one called incorrect
    is a false alarm; an alarm on an incorrectly masked face is a true one."""
    detections = {"a.jpg": [
        pred([0, 0, 50, 50], "incorrect"),
        pred([100, 0, 150, 50], "incorrect"),
        pred([400, 0, 450, 50], "incorrect"),
    ]}
    figures = score(detections, ANNOTATIONS, 40)
    assert figures["mask_predicted_incorrect"] == 1
    assert figures["incorrect_predicted_as"] == {"incorrect": 1}
    assert figures["unmasked_alarmed"] == 0.5
    assert figures["false_alarms"] == 1
    assert figures["alarm_precision"] == pytest.approx(2 / 3, abs=1e-4)


def test_a_match_needs_iou_04_and_each_face_matches_once() -> None:
    detections = {"a.jpg": [
        pred([20, 20, 70, 70], "no_mask"),  # IoU 0.22 with the first face: no match
        pred([0, 0, 50, 50], "no_mask"),
        pred([1, 1, 51, 51], "no_mask"),  # second box on the same face: a false alarm
    ]}
    result = score(detections, ANNOTATIONS, 40)
    assert result["unmasked_alarmed"] == 0.5
    assert result["false_alarms"] == 2
    assert result["face_recall"] == 0.25


def test_a_missing_image_line_is_an_error() -> None:
    with pytest.raises(SystemExit, match="no detection line for a.jpg"):
        score({}, ANNOTATIONS, 40)


def test_detection_core_figures_on_the_scene_photos(tmp_path) -> None:
    """Issue #2 acceptance 2, measured as the device decides (pose and quality gates on):
    these are floors under the figures measured for this version (README), so a change that
    loses faces or adds false alarms fails here."""
    scenes = require_data("scenes", "andrewmvd")
    require_models()
    proc = run_maskwatch(
        "detect", "--min-face", "20", "--json", str(scenes / "images"), timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "det.jsonl"
    out.write_text(proc.stdout)
    scored = subprocess.run(
        [sys.executable, str(REPO / "scripts/score_scenes.py"), str(out),
         str(scenes / "annotations.json")],
        capture_output=True, text=True, check=True,
    )
    at_40, at_24 = (json.loads(line) for line in scored.stdout.splitlines())
    assert at_40["faces"] == 839 and at_24["faces"] == 1719
    assert at_40["face_recall"] >= 0.95
    assert at_40["alarm_precision"] >= 0.97
    assert at_40["unmasked_alarmed"] >= 0.80
    assert at_24["alarm_precision"] >= 0.90
