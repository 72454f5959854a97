#!/bin/bash
# SPDX-License-Identifier: MIT
#
# stress.sh - fsx and parallel load through real mounts, calm and with
# workers killed under them.
#
#   stress.sh [fsx] [parallel] [chaos]     (default: all three)
#   stress.sh soak SECONDS                 (the long run; not in the suite)
#
#   fsx       fsx with every operation class on: 50,000 operations on a
#             default mount, 20,000 under writeback,cache=always, 10,000
#             with O_DIRECT (-Z) under cache=never,nopassthrough (the
#             daemon's), 5,000 with -Z under cache=never (in passthrough,
#             as O_DIRECT opens are by default); with operations of up
#             to 1 MiB, whose writes are spliced, 5,000 on a default mount
#             and 2,000 with -Z on max_write=1044480,nopassthrough (255
#             pages, the most 1 MiB pipes hold); under passthrough,
#             20,000, and 5,000 with -Z; 20,000 with every read in a
#             worker (read_now=0) and 20,000 with reads up to 1 MiB in
#             the loop.
#   parallel  On one mount, at once: 4 fsx processes (10,000 operations
#             each, a file each) and load.py (4 processes); afterwards
#             the tree through the mount equals the source's; then
#             readback.py, 300 rounds of 4 processes each reading back
#             its own writes to one file while the others write theirs.
#             Then the same load, smaller (5,000 operations each), under
#             passthrough.
#   chaos     The same while a random worker is killed with SIGKILL every
#             300 ms, on a mount that splices writes, two of the fsx with
#             operations of up to 512 KiB.  Every fsx and the load must still pass: requests
#             of a killed worker run again or fail with EIO, and no
#             acknowledged write is lost.  Afterwards the pool is back to
#             full size.
#   quick     fsx for 5,000 operations, and 2,000 with -Z under
#             nopassthrough: what the sanitizer build runs.
#   soak      chaos for SECONDS: fsx runs until stopped (-N 0), the load
#             for the same time; prints operations, kills and failures.
#
# Seeds come from STRESS_SEED (default: the clock) and are printed, so a
# failure can be replayed: each fsx prints its own seed and the command
# that replays it.  Environment: AIODFS and AIOD_WORKER as for
# tests/lib.sh; FSX (default: the fsx beside the daemon's build).  Exits
# 0 if every check passed, 1 if any failed, 77 (skip) without /dev/fuse.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh" stress
FSX=${FSX:-$(dirname "$(dirname "$AIODFS")")/tests/fsx}
LOAD=$here/load.py
READBACK=$here/readback.py
[ -x "$FSX" ] || { echo "stress.sh: no fsx at $FSX (set FSX)" >&2; exit 1; }
seed=${STRESS_SEED:-$(date +%s)}
echo "stress.sh: seed $seed"

pid=
killer=
before_cleanup() {
	[ -n "$killer" ] && kill "$killer" 2>/dev/null
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		wait "$pid" 2>/dev/null
	fi
}

# mount_fg OPTS: mount $T/src at $T/mnt with aiodfs -f in the background
# of this script, so that $pid is the daemon's.
mount_fg() {
	rm -rf "$T/src" && mkdir -p "$T/src" "$T/mnt"
	"$AIODFS" -f -o "$1" "$T/src" "$T/mnt" &
	pid=$!
	wait_for mounted "$T/mnt" || { fail "mount -o $1"; return 1; }
}

# umount_fg: unmount; the daemon must exit 0.
umount_fg() {
	local rc
	unmount "$T/mnt"
	wait "$pid"
	rc=$?
	pid=
	check "the daemon exits 0 (got $rc)" [ "$rc" = 0 ]
}

workers() { aiod_workers "$pid"; }
spliced() {
	"$AIODFSCTL" stats --json "$T/mnt" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["bytes_spliced"])'
}
nworkers() { [ "$(workers | wc -w)" = "$1" ]; }

# run_fsx NAME ARGS...: fsx on $T/mnt/NAME with a seed derived from ours.
# Run in the background, the subshell becomes fsx, so $! is fsx's pid.
run_fsx() {
	local name=$1 s
	s=$((seed + $(cksum <<<"$name" | cut -d' ' -f1) % 100000))
	shift
	exec "$FSX" -S "$s" "$@" "$T/mnt/$name" >"$T/$name.log" 2>&1
}

# passed NAME: the operations an fsx that passed reports.
passed() { sed -n 's/^fsx: passed: \([0-9]*\) operations.*/\1/p' "$T/$1.log"; }

# show NAME [N]: the failure lines of a log and its last N lines.
show() {
	grep -h '^FAIL' "$T/$1.log" | head -n 20 | sed 's/^/     /'
	sed 's/^/     /' "$T/$1.log" | tail -n "${2:-4}"
}

