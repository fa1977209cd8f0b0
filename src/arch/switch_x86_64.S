/*
 * Context switch for the x86-64 System V ABI.
 *
 * void coil__ctx_switch(struct coil__ctx *from, struct coil__ctx *to)
 *
 * Pushes the callee-saved registers (rbp rbx r12-r15) on the current stack,
 * stores rsp in from->sp, loads to->sp and pops the same registers, then
 * jumps to the address on top of the stack: it resumes `to` where it called coil__ctx_switch (or, for a new context,
 * at coil__ctx_start, see ctx.c). MXCSR and the x87 control word are thread
 * state shared by all tasklets (see src/internal.h) and are not switched.
 */
    .text
    .globl  coil__ctx_switch
    .hidden coil__ctx_switch
    .type   coil__ctx_switch, @function
    .p2align 4
coil__ctx_switch:
    .cfi_startproc
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    movq    %rsp, (%rdi)
    movq    (%rsi), %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    /* Not `ret`: the return-stack predictor expects the caller of this call,
     * but we resume another context's caller and would mispredict on every
     * switch. An indirect jump is predicted from its own history (measured:
     * 14 ns per switch with ret, see docs/benchmarks.md). */
    popq    %rcx
    jmpq    *%rcx
    .cfi_endproc
    .size   coil__ctx_switch, .-coil__ctx_switch

/*
 * First code a new context runs: coil__ctx_make leaves the entry function in
 * r12 and its argument in r13. rsp is 16-byte aligned here, so the call gives
 * the entry the alignment the ABI promises. The entry never returns.
 */
    .globl  coil__ctx_start
    .hidden coil__ctx_start
    .type   coil__ctx_start, @function
    .p2align 4
coil__ctx_start:
    .cfi_startproc
    .cfi_undefined rip
    xorl    %ebp, %ebp
    movq    %r13, %rdi
    callq   *%r12
    ud2
    .cfi_endproc
    .size   coil__ctx_start, .-coil__ctx_start

/*
 * void coil__ctx_unwind(const struct coil__ctx *ctx, void (*fn)(void *), void *arg)
 *
 * Calls fn(arg) on the current stack, in a frame whose call-frame
 * information (CFI) names the parked context ctx as its caller: the canonical
 * frame address is ctx->sp + 56, where coil__ctx_switch left the resume
 * address (at CFA - 8) above the six registers it pushed. A DWARF unwinder
 * started in fn (glibc's backtrace) thus walks from fn into this frame and
 * then up the parked tasklet's stack, with rbp, rbx and r12-r15 as they were
 * in the tasklet (frames that locate their CFA through rbp need it), until
 * coil__ctx_start ends the walk (.cfi_undefined rip). Nothing switches stacks,
 * so ASan and TSan see no fiber switch and Valgrind no stack change; the
 * parked stack is only read. rbx holds ctx->sp across the call: it is
 * callee-saved, and the unwinder recovers its value here through fn's CFI.
 */
    .globl  coil__ctx_unwind
    .hidden coil__ctx_unwind
    .type   coil__ctx_unwind, @function
    .p2align 4
coil__ctx_unwind:
    .cfi_startproc
    pushq   %rbx
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbx, 0
    movq    (%rdi), %rbx
    .cfi_remember_state
    .cfi_def_cfa rbx, 56
    .cfi_offset rip, -8
    .cfi_offset rbp, -16
    .cfi_offset rbx, -24
    .cfi_offset r12, -32
    .cfi_offset r13, -40
    .cfi_offset r14, -48
    .cfi_offset r15, -56
    movq    %rsi, %rax
    movq    %rdx, %rdi
    callq   *%rax /* rsp is 16-byte aligned: the push above evened it */
    .globl  coil__ctx_unwind_ret
    .hidden coil__ctx_unwind_ret
coil__ctx_unwind_ret:
    .cfi_restore_state
    popq    %rbx
    .cfi_adjust_cfa_offset -8
    .cfi_restore rbx
    ret
    .cfi_endproc
    .size   coil__ctx_unwind, .-coil__ctx_unwind

    .section .note.GNU-stack, "", @progbits
