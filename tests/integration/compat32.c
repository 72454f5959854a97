// SPDX-License-Identifier: MIT
/*
 * compat32 - what a program sees of one file and its directory, one
 * line per call, for compat32.sh to compare between the source and the
 * mount.  Built at test time with cc -m32 (with and without large-file
 * support) and as a 64-bit program: a 32-bit one's ioctls reach the
 * daemon as the kernel's compat ioctls (FUSE_IOCTL_COMPAT) with the
 * 32-bit command numbers, its readdir() refuses offsets past 31 bits
 * and its telldir() returns a 32-bit long.
 *
 *   compat32 DIR FILE    the lines to compare; DIR loses an entry
 *   compat32 -w DIR      whether DIR's telldir() values pass 31 bits
 *                        (the source's must, for the test to mean much)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ENTRIES 4096

static void result(const char *what, long v)
{
	if (v < 0)
		printf("%s: %s\n", what, strerror(errno));
	else
		printf("%s: %ld\n", what, v);
}

int main(int argc, char **argv)
{
	int fd, v = -1, flags = -1;
	struct stat st;
	char path[4096];
	static long pos[MAX_ENTRIES];
	static char names[MAX_ENTRIES][256];
	struct dirent *de;
	unsigned n = 0;
	DIR *d;

	if (argc == 3 && !strcmp(argv[1], "-w")) {
		long long widest = 0;

		d = opendir(argv[2]);
		while (d && (errno = 0, readdir(d)))
			if ((long long)telldir(d) > widest)
				widest = (long long)telldir(d);
		printf("%s\n", widest > 0x7fffffffLL ? "wide" : "narrow");
		return d && !errno ? 0 : 1;
	}
	if (argc != 3) {
		fprintf(stderr, "usage: compat32 DIR FILE | -w DIR\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s", argv[2]);
	result("stat", stat(path, &st));
	printf("mode %o size %lld nlink %u\n", (unsigned)st.st_mode,
	       (long long)st.st_size, (unsigned)st.st_nlink);
	fd = open(path, O_RDONLY);
	result("open", fd < 0 ? -1 : 0);
	/* In a 32-bit program these are FS_IOC32_GETVERSION and _GETFLAGS. */
	result("FS_IOC_GETVERSION", ioctl(fd, FS_IOC_GETVERSION, &v));
	printf("generation %d\n", v);
	result("FS_IOC_GETFLAGS", ioctl(fd, FS_IOC_GETFLAGS, &flags));
	printf("flags %#x\n", (unsigned)flags);
	close(fd);

	/* telldir() returns a long: 32 bits for a directory's 64-bit offsets. */
	d = opendir(argv[1]);
	if (!d) {
		result("opendir", -1);
		return 1;
	}
	for (;;) {
		long at = telldir(d);

		errno = 0;
		de = readdir(d);
		if (!de || n == MAX_ENTRIES)
			break;
		pos[n] = at;
		snprintf(names[n++], sizeof(names[0]), "%s", de->d_name);
	}
	result("readdir", errno ? -1 : (long)n);
	/*
	 * Back to an early entry, then to later ones than the listing from
	 * there has reached (a directory of more entries than one of
	 * readdir()'s buffers holds), back, and to the last.
	 */
	for (unsigned i = 0; i < 4 && n > 4; i++) {
		static const unsigned quarter[] = { 1, 3, 2, 4 };
		unsigned at = quarter[i] < 4 ? n * quarter[i] / 4 : n - 1;

		seekdir(d, pos[at]);
		de = readdir(d);
		printf("seekdir to entry %u finds it: %s\n", at,
		       de && !strcmp(de->d_name, names[at]) ? "yes" : "no");
	}
	/*
	 * To the start (read from there as after a rewinddir()), one
	 * entry, then far on: a seekdir() to the start leaves the other
	 * telldir() values good.
	 */
	if (n > 4) {
		seekdir(d, pos[0]);
		readdir(d);
		seekdir(d, pos[n - 2]);
		de = readdir(d);
		printf("seekdir to the start, then to entry %u finds it: %s\n",
		       n - 2, de && !strcmp(de->d_name, names[n - 2]) ? "yes" : "no");
	}
	/*
	 * The directory changes: an entry early in the listing goes.  Back
	 * to just before it and reading on (the listing from there is read
	 * again, a READDIR's worth, past where it was), then a telldir()
	 * value from before, of an entry the reading again passed: that
	 * entry, which did not change, is still where it was.
	 */
	if (n > 8) {
		unsigned gone = n / 8, at;
		char victim[4096];

		while (gone < n && strncmp(names[gone], "entry-", 6))
			gone++;
		at = gone + 8 < n ? gone + 8 : n - 1; /* in what is read again */
		snprintf(victim, sizeof(victim), "%s/%s", argv[1], names[gone]);
		result("unlink an early entry", unlink(victim));
		seekdir(d, pos[gone - 2]);
		for (unsigned i = 0; i < 3; i++)
			readdir(d);
		seekdir(d, pos[at]);
		de = readdir(d);
		printf("then seekdir to entry %u finds it: %s\n", at,
		       de && !strcmp(de->d_name, names[at]) ? "yes" : "no");
	}
	closedir(d);
	return 0;
}
