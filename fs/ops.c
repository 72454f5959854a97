/* SPDX-License-Identifier: MIT */
/*
 * ops.c - the FUSE operations, each turned into aiod requests.
 *
 * A handler runs on the loop thread and must not block: it copies what
 * it needs out of the kernel's request (names and small values live in
 * the receive buffer, which the loop reuses as soon as the handler
 * returns), submits an aiod request and returns.  The request's callback
 * sends the reply, or submits the next step of a longer chain (setattr
 * runs one syscall per attribute; a lookup without file handles needs an
 * O_PATH open).  Everything one kernel request needs lives in one
 * struct op, freed with the reply.
 *
 * Objects are named by inode (afs_inode_set_obj(): a file handle the
 * worker opens, or a pinned O_PATH fd) and names under a parent inode,
 * never by path, so a rename in the source behind the mount makes an
 * operation act on the object it meant or fail with ESTALE or ENOENT.
 * Open files and directories hold one fd each, the canonical open file
 * description that every request on them uses, whichever worker runs
 * it; their last close runs in a worker.
 *
 * Requests run with the caller's fsuid, fsgid and groups when the daemon
 * runs as root and the caller is someone else, so the source does the
 * permission checks and what a caller creates is theirs.
 */
#include <dirent.h>
#include <linux/fuse.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "aiodfs.h"

#define MAX_GROUPS 256

struct op;
typedef void op_step(struct op *op);

struct op {
	struct aiod_req req;
	fuse_req_t freq;
	struct afs_inode *in[2];    /* held while the op lives */
	struct afs_file *file[2];   /* held while the op lives */
	void *rbuf;                 /* a receive buffer the op holds */
	void *pipe;                 /* a pipe with its data (a write) */
	op_step *next;              /* the next step, run by the callback */
	int stage;
	bool has_cred;
	bool as_daemon;             /* the next request alone runs as the daemon */
	bool retried;               /* setattr: a refused step was retried */
	bool tmpfile;               /* create: O_TMPFILE, no name */
	bool statx;                 /* getattr: came as FUSE_STATX */
	struct aiod_cred cred;
	uint32_t groups[MAX_GROUPS];
	uint32_t *more_groups;      /* a caller's groups past MAX_GROUPS */
	int cred_err;               /* set_cred() could not take them all */
	struct stat attr;           /* setattr: the wanted attributes */
	int valid;                  /* setattr: FUSE_SET_ATTR_* */
	struct fuse_file_info fi;   /* create, open */
	struct afs_inode *made;     /* an entry's inode, once known */
	struct statx stx;           /* an entry's identity */
	int mount_id;               /* and its mount's */
	int path_fd;                /* lookup_now()'s O_PATH fd of it, or -1 */
	int lock;                   /* locks: where a wait stands, LK_* */
	bool interrupted;           /* locks: the caller gave up */
	int lock_op;                /* flock: LOCK_SH or LOCK_EX; 0: fcntl */
	struct aiod_lock lk;        /* fcntl: the range */
	uint64_t owner;             /* fcntl: the kernel's lock owner */
	int lock_cmd;               /* fcntl: F_OFD_GETLK, _SETLK, _SETLKW */
	unsigned park_ms;           /* locks: parked, tries every park_ms */
	int64_t park_due;           /* locks: parked, next try (ms) */
	struct op *park_next;       /* locks: on the parked list */
	struct afs_live live;       /* for stats.c, from its first request */
	struct aiod_reply reply;    /* see direct_reply() */
	struct afs_inode *wait_in;  /* a write on wait_in->writing, or NULL */
	struct op *wait_next;       /* on that list, or a read on
				       reads_waiting */
	uint64_t wseq;              /* write: its number; read: the last
				       write it may wait for */
	off_t wstart, wend;         /* the bytes it writes or reads */
	uint64_t dir_pos;           /* readdir: the position it reads after */
	int err;                    /* the error it was answered with */
	char *name[2];              /* copies, in extra below */
	char extra[];
};

/*
 * Where a lock request stands (op->lock): waiting in a worker, trying
 * without waiting, parked in the daemon (see "Blocking lock waits"), or
 * waiting for closes on its inode (see "Closing a file drops its locks").
 */
enum { LK_NONE, LK_WAIT, LK_TRY, LK_PARKED, LK_CLOSING };

/* ---- timeouts and conversions ----------------------------------------- */

static double attr_timeout(void)
{
	return afs.opt.attr_timeout;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Shared by users and checked by the source, a mount must not let the
 * kernel reuse a name one user looked up for another: without
 * default_permissions the kernel checks no search permission on cached
 * names, and the request that follows reaches the object without a path.
 * A timeout of 0 makes each path walk ask again, as the caller.
 */
static double entry_timeout(void)
{
	return afs.shared_unchecked ? 0.0 : afs.opt.entry_timeout;
}

/* The same holds for a name's absence. */
static double negative_timeout(void)
{
	return afs.shared_unchecked ? 0.0 : afs.opt.negative_timeout;
}

/* A timeout in seconds as FUSE carries it (a huge one: the longest). */
static void split_timeout(double t, uint64_t *sec, uint32_t *nsec)
{
	*sec = t < (double)UINT64_MAX ? (uint64_t)t : UINT64_MAX;
	*nsec = t < (double)UINT64_MAX ? (uint32_t)((t - (double)*sec) * 1e9) : 0;
}

static void stat_of(const struct statx *x, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_dev = makedev(x->stx_dev_major, x->stx_dev_minor);
	st->st_ino = afs_ino_of(st->st_dev, x->stx_ino);
	st->st_mode = x->stx_mode;
	st->st_nlink = x->stx_nlink;
	st->st_uid = x->stx_uid;
	st->st_gid = x->stx_gid;
	st->st_rdev = makedev(x->stx_rdev_major, x->stx_rdev_minor);
	st->st_size = (off_t)x->stx_size;
	st->st_blksize = x->stx_blksize;
	st->st_blocks = (blkcnt_t)x->stx_blocks;
	st->st_atim.tv_sec = x->stx_atime.tv_sec;
	st->st_atim.tv_nsec = x->stx_atime.tv_nsec;
	st->st_mtim.tv_sec = x->stx_mtime.tv_sec;
	st->st_mtim.tv_nsec = x->stx_mtime.tv_nsec;
	st->st_ctim.tv_sec = x->stx_ctime.tv_sec;
	st->st_ctim.tv_nsec = x->stx_ctime.tv_nsec;
}

/* ---- the life of an op -------------------------------------------------- */

static void complete(struct aiod_req *req);

/*
 * A new op for freq with room for the given names (copied), or NULL
 * after replying ENOMEM.
 */
static struct op *op_new(fuse_req_t freq, int opcode, const char *n0,
			 const char *n1)
{
	size_t l0 = n0 ? strlen(n0) + 1 : 0, l1 = n1 ? strlen(n1) + 1 : 0;
	struct op *op = malloc(sizeof(*op) + l0 + l1);

	if (!op) {
		fuse_reply_err(freq, ENOMEM);
		afs_stats_count(opcode, ENOMEM, 0);
		return NULL;
	}
	memset(op, 0, sizeof(*op));
	op->freq = freq;
	op->path_fd = -1;
	op->live.opcode = (uint8_t)opcode;
	op->live.start_ns = afs_now_ns();
	if (n0)
		op->name[0] = memcpy(op->extra, n0, l0);
	if (n1)
		op->name[1] = memcpy(op->extra + l0, n1, l1);
	return op;
}

static void write_ends(struct op *op);

static void op_free(struct op *op)
{
	if (op->wait_in)
		write_ends(op);
	afs_live_end(&op->live, op->err);
	for (int i = 0; i < 2; i++) {
		if (op->in[i])
			afs_inode_put(op->in[i]);
		if (op->file[i])
			afs_file_put(op->file[i]);
	}
	if (op->made)
		afs_inode_put(op->made);
	if (op->rbuf)
		afs_loop_release(op->rbuf);
	if (op->pipe)
		afs_loop_put_pipe(op->pipe);
	if (op->path_fd >= 0)
		close(op->path_fd); /* see lookup_now() */
	free(op->more_groups);
	free(op);
}

static void reply_err(struct op *op, int err)
{
	fuse_reply_err(op->freq, err);
	op->err = err;
	op_free(op);
}

/*
 * Fill op->cred from the caller, when the request must run as them: the
 * daemon is root (it can switch) and the caller is not the daemon's user.
 */
static void set_cred(struct op *op)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(op->freq);
	int n;

	if (afs.uid != 0 || (ctx->uid == 0 && ctx->gid == 0))
		return;
	op->cred.groups = op->groups;
	n = fuse_req_getgroups(op->freq, MAX_GROUPS, (gid_t *)op->groups);
	if (n > MAX_GROUPS) {
		/* More than the op holds (up to NGROUPS_MAX): all of them. */
		int m = -1;

		op->more_groups = malloc(sizeof(uint32_t) * (size_t)n);
		if (op->more_groups)
			m = fuse_req_getgroups(op->freq, n, (gid_t *)op->more_groups);
		else
			op->cred_err = ENOMEM; /* not as "other" for want of them */
		op->cred.groups = op->more_groups;
		n = m < n ? m : n; /* gone meanwhile (-1), or fewer now */
	}
	if (n < 0)
		n = 0; /* the process is gone, or not in our pid namespace */
	op->cred.uid = ctx->uid;
	op->cred.gid = ctx->gid;
	op->cred.ngroups = (uint32_t)n;
	op->has_cred = true;
}

/*
 * For requests on a file the caller has open (write, fallocate,
 * copy_file_range): nothing is checked against the caller again, but
 * the source charges the writer: ext4 keeps blocks in reserve that only
 * root may use, and quota limits stop all but root.  So these run as
 * the caller too, by fsuid and fsgid alone: its supplementary groups
 * would cost a /proc read per write, and matter here only for ext4's
 * reserve group.
 */
static void set_cred_writer(struct op *op)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(op->freq);

	if (afs.uid != 0 || (ctx->uid == 0 && ctx->gid == 0))
		return;
	op->cred.uid = ctx->uid;
	op->cred.gid = ctx->gid;
	op->cred.ngroups = 0;
	op->cred.groups = op->groups;
	op->has_cred = true;
}

/* Make inode nodeid the op's object i, held until the op ends. */
static struct afs_inode *op_obj(struct op *op, int i, fuse_ino_t nodeid)
{
	struct afs_inode *in = afs_inode_get(nodeid);

	afs_inode_hold(in);
	op->in[i] = in;
	afs_inode_set_obj(&op->req, i, in);
	if (i == 0) {
		op->live.ino = in->ino;
		op->live.name = op->name[0];
	}
	return in;
}

/*
 * Whether a worker should keep a copy of f's fd for requests on it
 * (AIOD_F_KEEP).  Always on a source whose files flush at every close
 * (NFS, FUSE): a passed copy's close would be one more flush.  On a local
 * one, from f's second request on: a file used once (created and closed
 * empty, written once, read once) then needs no worker to close its
 * last copy (file_close()).
 */
static bool file_keeps(struct afs_file *f)
{
	if (f->local && f->uses++ == 0)
		return false;
	f->worker_close = true;
	return true;
}

/* Name the op's open file i to the worker (again, after an aiod_prep_*). */
static void op_file_fd(struct op *op, int i)
{
	op->req.fd[i] = op->file[i]->fd;
	if (i == 0 && file_keeps(op->file[i]))
		op->req.flags |= AIOD_F_KEEP; /* closed only by file_close() */
}

/* Make open file fi the op's fd i, held until the op ends. */
static void op_file(struct op *op, int i, const struct fuse_file_info *fi)
{
	struct afs_file *f = (struct afs_file *)(uintptr_t)fi->fh;

	f->refs++;
	op->file[i] = f;
	op_file_fd(op, i);
	if (i == 0 && !op->live.ino && f->in)
		op->live.ino = f->in->ino;
}

/* The op changes the data of its file i: its next flush must reach the source. */
static void op_changes_data(struct op *op, int i)
{
	if (op->file[i]->in)
		op->file[i]->in->writes++;
}

/* The request adds or removes a name in directory op->in[i]. */
static void op_changes_entries(struct op *op, int i)
{
	op->in[i]->writes++;
}

/*
 * Submit op->req; next runs from its callback.  Returns false if it
 * failed: then the kernel has the error and the op is gone.
 */
static bool op_submit(struct op *op, op_step *next)
{
	int err;

	if (op->cred_err) {
		reply_err(op, op->cred_err);
		return false;
	}
	op->next = next;
	op->req.cb = complete;
	op->req.data = op;
	if (!op->live.req)
		afs_live_link(&op->live, &op->req); /* the op stays put now */
	op->req.cred = op->has_cred && !op->as_daemon ? &op->cred : NULL;
	op->as_daemon = false;
	err = aiod_submit(afs.pool, &op->req);
	if (err < 0)
		reply_err(op, -err);
	return err == 0;
}

/*
 * Reads, writes, fsyncs, flushes, unlinks, rmdirs and renames are
 * answered by the worker that runs them, straight to the kernel, when
 * they succeed (nothing of ours changes with them): the reply goes out
 * without a trip back through the loop, which learns of it when it next
 * wakes (aiod_pool_lazy()).  Their last step must do nothing on success
 * but reply and free: this op's one request must be its last.  The reply
 * to write to the session fd: struct fuse_out_header (error 0, the
 * kernel's id for the request), plus for a write a struct
 * fuse_write_out whose size is the result; a read's data follows.
 */
static void direct_reply(struct op *op, bool write)
{
	struct fuse_out_header h = { .error = 0 };
	struct fuse_write_out w = { .size = 0 };

	if (afs.reply_fd < 0 || !afs_loop_unique(&h.unique))
		return;
	op->reply.fd = afs.reply_fd;
	op->reply.hdr_len = sizeof(h) + (write ? sizeof(w) : 0);
	op->reply.len_off = offsetof(struct fuse_out_header, len);
	op->reply.res_off = write ? sizeof(h) + offsetof(struct fuse_write_out, size)
				  : 0;
	memcpy(op->reply.hdr, &h, sizeof(h));
	if (write)
		memcpy(op->reply.hdr + sizeof(h), &w, sizeof(w));
	op->req.reply = &op->reply;
}

