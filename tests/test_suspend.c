/*
 * test_suspend: the suspension-point contract, one table row per public call
 * marked SUSPENSION POINT in <weft.h>, <weft/sync.h> and <weft/io.h>.
 *
 *   - Outside a coroutine (a plain thread while a runtime runs, or no runtime
 *     at all) every such call returns -EPERM at once (a pointer call: NULL
 *     with errno EPERM).
 *   - A cancelled caller gets -ECANCELED at once (NULL / ECANCELED), sticky:
 *     also where the call could complete without waiting (buffered stream
 *     data, finished tasks, a free mutex, a set event, a permit, a queue
 *     with an item and room, a ready socket, ...).
 *
 * Each row has a setup that builds exactly such a "could complete at once"
 * state, the call, and a teardown that releases everything and checks that
 * a failed call moved nothing (the mutex is still free, the item still in
 * the queue, the buffered line still there, nothing was sent, ...).  Every
 * row runs in four modes:
 *
 *   control     an uncancelled coroutine makes the call: it must succeed
 *               (proves the setup really is a "could complete" state, so
 *               that the other modes test precedence, not a blocked call);
 *               skipped for the two calls that cannot complete at once
 *               (weft_cond_wait, weft_serve_forever);
 *   cancelled   a coroutine does the setup, cancels itself, makes the call:
 *               -ECANCELED within AT_ONCE_NS, and the cancellation still
 *               sticks afterwards (weft_yield says -ECANCELED).  The two
 *               closing calls, weft_group_free and weft_server_close, are
 *               the documented exception (weft.h): cancellation does not
 *               skip them, they close everything (their members / handlers
 *               have ended when they return) and return 0;
 *   thread      a coroutine does the setup and hands the objects to a plain
 *               pthread, which makes the call: -EPERM within AT_ONCE_NS;
 *   no runtime  the setup runs in one weft_run, the call on the main thread
 *               after it returned (no runtime at all), the teardown in a
 *               second weft_run: -EPERM; skipped for rows whose objects do
 *               not outlive a runtime (tasks, groups, servers).
 *
 * Each row's run is leak-checked on its own (descriptors exactly, mappings
 * with tests/leak.h's slack, and no task left unfinished after the
 * teardown); a failing row is reported by name and the others still run.
 *
 * test_header_scan keeps the table complete: it parses the public headers
 * (see "Header scan" below for the rules) and fails when a header declares a
 * call the table does not classify, marks a call SUSPENSION POINT that the
 * table has no row for, or when the table names a call the headers do not
 * declare (or no longer mark).
 *
 *   WEFT_TEST_FILTER='test_cancelled*' build/tests/test_suspend
 *   WEFT_SUSPEND_ROW=weft_stream_read build/tests/test_suspend   (one row)
 *   WEFT_SUSPEND_VERBOSE=1 ...   (every row's outcome, the scan's verdicts)
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>

#include "io/io_test.h"

#ifndef WEFT_INCLUDE_DIR
#error "tests/CMakeLists.txt defines WEFT_INCLUDE_DIR (the public headers' directory)"
#endif

/* "At once": a correctness bound (the call did not wait for anything),
 * never a performance assertion; sanitizers get more room. */
#define AT_ONCE_NS ((int64_t)200 * WEFT_MS * T_SLACK)

/* A deadline far enough away never to matter. */
static inline int64_t later(void) { return weft_now() + 10 * WEFT_SEC; }

enum { M_CONTROL, M_CANCELLED, M_THREAD, M_NORT, M_COUNT };
static const char *const mode_name[M_COUNT] = {
    "control (uncancelled coroutine)",
    "cancelled coroutine",
    "plain thread, runtime running",
    "no runtime",
};

/* ------------------------------------------------------------------ */
/* Per-row context                                                     */
/* ------------------------------------------------------------------ */

typedef struct sp_ctx sp_ctx;

enum {
    F_NO_CONTROL = 1,    /* cannot complete at once even uncancelled */
    F_NEEDS_RUNTIME = 2, /* its objects do not outlive a runtime */
    F_CLOSING = 4,       /* closing call: not skipped by cancellation, 0 (weft.h) */
};

typedef struct sp_row {
    const char *name;             /* exactly the function's name */
    int (*setup)(sp_ctx *c);      /* uncancelled coroutine; 0 or -errno */
    long (*call)(sp_ctx *c);      /* the call; pointer calls: NULL -> -errno */
    void (*teardown)(sp_ctx *c);  /* uncancelled coroutine; releases all */
    unsigned flags;
} sp_row;

struct sp_ctx {
    const sp_row *row;
    int mode;
    /* objects the setups make (each row uses a few) */
    weft_task *t[2];
    weft_group *g;
    weft_mutex mu;
    weft_sem sem;
    weft_event ev;
    weft_cond cond;
    weft_rwlock rw;
    weft_waitgroup wg;
    weft_queue *q;
    int fd[2];            /* -1 when unused */
    weft_stream *s;
    weft_server *srv;
    char port[16];
    char dir[64], path[128];
    struct sockaddr_in to;
    _Atomic int started, finished;  /* group members, handlers, to_thread */
    int finished_at_return;
    void *res[2];
    void *data;
    weft_stream *out_stream;
    char buf[128];
    /* outcome */
    bool setup_ok, called;
    bool cancelled_after;  /* cancelled mode: weft_cancelled() after the call */
    int next_sp;           /* cancelled mode: weft_yield() after the call */
    long rc;
    int64_t took;
    char why[1024];       /* "" when the row passed */
};

