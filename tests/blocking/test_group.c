/*
 * test_group: task groups - weft_group_new / spawn / spawn_blocking / next /
 * wait / cancel / free / size.
 *
 *  - error codes: EINVAL / -EINVAL for NULL groups and functions, EPERM /
 *    -EPERM outside a runtime and from a plain thread (nothing freed),
 *    -ENOENT for an empty or exhausted group, -ETIMEDOUT at next's deadline;
 *  - completion order (as_completed), values and join codes, group_size;
 *  - group_wait's first nonzero code; group_cancel (from a coroutine and a
 *    plain thread), spawning into a cancelled group (cancelled at birth);
 *  - group_free cancels what runs and waits for it (cleanup done before it
 *    returns, no orphans) and releases unreported members;
 *  - the owner cancelled while it waits in next or wait: the members are
 *    cancelled and awaited before -ECANCELED;
 *  - blocking members (weft_group_spawn_blocking), also waiting in line
 *    when the group is cancelled or freed;
 *  - spawning into a group from a plain thread; two consumers of one group.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "blk_test.h"

static void *ret_arg(void *arg)
{
    return arg;
}

/* Sleeps arg ms (coroutine sleep), returns arg. */
static void *nap_ret(void *arg)
{
    weft_sleep((intptr_t)arg * WEFT_MS);
    return arg;
}

/* OS sleep of arg ms (for blocking members), returns arg. */
static void *os_nap_ret(void *arg)
{
    t_nap_ms((long)(intptr_t)arg);
    return arg;
}

/* A member that waits until cancelled, then cleans up for a while without
 * suspending (it cannot), records that, and returns its value. */
typedef struct member {
    _Atomic int started;
    _Atomic int cleaned;
    _Atomic int runs;
    int wait_rc;
    int cleanup_ms;
    intptr_t value;
} member;

static void *member_fn(void *arg)
{
    member *m = arg;
    intptr_t v = m->value;
    int ms = m->cleanup_ms;
    atomic_fetch_add(&m->runs, 1);
    atomic_store(&m->started, 1);
    m->wait_rc = weft_sleep_until(WEFT_FOREVER);
    t_spin_ms(ms);
    atomic_store(&m->cleaned, 1);
    return (void *)v;
}

/* A blocking member: started, OS-sleeps ms (or waits for its gate), done. */
typedef struct bmember {
    _Atomic int started;
    _Atomic int finished;
    _Atomic int runs;
    _Atomic int gate;
    bool use_gate;
    long ms;
    intptr_t value;
} bmember;

static void *bmember_fn(void *arg)
{
    bmember *b = arg;
    intptr_t v = b->value;
    atomic_fetch_add(&b->runs, 1);
    atomic_store(&b->started, 1);
    if (b->use_gate)
        blk_os_wait_flag(&b->gate);
    else
        t_nap_ms(b->ms);
    atomic_store(&b->finished, 1);
    return (void *)v;
}

static weft_config cfg_threads(unsigned n)
{
    weft_config c = WEFT_CONFIG_DEFAULT;
    c.blocking_threads = n;
    return c;
}

/* ------------------------------------------------------------------ */
/* Error codes                                                         */
/* ------------------------------------------------------------------ */

static void *plain_group_calls(void *arg)
{
    weft_group *g = arg;
    static int out[4];
    void *res = (void *)1;
    out[0] = weft_group_next(g, &res, WEFT_FOREVER);
    out[1] = weft_group_wait(g);
    out[2] = weft_group_free(g);  /* -EPERM: nothing freed */
    out[3] = res == (void *)1;
    return out;
}

static void *errors_main(void *arg)
{
    (void)arg;
    weft_group *g = weft_group_new();
    T_CHECK(g != NULL);
    errno = 0;
    T_CHECK(weft_group_spawn(NULL, ret_arg, NULL) == NULL);
    T_CHECK_EQ(errno, EINVAL);
    errno = 0;
    T_CHECK(weft_group_spawn(g, NULL, NULL) == NULL);
    T_CHECK_EQ(errno, EINVAL);
    errno = 0;
    T_CHECK(weft_group_spawn_blocking(NULL, ret_arg, NULL) == NULL);
    T_CHECK_EQ(errno, EINVAL);
    errno = 0;
    T_CHECK(weft_group_spawn_blocking(g, NULL, NULL) == NULL);
    T_CHECK_EQ(errno, EINVAL);
    T_CHECK_EQ(weft_group_size(g), 0);  /* failed spawns added nothing */
    void *res = (void *)1;
    T_CHECK_EQ(weft_group_next(NULL, &res, WEFT_FOREVER), -EINVAL);
    T_CHECK(res == (void *)1);
    T_CHECK_EQ(weft_group_wait(NULL), -EINVAL);
    T_CHECK_EQ(weft_group_free(NULL), -EINVAL);
    weft_group_cancel(NULL);  /* no effect, no crash */
    T_CHECK_EQ(weft_group_size(NULL), 0);

    /* From a plain thread: -EPERM, and the group is still usable. */
    T_CHECK(weft_group_spawn(g, nap_ret, (void *)5) != NULL);
    int *out = t_in_thread(plain_group_calls, g);
    T_CHECK_EQ(out[0], -EPERM);
    T_CHECK_EQ(out[1], -EPERM);
    T_CHECK_EQ(out[2], -EPERM);
    T_CHECK(out[3]);
    T_CHECK_EQ(weft_group_next(g, &res, WEFT_FOREVER), 0);
    T_CHECK_EQ((intptr_t)res, 5);
    T_CHECK_EQ(weft_group_free(g), 0);
    return NULL;
}

