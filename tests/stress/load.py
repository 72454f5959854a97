#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""load.py - parallel namespace and data load on one directory tree.

  load.py [-p P] [-n N | --seconds S] [-s SEED] [--source SRC]
          [--stall S] [-v] DIR

P worker processes (default 4) work at once in the tree under DIR, each
running its own seeded random sequence of N operations (default 2000),
or operations for S seconds.  The point is collisions: every worker
draws from one small namespace, 17 directories (DIR itself, d0..d7, and
d0..d3 each holding d0 and d1) and 32 names in each (f0..f31), so its
creates, renames, links and unlinks race with everyone else's.  The
operations are create (sometimes O_EXCL or O_TRUNC), pwrite at random
offsets and sizes up to 256 KiB, O_APPEND writes, truncate up and down,
rename within and across directories, renameat2 with RENAME_NOREPLACE
and RENAME_EXCHANGE, link, O_TMPFILE (written, and named with linkat
now and then), symlink, unlink, mkdir, rmdir, chmod, the
user.* xattr calls, fsync, readdir followed by stat, readlink and read
of what it lists, and I/O on files a worker keeps open while others
rename or unlink their names.

Races make some errors legitimate: a name another worker just removed
gives ENOENT, one it just made gives EEXIST, a directory where a file
was expected EISDIR, and so on (EXPECTED below; also EINVAL from a
readlink of what lstat had just called a symlink).  These are counted
and reported, never failures.  Any other errno from a call on a name,
any errno at all from a call on an fd already open (a file cannot
vanish from under its fd), a short write, and any exception that is
not an OSError is a failure: the worker prints at once the operation,
the path, the errno, the line of this file that made the call, and
its seed.  ESTALE is a failure too (through a passthrough it can
only come from the source being changed behind the mount, which this
load never does) and is also counted on its own.  A worker gives up
after MAX_FAILURES failures or at the first ENOTCONN, since after that
every call fails the same way.  With --chaos (the mount's workers are
being killed), EIO is an outcome too: a request that may not run twice
failed with its worker, and the operation may or may not have happened
(a write the kernel split may come back short for the same reason).

Data races make the content of the shared files unknowable, so each
worker also keeps one private file, pK/private, that no one else names.
Everything it writes, appends or truncates there is mirrored in a
bytearray, and the file is read back and compared with it now and then
and at the end; a mismatch is a failure naming the first offset that
differs.  The data written is a slice of a buffer drawn from the
worker's seed, so a run with the same -s and -p writes the same bytes
in the same sequence per worker (the interleaving of workers differs).

The parent forks the workers, shares with them an anonymous mapping in
which each one counts its operations and names the one it is in, and
reads it every 10 s for the progress line of --seconds runs and for the
stall watchdog: a worker whose count has not moved for --stall seconds
(default 120) is reported with the operation and path it is stuck in,
and all workers are killed.  Each worker sends its totals back as JSON
through a pipe when it ends.

After the workers, the parent walks the whole tree through DIR, reading
every file, and, with --source SRC (the directory DIR is a mount of),
walks SRC too and requires the two walks to be identical: for every
entry its type, mode, size, link count, inode number, owner and group,
symlink target, user.* xattrs, and the SHA-256 of every regular file's
content, read through the mount on one side and directly on the other.
With -n 0 the workers do nothing but make their private files empty,
so that load.py -n 0 --source SRC DIR is a comparison of the trees.

