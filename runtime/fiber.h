/*
 * Sanitizer bookkeeping around coroutine switches: the one place that knows
 * which sanitizer the build uses.  Static inline: in a plain build every
 * call compiles to nothing.
 *
 *  ThreadSanitizer: each task is a TSan fiber; every switch calls
 *   __tsan_switch_to_fiber with flag 0, which also orders what the old
 *   context did before what the new one does.
 *  AddressSanitizer: __sanitizer_start_switch_fiber right before each switch
 *   and __sanitizer_finish_switch_fiber right after landing, so ASan knows
 *   which stack is in use.
 *  valgrind: stacks are registered in stack.c (VALGRIND_STACK_REGISTER).
 */
#ifndef WEFT_FIBER_H
#define WEFT_FIBER_H

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

/* Owner worker only, when t gets its stack. */
static inline void weft__fiber_create(weft_task *t)
{
#ifdef WEFT__TSAN
    t->tsan_fiber = __tsan_create_fiber(0);
#endif
    t->asan_fake = NULL;
}

/* Owner worker only, after t's last switch (from another context). */
static inline void weft__fiber_destroy(weft_task *t)
{
#ifdef WEFT__TSAN
    if (t->tsan_fiber)
        __tsan_destroy_fiber(t->tsan_fiber);
    t->tsan_fiber = NULL;
#endif
    (void)t;
}

/* The worker thread at start: its own fiber and stack (the scheduler's). */
static inline void weft__fiber_thread_init(weft__worker *w)
{
#ifdef WEFT__TSAN
    w->tsan_fiber = __tsan_get_current_fiber();
#endif
#ifdef WEFT__ASAN
    pthread_attr_t a;
    void *addr = NULL;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getstack(&a, &addr, &size);
        pthread_attr_destroy(&a);
    }
    w->asan_bottom = addr;
    w->asan_size = size;
#endif
    (void)w;
}

/* Right before a switch on worker w from `from` (NULL: the scheduler) to
 * `to` (NULL: the scheduler); dying: from never runs again. */
static inline void weft__fiber_switch(weft__worker *w, weft_task *from, bool dying, weft_task *to)
{
#ifdef WEFT__ASAN
    void **save = dying ? NULL : from ? &from->asan_fake : &w->asan_fake;
    if (to)
        __sanitizer_start_switch_fiber(save, to->stack->lo, to->stack->size);
    else
        __sanitizer_start_switch_fiber(save, w->asan_bottom, w->asan_size);
#endif
#ifdef WEFT__TSAN
    __tsan_switch_to_fiber(to ? to->tsan_fiber : w->tsan_fiber, 0);
#endif
    (void)w; (void)from; (void)dying; (void)to;
}

/* Right after landing in `self` (NULL: the scheduler of w). */
static inline void weft__fiber_landed(weft__worker *w, weft_task *self)
{
#ifdef WEFT__ASAN
    __sanitizer_finish_switch_fiber(self ? self->asan_fake : w->asan_fake, NULL, NULL);
#endif
    (void)w; (void)self;
}

#endif
