#!/bin/bash
# SPDX-License-Identifier: MIT
#
# tree.sh - copy a real tree through an aiodfs mount, and check what only
# a running daemon can show: its threads, its workers, how it ends.
#
#   tree.sh
#
#  1. Starts `aiodfs -f -o workers=3 SRC MNT` in the background, so that
#     $! is the daemon's pid, and waits for MNT to appear in /proc/mounts
#     (type fuse.aiodfs, source SRC).
#  2. The daemon has exactly one thread (Threads: in /proc/PID/status)
#     and exactly 4 children (/proc/PID/task/PID/children): 3 running
#     the worker binary with only the capabilities file operations need,
#     and libaiod's closer, which shares the daemon's fds and holds no
#     capabilities.
#  3. cp -a /usr/include into the mount; diff -r the mount's copy and the
#     source's copy against /usr/include; compare the copy's metadata
#     (modes, owners, mtimes, symlinks, hard links) with the original,
#     and the mount with its source down to inode numbers (both with
#     difftest.py --compare-trees).
#  4. Still one thread and the same 3 workers after that load.
#  5. fusermount3 -u: the daemon exits 0 and its workers are gone.
#  6. Mounted again without allow_other: a non-root user gets EACCES on
#     the mountpoint itself.
# (Signals, bad input and mounting in the background are lifecycle.sh's.)
#
# Environment: AIODFS and AIOD_WORKER as for lib.sh.  Mounts are undone
# and the daemon this script started is ended on exit.  Exits 0 if every
# check passed, 1 if any failed, 77 (skip) only if /dev/fuse is missing.
set -u

here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh" tree
orig=/usr/include
src=$T/src mnt=$T/mnt
mkdir "$src" "$mnt" || exit 1
pid=

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
not_alive() { ! alive "$1"; }

# Only a daemon this script started, by its pid.
before_cleanup() {
	if alive "$pid"; then
		kill -TERM "$pid"
		wait_for not_alive "$pid" || kill -KILL "$pid"
		wait "$pid" 2>/dev/null
	fi
}

# Starts the daemon in the foreground, in the background of this script.
start() {
	"$AIODFS" -f "$@" "$src" "$mnt" &
	pid=$!
	wait_for mounted "$mnt" || { echo "FAIL mount did not appear"; exit 1; }
}

threads() { awk '/^Threads:/ { print $2 }' "/proc/$pid/status"; }
children() { aiod_workers "$pid"; }

workers_are_aiod() {
	local w want
	want=$(readlink -f "$AIOD_WORKER")
	for w in $(children); do
		[ "$(readlink -f "/proc/$w/exe")" = "$want" ] || return 1
	done
}

# True once none of the given pids runs the worker binary any more.
workers_gone() {
	local w want
	want=$(readlink -f "$AIOD_WORKER")
	for w in "$@"; do
		[ "$(readlink -f "/proc/$w/exe" 2>/dev/null)" = "$want" ] && return 1
	done
	return 0
}

# Prints the errno name that uid/gid 65534 gets from stat(PATH), or "ok".
stat_as_nobody() {
	python3 - "$1" <<'EOF'
import errno, os, sys
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
try:
    os.stat(sys.argv[1])
    print("ok")
except OSError as e:
    print(errno.errorcode[e.errno])
EOF
}

# 1, 2: the shape of a running daemon.
start -o workers=3
check "mount type fuse.aiodfs from $src" \
	awk -v m="$mnt" -v s="$src" '$2 == m { ok = ($1 == s && $3 == "fuse.aiodfs") } END { exit !ok }' /proc/mounts
check "the daemon has one thread (Threads: $(threads))" [ "$(threads)" = 1 ]
before=$(children | xargs)
check "workers=3 gives 3 workers ($before)" [ "$(echo $before | wc -w)" = 3 ]
check "each worker runs $AIOD_WORKER" workers_are_aiod
closer=$(aiod_closer "$pid")
nchildren=$(wc -w <"/proc/$pid/task/$pid/children")
one_closer() { [ -n "$closer" ] && [ "$nchildren" = 4 ]; }
check "and one closer, the only other child ($closer; $nchildren children)" one_closer
# The closer shares the daemon's fd table: a file the daemon opens is
# open in the closer too, under the same number (here: /dev/fuse).
fuse_fd_in() { ls -l "/proc/$1/fd" | awk '$NF == "/dev/fuse" { print $9 }'; }
same_fds() { [ -n "$(fuse_fd_in "$pid")" ] && [ "$(fuse_fd_in "$closer")" = "$(fuse_fd_in "$pid")" ]; }
check "the closer shares the daemon's fds (/dev/fuse as fds $(fuse_fd_in "$pid" | xargs))" same_fds
closer_powerless() {
	grep -q '^CapPrm:[[:space:]]*0*$' "/proc/$closer/status" &&
		grep -q '^CapEff:[[:space:]]*0*$' "/proc/$closer/status" &&
		grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$closer/status"
}
check "the closer holds no capabilities and no_new_privs is set" closer_powerless

# A root daemon's workers keep the file capabilities (CAP_DAC_OVERRIDE,
# bit 1), not others (CAP_NET_ADMIN 12, CAP_SYS_MODULE 16, CAP_SYS_PTRACE
# 19), even in their bounding set, and cannot gain any by exec.
worker_caps_trimmed() {
	local w=$1 eff bnd
	[ -r "/proc/$w/status" ] || return 1
	eff=$((16#$(awk '/^CapEff:/ { print $2 }' "/proc/$w/status")))
	bnd=$((16#$(awk '/^CapBnd:/ { print $2 }' "/proc/$w/status")))
	((eff & (1 << 1))) && ! ((bnd & (1 << 12 | 1 << 16 | 1 << 19))) &&
		grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$w/status"
}
check "a worker keeps only file capabilities, no_new_privs set" \
	worker_caps_trimmed "$(children | head -n 1)"

# 3: a real tree through the mount.
check "cp -a $orig into the mount" cp -a "$orig" "$mnt/include"
check "diff -r the mount's copy" diff -r --no-dereference "$orig" "$mnt/include"
check "diff -r the source's copy" diff -r --no-dereference "$orig" "$src/include"
check "metadata of the copy (modes, owners, mtimes, links)" \
	python3 "$here/difftest.py" --compare-trees --times "$orig" "$mnt/include"
check "the mount and its source, inode numbers included" \
	python3 "$here/difftest.py" --compare-trees --inodes "$mnt" "$src"

# 4: no threads or workers appeared under load.
check "still one thread after the copy (Threads: $(threads))" [ "$(threads)" = 1 ]
after=$(children | xargs)
check "the same 3 workers after the copy ($after)" [ "$after" = "$before" ]

# 5: unmount ends it all.
check "fusermount3 -u" fusermount3 -u "$mnt"
check "the daemon exits" wait_for not_alive "$pid"
wait "$pid"
code=$?
pid=
check "with status 0 (got $code)" [ "$code" = 0 ]
check "its workers are gone" wait_for workers_gone $before

# 6: without allow_other.
start -o workers=2
check "without allow_other, nobody gets EACCES on the mountpoint" \
	[ "$(stat_as_nobody "$mnt")" = EACCES ]

echo "$failures failed"
[ "$failures" = 0 ]
