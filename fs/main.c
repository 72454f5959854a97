/* SPDX-License-Identifier: MIT */
/*
 * main.c - aiodfs: mount a directory through a pool of aiod workers.
 *
 *   aiodfs [options] SOURCE MOUNTPOINT
 *
 * Order of business: parse and check everything that can be wrong with
 * the command line while stderr is still the caller's terminal; create
 * the FUSE session (which rejects unknown options); then, unless -f,
 * detach: fork, and let the parent wait on a pipe until the child says
 * the mount is live (or why it is not).  The child mounts, starts the
 * worker pool (after the fork: workers die with the process that started
 * them), answers the kernel's INIT, reports, and serves from loop.c until
 * unmounted or signalled.  See aiodfs(1) for the options.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "aiodfs.h"

#define AIODFS_VERSION "0.1"
#define ARENA_SIZE (256u << 20)

struct afs afs = { .root_fd = -1, .reply_fd = -1 };

static bool use_syslog;

void afs_log(int prio, const char *fmt, ...)
{
	va_list ap;

	if (prio == LOG_DEBUG && !afs.opt.debug)
		return; /* said only under -d */
	va_start(ap, fmt);
	if (use_syslog) {
		vsyslog(prio, fmt, ap);
	} else {
		fputs("aiodfs: ", stderr);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	}
	va_end(ap);
}

/* ---- the command line ---------------------------------------------------- */

struct cli {
	char *source;
	unsigned workers;
	unsigned poll;
	char *cache;
	int writeback;
	int nosplice;
	int direct_io;
	int inode_fds;
	int posix_locks;
	int passthrough;
	double attr_timeout;
	double entry_timeout;
	double negative_timeout;
	double slow;
	unsigned max_read;
	unsigned max_write;
	unsigned readahead;
	unsigned read_now;
	bool allow_other;
	bool default_permissions;
};

#define CLI_OPT(t, f, v) { t, offsetof(struct cli, f), v }

/*
 * Mount options aiodfs notes and passes on to libfuse, and its numeric
 * options (num_opts).
 */
enum { KEY_ALLOW_OTHER, KEY_DEFAULT_PERMISSIONS, KEY_NUMBER };

/*
 * Numeric options are read whole: "4x", "-1" or a number past its type
 * is a one-line error (sscanf's "%u" had taken them as 4, the default
 * and the number modulo 2^32).  UINT_MAX stands for "not given".
 */
static const struct num_opt {
	const char *name;
	size_t off;
	bool real;              /* a double, else an unsigned */
} num_opts[] = {
	{ "workers", offsetof(struct cli, workers), false },
	{ "poll", offsetof(struct cli, poll), false },
	{ "max_read", offsetof(struct cli, max_read), false },
	{ "max_write", offsetof(struct cli, max_write), false },
	{ "readahead", offsetof(struct cli, readahead), false },
	{ "read_now", offsetof(struct cli, read_now), false },
	{ "attr_timeout", offsetof(struct cli, attr_timeout), true },
	{ "entry_timeout", offsetof(struct cli, entry_timeout), true },
	{ "negative_timeout", offsetof(struct cli, negative_timeout), true },
	{ "slow", offsetof(struct cli, slow), true },
};

/* NAME=VALUE of num_opts into cli; -1 after saying why not. */
static int parse_number(struct cli *cli, const char *arg)
{
	const char *v = strchr(arg, '=') + 1;
	char *end;

	for (size_t i = 0; i < sizeof(num_opts) / sizeof(num_opts[0]); i++) {
		const struct num_opt *n = &num_opts[i];
		void *field = (char *)cli + n->off;

		if (strlen(n->name) != (size_t)(v - 1 - arg) ||
		    strncmp(arg, n->name, strlen(n->name)) != 0)
			continue;
		errno = 0;
		if (n->real) {
			/* Decimal only: not hex, inf or nan, nor a sign. */
			double d = strspn(v, "0123456789.eE-") == strlen(v) &&
					   ((*v >= '0' && *v <= '9') || *v == '.')
				   ? strtod(v, &end) : (end = (char *)v, -1);

			if (end != v && !*end && !errno && d >= 0) {
				*(double *)field = d;
				return 0;
			}
		} else {
			unsigned long long u = strtoull(v, &end, 10);

			if (*v >= '0' && *v <= '9' && !*end && !errno && u < UINT_MAX) {
				*(unsigned *)field = (unsigned)u;
				return 0;
			}
		}
		afs_log(LOG_ERR, "%s: expected %s", arg,
			n->real ? "seconds, a decimal number of 0 or more"
				: "a whole number");
		return -1;
	}
	return 1; /* not ours */
}

