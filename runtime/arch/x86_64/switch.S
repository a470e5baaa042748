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
 *
 * Unwind information (CFI) describes every instruction, because an unwinder
 * may start anywhere in here: debug mode's stuck-coroutine backtrace is
 * taken by a signal handler on the interrupted thread (sysmon.c), and a
 * profiler's or debugger's unwinder stops wherever it stops.  Once the
 * pushes are done the canonical frame address is rsp + 64 whichever stack
 * rsp is on (both frames have the layout above), so the rsp load needs no
 * rule of its own: before it the unwinder walks out to our caller, after it
 * to the resumed context's caller (weft__ctx_entry for a new coroutine,
 * whose undefined return address ends the walk).  Without these rules a
 * signal landing after the pushes made the unwinder take the MXCSR slot
 * for a return address and fault.
 */
    .text
    .globl  weft__ctx_switch
    .hidden weft__ctx_switch
    .type   weft__ctx_switch, @function
    .p2align 4
weft__ctx_switch:
    .cfi_startproc
    pushq   %rbp
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbp, 0
    pushq   %rbx
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbx, 0
    pushq   %r12
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r12, 0
    pushq   %r13
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r13, 0
    pushq   %r14
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r14, 0
    pushq   %r15
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r15, 0
    subq    $8, %rsp
    .cfi_adjust_cfa_offset 8
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    /* What was just saved is the thread's current state: keep it in
     * eax/ecx (caller-saved) to compare with the resumed context's, rather
     * than reading the control registers a second time (stmxcsr and
     * fnstcw are slow, and each read is a store the load must wait for). */
    movl    (%rsp), %eax
    movzwl  4(%rsp), %ecx
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    /* Loading MXCSR and the x87 control word serialises the pipeline, and
     * coroutines almost never change them: load only what differs. */
    cmpl    (%rsp), %eax
    jne     3f
1:  cmpw    4(%rsp), %cx
    jne     4f
    /* The out-of-line loads below run with the frame still in place. */
    .cfi_remember_state
2:  addq    $8, %rsp
    .cfi_adjust_cfa_offset -8
    popq    %r15
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r15
    popq    %r14
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r14
    popq    %r13
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r13
    popq    %r12
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r12
    popq    %rbx
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbx
    popq    %rbp
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbp
    ret
    .cfi_restore_state
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
