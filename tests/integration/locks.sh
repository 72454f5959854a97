#!/bin/bash
# SPDX-License-Identifier: MIT
#
# locks.sh - locks through the mount mean what they mean on the source.
#
#   locks.sh
#
# flock: a holder through the mount excludes a holder on the source and
# the other way round; a file closed with a flock held never makes the
# next flock through the mount fail (300 times, 4 workers: the kernel
# does not wait for the release).  fcntl locks, with -o posix_locks: two processes
# through the mount and one on the source exclude each other (classic
# F_SETLK and F_OFD_SETLK alike); F_GETLK through the mount sees a lock
# held on the source; a process's close of an fd on another file, or
# another process's close, leaves a lock alone, while the holder's close
# of any fd on the file ends it, on the source too before close(2)
# returns; four processes adding to a number under lockf lose nothing;
# a lockf on an append-only log opened O_APPEND holds on the source;
# F_SETLKW waits until the holder lets go, and ^C ends the wait with
# EINTR.  Without the option, fcntl locks
# stay inside the mount: the source does not see them.  The posix_locks
# mount has one worker, so waits there are the parked kind (ops.c).
#
# Environment: AIODFS and AIOD_WORKER as for tests/lib.sh.  Exits 0 if
# every check passed, 1 if any failed, 77 (skip) without /dev/fuse.
set -u
. "$(dirname "$0")/../lib.sh" locks

for opts in posix_locks default; do
	src=$T/src-$opts mnt=$T/mnt-$opts
	mkdir -p "$src" "$mnt"
	o=cache=never,workers=4
	[ $opts = posix_locks ] && o=cache=never,posix_locks,workers=1
	"$AIODFS" -o "$o" "$src" "$mnt" || { fail "mount -o $o"; continue; }
	echo "== -o $o"
	python3 - "$src" "$mnt" "$opts" <<'PY' || fail "locks -o $o"
import errno, fcntl, os, signal, struct, sys, time

src, mnt, mode = sys.argv[1:]
posix = mode == "posix_locks"
for name in ("f", "g"):
    with open(os.path.join(src, name), "wb") as f:
        f.write(b"x" * 100)
failed = 0

def check(what, cond):
    global failed
    print(("ok   " if cond else "FAIL ") + what)
    failed += not cond

def child(fn):
    """Run fn in a child; returns (pid, a file whose lines it writes)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        out = os.fdopen(w, "w", buffering=1)
        try:
            fn(out)
        except Exception as e:
            out.write(f"exception {e!r}\n")
        os._exit(0)
    os.close(w)
    return pid, os.fdopen(r)

def ask(fn):
    """fn's one-line answer, from a child process."""
    pid, f = child(lambda out: out.write(fn() + "\n"))
    line = f.readline().strip()
    os.waitpid(pid, 0)
    return line

def try_flock(path):
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return "locked"
    except BlockingIOError:
        return "EWOULDBLOCK"

def try_posix(path, flags=os.O_RDWR):
    fd = os.open(path, flags)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
        return "locked"
    except OSError as e:
        return errno.errorcode[e.errno]

OFD_SETLK, OFD_GETLK = 37, 36

def try_ofd(path):
    fd = os.open(path, os.O_RDWR)
    lk = struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 10, 0)
    try:
        fcntl.fcntl(fd, OFD_SETLK, lk)
        return "locked"
    except OSError as e:
        return errno.errorcode[e.errno]

def getlk(path):
    fd = os.open(path, os.O_RDWR)
    lk = struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 10, 0)
    typ = struct.unpack("hhqqi4x", fcntl.fcntl(fd, fcntl.F_GETLK, lk))[0]
    return {fcntl.F_UNLCK: "F_UNLCK", fcntl.F_WRLCK: "F_WRLCK", fcntl.F_RDLCK: "F_RDLCK"}[typ]

m, s = os.path.join(mnt, "f"), os.path.join(src, "f")

