/*
 * The seeded runs' random numbers (WEFT_SEED; runtime/seed.c): xoshiro256**
 * (Blackman and Vigna), seeded through splitmix64, as their paper
 * recommends.  Portable and the same on every platform, so a seed replays
 * anywhere; never libc rand(), whose sequence differs between C libraries
 * and whose state is shared with the application.
 */
#ifndef WEFT_RNG_H
#define WEFT_RNG_H

#include <stdint.h>

typedef struct weft__rng {
    uint64_t s[4];
} weft__rng;

/* splitmix64: one step of a sequence that spreads any seed (0 included)
 * over the 256 bits of xoshiro's state. */
static inline uint64_t weft__splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* A stream of its own for each (seed, stream) pair: the workers' and the
 * fault injector's draws never interleave with one another. */
static inline void weft__rng_seed(weft__rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * UINT64_C(0xd1b54a32d192ed03));
    for (int i = 0; i < 4; i++)
        r->s[i] = weft__splitmix64(&x);
}

static inline uint64_t weft__rng_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t weft__rng_next(weft__rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = weft__rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = weft__rng_rotl(s[3], 45);
    return result;
}

/* Uniform in [0, n), n > 0 (Lemire's multiply-shift; the bias for the
 * small n used here is below 2^-40 and no seed depends on it). */
static inline uint32_t weft__rng_below(weft__rng *r, uint32_t n)
{
    return (uint32_t)(((weft__rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

#endif
