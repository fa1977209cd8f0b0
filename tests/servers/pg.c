/* A PostgreSQL server of a test's own: see pg.h. */
#define _GNU_SOURCE /* close_range, nftw's FTW_PHYS */
#include "pg.h"

#include "common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <libpq-fe.h>

/* Who client connections authenticate as, and how: the superuser without a
 * password (the harness's own connections), the test's role with SCRAM over
 * TCP and the unix socket alike. */
static const char hba[] = "local all postgres trust\n"
                          "host all postgres 127.0.0.1/32 trust\n"
                          "local all all scram-sha-256\n"
                          "host all all 127.0.0.1/32 scram-sha-256\n";

static void say(struct pg_server *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
}

/* The directory that holds both postgres and initdb: one on PATH, else the
 * highest version under /usr/lib/postgresql (Debian installs them there,
 * not on PATH, so that versions can live side by side). */
static bool find_bindir(char *out, size_t cap) {
    char probe[512];
    const char *path = getenv("PATH");
    if (path) {
        char dirs[2048];
        snprintf(dirs, sizeof dirs, "%s", path);
        char *save = NULL;
        for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
            snprintf(probe, sizeof probe, "%s/postgres", d);
            if (access(probe, X_OK) != 0) continue;
            snprintf(probe, sizeof probe, "%s/initdb", d);
            if (access(probe, X_OK) != 0) continue;
            snprintf(out, cap, "%s", d);
            return true;
        }
    }
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/postgres", 0, NULL, &g) != 0) return false;
    double best = -1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *p = g.gl_pathv[i];
        /* "/usr/lib/postgresql/15/bin/postgres": the version is the number
         * after the fourth slash (numerically: 9.6 < 15). */
        double v = strtod(p + strlen("/usr/lib/postgresql/"), NULL);
        char dir[256];
        snprintf(dir, sizeof dir, "%.*s", (int)(strlen(p) - strlen("/postgres")), p);
        snprintf(probe, sizeof probe, "%s/initdb", dir);
        if (v > best && access(p, X_OK) == 0 && access(probe, X_OK) == 0) {
            best = v;
            snprintf(out, cap, "%s", dir);
        }
    }
    globfree(&g);
    return best >= 0;
}

/* The user initdb and postgres run as: this process's, or nobody's when it
 * is root (both refuse to run as root). */
static int server_user(struct pg_server *s, uid_t *uid, gid_t *gid) {
    *uid = geteuid();
    *gid = getegid();
    if (*uid != 0) return 0;
    struct passwd *pw = getpwnam("nobody");
    if (!pw) {
        say(s, "running as root, and there is no user nobody to run postgres as");
        return -1;
    }
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return 0;
}

/* Forks and execs argv as uid:gid in s->dir, in a process group of its own
 * (so that an initdb that hangs is killed with the postgres it runs), with
 * stdin on /dev/null, stdout and stderr appended to log, default signal
 * actions and mask, no other fds (a test's sockets, coil's ring or epoll
 * fd), and SIGKILL when this thread ends (a test that crashes leaves no
 * server behind: the backends exit when they see their postmaster gone).
 * Returns the pid, or -1. */
