/*
 * switch-ucontext: one context switch of glibc's swapcontext, the peer of
 * coil's switch_ns. swapcontext saves and restores the signal mask, a system
 * call each way, which is what a switch costs without hand-written assembly.
 * Two contexts bounce control; the figure is the round trip / 2, best of 5.
 *
 *   switch-ucontext            prints "ucontext switch_ns X"
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <ucontext.h>

static ucontext_t main_ctx, other_ctx;

static void bounce(void) {
    for (;;)
        swapcontext(&other_ctx, &main_ctx);
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(void) {
    /* static: getcontext returns twice, so locals could be clobbered */
    static const long n = 200000;
    static char stack[64 * 1024];
    static double best = 1e9;
    static int run;
    for (run = 0; run < 5; run++) {
        getcontext(&other_ctx);
        other_ctx.uc_stack.ss_sp = stack;
        other_ctx.uc_stack.ss_size = sizeof stack;
        other_ctx.uc_link = NULL;
        makecontext(&other_ctx, bounce, 0);
        double t0 = now_ns();
        for (long i = 0; i < n; i++)
            swapcontext(&main_ctx, &other_ctx);
        double ns = (now_ns() - t0) / (2.0 * (double)n);
        if (ns < best) best = ns;
    }
    printf("ucontext switch_ns %.2f\n", best);
    return 0;
}