The summary gives the operations done per type, the expected errors
per operation and errno, and the rate; -v adds per-worker totals and
progress lines for -n runs too, -vv a line per write, create and
truncate.  The exit status is 0 only if no worker failed and the trees
match, 1 otherwise, 2 for a bad command line.
"""
import argparse
import contextlib
import ctypes
import errno
import hashlib
import json
import mmap
import os
import random
import select
import signal
import stat
import struct
import sys
import time
import traceback

NAMES = [f"f{i}" for i in range(32)]
TOP_DIRS = [f"d{i}" for i in range(8)]
SUB_DIRS = [f"d{i}/d{j}" for i in range(4) for j in range(2)]
DIRS = [""] + TOP_DIRS + SUB_DIRS

KiB = 1024
MAX_WRITE = 256 * KiB
MAX_OFFSET = 768 * KiB
MAX_SIZE = 1024 * KiB
MAX_HELD = 4
MAX_FAILURES = 10
CHECK_EVERY = 100       # private-file operations between read-back checks
PROGRESS_EVERY = 10.0

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
AT_FDCWD = -100
AT_SYMLINK_FOLLOW = 0x400

# The errors a race between workers can make legitimate, by operation.
# A link to a directory gives EPERM, and only a link can meet one that
# way; the private file is no one else's, so no error there is excused.
RACE = {errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR,
        errno.EISDIR, errno.ENODATA, errno.ELOOP}
EXPECTED = {"link": RACE | {errno.EPERM}, "private": set()}

# Operations and their weights: what a worker does most is what a
# filesystem sees most, writes and name changes.
WEIGHTS = {
    "create": 8, "write": 10, "append": 5, "truncate": 5,
    "rename": 6, "rename2": 3, "link": 3, "tmpfile": 2, "symlink": 3, "unlink": 6,
    "mkdir": 2, "rmdir": 2, "chmod": 3, "setxattr": 3, "rmxattr": 1,
    "fsync": 2, "readdir": 4, "stat": 5, "read": 5, "heldio": 5,
    "private": 6,
}
OPS = list(WEIGHTS)

# One slot per worker in the shared mapping: operations done, the index
# of the operation in progress (-1 between operations), and its path.
SLOT = struct.Struct("qq112s")


def errname(e):
    return errno.errorcode.get(e, str(e))


def call(exc):
    """The source line of load.py that raised exc, to name the call."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename == __file__ and f.name not in ("fdcall", "renameat2")]
    return f"in {frames[-1].line!r}" if frames else ""


class FdError(Exception):
    """An OSError from a call on an open fd, which no race excuses."""

    def __init__(self, err):
        super().__init__(err)
        self.err = err


class Failed(Exception):
    """A result no race explains: a short write, or the private file
    differing from its model."""


