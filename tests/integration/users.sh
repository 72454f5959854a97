#!/bin/bash
# SPDX-License-Identifier: MIT
#
# users.sh - a mount shared by users: the source decides, as the caller.
#
#   users.sh
#
# Makes (test_users in tests/lib.sh) group aiodtg and users aiodt1 (in
# aiodtg as a supplementary group) and aiodt2, mounts as root with
# allow_other, and without and with default_permissions checks, for each
# user through the mount, that: a root 0600 file cannot be read; a file
# in a root 0755 directory cannot be deleted; a 0640 root:aiodtg file is
# readable through the supplementary group only, also as the last of 300
# groups; an ACL on the source
# that grants aiodt2 read access to a 0600 file is honoured, and one
# that denies aiodt1 a 0644 file is too; a file created in a 1777
# directory belongs to its creator in the source, with the caller's
# umask applied, and another user cannot delete it from the sticky
# directory; that user cannot set a trusted xattr or file capabilities
# on its own file, which root can; with a file open for writing, a user
# still cannot chmod, chown or set the times of a root file, nor
# truncate a root 0600 file root has open.  (Escapes from the source are
# behind.sh's.)  Needs useradd, groupadd, setfacl.
#
# Environment: AIODFS and AIOD_WORKER as for tests/lib.sh.  Exits 0 if
# every check passed, 1 if any failed, 77 (skip) without /dev/fuse or
# when not run as root.
set -u
[ "$(id -u)" = 0 ] || { echo "users.sh: needs root; skipping"; exit 77; }
. "$(dirname "$0")/../lib.sh" users

test_users || exit 1

for opts in allow_other allow_other,default_permissions; do
	src=$T/src-$opts mnt=$T/mnt-$opts
	mkdir -p "$src" "$mnt"
	(
		cd "$src" || exit 1
		echo secret >secret && chmod 600 secret
		mkdir rootdir && echo z >rootdir/z
		echo group >group && chgrp aiodtg group && chmod 640 group
		echo granted >granted && chmod 600 granted && setfacl -m u:aiodt2:r granted
		echo denied >denied && chmod 644 denied && setfacl -m u:aiodt1:- denied
		mkdir tmp && chmod 1777 tmp
		mkdir private && echo p >private/f && chmod 700 private
	) || { fail "setting up the source"; continue; }
	"$AIODFS" -o "$opts" "$src" "$mnt" || { fail "mount -o $opts"; continue; }
	echo "== -o $opts"
	python3 - "$src" "$mnt" <<'PY' || fail "users -o $opts"
import errno, grp, os, pwd, sys

src, mnt = sys.argv[1:]
failed = 0

def check(what, cond):
    global failed
    print(("ok   " if cond else "FAIL ") + what)
    failed += not cond

def as_user(name, fn, groups=None):
    """fn() run by user name with its groups (or these); its result or errno name."""
    pw = pwd.getpwnam(name)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.setgroups(groups or os.getgrouplist(name, pw.pw_gid))
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
        os.umask(0o027)
        try:
            res = str(fn())
        except OSError as e:
            res = errno.errorcode[e.errno]
        os.write(w, res.encode())
        os._exit(0)
    os.close(w)
    out = os.read(r, 4096).decode()
    os.waitpid(pid, 0)
    return out

def read(path):
    with open(os.path.join(mnt, path)) as f:
        return f.read().strip()

def create(path):
    fd = os.open(os.path.join(mnt, path), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o666)
    os.close(fd)
    return "created"

for user in ("aiodt1", "aiodt2"):
    check(f"{user} cannot read a root 0600 file", as_user(user, lambda: read("secret")) == "EACCES")
    check(f"{user} cannot delete from a root 0755 directory",
          as_user(user, lambda: os.unlink(os.path.join(mnt, "rootdir/z"))) == "EACCES")
# Root's stat brings private/f into the caches: a user's lookup of it
# must still ask the source, as the user, whose search is refused.
os.stat(os.path.join(mnt, "private/f"))
for user in ("aiodt1", "aiodt2"):
    check(f"{user} cannot stat a file in a root 0700 directory root has just looked into",
          as_user(user, lambda: os.stat(os.path.join(mnt, "private/f"))) == "EACCES")
check("aiodt1 reads a 0640 file of its supplementary group",
      as_user("aiodt1", lambda: read("group")) == "group")
