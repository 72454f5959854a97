/* SPDX-License-Identifier: MIT */
/*
 * pool.c - the worker pool: spawning, dispatching, completing, and
 * replacing workers that die.
 *
 * DESIGN
 *
 * The pool's one pollable fd is an epoll instance holding, for each
 * worker, its socket and its pidfd, plus an eventfd that is signalled
 * when a completion was decided without a worker (a cancelled queued
 * request, a request whose worker died and may not be re-run), and the
 * closer's ack pipe and pidfd (closer.c).
 *
 * A request is in one of four states: IDLE (not submitted, or its
 * callback has started), QUEUED (on the FIFO queue, waiting for an idle
 * worker and room in the arena), RUNNING (a worker holds it; w->cur
 * points at it) or DONE (its result is decided and it waits on the done
 * list for aiod_pool_process()).  A CLOSE whose worker is done but whose
 * caller's fd the closer has not yet closed (closer.c) waits as CLOSING.
 * The client always knows which worker
 * holds which request, because it picks the worker and a worker holds at
 * most one request.
 *
 * Kept copies (AIOD_F_KEEP): homes[fd] names the worker keeping a copy
 * of the caller's fd, and its slot; a request on fd goes to that worker
 * when it is idle (or waits for it when it has only to say it is done:
 * finishing()), and otherwise to any idle one with the fd passed as
 * usual.  A CLOSE of a kept fd waits for its home (QUEUED, on the
 * worker's pinned list), which runs its pinned CLOSEs before anything
 * else; a request that may wait for a lock empties its worker's slots
 * first, so that no CLOSE is ever pinned behind a lock wait.  A retiring
 * worker runs its pinned CLOSEs before it goes.  When a worker dies, its
 * homes are forgotten and its pinned CLOSEs go back to the queue, to run
 * anywhere (its copies died with it).
 *
 * A worker's death shows as EOF on its socket (its files close before
 * it becomes a zombie) and then as its pidfd turning readable.  Replies
 * already in the socket are consumed before EOF is believed, so a request
 * the worker finished is never failed.  The dead worker's request is put
 * back at the head of the queue if it may run twice (up to RERUNS_MAX
 * times), otherwise it ends
 * with -EIO; a new worker is spawned at once; the corpse is reaped
 * through its pidfd, without blocking (where pidfd_open() is missing, at
 * the pool's next event).  Worker structs are freed only
 * between event batches, since one batch may carry both of a worker's
 * fds.
 */
#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/eventfd.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "aiod-internal.h"

#ifndef AIOD_WORKER_PATH
#error "AIOD_WORKER_PATH must be defined by the build"
#endif

extern char **environ;

enum { REQ_IDLE, REQ_QUEUED, REQ_RUNNING, REQ_DONE, REQ_CLOSING };

/* Small inbound data (xattr values, file handles) rides in the message. */
#define INLINE_DATA_MAX 1024u
/* Consecutive workers that die before saying hello stop the respawning. */
#define SPAWN_FAILURES_MAX 3
#define HELLO_TIMEOUT_MS 5000
/*
 * Re-runs of an idempotent request whose worker died: more than one, so
 * that workers killed at random (an operator, the OOM killer) do not fail
 * it twice in a row; few, so that a request which kills every worker
 * that runs it ends.
 */
#define RERUNS_MAX 2

#define ALIGN8(x) (((x) + 7) & ~(size_t)7)

struct worker {
	int sock;               /* -1 once lost */
	int pidfd;              /* -1 where pidfd_open() is missing */
	pid_t pid;
	bool hello;             /* it spoke our protocol version */
	bool lost;              /* socket gone; waiting to be reaped */
	bool reaped;            /* free at the end of the event batch */
	bool retiring;          /* resized away: ends after its request */
	struct aiod_req *cur;   /* the request it holds */
	struct worker *next;    /* on the dying list */
	struct worker *rnext;   /* on the retiring list */
	uint64_t ws_off;        /* its struct aiod_wstate in the arena */
	uint64_t slot_used[AIOD_KEEP_SLOTS / 64]; /* slots of kept copies */
	unsigned nkept;
	struct aiod_req *pinned, *pinned_tail; /* requests waiting for it */
	bool quick;             /* cur is a CLOSE with no flush: ring() */
};

/* The worker keeping a copy of one of the caller's fds (AIOD_F_KEEP). */
struct home {
	struct worker *w;       /* NULL: none */
	uint32_t slot;
};

struct aiod_pool {
	struct aiod__arena arena;
	int epfd;
	int wakefd;
	char *worker_path;
	pid_t self;
	unsigned nshared;
	int shared[AIOD_MAX_SHARED_FDS];     /* the caller's numbers */
	int shared_own[AIOD_MAX_SHARED_FDS]; /* our copies, above the targets */

	unsigned nworkers;      /* the size the pool keeps itself at */
	unsigned nlive;         /* slots holding a worker */
	unsigned cap;           /* slots and idle have room for this many */
	struct worker **slots;  /* live workers; NULL where one is missing */
	struct worker **idle;   /* stack of idle live workers */
	unsigned nidle;
	struct worker *retiring; /* busy, resized away, in no slot */
	unsigned nretiring;
	struct worker *dying;   /* lost, not yet reaped */
	bool no_pidfd;          /* pidfd_open() said ENOSYS */
	bool quiet;             /* aiod_pool_opts.quiet */
	unsigned spawn_failures;
	int early_exit;         /* exit code of a worker gone before hello */
	bool setup, closing;
	bool lazy;              /* aiod_pool_lazy() */
	unsigned depth;         /* run() calls in progress (callbacks nest) */

	struct aiod_req *q_head, *q_tail;
	struct aiod_req *done_head, *done_tail;
	uint64_t nqueued, next_id;
	size_t ws_used;         /* arena bytes of the workers' aiod_wstate */
	struct aiod__closer closer;  /* closes our copies of CLOSE's fds */
	bool closer_watched;    /* epfd watches its job pipe for room */
	struct aiod_req **unacked;   /* CLOSEs whose fd the closer has */
	size_t nunacked, unacked_cap;
	struct home *homes;     /* by the caller's fd number */
	size_t nhomes;
	uint64_t npinned;       /* CLOSEs on workers' pinned lists */
	uint64_t submitted, completed, deaths, retries;
	uint64_t mem_bells;     /* requests handed over in memory */
};

static struct aiod_arena_hdr *hdr_of(struct aiod_pool *p)
{
	return (struct aiod_arena_hdr *)p->arena.base;
}

static struct aiod_msg *msg_of(struct aiod_pool *p, const struct aiod_req *req)
{
	return (struct aiod_msg *)(p->arena.base + req->msg_off_);
}

static struct aiod_wstate *ws_of(struct aiod_pool *p, const struct worker *w)
{
	return (struct aiod_wstate *)(p->arena.base + w->ws_off);
}

static uint32_t *wstate_of(struct aiod_pool *p, const struct worker *w)
{
	return &ws_of(p, w)->state;
}

/* ---- the queue and the done list ----------------------------------- */

/* Lists of requests linked through next_: the queue, pinned CLOSEs. */
static void list_append(struct aiod_req **head, struct aiod_req **tail,
			struct aiod_req *req)
{
	req->next_ = NULL;
	if (*tail)
		(*tail)->next_ = req;
	else
		*head = req;
	*tail = req;
}

static struct aiod_req *list_pop(struct aiod_req **head, struct aiod_req **tail)
{
	struct aiod_req *req = *head;

	*head = req->next_;
	if (!*head)
		*tail = NULL;
	return req;
}

static void queue_push(struct aiod_pool *p, struct aiod_req *req, bool front)
{
	req->state_ = REQ_QUEUED;
	if (front) {
		req->next_ = p->q_head;
		p->q_head = req;
		if (!p->q_tail)
			p->q_tail = req;
	} else {
		list_append(&p->q_head, &p->q_tail, req);
	}
	p->nqueued++;
}

static struct aiod_req *queue_pop(struct aiod_pool *p)
{
	p->nqueued--;
	return list_pop(&p->q_head, &p->q_tail);
}

/* Take req off the list from *head to *tail; false if it is not on it. */
static bool list_remove(struct aiod_req **head, struct aiod_req **tail,
			struct aiod_req *req)
{
	struct aiod_req **pp, *prev = NULL;

	for (pp = head; *pp; prev = *pp, pp = &(*pp)->next_) {
		if (*pp != req)
			continue;
		*pp = req->next_;
		if (*tail == req)
			*tail = prev;
		return true;
	}
	return false;
}

static bool queue_remove(struct aiod_pool *p, struct aiod_req *req)
{
	if (!list_remove(&p->q_head, &p->q_tail, req))
		return false;
	p->nqueued--;
	return true;
}

/*
 * Decide req's result without a worker; its callback runs from the next
 * aiod_pool_process(), which the eventfd wakes.
 */