static pid_t spawn(struct pg_server *s, char *const argv[], const char *log) {
    uid_t uid;
    gid_t gid;
    if (server_user(s, &uid, &gid) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) say(s, "fork: %s", strerror(errno));
    if (pid != 0) return pid;
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    server_child_setup(log, 0644);
    if (uid != geteuid() && (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)) {
        fprintf(stderr, "becoming uid %d: %s\n", (int)uid, strerror(errno));
        _exit(126);
    }
    /* initdb looks up its own directory from the working one, which must be
     * readable by the user it now runs as (a root-owned build directory
     * need not be). */
    if (chdir(s->dir) != 0) _exit(126);
    execv(argv[0], argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* The processes whose parent is ppid and whose name is postgres, at most
 * max of them, from /proc: their count. */
static int children_of(pid_t ppid, pid_t *out, int max) {
    DIR *d = opendir("/proc");
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        char path[300], text[512];
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t len = read(fd, text, sizeof text - 1);
        close(fd);
        if (len <= 0) continue;
        text[len] = '\0';
        /* "pid (comm) state ppid ...": comm may hold spaces and parentheses,
         * so the fields go from the last ')'. */
        char *open_paren = strchr(text, '('), *close_paren = strrchr(text, ')');
        if (!open_paren || !close_paren || close_paren < open_paren) continue;
        char state;
        int parent;
        if (sscanf(close_paren + 1, " %c %d", &state, &parent) != 2 || parent != ppid) continue;
        if (strncmp(open_paren + 1, "postgres)", 9) != 0) continue;
        out[n++] = (pid_t)atoi(e->d_name);
    }
    closedir(d);
    return n;
}

/* Every backend and auxiliary process of a postmaster that has exited (and
 * been reaped) came to this process, a subreaper (see pg_server_start), when
 * it did: they are not in the postmaster's process group (each calls setsid
 * when it starts), and a container's init may never reap them. Kills those
 * still running (with kill, SIGKILL goes to them at once), reaps them all,
 * and returns how many there were. */
static int reap_orphans(bool kill_them) {
    pid_t left[512];
    int n = children_of(getpid(), left, 512);
    for (int i = 0; i < n; i++) {
        if (kill_them) kill(left[i], SIGKILL);
        int st;
        while (waitpid(left[i], &st, 0) < 0 && errno == EINTR) {
        }
    }
    return n;
}

static int write_file(struct pg_server *s, const char *path, const char *text, uid_t uid,
                      gid_t gid) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t len = strlen(text);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len || fchown(fd, uid, gid) != 0) {
        say(s, "writing %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static int install(struct pg_server *s, const char *bindir) {
    char log[128], initdb[300], datadir[128];
    snprintf(log, sizeof log, "%s/initdb.log", s->dir);
    snprintf(initdb, sizeof initdb, "%s/initdb", bindir);
    snprintf(datadir, sizeof datadir, "--pgdata=%s", s->datadir);
    char *argv[] = {initdb,
                    datadir,
                    "--username=postgres",
                    "--auth=trust", /* replaced by hba[] below */
                    "--encoding=UTF8",
                    "--locale=C", /* no dependence on the machine's locales */
                    "--no-sync",  /* this data is thrown away: 1 s instead of 3 */
                    "--no-instructions",
                    NULL};
    double t0 = server_now_s();
    pid_t pid = spawn(s, argv, log);
    if (pid < 0) return -1;
    int st = server_wait_for(pid, 120000);
    s->install_s = server_now_s() - t0;
    if (st == -1) {
        kill(-pid, SIGKILL); /* initdb and the postgres it runs, in its group */
        waitpid(pid, &st, 0);
        reap_orphans(true);
        say(s, "initdb did not finish in 120 s");
        server_add_log(s->why, sizeof s->why, log, "FATAL", "ERROR");
        return -1;
    }
    reap_orphans(true);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char how[64];
        server_describe_status(how, sizeof how, st);
        say(s, "initdb %s", how);
        server_add_log(s->why, sizeof s->why, log, "FATAL", "ERROR");
        return -1;
    }
    uid_t uid;
    gid_t gid;
    char path[160];
    snprintf(path, sizeof path, "%s/pg_hba.conf", s->datadir);
    if (server_user(s, &uid, &gid) != 0 || write_file(s, path, hba, uid, gid) != 0) return -1;
    s->installed = true;
    return 0;
}

/* One connection as the superuser over TCP: NULL until the server answers. */
static PGconn *connect_super(struct pg_server *s) {
    char conninfo[160];
    snprintf(conninfo, sizeof conninfo,
             "host=127.0.0.1 port=%d user=postgres dbname=postgres connect_timeout=5", s->port);
    PGconn *c = PQconnectdb(conninfo);
    if (c && PQstatus(c) == CONNECTION_OK) return c;
    say(s, "connecting as postgres: %s", c ? PQerrorMessage(c) : "out of memory");
    PQfinish(c);
    return NULL;
}

