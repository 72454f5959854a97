/* SPDX-License-Identifier: MIT */
/*
 * closer.c - the closer: a process that closes the caller's fds for it,
 * so that the caller never runs a close(2) that may block.
 *
 * WHY
 *
 * close(2) of any fd, not only of a file's last one, runs the file's
 * flush: NFS and CIFS write dirty data back there, and a FUSE filesystem
 * answers a FLUSH request, however slow (or hung) it is.  AIOD_OP_CLOSE
 * gives the file's last reference to a worker, but the caller must still
 * drop its own number for it, and only a task that shares the caller's
 * fd table can do that for it.  The closer is such a task: a child
 * cloned with CLONE_FILES and nothing else shared.  Not a thread: the
 * caller keeps exactly one, and the closer has a memory of its own, in
 * which it runs only the syscalls below (no allocation, no locks).
 *
 * PROTOCOL
 *
 * Two pipes, in the fd table both processes share.  The caller writes
 * jobs (struct aiod__close_job: an fd and a token) to the first, without
 * blocking; what does not fit waits in the caller's backlog.  The closer
 * reads jobs, closes each fd, and writes the non-zero tokens back on the
 * second pipe, which the pool polls.  Each record is smaller than
 * PIPE_BUF and every write a whole number of them, so reads return whole
 * records.  Once the caller has given an fd away it never uses that
 * number again; the kernel hands the number out anew only after the
 * closer's close.
 *
 * LIFETIME
 *
 * The closer holds no capabilities (closing needs none) and can gain none
 * (no_new_privs), dies with its parent (PR_SET_PDEATHSIG), blocks every
 * signal but SIGKILL and SIGSTOP, sits in a process group of its own (a
 * ^C on the terminal is the caller's business), and is named
 * "aiod-closer".  It exits when the job pipe's write end is gone.  Its
 * exit signal is 0, so a caller's waitpid(-1) never reaps it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aiod-internal.h"

#define JOBS_PER_READ 256

static _Noreturn void closer_main(const struct aiod__closer *c, pid_t parent)
{
	struct aiod__close_job job[JOBS_PER_READ];
	uint64_t done[JOBS_PER_READ];
	sigset_t all;

	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(0);
	/* Closing needs no privilege: keep none. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    syscall(SYS_capset, &(struct __user_cap_header_struct){
				.version = _LINUX_CAPABILITY_VERSION_3 },
		    (struct __user_cap_data_struct[2]){ 0 }) < 0)
		_exit(1);
	prctl(PR_SET_NAME, "aiod-closer");
	setpgid(0, 0);
	for (;;) {
		ssize_t n = read(c->jobs[0], job, sizeof(job));
		size_t ndone = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(0);
		for (size_t i = 0; i < (size_t)n / sizeof(job[0]); i++) {
			close(job[i].fd);
			if (job[i].token)
				done[ndone++] = job[i].token;
		}
		for (size_t off = 0; off < ndone * sizeof(done[0]);) {
			ssize_t w = write(c->acks[1], (char *)done + off,
					  ndone * sizeof(done[0]) - off);

			if (w < 0 && errno != EINTR)
				_exit(1);
			if (w > 0)
				off += (size_t)w;
		}
	}
}

static void close_pipes(struct aiod__closer *c)
{
	for (int i = 0; i < 2; i++) {
		if (c->jobs[i] >= 0)
			close(c->jobs[i]);
		if (c->acks[i] >= 0)
			close(c->acks[i]);
		c->jobs[i] = c->acks[i] = -1;
	}
}

int aiod__closer_start(struct aiod__closer *c)
{
	pid_t parent = getpid();
	long pid;
	int err;

	memset(c, 0, sizeof(*c));
	c->jobs[0] = c->jobs[1] = c->acks[0] = c->acks[1] = c->pidfd = -1;
	if (pipe2(c->jobs, O_CLOEXEC) < 0 || pipe2(c->acks, O_CLOEXEC) < 0 ||
	    fcntl(c->jobs[1], F_SETFL, O_NONBLOCK) < 0 ||
	    fcntl(c->acks[0], F_SETFL, O_NONBLOCK) < 0) {
		err = -errno;
		close_pipes(c);
		return err;
	}
	/* Like fork(), but sharing the fd table; exit signal 0. */
	pid = syscall(SYS_clone, (unsigned long)CLONE_FILES, NULL, NULL, NULL, 0);
	if (pid == 0)
		closer_main(c, parent);
	if (pid < 0) {
		err = -errno;
		close_pipes(c);
		return err;
	}
	c->pid = (pid_t)pid;
	c->pidfd = pidfd_open(c->pid, 0);
	return 0;
}

/* Filesystems whose files have no flush operation (Linux 6.x). */
static const char *const flushless_types[] = {
	"ext2", "ext3", "ext4", "xfs", "tmpfs",
};

/* Whether mount mnt_id's filesystem is one of those, by mountinfo. */
static bool mount_flushless(uint64_t mnt_id)
{
	char line[4096];
	bool found = false;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char *end, *dash, *type;

		if (strtoull(line, &end, 10) != mnt_id || end == line)
			continue;
		dash = strstr(line, " - ");
		type = dash ? dash + 3 : NULL;
		if (!type)
			break;
		type[strcspn(type, " ")] = 0;
		for (size_t i = 0; i < sizeof(flushless_types) / sizeof(*flushless_types); i++)
			found |= strcmp(type, flushless_types[i]) == 0;
		break;
	}
	fclose(f);
	return found;
}