static void poke(struct aiod_pool *p)
{
	uint64_t one = 1;

	if (write(p->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		fprintf(stderr, "libaiod: eventfd write: %s\n", strerror(errno));
}

/* req's results are decided (req->result): run its callback soon. */
static void defer(struct aiod_pool *p, struct aiod_req *req)
{
	req->state_ = REQ_DONE;
	req->worker_ = NULL;
	req->next_ = NULL;
	if (p->done_tail)
		p->done_tail->next_ = req;
	else
		p->done_head = req;
	p->done_tail = req;
	poke(p);
}

/* ---- the closer (closer.c) ----------------------------------------- */

/* fd, which the caller gave us, closes in the closer (or here, without one). */
static void close_quietly(struct aiod_pool *p, int fd)
{
	if (!aiod__closer_give(&p->closer, fd, 0))
		close(fd);
}

/* The closer gets it at the next reap (a batch of them: one write). */
void aiod_pool_close(struct aiod_pool *p, int fd)
{
	if (fd >= 0 && !aiod__closer_queue(&p->closer, fd, 0))
		close(fd);
}

/*
 * Send the closer the fds waiting for it.  Those the job pipe has no
 * room for wait in the backlog, and while they do, the pool's epoll fd
 * watches the pipe for room: a caller asleep on it (run(), or its own
 * loop on aiod_pool_fd()) wakes to send them, although no ack may ever
 * come for them (aiod_pool_close() asks for none).
 */
static void closer_flow(struct aiod_pool *p)
{
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = &p->closer.jobs };
	bool wait;

	aiod__closer_send(&p->closer);
	wait = p->closer.nbacklog > 0 && p->closer.jobs[1] >= 0;
	if (wait == p->closer_watched)
		return;
	if (epoll_ctl(p->epfd, wait ? EPOLL_CTL_ADD : EPOLL_CTL_DEL,
		      p->closer.jobs[1], &ev) == 0 || !wait)
		p->closer_watched = wait;
}

bool aiod_pool_flushless(struct aiod_pool *p, int fd)
{
	return aiod__closer_flushless(&p->closer, fd, NULL);
}

/*
 * A CLOSE's fd has gone to its worker: the caller's copy goes to the
 * closer, and the request ends when both are closed.  (Closed here, it
 * would run the file's flush here, which on NFS or a FUSE source can
 * take as long as the source likes.)  Where there is no flush, the copy
 * closes here at once, unless the file has no link left: the worker may
 * have closed its copy already, and the last close of such a file frees
 * its blocks, which for a large one takes a while.  Returns whether the
 * close is known to be quick.
 */
static bool close_caller_copy(struct aiod_pool *p, struct aiod_req *req)
{
	bool unlinked;

	if (!p->closer.pid) {
		close(req->fd[0]);
		return false;
	}
	if (aiod__closer_flushless(&p->closer, req->fd[0], &unlinked) &&
	    !unlinked) {
		close(req->fd[0]);
		return true;
	}
	if (p->nunacked == p->unacked_cap) {
		size_t cap = p->unacked_cap ? 2 * p->unacked_cap : 16;
		struct aiod_req **u = realloc(p->unacked, cap * sizeof(*u));

		if (!u) {
			close(req->fd[0]);
			return false;
		}
		p->unacked = u;
		p->unacked_cap = cap;
	}
	if (!aiod__closer_give(&p->closer, req->fd[0], (uint64_t)(uintptr_t)req))
		close(req->fd[0]);
	else
		p->unacked[p->nunacked++] = req;
	return false;
}

/* Whether req waits for the closer; with take, it no longer does. */
static bool unacked(struct aiod_pool *p, const struct aiod_req *req, bool take)
{
	for (size_t i = 0; i < p->nunacked; i++) {
		if (p->unacked[i] != req)
			continue;
		if (take)
			p->unacked[i] = p->unacked[--p->nunacked];
		return true;
	}
	return false;
}

static void finish(struct aiod_pool *p, struct aiod_req *req);

/* The closer's acks: CLOSEs whose worker is done too end now. */
static int closer_read(struct aiod_pool *p)
{
	uint64_t tokens[64];
	size_t n;
	int ran = 0;

	while ((n = aiod__closer_acks(&p->closer, tokens, 64)) > 0) {
		for (size_t i = 0; i < n; i++) {
			struct aiod_req *req = (struct aiod_req *)(uintptr_t)tokens[i];

			if (unacked(p, req, true) && req->state_ == REQ_CLOSING) {
				finish(p, req);
				ran++;
			}
		}
	}
	return ran;
}

/*
 * No closer (any more): the CLOSEs it held end as they are (whether it
 * closed their fds we cannot know; closing a number again could close a
 * file opened since), and the next ones close in the caller.
 */
static int closer_gone(struct aiod_pool *p)
{
	int ran = 0;

	while (p->nunacked) {
		struct aiod_req *req = p->unacked[--p->nunacked];

		if (req->state_ == REQ_CLOSING) {
			finish(p, req);
			ran++;
		}
	}
	return ran;
}

static void home_forget(struct aiod_pool *p, int fd);

static void defer_done(struct aiod_pool *p, struct aiod_req *req, int err)
{
	if (req->state_ == REQ_QUEUED && req->op == AIOD_OP_CLOSE) {
		home_forget(p, req->fd[0]);
		close_quietly(p, req->fd[0]);
	}
	req->result = err;
	req->replied = 0;
	defer(p, req);
}

/*
 * The arena's lazy word: the caller's wish, but off while requests wait
 * for a worker, whose finishing must then wake us.  Requests finished
 * just before must be looked at again: a caller that is awake does that
 * before it blocks (aiod_pool_awake()); one that is not gets the eventfd
 * poked, so that run() looks.
 */
static void sync_lazy(struct aiod_pool *p)
{
	uint32_t want = p->lazy && !p->q_head && !p->npinned && !p->closing;

	if (__atomic_load_n(&hdr_of(p)->lazy, __ATOMIC_RELAXED) == want)
		return;
	__atomic_store_n(&hdr_of(p)->lazy, want, __ATOMIC_SEQ_CST);
	if (!want && !__atomic_load_n(&hdr_of(p)->awake, __ATOMIC_RELAXED))
		poke(p);
}

/* Free the request's arena memory and run its callback. */
static void finish(struct aiod_pool *p, struct aiod_req *req)
{
	uint64_t tmp = req->tmp_off_;

	if (req->op == AIOD_OP_CLOSE && unacked(p, req, false)) {
		req->state_ = REQ_CLOSING;      /* closer_read() ends it */
		req->worker_ = NULL;
		return;
	}
	if (req->msg_off_)
		aiod__buddy_free(&p->arena.alloc, req->msg_off_);
	req->msg_off_ = 0;
	req->tmp_off_ = 0;
	req->state_ = REQ_IDLE;
	req->worker_ = NULL;
	p->completed++;
	if (req->cb)
		req->cb(req);
	/* req may be gone now: the callback may have freed it. */
	if (tmp)
		aiod__buddy_free(&p->arena.alloc, tmp);
}

static int run_done_list(struct aiod_pool *p)
{
	struct aiod_req *req;
	uint64_t n;
	int ran = 0;

	if (read(p->wakefd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return -errno;
	while ((req = p->done_head)) {
		p->done_head = req->next_;
		if (!p->done_head)
			p->done_tail = NULL;
		finish(p, req);
		ran++;
	}
	return ran;
}

/* ---- preparing a message in the arena ------------------------------ */

static size_t name_size(const char *name)
{
	return name ? strlen(name) + 1 : 0;
}

static bool data_inline(const struct aiod_pool *p, const struct aiod_req *req)
{
	return aiod__op_data(req->op) == AIOD__DATA_IN && req->len &&
	       req->len <= INLINE_DATA_MAX &&
	       !aiod__arena_owns(&p->arena, req->buf, req->len);
}

/* The bytes of arena a request needs: message, and data not inline. */
static void request_sizes(const struct aiod_pool *p, const struct aiod_req *req,
			  size_t *msg, size_t *data)
{
	*msg = sizeof(struct aiod_msg) + name_size(req->name[0]) +
	       name_size(req->name[1]);
	for (int i = 0; i < 2; i++)
		if (req->fh_in[i])
			*msg = ALIGN8(*msg) + sizeof(struct aiod_fh);
	if (req->cred)
		*msg = ALIGN8(*msg) + (size_t)req->cred->ngroups * sizeof(uint32_t);
	*data = 0;
	if (data_inline(p, req))
		*msg = ALIGN8(*msg) + req->len;
	else if (aiod__op_data(req->op) != AIOD__DATA_NONE && req->len &&
		 !aiod__arena_owns(&p->arena, req->buf, req->len))
		*data = req->len;
}

/*
 * Append n bytes to the message's variable part; aligned puts start on
 * 8 bytes, for what the worker reads as integers or structs.
 */
static uint32_t put_bytes(char *msg, uint32_t *end, const void *src, size_t n,
			  bool aligned)
{
	uint32_t at = aligned ? (uint32_t)ALIGN8(*end) : *end;

	if (n)
		memcpy(msg + at, src, n);
	*end = at + (uint32_t)n;
	return at;
}

/* Which shared fd fd is, or -1. */
static int shared_index(const struct aiod_pool *p, int fd)
{
	for (unsigned k = 0; k < p->nshared; k++)
		if (fd >= 0 && p->shared[k] == fd)
			return (int)k;
	return -1;
}

/*
 * Copy req into a message in the arena.  Returns 0, or -ENOMEM when the
 * arena has no room now (the request stays queued).  A request put back
 * after its worker died is prepared already.
 */
static int prepare(struct aiod_pool *p, struct aiod_req *req)
{
	struct aiod_msg *m;
	size_t msg_size, data_size;
	int64_t moff, doff = 0;
	uint32_t end;
	char *base;

	if (req->msg_off_)
		return 0;
	request_sizes(p, req, &msg_size, &data_size);
	moff = aiod__buddy_alloc(&p->arena.alloc, msg_size);
	if (moff < 0)
		return -ENOMEM;
	if (data_size) {
		doff = aiod__buddy_alloc(&p->arena.alloc, data_size);
		if (doff < 0) {
			aiod__buddy_free(&p->arena.alloc, (uint64_t)moff);
			return -ENOMEM;
		}
	}
	req->msg_off_ = (uint64_t)moff;
	req->tmp_off_ = (uint64_t)doff;

	base = p->arena.base + moff;
	m = (struct aiod_msg *)base;
	memset(m, 0, sizeof(*m));
	end = sizeof(*m);
	m->op = req->op;
	m->flags = req->flags;
	m->id = ++p->next_id;
	m->size = (uint32_t)aiod__buddy_block_size(&p->arena.alloc, (uint64_t)moff);
	for (int i = 0; i < 2; i++)
		if (req->name[i])
			m->name_off[i] = put_bytes(base, &end, req->name[i],
						   name_size(req->name[i]), false);
	for (int i = 0; i < 2; i++)
		if (req->fh_in[i])
			m->fh_off[i] = put_bytes(base, &end, req->fh_in[i],
						 sizeof(struct aiod_fh), true);
	if (req->cred) {
		m->wflags |= AIOD_WF_CRED;
		m->uid = req->cred->uid;
		m->gid = req->cred->gid;
		m->ngroups = req->cred->ngroups;
		m->groups_off = put_bytes(base, &end, req->cred->groups,
					  req->cred->ngroups * sizeof(uint32_t),
					  true);
	}
	m->data_len = req->len;
	if (data_inline(p, req))
		m->data_off = (uint64_t)moff + put_bytes(base, &end, req->buf,
							 req->len, true);
	else if (aiod__arena_owns(&p->arena, req->buf, req->len))
		m->data_off = (uint64_t)((char *)req->buf - p->arena.base);
	else if (doff) {
		m->data_off = (uint64_t)doff;
		if (aiod__op_data(req->op) == AIOD__DATA_IN)
			memcpy(p->arena.base + doff, req->buf, req->len);
	}
	memcpy(m->arg, req->arg, sizeof(m->arg));
	m->lk = req->lk;
	m->fa = req->fa;
	m->reply_fd = AIOD_WIRE_FD_NONE;
	if (req->reply) {
		m->reply_fd = AIOD_WIRE_FD_SHARED - shared_index(p, req->reply->fd);
		m->reply_hdr_len = req->reply->hdr_len;
		m->reply_len_off = req->reply->len_off;
		m->reply_res_off = req->reply->res_off;
		m->reply_on_error = req->reply->on_error;
		memcpy(m->reply_hdr, req->reply->hdr, req->reply->hdr_len);
		if (aiod__op_data(req->op) == AIOD__DATA_OUT)
			m->wflags |= AIOD_WF_REPLY_DATA;
	}
	return 0;
}

/* ---- kept copies (AIOD_F_KEEP) ------------------------------------- */

static struct home *home_of(struct aiod_pool *p, int fd)
{
	return fd >= 0 && (size_t)fd < p->nhomes && p->homes[fd].w ? &p->homes[fd]
								  : NULL;
}

/* A free slot of w's, now taken, or -1. */
static int slot_take(struct worker *w)
{
	for (unsigned i = 0; i < AIOD_KEEP_SLOTS / 64; i++) {
		if (!~w->slot_used[i])
			continue;
		int b = __builtin_ctzll(~w->slot_used[i]);

		w->slot_used[i] |= 1ull << b;
		w->nkept++;
		return (int)(i * 64) + b;
	}
	return -1;
}

/*
 * Slot s of w's is free for the next copy.  The worker may still hold
 * the old one there: it closes it when told to fill the slot again.
 */
static void slot_free(struct worker *w, uint32_t s)
{
	w->slot_used[s / 64] &= ~(1ull << (s % 64));
	w->nkept--;
}

/* No worker's copy stands for fd from now on. */
static void home_forget(struct aiod_pool *p, int fd)
{
	struct home *h = home_of(p, fd);

	if (h) {
		slot_free(h->w, h->slot);
		h->w = NULL;
	}
}

/* w's copy in slot s stands for fd.  Returns false for want of memory. */
static bool home_set(struct aiod_pool *p, int fd, struct worker *w, uint32_t s)
{
	if ((size_t)fd >= p->nhomes) {
		size_t n = p->nhomes ? p->nhomes : 64;
		struct home *h;

		while (n <= (size_t)fd)
			n *= 2;
		h = realloc(p->homes, n * sizeof(*h));
		if (!h)
			return false;
		memset(h + p->nhomes, 0, (n - p->nhomes) * sizeof(*h));
		p->homes = h;
		p->nhomes = n;
	}
	home_forget(p, fd);
	p->homes[fd] = (struct home){ .w = w, .slot = s };
	return true;
}

static void pin(struct aiod_pool *p, struct worker *w, struct aiod_req *req)
{
	req->worker_ = w; /* the one it waits for, while it is QUEUED */
	list_append(&w->pinned, &w->pinned_tail, req);
	p->npinned++;
}

static struct aiod_req *unpin(struct aiod_pool *p, struct worker *w)
{
	p->npinned--;
	return list_pop(&w->pinned, &w->pinned_tail);
}

/*
 * w is lost (dead, or its socket closed for it to exit): its copies
 * stand for nothing any more, and the CLOSEs waiting for it go back to
 * the head of the queue.
 */
static void homes_leave(struct aiod_pool *p, struct worker *w)
{
	struct aiod_req *req, *rev = NULL;

	for (size_t fd = 0; w->nkept && fd < p->nhomes; fd++)
		if (p->homes[fd].w == w)
			home_forget(p, (int)fd);
	while (w->pinned) {     /* reversed, to keep their order */
		req = unpin(p, w);
		req->next_ = rev;
		rev = req;
	}
	while ((req = rev)) {
		rev = req->next_;
		queue_push(p, req, true);
	}
}

/* Whether req may wait for a lock: then no kept copy may wait behind it. */
static bool waits_for_lock(const struct aiod_req *req)
{
	return (req->op == AIOD_OP_LOCK && req->arg[0] == F_OFD_SETLKW) ||
	       (req->op == AIOD_OP_FLOCK && !(req->arg[0] & (LOCK_NB | LOCK_UN)));
}

static bool opens(const struct aiod_req *req)
{
	return req->op == AIOD_OP_OPEN || req->op == AIOD_OP_OPEN_BY_HANDLE;
}

/* Whether req runs on the worker keeping fd[0], if that one is idle. */
static bool goes_home(const struct aiod_req *req)
{
	return req->op == AIOD_OP_CLOSE ||
	       ((req->flags & AIOD_F_KEEP) && req->op != AIOD_OP_FLUSH &&
		!opens(req) && !waits_for_lock(req));
}

/*
 * What w is to do with kept copies for req (aiod_msg.keep, keep_slot,
 * AIOD_WF_DROP_KEPT), decided as it gets the request.
 */
static void keep_plan(struct aiod_pool *p, struct worker *w,
		      struct aiod_req *req, struct aiod_msg *m)
{
	int fd = req->fd[0], s;
	struct home *h = home_of(p, fd);

	m->keep = AIOD_KEEP_NONE;
	m->keep_slot = 0;
	m->wflags &= ~(uint32_t)AIOD_WF_DROP_KEPT;
	if (waits_for_lock(req)) {
		if (w->nkept)
			m->wflags |= AIOD_WF_DROP_KEPT;
		homes_leave(p, w); /* nothing is pinned on an idle worker */
		return;
	}
	if (h && h->w == w && goes_home(req)) {
		m->keep = AIOD_KEEP_USE;
		m->keep_slot = h->slot;
		return;
	}
	if (!(req->flags & AIOD_F_KEEP) || req->op == AIOD_OP_FLUSH ||
	    req->op == AIOD_OP_CLOSE)
		return;
	if (opens(req)) {
		/* The new fd's home is set when it arrives (keep_done()). */
		if ((s = slot_take(w)) >= 0) {
			m->keep = AIOD_KEEP_STORE_RET;
			m->keep_slot = (uint32_t)s;
		}
		return;
	}
	if (h || fd < 0 || shared_index(p, fd) >= 0 || (s = slot_take(w)) < 0)
		return;
	if (!home_set(p, fd, w, (uint32_t)s)) {
		slot_free(w, (uint32_t)s);
		return;
	}
	m->keep = AIOD_KEEP_STORE;      /* other requests on fd go elsewhere */
	m->keep_slot = (uint32_t)s;
}

/* w has done req (fd: the one it opened, or -1): what it keeps now. */
static void keep_done(struct aiod_pool *p, struct worker *w,
		      struct aiod_req *req, int fd)
{
	const struct aiod_msg *m = msg_of(p, req);
	struct home *h;

	switch (m->keep) {
	case AIOD_KEEP_STORE_RET:
		if (!m->kept || fd < 0 || !home_set(p, fd, w, m->keep_slot))
			slot_free(w, m->keep_slot);
		break;
	case AIOD_KEEP_STORE:
	case AIOD_KEEP_USE:
		h = home_of(p, req->fd[0]);
		if (!m->kept && req->op != AIOD_OP_CLOSE && h && h->w == w &&
		    h->slot == m->keep_slot)
			home_forget(p, req->fd[0]);
		break;
	}
}

/* The doorbell for req never reached w: undo what keep_plan() took. */
static void keep_undo(struct aiod_pool *p, struct worker *w,
		      struct aiod_req *req, struct aiod_msg *m)
{
	if (m->keep == AIOD_KEEP_STORE_RET)
		slot_free(w, m->keep_slot);
	else if (m->keep == AIOD_KEEP_STORE)
		home_forget(p, req->fd[0]);
	m->keep = AIOD_KEEP_NONE;
}

/*
 * A CLOSE of a copy kept by a busy worker waits for that worker, even
 * when no other is idle.  Returns whether req is pinned now.
 */
static bool pin_close(struct aiod_pool *p, struct aiod_req *req)
{
	struct home *h = req->op == AIOD_OP_CLOSE ? home_of(p, req->fd[0]) : NULL;

	if (!h || !h->w->cur || prepare(p, req) < 0)
		return false;
	req->state_ = REQ_QUEUED;
	pin(p, h->w, req);
	sync_lazy(p);
	return true;
}

/* Take req off whichever pinned list holds it; false if none does. */
static bool unpin_req(struct aiod_pool *p, struct aiod_req *req)
{
	struct worker *w = req->worker_;

	if (!w || !list_remove(&w->pinned, &w->pinned_tail, req))
		return false;
	p->npinned--;
	return true;
}

/* ---- talking to a worker ------------------------------------------- */

/*
 * w now holds req (NULL: nothing).  The arena header's count of busy
 * workers tells a worker that has just replied whether polling for the
 * next request is worth it (see aiod/main.c).
 */
static void set_cur(struct aiod_pool *p, struct worker *w,
		    struct aiod_req *req)
{
	if (!w->cur != !req)
		__atomic_store_n(&hdr_of(p)->busy,
				 hdr_of(p)->busy + (req ? 1 : (uint32_t)-1),
				 __ATOMIC_RELEASE);
	w->cur = req;
}

/*
 * Send w a datagram and count it in its aiod_wstate.sent, which a
 * polling worker watches instead of its socket.  Returns what sendmsg()
 * did.
 */
static ssize_t send_bell(struct aiod_pool *p, struct worker *w,
			 const struct msghdr *mh)
{
	ssize_t n;

	do
		n = sendmsg(w->sock, mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n >= 0)
		__atomic_add_fetch(&ws_of(p, w)->sent, 1, __ATOMIC_RELEASE);
	return n;
}

/*
 * Hand the request at msg_off to w through memory, if w is polling for
 * it (struct aiod_wstate.mbox): no syscall on either side.  Returns
 * whether w took it; if not, ring its socket.
 */
static bool hand_over(struct aiod_pool *p, struct worker *w, uint64_t msg_off)
{
	struct aiod_wstate *ws = ws_of(p, w);
	uint32_t polling = AIOD_MB_POLLING;

	__atomic_store_n(&ws->bell, msg_off, __ATOMIC_RELAXED);
	return __atomic_compare_exchange_n(&ws->mbox, &polling, AIOD_MB_FULL,
					   false, __ATOMIC_RELEASE,
					   __ATOMIC_RELAXED);
}

/*
 * Ring w's doorbell for req, passing its fds.  The same fd in both slots
 * (a rename within one directory) travels once.  Returns 0 or -errno:
 * -EPIPE or -ECONNRESET when the worker is gone, others (-EBADF for a
 * closed fd) when the request cannot be sent.
 */
static int ring(struct aiod_pool *p, struct worker *w, struct aiod_req *req)
{
	struct aiod_msg *m = msg_of(p, req);
	struct aiod_bell bell = { .msg_off = req->msg_off_ };
	struct iovec iov = { .iov_base = &bell, .iov_len = sizeof(bell) };
	union {
		char buf[CMSG_SPACE(sizeof(int) * AIOD_WIRE_MAXFD)];
		struct cmsghdr align;
	} cbuf;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	int fds[AIOD_WIRE_MAXFD], nfds = 0;
	ssize_t n;

	keep_plan(p, w, req, m);
	for (int i = 0; i < AIOD_WIRE_MAXFD; i++) {
		int fd = req->fd[i];

		int k = shared_index(p, fd);

		if (i == 0 && m->keep == AIOD_KEEP_USE)
			m->fd[i] = AIOD_WIRE_FD_KEPT;
		else if (fd == AT_FDCWD)
			m->fd[i] = AIOD_WIRE_FD_CWD;
		else if (k >= 0)
			m->fd[i] = AIOD_WIRE_FD_SHARED - k;
		else if (fd < 0)
			m->fd[i] = AIOD_WIRE_FD_NONE;
		else if (i > 0 && fd == req->fd[0])
			m->fd[i] = m->fd[0];
		else {
			m->fd[i] = nfds;
			fds[nfds++] = fd;
		}
	}
	if (nfds) {
		struct cmsghdr *c;

		memset(&cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	__atomic_store_n(wstate_of(p, w), AIOD_WS_RUNNING, __ATOMIC_RELEASE);
	if (!nfds && hand_over(p, w, req->msg_off_)) {
		p->mem_bells++;
		n = 0;
	} else {
		n = send_bell(p, w, &mh);
	}
	if (n < 0) {
		keep_undo(p, w, req, m);
		return -errno;
	}
	set_cur(p, w, req);
	req->worker_ = w;
	req->state_ = REQ_RUNNING;
	w->quick = false;
	if (req->op == AIOD_OP_CLOSE) {
		home_forget(p, req->fd[0]); /* the number may come back at once */
		/* The worker's copy is the last; with no flush, quickly so. */
		w->quick = close_caller_copy(p, req);
	}
	return 0;
}

static void worker_lost(struct aiod_pool *p, struct worker *w);

/*
 * The idle worker for the next request: the one polling for it if there
 * is one (see aiod_pool_opts.poll_us), else the last one to go idle.
 */
static struct worker *pick_idle(struct aiod_pool *p)
{
	pid_t poller = __atomic_load_n(&hdr_of(p)->poller, __ATOMIC_ACQUIRE);

	for (unsigned i = 0; poller && i + 1 < p->nidle; i++) {
		struct worker *w = p->idle[i];

		if (w->pid != poller)
			continue;
		p->idle[i] = p->idle[p->nidle - 1];
		p->idle[p->nidle - 1] = w;
		break;
	}
	return p->idle[--p->nidle];
}

/*
 * Whether w has written the reply to a request that carried it no fd,
 * and so has nothing left to do but say it is done, or runs a close
 * with no flush (ring()'s quick).  A worker that writes its reply to the
 * kernel wakes the program waiting for it, whose next request can reach
 * us before that word: it should wait for w.  So should one that comes
 * right behind a file's release, whose close the caller did not wait for.
 */
static bool finishing(struct aiod_pool *p, const struct worker *w)
{
	const struct aiod_msg *m = w->cur ? msg_of(p, w->cur) : NULL;

	return m && !w->retiring &&
	       (w->quick ||
		(m->fd[0] < 0 && m->fd[1] < 0 &&
		 __atomic_load_n(&m->reply_state, __ATOMIC_ACQUIRE) ==
			 AIOD_REPLY_DONE));
}

/* Whether req would reach a worker in memory: it passes it no fd. */
static bool passes_no_fd(const struct aiod_pool *p, const struct aiod_req *req)
{
	for (int i = 0; i < AIOD_WIRE_MAXFD; i++)
		if (req->fd[i] >= 0 && shared_index(p, req->fd[i]) < 0)
			return false;
	return true;
}

/*
 * With polling, the busy worker req should wait for, or NULL: the one
 * finishing() that polls (or will: no worker polls yet), when no idle
 * worker polls.  A program's next request often reaches us between its
 * worker's reply and that worker's word that it is done; given to an
 * idle worker, it would cost that one a wake-up (and the poller stays
 * the other), where the poller takes it in memory a moment later, with
 * no syscall on either side.
 */
static struct worker *finishing_poller(struct aiod_pool *p,
				       const struct aiod_req *req)
{
	pid_t poller = __atomic_load_n(&hdr_of(p)->poller, __ATOMIC_ACQUIRE);

	if (!hdr_of(p)->poll_us || hdr_of(p)->hold_polls || !passes_no_fd(p, req))
		return NULL;
	for (unsigned i = 0; poller && i < p->nidle; i++)
		if (p->idle[i]->pid == poller)
			return NULL;
	for (unsigned i = 0; i < p->nworkers; i++) {
		struct worker *w = p->slots[i];

		if (w && !w->lost && !w->pinned && finishing(p, w) &&
		    (!poller || w->pid == poller))
			return w;
	}
	return NULL;
}

/*
 * The worker for req, taken off the idle list: the one keeping a copy of
 * its fd if that one is idle, else pick_idle()'s.  NULL: req waits for a
 * busy worker now, pinned to it: for its home, a CLOSE always, another
 * request if the home is only finishing(); else the finishing_poller().
 */
static struct worker *pick(struct aiod_pool *p, struct aiod_req *req)
{
	struct home *h = goes_home(req) ? home_of(p, req->fd[0]) : NULL;
	struct worker *w;

	if (!h && (w = finishing_poller(p, req))) {
		pin(p, w, req);
		return NULL;
	}
	if (!h)
		return pick_idle(p);
	for (unsigned i = 0; i < p->nidle; i++) {
		if (p->idle[i] != h->w)
			continue;
		p->idle[i] = p->idle[--p->nidle];
		return h->w;
	}
	if (req->op != AIOD_OP_CLOSE && !finishing(p, h->w))
		return pick_idle(p);
	pin(p, h->w, req);
	return NULL;
}

/* Give prepared req to w, which was idle. */
static void give(struct aiod_pool *p, struct worker *w, struct aiod_req *req)
{
	int err = ring(p, w, req);

	if (err == -EPIPE || err == -ECONNRESET) {
		/* It never reached the worker: not a try. */
		queue_push(p, req, true);
		worker_lost(p, w);
	} else if (err) {
		/* The request itself is at fault (a closed fd: EBADF). */
		if (w->retiring)
			worker_lost(p, w);
		else
			p->idle[p->nidle++] = w;
		defer_done(p, req, err);
	}
}

/* Hand queued requests to idle workers while there is room. */
static void dispatch(struct aiod_pool *p)
{
	while (p->q_head && p->nidle) {
		struct aiod_req *req = p->q_head;
		struct worker *w;

		if (prepare(p, req) < 0)
			return;
		queue_pop(p);
		w = pick(p, req);
		if (w)
			give(p, w, req);
	}
	sync_lazy(p);
}

/* Copy a finished request's results out of its message. */
static void collect(struct aiod_pool *p, struct aiod_req *req, int fd)
{
	struct aiod_msg *m = msg_of(p, req);
	char *data = NULL;

	req->result = m->result;
	req->ret_fd = fd;
	req->stx = m->stx;
	req->fh = m->fh;
	req->mount_id = m->mount_id;
	req->eof = (int)m->eof;
	req->sfs = m->sfs;
	req->lk = m->lk;
	req->fa = m->fa;
	req->replied = m->reply_state == AIOD_REPLY_DONE && !m->reply_err;
	req->reply_ns = m->reply_ns;
	if (aiod__op_data(req->op) != AIOD__DATA_OUT || !m->data_off)
		return;
	data = p->arena.base + m->data_off;
	if (req->buf && data != (char *)req->buf) {
		if (req->result > 0)
			memcpy(req->buf, data,
			       (size_t)req->result < req->len ? (size_t)req->result
							      : req->len);
		data = req->buf;
	}
	req->out = data;
}

static void close_fds(struct aiod_pool *p, const int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close_quietly(p, fds[i]);
}

/*
 * Signal a worker.  Its pid cannot be reused before the pool reaps it,
 * so without a pidfd (see spawn_one()) kill() is as safe.
 */
static void signal_worker(struct worker *w, int sig)
{
	if (w->reaped)
		return;
	if (w->pidfd >= 0)
		pidfd_send_signal(w->pidfd, sig, NULL, 0);
	else
		kill(w->pid, sig);
}

/* A protocol violation: the worker is not to be trusted any further. */
static void worker_bad(struct aiod_pool *p, struct worker *w, const char *why)
{
	fprintf(stderr, "libaiod: worker %d: %s; killing it\n", (int)w->pid, why);
	signal_worker(w, SIGKILL);
	worker_lost(p, w);
}

/*
 * w has finished req (fd: the one it opened, or -1; no_fd: it opened one
 * that did not reach us): w takes the next request, req's callback runs.
 */
static void worker_done(struct aiod_pool *p, struct worker *w,
			struct aiod_req *req, int fd, bool no_fd)
{
	set_cur(p, w, NULL);
	collect(p, req, fd);
	if (no_fd)
		req->result = -EMFILE;
	keep_done(p, w, req, fd);
	if (w->pinned)
		give(p, w, unpin(p, w)); /* a CLOSE of a copy it keeps */
	else if (w->retiring)
		worker_lost(p, w); /* EOF tells it to exit */
	else
		p->idle[p->nidle++] = w;
	dispatch(p);
	finish(p, req);
}

/* Whether w finished its request without ringing; if so, it is ours now. */
static bool take_silent(struct aiod_pool *p, struct worker *w)
{
	uint32_t silent = AIOD_WS_SILENT;

	return __atomic_compare_exchange_n(wstate_of(p, w), &silent, AIOD_WS_IDLE,
					   false, __ATOMIC_SEQ_CST,
					   __ATOMIC_SEQ_CST);
}

/* Complete what workers finished without ringing (aiod_pool_lazy()). */
static int reap_silent(struct aiod_pool *p)
{
	int ran = 0;

	for (unsigned i = 0; i < p->nworkers; i++) {
		struct worker *w = p->slots[i];

		if (w && w->cur && !w->lost && take_silent(p, w)) {
			worker_done(p, w, w->cur, -1, false);
			ran++;
		}
	}
	/* A retiring worker leaves its list when done: look from the head. */
	for (;;) {
		struct worker *w = p->retiring;

		while (w && !(w->cur && !w->lost && take_silent(p, w)))
			w = w->rnext;
		if (!w)
			break;
		worker_done(p, w, w->cur, -1, false);
		ran++;
	}
	return ran;
}

/*
 * Read everything w has sent.  Runs the callbacks of the requests it
 * finished and returns their number.
 */
static int worker_read(struct aiod_pool *p, struct worker *w)
{
	int ran = 0;

	while (!w->lost) {
		struct aiod_done done;
		struct iovec iov = { .iov_base = &done, .iov_len = sizeof(done) };
		union {
			char buf[CMSG_SPACE(sizeof(int) * 4)];
			struct cmsghdr align;
		} cbuf;
		struct msghdr mh = {
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf),
		};
		int fds[4], nfds = 0;
		struct aiod_req *req;
		ssize_t n;

		n = recvmsg(w->sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			worker_lost(p, w);
			break;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			memcpy(fds, CMSG_DATA(c), sizeof(int) * (size_t)nfds);
		}
		if (n != sizeof(done)) {
			close_fds(p, fds, nfds);
			worker_bad(p, w, "malformed reply");
			break;
		}
		if (done.kind == AIOD_DONE_HELLO) {
			close_fds(p, fds, nfds);
			if (done.version != AIOD_PROTO_VERSION || w->hello) {
				worker_bad(p, w, "wrong protocol version");
				break;
			}
			w->hello = true;
			p->spawn_failures = 0;
			continue;
		}
		req = w->cur;
		if (done.kind != AIOD_DONE_REPLY || !req ||
		    done.msg_off != req->msg_off_ || nfds > 1) {
			close_fds(p, fds, nfds);
			worker_bad(p, w, "reply to no request");
			break;
		}
		/* The worker opened an fd, but we had no fd left to take it. */
		worker_done(p, w, req, nfds ? fds[0] : -1,
			    (mh.msg_flags & MSG_CTRUNC) && msg_of(p, req)->ret_fd &&
			    !nfds);
		ran++;
		/*
		 * A worker holds one request, so nothing else can be waiting
		 * behind this reply but its EOF, which level-triggered epoll
		 * reports again: spare the read that would say EAGAIN.
		 */
		break;
	}
	return ran;
}

/* ---- spawning and reaping ------------------------------------------ */

/*
 * The first fd no dup2 of spawn_one() targets, so that one cannot
 * clobber another's source.
 */
#define FD_ABOVE_TARGETS (AIOD_WORKER_SHARED_FD + AIOD_MAX_SHARED_FDS)

/* fd itself if it is above the targets, else a copy there (fd closed). */
static int fd_above_targets(int fd)
{
	int high;

	if (fd >= FD_ABOVE_TARGETS)
		return fd;
	high = fcntl(fd, F_DUPFD_CLOEXEC, FD_ABOVE_TARGETS);
	close(fd);
	return high < 0 ? -errno : high;
}

static void free_wstate(struct aiod_pool *p, struct worker *w);

static int spawn_one(struct aiod_pool *p, struct worker **wp)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	struct epoll_event ev = { .events = EPOLLIN };
	char ppid[16], nshared[16], ws[24];
	char *argv[] = { "aiod", ppid, nshared, ws, NULL };
	int64_t ws_off;
	struct worker *w;
	sigset_t none, all;  /* "none": only the cancel signal */
	int sv[2], err;

	w = calloc(1, sizeof(*w));
	ws_off = aiod__buddy_alloc(&p->arena.alloc, sizeof(struct aiod_wstate));
	if (!w || ws_off < 0) {
		free(w);
		if (ws_off >= 0)
			aiod__buddy_free(&p->arena.alloc, (uint64_t)ws_off);
		return -ENOMEM;
	}
	w->ws_off = (uint64_t)ws_off;
	p->ws_used += aiod__buddy_block_size(&p->arena.alloc, w->ws_off);
	memset(p->arena.base + ws_off, 0, sizeof(struct aiod_wstate));
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		err = -errno;
		goto out_free;
	}
	sv[1] = fd_above_targets(sv[1]);
	if (sv[1] < 0 || fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0) {
		err = sv[1] < 0 ? sv[1] : -errno;
		goto out_close;
	}
	snprintf(ppid, sizeof(ppid), "%d", (int)p->self);
	snprintf(nshared, sizeof(nshared), "%u", p->nshared);
	snprintf(ws, sizeof(ws), "%llu", (unsigned long long)w->ws_off);
	/*
	 * The cancel signal's default action would kill a worker that has
	 * not yet installed its handler; it unblocks the signal after.
	 */
	sigemptyset(&none);
	sigaddset(&none, AIOD_CANCEL_SIGNAL);
	sigfillset(&all);
	sigdelset(&all, SIGKILL);
	sigdelset(&all, SIGSTOP);
	posix_spawn_file_actions_init(&fa);
	if (p->quiet) {
		posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDWR, 0);
		posix_spawn_file_actions_adddup2(&fa, 0, 1);
		posix_spawn_file_actions_adddup2(&fa, 0, 2);
	}
	posix_spawn_file_actions_adddup2(&fa, sv[1], AIOD_WORKER_SOCK_FD);
	posix_spawn_file_actions_adddup2(&fa, p->arena.fd, AIOD_WORKER_ARENA_FD);
	for (unsigned k = 0; k < p->nshared; k++)
		posix_spawn_file_actions_adddup2(&fa, p->shared_own[k],
						 AIOD_WORKER_SHARED_FD + (int)k);
	posix_spawn_file_actions_addclosefrom_np(&fa, AIOD_WORKER_SHARED_FD +
						 (int)p->nshared);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
				 POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	err = -posix_spawn(&w->pid, p->worker_path, &fa, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	close(sv[1]);
	if (err)
		goto out_sock;

	w->sock = sv[0];
	/*
	 * Until it is reaped, the pid cannot be reused: no race here.
	 * Where pidfd_open() does not exist (valgrind 3.19 does not know
	 * it), a dead worker is reaped at the pool's next event instead.
	 */
	w->pidfd = p->no_pidfd ? -1 : pidfd_open(w->pid, 0);
	if (w->pidfd < 0 && !p->no_pidfd && errno == ENOSYS)
		p->no_pidfd = true;
	if (w->pidfd < 0 && !p->no_pidfd) {
		err = -errno;
		kill(w->pid, SIGKILL);
		waitpid(w->pid, NULL, 0);
		goto out_sock;
	}
	ev.data.ptr = w;
	if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, w->sock, &ev) < 0 ||
	    (w->pidfd >= 0 &&
	     epoll_ctl(p->epfd, EPOLL_CTL_ADD, w->pidfd, &ev) < 0)) {
		err = -errno;
		kill(w->pid, SIGKILL);
		waitpid(w->pid, NULL, 0);
		if (w->pidfd >= 0)
			close(w->pidfd);
		goto out_sock;
	}
	*wp = w;
	return 0;

out_close:
	if (sv[1] >= 0)
		close(sv[1]);
out_sock:
	close(sv[0]);
out_free:
	free_wstate(p, w);
	free(w);
	return err;
}

