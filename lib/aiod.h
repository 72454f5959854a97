/* SPDX-License-Identifier: MIT */
/*
 * aiod.h - libaiod, a pool of worker processes that run blocking syscalls.
 *
 * DESIGN
 *
 * A single-threaded program (an event loop) must never block on a slow
 * disk or a hung network filesystem.  libaiod lets it hand each blocking
 * syscall to one of N "aiod" worker processes and learn of the result
 * later, on its own loop thread, through a callback.
 *
 * Requests travel through a shared-memory arena: the library copies a
 * request's arguments into the arena, rings the doorbell of an idle worker
 * (a private socket, which also carries file descriptors), and the worker
 * writes its result beside the arguments.  Data buffers can live in the
 * arena too (aiod_buf_alloc()), so reads and writes need no copy between
 * the caller and the worker.
 *
 * Guarantees:
 *  - The library owns no event loop and no thread.  aiod_pool_fd() is one
 *    pollable fd; when it is readable, aiod_pool_process() runs the
 *    callbacks of the requests that are done.  aiod_pool_wait() blocks,
 *    for programs without a loop.
 *  - Callbacks run only inside aiod_pool_process() and aiod_pool_wait()
 *    (and aiod_pool_free(), for requests that never ran), exactly once per
 *    submitted request, in no particular order.
 *  - Each worker runs one request at a time, so a request that blocks ties
 *    up one worker, never the caller and never the other workers.
 *  - Submitting never fails for lack of room: when every worker is busy or
 *    the arena is full, requests wait in the caller's own struct aiod_req
 *    (an intrusive queue; the library allocates nothing per request) and
 *    are dispatched in FIFO order as room frees up.
 *  - When a worker dies, only the request it held is affected: it runs
 *    again on another worker if it is idempotent (see AIOD_F_NORETRY; up
 *    to twice, so a request that kills every worker it runs on ends),
 *    otherwise it completes with -EIO.  A new worker takes the dead one's
 *    place.  The caller never receives SIGPIPE.
 *  - Workers exit when the pool is freed or the caller's process dies.
 *  - Workers run SCHED_BATCH (unless the caller's policy, which they
 *    inherit, is other than SCHED_OTHER): a woken worker takes an idle
 *    CPU but does not preempt the caller, which can go on submitting.
 *
 * All functions return >= 0 on success and -errno on failure, never -1
 * with errno.  None is thread-safe: use a pool from one thread.
 */
#ifndef AIOD_H
#define AIOD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <fcntl.h>
#include <time.h>
#include <linux/stat.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AIOD_VERSION_MAJOR 0
#define AIOD_VERSION_MINOR 1

/* ------------------------------------------------------------------ */
/* Operations                                                         */
/* ------------------------------------------------------------------ */

/*
 * Opcodes.  The numbers are part of the wire protocol and never change.
 * "fd" and "name" below are req->fd[0] and req->name[0], "fd2" and "name2"
 * req->fd[1] and req->name[1].  A name is relative to its fd (which may be
 * AT_FDCWD, the caller's working directory when the pool was created); a
 * NULL name means the object is the fd itself, which may be an O_PATH fd.
 * Every operation may fail with the errno of the syscall it runs.
 */
