#!/bin/bash
# SPDX-License-Identifier: MIT
#
# passthrough.sh - -o passthrough on real mounts (fs/passthrough.c): the
# kernel reads and writes open files on the source itself.
#
#   passthrough.sh
#
#  1. Data: 8 MiB written and read back through the mount equal the
#     source's bytes, and no READ or WRITE reached the daemon
#     (aiodfsctl stats --json: no read or write ops, no bytes).
#  2. One backing file per inode: a file open four times at once
#     (read-only, write-only, read-write, append) reads and writes the
#     same bytes through every one; the daemon holds 4 files in
#     passthrough on 1 backing file, and 0 on 0 after they are closed;
#     200 opens and closes in a row end at 0 on 0 too.  A flock goes
#     with its file's close while another open keeps the backing file
#     (which is a description of its own).  A write by nobody drops a
#     file's set-user-ID bit (the kernel writes through the backing file
#     with the daemon's credentials, less CAP_FSETID).
#  3. Shared writable mmap, ftruncate of an open file, a file's size
#     after an append: what the source and stat(2) through the mount say.
#  4. fsx (every operation class) on a passthrough mount.
#  5. A stacked source (overlayfs) the kernel refuses as a backing
#     file: the daemon reads and writes its files itself (READs and
#     WRITEs counted, 0 files in passthrough) and the bytes are right.
#  6. Bad input: passthrough with writeback, or with direct_io, is
#     refused in one line.
#  7. The default (run before 6): a file opened O_DIRECT is in
#     passthrough, and a buffered open of it while it is open joins it
#     (each sees the other's writes); an O_DIRECT open of a file a
#     buffered open holds is the daemon's, without EIO; buffered files
#     are the daemon's; -o nopassthrough keeps O_DIRECT reads there, and
#     so does allow_other (a backing file writes with root's rights);
#     with -o cache=always an O_DIRECT open works (no EIO) in passthrough.
#
# Environment: AIODFS, AIOD_WORKER as for tests/lib.sh; AIODFSCTL and
# FSX (default: in the daemon's build directory).  Exits 0 if every
# check passed, 1 if any failed, 77 (skip) without /dev/fuse, when not
# run as root (the kernel gives backing files to CAP_SYS_ADMIN only) or
# when the kernel offers no passthrough (before Linux 6.9).
set -u
[ "$(id -u)" = 0 ] || { echo "passthrough.sh: needs root; skipping"; exit 77; }
. "$(dirname "$0")/../lib.sh" passthrough
CTL=${AIODFSCTL:-$(dirname "$AIODFS")/aiodfsctl}
FSX=${FSX:-$(dirname "$(dirname "$AIODFS")")/tests/fsx}
[ -x "$CTL" ] || { echo "passthrough.sh: no aiodfsctl at $CTL" >&2; exit 1; }
[ -x "$FSX" ] || { echo "passthrough.sh: no fsx at $FSX" >&2; exit 1; }

src=$T/src mnt=$T/mnt log=$T/daemon.log
mkdir -p "$src" "$mnt"
before_cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; }

json() {
	"$CTL" stats --json "$mnt" |
		python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"
}
ops() { json "d['ops'].get('$1', {}).get('count', 0)"; }
# counts FILES BACKING: the daemon's passthrough counts are these (a
# release reaches the daemon after close(2) has returned: wait a little).
counts() {
	[ "$(json "'%d %d' % (d['passthrough']['files'], d['passthrough']['backing_files'])")" = "$1 $2" ]
}

serve "$log" "$src" "$mnt" -o passthrough,allow_other || exit 1
if [ "$(json "d['passthrough']['on']")" != True ]; then
	echo "passthrough.sh: the kernel offers no passthrough; skipping"
	cat "$log"
	exit 77
fi

# 1. Data, and no READ or WRITE at the daemon.
head -c 8M /dev/urandom >"$T/ref"
dd if="$T/ref" of="$mnt/big" bs=1M status=none
check "8 MiB written through the mount are the source's" cmp -s "$T/ref" "$src/big"
check "and read back the same" cmp -s "$T/ref" "$mnt/big"
dd if="$mnt/big" of=/dev/null bs=1M iflag=direct status=none
check "no READ or WRITE reached the daemon" \
	[ "$(ops read) $(ops write) $(json "d['bytes_read'] + d['bytes_written']")" = "0 0 0" ]

# 2. Four opens of one inode at once share its backing file.
cat >"$T/four.py" <<'EOF'
import os, sys, time
p = sys.argv[1]
with open(p, "wb") as f:
    f.write(b"0123456789")