static void test_errors(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(errors_main, NULL, NULL), 0);
}

static void *free_group_main(void *arg)
{
    T_CHECK_EQ(weft_group_size(arg), 0);
    T_CHECK_EQ(weft_group_free(arg), 0);
    return NULL;
}

static void *use_outside_group_main(void *arg)
{
    weft_group *g = arg;
    /* A group made before the runtime started works inside it. */
    T_CHECK(weft_group_spawn(g, ret_arg, (void *)3) != NULL);
    void *res = NULL;
    T_CHECK_EQ(weft_group_next(g, &res, WEFT_FOREVER), 0);
    T_CHECK_EQ((intptr_t)res, 3);
    T_CHECK_EQ(weft_group_free(g), 0);
    return NULL;
}

static void test_outside_runtime(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    weft_group *g = weft_group_new();  /* needs no runtime */
    assert_non_null(g);
    errno = 0;
    assert_null(weft_group_spawn(g, ret_arg, NULL));
    assert_int_equal(errno, EPERM);
    errno = 0;
    assert_null(weft_group_spawn_blocking(g, ret_arg, NULL));
    assert_int_equal(errno, EPERM);
    assert_int_equal(weft_group_size(g), 0);
    void *res = (void *)1;
    assert_int_equal(weft_group_next(g, &res, WEFT_FOREVER), -EPERM);
    assert_ptr_equal(res, (void *)1);
    assert_int_equal(weft_group_wait(g), -EPERM);
    assert_int_equal(weft_group_free(g), -EPERM);  /* nothing freed */
    /* The group was not freed: it still works in a runtime. */
    assert_int_equal(t_run(use_outside_group_main, g, NULL), 0);  /* frees g */
    /* group_cancel needs no runtime either. */
    weft_group *g3 = weft_group_new();
    assert_non_null(g3);
    weft_group_cancel(g3);
    assert_int_equal(t_run(free_group_main, g3, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Completion order, values, codes, size                               */
/* ------------------------------------------------------------------ */

#define ORDER_SCALE (3 * T_SLACK)

static void *order_main(void *arg)
{
    (void)arg;
    weft_group *g = weft_group_new();
    T_CHECK_EQ(weft_group_size(g), 0);
    /* 30 / 10 / 20 ms, scaled so that a loaded machine keeps the order. */
    T_CHECK(weft_group_spawn(g, nap_ret, (void *)(30 * ORDER_SCALE)) != NULL);
    T_CHECK(weft_group_spawn(g, nap_ret, (void *)(10 * ORDER_SCALE)) != NULL);
    T_CHECK(weft_group_spawn(g, nap_ret, (void *)(20 * ORDER_SCALE)) != NULL);
    T_CHECK_EQ(weft_group_size(g), 3);
    intptr_t want[3] = {10 * ORDER_SCALE, 20 * ORDER_SCALE, 30 * ORDER_SCALE};
    for (int i = 0; i < 3; i++) {
        void *res = NULL;
        T_CHECK_EQ(weft_group_next(g, &res, WEFT_FOREVER), 0);
        T_CHECK_EQ((intptr_t)res, want[i]);
        T_CHECK_EQ(weft_group_size(g), (size_t)(2 - i));
    }
    void *res = (void *)1;
    T_CHECK_EQ(weft_group_next(g, &res, WEFT_FOREVER), -ENOENT);
    T_CHECK(res == (void *)1);
    T_CHECK_EQ(weft_group_next(g, NULL, 0), -ENOENT);
    /* Reusable after -ENOENT. */
    T_CHECK(weft_group_spawn(g, ret_arg, (void *)4) != NULL);
    T_CHECK_EQ(weft_group_next(g, NULL, WEFT_FOREVER), 0);  /* result may be NULL */
    T_CHECK_EQ(weft_group_free(g), 0);
    return NULL;
}

static void test_completion_order(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(order_main, NULL, NULL), 0);
}

/* Blocking members report in completion order too, mixed with coroutines. */
static void *order_blocking_main(void *arg)
{
    (void)arg;
    weft_group *g = weft_group_new();
    const intptr_t k = 20 * ORDER_SCALE;
    T_CHECK(weft_group_spawn_blocking(g, os_nap_ret, (void *)(4 * k)) != NULL);
    T_CHECK(weft_group_spawn(g, nap_ret, (void *)k) != NULL);
    T_CHECK(weft_group_spawn_blocking(g, os_nap_ret, (void *)(2 * k)) != NULL);
    T_CHECK(weft_group_spawn(g, nap_ret, (void *)(3 * k)) != NULL);
    weft_task *b = weft_group_spawn_blocking(g, os_nap_ret, (void *)1);
    T_CHECK(b != NULL && weft_task_name(b) == NULL);
    T_CHECK_EQ(weft_group_size(g), 5);
    intptr_t want[5] = {1, k, 2 * k, 3 * k, 4 * k};
    for (int i = 0; i < 5; i++) {
        void *res = NULL;
        T_CHECK_EQ(weft_group_next(g, &res, WEFT_FOREVER), 0);
        T_CHECK_EQ((intptr_t)res, want[i]);
    }
    T_CHECK_EQ(weft_group_next(g, NULL, WEFT_FOREVER), -ENOENT);
    T_CHECK_EQ(weft_group_free(g), 0);
    return NULL;
}

static void test_completion_order_blocking(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(order_blocking_main, NULL, NULL), 0);
}

static void *empty_main(void *arg)
{
    (void)arg;
    weft_group *g = weft_group_new();
    void *res = (void *)1;
    T_CHECK_EQ(weft_group_next(g, &res, WEFT_FOREVER), -ENOENT);
    T_CHECK_EQ(weft_group_next(g, &res, weft_now() + WEFT_SEC), -ENOENT);
    T_CHECK(res == (void *)1);
    T_CHECK_EQ(weft_group_wait(g), 0);
    T_CHECK_EQ(weft_group_size(g), 0);
    weft_group_cancel(g);
    T_CHECK_EQ(weft_group_free(g), 0);
    /* A group that is never used at all. */
    T_CHECK_EQ(weft_group_free(weft_group_new()), 0);
    return NULL;
}

static void test_empty(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(empty_main, NULL, NULL), 0);
}

