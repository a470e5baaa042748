/*
 * The context switch on its own (runtime/arch/<cpu>/): values kept in
 * callee-saved registers survive a round trip, each context keeps its own
 * floating-point rounding mode (the FP control state is switched), a new
 * context starts with the default mode, deep calls work on the coroutine
 * stack, and ten million round trips leave everything consistent.
 * Self-contained (no runtime), so it also runs under qemu for another CPU:
 * see run_cross.sh.
 */
#include <fenv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "context.h"

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

int main(void)
{
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
