/* SPDX-License-Identifier: MIT */
/*
 * prep.c - filling requests, and what the library knows about each op.
 *
 * The aiod_prep_*() helpers only store their arguments in the fields
 * enum aiod_op documents for the op; they check nothing, so that all
 * checking happens in one place, aiod_submit().
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <string.h>
#include <sys/xattr.h>

#include "aiod-internal.h"

#define IN AIOD__DATA_IN
#define OUT AIOD__DATA_OUT

static const struct {
	const char *name;
	bool idempotent;        /* safe to run twice after a worker died */
	uint8_t data;           /* which way buf goes, AIOD__DATA_* */
} op_info[AIOD_OP__COUNT] = {
	[AIOD_OP_NOP] = { "nop", true },
	[AIOD_OP_LOOKUP] = { "lookup", true },
	[AIOD_OP_STATX] = { "statx", true },
	[AIOD_OP_OPEN] = { "open", true },
	[AIOD_OP_OPEN_BY_HANDLE] = { "open_by_handle", true, IN },
	[AIOD_OP_CLOSE] = { "close", false },
	[AIOD_OP_PREAD] = { "pread", true, OUT },
	[AIOD_OP_PWRITE] = { "pwrite", true, IN },
	[AIOD_OP_FSYNC] = { "fsync", true },
	[AIOD_OP_TRUNCATE] = { "truncate", true },
	[AIOD_OP_FALLOCATE] = { "fallocate", true },
	[AIOD_OP_COPY_FILE_RANGE] = { "copy_file_range", true },
	[AIOD_OP_LSEEK] = { "lseek", true },
	[AIOD_OP_READDIR] = { "readdir", true, OUT },
	[AIOD_OP_MKDIR] = { "mkdir", false },
	[AIOD_OP_MKNOD] = { "mknod", false },
	[AIOD_OP_SYMLINK] = { "symlink", false },
	[AIOD_OP_READLINK] = { "readlink", true, OUT },
	[AIOD_OP_LINK] = { "link", false },
	[AIOD_OP_UNLINK] = { "unlink", false },
	[AIOD_OP_RMDIR] = { "rmdir", false },
	[AIOD_OP_RENAME] = { "rename", false },
	[AIOD_OP_CHMOD] = { "chmod", true },
	[AIOD_OP_CHOWN] = { "chown", true },
	[AIOD_OP_UTIMENS] = { "utimens", true },
	[AIOD_OP_STATFS] = { "statfs", true },
	[AIOD_OP_ACCESS] = { "access", true },
	[AIOD_OP_GETXATTR] = { "getxattr", true, OUT },
	[AIOD_OP_SETXATTR] = { "setxattr", true, IN },
	[AIOD_OP_LISTXATTR] = { "listxattr", true, OUT },
	[AIOD_OP_REMOVEXATTR] = { "removexattr", false },
	[AIOD_OP_FLOCK] = { "flock", false },
	[AIOD_OP_LOCK] = { "lock", false },
	[AIOD_OP_READDIRPLUS] = { "readdirplus", true, OUT },
	[AIOD_OP_PWRITE_PIPE] = { "pwrite_pipe", true },
	[AIOD_OP_FLUSH] = { "flush", true },
	[AIOD_OP_FILEATTR] = { "fileattr", true },
};

const char *aiod_op_name(unsigned op)
{
	return op < AIOD_OP__COUNT ? op_info[op].name : "?";
}

bool aiod__req_idempotent(const struct aiod_req *req)
{
	if (req->op >= AIOD_OP__COUNT || !op_info[req->op].idempotent)
		return false;
	switch (req->op) {
	case AIOD_OP_PREAD:
	case AIOD_OP_PWRITE:
	case AIOD_OP_PWRITE_PIPE:
		/* At the file position, a second run reads or writes more. */
		return req->arg[0] != -1;
	case AIOD_OP_COPY_FILE_RANGE:
		return req->arg[0] != -1 && req->arg[1] != -1;
	case AIOD_OP_LSEEK:
		return req->arg[1] != SEEK_CUR || req->arg[0] == 0;
	case AIOD_OP_OPEN:
	case AIOD_OP_OPEN_BY_HANDLE:
		/* O_CREAT alone finds the first run's file; these do not. */
		return !(req->arg[0] & (O_TRUNC | O_EXCL));
	case AIOD_OP_FALLOCATE:
		return !(req->arg[0] &
			 (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE));
	case AIOD_OP_SETXATTR:
		return !(req->arg[0] & XATTR_CREATE);
	default:
		return true;
	}
}