enum aiod_op {
	AIOD_OP_NOP = 0,         /* sleep arg[0] microseconds (0: none) */
	AIOD_OP_LOOKUP = 1,      /* lstat fd/name, fill stx and fh */
	AIOD_OP_STATX = 2,       /* statx(fd, name, arg[0] flags, arg[1] mask) */
	AIOD_OP_OPEN = 3,        /* openat2(fd, name, arg[0] flags, arg[1] mode,
				    arg[2] RESOLVE_* flags); result 0, ret_fd;
				    arg[3] umask with AIOD_F_UMASK */
	AIOD_OP_OPEN_BY_HANDLE = 4, /* open_by_handle_at(fd, buf, arg[0]) */
	AIOD_OP_CLOSE = 5,       /* close fd without blocking the caller:
				    the worker closes the last reference
				    (NFS's last close may block; with
				    AIOD_F_KEEP, the worker keeping a
				    copy closes that one) and the
				    pool's closer the caller's own (any
				    close runs the file's flush: NFS's,
				    a FUSE filesystem's, may block; on
				    filesystems known to have none the
				    caller's copy closes at once); the
				    callback runs once both are closed.
				    The pool owns fd from aiod_submit()
				    on: the caller must not use or close
				    it */
	AIOD_OP_PREAD = 6,       /* pread(fd, buf, len, arg[0]) */
	AIOD_OP_PWRITE = 7,      /* pwrite(fd, buf, len, arg[0]); arg[0] ==
				    -1: write() at the file position */
	AIOD_OP_FSYNC = 8,       /* fsync(fd), fdatasync if arg[0] != 0 */
	AIOD_OP_TRUNCATE = 9,    /* truncate fd/name to arg[0] bytes */
	AIOD_OP_FALLOCATE = 10,  /* fallocate(fd, arg[0] mode, arg[1] off,
				    arg[2] len) */
	AIOD_OP_COPY_FILE_RANGE = 11, /* from fd at arg[0] to fd2 at arg[1],
					 len bytes, arg[2] flags */
	AIOD_OP_LSEEK = 12,      /* lseek(fd, arg[0], arg[1] whence) */
	AIOD_OP_READDIR = 13,    /* fill buf with struct dirent64 records of
				    directory fd, from position arg[0] (0:
				    start, else a d_off seen before); eof
				    says whether they reach its end */
	AIOD_OP_MKDIR = 14,      /* mkdirat(fd, name, arg[0] mode); arg[1]
				    umask with AIOD_F_UMASK */
	AIOD_OP_MKNOD = 15,      /* mknodat(fd, name, arg[0] mode, arg[1] dev);
				    arg[2] umask with AIOD_F_UMASK */
	AIOD_OP_SYMLINK = 16,    /* symlinkat(name2, fd, name) */
	AIOD_OP_READLINK = 17,   /* readlinkat(fd, name, buf, len) */
	AIOD_OP_LINK = 18,       /* linkat(fd, name, fd2, name2, arg[0]) */
	AIOD_OP_UNLINK = 19,     /* unlinkat(fd, name, 0) */
	AIOD_OP_RMDIR = 20,      /* unlinkat(fd, name, AT_REMOVEDIR) */
	AIOD_OP_RENAME = 21,     /* renameat2(fd, name, fd2, name2, arg[0]) */
	AIOD_OP_CHMOD = 22,      /* chmod fd/name to arg[0]; arg[1]:
				    AT_SYMLINK_NOFOLLOW */
	AIOD_OP_CHOWN = 23,      /* fchownat(fd, name, arg[0] uid, arg[1] gid,
				    arg[2] flags); (uint32_t)-1 keeps one */
	AIOD_OP_UTIMENS = 24,    /* utimensat(fd, name, {arg[0] s, arg[1] ns},
				    {arg[2] s, arg[3] ns}, arg[4] flags);
				    ns may be UTIME_NOW or UTIME_OMIT */
	AIOD_OP_STATFS = 25,     /* statvfs of fd/name into sfs */
	AIOD_OP_ACCESS = 26,     /* faccessat(fd, name, arg[0] mode, arg[1]
				    flags | AT_EACCESS): checked with the
				    request's credentials */
	AIOD_OP_GETXATTR = 27,   /* attribute name2 of fd/name into buf;
				    len 0 asks for the size */
	AIOD_OP_SETXATTR = 28,   /* set attribute name2 of fd/name to buf,
				    len bytes, arg[0] XATTR_* flags */
	AIOD_OP_LISTXATTR = 29,  /* attribute names of fd/name into buf */
	AIOD_OP_REMOVEXATTR = 30, /* remove attribute name2 of fd/name */
	AIOD_OP_FLOCK = 31,      /* flock(fd, arg[0]); a blocking wait can
				    be cancelled */
	AIOD_OP_LOCK = 32,       /* OFD lock: fcntl(fd, arg[0] F_OFD_GETLK,
				    F_OFD_SETLK or F_OFD_SETLKW, lk); a
				    blocking wait can be cancelled */
	AIOD_OP_READDIRPLUS = 33, /* as READDIR, but fill buf with struct
				     aiod_direntplus records: each entry
				     with its lstat and file handle */
	AIOD_OP_PWRITE_PIPE = 34, /* as PWRITE, but the len bytes come from
				     the pipe fd2 (its read end), which
				     must hold them; the pipe is left as it
				     was (tee(2), then splice(2) into fd),
				     so that a second run finds them again:
				     the caller empties it after the
				     callback.  Fewer bytes in the pipe: a
				     short count.  Where the worker cannot
				     leave it as it was, it takes them and
				     the request is not run again. */
	AIOD_OP_FLUSH = 35,      /* close the worker's copy of fd, which
				    runs the file's flush as a close(2) of
				    the caller's would (NFS writes back,
				    and reports a write-back error here),
				    before the request ends; the caller's
				    fd stays open */
	AIOD_OP_FILEATTR = 36,   /* ioctl(fd, arg[0], ...) for the inode
				    flags (chattr(1), lsattr(1)), with fa
				    in and out: FS_IOC_GETFLAGS and
				    FS_IOC_SETFLAGS (fa.flags),
				    FS_IOC_GETVERSION and FS_IOC_SETVERSION
				    (fa.flags: the inode's generation),
				    FS_IOC_FSGETXATTR and FS_IOC_FSSETXATTR
				    (the other fields); any other command
				    fails with ENOTTY.  fd is an open file
				    or directory, not O_PATH */
	AIOD_OP__COUNT
};

