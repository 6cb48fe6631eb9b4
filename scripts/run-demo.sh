#!/usr/bin/env bash
# Set everything up, then run the maskwatch service on the built-in demo scene (no camera, no
# data needed): alarms are printed as "ALARM {...}" log lines and the live page is served on
# port 8080. State (event log, web password) goes to var/ in the checkout. Ctrl-C stops it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh"
export MASKWATCH_STATE_DIR="${MASKWATCH_STATE_DIR:-$here/var}"
config="$here/config/demo.toml"
if [ ! -f "$MASKWATCH_STATE_DIR/web_password" ]; then
    password=$("$here/.venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(12))')
    echo "$password" | "$here/.venv/bin/maskwatch" set-password --config "$config"
    echo "web page: http://localhost:8080/  user: admin  password: $password"
    echo "(change it with: $here/.venv/bin/maskwatch set-password --config $config)"
fi
exec "$here/.venv/bin/maskwatch" run --config "$config"
