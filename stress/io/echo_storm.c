/*
 * stress_echo_storm: many clients against a line echo server (streams, a
 * weft_server) on 2, 3 and 4 workers in turn (a third of the budget each;
 * WEFT_WORKERS fixes one count for the whole run).  The 3-worker run sets
 * WEFT_SPREAD_US=0 (unless the caller set it): every poll's batch then wakes
 * a helper at once, so spread_check's notify races thieves all the time.
 *
 * Each client connection has a writer coroutine and a reader coroutine on
 * the same descriptor, so that the two directions' waiters are separate
 * tasks, woken by whichever worker's poller sees the edge and stolen by
 * idle workers:
 *  - the writer sends lines "c<conn> s<seq> <payload>\n" (payload 0..300
 *    bytes, now and then a few KiB, derived from conn and seq), with
 *    weft_write calls whose boundaries fall anywhere (a line split over
 *    several writes, several lines in one), keeping at most WINDOW lines
 *    unanswered (a weft_sem);
 *  - the reader reads the echoes with weft_stream_readline and compares
 *    each with the line it regenerates from (conn, seq): every byte echoed
 *    exactly once and in order, per connection; and no echo comes later
 *    than 2 s (8 s under a sanitizer) after its line was written: a longer
 *    delay is a lost wake-up rescued by some unrelated event;
 *  - a connection lives for a random number of lines (or until the time is
 *    up), then the writer shuts down its side; the server's handler answers the rest, sees EOF and
 *    returns; the reader must then see end of stream exactly after the last
 *    line; and a new connection takes its place (accept / close churn,
 *    descriptor numbers reused).
 * At the end of each runtime: server closed, every handler returned, the
 * descriptor count back to where it was before weft_run.
 *
 * Default 4 s; WEFT_STRESS_SECONDS for longer.
 */
#include "../stress.h"

#include <sys/socket.h>

#define CONNS STRESS_SCALE(64, 16)
#define WINDOW 16
#define LINE_MAX_LEN 8192

static _Atomic uint64_t n_lines, n_bytes, n_conns, n_handlers_started, n_handlers_done;
static _Atomic int64_t n_active_conns;

static void dump(void)
{
    fprintf(stderr,
            "  lines echoed %" PRIu64 ", bytes %" PRIu64 ", connections %" PRIu64
            " (active %" PRId64 "), handlers %" PRIu64 " started / %" PRIu64 " done\n",
            atomic_load(&n_lines), atomic_load(&n_bytes), atomic_load(&n_conns),
            atomic_load(&n_active_conns), atomic_load(&n_handlers_started),
            atomic_load(&n_handlers_done));
}

/* ------------------------------------------------------------------ */
/* Server                                                              */
/* ------------------------------------------------------------------ */

static void echo_handler(weft_stream *s, void *ctx)
{
    (void)ctx;
    atomic_fetch_add(&n_handlers_started, 1);
    char *line = malloc(LINE_MAX_LEN);
    for (;;) {
        ssize_t n = weft_stream_readline(s, line, LINE_MAX_LEN, WEFT_FOREVER);
        if (n <= 0) {
            CHECK(n == 0 || n == -ECANCELED, "handler: readline returned %zd", n);
            break;
        }
        if (weft_stream_write(s, line, (size_t)n) < 0)
            break;
        if (weft_stream_drain(s, WEFT_FOREVER) < 0)
            break;
    }
    free(line);
    atomic_fetch_add(&n_handlers_done, 1);
}

/* ------------------------------------------------------------------ */
/* Lines                                                               */
/* ------------------------------------------------------------------ */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* The line number seq of connection conn (NUL-terminated); its length. */
static size_t make_line(uint64_t conn, uint64_t seq, char *out)
{
    uint64_t h = mix(conn * 1000003 + seq);
    size_t plen = h % 301;
    if ((h >> 20) % 50 == 0)
        plen = 1000 + (h >> 32) % 4000;
    int k = sprintf(out, "c%" PRIu64 " s%" PRIu64 " ", conn, seq);
    for (size_t i = 0; i < plen; i++)
        out[k + i] = (char)(' ' + 1 + (mix(h + i) % 94));
    out[k + plen] = '\n';
    out[k + plen + 1] = 0;
    return (size_t)k + plen + 1;
}

/* ------------------------------------------------------------------ */
/* Clients                                                             */
/* ------------------------------------------------------------------ */

