#!/bin/bash
# SPDX-License-Identifier: MIT
#
# splice.sh - large writes whose data the daemon splices (loop.c, "Large
# writes"), on real mounts.
#
#   splice.sh
#
#  1. max_write=1044480 (whose writes fit this machine's 1 MiB pipes),
#     nopassthrough (so O_DIRECT opens stay in the daemon too): 8 MiB in 1 MiB writes, 3 MiB in unaligned writes at odd offsets,
#     O_APPEND writes of 200 KiB (which the worker cannot splice, and
#     writes through memory), O_DIRECT writes of 1 MiB: the source holds
#     exactly the bytes written, and the daemon counts most of them as
#     spliced (aiodfsctl stats --json, bytes_spliced).
#  2. -o nosplice: the same writes, none spliced.
#  3. The default mount splices, and its writes are 1 MiB where this
#     script may have 2 MiB pipes (CAP_SYS_RESOURCE or pipe-max-size),
#     else 512 KiB: 8 MiB in 1 MiB writes come as 8 or 16 requests.
#     Its reads stay 1 MiB (max_read) either way: 8 MiB read back with
#     O_DIRECT in 1 MiB blocks, on a mount whose O_DIRECT opens are not
#     passed through (-o nopassthrough), come as 8 requests.
#  4. Bad input: max_write below 4096 or above 1 MiB is refused in one
#     line.
#  5. A worker killed in the middle of a spliced write: over slowfs
#     (tests/bench/slowfs, every operation 1 s), the worker holding the
#     third write (the first spliced one) is killed; the write runs
#     again on another worker (the pipe was left whole), dd succeeds and
#     the source has the bytes.
#
# Environment: AIODFS, AIOD_WORKER as for tests/lib.sh; AIODFSCTL and
# SLOWFS (default: in the daemon's build directory).  Exits 0 if every
# check passed, 1 if any failed, 77 (skip) without /dev/fuse or when not
# run as root.
set -u
[ "$(id -u)" = 0 ] || { echo "splice.sh: needs root; skipping"; exit 77; }
. "$(dirname "$0")/../lib.sh" splice
CTL=${AIODFSCTL:-$(dirname "$AIODFS")/aiodfsctl}
SLOWFS=${SLOWFS:-$(dirname "$(dirname "$AIODFS")")/tests/bench/slowfs}
[ -x "$CTL" ] || { echo "splice.sh: no aiodfsctl at $CTL" >&2; exit 1; }
[ -x "$SLOWFS" ] || { echo "splice.sh: no slowfs at $SLOWFS" >&2; exit 1; }

src=$T/src mnt=$T/mnt log=$T/daemon.log
mkdir -p "$src" "$mnt"
slow=
before_cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	if [ -n "$slow" ]; then unmount "$T/slow"; wait "$slow"; fi
}

start() {
	: >"$log"
	serve "$log" "$src" "$mnt" "$@"
}
stop() { unserve "$mnt"; }
not_grep() { ! grep -q "$@"; }
json() {
	"$CTL" stats --json "$mnt" |
		python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"
}
spliced() {
	"$CTL" stats --json "$mnt" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["bytes_spliced"])'
}

head -c 8M /dev/urandom >"$T/data"

# writes DIR: the four kinds of writes into DIR (the mount), each file
# compared with what it must hold, on the source.
writes() {
	local name
	dd if="$T/data" of="$1/seq" bs=1M 2>/dev/null
	check "1 MiB writes: the source has the bytes" cmp -s "$T/data" "$src/seq"
	python3 - "$T/data" "$1/odd" "$T/odd" <<'PY' || fail "unaligned writes"
import os, sys
data = open(sys.argv[1], "rb").read()
expect = bytearray(4 << 20)
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
for i, off in enumerate((12345, 1 << 20, 3000001 - 700000, 77)):
    chunk = data[i << 20:(i << 20) + 700001]
    assert os.pwrite(fd, chunk, off) == len(chunk)
    expect[off:off + len(chunk)] = chunk
os.close(fd)
open(sys.argv[3], "wb").write(bytes(expect[:max(o + 700001 for o in (12345, 1 << 20, 3000001 - 700000, 77))]))
PY
	check "unaligned writes at odd offsets: the source has the bytes" \
		cmp -s "$T/odd" "$src/odd"
	: >"$1/log"
	for name in 0 1 2 3 4; do
		dd if="$T/data" bs=200K skip="$name" count=1 2>/dev/null >>"$1/log"
	done
	check "O_APPEND writes: the source has the bytes" \
		cmp -s "$src/log" <(head -c 1000K "$T/data")
	dd if="$T/data" of="$1/direct" bs=1M oflag=direct 2>/dev/null
	check "O_DIRECT writes: the source has the bytes" cmp -s "$T/data" "$src/direct"
	rm -f "$1"/seq "$1"/odd "$1"/log "$1"/direct
}

