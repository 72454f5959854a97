/* SPDX-License-Identifier: MIT */
/*
 * aiod - the worker process of libaiod.  It runs blocking syscalls on
 * behalf of one client, one request at a time.
 *
 * INVOCATION
 *
 *   aiod PARENT_PID NSHARED WSTATE
 *
 * started by libaiod (posix_spawn), never by hand, with:
 *   fd 3  one end of a SOCK_SEQPACKET socketpair; the client has the other
 *   fd 4  the arena, a sealed memfd the client created and sized
 *   fd 5  and up: the pool's shared fds (NSHARED of them, and more as
 *         the client sends them), kept for the worker's life; the
 *         worker holds the numbers of those to come with copies of fd 3
 * and no other fds beyond 0-2, the default disposition for every signal,
 * a signal mask holding only the cancel signal (unblocked once its
 * handler is in place), and a process group of its own, so that a ^C on
 * the client's terminal does not reach it.  PARENT_PID is the client's
 * pid: the worker asks the kernel for SIGKILL when its parent dies and
 * exits at once if the parent is already gone, so no worker outlives its
 * client.  WSTATE is the offset of the worker's own struct aiod_wstate
 * in the arena.
 *
 * PROTOCOL (lib/aiod-proto.h)
 *
 * The worker maps the arena, checks its header's magic and version, and
 * sends HELLO.  Then, for each doorbell datagram on fd 3 (an arena offset
 * plus up to two fds as SCM_RIGHTS), it checks the message lies in the
 * arena, switches to the message's credentials, runs the handler for its
 * opcode from the table in ops.c, writes the result into the message,
 * and replies with the same offset, passing a newly opened fd back as
 * SCM_RIGHTS.  It closes the fds it received once the request is done;
 * the client kept its own copies, except for CLOSE, whose fd the worker
 * closes last.  An fd the client asks it to keep (aiod_msg.keep) goes in
 * one of its slots instead, and later requests name it by slot: no fd
 * passed, and no close of a copy, which on NFS or a FUSE source is a
 * flush round trip.  A doorbell for offset 0 carries a shared fd instead.  A
 * request that asks for it gets its reply written by the worker itself,
 * and then, while the arena header's lazy word is set, no REPLY datagram
 * (see struct aiod_wstate); nor does any request that returns no fd
 * while its awake word is.  EOF on fd 3 means the client is done: the
 * worker exits.
 * With the arena header's poll_us set, a worker that has replied polls
 * for its next doorbell for that long before it blocks, if no other
 * worker is polling (see poll_begin()); a request with no fds then
 * comes as an offset in memory instead of a datagram.
 *
 * WHY THESE MECHANISMS
 *
 * Processes, not threads: a worker stuck in the kernel (a hung NFS
 * server) cannot take the client down, can be killed on its own, and
 * has its own fsuid, fsgid and groups (credentials are per thread in the
 * kernel but glibc makes setgroups process-wide).  A socket per worker:
 * the client picks the worker, so it always knows who holds what; the
 * socket carries fds, which shared memory cannot; and the socket's EOF
 * tells each side of the other's death.  Shared memory for everything
 * else: arguments, results and data up to megabytes cross without being
 * copied through the socket.  SCHED_BATCH, see yield_to_client().
 *
 * CANCELLATION
 *
 * The client sets msg->cancel and sends AIOD_CANCEL_SIGNAL, whose handler
 * is installed without SA_RESTART, so a blocking wait (flock, F_OFD_SETLKW,
 * a FIFO open, NOP's sleep) ends with EINTR; the handler checks the flag
 * and gives up.  A signal that arrives just before such a wait starts
 * would be lost, so while a wait is in progress an interval timer also
 * interrupts it every WAIT_POLL_MS to look at the flag again.
 *
 * TRUST
 *
 * The worker trusts its client: it runs what it is asked, with the
 * credentials it is given, within what its own privileges allow.  Of
 * those it keeps only what file operations on behalf of any caller need
 * (see drop_privileges()), and can gain none through exec.  It
 * still checks every offset and length against the arena's bounds, so a
 * client bug shows as -EINVAL rather than a wild write.  The client, for
 * its part, keeps its allocator's bookkeeping outside the arena.
 *
 * DEBUGGING
 *
 * AIOD_TRACE=1 in the environment makes each worker print one line per
 * request on stderr: pid, request id, op, fds, names and result.
 */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "worker.h"

#define WAIT_POLL_MS 50

static char *arena;
static size_t arena_size;
static unsigned nshared;        /* fds from AIOD_WORKER_SHARED_FD on */
static struct aiod_wstate *ws;  /* ours, in the arena */
static uint32_t *wstate;        /* its state */
static uint32_t received;       /* datagrams read (aiod_wstate.sent) */
static bool polling;            /* poll_begin() said so */
static unsigned poll_us;        /* see poll_begin() */
static pid_t self;
static bool trace;
static int kept[AIOD_KEEP_SLOTS]; /* copies kept for the client, or -1 */

/*
 * The capabilities a worker keeps, where it has them (a root client's):
 * those a file operation may need to act as any caller, root included
 * (permission overrides, ownership, set-id bits, devices, immutable
 * files, file capabilities, trusted xattrs and quotas, open by handle,
 * leases) and those that switch identity.  Everything else (network,
 * modules, ptrace, raw I/O, signals to others, clocks...) goes from the
 * permitted, effective and bounding sets, and no_new_privs keeps an exec
 * from bringing any back.
 */
