/* SPDX-License-Identifier: MIT */
/*
 * aiodfs.h - what the parts of the daemon share.
 *
 * main.c   command line, options, detaching, mounting, the pool
 * loop.c   the one thread's epoll loop and the arena receive buffers
 * inode.c  the inode table: nodeids, (st_dev, st_ino), file handles
 * ops.c    one handler per FUSE operation, each a chain of aiod requests
 * stats.c  counters, the requests in flight, the slow-request watchdog
 * ctl.c    the control socket (aiodfsctl's other end)
 * ctlpath.c  where a mount's control socket lives (shared with aiodfsctl)
 *
 * Internal names carry the prefix afs_.
 */
#ifndef AIODFS_H
#define AIODFS_H

#define FUSE_USE_VERSION 314

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <syslog.h>

#include <fuse_lowlevel.h>

#include "aiod.h"
#include "ctlpath.h"

struct op;

enum afs_cache {
	AFS_CACHE_NEVER,
	AFS_CACHE_AUTO,
	AFS_CACHE_ALWAYS,
};

/* Options that shape the daemon's behaviour, after parsing. */
struct afs_opts {
	const char *source;         /* absolute path */
	unsigned workers;
	unsigned poll_us;           /* -o poll: the loop's and workers' */
	enum afs_cache cache;
	bool writeback;
	bool splice;                /* large writes' data through pipes */
	bool direct_io;
	bool inode_fds;             /* name inodes by fd even with handles */
	bool posix_locks;           /* fcntl locks reach the source */
	int passthrough;            /* AFS_PT_*: see passthrough.c */
	bool default_permissions;   /* the kernel checks permissions too */
	double attr_timeout;
	double entry_timeout;
	double negative_timeout;    /* for a name the source lacks */
	double slow;                /* -o slow: the watchdog's seconds, 0: off */
	unsigned read_now;          /* -o read_now: bytes; see read_now() */
	bool debug;
};

/*
 * A source object the kernel knows.  The nodeid the kernel holds is the
 * address of this struct (the root is FUSE_ROOT_ID).  It holds no fd
 * when the source gives file handles: requests name it by fh, and the
 * worker opens it for the one request.  Otherwise (no handles on that
 * filesystem, or no CAP_DAC_READ_SEARCH) it pins an O_PATH fd.
 */
struct afs_inode {
	struct afs_inode *hnext;    /* hash chain by (dev, ino) */
	uint64_t dev, ino;
	uint64_t birth;             /* btime in ns, 0 if unknown */
	uint64_t nlookup;           /* the kernel's references */
	unsigned users;             /* requests in flight using it */
	bool hashed;                /* reachable by (dev, ino) */
	mode_t type;                /* S_IFMT bits */
	int fd;                     /* pinned O_PATH fd, or -1 */
	int mount_fd;               /* with fh: the directory fh reopens
				       through (afs_mount_fd()) */
	int pathfd;                 /* an O_PATH fd the loop keeps for its
				       lookups and statx (afs_inode_loop_fd()),
				       or -1 */
	signed char local;          /* fd's source is local: 1, not: -1,
				       not asked yet: 0 */
	struct aiod_fh fh;          /* handle_bytes 0 when fd is used */
	struct afs_lock_owner *owners; /* -o posix_locks: see ops.c */
	int64_t nocaps_until;       /* ms: no security.capability till then */
	unsigned closing;           /* closes of its files in flight */
	uint64_t writes;            /* data-changing requests sent (flush);
				       of a directory, those that change
				       its entries (listing_ends()) */
	struct op *after_close;     /* lock requests waiting for those */
	struct op *writing;         /* its WRITEs in flight (ops.c, "Reads
				       after writes") */
	struct op *reads_waiting;   /* READs waiting for some of them */
	uint64_t wseq;              /* the number of its last WRITE */
	struct afs_file *open_file; /* the last opened of its files not yet
				       released, or NULL: setattr_obj() */
	int backing_id;             /* passthrough.c: the kernel's, or 0 */
	int backing_fd;             /* what backing_id was registered from */
	struct afs_file *backing_of; /* whose description that is, while open */
	unsigned pt_files;          /* its files open in passthrough */
	unsigned cached_files;      /* its regular files open without */
	bool pt_refused;            /* the kernel refused it a backing file */
	bool removed;               /* a directory removed through the mount
				       (removal_done() in ops.c) */
};

/* A FUSE open file or directory: one canonical open file description. */
struct afs_file {
	int fd;
	unsigned refs;              /* the open itself, plus requests */
	bool append;                /* fd is O_APPEND */
	bool released;              /* counted in in->closing already */
	bool backing;               /* open in passthrough (in->backing_id) */
	bool cached;                /* a regular file open without it: counted
				       in in->cached_files */
	bool direct;                /* opened O_DIRECT */
	int accmode;                /* O_RDONLY, O_WRONLY or O_RDWR */
	bool local;                 /* on a local source: set_file_traits() */
	bool worker_close;          /* a worker closes it (false only for a
				       local file: see file_close()) */
	unsigned uses;              /* requests that named its fd */
	bool nowait;                /* the loop may read it: see read_now() */
	uint64_t flushed;           /* in->writes at its open or last flush */
	int64_t end_off;            /* a directory: where its listing ends,
				       as of in->writes == end_writes, or -1 */
	uint64_t end_writes;
	uint64_t *offs;             /* a directory: the source's offset after
				       each position handed to the kernel
				       (see dir_pos_off() in ops.c) */
	uint32_t noffs, offs_cap;
	uint32_t listed;            /* entries handed since a listing from
				       the start began */
	uint32_t listed_whole;      /* ... in the last such to reach the end */
	struct afs_inode *in;       /* held; NULL till a create knows it */
};

