/* router.c — see router.h. The prefix is matched on the raw path: a
 * percent-encoded one is no session route, and the stream layer answers it
 * (404). */
#include "router.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "http/parser.h"
#include "util/buf.h"
#include "util/log.h"

static bool has_prefix(const char *p, size_t n, const char *prefix) {
    size_t k = strlen(prefix);
    return n >= k && memcmp(p, prefix, k) == 0;
}

/* What a session request needs: the capability, and the session's path
 * (written to res) that it is checked against. `path` is decoded, as the
 * session layer decodes it before splitting the id from the route. */
static unsigned session_need(http_method m, const char *path, size_t n, buf *res) {
    size_t k = sizeof SESSION_PREFIX - 1;
    const char *slash = memchr(path + k, '/', n - k);
    size_t idlen = slash ? (size_t)(slash - path) : n;
    buf_append(res, path, idlen);
    const char *rest = path + idlen;
    size_t rn = n - idlen;
    if (m == HTTP_GET || m == HTTP_HEAD) return AUTH_READ;
    if (rn == 0) return m == HTTP_PUT ? AUTH_CREATE : m == HTTP_DELETE ? AUTH_DELETE : AUTH_WRITE;
    if (rn == 8 && memcmp(rest, "/objects", 8) == 0) return AUTH_OBJECTS;
    if (rn == 9 && memcmp(rest, "/presence", 9) == 0) return AUTH_PRESENCE;
    if (rn > 7 && memcmp(rest + rn - 7, "/cancel", 7) == 0) return AUTH_CANCEL;
    return AUTH_WRITE; /* messages, runs, chunks, heartbeats, ends */
}

/* A wake's callback, ack or release: its token is the wake's, checked by
 * the subscription layer; and the JWKS, public by design. */
static bool subs_open_route(const http_request *req) {
    const char *path = req->target.path;
    size_t n = req->target.path_len;
    static const char *const tails[] = {"/callback", "/ack", "/release"};
    if (n == sizeof SUBS_PREFIX - 1 + 9 && memcmp(path, SUBS_PREFIX "jwks.json", n) == 0 &&
        (req->head.method == HTTP_GET || req->head.method == HTTP_HEAD))
        return true;
    size_t k = sizeof SUBS_PREFIX - 1 + 14;
    if (!has_prefix(path, n, SUBS_PREFIX "subscriptions/")) return false;
    const char *slash = memchr(path + k, '/', n - k); /* exactly <id>/<tail> */
    if (!slash || slash == path + k) return false;
    size_t tn = n - (size_t)(slash - path);
    for (size_t i = 0; i < 3; i++)
        if (tn == strlen(tails[i]) && memcmp(slash, tails[i], tn) == 0) return true;
    return false;
}

/* /v1/shape and /v1/health: the shape layer's. */
static bool is_shape_route(const http_target *t) {
    return (t->path_len == sizeof SHAPE_PREFIX - 1 && memcmp(t->path, SHAPE_PREFIX, t->path_len) == 0) ||
           (t->path_len == sizeof SHAPE_HEALTH - 1 && memcmp(t->path, SHAPE_HEALTH, t->path_len) == 0);
}

static unsigned stream_need(http_method m) {
    switch (m) {
    case HTTP_PUT: return AUTH_CREATE;
    case HTTP_POST: return AUTH_WRITE;
    case HTTP_DELETE: return AUTH_DELETE;
    default: return AUTH_READ;
    }
}

static void refuse(router *r, http_conn *c, http_request *req, int status, const char *msg) {
    log_write(LOG_ERROR, "%.*s %.*s: %d %s", (int)req->head.method_len, req->head.method_str,
              (int)req->target.path_len, req->target.path, status, msg);
    streams_respond_begin(r->st, c, status);
    http_respond_header(c, "Content-Type", "application/json");
    http_respond_header(c, "Cache-Control", "no-store");
    if (status == 401) http_respond_header(c, "WWW-Authenticate", "Bearer realm=\"weft\", error=\"invalid_token\"");
    json_t *body = json_pack("{s:s}", "error", msg);
    char *text = json_dumps(body, JSON_COMPACT);
    http_respond_body(c, text, strlen(text));
    http_respond_body(c, "\n", 1);
    free(text);
    json_decref(body);
    http_respond_end(c);
}