/* Request flags, in req->flags. */
enum {
	/*
	 * Do not run the request again if its worker dies; fail with -EIO.
	 * Without it, a request whose worker dies runs again (up to twice)
	 * if running it twice does what running it once does: every op that
	 * only reads;
	 * PREAD, PWRITE and PWRITE_PIPE at an offset (the caller knows
	 * whether its fd is O_APPEND, which makes a pwrite append again: it
	 * must set this flag); COPY_FILE_RANGE with both offsets; LSEEK unless it moves by
	 * SEEK_CUR; FSYNC, TRUNCATE, CHMOD, CHOWN, UTIMENS; OPEN and
	 * OPEN_BY_HANDLE without O_TRUNC or O_EXCL; FALLOCATE but collapse
	 * and insert range; SETXATTR without XATTR_CREATE.
	 */
	AIOD_F_NORETRY = 1u << 0,
	/*
	 * After an OPEN (of any kind), OPEN_BY_HANDLE, MKDIR, MKNOD, SYMLINK
	 * or LINK that succeeds, also fill stx and fh with the identity of
	 * the object opened or created, sparing a LOOKUP round trip.  If that lookup fails, fh.handle_bytes
	 * is 0 and stx.stx_mask is 0; the operation still succeeded.
	 * On an UNLINK, RMDIR, or a RENAME without RENAME_EXCHANGE or
	 * RENAME_NOREPLACE, the object is the one the call removes a name
	 * of (the RENAME's target), opened O_PATH just before the call:
	 * after a call that succeeds, ret_fd is that fd, which keeps the
	 * object in existence even if it has no name left, and stx and fh
	 * identify it (a directory's stx_nlink is its count after the
	 * call); ret_fd is -1 and stx.stx_mask 0 if there was none or it
	 * could not be opened.
	 */
	AIOD_F_LOOKUP = 1u << 1,
	/*
	 * After any other op that succeeds, also fill stx with the
	 * attributes of object 0 (fd[0] and name[0], a symlink not
	 * followed), sparing a STATX round trip: a chmod or utimens that
	 * answers with the result.  If that statx fails, stx.stx_mask is 0;
	 * the op still succeeded.
	 */
	AIOD_F_STATX = 1u << 2,
	/*
	 * fd[0] stays open, and the caller's, until it ends with an
	 * AIOD_OP_CLOSE through this pool: a worker may keep a copy of it
	 * between requests.  The next request on it that this worker
	 * runs needs no fd passed, and no copy closed after it (each such
	 * close runs the file's flush: on NFS or a FUSE filesystem, a
	 * round trip to the server).  On an OPEN or OPEN_BY_HANDLE the
	 * same holds for the fd it returns.  The pool runs a CLOSE of a
	 * kept fd in the worker that keeps it, once that worker is done
	 * with the request it holds; a worker drops its copies before a
	 * request that may wait for a lock (LOCK with F_OFD_SETLKW, FLOCK
	 * without LOCK_NB).  Never close such an fd otherwise: the pool
	 * would take a new file under the same number for the old one.
	 * Ignored on FLUSH, CLOSE and shared fds.
	 */
	AIOD_F_KEEP = 1u << 3,
	/*
	 * An OPEN that creates, a MKDIR or a MKNOD runs under the umask
	 * aiod_prep_umask() placed among its arguments, not the worker's
	 * own (the client's at the worker's start): the filesystem applies
	 * it unless the directory's default ACL takes its place, as for
	 * the process that asked (a FUSE daemon with FUSE_CAP_DONT_MASK
	 * passes its caller's).  Ignored on other ops.
	 */
	AIOD_F_UMASK = 1u << 4,
};

/* Largest file handle the library carries (MAX_HANDLE_SZ). */
#define AIOD_FH_MAX 128

/*
 * A file handle; the same layout as struct file_handle, so it can be
 * handed to open_by_handle_at() or to AIOD_OP_OPEN_BY_HANDLE as it is.
 * handle_bytes is 0 when the filesystem has none.
 */
struct aiod_fh {
	uint32_t handle_bytes;
	int32_t handle_type;
	unsigned char f_handle[AIOD_FH_MAX];
};

/* Filesystem statistics (AIOD_OP_STATFS), as in struct statvfs. */
struct aiod_statfs {
	uint64_t bsize, frsize, blocks, bfree, bavail;
	uint64_t files, ffree, favail, fsid, flag, namemax;
};

/*
 * One entry of AIOD_OP_READDIRPLUS's output.  Records follow each other
 * in buf, each reclen bytes long and 8-aligned; the result is the bytes
 * used.  Resume a listing from the off of the last record taken.
 */
struct aiod_direntplus {
	uint64_t ino;           /* d_ino */
	int64_t off;            /* d_off: the position after this entry */
	uint16_t reclen;
	uint8_t type;           /* d_type */
	uint8_t pad;
	int32_t err;            /* 0: stx, fh and mount_id describe the
				   entry; -errno: looking it up failed;
				   1: not looked up ("." and "..") */
	int32_t mount_id;
	uint32_t namelen;
	struct statx stx;
	struct aiod_fh fh;      /* handle_bytes 0 if the fs gives none */
	char name[];            /* NUL-terminated */
};

/* A byte-range lock (AIOD_OP_LOCK), as in struct flock. */
struct aiod_lock {
	int16_t type;    /* F_RDLCK, F_WRLCK, F_UNLCK */
	int16_t whence;  /* SEEK_SET, SEEK_CUR, SEEK_END */
	int32_t pid;     /* F_OFD_GETLK: -1 for an OFD lock, else the owner */
	int64_t start;
	int64_t len;
};

