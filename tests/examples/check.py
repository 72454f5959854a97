#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""check.py - test aiodhash, uvhash or any program with their interface.

  check.py PROGRAM

Writes a set of files into a fresh temporary directory: an empty file,
"foobar" (whose FNV-1a 64 is a published test vector), a file of exactly
one read (256 KiB), one of a few MiB, one over 1 MiB that is not a
multiple of the read size, and a hundred small ones; then runs PROGRAM
over them at several depths, with three bad names among them: a missing
file, a directory (which opens but cannot be read) and a name too long
to submit.  Each run must print, in argument order, "HASH  PATH" for
every readable file, with the hash computed here independently,
"NAME: PATH: strerror" on stderr for each bad one, and exit 1; without
the bad ones it must exit 0 and print nothing on stderr.  With only
names too long, which fail before any request is made, it must still
finish and exit 1.  Bad usage must exit 2.

The FNV-1a below is checked against published vectors first, so that a
bug shared by the checker and the program cannot go unnoticed.
"""
import difflib
import errno
import os
import random
import subprocess
import sys
import tempfile

READ_SIZE = 256 << 10
FNV_OFFSET_BASIS = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK = (1 << 64) - 1
TIMEOUT = 60


def fnv1a64(data):
    h = FNV_OFFSET_BASIS
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK
    return h


# Published FNV-1a 64 vectors (Fowler/Noll/Vo test suite).
for text, want in ((b"", 0xCBF29CE484222325), (b"a", 0xAF63DC4C8601EC8C),
                   (b"foobar", 0x85944171F73967E8)):
    assert fnv1a64(text) == want, text

failures = 0


def fail(what, want, got):
    global failures
    failures += 1
    print(f"FAIL: {what}", file=sys.stderr)
    if isinstance(want, str):
        sys.stderr.writelines(difflib.unified_diff(
            want.splitlines(True), got.splitlines(True), "expected", "got"))
    else:
        print(f"  expected {want!r}, got {got!r}", file=sys.stderr)


def run(prog, args, cwd):
    return subprocess.run([prog] + args, cwd=cwd, capture_output=True,
                          text=True, timeout=TIMEOUT)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: check.py PROGRAM")
    prog = os.path.abspath(sys.argv[1])
    name = os.path.basename(prog)
    rng = random.Random(20261122)

    with tempfile.TemporaryDirectory(prefix="aiodhash-check.") as tmp:
        contents = {
            "empty": b"",
            "foobar": b"foobar",
            "one-read": rng.randbytes(READ_SIZE),
            "few-mib": rng.randbytes(3 << 20),
            "odd-mib": rng.randbytes((1 << 20) + 12345),
        }
        os.mkdir(os.path.join(tmp, "small"))
        small = [f"small/{i:03d}" for i in range(100)]
        for path in small:
            contents[path] = rng.randbytes(rng.randrange(0, 20000))
        for path, data in contents.items():
            with open(os.path.join(tmp, path), "wb") as f:
                f.write(data)
        os.mkdir(os.path.join(tmp, "a-dir"))
        hashes = {path: fnv1a64(data) for path, data in contents.items()}
        absolute = os.path.join(tmp, "odd-mib")
        hashes[absolute] = hashes["odd-mib"]
        too_long = "x" * 5000
        errors = {"missing": errno.ENOENT, "a-dir": errno.EISDIR,
                  too_long: errno.ENAMETOOLONG}

        good = (["empty", "foobar", "few-mib"] + small[:50] +
                ["odd-mib", "one-read"] + small[50:] + ["foobar", absolute])
        # The bad ones mid-list, so that later files must still be printed.
        mixed = (good[:2] + ["missing"] + good[2:60] + ["a-dir"] +
                 good[60:70] + [too_long] + good[70:])

        def expect_out(paths):
            return "".join(f"{hashes[p]:016x}  {p}\n"
                           for p in paths if p in hashes)

        def expect_err(paths):
            return "".join(f"{name}: {p}: {os.strerror(errors[p])}\n"
                           for p in paths if p in errors)

        for depth in ([], ["-j", "1"], ["-j", "3"], ["-j", "64"]):
            what = " ".join([name] + depth)
            r = run(prog, depth + mixed, tmp)
            if r.stdout != expect_out(mixed):
                fail(f"{what}, with bad files: stdout", expect_out(mixed),
                     r.stdout)
            if r.stderr != expect_err(mixed):
                fail(f"{what}, with bad files: stderr", expect_err(mixed),
                     r.stderr)
            if r.returncode != 1:
                fail(f"{what}, with bad files: exit status", 1, r.returncode)

            r = run(prog, depth + good, tmp)
            if r.stdout != expect_out(good):
                fail(f"{what}: stdout", expect_out(good), r.stdout)
            if r.stderr != "" or r.returncode != 0:
                fail(f"{what}: exit status and stderr", (0, ""),
                     (r.returncode, r.stderr))

        # No request at all: the loop must not wait for one.
        r = run(prog, [too_long, too_long], tmp)
        if (r.returncode, r.stdout) != (1, "") or \
                r.stderr != expect_err([too_long, too_long]):
            fail(f"{name}: only names too long", (1, "", "2 errors"),
                 (r.returncode, r.stdout, r.stderr[:200]))

        # Anchor the program to a published vector, not only to us.
        r = run(prog, ["foobar"], tmp)
        if r.stdout != "85944171f73967e8  foobar\n":
            fail(f"{name} foobar: stdout", "85944171f73967e8  foobar\n",
                 r.stdout)

        for args in ([], ["-j", "0"], ["-j", "65"], ["-j", "x", "empty"],
                     ["-j"], ["-q", "empty"]):
            r = run(prog, args, tmp)
            if r.returncode != 2 or r.stdout != "":
                fail(f"{name} {' '.join(args)}: usage error",
                     (2, ""), (r.returncode, r.stdout))

    if failures:
        sys.exit(1)
    print(f"{name}: all checks passed")


main()
