#!/bin/bash
# SPDX-License-Identifier: MIT
#
# compat32.sh - 32-bit programs on the mount see what they see on the
# source: compat32.c, built here with cc -m32 (with and without
# large-file support) and as a 64-bit program, stats a file, asks its
# generation and flags by ioctl (a 32-bit program's FS_IOC_GETVERSION is
# FS_IOC32_GETVERSION, which reaches the daemon as a compat ioctl), lists
# a directory of 3,000 entries (several READDIRs, more than one buffer
# of readdir()'s), seeks back and forth to entries with telldir()'s
# values, to the start and on to a late one, then removes an entry,
# reads part of the listing again and seeks to an entry it saw before.  Its output must be the same on the
# source (an ext4 image of the test's own) and through the mount, by
# default and with -o writeback.  And a directory listed from the start
# 400 times while open, changing between listings, leaves the daemon's
# memory where it was.
#
#   AIODFS=build/fs/aiodfs AIOD_WORKER=build/aiod/aiod tests/integration/compat32.sh
#
# Before the daemon handed the kernel positions as directory offsets
# (fs/ops.c, dir_pos_off()), a 32-bit readdir() of an ext4 source
# through the mount failed with EOVERFLOW, and seekdir() went elsewhere.
# Needs a compiler that builds for -m32 (tests/setup-debian installs
# gcc-multilib on amd64); where the machine has no 32-bit ABI, only the
# 64-bit program runs.
# Exits 0 if every check passed, 1 if not, 77 if /dev/fuse is missing.
set -u
. "$(dirname "$0")/../lib.sh" compat32

helper=$(dirname "$0")/compat32.c
src=$T/src mnt=$T/mnt
mkdir -p "$src" "$mnt"
# The source: an ext4 of its own, whatever /tmp is: its offsets are
# 64-bit hashes (but 31-bit ones for a 32-bit caller) and it keeps
# generations, the two things a 32-bit program trips over.
before_cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	umount "$src" 2>/dev/null
}
truncate -s 128M "$T/img" && mkfs.ext4 -q -F -N 60000 "$T/img" &&
	mount -o loop "$T/img" "$src" ||
	{ echo "compat32: cannot mount an ext4 image here" >&2; exit 1; }
# fresh NAME: a directory of 2,999 entries and f, alike in every call.
fresh() {
	mkdir "$src/$1" && (cd "$src/$1" && seq -f "entry-%04g" 2999 | xargs touch &&
		echo data >f)
}

progs="64"
cc -O2 -Wall -o "$T/compat64" "$helper" || exit 1
if cc -m32 -O2 -Wall -o "$T/compat32" "$helper" 2>"$T/cc.err" &&
	cc -m32 -D_FILE_OFFSET_BITS=64 -O2 -Wall -o "$T/compat32lfs" "$helper"; then
	progs="64 32 32lfs"
elif [ "$(uname -m)" = x86_64 ]; then
	fail "cc -m32 does not build here (tests/setup-debian installs gcc-multilib): $(head -1 "$T/cc.err")"
else
	echo "compat32: no 32-bit compiler on $(uname -m); the 64-bit program only"
fi
fresh probe || exit 1
[ "$("$T/compat64" -w "$src/probe")" = wide ] &&
	ok "the source's directory offsets pass 31 bits" ||
	fail "the source's directory offsets fit 31 bits: the listing checks prove nothing"

# rewinds: a program keeps a directory of 10,000 entries open and lists
# it from the start 400 times while a name in it comes and goes; the
# daemon's positions start over at each listing from the start, so its
# memory stays (growing 8 bytes per entry the directory changed before,
# it grew 30 MB here).
# Under AddressSanitizer (tests/run-all's second pass) freed memory sits
# in quarantine, so every READDIR's reply buffer would count: off here.
[ -n "${ASAN_OPTIONS:-}" ] && export ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=0"
rewinds() {
	mkdir "$src/rw" && (cd "$src/rw" && seq -f "e%05g" 10000 | xargs touch) || return
	python3 - "$mnt/rw" "$pid" "$T/rw" <<'PY' && ok "$(cat "$T/rw")" || fail "$(cat "$T/rw")"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.opendir.restype = ctypes.c_void_p
libc.readdir.restype = ctypes.c_void_p
libc.readdir.argtypes = libc.rewinddir.argtypes = libc.closedir.argtypes = [ctypes.c_void_p]
path, pid, said = sys.argv[1:]
def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
d = libc.opendir(path.encode())
counts = set()
for i in range(400):
    libc.rewinddir(d)
    n = 0
    while libc.readdir(d):
        n += 1
    counts.add(n)
    if i == 0:
        before = rss_kib()
    os.rename(os.path.join(path, f"x{i}" if i else "e00001"),
              os.path.join(path, f"x{i + 1}"))
grew = rss_kib() - before  # with the directory still open
libc.closedir(d)
what = f"400 listings from the start of a changing directory: {counts} entries, the daemon grew {grew} KiB"
with open(said, "w") as f:
    print(what, file=f)
sys.exit(0 if counts == {10002} and grew < 4096 else 1)
PY
}

n=0
for opts in "" "-o writeback"; do
	# shellcheck disable=SC2086
	serve "$T/daemon.log" "$src" "$mnt" $opts || exit 1
	for p in $progs; do
		n=$((n + 1))
		fresh "a$n" && fresh "b$n" || exit 1
		"$T/compat$p" "$src/a$n" "$src/probe/f" >"$T/want" 2>&1
		"$T/compat$p" "$mnt/b$n" "$mnt/probe/f" >"$T/got" 2>&1
		if [ "$(grep -c "finds it: yes" "$T/want")" != 6 ] ||
			! grep -q "^readdir: 3002$" "$T/want" ||
			! grep -q "^FS_IOC_GETVERSION: 0$" "$T/want"; then
			fail "$p-bit program on the source itself: $(tr '\n' ' ' <"$T/want")"
		elif cmp -s "$T/want" "$T/got"; then
			ok "${opts:-default}: the $p-bit program sees through the mount what it sees on the source"
		else
			fail "${opts:-default}: the $p-bit program: source (-) and mount (+) differ:"
			diff "$T/want" "$T/got" | sed -n 's/^[<>]/    &/p'
		fi
	done
	[ -z "$opts" ] && rewinds
	unserve "$mnt"
done
echo "$failures failed"
[ "$failures" = 0 ]