/*
 * An inode's flags (AIOD_OP_FILEATTR): FS_*_FL for FS_IOC_[GS]ETFLAGS
 * (or the generation, for FS_IOC_[GS]ETVERSION), and struct fsxattr's
 * fields for FS_IOC_FS[GS]ETXATTR.
 */
struct aiod_fileattr {
	uint32_t flags;
	uint32_t xflags;        /* FS_XFLAG_* */
	uint32_t extsize;
	uint32_t nextents;
	uint32_t projid;
	uint32_t cowextsize;
};

/* Credentials a request runs with (fsuid, fsgid, supplementary groups). */
struct aiod_cred {
	uint32_t uid;
	uint32_t gid;
	uint32_t ngroups;
	const uint32_t *groups;
};

#define AIOD_MAX_GROUPS 65536

/*
 * A reply the worker writes itself (aiod_req.reply), for a client that
 * answers requests of its own over an fd (a FUSE daemon, a server on a
 * socket): when the op succeeds, the worker writes hdr, followed for an
 * op that receives data (PREAD, ...) by the result's bytes of it, to
 * fd, in one writev, having first stored the reply's total length as a
 * native uint32 at hdr + len_off and, if res_off is not 0, the result
 * as a native uint32 at hdr + res_off.  The answer then reaches its
 * reader without a round trip through the client.  fd must be one of
 * the pool's shared fds (aiod_pool_opts.shared_fds, aiod_pool_share()).
 * If the op fails, nothing is written: the callback answers as usual.
 *
 * With on_error set to a negative errno, the reply is for that failure
 * instead: the worker writes hdr (its length at len_off, nothing at
 * res_off) only when the op fails with exactly that error, and nothing
 * when it succeeds (a FUSE daemon's answer to a lookup of a name that
 * does not exist, which needs nothing from the daemon's tables).
 */
#define AIOD_REPLY_HDR_MAX 160

struct aiod_reply {
	int fd;
	uint32_t hdr_len;       /* at most AIOD_REPLY_HDR_MAX */
	uint32_t len_off;       /* hdr_len - 4 at most */
	uint32_t res_off;       /* 0, or hdr_len - 4 at most */
	int32_t on_error;       /* 0, or -errno: see above */
	unsigned char hdr[AIOD_REPLY_HDR_MAX];
};

struct aiod_req;
typedef void aiod_cb(struct aiod_req *req);

/*
 * A request.  The caller owns the memory and must keep it, and everything
 * it points to, alive and unmodified from aiod_submit() until its callback
 * has run.  From its callback on, the request is the caller's again: the
 * callback may prepare and submit it anew, or free it.  Fill it with one of the aiod_prep_*() helpers below (or set
 * the input fields by hand), then set cb, data and, if needed, flags and
 * cred.
 */
struct aiod_req {
	/* Input: set by the caller. */
	uint32_t op;                /* enum aiod_op */
	uint32_t flags;             /* AIOD_F_* */
	int fd[2];                  /* objects; -1 when unused */
	const char *name[2];        /* names relative to fd[i]; NULL: none */
	const struct aiod_fh *fh_in[2]; /* see "Objects named by handle" */
	void *buf;                  /* data; see "Data buffers" below */
	uint64_t len;               /* bytes of buf */
	int64_t arg[5];             /* per-op arguments, see enum aiod_op */
	struct aiod_lock lk;        /* AIOD_OP_LOCK: in and out */
	struct aiod_fileattr fa;    /* AIOD_OP_FILEATTR: in and out */
	const struct aiod_cred *cred; /* NULL: the pool's own */
	const struct aiod_reply *reply; /* NULL: none; see struct aiod_reply */
	aiod_cb *cb;                /* may be NULL */
	void *data;                 /* for the caller */

	/* Output: valid in the callback. */
	int64_t result;             /* >= 0 or -errno */
	int ret_fd;                 /* OPEN*, and UNLINK and RENAME with
				       AIOD_F_LOOKUP: the new fd, owned by
				       the caller; -1 otherwise */
	void *out;                  /* the bytes the worker produced (result
				       of them), see "Data buffers" */
	struct statx stx;           /* LOOKUP, STATX, AIOD_F_LOOKUP */
	struct aiod_fh fh;          /* LOOKUP, AIOD_F_LOOKUP */
	int mount_id;               /* LOOKUP, AIOD_F_LOOKUP */
	int eof;                    /* READDIR, READDIRPLUS: 1 if the records
				       reach the end of the directory (a
				       listing resumed after the last one
				       would have found nothing), else 0 */
	struct aiod_statfs sfs;     /* STATFS */
	/*
	 * With reply set: 1 if the worker wrote it, and when (CLOCK_MONOTONIC
	 * ns).  0 with result >= 0: writing it failed (the callback may
	 * answer itself), or the worker died while writing it: then the
	 * result is -EIO, and the answer may or may not have gone out.
	 */
	int replied;
	uint64_t reply_ns;

