/* SPDX-License-Identifier: MIT */
/*
 * aiod-proto.h - the wire format between libaiod and its aiod workers.
 *
 * Shared by lib/ and aiod/ only; never installed.  Both sides are built
 * from the same tree, and the version below is checked when a worker
 * starts, so the layout may change freely between versions.
 *
 * The arena is a memfd mapped MAP_SHARED at full size by the client and
 * every worker.  Offset 0 holds struct aiod_arena_hdr.  Everything else
 * in it is allocated by the client: request messages (struct aiod_msg
 * followed by a variable part holding names, groups and small data) and
 * data buffers.  Messages refer to arena memory by offset from the arena
 * start, never by pointer, since each process maps the arena elsewhere.
 *
 * Each worker has a SOCK_SEQPACKET socket to the client:
 *  - worker -> client, once at start: struct aiod_done with kind HELLO.
 *  - client -> worker: struct aiod_bell, one datagram per request, with
 *    the request's fds (0 to AIOD_WIRE_MAXFD) as SCM_RIGHTS, but for the
 *    shared fds each worker got at start and its kept copies (below).
 *    The worker closes the fds it received when the request is done,
 *    but one it is told to keep.
 *  - client -> worker: struct aiod_bell with msg_off 0 and one fd: a
 *    shared fd added after the worker started (aiod_pool_share()); it
 *    becomes the next one from AIOD_WORKER_SHARED_FD on.
 *  - worker -> client: struct aiod_done with kind REPLY when the request
 *    is done, with the new fd as SCM_RIGHTS if it opened one.
 * A worker holds at most one request at a time.
 *
 * Kept copies (AIOD_F_KEEP): a worker has AIOD_KEEP_SLOTS slots, each
 * empty or holding its copy of one of the client's fds, kept between
 * requests.  The client decides which fd goes in which slot of which
 * worker (aiod_msg.keep, keep_slot), so it always knows where a copy
 * lives.  STORE: fd[0] arrives by SCM_RIGHTS as usual and, instead of
 * being closed after the request, goes in the slot; STORE_RET: the fd
 * the request opens is sent as usual and a copy of it goes in the slot;
 * USE: fd[0] (AIOD_WIRE_FD_KEPT) is the slot's copy, and a CLOSE of it
 * empties the slot.  A worker that stores a copy says so in
 * aiod_msg.kept before it replies.  AIOD_WF_DROP_KEPT: close every
 * kept copy before the request (one that may wait for a lock: no close
 * must ever wait behind it).
 *
 * A message with reply_fd set asks the worker, when the op succeeds, to
 * write the client's reply itself (struct aiod_reply in aiod.h) to that
 * shared fd: reply_state goes to WRITING before the write and DONE
 * after it, so that a client who sees the worker die knows whether the
 * reply may have gone out (then the request must not run again).  A
 * worker that takes input a second run would not find again (the pipe
 * of PWRITE_PIPE, when it cannot leave it as it was) sets consumed
 * first, with the same effect.  With reply_on_error set, the reply is
 * written only when the op fails with that error, never on success.
 * With poll_us set in the arena header and hold_polls clear, a worker
 * that has replied and wins the header's poller word polls for the next
 * doorbell that long before it sleeps, and the client hands its next
 * request to that worker first, through memory when the request carries
 * no fd (struct aiod_wstate's mbox).
 */
#ifndef AIOD_PROTO_H
#define AIOD_PROTO_H

#include <stddef.h>
#include <signal.h>
#include <stdint.h>

#include "aiod.h"

#define AIOD_PROTO_MAGIC 0x646f6961u /* "aiod" in memory order */
#define AIOD_PROTO_VERSION 15u /* 15: AIOD_F_UMASK */

/*
 * The fds a worker is started with: its socket, the arena, and from
 * AIOD_WORKER_SHARED_FD on the pool's shared fds (as many as its second
 * argument says; aiod_pool_share() sends more later).
 */
#define AIOD_WORKER_SOCK_FD 3
#define AIOD_WORKER_ARENA_FD 4
#define AIOD_WORKER_SHARED_FD 5

/*
 * The client sends this signal to a worker after setting msg->cancel; the
 * worker's handler is installed without SA_RESTART, so a blocking wait in
 * progress ends with EINTR.
 */
#define AIOD_CANCEL_SIGNAL SIGUSR1

/* Worker exit statuses the client tells apart. */
enum {
	AIOD_EXIT_OK = 0,       /* EOF on its socket */
	AIOD_EXIT_USAGE = 2,    /* bad invocation, or its parent is gone */
	AIOD_EXIT_PROTO = 3,    /* the arena speaks another version */
	AIOD_EXIT_IO = 4,       /* its socket failed */
};

