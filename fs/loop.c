/* SPDX-License-Identifier: MIT */
/*
 * loop.c - the daemon's one thread: an epoll loop over
 *
 *   the FUSE session fd   kernel requests: read one, hand it to libfuse,
 *                         whose handler (ops.c) submits aiod requests
 *   the pool fd           finished aiod requests: their callbacks reply
 *   a signalfd            SIGINT, SIGTERM, SIGHUP: leave the loop;
 *                         SIGUSR1: the statistics to the log
 *   the control socket    and its connections (ctl.c)
 *
 * and a timeout: lock waits parked in the daemon (ops.c) try again when
 * they are due, and the watchdog (stats.c) looks at slow requests.
 *
 * Nothing here blocks on the source: the session fd is non-blocking, and
 * every syscall on the source runs in a worker.
 *
 * Kernel requests are read straight into arena memory (receive
 * buffers), so a write's data is already where a worker can reach it: a
 * WRITE handler adopts the buffer it arrived in (afs_loop_adopt()) and
 * the loop reads the next request into another one.  The buffer is
 * placed so that a WRITE's payload, which follows 80 bytes of headers,
 * starts on a page boundary: the backing write may be O_DIRECT.  When the
 * arena has no room for another buffer the loop stops reading the
 * kernel until a request finishes.
 *
 * While large writes come, requests are spliced instead (see "Large
 * writes" below): a write's data then stays in the kernel's pages, and
 * the worker that writes it to the source makes the one copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <linux/fuse.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/uio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "aiodfs.h"

/*
 * libfuse reads up to 256 pages plus a header page at once; the 80 bytes
 * are struct fuse_in_header and struct fuse_write_in.
 */
#define RBUF_SIZE (2u << 20)
#define WRITE_HEADERS 80u
#define RBUF_OFFSET (4096u - WRITE_HEADERS)
#define RBUF_SPARE 4   /* free buffers kept for reuse */

struct rbuf {
	struct rbuf *next;
	char *mem;
	unsigned refs;
};

static struct rbuf *spare;
static unsigned nspare;
static struct rbuf *current;      /* the one libfuse is processing */
static int epfd = -1, sigfd = -1;
static bool fuse_paused;


/*
 * Large writes.  read(2) copies a WRITE's data out of the kernel into a
 * receive buffer, on the loop, which is then busy for the whole copy (a
 * 1 MiB write: ~150 µs; every request behind it waits).  splice(2) from
 * the session fd instead moves references to the kernel's pages into a
 * pipe; the worker writes them to the source from there
 * (AIOD_OP_PWRITE_PIPE), which is the one copy, and the loop empties the
 * pipe when the write is done.  A request read through a pipe costs a
 * second syscall (its header, or all of a small one, into the receive
 * buffer), so the loop splices only while large writes come: the next
 * SPLICE_STREAK requests after a WRITE of SPLICE_MIN bytes or more.
 *
 * The kernel fails a request (EIO to its caller) that does not fit the
 * pipe, so every pipe holds the largest write (afs_loop_splice_setup()).
 *
 * While the streak lasts the loop does not poll (wait_events()): the
 * program takes a while to copy its next write into the kernel, and
 * the loop sleeps till then.  Nor do workers (aiod_pool_hold_polls())
 * once a write of HOLD_MIN bytes or more came: the next request must
 * wake the loop first, and by then a worker's poll has mostly ended.
 * Measured with 1 GiB written in 128 KiB writes, workers polling cost
 * 1.4 times the CPU for the same throughput; in 64 KiB writes they
 * still gave 1.1 times the throughput (README).
 */
#define SPLICE_MIN (64u << 10)
#define SPLICE_STREAK 16
#define SPLICE_PIPES_MAX 16
#define HOLD_MIN (128u << 10)

struct wpipe {
	struct wpipe *next;
	int fd[2];
	size_t held;                /* a write's data, till emptied */
};

