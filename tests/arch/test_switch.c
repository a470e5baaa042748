/*
 * The context switch on its own (runtime/arch/<cpu>/): values kept in
 * callee-saved registers survive a round trip, each context keeps its own
 * floating-point rounding mode (the FP control state is switched), a new
 * context starts with the default mode, deep calls work on the coroutine
 * stack, and ten million round trips leave everything consistent.  The
 * worker thread-local read (tls.h) follows a coroutine that resumes on
 * another thread: each read sees the thread it runs on now.
 * Self-contained (no runtime), so it also runs under qemu for another CPU:
 * see run_cross.sh.
 */
#include <fenv.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "context.h"
#include "tls.h"

static void *main_sp, *co_sp;
static volatile long rounds;
static int co_round_mode_ok = 1;
static int co_initial_mode = -1;

#define CHECK(c)                                                                   \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);  \
            exit(1);                                                               \
        }                                                                          \
    } while (0)

static long __attribute__((noinline)) deep(int n)
{
    volatile char pad[256];
    pad[0] = (char)n;
    return n ? deep(n - 1) + pad[0] : 0;
}

static void co(void *arg)
{
    CHECK(arg == (void *)0x5eed);
    co_initial_mode = fegetround();
    fesetround(FE_DOWNWARD);
    CHECK(deep(100) == 5050);
    for (;;) {
        /* Many live values across the switch: they sit in callee-saved
         * registers, which the switch must preserve. */
        long a = rounds, b = a * 3, c = a ^ 0x55, d = a + 7, e = a * a, f = ~a;
        weft__ctx_switch(&co_sp, main_sp);
        if (fegetround() != FE_DOWNWARD)
            co_round_mode_ok = 0;
        CHECK(b == a * 3 && c == (a ^ 0x55) && d == a + 7 && e == a * a && f == ~a);
        rounds++;
    }
}

/* Migration: one coroutine resumed by two threads in turn.  Read through
 * WEFT__TLS_LOAD, the thread-local must name the resuming thread every time;
 * a read that reused the thread pointer from before a switch (what a
 * compiler may do with a plain C access: the hazard weft__cur_worker guards
 * against) would see the other thread's. */
__thread void *mig_tls __attribute__((tls_model("initial-exec")));
#define MIG_ROUNDS 20000
static void *mig_sp, *mig_thread_sp[2];
static void **mig_back;
static void *mig_expect;
static long mig_reads, mig_wrong;
static _Atomic int mig_turn;
static char mig_marks[2];

static void mig(void *arg)
{
    (void)arg;
    for (;;) {
        void *before = WEFT__TLS_LOAD(mig_tls);
        mig_reads++;
        if (before != mig_expect)
            mig_wrong++;
        weft__ctx_switch(&mig_sp, *mig_back);
        /* Resumed, most likely by the other thread. */
        void *after = WEFT__TLS_LOAD(mig_tls);
        mig_reads++;
        if (after != mig_expect)
            mig_wrong++;
    }
}

static void *mig_thread(void *arg)
{
    int me = (int)(intptr_t)arg;
    mig_tls = &mig_marks[me];
    for (long r = 0; r < MIG_ROUNDS; r++) {
        /* acquire: pairs with the other thread's release below, after its
         * switch saved mig_sp. */
        while (atomic_load_explicit(&mig_turn, memory_order_acquire) != me)
            ;
        mig_expect = &mig_marks[me];
        mig_back = &mig_thread_sp[me];
        weft__ctx_switch(&mig_thread_sp[me], mig_sp);
        atomic_store_explicit(&mig_turn, 1 - me, memory_order_release);
    }
    return NULL;
}

static void test_migration(void)
{
    size_t size = 64 * 1024;
    char *stack = malloc(size);
    CHECK(stack != NULL);
    mig_sp = weft__ctx_make(stack + size, mig, NULL);
    pthread_t th[2];
    for (intptr_t i = 0; i < 2; i++)
        CHECK(pthread_create(&th[i], NULL, mig_thread, (void *)i) == 0);
    for (int i = 0; i < 2; i++)
        CHECK(pthread_join(th[i], NULL) == 0);
    /* Each of the 2 * MIG_ROUNDS resumptions read once after it landed and
     * once before it left (the first landing is the entry, no read). */
    CHECK(mig_reads == 2L * 2 * MIG_ROUNDS - 1);
    CHECK(mig_wrong == 0);
    free(stack);
    printf("thread-local: %ld reads across %d migrations ok\n", mig_reads, 2 * MIG_ROUNDS);
}

int main(void)
{
    test_migration();

    size_t size = 256 * 1024;
    char *stack = malloc(size);
    CHECK(stack != NULL);
    co_sp = weft__ctx_make(stack + size, co, (void *)0x5eed);
    fesetround(FE_TOWARDZERO);
    weft__ctx_switch(&main_sp, co_sp);
    CHECK(co_initial_mode == FE_TONEAREST);   /* a new context: default mode */
    CHECK(fegetround() == FE_TOWARDZERO);     /* ours came back */
    const long n = 10000000;
    for (long i = 0; i < n; i++) {
        long x = i * 5, y = i - 9, z = i ^ 0x1234;
        weft__ctx_switch(&main_sp, co_sp);
        CHECK(x == i * 5 && y == i - 9 && z == (i ^ 0x1234));
    }
    CHECK(rounds == n);
    CHECK(co_round_mode_ok);
    CHECK(fegetround() == FE_TOWARDZERO);
    fesetround(FE_TONEAREST);
    free(stack);
    printf("switch: %ld round trips ok\n", n);
    return 0;
}
