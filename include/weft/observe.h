/*
 * weft observability (included by <weft.h>): every task, what it waits on,
 * a Go-style dump, and counters.
 */
#ifndef WEFT_OBSERVE_H
#define WEFT_OBSERVE_H

#ifndef WEFT_H
#error "include <weft.h>"
#endif

typedef struct weft_task_info {
    uint64_t    id;           /* unique for the process's lifetime, never reused */
    const char *name;         /* NULL when unnamed */
    int         state;        /* WEFT_TASK_* */
    const char *wait;         /* what a waiting task waits on: "sleep", "join", "gather",
                                 "event", "mutex", "queue get", "read fd 7",
                                 "to_thread", "group next", ...; NULL otherwise (always
                                 NULL in a libweft built with -DWEFT_OBSERVE=OFF) */
    int64_t     since;        /* weft_now() when it entered this state (spawned, woken,
                                 parked), to a few ms: the runtime's monitor refreshes
                                 the clock it is read from every 1-5 ms, so that no
                                 hot path reads the clock; 0 with WEFT_OBSERVE=OFF */
    int         worker;       /* worker it last ran on, -1 for none */
} weft_task_info;

/* Visits every task that has not finished (asyncio's all_tasks), from any
 * thread, without stopping the workers; the strings in info are valid during
 * the call only.  A visitor returning nonzero stops the walk, and that value
 * is returned; 0 after a full walk; -EINVAL for a NULL visitor; -EPERM when
 * no runtime runs.  Tasks starting or finishing during the walk may or may
 * not be visited; no entry is ever torn. */
WEFT_API int weft_tasks_foreach(int (*visit)(const weft_task_info *info, void *ctx), void *ctx);

/* Writes every unfinished task to fd as Go's dump does: id, name, state,
 * what it waits on and for how long, its worker, and the backtrace of each
 * suspended coroutine (frame pointers from its saved context: weft is built
 * with -fno-omit-frame-pointer; build your code so too for full traces).
 * Safe in a signal handler's context (no locks, no allocation): frames read
 * module(symbol+offset) [address], symbols of exported functions only.
 * weft_dump_ex writes them with function, file and line.  Never stops the
 * process.  0 or -errno. */
WEFT_API int weft_dump(int fd);

/* weft_dump_ex's flags. */
#define WEFT_DUMP_RAW 0x1u   /* frames as weft_dump writes them: async-signal-safe */

/* weft_dump with flags.  Without WEFT_DUMP_RAW each frame also names its
 * function (static ones too) and, where the module has debug information
 * (-g, or a separate debug file), its source file and line:
 *     module(function+offset) [address] at file:line
 * (docs/debugging.md; a libweft built without libdw writes the raw form).
 * That form reads debug information, allocates and takes a lock: call it
 * from any thread but not from a signal handler (WEFT_DUMP_RAW there, or
 * weft_dump); it may block the thread while it reads a module's debug
 * information, the first time.  Never stops the process.  0, -EINVAL for
 * an unknown flag, -EBADF for a negative fd, -EPERM when no runtime runs,
 * or -errno of write. */
WEFT_API int weft_dump_ex(int fd, unsigned flags);

#define WEFT_STATS_MAX_WORKERS 64

typedef struct weft_worker_stats {
    uint64_t tasks_run;       /* times it switched a coroutine in */
    uint64_t tasks_spawned;   /* tasks spawned by coroutines running on it */
    uint64_t steals;          /* tasks it stole from other workers */
    uint64_t steal_attempts;  /* victims it tried */
    uint64_t parks;           /* times it parked in its poller */
    uint64_t wakeups;         /* times another thread woke it to search */
    uint64_t polls;           /* polls of descriptors (parking or not) */
    uint64_t injected;        /* tasks it took from the injection queue */
    uint64_t queue_depth;     /* tasks in its run queue now */
    uint64_t timers;          /* timers pending in its timer wheel now */
    uint64_t busy_ns;         /* time not parked since the runtime started */
} weft_worker_stats;

