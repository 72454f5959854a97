#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""difftest.py - differential test of a filesystem against a plain directory.

  difftest.py [-k NAME]... [-x NAME]... [-v] [--allow-other] [--source DIR]
              REFERENCE TARGET
  difftest.py --list
  difftest.py --compare-trees [--times] [--inodes] DIR1 DIR2

Every scenario below runs twice: once in a fresh subdirectory of
REFERENCE, a plain directory on a local disk, and once in a fresh
subdirectory of TARGET, normally an aiodfs mount.  Each run writes a
transcript: one line per operation with its result (a return value, the
errno name, or the data read, short data verbatim and long data as a
SHA-256 prefix), then a canonical description of the tree the scenario
left behind.  The two transcripts must be identical; where they differ
the scenario fails and a unified diff is printed.  The exit status is 0
only if every scenario that ran passed.  -k NAME runs only the scenarios
whose names contain NAME, -x NAME leaves out the one called NAME; -v
prints every reference transcript, to see what a scenario checks.

What the description compares, per entry in sorted name order: type,
permission bits, uid and gid, link count, size (not of directories,
whose size is the backing filesystem's business), symlink target,
device numbers, a hash of the content, the extended attributes, and
which names are hard links of one another.  An entry that cannot be
read, or whose close fails, gets a line saying so, and the walk goes on.
Inode numbers and
timestamps differ between any two directories and are left out; a
scenario that sets timestamps exactly records them in its transcript
instead.  Inode identity is compared as a boolean ("same inode: True").

With --source DIR, the directory behind TARGET, the harness finally
describes TARGET and DIR again, this time with inode numbers, d_ino
from readdir and directory sizes, and requires them to be identical:
what the mount shows must be what the source holds, under the source's
own inode numbers.

Paths are relative: each scenario runs with its subdirectory as the
working directory, and the tree walk goes through directory fds, so
trees deeper than PATH_MAX are described correctly.

Non-root callers.  Without allow_other the kernel refuses every other
user on a FUSE mount, so a process that drops to nobody would get
EACCES on the mountpoint itself and the comparison would say nothing
about the filesystem.  The scenarios that fork a child running as
uid/gid 65534 (nobody) therefore run only with --allow-other, which
says the TARGET was mounted with allow_other; otherwise they are
reported as skipped.  mount.sh, run as root, mounts with allow_other
(both with and without default_permissions, so that once the kernel and
once the daemon's workers make the permission checks) and passes the
flag.  REFERENCE and TARGET must then be reachable by nobody (mode 0755
up the path); the harness warns if they are not.

A forked child reports its transcript back to the parent through a
pipe, so its results land in the same transcript in a fixed order.
Every scenario runs under an alarm, so a hung operation fails that
scenario instead of the whole run (as far as the kernel lets a signal
interrupt it).  A scenario that raises anything but OSError from an
operation ends with a line naming the exception and its line number.

--compare-trees describes two existing trees (with --times also the
modification times, with --inodes also inode numbers) and diffs them;
tree.sh uses it to compare a copy made through the mount with its
original.
"""
import argparse
import ctypes
import difflib
import errno
import fcntl
import hashlib
import json
import mmap
import os
import re
import select
import signal
import stat
import struct
import sys
import time
import traceback

PAGE = mmap.PAGESIZE
NOBODY = 65534
SCENARIO_TIMEOUT = 60
CHILD_TIMEOUT = 30

AT_FDCWD = -100
AT_SYMLINK_FOLLOW = 0x400
AT_EMPTY_PATH = 0x1000
RENAME_NOREPLACE = 1 << 0
RENAME_EXCHANGE = 1 << 1
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


# ---------------------------------------------------------------------------
# System calls the os module lacks, through libc.  Each returns None (or a
# count) and raises OSError with the errno, like the os functions.

libc = ctypes.CDLL(None, use_errno=True)


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                           ctypes.c_char_p, ctypes.c_uint]
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                           ctypes.c_int64]
libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p,
                           ctypes.POINTER(Timespec), ctypes.c_int]
libc.access.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.linkat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                        ctypes.c_char_p, ctypes.c_int]
libc.getxattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p,
                          ctypes.c_size_t]
libc.getxattr.restype = ctypes.c_ssize_t
libc.listxattr.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
libc.listxattr.restype = ctypes.c_ssize_t


class StatxTimestamp(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_uint32),
                ("reserved", ctypes.c_int32)]


class Statx(ctypes.Structure):
    """struct statx, as far as the birth time and a little room after."""
    _fields_ = [("mask", ctypes.c_uint32), ("blksize", ctypes.c_uint32),
                ("attributes", ctypes.c_uint64), ("nlink", ctypes.c_uint32),
                ("uid", ctypes.c_uint32), ("gid", ctypes.c_uint32),
                ("mode", ctypes.c_uint16), ("spare0", ctypes.c_uint16),
                ("ino", ctypes.c_uint64), ("size", ctypes.c_uint64),
                ("blocks", ctypes.c_uint64), ("attributes_mask", ctypes.c_uint64),
                ("atime", StatxTimestamp), ("btime", StatxTimestamp),
                ("ctime", StatxTimestamp), ("mtime", StatxTimestamp),
                ("spare", ctypes.c_uint64 * 32)]


libc.statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                       ctypes.c_uint, ctypes.POINTER(Statx)]


def checked(ret):
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def renameat2(old, new, flags):
    checked(libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD,
                           os.fsencode(new), flags))


def linkat(old, new, flags, old_fd=AT_FDCWD):
    """linkat(2): os.link calls plain link(2), which never follows."""
    checked(libc.linkat(old_fd, os.fsencode(old), AT_FDCWD, os.fsencode(new),
                        flags))


STATX_BASIC_STATS = 0x7ff
STATX_BTIME = 0x800
AT_STATX_FORCE_SYNC = 0x2000


def birth(path, fd=AT_FDCWD, flags=0x100):
    """statx(2) asking for the birth time (not following, by default):
    its nanoseconds since the epoch, or None where the filesystem keeps
    none.  Also checks that the basic attributes came with it."""
    x = Statx()
    checked(libc.statx(fd, os.fsencode(path), flags,
                       STATX_BASIC_STATS | STATX_BTIME, ctypes.byref(x)))
    if x.mask & STATX_BASIC_STATS != STATX_BASIC_STATS:
        raise OSError(errno.EPROTO, "statx without the basic attributes")
    if not x.mask & STATX_BTIME:
        return None
    return x.btime.tv_sec * 10**9 + x.btime.tv_nsec


def fallocate(fd, mode, offset, length):
    checked(libc.fallocate(fd, mode, offset, length))


def utimensat(path, atime_ns, mtime_ns, follow=True):
    """Like os.utime(ns=...), but either time may be UTIME_NOW or UTIME_OMIT."""
    def ts(ns):
        if ns in (UTIME_NOW, UTIME_OMIT):
            return Timespec(0, ns)
        return Timespec(*divmod(ns, 10**9))
    times = (Timespec * 2)(ts(atime_ns), ts(mtime_ns))
    flags = 0 if follow else 0x100  # AT_SYMLINK_NOFOLLOW
    checked(libc.utimensat(AT_FDCWD, os.fsencode(path), times, flags))


def access(path, mode):
    """access(2) with its errno, where os.access gives only a boolean."""
    checked(libc.access(os.fsencode(path), mode))


def getxattr_size(path, name, size):
    """getxattr(2) into a buffer of SIZE bytes (0 asks for the length)."""
    buf = ctypes.create_string_buffer(max(size, 1))
    return checked(libc.getxattr(os.fsencode(path), os.fsencode(name),
                                 buf if size else None, size))


def listxattr_size(path, size):
    buf = ctypes.create_string_buffer(max(size, 1))
    return checked(libc.listxattr(os.fsencode(path), buf if size else None,
                                  size))


def ofd_lock(fd, kind, start, length, cmd=fcntl.F_OFD_SETLK):
    """An open-file-description lock; with F_OFD_GETLK, the type in the way."""
    arg = struct.pack("@hhqqi4x", kind, os.SEEK_SET, start, length, 0)
    res = fcntl.fcntl(fd, cmd, arg)
    if cmd == fcntl.F_OFD_GETLK:
        kind = struct.unpack("@hhqqi4x", res)[0]
        return {fcntl.F_UNLCK: "F_UNLCK", fcntl.F_RDLCK: "F_RDLCK",
                fcntl.F_WRLCK: "F_WRLCK"}[kind]
    return None


# ---------------------------------------------------------------------------
# Small file helpers used by the scenarios.

def pattern(n, seed=0):
    """N bytes that repeat every 251 bytes, so no page looks like another."""
    unit = bytes((i * 7 + seed) % 251 for i in range(251))
    return (unit * (n // 251 + 1))[:n]


def put(path, data, mode=0o644, dir_fd=None):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode,
                 dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def get(path, dir_fd=None):
    fd = os.open(path, os.O_RDONLY, dir_fd=dir_fd)
    try:
        return read_all(fd)
    finally:
        os.close(fd)


def read_all(fd, offset=0):
    chunks = []
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def names(path="."):
    return sorted(os.listdir(path))


def near_now(ns):
    """Whether a timestamp is within a few seconds of the clock."""
    return abs(ns - time.time_ns()) < 5 * 10**9


# ---------------------------------------------------------------------------
# Canonical text for results.

KINDS = {stat.S_IFREG: "reg", stat.S_IFDIR: "dir", stat.S_IFLNK: "lnk",
         stat.S_IFIFO: "fifo", stat.S_IFSOCK: "sock", stat.S_IFCHR: "chr",
         stat.S_IFBLK: "blk"}


def errname(num):
    return errno.errorcode.get(num, f"errno{num}")


def short(text):
    """Long runs of one character (deep paths, 255-byte names) abbreviated."""
    return re.sub(r"(.)\1{15,}", lambda m: f"{m[1]}{{x{len(m[0])}}}", text)


def fmt_stat(st):
    kind = KINDS.get(stat.S_IFMT(st.st_mode), "?")
    text = (f"{kind} {stat.S_IMODE(st.st_mode):04o} uid={st.st_uid} "
            f"gid={st.st_gid} nlink={st.st_nlink}")
    if kind in ("reg", "lnk"):
        text += f" size={st.st_size}"
    if kind in ("chr", "blk"):
        text += f" rdev={os.major(st.st_rdev)},{os.minor(st.st_rdev)}"
    return text


def fmt(value):
    if value is None:
        return "ok"
    if isinstance(value, os.stat_result):
        return fmt_stat(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
        if len(value) <= 64:
            return repr(value)
        digest = hashlib.sha256(value).hexdigest()[:16]
        zeros = " all-zero" if not value.strip(b"\0") else ""
        return f"<{len(value)} bytes{zeros} sha256:{digest}>"
    if isinstance(value, (list, tuple)):
        if len(value) > 32:
            digest = hashlib.sha256(repr(value).encode()).hexdigest()[:16]
            return f"<{len(value)} items sha256:{digest}>"
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    if isinstance(value, str):
        return short(repr(value))
    return repr(value)


# ---------------------------------------------------------------------------
# The transcript of one scenario in one directory.

class Run:
    """Calls operations and records each with its result.

    t(what, fn, *args) calls fn(*args) and records "what -> result": the
    errno name if it raised OSError (and then returns None), else the
    result formatted by show (default fmt).  Scenarios carry on after an
    error; the next call that needs the missing value raises TypeError,
    which ends the scenario with a line saying where.
    """

    def __init__(self):
        self.lines = []
        self.fds = []

    def log(self, what, text):
        self.lines.append(f"{short(what)} -> {text}")

    def __call__(self, what, fn, *args, show=fmt, **kwargs):
        try:
            res = fn(*args, **kwargs)
        except OSError as e:
            self.log(what, errname(e.errno))
            return None
        self.log(what, show(res))
        return res

    def open(self, what, path, flags, mode=0o644, dir_fd=None):
        """os.open, recorded as "fd"; the fd is closed when the run ends."""
        fd = self(what, os.open, path, flags, mode, dir_fd=dir_fd,
                  show=lambda _: "fd")
        if fd is not None:
            self.fds.append(fd)
        return fd

    def close(self, what, fd):
        if fd in self.fds:
            self.fds.remove(fd)
        self(what, os.close, fd)

    def stat(self, what, path, follow=True, dir_fd=None):
        return self(what, os.stat, path, dir_fd=dir_fd, follow_symlinks=follow)

    def note(self, what, value):
        self.log(what, fmt(value))

    def close_all(self):
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []

    def child(self, what, *bodies, user=None):
        """Runs each body(Run) in its own forked process, all at once.

        With user, each child first drops to that uid and gid with no
        supplementary groups.  The children's transcripts are appended in
        the order the bodies were given.
        """
        procs = []
        sys.stdout.flush()
        sys.stderr.flush()
        for body in bodies:
            rfd, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(rfd)
                run_child(body, user, wfd)
            os.close(wfd)
            procs.append((pid, rfd))
        deadline = time.monotonic() + CHILD_TIMEOUT
        try:
            for i, (pid, rfd) in enumerate(procs):
                tag = f"{what}[{i}]" if len(bodies) > 1 else what
                lines = child_report(pid, rfd, deadline)
                self.lines.extend(f"{tag}: {line}" for line in lines)
        finally:
            # Children still unreaped here means the scenario's alarm went
            # off while we waited: they are ours, so end and reap them.
            for pid, rfd in procs:
                os.close(rfd)
                if os.waitpid(pid, os.WNOHANG) == (0, 0):
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)


def child_report(pid, rfd, deadline):
    """Reads one child's transcript from its pipe; the child is killed if
    it has not finished by DEADLINE.  The caller reaps it."""
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([rfd], [], [], left)[0]:
            os.kill(pid, signal.SIGKILL)
            return ["timed out"]
        chunk = os.read(rfd, 65536)
        if not chunk:
            break
        data += chunk
    try:
        return json.loads(data)
    except ValueError:
        return ["child died without a report"]


def aborted(e):
    """The line that ends a transcript when a scenario raises."""
    where = traceback.extract_tb(e.__traceback__)[-1]
    if isinstance(e, OSError):
        return f"aborted at line {where.lineno}: {errname(e.errno)}"
    return f"aborted at line {where.lineno}: {type(e).__name__}: {e}"


def run_child(body, user, wfd):
    sub = Run()
    try:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        if user is not None:
            os.setgroups([])
            os.setgid(user)
            os.setuid(user)
        body(sub)
    except BaseException as e:  # the report must get out, whatever happened
        sub.lines.append(aborted(e))
    data = json.dumps(sub.lines).encode()
    try:
        while data:
            data = data[os.write(wfd, data):]
    finally:
        os._exit(0)


# ---------------------------------------------------------------------------
# Scenarios: files.

O_RDONLY, O_WRONLY, O_RDWR = os.O_RDONLY, os.O_WRONLY, os.O_RDWR
O_CREAT, O_EXCL, O_TRUNC, O_APPEND = os.O_CREAT, os.O_EXCL, os.O_TRUNC, os.O_APPEND
O_DIRECTORY, O_NOFOLLOW = os.O_DIRECTORY, os.O_NOFOLLOW


def s_open(t):
    t("mkdir d", os.mkdir, "d")
    fd = t.open("create f O_CREAT|O_EXCL", "f", O_WRONLY | O_CREAT | O_EXCL)
    t("write f", os.write, fd, b"hello")
    t("symlink dangling -> target", os.symlink, "target", "dangling")
    for what, path, flags in [
        ("O_CREAT|O_EXCL on an existing file", "f", O_WRONLY | O_CREAT | O_EXCL),
        ("O_CREAT|O_EXCL on a dangling symlink", "dangling", O_WRONLY | O_CREAT | O_EXCL),
        ("open a missing file", "missing", O_RDONLY),
        ("create in a missing directory", "nodir/f", O_WRONLY | O_CREAT),
        ("open a directory O_WRONLY", "d", O_WRONLY),
        ("open a directory O_RDWR", "d", O_RDWR),
        ("O_CREAT on a directory", "d", O_WRONLY | O_CREAT),
        ("open a path through a file", "f/x", O_RDONLY),
        ("create a path through a file", "f/x", O_WRONLY | O_CREAT),
        ("open a file with a trailing slash", "f/", O_RDONLY),
        ("O_CREAT with a trailing slash", "new/", O_WRONLY | O_CREAT),
        ("O_DIRECTORY on a file", "f", O_RDONLY | O_DIRECTORY),
        ("O_NOFOLLOW on a symlink", "dangling", O_RDONLY | O_NOFOLLOW),
        ("open a file O_RDONLY", "f", O_RDONLY),
        ("open a directory O_RDONLY", "d", O_RDONLY),
        ("open a directory O_DIRECTORY", "d", O_RDONLY | O_DIRECTORY),
        ("O_CREAT through a dangling symlink", "dangling", O_WRONLY | O_CREAT),
    ]:
        t.open(what, path, flags, 0o600)
    t.stat("the symlink's target was created", "target")
    dfd = t.open("open d again", "d", O_RDONLY)
    t("read from a directory fd", os.read, dfd, 10)
    rfd = t.open("open f O_RDONLY", "f", O_RDONLY)
    t("write to an O_RDONLY fd", os.write, rfd, b"x")
    wfd = t.open("open f O_WRONLY", "f", O_WRONLY)
    t("read from an O_WRONLY fd", os.read, wfd, 1)
    t("read through the O_RDONLY fd", os.read, rfd, 100)
    t.open("open f O_TRUNC", "f", O_WRONLY | O_TRUNC)
    t.stat("f after O_TRUNC", "f")
    t.open("create m mode 0751 (umask 022)", "m", O_WRONLY | O_CREAT, 0o751)
    t.open("create n mode 07777 (umask 022)", "n", O_WRONLY | O_CREAT, 0o7777)
    t.stat("stat m", "m")
    t.stat("stat n", "n")
    t.open("O_CREAT without O_EXCL on an existing file keeps it", "m",
           O_RDWR | O_CREAT, 0o600)
    t.stat("stat m again", "m")


def s_read_write(t):
    fd = t.open("create f", "f", O_RDWR | O_CREAT)
    t("write", os.write, fd, b"0123456789")
    t("lseek SEEK_SET 2", os.lseek, fd, 2, os.SEEK_SET)
    t("read 4", os.read, fd, 4)
    t("lseek SEEK_CUR", os.lseek, fd, 0, os.SEEK_CUR)
    t("lseek SEEK_END -3", os.lseek, fd, -3, os.SEEK_END)
    t("read to EOF", os.read, fd, 100)
    t("read at EOF", os.read, fd, 100)
    t("lseek to a negative offset", os.lseek, fd, -1, os.SEEK_SET)
    t("pwrite in the middle", os.pwrite, fd, b"abc", 4)
    t("pread all", os.pread, fd, 100, 0)
    t("pread past EOF", os.pread, fd, 100, 1000)
    t("pwrite past EOF leaves a hole", os.pwrite, fd, b"END", 100)
    t("pread across the hole", os.pread, fd, 200, 0)
    t("writev", os.writev, fd, [b"ab", b"", b"cd"])
    t("lseek SEEK_CUR after writev", os.lseek, fd, 0, os.SEEK_CUR)
    big = pattern((3 << 20) + 12345, seed=1)
    t("pwrite 3 MiB at 1 MiB + 7", os.pwrite, fd, big, (1 << 20) + 7)
    t("pread it back", os.pread, fd, len(big) + 100, (1 << 20) + 7)
    t("pread across the old data and the new", os.pread, fd, 64, (1 << 20) - 30)
    buffers = [bytearray(3), bytearray(5)]
    t("preadv", os.preadv, fd, buffers, 2)
    t.note("preadv buffers", [bytes(b) for b in buffers])
    t("pwritev", os.pwritev, fd, [b"xy", b"z"], 1)
    t("fstat", os.fstat, fd)
    t.close("close", fd)
    t("read the file by name", get, "f")
    t("write 2 MiB + 1 in one call to a new file", put, "g", pattern((2 << 20) + 1, 2))
    t("read it back", get, "g")
    t("write an empty file", put, "empty", b"")
    t("read it back", get, "empty")


def s_append_fds(t):
    a = t.open("open A O_APPEND|O_CREAT", "f", O_WRONLY | O_APPEND | O_CREAT)
    b = t.open("open B O_APPEND", "f", O_RDWR | O_APPEND)
    for fd, tag, data in [(a, "A", b"aaa"), (b, "B", b"BB"), (a, "A", b"c"),
                          (b, "B", b"DDDD"), (a, "A", b"e" * 5000)]:
        t(f"write {len(data)} bytes through {tag}", os.write, fd, data)
    t("pwrite at 0 through an O_APPEND fd appends", os.pwrite, a, b"P", 0)
    t("A's position after the writes", os.lseek, a, 0, os.SEEK_CUR)
    t("lseek B to 0", os.lseek, b, 0, os.SEEK_SET)
    t("read through B from 0", os.read, b, 10)
    t("write through B appends regardless", os.write, b, b"Z")
    t("fstat", os.fstat, b)
    t("content", get, "f")


def s_append_procs(t):
    t("create f", put, "f", b"")

    def writer(tag, count):
        def body(c):
            fd = os.open("f", O_WRONLY | O_APPEND)
            for i in range(count):
                os.write(fd, b"%s %04d %s\n" % (tag, i, tag * (i % 53)))
            os.close(fd)
            c.note("records written", count)
        return body

    t.child("writer", writer(b"A", 400), writer(b"B", 400))
    data = t("read f", get, "f", show=lambda d: f"{len(d)} bytes")
    want = sum(len(b"%s %04d %s\n" % (tag, i, tag * (i % 53)))
               for tag in (b"A", b"B") for i in range(400))
    t.note("size is the sum of all writes", len(data) == want)
    records = data.split(b"\n")[:-1]
    good = all(re.fullmatch(rb"([AB]) (\d{4}) \1*", r) for r in records)
    t.note("every record whole", good)
    for tag in (b"A", b"B"):
        mine = [int(r[2:6]) for r in records if r[:1] == tag]
        t.note(f"{tag.decode()}'s records complete and in order",
               mine == list(range(400)))
    # The interleaving differs from run to run; the tree must not.
    t("rewrite f sorted", put, "f", b"".join(sorted(r + b"\n" for r in records)))


def s_truncate(t):
    t("mkdir d", os.mkdir, "d")
    t("write 10000 bytes", put, "f", pattern(10000))
    for what, path, size in [
        ("truncate down to 100", "f", 100),
        ("truncate up to 5000", "f", 5000),
        ("truncate to the same size", "f", 5000),
        ("truncate a missing file", "missing", 0),
        ("truncate a directory", "d", 0),
        ("truncate a path through a file", "f/x", 0),
        ("truncate to a negative size", "f", -1),
    ]:
        t(what, os.truncate, path, size)
        t.stat("stat f", "f")
    t("content", get, "f")
    fd = t.open("open f O_RDWR", "f", O_RDWR)
    t("ftruncate down to 10", os.ftruncate, fd, 10)
    t("pread", os.pread, fd, 100, 0)
    t("ftruncate up to 1 MiB + 1", os.ftruncate, fd, (1 << 20) + 1)
    t("fstat", os.fstat, fd)
    t("pread the tail", os.pread, fd, 100, 1 << 20)
    t("pwrite 8 KiB", os.pwrite, fd, pattern(8192, 3), 0)
    t("ftruncate inside the first page", os.ftruncate, fd, 100)
    t("ftruncate back up to 8 KiB", os.ftruncate, fd, 8192)
    t("the cut bytes read back as zeros", os.pread, fd, 8192, 0)
    t("ftruncate to 0", os.ftruncate, fd, 0)
    t("pread", os.pread, fd, 10, 0)
    rfd = t.open("open f O_RDONLY", "f", O_RDONLY)
    t("ftruncate an O_RDONLY fd", os.ftruncate, rfd, 0)
    t("write and truncate through the path while open", put, "f", b"abcdef")
    t("truncate to 3", os.truncate, "f", 3)
    t("the open fd sees it", os.pread, fd, 10, 0)


def s_sparse_seek(t):
    fd = t.open("create f", "f", O_RDWR | O_CREAT)
    big = 5 << 30
    t("pwrite 1 byte at 5 GiB", os.pwrite, fd, b"x", big)
    t("fstat", os.fstat, fd)
    t("few blocks allocated", lambda: os.fstat(fd).st_blocks * 512 < (1 << 20))
    t("pread the byte", os.pread, fd, 10, big)
    t("pread in the hole", os.pread, fd, 10, 4 << 30)
    for what, offset, whence in [
        ("SEEK_DATA from 0", 0, os.SEEK_DATA),
        ("SEEK_HOLE from 0", 0, os.SEEK_HOLE),
        ("SEEK_DATA from 4 GiB", 4 << 30, os.SEEK_DATA),
        ("SEEK_HOLE from 5 GiB", big, os.SEEK_HOLE),
        ("SEEK_DATA from 5 GiB", big, os.SEEK_DATA),
        ("SEEK_DATA at EOF", big + 1, os.SEEK_DATA),
        ("SEEK_HOLE at EOF", big + 1, os.SEEK_HOLE),
        ("SEEK_DATA past EOF", big + 100, os.SEEK_DATA),
        ("SEEK_END", 0, os.SEEK_END),
        ("SEEK_SET past 4 GiB", (4 << 30) + 3, os.SEEK_SET),
    ]:
        t(what, os.lseek, fd, offset, whence)
    t("read after SEEK_SET past 4 GiB", os.read, fd, 4)
    t("pwrite 1 MiB at 4 GiB - 512 KiB", os.pwrite, fd, pattern(1 << 20),
      (4 << 30) - (512 << 10))
    t("pread it across the 4 GiB line", os.pread, fd, 1 << 20, (4 << 30) - (512 << 10))
    t("SEEK_DATA from 1 GiB", os.lseek, fd, 1 << 30, os.SEEK_DATA)
    t("SEEK_HOLE from 4 GiB - 512 KiB", os.lseek, fd, (4 << 30) - (512 << 10),
      os.SEEK_HOLE)
    t("truncate to 1 MiB (keeps the tree walk cheap)", os.ftruncate, fd, 1 << 20)


def s_fallocate(t):
    fd = t.open("create f", "f", O_RDWR | O_CREAT)
    t("posix_fallocate 1 MiB", os.posix_fallocate, fd, 0, 1 << 20)
    t("fstat", os.fstat, fd)
    t("it reads as zeros", os.pread, fd, 1 << 20, 0)
    t("pwrite 1 MiB of data", os.pwrite, fd, pattern(1 << 20, 4), 0)
    t("fallocate KEEP_SIZE 1 MiB beyond EOF", fallocate, fd,
      FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20)
    t("size unchanged", lambda: os.fstat(fd).st_size)
    t("blocks now cover 2 MiB", lambda: os.fstat(fd).st_blocks * 512 >= 2 << 20)
    hole = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    zero = FALLOC_FL_ZERO_RANGE
    for what, mode, offset, length in [
        ("punch an aligned hole", hole, 4096, 8192),
        ("punch an unaligned hole", hole, 100, 3000),
        ("punch across EOF", hole, (1 << 20) - 10, 100),
        ("zero an unaligned range", zero, 20000, 10000),
        ("zero a range past EOF with KEEP_SIZE", zero | FALLOC_FL_KEEP_SIZE, 2 << 20, 4096),
        ("zero a range past EOF", zero, 3 << 20, 4096),
        ("punch without KEEP_SIZE", FALLOC_FL_PUNCH_HOLE, 0, 4096),
        ("fallocate mode 0 past EOF", 0, 5 << 20, 4096),
        ("fallocate a zero length", 0, 0, 0),
        ("fallocate a negative offset", 0, -1, 4096),
    ]:
        t(what, fallocate, fd, mode, offset, length)
        t("size", lambda: os.fstat(fd).st_size)
    t("content", read_all, fd)
    t("the first 32 KiB", os.pread, fd, 32768, 0)
    rfd = t.open("open f O_RDONLY", "f", O_RDONLY)
    t("posix_fallocate on an O_RDONLY fd", os.posix_fallocate, rfd, 0, 10)


def s_copy_file_range(t):
    t("write src", put, "src", pattern(200000, 5))
    s = t.open("open src", "src", O_RDONLY)
    d = t.open("create dst", "dst", O_RDWR | O_CREAT)
    for what, count, off_s, off_d in [
        ("copy 100000 at 0", 100000, 0, 0),
        ("copy 50000 from 150000 to 300000", 50000, 150000, 300000),
        ("copy across the source's EOF", 100, 199999, 400000),
        ("copy from past the source's EOF", 100, 300000, 0),
    ]:
        t(what, os.copy_file_range, s, d, count, off_s, off_d)
    t("lseek src to 10", os.lseek, s, 10, os.SEEK_SET)
    t("lseek dst to 1000", os.lseek, d, 1000, os.SEEK_SET)
    t("copy 20 at the fds' positions", os.copy_file_range, s, d, 20)
    t("src position", os.lseek, s, 0, os.SEEK_CUR)
    t("dst position", os.lseek, d, 0, os.SEEK_CUR)
    t("fstat dst", os.fstat, d)
    t("dst content", read_all, d)
    t("overlapping copy within one file", os.copy_file_range, d, d, 1000, 0, 500)
    w = t.open("open src O_WRONLY", "src", O_WRONLY)
    t("copy from an O_WRONLY fd", os.copy_file_range, w, d, 10, 0, 0)
    t("copy to an O_RDONLY fd", os.copy_file_range, s, s, 10, 0, 100)
    a = t.open("open dst O_APPEND", "dst", O_WRONLY | O_APPEND)
    t("copy to an O_APPEND fd", os.copy_file_range, s, a, 10, 0, 0)
    t("mkdir dir", os.mkdir, "dir")
    dfd = t.open("open dir", "dir", O_RDONLY)
    t("copy from a directory", os.copy_file_range, dfd, d, 10, 0, 0)
    o = t.open("create out", "out", O_WRONLY | O_CREAT)
    t("sendfile 5000 from 7", os.sendfile, o, s, 7, 5000)
    t("out content", get, "out")


def s_fsync(t):
    fd = t.open("create f", "f", O_RDWR | O_CREAT)
    t("write", os.write, fd, pattern(100000))
    t("fsync", os.fsync, fd)
    t("fdatasync", os.fdatasync, fd)
    rfd = t.open("open f O_RDONLY", "f", O_RDONLY)
    t("fsync an O_RDONLY fd", os.fsync, rfd)
    dfd = t.open("open .", ".", O_RDONLY | O_DIRECTORY)
    t("fsync a directory", os.fsync, dfd)
    t("fdatasync a directory", os.fdatasync, dfd)
    t("content", get, "f")


def syncfs(fd):
    checked(libc.syncfs(fd))


def s_syncfs(t):
    """Removing a file reports no error at the next syncfs: under
    writeback the kernel sends a removed file's times after the unlink
    (or the rename over it), when no name is left to open it by."""
    dfd = t.open("open .", ".", O_RDONLY | O_DIRECTORY)
    for name in ("f", "g", "h", "i"):
        t("write " + name, put, name, pattern(5000))
    t("syncfs", syncfs, dfd)
    t("unlink f", os.unlink, "f")
    t("syncfs after an unlink", syncfs, dfd)
    t("rename g over h", os.rename, "g", "h")
    t("syncfs after a rename over a file", syncfs, dfd)
    t("link i j", os.link, "i", "j")
    t("unlink i", os.unlink, "i")
    t("syncfs after unlinking one of two links", syncfs, dfd)
    t("j keeps the data", get, "j")
    fd = t.open("open j", "j", O_RDWR)
    t("unlink j while open", os.unlink, "j")
    t("write through the fd", os.pwrite, fd, b"after", 0)
    t.close("close it", fd)
    t("syncfs after the last close", syncfs, dfd)
    t("names", names)


def s_statvfs(t):
    def sane(s):
        return {"bsize>0": s.f_bsize > 0, "frsize>0": s.f_frsize > 0,
                "blocks>0": s.f_blocks > 0,
                "bavail<=bfree<=blocks": s.f_bavail <= s.f_bfree <= s.f_blocks,
                "namemax": s.f_namemax}
    t("statvfs .", os.statvfs, ".", show=lambda s: fmt(sorted(sane(s).items())))
    fd = t.open("create f", "f", O_RDWR | O_CREAT)
    t("fstatvfs", os.fstatvfs, fd, show=lambda s: fmt(sorted(sane(s).items())))
    t("statvfs a missing path", os.statvfs, "missing")


# ---------------------------------------------------------------------------
# Scenarios: directories, names, links.

def s_unlink(t):
    t("write f", put, "f", b"x")
    t("write g", put, "g", b"y")
    t("mkdir d", os.mkdir, "d")
    t("symlink l -> f", os.symlink, "f", "l")
    for what, path in [
        ("unlink the symlink", "l"),
        ("unlink a file", "f"),
        ("unlink it again", "f"),
        ("unlink a directory", "d"),
        ("unlink a directory with a trailing slash", "d/"),
        ("unlink a file with a trailing slash", "g/"),
        ("unlink a path through a file", "g/x"),
        ("unlink a path through a missing directory", "nodir/x"),
        ("unlink .", "."),
    ]:
        t(what, os.unlink, path)
    t("names left", names)
    t.stat("g survives", "g")


def s_mkdir_rmdir(t):
    t("write f", put, "f", b"x")
    for what, path, mode in [
        ("mkdir d", "d", 0o755),
        ("mkdir d again", "d", 0o755),
        ("mkdir over a file", "f", 0o755),
        ("mkdir in a missing directory", "nodir/x", 0o755),
        ("mkdir through a file", "f/x", 0o755),
        ("mkdir mode 0700", "m", 0o700),
        ("mkdir mode 01777 (umask 022)", "s", 0o1777),
        ("mkdir with a trailing slash", "t/", 0o755),
        ("mkdir d/sub", "d/sub", 0o755),
    ]:
        t(what, os.mkdir, path, mode)
    for path in ("m", "s", "t", "d", "."):
        t.stat(f"stat {path}", path)
    t("write d/sub/file", put, "d/sub/file", b"z")
    for what, path in [
        ("rmdir a non-empty directory", "d"),
        ("rmdir a file", "f"),
        ("rmdir a missing directory", "missing"),
        ("rmdir d/sub/.", "d/sub/."),
        ("rmdir d/sub/..", "d/sub/.."),
        ("unlink d/sub/file", None),
        ("rmdir d/sub", "d/sub"),
        ("rmdir d", "d"),
        ("rmdir with a trailing slash", "t/"),
    ]:
        if path is None:
            t(what, os.unlink, "d/sub/file")
        else:
            t(what, os.rmdir, path)
    t.stat("stat d after rmdir", "d")
    t.stat("stat . after rmdir", ".")
    t("mkdir gone", os.mkdir, "gone")
    dfd = t.open("open gone", "gone", O_RDONLY | O_DIRECTORY)
    t("rmdir gone while open", os.rmdir, "gone")
    t("create in the removed directory", os.open, "x", O_WRONLY | O_CREAT, 0o644,
      dir_fd=dfd)
    t("list the removed directory", os.listdir, dfd)
    t("fstat the removed directory", os.fstat, dfd)
    t("mkdir sg", os.mkdir, "sg")
    t("chown sg to gid 1234", os.chown, "sg", -1, 1234)
    t("chmod sg 02775", os.chmod, "sg", 0o2775)
    t("mkdir in a setgid directory", os.mkdir, "sg/sub")
    t.stat("sg/sub inherits the group and the setgid bit", "sg/sub")
    t("create in a setgid directory", put, "sg/file", b"")
    t.stat("sg/file inherits the group", "sg/file")
    t("names left", names)


def s_rename(t):
    for name in ("d1", "d2", "e", "empty"):
        t(f"mkdir {name}", os.mkdir, name)
    for name, data in [("a", b"A"), ("b", b"B"), ("d1/x", b"X"), ("d2/y", b"Y")]:
        t(f"write {name}", put, name, data)
    for what, old, new in [
        ("rename a -> c", "a", "c"),
        ("rename c over b", "c", "b"),
        ("rename a (gone)", "a", "z"),
        ("rename d1 over non-empty d2", "d1", "d2"),
        ("rename d1 over empty e", "d1", "e"),
        ("rename a file over a directory", "b", "empty"),
        ("rename a directory over a file", "empty", "b"),
        ("rename a directory into itself", "e", "e/sub"),
        ("rename a file to itself", "b", "b"),
        ("rename through a file", "b/x", "q"),
        ("rename into a missing directory", "b", "nodir/b"),
        ("rename b into d2", "b", "d2/b"),
        ("rename . away", ".", "dot"),
        ("rename with a trailing slash on a file", "d2/b/", "bb"),
        ("rename a directory with a trailing slash", "empty/", "empty2/"),
    ]:
        t(what, os.rename, old, new)
    t("names", names)
    t("names in d2", names, "d2")
    t("names in e", names, "e")
    t("read d2/b", get, "d2/b")
    t("write h1", put, "h1", b"H")
    t("link h1 h2", os.link, "h1", "h2")
    t("rename a hard link over its twin does nothing", os.rename, "h1", "h2")
    t("both names remain", names)
    t("write n1", put, "n1", b"N1")
    t("write n2", put, "n2", b"N2")
    for what, old, new, flags in [
        ("NOREPLACE over an existing file", "n1", "n2", RENAME_NOREPLACE),
        ("NOREPLACE over a directory", "n1", "e", RENAME_NOREPLACE),
        ("NOREPLACE to a new name", "n1", "n3", RENAME_NOREPLACE),
        ("EXCHANGE with a missing name", "n2", "missing", RENAME_EXCHANGE),
        ("EXCHANGE|NOREPLACE", "n2", "n3", RENAME_EXCHANGE | RENAME_NOREPLACE),
        ("EXCHANGE two files", "n2", "n3", RENAME_EXCHANGE),
        ("EXCHANGE a file and a directory", "n2", "e", RENAME_EXCHANGE),
        ("EXCHANGE across directories", "d2/y", "n3", RENAME_EXCHANGE),
        ("unknown flag", "n3", "n4", 1 << 7),
    ]:
        t(what, renameat2, old, new, flags)
    t.stat("n2 is now the directory", "n2")
    t("names in n2", names, "n2")
    t("e is now the file", get, "e")
    t("n3 is now d2/y's data", get, "n3")
    t("d2/y is now the old n3", get, "d2/y")
    t("symlink sl -> e", os.symlink, "e", "sl")
    t("rename the symlink", os.rename, "sl", "sl2")
    t("readlink sl2", os.readlink, "sl2")
    dfd = t.open("open n2", "n2", O_RDONLY | O_DIRECTORY)
    t("rename n2 -> moved while open", os.rename, "n2", "moved")
    t("create through the fd of the renamed directory", put, "made", b"M", dir_fd=dfd)
    t("names in moved", names, "moved")
    t("rename over an open directory's parent path", os.rename, "d2", "moved/d2")
    t("the fd still lists the directory", lambda: sorted(os.listdir(dfd)))


def s_link(t):
    t("write a", put, "a", b"data")
    t("mkdir d", os.mkdir, "d")
    t("link a b", os.link, "a", "b")
    t.stat("stat a", "a")
    t.stat("stat b", "b")
    t("a and b are one inode", lambda: os.stat("a").st_ino == os.stat("b").st_ino)
    fd = t.open("open b O_APPEND", "b", O_WRONLY | O_APPEND)
    t("append through b", os.write, fd, b"+b")
    t("read a", get, "a")
    for what, old, new in [
        ("link to an existing name", "a", "b"),
        ("link a directory", "d", "dlink"),
        ("link a missing file", "missing", "x"),
        ("link into a missing directory", "a", "nodir/x"),
        ("link across directories", "a", "d/a2"),
        ("link with a trailing slash", "a/", "x"),
    ]:
        t(what, os.link, old, new)
    for i in range(8):
        t(f"link a more{i}", os.link, "a", f"more{i}")
    t.stat("stat a with 11 names", "a")
    for i in range(8):
        t(f"unlink more{i}", os.unlink, f"more{i}")
    t("unlink a", os.unlink, "a")
    t.stat("stat b", "b")
    t("symlink s -> b", os.symlink, "b", "s")
    t("link the symlink itself", linkat, "s", "s2", 0)
    t.stat("lstat s2", "s2", follow=False)
    t("s and s2 are one inode", lambda: os.lstat("s").st_ino == os.lstat("s2").st_ino)
    t("link following the symlink", linkat, "s", "s3", AT_SYMLINK_FOLLOW)
    t.stat("lstat s3 is the file", "s3", follow=False)
    t("s3 and b are one inode", lambda: os.stat("s3").st_ino == os.stat("b").st_ino)


def s_symlink(t):
    t("symlink l -> file", os.symlink, "file", "l")
    t("readlink a dangling symlink", os.readlink, "l")
    t.stat("lstat l", "l", follow=False)
    t.stat("stat a dangling symlink", "l")
    t("write file", put, "file", b"content")
    t.stat("stat l follows", "l")
    t("read through l", get, "l")
    t("mkdir d", os.mkdir, "d")
    t("write d/inner", put, "d/inner", b"i")
    t("symlink ld -> d", os.symlink, "d", "ld")
    t("list through ld", names, "ld")
    t("list through ld/", names, "ld/")
    t("read ld/inner", get, "ld/inner")
    t("symlink deep -> d/../file", os.symlink, "d/../file", "deep")
    t("read through deep", get, "deep")
    for what, target, name in [
        ("symlink over an existing name", "x", "file"),
        ("symlink with an empty target", "", "empty"),
        ("symlink into a missing directory", "x", "nodir/l"),
        ("symlink with an absolute target", "/nonexistent/path", "abs"),
        ("symlink with a newline in the target", "a\nb", "nl"),
        ("symlink with a 4095-byte target", "t" * 4095, "long"),
        ("symlink with a 4096-byte target", "t" * 4096, "toolong"),
    ]:
        t(what, os.symlink, target, name)
    for path in ("abs", "nl", "long", "file", "missing", "d"):
        t(f"readlink {path}", os.readlink, path)
    t.stat("lstat long", "long", follow=False)
    t.stat("stat abs", "abs")
    t("lchown l to 7:8", os.chown, "l", 7, 8, follow_symlinks=False)
    t.stat("lstat l", "l", follow=False)
    t.stat("stat file is untouched", "file")


def s_eloop(t):
    t("symlink loop -> loop", os.symlink, "loop", "loop")
    t("symlink a -> b", os.symlink, "b", "a")
    t("symlink b -> a", os.symlink, "a", "b")
    t("write end", put, "end", b"end")
    for i in range(41):
        t(f"symlink c{i}", os.symlink, f"c{i + 1}" if i < 40 else "end", f"c{i}")
    t.open("open loop", "loop", O_RDONLY)
    t.stat("stat loop", "loop")
    t.stat("lstat loop", "loop", follow=False)
    t.open("open a", "a", O_RDONLY)
    t.open("create through loop", "loop", O_WRONLY | O_CREAT)
    t.open("open loop/x", "loop/x", O_RDONLY)
    t("mkdir loop/x", os.mkdir, "loop/x")
    t("read through 40 symlinks", get, "c1")
    t("read through 41 symlinks", get, "c0")
    t("readlink loop", os.readlink, "loop")


def s_names(t):
    n255, n256 = "n" * 255, "x" * 256
    utf255 = "é" * 127 + "e"
    utf256 = "é" * 128
    t.open("create a 255-byte name", n255, O_WRONLY | O_CREAT)
    t.stat("stat it", n255)
    t("rename to another 255-byte name", os.rename, n255, "m" * 255)
    t("mkdir a 255-byte name", os.mkdir, "d" * 255)
    t("create inside it", put, "d" * 255 + "/" + "f" * 255, b"deep")
    t("symlink named 255 bytes", os.symlink, "s" * 255, "l" * 255)
    t("readlink it", os.readlink, "l" * 255)
    t("link to a 255-byte name", os.link, "m" * 255, "k" * 255)
    t.open("create a 255-byte UTF-8 name", utf255, O_WRONLY | O_CREAT)
    for what, fn, args in [
        ("create a 256-byte name", os.open, (n256, O_WRONLY | O_CREAT, 0o644)),
        ("create a 256-byte UTF-8 name", os.open, (utf256, O_WRONLY | O_CREAT, 0o644)),
        ("create a 1025-byte name", os.open, ("y" * 1025, O_WRONLY | O_CREAT, 0o644)),
        ("stat a 256-byte name", os.stat, (n256,)),
        ("mkdir a 256-byte name", os.mkdir, (n256,)),
        ("symlink to a 256-byte name", os.symlink, ("t", n256)),
        ("link to a 256-byte name", os.link, ("m" * 255, n256)),
        ("rename to a 256-byte name", os.rename, ("m" * 255, n256)),
        ("mkfifo a 256-byte name", os.mkfifo, (n256,)),
        ("unlink a 256-byte name", os.unlink, (n256,)),
        ("a 256-byte name inside a directory", os.stat, ("d" * 255 + "/" + n256,)),
    ]:
        t(what, fn, *args)
    odd = [" lead", "trail ", "new\nline", "-dash", "tab\tname", ".hidden",
           "..dots", "bad\udcffbyte", "%s%n", "*?[", "back\\slash", "quote\"'",
           "\u00e9t\u00e9", "\u65e5\u672c"]
    for name in odd:
        t(f"write {name!r}", put, name, os.fsencode(name))
    for name in odd:
        t(f"read {name!r}", get, name)
    t("names", names)


def s_path_max(t):
    seg = "p" * 250
    fd = t.open("open .", ".", O_RDONLY | O_DIRECTORY)
    for depth in range(1, 25):
        t(f"mkdir level {depth}", os.mkdir, seg, dir_fd=fd)
        nfd = t.open(f"open level {depth}", seg, O_RDONLY | O_DIRECTORY, dir_fd=fd)
        t.close(f"close level {depth - 1}", fd)
        fd = nfd
        if depth == 16:
            # 16 levels of 251 bytes: 4016 bytes; a 79-byte name makes 4095.
            t("create the file that makes the path 4095 bytes", put, "f" * 79,
              b"at the limit", dir_fd=fd)
            t("mkdir the directory that makes the path 4095 bytes", os.mkdir,
              "g" * 79, dir_fd=fd)
    long_path = "/".join([seg] * 16) + "/" + "f" * 79
    t.note("length", len(long_path))
    t.stat("stat the 4095-byte relative path", long_path)
    t("read it", get, long_path)
    t.stat("stat a 4096-byte path", long_path + "x")
    t("mkdir a 4096-byte path", os.mkdir, long_path + "x")
    t("fchdir 24 levels (6024 bytes) down", os.fchdir, fd)
    t("write there", put, "deep", pattern(10000))
    t("read there", get, "deep")
    t("rename there", os.rename, "deep", "deeper")
    t("link there", os.link, "deeper", "linked")
    t("symlink there", os.symlink, "deeper", "sym")
    t("read through the symlink", get, "sym")
    t("mkdir there", os.mkdir, "sub")
    t("rmdir there", os.rmdir, "sub")
    t("setxattr there", os.setxattr, "deeper", "user.deep", b"yes")
    t("getxattr there", os.getxattr, "deeper", "user.deep")
    t.stat("stat there", "linked")
    t("names there", names)
    t("move up one level with ..", os.rename, "linked", "../up")
    t("names one level up", names, "..")


def s_nodes(t):
    t("mkfifo p 0640", os.mkfifo, "p", 0o640)
    t.stat("lstat p", "p", follow=False)
    t("mkfifo p again", os.mkfifo, "p")
    t("mknod a socket", os.mknod, "sock", stat.S_IFSOCK | 0o644)
    t("mknod a char device 1,3", os.mknod, "chr", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    t("mknod a block device 7,200", os.mknod, "blk", stat.S_IFBLK | 0o600, os.makedev(7, 200))
    t("mknod a regular file", os.mknod, "reg", stat.S_IFREG | 0o640)
    t("mknod with no type is a regular file", os.mknod, "reg0", 0o600)
    t("mknod a directory", os.mknod, "dir", stat.S_IFDIR | 0o755)
    for path in ("sock", "chr", "blk", "reg", "reg0"):
        t.stat(f"lstat {path}", path, follow=False)
    t("read wonly", get, "wonly")
    t("times of old (untouched)", lambda: (lambda st: (st.st_atime_ns, st.st_mtime_ns))(
        os.stat("old")))
    t("rename p -> p2", os.rename, "p", "p2")
    t("link p2 p3", os.link, "p2", "p3")
    t.stat("lstat p3", "p3", follow=False)
    t("chmod p2 0600", os.chmod, "p2", 0o600)
    t("chown p3 5:6", os.chown, "p3", 5, 6)
    t("utime p2", os.utime, "p2", ns=(123456789, 987654321))
    t("p2's times", lambda: (os.stat("p2").st_atime_ns, os.stat("p2").st_mtime_ns))
    t.stat("lstat p2", "p2", follow=False)
    t("unlink p3", os.unlink, "p3")
    t("names", names)


# ---------------------------------------------------------------------------
# Scenarios: metadata.

def s_chmod(t):
    t("write f", put, "f", b"x")
    t("mkdir d", os.mkdir, "d")
    t("symlink l -> f", os.symlink, "f", "l")
    for what, path, mode in [
        ("chmod 0640", "f", 0o640),
        ("chmod 04755", "f", 0o4755),
        ("chmod 07777", "f", 0o7777),
        ("chmod 0", "f", 0),
        ("chmod with file-type bits", "f", 0o170644),
        ("chmod through the symlink", "l", 0o600),
        ("chmod a directory 0700", "d", 0o700),
        ("chmod a directory 01777", "d", 0o1777),
        ("chmod a missing file", "missing", 0o644),
    ]:
        t(what, os.chmod, path, mode)
        t.stat("stat", path)
    fd = t.open("open f", "f", O_RDONLY)
    t("fchmod 0444", os.fchmod, fd, 0o444)
    t("fstat", os.fstat, fd)
    t.stat("lstat l (always 0777)", "l", follow=False)


def s_chown(t):
    t("write f", put, "f", b"x")
    t("mkdir d", os.mkdir, "d")
    t("symlink l -> f", os.symlink, "f", "l")
    for what, path, uid, gid, follow in [
        ("chown 1234:5678", "f", 1234, 5678, True),
        ("chown -1:42 keeps the owner", "f", -1, 42, True),
        ("chown 99:-1 keeps the group", "f", 99, -1, True),
        ("chown -1:-1 changes nothing", "f", -1, -1, True),
        ("chown through the symlink", "l", 11, 12, True),
        ("lchown the symlink", "l", 21, 22, False),
        ("chown a directory", "d", 31, 32, True),
        ("chown a missing file", "missing", 1, 1, True),
    ]:
        t(what, os.chown, path, uid, gid, follow_symlinks=follow)
        t.stat("lstat", path, follow=False)
    t.stat("stat f", "f")
    fd = t.open("open f", "f", O_RDONLY)
    t("fchown 7:7", os.fchown, fd, 7, 7)
    t("fstat", os.fstat, fd)
    for mode in (0o6755, 0o6745, 0o4644, 0o2755, 0o1755):
        t(f"chmod {mode:04o}", os.chmod, "f", mode)
        t("chown 0:0", os.chown, "f", 0, 0)
        t.stat("mode after a chown", "f")
    t("chmod d 02755", os.chmod, "d", 0o2755)
    t("chown d 0:0", os.chown, "d", 0, 0)
    t.stat("a directory keeps setgid", "d")


def s_utime(t):
    def times(path, follow=True):
        st = os.stat(path, follow_symlinks=follow)
        return (st.st_atime_ns, st.st_mtime_ns)

    t("write f", put, "f", b"x")
    t("mkdir d", os.mkdir, "d")
    t("symlink l -> f", os.symlink, "f", "l")
    for what, at, mt in [
        ("utime exact ns", 1_000_000_001, 2_000_000_002),
        ("utime atime only (mtime UTIME_OMIT)", 3_000_000_003, UTIME_OMIT),
        ("utime mtime only (atime UTIME_OMIT)", UTIME_OMIT, 4_999_999_999),
        ("utime both UTIME_OMIT", UTIME_OMIT, UTIME_OMIT),
        ("utime before 1970", -1_500_000_000_000_000_001, -7),
        ("utime in 2242", 2**33 * 10**9 + 5, 2**33 * 10**9 + 6),
        ("utime nanoseconds 999999999", 5_999_999_999, 6_999_999_999),
    ]:
        t(what, utimensat, "f", at, mt)
        t("times", times, "f")
    t("mtime UTIME_NOW", utimensat, "f", UTIME_OMIT, UTIME_NOW)
    t("atime kept, mtime is now", lambda: (times("f")[0], near_now(times("f")[1])))
    t("utime(None) sets both to now", os.utime, "f")
    t("both now", lambda: [near_now(x) for x in times("f")])
    t("utime a directory", os.utime, "d", ns=(11, 22))
    t("times d", times, "d")
    t("utime the symlink itself", os.utime, "l", ns=(33, 44), follow_symlinks=False)
    t("times l", times, "l", False)
    t("utime through the symlink", os.utime, "l", ns=(55, 66))
    t("times f", times, "f")
    t("mtime of l unchanged (following it moved its atime)", lambda: times("l", False)[1])
    fd = t.open("open f", "f", O_RDWR)
    t("futimens", os.utime, fd, ns=(77, 88))
    t("times f", times, "f")
    t("write", os.write, fd, b"y")
    t("a write moves mtime to now", lambda: near_now(times("f")[1]))
    t("utime again", os.utime, fd, ns=(77, 88))
    t("ftruncate", os.ftruncate, fd, 0)
    t("a truncate moves mtime to now", lambda: near_now(times("f")[1]))
    t("utime a missing file", os.utime, "missing", ns=(1, 1))
    t("create g", put, "g", b"")
    t("times of a new file are now", lambda: [near_now(x) for x in times("g")])


def s_btime(t):
    """Birth time through statx(2): the kernel asks the filesystem with
    FUSE_STATX, which libfuse 3.14 cannot answer (fs/loop.c).  Recorded as
    whether it is there and near the clock, and how it compares with the
    other times, since the two directories' files are born apart."""
    def known(path, **kw):
        b = birth(path, **kw)
        return None if b is None else near_now(b)

    t("write f", put, "f", b"x")
    t("mkdir d", os.mkdir, "d")
    t("symlink l -> f", os.symlink, "f", "l")
    for name in ("f", "d", "l"):
        t(f"birth time of {name} is now", known, name)
    b0 = birth("f")
    t("following l gives f's", lambda: birth("l", flags=0) == b0)
    t("forced sync, the same", lambda: birth("f", flags=0x100 | AT_STATX_FORCE_SYNC) == b0)
    fd = t.open("open f", "f", O_RDWR)
    t("of the open file (AT_EMPTY_PATH), the same", lambda: birth("", fd=fd, flags=AT_EMPTY_PATH) == b0)
    time.sleep(0.02)
    t("write", os.write, fd, b"y")
    t("chmod", os.chmod, "f", 0o600)
    t("utime", os.utime, "f", ns=(1, 2))
    t("kept through write, chmod, utime", lambda: birth("f") == b0)
    t("forced sync, the same", lambda: birth("f", flags=0x100 | AT_STATX_FORCE_SYNC) == b0)
    t("rename f g", os.rename, "f", "g")
    t("link g h", os.link, "g", "h")
    t("kept through rename and link", lambda: [birth(n) == b0 for n in ("g", "h")])
    t.close("close", fd)
    t("put n", put, "n", b"")
    t("a later file is born later", lambda: birth("n") >= b0)
    t("birth of a missing name", birth, "missing")


def s_access(t):
    for name, mode in [("r", 0o400), ("w", 0o200), ("x", 0o100), ("none", 0)]:
        t(f"write {name}", put, name, b"#!/bin/sh\n", mode=mode)
        t(f"chmod {name}", os.chmod, name, mode)
    t("mkdir d", os.mkdir, "d", 0o700)
    for what, path, mode in [
        ("F_OK", "none", os.F_OK),
        ("R_OK on 0400", "r", os.R_OK),
        ("R_OK|W_OK on 0 (root)", "none", os.R_OK | os.W_OK),
        ("X_OK on 0 (root)", "none", os.X_OK),
        ("X_OK on 0100 (root)", "x", os.X_OK),
        ("X_OK on 0200 (root)", "w", os.X_OK),
        ("X_OK on a directory", "d", os.X_OK),
        ("F_OK on a missing file", "missing", os.F_OK),
        ("F_OK through a file", "r/x", os.F_OK),
        ("invalid mode", "r", 0o10),
    ]:
        t(f"access {what}", access, path, mode)


def s_xattr(t):
    t("write f", put, "f", b"x")
    t("write big", put, "big", b"")
    t("write g", put, "g", b"")
    t("mkdir d", os.mkdir, "d")
    t("symlink l -> g", os.symlink, "g", "l")
    t("mkfifo p", os.mkfifo, "p")
    for what, path, name, value, flags in [
        ("set user.a", "f", "user.a", b"1", 0),
        ("set an empty value", "f", "user.empty", b"", 0),
        ("set with XATTR_CREATE on an existing name", "f", "user.a", b"2", os.XATTR_CREATE),
        ("set with XATTR_REPLACE on a missing name", "f", "user.c", b"3", os.XATTR_REPLACE),
        ("replace user.a", "f", "user.a", b"22", os.XATTR_REPLACE),
        ("set a 4000-byte value", "big", "user.big", pattern(4000), 0),
        ("set a 65537-byte value", "big", "user.huge", b"h" * 65537, 0),
        ("set a binary value", "f", "user.bin", b"\0\1\2\xff", 0),
        ("set trusted.t", "f", "trusted.t", b"t", 0),
        ("set an unknown namespace", "f", "bogus.x", b"x", 0),
        ("set a 256-byte name", "f", "user." + "n" * 251, b"x", 0),
        ("set a 255-byte name", "g", "user." + "n" * 250, b"x", 0),
        ("set on a directory", "d", "user.dir", b"D", 0),
        ("set on a missing file", "missing", "user.a", b"x", 0),
        ("set through the symlink", "l", "user.vial", b"L", 0),
    ]:
        t(what, os.setxattr, path, name, value, flags)
    t("set user.* on the symlink itself", os.setxattr, "l", "user.s", b"s",
      follow_symlinks=False)
    t("set user.* on a FIFO", os.setxattr, "p", "user.p", b"p")
    for name in ("user.a", "user.empty", "user.bin", "trusted.t", "user.missing"):
        t(f"get {name}", os.getxattr, "f", name)
    t("get user.dir", os.getxattr, "d", "user.dir")
    t("get user.big", os.getxattr, "big", "user.big")
    t("get the 255-byte name", os.getxattr, "g", "user." + "n" * 250)
    t("get the one set through the symlink", os.getxattr, "g", "user.vial")
    t("list f", lambda: sorted(os.listxattr("f")))
    t("list g", lambda: sorted(os.listxattr("g")))
    t("list d", lambda: sorted(os.listxattr("d")))
    t("list the symlink itself", lambda: sorted(os.listxattr("l", follow_symlinks=False)))
    t("size of user.big", getxattr_size, "big", "user.big", 0)
    t("user.big into a 10-byte buffer", getxattr_size, "big", "user.big", 10)
    t("user.big into a 4000-byte buffer", getxattr_size, "big", "user.big", 4000)
    t("size of the name list", listxattr_size, "f", 0)
    t("the name list into a 5-byte buffer", listxattr_size, "f", 5)
    for name in ("user.a", "user.a", "user.missing", "trusted.t"):
        t(f"remove {name}", os.removexattr, "f", name)
    t("list f", lambda: sorted(os.listxattr("f")))
    fd = t.open("open f", "f", O_RDONLY)
    t("fsetxattr", os.setxattr, fd, "user.fd", b"via fd")
    t("fgetxattr", os.getxattr, fd, "user.fd")
    t("flistxattr", lambda: sorted(os.listxattr(fd)))
    t("fremovexattr", os.removexattr, fd, "user.empty")


# ---------------------------------------------------------------------------
# Scenarios: locks.

def interrupted(signum, frame):
    """A SIGALRM handler that makes the interrupted call fail with EINTR."""
    raise InterruptedError(errno.EINTR, "interrupted")


# ---------------------------------------------------------------------------
# Scenarios: inode flags (chattr, lsattr).

FS_IOC_GETFLAGS, FS_IOC_SETFLAGS = 0x80086601, 0x40086602
FS_IOC_FSGETXATTR, FS_IOC_FSSETXATTR = 0x801C581F, 0x401C5820
FS_IOC_GETVERSION, FS_IOC_SETVERSION = 0x80087601, 0x40087602
FS_IMMUTABLE_FL, FS_APPEND_FL, FS_NODUMP_FL = 0x10, 0x20, 0x40
FS_XFLAG_NODUMP = 0x80
TCGETS = 0x5401


def get_flags(path):
    """The inode flags, as lsattr reads them: FS_IOC_GETFLAGS, an int."""
    fd = os.open(path, O_RDONLY | os.O_NONBLOCK)
    try:
        buf = bytearray(4)
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf)
        return hex(struct.unpack("i", buf)[0])
    finally:
        os.close(fd)


def set_flags(path, add=0, remove=0):
    """chattr +add -remove, by FS_IOC_SETFLAGS."""
    fd = os.open(path, O_RDONLY | os.O_NONBLOCK)
    try:
        buf = bytearray(4)
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf)
        flags = (struct.unpack("i", buf)[0] | add) & ~remove
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", flags))
    finally:
        os.close(fd)