/* The bytes a read, write or copy that succeeded moved, for the stats. */
static void count_bytes(const struct op *op)
{
	if (op->live.opcode == AFS_OP_READ)
		afs_stats_bytes((uint64_t)op->req.result, 0, false);
	else if (op->live.opcode == AFS_OP_WRITE ||
		 op->live.opcode == AFS_OP_COPY_FILE_RANGE)
		afs_stats_bytes(0, (uint64_t)op->req.result, op->pipe != NULL);
}

static void complete(struct aiod_req *req)
{
	struct op *op = req->data;

	if (!req->replied) {
		op->next(op);
		return;
	}
	/* The worker answered: libfuse need only forget the request. */
	if (req->result < 0)
		op->err = (int)-req->result; /* absent_reply()'s ENOENT */
	count_bytes(op);
	fuse_reply_none(op->freq);
	op->live.end_ns = (int64_t)req->reply_ns;
	op_free(op);
}

/* The common last step: reply 0 or the error. */
static void reply_status(struct op *op)
{
	reply_err(op, op->req.result < 0 ? (int)-op->req.result : 0);
}

/* ---- entries: lookup and everything that creates ------------------------ */

static void reply_entry(struct op *op);

static bool handle_usable(const struct aiod_req *req)
{
	return afs.use_handles && req->fh.handle_bytes &&
	       afs_mount_fd(req->mount_id) >= 0;
}

/*
 * Without a usable handle, the new inode pins an O_PATH fd, opened by
 * name under the parent and checked to be the object just identified.
 */
static void pinned(struct op *op)
{
	struct aiod_req *req = &op->req;
	struct afs_inode *in;

	if (req->result < 0) {
		reply_err(op, (int)-req->result);
		return;
	}
	if (req->stx.stx_ino != op->stx.stx_ino ||
	    req->stx.stx_dev_major != op->stx.stx_dev_major ||
	    req->stx.stx_dev_minor != op->stx.stx_dev_minor) {
		/* Replaced behind our back between the two steps. */
		afs_close_path(req->ret_fd);
		reply_err(op, ESTALE);
		return;
	}
	in = afs_inode_find(&op->stx, NULL);
	if (in)
		afs_close_path(req->ret_fd);
	else
		in = afs_inode_new(&op->stx, NULL, -1, req->ret_fd);
	if (!in) {
		afs_close_path(req->ret_fd);
		reply_err(op, ENOMEM);
		return;
	}
	afs_mount_learn(in, op->mount_id);
	afs_inode_hold(in);
	op->made = in;
	reply_entry(op);
}

/*
 * The request in op->req identified an object (stx, fh) named op->name[0]
 * under op->in[0]: find or make its inode, then reply_entry().
 */
static void entry_found(struct op *op)
{
	struct aiod_req *req = &op->req;
	struct afs_inode *in;
	bool usable = handle_usable(req);

	if (!(req->stx.stx_mask & STATX_INO)) {
		reply_err(op, EIO);
		return;
	}
	op->stx = req->stx;
	op->mount_id = req->mount_id;
	in = afs_inode_find(&req->stx, usable ? &req->fh : NULL);
	if (!in && usable)
		in = afs_inode_new(&req->stx, &req->fh, req->mount_id, -1);
	if (in) {
		afs_inode_hold(in);
		op->made = in;
		reply_entry(op);
		return;
	}
	if (usable) {
		reply_err(op, ENOMEM);
		return;
	}
	if (op->tmpfile) {
		/* No name to open it by: through the file just made. */
		aiod_prep_open(req, op->file[1]->fd, NULL, O_PATH, 0, 0);
	} else {
		aiod_prep_open(req, -1, op->name[0], O_PATH | O_NOFOLLOW, 0,
			       RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
		afs_inode_set_obj(req, 0, op->in[0]);
	}
	req->flags = AIOD_F_LOOKUP;
	op_submit(op, pinned);
}

static void fill_entry(struct op *op, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = (fuse_ino_t)(uintptr_t)op->made;
	stat_of(&op->stx, &e->attr);
	e->attr_timeout = attr_timeout();
	e->entry_timeout = entry_timeout();
}

/* The open file f is of inode in, which it holds (once known). */
static void file_set_inode(struct afs_file *f, struct afs_inode *in)
{
	if (in && !f->in) {
		afs_inode_hold(in);
		f->in = in;
		f->flushed = in->writes;
		in->open_file = f;
	}
}

/* f, released or gone, no longer stands for its inode in setattr_obj(). */
static void file_leaves_inode(struct afs_file *f)
{
	if (f->in && f->in->open_file == f)
		f->in->open_file = NULL;
}

static void caps_absent(struct afs_inode *in);

/* Reply with the entry op->made, giving the kernel one reference. */
static void reply_entry(struct op *op)
{
	struct fuse_entry_param e;

	afs_inode_learn_dir(op->in[0], op->name[0], op->made, &op->path_fd);
	fill_entry(op, &e);
	if (op->fi.fh) {
		/* create: the entry and the open file, whose reference the
		 * kernel takes over from the op. */
		op->made->nlookup++;
		op->file[1]->refs++;
		file_set_inode(op->file[1], op->made);
		if (op->fi.flags & O_EXCL)
			caps_absent(op->made); /* made new, with no xattr */
		afs_loop_backing_next(afs_pt_attach(op->file[1]));
		if (fuse_reply_create(op->freq, &e, &op->fi) != 0) {
			afs_inode_forget(op->made, 1);
			afs_pt_detach(op->file[1], false);
			afs_file_put(op->file[1]);
		}
		afs_loop_backing_next(0);
		op_free(op);
		return;
	}
	op->made->nlookup++;
	if (fuse_reply_entry(op->freq, &e) != 0)
		afs_inode_forget(op->made, 1); /* interrupted: not taken */
	op_free(op);
}

/* After a request with AIOD_F_LOOKUP (or a LOOKUP) under op->in[0]. */
static void entry_done(struct op *op)
{
	if (op->req.result < 0) {
		reply_err(op, (int)-op->req.result);
		return;
	}
	entry_found(op);
}

/*
 * Lookups of a name the source lacks are answered by the worker, like
 * reads (direct_reply()), when the lookup fails with ENOENT: the
 * negative entry lookup_failed() would send, which needs nothing of the
 * loop's tables.  The program's next request (the create that often
 * follows) then need not wait for the loop to hear from the worker.
 */
static void absent_reply(struct op *op)
{
	struct {
		struct fuse_out_header h;
		struct fuse_entry_out e;
	} r;
	double t = negative_timeout();

	_Static_assert(sizeof(r) <= AIOD_REPLY_HDR_MAX, "a whole entry reply");
	memset(&r, 0, sizeof(r));
	if (afs.reply_fd < 0 || t <= 0 || !afs.entry_out_full ||
	    !afs_loop_unique(&r.h.unique))
		return;
	split_timeout(t, &r.e.entry_valid, &r.e.entry_valid_nsec);
	op->reply.fd = afs.reply_fd;
	op->reply.hdr_len = sizeof(r);
	op->reply.len_off = offsetof(struct fuse_out_header, len);
	op->reply.res_off = 0;
	op->reply.on_error = -ENOENT;
	memcpy(op->reply.hdr, &r, sizeof(r));
	op->req.reply = &op->reply;
}

/*
 * A lookup that failed.  A name the source lacks the kernel may keep as
 * a negative entry for negative_timeout(): it asks again after that, at
 * once for an O_EXCL create, and forgets it when a name is made there
 * through the mount.  Returns whether it replied.
 */
static bool lookup_failed(struct op *op)
{
	struct fuse_entry_param e;

	if (op->req.result >= 0)
		return false;
	if (op->req.result != -ENOENT || negative_timeout() <= 0) {
		reply_err(op, (int)-op->req.result);
		return true;
	}
	memset(&e, 0, sizeof(e));
	e.entry_timeout = negative_timeout();
	fuse_reply_entry(op->freq, &e); /* ino 0: absent */
	op->err = ENOENT;
	op_free(op);
	return true;
}

static void lookup_done(struct op *op)
{
	if (!lookup_failed(op))
		entry_found(op);
}

/* Without handles, a lookup is the O_PATH open the inode will pin. */
static void lookup_pinned(struct op *op)
{
	struct aiod_req *req = &op->req;
	struct afs_inode *in;

	if (lookup_failed(op))
		return;
	op->stx = req->stx;
	in = afs_inode_find(&req->stx, NULL);
	if (in)
		afs_close_path(req->ret_fd);
	else
		in = afs_inode_new(&req->stx, NULL, -1, req->ret_fd);
	if (!in) {
		afs_close_path(req->ret_fd);
		reply_err(op, ENOMEM);
		return;
	}
	afs_inode_hold(in);
	op->made = in;
	reply_entry(op);
}

/*
 * A name the kernel's own caches hold under a directory the loop has an
 * fd of (afs_inode_loop_fd()) is looked up by the loop itself:
 * openat2() with RESOLVE_CACHED fails with EAGAIN rather than read a
 * directory or ask anyone (io_uring opens files the same way before it
 * hands them to a thread), and the statx and the handle of the O_PATH fd
 * it gives read only the inode in memory.  The result is what a worker's
 * lookup brings, and goes the same way.  Not for a caller the lookup
 * must run as (set_cred()): the source checks their search permission.
 * Returns whether it answered.
 */
static bool lookup_now(struct op *op)
{
	struct open_how how = {
		.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_CACHED,
	};
	struct aiod_req *req = &op->req;
	int dfd = afs_inode_loop_fd(op->in[0]), fd;

	if (dfd < 0 || op->has_cred)
		return false;
	fd = (int)syscall(SYS_openat2, dfd, op->name[0], &how, sizeof(how));
	if (fd < 0 && errno != ENOENT)
		return false; /* not all cached (EAGAIN), or a worker's to say */
	afs_stats_by_loop(AFS_OP_LOOKUP);
	if (fd < 0) {
		req->result = -ENOENT;
		lookup_failed(op);
		return true;
	}
	if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC,
		  STATX_BASIC_STATS | STATX_BTIME, &req->stx) < 0) {
		req->result = -errno;
		afs_close_path(fd);
		lookup_failed(op);
		return true;
	}
	req->result = 0;
	if (!afs.use_handles) {
		req->ret_fd = fd; /* the inode pins it */
		lookup_pinned(op);
		return true;
	}
	req->fh.handle_bytes = AIOD_FH_MAX;
	if (name_to_handle_at(fd, "", (struct file_handle *)&req->fh,
			      &req->mount_id, AT_EMPTY_PATH) < 0)
		req->fh.handle_bytes = 0;
	/*
	 * A directory may keep the fd (reply_entry()), for lookups under
	 * it and the loop's statx of it (getattr_now()).  Else op_free()
	 * closes it here, not in a worker (afs_close_async()): an O_PATH
	 * file has no flush, and a worker's round trip for its fd cost a
	 * third of the lookups per second.  Only if the object were
	 * unlinked in these microseconds and unused elsewhere would the
	 * close free it.
	 */
	op->path_fd = fd;
	entry_found(op);
	return true;
}

