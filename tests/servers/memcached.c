/* See memcached.h. */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stddef.h>

#include "memcached.h"

#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

bool coil_memcached_find(char *buf, size_t cap) {
    const char *env = getenv("COIL_MEMCACHED");
    if (env && *env) {
        snprintf(buf, cap, "%s", env);
        return access(buf, X_OK) == 0;
    }
    const char *path = getenv("PATH");
    if (path) {
        const char *p = path;
        while (*p) {
            const char *end = strchr(p, ':');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            if (len > 0) {
                snprintf(buf, cap, "%.*s/memcached", (int)len, p);
                if (access(buf, X_OK) == 0) return true;
            }
            p += len + (end != NULL);
        }
    }
    snprintf(buf, cap, "/usr/bin/memcached");
    return access(buf, X_OK) == 0;
}

/* True when memcached answers "version" on 127.0.0.1:port (a plain blocking
 * client whose receive gives up after a second). */
static bool answers(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    bool ok = false;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        send(fd, "version\r\n", 9, MSG_NOSIGNAL) == 9) {
        char buf[128];
        size_t got = 0;
        while (got < sizeof buf - 1 && !memchr(buf, '\n', got)) {
            ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
            if (n <= 0) break;
            got += (size_t)n;
        }
        buf[got] = '\0';
        ok = strncmp(buf, "VERSION ", 8) == 0 && strchr(buf, '\n');
    }
    close(fd);
    return ok;
}

/* One try on one port: 0 when it answers, -EADDRINUSE when it exited first
 * (the port was taken meanwhile, say: the caller tries another), another
 * -errno otherwise. */
static int start_on(struct coil_memcached *m, const char *exe, uint16_t port) {
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%u", (unsigned)port);
    char *argv[16];
    int argc = 0;
    argv[argc++] = (char *)exe;
    argv[argc++] = "-l";
    argv[argc++] = "127.0.0.1";
    argv[argc++] = "-p";
    argv[argc++] = port_s;
    argv[argc++] = "-U"; /* no UDP */
    argv[argc++] = "0";
    argv[argc++] = "-m"; /* MB of memory for items */
    argv[argc++] = "64";
    argv[argc++] = "-c"; /* connections */
    argv[argc++] = "4096";
    if (geteuid() == 0) { /* memcached will not run as root */
        argv[argc++] = "-u";
        argv[argc++] = "nobody";
    }
    argv[argc] = NULL;

    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -errno;
    if (pid == 0) {
        /* Gone with the test if it dies first (until memcached changes its
         * user, which clears this: then only the caller's stop ends it). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO); /* stderr stays: memcached says why it fails there */
        }
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(exe, argv);
        fprintf(stderr, "exec %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    for (int waited = 0; waited < 20000; waited += 20) {
        if (answers(port)) {
            m->pid = pid;
            m->port = port;
            return 0;
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            if (WIFEXITED(status) && WEXITSTATUS(status) == 127) return -ENOENT;
            return -EADDRINUSE;
        }
        server_sleep_ms(20);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    return -ETIMEDOUT;
}

int coil_memcached_start(struct coil_memcached *m) {
    m->pid = 0;
    m->port = 0;
    char exe[512];
    if (!coil_memcached_find(exe, sizeof exe)) return -ENOENT;
    int rc = -EADDRINUSE;
    for (int attempt = 0; attempt < 5 && rc == -EADDRINUSE; attempt++) {
        int port = server_free_port();
        if (port < 0) return port;
        rc = start_on(m, exe, (uint16_t)port);
    }
    if (rc != 0)
        fprintf(stderr, "memcached (%s) did not come up: %s\n", exe,
                rc == -EADDRINUSE ? "it exited before it answered" : strerror(-rc));
    return rc;
}

int coil_memcached_stop(struct coil_memcached *m) {
    if (m->pid <= 0) return -ECHILD;
    pid_t pid = m->pid;
    m->pid = 0;
    kill(pid, SIGTERM);
    int status = 0;
    for (int waited = 0;; waited += 10) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (r < 0 && errno != EINTR) return -errno;
        if (waited == 10000) kill(pid, SIGKILL);
        server_sleep_ms(10);
    }
}