static const struct fuse_opt cli_spec[] = {
	FUSE_OPT_KEY("workers=", KEY_NUMBER),
	FUSE_OPT_KEY("poll=", KEY_NUMBER),
	CLI_OPT("cache=%s", cache, 0),
	CLI_OPT("writeback", writeback, 1),
	CLI_OPT("no_writeback", writeback, 0),
	CLI_OPT("nosplice", nosplice, 1),
	CLI_OPT("direct_io", direct_io, 1),
	CLI_OPT("inode_fds", inode_fds, 1),
	CLI_OPT("posix_locks", posix_locks, 1),
	CLI_OPT("passthrough", passthrough, 1),
	CLI_OPT("nopassthrough", passthrough, 0),
	FUSE_OPT_KEY("attr_timeout=", KEY_NUMBER),
	FUSE_OPT_KEY("entry_timeout=", KEY_NUMBER),
	FUSE_OPT_KEY("negative_timeout=", KEY_NUMBER),
	FUSE_OPT_KEY("slow=", KEY_NUMBER),
	FUSE_OPT_KEY("max_read=", KEY_NUMBER),
	FUSE_OPT_KEY("max_write=", KEY_NUMBER),
	FUSE_OPT_KEY("readahead=", KEY_NUMBER),
	FUSE_OPT_KEY("read_now=", KEY_NUMBER),
	FUSE_OPT_KEY("allow_other", KEY_ALLOW_OTHER),
	FUSE_OPT_KEY("default_permissions", KEY_DEFAULT_PERMISSIONS),
	FUSE_OPT_END
};

/* The first non-option is SOURCE; the rest stays for libfuse. */
static int cli_proc(void *data, const char *arg, int key,
		    struct fuse_args *outargs)
{
	struct cli *cli = data;

	(void)outargs;
	if (key == FUSE_OPT_KEY_NONOPT && !cli->source) {
		cli->source = strdup(arg);
		return 0;
	}
	if (key == KEY_NUMBER)
		return parse_number(cli, arg) < 0 ? -1 : 0;
	if (key == KEY_ALLOW_OTHER)
		cli->allow_other = true;
	if (key == KEY_DEFAULT_PERMISSIONS)
		cli->default_permissions = true;
	return 1;
}

static void usage(const char *prog)
{
	printf("usage: %s [options] SOURCE MOUNTPOINT\n\n"
	       "Mount directory SOURCE at MOUNTPOINT; every operation runs on\n"
	       "SOURCE in a pool of aiod worker processes.\n\n"
	       "aiodfs options:\n"
	       "    -o workers=N           worker processes (default: %u)\n"
	       "    -o poll=US             poll US microseconds before sleeping\n"
	       "                           (default 50, at most 10000; 0: never)\n"
	       "    -o cache=MODE          never, auto (default) or always\n"
	       "    -o attr_timeout=SECS   how long the kernel trusts attributes\n"
	       "    -o entry_timeout=SECS  how long the kernel trusts names\n"
	       "    -o negative_timeout=SECS\n"
	       "                           how long it trusts that a name is\n"
	       "                           missing (default: entry_timeout)\n"
	       "    -o slow=SECS           log requests a worker holds longer\n"
	       "                           (default 10; 0: never)\n"
	       "    -o readahead=KB        the mount's readahead, at most 65536 (default:\n"
	       "                           max_read, 1024; 0: the kernel's; root only)\n"
	       "    -o read_now=BYTES      reads up to BYTES of data the source has\n"
	       "                           cached, the loop answers itself (default\n"
	       "                           32768, at most 1048576; 0: workers read all)\n"
	       "    -o writeback           kernel write-back caching\n"
	       "    -o max_write=BYTES     largest write request, at most 1048576 (default:\n"
	       "                           1048576 where pipes that large may be had,\n"
	       "                           else 524288, which is then spliced)\n"
	       "    -o nosplice            read large writes' data, do not splice it\n"
	       "    -o direct_io           bypass the page cache (breaks shared mmap)\n"
	       "    -o inode_fds           known inodes hold an fd, not a file handle\n"
	       "    -o posix_locks         fcntl locks reach SOURCE (as OFD locks)\n"
	       "    -o passthrough         the kernel reads and writes open files on\n"
	       "                           SOURCE itself (root; not with writeback\n"
	       "                           or direct_io); by default only those\n"
	       "                           opened O_DIRECT, and not with allow_other\n"
	       "    -o nopassthrough       not even those\n\n",
	       prog, afs.opt.workers);
	fuse_cmdline_help();
	fuse_lowlevel_help();
}

