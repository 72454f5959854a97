#!/bin/bash
# SPDX-License-Identifier: MIT
#
# submounts.sh - a source with other filesystems mounted inside it: two
# tmpfs, whose inode numbers are alike (each counts from the same small
# numbers), and a bind mount of one of the source's own directories.
#
#   AIODFS=build/fs/aiodfs AIOD_WORKER=build/aiod/aiod tests/integration/submounts.sh
#
# The mount shows every filesystem under one st_dev, so (fs/inode.c,
# afs_ino_of()):
#  - no two objects of the source show one st_ino through the mount,
#    and a hard link shows its file's;
#  - an object of the root's filesystem shows the source's own st_ino,
#    through a bind mount too;
#  - a listing's d_ino is the st_ino a stat of the entry shows;
#  - cp from one tmpfs to the other is a copy, not "the same file";
#    du counts both; data and names reach the right filesystem;
#  - objects of another mount are named by file handle, as the root's
#    are, not by an fd each (fs/inode.c, afs_mount_learn()): a stat of
#    25,000 files on one of the tmpfs, more than the daemon may hold fds
#    (RLIMIT_NOFILE is 20,000 here), all succeed, and the daemon holds
#    fewer than 2,000 fds of inodes.
# Exits 0 if every check passed, 1 if not, 77 if /dev/fuse is missing.
set -u
. "$(dirname "$0")/../lib.sh" submounts

src=$T/src mnt=$T/mnt
mkdir -p "$src/t1" "$src/t2" "$src/own/d" "$src/bind" "$mnt"
# lib.sh's cleanup undoes aiodfs mounts only; these are ours to undo.
before_cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	umount "$src/bind" "$src/t1" "$src/t2" 2>/dev/null
}
mount -t tmpfs -o size=8m aiodfs-test "$src/t1" &&
	mount -t tmpfs -o size=8m aiodfs-test "$src/t2" &&
	mount --bind "$src/own" "$src/bind" ||
	{ echo "submounts: cannot mount tmpfs or bind here" >&2; exit 1; }
for d in t1 t2 own; do
	for i in 1 2 3 4 5 6; do echo "$d $i" >"$src/$d/f$i"; done
	ln "$src/$d/f1" "$src/$d/link"
done
mkdir "$src/t2/many"
(cd "$src/t2/many" && seq 25000 | xargs touch) || exit 1

serve "$T/daemon.log" "$src" "$mnt" || exit 1
python3 - "$src" "$mnt" "${AIODFSCTL:-$(dirname "$AIODFS")/aiodfsctl}" <<'PY' || fail "the checks above"
import json, os, shutil, subprocess, sys

src, mnt, ctl = sys.argv[1:]
failed = 0

def check(what, cond):
    global failed
    print(("ok   " if cond else "FAIL ") + what)
    failed += not cond

def walk(top):
    """path -> lstat of every entry under top, top itself too."""
    out = {".": os.lstat(top)}
    for dirpath, dirs, files in os.walk(top):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, top)] = os.lstat(p)
    return out

s, m = walk(src), walk(mnt)
check("the mount lists what the source holds", s.keys() == m.keys())
objs = {}                  # (st_dev, st_ino) in the source -> paths
for path, st in s.items():
    objs.setdefault((st.st_dev, st.st_ino), []).append(path)
devs = {}
for d, i in objs:
    devs.setdefault(i, set()).add(d)
check("the source's filesystems share inode numbers "
      f"({sum(len(d) > 1 for d in devs.values())} of them)",
      any(len(d) > 1 for d in devs.values()))
split = [p for p in objs.values() if len({m[x].st_ino for x in p}) != 1]
check(f"each object shows one st_ino, its links too ({split or 'all'})",
      not split)
shown = {}
for paths in objs.values():
    shown.setdefault(m[paths[0]].st_ino, []).append(paths[0])
dup = {i: p for i, p in shown.items() if len(p) > 1}
check(f"no two objects show one st_ino through the mount ({dup or 'none'})",
      not dup)
root_dev = s["."].st_dev
own = [p for p, st in s.items() if st.st_dev == root_dev]
check(f"objects on the root's filesystem keep their st_ino ({len(own)})",
      all(m[p].st_ino == s[p].st_ino for p in own))
check("through the bind mount too",
      m["bind/f2"].st_ino == s["own/f2"].st_ino == s["bind/f2"].st_ino)
bad = [os.path.join(d, e.name) for d in ("", "t1", "t2", "bind", "own")
       for e in os.scandir(os.path.join(mnt, d))
       if e.inode() != m[os.path.join(d, e.name)].st_ino and
       not e.is_dir(follow_symlinks=False)]
check(f"a listing's d_ino is the entry's st_ino ({bad or 'all'})", not bad)

r = subprocess.run(["cp", f"{mnt}/t1/f3", f"{mnt}/t2/f3"],
                   capture_output=True, text=True)
check(f"cp from one tmpfs to the other copies ({r.stderr.strip() or 'ok'})",
      r.returncode == 0 and open(f"{src}/t2/f3").read() == "t1 3\n")
with open(f"{mnt}/t2/new", "w") as f:
    f.write("into t2")
check("a file made in t2 lands on t2",
      open(f"{src}/t2/new").read() == "into t2" and
      os.stat(f"{src}/t2/new").st_dev == os.stat(f"{src}/t2").st_dev)
du = subprocess.run(["du", "-a", "--inodes", mnt], capture_output=True,
                    text=True).stdout.split("\n")[-2].split()[0]
native = subprocess.run(["du", "-a", "--inodes", src], capture_output=True,
                        text=True).stdout.split("\n")[-2].split()[0]
check(f"du --inodes counts what it counts in the source ({du}, {native})",
      du == native)
errs = {}
for e in os.scandir(f"{mnt}/t2/many"):
    try:
        os.lstat(e.path)
    except OSError as x:
        errs[x.strerror] = errs.get(x.strerror, 0) + 1
st = json.loads(subprocess.run([ctl, "stats", "--json", mnt],
                               capture_output=True, text=True).stdout)
check(f"25,000 files of a tmpfs stat through the mount ({errs or 'no error'});"
      f" the daemon knows {st['inodes']} inodes and holds"
      f" {st['inode_fds']} fds of them", not errs and st["inode_fds"] < 2000)
sys.exit(1 if failed else 0)
PY
unserve "$mnt"
echo "$failures failed"
[ "$failures" = 0 ]
