#!/bin/bash
# SPDX-License-Identifier: MIT
#
# faults.sh - a mount that keeps serving when the source fails it.
#
#   faults.sh [full|reserve|waits|fds]...      (default: all four)
#
#   full  The source is a 32 MiB ext4 image, loop-mounted.  Writes
#         through the mount that fill it fail with ENOSPC (under
#         writeback, at the latest the fsync does); the daemon keeps
#         serving; a file written before reads back intact; once space
#         is freed, writes work again.
#   reserve  The same image with 10% reserved for root, shared with
#         allow_other: an ordinary user filling it through the mount
#         stops at ENOSPC with the reserve left (writes run as their
#         caller, and ordinary callers' requests with no capability),
#         with O_DIRECT writes too (not in passthrough on such a mount);
#         root then writes into the reserve through the mount.
#   waits A source syscall that hangs: 50 callers wait through the mount
#         for a flock held on the source, with 1 worker and with 4.
#         Exactly all workers but one sit in the wait (seen in their
#         /proc wchan; the other waits are parked in the daemon), so
#         unrelated requests are answered; ^C ends 10 waits with EINTR
#         within a second, and the workers they held take parked waits
#         again; released, the other 40 each get the lock in turn, and
#         no worker is left waiting.
#   fds   10,000 files held open at once through one mount all read
#         back.  Then, with the daemon limited to 1,024 fds, a caller
#         opens files until an open fails: it fails with EMFILE or
#         ENFILE, the daemon still serves, and once the files are
#         closed, opens work again.
#
# (The daemon killed with SIGKILL is lifecycle.sh's; workers killed under
# load are chaos.sh's.)  Environment: AIODFS and AIOD_WORKER as for
# tests/lib.sh.  Exits 0 if every check passed, 1 if any failed, 77
# (skip) only if /dev/fuse is missing.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh" faults

loop_mounted=
before_cleanup() {
	local m
	for m in "$T"/mnt-*; do mounted "$m" && unmount "$m"; done
	[ -n "$loop_mounted" ] && umount "$loop_mounted"
}

# ---- a full source --------------------------------------------------------
full() {
	local opts
	for opts in cache=auto writeback; do
		full_with "$opts"
	done
}

