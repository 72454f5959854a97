/* SPDX-License-Identifier: MIT */
/*
 * test_pool.c - the pool's lifecycle and guarantees: every request
 * completes exactly once, back-pressure, cancellation, workers that die
 * (only their request is affected, a new worker takes over, no SIGPIPE,
 * no zombie), workers that outlive nothing, and submit's argument checks.
 * Each test counts how often each callback ran.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/falloc.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "aiod-internal.h"
#include "scratch.h"

/*
 * Every file and directory a test makes goes under one of two scratch
 * directories (scratch.h): TMP on the root filesystem, SHM on tmpfs (a
 * filesystem whose close flushes nothing).
 */
enum scratch_fs { TMP, SHM };
static char scratch_dir[2][64] = { "/tmp/aiod-test-pool-XXXXXX",
				   "/dev/shm/aiod-test-pool-XXXXXX" };

/* In buf (PATH_MAX bytes): tmpl, a mkstemp() template, under fs's. */
static char *scratch_name(char *buf, enum scratch_fs fs, const char *tmpl)
{
	snprintf(buf, PATH_MAX, "%s/%s", scratch_dir[fs], tmpl);
	return buf;
}

static int group_setup(void **state)
{
	(void)state;
	return mkdtemp(scratch_dir[TMP]) && mkdtemp(scratch_dir[SHM]) ? 0 : -1;
}

static int group_teardown(void **state)
{
	int a, b;

	(void)state;
	a = scratch_remove(scratch_dir[TMP]);
	b = scratch_remove(scratch_dir[SHM]);
	return a || b ? -1 : 0;
}

static struct aiod_pool *new_pool(unsigned workers, size_t arena)
{
	struct aiod_pool_opts opts = { .workers = workers, .arena_size = arena };
	struct aiod_pool *p = NULL;

	assert_int_equal(aiod_pool_new(&p, &opts), 0);
	return p;
}

static void count_cb(struct aiod_req *req)
{
	(*(int *)req->data)++;
}

/*
 * Tests that need a worker still polling when the next request comes try
 * up to this many times: a loaded machine may deschedule the test past a
 * 10 ms poll now and then, not a hundred times in a row.
 */
#define TRIES 100

static int64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Process until *count reaches want; fail after limit_ms. */
static void wait_count(struct aiod_pool *p, const int *count, int want,
		       int limit_ms)
{
	int64_t end = now_ms() + limit_ms;

	while (*count < want) {
		assert_true(now_ms() < end);
		assert_true(aiod_pool_wait(p, 100) >= 0);
	}
}

/* Submit a NOP of delay_us and wait until a worker holds it. */
static pid_t start_nop(struct aiod_pool *p, struct aiod_req *req, int *count,
		       unsigned delay_us, uint32_t flags)
{
	aiod_prep_nop(req, delay_us);
	req->flags = flags;
	req->cb = count_cb;
	req->data = count;
	assert_int_equal(aiod_submit(p, req), 0);
	return aiod_req_worker(req);
}

static bool process_gone(pid_t pid)
{
	char path[64], state = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return true;
	if (fscanf(f, "%*d (%*[^)]) %c", &state) != 1)
		state = 0;
	fclose(f);
	return state == 'Z' || state == 'X';
}

static void wait_gone(pid_t pid, int limit_ms)
{
	int64_t end = now_ms() + limit_ms;

	while (!process_gone(pid)) {
		assert_true(now_ms() < end);
		usleep(5000);
	}
}

/* An anonymous file holding len bytes of data. */
static int temp_file(const void *data, size_t len)
{
	char path[PATH_MAX];
	int fd = mkstemp(scratch_name(path, TMP, "pool-XXXXXX"));

	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	return fd;
}

static void test_pool_runs_nop_and_counts(void **state)
{
	struct aiod_pool *p = new_pool(2, 0);
	struct aiod_pool_stats st;
	struct aiod_req req;
	int count = 0;

	(void)state;
	start_nop(p, &req, &count, 0, 0);
	wait_count(p, &count, 1, 5000);
	assert_int_equal(req.result, 0);
	assert_int_equal(aiod_pool_wait(p, 0), 0);
	assert_int_equal(count, 1);
	aiod_pool_stats(p, &st);
	assert_int_equal(st.workers, 2);
	assert_int_equal(st.busy, 0);
	assert_int_equal(st.submitted, 1);
	assert_int_equal(st.completed, 1);
	assert_int_equal(st.arena_size, 64u << 20);
	aiod_pool_free(p);
}

/* 100,000 requests in one burst: each callback runs exactly once. */
static void test_pool_burst_of_100000(void **state)
{
	enum { N = 100000 };
	struct aiod_req *reqs = calloc(N, sizeof(*reqs));
	int *seen = calloc(N, sizeof(*seen));
	struct aiod_pool *p = new_pool(4, 0);
	struct aiod_pool_stats st;
	int done = 0;

	(void)state;
	for (int i = 0; i < N; i++) {
		aiod_prep_nop(&reqs[i], 0);
		reqs[i].cb = count_cb;
		reqs[i].data = &seen[i];
		assert_int_equal(aiod_submit(p, &reqs[i]), 0);
	}
	aiod_pool_stats(p, &st);
	assert_true(st.queued >= N - 4);
	while (done < N) {
		int n = aiod_pool_wait(p, 5000);

		assert_true(n > 0);
		done += n;
	}
	for (int i = 0; i < N; i++) {
		assert_int_equal(seen[i], 1);
		assert_int_equal(reqs[i].result, 0);
	}
	aiod_pool_stats(p, &st);
	assert_int_equal(st.completed, N);
	assert_int_equal(st.queued, 0);
	assert_int_equal(st.arena_used, 4096);  /* only the header */
	aiod_pool_free(p);
	free(reqs);
	free(seen);
}

/* What a read's callback expects to find in req->out. */
static const char *expect;
static size_t expect_len;

static void check_read_cb(struct aiod_req *req)
{
	assert_int_equal(req->result, expect_len);
	assert_non_null(req->out);
	/* req->out is valid in the callback only: check it here. */
	assert_memory_equal(req->out, expect, expect_len);
	(*(int *)req->data)++;
}

/*
 * An arena with room for three 256 KiB buffers at a time: requests wait
 * for room, and all complete with the right data.
 */
static void test_pool_waits_for_arena_room(void **state)
{
	enum { N = 64, LEN = 256 << 10 };
	struct aiod_pool *p = new_pool(4, 1 << 20);
	struct aiod_req reqs[N];
	char *data = malloc(LEN), *got = malloc((size_t)N * LEN);
	struct aiod_pool_stats st;
	int count = 0, fd;

	(void)state;
	for (int i = 0; i < LEN; i++)
		data[i] = (char)(i * 7 + i / 4096);
	fd = temp_file(data, LEN);
	expect = data;
	expect_len = LEN;
	for (int i = 0; i < N; i++) {
		/* Half into library buffers, half copied out to ours. */
		aiod_prep_pread(&reqs[i], fd, i % 2 ? got + (size_t)i * LEN : NULL,
				LEN, 0);
		reqs[i].cb = check_read_cb;
		reqs[i].data = &count;
		assert_int_equal(aiod_submit(p, &reqs[i]), 0);
	}
	aiod_pool_stats(p, &st);
	assert_true(st.busy < 4);       /* the arena, not the workers, limits */
	assert_true(st.queued > N - 4);
	wait_count(p, &count, N, 10000);
	for (int i = 1; i < N; i += 2)
		assert_memory_equal(got + (size_t)i * LEN, data, LEN);
	aiod_pool_stats(p, &st);
	assert_int_equal(st.arena_used, 4096);
	close(fd);
	aiod_pool_free(p);
	free(data);
	free(got);
}

static void check_out_cb(struct aiod_req *req)
{
	const char *want = req->data;

	assert_int_equal(req->result, 4096);
	assert_non_null(req->out);
	assert_memory_equal(req->out, want, 4096);
	req->data = NULL;
}

static void test_pool_library_buffer_valid_in_callback(void **state)
{
	struct aiod_pool *p = new_pool(1, 0);
	char data[4096];
	struct aiod_req req;
	int fd;

	(void)state;
	memset(data, 'x', sizeof(data));
	fd = temp_file(data, sizeof(data));
	aiod_prep_pread(&req, fd, NULL, 4096, 0);
	req.cb = check_out_cb;
	req.data = data;
	assert_int_equal(aiod_submit(p, &req), 0);
	while (req.data)
		assert_true(aiod_pool_wait(p, 5000) > 0);
	close(fd);
	aiod_pool_free(p);
}

