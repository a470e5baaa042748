/*
 * test_metrics: weft_stats_format.
 *
 *  - Prometheus text: every line is a HELP or TYPE comment or a sample of a
 *    metric typed before it; names carry the weft_ prefix, counters end in
 *    _total, per-worker series carry worker="N" for each worker once; every
 *    value lies between the weft_stats_get / weft_memory_stats_get taken
 *    just before and just after (the runtime is kept quiet, so gauges hold
 *    still and counters only grow); every name is documented in
 *    docs/debugging.md;
 *  - JSON: one valid JSON line (our strict checker, and python3 -m json.tool
 *    when python3 is installed), the same figures, every field present;
 *  - from a coroutine and from a plain thread;
 *  - the size query (NULL, 0) and every too-small length: -ENOSPC, an empty
 *    string, and not one byte written past len;
 *  - -EINVAL for an unknown format and for NULL with len > 0; -EPERM
 *    outside a runtime.
 */
#define _GNU_SOURCE
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "json_check.h"
#include "obs_test.h"

#define BIG (64 * 1024)
static char text[BIG];          /* big: not on a coroutine's stack */
static weft_stats S0, S1;
/* weft_memory_stats and weft_memory_cached_get's two counts, which the
 * metrics report beside it. */
typedef struct {
    weft_memory_stats s;
    uint64_t stacks_cached, task_slots_cached;
} memfig;
static memfig M0, M1;
static weft_event gate;

static void *wait_gate(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_event_wait(&gate, WEFT_FOREVER);
}

/* ------------------------------------------------------------------ */
/* What each Prometheus name must read                                 */
/* ------------------------------------------------------------------ */

enum { RT, WK, MEM };
typedef struct {
    const char *name;
    int where;
    size_t off;
    bool seconds;   /* value in seconds, field in ns */
    bool counter;
} expect;

#define R(n, f, s)                                                                                 \
    {                                                                                              \
        "weft_" n, RT, offsetof(weft_stats, f), s, false                                           \
    }
#define W(n, f, s)                                                                                 \
    {                                                                                              \
        "weft_" n, WK, offsetof(weft_worker_stats, f), s, false                                    \
    }
#define M(n, f)                                                                                    \
    {                                                                                              \
        "weft_" n, MEM, offsetof(memfig, f), false, false                                          \
    }
static const expect expects[] = {
    R("uptime_seconds", uptime_ns, true),
    R("tasks_alive", tasks_alive, false),
    R("tasks_spawned_total", tasks_spawned, false),
    R("inject_queue_tasks", inject_queue, false),
    R("blocking_threads", blocking_threads, false),
    R("blocking_queued_calls", blocking_queued, false),
    W("worker_busy_seconds_total", busy_ns, true),
    W("worker_tasks_run_total", tasks_run, false),
    W("worker_tasks_spawned_total", tasks_spawned, false),
    W("worker_steals_total", steals, false),
    W("worker_steal_attempts_total", steal_attempts, false),
    W("worker_parks_total", parks, false),
    W("worker_wakeups_total", wakeups, false),
    W("worker_polls_total", polls, false),
    W("worker_injected_total", injected, false),
    W("worker_queue_tasks", queue_depth, false),
    W("worker_timers", timers, false),
    M("stack_size_bytes", s.stack_size),
    M("stacks_reserved", s.stacks_reserved),
    M("stacks_idle_warm", s.stacks_idle_warm),
    M("stacks_idle_clean", s.stacks_idle_clean),
    M("stacks_trimmed_total", s.stacks_trimmed),
    M("task_slabs", s.slabs),
    M("task_slabs_idle", s.slabs_idle),
    M("task_slabs_clean", s.slabs_clean),
    M("task_slabs_trimmed_total", s.slabs_trimmed),
    M("task_slot_size_bytes", s.task_slot_size),
    M("stacks_cached", stacks_cached),
    M("task_slots_cached", task_slots_cached),
};
#undef R
#undef W
#undef M
#define NEXPECT (sizeof expects / sizeof expects[0])