/* Where the arena header ends and allocations may begin. */
#define AIOD_ARENA_RESERVED 4096u

struct aiod_arena_hdr {
	uint32_t magic;
	uint32_t version;
	uint64_t size;          /* bytes mapped */
	uint32_t msg_size;      /* sizeof(struct aiod_msg) */
	uint32_t lazy;          /* client: see aiod_pool_lazy() */
	uint32_t poll_us;       /* aiod_pool_opts.poll_us */
	int32_t poller;         /* pid of the worker polling now, or 0 */
	uint32_t busy;          /* client: workers holding a request */
	uint32_t awake;         /* client: see aiod_pool_awake() */
	uint32_t hold_polls;    /* client: see aiod_pool_hold_polls() */
	uint32_t pad;
};

struct aiod_bell {
	uint64_t msg_off;
};

enum {
	AIOD_DONE_HELLO = 1,
	AIOD_DONE_REPLY = 2,
};

struct aiod_done {
	uint32_t kind;
	uint32_t version;       /* HELLO: AIOD_PROTO_VERSION */
	uint64_t msg_off;       /* REPLY: the message it answers */
};

/* aiod_msg.reply_state */
enum {
	AIOD_REPLY_NONE = 0,    /* no reply written (none asked, or an error) */
	AIOD_REPLY_WRITING = 1, /* being written: it may have gone out */
	AIOD_REPLY_DONE = 2,    /* written, or refused (reply_err) */
};

/*
 * Each worker has a word of its own in the arena (struct aiod_wstate, at
 * the offset its third argument gives) saying where its request stands.
 * A worker that finished a request whose reply it wrote itself may skip
 * its REPLY datagram while the arena header's lazy word is set, and one
 * that finished any request that returns no fd, while the awake word
 * is: it stores SILENT, then reads the word; if it is clear it moves
 * SILENT to RANG and sends REPLY.  The client takes a SILENT request by
 * moving the word to IDLE, and after clearing lazy or awake looks at
 * every busy worker's word again, so exactly one of the two completes
 * the request and none is forgotten.  Any other finished request: RANG,
 * then REPLY.  The
 * client stores RUNNING before each doorbell.
 *
 * A polling worker takes its doorbell from memory: it moves mbox from
 * NONE to POLLING and watches it.  The client, for a request that
 * carries no fd, stores the request's offset in bell and moves mbox
 * from POLLING to FULL; the worker takes the offset and moves FULL to
 * NONE (a client that gives the worker up takes a request back by the
 * same move).
 * If the worker stopped polling first (it moves POLLING back to NONE
 * before it sleeps), the client's move fails and it rings the socket.
 * After every datagram it sends, the client adds one to sent; a worker
 * counts those it received, so one polling sees in memory, too, that a
 * datagram waits.  Neither side makes a syscall for a request handed
 * over in memory.
 */
enum {
	AIOD_WS_IDLE = 0,
	AIOD_WS_RUNNING = 1,
	AIOD_WS_SILENT = 2,
	AIOD_WS_RANG = 3,
};

/* aiod_wstate.mbox */
enum {
	AIOD_MB_NONE = 0,
	AIOD_MB_POLLING = 1,    /* worker: a doorbell in memory is taken */
	AIOD_MB_FULL = 2,       /* client: bell holds the next request */
};

struct aiod_wstate {
	uint32_t state;         /* AIOD_WS_*, atomic */
	uint32_t mbox;          /* AIOD_MB_*, atomic */
	uint64_t bell;          /* with FULL: the request's msg_off */
	uint32_t sent;          /* client: datagrams sent, atomic */
	uint32_t pad;
};

/* Most fds one request carries (rename, link, copy_file_range: two). */
#define AIOD_WIRE_MAXFD 2

/* Values of aiod_msg.fd[] other than an index into the SCM_RIGHTS array. */
#define AIOD_WIRE_FD_NONE (-1)
#define AIOD_WIRE_FD_CWD (-100) /* AT_FDCWD */
#define AIOD_WIRE_FD_SHARED (-200) /* minus k: shared fd k */
#define AIOD_WIRE_FD_KEPT (-300)   /* the copy in slot keep_slot */

/* Slots for kept copies a worker has (see the top of this file). */
#define AIOD_KEEP_SLOTS 256u

/* aiod_msg.keep */
enum {
	AIOD_KEEP_NONE = 0,
	AIOD_KEEP_USE = 1,      /* fd[0] is the slot's copy */
	AIOD_KEEP_STORE = 2,    /* keep fd[0] in the slot after the request */
	AIOD_KEEP_STORE_RET = 3, /* keep a copy of the fd it opens */
};

