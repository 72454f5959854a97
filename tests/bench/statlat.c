/* SPDX-License-Identifier: MIT */
/*
 * statlat.c - how long statx(2) with AT_STATX_FORCE_SYNC takes on one
 * file, call after call, from one process: the head-of-line workload of
 * tests/bench/run.
 *
 *   statlat [-t SECONDS] [-q QFILE] FILE
 *
 * Calls statx on FILE back to back for SECONDS (default 5) and prints
 * one JSON line on stdout:
 *
 *   {"n": 81234, "seconds": 5.0, "mean_us": 61.2, "p50_us": 48.1,
 *    "p90_us": ..., "p99_us": ..., "p999_us": ..., "max_us": ...}
 *
 * With -q, it also writes the distribution to QFILE, one "FRACTION
 * MICROSECONDS" line per quantile: every hundredth, then every
 * thousandth above 0.99, every ten-thousandth above 0.999 (as far as
 * the number of samples allows), and 1 for the maximum.  The harness
 * plots those lines.
 *
 * On FUSE, AT_STATX_FORCE_SYNC makes the kernel send a GETATTR every time
 * instead of answering from its attribute cache, so each sample is one
 * round trip through the daemon: if the daemon is busy with something
 * slow (an fsync) and cannot answer, the wait shows here.  Quantiles are
 * nearest-rank over all samples.  Exits 1 if a call fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* The nearest-rank Q-quantile of the N sorted samples V, in µs. */
static double quantile(const uint64_t *v, size_t n, double q)
{
	size_t k = (size_t)(q * (double)n + 0.999999);

	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return (double)v[k - 1] / 1000.0;
}

static int write_quantiles(const char *path, const uint64_t *v, size_t n)
{
	FILE *f = fopen(path, "w");
	long scale, k;

	if (!f)
		return -errno;
	fprintf(f,
		"# fraction latency_us (statx AT_STATX_FORCE_SYNC, %zu samples)\n",
		n);
	/*
	 * 0.01 to 0.99, then 0.991 to 0.999, 0.9991 to 0.9999 and so on,
	 * while each step still holds ten samples or more: finer than
	 * that the figures would be noise.
	 */
	for (scale = 100; scale == 100 || (double)n >= 10.0 * (double)scale;
	     scale *= 10) {
		for (k = scale == 100 ? 1 : scale - 9; k < scale; k++)
			fprintf(f, "%.8g %.3f\n", (double)k / (double)scale,
				quantile(v, n, (double)k / (double)scale));
	}
	fprintf(f, "1 %.3f\n", (double)v[n - 1] / 1000.0);
	return fclose(f) == 0 ? 0 : -errno;
}

static void usage(void)
{
	fprintf(stderr, "usage: statlat [-t SECONDS] [-q QFILE] FILE\n");
	exit(2);
}

int main(int argc, char *argv[])
{
	const char *qfile = NULL, *path;
	double seconds = 5.0, sum = 0;
	size_t n = 0, cap = 1 << 16;
	uint64_t *v, t0, t1, end;
	struct statx stx;
	int opt, err;

	while ((opt = getopt(argc, argv, "t:q:")) != -1) {
		switch (opt) {
		case 't':
			seconds = atof(optarg);
			break;
		case 'q':
			qfile = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1 || seconds <= 0)
		usage();
	path = argv[optind];

	v = malloc(cap * sizeof(*v));
	if (!v)
		return 1;
	end = now_ns() + (uint64_t)(seconds * 1e9);
	do {
		t0 = now_ns();
		if (statx(AT_FDCWD, path, AT_STATX_FORCE_SYNC,
			  STATX_BASIC_STATS, &stx) == -1) {
			err = errno;
			fprintf(stderr, "statlat: %s: %s\n", path,
				strerror(err));
			return 1;
		}
		t1 = now_ns();
		if (n == cap) {
			cap *= 2;
			v = realloc(v, cap * sizeof(*v));
			if (!v)
				return 1;
		}
		v[n++] = t1 - t0;
		sum += (double)(t1 - t0);
	} while (t1 < end);

	qsort(v, n, sizeof(*v), cmp_u64);
	printf("{\"n\": %zu, \"seconds\": %.3f, \"mean_us\": %.3f, "
	       "\"p50_us\": %.3f, \"p90_us\": %.3f, \"p99_us\": %.3f, "
	       "\"p999_us\": %.3f, \"max_us\": %.3f}\n",
	       n, seconds, sum / (double)n / 1000.0, quantile(v, n, 0.50),
	       quantile(v, n, 0.90), quantile(v, n, 0.99),
	       quantile(v, n, 0.999), (double)v[n - 1] / 1000.0);
	if (qfile) {
		err = write_quantiles(qfile, v, n);
		if (err < 0) {
			fprintf(stderr, "statlat: %s: %s\n", qfile,
				strerror(-err));
			return 1;
		}
	}
	free(v);
	return 0;
}