static void free_wstate(struct aiod_pool *p, struct worker *w)
{
	p->ws_used -= aiod__buddy_block_size(&p->arena.alloc, w->ws_off);
	aiod__buddy_free(&p->arena.alloc, w->ws_off);
}

/* Fill every empty slot.  Returns 0 or the first spawn error. */
static int fill_slots(struct aiod_pool *p)
{
	for (unsigned i = 0; i < p->nworkers; i++) {
		int err;

		if (p->slots[i])
			continue;
		if (p->spawn_failures >= SPAWN_FAILURES_MAX)
			return -ECHILD;
		err = spawn_one(p, &p->slots[i]);
		if (err)
			return err;
		p->nlive++;
		p->idle[p->nidle++] = p->slots[i];
	}
	return 0;
}

static void fail_queue(struct aiod_pool *p, int err)
{
	while (p->q_head)
		defer_done(p, queue_pop(p), err);
}

/*
 * Bring the pool back to size after a spawn failed for want of a
 * resource (fds, processes); when no worker is left and none can start,
 * fail what waits rather than let it wait forever.
 */
static void refill(struct aiod_pool *p)
{
	if (p->setup || p->closing)
		return;
	if (fill_slots(p) < 0 && p->nlive == 0 && p->q_head) {
		fprintf(stderr, "libaiod: no worker could be started; failing queued requests\n");
		fail_queue(p, -EIO);
	}
}

