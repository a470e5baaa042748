/*
 * Stack overflow reports.  Each worker runs with an alternate signal stack;
 * a SIGSEGV handler checks whether the faulting address lies in the guard
 * page of the coroutine running on that worker and, if so, writes one line
 * naming the task, its stack size and WEFT_STACK_SIZE, then aborts.  Any
 * other fault goes to the handler that was installed before weft's (or to
 * the default action), as if weft were not there.
 *
 * Build with -fstack-clash-protection (weft's own code is) so that a frame
 * larger than a page probes the guard page instead of jumping over it.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define ALTSTACK_SIZE (64 * 1024)

static pthread_mutex_t sig_mu = PTHREAD_MUTEX_INITIALIZER;
static int sig_users;
static struct sigaction old_segv, old_bus;

static size_t put_str(char *b, size_t at, size_t cap, const char *s)
{
    while (*s && at + 1 < cap)
        b[at++] = *s++;
    return at;
}

static size_t put_num(char *b, size_t at, size_t cap, unsigned long long v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n && at + 1 < cap)
        b[at++] = tmp[--n];
    return at;
}

static void forward(int sig, siginfo_t *info, void *uc, const struct sigaction *old)
{
    if (old->sa_flags & SA_SIGINFO) {
        if (old->sa_sigaction) {
            old->sa_sigaction(sig, info, uc);
            return;
        }
    } else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        old->sa_handler(sig);
        return;
    }
    /* Default action: reinstall it and return; the fault repeats. */
    signal(sig, SIG_DFL);
}

static void on_fault(int sig, siginfo_t *info, void *uc)
{
    weft__worker *w = weft__cur_worker();
    weft_task *t = w ? w->current : NULL;
    if (t && t->stack && weft__stack_guard_hit(info->si_addr, t->stack)) {
        char b[512];
        size_t n = 0;
        n = put_str(b, n, sizeof b, "weft: stack overflow in task ");
        if (t->name[0]) {
            n = put_str(b, n, sizeof b, "'");
            n = put_str(b, n, sizeof b, t->name);
            n = put_str(b, n, sizeof b, "' ");
        }
        n = put_str(b, n, sizeof b, "(id ");
        n = put_num(b, n, sizeof b, atomic_load_explicit(&t->id, memory_order_relaxed));
        n = put_str(b, n, sizeof b, "): its stack of ");
        n = put_num(b, n, sizeof b, t->stack->size);
        n = put_str(b, n, sizeof b, " bytes is exhausted; raise WEFT_STACK_SIZE (or weft_config.stack_size)\n");
        ssize_t r = write(2, b, n);
        (void)r;
        signal(SIGABRT, SIG_DFL);
        abort();
    }
    forward(sig, info, uc, sig == SIGSEGV ? &old_segv : &old_bus);
}

/* weft_run.  Installs the handler (reference counted, process-wide). */
int weft__signal_install(void)
{
    pthread_mutex_lock(&sig_mu);
    if (sig_users++ == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &old_segv);
        sigaction(SIGBUS, &sa, &old_bus);
    }
    pthread_mutex_unlock(&sig_mu);
    return 0;
}

void weft__signal_uninstall(void)
{
    pthread_mutex_lock(&sig_mu);
    if (--sig_users == 0) {
        sigaction(SIGSEGV, &old_segv, NULL);
        sigaction(SIGBUS, &old_bus, NULL);
    }
    pthread_mutex_unlock(&sig_mu);
}

/* The worker thread at start: its alternate signal stack. */
int weft__altstack_setup(weft__worker *w)
{
    stack_t ss;
    w->altstack = malloc(ALTSTACK_SIZE);
    if (!w->altstack)
        return -1;
    ss.ss_sp = w->altstack;
    ss.ss_size = ALTSTACK_SIZE;
    ss.ss_flags = 0;
    return sigaltstack(&ss, NULL);
}

void weft__altstack_teardown(weft__worker *w)
{
    stack_t ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, NULL);
    free(w->altstack);
    w->altstack = NULL;
}
