/*
 * Metrics for scrapers: weft_stats and weft_memory_stats as Prometheus text
 * (exposition format 0.0.4) or as one JSON object, in the caller's buffer.
 * The names, types and units are listed in docs/debugging.md ("Metrics");
 * the tables below are the only copy in code, so the two formats cannot
 * drift apart.
 *
 * The figures are read once (weft__stats_of, weft__memory_stats_of) and
 * formatted from that copy, so one text is consistent with itself.
 * Prometheus gets no sums of per-worker series (a query sums them); JSON
 * carries weft_stats whole, field for field, so the console (console.c)
 * reuses it.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "internal.h"
#include "textbuf.h"

enum { COUNTER, GAUGE };

typedef struct {
    const char *prom;    /* Prometheus name (weft_ prefix added) */
    const char *json;    /* the struct field's name, the JSON key */
    size_t off;          /* offset of the uint64_t field */
    int type;
    double scale;        /* Prometheus value = field * scale (ns -> s) */
    const char *help;
} metric;

#define NS 1e-9
#define RT(f) offsetof(weft_stats, f)
static const metric runtime_metrics[] = {
    {"uptime_seconds", "uptime_ns", RT(uptime_ns), GAUGE, NS,
     "Time since weft_run started."},
    {"tasks_alive", "tasks_alive", RT(tasks_alive), GAUGE, 1,
     "Unfinished tasks now."},
    {"tasks_spawned_total", "tasks_spawned", RT(tasks_spawned), COUNTER, 1,
     "Tasks spawned since the runtime started, from coroutines and plain threads."},
    {"inject_queue_tasks", "inject_queue", RT(inject_queue), GAUGE, 1,
     "Tasks in the global injection queue now."},
    {"blocking_threads", "blocking_threads", RT(blocking_threads), GAUGE, 1,
     "Threads of the users' blocking pool now."},
    {"blocking_queued_calls", "blocking_queued", RT(blocking_queued), GAUGE, 1,
     "Blocking calls waiting for a pool thread now."},
    /* JSON only (prom NULL): the sums of the per-worker series. */
    {NULL, "steals", RT(steals), COUNTER, 1, NULL},
    {NULL, "parks", RT(parks), COUNTER, 1, NULL},
    {NULL, "steal_attempts", RT(steal_attempts), COUNTER, 1, NULL},
    {NULL, "wakeups", RT(wakeups), COUNTER, 1, NULL},
    {NULL, "polls", RT(polls), COUNTER, 1, NULL},
    {NULL, "injected", RT(injected), COUNTER, 1, NULL},
};
#undef RT

#define WK(f) offsetof(weft_worker_stats, f)
static const metric worker_metrics[] = {
    {"worker_busy_seconds_total", "busy_ns", WK(busy_ns), COUNTER, NS,
     "Time the worker was not parked."},
    {"worker_tasks_run_total", "tasks_run", WK(tasks_run), COUNTER, 1,
     "Times the worker switched a coroutine in."},
    {"worker_tasks_spawned_total", "tasks_spawned", WK(tasks_spawned), COUNTER, 1,
     "Tasks spawned by coroutines running on the worker."},
    {"worker_steals_total", "steals", WK(steals), COUNTER, 1,
     "Tasks the worker stole from other workers."},
    {"worker_steal_attempts_total", "steal_attempts", WK(steal_attempts), COUNTER, 1,
     "Victims the worker tried to steal from."},
    {"worker_parks_total", "parks", WK(parks), COUNTER, 1,
     "Times the worker parked."},
    {"worker_wakeups_total", "wakeups", WK(wakeups), COUNTER, 1,
     "Times another thread woke the worker to search for work."},
    {"worker_polls_total", "polls", WK(polls), COUNTER, 1,
     "Polls of descriptors by the worker."},
    {"worker_injected_total", "injected", WK(injected), COUNTER, 1,
     "Tasks the worker took from the injection queue."},
    {"worker_queue_tasks", "queue_depth", WK(queue_depth), GAUGE, 1,
     "Tasks in the worker's run queue now."},
    {"worker_timers", "timers", WK(timers), GAUGE, 1,
     "Timers pending in the worker's timer wheel now."},
};
#undef WK

#define MEM(f) offsetof(weft__memory_figures, pub.f)
#define CACHED(f) offsetof(weft__memory_figures, f)
static const metric memory_metrics[] = {
    {"stack_size_bytes", "stack_size", MEM(stack_size), GAUGE, 1,
     "Usable bytes of each coroutine stack (plus a guard page)."},
    {"stacks_reserved", "stacks_reserved", MEM(stacks_reserved), GAUGE, 1,
     "Coroutine stacks with address space reserved."},
    {"stacks_idle_warm", "stacks_idle_warm", MEM(stacks_idle_warm), GAUGE, 1,
     "Stacks in the shared pool whose pages may be present."},
    {"stacks_idle_clean", "stacks_idle_clean", MEM(stacks_idle_clean), GAUGE, 1,
     "Stacks in the shared pool whose pages were given back."},
    {"stacks_trimmed_total", "stacks_trimmed", MEM(stacks_trimmed), COUNTER, 1,
     "Stacks whose pages the trimmer gave back."},
    {"task_slabs", "slabs", MEM(slabs), GAUGE, 1,
     "Task slabs (128 KiB of address space each)."},
    {"task_slabs_idle", "slabs_idle", MEM(slabs_idle), GAUGE, 1,
     "Slabs with every slot free, pages present."},
    {"task_slabs_clean", "slabs_clean", MEM(slabs_clean), GAUGE, 1,
     "Slabs with every slot free, pages given back."},
    {"task_slabs_trimmed_total", "slabs_trimmed", MEM(slabs_trimmed), COUNTER, 1,
     "Slabs whose pages the trimmer gave back."},
    {"task_slot_size_bytes", "task_slot_size", MEM(task_slot_size), GAUGE, 1,
     "Bytes per task slot."},
    {"stacks_cached", "stacks_cached", CACHED(stacks_cached), GAUGE, 1,
     "Stacks in the workers' own caches (pages present)."},
    {"task_slots_cached", "task_slots_cached", CACHED(task_slots_cached), GAUGE, 1,
     "Free task slots in the workers' own caches."},
};
#undef MEM
#undef CACHED

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t field(const void *base, const metric *m)
{
    uint64_t v;
    memcpy(&v, (const char *)base + m->off, sizeof v);
    return v;
}

