/* coil_read / coil_write on regular files and pipes: a few MiB written to a
 * temporary file and read back (both at the file position, which each call
 * advances; a short read only at the end of the file, then 0); O_APPEND;
 * /dev/zero and /dev/null; a read-only file refuses coil_write (-EBADF) and a
 * directory coil_read (-EISDIR); pipes, blocking and O_NONBLOCK: a reader
 * that waits on an empty pipe, a writer that waits on a full one, a stream
 * of a few MiB through a small pipe, end of file (0) when the writer closes. */
#define _GNU_SOURCE
// coil-test: tsan (regular files go to the offload pool's workers on epoll)
#include "coil_test.h"

#include <fcntl.h>
#include <sys/stat.h>

static int temp_file(char *path, size_t cap) {
    const char *dir = getenv("TMPDIR");
    snprintf(path, cap, "%s/coil-test-file-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkostemp(path, O_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

/* ---- regular files ------------------------------------------------------------- */

struct file {
    int fd;
    char path[256];
    size_t len;
    uint8_t *data;
};

static void file_main(void *arg) {
    struct file *f = arg;
    /* Writes of odd sizes at the file position. */
    size_t done = 0, chunk = 100000;
    while (done < f->len) {
        size_t n = f->len - done < chunk ? f->len - done : chunk;
        ssize_t w = done % 3 ? coil_write(f->fd, f->data + done, n)
                             : coil_write_dl(f->fd, f->data + done, n, coil_test_in(10 * COIL_SEC));
        if (!EXPECT_EQ(w, n)) return; /* a regular file takes it all */
        done += n;
        EXPECT_EQ(lseek(f->fd, 0, SEEK_CUR), done); /* the position advanced */
    }
    struct stat st;
    EXPECT_EQ(fstat(f->fd, &st), 0);
    EXPECT_EQ(st.st_size, f->len);

    /* Read back from the start: the position advances with each read. */
    EXPECT_EQ(lseek(f->fd, 0, SEEK_SET), 0);
    char head[10];
    EXPECT_EQ(coil_read(f->fd, head, 10), 10);
    EXPECT(memcmp(head, f->data, 10) == 0);
    EXPECT_EQ(coil_read(f->fd, head, 10), 10);
    EXPECT(memcmp(head, f->data + 10, 10) == 0);
    EXPECT_EQ(lseek(f->fd, 20, SEEK_SET), 20); /* (back to where it was) */
    uint8_t *back = malloc(f->len + 65537);    /* room for the last read of 65537 */
    if (!EXPECT(back != NULL)) return;
    memcpy(back, f->data, 20);
    done = 20;
    for (;;) {
        size_t want = 65537;
        ssize_t r = done % 2 ? coil_read(f->fd, back + done, want)
                             : coil_read_dl(f->fd, back + done, want, coil_test_in(10 * COIL_SEC));
        if (r <= 0) {
            EXPECT_EQ(r, 0);
            break;
        }
        /* short only at the end of the file */
        if (done + (size_t)r < f->len) EXPECT_EQ(r, want);
        done += (size_t)r;
        if (!EXPECT(done <= f->len)) break;
    }
    EXPECT_EQ(done, f->len);
    EXPECT(memcmp(back, f->data, f->len) == 0);
    EXPECT_EQ(coil_read(f->fd, back, 100), 0); /* at the end: 0, again */
    free(back);

    /* A write in the middle overwrites there, at the position. */
    EXPECT_EQ(lseek(f->fd, 5, SEEK_SET), 5);
    EXPECT_EQ(coil_write(f->fd, "HELLO", 5), 5);
    EXPECT_EQ(lseek(f->fd, 0, SEEK_CUR), 10);
    EXPECT_EQ(pread(f->fd, head, 10, 0), 10);
    EXPECT(memcmp(head, f->data, 5) == 0 && memcmp(head + 5, "HELLO", 5) == 0);
}

static void test_file_write_then_read_back(void **state) {
    (void)state;
    struct file f = {.len = coil_test_scaled(4u << 20, 1u << 20) + 12345};
    f.fd = temp_file(f.path, sizeof f.path);
    f.data = malloc(f.len);
    assert_non_null(f.data);
    coil_test_pattern_fill(f.data, f.len, 21, 0);
    COIL_RUN_CHECKED(file_main, &f);
    free(f.data);
    close(f.fd);
    unlink(f.path);
}

/* O_APPEND: every write goes to the end, whatever the position. */
static void append_main(void *arg) {
    struct file *f = arg;
    EXPECT_EQ(coil_write(f->fd, "abc", 3), 3);
    EXPECT_EQ(lseek(f->fd, 0, SEEK_SET), 0);
    EXPECT_EQ(coil_write(f->fd, "def", 3), 3);
    char buf[16] = {0};
    EXPECT_EQ(pread(f->fd, buf, sizeof buf, 0), 6);
    EXPECT_EQ(memcmp(buf, "abcdef", 6), 0);
}

static void test_file_append(void **state) {
    (void)state;
    struct file f = {0};
    int fd = temp_file(f.path, sizeof f.path);
    f.fd = open(f.path, O_RDWR | O_APPEND | O_CLOEXEC);
    assert_true(f.fd >= 0);
    close(fd);
    COIL_RUN_CHECKED(append_main, &f);
    close(f.fd);
    unlink(f.path);
}

/* Character devices, a read-only file, a directory. */
struct devs {
    char path[256];
};

static void devs_main(void *arg) {
    struct devs *d = arg;
    int z = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    int n = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (!EXPECT(z >= 0 && n >= 0)) return;
    char buf[4096];
    memset(buf, 0x77, sizeof buf);
    EXPECT_EQ(coil_read(z, buf, sizeof buf), sizeof buf);
    bool zeros = true;
    for (size_t i = 0; i < sizeof buf; i++)
        zeros = zeros && buf[i] == 0;
    EXPECT(zeros);
    EXPECT_EQ(coil_write(n, buf, sizeof buf), sizeof buf);
    EXPECT_EQ(coil_read(n, buf, 1), -EBADF); /* opened write-only */
    EXPECT_EQ(coil_close(z), 0);
    EXPECT_EQ(coil_close(n), 0);

    int ro = open(d->path, O_RDONLY | O_CLOEXEC);
    EXPECT_EQ(coil_write(ro, "x", 1), -EBADF);
    EXPECT_EQ(coil_write_dl(ro, "x", 1, coil_test_in(COIL_SEC)), -EBADF);
    EXPECT_EQ(coil_read(ro, buf, sizeof buf), 0); /* empty file */
    EXPECT_EQ(coil_close(ro), 0);

    int dir = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    EXPECT_EQ(coil_read(dir, buf, sizeof buf), -EISDIR);
    EXPECT_EQ(coil_close(dir), 0);
}

static void test_file_devices_and_wrong_modes(void **state) {
    (void)state;
    struct devs d;
    int fd = temp_file(d.path, sizeof d.path);
    close(fd);
    COIL_RUN_CHECKED(devs_main, &d);
    unlink(d.path);
}

/* ---- pipes ------------------------------------------------------------------------ */

struct pipes {
    int r, w;
    size_t len;
    uint8_t *data;
    size_t got;
    size_t bad_at;
    int short_writes;
    int64_t reader_waited;
    bool writer_waited;
};

static void pipe_reader(void *arg) {
    struct pipes *p = arg;
    uint8_t buf[3000];
    int64_t t0 = coil_now();
    for (;;) {
        ssize_t r = coil_read_dl(p->r, buf, sizeof buf, coil_test_in(10 * COIL_SEC));
        if (p->got == 0) p->reader_waited = coil_now() - t0;
        if (r <= 0) {
            EXPECT_EQ(r, 0); /* the writer closed: end of file */
            break;
        }
        if (p->bad_at == SIZE_MAX && memcmp(buf, p->data + p->got, (size_t)r) != 0)
            p->bad_at = p->got;
        p->got += (size_t)r;
        if (p->got < 200000 && p->got % 7 == 0) coil_sleep(COIL_MSEC); /* a slow reader */
    }
}

static void pipe_main(void *arg) {
    struct pipes *p = arg;
    coil_id r = coil_spawn(pipe_reader, p, NULL);
    /* The reader waits on the empty pipe first. */
    EXPECT_EQ(coil_sleep(30 * COIL_MSEC), 0);
    size_t done = 0;
    while (done < p->len) {
        size_t n = p->len - done < 50000 ? p->len - done : 50000;
        int64_t t0 = coil_now();
        ssize_t w = coil_write(p->w, p->data + done, n);
        if (coil_now() - t0 > 5 * COIL_MSEC) p->writer_waited = true;
        if (!EXPECT(w > 0)) return;
        if ((size_t)w < n) p->short_writes++;
        done += (size_t)w;
    }
    EXPECT_EQ(coil_close(p->w), 0);
    EXPECT_EQ(coil_join(r, coil_test_in(30 * COIL_SEC)), 0);
    EXPECT_EQ(coil_close(p->r), 0);
}

static void run_pipe(bool nonblock) {
    struct pipes p = {.len = coil_test_scaled(4u << 20, 256u << 10), .bad_at = SIZE_MAX};
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC | (nonblock ? O_NONBLOCK : 0)), 0);
    p.r = fds[0];
    p.w = fds[1];
    fcntl(p.w, F_SETPIPE_SZ, 16384); /* small: the writer has to wait */
    p.data = malloc(p.len);
    assert_non_null(p.data);
    coil_test_pattern_fill(p.data, p.len, 8, 0);
    COIL_RUN_CHECKED(pipe_main, &p);
    free(p.data);
    print_message("%s pipe: reader waited %lld ms first; %d short writes; writer waited: %s\n",
                  nonblock ? "O_NONBLOCK" : "blocking", (long long)(p.reader_waited / COIL_MSEC),
                  p.short_writes, p.writer_waited ? "yes" : "no");
    assert_int_equal(p.got, p.len);
    assert_int_equal(p.bad_at, SIZE_MAX);
    assert_true(p.reader_waited >= 25 * COIL_MSEC);
}

