/*
 * A text buffer: the caller's (bounded, counting) or the heap's (growing).
 * See textbuf.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "textbuf.h"

void weft__tb_fixed(weft__tb *t, char *b, size_t cap)
{
    *t = (weft__tb){.b = b, .cap = b ? cap : 0};
    if (t->cap)
        t->b[0] = '\0';
}

void weft__tb_heap(weft__tb *t)
{
    *t = (weft__tb){.grow = true};
}

void weft__tb_free(weft__tb *t)
{
    if (t->grow)
        free(t->b);
    t->b = NULL;
    t->cap = t->len = 0;
}

bool weft__tb_fits(const weft__tb *t)
{
    return !t->oom && t->len < t->cap;
}

/* Room for need more bytes and a NUL, growing when allowed. */
static bool room(weft__tb *t, size_t need)
{
    if (t->len + need < t->cap)
        return true;
    if (!t->grow || t->oom)
        return false;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap <= t->len + need)
        cap *= 2;
    char *b = realloc(t->b, cap);
    if (!b) {
        t->oom = true;
        return false;
    }
    t->b = b;
    t->cap = cap;
    return true;
}

void weft__tb_printf(weft__tb *t, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        weft__tb_puts(t, small);
        return;
    }
    if (room(t, (size_t)n)) {
        va_start(ap, fmt);
        vsnprintf(t->b + t->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    } else if (t->len < t->cap) {
        t->b[t->len] = '\0';  /* what was written stays; nothing past cap */
    }
    t->len += (size_t)n;
}

/* Appends n bytes of s (a fixed buffer that overflows keeps counting). */
static void put(weft__tb *t, const char *s, size_t n)
{
    if (room(t, n)) {
        memcpy(t->b + t->len, s, n);
        t->b[t->len + n] = '\0';
    }
    t->len += n;
}

void weft__tb_puts(weft__tb *t, const char *s)
{
    put(t, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s, or 0. */
static size_t utf8_len(const unsigned char *s)
{
    size_t n;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4;
    else
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    /* No overlong forms, no surrogates, nothing past U+10FFFF. */
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
        return 0;
    return n;
}

void weft__tb_json_str(weft__tb *t, const char *s)
{
    if (!s) {
        put(t, "null", 4);
        return;
    }
    put(t, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put(t, esc, 2);
            p++;
            continue;
        }
        size_t n = *p < 0x20 ? 0 : utf8_len(p);
        if (n) {
            put(t, (const char *)p, n);
            p += n;
        } else {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            put(t, esc, 6);
            p++;
        }
    }
    put(t, "\"", 1);
}