unsigned aiod__op_data(unsigned op)
{
	return op < AIOD_OP__COUNT ? op_info[op].data : AIOD__DATA_NONE;
}

void aiod_prep(struct aiod_req *req, enum aiod_op op)
{
	memset(req, 0, sizeof(*req));
	req->op = op;
	req->fd[0] = req->fd[1] = -1;
	req->ret_fd = -1;
}

static void prep_at(struct aiod_req *req, enum aiod_op op, int fd,
		    const char *name)
{
	aiod_prep(req, op);
	req->fd[0] = fd;
	req->name[0] = name;
}

static void prep_buf(struct aiod_req *req, enum aiod_op op, int fd,
		     const char *name, const void *buf, size_t len)
{
	prep_at(req, op, fd, name);
	req->buf = (void *)buf;
	req->len = len;
}

void aiod_prep_nop(struct aiod_req *req, unsigned delay_us)
{
	aiod_prep(req, AIOD_OP_NOP);
	req->arg[0] = delay_us;
}

void aiod_prep_lookup(struct aiod_req *req, int dirfd, const char *name)
{
	prep_at(req, AIOD_OP_LOOKUP, dirfd, name);
}

void aiod_prep_statx(struct aiod_req *req, int dirfd, const char *name,
		     int flags, unsigned mask)
{
	prep_at(req, AIOD_OP_STATX, dirfd, name);
	req->arg[0] = flags;
	req->arg[1] = mask;
}

void aiod_prep_open(struct aiod_req *req, int dirfd, const char *name,
		    int flags, mode_t mode, uint64_t resolve)
{
	prep_at(req, AIOD_OP_OPEN, dirfd, name);
	req->arg[0] = flags;
	req->arg[1] = mode;
	req->arg[2] = (int64_t)resolve;
}

void aiod_prep_open_by_handle(struct aiod_req *req, int mountfd,
			      const struct aiod_fh *fh, int flags)
{
	prep_buf(req, AIOD_OP_OPEN_BY_HANDLE, mountfd, NULL, fh,
		 sizeof(*fh) - AIOD_FH_MAX + fh->handle_bytes);
	req->arg[0] = flags;
}

void aiod_prep_close(struct aiod_req *req, int fd)
{
	prep_at(req, AIOD_OP_CLOSE, fd, NULL);
}

void aiod_prep_flush(struct aiod_req *req, int fd)
{
	prep_at(req, AIOD_OP_FLUSH, fd, NULL);
}

void aiod_prep_pread(struct aiod_req *req, int fd, void *buf, size_t len,
		     off_t off)
{
	prep_buf(req, AIOD_OP_PREAD, fd, NULL, buf, len);
	req->arg[0] = off;
}

void aiod_prep_pwrite(struct aiod_req *req, int fd, const void *buf,
		      size_t len, off_t off)
{
	prep_buf(req, AIOD_OP_PWRITE, fd, NULL, buf, len);
	req->arg[0] = off;
}

void aiod_prep_pwrite_pipe(struct aiod_req *req, int fd, int pipe_fd,
			   size_t len, off_t off)
{
	prep_at(req, AIOD_OP_PWRITE_PIPE, fd, NULL);
	req->fd[1] = pipe_fd;
	req->len = len;
	req->arg[0] = off;
}

void aiod_prep_fsync(struct aiod_req *req, int fd, int datasync)
{
	prep_at(req, AIOD_OP_FSYNC, fd, NULL);
	req->arg[0] = datasync;
}