static void afs_lookup(fuse_req_t freq, fuse_ino_t parent, const char *name)
{
	struct op *op = op_new(freq, AFS_OP_LOOKUP, name, NULL);

	if (!op)
		return;
	set_cred(op);
	if (afs.use_handles) {
		aiod_prep_lookup(&op->req, -1, op->name[0]);
	} else {
		aiod_prep_open(&op->req, -1, op->name[0], O_PATH | O_NOFOLLOW, 0,
			       RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
		op->req.flags = AIOD_F_LOOKUP;
	}
	op_obj(op, 0, parent);
	if (lookup_now(op))
		return;
	absent_reply(op);
	op_submit(op, afs.use_handles ? lookup_done : lookup_pinned);
}

/*
 * With FUSE_CAP_DONT_MASK the kernel leaves the caller's umask to us:
 * the worker creates under it (AIOD_F_UMASK), so that the source
 * applies it, or in its place the directory's default ACL, as it does
 * for the caller on the source itself.  (The kernel masked the mode
 * before, and a default ACL's wider rights were lost.)  After the op's
 * flags are set.
 */
static void set_umask(struct op *op)
{
	if (afs.dont_mask)
		aiod_prep_umask(&op->req, fuse_req_ctx(op->freq)->umask);
}

static void afs_mknod(fuse_req_t freq, fuse_ino_t parent, const char *name,
		      mode_t mode, dev_t rdev)
{
	struct op *op = op_new(freq, AFS_OP_MKNOD, name, NULL);

	if (!op)
		return;
	set_cred(op);
	aiod_prep_mknod(&op->req, -1, op->name[0], mode, rdev);
	op_obj(op, 0, parent);
	op_changes_entries(op, 0);
	op->req.flags = AIOD_F_LOOKUP;
	set_umask(op);
	op_submit(op, entry_done);
}

static void afs_mkdir(fuse_req_t freq, fuse_ino_t parent, const char *name,
		      mode_t mode)
{
	struct op *op = op_new(freq, AFS_OP_MKDIR, name, NULL);

	if (!op)
		return;
	set_cred(op);
	aiod_prep_mkdir(&op->req, -1, op->name[0], mode);
	op_obj(op, 0, parent);
	op_changes_entries(op, 0);
	op->req.flags = AIOD_F_LOOKUP;
	set_umask(op);
	op_submit(op, entry_done);
}

static void afs_symlink(fuse_req_t freq, const char *target, fuse_ino_t parent,
			const char *name)
{
	struct op *op = op_new(freq, AFS_OP_SYMLINK, name, target);

	if (!op)
		return;
	set_cred(op);
	aiod_prep_symlink(&op->req, op->name[1], -1, op->name[0]);
	op_obj(op, 0, parent);
	op_changes_entries(op, 0);
	op->req.flags = AIOD_F_LOOKUP;
	op_submit(op, entry_done);
}

static void afs_link(fuse_req_t freq, fuse_ino_t ino, fuse_ino_t newparent,
		     const char *newname)
{
	struct op *op = op_new(freq, AFS_OP_LINK, newname, NULL);

	if (!op)
		return;
	set_cred(op);
	aiod_prep_link(&op->req, -1, NULL, -1, op->name[0], 0);
	/*
	 * LINK's source is slot 0 and its new parent slot 1, while
	 * entry_found() looks for the new entry under in[0]: the parent.
	 */
	op_obj(op, 0, newparent);
	op_obj(op, 1, ino);
	op_changes_entries(op, 0);
	afs_inode_set_obj(&op->req, 0, op->in[1]);
	afs_inode_set_obj(&op->req, 1, op->in[0]);
	op->req.flags = AIOD_F_LOOKUP;
	op_submit(op, entry_done);
}

/* ---- forget ------------------------------------------------------------- */

static void afs_forget(fuse_req_t freq, fuse_ino_t ino, uint64_t nlookup)
{
	afs_inode_forget(afs_inode_get(ino), nlookup);
	fuse_reply_none(freq);
	afs_stats_count(AFS_OP_FORGET, 0, 0);
}

static void afs_forget_multi(fuse_req_t freq, size_t count,
			     struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		afs_inode_forget(afs_inode_get(forgets[i].ino),
				 forgets[i].nlookup);
	fuse_reply_none(freq);
	afs_stats_count(AFS_OP_FORGET, 0, 0);
}

/* ---- attributes --------------------------------------------------------- */

/*
 * The reply to a FUSE_STATX (loop.c, statx_as_getattr()): protocol
 * 7.39's struct fuse_statx_out, which Debian 12's headers predate.  The
 * kernel takes exactly this size.
 */
struct sx_time {
	int64_t sec;
	uint32_t nsec;
	int32_t reserved;
};

struct statx_out {
	uint64_t attr_valid;
	uint32_t attr_valid_nsec;
	uint32_t flags;
	uint64_t spare[2];
	struct {
		uint32_t mask;
		uint32_t blksize;
		uint64_t attributes;
		uint32_t nlink, uid, gid;
		uint16_t mode;
		uint16_t spare0;
		uint64_t ino, size, blocks;
		uint64_t attributes_mask;
		struct sx_time atime, btime, ctime, mtime;
		uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
		uint64_t spare2[14];
	} stat;
};
_Static_assert(sizeof(struct statx_out) == 288, "fuse_statx_out is 288 bytes");

static struct sx_time sx_time_of(const struct statx_timestamp *t)
{
	return (struct sx_time){ .sec = t->tv_sec, .nsec = t->tv_nsec };
}

/* What the source said, as much as FUSE carries: the basics, birth time. */
static void reply_statx(struct op *op)
{
	const struct statx *x = &op->req.stx;
	struct statx_out out = {
		.stat = {
			.mask = x->stx_mask & (STATX_BASIC_STATS | STATX_BTIME),
			.blksize = x->stx_blksize,
			.attributes = x->stx_attributes,
			.nlink = x->stx_nlink, .uid = x->stx_uid, .gid = x->stx_gid,
			.mode = x->stx_mode,
			.ino = afs_ino_of(makedev(x->stx_dev_major,
						  x->stx_dev_minor),
					  x->stx_ino),
			.size = x->stx_size,
			.blocks = x->stx_blocks,
			.attributes_mask = x->stx_attributes_mask,
			.atime = sx_time_of(&x->stx_atime),
			.btime = sx_time_of(&x->stx_btime),
			.ctime = sx_time_of(&x->stx_ctime),
			.mtime = sx_time_of(&x->stx_mtime),
			.rdev_major = x->stx_rdev_major,
			.rdev_minor = x->stx_rdev_minor,
			.dev_major = x->stx_dev_major,
			.dev_minor = x->stx_dev_minor,
		},
	};

	split_timeout(attr_timeout(), &out.attr_valid, &out.attr_valid_nsec);
	fuse_reply_buf(op->freq, (const char *)&out, sizeof(out));
}

static void reply_attr(struct op *op)
{
	struct stat st;

	if (op->req.result < 0) {
		reply_err(op, (int)-op->req.result);
		return;
	}
	/*
	 * No name left: see getattr_now() and removal_done().  Not a
	 * directory removed through the mount, whose fd is all that
	 * reaches it (afs_inode_set_obj()).
	 */
	if ((op->req.stx.stx_mask & STATX_NLINK) && op->req.stx.stx_nlink == 0 &&
	    !op->in[0]->removed)
		afs_inode_drop_fd(op->in[0]);
	if (op->statx) {
		reply_statx(op);
	} else {
		stat_of(&op->req.stx, &st);
		fuse_reply_attr(op->freq, &st, attr_timeout());
	}
	op_free(op);
}

/* Prepare a STATX of the op's object (or of its open file) into stx. */
static void prep_getattr(struct op *op, struct fuse_file_info *fi)
{
	struct afs_inode *in = op->in[0];

	aiod_prep_statx(&op->req, -1, NULL, AT_SYMLINK_NOFOLLOW,
			STATX_BASIC_STATS | STATX_BTIME);
	if (fi && !op->file[0])
		op_file(op, 0, fi);
	if (op->file[0])
		op->req.fd[0] = op->file[0]->fd;
	else
		afs_inode_set_obj(&op->req, 0, in);
}

/*
 * The attributes of an object the loop has an fd of on a local source
 * (its open file's, or afs_inode_loop_fd()) come from the loop's own
 * statx: of a local filesystem's inode in memory, which waits for no
 * device and no server (forced sync or not, the kernel's getattr of
 * ext4, XFS and tmpfs reads the same inode).  Returns whether it
 * answered.
 *
 * An object with no name left in the source (removed, through the mount
 * while open or behind it) loses the loop's fd (in->pathfd) with the
 * first attributes that say so (reply_attr()): the fd would keep a
 * removed file's blocks until the kernel forgets the inode.  Its next
 * GETATTRs go to workers as before, whose open by handle finds it while
 * something else holds it, and says ESTALE once nothing does.  A
 * directory removed through the mount keeps its fd (afs_inode_set_obj()).
 */
static bool getattr_now(struct op *op)
{
	const struct afs_file *f = op->file[0];
	struct afs_inode *in = op->in[0];
	int fd = f ? (f->local ? f->fd : -1) : afs_inode_loop_fd(in);

	if (fd < 0)
		return false;
	afs_stats_by_loop(AFS_OP_GETATTR);
	op->req.result = statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW |
					       AT_STATX_DONT_SYNC,
			       STATX_BASIC_STATS | STATX_BTIME,
			       &op->req.stx) < 0
				 ? -errno
				 : 0;
	reply_attr(op);
	return true;
}

/*
 * A worker's O_PATH open by handle brought the attributes and an fd,
 * which the inode keeps unless the object has no name left.  Without
 * them (the open failed, out of fds say, or the statx after it did:
 * AIOD_F_LOOKUP's stx_mask 0), the attributes come as before.
 */
static void getattr_opened(struct op *op)
{
	struct aiod_req *req = &op->req;

	if (req->result >= 0 &&
	    (req->stx.stx_nlink == 0 || !afs_inode_keep_fd(op->in[0], req->ret_fd)))
		afs_close_path(req->ret_fd);
	if (req->result >= 0 && req->stx.stx_mask) {
		reply_attr(op);
		return;
	}
	if (getattr_now(op))
		return;
	prep_getattr(op, NULL);
	op_submit(op, reply_attr);
}

/*
 * An object the loop has no fd of, on a local source, gets one from its
 * first GETATTR: the worker opens it O_PATH by handle, as it would for
 * the statx, and its identity is the attributes (AIOD_F_LOOKUP); the
 * loop answers the object's next ones itself.  Only objects asked for
 * attributes pay for an fd (a GETATTR comes after the attribute timeout,
 * a write, or for a statx with AT_STATX_FORCE_SYNC): not the thousands a
 * tree walk looks up, which would then each cost a close at FORGET.
 */
static void afs_getattr(fuse_req_t freq, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	struct op *op = op_new(freq, AFS_OP_GETATTR, NULL, NULL);
	struct afs_inode *in;

	if (!op)
		return;
	in = op_obj(op, 0, ino);
	op->statx = afs_loop_statx();
	prep_getattr(op, fi);
	if (getattr_now(op))
		return;
	if (op->file[0] || in->fh.handle_bytes == 0 || !afs_inode_wants_fd(in)) {
		op_submit(op, reply_attr);
		return;
	}
	aiod_prep_open_by_handle(&op->req, in->mount_fd, &in->fh, O_PATH);
	op->req.flags = AIOD_F_LOOKUP;
	op_submit(op, getattr_opened);
}

/*
 * setattr runs one request per kind of attribute, in the order chmod,
 * chown, truncate, utimens; the last one also fetches the attributes
 * for the reply (AIOD_F_STATX), else a statx does; stage says how far it
 * got.
 */
enum { SA_MODE, SA_OWNER, SA_SIZE, SA_TIMES, SA_STAT };

static void setattr_step(struct op *op);

/*
 * Name the object of a chmod, chown or utimens: through a file open on
 * it when there is one (the kernel's, or op->file[1], the inode's last
 * opened), which a worker keeps already, rather than by handle, which
 * the worker opens and closes for the one request.  These check the
 * caller's rights on the inode, whatever the file was opened for (tar
 * sets a file's times, owner and mode before it closes it).  Not a
 * truncate: there the file's write access would stand in for the
 * caller's.
 */
static void setattr_obj(struct op *op)
{
	struct afs_file *f = op->file[0] ? op->file[0] : op->file[1];

	if (!f) {
		afs_inode_set_obj(&op->req, 0, op->in[0]);
		return;
	}
	op->req.fd[0] = f->fd;
	if (file_keeps(f))
		op->req.flags |= AIOD_F_KEEP;
}

/* Prepare the utimens of op->attr; now: both times UTIME_NOW instead. */
static void prep_times(struct op *op, bool now)
{
	const struct stat *a = &op->attr;
	struct timespec ts[2] = {
		{ .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT },
	};
	int v = op->valid;

	if (now || (v & FUSE_SET_ATTR_ATIME_NOW))
		ts[0].tv_nsec = UTIME_NOW;
	else if (v & FUSE_SET_ATTR_ATIME)
		ts[0] = a->st_atim;
	if (now || (v & FUSE_SET_ATTR_MTIME_NOW))
		ts[1].tv_nsec = UTIME_NOW;
	else if (v & FUSE_SET_ATTR_MTIME)
		ts[1] = a->st_mtim;
	aiod_prep_utimens(&op->req, -1, NULL, ts, AT_SYMLINK_NOFOLLOW);
	setattr_obj(op);
}

/*
 * Whether op is one of the times the kernel sends under writeback as
 * "now" by value (it keeps mtime itself): a utime(NULL), atime as "now"
 * and mtime as the kernel's value, or its own mtime of a file just
 * written, mtime alone; either within 2 s of now.  Not explicit times
 * of a program, both times or atime alone (a utimensat() of UTIME_NOW
 * and an mtime near now, or of such an mtime alone, look the same).
 */
static bool utime_now_by_value(const struct op *op)
{
	const int a = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW,
		  m = FUSE_SET_ATTR_MTIME;
	int v = op->valid & (a | m | FUSE_SET_ATTR_MTIME_NOW);
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return afs.opt.writeback && (v == m || v == (a | m)) &&
	       llabs((long long)(op->attr.st_mtim.tv_sec - now.tv_sec)) <= 2;
}

/*
 * The set-id bits of a file the caller may write but does not own.  A
 * kernel without FUSE_HANDLE_KILLPRIV_V2 (loop.c) drops them itself: a
 * write or truncate by someone without CAP_FSETID comes as a chmod that
 * clears S_ISUID and S_ISGID, which the source refuses to a non-owner.
 * The caller's own write on the source would clear them all the same,
 * so a chmod that clears nothing but set-id bits of a file the caller
 * may write runs as the daemon: first the file's mode, then the caller's
 * W_OK, then the chmod.  Only with such a kernel: with the flag, every
 * chmod is the caller's own, and the source refuses it to a non-owner
 * (a non-owner's chmod 0777 of a 06777 file had cleared its bits).
 */
static void kill_setid_chmod(struct op *op)
{
	if (op->req.result < 0) {
		reply_err(op, EPERM);
		return;
	}
	aiod_prep_chmod(&op->req, -1, NULL, op->attr.st_mode & 07777, 0);
	afs_inode_set_obj(&op->req, 0, op->in[0]);
	op->as_daemon = true;
	op_submit(op, setattr_step);
}

static void kill_setid_mode(struct op *op)
{
	mode_t old = op->req.stx.stx_mode & 07777;
	mode_t new = op->attr.st_mode & 07777;
	mode_t setid = S_ISUID | S_ISGID;

	if (op->req.result < 0 || new == old || (new & ~old) ||
	    ((old & ~new) & ~setid)) {
		reply_err(op, EPERM);
		return;
	}
	aiod_prep_access(&op->req, -1, NULL, W_OK, 0);
	afs_inode_set_obj(&op->req, 0, op->in[0]);
	op_submit(op, kill_setid_chmod);
}

/*
 * A SETATTR that sets nothing: a chown(2) to -1, -1 (a utimensat() of
 * UTIME_OMIT alone never reaches the filesystem), which should drop a
 * file's set-id bits (FUSE_HANDLE_KILLPRIV_V2 leaves that to us), or
 * what the kernel sends before a write by someone without CAP_FSETID
 * to a set-id file, or by anyone to a file with capabilities, whose
 * WRITE drops them on the source itself.  Run as that chown, by the
 * caller's ids, where the daemon takes another user's (op->has_cred):
 * the source drops the bits for an owner, and refuses anyone else
 * (setattr_retry()).  As root's own, or a user mount's, it would drop
 * a file's set-id bits where root's write only drops its capabilities,
 * or refuse the user's write: nothing is set then.
 */
static bool chown_nothing(const struct op *op)
{
	return op->has_cred &&
	       !(op->valid & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID |
			      FUSE_SET_ATTR_GID | FUSE_SET_ATTR_SIZE |
			      FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME));
}

