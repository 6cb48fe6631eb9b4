#!/usr/bin/env bash
# Set everything up, then run the device pipeline on the built-in demo scene (no camera, no
# data needed) and print every alarm it raises.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh"
exec "$here/.venv/bin/maskwatch" analyze --config "$here/config/maskwatch.toml" --seconds "${DEMO_SECONDS:-30}" demo
