/* SPDX-License-Identifier: MIT */
/*
 * aiodhash - hash many files in parallel through a pool of aiod workers,
 * from a plain poll() loop: an example of using libaiod through its
 * public header alone.
 *
 *   aiodhash [-j DEPTH] FILE...
 *
 * prints "HASH  FILE" for each FILE, in argument order, HASH being the
 * file's 64-bit FNV-1a in 16 hex digits.  A file that cannot be read is
 * reported as "aiodhash: FILE: reason" on stderr, and the exit status is
 * then 1 (2 for a usage error).
 *
 * The work itself (the requests, the hashing, the ordered output) lives
 * in hashjob.c, shared with uvhash.c.  What is left here is the loop a
 * program without an event library writes: wait for the pool's fd to be
 * readable, let aiod_pool_process() run the callbacks, which submit the
 * next requests, and stop once every file is done.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include <aiod.h>

#include "hashjob.h"

int main(int argc, char **argv)
{
	struct hashjob *job;
	struct pollfd pfd;
	int err;

	err = hashjob_new(&job, argc, argv);
	if (err)
		return err;
	pfd.fd = aiod_pool_fd(hashjob_pool(job));
	pfd.events = POLLIN;

	hashjob_start(job);
	while (!hashjob_done(job)) {
		if (poll(&pfd, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			hashjob_abort(job, "poll", strerror(errno));
			break;
		}
		err = aiod_pool_process(hashjob_pool(job));
		if (err < 0)
			hashjob_abort(job, "aiod_pool_process", strerror(-err));
	}
	return hashjob_free(job);
}
