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

#endif /* AIOD_INTERNAL_H */
