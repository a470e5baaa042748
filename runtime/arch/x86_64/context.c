/* Builds the first frame of a coroutine for x86_64/switch.S. */
#include <stdint.h>
#include "../../context.h"

void weft__ctx_entry(void);

/* Any thread; touches only the new stack. */
void *weft__ctx_make(void *stack_top, void (*fn)(void *), void *arg)
{
    uintptr_t top = (uintptr_t)stack_top & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)top;
    *--sp = 0;                              /* alignment slot above the return address */
    *--sp = (uint64_t)(uintptr_t)weft__ctx_entry; /* return address */
    *--sp = 0;                              /* rbp */
    *--sp = 0;                              /* rbx */
    *--sp = (uint64_t)(uintptr_t)fn;        /* r12 */
    *--sp = (uint64_t)(uintptr_t)arg;       /* r13 */
    *--sp = 0;                              /* r14 */
    *--sp = 0;                              /* r15 */
    /* A coroutine starts with the ABI's initial floating-point control
     * state (MXCSR 0x1F80, x87 control word 0x037F), whatever its creator
     * set: reading the creator's would cost two slow instructions a spawn. */
    *--sp = (uint64_t)0x1F80 | ((uint64_t)0x037F << 32);
    return sp;
}

/* Any thread: the frame of a switched-out context (see switch.S).  The
 * context may be resumed meanwhile: weft_dump checks what it gets. */
__attribute__((no_sanitize("thread", "address")))
void weft__ctx_frame(void *sp, uintptr_t *pc, uintptr_t *fp)
{
    /* volatile, not __atomic: GCC instruments atomic builtins even in a
     * no_sanitize function, and the sanitizers then check a stack that its
     * coroutine may be using right now (ASan: a poisoned redzone). */
    const volatile uint64_t *f = sp;
    *fp = (uintptr_t)f[6];  /* rbp */
    *pc = (uintptr_t)f[7];  /* return address */
}