static void try_reap(struct aiod_pool *p, struct worker *w)
{
	siginfo_t si = { .si_pid = 0 };

	if (w->reaped)
		return;
	if (waitid(P_PID, (id_t)w->pid, &si, WEXITED | WNOHANG) < 0) {
		/* ECHILD: the caller ignores SIGCHLD or reaped it itself. */
		if (errno != ECHILD)
			return;
		si.si_code = 0;
	} else if (si.si_pid == 0) {
		return;
	}
	w->reaped = true;
	if (!w->hello)
		p->early_exit = si.si_code == CLD_EXITED ? si.si_status : -1;
	if (w->pidfd >= 0) {
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, w->pidfd, NULL);
		close(w->pidfd);
	}
}

/* Free the reaped workers; called between event batches only. */
static void bury(struct aiod_pool *p)
{
	struct worker **pp = &p->dying;

	while (*pp) {
		struct worker *w = *pp;

		if (!w->reaped) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		free_wstate(p, w);
		free(w);
	}
}

/*
 * The worker's socket is gone: end or re-queue its request, replace it,
 * and keep it on the dying list until it is reaped.
 */
static void worker_lost(struct aiod_pool *p, struct worker *w)
{
	struct aiod_req *req = w->cur;
	int32_t pid = w->pid;
	uint32_t full = AIOD_MB_FULL;
	bool untaken;

	if (w->lost)
		return;
	w->lost = true;
	/*
	 * Handed over in memory and still there: take it back (the worker
	 * takes it by the same compare-and-swap, so one of us has it, also
	 * when it lives on: aiod_pool_free(), worker_bad()); it never ran.
	 * Not a CLOSE, though: its ring closed the caller's copy, whose
	 * number may be another file's now, and the worker's copy goes
	 * with the worker.
	 */
	untaken = req && req->op != AIOD_OP_CLOSE &&
		  __atomic_compare_exchange_n(&ws_of(p, w)->mbox, &full,
					      AIOD_MB_NONE, false,
					      __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
	/* Died polling: let another worker poll. */
	__atomic_compare_exchange_n(&hdr_of(p)->poller, &pid, 0, false,
				    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
	epoll_ctl(p->epfd, EPOLL_CTL_DEL, w->sock, NULL);
	close(w->sock);
	w->sock = -1;
	homes_leave(p, w);
	for (unsigned i = 0; i < p->nidle; i++)
		if (p->idle[i] == w)
			p->idle[i] = p->idle[--p->nidle];
	for (unsigned i = 0; i < p->nworkers; i++)
		if (p->slots[i] == w) {
			p->slots[i] = NULL;
			p->nlive--;
		}
	if (w->retiring) {
		struct worker **pp = &p->retiring;

		while (*pp != w)
			pp = &(*pp)->rnext;
		*pp = w->rnext;
		p->nretiring--;
	} else {
		p->deaths++;
		if (!w->hello)
			p->spawn_failures++;
	}
	w->next = p->dying;
	p->dying = w;
	try_reap(p, w);

	if (req) {
		const struct aiod_msg *m = msg_of(p, req);

		set_cur(p, w, NULL);
		if (untaken) {
			/* Not a try, as if its doorbell had failed. */
			queue_push(p, req, true);
		} else if (take_silent(p, w) ||
			   m->reply_state == AIOD_REPLY_DONE) {
			/* Done, its reply written or refused: as if it rang. */
			collect(p, req, -1);
			defer(p, req);
		} else if (m->reply_state != AIOD_REPLY_NONE || m->consumed) {
			/* The answer may have gone out, or the input is gone. */
			defer_done(p, req, -EIO);
		} else if (!p->closing && !(req->flags & AIOD_F_NORETRY) &&
		    aiod__req_idempotent(req) && req->tries_ < RERUNS_MAX &&
		    !msg_of(p, req)->cancel) {
			req->tries_++;
			p->retries++;
			queue_push(p, req, true);
		} else {
			defer_done(p, req, p->closing ? -ECANCELED : -EIO);
		}
	}
	refill(p);
}

/* ---- the public calls ---------------------------------------------- */

static void close_shared(struct aiod_pool *p)
{
	for (unsigned k = 0; k < p->nshared; k++)
		close(p->shared_own[k]);
	p->nshared = 0;
}

static unsigned default_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 2)
		n = 2;
	return n > 32 ? 64 : (unsigned)(2 * n);
}

