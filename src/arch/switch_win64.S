/*
 * Context switch for the Windows x64 ABI (mingw-w64).
 *
 * void coil__ctx_switch(struct coil__ctx *from, struct coil__ctx *to)
 *                       rcx                     rdx
 *
 * Why assembly and not Windows fibers: see docs/architecture.md ("The Win64
 * switch"). In short: the same shape as the SysV switch (a context is its
 * stack pointer, the tasklet record sits at the top of its own stack, stacks
 * are pooled), no fiber object or per-fiber allocation, no thread converted
 * to a fiber.
 *
 * Saved on the current stack, pushed in this order (the frame coil__ctx_make
 * builds for a new context in ctx.c mirrors it):
 *   rbp rbx rdi rsi r12 r13 r14 r15       the ABI's callee-saved GPRs
 *   gs:0x08  TEB StackBase                the running stack's bounds, which
 *   gs:0x10  TEB StackLimit               Windows reads (exception dispatch,
 *   gs:0x1478 TEB DeallocationStack       stack probes, guard handling)
 *   xmm6..xmm15 (160 bytes)               callee-saved in Win64, unlike SysV
 * Total with the return address: 256 bytes. At entry rsp = 8 (mod 16); after
 * the 11 pushes it is 0 (mod 16), so the movaps below are aligned. MXCSR and
 * the x87 control word are thread state (see src/internal.h), not switched.
 */
    .text
    .globl  coil__ctx_switch
    .def    coil__ctx_switch; .scl 2; .type 32; .endef
    .p2align 4
coil__ctx_switch:
    pushq   %rbp
    pushq   %rbx
    pushq   %rdi
    pushq   %rsi
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    pushq   %gs:0x08
    pushq   %gs:0x10
    pushq   %gs:0x1478
    subq    $160, %rsp
    movaps  %xmm6, 0(%rsp)
    movaps  %xmm7, 16(%rsp)
    movaps  %xmm8, 32(%rsp)
    movaps  %xmm9, 48(%rsp)
    movaps  %xmm10, 64(%rsp)
    movaps  %xmm11, 80(%rsp)
    movaps  %xmm12, 96(%rsp)
    movaps  %xmm13, 112(%rsp)
    movaps  %xmm14, 128(%rsp)
    movaps  %xmm15, 144(%rsp)
    movq    %rsp, (%rcx)
    movq    (%rdx), %rsp
    movaps  0(%rsp), %xmm6
    movaps  16(%rsp), %xmm7
    movaps  32(%rsp), %xmm8
    movaps  48(%rsp), %xmm9
    movaps  64(%rsp), %xmm10
    movaps  80(%rsp), %xmm11
    movaps  96(%rsp), %xmm12
    movaps  112(%rsp), %xmm13
    movaps  128(%rsp), %xmm14
    movaps  144(%rsp), %xmm15
    addq    $160, %rsp
    popq    %gs:0x1478
    popq    %gs:0x10
    popq    %gs:0x08
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rsi
    popq    %rdi
    popq    %rbx
    popq    %rbp
    /* An indirect jump, not ret, as in switch_x86_64.S (the return-stack
     * predictor always guesses wrong after a stack switch). */
    popq    %r11
    jmpq    *%r11

/*
 * First code a new context runs: coil__ctx_make leaves the entry function in
 * r12 and its argument in r13, and rsp 16-byte aligned. The callee gets its
 * 32 bytes of shadow space (Win64: the caller reserves them) and the usual
 * alignment (rsp = 8 mod 16 after the call). The entry never returns.
 */
    .globl  coil__ctx_start
    .def    coil__ctx_start; .scl 2; .type 32; .endef
    .p2align 4
coil__ctx_start:
    xorl    %ebp, %ebp
    movq    %r13, %rcx
    subq    $32, %rsp
    callq   *%r12
    ud2
