#!/bin/bash
# A slow source never holds up the loop, closes included.
#
#   AIODFS=build/fs/aiodfs AIOD_WORKER=build/aiod/aiod SLOWFS=... tests/integration/slow.sh
#
# The source is slowfs (tests/bench/slowfs) with every operation taking
# 1 s, its flush too: a FUSE filesystem answers a FLUSH request at every
# close(2) of one of its files, not only at the last.  Files are opened
# and closed through the mount: only the close of the one written waits
# for the source's flush (each close of a file opened to write is a
# FLUSH to the daemon, a source like this has no FOPEN_NOFLUSH, and the
# loop answers nothing of it itself).  While the files open and close,
# the control socket, which the loop serves, is asked for its stats
# every 50 ms: no answer may take 0.5 s (a close of the loop's own copy
# of a source fd, run in the loop, took the whole second).  Reads of a file
# open through the mount reach the source without a FLUSH each (the
# worker keeps its copy of the fd; slowfs's debug log counts both).
# Then every source file the daemon had open is closed: no fd of the
# daemon (nor of its closer, which shares them) still holds one open.
# Exits 0 if all hold.
set -u
. "$(dirname "$0")/../lib.sh" slow
CTL=${AIODFSCTL:-$(dirname "$(dirname "$AIODFS")")/fs/aiodfsctl}
SLOWFS=${SLOWFS:-$(dirname "$(dirname "$AIODFS")")/tests/bench/slowfs}
[ -x "$SLOWFS" ] || { echo "slow.sh: no slowfs at $SLOWFS" >&2; exit 1; }

slow=
before_cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	if [ -n "$slow" ]; then
		fusermount3 -u "$T/slow" 2>/dev/null
		kill "$slow" 2>/dev/null
	fi
}

log=$T/log
mkdir -p "$T/src" "$T/slow" "$T/mnt"
for i in 1 2 3 4; do echo "file $i" >"$T/src/f$i"; done
"$SLOWFS" -d -o delay_ms=1000 "$T/src" "$T/slow" 2>"$T/slowlog" &
slow=$!
slow_mounted() { awk -v m="$T/slow" '$2 == m { f = 1 } END { exit !f }' /proc/mounts; }
wait_for -t 10 slow_mounted || { fail "slowfs did not mount"; exit 1; }
serve "$log" "$T/slow" "$T/mnt" -o workers=8 || exit 1

# Open the four files (a read-only, three for writing: one written),
# close them all, and time the control socket meanwhile.  The prober
# that asks it is a process started before the opens: one forked while
# they are open would inherit the files, and its exec's closes would be
# FLUSHes too (the written file's then taking the source's second, in
# aiodfsctl's time, and leaving its own close nothing to push: CI met
# that once).
python3 - "$CTL" "$T/mnt" >"$T/probe" <<'PY'
import os, subprocess, sys, threading, time
ctl, mnt = sys.argv[1:]
PROBER = '''
import select, subprocess, sys, time
worst = 0.0
while True:
    t0 = time.monotonic()
    subprocess.run(sys.argv[1:], capture_output=True, check=True)
    worst = max(worst, time.monotonic() - t0)
    if select.select([sys.stdin], [], [], 0.05)[0]:
        break
print(f"{worst:.3f}")
'''
prober = subprocess.Popen([sys.executable, "-c", PROBER, ctl, "stats", mnt],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
fds = [os.open(f"{mnt}/f1", os.O_RDONLY)]
fds += [os.open(f"{mnt}/f{i}", os.O_RDWR) for i in (2, 3, 4)]
os.pwrite(fds[1], b"F", 0)
took = [0.0] * len(fds)
def close(i):
    t0 = time.monotonic()
    os.close(fds[i])
    took[i] = time.monotonic() - t0
closers = [threading.Thread(target=close, args=(i,)) for i in range(len(fds))]
for t in closers:
    t.start()
time.sleep(4)
for t in closers:
    t.join()
worst = prober.communicate("stop\n")[0].strip()
print(worst, " ".join(f"{t:.3f}" for t in took))
PY
check "python: opened, wrote, closed" test $? = 0
read -r worst took1 took2 took3 took4 <"$T/probe"
check "the loop answered within 0.5 s while files opened and closed (worst ${worst} s)" \
	python3 -c "import sys; sys.exit(not float('$worst') < 0.5)"
check "the write reached the source" test "$(head -c 1 "$T/src/f2")" = F
# A close must reach the source's flush only after a write: the one
# written took the source's second, the others (read, or opened for
# writing and not written) came back at once.
secs() { python3 -c "import sys; sys.exit(not ($1))"; }
check "the written file's close waited for the source's flush (${took2} s)" secs "$took2 >= 0.9"
check "the others' closes did not (${took1} ${took3} ${took4} s)" \
	secs "max($took1, $took3, $took4) < 0.5"
# Nothing of a FUSE source is the loop's own: each close of the three
# files opened to write came as a FLUSH (their opens said no
# FOPEN_NOFLUSH), and the loop looked up, stat'ed and read nothing of it
# itself (by_loop: see aiodfsctl(1)).
ops_sum() {
	"$CTL" stats --json "$T/mnt" | python3 -c "import json, sys
ops = json.load(sys.stdin)['ops']
print(sum(ops.get(op, {}).get(sys.argv[1], 0) for op in sys.argv[2:]))" "$@"
}
n=$(ops_sum count flush)
check "the closes of the three files opened to write came as FLUSHes (got $n)" test "$n" = 3
n=$(ops_sum by_loop lookup getattr read)
check "the loop answered no lookup, getattr or read itself (got $n)" test "$n" = 0

# Six reads of one open file, its cached pages dropped before each: each
# reaches the source (a READ in slowfs's log), and the worker keeping the
# file's fd closes no copy of it (a close of any copy is a FLUSH there),
# counted before the file is closed.  Not a strict zero: a read may find
# the keeping worker not yet done and go to another.
python3 - "$T/mnt/f1" "$T/slowlog" <<'PY' >"$T/reads"
import os, sys
def count(opcode):
    with open(sys.argv[2]) as log:
        return log.read().count(f"opcode: {opcode} ")
fd = os.open(sys.argv[1], os.O_RDONLY)
def read():
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    return len(os.pread(fd, 4096, 0))
reads0, flushes0 = count("READ"), count("FLUSH")
got = [read() for _ in range(6)]
print(" ".join(map(str, got)), count("READ") - reads0, count("FLUSH") - flushes0)
os.close(fd)
PY
read -r r1 r2 r3 r4 r5 r6 reads flushes <"$T/reads"
check "six reads through the mount read the file" test "$r1 $r2 $r3 $r4 $r5 $r6" = "7 7 7 7 7 7"
check "they reached the source ($reads reads)" test "$reads" -ge 6
check "with fewer FLUSHes than reads at the source ($flushes for $reads)" test "$flushes" -lt 3

# Open files, that is: a known inode of a FUSE source pins an O_PATH fd
# (mode l---------), as it should.
source_fds() { ls -l "/proc/$pid/fd" 2>/dev/null | grep -v '^l---------' | grep -c -- "-> $T/slow/"; }
no_source_fds() { [ "$(source_fds)" = 0 ]; }
check "then no fd of the daemon holds a source file open (within 10 s)" wait_for -t 10 no_source_fds

unserve "$T/mnt"
fusermount3 -u "$T/slow"
wait "$slow"
slow=
echo "slow: $failures failed"
[ "$failures" = 0 ]
