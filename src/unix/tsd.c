/*
 * coil_install's pthread_getspecific and pthread_setspecific: inside a
 * tasklet, pthread thread-specific data is the tasklet's own.
 *
 * Why. A library keeps per-thread state in pthread keys on the promise that
 * nothing else runs on its thread between two of its statements. Under
 * coil_install a tasklet may park inside such a library (a diverted recv, or
 * a pthread lock another thread holds) and the thread then runs other
 * tasklets, which use the same library: they would share its per-thread
 * state. OpenSSL 3 keeps its error queue so (ERR_get_state), and decides
 * what a failure was by looking at the queue's last entry: with 20 tasklets
 * loading a CA file while another thread used OpenSSL, one load in about
 * 2,000 failed (X509_load_cert_crl_file: "PEM lib"), because another
 * tasklet's entry sat on top of the queue when PEM_X509_INFO_read_bio looked
 * for its end-of-file mark. So each tasklet is, to pthread_getspecific, a
 * thread of its own: it starts with every key's value NULL, as a new thread
 * does, and at its end (after its function returns, on its own stack,
 * before its joiners hear of it) every value it set whose key has a
 * destructor is given to that destructor, in pthread's rounds (src/local.c),
 * as at a thread's exit. Outside tasklets the calls are libc's.
 *
 * What it needs of libc. A key's destructor and whether a key was deleted
 * (and perhaps created again) since a value was set are in glibc's table of
 * keys, __pthread_keys: an array of {seq, destr}, seq odd while the key
 * exists and bumped by each create and delete. glibc exports it for
 * libthread_db (the debugger's view of threads) together with descriptions
 * of its layout (_thread_db_* : size in bits, count, offset), and those
 * descriptions are what is read here, as libthread_db reads them. Where any
 * of them is missing or not as expected (another C library), nothing is
 * diverted and thread-specific data stays the thread's.
 *
 * Not diverted: the objects whose keys only hook the thread's exit for
 * state that is the thread's own: a sanitizer runtime (clang links it into
 * the executable, gcc loads libasan.so and its kin), which finds its record
 * of the running thread with pthread_getspecific (per tasklet, that record
 * was missing: ASan died at its first report), and a malloc other than
 * libc's (jemalloc, tcmalloc: a key whose destructor frees the thread's
 * cache would free it at every tasklet's end while the thread goes on).
 * They are found by an address inside each: the sanitizer runtime's
 * __sanitizer_print_stack_trace (ASan's, TSan's, LSan's and clang's UBSan
 * define it; gcc's libubsan, which makes no key calls, does not), and the
 * process's malloc (libc's, which is never diverted anyway, when no other
 * replaces it).
 *
 * After coil_uninstall a tasklet's values are dropped at its end, not given
 * to destructors: a destructor looks the library's state up again (OpenSSL's
 * do), and would find and free the thread's, which the library's calls reach
 * by then.
 *
 * Not covered: __thread (C11 _Thread_local) variables, which no call reaches.
 */
#include "internal.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>

static struct {
    const char *base; /* &__pthread_keys[0] */
    size_t stride;    /* bytes from one key's entry to the next */
    size_t count;     /* entries */
    size_t seq_off, destr_off;
    /* Set (release) once the above are: a wrapper reached through a slot
     * patched on another thread reads them only after reading this. */
    bool ready;
} keys;
static bool probed;
uintptr_t coil__tsd_keep[2];

/* libthread_db's description of a variable or a field: size in bits, number
 * of elements, offset in bytes. */
static const uint32_t *desc(const char *name) {
    return dlsym(RTLD_DEFAULT, name);
}

void coil__tsd_probe(void) {
    if (probed) return;
    probed = true;
    coil__tsd_keep[0] = (uintptr_t)dlsym(RTLD_DEFAULT, "__sanitizer_print_stack_trace");
    coil__tsd_keep[1] = (uintptr_t)dlsym(RTLD_DEFAULT, "malloc");
    const char *base = dlsym(RTLD_DEFAULT, "__pthread_keys");
    const uint32_t *array = desc("_thread_db___pthread_keys");
    const uint32_t *seq = desc("_thread_db_pthread_key_struct_seq");
    const uint32_t *destr = desc("_thread_db_pthread_key_struct_destr");
    if (!base || !array || !seq || !destr) return;
    size_t stride = array[0] / 8;
    /* Each field one word (uintptr_t seq; void (*destr)(void *)), inside its
     * entry; as many entries as pthread_key_create can hand out. */
    if (seq[0] != 8 * sizeof(uintptr_t) || destr[0] != 8 * sizeof(void (*)(void *)) ||
        seq[1] != 1 || destr[1] != 1 || seq[2] + sizeof(uintptr_t) > stride ||
        destr[2] + sizeof(void *) > stride || array[1] < PTHREAD_KEYS_MAX)
        return;
    keys.base = base;
    keys.stride = stride;
    keys.count = array[1];
    keys.seq_off = seq[2];
    keys.destr_off = destr[2];
    __atomic_store_n(&keys.ready, true, __ATOMIC_RELEASE);
    coil__ntsd_wraps = 2;
}

/* glibc's sequence number of key (odd: the key exists). Read without a
 * lock, as glibc's own pthread_getspecific reads it. */
static uintptr_t key_seq(pthread_key_t key) {
    return __atomic_load_n((const uintptr_t *)(keys.base + key * keys.stride + keys.seq_off),
                           __ATOMIC_RELAXED);
}

void (*coil__tsd_destructor(unsigned key, uintptr_t seq))(void *) {
    if (!coil__is_installed() || key >= keys.count || key_seq(key) != seq) return NULL;
    void (*d)(void *);
    memcpy(&d, keys.base + key * keys.stride + keys.destr_off, sizeof d);
    return d;
}

/* The running tasklet, if this thread's calls are diverted now. */
static inline struct coil__tasklet *inside(void) {
    if (COIL_LIKELY(!coil__is_installed()) || !__atomic_load_n(&keys.ready, __ATOMIC_ACQUIRE))
        return NULL;
    return coil__self();
}

static void *w_pthread_getspecific(pthread_key_t key) {
    struct coil__tasklet *t = inside();
    if (!t) return pthread_getspecific(key);
    if (key >= keys.count) return NULL; /* as glibc: no such key */
    uintptr_t seq = key_seq(key);
    return seq & 1 ? coil__tsd_get(t, key, seq) : NULL;
}

static int w_pthread_setspecific(pthread_key_t key, const void *value) {
    struct coil__tasklet *t = inside();
    if (!t) return pthread_setspecific(key, value);
    uintptr_t seq;
    if (key >= keys.count || !((seq = key_seq(key)) & 1)) return EINVAL; /* as glibc */
    return coil__tsd_set(t, key, seq, (void *)value);
}

const struct coil__wrap coil__tsd_wraps[] = {
    {"pthread_getspecific", (void *)w_pthread_getspecific},
    {"pthread_setspecific", (void *)w_pthread_setspecific},
};
size_t coil__ntsd_wraps; /* 2 once coil__tsd_probe has found glibc's table */
