/* SPDX-License-Identifier: MIT */
/*
 * slowfs.c - a passthrough FUSE filesystem that makes every operation
 * take at least a set time: a stand-in for a slow source (a network
 * filesystem, a busy disk) in the comparison run by tests/bench/run.
 *
 *   slowfs [-f] [-s] [-d] [-o delay_ms=N,threads=N,...] SOURCE MOUNTPOINT
 *
 *   delay_ms=N   sleep N milliseconds in every operation before doing it
 *                (default 2; 0 makes slowfs a plain passthrough)
 *   threads=N    at most N requests served at once (default 64); -s
 *                serves one at a time
 *
 * Other -o options go to libfuse (fuse(8)).  Without -f it detaches once
 * mounted, like any libfuse filesystem; the harness runs it with -f and
 * ends it by unmounting.
 *
 * DESIGN.  The path-based ("high-level") libfuse API on its
 * multi-threaded loop: every request the kernel sends runs in a thread
 * of libfuse's pool, sleeps for the delay, then makes the same call on
 * SOURCE relative to a directory descriptor opened at start.  Sleeping
 * threads do not hold each other up, so N requests in flight cost one
 * delay, not N: what is slow is each operation, not the filesystem as a
 * whole, as with a remote server that serves many clients at once.  Only
 * init and destroy are not delayed.
 *
 * So that every read, write and lookup really reaches slowfs (and pays
 * the delay), file data bypasses the kernel's page cache (direct_io) and
 * the kernel keeps no names or attributes (all timeouts 0).  Inode
 * numbers are those of SOURCE (use_ino), and an unlinked open file is
 * removed at once (hard_remove), as on SOURCE.
 *
 * TRUST.  A benchmark tool, not a filesystem for sharing: every call is
 * made with the daemon's credentials, whoever asks, and nothing is
 * checked beyond what SOURCE checks for the daemon's own user.  Mount it
 * without allow_other.
 */
#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <fuse.h>
#include <fuse_lowlevel.h>

struct slow_opts {
	char *source;
	unsigned delay_ms;
	unsigned threads;
};

/* Set before the loop starts, read-only afterwards. */
static struct timespec slow_delay;
static int slow_src = -1;

/* Sleep for the configured delay, the whole of it even if interrupted. */
static void delay(void)
{
	struct timespec end;

	if (slow_delay.tv_sec == 0 && slow_delay.tv_nsec == 0)
		return;
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += slow_delay.tv_sec;
	end.tv_nsec += slow_delay.tv_nsec;
	if (end.tv_nsec >= 1000000000L) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000L;
	}
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &end, NULL) ==
	       EINTR)
		;
}

/* The name of PATH relative to the source directory ("/" is "."). */
static const char *rel(const char *path)
{
	return path[1] ? path + 1 : ".";
}

/* -errno of the last call if RES is -1, else 0. */
static int ret(int res)
{
	return res == -1 ? -errno : 0;
}

static void *slow_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	(void)conn;
	cfg->use_ino = 1;
	cfg->nullpath_ok = 1;
	cfg->hard_remove = 1;
	cfg->direct_io = 1;
	cfg->entry_timeout = 0;
	cfg->attr_timeout = 0;
	cfg->negative_timeout = 0;
	return NULL;
}

static int slow_getattr(const char *path, struct stat *st,
			struct fuse_file_info *fi)
{
	delay();
	if (fi)
		return ret(fstat(fi->fh, st));
	return ret(fstatat(slow_src, rel(path), st, AT_SYMLINK_NOFOLLOW));
}

static int slow_access(const char *path, int mask)
{
	delay();
	return ret(faccessat(slow_src, rel(path), mask, AT_EACCESS));
}

static int slow_readlink(const char *path, char *buf, size_t size)
{
	ssize_t n;

	delay();
	n = readlinkat(slow_src, rel(path), buf, size - 1);
	if (n == -1)
		return -errno;
	buf[n] = '\0';
	return 0;
}

static int slow_mknod(const char *path, mode_t mode, dev_t rdev)
{
	delay();
	return ret(mknodat(slow_src, rel(path), mode, rdev));
}

static int slow_mkdir(const char *path, mode_t mode)
{
	delay();
	return ret(mkdirat(slow_src, rel(path), mode));
}

static int slow_unlink(const char *path)
{
	delay();
	return ret(unlinkat(slow_src, rel(path), 0));
}

static int slow_rmdir(const char *path)
{
	delay();
	return ret(unlinkat(slow_src, rel(path), AT_REMOVEDIR));
}