static void prom_head(weft__tb *t, const metric *m)
{
    weft__tb_printf(t, "# HELP weft_%s %s\n# TYPE weft_%s %s\n", m->prom, m->help, m->prom,
                    m->type == COUNTER ? "counter" : "gauge");
}

/* One sample; whole numbers stay exact (a double holds them to 2^53). */
static void prom_value(weft__tb *t, const metric *m, uint64_t v)
{
    if (m->scale == 1)
        weft__tb_printf(t, " %llu\n", (unsigned long long)v);
    else
        weft__tb_printf(t, " %.9f\n", (double)v * m->scale);
}

static void prom_table(weft__tb *t, const metric *tab, size_t n, const void *base)
{
    for (size_t i = 0; i < n; i++) {
        if (!tab[i].prom)
            continue;
        prom_head(t, &tab[i]);
        weft__tb_printf(t, "weft_%s", tab[i].prom);
        prom_value(t, &tab[i], field(base, &tab[i]));
    }
}

static void prometheus(weft__tb *t, const weft_stats *s, const weft__memory_figures *m)
{
    weft__tb_puts(t, "# HELP weft_workers Worker threads of the runtime.\n"
                     "# TYPE weft_workers gauge\n");
    weft__tb_printf(t, "weft_workers %u\n", s->workers);
    weft__tb_puts(t, "# HELP weft_workers_active Workers taking work (the CPU quota's limit).\n"
                     "# TYPE weft_workers_active gauge\n");
    weft__tb_printf(t, "weft_workers_active %u\n", s->active_workers);
    prom_table(t, runtime_metrics, COUNT(runtime_metrics), s);
    for (size_t i = 0; i < COUNT(worker_metrics); i++) {
        prom_head(t, &worker_metrics[i]);
        for (unsigned w = 0; w < s->workers; w++) {
            weft__tb_printf(t, "weft_%s{worker=\"%u\"}", worker_metrics[i].prom, w);
            prom_value(t, &worker_metrics[i], field(&s->worker[w], &worker_metrics[i]));
        }
    }
    prom_table(t, memory_metrics, COUNT(memory_metrics), m);
}

static void json_table(weft__tb *t, const metric *tab, size_t n, const void *base, bool *first)
{
    for (size_t i = 0; i < n; i++) {
        weft__tb_printf(t, "%s\"%s\":%llu", *first ? "" : ",", tab[i].json,
                        (unsigned long long)field(base, &tab[i]));
        *first = false;
    }
}

/* Any thread: s and m as one JSON object, no newline (docs/debugging.md,
 * "Metrics"). */
void weft__stats_json(weft__tb *t, const weft_stats *s, const weft__memory_figures *m)
{
    bool first = false;
    weft__tb_printf(t, "{\"workers\":%u,\"active_workers\":%u", s->workers, s->active_workers);
    json_table(t, runtime_metrics, COUNT(runtime_metrics), s, &first);
    weft__tb_puts(t, ",\"worker\":[");
    for (unsigned w = 0; w < s->workers; w++) {
        bool f = true;
        weft__tb_puts(t, w ? ",{" : "{");
        json_table(t, worker_metrics, COUNT(worker_metrics), &s->worker[w], &f);
        weft__tb_puts(t, "}");
    }
    weft__tb_puts(t, "],\"memory\":{");
    first = true;
    json_table(t, memory_metrics, COUNT(memory_metrics), m, &first);
    weft__tb_puts(t, "}}");
}

int weft_stats_format(char *buf, size_t len, int format)
{
    if ((!buf && len) || (format != WEFT_STATS_PROMETHEUS && format != WEFT_STATS_JSON))
        return -EINVAL;
    if (!WEFT_OBSERVE)
        return -ENOTSUP;  /* built with WEFT_OBSERVE=OFF: no counters */
    weft__worker *cw = weft__cur_worker();
    weft__runtime *rt = cw ? cw->rt : weft__rt_get();
    if (!rt)
        return -EPERM;
    weft_stats s;            /* about 6 KiB: fine on a coroutine's stack */
    weft__memory_figures m;
    weft__stats_of(rt, &s);
    weft__memory_stats_of(rt, &m);
    if (!cw)
        weft__rt_put();
    weft__tb t;
    weft__tb_fixed(&t, buf, len);
    if (format == WEFT_STATS_PROMETHEUS)
        prometheus(&t, &s, &m);
    else {
        weft__stats_json(&t, &s, &m);
        weft__tb_puts(&t, "\n");
    }
    if (!buf)
        return (int)t.len;  /* the size query (tens of KiB at most: 64 workers) */
    if (!weft__tb_fits(&t)) {
        if (len)
            buf[0] = '\0';  /* never a truncated text a scraper could mistake */
        return -ENOSPC;
    }
    return (int)t.len;
}
