/*
 * coil-multi: parallel downloads with libcurl's multi interface, driven by
 * coil_wait_fd, without coil_install. libcurl does its own non-blocking I/O
 * and only asks, through two callbacks, which sockets to watch for what
 * (CURLMOPT_SOCKETFUNCTION) and when to call it back if nothing happens
 * (CURLMOPT_TIMERFUNCTION); coil waits for that.
 *
 *   coil-multi [-d SECONDS] [-n PAGES] [URL...]
 *
 * With no URL it runs offline, as coil-download does: a small HTTP server in
 * a tasklet of the same program answers each request after SECONDS (default
 * 0.5) with a page of its own size, and PAGES pages (default 4) are
 * downloaded from it; at the end it says how many requests it had in hand at
 * once (all of them, when the downloads overlapped). Each download prints its
 * byte count and a checksum (32-bit FNV-1a) of the bytes. Exit status 0 when
 * every download succeeded; 130 after Ctrl-C.
 *
 * How the waiting is shared out: one tasklet per socket that libcurl asks to
 * watch, and one for libcurl's timer. coil_wait_fd waits on one fd, and a
 * tasklet parked in it cannot be told to wait for something else: so when
 * libcurl changes what a socket waits for, from another tasklet's call into
 * libcurl, that socket gets a new watcher and the old one is killed (the
 * common change, made in the watcher's own call, just changes what it waits
 * for next). Every tasklet calls libcurl directly: libcurl never blocks here
 * (its sockets are non-blocking and nothing diverts them), so each call runs
 * to its end without another tasklet running in between, as libcurl's multi
 * interface requires (it is not reentrant).
 */
#include <coil.h>

#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct download {
    const char *url;
    size_t bytes;
    uint32_t fnv; /* FNV-1a of the body */
    int64_t start;
    int ok;
};

struct app {
    CURLM *multi;
    int left; /* transfers not finished */
    int failures;
    int64_t timer;       /* when libcurl wants its timeout call; COIL_FOREVER: none */
    coil_sem *timer_set; /* released when timer changes (or at the end) */
    coil_sem *finished;  /* released when the last transfer has finished */
    bool over;
};

static double seconds_since(int64_t t0) {
    return (double)(coil_now() - t0) / COIL_SEC;
}

static size_t body(char *data, size_t size, size_t n, void *arg) {
    struct download *d = arg;
    for (size_t i = 0; i < size * n; i++)
        d->fnv = (d->fnv ^ (unsigned char)data[i]) * 16777619u;
    d->bytes += size * n;
    return size * n;
}

/* After each call into libcurl: report the transfers that have finished. */
static void collect(struct app *app) {
    CURLMsg *m;
    int queued;
    while ((m = curl_multi_info_read(app->multi, &queued)) != NULL) {
        if (m->msg != CURLMSG_DONE) continue;
        struct download *d;
        long status = 0;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&d);
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        if (m->data.result == CURLE_OK && status < 400) {
            d->ok = 1;
            printf("Downloaded %s in %.1f seconds (%zu bytes, fnv %08x)\n", d->url,
                   seconds_since(d->start), d->bytes, d->fnv);
        } else {
            app->failures++;
            printf("Failed %s: %s (HTTP %ld)\n", d->url, curl_easy_strerror(m->data.result),
                   status);
        }
        fflush(stdout);
        if (--app->left == 0) coil_sem_release(app->finished);
    }
}

static void action(struct app *app, curl_socket_t fd, int mask) {
    int running;
    curl_multi_socket_action(app->multi, fd, mask, &running);
    collect(app);
}

/* ---- one watcher tasklet per socket ----------------------------------------- */

/* What a watcher waits for. libcurl holds the current one of each socket
 * (curl_multi_assign); stale: replaced or removed, its tasklet is to end
 * without a look at libcurl; id 0: the tasklet ended on its own (an error),
 * and the socket callback frees it. */
struct watch {
    struct app *app;
    curl_socket_t fd;
    int events; /* COIL_READABLE | COIL_WRITABLE */
    bool stale;
    coil_id id;
};

