/* SPDX-License-Identifier: MIT */
/*
 * test_ops.c - every operation of enum aiod_op, run by real aiod workers
 * against a fresh temporary directory.
 *
 * The tests submit requests to a pool of a few workers and compare what
 * the worker did with what direct syscalls in this process see: the same
 * stat fields, the same bytes, the same owners.  Failure cases check the
 * exact -errno the kernel gives for them.  Each test gets a directory of
 * its own under the temporary one (global d), which the group teardown
 * removes whole.
 *
 * Tests that need one particular worker to serve several requests in a
 * row (credentials switching back, a worker surviving a cancelled wait)
 * start a pool of one worker of their own.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <stdarg.h>
#include <setjmp.h>
#include <cmocka.h>

#include "aiod-internal.h"
#include "scratch.h"

#define MIB (1u << 20)
/* How long any request that does not block may take. */
#define RUN_TIMEOUT_MS 5000

static struct aiod_pool *pool;
static char top[] = "/tmp/aiod-test-ops-XXXXXX";
static int topfd = -1;
static char dpath[PATH_MAX];    /* this test's directory */
static int d = -1;              /* and an fd for it */
static unsigned ntests;
static pid_t child;             /* a test's busy child, ended at teardown */
/* Requests whose callback has not run; see group_teardown(). */
static int outstanding;

/* ---- running requests ------------------------------------------------ */

/* What a request's callback saw; req->data points at one. */
struct seen {
	int calls;
	bool had_out;           /* req->out was set in the callback */
	char *copy;             /* if set, the callback copies req->out here */
	size_t copy_max;
};

static long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void on_done(struct aiod_req *req)
{
	struct seen *s = req->data;

	s->calls++;
	outstanding--;
	if (s->copy && req->out && req->result > 0) {
		size_t n = (size_t)req->result;

		s->had_out = true;
		memcpy(s->copy, req->out, n < s->copy_max ? n : s->copy_max);
	}
}

static void submit_on(struct aiod_pool *p, struct aiod_req *req, struct seen *s)
{
	req->cb = on_done;
	req->data = s;
	assert_int_equal(aiod_submit(p, req), 0);
	outstanding++;
}

/*
 * Wait up to ms for s's callback.  Returns the milliseconds it took; the
 * caller checks s->calls.
 */
static long wait_on(struct aiod_pool *p, struct seen *s, long ms)
{
	long t0 = now_ms(), left;

	while (!s->calls && (left = ms - (now_ms() - t0)) > 0)
		assert_true(aiod_pool_wait(p, (int)left) >= 0);
	return now_ms() - t0;
}

/* Whether req may return the object it removes a name of (ret_fd). */
static bool removal_held(const struct aiod_req *req)
{
	return (req->op == AIOD_OP_UNLINK || req->op == AIOD_OP_RMDIR ||
		req->op == AIOD_OP_RENAME) &&
	       (req->flags & AIOD_F_LOOKUP);
}

/*
 * Submit req, wait for its callback (which must run exactly once, within
 * RUN_TIMEOUT_MS) and return its result.  s may be NULL.
 */
static int64_t run_on(struct aiod_pool *p, struct aiod_req *req,
		      struct seen *s)
{
	struct seen local = { 0 };

	if (!s)
		s = &local;
	submit_on(p, req, s);
	wait_on(p, s, RUN_TIMEOUT_MS);
	assert_int_equal(s->calls, 1);
	/* Nothing else is outstanding, so nothing more may run. */
	assert_int_equal(aiod_pool_process(p), 0);
	assert_int_equal(s->calls, 1);
	if (req->op == AIOD_OP_OPEN || req->op == AIOD_OP_OPEN_BY_HANDLE)
		assert_int_equal(req->ret_fd >= 0, req->result == 0);
	else if (removal_held(req))
		assert_true(req->result == 0 || req->ret_fd == -1);
	else
		assert_int_equal(req->ret_fd, -1);
	return req->result;
}

static int64_t run(struct aiod_req *req)
{
	return run_on(pool, req, NULL);
}

static struct aiod_pool *new_pool(unsigned workers)
{
	struct aiod_pool_opts opts = { .workers = workers };
	struct aiod_pool *p;

	assert_int_equal(aiod_pool_new(&p, &opts), 0);
	return p;
}

static void need_root(void)
{
	if (geteuid() != 0)
		skip();
}

/* ---- the oracle: direct syscalls in this process --------------------- */

static int open_at(int dir, const char *name, int flags)
{
	int fd = openat(dir, name, flags | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	return fd;
}

static void put_file(int dir, const char *name, const void *data, size_t len)
{
	int fd = open_at(dir, name, O_WRONLY | O_CREAT | O_TRUNC);

	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void put_str(int dir, const char *name, const char *s)
{
	put_file(dir, name, s, strlen(s));
}

/* The whole of a small file, NUL-terminated. */
static const char *get_str(int dir, const char *name)
{
	static char buf[256];
	int fd = open_at(dir, name, O_RDONLY);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);

	assert_true(n >= 0);
	buf[n] = 0;
	close(fd);
	return buf;
}

static struct stat lstat_at(int dir, const char *name)
{
	struct stat st;

	assert_int_equal(fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW), 0);
	return st;
}

static bool exists(int dir, const char *name)
{
	struct stat st;

	return fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static void fill(unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 7 + seed + (i >> 12));
}

static void assert_stx_is(const struct statx *x, const struct stat *st)
{
	assert_true((x->stx_mask & STATX_BASIC_STATS) == STATX_BASIC_STATS);
	assert_int_equal(x->stx_ino, st->st_ino);
	assert_int_equal(x->stx_mode, st->st_mode);
	assert_int_equal(x->stx_nlink, st->st_nlink);
	assert_int_equal(x->stx_uid, st->st_uid);
	assert_int_equal(x->stx_gid, st->st_gid);
	assert_int_equal(x->stx_size, st->st_size);
	assert_int_equal(x->stx_blocks, st->st_blocks);
	assert_int_equal(makedev(x->stx_dev_major, x->stx_dev_minor),
			 st->st_dev);
	assert_int_equal(makedev(x->stx_rdev_major, x->stx_rdev_minor),
			 st->st_rdev);
	assert_int_equal(x->stx_mtime.tv_sec, st->st_mtim.tv_sec);
	assert_int_equal(x->stx_mtime.tv_nsec, st->st_mtim.tv_nsec);
	assert_int_equal(x->stx_ctime.tv_sec, st->st_ctim.tv_sec);
	assert_int_equal(x->stx_ctime.tv_nsec, st->st_ctim.tv_nsec);
}

/* ---- shorthands for common requests ---------------------------------- */

static int64_t pool_open(int dir, const char *name, int flags, mode_t mode,
			 int *fd)
{
	struct aiod_req req;
	int64_t res;

	aiod_prep_open(&req, dir, name, flags, mode, 0);
	res = run(&req);
	if (fd)
		*fd = req.ret_fd;
	else if (req.ret_fd >= 0)
		close(req.ret_fd);
	return res;
}

static int64_t pool_getxattr(int dir, const char *name, const char *attr,
			     void *buf, size_t len)
{
	struct aiod_req req;

	aiod_prep_getxattr(&req, dir, name, attr, buf, len);
	return run(&req);
}

static int64_t pool_setxattr(int dir, const char *name, const char *attr,
			     const char *value, int flags)
{
	struct aiod_req req;

	aiod_prep_setxattr(&req, dir, name, attr, value, strlen(value), flags);
	return run(&req);
}

/* ---- setup ------------------------------------------------------------ */

static int group_setup(void **state)
{
	(void)state;
	umask(022);
	if (!mkdtemp(top))
		return -1;
	topfd = open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (topfd < 0)
		return -1;
	return aiod_pool_new(&pool, &(struct aiod_pool_opts){ .workers = 3 });
}

static int group_teardown(void **state)
{
	(void)state;
	/*
	 * After a failed test, a request may still be out, whose callback
	 * would write into the failed test's stack frame: leave the pool
	 * alone then, its workers die with this process anyway.
	 */
	if (!outstanding)
		aiod_pool_free(pool);
	close(topfd);
	return scratch_remove(top);
}

