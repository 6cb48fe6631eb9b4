#!/usr/bin/env bash
# Remove what scripts/install.sh installed. Also installed as /opt/maskwatch/uninstall.sh,
# so it works without the checkout:
#   sudo /opt/maskwatch/uninstall.sh [--purge]
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: uninstall.sh [--dry-run] [--root DIR] [--purge] [--help]

Stop and disable maskwatch.service, remove the unit and /opt/maskwatch (program, venv,
models). The config (/etc/maskwatch), the events (/var/lib/maskwatch) and the maskwatch
user are kept, so a later install picks them up again.

Options:
  --purge       also remove /etc/maskwatch, /var/lib/maskwatch and the maskwatch user
  --dry-run     print every step as the command it would run; change nothing
  --root DIR    remove from DIR instead of / (also DESTDIR=DIR). systemctl and userdel
                act on the running system, so they are printed as skipped
  --help        show this text
EOF
}

user=maskwatch

prog=uninstall
# shellcheck source=scripts/install-steps.sh
. "$(dirname "$0")/install-steps.sh"

dry_run=0
root=${DESTDIR:-}
purge=0
while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) dry_run=1 ;;
        --root) [ $# -ge 2 ] || usage_error "--root needs a directory"; root=$2; shift ;;
        --root=*) root=${1#--root=} ;;
        --purge) purge=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage_error "unknown option: $1" ;;
    esac
    shift
done
normalize_root
[ -z "$root" ] || [ -d "$root" ] || die "--root $root: no such directory"

if [ -z "$root" ] && [ "$dry_run" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "removing from the system needs root: run it with sudo (or try --dry-run)"
fi

opt=$root/opt/maskwatch
etc_dir=$root/etc/maskwatch
state=$root/var/lib/maskwatch
unit=$root/etc/systemd/system/maskwatch.service

[ "$dry_run" -eq 1 ] && say "dry run: printing the steps, changing nothing"
[ -n "$root" ] && say "removing from $root"

if [ -e "$unit" ]; then
    say "stopping and removing maskwatch.service"
    host systemctl disable --now maskwatch.service
    run rm -f "$unit"
    host systemctl daemon-reload
else
    say "no unit at $unit: nothing to stop"
fi

if [ -e "$opt" ]; then
    say "removing the program $opt"
    run rm -rf "$opt"
fi

if [ "$purge" -eq 1 ]; then
    say "purging the config $etc_dir and the events $state"
    run rm -rf "$etc_dir" "$state"
    if id "$user" >/dev/null 2>&1; then
        host userdel "$user"
    fi
else
    say "kept the config $etc_dir, the events $state and the user $user (--purge removes them)"
fi

if [ "$dry_run" -eq 1 ]; then
    say "dry run finished: nothing was changed"
else
    say "maskwatch removed"
fi
