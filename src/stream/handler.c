/* handler.c — the stream layer's HTTP entry: routing, DELETE, HEAD, CORS
 * preflight and /healthz. Creates, appends and reads are in create.c,
 * append.c and get.c.
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
    case HTTP_GET: handle_get(st, c, req, p, len, NULL); break;
    case HTTP_OPTIONS: handle_options(st, c, req); break;
    default: method_not_allowed(st, c, req, p); break;
    }
}

static void wake_store(void *arg) {
    streams *st = arg;
    store_wake(st->store);
}

/* The records that handlers log during one loop iteration go to the
 * flusher together when the iteration ends: one fdatasync and one flusher
 * wake-up for all of them, instead of a wake-up per request. */
void streams_defer_wakes(streams *st, http_conn *c) {
    store_defer_wake(true);
    loop_defer(http_conn_loop(c), wake_store, st);
}

void streams_handle(void *ctx, http_conn *c, http_request *req) {
    streams *st = ctx;
    streams_defer_wakes(st, c);
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
