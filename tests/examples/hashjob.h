/* SPDX-License-Identifier: MIT */
/*
 * hashjob.h - the part of the aiodhash and uvhash examples that does not
 * depend on the event loop: parse "[-j DEPTH] FILE...", start a pool,
 * and hash the files through it, printing one line per file in argument
 * order.  The two programs differ only in how they wait for
 * aiod_pool_fd() and call aiod_pool_process(); see hashjob.c for how a
 * job works.
 *
 * It uses nothing but the public header, aiod.h.
 */
#ifndef HASHJOB_H
#define HASHJOB_H

#include <stdbool.h>

#include <aiod.h>

struct hashjob;

/*
 * hashjob_new - parse the command line and start a pool sized for it.
 * Returns 0 and sets *jobp, or, after saying why on stderr, the status
 * main() should exit with: 2 for a usage error, 1 if the pool or its
 * buffers cannot be had.
 */
int hashjob_new(struct hashjob **jobp, int argc, char **argv);

/* hashjob_pool - the pool whose fd the caller's loop must watch. */
struct aiod_pool *hashjob_pool(const struct hashjob *job);

/*
 * hashjob_start - submit the first requests.  Everything after happens
 * in callbacks, run by aiod_pool_process() from the caller's loop.
 */
void hashjob_start(struct hashjob *job);

/*
 * hashjob_done - whether the loop may stop: every file is hashed (or has
 * failed) and printed, or hashjob_abort() was called.  It can be true
 * straight after hashjob_start(), when no file got as far as a request.
 */
bool hashjob_done(const struct hashjob *job);

/*
 * hashjob_abort - give up after a failure of the loop itself: print
 * "PROG: what: why" on stderr and make hashjob_done() true.  Requests
 * still out are cancelled by hashjob_free().
 */
void hashjob_abort(struct hashjob *job, const char *what, const char *why);

/*
 * hashjob_free - stop the pool and free the job.  Returns the status
 * main() should exit with: 0 if every file was hashed and printed, 1
 * otherwise.
 */
int hashjob_free(struct hashjob *job);

#endif /* HASHJOB_H */
