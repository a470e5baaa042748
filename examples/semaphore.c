/*
 * semaphore: limiting concurrency, as asyncio.Semaphore is used for.
 *
 * Ten "downloads" start at once, but a semaphore of 3 lets only three run
 * at a time; the others wait in line (first come, first served) without
 * holding up their worker.  Each prints how many run beside it.
 *
 *   asyncio                         weft
 *   sem = asyncio.Semaphore(3)      weft_sem_init(&sem, 3)
 *   async with sem: ...             weft_sem_acquire(&sem); ...; weft_sem_release(&sem)
 *   (Go: a buffered channel of 3 tokens; golang.org/x/sync/semaphore)
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include <weft.h>

static weft_sem sem;
static atomic_int running, most;

static void *download(void *arg)
{
    int id = (int)(intptr_t)arg;
    if (weft_sem_acquire(&sem) != 0)
        return NULL;  /* cancelled while waiting: no permit taken */
    int now = atomic_fetch_add(&running, 1) + 1;
    int m = atomic_load(&most);
    while (now > m && !atomic_compare_exchange_weak(&most, &m, now))
        ;
    printf("download %d: started (%d running)\n", id, now);
    weft_sleep((20 + 10 * (id % 3)) * WEFT_MS);  /* the transfer */
    atomic_fetch_sub(&running, 1);
    printf("download %d: finished\n", id);
    weft_sem_release(&sem);
    return NULL;
}

static void *run(void *arg)
{
    (void)arg;
    weft_sem_init(&sem, 3);
    weft_task *ts[10];
    int64_t start = weft_now();
    for (int i = 0; i < 10; i++)
        ts[i] = weft_spawn(download, (void *)(intptr_t)i);
    weft_gather(ts, 10, NULL);
    printf("10 downloads, at most %d at once, in %.0f ms\n", atomic_load(&most),
           (double)(weft_now() - start) / WEFT_MS);
    weft_sem_destroy(&sem);
    return NULL;
}

int main(void)
{
    return weft_run(run, NULL, NULL) == 0 ? 0 : 1;
}