class Worker:
    """One worker process: its random sequence, its tallies, its held
    fds and its private file with the model of that file's content."""

    def __init__(self, k, seed, args, features, shared):
        self.k = k
        self.seed = seed
        self.args = args
        self.features = features
        self.shared = shared
        self.rng = random.Random(f"{seed}/{k}")
        self.data = memoryview(self.rng.randbytes(MAX_OFFSET + MAX_WRITE))
        self.done = dict.fromkeys(OPS, 0)
        self.expected = {}
        self.failures = 0
        self.estale = 0
        self.stop = False
        self.held = []
        self.private = f"p{k}/private"
        self.model = bytearray()
        self.private_ops = 0
        self.where = ""
        self.modes = [0o600, 0o644, 0o640, 0o700, 0o755, 0o750]
        if os.geteuid() == 0:
            # Root passes permission checks, so modes that would lock
            # anyone else out cost nothing, and set-id bits are allowed.
            self.modes += [0o444, 0o000, 0o4755, 0o2755, 0o1777]

    # -- choosing names ------------------------------------------------

    def name_slot(self):
        return os.path.join(self.rng.choice(DIRS), self.rng.choice(NAMES))

    def dir_slot(self):
        return self.rng.choice(TOP_DIRS + SUB_DIRS)

    def chunk(self):
        """Random data of a size spread evenly over orders of magnitude."""
        size = int(2 ** self.rng.uniform(0, 18))
        start = self.rng.randrange(len(self.data) - size)
        return self.data[start:start + size]

    # -- the run -------------------------------------------------------

    def run(self):
        cum = []
        total = 0
        for op in OPS:
            total += WEIGHTS[op] if self.features.get(op, True) else 0
            cum.append(total)
        end = time.monotonic() + self.args.seconds if self.args.seconds else None
        try:
            fd = os.open(self.private, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
            os.close(fd)
        except OSError as e:
            self.fail("private", self.private, e.errno, "cannot create")
            return
        i = 0
        while not self.stop:
            if end is None and i >= self.args.n:
                break
            if end is not None and time.monotonic() >= end:
                break
            op = self.rng.choices(OPS, cum_weights=cum)[0]
            self.one(op)
            i += 1
        while self.held and not self.stop:
            self.one("heldio", close=True)
        if not self.stop:
            self.one("private", check=True)

    def one(self, op, **kw):
        """Runs one operation and judges its outcome."""
        self.where = ""
        SLOT.pack_into(self.shared, self.k * SLOT.size,
                       sum(self.done.values()), OPS.index(op), b"")
        try:
            getattr(self, "op_" + op)(**kw)
        except FdError as e:
            if self.args.chaos and e.err.errno == errno.EIO:
                self.outcome_unknown(op)
            else:
                self.fail(op, self.where, e.err.errno, "on an open fd, " + call(e))
        except OSError as e:
            if e.errno in EXPECTED.get(op, RACE):
                self.count_expected(op, e.errno)
            elif self.args.chaos and e.errno == errno.EIO:
                self.outcome_unknown(op)
            else:
                self.fail(op, self.where, e.errno, call(e))
        except Failed as e:
            self.fail(op, self.where, None, str(e))
        except Exception:
            self.fail(op, self.where, None, traceback.format_exc().rstrip())
            self.stop = True
        self.done[op] += 1
        SLOT.pack_into(self.shared, self.k * SLOT.size,
                       sum(self.done.values()), -1, b"")

    def outcome_unknown(self, op):
        """With --chaos, EIO says a worker died holding a request that
        may not run twice: the operation may or may not have happened.
        It is counted; for the private file the model takes the file's
        content from here, so later checks still catch a lost write."""
        self.count_expected(op, errno.EIO)
        if op == "private":
            moved = os.path.join(os.path.dirname(self.private), "moved")
            if not os.path.exists(self.private) and os.path.exists(moved):
                os.rename(moved, self.private)
            with open(self.private, "rb") as f:
                self.model = bytearray(f.read())

    def count_expected(self, op, err):
        key = f"{op} {errname(err)}"
        self.expected[key] = self.expected.get(key, 0) + 1

    def at(self, path):
        """Names the path(s) of the operation in progress, for reports."""
        self.where = path
        o = self.k * SLOT.size + 16
        self.shared[o:o + 112] = os.fsencode(path)[:112].ljust(112, b"\0")
        return path

    def fail(self, op, path, err, note=""):
        self.failures += 1
        what = [f"errno {errname(err)} ({os.strerror(err)})"] if err else []
        what += [note] if note else []
        print(f"FAIL worker {self.k} seed {self.seed}: {op} {path or '.'} "
              f"(in {self.args.dir}): {' '.join(what)}", file=sys.stderr, flush=True)
        if err == errno.ESTALE:
            self.estale += 1
        if err == errno.ENOTCONN or self.failures >= MAX_FAILURES:
            self.stop = True

    def trace(self, msg):
        if self.args.verbose >= 2:
            print(f"  w{self.k} {msg}", file=sys.stderr)

    # -- helpers for fds -----------------------------------------------

    def fdcall(self, fn, *a):
        """Calls fn on an open fd: any error there is a failure."""
        try:
            return fn(*a)
        except OSError as e:
            raise FdError(e) from e

    def close(self, fd):
        self.fdcall(os.close, fd)

    @contextlib.contextmanager
    def opened(self, path, flags, mode=0o644):
        """Opens path for a with-block and closes it after.

        An error from the open is the caller's to judge (races excuse
        some); one from the close is a failure.  If the block raised,
        that error is the one reported, and the fd is closed quietly.
        """
        fd = os.open(path, flags, mode)
        try:
            yield fd
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        self.close(fd)

    def write(self, fd, buf, off=None):
        """Writes all of buf, at off or (for O_APPEND) at the end."""
        n = self.fdcall(os.write, fd, buf) if off is None else \
            self.fdcall(os.pwrite, fd, buf, off)
        if n != len(buf):
            if self.args.chaos:
                # The kernel split the write and a later part failed
                # with its worker: POSIX reports what was written.
                raise FdError(OSError(errno.EIO, "short write"))
            raise Failed(f"short write: {n} of {len(buf)} bytes at {off}")

    def keep_or_close(self, fd):
        """Keeps a read-write fd for heldio now and then, else closes it."""
        if len(self.held) < MAX_HELD and self.rng.random() < 0.15:
            self.held.append((fd, self.where))
        else:
            self.close(fd)

    # -- operations on shared names ----------------------------------

    def op_create(self):
        path = self.at(self.name_slot())
        flags = os.O_CREAT | os.O_RDWR
        r = self.rng.random()
        if r < 0.3:
            flags |= os.O_EXCL
        elif r < 0.5:
            flags |= os.O_TRUNC
        self.trace(f"create {path} {flags:#o}")
        fd = os.open(path, flags, self.rng.choice(self.modes))
        if self.rng.random() < 0.5:
            try:
                self.write(fd, self.chunk())
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
        self.keep_or_close(fd)

    def op_write(self):
        path = self.at(self.name_slot())
        with self.opened(path, self.rng.choice([os.O_WRONLY, os.O_RDWR])) as fd:
            # Writes at 0, anywhere, or just past the end (leaving a
            # small hole) each take a different path through a cache.
            size = self.fdcall(os.fstat, fd).st_size
            off = min(MAX_OFFSET, self.rng.choice([0, self.rng.randrange(MAX_OFFSET),
                                                   size + self.rng.randrange(8 * KiB)]))
            buf = self.chunk()
            self.trace(f"pwrite {path} {off} {len(buf)}")
            self.write(fd, buf, off)

    def op_append(self):
        path = self.at(self.name_slot())
        flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT if self.rng.random() < 0.3 else 0)
        with self.opened(path, flags) as fd:
            if self.fdcall(os.fstat, fd).st_size < MAX_SIZE:
                self.write(fd, self.chunk())

    def op_truncate(self):
        path = self.at(self.name_slot())
        size = self.rng.choice([0, self.rng.randrange(4 * KiB),
                                self.rng.randrange(MAX_SIZE)])
        self.trace(f"truncate {path} {size}")
        os.truncate(path, size)

    def op_rename(self):
        src = self.name_slot()
        if self.rng.random() < 0.5:
            dst = os.path.join(os.path.dirname(src), self.rng.choice(NAMES))
        else:
            dst = self.name_slot()
        self.at(f"{src} -> {dst}")
        os.rename(src, dst)

    def op_rename2(self):
        src, dst = self.name_slot(), self.name_slot()
        flags = self.rng.choice([RENAME_NOREPLACE, RENAME_EXCHANGE])
        self.at(f"{src} -> {dst} ({'exchange' if flags == RENAME_EXCHANGE else 'noreplace'})")
        renameat2(src, dst, flags)

    def op_link(self):
        src, dst = self.name_slot(), self.name_slot()
        follow = self.rng.random() < 0.5
        self.at(f"{src} -> {dst}")
        os.link(src, dst, follow_symlinks=follow)

    def op_tmpfile(self):
        # An unnamed file, written, and named now and then (linkat
        # through /proc follows to it), in a directory others may be
        # removing; O_EXCL ones can never be named.
        d = os.path.dirname(self.name_slot()) or "."
        excl = self.rng.random() < 0.2
        self.at(f"O_TMPFILE in {d}")
        fd = os.open(d, os.O_TMPFILE | os.O_RDWR | (os.O_EXCL if excl else 0),
                     self.rng.choice(self.modes))
        try:
            if self.rng.random() < 0.7:
                self.write(fd, self.chunk())
            if not excl and self.rng.random() < 0.5:
                linkat(f"/proc/self/fd/{fd}", self.at(self.name_slot()))
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        self.keep_or_close(fd)

    def op_symlink(self):
        # Mostly a sibling name, so that chains and loops form; now and
        # then one through a directory that only some directories hold,
        # or one that is never made.  Never "..", which from DIR itself
        # would lead out of the tree (and out of a mount).
        target = self.rng.choice([self.rng.choice(NAMES)] * 8 + ["d0/f1", "none", "."])
        path = self.at(self.name_slot())
        os.symlink(target, path)

    def op_unlink(self):
        os.unlink(self.at(self.name_slot()))

    def op_mkdir(self):
        path = self.dir_slot() if self.rng.random() < 0.4 else self.name_slot()
        os.mkdir(self.at(path), self.rng.choice([0o755, 0o700, 0o775]))

    def op_rmdir(self):
        path = self.dir_slot() if self.rng.random() < 0.3 else self.name_slot()
        os.rmdir(self.at(path))

    def op_chmod(self):
        path = self.at(self.name_slot() if self.rng.random() < 0.9 else self.dir_slot())
        mode = self.rng.choice(self.modes)
        if os.geteuid() != 0:
            # The owner keeps rwx, or a directory would close the tree
            # under it to a caller without root's overrides.
            mode |= 0o700
        os.chmod(path, mode)

    def op_setxattr(self):
        path = self.at(self.name_slot())
        name = f"user.x{self.rng.randrange(4)}"
        value = bytes(self.chunk()[:self.rng.randrange(1, 64)])
        os.setxattr(path, name, value)

    def op_rmxattr(self):
        path = self.at(self.name_slot())
        os.removexattr(path, f"user.x{self.rng.randrange(4)}")

    def op_fsync(self):
        path = self.at(self.name_slot())
        with self.opened(path, self.rng.choice([os.O_RDONLY, os.O_WRONLY])) as fd:
            self.fdcall(self.rng.choice([os.fsync, os.fdatasync]), fd)

    def op_readdir(self):
        d = self.rng.choice(DIRS)
        self.at(d or ".")
        names = os.listdir(d or ".")
        for name in self.rng.sample(names, min(len(names), 3)):
            path = self.at(os.path.join(d, name))
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                try:
                    os.readlink(path)
                except OSError as e:
                    # Another worker may have renamed a file over the
                    # symlink since the lstat; readlink says EINVAL then.
                    if e.errno != errno.EINVAL:
                        raise
                    self.count_expected("readdir", e.errno)
            elif stat.S_ISREG(st.st_mode):
                self.read_all(path)

    def op_stat(self):
        path = self.at(self.name_slot())
        st = os.stat(path, follow_symlinks=self.rng.random() < 0.5)
        if not stat.S_ISLNK(st.st_mode):
            for name in os.listxattr(path):
                if name.startswith("user."):
                    os.getxattr(path, name)

    def op_read(self):
        self.read_all(self.at(self.name_slot()))

    def read_all(self, path):
        """Reads path to its end, unless it turns out not to be a file."""
        with self.opened(path, os.O_RDONLY) as fd:
            if stat.S_ISREG(self.fdcall(os.fstat, fd).st_mode):
                while self.fdcall(os.read, fd, 128 * KiB):
                    pass

    def op_heldio(self, close=False):
        """I/O on a file kept open, whose name others may have changed."""
        if not self.held:
            return
        i = self.rng.randrange(len(self.held))
        fd, path = self.held[i]
        self.at(f"{path} (held fd)")
        r = self.rng.random()
        if r < 0.4:
            self.write(fd, self.chunk(), self.rng.randrange(MAX_OFFSET))
        elif r < 0.6:
            self.fdcall(os.pread, fd, MAX_WRITE, self.rng.randrange(MAX_OFFSET))
        elif r < 0.75:
            self.fdcall(os.ftruncate, fd, self.rng.randrange(MAX_SIZE))
        elif r < 0.85:
            self.fdcall(os.fsync, fd)
        else:
            self.fdcall(os.fstat, fd)
        if close or self.rng.random() < 0.3:
            del self.held[i]
            self.close(fd)

    # -- the private file ----------------------------------------------

    def op_private(self, check=False):
        path = self.at(self.private)
        self.private_ops += 1
        if check or self.private_ops % CHECK_EVERY == 0:
            self.check_private()
            return
        r = self.rng.random()
        if r < 0.45:
            buf = self.chunk()
            off = self.rng.randrange(MAX_OFFSET)
            with self.opened(path, self.rng.choice([os.O_WRONLY, os.O_RDWR])) as fd:
                self.write(fd, buf, off)
                if self.rng.random() < 0.1:
                    self.fdcall(os.fsync, fd)
            if off > len(self.model):
                self.model.extend(bytes(off - len(self.model)))
            self.model[off:off + len(buf)] = buf
        elif r < 0.6:
            if len(self.model) < MAX_SIZE:
                buf = self.chunk()
                with self.opened(path, os.O_WRONLY | os.O_APPEND) as fd:
                    self.write(fd, buf)
                self.model.extend(buf)
        elif r < 0.8:
            size = self.rng.randrange(MAX_SIZE)
            if self.rng.random() < 0.5:
                os.truncate(path, size)
            else:
                with self.opened(path, os.O_RDWR) as fd:
                    self.fdcall(os.ftruncate, fd, size)
            if size < len(self.model):
                del self.model[size:]
            else:
                self.model.extend(bytes(size - len(self.model)))
        elif r < 0.9:
            # A rename away and back must leave the content alone.
            tmp = os.path.join(os.path.dirname(path), "moved")
            os.rename(path, tmp)
            os.rename(tmp, path)
        else:
            self.check_private()

    def check_private(self):
        """Reads the private file back; Failed names where it differs."""
        chunks = []
        with self.opened(self.private, os.O_RDONLY) as fd:
            while b := self.fdcall(os.read, fd, 256 * KiB):
                chunks.append(b)
            size = self.fdcall(os.fstat, fd).st_size
        got = b"".join(chunks)
        want = self.model
        if got == want and size == len(want):
            return
        # The model follows the file from here, so that a later check
        # reports a new difference rather than this one again.
        self.model = bytearray(got)
        n = min(len(got), len(want))
        first = next((i for i in range(n) if got[i] != want[i]), n)
        raise Failed(f"content differs from the model at offset {first} "
                     f"(read {len(got)} bytes, st_size {size}, model {len(want)} bytes; "
                     f"read {got[first:first + 8].hex() or '-'}, "
                     f"expected {bytes(want[first:first + 8]).hex() or '-'})")

    def result(self):
        return {"done": self.done, "expected": self.expected,
                "failures": self.failures, "estale": self.estale}


