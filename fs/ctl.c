/* SPDX-License-Identifier: MIT */
/*
 * ctl.c - the control socket: aiodfsctl's other end.
 *
 * One unix stream socket per mount (ctlpath.h says where), mode 0600 in
 * a directory of mode 0700: only the daemon's user may connect (and
 * root).  Beside it, a lock file the daemon holds with flock for its
 * whole life, and removes as it ends.  A daemon that gets the lock owns
 * the path and may unlink a socket left there by one that died (SIGKILL
 * leaves both behind); one that does not get it serves no control
 * socket and never touches the live daemon's.
 *
 * A client sends one line and reads the answer until EOF:
 *   stats          the counters, in flight requests and pool, as a table
 *   stats json     the same as one JSON object
 *   workers N      resize the pool to N workers (1 to 1024): "ok N"
 *   release        give the path up if our mount is gone (ask_release())
 * and anything else gets "error: ..." (one line).
 *
 * Connections are non-blocking, at most AFS_CTL_MAX_CONNS at once; an
 * answer the socket cannot take at once waits for EPOLLOUT.  Writes use
 * MSG_NOSIGNAL: a client that went away gives EPIPE, never SIGPIPE.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "aiodfs.h"

#define LINE_MAX_CTL 256

struct conn {
	int fd;                     /* -1: free slot */
	char in[LINE_MAX_CTL];
	size_t inlen;
	struct afs_buf out;
	size_t sent;
};

static int listen_fd = -1, lock_fd = -1;
static char our_dev[32];        /* our mount's MAJOR:MINOR, if known */
static char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static struct conn conns[AFS_CTL_MAX_CONNS];

static char lock_path[sizeof(sock_path) + 8];

/*
 * Take the lock file beside path: 0 (ours now), -EBUSY (a live daemon
 * holds it) or -errno.  Its holder unlinks it when it ends
 * (afs_ctl_close()), so that a directory of them does not grow by one
 * per mount point ever used: a lock taken on a file no longer at the
 * path is taken again on a new one.
 */
static int take_lock(void)
{
	size_t n = strlen(sock_path) - strlen(".sock");
	struct stat held, named;

	snprintf(lock_path, sizeof(lock_path), "%.*s.lock", (int)n, sock_path);
	for (;;) {
		lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
			       0600);
		if (lock_fd < 0)
			return -errno;
		if (flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
			int err = errno == EWOULDBLOCK ? -EBUSY : -errno;

			close(lock_fd);
			lock_fd = -1;
			return err;
		}
		if (fstat(lock_fd, &held) == 0 && stat(lock_path, &named) == 0 &&
		    held.st_ino == named.st_ino && held.st_dev == named.st_dev)
			return 0;
		close(lock_fd); /* unlinked by the daemon that just ended */
	}
}

/*
 * A live daemon holds the lock: ask it to give the path up, which it
 * does if its mount is no longer mounted (a lazy umount, and ours now
 * at the same mount point).  Returns 1 if it did, 0 if it refused, -1
 * if nothing answers (it is ending: its socket goes before its lock).
 */
static int ask_release(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 1 };
	char reply[64] = "";
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ssize_t n = -1;

	/*
	 * At most a second each to connect (a unix connect waits the send
	 * timeout while the holder's queue is full) and for the answer: a
	 * hung holder must not keep our loop from serving.
	 */
	memcpy(addr.sun_path, sock_path, strlen(sock_path) + 1);
	if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0 &&
	    connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
	    send(fd, "release\n", 8, MSG_NOSIGNAL) == 8)
		n = recv(fd, reply, sizeof(reply) - 1, 0);
	if (fd >= 0)
		close(fd);
	return n > 0 ? !strncmp(reply, "ok", 2) : -1;
}

int afs_ctl_open(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char dir[sizeof(sock_path)];
	int err;

	for (unsigned i = 0; i < AFS_CTL_MAX_CONNS; i++)
		conns[i].fd = -1;
	err = afs_ctl_path(afs.mountpoint, sock_path, sizeof(sock_path), dir,
			   sizeof(dir));
	if (err)
		return err;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (afs_mount_dev(afs.mountpoint, our_dev, sizeof(our_dev)) <= 0)
		our_dev[0] = 0; /* never released, then */
	err = take_lock();
	for (int tries = 0; err == -EBUSY && tries < 20; tries++) {
		int asked = ask_release();

		if (asked == 0)
			break;
		if (asked < 0)
			usleep(50000); /* the holder is ending: its lock goes next */
		err = take_lock();
	}
	if (err)
		return err;
	/* Ours: whatever is at the path was left by a daemon now dead. */
	if (unlink(sock_path) < 0 && errno != ENOENT)
		return -errno;
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (listen_fd < 0)
		return -errno;
	memcpy(addr.sun_path, sock_path, strlen(sock_path) + 1);
	/* umask 077 while binding: the socket is born 0600. */
	mode_t old = umask(077);
	err = bind(listen_fd, (struct sockaddr *)&addr, sizeof(addr));
	umask(old);
	if (err < 0 || listen(listen_fd, 16) < 0) {
		err = -errno;
		close(listen_fd);
		listen_fd = -1;
		return err;
	}
	return listen_fd;
}

