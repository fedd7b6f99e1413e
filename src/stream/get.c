/* get.c — GET: a read from an offset, catch-up or live. Parses the query
 * (offset, live, cursor) and hands the answer to read.c (catch-up) or
 * live.c (long-poll, SSE).
 */
#include <string.h>

#include "protocol.h"
#include "stream_int.h"

/* 1 with the decoded value if `name` occurs once, 0 if it does not occur,
 * -1 if it occurs more than once or does not decode (a NUL, say). */
static int query_param(const http_target *t, const char *name, buf *value) {
    if (!t->query) return 0;
    size_t n = strlen(name), count = 0;
    const char *q = t->query, *end = t->query + t->query_len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *e = amp ? amp : end;
        if ((size_t)(e - q) >= n && memcmp(q, name, n) == 0 && (q + n == e || q[n] == '=')) count++;
        q = e + 1;
    }
    if (count == 0) return 0;
    if (count > 1 || !http_query_get(t->query, t->query_len, name, value)) return -1;
    return 1;
}

typedef enum live_mode { LIVE_NONE, LIVE_LP, LIVE_SSE } live_mode;

/* What a GET asks for: where to start, and whether to wait for more. */
typedef struct get_req {
    offset_kind kind;
    uint64_t pos;
    live_mode mode;
    buf cursor;
} get_req;

/* Parse the query; returns what is wrong with it, or NULL. */
static const char *get_parse(const http_target *t, get_req *g) {
    buf off, live;
    buf_init(&off);
    buf_init(&live);
    int has_off = query_param(t, "offset", &off);
    int has_live = query_param(t, "live", &live);
    if (query_param(t, "cursor", &g->cursor) < 0) buf_reset(&g->cursor);
    const char *bad = NULL;
    if (has_off < 0) bad = "invalid offset: give it once, URL-encoded";
    else if (has_live < 0) bad = "invalid live parameter";
    else if (has_live) {
        if (live.len == 9 && memcmp(live.data, "long-poll", 9) == 0) g->mode = LIVE_LP;
        else if (live.len == 3 && memcmp(live.data, "sse", 3) == 0) g->mode = LIVE_SSE;
        else bad = "invalid live mode: expected long-poll or sse";
    }
    if (!bad && has_off > 0) {
        g->kind = offset_parse((const char *)off.data, off.len, &g->pos);
        if (g->kind == OFFSET_INVALID) bad = "invalid offset";
    } else if (!bad && g->mode != LIVE_NONE) {
        bad = "live reads need an offset";
    }
    buf_free(&off);
    buf_free(&live);
    return bad;
}

bool handle_get(streams *st, http_conn *c, http_request *req, const char *path, size_t path_len,
                const live_end *end) {
    bool waits = false;
    get_req g = {.kind = OFFSET_START, .mode = LIVE_NONE};
    buf_init(&g.cursor);
    const char *bad = get_parse(&req->target, &g);
    if (bad) {
        respond_error(st, c, 400, path, bad);
        buf_free(&g.cursor);
        return false;
    }
    pthread_mutex_lock(&st->lock);
    int64_t now = wall_ms();
    stream *s = stream_for_client(st, c, path, path_len, now);
    if (s) {
        stream_touch(s, now);
        uint64_t first = s->src ? 0 : s->fork_off; /* a compacted log starts later */
        uint64_t start = g.kind == OFFSET_START ? first : g.kind == OFFSET_NOW ? s->visible : g.pos;
        if (start < first)
            respond_error(st, c, 410, path, "offset is before the start of this log (it was compacted): read from -1 or attach again");
        else if (start > s->visible)
            respond_error(st, c, 400, path, "offset is beyond the end of the stream");
        else if (!stream_at_boundary(st, s, start))
            respond_error(st, c, 400, path, "offset is not a message boundary of this JSON stream");
        else if (g.mode == LIVE_LP)
            waits = live_long_poll(st, c, s, start, &g.cursor, end);
        else if (g.mode == LIVE_SSE)
            waits = live_sse(st, c, s, start, &g.cursor, end);
        else if (g.kind == OFFSET_NOW)
            read_respond_now(st, c, s);
        else
            read_respond_data(st, c, s, start, false, &g.cursor);
    }
    pthread_mutex_unlock(&st->lock);
    buf_free(&g.cursor);
    return waits;
}