# flock, both ways.
fd = os.open(m, os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
check("flock held through the mount excludes flock on the source",
      ask(lambda: try_flock(s)) == "EWOULDBLOCK")
os.close(fd)
# close(2) returns before the kernel's RELEASE reaches the daemon (it
# waits for FLUSH only), so the source sees the lock go a moment later,
# as with any FUSE filesystem: soon, with no other request to wake the
# daemon.
def source_unlocked(within):
    end = time.monotonic() + within
    while ask(lambda: try_flock(s)) != "locked":
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True
check("closed, the source may flock (within 1 s)", source_unlocked(1.0))
fd = os.open(s, os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
check("flock held on the source excludes flock through the mount",
      ask(lambda: try_flock(m)) == "EWOULDBLOCK")
os.close(fd)

# A close drops its flock before the next lock request through the mount
# runs, though the kernel sends the release without waiting for it; also
# when a write just before it was answered by its worker, which the loop
# may not have collected yet.
def close_then_flock(n, write=False):
    for i in range(n):
        a = os.open(m, os.O_RDWR)
        fcntl.flock(a, fcntl.LOCK_EX)
        if write:
            os.pwrite(a, b"w" * 4096, 0)
        os.close(a)
        b = os.open(m, os.O_RDWR)
        try:
            fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return i
        finally:
            os.close(b)
    return n
got = close_then_flock(300)
check(f"close, then flock by another open file: 300 times ({got} succeeded)", got == 300)
got = close_then_flock(300, write=True)
check(f"write, close, then flock by another open file: 300 times ({got} succeeded)",
      got == 300)

if not posix:
    fd = os.open(m, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
    check("without posix_locks, a lock through the mount stays inside it",
          ask(lambda: try_posix(s)) == "locked")
    check("... and excludes another process through the mount",
          ask(lambda: try_posix(m)) == "EAGAIN")
    os.close(fd)
    sys.exit(1 if failed else 0)

# fcntl locks, with posix_locks.  Process A (this one) holds [0, 10).
fd = os.open(m, os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
check("F_SETLK through the mount excludes F_SETLK on the source",
      ask(lambda: try_posix(s)) == "EAGAIN")
check("... and F_OFD_SETLK on the source", ask(lambda: try_ofd(s)) == "EAGAIN")
check("... and another process through the mount", ask(lambda: try_posix(m)) == "EAGAIN")
check("... and an OFD lock through the mount", ask(lambda: try_ofd(m)) == "EAGAIN")
check("F_GETLK through the mount sees it", ask(lambda: getlk(m)) == "F_WRLCK")
other = os.open(os.path.join(mnt, "g"), os.O_RDWR)
os.close(other)
check("closing an fd on another file leaves the lock",
      ask(lambda: try_posix(s)) == "EAGAIN")
check("another process's open and close leave the lock",
      ask(lambda: (os.close(os.open(m, os.O_RDONLY)), try_posix(s))[1]) == "EAGAIN")
fd2 = os.open(m, os.O_RDONLY)
os.close(fd2)
check("the holder's close of another fd on the file ends its lock (POSIX)",
      ask(lambda: try_posix(s)) == "locked")
os.close(fd)
# ... before that close returns: asked at once, on the source, 200 times.
sfd = os.open(s, os.O_RDWR)
def source_free():
    lk = struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 10, 0)
    return struct.unpack("hhqqi4x", fcntl.fcntl(sfd, OFD_GETLK, lk))[0] == fcntl.F_UNLCK
freed = 0
for _ in range(200):
    fd = os.open(m, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
    held = not source_free()
    os.close(os.open(m, os.O_RDONLY))
    freed += held and source_free()
    os.close(fd)
os.close(sfd)
check(f"the source sees the lock gone when close() returns: 200 times ({freed})",
      freed == 200)

# A lock held on the source, seen and waited for through the mount.
sfd = os.open(s, os.O_RDWR)
fcntl.lockf(sfd, fcntl.LOCK_EX, 10, 0)
check("F_GETLK through the mount sees a lock held on the source",
      ask(lambda: getlk(m)) == "F_WRLCK")

def waiter(out):
    def on_int(signum, frame):
        raise InterruptedError
    signal.signal(signal.SIGINT, on_int)
    wfd = os.open(m, os.O_RDWR)
    out.write("waiting\n")
    try:
        fcntl.lockf(wfd, fcntl.LOCK_EX, 10, 0)
        out.write("locked\n")
    except InterruptedError:
        out.write("EINTR\n")

pid, f = child(waiter)
f.readline()
time.sleep(0.3)
start = time.monotonic()
os.kill(pid, signal.SIGINT)
line = f.readline().strip()
check(f"^C on F_SETLKW through the mount: {line} in {time.monotonic() - start:.2f} s",
      line == "EINTR" and time.monotonic() - start < 1)
os.waitpid(pid, 0)
pid, f = child(waiter)
f.readline()
time.sleep(0.3)
fcntl.lockf(sfd, fcntl.LOCK_UN, 10, 0)
line = f.readline().strip()
check(f"F_SETLKW through the mount waits for the source's holder: {line}", line == "locked")
os.waitpid(pid, 0)
os.close(sfd)

# Four processes add one to a number in the file 50 times each, each
# time under lockf, which the close ends: none of the 200 is lost.
with open(m, "w") as f:
    f.write("0")
def adder():
    for _ in range(50):
        fd = os.open(m, os.O_RDWR)
        fcntl.lockf(fd, fcntl.LOCK_EX, 0, 0)
        v = int(os.pread(fd, 32, 0))
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(v + 1).encode(), 0)
        os.close(fd)
adders = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        try:
            adder()
        finally:
            os._exit(0)
    adders.append(pid)
for pid in adders:
    os.waitpid(pid, 0)
with open(m) as f:
    total = f.read()
check(f"4 processes add 50 each under lockf: {total}", total == "200")

# A log made append-only (chattr +a), opened to append: lockf takes
# its owner's description on the source as the file allows, to append
# (EPERM before, from a reopen to write).
FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_APPEND_FL = 0x80086601, 0x40086602, 0x20
def set_append(path, on):
    fd = os.open(path, os.O_RDONLY)
    try:
        flags = struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 4))[0]
        flags = flags | FS_APPEND_FL if on else flags & ~FS_APPEND_FL
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", flags))
    finally:
        os.close(fd)
log_s, log_m = os.path.join(src, "log"), os.path.join(mnt, "log")
with open(log_s, "w") as f:
    f.write("one\n")
set_append(log_s, True)
fd = os.open(log_m, os.O_WRONLY | os.O_APPEND)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX, 0, 0)
    os.write(fd, b"two\n")
    got = ask(lambda: try_posix(log_s, os.O_WRONLY | os.O_APPEND))
    fcntl.lockf(fd, fcntl.LOCK_UN, 0, 0)
except OSError as e:
    got = errno.errorcode[e.errno]
os.close(fd)
set_append(log_s, False)
with open(log_s) as f:
    text = f.read()
check(f"lockf on an append-only log opened O_APPEND: {got}, {text!r}",
      got == "EAGAIN" and text == "one\ntwo\n")

# OFD locks through the mount: the open file's, until its release.
fd = os.open(m, os.O_RDWR)
fcntl.fcntl(fd, OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 10, 0))
check("F_OFD_SETLK through the mount excludes the source", ask(lambda: try_posix(s)) == "EAGAIN")
os.close(os.open(m, os.O_RDONLY))
check("... and survives this process's close of another fd", ask(lambda: try_posix(s)) == "EAGAIN")
os.close(fd)
time.sleep(0.2)  # the release follows the close
check("... and ends with its file", ask(lambda: try_posix(s)) == "locked")

sys.exit(1 if failed else 0)
PY
	unmount "$mnt"
done
echo "locks: $failures failed"
[ "$failures" = 0 ]
