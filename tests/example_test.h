/* What the examples' end-to-end tests (test_echo_example, test_http_example)
 * share: the --threads of the group of cases running, and the check of a
 * program's usage on bad arguments. Each test includes it after coil_test.h. */
#ifndef COIL_EXAMPLE_TEST_H
#define COIL_EXAMPLE_TEST_H

#include "coil_test.h"

/* The --threads of the group of cases running: "1" or "2" (each test runs
 * its server's cases twice, the second time as a group of two schedulers). */
static const char *threads = "1";

static inline int with_one_thread(void **state) {
    (void)state;
    threads = "1";
    return 0;
}

static inline int with_two_threads(void **state) {
    (void)state;
    threads = "2";
    return 0;
}

/* argv must print its usage (and `says`, unless NULL) and exit 2. */
static inline void expect_usage_saying(char **argv, const char *says) {
    struct coil_test_child c;
    coil_test_fork_run(&c, coil_test_exec_child, argv, 10000);
    if (!coil_test_child_exited(&c, 2) || !strstr(c.err, "usage:") ||
        (says && !strstr(c.err, says))) {
        print_message("%s %s ...\n", argv[0], argv[1] ? argv[1] : "");
        coil_test_child_describe(&c);
        fail_msg("bad arguments did not give usage and exit 2");
    }
    coil_test_child_free(&c);
}

static inline void expect_usage(char **argv) {
    expect_usage_saying(argv, NULL);
}

#endif
