/* SPDX-License-Identifier: MIT */
/*
 * bench_pool.c - how fast libaiod runs a syscall for an event loop,
 * next to doing it in-process and to libuv's threadpool.
 *
 * DESIGN
 *
 * Three operations: nop (no syscall at all), stat (statx of a small file
 * by name) and pread (4 KiB at a random 4 KiB-aligned offset of a 64 MiB
 * file, read whole just before each pread cell so that it is warm).  Each
 * runs at 1 and at 64 requests in flight, through three peers:
 *
 *   sync   the call itself, in this process.  "64 in flight" means 64
 *          requests wait in a FIFO and are served one after the other,
 *          as a loop that blocks would serve them.
 *   libuv  libuv's threadpool at its default size: uv_queue_work with an
 *          empty work function for nop, uv_fs_stat and uv_fs_read.
 *   aiod   a libaiod pool at its default worker count (or -w): NOP,
 *          STATX, and PREAD into a buffer from aiod_buf_alloc(), driven
 *          by aiod_pool_wait() (or, with -e, by an epoll loop of our own
 *          on aiod_pool_fd() that calls aiod_pool_process(); with -a,
 *          that loop also tells the pool when it is awake, so workers
 *          finish without a completion datagram: aiod_pool_awake()).
 *
 * For N in flight, N requests are submitted at once, and each completion
 * submits the next at once, until the cell's time is up; then the ones
 * outstanding are drained.  A request's latency is its completion time
 * minus its submit time (CLOCK_MONOTONIC), taken in the loop thread;
 * throughput is completions over the time from the first submit to the
 * last completion.  Latencies go into a log-linear histogram (64 steps
 * per power of two, so percentiles are within 1.6%).
 *
 * The machine has few cores and other work may run on it, so the peers
 * take turns: within a repetition each cell runs for every peer back to
 * back, in an order that rotates with each repetition.  The table shows
 * the median over repetitions of each figure, and the ratios are medians
 * of the ratios taken within each repetition, so slow drift in the
 * machine's load cancels out.  Absolute figures from different runs are
 * not comparable; ratios from one run are.
 *
 * The figures are for reading, not for passing or failing: the program
 * exits 0 whenever it could measure, 1 on an error, 77 (skip) when the
 * aiod worker cannot be started.  Run it from a build tree with
 * AIOD_WORKER=<build>/aiod/aiod, or through `meson test --benchmark`.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "aiod.h"

#define MAX_DEPTH 64
#define FILE_SIZE ((size_t)64 << 20)
#define BLOCK 4096u
#define STAT_MASK (STATX_BASIC_STATS | STATX_BTIME)
#define MAX_REPS 99

enum op { OP_NOP, OP_STAT, OP_PREAD, NOPS };
enum peer { PEER_SYNC, PEER_LIBUV, PEER_AIOD, NPEERS };

static const char *const op_names[NOPS] = { "nop", "stat", "pread" };
static const char *const peer_names[NPEERS] = { "sync", "libuv", "aiod" };
static const unsigned depths[] = { 1, MAX_DEPTH };
#define NDEPTHS (sizeof(depths) / sizeof(depths[0]))

/* ---- latency histogram ---------------------------------------------- */

/*
 * Values below 64 ns have a bucket each; above, each power of two is cut
 * into 64 equal steps.  Values past 2^47 ns (39 hours) share the top one.
 */
#define HIST_SUB 64
#define HIST_MAX_EXP 47
#define HIST_BUCKETS ((HIST_MAX_EXP - 5 + 1) * HIST_SUB)

struct hist {
	uint64_t count;
	uint64_t b[HIST_BUCKETS];
};

static unsigned hist_index(uint64_t v)
{
	unsigned e;

	if (v < HIST_SUB)
		return (unsigned)v;
	e = 63 - (unsigned)__builtin_clzll(v);
	if (e > HIST_MAX_EXP)
		return HIST_BUCKETS - 1;
	return (e - 5) * HIST_SUB + (unsigned)((v >> (e - 6)) & (HIST_SUB - 1));
}

