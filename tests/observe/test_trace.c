/*
 * test_trace: WEFT_TRACE=path, the Chrome trace-event JSON file.
 *
 *  - written completely by the time weft_run returns: valid JSON (checked
 *    by a small validating parser), {"displayTimeUnit": ... "traceEvents":
 *    [...]}, one thread_name per worker and one for the blocking pool;
 *  - a "run" slice ("ph":"X", "cat":"run") named after each named task,
 *    with its task id, ts and dur not negative, on a worker track;
 *  - wake-ups as flow events ("cat":"wake"): every "f" has its "s";
 *  - "park" slices, "blocking" slices on the pool's track, steals;
 *  - long names are truncated, not broken; quotes in names are escaped;
 *  - an unwritable path: weft_run still succeeds, with one stderr line
 *    naming it; no WEFT_TRACE: no file.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "obs_test.h"

/* ------------------------------------------------------------------ */
/* A minimal validating JSON parser                                    */
/* ------------------------------------------------------------------ */

typedef struct {
    const char *p;
    int depth;
    int objects;     /* objects seen */
} jp;

static void ws(jp *j)
{
    while (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')
        j->p++;
}

static bool value(jp *j);

static bool string(jp *j)
{
    if (*j->p != '"')
        return false;
    j->p++;
    while (*j->p && *j->p != '"') {
        if ((unsigned char)*j->p < 0x20)
            return false;
        if (*j->p == '\\') {
            j->p++;
            if (*j->p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", j->p[i]) || !j->p[i])
                        return false;
                j->p += 4;
            } else if (!*j->p || !strchr("\"\\/bfnrt", *j->p)) {
                return false;
            }
        }
        j->p++;
    }
    if (*j->p != '"')
        return false;
    j->p++;
    return true;
}

static bool number(jp *j)
{
    const char *s = j->p;
    if (*j->p == '-')
        j->p++;
    if (!(*j->p >= '0' && *j->p <= '9'))
        return false;
    while (*j->p >= '0' && *j->p <= '9')
        j->p++;
    if (*j->p == '.') {
        j->p++;
        if (!(*j->p >= '0' && *j->p <= '9'))
            return false;
        while (*j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    if (*j->p == 'e' || *j->p == 'E') {
        j->p++;
        if (*j->p == '+' || *j->p == '-')
            j->p++;
        if (!(*j->p >= '0' && *j->p <= '9'))
            return false;
        while (*j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    return j->p > s;
}

static bool value(jp *j)
{
    ws(j);
    if (++j->depth > 64)
        return false;
    bool ok = false;
    if (*j->p == '{') {
        j->objects++;
        j->p++;
        ws(j);
        if (*j->p == '}') {
            j->p++;
            ok = true;
        } else {
            for (;;) {
                ws(j);
                if (!string(j))
                    break;
                ws(j);
                if (*j->p++ != ':')
                    break;
                if (!value(j))
                    break;
                ws(j);
                if (*j->p == ',') {
                    j->p++;
                    continue;
                }
                if (*j->p == '}') {
                    j->p++;
                    ok = true;
                }
                break;
            }
        }
    } else if (*j->p == '[') {
        j->p++;
        ws(j);
        if (*j->p == ']') {
            j->p++;
            ok = true;
        } else {
            for (;;) {
                if (!value(j))
                    break;
                ws(j);
                if (*j->p == ',') {
                    j->p++;
                    continue;
                }
                if (*j->p == ']') {
                    j->p++;
                    ok = true;
                }
                break;
            }
        }
    } else if (*j->p == '"') {
        ok = string(j);
    } else if (strncmp(j->p, "true", 4) == 0 || strncmp(j->p, "null", 4) == 0) {
        j->p += 4;
        ok = true;
    } else if (strncmp(j->p, "false", 5) == 0) {
        j->p += 5;
        ok = true;
    } else {
        ok = number(j);
    }
    j->depth--;
    return ok;
}

/* Whole text one JSON value; *objects: objects in it. */
static bool json_valid(const char *s, int *objects)
{
    jp j = {s, 0, 0};
    bool ok = value(&j);
    ws(&j);
    if (objects)
        *objects = j.objects;
    if (!ok || *j.p)
        fprintf(stderr, "JSON error at offset %ld: \"%.40s\"\n", (long)(j.p - s), j.p);
    return ok && !*j.p;
}

/* ------------------------------------------------------------------ */
/* Events, one per line in weft's output                               */
/* ------------------------------------------------------------------ */

typedef struct ev {
    char ph[4];
    char cat[16];
    char name[80];
    int tid;
    double ts, dur;
    uint64_t id;      /* flow id, or args.task for slices */
    bool has_task;
} ev;

static bool field_str(const char *line, const char *key, char *out, size_t cap)
{
    char k[32];
    snprintf(k, sizeof k, "\"%s\":\"", key);
    const char *p = strstr(line, k);
    if (!p)
        return false;
    p += strlen(k);
    size_t n = 0;
    while (*p && *p != '"' && n + 1 < cap) {
        if (*p == '\\' && p[1])
            p++;
        out[n++] = *p++;
    }
    out[n] = '\0';
    return true;
}

static bool field_num(const char *line, const char *key, double *out)
{
    char k[32];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(line, k);
    if (!p)
        return false;
    *out = strtod(p + strlen(k), NULL);
    return true;
}

static bool field_u64(const char *line, const char *key, uint64_t *out)
{
    char k[32];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(line, k);
    if (!p)
        return false;
    *out = strtoull(p + strlen(k), NULL, 10);
    return true;
}

typedef struct trace {
    char *text;
    ev *ev;
    size_t n;
} trace;

static bool trace_load(const char *path, trace *t)
{
    memset(t, 0, sizeof *t);
    t->text = obs_read_file(path);
    if (!t->text)
        return false;
    size_t cap = 1024;
    t->ev = malloc(cap * sizeof *t->ev);
    for (const char *l = t->text; l && *l;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) : strlen(l);
        if (strncmp(l, "{\"ph\":", 6) == 0) {
            char *line = strndup(l, len);
            if (t->n == cap)
                t->ev = realloc(t->ev, (cap *= 2) * sizeof *t->ev);
            ev *v = &t->ev[t->n++];
            memset(v, 0, sizeof *v);
            double d;
            field_str(line, "ph", v->ph, sizeof v->ph);
            field_str(line, "cat", v->cat, sizeof v->cat);
            field_str(line, "name", v->name, sizeof v->name);
            if (field_num(line, "tid", &d))
                v->tid = (int)d;
            field_num(line, "ts", &v->ts);
            field_num(line, "dur", &v->dur);
            if (strcmp(v->cat, "wake") == 0)
                field_u64(line, "id", &v->id);
            else
                v->has_task = field_u64(line, "task", &v->id);
            free(line);
        }
        l = e ? e + 1 : NULL;
    }
    return true;
}

static void trace_free(trace *t)
{
    free(t->text);
    free(t->ev);
}

static size_t count_ev(const trace *t, const char *ph, const char *cat, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++)
        if ((!ph || strcmp(t->ev[i].ph, ph) == 0) && (!cat || strcmp(t->ev[i].cat, cat) == 0) &&
            (!name || strcmp(t->ev[i].name, name) == 0))
            n++;
    return n;
}

/* ------------------------------------------------------------------ */
/* The traced program                                                  */
/* ------------------------------------------------------------------ */

typedef struct pingpong {
    weft_event a, b;
    int rounds;
} pingpong;

static void *ping(void *arg)
{
    pingpong *p = arg;
    for (int i = 0; i < p->rounds; i++) {
        weft_event_set(&p->a);
        weft_event_wait(&p->b, WEFT_FOREVER);
        weft_event_clear(&p->b);
    }
    return NULL;
}

static void *pong(void *arg)
{
    pingpong *p = arg;
    for (int i = 0; i < p->rounds; i++) {
        weft_event_wait(&p->a, WEFT_FOREVER);
        weft_event_clear(&p->a);
        weft_event_set(&p->b);
    }
    return NULL;
}

static void *pool_fn(void *arg)
{
    t_nap_ms(5);
    return arg;
}

static void *napper(void *arg)
{
    (void)arg;
    for (int i = 0; i < 5; i++)
        weft_sleep(2 * WEFT_MS);
    return NULL;
}

static void *small(void *arg)
{
    volatile int x = 0;
    for (int i = 0; i < 1000; i++)
        x += i;
    weft_yield();
    return arg;
}

static uint64_t ping_id, pong_id, long_id, quote_id;

static void *traced_main(void *arg)
{
    (void)arg;
    pingpong p = {.rounds = 50};
    weft_event_init(&p.a);
    weft_event_init(&p.b);
    weft_task *t1 = weft_spawn_named("tr-ping", ping, &p);
    weft_task *t2 = weft_spawn_named("tr-pong", pong, &p);
    weft_task *t3 = weft_spawn_named("tr-a-very-long-task-name", napper, NULL);
    weft_task *t4 = weft_spawn_named("tr\"q\\", napper, NULL);
    ping_id = weft_task_id(t1);
    pong_id = weft_task_id(t2);
    long_id = weft_task_id(t3);
    quote_id = weft_task_id(t4);
    T_CHECK_EQ(weft_join(t1, NULL), 0);
    T_CHECK_EQ(weft_join(t2, NULL), 0);
    T_CHECK_EQ(weft_join(t3, NULL), 0);
    T_CHECK_EQ(weft_join(t4, NULL), 0);
    weft_event_destroy(&p.a);
    weft_event_destroy(&p.b);
    /* Blocking-pool work. */
    for (int i = 0; i < 3; i++)
        T_CHECK_EQ(weft_to_thread(pool_fn, NULL, NULL), 0);
    /* Parks: idle for a while. */
    weft_sleep(20 * WEFT_MS);
    /* A burst that the other worker steals from. */
    static weft_task *h[2000];
    for (int round = 0; round < 5; round++) {
        weft_sleep(2 * WEFT_MS);
        for (int i = 0; i < 2000; i++)
            h[i] = weft_spawn(small, NULL);
        T_CHECK_EQ(weft_gather(h, 2000, NULL), 0);
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void check_trace(const char *path, int workers)
{
    trace t;
    assert_true(trace_load(path, &t));
    assert_true(strncmp(t.text, "{\"displayTimeUnit\"", 18) == 0);
    assert_non_null(strstr(t.text, "\"traceEvents\":["));
    int objects = 0;
    assert_true(json_valid(t.text, &objects));
    assert_true(objects > 100);
    /* Tracks: one per worker, and the pool's. */
    for (int i = 0; i < workers; i++) {
        char want[64];
        snprintf(want, sizeof want, "\"args\":{\"name\":\"worker %d\"}", i);
        assert_non_null(strstr(t.text, want));
    }
    assert_non_null(strstr(t.text, "\"args\":{\"name\":\"blocking pool\"}"));

    /* Run slices named after the tasks, with their ids. */
    size_t pings = 0, pongs = 0, longs = 0, quotes = 0;
    for (size_t i = 0; i < t.n; i++) {
        ev *e = &t.ev[i];
        if (strcmp(e->cat, "run") != 0)
            continue;
        assert_string_equal(e->ph, "X");
        assert_true(e->has_task);
        assert_true(e->tid >= 0 && e->tid < workers);
        assert_true(e->ts >= 0);
        assert_true(e->dur >= 0);
        if (e->id == ping_id) {
            assert_string_equal(e->name, "tr-ping");
            pings++;
        } else if (e->id == pong_id) {
            assert_string_equal(e->name, "tr-pong");
            pongs++;
        } else if (e->id == long_id) {
            /* Truncated, a prefix of the name. */
            assert_true(strlen(e->name) > 0);
            assert_true(strncmp("tr-a-very-long-task-name", e->name, strlen(e->name)) == 0);
            longs++;
        } else if (e->id == quote_id) {
            assert_string_equal(e->name, "tr\"q\\");
            quotes++;
        }
    }
    /* ping runs once per round at least (each wait suspends), and so does pong. */
    assert_true(pings >= 50);
    assert_true(pongs >= 50);
    assert_true(longs >= 6);
    assert_true(quotes >= 6);
    assert_true(count_ev(&t, "X", "run", "main") >= 1);

    /* Wake flows: "s" on the waker's track, "f" at the wakee's next run;
     * every f has its s. */
    size_t s = count_ev(&t, "s", "wake", "wake"), f = count_ev(&t, "f", "wake", "wake");
    assert_true(s >= 100);
    assert_true(f >= 100);
    uint64_t *starts = malloc((s ? s : 1) * sizeof *starts);
    size_t ns = 0;
    for (size_t i = 0; i < t.n; i++)
        if (strcmp(t.ev[i].ph, "s") == 0)
            starts[ns++] = t.ev[i].id;
    qsort(starts, ns, sizeof *starts, cmp_u64);
    for (size_t i = 1; i < ns; i++)
        assert_true(starts[i] != starts[i - 1]);   /* flow ids are unique */
    for (size_t i = 0; i < t.n; i++) {
        if (strcmp(t.ev[i].ph, "f") != 0)
            continue;
        bool found = bsearch(&t.ev[i].id, starts, ns, sizeof *starts, cmp_u64) != NULL;
        if (!found)
            fprintf(stderr, "flow end %llu without a start\n", (unsigned long long)t.ev[i].id);
        assert_true(found);
    }
    free(starts);

    /* Parks, blocking calls (on the pool's track), steals. */
    assert_true(count_ev(&t, "X", "park", "park") >= 2);
    size_t blocking = 0;
    for (size_t i = 0; i < t.n; i++)
        if (strcmp(t.ev[i].cat, "blocking") == 0) {
            assert_int_equal(t.ev[i].tid, 1000);
            assert_string_equal(t.ev[i].ph, "X");
            assert_true(t.ev[i].dur >= 4000);   /* 5 ms naps, in us */
            blocking++;
        }
    assert_int_equal(blocking, 3);
    if (workers >= 2 && count_ev(&t, "i", "steal", "steal") == 0)
        fprintf(stderr, "note: no steal recorded in this run\n");
    trace_free(&t);
}

static void test_trace_file(void **state)
{
    OBS_BEGIN(60);
    char path[] = "/tmp/weft-trace-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    setenv("WEFT_TRACE", path, 1);
    assert_int_equal(t_run_workers(2, traced_main, NULL, NULL), 0);
    unsetenv("WEFT_TRACE");
    check_trace(path, 2);
    unlink(path);
}

static void test_trace_one_worker(void **state)
{
    OBS_BEGIN(60);
    char path[] = "/tmp/weft-trace-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    setenv("WEFT_TRACE", path, 1);
    assert_int_equal(t_run_workers(1, traced_main, NULL, NULL), 0);
    unsetenv("WEFT_TRACE");
    check_trace(path, 1);
    unlink(path);
}

static void *trivial(void *arg)
{
    return arg;
}

static void test_trace_unwritable_and_off(void **state)
{
    OBS_BEGIN(20);
    const char *bad = "/nonexistent-dir/weft/trace.json";
    setenv("WEFT_TRACE", bad, 1);
    t_capture c;
    t_capture_begin(&c);
    int rc = t_run(trivial, NULL, NULL);
    char *err = t_capture_end(&c);
    unsetenv("WEFT_TRACE");
    assert_int_equal(rc, 0);
    assert_int_equal(t_count_lines(err), 1);
    assert_int_equal(t_lines_with(err, "WEFT_TRACE", bad), 1);
    free(err);

    /* Off: nothing written, nothing printed. */
    char dir[] = "/tmp/weft-trace-dir-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    t_capture_begin(&c);
    rc = t_run(trivial, NULL, NULL);
    err = t_capture_end(&c);
    assert_int_equal(rc, 0);
    assert_string_equal(err, "");
    free(err);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rmdir(dir), 0);   /* still empty */
}

int main(void)
{
    obs_init();
    t_warm_up();
    const struct CMUnitTest tests[] = {
        OBS_TEST(test_trace_file),
        OBS_TEST(test_trace_one_worker),
        OBS_TEST(test_trace_unwritable_and_off),
    };
    return cmocka_run_group_tests_name("trace", tests, NULL, NULL);
}
