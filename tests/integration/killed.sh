#!/bin/bash
# SPDX-License-Identifier: MIT
#
# killed.sh - programs killed with SIGKILL in the middle of their
# requests, hundreds of times: nothing of theirs may stay behind in the
# daemon, and nothing may go wrong for anyone else.
#
#   AIODFS=build/fs/aiodfs AIOD_WORKER=build/aiod/aiod tests/integration/killed.sh [ROUNDS]
#
# Each round two children loop over a mix of operations on a few names
# in their own directories (create and write, rename over, link, unlink,
# mkdir, rmdir, symlink, truncate, fallocate, setxattr, writes through
# mmap, listings and reads) and are killed after 0.2 to 3 ms, at any
# point of any request; then syncfs() on the mount.  Afterwards:
#  - syncfs() never failed, by default and under -o passthrough (when the
#    kernel offers it; else that mount serves as a default one).  Under
#    -o writeback it
#    may fail with EINTR or EIO, the kernel's record of a killed
#    process's time update (README, "Killed processes under writeback"),
#    and with nothing else;
#  - the daemon answered no WRITE or SETATTR with an error (kernel-made
#    errors never reach it, and the children race with no one on a name);
#  - the daemon holds no request and, once every RELEASE is in, no file
#    (aiodfsctl stats: files_open), nor, under -o passthrough, a backing
#    file;
#  - once the kernel drops its caches (drop_caches), the daemon knows no
#    inode and holds no fd of one: every FORGET came and was taken;
#  - the tree through the mount is the source's: names, types, sizes,
#    bytes, symlink targets, xattrs;
#  - the daemon exits 0 at the unmount.
# Exits 0 if every check passed, 1 if not, 77 if /dev/fuse is missing.
set -u
. "$(dirname "$0")/../lib.sh" killed
CTL=${AIODFSCTL:-$(dirname "$AIODFS")/aiodfsctl}
rounds=${1:-300}

before_cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; }

# stat_field MNT NAME: one number of aiodfsctl stats --json.
stat_field() {
	"$CTL" stats --json "$1" | python3 -c '
import json, sys
j = json.load(sys.stdin)
f = sys.argv[1]
print(len(j["in_flight"]) + j["pool"]["busy"] if f == "busy" else
      j["passthrough"]["files"] + j["passthrough"]["backing_files"] if f == "pt" else
      sum(o["errors"] for n, o in j["ops"].items() if n in ("write", "setattr"))
      if f == "data_errors" else j[f])' "$2"
}
is_zero() { [ "$(stat_field "$1" "$2")" = 0 ]; }
# The kernel drops what it can each time: a dentry it saw in use is
# only marked the first time round.
dropped() { echo 2 >/proc/sys/vm/drop_caches && is_zero "$1" inodes; }

for opts in default writeback passthrough; do
	src=$T/src-$opts mnt=$T/mnt-$opts
	mkdir -p "$src" "$mnt"
	if [ $opts = default ]; then
		serve "$T/daemon.log" "$src" "$mnt" || continue
	else
		serve "$T/daemon.log" "$src" "$mnt" -o $opts || continue
	fi
	python3 - "$mnt" "$rounds" "$opts" <<'PY' || fail "-o $opts: the killed children's rounds"
import ctypes, errno, mmap, os, random, signal, sys, time

mnt, rounds, opts = sys.argv[1], int(sys.argv[2]), sys.argv[3]
libc = ctypes.CDLL(None, use_errno=True)
seed = random.randrange(1 << 30)
rng = random.Random(seed)
print(f"     -o {opts}: seed {seed}")

data = random.Random(seed).randbytes(1 << 18)

