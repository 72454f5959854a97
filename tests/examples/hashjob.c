/* SPDX-License-Identifier: MIT */
/*
 * hashjob.c - hash many files through a libaiod pool, whatever the loop:
 * the shared core of the aiodhash (poll) and uvhash (libuv) examples.
 *
 * DESIGN
 *
 * A job runs up to DEPTH "lanes".  A lane hashes one file at a time and
 * has exactly one request in flight: OPEN, then PREADs of READ_SIZE bytes
 * at increasing offsets until one returns 0 (end of file), then CLOSE;
 * then it takes the next file from the command line.  Each step is
 * submitted from the callback of the one before.  The pool completes
 * requests in any order, but a lane never has two reads out, so each
 * file's bytes reach the hash in order; the parallelism comes from DEPTH
 * files being read at once, not from several reads of one file.
 *
 * Each lane owns one READ_SIZE buffer from aiod_buf_alloc(), in the
 * pool's arena: the worker's pread() writes straight into the memory the
 * lane hashes, with no copy, and the buffer is reused for every read.
 *
 * A file's result (hash or errno) is stored when its lane finishes it;
 * results are printed as soon as they and all those before them are in,
 * so the output follows the argument order whatever the completion order,
 * yet streams instead of waiting for the last file.  Errors go to stderr
 * at the same point, so stderr is deterministic too.
 *
 * The pool gets one worker per lane (a lane has one request out, so more
 * workers would idle) and an arena with room for the lanes' buffers plus
 * the request messages.
 *
 * The hash is 64-bit FNV-1a (Fowler, Noll, Vo): for each byte, xor it in,
 * then multiply by the FNV prime.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <aiod.h>

#include "hashjob.h"

#define READ_SIZE ((size_t)256 << 10)
#define DEPTH_DEFAULT 8
#define DEPTH_MAX 64
/* Arena beyond the buffers: a request message is a few hundred bytes. */
#define ARENA_SLACK ((size_t)1 << 20)

#define FNV_OFFSET_BASIS UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME UINT64_C(0x100000001b3)

/* One file of the command line. */
struct file {
	uint64_t hash;
	int err;                /* errno, 0 if it was hashed */
	bool done;
};

/* A lane: a buffer and a request, hashing one file after another. */
struct lane {
	struct aiod_req req;    /* its only request in flight */
	struct hashjob *job;
	void *buf;              /* READ_SIZE bytes in the arena */
	bool busy;              /* has a file, so req may be in flight */
	size_t file;            /* which file, an index into job->paths */
	int fd;                 /* the file's, -1 before OPEN, after CLOSE */
	uint64_t off;           /* bytes hashed so far */
	uint64_t hash;
	int err;                /* first errno the file met */
};

struct hashjob {
	const char *prog;       /* for messages */
	char **paths;
	size_t npaths;
	struct file *files;
	size_t next;            /* the next file to give a lane */
	size_t printed;         /* files whose line is out */
	struct lane *lanes;
	unsigned nlanes;
	bool stopping;          /* no new work: hashjob_abort() or _free() */
	int status;             /* exit status so far */
	struct aiod_pool *pool;
};

static uint64_t fnv1a64(uint64_t h, const unsigned char *p, size_t n)
{
	while (n--) {
		h ^= *p++;
		h *= FNV_PRIME;
	}
	return h;
}

/* Store file i's result, then print every result now in order. */
static void file_done(struct hashjob *job, size_t i, uint64_t hash, int err)
{
	job->files[i].hash = hash;
	job->files[i].err = err;
	job->files[i].done = true;

	while (job->printed < job->npaths && job->files[job->printed].done) {
		const struct file *f = &job->files[job->printed];
		const char *path = job->paths[job->printed];

		if (f->err) {
			/* Keep the lines in order on a shared terminal. */
			fflush(stdout);
			fprintf(stderr, "%s: %s: %s\n", job->prog, path,
				strerror(f->err));
			job->status = 1;
		} else {
			printf("%016" PRIx64 "  %s\n", f->hash, path);
		}
		job->printed++;
	}
}

static void lane_cb(struct aiod_req *req);

/* Submit the request the caller prepared in l->req.  Returns aiod_submit's. */
static int lane_submit(struct lane *l)
{
	l->req.cb = lane_cb;
	l->req.data = l;
	return aiod_submit(l->job->pool, &l->req);
}

/*
 * Give l the next file and submit its OPEN, or leave l idle when none is
 * left.  A file whose OPEN cannot even be submitted (a name too long,
 * say) fails at once, and the lane moves on to the next.
 */
static void lane_next(struct lane *l)
{
	struct hashjob *job = l->job;
	int err;

	while (!job->stopping && job->next < job->npaths) {
		l->file = job->next++;
		l->fd = -1;
		l->off = 0;
		l->hash = FNV_OFFSET_BASIS;
		l->err = 0;
		aiod_prep_open(&l->req, AT_FDCWD, job->paths[l->file], O_RDONLY,
			       0, 0);
		err = lane_submit(l);
		if (!err) {
			l->busy = true;
			return;
		}
		file_done(job, l->file, 0, -err);
	}
	l->busy = false;
}

/* The file is over, hashed or failed: record it and take the next. */
static void lane_finish(struct lane *l)
{
	file_done(l->job, l->file, l->hash, l->err);
	lane_next(l);
}

/* Hand the file's fd to the pool to close, in a worker. */
static void lane_close(struct lane *l)
{
	int fd = l->fd;

	l->fd = -1;
	aiod_prep_close(&l->req, fd);
	if (!lane_submit(l))
		return;
	/* Not submitted, so the fd is still ours. */
	close(fd);
	lane_finish(l);
}

