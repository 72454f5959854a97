/* SPDX-License-Identifier: MIT */
/*
 * passthrough.c - -o passthrough: the kernel reads and writes open
 * regular files itself, straight on the source file, and neither the
 * loop nor a worker sees those requests (FUSE passthrough, Linux 6.9 on).
 * By default, only files opened O_DIRECT (see starts_backing()).
 *
 * Everything else stays as it was: lookups, attributes, opens and
 * closes, fsync, locks, fallocate and the rest are still aiod requests.
 * An open regular file's data never passes through the daemon, and
 * needs no wake-up of it: the caller's thread does the source's I/O as
 * if it had opened the source file, so a slow source blocks the caller,
 * never the loop, as before.  What is given up is what the daemon did
 * on the data path: its 1 MiB read-ahead through the workers (a slow
 * source reads as fast as natively, not faster) and the kernel's FUSE
 * page cache (the source's page cache serves instead).
 *
 * How: the kernel offers FUSE_PASSTHROUGH in INIT; the loop's INIT
 * amendment (loop.c) accepts it, with a stacking depth of 1 (the source
 * must not itself be a stacking filesystem such as overlayfs; a FUSE
 * source without passthrough is fine).  The kernel insists that every
 * open of an inode in passthrough uses the same backing file, so a
 * backing file belongs to the inode: when the first open or create of a
 * regular file is answered, the loop registers a dup of its fd with the
 * kernel (FUSE_DEV_IOC_BACKING_OPEN; neither blocks; the ioctl needs
 * CAP_SYS_ADMIN), and each open reply of the inode names the backing
 * id with FOPEN_PASSTHROUGH (loop.c amends what libfuse wrote).  The
 * kernel opens a file of its own on the backing file's path, with the
 * caller's open flags and the credentials the backing file was
 * registered with, after the worker's open checked the caller's.  The
 * id is given back (FUSE_DEV_IOC_BACKING_CLOSE) when the inode's last
 * such file is released, and the dup closed in a worker.
 *
 * The registered description is the first opener's, and outlives that
 * file while other opens of the inode keep the backing file: a flock on
 * it would outlive the close that must drop it, so when that file is
 * released with a flock (the kernel says so), the flock is undone
 * through the dup, in a worker, before lock requests on the inode go on.
 *
 * Those credentials are the daemon's, less CAP_FSETID (dropped from the
 * effective set around the ioctl): a write through the backing file
 * then drops set-user-ID and set-group-ID bits as an unprivileged
 * writer's does.  With CAP_FSETID, a write by anyone would keep them,
 * so a user could rewrite a set-user-ID program they may write to and
 * keep its bit.  The price: root's writes drop them too, where on the
 * source directly they would not.
 * Otherwise they are root's: any writer may use the blocks the
 * source reserves for root and pass their quota, so by default (main.c)
 * there is no passthrough on a mount other users reach (allow_other).
 *
 * Not with -o writeback (the kernel refuses the pair) or -o direct_io
 * (which asks for the daemon on the data path).  When the kernel does
 * not offer passthrough, or refuses a backing file for lack of
 * privilege, the daemon says so once and serves reads and writes itself.
 * A file the kernel refuses for other reasons (a stacked source) is
 * served by the daemon too, as are then the inode's later opens.
 *
 * The kernel ABI names below are Linux's (uapi fuse.h, protocol 7.40);
 * Debian 12's headers predate them.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/fuse.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "aiodfs.h"

#define INIT2_PASSTHROUGH (1u << 5)    /* FUSE_PASSTHROUGH: bit 37 of flags */
#define OPEN_PASSTHROUGH (1u << 7)     /* FOPEN_PASSTHROUGH */
/*
 * The open flags the kernel takes with it (FOPEN_PASSTHROUGH_MASK): with
 * any other, FOPEN_KEEP_CACHE of -o cache=always say, it fails the open
 * with EIO.  DIRECT_IO, NOFLUSH, PARALLEL_DIRECT_WRITES, PASSTHROUGH.
 */
#define OPEN_PASSTHROUGH_MASK (1u << 0 | 1u << 5 | 1u << 6 | OPEN_PASSTHROUGH)

struct backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};

#define IOC_BACKING_OPEN _IOW(229, 1, struct backing_map)
#define IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

static bool enabled;            /* the kernel was told yes */
static unsigned nfiles;         /* files open in passthrough */
static unsigned ninodes;        /* inodes holding a backing id */
static unsigned nrefused;       /* inodes refused one */

bool afs_pt_enabled(void)
{
	return enabled;
}

void afs_pt_negotiate(uint32_t in_flags, uint32_t in_flags2,
		      struct fuse_init_out *out)
{
	/* Asked for by name, its absence is worth a word; by default not. */
	int level = afs.opt.passthrough == AFS_PT_ALL ? LOG_WARNING : LOG_DEBUG;

	if (afs.opt.passthrough == AFS_PT_NONE)
		return;
	if (afs.uid != 0) {
		/* The backing files' ioctl would refuse: say so now. */
		afs_log(level, "passthrough: only for root; reads and "
			"writes go through the workers");
		return;
	}
	if (!(in_flags & FUSE_INIT_EXT) || !(in_flags2 & INIT2_PASSTHROUGH)) {
		afs_log(level, "passthrough: the kernel does not offer it; "
			"reads and writes go through the workers");
		return;
	}
	/* main.c refused writeback with it: the kernel refuses the pair. */
	out->flags |= FUSE_INIT_EXT;
	out->flags2 |= INIT2_PASSTHROUGH;
	out->unused[0] = 1;     /* max_stack_depth */
	enabled = true;
}

