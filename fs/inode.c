/* SPDX-License-Identifier: MIT */
/*
 * inode.c - the objects of the source the kernel knows.
 *
 * The kernel names an object by a nodeid, which here is the address of
 * its struct afs_inode.  One struct per source object, found by the
 * source's (st_dev, st_ino), so that hard links share one inode, and
 * st_ino is the source's own (but on other filesystems mounted inside
 * the source: afs_ino_of()).  A struct lives while the kernel holds a
 * lookup reference on it (nlookup) or a request uses it (users); it
 * needs no fd when the source gives file handles, so any number of known
 * inodes costs a bounded number of fds (RLIMIT_NOFILE is far smaller
 * than a tree): those kept for the loop's own requests, max_pathfds(),
 * and one directory per filesystem mounted inside the source, which its
 * objects' handles reopen through (afs_mount_learn()).
 *
 * An inode number can be reused once its file is deleted, while the
 * kernel still knows the old object.  So a match on (st_dev, st_ino) also
 * needs the same file handle (which carries the generation) or, without
 * handles, the same birth time; otherwise the old struct is unhashed and
 * lives on, unreachable by lookup, until the kernel forgets it.
 */
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <string.h>
#include <unistd.h>

#include "aiodfs.h"

static struct afs_inode **table;
static size_t table_size;          /* a power of two */
static size_t count;
static unsigned nlive;             /* inodes alloc'd, not freed: no root */
static unsigned nfds;              /* of those, how many pin an fd */

static size_t slot(uint64_t dev, uint64_t ino)
{
	uint64_t h = (ino ^ (dev << 32) ^ (dev >> 32)) * 0x9e3779b97f4a7c15ull;

	return (size_t)(h >> 32) & (table_size - 1);
}

static void unhash(struct afs_inode *in)
{
	struct afs_inode **pp = &table[slot(in->dev, in->ino)];

	if (!in->hashed)
		return;
	while (*pp != in)
		pp = &(*pp)->hnext;
	*pp = in->hnext;
	in->hashed = false;
	count--;
}

static int grow(void)
{
	size_t old_size = table_size, new_size = old_size ? old_size * 2 : 1024;
	struct afs_inode **old = table, **t = calloc(new_size, sizeof(*t));

	if (!t)
		return -1;
	table = t;
	table_size = new_size;
	for (size_t i = 0; i < old_size; i++) {
		struct afs_inode *in = old[i], *next;

		for (; in; in = next) {
			size_t s = slot(in->dev, in->ino);

			next = in->hnext;
			in->hnext = table[s];
			table[s] = in;
		}
	}
	free(old);
	return 0;
}

static uint64_t birth_of(const struct statx *stx)
{
	if (!(stx->stx_mask & STATX_BTIME))
		return 0;
	return (uint64_t)stx->stx_btime.tv_sec * 1000000000u +
	       stx->stx_btime.tv_nsec;
}

static uint64_t dev_of(const struct statx *stx)
{
	return makedev(stx->stx_dev_major, stx->stx_dev_minor);
}

/*
 * The inode number the mount shows for the source's object (dev, ino).
 * The mount is one filesystem, one st_dev, to its users, while the
 * source's numbers are unique only within each of its filesystems:
 * where SOURCE holds other mounts (disks mounted under it, each with
 * its own root at 2 and its files from 12 on), two objects would show
 * one st_ino, and programs would take them for links of one file (cp
 * refuses to copy a file onto itself, du counts it once, tar and
 * rsync -H link the two).  So an object on the root's filesystem keeps
 * its number, and one on another shows its number with the top 24 bits
 * mixed with a hash of its device (splitmix64's finalizer), the top bit
 * set: unlike any number the root's filesystem gives below 2^63, and
 * unlike another filesystem's where both numbers fit in 40 bits and the
 * two hashes differ in their 23 bits.  The same for as long as the
 * source's devices keep their numbers.
 */
uint64_t afs_ino_of(uint64_t dev, uint64_t ino)
{
	uint64_t h = dev;

	if (dev == afs.root.dev)
		return ino;
	h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
	h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
	h ^= h >> 31;
	return ino ^ ((h | 1ull << 63) & ~((1ull << 40) - 1));
}