/* The test's role, with a password, unless an earlier start made it. */
static int make_user(struct pg_server *s, PGconn *c) {
    static const char sql[] = "DO $$ BEGIN "
                              "CREATE ROLE " PG_SERVER_USER " LOGIN PASSWORD '" PG_SERVER_PASSWORD
                              "'; EXCEPTION WHEN duplicate_object THEN NULL; END $$";
    PGresult *r = PQexec(c, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
    if (rc != 0) say(s, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    return rc;
}

void pg_server_init(struct pg_server *s) {
    memset(s, 0, sizeof *s);
}

/* One attempt on a fresh port: 0, -1 (s->why), or 1 when the port was
 * taken meanwhile (try another). */
static int start_once(struct pg_server *s, const char *bindir) {
    char postgres[300], port[32];
    s->port = server_free_port();
    if (s->port < 0) {
        say(s, "no free port: %s", strerror(-s->port));
        return -1;
    }
    snprintf(postgres, sizeof postgres, "%s/postgres", bindir);
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(s->socket, sizeof s->socket, "%s/.s.PGSQL.%d", s->dir, s->port);
    char *argv[] = {postgres, "-D", s->datadir, "-p", port, "-h", "127.0.0.1", "-k",
                    s->dir, /* the unix socket's directory */
                    /* Room for a benchmark's many connections (the default
                     * is 100), in little shared memory (the default, 128 MB,
                     * is far more than a test needs). */
                    "-c", "max_connections=300", "-c", "shared_buffers=16MB",
                    /* This data is thrown away: no fsync, no waiting for the
                     * WAL at commit. */
                    "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                    /* Everything to stderr, i.e. s->log; no collector process. */
                    "-c", "logging_collector=off", NULL};

    double t0 = server_now_s();
    s->pid = spawn(s, argv, s->log);
    if (s->pid < 0) {
        s->pid = 0;
        return -1;
    }
    while (server_now_s() - t0 < 60) {
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            reap_orphans(true);
            s->pid = 0;
            char how[64];
            server_describe_status(how, sizeof how, st);
            say(s, "postgres %s while starting", how);
            server_add_log(s->why, sizeof s->why, s->log, "FATAL", "ERROR");
            return strstr(s->why, "Address already in use") ? 1 : -1;
        }
        PGconn *c = connect_super(s);
        if (c) {
            s->start_s = server_now_s() - t0;
            const char *v = PQparameterStatus(c, "server_version");
            snprintf(s->version, sizeof s->version, "%s", v ? v : "?");
            int rc = make_user(s, c);
            PQfinish(c);
            if (rc != 0) pg_server_stop(s);
            return rc;
        }
        server_sleep_ms(20);
    }
    size_t used = strlen(s->why);
    snprintf(s->why + used, sizeof s->why - used, " (still, after 60 s)");
    server_add_log(s->why, sizeof s->why, s->log, "FATAL", "ERROR");
    pg_server_kill(s);
    return -1;
}

int pg_server_start(struct pg_server *s) {
    char bindir[256];
    if (!find_bindir(bindir, sizeof bindir)) {
        say(s, "postgres and initdb not found on PATH nor in /usr/lib/postgresql/*/bin "
               "(Debian: postgresql-15)");
        return PG_SERVER_MISSING;
    }
    if (s->pid > 0) return 0;
    /* The backends, orphaned when their postmaster exits, come to this
     * process instead of to init, so that it can reap them and see that none
     * is left (see reap_orphans). */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
        say(s, "prctl(PR_SET_CHILD_SUBREAPER): %s", strerror(errno));
        return -1;
    }
    if (!s->dir[0]) {
        snprintf(s->dir, sizeof s->dir, "/tmp/coil-pg-XXXXXX");
        if (!mkdtemp(s->dir)) {
            say(s, "mkdtemp: %s", strerror(errno));
            s->dir[0] = '\0';
            return -1;
        }
        snprintf(s->datadir, sizeof s->datadir, "%s/data", s->dir);
        snprintf(s->log, sizeof s->log, "%s/server.log", s->dir);
        uid_t uid;
        gid_t gid;
        if (server_user(s, &uid, &gid) != 0) return -1;
        if (chown(s->dir, uid, gid) != 0) {
            say(s, "chown %s: %s", s->dir, strerror(errno));
            return -1;
        }
    }
    if (!s->installed && install(s, bindir) != 0) return -1;
    for (int attempt = 0; attempt < 5; attempt++) {
        int rc = start_once(s, bindir);
        if (rc <= 0) return rc;
    }
    return -1;
}

int pg_server_stop(struct pg_server *s) {
    if (s->pid <= 0) return 0;
    pid_t pid = s->pid;
    s->pid = 0;
    kill(pid, SIGINT); /* fast shutdown; SIGTERM's smart one waits for every client */
    int st = server_wait_for(pid, 30000);
    if (st == -1) {
        s->pid = pid;
        pg_server_kill(s);
        say(s, "postgres did not stop in 30 s after SIGINT: killed");
        server_add_log(s->why, sizeof s->why, s->log, "FATAL", "ERROR");
        return -1;
    }
    /* The postmaster waits for every process of its own before it exits:
     * none should be left. */
    int left = reap_orphans(true);
    if (left > 0) {
        say(s, "%d processes of the server were left after it stopped: killed", left);
        return -1;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char how[64];
        server_describe_status(how, sizeof how, st);
        say(s, "postgres %s after SIGINT", how);
        server_add_log(s->why, sizeof s->why, s->log, "FATAL", "ERROR");
        return -1;
    }
    return 0;
}

void pg_server_kill(struct pg_server *s) {
    if (s->pid <= 0) return;
    /* Stopped first, so that it forks no new process (nor restarts the ones
     * killed) while its children are listed and killed. */
    kill(s->pid, SIGSTOP);
    pid_t kids[512];
    int n = children_of(s->pid, kids, 512);
    for (int i = 0; i < n; i++)
        kill(kids[i], SIGKILL);
    kill(s->pid, SIGKILL);
    int st;
    while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR) {
    }
    reap_orphans(true); /* its children, now this process's */
    s->pid = 0;
}

void pg_server_cleanup(struct pg_server *s) {
    pg_server_stop(s);
    if (s->dir[0]) server_remove_tree(s->dir);
    s->dir[0] = '\0';
    s->installed = false;
}