/* The middle of bucket i, in ns. */
static double hist_value(unsigned i)
{
	unsigned e;
	double step;

	if (i < HIST_SUB)
		return i;
	e = i / HIST_SUB + 5;
	step = (double)((uint64_t)1 << (e - 6));
	return ((double)((uint64_t)1 << e)) + (i % HIST_SUB) * step + step / 2;
}

static void hist_add(struct hist *h, uint64_t v)
{
	h->b[hist_index(v)]++;
	h->count++;
}

/* The q-quantile (0 < q < 1) in ns; 0 for an empty histogram. */
static double hist_quantile(const struct hist *h, double q)
{
	uint64_t rank = (uint64_t)(q * (double)h->count), seen = 0;

	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen > rank)
			return hist_value(i);
	}
	return 0;
}

/* ---- what every peer shares ------------------------------------------ */

struct bench;

/* One request in flight. */
struct slot {
	struct run *r;
	uint64_t t_submit;
	void *buf;              /* pread: BLOCK bytes */
	union {
		uv_work_t work;
		uv_fs_t fs;
	} uv;
	uv_buf_t ubuf;
	struct aiod_req areq;
};

/* One cell being measured: an op at a depth through one peer. */
struct run {
	struct bench *b;
	enum op op;
	unsigned depth;
	uint64_t t_start, deadline, t_last;
	uint64_t done;
	unsigned outstanding;
	int64_t err;            /* the first failure, -errno */
	uint64_t rng;
	struct hist *h;
	struct slot slots[MAX_DEPTH];
};

struct result {
	double ops;             /* per second */
	double p50, p99;        /* µs */
};

struct bench {
	/* Options. */
	double secs;            /* per cell */
	unsigned reps;
	unsigned workers;       /* 0: the pool's default */
	unsigned poll_us;       /* aiod_pool_opts.poll_us */
	bool epoll;             /* drive aiod from our own epoll loop */
	bool awake;             /* ... which uses aiod_pool_awake() */
	unsigned op_set;        /* bit masks of the cells to run */
	unsigned depth_set;
	unsigned peer_set;
	const char *parent;     /* where the scratch directory goes */

	char dir[4096];
	char stat_path[4200];
	char data_path[4200];
	int data_fd;
	char *sync_buf;

	uv_loop_t loop;
	unsigned uv_threads;

	struct aiod_pool *pool;
	unsigned aiod_workers;
	void *aiod_bufs[MAX_DEPTH];
	int epfd;

