#!/bin/bash
# SPDX-License-Identifier: MIT
#
# ctl.sh - the control socket and aiodfsctl, on real mounts.
#
#   ctl.sh
#
#  1. Counters: 1,000 creates through the mount count at least 1,000
#     creates (stats --json), the bytes written are counted, the table
#     names the op, and SIGUSR1 writes the same table to the log.  A
#     program asking every 150 µs makes the loop poll longer than 50 µs,
#     one asking every 20 ms brings it back to 50.  The loop does not
#     poll while writes of 1 MiB come (it splices them), and does after
#     nearly every one of 4 KiB (stats' loop_polls).
#  2. Only the daemon's user: another user (aiodt1, created if missing)
#     cannot connect to the socket (EACCES); aiodfsctl on a path that is
#     no aiodfs mount says so in one line and exits 1.
#  3. Resizing: while fsx runs on the mount, the pool goes to 2, 12, 1,
#     6 and 3 workers; fsx passes, and the daemon has 3 workers after.
#  4. The watchdog (-o slow=1): a flock through the mount that waits for
#     a holder on the source is logged as slow, with its worker's pid,
#     and again when the holder lets go and it completes.
#  5. A daemon killed with SIGKILL leaves its socket behind; a new mount
#     on the same mountpoint serves its own control socket there.
#  6. A control socket whose lock is held (a live daemon's, played here
#     by this script) is never taken over: a new mount serves without
#     one, logs why, and leaves the socket and its listener alone.
#  7. Flushes: none at the close of a file opened only to read, nor of
#     one opened to write on ext4, XFS or tmpfs (section 1); every close
#     with posix_locks, where the flush ends the owner's locks.
#  8. Reads: a cached file on a local source is read by the loop itself,
#     and its data are the source's; O_DIRECT reads (where the kernel
#     gives passthrough, none reaches the daemon), reads of a file not
#     in the page cache, reads on another source and any read with
#     -o read_now=0 go to workers.  Lookups of names the source's caches
#     hold, present or absent, are the loop's on a local source, and so
#     are the forced-sync stats of a file after its first.
#  9. Closes: on a local source a worker keeps a copy of a file's fd only
#     from its second request on, so that a file created and closed
#     empty, or written once, needs no worker to close it (the closer
#     does); one written twice is closed by its worker's CLOSE, and on
#     any other source every file is (workers' AIOD_TRACE lines).  The
#     files hold what was written.
#
# Environment: AIODFS, AIOD_WORKER as for tests/lib.sh; AIODFSCTL and FSX
# (default: beside the daemon in its build directory).  Exits 0 if every
# check passed, 1 if any failed, 77 (skip) without /dev/fuse or when not
# run as root.
set -u
[ "$(id -u)" = 0 ] || { echo "ctl.sh: needs root; skipping"; exit 77; }
. "$(dirname "$0")/../lib.sh" ctl
build=$(dirname "$(dirname "$AIODFS")")
CTL=${AIODFSCTL:-$build/fs/aiodfsctl}
FSX=${FSX:-$build/tests/fsx}
[ -x "$CTL" ] && [ -x "$FSX" ] || { echo "ctl.sh: no aiodfsctl or fsx" >&2; exit 1; }

src=$T/src mnt=$T/mnt log=$T/daemon.log
mkdir -p "$src" "$mnt"
# The source's filesystem, and whether it is one of the local ones
# aiod_pool_flushless() knows (no flush on close; the loop's lookups).
src_type=$(stat -f -c %T "$src")
case $src_type in
ext2/ext3 | xfs | tmpfs) src_local=1 ;;
*) src_local=0 ;;
esac
pid=
before_cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; }