static size_t round_pow2(size_t x)
{
	size_t r = 1;

	while (r < x)
		r <<= 1;
	return r;
}

static int run(struct aiod_pool *p, int timeout_ms);
static void reap_all(struct aiod_pool *p, int ms);

/* Wait for every worker's hello; -errno if one fails to start. */
static int await_hello(struct aiod_pool *p)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		unsigned ready = 0;
		long ms;

		for (unsigned i = 0; i < p->nworkers; i++)
			ready += p->slots[i] && p->slots[i]->hello;
		if (ready == p->nworkers)
			return 0;
		if (p->spawn_failures) {
			/* One is gone: wait for its status to say why. */
			reap_all(p, 1000);
			if (p->early_exit == AIOD_EXIT_PROTO)
				return -EPROTO;
			return -ECHILD;
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		ms = HELLO_TIMEOUT_MS - ((t.tv_sec - t0.tv_sec) * 1000 +
					 (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (ms <= 0)
			return -ETIMEDOUT;
		run(p, (int)(ms < 100 ? ms : 100));
	}
}

const char *aiod_worker_path(void)
{
	const char *path = getenv("AIOD_WORKER");

	return path && *path ? path : AIOD_WORKER_PATH;
}

int aiod_pool_new(struct aiod_pool **poolp, const struct aiod_pool_opts *opts)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	struct aiod_pool *p;
	size_t size;
	int err;

	size = opts && opts->arena_size ? opts->arena_size : (size_t)64 << 20;
	if (size < ((size_t)1 << 20) || size > ((size_t)1 << 40))
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->epfd = p->wakefd = -1;
	p->self = getpid();
	p->nworkers = opts && opts->workers ? opts->workers : default_workers();
	if (p->nworkers > AIOD_MAX_WORKERS) {
		free(p);
		return -EINVAL;
	}
	if (opts && (opts->nshared > AIOD_MAX_SHARED_FDS ||
		     opts->poll_us > 10000)) {
		free(p);
		return -EINVAL;
	}
	p->worker_path = strdup(aiod_worker_path());
	p->cap = p->nworkers;
	p->slots = calloc(p->cap, sizeof(*p->slots));
	p->idle = calloc(p->cap, sizeof(*p->idle));
	if (!p->worker_path || !p->slots || !p->idle) {
		err = -ENOMEM;
		goto out_free;
	}
	err = aiod__arena_init(&p->arena, round_pow2(size));
	if (err)
		goto out_free;
	err = fd_above_targets(p->arena.fd);
	if (err < 0)
		goto out_arena;
	p->arena.fd = err;
	for (; opts && p->nshared < opts->nshared; p->nshared++) {
		int fd = opts->shared_fds[p->nshared];

		p->shared[p->nshared] = fd;
		p->shared_own[p->nshared] = fd < 0 ? -1 :
			fcntl(fd, F_DUPFD_CLOEXEC, FD_ABOVE_TARGETS);
		if (p->shared_own[p->nshared] < 0) {
			err = fd < 0 ? -EBADF : -errno;
			goto out_arena;
		}
	}
	hdr_of(p)->poll_us = opts ? opts->poll_us : 0;
	p->quiet = opts && opts->quiet;

	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	p->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->epfd < 0 || p->wakefd < 0 ||
	    epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->wakefd, &ev) < 0) {
		err = -errno;
		goto out_arena;
	}
	/* Without a closer, closes run here, as they may. */
	p->closer.jobs[0] = p->closer.jobs[1] = -1;
	p->closer.acks[0] = p->closer.acks[1] = p->closer.pidfd = -1;
	if (!getenv("AIOD_NO_CLOSER") &&
	    aiod__closer_start(&p->closer) == 0) {
		ev.data.ptr = &p->closer;
		epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->closer.acks[0], &ev);
		ev.data.ptr = &p->closer.pidfd;
		if (p->closer.pidfd >= 0)
			epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->closer.pidfd, &ev);
	}
	p->setup = true;
	err = fill_slots(p);
	if (!err)
		err = await_hello(p);
	p->setup = false;
	if (err) {
		aiod_pool_free(p);
		return err;
	}
	*poolp = p;
	return 0;

