/*
 * stress_close_race: weft_close racing with coroutines that wait on the
 * descriptor, on 4 workers (WEFT_WORKERS overrides).
 *
 * Rounds.  Each round first creates its descriptors (TCP pairs, some with a
 * full send buffer, pipes, listeners): no descriptor is created while the
 * round races, so a closed number cannot be reused under a waiter that has
 * not reached its system call yet.  Then, for each target descriptor, one or
 * two waiter tasks call weft_read, weft_wait_fd (readable, or writable on a
 * full socket), weft_write (full socket) or weft_accept on it, while a
 * closer - a coroutine or a blocking-pool thread, after a random delay of 0
 * to ~200 us once the waiters have called into weft, often before they have
 * parked, sometimes after - calls weft_close.  Variants: the peer sends a byte (or drains the full
 * socket) at about the same time; the waiter has a deadline a few
 * microseconds away.
 *
 * Invariants:
 *  - every waiter returns, within 1 s (4 s under a sanitizer) of the
 *    weft_close that ends its wait (a waiter woken later was only rescued by
 *    an unrelated event: a lost wake-up), and at all within a 10 s bound
 *    per round (then the watchdog);
 *  - its result is -EBADF, or what the variant allows besides: the byte /
 *    ready mask / whole write when the peer acted, -ETIMEDOUT with a
 *    deadline - nothing else;
 *  - weft_close itself returns 0 exactly once per descriptor;
 *  - after each round (all peers closed) the descriptor count is back to
 *    the count before it; after weft_run, to the count before weft_run.
 *
 * Default 4 s; WEFT_STRESS_SECONDS for longer.
 */
#include "../stress.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#define TARGETS STRESS_SCALE(48, 16)

enum kind { K_READ, K_WAIT_R, K_WAIT_W, K_WRITE, K_ACCEPT, K_PIPE_READ, K_TWO, NKINDS };
enum variant { V_PLAIN, V_PEER, V_DEADLINE, NVARIANTS };

static const char *kind_name[] = {"read", "wait_fd(R)", "wait_fd(W)", "write", "accept",
                                  "pipe read", "read+wait_fd"};

static _Atomic uint64_t n_rounds, n_waits, n_ebadf, n_data, n_timedout, n_closes;
static const char *_Atomic phase = "starting";

static void dump(void)
{
    fprintf(stderr, "  main task's phase: %s\n", atomic_load(&phase));
    fprintf(stderr,
            "  rounds %" PRIu64 ", waits %" PRIu64 " (-EBADF %" PRIu64 ", data/ready %" PRIu64
            ", -ETIMEDOUT %" PRIu64 "), closes %" PRIu64 "\n",
            atomic_load(&n_rounds), atomic_load(&n_waits), atomic_load(&n_ebadf),
            atomic_load(&n_data), atomic_load(&n_timedout), atomic_load(&n_closes));
}

typedef struct target {
    int kind, variant;
    int fd;        /* what the waiters wait on; closed by the closer */
    int peer;      /* the other end (-1: none); closed after the round */
    int64_t close_delay_ns;
    int64_t deadline_ns;  /* V_DEADLINE: relative */
    bool closer_thread;
    _Atomic int close_rc_set;
    int close_rc;
    _Atomic int64_t closed_at;  /* weft_now() when weft_close returned */
    _Atomic int entered;        /* waiters that have called into weft */
    int nwaiters;
} target;

typedef struct {
    target *t;
    int which;  /* for K_TWO: 0 read, 1 wait_fd */
    ssize_t rc;
    int64_t returned_at;
} waiter;

#define WRITE_SIZE (256 * 1024)
static char wbuf[WRITE_SIZE];

static void *waiter_main(void *p)
{
    waiter *w = p;
    target *t = w->t;
    int64_t dl = t->variant == V_DEADLINE ? weft_now() + t->deadline_ns : WEFT_FOREVER;
    char buf[64];
    atomic_fetch_add(&t->entered, 1);  /* the call below has begun */
    switch (t->kind) {
    case K_READ:
    case K_PIPE_READ: w->rc = weft_read(t->fd, buf, sizeof buf, dl); break;
    case K_WAIT_R: w->rc = weft_wait_fd(t->fd, WEFT_READABLE, dl); break;
    case K_WAIT_W: w->rc = weft_wait_fd(t->fd, WEFT_WRITABLE, dl); break;
    case K_WRITE: w->rc = weft_write(t->fd, wbuf, WRITE_SIZE, dl); break;
    case K_ACCEPT: w->rc = weft_accept(t->fd, dl); break;
    case K_TWO:
        w->rc = w->which == 0 ? weft_read(t->fd, buf, sizeof buf, dl)
                              : weft_wait_fd(t->fd, WEFT_READABLE, dl);
        break;
    }
    w->returned_at = weft_now();
    return NULL;
}