# Mount in the foreground, in the background of this script: $pid.
start() { serve "$log" "$src" "$mnt" "$@"; }
stop() { unserve "$mnt"; }
# gone PID: exited (a zombie of ours counts).
gone() { ! [ -d "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
json() { "$CTL" stats --json "$mnt" | python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }
workers_of() { aiod_workers "$1" | wc -w; }

# ---- 1. counters ----
start -o slow=1 || exit 1
mkdir "$mnt/many"
for i in $(seq 1000); do : >"$mnt/many/f$i"; done
head -c 100000 /dev/zero >"$mnt/data"
n=$(json 'd["ops"]["create"]["count"]')
check "1,000 creates count at least 1,000 (got $n)" test "$n" -ge 1000
# The kernel sends no FLUSH at the close of a file opened only to read,
# nor of one opened to write on a source whose files have no flush (ext4,
# XFS, tmpfs: FOPEN_NOFLUSH); at every close of one opened to write on
# any other (slow.sh has a FUSE source).
# flushes_after FLAG FILE: FLUSH requests for 20 opens with os.FLAG and closes.
flushes_after() {
	local f0
	f0=$(json 'd["ops"].get("flush", {}).get("count", 0)')
	python3 -c "import os, sys
for _ in range(20): os.close(os.open(sys.argv[2], getattr(os, sys.argv[1])))" "$@"
	echo $(( $(json 'd["ops"].get("flush", {}).get("count", 0)') - f0 ))
}
want=$((src_local ? 0 : 20))
n=$(flushes_after O_WRONLY "$mnt/many/f1")
check "20 closes of a file opened to write on $src_type: $want flushes (got $n)" \
	test "$n" = "$want"
n=$(flushes_after O_RDONLY "$mnt/many/f1")
check "20 closes of a file opened to read: none (got $n)" test "$n" = 0
w=$(json 'd["bytes_written"]')
check "100,000 bytes written count so (got $w)" test "$w" -ge 100000
check "the table has a create row" sh -c "'$CTL' stats '$mnt' | grep -q '^create '"
check "its pid is the daemon's" test "$(json 'd["pid"]')" = "$pid"
# A program that asks every 150 µs: the loop's polling (50 µs) misses
# each request and then sleeps a short while, so it polls longer.  The
# window is read while the program still asks: once it stops, the next
# long sleep rightly halves the window again.
python3 - "$mnt/data" <<'PY' &
import os, sys, time
os.setxattr(sys.argv[1], "user.poll", b"1")
end = time.monotonic() + 3
while time.monotonic() < end:
    os.getxattr(sys.argv[1], "user.poll")
    t = time.perf_counter()
    while time.perf_counter() - t < 150e-6:
        pass
PY
asker=$!
# The widest of five looks: on a loaded machine one gap in a thousand
# may exceed the stretch and halve it.
pw=0
for i in 1 2 3 4 5; do
	sleep 0.4
	w=$(json 'd["poll_window_us"]')
	[ "$w" -gt "$pw" ] && pw=$w
done
wait "$asker"
check "requests 150 us apart make it poll longer (got $pw us)" test "$pw" -gt 50
# Then requests 20 ms apart: each long sleep halves it, down to 50.  The
# loop answers them itself (it knows for attr_timeout that the file has
# no security.capability): a worker slower than the window would widen
# it again after each request, rightly, and the check would measure the
# machine.
python3 - "$mnt/data" <<'PY'
import errno, os, sys, time
for _ in range(9):
    try:
        os.getxattr(sys.argv[1], "security.capability")
    except OSError as e:
        if e.errno != errno.ENODATA:
            raise
    time.sleep(0.02)
PY
pw=$(json 'd["poll_window_us"]')
check "requests 20 ms apart bring it back to 50 us (got $pw us)" test "$pw" = 50
# polls_during SIZE: how many times the loop began to poll during 32
# writes of SIZE bytes to one open file, and the bytes spliced meanwhile.
# The two aiodfsctl calls around them make it poll a few times too.
polls_during() {
	python3 - "$mnt/bulk" "$1" "$CTL" "$mnt" <<'PY'
import json, os, subprocess, sys
path, size, ctl, mnt = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def stats():
    out = subprocess.run([ctl, "stats", "--json", mnt], capture_output=True,
                         check=True).stdout
    return json.loads(out)
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
data = b"w" * size
s0 = stats()
for i in range(32):
    os.pwrite(fd, data, i * size)
s1 = stats()
os.close(fd)
print(s1["loop_polls"] - s0["loop_polls"], s1["bytes_spliced"] - s0["bytes_spliced"])
PY
}
read -r np ns <<<"$(polls_during 1048576)"
check "32 writes of 1 MiB are spliced (got $ns bytes)" test "$ns" -ge $((16 << 20))
check "the loop polls a few times at most meanwhile (got $np)" test "$np" -le 8
read -r np ns <<<"$(polls_during 4096)"
check "32 writes of 4 KiB: it polls after nearly each (got $np)" test "$np" -ge 16
rm -f "$mnt/bulk"
kill -USR1 "$pid"
wait_for -t 5 grep -q "^aiodfs: create " "$log"
check "SIGUSR1 writes the table to the log" grep -q "^aiodfs: create " "$log"

# ---- 2. only the daemon's user ----
test_users || exit 1
sock=$(json 'd["control_socket"]')
check "the socket is under /run/aiodfs ($sock)" test -S "$sock" -a "${sock#/run/aiodfs/}" != "$sock"
r=$(setpriv --reuid aiodt1 --regid nogroup --clear-groups /usr/bin/python3 -c "
import errno, socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1]); print('connected')
except OSError as e:
    print(errno.errorcode[e.errno])" "$sock")
check "another user cannot connect ($r)" test "$r" = EACCES
"$CTL" stats "$T" 2>"$T/err" >/dev/null
rc=$?
check "no aiodfs at a path: exit 1, one line ($(cat "$T/err"))" \
	test $rc = 1 -a "$(wc -l <"$T/err")" = 1

# ---- 3. resizing while fsx runs ----
"$FSX" -q -S 7 -N 30000 "$mnt/fsx" >"$T/fsx.log" 2>&1 &
fsx=$!
for n in 2 12 1 6 3; do
	sleep 0.4
	"$CTL" workers "$mnt" "$n" >/dev/null || fail "workers $n"
done
wait "$fsx"
check "fsx passes while the pool is resized" test $? = 0
has_workers() { [ "$(workers_of "$pid")" = "$1" ]; }
wait_for -t 5 has_workers 3
check "3 workers after (got $(workers_of "$pid"))" test "$(workers_of "$pid")" = 3
check "and stats says 3" test "$(json 'd["pool"]["workers"]')" = 3
check "resizing is no worker death (worker_deaths 0)" test "$(json 'd["pool"]["worker_deaths"]')" = 0

# ---- 4. the watchdog ----
echo x >"$src/lockme"
python3 -c "
import fcntl, sys, time
f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX)
print('held', flush=True); time.sleep(2.5)" "$src/lockme" >"$T/holder" &
holder=$!
wait_for -t 5 grep -q held "$T/holder"
flock "$mnt/lockme" true &
waiter=$!
wait_for -t 5 grep -q "slow request: flock" "$log"
check "a lock wait past slow=1 is logged: $(grep "slow request: flock" "$log")" \
	grep -q "slow request: flock on ino [0-9]*, worker [0-9]*, 1\.[0-9] s" "$log"