# fsx_on "OPTS|FSX ARGS"...: one fsx on a fresh mount per pair.
fsx_on() {
	local opts args
	for opts in "$@"; do
		args=${opts#*|} opts=${opts%|*}
		mount_fg "$opts" || continue
		# $args is split into words on purpose.
		if (run_fsx fsx-one $args); then
			ok "fsx $args on -o $opts"
		else
			fail "fsx $args on -o $opts"
			show fsx-one 40
		fi
		umount_fg
	done
}

phase_fsx() {
	fsx_on "cache=auto|-N 50000" "writeback,cache=always|-N 20000" \
		"cache=never,nopassthrough|-Z -N 10000" "cache=never|-Z -N 5000" \
		"cache=auto|-N 5000 -l 4M -o 1M" \
		"max_write=1044480,cache=never,nopassthrough|-Z -N 2000 -l 4M -o 1M" \
		"passthrough|-N 20000" "passthrough|-Z -N 5000" \
		"read_now=0|-N 20000" "read_now=1048576|-N 20000 -l 4M -o 1M"
}

# Short, for the sanitizer build.
phase_quick() {
	fsx_on "cache=auto|-N 5000" "cache=never,nopassthrough|-Z -N 2000"
}

# parallel_load FSX_OPS LOAD_ARGS [BIG_ARGS]: 4 fsx and load.py at once,
# fsx-1 and fsx-2 with BIG_ARGS too.  Returns 1 if any failed.
parallel_load() {
	local fsx_ops=$1 load_args=$2 big=${3:-} i pids=() bad=0
	for i in 1 2 3 4; do
		# $big is split into words on purpose.
		if [ "$i" -le 2 ]; then
			run_fsx "fsx-$i" -N "$fsx_ops" $big &
		else
			run_fsx "fsx-$i" -N "$fsx_ops" &
		fi
		pids+=($!)
	done
	mkdir -p "$T/mnt/load"
	# $load_args is split into words on purpose.
	python3 "$LOAD" -p 4 -s "$seed" $load_args --source "$T/src/load" "$T/mnt/load" \
		>"$T/load.log" 2>&1 &
	pids+=($!)
	for i in 0 1 2 3; do
		if wait "${pids[$i]}"; then
			ok "fsx-$((i + 1)): $(passed "fsx-$((i + 1))") operations"
		else
			fail "fsx-$((i + 1))"
			show "fsx-$((i + 1))" 40
			bad=1
		fi
	done
	if wait "${pids[4]}"; then
		ok "load.py"
		show load 3
	else
		fail "load.py"
		show load 30
		bad=1
	fi
	return $bad
}

phase_parallel() {
	mount_fg "cache=auto" || return
	parallel_load 10000 "-n 1500"
	mkdir -p "$T/mnt/rb"
	if python3 "$READBACK" -n 300 "$T/mnt/rb" >"$T/readback.log" 2>&1; then
		ok "$(tail -n 1 "$T/readback.log"), $("$AIODFSCTL" stats --json "$T/mnt" |
			python3 -c 'import json, sys; print(json.load(sys.stdin)["reads_waited"])') reads held for a write"
	else
		fail "readback.py"
		show readback 20
	fi
	umount_fg
	mount_fg "passthrough" || return
	parallel_load 5000 "-n 800"
	umount_fg
}

# kill_workers INTERVAL: kill a random worker of $pid every INTERVAL
# seconds until terminated; the count goes to $T/kills.
kill_workers() {
	local n=0 ws
	trap 'echo $n >"$T/kills"; exit 0' TERM
	while :; do
		sleep "$1" &
		wait $!
		ws=($(workers))
		[ ${#ws[@]} -gt 0 ] || continue
		kill -KILL "${ws[RANDOM % ${#ws[@]}]}" 2>/dev/null && n=$((n + 1))
	done
}

stop_killer() {
	kill -TERM "$killer"
	wait "$killer"
	killer=
	kills=$(cat "$T/kills")
}

phase_chaos() {
	mount_fg "workers=4,max_write=1044480" || return
	kill_workers 0.3 &
	killer=$!
	parallel_load 10000 "-n 1500 --chaos" "-l 2M -o 512K"
	stop_killer
	check "writes were spliced ($(spliced) bytes)" [ "$(spliced)" -gt 0 ]
	check "workers killed during the run: $kills" [ "$kills" -gt 10 ]
	check "the pool is back to 4 workers" wait_for nworkers 4
	umount_fg
}

# soak SECONDS: the chaos phase for SECONDS, fsx running until stopped.
soak() {
	local secs=$1 i pids=() ops=0 n
	mount_fg "workers=4" || return
	kill_workers 0.3 &
	killer=$!
	for i in 1 2 3 4; do
		run_fsx "fsx-$i" -N 0 -l 1M -o 128K &
		pids+=($!)
	done
	mkdir -p "$T/mnt/load"
	python3 "$LOAD" -p 4 -s "$seed" --chaos --seconds "$secs" --source "$T/src/load" \
		"$T/mnt/load" >"$T/load.log" 2>&1
	check "load.py for $secs s" [ $? = 0 ]
	show load 6
	kill -TERM "${pids[@]}" 2>/dev/null # one that failed has ended
	for i in 0 1 2 3; do
		if wait "${pids[$i]}"; then
			n=$(passed "fsx-$((i + 1))")
			ops=$((ops + ${n:-0}))
			ok "fsx-$((i + 1)): ${n:-?} operations"
		else
			fail "fsx-$((i + 1))"
			show "fsx-$((i + 1))" 40
		fi
	done
	stop_killer
	check "the pool is back to 4 workers" wait_for nworkers 4
	umount_fg
	echo "soak: $secs s, $ops fsx operations, $kills workers killed, $failures failed"
}

if [ "${1:-}" = soak ]; then
	soak "${2:?stress.sh soak SECONDS}"
else
	for part in ${*:-fsx parallel chaos}; do
		case $part in
		fsx | parallel | chaos | quick) echo "== $part"; "phase_$part" ;;
		*) echo "stress.sh: unknown part $part (fsx, parallel, chaos, quick, soak)" >&2; exit 2 ;;
		esac
	done
fi
echo "stress: $failures failed"
[ "$failures" = 0 ]
