/*
 * A text buffer for the runtime's formatted output (metrics.c, console.c):
 * either the caller's fixed buffer, which is never written past its length
 * but keeps counting what would have been needed (snprintf's rule), or a
 * growing heap buffer.  Not for signal handlers (vsnprintf, malloc).
 */
#ifndef WEFT__TEXTBUF_H
#define WEFT__TEXTBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct weft__tb {
    char *b;        /* the text, NUL-terminated while it fits */
    size_t cap;     /* bytes of b */
    size_t len;     /* bytes the whole text needs (may exceed cap - 1) */
    bool grow;      /* heap buffer, grown on demand */
    bool oom;       /* a growth failed: the text is incomplete */
} weft__tb;

/* A fixed buffer (b may be NULL with cap 0: only counts). */
void weft__tb_fixed(weft__tb *t, char *b, size_t cap);
/* A growing buffer, empty; weft__tb_free releases it. */
void weft__tb_heap(weft__tb *t);
void weft__tb_free(weft__tb *t);
/* true when the whole text is in b (and no growth failed). */
bool weft__tb_fits(const weft__tb *t);

void weft__tb_printf(weft__tb *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void weft__tb_puts(weft__tb *t, const char *s);
/* s as a JSON string, quotes included (NULL: null); invalid UTF-8 bytes and
 * control characters are escaped as \u00XX so the line stays valid JSON. */
void weft__tb_json_str(weft__tb *t, const char *s);

#endif