/* A worker killed mid-request: that request fails, the next succeeds. */
static void test_pool_worker_killed_mid_request(void **state)
{
	struct aiod_pool *p = new_pool(2, 0);
	struct aiod_pool_stats st;
	struct aiod_req slow, next;
	int count = 0, next_count = 0;
	pid_t victim;

	(void)state;
	victim = start_nop(p, &slow, &count, 10 * 1000 * 1000, AIOD_F_NORETRY);
	assert_true(victim > 0);
	assert_int_equal(kill(victim, SIGKILL), 0);
	wait_count(p, &count, 1, 5000);
	assert_int_equal(slow.result, -EIO);

	start_nop(p, &next, &next_count, 0, 0);
	wait_count(p, &next_count, 1, 5000);
	assert_int_equal(next.result, 0);

	aiod_pool_stats(p, &st);
	assert_int_equal(st.workers, 2);
	assert_int_equal(st.worker_deaths, 1);
	assert_int_equal(st.retries, 0);
	/* Reaped by the pool, not left a zombie of ours. */
	for (int i = 0; i < 100 && waitpid(victim, NULL, WNOHANG) == 0; i++)
		aiod_pool_wait(p, 10);
	assert_int_equal(waitpid(victim, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
	aiod_pool_free(p);
}

/* An idempotent request whose worker dies runs once more elsewhere. */
static void test_pool_idempotent_request_reruns(void **state)
{
	struct aiod_pool *p = new_pool(2, 0);
	struct aiod_pool_stats st;
	struct aiod_req req;
	int count = 0;
	pid_t victim;

	(void)state;
	victim = start_nop(p, &req, &count, 300 * 1000, 0);
	assert_int_equal(kill(victim, SIGKILL), 0);
	wait_count(p, &count, 1, 5000);
	assert_int_equal(req.result, 0);
	aiod_pool_stats(p, &st);
	assert_int_equal(st.retries, 1);
	assert_int_equal(st.worker_deaths, 1);
	assert_int_equal(st.workers, 2);
	aiod_pool_free(p);
}

/* Every worker that runs it dies: the third death fails it. */
static void test_pool_rerun_twice_at_most(void **state)
{
	struct aiod_pool *p = new_pool(2, 0);
	struct aiod_req req;
	int count = 0;
	pid_t victim, next;

	(void)state;
	victim = start_nop(p, &req, &count, 10 * 1000 * 1000, 0);
	for (int death = 1; death <= 3; death++) {
		kill(victim, SIGKILL);
		next = 0;
		for (int i = 0; i < 500 && !next && count == 0; i++) {
			aiod_pool_wait(p, 10);
			next = aiod_req_worker(&req);
			if (next == victim)
				next = 0;
		}
		if (death < 3) {
			/* Re-run on another worker, not failed. */
			assert_int_equal(count, 0);
			assert_true(next > 0);
			victim = next;
		}
	}
	wait_count(p, &count, 1, 5000);
	assert_int_equal(req.result, -EIO);
	aiod_pool_free(p);
}

/* Which requests may run a second time after their worker died. */
static void test_pool_which_requests_rerun(void **state)
{
	struct aiod_req req;
	char buf[8] = "x";

	(void)state;
	aiod_prep_pwrite(&req, 3, buf, sizeof(buf), 0);
	assert_true(aiod__req_idempotent(&req));
	aiod_prep_pwrite(&req, 3, buf, sizeof(buf), -1);
	assert_false(aiod__req_idempotent(&req));
	/* Its pipe is left whole: found again at an offset. */
	aiod_prep_pwrite_pipe(&req, 3, 4, 4096, 0);
	assert_true(aiod__req_idempotent(&req));
	aiod_prep_pwrite_pipe(&req, 3, 4, 4096, -1);
	assert_false(aiod__req_idempotent(&req));
	aiod_prep_open(&req, 3, "f", O_RDWR | O_CREAT, 0644, 0);
	assert_true(aiod__req_idempotent(&req));
	aiod_prep_open(&req, 3, "d", O_RDONLY | O_DIRECTORY, 0, 0);
	assert_true(aiod__req_idempotent(&req));
	aiod_prep_open(&req, 3, "f", O_RDWR | O_TRUNC, 0, 0);
	assert_false(aiod__req_idempotent(&req));
	aiod_prep_open(&req, 3, "f", O_RDWR | O_CREAT | O_EXCL, 0644, 0);
	assert_false(aiod__req_idempotent(&req));
	aiod_prep_fallocate(&req, 3, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096);
	assert_true(aiod__req_idempotent(&req));
	aiod_prep_fallocate(&req, 3, FALLOC_FL_INSERT_RANGE, 0, 4096);
	assert_false(aiod__req_idempotent(&req));
	aiod_prep_lseek(&req, 3, 0, SEEK_CUR);
	assert_true(aiod__req_idempotent(&req));
	aiod_prep_lseek(&req, 3, 1, SEEK_CUR);
	assert_false(aiod__req_idempotent(&req));
	aiod_prep_setxattr(&req, 3, NULL, "user.x", buf, 1, 0);
	assert_true(aiod__req_idempotent(&req));
	aiod_prep_setxattr(&req, 3, NULL, "user.x", buf, 1, XATTR_CREATE);
	assert_false(aiod__req_idempotent(&req));
	aiod_prep_rename(&req, 3, "a", 3, "b", 0);
	assert_false(aiod__req_idempotent(&req));
	aiod_prep_unlink(&req, 3, "a");
	assert_false(aiod__req_idempotent(&req));
}

/*
 * Workers killed while idle: the doorbell to a dead worker fails with
 * EPIPE, never SIGPIPE (whose default action would end this test), and
 * the request goes to a live worker without counting as a try.
 */
static void test_pool_dead_idle_worker_no_sigpipe(void **state)
{
	enum { W = 3 };
	struct aiod_pool *p = new_pool(W, 0);
	struct aiod_req reqs[W], more[2 * W];
	int count = 0, more_count = 0;
	pid_t pids[W];

	(void)state;
	signal(SIGPIPE, SIG_DFL);
	for (int i = 0; i < W; i++)
		pids[i] = start_nop(p, &reqs[i], &count, 10 * 1000 * 1000, 0);
	for (int i = 0; i < W; i++)
		aiod_cancel(p, &reqs[i]);
	wait_count(p, &count, W, 5000);
	/* All idle now; kill two without letting the pool notice. */
	kill(pids[0], SIGKILL);
	kill(pids[1], SIGKILL);
	wait_gone(pids[0], 2000);
	wait_gone(pids[1], 2000);
	for (int i = 0; i < 2 * W; i++)
		start_nop(p, &more[i], &more_count, 1000, AIOD_F_NORETRY);
	wait_count(p, &more_count, 2 * W, 5000);
	for (int i = 0; i < 2 * W; i++)
		assert_int_equal(more[i].result, 0);
	aiod_pool_free(p);
}

static void test_pool_cancel_queued_and_running(void **state)
{
	struct aiod_pool *p = new_pool(1, 0);
	struct aiod_req a, b;
	int ca = 0, cb = 0;
	int64_t t0;

	(void)state;
	start_nop(p, &a, &ca, 10 * 1000 * 1000, 0);
	start_nop(p, &b, &cb, 0, 0);
	assert_int_equal(aiod_req_worker(&b), 0);  /* queued behind a */
	assert_int_equal(aiod_cancel(p, &b), 0);
	wait_count(p, &cb, 1, 1000);
	assert_int_equal(b.result, -ECANCELED);
	assert_int_equal(ca, 0);

	t0 = now_ms();
	assert_int_equal(aiod_cancel(p, &a), 0);
	wait_count(p, &ca, 1, 2000);
	assert_int_equal(a.result, -EINTR);
	assert_true(now_ms() - t0 < 1000);
	assert_int_equal(aiod_cancel(p, &a), -ENOENT);
	aiod_pool_free(p);
}

/*
 * Workers run in their own process groups, with no fds but their own:
 * stdio and the socket, copies of the socket holding the numbers shared
 * fds take, and above those what a worker keeps for itself (a pipe and
 * /dev/null, aiod/ops.c).
 */
/* The target of /proc/PID/fd/FD, or "" if there is none. */
static void fd_target(pid_t pid, int fd, char *buf, size_t size)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	n = readlink(path, buf, size - 1);
	buf[n > 0 ? n : 0] = 0;
}

static void test_pool_worker_isolation(void **state)
{
	const int kept_from = AIOD_WORKER_SHARED_FD + AIOD_MAX_SHARED_FDS;
	int leak = open("/dev/null", O_RDONLY);     /* not O_CLOEXEC */
	struct aiod_pool *p = new_pool(1, 0);
	struct aiod_req req;
	char dir[64];
	struct dirent *de;
	int count = 0, nfd = 0, kept = 0, holders = 0;
	char sock[64], link[64];
	pid_t pid;
	DIR *d;

	(void)state;
	assert_true(leak >= 0 && leak < kept_from);
	pid = start_nop(p, &req, &count, 10 * 1000 * 1000, 0);
	assert_true(pid > 0);
	assert_int_equal(getpgid(pid), pid);
	assert_int_not_equal(getpgid(pid), getpgrp());
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	fd_target(pid, AIOD_WORKER_SOCK_FD, sock, sizeof(sock));
	assert_true(sock[0]);
	d = opendir(dir);
	assert_non_null(d);
	while ((de = readdir(d))) {
		int fd = atoi(de->d_name);

		if (de->d_name[0] == '.')
			continue;
		/* The arena is closed once mapped. */
		if (fd >= kept_from) {
			kept++;
			continue;
		}
		if (fd >= AIOD_WORKER_SHARED_FD) {
			fd_target(pid, fd, link, sizeof(link));
			assert_string_equal(link, sock);
			holders++;
			continue;
		}
		assert_true(fd <= 3);
		nfd++;
	}
	closedir(d);
	assert_int_equal(nfd, 4);
	assert_int_equal(holders, AIOD_MAX_SHARED_FDS);
	assert_true(kept <= 3);
	aiod_cancel(p, &req);
	wait_count(p, &count, 1, 2000);
	aiod_pool_free(p);
	close(leak);
}

/* The scheduling policy of a worker of a new pool, or -1. */
static int worker_policy(void)
{
	struct aiod_pool *p = NULL;
	struct aiod_req req;
	int count = 0, policy = -1;
	pid_t pid;

	if (aiod_pool_new(&p, &(struct aiod_pool_opts){ .workers = 1 }))
		return -1;
	aiod_prep_nop(&req, 0);
	req.cb = count_cb;
	req.data = &count;
	if (aiod_submit(p, &req) == 0 && (pid = aiod_req_worker(&req)) > 0)
		policy = sched_getscheduler(pid);
	for (int i = 0; count < 1 && i < 5; i++)
		aiod_pool_wait(p, 1000);
	aiod_pool_free(p);      /* which ends the request if it did not */
	return policy;
}

/*
 * Workers of a SCHED_OTHER client run SCHED_BATCH; those of a real-time
 * client keep its policy.  (Real time, not SCHED_IDLE: a worker, having
 * dropped CAP_SYS_NICE, could not leave SCHED_IDLE anyway, so that case
 * would pass without the check it tests; leaving SCHED_FIFO needs no
 * privilege.)  The real-time half needs CAP_SYS_NICE: skipped without.
 */
static void test_pool_workers_run_batch(void **state)
{
	int status;
	pid_t child;

	(void)state;
	assert_int_equal(sched_getscheduler(0), SCHED_OTHER);
	assert_int_equal(worker_policy(), SCHED_BATCH);

	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		if (sched_setscheduler(0, SCHED_FIFO,
				       &(struct sched_param){ .sched_priority = 1 }))
			_exit(errno == EPERM ? 77 : 2);
		_exit(worker_policy() != SCHED_FIFO);
	}
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		skip();
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* Freeing the pool completes what is left and ends every worker. */
static void test_pool_free_cancels_and_ends_workers(void **state)
{
	struct aiod_pool *p = new_pool(2, 0);
	struct aiod_req reqs[4];
	int count = 0;
	pid_t pids[2];

	(void)state;
	for (int i = 0; i < 4; i++)
		start_nop(p, &reqs[i], &count, 10 * 1000 * 1000, 0);
	pids[0] = aiod_req_worker(&reqs[0]);
	pids[1] = aiod_req_worker(&reqs[1]);
	assert_true(pids[0] > 0 && pids[1] > 0);
	aiod_pool_free(p);
	assert_int_equal(count, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(reqs[i].result, -ECANCELED);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(kill(pids[i], 0), -1);
		assert_int_equal(errno, ESRCH);
	}
}

/* The client dies without freeing the pool: its workers die too. */
static void test_pool_workers_die_with_client(void **state)
{
	int fds[2], status;
	pid_t child, pids[3];

	(void)state;
	assert_int_equal(pipe(fds), 0);
	child = fork();
	if (child == 0) {
		struct aiod_pool_opts opts = { .workers = 3 };
		struct aiod_pool *p;
		struct aiod_req r[3];

		if (aiod_pool_new(&p, &opts))
			_exit(1);
		for (int i = 0; i < 3; i++) {
			aiod_prep_nop(&r[i], 10 * 1000 * 1000);
			aiod_submit(p, &r[i]);
			pids[i] = aiod_req_worker(&r[i]);
		}
		if (write(fds[1], pids, sizeof(pids)) != sizeof(pids))
			_exit(1);
		_exit(0);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], pids, sizeof(pids)), sizeof(pids));
	close(fds[0]);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_int_equal(status, 0);
	for (int i = 0; i < 3; i++)
		wait_gone(pids[i], 2000);
}