static int test_setup(void **state)
{
	(void)state;
	snprintf(dpath, sizeof(dpath), "%s/t%u", top, ++ntests);
	if (mkdir(dpath, 0755) < 0)
		return -1;
	d = open(dpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return d < 0 ? -1 : 0;
}

static int test_teardown(void **state)
{
	(void)state;
	if (child > 0) { /* a test that failed before it ended its child */
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		child = 0;
	}
	close(d);
	d = -1;
	return 0;
}

/* ---- nop and the submission checks ----------------------------------- */

static void test_ops_nop(void **state)
{
	struct aiod_req req;

	(void)state;
	aiod_prep_nop(&req, 0);
	assert_int_equal(run(&req), 0);
}

static void test_ops_nop_delay(void **state)
{
	struct aiod_req req;
	long t0 = now_ms(), took;

	(void)state;
	aiod_prep_nop(&req, 150000);
	assert_int_equal(run(&req), 0);
	took = now_ms() - t0;
	assert_true(took >= 150);
	assert_true(took < 2000);
}

static void test_ops_submit_rejects_bad_requests(void **state)
{
	struct aiod_pool_stats before, after;
	struct aiod_req req;

	(void)state;
	aiod_pool_stats(pool, &before);
	aiod_prep_nop(&req, 0);
	req.op = AIOD_OP__COUNT;
	assert_int_equal(aiod_submit(pool, &req), -EINVAL);
	req.op = 1000;
	assert_int_equal(aiod_submit(pool, &req), -EINVAL);
	aiod_prep_nop(&req, 0);
	req.flags = 1u << 20;
	assert_int_equal(aiod_submit(pool, &req), -EINVAL);
	aiod_prep_pread(&req, 0, NULL, AIOD_BUF_MAX + 1, 0);
	assert_int_equal(aiod_submit(pool, &req), -E2BIG);
	/* None of them counts as submitted, and no callback runs. */
	aiod_pool_stats(pool, &after);
	assert_int_equal(after.submitted, before.submitted);
	assert_int_equal(aiod_pool_wait(pool, 0), 0);
}

/* ---- lookup and statx ------------------------------------------------- */

static void check_lookup(const char *name)
{
	struct stat st = lstat_at(d, name);
	struct statx direct;
	struct aiod_req req;

	aiod_prep_lookup(&req, d, name);
	assert_int_equal(run(&req), 0);
	assert_stx_is(&req.stx, &st);
	assert_true(req.fh.handle_bytes > 0);
	assert_true(req.fh.handle_bytes <= AIOD_FH_MAX);
	assert_int_equal(statx(d, name, AT_SYMLINK_NOFOLLOW, STATX_MNT_ID,
			       &direct), 0);
	assert_int_equal(req.mount_id, direct.stx_mnt_id);
}

static void test_ops_lookup_matches_lstat(void **state)
{
	struct aiod_req req;
	struct stat st;
	int fd;

	(void)state;
	put_str(d, "file", "contents");
	assert_int_equal(mkdirat(d, "dir", 0700), 0);
	assert_int_equal(symlinkat("file", d, "ln"), 0);
	check_lookup("file");
	check_lookup("dir");
	check_lookup("ln");         /* the link, not its target */

	/* The handle opens the very file. */
	aiod_prep_lookup(&req, d, "file");
	assert_int_equal(run(&req), 0);
	if (geteuid() == 0) {
		fd = open_by_handle_at(d, (struct file_handle *)&req.fh,
				       O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		assert_int_equal(fstat(fd, &st), 0);
		assert_int_equal(st.st_ino, lstat_at(d, "file").st_ino);
		close(fd);
	}

	/* With name NULL, fd itself is looked up. */
	st = lstat_at(d, "file");
	fd = open_at(d, "file", O_PATH);
	aiod_prep_lookup(&req, fd, NULL);
	assert_int_equal(run(&req), 0);
	assert_stx_is(&req.stx, &st);
	assert_true(req.fh.handle_bytes > 0);
	close(fd);
}

/*
 * An object named by handle is the very object: after a rename, under a
 * caller who could not reach it by name, and -ESTALE once it is gone.
 */
static void test_ops_object_by_handle(void **state)
{
	const struct aiod_cred nobody = { .uid = 65534, .gid = 65534 };
	struct aiod_fh fh, dirfh;
	struct aiod_req req;
	struct stat st;

	(void)state;
	need_root();
	assert_int_equal(mkdirat(d, "locked", 0700), 0);
	put_str(d, "locked/file", "contents");
	assert_int_equal(fchmodat(d, "locked/file", 0600, 0), 0);
	aiod_prep_lookup(&req, d, "locked/file");
	assert_int_equal(run(&req), 0);
	fh = req.fh;
	aiod_prep_lookup(&req, d, "locked");
	assert_int_equal(run(&req), 0);
	dirfh = req.fh;
	assert_int_equal(renameat(d, "locked/file", d, "locked/moved"), 0);
	st = lstat_at(d, "locked/moved");

	aiod_prep_statx(&req, d, NULL, 0, STATX_BASIC_STATS);
	req.fh_in[0] = &fh;
	req.cred = &nobody;
	assert_int_equal(run(&req), 0);
	assert_int_equal(req.stx.stx_ino, st.st_ino);
	/* The op itself still runs as the caller: no read permission. */
	aiod_prep_open(&req, d, NULL, O_RDONLY, 0, 0);
	req.fh_in[0] = &fh;
	req.cred = &nobody;
	assert_int_equal(run(&req), -EACCES);
	/* Names resolve under a directory named by handle; both slots. */
	aiod_prep_rename(&req, d, "moved", d, "again", 0);
	req.fh_in[0] = req.fh_in[1] = &dirfh;
	assert_int_equal(run(&req), 0);
	assert_int_equal(lstat_at(d, "locked/again").st_ino, st.st_ino);

	assert_int_equal(unlinkat(d, "locked/again", 0), 0);
	aiod_prep_statx(&req, d, NULL, 0, STATX_BASIC_STATS);
	req.fh_in[0] = &fh;
	assert_int_equal(run(&req), -ESTALE);

	fh.handle_bytes = AIOD_FH_MAX + 1;
	aiod_prep_statx(&req, d, NULL, 0, STATX_BASIC_STATS);
	req.fh_in[0] = &fh;
	assert_int_equal(aiod_submit(pool, &req), -EINVAL);
}

static void test_ops_lookup_errors(void **state)
{
	struct aiod_req req;

	(void)state;
	put_str(d, "file", "x");
	aiod_prep_lookup(&req, d, "missing");
	assert_int_equal(run(&req), -ENOENT);
	assert_int_equal(req.stx.stx_mask, 0);
	aiod_prep_lookup(&req, d, "file/x");
	assert_int_equal(run(&req), -ENOTDIR);
}

static void test_ops_name_too_long(void **state)
{
	char name[257];
	struct aiod_req req;

	(void)state;
	memset(name, 'n', 256);
	name[256] = 0;
	aiod_prep_lookup(&req, d, name);
	assert_int_equal(run(&req), -ENAMETOOLONG);
	assert_int_equal(pool_open(d, name, O_CREAT | O_WRONLY, 0644, NULL),
			 -ENAMETOOLONG);
	aiod_prep_mkdir(&req, d, name, 0755);
	assert_int_equal(run(&req), -ENAMETOOLONG);
	/* 255 bytes is still a name. */
	name[255] = 0;
	aiod_prep_mkdir(&req, d, name, 0755);
	assert_int_equal(run(&req), 0);
}

static void test_ops_statx_by_name(void **state)
{
	struct aiod_req req;
	struct stat st;

	(void)state;
	put_str(d, "file", "twelve bytes");
	assert_int_equal(symlinkat("file", d, "ln"), 0);
	st = lstat_at(d, "file");
	aiod_prep_statx(&req, d, "file", 0, STATX_BASIC_STATS | STATX_BTIME);
	assert_int_equal(run(&req), 0);
	assert_stx_is(&req.stx, &st);
	assert_true(req.stx.stx_mask & STATX_BTIME);

	/* A symlink is followed unless AT_SYMLINK_NOFOLLOW. */
	aiod_prep_statx(&req, d, "ln", 0, STATX_BASIC_STATS);
	assert_int_equal(run(&req), 0);
	assert_int_equal(req.stx.stx_ino, st.st_ino);
	aiod_prep_statx(&req, d, "ln", AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS);
	assert_int_equal(run(&req), 0);
	assert_true(S_ISLNK(req.stx.stx_mode));
	assert_int_equal(req.stx.stx_size, 4);

	aiod_prep_statx(&req, d, "missing", 0, STATX_BASIC_STATS);
	assert_int_equal(run(&req), -ENOENT);
}

static void test_ops_statx_by_fd(void **state)
{
	struct aiod_req req;
	struct stat st;
	int fd, pfd;

	(void)state;
	put_str(d, "file", "data");
	fd = open_at(d, "file", O_RDONLY);
	pfd = open_at(d, "file", O_PATH);
	st = lstat_at(d, "file");

	aiod_prep_statx(&req, fd, NULL, 0, STATX_BASIC_STATS);
	assert_int_equal(run(&req), 0);
	assert_stx_is(&req.stx, &st);
	aiod_prep_statx(&req, pfd, NULL, 0, STATX_BASIC_STATS);
	assert_int_equal(run(&req), 0);
	assert_stx_is(&req.stx, &st);
	/* An fd of a symlink itself (O_PATH | O_NOFOLLOW). */
	close(pfd);
	assert_int_equal(symlinkat("file", d, "ln"), 0);
	pfd = open_at(d, "ln", O_PATH | O_NOFOLLOW);
	aiod_prep_statx(&req, pfd, NULL, 0, STATX_BASIC_STATS);
	assert_int_equal(run(&req), 0);
	assert_true(S_ISLNK(req.stx.stx_mode));
	close(pfd);
	close(fd);
}

/* ---- open, open_by_handle, close -------------------------------------- */

static void test_ops_open_creates_with_mode(void **state)
{
	struct stat st;
	int fd;

	(void)state;
	assert_int_equal(pool_open(d, "new", O_CREAT | O_RDWR, 0640, &fd), 0);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(st.st_ino, lstat_at(d, "new").st_ino);
	assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDWR);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(write(fd, "hello", 5), 5);
	close(fd);
	assert_string_equal(get_str(d, "new"), "hello");
	/* The umask the pool inherited (022) applies. */
	assert_int_equal(pool_open(d, "new2", O_CREAT | O_WRONLY, 0666, NULL),
			 0);
	assert_int_equal(lstat_at(d, "new2").st_mode & 07777, 0644);
}

static void test_ops_open_errors(void **state)
{
	struct aiod_req req;

	(void)state;
	put_str(d, "file", "x");
	assert_int_equal(symlinkat("file", d, "ln"), 0);
	assert_int_equal(mkdirat(d, "sub", 0755), 0);

	assert_int_equal(pool_open(d, "file", O_CREAT | O_EXCL | O_WRONLY,
				   0644, NULL), -EEXIST);
	assert_int_equal(pool_open(d, "missing", O_RDONLY, 0, NULL), -ENOENT);
	assert_int_equal(pool_open(d, "file/x", O_RDONLY, 0, NULL), -ENOTDIR);
	assert_int_equal(pool_open(d, "ln", O_RDONLY | O_NOFOLLOW, 0, NULL),
			 -ELOOP);
	assert_int_equal(pool_open(d, "file", O_RDONLY | O_DIRECTORY, 0, NULL),
			 -ENOTDIR);
	assert_int_equal(pool_open(d, "sub", O_WRONLY, 0, NULL), -EISDIR);

	aiod_prep_open(&req, d, "..", O_RDONLY | O_DIRECTORY, 0,
		       RESOLVE_BENEATH);
	assert_int_equal(run(&req), -EXDEV);
	assert_int_equal(req.ret_fd, -1);
	aiod_prep_open(&req, d, "sub/../../t1", O_PATH, 0, RESOLVE_BENEATH);
	assert_int_equal(run(&req), -EXDEV);
	/* Beneath, but fine. */
	aiod_prep_open(&req, d, "sub/../file", O_RDONLY, 0, RESOLVE_BENEATH);
	assert_int_equal(run(&req), 0);
	close(req.ret_fd);
}

/*
 * O_TMPFILE contains O_DIRECTORY's bit, so a mode passed along with a
 * plain O_DIRECTORY open must not reach openat2, which would refuse it.
 */
static void test_ops_open_directory_ignores_mode(void **state)
{
	int fd;

	(void)state;
	assert_int_equal(mkdirat(d, "sub", 0755), 0);
	assert_int_equal(pool_open(d, "sub", O_RDONLY | O_DIRECTORY, 0755, &fd),
			 0);
	close(fd);
	assert_int_equal(pool_open(d, ".", O_RDWR | O_TMPFILE, 0600, &fd), 0);
	assert_int_equal(write(fd, "t", 1), 1);
	close(fd);
}

static void test_ops_open_reopens_opath_fd(void **state)
{
	struct stat st;
	char buf[16];
	int pfd, fd;

	(void)state;
	put_str(d, "file", "reopened");
	pfd = open_at(d, "file", O_PATH);
	/* The fd names the object, not the path. */
	assert_int_equal(renameat(d, "file", d, "moved"), 0);
	assert_int_equal(pool_open(pfd, NULL, O_RDWR, 0, &fd), 0);
	assert_int_equal(fcntl(fd, F_GETFL) & (O_ACCMODE | O_PATH), O_RDWR);
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), 8);
	assert_memory_equal(buf, "reopened", 8);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_ino, lstat_at(d, "moved").st_ino);
	close(fd);
	close(pfd);
}

static void test_ops_open_lookup_flag(void **state)
{
	struct aiod_req req;
	struct stat st;

	(void)state;
	aiod_prep_open(&req, d, "new", O_CREAT | O_WRONLY, 0600, 0);
	req.flags = AIOD_F_LOOKUP;
	assert_int_equal(run(&req), 0);
	assert_int_equal(fstat(req.ret_fd, &st), 0);
	assert_stx_is(&req.stx, &st);
	assert_true(req.fh.handle_bytes > 0);
	close(req.ret_fd);

	/* Without the flag, nothing is filled. */
	aiod_prep_open(&req, d, "new", O_RDONLY, 0, 0);
	assert_int_equal(run(&req), 0);
	assert_int_equal(req.stx.stx_mask, 0);
	assert_int_equal(req.fh.handle_bytes, 0);
	close(req.ret_fd);
}

static void test_ops_open_by_handle(void **state)
{
	struct aiod_req lookup, req;
	struct stat st;
	char buf[8];

	(void)state;
	need_root();
	put_str(d, "file", "handle");
	aiod_prep_lookup(&lookup, d, "file");
	assert_int_equal(run(&lookup), 0);
	assert_int_equal(renameat(d, "file", d, "moved"), 0);

	aiod_prep_open_by_handle(&req, d, &lookup.fh, O_RDONLY);
	assert_int_equal(run(&req), 0);
	assert_int_equal(fstat(req.ret_fd, &st), 0);
	assert_int_equal(st.st_ino, lookup.stx.stx_ino);
	assert_int_equal(pread(req.ret_fd, buf, sizeof(buf), 0), 6);
	assert_memory_equal(buf, "handle", 6);
	close(req.ret_fd);

	/* O_PATH too. */
	aiod_prep_open_by_handle(&req, d, &lookup.fh, O_PATH);
	assert_int_equal(run(&req), 0);
	assert_int_equal(fcntl(req.ret_fd, F_GETFL) & O_PATH, O_PATH);
	close(req.ret_fd);

	/* Once the file is gone, so is its handle. */
	assert_int_equal(unlinkat(d, "moved", 0), 0);
	aiod_prep_open_by_handle(&req, d, &lookup.fh, O_RDONLY);
	assert_int_equal(run(&req), -ESTALE);
}

/*
 * A handle of a removed file says ESTALE, also while creates are giving
 * its inode number to new files: the kernel's open by handle may then
 * say ENOMEM for a moment (the new inode is still being made), which the
 * worker asks again past.  A child creates and removes a file in a loop
 * for a second while the handle is opened through the pool, both ways a
 * worker opens one: OPEN_BY_HANDLE, and an object named by handle.
 */
static void test_ops_stale_handle_while_reused(void **state)
{
	struct aiod_req lookup, req;
	long raw = 0, calls = 0;

	(void)state;
	need_root();
	put_str(d, "gone", "x");
	aiod_prep_lookup(&lookup, d, "gone");
	assert_int_equal(run(&lookup), 0);
	assert_int_equal(unlinkat(d, "gone", 0), 0);

	child = fork();
	assert_true(child >= 0);
	if (child == 0)
		for (;;) {
			int fd = openat(d, "churn", O_CREAT | O_EXCL | O_WRONLY, 0600);

			if (fd >= 0)
				close(fd);
			unlinkat(d, "churn", 0);
		}
	for (long end = now_ms() + 1000; now_ms() < end; calls++) {
		int fd = open_by_handle_at(d, (struct file_handle *)&lookup.fh, O_PATH);

		assert_true(fd < 0);
		raw += errno == ENOMEM;
		if (calls % 2) {
			aiod_prep_open_by_handle(&req, d, &lookup.fh, O_PATH);
		} else {
			aiod_prep_statx(&req, d, NULL, 0, STATX_BASIC_STATS);
			req.fh_in[0] = &lookup.fh;
		}
		assert_int_equal(run(&req), -ESTALE);
	}
	kill(child, SIGKILL);
	assert_int_equal(waitpid(child, NULL, 0), child);
	child = 0;
	print_message("%ld opens by handle through the pool said ESTALE; "
		      "%ld of as many here said ENOMEM\n", calls, raw);
}

/*
 * FLUSH closes the worker's copy only: the caller's fd, its description
 * and the lock on it live on.  (That the close runs the file's flush
 * before the request ends is seen over a slow FUSE source, in
 * tests/integration/slow.sh.)  CLOSE then ends them.
 */
static void test_ops_flush_then_close(void **state)
{
	struct aiod_req req;
	int fd, other;

	(void)state;
	put_str(d, "file", "x");
	fd = open_at(d, "file", O_RDONLY);
	/* A lock on the open file description lives as long as it does. */
	assert_int_equal(flock(fd, LOCK_EX), 0);
	aiod_prep_flush(&req, fd);
	assert_int_equal(run(&req), 0);
	assert_true(fcntl(fd, F_GETFD) >= 0);
	other = open_at(d, "file", O_RDONLY);
	assert_int_equal(flock(other, LOCK_EX | LOCK_NB), -1);
	assert_int_equal(errno, EWOULDBLOCK);

	aiod_prep_close(&req, fd);
	assert_int_equal(run(&req), 0);
	/* The pool owns the fd from submission on: it is gone here... */
	errno = 0;
	assert_int_equal(fcntl(fd, F_GETFD), -1);
	assert_int_equal(errno, EBADF);
	/* ...and in the worker, since the description was released. */
	assert_int_equal(flock(other, LOCK_EX | LOCK_NB), 0);
	close(other);

	/* A bad fd: close(-1). */
	aiod_prep_flush(&req, -1);
	assert_int_equal(run(&req), -EBADF);
	aiod_prep_close(&req, -1);
	assert_int_equal(run(&req), -EBADF);
}

/* ---- reading and writing ---------------------------------------------- */

