/* handler.c — the stream layer's HTTP entry: routing, the GET query (reads
 * are answered by read.c and live.c), DELETE, HEAD, CORS preflight and
 * /healthz. Creates and appends are in create.c and append.c.
 */
#include <stdio.h>
#include <string.h>

#include "../util/log.h"
#include "../util/mem.h"
#include "protocol.h"
#include "stream_int.h"

/* For load balancers and orchestrators: answering means serving. A store
 * that stopped taking writes for good (a failed write or fsync) is 503, so
 * that an orchestrator restarts weft, which recovers; a full disk is not,
 * as reads go on and a restart frees no space, but the body says so. */
static void handle_healthz(streams *st, http_conn *c) {
    bool for_good = false;
    int err = store_refusing(st->store, &for_good);
    char msg[200];
    if (!err)
        snprintf(msg, sizeof msg, "ok\n");
    else if (for_good)
        snprintf(msg, sizeof msg, "storage failed: %s; writes are refused until weft is restarted\n",
                 strerror(err));
    else
        snprintf(msg, sizeof msg, "ok; storage full: %s; writes are refused until space is freed\n",
                 strerror(err));
    respond_begin(st, c, for_good ? 503 : 200);
    http_respond_header(c, "Content-Type", "text/plain; charset=utf-8");
    http_respond_header(c, "Cache-Control", "no-store");
    http_respond_body(c, msg, strlen(msg));
    http_respond_end(c);
}

/* --- GET --- */

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

static void handle_get(streams *st, http_conn *c, http_request *req, const char *path,
                       size_t path_len) {
    get_req g = {.kind = OFFSET_START, .mode = LIVE_NONE};
    buf_init(&g.cursor);
    const char *bad = get_parse(&req->target, &g);
    if (bad) {
        respond_error(st, c, 400, path, bad);
        buf_free(&g.cursor);
        return;
    }
    pthread_mutex_lock(&st->lock);
    int64_t now = wall_ms();
    stream *s = stream_for_client(st, c, path, path_len, now);
    if (s) {
        stream_touch(s, now);
        uint64_t start = g.kind == OFFSET_START ? 0 : g.kind == OFFSET_NOW ? s->visible : g.pos;
        if (start > s->visible)
            respond_error(st, c, 400, path, "offset is beyond the end of the stream");
        else if (!stream_at_boundary(st, s, start))
            respond_error(st, c, 400, path, "offset is not a message boundary of this JSON stream");
        else if (g.mode == LIVE_LP)
            live_long_poll(st, c, s, start, &g.cursor);
        else if (g.mode == LIVE_SSE)
            live_sse(st, c, s, start, &g.cursor);
        else if (g.kind == OFFSET_NOW)
            read_respond_now(st, c, s);
        else
            read_respond_data(st, c, s, start, false, &g.cursor);
    }
    pthread_mutex_unlock(&st->lock);
    buf_free(&g.cursor);
}

/* --- DELETE, HEAD, OPTIONS --- */

static void handle_delete(streams *st, http_conn *c, const char *path, size_t path_len) {
    pthread_mutex_lock(&st->lock);
    stream *s = stream_for_client(st, c, path, path_len, wall_ms());
    if (s) {
        stream_ref(s);
        store_lsn lsn = stream_delete(st, s);
        if (lsn == 0) {
            respond_storage_error(st, c, path);
        } else {
            respond_begin(st, c, 204);
            respond_when_durable(st, c, s, lsn);
        }
        stream_unref(s);
    }
    pthread_mutex_unlock(&st->lock);
}

static void handle_head(streams *st, http_conn *c, const char *path, size_t path_len) {
    pthread_mutex_lock(&st->lock);
    stream *s = stream_for_client(st, c, path, path_len, wall_ms());
    if (s) {
        respond_begin(st, c, 200);
        respond_config(c, s);
        respond_offset(c, "Stream-Next-Offset", s->visible);
        if (s->closed_visible) http_respond_header(c, "Stream-Closed", "true");
        http_respond_header(c, "Cache-Control", "no-store");
        http_respond_end(c);
    }
    pthread_mutex_unlock(&st->lock);
}