static uint64_t read_u64(const void *base, size_t off)
{
    uint64_t v;
    memcpy(&v, (const char *)base + off, sizeof v);
    return v;
}

/* The two snapshots' values of e (worker w for per-worker series). */
static void bounds(const expect *e, unsigned w, double *lo, double *hi)
{
    const void *a, *b;
    if (e->where == RT) {
        a = &S0;
        b = &S1;
    } else if (e->where == WK) {
        a = &S0.worker[w];
        b = &S1.worker[w];
    } else {
        a = &M0;
        b = &M1;
    }
    double x = (double)read_u64(a, e->off), y = (double)read_u64(b, e->off);
    if (e->seconds) {
        x = x * 1e-9 - 1e-9;  /* printed to the nanosecond */
        y = y * 1e-9 + 1e-9;
    }
    *lo = fmin(x, y);
    *hi = fmax(x, y);
}

static char *docs;  /* docs/debugging.md */

/* Checks every line of a Prometheus text against S0/S1, M0/M1. */
static void check_prometheus(const char *t)
{
    char typed[64] = "";           /* the metric the last TYPE line named */
    int samples[NEXPECT][WEFT_STATS_MAX_WORKERS + 1];
    memset(samples, 0, sizeof samples);
    bool saw_workers = false;
    int lines = 0;
    T_CHECK(t[0] && t[strlen(t) - 1] == '\n');
    for (const char *p = t; *p;) {
        const char *nl = strchr(p, '\n');
        T_CHECK(nl != NULL);
        if (!nl)
            return;
        char line[512];
        size_t n = (size_t)(nl - p);
        T_CHECK(n > 0 && n < sizeof line);
        memcpy(line, p, n < sizeof line ? n : sizeof line - 1);
        line[n < sizeof line ? n : sizeof line - 1] = '\0';
        p = nl + 1;
        lines++;
        char name[128], kind[32];
        if (strncmp(line, "# HELP ", 7) == 0) {
            T_CHECK(sscanf(line, "# HELP %127s %31s", name, kind) == 2);  /* a text follows */
            T_CHECK(strncmp(name, "weft_", 5) == 0);
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            T_CHECK(sscanf(line, "# TYPE %63s %31s", typed, kind) == 2);
            bool counter = strcmp(kind, "counter") == 0;
            T_CHECK(counter || strcmp(kind, "gauge") == 0);
            size_t k = strlen(typed);
            /* Prometheus's naming: a counter ends in _total, nothing else does. */
            T_CHECK_EQ(counter, k > 6 && strcmp(typed + k - 6, "_total") == 0);
            /* Documented: the name, in backquotes (labels may follow), in
             * docs/debugging.md. */
            char quoted[80], labelled[80];
            snprintf(quoted, sizeof quoted, "`%s`", typed);
            snprintf(labelled, sizeof labelled, "`%s{", typed);
            if (!T_CHECK(docs && (strstr(docs, quoted) || strstr(docs, labelled))))
                fprintf(stderr, "undocumented metric %s\n", typed);
            continue;
        }
        T_CHECK(line[0] != '#');
        /* A sample: name, optional {worker="N"}, one space, a value. */
        unsigned w = 0;
        bool labelled = false;
        size_t k = strcspn(line, "{ ");
        T_CHECK(k < sizeof name);
        memcpy(name, line, k);
        name[k] = '\0';
        const char *v = line + k;
        if (*v == '{') {
            int used = 0;
            T_CHECK(sscanf(v, "{worker=\"%u\"}%n", &w, &used) == 1 && used > 0);
            v += used;
            labelled = true;
        }
        T_CHECK(*v == ' ');
        char *end;
        double val = strtod(v + 1, &end);
        T_CHECK(end != v + 1 && *end == '\0');
        T_CHECK_EQ(strcmp(name, typed), 0);  /* samples follow their TYPE */
        if (strcmp(name, "weft_workers_active") == 0) {
            T_CHECK(val >= 1 && (unsigned)val <= S0.workers);
            continue;
        }
        if (strcmp(name, "weft_workers") == 0) {
            T_CHECK_EQ((unsigned)val, S0.workers);
            saw_workers = true;
            continue;
        }
        size_t e = 0;
        while (e < NEXPECT && strcmp(expects[e].name, name) != 0)
            e++;
        if (!T_CHECK(e < NEXPECT)) {
            fprintf(stderr, "unexpected metric %s\n", name);
            continue;
        }
        T_CHECK_EQ(labelled, expects[e].where == WK);
        T_CHECK(w < S0.workers);
        double lo, hi;
        bounds(&expects[e], w, &lo, &hi);
        if (!T_CHECK(val >= lo && val <= hi))
            fprintf(stderr, "%s: %.9f not in [%.9f, %.9f]\n", line, val, lo, hi);
        samples[e][labelled ? w : WEFT_STATS_MAX_WORKERS]++;
    }
    T_CHECK(saw_workers);
    /* Each metric once (per worker for the per-worker ones). */
    for (size_t e = 0; e < NEXPECT; e++) {
        if (expects[e].where == WK)
            for (unsigned w = 0; w < S0.workers; w++)
                T_CHECK_EQ(samples[e][w], 1);
        else
            T_CHECK_EQ(samples[e][WEFT_STATS_MAX_WORKERS], 1);
    }
    T_CHECK(lines > 3 * (int)NEXPECT);
}

