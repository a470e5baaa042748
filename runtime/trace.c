/*
 * WEFT_TRACE=path: a Chrome trace-event JSON file (opens in Perfetto or
 * chrome://tracing), written completely by the time weft_run returns.
 *
 *  - one track per worker, with a slice per task run (named by the task),
 *    and "park" slices while the worker waits in its poller;
 *  - wake-ups as flow arrows from the waker's track to the wakee's next run;
 *  - steals as instant events on the thief's track;
 *  - a "blocking pool" track with a slice per blocking call.
 *
 * Each worker records into a ring of its own (no lock, no atomic on the hot
 * path; the newest WEFT__TRACE_EVENTS events are kept); pool threads share
 * one ring under a mutex.  Off (the default), every hook is one predictable
 * branch on a NULL pointer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define WEFT__TRACE_EVENTS (1u << 18)   /* per worker: 12 MiB of 48-byte events */

struct weft__trace {
    weft__tev *ev;
    size_t n;                   /* events recorded (the ring keeps the last cap) */
    size_t cap;
};

static struct weft__trace *trace_new(void)
{
    struct weft__trace *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->cap = WEFT__TRACE_EVENTS;
    t->ev = malloc(sizeof *t->ev * t->cap);
    if (!t->ev) {
        free(t);
        return NULL;
    }
    return t;
}

static void trace_free(struct weft__trace *t)
{
    if (t) {
        free(t->ev);
        free(t);
    }
}

/* The owner of the ring only. */
weft__tev *weft__trace_slot(struct weft__trace *tr)
{
    return &tr->ev[tr->n++ % tr->cap];
}

int weft__trace_init(weft__runtime *rt)
{
    if (!rt->cfg.trace_path)
        return 0;
    if (!WEFT_OBSERVE) {
        weft__log("weft: WEFT_TRACE ignored: this libweft was built with WEFT_OBSERVE=OFF");
        return 0;
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        if (!(rt->workers[i]->trace = trace_new()))
            return -ENOMEM;
        rt->workers[i]->hooks |= WEFT__HOOK_TRACE;
        rt->workers[i]->wake_rt = NULL;  /* wake-ups take wake_slow (sched.c) */
    }
    if (!(rt->pool_trace = trace_new()))
        return -ENOMEM;
    pthread_mutex_init(&rt->pool_trace_mu, NULL);
    return 0;
}

