// coil-test: link-shared
/* coil_install(): the pread family (pread, pread64, pwrite, pwrite64, preadv,
 * preadv64, pwritev, pwritev64, preadv2, preadv64v2, pwritev2, pwritev64v2)
 * inside a tasklet: a file's data at an offset, libc's results and errno, and
 * a read the disk must answer parks only its tasklet. This file links
 * libcoil.so (the marker above), so its own calls are diverted. Covered:
 *  - each name writes and reads at an offset, and leaves the file position
 *    alone; preadv2/pwritev2 with offset -1 use and move the file position;
 *  - short reads at end of file (pread, preadv across the end, past it: 0);
 *  - the errors, each the exact errno, and the same as the same call made
 *    outside coil_run (libc's): EBADF (a closed number, -1, a read of a
 *    write-only fd, a write of a read-only one), ESPIPE (a pipe, a socket),
 *    EINVAL (a negative offset, a negative vector count), EISDIR (a
 *    directory), EOPNOTSUPP (flags preadv2 does not know), EAGAIN
 *    (RWF_NOWAIT on data not in memory); errno is left alone on success;
 *  - a number that coil saw as a regular file, closed behind coil's back
 *    (the close system call, as libc's fclose does internally) and reused by
 *    a pipe: pread there is ESPIPE;
 *  - a large file (64 MiB; 8 under Valgrind) written with pwrite and pwritev
 *    and read back, dropped from the page cache first, with single calls;
 *  - four tasklets reading parts of a file that is not in the page cache while
 *    a fifth ticks: a read that waits for the disk parks only its tasklet
 *    (the ticker runs during it), and every byte is right.
 * The calls are made through tests/plugin/calls.c, a shared object whose GOT
 * coil_install rewrites in every build (the sanitizers' too).
 */
#define _GNU_SOURCE /* pread64, preadv2, RWF_NOWAIT */
// coil-test: tsan (on epoll a file read that must wait runs on the offload pool's threads)
#include "coil_test.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include "plugin/calls.h" /* after the system headers: it renames their calls */

static unsigned char byte_at(size_t i) {
    return (unsigned char)((i * 7 + i / 251) % 253);
}

/* A new file in the current directory (the build tree: a disk-backed file
 * system, where the page cache can be dropped; /tmp may be tmpfs), already
 * unlinked. */
