/* SPDX-License-Identifier: MIT */
/*
 * aiod-internal.h - what the files of libaiod share with each other (and
 * with the unit tests, which link the static copy of the library).
 * Names here carry the aiod__ prefix and are never exported.
 */
#ifndef AIOD_INTERNAL_H
#define AIOD_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "aiod.h"
#include "aiod-proto.h"

/* ---- buddy.c: the arena's allocator --------------------------------- */

/*
 * A binary buddy allocator over [0, size) in blocks of 2^k * min bytes.
 * Its bookkeeping lives in ordinary memory, outside the arena, so a
 * misbehaving worker cannot corrupt it.  A block of 4096 bytes or more is
 * aligned to 4096 within the range.
 */
#define AIOD__BUDDY_MAX_ORDER 40

struct aiod__buddy {
	size_t size;            /* power of two */
	size_t min;             /* power of two, smallest block */
	unsigned max_order;     /* size == min << max_order */
	uint32_t nblocks;       /* size / min */
	uint8_t *meta;          /* per min block: head/free/order */
	int32_t *next, *prev;   /* free-list links, by block index */
	int32_t head[AIOD__BUDDY_MAX_ORDER + 1];
	size_t used;            /* bytes in allocated blocks */
};

int aiod__buddy_init(struct aiod__buddy *b, size_t size, size_t min);
void aiod__buddy_fini(struct aiod__buddy *b);
/* Returns the offset of a block of at least size bytes, or -ENOMEM. */
int64_t aiod__buddy_alloc(struct aiod__buddy *b, size_t size);
/* Frees the block at off; aborts if off is not an allocated block. */
void aiod__buddy_free(struct aiod__buddy *b, uint64_t off);
/* Size of the allocated block at off. */
size_t aiod__buddy_block_size(const struct aiod__buddy *b, uint64_t off);

/* ---- shm.c: the shared-memory arena --------------------------------- */

struct aiod__arena {
	int fd;                 /* memfd, sealed against resizing */
	char *base;
	size_t size;
	struct aiod__buddy alloc;
};

#define AIOD__ARENA_MIN_BLOCK 256u

int aiod__arena_init(struct aiod__arena *a, size_t size);
void aiod__arena_fini(struct aiod__arena *a);

static inline bool aiod__arena_owns(const struct aiod__arena *a,
				    const void *p, size_t len)
{
	const char *c = p;

	return c >= a->base + AIOD_ARENA_RESERVED && c < a->base + a->size &&
	       len <= (size_t)(a->base + a->size - c);
}

/* ---- pool.c --------------------------------------------------------- */

/* Requests handed to a polling worker in memory, without a datagram. */
uint64_t aiod__pool_mem_bells(const struct aiod_pool *p);

/* ---- prep.c --------------------------------------------------------- */

/*
 * Whether req may run a second time after its worker died mid-request:
 * its op is idempotent and its arguments do not depend on a file
 * position the first run may have moved.
 */
bool aiod__req_idempotent(const struct aiod_req *req);

enum { AIOD__DATA_NONE, AIOD__DATA_IN, AIOD__DATA_OUT };
/* Which way an op's buffer goes: AIOD__DATA_IN is caller to worker. */
unsigned aiod__op_data(unsigned op);

/* ---- closer.c: closes the caller's fds in a process of its own ------ */

struct aiod__close_job {
	int32_t fd;
	uint32_t pad;
	uint64_t token;         /* 0: no ack wanted */
};

/*
 * A mount and whether its filesystem's files have no flush operation.
 * A mount id may be used again after an unmount: the device tells the
 * new mount from the old.
 */
struct aiod__mount_kind {
	uint64_t mnt_id;
	uint32_t dev_major, dev_minor;
	bool flushless;
};

#define AIOD__MOUNT_KINDS 32

struct aiod__closer {
	pid_t pid;              /* 0: none (closes run in the caller) */
	int pidfd;              /* -1 where pidfd_open() is missing */
	int jobs[2];            /* pipe: the caller writes jobs[1] */
	int acks[2];            /* pipe: the caller reads acks[0] */
	struct aiod__close_job *backlog; /* jobs the pipe had no room for */
	size_t nbacklog, cap;
	struct aiod__mount_kind kinds[AIOD__MOUNT_KINDS]; /* seen, newest */
	unsigned nkinds, next_kind;                        /* replaced next */
};

/* Start the closer.  Returns 0 or -errno (c then has no closer). */
int aiod__closer_start(struct aiod__closer *c);
/*
 * Give fd to the closer, which closes it and, for a non-zero token,
 * hands the token back through aiod__closer_acks().  Returns false if
 * there is no closer or no memory: fd is still the caller's.
 */
bool aiod__closer_give(struct aiod__closer *c, int fd, uint64_t token);
/* The same, but fd waits in the backlog until aiod__closer_send(). */
bool aiod__closer_queue(struct aiod__closer *c, int fd, uint64_t token);
/* Write what waits in the backlog, as far as the pipe takes it. */
void aiod__closer_send(struct aiod__closer *c);
/*
 * The closer died (aiod__closer_dead()): close here the fds it never
 * took, those in the backlog and those still in the job pipe (the read
 * end is in the shared table).  One it had read and not yet closed is
 * lost with it: its number may be closed already, and is left alone.
 */
void aiod__closer_reclaim(struct aiod__closer *c);
/*
 * Whether fd's file is on a filesystem known to have no flush operation
 * (ext2/3/4, XFS, tmpfs), so that closing a copy of it that is not its
 * last cannot block and may as well run in the caller.  Asks the
 * filesystem nothing: statx(AT_STATX_DONT_SYNC) for the mount id, then
 * /proc/self/mountinfo once per mount.  *unlinked (if not NULL): whether
 * the file has no link left, so that its last close frees its blocks,
 * which may take long on any filesystem.
 */
bool aiod__closer_flushless(struct aiod__closer *c, int fd, bool *unlinked);
/* Up to max tokens of closes done (also sends what waited in the backlog). */
size_t aiod__closer_acks(struct aiod__closer *c, uint64_t *tokens, size_t max);
/* Whether the closer has exited (reaped then: c->pid becomes 0). */
bool aiod__closer_dead(struct aiod__closer *c);
/* End the closer after the jobs it was given, and free c's resources. */
void aiod__closer_stop(struct aiod__closer *c);

#endif /* AIOD_INTERNAL_H */