def get_xflags(path):
    """xflags and project id of FS_IOC_FSGETXATTR (struct fsxattr)."""
    fd = os.open(path, O_RDONLY | os.O_NONBLOCK)
    try:
        buf = bytearray(28)
        fcntl.ioctl(fd, FS_IOC_FSGETXATTR, buf)
        xflags, _, _, projid = struct.unpack("4I", buf[:16])
        return (hex(xflags), projid)
    finally:
        os.close(fd)


def set_xflags(path, remove):
    fd = os.open(path, O_RDONLY | os.O_NONBLOCK)
    try:
        buf = bytearray(28)
        fcntl.ioctl(fd, FS_IOC_FSGETXATTR, buf)
        xflags = struct.unpack("I", buf[:4])[0] & ~remove
        fcntl.ioctl(fd, FS_IOC_FSSETXATTR, struct.pack("I", xflags) + buf[4:])
    finally:
        os.close(fd)


def version_is(path, version):
    """Whether the inode's generation, as lsattr -v reads it (an int), is
    version: each side's own number is its filesystem's to choose, and
    a source may refuse to set it (ext4 with metadata_csum)."""
    fd = os.open(path, O_RDONLY | os.O_NONBLOCK)
    try:
        buf = bytearray(4)
        fcntl.ioctl(fd, FS_IOC_GETVERSION, buf)
        return struct.unpack("I", buf)[0] == version
    finally:
        os.close(fd)