static const int kept_caps[] = {
	CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER,
	CAP_FSETID, CAP_SETGID, CAP_SETUID, CAP_LINUX_IMMUTABLE, CAP_MKNOD,
	CAP_LEASE, CAP_SETFCAP, CAP_SYS_ADMIN, CAP_SYS_RESOURCE,
};

/*
 * The effective set kept, and whether it is in effect now.  A caller's
 * fsuid other than 0 clears only the filesystem capabilities from the
 * effective set; trusted xattrs (CAP_SYS_ADMIN), file capabilities
 * (CAP_SETFCAP), quotas (CAP_SYS_RESOURCE) and leases would still be
 * granted to any caller.  So a request with an ordinary caller's
 * credentials runs with an empty effective set (see apply_cred()).
 */
static uint64_t own_caps;
static bool caps_on;

static int set_caps(bool on)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct data[2];
	uint64_t eff = on ? own_caps : 0;

	if (on == caps_on || !own_caps)
		return 0;
	if (syscall(SYS_capget, &hdr, data) < 0)
		return -errno;
	data[0].effective = (uint32_t)eff;
	data[1].effective = (uint32_t)(eff >> 32);
	if (syscall(SYS_capset, &hdr, data) < 0)
		return -errno;
	caps_on = on;
	return 0;
}

static int drop_privileges(void)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct data[2];
	uint64_t keep = 0, eff, perm;

	for (size_t i = 0; i < sizeof(kept_caps) / sizeof(kept_caps[0]); i++)
		keep |= 1ull << kept_caps[i];
	if (syscall(SYS_capget, &hdr, data) < 0)
		return -errno;
	eff = ((uint64_t)data[1].effective << 32 | data[0].effective) & keep;
	perm = ((uint64_t)data[1].permitted << 32 | data[0].permitted) & keep;
	/* The bounding set first: dropping from it needs CAP_SETPCAP. */
	for (int cap = 0; cap < 64; cap++)
		if (!(keep & (1ull << cap)))
			prctl(PR_CAPBSET_DROP, cap, 0, 0, 0); /* EINVAL past the last */
	data[0].effective = (uint32_t)eff;
	data[1].effective = (uint32_t)(eff >> 32);
	data[0].permitted = (uint32_t)perm;
	data[1].permitted = (uint32_t)(perm >> 32);
	data[0].inheritable = data[1].inheritable = 0;
	if (syscall(SYS_capset, &hdr, data) < 0 ||
	    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	own_caps = eff;
	caps_on = true;
	return 0;
}

/* The credentials the worker has now, and its own from the start. */
static struct {
	uid_t uid;
	gid_t gid;
	int ngroups;
	gid_t groups[AIOD_MAX_GROUPS];
} cur, own;

static void on_signal(int sig)
{
	(void)sig;
}

bool aiod_cancelled(const struct op_ctx *c)
{
	return __atomic_load_n(&c->m->cancel, __ATOMIC_ACQUIRE) != 0;
}

static void set_timer(long ms)
{
	struct itimerval it = {
		.it_interval = { .tv_sec = 0, .tv_usec = ms * 1000 },
		.it_value = { .tv_sec = 0, .tv_usec = ms * 1000 },
	};

	setitimer(ITIMER_REAL, &it, NULL);
}

void aiod_wait_begin(void)
{
	set_timer(WAIT_POLL_MS);
}

void aiod_wait_end(void)
{
	set_timer(0);
}

static int setup_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };  /* no SA_RESTART */
	sigset_t cancel;

	sigemptyset(&sa.sa_mask);
	if (sigaction(AIOD_CANCEL_SIGNAL, &sa, NULL) < 0 ||
	    sigaction(SIGALRM, &sa, NULL) < 0)
		return -errno;
	signal(SIGPIPE, SIG_IGN);
	/* Spawned with it blocked, so that an early cancel cannot kill us. */
	sigemptyset(&cancel);
	sigaddset(&cancel, AIOD_CANCEL_SIGNAL);
	return sigprocmask(SIG_UNBLOCK, &cancel, NULL) < 0 ? -errno : 0;
}

static int map_arena(void)
{
	const struct aiod_arena_hdr *hdr;
	struct stat st;

	if (fstat(AIOD_WORKER_ARENA_FD, &st) < 0 ||
	    st.st_size < (off_t)AIOD_ARENA_RESERVED)
		return -EINVAL;
	arena_size = (size_t)st.st_size;
	arena = mmap(NULL, arena_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		     AIOD_WORKER_ARENA_FD, 0);
	if (arena == MAP_FAILED)
		return -errno;
	close(AIOD_WORKER_ARENA_FD);
	hdr = (const struct aiod_arena_hdr *)arena;
	if (hdr->magic != AIOD_PROTO_MAGIC || hdr->version != AIOD_PROTO_VERSION ||
	    hdr->size != arena_size || hdr->msg_size != sizeof(struct aiod_msg) ||
	    hdr->poll_us > 10000)
		return -EPROTO;
	poll_us = hdr->poll_us;
	return 0;
}

