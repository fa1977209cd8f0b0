/* Building the first frame of a new context, for the switch routines in this
 * folder. Each ABI's frame mirrors what its coil__ctx_switch pops. */
#include "internal.h"

#include <stdint.h>
#include <string.h>

void coil__ctx_start(void);

void coil__ctx_make(struct coil__ctx *ctx, void *top, void (*entry)(void *), void *arg) {
    uintptr_t t = (uintptr_t)top & ~(uintptr_t)15;
#if defined(__x86_64__) && defined(_WIN32)
    /* The 256-byte frame of switch_win64.S, from the stack pointer up:
     * xmm6..xmm15 (160 bytes), DeallocationStack, StackLimit, StackBase,
     * r15 r14 r13 r12 rsi rdi rbx rbp, then the address its jmp resumes at;
     * coil__ctx_start then runs with rsp = frame + 256, 16-byte aligned.
     * The TEB's stack bounds must describe the tasklet's stack while it runs:
     * ctx is the first member of the tasklet record, which knows its
     * mapping (see src/win/stack.c), so the bounds are known. */
    struct coil__tasklet *owner = coil__container_of(ctx, struct coil__tasklet, ctx);
    uint64_t *sp = (uint64_t *)(t - 16 - 256);
    memset(sp, 0, 256);
    sp[20] = (uint64_t)(uintptr_t)owner->map;            /* DeallocationStack */
    sp[21] = (uint64_t)(uintptr_t)coil__stack_lo(owner); /* StackLimit */
    sp[22] = (uint64_t)(uintptr_t)top;                   /* StackBase */
    sp[25] = (uint64_t)(uintptr_t)arg;                   /* r13 */
    sp[26] = (uint64_t)(uintptr_t)entry;                 /* r12 */
    sp[31] = (uint64_t)(uintptr_t)coil__ctx_start;
    ctx->sp = sp;
#elif defined(__x86_64__)
    /* Popped by coil__ctx_switch: r15 r14 r13 r12 rbx rbp, then `ret` to
     * coil__ctx_start with rsp = t - 16 (16-byte aligned). */
    uint64_t *sp = (uint64_t *)(t - 16) - 7;
    memset(sp, 0, 9 * sizeof *sp);
    sp[2] = (uint64_t)(uintptr_t)arg;   /* r13 */
    sp[3] = (uint64_t)(uintptr_t)entry; /* r12 */
    sp[6] = (uint64_t)(uintptr_t)coil__ctx_start;
    ctx->sp = sp;
#elif defined(__aarch64__)
    /* The 160-byte frame of coil__ctx_switch: x19..x30 then d8..d15. */
    uint64_t *sp = (uint64_t *)(t - 160);
    memset(sp, 0, 160);
    sp[0] = (uint64_t)(uintptr_t)entry;            /* x19 */
    sp[1] = (uint64_t)(uintptr_t)arg;              /* x20 */
    sp[11] = (uint64_t)(uintptr_t)coil__ctx_start; /* x30 */
    ctx->sp = sp;
#else
#error "coil: no context switch for this architecture (src/arch/)"
#endif
}

bool coil__ctx_fresh(const struct coil__ctx *ctx) {
    const uint64_t *sp = ctx->sp;
#if defined(__x86_64__) && defined(_WIN32)
    return sp[31] == (uint64_t)(uintptr_t)coil__ctx_start;
#elif defined(__x86_64__)
    return sp[6] == (uint64_t)(uintptr_t)coil__ctx_start;
#else
    return sp[11] == (uint64_t)(uintptr_t)coil__ctx_start;
#endif
}