r = os.open(p, os.O_RDONLY)
w = os.open(p, os.O_WRONLY)
rw = os.open(p, os.O_RDWR)
a = os.open(p, os.O_WRONLY | os.O_APPEND)
os.pwrite(w, b"AB", 2)
os.pwrite(rw, b"CD", 6)
os.write(a, b"EF")
ok = (os.pread(r, 20, 0) == b"01AB45CD89EF" and
      os.pread(rw, 20, 0) == b"01AB45CD89EF")
print("%d %s" % (ok, sys.stdin.readline().strip()), flush=True)
sys.stdin.readline()  # held open until told
for fd in (r, w, rw, a):
    os.close(fd)
EOF
coproc four { python3 "$T/four.py" "$mnt/four"; }
echo go >&"${four[1]}"
read -r line <&"${four[0]}"
check "four opens of one file read and write the same bytes" [ "$line" = "1 go" ]
check "4 files in passthrough on 1 backing file" wait_for counts 4 1
echo done >&"${four[1]}"
wait "$four_PID"
check "the source has them" [ "$(cat "$src/four")" = 01AB45CD89EF ]
check "0 files on 0 backing files once closed" wait_for counts 0 0
for i in $(seq 200); do : >>"$mnt/four"; done
check "200 opens and closes: 0 on 0" wait_for counts 0 0