static struct wpipe *free_pipes;
static unsigned npipes;         /* made, free or held */
static size_t pipe_size;        /* 0: no splicing */
static struct wpipe *current_pipe; /* holds the current request's data */
static struct wpipe *taken_pipe;   /* and was taken by its op */
static unsigned splice_streak;
static bool holding;            /* workers' polls, in the streak */
static int devnull = -1;

static struct rbuf *rbuf_get(void)
{
	struct rbuf *rb = spare;

	if (rb) {
		spare = rb->next;
		nspare--;
		rb->refs = 1;
		return rb;
	}
	rb = malloc(sizeof(*rb));
	if (!rb)
		return NULL;
	rb->mem = aiod_buf_alloc(afs.pool, RBUF_SIZE);
	if (!rb->mem) {
		free(rb);
		return NULL;
	}
	rb->refs = 1;
	return rb;
}

static void watch_fuse(bool on)
{
	struct epoll_event ev = {
		.events = on ? EPOLLIN : 0,
		.data.u32 = AFS_EV_FUSE,
	};

	fuse_paused = !on;
	epoll_ctl(epfd, EPOLL_CTL_MOD, fuse_session_fd(afs.se), &ev);
}

static void rbuf_put(struct rbuf *rb)
{
	if (--rb->refs)
		return;
	if (nspare < RBUF_SPARE) {
		rb->next = spare;
		spare = rb;
		nspare++;
	} else {
		aiod_buf_free(afs.pool, rb->mem);
		free(rb);
	}
	if (fuse_paused)
		watch_fuse(true);
}

/*
 * If buf lies in the receive buffer being processed, keep that buffer
 * for the caller until afs_loop_release(*token), and return true.
 */
bool afs_loop_adopt(const void *buf, size_t len, void **token)
{
	const char *p = buf;

	if (!current || p < current->mem || p + len > current->mem + RBUF_SIZE)
		return false;
	current->refs++;
	*token = current;
	return true;
}

void afs_loop_release(void *token)
{
	rbuf_put(token);
}

/*
 * The kernel's id for the request being processed, which a reply written
 * by a worker must carry (ops.c, direct_reply()); false outside a handler.
 */
bool afs_loop_unique(uint64_t *unique)
{
	const struct fuse_in_header *in;

	if (!current)
		return false;
	in = (const struct fuse_in_header *)(current->mem + RBUF_OFFSET);
	*unique = in->unique;
	return true;
}

static struct wpipe *pipe_new(void)
{
	struct wpipe *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	if (pipe2(p->fd, O_CLOEXEC | O_NONBLOCK) < 0) {
		free(p);
		return NULL;
	}
	if (fcntl(p->fd[1], F_SETPIPE_SZ, (int)pipe_size) < (int)pipe_size) {
		close(p->fd[0]);
		close(p->fd[1]);
		free(p);
		return NULL;
	}
	npipes++;
	return p;
}

/*
 * The pipe that holds a whole write of max bytes: the kernel sends up to
 * max / page size pages (libfuse's max_pages), each its own pipe buffer,
 * and the header in one more; a pipe's buffers are a power of two.
 */
static size_t pipe_for(unsigned max)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t slots = 1 + (max + page - 1) / page, size;

	for (size = page; size < slots * page; size *= 2)
		;
	return size;
}

/*
 * Before the session starts: splice if pipes can hold a whole write.
 * 1 MiB writes need pipes of 2 MiB, which take CAP_SYS_RESOURCE or a
 * /proc/sys/fs/pipe-max-size of 2 MiB; without, and unless -o max_write
 * said otherwise (afs.max_write 0), writes are made 512 KiB, which
 * 1 MiB pipes hold: a 1 MiB write then costs two round trips, not a
 * 1 MiB copy on the loop, and the loop waits for less at a time (the
 * busy writer's statx p99 ~700 -> ~370 us, with the CPU per byte of a
 * 1 MiB write unchanged: README).  Without splicing, 1 MiB.
 */