static int slow_symlink(const char *target, const char *path)
{
	delay();
	return ret(symlinkat(target, slow_src, rel(path)));
}

static int slow_rename(const char *from, const char *to, unsigned flags)
{
	delay();
	return ret(renameat2(slow_src, rel(from), slow_src, rel(to), flags));
}

static int slow_link(const char *from, const char *to)
{
	delay();
	return ret(linkat(slow_src, rel(from), slow_src, rel(to), 0));
}

static int slow_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	delay();
	if (fi)
		return ret(fchmod(fi->fh, mode));
	return ret(fchmodat(slow_src, rel(path), mode, 0));
}

static int slow_chown(const char *path, uid_t uid, gid_t gid,
		      struct fuse_file_info *fi)
{
	delay();
	if (fi)
		return ret(fchown(fi->fh, uid, gid));
	return ret(
		fchownat(slow_src, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW));
}

static int slow_truncate(const char *path, off_t size,
			 struct fuse_file_info *fi)
{
	int fd, res;

	delay();
	if (fi)
		return ret(ftruncate(fi->fh, size));
	fd = openat(slow_src, rel(path), O_WRONLY | O_CLOEXEC);
	if (fd == -1)
		return -errno;
	res = ret(ftruncate(fd, size));
	close(fd);
	return res;
}

static int slow_utimens(const char *path, const struct timespec tv[2],
			struct fuse_file_info *fi)
{
	delay();
	if (fi)
		return ret(futimens(fi->fh, tv));
	return ret(utimensat(slow_src, rel(path), tv, AT_SYMLINK_NOFOLLOW));
}

static int slow_open(const char *path, struct fuse_file_info *fi)
{
	int fd;

	delay();
	fd = openat(slow_src, rel(path), (fi->flags & ~O_NOFOLLOW) | O_CLOEXEC);
	if (fd == -1)
		return -errno;
	fi->fh = fd;
	return 0;
}

static int slow_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	int fd;

	delay();
	fd = openat(slow_src, rel(path), fi->flags | O_CREAT | O_CLOEXEC, mode);
	if (fd == -1)
		return -errno;
	fi->fh = fd;
	return 0;
}

static int slow_read(const char *path, char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	ssize_t n;

	(void)path;
	delay();
	n = pread(fi->fh, buf, size, off);
	return n == -1 ? -errno : (int)n;
}

static int slow_write(const char *path, const char *buf, size_t size, off_t off,
		      struct fuse_file_info *fi)
{
	ssize_t n;

	(void)path;
	delay();
	n = pwrite(fi->fh, buf, size, off);
	return n == -1 ? -errno : (int)n;
}

static int slow_statfs(const char *path, struct statvfs *st)
{
	(void)path;
	delay();
	return ret(fstatvfs(slow_src, st));
}

/* Closing a duplicate does what close(2) would on SOURCE (lock release,
 * NFS-style flush) while keeping the descriptor for later writes. */
static int slow_flush(const char *path, struct fuse_file_info *fi)
{
	int fd;

	(void)path;
	delay();
	fd = dup(fi->fh);
	if (fd == -1)
		return -errno;
	return ret(close(fd));
}

static int slow_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	delay();
	close(fi->fh);
	return 0;
}

static int slow_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	delay();
	return ret(datasync ? fdatasync(fi->fh) : fsync(fi->fh));
}

static int slow_fallocate(const char *path, int mode, off_t off, off_t len,
			  struct fuse_file_info *fi)
{
	(void)path;
	delay();
	return ret(fallocate(fi->fh, mode, off, len));
}

static int slow_opendir(const char *path, struct fuse_file_info *fi)
{
	DIR *dir;
	int fd;

	delay();
	fd = openat(slow_src, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1)
		return -errno;
	dir = fdopendir(fd);
	if (!dir) {
		int err = errno;

		close(fd);
		return -err;
	}
	fi->fh = (uintptr_t)dir;
	return 0;
}

/*
 * The offset handed to the kernel with each entry is the position of
 * the entry after it, so a later call starting at OFF resumes exactly
 * there.  An entry that does not fit is put back by seeking to where it
 * began.  The kernel never runs two readdirs on one open directory at
 * once, so the DIR needs no lock.
 */
static int slow_readdir(const char *path, void *buf, fuse_fill_dir_t fill,
			off_t off, struct fuse_file_info *fi,
			enum fuse_readdir_flags flags)
{
	DIR *dir = (DIR *)(uintptr_t)fi->fh;
	struct dirent *d;
	struct stat st;
	long pos;