out_arena:
	if (p->epfd >= 0)
		close(p->epfd);
	if (p->wakefd >= 0)
		close(p->wakefd);
	close_shared(p);
	aiod__arena_fini(&p->arena);
out_free:
	free(p->worker_path);
	free(p->slots);
	free(p->idle);
	free(p);
	return err;
}

/* Wait for the dying workers for up to ms milliseconds. */
static void reap_all(struct aiod_pool *p, int ms)
{
	for (int waited = 0; p->dying; waited += 10) {
		for (struct worker *w = p->dying; w; w = w->next)
			try_reap(p, w);
		bury(p);
		if (!p->dying || waited >= ms)
			return;
		usleep(10000);
	}
}

void aiod_pool_free(struct aiod_pool *p)
{
	if (!p)
		return;
	p->closing = true;
	__atomic_store_n(&hdr_of(p)->awake, 0, __ATOMIC_SEQ_CST); /* ring */
	for (unsigned i = 0; i < p->nworkers; i++) {
		struct worker *w = p->slots[i];

		if (!w)
			continue;
		if (w->cur) {
			__atomic_store_n(&msg_of(p, w->cur)->cancel, 1,
					 __ATOMIC_RELEASE);
			signal_worker(w, AIOD_CANCEL_SIGNAL);
		}
		worker_lost(p, w);      /* EOF tells it to exit */
	}
	while (p->retiring) {
		struct worker *w = p->retiring;

		__atomic_store_n(&msg_of(p, w->cur)->cancel, 1, __ATOMIC_RELEASE);
		signal_worker(w, AIOD_CANCEL_SIGNAL);
		worker_lost(p, w);
	}
	reap_all(p, 1000);
	for (struct worker *w = p->dying; w; w = w->next)
		signal_worker(w, SIGKILL);
	reap_all(p, 1000);
	for (struct worker *w = p->dying; w; w = w->next)
		fprintf(stderr, "libaiod: worker %d does not die\n", (int)w->pid);
	if (p->closer_watched)
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, p->closer.jobs[1], NULL);
	p->closer_watched = false;
	aiod__closer_stop(&p->closer);
	closer_gone(p);
	free(p->unacked);
	p->unacked = NULL;

	fail_queue(p, -ECANCELED);
	run_done_list(p);
	close(p->epfd);
	close(p->wakefd);
	close_shared(p);
	aiod__arena_fini(&p->arena);
	free(p->homes);
	free(p->worker_path);
	free(p->slots);
	free(p->idle);
	free(p);
}