/*
 * A step the source refused the caller with EPERM, that the kernel asked
 * for on the caller's behalf rather than the caller itself: retry it and
 * return true, or return false to pass the EPERM on.
 *   - chmod: see kill_setid_mode().
 *   - times with a size or through an open file: under writeback the
 *     kernel keeps mtime and ctime itself and sends them as values with
 *     a truncate and when it flushes writes; no utimes() of a program
 *     comes with either.  The size change or the open for writing
 *     already passed the source's checks, so the times are set as the
 *     daemon.
 *   - nothing to set (chown_nothing()): the kernel sends that before
 *     a non-owner's write to a set-id file, whose WRITE then drops the
 *     bits on the source itself (FUSE_WRITE_KILL_SUIDGID): no change,
 *     and no error (nor for a non-owner's chown to -1, -1 of such a
 *     file, which the source refuses).
 *   - under writeback, utime(NULL) and the kernel's own mtime of a
 *     file written, which arrive as values (utime_now_by_value()): run
 *     as both times UTIME_NOW, which the source allows exactly to
 *     those who may write the file.  Not other times near now (a
 *     non-owner's explicit ones, or atime alone, had been run so).
 */
static bool setattr_retry(struct op *op)
{
	int done = op->stage - 1;

	if (op->retried)
		return false;
	op->retried = true;
	if (done == SA_MODE && !afs.killpriv_v2 &&
	    (op->valid & ~FUSE_SET_ATTR_CTIME) == FUSE_SET_ATTR_MODE &&
	    S_ISREG(op->in[0]->type)) {
		prep_getattr(op, NULL);
		op->as_daemon = true;
		op_submit(op, kill_setid_mode);
		return true;
	}
	if (done == SA_TIMES &&
	    ((op->valid & FUSE_SET_ATTR_SIZE) || op->file[0])) {
		prep_times(op, false);
		op->as_daemon = true;
		op_submit(op, setattr_step);
		return true;
	}
	if (done == SA_OWNER && chown_nothing(op)) {
		prep_getattr(op, NULL);
		op_submit(op, reply_attr);
		return true;
	}
	if (done == SA_TIMES && utime_now_by_value(op)) {
		prep_times(op, true);
		op_submit(op, setattr_step);
		return true;
	}
	return false;
}

/* Whether a stage from op->stage on has an attribute to set. */
static bool setattr_more(const struct op *op)
{
	static const int bits[] = {
		[SA_MODE] = FUSE_SET_ATTR_MODE,
		[SA_OWNER] = FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID,
		[SA_SIZE] = FUSE_SET_ATTR_SIZE,
		[SA_TIMES] = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME,
	};

	for (int st = op->stage; st < SA_STAT; st++)
		if ((op->valid & bits[st]) || (st == SA_OWNER && chown_nothing(op)))
			return true;
	return false;
}

/* Submit the step prepared in op->req; the last brings the attributes. */
static void setattr_submit(struct op *op)
{
	if (!setattr_more(op))
		op->req.flags |= AIOD_F_STATX;
	op_submit(op, setattr_step);
}

static void setattr_step(struct op *op)
{
	struct aiod_req *req = &op->req;
	const struct stat *a = &op->attr;
	int v = op->valid;

	if (op->stage > SA_MODE && req->result < 0) {
		if (req->result == -EPERM && op->has_cred && setattr_retry(op))
			return;
		reply_err(op, (int)-req->result);
		return;
	}
	if (op->stage > SA_MODE && (req->flags & AIOD_F_STATX) &&
	    req->stx.stx_mask) {
		reply_attr(op);
		return;
	}
	op->retried = false;
	for (;;) {
		switch (op->stage++) {
		case SA_MODE:
			if (!(v & FUSE_SET_ATTR_MODE))
				continue;
			aiod_prep_chmod(req, -1, NULL, a->st_mode & 07777, 0);
			break;
		case SA_OWNER:
			if (!(v & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) &&
			    !chown_nothing(op))
				continue;
			aiod_prep_chown(req, -1, NULL,
					v & FUSE_SET_ATTR_UID ? a->st_uid : (uid_t)-1,
					v & FUSE_SET_ATTR_GID ? a->st_gid : (gid_t)-1,
					AT_SYMLINK_NOFOLLOW);
			break;
		case SA_SIZE:
			if (!(v & FUSE_SET_ATTR_SIZE))
				continue;
			aiod_prep_truncate(req, -1, NULL, a->st_size);
			if (op->file[0]) {
				/*
				 * Through the open file: it may write where
				 * the mode no longer lets a path open.
				 */
				req->fd[0] = op->file[0]->fd;
				setattr_submit(op);
				return;
			}
			afs_inode_set_obj(req, 0, op->in[0]);
			setattr_submit(op);
			return;
		case SA_TIMES:
			if (!(v & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)))
				continue;
			prep_times(op, false);
			setattr_submit(op);
			return;
		default:
			prep_getattr(op, NULL);
			op_submit(op, reply_attr);
			return;
		}
		setattr_obj(op);
		setattr_submit(op);
		return;
	}
}

static void afs_setattr(fuse_req_t freq, fuse_ino_t ino, struct stat *attr,
			int valid, struct fuse_file_info *fi)
{
	struct op *op = op_new(freq, AFS_OP_SETATTR, NULL, NULL);
	struct afs_inode *in;

	if (!op)
		return;
	set_cred(op);
	in = op_obj(op, 0, ino);
	if (fi)
		op_file(op, 0, fi);
	else if (in->open_file) {
		op->file[1] = in->open_file;
		op->file[1]->refs++;
	}
	op->attr = *attr;
	op->valid = valid;
	op->stage = SA_MODE;
	setattr_step(op);
}

/* ---- symlinks ------------------------------------------------------------ */

static void readlink_done(struct op *op)
{
	char target[PATH_MAX + 1];
	int64_t n = op->req.result;

	if (n < 0) {
		reply_err(op, (int)-n);
		return;
	}
	if (n > PATH_MAX) {
		reply_err(op, ENAMETOOLONG);
		return;
	}
	memcpy(target, op->req.out, (size_t)n);
	target[n] = 0;
	fuse_reply_readlink(op->freq, target);
	op_free(op);
}

static void afs_readlink(fuse_req_t freq, fuse_ino_t ino)
{
	struct op *op = op_new(freq, AFS_OP_READLINK, NULL, NULL);

	if (!op)
		return;
	aiod_prep_readlink(&op->req, -1, NULL, NULL, PATH_MAX + 1);
	op_obj(op, 0, ino);
	op_submit(op, readlink_done);
}

/* ---- names: unlink, rmdir, rename --------------------------------------- */

/*
 * Under writeback the kernel keeps a regular file's mtime and ctime
 * itself, and right after an unlink of it or a rename over it sends
 * them (a SETATTR, by nodeid alone if the file is not open).  Were that
 * the object's last name, the source would have freed it by then: the
 * open by handle would say ESTALE, which the kernel records as a
 * writeback error of the whole mount, and the next syncfs() fails.  So
 * under writeback a worker opens the object just before it removes the
 * name (AIOD_F_LOOKUP), and its inode keeps that O_PATH fd as the loop's
 * fd (afs_inode_keep_fd()) till the attributes of the SETATTR, or of any
 * GETATTR, say it has no name left (reply_attr()), or the kernel forgets
 * it.  An inode that has an fd already needs none; one past the budget
 * of such fds (max_pathfds()) gets none, and its SETATTR may still fail.
 */
static void removal_done(struct op *op)
{
	struct aiod_req *req = &op->req;
	struct afs_inode *in = NULL;

	if (req->ret_fd >= 0) {
		if (req->stx.stx_mask & STATX_INO)
			in = afs_inode_find(&req->stx, handle_usable(req) ? &req->fh
									  : NULL);
		if (in && S_ISDIR(in->type) && req->stx.stx_nlink == 0)
			in->removed = true;
		if (!in || !(S_ISREG(in->type) || S_ISDIR(in->type)) ||
		    !afs_inode_keep_fd(in, req->ret_fd))
			afs_close_path(req->ret_fd);
	}
	reply_status(op);
}

/*
 * Submit op's UNLINK, RMDIR or RENAME.  hold: the worker holds what it
 * removes (removal_done()): a regular file's last name under writeback,
 * or a directory, which stays some process's cwd as the empty, dead
 * directory it is on the source (afs_inode_set_obj()).
 */
static void removal_submit(struct op *op, bool hold)
{
	direct_reply(op, false);
	if (!hold) {
		op_submit(op, reply_status);
		return;
	}
	op->req.flags |= AIOD_F_LOOKUP;
	op_submit(op, removal_done);
}

static void afs_unlink(fuse_req_t freq, fuse_ino_t parent, const char *name)
{
	struct op *op = op_new(freq, AFS_OP_UNLINK, name, NULL);

	if (!op)
		return;
	set_cred(op);
	aiod_prep_unlink(&op->req, -1, op->name[0]);
	op_obj(op, 0, parent);
	op_changes_entries(op, 0);
	removal_submit(op, afs.opt.writeback);
}

static void afs_rmdir(fuse_req_t freq, fuse_ino_t parent, const char *name)
{
	struct op *op = op_new(freq, AFS_OP_RMDIR, name, NULL);

	if (!op)
		return;
	set_cred(op);
	aiod_prep_rmdir(&op->req, -1, op->name[0]);
	op_obj(op, 0, parent);
	op_changes_entries(op, 0);
	removal_submit(op, true);
}

static void afs_rename(fuse_req_t freq, fuse_ino_t parent, const char *name,
		       fuse_ino_t newparent, const char *newname,
		       unsigned int flags)
{
	struct op *op = op_new(freq, AFS_OP_RENAME, name, newname);

	if (!op)
		return;
	set_cred(op);
	aiod_prep_rename(&op->req, -1, op->name[0], -1, op->name[1], flags);
	op_obj(op, 0, parent);
	op_obj(op, 1, newparent);
	op_changes_entries(op, 0);
	op_changes_entries(op, 1);
	removal_submit(op, afs.opt.writeback);
}

/* ---- open files ------------------------------------------------------------ */

/*
 * The open file for backing fd of inode in (NULL: not known yet), opened
 * with open flags bflags (backing_flags()' or their retry's).
 */
static unsigned nfiles; /* afs_file structs alive */

static struct afs_file *file_new(int fd, int bflags, struct afs_inode *in)
{
	struct afs_file *f = malloc(sizeof(*f));

	if (f) {
		nfiles++;
		f->fd = fd;
		f->refs = 1;
		f->append = bflags & O_APPEND;
		f->released = false;
		f->backing = false;
		f->cached = false;
		f->direct = bflags & O_DIRECT;
		f->accmode = bflags & O_ACCMODE;
		f->local = false;
		f->worker_close = true;
		f->uses = 0;
		f->nowait = false;
		f->end_off = -1;
		f->offs = NULL;
		f->noffs = f->offs_cap = 0;
		f->listed = f->listed_whole = 0;
		f->in = NULL;
		file_set_inode(f, in);
	}
	return f;
}

/*
 * Closing a file drops its locks, but the kernel does not wait for that:
 * a process's close() returns before its RELEASE has reached the source
 * (with posix_locks, its FLUSH waits for the close of the owner's
 * description: afs_flush()), and another process's lock request may
 * come right behind it.  So lock requests on an inode wait until the
 * closes of its files in flight are done; the closes of other inodes,
 * hung or not, do not hold them up.
 */
static unsigned nclosing_waits; /* ops waiting in after_closes() */
static unsigned nreleased_held; /* released files requests still hold */

void afs_ops_closes_done(struct afs_inode *in)
{
	struct op *op;

	while (!in->closing && (op = in->after_close)) {
		in->after_close = op->park_next;
		op->lock = LK_NONE;
		nclosing_waits--;
		op->next(op);
	}
}

/*
 * Close f's fd, whose hold on its inode passes on.  In a worker
 * (afs_close_async()) where one may keep a copy (file_keeps()), where a
 * flock may hold its description (lock requests wait for that close),
 * or where the close may flush.  Else, a file on a local source that no
 * worker keeps, the pool's closer closes it (afs_close_path()): no
 * worker's round trip, and not the loop, since the last close of a file
 * unlinked meanwhile frees its blocks.
 */
static void file_close(struct afs_file *f)
{
	if (f->worker_close) {
		afs_close_async(f->fd, f->in);
		return;
	}
	afs_close_path(f->fd);
	if (f->in)
		afs_inode_put(f->in);
}

/* Files open: opened and not yet released, or held by a request. */
unsigned afs_files_open(void)
{
	return nfiles;
}

void afs_file_put(struct afs_file *f)
{
	if (--f->refs)
		return;
	if (f->released) {
		nreleased_held--;
		if (f->in)
			f->in->closing--; /* the close counts itself */
	}
	file_leaves_inode(f);
	file_close(f);
	free(f->offs);
	free(f);
	nfiles--;
}

/*
 * A lock request on op->in[0]: if closes of its files are in flight, it
 * waits for them and then resumes at step; returns whether it waits.
 */
static bool after_closes(struct op *op, op_step *step)
{
	struct afs_inode *in = op->in[0];

	if (!in->closing)
		return false;
	op->next = step;
	op->lock = LK_CLOSING;
	nclosing_waits++;
	op->park_next = in->after_close;
	in->after_close = op;
	return true;
}

/*
 * The open flags a program may pass to open(2) that a reopen of the
 * source file keeps.  The kernel's FUSE_OPEN carries its own bits too,
 * __FMODE_EXEC (040) for the open of an execve, which open(2) would
 * ignore but openat2() refuses with EINVAL: every exec of a program on
 * the mount failed so.
 */
#define OPEN_FLAGS_KEPT                                                     \
	(O_ACCMODE | O_TRUNC | O_APPEND | O_NONBLOCK | O_DSYNC | O_SYNC |   \
	 O_DIRECT | O_LARGEFILE | O_DIRECTORY | O_NOATIME)

/* The flags a backing open gets for the kernel's open flags. */
static int backing_flags(int flags)
{
	/*
	 * The object is already resolved: the reopen through /proc must
	 * not refuse the magic link, and creation is create's business.
	 */
	flags &= OPEN_FLAGS_KEPT;
	if (afs.opt.writeback) {
		/*
		 * The kernel's page cache may need to read what a
		 * write-only open would not let it, and it places appends
		 * itself.
		 */
		if ((flags & O_ACCMODE) == O_WRONLY)
			flags = (flags & ~O_ACCMODE) | O_RDWR;
		flags &= ~O_APPEND;
	}
	return flags;
}