def set_version(path, version):
    """chattr -v VERSION."""
    fd = os.open(path, O_RDONLY | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, FS_IOC_SETVERSION, struct.pack("I", version))
    finally:
        os.close(fd)


def other_ioctl(path):
    fd = os.open(path, O_RDONLY)
    try:
        return fcntl.ioctl(fd, TCGETS, bytes(64))
    finally:
        os.close(fd)


def acl_xattr(*entries):
    """The system.posix_acl_* value of (tag, perm, id) entries."""
    return struct.pack("<I", 2) + b"".join(
        struct.pack("<HHI", tag, perm, qid) for tag, perm, qid in entries)


ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER = 1, 2, 4, 0x10, 0x20
NO_ID = 0xFFFFFFFF


def under_umask(mask, fn, *args):
    old = os.umask(mask)
    try:
        return fn(*args)
    finally:
        os.umask(old)


def s_default_acl(t):
    """A default ACL, not the umask, sets what is created in its directory."""
    dacl = acl_xattr((ACL_USER_OBJ, 7, NO_ID), (ACL_USER, 7, 65534),
                     (ACL_GROUP_OBJ, 7, NO_ID), (ACL_MASK, 7, NO_ID),
                     (ACL_OTHER, 0, NO_ID))
    t("mkdir dacl", os.mkdir, "dacl")
    t("setfacl -d on dacl", os.setxattr, "dacl", "system.posix_acl_default", dacl)
    t("mkdir plain", os.mkdir, "plain")
    for d in ("dacl", "plain"):
        t(f"create {d}/f 0666 under umask 022", under_umask, 0o022, put, f"{d}/f", b"x", 0o666)
        t(f"mkdir {d}/d 0777 under umask 027", under_umask, 0o027, os.mkdir, f"{d}/d", 0o777)
        t(f"mkfifo {d}/p 0666 under umask 077", under_umask, 0o077, os.mkfifo, f"{d}/p", 0o666)
        fd = t(f"O_TMPFILE in {d} 0666 under umask 022", under_umask, 0o022, os.open,
               d, O_RDWR | os.O_TMPFILE, 0o666, show=lambda _: "fd")
        if fd is not None:
            t(f"fstat the O_TMPFILE in {d}", os.fstat, fd)
            os.close(fd)
        for name in ("f", "d", "p"):
            t.stat(f"stat {d}/{name}", f"{d}/{name}")
            t(f"getfacl {d}/{name}", os.getxattr, f"{d}/{name}", "system.posix_acl_access")
        t(f"getfacl -d {d}/d", os.getxattr, f"{d}/d", "system.posix_acl_default")


