/* SPDX-License-Identifier: MIT */
/*
 * ops.c - one handler per aiod opcode, and the table that dispatches them.
 *
 * Each handler runs its syscall(s) with the fds, names and data the main
 * loop unpacked, stores any result beyond the return value in the
 * message, and returns >= 0 or -errno.  enum aiod_op in lib/aiod.h is
 * the contract for each.
 *
 * A NULL name means "the object is fd itself", and fd may be an O_PATH
 * fd.  Syscalls that refuse O_PATH fds (fchmod, ftruncate, f*xattr) are
 * reached through the fd's /proc/self/fd magic link instead, which names
 * the very object the fd refers to, even after it was renamed.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "worker.h"

struct proc_path {
	char s[32];
};

static const char *proc_path(struct proc_path *p, int fd)
{
	snprintf(p->s, sizeof(p->s), "/proc/self/fd/%d", fd);
	return p->s;
}

static bool is_opath(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl >= 0 && (fl & O_PATH);
}

/*
 * A path naming fd/name that plain path syscalls can use: the name
 * itself when it is resolvable on its own and may be followed, else a
 * /proc magic link to fd or to an O_PATH open of name (not following a
 * final symlink when nofollow), which *tmp then holds and the caller
 * closes.  The caller's syscall follows that magic link to the object
 * but no further, while it would follow a symlink the name itself ends in.
 */
static int64_t target_path(const struct op_ctx *c, bool nofollow,
			   struct proc_path *pp, const char **path, int *tmp)
{
	int fd = c->fd[0];

	*tmp = -1;
	*path = NULL;
	if (!c->name[0]) {
		*path = proc_path(pp, fd);
		return 0;
	}
	if (!nofollow && (c->name[0][0] == '/' || fd == AT_FDCWD)) {
		*path = c->name[0];
		return 0;
	}
	*tmp = openat(fd, c->name[0], O_PATH | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0));
	if (*tmp < 0)
		return -errno;
	*path = proc_path(pp, *tmp);
	return 0;
}

static void close_tmp(int tmp)
{
	if (tmp >= 0)
		close(tmp);
}

/* Fill the message's stx, fh and mount_id for fd/name (not following). */
static int64_t fill_identity(struct op_ctx *c, int fd, const char *name)
{
	struct aiod_msg *m = c->m;
	int flags = AT_SYMLINK_NOFOLLOW | (name ? 0 : AT_EMPTY_PATH);

	if (statx(fd, name ? name : "", flags, STATX_BASIC_STATS | STATX_BTIME,
		  &m->stx) < 0) {
		memset(&m->stx, 0, sizeof(m->stx));
		return -errno;
	}
	m->fh.handle_bytes = AIOD_FH_MAX;
	if (name_to_handle_at(fd, name ? name : "", (struct file_handle *)&m->fh,
			      &m->mount_id, name ? 0 : AT_EMPTY_PATH) < 0)
		m->fh.handle_bytes = 0;
	return 0;
}

/* After a successful create, identify the new object if asked to. */
static int64_t created(struct op_ctx *c, int64_t res, int fd, const char *name)
{
	if (res >= 0 && (c->m->flags & AIOD_F_LOOKUP))
		fill_identity(c, fd, name);
	return res;
}

static int64_t op_nop(struct op_ctx *c)
{
	struct timespec end;
	int64_t us = c->m->arg[0];
	int err;

	if (us <= 0)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += us / 1000000;
	end.tv_nsec += (us % 1000000) * 1000;
	if (end.tv_nsec >= 1000000000) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000;
	}
	aiod_wait_begin();
	do
		err = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &end, NULL);
	while (err == EINTR && !aiod_cancelled(c));
	aiod_wait_end();
	return -err;
}

static int64_t op_lookup(struct op_ctx *c)
{
	return fill_identity(c, c->fd[0], c->name[0]);
}

static int64_t op_statx(struct op_ctx *c)
{
	int flags = (int)c->m->arg[0] | (c->name[0] ? 0 : AT_EMPTY_PATH);

	if (statx(c->fd[0], c->name[0] ? c->name[0] : "", flags,
		  (unsigned)c->m->arg[1], &c->m->stx) < 0)
		return -errno;
	return 0;
}

