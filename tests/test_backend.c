/* Choosing the backend: io_uring when it can be set up, epoll when
 * io_uring_setup is refused (ENOSYS, EPERM, EACCES), any other setup failure
 * returned; COIL_BACKEND forcing one; coil_backend_name inside and outside
 * coil_run. io_uring is denied to a child process with a seccomp filter (raw
 * BPF through prctl, as Docker's default profile does), so each case runs in
 * its own child: a filter cannot be removed, and coil_backend_name's probe
 * is made once per process. The parent never calls coil itself. */
#include "coil_test.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#if defined(__x86_64__)
#define NATIVE_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "the seccomp filter needs this architecture's AUDIT_ARCH"
#endif

/* From now on io_uring_setup fails with err in this process (and never
 * reaches the kernel). Returns 0 or -errno. */
static int deny_io_uring_setup(int err) {
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -errno;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) return -errno;
    return 0;
}

/* What a child checks. deny: 0 for no filter, else the errno to deny with;
 * env: COIL_BACKEND's value (NULL: unset). */
struct pick {
    int deny;
    const char *env;
    const char *want_name; /* what coil_backend_name says, before and inside */
    int want_rc;           /* what coil_run returns */
    const char *want_err;  /* a line coil writes on stderr, or NULL */
};

static void fail_child(const char *what, long long got) {
    fprintf(stderr, "CHILD FAILED: %s (%lld)\n", what, got);
    fflush(stderr);
    _exit(1);
}

static bool same_name(const char *a, const char *b) {
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* ---- the work done on the chosen backend: it must all work ---------------- */

struct work {
    int listener;
    struct coil_test_addr addr;
    const char *name_inside;
    int failures;
};

static void work_server(void *arg) {
    struct work *w = arg;
    int c = coil_accept(w->listener, NULL, NULL);
    if (c < 0) {
        w->failures++;
        return;
    }
    char buf[16];
    ssize_t n = coil_recv(c, buf, sizeof buf, 0);
    if (n != 4 || coil_sendall(c, buf, (size_t)n, 0, COIL_FOREVER) != n) w->failures++;
    coil_close(c);
}

static int add_one(void *arg) {
    return *(int *)arg + 1;
}

static void work_main(void *arg) {
    struct work *w = arg;
    w->name_inside = coil_backend_name();
    coil_id srv = coil_spawn(work_server, w, NULL);
    int fd = coil_socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || coil_connect(fd, COIL_TEST_SA(&w->addr), w->addr.len) != 0 ||
        coil_sendall(fd, "ping", 4, 0, COIL_FOREVER) != 4)
        w->failures++;
    char buf[4];
    if (coil_recv(fd, buf, sizeof buf, MSG_WAITALL) != 4 || memcmp(buf, "ping", 4) != 0)
        w->failures++;
    coil_close(fd);
    if (coil_join(srv, COIL_FOREVER) != 0) w->failures++;
    int x = 41;
    if (coil_offload(add_one, &x) != 42) w->failures++; /* the wake-up path of the backend */
    if (coil_sleep(COIL_MSEC) != 0) w->failures++;
}

static void pick_child(void *arg) {
    const struct pick *p = arg;
    if (p->env)
        setenv("COIL_BACKEND", p->env, 1);
    else
        unsetenv("COIL_BACKEND");
    if (p->deny) {
        int err = deny_io_uring_setup(p->deny);
        if (err) fail_child("installing the seccomp filter", err);
        /* The filter works: the system call itself is refused. */
        long r = syscall(__NR_io_uring_setup, 2, NULL);
        if (r != -1 || errno != p->deny) fail_child("io_uring_setup was not denied", errno);
    }
    if (!same_name(coil_backend_name(), p->want_name))
        fail_child("coil_backend_name before coil_run", 0);
    struct work w = {0};
    w.listener = coil_test_raw_bound(AF_INET, SOCK_STREAM, 4, &w.addr);
    if (w.listener < 0) fail_child("listening socket", w.listener);
    int rc = coil_run(work_main, &w);
    if (rc != p->want_rc) fail_child("coil_run's result", rc);
    if (rc == 0) {
        if (!same_name(w.name_inside, p->want_name))
            fail_child("coil_backend_name inside coil_run", 0);
        if (w.failures) fail_child("work on the chosen backend failed", w.failures);
    } else if (w.name_inside) {
        fail_child("main ran although coil_run failed", 0);
    }
    if (!same_name(coil_backend_name(), p->want_name))
        fail_child("coil_backend_name after coil_run", 0);
}

