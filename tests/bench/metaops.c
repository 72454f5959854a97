/* SPDX-License-Identifier: MIT */
/*
 * metaops.c - metadata operations on many small files, timed: the
 * create/stat/unlink workload of tests/bench/run.
 *
 *   metaops create|stat|unlink DIR N
 *
 *   create   creates DIR/f0000000 ... DIR/f<N-1>, empty, with
 *            openat(O_CREAT | O_EXCL | O_WRONLY) and close;
 *   stat     fstatat(AT_SYMLINK_NOFOLLOW) of each, in the same order
 *            (answered from the kernel's caches where they allow it: a
 *            cold pass is one on a fresh mount);
 *   unlink   unlinkat of each.
 *
 * Names are resolved relative to a descriptor of DIR, as find, du and
 * rm do, so the path to DIR is walked once, not N times.  One process,
 * one call after another.  Prints one JSON line on stdout:
 *
 *   {"op": "create", "n": 20000, "seconds": 1.234, "ops_per_s": 16207.1}
 *
 * If a call fails it stops there, prints
 *
 *   {"op": "create", "n": 20000, "done": 19987, "error": "Too many open files"}
 *
 * and exits 1 (a peer that keeps a descriptor per known file runs out of
 * them this way).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum op { OP_CREATE, OP_STAT, OP_UNLINK };

static const char *const op_names[] = {
	[OP_CREATE] = "create",
	[OP_STAT] = "stat",
	[OP_UNLINK] = "unlink",
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Does OP on the file called NAME in DFD; returns 0 or -errno. */
static int do_op(enum op op, int dfd, const char *name)
{
	struct stat st;
	int fd;

	switch (op) {
	case OP_CREATE:
		fd = openat(dfd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC,
			    0644);
		if (fd == -1)
			return -errno;
		return close(fd) == -1 ? -errno : 0;
	case OP_STAT:
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1)
			return -errno;
		return 0;
	case OP_UNLINK:
		return unlinkat(dfd, name, 0) == -1 ? -errno : 0;
	}
	return -EINVAL;
}

int main(int argc, char *argv[])
{
	unsigned long n, i;
	char name[32];
	double t0, t;
	enum op op;
	int dfd, err;

	if (argc != 4) {
		fprintf(stderr, "usage: metaops create|stat|unlink DIR N\n");
		return 2;
	}
	for (op = OP_CREATE; op <= OP_UNLINK; op++)
		if (strcmp(argv[1], op_names[op]) == 0)
			break;
	if (op > OP_UNLINK) {
		fprintf(stderr, "metaops: unknown operation %s\n", argv[1]);
		return 2;
	}
	n = strtoul(argv[3], NULL, 10);
	dfd = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd == -1) {
		fprintf(stderr, "metaops: %s: %s\n", argv[2], strerror(errno));
		return 1;
	}

	t0 = now();
	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "f%07lu", i);
		err = do_op(op, dfd, name);
		if (err < 0) {
			printf("{\"op\": \"%s\", \"n\": %lu, \"done\": %lu, "
			       "\"error\": \"%s\"}\n",
			       op_names[op], n, i, strerror(-err));
			return 1;
		}
	}
	t = now() - t0;
	printf("{\"op\": \"%s\", \"n\": %lu, \"seconds\": %.6f, "
	       "\"ops_per_s\": %.1f}\n",
	       op_names[op], n, t, t > 0 ? (double)n / t : 0.0);
	close(dfd);
	return 0;
}
