/*
 * The symbolizer of dumps: turns the return addresses of a backtrace into
 * lines naming function, source file and line, as Go's dumps do
 * (docs/debugging.md, "The symbolizer: libdw", says why this library).
 *
 * It uses libdw's dwfl interface (elfutils) where the build found it
 * (WEFT_HAVE_LIBDW): it reads the DWARF of every module mapped in the
 * process (the executable, libweft, any other library), static functions
 * included, inlined calls too, from the module itself or from its separate
 * debug file (/usr/lib/debug/.build-id).  Without it, or for a frame whose module
 * has neither symbol nor line, a frame reads as backtrace_symbols writes
 * it: module(symbol+offset) [address], the form of every dump before.
 *
 * It allocates and takes a lock, so it never runs in a signal handler: a
 * handler writes the raw form (weft_dump) or hands its addresses to the
 * monitor thread (observe.c, sysmon.c), which calls this.  It needs a deep
 * stack (libdw overran a 128 KiB coroutine stack, past the guard page): its
 * callers run it on sysmon or on a helper thread of 8 MiB (observe.c,
 * dump_off_stack), never on a coroutine.  The dwfl session is kept from
 * dump to dump (loading a module's DWARF is the slow part), with the lines
 * already written, and guarded by sym_mu; each pass (one dump) re-reads the
 * process's mappings once, which keeps the modules already known, forgets
 * those unloaded and picks up those loaded since.  The session holds the
 * modules' files open, so weft_run drops it when it returns
 * (weft__sym_release), after the last dump of that run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#if WEFT_HAVE_LIBDW
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#endif

/* The output of one pass, grown as needed; written after sym_mu is let go,
 * so that a slow reader of fd never holds up another dump's lookups. */
typedef struct {
    char *b;
    size_t n, cap;
    bool oom;
} text;

static void text_add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(text *t, const char *fmt, ...)
{
    if (t->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(t->b ? t->b + t->n : NULL, t->b ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            t->oom = true;
            return;
        }
        if (t->b && t->n + (size_t)k < t->cap) {
            t->n += (size_t)k;
            return;
        }
        size_t cap = t->cap ? t->cap : 4096;
        while (cap <= t->n + (size_t)k)
            cap *= 2;
        char *nb = realloc(t->b, cap);
        if (!nb) {
            t->oom = true;
            return;
        }
        t->b = nb;
        t->cap = cap;
    }
}

/* The raw form of one frame (backtrace_symbols', without its newline). */
static void add_raw(text *t, void *pc)
{
    char **s = backtrace_symbols(&pc, 1);
    if (s) {
        text_add(t, "%s", s[0]);
        free(s);
    } else {
        text_add(t, "[%p]", pc);
    }
}

#if WEFT_HAVE_LIBDW

static pthread_mutex_t sym_mu = PTHREAD_MUTEX_INITIALIZER;
static Dwfl *sym_dwfl;     /* under sym_mu; NULL until the first pass */
static char *sym_debuginfo_path;

/* Separate debug files by build id (/usr/lib/debug/.build-id/, where
 * Debian's -dbgsym packages put them), not dwfl_standard_find_debuginfo:
 * that one falls back to debuginfod, which loads libcurl and its kin into
 * the process for good and, with DEBUGINFOD_URLS set, would make a dump
 * wait on the network. */
static const Dwfl_Callbacks sym_callbacks = {
    .find_elf = dwfl_linux_proc_find_elf,
    .find_debuginfo = dwfl_build_id_find_debuginfo,
    .debuginfo_path = &sym_debuginfo_path,
};

/* Under sym_mu: the session, its modules as mapped now (re-read on a
 * pass's first call); NULL when libdw cannot read them (every frame then
 * reads raw). */
/* The lines already written, by address: most tasks wait through the same
 * frames, and a frame's DWARF scopes cost a walk of its unit's DIEs.  Only
 * frames found in a module are kept, and the whole cache is dropped when a
 * module goes away (dwfl_report_end's removed callback) or it fills up.
 * Under sym_mu. */
#define SYM_CACHE 4096   /* slots, a power of two; kept at most 3/4 full */

typedef struct {
    uintptr_t pc;
    char *line;
} sym_line;

static sym_line *sym_cache;
static size_t sym_cached;

static void cache_clear(void)
{
    if (!sym_cache)
        return;
    for (size_t i = 0; i < SYM_CACHE; i++)
        free(sym_cache[i].line);
    memset(sym_cache, 0, SYM_CACHE * sizeof *sym_cache);
    sym_cached = 0;
}

/* The slot of pc: its line, or the empty slot where it goes; NULL without
 * a cache. */
