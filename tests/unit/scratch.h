/* SPDX-License-Identifier: MIT */
/*
 * scratch.h - the unit tests' scratch directories: each test program
 * makes its files under directories of its own and removes them whole
 * in its group teardown, so a test that fails half-way leaves nothing.
 */
#ifndef AIOD_TEST_SCRATCH_H
#define AIOD_TEST_SCRATCH_H

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

static int scratch_remove_one(const char *path, const struct stat *st,
			      int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

/* Remove the tree at path, not following symlinks; 0 or -1. */
static inline int scratch_remove(const char *path)
{
	return nftw(path, scratch_remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif /* AIOD_TEST_SCRATCH_H */