static int64_t open_common(struct op_ctx *c, int64_t fd)
{
	if (fd < 0)
		return fd;
	c->ret_fd = (int)fd;
	if (c->m->flags & AIOD_F_LOOKUP)
		fill_identity(c, (int)fd, NULL);
	return 0;
}

/*
 * Whether an open with these flags may wait for a peer, as one of a FIFO
 * does for the other end: then ^C must reach it even if it came just
 * before the wait began (aiod_wait_begin()).  One that creates the file,
 * wants a directory or O_PATH, or does not block, never waits that way.
 */
static bool may_wait_for_peer(uint64_t flags)
{
	return !(flags & (O_PATH | O_DIRECTORY | O_NONBLOCK)) &&
	       (flags & (O_CREAT | O_EXCL)) != (O_CREAT | O_EXCL);
}

static mode_t own_umask, cur_umask;

/*
 * What a request creates, it creates under the umask its AIOD_F_UMASK
 * gives, in argument slot (the caller's: the filesystem applies it, or
 * the directory's default ACL in its place), else under the worker's
 * own, the client's when the worker started.  Switched only when it
 * differs from the last one.
 */
static void creating_umask(const struct op_ctx *c, int slot)
{
	mode_t want = (c->m->flags & AIOD_F_UMASK) ? (mode_t)c->m->arg[slot] & 0777
						    : own_umask;

	if (want != cur_umask) {
		umask(want);
		cur_umask = want;
	}
}

static int64_t op_open(struct op_ctx *c)
{
	struct aiod_msg *m = c->m;
	/*
	 * openat2 refuses a mode it will not use.  O_TMPFILE includes
	 * O_DIRECTORY's bit, so only all of its bits mean a new file.
	 */
	bool creates =
		(m->arg[0] & O_CREAT) || (m->arg[0] & O_TMPFILE) == O_TMPFILE;
	struct open_how how = {
		.flags = (uint64_t)m->arg[0] | O_CLOEXEC,
		.mode = creates ? (uint64_t)m->arg[1] : 0,
		.resolve = (uint64_t)m->arg[2],
	};
	bool waits = may_wait_for_peer(how.flags);
	struct proc_path pp;
	int dirfd = c->fd[0];
	const char *name = c->name[0];
	int64_t fd;

	if (!name) {
		/* Reopen the object an (O_PATH) fd refers to. */
		dirfd = AT_FDCWD;
		name = proc_path(&pp, c->fd[0]);
		how.resolve = 0;
	}
	if (creates)
		creating_umask(c, 3);
	if (waits)
		aiod_wait_begin();
	fd = AIOD_RETRY(c, syscall(SYS_openat2, dirfd, name, &how, sizeof(how)));
	if (waits)
		aiod_wait_end();
	return open_common(c, fd);
}

static int64_t op_open_by_handle(struct op_ctx *c)
{
	const struct aiod_fh *fh = (const struct aiod_fh *)c->data;
	const size_t head = offsetof(struct aiod_fh, f_handle);
	int64_t fd;

	if (!fh || c->data_len < head || fh->handle_bytes > AIOD_FH_MAX ||
	    fh->handle_bytes > c->data_len - head)
		return -EINVAL;
	fd = aiod_open_handle(c, c->fd[0], fh, (int)c->m->arg[0] | O_CLOEXEC);
	return open_common(c, fd);
}

static int64_t op_close(struct op_ctx *c)
{
	int err = close(c->fd[0]) < 0 ? -errno : 0;

	c->close_fd0 = 1;
	/* After close, the fd is gone whatever close said (POSIX.1-2024). */
	return err == -EINTR ? 0 : err;
}

static int64_t op_pread(struct op_ctx *c)
{
	int64_t off = c->m->arg[0];

	if (off == -1)
		return AIOD_RETRY(c, read(c->fd[0], c->data, c->data_len));
	return AIOD_RETRY(c, pread(c->fd[0], c->data, c->data_len, off));
}

static int64_t op_pwrite(struct op_ctx *c)
{
	int64_t off = c->m->arg[0];

	if (off == -1)
		return AIOD_RETRY(c, write(c->fd[0], c->data, c->data_len));
	return AIOD_RETRY(c, pwrite(c->fd[0], c->data, c->data_len, off));
}

