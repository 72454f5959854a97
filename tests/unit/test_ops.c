/* Placeholder until the per-op tests land. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "aiod-internal.h"
static void test_ops_placeholder(void **state) { (void)state; assert_string_equal(aiod_op_name(AIOD_OP_PREAD), "pread"); }
int main(void) { const struct CMUnitTest t[] = { cmocka_unit_test(test_ops_placeholder) }; return cmocka_run_group_tests(t, NULL, NULL); }