static int temp_file(void) {
    char path[] = "./coil-pread-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

/* ---- each name, at an offset ------------------------------------------------ */

struct names {
    int fd;
};

static void names_main(void *arg) {
    struct names *x = arg;
    int fd = x->fd;
    char buf[64];
    /* qemu-user 7.2 (Debian 12) fails preadv2/pwritev2 with any flag set
     * (EOPNOTSUPP), with or without coil: flags only natively. */
    int dsync = coil_test_under_qemu() ? 0 : RWF_DSYNC;
    int hipri = coil_test_under_qemu() ? 0 : RWF_HIPRI;
    EXPECT_EQ(lseek(fd, 5, SEEK_SET), 5);
    /* writes: each at its own offset */
    EXPECT_EQ(pwrite(fd, "aaaa", 4, 0), 4);
    EXPECT_EQ(pwrite64(fd, "bbbb", 4, 4), 4);
    struct iovec w1[2] = {{"cc", 2}, {"cc", 2}};
    EXPECT_EQ(pwritev(fd, w1, 2, 8), 4);
    struct iovec w2[2] = {{"d", 1}, {"ddd", 3}};
    EXPECT_EQ(pwritev64(fd, w2, 2, 12), 4);
    struct iovec w3[1] = {{"eeee", 4}};
    EXPECT_EQ(pwritev2(fd, w3, 1, 16, dsync), 4);
    struct iovec w4[1] = {{"ffff", 4}};
    EXPECT_EQ(pwritev64v2(fd, w4, 1, 20, 0), 4);
    EXPECT_EQ(lseek(fd, 0, SEEK_CUR), 5); /* the file position is not moved */
    /* reads */
    memset(buf, 0, sizeof buf);
    EXPECT_EQ(pread(fd, buf, 24, 0), 24);
    EXPECT(memcmp(buf, "aaaabbbbccccddddeeeeffff", 24) == 0);
    memset(buf, 0, sizeof buf);
    EXPECT_EQ(pread64(fd, buf, 4, 4), 4);
    EXPECT(memcmp(buf, "bbbb", 4) == 0);
    char a[3], b[5];
    struct iovec r1[2] = {{a, 3}, {b, 5}};
    EXPECT_EQ(preadv(fd, r1, 2, 6), 8);
    EXPECT(memcmp(a, "bbc", 3) == 0 && memcmp(b, "cccdd", 5) == 0);
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    EXPECT_EQ(preadv64(fd, r1, 2, 14), 8);
    EXPECT(memcmp(a, "dde", 3) == 0 && memcmp(b, "eeeff", 5) == 0);
    memset(buf, 0, sizeof buf);
    struct iovec r2[1] = {{buf, 4}};
    EXPECT_EQ(preadv2(fd, r2, 1, 16, 0), 4);
    EXPECT(memcmp(buf, "eeee", 4) == 0);
    EXPECT_EQ(preadv64v2(fd, r2, 1, 20, hipri), 4);
    EXPECT(memcmp(buf, "ffff", 4) == 0);
    EXPECT_EQ(lseek(fd, 0, SEEK_CUR), 5);
    /* offset -1: the file position, which moves */
    EXPECT_EQ(preadv2(fd, r2, 1, -1, 0), 4);
    EXPECT(memcmp(buf, "bbbc", 4) == 0);
    EXPECT_EQ(lseek(fd, 0, SEEK_CUR), 9);
    struct iovec w5[1] = {{"XY", 2}};
    EXPECT_EQ(pwritev2(fd, w5, 1, -1, 0), 2);
    EXPECT_EQ(lseek(fd, 0, SEEK_CUR), 11);
    EXPECT_EQ(pread(fd, buf, 4, 8), 4);
    EXPECT(memcmp(buf, "cXYc", 4) == 0);
}

static void test_each_name(void **state) {
    (void)state;
    struct names x = {temp_file()};
    COIL_RUN_CHECKED(names_main, &x);
    close(x.fd);
}

/* ---- short reads at end of file ------------------------------------------------- */

static void eof_main(void *arg) {
    int fd = *(int *)arg;
    char buf[200];
    EXPECT_EQ(pread(fd, buf, 50, 80), 20);
    EXPECT_EQ(buf[0], (char)byte_at(80));
    EXPECT_EQ(buf[19], (char)byte_at(99));
    EXPECT_EQ(pread(fd, buf, 50, 100), 0);
    EXPECT_EQ(pread(fd, buf, 50, 1 << 20), 0);
    char a[10], b[10];
    struct iovec v[2] = {{a, 10}, {b, 10}};
    EXPECT_EQ(preadv(fd, v, 2, 85), 15);
    EXPECT_EQ(a[0], (char)byte_at(85));
    EXPECT_EQ(b[4], (char)byte_at(99));
    EXPECT_EQ(preadv2(fd, v, 2, 100, 0), 0);
    EXPECT_EQ(pread(fd, buf, 0, 0), 0);
}

static void test_short_reads_at_eof(void **state) {
    (void)state;
    int fd = temp_file();
    unsigned char data[100];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = byte_at(i);
    assert_int_equal(write(fd, data, sizeof data), sizeof data);
    COIL_RUN_CHECKED(eof_main, &fd);
    close(fd);
}

/* ---- errors: exact, and libc's ----------------------------------------------------- */

#define NERR 20

struct errs {
    int file, rdonly, wronly, dir, pipe[2], sock[2], closed;
    int minus_one; /* a count of -1 gcc cannot see (it warns of a literal one) */
    ssize_t r[NERR];
    int err[NERR];
    int n;
    bool nowait_ok; /* RWF_NOWAIT on data not in memory said EAGAIN here */
};

static void record(struct errs *x, ssize_t r) {
    x->err[x->n] = r < 0 ? errno : 0;
    x->r[x->n++] = r;
}

/* The calls, each expected to fail; the same list outside coil_run and in a
 * tasklet. */
static void error_calls(struct errs *x) {
    char buf[16] = {0};
    struct iovec iov = {buf, sizeof buf};
    x->n = 0;
    errno = 0;
    record(x, pread(x->closed, buf, 1, 0));              /* EBADF */
    record(x, pread(-1, buf, 1, 0));                     /* EBADF */
    record(x, pwrite(x->closed, "a", 1, 0));             /* EBADF */
    record(x, pread(x->wronly, buf, 1, 0));              /* EBADF */
    record(x, pwrite(x->rdonly, "a", 1, 0));             /* EBADF */
    record(x, pread(x->pipe[0], buf, 1, 0));             /* ESPIPE */
    record(x, pwrite(x->pipe[1], "a", 1, 0));            /* ESPIPE */
    record(x, preadv(x->sock[0], &iov, 1, 0));           /* ESPIPE */
    record(x, pwritev(x->sock[1], &iov, 1, 0));          /* ESPIPE */
    record(x, preadv2(x->pipe[0], &iov, 1, 0, 0));       /* ESPIPE */
    record(x, pread(x->pipe[0], buf, 0, 0));             /* ESPIPE, even for 0 bytes */
    record(x, pread(x->file, buf, 1, -1));               /* EINVAL */
    record(x, pwrite(x->file, "a", 1, -5));              /* EINVAL */
    record(x, preadv(x->file, &iov, x->minus_one, 0));   /* EINVAL */
    record(x, pwritev2(x->file, &iov, 1, -2, 0));        /* EINVAL */
    record(x, pread(x->dir, buf, 1, 0));                 /* EISDIR */
    record(x, preadv2(x->file, &iov, 1, 0, 0x40000000)); /* EOPNOTSUPP */
    record(x, preadv(x->pipe[0], &iov, 1, -1));          /* EINVAL before ESPIPE */
}

static const int expected_errors[] = {EBADF,  EBADF,  EBADF,  EBADF,  EBADF,      ESPIPE,
                                      ESPIPE, ESPIPE, ESPIPE, ESPIPE, ESPIPE,     EINVAL,
                                      EINVAL, EINVAL, EINVAL, EISDIR, EOPNOTSUPP, EINVAL};
#define NEXPECTED ((int)(sizeof expected_errors / sizeof expected_errors[0]))

static void errors_main(void *arg) {
    struct errs *x = arg;
    error_calls(x);
    /* errno is left alone by a call that succeeds */
    char c;
    errno = 1234;
    EXPECT_EQ(pread(x->file, &c, 1, 0), 1);
    EXPECT_EQ(errno, 1234);
    errno = 1234;
    EXPECT_EQ(pwrite(x->file, &c, 1, 0), 1);
    EXPECT_EQ(errno, 1234);
}

static void test_errors_as_libc(void **state) {
    (void)state;
    struct errs x = {0};
    x.file = temp_file();
    assert_int_equal(write(x.file, "0123456789", 10), 10);
    x.rdonly = open("/proc/self/exe", O_RDONLY);
    x.dir = open(".", O_RDONLY | O_DIRECTORY);
    char path[] = "./coil-pread-wo-XXXXXX";
    int tmp = mkstemp(path);
    assert_true(tmp >= 0);
    close(tmp);
    x.wronly = open(path, O_WRONLY);
    unlink(path);
    assert_true(x.rdonly >= 0 && x.dir >= 0 && x.wronly >= 0);
    assert_int_equal(pipe(x.pipe), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, x.sock), 0);
    /* A number no file has, nor will while the scheduler runs (its own fds
     * take the lowest free numbers). */
    x.closed = 900;
    assert_true(fcntl(x.closed, F_GETFD) == -1 && errno == EBADF);
    x.minus_one = -1;
    /* outside coil_run: libc's own answers */
    error_calls(&x);
    assert_int_equal(x.n, NEXPECTED);
    ssize_t libc_r[NERR];
    int libc_err[NERR];
    memcpy(libc_r, x.r, sizeof libc_r);
    memcpy(libc_err, x.err, sizeof libc_err);
    for (int i = 0; i < NEXPECTED; i++) {
        if (libc_r[i] != -1 || libc_err[i] != expected_errors[i])
            fail_msg("libc, call %d: %zd, errno %d, expected errno %d", i, libc_r[i], libc_err[i],
                     expected_errors[i]);
    }
    /* inside a tasklet: the same */
    COIL_RUN_CHECKED(errors_main, &x);
    assert_int_equal(x.n, NEXPECTED);
    for (int i = 0; i < NEXPECTED; i++) {
        if (x.r[i] != -1 || x.err[i] != expected_errors[i])
            fail_msg("in a tasklet, call %d: %zd, errno %d, expected errno %d", i, x.r[i], x.err[i],
                     expected_errors[i]);
    }
    close(x.file);
    close(x.rdonly);
    close(x.wronly);
    close(x.dir);
    close(x.pipe[0]);
    close(x.pipe[1]);
    close(x.sock[0]);
    close(x.sock[1]);
}