/* aiod_msg.wflags: what the variable part holds. */
enum {
	AIOD_WF_CRED = 1u << 0, /* uid, gid, groups apply */
	AIOD_WF_FH = 1u << 1,   /* data_off holds a struct aiod_fh (in) */
	AIOD_WF_REPLY_DATA = 1u << 2, /* the reply carries the data out */
	AIOD_WF_DROP_KEPT = 1u << 3, /* close every kept copy first */
};

/*
 * One request.  "client:" fields are written by the client before the
 * doorbell and only read by the worker; "worker:" fields are written by
 * the worker before its reply and only read by the client after it.
 * cancel is the one field both touch while the worker holds the message,
 * with atomic loads and stores.
 */
struct aiod_msg {
	uint32_t op;            /* client: enum aiod_op */
	uint32_t flags;         /* client: AIOD_F_* */
	uint64_t id;            /* client: for traces */
	uint32_t size;          /* client: bytes of this message block */
	uint32_t wflags;        /* client: AIOD_WF_* */
	uint32_t cancel;        /* client: nonzero asks to abandon a wait */
	int32_t fd[AIOD_WIRE_MAXFD]; /* client: see AIOD_WIRE_FD_* */
	uint32_t name_off[2];   /* client: from message start; 0: none */
	uint32_t uid, gid;      /* client: with AIOD_WF_CRED */
	uint32_t ngroups;       /* client: with AIOD_WF_CRED */
	uint32_t groups_off;    /* client: from message start */
	uint32_t fh_off[2];     /* client: struct aiod_fh naming object i,
				   8-aligned, from message start; 0: none */
	uint32_t pad0;
	uint64_t data_off;      /* client: data buffer, from arena start */
	uint64_t data_len;      /* client: its size */
	int64_t arg[5];         /* client: per op, see enum aiod_op */
	struct aiod_lock lk;    /* client and worker: AIOD_OP_LOCK */
	struct aiod_fileattr fa; /* client and worker: AIOD_OP_FILEATTR */
	int32_t reply_fd;       /* client: AIOD_WIRE_FD_SHARED - k, or NONE */
	uint32_t keep;          /* client: AIOD_KEEP_* */
	uint32_t keep_slot;     /* client: below AIOD_KEEP_SLOTS */
	uint32_t reply_hdr_len; /* client: struct aiod_reply */
	uint32_t reply_len_off;
	uint32_t reply_res_off;
	int32_t reply_on_error; /* client: 0, or the one error to reply to */
	uint32_t pad1;
	uint8_t reply_hdr[AIOD_REPLY_HDR_MAX];

	uint32_t reply_state;   /* worker: AIOD_REPLY_* */
	int32_t reply_err;      /* worker: errno of a failed reply write */
	uint32_t consumed;      /* worker: 1: never run this message again */
	uint32_t kept;          /* worker: 1: the slot holds a copy now */
	uint64_t reply_ns;      /* worker: CLOCK_MONOTONIC when it was written */

	int64_t result;         /* worker: >= 0 or -errno */
	uint32_t ret_fd;        /* worker: 1 if an fd rides on the reply */
	int32_t mount_id;       /* worker */
	uint32_t eof;           /* worker: READDIR, READDIRPLUS */
	uint32_t pad2;
	struct statx stx;       /* worker */
	struct aiod_fh fh;      /* worker */
	struct aiod_statfs sfs; /* worker */
	/* The variable part follows: names, groups, inline data. */
};

_Static_assert(sizeof(struct aiod_arena_hdr) == 48, "arena header layout");
_Static_assert(sizeof(struct aiod_bell) == 8, "bell layout");
_Static_assert(sizeof(struct aiod_wstate) == 24, "wstate layout");
_Static_assert(sizeof(struct aiod_done) == 16, "done layout");
_Static_assert(sizeof(struct aiod_lock) == 24, "lock layout");
_Static_assert(sizeof(struct aiod_fileattr) == 24, "fileattr layout");
_Static_assert(sizeof(struct aiod_fh) == 8 + AIOD_FH_MAX, "fh layout");
_Static_assert(sizeof(struct statx) == 256, "statx is kernel ABI");
_Static_assert(sizeof(struct aiod_direntplus) == 424, "direntplus layout");
_Static_assert(offsetof(struct aiod_msg, data_off) % 8 == 0, "msg align");
_Static_assert(offsetof(struct aiod_msg, result) % 8 == 0, "msg align");
_Static_assert(offsetof(struct aiod_msg, stx) % 8 == 0, "msg align");
_Static_assert(sizeof(struct aiod_msg) % 8 == 0, "msg align");
_Static_assert(sizeof(struct aiod_msg) <= 1024, "msg fits a small block");
_Static_assert(AIOD_WIRE_FD_CWD == AT_FDCWD, "AT_FDCWD passes through");

#endif /* AIOD_PROTO_H */
