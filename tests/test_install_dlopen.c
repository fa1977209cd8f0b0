// coil-test: link-shared
/* coil_install() and shared objects that come and go: a plugin (tests/plugin/,
 * built twice: linked -z now so its GOT is in its RELRO region, and lazily
 * bound without RELRO so its GOT stays writable) loaded with dlopen is
 * diverted by the next coil_install, through its PLT and through a function
 * pointer it took; coil_uninstall after the plugin was dlclose'd leaves the
 * unmapped object alone; and coil_install/coil_uninstall running while
 * another thread loads and unloads the plugin neither crash nor corrupt it.
 * Each case runs in a child of its own (a crash there is a failed case). */
#define _GNU_SOURCE
// coil-test: tsan (coil_install and coil_uninstall while another thread dlopens)
#include "coil_test.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>

typedef ssize_t (*read_fn)(int, void *, size_t);

struct plugin {
    void *handle;
    read_fn read;      /* coil_test_plugin_read: its call of read is a PLT call */
    read_fn *read_ptr; /* coil_test_plugin_read_ptr: read's address, as data */
};

static bool plugin_open_path(struct plugin *p, const char *path) {
    p->handle = dlopen(path, RTLD_LAZY | RTLD_LOCAL);
    if (!p->handle) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return false;
    }
    p->read = (read_fn)dlsym(p->handle, "coil_test_plugin_read");
    p->read_ptr = (read_fn *)dlsym(p->handle, "coil_test_plugin_read_ptr");
    return p->read && p->read_ptr;
}

static bool plugin_open(struct plugin *p) {
    return plugin_open_path(p, COIL_TEST_PLUGIN);
}

static const char *const plugin_paths[] = {COIL_TEST_PLUGIN, COIL_TEST_PLUGIN_LAZY};

/* A crash in a child must show as the signal it is: cmocka's handlers,
 * inherited through fork, would turn it into a confusing exit code. */
static void child_defaults(void) {
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    signal(SIGABRT, SIG_DFL);
    signal(SIGILL, SIG_DFL);
}

static void child_run(void (*fn)(void *), void *arg, const char *what) {
    coil_test_child_run(fn, arg, coil_test_under_valgrind() ? 120000 : 20000, what);
}

/* ---- a plugin loaded after coil_install is diverted by the next one ------------- */

struct parks {
    read_fn read;
    int fds[2];
    ssize_t got;
    bool writer_ran_first; /* the writer ran while the read waited: it parked */
    bool wrote;
};

static void parks_writer(void *arg) {
    struct parks *p = arg;
    coil_sleep(20 * COIL_MSEC);
    p->wrote = true;
    if (write(p->fds[1], "x", 1) != 1) p->wrote = false;
}

static void parks_main(void *arg) {
    struct parks *p = arg;
    coil_spawn(parks_writer, p, NULL);
    char c;
    p->got = p->read(p->fds[0], &c, 1); /* blocks the whole thread unless diverted */
    p->writer_ran_first = p->wrote;
}

/* Exit 0 when read through r parks only its tasklet. */
static int read_parks(read_fn r) {
    struct parks p = {.read = r};
    if (pipe(p.fds) != 0) return 1;
    /* A read the writer never answers would hang the child: the time limit
     * of child_run ends it. */
    int rc = coil_run(parks_main, &p);
    close(p.fds[0]);
    close(p.fds[1]);
    if (rc != 0) return 2;
    if (p.got != 1 || !p.writer_ran_first) return 3;
    return 0;
}

static void diverted_child(void *arg) {
    const char *path = arg;
    child_defaults();
    struct plugin pl;
    if (coil_install() != 0) _exit(10);
    if (!plugin_open_path(&pl, path)) _exit(11);
    if (coil_install() != 0) _exit(12); /* the plugin's GOT now */
    int e = read_parks(pl.read);
    if (e) _exit(20 + e);
    e = read_parks(*pl.read_ptr);
    if (e) _exit(30 + e);
    if (coil_uninstall() != 0) _exit(40);
    if (dlclose(pl.handle) != 0) _exit(41);
    _exit(0);
}

static void test_dlopened_plugin_diverted_by_next_install(void **state) {
    (void)state;
    for (size_t i = 0; i < 2; i++)
        child_run(diverted_child, (void *)plugin_paths[i],
                  "exit 2x: the plugin's PLT call of read not diverted; 3x: its pointer to read");
}

/* ---- a plugin loaded after coil_install is diverted by its dlopen alone ---------- */

/* A sanitizer runtime linked into the executable defines dlopen (its
 * interceptor): the executable's call of it has no GOT slot to divert. */
