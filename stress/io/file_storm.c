/*
 * stress_file_storm: weft_pread / weft_pwrite from many coroutines at once,
 * on the workers' io_uring rings and the blocking pool, with cancellations
 * racing operations in flight.
 *
 * Phases (time split evenly): WEFT_IO_URING=auto on 2 workers, async on 3
 * (every completion comes back through the shared poller, often reaped by
 * another worker than the submitter), async on 1 worker with more
 * coroutines than a ring holds in flight (the rest overflow to the pool),
 * and off on 2 (the pool).  WEFT_IO_URING / WEFT_WORKERS set outside pick
 * one phase.
 *
 * Each phase: a file of BLOCKS blocks of 4 KiB.  Block b belongs to owner
 * b % OWNERS, which rewrites its blocks again and again with a new version
 * (the block's bytes are a pattern of (block, version)) and reads each back
 * at once.  Readers read random blocks of a read-only region and check the
 * pattern.  A canceller cancels random readers and owners; each is replaced
 * by a new one.
 *
 * Invariants:
 *  - every pwrite returns the full length, every pread the full length
 *    with the right bytes, or -ECANCELED in a cancelled task (nothing else);
 *  - an owner's read-back is what it just wrote;
 *  - after the phase, every block holds the last version its owner knows it
 *    wrote, or one it tried later in a write that was cancelled (such a
 *    write ran all the way or not at all): no write lost, put on another
 *    block, or torn;
 *  - weft_run returns with the descriptor count back where it was (the
 *    rings are closed).
 */
#include "../stress.h"

#include <fcntl.h>
#include <sys/stat.h>

#define BLK 4096
#define OWNERS STRESS_SCALE(32, 8)
#define BLOCKS_PER_OWNER 8
#define BLOCKS (OWNERS * BLOCKS_PER_OWNER)
#define RO_BLOCKS 256          /* the readers' region, after the owners' */
#define READERS STRESS_SCALE(64, 16)
#define FLOOD STRESS_SCALE(400, 300) /* 1-worker phase: past a ring's 256 */

static _Atomic uint64_t n_writes, n_reads, n_cancelled, n_tasks;
static const char *_Atomic phase = "starting";

static void dump(void)
{
    fprintf(stderr, "  phase %s: writes %" PRIu64 ", reads %" PRIu64 ", cancelled %" PRIu64
                    ", tasks %" PRIu64 "\n",
            atomic_load(&phase), atomic_load(&n_writes), atomic_load(&n_reads),
            atomic_load(&n_cancelled), atomic_load(&n_tasks));
}

static unsigned char pat(uint64_t block, uint64_t version, size_t i)
{
    uint64_t x = (block + 1) * 0x9E3779B97F4A7C15ull ^ (version + 7) * 0xD6E8FEB86659FD93ull;
    x += i * 0xBF58476D1CE4E5B9ull;
    x ^= x >> 31;
    return (unsigned char)(x ^ (x >> 11));
}

static void fill(unsigned char *b, uint64_t block, uint64_t version)
{
    memcpy(b, &block, 8);
    memcpy(b + 8, &version, 8);
    for (size_t i = 16; i < BLK; i++)
        b[i] = pat(block, version, i);
}

/* The version a block holds, or UINT64_MAX when it is not a whole, valid
 * block of that number. */
static uint64_t version_of(const unsigned char *b, uint64_t block)
{
    uint64_t blk, ver;
    memcpy(&blk, b, 8);
    memcpy(&ver, b + 8, 8);
    if (blk != block)
        return UINT64_MAX;
    for (size_t i = 16; i < BLK; i++)
        if (b[i] != pat(block, ver, i))
            return UINT64_MAX;
    return ver;
}

typedef struct owner_state {
    /* Written by the owner task of the moment (one at a time: a new one
     * starts after the old one is joined). */
    uint64_t lo[BLOCKS_PER_OWNER];  /* the last write known to have completed */
    uint64_t hi[BLOCKS_PER_OWNER];  /* the last write tried (a cancelled
                                       write ran all the way or not at all) */
} owner_state;