static sym_line *cache_slot(uintptr_t pc)
{
    if (!sym_cache && !(sym_cache = calloc(SYM_CACHE, sizeof *sym_cache)))
        return NULL;
    size_t i = (size_t)((pc * 0x9E3779B97F4A7C15ull) >> 52) & (SYM_CACHE - 1);
    while (sym_cache[i].line && sym_cache[i].pc != pc)
        i = (i + 1) & (SYM_CACHE - 1);
    return &sym_cache[i];
}

static int on_removed(Dwfl_Module *m, void *userdata, const char *name, Dwarf_Addr start,
                      void *arg)
{
    (void)m, (void)userdata, (void)name, (void)start, (void)arg;
    cache_clear();
    return DWARF_CB_OK;
}

static Dwfl *session(weft__sym_pass *pass)
{
    if (sym_dwfl && pass->fresh)
        return sym_dwfl;
    if (!sym_dwfl)
        sym_dwfl = dwfl_begin(&sym_callbacks);
    if (!sym_dwfl)
        return NULL;
    pass->fresh = true;
    dwfl_report_begin(sym_dwfl);
    int rc = dwfl_linux_proc_report(sym_dwfl, getpid());
    if (dwfl_report_end(sym_dwfl, on_removed, NULL) != 0 || rc != 0) {
        dwfl_end(sym_dwfl);
        sym_dwfl = NULL;
        cache_clear();
    }
    return sym_dwfl;
}

/* A source file name with its "dir/../" steps folded ("sync/../runtime/
 * waitq.h" reads "runtime/waitq.h"), as DWARF keeps them unfolded. */
static void add_path(text *t, const char *f)
{
    char buf[512];
    size_t n = 0;
    while (*f && n + 1 < sizeof buf) {
        if (f[0] == '/' && f[1] == '.' && f[2] == '.' && (f[3] == '/' || !f[3]) && n > 0) {
            size_t k = n;
            while (k > 0 && buf[k - 1] != '/')
                k--;
            bool up = n - k == 2 && buf[k] == '.' && buf[k + 1] == '.';
            if (k > 0 && !up) {  /* drop the last step, keep its '/' out */
                n = k - 1;
                f += 3;
                continue;
            }
        }
        buf[n++] = *f++;
    }
    buf[n] = '\0';
    text_add(t, "%s%s", buf, *f ? f : "");
}

/* A DW_AT_call_file / DW_AT_decl_file index of cu's file table, as a
 * name; NULL when absent. */
static const char *file_of(Dwarf_Die *cu, Dwarf_Die *die, unsigned attr)
{
    Dwarf_Attribute a;
    Dwarf_Word idx;
    Dwarf_Files *files;
    size_t nfiles;
    if (!dwarf_attr(die, attr, &a) || dwarf_formudata(&a, &idx) != 0 ||
        dwarf_getsrcfiles(cu, &files, &nfiles) != 0 || idx >= nfiles)
        return NULL;
    return dwarf_filesrc(files, idx, NULL, NULL);
}

/* Under sym_mu: the DWARF scopes of addr (innermost first) that are
 * functions: the calls inlined there, innermost first, as
 * " (inlined f from file:line)" where file:line is f's call site, and the
 * name of the function they are in, with its entry when DWARF has one
 * (else *entry is left alone). */
static void add_inlined(text *t, Dwfl_Module *m, Dwarf_Addr addr, const char **fn,
                        Dwarf_Addr *entry)
{
    Dwarf_Addr bias;
    Dwarf_Die *cu = dwfl_module_addrdie(m, addr, &bias);
    Dwarf_Die *scopes = NULL;
    int ns = cu ? dwarf_getscopes(cu, addr - bias, &scopes) : 0;
    for (int i = 0; i < ns; i++) {
        int tag = dwarf_tag(&scopes[i]);
        if (tag == DW_TAG_subprogram) {
            Dwarf_Addr lo;
            *fn = dwarf_diename(&scopes[i]);
            if (dwarf_lowpc(&scopes[i], &lo) == 0)
                *entry = lo + bias;
            break;
        }
        if (tag != DW_TAG_inlined_subroutine)
            continue;
        const char *name = dwarf_diename(&scopes[i]);
        const char *cf = file_of(cu, &scopes[i], DW_AT_call_file);
        Dwarf_Attribute a;
        Dwarf_Word cl = 0;
        if (dwarf_attr(&scopes[i], DW_AT_call_line, &a))
            dwarf_formudata(&a, &cl);
        text_add(t, " (inlined %s", name ? name : "?");
        if (cf && cl) {
            text_add(t, " from ");
            add_path(t, cf);
            text_add(t, ":%llu", (unsigned long long)cl);
        }
        text_add(t, ")");
    }
    free(scopes);
}

