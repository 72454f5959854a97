/* SPDX-License-Identifier: MIT */
/*
 * aiodfs.h - what the parts of the daemon share.
 *
 * main.c   command line, options, detaching, mounting, the pool
 * loop.c   the one thread's epoll loop and the arena receive buffers
 * inode.c  the inode table: nodeids, (st_dev, st_ino), file handles
 * ops.c    one handler per FUSE operation, each a chain of aiod requests
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
	bool direct_io;
	bool inode_fds;             /* name inodes by fd even with handles */
	bool posix_locks;           /* fcntl locks reach the source */
	bool default_permissions;   /* the kernel checks permissions too */
	double attr_timeout;
	double entry_timeout;
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
	struct aiod_fh fh;          /* handle_bytes 0 when fd is used */
	struct afs_lock_owner *owners; /* -o posix_locks: see ops.c */
	int64_t nocaps_until;       /* ms: no security.capability till then */
	unsigned closing;           /* closes of its files in flight */
	struct op *after_close;     /* lock requests waiting for those */
};

/* A FUSE open file or directory: one canonical open file description. */
struct afs_file {
	int fd;
	unsigned refs;              /* the open itself, plus requests */
	bool append;                /* fd is O_APPEND */
	int accmode;                /* O_RDONLY, O_WRONLY or O_RDWR */
	struct afs_inode *in;       /* held; NULL till a create knows it */
};

/* The daemon's state; one per process. */
struct afs {
	struct afs_opts opt;
	struct fuse_session *se;
	struct aiod_pool *pool;
	int root_fd;                /* the source, O_RDONLY|O_DIRECTORY */
	struct afs_inode root;
	int root_mount_id;
	bool use_handles;           /* the source's handles reopen */
	uid_t uid;                  /* the daemon's own */
	bool init_done;
	unsigned max_read;          /* the mount's, which init() repeats */
	bool shared_unchecked;      /* allow_other without default_permissions,
				       credentials switched: see ops.c */
	const char *mountpoint;
};

extern struct afs afs;

/* main.c: a line to stderr in the foreground, to syslog once detached. */
void afs_log(int prio, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* inode.c */
struct afs_inode *afs_inode_get(fuse_ino_t nodeid);
int afs_inode_init_root(void);
struct afs_inode *afs_inode_find(const struct statx *stx,
				 const struct aiod_fh *fh);
struct afs_inode *afs_inode_new(const struct statx *stx,
				const struct aiod_fh *fh, int fd);
void afs_inode_hold(struct afs_inode *in);
void afs_inode_put(struct afs_inode *in);
void afs_inode_forget(struct afs_inode *in, uint64_t n);
void afs_inode_set_obj(struct aiod_req *req, int i, struct afs_inode *in);
void afs_close_async(int fd);

/* ops.c */
void afs_file_put(struct afs_file *f);
extern const struct fuse_lowlevel_ops afs_ops;
/* Parked lock waits: ms until one is due (-1: none), run those due, end all. */
int afs_ops_timeout(void);
void afs_ops_tick(void);
void afs_ops_shutdown(void);
void afs_lock_owners_free(struct afs_inode *in);

/* loop.c */
int afs_loop_run(void);
int afs_loop_init_session(void);
bool afs_loop_adopt(const void *buf, size_t len, void **token);
void afs_loop_release(void *token);

#endif /* AIODFS_H */
