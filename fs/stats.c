/* SPDX-License-Identifier: MIT */
/*
 * stats.c - what the daemon counts about the requests it serves, the
 * requests in flight, and the slow-request watchdog.
 *
 * Every kernel request the daemon answers is counted under its FUSE
 * operation: how many, how many failed, and how long each took from its
 * arrival to its reply, in a histogram of quarter-octave buckets (so a
 * percentile is within 19% of the truth) with the exact maximum.  Each
 * request that becomes an op (ops.c) is also on the live list while it
 * lives: what it is, what it acts on, since when, and through its aiod
 * request, which worker holds it.
 *
 * The watchdog: an op whose request a worker has held for longer than
 * -o slow=SECS is logged once, with the operation, the object, the
 * worker's pid and the age, and again when it completes.
 *
 * afs_stats_render() writes all of it as text (a table) or JSON, for the
 * control socket (ctl.c) and for SIGUSR1 (to the log).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aiodfs.h"

static const char *const op_names[AFS_OP__COUNT] = {
	[AFS_OP_LOOKUP] = "lookup", [AFS_OP_FORGET] = "forget",
	[AFS_OP_GETATTR] = "getattr", [AFS_OP_SETATTR] = "setattr",
	[AFS_OP_READLINK] = "readlink", [AFS_OP_MKNOD] = "mknod",
	[AFS_OP_MKDIR] = "mkdir", [AFS_OP_UNLINK] = "unlink",
	[AFS_OP_RMDIR] = "rmdir", [AFS_OP_SYMLINK] = "symlink",
	[AFS_OP_RENAME] = "rename", [AFS_OP_LINK] = "link",
	[AFS_OP_OPEN] = "open", [AFS_OP_READ] = "read",
	[AFS_OP_WRITE] = "write", [AFS_OP_FLUSH] = "flush",
	[AFS_OP_RELEASE] = "release", [AFS_OP_FSYNC] = "fsync",
	[AFS_OP_OPENDIR] = "opendir", [AFS_OP_READDIR] = "readdir",
	[AFS_OP_READDIRPLUS] = "readdirplus",
	[AFS_OP_RELEASEDIR] = "releasedir", [AFS_OP_FSYNCDIR] = "fsyncdir",
	[AFS_OP_STATFS] = "statfs", [AFS_OP_SETXATTR] = "setxattr",
	[AFS_OP_GETXATTR] = "getxattr", [AFS_OP_LISTXATTR] = "listxattr",
	[AFS_OP_REMOVEXATTR] = "removexattr", [AFS_OP_ACCESS] = "access",
	[AFS_OP_CREATE] = "create", [AFS_OP_GETLK] = "getlk",
	[AFS_OP_SETLK] = "setlk", [AFS_OP_FLOCK] = "flock",
	[AFS_OP_FALLOCATE] = "fallocate",
	[AFS_OP_COPY_FILE_RANGE] = "copy_file_range",
	[AFS_OP_LSEEK] = "lseek",
	[AFS_OP_IOCTL] = "ioctl",
};

/* Bucket b holds latencies in [2^(b/4), 2^((b+1)/4)) ns, roughly. */
#define NBUCKETS 160

struct op_stats {
	uint64_t count, errors;
	uint64_t max_ns;
	uint64_t hist[NBUCKETS];
	uint64_t count_then;        /* count at the last rates snapshot */
	uint64_t by_loop;           /* of count, answered by the loop itself */
};

static struct {
	struct op_stats op[AFS_OP__COUNT];
	uint64_t bytes_read, bytes_written, bytes_spliced;
	uint64_t reads_waited;      /* READs held for a WRITE in flight */
	int64_t then_ns;            /* the last rates snapshot */
	int64_t start_ns;
	struct afs_live live;       /* list head */
	unsigned nlive;
} st = { .live = { .next = &st.live, .prev = &st.live } };

int64_t afs_now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

const char *afs_op_name(int opcode)
{
	return opcode >= 0 && opcode < AFS_OP__COUNT && op_names[opcode]
		       ? op_names[opcode] : "?";
}

