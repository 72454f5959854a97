/* SPDX-License-Identifier: MIT */
/*
 * fsx.c - a file-system exerciser: a seeded random sequence of operations
 * on one file, every byte read back checked against a model of what the
 * file must hold.
 *
 *   fsx [options] FILENAME          (fsx -h lists the options)
 *
 * The model.  "good" holds the bytes the test file must contain and
 * "fsize" the length it must have.  Each operation is done on the file
 * and then applied to the model.  Bytes of good at or past fsize are kept
 * zero, so a file that grows (a write past EOF, ftruncate, fallocate,
 * copy_file_range) must read back zeros in the gap, as holes do.  Every
 * pread and every mapped read is compared with the model, and so are the
 * bytes of the last mapped page past EOF, which must be zero.  The size
 * is compared (fstat) after every operation that could change it.  After
 * a close and reopen, and at the end, the whole file is read back.
 *
 * The data.  The bytes written by operation N at offset O are a hash of
 * N and O, so no two writes leave the same bytes: data lost, shifted,
 * stale, or written to the wrong place shows as a difference, and the
 * diff names the logged write a byte came from where it can.
 *
 * Choosing operations.  Each step first closes and reopens the file with
 * probability 1/P (-c); otherwise it draws one of the enabled kinds by
 * fixed weights.  Offsets and lengths are drawn uniformly among multiples
 * of the -r/-w/-t boundaries, inside -l and no longer than -o.  Mapped
 * accesses stay inside EOF (a page wholly past EOF raises SIGBUS).  An
 * operation the current size makes impossible (a mapped access or a copy
 * on an empty file, a collapse or insert that does not fit) becomes a
 * write; that depends on the model alone, so it is part of the replay.
 *
 * Replay.  All randomness comes from our own generator (splitmix64)
 * seeded by -S, never from libc, so the same seed and the same options
 * replay the same operations on any system, as long as the filesystem
 * supports the same kinds.  The seed is printed at start and on failure.
 *
 * Unsupported operations.  At startup each optional kind (each fallocate
 * mode, copy_file_range, shared mmap for reading and for writing) is
 * tried once on a scratch range of the test file itself, so the answer
 * is the filesystem's.  A kind failing there with EOPNOTSUPP, ENOSYS or
 * EINVAL (also EXDEV for copy_file_range, ENODEV for mmap) is announced
 * once as unsupported, never drawn and never counted.  The probes leave
 * the file empty.  The same errors later in the run are failures: by
 * then the filesystem has said it can.
 *
 * Failure.  The first mismatch, unexpected syscall error or SIGBUS stops
 * the run with the seed, the operation number, the last LOG_RING
 * operations and, for a mismatch, an offset-by-offset diff; the expected
 * contents are saved as BASENAME.fsxgood (in -P DIR, else beside the
 * file) for cmp(1).  Exit status: 0 passed, 1 failed, 2 bad usage.
 *
 * Signals.  SIGINT and SIGTERM set a flag checked between operations, so
 * the run ends after a whole operation, with the final check and the
 * summary; -N 0 runs until then, for a soak.  A signal may still fail a
 * syscall with EINTR (a FUSE request can be interrupted); each one is
 * retried, which is safe because every operation here does the same
 * thing when repeated with the same arguments, except collapse and insert
 * range, which FUSE rejects in the kernel and local filesystems do not
 * interrupt.
 */
/* meson defines it for the whole project; alone, this file needs it too. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/falloc.h>

#define LOG_RING 20    /* operations kept for, and shown by, a failure */
#define DIFF_SHOW 64   /* differing bytes listed before "and N more" */
#define DIO_ALIGN 4096 /* the alignment O_DIRECT needs on any source */

#define USAGE                                                                  \
	"usage: fsx [-dfhqyCEFHIRTWZz] [-c P] [-l flen] [-N numops] "          \
	"[-o oplen] [-p N] [-P dir] [-r readbdy] [-S seed] [-t truncbdy] "     \
	"[-w writebdy] FILENAME\n"

static const char help[] = USAGE
	"\n"
	"  -N numops   operations to run (default 10000; 0: until SIGINT or\n"
	"              SIGTERM, for a soak)\n"
	"  -S seed     random seed (default: from time and pid, printed);\n"
	"              the same seed and options replay the same run\n"
	"  -l flen     maximum file length (default 256K)\n"
	"  -o oplen    maximum length of one operation (default 64K)\n"
	"  -r readbdy  read offsets and lengths are multiples of this (1)\n"
	"  -w writebdy write, fallocate and copy offsets and lengths (1)\n"
	"  -t truncbdy truncate sizes are multiples of this (1)\n"
	"  -Z          open O_DIRECT: page-aligned buffers, and the three\n"
	"              boundaries become multiples of 4096\n"
	"  -R          no mapped reads         -W  no mapped writes\n"
	"  -T          no truncates            -E  no copy_file_range\n"
	"  -F          no fallocate at all     -H  no punch hole\n"
	"  -z          no zero range           -C  no collapse range\n"
	"  -I          no insert range         -f  no fsync/fdatasync ops\n"
	"  -y          fsync after every operation that changes data\n"
	"  -c P        close and reopen with probability 1/P (default 50;\n"
	"              0: never)\n"
	"  -p N        print progress every N operations\n"
	"  -P dir      where to save FILENAME.fsxgood on failure (default:\n"
	"              beside FILENAME)\n"
	"  -q          quiet: print only failures\n"
	"  -d          debug: print every operation\n"
	"  -h          this help\n"
	"Numbers take a K, M or G suffix (binary). Kinds the filesystem does\n"
	"not support are found at startup and skipped. Exit status: 0 passed,\n"
	"1 failed (seed, last operations and diff on stderr), 2 bad usage.\n";