static void test_pool_fd_polls_readable(void **state)
{
	struct aiod_pool *p = new_pool(1, 0);
	struct pollfd pfd = { .fd = aiod_pool_fd(p), .events = POLLIN };
	struct aiod_req req;
	int count = 0;

	(void)state;
	assert_int_equal(poll(&pfd, 1, 0), 0);
	start_nop(p, &req, &count, 0, 0);
	assert_int_equal(poll(&pfd, 1, 5000), 1);
	assert_true(pfd.revents & POLLIN);
	assert_int_equal(aiod_pool_process(p), 1);
	assert_int_equal(count, 1);
	assert_int_equal(poll(&pfd, 1, 0), 0);

	/* A deferred completion (a cancelled queued request) wakes it too. */
	start_nop(p, &req, &count, 10 * 1000 * 1000, 0);
	{
		struct aiod_req queued;
		int qc = 0;

		start_nop(p, &queued, &qc, 0, 0);
		aiod_cancel(p, &queued);
		assert_int_equal(poll(&pfd, 1, 1000), 1);
		assert_int_equal(aiod_pool_process(p), 1);
		assert_int_equal(qc, 1);
	}
	aiod_cancel(p, &req);
	wait_count(p, &count, 2, 2000);
	aiod_pool_free(p);
}

static void test_pool_submit_checks_arguments(void **state)
{
	struct aiod_pool *p = new_pool(1, 0);
	char *longname = malloc(PATH_MAX + 1);
	uint32_t group = 0;
	struct aiod_cred cred = { .ngroups = AIOD_MAX_GROUPS + 1, .groups = &group };
	struct aiod_req req;
	int count = 0;

	(void)state;
	aiod_prep(&req, AIOD_OP__COUNT);
	assert_int_equal(aiod_submit(p, &req), -EINVAL);
	aiod_prep_nop(&req, 0);
	req.flags = 1u << 20;
	assert_int_equal(aiod_submit(p, &req), -EINVAL);
	memset(longname, 'a', PATH_MAX);
	longname[PATH_MAX] = 0;
	aiod_prep_statx(&req, AT_FDCWD, longname, 0, STATX_BASIC_STATS);
	assert_int_equal(aiod_submit(p, &req), -ENAMETOOLONG);
	aiod_prep_pread(&req, 0, NULL, AIOD_BUF_MAX + 1, 0);
	assert_int_equal(aiod_submit(p, &req), -E2BIG);
	aiod_prep_pwrite(&req, 0, NULL, 10, 0);
	assert_int_equal(aiod_submit(p, &req), -EINVAL);
	aiod_prep_nop(&req, 0);
	req.cred = &cred;
	assert_int_equal(aiod_submit(p, &req), -EINVAL);

	/* A request is submitted once until its callback runs. */
	start_nop(p, &req, &count, 200 * 1000, 0);
	assert_int_equal(aiod_submit(p, &req), -EINVAL);
	wait_count(p, &count, 1, 5000);
	assert_int_equal(aiod_cancel(p, &req), -ENOENT);
	assert_null(aiod_buf_alloc(p, 0));
	assert_null(aiod_buf_alloc(p, AIOD_BUF_MAX + 1));
	aiod_pool_free(p);
	free(longname);
}

static void test_pool_buf_alloc_is_page_aligned(void **state)
{
	struct aiod_pool *p = new_pool(1, 1 << 20);
	void *a = aiod_buf_alloc(p, 1), *b = aiod_buf_alloc(p, 100000);
	struct aiod_pool_stats st;

	(void)state;
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal((uintptr_t)a % 4096, 0);
	assert_int_equal((uintptr_t)b % 4096, 0);
	assert_null(aiod_buf_alloc(p, 1 << 20));    /* no room for it */
	aiod_pool_stats(p, &st);
	assert_int_equal(st.arena_used, 4096 + 4096 + 131072);
	aiod_buf_free(p, a);
	aiod_buf_free(p, b);
	aiod_buf_free(p, NULL);
	aiod_pool_stats(p, &st);
	assert_int_equal(st.arena_used, 4096);
	aiod_pool_free(p);
}


/* A closed fd fails its own request with -EBADF; the workers live on. */
static void test_pool_bad_fd_fails_only_its_request(void **state)
{
	struct aiod_pool *p = new_pool(3, 0);
	struct aiod_pool_stats st;
	struct aiod_req bad, good;
	int cb = 0, cg = 0;

	(void)state;
	aiod_prep_fsync(&bad, 999, 0);
	bad.cb = count_cb;
	bad.data = &cb;
	assert_int_equal(aiod_submit(p, &bad), 0);
	wait_count(p, &cb, 1, 2000);
	assert_int_equal(bad.result, -EBADF);
	start_nop(p, &good, &cg, 0, 0);
	wait_count(p, &cg, 1, 2000);
	assert_int_equal(good.result, 0);
	aiod_pool_stats(p, &st);
	assert_int_equal(st.worker_deaths, 0);
	assert_int_equal(st.workers, 3);
	aiod_pool_free(p);
}

/* How many of this process's children have path open as fd 5. */
static int children_holding(const char *path)
{
	char list[256], got[PATH_MAX], *tok, *save = NULL;
	int n = 0;
	FILE *f;

	snprintf(list, sizeof(list), "/proc/self/task/%d/children", (int)gettid());
	f = fopen(list, "r");
	assert_non_null(f);
	if (!fgets(list, sizeof(list), f))
		list[0] = 0;
	fclose(f);
	for (tok = strtok_r(list, " \n", &save); tok;
	     tok = strtok_r(NULL, " \n", &save)) {
		fd_target(atoi(tok), AIOD_WORKER_SHARED_FD, got, sizeof(got));
		n += strcmp(got, path) == 0;
	}
	return n;
}

/* Statx of name under dirfd through the pool; returns the result. */
static int64_t pool_statx(struct aiod_pool *p, int dirfd, const char *name,
			  struct aiod_req *req, int *count)
{
	int want = *count + 1;

	aiod_prep_statx(req, dirfd, name, 0, STATX_SIZE);
	req->cb = count_cb;
	req->data = count;
	assert_int_equal(aiod_submit(p, req), 0);
	wait_count(p, count, want, 2000);
	return req->result;
}

/*
 * Make the directory dir (a mkdtemp() template) with a file f holding
 * "hello", its path in path; returns an fd of the directory.
 */
static int hello_dir(char *dir, char path[PATH_MAX])
{
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(path, PATH_MAX, "%s/f", dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "hello", 5), 5);
	close(fd);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

/*
 * Shared fds: every worker, a replacement too, holds one at fd 5 and
 * on, requests naming it work; closing one through the pool is refused.
 */
static void test_pool_shared_fds(void **state)
{
	char dir[PATH_MAX], path[PATH_MAX];
	struct aiod_pool_opts opts = { .workers = 2, .nshared = 1 };
	struct aiod_pool *p = NULL;
	struct aiod_req req, hold;
	int count = 0, held = 0, dfd;

	(void)state;
	dfd = hello_dir(scratch_name(dir, TMP, "shared-XXXXXX"), path);
	opts.shared_fds = &dfd;
	assert_int_equal(aiod_pool_new(&p, &opts), 0);

	/* Both workers: one is held busy while the other answers. */
	start_nop(p, &hold, &held, 300000, 0);
	assert_int_equal(pool_statx(p, dfd, "f", &req, &count), 0);
	assert_int_equal(req.stx.stx_size, 5);
	wait_count(p, &held, 1, 2000);

	/* A replacement for a killed worker holds it too. */
	start_nop(p, &hold, &held, 1000000, 0);
	kill(aiod_req_worker(&hold), SIGKILL);
	wait_count(p, &held, 2, 2000);
	assert_int_equal(pool_statx(p, dfd, "missing", &req, &count), -ENOENT);
	assert_int_equal(children_holding(dir), 2);

	aiod_prep_close(&req, dfd);
	assert_int_equal(aiod_submit(p, &req), -EINVAL);
	aiod_prep_flush(&req, dfd);     /* would close the workers' copy */
	assert_int_equal(aiod_submit(p, &req), -EINVAL);
	aiod_pool_free(p);

	opts.nshared = AIOD_MAX_SHARED_FDS + 1;
	assert_int_equal(aiod_pool_new(&p, &opts), -EINVAL);
	unlink(path);
	close(dfd);
	rmdir(dir);
}

/*
 * poll_us: a worker that finished first polls; one that finished after
 * it, while it polls, sleeps; the next request goes to the poller, not
 * to the last worker to go idle.  Timing decides whether the poller is
 * still polling, so up to TRIES tries, one of which must show it.
 */
static void test_pool_poll_gives_next_to_poller(void **state)
{
	struct aiod_pool_opts opts = { .workers = 2, .poll_us = 10000 };
	struct aiod_pool *p = NULL;
	int to_poller = 0;

	(void)state;
	assert_int_equal(aiod_pool_new(&p, &opts), 0);
	for (int t = 0; t < TRIES && !to_poller; t++) {
		struct aiod_req a, b, c;
		int count = 0;
		pid_t first;

		first = start_nop(p, &a, &count, 10000, 0);
		start_nop(p, &b, &count, 14000, 0);
		wait_count(p, &count, 2, 2000);
		to_poller += start_nop(p, &c, &count, 0, 0) == first;
		wait_count(p, &count, 3, 2000);
		usleep(20000);  /* till no one polls */
	}
	assert_true(to_poller > 0);
	aiod_pool_free(p);

	opts.poll_us = 10001;
	assert_int_equal(aiod_pool_new(&p, &opts), -EINVAL);
}

/* A read of len bytes, then a request with no fd, each awaited. */
static void read_then_nop(struct aiod_pool *p, int fd, size_t len, int *count)
{
	struct aiod_req req;

	aiod_prep_pread(&req, fd, NULL, len, 0);
	req.cb = count_cb;
	req.data = count;
	assert_int_equal(aiod_submit(p, &req), 0);
	wait_count(p, count, *count + 1, 2000);
	assert_int_equal(req.result, (int64_t)len);
	start_nop(p, &req, count, 0, 0);
	wait_count(p, count, *count + 1, 2000);
}

/*
 * Up to tries rounds of read_then_nop() of len bytes, each followed by a
 * pause till no one polls; whether one of the nops came through memory
 * (a worker polled for it).  Stops at the first that did.
 */
static bool polled_after_reads(struct aiod_pool *p, int fd, size_t len,
			       int *count, int tries)
{
	uint64_t bells = aiod__pool_mem_bells(p);

	for (int t = 0; t < tries && aiod__pool_mem_bells(p) == bells; t++) {
		read_then_nop(p, fd, len, count);
		usleep(20000);
	}
	return aiod__pool_mem_bells(p) != bells;
}

/*
 * A worker does not poll right after a request that moved AIOD_POLL_BULK
 * bytes or more of a file's data: the request after such a read comes by
 * socket, never through memory.  After a read one page short of that it
 * polls, and the request comes through memory (in one of TRIES tries at
 * least: timing decides whether it still polls).
 */
static void test_pool_no_poll_after_bulk(void **state)
{
	enum { BULK = AIOD_POLL_BULK };
	struct aiod_pool_opts opts = { .workers = 1, .poll_us = 10000 };
	struct aiod_pool *p = NULL;
	char *data = calloc(1, BULK);
	int count = 0, fd;

	(void)state;
	fd = temp_file(data, BULK);
	assert_int_equal(aiod_pool_new(&p, &opts), 0);
	assert_true(polled_after_reads(p, fd, BULK - 4096, &count, TRIES));
	assert_false(polled_after_reads(p, fd, BULK, &count, 10));
	aiod_pool_free(p);
	close(fd);
	free(data);
}

