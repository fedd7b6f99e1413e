/* meta.c — a stream's metadata as the opaque blob the store persists.
 *
 * Layout (little-endian): version byte, flag byte, then fields in a fixed
 * order; strings are u32 length + bytes. Everything a restart needs to
 * answer exactly as before: content type, closure (and which producer
 * request closed it), soft delete, TTL/expiry, fork link, Stream-Seq and
 * every producer's (epoch, seq).
 */
#include <string.h>

#include "../util/mem.h"
#include "protocol.h"

enum { META_VERSION = 1 };
enum { F_CLOSED = 1, F_DELETED = 2 };

static void put_u64(buf *b, uint64_t v) {
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (8 * i));
    buf_append(b, x, 8);
}

static void put_str(buf *b, const char *s) {
    uint32_t n = s ? (uint32_t)strlen(s) : 0;
    uint8_t x[4] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
    buf_append(b, x, 4);
    buf_append(b, s, n);
}

static size_t str_size(const char *s) { return 4 + (s ? strlen(s) : 0); }

/* Bytes stream_meta_encode appends, so it grows the buffer once. */
static size_t meta_size(const stream *s) {
    size_t n = 2 + 8 * 8 + str_size(s->content_type) + str_size(s->expires_str) +
               str_size(s->stream_seq) + str_size(s->closed_by_id);
    for (uint32_t i = 0; i < s->nproducers; i++) n += str_size(s->producers[i].id) + 16;
    return n;
}

void stream_meta_encode(const stream *s, buf *out) {
    buf_reserve(out, meta_size(s));
    buf_append_byte(out, META_VERSION);
    buf_append_byte(out, (uint8_t)((s->closed ? F_CLOSED : 0) | (s->deleted ? F_DELETED : 0)));
    put_str(out, s->content_type);
    put_u64(out, (uint64_t)s->ttl);
    put_u64(out, (uint64_t)s->expires_at);
    put_str(out, s->expires_str);
    put_u64(out, s->src ? s->src->id : 0);
    put_u64(out, s->fork_off);
    put_str(out, s->stream_seq);
    put_str(out, s->closed_by_id);
    put_u64(out, s->closed_by_epoch);
    put_u64(out, s->closed_by_seq);
    put_u64(out, s->nproducers);
    for (uint32_t i = 0; i < s->nproducers; i++) {
        put_str(out, s->producers[i].id);
        put_u64(out, s->producers[i].epoch);
        put_u64(out, s->producers[i].seq);
    }
}

typedef struct reader {
    const uint8_t *p;
    size_t n;
    bool ok;
} reader;

static uint64_t get_u64(reader *r) {
    if (r->n < 8) {
        r->ok = false;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)r->p[i] << (8 * i);
    r->p += 8;
    r->n -= 8;
    return v;
}

/* Returns a new string, or NULL for an empty one. */
static char *get_str(reader *r) {
    if (r->n < 4) {
        r->ok = false;
        return NULL;
    }
    uint32_t len = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
                   (uint32_t)r->p[3] << 24;
    r->p += 4;
    r->n -= 4;
    if (len > r->n) {
        r->ok = false;
        return NULL;
    }
    char *s = len ? xstrndup((const char *)r->p, len) : NULL;
    r->p += len;
    r->n -= len;
    return s;
}

bool stream_meta_decode(stream *s, const uint8_t *p, size_t n, uint64_t *src_id) {
    reader r = {p, n, true};
    if (n < 2 || p[0] != META_VERSION) return false;
    uint8_t flags = p[1];
    r.p += 2;
    r.n -= 2;
    s->closed = flags & F_CLOSED;
    s->deleted = flags & F_DELETED;
    s->content_type = get_str(&r);
    s->ttl = (int64_t)get_u64(&r);
    s->expires_at = (int64_t)get_u64(&r);
    s->expires_str = get_str(&r);
    *src_id = get_u64(&r);
    s->fork_off = get_u64(&r);
    s->stream_seq = get_str(&r);
    s->closed_by_id = get_str(&r);
    s->closed_by_epoch = get_u64(&r);
    s->closed_by_seq = get_u64(&r);
    uint64_t np = get_u64(&r);
    if (!r.ok || np > r.n) return false;
    s->producers = np ? xcalloc(np, sizeof *s->producers) : NULL;
    for (uint64_t i = 0; i < np && r.ok; i++) {
        s->producers[i].id = get_str(&r);
        s->producers[i].epoch = get_u64(&r);
        s->producers[i].seq = get_u64(&r);
        s->nproducers++;
    }
    if (!s->content_type) s->content_type = xstrndup("application/octet-stream", 24);
    stream_set_content_type_flags(s);
    return r.ok;
}