/*
 * PWRITE_PIPE.  tee(2) puts the bytes in a pipe of our own, leaving the
 * client's as it was, and splice(2) moves them from ours into the file:
 * one copy, in the kernel, and a second run after we die finds them
 * where they were.  Our pipe is kept between requests, empty.
 */
static int own_pipe[2] = { -1, -1 };
static long own_pipe_size;
static long own_pipe_refused = LONG_MAX; /* the smallest size refused */
static int dev_null = -1;

/*
 * fd moved above the numbers shared fds take when the client adds one
 * (aiod/main.c, take_shared()), for an fd kept between requests.
 */
static int fd_kept(int fd)
{
	int high;

	if (fd < 0)
		return -1;
	high = fcntl(fd, F_DUPFD_CLOEXEC, AIOD_WORKER_SHARED_FD + AIOD_MAX_SHARED_FDS);
	close(fd);
	return high;
}

static void own_pipe_drop(void)
{
	if (own_pipe[0] >= 0)
		close(own_pipe[0]);
	if (own_pipe[1] >= 0)
		close(own_pipe[1]);
	own_pipe[0] = own_pipe[1] = -1;
	own_pipe_size = 0;
}

static bool own_pipe_open(void)
{
	int fd[2];

	if (pipe2(fd, O_CLOEXEC | O_NONBLOCK) < 0)
		return false;
	own_pipe[0] = fd_kept(fd[0]);
	own_pipe[1] = fd_kept(fd[1]);
	if (own_pipe[0] < 0 || own_pipe[1] < 0) {
		own_pipe_drop();
		return false;
	}
	own_pipe_size = fcntl(own_pipe[1], F_GETPIPE_SZ);
	return true;
}

static void own_pipe_grow(long size)
{
	long got;

	if (size <= own_pipe_size || size >= own_pipe_refused)
		return;
	got = fcntl(own_pipe[1], F_SETPIPE_SZ, size);
	if (got < 0)
		own_pipe_refused = size;
	else
		own_pipe_size = got;
}

/* Empty our pipe of what a file did not take, or make a new one. */
static void own_pipe_empty(void)
{
	int n = -1;

	if (ioctl(own_pipe[0], FIONREAD, &n) == 0 && n == 0)
		return;
	if (n < 0 || dev_null < 0 ||
	    splice(own_pipe[0], NULL, dev_null, NULL, (size_t)n, SPLICE_F_NONBLOCK) != n)
		own_pipe_drop();
}

/*
 * At start, with the worker's own capabilities (a request may run with
 * none): our pipe, grown for a 1 MiB write however it lies in pages
 * where we may (past /proc/sys/fs/pipe-max-size takes
 * CAP_SYS_RESOURCE).
 */
void aiod_ops_init(void)
{
	own_umask = cur_umask = umask(0);
	umask(own_umask);
	dev_null = fd_kept(open("/dev/null", O_WRONLY | O_CLOEXEC));
	if (own_pipe_open())
		own_pipe_grow((2l << 20));
}

/*
 * Room in our pipe for len bytes however they lie in pages (a buffer
 * per page, and a partial page at each end), else for len bytes in
 * whole pages, as far as it may grow; false without a pipe.  Whether
 * they fit, tee(2) tells.
 */
static bool own_pipe_ready(size_t len)
{
	if (own_pipe[0] < 0 && !own_pipe_open())
		return false;
	own_pipe_grow((long)len + 2 * sysconf(_SC_PAGESIZE));
	own_pipe_grow((long)len);
	return true;
}

/* A file that refuses splice (O_APPEND, some O_DIRECT): through memory. */
static int64_t bounce(struct op_ctx *c, int from, size_t len)
{
	int64_t off = c->m->arg[0], res;
	void *buf;
	ssize_t n;

	if (posix_memalign(&buf, (size_t)sysconf(_SC_PAGESIZE), len))
		return -ENOMEM;
	n = read(from, buf, len);
	if (n <= 0)
		res = n < 0 ? -errno : 0;
	else if (off == -1)
		res = AIOD_RETRY(c, write(c->fd[0], buf, (size_t)n));
	else
		res = AIOD_RETRY(c, pwrite(c->fd[0], buf, (size_t)n, off));
	free(buf);
	return res;
}