/*
 * While the client holds polls (aiod_pool_hold_polls()), no worker
 * polls: the request after a small read comes by socket, never through
 * memory; once it lets go, through memory again (in one of TRIES tries).
 */
static void test_pool_hold_polls(void **state)
{
	struct aiod_pool_opts opts = { .workers = 1, .poll_us = 10000 };
	struct aiod_pool *p = NULL;
	char data[4096] = { 0 };
	int count = 0, fd;

	(void)state;
	fd = temp_file(data, sizeof(data));
	assert_int_equal(aiod_pool_new(&p, &opts), 0);
	aiod_pool_hold_polls(p, true);
	assert_false(polled_after_reads(p, fd, sizeof(data), &count, 10));
	aiod_pool_hold_polls(p, false);
	assert_true(polled_after_reads(p, fd, sizeof(data), &count, TRIES));
	aiod_pool_free(p);
	close(fd);
}

/*
 * A polling worker takes a request with no fd from memory, not from its
 * socket, also between requests that come by socket; and a shared fd
 * sent while it polls reaches it before a request after it that names
 * that fd, although the request came through memory.  Timing decides
 * whether the worker still polls: up to TRIES tries, of which one must
 * show it.
 */
static void test_pool_poll_memory_bell(void **state)
{
	char dir[PATH_MAX], path[PATH_MAX];
	struct aiod_pool_opts opts = { .workers = 1, .poll_us = 10000 };
	struct aiod_pool *p = NULL;
	struct aiod_req req;
	int count = 0, dfd, own[AIOD_MAX_SHARED_FDS];

	(void)state;
	dfd = hello_dir(scratch_name(dir, TMP, "mbell-XXXXXX"), path);
	assert_int_equal(aiod_pool_new(&p, &opts), 0);
	for (int t = 0; t < TRIES && aiod__pool_mem_bells(p) == 0; t++) {
		start_nop(p, &req, &count, 0, 0);
		wait_count(p, &count, count + 1, 2000);
		start_nop(p, &req, &count, 0, 0);      /* to the poller */
		wait_count(p, &count, count + 1, 2000);
		usleep(20000);
	}
	assert_true(aiod__pool_mem_bells(p) > 0);

	/*
	 * Datagrams (a request passing an fd) between bells in memory: the
	 * worker may read a datagram before the client has counted it, and
	 * must not then wait on its socket for one more.
	 */
	for (int t = 0; t < 2000; t++) {
		assert_int_equal(pool_statx(p, dfd, "f", &req, &count), 0);
		start_nop(p, &req, &count, 0, 0);
		wait_count(p, &count, count + 1, 2000);
	}

	for (int t = 0; t < AIOD_MAX_SHARED_FDS; t++) {
		own[t] = dup(dfd);
		start_nop(p, &req, &count, 0, 0);
		wait_count(p, &count, count + 1, 2000);
		assert_int_equal(aiod_pool_share(p, own[t]), 0);
		assert_int_equal(pool_statx(p, own[t], "f", &req, &count), 0);
		assert_int_equal(req.stx.stx_size, 5);
	}
	aiod_pool_free(p);
	for (int t = 0; t < AIOD_MAX_SHARED_FDS; t++)
		close(own[t]);
	unlink(path);
	close(dfd);
	rmdir(dir);
}

/*
 * A request handed over in memory to a worker that dies before taking it
 * never ran: it goes to another worker, also one that may not run twice
 * (AIOD_F_NORETRY), instead of failing with EIO.  The poller is stopped
 * while it polls, handed the request, then killed.
 */
static void test_pool_memory_bell_untaken(void **state)
{
	struct aiod_pool_opts opts = { .workers = 2, .poll_us = 10000 };
	struct aiod_pool_stats st;
	struct aiod_pool *p = NULL;
	struct aiod_req req;
	int count = 0;
	pid_t poller = 0;

	(void)state;
	assert_int_equal(aiod_pool_new(&p, &opts), 0);
	for (int t = 0; t < TRIES && !poller; t++) {
		uint64_t before;
		pid_t first;

		first = start_nop(p, &req, &count, 0, 0);
		wait_count(p, &count, count + 1, 2000);
		kill(first, SIGSTOP);
		before = aiod__pool_mem_bells(p);
		if (start_nop(p, &req, &count, 0, AIOD_F_NORETRY) == first &&
		    aiod__pool_mem_bells(p) > before)
			poller = first;
		else
			kill(first, SIGCONT);
		if (!poller)
			wait_count(p, &count, count + 1, 2000);
	}
	assert_true(poller > 0);
	kill(poller, SIGKILL);
	wait_count(p, &count, count + 1, 2000);
	assert_int_equal(req.result, 0);
	assert_int_equal(aiod_pool_stats(p, &st), 0);
	assert_int_equal(st.worker_deaths, 1);
	assert_int_equal(st.retries, 0);        /* not a second run */
	aiod_pool_free(p);
}

/* A reply: 4 bytes of length, a 12-byte tag, then result as u32 if asked. */
static void set_reply(struct aiod_reply *r, int fd, bool res)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->hdr_len = res ? 20 : 16;
	r->len_off = 0;
	r->res_off = res ? 16 : 0;
	memcpy(r->hdr + 4, "reply-tag-12", 12);
}

/* Read one reply from the pipe: its length, and what follows the tag. */
static uint32_t read_reply(int fd, char *rest, size_t size)
{
	char buf[16];
	uint32_t len;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	assert_int_equal(poll(&pfd, 1, 2000), 1);
	assert_int_equal(read(fd, buf, 16), 16);
	memcpy(&len, buf, 4);
	assert_memory_equal(buf + 4, "reply-tag-12", 12);
	assert_true(len >= 16 && len - 16 < size);
	assert_int_equal(read(fd, rest, len - 16), (ssize_t)(len - 16));
	rest[len - 16] = 0;
	return len;
}

/* Submit req, prepared, with reply r, counting into count. */
static void submit_replied(struct aiod_pool *p, struct aiod_req *req,
			   const struct aiod_reply *r, int *count)
{
	req->reply = r;
	req->cb = count_cb;
	req->data = count;
	assert_int_equal(aiod_submit(p, req), 0);
}

static bool pipe_empty(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, 0) == 0;
}

/* Run the pool until *count reaches want, woken by its fd only. */
static void wait_by_fd(struct aiod_pool *p, const int *count, int want)
{
	struct pollfd pfd = { .fd = aiod_pool_fd(p), .events = POLLIN };

	while (*count < want) {
		assert_int_equal(poll(&pfd, 1, 2000), 1);
		assert_true(aiod_pool_process(p) >= 0);
	}
}

/*
 * Replies written by the worker (aiod_req.reply) to an fd shared after
 * the pool started: a read's data follows the header, a write's result
 * is patched in, a failed request writes nothing.  Lazy: the request
 * ends without waking the pool, at aiod_pool_reap() or when lazy goes
 * off; requests that wait for a worker are not forgotten.  A worker
 * killed while writing a reply ends its request with -EIO and does not
 * run it again; its replacement has the shared fd.
 */
static void test_pool_worker_replies(void **state)
{
	char dir[PATH_MAX], path[PATH_MAX + 8], got[128];
	struct aiod_pool *p = new_pool(2, 0);
	struct aiod_pool_stats st;
	struct aiod_reply r;
	struct aiod_req req[3];
	int pfd[2], fd, count = 0;
	pid_t w;

	(void)state;
	assert_non_null(mkdtemp(scratch_name(dir, TMP, "reply-XXXXXX")));
	snprintf(path, sizeof(path), "%s/f", dir);
	fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	assert_int_equal(write(fd, "hello world", 11), 11);
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	set_reply(&r, pfd[1], false);
	aiod_prep_pread(&req[0], fd, NULL, 64, 0);
	req[0].reply = &r;
	assert_int_equal(aiod_submit(p, &req[0]), -EINVAL); /* not shared */
	assert_int_equal(aiod_pool_share(p, -1), -EINVAL);
	assert_int_equal(aiod_pool_share(p, pfd[1]), 0);
	assert_int_equal(aiod_pool_share(p, pfd[1]), -EINVAL);
	r.len_off = 13;
	assert_int_equal(aiod_submit(p, &req[0]), -EINVAL);
	r.len_off = 0;

	/* A read: header, then the data. */
	req[0].cb = count_cb;
	req[0].data = &count;
	assert_int_equal(aiod_submit(p, &req[0]), 0);
	wait_count(p, &count, 1, 2000);
	assert_int_equal(req[0].result, 11);
	assert_int_equal(req[0].replied, 1);
	assert_true(req[0].reply_ns > 0);
	assert_int_equal(read_reply(pfd[0], got, sizeof(got)), 27);
	assert_string_equal(got, "hello world");

	/* A write: its result in the header. */
	set_reply(&r, pfd[1], true);
	aiod_prep_pwrite(&req[0], fd, "HELLO", 5, 0);
	submit_replied(p, &req[0], &r, &count);
	wait_count(p, &count, 2, 2000);
	assert_int_equal(read_reply(pfd[0], got, sizeof(got)), 20);
	assert_int_equal(*(uint32_t *)got, 5);

	/* A failure: nothing written, the callback answers. */
	aiod_prep_fsync(&req[0], 999, 0);
	submit_replied(p, &req[0], &r, &count);
	wait_count(p, &count, 3, 2000);
	assert_int_equal(req[0].result, -EBADF);
	assert_int_equal(req[0].replied, 0);
	assert_true(pipe_empty(pfd[0]));

	/* Lazy: answered, but ended only when the pool looks. */
	aiod_pool_lazy(p, true);
	set_reply(&r, pfd[1], false);
	aiod_prep_pread(&req[0], fd, NULL, 5, 6);
	submit_replied(p, &req[0], &r, &count);
	read_reply(pfd[0], got, sizeof(got));
	assert_string_equal(got, "world");
	usleep(50000);
	{
		struct pollfd pp = { .fd = aiod_pool_fd(p), .events = POLLIN };

		assert_int_equal(poll(&pp, 1, 0), 0); /* no wake-up */
	}
	assert_int_equal(count, 3);
	assert_int_equal(aiod_pool_reap(p), 1);
	assert_int_equal(count, 4);
	assert_int_equal(req[0].replied, 1);

	/* Lazy going off wakes the pool for what ended meanwhile. */
	assert_int_equal(aiod_submit(p, &req[0]), 0);
	read_reply(pfd[0], got, sizeof(got));
	usleep(50000);
	aiod_pool_lazy(p, false);
	wait_by_fd(p, &count, 5);
	aiod_pool_lazy(p, true);

	/*
	 * Three for two workers: the third waits, so the first to finish
	 * wakes the pool, which hands it the third; all are answered.
	 */
	for (int i = 0; i < 3; i++) {
		aiod_prep_pread(&req[i], fd, NULL, 5, 0);
		submit_replied(p, &req[i], &r, &count);
	}
	wait_by_fd(p, &count, 6);
	for (int i = 0; i < 3; i++)
		read_reply(pfd[0], got, sizeof(got));
	for (int64_t end = now_ms() + 2000; count < 8; usleep(1000)) {
		assert_true(now_ms() < end);
		aiod_pool_process(p); /* those that rang, and the lazy */
	}

	/*
	 * Two of three workers resized away while they run replied
	 * requests: one reap ends all three requests.
	 */
	assert_int_equal(aiod_pool_resize(p, 3), 0);
	for (int i = 0; i < 3; i++) {
		aiod_prep_nop(&req[i], 100000);
		submit_replied(p, &req[i], &r, &count);
	}
	assert_int_equal(aiod_pool_resize(p, 1), 0);
	for (int i = 0; i < 3; i++)
		read_reply(pfd[0], got, sizeof(got));
	usleep(50000); /* till all have said so in the arena */
	assert_int_equal(aiod_pool_reap(p), 3);
	assert_int_equal(count, 11);
	assert_int_equal(aiod_pool_resize(p, 2), 0);
	aiod_pool_lazy(p, false);

	/* Killed while writing (the pipe is full): -EIO, never run again. */
	assert_int_equal(fcntl(pfd[1], F_SETFL, O_NONBLOCK), 0);
	while (write(pfd[1], path, sizeof(path)) > 0)
		;
	assert_int_equal(fcntl(pfd[1], F_SETFL, 0), 0);
	aiod_prep_pread(&req[0], fd, NULL, 5, 0);
	submit_replied(p, &req[0], &r, &count);
	w = aiod_req_worker(&req[0]);
	usleep(100000); /* till it blocks in the write */
	kill(w, SIGKILL);
	wait_count(p, &count, 12, 2000);
	assert_int_equal(req[0].result, -EIO);
	assert_int_equal(req[0].replied, 0);
	aiod_pool_stats(p, &st);
	assert_int_equal(st.retries, 0);
	while (read(pfd[0], path, sizeof(path)) == sizeof(path) && !pipe_empty(pfd[0]))
		;

	/* Its replacement has the shared fd: both workers answer. */
	for (int i = 0; i < 2; i++) {
		aiod_prep_pread(&req[i], fd, NULL, 5, 0);
		submit_replied(p, &req[i], &r, &count);
	}
	wait_count(p, &count, 14, 2000);
	assert_int_equal(req[0].replied + req[1].replied, 2);
	aiod_pool_free(p);
	close(pfd[0]);
	close(pfd[1]);
	close(fd);
	unlink(path);
	rmdir(dir);
}

