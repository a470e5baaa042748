/*
 * weft sync primitives (included by <weft.h>).
 *
 * Types of sync objects are complete types with reserved, aligned storage
 * (as pthread_mutex_t), so they can live in structs and on the stack while
 * their layout stays private: use the _init / _destroy calls.  A waiting
 * coroutine suspends; its worker runs others.  Non-suspending calls (unlock,
 * release, set, clear, signal, broadcast, try_*) may also come from plain
 * threads while a runtime runs.  Calls on a NULL or destroyed object return
 * -EINVAL.
 */
#ifndef WEFT_SYNC_H
#define WEFT_SYNC_H

#ifndef WEFT_H
#error "include <weft.h>"
#endif

#define WEFT__SYNC_STORAGE(name, words) \
    typedef struct name { _Alignas(16) unsigned char opaque[(words) * 8]; } name

WEFT__SYNC_STORAGE(weft_event, 8);

/* asyncio.Event / a Go channel closed to broadcast. */
WEFT_API int  weft_event_init(weft_event *e);
WEFT_API int  weft_event_set(weft_event *e);      /* wakes every waiter; stays set */
WEFT_API int  weft_event_clear(weft_event *e);
WEFT_API bool weft_event_is_set(weft_event *e);
/* SUSPENSION POINT: 0 once set; -ETIMEDOUT at the deadline; -ECANCELED. */
WEFT_API int  weft_event_wait(weft_event *e, int64_t deadline);
WEFT_API void weft_event_destroy(weft_event *e);

#endif