struct afs_inode *afs_inode_get(fuse_ino_t nodeid)
{
	if (nodeid == FUSE_ROOT_ID)
		return &afs.root;
	return (struct afs_inode *)(uintptr_t)nodeid;
}

static bool same_fh(const struct aiod_fh *a, const struct aiod_fh *b)
{
	return a->handle_bytes == b->handle_bytes &&
	       a->handle_type == b->handle_type &&
	       !memcmp(a->f_handle, b->f_handle, a->handle_bytes);
}

struct afs_inode *afs_inode_find(const struct statx *stx,
				 const struct aiod_fh *fh)
{
	uint64_t dev = dev_of(stx), ino = stx->stx_ino;
	struct afs_inode *in;

	if (!table_size)
		return NULL;
	for (in = table[slot(dev, ino)]; in; in = in->hnext)
		if (in->dev == dev && in->ino == ino)
			break;
	if (!in || in == &afs.root)
		return in;
	if (in->fh.handle_bytes && fh && fh->handle_bytes ? same_fh(&in->fh, fh)
	    : in->birth == birth_of(stx))
		return in;
	/* The number was reused: the kernel's old object is another. */
	unhash(in);
	return NULL;
}

static void insert(struct afs_inode *in)
{
	size_t s;

	if (count + 1 > table_size / 2 * 3 && grow() < 0 && !table_size)
		return; /* not findable; still correct, just not shared */
	s = slot(in->dev, in->ino);
	in->hnext = table[s];
	table[s] = in;
	in->hashed = true;
	count++;
}

/*
 * A new inode for the object stx describes, named by fh (when the
 * source's handles are in use and fh is on mount mount_id, whose
 * afs_mount_fd() it reopens through) or by fd, which it then owns.
 * Returns NULL when out of memory.
 */
struct afs_inode *afs_inode_new(const struct statx *stx,
				const struct aiod_fh *fh, int mount_id, int fd)
{
	struct afs_inode *in = calloc(1, sizeof(*in));

	if (!in)
		return NULL;
	in->dev = dev_of(stx);
	in->ino = stx->stx_ino;
	in->birth = birth_of(stx);
	in->type = stx->stx_mode & S_IFMT;
	in->fd = fd;
	in->pathfd = -1;
	in->mount_fd = -1;
	if (fd < 0) {
		in->fh = *fh;
		in->mount_fd = afs_mount_fd(mount_id);
	} else {
		nfds++;
	}
	insert(in);
	nlive++;
	return in;
}

/*
 * Lookups and statx the loop runs itself (lookup_now() and getattr_now()
 * in ops.c) need an fd of the object.  The root has one and, without
 * handles, every inode pins one; with handles a known object may hold an
 * O_PATH fd of its own: a directory from right after its lookup or
 * creation, anything else from its first GETATTR, which a worker answers
 * with one (afs_inode_wants_fd()).  At most max_pathfds() directories
 * and as many other objects hold one (files never crowd directories
 * out); beyond that an object's requests go to workers, as before.  The
 * fd goes when the kernel forgets the inode.
 */
#define MAX_PATHFDS 1024
static unsigned npathfds[2]; /* [0]: directories, [1]: the rest */

/* Inodes known (the root aside), and the fds they pin. */
void afs_inode_counts(unsigned *inodes, unsigned *fds)
{
	*inodes = nlive;
	*fds = nfds + npathfds[0] + npathfds[1];
}

/* At most MAX_PATHFDS, and an eighth of the fds the daemon may open. */
static unsigned max_pathfds(void)
{
	static unsigned max;
	struct rlimit r;

	if (!max)
		max = getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur / 8 < MAX_PATHFDS
			      ? (unsigned)(r.rlim_cur / 8) + 1
			      : MAX_PATHFDS;
	return max;
}

static unsigned *npathfds_of(const struct afs_inode *in)
{
	return &npathfds[in->type != S_IFDIR];
}