/* The token: Authorization: Bearer, else ?token= (for EventSource, which
 * cannot send headers; never logged: logs show the path only). */
static bool token_of(http_request *req, buf *out) {
    size_t n;
    const char *h = http_head_get(&req->head, "authorization", &n);
    if (h) {
        if (n < 7 || strncasecmp(h, "Bearer ", 7) != 0) return false;
        buf_append(out, h + 7, n - 7);
        return true;
    }
    return req->target.query && http_query_get(req->target.query, req->target.query_len, "token", out);
}

/* A stream created as a fork reads its source: the token must grant
 * `read` there too. The source as the stream layer resolves it (decoded,
 * relative to /v1/stream/), or false if there is none. */
static bool fork_source(http_request *req, buf *out) {
    size_t n;
    const char *h = http_head_get(&req->head, "stream-forked-from", &n);
    if (!h) return false;
    buf decoded;
    buf_init(&decoded);
    if (http_percent_decode(h, n, &decoded) && decoded.len > 0) {
        if (decoded.data[0] != '/') buf_append_str(out, STREAM_PREFIX);
        buf_append(out, decoded.data, decoded.len);
    } else {
        buf_append_str(out, "/"); /* invalid: the stream layer refuses it; nothing is granted on "/" */
    }
    buf_free(&decoded);
    return true;
}

/* Whether the grant holds `need` on the NUL-terminated path in b (or, for
 * a subscription's pattern, on every path it matches); if not, the request
 * is answered 403. */
static bool grant_covers(router *r, http_conn *c, http_request *req, auth_grant *g, buf *b, unsigned need,
                         bool pattern) {
    buf_append_byte(b, 0);
    const char *path = (const char *)b->data;
    if (pattern ? auth_grant_allows_pattern(g, path, need) : auth_grant_allows(g, path, need)) return true;
    size_t len = strlen(path) + 120;
    char *msg = malloc(len);
    if (msg) snprintf(msg, len, "the token lacks the '%s' capability on %s", auth_cap_name(need), path);
    refuse(r, c, req, 403, msg ? msg : "the token lacks a capability");
    free(msg);
    return false;
}

/* A subscription request needs `subscribe` on the subscription
 * (SUBS_PREFIX subscriptions/<id>, written to res) and, when it links
 * streams, on each pattern and path it names, and `write` on a pull-wake
 * stream: true, or false after answering 403. */
static bool subs_covers(router *r, http_conn *c, http_request *req, auth_grant *g, const char *path, size_t n) {
    size_t k = sizeof SUBS_PREFIX - 1 + 14;
    const char *slash = n > k ? memchr(path + k, '/', n - k) : NULL;
    buf res;
    buf_init(&res);
    buf_append(&res, path, slash ? (size_t)(slash - path) : n);
    bool ok = grant_covers(r, c, req, g, &res, AUTH_SUBSCRIBE, false);
    json_t *body = NULL;
    if (ok && (req->head.method == HTTP_PUT || req->head.method == HTTP_POST) && req->body.len)
        body = json_loadb((const char *)req->body.data, req->body.len, 0, NULL);
    json_t *named = json_array();
    if (json_is_string(json_object_get(body, "pattern"))) json_array_append(named, json_object_get(body, "pattern"));
    if (json_is_array(json_object_get(body, "streams"))) json_array_extend(named, json_object_get(body, "streams"));
    size_t i;
    json_t *v;
    json_array_foreach(named, i, v) {
        if (!ok || !json_is_string(v)) continue; /* the layer refuses what is not a path */
        const char *p = json_string_value(v);
        buf_reset(&res);
        if (p[0] != '/') buf_append_str(&res, STREAM_PREFIX);
        buf_append_str(&res, p);
        ok = grant_covers(r, c, req, g, &res, AUTH_SUBSCRIBE, true);
    }
    const char *wake = json_string_value(json_object_get(body, "wake_stream"));
    if (ok && wake) {
        buf_reset(&res);
        buf_append_str(&res, STREAM_PREFIX);
        buf_append_str(&res, wake);
        ok = grant_covers(r, c, req, g, &res, AUTH_WRITE, false);
    }
    json_decref(named);
    json_decref(body);
    buf_free(&res);
    return ok;
}

