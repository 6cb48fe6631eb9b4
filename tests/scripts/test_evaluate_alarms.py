"""scripts/evaluate_alarms.py: the fixed validation/held-out split, the containment match and
how the alarm gates are applied to wide-open detections."""

from __future__ import annotations

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from evaluate_alarms import (  # noqa: E402
    Thresholds, device_label, half, match, photo_net, score, wear_net, wear_score,
)

TH = Thresholds(min_score=0.6, min_presence=0.9, max_yaw=45, max_pitch=30, min_uncovered=0.9,
                min_incorrect_below_nose=0.01)


def pred(box, label="no_mask", score=0.9, presence=1.0, yaw=0.0, pitch=0.0, gate=None,
         incorrect=0.0, uncovered=None) -> dict:
    p = {"box": box, "label": label, "score": score, "presence": presence,
         "probs": {label: 1.0 - incorrect, "incorrect": incorrect},
         "pose": {"yaw": yaw, "pitch": pitch, "roll": 0.0}}
    if gate:
        p["gate"] = gate
    if uncovered is not None:
        p["uncovered"] = uncovered
    return p


def test_split_is_fixed_and_about_half() -> None:
    names = [f"maksssksksss{i}.jpg" for i in range(835)]
    halves = [half(n) for n in names]
    assert halves == [half(n) for n in names]
    assert 0.4 < halves.count("validation") / len(names) < 0.6


def test_match_by_containment_then_iou() -> None:
    head = {"box": [0, 0, 100, 120], "label": "no_mask"}
    face = pred([10, 20, 90, 100])
    eye = pred([20, 30, 40, 50])  # wholly inside too, but the face overlaps the head more
    assert match([head], [eye, face]) == {1: 0}
    # A detection larger than a tight labelled box: the labelled box lies inside it.
    assert match([{"box": [20, 20, 80, 80], "label": "mask"}], [pred([0, 0, 100, 100])]) == {0: 0}
    assert match([head], [pred([60, 0, 160, 100])]) == {}


def test_every_alarming_verdict_meets_the_same_gates() -> None:
    for label in ("no_mask", "incorrect"):
        assert device_label(pred([0, 0, 1, 1], label), TH) == label
        assert device_label(pred([0, 0, 1, 1], label, score=0.5), TH) == "gated"
        assert device_label(pred([0, 0, 1, 1], label, presence=0.5), TH) == "gated"
        assert device_label(pred([0, 0, 1, 1], label, yaw=-60), TH) == "gated"
        assert device_label(pred([0, 0, 1, 1], label, gate="blurred"), TH) == "gated"
    # A masked face keeps its label whatever its score and presence.
    assert device_label(pred([0, 0, 1, 1], "mask", score=0.2, presence=0.1), TH) == "mask"
    # Without thresholds, the configured device's own gate decides.
    assert device_label(pred([0, 0, 1, 1], gate="no_face_presence"), None) == "gated"


def test_the_wear_check_runs_on_the_classifier_own_verdict() -> None:
    """A face called masked whose nose is bare and whose P(incorrect) reaches the floor is
    incorrect, and then meets the gates of every alarming verdict."""
    bare = pred([0, 0, 1, 1], "mask", incorrect=0.05, uncovered=0.95)
    assert device_label(bare, TH) == "incorrect"
    assert device_label({**bare, "presence": 0.5}, TH) == "gated"
    assert device_label(pred([0, 0, 1, 1], "mask", incorrect=0.005, uncovered=0.95), TH) == "mask"
    assert device_label(pred([0, 0, 1, 1], "mask", incorrect=0.05, uncovered=0.8), TH) == "mask"
    assert device_label(pred([0, 0, 1, 1], "mask", incorrect=0.05), TH) == "mask"
    photos = {"mask/a.jpg": bare, "mask/b.jpg": pred([0, 0, 1, 1], "mask"),
              "no_mask/c.jpg": pred([0, 0, 1, 1]), "mask/d.jpg": None}
    assert photo_net(photos, TH) == -1  # only what the wear check calls incorrect counts


def test_alarm_figures_count_non_faces_and_masked_faces_against() -> None:
    images = [{"file": "images/a.jpg", "faces": [
        {"box": [0, 0, 100, 100], "label": "no_mask"},
        {"box": [200, 0, 300, 100], "label": "mask"},
        {"box": [400, 0, 500, 100], "label": "incorrect"},
    ]}]
    detections = {"a.jpg": [
        pred([10, 10, 90, 90]), pred([210, 10, 290, 90], "incorrect"),
        pred([410, 10, 490, 90], "incorrect"), pred([600, 0, 700, 100]),
        pred([800, 0, 900, 100], score=0.3),
    ]}
    row = score(images, detections, 40, TH)
    assert (row["unmasked_faces"], row["unmasked_alarmed"]) == (1, 1.0)
    assert (row["alarms"], row["false_alarms"], row["false_alarms_no_face"]) == (4, 2, 1)
    assert row["alarm_precision"] == 0.5
    assert (row["incorrect_alarmed"], row["incorrect_labelled_incorrect"]) == (1, 1)


def test_wear_figures_count_flags_and_alarms_per_size() -> None:
    wear = {
        "256/incorrect/a.jpg": pred([0, 0, 1, 1], "incorrect"),
        "256/incorrect/b.jpg": pred([0, 0, 1, 1], "incorrect", presence=0.5),  # held back
        "256/incorrect/c.jpg": None,  # no face found
        "256/correct/d.jpg": pred([0, 0, 1, 1], "mask", presence=0.1),
        "256/correct/e.jpg": pred([0, 0, 1, 1], "no_mask"),  # an alarm on a masked face
    }
    row = wear_score(wear, TH, "full")[0]
    assert (row["size"], row["incorrect_photos"], row["correct_photos"]) == (256, 3, 2)
    assert (row["incorrect_to_incorrect"], row["correct_to_mask"]) == (0.3333, 0.5)
    assert wear_net(wear, TH) == 0