static void sp_fail(sp_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sp_fail(sp_ctx *c, const char *fmt, ...)
{
    size_t len = strlen(c->why);
    if (len + 8 >= sizeof c->why)
        return;
    if (len) {
        strcpy(c->why + len, "; ");
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why + len, sizeof c->why - len, fmt, ap);
    va_end(ap);
}

/* Checks on coroutines and plain threads (never cmocka's asserts there:
 * they longjmp): a failure is recorded against the row. */
#define SP_CHECK(c, cond)                                                                \
    ((cond) ? true : (sp_fail((c), "%s (line %d)", #cond, __LINE__), false))
#define SP_CHECK_EQ(c, a, b)                                                             \
    do {                                                                                 \
        long long sp_a_ = (long long)(a), sp_b_ = (long long)(b);                        \
        if (sp_a_ != sp_b_)                                                              \
            sp_fail((c), "%s == %s: %lld vs %lld (line %d)", #a, #b, sp_a_, sp_b_,       \
                    __LINE__);                                                           \
    } while (0)

static const char *rc_name(long rc)
{
    static __thread char ring[4][64];
    static __thread int next;
    char *b = ring[next++ & 3];
    if (rc >= 0) {
        snprintf(b, sizeof ring[0], "%ld (success)", rc);
        return b;
    }
    snprintf(b, sizeof ring[0], "%ld (%s)", rc, strerror((int)-rc));
    return b;
}

/* Did the call release what it was given (weft_join, weft_gather,
 * weft_wait_for release their handles, weft_group_free / weft_server_close
 * free their object, on every code but the argument errors)? */
static bool released(const sp_ctx *c)
{
    return c->called && c->rc != -EPERM && c->rc != -EINVAL && c->rc != -EDEADLK;
}

static void close_fds(sp_ctx *c)
{
    for (int i = 0; i < 2; i++)
        if (c->fd[i] >= 0) {
            weft_close(c->fd[i]);
            c->fd[i] = -1;
        }
}

/* Nothing is waiting on fd (a send that must not have happened). */
static bool nothing_to_read(int fd)
{
    char b[8];
    ssize_t r = recv(fd, b, sizeof b, MSG_DONTWAIT);
    return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static int tmpdir_path(sp_ctx *c, const char *leaf)
{
    snprintf(c->dir, sizeof c->dir, "/tmp/weft-suspend-XXXXXX");
    if (!mkdtemp(c->dir)) {
        c->dir[0] = 0;
        return -io_errno();
    }
    snprintf(c->path, sizeof c->path, "%s/%s", c->dir, leaf);
    return 0;
}

static void tmpdir_remove(sp_ctx *c)
{
    if (c->path[0])
        unlink(c->path);
    if (c->dir[0])
        rmdir(c->dir);
    c->path[0] = c->dir[0] = 0;
}

/* ------------------------------------------------------------------ */
/* Rows: tasks and composition (weft.h)                                */
/* ------------------------------------------------------------------ */

static void *ret_val(void *arg) { return arg; }

/* Coroutine: waits (bounded) until t has finished. */
static int await_done(weft_task *t)
{
    int64_t end = weft_now() + 5 * WEFT_SEC * T_SLACK;
    while (!weft_task_done(t) && weft_now() < end)
        weft_sleep(WEFT_MS);
    return weft_task_done(t) ? 0 : -ETIMEDOUT;
}

static int finished_task(weft_task **out, intptr_t v)
{
    *out = weft_spawn(ret_val, (void *)v);
    if (!*out)
        return -io_errno();
    return await_done(*out);
}

static int su_one_task(sp_ctx *c) { return finished_task(&c->t[0], 1); }

static int su_two_tasks(sp_ctx *c)
{
    int rc = finished_task(&c->t[0], 1);
    return rc ? rc : finished_task(&c->t[1], 2);
}

static long call_join(sp_ctx *c) { return weft_join(c->t[0], &c->res[0]); }
static long call_wait_for(sp_ctx *c) { return weft_wait_for(c->t[0], later(), &c->res[0]); }
static long call_gather(sp_ctx *c) { return weft_gather(c->t, 2, c->res); }

static void td_tasks(sp_ctx *c)
{
    int n = c->t[1] ? 2 : 1;
    if (c->mode == M_CONTROL && c->called && c->rc == 0)
        for (int i = 0; i < n; i++)
            SP_CHECK_EQ(c, (intptr_t)c->res[i], i + 1);
    if (released(c))
        return;  /* the call released the handles, whatever its code */
    for (int i = 0; i < n; i++)
        if (c->t[i])
            SP_CHECK_EQ(c, weft_join(c->t[i], NULL), 0);
}

static long call_yield(sp_ctx *c) { (void)c; return weft_yield(); }
/* ns <= 0 and a past deadline: the "complete at once" forms. */
static long call_sleep(sp_ctx *c) { (void)c; return weft_sleep(0); }
static long call_sleep_until(sp_ctx *c) { (void)c; return weft_sleep_until(weft_now() - WEFT_MS); }

/* Groups: one member that has finished (next / wait complete at once). */
static int su_group_done(sp_ctx *c)
{
    c->g = weft_group_new();
    if (!c->g)
        return -ENOMEM;
    weft_task *m = weft_group_spawn(c->g, ret_val, (void *)3);
    if (!m)
        return -io_errno();
    return await_done(m);  /* the group holds the handle until next / free */
}

static long call_group_next(sp_ctx *c) { return weft_group_next(c->g, &c->res[0], WEFT_FOREVER); }
static long call_group_wait(sp_ctx *c) { return weft_group_wait(c->g); }

static void td_group(sp_ctx *c)
{
    if (c->mode == M_CONTROL && c->called && c->row->call == call_group_next)
        SP_CHECK_EQ(c, (intptr_t)c->res[0], 3);
    if (c->g)
        SP_CHECK_EQ(c, weft_group_free(c->g), 0);
}

/* group_free: a finished member and a running one, so that the free has to
 * cancel and await (closing is synchronous also for a cancelled caller). */
static void *long_sleeper(void *arg)
{
    sp_ctx *c = arg;
    atomic_fetch_add(&c->started, 1);
    weft_sleep(3600 * WEFT_SEC);
    atomic_fetch_add(&c->finished, 1);
    return NULL;
}

static int su_group_free(sp_ctx *c)
{
    int rc = su_group_done(c);
    if (rc)
        return rc;
    if (!weft_group_spawn(c->g, long_sleeper, c))
        return -io_errno();
    return io_await_int(&c->started, 1, 5000) ? 0 : -ETIMEDOUT;
}

static long call_group_free(sp_ctx *c)
{
    int rc = weft_group_free(c->g);
    c->finished_at_return = atomic_load(&c->finished);
    return rc;
}

static void td_group_free(sp_ctx *c)
{
    if (released(c)) {
        if (c->finished_at_return != 1)
            sp_fail(c, "weft_group_free returned %s before its running member had ended",
                    rc_name(c->rc));
        return;
    }
    if (c->g)
        SP_CHECK_EQ(c, weft_group_free(c->g), 0);
    SP_CHECK_EQ(c, atomic_load(&c->finished), 1);
}

static void *tt_fn(void *arg)
{
    sp_ctx *c = arg;
    atomic_fetch_add(&c->started, 1);
    return (void *)5;
}

static long call_to_thread(sp_ctx *c) { return weft_to_thread(tt_fn, c, &c->res[0]); }

static void td_to_thread(sp_ctx *c)
{
    if (c->mode == M_CONTROL) {
        SP_CHECK_EQ(c, (intptr_t)c->res[0], 5);
        SP_CHECK_EQ(c, atomic_load(&c->started), 1);
        return;
    }
    weft_sleep(20 * WEFT_MS);  /* a fn started anyway would have run by now */
    if (atomic_load(&c->started) != 0)
        sp_fail(c, "fn ran although weft_to_thread returned %s", rc_name(c->rc));
}

/* ------------------------------------------------------------------ */
/* Rows: sync.h                                                        */
/* ------------------------------------------------------------------ */

static int su_mutex(sp_ctx *c) { return weft_mutex_init(&c->mu); }  /* free */
static long call_mutex_lock(sp_ctx *c) { return weft_mutex_lock(&c->mu); }
static long call_mutex_lock_until(sp_ctx *c) { return weft_mutex_lock_until(&c->mu, later()); }

static void td_mutex(sp_ctx *c)
{
    if (c->called && c->rc == 0)
        SP_CHECK_EQ(c, weft_mutex_unlock(&c->mu), 0);
    else if (weft_mutex_is_locked(&c->mu))
        sp_fail(c, "the mutex is locked after %s (nothing may be acquired)", rc_name(c->rc));
    weft_mutex_destroy(&c->mu);
}

static int su_sem(sp_ctx *c) { return weft_sem_init(&c->sem, 1); }  /* one permit */
static long call_sem_acquire(sp_ctx *c) { return weft_sem_acquire(&c->sem); }
static long call_sem_acquire_until(sp_ctx *c) { return weft_sem_acquire_until(&c->sem, later()); }

static void td_sem(sp_ctx *c)
{
    SP_CHECK_EQ(c, weft_sem_value(&c->sem), c->called && c->rc == 0 ? 0 : 1);
    weft_sem_destroy(&c->sem);
}

static int su_event(sp_ctx *c)
{
    int rc = weft_event_init(&c->ev);
    return rc ? rc : weft_event_set(&c->ev);  /* already set */
}

static long call_event_wait(sp_ctx *c) { return weft_event_wait(&c->ev, WEFT_FOREVER); }

static void td_event(sp_ctx *c)
{
    SP_CHECK(c, weft_event_is_set(&c->ev));
    weft_event_destroy(&c->ev);
}

/* cond_wait: the caller holds the mutex (it never completes at once). */
static int su_cond(sp_ctx *c)
{
    int rc = weft_mutex_init(&c->mu);
    if (!rc)
        rc = weft_cond_init(&c->cond);
    if (!rc)
        rc = weft_mutex_lock(&c->mu);
    return rc;
}

static long call_cond_wait(sp_ctx *c) { return weft_cond_wait(&c->cond, &c->mu, WEFT_FOREVER); }

static void td_cond(sp_ctx *c)
{
    /* "m is held again on return, whatever the code"; -EPERM: nothing
     * released. */
    if (!weft_mutex_is_locked(&c->mu))
        sp_fail(c, "the mutex is not held after %s", rc_name(c->rc));
    else
        SP_CHECK_EQ(c, weft_mutex_unlock(&c->mu), 0);
    weft_cond_destroy(&c->cond);
    weft_mutex_destroy(&c->mu);
}

static int su_rwlock(sp_ctx *c) { return weft_rwlock_init(&c->rw); }  /* free */
static long call_rdlock(sp_ctx *c) { return weft_rwlock_rdlock(&c->rw); }
static long call_wrlock(sp_ctx *c) { return weft_rwlock_wrlock(&c->rw); }
static long call_rdlock_until(sp_ctx *c) { return weft_rwlock_rdlock_until(&c->rw, later()); }
static long call_wrlock_until(sp_ctx *c) { return weft_rwlock_wrlock_until(&c->rw, later()); }

static void td_rwlock(sp_ctx *c)
{
    if (c->called && c->rc == 0) {
        bool rd = c->row->call == call_rdlock || c->row->call == call_rdlock_until;
        SP_CHECK_EQ(c, rd ? weft_rwlock_rdunlock(&c->rw) : weft_rwlock_wrunlock(&c->rw), 0);
    } else if (weft_rwlock_trywrlock(&c->rw) != 0) {
        sp_fail(c, "the rwlock is held after %s (nothing may be acquired)", rc_name(c->rc));
    } else {
        SP_CHECK_EQ(c, weft_rwlock_wrunlock(&c->rw), 0);
    }
    weft_rwlock_destroy(&c->rw);
}

static int su_waitgroup(sp_ctx *c) { return weft_waitgroup_init(&c->wg); }  /* counter 0 */
static long call_waitgroup_wait(sp_ctx *c) { return weft_waitgroup_wait(&c->wg, WEFT_FOREVER); }

static void td_waitgroup(sp_ctx *c)
{
    SP_CHECK_EQ(c, weft_waitgroup_count(&c->wg), 0);
    weft_waitgroup_destroy(&c->wg);
}

/* Queues: one item in, room for more. */
static int su_queue_kind(sp_ctx *c, int kind)
{
    c->q = weft_queue_new(kind, 4);
    if (!c->q)
        return -io_errno();
    return weft_queue_try_put(c->q, (void *)1);
}

static int su_queue(sp_ctx *c) { return su_queue_kind(c, WEFT_QUEUE_FIFO); }
static int su_queue_prio(sp_ctx *c) { return su_queue_kind(c, WEFT_QUEUE_PRIORITY); }

/* join: nothing unfinished. */
static int su_queue_empty(sp_ctx *c)
{
    c->q = weft_queue_new(WEFT_QUEUE_FIFO, 4);
    return c->q ? 0 : -io_errno();
}

static long call_queue_put(sp_ctx *c) { return weft_queue_put(c->q, (void *)2, WEFT_FOREVER); }
static long call_queue_put_prio(sp_ctx *c)
{
    return weft_queue_put_prio(c->q, (void *)2, 5, WEFT_FOREVER);
}
static long call_queue_get(sp_ctx *c) { return weft_queue_get(c->q, &c->res[0], WEFT_FOREVER); }
static long call_queue_join(sp_ctx *c) { return weft_queue_join(c->q); }
static long call_queue_join_until(sp_ctx *c) { return weft_queue_join_until(c->q, later()); }

static void td_queue(sp_ctx *c)
{
    if (!c->q)
        return;
    size_t want = 1;
    if (c->row->call == call_queue_join || c->row->call == call_queue_join_until)
        want = 0;
    else if (c->called && c->rc == 0)
        want = c->row->call == call_queue_get ? 0 : 2;
    if (c->called && c->rc == 0 && c->row->call == call_queue_get)
        SP_CHECK_EQ(c, (intptr_t)c->res[0], 1);
    if (weft_queue_size(c->q) != want)
        sp_fail(c, "the queue holds %zu items after %s, want %zu (nothing may move)",
                weft_queue_size(c->q), rc_name(c->rc), want);
    weft_queue_free(c->q);
    c->q = NULL;
}

/* ------------------------------------------------------------------ */
/* Rows: io.h, descriptors                                             */
/* ------------------------------------------------------------------ */

static int pair(sp_ctx *c)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        return -io_errno();
    c->fd[0] = sv[0];
    c->fd[1] = sv[1];
    return 0;
}

/* fd[0] readable: "abc" waits in it. */
static int su_readable(sp_ctx *c)
{
    int rc = pair(c);
    if (rc)
        return rc;
    return send(c->fd[1], "abc", 3, MSG_DONTWAIT | MSG_NOSIGNAL) == 3 ? 0 : -EIO;
}

static long call_wait_fd(sp_ctx *c) { return weft_wait_fd(c->fd[0], WEFT_READABLE, WEFT_FOREVER); }
static long call_read(sp_ctx *c) { return weft_read(c->fd[0], c->buf, sizeof c->buf, later()); }

static void td_readable(sp_ctx *c)
{
    if (c->mode == M_CONTROL && c->row->call == call_wait_fd)
        SP_CHECK(c, c->rc & WEFT_READABLE);
    if (c->row->call == call_read && c->called && c->rc >= 0) {
        if (c->mode == M_CONTROL)
            SP_CHECK(c, c->rc == 3 && memcmp(c->buf, "abc", 3) == 0);
    } else {
        char b[8];
        ssize_t r = recv(c->fd[0], b, sizeof b, MSG_DONTWAIT);
        if (r != 3)
            sp_fail(c, "the data was consumed by a call that returned %s", rc_name(c->rc));
    }
    close_fds(c);
}

static int su_writable(sp_ctx *c) { return pair(c); }
static long call_write(sp_ctx *c) { return weft_write(c->fd[0], "abc", 3, later()); }

static void td_writable(sp_ctx *c)
{
    if (c->called && c->rc >= 0)
        SP_CHECK_EQ(c, c->rc, 3);
    else if (!nothing_to_read(c->fd[1]))
        sp_fail(c, "bytes were written by a call that returned %s", rc_name(c->rc));
    close_fds(c);
}

/* A listener on a loopback port (its number in c->port). */
static int listener(sp_ctx *c)
{
    int port;
    c->fd[0] = io_listen(&port);
    if (c->fd[0] < 0)
        return c->fd[0];
    io_port_str(port, c->port);
    return 0;
}

/* accept: a connection pending in the listener's queue. */
static int su_accept(sp_ctx *c)
{
    int rc = listener(c);
    if (rc)
        return rc;
    c->fd[1] = weft_tcp_connect("127.0.0.1", c->port, later());
    return c->fd[1] < 0 ? c->fd[1] : 0;
}

static long call_accept(sp_ctx *c) { return weft_accept(c->fd[0], later()); }

static void td_accept(sp_ctx *c)
{
    if (c->called && c->rc >= 0) {
        weft_close((int)c->rc);
    } else if (c->fd[0] >= 0) {
        int a = weft_accept(c->fd[0], weft_now() + 2 * WEFT_SEC * T_SLACK);
        if (a < 0)
            sp_fail(c, "the pending connection is gone after %s (accept: %s)",
                    rc_name(c->rc), rc_name(a));
        else
            weft_close(a);
    }
    close_fds(c);
}

static int su_listener(sp_ctx *c) { return listener(c); }
static long call_tcp_connect(sp_ctx *c) { return weft_tcp_connect("127.0.0.1", c->port, later()); }

static long call_open_connection(sp_ctx *c)
{
    io_errno_clear();
    c->out_stream = weft_open_connection("127.0.0.1", c->port, later());
    if (c->out_stream)
        return 1;
    int e = io_errno();
    return e ? -e : -EIO;
}

static void td_connect(sp_ctx *c)
{
    if (c->out_stream)
        weft_stream_close(c->out_stream);
    else if (c->called && c->rc >= 0 && c->row->call != call_open_connection)
        weft_close((int)c->rc);
    close_fds(c);
}

/* UDP: fd[0] and fd[1] bound to loopback ports; c->to is fd[1]'s address. */
static int udp_two(sp_ctx *c)
{
    c->fd[0] = weft_udp_bind("127.0.0.1", "0");
    if (c->fd[0] < 0)
        return c->fd[0];
    c->fd[1] = weft_udp_bind("127.0.0.1", "0");
    if (c->fd[1] < 0)
        return c->fd[1];
    int port = weft_local_port(c->fd[1]);
    if (port < 0)
        return port;
    io_port_str(port, c->port);
    c->to.sin_family = AF_INET;
    c->to.sin_port = htons((uint16_t)port);
    c->to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return 0;
}

static long call_udp_connect(sp_ctx *c) { return weft_udp_connect("127.0.0.1", c->port, later()); }

static void td_udp_connect(sp_ctx *c)
{
    if (c->called && c->rc >= 0)
        weft_close((int)c->rc);
    close_fds(c);
}

/* recvfrom: a datagram waits in fd[1]. */
static int su_recvfrom(sp_ctx *c)
{
    int rc = udp_two(c);
    if (rc)
        return rc;
    struct sockaddr_in me = c->to;
    ssize_t r = sendto(c->fd[0], "ping", 4, MSG_DONTWAIT, (struct sockaddr *)&me, sizeof me);
    return r == 4 ? 0 : -EIO;
}

static long call_recvfrom(sp_ctx *c)
{
    return weft_recvfrom(c->fd[1], c->buf, sizeof c->buf, NULL, NULL, later());
}

static void td_recvfrom(sp_ctx *c)
{
    if (c->called && c->rc >= 0) {
        if (c->mode == M_CONTROL)
            SP_CHECK(c, c->rc == 4 && memcmp(c->buf, "ping", 4) == 0);
    } else {
        char b[8];
        if (recv(c->fd[1], b, sizeof b, MSG_DONTWAIT) != 4)
            sp_fail(c, "the datagram was consumed by a call that returned %s", rc_name(c->rc));
    }
    close_fds(c);
}

static int su_sendto(sp_ctx *c) { return udp_two(c); }

static long call_sendto(sp_ctx *c)
{
    return weft_sendto(c->fd[0], "ping", 4, (struct sockaddr *)&c->to, sizeof c->to, later());
}

static void td_sendto(sp_ctx *c)
{
    if (c->called && c->rc >= 0)
        SP_CHECK_EQ(c, c->rc, 4);
    else if (!nothing_to_read(c->fd[1]))
        sp_fail(c, "a datagram was sent by a call that returned %s", rc_name(c->rc));
    close_fds(c);
}

static int su_unix(sp_ctx *c)
{
    int rc = tmpdir_path(c, "s");
    if (rc)
        return rc;
    c->fd[0] = weft_unix_listen(c->path, 0);
    return c->fd[0] < 0 ? c->fd[0] : 0;
}

static long call_unix_connect(sp_ctx *c) { return weft_unix_connect(c->path, later()); }

static void td_unix(sp_ctx *c)
{
    if (c->called && c->rc >= 0)
        weft_close((int)c->rc);
    close_fds(c);
    tmpdir_remove(c);
}

/* ------------------------------------------------------------------ */
/* Rows: io.h, streams                                                 */
/* ------------------------------------------------------------------ */

/* A stream on fd[0] of a socket pair (the stream owns it; fd[1] is the
 * peer). */
static int stream_pair(sp_ctx *c)
{
    int rc = pair(c);
    if (rc)
        return rc;
    c->s = weft_stream_new(c->fd[0]);
    if (!c->s)
        return -io_errno();
    c->fd[0] = -1;
    return 0;
}

static long call_readline(sp_ctx *c)
{
    return weft_stream_readline(c->s, c->buf, sizeof c->buf, WEFT_FOREVER);
}
static long call_stream_read(sp_ctx *c) { return weft_stream_read(c->s, c->buf, 7, WEFT_FOREVER); }
static long call_readexactly(sp_ctx *c)
{
    return weft_stream_readexactly(c->s, c->buf, 7, WEFT_FOREVER);
}

/* "first\nsecond\n" arrives in one piece; the row's own call (uncancelled)
 * takes "first\n", which leaves "second\n" buffered in the stream: the
 * next call can complete without reading the descriptor. */
static int su_stream_lines(sp_ctx *c)
{
    int rc = stream_pair(c);
    if (rc)
        return rc;
    if (send(c->fd[1], "first\nsecond\n", 13, MSG_DONTWAIT | MSG_NOSIGNAL) != 13)
        return -EIO;
    char b[64];
    ssize_t r;
    int64_t dl = weft_now() + 5 * WEFT_SEC;
    if (c->row->call == call_readline)
        r = weft_stream_readline(c->s, b, sizeof b, dl);
    else if (c->row->call == call_stream_read)
        r = weft_stream_read(c->s, b, 6, dl);
    else
        r = weft_stream_readexactly(c->s, b, 6, dl);
    if (r < 0)
        return (int)r;
    return r == 6 && memcmp(b, "first\n", 6) == 0 ? 0 : -EIO;
}

static void td_stream_lines(sp_ctx *c)
{
    if (c->called && c->rc >= 0) {
        if (c->mode == M_CONTROL)
            SP_CHECK(c, c->rc == 7 && memcmp(c->buf, "second\n", 7) == 0);
    } else if (c->s) {
        /* A failed call consumed nothing: the line is still buffered. */
        char b[64] = {0};
        int64_t dl = weft_now() + 2 * WEFT_SEC * T_SLACK;
        ssize_t r;
        if (c->row->call == call_readline)
            r = weft_stream_readline(c->s, b, sizeof b, dl);
        else if (c->row->call == call_stream_read)
            r = weft_stream_read(c->s, b, 7, dl);
        else
            r = weft_stream_readexactly(c->s, b, 7, dl);
        if (r != 7 || memcmp(b, "second\n", 7) != 0)
            sp_fail(c, "the buffered line is gone after %s (next call: %s)", rc_name(c->rc),
                    rc_name(r));
    }
    if (c->s)
        weft_stream_close(c->s);
    c->s = NULL;
    close_fds(c);
}

/* stream_write: the 64 KiB write buffer is full (a write with room only
 * buffers, from anyone), so one more byte must flush first: then it is a
 * suspension point.  Big socket buffers, so that the control's flush does
 * not wait for a reader. */
static char big[64 * 1024];

static int su_stream_full(sp_ctx *c)
{
    int rc = stream_pair(c);
    if (rc)
        return rc;
    int v = 1 << 20;
    setsockopt(weft_stream_fd(c->s), SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    setsockopt(c->fd[1], SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
    memset(big, 'w', sizeof big);
    return weft_stream_write(c->s, big, sizeof big);
}

static long call_stream_write(sp_ctx *c) { return weft_stream_write(c->s, "x", 1); }

/* drain: bytes buffered. */
static int su_stream_buffered(sp_ctx *c)
{
    int rc = stream_pair(c);
    return rc ? rc : weft_stream_write(c->s, "hello", 5);
}

static long call_drain(sp_ctx *c) { return weft_stream_drain(c->s, later()); }

static void td_stream_out(sp_ctx *c)
{
    if (c->called && c->rc >= 0) {
        if (c->mode == M_CONTROL && c->row->call == call_drain) {
            char b[8];
            SP_CHECK_EQ(c, recv(c->fd[1], b, sizeof b, MSG_DONTWAIT), 5);
        }
    } else if (c->fd[1] >= 0 && !nothing_to_read(c->fd[1])) {
        sp_fail(c, "bytes were sent by a call that returned %s", rc_name(c->rc));
    }
    if (c->s)
        weft_stream_close(c->s);
    c->s = NULL;
    close_fds(c);
}

/* ------------------------------------------------------------------ */
/* Rows: io.h, servers                                                 */
/* ------------------------------------------------------------------ */

static void sp_handler(weft_stream *s, void *ctx)
{
    sp_ctx *c = ctx;
    atomic_fetch_add(&c->started, 1);
    char b[64];
    weft_stream_readline(s, b, sizeof b, WEFT_FOREVER);
    atomic_fetch_add(&c->finished, 1);
}

static int su_server(sp_ctx *c)
{
    c->srv = weft_start_server("127.0.0.1", "0", sp_handler, c);
    if (!c->srv)
        return -io_errno();
    io_port_str(weft_server_port(c->srv), c->port);
    return 0;
}

static long call_serve_forever(sp_ctx *c) { return weft_serve_forever(c->srv); }

static void td_serve_forever(sp_ctx *c)
{
    if (c->srv)
        SP_CHECK_EQ(c, weft_server_close(c->srv), 0);
}

/* server_close: one connection, its handler waiting for a line, so that
 * the close has a handler to cancel and await. */
static int su_server_conn(sp_ctx *c)
{
    int rc = su_server(c);
    if (rc)
        return rc;
    c->fd[0] = weft_tcp_connect("127.0.0.1", c->port, later());
    if (c->fd[0] < 0)
        return c->fd[0];
    return io_await_int(&c->started, 1, 5000) ? 0 : -ETIMEDOUT;
}

static long call_server_close(sp_ctx *c)
{
    int rc = weft_server_close(c->srv);
    c->finished_at_return = atomic_load(&c->finished);
    return rc;
}

static void td_server_close(sp_ctx *c)
{
    if (released(c)) {
        if (c->finished_at_return != 1)
            sp_fail(c, "weft_server_close returned %s before its handler had ended",
                    rc_name(c->rc));
    } else if (c->srv) {
        SP_CHECK_EQ(c, weft_server_close(c->srv), 0);
        SP_CHECK_EQ(c, atomic_load(&c->finished), 1);
    }
    close_fds(c);
}

/* ------------------------------------------------------------------ */
/* Rows: io.h, files                                                   */
/* ------------------------------------------------------------------ */

static const char file_text[] = "0123456789";

/* A regular file holding file_text, open read-write in fd[0]. */
static int su_file(sp_ctx *c)
{
    int rc = tmpdir_path(c, "f");
    if (rc)
        return rc;
    c->fd[0] = open(c->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (c->fd[0] < 0)
        return -io_errno();
    return pwrite(c->fd[0], file_text, 10, 0) == 10 ? 0 : -EIO;
}

static long call_pread(sp_ctx *c) { return weft_pread(c->fd[0], c->buf, 4, 0); }
static long call_pwrite(sp_ctx *c) { return weft_pwrite(c->fd[0], "zzzz", 4, 0); }

static long call_file_read(sp_ctx *c)
{
    c->data = (void *)&file_text;  /* must stay untouched on an error */
    return weft_file_read(c->path, &c->data);
}

static long call_file_write(sp_ctx *c) { return weft_file_write(c->path, "new", 3, 0600); }

static void td_file(sp_ctx *c)
{
    bool ok = c->called && c->rc >= 0;
    if (c->row->call == call_file_read) {
        if (ok) {
            SP_CHECK_EQ(c, c->rc, 10);
            if (c->data != (void *)&file_text)
                free(c->data);
        } else if (c->data != (void *)&file_text) {
            sp_fail(c, "*data was changed by a call that returned %s", rc_name(c->rc));
        }
    }
    if (c->row->call == call_pread && ok && c->mode == M_CONTROL)
        SP_CHECK(c, c->rc == 4 && memcmp(c->buf, "0123", 4) == 0);
    if (!ok && (c->row->call == call_pwrite || c->row->call == call_file_write)) {
        char b[16] = {0};
        int fd = open(c->path, O_RDONLY | O_CLOEXEC);
        ssize_t r = fd >= 0 ? pread(fd, b, sizeof b, 0) : -1;
        if (fd >= 0)
            close(fd);
        if (r != 10 || memcmp(b, file_text, 10) != 0)
            sp_fail(c, "the file was changed by a call that returned %s", rc_name(c->rc));
    }
    close_fds(c);
    tmpdir_remove(c);
}

/* ------------------------------------------------------------------ */
/* The table                                                           */
/* ------------------------------------------------------------------ */

/* One row per public call marked SUSPENSION POINT (test_header_scan holds
 * this list to the headers). */
static const sp_row rows[] = {
    /* weft.h */
    {"weft_join", su_one_task, call_join, td_tasks, F_NEEDS_RUNTIME},
    {"weft_yield", NULL, call_yield, NULL, 0},
    {"weft_sleep", NULL, call_sleep, NULL, 0},
    {"weft_sleep_until", NULL, call_sleep_until, NULL, 0},
    {"weft_gather", su_two_tasks, call_gather, td_tasks, F_NEEDS_RUNTIME},
    {"weft_wait_for", su_one_task, call_wait_for, td_tasks, F_NEEDS_RUNTIME},
    {"weft_group_next", su_group_done, call_group_next, td_group, F_NEEDS_RUNTIME},
    {"weft_group_wait", su_group_done, call_group_wait, td_group, F_NEEDS_RUNTIME},
    {"weft_group_free", su_group_free, call_group_free, td_group_free,
     F_NEEDS_RUNTIME | F_CLOSING},
    {"weft_to_thread", NULL, call_to_thread, td_to_thread, 0},
    /* weft/sync.h */
    {"weft_mutex_lock", su_mutex, call_mutex_lock, td_mutex, 0},
    {"weft_mutex_lock_until", su_mutex, call_mutex_lock_until, td_mutex, 0},
    {"weft_sem_acquire", su_sem, call_sem_acquire, td_sem, 0},
    {"weft_sem_acquire_until", su_sem, call_sem_acquire_until, td_sem, 0},
    {"weft_event_wait", su_event, call_event_wait, td_event, 0},
    {"weft_cond_wait", su_cond, call_cond_wait, td_cond, F_NO_CONTROL},
    {"weft_rwlock_rdlock", su_rwlock, call_rdlock, td_rwlock, 0},
    {"weft_rwlock_wrlock", su_rwlock, call_wrlock, td_rwlock, 0},
    {"weft_rwlock_rdlock_until", su_rwlock, call_rdlock_until, td_rwlock, 0},
    {"weft_rwlock_wrlock_until", su_rwlock, call_wrlock_until, td_rwlock, 0},
    {"weft_waitgroup_wait", su_waitgroup, call_waitgroup_wait, td_waitgroup, 0},
    {"weft_queue_put", su_queue, call_queue_put, td_queue, 0},
    {"weft_queue_put_prio", su_queue_prio, call_queue_put_prio, td_queue, 0},
    {"weft_queue_get", su_queue, call_queue_get, td_queue, 0},
    {"weft_queue_join", su_queue_empty, call_queue_join, td_queue, 0},
    {"weft_queue_join_until", su_queue_empty, call_queue_join_until, td_queue, 0},
    /* weft/io.h */
    {"weft_wait_fd", su_readable, call_wait_fd, td_readable, 0},
    {"weft_accept", su_accept, call_accept, td_accept, 0},
    {"weft_tcp_connect", su_listener, call_tcp_connect, td_connect, 0},
    {"weft_read", su_readable, call_read, td_readable, 0},
    {"weft_write", su_writable, call_write, td_writable, 0},
    {"weft_udp_connect", udp_two, call_udp_connect, td_udp_connect, 0},
    {"weft_recvfrom", su_recvfrom, call_recvfrom, td_recvfrom, 0},
    {"weft_sendto", su_sendto, call_sendto, td_sendto, 0},
    {"weft_unix_connect", su_unix, call_unix_connect, td_unix, 0},
    {"weft_open_connection", su_listener, call_open_connection, td_connect, 0},
    {"weft_stream_readline", su_stream_lines, call_readline, td_stream_lines, 0},
    {"weft_stream_read", su_stream_lines, call_stream_read, td_stream_lines, 0},
    {"weft_stream_readexactly", su_stream_lines, call_readexactly, td_stream_lines, 0},
    {"weft_stream_write", su_stream_full, call_stream_write, td_stream_out, 0},
    {"weft_stream_drain", su_stream_buffered, call_drain, td_stream_out, 0},
    {"weft_serve_forever", su_server, call_serve_forever, td_serve_forever,
     F_NO_CONTROL | F_NEEDS_RUNTIME},
    {"weft_server_close", su_server_conn, call_server_close, td_server_close,
     F_NEEDS_RUNTIME | F_CLOSING},
    {"weft_pread", su_file, call_pread, td_file, 0},
    {"weft_pwrite", su_file, call_pwrite, td_file, 0},
    {"weft_file_read", su_file, call_file_read, td_file, 0},
    {"weft_file_write", su_file, call_file_write, td_file, 0},
};
#define NROWS (sizeof rows / sizeof rows[0])

/* Every other function the public headers declare: not a suspension point.
 * A new declaration must go in one table or the other (test_header_scan). */
static const char *const not_suspension_points[] = {
    /* weft.h: runtime */
    "weft_run", "weft_run_config", "weft_workers", "weft_workers_active", "weft_worker_id",
    "weft_now",
    /* weft.h: tasks (spawn, detach, cancel from any thread; getters) */
    "weft_spawn", "weft_spawn_named", "weft_detach", "weft_cancel", "weft_self",
    "weft_task_name", "weft_task_done", "weft_cancelled", "weft_task_id",
    /* weft.h: task-local storage (-EPERM outside a coroutine, but never
     * suspends) */
    "weft_task_local_get", "weft_task_local_set",
    /* weft.h: groups and blocking offload (spawning, cancelling, sizes) */
    "weft_group_new", "weft_group_spawn", "weft_group_cancel", "weft_group_spawn_blocking",
    "weft_group_size", "weft_spawn_blocking",
    /* weft/sync.h: init, destroy, non-suspending operations (any thread) */
    "weft_mutex_init", "weft_mutex_trylock", "weft_mutex_unlock", "weft_mutex_is_locked",
    "weft_mutex_destroy",
    "weft_sem_init", "weft_sem_tryacquire", "weft_sem_release", "weft_sem_value",
    "weft_sem_destroy",
    "weft_event_init", "weft_event_set", "weft_event_clear", "weft_event_is_set",
    "weft_event_destroy",
    "weft_cond_init", "weft_cond_signal", "weft_cond_broadcast", "weft_cond_destroy",
    "weft_rwlock_init", "weft_rwlock_tryrdlock", "weft_rwlock_trywrlock",
    "weft_rwlock_rdunlock", "weft_rwlock_wrunlock", "weft_rwlock_destroy",
    "weft_waitgroup_init", "weft_waitgroup_add", "weft_waitgroup_done", "weft_waitgroup_count",
    "weft_waitgroup_destroy",
    "weft_queue_new", "weft_queue_try_put", "weft_queue_try_put_prio", "weft_queue_try_get",
    "weft_queue_size", "weft_queue_capacity", "weft_queue_closed", "weft_queue_task_done",
    "weft_queue_task_done_checked", "weft_queue_close", "weft_queue_free",
    /* weft/io.h: listeners and binds ("not a suspension point for numeric
     * hosts"; unmarked), descriptor and stream bookkeeping, closing a
     * descriptor or stream (any thread, never waits), starting a server */
    "weft_tcp_listen", "weft_local_port", "weft_close", "weft_udp_bind", "weft_unix_listen",
    "weft_stream_new", "weft_stream_fd", "weft_stream_close", "weft_start_server",
    "weft_server_port",
    /* weft/observe.h: any thread */
    "weft_tasks_foreach", "weft_dump", "weft_dump_ex", "weft_stats_get", "weft_memory_stats_get",
    "weft_memory_cached_get",
    "weft_stats_format",
};
#define NNOT (sizeof not_suspension_points / sizeof not_suspension_points[0])

/* ------------------------------------------------------------------ */
/* Running a row                                                       */
/* ------------------------------------------------------------------ */

typedef struct sp_result {
    bool ran, failed;
    char why[1100];
} sp_result;

static sp_result results[M_COUNT][NROWS];

/* Read once in main: each test's setup clears every WEFT_* variable. */
static bool opt_verbose;
static char opt_row[64];

static bool verbose(void) { return opt_verbose; }

static void do_setup(sp_ctx *c)
{
    int rc = c->row->setup ? c->row->setup(c) : 0;
    c->setup_ok = rc == 0;
    if (rc)
        sp_fail(c, "setup failed: %s", rc_name(rc));
}

static void do_call(sp_ctx *c)
{
    int64_t t0 = weft_now();
    c->rc = c->row->call(c);
    c->took = weft_now() - t0;
    c->called = true;
}

static void check_outcome(sp_ctx *c)
{
    if (!c->setup_ok)
        return;  /* already reported */
    if (!c->called) {
        sp_fail(c, "the call was not made");
        return;
    }
    long want = -EPERM;
    if (c->mode == M_CANCELLED)
        want = c->row->flags & F_CLOSING ? 0 : -ECANCELED;
    if (c->mode == M_CONTROL) {
        if (c->rc < 0)
            sp_fail(c, "uncancelled, in a state where it could complete at once, it returned "
                       "%s: the row's setup is wrong",
                    rc_name(c->rc));
        return;
    }
    if (c->rc != want)
        sp_fail(c, "returned %s, want %s", rc_name(c->rc), rc_name(want));
    if (c->took > AT_ONCE_NS)
        sp_fail(c, "took %.1f ms (not at once)", (double)c->took / 1e6);
    if (c->mode == M_CANCELLED && (!c->cancelled_after || c->next_sp != -ECANCELED))
        sp_fail(c, "the caller's cancellation did not stick: weft_cancelled() %d, then "
                   "weft_yield() %s",
                c->cancelled_after, rc_name(c->next_sp));
}

/* Coroutine: unfinished tasks other than the caller. */
typedef struct count_ctx {
    uint64_t self;
    int n;
} count_ctx;

static int count_visit(const weft_task_info *info, void *ctx)
{
    count_ctx *cc = ctx;
    if (info->id != cc->self)
        cc->n++;
    return 0;
}

static void check_no_tasks(sp_ctx *c)
{
    int64_t end = weft_now() + 2 * WEFT_SEC * T_SLACK;
    count_ctx cc;
    for (;;) {
        cc = (count_ctx){weft_task_id(weft_self()), 0};
        weft_tasks_foreach(count_visit, &cc);
        if (cc.n == 0 || weft_now() > end)
            break;
        weft_sleep(2 * WEFT_MS);
    }
    if (cc.n)
        sp_fail(c, "%d task(s) still unfinished after the teardown", cc.n);
}

static void *cancelled_body(void *arg)
{
    sp_ctx *c = arg;
    do_setup(c);
    if (!c->setup_ok)
        return NULL;
    weft_cancel(weft_self());
    if (!weft_cancelled())
        sp_fail(c, "weft_cancel(weft_self()) did not cancel the caller");
    do_call(c);
    /* Sticky, whatever the call did (a closing call returns 0): the next
     * suspension point still says -ECANCELED. */
    c->cancelled_after = weft_cancelled();
    c->next_sp = weft_yield();
    return NULL;
}

typedef struct sp_thread {
    sp_ctx *c;
    _Atomic int done;
} sp_thread;

static void *thread_body(void *arg)
{
    sp_thread *t = arg;
    if (weft_self() != NULL || weft_worker_id() != -1)
        sp_fail(t->c, "the plain thread looks like a coroutine");
    do_call(t->c);
    atomic_store(&t->done, 1);
    return NULL;
}

static void finish_row(sp_ctx *c)
{
    check_outcome(c);
    if (c->row->teardown)
        c->row->teardown(c);
    check_no_tasks(c);
}

static void *row_main(void *arg)
{
    sp_ctx *c = arg;
    switch (c->mode) {
    case M_CONTROL:
        do_setup(c);
        if (c->setup_ok)
            do_call(c);
        break;
    case M_CANCELLED: {
        weft_task *t = weft_spawn_named("suspend row", cancelled_body, c);
        if (!t)
            sp_fail(c, "weft_spawn: %d", io_errno());
        else
            weft_join(t, NULL);  /* -ECANCELED: it cancelled itself */
        break;
    }
    case M_THREAD: {
        do_setup(c);
        if (!c->setup_ok)
            break;
        sp_thread t = {c, 0};
        pthread_t th;
        if (pthread_create(&th, NULL, thread_body, &t) != 0) {
            sp_fail(c, "pthread_create failed");
            break;
        }
        while (!atomic_load(&t.done))
            weft_sleep(WEFT_MS);
        pthread_join(th, NULL);
        break;
    }
    }
    finish_row(c);
    return NULL;
}

static void *nort_setup_main(void *arg)
{
    do_setup(arg);
    return NULL;
}

static void *nort_teardown_main(void *arg)
{
    finish_row(arg);
    return NULL;
}

static bool row_selected(const sp_row *r)
{
    return !opt_row[0] || strcmp(opt_row, r->name) == 0;
}

static char wd_label[160];

static void run_row(int mode, size_t i)
{
    const sp_row *r = &rows[i];
    sp_result *res = &results[mode][i];
    memset(res, 0, sizeof *res);
    if (!row_selected(r) || (mode == M_CONTROL && (r->flags & F_NO_CONTROL)) ||
        (mode == M_NORT && (r->flags & F_NEEDS_RUNTIME)))
        return;
    sp_ctx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->row = r;
    c->mode = mode;
    c->fd[0] = c->fd[1] = -1;
    snprintf(wd_label, sizeof wd_label, "row %s [%s]", r->name, mode_name[mode]);
    io_wd_arm(wd_label, 30);
    leak_snap s = leak_snapshot();
    if (mode == M_NORT) {
        int rc = weft_run(nort_setup_main, c, NULL);
        if (rc)
            sp_fail(c, "weft_run (setup): %s", rc_name(rc));
        if (c->setup_ok) {
            if (weft_workers() != 0)
                sp_fail(c, "a runtime still runs");
            do_call(c);  /* this thread, no runtime */
        }
        rc = weft_run(nort_teardown_main, c, NULL);
        if (rc)
            sp_fail(c, "weft_run (teardown): %s", rc_name(rc));
    } else {
        int rc = weft_run(row_main, c, NULL);
        if (rc)
            sp_fail(c, "weft_run: %s", rc_name(rc));
    }
    int fds = leak_count_fds();
    if (fds != s.fds)
        sp_fail(c, "descriptors leaked: %d before, %d after", s.fds, fds);
    if (LEAK_CHECK_MAPS) {
        int maps = leak_count_maps();
        if (maps > s.maps + LEAK_MAPS_SLACK)
            sp_fail(c, "mappings leaked: %d before, %d after", s.maps, maps);
    }
    io_wd_disarm();
    res->ran = true;
    res->failed = c->why[0] != 0;
    snprintf(res->why, sizeof res->why, "%s", c->why);
    if (verbose() || res->failed)
        fprintf(stderr, "  %-26s %-4s rc %-28s %7.3f ms%s%s\n", r->name,
                res->failed ? "FAIL" : "ok", c->called ? rc_name(c->rc) : "(no call)",
                (double)c->took / 1e6, res->failed ? "  " : "", res->why);
    free(c);
}

static void run_mode(int mode)
{
    fprintf(stderr, "[ suspend ] %s:\n", mode_name[mode]);
    for (size_t i = 0; i < NROWS; i++)
        run_row(mode, i);
    int ran = 0, failed = 0, skipped = 0;
    char list[2048] = "";
    for (size_t i = 0; i < NROWS; i++) {
        const sp_result *res = &results[mode][i];
        if (!res->ran) {
            skipped++;
            continue;
        }
        ran++;
        if (res->failed) {
            failed++;
            size_t len = strlen(list);
            snprintf(list + len, sizeof list - len, "%s%s", len ? ", " : "", rows[i].name);
        }
    }
    fprintf(stderr, "[ suspend ] %s: %d rows run, %d passed, %d failed, %d not applicable\n",
            mode_name[mode], ran, ran - failed, failed, skipped);
    if (failed)
        fail_msg("%d row(s) failed (%s): %s", failed, mode_name[mode], list);
}

static void test_control(void **state)
{
    (void)state;
    run_mode(M_CONTROL);
}

static void test_cancelled_caller(void **state)
{
    (void)state;
    run_mode(M_CANCELLED);
}

static void test_plain_thread(void **state)
{
    (void)state;
    run_mode(M_THREAD);
}

static void test_no_runtime(void **state)
{
    (void)state;
    run_mode(M_NORT);
}

/* ------------------------------------------------------------------ */
/* Header scan                                                         */
/* ------------------------------------------------------------------ */
/*
 * Why a scan and two tables: the rows above are the suspension points; a
 * second table lists every other public function.  The scan collects the
 * name of every WEFT_API function the public headers declare and, from the
 * comments, which of them the headers mark SUSPENSION POINT(S).  It fails
 * when
 *   - a header declares a function in neither table (a new call must be
 *     classified, and a suspension point gets a row);
 *   - the comments mark a function that has no row (a header gained a
 *     SUSPENSION POINT the table does not hold; also a function moved from
 *     "not" to suspension point);
 *   - a row's function is not declared, or the comments no longer mark it;
 *     or a name of the second table is not declared;
 *   - a marking comment cannot be resolved (a label naming no function, a
 *     leading SUSPENSION POINT comment with no declaration after it): the
 *     rules below no longer fit the headers and need a look.
 *
 * The rules (they cover every form the headers use):
 *  R1 A comment trailing a declaration on its line and containing
 *     "SUSPENSION POINT" marks that declaration (weft_unix_connect).
 *  R2 A comment on lines of its own whose text begins with "SUSPENSION
 *     POINT" (after an optional "(extension)") marks the declaration right
 *     after it; one beginning "SUSPENSION POINTS" marks each declaration of
 *     the run after it (declarations with no blank line, other comment or
 *     other code between them: io.h's Files block).
 *  R3 Labelled entries: a comment line "label[, label...] [(extension)]:
 *     text" or "label<two or more spaces>text", with continuation lines
 *     indented further.  When an entry's text contains "SUSPENSION POINT",
 *     each label is marked: a full name ("weft_group_next"), or a suffix
 *     naming the first declaration after the comment that ends in
 *     "_<label>" (sync.h's "lock:", "rdlock, wrlock:", "put, put_prio:").
 *  R4 X_until is X with a deadline: marked when X is.
 *  R5 Any other comment containing "SUSPENSION POINT" (mid-sentence, as
 *     io.h's UDP block or "Buffers; a SUSPENSION POINT only when ...")
 *     makes each declaration of the run after it "possibly" one: the table
 *     decides (udp_bind is not, udp_connect / recvfrom / sendto /
 *     stream_write are), and such a row counts as confirmed by the header.
 * The match is case-sensitive: prose such as "Not a suspension point for
 * numeric hosts" or "the task's suspension points" marks nothing.
 */

static const char *const scanned_headers[] = {"weft.h", "weft/sync.h", "weft/io.h",
                                              "weft/observe.h"};

enum { HS_DECL, HS_COMMENT, HS_OTHER, HS_BLANK };

typedef struct hs_ev {
    int kind;
    int line;
    bool trailing;   /* comment: code precedes it on its line */
    const char *text;
    size_t len;
    char name[64];   /* declaration: the function's name */
} hs_ev;

typedef struct hs_file {
    const char *rel;
    char *src;
    hs_ev *ev;
    size_t n, cap;
} hs_file;

#define HS_MAX 512

typedef struct hs_set {
    char name[HS_MAX][64];
    char why[HS_MAX][96];
    int n;
} hs_set;

typedef struct hs_scan {
    hs_file files[sizeof scanned_headers / sizeof scanned_headers[0]];
    hs_set decl, marked, maybe;
    char errors[8192];
} hs_scan;

static void hs_error(hs_scan *sc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void hs_error(hs_scan *sc, const char *fmt, ...)
{
    size_t len = strlen(sc->errors);
    if (len + 4 >= sizeof sc->errors)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sc->errors + len, sizeof sc->errors - len - 1, fmt, ap);
    va_end(ap);
    len = strlen(sc->errors);
    sc->errors[len] = '\n';
    sc->errors[len + 1] = 0;
}

static int hs_find(const hs_set *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->name[i], name) == 0)
            return i;
    return -1;
}

static void hs_add(hs_set *s, const char *name, const char *why)
{
    if (hs_find(s, name) >= 0 || s->n == HS_MAX)
        return;
    snprintf(s->name[s->n], sizeof s->name[0], "%s", name);
    snprintf(s->why[s->n], sizeof s->why[0], "%s", why);
    s->n++;
}

static void hs_push(hs_file *f, int kind, int line, bool trailing, const char *text, size_t len,
                    const char *name)
{
    if (kind == HS_OTHER && f->n && f->ev[f->n - 1].kind == HS_OTHER)
        return;
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 256;
        f->ev = realloc(f->ev, f->cap * sizeof *f->ev);
        assert_non_null(f->ev);
    }
    hs_ev *e = &f->ev[f->n++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->line = line;
    e->trailing = trailing;
    e->text = text;
    e->len = len;
    if (name)
        snprintf(e->name, sizeof e->name, "%s", name);
}

static bool is_ident(int ch) { return isalnum(ch) || ch == '_'; }

/* The function name of a declaration "WEFT_API ... name(...);", or "". */
static void hs_decl_name(const char *d, size_t len, char out[64])
{
    out[0] = 0;
    const char *paren = memchr(d, '(', len);
    if (!paren)
        return;
    const char *e = paren;
    while (e > d && isspace((unsigned char)e[-1]))
        e--;
    const char *b = e;
    while (b > d && is_ident((unsigned char)b[-1]))
        b--;
    if (e > b && (size_t)(e - b) < 64) {
        memcpy(out, b, (size_t)(e - b));
        out[e - b] = 0;
    }
}

/* Splits a header into declarations, comments, other code and blank
 * lines.  Preprocessor lines are "other code"; string and character
 * literals are skipped. */
static void hs_lex(hs_file *f)
{
    const char *s = f->src;
    size_t n = strlen(s), i = 0;
    int line = 1;
    bool code_on_line = false, any_on_line = false, in_decl = false;
    size_t decl_start = 0;
    int depth = 0, decl_line = 0;
    while (i < n) {
        char ch = s[i];
        if (ch == '\n') {
            if (!any_on_line)
                hs_push(f, HS_BLANK, line, false, NULL, 0, NULL);
            line++;
            code_on_line = any_on_line = false;
            i++;
            continue;
        }
        if (isspace((unsigned char)ch)) {
            i++;
            continue;
        }
        if (ch == '/' && s[i + 1] == '*') {
            const char *end = strstr(s + i + 2, "*/");
            size_t e = end ? (size_t)(end - s) + 2 : n;
            hs_push(f, HS_COMMENT, line, code_on_line, s + i, e - i, NULL);
            for (size_t k = i; k < e; k++)
                if (s[k] == '\n') {
                    line++;
                    code_on_line = false;
                }
            any_on_line = true;
            i = e;
            continue;
        }
        if (ch == '/' && s[i + 1] == '/') {
            size_t e = i;
            while (e < n && s[e] != '\n')
                e++;
            hs_push(f, HS_COMMENT, line, code_on_line, s + i, e - i, NULL);
            any_on_line = true;
            i = e;
            continue;
        }
        if (ch == '#' && !code_on_line && !in_decl) {
            while (i < n && s[i] != '\n') {
                if (s[i] == '\\' && s[i + 1] == '\n') {
                    i += 2;
                    line++;
                } else if (s[i] == '/' && s[i + 1] == '*') {
                    const char *end = strstr(s + i + 2, "*/");
                    size_t e = end ? (size_t)(end - s) + 2 : n;
                    for (size_t k = i; k < e; k++)
                        if (s[k] == '\n')
                            line++;
                    i = e;
                } else {
                    i++;
                }
            }
            hs_push(f, HS_OTHER, line, false, NULL, 0, NULL);
            any_on_line = code_on_line = true;
            continue;
        }
        any_on_line = code_on_line = true;
        if (ch == '"' || ch == '\'') {
            i++;
            while (i < n && s[i] != ch && s[i] != '\n')
                i += s[i] == '\\' ? 2 : 1;
            i++;
            if (!in_decl)
                hs_push(f, HS_OTHER, line, false, NULL, 0, NULL);
            continue;
        }
        if (is_ident((unsigned char)ch)) {
            size_t b = i;
            while (i < n && is_ident((unsigned char)s[i]))
                i++;
            if (!in_decl && i - b == 8 && memcmp(s + b, "WEFT_API", 8) == 0) {
                in_decl = true;
                decl_start = b;
                decl_line = line;
                depth = 0;
            } else if (!in_decl) {
                hs_push(f, HS_OTHER, line, false, NULL, 0, NULL);
            }
            continue;
        }
        if (in_decl) {
            if (ch == '(')
                depth++;
            else if (ch == ')')
                depth--;
            else if (ch == ';' && depth == 0) {
                in_decl = false;
                char name[64];
                hs_decl_name(s + decl_start, i + 1 - decl_start, name);
                if (name[0])
                    hs_push(f, HS_DECL, decl_line, false, s + decl_start, i + 1 - decl_start,
                            name);
                else
                    hs_push(f, HS_OTHER, line, false, NULL, 0, NULL);
            }
        } else {
            hs_push(f, HS_OTHER, line, false, NULL, 0, NULL);
        }
        i++;
    }
}

static bool hs_contains(const char *text, size_t len, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= len; i++)
        if (memcmp(text + i, needle, nl) == 0)
            return true;
    return false;
}

/* The declarations of the run after comment k: until a blank line, other
 * code or a comment of its own (comments trailing a declaration do not end
 * it).  Indexes into f->ev; returns how many. */
static int hs_run(const hs_file *f, size_t k, size_t *out, int cap)
{
    int n = 0;
    for (size_t j = k + 1; j < f->n; j++) {
        const hs_ev *e = &f->ev[j];
        if (e->kind == HS_COMMENT && e->trailing)
            continue;
        if (e->kind != HS_DECL)
            break;
        if (n < cap)
            out[n++] = j;
    }
    return n;
}

/* A comment's text after its opening, leading stars and spaces and an
 * "(extension)" tag. */
static const char *hs_body(const char *t, size_t len, size_t *rest)
{
    const char *p = t, *end = t + len;
    if (p + 2 <= end && (memcmp(p, "/*", 2) == 0 || memcmp(p, "//", 2) == 0))
        p += 2;
    while (p < end && (isspace((unsigned char)*p) || (*p == '*' && !(p + 1 < end && p[1] == '/'))))
        p++;
    if ((size_t)(end - p) >= 11 && memcmp(p, "(extension)", 11) == 0) {
        p += 11;
        while (p < end && isspace((unsigned char)*p))
            p++;
    }
    *rest = (size_t)(end - p);
    return p;
}

/* R3: parses "label[, label] [(extension)]:" or "label  " at p; the labels
 * in out (at most 8), their count returned (0: not an entry). */
static int hs_labels(const char *p, const char *end, char out[8][64])
{
    int n = 0;
    while (p < end && islower((unsigned char)*p)) {
        const char *b = p;
        while (p < end && is_ident((unsigned char)*p))
            p++;
        if (n < 8 && (size_t)(p - b) < 64) {
            memcpy(out[n], b, (size_t)(p - b));
            out[n][p - b] = 0;
            n++;
        }
        if (end - p >= 3 && p[0] == ',' && p[1] == ' ' && islower((unsigned char)p[2]))
            p += 2;
        else
            break;
    }
    if (!n)
        return 0;
    if (end - p >= 12 && memcmp(p, " (extension)", 12) == 0)
        p += 12;
    if (p < end && *p == ':')
        return n;
    if (end - p >= 2 && p[0] == ' ' && p[1] == ' ')
        return n;
    return 0;
}

static void hs_mark_label(hs_scan *sc, const hs_file *f, size_t k, const char *label)
{
    char why[96];
    snprintf(why, sizeof why, "R3 %s:%d label \"%s\"", f->rel, f->ev[k].line, label);
    if (strncmp(label, "weft_", 5) == 0) {
        if (hs_find(&sc->decl, label) < 0)
            hs_error(sc, "%s:%d: label %s names no declared function", f->rel, f->ev[k].line,
                     label);
        else
            hs_add(&sc->marked, label, why);
        return;
    }
    char suffix[80];
    snprintf(suffix, sizeof suffix, "_%s", label);
    size_t sl = strlen(suffix);
    for (size_t j = k + 1; j < f->n; j++) {
        const hs_ev *e = &f->ev[j];
        size_t nl = strlen(e->name);
        if (e->kind == HS_DECL && nl > sl && strcmp(e->name + nl - sl, suffix) == 0) {
            hs_add(&sc->marked, e->name, why);
            return;
        }
    }
    hs_error(sc, "%s:%d: label \"%s\" matches no declaration after the comment", f->rel,
             f->ev[k].line, label);
}

/* R3 over one comment: true when it has a labelled entry containing
 * SUSPENSION POINT (its labels then marked). */
static bool hs_labelled(hs_scan *sc, const hs_file *f, size_t k)
{
    const hs_ev *c = &f->ev[k];
    const char *p = c->text, *end = c->text + c->len;
    char labels[8][64];
    int nlab = 0, cur_indent = -1;
    bool has_sp = false, any = false;
#define HS_CLOSE_ENTRY()                                                                 \
    do {                                                                                 \
        if (nlab && has_sp) {                                                            \
            any = true;                                                                  \
            for (int l_ = 0; l_ < nlab; l_++)                                            \
                hs_mark_label(sc, f, k, labels[l_]);                                     \
        }                                                                                \
        nlab = 0;                                                                        \
        has_sp = false;                                                                  \
        cur_indent = -1;                                                                 \
    } while (0)
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        const char *q = p;
        while (q < eol && (*q == ' ' || *q == '\t'))
            q++;
        if (eol - q >= 2 && q[0] == '/' && q[1] == '*')
            q += 2;
        else if (q < eol && *q == '*' && !(eol - q >= 2 && q[1] == '/'))
            q++;
        int indent = 0;
        while (q < eol && *q == ' ') {
            q++;
            indent++;
        }
        if (q >= eol || (eol - q >= 2 && q[0] == '*' && q[1] == '/')) {
            HS_CLOSE_ENTRY();  /* blank comment line */
        } else {
            char l[8][64];
            int nl = hs_labels(q, eol, l);
            if (nl && (cur_indent < 0 || indent <= cur_indent)) {
                HS_CLOSE_ENTRY();
                memcpy(labels, l, sizeof labels);
                nlab = nl;
                cur_indent = indent;
            }
            if (nlab && hs_contains(q, (size_t)(eol - q), "SUSPENSION POINT"))
                has_sp = true;
        }
        p = eol < end ? eol + 1 : end;
    }
    HS_CLOSE_ENTRY();
#undef HS_CLOSE_ENTRY
    return any;
}

static void hs_classify(hs_scan *sc, const hs_file *f)
{
    for (size_t k = 0; k < f->n; k++) {
        const hs_ev *c = &f->ev[k];
        if (c->kind != HS_COMMENT || !hs_contains(c->text, c->len, "SUSPENSION POINT"))
            continue;
        char why[96];
        if (c->trailing) { /* R1 */
            if (k == 0 || f->ev[k - 1].kind != HS_DECL) {
                hs_error(sc, "%s:%d: a trailing SUSPENSION POINT comment after no declaration",
                         f->rel, c->line);
                continue;
            }
            snprintf(why, sizeof why, "R1 %s:%d trailing comment", f->rel, c->line);
            hs_add(&sc->marked, f->ev[k - 1].name, why);
            continue;
        }
        if (hs_labelled(sc, f, k)) /* R3 */
            continue;
        size_t run[32];
        int nrun = hs_run(f, k, run, 32);
        size_t rest;
        const char *body = hs_body(c->text, c->len, &rest);
        if (rest >= 16 && memcmp(body, "SUSPENSION POINT", 16) == 0) { /* R2 */
            if (!nrun) {
                hs_error(sc, "%s:%d: a SUSPENSION POINT comment with no declaration after it",
                         f->rel, c->line);
                continue;
            }
            bool plural = rest > 16 && body[16] == 'S';
            snprintf(why, sizeof why, "R2 %s:%d leading comment%s", f->rel, c->line,
                     plural ? " (POINTS: the run)" : "");
            for (int r = 0; r < (plural ? nrun : 1); r++)
                hs_add(&sc->marked, f->ev[run[r]].name, why);
            continue;
        }
        snprintf(why, sizeof why, "R5 %s:%d mentioned in the comment", f->rel, c->line);
        for (int r = 0; r < nrun; r++) /* R5 */
            hs_add(&sc->maybe, f->ev[run[r]].name, why);
    }
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    if (buf && fread(buf, 1, (size_t)len, fp) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        buf[len] = 0;
    fclose(fp);
    return buf;
}

static bool in_rows(const char *name)
{
    for (size_t i = 0; i < NROWS; i++)
        if (strcmp(rows[i].name, name) == 0)
            return true;
    return false;
}

static bool in_not(const char *name)
{
    for (size_t i = 0; i < NNOT; i++)
        if (strcmp(not_suspension_points[i], name) == 0)
            return true;
    return false;
}

static void test_header_scan(void **state)
{
    (void)state;
    hs_scan *sc = calloc(1, sizeof *sc);
    assert_non_null(sc);
    size_t nfiles = sizeof scanned_headers / sizeof scanned_headers[0];
    for (size_t i = 0; i < nfiles; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", WEFT_INCLUDE_DIR, scanned_headers[i]);
        hs_file *f = &sc->files[i];
        f->rel = scanned_headers[i];
        f->src = slurp(path);
        if (!f->src)
            fail_msg("cannot read %s: %s", path, strerror(errno));
        hs_lex(f);
        for (size_t k = 0; k < f->n; k++)
            if (f->ev[k].kind == HS_DECL) {
                char why[96];
                snprintf(why, sizeof why, "%s:%d", f->rel, f->ev[k].line);
                if (hs_find(&sc->decl, f->ev[k].name) >= 0)
                    hs_error(sc, "%s declared twice (again at %s)", f->ev[k].name, why);
                hs_add(&sc->decl, f->ev[k].name, why);
            }
    }
    for (size_t i = 0; i < nfiles; i++)
        hs_classify(sc, &sc->files[i]);
    /* R4: X_until is X with a deadline. */
    for (int i = 0; i < sc->decl.n; i++) {
        const char *nm = sc->decl.name[i];
        size_t nl = strlen(nm);
        if (nl > 6 && strcmp(nm + nl - 6, "_until") == 0) {
            char base[64];
            snprintf(base, sizeof base, "%.*s", (int)(nl - 6), nm);
            if (hs_find(&sc->marked, base) >= 0 && hs_find(&sc->marked, nm) < 0) {
                char why[96];
                snprintf(why, sizeof why, "R4 %s with a deadline", base);
                hs_add(&sc->marked, nm, why);
            }
        }
    }

    if (verbose()) {
        fprintf(stderr, "[ scan ] %d declarations; marked SUSPENSION POINT:\n", sc->decl.n);
        for (int i = 0; i < sc->marked.n; i++)
            fprintf(stderr, "    %-28s %s\n", sc->marked.name[i], sc->marked.why[i]);
        fprintf(stderr, "[ scan ] possibly (the table decides):\n");
        for (int i = 0; i < sc->maybe.n; i++)
            fprintf(stderr, "    %-28s %s -> %s\n", sc->maybe.name[i], sc->maybe.why[i],
                    in_rows(sc->maybe.name[i]) ? "row" : "not");
    }

    /* Every declaration classified, exactly once. */
    for (int i = 0; i < sc->decl.n; i++) {
        const char *nm = sc->decl.name[i];
        bool r = in_rows(nm), x = in_not(nm);
        if (!r && !x)
            hs_error(sc, "%s (%s) is in neither table: give it a row if it is a suspension "
                         "point, else list it in not_suspension_points",
                     nm, sc->decl.why[i]);
        if (r && x)
            hs_error(sc, "%s is in both tables", nm);
    }
    /* What the headers mark has a row. */
    for (int i = 0; i < sc->marked.n; i++)
        if (!in_rows(sc->marked.name[i]))
            hs_error(sc, "%s is marked SUSPENSION POINT (%s) but has no row", sc->marked.name[i],
                     sc->marked.why[i]);
    /* Each row names a declared function the headers mark (or mention). */
    for (size_t i = 0; i < NROWS; i++) {
        for (size_t j = 0; j < i; j++)
            if (strcmp(rows[i].name, rows[j].name) == 0)
                hs_error(sc, "row %s appears twice", rows[i].name);
        if (hs_find(&sc->decl, rows[i].name) < 0)
            hs_error(sc, "row %s: no public header declares it", rows[i].name);
        else if (hs_find(&sc->marked, rows[i].name) < 0 && hs_find(&sc->maybe, rows[i].name) < 0)
            hs_error(sc, "row %s: the headers do not mark it SUSPENSION POINT", rows[i].name);
    }
    for (size_t i = 0; i < NNOT; i++) {
        for (size_t j = 0; j < i; j++)
            if (strcmp(not_suspension_points[i], not_suspension_points[j]) == 0)
                hs_error(sc, "%s is listed twice in not_suspension_points",
                         not_suspension_points[i]);
        if (hs_find(&sc->decl, not_suspension_points[i]) < 0)
            hs_error(sc, "not_suspension_points: no public header declares %s",
                     not_suspension_points[i]);
    }
    fprintf(stderr, "[ scan ] %d declarations, %d marked, %d possibly, %zu rows, %zu not\n",
            sc->decl.n, sc->marked.n, sc->maybe.n, NROWS, NNOT);

    bool bad = sc->errors[0] != 0;
    if (bad)
        fprintf(stderr, "[ scan ] problems:\n%s", sc->errors);
    for (size_t i = 0; i < nfiles; i++) {
        free(sc->files[i].src);
        free(sc->files[i].ev);
    }
    free(sc);
    if (bad)
        fail_msg("the table and the public headers disagree (see above)");
}

int main(void)
{
    const char *v = getenv("WEFT_SUSPEND_VERBOSE");
    opt_verbose = v && *v && strcmp(v, "0") != 0;
    v = getenv("WEFT_SUSPEND_ROW");
    snprintf(opt_row, sizeof opt_row, "%s", v ? v : "");
    io_init();
    const struct CMUnitTest tests[] = {
        IO_TEST(test_header_scan),
        IO_TEST(test_control),
        IO_TEST(test_cancelled_caller),
        IO_TEST(test_plain_thread),
        IO_TEST(test_no_runtime),
    };
    return cmocka_run_group_tests_name("suspend", tests, NULL, NULL);
}