/* Under sym_mu: the line of a frame in module m (add_frame). */
static void add_known_frame(text *t, Dwfl_Module *m, void *pc, Dwarf_Addr look)
{
    GElf_Sym sym;
    GElf_Off off = 0;
    const char *fn = dwfl_module_addrinfo(m, look, &off, &sym, NULL, NULL, NULL);
    /* libdw 0.188 sometimes answers with a farther symbol whose extent
     * does not hold the address (seen on static functions): not trusted. */
    if (fn && sym.st_size && off >= sym.st_size)
        fn = NULL;
    text in = {0};
    const char *dw_fn = NULL;
    Dwarf_Addr entry = 0;
    add_inlined(&in, m, look, &dw_fn, &entry);
    if (!fn && dw_fn && entry && entry <= look) {
        fn = dw_fn;
        off = look - entry;
    }
    const char *mod = dwfl_module_info(m, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
    Dwfl_Line *l = dwfl_module_getsrc(m, look);
    int line = 0;
    const char *file = l ? dwfl_lineinfo(l, NULL, &line, NULL, NULL, NULL) : NULL;
    if (fn)
        text_add(t, "%s(%s+0x%llx) [%p]", mod ? mod : "?", fn, (unsigned long long)off + 1, pc);
    else
        add_raw(t, pc);
    if (file && line > 0) {
        text_add(t, " at ");
        add_path(t, file);
        text_add(t, ":%d", line);
    }
    if (in.b)
        text_add(t, "%s", in.b);
    free(in.b);
    text_add(t, "\n");
}

/* Under sym_mu: one frame, a line of
 *     module(function+offset) [address] at file:line (inlined f from file:line)...
 * pc is a return address: the call is just before it, so pc - 1 is looked
 * up (the call may be the last instruction of its function); the offset
 * printed is pc's, as backtrace_symbols does.  A frame libdw knows nothing
 * of reads as backtrace_symbols writes it. */
static void add_frame(text *t, Dwfl *dwfl, void *pc)
{
    Dwarf_Addr look = (Dwarf_Addr)(uintptr_t)pc - 1;
    Dwfl_Module *m = dwfl ? dwfl_addrmodule(dwfl, look) : NULL;
    if (!m) {
        add_raw(t, pc);
        text_add(t, "\n");
        return;
    }
    sym_line *c = cache_slot((uintptr_t)pc);
    if (c && c->line) {
        text_add(t, "%s", c->line);
        return;
    }
    size_t at = t->n;
    add_known_frame(t, m, pc, look);
    if (c && !t->oom && sym_cached < SYM_CACHE / 4 * 3 &&
        (c->line = strndup(t->b + at, t->n - at))) {
        c->pc = (uintptr_t)pc;
        sym_cached++;
    } else if (c && sym_cached >= SYM_CACHE / 4 * 3) {
        cache_clear();
    }
}

bool weft__sym_available(void)
{
    return true;
}

static void add_frames(text *t, weft__sym_pass *pass, void *const *pcs, int n)
{
    pthread_mutex_lock(&sym_mu);
    Dwfl *dwfl = session(pass);
    for (int i = 0; i < n; i++)
        add_frame(t, dwfl, pcs[i]);
    pthread_mutex_unlock(&sym_mu);
}

void weft__sym_release(void)
{
    pthread_mutex_lock(&sym_mu);
    if (sym_dwfl)
        dwfl_end(sym_dwfl);
    sym_dwfl = NULL;
    cache_clear();
    free(sym_cache);
    sym_cache = NULL;
    pthread_mutex_unlock(&sym_mu);
}

#else /* !WEFT_HAVE_LIBDW */

bool weft__sym_available(void)
{
    return false;
}

static void add_frames(text *t, weft__sym_pass *pass, void *const *pcs, int n)
{
    (void)pass;
    for (int i = 0; i < n; i++) {
        add_raw(t, pcs[i]);
        text_add(t, "\n");
    }
}

void weft__sym_release(void)
{
}

#endif

int weft__sym_write(weft__sym_pass *pass, int fd, void *const *pcs, int n)
{
    if (n <= 0)
        return 0;
    text t = {0};
    add_frames(&t, pass, pcs, n);
    if (t.oom) {
        /* No memory for the text: the raw form, which needs none. */
        free(t.b);
        backtrace_symbols_fd((void **)pcs, n, fd);
        return 0;
    }
    int err = 0;
    for (size_t at = 0; at < t.n;) {
        ssize_t r = write(fd, t.b + at, t.n - at);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            err = -errno;
            break;
        }
        at += (size_t)r;
    }
    free(t.b);
    return err;
}