static void watcher(void *arg) {
    struct watch *w = arg;
    while (!w->stale) {
        int r = coil_wait_fd(w->fd, w->events, COIL_FOREVER);
        if (w->stale || r < 0) break; /* replaced, removed, killed (Ctrl-C) */
        /* A hang-up is for the read to find (end of stream, a reset). */
        int mask = (r & (COIL_READABLE | COIL_HANGUP) ? CURL_CSELECT_IN : 0) |
                   (r & COIL_WRITABLE ? CURL_CSELECT_OUT : 0) |
                   (r & COIL_ERROR ? CURL_CSELECT_ERR : 0);
        action(w->app, w->fd, mask);
    }
    if (w->stale)
        free(w);
    else
        w->id = 0; /* libcurl still holds it: the socket callback frees it */
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what, instead of what cur watched. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *arg, void *socketp) {
    (void)easy;
    struct app *app = arg;
    struct watch *cur = socketp;
    int events = what == CURL_POLL_IN      ? COIL_READABLE
                 : what == CURL_POLL_OUT   ? COIL_WRITABLE
                 : what == CURL_POLL_INOUT ? COIL_READABLE | COIL_WRITABLE
                                           : 0; /* CURL_POLL_REMOVE */
    if (cur && events && cur->id == coil_self()) {
        cur->events = events; /* the watcher calling libcurl now waits for these next */
        return 0;
    }
    if (cur) {
        if (cur->id == 0) {
            free(cur);
        } else {
            cur->stale = true;
            if (cur->id != coil_self()) coil_kill(cur->id); /* ends its wait */
        }
    }
    struct watch *w = NULL;
    if (events) {
        w = malloc(sizeof *w);
        if (!w) return -1;
        *w = (struct watch){.app = app, .fd = fd, .events = events};
        w->id = coil_spawn(watcher, w, &(coil_spawn_opts){.name = "watch"});
        if (w->id < 0) {
            free(w);
            return -1;
        }
    }
    curl_multi_assign(app->multi, fd, w);
    return 0;
}

/* ---- libcurl's timer ----------------------------------------------------------- */

/* CURLMOPT_TIMERFUNCTION: call back in ms milliseconds (-1: no timer). */
static int on_timer(CURLM *multi, long ms, void *arg) {
    (void)multi;
    struct app *app = arg;
    app->timer = ms < 0 ? COIL_FOREVER : coil_now() + (int64_t)ms * COIL_MSEC;
    coil_sem_release(app->timer_set); /* never waits */
    return 0;
}

static void timer(void *arg) {
    struct app *app = arg;
    while (!app->over) {
        int r = coil_sem_acquire(app->timer_set, app->timer);
        if (r == -ECANCELED) break;
        if (r == -ETIMEDOUT && !app->over) {
            app->timer = COIL_FOREVER;
            action(app, CURL_SOCKET_TIMEOUT, 0);
        }
    }
}

/* libcurl's sockets are opened and closed through coil, which then knows
 * when a number is reused (and a close wakes a watcher still waiting). */
static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a) {
    (void)arg;
    (void)purpose;
    int fd = coil_socket(a->family, a->socktype, a->protocol);
    return fd < 0 ? CURL_SOCKET_BAD : fd;
}

static int close_socket(void *arg, curl_socket_t fd) {
    (void)arg;
    return coil_close(fd) == 0 ? 0 : 1;
}

/* ---- the offline server: one tasklet per connection ---------------------------- */

static int64_t delay = COIL_SEC / 2;
static int in_hand, most_in_hand; /* requests read and not yet answered */

/* Page i (from 1) has 10,000 * i bytes, byte j being 'a' + (i + j) % 26. */
static void serve(void *arg) {
    int fd = (int)(intptr_t)arg;
    char req[4096];
    size_t got = 0;
    while (got < sizeof req - 1) { /* the request head, up to the empty line */
        ssize_t n =
            coil_recv_dl(fd, req + got, sizeof req - 1 - got, 0, coil_now() + 10 * COIL_SEC);
        if (n <= 0) goto out;
        got += (size_t)n;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n")) break;
    }
    int page = 0;
    if (sscanf(req, "GET /page%d ", &page) != 1 || page < 1 || page > 1000) page = 1;
    if (++in_hand > most_in_hand) most_in_hand = in_hand;
    coil_sleep(delay); /* a slow server: what the parallel downloads hide */
    in_hand--;
    size_t len = (size_t)page * 10000;
    char *resp = malloc(len + 128);
    if (!resp) goto out;
    int h = snprintf(resp, 128,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     len);
    for (size_t j = 0; j < len; j++)
        resp[h + (int)j] = (char)('a' + (page + j) % 26);
    coil_sendall(fd, resp, (size_t)h + len, 0, coil_now() + 10 * COIL_SEC);
    free(resp);
out:
    coil_close(fd);
}

static void server(void *arg) {
    int listener = (int)(intptr_t)arg;
    for (;;) {
        int fd = coil_accept(listener, NULL, NULL);
        if (fd < 0) break; /* -EBADF: closed by main, the demo is over */
        coil_spawn(serve, (void *)(intptr_t)fd, &(coil_spawn_opts){.name = "serve"});
    }
}

/* ---- main ---------------------------------------------------------------------- */

struct demo {
    char **urls;
    int n;
    int failures;
};