/*
 * A reply for one error (aiod_reply.on_error): written when the op fails
 * with exactly that error, with its length and without the result; not
 * when the op succeeds or fails otherwise, nor may on_error be positive.
 */
static void test_pool_error_replies(void **state)
{
	char dir[PATH_MAX], got[128];
	struct aiod_pool *p = new_pool(1, 0);
	struct aiod_reply r;
	struct aiod_req req;
	int pfd[2], dfd, count = 0;

	(void)state;
	assert_non_null(mkdtemp(scratch_name(dir, TMP, "ereply-XXXXXX")));
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	assert_int_equal(aiod_pool_share(p, pfd[1]), 0);
	set_reply(&r, pfd[1], true);
	r.on_error = -ENOENT;

	aiod_prep_lookup(&req, dfd, "missing");
	submit_replied(p, &req, &r, &count);
	wait_count(p, &count, 1, 2000);
	assert_int_equal(req.result, -ENOENT);
	assert_int_equal(req.replied, 1);
	assert_true(req.reply_ns > 0);
	assert_int_equal(read_reply(pfd[0], got, sizeof(got)), 20);
	assert_int_equal(*(uint32_t *)got, 0); /* no result patched in */

	aiod_prep_lookup(&req, dfd, ".");
	submit_replied(p, &req, &r, &count);
	wait_count(p, &count, 2, 2000);
	assert_int_equal(req.result, 0);
	assert_int_equal(req.replied, 0);
	assert_true(pipe_empty(pfd[0]));

	aiod_prep_lookup(&req, dfd, "missing/below");
	r.on_error = -EACCES;
	submit_replied(p, &req, &r, &count);
	wait_count(p, &count, 3, 2000);
	assert_int_equal(req.result, -ENOENT);
	assert_int_equal(req.replied, 0);
	assert_true(pipe_empty(pfd[0]));

	r.on_error = ENOENT;
	aiod_prep_lookup(&req, dfd, "missing");
	req.reply = &r;
	assert_int_equal(aiod_submit(p, &req), -EINVAL);
	aiod_pool_free(p);
	close(pfd[0]);
	close(pfd[1]);
	close(dfd);
	rmdir(dir);
}

/* How many children this process has now named comm (aiod: workers). */
/* How many of our children comm names; the pid of one in *pid, if any. */
static int children_named_pid(const char *comm, pid_t *pid)
{
	char path[64], buf[4096], name[32];
	int n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)gettid());
	f = fopen(path, "r");
	assert_non_null(f);
	if (fgets(buf, sizeof(buf), f)) {
		for (char *t = strtok(buf, " \n"); t; t = strtok(NULL, " \n")) {
			FILE *c;

			snprintf(path, sizeof(path), "/proc/%s/comm", t);
			c = fopen(path, "r");
			if (!c)
				continue;       /* reaped meanwhile */
			if (fgets(name, sizeof(name), c)) {
				name[strcspn(name, "\n")] = 0;
				if (strcmp(name, comm) == 0) {
					n++;
					*pid = atoi(t);
				}
			}
			fclose(c);
		}
	}
	fclose(f);
	return n;
}

static int children_named(const char *comm)
{
	pid_t pid;

	return children_named_pid(comm, &pid);
}

static int nchildren(void)
{
	return children_named("aiod");
}

/*
 * AIOD_OP_CLOSE: the caller's number for the fd is gone by the time the
 * callback runs (the closer closed it, or, without a closer or for a
 * file of a filesystem without flush, the pool did); the closer comes
 * and goes with the pool.
 */
static void close_some(bool closer)
{
	struct aiod_pool *p = new_pool(2, 0);
	struct aiod_req req[64];
	int count = 0, fds[64];

	/* The closer names itself once it runs, which may take a moment. */
	for (int64_t end = now_ms() + 2000;
	     children_named("aiod-closer") != closer; usleep(5000))
		assert_true(now_ms() < end);
	for (int i = 0; i < 64; i += 2) {
		/* Pipes (no flush known) go to the closer, tmpfs files not. */
		assert_int_equal(pipe2(&fds[i], O_CLOEXEC), 0);
		if (i % 4 == 0) {
			char path[PATH_MAX];

			close(fds[i + 1]);
			fds[i + 1] = mkostemp(scratch_name(path, SHM, "close-XXXXXX"),
					      O_CLOEXEC);
			unlink(path);
		}
	}
	for (int i = 0; i < 64; i++) {
		assert_true(fds[i] >= 0);
		aiod_prep_close(&req[i], fds[i]);
		req[i].cb = count_cb;
		req[i].data = &count;
		assert_int_equal(aiod_submit(p, &req[i]), 0);
	}
	wait_count(p, &count, 64, 2000);
	for (int i = 0; i < 64; i++) {
		assert_int_equal(req[i].result, 0);
		assert_int_equal(fcntl(fds[i], F_GETFD), -1);
		assert_int_equal(errno, EBADF);
	}
	aiod_pool_free(p);
	assert_int_equal(children_named("aiod-closer"), 0);
}

/*
 * Which files close in the caller at once: those of filesystems without
 * a flush (tmpfs here: /dev/shm), not pipes nor /proc's (not known to
 * have none), and the answer is kept per mount; whether a file has no
 * link left comes with it.
 */
static void test_closer_knows_flushless(void **state)
{
	struct aiod__closer c = { .pid = 0 };
	char path[PATH_MAX], path2[PATH_MAX];
	int fd = mkstemp(scratch_name(path, SHM, "flushless-XXXXXX")),
	    linked = mkstemp(scratch_name(path2, SHM, "flushless-XXXXXX")), pfd[2],
	    proc;
	bool unlinked;

	(void)state;
	assert_true(fd >= 0 && linked >= 0);
	unlink(path);
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	proc = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	assert_true(aiod__closer_flushless(&c, fd, NULL));
	assert_false(aiod__closer_flushless(&c, pfd[0], NULL));
	assert_false(aiod__closer_flushless(&c, proc, NULL));
	assert_true(aiod__closer_flushless(&c, fd, &unlinked));
	assert_true(unlinked);
	assert_true(aiod__closer_flushless(&c, linked, &unlinked));
	assert_false(unlinked);
	assert_int_equal(c.nkinds, 3); /* one entry per mount */
	close(linked);
	unlink(path2);
	close(fd);
	close(pfd[0]);
	close(pfd[1]);
	close(proc);
}

/* The same answers from the pool, for a client (aiodfs's FOPEN_NOFLUSH). */
static void test_pool_flushless(void **state)
{
	struct aiod_pool *p = new_pool(1, 0);
	char path[PATH_MAX];
	int fd = mkstemp(scratch_name(path, SHM, "flushless-XXXXXX")), pfd[2];

	(void)state;
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	assert_true(aiod_pool_flushless(p, fd));
	assert_false(aiod_pool_flushless(p, pfd[1]));
	assert_false(aiod_pool_flushless(p, -1));
	close(fd);
	close(pfd[0]);
	close(pfd[1]);
	aiod_pool_free(p);
}

/* Run fn with the pool's closer, then without (AIOD_NO_CLOSER). */
static void with_and_without_closer(void (*fn)(bool closer))
{
	fn(true);
	setenv("AIOD_NO_CLOSER", "1", 1);
	fn(false);
	unsetenv("AIOD_NO_CLOSER");
}

static void test_pool_close_in_closer(void **state)
{
	(void)state;
	with_and_without_closer(close_some);
}

/*
 * A CLOSE of a file with no flush but no link left either: the caller's
 * copy may be the file's last, whose close frees its blocks, so it goes
 * to the closer too (stopped here: the CLOSE waits for it), where a
 * linked file's closes in the caller at once.
 */
static void test_pool_close_unlinked_in_closer(void **state)
{
	struct aiod_pool *p = new_pool(1, 0);
	char path[PATH_MAX], path2[PATH_MAX];
	struct aiod_req req[2];
	int count = 0,
	    linked = mkostemp(scratch_name(path, SHM, "close-XXXXXX"), O_CLOEXEC),
	    gone = mkostemp(scratch_name(path2, SHM, "close-XXXXXX"), O_CLOEXEC);
	pid_t closer = 0;

	(void)state;
	assert_true(linked >= 0 && gone >= 0);
	unlink(path2);
	for (int64_t end = now_ms() + 2000;
	     !children_named_pid("aiod-closer", &closer); usleep(5000))
		assert_true(now_ms() < end);
	assert_int_equal(kill(closer, SIGSTOP), 0);
	for (int i = 0; i < 2; i++) {
		aiod_prep_close(&req[i], i ? gone : linked);
		req[i].cb = count_cb;
		req[i].data = &count;
		assert_int_equal(aiod_submit(p, &req[i]), 0);
		if (!i)
			wait_count(p, &count, 1, 2000);
	}
	for (int64_t end = now_ms() + 300; now_ms() < end;)
		assert_true(aiod_pool_wait(p, 50) >= 0);
	assert_int_equal(count, 1);
	assert_int_equal(kill(closer, SIGCONT), 0);
	wait_count(p, &count, 2, 2000);
	assert_int_equal(req[1].result, 0);
	assert_int_equal(fcntl(gone, F_GETFD), -1);
	aiod_pool_free(p);
	unlink(path);
}

/*
 * aiod_pool_close: the closer closes the fds given, at the next reap
 * (the caller's number goes; the write end of a pipe was its last: the
 * read end sees EOF); without a closer, the call itself.
 */
