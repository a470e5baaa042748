/*
 * The platform interface for coroutine contexts: one assembly switch per CPU
 * (runtime/arch/<cpu>/switch.S) and the C that builds a first frame
 * (runtime/arch/<cpu>/context.c).  CMake picks the directory; nothing else in
 * the runtime knows which CPU it runs on.
 */
#ifndef WEFT_CONTEXT_H
#define WEFT_CONTEXT_H

/* Saves the current context's callee-saved state on its stack, stores its
 * stack pointer in *save_sp and resumes the context saved at load_sp.
 * Returns when something switches back to *save_sp. */
void weft__ctx_switch(void **save_sp, void *load_sp);

/* Builds a context on a fresh stack that, when switched to, calls fn(arg).
 * fn must never return.  Returns the stack pointer to pass to ctx_switch. */
void *weft__ctx_make(void *stack_top, void (*fn)(void *), void *arg);

#endif
