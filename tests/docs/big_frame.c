/* A tasklet whose one frame (1 MiB) is larger than its stack (256 KiB) and the
 * guard below it (64 KiB) together. Built with coil.pc's Cflags
 * (-fstack-clash-protection), the frame is probed page by page on the way
 * down, a probe faults in the guard, and coil ends the process with its
 * overflow message; without them the first store lands past the guard, and
 * the process dies of a bare SIGSEGV, or worse. installed.sh builds it. */
#include <coil.h>

static void big_frame(void *arg) {
    volatile char frame[1024 * 1024];
    frame[0] = 1;
    *(int *)arg = frame[0];
}

static void start(void *arg) {
    coil_spawn(big_frame, arg, &(coil_spawn_opts){.name = "big frame"});
}

int main(void) {
    int out = 0;
    coil_run(start, &out);
    return 1; /* not reached: the overflow ends the process */
}
