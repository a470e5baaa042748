/*
 * test_vclock: the virtual clock (WEFT_CLOCK=virtual, weft_config.clock;
 * runtime/vclock.c): time that moves only when every task is blocked, what
 * holds it, the deadlock report, and the settings' bad input.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <sys/socket.h>
#include <cmocka.h>

#include <weft.h>

#include "testutil.h"

static void use_virtual(unsigned workers)
{
    setenv("WEFT_CLOCK", "virtual", 1);
    char b[16];
    snprintf(b, sizeof b, "%u", workers);
    setenv("WEFT_WORKERS", b, 1);
}

/* ------------------------------------------------------------------ */
/* An hour of deadlines in well under a second                          */
/* ------------------------------------------------------------------ */

static int64_t start_at;

static void *sleeper(void *arg)
{
    int64_t d = (int64_t)(intptr_t)arg;
    T_CHECK_EQ(weft_sleep_until(start_at + d), 0);
    T_CHECK_EQ(weft_now(), start_at + d);  /* exactly its instant */
    return NULL;
}

static void *long_task(void *arg)
{
    (void)arg;
    weft_sleep(10 * 60 * WEFT_SEC);
    return (void *)1;
}

static void *hour_main(void *arg)
{
    (void)arg;
    start_at = weft_now();
    static const int64_t ds[] = {3, 17 * WEFT_MS, WEFT_SEC, 59 * 60 * WEFT_SEC,
                                 3600 * WEFT_SEC, 3600 * WEFT_SEC, 65536 * 3 + 1, 1234567891};
    weft_task *t[8];
    for (int i = 0; i < 8; i++)
        t[i] = weft_spawn(sleeper, (void *)(intptr_t)ds[i]);
    /* wait_for: the deadline comes first, at exactly its instant. */
    weft_task *lt = weft_spawn(long_task, NULL);
    T_CHECK_EQ(weft_wait_for(lt, start_at + 5 * 60 * WEFT_SEC, NULL), -ETIMEDOUT);
    T_CHECK_EQ(weft_now(), start_at + 5 * 60 * WEFT_SEC);
    /* A queue's get and an event's wait with deadlines. */
    weft_queue *q = weft_queue_new(WEFT_QUEUE_FIFO, 0);
    void *item;
    int64_t d = weft_now() + 30 * 60 * WEFT_SEC + 7;
    T_CHECK_EQ(weft_queue_get(q, &item, d), -ETIMEDOUT);
    T_CHECK_EQ(weft_now(), d);
    weft_queue_free(q);
    weft_event e;
    weft_event_init(&e);
    d = weft_now() + 1;
    T_CHECK_EQ(weft_event_wait(&e, d), -ETIMEDOUT);
    T_CHECK_EQ(weft_now(), d);
    for (int i = 0; i < 8; i++)
        T_CHECK_EQ(weft_join(t[i], NULL), 0);
    T_CHECK_EQ(weft_now(), start_at + 3600 * WEFT_SEC);
    return NULL;
}

static void test_vclock_hour(void **state)
{
    (void)state;
    for (unsigned workers = 1; workers <= 2; workers++) {
        use_virtual(workers);
        int64_t t0 = t_mono_ns();
        assert_int_equal(t_run(hour_main, NULL, NULL), 0);
        int64_t took = t_mono_ns() - t0;
        assert_true(took < T_SLACK * WEFT_SEC);  /* an hour of virtual time */
    }
}

/* The config field works as the variable does, and real is the default. */
static void *now_main(void *arg)
{
    *(int64_t *)arg = weft_now();
    weft_sleep(WEFT_MS);
    return NULL;
}

static void test_vclock_config_and_default(void **state)
{
    (void)state;
    weft_config c = WEFT_CONFIG_DEFAULT;
    c.clock = WEFT_CLOCK_VIRTUAL;
    int64_t seen = 0;
    int64_t r0 = t_mono_ns();
    assert_int_equal(t_run_config(&c, now_main, &seen, NULL), 0);
    assert_int_equal(seen, (int64_t)3600 * WEFT_SEC);  /* the documented start */
    c.clock = WEFT_CLOCK_REAL;
    setenv("WEFT_CLOCK", "virtual", 1);  /* the field wins */
    assert_int_equal(t_run_config(&c, now_main, &seen, NULL), 0);
    assert_true(seen >= r0 && seen <= t_mono_ns());
    unsetenv("WEFT_CLOCK");
    assert_int_equal(t_run(now_main, &seen, NULL), 0);
    assert_true(seen >= r0 && seen <= t_mono_ns());
    /* Outside a run, weft_now() is the real clock again. */
    int64_t n = weft_now();
    assert_true(n >= r0 && n <= t_mono_ns());
}