def s_fileattr(t):
    t("write f", put, "f", b"flags")
    t("mkdir d", os.mkdir, "d")
    t("mkfifo p", os.mkfifo, "p")
    t("symlink l -> f", os.symlink, "f", "l")
    for path in ("f", "d", "p", "l"):
        t(f"lsattr {path}", get_flags, path)
    t("chattr +d f", set_flags, "f", FS_NODUMP_FL)
    t("lsattr f", get_flags, "f")
    t("FSGETXATTR f", get_xflags, "f")
    t("FSSETXATTR f without nodump", set_xflags, "f", FS_XFLAG_NODUMP)
    t("lsattr f", get_flags, "f")
    t("chattr +d d", set_flags, "d", FS_NODUMP_FL)
    t("lsattr d", get_flags, "d")
    t("FSGETXATTR d", get_xflags, "d")
    t("chattr -v 4242 f", set_version, "f", 4242)
    t("lsattr -v f is 4242", version_is, "f", 4242)
    t("chattr -v 77 d", set_version, "d", 77)
    t("lsattr -v d is 77", version_is, "d", 77)
    t("chattr +a f", set_flags, "f", FS_APPEND_FL)
    t.open("open f O_WRONLY (append-only)", "f", O_WRONLY)
    t.open("open f O_RDWR (append-only)", "f", O_RDWR)
    # Appends, with the file's pages cached by a reader meanwhile.
    r = t.open("open f O_RDONLY", "f", O_RDONLY)
    t("read f through it", read_all, r)
    a = t.open("open f O_WRONLY|O_APPEND (append-only)", "f",
               O_WRONLY | O_APPEND)
    if a is not None:
        t("append to f", os.write, a, b" and more")
        t("pwrite at 0 appends", os.pwrite, a, b"!", 0)
        t("fstat size of f", lambda fd: os.fstat(fd).st_size, a)
    b = t.open("open f O_RDWR|O_APPEND|O_CREAT (append-only)", "f",
               O_RDWR | O_APPEND | O_CREAT)
    if b is not None:
        t("append through the second", os.write, b, b"?")
        t("pread f at 2 through it", os.pread, b, 100, 2)
        t("ftruncate f (append-only)", os.ftruncate, b, 1)
    t("read f again through the reader", read_all, r)
    t.close_all()
    t("read f", get, "f")
    t("stat size of f", lambda p: os.stat(p).st_size, "f")
    t("chattr -a +i f", set_flags, "f", FS_IMMUTABLE_FL, FS_APPEND_FL)
    t("lsattr f", get_flags, "f")
    t.open("open f O_WRONLY (immutable)", "f", O_WRONLY)
    t("truncate f (immutable)", os.truncate, "f", 0)
    t("chmod f (immutable)", os.chmod, "f", 0o600)
    t("setxattr f (immutable)", os.setxattr, "f", "user.x", b"x")
    t("unlink f (immutable)", os.unlink, "f")
    t("rename f (immutable)", os.rename, "f", "g")
    t("link f (immutable)", os.link, "f", "h")
    t("read f (immutable)", get, "f")
    t("chattr -i f", set_flags, "f", 0, FS_IMMUTABLE_FL)
    t("rename f", os.rename, "f", "g")
    t("another ioctl (TCGETS)", other_ioctl, "g")