/* The largest write request: a receive buffer (loop.c) holds one. */
#define MAX_WRITE (1u << 20)

/* The largest read the loop answers itself (-o read_now, read_now()). */
#define READ_NOW_MAX (1u << 20)
#define READ_NOW_DEFAULT (32u << 10)

/* The daemon's state; one per process. */
struct afs {
	struct afs_opts opt;
	struct fuse_session *se;
	struct aiod_pool *pool;
	int root_fd;                /* the source, O_RDONLY|O_DIRECTORY */
	int reply_fd;               /* the session fd workers reply to, or -1 */
	bool entry_out_full;        /* the kernel takes today's fuse_entry_out */
	bool dont_mask;             /* FUSE_CAP_DONT_MASK: see set_umask() */
	bool killpriv_v2;           /* FUSE_HANDLE_KILLPRIV_V2 (loop.c) */
	struct afs_inode root;
	int root_mount_id;
	bool use_handles;           /* the source's handles reopen */
	uid_t uid;                  /* the daemon's own */
	bool init_done;
	unsigned max_read;          /* the mount's, which init() repeats */
	unsigned max_write;         /* -o max_write (0: the loop's choice),
				       which init() offers */
	bool shared_unchecked;      /* allow_other without default_permissions,
				       credentials switched: see ops.c */
	const char *mountpoint;
};

extern struct afs afs;

/* The FUSE operations counted (stats.c names them). */
enum afs_opcode {
	AFS_OP_LOOKUP, AFS_OP_FORGET, AFS_OP_GETATTR, AFS_OP_SETATTR,
	AFS_OP_READLINK, AFS_OP_MKNOD, AFS_OP_MKDIR, AFS_OP_UNLINK,
	AFS_OP_RMDIR, AFS_OP_SYMLINK, AFS_OP_RENAME, AFS_OP_LINK,
	AFS_OP_OPEN, AFS_OP_READ, AFS_OP_WRITE, AFS_OP_FLUSH,
	AFS_OP_RELEASE, AFS_OP_FSYNC, AFS_OP_OPENDIR, AFS_OP_READDIR,
	AFS_OP_READDIRPLUS, AFS_OP_RELEASEDIR, AFS_OP_FSYNCDIR,
	AFS_OP_STATFS, AFS_OP_SETXATTR, AFS_OP_GETXATTR, AFS_OP_LISTXATTR,
	AFS_OP_REMOVEXATTR, AFS_OP_ACCESS, AFS_OP_CREATE, AFS_OP_GETLK,
	AFS_OP_SETLK, AFS_OP_FLOCK, AFS_OP_FALLOCATE, AFS_OP_COPY_FILE_RANGE,
	AFS_OP_LSEEK, AFS_OP_IOCTL,
	AFS_OP__COUNT
};

/*
 * A kernel request being served (one per op of ops.c): what it is,
 * since when, and, from its first aiod request on, on stats.c's live
 * list.
 */
struct afs_live {
	struct afs_live *prev, *next;
	int64_t start_ns;
	int64_t end_ns;             /* when it was answered; 0: at its end */
	uint8_t opcode;
	bool slow_logged;           /* the watchdog has told */
	uint64_t ino;               /* the source's, 0: none */
	const char *name;           /* under ino, or NULL */
	const struct aiod_req *req; /* says which worker holds it; NULL:
				       not on the list */
};

/* A growing text buffer. */
struct afs_buf {
	char *data;
	size_t len, size;
};

/* stats.c */
int64_t afs_now_ns(void);
const char *afs_op_name(int opcode);
void afs_stats_init(void);
/* A request answered without an op (start_ns 0: no latency to count). */
void afs_stats_count(int opcode, int err, int64_t start_ns);
void afs_stats_bytes(uint64_t read, uint64_t written, bool spliced);
void afs_stats_by_loop(int opcode);
void afs_stats_read_waited(void);
/* l (opcode, start_ns set) goes on the live list; req is its request. */
void afs_live_link(struct afs_live *l, const struct aiod_req *req);
/* l was answered with err (0: success): counted, and off the list. */
void afs_live_end(struct afs_live *l, int err);
/* Log slow requests; ms until it should look again, -1: no need. */
int afs_stats_watch(void);
void afs_stats_render(struct afs_buf *b, bool json);

