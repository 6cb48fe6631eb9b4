#!/usr/bin/env bash
# Set everything up, then run the whole test suite. CI runs exactly this (.ci/run).
# Extra arguments go to pytest.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh" test
cd "$here"
status=0
"$here/.venv/bin/python" -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "run-tests: pytest collected no tests: that is a failure" >&2
    exit 1
fi
exit "$status"