/* ------------------------------------------------------------------ */
/* What holds the clock                                                 */
/* ------------------------------------------------------------------ */

static _Atomic int woke;

static void *woke_after(void *arg)
{
    weft_sleep((int64_t)(intptr_t)arg);
    atomic_store(&woke, 1);
    return NULL;
}

static void *slow_call(void *arg)
{
    (void)arg;
    t_nap_ms(150);
    return (void *)42;
}

static void *pool_main(void *arg)
{
    (void)arg;
    int64_t t0 = weft_now();
    atomic_store(&woke, 0);
    weft_task *s = weft_spawn(woke_after, (void *)(intptr_t)WEFT_SEC);
    void *r = NULL;
    /* 150 ms of real time in the pool: the 1 s timer must not fire meanwhile. */
    T_CHECK_EQ(weft_to_thread(slow_call, NULL, &r), 0);
    T_CHECK(r == (void *)42);
    T_CHECK_EQ(weft_now(), t0);
    T_CHECK_EQ(atomic_load(&woke), 0);
    T_CHECK_EQ(weft_join(s, NULL), 0);
    T_CHECK_EQ(weft_now(), t0 + WEFT_SEC);
    /* A job and no timer at all: no deadlock report while it runs. */
    T_CHECK_EQ(weft_to_thread(slow_call, NULL, &r), 0);
    return NULL;
}

static void test_vclock_pool_job_holds(void **state)
{
    (void)state;
    for (unsigned workers = 1; workers <= 2; workers++) {
        use_virtual(workers);
        t_capture c;
        t_capture_begin(&c);
        assert_int_equal(t_run(pool_main, NULL, NULL), 0);
        char *err = t_capture_end(&c);
        assert_null(strstr(err, "deadlock"));
        free(err);
    }
}

static int sv[2];

static void *reader(void *arg)
{
    (void)arg;
    int64_t t0 = weft_now();
    char b[8];
    ssize_t n = weft_read(sv[0], b, sizeof b, t0 + WEFT_SEC);
    T_CHECK_EQ(n, 3);
    T_CHECK_EQ(weft_now(), t0);  /* delivered before any jump */
    return NULL;
}

static void *writer(void *arg)
{
    (void)arg;
    T_CHECK_EQ(weft_write(sv[1], "abc", 3, WEFT_FOREVER), 3);
    weft_sleep(5 * WEFT_SEC);  /* everything blocked, a byte in flight */
    return NULL;
}

static void *socket_main(void *arg)
{
    (void)arg;
    for (int round = 0; round < 20; round++) {
        T_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        /* Both orders: the reader waiting first, or the data there first. */
        weft_task *r = NULL, *w = NULL;
        if (round & 1) {
            r = weft_spawn(reader, NULL);
            weft_yield();
            w = weft_spawn(writer, NULL);
        } else {
            w = weft_spawn(writer, NULL);
            r = weft_spawn(reader, NULL);
        }
        weft_join(r, NULL);
        weft_join(w, NULL);
        weft_close(sv[0]);
        weft_close(sv[1]);
    }
    return NULL;
}

static void test_vclock_socket_holds(void **state)
{
    (void)state;
    for (unsigned workers = 1; workers <= 2; workers++) {
        use_virtual(workers);
        assert_int_equal(t_run(socket_main, NULL, NULL), 0);
    }
}

/* A plain thread holds nothing: the clock jumps past it (documented), but
 * the deadlock report waits its grace for it. */
static weft_event pe;

static void *plain_setter(void *arg)
{
    t_nap_ms((long)(intptr_t)arg);
    weft_event_set(&pe);
    return NULL;
}