/*
 * The loop and one worker poll this long (µs) before they sleep: waking
 * a sleeping process costs 30-70 µs on a virtual machine without halt
 * polling; polling, only on an otherwise idle CPU, saves that per request
 * of a steady stream (statx round trip 79 -> 12 µs, creates 2x).  The
 * loop stretches it when that pays (fs/loop.c, adapt_window()).
 */
#define DEFAULT_POLL_US 50

static unsigned default_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		n = 1;
	/* Workers mostly wait on the source: more than cores pays. */
	return n * 4 < 8 ? 8 : n * 4 > 64 ? 64 : (unsigned)n * 4;
}

/* "fsname=" SOURCE, with the commas and backslashes libfuse splits on escaped. */
static char *fsname_opt(const char *source)
{
	char *s = malloc(strlen("-ofsname=") + 2 * strlen(source) + 1), *p;

	if (!s)
		return NULL;
	p = s + sprintf(s, "-ofsname=");
	for (; *source; source++) {
		if (*source == ',' || *source == '\\')
			*p++ = '\\';
		*p++ = *source;
	}
	*p = 0;
	return s;
}

/* One line of /proc/self/mountinfo: what aiodfs needs of it. */
struct mount_line {
	int id;
	char dev[32];               /* MAJOR:MINOR */
	char point[PATH_MAX + 1];   /* with mountinfo's octal escapes undone */
	char fstype[64];
};

static void unescape(char *s)
{
	char *in, *out;

	for (in = out = s; *in; in++, out++) {
		if (in[0] == '\\' && in[1] >= '0' && in[1] <= '3' && in[2] &&
		    in[3]) {
			*out = (char)((in[1] - '0') * 64 + (in[2] - '0') * 8 +
				      (in[3] - '0'));
			in += 3;
		} else {
			*out = *in;
		}
	}
	*out = 0;
}

/* Read the next line into *m.  Returns false at the end. */
static bool next_mount(FILE *f, struct mount_line *m)
{
	char line[PATH_MAX * 3 + 256], *sep;

	while (fgets(line, sizeof(line), f)) {
		/* id parent major:minor root point options... - fstype ... */
		sep = strstr(line, " - ");
		if (!sep || sscanf(line, "%d %*s %31s %*s %4096s", &m->id,
				   m->dev, m->point) != 3 ||
		    sscanf(sep + 3, "%63s", m->fstype) != 1)
			continue;
		unescape(m->point);
		return true;
	}
	return false;
}

/* Whether path is a mount point already. */
static bool is_mount_point(const char *path)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	struct mount_line m;
	bool found = false;

	while (f && !found && next_mount(f, &m))
		found = !strcmp(m.point, path);
	if (f)
		fclose(f);
	return found;
}

/*
 * Whether mount id is a FUSE filesystem (virtiofs too), or may be: not
 * found in /proc/self/mountinfo, or that unreadable.  Those hand out
 * file handles that reopen only what the kernel still caches, unless
 * the filesystem asked for export support, which cannot be seen from
 * here.
 */
bool afs_is_fuse_mount(int id)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	struct mount_line m;
	bool fuse = true;

	while (f && next_mount(f, &m))
		if (m.id == id) {
			fuse = !strncmp(m.fstype, "fuse", 4) ||
			       !strcmp(m.fstype, "virtiofs");
			break;
		}
	if (f)
		fclose(f);
	return fuse;
}

/*
 * Check SOURCE and MOUNTPOINT; on success *src and *mnt are their
 * absolute, resolved paths.  Prints one line and returns -1 otherwise.
 */