static void set_open_flags(struct fuse_file_info *fi)
{
	fi->keep_cache = afs.opt.cache == AFS_CACHE_ALWAYS;
	fi->direct_io = afs.opt.direct_io;
}

/*
 * What the open file f's source fd allows, told by its filesystem: one
 * of those with no flush on close (ext4, XFS, tmpfs:
 * aiod_pool_flushless()), all of them local.
 *
 * The kernel need not send a flush at each close(2) of a file (one
 * round trip fewer, FOPEN_NOFLUSH) that is opened only to read, which
 * has nothing for it to push (flush_pushes()), or whose source has no
 * flush to run, where a close pushes and reports nothing.  Dirty pages
 * of a shared mapping then reach the source at munmap or by writeback,
 * not at close: as on the source itself.  With posix_locks the flush
 * also ends the closing owner's locks, so it must come.
 *
 * The loop may read cached data itself (read_now()) from a local source
 * only: a network filesystem may ask its server even for cached pages.
 * Not through an O_DIRECT fd, whose reads always wait for the device.
 *
 * Which filesystem that is, in knows if it has been asked before (its
 * local): f's own inode, or the directory f was just created in, whose
 * filesystem a new name is always on.  Else its statx tells, and in
 * remembers: one syscall fewer at the next create there or open of it.
 */
static void set_file_traits(struct afs_file *f, struct fuse_file_info *fi,
			    struct afs_inode *in)
{
	if (!in->local)
		in->local = aiod_pool_flushless(afs.pool, f->fd) ? 1 : -1;
	f->local = in->local > 0;
	fi->noflush = !afs.opt.posix_locks &&
		      ((fi->flags & O_ACCMODE) == O_RDONLY || f->local);
	f->nowait = f->local && !(fi->flags & O_DIRECT);
}

/*
 * AIOD_F_KEEP for an open of in (a create: in its directory in), unless
 * in's filesystem is known to be local: then a worker keeps a copy only
 * from the file's second request on (file_keeps()).
 */
static uint32_t open_keeps(const struct afs_inode *in)
{
	return in->local > 0 ? 0 : AIOD_F_KEEP;
}

/*
 * Under writeback an open for writing reaches the source read-write and
 * without O_APPEND (backing_flags()).  A file the caller may write but
 * not read refuses that (EACCES), and one made append-only (chattr +a)
 * any write without O_APPEND (EPERM).  Such an open is tried again as
 * the program asked, and the kernel's page cache left out of its writes
 * (direct_io): nothing of the file need be read to write it, and the
 * kernel still places each append at its own size of the file, where
 * the fd appends.  Returns whether op was submitted again, to step.
 */
static bool open_as_asked(struct op *op, op_step *step)
{
	const int asked_bits = O_ACCMODE | O_APPEND;
	int bflags = (int)op->req.arg[0];
	int asked = (bflags & ~asked_bits) | (op->fi.flags & asked_bits);

	if ((op->req.result != -EPERM && op->req.result != -EACCES) ||
	    !afs.opt.writeback || asked == bflags || (bflags & O_EXCL))
		return false; /* (an O_EXCL create is of a new file: no such) */
	op->req.arg[0] = asked;
	op->fi.direct_io = 1;
	op_submit(op, step);
	return true;
}

static void open_done(struct op *op)
{
	struct afs_file *f;

	if (open_as_asked(op, open_done))
		return;
	if (op->req.result < 0) {
		reply_err(op, (int)-op->req.result);
		return;
	}
	f = file_new(op->req.ret_fd, (int)op->req.arg[0], op->in[0]);
	if (!f) {
		afs_close_async(op->req.ret_fd, NULL);
		reply_err(op, ENOMEM);
		return;
	}
	op->fi.fh = (uint64_t)(uintptr_t)f;
	set_file_traits(f, &op->fi, op->in[0]);
	f->worker_close = op->req.flags & AIOD_F_KEEP;
	afs_loop_backing_next(afs_pt_attach(f));
	if (fuse_reply_open(op->freq, &op->fi) != 0) {
		/* interrupted: no release will come */
		afs_pt_detach(f, false);
		afs_file_put(f);
	}
	afs_loop_backing_next(0);
	op_free(op);
}

static void afs_open(fuse_req_t freq, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct op *op = op_new(freq, AFS_OP_OPEN, NULL, NULL);

	if (!op)
		return;
	set_cred(op);
	op->fi = *fi;
	set_open_flags(&op->fi);
	aiod_prep_open(&op->req, -1, NULL, backing_flags(fi->flags), 0, 0);
	op->req.flags = open_keeps(op_obj(op, 0, ino));
	op_submit(op, open_done);
}

static void create_done(struct op *op)
{
	struct afs_file *f;

	if (open_as_asked(op, create_done))
		return;
	if (op->req.result < 0) {
		reply_err(op, (int)-op->req.result);
		return;
	}
	f = file_new(op->req.ret_fd, (int)op->req.arg[0], NULL);
	if (!f) {
		afs_close_async(op->req.ret_fd, NULL);
		reply_err(op, ENOMEM);
		return;
	}
	op->fi.fh = (uint64_t)(uintptr_t)f;
	set_file_traits(f, &op->fi, op->in[0]);
	f->worker_close = op->req.flags & AIOD_F_KEEP;
	op->file[1] = f; /* an error from here on closes it with the op */
	entry_found(op);
}