wait "$holder"
wait "$waiter"
check "the flock completes once the holder lets go" test $? = 0
wait_for -t 5 grep -q "slow request done: flock" "$log"
check "and is logged again: $(grep "slow request done" "$log")" \
	grep -q "slow request done: flock on ino [0-9]* after [0-9.]* s: ok" "$log"

# ---- 5. a socket left by a daemon killed with SIGKILL ----
kill -KILL "$pid"
wait "$pid" 2>/dev/null
pid=
check "the dead daemon's socket is still there" test -S "$sock"
unmount "$mnt"
start || exit 1
check "a new mount serves the control socket there" \
	test "$(json 'd["pid"]')" = "$pid"
stop
check "unmounted: its socket is gone" test ! -e "$sock"
check "and its lock file (one per mount point ever used piled up before)" \
	test ! -e "${sock%.sock}.lock"

# ---- 6. a live daemon's socket is never taken over ----
python3 -c "
import fcntl, os, socket, sys, time
sock = sys.argv[1]
lock = open(sock[:-len('.sock')] + '.lock', 'w')
fcntl.flock(lock, fcntl.LOCK_EX)
s = socket.socket(socket.AF_UNIX); s.bind(sock); s.listen(1)
print('listening', flush=True)
while True:
    c, _ = s.accept(); c.sendall(b'the live one\n'); c.close()