full_with() {
	local opts=$1 img=$T/small.img small=$T/small mnt=$T/mnt-full
	mkdir -p "$small" "$mnt"
	truncate -s 32M "$img" && mkfs.ext4 -q -F "$img" &&
		mount -o loop "$img" "$small" || { fail "full: loop-mount an ext4 image"; return; }
	loop_mounted=$small
	mkdir "$small/src"
	"$AIODFS" -o "$opts" "$small/src" "$mnt" || { fail "full: mount -o $opts"; return; }
	python3 - "$mnt" <<'PY' && ok "full -o $opts: ENOSPC, still serving, old data intact, writes again after a delete" || fail "full -o $opts"
import errno, os, sys

mnt = sys.argv[1]
os.chdir(mnt)
keep = os.urandom(1 << 20)
with open("keep", "wb") as f:
    f.write(keep)
    os.fsync(f.fileno())

def fill(name):
    """Write until the source is full; return the errno that stopped it."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644)
    chunk = b"\xa5" * (1 << 20)
    try:
        for _ in range(64):
            os.write(fd, chunk)
        os.fsync(fd)
    except OSError as e:
        return e.errno
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    return 0

def check(what, cond):
    if not cond:
        print("FAIL", what)
        sys.exit(1)
    print("ok  ", what)

err = fill("fill")
check(f"filling the source fails with ENOSPC (got {errno.errorcode.get(err, err)})",
      err == errno.ENOSPC)
err = fill("more")
check("a second file fails with ENOSPC too", err == errno.ENOSPC)
names = sorted(os.listdir("."))
check(f"the daemon still serves: listing {names}", names == ["fill", "keep", "more"])
check("the file written before reads back intact", open("keep", "rb").read() == keep)
os.unlink("fill")
os.unlink("more")
data = os.urandom(4 << 20)
with open("after", "wb") as f:
    f.write(data)
    os.fsync(f.fileno())
check("after a delete, 4 MiB write and read back", open("after", "rb").read() == data)
PY
	unmount "$mnt"
	umount "$small" && loop_mounted=
	rm -f "$img"
}

reserve() {
	local img=$T/small.img small=$T/small mnt=$T/mnt-reserve r free
	test_users || { fail "reserve: making the test users"; return; }
	mkdir -p "$small" "$mnt"
	truncate -s 32M "$img" && mkfs.ext4 -q -F -m 10 "$img" &&
		mount -o loop "$img" "$small" || { fail "reserve: loop-mount an ext4 image"; return; }
	loop_mounted=$small
	mkdir -m 1777 "$small/src"
	"$AIODFS" -o allow_other "$small/src" "$mnt" || { fail "reserve: mount"; return; }
	# fill NAME [direct]: as an ordinary user, write 64 MiB to NAME
	# (with O_DIRECT: what the kernel would pass through to the source
	# with root's rights, were it a backing file); say how it ended.
	fill() {
		setpriv --reuid aiodt1 --regid nogroup --clear-groups /usr/bin/python3 - "$mnt/$1" "${2:-}" <<'PY'
import errno, mmap, os, sys
direct = os.O_DIRECT if sys.argv[2] else 0
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | direct, 0o644)
buf = mmap.mmap(-1, 1 << 20)
buf[:] = b"u" * (1 << 20)
try:
    for _ in range(64):
        os.writev(fd, [buf])
    os.fsync(fd)
    print("no error")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
finally:
    os.close(fd)
PY
	}
	r=$(fill user)
	check "reserve: a user filling the source stops at ENOSPC ($r)" test "$r" = ENOSPC
	r=$(fill user-direct direct)
	check "reserve: and with O_DIRECT writes too ($r)" test "$r" = ENOSPC
	free=$(stat -f -c '%f %S' "$small" | awk '{ print int($1 * $2 / 1048576) }')
	check "reserve: root's reserve is left ($free MiB free of 3 reserved)" test "$free" -ge 2
	check "reserve: root writes 1 MiB into it through the mount" \
		sh -c "head -c 1048576 /dev/zero >'$mnt/root' && sync '$mnt/root'"
	unmount "$mnt"
	# The daemon may still hold the source for a moment after.
	wait_for -t 10 umount "$small" 2>/dev/null && loop_mounted=
	rm -f "$img"
}

# ---- many lock waits -------------------------------------------------------
waits() {
	local opts src=$T/src-waits mnt=$T/mnt-waits
	mkdir -p "$src" "$mnt"
	for opts in workers=1 workers=4; do
		"$AIODFS" -o "$opts" "$src" "$mnt" || { fail "waits: mount -o $opts"; continue; }
		python3 - "$src" "$mnt" "${opts#workers=}" <<'PY' && ok "waits -o $opts: 50 waiters, others served, ^C and release" || fail "waits -o $opts"
import fcntl, os, signal, sys, time

src, mnt, nworkers = sys.argv[1], sys.argv[2], int(sys.argv[3])
bound = nworkers - 1
with open(os.path.join(src, "locked"), "w") as f:
    f.write("locked")
with open(os.path.join(src, "other"), "w") as f:
    f.write("other")

def check(what, cond):
    if not cond:
        print("FAIL", what)
        sys.exit(1)
    print("ok  ", what)

def in_worker_waits():
    """How many of this mount's workers sit in a flock wait."""
    n = 0
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            if open(f"/proc/{p}/comm").read().strip() != "aiod":
                continue
            ppid = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1]
            if mnt not in open(f"/proc/{ppid}/cmdline").read().split("\0"):
                continue
            n += open(f"/proc/{p}/wchan").read() == "locks_lock_inode_wait"
        except OSError:
            pass
    return n

def settles_at(want):
    """Parked waits take freed workers within their retry interval."""
    for _ in range(40):
        if in_worker_waits() == want:
            return True
        time.sleep(0.05)
    return False

holder = os.open(os.path.join(src, "locked"), os.O_RDWR)
fcntl.flock(holder, fcntl.LOCK_EX)

def on_int(signum, frame):
    raise InterruptedError

waiters = {}
for i in range(50):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        signal.signal(signal.SIGINT, on_int)
        fd = os.open(os.path.join(mnt, "locked"), os.O_RDWR)
        os.write(w, b"w")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(w, b"L")
        except InterruptedError:
            os.write(w, b"I")
        os._exit(0)
    os.close(w)
    waiters[pid] = r