def s_locks(t):
    t("write f", put, "f", b"locks")
    a = t.open("open A", "f", O_RDWR)
    b = t.open("open B", "f", O_RDWR)
    for what, fd, op in [
        ("flock A LOCK_EX|LOCK_NB", a, fcntl.LOCK_EX | fcntl.LOCK_NB),
        ("flock B LOCK_EX|LOCK_NB conflicts", b, fcntl.LOCK_EX | fcntl.LOCK_NB),
        ("flock B LOCK_SH|LOCK_NB conflicts", b, fcntl.LOCK_SH | fcntl.LOCK_NB),
        ("flock A LOCK_UN", a, fcntl.LOCK_UN),
        ("flock B LOCK_SH|LOCK_NB", b, fcntl.LOCK_SH | fcntl.LOCK_NB),
        ("flock A LOCK_SH|LOCK_NB shares", a, fcntl.LOCK_SH | fcntl.LOCK_NB),
        ("flock A upgrade to LOCK_EX|LOCK_NB conflicts", a, fcntl.LOCK_EX | fcntl.LOCK_NB),
        ("flock B LOCK_UN", b, fcntl.LOCK_UN),
        ("flock A upgrade to LOCK_EX|LOCK_NB", a, fcntl.LOCK_EX | fcntl.LOCK_NB),
    ]:
        t(what, fcntl.flock, fd, op)

    def try_flock(c):
        fd = c.open("open in the child", "f", O_RDWR)
        c("flock LOCK_EX|LOCK_NB conflicts", fcntl.flock, fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

        signal.signal(signal.SIGALRM, interrupted)
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        c("blocking flock LOCK_EX, interrupted by a signal", fcntl.flock, fd, fcntl.LOCK_EX)
        signal.setitimer(signal.ITIMER_REAL, 0)

    t.child("child", try_flock)
    t.close("close A drops its flock", a)
    t("flock B LOCK_EX|LOCK_NB", fcntl.flock, b, fcntl.LOCK_EX | fcntl.LOCK_NB)
    t.close("close B", b)

    a = t.open("open A", "f", O_RDWR)
    b = t.open("open B", "f", O_RDWR)
    wr, rd, un = fcntl.F_WRLCK, fcntl.F_RDLCK, fcntl.F_UNLCK
    for what, fd, kind, start, length, cmd in [
        ("OFD write lock A 0..100", a, wr, 0, 100, fcntl.F_OFD_SETLK),
        ("OFD write lock B 50..150 conflicts", b, wr, 50, 100, fcntl.F_OFD_SETLK),
        ("OFD read lock B 99..100 conflicts", b, rd, 99, 1, fcntl.F_OFD_SETLK),
        ("OFD write lock B 100..200", b, wr, 100, 100, fcntl.F_OFD_SETLK),
        ("OFD GETLK B 0..10", b, wr, 0, 10, fcntl.F_OFD_GETLK),
        ("OFD GETLK A 150..160", a, rd, 150, 10, fcntl.F_OFD_GETLK),
        ("OFD unlock A", a, un, 0, 0, fcntl.F_OFD_SETLK),
        ("OFD GETLK B 0..10 after unlock", b, wr, 0, 10, fcntl.F_OFD_GETLK),
        ("OFD write lock B 0..100", b, wr, 0, 100, fcntl.F_OFD_SETLK),
    ]:
        t(what, ofd_lock, fd, kind, start, length, cmd)
    t("POSIX lock 300..310 in this process", fcntl.lockf, a, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 300)

    def try_posix(c):
        fd = c.open("open in the child", "f", O_RDWR)
        c("POSIX lock on a locked range conflicts", fcntl.lockf, fd,
          fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 300)
        c("POSIX lock on the free range 400..410", fcntl.lockf, fd,
          fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 400)
        c("POSIX read lock 0..10 conflicts with B's OFD lock", fcntl.lockf, fd,
          fcntl.LOCK_SH | fcntl.LOCK_NB, 10, 0)
        signal.signal(signal.SIGALRM, interrupted)
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        c("blocking F_SETLKW, interrupted by a signal", fcntl.lockf, fd, fcntl.LOCK_EX, 10, 300)
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        c("blocking F_OFD_SETLKW, interrupted by a signal", ofd_lock, fd, fcntl.F_WRLCK, 0, 10,
          fcntl.F_OFD_SETLKW)
        signal.setitimer(signal.ITIMER_REAL, 0)

    t.child("child", try_posix)


def s_lock_wait(t):
    """Blocking lock waits end when the holder lets go, each in its turn."""
    t("write f", put, "f", b"wait")
    kinds = [
        ("flock", lambda fd: fcntl.flock(fd, fcntl.LOCK_EX),
         lambda fd: fcntl.flock(fd, fcntl.LOCK_UN)),
        ("POSIX F_SETLKW", lambda fd: fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0),
         lambda fd: fcntl.lockf(fd, fcntl.LOCK_UN, 10, 0)),
        ("OFD F_OFD_SETLKW", lambda fd: ofd_lock(fd, fcntl.F_WRLCK, 0, 10, fcntl.F_OFD_SETLKW),
         lambda fd: ofd_lock(fd, fcntl.F_UNLCK, 0, 10, fcntl.F_OFD_SETLK)),
    ]
    for what, lock, unlock in kinds:
        def holder(c, lock=lock, unlock=unlock):
            fd = os.open("f", O_RDWR)
            c("take the lock", lock, fd)
            time.sleep(0.3)
            start = time.monotonic()
            c("let go", unlock, fd)
            c.note("letting go took under a second", time.monotonic() - start < 1)

        def waiter(c, lock=lock):
            time.sleep(0.1)
            fd = os.open("f", O_RDWR)
            # A wake-up that never comes shows as EINTR after 5 s.
            signal.signal(signal.SIGALRM, interrupted)
            signal.alarm(5)
            c("wait for the lock", lock, fd)
            signal.alarm(0)
        t.child(what, holder, waiter)