/* ---- a number coil saw as a file, reused by a pipe behind its back --------------- */

struct reuse {
    int n;
    ssize_t r1, r2;
    int err;
};

static void reuse_main(void *arg) {
    struct reuse *x = arg;
    char c;
    x->r1 = read(x->n, &c, 1); /* coil learns: a regular file */
    /* closed as libc closes internally (fclose): not through coil's close */
    syscall(SYS_close, x->n);
    int p[2];
    if (!EXPECT_EQ(pipe(p), 0)) return;
    EXPECT_EQ(p[0], x->n); /* the lowest free number: the same */
    x->r2 = pread(x->n, &c, 1, 0);
    x->err = errno;
    close(p[0]);
    close(p[1]);
}

static void test_reused_number_is_espipe(void **state) {
    (void)state;
    struct reuse x = {.n = temp_file()};
    assert_int_equal(write(x.n, "abc", 3), 3);
    assert_int_equal(lseek(x.n, 0, SEEK_SET), 0);
    COIL_RUN_CHECKED(reuse_main, &x);
    assert_int_equal(x.r1, 1);
    assert_int_equal(x.r2, -1);
    assert_int_equal(x.err, ESPIPE);
}

/* ---- not in the page cache ------------------------------------------------------ */

/* Writes the file's data to the disk and drops its pages from the page
 * cache; returns the fraction of its pages still resident (mincore). */