/* Checks a JSON text: valid, one line, the figures within S0/S1. */
static void check_json(const char *t)
{
    size_t n = strlen(t);
    T_CHECK(n > 2 && t[n - 1] == '\n' && !memchr(t, '\n', n - 1));
    T_CHECK(json_valid(t));
    uint64_t v;
    T_CHECK(json_u64(t, "workers", &v) && v == S0.workers);
    T_CHECK(json_u64(t, "active_workers", &v) && v >= 1 && v <= S0.workers);
    T_CHECK(json_u64(t, "tasks_alive", &v) && v == S0.tasks_alive && v == S1.tasks_alive);
    T_CHECK(json_u64(t, "tasks_spawned", &v) && v >= S0.tasks_spawned && v <= S1.tasks_spawned);
    T_CHECK(json_u64(t, "uptime_ns", &v) && v >= S0.uptime_ns && v <= S1.uptime_ns);
    T_CHECK(json_u64(t, "parks", &v) && v >= S0.parks && v <= S1.parks);
    /* Per worker, in order: each object has every field. */
    const char *p = strstr(t, "\"worker\":[");
    T_CHECK(p != NULL);
    for (unsigned w = 0; p && w < S0.workers; w++) {
        p = strchr(p, '{');
        T_CHECK(p != NULL);
        if (!p)
            break;
        T_CHECK(json_u64(p, "busy_ns", &v) && v >= S0.worker[w].busy_ns &&
                v <= S1.worker[w].busy_ns);
        T_CHECK(json_u64(p, "tasks_run", &v) && v >= S0.worker[w].tasks_run &&
                v <= S1.worker[w].tasks_run);
        static const char *const keys[] = {"tasks_spawned", "steals",      "steal_attempts",
                                           "parks",         "wakeups",     "polls",
                                           "injected",      "queue_depth", "timers"};
        const char *close = strchr(p, '}');
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            char pat[48];
            snprintf(pat, sizeof pat, "\"%s\":", keys[k]);
            const char *at = strstr(p, pat);
            T_CHECK(at && close && at < close);
        }
        p++;
    }
    p = strstr(t, "\"memory\":{");
    T_CHECK(p != NULL);
    if (p) {
        T_CHECK(json_u64(p, "stack_size", &v) && v == M0.s.stack_size);
        T_CHECK(json_u64(p, "task_slot_size", &v) && v == M0.s.task_slot_size);
        T_CHECK(json_u64(p, "slabs", &v) && v >= 1);
    }
}