" "$sock" >"$T/live" &
live=$!
wait_for -t 5 grep -q listening "$T/live"
start || exit 1
check "the new daemon says why it has no control socket" \
	grep -q "a live aiodfs holds this mount's control socket" "$log"
r=$(python3 -c "
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
print(s.recv(100).decode().strip())" "$sock")
check "the live one still answers on its socket ($r)" test "$r" = "the live one"
stop
check "and its socket is still there after the new daemon ends" test -S "$sock"
check "and its lock file" test -e "${sock%.sock}.lock"
kill "$live"
wait "$live" 2>/dev/null
rm -f "$sock" "${sock%.sock}.lock"

# ---- 6b. a mount unmounted lazily hands its socket to the next one ----
# A file still open keeps the old daemon alive after umount -l; the
# daemon mounted at the same path then gets the socket (aiodfsctl had
# reached the old one, which kept it, and the new one served without).
echo held >"$src/held"
start || exit 1
old=$pid
exec 8<"$mnt/held"
umount -l "$mnt"
warned=$(grep -c "a live aiodfs holds" "$log")
start || exit 1
check "after a lazy unmount, the daemon mounted there serves the control socket" \
	test "$(json 'd["pid"]')" = "$pid"
check "... without a word of a live one's" \
	test "$(grep -c "a live aiodfs holds" "$log")" = "$warned"
exec 8<&-
wait_for -t 10 gone "$old"
check "the old daemon ends with its last file" gone "$old"
gone "$old" || kill "$old"
wait "$old"
check "and the socket is still the new one's" test "$(json 'd["pid"]')" = "$pid"
r=$(python3 -c "
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b'release\n')
print(s.recv(100).decode().strip())" "$sock")
check "a mounted daemon keeps its socket when asked to release it ($r)" \
	test "$r" = "error: still mounted" -a "$(json 'd["pid"]')" = "$pid"
stop

# ---- 7. with posix_locks, every close flushes: it ends the owner's locks ----
start -o posix_locks || exit 1
: >"$mnt/f"
n=$(flushes_after O_RDONLY "$mnt/f")
check "posix_locks: 20 closes of a file opened to read: 20 flushes (got $n)" test "$n" = 20
n=$(flushes_after O_WRONLY "$mnt/f")
check "posix_locks: 20 closes of a file opened to write: 20 flushes (got $n)" test "$n" = 20
stop

# ---- 8. reads and lookups the loop answers itself ----
# On a local source (ext4, XFS, tmpfs) whose kernel reads with RWF_NOWAIT
# (tmpfs in Linux 6.18 does not), the loop reads what the source's page
# cache holds; anything else, uncached data and O_DIRECT files go to a
# worker.  The read row's by_loop counts the loop's.
nowait_src=0
[ "$src_local" = 1 ] && nowait_src=$(python3 -c "import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
os.write(fd, b'x')
try:
    os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT); print(1)
except OSError:
    print(0)" "$src/nowait")
rm -f "$src/nowait"
# read_through NAME [O_DIRECT]: read the mount's NAME whole in 4 KiB
# reads (aligned, as O_DIRECT needs) and compare it with the source's;
# prints the READ requests that came, how many of them the loop
# answered, and "same" or "differ".
read_through() {
	local q='*(d["ops"].get("read", {}).get(k, 0) for k in ("count", "by_loop"))' r0 r1 same=same
	r0=$(json "$q")
	python3 -c "
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | (os.O_DIRECT if sys.argv[3] else 0))
buf, got = mmap.mmap(-1, 4096), bytearray()
while (n := os.readv(fd, [buf])) > 0:
    got += buf[:n]
os.close(fd)
sys.exit(0 if got == open(sys.argv[2], 'rb').read() else 1)" \
		"$mnt/$1" "$src/$1" "${2:-}" || same=differ
	r1=$(json "$q")
	set -- $r0 $r1
	echo $(($3 - $1)) $(($4 - $2)) $same
}
start || exit 1
# 20,000 bytes: the kernel asks in reads of at most 5 pages.
head -c 20000 /dev/urandom >"$src/cached"
cat "$src/cached" >/dev/null
set -- $(read_through cached)
if [ "$nowait_src" = 1 ]; then
	check "a cached file: all $1 reads answered by the loop ($2), data the same ($3)" \
		test "$1" -ge 1 -a "$2" = "$1" -a "$3" = same