static void test_ops_pread_pwrite_ordinary_buffers(void **state)
{
	unsigned char *out = malloc(MIB), *in = malloc(MIB);
	struct aiod_req req;
	int fd;

	(void)state;
	assert_non_null(out);
	assert_non_null(in);
	fill(out, MIB, 1);
	fd = open_at(d, "file", O_RDWR | O_CREAT);
	aiod_prep_pwrite(&req, fd, out, MIB, 4096);
	assert_int_equal(run(&req), MIB);
	assert_int_equal(lseek(fd, 0, SEEK_END), 4096 + MIB);
	assert_int_equal(pread(fd, in, MIB, 4096), MIB);
	assert_memory_equal(in, out, MIB);

	memset(in, 0, MIB);
	aiod_prep_pread(&req, fd, in, MIB, 4096);
	assert_int_equal(run(&req), MIB);
	assert_memory_equal(in, out, MIB);
	assert_ptr_equal(req.out, in);

	/* Short at the end of the file, 0 past it. */
	aiod_prep_pread(&req, fd, in, 100, 4096 + MIB - 10);
	assert_int_equal(run(&req), 10);
	assert_memory_equal(in, out + MIB - 10, 10);
	aiod_prep_pread(&req, fd, in, 100, 8 * MIB);
	assert_int_equal(run(&req), 0);
	close(fd);
	free(out);
	free(in);
}

static void test_ops_pread_pwrite_arena_buffers(void **state)
{
	unsigned char *a = aiod_buf_alloc(pool, MIB);
	unsigned char *b = aiod_buf_alloc(pool, MIB);
	unsigned char *check = malloc(MIB);
	struct aiod_req req;
	int fd;

	(void)state;
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(check);
	fill(a, MIB, 2);
	fd = open_at(d, "file", O_RDWR | O_CREAT);
	aiod_prep_pwrite(&req, fd, a, MIB, 0);
	assert_int_equal(run(&req), MIB);
	assert_int_equal(pread(fd, check, MIB, 0), MIB);
	assert_memory_equal(check, a, MIB);

	memset(b, 0, MIB);
	aiod_prep_pread(&req, fd, b, MIB, 0);
	assert_int_equal(run(&req), MIB);
	assert_ptr_equal(req.out, b);
	assert_memory_equal(b, a, MIB);
	close(fd);
	aiod_buf_free(pool, a);
	aiod_buf_free(pool, b);
	free(check);
}

static void test_ops_pread_null_buf_out(void **state)
{
	unsigned char *data = malloc(MIB);
	struct seen s = { .copy = malloc(MIB), .copy_max = MIB };
	struct aiod_req req;
	int fd;

	(void)state;
	assert_non_null(data);
	assert_non_null(s.copy);
	fill(data, MIB, 3);
	put_file(d, "file", data, MIB);
	fd = open_at(d, "file", O_RDONLY);
	aiod_prep_pread(&req, fd, NULL, MIB, 0);
	assert_int_equal(run_on(pool, &req, &s), MIB);
	assert_true(s.had_out);
	assert_memory_equal(s.copy, data, MIB);
	close(fd);
	free(s.copy);
	free(data);
}

static void test_ops_pread_pwrite_file_position(void **state)
{
	struct aiod_req req;
	char buf[8];
	int fd;

	(void)state;
	put_str(d, "file", "0123456789");
	fd = open_at(d, "file", O_RDWR);
	/* The worker's fd shares this one's open file description. */
	assert_int_equal(lseek(fd, 10, SEEK_SET), 10);
	aiod_prep_pwrite(&req, fd, "abc", 3, -1);
	assert_int_equal(run(&req), 3);
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 13);
	assert_string_equal(get_str(d, "file"), "0123456789abc");

	assert_int_equal(lseek(fd, 2, SEEK_SET), 2);
	aiod_prep_pread(&req, fd, buf, 4, -1);
	assert_int_equal(run(&req), 4);
	assert_memory_equal(buf, "2345", 4);
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 6);

	/* An explicit offset leaves the position alone. */
	aiod_prep_pwrite(&req, fd, "Z", 1, 0);
	assert_int_equal(run(&req), 1);
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 6);
	assert_string_equal(get_str(d, "file"), "Z123456789abc");
	close(fd);
}

static void test_ops_pread_pwrite_errors(void **state)
{
	struct aiod_req req;
	char buf[8];
	int ro, wo;

	(void)state;
	put_str(d, "file", "data");
	ro = open_at(d, "file", O_RDONLY);
	wo = open_at(d, "file", O_WRONLY);
	aiod_prep_pwrite(&req, ro, "x", 1, 0);
	assert_int_equal(run(&req), -EBADF);
	aiod_prep_pread(&req, wo, buf, sizeof(buf), 0);
	assert_int_equal(run(&req), -EBADF);
	aiod_prep_pread(&req, d, buf, sizeof(buf), 0);
	assert_int_equal(run(&req), -EISDIR);
	aiod_prep_pwrite(&req, wo, "x", 1, -5);
	assert_int_equal(run(&req), -EINVAL);
	assert_string_equal(get_str(d, "file"), "data");
	close(ro);
	close(wo);
}

static void test_ops_fsync(void **state)
{
	struct aiod_req req;
	int fd, pfd;

	(void)state;
	fd = open_at(d, "file", O_RDWR | O_CREAT);
	assert_int_equal(write(fd, "x", 1), 1);
	aiod_prep_fsync(&req, fd, 0);
	assert_int_equal(run(&req), 0);
	aiod_prep_fsync(&req, fd, 1);
	assert_int_equal(run(&req), 0);
	pfd = open_at(d, "file", O_PATH);
	aiod_prep_fsync(&req, pfd, 0);
	assert_int_equal(run(&req), -EBADF);
	aiod_prep_fsync(&req, pfd, 1);
	assert_int_equal(run(&req), -EBADF);
	close(pfd);
	close(fd);
}

static void test_ops_truncate(void **state)
{
	char abs[PATH_MAX + 8];
	struct aiod_req req;
	int fd, pfd, dfd;

	(void)state;
	put_str(d, "file", "0123456789");
	fd = open_at(d, "file", O_RDWR);
	aiod_prep_truncate(&req, fd, NULL, 100);
	assert_int_equal(run(&req), 0);
	assert_int_equal(lstat_at(d, "file").st_size, 100);

	aiod_prep_truncate(&req, d, "file", 5);
	assert_int_equal(run(&req), 0);
	assert_int_equal(lstat_at(d, "file").st_size, 5);
	assert_string_equal(get_str(d, "file"), "01234");

	pfd = open_at(d, "file", O_PATH);
	aiod_prep_truncate(&req, pfd, NULL, 3);
	assert_int_equal(run(&req), 0);
	assert_string_equal(get_str(d, "file"), "012");

	/* By an absolute name. */
	snprintf(abs, sizeof(abs), "%s/file", dpath);
	aiod_prep_truncate(&req, AT_FDCWD, abs, 1);
	assert_int_equal(run(&req), 0);
	assert_string_equal(get_str(d, "file"), "0");

	assert_int_equal(mkdirat(d, "dir", 0755), 0);

	aiod_prep_truncate(&req, d, "dir", 0);
	assert_int_equal(run(&req), -EISDIR);
	dfd = open_at(d, "dir", O_PATH);
	aiod_prep_truncate(&req, dfd, NULL, 0);
	assert_int_equal(run(&req), -EISDIR);
	close(dfd);
	/* ftruncate says EINVAL for an fd that is not a file open to write. */
	dfd = open_at(d, "dir", O_RDONLY);
	aiod_prep_truncate(&req, dfd, NULL, 0);
	assert_int_equal(run(&req), -EINVAL);
	close(dfd);
	aiod_prep_truncate(&req, d, "missing", 0);
	assert_int_equal(run(&req), -ENOENT);
	aiod_prep_truncate(&req, fd, NULL, -1);
	assert_int_equal(run(&req), -EINVAL);
	close(pfd);
	close(fd);
}

/* ---- fallocate, copy_file_range, lseek -------------------------------- */

#define NBLK 4

/* A file of NBLK blocks filled with 'A', 'B', ...; returns an fd. */
static int block_file(const char *name, size_t *bs)
{
	struct stat st;
	char *buf;
	int fd = open_at(d, name, O_RDWR | O_CREAT | O_TRUNC);

	assert_int_equal(fstat(fd, &st), 0);
	*bs = (size_t)st.st_blksize;
	buf = malloc(*bs);
	assert_non_null(buf);
	for (int i = 0; i < NBLK; i++) {
		memset(buf, 'A' + i, *bs);
		assert_int_equal(write(fd, buf, *bs), (ssize_t)*bs);
	}
	free(buf);
	assert_int_equal(fsync(fd), 0);
	return fd;
}

/* Check fd holds blocks of the letters in want ('0': zeros). */
static void assert_blocks(int fd, size_t bs, const char *want)
{
	size_t n = strlen(want);
	char *buf = malloc(bs), *exp = malloc(bs);

	assert_non_null(buf);
	assert_non_null(exp);
	assert_int_equal(lseek(fd, 0, SEEK_END), (off_t)(n * bs));
	for (size_t i = 0; i < n; i++) {
		memset(exp, want[i] == '0' ? 0 : want[i], bs);
		assert_int_equal(pread(fd, buf, bs, (off_t)(i * bs)),
				 (ssize_t)bs);
		assert_memory_equal(buf, exp, bs);
	}
	free(buf);
	free(exp);
}

static int64_t pool_fallocate(int fd, int mode, off_t off, off_t len)
{
	struct aiod_req req;

	aiod_prep_fallocate(&req, fd, mode, off, len);
	return run(&req);
}

static void test_ops_fallocate_modes(void **state)
{
	struct stat st;
	size_t bs;
	off_t b;
	int fd;

	(void)state;
	fd = block_file("plain", &bs);
	b = (off_t)bs;
	assert_int_equal(pool_fallocate(fd, 0, 4 * b, 2 * b), 0);
	assert_blocks(fd, bs, "ABCD00");
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(st.st_blocks * 512 >= 6 * b);
	close(fd);

	fd = block_file("keep", &bs);
	assert_int_equal(pool_fallocate(fd, FALLOC_FL_KEEP_SIZE, 4 * b, 4 * b),
			 0);
	assert_blocks(fd, bs, "ABCD");
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(st.st_blocks * 512 >= 8 * b);
	close(fd);

	fd = block_file("punch", &bs);
	assert_int_equal(pool_fallocate(fd, FALLOC_FL_PUNCH_HOLE |
					FALLOC_FL_KEEP_SIZE, b, b), 0);
	assert_blocks(fd, bs, "A0CD");
	assert_int_equal(lseek(fd, 0, SEEK_HOLE), b);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_blocks * 512, 3 * b);
	close(fd);

	fd = block_file("zero", &bs);
	assert_int_equal(pool_fallocate(fd, FALLOC_FL_ZERO_RANGE, b, 2 * b), 0);
	assert_blocks(fd, bs, "A00D");
	close(fd);

	fd = block_file("collapse", &bs);
	assert_int_equal(pool_fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, b, b), 0);
	assert_blocks(fd, bs, "ACD");
	close(fd);

	fd = block_file("insert", &bs);
	assert_int_equal(pool_fallocate(fd, FALLOC_FL_INSERT_RANGE, b, 2 * b),
			 0);
	assert_blocks(fd, bs, "A00BCD");
	close(fd);
}

static void test_ops_fallocate_errors(void **state)
{
	size_t bs;
	int fd, ro;

	(void)state;
	fd = block_file("file", &bs);
	/* Punching a hole must keep the size. */
	assert_int_equal(pool_fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0,
					(off_t)bs), -EOPNOTSUPP);
	/* Collapse and insert work in whole blocks. */
	assert_int_equal(pool_fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 1,
					(off_t)bs), -EINVAL);
	assert_int_equal(pool_fallocate(fd, FALLOC_FL_INSERT_RANGE,
					(off_t)bs, 100), -EINVAL);
	/* A collapse may not reach the end of the file. */
	assert_int_equal(pool_fallocate(fd, FALLOC_FL_COLLAPSE_RANGE,
					(off_t)bs, NBLK * (off_t)bs), -EINVAL);
	assert_int_equal(pool_fallocate(fd, 0, 0, 0), -EINVAL);
	ro = open_at(d, "file", O_RDONLY);
	assert_int_equal(pool_fallocate(ro, 0, 0, (off_t)bs), -EBADF);
	assert_blocks(fd, bs, "ABCD");
	close(ro);
	close(fd);
}

static void test_ops_copy_file_range(void **state)
{
	struct aiod_req req;
	int in, out;

	(void)state;
	put_str(d, "src", "hello world");
	in = open_at(d, "src", O_RDONLY);
	out = open_at(d, "dst", O_RDWR | O_CREAT);
	aiod_prep_copy_file_range(&req, in, 6, out, 0, 5, 0);
	assert_int_equal(run(&req), 5);
	assert_string_equal(get_str(d, "dst"), "world");
	/* Explicit offsets leave the positions alone. */
	assert_int_equal(lseek(in, 0, SEEK_CUR), 0);
	assert_int_equal(lseek(out, 0, SEEK_CUR), 0);

	/* -1: from and to the file positions, which advance. */
	assert_int_equal(lseek(in, 0, SEEK_SET), 0);
	assert_int_equal(lseek(out, 5, SEEK_SET), 5);
	aiod_prep_copy_file_range(&req, in, -1, out, -1, 6, 0);
	assert_int_equal(run(&req), 6);
	assert_string_equal(get_str(d, "dst"), "worldhello ");
	assert_int_equal(lseek(in, 0, SEEK_CUR), 6);
	assert_int_equal(lseek(out, 0, SEEK_CUR), 11);

	/* Past the end of the source: nothing to copy. */
	aiod_prep_copy_file_range(&req, in, 100, out, 0, 5, 0);
	assert_int_equal(run(&req), 0);
	aiod_prep_copy_file_range(&req, in, 0, out, 0, 5, 1);
	assert_int_equal(run(&req), -EINVAL);
	/* The destination must be open for writing. */
	aiod_prep_copy_file_range(&req, in, 0, in, 0, 5, 0);
	assert_int_equal(run(&req), -EBADF);
	assert_string_equal(get_str(d, "dst"), "worldhello ");
	close(in);
	close(out);
}

/* Bytes waiting in a pipe. */
static int in_pipe(int fd)
{
	int n = -1;

	assert_int_equal(ioctl(fd, FIONREAD, &n), 0);
	return n;
}

/*
 * PWRITE_PIPE writes what the pipe holds and leaves it there (a second
 * run must find it), through splice, or through memory where the file
 * takes no splice; when the bytes lie in more buffers than the worker's
 * own pipe has, the worker takes them from the caller's.
 */