bool aiod__closer_flushless(struct aiod__closer *c, int fd, bool *unlinked)
{
	struct statx stx;
	bool flushless;

	if (unlinked)
		*unlinked = false;
	if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC,
		  STATX_MNT_ID | STATX_NLINK, &stx) < 0 ||
	    !(stx.stx_mask & STATX_MNT_ID))
		return false;
	if (unlinked)
		*unlinked = (stx.stx_mask & STATX_NLINK) && !stx.stx_nlink;
	for (unsigned i = 0; i < c->nkinds; i++)
		if (c->kinds[i].mnt_id == stx.stx_mnt_id &&
		    c->kinds[i].dev_major == stx.stx_dev_major &&
		    c->kinds[i].dev_minor == stx.stx_dev_minor)
			return c->kinds[i].flushless;
	flushless = mount_flushless(stx.stx_mnt_id);
	c->kinds[c->next_kind] = (struct aiod__mount_kind){
		stx.stx_mnt_id, stx.stx_dev_major, stx.stx_dev_minor, flushless,
	};
	c->next_kind = (c->next_kind + 1) % AIOD__MOUNT_KINDS;
	if (c->nkinds < AIOD__MOUNT_KINDS)
		c->nkinds++;
	return flushless;
}

/* Write what the backlog holds that fits in the pipe. */
static void write_backlog(struct aiod__closer *c)
{
	size_t sent = 0;

	while (sent < c->nbacklog) {
		size_t n = c->nbacklog - sent;
		ssize_t w;

		if (n > JOBS_PER_READ)
			n = JOBS_PER_READ;
		w = write(c->jobs[1], c->backlog + sent, n * sizeof(*c->backlog));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		/* Up to PIPE_BUF a pipe takes all or nothing. */
		sent += (size_t)w / sizeof(*c->backlog);
	}
	memmove(c->backlog, c->backlog + sent,
		(c->nbacklog - sent) * sizeof(*c->backlog));
	c->nbacklog -= sent;
}

bool aiod__closer_queue(struct aiod__closer *c, int fd, uint64_t token)
{
	if (!c->pid)
		return false;
	if (c->nbacklog == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 64;
		struct aiod__close_job *b = realloc(c->backlog, cap * sizeof(*b));

		if (!b)
			return false;
		c->backlog = b;
		c->cap = cap;
	}
	c->backlog[c->nbacklog++] = (struct aiod__close_job){ .fd = fd, .token = token };
	return true;
}

void aiod__closer_send(struct aiod__closer *c)
{
	if (c->nbacklog)
		write_backlog(c);
}

bool aiod__closer_give(struct aiod__closer *c, int fd, uint64_t token)
{
	if (!aiod__closer_queue(c, fd, token))
		return false;
	write_backlog(c);
	return true;
}

size_t aiod__closer_acks(struct aiod__closer *c, uint64_t *tokens, size_t max)
{
	ssize_t n;

	if (c->acks[0] < 0)
		return 0;
	if (c->nbacklog)
		write_backlog(c);
	do
		n = read(c->acks[0], tokens, max * sizeof(*tokens));
	while (n < 0 && errno == EINTR);
	return n > 0 ? (size_t)n / sizeof(*tokens) : 0;
}

void aiod__closer_reclaim(struct aiod__closer *c)
{
	struct aiod__close_job job[JOBS_PER_READ];
	ssize_t n;

	for (size_t i = 0; i < c->nbacklog; i++)
		close(c->backlog[i].fd);
	c->nbacklog = 0;
	/* The read end is ours too (one fd table); the closer is gone. */
	if (c->jobs[0] < 0 || fcntl(c->jobs[0], F_SETFL, O_NONBLOCK) < 0)
		return;
	while ((n = read(c->jobs[0], job, sizeof(job))) > 0)
		for (size_t i = 0; i < (size_t)n / sizeof(job[0]); i++)
			close(job[i].fd);
}

bool aiod__closer_dead(struct aiod__closer *c)
{
	siginfo_t si = { 0 };

	if (!c->pid)
		return true;
	if (waitid(P_PID, (id_t)c->pid, &si, WEXITED | WNOHANG | __WALL) < 0 ||
	    si.si_pid == 0)
		return false;
	c->pid = 0;
	return true;
}

/*
 * Wait up to ms for the closer to exit; true once it has (and is
 * reaped).  Its acks are read and dropped meanwhile, so that it never
 * waits for room to write them.
 */
static bool await_exit(struct aiod__closer *c, int ms)
{
	uint64_t acks[JOBS_PER_READ];

	for (int waited = 0;; waited += 10) {
		while (aiod__closer_acks(c, acks, JOBS_PER_READ))
			;
		if (aiod__closer_dead(c))
			return true;
		if (waited >= ms)
			return false;
		usleep(10000);
	}
}

void aiod__closer_stop(struct aiod__closer *c)
{
	if (c->pid) {
		/* Shutting down: what never reached the closer closes here. */
		for (size_t i = 0; i < c->nbacklog; i++)
			close(c->backlog[i].fd);
		c->nbacklog = 0;
		close(c->jobs[1]);      /* its EOF, after the jobs sent */
		c->jobs[1] = -1;
		if (!await_exit(c, 1000)) {
			if (c->pidfd >= 0)
				pidfd_send_signal(c->pidfd, SIGKILL, NULL, 0);
			else
				kill(c->pid, SIGKILL);
			await_exit(c, 1000);
		}
	}
	if (c->pidfd >= 0)
		close(c->pidfd);
	c->pidfd = -1;
	close_pipes(c);
	free(c->backlog);
	c->backlog = NULL;
	c->nbacklog = c->cap = 0;
}
