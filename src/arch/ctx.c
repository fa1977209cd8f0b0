/* Building the first frame of a new context, for the switch routines in this
 * folder. Each ABI's frame mirrors what its coil__ctx_switch pops. */
#include "internal.h"

#include <stdint.h>
#include <string.h>

void coil__ctx_start(void);

void coil__ctx_make(struct coil__ctx *ctx, void *top, void (*entry)(void *), void *arg) {
    uintptr_t t = (uintptr_t)top & ~(uintptr_t)15;
#if defined(__x86_64__)
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
