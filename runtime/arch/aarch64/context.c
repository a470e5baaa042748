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
    const uint64_t *f = sp;
    *fp = (uintptr_t)__atomic_load_n(&f[10], __ATOMIC_RELAXED); /* x29 */
    *pc = (uintptr_t)__atomic_load_n(&f[11], __ATOMIC_RELAXED); /* x30 */
}