for r in waiters.values():
    os.read(r, 1)
check(f"{bound} of {nworkers} workers wait, the rest of the 50 are parked",
      settles_at(bound))

start = time.monotonic()
for i in range(100):
    os.stat(os.path.join(mnt, "other"))
    with open(os.path.join(mnt, "other")) as f:
        assert f.read() == "other"
took = time.monotonic() - start
check(f"50 waiting: 200 unrelated requests answered in {took:.2f} s", took < 10)

pids = list(waiters)
start = time.monotonic()
for pid in pids[:10]:
    os.kill(pid, signal.SIGINT)
got = [os.read(waiters[pid], 1) for pid in pids[:10]]
took = time.monotonic() - start
check(f"^C on 10 waiters: all EINTR in {took:.2f} s", got == [b"I"] * 10 and took < 1)
check(f"the workers they held wait for parked ones: still {bound}", settles_at(bound))

start = time.monotonic()
fcntl.flock(holder, fcntl.LOCK_UN)
got = [os.read(waiters[pid], 1) for pid in pids[10:]]
took = time.monotonic() - start
check(f"released on the source: the other 40 lock in turn, in {took:.2f} s",
      got == [b"L"] * 40 and took < 30)
for pid in pids:
    os.waitpid(pid, 0)
check("no worker is left waiting", settles_at(0))
PY
		unmount "$mnt"
	done
}

# ---- file descriptor pressure ---------------------------------------------
fds() {
	local src=$T/src-fds mnt=$T/mnt-fds dpid
	mkdir -p "$src" "$mnt"
	"$AIODFS" "$src" "$mnt" || { fail "fds: mount"; return; }
	python3 - "$mnt" 10000 <<'PY' && ok "fds: 10,000 files open at once" || fail "fds: 10,000 files open at once"
import os, resource, sys

mnt, n = sys.argv[1], int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 100, n + 100))
fds = [os.open(os.path.join(mnt, f"f{i}"), os.O_RDWR | os.O_CREAT, 0o644) for i in range(n)]
for i, fd in enumerate(fds):
    os.pwrite(fd, str(i).encode(), 0)
bad = [i for i, fd in enumerate(fds) if os.pread(fd, 10, 0) != str(i).encode()]
for fd in fds:
    os.close(fd)
print(f"     {n} open, {len(bad)} read back wrong")
sys.exit(1 if bad else 0)
PY
	unmount "$mnt"

	# A daemon with few fds, and a caller with many.
	(ulimit -n 1024 && exec "$AIODFS" "$src" "$mnt") || { fail "fds: mount with 1024 fds"; return; }
	python3 - "$mnt" <<'PY' && ok "fds: past the daemon's limit, EMFILE/ENFILE; it survives and recovers" || fail "fds: past the daemon's limit"
import errno, os, resource, sys

mnt = sys.argv[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (10000, 10000))
fds, err = [], None
for i in range(5000):
    try:
        fds.append(os.open(os.path.join(mnt, f"f{i}"), os.O_RDONLY))
    except OSError as e:
        err = e.errno
        break
print(f"     {len(fds)} opened, then {errno.errorcode.get(err, err)}")
ok = err in (errno.EMFILE, errno.ENFILE) and len(fds) > 500
ok = ok and os.stat(os.path.join(mnt, "f1")).st_size > 0
for fd in fds:
    os.close(fd)
again = [os.open(os.path.join(mnt, f"f{i}"), os.O_RDONLY) for i in range(500)]
ok = ok and os.read(again[7], 10) == b"7"
for fd in again:
    os.close(fd)
sys.exit(0 if ok else 1)
PY
	dpid=$(awk -v m="$mnt" '$2 == m' /proc/mounts | wc -l)
	[ "$dpid" = 1 ] && ok "fds: still mounted" || fail "fds: the mount is gone"
	unmount "$mnt"
}

parts=${*:-full reserve waits fds}
for part in $parts; do
	case $part in
	full | reserve | waits | fds) echo "== $part"; $part ;;
	*) echo "faults.sh: unknown part $part (full, reserve, waits, fds)" >&2; exit 2 ;;
	esac
done
echo "faults: $failures failed"
[ "$failures" = 0 ]