	(void)path;
	(void)flags;
	delay();
	if (off != telldir(dir))
		seekdir(dir, off);
	for (;;) {
		pos = telldir(dir);
		errno = 0;
		d = readdir(dir);
		if (!d)
			return -errno;
		memset(&st, 0, sizeof(st));
		st.st_ino = d->d_ino;
		st.st_mode = (mode_t)DTTOIF(d->d_type);
		if (fill(buf, d->d_name, &st, telldir(dir), 0)) {
			seekdir(dir, pos);
			return 0;
		}
	}
}

static int slow_releasedir(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	delay();
	closedir((DIR *)(uintptr_t)fi->fh);
	return 0;
}

static const struct fuse_operations slow_ops = {
	.init = slow_init,
	.getattr = slow_getattr,
	.access = slow_access,
	.readlink = slow_readlink,
	.mknod = slow_mknod,
	.mkdir = slow_mkdir,
	.unlink = slow_unlink,
	.rmdir = slow_rmdir,
	.symlink = slow_symlink,
	.rename = slow_rename,
	.link = slow_link,
	.chmod = slow_chmod,
	.chown = slow_chown,
	.truncate = slow_truncate,
	.utimens = slow_utimens,
	.open = slow_open,
	.create = slow_create,
	.read = slow_read,
	.write = slow_write,
	.statfs = slow_statfs,
	.flush = slow_flush,
	.release = slow_release,
	.fsync = slow_fsync,
	.fallocate = slow_fallocate,
	.opendir = slow_opendir,
	.readdir = slow_readdir,
	.releasedir = slow_releasedir,
};

#define SLOW_OPT(t, f) { t, offsetof(struct slow_opts, f), 0 }

static const struct fuse_opt slow_spec[] = {
	SLOW_OPT("delay_ms=%u", delay_ms),
	SLOW_OPT("threads=%u", threads),
	FUSE_OPT_END
};

/* The first argument that is not an option is SOURCE; the rest, options
 * included, stay for libfuse (which takes the next one as MOUNTPOINT). */
static int slow_arg(void *data, const char *arg, int key,
		    struct fuse_args *outargs)
{
	struct slow_opts *o = data;

	(void)outargs;
	if (key == FUSE_OPT_KEY_NONOPT && !o->source) {
		o->source = strdup(arg);
		return 0;
	}
	return 1;
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [-f] [-s] [-d] [-o delay_ms=N,threads=N,...] "
		"SOURCE MOUNTPOINT\n",
		prog);
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct slow_opts o = { .delay_ms = 2, .threads = 64 };
	struct fuse_cmdline_opts cl;
	struct fuse_loop_config *lc;
	struct fuse *fuse;
	int res = 1;

	if (fuse_opt_parse(&args, &o, slow_spec, slow_arg) == -1)
		return 1;
	if (fuse_parse_cmdline(&args, &cl) != 0)
		return 1;
	if (cl.show_help || cl.show_version || !o.source || !cl.mountpoint) {
		usage(argv[0]);
		return cl.show_help || cl.show_version ? 0 : 1;
	}
	if (o.threads < 1)
		o.threads = 1;
	slow_delay.tv_sec = o.delay_ms / 1000;
	slow_delay.tv_nsec = (long)(o.delay_ms % 1000) * 1000000L;

	slow_src = open(o.source, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (slow_src == -1) {
		fprintf(stderr, "slowfs: %s: %s\n", o.source, strerror(errno));
		return 1;
	}

	fuse = fuse_new(&args, &slow_ops, sizeof(slow_ops), NULL);
	if (!fuse)
		goto out_args;
	if (fuse_mount(fuse, cl.mountpoint) != 0)
		goto out_fuse;
	if (fuse_daemonize(cl.foreground) != 0)
		goto out_unmount;
	if (fuse_set_signal_handlers(fuse_get_session(fuse)) != 0)
		goto out_unmount;

	if (cl.singlethread) {
		res = fuse_loop(fuse);
	} else {
		lc = fuse_loop_cfg_create();
		fuse_loop_cfg_set_max_threads(lc, o.threads);
		fuse_loop_cfg_set_idle_threads(lc, o.threads);
		res = fuse_loop_mt(fuse, lc);
		fuse_loop_cfg_destroy(lc);
	}
	res = res != 0;

	fuse_remove_signal_handlers(fuse_get_session(fuse));
out_unmount:
	fuse_unmount(fuse);
out_fuse:
	fuse_destroy(fuse);
out_args:
	close(slow_src);
	free(cl.mountpoint);
	free(o.source);
	fuse_opt_free_args(&args);
	return res;
}
