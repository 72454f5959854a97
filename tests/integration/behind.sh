#!/bin/bash
# The source changes behind the mount's back: a directory the kernel
# knows is renamed, replaced, swapped for a symlink; a file is deleted
# and another takes its name (and maybe its inode number).  Operations
# through the mount must act on the object they named or fail, never on
# another file and never outside the source.
#
#   AIODFS=build/fs/aiodfs AIOD_WORKER=build/aiod/aiod tests/integration/behind.sh
set -u
. "$(dirname "$0")/../lib.sh" behind
CTL=${AIODFSCTL:-$(dirname "$(dirname "$AIODFS")")/fs/aiodfsctl}

status=0
for mode in handles inode_fds; do
	src=$T/src-$mode mnt=$T/mnt-$mode
	mkdir -p "$src" "$mnt" "$T/outside-$mode"
	opts=cache=never
	[ $mode = inode_fds ] && opts=$opts,inode_fds
	"$AIODFS" -o "$opts" "$src" "$mnt" || { status=1; continue; }
	echo "== $mode"
	python3 - "$src" "$mnt" "$T/outside-$mode" <<'PY' || status=1
import errno, os, sys

src, mnt, outside = sys.argv[1:]
failed = 0

def check(what, cond):
    global failed
    print(("ok   " if cond else "FAIL ") + what)
    failed += not cond

def attempt(f):
    try:
        return f()
    except OSError as e:
        return errno.errorcode[e.errno]

def put(path, data):
    with open(path, "w") as f:
        f.write(data)

def read_at(dirfd, name):
    fd = os.open(name, os.O_RDONLY, dir_fd=dirfd)
    try:
        return os.read(fd, 100).decode()
    finally:
        os.close(fd)

# A directory renamed, and a new one in its place: the held directory
# still names the original.
os.mkdir(f"{mnt}/a")
put(f"{mnt}/a/f", "original")
d = os.open(f"{mnt}/a", os.O_RDONLY | os.O_DIRECTORY)
os.rename(f"{src}/a", f"{src}/moved")
os.mkdir(f"{src}/a")
put(f"{src}/a/f", "impostor")
check("renamed directory: reads the original's file",
      attempt(lambda: read_at(d, "f")) == "original")
put(f"{src}/moved/g", "new in original")
check("renamed directory: sees what is added to the original",
      attempt(lambda: read_at(d, "g")) == "new in original")
attempt(lambda: os.close(os.open("h", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=d)))
check("renamed directory: creates inside the original",
      os.path.exists(f"{src}/moved/h") and not os.path.exists(f"{src}/a/h"))
os.close(d)

# A directory swapped for a symlink that leads outside the source.
os.mkdir(f"{mnt}/c")
put(f"{outside}/secret", "outside")
d = os.open(f"{mnt}/c", os.O_RDONLY | os.O_DIRECTORY)
os.rename(f"{src}/c", f"{src}/c.old")
os.symlink(outside, f"{src}/c")
r = attempt(lambda: read_at(d, "secret"))
check(f"symlink swap: no read outside the source (got {r})", r == "ENOENT")
attempt(lambda: os.close(os.open("planted", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=d)))
check("symlink swap: nothing created outside the source",
      not os.path.exists(f"{outside}/planted"))
os.close(d)

# A file deleted and another created under its name (ext4 may even give
# it the same inode number): the mount shows the new one.
put(f"{mnt}/x", "old")
st_old = os.stat(f"{mnt}/x")
os.unlink(f"{src}/x")
put(f"{src}/x", "new")
check("replaced file: read gives the new content",
      attempt(lambda: open(f"{mnt}/x").read()) == "new")
check("replaced file: stat gives the new inode",
      os.stat(f"{mnt}/x").st_ino == os.stat(f"{src}/x").st_ino)

# A file open through the mount, deleted in the source: still readable.
put(f"{mnt}/y", "kept")
fd = os.open(f"{mnt}/y", os.O_RDONLY)
os.unlink(f"{src}/y")
check("deleted in source while open: still readable",
      os.pread(fd, 10, 0).decode() == "kept")
os.close(fd)
check("deleted in source: gone through the mount",
      attempt(lambda: os.stat(f"{mnt}/y")) == "ENOENT")
sys.exit(1 if failed else 0)
PY
	fusermount3 -u "$mnt"
done

