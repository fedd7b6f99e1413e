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
#include "stream_int.h"

enum { META_VERSION = 1 };
enum { F_CLOSED = 1, F_DELETED = 2 };

/* The encoder writes into space reserved up front: it runs on every
 * producer append, where a buf_append per field cost more than the rest of
 * the append's bookkeeping. */
static uint8_t *put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
    return p + 8;
}

static uint8_t *put_str(uint8_t *p, const char *s, size_t n) {
    p[0] = (uint8_t)n;
    p[1] = (uint8_t)(n >> 8);
    p[2] = (uint8_t)(n >> 16);
    p[3] = (uint8_t)(n >> 24);
    if (n) memcpy(p + 4, s, n);
    return p + 4 + n;
}

static size_t len_of(const char *s) { return s ? strlen(s) : 0; }

void stream_meta_encode(const stream *s, buf *out) {
    size_t ct = len_of(s->content_type), ex = len_of(s->expires_str), sq = len_of(s->stream_seq),
           cb = len_of(s->closed_by_id);
    size_t n = 2 + 7 * 8 + 4 * 4 + ct + ex + sq + cb;
    for (uint32_t i = 0; i < s->nproducers; i++) n += 4 + strlen(s->producers[i].id) + 16;
    buf_reserve(out, n);
    uint8_t *p = out->data + out->len;
    *p++ = META_VERSION;
    *p++ = (uint8_t)((s->closed ? F_CLOSED : 0) | (s->deleted ? F_DELETED : 0));
    p = put_str(p, s->content_type, ct);
    p = put_u64(p, (uint64_t)s->ttl);
    p = put_u64(p, (uint64_t)s->expires_at);
    p = put_str(p, s->expires_str, ex);
    p = put_u64(p, s->src ? s->src->id : 0);
    p = put_u64(p, s->fork_off);
    p = put_str(p, s->stream_seq, sq);
    p = put_str(p, s->closed_by_id, cb);
    p = put_u64(p, s->closed_by_epoch);
    p = put_u64(p, s->closed_by_seq);
    p = put_u64(p, s->nproducers);
    for (uint32_t i = 0; i < s->nproducers; i++) {
        const producer *pr = &s->producers[i];
        p = put_str(p, pr->id, strlen(pr->id));
        p = put_u64(p, pr->epoch);
        p = put_u64(p, pr->seq);
    }
    out->len = (size_t)(p - out->data);
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
