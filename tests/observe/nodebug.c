/*
 * A module without debug information or symbol table (built -g0 and
 * stripped: tests/observe/CMakeLists.txt), for test_dump: a coroutine
 * waits through a static function of it, whose frame the readable dump
 * must write in the raw form, module(+offset) [address].
 */
#include <weft.h>

typedef void *(*nodebug_fn)(void *);

/* noinline, and the call is not a tail call (-fno-optimize-sibling-calls):
 * its frame stays on the coroutine's stack. */
static __attribute__((noinline)) void *nodebug_hidden(nodebug_fn fn, void *arg)
{
    void *r = fn(arg);
    __asm__ volatile("" ::: "memory");
    return r;
}

__attribute__((visibility("default"))) void *nodebug_call(nodebug_fn fn, void *arg)
{
    void *r = nodebug_hidden(fn, arg);
    __asm__ volatile("" ::: "memory");
    return r;
}