_libc = ctypes.CDLL(None, use_errno=True)


def linkat(src, dst):
    """linkat(2) following src, a /proc/self/fd link (os.link would not)."""
    if _libc.linkat(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst),
                    AT_SYMLINK_FOLLOW) < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), src, None, dst)


def renameat2(src, dst, flags):
    if _libc.renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD,
                       os.fsencode(dst), ctypes.c_uint(flags)) < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), src, None, dst)


# -- the parent ----------------------------------------------------------


def probe():
    """Which optional calls the filesystem in the cwd supports."""
    features = {}
    a, b = ".load-probe-a", ".load-probe-b"
    for p in (a, b):
        open(p, "w").close()
    try:
        try:
            os.setxattr(a, "user.load-probe", b"1")
        except OSError as e:
            if e.errno != errno.EOPNOTSUPP:
                raise
            print("xattrs: user.* not supported here (EOPNOTSUPP); setxattr skipped")
            features["setxattr"] = features["rmxattr"] = False
        try:
            renameat2(a, b, RENAME_EXCHANGE)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            print("renameat2: flags not supported here (EINVAL); rename2 skipped")
            features["rename2"] = False
    finally:
        for p in (a, b):
            os.unlink(p)
    return features


def prepare(nworkers):
    for d in TOP_DIRS + SUB_DIRS + [f"p{k}" for k in range(nworkers)]:
        os.makedirs(d, exist_ok=True)


