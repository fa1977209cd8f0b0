/*
 * Context switch for the AArch64 procedure call standard (AAPCS64).
 *
 * void coil__ctx_switch(struct coil__ctx *from, struct coil__ctx *to)
 *
 * Saves the callee-saved registers x19-x28, the frame pointer x29, the link
 * register x30 and the low halves of v8-v15 (d8-d15) in a 160-byte frame on
 * the current stack, stores sp in from->sp, loads to->sp, restores the same
 * frame and returns through x30. FPCR is thread state (see src/internal.h).
 */
    .text
    .globl  coil__ctx_switch
    .hidden coil__ctx_switch
    .type   coil__ctx_switch, %function
    .p2align 4
coil__ctx_switch:
    .cfi_startproc
    sub     sp, sp, #160
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8,  d9,  [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mov     x9, sp
    str     x9, [x0]
    ldr     x9, [x1]
    mov     sp, x9
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8,  d9,  [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    add     sp, sp, #160
    ret
    .cfi_endproc
    .size   coil__ctx_switch, .-coil__ctx_switch

/*
 * First code a new context runs: coil__ctx_make leaves the entry function in
 * x19 and its argument in x20, and x29 = 0 ends frame-pointer walks here.
 */
    .globl  coil__ctx_start
    .hidden coil__ctx_start
    .type   coil__ctx_start, %function
    .p2align 4
coil__ctx_start:
    .cfi_startproc
    .cfi_undefined x30
    mov     x0, x20
    blr     x19
    brk     #0
    .cfi_endproc
    .size   coil__ctx_start, .-coil__ctx_start

    .section .note.GNU-stack, "", %progbits
