/* SPDX-License-Identifier: MIT */
/*
 * aiodfsctl - look at and steer a running aiodfs through its control
 * socket (ctl.c is the other end; ctlpath.h says where it is).
 *
 *   aiodfsctl stats [--json] MOUNTPOINT   counters, requests in flight
 *   aiodfsctl top MOUNTPOINT              the same, every second
 *   aiodfsctl workers MOUNTPOINT N        resize the pool
 *
 * Only the user who mounted (and root) may connect.  Exit status: 0, or
 * 1 with one line on stderr.
 */
#include <errno.h>
#include <limits.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctlpath.h"

static const char *prog = "aiodfsctl";

static void usage(FILE *f)
{
	fprintf(f, "usage: %s stats [--json] MOUNTPOINT\n"
		"       %s top MOUNTPOINT\n"
		"       %s workers MOUNTPOINT N\n", prog, prog, prog);
}

/*
 * The mountpoint as the daemon wrote it: canonical.  A dead mount
 * (ENOTCONN) cannot be resolved itself, so then its parent is.
 */
static int canonical(const char *mnt, char *out)
{
	char copy[PATH_MAX], parent[PATH_MAX], *base;

	if (realpath(mnt, out))
		return 0;
	if (strlen(mnt) >= sizeof(copy))
		return -ENAMETOOLONG;
	strcpy(copy, mnt);
	base = basename(copy);
	strcpy(parent, mnt);
	if (!realpath(dirname(parent), out))
		return -errno;
	if (strlen(out) + strlen(base) + 2 > PATH_MAX)
		return -ENAMETOOLONG;
	if (strcmp(out, "/") != 0)
		strcat(out, "/");
	strcat(out, base);
	return 0;
}

/* Send line to the mount's daemon; its answer into *answer (malloc'ed). */
static int ask(const char *mnt, const char *line, char **answer)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char path[PATH_MAX], sock[sizeof(addr.sun_path)];
	size_t len = 0, size = 0;
	char *buf = NULL;
	int fd, err;

	err = canonical(mnt, path);
	if (err) {
		fprintf(stderr, "%s: %s: %s\n", prog, mnt, strerror(-err));
		return 1;
	}
	err = afs_ctl_path(path, sock, sizeof(sock), NULL, 0);
	if (err) {
		fprintf(stderr, "%s: %s: no control socket path: %s\n", prog,
			path, err == -EDESTADDRREQ ? "XDG_RUNTIME_DIR is not set"
					     : strerror(-err));
		return 1;
	}
	memcpy(addr.sun_path, sock, strlen(sock) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		err = errno;
		if (err == ENOENT || err == ECONNREFUSED)
			fprintf(stderr, "%s: %s: no aiodfs answers at %s (not an "
				"aiodfs mount of this user, or its daemon is "
				"gone)\n", prog, path, sock);
		else
			fprintf(stderr, "%s: %s: %s: %s\n", prog, path, sock,
				strerror(err));
		if (fd >= 0)
			close(fd);
		return 1;
	}
	if (send(fd, line, strlen(line), MSG_NOSIGNAL) < 0 ||
	    send(fd, "\n", 1, MSG_NOSIGNAL) < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, sock, strerror(errno));
		close(fd);
		return 1;
	}
	shutdown(fd, SHUT_WR);
	for (;;) {
		ssize_t n;

		if (size - len < 4096) {
			char *b = realloc(buf, size ? size * 2 : 65536);

			if (!b) {
				fprintf(stderr, "%s: out of memory\n", prog);
				free(buf);
				close(fd);
				return 1;
			}
			buf = b;
			size = size ? size * 2 : 65536;
		}
		n = read(fd, buf + len, size - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "%s: %s: %s\n", prog, sock, strerror(errno));
			free(buf);
			close(fd);
			return 1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = 0;
	*answer = buf;
	if (strncmp(buf, "error:", 6) == 0) {
		fprintf(stderr, "%s: %s", prog, buf);
		return 1;
	}
	return 0;
}

static int run(const char *mnt, const char *line)
{
	char *answer = NULL;
	int ret = ask(mnt, line, &answer);

	if (!ret)
		fputs(answer, stdout);
	free(answer);
	return ret;
}

static int top(const char *mnt)
{
	char *answer = NULL;

	/* The daemon's ops/s are over the time since the last "stats". */
	if (ask(mnt, "stats", &answer))
		return 1;
	for (;;) {
		free(answer);
		answer = NULL;
		sleep(1);
		if (ask(mnt, "stats", &answer))
			return 1;
		printf("\033[H\033[2J%s: every second; ^C to stop\n\n%s", prog,
		       answer);
		fflush(stdout);
	}
}

int main(int argc, char **argv)
{
	char line[64], *end;
	unsigned long n;

	signal(SIGPIPE, SIG_IGN);
	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		usage(stdout);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "stats"))
		return run(argv[2], "stats");
	if (argc == 4 && !strcmp(argv[1], "stats") && !strcmp(argv[2], "--json"))
		return run(argv[3], "stats json");
	if (argc == 4 && !strcmp(argv[1], "stats") && !strcmp(argv[3], "--json"))
		return run(argv[2], "stats json");
	if (argc == 3 && !strcmp(argv[1], "top"))
		return top(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "workers")) {
		errno = 0;
		n = strtoul(argv[3], &end, 10);
		if (errno || *end || !*argv[3] || n < 1 || n > 1024) {
			fprintf(stderr, "%s: workers: %s: expected a number "
				"from 1 to 1024\n", prog, argv[3]);
			return 1;
		}
		snprintf(line, sizeof(line), "workers %lu", n);
		return run(argv[2], line);
	}
	usage(stderr);
	return 1;
}