/* How many of the n fds are closed. */
static int closed_of(const int *fds, int n)
{
	int closed = 0;

	for (int i = 0; i < n; i++)
		closed += fcntl(fds[i], F_GETFD) < 0;
	return closed;
}

static void close_given(bool closer)
{
	struct aiod_pool *p = new_pool(1, 0);
	char buf[1];
	int pfd[2], path = open("/dev/shm", O_PATH | O_CLOEXEC);

	for (int64_t end = now_ms() + 2000;
	     children_named("aiod-closer") != closer; usleep(5000))
		assert_true(now_ms() < end);
	assert_true(path >= 0);
	assert_int_equal(pipe2(pfd, O_CLOEXEC | O_NONBLOCK), 0);
	aiod_pool_close(p, pfd[1]);
	aiod_pool_close(p, path);
	aiod_pool_close(p, -1); /* nothing */
	/* With a closer, they wait for the next reap, and go in one batch. */
	assert_int_equal(fcntl(path, F_GETFD) >= 0, closer);
	assert_int_equal(aiod_pool_reap(p), 0);
	for (int64_t end = now_ms() + 2000;
	     fcntl(pfd[1], F_GETFD) >= 0 || fcntl(path, F_GETFD) >= 0; usleep(1000)) {
		assert_true(closer);
		assert_true(now_ms() < end);
	}
	assert_int_equal(read(pfd[0], buf, 1), 0);
	close(pfd[0]);
	aiod_pool_free(p);
}

static void test_pool_close_fd(void **state)
{
	(void)state;
	with_and_without_closer(close_given);
}

/*
 * More fds than the closer's pipe holds (64 KiB of 16-byte jobs: 4,096):
 * the rest wait in the backlog, and a caller asleep on aiod_pool_fd()
 * wakes when the closer has made room, to send them: every one gets
 * closed, although none asks for an ack.
 */
static void test_pool_close_many(void **state)
{
	enum { N = 6000 };
	static int fds[N];
	struct rlimit rl;
	struct aiod_pool *p;
	int base, left = N, wakes = 0;
	pid_t closer = 0;

	(void)state;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < N + 200)
		skip();
	p = new_pool(1, 0);
	for (int64_t end = now_ms() + 2000;
	     !children_named_pid("aiod-closer", &closer); usleep(5000))
		assert_true(now_ms() < end);
	/* Stopped, it cannot make room while the pipe is filled. */
	assert_int_equal(kill(closer, SIGSTOP), 0);
	base = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(base >= 0);
	for (int i = 0; i < N; i++) {
		fds[i] = fcntl(base, F_DUPFD_CLOEXEC, 0);
		assert_true(fds[i] >= 0);
		aiod_pool_close(p, fds[i]);
	}
	close(base);
	assert_int_equal(aiod_pool_reap(p), 0); /* sends what the pipe takes */
	assert_int_equal(kill(closer, SIGCONT), 0);
	for (int64_t end = now_ms() + 5000; left; left = N - closed_of(fds, N)) {
		struct pollfd pf = { .fd = aiod_pool_fd(p), .events = POLLIN };

		assert_true(now_ms() < end);
		if (poll(&pf, 1, 100) > 0) {
			assert_true(aiod_pool_process(p) >= 0);
			wakes++;
		}
	}
	assert_true(wakes > 0);
	aiod_pool_free(p);
}

/*
 * aiod_pool_resize: shrinking while every worker is busy fails and
 * re-runs nothing, and the busy ones go once done; growing runs that
 * many requests at once.
 */
static void test_pool_resize(void **state)
{
	struct aiod_pool *p = new_pool(4, 0);
	struct aiod_pool_stats st;
	struct aiod_req r[4];
	int count = 0;
	int64_t t0;

	(void)state;
	for (int i = 0; i < 4; i++)
		assert_true(start_nop(p, &r[i], &count, 200000, AIOD_F_NORETRY) > 0);
	assert_int_equal(aiod_pool_resize(p, 1), 0);
	aiod_pool_stats(p, &st);
	assert_int_equal(st.workers, 1);
	assert_int_equal(st.busy, 4);
	wait_count(p, &count, 4, 3000);
	for (int i = 0; i < 4; i++)
		assert_int_equal(r[i].result, 0);
	aiod_pool_stats(p, &st);
	assert_int_equal(st.worker_deaths, 0);
	assert_int_equal(st.retries, 0);
	assert_int_equal(st.busy, 0);
	/* The retired ones are reaped as the pool processes events. */
	for (int64_t end = now_ms() + 2000; nchildren() != 1; usleep(5000)) {
		assert_true(now_ms() < end);
		aiod_pool_process(p);
	}

	assert_int_equal(aiod_pool_resize(p, 3), 0);
	assert_int_equal(nchildren(), 3);
	t0 = now_ms();
	for (int i = 0; i < 3; i++)
		start_nop(p, &r[i], &count, 200000, 0);
	wait_count(p, &count, 7, 3000);
	/* In parallel: one by one would take 600 ms. */
	assert_true(now_ms() - t0 < 550);

	assert_int_equal(aiod_pool_resize(p, 0), -EINVAL);
	assert_int_equal(aiod_pool_resize(p, 1025), -EINVAL);
	aiod_pool_free(p);
}

/* Room the caller frees in the arena goes to a request waiting for it. */
static void test_pool_buf_free_lets_waiting_request_go(void **state)
{
	struct aiod_pool *p = new_pool(2, 1 << 20);
	struct pollfd pfd = { .fd = aiod_pool_fd(p), .events = POLLIN };
	void *hold = aiod_buf_alloc(p, 512 << 10);
	struct aiod_req req;
	char byte = 'z';
	int count = 0, fd = temp_file(&byte, 1);

	(void)state;
	assert_non_null(hold);
	aiod_prep_pread(&req, fd, NULL, 512 << 10, 0);
	req.cb = count_cb;
	req.data = &count;
	assert_int_equal(aiod_submit(p, &req), 0);
	assert_int_equal(aiod_req_worker(&req), 0);     /* no room yet */
	aiod_buf_free(p, hold);
	/* Callbacks never run from aiod_buf_free: it can only dispatch. */
	assert_true(aiod_req_worker(&req) > 0);
	assert_int_equal(poll(&pfd, 1, 3000), 1);
	wait_count(p, &count, 1, 2000);
	assert_int_equal(req.result, 1);
	close(fd);
	aiod_pool_free(p);
}

/* A cancel that reaches a worker before its handler is set up. */
static void test_pool_cancel_on_fresh_worker(void **state)
{
	struct aiod_pool *p = new_pool(1, 0);
	struct aiod_req slow, next;
	int cs = 0, cn = 0;
	pid_t first;

	(void)state;
	/* Kill the worker so that the next request goes to a new one. */
	first = start_nop(p, &slow, &cs, 10 * 1000 * 1000, AIOD_F_NORETRY);
	kill(first, SIGKILL);
	wait_count(p, &cs, 1, 2000);
	start_nop(p, &next, &cn, 10 * 1000 * 1000, 0);
	assert_int_equal(aiod_cancel(p, &next), 0);
	wait_count(p, &cn, 1, 2000);
	assert_int_equal(next.result, -EINTR);
	aiod_pool_free(p);
}

static struct aiod_pool *nested_pool;
static int nested_inner, nested_outer;

static void nested_cb(struct aiod_req *req)
{
	static struct aiod_req inner[4];
	int want = nested_inner + 1;

	(void)req;
	start_nop(nested_pool, &inner[nested_outer++], &nested_inner, 0, 0);
	/* Waiting from inside a callback runs other callbacks, safely. */
	while (nested_inner < want)
		assert_true(aiod_pool_wait(nested_pool, 2000) >= 0);
}

static void test_pool_wait_from_callback(void **state)
{
	struct aiod_req reqs[4];

	(void)state;
	nested_pool = new_pool(2, 0);
	for (int i = 0; i < 4; i++) {
		aiod_prep_nop(&reqs[i], 1000);
		reqs[i].cb = nested_cb;
		assert_int_equal(aiod_submit(nested_pool, &reqs[i]), 0);
	}
	kill(aiod_req_worker(&reqs[0]), SIGKILL);
	while (nested_outer < 4)
		assert_true(aiod_pool_wait(nested_pool, 2000) >= 0);
	aiod_pool_free(nested_pool);
}

/* A request that depends on the file position is not run twice. */
static void test_pool_position_dependent_not_rerun(void **state)
{
	struct aiod_pool *p = new_pool(1, 0);
	struct aiod_req req;
	struct aiod_pool_stats st;
	int count = 0, fd[2];

	(void)state;
	/* A pipe read blocks, and at the file position: never re-run. */
	assert_int_equal(pipe(fd), 0);
	aiod_prep_pread(&req, fd[0], NULL, 16, -1);
	req.cb = count_cb;
	req.data = &count;
	assert_int_equal(aiod_submit(p, &req), 0);
	usleep(100000);
	kill(aiod_req_worker(&req), SIGKILL);
	wait_count(p, &count, 1, 2000);
	assert_int_equal(req.result, -EIO);
	aiod_pool_stats(p, &st);
	assert_int_equal(st.retries, 0);
	close(fd[0]);
	close(fd[1]);
	aiod_pool_free(p);
}

static char scratch[PATH_MAX];

static int write_script(const char *body)
{
	int fd;

	fd = mkstemp(scratch_name(scratch, TMP, "fake-worker-XXXXXX"));
	if (fd < 0 || write(fd, body, strlen(body)) < 0 || fchmod(fd, 0755) < 0)
		return -1;
	return close(fd);
}

static void test_pool_new_reports_worker_failures(void **state)
{
	struct aiod_pool_opts opts = { .workers = 2 };
	const char *saved = getenv("AIOD_WORKER");
	char *keep = saved ? strdup(saved) : NULL;
	struct aiod_pool *p;

	(void)state;
	setenv("AIOD_WORKER", "/nonexistent/aiod", 1);
	assert_string_equal(aiod_worker_path(), "/nonexistent/aiod");
	assert_int_equal(aiod_pool_new(&p, &opts), -ENOENT);
	setenv("AIOD_WORKER", "", 1); /* empty: the path compiled in */
	assert_true(aiod_worker_path()[0] == '/');
	assert_string_not_equal(aiod_worker_path(), "/nonexistent/aiod");

	assert_int_equal(write_script("#!/bin/sh\nexit 3\n"), 0);
	setenv("AIOD_WORKER", scratch, 1);
	assert_int_equal(aiod_pool_new(&p, &opts), -EPROTO);
	unlink(scratch);

	assert_int_equal(write_script("#!/bin/sh\nexit 1\n"), 0);
	setenv("AIOD_WORKER", scratch, 1);
	assert_int_equal(aiod_pool_new(&p, &opts), -ECHILD);
	unlink(scratch);

	opts.arena_size = 4096;
	assert_int_equal(aiod_pool_new(&p, &opts), -EINVAL);
	if (keep)
		setenv("AIOD_WORKER", keep, 1);
	free(keep);
}

/* ---- kept copies (AIOD_F_KEEP) ---------------------------------------- */

