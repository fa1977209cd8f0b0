/* Shared helpers for coil's tests (cmocka). Each tests/test_*.c is its own
 * executable, registered with ctest by tests/CMakeLists.txt. */
#ifndef COIL_TEST_H
#define COIL_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include <coil.h>

/* Set by the ctest registration of the Valgrind run: scale loops down there. */
static inline bool coil_test_under_valgrind(void) {
    return getenv("COIL_UNDER_VALGRIND") != NULL;
}

/* Runs fn(arg) as the main tasklet and asserts that coil_run returned 0. */
#define COIL_RUN_OK(fn, arg) assert_int_equal(coil_run((fn), (arg)), 0)

#endif