typedef struct phase_ctx {
    int fd;
    unsigned owners, readers;
    owner_state own[OWNERS];
    weft_task *_Atomic owner_task[OWNERS];
    weft_task *_Atomic reader_task[STRESS_SCALE(400, 300)];
    _Atomic bool stop;
    uint64_t rng;
} phase_ctx;

typedef struct owner_arg {
    phase_ctx *c;
    unsigned id;
} owner_arg;

static owner_arg owner_args[OWNERS];
static owner_arg reader_args[STRESS_SCALE(400, 300)];

static void *owner_main(void *arg)
{
    owner_arg *a = arg;
    phase_ctx *c = a->c;
    owner_state *s = &c->own[a->id];
    unsigned char *b = malloc(BLK), *r = malloc(BLK);
    while (!atomic_load(&c->stop)) {
        for (unsigned k = 0; k < BLOCKS_PER_OWNER && !atomic_load(&c->stop); k++) {
            uint64_t block = (uint64_t)k * c->owners + a->id;
            uint64_t v = s->hi[k] + 1;
            fill(b, block, v);
            ssize_t n = weft_pwrite(c->fd, b, BLK, (off_t)block * BLK);
            if (n == -ECANCELED) {
                /* It reached the file whole or not at all: the block
                 * holds some version in lo..v. */
                s->hi[k] = v;
                atomic_fetch_add(&n_cancelled, 1);
                goto out;
            }
            CHECK(n == BLK, "pwrite of block %" PRIu64 " returned %zd", block, n);
            s->lo[k] = s->hi[k] = v;
            atomic_fetch_add(&n_writes, 1);
            n = weft_pread(c->fd, r, BLK, (off_t)block * BLK);
            if (n == -ECANCELED) {
                atomic_fetch_add(&n_cancelled, 1);
                goto out;
            }
            CHECK(n == BLK && memcmp(r, b, BLK) == 0,
                  "read-back of block %" PRIu64 " version %" PRIu64 ": %zd bytes, %s", block, v,
                  n, n == BLK ? "other bytes" : "short");
            atomic_fetch_add(&n_reads, 1);
            stress_progress();
        }
    }
out:
    free(b);
    free(r);
    return NULL;
}

static void *reader_main(void *arg)
{
    owner_arg *a = arg;
    phase_ctx *c = a->c;
    unsigned char *b = malloc(BLK);
    uint64_t rng = rng_seed();
    while (!atomic_load(&c->stop)) {
        uint64_t block = (uint64_t)BLOCKS + rng_below(&rng, RO_BLOCKS);
        ssize_t n = weft_pread(c->fd, b, BLK, (off_t)block * BLK);
        if (n == -ECANCELED) {
            atomic_fetch_add(&n_cancelled, 1);
            break;
        }
        CHECK(n == BLK && version_of(b, block) == 0, "read of block %" PRIu64 ": %zd bytes%s",
              block, n, n == BLK ? ", wrong bytes" : "");
        atomic_fetch_add(&n_reads, 1);
        stress_progress();
    }
    free(b);
    return NULL;
}

static void *phase_main(void *arg)
{
    phase_ctx *c = arg;
    for (unsigned i = 0; i < c->owners; i++) {
        owner_args[i] = (owner_arg){c, i};
        atomic_store(&c->owner_task[i], weft_spawn(owner_main, &owner_args[i]));
    }
    for (unsigned i = 0; i < c->readers; i++) {
        reader_args[i] = (owner_arg){c, i};
        atomic_store(&c->reader_task[i], weft_spawn(reader_main, &reader_args[i]));
    }
    atomic_fetch_add(&n_tasks, c->owners + c->readers);
    /* The canceller: every ~0.2 ms, cancel one task and replace it. */
    while (!stress_time_up()) {
        weft_sleep((int64_t)rng_below(&c->rng, 400) * 1000);
        bool owner = rng_below(&c->rng, 2) == 0;
        unsigned i = (unsigned)rng_below(&c->rng, owner ? c->owners : c->readers);
        weft_task *_Atomic *slot = owner ? &c->owner_task[i] : &c->reader_task[i];
        weft_task *t = atomic_load(slot);
        weft_cancel(t);
        int rc = weft_join(t, NULL);
        CHECK(rc == 0 || rc == -ECANCELED, "join of a cancelled task: %d", rc);
        atomic_store(slot, weft_spawn(owner ? owner_main : reader_main,
                                      owner ? (void *)&owner_args[i] : (void *)&reader_args[i]));
        atomic_fetch_add(&n_tasks, 1);
    }
    atomic_store(&c->stop, true);
    for (unsigned i = 0; i < c->owners; i++)
        weft_join(atomic_load(&c->owner_task[i]), NULL);
    for (unsigned i = 0; i < c->readers; i++)
        weft_join(atomic_load(&c->reader_task[i]), NULL);
    return NULL;
}