/* Whether process pid has path open, under any number. */
static bool holds(pid_t pid, const char *path)
{
	char dir[64], got[PATH_MAX];
	struct dirent *de;
	bool found = false;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	if (!d)
		return false;   /* gone meanwhile */
	while (!found && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		fd_target(pid, atoi(de->d_name), got, sizeof(got));
		found = strcmp(got, path) == 0;
	}
	closedir(d);
	return found;
}

/* How many of our workers (not the closer: it shares our fds) have path open. */
static int workers_holding(const char *path)
{
	char list[512], file[64], comm[32], *tok, *save = NULL;
	int n = 0;
	FILE *f;

	snprintf(file, sizeof(file), "/proc/self/task/%d/children", (int)gettid());
	f = fopen(file, "r");
	assert_non_null(f);
	if (!fgets(list, sizeof(list), f))
		list[0] = 0;
	fclose(f);
	for (tok = strtok_r(list, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
		snprintf(file, sizeof(file), "/proc/%s/comm", tok);
		f = fopen(file, "r");
		if (!f)
			continue;       /* reaped meanwhile */
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = 0;
		fclose(f);
		n += strcmp(comm, "aiod\n") == 0 && holds(atoi(tok), path);
	}
	return n;
}

/* A new file on tmpfs holding text; its path in path (PATH_MAX bytes). */
static void shm_file(char *path, const char *text)
{
	int fd = mkostemp(scratch_name(path, SHM, "keep-XXXXXX"), O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* Run req to its end (flags added), returning its result. */
static int64_t run_req(struct aiod_pool *p, struct aiod_req *req, uint32_t flags)
{
	int count = 0;

	req->flags |= flags;
	req->cb = count_cb;
	req->data = &count;
	assert_int_equal(aiod_submit(p, req), 0);
	wait_count(p, &count, 1, 3000);
	return req->result;
}

/* A kept pread of fd's first bytes, which must read want. */
static void read_kept(struct aiod_pool *p, int fd, const char *want)
{
	char buf[16] = "";
	struct aiod_req req;

	aiod_prep_pread(&req, fd, buf, sizeof(buf) - 1, 0);
	assert_int_equal(run_req(p, &req, AIOD_F_KEEP), (int64_t)strlen(want));
	assert_string_equal(buf, want);
}

/* Submit a CLOSE of fd that counts its end in *count. */
static void submit_close(struct aiod_pool *p, struct aiod_req *req, int fd,
			 int *count)
{
	aiod_prep_close(req, fd);
	req->cb = count_cb;
	req->data = count;
	assert_int_equal(aiod_submit(p, req), 0);
}

/* CLOSE kept fd, the file at path: then no worker has it open. */
static void close_kept(struct aiod_pool *p, int fd, const char *path)
{
	struct aiod_req req;

	aiod_prep_close(&req, fd);
	assert_int_equal(run_req(p, &req, 0), 0);
	assert_int_equal(workers_holding(path), 0);
}

/*
 * One worker keeps one copy of a kept fd however many requests run on
 * it; a CLOSE closes that copy too; and a new file that takes the old
 * number is read as itself, not as the file the number named before.
 */
static void test_pool_keep_and_close(void **state)
{
	struct aiod_pool *p = new_pool(3, 0);
	char a[PATH_MAX], b[PATH_MAX];
	int fd;

	(void)state;
	shm_file(a, "first");
	shm_file(b, "second");
	fd = open(a, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	for (int i = 0; i < 20; i++)
		read_kept(p, fd, "first");
	assert_int_equal(workers_holding(a), 1);
	close_kept(p, fd, a);
	assert_int_equal(open(b, O_RDONLY | O_CLOEXEC), fd);
	read_kept(p, fd, "second");
	assert_int_equal(workers_holding(b), 1);
	close_kept(p, fd, b);
	aiod_pool_free(p);
	unlink(a);
	unlink(b);
}

/*
 * A CLOSE handed over in memory to a worker that dies before taking it
 * does not run again: handing it over closed the caller's copy, and the
 * number may name another file by then (here one the test opens), which
 * a second run would close.
 */
static void test_pool_keep_close_untaken(void **state)
{
	struct aiod_pool_opts opts = { .workers = 2, .poll_us = 10000 };
	struct aiod_pool *p = NULL;
	struct aiod_req req, rd;
	char a[PATH_MAX], b[PATH_MAX], buf[16];
	int count = 0, fd = -1, other;
	pid_t home = 0;

	(void)state;
	shm_file(a, "first");
	shm_file(b, "second");
	assert_int_equal(aiod_pool_new(&p, &opts), 0);
	for (int t = 0; t < TRIES && !home; t++) {
		uint64_t before;
		pid_t w;

		fd = open(a, O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		aiod_prep_pread(&rd, fd, buf, sizeof(buf), 0);
		rd.flags = AIOD_F_KEEP;
		rd.cb = count_cb;
		rd.data = &count;
		assert_int_equal(aiod_submit(p, &rd), 0);
		w = aiod_req_worker(&rd);   /* keeps the copy, then polls */
		wait_count(p, &count, count + 1, 3000);
		kill(w, SIGSTOP);
		before = aiod__pool_mem_bells(p);
		submit_close(p, &req, fd, &count);
		if (aiod_req_worker(&req) == w &&
		    aiod__pool_mem_bells(p) > before) {
			home = w;
		} else {
			kill(w, SIGCONT);
			wait_count(p, &count, count + 1, 3000);
		}
	}
	assert_true(home > 0);
	other = open(b, O_RDONLY | O_CLOEXEC);
	assert_int_equal(other, fd);    /* the number the CLOSE gave up */
	kill(home, SIGKILL);
	wait_count(p, &count, count + 1, 3000);
	assert_true(fcntl(other, F_GETFD) >= 0);
	read_kept(p, other, "second");
	aiod_pool_free(p);
	close(other);
	unlink(a);
	unlink(b);
}

/* An OPEN with AIOD_F_KEEP leaves its worker a copy of the fd it returns. */
static void test_pool_keep_open(void **state)
{
	struct aiod_pool *p = new_pool(2, 0);
	struct aiod_req req;
	char a[PATH_MAX];

	(void)state;
	shm_file(a, "opened");
	aiod_prep_open(&req, AT_FDCWD, a, O_RDONLY, 0, 0);
	assert_int_equal(run_req(p, &req, AIOD_F_KEEP), 0);
	assert_true(req.ret_fd >= 0);
	assert_int_equal(workers_holding(a), 1);
	read_kept(p, req.ret_fd, "opened");
	assert_int_equal(workers_holding(a), 1);
	close_kept(p, req.ret_fd, a);
	aiod_pool_free(p);
	unlink(a);
}

/*
 * The CLOSE of a kept fd waits for the worker keeping it, while other
 * requests run on the other workers.
 */
static void test_pool_keep_close_waits_for_home(void **state)
{
	struct aiod_pool *p = new_pool(2, 0);
	struct aiod_req nop, quick, cl;
	int cn = 0, cq = 0, cc = 0;
	pid_t home;
	char a[PATH_MAX];
	int fd;

	(void)state;
	shm_file(a, "home");
	fd = open(a, O_RDONLY | O_CLOEXEC);
	read_kept(p, fd, "home");
	/* The worker that went idle last takes the next request: the home. */
	home = start_nop(p, &nop, &cn, 300 * 1000, 0);
	assert_true(home > 0);
	assert_int_equal(workers_holding(a), 1);
	submit_close(p, &cl, fd, &cc);
	assert_int_equal(aiod_req_worker(&cl), 0); /* pinned, not running */
	start_nop(p, &quick, &cq, 0, 0);
	wait_count(p, &cq, 1, 2000);
	assert_int_equal(cc, 0);
	assert_int_equal(cn, 0);
	wait_count(p, &cc, 1, 3000);
	assert_int_equal(cn, 1);
	assert_int_equal(cl.result, 0);
	assert_int_equal(workers_holding(a), 0);
	aiod_pool_free(p);
	unlink(a);
}

/*
 * With polling, a request that comes while the worker that polls runs a
 * CLOSE with no flush (a file in /dev/shm) waits for that worker instead
 * of waking the idle one; it then runs there.  Without polling it goes to
 * the idle worker at once.
 */
static void test_pool_waits_for_quick_close(void **state)
{
	struct aiod_pool_opts opts = { .workers = 2 };
	struct aiod_pool *p = NULL;
	struct aiod_req nop, cl;
	int cn = 0, cc = 0;
	char a[PATH_MAX];

	(void)state;
	shm_file(a, "quick");
	for (int poll = 0; poll < 2; poll++) {
		pid_t home, to;
		int fd = open(a, O_RDONLY | O_CLOEXEC);

		assert_true(fd >= 0);
		opts.poll_us = poll ? 10000 : 0;
		assert_int_equal(aiod_pool_new(&p, &opts), 0);
		usleep(20000);  /* till no worker polls since it started */
		read_kept(p, fd, "quick");
		submit_close(p, &cl, fd, &cc);
		home = aiod_req_worker(&cl);
		assert_true(home > 0);
		to = start_nop(p, &nop, &cn, 0, 0);
		if (poll)
			assert_int_equal(to, 0);        /* pinned to home */
		else
			assert_true(to > 0 && to != home);
		wait_count(p, &cc, poll + 1, 3000);
		wait_count(p, &cn, poll + 1, 3000);
		assert_int_equal(cl.result, 0);
		assert_int_equal(nop.result, 0);
		assert_int_equal(workers_holding(a), 0);
		aiod_pool_free(p);
	}
	unlink(a);
}

/*
 * Whether workers_holding(path) comes to n within 2 s: a worker closes
 * the fds a request used after it replies.
 */
static bool come_to_holding(const char *path, int n)
{
	for (int64_t end = now_ms() + 2000; now_ms() < end; usleep(2000))
		if (workers_holding(path) == n)
			return true;
	return false;
}

/* Run req on the object fh names on fd's filesystem; its result. */
static int64_t run_by_handle(struct aiod_pool *p, struct aiod_req *req,
			     const struct aiod_fh *fh)
{
	req->fh_in[0] = fh;
	return run_req(p, req, 0);
}

/*
 * A directory named by handle on a shared fd as the one a name is in
 * stays open in its worker (aiod.h, "Objects named by handle"), the 16
 * least recently used of them; one named by handle for itself, or on an
 * fd that came with the request, does not; 16 others push it out.
 * Once removed, a name under it fails with ESTALE, as by handle, and the
 * worker lets the removed directory go.
 */
static void test_pool_keeps_parent_dirs(void **state)
{
	char dir[PATH_MAX], path[PATH_MAX], sub[PATH_MAX + 16],
	     gone[PATH_MAX + 32], name[16];
	struct aiod_pool *p = new_pool(1, 0);
	struct aiod_req req;
	struct aiod_fh fh, other;
	int dfd, own;

	(void)state;
	if (geteuid() != 0)
		skip(); /* open_by_handle_at needs CAP_DAC_READ_SEARCH */
	dfd = hello_dir(scratch_name(dir, TMP, "dirs-XXXXXX"), path);
	own = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(own >= 0);
	assert_int_equal(aiod_pool_share(p, dfd), 0);
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	snprintf(gone, sizeof(gone), "%s (deleted)", sub);
	assert_int_equal(mkdir(sub, 0700), 0);
	aiod_prep_lookup(&req, dfd, "sub");
	assert_int_equal(run_req(p, &req, 0), 0);
	fh = req.fh;

	aiod_prep_statx(&req, dfd, NULL, 0, STATX_INO);
	assert_int_equal(run_by_handle(p, &req, &fh), 0);
	assert_true(come_to_holding(sub, 0));
	aiod_prep_mkdir(&req, own, "a", 0700);
	assert_int_equal(run_by_handle(p, &req, &fh), 0);
	assert_true(come_to_holding(sub, 0));
	aiod_prep_rmdir(&req, own, "a");
	assert_int_equal(run_by_handle(p, &req, &fh), 0);
	assert_true(come_to_holding(sub, 0));
	aiod_prep_mkdir(&req, dfd, "a", 0700);
	assert_int_equal(run_by_handle(p, &req, &fh), 0);
	assert_int_equal(workers_holding(sub), 1);
	aiod_prep_rmdir(&req, dfd, "a");
	assert_int_equal(run_by_handle(p, &req, &fh), 0);
	assert_int_equal(workers_holding(sub), 1);

	for (int i = 0; i < 16; i++) {
		snprintf(name, sizeof(name), "d%d", i);
		assert_int_equal(mkdirat(dfd, name, 0700), 0);
		aiod_prep_lookup(&req, dfd, name);
		assert_int_equal(run_req(p, &req, 0), 0);
		other = req.fh;
		aiod_prep_lookup(&req, dfd, "missing");
		assert_int_equal(run_by_handle(p, &req, &other), -ENOENT);
	}
	assert_true(come_to_holding(sub, 0));
	aiod_prep_lookup(&req, dfd, "missing");
	assert_int_equal(run_by_handle(p, &req, &fh), -ENOENT);
	assert_int_equal(workers_holding(sub), 1);

	assert_int_equal(rmdir(sub), 0);
	aiod_prep_mkdir(&req, dfd, "b", 0700);
	assert_int_equal(run_by_handle(p, &req, &fh), -ESTALE);
	assert_true(come_to_holding(gone, 0));
	aiod_prep_mkdir(&req, dfd, "b", 0700);
	assert_int_equal(run_by_handle(p, &req, &fh), -ESTALE);

	aiod_pool_free(p);
	for (int i = 0; i < 16; i++) {
		snprintf(name, sizeof(name), "d%d", i);
		unlinkat(dfd, name, AT_REMOVEDIR);
	}
	unlink(path);
	close(own);
	close(dfd);
	rmdir(dir);
}

/*
 * A worker drops its kept copies before a lock wait, so a CLOSE of one
 * of them never waits behind it (the unlock it waits for might wait for
 * that CLOSE); the file is read as well as before after.
 */
static void test_pool_keep_dropped_before_lock_wait(void **state)
{
	struct aiod_pool *p = new_pool(2, 0);
	struct aiod_req lk;
	char a[PATH_MAX], l[PATH_MAX];
	int fd, lfd, mine, cl = 0;

	(void)state;
	shm_file(a, "kept");
	shm_file(l, "");
	fd = open(a, O_RDONLY | O_CLOEXEC);
	lfd = open(l, O_RDONLY | O_CLOEXEC);
	mine = open(l, O_RDONLY | O_CLOEXEC);
	assert_int_equal(flock(mine, LOCK_EX), 0);
	read_kept(p, fd, "kept");
	assert_int_equal(workers_holding(a), 1);
	aiod_prep_flock(&lk, lfd, LOCK_EX);
	lk.cb = count_cb;
	lk.data = &cl;
	assert_int_equal(aiod_submit(p, &lk), 0);
	for (int64_t end = now_ms() + 2000; workers_holding(a); usleep(5000)) {
		assert_true(now_ms() < end);
		aiod_pool_wait(p, 0);
	}
	assert_int_equal(cl, 0); /* still waiting for the lock */
	read_kept(p, fd, "kept");
	close_kept(p, fd, a);
	assert_int_equal(flock(mine, LOCK_UN), 0);
	wait_count(p, &cl, 1, 2000);
	assert_int_equal(lk.result, 0);
	aiod_pool_free(p);
	close(lfd);
	close(mine);
	unlink(a);
	unlink(l);
}

/* When the worker keeping a copy dies, the fd is passed anew. */
static void test_pool_keep_survives_worker_death(void **state)
{
	struct aiod_pool *p = new_pool(1, 0);
	struct aiod_req nop;
	int cn = 0;
	pid_t pid;
	char a[PATH_MAX];
	int fd;

	(void)state;
	shm_file(a, "again");
	fd = open(a, O_RDONLY | O_CLOEXEC);
	read_kept(p, fd, "again");
	pid = start_nop(p, &nop, &cn, 10 * 1000 * 1000, AIOD_F_NORETRY);
	assert_true(pid > 0);
	assert_int_equal(kill(pid, SIGKILL), 0);
	wait_count(p, &cn, 1, 3000);
	assert_int_equal(nop.result, -EIO);
	read_kept(p, fd, "again");
	assert_int_equal(workers_holding(a), 1);
	close_kept(p, fd, a);
	aiod_pool_free(p);
	unlink(a);
}

/*
 * A worker resized away while busy runs the CLOSEs waiting for it
 * before it goes, not after a request of another worker.
 */
static void test_pool_keep_retiring_worker_closes(void **state)
{
	struct aiod_pool *p = new_pool(1, 0);
	struct aiod_req a, b, cl;
	int ca = 0, cb = 0, cc = 0;
	pid_t home;
	char path[PATH_MAX];
	int fd;

	(void)state;
	shm_file(path, "retire");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_int_equal(aiod_pool_resize(p, 2), 0);
	/* The newest worker is on top of the idle stack: the second slot's. */
	read_kept(p, fd, "retire");
	home = start_nop(p, &a, &ca, 200 * 1000, 0);
	assert_true(holds(home, path));
	assert_true(start_nop(p, &b, &cb, 3000 * 1000, 0) > 0);
	submit_close(p, &cl, fd, &cc);
	assert_int_equal(aiod_pool_resize(p, 1), 0); /* the second slot goes */
	wait_count(p, &cc, 1, 2000);
	assert_int_equal(cb, 0);
	assert_int_equal(cl.result, 0);
	assert_int_equal(workers_holding(path), 0);
	for (int64_t end = now_ms() + 2000; !process_gone(home); usleep(5000)) {
		assert_true(now_ms() < end);
		aiod_pool_wait(p, 0);
	}
	aiod_pool_free(p);
	unlink(path);
}

/*
 * aiod_pool_awake: while on, a request that returns no fd ends without
 * making the pool's fd readable (aiod_pool_reap() takes it) and one that
 * returns an fd still does; turning it off takes what finished since,
 * and from then on a finished request makes the fd readable again.
 */
static void test_pool_awake(void **state)
{
	struct aiod_pool *p = new_pool(1, 0);
	struct pollfd pfd = { .fd = aiod_pool_fd(p), .events = POLLIN };
	struct aiod_req nop, op;
	int count = 0;

	(void)state;
	assert_int_equal(aiod_pool_awake(p, true), 0);
	start_nop(p, &nop, &count, 0, 0);
	for (int64_t end = now_ms() + 2000; count < 1; usleep(1000)) {
		assert_true(now_ms() < end);
		assert_int_equal(poll(&pfd, 1, 0), 0);
		aiod_pool_reap(p);
	}
	assert_int_equal(nop.result, 0);

	aiod_prep_open(&op, AT_FDCWD, "/dev/null", O_RDONLY, 0, 0);
	op.cb = count_cb;
	op.data = &count;
	assert_int_equal(aiod_submit(p, &op), 0);
	assert_int_equal(poll(&pfd, 1, 2000), 1);
	wait_count(p, &count, 2, 2000);
	assert_true(op.ret_fd >= 0);
	close(op.ret_fd);

	aiod_pool_awake(p, true);       /* aiod_pool_wait() turned it off */
	start_nop(p, &nop, &count, 0, 0);
	usleep(300 * 1000);             /* done, unseen */
	assert_int_equal(aiod_pool_awake(p, false), 1);
	assert_int_equal(count, 3);

	start_nop(p, &nop, &count, 50 * 1000, 0);
	assert_int_equal(poll(&pfd, 1, 2000), 1);
	assert_true(aiod_pool_process(p) >= 0);
	assert_int_equal(count, 4);
	aiod_pool_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pool_runs_nop_and_counts),
		cmocka_unit_test(test_pool_burst_of_100000),
		cmocka_unit_test(test_pool_waits_for_arena_room),
		cmocka_unit_test(test_pool_library_buffer_valid_in_callback),
		cmocka_unit_test(test_pool_worker_killed_mid_request),
		cmocka_unit_test(test_pool_idempotent_request_reruns),
		cmocka_unit_test(test_pool_rerun_twice_at_most),
		cmocka_unit_test(test_pool_which_requests_rerun),
		cmocka_unit_test(test_pool_dead_idle_worker_no_sigpipe),
		cmocka_unit_test(test_pool_cancel_queued_and_running),
		cmocka_unit_test(test_pool_worker_isolation),
		cmocka_unit_test(test_pool_workers_run_batch),
		cmocka_unit_test(test_pool_free_cancels_and_ends_workers),
		cmocka_unit_test(test_pool_workers_die_with_client),
		cmocka_unit_test(test_pool_fd_polls_readable),
		cmocka_unit_test(test_pool_submit_checks_arguments),
		cmocka_unit_test(test_pool_buf_alloc_is_page_aligned),
		cmocka_unit_test(test_pool_new_reports_worker_failures),
		cmocka_unit_test(test_pool_bad_fd_fails_only_its_request),
		cmocka_unit_test(test_pool_shared_fds),
		cmocka_unit_test(test_pool_poll_gives_next_to_poller),
		cmocka_unit_test(test_pool_poll_memory_bell),
		cmocka_unit_test(test_pool_no_poll_after_bulk),
		cmocka_unit_test(test_pool_hold_polls),
		cmocka_unit_test(test_pool_memory_bell_untaken),
		cmocka_unit_test(test_pool_resize),
		cmocka_unit_test(test_pool_close_in_closer),
		cmocka_unit_test(test_pool_close_unlinked_in_closer),
		cmocka_unit_test(test_pool_close_fd),
		cmocka_unit_test(test_pool_close_many),
		cmocka_unit_test(test_closer_knows_flushless),
		cmocka_unit_test(test_pool_flushless),
		cmocka_unit_test(test_pool_worker_replies),
		cmocka_unit_test(test_pool_error_replies),
		cmocka_unit_test(test_pool_buf_free_lets_waiting_request_go),
		cmocka_unit_test(test_pool_cancel_on_fresh_worker),
		cmocka_unit_test(test_pool_wait_from_callback),
		cmocka_unit_test(test_pool_position_dependent_not_rerun),
		cmocka_unit_test(test_pool_keep_and_close),
		cmocka_unit_test(test_pool_keep_open),
		cmocka_unit_test(test_pool_keep_close_untaken),
		cmocka_unit_test(test_pool_keep_close_waits_for_home),
		cmocka_unit_test(test_pool_waits_for_quick_close),
		cmocka_unit_test(test_pool_keeps_parent_dirs),
		cmocka_unit_test(test_pool_keep_dropped_before_lock_wait),
		cmocka_unit_test(test_pool_keep_survives_worker_death),
		cmocka_unit_test(test_pool_keep_retiring_worker_closes),
		cmocka_unit_test(test_pool_awake),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