int aiod_pool_resize(struct aiod_pool *p, unsigned n)
{
	struct worker **keep;
	unsigned nkeep = 0;

	if (n == 0 || n > AIOD_MAX_WORKERS)
		return -EINVAL;
	if (p->closing)
		return -ESHUTDOWN;
	if (n > p->cap) {
		struct worker **s = realloc(p->slots, n * sizeof(*s));

		if (!s)
			return -ENOMEM;
		p->slots = s;
		s = realloc(p->idle, n * sizeof(*s));
		if (!s)
			return -ENOMEM;
		p->idle = s;
		for (unsigned i = p->cap; i < n; i++)
			p->slots[i] = NULL;
		p->cap = n;
	}
	if (n >= p->nworkers) {
		p->nworkers = n;
		p->spawn_failures = 0;
		fill_slots(p); /* what fails to start now, refill() retries */
		dispatch(p);
		return 0;
	}
	/*
	 * Fewer: keep busy workers first, so that idle ones go now and
	 * none of what runs is disturbed; a busy one beyond n ends once its
	 * request is done.
	 */
	keep = calloc(p->nworkers, sizeof(*keep));
	if (!keep)
		return -ENOMEM;
	for (int pass = 0; pass < 2; pass++)
		for (unsigned i = 0; i < p->nworkers; i++) {
			struct worker *w = p->slots[i];

			if (w && (pass == 0) == (w->cur != NULL)) {
				keep[nkeep++] = w;
				p->slots[i] = NULL;
			}
		}
	/* keep[0, n) stay; the rest go, once the pool is n already. */
	for (unsigned i = 0; i < p->nworkers; i++)
		p->slots[i] = i < n && i < nkeep ? keep[i] : NULL;
	p->nworkers = n;
	for (unsigned i = n; i < nkeep; i++) {
		struct worker *w = keep[i];

		p->nlive--;
		for (unsigned k = 0; k < p->nidle; k++)
			if (p->idle[k] == w)
				p->idle[k] = p->idle[--p->nidle];
		w->retiring = true;
		w->rnext = p->retiring;
		p->retiring = w;
		p->nretiring++;
		if (!w->cur)
			worker_lost(p, w);
	}
	free(keep);
	refill(p);
	return 0;
}

int aiod_pool_fd(const struct aiod_pool *p)
{
	return p->epfd;
}

