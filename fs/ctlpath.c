/* SPDX-License-Identifier: MIT */
/*
 * ctlpath.c - where a mount's control socket lives (see ctlpath.h).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctlpath.h"

#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

static void escape(const char *mnt, char *out, size_t size)
{
	size_t n = 0;

	if (*mnt == '/')
		mnt++;
	if (!*mnt)
		mnt = "/";
	for (; *mnt && n + 4 < size; mnt++) {
		unsigned char c = (unsigned char)*mnt;

		if (c == '/')
			out[n++] = '-';
		else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			 (c >= '0' && c <= '9') || c == '_' ||
			 (c == '.' && n > 0))
			out[n++] = (char)c;
		else
			n += (size_t)snprintf(out + n, size - n, "%%%02X", c);
	}
	out[n] = 0;
	if (*mnt)
		out[0] = 0; /* too long: the caller hashes */
}

int afs_ctl_path(const char *mountpoint, char *path, size_t size, char *dir,
		 size_t dir_size)
{
	char d[SUN_PATH_MAX], name[4 * 4096];
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;

	if (geteuid() == 0)
		n = snprintf(d, sizeof(d), "/run/aiodfs");
	else if (xdg && *xdg == '/')
		n = snprintf(d, sizeof(d), "%s/aiodfs", xdg);
	else
		return -EDESTADDRREQ;
	if (n < 0 || (size_t)n + 24 >= sizeof(d))
		return -ENAMETOOLONG;
	escape(mountpoint, name, sizeof(name));
	n = snprintf(path, size, "%s/%s.sock", d, name);
	if (!name[0] || n < 0 || (size_t)n >= SUN_PATH_MAX || (size_t)n >= size) {
		uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

		for (const char *p = mountpoint; *p; p++)
			h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
		n = snprintf(path, size, "%s/h%016llx.sock", d,
			     (unsigned long long)h);
		if (n < 0 || (size_t)n >= size)
			return -ENAMETOOLONG;
	}
	if (dir && (size_t)snprintf(dir, dir_size, "%s", d) >= dir_size)
		return -ENAMETOOLONG;
	return 0;
}
