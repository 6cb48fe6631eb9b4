#!/usr/bin/env bash
# Install or update maskwatch as the systemd service maskwatch.service on Raspberry Pi OS
# (Bookworm) or an NVIDIA Jetson (JetPack 6 / Ubuntu 22.04), from a checkout:
#   sudo scripts/install.sh [--edgetpu]
# Running it again updates the program and the unit; the config and the events are kept.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/install.sh [--dry-run] [--root DIR] [--edgetpu] [--board NAME] [--help]

Install or update maskwatch as the systemd service maskwatch.service:
  /opt/maskwatch             program (source copy, venv) and models, owned by root
  /etc/maskwatch             config, kept on update
  /var/lib/maskwatch         events and state, kept on update
  /etc/systemd/system/maskwatch.service

Options:
  --dry-run     print every step as the command it would run; change nothing
  --root DIR    install into DIR instead of / (also DESTDIR=DIR). apt, user and group
                creation, ownership and systemctl act on the running system, so they
                are printed as skipped
  --edgetpu     also install the Coral Edge TPU runtime (libedgetpu1-std, from Coral's
                apt repository, which must already be configured)
  --board NAME  pi, jetson or generic (default: detected)
  --help        show this text

Environment:
  DESTDIR=DIR           same as --root DIR
  MASKWATCH_SKIP_PIP=1  skip the venv, pip install and model download (for tests and
                        for checking the other steps quickly)
  PYTHON=python3        interpreter for the venv
EOF
}

here=$(cd "$(dirname "$0")/.." && pwd)
user=maskwatch
port=8080
min_disk_mb=1024
# A "1 GB" board reports about 920 MB MemTotal once firmware and GPU memory are reserved.
min_ram_mb=900

prog=install
# shellcheck source=scripts/install-steps.sh
. "$(dirname "$0")/install-steps.sh"

dry_run=0
root=${DESTDIR:-}
edgetpu=0
board=""
while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) dry_run=1 ;;
        --root) [ $# -ge 2 ] || usage_error "--root needs a directory"; root=$2; shift ;;
        --root=*) root=${1#--root=} ;;
        --edgetpu) edgetpu=1 ;;
        --board) [ $# -ge 2 ] || usage_error "--board needs a name"; board=$2; shift ;;
        --board=*) board=${1#--board=} ;;
        -h | --help) usage; exit 0 ;;
        *) usage_error "unknown option: $1" ;;
    esac
    shift
done
normalize_root

if [ -z "$root" ] && [ "$dry_run" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "installing into the system needs root: run it with sudo (or try --dry-run)"
fi

opt=$root/opt/maskwatch
venv=$opt/venv
models=$opt/models
etc_dir=$root/etc/maskwatch
config=$etc_dir/maskwatch.toml
state=$root/var/lib/maskwatch
unit=$root/etc/systemd/system/maskwatch.service
skip_pip=${MASKWATCH_SKIP_PIP:-0}
python=${PYTHON:-python3}

if [ -z "$board" ]; then
    if grep -qs "Raspberry Pi" /proc/device-tree/model; then
        board=pi
    elif [ -f /etc/nv_tegra_release ]; then
        board=jetson
    else
        board=generic
    fi
fi
case $board in
    pi) say "board: Raspberry Pi" ;;
    jetson) say "board: NVIDIA Jetson" ;;
    generic) say "board: neither a Raspberry Pi nor a Jetson; installing for plain Debian/Ubuntu (USB, RTSP and file cameras)" ;;
    *) usage_error "unknown board '$board' (pi, jetson or generic)" ;;
esac
[ "$dry_run" -eq 1 ] && say "dry run: printing the steps, changing nothing"
[ -n "$root" ] && say "installing into $root"

# Checks first, so a device that cannot run maskwatch is left untouched.
disk_dir=$root/opt
while [ ! -d "$disk_dir" ]; do disk_dir=$(dirname "$disk_dir"); done
free_mb=$(df -Pk "$disk_dir" | awk 'NR == 2 { print int($4 / 1024) }')
[ "$free_mb" -ge "$min_disk_mb" ] ||
    die "only $free_mb MB free on the disk holding $disk_dir; maskwatch needs $min_disk_mb MB"
ram_mb=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
[ "$ram_mb" -ge "$min_ram_mb" ] ||
    die "this device has $ram_mb MB of RAM; maskwatch needs a board with at least 1 GB"
say "checks passed: $free_mb MB free disk, $ram_mb MB RAM"

# The RTSP stream for recorders ([stream], off by default, so enabling it needs no install):
# GStreamer's RTSP server through the system's PyGObject (python3-gi, built for this Python
# and this GLib; the venv sees it through the system packages), H.264 parsing and RTP
# (good, bad) and x264enc (ugly), the encoder where the board has no hardware one (Raspberry
# Pi 5, generic machines). Jetson's nvv4l2h264enc comes with JetPack.
packages=(python3-venv python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
    gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly)
case $board in
    # picamera2 comes from apt only (built against the system libcamera).
    pi) packages+=(python3-picamera2) ;;
    # gst-launch-1.0 runs the nvarguscamerasrc pipeline for CSI cameras.
    jetson) packages+=(gstreamer1.0-tools) ;;