# A flock goes with the close of its file, though another open of the
# inode keeps the inode's backing file.
python3 - "$mnt/four" >"$T/flock.out" 2>&1 <<'EOF'
import fcntl, os, sys
a = os.open(sys.argv[1], os.O_RDWR)
b = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(a, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.close(a)
fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("ok")
EOF
check "a flock goes with its file's close, the inode still open" \
	grep -qx ok "$T/flock.out" || cat "$T/flock.out"

# Set-id bits go when someone other than root writes, as on the source.
cp /bin/true "$src/suid"
chmod 4777 "$src/suid"
su nobody -s /bin/sh -c "printf ab >>'$mnt/suid'"
check "a write by nobody drops set-user-ID" [ "$(stat -c %a "$src/suid")" = 777 ]

# 3. mmap, ftruncate, append.
python3 - "$mnt/map" "$src/map" <<'EOF' >"$T/map.out" 2>&1
import mmap, os, sys
m, s = sys.argv[1], sys.argv[2]
fd = os.open(m, os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, 8192)
mm = mmap.mmap(fd, 8192)
mm[4096:4101] = b"hello"
mm.flush()
assert open(s, "rb").read()[4096:4101] == b"hello", "mmap"
os.ftruncate(fd, 100)
assert os.stat(m).st_size == 100 and os.stat(s).st_size == 100, "ftruncate"
mm.close()
os.close(fd)
with open(m, "ab") as f:
    f.write(b"x" * 50)
assert os.stat(m).st_size == 150 and os.stat(s).st_size == 150, "append"
print("ok")
EOF
check "mmap, ftruncate and append agree with the source" grep -qx ok "$T/map.out" ||
	cat "$T/map.out"

# 4. fsx.
"$FSX" -q -N 20000 -S 7 "$mnt/fsx" >"$T/fsx.out" 2>&1
check "fsx, 20,000 operations" [ $? = 0 ] || tail -20 "$T/fsx.out"
check "no READ or WRITE reached the daemon after all that" \
	[ "$(ops read) $(ops write)" = "0 0" ]
unserve "$mnt"

# 5. A stacked source: the daemon serves its files' data itself.
mkdir -p "$T/lower" "$T/upper" "$T/work" "$T/ovl"
if mount -t overlay overlay -o "lowerdir=$T/lower,upperdir=$T/upper,workdir=$T/work" "$T/ovl"; then
	: >"$log"
	serve "$log" "$T/ovl" "$mnt" -o passthrough || exit 1
	dd if="$T/ref" of="$mnt/big" bs=1M status=none
	check "over overlayfs: the bytes arrive" cmp -s "$T/ref" "$T/ovl/big"
	check "and read back" cmp -s "$T/ref" "$mnt/big"
	check "through the daemon: READs and WRITEs, no passthrough" \
		[ "$(ops read)" -gt 0 -a "$(ops write)" -gt 0 -a "$(json "d['passthrough']['files']")" = 0 ]
	check "the daemon says so once" [ "$(grep -c 'passthrough: .*stacking' "$log")" = 1 ]
	unserve "$mnt"
	umount "$T/ovl"
else
	fail "mount overlayfs for the stacked source"
fi

# 7. By default, only O_DIRECT opens start a backing file, and only
# while no other file of the inode is open without one (the kernel
# would fail the open); the inode's later opens join it.
cat >"$T/direct.py" <<'EOF'
import mmap, os, sys
p, step = sys.argv[1], sys.argv[2]
buf = mmap.mmap(-1, 4096)
def direct(flags=os.O_RDWR):
    return os.open(p, flags | os.O_DIRECT)
def say(what):
    print(what, flush=True)
    sys.stdin.readline()
if step == "direct-first":
    d = direct(os.O_RDWR | os.O_CREAT)
    buf[:] = b"d" * 4096
    os.pwritev(d, [buf], 0)
    say("direct open")
    b = os.open(p, os.O_RDWR)
    os.pwrite(b, b"buffered", 0)
    ok = os.preadv(d, [buf], 0) == 4096 and buf[:8] == b"buffered"
    say("both open %d" % ok)
    os.close(b)
    os.close(d)
else:
    b = os.open(p, os.O_RDWR | os.O_CREAT)
    os.pwrite(b, b"B" * 4096, 0)
    d = direct()
    ok = os.preadv(d, [buf], 0) == 4096 and buf[:] == b"B" * 4096
    buf[:] = b"x" * 4096
    os.pwritev(d, [buf], 0)
    ok = ok and os.pread(b, 4096, 0) == b"x" * 4096
    say("both open %d" % ok)
    os.close(d)
    os.close(b)
EOF
: >"$log"
serve "$log" "$src" "$mnt" || exit 1
dd if="$T/ref" of="$mnt/plain" bs=1M status=none
check "default: buffered writes are the daemon's" [ "$(ops write)" -gt 0 ]
check "... with 0 files in passthrough" counts 0 0
coproc direct { python3 "$T/direct.py" "$mnt/d1" direct-first; }
read -r line <&"${direct[0]}"
check "an O_DIRECT open: 1 file in passthrough on 1 backing file" wait_for counts 1 1
echo go >&"${direct[1]}"
read -r line <&"${direct[0]}"
check "a buffered open joins it: its write read through O_DIRECT ($line)" \
	[ "$line" = "both open 1" ]
check "2 files in passthrough on 1 backing file" wait_for counts 2 1
echo go >&"${direct[1]}"
wait "$direct_PID"
check "0 on 0 once closed" wait_for counts 0 0
coproc direct { python3 "$T/direct.py" "$mnt/d2" buffered-first; }
read -r line <&"${direct[0]}"
check "O_DIRECT while a buffered open holds the file: no EIO, the same bytes ($line)" \
	[ "$line" = "both open 1" ]
check "... and the daemon serves both (0 in passthrough)" counts 0 0
echo go >&"${direct[1]}"
wait "$direct_PID"
check "the source has the last write" [ "$(head -c 4096 "$src/d2" | tr -d x | wc -c)" = 0 ]
unserve "$mnt"
# direct_read OPTS: mount with OPTS and read 16 KiB of plain with O_DIRECT.
direct_read() {
	: >"$log"
	serve "$log" "$src" "$mnt" -o "$1" || exit 1
	dd if="$mnt/plain" of=/dev/null bs=4k count=4 iflag=direct status=none
}
in_daemon() { [ "$(ops read)" -gt 0 -a "$(json "d['passthrough']['on']")" = False ]; }
direct_read nopassthrough
check "-o nopassthrough: O_DIRECT reads go to the daemon" in_daemon
unserve "$mnt"
direct_read allow_other
check "-o allow_other: O_DIRECT reads go to the daemon (a backing file writes as root)" \
	in_daemon
unserve "$mnt"
check "-o cache=always: an O_DIRECT read succeeds (no FOPEN_KEEP_CACHE with passthrough)" \
	direct_read cache=always
check "... through the backing file: no read reached the daemon" [ "$(ops read)" = 0 ]
unserve "$mnt"

# 6. Bad input.
for bad in writeback direct_io; do
	out=$("$AIODFS" -o "passthrough,$bad" "$src" "$mnt" 2>&1)
	check "passthrough,$bad refused in one line" \
		[ $? -ne 0 -a "$(echo "$out" | wc -l)" = 1 ]
	echo "    $out"
done

[ "$failures" = 0 ] || { echo "daemon log:"; cat "$log"; }
exit $((failures > 0))
