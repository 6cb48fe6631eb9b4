# shellcheck shell=bash disable=SC2154
# Shared by install.sh and uninstall.sh (sourced, not run): how a step is printed, run or
# skipped. The sourcing script sets $prog (message prefix), $dry_run (0/1) and $root.

say() { printf '%s: %s\n' "$prog" "$*"; }
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
usage_error() { printf '%s: %s (see --help)\n' "$prog" "$*" >&2; exit 2; }

# A step that changes the target: printed always, executed unless --dry-run.
run() {
    printf '+'; printf ' %q' "$@"; printf '\n'
    [ "$dry_run" -eq 1 ] && return 0
    local rc=0
    "$@" || rc=$?
    [ "$rc" -eq 0 ] || printf '%s: error: exit %s from: %s\n' "$prog" "$rc" "$*" >&2
    return "$rc"
}

# A step on the running system itself (packages, users, ownership, services): skipped when
# installing into another root.
host() {
    if [ -n "$root" ]; then
        printf 'skipped (--root):'; printf ' %q' "$@"; printf '\n'
    else
        run "$@"
    fi
}

# "/" and "" both mean the running system; a relative DIR is taken from here.
normalize_root() {
    if [ -n "$root" ]; then root=$(realpath -m "$root"); fi
    if [ "$root" = / ]; then root=""; fi
}
