/* SPDX-License-Identifier: MIT */
/*
 * aiod/worker.h - what the worker's main loop shares with its op handlers.
 */
#ifndef AIOD_WORKER_H
#define AIOD_WORKER_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aiod-proto.h"

/*
 * One request as a handler sees it: the message, its fds and names
 * resolved and checked against the arena's bounds by the main loop.
 */
struct op_ctx {
	struct aiod_msg *m;
	int fd[AIOD_WIRE_MAXFD];    /* an fd, AT_FDCWD, or -1 */
	const char *name[2];        /* NUL-terminated, or NULL */
	char *data;                 /* in the arena, or NULL */
	size_t data_len;
	int ret_fd;                 /* handler: an fd to send back, or -1 */
	int close_fd0;              /* handler: fd[0] was closed by it */
	int fh_fd[2];               /* fds opened from fh_off[i], or -1 */
	bool dir_kept[2];           /* fd[i] is a kept directory's (main.c) */
};

typedef int64_t op_fn(struct op_ctx *c);

/* The handlers, indexed by opcode (ops.c). */
extern op_fn *const aiod_ops[AIOD_OP__COUNT];

/* Before the first request, with the worker's own capabilities. */
void aiod_ops_init(void);

/* Whether the client asked to abandon the request (main.c). */
bool aiod_cancelled(const struct op_ctx *c);

/*
 * Blocking waits poll for cancellation on a timer while armed, so a
 * cancel signal that lands just before the syscall starts is not lost.
 */
void aiod_wait_begin(void);
void aiod_wait_end(void);

/*
 * open_by_handle_at(mount_fd, fh, flags), which may say ENOMEM for a
 * while where it means ESTALE: tried again then (main.c).  Returns the
 * fd or -errno.
 */
int64_t aiod_open_handle(const struct op_ctx *c, int mount_fd,
			 const struct aiod_fh *fh, int flags);

/*
 * Run expr (a syscall returning < 0 with errno on failure) again while it
 * fails with EINTR and the request is not cancelled.  Evaluates to its
 * result, or -errno.
 */
#define AIOD_RETRY(c, expr)                                                  \
	({                                                                   \
		long r_;                                                     \
		int e_ = 0;                                                  \
		do {                                                         \
			r_ = (long)(expr);                                   \
			e_ = r_ < 0 ? errno : 0;                             \
		} while (e_ == EINTR && !aiod_cancelled(c));                 \
		e_ ? (int64_t)-e_ : (int64_t)r_;                             \
	})

#endif /* AIOD_WORKER_H */