	/* Private to libaiod. */
	struct aiod_req *next_;
	uint64_t msg_off_;
	uint64_t tmp_off_;
	uint32_t state_;
	uint32_t tries_;
	void *worker_;
};

/*
 * Objects named by handle.
 *
 * When fh_in[i] is not NULL, fd[i] must be an open directory (not O_PATH)
 * on the filesystem the handle comes from (struct aiod_fh as LOOKUP
 * filled it).  Before running the op, the worker opens the object the
 * handle names with open_by_handle_at(O_PATH), using the pool's own
 * credentials (open_by_handle_at needs CAP_DAC_READ_SEARCH, which a
 * request's fsuid may lack), and uses that fd as fd[i]; the op itself
 * then runs with the request's credentials.  A program can so refer to
 * any number of objects without holding an fd for each.  If the object
 * is gone the request fails with -ESTALE, so it never acts on another.
 * A directory named by handle, on one of the pool's shared fds, as the
 * one a name of the request is in (name[0]'s, or name[1]'s of LINK and
 * RENAME) the worker keeps open for later requests, up to 16 of them,
 * the least recently used going first.  Once such a directory is
 * removed, a request on a name under it fails with -ESTALE as well (the
 * worker sees the -ENOENT, finds the directory has no link left and lets
 * it go).
 * The fh must stay valid until the callback, like name.
 */

/*
 * Data buffers.
 *
 * For ops that send data to the worker (PWRITE, SETXATTR,
 * OPEN_BY_HANDLE), buf holds len bytes.  For ops that receive data (PREAD,
 * READDIR, READLINK, GETXATTR, LISTXATTR), buf has room for len bytes.
 *  - If buf lies in the pool's arena (from aiod_buf_alloc()), the worker
 *    reads or writes it directly: no copy.  This is the fast path.
 *  - If buf is ordinary memory, the library copies it into the arena at
 *    dispatch, or the result out of the arena before the callback.
 *  - If buf is NULL for an op that receives data, the library provides
 *    len bytes of arena memory; req->out points at the result during the
 *    callback only.
 * In every case, req->out points at the result bytes during the callback.
 * A buffer larger than AIOD_BUF_MAX makes aiod_submit() fail with -E2BIG.
 */
#define AIOD_BUF_MAX (16u << 20)

/* ------------------------------------------------------------------ */
/* The pool                                                           */
/* ------------------------------------------------------------------ */

struct aiod_pool;

/* Most fds a pool shares with every worker (aiod_pool_opts.shared_fds). */
#define AIOD_MAX_SHARED_FDS 8

/* The most workers a pool may have. */
#define AIOD_MAX_WORKERS 1024u

struct aiod_pool_opts {
	unsigned workers;       /* 0: a default for this machine; at most
				   AIOD_MAX_WORKERS */
	size_t arena_size;      /* 0: 64 MiB; rounded up to a power of two */
	/*
	 * Fds every worker holds for the pool's whole life, such as the
	 * root directory a program works under: a request naming one (by
	 * the same number, in fd[] or as the directory of a file handle)
	 * does not carry it to the worker, which saves passing it over the
	 * worker's socket each time.  The pool keeps its own copies; the
	 * caller must not close these numbers, nor reuse them for other
	 * files, while the pool lives, nor submit AIOD_OP_CLOSE on them.
	 */
	const int *shared_fds;
	unsigned nshared;       /* at most AIOD_MAX_SHARED_FDS */
	/*
	 * 0, or how long (µs, at most 10000) a worker that has finished a
	 * request polls for the next one before it sleeps, yielding the CPU
	 * to any other runnable task between two looks; one worker at a
	 * time polls, only while at most one other is busy and not right
	 * after a PREAD, PWRITE or PWRITE_PIPE that moved AIOD_POLL_BULK
	 * bytes or more (whose caller takes longer than a poll to use the
	 * data, or to copy in the next), nor while the caller holds polls
	 * (aiod_pool_hold_polls()), and the pool
	 * gives it the next request, through shared memory when the
	 * request carries no fd: no syscall on either side.  Such a
	 * request that comes while that worker ends its last one (its
	 * reply written, or a close with no flush) waits for it rather
	 * than wake another.  Where waking
	 * a sleeping process on an idle CPU is slow (a virtual machine
	 * without halt polling: tens of µs), this saves a wake-up per
	 * request in a steady stream, for up to poll_us of CPU each time
	 * the stream pauses.
	 */
	unsigned poll_us;
	/*
	 * Workers get /dev/null for stdin, stdout and stderr instead of
	 * the caller's own: a program that detaches from its terminal or
	 * pipe (a daemon) must not leave it held open by its workers, or
	 * whoever waits for its output waits as long as they live.
	 */
	bool quiet;
};

/*
 * The size of a read or write after which a worker does not poll
 * (aiod_pool_opts.poll_us): its caller takes longer than a poll to copy
 * that much (about 90 µs per 512 KiB where this was measured).
 */
#define AIOD_POLL_BULK (256u << 10)

