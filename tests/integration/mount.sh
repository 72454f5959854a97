#!/bin/bash
# SPDX-License-Identifier: MIT
#
# mount.sh - run difftest.py against real aiodfs mounts.
#
#   mount.sh [difftest.py options, e.g. -k rename -v]
#
# For each set of mount options below, the script makes a fresh
# directory holding a plain reference
# directory, a source directory and a mount point; mounts the source
# with aiodfs the way users do (without -f, so this also checks that
# aiodfs returns only once the mount is live); and runs
#
#   difftest.py --source SOURCE REFERENCE MOUNTPOINT
#
# which performs every scenario in the reference directory and in the
# mount, compares the transcripts, and finally checks that the mount
# and its source hold the same tree.
#
# Option sets, as root:
#   allow_other,default_permissions   the kernel checks permissions
#   allow_other                       the daemon checks them: each worker
#                                     acts with the caller's credentials
#   allow_other,default_permissions,writeback,cache=always,workers=1
#   allow_other,default_permissions,cache=never,workers=2
#   allow_other,passthrough           the kernel reads and writes open
#                                     files on the source itself
# Under writeback the kernel keeps dirty pages the source has not seen
# and sends SEEK_DATA/SEEK_HOLE without writing them back; aiodfs then
# declines lseek (ENOSYS) and the kernel answers from its own size, as
# if the whole file were data.  POSIX allows that, a local disk does
# better, so sparse_seek is left out of that set (-x sparse_seek).
# The writeback set has one worker: a blocking lock wait must then not
# take it, or the holder's unlock would queue behind the wait.  Every
# set runs the tmpfile scenario: O_TMPFILE, which libfuse 3.14 has no
# operation for, goes on in the loop as a CREATE (fs/loop.c).
# All have allow_other, so difftest.py runs its non-root scenarios
# (--allow-other): without it the kernel refuses other users at the
# mountpoint itself and those scenarios would test nothing.  Run by an
# ordinary user, there is one set, without allow_other, and the non-root
# scenarios are skipped.
#
# Environment:
#   AIODFS         the daemon (default: build/fs/aiodfs at the top of the tree)
#   AIOD_WORKER    the worker (default: aiod/aiod in the same build directory)
#   MOUNT_OPTS     option sets to use instead, separated by ';'; each is
#                  the -o argument, optionally followed by difftest.py
#                  options for that set alone
#
# Mounts are undone and the scratch directory removed on exit (lib.sh).
# Exits 0 if every run passed, 1 if any failed, 77
# (skip) only if /dev/fuse is missing.
set -u

here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh" difftest

if [ "$(id -u)" = 0 ]; then
	optsets=(
		"allow_other,default_permissions"
		"allow_other"
		"allow_other,default_permissions,writeback,cache=always,workers=1 -x sparse_seek"
		"allow_other,default_permissions,cache=never,workers=2"
		"allow_other,passthrough"
	)
	other=--allow-other
else
	optsets=("default_permissions")
	other=
fi
if [ -n "${MOUNT_OPTS:-}" ]; then
	IFS=';' read -r -a optsets <<<"$MOUNT_OPTS"
fi

status=0
for set in "${optsets[@]}"; do
	read -r opts extra <<<"$set"
	tmp=$(mktemp -d "$T/set-XXXXXX") || exit 1
	# Other users must reach everything for the non-root scenarios.
	chmod 755 "$tmp"
	mkdir "$tmp/ref" "$tmp/src" "$tmp/mnt" || exit 1

	echo "=== aiodfs -o $opts${extra:+   (difftest.py $extra)}"
	if ! timeout 30 "$AIODFS" -o "$opts" "$tmp/src" "$tmp/mnt"; then
		echo "FAIL aiodfs -o $opts did not mount"
		status=1
		continue
	fi
	if ! mounted "$tmp/mnt"; then
		echo "FAIL aiodfs returned before the mount was live"
		status=1
		continue
	fi
	# $extra is split into words on purpose.
	python3 "$here/difftest.py" $other $extra --source "$tmp/src" \
		"$tmp/ref" "$tmp/mnt" "$@" || status=1

	if ! fusermount3 -u "$tmp/mnt"; then
		echo "FAIL fusermount3 -u $tmp/mnt"
		status=1
	fi
done
exit $status