/* Move up to len bytes out of pipe from (taking them) into the file. */
static int64_t splice_out(struct op_ctx *c, int from, size_t len)
{
	int64_t off = c->m->arg[0];
	size_t done = 0;

	while (done < len) {
		loff_t at = off + (loff_t)done;
		ssize_t n = splice(from, NULL, c->fd[0], off == -1 ? NULL : &at,
				   len - done, SPLICE_F_NONBLOCK);

		if (n < 0 && errno == EINTR && !aiod_cancelled(c))
			continue;
		if (n < 0 && errno == EINVAL && done == 0)
			return bounce(c, from, len);
		if (n <= 0)
			return done ? (int64_t)done : n < 0 ? -errno : 0;
		done += (size_t)n;
	}
	return (int64_t)done;
}

static int64_t op_pwrite_pipe(struct op_ctx *c)
{
	size_t len = c->m->data_len;
	int in = c->fd[1], avail = 0;
	int64_t res;
	ssize_t t;

	if (len == 0)
		return 0;
	if (own_pipe_ready(len)) {
		t = tee(in, own_pipe[1], len, SPLICE_F_NONBLOCK);
		if (t < 0)
			return errno == EAGAIN ? 0 : -errno; /* empty: nothing to write */
		if ((size_t)t == len ||
		    (ioctl(in, FIONREAD, &avail) == 0 && avail == t)) {
			res = splice_out(c, own_pipe[0], (size_t)t);
			if (res != t)
				own_pipe_empty();
			return res;
		}
		own_pipe_empty();
	}
	/* Ours cannot hold them: take them from the client's pipe. */
	__atomic_store_n(&c->m->consumed, 1, __ATOMIC_RELEASE);
	return splice_out(c, in, len);
}

static int64_t op_fsync(struct op_ctx *c)
{
	if (c->m->arg[0])
		return AIOD_RETRY(c, fdatasync(c->fd[0]));
	return AIOD_RETRY(c, fsync(c->fd[0]));
}

static int64_t op_truncate(struct op_ctx *c)
{
	struct proc_path pp;
	const char *path;
	int64_t res;
	int tmp;

	if (!c->name[0] && !is_opath(c->fd[0]))
		return AIOD_RETRY(c, ftruncate(c->fd[0], c->m->arg[0]));
	res = target_path(c, false, &pp, &path, &tmp);
	if (res == 0)
		res = AIOD_RETRY(c, truncate(path, c->m->arg[0]));
	close_tmp(tmp);
	return res;
}

static int64_t op_fallocate(struct op_ctx *c)
{
	const int64_t *a = c->m->arg;

	return AIOD_RETRY(c, fallocate(c->fd[0], (int)a[0], a[1], a[2]));
}

static int64_t op_copy_file_range(struct op_ctx *c)
{
	const int64_t *a = c->m->arg;
	loff_t in = a[0], out = a[1];

	return AIOD_RETRY(c, copy_file_range(c->fd[0], in == -1 ? NULL : &in,
					     c->fd[1], out == -1 ? NULL : &out,
					     c->m->data_len, (unsigned)a[2]));
}

static int64_t op_lseek(struct op_ctx *c)
{
	off_t r = lseek(c->fd[0], c->m->arg[0], (int)c->m->arg[1]);

	return r < 0 ? -errno : r;
}

/*
 * Fill the buffer with as many entries as fit, from position arg[0], and
 * say whether they reach the end (getdents found nothing more).  The
 * fd's position is shared by every worker (one open file description),
 * so the client must not run two READDIRs on one fd at once.
 */
static int64_t op_readdir(struct op_ctx *c)
{
	size_t used = 0;

	c->m->eof = 0;
	if (lseek(c->fd[0], c->m->arg[0], SEEK_SET) < 0)
		return -errno;
	while (c->data_len - used >= sizeof(struct dirent64)) {
		long n = syscall(SYS_getdents64, c->fd[0], c->data + used,
				 c->data_len - used);

		if (n < 0) {
			int err = errno;

			if (err == EINTR && !aiod_cancelled(c))
				continue;
			/* Entries already read are worth more than the error. */
			return used ? (int64_t)used : -err;
		}
		if (n == 0) {
			c->m->eof = 1;
			break;
		}
		used += (size_t)n;
	}
	if (!used && c->data_len) {
		/* Too small for even one more entry: say so, as getdents does. */
		long n = syscall(SYS_getdents64, c->fd[0], c->data, c->data_len);

		return n < 0 ? -errno : n;
	}
	return (int64_t)used;
}