/* Counters for monitoring. */
struct aiod_pool_stats {
	unsigned workers;       /* live workers, not counting those resized
				   away that finish a request */
	unsigned busy;          /* workers running a request, those too */
	uint64_t queued;        /* requests waiting for a worker or arena */
	uint64_t submitted;
	uint64_t completed;
	uint64_t worker_deaths;
	uint64_t retries;
	size_t arena_size;
	size_t arena_used;
};

/*
 * aiod_pool_new - start a pool of workers.
 *
 * Creates the arena and spawns the workers (the program at the path
 * compiled in, or $AIOD_WORKER), then waits up to a few seconds for each
 * to report that it speaks this protocol version.  Workers inherit the
 * caller's working directory, umask and credentials, and nothing else:
 * no fds, no signal handlers, no signal mask; each runs in its own
 * process group, so a terminal's ^C does not reach it.  Create the pool
 * from a thread that lives as long as the pool: workers die with it.  A
 * process forked from the caller must not use the pool; a daemon forks
 * first, then creates its pool.
 *
 * With the workers comes the closer, a child named aiod-closer that
 * shares the caller's fd table (clone(2) with CLONE_FILES, nothing else
 * shared) and closes the caller's copies of AIOD_OP_CLOSE's fds, which
 * only a task sharing that table can.  Where it cannot be started, or
 * with $AIOD_NO_CLOSER set (valgrind cannot follow such a clone), the
 * caller closes them itself, and a flush may block it.  A caller that
 * calls unshare(CLONE_FILES) or execs leaves the closer its old table:
 * free the pool first.
 *
 * Returns 0 and sets *poolp, or -errno: -EINVAL for bad options, -ENOENT
 * or -EACCES if the worker cannot be run, -EPROTO if it speaks another
 * protocol version, -ETIMEDOUT if it does not answer.
 */
int aiod_pool_new(struct aiod_pool **poolp, const struct aiod_pool_opts *opts);

/*
 * aiod_worker_path - the program aiod_pool_new() would start as a worker
 * now: $AIOD_WORKER if set and not empty, else the path compiled in.
 * For messages, such as why a pool could not start.
 */
const char *aiod_worker_path(void);

/*
 * aiod_pool_free - stop the workers and free the pool.
 *
 * Requests still queued or running complete with -ECANCELED (their
 * callbacks run from here); then the workers are told to exit and are
 * waited for, a blocked one being killed after one second.  Must not be
 * called from a callback.
 */
void aiod_pool_free(struct aiod_pool *pool);

/*
 * aiod_pool_fd - the fd to watch: it is readable (POLLIN) when
 * aiod_pool_process() has work.  It stays the same for the pool's life.
 */
int aiod_pool_fd(const struct aiod_pool *pool);

/*
 * aiod_pool_process - run the callbacks of finished requests, without
 * blocking.  Also notices dead workers, replaces them, and dispatches
 * queued requests.  Returns the number of callbacks run, or -errno.
 */
int aiod_pool_process(struct aiod_pool *pool);

/*
 * aiod_pool_wait - block until at least one request finishes or
 * timeout_ms passes (-1: no limit), then process as aiod_pool_process().
 * Returns the number of callbacks run (0 on timeout or when nothing is
 * outstanding), or -errno.
 */
int aiod_pool_wait(struct aiod_pool *pool, int timeout_ms);

/*
 * aiod_submit - queue a request.  It is dispatched at once if a worker is
 * idle and the arena has room, otherwise when room frees up.  Its callback
 * runs later, never from aiod_submit() itself.
 *
 * Returns 0, or -EINVAL (unknown op or flags, more than AIOD_MAX_GROUPS
 * groups, no buf for data to send, or the request is already submitted),
 * -ENAMETOOLONG (a name of PATH_MAX bytes or more), -E2BIG (len over
 * AIOD_BUF_MAX, or more than the arena could ever hold) or -ESHUTDOWN
 * (the pool is being freed); then the callback never runs.
 */
int aiod_submit(struct aiod_pool *pool, struct aiod_req *req);

/*
 * aiod_cancel - ask for a submitted request to end early.
 *
 * A request still queued completes with -ECANCELED.  A request a worker
 * is running is interrupted: a blocking wait (FLOCK, LOCK with
 * F_OFD_SETLKW, NOP's sleep) ends with -EINTR; other syscalls are left to
 * finish.  Either way the callback runs once, later.
 * Returns 0, or -ENOENT if the request is not outstanding.
 */
int aiod_cancel(struct aiod_pool *pool, struct aiod_req *req);

/*
 * aiod_req_worker - the pid of the worker running req, or 0 if it is
 * queued or done.  For diagnostics (and tests that kill workers).
 */
pid_t aiod_req_worker(const struct aiod_req *req);

/*
 * aiod_buf_alloc - size bytes of arena memory, aligned to 4096 bytes, or
 * NULL if the arena has no room (or size is 0 or over AIOD_BUF_MAX).
 * Used as req->buf it spares a copy; it is also safe to keep across
 * requests.  Free it with aiod_buf_free() once no request uses it.
 */
void *aiod_buf_alloc(struct aiod_pool *pool, size_t size);

