#!/bin/bash
# SPDX-License-Identifier: MIT
#
# stressng.sh - Debian's stress-ng, its filesystem and I/O stressors,
# through the mount.
#
#   stressng.sh [SECONDS [SET...]]   (default: 1 s per stressor; default)
#
# Each stressor below runs as 2 processes for SECONDS with --verify,
# one after another in subdirectories of one mount, so each meets what
# the ones before left in the kernel (the first finding needed two:
# under writeback inode-flags removed files whose times the kernel sent
# afterwards, and io's syncfs() reported the ESTALE).  A SET is a mount:
# "default" (its options) or "writeback" (see below for its order);
# meson runs both.  A stressor
# fails where, through the mount, it exits non-zero, prints a "fail:"
# line (stress-ng reports some failures only so) or runs over its time
# by a minute; then it runs once more in a plain directory, and if it
# fails there too it is reported as the machine's, not counted.  The
# daemon must exit 0 at each unmount.  stress-ng skips fiemap on any
# FUSE filesystem (the kernel's FUSE has no FIEMAP); that is said, not
# counted.
#
# A file made immutable or append-only while the kernel still holds
# times or data of it refuses them later (a limit of -o writeback,
# README).  iomix does that while its other children write (O_SYNC: a
# write then fails with EIO now and then), so under writeback it does
# not run; inode-flags runs last there, so that no later stressor's
# syncfs() reports such an EPERM.  fpunch runs last but one there too:
# it ends its children with SIGKILL, and under writeback the kernel
# sends a file's times (a SETATTR) at the end of each fallocate; one
# killed while that request waits to be read is dropped with EINTR, which
# the kernel records as a writeback error of the mount (README), so the
# next syncfs(), io's, said EINTR (in 2 of 2 runs by hand with stress.sh
# running beside it, which keeps requests waiting longer), or EIO where
# a file had such an error already (most likely the EIO of one CI run).
# In this order, 10 of 10 such runs were clean.
#
# Environment: AIODFS and AIOD_WORKER as for tests/lib.sh.  Exits 0 if
# every check passed, 1 if any failed, 77 (skip) only if /dev/fuse is
# missing.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh" stressng

secs=${1:-1}
stressors="access chdir chmod chown copy-file dentry dir dirdeep dirmany
dup fallocate fcntl fiemap file-ioctl filename flock fpunch fsize fstat
getdent handle hdd inode-flags io iomix link locka lockf lockofd mknod
open rename symlink sync-file touch utime xattr aio readahead revio seek"

command -v stress-ng >/dev/null ||
	{ echo "stressng: no stress-ng (tests/setup-debian installs it)" >&2; exit 1; }

# run DIR NAME LOG: stressor NAME in a fresh DIR/NAME, which is also its
# working directory (some stressors, open's for one, make files in it
# and leave them when their time ends); fails if it did.
run() {
	local dir=$1/$2 log=$3 rc
	mkdir -p "$dir" || return 1
	(cd "$dir" && timeout -k 5 $((secs + 60)) stress-ng "--$2" 2 \
		--timeout "${secs}s" --temp-path "$dir" --verify) >"$log" 2>&1
	rc=$?
	rm -rf "$dir"
	[ "$rc" = 0 ] && ! grep -q 'fail:' "$log"
}

# errors_so_far MNT: the daemon's counters of the FUSE ops that failed
# so far (aiodfsctl stats), to tell an error the daemon answered from
# one the kernel made itself.
errors_so_far() {
	local ctl=${AIODFSCTL:-$(dirname "$AIODFS")/aiodfsctl}
	"$ctl" stats --json "$1" 2>&1 | python3 -c '
import json, sys
try:
    ops = json.load(sys.stdin)["ops"]
except ValueError:
    sys.exit("  daemon: no counters")
for name, o in ops.items():
    if o["errors"]:
        print("  daemon: %s %d errors of %d" % (name, o["errors"], o["count"]))'
}

# with_opts NAME STRESSORS [OPTION...]: each stressor through a mount
# with OPTIONs.
with_opts() {
	local opts=$1 list=$2 src=$T/src-$1 mnt=$T/mnt-$1 ref=$T/ref s log bad=0
	shift 2
	mkdir -p "$src" "$mnt" "$ref"
	serve "$T/daemon-$opts.log" "$src" "$mnt" "$@" || return
	for s in $list; do
		log=$T/$opts-$s.log
		run "$mnt" "$s" "$log" && continue
		if ! run "$ref" "$s" "$T/ref-$s.log"; then
			echo "note $s fails in a plain directory too: not counted"
			continue
		fi
		fail "stress-ng --$s -o $opts:"
		grep -E 'fail:|error' "$log" | head -5
		errors_so_far "$mnt"
		bad=1
	done
	grep -h 'skipping stressor' "$T/$opts-"*.log | sed 's/^/note /' | sort -u
	unmount "$mnt"
	wait "$pid"
	check "-o $opts: the daemon exits 0" [ $? = 0 ]
	[ $bad = 0 ] && ok "-o $opts: $(echo $list | wc -w) stressors, ${secs} s each"
}

shift $(($# > 0))
for set in "${@:-default}"; do
	case $set in
	default) with_opts default "$stressors" ;;
	writeback)
		with_opts writeback \
			"$(echo $stressors | sed 's/ inode-flags//; s/ iomix//; s/ fpunch//') fpunch inode-flags" \
			-o writeback ;;
	*) echo "stressng: unknown set $set (default, writeback)" >&2; exit 1 ;;
	esac
done

echo "$failures failed"
[ "$failures" = 0 ]