static bool same_groups(const gid_t *a, int na, const uint32_t *b, int nb)
{
	if (na != nb)
		return false;
	for (int i = 0; i < na; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

static int set_fsuid(uid_t uid)
{
	if (uid == cur.uid)
		return 0;
	setfsuid(uid);
	if ((uid_t)setfsuid((uid_t)-1) != uid)
		return -EPERM;
	cur.uid = uid;
	return 0;
}

/*
 * Become the request's fsuid, fsgid and groups, or our own again when it
 * carries none, with our capabilities in effect only for fsuid 0 (root
 * callers, and ourselves when root).  Switches only what differs, since
 * setgroups is not free; switching needs the capabilities on.  Returns 0
 * or -EPERM if the kernel refused.
 */
static int apply_cred(const struct aiod_msg *m)
{
	uid_t uid = own.uid;
	gid_t gid = own.gid;
	const uint32_t *groups = (const uint32_t *)own.groups;
	int ngroups = own.ngroups;

	_Static_assert(sizeof(gid_t) == sizeof(uint32_t), "gid_t is 32 bits");
	if (m->wflags & AIOD_WF_CRED) {
		uid = m->uid;
		gid = m->gid;
		groups = (const uint32_t *)((const char *)m + m->groups_off);
		ngroups = (int)m->ngroups;
	}
	if ((uid != cur.uid || gid != cur.gid ||
	     !same_groups(cur.groups, cur.ngroups, groups, ngroups)) &&
	    set_caps(true) < 0)
		return -EPERM;
	if (!same_groups(cur.groups, cur.ngroups, groups, ngroups)) {
		if (setgroups((size_t)ngroups, (const gid_t *)groups) < 0)
			return -EPERM;
		memcpy(cur.groups, groups, (size_t)ngroups * sizeof(gid_t));
		cur.ngroups = ngroups;
	}
	if (gid != cur.gid) {
		setfsgid(gid);
		if ((gid_t)setfsgid((gid_t)-1) != gid)
			return -EPERM;
		cur.gid = gid;
	}
	if (set_fsuid(uid) < 0 || set_caps(uid == 0) < 0)
		return -EPERM;
	return 0;
}

/*
 * Our own fsuid again, which brings back the filesystem capabilities a
 * caller's fsuid dropped.  Groups and fsgid grant no capability, so
 * apply_cred() sets them later, only if they differ.
 */
static int become_self(void)
{
	if (set_caps(true) < 0)
		return -EPERM;
	return set_fsuid(own.uid);
}

static bool in_arena(uint64_t off, uint64_t len)
{
	return off >= AIOD_ARENA_RESERVED && off <= arena_size &&
	       len <= arena_size - off;
}

/* A name at off inside the message: NUL-terminated within it. */
static int msg_name(const struct aiod_msg *m, uint32_t off, const char **name)
{
	const char *s = (const char *)m + off;

	*name = NULL;
	if (!off)
		return 0;
	if (off < sizeof(*m) || off >= m->size || !memchr(s, 0, m->size - off))
		return -EINVAL;
	*name = s;
	return 0;
}

/*
 * Directories named by handle on a shared fd as the parent of a name: we
 * keep the fds of the last DIRS_KEPT open.  A program works in a few
 * directories at a time, and each create, lookup or unlink in one would
 * otherwise cost an open_by_handle_at and a close.  A kept fd names the
 * directory its handle named, wherever it moves.  Once that is removed,
 * a name under it fails with ENOENT: then, if the directory has no link
 * left, the kept fd goes and the request fails with ESTALE, as the open
 * by handle would have (dir_gone()), on which the kernel looks the path
 * up again and may find a new directory of that name.
 */
#define DIRS_KEPT 16

static struct kept_dir {
	int fd;                 /* -1: an empty entry */
	int on;                 /* the fd the handle was opened on */
	uint64_t used;          /* when last used, in requests */
	struct aiod_fh fh;
} dirs[DIRS_KEPT];
static uint64_t dir_uses;

/*
 * Whether object i of c is the directory a name of the request is in,
 * named on one of the pool's shared fds: those stay what they are for
 * the worker's life, where the number of an fd that came with a request
 * may be another filesystem's in the next one.
 */
static bool keepable_dir(const struct op_ctx *c, int i)
{
	return c->name[i] && c->name[i][0] &&
	       (i == 0 || c->m->op == AIOD_OP_LINK || c->m->op == AIOD_OP_RENAME) &&
	       c->fd[i] >= AIOD_WORKER_SHARED_FD &&
	       c->fd[i] < AIOD_WORKER_SHARED_FD + (int)nshared;
}

static bool same_fh(const struct aiod_fh *a, const struct aiod_fh *b)
{
	return a->handle_bytes == b->handle_bytes &&
	       a->handle_type == b->handle_type &&
	       memcmp(a->f_handle, b->f_handle, a->handle_bytes) == 0;
}

/* The kept fd of the directory fh names on the filesystem of on, or -1. */
static int dir_find(int on, const struct aiod_fh *fh)
{
	for (unsigned k = 0; k < DIRS_KEPT; k++)
		if (dirs[k].fd >= 0 && dirs[k].on == on && same_fh(&dirs[k].fh, fh)) {
			dirs[k].used = ++dir_uses;
			return dirs[k].fd;
		}
	return -1;
}

/* Keep fd, the directory fh names, in place of the least used. */
static void dir_keep(int on, const struct aiod_fh *fh, int fd)
{
	struct kept_dir *d = &dirs[0];

	for (unsigned k = 1; k < DIRS_KEPT && d->fd >= 0; k++)
		if (dirs[k].fd < 0 || dirs[k].used < d->used)
			d = &dirs[k];
	if (d->fd >= 0)
		close(d->fd);
	d->fd = fd;
	d->on = on;
	d->used = ++dir_uses;
	d->fh.handle_bytes = fh->handle_bytes;
	d->fh.handle_type = fh->handle_type;
	memcpy(d->fh.f_handle, fh->f_handle, fh->handle_bytes);
}

/*
 * A request that failed with ENOENT under a kept directory: if that was
 * removed, forget it and say ESTALE instead.  Returns the result.
 */
static int64_t dir_gone(const struct op_ctx *c, int64_t res)
{
	struct stat st;

	for (int i = 0; res == -ENOENT && i < 2; i++) {
		if (!c->dir_kept[i] || fstat(c->fd[i], &st) < 0 || st.st_nlink)
			continue;
		for (unsigned k = 0; k < DIRS_KEPT; k++)
			if (dirs[k].fd == c->fd[i]) {
				close(dirs[k].fd);
				dirs[k].fd = -1;
			}
		res = -ESTALE;
	}
	return res;
}

/*
 * open_by_handle_at() also says ENOMEM, for a while, to a handle of a
 * removed file whose inode number a create is giving a new file: the
 * kernel's iget_locked() finds that inode still being made (I_CREATING)
 * and returns none, which ext4 reports as ENOMEM; once the create ends,
 * the same call says ESTALE.  (Seen under parallel load on ext4, Linux
 * 6.18: a create and unlink looping beside a stale handle turned 3% of
 * its opens into ENOMEM, of which all but 9 in 3,040 said ESTALE 20 us
 * later and the rest 60 us after that.  Yet 7 ms of retries once were
 * not enough under CI's load, presumably a create that waited for a CPU
 * or a disk read meanwhile.)  So ENOMEM is asked again, after waits
 * growing from 20 us to 100 ms each, for up to a second; one that lasts
 * is passed on.
 */
int64_t aiod_open_handle(const struct op_ctx *c, int mount_fd,
			 const struct aiod_fh *fh, int flags)
{
	const long max_wait_ns = 100 * 1000 * 1000, give_up_ns = 1000 * 1000 * 1000;
	struct timespec wait = { .tv_nsec = 20 * 1000 };
	long waited_ns = 0;
	int64_t fd;

	for (;;) {
		fd = AIOD_RETRY(c, open_by_handle_at(mount_fd,
						     (struct file_handle *)fh,
						     flags));
		if (fd != -ENOMEM || waited_ns >= give_up_ns || aiod_cancelled(c))
			return fd;
		nanosleep(&wait, NULL);
		waited_ns += wait.tv_nsec;
		wait.tv_nsec = wait.tv_nsec * 3 < max_wait_ns ? wait.tv_nsec * 3
							      : max_wait_ns;
	}
}

/*
 * If the message names object i by handle, open it (O_PATH, as ourselves:
 * open_by_handle_at needs CAP_DAC_READ_SEARCH, which a caller's fsuid
 * drops) on the filesystem of fd[i], and use that fd instead; or take
 * the kept one of a directory a name is in.
 */
static int64_t open_fh(struct op_ctx *c, int i)
{
	const struct aiod_msg *m = c->m;
	struct aiod_fh *fh;
	int64_t fd;
	bool keep = keepable_dir(c, i);

	if (!m->fh_off[i])
		return 0;
	if (m->fh_off[i] < sizeof(*m) || m->fh_off[i] % 8 ||
	    m->fh_off[i] > m->size || m->size - m->fh_off[i] < sizeof(*fh))
		return -EINVAL;
	fh = (struct aiod_fh *)((char *)m + m->fh_off[i]);
	if (fh->handle_bytes > AIOD_FH_MAX || c->fd[i] < 0)
		return -EINVAL;
	if (keep && (fd = dir_find(c->fd[i], fh)) >= 0) {
		c->fd[i] = (int)fd;
		c->dir_kept[i] = true;
		return 0;
	}
	if (become_self() < 0)
		return -EPERM;
	fd = aiod_open_handle(c, c->fd[i], fh, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return fd;
	if (keep) {
		dir_keep(c->fd[i], fh, (int)fd);
		c->dir_kept[i] = true;
	} else
		c->fh_fd[i] = (int)fd;
	c->fd[i] = (int)fd;
	return 0;
}

/* Fill c from m and the fds that came with its doorbell. */
static int64_t unpack(struct op_ctx *c, struct aiod_msg *m, const int *fds,
		      int nfds)
{
	c->m = m;
	c->ret_fd = -1;
	c->close_fd0 = 0;
	c->fh_fd[0] = c->fh_fd[1] = -1;
	if (m->op >= AIOD_OP__COUNT)
		return -EINVAL;
	for (int i = 0; i < AIOD_WIRE_MAXFD; i++) {
		int32_t f = m->fd[i];

		if (f == AIOD_WIRE_FD_CWD)
			c->fd[i] = AT_FDCWD;
		else if (f <= AIOD_WIRE_FD_SHARED &&
			 f > AIOD_WIRE_FD_SHARED - (int32_t)nshared)
			c->fd[i] = AIOD_WORKER_SHARED_FD + (AIOD_WIRE_FD_SHARED - f);
		else if (f == AIOD_WIRE_FD_NONE)
			c->fd[i] = -1;
		else if (f == AIOD_WIRE_FD_KEPT)
			c->fd[i] = m->keep == AIOD_KEEP_USE &&
					   m->keep_slot < AIOD_KEEP_SLOTS
				   ? kept[m->keep_slot] : -1;
		else if (f >= 0 && f < nfds)
			c->fd[i] = fds[f];
		else
			return -EINVAL;
		if (c->fd[i] == -1 && f == AIOD_WIRE_FD_KEPT)
			return -EBADF; /* the client lost track: tell it */
	}
	for (int i = 0; i < 2; i++)
		if (msg_name(m, m->name_off[i], &c->name[i]) < 0)
			return -EINVAL;
	for (int i = 0; i < 2; i++) {
		int64_t err = open_fh(c, i);

		if (err < 0)
			return err;
	}
	if ((m->wflags & AIOD_WF_CRED) &&
	    (m->ngroups > AIOD_MAX_GROUPS || m->groups_off < sizeof(*m) ||
	     m->groups_off > m->size ||
	     (uint64_t)m->ngroups * 4 > m->size - m->groups_off))
		return -EINVAL;
	c->data = NULL;
	c->data_len = 0;
	if (m->data_off) {
		if (!in_arena(m->data_off, m->data_len))
			return -EINVAL;
		c->data = arena + m->data_off;
		c->data_len = m->data_len;
	}
	return apply_cred(m);
}

static void trace_req(const struct op_ctx *c)
{
	const struct aiod_msg *m = c->m;

	fprintf(stderr, "aiod[%d] #%llu %s fd=%d,%d name=%s,%s len=%llu -> %lld\n",
		(int)getpid(), (unsigned long long)m->id, aiod_op_name(m->op),
		c->fd[0], c->fd[1], c->name[0] ? c->name[0] : "-",
		c->name[1] ? c->name[1] : "-", (unsigned long long)m->data_len,
		(long long)m->result);
}

static int reply(uint64_t msg_off, int fd)
{
	struct aiod_done done = { .kind = AIOD_DONE_REPLY, .msg_off = msg_off };
	struct iovec iov = { .iov_base = &done, .iov_len = sizeof(done) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (fd >= 0) {
		struct cmsghdr *cm;

		memset(&cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf.buf;
		mh.msg_controllen = sizeof(cbuf.buf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	do
		n = sendmsg(AIOD_WORKER_SOCK_FD, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : 0;
}

/* AIOD_F_STATX: object 0's attributes after the op, or stx_mask 0. */
static void stat_after(struct op_ctx *c)
{
	const char *name = c->name[0] ? c->name[0] : "";
	int flags = AT_SYMLINK_NOFOLLOW | (c->name[0] ? 0 : AT_EMPTY_PATH);

	if (statx(c->fd[0], name, flags, STATX_BASIC_STATS | STATX_BTIME,
		  &c->m->stx) < 0)
		memset(&c->m->stx, 0, sizeof(c->m->stx));
}

/*
 * Whether the request that just ended with res wants the reply the client
 * prepared (struct aiod_reply in aiod.h): on success, or on the one
 * error it names.  A request that opened an fd sends it to the client,
 * which answers.
 */
static bool wants_reply(const struct aiod_msg *m, int64_t res, int ret_fd)
{
	if (m->reply_fd == AIOD_WIRE_FD_NONE || ret_fd >= 0)
		return false;
	return m->reply_on_error ? res == m->reply_on_error : res >= 0;
}

/*
 * Write the reply the client prepared for the request that just
 * ended as it wanted (wants_reply()), marking the message WRITING
 * first: if we die now, the client must not run the request again.  A
 * reply we cannot make is left to the client (reply_state NONE).
 */
static void write_reply(struct aiod_msg *m, const struct op_ctx *c)
{
	unsigned char hdr[AIOD_REPLY_HDR_MAX];
	struct iovec iov[2];
	uint32_t len = m->reply_hdr_len, res = (uint32_t)m->result;
	int32_t f = m->reply_fd;
	struct timespec now;
	int niov = 1;
	ssize_t n;

	if (f > AIOD_WIRE_FD_SHARED || f <= AIOD_WIRE_FD_SHARED - (int32_t)nshared ||
	    len > AIOD_REPLY_HDR_MAX || len < 4 || m->reply_len_off > len - 4 ||
	    m->reply_res_off > len - 4 || m->result > UINT32_MAX)
		return;
	memcpy(hdr, m->reply_hdr, len);
	iov[0].iov_base = hdr;
	iov[0].iov_len = len;
	if ((m->wflags & AIOD_WF_REPLY_DATA) && m->result > 0) {
		if (!c->data || (uint64_t)m->result > c->data_len ||
		    (uint64_t)m->result > UINT32_MAX - len)
			return;
		iov[1].iov_base = c->data;
		iov[1].iov_len = (size_t)m->result;
		len += (uint32_t)m->result;
		niov = 2;
	}
	memcpy(hdr + m->reply_len_off, &len, sizeof(len));
	if (m->reply_res_off && m->result >= 0)
		memcpy(hdr + m->reply_res_off, &res, sizeof(res));
	__atomic_store_n(&m->reply_state, AIOD_REPLY_WRITING, __ATOMIC_RELEASE);
	do
		n = writev(AIOD_WORKER_SHARED_FD + (AIOD_WIRE_FD_SHARED - f), iov, niov);
	while (n < 0 && errno == EINTR);
	m->reply_err = n < 0 ? errno : (size_t)n != len ? EIO : 0;
	clock_gettime(CLOCK_MONOTONIC, &now);
	m->reply_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	__atomic_store_n(&m->reply_state, AIOD_REPLY_DONE, __ATOMIC_RELEASE);
}

/*
 * Mark our request finished (struct aiod_wstate).  Returns whether the
 * client takes it from there without a REPLY datagram: a request whose
 * reply we wrote, while the arena header says lazy; one that returns no
 * fd (sends_fd), while it says awake.
 */
static bool finish_silently(const struct aiod_msg *m, bool sends_fd)
{
	const struct aiod_arena_hdr *hdr = (const struct aiod_arena_hdr *)arena;
	bool replied = m->reply_state == AIOD_REPLY_DONE && !m->reply_err;
	uint32_t silent = AIOD_WS_SILENT;

	if (sends_fd) {
		__atomic_store_n(wstate, AIOD_WS_RANG, __ATOMIC_SEQ_CST);
		return false;
	}
	__atomic_store_n(wstate, AIOD_WS_SILENT, __ATOMIC_SEQ_CST);
	if ((replied && __atomic_load_n(&hdr->lazy, __ATOMIC_SEQ_CST)) ||
	    __atomic_load_n(&hdr->awake, __ATOMIC_SEQ_CST))
		return true;
	/* Neither: ring, unless the client has already taken it. */
	return !__atomic_compare_exchange_n(wstate, &silent, AIOD_WS_RANG, false,
					    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

/*
 * A shared fd the client added (aiod_pool_share()): it becomes the next
 * one from AIOD_WORKER_SHARED_FD on, in place of a placeholder
 * (reserve_shared()).
 */
static int take_shared(const int *fds, int nfds)
{
	int to = AIOD_WORKER_SHARED_FD + (int)nshared;

	if (nfds != 1 || nshared >= AIOD_MAX_SHARED_FDS)
		return -EPROTO;
	if (fds[0] != to) {
		if (dup2(fds[0], to) < 0)
			return -errno;
		close(fds[0]);
	}
	nshared++;
	return 0;
}

/* Close every kept copy (AIOD_WF_DROP_KEPT). */
static void drop_kept(void)
{
	for (unsigned s = 0; s < AIOD_KEEP_SLOTS; s++)
		if (kept[s] >= 0) {
			close(kept[s]);
			kept[s] = -1;
		}
}

/*
 * The fd the request's slot holds once it ran (struct aiod_msg.keep), or
 * -1: none, or the request was a CLOSE of the kept copy.  The client
 * reads the answer in m->kept, so ask before replying.
 */
static int to_keep(const struct op_ctx *c, int64_t unpacked, const int *fds)
{
	const struct aiod_msg *m = c->m;

	if (m->keep_slot >= AIOD_KEEP_SLOTS)
		return -1;
	switch (m->keep) {
	case AIOD_KEEP_USE:
		return c->close_fd0 ? -1 : kept[m->keep_slot];
	case AIOD_KEEP_STORE:
		return unpacked == 0 && !c->close_fd0 && m->fd[0] >= 0
			       ? fds[m->fd[0]] : -1;
	case AIOD_KEEP_STORE_RET:
		return c->ret_fd;
	default:
		return -1;
	}
}

/*
 * A worker does not poll (poll_begin()) right after a request that moved
 * AIOD_POLL_BULK bytes or more of a file's data: the program at the
 * other end spends longer than a poll copying them before it asks
 * again, so the poll would end in vain, on a CPU that program needs.
 */
static bool after_bulk;         /* the last request was one */

static bool moves_data(uint32_t op)
{
	return op == AIOD_OP_PREAD || op == AIOD_OP_PWRITE ||
	       op == AIOD_OP_PWRITE_PIPE;
}

static bool poll_begin(void);

/* Run one request.  Returns 0, or -errno if the socket failed. */
static int serve(uint64_t msg_off, const int *fds, int nfds)
{
	struct aiod_msg *m;
	struct op_ctx c = { .fd = { -1, -1 }, .ret_fd = -1, .fh_fd = { -1, -1 } };
	int64_t res, unpacked;
	uint32_t kmode, kslot;
	int err, keep;

	if (!in_arena(msg_off, sizeof(*m)) || msg_off % 8) {
		/* Nowhere to write a result: a broken client. */
		fprintf(stderr, "aiod[%d]: bad message offset %llu\n",
			(int)getpid(), (unsigned long long)msg_off);
		return -EPROTO;
	}
	m = (struct aiod_msg *)(arena + msg_off);
	c.m = m;
	if (m->size < sizeof(*m) || !in_arena(msg_off, m->size))
		res = -EINVAL;
	else {
		if (m->wflags & AIOD_WF_DROP_KEPT)
			drop_kept();
		res = unpack(&c, m, fds, nfds);
	}
	unpacked = res;
	if (res == 0)
		res = dir_gone(&c, aiod_ops[m->op](&c));
	if (res >= 0 && (m->flags & AIOD_F_STATX))
		stat_after(&c);
	m->result = res;
	m->ret_fd = c.ret_fd >= 0;
	keep = to_keep(&c, unpacked, fds);
	m->kept = keep >= 0;
	kmode = m->keep;
	kslot = m->keep_slot;
	if (wants_reply(m, res, c.ret_fd))
		write_reply(m, &c);
	if (trace)
		trace_req(&c);
	after_bulk = res >= (int64_t)AIOD_POLL_BULK && moves_data(m->op);
	poll_begin();
	/* From here on m may be the client's again. */
	err = finish_silently(m, c.ret_fd >= 0) ? 0 : reply(msg_off, c.ret_fd);
	if (kmode != AIOD_KEEP_NONE && kslot < AIOD_KEEP_SLOTS &&
	    kept[kslot] != keep) {
		/* Filled again (what it held goes), or emptied by a CLOSE. */
		if (kept[kslot] >= 0 && kmode != AIOD_KEEP_USE)
			close(kept[kslot]);
		kept[kslot] = keep;
	}
	if (c.ret_fd >= 0 && c.ret_fd != keep)
		close(c.ret_fd);
	for (int i = 0; i < nfds; i++)
		if (!(c.close_fd0 && fds[i] == c.fd[0]) && fds[i] != keep)
			close(fds[i]);
	for (int i = 0; i < 2; i++)
		if (c.fh_fd[i] >= 0 && !(c.close_fd0 && i == 0))
			close(c.fh_fd[i]);
	return err;
}

static int64_t elapsed_us(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000000 + (t.tv_nsec - t0->tv_nsec) / 1000;
}

/*
 * Poll only while few workers are busy (the client's count, which still
 * counts this one): a steady stream of one request at a time is what
 * polling serves.  Under load a polling worker makes its CPU look busy,
 * the scheduler puts the woken elsewhere, and throughput halves
 * (bench_pool, 64 in flight: 110k ops/s polling always, 191k so).
 */
#define POLL_MAX_BUSY 2

/*
 * Whether a datagram the client sent waits on our socket.  The client
 * counts a datagram after sending it, so we may have read one it has
 * not counted yet: only a count ahead of ours means one waits.
 */
static bool bell_waits(void)
{
	return (int32_t)(__atomic_load_n(&ws->sent, __ATOMIC_ACQUIRE) -
			 received) > 0;
}

/*
 * The request the client handed over in memory (struct aiod_wstate.mbox),
 * as its offset, or 0: none.  Taken by compare-and-swap: a client that
 * gave us up for dead takes it back the same way, and only one of us
 * gets it.
 */
static uint64_t take_mbox(void)
{
	uint32_t full = AIOD_MB_FULL;
	uint64_t off;

	if (__atomic_load_n(&ws->mbox, __ATOMIC_ACQUIRE) != AIOD_MB_FULL)
		return 0;
	off = __atomic_load_n(&ws->bell, __ATOMIC_RELAXED);
	return __atomic_compare_exchange_n(&ws->mbox, &full, AIOD_MB_NONE,
					   false, __ATOMIC_ACQ_REL,
					   __ATOMIC_RELAXED) ? off : 0;
}

/*
 * With poll_us set, at most POLL_MAX_BUSY workers busy, no other worker
 * polling (the arena header's poller word) and the client not holding
 * polls (aiod_pool_hold_polls()), poll for the next
 * doorbell that long, giving the CPU to any other runnable task between
 * two looks: the client gives its next request to the poller, which then
 * needs no wake-up, and if the request carries no fd it comes through
 * memory, with no syscall on either side (struct aiod_wstate).
 *
 * poll_begin() says we poll, before the reply that lets the client hand
 * us its next request: a client quicker than our way back to
 * next_in_memory() would otherwise find us not yet polling.  Returns
 * whether we poll.
 */
static bool poll_begin(void)
{
	int32_t *poller = &((struct aiod_arena_hdr *)arena)->poller;
	int32_t none = 0, me = (int32_t)self;
	uint32_t mb = AIOD_MB_NONE;
	const struct aiod_arena_hdr *hdr = (const struct aiod_arena_hdr *)arena;
	uint32_t busy = __atomic_load_n(&hdr->busy, __ATOMIC_ACQUIRE);

	if (polling || !poll_us || after_bulk || busy > POLL_MAX_BUSY ||
	    __atomic_load_n(&hdr->hold_polls, __ATOMIC_RELAXED) ||
	    !__atomic_compare_exchange_n(poller, &none, me, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
		return polling;
	/* Not over a request left in mbox while a datagram went first. */
	polling = __atomic_compare_exchange_n(&ws->mbox, &mb, AIOD_MB_POLLING,
					      false, __ATOMIC_SEQ_CST,
					      __ATOMIC_RELAXED);
	if (!polling)
		__atomic_store_n(poller, 0, __ATOMIC_RELEASE);
	return polling;
}

/*
 * The next request in memory: poll for it as poll_begin() says, or take
 * one the client left (struct aiod_wstate.mbox) while a datagram went
 * first (poll_begin() then does not poll).  Returns its offset, or 0:
 * read the socket (a datagram waits, or nothing came).  A datagram goes
 * first: it may be a shared fd that a request after it names; and we
 * stop polling before we serve it, so that an idle worker may poll.
 */
static uint64_t next_in_memory(void)
{
	int32_t *poller = &((struct aiod_arena_hdr *)arena)->poller;
	int32_t me = (int32_t)self;
	uint32_t mb = AIOD_MB_POLLING;
	struct timespec t0;

	if (poll_begin()) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		while (!bell_waits() && elapsed_us(&t0) < poll_us &&
		       __atomic_load_n(&ws->mbox, __ATOMIC_ACQUIRE) ==
			       AIOD_MB_POLLING)
			sched_yield(); /* polling uses only an otherwise idle CPU */
		/* The client rings the socket now, unless it just filled mbox. */
		__atomic_compare_exchange_n(&ws->mbox, &mb, AIOD_MB_NONE, false,
					    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
		__atomic_compare_exchange_n(poller, &me, 0, false,
					    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
		polling = false;
	}
	return bell_waits() ? 0 : take_mbox();
}

/*
 * A worker runs SCHED_BATCH: woken by a doorbell, it takes a free CPU at
 * once, but does not preempt a task already running, such as its client
 * in the middle of ringing more doorbells or the program whose write the
 * client is serving.  Left SCHED_OTHER, every wake-up of a worker could
 * switch out the task that woke it (0.8 involuntary switches per request
 * under random writes, measured); as batch, the client goes on until it
 * sleeps, and the workers run then.  Measured with tests/bench/run
 * --baseline, 7 alternating repetitions: random 4 KiB writes by 4 jobs
 * 1.11x the IOPS (p99 0.68x) at 0.80x the CPU, buffered random reads
 * 1.23x, warm sequential reads 1.26x; O_DIRECT reads, sequential writes
 * and the busy-writer statx p99 within 5%.
 *
 * Only from SCHED_OTHER: a worker of a client started real-time or idle
 * keeps that policy (a child inherits its parent's).  If the kernel
 * refuses (a seccomp filter, say), only speed is lost.
 */
static void yield_to_client(void)
{
	if (sched_getscheduler(0) == SCHED_OTHER)
		(void)sched_setscheduler(0, SCHED_BATCH,
					 &(struct sched_param){ 0 });
}

/*
 * Hold the numbers shared fds added later will take with copies of our
 * socket, so that no fd we receive or keep lands there first.
 */
static int reserve_shared(void)
{
	for (unsigned k = nshared; k < AIOD_MAX_SHARED_FDS; k++)
		if (dup2(AIOD_WORKER_SOCK_FD, AIOD_WORKER_SHARED_FD + (int)k) < 0)
			return -errno;
	return 0;
}

static int hello(void)
{
	struct aiod_done done = {
		.kind = AIOD_DONE_HELLO,
		.version = AIOD_PROTO_VERSION,
	};

	return send(AIOD_WORKER_SOCK_FD, &done, sizeof(done), MSG_NOSIGNAL) < 0
		       ? -errno : 0;
}

int main(int argc, char **argv)
{
	unsigned long long ws_off;
	long ppid;
	char *end;
	int err;

	if (argc != 4 || (ppid = strtol(argv[1], &end, 10)) <= 0 || *end ||
	    (nshared = (unsigned)strtoul(argv[2], &end, 10)) > AIOD_MAX_SHARED_FDS ||
	    *end || !(ws_off = strtoull(argv[3], &end, 10)) || *end) {
		fprintf(stderr, "aiod: a libaiod worker; not to be run by hand\n");
		return AIOD_EXIT_USAGE;
	}
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != (pid_t)ppid)
		return AIOD_EXIT_USAGE;
	trace = getenv("AIOD_TRACE") && strcmp(getenv("AIOD_TRACE"), "0");
	self = getpid();
	err = drop_privileges();
	if (err) {
		fprintf(stderr, "aiod: capabilities: %s\n", strerror(-err));
		return AIOD_EXIT_USAGE;
	}

	err = map_arena();
	if (err) {
		fprintf(stderr, "aiod: arena: %s\n", strerror(-err));
		return err == -EPROTO ? AIOD_EXIT_PROTO : AIOD_EXIT_USAGE;
	}
	if (ws_off % 8 || !in_arena(ws_off, sizeof(struct aiod_wstate)))
		return AIOD_EXIT_USAGE;
	ws = (struct aiod_wstate *)(arena + ws_off);
	wstate = &ws->state;
	own.uid = cur.uid = (uid_t)setfsuid((uid_t)-1);
	own.gid = cur.gid = (gid_t)setfsgid((gid_t)-1);
	own.ngroups = cur.ngroups = getgroups(AIOD_MAX_GROUPS, own.groups);
	if (own.ngroups < 0)
		return AIOD_EXIT_USAGE;
	memcpy(cur.groups, own.groups, (size_t)own.ngroups * sizeof(gid_t));
	for (unsigned s = 0; s < AIOD_KEEP_SLOTS; s++)
		kept[s] = -1;
	for (unsigned k = 0; k < DIRS_KEPT; k++)
		dirs[k].fd = -1;
	if (reserve_shared() < 0)
		return AIOD_EXIT_USAGE;
	aiod_ops_init();
	yield_to_client();
	if (setup_signals() < 0 || hello() < 0)
		return AIOD_EXIT_IO;

	for (;;) {
		struct aiod_bell bell;
		struct iovec iov = { .iov_base = &bell, .iov_len = sizeof(bell) };
		union {
			char buf[CMSG_SPACE(sizeof(int) * AIOD_WIRE_MAXFD)];
			struct cmsghdr align;
		} cbuf;
		struct msghdr mh = {
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf),
		};
		int fds[AIOD_WIRE_MAXFD], nfds = 0;
		ssize_t n;

		uint64_t off = next_in_memory();

		if (off) {
			if (serve(off, NULL, 0) < 0)
				return AIOD_EXIT_IO;
			continue;
		}
		n = recvmsg(AIOD_WORKER_SOCK_FD, &mh, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			return AIOD_EXIT_OK;
		if (n < 0)
			return AIOD_EXIT_IO;
		received++;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm;
		     cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level == SOL_SOCKET &&
			    cm->cmsg_type == SCM_RIGHTS) {
				nfds = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
				memcpy(fds, CMSG_DATA(cm), sizeof(int) * (size_t)nfds);
			}
		}
		if (n != sizeof(bell) || (mh.msg_flags & MSG_CTRUNC))
			return AIOD_EXIT_IO;
		if (bell.msg_off == 0) {
			if (take_shared(fds, nfds) < 0)
				return AIOD_EXIT_PROTO;
			continue;
		}
		if (serve(bell.msg_off, fds, nfds) < 0)
			return AIOD_EXIT_IO;
	}
}