static void test_pipe_stream_blocking_fds(void **state) {
    (void)state;
    run_pipe(false);
}

static void test_pipe_stream_nonblocking_fds(void **state) {
    (void)state;
    run_pipe(true);
}

/* A writer that waits on a full pipe wakes when the reader makes room; a
 * reader that waits on an empty pipe sees 0 when the last writer closes. */
struct pipe_wait {
    int r, w;
    size_t filled;
    ssize_t write_rc, read_rc;
    int64_t write_took, read_took;
};

static void full_writer(void *arg) {
    struct pipe_wait *p = arg;
    int64_t t0 = coil_now();
    p->write_rc = coil_write(p->w, "tail", 4);
    p->write_took = coil_now() - t0;
}

static void eof_reader(void *arg) {
    struct pipe_wait *p = arg;
    char b;
    int64_t t0 = coil_now();
    p->read_rc = coil_read(p->r, &b, 1);
    p->read_took = coil_now() - t0;
}

static void pipe_wait_main(void *arg) {
    struct pipe_wait *p = arg;
    coil_id w = coil_spawn(full_writer, p, NULL);
    EXPECT_EQ(coil_sleep(50 * COIL_MSEC), 0);
    /* Make room: read what was there, then the writer's 4 bytes come. */
    uint8_t *buf = malloc(p->filled + 16);
    if (!EXPECT(buf != NULL)) return;
    size_t got = 0;
    EXPECT_EQ(coil_test_read_all(p->r, buf, p->filled + 4, coil_test_in(5 * COIL_SEC), &got),
              p->filled + 4);
    EXPECT(memcmp(buf + p->filled, "tail", 4) == 0);
    free(buf);
    EXPECT_EQ(coil_join(w, coil_test_in(5 * COIL_SEC)), 0);
    EXPECT_EQ(p->write_rc, 4);
    EXPECT(p->write_took >= 45 * COIL_MSEC);

    coil_id r = coil_spawn(eof_reader, p, NULL);
    EXPECT_EQ(coil_sleep(50 * COIL_MSEC), 0);
    EXPECT_EQ(coil_close(p->w), 0);
    EXPECT_EQ(coil_join(r, coil_test_in(5 * COIL_SEC)), 0);
    EXPECT_EQ(p->read_rc, 0);
    EXPECT(p->read_took >= 45 * COIL_MSEC);
    EXPECT_EQ(coil_close(p->r), 0);
}

static void test_pipe_waits_for_room_and_end_of_file(void **state) {
    (void)state;
    struct pipe_wait p = {0};
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    p.r = fds[0];
    p.w = fds[1];
    fcntl(p.w, F_SETPIPE_SZ, 4096);
    p.filled = coil_test_fill_pipe(p.w);
    COIL_RUN_CHECKED(pipe_wait_main, &p);
}

int main(void) {

    coil_test_apply_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_write_then_read_back),
        cmocka_unit_test(test_file_append),
        cmocka_unit_test(test_file_devices_and_wrong_modes),
        cmocka_unit_test(test_pipe_stream_blocking_fds),
        cmocka_unit_test(test_pipe_stream_nonblocking_fds),
        cmocka_unit_test(test_pipe_waits_for_room_and_end_of_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