/* Closer body (coroutine or pool thread). */
static void do_close(target *t, bool coroutine)
{
    /* Close only once every waiter has begun its call: a call that begins
     * after weft_close is a use of a closed number, the caller's bug (the
     * number may already belong to another descriptor), not a race weft can
     * resolve.  From then on the race is weft's: the waiter may be anywhere
     * between its system call and its wait. */
    while (atomic_load(&t->entered) < t->nwaiters) {
        if (coroutine)
            weft_yield();
        else
            sched_yield();
    }
    if (t->close_delay_ns) {
        if (coroutine && t->close_delay_ns > 50 * WEFT_US)
            weft_sleep(t->close_delay_ns);
        else
            stress_spin_ns(t->close_delay_ns);
    }
    /* The peer acts at about the same moment. */
    if (t->variant == V_PEER && t->peer >= 0) {
        if (t->kind == K_WRITE || t->kind == K_WAIT_W) {
            char junk[65536];
            for (int i = 0; i < 64; i++)
                if (recv(t->peer, junk, sizeof junk, MSG_DONTWAIT) <= 0)
                    break;
        } else {
            ssize_t r = write(t->peer, "!", 1);
            (void)r;
        }
    }
    t->close_rc = weft_close(t->fd);
    atomic_store(&t->closed_at, weft_now());
    atomic_store(&t->close_rc_set, 1);
    atomic_fetch_add(&n_closes, 1);
}

static void *closer_co(void *p)
{
    do_close(p, true);
    return NULL;
}

static void *closer_th(void *p)
{
    do_close(p, false);
    return NULL;
}

/* A waiter must return promptly once its descriptor is closed (a longer
 * delay is a lost wake-up rescued by some unrelated event, such as the
 * 10 s bound's timer). */
#define WAKE_BOUND_NS (STRESS_SCALE(1, 4) * WEFT_SEC)

/* Checks a waiter's result against what its target allows. */
static void check_result(waiter *w)
{
    target *t = w->t;
    ssize_t rc = w->rc;
    atomic_fetch_add(&n_waits, 1);
    int64_t closed = atomic_load(&t->closed_at);
    if (closed && w->returned_at - closed > WAKE_BOUND_NS)
        FAIL("%s waiter (variant %d, closer %s) returned %.3f s after weft_close: lost wake-up",
             kind_name[t->kind], t->variant, t->closer_thread ? "thread" : "coroutine",
             (double)(w->returned_at - closed) / 1e9);
    if (rc == -EBADF) {
        atomic_fetch_add(&n_ebadf, 1);
        return;
    }
    if (rc == -ETIMEDOUT && t->variant == V_DEADLINE) {
        atomic_fetch_add(&n_timedout, 1);
        return;
    }
    if (t->variant == V_PEER) {
        bool ok = false;
        switch (t->kind) {
        case K_READ:
        case K_PIPE_READ: ok = rc == 1; break;
        case K_WAIT_R: ok = rc == WEFT_READABLE; break;
        case K_WAIT_W: ok = rc == WEFT_WRITABLE; break;
        case K_WRITE: ok = rc == WRITE_SIZE; break;
        case K_TWO: ok = w->which == 0 ? rc == 1 : rc == WEFT_READABLE; break;
        default: break;
        }
        if (ok) {
            atomic_fetch_add(&n_data, 1);
            return;
        }
    }
    FAIL("%s waiter (variant %d, closer %s, delay %" PRId64 " ns) returned %zd (%s)",
         kind_name[t->kind], t->variant, t->closer_thread ? "thread" : "coroutine",
         t->close_delay_ns, rc, rc < 0 ? strerror((int)-rc) : "a result it cannot have");
}

static int tcp_pair(int lfd, const char *port, int *a, int *b)
{
    *a = weft_tcp_connect("127.0.0.1", port, weft_now() + 5 * WEFT_SEC);
    if (*a < 0)
        return *a;
    *b = weft_accept(lfd, weft_now() + 5 * WEFT_SEC);
    if (*b < 0) {
        weft_close(*a);
        return *b;
    }
    return 0;
}

static void small_buffers(int fd)
{
    int v = 4096;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
}