/* Stop offering passthrough to new opens, saying why once. */
static void give_up(int err)
{
	enabled = false;
	afs_log(LOG_WARNING, "passthrough refused by the kernel (%s); reads "
		"and writes go through the workers", strerror(err));
}

/*
 * Once refused, an inode never tries again: an open served by the
 * daemon puts it in the kernel's cached mode, and while that file is
 * open a later open in passthrough would fail (EIO to its caller).
 */
static void refuse(struct afs_inode *in, int err)
{
	if (err == EPERM || err == ENOTTY || err == EOPNOTSUPP)
		give_up(err);
	else if (!nrefused++)
		afs_log(LOG_NOTICE, "passthrough: a file of the source cannot "
			"be a backing file (%s); the daemon serves such files' "
			"data itself", err == ELOOP ? "it is on a stacking "
			"filesystem" : strerror(err));
	in->pt_refused = true;
}

/*
 * CAP_FSETID in the daemon's effective set on or off.  The kernel
 * writes through a backing file with the credentials it was registered
 * with; without CAP_FSETID, such a write drops set-user-ID and
 * set-group-ID bits as any unprivileged writer's does.  Returns 0 or
 * -errno.
 */
static int fsetid(bool on)
{
	struct __user_cap_header_struct h = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];

	if (syscall(SYS_capget, &h, d) < 0)
		return -errno;
	if (on)
		d[CAP_TO_INDEX(CAP_FSETID)].effective |= CAP_TO_MASK(CAP_FSETID);
	else
		d[CAP_TO_INDEX(CAP_FSETID)].effective &= ~CAP_TO_MASK(CAP_FSETID);
	return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

/*
 * Whether f, of an inode without a backing file, should start one.  By
 * default (AFS_PT_DIRECT) only an O_DIRECT open does, whose data the
 * daemon would only slow down (no read-ahead or page cache of its own
 * to give), and only while no other file of the inode is open without
 * passthrough: the kernel fails a passthrough open (EIO to its caller)
 * while the inode has such a file open.  The files opened later while
 * the backing file stays are in passthrough too, whatever their flags:
 * the kernel fails the inode's other opens (ETXTBSY) meanwhile.
 */
static bool starts_backing(const struct afs_file *f)
{
	return enabled && (afs.opt.passthrough == AFS_PT_ALL ||
			   (f->direct && !f->in->cached_files));
}

/* f opens without passthrough: counted till afs_pt_detach(). */
static int open_cached(struct afs_file *f)
{
	f->cached = true;
	f->in->cached_files++;
	return 0;
}

int afs_pt_attach(struct afs_file *f)
{
	struct afs_inode *in = f->in;
	struct backing_map map;
	int id, err;

	if (!in || in->type != S_IFREG)
		return 0;
	if (in->pt_refused)
		return open_cached(f);
	if (!in->backing_id) {
		if (!starts_backing(f))
			return open_cached(f);
		/*
		 * A descriptor of our own for the kernel's reference (a dup
		 * does not block): the caller's goes when they close it.
		 */
		map = (struct backing_map){
			.fd = fcntl(f->fd, F_DUPFD_CLOEXEC, 0),
		};
		if (map.fd < 0)
			return open_cached(f);
		id = fsetid(false);
		if (id == 0) {
			id = ioctl(fuse_session_fd(afs.se), IOC_BACKING_OPEN, &map);
			id = id < 0 ? -errno : id == 0 ? -EPROTO : id;
			err = fsetid(true);
			if (err < 0)
				afs_log(LOG_WARNING, "passthrough: CAP_FSETID not "
					"restored: %s", strerror(-err));
		}
		if (id < 0) {
			afs_close_async(map.fd, NULL); /* a close may block */
			refuse(in, -id);
			return open_cached(f);
		}
		in->backing_id = id;
		in->backing_fd = map.fd;
		in->backing_of = f;
		ninodes++;
	}
	in->pt_files++;
	f->backing = true;
	nfiles++;
	return in->backing_id;
}

void afs_pt_detach(struct afs_file *f, bool flock_release)
{
	struct afs_inode *in = f->in;
	uint32_t id;

	if (f->cached) {
		f->cached = false;
		in->cached_files--;
	}
	if (!f->backing)
		return;
	f->backing = false;
	nfiles--;
	in->pt_files--;
	if (in->backing_of == f) {
		/*
		 * The backing file shares f's open file description, which
		 * outlives f while the inode has other files in passthrough:
		 * a flock f holds must still go with f.
		 */
		if (flock_release && in->pt_files) {
			afs_inode_hold(in);
			afs_unlock_async(in->backing_fd, in);
		}
		in->backing_of = NULL;
	}
	if (in->pt_files)
		return;
	id = (uint32_t)in->backing_id;
	in->backing_id = 0;
	ninodes--;
	/*
	 * Fails only for an id the kernel does not know: nothing to undo.
	 * Its reference gone, ours is the last: closed in a worker, and
	 * lock requests on the inode wait for that (it may hold f's flock).
	 */
	(void)ioctl(fuse_session_fd(afs.se), IOC_BACKING_CLOSE, &id);
	afs_inode_hold(in);
	afs_close_async(in->backing_fd, in);
	in->backing_fd = -1;
}

void afs_pt_amend_open(struct fuse_open_out *out, int backing_id)
{
	out->open_flags = (out->open_flags | OPEN_PASSTHROUGH) &
			  OPEN_PASSTHROUGH_MASK;
	/* backing_id, where Debian 12's header still says padding */
	memcpy(&out->padding, &backing_id, sizeof(backing_id));
}

void afs_pt_counts(unsigned *files, unsigned *inodes)
{
	*files = nfiles;
	*inodes = ninodes;
}