/* aiod_buf_free - return memory from aiod_buf_alloc(); NULL is ignored. */
void aiod_buf_free(struct aiod_pool *pool, void *buf);

/*
 * aiod_pool_resize - keep n workers (1 to AIOD_MAX_WORKERS) from now on.
 *
 * More: the new ones start at once (one that fails to start is retried
 * at the next event).  Fewer: idle workers beyond n exit now, busy ones
 * once their request is done; no request is failed, re-run or delayed
 * by it.  Returns 0, -EINVAL, -ESHUTDOWN after aiod_pool_free() began,
 * or -ENOMEM.
 */
int aiod_pool_resize(struct aiod_pool *pool, unsigned n);

/*
 * aiod_pool_share - add fd to the pool's shared fds (see
 * aiod_pool_opts.shared_fds) after the pool started: every worker gets a
 * copy before its next request.  For an fd that exists only later, such
 * as a FUSE session's, which a worker may then write replies to.
 * Returns 0, -EINVAL (a bad fd, or already shared), -ENOSPC (already
 * AIOD_MAX_SHARED_FDS) or -errno.
 */
int aiod_pool_share(struct aiod_pool *pool, int fd);

/*
 * aiod_pool_forget - the caller is about to close an fd it submitted
 * with AIOD_F_KEEP other than by an AIOD_OP_CLOSE (when that could not
 * be submitted): the pool's workers stop standing in for it, so that a
 * new file under the same number is not taken for the old one.  A
 * worker's copy may stay open until that worker fills its slot again.
 */
void aiod_pool_forget(struct aiod_pool *pool, int fd);

/*
 * aiod_pool_lazy - whether a worker that wrote its request's reply itself
 * (aiod_req.reply) may finish without waking the client: the request
 * then completes, its callback runs, only when the client next calls
 * aiod_pool_reap() (or the pool's fd wakes it for another reason).  For
 * a client whose callbacks for such requests only free memory, and
 * which calls aiod_pool_reap() each time it wakes: it saves a wake-up
 * per request.  Turning it off reaps at once.  While requests wait for a
 * worker, the pool rings regardless.  Default: off.
 */
void aiod_pool_lazy(struct aiod_pool *pool, bool on);

/*
 * aiod_pool_awake - whether the caller is awake: it will call
 * aiod_pool_reap() before it next blocks, so that a worker that
 * finishes a request returning no fd need not wake it (a send and a
 * receive per request fewer, while the caller is busy or polls).
 * Turning it off, right before blocking on the pool's fd, looks at the
 * workers once more: it returns the number of callbacks that ran, and
 * when that is not 0 the caller should look for work rather than block.
 * aiod_pool_wait() turns it off itself.  Default: off.
 */
int aiod_pool_awake(struct aiod_pool *pool, bool on);

/*
 * aiod_pool_hold_polls - while hold is true, no worker polls for the
 * next request (aiod_pool_opts.poll_us): the caller knows that its next
 * request is a while off, longer than a poll, as when it sleeps till
 * then itself.  A request then waits for no worker that is ending its
 * last one, either.  Default: false.
 */
void aiod_pool_hold_polls(struct aiod_pool *pool, bool hold);

/*
 * aiod_pool_reap - run the callbacks of requests that finished without
 * waking the client (see aiod_pool_lazy() and aiod_pool_awake()),
 * without blocking.  Returns their number.  aiod_pool_process() and
 * aiod_pool_wait() reap too.
 */
int aiod_pool_reap(struct aiod_pool *pool);

/*
 * aiod_pool_flushless - whether closing fd runs no flush: its
 * filesystem is one known to have none (ext2/3/4, XFS, tmpfs), where a
 * close pushes nothing and reports nothing, and so cannot block.  Looks
 * the mount up once (the pool keeps the last few), then costs a statx.
 */
bool aiod_pool_flushless(struct aiod_pool *pool, int fd);

/*
 * aiod_pool_close - close fd, which the caller gives up, without
 * blocking: the pool's closer (which shares the caller's fds) closes it,
 * or the caller, without one.  The closer gets the fds given since the
 * last time in one batch, at the caller's next aiod_pool_reap(),
 * aiod_pool_process() or aiod_pool_wait() (or aiod_pool_awake(p,
 * false)); those its pipe has no room for yet wait, and aiod_pool_fd()
 * turns readable when it has (aiod_pool_process() sends them then).  No
 * request, no callback; the number is free again once the closer has
 * closed it.  For an fd that is not a worker's (never submitted with
 * AIOD_F_KEEP) whose close has no flush to report (an O_PATH fd, a file
 * of aiod_pool_flushless()), but whose last close may still take long:
 * that of an unlinked file frees its blocks.  A file whose close must
 * end before the caller goes on (its locks, its flush) closes with
 * AIOD_OP_CLOSE instead.
 */
void aiod_pool_close(struct aiod_pool *pool, int fd);

/* aiod_pool_stats - fill *st.  Returns 0. */
int aiod_pool_stats(const struct aiod_pool *pool, struct aiod_pool_stats *st);

