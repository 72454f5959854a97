# SPDX-License-Identifier: MIT
#
# lib.sh - sourced by the integration and stress scripts: where the
# binaries are, a scratch directory whose mounts are undone on exit, and
# small checks.
#
#   . "$(dirname "$0")/../lib.sh" NAME
#
# Sets AIODFS (the daemon, absolute), exports AIOD_WORKER (default: the
# worker in the daemon's build directory), and T, a fresh directory
# under /tmp that other users can enter.  On exit, every aiodfs mount
# under T is undone (fusermount3 -u, or umount -l if that fails) and T is
# removed without crossing into a mount that could not be undone.
# Exits 77 (skip) if /dev/fuse is missing, 1 if the daemon is.

[ -c /dev/fuse ] || { echo "$1: /dev/fuse is missing; skipping"; exit 77; }
_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
AIODFS=$(realpath "${AIODFS:-$_top/build/fs/aiodfs}")
export AIOD_WORKER=${AIOD_WORKER:-$(dirname "$(dirname "$AIODFS")")/aiod/aiod}
[ -x "$AIODFS" ] || { echo "$1: no aiodfs at $AIODFS (set AIODFS)" >&2; exit 1; }

T=$(mktemp -d "/tmp/aiodfs-$1.XXXXXX") || exit 1
chmod 755 "$T"

# Is $1 a mount point of an aiodfs mount?
mounted() { awk -v m="$1" '$2 == m && $3 == "fuse.aiodfs" { f = 1 } END { exit !f }' /proc/mounts; }

# Undo the mount at $1, waiting a second for a busy one to settle.
unmount() {
	fusermount3 -u "$1" 2>/dev/null ||
		{ sleep 1; fusermount3 -u "$1" 2>/dev/null; } ||
		umount -l "$1"
}

# serve LOG SRC MNT [OPTION...]: aiodfs -f in the background of this
# script, its stderr appended to LOG; sets pid to the daemon's.  Fails
# (and says so) if MNT is not mounted within 10 s.
pid=
serve() {
	local log=$1 src=$2 mnt=$3
	shift 3
	"$AIODFS" -f "$@" "$src" "$mnt" 2>>"$log" &
	pid=$!
	wait_for -t 10 mounted "$mnt" || { fail "mount $*"; return 1; }
}

# unserve MNT: unmount MNT and wait for the daemon serve started.
unserve() {
	unmount "$1"
	wait "$pid" 2>/dev/null
	pid=
}

# A script may define before_cleanup, run first on exit (to end a
# daemon it started, by pid).
_cleanup() {
	local m
	cd /
	if declare -F before_cleanup >/dev/null; then before_cleanup; fi
	awk -v t="$T/" 'index($2, t) == 1 { print $2 }' /proc/mounts | sort -r |
		while read -r m; do
			unmount "$m" || echo "could not unmount $m" >&2
		done
	rm -rf --one-file-system "$T"
}
trap _cleanup EXIT
trap 'exit 1' INT TERM HUP

# wait_for [-t SECONDS] COMMAND...: wait up to 5 s (or SECONDS) for
# COMMAND to succeed.
wait_for() {
	local secs=5 _
	if [ "$1" = -t ]; then secs=$2; shift 2; fi
	for _ in $(seq $((secs * 20))); do "$@" && return 0; sleep 0.05; done
	return 1
}

# A daemon's children: its workers (the aiod program) and its closer
# (aiod-closer, a clone of the daemon that closes fds for it: see
# aiod_pool_new() in lib/aiod.h), by pid.
children_named() {
	local c
	for c in $(cat "/proc/$1/task/$1/children" 2>/dev/null); do
		[ "$(cat "/proc/$c/comm" 2>/dev/null)" = "$2" ] && echo "$c"
	done
}
aiod_workers() { children_named "$1" aiod; }
aiod_closer() { children_named "$1" aiod-closer; }

# The test users, made once for every script that needs them: aiodt1
# (group nogroup, and aiodtg as a supplementary group) and aiodt2
# (nogroup only).  Scripts run in parallel: the lock keeps one from
# seeing half of another's work.  Returns non-zero if they cannot be made.
test_users() {
	(
		flock 9 || exit 1
		getent group aiodtg >/dev/null || groupadd aiodtg || exit 1
		if ! id aiodt1 >/dev/null 2>&1; then
			useradd -M -N -g nogroup -G aiodtg -s /usr/sbin/nologin aiodt1 || exit 1
		elif ! id -nG aiodt1 | grep -qw aiodtg; then
			usermod -a -G aiodtg aiodt1 || exit 1
		fi
		id aiodt2 >/dev/null 2>&1 ||
			useradd -M -N -g nogroup -s /usr/sbin/nologin aiodt2 || exit 1
	) 9>/run/aiodfs-test-users.lock
}

# Checks print "ok   WHAT" or "FAIL WHAT" and count the failures.
failures=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
check() {
	local what=$1
	shift
	if "$@"; then ok "$what"; else fail "$what"; fi
}