static double drop_cache(int fd, size_t len) {
    if (fsync(fd) != 0) return 1;
    posix_fadvise(fd, 0, (off_t)len, POSIX_FADV_DONTNEED);
    void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return 1;
    long page = sysconf(_SC_PAGESIZE);
    size_t pages = (len + (size_t)page - 1) / (size_t)page, resident = 0;
    unsigned char *vec = malloc(pages);
    if (vec && mincore(m, len, vec) == 0) {
        for (size_t i = 0; i < pages; i++)
            resident += vec[i] & 1;
    } else {
        resident = pages;
    }
    free(vec);
    munmap(m, len);
    return (double)resident / (double)pages;
}

struct large {
    int fd;
    size_t len;
    unsigned char *data, *back;
    bool write_phase;
    ssize_t r_write, r_writev, r_read, r_readv;
};

static void large_main(void *arg) {
    struct large *x = arg;
    size_t half = x->len / 2;
    if (x->write_phase) {
        /* the first half in one pwrite, the second in a pwritev of 3 parts */
        x->r_write = pwrite(x->fd, x->data, half, 0);
        size_t q = (x->len - half) / 3;
        struct iovec v[3] = {{x->data + half, q},
                             {x->data + half + q, q},
                             {x->data + half + 2 * q, x->len - half - 2 * q}};
        x->r_writev = pwritev(x->fd, v, 3, (off_t)half);
        return;
    }
    x->r_read = pread(x->fd, x->back, x->len, 0);
    memset(x->back, 0, x->len);
    struct iovec v[2] = {{x->back, 12345}, {x->back + 12345, x->len - 12345}};
    x->r_readv = preadv(x->fd, v, 2, 0);
}

static void test_large_file(void **state) {
    (void)state;
    struct large x = {.fd = temp_file(), .len = coil_test_scaled(64u << 20, 8u << 20)};
    x.data = malloc(x.len);
    x.back = malloc(x.len);
    assert_true(x.data && x.back);
    for (size_t i = 0; i < x.len; i++)
        x.data[i] = byte_at(i);
    x.write_phase = true;
    COIL_RUN_CHECKED(large_main, &x);
    assert_int_equal(x.r_write, x.len / 2);
    assert_int_equal(x.r_writev, x.len - x.len / 2);
    struct stat st;
    assert_int_equal(fstat(x.fd, &st), 0);
    assert_int_equal(st.st_size, x.len);
    double resident = drop_cache(x.fd, x.len);
    print_message("resident after dropping the cache: %.0f%%\n", resident * 100);
    x.write_phase = false;
    COIL_RUN_CHECKED(large_main, &x);
    assert_int_equal(x.r_read, x.len);
    assert_int_equal(x.r_readv, x.len);
    assert_memory_equal(x.back, x.data, x.len);
    free(x.data);
    free(x.back);
    close(x.fd);
}

/* ---- readers of a file not in the page cache, and a ticker ------------------------- */

#define READERS 4
#define CHUNK   (256 << 10)

