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

    .section .note.GNU-stack, "", @progbits