/* Whether the request may go on; if not, it was answered. Paths are
 * checked decoded, exactly as the layers below will see them. */
static bool authorize(router *r, http_conn *c, http_request *req, auth_grant **grant) {
    const http_target *t = &req->target;
    if (req->head.method == HTTP_OPTIONS || (t->path_len == 8 && memcmp(t->path, "/healthz", 8) == 0) ||
        (t->path_len == sizeof SHAPE_HEALTH - 1 && memcmp(t->path, SHAPE_HEALTH, t->path_len) == 0) ||
        subs_open_route(req))
        return true;
    buf tok;
    buf_init(&tok);
    const char *why = NULL;
    if (!token_of(req, &tok) || tok.len == 0)
        why = "missing token: send Authorization: Bearer <token> (or ?token= on a read)";
    else *grant = auth_verify(r->auth, (const char *)tok.data, tok.len, (int64_t)time(NULL), &why);
    buf_free(&tok);
    if (!*grant) {
        refuse(r, c, req, 401, why);
        return false;
    }
    buf path, res;
    buf_init(&path);
    buf_init(&res);
    bool ok;
    if (!http_percent_decode(t->path, t->path_len, &path) || memchr(path.data, 0, path.len)) {
        refuse(r, c, req, 400, "invalid percent-encoding in path");
        ok = false;
    } else if (is_shape_route(t)) { /* a shape of table T needs read (delete) on /v1/shape/T */
        buf_append_str(&res, SHAPE_PREFIX "/");
        if (t->query) http_query_get(t->query, t->query_len, "table", &res);
        ok = grant_covers(r, c, req, *grant, &res, req->head.method == HTTP_DELETE ? AUTH_DELETE : AUTH_READ, false);
    } else if (has_prefix((const char *)path.data, path.len, SUBS_PREFIX "subscriptions/")) {
        ok = subs_covers(r, c, req, *grant, (const char *)path.data, path.len);
    } else if (has_prefix((const char *)path.data, path.len, SESSION_PREFIX)) {
        unsigned need = session_need(req->head.method, (const char *)path.data, path.len, &res);
        ok = grant_covers(r, c, req, *grant, &res, need, false);
    } else {
        buf_append(&res, path.data, path.len);
        ok = grant_covers(r, c, req, *grant, &res, stream_need(req->head.method), false);
        buf_reset(&res);
        if (ok && req->head.method == HTTP_PUT && fork_source(req, &res))
            ok = grant_covers(r, c, req, *grant, &res, AUTH_READ, false);
    }
    buf_free(&path);
    buf_free(&res);
    if (ok) req->principal = auth_grant_subject(*grant);
    return ok;
}

/* Whether the path is a stream path whose first segment is the reserved
 * "__ds" without being a control route as sent (percent-encoded, or the
 * bare prefix): no stream may live there. */
static bool reserved_in_disguise(const http_target *t) {
    if (!has_prefix(t->path, t->path_len, STREAM_PREFIX) || has_prefix(t->path, t->path_len, SUBS_PREFIX)) return false;
    buf d;
    buf_init(&d);
    size_t k = sizeof STREAM_PREFIX - 1;
    bool bad = http_percent_decode(t->path, t->path_len, &d) && d.len >= k + 4 &&
               memcmp(d.data + k, "__ds", 4) == 0 && (d.len == k + 4 || d.data[k + 4] == '/');
    buf_free(&d);
    return bad;
}

void router_handle(void *ctx, http_conn *c, http_request *req) {
    router *r = ctx;
    auth_grant *grant = NULL;
    if (reserved_in_disguise(&req->target)) {
        refuse(r, c, req, 400, "/v1/stream/__ds is reserved for subscriptions: send its routes as they are, not percent-encoded");
        return;
    }
    if (r->auth && !authorize(r, c, req, &grant)) {
        auth_grant_free(grant);
        return;
    }
    const http_target *t = &req->target;
    if (is_shape_route(t)) shapes_handle(r->shapes, c, req);
    else if (has_prefix(t->path, t->path_len, SESSION_PREFIX)) sessions_handle(r->ss, c, req);
    else if (has_prefix(t->path, t->path_len, SUBS_PREFIX)) subs_handle(r->subs, c, req);
    else streams_handle(r->st, c, req);
    req->principal = NULL;
    auth_grant_free(grant);
}