static void fill(int fd)
{
    static const char junk[4096];
    while (send(fd, junk, sizeof junk, MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
        ;
}

static void *race_main(void *arg)
{
    (void)arg;
    uint64_t rng = rng_seed();
    int lfd = weft_tcp_listen("127.0.0.1", "0", 0);
    if (lfd < 0) {
        FAIL("listen: %s", strerror(-lfd));
        return NULL;
    }
    small_buffers(lfd);
    char port[16];
    snprintf(port, sizeof port, "%d", weft_local_port(lfd));
    target *ts = calloc(TARGETS, sizeof *ts);
    waiter *ws = calloc(2 * TARGETS, sizeof *ws);
    weft_task **wt = calloc(2 * TARGETS, sizeof *wt);
    weft_task **ct = calloc(TARGETS, sizeof *ct);

    while (!stress_time_up() && !stress_failed()) {
        int before = stress_count_fds();
        int64_t round_start = weft_now();
        atomic_store(&phase, "creating descriptors");
        /* Phase 1: descriptors. */
        for (int i = 0; i < TARGETS; i++) {
            target *t = &ts[i];
            memset(t, 0, sizeof *t);
            t->kind = (int)rng_below(&rng, NKINDS);
            t->variant = (int)rng_below(&rng, NVARIANTS);
            t->peer = -1;
            t->closer_thread = rng_below(&rng, 4) == 0;
            t->close_delay_ns = rng_below(&rng, 3) == 0 ? 0 : (int64_t)rng_below(&rng, 200000);
            t->deadline_ns = (int64_t)rng_below(&rng, 300000);
            int a, b, p[2];
            switch (t->kind) {
            case K_ACCEPT:
                t->fd = weft_tcp_listen("127.0.0.1", "0", 0);
                if (t->variant == V_PEER)
                    t->variant = V_PLAIN;  /* a connect would create a descriptor */
                break;
            case K_PIPE_READ:
                if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
                    FAIL("pipe2: %s", strerror(errno));
                    t->fd = -1;
                    break;
                }
                t->fd = p[0];
                t->peer = p[1];
                break;
            default:
                if (tcp_pair(lfd, port, &a, &b) != 0) {
                    FAIL("tcp pair failed");
                    t->fd = -1;
                    break;
                }
                t->fd = a;
                t->peer = b;
                if (t->kind == K_WRITE || t->kind == K_WAIT_W) {
                    small_buffers(a);
                    fill(a);
                }
                break;
            }
        }
        atomic_store(&phase, "spawning waiters and closers");
        /* Phase 2: waiters and closers, racing. */
        int nw = 0;
        for (int i = 0; i < TARGETS; i++) {
            target *t = &ts[i];
            if (t->fd < 0)
                continue;
            int k = t->kind == K_TWO ? 2 : 1;
            t->nwaiters = k;
            for (int j = 0; j < k; j++) {
                ws[nw] = (waiter){.t = t, .which = j};
                wt[nw] = weft_spawn(waiter_main, &ws[nw]);
                nw++;
            }
            ct[i] = t->closer_thread ? weft_spawn_blocking(closer_th, t) : weft_spawn(closer_co, t);
        }
        atomic_store(&phase, "joining waiters");
        /* Phase 3: every waiter returns; results checked. */
        for (int i = 0; i < nw; i++) {
            int rc = weft_wait_for(wt[i], weft_now() + 10 * WEFT_SEC, NULL);
            if (rc == -ETIMEDOUT) {
                FAIL("%s waiter not woken by weft_close within 10 s (variant %d)",
                     kind_name[ws[i].t->kind], ws[i].t->variant);
                continue;
            }
            check_result(&ws[i]);
            stress_progress();
        }
        atomic_store(&phase, "joining closers");
        for (int i = 0; i < TARGETS; i++) {
            target *t = &ts[i];
            if (t->fd < 0)
                continue;
            weft_join(ct[i], NULL);
            CHECK(atomic_load(&t->close_rc_set) && t->close_rc == 0,
                  "weft_close returned %d", t->close_rc);
            if (t->peer >= 0)
                weft_close(t->peer);
        }
        int after = stress_count_fds();
        CHECK(after == before, "round leaked descriptors: %d before, %d after", before, after);
        /* A round is a few milliseconds of work: seconds mean something
         * waited for an unrelated event to be woken. */
        int64_t took = weft_now() - round_start;
        CHECK(took < STRESS_SCALE(3, 8) * WEFT_SEC, "a round took %.3f s: a lost wake-up", (double)took / 1e9);
        atomic_fetch_add(&n_rounds, 1);
    }
    weft_close(lfd);
    free(ts);
    free(ws);
    free(wt);
    free(ct);
    return NULL;
}

int main(void)
{
    stress_init("stress_close_race", 4, dump);
    signal(SIGPIPE, SIG_IGN);  /* (raw write() to a pipe whose reader closed) */
    int fds = stress_count_fds();
    stress_run(4, race_main, NULL);
    int after = stress_count_fds();
    CHECK(after == fds, "%d descriptors before weft_run, %d after", fds, after);
    return stress_finish("%" PRIu64 " rounds, %" PRIu64 " waits: %" PRIu64 " -EBADF, %" PRIu64
                         " data/ready, %" PRIu64 " -ETIMEDOUT; %" PRIu64 " closes",
                         atomic_load(&n_rounds), atomic_load(&n_waits), atomic_load(&n_ebadf),
                         atomic_load(&n_data), atomic_load(&n_timedout), atomic_load(&n_closes));
}