static bool is_dot(const char *name)
{
	return name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2]));
}

/*
 * READDIRPLUS: each entry with its identity, so that a listing costs one
 * round trip rather than one per entry.  Stops at the first entry that
 * does not fit (the caller resumes from the last record's off), or at
 * the end, which it reports as READDIR does.
 */
static int64_t op_readdirplus(struct op_ctx *c)
{
	char dbuf[32768] __attribute__((aligned(8)));
	size_t used = 0;
	int dirfd = c->fd[0];

	c->m->eof = 0;
	if (lseek(dirfd, c->m->arg[0], SEEK_SET) < 0)
		return -errno;
	for (;;) {
		long n = syscall(SYS_getdents64, dirfd, dbuf, sizeof(dbuf));

		if (n < 0 && errno == EINTR && !aiod_cancelled(c))
			continue;
		if (n < 0)
			return used ? (int64_t)used : -errno;
		if (n == 0) {
			c->m->eof = 1;
			return (int64_t)used;
		}
		for (long pos = 0; pos < n;) {
			const struct dirent64 *d = (const struct dirent64 *)(dbuf + pos);
			size_t namelen = strlen(d->d_name);
			size_t reclen = (sizeof(struct aiod_direntplus) +
					 namelen + 1 + 7) & ~(size_t)7;
			struct aiod_direntplus *e;

			pos += d->d_reclen;
			if (reclen > c->data_len - used)
				return used ? (int64_t)used : -EINVAL;
			e = (struct aiod_direntplus *)(c->data + used);
			memset(e, 0, sizeof(*e));
			e->ino = d->d_ino;
			e->off = d->d_off;
			e->reclen = (uint16_t)reclen;
			e->type = d->d_type;
			e->namelen = (uint32_t)namelen;
			memcpy(e->name, d->d_name, namelen + 1);
			used += reclen;
			if (is_dot(d->d_name)) {
				e->err = 1;
				continue;
			}
			if (statx(dirfd, d->d_name, AT_SYMLINK_NOFOLLOW,
				  STATX_BASIC_STATS | STATX_BTIME, &e->stx) < 0) {
				e->err = -errno;
				continue;
			}
			e->fh.handle_bytes = AIOD_FH_MAX;
			if (name_to_handle_at(dirfd, d->d_name,
					      (struct file_handle *)&e->fh,
					      &e->mount_id, 0) < 0)
				e->fh.handle_bytes = 0;
		}
	}
}

static int64_t op_mkdir(struct op_ctx *c)
{
	int64_t res;

	if (!c->name[0])
		return -EINVAL;
	creating_umask(c, 1);
	res = mkdirat(c->fd[0], c->name[0], (mode_t)c->m->arg[0]) < 0 ? -errno : 0;

	return created(c, res, c->fd[0], c->name[0]);
}

static int64_t op_mknod(struct op_ctx *c)
{
	int64_t res;

	if (!c->name[0])
		return -EINVAL;
	creating_umask(c, 2);
	res = mknodat(c->fd[0], c->name[0], (mode_t)c->m->arg[0],
		      (dev_t)c->m->arg[1]) < 0 ? -errno : 0;

	return created(c, res, c->fd[0], c->name[0]);
}

static int64_t op_symlink(struct op_ctx *c)
{
	int64_t res;

	if (!c->name[1])
		return -EINVAL;
	res = symlinkat(c->name[1], c->fd[0], c->name[0]) < 0 ? -errno : 0;
	return created(c, res, c->fd[0], c->name[0]);
}

static int64_t op_readlink(struct op_ctx *c)
{
	ssize_t n = readlinkat(c->fd[0], c->name[0] ? c->name[0] : "", c->data,
			       c->data_len);

	return n < 0 ? -errno : n;
}

static int64_t op_link(struct op_ctx *c)
{
	int flags = (int)c->m->arg[0];
	struct proc_path pp;
	const char *old = c->name[0];
	int oldfd = c->fd[0];
	int64_t res;

	if (!c->name[1])
		return -EINVAL;
	if (!old) {
		/*
		 * AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH, which a
		 * caller's fsuid lacks; the magic link names the same object.
		 */
		old = proc_path(&pp, oldfd);
		oldfd = AT_FDCWD;
		flags |= AT_SYMLINK_FOLLOW;
	}
	res = linkat(oldfd, old, c->fd[1], c->name[1], flags) < 0 ? -errno : 0;
	return created(c, res, c->fd[1], c->name[1]);
}