static int check_paths(const char *source, const char *mountpoint, char **src,
		       char **mnt)
{
	struct stat st;
	size_t n;

	*src = realpath(source, NULL);
	if (!*src || stat(*src, &st) < 0) {
		afs_log(LOG_ERR, "%s: %s", source, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		afs_log(LOG_ERR, "%s: %s", source, strerror(ENOTDIR));
		return -1;
	}
	*mnt = realpath(mountpoint, NULL);
	if (!*mnt || stat(*mnt, &st) < 0) {
		int err = errno;

		afs_log(LOG_ERR, "%s: %s%s", mountpoint, strerror(err),
			err == ENOTCONN ? " (a dead mount: fusermount3 -u it)" : "");
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		afs_log(LOG_ERR, "%s: %s", mountpoint, strerror(ENOTDIR));
		return -1;
	}
	n = strlen(*src);
	if (!strcmp(*src, "/") ||
	    (!strncmp(*mnt, *src, n) && ((*mnt)[n] == '/' || !(*mnt)[n]))) {
		/* Every lookup of the mountpoint would loop back into us. */
		afs_log(LOG_ERR, "%s: inside SOURCE %s; refusing to mount a "
			"directory inside itself", mountpoint, source);
		return -1;
	}
	if (is_mount_point(*mnt)) {
		afs_log(LOG_ERR, "%s: already a mount point", mountpoint);
		return -1;
	}
	/* Existence only: fusermount3 opens it for ordinary users. */
	if (access("/dev/fuse", F_OK) < 0) {
		afs_log(LOG_ERR, "/dev/fuse: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int parse_cache(const char *s, enum afs_cache *c)
{
	if (!s || !strcmp(s, "auto"))
		*c = AFS_CACHE_AUTO;
	else if (!strcmp(s, "never"))
		*c = AFS_CACHE_NEVER;
	else if (!strcmp(s, "always"))
		*c = AFS_CACHE_ALWAYS;
	else
		return -1;
	return 0;
}

/* ---- start-up requests ---------------------------------------------------- */

static void sync_done(struct aiod_req *req)
{
	*(bool *)req->data = true;
}

/* Run req to completion before the loop exists.  Returns its result. */
static int64_t run_sync(struct aiod_req *req)
{
	bool done = false;
	int err;

	req->cb = sync_done;
	req->data = &done;
	err = aiod_submit(afs.pool, req);
	if (err < 0)
		return err;
	while (!done) {
		err = aiod_pool_wait(afs.pool, -1);
		if (err < 0)
			return err;
	}
	return req->result;
}

/*
 * Learn the root's identity, and whether file handles reopen objects of
 * the source (they need CAP_DAC_READ_SEARCH and a filesystem that gives
 * them); without, every known inode pins an O_PATH fd.
 */
static int probe_root(void)
{
	struct aiod_req req;
	struct aiod_fh fh;
	int64_t res;

	aiod_prep_lookup(&req, afs.root_fd, NULL);
	res = run_sync(&req);
	if (res < 0)
		return (int)res;
	afs.root_mount_id = req.mount_id;
	fh = req.fh;
	afs.root.dev = makedev(req.stx.stx_dev_major, req.stx.stx_dev_minor);
	afs.root.ino = req.stx.stx_ino;
	if (!fh.handle_bytes || afs.opt.inode_fds || afs_is_fuse_mount(req.mount_id))
		return 0;
	aiod_prep_open_by_handle(&req, afs.root_fd, &fh, O_PATH);
	if (run_sync(&req) == 0) {
		afs.use_handles = true;
		close(req.ret_fd);
	}
	return 0;
}

/* ---- detaching ------------------------------------------------------------ */

/*
 * The daemon keeps none of the caller's files but stdio (one on another
 * mount, even a lazily unmounted one at our mount point, would keep that
 * busy while ours lives; a pipe, its reader waiting): all closed before
 * we open any of our own.
 */
static void close_inherited(void)
{
	close_range(3, ~0u, 0);
}

/*
 * Whether MOUNTPOINT is /dev/fd/N, a FUSE fd opened by a privileged
 * parent (mount.fuse3 -o drop_privileges): not supported, since the
 * daemon needs the mount point's path (whether it lies inside SOURCE,
 * its control socket, its readahead).
 */
static bool fd_mountpoint(const char *mountpoint)
{
	unsigned fd;
	int len = -1;

	return sscanf(mountpoint, "/dev/fd/%u%n", &fd, &len) == 1 &&
	       len == (int)strlen(mountpoint);
}

/*
 * Fork; the parent waits until the child writes its status to the pipe
 * and exits with it.  Returns the write end in the child, or -1.
 */
static int detach(void)
{
	int p[2];
	pid_t pid;
	char status = 1;

	if (pipe2(p, O_CLOEXEC) < 0) {
		afs_log(LOG_ERR, "pipe: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		afs_log(LOG_ERR, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid > 0) {
		close(p[1]);
		if (read(p[0], &status, 1) != 1)
			status = 1; /* the child died before reporting */
		if (status != 0)
			waitpid(pid, NULL, 0);
		_exit(status);
	}
	close(p[0]);
	/* A forked child is never a process-group leader: setsid works. */
	setsid();
	if (chdir("/") < 0)
		return -1;
	return p[1];
}

/* Tell the parent how it went; from then on, log to syslog. */
static void report(int fd, char status)
{
	int null;

	if (fd < 0)
		return;
	if (write(fd, &status, 1) != 1)
		afs_log(LOG_ERR, "cannot report to the parent");
	close(fd);
	if (status != 0)
		return;
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		close(null);
	}
	openlog("aiodfs", LOG_PID, LOG_DAEMON);
	use_syslog = true;
}

/*
 * The MAJOR:MINOR (at most n - 1 bytes) of the FUSE mount on top at mnt,
 * or of any mount if mnt is NULL and dev is the one asked for: whether
 * /proc/self/mountinfo has it, 1 or 0, or -errno if it could not be
 * read through.
 */
int afs_mount_dev(const char *mnt, char *dev, size_t n)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	struct mount_line m;
	char found[sizeof(m.dev)] = "";
	int err = f ? 0 : -errno;

	while (f && next_mount(f, &m)) {
		if (!mnt && !strcmp(m.dev, dev)) {
			strcpy(found, dev);
			break;
		}
		if (mnt && !strncmp(m.fstype, "fuse", 4) && strlen(m.dev) < n &&
		    !strcmp(m.point, mnt))
			strcpy(found, m.dev); /* the last one is on top */
	}
	if (f && ferror(f))
		err = -EIO;
	if (f)
		fclose(f);
	if (mnt && found[0])
		strcpy(dev, found);
	return found[0] ? 1 : err;
}

/*
 * The mount's readahead: the kernel gives a FUSE mount 128 KiB, so a
 * sequential read reaches us as 128 KiB requests, each a round trip
 * through the loop and a worker; with max_read's worth it comes as
 * requests of up to 1 MiB.  It is the mount's backing_dev_info
 * (/sys/class/bdi/MAJOR:MINOR), found through /proc/self/mountinfo (a
 * stat() of the mountpoint would wait on this very thread), writable by
 * root only; the kernel sets it when it answers INIT, so this comes after.
 */
static void set_readahead(const char *mnt, unsigned kb)
{
	char found[32], path[96], num[16];
	int fd, n;

	if (afs_mount_dev(mnt, found, sizeof(found)) <= 0) {
		afs_log(LOG_WARNING, "%s: not in /proc/self/mountinfo; readahead "
			"left as it is", mnt);
		return;
	}
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", found);
	n = snprintf(num, sizeof(num), "%u\n", kb);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0 && write(fd, num, (size_t)n) == n) {
		close(fd);
		return;
	}
	if (errno != EACCES && errno != EPERM)
		afs_log(LOG_WARNING, "%s: readahead=%u: %s", mnt, kb, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* ---- main -------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct cli cli = { .workers = (unsigned)-1, .poll = DEFAULT_POLL_US,
			   .attr_timeout = -1, .entry_timeout = -1,
			   .negative_timeout = -1, .slow = 10,
			   .max_read = 1u << 20, .max_write = (unsigned)-1,
			   .readahead = (unsigned)-1,
			   .read_now = READ_NOW_DEFAULT, .passthrough = -1 };
	struct fuse_cmdline_opts copts = { 0 };
	struct fuse_conn_info_opts *conn_opts = NULL;
	struct aiod_pool_opts popts = { 0 };
	char *src = NULL, *mnt = NULL, *fsname = NULL, max_read[32];
	int ret = 1, pipe_fd = -1, err;
	double timeout;

	afs.opt.workers = default_workers();
	if (fuse_opt_parse(&args, &cli, cli_spec, cli_proc) < 0 ||
	    fuse_parse_cmdline(&args, &copts) < 0)
		goto out;
	if (copts.show_help) {
		usage(argv[0]);
		ret = 0;
		goto out;
	}
	if (copts.show_version) {
		printf("aiodfs %s\n", AIODFS_VERSION);
		fuse_lowlevel_version();
		ret = 0;
		goto out;
	}
	if (!cli.source || !copts.mountpoint) {
		afs_log(LOG_ERR, "missing %s (usage: aiodfs [options] SOURCE "
			"MOUNTPOINT; -h for help)", cli.source ? "MOUNTPOINT" : "SOURCE");
		goto out;
	}
	if (cli.workers == 0) {
		afs_log(LOG_ERR, "workers=0: at least one worker is needed");
		goto out;
	}
	if (cli.workers != (unsigned)-1 && cli.workers > AIOD_MAX_WORKERS) {
		afs_log(LOG_ERR, "workers=%u: at most %u", cli.workers,
			AIOD_MAX_WORKERS);
		goto out;
	}
	if (cli.workers != (unsigned)-1)
		afs.opt.workers = cli.workers;
	if (cli.poll > AFS_POLL_MAX_US) {
		afs_log(LOG_ERR, "poll=%u: at most %u microseconds", cli.poll,
			AFS_POLL_MAX_US);
		goto out;
	}
	afs.opt.poll_us = cli.poll;
	if (!(cli.slow >= 0 && cli.slow <= 86400)) {
		afs_log(LOG_ERR, "slow=%g: expected seconds, 0 to 86400", cli.slow);
		goto out;
	}
	afs.opt.slow = cli.slow;
	if (cli.max_write != (unsigned)-1 &&
	    (cli.max_write < 4096 || cli.max_write > MAX_WRITE)) {
		afs_log(LOG_ERR, "max_write=%u: expected 4096 to %u bytes",
			cli.max_write, MAX_WRITE);
		goto out;
	}
	afs.max_write = cli.max_write == (unsigned)-1 ? 0 : cli.max_write;
	if (cli.readahead != (unsigned)-1 && cli.readahead > 65536) {
		afs_log(LOG_ERR, "readahead=%u: at most 65536 KiB", cli.readahead);
		goto out;
	}
	if (cli.read_now > READ_NOW_MAX) {
		afs_log(LOG_ERR, "read_now=%u: at most %u bytes", cli.read_now,
			READ_NOW_MAX);
		goto out;
	}
	afs.opt.read_now = cli.read_now;
	if (parse_cache(cli.cache, &afs.opt.cache) < 0) {
		afs_log(LOG_ERR, "cache=%s: expected never, auto or always",
			cli.cache);
		goto out;
	}
	timeout = afs.opt.cache == AFS_CACHE_NEVER ? 0.0
		  : afs.opt.cache == AFS_CACHE_ALWAYS ? 86400.0 : 1.0;
	afs.opt.attr_timeout = cli.attr_timeout >= 0 ? cli.attr_timeout : timeout;
	afs.opt.entry_timeout = cli.entry_timeout >= 0 ? cli.entry_timeout
						       : timeout;
	afs.opt.negative_timeout = cli.negative_timeout >= 0
					   ? cli.negative_timeout
					   : afs.opt.entry_timeout;
	afs.opt.writeback = cli.writeback;
	afs.opt.splice = !cli.nosplice;
	afs.opt.direct_io = cli.direct_io;
	afs.opt.inode_fds = cli.inode_fds;
	afs.opt.posix_locks = cli.posix_locks;
	if (cli.passthrough == 1 && (cli.writeback || cli.direct_io)) {
		afs_log(LOG_ERR, "passthrough: not with %s",
			cli.writeback ? "writeback" : "direct_io");
		goto out;
	}
	/*
	 * The kernel writes through a backing file with the daemon's
	 * credentials (root's reserved blocks, no quota), not the caller's
	 * as a worker does: by default, only where no other user reaches
	 * the mount.
	 */
	afs.opt.passthrough = cli.passthrough == 1 ? AFS_PT_ALL
			      : cli.passthrough == 0 || cli.writeback ||
					cli.direct_io || cli.allow_other
				      ? AFS_PT_NONE : AFS_PT_DIRECT;
	afs.opt.default_permissions = cli.default_permissions;
	afs.opt.debug = copts.debug;

	if (fd_mountpoint(copts.mountpoint)) {
		afs_log(LOG_ERR, "%s: a FUSE fd passed in as MOUNTPOINT is not "
			"supported (mount.fuse3 -o drop_privileges)",
			copts.mountpoint);
		goto out;
	}
	close_inherited();
	if (check_paths(cli.source, copts.mountpoint, &src, &mnt) < 0)
		goto out;
	afs.opt.source = src;
	afs.mountpoint = mnt;
	/* The kernel is told max_read at mount time, and init() again. */
	afs.max_read = cli.max_read;
	snprintf(max_read, sizeof(max_read), "-omax_read=%u", cli.max_read);
	fsname = fsname_opt(src);
	if (!fsname || fuse_opt_insert_arg(&args, 1, fsname) < 0 ||
	    fuse_opt_insert_arg(&args, 1, "-osubtype=aiodfs") < 0 ||
	    fuse_opt_insert_arg(&args, 1, max_read) < 0)
		goto out;
	conn_opts = fuse_parse_conn_info_opts(&args);
	if (!conn_opts)
		goto out;
	afs.se = fuse_session_new(&args, &afs_ops, sizeof(afs_ops), conn_opts);
	if (!afs.se)
		goto out; /* libfuse said why, in one line */

	afs.root_fd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (afs.root_fd < 0) {
		afs_log(LOG_ERR, "%s: %s", src, strerror(errno));
		goto out_session;
	}
	afs.uid = geteuid();
	afs.shared_unchecked = afs.uid == 0 && cli.allow_other &&
			       !cli.default_permissions;
	afs_inode_init_root();

	if (!copts.foreground) {
		pipe_fd = detach();
		if (pipe_fd < 0)
			goto out_session;
	}
	/* The kernel applied the caller's umask; workers must not again. */
	umask(0);
	popts.workers = afs.opt.workers;
	popts.arena_size = ARENA_SIZE;
	/* Requests name most inodes by handle under the root: no fd to pass. */
	popts.shared_fds = &afs.root_fd;
	popts.nshared = 1;
	popts.poll_us = afs.opt.poll_us;
	/* Detached, nothing of ours holds the caller's stdio: see report(). */
	popts.quiet = !copts.foreground;
	err = aiod_pool_new(&afs.pool, &popts);
	if (err < 0) {
		afs_log(LOG_ERR, "cannot start aiod workers (%s): %s",
			aiod_worker_path(), strerror(-err));
		goto out_report;
	}
	afs_stats_init();
	err = probe_root();
	if (err < 0) {
		afs_log(LOG_ERR, "%s: %s", src, strerror(-err));
		goto out_pool;
	}
	afs_loop_splice_setup();
	if (fuse_session_mount(afs.se, mnt) != 0)
		goto out_pool; /* libfuse said why */
	/*
	 * Workers write the answers to reads and writes themselves
	 * (ops.c, direct_reply()); without, the loop does.
	 */
	err = aiod_pool_share(afs.pool, fuse_session_fd(afs.se));
	afs.reply_fd = err < 0 ? -1 : fuse_session_fd(afs.se);
	if (err < 0)
		afs_log(LOG_WARNING, "%s: workers cannot reply: %s", mnt,
			strerror(-err));
	err = afs_loop_init_session();
	if (err < 0) {
		afs_log(LOG_ERR, "%s: the kernel's INIT failed: %s", mnt,
			strerror(-err));
		goto out_unmount;
	}
	if (cli.readahead)
		set_readahead(mnt, cli.readahead == (unsigned)-1 ? cli.max_read / 1024
								: cli.readahead);
	report(pipe_fd, 0);
	pipe_fd = -1;

	err = afs_loop_run();
	if (err < 0)
		afs_log(LOG_ERR, "%s: %s", mnt, strerror(-err));
	else
		ret = 0;
out_unmount:
	/* Requests still out complete (and reply) while still mounted. */
	afs_ops_shutdown();
	aiod_pool_free(afs.pool);
	afs.pool = NULL;
	afs_ops_shutdown(); /* a try the pool's end answered */
	fuse_session_unmount(afs.se);
out_pool:
	if (afs.pool)
		aiod_pool_free(afs.pool);
out_report:
	report(pipe_fd, 1);
out_session:
	fuse_session_destroy(afs.se);
out:
	fuse_opt_free_args(&args);
	free(conn_opts);
	free(copts.mountpoint);
	free(cli.source);
	free(cli.cache);
	free(fsname);
	free(src);
	free(mnt);
	return ret;
}