else
	check "a cached file on a $src_type source without RWF_NOWAIT: its $1 reads by workers ($2 by the loop)" \
		test "$1" -ge 1 -a "$2" = 0 -a "$3" = same
fi
set -- $(read_through cached O_DIRECT)
if [ "$(json "d['passthrough']['on']")" = True ]; then
	# By default an O_DIRECT open is in passthrough (fs/passthrough.c).
	check "O_DIRECT: no read reaches the daemon: passthrough (got $1; data $3)" \
		test "$1" = 0 -a "$3" = same
else
	check "O_DIRECT: 5 reads, by workers (got $1, $2 by the loop; data $3)" \
		test "$1" = 5 -a "$2" = 0 -a "$3" = same
fi
if [ "$nowait_src" = 1 ] && [ "$src_type" != tmpfs ]; then
	head -c 20000 /dev/urandom >"$src/cold"
	# DONTNEED is advice: under load a page may stay; fincore says.
	for try in 1 2 3 4 5; do
		python3 -c "import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)" "$src/cold"
		cached=$(fincore --raw --noheadings --output PAGES "$src/cold")
		[ "$cached" = 0 ] && break
		sleep 0.2
	done
	set -- $(read_through cold)
	if [ "$cached" = 0 ]; then
		check "a file not in the page cache: read by a worker ($2 of $1 by the loop; data $3)" \
			test "$1" -ge 1 -a "$2" -lt "$1" -a "$3" = same
	else
		check "a file the source would not drop from its cache ($cached pages): data $3" \
			test "$3" = same
	fi
fi
# Lookups: names the source's caches hold are looked up by the loop on
# a local source (tmpfs too), present or absent; elsewhere by workers.
mkdir "$src/names"
for i in $(seq 50); do : >"$src/names/n$i"; done
stat "$src/names"/n* >/dev/null
stat "$src/names/absent" 2>/dev/null
q='*(d["ops"].get("lookup", {}).get(k, 0) for k in ("count", "by_loop"))'
set -- $(json "$q")
python3 -c "import os, sys
for i in range(1, 51):
    os.stat(f'{sys.argv[1]}/n{i}')
try:
    os.stat(sys.argv[1] + '/absent'); sys.exit(1)
except FileNotFoundError:
    pass" "$mnt/names"
r=$?
set -- "$@" $(json "$q")
n=$(($3 - $1)) l=$(($4 - $2))
if [ "$src_local" = 1 ]; then
	check "52 lookups of cached names, one absent: all by the loop (got $n, $l by the loop; stats right: $r)" \
		test "$n" = 52 -a "$l" = 52 -a "$r" = 0
else
	check "52 lookups on a $src_type source: by workers (got $n, $l by the loop)" \
		test "$n" = 52 -a "$l" = 0 -a "$r" = 0