void afs_loop_splice_setup(void)
{
	bool chosen = afs.max_write == 0;
	struct wpipe *p = NULL;

	if (chosen)
		afs.max_write = MAX_WRITE;
	if (!afs.opt.splice || afs.max_write < SPLICE_MIN)
		return;
	devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (devnull < 0)
		return;
	for (;;) {
		pipe_size = pipe_for(afs.max_write);
		p = pipe_new();
		if (p || !chosen || afs.max_write <= MAX_WRITE / 2)
			break;
		afs.max_write /= 2;
	}
	if (!p) {
		afs_log(LOG_INFO, "%s: writes are read, not spliced: no pipes of "
			"%zu KiB (see max_write in aiodfs(1))", afs.mountpoint,
			pipe_size >> 10);
		pipe_size = 0;
		if (chosen)
			afs.max_write = MAX_WRITE;
		return;
	}
	p->next = free_pipes;
	free_pipes = p;
}

/* A free pipe, or a new one up to SPLICE_PIPES_MAX; NULL: read instead. */
static struct wpipe *pipe_get(void)
{
	struct wpipe *p = free_pipes;

	if (p)
		free_pipes = p->next;
	else if (npipes < SPLICE_PIPES_MAX)
		p = pipe_new();
	return p;
}

/* Empty p of the write it held and keep it for the next request. */
static void pipe_put(struct wpipe *p)
{
	if (p->held &&
	    splice(p->fd[0], NULL, devnull, NULL, p->held, SPLICE_F_NONBLOCK) < 0 &&
	    errno != EAGAIN) {
		/* Cannot empty it: make another. */
		close(p->fd[0]);
		close(p->fd[1]);
		free(p);
		npipes--;
		return;
	}
	p->held = 0;
	p->next = free_pipes;
	free_pipes = p;
}

/*
 * If the current request is a WRITE whose data lies in a pipe, hand
 * the pipe to the caller, who gives it back with afs_loop_put_pipe()
 * once no worker reads it any more, and return its read end; else -1.
 */
int afs_loop_take_pipe(void **token)
{
	struct wpipe *p = current_pipe;

	if (!p)
		return -1;
	current_pipe = NULL;
	taken_pipe = p;
	*token = p;
	return p->fd[0];
}

void afs_loop_put_pipe(void *token)
{
	pipe_put(token);
}

/*
 * Splice the next request into a pipe and read from it into fbuf's
 * memory all but a large WRITE's data, which stays in the pipe
 * (current_pipe).  Returns what fuse_session_receive_buf() would.
 */
static int receive_spliced(struct wpipe *p, struct fuse_buf *fbuf)
{
	const struct fuse_in_header *in = fbuf->mem;
	const struct fuse_write_in *w = (const void *)(in + 1);
	ssize_t n, head;

	n = splice(fuse_session_fd(afs.se), NULL, p->fd[1], NULL, fbuf->size,
		   SPLICE_F_NONBLOCK);
	if (n < 0)
		return errno == ENODEV ? 0 : errno == ENOENT ? -EINTR : -errno;
	fbuf->size = (size_t)n;
	if (n < (ssize_t)sizeof(*in)) {
		p->held = (size_t)n;
		return -EIO;
	}
	head = n < (ssize_t)(WRITE_HEADERS + SPLICE_MIN) ? n : WRITE_HEADERS;
	if (read(p->fd[0], fbuf->mem, (size_t)head) != head)
		goto broken;
	if (head < n) {
		if (in->opcode == FUSE_WRITE && w->size == (size_t)(n - head)) {
			p->held = (size_t)(n - head);
			current_pipe = p;
			return (int)n;
		}
		if (read(p->fd[0], (char *)fbuf->mem + head, (size_t)(n - head)) !=
		    n - head)
			goto broken;
	}
	return (int)n;
broken:
	p->held = (size_t)n;
	return -EIO;
}

/*
 * An O_TMPFILE open comes as FUSE_TMPFILE, which libfuse 3.14 has no
 * name for, with the CREATE's arguments and reply: it goes on as a
 * CREATE of the name "/", which no CREATE of the kernel's can have
 * (ops.c, afs_create()).
 */
static void tmpfile_as_create(struct fuse_in_header *in, size_t len)
{
	const char *name = (const char *)(in + 1) + sizeof(struct fuse_create_in);

	if (in->opcode == FUSE_TMPFILE &&
	    len == sizeof(*in) + sizeof(struct fuse_create_in) + 2 &&
	    name[0] == '/' && name[1] == '\0')
		in->opcode = FUSE_CREATE;
}