def settle(chaos, fn):
    """fn(), a step of the set-up; with --chaos, again while it fails with
    EIO: the workers are being killed already, and a killed worker's
    mkdir or unlink ends that way whether or not it ran.  Each step may
    run twice (makedirs with exist_ok, the probe's files made anew)."""
    for attempt in range(20):
        try:
            return fn()
        except OSError as e:
            if not chaos or e.errno != errno.EIO or attempt == 19:
                raise
            print(f"set-up: {e}; again (--chaos)", flush=True)


def child(k, seed, args, features, shared, wfd):
    """The forked worker's whole life; it never returns to the caller."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        w = Worker(k, seed, args, features, shared)
        w.run()
        os.write(wfd, json.dumps(w.result()).encode())
        code = 1 if w.failures else 0
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def run_workers(args, seed, features):
    """Forks the workers and watches them; returns their results,
    the time they took, and whether all of them ended well."""
    shared = mmap.mmap(-1, SLOT.size * args.p)
    pids, reading, output = {}, {}, {}
    for k in range(args.p):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            child(k, seed, args, features, shared, w)
        os.close(w)
        pids[pid] = k
        reading[r] = k
        output[k] = []

    start = last_progress = time.monotonic()
    counts = [-1] * args.p
    moved = [start] * args.p
    stalled = []
    try:
        while reading and not stalled:
            ready, _, _ = select.select(list(reading), [], [], 1.0)
            for r in ready:
                b = os.read(r, 65536)
                if b:
                    output[reading[r]].append(b)
                else:
                    del reading[r]
                    os.close(r)
            now = time.monotonic()
            slots = [SLOT.unpack_from(shared, k * SLOT.size) for k in range(args.p)]
            for k in reading.values():
                if slots[k][0] != counts[k]:
                    counts[k], moved[k] = slots[k][0], now
                elif now - moved[k] > args.stall:
                    stalled.append(k)
            if (args.seconds or args.verbose) and now - last_progress >= PROGRESS_EVERY:
                last_progress = now
                total = sum(slot[0] for slot in slots)
                print(f"progress: {now - start:.0f} s, {total} ops, "
                      f"{total / (now - start):.0f} ops/s", flush=True)
        for k in stalled:
            _, op, path = slots[k]
            op = OPS[op] if op >= 0 else "(between operations)"
            path = os.fsdecode(path.rstrip(b"\0"))
            print(f"FAIL worker {k} seed {seed}: no progress for {args.stall:g} s, "
                  f"in {op} {path}", file=sys.stderr)
    finally:
        # A hung worker, or an interrupted parent, leaves nothing to wait
        # for; only the processes forked here are ended.
        if stalled or sys.exc_info()[0] is not None:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    elapsed = time.monotonic() - start

    results, ok = [], not stalled
    for pid, k in pids.items():
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        try:
            results.append(json.loads(b"".join(output[k])))
        except ValueError:
            if k not in stalled:
                print(f"FAIL worker {k} seed {seed}: ended with status {code} "
                      "and no results", file=sys.stderr)
            ok = False
            continue
        ok = ok and code == 0
    return results, elapsed, ok


def summarize(results, elapsed, verbose):
    done, expected = {}, {}
    failures = estale = 0
    for k, res in enumerate(results):
        for op, n in res["done"].items():
            done[op] = done.get(op, 0) + n
        for key, n in res["expected"].items():
            expected[key] = expected.get(key, 0) + n
        failures += res["failures"]
        estale += res["estale"]
        if verbose:
            print(f"worker {k}: {sum(res['done'].values())} ops, "
                  f"{res['failures']} failures")
    total = sum(done.values())
    print(f"ops: {total} in {elapsed:.1f} s, {total / max(elapsed, 1e-9):.0f} ops/s")
    print("  " + ", ".join(f"{op} {n}" for op, n in done.items() if n))
    nexp = sum(expected.values())
    print(f"expected errors: {nexp}")
    line = []
    for key in sorted(expected):
        line.append(f"{key} {expected[key]}")
    for i in range(0, len(line), 6):
        print("  " + ", ".join(line[i:i + 6]))
    print(f"failures: {failures} (ESTALE: {estale})")
    return failures == 0


# -- the trees -------------------------------------------------------------


def describe(root):
    """Maps every path under root (root itself as ".") to what it is.

    An entry that cannot be read is described by the errno that stopped
    it, so that the walk goes on and the difference shows.
    """
    out = {}

    def entry(rel):
        path = os.path.join(root, rel)
        try:
            st = os.lstat(path)
            kind = stat.S_IFMT(st.st_mode)
            d = {"type": stat.filemode(st.st_mode)[0], "mode": oct(stat.S_IMODE(st.st_mode)),
                 "size": st.st_size, "nlink": st.st_nlink, "ino": st.st_ino,
                 "uid": st.st_uid, "gid": st.st_gid}
            if kind == stat.S_IFLNK:
                d["target"] = os.readlink(path)
            else:
                d["xattrs"] = {n: os.getxattr(path, n).hex()
                               for n in sorted(os.listxattr(path)) if n.startswith("user.")}
            if kind == stat.S_IFREG:
                h = hashlib.sha256()
                with open(path, "rb", buffering=0) as f:
                    while b := f.read(1 << 20):
                        h.update(b)
                d["sha256"] = h.hexdigest()[:16]
            out[rel] = d
            if kind == stat.S_IFDIR:
                for name in sorted(os.listdir(path)):
                    entry(os.path.normpath(os.path.join(rel, name)))
        except OSError as e:
            out[rel] = {"error": errname(e.errno)}

    entry(".")
    return out


def compare(mnt, src):
    """Prints every difference between the trees; True if there is none."""
    a, b = describe(mnt), describe(src)
    diffs = 0
    for rel in sorted(a.keys() | b.keys()):
        if rel not in a or rel not in b:
            where = "source" if rel in b else "mount"
            print(f"DIFF {rel}: only in the {where}")
            diffs += 1
            continue
        for field in sorted(a[rel].keys() | b[rel].keys()):
            va, vb = a[rel].get(field), b[rel].get(field)
            if va != vb:
                print(f"DIFF {rel}: {field} {va} through the mount, {vb} in the source")
                diffs += 1
    n = len(a.keys() & b.keys())
    print(f"compared {n} entries with the source: {diffs} differences")
    return diffs == 0


def main():
    p = argparse.ArgumentParser(description="Parallel namespace and data load.")
    p.add_argument("-p", type=int, default=4, help="worker processes (default 4)")
    p.add_argument("-n", type=int, default=2000, help="operations per worker (default 2000)")
    p.add_argument("--seconds", type=float, help="run for S seconds instead of -n operations")
    p.add_argument("-s", "--seed", type=int, help="seed (default: from the clock)")
    p.add_argument("--source", help="the directory DIR is a mount of; the trees must match")
    p.add_argument("--stall", type=float, default=120,
                   help="seconds a worker may make no progress (default 120)")
    p.add_argument("--chaos", action="store_true",
                   help="workers of the mount are being killed: EIO is an outcome, not a failure")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="per-worker summaries and progress; twice, every write-like op")
    p.add_argument("dir")
    args = p.parse_args()
    if args.p < 1 or args.n < 0:
        p.error("-p must be at least 1 and -n at least 0")
    args.dir = os.path.abspath(args.dir)
    if not os.path.isdir(args.dir):
        p.error(f"{args.dir} is not a directory")
    if args.source:
        args.source = os.path.abspath(args.source)
    seed = args.seed if args.seed is not None else int(time.time() * 1000) % 1000000007
    length = f"{args.seconds:g} s" if args.seconds else f"{args.n} ops each"
    print(f"load.py: {args.p} workers, {length}, seed {seed}, in {args.dir}", flush=True)

    os.chdir(args.dir)
    features = settle(args.chaos, probe)
    settle(args.chaos, lambda: prepare(args.p))
    try:
        results, elapsed, ok = run_workers(args, seed, features)
    except KeyboardInterrupt:
        print(f"interrupted; seed {seed}", file=sys.stderr)
        return 1
    ok = summarize(results, elapsed, args.verbose) and ok

    os.chdir("/")
    t = time.monotonic()
    if args.source:
        ok = compare(args.dir, args.source) and ok
    else:
        tree = describe(args.dir)
        bad = [rel for rel, d in tree.items() if "error" in d]
        for rel in bad:
            print(f"FAIL walk: {rel}: {tree[rel]['error']}")
        print(f"walked {len(tree)} entries, read every file: {len(bad)} errors")
        ok = ok and not bad
    print(f"tree check: {time.monotonic() - t:.1f} s")
    print(f"{'PASS' if ok else 'FAIL'} seed {seed}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
