/* See common.h. */
#define _GNU_SOURCE /* memmem */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double server_now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void server_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int server_wait_for(pid_t pid, int timeout_ms) {
    for (int waited = 0;; waited += 10) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return st;
        if (r < 0 && errno != EINTR) return -1;
        if (waited >= timeout_ms) return -1;
        server_sleep_ms(10);
    }
}

void server_describe_status(char *out, size_t cap, int st) {
    if (WIFEXITED(st))
        snprintf(out, cap, "exited with %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(out, cap, "killed by signal %d", WTERMSIG(st));
    else
        snprintf(out, cap, "status %#x", st);
}

int server_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    else
        port = -errno;
    close(fd);
    return port;
}

static bool has(const char *line, int len, const char *marker) {
    return marker && memmem(line, (size_t)len, marker, strlen(marker));
}

void server_add_log(char *why, size_t cap, const char *path, const char *marker,
                    const char *marker2) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    static char text[65536];
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return;
    text[n] = '\0';
    size_t used = strlen(why);
    if (used >= cap) return;
    used += (size_t)snprintf(why + used, cap - used, "\n--- %s says:", path);
    bool any = false;
    for (const char *line = text; *line && used < cap;) {
        const char *end = strchr(line, '\n');
        int len = end ? (int)(end - line) : (int)strlen(line);
        if (has(line, len, marker) || has(line, len, marker2)) {
            any = true;
            used += (size_t)snprintf(why + used, cap - used, "\n%.*s", len, line);
        }
        line += len + (end != NULL);
    }
    if (!any && used < cap)
        snprintf(why + used, cap - used, "\n%.600s", n > 600 ? text + n - 600 : text);
}

void server_child_setup(const char *log, mode_t mode) {
    int in = open("/dev/null", O_RDONLY);
    int out = open(log, O_WRONLY | O_CREAT | O_APPEND, mode);
    if (in < 0 || out < 0) _exit(126);
    dup2(in, STDIN_FILENO);
    dup2(out, STDOUT_FILENO);
    dup2(out, STDERR_FILENO);
    close_range(3, ~0U, 0);
    for (int sig = 1; sig < NSIG; sig++)
        signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static int remove_one(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

void server_remove_tree(const char *dir) {
    nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}
