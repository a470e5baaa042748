/*
 * Leak checks for the cmocka tests: what weft_run leaves behind.
 *
 *   leak_snap s = leak_snapshot();
 *   int rc = weft_run(...);
 *   leak_check(&s);
 *
 * Open descriptors (/proc/self/fd) must be back to exactly the number before.
 * Mappings (/proc/self/maps lines) may grow by at most LEAK_MAPS_SLACK: glibc
 * keeps per-thread malloc arenas and caches the stacks of joined threads, so
 * the first runtime with more threads than before adds a few mappings that
 * stay.  Each test program warms up (t_warm_up in testutil.h) so that this
 * is rare, and anything beyond a handful of mappings (coroutine stacks come
 * in chunks of many; a leak of them shows at once) is a real leak.
 *
 * Under ASan and TSan the mapping count is not checked: the sanitizers'
 * own allocators map memory (shadow, fake stacks, per-fiber state) that
 * they keep for the process's lifetime.  Descriptors are still checked
 * exactly, and leaked tasks and memory are caught by LeakSanitizer in the
 * ASan build.
 */
#ifndef WEFT_TEST_LEAK_H
#define WEFT_TEST_LEAK_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef LEAK_MAPS_SLACK
#define LEAK_MAPS_SLACK 8
#endif

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LEAK_CHECK_MAPS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define LEAK_CHECK_MAPS 0
#endif
#endif
#ifndef LEAK_CHECK_MAPS
#define LEAK_CHECK_MAPS 1
#endif

typedef struct leak_snap {
    int fds;
    int maps;
} leak_snap;

/* Open descriptors, not counting the one opendir uses to read the list. */
static inline int leak_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

/* Lines in /proc/self/maps. */
static inline int leak_count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    int n = 0, c;
    while ((c = getc(f)) != EOF)
        if (c == '\n')
            n++;
    fclose(f);
    return n;
}

static inline leak_snap leak_snapshot(void)
{
    leak_snap s;
    s.fds = leak_count_fds();
    s.maps = leak_count_maps();
    return s;
}

/* Asserts (cmocka) that nothing weft_run opened or mapped is left. */
#define leak_check(snap)                                                                 \
    do {                                                                                 \
        const leak_snap *leak_b_ = (snap);                                               \
        int leak_fds_ = leak_count_fds();                                                \
        int leak_maps_ = LEAK_CHECK_MAPS ? leak_count_maps() : leak_b_->maps;            \
        if (leak_fds_ != leak_b_->fds || leak_maps_ > leak_b_->maps + LEAK_MAPS_SLACK)   \
            fprintf(stderr, "leak_check: fds %d -> %d, maps %d -> %d\n", leak_b_->fds,  \
                    leak_fds_, leak_b_->maps, leak_maps_);                               \
        assert_int_equal(leak_fds_, leak_b_->fds);                                       \
        assert_true(leak_maps_ <= leak_b_->maps + LEAK_MAPS_SLACK);                      \
    } while (0)

#endif
