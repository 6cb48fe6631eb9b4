#!/usr/bin/env bash
# Create .venv in the checkout, install maskwatch (with optional extras) and fetch the
# third-party model files. Safe to run again: every step is skipped when already done.
#   scripts/setup.sh            runtime only
#   scripts/setup.sh test       runtime + what the test suite needs
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv="${MASKWATCH_VENV:-$here/.venv}"
extras="${1:-}"

log() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        log "need root for: $*"; return 1; fi
}

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || { log "install ${missing[*]} with your package manager"; return 1; }
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null; then
    log "Python 3.10 or newer is needed ($python is $("$python" --version 2>&1))"
    exit 1
fi
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install python3-venv
fi

if [ ! -x "$venv/bin/python" ]; then
    venv_flags=()
    # On a Raspberry Pi, picamera2 comes from apt and is seen through the system packages.
    if grep -qs "Raspberry Pi" /proc/device-tree/model; then venv_flags+=(--system-site-packages); fi
    log "creating $venv"
    "$python" -m venv "${venv_flags[@]}" "$venv"
fi

# Real peers the tests use: GStreamer (the Jetson capture path with videotestsrc),
# the shell linter (install scripts), systemd-analyze (the unit file), an MQTT broker,
# socat (a pty pair for the serial output), openssl (TLS test certificates) and chromium
# (the web page's browser test, driven by Playwright: never `playwright install`).
case ",$extras," in
    *,test,*) apt_install gstreamer1.0-tools gstreamer1.0-plugins-base shellcheck systemd mosquitto socat openssl chromium ;;
esac
# The RTSP stream ([stream] and stream tests): GStreamer's RTSP server and encoders, and
# gst-discoverer-1.0 as the tests' RTSP client. This venv does not see the system's
# python3-gi, so pip builds PyGObject (extra "stream") against libgirepository1.0-dev and
# libcairo2-dev (PyGObject 3.51+ needs girepository-2.0, which Debian 12 lacks).
case ",$extras," in
    *,test,* | *,stream,*) apt_install gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good \
        gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-plugins-base-apps \
        libgirepository1.0-dev libcairo2-dev pkg-config gcc python3-dev ;;
esac

spec="$here"
[ -n "$extras" ] && spec="${here}[$extras]"
stamp="$venv/.maskwatch-installed"
want="$(cat "$here/setup.cfg" "$here/pyproject.toml" | sha256sum | cut -c1-16) $extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing maskwatch${extras:+ with [$extras]} into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$spec"
    echo "$want" > "$stamp"
fi

"$venv/bin/maskwatch" setup