enum op_kind {
	OP_READ,
	OP_WRITE,
	OP_MAPREAD,
	OP_MAPWRITE,
	OP_TRUNCATE,
	OP_FALLOCATE,
	OP_KEEP_SIZE,
	OP_PUNCH_HOLE,
	OP_ZERO_RANGE,
	OP_ZERO_KEEP,
	OP_COLLAPSE,
	OP_INSERT,
	OP_COPY,
	OP_FSYNC,
	OP_FDATASYNC,
	OP_REOPEN,
	OP_NR,
};

struct op_class {
	const char *name;    /* in the op log and the summary */
	const char *what;    /* in "... not supported on this filesystem" */
	int mode;	     /* fallocate mode, for the fallocate kinds */
	unsigned int weight; /* relative frequency among drawn kinds */
	bool off;	     /* switched off by an option */
	bool unsupported;    /* switched off by the startup probe */
	unsigned long long count; /* operations of this kind performed */
};

/* Reopen has no weight: it is decided by -c before the draw. */
static struct op_class ops[OP_NR] = {
	[OP_READ] = {.name = "read", .what = "read", .weight = 4},
	[OP_WRITE] = {.name = "write", .what = "write", .weight = 4},
	[OP_MAPREAD] = {.name = "mapread",
			.what = "shared mmap read",
			.weight = 2},
	[OP_MAPWRITE] = {.name = "mapwrite",
			 .what = "shared mmap write",
			 .weight = 2},
	[OP_TRUNCATE] = {.name = "truncate", .what = "truncate", .weight = 2},
	[OP_FALLOCATE] = {.name = "falloc", .what = "fallocate", .weight = 1},
	[OP_KEEP_SIZE] = {.name = "keep_size",
			  .what = "fallocate keep size",
			  .mode = FALLOC_FL_KEEP_SIZE,
			  .weight = 1},
	[OP_PUNCH_HOLE] = {.name = "punch_hole",
			   .what = "punch hole",
			   .mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			   .weight = 1},
	[OP_ZERO_RANGE] = {.name = "zero_range",
			   .what = "zero range",
			   .mode = FALLOC_FL_ZERO_RANGE,
			   .weight = 1},
	[OP_ZERO_KEEP] = {.name = "zero_keep",
			  .what = "zero range with keep size",
			  .mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
			  .weight = 1},
	[OP_COLLAPSE] = {.name = "collapse",
			 .what = "collapse range",
			 .mode = FALLOC_FL_COLLAPSE_RANGE,
			 .weight = 1},
	[OP_INSERT] = {.name = "insert",
		       .what = "insert range",
		       .mode = FALLOC_FL_INSERT_RANGE,
		       .weight = 1},
	[OP_COPY] = {.name = "copy", .what = "copy_file_range", .weight = 2},
	[OP_FSYNC] = {.name = "fsync", .what = "fsync", .weight = 1},
	[OP_FDATASYNC] = {.name = "fdatasync",
			  .what = "fdatasync",
			  .weight = 1},
	[OP_REOPEN] = {.name = "reopen", .what = "close and reopen"},
};

/* One operation as logged: enough to replay it by hand. */
struct log_entry {
	unsigned long long nr;
	enum op_kind kind;
	uint64_t off;
	uint64_t len;
	uint64_t from;	 /* copy: the source offset */
	uint64_t before; /* file size before */
	uint64_t after;	 /* file size after, as the model has it */
};

/* Options: set by parse_args() and, for the boundaries, by -Z. */
static unsigned long long numops = 10000;
static unsigned long long seed;
static bool seed_given;
static uint64_t maxlen = 256 << 10;
static uint64_t maxop = 64 << 10;
static uint64_t rbdy = 1, wbdy = 1, tbdy = 1;
static unsigned long long closeprob = 50;
static unsigned long long progress;
static bool odirect, sync_writes, quiet, debug;
static const char *savedir;
static const char *fname;
static int saved_argc;
static char **saved_argv;

/* The run. */
static int fd = -1;
static int open_flags;
static unsigned char *good;  /* the model: what the file must hold */
static uint64_t fsize;	     /* the model: how long the file must be */
static unsigned char *iobuf; /* page aligned, bufsize bytes */
static size_t bufsize;	     /* >= both lengths, plus a page */
static uint64_t cpbdy;	     /* copy boundary: both -r and -w */
static uint64_t cbdy;	     /* collapse/insert boundary: a block */
static uint64_t pagesize;
static unsigned long long opnr; /* the operation under way, from 1 */
static uint64_t rng;		/* splitmix64 state */
static unsigned int total_weight;
static struct log_entry ring[LOG_RING];
static unsigned long long logged; /* entries ever logged */

static volatile sig_atomic_t stop_sig;
static volatile sig_atomic_t bus_armed;
static sigjmp_buf bus_env;

