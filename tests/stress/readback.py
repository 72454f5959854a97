#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""readback.py - processes that write disjoint parts of one new file
must read back what they wrote, while the others write and read theirs.

  readback.py [-n ROUNDS] [-p P] DIR

Each round makes DIR/rbN empty, forks P processes (default 4) that
open it, and process k writes chunk k of every group of P chunks of
256 KiB (4 groups), then reads its 4 chunks back, each of which must
hold exactly what it wrote.  Their opens (without FOPEN_KEEP_CACHE)
and reads, with the kernel's read-ahead, make the kernel ask the
daemon for pages another process's WRITE has filled in the page cache
but not yet sent on: an answer from the source before that WRITE lands
puts the old data (zeros) in the page cache, and a process reads back
zeros where its own write, already returned, had put data.

Prints each wrong read-back (round, process, offset, and whether what
came back was zeros), then "readback: R rounds, B bad"; exits 0 only if
B is 0.
"""
import argparse
import hashlib
import os
import sys

CHUNK = 256 << 10
GROUPS = 4


def pattern(seed):
    out = bytearray()
    i = 0
    while len(out) < CHUNK:
        out += hashlib.sha256(b"%d:%d" % (seed, i)).digest()
        i += 1
    return bytes(out[:CHUNK])


def writer(path, k, nprocs, data, rnd):
    """Process k's part of round rnd; its exit status: 0 or 1."""
    fd = os.open(path, os.O_RDWR)
    offsets = [(g * nprocs + k) * CHUNK for g in range(GROUPS)]
    for off in offsets:
        if os.pwrite(fd, data, off) != CHUNK:
            print(f"round {rnd} process {k}: short write at {off}", flush=True)
            return 1
    bad = 0
    for off in offsets:
        got = os.pread(fd, CHUNK, off)
        if got != data:
            zeros = not got.strip(b"\0")
            print(f"round {rnd} process {k}: read back {len(got)} bytes at "
                  f"{off}, not what it wrote{' (zeros)' if zeros else ''}",
                  flush=True)
            bad = 1
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=200, help="rounds")
    ap.add_argument("-p", type=int, default=4, help="processes")
    ap.add_argument("dir")
    a = ap.parse_args()
    if a.n < 1 or a.p < 1:
        ap.error("-n and -p must be at least 1")
    datas = [pattern(k) for k in range(a.p)]
    bad = 0
    for rnd in range(a.n):
        path = os.path.join(a.dir, f"rb{rnd}")
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
        pids = []
        for k in range(a.p):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = writer(path, k, a.p, datas[k], rnd)
                finally:
                    os._exit(code)
            pids.append(pid)
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            bad += status != 0
        os.unlink(path)
    print(f"readback: {a.n} rounds, {bad} bad")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