static void test_ops_pwrite_pipe(void **state)
{
	unsigned char *data = malloc(MIB), *back = malloc(MIB);
	static const char dots[2000];
	struct iovec iov[1000];
	struct aiod_req req;
	int p[2], q[2], fd, app;

	(void)state;
	assert_non_null(data);
	assert_non_null(back);
	fill(data, MIB, 7);
	assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	assert_true(fcntl(p[1], F_SETPIPE_SZ, MIB) >= (int)MIB);
	assert_int_equal(write(p[1], data, MIB), MIB);
	fd = open_at(d, "file", O_RDWR | O_CREAT);
	aiod_prep_pwrite_pipe(&req, fd, p[0], MIB, 4096);
	assert_int_equal(run(&req), MIB);
	assert_int_equal(pread(fd, back, MIB, 4096), MIB);
	assert_memory_equal(back, data, MIB);
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 0);
	/* The pipe still holds every byte, in order. */
	assert_int_equal(in_pipe(p[0]), MIB);
	memset(back, 0, MIB);
	assert_int_equal(read(p[0], back, MIB), MIB);
	assert_memory_equal(back, data, MIB);

	/* -1: at the file position, which advances. */
	assert_int_equal(write(p[1], "abc", 3), 3);
	assert_int_equal(lseek(fd, 1, SEEK_SET), 1);
	aiod_prep_pwrite_pipe(&req, fd, p[0], 3, -1);
	assert_int_equal(run(&req), 3);
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 4);
	assert_int_equal(pread(fd, back, 4, 0), 4);
	assert_memory_equal(back, "\0abc", 4);

	/* Fewer bytes than asked: a short count; none: 0. */
	assert_int_equal(read(p[0], back, 16), 3);
	assert_int_equal(write(p[1], "xy", 2), 2);
	aiod_prep_pwrite_pipe(&req, fd, p[0], 100, 0);
	assert_int_equal(run(&req), 2);
	assert_int_equal(read(p[0], back, 16), 2);
	aiod_prep_pwrite_pipe(&req, fd, p[0], 100, 0);
	assert_int_equal(run(&req), 0);
	assert_int_equal(pread(fd, back, 4, 0), 4);
	assert_memory_equal(back, "xybc", 4);
	close(fd);

	/* O_APPEND takes no splice: through memory, appended. */
	put_str(d, "log", "12");
	app = open_at(d, "log", O_WRONLY | O_APPEND);
	assert_int_equal(write(p[1], "345", 3), 3);
	aiod_prep_pwrite_pipe(&req, app, p[0], 3, 0);
	assert_int_equal(run(&req), 3);
	assert_string_equal(get_str(d, "log"), "12345");
	assert_int_equal(in_pipe(p[0]), 3);
	assert_int_equal(read(p[0], back, 16), 3);
	close(app);

	/*
	 * 1,000 one-byte buffers (vmsplice makes one per segment): more
	 * than the worker's pipe holds (512 at most), so it takes them from
	 * ours.  Only where our pipe may hold them (4 MiB: CAP_SYS_RESOURCE
	 * or pipe-max-size), which the worker's may then too, but does not
	 * grow for 1,000 bytes.
	 */
	assert_int_equal(pipe2(q, O_CLOEXEC | O_NONBLOCK), 0);
	if (fcntl(q[1], F_SETPIPE_SZ, 4 * MIB) < 0) {
		print_message("(no 4 MiB pipe here: the worker taking the bytes "
			      "is not tested)\n");
	} else {
		for (int i = 0; i < 1000; i++)
			iov[i] = (struct iovec){ .iov_base = (char *)dots + 2 * i,
						 .iov_len = 1 };
		for (int i = 0; i < 1000; i += IOV_MAX < 1000 ? IOV_MAX : 1000)
			assert_true(vmsplice(q[1], iov + i, 1000 - i < IOV_MAX ?
					     1000 - i : IOV_MAX, 0) > 0);
		assert_int_equal(in_pipe(q[0]), 1000);
		fd = open_at(d, "many", O_RDWR | O_CREAT);
		aiod_prep_pwrite_pipe(&req, fd, q[0], 1000, 0);
		assert_int_equal(run(&req), 1000);
		assert_int_equal(lseek(fd, 0, SEEK_END), 1000);
		assert_int_equal(in_pipe(q[0]), 0);
		close(fd);
	}
	close(q[0]);
	close(q[1]);
	fd = open_at(d, "many", O_RDWR | O_CREAT);

	/* Errors: not a pipe; a file not open for writing; bad requests. */
	aiod_prep_pwrite_pipe(&req, fd, fd, 10, 0);
	assert_int_equal(run(&req), -EINVAL);
	close(fd);
	fd = open_at(d, "many", O_RDONLY);
	assert_int_equal(write(p[1], "z", 1), 1);
	aiod_prep_pwrite_pipe(&req, fd, p[0], 1, 0);
	assert_int_equal(run(&req), -EBADF);
	assert_int_equal(in_pipe(p[0]), 1);
	aiod_prep_pwrite_pipe(&req, fd, -1, 1, 0);
	assert_int_equal(aiod_submit(pool, &req), -EINVAL);
	aiod_prep_pwrite_pipe(&req, fd, p[0], AIOD_BUF_MAX + 1, 0);
	assert_int_equal(aiod_submit(pool, &req), -E2BIG);
	close(fd);
	close(p[0]);
	close(p[1]);
	free(data);
	free(back);
}

static void test_ops_lseek_data_hole(void **state)
{
	struct aiod_req req;
	char buf[4096];
	int fd;

	(void)state;
	fd = open_at(d, "sparse", O_RDWR | O_CREAT);
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(ftruncate(fd, MIB), 0);
	assert_int_equal(pwrite(fd, buf, sizeof(buf), 512 * 1024), 4096);
	assert_int_equal(fsync(fd), 0);

	aiod_prep_lseek(&req, fd, 0, SEEK_DATA);
	assert_int_equal(run(&req), 512 * 1024);
	aiod_prep_lseek(&req, fd, 512 * 1024, SEEK_HOLE);
	assert_int_equal(run(&req), 512 * 1024 + 4096);
	aiod_prep_lseek(&req, fd, 0, SEEK_HOLE);
	assert_int_equal(run(&req), 0);
	/* The end of the file counts as a hole; no data lies beyond. */
	aiod_prep_lseek(&req, fd, 600 * 1024, SEEK_HOLE);
	assert_int_equal(run(&req), 600 * 1024);
	aiod_prep_lseek(&req, fd, 600 * 1024, SEEK_DATA);
	assert_int_equal(run(&req), -ENXIO);
	aiod_prep_lseek(&req, fd, MIB, SEEK_DATA);
	assert_int_equal(run(&req), -ENXIO);
	aiod_prep_lseek(&req, fd, 2 * MIB, SEEK_HOLE);
	assert_int_equal(run(&req), -ENXIO);

	/* It moves the position this process shares. */
	aiod_prep_lseek(&req, fd, 100, SEEK_SET);
	assert_int_equal(run(&req), 100);
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 100);
	aiod_prep_lseek(&req, fd, 0, SEEK_END);
	assert_int_equal(run(&req), MIB);
	aiod_prep_lseek(&req, fd, -1, SEEK_SET);
	assert_int_equal(run(&req), -EINVAL);
	aiod_prep_lseek(&req, fd, 0, 99);
	assert_int_equal(run(&req), -EINVAL);
	close(fd);
}

/* ---- directories ------------------------------------------------------ */

#define NENTRIES 5000

