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

typedef struct buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} buf;

void buf_init(buf *b);
void buf_free(buf *b);
/* Ensure room for `extra` more bytes without reallocating. */
void buf_reserve(buf *b, size_t extra);
void buf_append(buf *b, const void *p, size_t n);
void buf_append_str(buf *b, const char *s);
void buf_append_byte(buf *b, uint8_t c);
/* Decimal digits of v (the hot path's alternative to buf_printf). */
void buf_append_u64(buf *b, uint64_t v);
/* printf-style append. */
void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop the first n bytes (n <= len). */
void buf_consume(buf *b, size_t n);
void buf_reset(buf *b);

#endif
