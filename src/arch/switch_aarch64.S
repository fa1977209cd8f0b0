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

/*
 * void coil__ctx_unwind(const struct coil__ctx *ctx, void (*fn)(void *), void *arg)
 *
 * Calls fn(arg) on the current stack, in a frame whose call-frame
 * information (CFI) names the parked context ctx as its caller: the canonical
 * frame address is ctx->sp + 160, the top of coil__ctx_switch's frame, and
 * every register that frame holds (x19-x30, d8-d15) is described at its slot,
 * x30 being the resume address. A DWARF unwinder started in fn (glibc's
 * backtrace) thus walks from fn into this frame and then up the parked
 * tasklet's stack until coil__ctx_start ends the walk (.cfi_undefined x30).
 * Nothing switches stacks (see switch_x86_64.S). x19 holds ctx->sp across
 * the call: it is callee-saved, and the unwinder recovers it through fn's CFI.
 */
    .globl  coil__ctx_unwind
    .hidden coil__ctx_unwind
    .type   coil__ctx_unwind, %function
    .p2align 4
coil__ctx_unwind:
    .cfi_startproc
    stp     x29, x30, [sp, #-32]!
    .cfi_def_cfa_offset 32
    .cfi_offset x29, -32
    .cfi_offset x30, -24
    str     x19, [sp, #16]
    .cfi_offset x19, -16
    mov     x29, sp
    ldr     x19, [x0]
    .cfi_remember_state
    .cfi_def_cfa x19, 160
    .cfi_offset x19, -160
    .cfi_offset x20, -152
    .cfi_offset x21, -144
    .cfi_offset x22, -136
    .cfi_offset x23, -128
    .cfi_offset x24, -120
    .cfi_offset x25, -112
    .cfi_offset x26, -104
    .cfi_offset x27, -96
    .cfi_offset x28, -88
    .cfi_offset x29, -80
    .cfi_offset x30, -72
    .cfi_offset d8, -64
    .cfi_offset d9, -56
    .cfi_offset d10, -48
    .cfi_offset d11, -40
    .cfi_offset d12, -32
    .cfi_offset d13, -24
    .cfi_offset d14, -16
    .cfi_offset d15, -8
    mov     x9, x1
    mov     x0, x2
    blr     x9
    .globl  coil__ctx_unwind_ret
    .hidden coil__ctx_unwind_ret
coil__ctx_unwind_ret:
    .cfi_restore_state
    ldr     x19, [sp, #16]
    ldp     x29, x30, [sp], #32
    .cfi_restore x19
    .cfi_restore x29
    .cfi_restore x30
    .cfi_def_cfa_offset 0
    ret
    .cfi_endproc
    .size   coil__ctx_unwind, .-coil__ctx_unwind

    .section .note.GNU-stack, "", %progbits
