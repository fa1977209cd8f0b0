/*
 * coil-download: the parallel download demo of Stackless Python's socket
 * module, in C. libcurl's easy API (curl_easy_perform blocks until the
 * transfer is done) downloads each URL, first one after another, then one
 * tasklet per URL, all at once. libcurl is not modified: coil_install()
 * diverts the blocking calls it makes (connect, poll, recv, send, ...) into
 * coil, so each blocked download parks only its own tasklet.
 *
 *   coil-download [-d SECONDS] [-n PAGES] [URL...]
 *
 * With no URL it runs offline: a small HTTP server in a tasklet of the same
 * program answers each request after SECONDS (default 0.5), and PAGES pages
 * (default 4) are downloaded from it. Exit status 0 when every download
 * succeeded; 130 after Ctrl-C, once every download has been cancelled and
 * everything freed.
 */
#include <coil.h>

#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct download {
    const char *url;
    size_t bytes;
    int ok;
};

static size_t count_bytes(char *data, size_t size, size_t n, void *arg) {
    (void)data;
    ((struct download *)arg)->bytes += size * n;
    return size * n;
}

static double seconds_since(int64_t t0) {
    return (double)(coil_now() - t0) / COIL_SEC;
}

/* One download, with libcurl's blocking easy API. */
static void download(void *arg) {
    struct download *d = arg;
    CURL *h = curl_easy_init();
    if (!h) {
        fprintf(stderr, "coil-download: curl_easy_init failed\n");
        return;
    }
    curl_easy_setopt(h, CURLOPT_URL, d->url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, count_bytes);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, d);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* no SIGALRM for timeouts */
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    int64_t t0 = coil_now();
    d->bytes = 0;
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OK && status < 400) {
        d->ok = 1;
        printf("Downloaded %s in %.1f seconds (%zu bytes)\n", d->url, seconds_since(t0), d->bytes);
    } else if (coil_killed()) {
        /* Ctrl-C: libcurl reports the cancelled calls as an error of its
         * own; coil_killed() tells that apart from a real failure. */
        printf("Cancelled %s\n", d->url);
    } else {
        printf("Failed %s: %s (HTTP %ld)\n", d->url, curl_easy_strerror(rc), status);
    }
    fflush(stdout);
    curl_easy_cleanup(h);
}

/* ---- the offline server: one tasklet per connection ---------------------- */

static int64_t delay = COIL_SEC / 2;

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
    coil_sleep(delay); /* a slow server: what the parallel run hides */
    char page[256], resp[512];
    int len = snprintf(page, sizeof page, "Page served by a coil tasklet after %.1f s.\n",
                       (double)delay / COIL_SEC);
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                     "Connection: close\r\n\r\n%s",
                     len, page);
    coil_sendall(fd, resp, (size_t)n, 0, coil_now() + 10 * COIL_SEC);
out:
    coil_close(fd);
}

static void server(void *arg) {
    int listener = (int)(intptr_t)arg;
    for (;;) {
        int fd = coil_accept(listener, NULL, NULL);
        if (fd < 0) break; /* -EBADF: closed by main, the demo is over */
        coil_spawn(serve, (void *)(intptr_t)fd, NULL);
    }
}

/* ---- main ---------------------------------------------------------------- */

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
            fprintf(stderr, "coil-download: cannot listen: %s\n", strerror(-listener));
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
    struct download *d = calloc((size_t)dm->n, sizeof *d);
    for (int i = 0; i < dm->n; i++)
        d[i].url = dm->urls[i];

    printf(" === Serial ===\n");
    int64_t t0 = coil_now();
    for (int i = 0; i < dm->n && !coil_killed(); i++) /* Ctrl-C: start no more */
        download(&d[i]);
    printf(" ---> %.1f\n", seconds_since(t0));
    for (int i = 0; i < dm->n; i++)
        dm->failures += !d[i].ok;
    if (coil_killed()) goto out; /* Ctrl-C during the serial run */

    printf(" === Parallel ===\n");
    fflush(stdout);
    coil_id *ids = calloc((size_t)dm->n, sizeof *ids);
    t0 = coil_now();
    for (int i = 0; i < dm->n; i++) {
        d[i].ok = 0;
        ids[i] = coil_spawn(download, &d[i], NULL);
    }
    /* Each download uses d[i] and its URL until it ends. After Ctrl-C this
     * tasklet is killed too, but a join still waits for the download to
     * finish unwinding, so what it uses is freed only after that. */
    for (int i = 0; i < dm->n; i++)
        coil_join(ids[i], COIL_FOREVER);
    printf(" ---> %.1f\n", seconds_since(t0));
    for (int i = 0; i < dm->n; i++)
        dm->failures += !d[i].ok;
    free(ids);

out:
    if (listener >= 0) coil_close(listener); /* the server tasklet ends */
    for (int i = 0; own && i < dm->n; i++)
        free(own[i]);
    free(own);
    free(d);
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
            fprintf(stderr, "usage: coil-download [-d SECONDS] [-n PAGES] [URL...]\n");
            return 2;
        } else {
            break;
        }
    }
    if (pages < 1) pages = 1;
    struct demo dm = {.urls = argv + i, .n = argc - i};
    if (dm.n == 0) dm.urls = (char **)(intptr_t)pages; /* run_demo makes the URLs */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 1;
    int err = coil_install(); /* from here on, libcurl's blocking calls park tasklets */
    if (err) {
        fprintf(stderr, "coil-download: coil_install: %s\n", strerror(-err));
        return 1;
    }
    err = coil_run(run_demo, &dm);
    curl_global_cleanup();
    if (err == -EINTR) { /* Ctrl-C: every tasklet was cancelled and has finished */
        fprintf(stderr, "coil-download: interrupted\n");
        return 130; /* what a shell reports for a command ended by Ctrl-C */
    }
    if (err) fprintf(stderr, "coil-download: coil_run: %s\n", strerror(-err));
    return err || dm.failures ? 1 : 0;
}