	struct hist hist;
	struct run run;
	struct result res[MAX_REPS][NOPS][NDEPTHS][NPEERS];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64: the same offsets for every peer, and cheap. */
static off_t next_offset(struct run *r)
{
	uint64_t x = r->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	r->rng = x;
	return (off_t)((x % (FILE_SIZE / BLOCK)) * BLOCK);
}

/* What a request returned, checked; res is >= 0 or -errno. */
static void check(struct run *r, int64_t res)
{
	if (res < 0 && !r->err)
		r->err = res;
	else if (r->op == OP_PREAD && res != BLOCK && !r->err)
		r->err = -EIO;  /* a short read of a 64 MiB file: wrong */
}

/*
 * Account for the completion of s with result res.  Returns whether
 * another request should take its place.
 */
static bool complete(struct run *r, struct slot *s, int64_t res)
{
	uint64_t t = now_ns();

	check(r, res);
	hist_add(r->h, t - s->t_submit);
	r->done++;
	r->t_last = t;
	r->outstanding--;
	return t < r->deadline && !r->err;
}

/* ---- sync: the call itself ------------------------------------------ */

/* Out of line, so that "nop" costs a call and is not optimised away. */
static __attribute__((noinline)) int64_t sync_nop(void)
{
	__asm__ volatile("" ::: "memory");
	return 0;
}

static int64_t sync_call(struct run *r)
{
	struct bench *b = r->b;
	struct statx stx;
	ssize_t n;

	switch (r->op) {
	case OP_NOP:
		return sync_nop();
	case OP_STAT:
		if (statx(AT_FDCWD, b->stat_path, 0, STAT_MASK, &stx) < 0)
			return -errno;
		return 0;
	case OP_PREAD:
		n = pread(b->data_fd, b->sync_buf, BLOCK, next_offset(r));
		return n < 0 ? -errno : n;
	default:
		return -EINVAL;
	}
}

/*
 * The depth's requests wait in a ring of submit times, in submit order;
 * the one at the head is served, and the next joins at the tail.
 */
static void sync_run(struct run *r)
{
	uint64_t ring[MAX_DEPTH];
	unsigned head = 0;
	struct slot *s = &r->slots[0];

	for (unsigned i = 0; i < r->depth; i++)
		ring[i] = r->t_start;
	r->outstanding = r->depth;
	while (r->outstanding) {
		s->t_submit = ring[head];
		head = (head + 1) % r->depth;
		if (complete(r, s, sync_call(r))) {
			ring[(head + r->outstanding) % r->depth] = r->t_last;
			r->outstanding++;
		}
	}
}

/* ---- libuv: its threadpool ------------------------------------------ */

static void uv_nop_work(uv_work_t *w)
{
	(void)w;
}

static int uv_submit(struct run *r, struct slot *s);

static void uv_after_work(uv_work_t *w, int status)
{
	struct slot *s = w->data;

	if (complete(s->r, s, status))
		uv_submit(s->r, s);
}

static void uv_after_fs(uv_fs_t *req)
{
	struct slot *s = req->data;
	int64_t res = req->result;

	uv_fs_req_cleanup(req);
	if (complete(s->r, s, res))
		uv_submit(s->r, s);
}

static int uv_submit(struct run *r, struct slot *s)
{
	struct bench *b = r->b;
	int err;

	s->t_submit = now_ns();
	switch (r->op) {
	case OP_NOP:
		s->uv.work.data = s;
		err = uv_queue_work(&b->loop, &s->uv.work, uv_nop_work,
				    uv_after_work);
		break;
	case OP_STAT:
		s->uv.fs.data = s;
		err = uv_fs_stat(&b->loop, &s->uv.fs, b->stat_path,
				 uv_after_fs);
		break;
	case OP_PREAD:
		s->uv.fs.data = s;
		s->ubuf = uv_buf_init(s->buf, BLOCK);
		err = uv_fs_read(&b->loop, &s->uv.fs, b->data_fd, &s->ubuf, 1,
				 next_offset(r), uv_after_fs);
		break;
	default:
		err = -EINVAL;
	}
	if (err < 0)
		check(r, err);
	else
		r->outstanding++;
	return err;
}

static void uv_run_cell(struct run *r)
{
	for (unsigned i = 0; i < r->depth; i++)
		if (uv_submit(r, &r->slots[i]) < 0)
			break;
	uv_run(&r->b->loop, UV_RUN_DEFAULT);
}

/* ---- aiod: a libaiod pool ------------------------------------------- */

static int aiod_submit_slot(struct run *r, struct slot *s);

static void aiod_done(struct aiod_req *req)
{
	struct slot *s = req->data;

	if (complete(s->r, s, req->result))
		aiod_submit_slot(s->r, s);
}

static int aiod_submit_slot(struct run *r, struct slot *s)
{
	struct bench *b = r->b;
	struct aiod_req *req = &s->areq;
	int err;

	switch (r->op) {
	case OP_NOP:
		aiod_prep_nop(req, 0);
		break;
	case OP_STAT:
		aiod_prep_statx(req, AT_FDCWD, b->stat_path, 0, STAT_MASK);
		break;
	case OP_PREAD:
		aiod_prep_pread(req, b->data_fd, s->buf, BLOCK, next_offset(r));
		break;
	default:
		return -EINVAL;
	}
	req->cb = aiod_done;
	req->data = s;
	s->t_submit = now_ns();
	err = aiod_submit(b->pool, req);
	if (err < 0)
		check(r, err);
	else
		r->outstanding++;
	return err;
}

static void aiod_run_cell(struct run *r)
{
	struct bench *b = r->b;

	for (unsigned i = 0; i < r->depth; i++)
		if (aiod_submit_slot(r, &r->slots[i]) < 0)
			break;
	while (r->outstanding) {
		struct epoll_event ev;
		int n;

		if (b->awake) {
			/* Going to sleep: what ended unseen runs now instead. */
			n = aiod_pool_awake(b->pool, false);
			if (n == 0 && epoll_wait(b->epfd, &ev, 1, -1) < 0 &&
			    errno != EINTR) {
				check(r, -errno);
				return;
			}
			aiod_pool_awake(b->pool, true);
			if (n == 0)
				n = aiod_pool_process(b->pool);
		} else if (b->epoll) {
			n = epoll_wait(b->epfd, &ev, 1, -1);
			if (n < 0 && errno != EINTR) {
				check(r, -errno);
				return;
			}
			n = aiod_pool_process(b->pool);
		} else {
			n = aiod_pool_wait(b->pool, -1);
		}
		if (n < 0) {
			check(r, n);
			return;
		}
	}
}

/* ---- running the cells ---------------------------------------------- */

/* Read the whole data file, so that the pread cells find it cached. */
static int warm_file(struct bench *b)
{
	static char chunk[1 << 20];

	for (size_t off = 0; off < FILE_SIZE; off += sizeof(chunk)) {
		ssize_t n = pread(b->data_fd, chunk, sizeof(chunk), (off_t)off);

		if (n != (ssize_t)sizeof(chunk))
			return n < 0 ? -errno : -EIO;
	}
	return 0;
}

/* Run op at depth through peer for secs into b->hist; -errno on failure. */
static int64_t run_once(struct bench *b, enum peer peer, enum op op,
			unsigned depth, double secs, struct result *res)
{
	struct run *r = &b->run;

	memset(&b->hist, 0, sizeof(b->hist));
	r->b = b;
	r->op = op;
	r->depth = depth;
	r->done = 0;
	r->outstanding = 0;
	r->err = 0;
	r->h = &b->hist;
	r->rng = 0x9e3779b97f4a7c15u;
	for (unsigned i = 0; i < depth; i++) {
		r->slots[i].r = r;
		if (peer == PEER_AIOD)
			r->slots[i].buf = b->aiod_bufs[i];
		else
			r->slots[i].buf = b->sync_buf + (size_t)i * BLOCK;
	}
	r->t_start = r->t_last = now_ns();
	r->deadline = r->t_start + (uint64_t)(secs * 1e9);
	switch (peer) {
	case PEER_SYNC:
		sync_run(r);
		break;
	case PEER_LIBUV:
		uv_run_cell(r);
		break;
	case PEER_AIOD:
		aiod_run_cell(r);
		break;
	default:
		return -EINVAL;
	}
	if (r->err)
		return r->err;
	if (res) {
		double elapsed = (double)(r->t_last - r->t_start) / 1e9;

		res->ops = elapsed > 0 ? (double)r->done / elapsed : 0;
		res->p50 = hist_quantile(&b->hist, 0.50) / 1000;
		res->p99 = hist_quantile(&b->hist, 0.99) / 1000;
	}
	return 0;
}

/* A short unmeasured run first, so every peer starts warm. */
static int64_t run_cell(struct bench *b, enum peer peer, enum op op,
			unsigned depth, struct result *res)
{
	int64_t err;

	if (op == OP_PREAD) {
		err = warm_file(b);
		if (err)
			return err;
	}
	err = run_once(b, peer, op, depth, b->secs / 10, NULL);
	if (err)
		return err;
	return run_once(b, peer, op, depth, b->secs, res);
}

/* ---- setting up and tearing down ------------------------------------ */

/* The scratch names, for the signal handler. */
static const char *scratch_file, *scratch_dir;

/*
 * A benchmark stopped by ^C or by meson's timeout should leave no
 * scratch files behind.  The data file is unlinked as soon as it is
 * open; the small one must keep its name, so it goes from here.
 */
static void on_fatal_signal(int sig)
{
	if (scratch_file)
		unlink(scratch_file);
	if (scratch_dir)
		rmdir(scratch_dir);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void catch_fatal_signals(void)
{
	struct sigaction sa = { .sa_handler = on_fatal_signal };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

static int make_files(struct bench *b)
{
	const char *parent = b->parent;
	static char chunk[1 << 20];
	int fd;

	if (!parent)
		parent = getenv("TMPDIR");
	if (!parent || !*parent)
		parent = "/tmp";
	snprintf(b->dir, sizeof(b->dir), "%s/aiod-bench.XXXXXX", parent);
	if (!mkdtemp(b->dir)) {
		b->dir[0] = 0;
		return -errno;
	}
	snprintf(b->stat_path, sizeof(b->stat_path), "%s/small", b->dir);
	snprintf(b->data_path, sizeof(b->data_path), "%s/data", b->dir);
	scratch_dir = b->dir;
	scratch_file = b->stat_path;

	fd = open(b->stat_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, "aiod\n", 5) != 5) {
		int err = -errno;

		if (fd >= 0)
			close(fd);
		return err ? err : -EIO;
	}
	close(fd);

	b->data_fd = open(b->data_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
			  0644);
	if (b->data_fd < 0)
		return -errno;
	unlink(b->data_path);
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (char)(i * 7 + 1);
	for (size_t off = 0; off < FILE_SIZE; off += sizeof(chunk))
		if (pwrite(b->data_fd, chunk, sizeof(chunk), (off_t)off) !=
		    (ssize_t)sizeof(chunk))
			return -errno ? -errno : -EIO;
	return 0;
}

static void remove_files(struct bench *b)
{
	if (b->data_fd >= 0)
		close(b->data_fd);
	if (!b->dir[0])
		return;
	unlink(b->stat_path);
	rmdir(b->dir);
}

static int setup_aiod(struct bench *b)
{
	struct aiod_pool_opts opts = { .workers = b->workers,
				       .poll_us = b->poll_us };
	struct aiod_pool_stats st;
	struct epoll_event ev = { .events = EPOLLIN };
	int err;

	err = aiod_pool_new(&b->pool, &opts);
	if (err)
		return err;
	aiod_pool_stats(b->pool, &st);
	b->aiod_workers = st.workers;
	for (unsigned i = 0; i < MAX_DEPTH; i++) {
		b->aiod_bufs[i] = aiod_buf_alloc(b->pool, BLOCK);
		if (!b->aiod_bufs[i])
			return -ENOMEM;
	}
	b->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (b->epfd < 0 ||
	    epoll_ctl(b->epfd, EPOLL_CTL_ADD, aiod_pool_fd(b->pool), &ev) < 0)
		return -errno;
	return 0;
}

static void teardown_aiod(struct bench *b)
{
	if (b->epfd >= 0)
		close(b->epfd);
	if (!b->pool)
		return;
	for (unsigned i = 0; i < MAX_DEPTH; i++)
		aiod_buf_free(b->pool, b->aiod_bufs[i]);
	aiod_pool_free(b->pool);
}

/* ---- the report ----------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Which figure of a result a statistic is about. */
enum field { F_OPS, F_P50, F_P99 };

static double field_of(const struct result *r, enum field f)
{
	return f == F_OPS ? r->ops : f == F_P50 ? r->p50 : r->p99;
}

static double median_of(const struct bench *b, unsigned op, unsigned d,
			unsigned peer, enum field f)
{
	double v[MAX_REPS];

	for (unsigned i = 0; i < b->reps; i++)
		v[i] = field_of(&b->res[i][op][d][peer], f);
	return median(v, b->reps);
}

/* The median over repetitions of peer's figure over libuv's. */
static double ratio_of(const struct bench *b, unsigned op, unsigned d,
		       unsigned peer, enum field f)
{
	double v[MAX_REPS];

	for (unsigned i = 0; i < b->reps; i++) {
		double base = field_of(&b->res[i][op][d][PEER_LIBUV], f);
		double x = field_of(&b->res[i][op][d][peer], f);

		v[i] = base > 0 ? x / base : 0;
	}
	return median(v, b->reps);
}

/* The spread of ops/s over repetitions, (max - min) / median, in %. */
static double spread_of(const struct bench *b, unsigned op, unsigned d,
			unsigned peer)
{
	double lo = 0, hi = 0, med = median_of(b, op, d, peer, F_OPS);

	for (unsigned i = 0; i < b->reps; i++) {
		double x = b->res[i][op][d][peer].ops;

		if (i == 0 || x < lo)
			lo = x;
		if (i == 0 || x > hi)
			hi = x;
	}
	return med > 0 ? 100 * (hi - lo) / med : 0;
}

static void print_loadavg(const char *when)
{
	char line[128] = "?";
	FILE *f = fopen("/proc/loadavg", "re");

	if (f) {
		if (fgets(line, sizeof(line), f))
			line[strcspn(line, "\n")] = 0;
		fclose(f);
	}
	printf("load average %s: %s\n", when, line);
}

static void print_header(const struct bench *b, int argc, char **argv)
{
	struct utsname u;
	const char *tp = getenv("UV_THREADPOOL_SIZE");
	const char *worker = getenv("AIOD_WORKER");

	uname(&u);
	printf("# libaiod pool benchmark\n\ncommand:");
	for (int i = 0; i < argc; i++)
		printf(" %s", argv[i]);
	printf("\n");
	printf("machine: %ld cpus online, %s %s %s\n",
	       sysconf(_SC_NPROCESSORS_ONLN), u.sysname, u.release, u.machine);
	printf("sync:  the call in this process\n");
	printf("libuv: %s, threadpool of %u threads (UV_THREADPOOL_SIZE %s%s)\n",
	       uv_version_string(), b->uv_threads, tp ? "=" : "unset",
	       tp ? tp : "");
	printf("aiod:  %u workers (%s), polling %u us, from %s, driven by %s\n",
	       b->aiod_workers, b->workers ? "-w" : "default", b->poll_us,
	       worker && *worker ? worker : "the installed path",
	       b->awake   ? "epoll on aiod_pool_fd() + aiod_pool_process(), "
			    "awake between waits"
	       : b->epoll ? "epoll on aiod_pool_fd() + aiod_pool_process()"
			  : "aiod_pool_wait()");
	printf("cells: %.2f s each after a %.2f s warm-up, %u repetitions, "
	       "peers alternated\n", b->secs, b->secs / 10, b->reps);
	printf("files: in %s (stat: a 5-byte file; pread: 4 KiB at random "
	       "aligned offsets of an unlinked 64 MiB file, read whole before "
	       "each cell)\n", b->dir);
	print_loadavg("at start");
	fflush(stdout);
}

static bool chosen(const struct bench *b, unsigned op, unsigned d,
		   unsigned peer)
{
	return (b->op_set & 1u << op) && (b->depth_set & 1u << d) &&
	       (b->peer_set & 1u << peer);
}

static void print_row(const struct bench *b, unsigned op, unsigned d,
		      unsigned p)
{
	printf("| %s | %u | %s | %.0f | %.2f | %.2f | ", op_names[op],
	       depths[d], peer_names[p], median_of(b, op, d, p, F_OPS),
	       median_of(b, op, d, p, F_P50), median_of(b, op, d, p, F_P99));
	if (chosen(b, op, d, PEER_LIBUV))
		printf("%.2f | %.2f | ", ratio_of(b, op, d, p, F_OPS),
		       ratio_of(b, op, d, p, F_P50));
	else
		printf("- | - | ");
	printf("%.0f%% |\n", spread_of(b, op, d, p));
}

static void print_table(const struct bench *b)
{
	printf("\nMedians of %u repetitions.  \"vs libuv\": the median of the "
	       "per-repetition ratios to libuv (ops/s: higher is better; p50: "
	       "lower is better).  spread: (max - min) / median of ops/s.\n\n",
	       b->reps);
	printf("| op | depth | peer | ops/s | p50 µs | p99 µs | ops/s vs libuv "
	       "| p50 vs libuv | spread |\n");
	printf("|---|---:|---|---:|---:|---:|---:|---:|---:|\n");
	for (unsigned op = 0; op < NOPS; op++)
		for (unsigned d = 0; d < NDEPTHS; d++)
			for (unsigned p = 0; p < NPEERS; p++)
				if (chosen(b, op, d, p))
					print_row(b, op, d, p);
}

/* The goals, with the ratios they are about. */
static void print_goals(const struct bench *b)
{
	printf("\nGoals (aiod vs libuv):\n");
	for (unsigned op = 0; op < NOPS; op++) {
		double r;

		if (!(b->op_set & 1u << op) ||
		    !(b->peer_set & 1u << PEER_AIOD) ||
		    !(b->peer_set & 1u << PEER_LIBUV))
			continue;
		printf("- %-5s", op_names[op]);
		if (b->depth_set & 1u << (NDEPTHS - 1)) {
			r = ratio_of(b, op, NDEPTHS - 1, PEER_AIOD, F_OPS);
			printf(" ops/s at %u in flight x%.2f (goal >= 1.00%s): %s;",
			       MAX_DEPTH, r,
			       op == OP_PREAD ? ", not set for pread" : "",
			       r >= 1.0 ? "met" : "NOT met");
		}
		if (b->depth_set & 1u) {
			r = ratio_of(b, op, 0, PEER_AIOD, F_P50);
			printf(" p50 at 1 in flight x%.2f (goal <= 1.50): %s",
			       r, r <= 1.5 ? "met" : "NOT met");
		}
		printf("\n");
	}
}

/* ---- main ----------------------------------------------------------- */

/*
 * Every chosen cell, b->reps times, the peers of a cell back to back in
 * an order that rotates with each repetition.  Returns 0 or -errno.
 */
static int64_t run_all(struct bench *b)
{
	for (unsigned rep = 0; rep < b->reps; rep++) {
		for (unsigned op = 0; op < NOPS; op++) {
			for (unsigned d = 0; d < NDEPTHS; d++) {
				for (unsigned k = 0; k < NPEERS; k++) {
					unsigned p = (k + rep) % NPEERS;
					int64_t err;

					if (!chosen(b, op, d, p))
						continue;
					err = run_cell(b, p, op, depths[d],
						       &b->res[rep][op][d][p]);
					if (!err)
						continue;
					fprintf(stderr, "bench_pool: %s at %u "
						"through %s: %s\n",
						op_names[op], depths[d],
						peer_names[p],
						strerror((int)-err));
					return err;
				}
			}
		}
		fprintf(stderr, "bench_pool: repetition %u of %u done\n",
			rep + 1, b->reps);
	}
	return 0;
}

static void usage(FILE *f, const char *argv0)
{
	fprintf(f,
		"usage: %s [-q] [-n REPS] [-w WORKERS] [-P US] [-t SECONDS] [-e | -a]\n"
		"          [-d DIR] [-o OPS] [-D DEPTHS] [-p PEERS]\n"
		"  -q          quick: 0.2 s per cell instead of 1 s\n"
		"  -n REPS     repetitions, each peer in turn (default 3)\n"
		"  -w WORKERS  aiod workers (default: the pool's own default)\n"
		"  -P US       aiod_pool_opts.poll_us: a worker polls this long for\n"
		"              the next request before sleeping (default 0)\n"
		"  -t SECONDS  time per cell (overrides -q)\n"
		"  -e          drive aiod from an epoll loop on aiod_pool_fd()\n"
		"              instead of aiod_pool_wait()\n"
		"  -a          -e, and the loop says when it is awake\n"
		"              (aiod_pool_awake())\n"
		"  -d DIR      where to make the scratch files (default $TMPDIR or /tmp)\n"
		"  -o OPS      only these ops, e.g. nop,stat (default nop,stat,pread)\n"
		"  -D DEPTHS   only these depths, e.g. 64 (default 1,64)\n"
		"  -p PEERS    only these peers, e.g. aiod (default sync,libuv,aiod);\n"
		"              for profiling one of them\n"
		"The aiod worker is $AIOD_WORKER, or the installed one.\n",
		argv0);
}

static bool parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return false;
	*out = (unsigned)v;
	return true;
}

/*
 * A comma-separated list of names from names[n] (or of depths, when
 * names is NULL) to a bit mask of their indexes.
 */
static bool parse_set(const char *arg, const char *const *names, unsigned n,
		      unsigned *set)
{
	char buf[128], *tok, *save;

	if (strlen(arg) >= sizeof(buf))
		return false;
	strcpy(buf, arg);
	*set = 0;
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		unsigned i, v = 0;

		if (!names && !parse_uint(tok, 1, MAX_DEPTH, &v))
			return false;
		for (i = 0; i < n; i++)
			if (names ? !strcmp(tok, names[i]) : v == depths[i])
				break;
		if (i == n)
			return false;
		*set |= 1u << i;
	}
	return *set != 0;
}

