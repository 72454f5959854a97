/* SPDX-License-Identifier: MIT */
/*
 * uvhash - aiodhash with the pool driven from a libuv loop: an example of
 * fitting libaiod into an event library that owns the loop.
 *
 *   uvhash [-j DEPTH] FILE...
 *
 * prints exactly what aiodhash prints: "HASH  FILE" for each FILE, in
 * argument order (64-bit FNV-1a, 16 hex digits), errors as
 * "uvhash: FILE: reason" on stderr with exit status 1.
 *
 * The work itself lives in hashjob.c, shared with aiodhash.c.  The glue
 * is one uv_poll_t on aiod_pool_fd(): libuv watches the fd (level-
 * triggered, so a batch that aiod_pool_process() leaves unfinished wakes
 * it again), and its callback runs aiod_pool_process(), whose callbacks
 * submit the next requests.  Once every file is done, closing the handle
 * leaves the loop with nothing to do, so uv_run() returns.
 */
#include <string.h>

#include <uv.h>

#include <aiod.h>

#include "hashjob.h"

static void on_pool_readable(uv_poll_t *watch, int status, int events)
{
	struct hashjob *job = watch->data;
	int err;

	(void)events;
	if (status < 0) {
		hashjob_abort(job, "uv_poll", uv_strerror(status));
	} else {
		err = aiod_pool_process(hashjob_pool(job));
		if (err < 0)
			hashjob_abort(job, "aiod_pool_process",
				      strerror(-err));
	}
	if (hashjob_done(job))
		uv_close((uv_handle_t *)watch, NULL);
}

int main(int argc, char **argv)
{
	struct hashjob *job;
	uv_loop_t loop;
	uv_poll_t watch;
	int err;

	err = hashjob_new(&job, argc, argv);
	if (err)
		return err;
	err = uv_loop_init(&loop);
	if (err) {
		hashjob_abort(job, "uv_loop_init", uv_strerror(err));
		return hashjob_free(job);
	}
	err = uv_poll_init(&loop, &watch, aiod_pool_fd(hashjob_pool(job)));
	if (err) {
		hashjob_abort(job, "uv_poll_init", uv_strerror(err));
		uv_loop_close(&loop);
		return hashjob_free(job);
	}
	watch.data = job;

	hashjob_start(job);
	if (!hashjob_done(job)) {
		err = uv_poll_start(&watch, UV_READABLE, on_pool_readable);
		if (err)
			hashjob_abort(job, "uv_poll_start", uv_strerror(err));
	}
	/* Nothing to wait for (every file failed at once, or an error). */
	if (hashjob_done(job))
		uv_close((uv_handle_t *)&watch, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	return hashjob_free(job);
}
