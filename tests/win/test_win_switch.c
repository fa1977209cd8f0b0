/* The Win64 context switch and stacks under Wine: xmm6-xmm15 survive a
 * switch (callee-saved in Win64, not in SysV), the TEB's stack bounds
 * describe the running tasklet's stack and are the thread's own again after
 * coil_run, the guard below a stack is PAGE_NOACCESS, and an overflow into
 * it ends the process with a message naming the tasklet. */
#include "win_test.h"

/* The TEB field at gs:off (intrin.h's __readgsqword warns with gcc 12). */
static uintptr_t teb_read(unsigned off) {
    uintptr_t v;
    __asm__ volatile("movq %%gs:(%1), %0" : "=r"(v) : "r"((uintptr_t)off));
    return v;
}

/* ---- xmm6-xmm15 --------------------------------------------------------- */

static uint64_t xmm_in[20], xmm_out[20];

/* Loads xmm6..xmm15, calls coil_yield, stores them: all in one asm block so
 * that the compiler cannot touch them in between. */
static void hold_xmm_across_yield(void) {
    __asm__ volatile("movdqu 0(%0), %%xmm6\n\t"
                     "movdqu 16(%0), %%xmm7\n\t"
                     "movdqu 32(%0), %%xmm8\n\t"
                     "movdqu 48(%0), %%xmm9\n\t"
                     "movdqu 64(%0), %%xmm10\n\t"
                     "movdqu 80(%0), %%xmm11\n\t"
                     "movdqu 96(%0), %%xmm12\n\t"
                     "movdqu 112(%0), %%xmm13\n\t"
                     "movdqu 128(%0), %%xmm14\n\t"
                     "movdqu 144(%0), %%xmm15\n\t"
                     "movq %%rsp, %%rbx\n\t"
                     "andq $-16, %%rsp\n\t"
                     "subq $32, %%rsp\n\t"
                     "call coil_yield\n\t"
                     "movq %%rbx, %%rsp\n\t"
                     "movdqu %%xmm6, 0(%1)\n\t"
                     "movdqu %%xmm7, 16(%1)\n\t"
                     "movdqu %%xmm8, 32(%1)\n\t"
                     "movdqu %%xmm9, 48(%1)\n\t"
                     "movdqu %%xmm10, 64(%1)\n\t"
                     "movdqu %%xmm11, 80(%1)\n\t"
                     "movdqu %%xmm12, 96(%1)\n\t"
                     "movdqu %%xmm13, 112(%1)\n\t"
                     "movdqu %%xmm14, 128(%1)\n\t"
                     "movdqu %%xmm15, 144(%1)\n\t"
                     :
                     : "r"(xmm_in), "r"(xmm_out)
                     : "rax", "rbx", "rcx", "rdx", "r8", "r9", "r10", "r11", "memory", "xmm0",
                       "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
                       "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

static void clobber_xmm(void *arg) {
    (void)arg;
    static const uint64_t junk[2] = {0xdeaddeaddeaddeadull, 0xbeefbeefbeefbeefull};
    __asm__ volatile("movdqu (%0), %%xmm6\n\tmovdqa %%xmm6, %%xmm7\n\tmovdqa %%xmm6, %%xmm8\n\t"
                     "movdqa %%xmm6, %%xmm9\n\tmovdqa %%xmm6, %%xmm10\n\tmovdqa %%xmm6, %%xmm11\n\t"
                     "movdqa %%xmm6, %%xmm12\n\tmovdqa %%xmm6, %%xmm13\n\t"
                     "movdqa %%xmm6, %%xmm14\n\tmovdqa %%xmm6, %%xmm15\n\t"
                     :
                     : "r"(junk)
                     : "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
                       "xmm15");
    coil_yield(); /* back to the holder with these values live */
}

static void xmm_main(void *arg) {
    (void)arg;
    for (int i = 0; i < 20; i++)
        xmm_in[i] = 0x0101010101010101ull * (uint64_t)(i + 1);
    coil_spawn(clobber_xmm, NULL, NULL);
    hold_xmm_across_yield();
    for (int i = 0; i < 20; i++)
        EXPECT_EQ(xmm_out[i], xmm_in[i]);
}

static void test_xmm_preserved(void **state) {
    (void)state;
    COIL_RUN_CHECKED(xmm_main, NULL);
}

/* ---- the TEB's stack bounds and the guard -------------------------------- */

struct bounds {
    uintptr_t base, limit;
};

static struct bounds teb_bounds(void) {
    struct bounds b = {teb_read(0x08), teb_read(0x10)};
    return b;
}

static void bounds_tasklet(void *arg) {
    struct bounds *outer = arg;
    struct bounds b = teb_bounds();
    volatile char local;
    uintptr_t here = (uintptr_t)&local;
    EXPECT(b.limit < here && here < b.base);
    EXPECT(b.base - b.limit <= 64 * 1024 + 4096); /* this tasklet's 64 KiB, not the thread's */
    EXPECT(b.base != outer->base);
    ULONG_PTR lo = 0, hi = 0;
    GetCurrentThreadStackLimits(&lo, &hi);
    EXPECT_EQ(hi, b.base);
    EXPECT(lo < b.limit); /* DeallocationStack: the reservation, guard included */
    /* Below the stack: a guard page, and below it reserved pages (see
     * src/win/stack.c), which fault like PAGE_NOACCESS. */
    MEMORY_BASIC_INFORMATION mbi;
    EXPECT(VirtualQuery((void *)(b.limit - 1), &mbi, sizeof mbi) == sizeof mbi);
    EXPECT_EQ(mbi.Protect, PAGE_READWRITE | PAGE_GUARD);
    EXPECT_EQ(mbi.State, MEM_COMMIT);
    EXPECT(VirtualQuery((void *)(b.limit - 8192), &mbi, sizeof mbi) == sizeof mbi);
    EXPECT_EQ(mbi.State, MEM_RESERVE);
    coil_yield();
    /* Still ours after a switch away and back. */
    struct bounds again = teb_bounds();
    EXPECT_EQ(again.base, b.base);
    EXPECT_EQ(again.limit, b.limit);
}

static void bounds_main(void *arg) {
    coil_spawn_opts o = {.stack_size = 64 * 1024};
    coil_id a = coil_spawn(bounds_tasklet, arg, &o);
    coil_id b = coil_spawn(bounds_tasklet, arg, &o);
    coil_join(a, COIL_FOREVER);
    coil_join(b, COIL_FOREVER);
}

static void test_teb_bounds(void **state) {
    (void)state;
    struct bounds outer = teb_bounds();
    COIL_RUN_CHECKED(bounds_main, &outer);
    struct bounds after = teb_bounds();
    assert_true(after.base == outer.base);
    assert_true(after.limit == outer.limit);
}

/* ---- overflow, in a child process ---------------------------------------- */

/* Each frame's buffer is used after the call returns, so the recursion
 * cannot become a loop. */
__attribute__((noinline)) static int deep(int n, volatile char *up) {
    volatile char frame[1024];
    frame[0] = (char)n;
    int r = n == 0 ? 0 : deep(n - 1, frame);
    return r + frame[0] + up[0];
}

static void overflow_tasklet(void *arg) {
    (void)arg;
    volatile char top[1] = {0};
    deep(1 << 20, top);
}

static void overflow_main(void *arg) {
    (void)arg;
    coil_spawn_opts o = {.name = "deep", .stack_size = 64 * 1024};
    coil_join(coil_spawn(overflow_tasklet, NULL, &o), COIL_FOREVER);
}

static void test_overflow_names_the_tasklet(void **state) {
    (void)state;
    char exe[MAX_PATH], cmd[MAX_PATH + 32];
    GetModuleFileNameA(NULL, exe, sizeof exe);
    snprintf(cmd, sizeof cmd, "\"%s\" overflow", exe);
    SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE};
    HANDLE rd, wr;
    assert_true(CreatePipe(&rd, &wr, &sa, 0));
    SetHandleInformation(rd, HANDLE_FLAG_INHERIT, 0);
    STARTUPINFOA si = {.cb = sizeof si, .dwFlags = STARTF_USESTDHANDLES};
    si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
    si.hStdOutput = wr;
    si.hStdError = wr;
    PROCESS_INFORMATION pi;
    assert_true(CreateProcessA(NULL, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi));
    CloseHandle(wr);
    char out[4096];
    DWORD len = 0, n;
    while (len < sizeof out - 1 && ReadFile(rd, out + len, sizeof out - 1 - len, &n, NULL) && n)
        len += n;
    out[len] = '\0';
    CloseHandle(rd);
    assert_int_equal(WaitForSingleObject(pi.hProcess, 30000), WAIT_OBJECT_0);
    DWORD code = 0;
    GetExitCodeProcess(pi.hProcess, &code);
    CloseHandle(pi.hProcess);
    CloseHandle(pi.hThread);
    print_message("child said: %s(exit code %lu)\n", out, (unsigned long)code);
    /* It never goes on past the overflow. */
    assert_null(strstr(out, "survived"));
    if (getenv("COIL_UNDER_WINE") && !strstr(out, "overflowed")) {
        /* Wine 8.0 cannot dispatch this exception: the host process dies of
         * SIGSEGV inside Wine's own handler, and the parent sees exit code
         * 0 (see docs/architecture.md). The message is not testable here. */
        print_message("under Wine: the child died without the message (known, documented)\n");
        return;
    }
    assert_int_equal(code, 3);
    assert_non_null(strstr(out, "coil: tasklet 2 \"deep\" overflowed its 65536-byte stack"));
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "overflow")) {
        coil_run(overflow_main, NULL);
        printf("survived\n"); /* not reached: the overflow ends the process */
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xmm_preserved),
        cmocka_unit_test(test_teb_bounds),
        cmocka_unit_test(test_overflow_names_the_tasklet),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