/*
 * An fd of in the loop may look names up under (a directory) or statx,
 * or -1: one that exists, on a local source (the list of
 * aiod_pool_flushless()), whose cached names and inodes never wait for
 * a server.
 */
int afs_inode_loop_fd(struct afs_inode *in)
{
	int fd = in->fd >= 0 ? in->fd : in->pathfd;

	if (fd < 0)
		return -1;
	if (!in->local)
		in->local = aiod_pool_flushless(afs.pool, fd) ? 1 : -1;
	return in->local > 0 ? fd : -1;
}

/*
 * Whether in, named by handle on the root's filesystem, lacks an fd the
 * loop could use and may have one: the root's source is local and the
 * budget allows.
 */
bool afs_inode_wants_fd(struct afs_inode *in)
{
	return in->fd < 0 && in->pathfd < 0 && *npathfds_of(in) < max_pathfds() &&
	       afs_inode_loop_fd(&afs.root) >= 0;
}

/* in keeps fd, an O_PATH fd of it, if it has none and the budget allows. */
bool afs_inode_keep_fd(struct afs_inode *in, int fd)
{
	unsigned *n = npathfds_of(in);

	if (in->fd >= 0 || in->pathfd >= 0 || *n >= max_pathfds())
		return false;
	in->pathfd = fd;
	++*n;
	return true;
}

/* in gives up its O_PATH fd, if it has one. */
void afs_inode_drop_fd(struct afs_inode *in)
{
	if (in->pathfd < 0)
		return;
	afs_close_path(in->pathfd);
	in->pathfd = -1;
	--*npathfds_of(in);
}

/*
 * in was just named name in directory dir.  If it is a directory, it
 * keeps *fd, an O_PATH fd of it the caller holds (*fd becomes -1), or
 * else gets one, opened from the kernel's cache alone (RESOLVE_CACHED:
 * the name was just looked up), if it is still the same object (its
 * inode number and, where the source keeps one, its birth time: not a
 * directory made since under a number just freed).
 */
void afs_inode_learn_dir(struct afs_inode *dir, const char *name,
			 struct afs_inode *in, int *fd)
{
	struct open_how how = {
		.flags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_CACHED,
	};
	struct statx stx;
	int dfd, nfd;

	if (in->type != S_IFDIR || in->fd >= 0 || in->pathfd >= 0 ||
	    *npathfds_of(in) >= max_pathfds())
		return;
	if (*fd >= 0) {
		afs_inode_keep_fd(in, *fd);
		*fd = -1;
		return;
	}
	if (!name || (dfd = afs_inode_loop_fd(dir)) < 0)
		return;
	nfd = (int)syscall(SYS_openat2, dfd, name, &how, sizeof(how));
	if (nfd < 0)
		return;
	if (statx(nfd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC,
		  STATX_INO | STATX_BTIME, &stx) < 0 ||
	    dev_of(&stx) != in->dev || stx.stx_ino != in->ino ||
	    (in->birth && birth_of(&stx) != in->birth)) {
		afs_close_path(nfd);
		return;
	}
	afs_inode_keep_fd(in, nfd);
}

int afs_inode_init_root(void)
{
	afs.root.fd = afs.root_fd;
	afs.root.pathfd = -1;
	afs.root.type = S_IFDIR;
	afs.root.nlookup = 1;
	return 0;
}

/* Called once the root's identity is known, to find it by (dev, ino). */
static void free_inode(struct afs_inode *in)
{
	unhash(in);
	afs_lock_owners_free(in);
	if (in->fd >= 0) {
		afs_close_path(in->fd);
		nfds--;
	}
	afs_inode_drop_fd(in);
	nlive--;
	free(in);
}

void afs_inode_hold(struct afs_inode *in)
{
	in->users++;
}

void afs_inode_put(struct afs_inode *in)
{
	if (--in->users == 0 && in->nlookup == 0 && in != &afs.root)
		free_inode(in);
}

void afs_inode_forget(struct afs_inode *in, uint64_t n)
{
	if (in == &afs.root)
		return;
	in->nlookup = n < in->nlookup ? in->nlookup - n : 0;
	if (in->nlookup == 0 && in->users == 0)
		free_inode(in);
}

