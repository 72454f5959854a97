/* SPDX-License-Identifier: MIT */
/*
 * shm.c - the shared-memory arena: a sealed memfd, mapped once at full
 * size by the client and by every worker.
 *
 * The memfd is sealed against growing and shrinking, so no process can
 * make another's mapping fault with SIGBUS by resizing it.  Pages are
 * allocated lazily by the kernel, so a large arena costs only what is
 * touched.  The first AIOD_ARENA_RESERVED bytes hold the header a worker
 * checks at start; the buddy allocator hands out the rest.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "aiod-internal.h"

int aiod__arena_init(struct aiod__arena *a, size_t size)
{
	struct aiod_arena_hdr *hdr;
	int64_t off;
	int err;

	a->fd = memfd_create("aiod-arena", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (a->fd < 0)
		return -errno;
	if (ftruncate(a->fd, (off_t)size) < 0 ||
	    fcntl(a->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		err = -errno;
		goto out_close;
	}
	a->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, a->fd, 0);
	if (a->base == MAP_FAILED) {
		err = -errno;
		goto out_close;
	}
	a->size = size;
	err = aiod__buddy_init(&a->alloc, size, AIOD__ARENA_MIN_BLOCK);
	if (err)
		goto out_unmap;

	off = aiod__buddy_alloc(&a->alloc, AIOD_ARENA_RESERVED);
	if (off != 0) {
		err = -EINVAL;
		goto out_buddy;
	}
	hdr = (struct aiod_arena_hdr *)a->base;
	hdr->magic = AIOD_PROTO_MAGIC;
	hdr->version = AIOD_PROTO_VERSION;
	hdr->size = size;
	hdr->msg_size = sizeof(struct aiod_msg);
	return 0;

out_buddy:
	aiod__buddy_fini(&a->alloc);
out_unmap:
	munmap(a->base, size);
out_close:
	close(a->fd);
	return err;
}

void aiod__arena_fini(struct aiod__arena *a)
{
	aiod__buddy_fini(&a->alloc);
	munmap(a->base, a->size);
	close(a->fd);
}