# ---------------------------------------------------------------------------
# Scenarios: open files whose names change.

def s_unlink_open(t):
    fd = t.open("create f", "f", O_RDWR | O_CREAT)
    t("write", os.write, fd, b"before")
    fd2 = t.open("open f again", "f", O_RDONLY)
    t("unlink f", os.unlink, "f")
    t.stat("stat f", "f")
    t("names", names)
    t("pwrite through the fd", os.pwrite, fd, b"after", 6)
    t("pread through the fd", os.pread, fd, 100, 0)
    t("the second fd sees it", os.pread, fd2, 100, 0)
    t("fstat (nlink 0)", os.fstat, fd)
    t("fstat the second fd", os.fstat, fd2)
    t("ftruncate to 3", os.ftruncate, fd, 3)
    t("fstat", os.fstat, fd)
    t("fchmod 0600", os.fchmod, fd, 0o600)
    t("fsetxattr", os.setxattr, fd, "user.x", b"x")
    t("fgetxattr", os.getxattr, fd, "user.x")
    t("write 1 MiB", os.pwrite, fd, pattern(1 << 20), 0)
    t("read it back", os.pread, fd, 1 << 20, 0)
    t("fsync", os.fsync, fd)
    t("create a new f while the old one is open", put, "f", b"new")
    t("the old fd keeps the old file", os.pread, fd2, 10, 0)
    t("the name gives the new file", get, "f")
    t("fstat the old fd", os.fstat, fd2)
    t.close("close", fd)
    t.close("close the second fd", fd2)
    t("names", names)


def s_removed_cwd(t):
    """A directory removed while it is the cwd: what is left of it."""
    t("mkdir gone", os.mkdir, "gone")
    t("setxattr gone", os.setxattr, "gone", "user.x", b"x")
    here = os.open(".", O_RDONLY | O_DIRECTORY)
    try:
        t("cd gone", os.chdir, "gone")
        t("rmdir ../gone", os.rmdir, "../gone")
        t.stat("stat .", ".")
        t("list .", names)
        t.open("open . O_DIRECTORY", ".", O_RDONLY | O_DIRECTORY)
        t("getxattr .", os.getxattr, ".", "user.x")
        t("chmod . 0700", os.chmod, ".", 0o700)
        t.stat("stat . again", ".")
        t("create f in it", put, "f", b"x")
        t("mkdir d in it", os.mkdir, "d")
        t("lookup .. from it", names, "..")
    finally:
        os.fchdir(here)
        os.close(here)
    t("names", names)


def s_chmod_open(t):
    fd = t.open("create f", "f", O_RDWR | O_CREAT)
    t("write", os.write, fd, b"data")
    rfd = t.open("open f O_RDONLY", "f", O_RDONLY)
    t("chmod 000", os.chmod, "f", 0)
    t("pwrite through the open fd", os.pwrite, fd, b"more", 4)
    t("pread through the open fd", os.pread, fd, 100, 0)
    t("read through the O_RDONLY fd", os.read, rfd, 100)
    t("fstat", os.fstat, fd)
    t("ftruncate through the open fd", os.ftruncate, fd, 6)
    t("fsync", os.fsync, fd)
    t.open("root opens it again", "f", O_RDWR)
    t("fchmod 0644", os.fchmod, fd, 0o644)
    t("content", get, "f")


def s_rename_open(t):
    t("write a", put, "a", b"new data")
    t("write b", put, "b", b"old data")
    fd = t.open("open b", "b", O_RDONLY)
    wfd = t.open("open b for writing", "b", O_WRONLY)
    t("rename a over b", os.rename, "a", "b")
    t("the old fd reads the old data", os.pread, fd, 100, 0)
    t("fstat the old fd", os.fstat, fd)
    t("write through the old writable fd", os.pwrite, wfd, b"OLD", 0)
    t("the old fd sees it", os.pread, fd, 100, 0)
    t("the name gives the new data", get, "b")
    t("names", names)
    t("write c", put, "c", b"c data")
    cfd = t.open("open c", "c", O_RDWR)
    t("rename c -> e while open", os.rename, "c", "e")
    t("write through the fd after the rename", os.pwrite, cfd, b"C", 0)
    t("read e by name", get, "e")
    t("fstat", os.fstat, cfd)


def s_tmpfile(t):
    fd = t.open("O_TMPFILE in .", ".", O_RDWR | os.O_TMPFILE, 0o600)
    t("write", os.write, fd, b"anonymous")
    t("pread", os.pread, fd, 100, 0)
    t("fstat (nlink 0)", os.fstat, fd)
    t("names (none)", names)
    t("name it through /proc/self/fd", linkat, f"/proc/self/fd/{fd}", "named",
      AT_SYMLINK_FOLLOW)
    t("fstat (nlink 1)", os.fstat, fd)
    t("read it by name", get, "named")
    t("name it again with AT_EMPTY_PATH", linkat, "", "again", AT_EMPTY_PATH, old_fd=fd)
    t("fstat (nlink 2)", os.fstat, fd)
    x = t.open("O_TMPFILE|O_EXCL", ".", O_RDWR | os.O_TMPFILE | O_EXCL, 0o600)
    t("an O_EXCL one cannot be named", linkat, f"/proc/self/fd/{x}", "never",
      AT_SYMLINK_FOLLOW)
    t.open("O_TMPFILE O_RDONLY", ".", O_RDONLY | os.O_TMPFILE, 0o600)
    t("write f", put, "f", b"")
    t.open("O_TMPFILE on a file", "f", O_RDWR | os.O_TMPFILE, 0o600)
    t("names", names)


def s_parallel_io(t):
    """Several processes write and read disjoint parts of one file at once."""
    t("create f", put, "f", b"")
    chunk = 256 << 10

    def worker(k):
        def body(c):
            fd = os.open("f", O_RDWR)
            data = pattern(chunk, seed=k)
            for rnd in range(4):
                os.pwrite(fd, data, (rnd * 4 + k) * chunk)
            good = all(os.pread(fd, chunk, (rnd * 4 + k) * chunk) == data
                       for rnd in range(4))
            c.note("read back its own writes", good)
        return body

    t.child("writer", *(worker(k) for k in range(4)))
    t("size", lambda: os.stat("f").st_size)
    t("content", get, "f")


def s_mmap(t):
    fd = t.open("create f", "f", O_RDWR | O_CREAT)
    t("ftruncate to 3 pages", os.ftruncate, fd, 3 * PAGE)
    m = t("mmap MAP_SHARED read/write", mmap.mmap, fd, 3 * PAGE, mmap.MAP_SHARED,
          mmap.PROT_READ | mmap.PROT_WRITE, show=lambda _: "mapped")
    t("store through the map", m.__setitem__, slice(100, 111), b"hello world")
    t("store across a page boundary", m.__setitem__, slice(PAGE - 3, PAGE + 3), b"ABCDEF")
    t("msync", m.flush)
    t("read() sees the stores", os.pread, fd, 20, 95)
    t("read() sees the boundary store", os.pread, fd, 10, PAGE - 5)
    t("pwrite", os.pwrite, fd, b"from write", 2 * PAGE)
    t("the map sees the pwrite", lambda: m[2 * PAGE:2 * PAGE + 10])
    t("munmap", m.close)
    t.close("close", fd)
    t("content by name", get, "f")
    fd = t.open("open f O_RDWR", "f", O_RDWR)
    p = t("mmap MAP_PRIVATE", mmap.mmap, fd, PAGE, mmap.MAP_PRIVATE,
          mmap.PROT_READ | mmap.PROT_WRITE, show=lambda _: "mapped")
    t("the private map reads the file", lambda: p[100:111])
    t("store through the private map", p.__setitem__, slice(0, 5), b"PRIVA")
    t("msync the private map", p.flush)
    t("munmap", p.close)
    t("the file does not see private stores", os.pread, fd, 10, 0)
    r = t.open("open f O_RDONLY", "f", O_RDONLY)
    t("mmap MAP_SHARED writable on an O_RDONLY fd", mmap.mmap, r, PAGE, mmap.MAP_SHARED,
      mmap.PROT_READ | mmap.PROT_WRITE, show=lambda _: "mapped")
    t("extend the file by a page with ftruncate", os.ftruncate, fd, 4 * PAGE)
    m = t("mmap the new page", mmap.mmap, fd, PAGE, mmap.MAP_SHARED,
          mmap.PROT_READ | mmap.PROT_WRITE, offset=3 * PAGE, show=lambda _: "mapped")
    t("store", m.__setitem__, slice(0, 4), b"LAST")
    t("munmap without msync", m.close)
    t("fsync", os.fsync, fd)
    t("content", get, "f")


