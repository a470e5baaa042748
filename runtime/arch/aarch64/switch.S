/*
 * Context switch for AArch64 (AAPCS64).
 *
 *   void weft__ctx_switch(void **save_sp, void *load_sp);
 *
 * Saves the callee-saved general registers x19-x28, the frame pointer x29,
 * the link register x30, the low halves d8-d15 of v8-v15 and FPCR, stores sp
 * in *save_sp, loads load_sp and restores the same set.  FPCR is written
 * only when the resumed context's differs from the one just saved: a
 * write of it may serialise the pipeline (glibc's aarch64 fesetround and
 * fesetenv skip an unchanged one too), and coroutines almost never change
 * their rounding mode.  The x86-64 switch does the same for MXCSR and the
 * x87 control word.
 *
 * Frame layout at a saved stack pointer (176 bytes, 16-byte aligned):
 *   +0 x19 x20  +16 x21 x22  +32 x23 x24  +48 x25 x26  +64 x27 x28
 *   +80 x29 x30  +96 d8 d9  +112 d10 d11  +128 d12 d13  +144 d14 d15
 *   +160 fpcr  +168 padding
 */
    .text
    .globl  weft__ctx_switch
    .hidden weft__ctx_switch
    .type   weft__ctx_switch, %function
    .p2align 4
weft__ctx_switch:
    sub     sp, sp, #176
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mrs     x9, fpcr
    str     x9, [sp, #160]
    mov     x10, sp
    str     x10, [x0]
    mov     sp, x1
    ldr     x10, [sp, #160]
    cmp     x9, x10
    b.eq    1f
    msr     fpcr, x10
1:
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8, d9, [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    add     sp, sp, #176
    ret
    .size   weft__ctx_switch, .-weft__ctx_switch

/* First code of a new coroutine: x19 = entry function, x20 = argument.
 * x29 = 0 ends frame-pointer unwinding.  The entry never returns. */
    .globl  weft__ctx_entry
    .hidden weft__ctx_entry
    .type   weft__ctx_entry, %function
    .p2align 4
weft__ctx_entry:
    mov     x29, #0
    mov     x30, #0
    mov     x0, x20
    blr     x19
    brk     #0
    .size   weft__ctx_entry, .-weft__ctx_entry

    .section .note.GNU-stack,"",%progbits