static void run_phase(const char *mode, unsigned workers, unsigned readers, double seconds,
                      const char *path)
{
    atomic_store(&phase, mode);
    phase_ctx *c = calloc(1, sizeof *c);
    c->owners = OWNERS;
    c->readers = readers;
    c->rng = rng_seed();
    c->fd = open(path, O_RDWR | O_CLOEXEC);
    CHECK(c->fd >= 0, "open %s: %s", path, strerror(errno));
    /* Version 0 everywhere: the owners' blocks and the readers' region. */
    unsigned char b[BLK];
    for (uint64_t blk = 0; blk < BLOCKS + RO_BLOCKS; blk++) {
        fill(b, blk, 0);
        CHECK(pwrite(c->fd, b, BLK, (off_t)blk * BLK) == BLK, "setup write");
    }
    setenv("WEFT_IO_URING", mode, 1);
    int fds = stress_count_fds();
    stress_t_end = weft_now() + (int64_t)(seconds * 1e9);
    stress_run(workers, phase_main, c);
    int after = stress_count_fds();
    fprintf(stderr, "stress_file_storm: %s on %u workers: %" PRIu64 " reads, %" PRIu64
                    " writes so far\n", mode, workers, atomic_load(&n_reads),
            atomic_load(&n_writes));
    CHECK(after == fds, "%s: %d descriptors before weft_run, %d after", mode, fds, after);
    /* Every block holds its owner's last version (or, after a cancelled
     * write, the version before it). */
    for (unsigned o = 0; o < OWNERS; o++)
        for (unsigned k = 0; k < BLOCKS_PER_OWNER; k++) {
            uint64_t block = (uint64_t)k * OWNERS + o;
            CHECK(pread(c->fd, b, BLK, (off_t)block * BLK) == BLK, "final read");
            uint64_t v = version_of(b, block), lo = c->own[o].lo[k], hi = c->own[o].hi[k];
            CHECK(v >= lo && v <= hi,
                  "%s: block %" PRIu64 " holds version %" PRIu64 ", its owner wrote %" PRIu64
                  " (and tried up to %" PRIu64 ")", mode, block, v, lo, hi);
        }
    close(c->fd);
    free(c);
}

int main(void)
{
    double total = stress_seconds(4);
    stress_init("stress_file_storm", 4, dump);
    char path[] = "/tmp/weft-file-storm-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
    close(fd);
    const char *fixed_mode = getenv("WEFT_IO_URING");
    const char *fixed_workers = getenv("WEFT_WORKERS");
    if ((fixed_mode && *fixed_mode) || (fixed_workers && *fixed_workers)) {
        char mode[16];
        snprintf(mode, sizeof mode, "%s", fixed_mode && *fixed_mode ? fixed_mode : "auto");
        run_phase(mode, 2, READERS, total, path);
    } else {
        run_phase("auto", 2, READERS, total / 4, path);
        if (!stress_failed())
            run_phase("async", 3, READERS, total / 4, path);
        if (!stress_failed())
            run_phase("async", 1, FLOOD, total / 4, path);
        if (!stress_failed())
            run_phase("off", 2, READERS, total / 4, path);
    }
    unlink(path);
    return stress_finish("%" PRIu64 " writes, %" PRIu64 " reads checked, %" PRIu64
                         " cancelled mid-run over %" PRIu64 " tasks; every block holds its "
                         "owner's last write",
                         atomic_load(&n_writes), atomic_load(&n_reads),
                         atomic_load(&n_cancelled), atomic_load(&n_tasks));
}
