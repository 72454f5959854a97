/* SPDX-License-Identifier: MIT */
/*
 * ctlpath.h - where a mount's control socket lives; shared by the daemon
 * and aiodfsctl.
 */
#ifndef AIODFS_CTLPATH_H
#define AIODFS_CTLPATH_H

#include <stddef.h>

/*
 * The control socket of the mount at mountpoint (absolute, canonical):
 * DIR/NAME.sock, where DIR is /run/aiodfs for root and
 * $XDG_RUNTIME_DIR/aiodfs for others, and NAME the mountpoint with '/'
 * written '-' and every byte but [A-Za-z0-9._] as %XX (or, if the path
 * would not fit a socket address, a hash of it).  Its lock file is the
 * same path with ".lock" for ".sock".  Returns 0, -EDESTADDRREQ when
 * XDG_RUNTIME_DIR is not set for a non-root user (no place for one),
 * -ENAMETOOLONG if even DIR does not fit.  dir, if not NULL, gets DIR.
 */
int afs_ctl_path(const char *mountpoint, char *path, size_t size, char *dir,
		 size_t dir_size);

#endif
