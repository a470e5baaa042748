/*
 * test_tasks: the task registry - weft_task_id and weft_tasks_foreach.
 *
 *  - ids: nonzero, unique among thousands of tasks on several workers, the
 *    same seen by the handle and by the task itself, and never reused by a
 *    second weft_run; weft_task_id(NULL) is 0;
 *  - the walk from a coroutine and from a plain thread: every named task is
 *    seen once with its state (READY before it first runs, RUNNING, WAITING,
 *    BLOCKING for a weft_to_thread function) and, for a waiting one, the
 *    wait string of every suspension point: sleep, join, gather, event,
 *    to_thread, group next, read fd N / write fd N / poll fd N, mutex,
 *    semaphore, cond, queue get / put / join, rwlock read / write,
 *    waitgroup; since and worker are plausible;
 *  - finished tasks are not visited;
 *  - a visitor returning nonzero stops the walk and its value is returned;
 *  - -EINVAL for a NULL visitor, -EPERM outside a runtime.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "obs_test.h"

/* since is stamped with sysmon's clock, refreshed every 1-5 ms; a loaded
 * machine (or a sanitizer) delays sysmon further.  Coarse by design. */
#define T_SINCE_SLACK (50 * WEFT_MS)

static int count_visit(const weft_task_info *i, void *arg)
{
    (void)i;
    (*(int *)arg)++;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Ids                                                                 */
/* ------------------------------------------------------------------ */

#define ID_TASKS 2000
static uint64_t ids_all[2 * (ID_TASKS + 1)];
static size_t ids_n;

typedef struct {
    uint64_t self_id;
} id_slot;

static void *id_task(void *arg)
{
    id_slot *s = arg;
    s->self_id = weft_task_id(weft_self());
    if ((uintptr_t)arg % 3 == 0)
        weft_yield();
    return NULL;
}

static void *ids_main(void *arg)
{
    (void)arg;
    static id_slot slots[ID_TASKS];
    static weft_task *h[ID_TASKS];
    uint64_t self = weft_task_id(weft_self());
    T_CHECK(self != 0);
    ids_all[ids_n++] = self;
    for (int i = 0; i < ID_TASKS; i++) {
        slots[i].self_id = 0;
        h[i] = i % 2 ? weft_spawn(id_task, &slots[i]) : weft_spawn_named("id", id_task, &slots[i]);
        T_CHECK(h[i] != NULL);
    }
    uint64_t hid[ID_TASKS];
    for (int i = 0; i < ID_TASKS; i++)
        hid[i] = weft_task_id(h[i]);
    T_CHECK_EQ(weft_gather(h, ID_TASKS, NULL), 0);
    for (int i = 0; i < ID_TASKS; i++) {
        T_CHECK(hid[i] != 0);
        T_CHECK_EQ(hid[i], slots[i].self_id);
        ids_all[ids_n++] = hid[i];
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_ids_unique_across_runs(void **state)
{
    OBS_BEGIN(30);
    ids_n = 0;
    assert_int_equal(weft_task_id(NULL), 0);
    assert_int_equal(t_run_workers(2, ids_main, NULL, NULL), 0);
    size_t first = ids_n;
    assert_int_equal(first, ID_TASKS + 1);
    assert_int_equal(t_run_workers(3, ids_main, NULL, NULL), 0);
    assert_int_equal(ids_n, 2 * (ID_TASKS + 1));
    /* The second run's ids are all new. */
    uint64_t max1 = 0;
    for (size_t i = 0; i < first; i++)
        if (ids_all[i] > max1)
            max1 = ids_all[i];
    qsort(ids_all, ids_n, sizeof ids_all[0], cmp_u64);
    for (size_t i = 0; i < ids_n; i++) {
        assert_true(ids_all[i] != 0);
        if (i)
            assert_true(ids_all[i] != ids_all[i - 1]);
    }
    (void)max1;
}

/* ------------------------------------------------------------------ */
/* Every state and wait string                                         */
/* ------------------------------------------------------------------ */

typedef struct world {
    weft_event gate;          /* set at cleanup: every event waiter goes */
    weft_mutex mu;            /* held by main */
    weft_sem sem;             /* 0 permits */
    weft_mutex cmu;
    weft_cond cond;
    weft_queue *qempty;       /* getter waits */
    weft_queue *qfull;        /* capacity 1, full: putter waits */
    weft_queue *qjoin;        /* one unfinished item: joiner waits */
    weft_rwlock rw;           /* write-locked by main */
    weft_waitgroup wg;        /* count 1 */
    int rp[2];                /* pipe: reader waits on rp[0] */
    int wp[2];                /* full pipe: writer waits on wp[1] */
    int pp[2];                /* poll both ways on pp[0] (read end: never writable) */
    _Atomic int thread_gate;  /* released at cleanup: the to_thread fn returns */
    _Atomic int thread_in;    /* the to_thread fn has started (a pool thread runs it) */
    _Atomic int spin_stop;
    int64_t t0;
} world;

static world W;

static void *w_event(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_event_wait(&W.gate, WEFT_FOREVER);
}

static void *w_sleep(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_sleep(3600 * WEFT_SEC);
}

static void *w_join(void *arg)
{
    (void)arg;
    weft_task *t = weft_spawn_named("join-target", w_event, NULL);
    return (void *)(intptr_t)weft_join(t, NULL);
}

static void *w_gather(void *arg)
{
    (void)arg;
    weft_task *t[2] = {weft_spawn_named("gather-a", w_event, NULL),
                       weft_spawn_named("gather-b", w_event, NULL)};
    return (void *)(intptr_t)weft_gather(t, 2, NULL);
}

static void *thread_fn(void *arg)
{
    (void)arg;
    atomic_store(&W.thread_in, 1);
    while (!atomic_load(&W.thread_gate))
        t_nap_ms(1);
    return NULL;
}

static void *w_to_thread(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_to_thread(thread_fn, NULL, NULL);
}

static void *w_group(void *arg)
{
    (void)arg;
    weft_group *g = weft_group_new();
    weft_group_spawn(g, w_event, NULL);
    int rc = weft_group_next(g, NULL, WEFT_FOREVER);
    weft_group_free(g);
    return (void *)(intptr_t)rc;
}

static void *w_read(void *arg)
{
    (void)arg;
    char c;
    return (void *)(intptr_t)weft_read(W.rp[0], &c, 1, WEFT_FOREVER);
}

static void *w_write(void *arg)
{
    (void)arg;
    char c = 'x';
    return (void *)(intptr_t)weft_write(W.wp[1], &c, 1, WEFT_FOREVER);
}

static void *w_poll(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_wait_fd(W.pp[0], WEFT_READABLE | WEFT_WRITABLE, WEFT_FOREVER);
}

static void *w_mutex(void *arg)
{
    (void)arg;
    int rc = weft_mutex_lock(&W.mu);
    if (rc == 0)
        weft_mutex_unlock(&W.mu);
    return (void *)(intptr_t)rc;
}

static void *w_sem(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_sem_acquire(&W.sem);
}

static void *w_cond(void *arg)
{
    (void)arg;
    weft_mutex_lock(&W.cmu);
    int rc = weft_cond_wait(&W.cond, &W.cmu, WEFT_FOREVER);
    weft_mutex_unlock(&W.cmu);
    return (void *)(intptr_t)rc;
}

static void *w_qget(void *arg)
{
    (void)arg;
    void *item;
    return (void *)(intptr_t)weft_queue_get(W.qempty, &item, WEFT_FOREVER);
}

static void *w_qput(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_queue_put(W.qfull, NULL, WEFT_FOREVER);
}

static void *w_qjoin(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_queue_join(W.qjoin);
}

static void *w_rdlock(void *arg)
{
    (void)arg;
    int rc = weft_rwlock_rdlock(&W.rw);
    if (rc == 0)
        weft_rwlock_rdunlock(&W.rw);
    return (void *)(intptr_t)rc;
}

static void *w_wrlock(void *arg)
{
    (void)arg;
    int rc = weft_rwlock_wrlock(&W.rw);
    if (rc == 0)
        weft_rwlock_wrunlock(&W.rw);
    return (void *)(intptr_t)rc;
}

static void *w_wg(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_waitgroup_wait(&W.wg, WEFT_FOREVER);
}

static void *w_spin(void *arg)
{
    (void)arg;
    int64_t end = weft_now() + 5 * T_SLACK * WEFT_SEC;
    while (!atomic_load(&W.spin_stop) && weft_now() < end)
        ;
    return NULL;
}

typedef struct waiter_spec {
    const char *name;
    weft_fn fn;
    char wait[32];        /* expected wait string ("read fd N" filled in at run time) */
} waiter_spec;

static waiter_spec specs[] = {
    {"t-sleep", w_sleep, "sleep"},
    {"t-join", w_join, "join"},
    {"t-gather", w_gather, "gather"},
    {"t-event", w_event, "event"},
    {"t-to-thread", w_to_thread, "to_thread"},
    {"t-group", w_group, "group next"},
    {"t-read", w_read, ""},
    {"t-write", w_write, ""},
    {"t-poll", w_poll, ""},
    {"t-mutex", w_mutex, "mutex"},
    {"t-sem", w_sem, "semaphore"},
    {"t-cond", w_cond, "cond"},
    {"t-qget", w_qget, "queue get"},
    {"t-qput", w_qput, "queue put"},
    {"t-qjoin", w_qjoin, "queue join"},
    {"t-rdlock", w_rdlock, "rwlock read"},
    {"t-wrlock", w_wrlock, "rwlock write"},
    {"t-wg", w_wg, "waitgroup"},
};
#define NSPECS (sizeof specs / sizeof specs[0])

/* Named tasks the helpers spawn, and what they wait on. */
static const struct {
    const char *name, *wait;
} inner[] = {
    {"join-target", "event"},
    {"gather-a", "event"},
    {"gather-b", "event"},
};

static void world_init(void)
{
    memset(&W, 0, sizeof W);
    assert_int_equal(weft_event_init(&W.gate), 0);
    assert_int_equal(weft_mutex_init(&W.mu), 0);
    assert_int_equal(weft_sem_init(&W.sem, 0), 0);
    assert_int_equal(weft_mutex_init(&W.cmu), 0);
    assert_int_equal(weft_cond_init(&W.cond), 0);
    assert_non_null(W.qempty = weft_queue_new(WEFT_QUEUE_FIFO, 0));
    assert_non_null(W.qfull = weft_queue_new(WEFT_QUEUE_FIFO, 1));
    assert_int_equal(weft_queue_try_put(W.qfull, NULL), 0);
    assert_non_null(W.qjoin = weft_queue_new(WEFT_QUEUE_FIFO, 0));
    assert_int_equal(weft_queue_try_put(W.qjoin, NULL), 0);
    assert_int_equal(weft_rwlock_init(&W.rw), 0);
    assert_int_equal(weft_waitgroup_init(&W.wg), 0);
    assert_int_equal(weft_waitgroup_add(&W.wg, 1), 0);
}

static void world_destroy(void)
{
    weft_event_destroy(&W.gate);
    weft_mutex_destroy(&W.mu);
    weft_sem_destroy(&W.sem);
    weft_mutex_destroy(&W.cmu);
    weft_cond_destroy(&W.cond);
    weft_queue_free(W.qempty);
    weft_queue_free(W.qfull);
    weft_queue_free(W.qjoin);
    weft_rwlock_destroy(&W.rw);
    weft_waitgroup_destroy(&W.wg);
}

typedef struct {
    int blocking, unnamed_blocking, with_wait;
} blocking_count;

static int blocking_visit(const weft_task_info *i, void *arg)
{
    blocking_count *x = arg;
    if (i->state == WEFT_TASK_BLOCKING) {
        x->blocking++;
        x->unnamed_blocking += i->name == NULL;
        x->with_wait += i->wait != NULL;
    }
    T_CHECK(i->id != 0);
    T_CHECK(i->state >= WEFT_TASK_READY && i->state <= WEFT_TASK_BLOCKING);
    T_CHECK(i->state == WEFT_TASK_WAITING || i->wait == NULL);
    return 0;
}

/* The checks, from any thread: every waiter in its place. */
static void check_world(int workers)
{
    int64_t now = weft_now();
    for (size_t i = 0; i < NSPECS; i++) {
        obs_entry e;
        int n = obs_find(specs[i].name, &e);
        T_CHECK_EQ(n, 1);
        if (n != 1)
            continue;
        if (e.state != WEFT_TASK_WAITING || !e.has_wait || strcmp(e.wait, specs[i].wait) != 0) {
            fprintf(stderr, "task %s: state %d wait '%s', expected waiting on '%s'\n",
                    specs[i].name, e.state, e.has_wait ? e.wait : "(null)", specs[i].wait);
            T_CHECK(false);
        }
        T_CHECK(e.id != 0);
        T_CHECK(e.worker >= 0 && e.worker < workers);
        /* since: coarse clock (a few ms), after the world was built. */
        /* since comes from sysmon's clock (1-5 ms, later on a loaded machine) */
        T_CHECK(e.since >= W.t0 - T_SINCE_SLACK);
        T_CHECK(e.since <= now + T_SINCE_SLACK);
    }
    for (size_t i = 0; i < sizeof inner / sizeof inner[0]; i++) {
        obs_entry e;
        T_CHECK_EQ(obs_find(inner[i].name, &e), 1);
        T_CHECK_EQ(e.state, WEFT_TASK_WAITING);
        T_CHECK(e.has_wait && strcmp(e.wait, inner[i].wait) == 0);
    }
    /* The to_thread function: one unnamed BLOCKING task, no wait string. */
    blocking_count c = {0, 0, 0};
    int visit_rc = weft_tasks_foreach(blocking_visit, &c);
    T_CHECK_EQ(visit_rc, 0);
    T_CHECK_EQ(c.blocking, 1);
    T_CHECK_EQ(c.unnamed_blocking, 1);
    T_CHECK_EQ(c.with_wait, 0);
}

static void *check_world_thread(void *arg)
{
    T_CHECK(weft_self() == NULL);
    check_world((int)(intptr_t)arg);
    return NULL;
}

static void *world_main(void *arg)
{
    int workers = (int)weft_workers();
    W.t0 = weft_now();
    /* Main's own entry: RUNNING on this worker, named "main". */
    obs_entry me;
    T_CHECK_EQ(obs_find_id(weft_task_id(weft_self()), &me), 1);
    T_CHECK_EQ(me.state, WEFT_TASK_RUNNING);
    T_CHECK_EQ(me.worker, weft_worker_id());
    T_CHECK(!me.has_wait);
    T_CHECK(me.named && strcmp(me.name, "main") == 0);

    /* Pipes inside the run: the leak check counts descriptors around it. */
    T_CHECK_EQ(pipe2(W.rp, O_NONBLOCK | O_CLOEXEC), 0);
    T_CHECK_EQ(pipe2(W.wp, O_NONBLOCK | O_CLOEXEC), 0);
    T_CHECK_EQ(pipe2(W.pp, O_NONBLOCK | O_CLOEXEC), 0);
    /* Fill wp so that the writer waits. */
    char buf[4096];
    memset(buf, 'f', sizeof buf);
    while (write(W.wp[1], buf, sizeof buf) > 0)
        ;
    T_CHECK_EQ(errno, EAGAIN);
    snprintf(specs[6].wait, sizeof specs[6].wait, "read fd %d", W.rp[0]);
    snprintf(specs[7].wait, sizeof specs[7].wait, "write fd %d", W.wp[1]);
    snprintf(specs[8].wait, sizeof specs[8].wait, "poll fd %d", W.pp[0]);
    weft_mutex_lock(&W.mu);
    weft_rwlock_wrlock(&W.rw);
    weft_task *h[NSPECS];
    for (size_t i = 0; i < NSPECS; i++)
        T_CHECK((h[i] = weft_spawn_named(specs[i].name, specs[i].fn, NULL)) != NULL);
    /* Wait until every one of them waits. */
    for (size_t i = 0; i < NSPECS; i++)
        T_CHECK(obs_await(specs[i].name, WEFT_TASK_WAITING, specs[i].wait, NULL));
    for (size_t i = 0; i < sizeof inner / sizeof inner[0]; i++)
        T_CHECK(obs_await(inner[i].name, WEFT_TASK_WAITING, inner[i].wait, NULL));
    /* The pool thread may start late (a new thread; slow under sanitizers). */
    for (int k = 0; k < 10000 && !atomic_load(&W.thread_in); k++)
        weft_sleep(WEFT_MS);
    T_CHECK(atomic_load(&W.thread_in));

    /* The same picture from this coroutine and from a plain thread. */
    check_world(workers);
    t_in_thread(check_world_thread, (void *)(intptr_t)workers);

    /* A task that runs: RUNNING, seen from a plain thread (2+ workers). */
    if (workers >= 2) {
        weft_task *s = weft_spawn_named("t-spin", w_spin, NULL);
        obs_entry e;
        T_CHECK(obs_await("t-spin", WEFT_TASK_RUNNING, NULL, &e));
        T_CHECK(!e.has_wait);
        T_CHECK(e.worker >= 0 && e.worker < workers && e.worker != weft_worker_id());
        atomic_store(&W.spin_stop, 1);
        T_CHECK_EQ(weft_join(s, NULL), 0);
        T_CHECK_EQ(obs_find("t-spin", NULL), 0);   /* finished: gone */
    }

    /* Clean up: release the thread, cancel everyone, join. */
    atomic_store(&W.thread_gate, 1);
    for (size_t i = 0; i < NSPECS; i++)
        weft_cancel(h[i]);
    for (size_t i = 0; i < NSPECS; i++) {
        void *r = NULL;
        int rc = weft_join(h[i], &r);
        /* Cancelled while waiting: the wait returned -ECANCELED. */
        T_CHECK(rc == -ECANCELED || rc == 0);
    }
    weft_mutex_unlock(&W.mu);
    weft_rwlock_wrunlock(&W.rw);
    for (size_t i = 0; i < NSPECS; i++)
        T_CHECK_EQ(obs_find(specs[i].name, NULL), 0);
    for (size_t i = 0; i < sizeof inner / sizeof inner[0]; i++)
        T_CHECK_EQ(obs_find(inner[i].name, NULL), 0);
    weft_close(W.rp[0]);
    weft_close(W.rp[1]);
    weft_close(W.wp[0]);
    weft_close(W.wp[1]);
    weft_close(W.pp[0]);
    weft_close(W.pp[1]);
    (void)arg;
    return NULL;
}

static void test_wait_strings_2_workers(void **state)
{
    OBS_BEGIN(30);
    world_init();
    assert_int_equal(t_run_workers(2, world_main, NULL, NULL), 0);
    world_destroy();
}

static void test_wait_strings_1_worker(void **state)
{
    OBS_BEGIN(30);
    world_init();
    assert_int_equal(t_run_workers(1, world_main, NULL, NULL), 0);
    world_destroy();
}

/* ------------------------------------------------------------------ */
/* READY: spawned, not yet run                                         */
/* ------------------------------------------------------------------ */

static void *nothing(void *arg)
{
    return arg;
}

static void *ready_main(void *arg)
{
    (void)arg;
    /* One worker: the new task cannot run before main suspends. */
    weft_task *t = weft_spawn_named("t-ready", nothing, NULL);
    weft_task *u = weft_spawn(nothing, NULL);
    obs_entry e;
    T_CHECK_EQ(obs_find("t-ready", &e), 1);
    T_CHECK_EQ(e.state, WEFT_TASK_READY);
    T_CHECK_EQ(e.worker, -1);
    T_CHECK(!e.has_wait);
    T_CHECK_EQ(e.id, weft_task_id(t));
    /* The unnamed one: found by id, name NULL. */
    T_CHECK_EQ(obs_find_id(weft_task_id(u), &e), 1);
    T_CHECK(!e.named);
    T_CHECK_EQ(e.state, WEFT_TASK_READY);
    /* Three unfinished tasks: main, t-ready, u. */
    int n = 0;
    T_CHECK_EQ(weft_tasks_foreach(count_visit, &n), 0);
    T_CHECK_EQ(n, 3);   /* main, t-ready, u */
    T_CHECK_EQ(weft_join(t, NULL), 0);
    T_CHECK_EQ(weft_join(u, NULL), 0);
    n = 0;
    T_CHECK_EQ(weft_tasks_foreach(count_visit, &n), 0);
    T_CHECK_EQ(n, 1);   /* main alone */
    return NULL;
}

static void test_ready_and_finished(void **state)
{
    OBS_BEGIN(20);
    assert_int_equal(t_run_workers(1, ready_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* since: when the task entered its state                              */
/* ------------------------------------------------------------------ */

static void *since_main(void *arg)
{
    (void)arg;
    uint64_t me = weft_task_id(weft_self());
    obs_entry e;
    int64_t spawned = weft_now();
    weft_task *t = weft_spawn_named("t-sleeper", w_sleep, NULL);
    T_CHECK(obs_await("t-sleeper", WEFT_TASK_WAITING, "sleep", &e));
    /* A waiting task: since it started waiting. */
    T_CHECK(e.since >= spawned - T_SINCE_SLACK && e.since <= weft_now() + T_SINCE_SLACK);
    weft_sleep(50 * WEFT_MS);
    int64_t woke = weft_now();
    /* main itself: RUNNING since it woke (the header: "when it entered
     * this state"), not since its last park 50 ms earlier. */
    T_CHECK_EQ(obs_find_id(me, &e), 1);
    T_CHECK_EQ(e.state, WEFT_TASK_RUNNING);
    T_CHECK(e.since >= woke - T_SINCE_SLACK);
    weft_cancel(t);
    T_CHECK_EQ(weft_join(t, NULL), -ECANCELED);
    return NULL;
}

static void test_since(void **state)
{
    OBS_BEGIN(20);
    assert_int_equal(t_run_workers(2, since_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Stopping the walk, errors                                           */
/* ------------------------------------------------------------------ */

typedef struct {
    int calls, stop_at, value;
} stop_ctx;

static int stop_visit(const weft_task_info *i, void *arg)
{
    (void)i;
    stop_ctx *c = arg;
    return ++c->calls == c->stop_at ? c->value : 0;
}

static void *stop_main(void *arg)
{
    (void)arg;
    weft_task *t[10];
    for (int i = 0; i < 10; i++)
        t[i] = weft_spawn_named("stop", w_sleep, NULL);
    int total = 0;
    T_CHECK_EQ(weft_tasks_foreach(count_visit, &total), 0);
    T_CHECK_EQ(total, 11);
    stop_ctx c = {0, 3, 42};
    T_CHECK_EQ(weft_tasks_foreach(stop_visit, &c), 42);
    T_CHECK_EQ(c.calls, 3);
    c = (stop_ctx){0, 1, -7};
    T_CHECK_EQ(weft_tasks_foreach(stop_visit, &c), -7);
    T_CHECK_EQ(c.calls, 1);
    c = (stop_ctx){0, 11, 5};  /* the last one */
    T_CHECK_EQ(weft_tasks_foreach(stop_visit, &c), 5);
    T_CHECK_EQ(c.calls, 11);
    T_CHECK_EQ(weft_tasks_foreach(NULL, NULL), -EINVAL);
    for (int i = 0; i < 10; i++)
        weft_cancel(t[i]);
    T_CHECK_EQ(weft_gather(t, 10, NULL), -ECANCELED);
    return NULL;
}

static void *after_run_thread(void *arg)
{
    (void)arg;
    int n = 0;
    return (void *)(intptr_t)weft_tasks_foreach(count_visit, &n);
}

static void test_stop_and_errors(void **state)
{
    OBS_BEGIN(20);
    int n = 0;
    assert_int_equal(weft_tasks_foreach(count_visit, &n), -EPERM);
    assert_int_equal(weft_tasks_foreach(NULL, NULL), -EINVAL);
    assert_int_equal(n, 0);
    assert_int_equal(t_run_workers(2, stop_main, NULL, NULL), 0);
    /* After the runtime: -EPERM again, from this thread and another. */
    assert_int_equal(weft_tasks_foreach(count_visit, &n), -EPERM);
    pthread_t th;
    void *r;
    assert_int_equal(pthread_create(&th, NULL, after_run_thread, NULL), 0);
    pthread_join(th, &r);
    assert_int_equal((intptr_t)r, -EPERM);
    assert_int_equal(n, 0);
}

int main(void)
{
    obs_init();
    t_warm_up();
    const struct CMUnitTest tests[] = {
        OBS_TEST(test_ids_unique_across_runs),
        OBS_TEST(test_ready_and_finished),
        OBS_TEST(test_wait_strings_1_worker),
        OBS_TEST(test_wait_strings_2_workers),
        OBS_TEST(test_stop_and_errors),
        OBS_TEST(test_since),
    };
    return cmocka_run_group_tests_name("tasks", tests, NULL, NULL);
}