static bool dlopen_bound_in_executable(void) {
    void *f = dlsym(RTLD_DEFAULT, "dlopen");
    Dl_info fi, mi;
    if (!f || !dladdr(f, &fi) || !dladdr((void *)child_defaults, &mi)) return false;
    if (fi.dli_fbase != mi.dli_fbase) return false;
    print_message("skipped: this executable binds dlopen to itself (a sanitizer's)\n");
    return true;
}

static void dlopen_diverts_child(void *arg) {
    const char *path = arg;
    child_defaults();
    struct plugin pl;
    if (coil_install() != 0) _exit(10);
    /* The test's own dlopen is diverted (it links libcoil.so), unless a
     * sanitizer runtime linked into the executable defines dlopen. */
    if (!plugin_open_path(&pl, path)) _exit(11);
    int e = read_parks(pl.read);
    if (e) _exit(20 + e);
    e = read_parks(*pl.read_ptr);
    if (e) _exit(30 + e);
    /* A failed dlopen is the loader's own failure, with its message. */
    dlerror();
    if (dlopen("/nonexistent/coil-no-such-plugin.so", RTLD_NOW) != NULL) _exit(50);
    const char *msg = dlerror();
    if (!msg || !strstr(msg, "coil-no-such-plugin")) _exit(51);
    if (coil_uninstall() != 0) _exit(40);
    if (dlclose(pl.handle) != 0) _exit(41);
    _exit(0);
}

static void test_dlopen_diverts_without_second_install(void **state) {
    (void)state;
    if (dlopen_bound_in_executable()) skip();
    for (size_t i = 0; i < 2; i++)
        child_run(dlopen_diverts_child, (void *)plugin_paths[i],
                  "exit 2x: the plugin's PLT call of read not diverted after dlopen; 3x: its "
                  "pointer; 5x: a failed dlopen's error");
}

/* ---- a bare name is searched for as its caller would search ---------------------- */

/* This executable's DT_RUNPATH names the plugin's directory (CMake:
 * BUILD_RPATH), coil's library has no such path, and nothing else does: the
 * loader finds "libcoil_test_plugin.so" only when it searches on behalf of
 * this executable. coil leaves such a call to the loader as the caller made it
 * (made from coil's own object it would fail), and the object it loads is
 * diverted by the next coil_install (coil.h). A name with "$ORIGIN" (the
 * caller's directory) is left to the loader too. */
static void bare_name_child(void *arg) {
    (void)arg;
    child_defaults();
    if (coil_install() != 0) _exit(10);
    void *h = dlopen(COIL_TEST_PLUGIN_NAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        _exit(11);
    }
    read_fn r = (read_fn)dlsym(h, "coil_test_plugin_read");
    if (!r) _exit(12);
    if (coil_install() != 0) _exit(13);
    int e = read_parks(r);
    if (e) _exit(20 + e);
    dlerror();
    if (dlopen("$ORIGIN/coil-no-such-plugin.so", RTLD_NOW) != NULL) _exit(30);
    const char *msg = dlerror();
    if (!msg || !strstr(msg, "coil-no-such-plugin")) _exit(31);
    if (dlclose(h) != 0) _exit(40);
    _exit(0);
}

static void test_dlopen_bare_name_searched_as_caller(void **state) {
    (void)state;
    child_run(bare_name_child, NULL,
              "exit 11: a bare name not found through the caller's DT_RUNPATH; 2x: the "
              "plugin's read not diverted by the next install; 3x: $ORIGIN");
}

/* dlmopen into the base namespace is dlopen's case: diverted at once. Into
 * a new namespace (a C library of its own) it is left to the loader, and
 * nothing there is diverted; its read is not called (it would block the
 * thread). */
static void dlmopen_child(void *arg) {
    (void)arg;
    child_defaults();
    if (coil_install() != 0) _exit(10);
    void *h = dlmopen(LM_ID_BASE, COIL_TEST_PLUGIN, RTLD_NOW | RTLD_LOCAL);
    if (!h) _exit(11);
    read_fn r = (read_fn)dlsym(h, "coil_test_plugin_read");
    if (!r) _exit(12);
    int e = read_parks(r);
    if (e) _exit(20 + e);
    void *n = dlmopen(LM_ID_NEWLM, COIL_TEST_PLUGIN, RTLD_NOW | RTLD_LOCAL);
    if (!n) {
        fprintf(stderr, "dlmopen: %s\n", dlerror());
        _exit(30);
    }
    Lmid_t ns = LM_ID_BASE;
    if (dlinfo(n, RTLD_DI_LMID, &ns) != 0 || ns == LM_ID_BASE) _exit(31);
    if (dlclose(n) != 0 || dlclose(h) != 0) _exit(40);
    _exit(0);
}

