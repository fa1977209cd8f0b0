/*
 * The part of cmocka's API that coil's tests use, for the Windows build:
 * Debian packages no cmocka for mingw-w64, and the tests need only group
 * runs, the assertions below and skip(). Same contract as cmocka's: a
 * failed assertion prints where and why and ends the current test (longjmp
 * back to the runner, so never from inside a tasklet: see coil_test.h's
 * EXPECT); cmocka_run_group_tests returns the number of failed tests.
 * Output mimics cmocka's "[ RUN      ]" lines so that logs read the same.
 */
#ifndef COIL_WIN_CMOCKA_H
#define COIL_WIN_CMOCKA_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*CMUnitTestFunction)(void **state);
typedef int (*CMFixtureFunction)(void **state);

struct CMUnitTest {
    const char *name;
    CMUnitTestFunction test_func;
    CMFixtureFunction setup_func;
    CMFixtureFunction teardown_func;
    void *initial_state;
};

#define cmocka_unit_test(f)                                                                        \
    { #f, f, NULL, NULL, NULL }
#define cmocka_unit_test_teardown(f, t)                                                            \
    { #f, f, NULL, t, NULL }
#define cmocka_unit_test_setup(f, s)                                                               \
    { #f, f, s, NULL, NULL }
#define cmocka_unit_test_setup_teardown(f, s, t)                                                   \
    { #f, f, s, t, NULL }

struct coil_cmocka_state {
    jmp_buf jump;
    int skipped;
};

static inline struct coil_cmocka_state *coil_cmocka(void) {
    static struct coil_cmocka_state st;
    return &st;
}

static inline void print_message(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

static inline void print_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
}

__attribute__((noreturn)) static inline void coil_cmocka_fail(const char *file, int line) {
    print_error("%s:%d: error: Failure!\n", file, line);
    longjmp(coil_cmocka()->jump, 1);
}

#define fail() coil_cmocka_fail(__FILE__, __LINE__)
#define fail_msg(...)                                                                              \
    do {                                                                                           \
        print_error("ERROR: " __VA_ARGS__);                                                        \
        print_error("\n");                                                                         \
        fail();                                                                                    \
    } while (0)
#define skip()                                                                                     \
    do {                                                                                           \
        coil_cmocka()->skipped = 1;                                                                \
        longjmp(coil_cmocka()->jump, 1);                                                           \
    } while (0)

#define coil_cmocka_check(cond, ...)                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            print_error(__VA_ARGS__);                                                              \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

#define assert_true(c)     coil_cmocka_check((c), "%s\n", #c)
#define assert_false(c)    coil_cmocka_check(!(c), "!(%s)\n", #c)
#define assert_non_null(p) coil_cmocka_check((p) != NULL, "%s is NULL\n", #p)
#define assert_null(p)     coil_cmocka_check((p) == NULL, "%s is not NULL\n", #p)
#define assert_int_equal(a, b)                                                                     \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        coil_cmocka_check(a_ == b_, "%lld != %lld (%s, %s)\n", a_, b_, #a, #b);                    \
    } while (0)
#define assert_int_not_equal(a, b)                                                                 \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        coil_cmocka_check(a_ != b_, "%lld == %lld (%s, %s)\n", a_, b_, #a, #b);                    \
    } while (0)
#define assert_ptr_equal(a, b)                                                                     \
    coil_cmocka_check((const void *)(a) == (const void *)(b), "%p != %p\n", (const void *)(a),     \
                      (const void *)(b))
#define assert_string_equal(a, b)                                                                  \
    coil_cmocka_check(strcmp((a), (b)) == 0, "\"%s\" != \"%s\"\n", (a), (b))
#define assert_memory_equal(a, b, n)                                                               \
    coil_cmocka_check(memcmp((a), (b), (n)) == 0, "%s and %s differ\n", #a, #b)

static inline int coil_cmocka_run(const char *group, const struct CMUnitTest *tests, size_t n,
                                  CMFixtureFunction setup, CMFixtureFunction teardown) {
    volatile int failed = 0, skipped = 0;
    void *group_state = NULL;
    print_message("[==========] %s: Running %u test(s).\n", group, (unsigned)n);
    if (setup && setup(&group_state) != 0) {
        print_error("[  ERROR   ] %s: group setup failed\n", group);
        return (int)n;
    }
    for (size_t i = 0; i < n; i++) {
        struct coil_cmocka_state *st = coil_cmocka();
        void *state = tests[i].initial_state ? tests[i].initial_state : group_state;
        st->skipped = 0;
        print_message("[ RUN      ] %s\n", tests[i].name);
        volatile int ok = 0;
        if (setjmp(st->jump) == 0) {
            if (tests[i].setup_func && tests[i].setup_func(&state) != 0) fail();
            tests[i].test_func(&state);
            ok = 1;
        }
        if (tests[i].teardown_func && setjmp(st->jump) == 0) tests[i].teardown_func(&state);
        if (st->skipped) {
            skipped++;
            print_message("[  SKIPPED ] %s\n", tests[i].name);
        } else if (ok) {
            print_message("[       OK ] %s\n", tests[i].name);
        } else {
            failed++;
            print_message("[  FAILED  ] %s\n", tests[i].name);
        }
    }
    if (teardown) teardown(&group_state);
    print_message("[==========] %s: %u test(s) run.\n", group, (unsigned)n);
    print_message("[  PASSED  ] %u test(s).\n", (unsigned)(n - (size_t)failed - (size_t)skipped));
    if (skipped) print_message("[  SKIPPED ] %d test(s).\n", skipped);
    if (failed) print_message("[  FAILED  ] %d test(s).\n", failed);
    return failed;
}

#define cmocka_run_group_tests(tests, setup, teardown)                                             \
    coil_cmocka_run(#tests, (tests), sizeof(tests) / sizeof((tests)[0]), (setup), (teardown))

static inline void cmocka_set_test_filter(const char *pattern) {
    (void)pattern;
}

#endif /* COIL_WIN_CMOCKA_H */