/*
 * A statx(2) that asks for more than the basic attributes (the birth
 * time) comes as FUSE_STATX (protocol 7.39, newer than libfuse 3.14 and
 * Debian 12's headers), with a GETATTR's arguments and then its own
 * (the mask wanted); libfuse would answer ENOSYS, after which the kernel
 * never asks again and statx shows no birth time.  It goes on as a
 * GETATTR, which knows from afs_loop_statx() to answer with a
 * fuse_statx_out (ops.c, reply_attr()).
 */
#define AFS_FUSE_STATX 52
#define AFS_FUSE_STATX_IN_SIZE 24

static bool current_statx;

static bool statx_as_getattr(struct fuse_in_header *in, size_t len)
{
	if (in->opcode != AFS_FUSE_STATX ||
	    len != sizeof(*in) + AFS_FUSE_STATX_IN_SIZE)
		return false;
	in->opcode = FUSE_GETATTR;
	return true;
}

bool afs_loop_statx(void)
{
	return current && current_statx;
}

static void hold_polls(bool on)
{
	if (on != holding) {
		holding = on;
		aiod_pool_hold_polls(afs.pool, on);
	}
}

/*
 * Read and process one kernel request.  Returns 1 if one was processed,
 * 0 if none is waiting (or no buffer is free), -errno on a dead session.
 */
static int receive_one(void)
{
	struct fuse_buf fbuf = { .size = 0 };
	struct rbuf *rb = rbuf_get();
	struct wpipe *p = NULL;
	int res;

	if (!rb) {
		watch_fuse(false); /* until a request gives one back */
		return 0;
	}
	fbuf.mem = rb->mem + RBUF_OFFSET;
	fbuf.size = RBUF_SIZE - RBUF_OFFSET;
	if (splice_streak)
		p = pipe_get();
	res = p ? receive_spliced(p, &fbuf) : fuse_session_receive_buf(afs.se, &fbuf);
	if (res > 0) {
		const struct fuse_in_header *in = fbuf.mem;
		const struct fuse_write_in *w = (const void *)(in + 1);
		bool large = pipe_size && in->opcode == FUSE_WRITE &&
			     w->size >= SPLICE_MIN;

		if (large)
			splice_streak = SPLICE_STREAK;
		else if (splice_streak)
			splice_streak--;
		hold_polls(splice_streak &&
			   (holding || (large && w->size >= HOLD_MIN)));
		tmpfile_as_create(fbuf.mem, (size_t)res);
		current_statx = statx_as_getattr(fbuf.mem, (size_t)res);
		current = rb;
		fuse_session_process_buf(afs.se, &fbuf);
		current = NULL;
	}
	/* Its op gives it back (maybe already); else it is ours to empty. */
	if (p && p != taken_pipe)
		pipe_put(p);
	current_pipe = taken_pipe = NULL;
	rbuf_put(rb);
	if (res == -EAGAIN || res == -EINTR)
		return 0;
	if (res == 0)
		return -ENODEV; /* unmounted */
	return res < 0 ? res : 1;
}

/*
 * The INIT reply gets on its way out what libfuse 3.14 cannot say, and
 * so do OPEN and CREATE replies in passthrough; every other reply passes
 * unchanged.
 *
 * FUSE_HANDLE_KILLPRIV_V2: the kernel leaves dropping set-id bits and
 * file capabilities on write, truncate and chown to us, and stops asking
 * for security.capability before every write to a file that had none
 * (the inode is marked "no security" after the first).  Every one of
 * those runs on the source with the caller's fsuid (ops.c), so the
 * source drops them itself exactly as for a local write.  libfuse has
 * no name for the flag.
 *
 * max_pages, the most pages of any one request: libfuse derives it from
 * max_write alone, so writes made 512 KiB for splicing (afs.max_write)
 * would make reads 512 KiB too.  Reads may be as large as max_read: the
 * kernel still keeps writes to max_write, and a read's data never
 * passes through the loop's buffers.
 *
 * -o passthrough (passthrough.c): FUSE_PASSTHROUGH, and then the backing
 * id in the reply to each OPEN or CREATE that ops.c set up for it.
 */
