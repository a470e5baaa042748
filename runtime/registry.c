/*
 * The task registry: every allocated task, in shards (one per worker, one
 * for plain threads), each a spinlocked doubly linked list.  A task joins the
 * shard of the thread that spawned it and leaves it when it is freed, from
 * whatever thread drops its last reference.
 *
 * Used at shutdown (cancel every unfinished task, wait until none is left,
 * free what was never joined nor detached) and by the debug-mode report.
 * Each shard counts its unfinished tasks, so "how many are left" needs no
 * shared counter on the spawn path.
 */
#include "internal.h"

#include <stdio.h>

/* Any thread. */
void weft__reg_add(weft__shard *sh, weft_task *t)
{
    t->shard = sh;
    t->reg_prev = NULL;
    weft__spin_lock(&sh->lock);
    t->reg_next = sh->head;
    if (sh->head)
        sh->head->reg_prev = t;
    sh->head = t;
    sh->live++;
    sh->count++;
    weft__spin_unlock(&sh->lock);
}

/* Any thread: t has just finished. */
void weft__reg_finished(weft_task *t)
{
    weft__shard *sh = t->shard;
    weft__spin_lock(&sh->lock);
    sh->live--;
    weft__spin_unlock(&sh->lock);
}

/* Any thread: t is being freed. */
void weft__reg_remove(weft_task *t)
{
    weft__shard *sh = t->shard;
    weft__spin_lock(&sh->lock);
    if (t->reg_prev)
        t->reg_prev->reg_next = t->reg_next;
    else
        sh->head = t->reg_next;
    if (t->reg_next)
        t->reg_next->reg_prev = t->reg_prev;
    sh->count--;
    weft__spin_unlock(&sh->lock);
}

static void cancel_shard(weft__shard *sh)
{
    weft__spin_lock(&sh->lock);
    for (weft_task *t = sh->head; t; t = t->reg_next) {
        if (atomic_load_explicit(&t->state, memory_order_acquire) == WEFT_TASK_DONE)
            continue;
        /* seq_cst: as in weft_cancel.  Waking under the shard lock keeps t
         * from being freed meanwhile (freeing takes this lock). */
        atomic_store_explicit(&t->cancelled, true, memory_order_seq_cst);
        weft__wake(t);
    }
    weft__spin_unlock(&sh->lock);
}

/* Any thread (weft_run at shutdown). */
void weft__reg_cancel_all(weft__runtime *rt)
{
    cancel_shard(&rt->reg);
    for (unsigned i = 0; i < rt->nworkers; i++)
        cancel_shard(&rt->workers[i]->reg);
}

static size_t shard_live(weft__shard *sh)
{
    weft__spin_lock(&sh->lock);
    size_t n = sh->live;
    weft__spin_unlock(&sh->lock);
    return n;
}

/* Any thread.  Unfinished tasks in the runtime. */
size_t weft__reg_live(weft__runtime *rt)
{
    size_t n = shard_live(&rt->reg);
    for (unsigned i = 0; i < rt->nworkers; i++)
        n += shard_live(&rt->workers[i]->reg);
    return n;
}

static void free_shard(weft__runtime *rt, weft__shard *sh)
{
    while (sh->head) {
        weft_task *t = sh->head;
        if (rt->cfg.debug && !t->is_main) {
            if (t->name)
                weft__log("weft: task '%s' (id %llu) was never joined or detached",
                          t->name, (unsigned long long)t->id);
            else
                weft__log("weft: task id %llu was never joined or detached",
                          (unsigned long long)t->id);
        }
        weft__task_free(t);
    }
}

/* weft_run, after the workers stopped: frees tasks whose handles were never
 * released (reporting them in debug mode). */
void weft__reg_free_all(weft__runtime *rt)
{
    free_shard(rt, &rt->reg);
    for (unsigned i = 0; i < rt->nworkers; i++)
        free_shard(rt, &rt->workers[i]->reg);
}