def run_program(argv):
    """Runs argv and returns its exit status; an exec that fails raises
    OSError with the child's errno (told through a close-on-exec pipe)."""
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(rfd)
            os.execv(argv[0], argv)
        except OSError as e:
            os.write(wfd, str(e.errno).encode())
        finally:
            os._exit(127)
    os.close(wfd)
    told = os.read(rfd, 16)
    os.close(rfd)
    _, status = os.waitpid(pid, 0)
    if told:
        raise OSError(int(told), os.strerror(int(told)))
    return os.waitstatus_to_exitcode(status)


def open_close(path, flags):
    os.close(os.open(path, flags))


def s_exec(t):
    with open("/bin/true", "rb") as f:
        true = f.read()
    t("copy true", put, "prog", true, 0o755)
    t("exec it", run_program, ["./prog"])
    t("a script", put, "script", b"#!/bin/sh\nexit 7\n", 0o755)
    t("exec the script", run_program, ["./script"])
    t("chmod the program 644", os.chmod, "prog", 0o644)
    t("exec it without x", run_program, ["./prog"])
    t("chmod back 755", os.chmod, "prog", 0o755)
    # While it runs, the program may not be opened for writing.
    rfd, wfd = os.pipe()
    with open("/bin/cat", "rb") as f:
        t("copy cat", put, "cat", f.read(), 0o755)
    pid = os.fork()
    if pid == 0:
        os.close(wfd)
        try:
            os.dup2(rfd, 0)
            os.execv("./cat", ["./cat"])
        finally:
            os._exit(127)
    os.close(rfd)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and \
            os.waitpid(pid, os.WNOHANG) == (0, 0) and \
            os.readlink(f"/proc/{pid}/exe").split("/")[-1] != "cat":
        time.sleep(0.01)
    t("open the running program to write", open_close, "cat", O_WRONLY)
    t("open it to read", open_close, "cat", O_RDONLY)
    os.close(wfd)
    t("it ends", lambda: os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    t("open it to write once it ended", open_close, "cat", O_WRONLY)


def s_direct_io(t):
    size = 1 << 20
    wbuf = mmap.mmap(-1, size)
    rbuf = mmap.mmap(-1, size)
    wbuf[:] = pattern(size, 6)
    wview, rview = memoryview(wbuf), memoryview(rbuf)

    def direct_read(fd, length, offset):
        n = os.preadv(fd, [rview[:length]], offset)
        return bytes(rview[:n])

    try:
        fd = t.open("create f O_DIRECT", "f", O_RDWR | O_CREAT | os.O_DIRECT)
        extents = [(0, 4096), (4096, 65536), (1 << 20, 1 << 20), (3 << 20, 8192)]
        for offset, length in extents:
            t(f"O_DIRECT pwrite {length} at {offset}", os.pwrite, fd, wview[:length], offset)
        t("fstat", os.fstat, fd)
        for offset, length in extents:
            t(f"O_DIRECT pread {length} at {offset}", direct_read, fd, length, offset)
        t("O_DIRECT pread across EOF", direct_read, fd, 16384, (3 << 20) + 4096)
        t("O_DIRECT pread at EOF", direct_read, fd, 4096, (3 << 20) + 8192)
        t("O_DIRECT pread of a hole", direct_read, fd, 4096, (2 << 20) + 4096)
        t("buffered read of the whole file", get, "f")
        t("buffered pwrite", put, "g", pattern(65536, 7))
        g = t.open("open g O_DIRECT", "g", O_RDONLY | os.O_DIRECT)
        t("O_DIRECT pread sees buffered data", direct_read, g, 65536, 0)
        b = t.open("open f buffered", "f", O_RDWR)
        t("buffered pread caches the first page", os.pread, b, 4096, 0)
        t("O_DIRECT pwrite over it", os.pwrite, fd, wview[4096:8192], 0)
        t("a buffered pread sees the direct write", os.pread, b, 4096, 0)
    finally:
        wview.release()
        rview.release()
        wbuf.close()
        rbuf.close()


# ---------------------------------------------------------------------------
# Scenarios: directories listed.

def s_readdir(t):
    t("write f", put, "f", b"x")
    t("mkdir d", os.mkdir, "d")
    t("symlink l -> f", os.symlink, "f", "l")
    t("mkfifo p", os.mkfifo, "p")
    t("mknod s", os.mknod, "s", stat.S_IFSOCK | 0o600)
    t("mknod c", os.mknod, "c", stat.S_IFCHR | 0o600, os.makedev(1, 3))

    def kinds(path):
        out = []
        for e in sorted(os.scandir(path), key=lambda e: e.name):
            out.append(e.name + ("/" if e.is_dir(follow_symlinks=False) else
                                 "@" if e.is_symlink() else
                                 "" if e.is_file(follow_symlinks=False) else "|"))
        return out

    def inodes_match(path):
        with os.scandir(path) as it:
            return all(e.inode() == e.stat(follow_symlinks=False).st_ino for e in it)

    t("entries with their types", kinds, ".")
    t("d_ino equals st_ino", inodes_match, ".")
    t("list an empty directory", names, "d")
    t("list a file", names, "f")
    t("list a missing directory", names, "missing")
    t("mkdir big", os.mkdir, "big")
    want = [f"{i:04d}-" + "x" * (i % 200) for i in range(1000)]
    for i, name in enumerate(want):
        fd = os.open("big/" + name, O_WRONLY | O_CREAT, 0o644)
        if i % 100 == 0:
            os.write(fd, name.encode())
        os.close(fd)
    t.note("created 1000 entries", len(want))
    t("list big", names, "big")
    t("the listing is exactly the names created", lambda: names("big") == want)
    t("d_ino equals st_ino in big", inodes_match, "big")
    for name in want[::3]:
        os.unlink("big/" + name)
    t("list big after removing every third", names, "big")
    dfd = t.open("open big", "big", O_RDONLY | O_DIRECTORY)
    t("list through the fd", lambda: sorted(os.listdir(dfd)))
    t("create one more", put, "big/zzzz", b"")
    t("list through the fd again (rewinds)", lambda: sorted(os.listdir(dfd)))
    t("stat big", os.stat, "big")


# ---------------------------------------------------------------------------
# Scenarios: other users (need a mount with allow_other).

def s_nonroot(t):
    setup = [
        ("write secret 0600", lambda: put("secret", b"secret", 0o600)),
        ("write public 0644", lambda: put("public", b"public", 0o644)),
        ("write world 0666", lambda: (put("world", b"world"), os.chmod("world", 0o666))),
        ("write suid 04777", lambda: (put("suid", b"suid"), os.chmod("suid", 0o4777))),
        ("write sgid 02777", lambda: (put("sgid", b"sgid"), os.chmod("sgid", 0o2777))),
        ("write suid2 04777", lambda: (put("suid2", b"suid2"), os.chmod("suid2", 0o4777))),
        ("write sgid2 02777", lambda: (put("sgid2", b"sgid2"), os.chmod("sgid2", 0o2777))),
        ("write mine, owned by nobody", lambda: (put("mine", b"mine", 0o644),
                                                os.chown("mine", NOBODY, NOBODY))),
        ("write setid 06777", lambda: (put("setid", b"setid"), os.chmod("setid", 0o6777))),
        ("write wonly 0602", lambda: (put("wonly", b"wonly"), os.chmod("wonly", 0o602))),
        ("write mysetid 06775, owned by nobody",
         lambda: (put("mysetid", b"m"), os.chown("mysetid", NOBODY, NOBODY),
                  os.chmod("mysetid", 0o6775))),
        ("write old 0666, times 1000", lambda: (put("old", b"old"), os.chmod("old", 0o666),
                                                os.utime("old", (1000, 1000)))),
        ("mkdir rootdir 0755", lambda: os.mkdir("rootdir", 0o755)),
        ("write rootdir/z", lambda: put("rootdir/z", b"z")),
        ("mkdir private 0700", lambda: os.mkdir("private", 0o700)),
        ("write private/x", lambda: put("private/x", b"x")),
        ("mkdir open 0777", lambda: (os.mkdir("open"), os.chmod("open", 0o777))),
        ("mkdir setgid 02777 group 1234", lambda: (os.mkdir("setgid"),
                                                  os.chown("setgid", 0, 1234),
                                                  os.chmod("setgid", 0o2777))),
        ("mkdir sticky 01777", lambda: (os.mkdir("sticky"), os.chmod("sticky", 0o1777))),
        ("write sticky/rootfile 0666", lambda: (put("sticky/rootfile", b"r"),
                                               os.chmod("sticky/rootfile", 0o666))),
    ]
    for what, fn in setup:
        t(what, fn, show=lambda _: "ok")

    def body(c):
        c.stat("stat the scenario directory", ".")
        for what, path, flags in [
            ("read a 0600 root file", "secret", O_RDONLY),
            ("write a 0644 root file", "public", O_WRONLY),
            ("create in a 0755 root directory", "rootdir/x", O_WRONLY | O_CREAT),
            ("open in a 0700 root directory", "private/x", O_RDONLY),
            ("O_TRUNC a 0644 root file", "public", O_RDONLY | O_TRUNC),
        ]:
            c.open(what, path, flags)
        fd = c.open("read a 0644 root file", "public", O_RDONLY)
        c("read it", os.read, fd, 100)
        for what, fn, args in [
            ("mkdir in a 0755 root directory", os.mkdir, ("rootdir/y",)),
            ("unlink in a 0755 root directory", os.unlink, ("rootdir/z",)),
            ("rename in a 0755 root directory", os.rename, ("rootdir/z", "rootdir/w")),
            ("list a 0700 root directory", os.listdir, ("private",)),
            ("stat in a 0700 root directory", os.stat, ("private/x",)),
            ("access W_OK on a 0644 root file", access, ("public", os.W_OK)),
            ("access R_OK on a 0644 root file", access, ("public", os.R_OK)),
            ("access R_OK on a 0600 root file", access, ("secret", os.R_OK)),
            ("access X_OK on a 0700 root directory", access, ("private", os.X_OK)),
            ("chmod a root file", os.chmod, ("public", 0o777)),
            ("chown a root file", os.chown, ("public", NOBODY, NOBODY)),
            ("truncate a 0644 root file", os.truncate, ("public", 0)),
            ("truncate a 0666 root file", os.truncate, ("world", 3)),
            ("utime(None) on a 0666 root file", os.utime, ("world",)),
            ("utime(None) on a 0644 root file", os.utime, ("public",)),
            ("setxattr on a 0644 root file", os.setxattr, ("public", "user.x", b"x")),
            ("setxattr on a 0666 root file", os.setxattr, ("world", "user.x", b"x")),
            ("link a 0600 root file (protected_hardlinks)", os.link, ("secret", "open/l")),
            ("unlink a root file in a sticky directory", os.unlink, ("sticky/rootfile",)),
            ("rename a root file in a sticky directory", os.rename,
             ("sticky/rootfile", "sticky/moved")),
            ("mkdir in a 0777 directory", os.mkdir, ("open/mydir",)),
            ("symlink in a 0777 directory", os.symlink, ("target", "open/mylink")),
            ("mkfifo in a 0777 directory", os.mkfifo, ("open/myfifo",)),
            ("mkdir in a setgid directory", os.mkdir, ("setgid/dir",)),
            ("create in a sticky directory", put, ("sticky/mine", b"m")),
            ("chown my file to root", os.chown, ("mine", 0, -1)),
            ("chgrp my file to a group I am not in", os.chown, ("mine", -1, 1234)),
            ("chgrp my file to my own group", os.chown, ("mine", -1, NOBODY)),
            ("chmod my file 0600", os.chmod, ("mine", 0o600)),
            ("chmod my file 02755 (sgid bit of a group I am in)", os.chmod, ("mine", 0o2755)),
            ("utime(None) on my file", os.utime, ("mine",)),
            ("setxattr on my file", os.setxattr, ("mine", "user.mine", b"yes")),
            ("chattr +d a root file", set_flags, ("public", FS_NODUMP_FL)),
            ("chattr +d my file", set_flags, ("mine", FS_NODUMP_FL)),
            ("chattr +i my file", set_flags, ("mine", FS_IMMUTABLE_FL)),
            ("lsattr my file", get_flags, ("mine",)),
        ]:
            c(what, fn, *args)
        c("utime exact ns on a 0666 root file", os.utime, "world", ns=(1, 2))
        c("utime exact ns on a 0644 root file", os.utime, "public", ns=(1, 2))
        now = time.time_ns()
        c("utime explicit now on a 0666 root file", os.utime, "old", ns=(now, now))
        c("touch -a a 0666 root file (atime now, mtime omitted)", utimensat, "old",
          UTIME_NOW, UTIME_OMIT)
        c("chmod a 06777 root file 0777 (only its set-id bits)", os.chmod, "setid", 0o777)
        c("chown -1 -1 my 06775 file (drops its set-id bits)", os.chown, "mysetid", -1, -1)
        fd = c.open("open a 0602 root file O_WRONLY", "wonly", O_WRONLY)
        c("pwrite into it", os.pwrite, fd, b"W", 1)
        c.open("open it O_RDWR", "wonly", O_RDWR)
        fd = c.open("open it O_WRONLY|O_APPEND", "wonly", O_WRONLY | O_APPEND)
        c("append to it", os.write, fd, b"+A")
        c("fstat it", os.fstat, fd)
        c("utime exact ns on my file", os.utime, "mine", ns=(3, 4))
        fd = c.open("create in a 0777 directory", "open/created", O_RDWR | O_CREAT | O_EXCL, 0o640)
        c("write it", os.write, fd, b"by nobody")
        c("fchmod it 000 while open", os.fchmod, fd, 0)
        c("write through the fd after chmod 000", os.pwrite, fd, b"still", 0)
        c("read through the fd after chmod 000", os.pread, fd, 100, 0)
        c.open("open it again by name", "open/created", O_RDONLY)
        c("fchmod it back to 0640", os.fchmod, fd, 0o640)
        c.open("create in a setgid directory", "setgid/file", O_WRONLY | O_CREAT, 0o644)
        c.open("O_TMPFILE in a 0755 root directory", "rootdir", O_RDWR | os.O_TMPFILE, 0o600)
        fd = c.open("O_TMPFILE in a 0777 directory", "open", O_RDWR | os.O_TMPFILE, 0o640)
        c("write it", os.write, fd, b"unnamed")
        c("fstat it (mine, no link)", lambda: (lambda st: (st.st_uid, st.st_gid, st.st_nlink,
                                                            oct(st.st_mode)))(os.fstat(fd)))
        c("name it open/tmpnamed", linkat, f"/proc/self/fd/{fd}", "open/tmpnamed",
          AT_SYMLINK_FOLLOW)
        fd = c.open("O_TMPFILE in a setgid directory", "setgid", O_RDWR | os.O_TMPFILE, 0o640)
        c("name it setgid/tmpnamed", linkat, f"/proc/self/fd/{fd}", "setgid/tmpnamed",
          AT_SYMLINK_FOLLOW)
        c("rewrite a 04777 root file with O_TRUNC (drops the setuid bit)", put, "suid", b"SUID")
        c("rewrite a 02777 root file with O_TRUNC (drops the setgid bit)", put, "sgid", b"SGID")
        for name in ("suid2", "sgid2"):
            fd = c.open(f"open {name} O_WRONLY", name, O_WRONLY)
            c(f"pwrite into {name} (drops the set-id bit)", os.pwrite, fd, b"XY", 0)
            c(f"fsync {name}", os.fsync, fd)
            c(f"close {name}", os.close, fd)
        c.stat("stat my new file", "open/created")
        c.stat("stat my new directory", "open/mydir")
        c.stat("stat my setgid-directory file", "setgid/file")
        c.stat("stat my setgid-directory subdirectory", "setgid/dir")
        c.stat("stat the suid file after my write", "suid")
        c.stat("stat the sgid file after my write", "sgid")
        c("getxattr on my file", os.getxattr, "mine", "user.mine")

    t.child("as nobody", body, user=NOBODY)
    for path in ("open/created", "open/tmpnamed", "setgid/tmpnamed", "open/mydir",
                 "open/mylink", "setgid/file",
                 "setgid/dir", "suid", "sgid", "suid2", "sgid2", "mine", "world", "public",
                 "setid", "mysetid"):
        t.stat(f"lstat {path}", path, follow=False)


# ---------------------------------------------------------------------------
# The list of scenarios: (name, function, needs allow_other).

SCENARIOS = [
    ("open", s_open, False),
    ("read_write", s_read_write, False),
    ("append_fds", s_append_fds, False),
    ("append_procs", s_append_procs, False),
    ("truncate", s_truncate, False),
    ("sparse_seek", s_sparse_seek, False),
    ("fallocate", s_fallocate, False),
    ("copy_file_range", s_copy_file_range, False),
    ("fsync", s_fsync, False),
    ("statvfs", s_statvfs, False),
    ("syncfs", s_syncfs, False),
    ("unlink", s_unlink, False),
    ("mkdir_rmdir", s_mkdir_rmdir, False),
    ("rename", s_rename, False),
    ("link", s_link, False),
    ("symlink", s_symlink, False),
    ("eloop", s_eloop, False),
    ("names", s_names, False),
    ("path_max", s_path_max, False),
    ("nodes", s_nodes, False),
    ("chmod", s_chmod, False),
    ("chown", s_chown, False),
    ("utime", s_utime, False),
    ("btime", s_btime, False),
    ("access", s_access, False),
    ("xattr", s_xattr, False),
    ("default_acl", s_default_acl, False),
    ("fileattr", s_fileattr, False),
    ("locks", s_locks, False),
    ("lock_wait", s_lock_wait, False),
    ("unlink_open", s_unlink_open, False),
    ("removed_cwd", s_removed_cwd, False),
    ("chmod_open", s_chmod_open, False),
    ("rename_open", s_rename_open, False),
    ("tmpfile", s_tmpfile, False),
    ("parallel_io", s_parallel_io, False),
    ("mmap", s_mmap, False),
    ("exec", s_exec, False),
    ("direct_io", s_direct_io, False),
    ("readdir", s_readdir, False),
    ("nonroot", s_nonroot, True),
]


# ---------------------------------------------------------------------------
# Canonical description of a tree.

def describe(root, inodes=False, times=False):
    """Lines describing everything under ROOT (a path), ROOT itself first.

    The walk goes through directory fds, never through long paths, and
    never opens anything but regular files and directories.  With inodes,
    inode numbers, readdir's d_ino and directory sizes are included; with
    times, modification times.
    """
    out = []
    fd = os.open(root, O_RDONLY | O_DIRECTORY)
    try:
        st = os.fstat(fd)
        out.append(entry_line(".", st, fd, None, inodes, times, {}))
        walk(fd, "", out, {}, inodes, times)
    finally:
        os.close(fd)
    return out


def walk(dfd, prefix, out, links, inodes, times):
    with os.scandir(dfd) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        path = prefix + e.name
        fd = None
        try:
            st = os.stat(e.name, dir_fd=dfd, follow_symlinks=False)
            kind = stat.S_IFMT(st.st_mode)
            if kind in (stat.S_IFREG, stat.S_IFDIR):
                fd = os.open(e.name, O_RDONLY | O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
            line = entry_line(path, st, fd, e, inodes, times, links)
            if kind == stat.S_IFLNK:
                line += " -> " + repr(os.readlink(e.name, dir_fd=dfd))
            out.append(short(line))
            if kind == stat.S_IFDIR:
                walk(fd, path + "/", out, links, inodes, times)
        except OSError as err:
            where = traceback.extract_tb(err.__traceback__)[-1]
            out.append(short(f"{path!r} failed in {where.name}(): {errname(err.errno)}"))
        if fd is not None:
            try:
                os.close(fd)
            except OSError as err:
                out.append(short(f"{path!r} failed in close(): {errname(err.errno)}"))


def entry_line(path, st, fd, dirent, inodes, times, links):
    kind = stat.S_IFMT(st.st_mode)
    fields = [repr(path), fmt_stat(st)]
    if inodes:
        fields.append(f"ino={st.st_ino}")
        if dirent is not None:
            fields.append(f"d_ino={dirent.inode()}")
        if kind == stat.S_IFDIR:
            fields.append(f"size={st.st_size}")
    if times:
        fields.append(f"mtime={st.st_mtime_ns}")
    if kind != stat.S_IFDIR and st.st_nlink > 1:
        key = (st.st_dev, st.st_ino)
        if key in links:
            fields.append(f"same-inode-as={links[key]!r}")
        else:
            links[key] = path
    if kind == stat.S_IFREG:
        fields.append(content_digest(fd, st.st_size))
    if fd is not None:
        for name in sorted(os.listxattr(fd)):
            fields.append(f"xattr {name}={fmt(os.getxattr(fd, name))}")
    return " ".join(fields)


def content_digest(fd, size):
    """A hash of the content; of a file over 64 MiB, its first and last MiB."""
    h = hashlib.sha256()
    if size <= 64 << 20:
        h.update(read_all(fd))
    else:
        h.update(os.pread(fd, 1 << 20, 0))
        h.update(os.pread(fd, 1 << 20, size - (1 << 20)))
    return "sha256:" + h.hexdigest()[:16]


# ---------------------------------------------------------------------------
# Running and comparing.

class Timeout(Exception):
    pass


def on_alarm(signum, frame):
    raise Timeout(f"scenario took over {SCENARIO_TIMEOUT} s")


def run_scenario(base, name, fn):
    """Runs one scenario in BASE/NAME; returns its transcript and tree."""
    path = os.path.join(base, name)
    try:
        os.mkdir(path)
        os.chdir(path)
    except OSError as e:
        return [f"cannot make or enter the scenario directory: {errname(e.errno)}"]
    t = Run()
    signal.alarm(SCENARIO_TIMEOUT)
    try:
        fn(t)
    except Exception as e:
        t.lines.append(aborted(e))
    finally:
        signal.alarm(0)
        t.close_all()
        os.chdir("/")
    t.lines.append("--- tree ---")
    t.lines.extend(tree(path))
    return t.lines


def tree(path, **kwargs):
    """describe(), with a failure to walk the tree at all as a line."""
    try:
        return describe(path, **kwargs)
    except OSError as e:
        where = traceback.extract_tb(e.__traceback__)[-1]
        return [f"tree walk failed in {where.name}(): {errname(e.errno)}"]


def show_diff(a, b, name_a, name_b):
    for line in difflib.unified_diff(a, b, name_a, name_b, lineterm=""):
        print("    " + (line if len(line) <= 300 else line[:300] + "..."))


def reachable_by_others(path):
    path = os.path.abspath(path)
    while True:
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False
        if path == "/":
            return True
        path = os.path.dirname(path)


def compare_trees(args):
    a = describe(args.dirs[0], inodes=args.inodes, times=args.times)
    b = describe(args.dirs[1], inodes=args.inodes, times=args.times)
    if a == b:
        print(f"ok   trees match ({len(a)} entries)")
        return 0
    print("FAIL trees differ")
    show_diff(a, b, args.dirs[0], args.dirs[1])
    return 1


def main():
    p = argparse.ArgumentParser(description="Differential filesystem test.")
    p.add_argument("-k", action="append", default=[], metavar="NAME",
                   help="run only scenarios whose name contains NAME (repeatable)")
    p.add_argument("-x", action="append", default=[], metavar="NAME",
                   help="leave out the scenario called NAME (repeatable)")
    p.add_argument("--allow-other", action="store_true",
                   help="TARGET is mounted with allow_other: run the non-root scenarios")
    p.add_argument("--source", metavar="DIR",
                   help="the source directory behind TARGET, to compare with it")
    p.add_argument("--list", action="store_true", help="list the scenarios")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print each reference transcript too")
    p.add_argument("--compare-trees", action="store_true",
                   help="just describe DIR1 and DIR2 and compare them")
    p.add_argument("--times", action="store_true", help="with --compare-trees: mtimes too")
    p.add_argument("--inodes", action="store_true", help="with --compare-trees: inodes too")
    p.add_argument("dirs", nargs="*", metavar="REFERENCE TARGET")
    args = p.parse_args()
    if args.list:
        for name, _, needs_other in SCENARIOS:
            print(name + (" (needs --allow-other)" if needs_other else ""))
        return 0
    if len(args.dirs) != 2:
        p.error("two directories are needed")
    if args.compare_trees:
        return compare_trees(args)

    os.umask(0o022)
    signal.signal(signal.SIGALRM, on_alarm)
    sys.stdout.reconfigure(line_buffering=True)
    ref, target = (os.path.abspath(d) for d in args.dirs)
    if args.allow_other and not all(map(reachable_by_others, (ref, target))):
        print("warning: REFERENCE or TARGET is not reachable by other users; "
              "the non-root scenarios will fail")
    chosen = [s for s in SCENARIOS if (not args.k or any(k in s[0] for k in args.k))
              and s[0] not in args.x]
    if not chosen:
        print("no scenario matches", " ".join(args.k))
        return 2
    for base in (ref, target):
        taken = [name for name, _, _ in chosen if os.path.lexists(os.path.join(base, name))]
        if taken:
            print(f"{base} already has {', '.join(taken)}: give fresh directories")
            return 2
    passed = failed = skipped = 0
    ran = []
    for name, fn, needs_other in chosen:
        if needs_other and not args.allow_other:
            print(f"skip {name} (needs --allow-other)")
            skipped += 1
            continue
        start = time.monotonic()
        a = run_scenario(ref, name, fn)
        b = run_scenario(target, name, fn)
        ran.append(name)
        took = time.monotonic() - start
        if args.verbose:
            print("\n".join("    " + line for line in a))
        if a == b:
            print(f"ok   {name} ({took:.2f} s)")
            passed += 1
        else:
            print(f"FAIL {name} ({took:.2f} s): reference (-) and target (+) differ")
            show_diff(a, b, os.path.join(ref, name), os.path.join(target, name))
            failed += 1
    if args.source and ran:
        mount, source = [], []
        for name in ran:
            for lines, base in ((mount, target), (source, args.source)):
                lines += [f"{name}: {line}"
                          for line in tree(os.path.join(base, name), inodes=True)]
        if mount == source:
            print(f"ok   mount matches its source ({len(mount)} entries)")
            passed += 1
        else:
            print("FAIL mount (-) and its source (+) differ")
            show_diff(mount, source, target, args.source)
            failed += 1
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
