/*
 * Helpers shared by the cmocka tests of the observability calls
 * (include/weft/observe.h), on top of tests/testutil.h:
 *
 *  - a per-test watchdog: a plain thread that names a test running past its
 *    announced time on stderr and exits with status 1 (a hung weft_run
 *    cannot be recovered from: the runtime is a process-wide singleton);
 *  - registry look-ups by task name through weft_tasks_foreach, copying the
 *    strings (they are valid during the visit only), and a poll that waits
 *    until a named task reaches a state / wait string (from a coroutine or
 *    a plain thread);
 *  - reading a whole file or descriptor into a string.
 *
 * Include after <cmocka.h> (and its prerequisites).
 */
#ifndef WEFT_OBS_TEST_H
#define WEFT_OBS_TEST_H

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include "testutil.h"

/* ------------------------------------------------------------------ */
/* Watchdog                                                            */
/* ------------------------------------------------------------------ */

static pthread_mutex_t obs_wd_mu = PTHREAD_MUTEX_INITIALIZER;
static const char *obs_wd_test;
static int64_t obs_wd_deadline;
static int obs_wd_secs;
static bool obs_wd_started;

static void *obs_wd_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&obs_wd_mu);
        if (obs_wd_test && weft_now() > obs_wd_deadline) {
            /* The real stderr may be captured: write to both. */
            dprintf(2, "WATCHDOG: %s has not finished after %d s: it hangs; exiting\n",
                    obs_wd_test, obs_wd_secs);
            _exit(1);
        }
        pthread_mutex_unlock(&obs_wd_mu);
        t_nap_ms(100);
    }
    return NULL;
}

static inline void obs_wd_arm(const char *test, int secs)
{
    pthread_mutex_lock(&obs_wd_mu);
    if (!obs_wd_started) {
        pthread_t th;
        if (pthread_create(&th, NULL, obs_wd_main, NULL) == 0) {
            pthread_detach(th);
            obs_wd_started = true;
        }
    }
    obs_wd_secs = secs * T_SLACK;
    obs_wd_deadline = weft_now() + (int64_t)obs_wd_secs * WEFT_SEC;
    obs_wd_test = test;
    pthread_mutex_unlock(&obs_wd_mu);
}

static inline int obs_teardown(void **state)
{
    pthread_mutex_lock(&obs_wd_mu);
    obs_wd_test = NULL;
    pthread_mutex_unlock(&obs_wd_mu);
    return t_teardown(state);
}

/* First statement of each test: allows it secs seconds (times T_SLACK). */
#define OBS_BEGIN(secs) obs_wd_arm(__func__, (secs))
#define OBS_TEST(f) cmocka_unit_test_setup_teardown(f, t_setup, obs_teardown)

/* ------------------------------------------------------------------ */
/* Registry look-ups                                                   */
/* ------------------------------------------------------------------ */

typedef struct obs_entry {
    uint64_t id;
    char name[64];
    bool named;
    int state;
    char wait[64];
    bool has_wait;
    int64_t since;
    int worker;
} obs_entry;

typedef struct obs_find_ctx {
    const char *name;     /* wanted name, or NULL to match id */
    uint64_t id;
    obs_entry *out;
    int found;            /* entries that matched */
} obs_find_ctx;

static inline void obs_copy(const weft_task_info *i, obs_entry *e)
{
    memset(e, 0, sizeof *e);
    e->id = i->id;
    e->named = i->name != NULL;
    if (i->name)
        snprintf(e->name, sizeof e->name, "%s", i->name);
    e->state = i->state;
    e->has_wait = i->wait != NULL;
    if (i->wait)
        snprintf(e->wait, sizeof e->wait, "%s", i->wait);
    e->since = i->since;
    e->worker = i->worker;
}

static int obs_find_visit(const weft_task_info *i, void *arg)
{
    obs_find_ctx *c = arg;
    bool match = c->name ? (i->name && strcmp(i->name, c->name) == 0) : i->id == c->id;
    if (match) {
        if (c->found++ == 0)
            obs_copy(i, c->out);
    }
    return 0;
}

/* Any thread while a runtime runs: the number of unfinished tasks named
 * name (the first one copied to *out). */
