/* SPDX-License-Identifier: MIT */
/*
 * test_buddy.c - the arena's allocator and the arena itself: allocation,
 * freeing and coalescing, fragmentation, exhaustion, alignment, a long
 * random run checked against a model, and the sealed memfd.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "aiod-internal.h"

#define SIZE (1u << 20)
#define MIN 256u

static int setup(void **state)
{
	struct aiod__buddy *b = malloc(sizeof(*b));

	if (!b || aiod__buddy_init(b, SIZE, MIN))
		return -1;
	*state = b;
	return 0;
}

static int teardown(void **state)
{
	aiod__buddy_fini(*state);
	free(*state);
	return 0;
}

static void test_buddy_init_rejects_bad_sizes(void **state)
{
	struct aiod__buddy b;

	(void)state;
	assert_int_equal(aiod__buddy_init(&b, 3u << 20, MIN), -EINVAL);
	assert_int_equal(aiod__buddy_init(&b, SIZE, 300), -EINVAL);
	assert_int_equal(aiod__buddy_init(&b, MIN, SIZE), -EINVAL);
}

static void test_buddy_rounds_up_and_aligns(void **state)
{
	struct aiod__buddy *b = *state;
	int64_t small = aiod__buddy_alloc(b, 1);
	int64_t mid = aiod__buddy_alloc(b, 300);
	int64_t page = aiod__buddy_alloc(b, 4096);
	int64_t big = aiod__buddy_alloc(b, 5000);

	assert_true(small >= 0 && mid >= 0 && page >= 0 && big >= 0);
	assert_int_equal(aiod__buddy_block_size(b, (uint64_t)small), MIN);
	assert_int_equal(aiod__buddy_block_size(b, (uint64_t)mid), 512);
	assert_int_equal(aiod__buddy_block_size(b, (uint64_t)page), 4096);
	assert_int_equal(aiod__buddy_block_size(b, (uint64_t)big), 8192);
	assert_int_equal(page % 4096, 0);
	assert_int_equal(big % 8192, 0);
	assert_int_equal(b->used, MIN + 512 + 4096 + 8192);
}

static void test_buddy_free_coalesces(void **state)
{
	struct aiod__buddy *b = *state;
	int64_t off[8];

	for (int i = 0; i < 8; i++)
		off[i] = aiod__buddy_alloc(b, 1000);
	for (int i = 7; i >= 0; i--)
		aiod__buddy_free(b, (uint64_t)off[i]);
	assert_int_equal(b->used, 0);
	/* Everything merged back: the whole range is one block again. */
	assert_int_equal(aiod__buddy_alloc(b, SIZE), 0);
	assert_int_equal(aiod__buddy_alloc(b, 1), -ENOMEM);
}

static void test_buddy_exhaustion(void **state)
{
	struct aiod__buddy *b = *state;
	unsigned n = 0;

	while (aiod__buddy_alloc(b, 4096) >= 0)
		n++;
	assert_int_equal(n, SIZE / 4096);
	assert_int_equal(b->used, SIZE);
	assert_int_equal(aiod__buddy_alloc(b, 1), -ENOMEM);
	assert_int_equal(aiod__buddy_alloc(b, 0), -ENOMEM);
	assert_int_equal(aiod__buddy_alloc(b, SIZE + 1), -ENOMEM);
}

static void test_buddy_fragmentation(void **state)
{
	struct aiod__buddy *b = *state;
	const unsigned n = SIZE / MIN;
	int64_t *off = malloc(n * sizeof(*off));

	for (unsigned i = 0; i < n; i++)
		assert_int_equal(off[i] = aiod__buddy_alloc(b, MIN), (int64_t)i * MIN);
	for (unsigned i = 0; i < n; i += 2)
		aiod__buddy_free(b, (uint64_t)off[i]);
	/* Half is free, but in holes of one block: nothing bigger fits. */
	assert_int_equal(b->used, SIZE / 2);
	assert_int_equal(aiod__buddy_alloc(b, 2 * MIN), -ENOMEM);
	int64_t hole = aiod__buddy_alloc(b, MIN);

	assert_true(hole >= 0 && (hole / MIN) % 2 == 0);
	aiod__buddy_free(b, (uint64_t)hole);
	for (unsigned i = 1; i < n; i += 2)
		aiod__buddy_free(b, (uint64_t)off[i]);
	assert_int_equal(aiod__buddy_alloc(b, SIZE), 0);
	free(off);
}