void aiod_prep_truncate(struct aiod_req *req, int dirfd, const char *name,
			off_t length)
{
	prep_at(req, AIOD_OP_TRUNCATE, dirfd, name);
	req->arg[0] = length;
}

void aiod_prep_fallocate(struct aiod_req *req, int fd, int mode, off_t off,
			 off_t len)
{
	prep_at(req, AIOD_OP_FALLOCATE, fd, NULL);
	req->arg[0] = mode;
	req->arg[1] = off;
	req->arg[2] = len;
}

void aiod_prep_copy_file_range(struct aiod_req *req, int fd_in, off_t off_in,
			       int fd_out, off_t off_out, size_t len,
			       unsigned flags)
{
	prep_at(req, AIOD_OP_COPY_FILE_RANGE, fd_in, NULL);
	req->fd[1] = fd_out;
	req->len = len;
	req->arg[0] = off_in;
	req->arg[1] = off_out;
	req->arg[2] = flags;
}

void aiod_prep_lseek(struct aiod_req *req, int fd, off_t off, int whence)
{
	prep_at(req, AIOD_OP_LSEEK, fd, NULL);
	req->arg[0] = off;
	req->arg[1] = whence;
}

void aiod_prep_readdir(struct aiod_req *req, int dirfd, void *buf,
		       size_t len, off_t pos)
{
	prep_buf(req, AIOD_OP_READDIR, dirfd, NULL, buf, len);
	req->arg[0] = pos;
}

void aiod_prep_readdirplus(struct aiod_req *req, int dirfd, void *buf,
			   size_t len, off_t pos)
{
	prep_buf(req, AIOD_OP_READDIRPLUS, dirfd, NULL, buf, len);
	req->arg[0] = pos;
}

void aiod_prep_mkdir(struct aiod_req *req, int dirfd, const char *name,
		     mode_t mode)
{
	prep_at(req, AIOD_OP_MKDIR, dirfd, name);
	req->arg[0] = mode;
}

void aiod_prep_mknod(struct aiod_req *req, int dirfd, const char *name,
		     mode_t mode, dev_t dev)
{
	prep_at(req, AIOD_OP_MKNOD, dirfd, name);
	req->arg[0] = mode;
	req->arg[1] = (int64_t)dev;
}

void aiod_prep_symlink(struct aiod_req *req, const char *target, int dirfd,
		       const char *name)
{
	prep_at(req, AIOD_OP_SYMLINK, dirfd, name);
	req->name[1] = target;
}

void aiod_prep_readlink(struct aiod_req *req, int dirfd, const char *name,
			void *buf, size_t len)
{
	prep_buf(req, AIOD_OP_READLINK, dirfd, name, buf, len);
}

static void prep_two(struct aiod_req *req, enum aiod_op op, int fd1,
		     const char *name1, int fd2, const char *name2,
		     int64_t flags)
{
	prep_at(req, op, fd1, name1);
	req->fd[1] = fd2;
	req->name[1] = name2;
	req->arg[0] = flags;
}

void aiod_prep_link(struct aiod_req *req, int olddirfd, const char *oldname,
		    int newdirfd, const char *newname, int flags)
{
	prep_two(req, AIOD_OP_LINK, olddirfd, oldname, newdirfd, newname, flags);
}

void aiod_prep_rename(struct aiod_req *req, int olddirfd, const char *oldname,
		      int newdirfd, const char *newname, unsigned flags)
{
	prep_two(req, AIOD_OP_RENAME, olddirfd, oldname, newdirfd, newname,
		 flags);
}

void aiod_prep_unlink(struct aiod_req *req, int dirfd, const char *name)
{
	prep_at(req, AIOD_OP_UNLINK, dirfd, name);
}

void aiod_prep_rmdir(struct aiod_req *req, int dirfd, const char *name)
{
	prep_at(req, AIOD_OP_RMDIR, dirfd, name);
}