static void handle_options(streams *st, http_conn *c, http_request *req) {
    respond_begin(st, c, 204);
    http_respond_header(c, "Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, DELETE, OPTIONS");
    size_t n;
    const char *h = http_head_get(&req->head, "access-control-request-headers", &n);
    if (h) http_respond_headerf(c, "Access-Control-Allow-Headers", "%.*s", (int)n, h);
    else http_respond_header(c, "Access-Control-Allow-Headers", "*");
    http_respond_header(c, "Access-Control-Max-Age", "86400");
    http_respond_end(c);
}

/* --- routing --- */

/* Decode and vet the stream path: no NUL (the decoder refuses it), no "."
 * or ".." segments, no empty stream name. */
static const char *check_path(const streams *st, const char *s, size_t len) {
    size_t plen = sizeof STREAM_PREFIX - 1;
    if (len <= plen) return "missing stream name";
    if (len > st->limits.max_path) return "stream path too long";
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return "control characters are not allowed in stream paths";
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && s[j] != '/') j++;
        size_t seg = j - i;
        if ((seg == 1 && s[i] == '.') || (seg == 2 && s[i] == '.' && s[i + 1] == '.'))
            return "path segments '.' and '..' are not allowed";
        i = j + 1;
    }
    return NULL;
}

static void method_not_allowed(streams *st, http_conn *c, http_request *req, const char *path) {
    log_write(LOG_ERROR, "%.*s %s: 405 method not allowed", (int)req->head.method_len,
              req->head.method_str, path);
    respond_begin(st, c, 405);
    http_respond_header(c, "Allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS");
    http_respond_header(c, "Content-Type", "text/plain; charset=utf-8");
    http_respond_body(c, "method not allowed\n", 19);
    http_respond_end(c);
}

/* Route a request whose path p (NUL-terminated, len bytes) is decoded. */
static void route(streams *st, http_conn *c, http_request *req, const char *p, size_t len) {
    if (len < sizeof STREAM_PREFIX - 1 || memcmp(p, STREAM_PREFIX, sizeof STREAM_PREFIX - 1) != 0) {
        if (req->head.method == HTTP_OPTIONS)
            handle_options(st, c, req);
        else if (strcmp(p, "/healthz") == 0 &&
                 (req->head.method == HTTP_GET || req->head.method == HTTP_HEAD))
            handle_healthz(st, c);
        else
            respond_error(st, c, 404, p, "not found: streams live under " STREAM_PREFIX);
        return;
    }
    const char *bad = check_path(st, p, len);
    if (bad) {
        respond_error(st, c, 400, p, bad);
        return;
    }
    if (log_enabled(LOG_DEBUG))
        log_write(LOG_DEBUG, "%s %.*s %s (%zu body bytes)", http_conn_peer(c),
                  (int)req->head.method_len, req->head.method_str, p, req->body.len);
    switch (req->head.method) {
    case HTTP_PUT: handle_put(st, c, req, p, len); break;
    case HTTP_POST: handle_post(st, c, req, p, len); break;
    case HTTP_DELETE: handle_delete(st, c, p, len); break;
    case HTTP_HEAD: handle_head(st, c, p, len); break;
    case HTTP_GET: handle_get(st, c, req, p, len); break;
    case HTTP_OPTIONS: handle_options(st, c, req); break;
    default: method_not_allowed(st, c, req, p); break;
    }
}

static void wake_store(void *arg) {
    streams *st = arg;
    store_wake(st->store);
}

void streams_handle(void *ctx, http_conn *c, http_request *req) {
    streams *st = ctx;
    /* The records that handlers log during one loop iteration go to the
     * flusher together when the iteration ends: one fdatasync and one
     * flusher wake-up for all of them, instead of a wake-up per request. */
    store_defer_wake(true);
    loop_defer(http_conn_loop(c), wake_store, st);
    /* Decoded on the stack unless the path is long: this runs per request. */
    const http_target *t = &req->target;
    char small[512];
    char *p = t->path_len < sizeof small ? small : xmalloc(t->path_len + 1);
    size_t len;
    if (!http_percent_decode_to(t->path, t->path_len, p, &len)) {
        respond_error(st, c, 400, NULL, "invalid percent-encoding in path");
    } else {
        p[len] = 0;
        route(st, c, req, p, len);
    }
    if (p != small) free(p);
}