/* Pool threads: a blocking call ran from start to now. */
void weft__trace_blocking(weft__runtime *rt, weft_task *t, int64_t start)
{
    int64_t now = weft_now();
    pthread_mutex_lock(&rt->pool_trace_mu);
    weft__tev *e = weft__trace_slot(rt->pool_trace);
    e->kind = WEFT__TEV_BLOCKING;
    e->ts = start;
    e->dur = now - start;
    e->id = atomic_load_explicit(&t->id, memory_order_relaxed);
    e->arg = 0;
    const char *n = t->name[0] ? t->name : "to_thread";
    size_t k = strnlen(n, sizeof e->name - 1);
    memcpy(e->name, n, k);
    e->name[k] = '\0';
    pthread_mutex_unlock(&rt->pool_trace_mu);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void write_ring(FILE *f, struct weft__trace *tr, int tid, int64_t t0, bool *first)
{
    size_t n = tr->n < tr->cap ? tr->n : tr->cap;
    size_t start = tr->n < tr->cap ? 0 : tr->n % tr->cap;
    for (size_t k = 0; k < n; k++) {
        weft__tev *e = &tr->ev[(start + k) % tr->cap];
        double ts = (double)(e->ts - t0) / 1000.0;
        fputs(*first ? "\n" : ",\n", f);
        *first = false;
        switch (e->kind) {
        case WEFT__TEV_RUN:
        case WEFT__TEV_BLOCKING:
            fprintf(f, "{\"ph\":\"X\",\"pid\":1,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,\"name\":", tid,
                    ts, (double)e->dur / 1000.0);
            json_str(f, e->name[0] ? e->name : "task");
            fprintf(f, ",\"cat\":\"%s\",\"args\":{\"task\":%" PRIu64 "}}",
                    e->kind == WEFT__TEV_RUN ? "run" : "blocking", e->id);
            break;
        case WEFT__TEV_PARK:
            fprintf(f, "{\"ph\":\"X\",\"pid\":1,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,"
                       "\"name\":\"park\",\"cat\":\"park\"}", tid, ts, (double)e->dur / 1000.0);
            break;
        case WEFT__TEV_STEAL:
            fprintf(f, "{\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":%d,\"ts\":%.3f,"
                       "\"name\":\"steal\",\"cat\":\"steal\",\"args\":{\"tasks\":%d,\"victim\":%" PRIu64 "}}",
                    tid, ts, e->arg, e->id);
            break;
        case WEFT__TEV_FLOW_S:
        case WEFT__TEV_FLOW_F:
            fprintf(f, "{\"ph\":\"%s\",%s\"pid\":1,\"tid\":%d,\"ts\":%.3f,\"id\":%" PRIu64 ","
                       "\"name\":\"wake\",\"cat\":\"wake\"}",
                    e->kind == WEFT__TEV_FLOW_S ? "s" : "f",
                    e->kind == WEFT__TEV_FLOW_F ? "\"bp\":\"e\"," : "", tid, ts, e->id);
            break;
        }
    }
}

static int by_start(const void *a, const void *b)
{
    const weft__tev *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* weft_run, after the workers stopped: writes the file and frees the rings. */
void weft__trace_finish(weft__runtime *rt)
{
    if (!rt->cfg.trace_path || !rt->pool_trace)
        goto out;
    FILE *f = fopen(rt->cfg.trace_path, "w");
    if (!f) {
        weft__log("weft: WEFT_TRACE=%s: cannot write it: %s", rt->cfg.trace_path, strerror(errno));
        goto out;
    }
    int64_t t0 = rt->started_at;
    fputs("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[", f);
    bool first = true;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        fprintf(f, "%s\n{\"ph\":\"M\",\"pid\":1,\"tid\":%u,\"name\":\"thread_name\","
                   "\"args\":{\"name\":\"worker %u\"}}", first ? "" : ",", i, i);
        first = false;
        write_ring(f, rt->workers[i]->trace, (int)i, t0, &first);
    }
    fprintf(f, ",\n{\"ph\":\"M\",\"pid\":1,\"tid\":%u,\"name\":\"thread_name\","
               "\"args\":{\"name\":\"blocking pool\"}}", 1000u);
    /* The pool's threads finish in any order: sorted by start and task,
     * a replayed run (docs/testing.md) writes the same file. */
    if (rt->pool_trace->n <= rt->pool_trace->cap)
        qsort(rt->pool_trace->ev, rt->pool_trace->n, sizeof(weft__tev), by_start);
    write_ring(f, rt->pool_trace, 1000, t0, &first);
    fputs(",\n{\"ph\":\"M\",\"pid\":1,\"name\":\"process_name\",\"args\":{\"name\":\"weft\"}}\n]}\n", f);
    if (fclose(f) != 0)
        weft__log("weft: WEFT_TRACE=%s: write failed: %s", rt->cfg.trace_path, strerror(errno));
out:
    for (unsigned i = 0; i < rt->nworkers; i++) {
        trace_free(rt->workers[i]->trace);
        rt->workers[i]->trace = NULL;
        rt->workers[i]->hooks &= (uint8_t)~WEFT__HOOK_TRACE;
    }
    if (rt->pool_trace) {
        trace_free(rt->pool_trace);
        pthread_mutex_destroy(&rt->pool_trace_mu);
        rt->pool_trace = NULL;
    }
}

/* Owner worker only (w's own trace buffer).  One event; cold and out of
 * line, so that each hook costs one branch when tracing is off. */
__attribute__((noinline, cold)) void weft__trace_event(weft__worker *w, int kind, int64_t ts,
                                                      int64_t dur, uint64_t id, int arg)
{
    weft__tev *e = weft__trace_slot(w->trace);
    e->kind = kind;
    e->ts = ts;
    e->dur = dur;
    e->id = id;
    e->arg = arg;
}