void aiod_prep_chmod(struct aiod_req *req, int dirfd, const char *name,
		     mode_t mode, int flags)
{
	prep_at(req, AIOD_OP_CHMOD, dirfd, name);
	req->arg[0] = mode;
	req->arg[1] = flags;
}

void aiod_prep_chown(struct aiod_req *req, int dirfd, const char *name,
		     uid_t uid, gid_t gid, int flags)
{
	prep_at(req, AIOD_OP_CHOWN, dirfd, name);
	req->arg[0] = uid;
	req->arg[1] = gid;
	req->arg[2] = flags;
}

void aiod_prep_utimens(struct aiod_req *req, int dirfd, const char *name,
		       const struct timespec times[2], int flags)
{
	prep_at(req, AIOD_OP_UTIMENS, dirfd, name);
	if (times) {
		req->arg[0] = times[0].tv_sec;
		req->arg[1] = times[0].tv_nsec;
		req->arg[2] = times[1].tv_sec;
		req->arg[3] = times[1].tv_nsec;
	} else {
		req->arg[1] = req->arg[3] = UTIME_NOW;
	}
	req->arg[4] = flags;
}

void aiod_prep_statfs(struct aiod_req *req, int dirfd, const char *name)
{
	prep_at(req, AIOD_OP_STATFS, dirfd, name);
}

void aiod_prep_access(struct aiod_req *req, int dirfd, const char *name,
		      int mode, int flags)
{
	prep_at(req, AIOD_OP_ACCESS, dirfd, name);
	req->arg[0] = mode;
	req->arg[1] = flags;
}

void aiod_prep_getxattr(struct aiod_req *req, int dirfd, const char *name,
			const char *attr, void *buf, size_t len)
{
	prep_buf(req, AIOD_OP_GETXATTR, dirfd, name, buf, len);
	req->name[1] = attr;
}

void aiod_prep_setxattr(struct aiod_req *req, int dirfd, const char *name,
			const char *attr, const void *value, size_t len,
			int flags)
{
	prep_buf(req, AIOD_OP_SETXATTR, dirfd, name, value, len);
	req->name[1] = attr;
	req->arg[0] = flags;
}

void aiod_prep_listxattr(struct aiod_req *req, int dirfd, const char *name,
			 void *buf, size_t len)
{
	prep_buf(req, AIOD_OP_LISTXATTR, dirfd, name, buf, len);
}

void aiod_prep_removexattr(struct aiod_req *req, int dirfd, const char *name,
			   const char *attr)
{
	prep_at(req, AIOD_OP_REMOVEXATTR, dirfd, name);
	req->name[1] = attr;
}

void aiod_prep_flock(struct aiod_req *req, int fd, int operation)
{
	prep_at(req, AIOD_OP_FLOCK, fd, NULL);
	req->arg[0] = operation;
}

void aiod_prep_lock(struct aiod_req *req, int fd, int cmd,
		    const struct aiod_lock *lk)
{
	prep_at(req, AIOD_OP_LOCK, fd, NULL);
	req->arg[0] = cmd;
	req->lk = *lk;
}

void aiod_prep_fileattr(struct aiod_req *req, int fd, unsigned long cmd,
			const struct aiod_fileattr *fa)
{
	prep_at(req, AIOD_OP_FILEATTR, fd, NULL);
	req->arg[0] = (int64_t)cmd;
	if (fa)
		req->fa = *fa;
}

/* The slot of op's umask (AIOD_F_UMASK), after its other arguments. */
static int umask_arg(enum aiod_op op)
{
	switch (op) {
	case AIOD_OP_OPEN:
		return 3;
	case AIOD_OP_MKDIR:
		return 1;
	case AIOD_OP_MKNOD:
		return 2;
	default:
		return -1;
	}
}

int aiod_prep_umask(struct aiod_req *req, mode_t mask)
{
	int i = umask_arg(req->op);

	if (i < 0)
		return -EINVAL;
	req->arg[i] = mask & 0777;
	req->flags |= AIOD_F_UMASK;
	return 0;
}
