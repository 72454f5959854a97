#!/bin/bash
# The daemon's life on real mounts: bad input, detaching, one thread and
# N workers, clean unmount on each signal, kill -9, mount(8) and fstab,
# and a walk over far more files than the daemon may hold fds.
#
#   AIODFS=build/fs/aiodfs AIOD_WORKER=build/aiod/aiod tests/integration/lifecycle.sh
#
# Exits 77 (skip) only if /dev/fuse is missing.
set -u
. "$(dirname "$0")/../lib.sh" lifecycle
mkdir -p "$T/src" "$T/mnt" "$T/mnt2"
echo data >"$T/src/file"

# The pid of the daemon serving mountpoint $1 (its command line names it).
daemon_pid() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(cat "$p/comm" 2>/dev/null)" = aiodfs ] || continue
		tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qx "$1" && { echo "${p#/proc/}"; return; }
	done
}

workers_of() { aiod_workers "$1"; }

gone() { for p in "$@"; do [ -d "/proc/$p" ] && return 1; done; return 0; }
not_mounted() { ! mounted "$1"; }

# ---- bad input: one line on stderr, non-zero exit, nothing mounted ----
# Mounts under our scratch directory (other mounts on the machine may come and go).
nmounts() { awk -v t="$T/" 'index($2, t) == 1' /proc/mounts | wc -l; }
# In a mount namespace of its own whose /dev has no fuse device.
nofuse() {
	unshare -m --propagation private sh -c \
		'mount -t tmpfs none /dev && mknod /dev/null c 1 3 && exec "$@"' sh "$@"
}
# bad WHAT ARGS...: aiodfs ARGS (run by $run, if set) must be refused.
bad() {
	local what=$1 before rc lines
	shift
	before=$(nmounts)
	${run:-} "$AIODFS" "$@" 2>"$T/err" >/dev/null
	rc=$?
	lines=$(wc -l <"$T/err")
	if [ $rc -ne 0 ] && [ "$lines" -eq 1 ] && [ "$(nmounts)" = "$before" ]; then
		ok "bad input: $what: $(cat "$T/err")"
	else
		fail "bad input: $what: rc=$rc, $lines lines: $(cat "$T/err")"
	fi
}
bad "missing source" "$T/nonexistent" "$T/mnt"
bad "source not a directory" "$T/src/file" "$T/mnt"
bad "missing mountpoint" "$T/src"
bad "no arguments"
bad "mountpoint does not exist" "$T/src" "$T/nonexistent"
bad "mountpoint inside source" "$T/src" "$T/src"
bad "unknown option" -o no_such_option "$T/src" "$T/mnt"
bad "workers=0" -o workers=0 "$T/src" "$T/mnt"
bad "workers=1025" -o workers=1025 "$T/src" "$T/mnt"
bad "workers=-1" -o workers=-1 "$T/src" "$T/mnt"
bad "workers=4x" -o workers=4x "$T/src" "$T/mnt"
bad "workers=4294967297" -o workers=4294967297 "$T/src" "$T/mnt"
bad "attr_timeout=1x" -o attr_timeout=1x "$T/src" "$T/mnt"
bad "attr_timeout=0x10" -o attr_timeout=0x10 "$T/src" "$T/mnt"
bad "attr_timeout=inf" -o attr_timeout=inf "$T/src" "$T/mnt"
bad "a /dev/fd/N mountpoint" "$T/src" /dev/fd/5
bad "poll=10001" -o poll=10001 "$T/src" "$T/mnt"
bad "readahead=65537" -o readahead=65537 "$T/src" "$T/mnt"
bad "bad cache mode" -o cache=sometimes "$T/src" "$T/mnt"
bad "extra argument" "$T/src" "$T/mnt" "$T/mnt2"
run=nofuse bad "no /dev/fuse" "$T/src" "$T/mnt"
run="env AIOD_WORKER=$T/no-such-aiod" bad "no worker program" "$T/src" "$T/mnt"
grep -q "$T/no-such-aiod" "$T/err" && ok "the message names the worker program" ||
	fail "the message does not name the worker program: $(cat "$T/err")"