typedef struct weft_stats {
    uint64_t tasks_alive;      /* unfinished tasks now */
    uint64_t tasks_spawned;    /* since the runtime started, from anywhere */
    uint64_t steals;           /* sum over workers */
    uint64_t parks;            /* sum over workers */
    uint64_t blocking_threads; /* blocking-pool threads now (users' pool) */
    uint64_t blocking_queued;  /* blocking calls waiting for a thread now */
    uint64_t steal_attempts, wakeups, polls, injected;  /* sums over workers */
    uint64_t inject_queue;     /* tasks in the global injection queue now */
    uint64_t uptime_ns;        /* since weft_run started */
    unsigned workers;          /* entries of worker[] filled (at most 64) */
    unsigned active_workers;   /* workers taking work now: ids 0..active_workers-1; the
                                  others are idle threads kept for a CPU quota that may
                                  rise (weft_workers_active; may exceed 64) */
    weft_worker_stats worker[WEFT_STATS_MAX_WORKERS];
} weft_stats;

/* Any thread while a runtime runs: counters are per worker (no shared
 * cache line on the hot path) and summed here.  0, -EINVAL for NULL, -EPERM
 * when no runtime runs, -ENOTSUP when libweft was built with
 * -DWEFT_OBSERVE=OFF (a configuration for measuring what the counters cost;
 * docs/debugging.md). */
WEFT_API int weft_stats_get(weft_stats *out);

/* Memory the runtime holds for coroutines (docs/scheduler.md, section 8):
 * stacks and task slots, what is in use, what is kept idle for reuse, and
 * what the trimmer gave back.  A stack costs its pages only once touched;
 * "idle" stacks are those kept in the shared pool (each worker also keeps up
 * to 64 of its own, not counted there). */
typedef struct weft_memory_stats {
    uint64_t stack_size;          /* usable bytes of each stack (plus a guard page) */
    uint64_t stacks_reserved;     /* stacks with address space reserved */
    uint64_t stacks_idle_warm;    /* in the pool, pages possibly present */
    uint64_t stacks_idle_clean;   /* in the pool, pages given back */
    uint64_t stacks_trimmed;      /* stacks whose pages the trimmer gave back, in all */
    uint64_t slabs;               /* task slabs (128 KiB of address space each) */
    uint64_t slabs_idle;          /* slabs with every slot free, pages present */
    uint64_t slabs_clean;         /* slabs with every slot free, pages given back */
    uint64_t slabs_trimmed;       /* slabs whose pages the trimmer gave back, in all */
    uint64_t task_slot_size;      /* bytes per task slot */
} weft_memory_stats;

/* Any thread while a runtime runs: a snapshot of the above (each pool's
 * figures consistent with themselves).  0, -EINVAL for NULL, -EPERM when no
 * runtime runs. */
WEFT_API int weft_memory_stats_get(weft_memory_stats *out);

/* (extension) Any thread while a runtime runs: the stacks (pages present)
 * and free task slots the workers keep in their own caches now, which
 * weft_memory_stats does not count (a struct the library fills keeps its
 * size, so these came as a call of their own).  After an idle trim window
 * both are 0 (docs/scheduler.md, section 8).  0, -EINVAL for a NULL
 * pointer, -EPERM when no runtime runs. */
WEFT_API int weft_memory_cached_get(uint64_t *stacks, uint64_t *task_slots);

/* (extension) Metrics for scrapers: weft_stats_get and weft_memory_stats_get
 * read once and written to buf as text, NUL-terminated.
 *  WEFT_STATS_PROMETHEUS  Prometheus text exposition format 0.0.4 (HELP and
 *                         TYPE lines, weft_ names, _total counters, seconds
 *                         and bytes, a worker label on per-worker series);
 *                         serve it with Content-Type "text/plain;
 *                         version=0.0.4".
 *  WEFT_STATS_JSON        one JSON object on one line (with its newline),
 *                         keyed by the fields of weft_stats (worker[] as an
 *                         array) and weft_memory_stats (under "memory").
 * The names, types and units are listed in docs/debugging.md ("Metrics").
 * Returns the length written (without the NUL).  buf NULL with len 0 asks
 * for the length the text needs now, as snprintf does (allow some slack:
 * the figures grow between two calls; 256 bytes is plenty).  -ENOSPC when
 * the text and its NUL do not fit in len bytes: nothing past len is
 * written, and buf holds an empty string (never a truncated text).
 * -EINVAL for an unknown format or buf NULL with len > 0; -EPERM when no
 * runtime runs; -ENOTSUP when libweft was built with -DWEFT_OBSERVE=OFF.
 * Any thread; uses about 6 KiB of the caller's stack. */
enum { WEFT_STATS_PROMETHEUS = 1, WEFT_STATS_JSON = 2 };
WEFT_API int weft_stats_format(char *buf, size_t len, int format);

#endif