typedef struct {
    int fd;
    uint64_t conn;
    uint64_t lines;      /* how many this connection sends */
    weft_sem window;
    _Atomic uint64_t sent;
    _Atomic int64_t sent_at[WINDOW];  /* by seq % WINDOW: when the line was made */
} conn_state;

/* No line may take longer than this from being written to being echoed (a
 * lost wake-up rescued by an unrelated event shows up as seconds). */
#define ECHO_BOUND_NS (STRESS_SCALE(2, 8) * WEFT_SEC)
static _Atomic int64_t max_echo_ns;

static void *writer_main(void *p)
{
    conn_state *c = p;
    uint64_t rng = rng_seed();
    char *buf = malloc(64 * 1024);
    size_t len = 0;
    char line[LINE_MAX_LEN];
    for (uint64_t seq = 0; seq < c->lines; seq++) {
        if (stress_time_up() && !len)
            break;  /* out of time: end this connection early */
        if (weft_sem_acquire(&c->window) != 0)
            break;
        size_t n = make_line(c->conn, seq, line);
        atomic_store(&c->sent_at[seq % WINDOW], weft_now());
        memcpy(buf + len, line, n);
        len += n;
        atomic_fetch_add(&c->sent, 1);
        /* Flush at random points: sometimes mid-line, sometimes several
         * lines at once; always when the window is about to block. */
        bool last = seq + 1 == c->lines || stress_time_up();
        if (last || len > 32 * 1024 || weft_sem_value(&c->window) == 0 || rng_below(&rng, 3) == 0) {
            size_t cut = len;
            if (!last && len > 1 && rng_below(&rng, 4) == 0)
                cut = 1 + rng_below(&rng, len - 1);  /* part of a line now, the rest later */
            ssize_t r = weft_write(c->fd, buf, cut, WEFT_FOREVER);
            CHECK(r == (ssize_t)cut, "conn %" PRIu64 ": weft_write returned %zd", c->conn, r);
            if (r != (ssize_t)cut)
                break;
            memmove(buf, buf + cut, len - cut);
            len -= cut;
            if (len && weft_sem_value(&c->window) == 0) {
                r = weft_write(c->fd, buf, len, WEFT_FOREVER);
                CHECK(r == (ssize_t)len, "conn %" PRIu64 ": weft_write returned %zd", c->conn, r);
                len = 0;
            }
        }
    }
    if (len) {
        ssize_t r = weft_write(c->fd, buf, len, WEFT_FOREVER);
        CHECK(r == (ssize_t)len, "conn %" PRIu64 ": final weft_write returned %zd", c->conn, r);
    }
    shutdown(c->fd, SHUT_WR);
    free(buf);
    return NULL;
}

static void *reader_main(void *p)
{
    conn_state *c = p;
    weft_stream *s = weft_stream_new(c->fd);
    char got[LINE_MAX_LEN], want[LINE_MAX_LEN];
    uint64_t seq = 0;
    for (;;) {
        ssize_t n = weft_stream_readline(s, got, sizeof got, WEFT_FOREVER);
        if (n == 0)
            break;
        if (n < 0) {
            FAIL("conn %" PRIu64 ": readline returned %zd after %" PRIu64 " lines", c->conn, n, seq);
            break;
        }
        size_t wl = make_line(c->conn, seq, want);
        if ((size_t)n != wl || memcmp(got, want, wl) != 0) {
            FAIL("conn %" PRIu64 ": echo of line %" PRIu64 " differs (got %zd bytes: %.40s)",
                 c->conn, seq, n, got);
            break;
        }
        int64_t lat = weft_now() - atomic_load(&c->sent_at[seq % WINDOW]);
        if (lat > atomic_load(&max_echo_ns))
            atomic_store(&max_echo_ns, lat);
        CHECK(lat <= ECHO_BOUND_NS, "conn %" PRIu64 ": line %" PRIu64 " echoed %.3f s after it was "
              "written: a lost wake-up", c->conn, seq, (double)lat / 1e9);
        seq++;
        atomic_fetch_add(&n_lines, 1);
        atomic_fetch_add(&n_bytes, (uint64_t)n);
        stress_progress();
        weft_sem_release(&c->window);
    }
    /* End of stream exactly after the last line sent (the writer has shut
     * down: its count is final). */
    CHECK(seq == atomic_load(&c->sent), "conn %" PRIu64 ": %" PRIu64 " lines echoed, %" PRIu64 " sent",
          c->conn, seq, atomic_load(&c->sent));
    weft_stream_close(s);  /* closes the fd (the writer has finished) */
    return NULL;
}