def child(d, seed, ready):
    r = random.Random(seed)
    os.chdir(d)
    os.write(ready, b"!")
    while True:
        n0 = r.randrange(1 << 17)
        buf = data[n0:]
        n, m = "f%d" % r.randrange(6), "f%d" % r.randrange(6)
        op = r.randrange(13)
        try:
            if op == 0:
                fd = os.open(n, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
                os.write(fd, buf[:r.randrange(1 << 17)])
                os.close(fd)
            elif op == 1:
                os.rename(n, m)
            elif op == 2:
                os.link(n, m)
            elif op == 3:
                os.unlink(n)
            elif op == 4:
                os.mkdir("d" + n)
            elif op == 5:
                os.rmdir("d" + n)
            elif op == 6:
                os.symlink(n, "s" + n)
            elif op == 7:
                os.truncate(n, r.randrange(1 << 18))
            elif op == 8:
                fd = os.open(n, os.O_RDWR)
                os.posix_fallocate(fd, r.randrange(1 << 17), r.randrange(1, 1 << 17))
                os.close(fd)
            elif op == 9:
                os.setxattr(n, "user.k", buf[:r.randrange(1, 200)])
            elif op == 10:
                fd = os.open(n, os.O_RDWR)
                size = os.fstat(fd).st_size
                if size:
                    with mmap.mmap(fd, size) as mm:
                        k = min(size, 8192)
                        mm[:k] = buf[:k]
                os.close(fd)
            elif op == 11:
                for e in os.listdir("."):
                    os.lstat(e)
            else:
                with open(n, "rb") as f:
                    f.read()
        except OSError:
            pass

for d in ("a", "b"):
    os.makedirs(os.path.join(mnt, d), exist_ok=True)
dirfd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
failed = {}
for i in range(rounds):
    kids = []
    ready, ready_w = os.pipe()
    for d in ("a", "b"):
        s = rng.randrange(1 << 30)
        pid = os.fork()
        if pid == 0:
            try:
                os.close(ready)
                child(os.path.join(mnt, d), s, ready_w)
            finally:
                os._exit(0)
        kids.append(pid)
    os.close(ready_w)
    os.read(ready, 1)  # the kill comes while both are at work
    os.read(ready, 1)
    os.close(ready)
    time.sleep(rng.uniform(0.0002, 0.003))
    for pid in kids:
        os.kill(pid, signal.SIGKILL)
    for pid in kids:
        os.waitpid(pid, 0)
    if libc.syncfs(dirfd) != 0:
        e = errno.errorcode.get(ctypes.get_errno(), "?")
        failed[e] = failed.get(e, 0) + 1
os.close(dirfd)
allowed = {"EINTR", "EIO"} if opts == "writeback" else set()
bad = {e: n for e, n in failed.items() if e not in allowed}
print(f"{'ok  ' if not bad else 'FAIL'} -o {opts}: {rounds} rounds of 2 killed children;"
      f" syncfs failed: {failed or 'never'}")
sys.exit(1 if bad else 0)
PY
	check "-o $opts: nothing in flight" wait_for is_zero "$mnt" busy
	check "-o $opts: no file open once the RELEASEs are in" \
		wait_for is_zero "$mnt" files_open
	check "-o $opts: no file in passthrough, no backing file" is_zero "$mnt" pt
	check "-o $opts: the daemon failed no WRITE or SETATTR" \
		is_zero "$mnt" data_errors
	check "-o $opts: once the kernel drops its caches, no inode known" \
		wait_for dropped "$mnt"
	check "-o $opts: and no inode's fd held" is_zero "$mnt" inode_fds
	python3 - "$src" "$mnt" <<'PY' || fail "-o $opts: the tree through the mount is the source's"
import hashlib, os, stat, sys

def tree(top):
    out = {}
    for dirpath, dirs, files in os.walk(top):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            what = [stat.S_IFMT(st.st_mode), st.st_mode & 0o7777, st.st_nlink]
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    what += [st.st_size, hashlib.sha1(f.read()).hexdigest()]
                what.append(os.getxattr(p, "user.k") if "user.k" in os.listxattr(p) else None)
            elif stat.S_ISLNK(st.st_mode):
                what.append(os.readlink(p))
            out[os.path.relpath(p, top)] = what
    return out

src, mnt = sys.argv[1:]
a, b = tree(src), tree(mnt)
diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
for k in diff[:5]:
    print(f"     {k}: source {a.get(k)}, mount {b.get(k)}")
print(f"{'ok  ' if not diff else 'FAIL'} compared {len(a)} entries with the source:"
      f" {len(diff)} differences")
sys.exit(1 if diff else 0)
PY
	unmount "$mnt"
	wait "$pid"
	check "-o $opts: the daemon exits 0" [ $? = 0 ]
	pid=
done

echo "$failures failed"
[ "$failures" = 0 ]
