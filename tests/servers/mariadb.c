/* A MariaDB server of a test's own: see mariadb.h. */
#define _GNU_SOURCE /* close_range, nftw's FTW_PHYS */
#include "mariadb.h"

#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <mysql.h>

/* The server's options, for mariadb-install-db (which passes them to its
 * bootstrap server) and mariadbd alike: a small buffer pool and redo log
 * (the defaults, 128 MB and 96 MB, are far more than a test needs, and a
 * 96 MB redo log is written out at every install), no binary log, and no
 * reverse lookup of a client's address (a machine without DNS would wait
 * for it at every connection). */
#define SMALL_SERVER                                                                               \
    "--innodb-buffer-pool-size=8M", "--innodb-log-file-size=4M", "--skip-log-bin",                 \
        "--skip-name-resolve"

static void say(struct mariadb_server *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
}

/* The full path of program name: on PATH, else in the sbin directories a
 * user's PATH often lacks (mariadbd is in /usr/sbin). */
static bool find_program(const char *name, char *out, size_t cap) {
    const char *path = getenv("PATH");
    char dirs[2048];
    snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin:/sbin",
             path ? path : "");
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(out, cap, "%s/%s", d, name);
        if (access(out, X_OK) == 0) return true;
    }
    return false;
}

/* Forks and execs argv with stdin on /dev/null, stdout and stderr appended
 * to log, default signal actions and mask, no other fds (a test's sockets,
 * coil's ring or epoll fd), and SIGKILL when this thread ends (a test that
 * crashes leaves no server behind). Returns the pid, or -1. */
static pid_t spawn(char *const argv[], const char *log) {
    pid_t pid = fork();
    if (pid != 0) return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    server_child_setup(log, 0600);
    execv(argv[0], argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static int install(struct mariadb_server *s, const char *tool) {
    char log[128], datadir[128], tmpdir[128];
    snprintf(log, sizeof log, "%s/install.log", s->dir);
    snprintf(datadir, sizeof datadir, "--datadir=%s", s->datadir);
    snprintf(tmpdir, sizeof tmpdir, "--tmpdir=%s", s->dir);
    char *argv[16];
    int n = 0;
    argv[n++] = (char *)tool;
    argv[n++] = "--no-defaults"; /* first, or it is not taken */
    argv[n++] = datadir;
    argv[n++] = "--auth-root-authentication-method=normal"; /* root without a password */
    argv[n++] = "--skip-test-db";
    argv[n++] = tmpdir;                            /* see start_once */
    if (geteuid() == 0) argv[n++] = "--user=root"; /* else it would look for user mysql */
    char *small[] = {SMALL_SERVER};
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++)
        argv[n++] = small[i];
    argv[n] = NULL;
    double t0 = server_now_s();
    pid_t pid = spawn(argv, log);
    if (pid < 0) {
        say(s, "fork: %s", strerror(errno));
        return -1;
    }
    int st = server_wait_for(pid, 120000);
    s->install_s = server_now_s() - t0;
    if (st == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        say(s, "%s did not finish in 120 s", tool);
        server_add_log(s->why, sizeof s->why, log, "ERROR", NULL);
        return -1;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char how[64];
        server_describe_status(how, sizeof how, st);
        say(s, "%s %s", tool, how);
        server_add_log(s->why, sizeof s->why, log, "ERROR", NULL);
        return -1;
    }
    s->installed = true;
    return 0;
}

/* One connection as root over TCP: NULL until the server answers. */
static MYSQL *connect_root(struct mariadb_server *s) {
    MYSQL *m = mysql_init(NULL);
    if (!m) return NULL;
    unsigned timeout = 5;
    mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &timeout);
    if (!mysql_real_connect(m, "127.0.0.1", "root", NULL, NULL, (unsigned)s->port, NULL, 0)) {
        snprintf(s->why, sizeof s->why, "connecting as root: %s (%u)", mysql_error(m),
                 mysql_errno(m));
        mysql_close(m);
        return NULL;
    }
    return m;
}

/* The test's account, with a password, from 127.0.0.1 and over the socket. */
static int make_user(struct mariadb_server *s, MYSQL *m) {
    static const char *const sql[] = {
        "CREATE USER IF NOT EXISTS '" MARIADB_SERVER_USER "'@'127.0.0.1' IDENTIFIED BY "
        "'" MARIADB_SERVER_PASSWORD "'",
        "CREATE USER IF NOT EXISTS '" MARIADB_SERVER_USER "'@'localhost' IDENTIFIED BY "
        "'" MARIADB_SERVER_PASSWORD "'",
        "GRANT ALL ON *.* TO '" MARIADB_SERVER_USER "'@'127.0.0.1'",
        "GRANT ALL ON *.* TO '" MARIADB_SERVER_USER "'@'localhost'",
    };
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
        if (mysql_query(m, sql[i]) != 0) {
            say(s, "%s: %s (%u)", sql[i], mysql_error(m), mysql_errno(m));
            return -1;
        }
    }
    return 0;
}

void mariadb_server_init(struct mariadb_server *s) {
    memset(s, 0, sizeof *s);
}

/* One attempt on a fresh port: 0, -1 (s->why), or 1 when the port was
 * taken meanwhile (try another). */
