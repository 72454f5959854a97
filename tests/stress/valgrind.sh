#!/bin/bash
# SPDX-License-Identifier: MIT
#
# valgrind.sh - the daemon under valgrind's memcheck, with load.
#
#   valgrind.sh
#
# Runs aiodfs -f under memcheck (the workers are separate programs and
# run natively), puts it through fsx (2,000 operations), load.py (2
# processes, 300 operations each, the tree compared with the source) and
# a kill of one worker, unmounts, and requires the daemon to exit 0 with
# no memcheck error and no definite or indirect leak.  Environment:
# AIODFS, AIOD_WORKER as for tests/lib.sh, FSX as for stress.sh.  Exits
# 0 if clean, 1 if not, 77 (skip) without /dev/fuse or valgrind.
set -u
here=$(cd "$(dirname "$0")" && pwd)
command -v valgrind >/dev/null || { echo "valgrind.sh: no valgrind; skipping"; exit 77; }
. "$here/../lib.sh" valgrind
FSX=${FSX:-$(dirname "$(dirname "$AIODFS")")/tests/fsx}

pid=
before_cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		wait "$pid" 2>/dev/null
	fi
}

mkdir -p "$T/src" "$T/mnt"
# Valgrind cannot follow the clone that starts libaiod's closer.
AIOD_NO_CLOSER=1 valgrind -q --error-exitcode=99 --leak-check=full \
	--show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
	--log-file="$T/memcheck.log" "$AIODFS" -f -o workers=2 "$T/src" "$T/mnt" &
pid=$!
wait_for -t 60 mounted "$T/mnt" || { fail "mount under valgrind"; exit 1; }

check "fsx -N 2000" "$FSX" -q -S 1 -N 2000 "$T/mnt/fsx"
mkdir "$T/mnt/load"
check "load.py -p 2 -n 300" python3 "$here/load.py" -p 2 -n 300 -s 1 \
	--source "$T/src/load" "$T/mnt/load"
w=$(aiod_workers "$pid" | head -1)
kill -KILL "$w"
check "served after a worker was killed" cmp -s "$T/src/fsx" "$T/mnt/fsx"

unmount "$T/mnt"
wait "$pid"
rc=$?
pid=
check "the daemon exits 0 under memcheck (got $rc; 99: errors or leaks)" [ "$rc" = 0 ]
# The only lines allowed: valgrind 3.19 knows neither pidfd_open() (434)
# nor openat2() (437), which fails there with ENOSYS, so the loop leaves
# every lookup to a worker (its own, lookup_now(), the unit and
# integration tests run under ASan instead).
if grep -v -e 'unhandled amd64-linux syscall: 43[47]' -e 'write your own handler' \
	-e README_MISSING_SYSCALL -e 'consider this a bug' -e 'valgrind.org/support' \
	"$T/memcheck.log" | grep -q .; then
	fail "memcheck reported:"
	sed 's/^/     /' "$T/memcheck.log" | head -60
else
	ok "memcheck reported nothing"
fi
echo "valgrind: $failures failed"
[ "$failures" = 0 ]