static uint64_t init_unique;    /* the INIT being answered, or 0 */
static uint32_t init_flags, init_flags2; /* what that INIT offered */
static int next_backing_id;     /* for the next OPEN or CREATE reply */

static void note_init(const struct fuse_buf *fbuf, size_t len)
{
	const struct fuse_in_header *h = fbuf->mem;
	const struct fuse_init_in *in = (const void *)(h + 1);

	if (len >= sizeof(*h) + offsetof(struct fuse_init_in, flags) +
		   sizeof(in->flags) && h->opcode == FUSE_INIT) {
		init_unique = h->unique;
		init_flags = in->flags;
		if (len >= sizeof(*h) + offsetof(struct fuse_init_in, flags2) +
			   sizeof(in->flags2) && (in->flags & FUSE_INIT_EXT))
			init_flags2 = in->flags2;
	}
}

static void amend_init(struct fuse_init_out *out)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t pages = (afs.max_read + page - 1) / page;

	afs.killpriv_v2 = init_flags & FUSE_HANDLE_KILLPRIV_V2;
	if (afs.killpriv_v2)
		out->flags |= FUSE_HANDLE_KILLPRIV_V2;
	if ((out->flags & FUSE_MAX_PAGES) && pages > out->max_pages)
		out->max_pages = (uint16_t)(pages < UINT16_MAX ? pages : UINT16_MAX);
	afs_pt_negotiate(init_flags, init_flags2, out);
}

void afs_loop_backing_next(int backing_id)
{
	next_backing_id = backing_id;
}

static ssize_t session_writev(int fd, struct iovec *iov, int count, void *data)
{
	const struct fuse_out_header *h = iov[0].iov_base;

	(void)data;
	/* An OPEN's reply is its fuse_open_out, a CREATE's ends with one. */
	if (next_backing_id && count == 2 && h->error == 0 &&
	    iov[1].iov_len >= sizeof(struct fuse_open_out)) {
		afs_pt_amend_open((struct fuse_open_out *)(void *)
				  ((char *)iov[1].iov_base + iov[1].iov_len -
				   sizeof(struct fuse_open_out)),
				  next_backing_id);
		next_backing_id = 0;
	}
	if (init_unique && count == 2 && iov[0].iov_len == sizeof(*h) &&
	    h->unique == init_unique) {
		if (h->error == 0 && iov[1].iov_len >=
		    offsetof(struct fuse_init_out, max_pages) +
		    sizeof(((struct fuse_init_out *)0)->max_pages))
			amend_init(iov[1].iov_base);
		init_unique = 0;
	}
	return writev(fd, iov, count);
}

static ssize_t session_read(int fd, void *buf, size_t len, void *data)
{
	(void)data;
	return read(fd, buf, len);
}

/*
 * Before the loop: process kernel requests, blocking, until INIT has been
 * answered, so that a caller told "mounted" finds the mount serving.
 */