void afs_stats_init(void)
{
	st.start_ns = st.then_ns = afs_now_ns();
}

static unsigned bucket_of(uint64_t ns)
{
	unsigned b = 0;

	/* 4 * log2(ns), from the top bit and the next two. */
	if (ns < 2)
		return 0;
	b = 4 * (63 - (unsigned)__builtin_clzll(ns));
	if (b >= 8)
		b += (unsigned)(ns >> (b / 4 - 2)) & 3;
	return b < NBUCKETS ? b : NBUCKETS - 1;
}

/* The upper end of bucket b, in ns. */
static uint64_t bucket_top(unsigned b)
{
	unsigned e = b / 4, q = b % 4;

	if (e < 2)
		return (uint64_t)1 << (e + 1);
	return ((uint64_t)1 << e) + ((uint64_t)(q + 1) << (e - 2));
}

/* An op from start_ns (0: unknown) to end_ns (0: now). */
static void count_span(int opcode, int err, int64_t start_ns, int64_t end_ns)
{
	struct op_stats *s = &st.op[opcode];
	uint64_t ns;

	if (!end_ns)
		end_ns = afs_now_ns();
	ns = start_ns && end_ns > start_ns ? (uint64_t)(end_ns - start_ns) : 0;

	s->count++;
	if (err)
		s->errors++;
	if (ns > s->max_ns)
		s->max_ns = ns;
	s->hist[bucket_of(ns)]++;
}

void afs_stats_count(int opcode, int err, int64_t start_ns)
{
	count_span(opcode, err, start_ns, 0);
}

void afs_stats_bytes(uint64_t read, uint64_t written, bool spliced)
{
	st.bytes_read += read;
	st.bytes_written += written;
	if (spliced)
		st.bytes_spliced += written;
}

void afs_stats_by_loop(int opcode)
{
	st.op[opcode].by_loop++;
}

void afs_stats_read_waited(void)
{
	st.reads_waited++;
}

void afs_live_link(struct afs_live *l, const struct aiod_req *req)
{
	l->req = req;
	l->next = &st.live;
	l->prev = st.live.prev;
	st.live.prev->next = l;
	st.live.prev = l;
	st.nlive++;
}

/* "ino 1234 name" or "ino 1234" or "-": what the op acts on. */
static void object_of(const struct afs_live *l, char *buf, size_t size)
{
	if (l->ino && l->name)
		snprintf(buf, size, "ino %" PRIu64 " %s", l->ino, l->name);
	else if (l->ino)
		snprintf(buf, size, "ino %" PRIu64, l->ino);
	else
		snprintf(buf, size, "-");
}

void afs_live_end(struct afs_live *l, int err)
{
	if (l->req) {
		l->prev->next = l->next;
		l->next->prev = l->prev;
		st.nlive--;
	}
	count_span(l->opcode, err, l->start_ns, l->end_ns);
	if (l->slow_logged) {
		char obj[300];

		object_of(l, obj, sizeof(obj));
		afs_log(LOG_WARNING, "slow request done: %s on %s after %.1f s: %s",
			afs_op_name(l->opcode), obj,
			(double)(afs_now_ns() - l->start_ns) / 1e9,
			err ? strerror(err) : "ok");
	}
}

int afs_stats_watch(void)
{
	static int64_t due;         /* the next look; none before */
	int64_t now, limit = (int64_t)(afs.opt.slow * 1e9), next = limit;

	if (afs.opt.slow <= 0 || !st.nlive)
		return -1;
	now = afs_now_ns();
	if (now < due)
		return (int)((due - now) / 1000000) + 1;
	for (struct afs_live *l = st.live.next; l != &st.live; l = l->next) {
		pid_t pid = aiod_req_worker(l->req);
		int64_t age = now - l->start_ns;
		char obj[300];

		if (l->slow_logged)
			continue;
		if (age < limit) {
			if (limit - age < next)
				next = limit - age;
			continue;
		}
		if (!pid) {
			/* Not with a worker now (parked, queued): look again. */
			if (1000000000 < next)
				next = 1000000000;
			continue;
		}
		object_of(l, obj, sizeof(obj));
		afs_log(LOG_WARNING, "slow request: %s on %s, worker %d, %.1f s",
			afs_op_name(l->opcode), obj, (int)pid, (double)age / 1e9);
		l->slow_logged = true;
	}
	/* An op that starts later is due later than this. */
	due = now + next;
	return (int)(next / 1000000) + 1;
}