# ---- an ordinary user mounts: fusermount3 does it for them ----
# In a mount namespace of our own whose /dev/fuse lets anyone open it, as
# Debian's does (this machine's is root's only): nobody mounts a source
# of theirs, reads, creates, runs a program, appends to a root 04666
# file in it (which drops the set-id bit, as on the source), asks
# aiodfsctl, and unmounts; the daemon then exits 0.  With XDG_RUNTIME_DIR set it says
# nothing on stderr (no word of passthrough, which only root may have
# and nobody asked for); without, one line: no control socket.
mkdir -p "$T/user/src" "$T/user/mnt" "$T/user/run" && echo mine >"$T/user/src/f" &&
	cp /bin/true "$T/user/src/true" && chown -R nobody: "$T/user" &&
	chmod 700 "$T/user/run" && mkdir "$T/dev" ||
	fail "cannot set up the user's mount"
# setid_file: a root 04666 file in the user's source.
setid_file() { echo root >"$T/user/src/setid" && chmod 4666 "$T/user/src/setid"; }
ctl=${AIODFSCTL:-$(dirname "$AIODFS")/aiodfsctl}
# user_mount XDG: the user's session, XDG_RUNTIME_DIR=XDG (empty: unset).
user_mount() {
	# shellcheck disable=SC2016
	unshare -m --propagation private sh -c '
		# The node on a tmpfs of its own: $T may be on a nodev /tmp.
		mount -t tmpfs none "$1/dev" && mknod -m 666 "$1/dev/fuse" c 10 229 &&
			mount --bind "$1/dev/fuse" /dev/fuse || exit 1
		if [ -n "$4" ]; then export XDG_RUNTIME_DIR=$4; else unset XDG_RUNTIME_DIR; fi
		exec setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c "
			\"$2\" -f \"$1/user/src\" \"$1/user/mnt\" 2>\"$1/user/err\" &
			pid=\$!
			for i in \$(seq 100); do
				grep -q \" $1/user/mnt fuse\" /proc/mounts && break
				sleep 0.1
			done
			cat \"$1/user/mnt/f\" && echo new >\"$1/user/mnt/g\" &&
				\"$1/user/mnt/true\" && echo ran
			echo more >>\"$1/user/mnt/setid\" && echo appended
			\"$3\" stats \"$1/user/mnt\" >/dev/null 2>&1 && echo ctl
			fusermount3 -u \"$1/user/mnt\"
			wait \$pid; echo daemon \$?"' sh "$T" "$AIODFS" "$ctl" "$1"
}
setid_file
out=$(user_mount "$T/user/run" 2>&1 | tr '\n' ' ')
if [ "$out" = "mine ran appended ctl daemon 0 " ] && [ ! -s "$T/user/err" ] &&
	[ "$(stat -c %U "$T/user/src/g" 2>/dev/null)" = nobody ] &&
	[ "$(stat -c %a "$T/user/src/setid")" = 666 ]; then
	ok "an ordinary user mounts, reads, creates, runs a program, appends to a root 04666 file (the bit dropped), asks aiodfsctl, unmounts; nothing on stderr"
else
	fail "an ordinary user's mount: $out; setid $(stat -c %a "$T/user/src/setid"); stderr: $(cat "$T/user/err" 2>/dev/null)"
fi
setid_file
out=$(user_mount "" 2>&1 | tr '\n' ' ')
if [ "$out" = "mine ran appended daemon 0 " ] && [ "$(wc -l <"$T/user/err")" = 1 ] &&
	grep -q "no control socket: XDG_RUNTIME_DIR is not set" "$T/user/err"; then
	ok "without XDG_RUNTIME_DIR, one line: $(cat "$T/user/err")"
else
	fail "an ordinary user's mount without XDG_RUNTIME_DIR: $out; stderr: $(cat "$T/user/err" 2>/dev/null)"