int afs_loop_init_session(void)
{
	static const struct fuse_custom_io io = {
		.writev = session_writev, .read = session_read,
	};
	int fd = fuse_session_fd(afs.se);
	int res = fuse_session_custom_io(afs.se, &io, fd);

	if (res < 0)
		return res;
	while (!afs.init_done) {
		struct fuse_buf fbuf = { .size = 0 };
		struct rbuf *rb = rbuf_get();

		if (!rb)
			return -ENOMEM;
		fbuf.mem = rb->mem + RBUF_OFFSET;
		fbuf.size = RBUF_SIZE - RBUF_OFFSET;
		res = fuse_session_receive_buf(afs.se, &fbuf);
		if (res > 0) {
			note_init(&fbuf, (size_t)res);
			current = rb;
			fuse_session_process_buf(afs.se, &fbuf);
			current = NULL;
		}
		rbuf_put(rb);
		if (res == 0)
			return -ENODEV;
		if (res < 0 && res != -EINTR)
			return res;
	}
	if (fuse_session_exited(afs.se))
		return -EPROTO; /* libfuse refused what init() asked for */
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

int afs_loop_watch(int fd, uint32_t events, uint32_t tag)
{
	struct epoll_event ev = { .events = events, .data.u32 = tag };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int afs_loop_rewatch(int fd, uint32_t events, uint32_t tag)
{
	struct epoll_event ev = { .events = events, .data.u32 = tag };

	return epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

static int add(int fd, uint32_t tag)
{
	return afs_loop_watch(fd, EPOLLIN, tag);
}

static int setup(void)
{
	sigset_t set;
	int ctl;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (sigfd < 0 || epfd < 0)
		return -errno;
	if (add(fuse_session_fd(afs.se), AFS_EV_FUSE) < 0 ||
	    add(aiod_pool_fd(afs.pool), AFS_EV_POOL) < 0 || add(sigfd, AFS_EV_SIGNAL) < 0)
		return -errno;
	ctl = afs_ctl_open();
	if (ctl == -EBUSY)
		afs_log(LOG_WARNING, "%s: a live aiodfs holds this mount's control "
			"socket; serving without one", afs.mountpoint);
	else if (ctl == -EDESTADDRREQ)
		afs_log(LOG_WARNING, "%s: no control socket: XDG_RUNTIME_DIR is "
			"not set, so aiodfsctl cannot reach this mount",
			afs.mountpoint);
	else if (ctl < 0 || add(ctl, AFS_EV_CTL) < 0)
		afs_log(LOG_WARNING, "%s: no control socket: %s", afs.mountpoint,
			strerror(ctl < 0 ? -ctl : errno));
	return 0;
}

/* SIGUSR1: the statistics, a line at a time, to the log. */
static void log_stats(void)
{
	struct afs_buf b = { 0 };
	char *line, *save = NULL;

	afs_stats_render(&b, false);
	for (line = b.data ? strtok_r(b.data, "\n", &save) : NULL; line;
	     line = strtok_r(NULL, "\n", &save))
		afs_log(LOG_INFO, "%s", line);
	free(b.data);
}

/* The loop's timeout: parked lock waits and the watchdog, ms or -1. */
static int timeout_ms(void)
{
	int a = afs_ops_timeout(), b = afs_stats_watch();

	return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

/*
 * How much longer than -o poll the loop's polling may grow: a request
 * that waits for the source (a cold read, 60-400 µs here) leaves the
 * loop idle longer than 50 µs before the program's next request.  Never
 * past the longest -o poll, though.
 */
#define POLL_STRETCH 8

static unsigned window_us;      /* the loop's polling now (wait_events()) */
static uint64_t npolls;         /* times it began to poll */

static int64_t us_since(int64_t t0_ns)
{
	return (afs_now_ns() - t0_ns) / 1000;
}

/*
 * After polling in vain we slept slept_us: widen the window if polling
 * up to POLL_STRETCH times -o poll would have caught what woke us, and
 * narrow it back when sleeps are longer than that.  (Guests do the same
 * with a vCPU's halt: KVM's halt polling, cpuidle's haltpoll.)
 */
static void adapt_window(int64_t slept_us, bool woken)
{
	unsigned most = afs.opt.poll_us * POLL_STRETCH;

	if (most > AFS_POLL_MAX_US)
		most = AFS_POLL_MAX_US;

	if (woken && slept_us < most)
		window_us = window_us * 2 < most ? window_us * 2 : most;
	else if (slept_us >= most)
		window_us = window_us / 2 > afs.opt.poll_us ? window_us / 2
							   : afs.opt.poll_us;
}

unsigned afs_loop_poll_window(void)
{
	return window_us;
}

uint64_t afs_loop_polls(void)
{
	return npolls;
}

/*
 * Whether a wake-up brought work that polling is for: a kernel request
 * or a worker's answer.  aiodfsctl's connection or a signal is not.
 */
static bool serves(const struct epoll_event *evs, int n)
{
	for (int i = 0; i < n; i++)
		if (evs[i].data.u32 == AFS_EV_FUSE || evs[i].data.u32 == AFS_EV_POOL)
			return true;
	return false;
}

/*
 * epoll_wait, but with -o poll=US (default 50) and at most one request
 * in a worker, first polling for window_us (from US to POLL_STRETCH
 * times it, adapt_window()), yielding the CPU to any other runnable task
 * between two looks: a loop that goes to sleep after each request costs
 * the next one a wake-up, which on a virtual machine without halt
 * polling takes tens of µs.  While the loop is not asleep here, workers
 * finish requests without a doorbell to us (aiod_pool_awake()): we look
 * at them before we sleep.
 */
static int wait_events(struct epoll_event *evs, int max)
{
	struct aiod_pool_stats ps;
	int64_t t0;
	bool polled = false;
	int n, err;

	aiod_pool_stats(afs.pool, &ps);
	/*
	 * Under load, polling would only crowd the CPUs (aiod/main.c); so
	 * would it in a splice streak ("Large writes" above).
	 */
	if (afs.opt.poll_us && ps.busy <= 1 && !splice_streak) {
		npolls++;
		t0 = afs_now_ns();
		do {
			n = epoll_wait(epfd, evs, max, 0);
			if (n != 0)
				return n;
			/* Finished while we are awake: no doorbell came. */
			if (aiod_pool_reap(afs.pool) > 0)
				return 0;
			sched_yield(); /* only an otherwise idle CPU polls */
		} while (us_since(t0) < window_us);
		polled = true;
	}
	/* About to sleep: from now on a finished request rings. */
	if (aiod_pool_awake(afs.pool, false) > 0)
		return 0;
	t0 = afs_now_ns();
	n = epoll_wait(epfd, evs, max, timeout_ms());
	err = errno;
	if (polled)
		adapt_window(us_since(t0), serves(evs, n));
	aiod_pool_awake(afs.pool, true);
	errno = err;
	return n;
}

/* Kernel requests read per wake-up before finished requests get a turn. */
#define FUSE_BATCH 32

/*
 * Serve until the filesystem is unmounted or a signal asks to stop.
 * Returns 0, or -errno if the session failed.
 */
int afs_loop_run(void)
{
	int err = setup();

	window_us = afs.opt.poll_us;

	while (!err && !fuse_session_exited(afs.se)) {
		struct epoll_event evs[4];
		int n;

		/*
		 * Requests a worker answered the kernel for end when we next
		 * look (aiod_pool_lazy()), unless something waits on them.
		 */
		aiod_pool_lazy(afs.pool, afs.reply_fd >= 0 && !fuse_paused &&
			       !afs_ops_waiting());
		n = wait_events(evs, 4);
		/* Before any kernel request that may follow their answers. */
		aiod_pool_reap(afs.pool);
		afs_ops_tick();
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			break;
		}
		for (int i = 0; i < n && !err; i++) {
			switch (evs[i].data.u32) {
			case AFS_EV_FUSE:
				for (int k = 0; k < FUSE_BATCH; k++) {
					int r = receive_one();

					if (r <= 0) {
						err = r == -ENODEV ? 0 : r;
						if (r == -ENODEV)
							fuse_session_exit(afs.se);
						break;
					}
				}
				break;
			case AFS_EV_POOL: {
				int r = aiod_pool_process(afs.pool);

				if (r < 0)
					err = r;
				break;
			}
			case AFS_EV_SIGNAL: {
				struct signalfd_siginfo si;

				if (read(sigfd, &si, sizeof(si)) != sizeof(si))
					break;
				if (si.ssi_signo == SIGUSR1)
					log_stats();
				else
					fuse_session_exit(afs.se);
				break;
			}
			case AFS_EV_CTL:
				afs_ctl_accept();
				break;
			default:
				afs_ctl_event(evs[i].data.u32 - AFS_EV_CTL_CONN,
					      evs[i].events);
				break;
			}
		}
	}
	afs_ctl_close();
	if (sigfd >= 0)
		close(sigfd);
	if (epfd >= 0)
		close(epfd);
	return err;
}