static uint64_t umin(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint64_t umax(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static uint64_t roundup(uint64_t x, uint64_t to)
{
	return (x + to - 1) / to * to;
}

static uint64_t lcm(uint64_t a, uint64_t b)
{
	uint64_t x = a, y = b;

	while (y) {
		uint64_t t = x % y;

		x = y;
		y = t;
	}
	return a / x * b;
}

/* ---- randomness and data ------------------------------------------------ */

/* The splitmix64 finaliser: a bijection that scatters every input bit. */
static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Returns the next number of the run's sequence (splitmix64). */
static uint64_t rnd64(void)
{
	rng += 0x9e3779b97f4a7c15ULL;
	return mix64(rng);
}

/*
 * Returns a number in [0, n), n > 0.  The multiply-and-shift maps 2^64
 * values onto n with a bias below n / 2^64, far below anything a run
 * could notice, and costs no retries, which keeps the sequence simple.
 */
static uint64_t rnd_below(uint64_t n)
{
	return (uint64_t)(((unsigned __int128)rnd64() * n) >> 64);
}

/* Returns a multiple of bdy in [0, limit), limit > 0. */
static uint64_t pick_offset(uint64_t limit, uint64_t bdy)
{
	return rnd_below((limit + bdy - 1) / bdy) * bdy;
}

/* Returns a multiple of bdy in [bdy, max]; max >= bdy. */
static uint64_t pick_length(uint64_t max, uint64_t bdy)
{
	return (rnd_below(max / bdy) + 1) * bdy;
}

/*
 * The data of operation nr is a stream of 64-bit words, word i being a
 * hash of a per-operation key plus i.  Two operations' streams could only
 * agree if their keys differed by less than a file length, which a
 * 64-bit hash makes as good as impossible.
 */
static unsigned char pattern_at(unsigned long long nr, uint64_t o)
{
	return mix64(mix64(nr) + (o >> 3)) >> (8 * (o & 7));
}

/* Fills p with the data operation nr writes at [off, off + len). */
static void fill_pattern(unsigned char *p, unsigned long long nr, uint64_t off,
			 uint64_t len)
{
	uint64_t key = mix64(nr);
	uint64_t word = 0;
	uint64_t i;

	for (i = 0; i < len; i++) {
		uint64_t o = off + i;

		if (i == 0 || (o & 7) == 0)
			word = mix64(key + (o >> 3));
		p[i] = word >> (8 * (o & 7));
	}
}

/* ---- the op log and failure reports ------------------------------------- */

static void print_entry(FILE *f, const struct log_entry *e)
{
	fprintf(f, "%8llu %-10s", e->nr, ops[e->kind].name);
	switch (e->kind) {
	case OP_TRUNCATE:
	case OP_FSYNC:
	case OP_FDATASYNC:
	case OP_REOPEN:
		fprintf(f, " %35s", "");
		break;
	default:
		fprintf(f,
			" 0x%08" PRIx64 "..0x%08" PRIx64 " (0x%08" PRIx64 ")",
			e->off, e->off + e->len - 1, e->len);
		break;
	}
	fprintf(f, " size 0x%" PRIx64, e->before);
	if (e->after != e->before)
		fprintf(f, " -> 0x%" PRIx64, e->after);
	if (e->kind == OP_COPY)
		fprintf(f, " from 0x%" PRIx64, e->from);
	fputc('\n', f);
}

/*
 * Records the operation about to run (after: the size the model will
 * have once it has), counts it, and prints it under -d.  Each operation
 * performed calls this exactly once, before its first syscall, so a
 * failure's log ends with the operation that failed.
 */
static void log_op(enum op_kind kind, uint64_t off, uint64_t len, uint64_t from,
		   uint64_t after)
{
	struct log_entry *e = &ring[logged++ % LOG_RING];

	e->nr = opnr;
	e->kind = kind;
	e->off = off;
	e->len = len;
	e->from = from;
	e->before = fsize;
	e->after = after;
	ops[kind].count++;
	if (debug)
		print_entry(stdout, e);
}

/* Starts a failure report: what went wrong, the seed and the op log. */
static void __attribute__((format(printf, 1, 2)))
fail_begin(const char *fmt, ...)
{
	unsigned long long i;
	va_list ap;

	fflush(stdout);
	if (opnr)
		fprintf(stderr, "fsx: FAILED at operation %llu: ", opnr);
	else
		fprintf(stderr, "fsx: FAILED during the startup probes: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nfsx: seed %llu, file %s; last operations:\n", seed,
		fname);
	i = logged > LOG_RING ? logged - LOG_RING : 0;
	for (; i < logged; i++)
		print_entry(stderr, &ring[i % LOG_RING]);
}

/* Saves the model where cmp(1) can compare it with the file. */
static void save_good(void)
{
	const char *base = strrchr(fname, '/');
	char path[PATH_MAX];
	uint64_t done = 0;
	int n, gfd, err;

	base = base ? base + 1 : fname;
	if (savedir)
		n = snprintf(path, sizeof(path), "%s/%s.fsxgood", savedir,
			     base);
	else
		n = snprintf(path, sizeof(path), "%.*s%s.fsxgood",
			     (int)(base - fname), fname, base);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		fprintf(stderr, "fsx: no room to name the .fsxgood file\n");
		return;
	}
	gfd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (gfd < 0) {
		err = errno;
		goto out_err;
	}
	while (done < fsize) {
		ssize_t w = write(gfd, good + done, fsize - done);

		err = w < 0 ? errno : EIO;
		if (w < 0 && err == EINTR)
			continue;
		if (w <= 0) {
			close(gfd);
			goto out_err;
		}
		done += w;
	}
	if (close(gfd) < 0) {
		err = errno;
		goto out_err;
	}
	fprintf(stderr, "fsx: expected contents saved in %s\n", path);
	return;
out_err:
	fprintf(stderr, "fsx: cannot save expected contents in %s: %s\n", path,
		strerror(err));
}

/* Ends a failure report with how to look closer and replay; exits 1. */
static void __attribute__((noreturn)) fail_end(void)
{
	int i;

	save_good();
	fprintf(stderr, "fsx: replay with:");
	for (i = 0; i < saved_argc; i++) {
		fprintf(stderr, " %s", saved_argv[i]);
		if (i == 0 && !seed_given)
			fprintf(stderr, " -S %llu", seed);
	}
	fputc('\n', stderr);
	exit(1);
}

static void __attribute__((noreturn, format(printf, 1, 2)))
fail(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fail_begin("%s", msg);
	fail_end();
}

static void __attribute__((noreturn)) fail_sys(const char *call, int err)
{
	fail("%s: %s", call, strerror(err));
}

/*
 * Returns the number of the logged write or mapped write that put byte c
 * at offset o, or 0 if none of those still in the log did.
 */
static unsigned long long writer_of(uint64_t o, unsigned char c)
{
	unsigned long long i;
	unsigned long long first = logged > LOG_RING ? logged - LOG_RING : 0;

	for (i = logged; i > first; i--) {
		const struct log_entry *e = &ring[(i - 1) % LOG_RING];

		if (e->kind != OP_WRITE && e->kind != OP_MAPWRITE)
			continue;
		if (o >= e->off && o < e->off + e->len &&
		    pattern_at(e->nr, o) == c)
			return e->nr;
	}
	return 0;
}

static const char *writer_note(char *s, size_t n, uint64_t o, unsigned char c)
{
	unsigned long long nr = writer_of(o, c);

	if (nr)
		snprintf(s, n, "op %llu", nr);
	else
		snprintf(s, n, "%s", c ? "" : "zero");
	return s;
}

/*
 * Compares len bytes that the file gave for offset off with the model.
 * Returns if they agree; otherwise reports the difference, byte by byte,
 * naming (where the log can) the write each byte came from, and exits 1.
 * what says which check this is.
 */
static void check_data(const unsigned char *got, uint64_t off, uint64_t len,
		       const char *what)
{
	const unsigned char *want = good + off;
	uint64_t i, bad = 0, shown = 0, lo = 0, hi = 0;
	char a[32], b[32];

	if (memcmp(got, want, len) == 0)
		return;
	for (i = 0; i < len; i++) {
		if (got[i] == want[i])
			continue;
		if (!bad++)
			lo = i;
		hi = i;
	}
	fail_begin("%s: 0x%" PRIx64 " bytes differ in 0x%" PRIx64
		   "..0x%" PRIx64,
		   what, bad, off + lo, off + hi);
	fprintf(stderr, "fsx: offset      expected          got\n");
	for (i = lo; i <= hi && shown < DIFF_SHOW; i++) {
		if (got[i] == want[i])
			continue;
		shown++;
		fprintf(stderr, "  0x%08" PRIx64 "  0x%02x %-12s  0x%02x %s\n",
			off + i, want[i],
			writer_note(a, sizeof(a), off + i, want[i]), got[i],
			writer_note(b, sizeof(b), off + i, got[i]));
	}
	if (bad > shown)
		fprintf(stderr,
			"fsx: ... and %" PRIu64 " more differing bytes\n",
			bad - shown);
	fail_end();
}

/* Returns if the file's size is the model's; otherwise reports, exits 1. */
static void check_size(const char *what)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		fail_sys("fstat", errno);
	if ((uint64_t)st.st_size != fsize)
		fail("%s: file size is 0x%" PRIx64 ", expected 0x%" PRIx64,
		     what, (uint64_t)st.st_size, fsize);
}