static void afs_create(fuse_req_t freq, fuse_ino_t parent, const char *name,
		       mode_t mode, struct fuse_file_info *fi)
{
	struct op *op = op_new(freq, AFS_OP_CREATE, name, NULL);

	if (!op)
		return;
	set_cred(op);
	op->fi = *fi;
	set_open_flags(&op->fi);
	/* "/": O_TMPFILE (loop.c), unnamed in parent; O_EXCL, never named. */
	op->tmpfile = strcmp(name, "/") == 0;
	aiod_prep_open(&op->req, -1, op->tmpfile ? "." : op->name[0],
		       backing_flags(fi->flags) | (op->tmpfile ? O_TMPFILE : O_CREAT) |
			       (fi->flags & O_EXCL),
		       mode & 07777, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
	op->req.flags = AIOD_F_LOOKUP | open_keeps(op_obj(op, 0, parent));
	set_umask(op);
	op_changes_entries(op, 0);
	op_submit(op, create_done);
}

static void read_done(struct op *op)
{
	if (op->req.result < 0) {
		reply_err(op, (int)-op->req.result);
		return;
	}
	fuse_reply_buf(op->freq, op->req.out, (size_t)op->req.result);
	count_bytes(op);
	op_free(op);
}

/*
 * A read the source's page cache holds in full is answered by the loop
 * itself: preadv2() with RWF_NOWAIT returns what is cached and never
 * waits for the source (EAGAIN instead; io_uring tries reads the same
 * way before it hands them to a thread), and a worker's round trip costs
 * far more than the copy.  Returns whether it replied.
 */
static bool read_now(fuse_req_t freq, struct afs_file *f, size_t size,
		     off_t off)
{
	static char buf[READ_NOW_MAX];
	int64_t start = afs_now_ns();
	size_t got = 0;
	ssize_t n;

	if (size > afs.opt.read_now || !f->nowait)
		return false;
	do {
		struct iovec v = { buf + got, size - got };

		n = preadv2(f->fd, &v, 1, off + (off_t)got, RWF_NOWAIT);
		if (n > 0)
			got += (size_t)n;
	} while (n > 0 && got < size);
	if (n < 0) {
		/* Not cached, a source that cannot tell (EOPNOTSUPP: tmpfs
		 * in Linux 6.18), or an error a worker will report. */
		if (errno == EOPNOTSUPP)
			f->nowait = false;
		return false;
	}
	fuse_reply_buf(freq, buf, got);
	afs_stats_bytes(got, 0, false);
	afs_stats_by_loop(AFS_OP_READ);
	afs_stats_count(AFS_OP_READ, 0, start);
	return true;
}

/*
 * Reads after writes.  The kernel may send a READ of pages whose WRITE
 * is still with us: writing through its page cache, it marks a page it
 * has filled up to date and unlocks it before it sends the WRITE, and
 * if an invalidation drops the page meanwhile (an open without
 * FOPEN_KEEP_CACHE, an attribute refresh that finds the mtime changed),
 * a read of it asks us.  A daemon serving requests one at a time would
 * answer after the write; workers in parallel, or read_now(), could read
 * the source before the write lands, and the kernel would keep the old
 * data as up to date: a process could read back zeros where its own
 * write, already returned, had put data (difftest's parallel_io did once;
 * its pattern repeated by hand, about 1 round in 2,000).  So a READ overlapping a WRITE that came before it and
 * is still in flight waits for that WRITE (and for no later one).
 */
static unsigned nreads_waiting; /* ops on some inode's reads_waiting */

static bool overlaps_write(const struct afs_inode *in, off_t start, off_t end,
			   uint64_t upto)
{
	for (const struct op *w = in->writing; w; w = w->wait_next)
		if (w->wseq <= upto && w->wstart < end && start < w->wend)
			return true;
	return false;
}

/* op writes [off, off + len) of in's data (to its end: len 0). */
static void write_begins(struct op *op, struct afs_inode *in, off_t off,
			 size_t len)
{
	if (!in)
		return;
	op->wait_in = in;
	op->wseq = ++in->wseq;
	op->wstart = off;
	op->wend = len && (uint64_t)off + len <= INT64_MAX ? off + (off_t)len
							   : INT64_MAX;
	op->wait_next = in->writing;
	in->writing = op;
}

static void unlink_op(struct op **head, struct op *op)
{
	while (*head != op)
		head = &(*head)->wait_next;
	*head = op->wait_next;
	op->wait_next = NULL;
}

/* Write op is done (its op ends): the reads it held go on. */
static void write_ends(struct op *op)
{
	struct afs_inode *in = op->wait_in;
	struct op **rp = &in->reads_waiting;

	unlink_op(&in->writing, op);
	op->wait_in = NULL;
	while (*rp) {
		struct op *r = *rp;

		if (overlaps_write(in, r->wstart, r->wend, r->wseq)) {
			rp = &r->wait_next;
			continue;
		}
		*rp = r->wait_next;
		r->wait_next = NULL;
		nreads_waiting--;
		op_submit(r, read_done);
	}
}

static void afs_read(fuse_req_t freq, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct afs_file *f = (struct afs_file *)(uintptr_t)fi->fh;
	struct afs_inode *in = f->in;
	off_t end = (off_t)((uint64_t)off + size);
	bool wait = in && overlaps_write(in, off, end, UINT64_MAX);
	struct op *op;

	(void)ino;
	if (!wait && read_now(freq, f, size, off))
		return;
	op = op_new(freq, AFS_OP_READ, NULL, NULL);
	if (!op)
		return;
	aiod_prep_pread(&op->req, -1, NULL, size, off);
	op_file(op, 0, fi);
	direct_reply(op, false);
	if (!wait) {
		op_submit(op, read_done);
		return;
	}
	/* wait_in stays NULL: op_free() must not take it for a write. */
	op->wseq = in->wseq;
	op->wstart = off;
	op->wend = end;
	op->wait_next = in->reads_waiting;
	in->reads_waiting = op;
	nreads_waiting++;
	afs_stats_read_waited();
}

static void write_done(struct op *op)
{
	if (op->req.result < 0) {
		reply_err(op, (int)-op->req.result);
		return;
	}
	fuse_reply_write(op->freq, (size_t)op->req.result);
	count_bytes(op);
	op_free(op);
}

static void afs_write(fuse_req_t freq, fuse_ino_t ino, const char *buf,
		      size_t size, off_t off, struct fuse_file_info *fi)
{
	struct op *op;
	const void *data = buf;
	int pipe_fd;

	(void)ino;
	op = op_new(freq, AFS_OP_WRITE, NULL, NULL);
	if (!op)
		return;
	/* Large writes' data may wait in a pipe (loop.c), else in memory. */
	pipe_fd = afs_loop_take_pipe(&op->pipe);
	if (pipe_fd >= 0) {
		aiod_prep_pwrite_pipe(&op->req, -1, pipe_fd, size, off);
	} else {
		if (!afs_loop_adopt(buf, size, &op->rbuf)) {
			/* Not in a receive buffer: keep a copy past our return. */
			op = realloc(op, sizeof(*op) + size);
			if (!op) {
				fuse_reply_err(freq, ENOMEM);
				return;
			}
			data = memcpy(op->extra, buf, size);
		}
		aiod_prep_pwrite(&op->req, -1, data, size, off);
	}
	set_cred_writer(op);
	op_file(op, 0, fi);
	op_changes_data(op, 0);
	/* On an O_APPEND fd the offset is ignored: a second run appends again. */
	if (op->file[0]->append)
		op->req.flags |= AIOD_F_NORETRY;
	write_begins(op, op->file[0]->in, off, op->file[0]->append ? 0 : size);
	direct_reply(op, true);
	op_submit(op, write_done);
}

static bool owner_closed(struct afs_inode *in, uint64_t owner);
static void file_released(struct afs_inode *in, const struct afs_file *f);
static void interrupted(fuse_req_t freq, void *data);

/*
 * flush comes with every close(2) of a descriptor, and is a close on the
 * source (NFS writes back then, and says if that failed): a worker closes
 * its copy of the fd before it replies, with close's result.  It is
 * needed only where data may wait to be pushed: after a request that
 * changed the inode's data since the file's open or last flush (the
 * worker of a write keeps its copy, or closes it after replying), or on
 * a file the kernel writes itself (passthrough).  The close of a file only
 * read, or created and left empty, is answered at once: on a slow source
 * that spares the application a round trip to it.
 */
static bool flush_pushes(const struct afs_file *f)
{
	return !f->in || f->backing || f->flushed != f->in->writes;
}

static void flush_run(struct op *op)
{
	struct afs_file *f = op->file[0];

	if (!flush_pushes(f)) {
		reply_err(op, 0);
		return;
	}
	if (f->in)
		f->flushed = f->in->writes;
	aiod_prep_flush(&op->req, -1);
	op_file_fd(op, 0);
	direct_reply(op, false);
	op_submit(op, reply_status);
}

/*
 * With posix_locks, the close also ends the owner's locks: the close of
 * its description on the source (afs_close_async()) must be done before
 * close(2) returns, or a process on the source could still find them.
 */
static void afs_flush(fuse_req_t freq, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct afs_file *f = (struct afs_file *)(uintptr_t)fi->fh;
	struct afs_inode *in = afs_inode_get(ino);
	bool unlocks = afs.opt.posix_locks && owner_closed(in, fi->lock_owner);
	struct op *op;

	if (!flush_pushes(f) && !(unlocks && in->closing)) {
		fuse_reply_err(freq, 0);
		afs_stats_count(AFS_OP_FLUSH, 0, 0);
		return;
	}
	op = op_new(freq, AFS_OP_FLUSH, NULL, NULL);
	if (!op)
		return;
	op_file(op, 0, fi);
	afs_inode_hold(in);
	op->in[0] = in;
	if (unlocks && after_closes(op, flush_run))
		fuse_req_interrupt_func(freq, interrupted, op); /* ^C: EINTR */
	else
		flush_run(op);
}

static void release(fuse_req_t freq, fuse_ino_t ino, struct fuse_file_info *fi,
		    int opcode)
{
	struct afs_file *f = (struct afs_file *)(uintptr_t)fi->fh;

	if (afs.opt.posix_locks)
		file_released(afs_inode_get(ino), f);
	file_leaves_inode(f);
	afs_pt_detach(f, fi->flock_release);
	if (f->refs > 1) {
		/*
		 * A request a worker has answered (its flush, say) may not
		 * have ended here yet: the loop must collect it now, for the
		 * close to come (afs_ops_waiting()), and the close counts
		 * for lock requests from now on.
		 */
		f->released = true;
		nreleased_held++;
		if (f->in)
			f->in->closing++;
	}
	afs_file_put(f);
	fuse_reply_err(freq, 0);
	afs_stats_count(opcode, 0, 0);
}

static void afs_release(fuse_req_t freq, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	release(freq, ino, fi, AFS_OP_RELEASE);
}

static void fsync_common(fuse_req_t freq, int datasync,
			 struct fuse_file_info *fi, int opcode)
{
	struct op *op = op_new(freq, opcode, NULL, NULL);

	if (!op)
		return;
	aiod_prep_fsync(&op->req, -1, datasync);
	op_file(op, 0, fi);
	direct_reply(op, false);
	op_submit(op, reply_status);
}

static void afs_fsync(fuse_req_t freq, fuse_ino_t ino, int datasync,
		      struct fuse_file_info *fi)
{
	(void)ino;
	fsync_common(freq, datasync, fi, AFS_OP_FSYNC);
}

static void afs_fallocate(fuse_req_t freq, fuse_ino_t ino, int mode,
			  off_t offset, off_t length, struct fuse_file_info *fi)
{
	struct op *op = op_new(freq, AFS_OP_FALLOCATE, NULL, NULL);

	(void)ino;
	if (!op)
		return;
	set_cred_writer(op);
	aiod_prep_fallocate(&op->req, -1, mode, offset, length);
	op_file(op, 0, fi);
	op_changes_data(op, 0);
	op_submit(op, reply_status);
}

static void afs_copy_file_range(fuse_req_t freq, fuse_ino_t ino_in,
				off_t off_in, struct fuse_file_info *fi_in,
				fuse_ino_t ino_out, off_t off_out,
				struct fuse_file_info *fi_out, size_t len,
				int flags)
{
	struct op *op = op_new(freq, AFS_OP_COPY_FILE_RANGE, NULL, NULL);

	(void)ino_in;
	(void)ino_out;
	if (!op)
		return;
	set_cred_writer(op);
	aiod_prep_copy_file_range(&op->req, -1, off_in, -1, off_out, len,
				  (unsigned)flags);
	op_file(op, 0, fi_in);
	op_file(op, 1, fi_out);
	op_changes_data(op, 1);
	op_submit(op, write_done); /* a count of bytes written, as a write's */
}

static void lseek_done(struct op *op)
{
	if (op->req.result < 0) {
		reply_err(op, (int)-op->req.result);
		return;
	}
	fuse_reply_lseek(op->freq, (off_t)op->req.result);
	op_free(op);
}

static void afs_lseek(fuse_req_t freq, fuse_ino_t ino, off_t off, int whence,
		      struct fuse_file_info *fi)
{
	struct op *op;

	(void)ino;
	if (afs.opt.writeback) {
		/*
		 * The kernel sends SEEK_DATA and SEEK_HOLE without writing
		 * its dirty pages back first, so the source would answer
		 * for data it has not seen yet.  ENOSYS makes the kernel
		 * answer itself, from its own file size: all data, no hole.
		 */
		fuse_reply_err(freq, ENOSYS);
		afs_stats_count(AFS_OP_LSEEK, ENOSYS, 0);
		return;
	}
	op = op_new(freq, AFS_OP_LSEEK, NULL, NULL);
	if (!op)
		return;
	aiod_prep_lseek(&op->req, -1, off, whence);
	op_file(op, 0, fi);
	op_submit(op, lseek_done);
}

/* struct fsxattr, the argument of FS_IOC_FS[GS]ETXATTR, and ours. */
static struct fsxattr fsx_of(const struct aiod_fileattr *fa)
{
	return (struct fsxattr){
		.fsx_xflags = fa->xflags, .fsx_extsize = fa->extsize,
		.fsx_nextents = fa->nextents, .fsx_projid = fa->projid,
		.fsx_cowextsize = fa->cowextsize,
	};
}

static void fa_set_fsx(struct aiod_fileattr *fa, const struct fsxattr *x)
{
	fa->xflags = x->fsx_xflags;
	fa->extsize = x->fsx_extsize;
	fa->nextents = x->fsx_nextents;
	fa->projid = x->fsx_projid;
	fa->cowextsize = x->fsx_cowextsize;
}

static void fileattr_done(struct op *op)
{
	unsigned long cmd = (unsigned long)op->req.arg[0];

	if (op->req.result < 0) {
		reply_err(op, (int)-op->req.result);
		return;
	}
	if (cmd == FS_IOC_GETFLAGS || cmd == FS_IOC_GETVERSION) {
		int flags = (int)op->req.fa.flags;

		fuse_reply_ioctl(op->freq, 0, &flags, sizeof(flags));
	} else if (cmd == FS_IOC_FSGETXATTR) {
		struct fsxattr x = fsx_of(&op->req.fa);

		fuse_reply_ioctl(op->freq, 0, &x, sizeof(x));
	} else {
		fuse_reply_ioctl(op->freq, 0, NULL, 0);
	}
	op_free(op);
}

/*
 * ioctl: only the inode flags, which the kernel asks for on chattr(1)
 * and lsattr(1) (the FS_IOC_GETFLAGS family goes through its fileattr
 * calls, FUSE_IOCTL with the int the ioctl really takes), and the
 * inode's generation (lsattr -v, chattr -v: FS_IOC_GETVERSION and
 * FS_IOC_SETVERSION, whose size says long where the source reads and
 * writes an int, as the callers pass).  Any other command is one this
 * daemon cannot know the meaning of: ENOTTY, as for an ioctl a file
 * does not have.
 */
static void afs_ioctl(fuse_req_t freq, fuse_ino_t ino, unsigned int cmd,
		      void *arg, struct fuse_file_info *fi, unsigned flags,
		      const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	struct aiod_fileattr fa = { 0 };
	struct fsxattr x;
	bool sets = false;
	struct op *op;
	int err = 0, v;

	(void)ino;
	(void)arg;
	/*
	 * A 32-bit program's FS_IOC_GETVERSION and _SETVERSION come with
	 * FUSE_IOCTL_COMPAT and their own numbers (the size of its long is
	 * an int's); its FS_IOC_GETFLAGS family the kernel turns into ours.
	 * FUSE_IOCTL_DIR needs nothing of its own.
	 */
	if (flags & FUSE_IOCTL_COMPAT) {
		if (cmd == FS_IOC32_GETVERSION)
			cmd = FS_IOC_GETVERSION;
		else if (cmd == FS_IOC32_SETVERSION)
			cmd = FS_IOC_SETVERSION;
	}
	switch (cmd) {
	case FS_IOC_GETFLAGS:
	case FS_IOC_GETVERSION:
		err = out_bufsz < sizeof(int) ? EINVAL : 0;
		break;
	case FS_IOC_FSGETXATTR:
		err = out_bufsz < sizeof(x) ? EINVAL : 0;
		break;
	case FS_IOC_SETFLAGS:
	case FS_IOC_SETVERSION:
		err = in_bufsz < sizeof(v) ? EINVAL : 0;
		if (!err) {
			memcpy(&v, in_buf, sizeof(v));
			fa.flags = (uint32_t)v;
		}
		sets = true;
		break;
	case FS_IOC_FSSETXATTR:
		err = in_bufsz < sizeof(x) ? EINVAL : 0;
		if (!err) {
			memcpy(&x, in_buf, sizeof(x));
			fa_set_fsx(&fa, &x);
		}
		sets = true;
		break;
	default:
		err = ENOTTY;
	}
	if (err) {
		fuse_reply_err(freq, err);
		afs_stats_count(AFS_OP_IOCTL, err, 0);
		return;
	}
	op = op_new(freq, AFS_OP_IOCTL, NULL, NULL);
	if (!op)
		return;
	if (sets)
		set_cred(op); /* the source decides who may */
	aiod_prep_fileattr(&op->req, -1, cmd, &fa);
	op_file(op, 0, fi);
	op_submit(op, fileattr_done);
}

/*
 * Blocking lock waits.  A flock or F_SETLKW that must wait does so in a
 * worker (the loop never waits), but never in all of them: at most
 * workers - 1 wait at once, so one worker is always free for everything
 * else, the holder's unlock among it.  A wait beyond that bound is
 * parked in the daemon and tries without waiting from time to time,
 * every 5 ms at first and less often the longer it waits (up to every
 * 200 ms); it takes a worker's blocking wait as soon as one is free.  ^C (FUSE_INTERRUPT)
 * ends a wait wherever it stands: a worker's with a signal, a parked one
 * at once, a try in flight when it returns.
 */
#define PARK_MS_MIN 5
#define PARK_MS_MAX 200

static struct op *parked;       /* parked waits, in no particular order */
static unsigned lock_waits;     /* blocking waits on workers */

static void lock_submit(struct op *op);

static void park(struct op *op)
{
	op->lock = LK_PARKED;
	op->park_ms = op->park_ms ? op->park_ms * 2 : PARK_MS_MIN;
	if (op->park_ms > PARK_MS_MAX)
		op->park_ms = PARK_MS_MAX;
	op->park_due = now_ms() + op->park_ms;
	op->park_next = parked;
	parked = op;
}

static void unpark(struct op *op)
{
	struct op **pp = &parked;

	while (*pp != op)
		pp = &(*pp)->park_next;
	*pp = op->park_next;
	op->lock = LK_NONE;
}

static void lock_done(struct op *op)
{
	int64_t res = op->req.result;

	if (op->lock == LK_WAIT)
		lock_waits--;
	if (op->lock == LK_TRY && res == -EWOULDBLOCK) {
		if (op->interrupted)
			reply_err(op, EINTR);
		else
			park(op);
		return;
	}
	op->lock = LK_NONE;
	reply_status(op);
}

/*
 * A blocking wait on a worker if the bound allows, else a try that does
 * not wait: flock(LOCK_NB), or F_OFD_SETLK on the owner's description.
 */
static void lock_submit(struct op *op)
{
	bool wait = lock_waits + 1 < afs.opt.workers;

	if (op->lock_op)
		aiod_prep_flock(&op->req, op->file[0]->fd,
				op->lock_op | (wait ? 0 : LOCK_NB));
	else
		aiod_prep_lock(&op->req, op->file[1]->fd,
			       wait ? F_OFD_SETLKW : F_OFD_SETLK, &op->lk);
	op->lock = wait ? LK_WAIT : LK_TRY;
	if (wait)
		lock_waits++;
	if (!op_submit(op, lock_done) && wait)
		lock_waits--;
}

/* ^C on a process waiting for a lock: end its wait. */
static void interrupted(fuse_req_t freq, void *data)
{
	struct op *op = data;

	(void)freq;
	op->interrupted = true;
	if (op->lock == LK_WAIT)
		aiod_cancel(afs.pool, &op->req);
	else if (op->lock == LK_PARKED) {
		unpark(op);
		reply_err(op, EINTR);
	} else if (op->lock == LK_CLOSING) {
		struct op **pp = &op->in[0]->after_close;

		while (*pp != op)
			pp = &(*pp)->park_next;
		*pp = op->park_next;
		nclosing_waits--;
		reply_err(op, EINTR);
	}
}

/*
 * Whether something waits for ops to end: lock requests after closes,
 * closes of released files after the requests that hold them, reads
 * after writes.
 */
bool afs_ops_waiting(void)
{
	return nclosing_waits > 0 || nreleased_held > 0 || nreads_waiting > 0;
}

int afs_ops_timeout(void)
{
	int64_t now, due = INT64_MAX;

	if (!parked)
		return -1;
	for (struct op *op = parked; op; op = op->park_next)
		if (op->park_due < due)
			due = op->park_due;
	now = now_ms();
	return due <= now ? 0 : (int)(due - now);
}

void afs_ops_tick(void)
{
	int64_t now;
	struct op *due = NULL, *op, *next;

	if (!parked)
		return;
	now = now_ms();
	for (op = parked; op; op = next) {
		next = op->park_next;
		if (op->park_due <= now) {
			unpark(op);
			op->park_next = due;
			due = op;
		}
	}
	for (op = due; op; op = next) {
		next = op->park_next;
		lock_submit(op);
	}
}

/*
 * POSIX record locks (-o posix_locks).  Without the option the kernel
 * keeps fcntl locks itself, inside the mount.  With it they reach the
 * source as OFD locks, never as classic POSIX locks: those belong to a
 * process, and a worker's would be dropped by any close in it.  Each
 * lock owner the kernel names (a process for F_SETLK, an open file for
 * F_OFD_SETLK) gets, per inode, an open file description of its own,
 * opened on its first lock there with the access mode of the file it
 * locks through; its locks are that description's.  Closing it drops
 * them on the source, and it is closed when POSIX says the owner's locks
 * go: at the owner's close of any fd on the file (FLUSH with its
 * lock_owner), and, for an open file's own OFD locks, when that file is
 * released.  A conflicting lock reported by F_GETLK carries no pid (OFD
 * locks have none).
 */
struct afs_lock_owner {
	struct afs_lock_owner *next;
	uint64_t owner;
	const struct afs_file *via; /* the file of its first lock */
	struct afs_file *ofd;       /* its open file description */
};

static struct afs_lock_owner **owner_find(struct afs_inode *in, uint64_t owner)
{
	struct afs_lock_owner **pp = &in->owners;

	while (*pp && (*pp)->owner != owner)
		pp = &(*pp)->next;
	return pp;
}

static void owner_drop(struct afs_lock_owner **pp)
{
	struct afs_lock_owner *o = *pp;

	*pp = o->next;
	afs_file_put(o->ofd);
	free(o);
}

void afs_lock_owners_free(struct afs_inode *in)
{
	while (in->owners)
		owner_drop(&in->owners);
}

/*
 * FLUSH: the owner closed an fd on the file, which ends its locks.
 * Returns whether it had any.
 */
static bool owner_closed(struct afs_inode *in, uint64_t owner)
{
	struct afs_lock_owner **pp = owner_find(in, owner);

	if (!*pp)
		return false;
	owner_drop(pp);
	return true;
}

/* RELEASE of f: the OFD locks taken through it end with it. */
static void file_released(struct afs_inode *in, const struct afs_file *f)
{
	struct afs_lock_owner **pp = &in->owners;

	while (*pp) {
		if ((*pp)->via == f)
			owner_drop(pp);
		else
			pp = &(*pp)->next;
	}
}

static void lock_run(struct op *op);
static void getlk_done(struct op *op);

/* The owner's description is open (op->req.ret_fd): keep it, then run. */
static void owner_opened(struct op *op)
{
	struct afs_lock_owner **pp, *o;
	struct afs_file *ofd;

	if (op->req.result < 0) {
		reply_err(op, (int)-op->req.result);
		return;
	}
	pp = owner_find(op->in[0], op->owner);
	if (*pp) {
		/* Another request of this owner opened one first. */
		afs_close_async(op->req.ret_fd, NULL);
	} else {
		o = malloc(sizeof(*o));
		ofd = o ? file_new(op->req.ret_fd, (int)op->req.arg[0],
				   op->in[0]) : NULL;
		if (!ofd) {
			free(o);
			afs_close_async(op->req.ret_fd, NULL);
			reply_err(op, ENOLCK);
			return;
		}
		o->owner = op->owner;
		o->via = op->file[0];
		o->ofd = ofd;
		o->next = NULL;
		*pp = o;
	}
	lock_run(op);
}

/* Hold the owner's description in op->file[1], then run the lock. */
static void lock_run(struct op *op)
{
	struct afs_lock_owner *o = *owner_find(op->in[0], op->owner);

	if (!o) {
		if (op->lk.type == F_UNLCK && op->lock_cmd != F_OFD_GETLK) {
			reply_err(op, 0); /* it holds nothing here */
			return;
		}
		/* An append-only file opens to write only to append. */
		aiod_prep_open(&op->req, -1, NULL,
			       op->file[0]->accmode |
				       (op->file[0]->append ? O_APPEND : 0),
			       0, 0);
		op->req.flags = AIOD_F_KEEP;
		afs_inode_set_obj(&op->req, 0, op->in[0]);
		op->as_daemon = true; /* the file is open already: no new check */
		op_submit(op, owner_opened);
		return;
	}
	o->ofd->refs++;
	op->file[1] = o->ofd;
	if (op->lock_cmd == F_OFD_SETLKW) {
		if (op->interrupted) {
			reply_err(op, EINTR);
			return;
		}
		lock_submit(op);
		return;
	}
	aiod_prep_lock(&op->req, o->ofd->fd, op->lock_cmd, &op->lk);
	op_submit(op, op->lock_cmd == F_OFD_GETLK ? getlk_done : reply_status);
}

static void getlk_done(struct op *op)
{
	struct flock fl = { 0 };

	if (op->req.result < 0) {
		reply_err(op, (int)-op->req.result);
		return;
	}
	fl.l_type = op->req.lk.type;
	fl.l_whence = op->req.lk.whence;
	fl.l_start = op->req.lk.start;
	fl.l_len = op->req.lk.len;
	fl.l_pid = 0;
	fuse_reply_lock(op->freq, &fl);
	op_free(op);
}

/* getlk and setlk: cmd is the fcntl command for the owner's fd. */
static void fcntl_lock(fuse_req_t freq, fuse_ino_t ino,
		       struct fuse_file_info *fi, struct flock *lock, int cmd)
{
	struct op *op = op_new(freq, cmd == F_OFD_GETLK ? AFS_OP_GETLK
						  : AFS_OP_SETLK, NULL, NULL);

	if (!op)
		return;
	op_obj(op, 0, ino);
	op_file(op, 0, fi);
	op->owner = fi->lock_owner;
	op->lock_cmd = cmd;
	op->lk.type = (int16_t)lock->l_type;
	op->lk.whence = (int16_t)lock->l_whence;
	op->lk.start = lock->l_start;
	op->lk.len = lock->l_len;
	if (cmd == F_OFD_SETLKW)
		fuse_req_interrupt_func(freq, interrupted, op);
	if (!after_closes(op, lock_run))
		lock_run(op);
}

static void afs_getlk(fuse_req_t freq, fuse_ino_t ino,
		      struct fuse_file_info *fi, struct flock *lock)
{
	fcntl_lock(freq, ino, fi, lock, F_OFD_GETLK);
}

static void afs_setlk(fuse_req_t freq, fuse_ino_t ino,
		      struct fuse_file_info *fi, struct flock *lock, int sleep)
{
	fcntl_lock(freq, ino, fi, lock,
		   sleep && lock->l_type != F_UNLCK ? F_OFD_SETLKW : F_OFD_SETLK);
}

int afs_resize_pool(unsigned n)
{
	int err = aiod_pool_resize(afs.pool, n);

	if (!err) {
		/* The lock waits' bound follows (see lock_submit()). */
		afs.opt.workers = n;
		afs_log(LOG_INFO, "%s: workers: %u", afs.mountpoint, n);
	}
	return err;
}

/* The session ends: parked waits end with EINTR. */
void afs_ops_shutdown(void)
{
	while (parked) {
		struct op *op = parked;

		unpark(op);
		reply_err(op, EINTR);
	}
}

static void flock_run(struct op *op)
{
	if (op->lock_op & (LOCK_NB | LOCK_UN)) {
		aiod_prep_flock(&op->req, -1, op->lock_op);
		op->req.fd[0] = op->file[0]->fd;
		op_submit(op, reply_status);
		return;
	}
	if (op->interrupted) {
		reply_err(op, EINTR);
		return;
	}
	lock_submit(op);
}

static void afs_flock(fuse_req_t freq, fuse_ino_t ino,
		      struct fuse_file_info *fi, int operation)
{
	struct op *op = op_new(freq, AFS_OP_FLOCK, NULL, NULL);

	if (!op)
		return;
	op_obj(op, 0, ino);
	op_file(op, 0, fi);
	op->file[0]->worker_close = true; /* its description may hold the lock */
	op->lock_op = operation;
	if (!(operation & (LOCK_NB | LOCK_UN)))
		fuse_req_interrupt_func(freq, interrupted, op);
	if (!after_closes(op, flock_run))
		flock_run(op);
}

/* ---- directories ---------------------------------------------------------- */

static void afs_opendir(fuse_req_t freq, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	struct op *op = op_new(freq, AFS_OP_OPENDIR, NULL, NULL);

	if (!op)
		return;
	set_cred(op);
	op->fi = *fi;
	aiod_prep_open(&op->req, -1, NULL, O_RDONLY | O_DIRECTORY, 0, 0);
	op->req.flags = open_keeps(op_obj(op, 0, ino));
	op_submit(op, open_done);
}

/*
 * Directory offsets.  The offset the kernel gets with an entry is its
 * position in the listing (1 for the first), not the source's d_off:
 * ext4 and others give 64-bit hashes, which a 32-bit program's readdir()
 * refuses (EOVERFLOW) and its telldir() cuts to 32 bits, so that its
 * seekdir() went elsewhere.  ext4 gives such a program 31-bit hashes of
 * its own, but the worker that reads the source is a 64-bit process.
 * The open directory keeps the source's offset after each position
 * handed out (8 bytes an entry while it is open), so a READDIR from any
 * of them, a seekdir() or the rest of a reply the kernel had no room
 * for, goes straight there.  A position is never given another offset:
 * a telldir() may hold it.  Read again, an entry keeps its position if
 * that stands for the same offset; where the directory changed since,
 * it gets a new one after all the others, until a listing from the
 * start finds too many (listing_ends()).  A position never handed out (a seekdir() to
 * a made-up value, or to one of another open) reads as the end of the
 * listing.
 */
static bool dir_pos_off(const struct afs_file *f, off_t pos, int64_t *off)
{
	if (pos < 0 || (uint64_t)pos > f->noffs)
		return false;
	*off = pos ? (int64_t)f->offs[pos - 1] : 0;
	return true;
}

/*
 * The position of the entry after position prev, which ends at the
 * source's off: prev + 1 if that is new or stands for off, else a new
 * one.  0: no memory.
 */
static uint64_t dir_pos_note(struct afs_file *f, uint64_t prev, int64_t off)
{
	uint64_t pos = prev + 1;

	f->listed++;
	if (pos <= f->noffs && f->offs[pos - 1] == (uint64_t)off)
		return pos;
	pos = (uint64_t)f->noffs + 1;
	if (pos > UINT32_MAX)
		return 0;
	if (pos > f->offs_cap) {
		uint32_t cap = f->offs_cap ? f->offs_cap : 64;
		uint64_t *offs;

		while (cap < pos)
			cap = cap > UINT32_MAX / 2 ? UINT32_MAX : cap * 2;
		offs = realloc(f->offs, sizeof(*offs) * cap);
		if (!offs)
			return false;
		f->offs = offs;
		f->offs_cap = cap;
	}
	f->offs[pos - 1] = (uint64_t)off;
	f->noffs = (uint32_t)pos;
	return pos;
}

/*
 * The kernel lists a directory until a READDIR comes back empty.  When
 * the worker's records reached the end of the directory (req.eof) and
 * the reply took them all, the position after the last one is kept with
 * the open directory, and the kernel's next READDIR from there is
 * answered empty by the loop: one round trip fewer per directory listed.
 * A name added or removed through the mount since the worker's listing
 * began (in->writes) voids it; one added behind the mount shows from the
 * next listing on, which POSIX allows of entries added after an opendir
 * or rewinddir.  The kernel runs one READDIR at a time per open
 * directory.
 */
static void listing_start(struct op *op)
{
	struct afs_file *f = op->file[0];

	f->end_off = -1;
	f->end_writes = f->in ? f->in->writes : 0;
}

static void listing_learn(struct op *op, bool took_all, uint64_t last_pos)
{
	struct afs_file *f = op->file[0];

	if (op->req.eof && took_all) {
		f->listed_whole = f->listed;
		if (f->in && f->in->writes == f->end_writes)
			f->end_off = (int64_t)last_pos;
	}
}

/*
 * Whether READDIR(PLUS) at off is the empty one at the end, or from a
 * position never handed out (a seekdir() to a value telldir() did not
 * give, or past the end): replies.  If not, *src is where the source's
 * listing resumes.
 */
static bool listing_ends(fuse_req_t freq, struct fuse_file_info *fi,
			 off_t off, int opcode, int64_t *src)
{
	struct afs_file *f = (struct afs_file *)(uintptr_t)fi->fh;

	/*
	 * A rewinddir() voids every telldir() value given before it
	 * (POSIX), so positions may start over at a listing from the
	 * start: once the table holds more than twice the entries of a
	 * whole listing (and 1,024 more), as a program makes it that
	 * rewinds a directory that changes meanwhile.  Not at every
	 * listing from the start: a seekdir() to the start comes as one
	 * too, and leaves other telldir() values good.
	 */
	if (off == 0) {
		if (f->noffs > 2 * (uint64_t)f->listed_whole + 1024)
			f->noffs = 0;
		f->listed = 0;
	}
	if (dir_pos_off(f, off, src) &&
	    (f->end_off < 0 || off != f->end_off || !f->in ||
	     f->in->writes != f->end_writes))
		return false;
	fuse_reply_buf(freq, NULL, 0);
	afs_stats_by_loop(opcode);
	afs_stats_count(opcode, 0, 0);
	return true;
}

/* The filesystem a listing's d_ino come from: its directory's. */
static uint64_t listing_dev(const struct op *op)
{
	const struct afs_file *f = op->file[0];

	return f && f->in ? f->in->dev : afs.root.dev;
}

static void readdir_done(struct op *op)
{
	const char *p = op->req.out, *end;
	size_t size = op->req.len, used = 0;
	uint64_t pos = op->dir_pos, dev = listing_dev(op);
	char *reply;

	if (op->req.result < 0) {
		reply_err(op, (int)-op->req.result);
		return;
	}
	reply = malloc(size);
	if (!reply) {
		reply_err(op, ENOMEM);
		return;
	}
	end = p + op->req.result;
	while (p < end) {
		const struct dirent64 *d = (const struct dirent64 *)p;
		struct stat st = {
			.st_ino = afs_ino_of(dev, d->d_ino),
			.st_mode = (mode_t)d->d_type << 12,
		};
		size_t need = fuse_add_direntry(op->freq, NULL, 0, d->d_name,
						NULL, 0);
		uint64_t next;

		if (need > size - used ||
		    !(next = dir_pos_note(op->file[0], pos, d->d_off)))
			break; /* the next readdir resumes from here */
		used += fuse_add_direntry(op->freq, reply + used, size - used,
					  d->d_name, &st, (off_t)next);
		p += d->d_reclen;
		pos = next;
	}
	if (!used && p < end) {
		reply_err(op, ENOMEM); /* (the kernel's buffer fits one) */
		free(reply);
		return;
	}
	listing_learn(op, p >= end, pos);
	fuse_reply_buf(op->freq, reply, used);
	free(reply);
	op_free(op);
}

static void afs_readdir(fuse_req_t freq, fuse_ino_t ino, size_t size,
			off_t off, struct fuse_file_info *fi)
{
	struct op *op;
	int64_t src;

	(void)ino;
	if (listing_ends(freq, fi, off, AFS_OP_READDIR, &src))
		return;
	op = op_new(freq, AFS_OP_READDIR, NULL, NULL);
	if (!op)
		return;
	op->dir_pos = (uint64_t)off;
	aiod_prep_readdir(&op->req, -1, NULL, size, src);
	op_file(op, 0, fi);
	listing_start(op);
	op_submit(op, readdir_done);
}

/*
 * readdirplus: each entry the kernel will link gets an inode and one
 * lookup reference, which are given back if the reply does not reach
 * the kernel.  Entries without a usable handle go without attributes
 * (nodeid 0), and the kernel looks them up by name when it needs them.
 * A directory among them gets its O_PATH fd for the loop as from a
 * lookup (afs_inode_learn_dir()), so that lookups and GETATTRs under a
 * tree walked by listing need no worker either.
 */
static void readdirplus_done(struct op *op)
{
	const char *p = op->req.out, *end;
	size_t size = op->req.len / 3, used = 0, nlinked = 0;
	uint64_t pos = op->dir_pos;
	struct afs_inode **linked;
	char *reply;

	if (op->req.result < 0) {
		reply_err(op, (int)-op->req.result);
		return;
	}
	reply = calloc(1, size); /* (gcc 12 cannot tell it gets filled) */
	linked = malloc(sizeof(*linked) * (size / 32 + 1));
	if (!reply || !linked) {
		free(reply);
		free(linked);
		reply_err(op, ENOMEM);
		return;
	}
	end = p + op->req.result;
	for (; p < end; p += ((const struct aiod_direntplus *)p)->reclen) {
		const struct aiod_direntplus *e = (const void *)p;
		struct fuse_entry_param fe = { 0 };
		struct afs_inode *in = NULL;
		size_t need = fuse_add_direntry_plus(op->freq, NULL, 0, e->name,
						     NULL, 0);
		uint64_t next;

		if (need > size - used ||
		    !(next = dir_pos_note(op->file[0], pos, e->off)))
			break; /* the next readdirplus resumes from here */
		if (e->err == 0) {
			bool usable = afs.use_handles && e->fh.handle_bytes &&
				      afs_mount_fd(e->mount_id) >= 0;

			in = afs_inode_find(&e->stx, usable ? &e->fh : NULL);
			if (!in && usable)
				in = afs_inode_new(&e->stx, &e->fh, e->mount_id,
						   -1);
		}
		if (in) {
			int none = -1;

			afs_inode_learn_dir(op->file[0]->in, e->name, in, &none);
			fe.ino = (fuse_ino_t)(uintptr_t)in;
			stat_of(&e->stx, &fe.attr);
			fe.attr_timeout = attr_timeout();
			fe.entry_timeout = entry_timeout();
			in->nlookup++;
			linked[nlinked++] = in;
		} else {
			/* Its own device where known (overlayfs' layers). */
			fe.attr.st_ino = afs_ino_of(
				e->err == 0 && (e->stx.stx_mask & STATX_INO)
					? makedev(e->stx.stx_dev_major,
						  e->stx.stx_dev_minor)
					: listing_dev(op),
				e->ino);
			fe.attr.st_mode = (mode_t)e->type << 12;
		}
		used += fuse_add_direntry_plus(op->freq, reply + used,
					       size - used, e->name, &fe,
					       (off_t)next);
		pos = next;
	}
	if (!used && p < end) {
		free(linked);
		free(reply);
		reply_err(op, ENOMEM); /* (the kernel's buffer fits one) */
		return;
	}
	listing_learn(op, p >= end, pos);
	if (fuse_reply_buf(op->freq, reply, used) != 0)
		for (size_t i = 0; i < nlinked; i++)
			afs_inode_forget(linked[i], 1);
	free(linked);
	free(reply);
	op_free(op);
}

static void afs_readdirplus(fuse_req_t freq, fuse_ino_t ino, size_t size,
			    off_t off, struct fuse_file_info *fi)
{
	struct op *op;
	int64_t src;

	(void)ino;
	if (listing_ends(freq, fi, off, AFS_OP_READDIRPLUS, &src))
		return;
	op = op_new(freq, AFS_OP_READDIRPLUS, NULL, NULL);
	if (!op)
		return;
	op->dir_pos = (uint64_t)off;
	/*
	 * A record of ours is at most 3 times the kernel's for the same
	 * name, so this many bytes fill the kernel's buffer.
	 */
	aiod_prep_readdirplus(&op->req, -1, NULL, size * 3, src);
	op_file(op, 0, fi);
	listing_start(op);
	op_submit(op, readdirplus_done);
}

static void afs_releasedir(fuse_req_t freq, fuse_ino_t ino,
			   struct fuse_file_info *fi)
{
	release(freq, ino, fi, AFS_OP_RELEASEDIR);
}

static void afs_fsyncdir(fuse_req_t freq, fuse_ino_t ino, int datasync,
			 struct fuse_file_info *fi)
{
	(void)ino;
	fsync_common(freq, datasync, fi, AFS_OP_FSYNCDIR);
}

/* ---- the filesystem as a whole ------------------------------------------- */

static void statfs_done(struct op *op)
{
	const struct aiod_statfs *s = &op->req.sfs;
	struct statvfs v = {
		.f_bsize = s->bsize, .f_frsize = s->frsize,
		.f_blocks = s->blocks, .f_bfree = s->bfree,
		.f_bavail = s->bavail, .f_files = s->files,
		.f_ffree = s->ffree, .f_favail = s->favail,
		.f_fsid = s->fsid, .f_flag = s->flag,
		.f_namemax = s->namemax,
	};

	if (op->req.result < 0) {
		reply_err(op, (int)-op->req.result);
		return;
	}
	fuse_reply_statfs(op->freq, &v);
	op_free(op);
}

static void afs_statfs(fuse_req_t freq, fuse_ino_t ino)
{
	struct op *op = op_new(freq, AFS_OP_STATFS, NULL, NULL);

	if (!op)
		return;
	aiod_prep_statfs(&op->req, -1, NULL);
	op_obj(op, 0, ino);
	op_submit(op, statfs_done);
}

static void afs_access(fuse_req_t freq, fuse_ino_t ino, int mask)
{
	struct op *op = op_new(freq, AFS_OP_ACCESS, NULL, NULL);

	if (!op)
		return;
	set_cred(op);
	aiod_prep_access(&op->req, -1, NULL, mask, 0);
	op_obj(op, 0, ino);
	op_submit(op, reply_status);
}

/* ---- extended attributes -------------------------------------------------- */

/*
 * The kernel asks for security.capability before a write to a file (to
 * know whether the write must drop it): with FUSE_HANDLE_KILLPRIV_V2
 * (loop.c) once after each refresh of its attributes, without before
 * every write, which would double the requests of a write-heavy load.
 * Its absence is kept with the inode, like an attribute, for
 * attr_timeout: the kernel's view may be that stale anyway, and the
 * source drops the capability itself when a worker writes.  A file just
 * made by an O_EXCL create (tar, cp, mkstemp) starts without it.
 * Setting or removing it through the mount forgets it.
 */
static bool is_caps(const char *name)
{
	return strcmp(name, "security.capability") == 0;
}

/* in has no security.capability: the source said so, or it is new. */
static void caps_absent(struct afs_inode *in)
{
	in->nocaps_until = attr_timeout() > 0
				   ? now_ms() + (int64_t)(attr_timeout() * 1000)
				   : 0;
}

static void caps_learn(struct afs_inode *in, const char *name, int64_t result)
{
	if (!is_caps(name))
		return;
	if (result == -ENODATA)
		caps_absent(in);
	else
		in->nocaps_until = 0;
}

/* getxattr and listxattr: the size asked for (size 0), or the bytes. */
static void xattr_done(struct op *op)
{
	int64_t n = op->req.result;

	if (op->req.op == AIOD_OP_GETXATTR)
		caps_learn(op->in[0], op->name[0], n);
	if (n < 0) {
		reply_err(op, (int)-n);
		return;
	}
	if (op->req.len == 0)
		fuse_reply_xattr(op->freq, (size_t)n);
	else
		fuse_reply_buf(op->freq, op->req.out, (size_t)n);
	op_free(op);
}

static void afs_getxattr(fuse_req_t freq, fuse_ino_t ino, const char *name,
			 size_t size)
{
	struct afs_inode *in = afs_inode_get(ino);
	struct op *op;

	if (is_caps(name) && in->nocaps_until > now_ms()) {
		afs_stats_by_loop(AFS_OP_GETXATTR);
		fuse_reply_err(freq, ENODATA);
		afs_stats_count(AFS_OP_GETXATTR, ENODATA, 0);
		return;
	}
	op = op_new(freq, AFS_OP_GETXATTR, name, NULL);
	if (!op)
		return;
	set_cred(op);
	aiod_prep_getxattr(&op->req, -1, NULL, op->name[0], NULL, size);
	op_obj(op, 0, ino);
	op_submit(op, xattr_done);
}

static void afs_listxattr(fuse_req_t freq, fuse_ino_t ino, size_t size)
{
	struct op *op = op_new(freq, AFS_OP_LISTXATTR, NULL, NULL);

	if (!op)
		return;
	set_cred(op);
	aiod_prep_listxattr(&op->req, -1, NULL, NULL, size);
	op_obj(op, 0, ino);
	op_submit(op, xattr_done);
}

/*
 * setxattr and removexattr: a getxattr that ran meanwhile may have
 * learnt the old state.
 */
static void xattr_changed(struct op *op)
{
	caps_learn(op->in[0], op->name[0], 0);
	reply_status(op);
}

static void afs_setxattr(fuse_req_t freq, fuse_ino_t ino, const char *name,
			 const char *value, size_t size, int flags)
{
	struct op *op = op_new(freq, AFS_OP_SETXATTR, name, NULL);
	char *copy;

	if (!op)
		return;
	/* The value lives in the receive buffer: keep a copy. */
	op = realloc(op, sizeof(*op) + strlen(name) + 1 + size);
	if (!op) {
		fuse_reply_err(freq, ENOMEM);
		return;
	}
	op->name[0] = op->extra;
	copy = memcpy(op->extra + strlen(name) + 1, value, size);
	caps_learn(afs_inode_get(ino), name, 0);
	set_cred(op);
	aiod_prep_setxattr(&op->req, -1, NULL, op->name[0], copy, size, flags);
	op_obj(op, 0, ino);
	op_submit(op, xattr_changed);
}

static void afs_removexattr(fuse_req_t freq, fuse_ino_t ino, const char *name)
{
	struct op *op = op_new(freq, AFS_OP_REMOVEXATTR, name, NULL);

	if (!op)
		return;
	caps_learn(afs_inode_get(ino), name, 0);
	set_cred(op);
	aiod_prep_removexattr(&op->req, -1, NULL, op->name[0]);
	op_obj(op, 0, ino);
	op_submit(op, xattr_changed);
}

/* ---- session ---------------------------------------------------------------- */

static void afs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fuse_conn_info_opts *copts = userdata;

	/* Older kernels take a shorter entry (absent_reply()). */
	afs.entry_out_full = conn->proto_major > 7 ||
			     (conn->proto_major == 7 && conn->proto_minor >= 9);
	conn->max_read = afs.max_read;
	conn->max_readahead = 1u << 20;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_IOCTL_DIR)
		conn->want |= FUSE_CAP_IOCTL_DIR; /* lsattr -d */
	if (afs.opt.writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	/*
	 * The kernel's own checks must see the source's ACLs; asking for
	 * them also turns those checks on, so only with
	 * default_permissions.
	 */
	if (afs.opt.default_permissions && (conn->capable & FUSE_CAP_POSIX_ACL))
		conn->want |= FUSE_CAP_POSIX_ACL;
	if (afs.opt.posix_locks && (conn->capable & FUSE_CAP_POSIX_LOCKS))
		conn->want |= FUSE_CAP_POSIX_LOCKS;
	else
		conn->want &= ~FUSE_CAP_POSIX_LOCKS;
	if (conn->capable & FUSE_CAP_DONT_MASK)
		conn->want |= FUSE_CAP_DONT_MASK;
	if (copts)
		fuse_apply_conn_info_opts(copts, conn);
	afs.dont_mask = conn->want & FUSE_CAP_DONT_MASK;
	/* Ours alone: a receive buffer or a pipe must hold a whole write. */
	conn->max_write = afs.max_write;
	/* The loop splices by itself (loop.c), not through libfuse. */
	conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE |
			FUSE_CAP_SPLICE_MOVE);
	afs.init_done = true;
}

