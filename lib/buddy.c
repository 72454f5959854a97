/* SPDX-License-Identifier: MIT */
/*
 * buddy.c - the binary buddy allocator behind the arena.
 *
 * Why buddy: allocation and free are O(log n), freeing coalesces at once
 * so fragmentation cannot grow without bound, and every block is aligned
 * to its own size, which gives page-aligned data buffers (O_DIRECT) for
 * free.  The price is rounding up to a power of two, which the arena's
 * sizes (small messages, 4 KiB..1 MiB buffers) mostly are anyway.
 *
 * meta[i] describes min block i: NOT_HEAD if it lies inside a larger
 * block, otherwise the block's order, with FREE_BIT when it is free.
 * Free blocks of each order form a doubly linked list through next[] and
 * prev[], so removing a buddy during coalescing is O(1).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "aiod-internal.h"

#define NOT_HEAD 0xffu
#define FREE_BIT 0x80u

static bool is_pow2(size_t x)
{
	return x && !(x & (x - 1));
}

static void list_push(struct aiod__buddy *b, unsigned order, int32_t i)
{
	b->meta[i] = (uint8_t)(order | FREE_BIT);
	b->prev[i] = -1;
	b->next[i] = b->head[order];
	if (b->head[order] >= 0)
		b->prev[b->head[order]] = i;
	b->head[order] = i;
}

static void list_remove(struct aiod__buddy *b, unsigned order, int32_t i)
{
	if (b->prev[i] >= 0)
		b->next[b->prev[i]] = b->next[i];
	else
		b->head[order] = b->next[i];
	if (b->next[i] >= 0)
		b->prev[b->next[i]] = b->prev[i];
	b->meta[i] = NOT_HEAD;
}

int aiod__buddy_init(struct aiod__buddy *b, size_t size, size_t min)
{
	unsigned order = 0;

	if (!is_pow2(size) || !is_pow2(min) || min > size)
		return -EINVAL;
	while ((min << order) < size)
		order++;
	if (order > AIOD__BUDDY_MAX_ORDER || size / min > INT32_MAX)
		return -EINVAL;

	b->size = size;
	b->min = min;
	b->max_order = order;
	b->nblocks = (uint32_t)(size / min);
	b->used = 0;
	b->meta = malloc(b->nblocks);
	b->next = malloc(b->nblocks * sizeof(*b->next));
	b->prev = malloc(b->nblocks * sizeof(*b->prev));
	if (!b->meta || !b->next || !b->prev) {
		aiod__buddy_fini(b);
		return -ENOMEM;
	}
	for (unsigned o = 0; o <= AIOD__BUDDY_MAX_ORDER; o++)
		b->head[o] = -1;
	for (uint32_t i = 0; i < b->nblocks; i++)
		b->meta[i] = NOT_HEAD;
	list_push(b, order, 0);
	return 0;
}

void aiod__buddy_fini(struct aiod__buddy *b)
{
	free(b->meta);
	free(b->next);
	free(b->prev);
	b->meta = NULL;
	b->next = b->prev = NULL;
}

int64_t aiod__buddy_alloc(struct aiod__buddy *b, size_t size)
{
	unsigned want = 0, o;
	int32_t i;

	if (size == 0 || size > b->size)
		return -ENOMEM;
	while ((b->min << want) < size)
		want++;
	for (o = want; o <= b->max_order && b->head[o] < 0; o++)
		;
	if (o > b->max_order)
		return -ENOMEM;

	i = b->head[o];
	list_remove(b, o, i);
	while (o > want) {
		o--;
		list_push(b, o, i + (INT32_C(1) << o));
	}
	b->meta[i] = (uint8_t)want;
	b->used += b->min << want;
	return (int64_t)i * (int64_t)b->min;
}

static int32_t block_of(const struct aiod__buddy *b, uint64_t off)
{
	int32_t i;

	if (off % b->min || off >= b->size)
		goto bad;
	i = (int32_t)(off / b->min);
	if (b->meta[i] == NOT_HEAD || (b->meta[i] & FREE_BIT))
		goto bad;
	return i;
bad:
	fprintf(stderr, "libaiod: freeing arena offset %llu that is not allocated\n",
		(unsigned long long)off);
	abort();
}

size_t aiod__buddy_block_size(const struct aiod__buddy *b, uint64_t off)
{
	return b->min << b->meta[block_of(b, off)];
}

void aiod__buddy_free(struct aiod__buddy *b, uint64_t off)
{
	int32_t i = block_of(b, off);
	unsigned o = b->meta[i];

	b->used -= b->min << o;
	while (o < b->max_order) {
		int32_t buddy = i ^ (INT32_C(1) << o);

		if (b->meta[buddy] != (FREE_BIT | o))
			break;
		list_remove(b, o, buddy);
		b->meta[i] = NOT_HEAD;
		if (buddy < i)
			i = buddy;
		o++;
	}
	list_push(b, o, i);
}