/* ---- rendering ------------------------------------------------------------ */

/* Append printf output to a growing buffer; on no memory, stop growing. */
static void put(struct afs_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void put(struct afs_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		size_t room = b->size - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->data ? b->data + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t want = b->size ? b->size * 2 : 4096;
		while (want - b->len <= (size_t)n)
			want *= 2;
		char *d = realloc(b->data, want);
		if (!d)
			return;
		b->data = d;
		b->size = want;
	}
}

static double percentile_us(const struct op_stats *s, double p)
{
	uint64_t want = (uint64_t)((double)s->count * p + 0.999999), seen = 0;

	if (!s->count)
		return 0;
	for (unsigned b = 0; b < NBUCKETS; b++) {
		seen += s->hist[b];
		if (seen >= want) {
			uint64_t top = bucket_top(b);

			return (double)(top < s->max_ns ? top : s->max_ns) / 1000;
		}
	}
	return (double)s->max_ns / 1000;
}

/* JSON string contents: quotes, backslashes and controls escaped. */
static void put_json_str(struct afs_buf *b, const char *s)
{
	put(b, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			put(b, "\\%c", c);
		else if (c < 0x20)
			put(b, "\\u%04x", c);
		else
			put(b, "%c", c);
	}
	put(b, "\"");
}

