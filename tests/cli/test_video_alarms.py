"""Acceptance 3 of the detection core: `maskwatch analyze` on the shared real videos, timed by
video time (see ../shared/data/videos/LABELS.md for what each clip shows)."""

from __future__ import annotations

import json

import pytest

from conftest import require_data, require_models, run_maskwatch

ALARM_LATENCY_S = 1.0


def people(summary: dict) -> dict[str, int]:
    """The summary's per-person counts (F29), only the states that occur."""
    return {state: n for state, n in summary["people"].items() if n}


def analyze(name: str) -> tuple[list[dict], dict]:
    require_models()
    video = require_data("videos", name)
    proc = run_maskwatch("analyze", "--jsonl", str(video))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert "summary" in lines[-1], lines[-1]
    alarms = lines[:-1]
    for alarm in alarms:
        assert set(alarm) == {"event", "id", "t", "frame", "track", "label", "confidence", "box"}
        assert alarm["event"] == "alarm" and alarm["label"] in ("no_mask", "incorrect")
    return alarms, lines[-1]["summary"]


def test_mask_worn_throughout_never_alarms() -> None:
    alarms, summary = analyze("gituatu_mask.mp4")
    assert alarms == []
    assert summary["frames"] == 244
    assert summary["processed"] >= 0.5 * summary["frames"]
    assert people(summary) == {"masked": 1}  # one woman, mask on throughout


def test_unmasked_man_alarms_within_a_second() -> None:
    alarms, summary = analyze("gituatu_nomask.mp4")
    assert alarms, "no alarm on a clip that shows an unmasked face throughout"
    assert alarms[0]["t"] <= ALARM_LATENCY_S
    assert len({a["track"] for a in alarms}) == len(alarms), "a track alarmed twice"
    assert summary["fps"] == pytest.approx(15.0, abs=1.0)
    # One man; the blurred patch of background the detector sometimes takes for a face is
    # not a person. He counts as his alarm's label: the classifier calls his bare face
    # "incorrect" (P 0.6, no_mask 0.35: models/README.md, known weaknesses).
    assert people(summary) == {"incorrect": 1}
    assert {a["label"] for a in alarms} == {"incorrect"}


def test_alarm_only_while_unmasked() -> None:
    alarms, summary = analyze("hoseobjeon_mask_video.mp4")
    unmasked_from, unmasked_to = 1.60, 4.00
    assert alarms, "no alarm during the unmasked part (1.6-4.0 s)"
    assert unmasked_from <= alarms[0]["t"] <= unmasked_from + ALARM_LATENCY_S
    late = [a for a in alarms if not unmasked_from <= a["t"] <= unmasked_to + 0.1]
    assert late == [], f"alarms outside the unmasked part: {late}"
    assert len(alarms) == 1, "one person, one unmasked stretch: one alarm"
    # One woman, unmasked in view for 2.4 s: she counts once, as unmasked, though the clip
    # cuts to her masked again (a new track at her place) and the mask in her hand is
    # sometimes found as a second face.
    assert people(summary) == {"unmasked": 1}


def test_one_person_alarms_once_per_unmasked_stretch_on_one_track() -> None:
    # F7: one person keeps one track; a re-alarm needs the mask seen on in between. The man
    # takes his mask off four times (LABELS.md); the last stretch (0.6 s) is shorter than
    # an alarm takes.
    alarms, summary = analyze("tomeranna_test_results.mp4")
    unmasked = [(0.0, 4.2), (10.9, 12.9), (24.3, 25.7), (38.5, 39.07)]
    assert len({a["track"] for a in alarms}) == 1
    stretches = [
        next(i for i, (start, end) in enumerate(unmasked) if start <= a["t"] <= end + 0.1)
        for a in alarms
    ]
    assert len(stretches) == len(set(stretches)), f"two alarms in one unmasked stretch: {alarms}"
    assert len(alarms) >= 3
    # One man, unmasked at the start: he counts once, with his first alarm's label (the
    # classifier reads his bare face under the burned-in red label as "incorrect").
    assert sum(summary["people"].values()) == 1
    assert people(summary) == {alarms[0]["label"].replace("no_mask", "unmasked"): 1}