int main(int argc, char **argv)
{
	static struct bench bench;
	struct bench *b = &bench;
	const char *tp;
	double secs = 0;
	int64_t err;
	int c, status = 1;

	b->secs = 1.0;
	b->reps = 3;
	b->data_fd = b->epfd = -1;
	b->op_set = (1u << NOPS) - 1;
	b->depth_set = (1u << NDEPTHS) - 1;
	b->peer_set = (1u << NPEERS) - 1;
	while ((c = getopt(argc, argv, "qn:w:P:t:ead:o:D:p:h")) != -1) {
		switch (c) {
		case 'q':
			b->secs = 0.2;
			break;
		case 'n':
			if (!parse_uint(optarg, 1, MAX_REPS, &b->reps))
				goto bad_usage;
			break;
		case 'w':
			if (!parse_uint(optarg, 1, 1024, &b->workers))
				goto bad_usage;
			break;
		case 'P':
			if (!parse_uint(optarg, 0, 10000, &b->poll_us))
				goto bad_usage;
			break;
		case 't':
			secs = strtod(optarg, NULL);
			if (!(secs > 0 && secs <= 3600))
				goto bad_usage;
			break;
		case 'a':
			b->awake = true;
			/* fall through */
		case 'e':
			b->epoll = true;
			break;
		case 'd':
			b->parent = optarg;
			break;
		case 'o':
			if (!parse_set(optarg, op_names, NOPS, &b->op_set))
				goto bad_usage;
			break;
		case 'D':
			if (!parse_set(optarg, NULL, NDEPTHS, &b->depth_set))
				goto bad_usage;
			break;
		case 'p':
			if (!parse_set(optarg, peer_names, NPEERS,
				       &b->peer_set))
				goto bad_usage;
			break;
		case 'h':
			usage(stdout, argv[0]);
			return 0;
		default:
			goto bad_usage;
		}
	}
	if (optind != argc)
		goto bad_usage;
	if (secs > 0)
		b->secs = secs;

	tp = getenv("UV_THREADPOOL_SIZE");
	b->uv_threads = tp && atoi(tp) > 0 ? (unsigned)atoi(tp) : 4;
	err = uv_loop_init(&b->loop);
	if (err) {
		fprintf(stderr, "bench_pool: uv_loop_init: %s\n",
			uv_strerror((int)err));
		return 1;
	}
	b->sync_buf = aligned_alloc(BLOCK, (size_t)MAX_DEPTH * BLOCK);
	if (!b->sync_buf) {
		fprintf(stderr, "bench_pool: out of memory\n");
		goto out;
	}
	err = setup_aiod(b);
	if (err) {
		fprintf(stderr, "bench_pool: cannot start the aiod pool: %s%s\n",
			strerror((int)-err),
			getenv("AIOD_WORKER") ? ""
					      : " (set AIOD_WORKER=<build>/aiod/aiod)");
		status = err == -ENOENT || err == -EACCES ? 77 : 1;
		goto out;
	}
	catch_fatal_signals();
	err = make_files(b);
	if (err) {
		fprintf(stderr, "bench_pool: scratch files in %s: %s\n",
			b->dir[0] ? b->dir : "the temporary directory",
			strerror((int)-err));
		goto out;
	}
	print_header(b, argc, argv);

	if (run_all(b))
		goto out;
	print_table(b);
	print_goals(b);
	printf("\n");
	print_loadavg("at end");
	status = 0;
out:
	teardown_aiod(b);
	remove_files(b);
	uv_loop_close(&b->loop);
	free(b->sync_buf);
	return status;

bad_usage:
	usage(stderr, argv[0]);
	return 2;
}