const struct fuse_lowlevel_ops afs_ops = {
	.init = afs_init,
	.lookup = afs_lookup,
	.forget = afs_forget,
	.forget_multi = afs_forget_multi,
	.getattr = afs_getattr,
	.setattr = afs_setattr,
	.readlink = afs_readlink,
	.mknod = afs_mknod,
	.mkdir = afs_mkdir,
	.unlink = afs_unlink,
	.rmdir = afs_rmdir,
	.symlink = afs_symlink,
	.rename = afs_rename,
	.link = afs_link,
	.open = afs_open,
	.create = afs_create,
	.read = afs_read,
	.write = afs_write,
	.flush = afs_flush,
	.release = afs_release,
	.fsync = afs_fsync,
	.opendir = afs_opendir,
	.readdir = afs_readdir,
	.readdirplus = afs_readdirplus,
	.releasedir = afs_releasedir,
	.fsyncdir = afs_fsyncdir,
	.statfs = afs_statfs,
	.setxattr = afs_setxattr,
	.getxattr = afs_getxattr,
	.listxattr = afs_listxattr,
	.removexattr = afs_removexattr,
	.access = afs_access,
	.fallocate = afs_fallocate,
	.copy_file_range = afs_copy_file_range,
	.lseek = afs_lseek,
	.ioctl = afs_ioctl,
	.flock = afs_flock,
	.getlk = afs_getlk,
	.setlk = afs_setlk,
};