/* python3 -m json.tool, when python3 is there: a second, independent
 * reader.  1 valid, 0 invalid, -1 no python3. */
static int python_says(const char *t)
{
    if (system("command -v python3 >/dev/null 2>&1") != 0)
        return -1;
    char path[] = "/tmp/weft-metrics-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    size_t n = strlen(t);
    bool ok = write(fd, t, n) == (ssize_t)n;
    close(fd);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "python3 -m json.tool %s >/dev/null", path);
    int rc = ok ? system(cmd) : -1;
    unlink(path);
    return rc == 0;
}

/* Formats between two snapshots of the figures, from the calling thread or
 * coroutine. */
static int format_between(int format)
{
    T_CHECK_EQ(weft_stats_get(&S0), 0);
    T_CHECK_EQ(weft_memory_stats_get(&M0.s), 0);
    T_CHECK_EQ(weft_memory_cached_get(&M0.stacks_cached, &M0.task_slots_cached), 0);
    int n = weft_stats_format(text, sizeof text, format);
    T_CHECK_EQ(weft_stats_get(&S1), 0);
    T_CHECK_EQ(weft_memory_stats_get(&M1.s), 0);
    T_CHECK_EQ(weft_memory_cached_get(&M1.stacks_cached, &M1.task_slots_cached), 0);
    T_CHECK(n > 0 && (size_t)n == strlen(text));
    return n;
}

static void *thread_formats(void *arg)
{
    (void)arg;
    format_between(WEFT_STATS_PROMETHEUS);
    check_prometheus(text);
    format_between(WEFT_STATS_JSON);
    check_json(text);
    return NULL;
}

static int count_waiting(const weft_task_info *i, void *arg)
{
    if (i->name && strcmp(i->name, "metrics-waiter") == 0 && i->state == WEFT_TASK_WAITING)
        (*(int *)arg)++;
    return 0;
}

/* n tasks waiting on an event, and workers parked: the figures hold still
 * (counters may still grow: the bounds allow it). */
static void quiet_start(weft_task **h, int n)
{
    weft_event_init(&gate);
    for (int i = 0; i < n; i++)
        h[i] = weft_spawn_named("metrics-waiter", wait_gate, NULL);
    int64_t end = weft_now() + 5 * T_SLACK * WEFT_SEC;
    int waiting = 0;
    while (waiting < n && weft_now() < end) {
        weft_sleep(WEFT_MS);
        waiting = 0;
        weft_tasks_foreach(count_waiting, &waiting);
    }
    T_CHECK_EQ(waiting, n);
    weft_sleep(20 * WEFT_MS);
}

static void quiet_end(weft_task **h, int n)
{
    weft_event_set(&gate);
    T_CHECK_EQ(weft_gather(h, (size_t)n, NULL), 0);
    weft_event_destroy(&gate);
}

static void *formats_main(void *arg)
{
    (void)arg;
    weft_task *h[3];
    quiet_start(h, 3);
    format_between(WEFT_STATS_PROMETHEUS);
    check_prometheus(text);
    format_between(WEFT_STATS_JSON);
    check_json(text);
    int py = python_says(text);
    if (py >= 0)
        T_CHECK_EQ(py, 1);
    T_CHECK_EQ(S0.tasks_alive, 4);  /* main and the three waiters */
    t_in_thread(thread_formats, NULL);
    quiet_end(h, 3);
    return NULL;
}