/* Join codes: a member cancelled through its own handle reports
 * -ECANCELED with its value still stored; size counts finished but
 * unreported members. */
static void *codes_main(void *arg)
{
    (void)arg;
    weft_group *g = weft_group_new();
    member m = {.value = 0x42};
    weft_task *mt = weft_group_spawn(g, member_fn, &m);
    T_CHECK(weft_group_spawn(g, ret_arg, (void *)7) != NULL);
    T_CHECK(blk_co_wait_flag(&m.started, 5000));
    /* The quick one finished: still counted until reported. */
    weft_sleep(10 * WEFT_MS);
    T_CHECK_EQ(weft_group_size(g), 2);
    void *res = NULL;
    T_CHECK_EQ(weft_group_next(g, &res, WEFT_FOREVER), 0);
    T_CHECK_EQ((intptr_t)res, 7);
    T_CHECK_EQ(weft_group_size(g), 1);
    T_CHECK_EQ(weft_cancel(mt), 0);
    T_CHECK_EQ(weft_group_next(g, &res, WEFT_FOREVER), -ECANCELED);
    T_CHECK_EQ((intptr_t)res, 0x42);
    T_CHECK_EQ(m.wait_rc, -ECANCELED);
    T_CHECK_EQ(weft_group_size(g), 0);
    T_CHECK_EQ(weft_group_free(g), 0);
    return NULL;
}