static void run_demo(void *arg) {
    struct demo *dm = arg;
    int listener = -1;
    char **own = NULL;
    if (dm->n == 0) { /* offline: serve the pages ourselves */
        listener = coil_listen_on("127.0.0.1", "0", 128);
        struct sockaddr_in a;
        socklen_t alen = sizeof a;
        if (listener < 0 || getsockname(listener, (struct sockaddr *)&a, &alen) != 0) {
            fprintf(stderr, "coil-multi: cannot listen: %s\n", strerror(-listener));
            dm->failures = 1;
            return;
        }
        coil_spawn(server, (void *)(intptr_t)listener, &(coil_spawn_opts){.name = "server"});
        dm->n = (int)(intptr_t)dm->urls;
        own = calloc((size_t)dm->n, sizeof *own);
        for (int i = 0; i < dm->n; i++) {
            own[i] = malloc(64);
            snprintf(own[i], 64, "http://127.0.0.1:%d/page%d", ntohs(a.sin_port), i + 1);
        }
        dm->urls = own;
    }
    struct app app = {.multi = curl_multi_init(), .left = dm->n, .timer = COIL_FOREVER};
    struct download *d = calloc((size_t)dm->n, sizeof *d);
    CURL **easy = calloc((size_t)dm->n, sizeof *easy);
    coil_sem_open(&app.timer_set, 0);
    coil_sem_open(&app.finished, 0);
    curl_multi_setopt(app.multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(app.multi, CURLMOPT_SOCKETDATA, &app);
    curl_multi_setopt(app.multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(app.multi, CURLMOPT_TIMERDATA, &app);
    coil_id timer_id = coil_spawn(timer, &app, &(coil_spawn_opts){.name = "curl timer"});

    printf(" === Parallel, one multi handle ===\n");
    fflush(stdout);
    int64_t t0 = coil_now();
    for (int i = 0; i < dm->n; i++) {
        d[i] = (struct download){.url = dm->urls[i], .fnv = 2166136261u, .start = t0};
        easy[i] = curl_easy_init();
        curl_easy_setopt(easy[i], CURLOPT_URL, d[i].url);
        curl_easy_setopt(easy[i], CURLOPT_PRIVATE, &d[i]);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, body);
        curl_easy_setopt(easy[i], CURLOPT_WRITEDATA, &d[i]);
        curl_easy_setopt(easy[i], CURLOPT_OPENSOCKETFUNCTION, open_socket);
        curl_easy_setopt(easy[i], CURLOPT_CLOSESOCKETFUNCTION, close_socket);
        curl_easy_setopt(easy[i], CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy[i], CURLOPT_TIMEOUT, 60L);
        curl_easy_setopt(easy[i], CURLOPT_FOLLOWLOCATION, 1L);
        curl_multi_add_handle(app.multi, easy[i]); /* sets the timer: the timer tasklet starts it */
    }
    /* -ECANCELED after Ctrl-C: what is still in flight is cancelled below. */
    if (coil_sem_acquire(app.finished, COIL_FOREVER) == 0)
        printf(" ---> %.1f\n", seconds_since(t0));
    else
        printf("Cancelled %d download(s)\n", app.left);
    dm->failures = app.failures + app.left;

    app.over = true;
    coil_sem_release(app.timer_set);
    coil_join(timer_id, COIL_FOREVER);
    for (int i = 0; i < dm->n; i++) {
        curl_multi_remove_handle(app.multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    curl_multi_cleanup(app.multi); /* closes the sockets: their watchers end */
    coil_sem_free(app.timer_set);
    coil_sem_free(app.finished);
    free(easy);
    free(d);
    if (listener >= 0) {
        printf("The server had %d request(s) in hand at once.\n", most_in_hand);
        coil_close(listener); /* the server tasklet ends */
    }
    for (int i = 0; own && i < dm->n; i++)
        free(own[i]);
    free(own);
}

int main(int argc, char **argv) {
    int pages = 4;
    int i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "-d") && i + 1 < argc) {
            delay = (int64_t)(atof(argv[++i]) * COIL_SEC);
        } else if (!strcmp(argv[i], "-n") && i + 1 < argc) {
            pages = atoi(argv[++i]);
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: coil-multi [-d SECONDS] [-n PAGES] [URL...]\n");
            return 2;
        } else {
            break;
        }
    }
    if (pages < 1) pages = 1;
    struct demo dm = {.urls = argv + i, .n = argc - i};
    if (dm.n == 0) dm.urls = (char **)(intptr_t)pages; /* run_demo makes the URLs */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 1;
    int err = coil_run(run_demo, &dm);
    curl_global_cleanup();
    if (err == -EINTR) { /* Ctrl-C: every tasklet was cancelled and has finished */
        fprintf(stderr, "coil-multi: interrupted\n");
        return 130;
    }
    if (err) fprintf(stderr, "coil-multi: coil_run: %s\n", strerror(-err));
    return err || dm.failures ? 1 : 0;
}