fi

# ---- detaching: live on return; one thread; workers=N ----
# Nothing of the daemon's holds the caller's stdout or stderr, nor
# another file of the caller's, once it has detached: $(aiodfs ...)
# returns with the mount live, not at its unmount.
exec 7<"$T/src/file"
( out=$("$AIODFS" "$T/src" "$T/mnt" 2>&1); echo "$? $out" >"$T/subst" ) &
if wait_for -t 10 test -s "$T/subst" && [ "$(cat "$T/subst")" = "0 " ] && mounted "$T/mnt"; then
	ok "\$(aiodfs ...) returns with the mount live"
else
	fail "\$(aiodfs ...) did not return within 10 s with the mount live: $(cat "$T/subst")"
fi
exec 7<&-
pid=$(daemon_pid "$T/mnt")
held=$(for p in $pid $(aiod_workers "$pid"); do
	ls -l "/proc/$p/fd" | grep -c "$T/src/file"
	for fd in 0 1 2; do
		[ "$(readlink "/proc/$p/fd/$fd")" = /dev/null ] || echo "$p:$fd"
	done
done 2>/dev/null | grep -v -x 0)
[ -n "$pid" ] && [ -z "$held" ] &&
	ok "the daemon and its workers hold no file of the caller's; their stdio is /dev/null" ||
	fail "the daemon ($pid) or its workers hold the caller's files: $held"
fusermount3 -u "$T/mnt"
wait_for -t 10 gone "$pid"
if "$AIODFS" -o workers=3 "$T/src" "$T/mnt" && mounted "$T/mnt" &&
	[ "$(cat "$T/mnt/file")" = data ]; then
	ok "returns with the mount live"
else
	fail "mount not live on return"
fi
pid=$(daemon_pid "$T/mnt")
threads=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")
[ "$threads" = 1 ] && ok "one thread" || fail "daemon has $threads threads"
nw=$(workers_of "$pid" | wc -w)
[ "$nw" = 3 ] && ok "workers=3 gives 3 workers" || fail "workers=3 gave $nw"
bad "busy mountpoint" "$T/src" "$T/mnt"
mounted "$T/mnt" && ok "busy mountpoint left mounted" || fail "busy mountpoint unmounted"
# The mount's readahead: max_read's worth by default, or as asked.
readahead() { cat "/sys/class/bdi/$(awk -v m="$1" '$5 == m { d = $3 } END { print d }' \
	/proc/self/mountinfo)/read_ahead_kb"; }
ra=$(readahead "$T/mnt")
[ "$ra" = 1024 ] && ok "readahead 1024 KiB by default" || fail "readahead $ra KiB"
"$AIODFS" -o readahead=256 "$T/src" "$T/mnt2" && ra=$(readahead "$T/mnt2")
fusermount3 -u "$T/mnt2"
[ "$ra" = 256 ] && ok "readahead=256" || fail "readahead=256 gave $ra"

# ---- each signal unmounts cleanly, and the workers go too ----
for sig in TERM INT HUP; do
	mounted "$T/mnt" || "$AIODFS" "$T/src" "$T/mnt"
	pid=$(daemon_pid "$T/mnt")
	ws=$(workers_of "$pid")
	kill -s "$sig" "$pid"
	if wait_for not_mounted "$T/mnt" && wait_for gone "$pid" $ws; then
		ok "SIG$sig unmounts; daemon and workers exit"
	else
		fail "SIG$sig: still mounted or processes left"
	fi
done

# ---- kill -9: ENOTCONN, no worker left, a fresh mount works ----
"$AIODFS" "$T/src" "$T/mnt"
pid=$(daemon_pid "$T/mnt")
ws=$(workers_of "$pid")
kill -9 "$pid"
wait_for gone "$pid" && sleep 0.1
err=$(stat "$T/mnt/file" 2>&1)
case $err in
*"not connected"*) ok "kill -9: ENOTCONN" ;;
*) fail "kill -9: stat said: $err" ;;
esac
wait_for -t 1 gone $ws && ok "kill -9: every worker gone within 1 s" || fail "kill -9: workers left: $ws"
umount -l "$T/mnt"
if "$AIODFS" "$T/src" "$T/mnt" && [ "$(cat "$T/mnt/file")" = data ]; then
	ok "a fresh mount after kill -9 works"