/* A long random run: no two live blocks overlap, and all frees merge. */
static void test_buddy_random_against_model(void **state)
{
	struct aiod__buddy *b = *state;
	enum { SLOTS = 512 };
	int64_t off[SLOTS];
	size_t len[SLOTS];
	unsigned char *owner = calloc(SIZE / MIN, 1);
	size_t used = 0;

	srandom(42);
	for (int i = 0; i < SLOTS; i++)
		off[i] = -1;
	for (int step = 0; step < 200000; step++) {
		int i = (int)(random() % SLOTS);

		if (off[i] >= 0) {
			size_t blk = aiod__buddy_block_size(b, (uint64_t)off[i]);

			memset(owner + off[i] / MIN, 0, blk / MIN);
			aiod__buddy_free(b, (uint64_t)off[i]);
			used -= blk;
			off[i] = -1;
			continue;
		}
		len[i] = 1 + (size_t)(random() % (1u << (random() % 16)));
		off[i] = aiod__buddy_alloc(b, len[i]);
		if (off[i] < 0) {
			assert_int_equal(off[i], -ENOMEM);
			continue;
		}
		size_t blk = aiod__buddy_block_size(b, (uint64_t)off[i]);

		assert_true(blk >= len[i] && blk < 2 * len[i] + MIN);
		assert_int_equal(off[i] % blk, 0);
		for (size_t k = 0; k < blk / MIN; k++)
			assert_int_equal(owner[off[i] / MIN + k], 0);
		memset(owner + off[i] / MIN, 1, blk / MIN);
		used += blk;
		assert_int_equal(b->used, used);
	}
	for (int i = 0; i < SLOTS; i++)
		if (off[i] >= 0)
			aiod__buddy_free(b, (uint64_t)off[i]);
	assert_int_equal(b->used, 0);
	assert_int_equal(aiod__buddy_alloc(b, SIZE), 0);
	free(owner);
}

static void test_buddy_bad_free_aborts(void **state)
{
	struct aiod__buddy *b = *state;
	int64_t off = aiod__buddy_alloc(b, 1024);
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		close(STDERR_FILENO);
		aiod__buddy_free(b, (uint64_t)off + MIN);  /* not a block */
		_exit(0);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void test_buddy_arena_header_and_seals(void **state)
{
	struct aiod__arena a;
	const struct aiod_arena_hdr *hdr;
	int seals;

	(void)state;
	assert_int_equal(aiod__arena_init(&a, SIZE), 0);
	hdr = (const struct aiod_arena_hdr *)a.base;
	assert_int_equal(hdr->magic, AIOD_PROTO_MAGIC);
	assert_int_equal(hdr->version, AIOD_PROTO_VERSION);
	assert_int_equal(hdr->size, SIZE);
	assert_int_equal(hdr->msg_size, sizeof(struct aiod_msg));
	/* The header's block is taken: nothing else is handed out there. */
	assert_int_equal(a.alloc.used, AIOD_ARENA_RESERVED);
	assert_true(aiod__buddy_alloc(&a.alloc, 1) >= AIOD_ARENA_RESERVED);
	seals = fcntl(a.fd, F_GET_SEALS);
	assert_int_equal(seals & (F_SEAL_SHRINK | F_SEAL_GROW),
			 F_SEAL_SHRINK | F_SEAL_GROW);
	assert_int_equal(ftruncate(a.fd, SIZE / 2), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(fcntl(a.fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	aiod__arena_fini(&a);
}

static void test_buddy_protocol_layout(void **state)
{
	(void)state;
	/* The wire format: fixed offsets a worker of this version relies on. */
	assert_int_equal(offsetof(struct aiod_msg, op), 0);
	assert_int_equal(offsetof(struct aiod_msg, flags), 4);
	assert_int_equal(offsetof(struct aiod_msg, id), 8);
	assert_int_equal(sizeof(struct aiod_bell), 8);
	assert_int_equal(sizeof(struct aiod_done), 16);
	assert_int_equal(offsetof(struct aiod_msg, result) % 8, 0);
	assert_true(sizeof(struct aiod_msg) <= 1024);
	assert_int_equal(AIOD_OP_NOP, 0);
	assert_int_equal(AIOD_OP_LOCK, 32);
	assert_int_equal(AIOD_OP_READDIRPLUS, 33);
	assert_int_equal(AIOD_OP_PWRITE_PIPE, 34);
	assert_int_equal(AIOD_OP_FLUSH, 35);
	assert_int_equal(AIOD_OP_FILEATTR, 36);
	assert_int_equal(AIOD_OP__COUNT, 37);
	for (unsigned op = 0; op < AIOD_OP__COUNT; op++)
		assert_string_not_equal(aiod_op_name(op), "?");
	assert_string_equal(aiod_op_name(AIOD_OP__COUNT), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buddy_init_rejects_bad_sizes),
		cmocka_unit_test_setup_teardown(test_buddy_rounds_up_and_aligns, setup, teardown),
		cmocka_unit_test_setup_teardown(test_buddy_free_coalesces, setup, teardown),
		cmocka_unit_test_setup_teardown(test_buddy_exhaustion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_buddy_fragmentation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_buddy_random_against_model, setup, teardown),
		cmocka_unit_test_setup_teardown(test_buddy_bad_free_aborts, setup, teardown),
		cmocka_unit_test(test_buddy_arena_header_and_seals),
		cmocka_unit_test(test_buddy_protocol_layout),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
