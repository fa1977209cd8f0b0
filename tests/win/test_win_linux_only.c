/* The calls that are Linux only for now answer the same on Windows, inside a
 * tasklet and outside (coil.h): coil_signal_wait -ENOTSUP (after checking
 * for a NULL set, which is -EINVAL everywhere), coil_watchdog -ENOTSUP for
 * any threshold but 0 (turning it off is always possible) and -EINVAL for a
 * negative one. */
#include "win_test.h"

static void check_calls(void) {
    _sigset_t set = 0;
    EXPECT_EQ(coil_signal_wait(NULL, 0), -EINVAL);
    EXPECT_EQ(coil_signal_wait(&set, 0), -ENOTSUP);
    EXPECT_EQ(coil_signal_wait(&set, COIL_FOREVER), -ENOTSUP);
    EXPECT_EQ(coil_watchdog(-1), -EINVAL);
    EXPECT_EQ(coil_watchdog(100 * COIL_MSEC), -ENOTSUP);
    EXPECT_EQ(coil_watchdog(0), 0);
}

static void tasklet_main(void *arg) {
    (void)arg;
    check_calls();
}

static void test_not_supported(void **state) {
    (void)state;
    COIL_RUN_CHECKED(tasklet_main, NULL);
    coil_test_reset_failures();
    check_calls();
    coil_test_assert_no_failure();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_supported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