/* ctl.c */
int afs_ctl_open(void);             /* the listening fd, or -errno */
const char *afs_ctl_socket(void);   /* its path, NULL if none */
void afs_ctl_accept(void);
void afs_ctl_event(unsigned slot, uint32_t events);
void afs_ctl_close(void);
#define AFS_CTL_MAX_CONNS 16

/* main.c: a line to stderr in the foreground, to syslog once detached;
   LOG_DEBUG only under -d. */
void afs_log(int prio, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
bool afs_is_fuse_mount(int id);
int afs_mount_dev(const char *mnt, char *dev, size_t n);

/* inode.c */
struct afs_inode *afs_inode_get(fuse_ino_t nodeid);
int afs_inode_loop_fd(struct afs_inode *in);
bool afs_inode_wants_fd(struct afs_inode *in);
bool afs_inode_keep_fd(struct afs_inode *in, int fd);
void afs_inode_drop_fd(struct afs_inode *in);
void afs_inode_learn_dir(struct afs_inode *dir, const char *name,
			 struct afs_inode *in, int *fd);
int afs_inode_init_root(void);
struct afs_inode *afs_inode_find(const struct statx *stx,
				 const struct aiod_fh *fh);
int afs_mount_fd(int mount_id);
void afs_mount_learn(struct afs_inode *dir, int mount_id);
struct afs_inode *afs_inode_new(const struct statx *stx,
				const struct aiod_fh *fh, int mount_id, int fd);
void afs_inode_hold(struct afs_inode *in);
void afs_inode_put(struct afs_inode *in);
void afs_inode_forget(struct afs_inode *in, uint64_t n);
void afs_inode_counts(unsigned *inodes, unsigned *fds);
uint64_t afs_ino_of(uint64_t dev, uint64_t ino);
void afs_inode_set_obj(struct aiod_req *req, int i, struct afs_inode *in);
void afs_close_async(int fd, struct afs_inode *in);
void afs_close_path(int fd);
void afs_unlock_async(int fd, struct afs_inode *in);

/* passthrough.c */

/* Which opens get passthrough (afs_opts.passthrough). */
enum {
	AFS_PT_NONE,                /* -o nopassthrough, writeback, direct_io */
	AFS_PT_ALL,                 /* -o passthrough: every regular file */
	AFS_PT_DIRECT,              /* the default: O_DIRECT opens */
};
struct fuse_init_out;
struct fuse_open_out;
/* INIT: accept passthrough into out if asked for and offered. */
void afs_pt_negotiate(uint32_t in_flags, uint32_t in_flags2,
		      struct fuse_init_out *out);
bool afs_pt_enabled(void);
/* f (of a known inode) opens in passthrough: its backing id, or 0: not. */
int afs_pt_attach(struct afs_file *f);
/* f's passthrough ends (released, with or without a flock to drop, or
 * its open reply not taken). */
void afs_pt_detach(struct afs_file *f, bool flock_release);
/* The open reply out names backing_id. */
void afs_pt_amend_open(struct fuse_open_out *out, int backing_id);
void afs_pt_counts(unsigned *files, unsigned *inodes);

/* ops.c */
void afs_file_put(struct afs_file *f);
unsigned afs_files_open(void);
extern const struct fuse_lowlevel_ops afs_ops;
/* Parked lock waits: ms until one is due (-1: none), run those due, end all. */
int afs_ops_timeout(void);
void afs_ops_tick(void);
void afs_ops_shutdown(void);
void afs_lock_owners_free(struct afs_inode *in);
/* The closes in flight on in are done: run the lock requests waiting. */
void afs_ops_closes_done(struct afs_inode *in);
/* Resize the pool (the control socket's "workers N"); 0 or -errno. */
int afs_resize_pool(unsigned n);
bool afs_ops_waiting(void);

/* loop.c: its epoll set's tags (data.u32) */
enum {
	AFS_EV_FUSE = 1, AFS_EV_POOL, AFS_EV_SIGNAL, AFS_EV_CTL,
	AFS_EV_CTL_CONN         /* + the connection's slot */
};
int afs_loop_watch(int fd, uint32_t events, uint32_t tag);
int afs_loop_rewatch(int fd, uint32_t events, uint32_t tag);
int afs_loop_run(void);
/* The longest -o poll, and the most the loop stretches its window to. */
#define AFS_POLL_MAX_US 10000u
/* How long (µs) the loop polls before it sleeps now; 0: never. */
unsigned afs_loop_poll_window(void);
/* How many times the loop has begun to poll (aiodfsctl stats). */
uint64_t afs_loop_polls(void);
int afs_loop_init_session(void);
bool afs_loop_adopt(const void *buf, size_t len, void **token);
int afs_loop_take_pipe(void **token);
void afs_loop_put_pipe(void *token);
void afs_loop_splice_setup(void);
void afs_loop_release(void *token);
/* The next OPEN or CREATE reply sent names backing_id (0: none). */
void afs_loop_backing_next(int backing_id);
bool afs_loop_unique(uint64_t *unique);
/* The GETATTR being processed came as FUSE_STATX: answer a fuse_statx_out. */
bool afs_loop_statx(void);

#endif /* AIODFS_H */