/*
 * AIOD_F_LOOKUP on an UNLINK, RMDIR or RENAME: the object that dirfd/name
 * names before the call, opened O_PATH and identified (stx, fh), so
 * that it outlives the name the call removes.  Returns its fd, or -1
 * if there is none or it could not be opened.
 */
static int hold_removed(struct op_ctx *c, int dirfd, const char *name)
{
	int fd;

	if (!(c->m->flags & AIOD_F_LOOKUP))
		return -1;
	fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fill_identity(c, fd, NULL) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The call that may have removed what fd holds returned res. */
static int64_t removed(struct op_ctx *c, int64_t res, int fd)
{
	struct statx sx;

	if (fd < 0)
		return res;
	if (res < 0) {
		close(fd);
		memset(&c->m->stx, 0, sizeof(c->m->stx));
		c->m->fh.handle_bytes = 0;
		return res;
	}
	/*
	 * A directory's links after the call: 0 unless the name was made
	 * another's between the open and the call (behind the client).
	 */
	if (S_ISDIR(c->m->stx.stx_mode) &&
	    statx(fd, "", AT_EMPTY_PATH, STATX_NLINK, &sx) == 0)
		c->m->stx.stx_nlink = sx.stx_nlink;
	c->ret_fd = fd;
	return res;
}

static int64_t op_unlink(struct op_ctx *c)
{
	int held;

	if (!c->name[0])
		return -EINVAL;
	held = hold_removed(c, c->fd[0], c->name[0]);
	return removed(c, unlinkat(c->fd[0], c->name[0], 0) < 0 ? -errno : 0,
		       held);
}

static int64_t op_rmdir(struct op_ctx *c)
{
	int held;

	if (!c->name[0])
		return -EINVAL;
	held = hold_removed(c, c->fd[0], c->name[0]);
	return removed(c, unlinkat(c->fd[0], c->name[0], AT_REMOVEDIR) < 0 ? -errno : 0,
		       held);
}

static int64_t op_rename(struct op_ctx *c)
{
	unsigned flags = (unsigned)c->m->arg[0];
	int held = -1;

	if (!c->name[0] || !c->name[1])
		return -EINVAL;
	if (!(flags & (RENAME_EXCHANGE | RENAME_NOREPLACE)))
		held = hold_removed(c, c->fd[1], c->name[1]);
	return removed(c, renameat2(c->fd[0], c->name[0], c->fd[1], c->name[1],
				    flags) < 0 ? -errno : 0,
		       held);
}

static int64_t op_chmod(struct op_ctx *c)
{
	mode_t mode = (mode_t)c->m->arg[0];
	struct proc_path pp;

	if (c->name[0])
		return fchmodat(c->fd[0], c->name[0], mode, (int)c->m->arg[1]) < 0
			       ? -errno : 0;
	if (!is_opath(c->fd[0]))
		return fchmod(c->fd[0], mode) < 0 ? -errno : 0;
	return chmod(proc_path(&pp, c->fd[0]), mode) < 0 ? -errno : 0;
}

static int64_t op_chown(struct op_ctx *c)
{
	const int64_t *a = c->m->arg;
	int flags = (int)a[2] | (c->name[0] ? 0 : AT_EMPTY_PATH);

	return fchownat(c->fd[0], c->name[0] ? c->name[0] : "", (uid_t)a[0],
			(gid_t)a[1], flags) < 0 ? -errno : 0;
}

static int64_t op_utimens(struct op_ctx *c)
{
	const int64_t *a = c->m->arg;
	const struct timespec ts[2] = {
		{ .tv_sec = a[0], .tv_nsec = a[1] },
		{ .tv_sec = a[2], .tv_nsec = a[3] },
	};
	int flags = (int)a[4] | (c->name[0] ? 0 : AT_EMPTY_PATH);

	return utimensat(c->fd[0], c->name[0] ? c->name[0] : "", ts, flags) < 0
		       ? -errno : 0;
}

static int64_t op_statfs(struct op_ctx *c)
{
	struct aiod_statfs *s = &c->m->sfs;
	struct statvfs v;
	int fd = c->fd[0], tmp = -1;

	if (c->name[0]) {
		tmp = openat(fd, c->name[0], O_PATH | O_CLOEXEC);
		if (tmp < 0)
			return -errno;
		fd = tmp;
	}
	if (fstatvfs(fd, &v) < 0) {
		int err = errno;

		close_tmp(tmp);
		return -err;
	}
	close_tmp(tmp);
	*s = (struct aiod_statfs){
		.bsize = v.f_bsize, .frsize = v.f_frsize, .blocks = v.f_blocks,
		.bfree = v.f_bfree, .bavail = v.f_bavail, .files = v.f_files,
		.ffree = v.f_ffree, .favail = v.f_favail, .fsid = v.f_fsid,
		.flag = v.f_flag, .namemax = v.f_namemax,
	};
	return 0;
}

static int64_t op_access(struct op_ctx *c)
{
	int flags = (int)c->m->arg[1] | AT_EACCESS | (c->name[0] ? 0 : AT_EMPTY_PATH);

	return faccessat(c->fd[0], c->name[0] ? c->name[0] : "",
			 (int)c->m->arg[0], flags) < 0 ? -errno : 0;
}

/*
 * The xattr calls have no *at() form in glibc: reach the object through
 * a path, following no symlink but one named by fd itself.
 */
static int64_t xattr_call(struct op_ctx *c, int op)
{
	struct proc_path pp;
	const char *path;
	ssize_t r = -1;
	int tmp, err;
	int64_t res;

	if (op != AIOD_OP_LISTXATTR && !c->name[1])
		return -EINVAL;
	res = target_path(c, true, &pp, &path, &tmp);
	if (res < 0)
		return res;
	switch (op) {
	case AIOD_OP_GETXATTR:
		r = getxattr(path, c->name[1], c->data, c->data_len);
		break;
	case AIOD_OP_SETXATTR:
		r = setxattr(path, c->name[1], c->data ? c->data : "",
			     c->data_len, (int)c->m->arg[0]);
		break;
	case AIOD_OP_LISTXATTR:
		r = listxattr(path, c->data, c->data_len);
		break;
	case AIOD_OP_REMOVEXATTR:
		r = removexattr(path, c->name[1]);
		break;
	}
	err = errno;
	close_tmp(tmp);
	return r < 0 ? -err : r;
}

static int64_t op_getxattr(struct op_ctx *c)
{
	return xattr_call(c, AIOD_OP_GETXATTR);
}

static int64_t op_setxattr(struct op_ctx *c)
{
	return xattr_call(c, AIOD_OP_SETXATTR);
}

static int64_t op_listxattr(struct op_ctx *c)
{
	return xattr_call(c, AIOD_OP_LISTXATTR);
}

static int64_t op_removexattr(struct op_ctx *c)
{
	return xattr_call(c, AIOD_OP_REMOVEXATTR);
}

static int64_t op_flock(struct op_ctx *c)
{
	int how = (int)c->m->arg[0];
	int64_t res;

	if (how & LOCK_NB)
		return flock(c->fd[0], how) < 0 ? -errno : 0;
	aiod_wait_begin();
	res = AIOD_RETRY(c, flock(c->fd[0], how));
	aiod_wait_end();
	return res;
}

/* Only OFD locks: classic POSIX locks belong to the worker process. */
static int64_t op_lock(struct op_ctx *c)
{
	struct aiod_lock *lk = &c->m->lk;
	struct flock fl = {
		.l_type = lk->type, .l_whence = lk->whence,
		.l_start = lk->start, .l_len = lk->len,
	};
	int cmd = (int)c->m->arg[0];
	int64_t res;

	if (cmd != F_OFD_GETLK && cmd != F_OFD_SETLK && cmd != F_OFD_SETLKW)
		return -EINVAL;
	if (cmd == F_OFD_SETLKW)
		aiod_wait_begin();
	res = AIOD_RETRY(c, fcntl(c->fd[0], cmd, &fl));
	if (cmd == F_OFD_SETLKW)
		aiod_wait_end();
	if (res >= 0 && cmd == F_OFD_GETLK) {
		lk->type = fl.l_type;
		lk->whence = fl.l_whence;
		lk->start = fl.l_start;
		lk->len = fl.l_len;
		lk->pid = fl.l_pid;
	}
	return res < 0 ? res : 0;
}

/*
 * The inode flags, by the four ioctls chattr(1) and lsattr(1) use (the
 * kernel's FS_IOC_GETFLAGS takes an int, whatever its number says).
 */
static int64_t op_fileattr(struct op_ctx *c)
{
	struct aiod_fileattr *fa = &c->m->fa;
	struct fsxattr x = {
		.fsx_xflags = fa->xflags, .fsx_extsize = fa->extsize,
		.fsx_nextents = fa->nextents, .fsx_projid = fa->projid,
		.fsx_cowextsize = fa->cowextsize,
	};
	unsigned long cmd = (unsigned long)c->m->arg[0];
	int flags = (int)fa->flags;

	switch (cmd) {
	case FS_IOC_GETFLAGS:
	case FS_IOC_SETFLAGS:
	case FS_IOC_GETVERSION: /* an int, whatever the command's size says */
	case FS_IOC_SETVERSION:
		if (ioctl(c->fd[0], cmd, &flags) < 0)
			return -errno;
		fa->flags = (uint32_t)flags;
		return 0;
	case FS_IOC_FSGETXATTR:
	case FS_IOC_FSSETXATTR:
		if (ioctl(c->fd[0], cmd, &x) < 0)
			return -errno;
		fa->xflags = x.fsx_xflags;
		fa->extsize = x.fsx_extsize;
		fa->nextents = x.fsx_nextents;
		fa->projid = x.fsx_projid;
		fa->cowextsize = x.fsx_cowextsize;
		return 0;
	default:
		return -ENOTTY;
	}
}

op_fn *const aiod_ops[AIOD_OP__COUNT] = {
	[AIOD_OP_NOP] = op_nop,
	[AIOD_OP_LOOKUP] = op_lookup,
	[AIOD_OP_STATX] = op_statx,
	[AIOD_OP_OPEN] = op_open,
	[AIOD_OP_OPEN_BY_HANDLE] = op_open_by_handle,
	[AIOD_OP_READDIRPLUS] = op_readdirplus,
	[AIOD_OP_CLOSE] = op_close,
	[AIOD_OP_FLUSH] = op_close,     /* of the worker's copy: the same */
	[AIOD_OP_PREAD] = op_pread,
	[AIOD_OP_PWRITE] = op_pwrite,
	[AIOD_OP_FSYNC] = op_fsync,
	[AIOD_OP_TRUNCATE] = op_truncate,
	[AIOD_OP_FALLOCATE] = op_fallocate,
	[AIOD_OP_COPY_FILE_RANGE] = op_copy_file_range,
	[AIOD_OP_LSEEK] = op_lseek,
	[AIOD_OP_READDIR] = op_readdir,
	[AIOD_OP_MKDIR] = op_mkdir,
	[AIOD_OP_MKNOD] = op_mknod,
	[AIOD_OP_SYMLINK] = op_symlink,
	[AIOD_OP_READLINK] = op_readlink,
	[AIOD_OP_LINK] = op_link,
	[AIOD_OP_UNLINK] = op_unlink,
	[AIOD_OP_RMDIR] = op_rmdir,
	[AIOD_OP_RENAME] = op_rename,
	[AIOD_OP_CHMOD] = op_chmod,
	[AIOD_OP_CHOWN] = op_chown,
	[AIOD_OP_UTIMENS] = op_utimens,
	[AIOD_OP_STATFS] = op_statfs,
	[AIOD_OP_ACCESS] = op_access,
	[AIOD_OP_GETXATTR] = op_getxattr,
	[AIOD_OP_SETXATTR] = op_setxattr,
	[AIOD_OP_LISTXATTR] = op_listxattr,
	[AIOD_OP_REMOVEXATTR] = op_removexattr,
	[AIOD_OP_FLOCK] = op_flock,
	[AIOD_OP_LOCK] = op_lock,
	[AIOD_OP_PWRITE_PIPE] = op_pwrite_pipe,
	[AIOD_OP_FILEATTR] = op_fileattr,
};

_Static_assert(sizeof(aiod_ops) / sizeof(aiod_ops[0]) == AIOD_OP__COUNT,
	       "one handler per opcode");