check("aiodt2, not in the group, cannot", as_user("aiodt2", lambda: read("group")) == "EACCES")
# More groups than the daemon's requests hold at once (256): all count.
many = list(range(50001, 50300)) + [grp.getgrnam("aiodtg").gr_gid]
got = as_user("aiodt2", lambda: read("group"), groups=many)
check(f"aiodt2 with 300 supplementary groups, the last aiodtg, reads it ({got})", got == "group")
check("an ACL grants aiodt2 a root 0600 file", as_user("aiodt2", lambda: read("granted")) == "granted")
check("... not aiodt1", as_user("aiodt1", lambda: read("granted")) == "EACCES")
check("an ACL denies aiodt1 a 0644 file", as_user("aiodt1", lambda: read("denied")) == "EACCES")
check("... not aiodt2", as_user("aiodt2", lambda: read("denied")) == "denied")

check("aiodt1 creates in a 1777 directory", as_user("aiodt1", lambda: create("tmp/mine")) == "created")
st = os.stat(os.path.join(src, "tmp/mine"))
check(f"owned by aiodt1:nogroup in the source, mode 0640 after umask 027 "
      f"(got {pwd.getpwuid(st.st_uid).pw_name}:{grp.getgrgid(st.st_gid).gr_name} {st.st_mode & 0o7777:o})",
      st.st_uid == pwd.getpwnam("aiodt1").pw_uid and st.st_gid == grp.getgrnam("nogroup").gr_gid
      and st.st_mode & 0o7777 == 0o640)
check("aiodt2 cannot delete it from the sticky directory",
      as_user("aiodt2", lambda: os.unlink(os.path.join(mnt, "tmp/mine"))) == "EPERM")

# A file's mode, owner and times set through an open file go through a
# file the daemon has open on it (setattr_obj() in fs/ops.c): the rights
# checked are still the caller's on the file, not what the open allows.
shared = os.path.join(mnt, "shared")
fd = os.open(shared, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
os.fchmod(fd, 0o666)
sfd = os.open(os.path.join(mnt, "secret"), os.O_RDWR)
def set_through_open(fn):
    def run():
        ufd = os.open(shared, os.O_WRONLY)
        try:
            fn(ufd)
            return "done"
        finally:
            os.close(ufd)
    return run
for user in ("aiodt1", "aiodt2"):
    check(f"{user}, with it open for writing, cannot chmod a root 0666 file",
          as_user(user, set_through_open(lambda u: os.fchmod(u, 0o777))) == "EPERM")
    check(f"... nor chown it", as_user(user, set_through_open(
        lambda u: os.fchown(u, pwd.getpwnam(user).pw_uid, -1))) == "EPERM")
    check(f"... nor set its times", as_user(user, set_through_open(
        lambda u: os.utime(u, (1, 1)))) == "EPERM")
    check(f"... but may set them to now", as_user(user, set_through_open(
        lambda u: os.utime(u))) == "done")
    check(f"{user} cannot truncate a root 0600 file root has open for writing",
          as_user(user, lambda: os.truncate(os.path.join(mnt, "secret"), 0)) == "EACCES")
os.close(sfd)
os.fchmod(fd, 0o640)
os.fchown(fd, -1, grp.getgrnam("aiodtg").gr_gid)
os.utime(fd, ns=(1_000_000_123, 2_000_000_456))
os.close(fd)
st = os.stat(os.path.join(src, "shared"))
check(f"root's chmod, chown and utime through its open file reach the source "
      f"(got {st.st_mode & 0o7777:o} {grp.getgrgid(st.st_gid).gr_name} {st.st_mtime_ns})",
      st.st_mode & 0o7777 == 0o640 and st.st_gid == grp.getgrnam("aiodtg").gr_gid
      and st.st_mtime_ns == 2_000_000_456 and st.st_atime_ns == 1_000_000_123)

# Privileges only root has, on the caller's own file: refused to a user
# (the kernel checks the caller, and workers run an ordinary caller's
# requests with no capability in effect); granted to root (the workers
# keep CAP_SETFCAP and CAP_SYS_ADMIN for it).
mine = os.path.join(mnt, "tmp/mine")
check("aiodt1 cannot set a trusted xattr on its own file",
      as_user("aiodt1", lambda: os.setxattr(mine, "trusted.x", b"1")) == "EPERM")
caps = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_raw+ep
check("aiodt1 cannot give its own file capabilities",
      as_user("aiodt1", lambda: os.setxattr(mine, "security.capability", caps)) == "EPERM")
os.setxattr(mine, "trusted.x", b"1")
os.setxattr(mine, "security.capability", caps)
check("root can do both through the mount",
      os.getxattr(os.path.join(src, "tmp/mine"), "trusted.x") == b"1" and
      os.getxattr(os.path.join(src, "tmp/mine"), "security.capability") == caps)
sys.exit(1 if failed else 0)
PY
	unmount "$mnt"
done
echo "users: $failures failed"
[ "$failures" = 0 ]