/* ---- syscalls ----------------------------------------------------------- */

/*
 * Reads up to len bytes at off into p, stopping at EOF; returns how many
 * it got.  Under O_DIRECT it stops after a read that leaves it off the
 * alignment, which only EOF can do, as the next read would be refused.
 */
static uint64_t do_pread(unsigned char *p, uint64_t len, uint64_t off)
{
	uint64_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, p + done, len - done, off + done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail_sys("pread", errno);
		if (n == 0)
			break;
		done += n;
		if (odirect && done % DIO_ALIGN)
			break;
	}
	return done;
}

/* Writes all of [p, p + len) at off, or reports and exits 1. */
static void do_pwrite(const unsigned char *p, uint64_t len, uint64_t off)
{
	uint64_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, p + done, len - done, off + done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail_sys("pwrite", errno);
		if (n == 0)
			fail("pwrite wrote nothing, 0x%" PRIx64 " bytes left",
			     len - done);
		done += n;
	}
}

/* Returns 0, or -errno from fallocate() (never -EINTR). */
static int try_fallocate(int mode, uint64_t off, uint64_t len)
{
	int r;

	do
		r = fallocate(fd, mode, off, len);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

/*
 * Copies len bytes from from to off in the test file, going on after a
 * short copy.  Returns 0, or -errno (never -EINTR) if a call fails.
 */
static int try_copy(uint64_t from, uint64_t off, uint64_t len)
{
	loff_t in = from, out = off;

	while (len) {
		ssize_t n = copy_file_range(fd, &in, fd, &out, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			fail("copy_file_range copied nothing, 0x%" PRIx64
			     " bytes left",
			     len);
		len -= n;
	}
	return 0;
}

static void do_fsync(bool data_only)
{
	int r;

	do
		r = data_only ? fdatasync(fd) : fsync(fd);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		fail_sys(data_only ? "fdatasync" : "fsync", errno);
}

/* Opens the test file with open_flags plus extra; exits 1 on failure. */
static void open_file(int extra)
{
	do
		fd = open(fname, open_flags | extra, 0666);
	while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		if (odirect && errno == EINVAL)
			fail("open %s: O_DIRECT not supported here", fname);
		fail("open %s: %s", fname, strerror(errno));
	}
}

/*
 * A SIGBUS while bus_armed is a mapped access that faulted: turn it into
 * a failure report.  Any other SIGBUS is a bug here: die of it.
 */
static void on_sigbus(int sig)
{
	if (!bus_armed) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	siglongjmp(bus_env, 1);
}

/* Copies n bytes to or from a mapping; a SIGBUS becomes a failure. */
static void map_copy(void *dst, const void *src, size_t n)
{
	if (sigsetjmp(bus_env, 1)) {
		bus_armed = 0;
		fail("SIGBUS on a mapped access inside EOF");
	}
	bus_armed = 1;
	memcpy(dst, src, n);
	bus_armed = 0;
}

static void on_stop(int sig)
{
	stop_sig = sig;
}

/* ---- the operations ----------------------------------------------------- */

/*
 * Each operation draws its arguments, logs itself, does its syscalls,
 * brings the model along and checks what it can.  One that the current
 * size makes impossible returns false without logging, and the caller
 * writes instead; what it drew before finding out depends only on the
 * model, so the replay draws the same.
 */

/* After an operation that may change data or size: -y, and the size. */
static void after_change(const char *what)
{
	if (sync_writes)
		do_fsync(false);
	check_size(what);
}

static bool op_read(void)
{
	uint64_t off = fsize ? pick_offset(fsize, rbdy) : 0;
	uint64_t len = pick_length(maxop, rbdy);
	uint64_t want = off < fsize ? umin(len, fsize - off) : 0;
	uint64_t got;

	log_op(OP_READ, off, len, 0, fsize);
	got = do_pread(iobuf, len, off);
	if (got != want)
		fail("read returned 0x%" PRIx64 " bytes, expected 0x%" PRIx64,
		     got, want);
	check_data(iobuf, off, got, "read");
	return true;
}

static bool op_write(void)
{
	uint64_t off = pick_offset(maxlen, wbdy);
	uint64_t len = umin(pick_length(maxop, wbdy), maxlen - off);
	uint64_t after = umax(fsize, off + len);

	log_op(OP_WRITE, off, len, 0, after);
	fill_pattern(iobuf, opnr, off, len);
	do_pwrite(iobuf, len, off);
	memcpy(good + off, iobuf, len);
	fsize = after;
	after_change("write");
	return true;
}

/*
 * Reads [off, off + len) through a shared mapping and, when that range
 * ends in the page holding EOF, the rest of that page too, which must be
 * zero.
 */
static bool op_mapread(void)
{
	uint64_t off, len, pgoff, end, mapend;
	void *p;

	if (!fsize)
		return false;
	off = pick_offset(fsize, rbdy);
	len = umin(pick_length(maxop, rbdy), fsize - off);
	pgoff = off / pagesize * pagesize;
	end = mapend = off + len;
	if (roundup(end, pagesize) >= fsize)
		mapend = roundup(fsize, pagesize);
	log_op(OP_MAPREAD, off, len, 0, fsize);
	p = mmap(NULL, mapend - pgoff, PROT_READ, MAP_SHARED, fd, pgoff);
	if (p == MAP_FAILED)
		fail_sys("mmap", errno);
	map_copy(iobuf, (char *)p + (off - pgoff), mapend - off);
	if (munmap(p, mapend - pgoff) < 0)
		fail_sys("munmap", errno);
	check_data(iobuf, off, len, "mapped read");
	if (mapend > fsize)
		check_data(iobuf + (fsize - off), fsize, mapend - fsize,
			   "mapped page past EOF (must read zero)");
	return true;
}

static bool op_mapwrite(void)
{
	uint64_t off, len, pgoff;
	void *p;
	int r;

	if (!fsize)
		return false;
	off = pick_offset(fsize, wbdy);
	len = umin(pick_length(maxop, wbdy), fsize - off);
	pgoff = off / pagesize * pagesize;
	log_op(OP_MAPWRITE, off, len, 0, fsize);
	p = mmap(NULL, off + len - pgoff, PROT_READ | PROT_WRITE, MAP_SHARED,
		 fd, pgoff);
	if (p == MAP_FAILED)
		fail_sys("mmap", errno);
	fill_pattern(iobuf, opnr, off, len);
	map_copy((char *)p + (off - pgoff), iobuf, len);
	do
		r = msync(p, off + len - pgoff, MS_SYNC);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		fail_sys("msync", errno);
	if (munmap(p, off + len - pgoff) < 0)
		fail_sys("munmap", errno);
	memcpy(good + off, iobuf, len);
	after_change("mapped write");
	return true;
}

static bool op_truncate(void)
{
	uint64_t after = pick_offset(maxlen + 1, tbdy);
	int r;

	log_op(OP_TRUNCATE, 0, 0, 0, after);
	do
		r = ftruncate(fd, after);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		fail_sys("ftruncate", errno);
	if (after < fsize)
		memset(good + after, 0, fsize - after);
	fsize = after;
	after_change("truncate");
	return true;
}

/*
 * The five fallocate modes that keep offsets in place.  Punch hole and
 * zero range with keep size aim inside the file, where they do
 * something; the others may also reach past EOF, where plain fallocate
 * and zero range extend the file and keep size preallocates beyond it.
 */
static bool op_fallocate(enum op_kind kind)
{
	int mode = ops[kind].mode;
	bool inside = kind == OP_PUNCH_HOLE || kind == OP_ZERO_KEEP;
	uint64_t off = pick_offset(inside && fsize ? fsize : maxlen, wbdy);
	uint64_t len = umin(pick_length(maxop, wbdy), maxlen - off);
	uint64_t after = fsize;
	int r;

	if (!(mode & FALLOC_FL_KEEP_SIZE))
		after = umax(fsize, off + len);
	log_op(kind, off, len, 0, after);
	r = try_fallocate(mode, off, len);
	if (r < 0)
		fail_sys("fallocate", -r);
	if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		memset(good + off, 0, len);
	fsize = after;
	after_change(ops[kind].name);
	return true;
}

/*
 * Collapse range removes whole blocks, and must leave at least one byte
 * after them: off + len < fsize.
 */
static bool op_collapse(void)
{
	uint64_t most = fsize ? (fsize - 1) / cbdy : 0;
	uint64_t n, at, off, len;
	int r;

	if (!most)
		return false;
	n = rnd_below(umin(umax(maxop / cbdy, 1), most)) + 1;
	at = rnd_below(most - n + 1);
	off = at * cbdy;
	len = n * cbdy;
	log_op(OP_COLLAPSE, off, len, 0, fsize - len);
	r = try_fallocate(FALLOC_FL_COLLAPSE_RANGE, off, len);
	if (r < 0)
		fail_sys("fallocate collapse range", -r);
	memmove(good + off, good + off + len, fsize - off - len);
	memset(good + fsize - len, 0, len);
	fsize -= len;
	after_change("collapse range");
	return true;
}

/*
 * Insert range shifts the data from a block boundary inside the file up
 * by whole blocks of zeros; the file may not outgrow -l.
 */
static bool op_insert(void)
{
	uint64_t room = (maxlen - fsize) / cbdy;
	uint64_t n, off, len;
	int r;

	if (!fsize || !room)
		return false;
	n = rnd_below(umin(umax(maxop / cbdy, 1), room)) + 1;
	off = rnd_below((fsize - 1) / cbdy + 1) * cbdy;
	len = n * cbdy;
	log_op(OP_INSERT, off, len, 0, fsize + len);
	r = try_fallocate(FALLOC_FL_INSERT_RANGE, off, len);
	if (r < 0)
		fail_sys("fallocate insert range", -r);
	memmove(good + off + len, good + off, fsize - off);
	memset(good + off, 0, len);
	fsize += len;
	after_change("insert range");
	return true;
}

/*
 * copy_file_range from a range inside the file to a range of the same
 * file that does not overlap it (the kernel refuses overlapping ones),
 * anywhere below -l: past EOF it extends the file, leaving a hole.
 * Everything is counted in units of cpbdy.  The source is drawn first;
 * if no destination fits beside it, halving the length makes room
 * unless the file limit is a single unit.
 */
static bool op_copy(void)
{
	uint64_t have = fsize / cpbdy, limit = maxlen / cpbdy;
	uint64_t n, src, dst, below, above, r;
	uint64_t from, off, len, after;
	int err;

	if (!have)
		return false;
	n = rnd_below(umin(umax(maxop / cpbdy, 1), have)) + 1;
	src = rnd_below(have - n + 1);
	for (;;) {
		below = src >= n ? src - n + 1 : 0;
		above = limit >= src + 2 * n ? limit - src - 2 * n + 1 : 0;
		if (below + above || n == 1)
			break;
		n /= 2;
	}
	if (!(below + above))
		return false;
	r = rnd_below(below + above);
	dst = r < below ? r : src + n + (r - below);
	from = src * cpbdy;
	off = dst * cpbdy;
	len = n * cpbdy;
	after = umax(fsize, off + len);
	log_op(OP_COPY, off, len, from, after);
	err = try_copy(from, off, len);
	if (err < 0)
		fail_sys("copy_file_range", -err);
	memcpy(good + off, good + from, len);
	fsize = after;
	after_change("copy_file_range");
	return true;
}

static bool op_sync(enum op_kind kind)
{
	log_op(kind, 0, 0, 0, fsize);
	do_fsync(kind == OP_FDATASYNC);
	return true;
}

/*
 * Reads the whole file back and checks it, and its size, against the
 * model.  iobuf holds the longest file the run makes, so this is
 * normally one read.
 */
static void check_file(const char *what)
{
	uint64_t off = 0, got;

	check_size(what);
	do {
		got = do_pread(iobuf, bufsize, off);
		if (off + got > fsize)
			fail("%s: read returned data past EOF 0x%" PRIx64, what,
			     fsize);
		check_data(iobuf, off, got, what);
		off += got;
	} while (got == bufsize);
	if (off != fsize)
		fail("%s: read the whole file: 0x%" PRIx64
		     " bytes, expected 0x%" PRIx64,
		     what, off, fsize);
}

static bool op_reopen(void)
{
	log_op(OP_REOPEN, 0, 0, 0, fsize);
	/* Linux frees the descriptor even when close fails with EINTR. */
	if (close(fd) < 0 && errno != EINTR)
		fail_sys("close", errno);
	open_file(0);
	check_file("after close and reopen");
	return true;
}

static bool enabled(enum op_kind kind)
{
	return !ops[kind].off && !ops[kind].unsupported;
}

/* Draws one of the enabled kinds other than reopen, by weight. */
static enum op_kind draw_kind(void)
{
	unsigned int r = rnd_below(total_weight);
	int k;

	for (k = 0; k < OP_NR; k++) {
		if (!enabled(k))
			continue;
		if (r < ops[k].weight)
			return k;
		r -= ops[k].weight;
	}
	return OP_WRITE;
}

/* Runs operation opnr. */
static void step(void)
{
	enum op_kind kind;
	bool done;

	if (closeprob && rnd_below(closeprob) == 0)
		kind = OP_REOPEN;
	else
		kind = draw_kind();
	switch (kind) {
	case OP_READ:
		done = op_read();
		break;
	case OP_WRITE:
		done = op_write();
		break;
	case OP_MAPREAD:
		done = op_mapread();
		break;
	case OP_MAPWRITE:
		done = op_mapwrite();
		break;
	case OP_TRUNCATE:
		done = op_truncate();
		break;
	case OP_FALLOCATE:
	case OP_KEEP_SIZE:
	case OP_PUNCH_HOLE:
	case OP_ZERO_RANGE:
	case OP_ZERO_KEEP:
		done = op_fallocate(kind);
		break;
	case OP_COLLAPSE:
		done = op_collapse();
		break;
	case OP_INSERT:
		done = op_insert();
		break;
	case OP_COPY:
		done = op_copy();
		break;
	case OP_FSYNC:
	case OP_FDATASYNC:
		done = op_sync(kind);
		break;
	case OP_REOPEN:
		done = op_reopen();
		break;
	default:
		done = false;
		break;
	}
	if (!done)
		op_write();
}

/* ---- startup ------------------------------------------------------------ */

/*
 * Called when the probe of kind failed with err: switches the kind off if
 * err means the filesystem does not do it; otherwise reports, exits 1.
 */
static void probe_failed(enum op_kind kind, int err, const char *call)
{
	bool unsupported = err == EOPNOTSUPP || err == ENOSYS || err == EINVAL;

	if (kind == OP_COPY && err == EXDEV)
		unsupported = true;
	if ((kind == OP_MAPREAD || kind == OP_MAPWRITE) && err == ENODEV)
		unsupported = true;
	if (!unsupported)
		fail("probing %s: %s: %s", ops[kind].what, call, strerror(err));
	ops[kind].unsupported = true;
	if (!quiet)
		printf("fsx: %s not supported on this filesystem: skipped\n",
		       ops[kind].what);
}

/*
 * Tries each optional kind that is not switched off once, on four
 * blocks of scratch data at the start of the test file, and switches
 * off those the filesystem does not support.  The offsets are block
 * aligned and inside the data, so EINVAL can only mean "not here".
 * Leaves the file empty.
 */
static void probe(void)
{
	uint64_t blk = cbdy;
	unsigned char *p;
	int k, r;

	if (posix_memalign((void **)&p, pagesize, 4 * blk))
		fail("out of memory");
	memset(p, 0xa5, 4 * blk);
	do_pwrite(p, 4 * blk, 0);
	free(p);
	for (k = OP_FALLOCATE; k <= OP_INSERT; k++) {
		if (ops[k].off)
			continue;
		r = try_fallocate(ops[k].mode, blk, blk);
		if (r < 0)
			probe_failed(k, -r, "fallocate");
	}
	if (!ops[OP_COPY].off) {
		r = try_copy(0, 2 * blk, blk);
		if (r < 0)
			probe_failed(OP_COPY, -r, "copy_file_range");
	}
	for (k = OP_MAPREAD; k <= OP_MAPWRITE; k++) {
		int prot = k == OP_MAPREAD ? PROT_READ : PROT_READ | PROT_WRITE;
		void *m;

		if (ops[k].off)
			continue;
		m = mmap(NULL, blk, prot, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED)
			probe_failed(k, errno, "mmap");
		else if (munmap(m, blk) < 0)
			fail_sys("munmap", errno);
	}
	do
		r = ftruncate(fd, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		fail_sys("ftruncate", errno);
}

static void __attribute__((noreturn, format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("fsx: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n" USAGE, stderr);
	exit(2);
}

/*
 * Returns the number in arg: decimal, 0x hex or 0 octal, with an
 * optional K, M or G suffix (binary) if suffix.  Anything else is a
 * usage error for option c.
 */
static unsigned long long parse_num(int c, const char *arg, bool suffix)
{
	unsigned long long v;
	unsigned int shift = 0;
	char *end;

	errno = 0;
	if (*arg < '0' || *arg > '9')
		usage_error("bad number for -%c: '%s'", c, arg);
	v = strtoull(arg, &end, 0);
	if (suffix && *end && strchr("kKmMgG", *end) && !end[1]) {
		shift = strchr("kK", *end) ? 10 : strchr("mM", *end) ? 20 : 30;
		end++;
	}
	if (errno || *end || v > ULLONG_MAX >> shift)
		usage_error("bad number for -%c: '%s'", c, arg);
	return v << shift;
}

static void parse_args(int argc, char **argv)
{
	int c, k;

	saved_argc = argc;
	saved_argv = argv;
	opterr = 0;
	while ((c = getopt(argc, argv,
			   ":c:dfhl:o:p:qr:t:w:yN:P:S:CEFHIRTWZz")) != -1) {
		switch (c) {
		case 'c':
			closeprob = parse_num(c, optarg, false);
			break;
		case 'd':
			debug = true;
			break;
		case 'f':
			ops[OP_FSYNC].off = ops[OP_FDATASYNC].off = true;
			break;
		case 'h':
			fputs(help, stdout);
			exit(0);
		case 'l':
			maxlen = parse_num(c, optarg, true);
			break;
		case 'o':
			maxop = parse_num(c, optarg, true);
			break;
		case 'p':
			progress = parse_num(c, optarg, true);
			break;
		case 'q':
			quiet = true;
			break;
		case 'r':
			rbdy = parse_num(c, optarg, true);
			break;
		case 't':
			tbdy = parse_num(c, optarg, true);
			break;
		case 'w':
			wbdy = parse_num(c, optarg, true);
			break;
		case 'y':
			sync_writes = true;
			break;
		case 'N':
			numops = parse_num(c, optarg, true);
			break;
		case 'P':
			savedir = optarg;
			break;
		case 'S':
			seed = parse_num(c, optarg, false);
			seed_given = true;
			break;
		case 'C':
			ops[OP_COLLAPSE].off = true;
			break;
		case 'E':
			ops[OP_COPY].off = true;
			break;
		case 'F':
			for (k = OP_FALLOCATE; k <= OP_INSERT; k++)
				ops[k].off = true;
			break;
		case 'H':
			ops[OP_PUNCH_HOLE].off = true;
			break;
		case 'I':
			ops[OP_INSERT].off = true;
			break;
		case 'R':
			ops[OP_MAPREAD].off = true;
			break;
		case 'T':
			ops[OP_TRUNCATE].off = true;
			break;
		case 'W':
			ops[OP_MAPWRITE].off = true;
			break;
		case 'Z':
			odirect = true;
			break;
		case 'z':
			ops[OP_ZERO_RANGE].off = ops[OP_ZERO_KEEP].off = true;
			break;
		case ':':
			usage_error("option -%c needs a value", optopt);
		default:
			usage_error("unknown option -%c", optopt);
		}
	}
	if (optind != argc - 1)
		usage_error("%s", optind == argc ? "no FILENAME"
						 : "one FILENAME only");
	fname = argv[optind];
	ops[OP_REOPEN].off = !closeprob;

	if (!maxlen || !maxop || !rbdy || !wbdy || !tbdy)
		usage_error("lengths and boundaries must be at least 1");
	if (maxlen > (1ULL << 40) || maxop > (1ULL << 40))
		usage_error("lengths above 1T are not supported");
	if (odirect) {
		rbdy = lcm(rbdy, DIO_ALIGN);
		wbdy = lcm(wbdy, DIO_ALIGN);
		tbdy = lcm(tbdy, DIO_ALIGN);
	}
	if (maxlen % rbdy || maxlen % wbdy || maxlen % tbdy)
		usage_error("-l %" PRIu64
			    " is not a multiple of the boundaries "
			    "(read %" PRIu64 ", write %" PRIu64
			    ", truncate %" PRIu64 ")",
			    maxlen, rbdy, wbdy, tbdy);
	if (maxop < rbdy || maxop < wbdy)
		usage_error("-o %" PRIu64 " is below a read or write boundary",
			    maxop);
}

/*
 * Allocates the model and the I/O buffer, opens (creating or emptying)
 * the test file, finds its block size and probes what it supports.
 */
static void setup(void)
{
	struct sigaction sa;
	struct timespec ts;
	struct stat st;
	int k;

	pagesize = sysconf(_SC_PAGESIZE);
	if (!seed_given) {
		clock_gettime(CLOCK_REALTIME, &ts);
		seed = mix64(ts.tv_sec ^ ((uint64_t)ts.tv_nsec << 20) ^
			     ((uint64_t)getpid() << 42)) &
		       0x7fffffff;
	}
	rng = seed;

	/*
	 * The model has room for a mapped read's last page past -l, whose
	 * bytes must be zero like everything past EOF.
	 */
	bufsize = roundup(umax(maxlen, maxop), pagesize) + pagesize;
	good = calloc(1, bufsize);
	if (!good || posix_memalign((void **)&iobuf, pagesize, bufsize)) {
		fprintf(stderr, "fsx: out of memory for -l/-o\n");
		exit(1);
	}

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_stop;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_sigbus;
	sigaction(SIGBUS, &sa, NULL);

	open_flags = O_RDWR | O_CLOEXEC | (odirect ? O_DIRECT : 0);
	open_file(O_CREAT | O_TRUNC);
	if (fstat(fd, &st) < 0)
		fail_sys("fstat", errno);
	cbdy = lcm(st.st_blksize > 0 ? st.st_blksize : 4096, wbdy);
	cpbdy = lcm(rbdy, wbdy);
	if (!quiet && numops)
		printf("fsx: %s: seed %llu, %llu operations\n", fname, seed,
		       numops);
	else if (!quiet)
		printf("fsx: %s: seed %llu, operations until a signal\n", fname,
		       seed);
	probe();
	for (k = 0; k < OP_NR; k++)
		if (enabled(k))
			total_weight += ops[k].weight;
}

static void summary(double secs)
{
	bool any = false;
	int k;

	if (quiet)
		return;
	if (stop_sig)
		printf("fsx: stopped by signal %d\n", (int)stop_sig);
	printf("fsx: passed: %llu operations\n", opnr);
	for (k = 0; k < OP_NR; k++)
		if (enabled(k))
			printf("fsx:   %-10s %llu\n", ops[k].name,
			       ops[k].count);
	for (k = 0; k < OP_NR; k++) {
		if (!ops[k].unsupported)
			continue;
		printf("%s %s",
		       any ? "," : "fsx: skipped as unsupported:", ops[k].what);
		any = true;
	}
	if (any)
		putchar('\n');
	printf("fsx: %.2f s, %.0f operations/s\n", secs,
	       secs > 0 ? opnr / secs : 0.0);
}

int main(int argc, char **argv)
{
	struct timespec t0, t1;

	parse_args(argc, argv);
	setup();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!stop_sig && (!numops || opnr < numops)) {
		opnr++;
		step();
		if (progress && opnr % progress == 0 && !quiet) {
			printf("fsx: %llu operations, size 0x%" PRIx64 "\n",
			       opnr, fsize);
			fflush(stdout);
		}
	}
	check_file("at the end");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	summary(t1.tv_sec - t0.tv_sec + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	return 0;
}