static void test_ops_readdir_many_entries(void **state)
{
	static unsigned char seen[NENTRIES];
	char buf[4096], name[16];
	int dots = 0, dotdots = 0, requests = 0;
	bool ended = false;
	struct aiod_req req;
	off_t pos = 0;
	int sub, fd;

	(void)state;
	memset(seen, 0, sizeof(seen));
	assert_int_equal(mkdirat(d, "big", 0755), 0);
	sub = open_at(d, "big", O_RDONLY | O_DIRECTORY);
	for (int i = 0; i < NENTRIES; i++) {
		snprintf(name, sizeof(name), "f%04d", i);
		fd = openat(sub, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		assert_true(fd >= 0);
		close(fd);
	}

	for (;;) {
		int64_t n;

		aiod_prep_readdir(&req, sub, buf, sizeof(buf), pos);
		n = run(&req);
		assert_true(n >= 0);
		assert_true(n <= (int64_t)sizeof(buf));
		if (n == 0) {
			assert_int_equal(req.eof, 1);
			break;
		}
		assert_false(ended); /* eof: nothing comes after these */
		ended = req.eof;
		requests++;
		for (int64_t at = 0; at < n;) {
			struct dirent64 *e = (struct dirent64 *)(buf + at);
			int i;

			assert_true(e->d_reclen > 0);
			at += e->d_reclen;
			assert_true(at <= n);
			pos = e->d_off;
			if (!strcmp(e->d_name, ".")) {
				dots++;
				continue;
			}
			if (!strcmp(e->d_name, "..")) {
				dotdots++;
				continue;
			}
			assert_int_equal(e->d_type, DT_REG);
			assert_int_equal(sscanf(e->d_name, "f%d", &i), 1);
			assert_true(i >= 0 && i < NENTRIES);
			seen[i]++;
		}
		assert_true(requests <= NENTRIES);
	}
	assert_int_equal(dots, 1);
	assert_int_equal(dotdots, 1);
	for (int i = 0; i < NENTRIES; i++)
		assert_int_equal(seen[i], 1);
	/* 4 KiB holds ~170 such entries: it took many resumptions. */
	assert_true(requests >= NENTRIES / 200);
	close(sub);

	/* A listing that fits says so with its entries. */
	assert_int_equal(mkdirat(d, "small", 0755), 0);
	sub = open_at(d, "small", O_RDONLY | O_DIRECTORY);
	aiod_prep_readdir(&req, sub, buf, sizeof(buf), 0);
	assert_true(run(&req) > 0);
	assert_int_equal(req.eof, 1);
	close(sub);
}

/*
 * Check two getdents buffers of n bytes hold the same entries.  Not with
 * memcmp: the kernel leaves the padding after each name as it was.
 */
static void assert_same_dirents(const char *a, const char *b, int64_t n)
{
	for (int64_t at = 0; at < n;) {
		const struct dirent64 *x = (const struct dirent64 *)(a + at);
		const struct dirent64 *y = (const struct dirent64 *)(b + at);

		assert_int_equal(x->d_ino, y->d_ino);
		assert_int_equal(x->d_off, y->d_off);
		assert_int_equal(x->d_reclen, y->d_reclen);
		assert_int_equal(x->d_type, y->d_type);
		assert_string_equal(x->d_name, y->d_name);
		assert_true(x->d_reclen > 0);
		at += x->d_reclen;
	}
}

/*
 * READDIRPLUS lists every entry once across small buffers, each with
 * the identity lstat and a lookup would give; "." and ".." unlooked-up.
 */
static void test_ops_readdirplus(void **state)
{
	static unsigned char seen[NENTRIES];
	char buf[2048] __attribute__((aligned(8))), name[16];
	struct aiod_req req;
	int dots = 0, sub, fd;
	bool ended = false;
	off_t pos = 0;

	(void)state;
	memset(seen, 0, sizeof(seen));
	assert_int_equal(mkdirat(d, "big", 0755), 0);
	sub = open_at(d, "big", O_RDONLY | O_DIRECTORY);
	for (int i = 0; i < NENTRIES; i++) {
		snprintf(name, sizeof(name), "f%04d", i);
		fd = openat(sub, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		assert_true(fd >= 0);
		close(fd);
	}
	assert_int_equal(symlinkat("f0000", sub, "ln"), 0);

	for (;;) {
		int64_t n;

		aiod_prep_readdirplus(&req, sub, buf, sizeof(buf), pos);
		n = run(&req);
		assert_true(n >= 0 && n <= (int64_t)sizeof(buf));
		if (n == 0) {
			assert_int_equal(req.eof, 1);
			break;
		}
		assert_false(ended); /* eof: nothing comes after these */
		ended = req.eof;
		for (int64_t at = 0; at < n;) {
			struct aiod_direntplus *e = (void *)(buf + at);
			struct stat st;
			int i;

			assert_true(e->reclen % 8 == 0 && e->reclen > sizeof(*e));
			at += e->reclen;
			assert_true(at <= n);
			pos = e->off;
			assert_int_equal(strlen(e->name), e->namelen);
			if (!strcmp(e->name, ".") || !strcmp(e->name, "..")) {
				assert_int_equal(e->err, 1);
				dots++;
				continue;
			}
			assert_int_equal(e->err, 0);
			st = lstat_at(sub, e->name);
			assert_stx_is(&e->stx, &st);
			assert_int_equal(e->ino, st.st_ino);
			if (!strcmp(e->name, "ln")) {
				assert_int_equal(e->type, DT_LNK);
				continue;
			}
			assert_int_equal(e->type, DT_REG);
			assert_true(e->fh.handle_bytes > 0);
			assert_int_equal(sscanf(e->name, "f%d", &i), 1);
			assert_true(i >= 0 && i < NENTRIES);
			seen[i]++;
		}
	}
	assert_int_equal(dots, 2);
	for (int i = 0; i < NENTRIES; i++)
		assert_int_equal(seen[i], 1);

	/* Too small for one record. */
	aiod_prep_readdirplus(&req, sub, buf, 64, 0);
	assert_int_equal(run(&req), -EINVAL);
	close(sub);
}

static void test_ops_readdir_arena_and_null(void **state)
{
	struct seen s = { .copy = malloc(8192), .copy_max = 8192 };
	char *abuf = aiod_buf_alloc(pool, 8192), mine[8192];
	struct aiod_req req;
	int64_t n;
	int fd;

	(void)state;
	assert_non_null(abuf);
	assert_non_null(s.copy);
	put_str(d, "only", "x");
	aiod_prep_readdir(&req, d, abuf, 8192, 0);
	n = run(&req);
	/* ".", ".." and "only", 24 bytes each. */
	assert_int_equal(n, 3 * 24);
	assert_ptr_equal(req.out, abuf);
	aiod_prep_readdir(&req, d, NULL, 8192, 0);
	assert_int_equal(run_on(pool, &req, &s), n);
	assert_true(s.had_out);
	assert_same_dirents(s.copy, abuf, n);
	/* What this process reads itself. */
	fd = open_at(d, ".", O_RDONLY | O_DIRECTORY);
	assert_int_equal(getdents64(fd, mine, sizeof(mine)), n);
	assert_same_dirents(mine, abuf, n);
	close(fd);
	aiod_buf_free(pool, abuf);
	free(s.copy);
}

static void test_ops_readdir_errors(void **state)
{
	struct aiod_req req;
	char buf[4096];
	int fd;

	(void)state;
	put_str(d, "file", "x");
	/* Too small for even "." (24 bytes). */
	aiod_prep_readdir(&req, d, buf, 16, 0);
	assert_int_equal(run(&req), -EINVAL);
	fd = open_at(d, "file", O_RDONLY);
	aiod_prep_readdir(&req, fd, buf, sizeof(buf), 0);
	assert_int_equal(run(&req), -ENOTDIR);
	close(fd);
}

static void test_ops_mkdir(void **state)
{
	struct aiod_req req;
	struct stat st;

	(void)state;
	aiod_prep_mkdir(&req, d, "sub", 0750);
	req.flags = AIOD_F_LOOKUP;
	assert_int_equal(run(&req), 0);
	st = lstat_at(d, "sub");
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0750);
	assert_stx_is(&req.stx, &st);
	assert_true(req.fh.handle_bytes > 0);

	aiod_prep_mkdir(&req, d, "sub", 0750);
	req.flags = AIOD_F_LOOKUP;
	assert_int_equal(run(&req), -EEXIST);
	assert_int_equal(req.stx.stx_mask, 0);
	aiod_prep_mkdir(&req, d, "missing/sub", 0750);
	assert_int_equal(run(&req), -ENOENT);
}

static void test_ops_mknod(void **state)
{
	struct aiod_req req;
	struct stat st;

	(void)state;
	aiod_prep_mknod(&req, d, "fifo", S_IFIFO | 0640, 0);
	req.flags = AIOD_F_LOOKUP;
	assert_int_equal(run(&req), 0);
	st = lstat_at(d, "fifo");
	assert_true(S_ISFIFO(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_stx_is(&req.stx, &st);

	aiod_prep_mknod(&req, d, "sock", S_IFSOCK | 0600, 0);
	assert_int_equal(run(&req), 0);
	assert_true(S_ISSOCK(lstat_at(d, "sock").st_mode));

	aiod_prep_mknod(&req, d, "reg", S_IFREG | 0600, 0);
	assert_int_equal(run(&req), 0);
	assert_true(S_ISREG(lstat_at(d, "reg").st_mode));

	aiod_prep_mknod(&req, d, "fifo", S_IFIFO | 0600, 0);
	assert_int_equal(run(&req), -EEXIST);
	aiod_prep_mknod(&req, d, "dir", S_IFDIR | 0755, 0);
	assert_int_equal(run(&req), -EPERM);

	if (geteuid() != 0)
		return;
	aiod_prep_mknod(&req, d, "null", S_IFCHR | 0666, makedev(1, 3));
	req.flags = AIOD_F_LOOKUP;
	assert_int_equal(run(&req), 0);
	st = lstat_at(d, "null");
	assert_true(S_ISCHR(st.st_mode));
	assert_int_equal(st.st_rdev, makedev(1, 3));
	assert_int_equal(req.stx.stx_rdev_major, 1);
	assert_int_equal(req.stx.stx_rdev_minor, 3);
}

static void test_ops_symlink_readlink(void **state)
{
	struct seen s = { .copy = malloc(64), .copy_max = 64 };
	struct aiod_req req;
	char buf[64];
	int pfd;

	(void)state;
	assert_non_null(s.copy);
	aiod_prep_symlink(&req, "some/target", d, "ln");
	req.flags = AIOD_F_LOOKUP;
	assert_int_equal(run(&req), 0);
	assert_true(S_ISLNK(req.stx.stx_mode));
	assert_int_equal(req.stx.stx_ino, lstat_at(d, "ln").st_ino);
	aiod_prep_symlink(&req, "other", d, "ln");
	assert_int_equal(run(&req), -EEXIST);

	aiod_prep_readlink(&req, d, "ln", buf, sizeof(buf));
	assert_int_equal(run(&req), 11);
	assert_memory_equal(buf, "some/target", 11);
	/* A short buffer gets the start of the target. */
	aiod_prep_readlink(&req, d, "ln", buf, 4);
	assert_int_equal(run(&req), 4);
	assert_memory_equal(buf, "some", 4);
	/* The link itself, through an O_PATH fd and no name. */
	pfd = open_at(d, "ln", O_PATH | O_NOFOLLOW);
	aiod_prep_readlink(&req, pfd, NULL, NULL, 64);
	assert_int_equal(run_on(pool, &req, &s), 11);
	assert_true(s.had_out);
	assert_memory_equal(s.copy, "some/target", 11);
	close(pfd);

	put_str(d, "file", "x");
	aiod_prep_readlink(&req, d, "file", buf, sizeof(buf));
	assert_int_equal(run(&req), -EINVAL);
	aiod_prep_readlink(&req, d, "missing", buf, sizeof(buf));
	assert_int_equal(run(&req), -ENOENT);
	free(s.copy);
}

static void test_ops_link(void **state)
{
	struct aiod_req req;
	struct stat st;
	int sub, pfd;

	(void)state;
	put_str(d, "file", "x");
	assert_int_equal(mkdirat(d, "sub", 0755), 0);
	sub = open_at(d, "sub", O_RDONLY | O_DIRECTORY);
	aiod_prep_link(&req, d, "file", sub, "hard", 0);
	req.flags = AIOD_F_LOOKUP;
	assert_int_equal(run(&req), 0);
	st = lstat_at(sub, "hard");
	assert_int_equal(st.st_ino, lstat_at(d, "file").st_ino);
	assert_int_equal(st.st_nlink, 2);
	assert_stx_is(&req.stx, &st);

	aiod_prep_link(&req, d, "file", sub, "hard", 0);
	assert_int_equal(run(&req), -EEXIST);
	aiod_prep_link(&req, d, "sub", d, "dirlink", 0);
	assert_int_equal(run(&req), -EPERM);
	aiod_prep_link(&req, d, "missing", d, "new", 0);
	assert_int_equal(run(&req), -ENOENT);

	/* The object of an O_PATH fd, by no name (needs privilege). */
	if (geteuid() == 0) {
		pfd = open_at(d, "file", O_PATH);
		aiod_prep_link(&req, pfd, NULL, d, "again", 0);
		assert_int_equal(run(&req), 0);
		assert_int_equal(lstat_at(d, "again").st_nlink, 3);
		close(pfd);
	}
	close(sub);
}

static void test_ops_unlink(void **state)
{
	struct aiod_req req;

	(void)state;
	put_str(d, "file", "x");
	assert_int_equal(mkdirat(d, "dir", 0755), 0);
	aiod_prep_unlink(&req, d, "file");
	assert_int_equal(run(&req), 0);
	assert_false(exists(d, "file"));
	aiod_prep_unlink(&req, d, "file");
	assert_int_equal(run(&req), -ENOENT);
	/* Linux says EISDIR where POSIX allows EPERM. */
	aiod_prep_unlink(&req, d, "dir");
	assert_int_equal(run(&req), -EISDIR);
	assert_true(exists(d, "dir"));
}

static void test_ops_rmdir(void **state)
{
	struct aiod_req req;

	(void)state;
	assert_int_equal(mkdirat(d, "empty", 0755), 0);
	assert_int_equal(mkdirat(d, "full", 0755), 0);
	put_str(d, "full/file", "x");
	put_str(d, "file", "x");
	aiod_prep_rmdir(&req, d, "empty");
	assert_int_equal(run(&req), 0);
	assert_false(exists(d, "empty"));
	aiod_prep_rmdir(&req, d, "full");
	assert_int_equal(run(&req), -ENOTEMPTY);
	assert_true(exists(d, "full/file"));
	aiod_prep_rmdir(&req, d, "file");
	assert_int_equal(run(&req), -ENOTDIR);
	aiod_prep_rmdir(&req, d, "empty");
	assert_int_equal(run(&req), -ENOENT);
}

static void test_ops_rename(void **state)
{
	struct aiod_req req;
	ino_t a, b;
	int sub;

	(void)state;
	put_str(d, "a", "A");
	put_str(d, "b", "B");
	assert_int_equal(mkdirat(d, "sub", 0755), 0);
	sub = open_at(d, "sub", O_RDONLY | O_DIRECTORY);
	a = lstat_at(d, "a").st_ino;
	b = lstat_at(d, "b").st_ino;

	aiod_prep_rename(&req, d, "a", d, "b", RENAME_NOREPLACE);
	assert_int_equal(run(&req), -EEXIST);
	assert_string_equal(get_str(d, "a"), "A");
	assert_string_equal(get_str(d, "b"), "B");

	aiod_prep_rename(&req, d, "a", d, "b", RENAME_EXCHANGE);
	assert_int_equal(run(&req), 0);
	assert_int_equal(lstat_at(d, "a").st_ino, b);
	assert_int_equal(lstat_at(d, "b").st_ino, a);
	assert_string_equal(get_str(d, "a"), "B");
	aiod_prep_rename(&req, d, "a", d, "missing", RENAME_EXCHANGE);
	assert_int_equal(run(&req), -ENOENT);

	/* Across directories, replacing. */
	put_str(sub, "c", "C");
	aiod_prep_rename(&req, d, "a", sub, "c", 0);
	assert_int_equal(run(&req), 0);
	assert_false(exists(d, "a"));
	assert_int_equal(lstat_at(sub, "c").st_ino, b);
	aiod_prep_rename(&req, d, "b", sub, "new", RENAME_NOREPLACE);
	assert_int_equal(run(&req), 0);
	assert_int_equal(lstat_at(sub, "new").st_ino, a);

	aiod_prep_rename(&req, d, "missing", d, "x", 0);
	assert_int_equal(run(&req), -ENOENT);
	aiod_prep_rename(&req, d, "sub", sub, "inside", 0);
	assert_int_equal(run(&req), -EINVAL);
	close(sub);
}

/*
 * The object req's name removal held (AIOD_F_LOOKUP): an O_PATH fd of
 * the object that was ino, with no name left.  Closes the fd.
 */
static void assert_held(struct aiod_req *req, ino_t ino, mode_t type)
{
	struct stat st;

	assert_true(req->ret_fd >= 0);
	assert_int_equal(fstat(req->ret_fd, &st), 0);
	assert_int_equal(st.st_ino, ino);
	assert_int_equal(st.st_mode & S_IFMT, type);
	assert_int_equal(st.st_nlink, 0);
	assert_true(fcntl(req->ret_fd, F_GETFL) & O_PATH);
	assert_int_equal(req->stx.stx_ino, ino);
	assert_int_equal(req->stx.stx_mode & S_IFMT, type);
	close(req->ret_fd);
}

/* Nothing held: no fd, no identity. */
static void assert_none_held(const struct aiod_req *req)
{
	assert_int_equal(req->ret_fd, -1);
	assert_int_equal(req->stx.stx_mask, 0);
}

/*
 * AIOD_F_LOOKUP on UNLINK, RMDIR and RENAME: the object whose last name
 * went stays in existence through the fd returned (aiodfs under
 * writeback sets its times after that, and a directory removed while
 * it is some process's cwd is still what it was).
 */
static void test_ops_removal_holds(void **state)
{
	struct aiod_req req;
	ino_t ino;

	(void)state;
	put_str(d, "file", "x");
	ino = lstat_at(d, "file").st_ino;
	aiod_prep_unlink(&req, d, "file");
	req.flags = AIOD_F_LOOKUP;
	assert_int_equal(run(&req), 0);
	assert_false(exists(d, "file"));
	assert_held(&req, ino, S_IFREG);

	assert_int_equal(symlinkat("missing", d, "ln"), 0);
	ino = lstat_at(d, "ln").st_ino;
	aiod_prep_unlink(&req, d, "ln");
	req.flags = AIOD_F_LOOKUP;
	assert_int_equal(run(&req), 0);
	assert_held(&req, ino, S_IFLNK);

	/* Nothing removed: nothing held, whether it was there or not. */
	aiod_prep_unlink(&req, d, "file");
	req.flags = AIOD_F_LOOKUP;
	assert_int_equal(run(&req), -ENOENT);
	assert_none_held(&req);
	assert_int_equal(mkdirat(d, "dir", 0755), 0);
	aiod_prep_unlink(&req, d, "dir");
	req.flags = AIOD_F_LOOKUP;
	assert_int_equal(run(&req), -EISDIR);
	assert_none_held(&req);

	/* rmdir: the directory, empty and dead; a full one stays, unheld. */
	ino = lstat_at(d, "dir").st_ino;
	aiod_prep_rmdir(&req, d, "dir");
	req.flags = AIOD_F_LOOKUP;
	assert_int_equal(run(&req), 0);
	assert_false(exists(d, "dir"));
	assert_int_equal(req.stx.stx_nlink, 0); /* its count after the call */
	assert_held(&req, ino, S_IFDIR);
	assert_int_equal(mkdirat(d, "full", 0755), 0);
	put_str(d, "full/f", "x");
	aiod_prep_rmdir(&req, d, "full");
	req.flags = AIOD_F_LOOKUP;
	assert_int_equal(run(&req), -ENOTEMPTY);
	assert_none_held(&req);

	/* A rename over a file holds the file it replaced. */
	put_str(d, "a", "A");
	put_str(d, "b", "B");
	ino = lstat_at(d, "b").st_ino;
	aiod_prep_rename(&req, d, "a", d, "b", 0);
	req.flags = AIOD_F_LOOKUP;
	assert_int_equal(run(&req), 0);
	assert_string_equal(get_str(d, "b"), "A");
	assert_held(&req, ino, S_IFREG);

	/* To a new name, or exchanging, or refusing to replace: none. */
	aiod_prep_rename(&req, d, "b", d, "c", 0);
	req.flags = AIOD_F_LOOKUP;
	assert_int_equal(run(&req), 0);
	assert_none_held(&req);
	put_str(d, "e", "E");
	aiod_prep_rename(&req, d, "c", d, "e", RENAME_EXCHANGE);
	req.flags = AIOD_F_LOOKUP;
	assert_int_equal(run(&req), 0);
	assert_none_held(&req);
	aiod_prep_rename(&req, d, "c", d, "e", RENAME_NOREPLACE);
	req.flags = AIOD_F_LOOKUP;
	assert_int_equal(run(&req), -EEXIST);
	assert_none_held(&req);
	assert_string_equal(get_str(d, "c"), "E");
	assert_string_equal(get_str(d, "e"), "A");
}

/*
 * AIOD_F_UMASK: an OPEN that creates, a MKDIR and a MKNOD run under the
 * umask given (mkdir and mknod with aiodfs's 0 too), others under the
 * worker's own, the client's when the pool started it.
 */
static void test_ops_umask(void **state)
{
	struct aiod_req req;
	mode_t own = umask(0);

	(void)state;
	umask(own);
	aiod_prep_open(&req, d, "f027", O_CREAT | O_WRONLY, 0666, 0);
	assert_int_equal(aiod_prep_umask(&req, 027), 0);
	assert_int_equal(run(&req), 0);
	close(req.ret_fd);
	assert_int_equal(lstat_at(d, "f027").st_mode & 07777, 0640);

	aiod_prep_mkdir(&req, d, "d000", 0777);
	assert_int_equal(aiod_prep_umask(&req, 0), 0);
	assert_int_equal(run(&req), 0);
	assert_int_equal(lstat_at(d, "d000").st_mode & 07777, 0777);

	aiod_prep_mknod(&req, d, "p077", S_IFIFO | 0666, 0);
	assert_int_equal(aiod_prep_umask(&req, 077), 0);
	assert_int_equal(run(&req), 0);
	assert_int_equal(lstat_at(d, "p077").st_mode & 07777, 0600);

	/* Without: the worker's own again, after the others. */
	aiod_prep_mkdir(&req, d, "down", 0777);
	assert_int_equal(run(&req), 0);
	assert_int_equal(lstat_at(d, "down").st_mode & 07777, 0777 & ~own);
	aiod_prep_open(&req, d, "fown", O_CREAT | O_WRONLY, 0666, 0);
	assert_int_equal(run(&req), 0);
	close(req.ret_fd);
	assert_int_equal(lstat_at(d, "fown").st_mode & 07777, 0666 & ~own);

	/* Only for the ops that create. */
	aiod_prep_unlink(&req, d, "fown");
	assert_int_equal(aiod_prep_umask(&req, 022), -EINVAL);
	assert_false(req.flags & AIOD_F_UMASK);
}

/* ---- attributes ------------------------------------------------------- */

static void test_ops_chmod(void **state)
{
	struct aiod_req req;
	int fd, pfd;

	(void)state;
	put_str(d, "file", "x");
	assert_int_equal(symlinkat("file", d, "ln"), 0);
	aiod_prep_chmod(&req, d, "file", 0600, 0);
	assert_int_equal(run(&req), 0);
	assert_int_equal(lstat_at(d, "file").st_mode & 07777, 0600);

	fd = open_at(d, "file", O_RDONLY);
	aiod_prep_chmod(&req, fd, NULL, 0640, 0);
	assert_int_equal(run(&req), 0);
	assert_int_equal(lstat_at(d, "file").st_mode & 07777, 0640);
	pfd = open_at(d, "file", O_PATH);
	aiod_prep_chmod(&req, pfd, NULL, 04604, 0);
	assert_int_equal(run(&req), 0);
	assert_int_equal(lstat_at(d, "file").st_mode & 07777, 04604);

	/* Through a symlink, unless asked not to: links have no mode. */
	aiod_prep_chmod(&req, d, "ln", 0644, 0);
	assert_int_equal(run(&req), 0);
	assert_int_equal(lstat_at(d, "file").st_mode & 07777, 0644);
	aiod_prep_chmod(&req, d, "ln", 0600, AT_SYMLINK_NOFOLLOW);
	assert_int_equal(run(&req), -EOPNOTSUPP);
	assert_int_equal(lstat_at(d, "file").st_mode & 07777, 0644);
	aiod_prep_chmod(&req, d, "missing", 0600, 0);
	assert_int_equal(run(&req), -ENOENT);
	close(pfd);
	close(fd);
}

/*
 * AIOD_F_STATX: the attributes after the op come with it (a symlink's
 * own); nothing on failure; refused with CLOSE.
 */
static void test_ops_statx_after(void **state)
{
	struct aiod_req req;
	int fd;

	(void)state;
	put_str(d, "file", "hello");
	assert_int_equal(symlinkat("file", d, "ln"), 0);
	aiod_prep_chmod(&req, d, "file", 0604, 0);
	req.flags = AIOD_F_STATX;
	assert_int_equal(run(&req), 0);
	assert_true(req.stx.stx_mask & STATX_MODE);
	assert_int_equal(req.stx.stx_mode & 07777, 0604);
	assert_int_equal(req.stx.stx_size, 5);

	fd = open_at(d, "file", O_RDWR);
	aiod_prep_truncate(&req, fd, NULL, 2);
	req.flags = AIOD_F_STATX;
	assert_int_equal(run(&req), 0);
	assert_int_equal(req.stx.stx_size, 2);

	aiod_prep_utimens(&req, d, "ln", NULL, AT_SYMLINK_NOFOLLOW);
	req.flags = AIOD_F_STATX;
	assert_int_equal(run(&req), 0);
	assert_true(S_ISLNK(req.stx.stx_mode));

	aiod_prep_chmod(&req, d, "missing", 0600, 0);
	req.flags = AIOD_F_STATX;
	assert_int_equal(run(&req), -ENOENT);
	assert_int_equal(req.stx.stx_mask, 0);

	aiod_prep_close(&req, fd);
	req.flags = AIOD_F_STATX;
	assert_int_equal(aiod_submit(pool, &req), -EINVAL);
	close(fd);
}

static void test_ops_chown(void **state)
{
	struct aiod_req req;
	struct stat st;
	int fd;

	(void)state;
	need_root();
	put_str(d, "file", "x");
	assert_int_equal(symlinkat("file", d, "ln"), 0);
	aiod_prep_chown(&req, d, "file", 1234, 5678, 0);
	assert_int_equal(run(&req), 0);
	st = lstat_at(d, "file");
	assert_int_equal(st.st_uid, 1234);
	assert_int_equal(st.st_gid, 5678);

	/* -1 keeps one. */
	aiod_prep_chown(&req, d, "file", (uid_t)-1, 42, 0);
	assert_int_equal(run(&req), 0);
	st = lstat_at(d, "file");
	assert_int_equal(st.st_uid, 1234);
	assert_int_equal(st.st_gid, 42);

	fd = open_at(d, "file", O_PATH);
	aiod_prep_chown(&req, fd, NULL, 7, (gid_t)-1, 0);
	assert_int_equal(run(&req), 0);
	assert_int_equal(lstat_at(d, "file").st_uid, 7);
	close(fd);

	/* The link itself. */
	aiod_prep_chown(&req, d, "ln", 99, 98, AT_SYMLINK_NOFOLLOW);
	assert_int_equal(run(&req), 0);
	assert_int_equal(lstat_at(d, "ln").st_uid, 99);
	assert_int_equal(lstat_at(d, "file").st_uid, 7);

	aiod_prep_chown(&req, d, "missing", 1, 1, 0);
	assert_int_equal(run(&req), -ENOENT);
	aiod_prep_chown(&req, d, "file", 1, 1, AT_REMOVEDIR);
	assert_int_equal(run(&req), -EINVAL);
}

static void test_ops_utimens(void **state)
{
	struct timespec ts[2] = { { 1000, 5 }, { 2000, 6 } };
	struct aiod_req req;
	struct timespec t0;
	struct stat st;
	int fd;

	(void)state;
	put_str(d, "file", "x");
	assert_int_equal(symlinkat("file", d, "ln"), 0);
	aiod_prep_utimens(&req, d, "file", ts, 0);
	assert_int_equal(run(&req), 0);
	st = lstat_at(d, "file");
	assert_int_equal(st.st_atim.tv_sec, 1000);
	assert_int_equal(st.st_atim.tv_nsec, 5);
	assert_int_equal(st.st_mtim.tv_sec, 2000);
	assert_int_equal(st.st_mtim.tv_nsec, 6);

	/* UTIME_OMIT keeps atime, UTIME_NOW sets mtime to now. */
	clock_gettime(CLOCK_REALTIME, &t0);
	ts[0].tv_nsec = UTIME_OMIT;
	ts[1].tv_nsec = UTIME_NOW;
	fd = open_at(d, "file", O_RDONLY);
	aiod_prep_utimens(&req, fd, NULL, ts, 0);
	assert_int_equal(run(&req), 0);
	st = lstat_at(d, "file");
	assert_int_equal(st.st_atim.tv_sec, 1000);
	assert_int_equal(st.st_atim.tv_nsec, 5);
	assert_true(st.st_mtim.tv_sec >= t0.tv_sec - 1);
	assert_true(st.st_mtim.tv_sec <= t0.tv_sec + 5);
	close(fd);

	/* The link, not its target. */
	ts[0] = (struct timespec){ 3000, 0 };
	ts[1] = (struct timespec){ 4000, 0 };
	aiod_prep_utimens(&req, d, "ln", ts, AT_SYMLINK_NOFOLLOW);
	assert_int_equal(run(&req), 0);
	assert_int_equal(lstat_at(d, "ln").st_mtim.tv_sec, 4000);
	assert_int_equal(lstat_at(d, "file").st_atim.tv_sec, 1000);

	ts[1].tv_nsec = 1000000000;
	aiod_prep_utimens(&req, d, "file", ts, 0);
	assert_int_equal(run(&req), -EINVAL);
	aiod_prep_utimens(&req, d, "missing", NULL, 0);
	assert_int_equal(run(&req), -ENOENT);
}

static void assert_statfs_is(const struct aiod_statfs *s,
			     const struct statvfs *v)
{
	/* Only what does not move while others use the filesystem. */
	assert_int_equal(s->bsize, v->f_bsize);
	assert_int_equal(s->frsize, v->f_frsize);
	assert_int_equal(s->blocks, v->f_blocks);
	assert_int_equal(s->files, v->f_files);
	assert_int_equal(s->fsid, v->f_fsid);
	assert_int_equal(s->flag, v->f_flag);
	assert_int_equal(s->namemax, v->f_namemax);
	assert_true(s->bfree > 0);
	assert_true(s->bavail <= s->bfree);
}

static void test_ops_statfs(void **state)
{
	struct aiod_req req;
	struct statvfs v;

	(void)state;
	assert_int_equal(mkdirat(d, "sub", 0755), 0);
	assert_int_equal(statvfs(dpath, &v), 0);
	aiod_prep_statfs(&req, d, "sub");
	assert_int_equal(run(&req), 0);
	assert_statfs_is(&req.sfs, &v);
	aiod_prep_statfs(&req, d, NULL);
	assert_int_equal(run(&req), 0);
	assert_statfs_is(&req.sfs, &v);
	aiod_prep_statfs(&req, AT_FDCWD, "/proc");
	assert_int_equal(run(&req), 0);
	assert_int_equal(statvfs("/proc", &v), 0);
	assert_int_equal(req.sfs.fsid, v.f_fsid);
	aiod_prep_statfs(&req, d, "missing");
	assert_int_equal(run(&req), -ENOENT);
}

static void test_ops_access(void **state)
{
	struct aiod_req req;
	int pfd;

	(void)state;
	put_str(d, "file", "x");
	assert_int_equal(fchmodat(d, "file", 0444, 0), 0);
	aiod_prep_access(&req, d, "file", F_OK, 0);
	assert_int_equal(run(&req), 0);
	aiod_prep_access(&req, d, "missing", F_OK, 0);
	assert_int_equal(run(&req), -ENOENT);
	aiod_prep_access(&req, d, "file", R_OK, 0);
	assert_int_equal(run(&req), 0);
	pfd = open_at(d, "file", O_PATH);
	if (geteuid() == 0) {
		/* Root may write anything, and run what someone may run. */
		aiod_prep_access(&req, d, "file", W_OK, 0);
		assert_int_equal(run(&req), 0);
		aiod_prep_access(&req, pfd, NULL, X_OK, 0);
		assert_int_equal(run(&req), -EACCES);
	} else {
		aiod_prep_access(&req, d, "file", W_OK, 0);
		assert_int_equal(run(&req), -EACCES);
	}
	aiod_prep_access(&req, pfd, NULL, F_OK, 0);
	assert_int_equal(run(&req), 0);
	close(pfd);
}

static void test_ops_xattr_by_name(void **state)
{
	char buf[64], path[PATH_MAX + 8], *p;
	struct aiod_req req;
	bool a = false, b = false;
	int64_t n;

	(void)state;
	put_str(d, "file", "x");
	assert_int_equal(pool_setxattr(d, "file", "user.a", "value", 0), 0);
	assert_int_equal(pool_getxattr(d, "file", "user.a", NULL, 0), 5);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(pool_getxattr(d, "file", "user.a", buf, sizeof(buf)),
			 5);
	assert_string_equal(buf, "value");
	assert_int_equal(pool_getxattr(d, "file", "user.a", buf, 2), -ERANGE);
	assert_int_equal(pool_getxattr(d, "file", "user.none", buf,
				       sizeof(buf)), -ENODATA);

	assert_int_equal(pool_setxattr(d, "file", "user.a", "other",
				       XATTR_CREATE), -EEXIST);
	assert_int_equal(pool_setxattr(d, "file", "user.none", "v",
				       XATTR_REPLACE), -ENODATA);
	assert_int_equal(pool_setxattr(d, "file", "user.a", "new",
				       XATTR_REPLACE), 0);
	snprintf(path, sizeof(path), "%s/file", dpath);
	assert_int_equal(getxattr(path, "user.a", buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "new", 3);
	assert_int_equal(pool_setxattr(d, "file", "user.b", "", 0), 0);
	assert_int_equal(pool_getxattr(d, "file", "user.b", buf, sizeof(buf)),
			 0);

	aiod_prep_listxattr(&req, d, "file", NULL, 0);
	assert_int_equal(run(&req), 14);  /* "user.a\0user.b\0" */
	aiod_prep_listxattr(&req, d, "file", buf, 4);
	assert_int_equal(run(&req), -ERANGE);
	aiod_prep_listxattr(&req, d, "file", buf, sizeof(buf));
	n = run(&req);
	assert_int_equal(n, 14);
	for (p = buf; p < buf + n; p += strlen(p) + 1) {
		a |= !strcmp(p, "user.a");
		b |= !strcmp(p, "user.b");
	}
	assert_true(a && b);

	aiod_prep_removexattr(&req, d, "file", "user.a");
	assert_int_equal(run(&req), 0);
	aiod_prep_removexattr(&req, d, "file", "user.a");
	assert_int_equal(run(&req), -ENODATA);
	assert_int_equal(pool_getxattr(d, "file", "user.a", buf, sizeof(buf)),
			 -ENODATA);
	aiod_prep_removexattr(&req, d, "missing", "user.b");
	assert_int_equal(run(&req), -ENOENT);
}

static void test_ops_xattr_by_fd(void **state)
{
	struct aiod_req req;
	char buf[64];
	int fd, pfd;

	(void)state;
	put_str(d, "file", "x");
	fd = open_at(d, "file", O_RDONLY);
	pfd = open_at(d, "file", O_PATH);
	assert_int_equal(pool_setxattr(fd, NULL, "user.fd", "one", 0), 0);
	assert_int_equal(fgetxattr(fd, "user.fd", buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "one", 3);
	assert_int_equal(pool_setxattr(pfd, NULL, "user.path", "two", 0), 0);
	assert_int_equal(fgetxattr(fd, "user.path", buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "two", 3);

	assert_int_equal(pool_getxattr(pfd, NULL, "user.fd", NULL, 0), 3);
	assert_int_equal(pool_getxattr(fd, NULL, "user.path", buf, sizeof(buf)),
			 3);
	assert_memory_equal(buf, "two", 3);
	assert_int_equal(pool_setxattr(pfd, NULL, "user.fd", "x",
				       XATTR_CREATE), -EEXIST);
	aiod_prep_listxattr(&req, pfd, NULL, buf, sizeof(buf));
	assert_int_equal(run(&req), 18);  /* "user.fd\0user.path\0" */
	aiod_prep_removexattr(&req, pfd, NULL, "user.fd");
	assert_int_equal(run(&req), 0);
	assert_int_equal(pool_getxattr(fd, NULL, "user.fd", buf, sizeof(buf)),
			 -ENODATA);
	aiod_prep_removexattr(&req, fd, NULL, "user.path");
	assert_int_equal(run(&req), 0);
	aiod_prep_listxattr(&req, fd, NULL, buf, sizeof(buf));
	assert_int_equal(run(&req), 0);
	close(pfd);
	close(fd);
}

/*
 * A name that is a symlink means the link: its target's attributes must
 * not show through, however the name is given.
 */
static void test_ops_xattr_symlink_not_followed(void **state)
{
	char abs[PATH_MAX + 8], buf[16];
	int pfd;

	(void)state;
	put_str(d, "file", "x");
	snprintf(abs, sizeof(abs), "%s/file", dpath);
	assert_int_equal(setxattr(abs, "user.t", "t", 1, 0), 0);
	assert_int_equal(symlinkat("file", d, "ln"), 0);
	snprintf(abs, sizeof(abs), "%s/ln", dpath);

	assert_int_equal(pool_getxattr(d, "ln", "user.t", buf, sizeof(buf)),
			 -ENODATA);
	assert_int_equal(pool_getxattr(AT_FDCWD, abs, "user.t", buf,
				       sizeof(buf)), -ENODATA);
	pfd = open_at(d, "ln", O_PATH | O_NOFOLLOW);
	assert_int_equal(pool_getxattr(pfd, NULL, "user.t", buf, sizeof(buf)),
			 -ENODATA);
	/* user.* attributes are for files and directories only. */
	assert_int_equal(pool_setxattr(d, "ln", "user.l", "l", 0), -EPERM);
	assert_int_equal(pool_setxattr(AT_FDCWD, abs, "user.l", "l", 0),
			 -EPERM);
	assert_int_equal(pool_setxattr(pfd, NULL, "user.l", "l", 0), -EPERM);
	/* The target itself, by an absolute name. */
	snprintf(abs, sizeof(abs), "%s/file", dpath);
	assert_int_equal(pool_getxattr(AT_FDCWD, abs, "user.t", buf,
				       sizeof(buf)), 1);
	close(pfd);
}

/* ---- locks ------------------------------------------------------------ */

static int64_t pool_flock(int fd, int how)
{
	struct aiod_req req;

	aiod_prep_flock(&req, fd, how);
	return run(&req);
}

static void test_ops_flock(void **state)
{
	int mine, theirs, third;

	(void)state;
	put_str(d, "file", "x");
	/* Three open file descriptions of one file. */
	mine = open_at(d, "file", O_RDONLY);
	theirs = open_at(d, "file", O_RDONLY);
	third = open_at(d, "file", O_RDONLY);

	assert_int_equal(flock(mine, LOCK_EX), 0);
	assert_int_equal(pool_flock(theirs, LOCK_EX | LOCK_NB), -EWOULDBLOCK);
	assert_int_equal(pool_flock(theirs, LOCK_SH | LOCK_NB), -EWOULDBLOCK);
	assert_int_equal(flock(mine, LOCK_UN), 0);

	/* The pool's lock holds on its description after the request. */
	assert_int_equal(pool_flock(theirs, LOCK_EX | LOCK_NB), 0);
	errno = 0;
	assert_int_equal(flock(third, LOCK_SH | LOCK_NB), -1);
	assert_int_equal(errno, EWOULDBLOCK);
	assert_int_equal(pool_flock(theirs, LOCK_SH), 0);
	assert_int_equal(flock(third, LOCK_SH | LOCK_NB), 0);
	assert_int_equal(pool_flock(theirs, LOCK_UN), 0);
	assert_int_equal(flock(third, LOCK_UN), 0);
	assert_int_equal(flock(mine, LOCK_EX | LOCK_NB), 0);
	assert_int_equal(pool_flock(theirs, 0), -EINVAL);
	close(third);
	close(theirs);
	close(mine);
}

static int64_t pool_lock(int fd, int cmd, struct aiod_lock *lk)
{
	struct aiod_req req;
	int64_t res;

	aiod_prep_lock(&req, fd, cmd, lk);
	res = run(&req);
	*lk = req.lk;
	return res;
}

static void test_ops_ofd_locks(void **state)
{
	struct aiod_lock lk;
	struct flock fl;
	int a, b, c;

	(void)state;
	put_str(d, "file", "x");
	a = open_at(d, "file", O_RDWR);
	b = open_at(d, "file", O_RDWR);
	c = open_at(d, "file", O_RDWR);

	lk = (struct aiod_lock){ .type = F_WRLCK, .start = 0, .len = 100 };
	assert_int_equal(pool_lock(a, F_OFD_SETLK, &lk), 0);

	/* GETLK on another description reports the conflict... */
	lk = (struct aiod_lock){ .type = F_WRLCK, .start = 50, .len = 10 };
	assert_int_equal(pool_lock(b, F_OFD_GETLK, &lk), 0);
	assert_int_equal(lk.type, F_WRLCK);
	assert_int_equal(lk.whence, SEEK_SET);
	assert_int_equal(lk.start, 0);
	assert_int_equal(lk.len, 100);
	assert_int_equal(lk.pid, -1);
	/* ...or none, outside the locked range. */
	lk = (struct aiod_lock){ .type = F_WRLCK, .start = 200, .len = 10 };
	assert_int_equal(pool_lock(b, F_OFD_GETLK, &lk), 0);
	assert_int_equal(lk.type, F_UNLCK);

	lk = (struct aiod_lock){ .type = F_RDLCK, .start = 50, .len = 10 };
	assert_int_equal(pool_lock(b, F_OFD_SETLK, &lk), -EAGAIN);
	/* This process sees the pool's lock too. */
	fl = (struct flock){ .l_type = F_RDLCK, .l_start = 99, .l_len = 1 };
	assert_int_equal(fcntl(c, F_OFD_GETLK, &fl), 0);
	assert_int_equal(fl.l_type, F_WRLCK);

	lk = (struct aiod_lock){ .type = F_UNLCK, .start = 0, .len = 100 };
	assert_int_equal(pool_lock(a, F_OFD_SETLK, &lk), 0);
	lk = (struct aiod_lock){ .type = F_WRLCK, .start = 0, .len = 0 };
	assert_int_equal(pool_lock(b, F_OFD_SETLKW, &lk), 0);
	fl = (struct flock){ .l_type = F_RDLCK };
	assert_int_equal(fcntl(c, F_OFD_GETLK, &fl), 0);
	assert_int_equal(fl.l_type, F_WRLCK);

	/* Classic POSIX locks would belong to the worker: refused. */
	lk = (struct aiod_lock){ .type = F_WRLCK };
	assert_int_equal(pool_lock(a, F_SETLK, &lk), -EINVAL);
	assert_int_equal(pool_lock(a, F_GETLK, &lk), -EINVAL);
	lk = (struct aiod_lock){ .type = 42 };
	assert_int_equal(pool_lock(a, F_OFD_SETLK, &lk), -EINVAL);
	close(c);
	close(b);
	close(a);
}

static int64_t pool_fileattr(int fd, unsigned long cmd, struct aiod_fileattr *fa,
			     const struct aiod_cred *cred)
{
	struct aiod_req req;
	int64_t res;

	aiod_prep_fileattr(&req, fd, cmd, fa);
	req.cred = cred;
	res = run(&req);
	*fa = req.fa;
	return res;
}

static void test_ops_fileattr(void **state)
{
	const struct aiod_cred nobody = { .uid = 65534, .gid = 65534 };
	const struct aiod_cred stranger = { .uid = 65533, .gid = 65534 };
	struct aiod_fileattr fa = { 0 };
	struct fsxattr x;
	int fd, dfd, opath, flags, v, w;

	(void)state;
	need_root();
	put_str(d, "file", "x");
	fd = open_at(d, "file", O_RDONLY);
	if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0) {
		close(fd);
		skip(); /* a filesystem without inode flags */
	}
	/* Read: what this process reads itself, by both commands. */
	assert_int_equal(pool_fileattr(fd, FS_IOC_GETFLAGS, &fa, NULL), 0);
	assert_int_equal(fa.flags, (uint32_t)flags);
	assert_int_equal(ioctl(fd, FS_IOC_FSGETXATTR, &x), 0);
	assert_int_equal(pool_fileattr(fd, FS_IOC_FSGETXATTR, &fa, NULL), 0);
	assert_int_equal(fa.xflags, x.fsx_xflags);
	assert_int_equal(fa.projid, x.fsx_projid);

	/* Set: the flag lands on the file, and the other command sees it. */
	fa.flags = (uint32_t)flags | FS_NODUMP_FL;
	assert_int_equal(pool_fileattr(fd, FS_IOC_SETFLAGS, &fa, NULL), 0);
	assert_int_equal(ioctl(fd, FS_IOC_GETFLAGS, &flags), 0);
	assert_true(flags & FS_NODUMP_FL);
	assert_int_equal(pool_fileattr(fd, FS_IOC_FSGETXATTR, &fa, NULL), 0);
	assert_true(fa.xflags & FS_XFLAG_NODUMP);
	fa.xflags &= ~FS_XFLAG_NODUMP;
	assert_int_equal(pool_fileattr(fd, FS_IOC_FSSETXATTR, &fa, NULL), 0);
	assert_int_equal(ioctl(fd, FS_IOC_GETFLAGS, &flags), 0);
	assert_false(flags & FS_NODUMP_FL);

	/* The source decides who may: not another user; immutable, root. */
	fa.flags = (uint32_t)flags | FS_NODUMP_FL;
	assert_int_equal(pool_fileattr(fd, FS_IOC_SETFLAGS, &fa, &nobody),
			 -EPERM);
	assert_int_equal(fchown(fd, 65534, 65534), 0);
	assert_int_equal(pool_fileattr(fd, FS_IOC_SETFLAGS, &fa, &nobody), 0);
	fa.flags = (uint32_t)flags | FS_IMMUTABLE_FL;
	assert_int_equal(pool_fileattr(fd, FS_IOC_SETFLAGS, &fa, &nobody),
			 -EPERM);
	assert_int_equal(pool_fileattr(fd, FS_IOC_SETFLAGS, &fa, NULL), 0);
	errno = 0;
	assert_int_equal(unlinkat(d, "file", 0), -1);
	assert_int_equal(errno, EPERM);
	fa.flags = (uint32_t)flags;
	assert_int_equal(pool_fileattr(fd, FS_IOC_SETFLAGS, &fa, NULL), 0);

	/*
	 * The generation (lsattr -v, chattr -v), where the source keeps one;
	 * set only where it may be (not ext4 with metadata_csum, XFS, btrfs).
	 */
	if (ioctl(fd, FS_IOC_GETVERSION, &v) == 0) {
		fa.flags = 0;
		assert_int_equal(pool_fileattr(fd, FS_IOC_GETVERSION, &fa, NULL),
				 0);
		assert_int_equal(fa.flags, (uint32_t)v);
	} else {
		v = -errno;
		assert_int_equal(pool_fileattr(fd, FS_IOC_GETVERSION, &fa, NULL),
				 v);
	}
	if (v >= 0 && ioctl(fd, FS_IOC_SETVERSION, &v) == 0) {
		fa.flags = (uint32_t)v + 1;
		assert_int_equal(pool_fileattr(fd, FS_IOC_SETVERSION, &fa,
					       &stranger), -EPERM);
		assert_int_equal(pool_fileattr(fd, FS_IOC_SETVERSION, &fa,
					       &nobody), 0);
		assert_int_equal(ioctl(fd, FS_IOC_GETVERSION, &w), 0);
		assert_int_equal(w, v + 1);
	}

	/* A directory has them too; an O_PATH fd and other commands do not. */
	assert_int_equal(mkdirat(d, "dir", 0755), 0);
	dfd = open_at(d, "dir", O_RDONLY | O_DIRECTORY);
	assert_int_equal(ioctl(dfd, FS_IOC_GETFLAGS, &flags), 0);
	assert_int_equal(pool_fileattr(dfd, FS_IOC_GETFLAGS, &fa, NULL), 0);
	assert_int_equal(fa.flags, (uint32_t)flags);
	opath = open_at(d, "file", O_PATH);
	assert_int_equal(pool_fileattr(opath, FS_IOC_GETFLAGS, &fa, NULL),
			 -EBADF);
	assert_int_equal(pool_fileattr(fd, FIONREAD, &fa, NULL), -ENOTTY);
	close(opath);
	close(dfd);
	close(fd);
}

/* ---- credentials ------------------------------------------------------ */

static void test_ops_credentials(void **state)
{
	const struct aiod_cred nobody = { .uid = 65534, .gid = 65534 };
	struct aiod_pool *p1;
	struct aiod_req req;
	struct stat st;
	int shared;

	(void)state;
	need_root();
	/* One worker, so that the same one switches there and back. */
	p1 = new_pool(1);
	assert_int_equal(mkdirat(d, "shared", 0777), 0);
	assert_int_equal(fchmodat(d, "shared", 0777, 0), 0);
	shared = open_at(d, "shared", O_RDONLY | O_DIRECTORY);
	put_str(shared, "secret", "s");
	assert_int_equal(fchmodat(shared, "secret", 0600, 0), 0);

	aiod_prep_open(&req, shared, "secret", O_RDONLY, 0, 0);
	req.cred = &nobody;
	assert_int_equal(run_on(p1, &req, NULL), -EACCES);
	aiod_prep_access(&req, shared, "secret", R_OK, 0);
	req.cred = &nobody;
	assert_int_equal(run_on(p1, &req, NULL), -EACCES);

	aiod_prep_open(&req, shared, "mine", O_CREAT | O_WRONLY, 0644, 0);
	req.cred = &nobody;
	assert_int_equal(run_on(p1, &req, NULL), 0);
	close(req.ret_fd);
	st = lstat_at(shared, "mine");
	assert_int_equal(st.st_uid, 65534);
	assert_int_equal(st.st_gid, 65534);
	aiod_prep_access(&req, shared, "mine", W_OK, 0);
	req.cred = &nobody;
	assert_int_equal(run_on(p1, &req, NULL), 0);
	aiod_prep_access(&req, shared, "secret", W_OK, 0);
	req.cred = &nobody;
	assert_int_equal(run_on(p1, &req, NULL), -EACCES);
	aiod_prep_mkdir(&req, shared, "mydir", 0755);
	req.cred = &nobody;
	assert_int_equal(run_on(p1, &req, NULL), 0);
	st = lstat_at(shared, "mydir");
	assert_int_equal(st.st_uid, 65534);
	assert_int_equal(st.st_gid, 65534);

	/* Without cred, the worker is root again. */
	aiod_prep_open(&req, shared, "secret", O_RDONLY, 0, 0);
	assert_int_equal(run_on(p1, &req, NULL), 0);
	close(req.ret_fd);
	aiod_prep_open(&req, shared, "rootfile", O_CREAT | O_WRONLY, 0644, 0);
	assert_int_equal(run_on(p1, &req, NULL), 0);
	close(req.ret_fd);
	assert_int_equal(lstat_at(shared, "rootfile").st_uid, 0);
	assert_int_equal(lstat_at(shared, "rootfile").st_gid, 0);
	close(shared);
	aiod_pool_free(p1);
}

static void test_ops_credentials_groups(void **state)
{
	static const uint32_t groups[] = { 4242 };
	const struct aiod_cred member = {
		.uid = 65534, .gid = 65534, .ngroups = 1, .groups = groups,
	};
	const struct aiod_cred nobody = { .uid = 65534, .gid = 65534 };
	struct aiod_pool *p1;
	struct aiod_req req;

	(void)state;
	need_root();
	p1 = new_pool(1);
	assert_int_equal(mkdirat(d, "grp", 0750), 0);
	assert_int_equal(fchownat(d, "grp", 0, 4242, 0), 0);
	put_str(d, "grp/gfile", "g");
	assert_int_equal(fchownat(d, "grp/gfile", 0, 4242, 0), 0);
	assert_int_equal(fchmodat(d, "grp/gfile", 0640, 0), 0);

	/* The groups are applied, and dropped again when not asked for. */
	aiod_prep_open(&req, d, "grp/gfile", O_RDONLY, 0, 0);
	req.cred = &member;
	assert_int_equal(run_on(p1, &req, NULL), 0);
	close(req.ret_fd);
	aiod_prep_open(&req, d, "grp/gfile", O_WRONLY, 0, 0);
	req.cred = &member;
	assert_int_equal(run_on(p1, &req, NULL), -EACCES);
	aiod_prep_open(&req, d, "grp/gfile", O_RDONLY, 0, 0);
	req.cred = &nobody;
	assert_int_equal(run_on(p1, &req, NULL), -EACCES);
	aiod_prep_open(&req, d, "grp/gfile", O_RDWR, 0, 0);
	assert_int_equal(run_on(p1, &req, NULL), 0);
	close(req.ret_fd);
	aiod_pool_free(p1);
}

/* ---- cancellation ----------------------------------------------------- */

/*
 * Submit req to p (one worker), check it is still blocked after 100 ms,
 * cancel it and check it ends with -EINTR within a second.  Returns the
 * pid of the worker that ran it.
 */
static pid_t cancel_blocked(struct aiod_pool *p, struct aiod_req *req)
{
	struct seen s = { 0 };
	pid_t pid;

	submit_on(p, req, &s);
	pid = aiod_req_worker(req);
	assert_true(pid > 0);
	wait_on(p, &s, 100);
	assert_int_equal(s.calls, 0);
	assert_int_equal(aiod_cancel(p, req), 0);
	assert_true(wait_on(p, &s, 1000) < 1000);
	assert_int_equal(s.calls, 1);
	assert_int_equal(req->result, -EINTR);
	assert_int_equal(aiod_cancel(p, req), -ENOENT);
	return pid;
}

/* The worker that ran a cancelled request is alive and serves the next. */
static void assert_worker_fine(struct aiod_pool *p, pid_t pid)
{
	struct aiod_pool_stats st;
	struct seen s = { 0 };
	struct aiod_req req;

	aiod_prep_nop(&req, 50000);
	submit_on(p, &req, &s);
	assert_int_equal(aiod_req_worker(&req), pid);
	wait_on(p, &s, RUN_TIMEOUT_MS);
	assert_int_equal(s.calls, 1);
	assert_int_equal(req.result, 0);
	aiod_pool_stats(p, &st);
	assert_int_equal(st.worker_deaths, 0);
	assert_int_equal(st.workers, 1);
}

static void test_ops_cancel_nop(void **state)
{
	struct aiod_pool *p1 = new_pool(1);
	struct seen s = { 0 }, sq = { 0 };
	struct aiod_req req, queued;
	pid_t pid;

	(void)state;
	aiod_prep_nop(&req, 10000000);
	submit_on(p1, &req, &s);
	pid = aiod_req_worker(&req);
	assert_true(pid > 0);

	/* A request waiting for the only worker ends without running. */
	aiod_prep_nop(&queued, 0);
	submit_on(p1, &queued, &sq);
	assert_int_equal(aiod_req_worker(&queued), 0);
	assert_int_equal(aiod_cancel(p1, &queued), 0);
	wait_on(p1, &sq, 1000);
	assert_int_equal(sq.calls, 1);
	assert_int_equal(queued.result, -ECANCELED);

	assert_int_equal(s.calls, 0);
	assert_int_equal(aiod_cancel(p1, &req), 0);
	assert_true(wait_on(p1, &s, 1000) < 1000);
	assert_int_equal(s.calls, 1);
	assert_int_equal(req.result, -EINTR);
	assert_worker_fine(p1, pid);
	aiod_pool_free(p1);
}

static void test_ops_cancel_ofd_setlkw(void **state)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	struct aiod_lock lk = { .type = F_WRLCK, .whence = SEEK_SET };
	struct aiod_pool *p1 = new_pool(1);
	struct aiod_req req;
	int mine, theirs;
	pid_t pid;

	(void)state;
	put_str(d, "file", "x");
	mine = open_at(d, "file", O_RDWR);
	theirs = open_at(d, "file", O_RDWR);
	assert_int_equal(fcntl(mine, F_OFD_SETLK, &fl), 0);

	aiod_prep_lock(&req, theirs, F_OFD_SETLKW, &lk);
	pid = cancel_blocked(p1, &req);
	assert_worker_fine(p1, pid);

	/* With the lock released, the same wait succeeds. */
	fl.l_type = F_UNLCK;
	assert_int_equal(fcntl(mine, F_OFD_SETLK, &fl), 0);
	aiod_prep_lock(&req, theirs, F_OFD_SETLKW, &lk);
	assert_int_equal(run_on(p1, &req, NULL), 0);
	fl.l_type = F_RDLCK;
	assert_int_equal(fcntl(mine, F_OFD_SETLK, &fl), -1);
	assert_int_equal(errno, EAGAIN);
	close(theirs);
	close(mine);
	aiod_pool_free(p1);
}

static void test_ops_cancel_flock(void **state)
{
	struct aiod_pool *p1 = new_pool(1);
	struct aiod_req req;
	int mine, theirs;
	pid_t pid;

	(void)state;
	put_str(d, "file", "x");
	mine = open_at(d, "file", O_RDONLY);
	theirs = open_at(d, "file", O_RDONLY);
	assert_int_equal(flock(mine, LOCK_EX), 0);

	aiod_prep_flock(&req, theirs, LOCK_EX);
	pid = cancel_blocked(p1, &req);
	assert_worker_fine(p1, pid);

	assert_int_equal(flock(mine, LOCK_UN), 0);
	aiod_prep_flock(&req, theirs, LOCK_EX);
	assert_int_equal(run_on(p1, &req, NULL), 0);
	assert_int_equal(flock(mine, LOCK_EX | LOCK_NB), -1);
	assert_int_equal(errno, EWOULDBLOCK);
	close(theirs);
	close(mine);
	aiod_pool_free(p1);
}

static void test_ops_cancel_fifo_open(void **state)
{
	struct aiod_pool *p1 = new_pool(1);
	struct aiod_req req;
	pid_t pid;
	int w;

	(void)state;
	assert_int_equal(mkfifoat(d, "fifo", 0600), 0);
	/* Opening a FIFO to read waits for a writer. */
	aiod_prep_open(&req, d, "fifo", O_RDONLY, 0, 0);
	pid = cancel_blocked(p1, &req);
	assert_int_equal(req.ret_fd, -1);
	assert_worker_fine(p1, pid);

	w = open_at(d, "fifo", O_RDWR);
	aiod_prep_open(&req, d, "fifo", O_RDONLY, 0, 0);
	assert_int_equal(run_on(p1, &req, NULL), 0);
	close(req.ret_fd);
	close(w);
	aiod_pool_free(p1);
}

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_ops_nop),
		T(test_ops_nop_delay),
		T(test_ops_submit_rejects_bad_requests),
		T(test_ops_lookup_matches_lstat),
		T(test_ops_object_by_handle),
		T(test_ops_readdirplus),
		T(test_ops_lookup_errors),
		T(test_ops_name_too_long),
		T(test_ops_statx_by_name),
		T(test_ops_statx_by_fd),
		T(test_ops_open_creates_with_mode),
		T(test_ops_open_errors),
		T(test_ops_open_directory_ignores_mode),
		T(test_ops_open_reopens_opath_fd),
		T(test_ops_open_lookup_flag),
		T(test_ops_open_by_handle),
		T(test_ops_stale_handle_while_reused),
		T(test_ops_flush_then_close),
		T(test_ops_pread_pwrite_ordinary_buffers),
		T(test_ops_pread_pwrite_arena_buffers),
		T(test_ops_pread_null_buf_out),
		T(test_ops_pread_pwrite_file_position),
		T(test_ops_pread_pwrite_errors),
		T(test_ops_fsync),
		T(test_ops_truncate),
		T(test_ops_fallocate_modes),
		T(test_ops_fallocate_errors),
		T(test_ops_copy_file_range),
		T(test_ops_pwrite_pipe),
		T(test_ops_lseek_data_hole),
		T(test_ops_readdir_many_entries),
		T(test_ops_readdir_arena_and_null),
		T(test_ops_readdir_errors),
		T(test_ops_mkdir),
		T(test_ops_mknod),
		T(test_ops_symlink_readlink),
		T(test_ops_link),
		T(test_ops_unlink),
		T(test_ops_rmdir),
		T(test_ops_rename),
		T(test_ops_removal_holds),
		T(test_ops_umask),
		T(test_ops_chmod),
		T(test_ops_statx_after),
		T(test_ops_chown),
		T(test_ops_utimens),
		T(test_ops_statfs),
		T(test_ops_access),
		T(test_ops_xattr_by_name),
		T(test_ops_xattr_by_fd),
		T(test_ops_xattr_symlink_not_followed),
		T(test_ops_flock),
		T(test_ops_ofd_locks),
		T(test_ops_fileattr),
		T(test_ops_credentials),
		T(test_ops_credentials_groups),
		T(test_ops_cancel_nop),
		T(test_ops_cancel_ofd_setlkw),
		T(test_ops_cancel_flock),
		T(test_ops_cancel_fifo_open),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