static void test_dlmopen(void **state) {
    (void)state;
    /* A sanitizer's runtime (its own dlopen) and Valgrind do not follow a
     * second namespace's C library: natively only. */
    if (dlopen_bound_in_executable() || coil_test_under_valgrind()) skip();
    child_run(dlmopen_child, NULL,
              "exit 2x: a plugin dlmopen'ed into the base namespace not diverted; 3x: a new "
              "namespace");
}

/* ---- coil_uninstall after the plugin is gone ---------------------------------- */

static void unloaded_child(void *arg) {
    const char *path = arg;
    child_defaults();
    struct plugin pl;
    if (!plugin_open_path(&pl, path)) _exit(10);
    if (coil_install() != 0) _exit(11);
    if (dlclose(pl.handle) != 0) _exit(12);
    /* Its GOT is unmapped now (or belongs to whatever is mapped there next):
     * coil_uninstall must not write into it. */
    if (coil_uninstall() != 0) _exit(13);
    /* And a later load starts from the loader's own relocations. */
    if (!plugin_open_path(&pl, path)) _exit(14);
    int fds[2];
    char c = 0;
    if (pipe(fds) != 0 || write(fds[1], "y", 1) != 1) _exit(15);
    if (pl.read(fds[0], &c, 1) != 1 || c != 'y') _exit(16);
    _exit(0);
}

static void test_uninstall_after_dlclose(void **state) {
    (void)state;
    for (size_t i = 0; i < 2; i++)
        child_run(unloaded_child, (void *)plugin_paths[i], "coil_uninstall after dlclose");
}

/* ---- coil_install racing dlopen/dlclose on another thread ----------------------- */

struct race {
    int rounds;
    atomic_bool stop;
    int bad; /* the loader thread's failure code, 0 if none */
};

static void *loader_thread(void *arg) {
    struct race *r = arg;
    int fds[2];
    if (pipe(fds) != 0) {
        r->bad = 1;
        return NULL;
    }
    for (int i = 0; i < r->rounds && !atomic_load(&r->stop); i++) {
        struct plugin pl;
        if (!plugin_open(&pl)) {
            r->bad = 2;
            break;
        }
        /* Outside coil_run the calls are libc's, installed or not. */
        char c = 0;
        if (write(fds[1], "z", 1) != 1 || pl.read(fds[0], &c, 1) != 1 || c != 'z') {
            r->bad = 3;
            break;
        }
        /* An atomic load: coil_install rewrites this pointer on the main
         * thread meanwhile, with one aligned atomic store, as ld.so rewrites
         * a GOT slot; compiled code reads such a slot with one aligned load,
         * which is what this says to TSan (a plain C load would be a race
         * in the test, not in coil). */
        read_fn rd = __atomic_load_n(pl.read_ptr, __ATOMIC_ACQUIRE);
        if (write(fds[1], "w", 1) != 1 || rd(fds[0], &c, 1) != 1 || c != 'w') {
            r->bad = 4;
            break;
        }
        if (dlclose(pl.handle) != 0) {
            r->bad = 5;
            break;
        }
    }
    close(fds[0]);
    close(fds[1]);
    return NULL;
}

static void race_child(void *arg) {
    (void)arg;
    child_defaults();
    struct race r = {.rounds = coil_test_under_valgrind() ? 30 : 500};
    atomic_init(&r.stop, false);
    pthread_t th;
    if (pthread_create(&th, NULL, loader_thread, &r) != 0) _exit(10);
    for (int i = 0; i < r.rounds; i++) {
        if (coil_install() != 0) _exit(11);
        if (coil_uninstall() != 0) _exit(12);
    }
    atomic_store(&r.stop, true);
    pthread_join(th, NULL);
    if (r.bad) _exit(20 + r.bad);
    /* Still whole afterwards: a fresh load is diverted by an install. */
    struct plugin pl;
    if (!plugin_open(&pl)) _exit(30);
    if (coil_install() != 0) _exit(31);
    int e = read_parks(pl.read);
    if (e) _exit(40 + e);
    _exit(0);
}

static void test_install_racing_dlopen(void **state) {
    (void)state;
    /* qemu-user (Debian 12's 7.2) aborts on its own assertions when a child
     * forked from a multithreaded process starts a thread: natively only. */
    if (coil_test_under_qemu()) skip();
    child_run(race_child, NULL, "coil_install/coil_uninstall while another thread dlopens");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dlopened_plugin_diverted_by_next_install),
        cmocka_unit_test(test_dlopen_diverts_without_second_install),
        cmocka_unit_test(test_dlopen_bare_name_searched_as_caller),
        cmocka_unit_test(test_dlmopen),
        cmocka_unit_test(test_uninstall_after_dlclose),
        cmocka_unit_test(test_install_racing_dlopen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