static void test_codes_and_size(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(codes_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Deadlines                                                           */
/* ------------------------------------------------------------------ */

static void *deadline_main(void *arg)
{
    (void)arg;
    weft_group *g = weft_group_new();
    T_CHECK(weft_group_spawn(g, nap_ret, (void *)150) != NULL);
    int64_t t0 = weft_now();
    void *res = (void *)1;
    T_CHECK_EQ(weft_group_next(g, &res, t0 + 30 * WEFT_MS), -ETIMEDOUT);
    int64_t el = weft_now() - t0;
    T_CHECK(el >= 30 * WEFT_MS);
    T_CHECK(el < 140 * WEFT_MS * T_SLACK);
    T_CHECK(res == (void *)1);
    T_CHECK_EQ(weft_group_size(g), 1);  /* the timeout cancelled nothing */
    /* A deadline already past, nothing finished: -ETIMEDOUT at once. */
    T_CHECK_EQ(weft_group_next(g, &res, 0), -ETIMEDOUT);
    T_CHECK_EQ(weft_group_next(g, &res, weft_now()), -ETIMEDOUT);
    /* Then it completes normally. */
    T_CHECK_EQ(weft_group_next(g, &res, weft_now() + 5 * WEFT_SEC), 0);
    T_CHECK_EQ((intptr_t)res, 150);
    /* A deadline already past with a finished member: reported. */
    T_CHECK(weft_group_spawn(g, ret_arg, (void *)8) != NULL);
    while (weft_group_size(g) && weft_group_next(g, &res, 0) == -ETIMEDOUT)
        weft_sleep(WEFT_MS);
    T_CHECK_EQ((intptr_t)res, 8);
    /* Empty group, past deadline: -ENOENT wins. */
    T_CHECK_EQ(weft_group_next(g, &res, 0), -ENOENT);
    T_CHECK_EQ(weft_group_free(g), 0);
    return NULL;
}

static void test_next_deadline(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(deadline_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* wait                                                                */
/* ------------------------------------------------------------------ */

static void *wait_main(void *arg)
{
    (void)arg;
    weft_group *g = weft_group_new();
    for (intptr_t i = 1; i <= 5; i++)
        T_CHECK(weft_group_spawn(g, nap_ret, (void *)(i * 5)) != NULL);
    T_CHECK(weft_group_spawn_blocking(g, os_nap_ret, (void *)10) != NULL);
    T_CHECK_EQ(weft_group_wait(g), 0);
    T_CHECK_EQ(weft_group_size(g), 0);
    T_CHECK_EQ(weft_group_next(g, NULL, WEFT_FOREVER), -ENOENT);

    /* One member cancelled: the first nonzero code. */
    member m = {.value = 1};
    weft_task *mt = weft_group_spawn(g, member_fn, &m);
    T_CHECK(weft_group_spawn(g, nap_ret, (void *)20) != NULL);
    T_CHECK(weft_group_spawn(g, nap_ret, (void *)40) != NULL);
    T_CHECK(blk_co_wait_flag(&m.started, 5000));
    weft_cancel(mt);
    T_CHECK_EQ(weft_group_wait(g), -ECANCELED);
    T_CHECK_EQ(weft_group_size(g), 0);
    T_CHECK_EQ(atomic_load(&m.cleaned), 1);
    T_CHECK_EQ(weft_group_free(g), 0);
    return NULL;
}

static void test_wait(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(wait_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* cancel                                                              */
/* ------------------------------------------------------------------ */

static void *plain_cancel(void *arg)
{
    weft_group_cancel(arg);
    return NULL;
}

typedef struct cancel_arg {
    bool from_plain_thread;
} cancel_arg;

static void *cancel_main(void *arg)
{
    cancel_arg *ca = arg;
    weft_group *g = weft_group_new();
    member m[5] = {{.value = 0}, {.value = 1}, {.value = 2}, {.value = 3}, {.value = 4}};
    for (int i = 0; i < 5; i++)
        T_CHECK(weft_group_spawn(g, member_fn, &m[i]) != NULL);
    bmember b = {.use_gate = true, .value = 9};
    T_CHECK(weft_group_spawn_blocking(g, bmember_fn, &b) != NULL);
    for (int i = 0; i < 5; i++)
        T_CHECK(blk_co_wait_flag(&m[i].started, 5000));
    T_CHECK(blk_co_wait_flag(&b.started, 5000));
    if (ca->from_plain_thread)
        t_in_thread(plain_cancel, g);
    else
        weft_group_cancel(g);
    weft_group_cancel(g);  /* idempotent */
    atomic_store(&b.gate, 1);  /* the running blocking member finishes after the cancel */
    int n = 0, ncancelled = 0;
    int rc;
    void *res;
    while ((rc = weft_group_next(g, &res, WEFT_FOREVER)) != -ENOENT) {
        T_CHECK(rc == 0 || rc == -ECANCELED);
        n++;
        ncancelled += rc == -ECANCELED;
    }
    T_CHECK_EQ(n, 6);
    T_CHECK_EQ(ncancelled, 6);  /* the running blocking member too */
    for (int i = 0; i < 5; i++) {
        T_CHECK_EQ(m[i].wait_rc, -ECANCELED);
        T_CHECK_EQ(atomic_load(&m[i].cleaned), 1);
    }
    T_CHECK_EQ(atomic_load(&b.finished), 1);  /* a running fn is not stopped */

    /* Spawned into the cancelled group: cancelled at birth.  A coroutine
     * member still runs its function, whose first suspension point
     * returns -ECANCELED. */
    member late = {.value = 0x1a};
    T_CHECK(weft_group_spawn(g, member_fn, &late) != NULL);
    T_CHECK_EQ(weft_group_next(g, &res, WEFT_FOREVER), -ECANCELED);
    T_CHECK_EQ((intptr_t)res, 0x1a);
    T_CHECK_EQ(late.wait_rc, -ECANCELED);
    T_CHECK_EQ(atomic_load(&late.runs), 1);
    /* A blocking member of a cancelled group never runs. */
    bmember lateb = {.ms = 1, .value = 3};
    T_CHECK(weft_group_spawn_blocking(g, bmember_fn, &lateb) != NULL);
    T_CHECK_EQ(weft_group_next(g, &res, WEFT_FOREVER), -ECANCELED);
    T_CHECK(res == NULL);
    weft_sleep(10 * WEFT_MS);
    T_CHECK_EQ(atomic_load(&lateb.runs), 0);
    T_CHECK_EQ(weft_group_wait(g), 0);  /* nothing left */
    T_CHECK_EQ(weft_group_free(g), 0);
    return NULL;
}

static void test_cancel(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    cancel_arg ca = {.from_plain_thread = false};
    assert_int_equal(t_run(cancel_main, &ca, NULL), 0);
}

static void test_cancel_from_plain_thread(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    cancel_arg ca = {.from_plain_thread = true};
    assert_int_equal(t_run(cancel_main, &ca, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* free                                                                */
/* ------------------------------------------------------------------ */

static void *free_main(void *arg)
{
    (void)arg;
    weft_group *g = weft_group_new();
    member m[4];
    for (int i = 0; i < 4; i++) {
        memset(&m[i], 0, sizeof m[i]);
        m[i].cleanup_ms = 20;
        T_CHECK(weft_group_spawn(g, member_fn, &m[i]) != NULL);
    }
    bmember b = {.ms = 80};
    T_CHECK(weft_group_spawn_blocking(g, bmember_fn, &b) != NULL);
    /* Finished but never reported: released by group_free. */
    T_CHECK(weft_group_spawn(g, ret_arg, (void *)1) != NULL);
    T_CHECK(weft_group_spawn_blocking(g, ret_arg, (void *)2) != NULL);
    for (int i = 0; i < 4; i++)
        T_CHECK(blk_co_wait_flag(&m[i].started, 5000));
    T_CHECK(blk_co_wait_flag(&b.started, 5000));
    weft_sleep(5 * WEFT_MS);
    int64_t t0 = weft_now();
    T_CHECK_EQ(weft_group_free(g), 0);
    int64_t el = weft_now() - t0;
    for (int i = 0; i < 4; i++) {
        T_CHECK_EQ(m[i].wait_rc, -ECANCELED);
        T_CHECK_EQ(atomic_load(&m[i].cleaned), 1);  /* before free returned */
    }
    T_CHECK_EQ(atomic_load(&b.finished), 1);
    T_CHECK(el >= 20 * WEFT_MS);
    return NULL;
}

static void test_free_cancels_and_waits(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(free_main, NULL, NULL), 0);
}

/* A cancelled caller of group_free still cancels, waits and frees. */
static _Atomic int free_cancelled_done;
static member fc_m[3];

static void *cancelled_freer(void *arg)
{
    (void)arg;
    weft_group *g = weft_group_new();
    for (int i = 0; i < 3; i++)
        weft_group_spawn(g, member_fn, &fc_m[i]);
    for (int i = 0; i < 3; i++)
        blk_co_wait_flag(&fc_m[i].started, 5000);
    weft_cancel(weft_self());
    int rc = weft_group_free(g);
    T_CHECK_EQ(rc, 0);
    int cleaned = 0;
    for (int i = 0; i < 3; i++)
        cleaned += atomic_load(&fc_m[i].cleaned);
    T_CHECK_EQ(cleaned, 3);
    atomic_store(&free_cancelled_done, 1);
    return NULL;
}

static void *free_cancelled_main(void *arg)
{
    (void)arg;
    atomic_store(&free_cancelled_done, 0);
    memset(fc_m, 0, sizeof fc_m);
    for (int i = 0; i < 3; i++)
        fc_m[i].cleanup_ms = 10;
    weft_task *t = weft_spawn(cancelled_freer, NULL);
    weft_join(t, NULL);
    T_CHECK_EQ(atomic_load(&free_cancelled_done), 1);
    return NULL;
}

static void test_free_by_cancelled_caller(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(free_cancelled_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* The owner cancelled while it waits in next / wait                   */
/* ------------------------------------------------------------------ */

typedef struct owner_rec {
    bool use_wait;           /* group_wait, else group_next */
    bool cancel_first;       /* the owner is cancelled before it calls */
    member m[3];
    bmember b;
    int rc;
    int cleaned_at_return;
    int blocking_finished_at_return;
    int free_rc;
    _Atomic int all_started;
} owner_rec;

static void *owner(void *arg)
{
    owner_rec *o = arg;
    weft_group *g = weft_group_new();
    for (int i = 0; i < 3; i++)
        weft_group_spawn(g, member_fn, &o->m[i]);
    weft_group_spawn_blocking(g, bmember_fn, &o->b);
    for (int i = 0; i < 3; i++)
        blk_co_wait_flag(&o->m[i].started, 5000);
    blk_co_wait_flag(&o->b.started, 5000);
    atomic_store(&o->all_started, 1);
    if (o->cancel_first)
        weft_cancel(weft_self());
    if (o->use_wait)
        o->rc = weft_group_wait(g);
    else
        o->rc = weft_group_next(g, NULL, WEFT_FOREVER);
    for (int i = 0; i < 3; i++)
        o->cleaned_at_return += atomic_load(&o->m[i].cleaned);
    o->blocking_finished_at_return = atomic_load(&o->b.finished);
    /* The finished members stay for group_free. */
    o->free_rc = weft_group_free(g);
    return NULL;
}

static void *owner_main(void *arg)
{
    owner_rec *o = arg;
    for (int i = 0; i < 3; i++)
        o->m[i].cleanup_ms = 15;
    o->b.ms = 80;
    weft_task *t = weft_spawn(owner, o);
    T_CHECK(blk_co_wait_flag(&o->all_started, 5000));
    if (!o->cancel_first) {
        weft_sleep(10 * WEFT_MS);  /* in next / wait by now */
        T_CHECK_EQ(weft_cancel(t), 0);
    }
    weft_join(t, NULL);
    T_CHECK_EQ(o->rc, -ECANCELED);
    T_CHECK_EQ(o->cleaned_at_return, 3);
    T_CHECK_EQ(o->blocking_finished_at_return, 1);
    T_CHECK_EQ(o->free_rc, 0);
    for (int i = 0; i < 3; i++)
        T_CHECK_EQ(o->m[i].wait_rc, -ECANCELED);
    return NULL;
}

static void test_owner_cancelled_in_next(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    owner_rec o;
    memset(&o, 0, sizeof o);
    assert_int_equal(t_run(owner_main, &o, NULL), 0);
}

static void test_owner_cancelled_in_wait(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    owner_rec o;
    memset(&o, 0, sizeof o);
    o.use_wait = true;
    assert_int_equal(t_run(owner_main, &o, NULL), 0);
}

static void test_owner_cancelled_before_next(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    owner_rec o;
    memset(&o, 0, sizeof o);
    o.cancel_first = true;
    assert_int_equal(t_run(owner_main, &o, NULL), 0);
}

static void test_owner_cancelled_before_wait(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    owner_rec o;
    memset(&o, 0, sizeof o);
    o.cancel_first = true;
    o.use_wait = true;
    assert_int_equal(t_run(owner_main, &o, NULL), 0);
}

/* The owner is cancelled just after a member that was itself cancelled
 * finished and woke it (one worker, so the owner cannot run in between):
 * group_wait must still cancel the other members and wait for them before
 * it returns -ECANCELED. */
typedef struct race_rec {
    member a;                /* waits until cancelled, then cleans up */
    bmember b;               /* blocking, gated */
    weft_task *bt;
    _Atomic int in_wait;
    int rc;
    int a_cleaned_at_return;
    int a_runs_at_return;
} race_rec;

static void *race_owner(void *arg)
{
    race_rec *r = arg;
    weft_group *g = weft_group_new();
    weft_group_spawn(g, member_fn, &r->a);
    r->bt = weft_group_spawn_blocking(g, bmember_fn, &r->b);
    blk_co_wait_flag(&r->a.started, 5000);
    blk_co_wait_flag(&r->b.started, 5000);
    atomic_store(&r->in_wait, 1);
    r->rc = weft_group_wait(g);
    r->a_cleaned_at_return = atomic_load(&r->a.cleaned);
    weft_group_free(g);
    return NULL;
}

static void *wait_race_main(void *arg)
{
    (void)arg;
    race_rec r;
    memset(&r, 0, sizeof r);
    r.a.cleanup_ms = 20;
    r.b.use_gate = true;
    weft_task *o = weft_spawn(race_owner, &r);
    T_CHECK(blk_co_wait_flag(&r.in_wait, 5000));
    weft_sleep(10 * WEFT_MS);  /* the owner is parked in group_wait */
    /* b is cancelled while it runs (its code will be -ECANCELED), then let
     * go; without a suspension point here the owner, woken by b's finish,
     * cannot run before it is cancelled too. */
    T_CHECK_EQ(weft_cancel(r.bt), 0);
    atomic_store(&r.b.gate, 1);
    while (!atomic_load(&r.b.finished))
        ;
    t_spin_ms(10);  /* b's pool thread reports it done and wakes the owner */
    T_CHECK_EQ(weft_cancel(o), 0);
    weft_join(o, NULL);
    T_CHECK_EQ(r.rc, -ECANCELED);
    if (!r.a_cleaned_at_return)
        fprintf(stderr, "group_wait returned %d to a cancelled owner while another member "
                        "still ran (not cancelled, not awaited)\n", r.rc);
    T_CHECK_EQ(r.a_cleaned_at_return, 1);
    return NULL;
}

static void test_wait_owner_cancelled_after_member_report(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run_workers(1, wait_race_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Plain threads and several consumers                                 */
/* ------------------------------------------------------------------ */

static void *plain_spawns(void *arg)
{
    weft_group *g = arg;
    static int ok;
    ok = 0;
    for (intptr_t i = 0; i < 10; i++)
        ok += weft_group_spawn(g, nap_ret, (void *)(i + 1)) != NULL;
    for (intptr_t i = 0; i < 5; i++)
        ok += weft_group_spawn_blocking(g, os_nap_ret, (void *)(100 + i)) != NULL;
    errno = 0;
    ok += weft_group_spawn(NULL, nap_ret, NULL) == NULL && errno == EINVAL;
    return &ok;
}

static void *plain_spawn_main(void *arg)
{
    (void)arg;
    weft_group *g = weft_group_new();
    int *ok = t_in_thread(plain_spawns, g);
    T_CHECK_EQ(*ok, 16);
    T_CHECK_EQ(weft_group_size(g), 15);
    long sum = 0;
    int rc, n = 0;
    void *res;
    while ((rc = weft_group_next(g, &res, WEFT_FOREVER)) != -ENOENT) {
        T_CHECK_EQ(rc, 0);
        sum += (long)(intptr_t)res;
        n++;
    }
    T_CHECK_EQ(n, 15);
    T_CHECK_EQ(sum, 55 + 510);
    T_CHECK_EQ(weft_group_free(g), 0);
    return NULL;
}

static void test_spawn_from_plain_thread(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(plain_spawn_main, NULL, NULL), 0);
}

#define CONS_N 200
static _Atomic int cons_seen[CONS_N];

static void *cons_member(void *arg)
{
    intptr_t i = (intptr_t)arg;
    weft_sleep((i % 7) * WEFT_MS);
    return arg;
}

static void *consumer(void *arg)
{
    weft_group *g = arg;
    intptr_t n = 0;
    void *res;
    int rc;
    while ((rc = weft_group_next(g, &res, WEFT_FOREVER)) != -ENOENT) {
        T_CHECK_EQ(rc, 0);
        intptr_t i = (intptr_t)res;
        T_CHECK(i >= 0 && i < CONS_N);
        if (i >= 0 && i < CONS_N)
            atomic_fetch_add(&cons_seen[i], 1);
        n++;
    }
    return (void *)n;
}

static void *consumers_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < CONS_N; i++)
        atomic_store(&cons_seen[i], 0);
    weft_group *g = weft_group_new();
    for (intptr_t i = 0; i < CONS_N; i++)
        T_CHECK((i % 4 ? weft_group_spawn(g, cons_member, (void *)i)
                       : weft_group_spawn_blocking(g, ret_arg, (void *)i)) != NULL);
    weft_task *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = weft_spawn(consumer, g);
    void *n[3];
    T_CHECK_EQ(weft_gather(c, 3, n), 0);
    T_CHECK_EQ((intptr_t)n[0] + (intptr_t)n[1] + (intptr_t)n[2], CONS_N);
    for (int i = 0; i < CONS_N; i++)
        T_CHECK_EQ(atomic_load(&cons_seen[i]), 1);
    T_CHECK_EQ(weft_group_free(g), 0);
    return NULL;
}

static void test_several_consumers(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(consumers_main, NULL, NULL), 0);
}

/* Shutdown while a detached owner waits in group_next: weft_run cancels the
 * owner (and the members); the owner's next cancels and awaits the members,
 * returns -ECANCELED, and the owner frees the group - weft_run returns after
 * all of it. */
static member sd_m[2];
static bmember sd_b;
static int sd_next_rc, sd_free_rc, sd_cleaned_at_return, sd_bfinished_at_return;
static _Atomic int sd_owner_done;

static void *sd_owner(void *arg)
{
    (void)arg;
    weft_group *g = weft_group_new();
    for (int i = 0; i < 2; i++)
        weft_group_spawn(g, member_fn, &sd_m[i]);
    weft_group_spawn_blocking(g, bmember_fn, &sd_b);
    /* Shutdown cancels the members and the owner in one walk: next may
     * first report a member that finished (its code), so an owner that
     * sees itself cancelled calls next once more, which drains. */
    int rc;
    while ((rc = weft_group_next(g, NULL, WEFT_FOREVER)) != -ENOENT) {
        if (weft_cancelled()) {
            rc = weft_group_next(g, NULL, WEFT_FOREVER);
            break;
        }
    }
    sd_next_rc = rc;
    sd_cleaned_at_return = atomic_load(&sd_m[0].cleaned) + atomic_load(&sd_m[1].cleaned);
    sd_bfinished_at_return = atomic_load(&sd_b.finished);
    sd_free_rc = weft_group_free(g);
    atomic_store(&sd_owner_done, 1);
    return NULL;
}

static void *shutdown_main(void *arg)
{
    (void)arg;
    memset(sd_m, 0, sizeof sd_m);
    memset(&sd_b, 0, sizeof sd_b);
    sd_m[0].cleanup_ms = sd_m[1].cleanup_ms = 10;
    sd_b.ms = 100;
    sd_next_rc = sd_free_rc = 1;
    sd_cleaned_at_return = sd_bfinished_at_return = -1;
    atomic_store(&sd_owner_done, 0);
    weft_detach(weft_spawn(sd_owner, NULL));
    blk_co_wait_flag(&sd_m[0].started, 5000);
    blk_co_wait_flag(&sd_m[1].started, 5000);
    blk_co_wait_flag(&sd_b.started, 5000);
    return NULL;
}

static void test_shutdown_with_group(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(shutdown_main, NULL, NULL), 0);
    assert_int_equal(atomic_load(&sd_owner_done), 1);
    assert_int_equal(sd_next_rc, -ECANCELED);
    assert_int_equal(sd_cleaned_at_return, 2);
    assert_int_equal(sd_bfinished_at_return, 1);
    assert_int_equal(sd_free_rc, 0);
    assert_int_equal(sd_m[0].wait_rc, -ECANCELED);
    assert_int_equal(sd_m[1].wait_rc, -ECANCELED);
}

/* ------------------------------------------------------------------ */
/* Blocking members waiting in line when the group is cancelled / freed */
/* (one pool thread, occupied)                                          */
/* ------------------------------------------------------------------ */

static void *cancel_queued_main(void *arg)
{
    bool use_free = *(bool *)arg;
    bmember occ = {.use_gate = true};
    weft_task *o = weft_spawn_blocking(bmember_fn, &occ);
    T_CHECK(blk_co_wait_flag(&occ.started, 5000));
    weft_group *g = weft_group_new();
    bmember q[3];
    memset(q, 0, sizeof q);
    for (int i = 0; i < 3; i++) {
        q[i].ms = 1;
        T_CHECK(weft_group_spawn_blocking(g, bmember_fn, &q[i]) != NULL);
    }
    member m = {.value = 5};
    T_CHECK(weft_group_spawn(g, member_fn, &m) != NULL);
    T_CHECK(blk_co_wait_flag(&m.started, 5000));
    if (use_free) {
        T_CHECK_EQ(weft_group_free(g), 0);
    } else {
        weft_group_cancel(g);
        int rc, n = 0;
        while ((rc = weft_group_next(g, NULL, WEFT_FOREVER)) != -ENOENT) {
            T_CHECK_EQ(rc, -ECANCELED);
            n++;
        }
        T_CHECK_EQ(n, 4);
        T_CHECK_EQ(weft_group_free(g), 0);
    }
    /* Dropped at once: the occupant still runs. */
    T_CHECK_EQ(atomic_load(&occ.finished), 0);
    T_CHECK_EQ(atomic_load(&m.cleaned), 1);
    atomic_store(&occ.gate, 1);
    weft_join(o, NULL);
    weft_sleep(10 * WEFT_MS);
    for (int i = 0; i < 3; i++)
        T_CHECK_EQ(atomic_load(&q[i].runs), 0);
    return NULL;
}

static void test_cancel_queued_blocking_members(void **state)
{
    (void)state;
    BLK_BEGIN(20);
    bool use_free = false;
    weft_config c = cfg_threads(1);
    assert_int_equal(t_run_config(&c, cancel_queued_main, &use_free, NULL), 0);
}

static void test_free_queued_blocking_members(void **state)
{
    (void)state;
    BLK_BEGIN(20);
    bool use_free = true;
    weft_config c = cfg_threads(1);
    assert_int_equal(t_run_config(&c, cancel_queued_main, &use_free, NULL), 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    blk_no_stack_cache(argv);
    blk_warm_up();
    blk_filter_from_env();
    const struct CMUnitTest tests[] = {
        BLK_TEST(test_errors),
        BLK_TEST(test_outside_runtime),
        BLK_TEST(test_completion_order),
        BLK_TEST(test_completion_order_blocking),
        BLK_TEST(test_empty),
        BLK_TEST(test_codes_and_size),
        BLK_TEST(test_next_deadline),
        BLK_TEST(test_wait),
        BLK_TEST(test_cancel),
        BLK_TEST(test_cancel_from_plain_thread),
        BLK_TEST(test_free_cancels_and_waits),
        BLK_TEST(test_free_by_cancelled_caller),
        BLK_TEST(test_owner_cancelled_in_next),
        BLK_TEST(test_owner_cancelled_in_wait),
        BLK_TEST(test_owner_cancelled_before_next),
        BLK_TEST(test_owner_cancelled_before_wait),
        BLK_TEST(test_wait_owner_cancelled_after_member_report),
        BLK_TEST(test_spawn_from_plain_thread),
        BLK_TEST(test_several_consumers),
        BLK_TEST(test_shutdown_with_group),
        /* Last: a hang here is reported by the watchdog, which ends the
         * program (a deadlocked runtime cannot be recovered from). */
        BLK_TEST(test_cancel_queued_blocking_members),
        BLK_TEST(test_free_queued_blocking_members),
    };
    return cmocka_run_group_tests_name("group", tests, NULL, NULL);
}