# security.capability: the daemon keeps its absence for attr_timeout (the
# kernel asks before every write).  A capability set through the mount is
# seen at once, one set behind the mount once attr_timeout has passed, and
# a write through the mount drops it in the source.  With
# FUSE_HANDLE_KILLPRIV_V2 the kernel asks once per file, not per write,
# and leaves the dropping to the source: a capability or a set-id bit set
# behind the mount after that is dropped by the next write through it.
# A file an O_EXCL create made starts without one: no worker is asked.
src=$T/src-caps mnt=$T/mnt-caps
mkdir -p "$src" "$mnt"
"$AIODFS" -o attr_timeout=1,allow_other "$src" "$mnt" || exit 1
echo "== capabilities (attr_timeout=1)"
caps() { getfattr --absolute-names -n security.capability -e hex "$1" 2>/dev/null | grep -c '^security.capability='; }
echo data > "$mnt/prog"
check "no capability: ENODATA" test "$(caps "$mnt/prog")" = 0
echo more >> "$mnt/prog"
setcap cap_net_raw+ep "$mnt/prog"
check "set through the mount: seen at once" test "$(caps "$mnt/prog")" = 1
echo again >> "$mnt/prog"
check "a write through the mount drops it in the source" test "$(caps "$src/prog")" = 0
check "and through the mount" test "$(caps "$mnt/prog")" = 0
setcap cap_net_raw+ep "$src/prog"
sleep 1.2
check "set behind the mount: seen after attr_timeout" test "$(caps "$mnt/prog")" = 1
setcap -r "$mnt/prog"
check "removed through the mount: gone at once" test "$(caps "$mnt/prog")" = 0
getxattrs() { "$CTL" stats "$mnt" | awk '$1 == "getxattr" { print $2 }'; }
before=$(getxattrs)
python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
for i in range(100):
    os.write(fd, b"%d\n" % i)' "$mnt/many"
asked=$(( $(getxattrs) - before ))
check "100 writes to an open file: the kernel asked for its capability once (asked $asked)" \
	test "$asked" -le 2
to_workers() { "$CTL" stats "$mnt" | awk '$1 == "getxattr" { print $2 - $NF }'; }
before=$(to_workers)
python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
for i in range(3):
    os.write(fd, b"%d\n" % i)
os.close(fd)' "$mnt/excl"
check "writes to a file made by O_EXCL: no worker asked for its capability" \
	test "$(to_workers)" = "$before" -a "$(caps "$mnt/excl")" = 0
echo once > "$mnt/prog2"
echo twice >> "$mnt/prog2"
setcap cap_net_raw+ep "$src/prog2"
echo thrice >> "$mnt/prog2"
check "set behind the mount after writes: the next write drops it" \
	test "$(caps "$src/prog2")" = 0
chmod 04777 "$src/prog2"
python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
os.setresuid(65534, 65534, 65534)
os.write(fd, b"by nobody\n")' "$mnt/prog2"
check "a set-id bit set behind the mount: a user's write drops it" \
	test "$(stat -c %a "$src/prog2")" = 777
fusermount3 -u "$mnt"

# Listings: the loop answers the kernel's last READDIR of a listing the
# worker's reached the end of (it comes back empty).  A name made through
# the mount in between voids that; one made behind the mount shows from
# the next listing (rewinddir) on.
src=$T/src-list mnt=$T/mnt-list
mkdir -p "$src/d" "$mnt"
for i in $(seq 300); do : > "$src/d/a-file-with-a-long-name-$i"; done
"$AIODFS" "$src" "$mnt" || exit 1
echo "== listings"
python3 - "$src" "$mnt" "$CTL" <<'PY' || status=1
import ctypes, os, subprocess, sys

src, mnt, ctl = sys.argv[1:]
failed = 0
libc = ctypes.CDLL(None, use_errno=True)
libc.opendir.restype = ctypes.c_void_p
libc.opendir.argtypes = [ctypes.c_char_p]
libc.readdir64.restype = ctypes.c_void_p
libc.readdir64.argtypes = [ctypes.c_void_p]
libc.rewinddir.argtypes = [ctypes.c_void_p]
libc.closedir.argtypes = [ctypes.c_void_p]

def check(what, cond):
    global failed
    print(("ok   " if cond else "FAIL ") + what)
    failed += not cond

def by_loop():
    """READDIR and READDIRPLUS requests the loop answered, and all."""
    loop = total = 0
    for line in subprocess.run([ctl, "stats", mnt], capture_output=True,
                               text=True, check=True).stdout.splitlines():
        f = line.split()
        if f and f[0] in ("readdir", "readdirplus"):
            total += int(f[1])
            loop += int(f[-1])
    return loop, total

def rest(dirp):
    """The names readdir gives from where dirp stands to the end."""
    out = set()
    while True:
        p = libc.readdir64(dirp)
        if not p:
            return out
        out.add(ctypes.string_at(p + 19).decode())  # d_name

d, sd = os.path.join(mnt, "d"), os.path.join(src, "d")
l0, t0 = by_loop()
check("a listing of 300 names: as in the source", set(os.listdir(d)) == set(os.listdir(sd)))
l1, t1 = by_loop()
check(f"its last READDIR answered by the loop ({l1 - l0} of {t1 - t0})",
      l1 - l0 == 1 and t1 - t0 >= 3)