fi
# Forced-sync stats of those names, changed behind the mount, twice:
# each is a GETATTR.  On a local source the first of each object goes to
# a worker, which brings an O_PATH fd of it, and the loop answers the
# second itself; elsewhere workers answer both.  The attributes are the
# source's each time.
names=$(for i in $(seq 50); do echo n$i; done)
q='*(d["ops"].get("getattr", {}).get(k, 0) for k in ("count", "by_loop"))'
for pass in 1 2; do
	for i in $(seq 50); do
		echo "$pass" >>"$src/names/n$i"
		chmod "6$(((i + pass) % 8))0" "$src/names/n$i"
	done
	set -- $(json "$q")
	got=$(cd "$mnt/names" && stat --cached=never -c '%n %s %a %Y %i %h' $names)
	set -- "$@" $(json "$q")
	want=$(cd "$src/names" && stat -c '%n %s %a %Y %i %h' $names)
	n=$(($3 - $1)) l=$(($4 - $2)) same=same
	[ "$got" = "$want" ] || same=differ
	# The cd's own GETATTR of the directory, if it comes, is the loop's.
	if [ "$src_local" != 1 ]; then
		check "forced-sync stats of 50 files on a $src_type source, pass $pass: by workers (got $n, $l by the loop), attributes the source's ($same)" \
			test "$n" -ge 50 -a "$l" = 0 -a "$same" = same
	elif [ $pass = 1 ]; then
		check "forced-sync stats of 50 files, first: by workers (got $n, $l by the loop), attributes the source's ($same)" \
			test "$n" -ge 50 -a "$l" -le $((n - 50)) -a "$same" = same
	else
		check "forced-sync stats of 50 files, again: all by the loop (got $n, $l by the loop), attributes the source's ($same)" \
			test "$n" -ge 50 -a "$l" = "$n" -a "$same" = same
	fi
done
stop
start -o read_now=0 || exit 1
cat "$src/cached" >/dev/null
set -- $(read_through cached)
check "read_now=0: $1 reads, none by the loop ($2; data $3)" \
	test "$1" -ge 1 -a "$2" = 0 -a "$3" = same
stop

# ---- 9. who closes a file ----
AIOD_TRACE=1 start || exit 1
# worker_closes: CLOSE requests workers ran so far (one trace line each).
worker_closes() { grep -c '^aiod\[[0-9]*\] #[0-9]* close ' "$log"; }
# closes_from N M: at least M CLOSEs since there were N (a RELEASE comes
# after close(2) returns, and its CLOSE after that).
closes_from() { [ $(($(worker_closes) - $1)) -ge "$2" ]; }
mkdir "$mnt/closes"
c0=$(worker_closes)
# Its create keeps a copy: the directory's filesystem is not known yet.
: >"$mnt/closes/first"
wait_for -t 10 closes_from "$c0" 1
c0=$(worker_closes)
# Each i: e (created empty), o (written once), t (written twice, 4 KiB
# apart), each closed at once.
python3 - "$mnt/closes" <<'PY'
import os, sys
for i in range(20):
    for name, n in (("e", 0), ("o", 1), ("t", 2)):
        fd = os.open(os.path.join(sys.argv[1], "%s%d" % (name, i)),
                     os.O_WRONLY | os.O_CREAT, 0o644)
        for k in range(n):
            os.pwrite(fd, b"%s%d.%d" % (name.encode(), i, k), 4096 * k)
        os.close(fd)
PY
want=$((src_local ? 20 : 60))
wait_for -t 10 closes_from "$c0" "$want"
sleep 0.5 # for any more
c1=$(worker_closes)
check "60 files closed, 20 written twice: $want CLOSEs in workers on $src_type (got $((c1 - c0)))" \
	test $((c1 - c0)) = "$want"
same=same
for i in $(seq 0 19); do
	[ -s "$src/closes/e$i" ] && same=differ
	[ "$(cat "$src/closes/o$i")" = "o$i.0" ] || same=differ
	[ "$(head -c 5 "$src/closes/t$i" | tr -d '\0')" = "t$i.0" ] || same=differ
	[ "$(tail -c +4097 "$src/closes/t$i")" = "t$i.1" ] || same=differ
done
check "and the source's files hold what was written ($same)" test "$same" = same
# The closer shares the daemon's fd table: once it has closed them, the
# daemon holds none of the files used once.
used_once_open() { ls -l "/proc/$pid/fd" 2>/dev/null | grep -c " $src/closes/[eo][0-9]"; }
none_open() { [ "$(used_once_open)" = 0 ]; }
wait_for -t 10 none_open
check "and the daemon holds none of the 40 used once open (got $(used_once_open))" none_open
stop

echo "ctl: $failures failed"
[ "$failures" = 0 ]