/* Ask for the next READ_SIZE bytes of the file, into the lane's buffer. */
static void lane_read(struct lane *l)
{
	int err;

	aiod_prep_pread(&l->req, l->fd, l->buf, READ_SIZE, (off_t)l->off);
	err = lane_submit(l);
	if (!err)
		return;
	l->err = -err;
	lane_close(l);
}

/* The one callback of every request: the step that ended picks the next. */
static void lane_cb(struct aiod_req *req)
{
	struct lane *l = req->data;
	int64_t res = req->result;

	if (l->job->stopping) {
		/* Cancelled by hashjob_free() after an abort: just let go. */
		if (req->ret_fd >= 0)
			close(req->ret_fd);
		if (l->fd >= 0)
			close(l->fd);
		l->fd = -1;
		l->busy = false;
		return;
	}

	switch (req->op) {
	case AIOD_OP_OPEN:
		if (res < 0) {
			l->err = (int)-res;
			lane_finish(l);
			return;
		}
		l->fd = req->ret_fd;
		lane_read(l);
		return;
	case AIOD_OP_PREAD:
		if (res < 0)
			l->err = (int)-res;
		if (res <= 0) {
			lane_close(l);
			return;
		}
		/* req->out is l->buf: the worker wrote the bytes in place. */
		l->hash = fnv1a64(l->hash, req->out, (size_t)res);
		l->off += (uint64_t)res;
		lane_read(l);
		return;
	case AIOD_OP_CLOSE:
		/* The fd is gone either way; report an error only if first. */
		if (res < 0 && !l->err)
			l->err = (int)-res;
		lane_finish(l);
		return;
	default:
		abort();        /* a lane submits nothing else */
	}
}

/* Free what hashjob_new() got, however far it got. */
static void job_destroy(struct hashjob *job)
{
	job->stopping = true;
	if (job->pool) {
		/*
		 * Only after hashjob_abort() can a lane still be busy; its
		 * request ends inside aiod_pool_free() with -ECANCELED, and
		 * its buffer goes with the arena.
		 */
		for (unsigned i = 0; i < job->nlanes; i++)
			if (!job->lanes[i].busy)
				aiod_buf_free(job->pool, job->lanes[i].buf);
		aiod_pool_free(job->pool);
	}
	free(job->lanes);
	free(job->files);
	free(job);
}

static int usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [-j DEPTH] FILE...\n"
		"Print the 64-bit FNV-1a hash of each FILE, reading DEPTH files at once\n"
		"(1 to %d, default %d) through a pool of aiod workers.\n",
		prog, DEPTH_MAX, DEPTH_DEFAULT);
	return 2;
}

int hashjob_new(struct hashjob **jobp, int argc, char **argv)
{
	struct aiod_pool_opts opts = { 0 };
	const char *prog = argc > 0 ? argv[0] : "hashjob";
	unsigned long depth = DEPTH_DEFAULT;
	struct hashjob *job;
	char *end;
	int c, err;

	if (strrchr(prog, '/'))
		prog = strrchr(prog, '/') + 1;
	while ((c = getopt(argc, argv, "j:")) != -1) {
		if (c != 'j')
			return usage(prog);
		errno = 0;
		depth = strtoul(optarg, &end, 10);
		if (errno || end == optarg || *end || depth < 1 ||
		    depth > DEPTH_MAX)
			return usage(prog);
	}
	if (optind >= argc)
		return usage(prog);

	job = calloc(1, sizeof(*job));
	if (!job)
		goto out_nomem;
	job->prog = prog;
	job->paths = argv + optind;
	job->npaths = (size_t)(argc - optind);
	/* More lanes than files would only cost workers and buffers. */
	job->nlanes = (unsigned)(depth < job->npaths ? depth : job->npaths);
	job->files = calloc(job->npaths, sizeof(*job->files));
	job->lanes = calloc(job->nlanes, sizeof(*job->lanes));
	if (!job->files || !job->lanes)
		goto out_nomem;

	opts.workers = job->nlanes;
	opts.arena_size = job->nlanes * READ_SIZE + ARENA_SLACK;
	err = aiod_pool_new(&job->pool, &opts);
	if (err) {
		fprintf(stderr, "%s: cannot start the aiod pool: %s\n", prog,
			strerror(-err));
		goto out_err;
	}
	for (unsigned i = 0; i < job->nlanes; i++) {
		struct lane *l = &job->lanes[i];

		l->job = job;
		l->fd = -1;
		l->buf = aiod_buf_alloc(job->pool, READ_SIZE);
		if (!l->buf) {
			fprintf(stderr, "%s: no room for buffers in the arena\n",
				prog);
			goto out_err;
		}
	}
	*jobp = job;
	return 0;

out_nomem:
	fprintf(stderr, "%s: %s\n", prog, strerror(ENOMEM));
out_err:
	if (job)
		job_destroy(job);
	return 1;
}

struct aiod_pool *hashjob_pool(const struct hashjob *job)
{
	return job->pool;
}

void hashjob_start(struct hashjob *job)
{
	for (unsigned i = 0; i < job->nlanes; i++)
		lane_next(&job->lanes[i]);
}

bool hashjob_done(const struct hashjob *job)
{
	return job->stopping || job->printed == job->npaths;
}

void hashjob_abort(struct hashjob *job, const char *what, const char *why)
{
	fprintf(stderr, "%s: %s: %s\n", job->prog, what, why);
	job->status = 1;
	job->stopping = true;
}

int hashjob_free(struct hashjob *job)
{
	int status = job->status;

	if (fflush(stdout) == EOF || ferror(stdout)) {
		fprintf(stderr, "%s: write error on standard output\n",
			job->prog);
		status = 1;
	}
	job_destroy(job);
	return status;
}