esac
[ "$edgetpu" -eq 1 ] && packages+=(libedgetpu1-std)
say "apt packages needed: ${packages[*]}"
missing=()
for pkg in "${packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
    say "apt packages present: ${packages[*]}"
else
    say "installing apt packages: ${missing[*]}"
    if [ -z "$root" ] && [ "$dry_run" -eq 0 ] && ! command -v apt-get >/dev/null; then
        die "apt-get not found: this installer is for Raspberry Pi OS and Jetson (Debian/Ubuntu)"
    fi
    host apt-get update -qq
    if [ "$edgetpu" -eq 1 ] && [ -z "$root" ] && [ "$dry_run" -eq 0 ] &&
        ! apt-cache show libedgetpu1-std >/dev/null 2>&1; then
        die "libedgetpu1-std is not in the apt sources: add Coral's repository (https://coral.ai/software/#debian-packages), then run this again"
    fi
    host env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

say "service user $user"
# The unit asks for SupplementaryGroups=video gpio, and systemd refuses to start a service
# whose group does not exist; Jetson images have no gpio group.
getent group gpio >/dev/null || host groupadd --system gpio
groups=video,gpio
if [ "$edgetpu" -eq 1 ]; then
    # libedgetpu's udev rules give the Coral USB stick to plugdev, the PCIe driver to apex.
    getent group plugdev >/dev/null && groups+=,plugdev
    getent group apex >/dev/null && groups+=,apex
fi
if id "$user" >/dev/null 2>&1; then
    host usermod --append --groups "$groups" "$user"
else
    host useradd --system --user-group --groups "$groups" --home-dir /var/lib/maskwatch \
        --no-create-home --shell /usr/sbin/nologin --comment "maskwatch service" "$user"
fi

say "state directory $state (kept on update)"
run install -d -m 0750 "$state"
host chown "$user:$user" "$state"

# Root owns the config and the service only reads it (group maskwatch): a compromised
# service cannot change its own settings.
run install -d -m 0755 "$etc_dir"
if [ -e "$config" ]; then
    say "keeping the existing config $config"
else
    say "config $config"
    run install -m 0640 "$here/config/maskwatch.toml" "$config"
    host chgrp "$user" "$config"
fi

say "program in $opt"
run install -d -m 0755 "$opt" "$models"
# pip builds in the source tree it is given; building from a copy keeps root-owned build
# files out of the user's checkout and leaves the installed source on the device.
run rm -rf "$opt/src"
run install -d -m 0755 "$opt/src"
sources=()
for f in pyproject.toml setup.cfg README.md LICENSE firmware; do
    [ -e "$here/$f" ] && sources+=("$here/$f")
done
run cp -R "${sources[@]}" "$opt/src/"
if [ "$skip_pip" = 1 ]; then
    say "MASKWATCH_SKIP_PIP=1: skipping the venv, pip install and maskwatch setup"
else
    "$python" -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null ||
        die "Python 3.10 or newer is needed ($python is $("$python" --version 2>&1))"
    # picamera2 (Raspberry Pi) and python3-gi (the stream) come from apt and are seen
    # through the system packages; a venv made by an earlier version without them is opened.
    if [ ! -x "$venv/bin/python" ]; then
        run "$python" -m venv --system-site-packages "$venv"
    elif grep -qs '^include-system-site-packages = false' "$venv/pyvenv.cfg"; then
        run sed -i 's/^include-system-site-packages = false/include-system-site-packages = true/' \
            "$venv/pyvenv.cfg"
    fi
    # A local directory is always reinstalled by pip, so this also updates.
    run "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$opt/src"
    run env "MASKWATCH_MODELS_DIR=$models" "$venv/bin/maskwatch" setup --config "$config"
    # A kept config may not pass a newer version's checks: stop here rather than restart
    # into a service that refuses to start (exit 78).
    run "$venv/bin/maskwatch" check-config "$config" ||
        die "$config is invalid for this version (see above): fix it, then run this again"
fi
shipped=()
for f in "$here"/models/*.tflite "$here"/models/manifest.json; do
    [ -f "$f" ] && shipped+=("$f")
done
if [ ${#shipped[@]} -eq 0 ]; then
    say "warning: $here/models has no *.tflite: put the mask classifier into $models"
else
    run install -m 0644 "${shipped[@]}" "$models/"
fi
# Installed with the program, so removal works once the checkout is gone.
run install -m 0755 "$here/scripts/uninstall.sh" "$opt/uninstall.sh"
run install -m 0644 "$here/scripts/install-steps.sh" "$opt/install-steps.sh"

say "systemd unit $unit"
run install -D -m 0644 "$here/systemd/maskwatch.service" "$unit"
host systemctl daemon-reload
host systemctl enable maskwatch.service
# restart rather than enable --now: an update must replace the running program. With
# Type=notify this waits for READY=1, so a service that cannot start is reported here.
host systemctl restart maskwatch.service ||
    die "maskwatch did not start: 'journalctl -u maskwatch -e' shows why"

if [ "$dry_run" -eq 1 ]; then
    say "dry run finished: nothing was changed"
elif [ -n "$root" ]; then
    say "installed into $root; the service was not started"
else
    ip=$(hostname -I 2>/dev/null | awk '{ print $1 }') || ip=""
    say "maskwatch is running: http://$(hostname).local:$port/${ip:+  or  http://$ip:$port/}"
fi
