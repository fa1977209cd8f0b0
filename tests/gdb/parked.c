/* The program tests/gdb/run.py looks at with tools/gdb/coil.py: tasklets
 * parked in known functions, then main's tasklet stops in stop_here, where
 * the live test's breakpoint is. With "group" as its argument it runs a
 * group of two schedulers, and one more tasklet parks on the second (in
 * remote_in_here). With "core", stop_here
 * aborts instead, and the kernel writes a core file into the current
 * directory (the test's: it sets RLIMIT_CORE here and checks the kernel's
 * core_pattern before). Each function is noinline so that it stays a frame
 * of its own; static, as gdb names them from the debug information. */
#include <coil.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static coil_chan *ch;
static int dump_core;

__attribute__((noinline)) static int sleeper_in_here(int64_t ns) {
    int rc = coil_sleep(ns);
    __asm__ volatile("" ::: "memory");
    return rc;
}

static void sleeper(void *arg) {
    (void)arg;
    sleeper_in_here(60 * COIL_SEC);
}

__attribute__((noinline)) static int receiver_in_here(coil_chan *c) {
    int v = 0;
    int rc = coil_chan_recv(c, &v);
    return rc + v;
}

__attribute__((noinline)) static int receiver_outer(coil_chan *c) {
    int rc = receiver_in_here(c);
    __asm__ volatile("" ::: "memory");
    return rc;
}

static void receiver(void *arg) {
    receiver_outer(arg);
}

static void joiner(void *arg) {
    coil_join(*(coil_id *)arg, COIL_FOREVER);
    __asm__ volatile("" ::: "memory"); /* no tail call: joiner stays a frame */
}

/* The live test's breakpoint. */
__attribute__((noinline)) void stop_here(void);
__attribute__((noinline)) void stop_here(void) {
    if (dump_core) abort();
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static int remote_in_here(coil_chan *ready) {
    int one = 1;
    if (coil_chan_send(ready, &one)) return -1;
    int rc = coil_sleep(60 * COIL_SEC);
    __asm__ volatile("" ::: "memory");
    return rc;
}

static void remote(void *arg) {
    remote_in_here(arg);
}

static void start(void *arg) {
    int group = *(int *)arg;
    coil_chan *ready = NULL;
    coil_id r = 0;
    if (coil_chan_open(&ch, sizeof(int), 0)) exit(2);
    if (group) {
        /* It says when it is about to park; 50 ms then leave it ample time
         * to have parked, on its own thread. */
        if (coil_chan_open(&ready, sizeof(int), 1)) exit(2);
        r = coil_spawn_on(1, remote, ready, &(coil_spawn_opts){.name = "remote"});
        int v;
        if (r < 0 || coil_chan_recv(ready, &v)) exit(2);
        coil_sleep(50 * COIL_MSEC);
    }
    coil_id a = coil_spawn(sleeper, NULL, &(coil_spawn_opts){.name = "sleeper"});
    coil_id b = coil_spawn(receiver, ch, &(coil_spawn_opts){.name = "receiver"});
    coil_id j = coil_spawn(joiner, &a, &(coil_spawn_opts){.name = "joiner"});
    coil_yield(); /* all three park */
    coil_id c = coil_spawn(sleeper, NULL, &(coil_spawn_opts){.name = "unstarted"});
    stop_here();
    if (group) {
        coil_kill(r);
        coil_join(r, COIL_FOREVER);
        coil_chan_free(ready);
    }
    coil_kill(a);
    coil_kill(c);
    coil_chan_close(ch);
    coil_join(a, COIL_FOREVER);
    coil_join(b, COIL_FOREVER);
    coil_join(j, COIL_FOREVER);
    coil_join(c, COIL_FOREVER);
    coil_chan_free(ch);
}

int main(int argc, char **argv) {
    int group = argc > 1 && strcmp(argv[1], "group") == 0;
    if (argc > 1 && strcmp(argv[1], "core") == 0) {
        struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
        if (setrlimit(RLIMIT_CORE, &rl) != 0) {
            perror("setrlimit");
            return 2;
        }
        dump_core = 1;
    }
    int rc = group ? coil_run_group(2, start, &group) : coil_run(start, &group);
    printf("coil_run: %d\n", rc);
    return rc == 0 ? 0 : 1;
}