typedef struct {
    const char *port;
    uint64_t id;
} client_arg;

static _Atomic uint64_t conn_ids;

/* One client slot: connection after connection until the time is up. */
static void *client_main(void *p)
{
    client_arg *a = p;
    uint64_t rng = rng_seed() ^ a->id;
    while (!stress_time_up() && !stress_failed()) {
        int fd = weft_tcp_connect("127.0.0.1", a->port, weft_now() + 10 * WEFT_SEC);
        if (fd < 0) {
            FAIL("connect: %s", strerror(-fd));
            break;
        }
        atomic_fetch_add(&n_conns, 1);
        atomic_fetch_add(&n_active_conns, 1);
        conn_state *c = calloc(1, sizeof *c);
        c->fd = fd;
        c->conn = atomic_fetch_add(&conn_ids, 1);
        c->lines = 1 + rng_below(&rng, rng_below(&rng, 8) == 0 ? 20000 : 2000);
        weft_sem_init(&c->window, WINDOW);
        weft_task *t[2] = {weft_spawn(writer_main, c), weft_spawn(reader_main, c)};
        weft_gather(t, 2, NULL);
        weft_sem_destroy(&c->window);
        free(c);
        atomic_fetch_sub(&n_active_conns, 1);
    }
    return NULL;
}

static void *storm_main(void *arg)
{
    /* The budget starts once the runtime is up. */
    stress_rebudget(*(double *)arg, 4);
    uint64_t h0 = atomic_load(&n_handlers_started);
    weft_server *srv = weft_start_server("127.0.0.1", "0", echo_handler, NULL);
    if (!srv) {
        FAIL("weft_start_server: %s", strerror(errno));
        return NULL;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", weft_server_port(srv));
    client_arg *a = calloc(CONNS, sizeof *a);
    weft_task **t = calloc(CONNS, sizeof *t);
    for (int i = 0; i < CONNS; i++) {
        a[i] = (client_arg){port, (uint64_t)i};
        t[i] = weft_spawn(client_main, &a[i]);
    }
    weft_gather(t, CONNS, NULL);
    /* Every connection ended by its client: the handlers all return. */
    int64_t end = weft_now() + 10 * WEFT_SEC;
    while (atomic_load(&n_handlers_done) != atomic_load(&n_handlers_started) && weft_now() < end)
        weft_sleep(WEFT_MS);
    CHECK(atomic_load(&n_handlers_done) == atomic_load(&n_handlers_started),
          "%" PRIu64 " handlers still running after their clients closed",
          atomic_load(&n_handlers_started) - atomic_load(&n_handlers_done));
    CHECK(atomic_load(&n_handlers_started) - h0 > 0, "no connection was served");
    CHECK(weft_server_close(srv) == 0, "weft_server_close failed");
    free(a);
    free(t);
    return NULL;
}

int main(void)
{
    stress_init("stress_echo_storm", 4, dump);
    int64_t start = stress_t_start;
    const char *env = getenv("WEFT_WORKERS");
    bool fixed = env && *env;
    for (unsigned w = 2; w <= 4; w++) {
        double share = fixed ? 1.0 : 1.0 / 3;
        int fds = stress_count_fds();
        uint64_t l0 = atomic_load(&n_lines);
        bool spread_now = w == 3 && !getenv("WEFT_SPREAD_US");
        if (spread_now)
            setenv("WEFT_SPREAD_US", "0", 1);
        stress_run(w, storm_main, &share);
        if (spread_now)
            unsetenv("WEFT_SPREAD_US");
        int after = stress_count_fds();
        CHECK(after == fds, "%d descriptors before weft_run, %d after", fds, after);
        fprintf(stderr, "stress_echo_storm: %s workers: %" PRIu64 " lines echoed\n",
                fixed ? env : (char[]){(char)('0' + w), 0}, atomic_load(&n_lines) - l0);
        if (fixed || stress_failed())
            break;
    }
    stress_t_start = start;
    return stress_finish("%" PRIu64 " lines (%" PRIu64 " bytes) echoed over %" PRIu64
                         " connections, every byte once and in order; slowest echo %.1f ms",
                         atomic_load(&n_lines), atomic_load(&n_bytes), atomic_load(&n_conns),
                         (double)atomic_load(&max_echo_ns) / 1e6);
}