void afs_stats_render(struct afs_buf *b, bool json)
{
	struct aiod_pool_stats ps;
	unsigned pt_files, pt_inodes, inodes, inode_fds;
	int64_t now = afs_now_ns();
	double dt = (double)(now - st.then_ns) / 1e9;
	const char *sep = "";

	aiod_pool_stats(afs.pool, &ps);
	afs_pt_counts(&pt_files, &pt_inodes);
	afs_inode_counts(&inodes, &inode_fds);
	if (dt <= 0)
		dt = 1e-9;
	if (json) {
		put(b, "{\"pid\": %d, \"mountpoint\": ", (int)getpid());
		put_json_str(b, afs.mountpoint);
		put(b, ", \"source\": ");
		put_json_str(b, afs.opt.source);
		put(b, ", \"control_socket\": ");
		put_json_str(b, afs_ctl_socket() ? afs_ctl_socket() : "");
		put(b, ", \"uptime_s\": %.1f, \"interval_s\": %.3f, "
		    "\"bytes_read\": %" PRIu64 ", \"bytes_written\": %" PRIu64 ", "
		    "\"bytes_spliced\": %" PRIu64 ", "
		    "\"reads_waited\": %" PRIu64 ", "
		    "\"inodes\": %u, \"inode_fds\": %u, \"files_open\": %u, "
		    "\"passthrough\": {\"on\": %s, \"files\": %u, "
		    "\"backing_files\": %u}, "
		    "\"pool\": {\"workers\": %u, \"target\": %u, \"busy\": %u, "
		    "\"queued\": %" PRIu64 ", \"submitted\": %" PRIu64 ", "
		    "\"completed\": %" PRIu64 ", \"worker_deaths\": %" PRIu64 ", "
		    "\"retries\": %" PRIu64 ", \"arena_size\": %zu, "
		    "\"arena_used\": %zu}, \"poll_us\": %u, "
		    "\"poll_window_us\": %u, \"loop_polls\": %" PRIu64 ", "
		    "\"ops\": {",
		    (double)(now - st.start_ns) / 1e9, dt, st.bytes_read,
		    st.bytes_written, st.bytes_spliced, st.reads_waited,
		    inodes, inode_fds, afs_files_open(),
		    afs_pt_enabled() ? "true" : "false", pt_files, pt_inodes,
		    ps.workers, afs.opt.workers, ps.busy,
		    ps.queued, ps.submitted, ps.completed, ps.worker_deaths,
		    ps.retries, ps.arena_size, ps.arena_used, afs.opt.poll_us,
		    afs_loop_poll_window(), afs_loop_polls());
	} else {
		put(b, "aiodfs %s on %s, pid %d, up %.0f s\n", afs.opt.source,
		    afs.mountpoint, (int)getpid(),
		    (double)(now - st.start_ns) / 1e9);
		put(b, "workers %u (of %u), busy %u, queued %" PRIu64
		    ", worker restarts %" PRIu64 ", re-runs %" PRIu64
		    "; the loop polls %u us (%" PRIu64 " times so far)\n",
		    ps.workers, afs.opt.workers, ps.busy, ps.queued,
		    ps.worker_deaths, ps.retries, afs_loop_poll_window(),
		    afs_loop_polls());
		put(b, "arena %zu of %zu KiB in use; read %" PRIu64
		    " MiB, written %" PRIu64 " MiB (spliced %" PRIu64 ")\n",
		    ps.arena_used >> 10, ps.arena_size >> 10, st.bytes_read >> 20,
		    st.bytes_written >> 20, st.bytes_spliced >> 20);
		put(b, "inodes known %u (pinning %u fds), files open %u\n",
		    inodes, inode_fds, afs_files_open());
		if (st.reads_waited)
			put(b, "reads held for a write in flight: %" PRIu64 "\n",
			    st.reads_waited);
		if (afs.opt.passthrough)
			put(b, "passthrough %s: %u files open, %u backing "
			    "files\n", afs_pt_enabled() ? "on" : "off",
			    pt_files, pt_inodes);
		put(b, "\n");
		put(b, "%-16s %10s %8s %9s %10s %10s %10s %10s\n", "op", "count",
		    "errors", "ops/s", "p50 us", "p99 us", "max us", "by loop");
	}
	for (int i = 0; i < AFS_OP__COUNT; i++) {
		struct op_stats *s = &st.op[i];
		double rate = (double)(s->count - s->count_then) / dt;

		if (!s->count)
			continue;
		if (json)
			put(b, "%s\"%s\": {\"count\": %" PRIu64 ", \"errors\": %" PRIu64
			    ", \"ops_per_s\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f"
			    ", \"max_us\": %.1f, \"by_loop\": %" PRIu64 "}", sep,
			    op_names[i], s->count, s->errors, rate,
			    percentile_us(s, 0.5), percentile_us(s, 0.99),
			    (double)s->max_ns / 1000, s->by_loop);
		else
			put(b, "%-16s %10" PRIu64 " %8" PRIu64 " %9.1f %10.1f %10.1f %10.1f %10" PRIu64 "\n",
			    op_names[i], s->count, s->errors, rate,
			    percentile_us(s, 0.5), percentile_us(s, 0.99),
			    (double)s->max_ns / 1000, s->by_loop);
		sep = ", ";
		s->count_then = s->count;
	}
	st.then_ns = now;
	if (json)
		put(b, "}, \"in_flight\": [");
	else
		put(b, "\nin flight: %u\n", st.nlive);
	sep = "";
	for (struct afs_live *l = st.live.next; l != &st.live; l = l->next) {
		pid_t pid = l->req ? aiod_req_worker(l->req) : 0;
		double age = (double)(now - l->start_ns) / 1e9;
		char obj[300];

		object_of(l, obj, sizeof(obj));
		if (json) {
			put(b, "%s{\"op\": \"%s\", \"object\": ", sep,
			    afs_op_name(l->opcode));
			put_json_str(b, obj);
			put(b, ", \"worker\": %d, \"age_s\": %.3f}", (int)pid, age);
		} else {
			put(b, "  %-14s %8.3f s  worker %-7d %s\n",
			    afs_op_name(l->opcode), age, (int)pid, obj);
		}
		sep = ", ";
	}
	if (json)
		put(b, "]}\n");
}