dirp = libc.opendir(d.encode())
names = rest(dirp)
open(os.path.join(d, "made-through"), "w").close()
l2, t2 = by_loop()
more = rest(dirp)
l3, t3 = by_loop()
check(f"a name made through the mount after the end: a worker lists on ({l3 - l2} by loop)",
      l3 == l2 and t3 == t2 + 1 and more <= {"made-through"})
open(os.path.join(sd, "made-behind"), "w").close()
libc.rewinddir(dirp)
again = rest(dirp)
check("after rewinddir: the name made behind the mount, and the one through it",
      again == names | {"made-through", "made-behind"})
libc.closedir(dirp)
sys.exit(1 if failed else 0)
PY
# A file asked for its attributes twice: the daemon keeps an fd of it on
# a local source and answers itself.  Removed behind the mount, it loses
# that fd at its next GETATTR (which shows no link left), and the one
# after that fails as before, with ESTALE from its handle (the kernel
# then looks the name up again: ENOENT).
echo gone > "$mnt/gone"
for i in 1 2; do stat --cached=never "$mnt/gone" >/dev/null; done
rm "$src/gone"
r=$(stat --cached=never -c %h "$mnt/gone" 2>&1)
check "a file removed behind the mount: no link left ($r)" test "$r" = 0
r=$(stat --cached=never "$mnt/gone" 2>&1)
check "then gone ($r)" grep -qE "Stale file handle|No such file" <<<"$r"
pid=$("$CTL" stats "$mnt" | sed -n '1s/.*, pid \([0-9]*\),.*/\1/p')
check "and the daemon ($pid) holds no fd of it" \
	test -n "$pid" -a -z "$(find /proc/"$pid"/fd -lname "*/gone (deleted)" 2>/dev/null)"
fusermount3 -u "$mnt"

# A name the source lacks: the kernel keeps its absence for
# negative_timeout (default entry_timeout) and asks the daemon no more;
# a name made behind the mount shows once that has passed, one made
# through the mount at once.  An O_EXCL create asks the source anyway.
src=$T/src-neg mnt=$T/mnt-neg
mkdir -p "$src" "$mnt"
"$AIODFS" -o entry_timeout=1 "$src" "$mnt" || exit 1
echo "== negative entries (entry_timeout=1)"
lookups() { "$CTL" stats "$mnt" | awk '$1 == "lookup" { n = $2 } END { print n + 0 }'; }
before=$(lookups)
for i in 1 2 3; do stat "$mnt/absent" 2>/dev/null; done
check "three stats of a missing name: one lookup (got $(( $(lookups) - before )))" \
	test $(( $(lookups) - before )) = 1
echo behind > "$src/absent"
check "made behind the mount: still missing before the timeout" \
	test ! -e "$mnt/absent"
check "an O_EXCL create of it fails with EEXIST" python3 -c '
import errno, os, sys
try:
    os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL)
except FileExistsError:
    sys.exit(0)
sys.exit(1)' "$mnt/absent"
sleep 1.2
check "and seen after it" test "$(cat "$mnt/absent" 2>&1)" = behind
stat "$mnt/later" 2>/dev/null
echo through > "$mnt/later"
check "made through the mount: seen at once" test "$(cat "$mnt/later" 2>&1)" = through
stat "$mnt/dir" 2>/dev/null
mkdir "$mnt/dir"
check "a directory made through the mount: seen at once" test -d "$mnt/dir"
rm "$mnt/later"
check "removed through the mount: gone at once" test ! -e "$mnt/later"
fusermount3 -u "$mnt"
"$AIODFS" -o entry_timeout=1,negative_timeout=0 "$src" "$mnt" || exit 1
before=$(lookups)
for i in 1 2 3; do stat "$mnt/absent2" 2>/dev/null; done
check "negative_timeout=0: three stats, three lookups (got $(( $(lookups) - before )))" \
	test $(( $(lookups) - before )) = 3
echo behind > "$src/absent2"
check "and a name made behind the mount is seen at once" test -e "$mnt/absent2"
fusermount3 -u "$mnt"

# A directory the kernel still knows by name (entry_timeout=30), removed
# and made again behind the mount, with one worker, which keeps the fd
# of a directory it made names in: a create in it fails with ESTALE
# from the worker, as from the handle, and the kernel looks the path up
# again, finding the new directory.  The create lands there.
src=$T/src-redo mnt=$T/mnt-redo
mkdir -p "$src" "$mnt"
"$AIODFS" -o entry_timeout=30,workers=1 "$src" "$mnt" || exit 1
echo "== a directory made again behind the mount (entry_timeout=30)"
mkdir "$mnt/d" && touch "$mnt/d/a" "$mnt/d/b"
rm -r "$src/d" && mkdir "$src/d"
check "a create in it succeeds ($(touch "$mnt/d/c" 2>&1))" test -e "$src/d/c"
check "and only the new directory's names show" test "$(ls "$mnt/d")" = c
fusermount3 -u "$mnt"
[ "$failures" = 0 ] || status=1
exit $status