else
	fail "no fresh mount after kill -9"
fi
fusermount3 -u "$T/mnt"

# ---- mount(8) and fstab ----
# mount(8) runs helpers with a PATH of its own, where an installed aiodfs
# is found as type fuse.aiodfs.  The build tree's is not, so mount(8) is
# tested with the "PROGRAM#SOURCE" form, and the fuse.aiodfs form through
# mount.fuse3 itself, which is what mount(8) would run.
if PATH="$(dirname "$AIODFS"):$PATH" mount.fuse3 "$T/src" "$T/mnt" -t aiodfs \
	-o rw,workers=2,cache=never && [ "$(cat "$T/mnt/file")" = data ] &&
	mounted "$T/mnt"; then
	ok "mount.fuse3 -t aiodfs (what an fstab line of type fuse.aiodfs runs)"
else
	fail "mount.fuse3 -t aiodfs"
fi
umount "$T/mnt" && ok "umount" || fail "umount"
echo "$AIODFS#$T/src $T/mnt fuse workers=2,cache=never 0 0" >"$T/fstab"
if mount --fstab "$T/fstab" "$T/mnt" && [ "$(cat "$T/mnt/file")" = data ] &&
	mounted "$T/mnt"; then
	ok "mount MOUNTPOINT from an fstab line"
else
	fail "mount from fstab"
fi
umount "$T/mnt"

# ---- more inodes than fds: 200,000 files, 100,000 of them in one directory ----
# RLIMIT_NOFILE is 20000 here; ulimit -n lowers it further for the daemon,
# so a known inode holding an fd would show as EMFILE.  A sanitizer build
# walks a tenth (20,000 files, still five times its fds): there the
# point is the daemon's memory, and the full walk takes minutes.
ndirs=100 nbig=100000
ldd "$AIODFS" | grep -q libasan && ndirs=10 nbig=10000
total=$((ndirs * 1000 + nbig))
mkdir "$T/src/many" "$T/src/big"
(cd "$T/src/many" && seq -f "d%g" 0 $((ndirs - 1)) | xargs mkdir && for d in d*; do
	(cd "$d" && seq -f "f%g" 0 999 | xargs touch)
done)
(cd "$T/src/big" && seq -f "entry-%g" 0 $((nbig - 1)) | xargs touch)
(ulimit -n 4096 && "$AIODFS" -o cache=always "$T/src" "$T/mnt")
# The big directory listed completely, each entry once.
n=$(ls -f "$T/mnt/big" | grep -c '^entry-')
u=$(ls -f "$T/mnt/big" | grep '^entry-' | sort -u | wc -l)
[ "$n" = $nbig ] && [ "$u" = $nbig ] && ok "$nbig entries listed once each" ||
	fail "big directory: $n entries, $u distinct of $nbig"
n=$(find "$T/mnt/many" "$T/mnt/big" -type f | wc -l)
s=$(find "$T/mnt/many" "$T/mnt/big" -type f -exec stat -c %i {} + 2>&1 | grep -c '^[0-9]')
if [ "$n" = $total ] && [ "$s" = $total ]; then
	ok "$total files found and stat'ed by a daemon with 4096 fds"
else
	fail "walk: found $n, stat'ed $s of $total"
fi
# d_ino (readdir) is the source's st_ino.
a=$(ls -i "$T/mnt/many/d7" | sort)
b=$(ls -i "$T/src/many/d7" | sort)
[ "$a" = "$b" ] && ok "inode numbers are the source's" || fail "inode numbers differ"
fusermount3 -u "$T/mnt"

echo "lifecycle: $failures failed"
[ $failures -eq 0 ]