const char *afs_ctl_socket(void)
{
	return listen_fd >= 0 ? sock_path : NULL;
}

static void conn_close(struct conn *c)
{
	close(c->fd); /* leaves the epoll set with it */
	c->fd = -1;
	free(c->out.data);
	memset(&c->out, 0, sizeof(c->out));
}

void afs_ctl_accept(void)
{
	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		unsigned i;

		if (fd < 0)
			return; /* EAGAIN, or a client gone already */
		for (i = 0; i < AFS_CTL_MAX_CONNS && conns[i].fd >= 0; i++)
			;
		if (i == AFS_CTL_MAX_CONNS ||
		    afs_loop_watch(fd, EPOLLIN, AFS_EV_CTL_CONN + i) < 0) {
			send(fd, "error: busy\n", 12, MSG_NOSIGNAL);
			close(fd);
			continue;
		}
		conns[i] = (struct conn){ .fd = fd };
	}
}

/* Send what is left of c's answer; close when done or broken. */
static void flush_out(struct conn *c, unsigned slot)
{
	while (c->sent < c->out.len) {
		ssize_t n = send(c->fd, c->out.data + c->sent,
				 c->out.len - c->sent, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			afs_loop_rewatch(c->fd, EPOLLOUT, AFS_EV_CTL_CONN + slot);
			return;
		}
		if (n <= 0)
			break; /* EPIPE: the client went away */
		c->sent += (size_t)n;
	}
	conn_close(c);
}

static void answer(struct conn *c, const char *line)
{
	struct afs_buf *b = &c->out;
	unsigned n;
	char extra;

	if (strcmp(line, "stats") == 0 || strcmp(line, "stats json") == 0) {
		afs_stats_render(b, line[5] != 0);
	} else if (sscanf(line, "workers %u%c", &n, &extra) == 1) {
		bool fits = n >= 1 && n <= AIOD_MAX_WORKERS;
		int err = fits ? afs_resize_pool(n) : -EINVAL;
		char msg[96];

		if (err)
			snprintf(msg, sizeof(msg), "error: workers %u: %s\n", n,
				 fits ? strerror(-err) : "between 1 and 1024");
		else
			snprintf(msg, sizeof(msg), "ok %u\n", n);
		b->data = strdup(msg);
		b->len = b->size = b->data ? strlen(msg) : 0;
	} else if (strcmp(line, "release") == 0) {
		/*
		 * Another daemon at our mount point's path: if ours was
		 * unmounted lazily (its files still open; gone only if
		 * mountinfo, read through, lacks it), the path, and the
		 * socket there, are the mount's there now.
		 */
		bool gone = our_dev[0] && afs_mount_dev(NULL, our_dev, 0) == 0;
		const char *msg = gone ? "ok released\n" : "error: still mounted\n";

		if (gone) {
			close(listen_fd); /* the socket file is the new one's */
			close(lock_fd);
			listen_fd = lock_fd = -1;
			afs_log(LOG_NOTICE, "%s: unmounted; the control socket "
				"goes to the mount there now", afs.mountpoint);
		}
		b->data = strdup(msg);
		b->len = b->size = b->data ? strlen(msg) : 0;
	} else {
		const char *msg = "error: unknown command (stats, stats json, "
				  "workers N)\n";

		b->data = strdup(msg);
		b->len = b->size = b->data ? strlen(msg) : 0;
	}
}

void afs_ctl_event(unsigned slot, uint32_t events)
{
	struct conn *c = &conns[slot];
	char *nl;

	if (slot >= AFS_CTL_MAX_CONNS || c->fd < 0)
		return;
	if (c->out.len) {
		flush_out(c, slot);
		return;
	}
	(void)events;
	for (;;) {
		ssize_t n = recv(c->fd, c->in + c->inlen,
				 sizeof(c->in) - 1 - c->inlen, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n == 0 && c->inlen) {
			c->in[c->inlen] = '\n'; /* EOF ends the line too */
			c->inlen++;
			break;
		}
		if (n <= 0) {
			conn_close(c); /* gone before asking */
			return;
		}
		c->inlen += (size_t)n;
		c->in[c->inlen] = 0;
		if (strchr(c->in, '\n') || c->inlen == sizeof(c->in) - 1)
			break;
	}
	c->in[c->inlen] = 0;
	nl = strchr(c->in, '\n');
	if (!nl && c->inlen < sizeof(c->in) - 1)
		return; /* more to come */
	if (nl)
		*nl = 0;
	answer(c, c->in);
	if (!c->out.len) {
		conn_close(c); /* no memory for an answer */
		return;
	}
	flush_out(c, slot);
}

void afs_ctl_close(void)
{
	for (unsigned i = 0; i < AFS_CTL_MAX_CONNS; i++)
		if (conns[i].fd >= 0)
			conn_close(&conns[i]);
	if (listen_fd >= 0) {
		unlink(sock_path);
		close(listen_fd);
		listen_fd = -1;
	}
	if (lock_fd >= 0) {
		unlink(lock_path); /* while it is ours: see take_lock() */
		close(lock_fd);
		lock_fd = -1;
	}
}