static void run_pick(const struct pick *p) {
    struct coil_test_child c;
    coil_test_fork_run(&c, pick_child, (void *)p, 30000);
    bool ok = coil_test_child_exited(&c, 0);
    bool said = !p->want_err || strstr(c.err, p->want_err) != NULL;
    if (!ok || !said) coil_test_child_describe(&c);
    assert_true(ok);
    assert_true(said);
    coil_test_child_free(&c);
}

/* seccomp filters are host system calls under qemu-user, which emulates
 * the target's: these cases run natively only (and qemu has no io_uring:
 * the automatic fallback is what test_default_choice sees there). */
static void skip_under_qemu(void) {
    if (coil_test_under_qemu()) skip();
}

/* ---- the cases -------------------------------------------------------------- */

static void test_default_choice(void **state) {
    (void)state;
    /* io_uring where the kernel has it (qemu-user emulates none: epoll). */
    struct pick p = {.want_name = coil_test_under_qemu() ? "epoll" : "io_uring"};
    run_pick(&p);
}

static void test_falls_back_when_denied_eperm(void **state) {
    (void)state;
    skip_under_qemu();
    struct pick p = {.deny = EPERM, .want_name = "epoll"}; /* Docker's default profile */
    run_pick(&p);
}

static void test_falls_back_when_denied_eacces(void **state) {
    (void)state;
    skip_under_qemu();
    struct pick p = {.deny = EACCES, .want_name = "epoll"};
    run_pick(&p);
}

static void test_falls_back_without_io_uring_enosys(void **state) {
    (void)state;
    skip_under_qemu();
    struct pick p = {.deny = ENOSYS, .want_name = "epoll"}; /* a kernel without it */
    run_pick(&p);
}

static void test_other_setup_errors_are_returned(void **state) {
    (void)state;
    skip_under_qemu();
    /* Out of memory is not "no io_uring here": nothing else is tried. */
    struct pick p = {.deny = ENOMEM, .want_name = NULL, .want_rc = -ENOMEM};
    run_pick(&p);
}

static void test_forced_epoll(void **state) {
    (void)state;
    struct pick p = {.env = "epoll", .want_name = "epoll"};
    run_pick(&p);
}

static void test_forced_epoll_when_denied(void **state) {
    (void)state;
    skip_under_qemu();
    struct pick p = {.deny = EPERM, .env = "epoll", .want_name = "epoll"};
    run_pick(&p);
}

static void test_forced_io_uring(void **state) {
    (void)state;
    skip_under_qemu();
    struct pick p = {.env = "io_uring", .want_name = "io_uring"};
    run_pick(&p);
}

static void test_forced_io_uring_unavailable_is_an_error(void **state) {
    (void)state;
    skip_under_qemu();
    struct pick p = {.deny = EPERM,
                     .env = "io_uring",
                     .want_name = NULL,
                     .want_rc = -EPERM,
                     .want_err = "coil: COIL_BACKEND=io_uring: the backend cannot be set up: "};
    run_pick(&p);
}

static void test_unknown_backend_is_an_error(void **state) {
    (void)state;
    struct pick p = {.env = "kqueue",
                     .want_name = NULL,
                     .want_rc = -EINVAL,
                     .want_err = "coil: COIL_BACKEND=kqueue: unknown backend (io_uring or epoll)"};
    run_pick(&p);
}

static void test_empty_variable_means_unset(void **state) {
    (void)state;
    struct pick p = {.env = "", .want_name = coil_test_under_qemu() ? "epoll" : "io_uring"};
    run_pick(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_choice),
        cmocka_unit_test(test_falls_back_when_denied_eperm),
        cmocka_unit_test(test_falls_back_when_denied_eacces),
        cmocka_unit_test(test_falls_back_without_io_uring_enosys),
        cmocka_unit_test(test_other_setup_errors_are_returned),
        cmocka_unit_test(test_forced_epoll),
        cmocka_unit_test(test_forced_epoll_when_denied),
        cmocka_unit_test(test_forced_io_uring),
        cmocka_unit_test(test_forced_io_uring_unavailable_is_an_error),
        cmocka_unit_test(test_unknown_backend_is_an_error),
        cmocka_unit_test(test_empty_variable_means_unset),
    };
    coil_test_apply_filter();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