struct conc {
    int fd;
    size_t len;
    long ticks;
    long ticked_during_read; /* ticks seen across the readers' pread calls */
    int readers_left;
    bool bad;
};

struct reader {
    struct conc *c;
    int index;
};

static void conc_ticker(void *arg) {
    struct conc *c = arg;
    while (c->readers_left > 0) {
        c->ticks++;
        coil_yield();
    }
}

static void conc_reader(void *arg) {
    struct reader *rd = arg;
    struct conc *c = rd->c;
    size_t part = c->len / READERS, from = part * (size_t)rd->index;
    unsigned char *buf = malloc(CHUNK);
    if (!EXPECT(buf != NULL)) return;
    for (size_t off = from; off < from + part; off += CHUNK) {
        size_t n = from + part - off < CHUNK ? from + part - off : CHUNK;
        long before = c->ticks;
        ssize_t r = pread(c->fd, buf, n, (off_t)off);
        c->ticked_during_read += c->ticks - before;
        if (!EXPECT_EQ(r, (ssize_t)n)) break;
        for (size_t i = 0; i < n; i++)
            if (buf[i] != byte_at(off + i)) c->bad = true;
    }
    free(buf);
    c->readers_left--;
}

static void conc_main(void *arg) {
    struct conc *c = arg;
    struct reader rd[READERS];
    coil_id ids[READERS];
    c->readers_left = READERS;
    coil_spawn(conc_ticker, c, NULL);
    for (int i = 0; i < READERS; i++) {
        rd[i] = (struct reader){c, i};
        ids[i] = coil_spawn(conc_reader, &rd[i], NULL);
    }
    for (int i = 0; i < READERS; i++)
        coil_join(ids[i], COIL_FOREVER);
}

static void test_readers_not_in_cache_park(void **state) {
    (void)state;
    struct conc c = {.fd = temp_file(), .len = coil_test_scaled(32u << 20, 4u << 20)};
    unsigned char *data = malloc(c.len);
    assert_non_null(data);
    for (size_t i = 0; i < c.len; i++)
        data[i] = byte_at(i);
    assert_int_equal(write(c.fd, data, c.len), c.len);
    free(data);
    double resident = drop_cache(c.fd, c.len);
    /* The case needs reads that wait for the disk; a file system whose pages
     * cannot be dropped (tmpfs) would make it pass for the wrong reason. */
    if (resident > 0.5) fail_msg("%.0f%% of the file is still in the page cache", resident * 100);
    COIL_RUN_CHECKED(conc_main, &c);
    assert_false(c.bad);
    /* Some read waited for the disk, parked, and the ticker ran meanwhile. */
    print_message("ticks during reads: %ld of %ld\n", c.ticked_during_read, c.ticks);
    assert_true(c.ticked_during_read > 0);
    close(c.fd);
}

/* ---- RWF_NOWAIT is the caller's: EAGAIN at once ------------------------------------ */

struct nowait {
    int fd;
    ssize_t r;
    int err;
};

static void nowait_main(void *arg) {
    struct nowait *x = arg;
    char buf[4096];
    struct iovec iov = {buf, sizeof buf};
    x->r = preadv2(x->fd, &iov, 1, 1 << 20, RWF_NOWAIT);
    x->err = errno;
}

static void test_rwf_nowait_is_callers(void **state) {
    (void)state;
    if (coil_test_under_qemu()) skip(); /* qemu-user 7.2: RWF_NOWAIT is EOPNOTSUPP (see above) */
    struct nowait x = {temp_file(), 0, 0};
    size_t len = 4u << 20;
    unsigned char *data = calloc(1, len);
    assert_non_null(data);
    assert_int_equal(write(x.fd, data, len), len);
    free(data);
    if (drop_cache(x.fd, len) > 0.5) fail_msg("the file is still in the page cache");
    COIL_RUN_CHECKED(nowait_main, &x);
    assert_int_equal(x.r, -1);
    assert_int_equal(x.err, EAGAIN);
    close(x.fd);
}

static int group_setup(void **state) {
    (void)state;
    return coil_install() == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_name),
        cmocka_unit_test(test_short_reads_at_eof),
        cmocka_unit_test(test_errors_as_libc),
        cmocka_unit_test(test_reused_number_is_espipe),
        cmocka_unit_test(test_large_file),
        cmocka_unit_test(test_readers_not_in_cache_park),
        cmocka_unit_test(test_rwf_nowait_is_callers),
    };
    coil_test_apply_filter();
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