static int start_once(struct mariadb_server *s, const char *server) {
    char datadir[128], sock[128], port[32], pidfile[128], logopt[128], tmpdir[128];
    s->port = server_free_port();
    if (s->port < 0) {
        say(s, "no free port: %s", strerror(-s->port));
        return -1;
    }
    snprintf(datadir, sizeof datadir, "--datadir=%s", s->datadir);
    snprintf(sock, sizeof sock, "--socket=%s", s->socket);
    snprintf(port, sizeof port, "--port=%d", s->port);
    snprintf(pidfile, sizeof pidfile, "--pid-file=%s/mariadbd.pid", s->dir);
    snprintf(logopt, sizeof logopt, "--log-error=%s", s->log);
    snprintf(tmpdir, sizeof tmpdir, "--tmpdir=%s", s->dir);
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)server;
    argv[n++] = "--no-defaults"; /* none of /etc/mysql's configuration */
    argv[n++] = datadir;
    argv[n++] = sock;
    argv[n++] = port;
    argv[n++] = "--bind-address=127.0.0.1";
    argv[n++] = "--skip-networking=0";
    argv[n++] = pidfile;
    argv[n++] = logopt;
    /* Its own: a server that starts removes every "#sql*" file in its
     * tmpdir, the temporary tables of any other server there included (two
     * tests at once in /tmp: "Unknown table 'mysql.tmp_user_sys'"). */
    argv[n++] = tmpdir;
    if (geteuid() == 0) argv[n++] = "--user=root"; /* mariadbd refuses root otherwise */
    char *small[] = {SMALL_SERVER};
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++)
        argv[n++] = small[i];
    /* A stop that leaves the redo log to the next start's recovery (this
     * data is thrown away), and no buffer pool dump: 0.2 s instead of 2. */
    argv[n++] = "--innodb-fast-shutdown=3";
    argv[n++] = "--innodb-buffer-pool-dump-at-shutdown=0";
    argv[n++] = "--innodb-buffer-pool-load-at-startup=0";
    /* Room for a benchmark's many connections, and no host blocked for the
     * failed connections of the tests. */
    argv[n++] = "--max-connections=2000";
    argv[n++] = "--max-connect-errors=1000000000";
    argv[n] = NULL;

    double t0 = server_now_s();
    s->pid = spawn(argv, s->log);
    if (s->pid < 0) {
        s->pid = 0;
        say(s, "fork: %s", strerror(errno));
        return -1;
    }
    while (server_now_s() - t0 < 60) {
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            char how[64];
            server_describe_status(how, sizeof how, st);
            say(s, "%s %s while starting", server, how);
            server_add_log(s->why, sizeof s->why, s->log, "ERROR", NULL);
            return strstr(s->why, "Address already in use") ? 1 : -1;
        }
        MYSQL *m = connect_root(s);
        if (m) {
            s->start_s = server_now_s() - t0;
            snprintf(s->version, sizeof s->version, "%s", mysql_get_server_info(m));
            int rc = make_user(s, m);
            mysql_close(m);
            if (rc != 0) mariadb_server_stop(s);
            return rc;
        }
        server_sleep_ms(20);
    }
    size_t used = strlen(s->why);
    snprintf(s->why + used, sizeof s->why - used, " (still, after 60 s)");
    server_add_log(s->why, sizeof s->why, s->log, "ERROR", NULL);
    mariadb_server_kill(s);
    return -1;
}

int mariadb_server_start(struct mariadb_server *s) {
    char server[256], tool[256];
    if (!find_program("mariadbd", server, sizeof server) ||
        !find_program("mariadb-install-db", tool, sizeof tool)) {
        say(s, "mariadbd or mariadb-install-db not found (Debian: mariadb-server-core)");
        return MARIADB_SERVER_MISSING;
    }
    if (s->pid > 0) return 0;
    if (!s->dir[0]) {
        snprintf(s->dir, sizeof s->dir, "/tmp/coil-mariadb-XXXXXX");
        if (!mkdtemp(s->dir)) {
            say(s, "mkdtemp: %s", strerror(errno));
            s->dir[0] = '\0';
            return -1;
        }
        snprintf(s->datadir, sizeof s->datadir, "%s/data", s->dir);
        snprintf(s->socket, sizeof s->socket, "%s/mariadb.sock", s->dir);
        snprintf(s->log, sizeof s->log, "%s/server.log", s->dir);
    }
    if (!s->installed && install(s, tool) != 0) return -1;
    for (int attempt = 0; attempt < 5; attempt++) {
        int rc = start_once(s, server);
        if (rc <= 0) return rc;
    }
    return -1;
}

int mariadb_server_stop(struct mariadb_server *s) {
    if (s->pid <= 0) return 0;
    pid_t pid = s->pid;
    s->pid = 0;
    kill(pid, SIGTERM);
    int st = server_wait_for(pid, 30000);
    if (st == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        say(s, "mariadbd did not stop in 30 s after SIGTERM: killed");
        server_add_log(s->why, sizeof s->why, s->log, "ERROR", NULL);
        return -1;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char how[64];
        server_describe_status(how, sizeof how, st);
        say(s, "mariadbd %s after SIGTERM", how);
        server_add_log(s->why, sizeof s->why, s->log, "ERROR", NULL);
        return -1;
    }
    return 0;
}

void mariadb_server_kill(struct mariadb_server *s) {
    if (s->pid <= 0) return;
    kill(s->pid, SIGKILL);
    int st;
    while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR) {
    }
    s->pid = 0;
}

void mariadb_server_cleanup(struct mariadb_server *s) {
    mariadb_server_stop(s);
    if (s->dir[0]) server_remove_tree(s->dir);
    s->dir[0] = '\0';
    s->installed = false;
}
