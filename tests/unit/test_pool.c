#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "aiod-internal.h"
static void test_buddy_smoke(void **state) { (void)state; struct aiod__buddy b; assert_int_equal(aiod__buddy_init(&b, 1<<20, 256), 0); aiod__buddy_fini(&b);}
int main(void) { const struct CMUnitTest t[] = { cmocka_unit_test(test_buddy_smoke) }; return cmocka_run_group_tests(t, NULL, NULL); }
