/* buf.c — growable byte buffer (see buf.h). */
#include "buf.h"
#include "mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void buf_init(buf *b) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void buf_free(buf *b) {
    free(b->data);
    buf_init(b);
}

void buf_grow(buf *b, size_t extra) {
    size_t want = b->len + extra;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < want) cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

size_t u64_format(char out[20], uint64_t v) {
    char tmp[20];
    size_t n = 0;
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(out, tmp + sizeof tmp - n, n);
    return n;
}

void buf_append_u64(buf *b, uint64_t v) {
    char tmp[20];
    buf_append(b, tmp, u64_format(tmp, v));
}

void buf_printf(buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        buf_append(b, small, (size_t)n);
        return;
    }
    buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void buf_consume(buf *b, size_t n) {
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void buf_reset(buf *b) { b->len = 0; }
