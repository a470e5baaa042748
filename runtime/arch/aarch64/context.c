/* Builds the first frame of a coroutine for aarch64/switch.S. */
#include <stdint.h>
#include <string.h>
#include "../../context.h"

void weft__ctx_entry(void);

/* Any thread; touches only the new stack. */
void *weft__ctx_make(void *stack_top, void (*fn)(void *), void *arg)
{
    uintptr_t top = (uintptr_t)stack_top & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)(top - 176);
    memset(sp, 0, 176);
    sp[0] = (uint64_t)(uintptr_t)fn;              /* x19 */
    sp[1] = (uint64_t)(uintptr_t)arg;             /* x20 */
    sp[11] = (uint64_t)(uintptr_t)weft__ctx_entry; /* x30: ret jumps here */
    sp[20] = 0;  /* FPCR: the ABI's initial state (round to nearest, no traps) */
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
    *fp = (uintptr_t)f[10]; /* x29 */
    *pc = (uintptr_t)f[11]; /* x30 */
}
