/*
 * Context switch for x86-64, System V ABI.
 *
 *   void weft__ctx_switch(void **save_sp, void *load_sp);
 *
 * Saves the callee-saved registers (rbp, rbx, r12-r15), the SSE control and
 * status word (MXCSR) and the x87 control word on the current stack, stores
 * the stack pointer in *save_sp, loads load_sp and restores the same set from
 * there.  Everything caller-saved is, by the ABI, already dead at the call.
 *
 * Frame layout at a saved stack pointer (low to high address):
 *   +0  MXCSR (4 bytes)  +4 x87 CW (2 bytes)  +8 r15  +16 r14  +24 r13
 *   +32 r12  +40 rbx  +48 rbp  +56 return address
 * weft__ctx_make (context.c) builds the same frame for a new coroutine with
 * the return address pointing at weft__ctx_entry.
 */
    .text
    .globl  weft__ctx_switch
    .hidden weft__ctx_switch
    .type   weft__ctx_switch, @function
    .p2align 4
weft__ctx_switch:
    .cfi_startproc
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    subq    $8, %rsp
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    /* Loading MXCSR and the x87 control word serialises the pipeline, and
     * coroutines almost never change them: load only what differs.  The
     * scratch slot is in the red zone; eax/ecx are caller-saved. */
    stmxcsr -8(%rsp)
    movl    -8(%rsp), %eax
    cmpl    (%rsp), %eax
    jne     3f
1:  fnstcw  -8(%rsp)
    movzwl  -8(%rsp), %eax
    movzwl  4(%rsp), %ecx
    cmpl    %ecx, %eax
    jne     4f
2:  addq    $8, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret
3:  ldmxcsr (%rsp)
    jmp     1b
4:  fldcw   4(%rsp)
    jmp     2b
    .cfi_endproc
    .size   weft__ctx_switch, .-weft__ctx_switch

/*
 * First code a new coroutine runs: r12 holds the entry function, r13 its
 * argument.  rbp is zero so frame-pointer unwinders stop here.  The entry
 * function never returns (a finished coroutine switches away for good).
 */
    .globl  weft__ctx_entry
    .hidden weft__ctx_entry
    .type   weft__ctx_entry, @function
    .p2align 4
weft__ctx_entry:
    .cfi_startproc
    .cfi_undefined rip
    xorl    %ebp, %ebp
    movq    %r13, %rdi
    andq    $-16, %rsp
    callq   *%r12
    ud2
    .cfi_endproc
    .size   weft__ctx_entry, .-weft__ctx_entry

    .section .note.GNU-stack,"",@progbits
