/* buf.h — growable byte buffer.
 *
 * The one buffer type used everywhere bytes are accumulated: request bodies,
 * response heads, SSE frames. Memory is owned by the buffer; buf_free()
 * releases it. Allocation failure aborts the process (see util/mem.h): a
 * server that cannot allocate a few bytes cannot answer anyone correctly.
 */
#ifndef WEFT_BUF_H
#define WEFT_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} buf;

void buf_init(buf *b);
void buf_free(buf *b);
/* buf_reserve's slow path: reallocate for `extra` more bytes. */
void buf_grow(buf *b, size_t extra);

/* The appends are inline: responses and WAL records are built from many
 * small pieces, and a call per piece cost more than the copying. */

/* Ensure room for `extra` more bytes without reallocating. */
static inline void buf_reserve(buf *b, size_t extra) {
    if (b->cap - b->len < extra) buf_grow(b, extra);
}

static inline void buf_append(buf *b, const void *p, size_t n) {
    if (n == 0) return;
    buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static inline void buf_append_str(buf *b, const char *s) { buf_append(b, s, strlen(s)); }

static inline void buf_append_byte(buf *b, uint8_t c) {
    buf_reserve(b, 1);
    b->data[b->len++] = c;
}

/* Decimal digits of v (the hot path's alternative to buf_printf). */
void buf_append_u64(buf *b, uint64_t v);
/* v in decimal at out (at most 20 bytes, no NUL); returns the length. */
size_t u64_format(char out[20], uint64_t v);
/* printf-style append. */
void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop the first n bytes (n <= len). */
void buf_consume(buf *b, size_t n);
void buf_reset(buf *b);

#endif
