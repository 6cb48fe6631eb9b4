"""The command-line contracts other tools depend on: detect's JSON lines, analyze's alarm
lines and summary, exit statuses for bad input (2) and bad config (78)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskwatch.sources.demo import DemoSource
from maskwatch.vision.face_detector import box_iou

from conftest import MODELS, require_models, run_maskwatch


@pytest.fixture(scope="module")
def demo_images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """Two demo frames on disk (one unmasked, one masked) and their true face boxes."""
    require_models()
    folder = tmp_path_factory.mktemp("images")
    demo = DemoSource(MODELS)
    truths = []
    for name, t in (("a_unmasked.png", 3.0), ("b_masked.png", 9.0)):
        frame = demo.frame_at(int(t * demo.fps))
        cv2.imwrite(str(folder / name), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
        truths.append(demo.truth(frame.t))
    return folder, truths


GATES = {
    "pose_out_of_range", "cut_by_edge", "blurred", "underexposed", "overexposed",
    "no_face_presence",
}


def test_detect_json_lines_follow_the_contract(demo_images) -> None:
    folder, truths = demo_images
    proc = run_maskwatch("detect", "--json", str(folder))
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [Path(r["image"]).name for r in records] == ["a_unmasked.png", "b_masked.png"]
    for record, truth in zip(records, truths):
        assert set(record) == {"image", "width", "height", "faces", "ms"}
        assert (record["width"], record["height"]) == (1280, 720)
        near_box, masked = truth[0]
        faces = record["faces"]
        for face in faces:
            assert set(face) - {"gate"} == {
                "box", "score", "label", "confidence", "probs", "pose", "presence"
            }
            assert face["label"] in ("mask", "no_mask", "incorrect")
            assert face.get("gate", "no_face_presence") in GATES
            assert 0.0 <= face["presence"] <= 1.0
            if face["pose"] is not None:  # null where the face mesh found no face
                assert set(face["pose"]) == {"yaw", "pitch", "roll"}
                assert all(-180 <= v <= 180 for v in face["pose"].values())
            assert (face["pose"] is None) == (face["presence"] < 0.5)
            assert face["confidence"] == pytest.approx(max(face["probs"].values()), abs=1e-3)
        ious = [box_iou(np.array(near_box), np.array([f["box"]]))[0] for f in faces]
        best = faces[int(np.argmax(ious))]
        assert max(ious) > 0.4
        assert best["label"] == ("mask" if masked else "no_mask")


def test_detect_table_is_readable(demo_images) -> None:
    folder, _ = demo_images
    proc = run_maskwatch("detect", str(folder / "a_unmasked.png"))
    assert proc.returncode == 0, proc.stderr
    assert "no_mask" in proc.stdout and "face(s)" in proc.stdout


def test_detect_reports_unreadable_images_and_goes_on(demo_images, tmp_path: Path) -> None:
    folder, _ = demo_images
    bad = tmp_path / "broken.jpg"
    bad.write_text("not an image")
    proc = run_maskwatch("detect", "--json", str(bad), str(folder / "b_masked.png"))
    assert proc.returncode == 2
    assert "broken.jpg: not a readable image" in proc.stderr
    assert len(proc.stdout.splitlines()) == 1


def test_detect_rejects_min_face_out_of_range(demo_images) -> None:
    folder, _ = demo_images
    proc = run_maskwatch("detect", "--min-face", "5", str(folder))
    assert proc.returncode == 2
    assert "--min-face 5" in proc.stderr and "16" in proc.stderr


def test_analyze_demo_alarms_only_when_unmasked() -> None:
    require_models()
    proc = run_maskwatch("analyze", "--jsonl", "--seconds", "14", "demo")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    summary = lines[-1]["summary"]
    assert summary["frames"] == summary["processed"] == 14 * 15
    alarms = lines[:-1]
    assert summary["alarms"] == len(alarms) >= 1
    demo = DemoSource(MODELS)
    for alarm in alarms:
        assert alarm["label"] == "no_mask"
        assert not demo.truth(alarm["t"])[0][1], f"alarm while the mask is worn: {alarm}"
    assert alarms[0]["t"] <= 1.0


def test_analyze_unreadable_video_exits_2(tmp_path: Path) -> None:
    require_models()
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\x00" * 100)
    proc = run_maskwatch("analyze", str(bad))
    assert proc.returncode == 2
    assert "clip.mp4" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_config_exits_78_listing_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[detector]\nmin_face = 2\nmax_faces = 9\n[decision]\nwindow = 1\n")
    proc = run_maskwatch("analyze", "--config", str(config), "demo")
    assert proc.returncode == 78
    for key in ("detector.min_face", "detector.max_faces", "decision.window"):
        assert key in proc.stderr
    assert "Traceback" not in proc.stderr