# ---- 1. spliced ----
start -o max_write=1044480,nopassthrough || exit 1
writes "$mnt"
s=$(spliced)
check "most bytes were spliced (got $s of ~20 MiB)" test "$s" -gt $((14 << 20))
stop

# ---- 2. never ----
start -o max_write=1044480,nosplice,nopassthrough || exit 1
writes "$mnt"
check "-o nosplice: none spliced" test "$(spliced)" = 0
stop

# ---- 3. the default mount splices, with writes its pipes hold ----
start || exit 1
dd if="$T/data" of="$mnt/seq" bs=1M 2>/dev/null
s=$(spliced)
check "default mount: spliced (got $s)" test "$s" -gt $((4 << 20))
check "and the source has the bytes" cmp -s "$T/data" "$src/seq"
if python3 -c 'import fcntl, os; r, w = os.pipe(); fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 2 << 20)' 2>/dev/null; then
	want=8 size="1 MiB"
else
	want=16 size="512 KiB"
fi
n=$(json 'd["ops"]["write"]["count"]')
check "its writes are $size: 8 MiB came as $want requests (got $n)" test "$n" = "$want"
check "and it said nothing about splicing" not_grep "not spliced" "$log"
stop
start -o nopassthrough || exit 1
r0=$(json 'd["ops"].get("read", {}).get("count", 0)')
dd if="$mnt/seq" of=/dev/null bs=1M iflag=direct 2>/dev/null
n=$(($(json 'd["ops"]["read"]["count"]') - r0))
check "its reads are 1 MiB: 8 MiB came as 8 requests (got $n)" test "$n" = 8
stop

# ---- 4. bad input ----
for bad in 100 1048577; do
	"$AIODFS" -o max_write=$bad "$src" "$mnt" 2>"$T/err"
	rc=$?
	check "max_write=$bad: refused in one line ($(cat "$T/err"))" \
		test $rc != 0 -a "$(wc -l <"$T/err")" = 1
	if mounted "$mnt"; then fail "max_write=$bad: mounted"; stop; else ok "and nothing is mounted"; fi
done

# ---- 5. a worker killed mid-splice ----
mkdir -p "$T/slowsrc" "$T/slow"
"$SLOWFS" -f -o delay_ms=1000 "$T/slowsrc" "$T/slow" 2>>"$log" &
slow=$!
if ! wait_for -t 10 awk -v m="$T/slow" '$2 == m { f = 1 } END { exit !f }' /proc/mounts; then
	fail "slowfs did not mount"
else
	src=$T/slow
	start -o max_write=1044480,workers=2 || exit 1
	dd if="$T/data" of="$mnt/killed" bs=1M count=2 2>"$T/dd" &
	dd=$!
	# Writes: 1020 KiB (read), 4 KiB, then 1020 KiB spliced: the third.
	victim=$(python3 - "$CTL" "$mnt" <<'PY'
import json, subprocess, sys, time
end = time.monotonic() + 30
while time.monotonic() < end:
    d = json.loads(subprocess.run([sys.argv[1], "stats", "--json", sys.argv[2]],
                                  capture_output=True, text=True).stdout)
    done = d["ops"].get("write", {}).get("count", 0)
    held = [r["worker"] for r in d["in_flight"] if r["op"] == "write" and r["worker"] > 0]
    if done == 2 and held:
        print(held[0])
        break
    time.sleep(0.05)
PY
)
	if [ -n "$victim" ]; then
		kill -KILL "$victim"
		ok "killed worker $victim holding the spliced write"
	else
		fail "no worker ever held the third write"
	fi
	wait "$dd"
	check "dd succeeds ($(tail -n 1 "$T/dd"))" test $? = 0
	check "the source has the bytes" cmp -s <(head -c 2M "$T/data") "$T/slowsrc/killed"
	check "the write ran again (re-runs: $(json 'd["pool"]["retries"]'))" \
		test "$(json 'd["pool"]["retries"]')" -ge 1
	check "and was spliced (got $(spliced) bytes)" test "$(spliced)" -ge 1044480
	stop
	src=$T/src
fi

echo "splice: $failures failed"
[ "$failures" = 0 ]