static void *plain_main(void *arg)
{
    (void)arg;
    weft_event_init(&pe);
    t_thread th;
    t_thread_start(&th, plain_setter, (void *)(intptr_t)50);
    int64_t t0 = weft_now();
    T_CHECK_EQ(weft_event_wait(&pe, t0 + 10 * WEFT_SEC), -ETIMEDOUT);
    T_CHECK_EQ(weft_now(), t0 + 10 * WEFT_SEC);
    pthread_join(th.th, NULL);
    weft_event_clear(&pe);
    t_thread_start(&th, plain_setter, (void *)(intptr_t)30);
    T_CHECK_EQ(weft_event_wait(&pe, WEFT_FOREVER), 0);  /* no deadlock: the grace */
    pthread_join(th.th, NULL);
    return NULL;
}

static void test_vclock_plain_thread(void **state)
{
    (void)state;
    use_virtual(2);
    t_capture c;
    t_capture_begin(&c);
    assert_int_equal(t_run(plain_main, NULL, NULL), 0);
    char *err = t_capture_end(&c);
    assert_null(strstr(err, "deadlock"));
    free(err);
}

/* ------------------------------------------------------------------ */
/* Deadlock                                                             */
/* ------------------------------------------------------------------ */

static weft_mutex dm;
static weft_event de;

static void *want_mutex(void *arg)
{
    (void)arg;
    weft_mutex_lock(&dm);  /* main holds it and never lets go */
    weft_mutex_unlock(&dm);
    return NULL;
}

static void *want_event(void *arg)
{
    (void)arg;
    weft_event_wait(&de, WEFT_FOREVER);
    return NULL;
}

static void *dead_main(void *arg)
{
    (void)arg;
    weft_mutex_init(&dm);
    weft_event_init(&de);
    weft_mutex_lock(&dm);
    weft_task *a = weft_spawn_named("stuck-on-mutex", want_mutex, NULL);
    weft_task *b = weft_spawn_named("stuck-on-event", want_event, NULL);
    weft_sleep(WEFT_SEC);  /* a timer first: the clock moves, then nothing can */
    /* After the report, weft_run cancels every task: the joins return
     * -ECANCELED and the stuck tasks leave the objects' wait lists. */
    T_CHECK_EQ(weft_join(a, NULL), -ECANCELED);
    T_CHECK_EQ(weft_join(b, NULL), -ECANCELED);
    weft_mutex_unlock(&dm);
    return NULL;
}

static void test_vclock_deadlock(void **state)
{
    (void)state;
    for (unsigned workers = 1; workers <= 2; workers++) {
        use_virtual(workers);
        t_capture c;
        t_capture_begin(&c);
        assert_int_equal(t_run(dead_main, NULL, NULL), -EDEADLK);
        char *err = t_capture_end(&c);
        assert_int_equal(t_lines_with(err, "weft: deadlock", NULL), 1);
        assert_int_equal(t_lines_with(err, "'main'", "join"), 1);
        assert_int_equal(t_lines_with(err, "'stuck-on-mutex'", "mutex"), 1);
        assert_int_equal(t_lines_with(err, "'stuck-on-event'", "event"), 1);
        assert_null(strstr(err, "rerun with"));  /* not seeded */
        free(err);
        /* The objects the tasks waited on are usable again. */
        assert_int_equal(weft_event_set(&de), 0);
    }
    /* Seeded: the report ends with the line that replays it. */
    use_virtual(1);
    setenv("WEFT_SEED", "99", 1);
    t_capture c;
    t_capture_begin(&c);
    assert_int_equal(t_run(dead_main, NULL, NULL), -EDEADLK);
    char *err = t_capture_end(&c);
    assert_int_equal(
        t_lines_with(err, "weft: rerun with WEFT_SEED=99 WEFT_WORKERS=1 WEFT_CLOCK=virtual", NULL), 1);
    free(err);
}

/* A file read on the worker's io_uring (the ring is in the poller, but is
 * no socket): a deadlock after it is still reported. */
static void *ring_main(void *arg)
{
    (void)arg;
    char path[] = "/tmp/weft-vclock-ring-XXXXXX";
    int fd = mkstemp(path);
    T_CHECK(fd >= 0);
    unlink(path);
    T_CHECK_EQ(write(fd, "hello", 5), 5);
    char b[5];
    for (int i = 0; i < 50; i++)
        T_CHECK_EQ(weft_pread(fd, b, sizeof b, 0), 5);
    close(fd);
    weft_event_init(&de);
    weft_event_wait(&de, WEFT_FOREVER);  /* nobody sets it */
    return NULL;
}