/* One epoll round: service what is ready, dispatch, run deferred. */
static int run(struct aiod_pool *p, int timeout_ms)
{
	struct epoll_event ev[64];
	bool wake = false;
	int n, ran = 0, err;

	if (p->nlive < p->nworkers)
		refill(p);
	closer_flow(p);
	n = epoll_wait(p->epfd, ev, 64, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	p->depth++;
	for (int i = 0; i < n; i++) {
		struct worker *w = ev[i].data.ptr;

		if (ev[i].data.ptr == &p->closer)
			ran += closer_read(p);
		else if (ev[i].data.ptr == &p->closer.jobs)
			closer_flow(p);
		else if (ev[i].data.ptr == &p->closer.pidfd) {
			ran += closer_read(p);
			if (aiod__closer_dead(&p->closer)) {
				fprintf(stderr, "libaiod: the closer died; "
					"closes run in the caller from now on\n");
				epoll_ctl(p->epfd, EPOLL_CTL_DEL, p->closer.pidfd, NULL);
				aiod__closer_reclaim(&p->closer);
				closer_flow(p);
				ran += closer_gone(p);
			}
		} else if (!w)
			wake = true;
		else if (!w->lost)
			ran += worker_read(p, w);
		else
			try_reap(p, w);
	}
	for (struct worker *w = p->dying; w; w = w->next)
		if (w->pidfd < 0)
			try_reap(p, w);
	if (p->closer.nbacklog)
		ran += closer_read(p);  /* sends the backlog on */
	ran += reap_silent(p);
	if (wake || p->done_head) {
		err = run_done_list(p);
		if (err > 0)
			ran += err;
	}
	/* An outer run() may still hold events naming these workers. */
	if (--p->depth == 0)
		bury(p);
	/* Room freed by callbacks and deferred completions. */
	dispatch(p);
	closer_flow(p);
	return ran;
}

void aiod_pool_lazy(struct aiod_pool *p, bool on)
{
	p->lazy = on;
	sync_lazy(p);
}

int aiod_pool_awake(struct aiod_pool *p, bool on)
{
	__atomic_store_n(&hdr_of(p)->awake, on && !p->closing, __ATOMIC_SEQ_CST);
	return on ? 0 : aiod_pool_reap(p);
}

void aiod_pool_hold_polls(struct aiod_pool *p, bool hold)
{
	__atomic_store_n(&hdr_of(p)->hold_polls, hold, __ATOMIC_RELAXED);
}

int aiod_pool_reap(struct aiod_pool *p)
{
	int ran;

	closer_flow(p);
	p->depth++;
	ran = reap_silent(p);
	if (--p->depth == 0)
		bury(p);
	return ran;
}

/*
 * Give w the shared fd k (its socket is FIFO, and a polling worker reads
 * a datagram counted in aiod_wstate.sent before a bell in memory: before
 * any next request).
 */
static int send_share(struct aiod_pool *p, struct worker *w, int fd)
{
	struct aiod_bell bell = { .msg_off = 0 };
	struct iovec iov = { .iov_base = &bell, .iov_len = sizeof(bell) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf),
	};
	struct cmsghdr *c;
	ssize_t n;

	memset(&cbuf, 0, sizeof(cbuf));
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	n = send_bell(p, w, &mh);
	return n < 0 ? -errno : 0;
}

int aiod_pool_share(struct aiod_pool *p, int fd)
{
	int own;

	if (p->closing)
		return -ESHUTDOWN;
	if (fd < 0 || shared_index(p, fd) >= 0)
		return -EINVAL;
	if (p->nshared >= AIOD_MAX_SHARED_FDS)
		return -ENOSPC;
	own = fcntl(fd, F_DUPFD_CLOEXEC, FD_ABOVE_TARGETS);
	if (own < 0)
		return errno == EBADF ? -EINVAL : -errno;
	p->shared[p->nshared] = fd;
	p->shared_own[p->nshared] = own;
	p->nshared++;
	/* Workers that do not take it are replaced by ones started with it. */
	for (unsigned i = 0; i < p->nworkers; i++) {
		struct worker *w = p->slots[i];

		if (w && !w->lost && send_share(p, w, own) < 0)
			worker_bad(p, w, "cannot share an fd with it");
	}
	return 0;
}

void aiod_pool_forget(struct aiod_pool *p, int fd)
{
	home_forget(p, fd);
}

int aiod_pool_process(struct aiod_pool *p)
{
	return run(p, 0);
}

static int wait_rung(struct aiod_pool *p, int timeout_ms);

/* Waiting, every finished request must ring: lazy is off meanwhile. */
int aiod_pool_wait(struct aiod_pool *p, int timeout_ms)
{
	bool lazy = p->lazy;
	int ran = aiod_pool_awake(p, false); /* we are about to block */

	if (ran)
		return ran;
	p->lazy = false;
	sync_lazy(p);
	ran = wait_rung(p, timeout_ms);
	p->lazy = lazy;
	sync_lazy(p);
	return ran;
}

static int wait_rung(struct aiod_pool *p, int timeout_ms)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		int left = timeout_ms, ran;

		if (p->submitted == p->completed)
			return 0;
		if (timeout_ms >= 0) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			left = timeout_ms - (int)((t.tv_sec - t0.tv_sec) * 1000 +
						  (t.tv_nsec - t0.tv_nsec) / 1000000);
			if (left < 0)
				left = 0;
		}
		ran = run(p, left);
		if (ran != 0 || left == 0)
			return ran;
	}
}

static bool reply_ok(const struct aiod_pool *p, const struct aiod_reply *r)
{
	return shared_index(p, r->fd) >= 0 && r->hdr_len <= AIOD_REPLY_HDR_MAX &&
	       r->hdr_len >= 4 && r->len_off <= r->hdr_len - 4 &&
	       r->res_off <= r->hdr_len - 4 && r->on_error <= 0 &&
	       r->on_error > -4096;
}

static bool name_ok(const char *name)
{
	return !name || strnlen(name, PATH_MAX) < PATH_MAX;
}

int aiod_submit(struct aiod_pool *p, struct aiod_req *req)
{
	size_t msg, data, max = p->arena.size / 2;

	if (p->closing)
		return -ESHUTDOWN;
	if (req->op >= AIOD_OP__COUNT || req->state_ != REQ_IDLE ||
	    (req->flags & ~(uint32_t)(AIOD_F_NORETRY | AIOD_F_LOOKUP |
				      AIOD_F_STATX | AIOD_F_KEEP | AIOD_F_UMASK)) ||
	    ((req->flags & AIOD_F_STATX) && req->op == AIOD_OP_CLOSE))
		return -EINVAL;
	if ((req->op == AIOD_OP_CLOSE || req->op == AIOD_OP_FLUSH) &&
	    shared_index(p, req->fd[0]) >= 0)
		return -EINVAL;
	if (!name_ok(req->name[0]) || !name_ok(req->name[1]))
		return -ENAMETOOLONG;
	if (req->cred && req->cred->ngroups > AIOD_MAX_GROUPS)
		return -EINVAL;
	for (int i = 0; i < 2; i++)
		if (req->fh_in[i] && req->fh_in[i]->handle_bytes > AIOD_FH_MAX)
			return -EINVAL;
	if ((aiod__op_data(req->op) != AIOD__DATA_NONE ||
	     req->op == AIOD_OP_PWRITE_PIPE) && req->len > AIOD_BUF_MAX)
		return -E2BIG;
	if (req->op == AIOD_OP_PWRITE_PIPE && (req->fd[1] < 0 || req->buf))
		return -EINVAL;
	if (aiod__op_data(req->op) == AIOD__DATA_IN && req->len && !req->buf)
		return -EINVAL;
	if (req->reply && !reply_ok(p, req->reply))
		return -EINVAL;
	request_sizes(p, req, &msg, &data);
	if (msg > max || data > max)
		return -E2BIG;

	req->result = 0;
	req->ret_fd = -1;
	req->out = NULL;
	req->replied = 0;
	req->reply_ns = 0;
	req->tries_ = 0;
	req->msg_off_ = req->tmp_off_ = 0;
	req->worker_ = NULL;
	p->submitted++;
	if (pin_close(p, req))
		return 0;
	queue_push(p, req, false);
	dispatch(p);
	return 0;
}

int aiod_cancel(struct aiod_pool *p, struct aiod_req *req)
{
	struct worker *w;

	switch (req->state_) {
	case REQ_QUEUED:
		if (!queue_remove(p, req) && !unpin_req(p, req))
			return -ENOENT;
		defer_done(p, req, -ECANCELED);
		return 0;
	case REQ_RUNNING:
		w = req->worker_;
		__atomic_store_n(&msg_of(p, req)->cancel, 1, __ATOMIC_RELEASE);
		signal_worker(w, AIOD_CANCEL_SIGNAL);
		return 0;
	case REQ_DONE:
	case REQ_CLOSING:
		return 0;
	default:
		return -ENOENT;
	}
}

uint64_t aiod__pool_mem_bells(const struct aiod_pool *p)
{
	return p->mem_bells;
}

pid_t aiod_req_worker(const struct aiod_req *req)
{
	const struct worker *w = req->worker_;

	return req->state_ == REQ_RUNNING && w ? w->pid : 0;
}

void *aiod_buf_alloc(struct aiod_pool *p, size_t size)
{
	int64_t off;

	if (!size || size > AIOD_BUF_MAX)
		return NULL;
	if (size < 4096)
		size = 4096;
	off = aiod__buddy_alloc(&p->arena.alloc, size);
	return off < 0 ? NULL : p->arena.base + off;
}

void aiod_buf_free(struct aiod_pool *p, void *buf)
{
	if (!buf)
		return;
	aiod__buddy_free(&p->arena.alloc, (uint64_t)((char *)buf - p->arena.base));
	/* A request may have been waiting for exactly this room. */
	dispatch(p);
}

int aiod_pool_stats(const struct aiod_pool *p, struct aiod_pool_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->workers = p->nlive;
	st->busy = st->workers - p->nidle + p->nretiring;
	st->queued = p->nqueued + p->npinned;
	st->submitted = p->submitted;
	st->completed = p->completed;
	st->worker_deaths = p->deaths;
	st->retries = p->retries;
	st->arena_size = p->arena.size;
	st->arena_used = p->arena.alloc.used - p->ws_used;
	return 0;
}