/*
 * Make in the object of req's slot i: by handle, or by its pinned fd.
 * A directory removed through the mount while the kernel still knows
 * it (some process's cwd) no longer opens by handle: the source keeps
 * it only for the fd its rmdir held (ops.c, removal_done()), which it
 * keeps till the kernel forgets it, and by which it is then named, so
 * that it is what it is on the source: empty, with no links, its
 * attributes and xattrs still there.
 */
void afs_inode_set_obj(struct aiod_req *req, int i, struct afs_inode *in)
{
	int fd = in->fd >= 0 ? in->fd : in->removed ? in->pathfd : -1;

	if (fd >= 0) {
		req->fd[i] = fd;
		req->fh_in[i] = NULL;
	} else {
		req->fd[i] = in->mount_fd;
		req->fh_in[i] = &in->fh;
	}
}

/*
 * Filesystems mounted inside the source.  A handle reopens its object
 * through any open directory of the object's mount (open_by_handle_at's
 * mount fd), so the root's fd serves the root's mount only; an object
 * of another mount would pin an fd of its own, and a tree of more
 * objects than the daemon may hold fds (RLIMIT_NOFILE) could not be
 * walked.  So the first directory of another mount a lookup finds, its
 * root, pinned as any object without a usable handle, is opened once
 * more as that mount's directory (afs_mount_learn()), and once its
 * handle is seen to reopen it there, the mount's objects are named by
 * handle through it, as the root's are (afs_mount_fd()).  At most
 * MAX_MOUNTS mounts; beyond, and on a FUSE mount (whose handles may not
 * reopen), objects pin fds as before.  The directories stay open while
 * the daemon runs, shared with the workers while the pool has room (so
 * that mount cannot be unmounted but lazily before ours is, as any of
 * its inodes the kernel knew kept it before).
 */
#define MAX_MOUNTS 64

static struct mount {
	int id;
	int fd;                     /* -1: being learnt, or no handles */
} mounts[MAX_MOUNTS];
static unsigned nmounts;

static struct mount *mount_of(int id)
{
	for (unsigned i = 0; i < nmounts; i++)
		if (mounts[i].id == id)
			return &mounts[i];
	return NULL;
}

/* The directory a handle of mount mount_id reopens through, or -1. */
int afs_mount_fd(int mount_id)
{
	struct mount *m;

	if (mount_id == afs.root_mount_id)
		return afs.root_fd;
	m = mount_of(mount_id);
	return m ? m->fd : -1;
}

struct learning {
	struct aiod_req req;        /* first: the callback gets its address */
	int id;                     /* the mount's */
	struct afs_inode *dir;      /* held till the open is done */
	struct aiod_fh fh;          /* the directory's, as opened */
	int fd;                     /* the directory, opened to read */
};

/*
 * The learning of mount id ends: with fd, its directory, or with -1
 * (not now: a later directory of it may try again).
 */
static void learnt_as(struct learning *l, int fd)
{
	struct mount *m = mount_of(l->id);

	if (fd >= 0) {
		m->fd = fd;
		(void)aiod_pool_share(afs.pool, fd); /* else passed each time */
	} else {
		*m = mounts[--nmounts];
	}
	free(l);
}

static void learnt(struct aiod_req *req)
{
	struct learning *l = (struct learning *)req;

	if (req->result == 0) {
		afs_close_path(req->ret_fd);
		learnt_as(l, l->fd);
		return;
	}
	afs_close_path(l->fd);
	learnt_as(l, -1);
}

static void mount_opened(struct aiod_req *req)
{
	struct learning *l = (struct learning *)req;

	afs_inode_put(l->dir);
	if (req->result < 0) {
		learnt_as(l, -1);
		return;
	}
	l->fd = req->ret_fd;
	/* Another mount's by now (replaced, or a bind of it): not this one. */
	if (req->mount_id != l->id || !req->fh.handle_bytes) {
		afs_close_path(l->fd);
		learnt_as(l, -1);
		return;
	}
	l->fh = req->fh;
	aiod_prep_open_by_handle(req, l->fd, &l->fh, O_PATH);
	req->cb = learnt;
	if (aiod_submit(afs.pool, req) < 0) {
		afs_close_path(l->fd);
		learnt_as(l, -1);
	}
}