static inline int obs_find(const char *name, obs_entry *out)
{
    obs_entry dummy;
    obs_find_ctx c = {name, 0, out ? out : &dummy, 0};
    int rc = weft_tasks_foreach(obs_find_visit, &c);
    if (rc != 0)
        return rc < 0 ? rc : -1;
    return c.found;
}

static inline int obs_find_id(uint64_t id, obs_entry *out)
{
    obs_entry dummy;
    obs_find_ctx c = {NULL, id, out ? out : &dummy, 0};
    int rc = weft_tasks_foreach(obs_find_visit, &c);
    if (rc != 0)
        return rc < 0 ? rc : -1;
    return c.found;
}

/* Naps 1 ms: in a coroutine with weft_sleep, elsewhere with nanosleep. */
static inline void obs_nap(void)
{
    if (weft_self())
        weft_sleep(WEFT_MS);
    else
        t_nap_ms(1);
}

/* Waits (up to 5 s, times T_SLACK) until the task named name is in state
 * state and, when wait is not NULL, waits on exactly that string.  True
 * when it got there; *out holds the last look. */
static inline bool obs_await(const char *name, int state, const char *wait, obs_entry *out)
{
    obs_entry e;
    int64_t end = weft_now() + 5 * T_SLACK * WEFT_SEC;
    for (;;) {
        int n = obs_find(name, &e);
        if (n == 1 && e.state == state &&
            (!wait || (e.has_wait && strcmp(e.wait, wait) == 0)))
            break;
        if (weft_now() > end) {
            fprintf(stderr, "obs_await: task '%s' not in state %d wait '%s' (found %d; state %d wait '%s')\n",
                    name, state, wait ? wait : "(null)", n, n > 0 ? e.state : -1,
                    n > 0 && e.has_wait ? e.wait : "(null)");
            if (out)
                *out = e;
            return false;
        }
        obs_nap();
    }
    if (out)
        *out = e;
    return true;
}

/* From a coroutine: runs fn(arg) on a new plain thread and waits for it on
 * an event (no polling: the caller stays suspended, so a dump taken by the
 * thread never reads the caller's stack while it runs). */
typedef struct obs_call {
    void *(*fn)(void *);
    void *arg;
    void *ret;
    weft_event done;
} obs_call;

static void *obs_call_main(void *p)
{
    obs_call *c = p;
    c->ret = c->fn(c->arg);
    weft_event_set(&c->done);
    return NULL;
}

static inline void *obs_in_thread(void *(*fn)(void *), void *arg)
{
    obs_call c = {fn, arg, NULL, {{0}}};
    weft_event_init(&c.done);
    pthread_t th;
    if (pthread_create(&th, NULL, obs_call_main, &c) != 0)
        return NULL;
    while (weft_event_wait(&c.done, WEFT_FOREVER) != 0)
        ;
    pthread_join(th, NULL);
    weft_event_destroy(&c.done);
    return c.ret;
}

/* First in main(), before t_warm_up (each test unsets every WEFT_*). */
static inline void obs_init(void)
{
    setvbuf(stderr, NULL, _IOLBF, 0);
}

/* ------------------------------------------------------------------ */
/* Files                                                               */
/* ------------------------------------------------------------------ */

/* Everything fd holds from offset 0 (a regular file or memfd), NUL
 * terminated, malloc'd. */
static inline char *obs_read_fd(int fd)
{
    off_t len = lseek(fd, 0, SEEK_END);
    if (len < 0)
        return NULL;
    char *buf = malloc((size_t)len + 1);
    if (!buf)
        return NULL;
    ssize_t got = pread(fd, buf, (size_t)len, 0);
    if (got < 0)
        got = 0;
    buf[got] = '\0';
    return buf;
}

static inline char *obs_read_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char *s = obs_read_fd(fd);
    close(fd);
    return s;
}

/* Occurrences of needle in s. */
static inline int obs_count(const char *s, const char *needle)
{
    int n = 0;
    size_t k = strlen(needle);
    for (const char *p = s; (p = strstr(p, needle)); p += k)
        n++;
    return n;
}

#endif