/* aiod_op_name - "pread" for AIOD_OP_PREAD, "?" for an unknown op. */
const char *aiod_op_name(unsigned op);

/* ------------------------------------------------------------------ */
/* Preparing requests                                                 */
/* ------------------------------------------------------------------ */

/*
 * aiod_prep - reset req for op: every input to its neutral value, fds to
 * -1.  Keeps nothing from an earlier use.  The other helpers call it.
 * Never on a request that is outstanding (submitted, callback not run).
 */
void aiod_prep(struct aiod_req *req, enum aiod_op op);

void aiod_prep_nop(struct aiod_req *req, unsigned delay_us);
void aiod_prep_lookup(struct aiod_req *req, int dirfd, const char *name);
void aiod_prep_statx(struct aiod_req *req, int dirfd, const char *name,
		     int flags, unsigned mask);
void aiod_prep_open(struct aiod_req *req, int dirfd, const char *name,
		    int flags, mode_t mode, uint64_t resolve);
void aiod_prep_open_by_handle(struct aiod_req *req, int mountfd,
			      const struct aiod_fh *fh, int flags);
void aiod_prep_close(struct aiod_req *req, int fd);
void aiod_prep_flush(struct aiod_req *req, int fd);
void aiod_prep_pread(struct aiod_req *req, int fd, void *buf, size_t len,
		     off_t off);
void aiod_prep_pwrite(struct aiod_req *req, int fd, const void *buf,
		      size_t len, off_t off);
void aiod_prep_pwrite_pipe(struct aiod_req *req, int fd, int pipe_fd,
			   size_t len, off_t off);
void aiod_prep_fsync(struct aiod_req *req, int fd, int datasync);
void aiod_prep_truncate(struct aiod_req *req, int dirfd, const char *name,
			off_t length);
void aiod_prep_fallocate(struct aiod_req *req, int fd, int mode, off_t off,
			 off_t len);
void aiod_prep_copy_file_range(struct aiod_req *req, int fd_in, off_t off_in,
			       int fd_out, off_t off_out, size_t len,
			       unsigned flags);
void aiod_prep_lseek(struct aiod_req *req, int fd, off_t off, int whence);
void aiod_prep_readdir(struct aiod_req *req, int dirfd, void *buf,
		       size_t len, off_t pos);
void aiod_prep_readdirplus(struct aiod_req *req, int dirfd, void *buf,
			   size_t len, off_t pos);
void aiod_prep_mkdir(struct aiod_req *req, int dirfd, const char *name,
		     mode_t mode);
void aiod_prep_mknod(struct aiod_req *req, int dirfd, const char *name,
		     mode_t mode, dev_t dev);
void aiod_prep_symlink(struct aiod_req *req, const char *target, int dirfd,
		       const char *name);
void aiod_prep_readlink(struct aiod_req *req, int dirfd, const char *name,
			void *buf, size_t len);
void aiod_prep_link(struct aiod_req *req, int olddirfd, const char *oldname,
		    int newdirfd, const char *newname, int flags);
void aiod_prep_unlink(struct aiod_req *req, int dirfd, const char *name);
void aiod_prep_rmdir(struct aiod_req *req, int dirfd, const char *name);
void aiod_prep_rename(struct aiod_req *req, int olddirfd, const char *oldname,
		      int newdirfd, const char *newname, unsigned flags);
void aiod_prep_chmod(struct aiod_req *req, int dirfd, const char *name,
		     mode_t mode, int flags);
void aiod_prep_chown(struct aiod_req *req, int dirfd, const char *name,
		     uid_t uid, gid_t gid, int flags);
void aiod_prep_utimens(struct aiod_req *req, int dirfd, const char *name,
		       const struct timespec times[2], int flags);
void aiod_prep_statfs(struct aiod_req *req, int dirfd, const char *name);
void aiod_prep_access(struct aiod_req *req, int dirfd, const char *name,
		      int mode, int flags);
void aiod_prep_getxattr(struct aiod_req *req, int dirfd, const char *name,
			const char *attr, void *buf, size_t len);
void aiod_prep_setxattr(struct aiod_req *req, int dirfd, const char *name,
			const char *attr, const void *value, size_t len,
			int flags);
void aiod_prep_listxattr(struct aiod_req *req, int dirfd, const char *name,
			 void *buf, size_t len);
void aiod_prep_removexattr(struct aiod_req *req, int dirfd, const char *name,
			   const char *attr);
void aiod_prep_flock(struct aiod_req *req, int fd, int operation);
void aiod_prep_lock(struct aiod_req *req, int fd, int cmd,
		    const struct aiod_lock *lk);
/* fa: what a SET command sets; NULL for a GET. */
void aiod_prep_fileattr(struct aiod_req *req, int fd, unsigned long cmd,
			const struct aiod_fileattr *fa);
/*
 * After aiod_prep_open(), _mkdir() or _mknod(): create under umask mask
 * (AIOD_F_UMASK).  Returns 0, or -EINVAL for another op.
 */
int aiod_prep_umask(struct aiod_req *req, mode_t mask);

#ifdef __cplusplus
}
#endif

#endif /* AIOD_H */