static void test_vclock_deadlock_after_file_io(void **state)
{
    (void)state;
    use_virtual(1);
    t_capture c;
    t_capture_begin(&c);
    int rc = t_run(ring_main, NULL, NULL);
    char *err = t_capture_end(&c);
    assert_int_equal(rc, -EDEADLK);
    assert_int_equal(t_lines_with(err, "weft: deadlock", NULL), 1);
    free(err);
}

/* A descriptor watched and nothing else: weft waits for it in real time
 * (a peer outside may write), no report. */
static void *late_writer(void *arg)
{
    (void)arg;
    t_nap_ms(150);
    ssize_t n = write(sv[1], "z", 1);
    (void)n;
    return NULL;
}

static void *fd_main(void *arg)
{
    (void)arg;
    T_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    t_thread th;
    t_thread_start(&th, late_writer, NULL);
    char b;
    T_CHECK_EQ(weft_read(sv[0], &b, 1, WEFT_FOREVER), 1);
    pthread_join(th.th, NULL);
    weft_close(sv[0]);
    weft_close(sv[1]);
    return NULL;
}

static void test_vclock_no_false_deadlock_on_fd(void **state)
{
    (void)state;
    use_virtual(2);
    t_capture c;
    t_capture_begin(&c);
    assert_int_equal(t_run(fd_main, NULL, NULL), 0);
    char *err = t_capture_end(&c);
    assert_null(strstr(err, "deadlock"));
    free(err);
}

/* ------------------------------------------------------------------ */
/* Bad input                                                            */
/* ------------------------------------------------------------------ */

static void *never(void *arg)
{
    (void)arg;
    T_CHECK(!"ran with a bad setting");
    return NULL;
}

static void bad_env(const char *var, const char *val)
{
    setenv(var, val, 1);
    t_capture c;
    t_capture_begin(&c);
    assert_int_equal(t_run(never, NULL, NULL), -EINVAL);
    char *err = t_capture_end(&c);
    assert_int_equal(t_count_lines(err), 1);
    assert_int_equal(t_lines_with(err, var, "invalid"), 1);
    free(err);
    unsetenv(var);
}

static void test_vclock_bad_input(void **state)
{
    (void)state;
    bad_env("WEFT_CLOCK", "fake");
    bad_env("WEFT_CLOCK", "Virtual");
    bad_env("WEFT_CLOCK", "");
    bad_env("WEFT_SEED", "");
    bad_env("WEFT_SEED", "abc");
    bad_env("WEFT_SEED", "-1");
    bad_env("WEFT_SEED", "18446744073709551616");
    bad_env("WEFT_SEED", "12x");
    bad_env("WEFT_CHAOS", "4");
    bad_env("WEFT_CHAOS", "x");
    weft_config c = WEFT_CONFIG_DEFAULT;
    c.clock = 3;
    t_capture cap;
    t_capture_begin(&cap);
    assert_int_equal(t_run_config(&c, never, NULL, NULL), -EINVAL);
    char *err = t_capture_end(&cap);
    assert_int_equal(t_lines_with(err, "weft_config.clock", "invalid"), 1);
    free(err);
    c.clock = -1;
    assert_int_equal(weft_run_config(&c, never, NULL, NULL), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T_TEST(test_vclock_hour),
        T_TEST(test_vclock_config_and_default),
        T_TEST(test_vclock_pool_job_holds),
        T_TEST(test_vclock_socket_holds),
        T_TEST(test_vclock_plain_thread),
        T_TEST(test_vclock_deadlock),
        T_TEST(test_vclock_no_false_deadlock_on_fd),
        T_TEST(test_vclock_deadlock_after_file_io),
        T_TEST(test_vclock_bad_input),
    };
    /* glibc's arenas and cached thread stacks stay: made here, they are not
     * counted against the first test's leak check (testutil.h). */
    t_warm_up();
    return cmocka_run_group_tests_name("vclock", tests, NULL, NULL);
}
