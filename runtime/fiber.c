/*
 * Sanitizer and valgrind bookkeeping around coroutine switches: the one
 * place that knows which sanitizer the build uses.
 *
 *  ThreadSanitizer: each task is a TSan fiber; every switch calls
 *   __tsan_switch_to_fiber, which also orders what the old context did before
 *   what the new one does (flag 0).
 *  AddressSanitizer: __sanitizer_start_switch_fiber before each switch and
 *   __sanitizer_finish_switch_fiber after it, so ASan knows which stack is in
 *   use (and does not mistake a switch for a stack overflow).
 *  valgrind: stacks are registered (VALGRIND_STACK_REGISTER) when its
 *   headers were found at build time, so memcheck follows the switches.
 */
#include "internal.h"

#if defined(__SANITIZE_THREAD__)
#define WEFT__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT__TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define WEFT__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT__ASAN 1
#endif
#endif

#ifdef WEFT__TSAN
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif
#ifdef WEFT__ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                     size_t *size_old);
#endif
#ifdef WEFT_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#endif

/* Owner worker only (scheduler stack). */
void weft__fiber_create(weft_task *t)
{
#ifdef WEFT__TSAN
    t->tsan_fiber = __tsan_create_fiber(0);
#endif
    t->asan_fake = NULL;
    (void)t;
}

/* Owner worker only (scheduler stack, after the task's last switch). */
void weft__fiber_destroy(weft_task *t)
{
#ifdef WEFT__TSAN
    if (t->tsan_fiber)
        __tsan_destroy_fiber(t->tsan_fiber);
    t->tsan_fiber = NULL;
#endif
    (void)t;
}

/* The worker thread, at start. */
void weft__fiber_thread_init(weft__worker *w)
{
#ifdef WEFT__TSAN
    w->tsan_fiber = __tsan_get_current_fiber();
#endif
    (void)w;
}

/* Scheduler stack, right before switching into t. */
void weft__fiber_to_task(weft__worker *w, weft_task *t)
{
#ifdef WEFT__ASAN
    __sanitizer_start_switch_fiber(&w->asan_fake, t->stack->lo, t->stack->size);
#endif
#ifdef WEFT__TSAN
    __tsan_switch_to_fiber(t->tsan_fiber, 0);
#endif
    (void)w; (void)t;
}

/* Scheduler stack, right after a task switched back. */
void weft__fiber_in_sched(weft__worker *w)
{
#ifdef WEFT__ASAN
    __sanitizer_finish_switch_fiber(w->asan_fake, NULL, NULL);
#endif
    (void)w;
}

/* Task stack, right before switching to the scheduler; dying: last switch. */
void weft__fiber_to_sched(weft__worker *w, weft_task *t, bool dying)
{
#ifdef WEFT__ASAN
    __sanitizer_start_switch_fiber(dying ? NULL : &t->asan_fake, w->asan_bottom, w->asan_size);
#endif
#ifdef WEFT__TSAN
    __tsan_switch_to_fiber(w->tsan_fiber, 0);
#endif
    (void)w; (void)t; (void)dying;
}

/* Task stack, right after being switched in. */
void weft__fiber_in_task(weft__worker *w, weft_task *t)
{
#ifdef WEFT__ASAN
    __sanitizer_finish_switch_fiber(t->asan_fake, &w->asan_bottom, &w->asan_size);
#endif
    (void)w; (void)t;
}

unsigned weft__valgrind_stack_register(void *lo, void *hi)
{
#ifdef WEFT_HAVE_VALGRIND
    return VALGRIND_STACK_REGISTER(lo, hi);
#else
    (void)lo; (void)hi;
    return 0;
#endif
}

void weft__valgrind_stack_deregister(unsigned id)
{
#ifdef WEFT_HAVE_VALGRIND
    VALGRIND_STACK_DEREGISTER(id);
#else
    (void)id;
#endif
}
