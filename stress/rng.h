/*
 * xorshift64*: a small deterministic generator for stress programs and
 * tests.  Keep the state in the coroutine's frame or its argument, never in
 * a thread-local (a coroutine may move between threads); a seed printed by
 * the caller replays a run.
 */
#ifndef WEFT_STRESS_RNG_H
#define WEFT_STRESS_RNG_H

#include <stdint.h>

static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform enough in [0, n) for tests; 0 when n is 0. */
static inline uint64_t rng_below(uint64_t *s, uint64_t n) { return n ? rng_next(s) % n : 0; }

#endif
