/* Child processes are Linux only for now (coil.h, "Child processes"): on
 * Windows every call answers -ENOTSUP, inside a tasklet and outside, and a
 * failed spawn leaves the coil_proc with no child and no fd. */
#include "win_test.h"

static void check_calls(coil_proc *p) {
    const char *argv[] = {"cmd", "/c", "exit 0", NULL};
    coil_proc_opts o = {.argv = argv, .stdio = {COIL_PROC_PIPE, COIL_PROC_PIPE, COIL_PROC_PIPE}};
    EXPECT_EQ(coil_proc_spawn(p, &o), -ENOTSUP);
    EXPECT_EQ(p->pid, -1);
    EXPECT_EQ(p->stdin_fd, -1);
    EXPECT_EQ(p->stdout_fd, -1);
    EXPECT_EQ(p->stderr_fd, -1);
    EXPECT_EQ(p->status, -1);
    EXPECT_EQ(coil_proc_wait(p, COIL_FOREVER), -ENOTSUP);
    EXPECT_EQ(coil_proc_kill(p, 15), -ENOTSUP);
    EXPECT_EQ(coil_proc_release(p), -ENOTSUP);
}

static void proc_main(void *arg) {
    check_calls(arg);
}

static void test_not_supported(void **state) {
    (void)state;
    coil_proc p;
    COIL_RUN_CHECKED(proc_main, &p);
    coil_test_reset_failures();
    check_calls(&p);
    coil_test_assert_no_failure();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_supported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