/*
 * dir, a directory of mount mount_id, was just pinned: if that mount is
 * new, learn it, in the background.  A FUSE mount (or one that cannot
 * be told from one) is marked as without handles for good.
 */
void afs_mount_learn(struct afs_inode *dir, int mount_id)
{
	struct learning *l;

	if (!afs.use_handles || dir->type != S_IFDIR || dir->fd < 0 ||
	    afs_mount_fd(mount_id) >= 0 || mount_of(mount_id) ||
	    nmounts == MAX_MOUNTS)
		return;
	mounts[nmounts++] = (struct mount){ .id = mount_id, .fd = -1 };
	if (afs_is_fuse_mount(mount_id))
		return;
	l = calloc(1, sizeof(*l));
	if (!l) {
		nmounts--;
		return;
	}
	l->id = mount_id;
	l->dir = dir;
	afs_inode_hold(dir); /* its fd must live till the open is sent */
	aiod_prep_open(&l->req, dir->fd, ".", O_RDONLY | O_DIRECTORY, 0, 0);
	l->req.flags = AIOD_F_LOOKUP;
	l->req.cb = mount_opened;
	if (aiod_submit(afs.pool, &l->req) < 0) {
		afs_inode_put(dir);
		learnt_as(l, -1);
	}
}

struct closing {
	struct aiod_req req;        /* first: the callback gets its address */
	struct afs_inode *in;
};

static void closes_done(struct afs_inode *in)
{
	if (!in)
		return;
	in->closing--;
	afs_ops_closes_done(in);
	afs_inode_put(in);
}

static void closed(struct aiod_req *req)
{
	struct closing *c = (struct closing *)req;
	struct afs_inode *in = c->in;

	free(c);
	closes_done(in);
}

/*
 * Run c's request on fd in a worker; with in, counted in in->closing
 * (whose hold passes to it) until it is done.  Returns false if it could
 * not be submitted: then the caller finishes it and calls closes_done().
 */
static bool submit_closing(struct closing *c, struct afs_inode *in)
{
	if (in)
		in->closing++;
	if (!c)
		return false;
	c->req.cb = closed;
	c->in = in;
	if (aiod_submit(afs.pool, &c->req) == 0)
		return true;
	free(c);
	return false;
}

/*
 * Close an O_PATH fd of ours: it has no flush, but the last close of an
 * object unlinked meanwhile frees it (an ext4 file's blocks), so the
 * pool's closer runs it (aiod_pool_close()), not the loop, and without
 * a worker's round trip.
 */
void afs_close_path(int fd)
{
	if (afs.pool)
		aiod_pool_close(afs.pool, fd);
	else
		close(fd);
}

/*
 * Close fd in a worker: the last close of a file can block (NFS flushes
 * on close), so it never runs in the loop.  With in, the inode of an
 * open file (whose hold passes to the close), lock requests on in wait
 * until it is done: see "Closing a file drops its locks" in ops.c.
 */
void afs_close_async(int fd, struct afs_inode *in)
{
	struct closing *c = malloc(sizeof(*c));

	if (c)
		aiod_prep_close(&c->req, fd);
	if (submit_closing(c, in))
		return;
	/* Shutting down, or no memory: better late than leaked. */
	aiod_pool_forget(afs.pool, fd);
	close(fd);
	closes_done(in);
}

/*
 * Drop the flock on fd's open file description in a worker (on NFS an
 * unlock is a round trip), as a close of in's would: lock requests on in
 * wait for it (in's hold passes to it).  If it cannot be submitted, the
 * lock stays until the description's last close.
 */
void afs_unlock_async(int fd, struct afs_inode *in)
{
	struct closing *c = malloc(sizeof(*c));

	if (c)
		aiod_prep_flock(&c->req, fd, LOCK_UN);
	if (!submit_closing(c, in))
		closes_done(in);
}