static void test_metrics_formats(void **state)
{
    OBS_BEGIN(30);
    assert_int_equal(t_run_workers(2, formats_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Sizes                                                               */
/* ------------------------------------------------------------------ */

#define FILL 0x5a

static void *sizes_main(void *arg)
{
    (void)arg;
    weft_task *h[2];
    quiet_start(h, 2);
    static const int formats[] = {WEFT_STATS_PROMETHEUS, WEFT_STATS_JSON};
    for (size_t f = 0; f < 2; f++) {
        int need = weft_stats_format(NULL, 0, formats[f]);
        T_CHECK(need > 0);
        int n = weft_stats_format(text, sizeof text, formats[f]);
        T_CHECK(n >= need && n < need + 64);  /* quiet: a digit or two more at most */
        /* Ample room succeeds, with the NUL. */
        memset(text, FILL, sizeof text);
        int m = weft_stats_format(text, (size_t)n + 256, formats[f]);
        T_CHECK(m > 0 && text[m] == '\0' && (size_t)m == strlen(text));
        /* Every length that cannot hold it: -ENOSPC, "", nothing past len. */
        for (int len = 0; len <= n - 64; len += (len < 64 ? 1 : 13)) {
            memset(text, FILL, sizeof text);
            int rc = weft_stats_format(text, (size_t)len, formats[f]);
            T_CHECK_EQ(rc, -ENOSPC);
            if (len > 0)
                T_CHECK_EQ(text[0], '\0');
            for (int i = len; i < n + 256; i++)
                if (!T_CHECK((unsigned char)text[i] == FILL)) {
                    fprintf(stderr, "byte %d written with len %d\n", i, len);
                    break;
                }
        }
        /* The exact length the text had, without room for its NUL. */
        memset(text, FILL, sizeof text);
        int rc = weft_stats_format(text, (size_t)m, formats[f]);
        T_CHECK_EQ(rc, -ENOSPC);
        T_CHECK_EQ((unsigned char)text[m], FILL);
    }
    quiet_end(h, 2);
    return NULL;
}

static void test_metrics_sizes(void **state)
{
    OBS_BEGIN(30);
    assert_int_equal(t_run_workers(2, sizes_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

static void *errors_main(void *arg)
{
    (void)arg;
    char b[64];
    T_CHECK_EQ(weft_stats_format(NULL, 10, WEFT_STATS_JSON), -EINVAL);
    T_CHECK_EQ(weft_stats_format(b, sizeof b, 0), -EINVAL);
    T_CHECK_EQ(weft_stats_format(b, sizeof b, 3), -EINVAL);
    T_CHECK_EQ(weft_stats_format(b, sizeof b, -1), -EINVAL);
    T_CHECK_EQ(weft_stats_format(NULL, 0, 7), -EINVAL);
    return NULL;
}

static void test_metrics_errors(void **state)
{
    OBS_BEGIN(20);
    char b[64];
    memset(b, FILL, sizeof b);
    assert_int_equal(weft_stats_format(b, sizeof b, WEFT_STATS_PROMETHEUS), -EPERM);
    assert_int_equal(weft_stats_format(NULL, 0, WEFT_STATS_JSON), -EPERM);
    assert_int_equal(weft_stats_format(b, sizeof b, 9), -EINVAL);
    assert_int_equal(weft_stats_format(NULL, 1, WEFT_STATS_JSON), -EINVAL);
    assert_int_equal((unsigned char)b[0], FILL);  /* a refused call writes nothing */
    assert_int_equal(t_run_workers(1, errors_main, NULL, NULL), 0);
    assert_int_equal(weft_stats_format(b, sizeof b, WEFT_STATS_JSON), -EPERM);
}

static char *read_docs(void)
{
    FILE *f = fopen(WEFT_DOCS_DEBUGGING, "r");
    if (!f)
        return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

int main(void)
{
    t_warm_up();
    docs = read_docs();
    const struct CMUnitTest tests[] = {
        OBS_TEST(test_metrics_errors),
        OBS_TEST(test_metrics_formats),
        OBS_TEST(test_metrics_sizes),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
