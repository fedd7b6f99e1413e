/* routes.c — the reserved control routes under /v1/stream/__ds/
 * (PROTOCOL.md sections 6 and 7): subscriptions, their explicit streams,
 * webhook callbacks, pull-wake claim, ack and release, and the JWKS.
 * Errors answer {"error": {"code", "message"}}; a change is answered once
 * it is durable.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../util/log.h"
#include "../util/mem.h"
#include "subs_int.h"

typedef struct route {
    subs *s;
    http_conn *c;
    http_request *req;
    char id[SUBS_MAX_ID + 1];
    const char *action; /* "", "streams", "callback", ... (after the id) */
    size_t action_len;
} route;

static void answer(route *r, int status, json_t *body) {
    streams_respond_begin(r->s->st, r->c, status);
    http_respond_header(r->c, "Cache-Control", "no-store");
    if (body) {
        char *t = json_dumps(body, JSON_COMPACT);
        http_respond_header(r->c, "Content-Type", "application/json");
        http_respond_body(r->c, t, strlen(t));
        free(t);
        json_decref(body);
    }
    http_respond_end(r->c);
}

static void fail_with(route *r, int status, const char *code, const char *msg, json_t *extra) {
    const http_request_head *h = &r->req->head;
    log_write(status >= 500 ? LOG_ERROR : LOG_INFO, "%.*s %.*s: %d %s: %s", (int)h->method_len, h->method_str,
              (int)r->req->target.path_len, r->req->target.path, status, code, msg);
    json_t *err = extra ? extra : json_object();
    json_object_set_new(err, "code", json_string(code));
    json_object_set_new(err, "message", json_string(msg));
    answer(r, status, json_pack("{s:o}", "error", err));
}

static void fail(route *r, int status, const char *code, const char *msg) { fail_with(r, status, code, msg, NULL); }

static void fail_storage(route *r) {
    char msg[160];
    snprintf(msg, sizeof msg, "storage error: %s; nothing was changed", strerror(errno));
    fail(r, errno == ENOSPC || errno == EMLINK ? 507 : 500, "STORAGE", msg);
}

/* Where clients reach this server: --public-url, else the Host header. */
static void base_url(route *r, buf *out) {
    if (r->s->public_url) {
        buf_append_str(out, r->s->public_url);
    } else {
        size_t n;
        const char *host = http_head_get(&r->req->head, "host", &n);
        buf_append_str(out, "http://");
        if (host && n < 256 && !memchr(host, '/', n) && !memchr(host, '"', n)) buf_append(out, host, n);
        else buf_append_str(out, "localhost");
    }
    buf_append_byte(out, 0);
}

static json_t *serialize(route *r, sub *b) {
    json_t *o = json_pack("{s:s,s:s,s:s,s:O,s:o,s:O,s:I,s:s,s:s,s:O}", "id", b->id, "subscription_id", b->id, "type",
                          b->type == SUB_PULL ? "pull-wake" : "webhook", "pattern",
                          json_object_get(b->config, "pattern") ?: json_null(), "streams", sub_streams_json(b, false),
                          "wake_stream", json_object_get(b->config, "wake_stream") ?: json_null(), "lease_ttl_ms",
                          (json_int_t)b->lease_ttl_ms, "created_at", b->created_at, "status",
                          b->failed ? "failed" : "active", "description",
                          json_object_get(b->config, "description") ?: json_null());
    if (b->type == SUB_WEBHOOK) {
        buf jwks;
        buf_init(&jwks);
        base_url(r, &jwks);
        jwks.len--;
        buf_printf(&jwks, "%sjwks.json", SUBS_PREFIX);
        buf_append_byte(&jwks, 0);
        json_object_set_new(o, "webhook", json_pack("{s:s,s:{s:s,s:s,s:s}}", "url", b->url, "signing", "alg", "ed25519",
                                                    "kid", r->s->kid, "jwks_url", (char *)jwks.data));
        buf_free(&jwks);
    } else {
        json_object_set_new(o, "webhook", json_null());
    }
    return o;
}

/* The body as a JSON object; NULL after answering 400. */
static json_t *body_object(route *r) {
    json_error_t e;
    json_t *v = r->req->body.len ? json_loadb((const char *)r->req->body.data, r->req->body.len, 0, &e) : NULL;
    if (!json_is_object(v)) {
        json_decref(v);
        fail(r, 400, "INVALID_REQUEST", "the body must be a JSON object");
        return NULL;
    }
    return v;
}

/* A path a subscription may name: stream-root-relative, or under a prefix
 * a layer above publishes. */
static bool path_ok(subs *s, const char *p) {
    size_t n = strlen(p);
    if (n == 0 || n > 1024 || strstr(p, "..") || strncmp(p, "__ds/", 5) == 0 || strcmp(p, "__ds") == 0) return false;
    if (p[0] != '/') return true;
    for (size_t i = 0; i < s->nsources; i++)
        if (strncmp(p, s->sources[i].prefix, strlen(s->sources[i].prefix)) == 0) return true;
    return false;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* The "streams" member as a sorted array of distinct valid paths; NULL after answering 400. */
static json_t *stream_list(route *r, json_t *v) {
    json_t *out = json_array();
    if (!v) return out;
    size_t i, n = json_array_size(v);
    if (!json_is_array(v) || n > 10000) goto bad;
    const char **paths = xmalloc((n ? n : 1) * sizeof *paths);
    for (i = 0; i < n; i++) {
        paths[i] = json_string_value(json_array_get(v, i));
        if (!paths[i] || !path_ok(r->s, paths[i])) {
            free(paths);
            goto bad;
        }
    }
    qsort(paths, n, sizeof *paths, cmp_str);
    for (i = 0; i < n; i++)
        if (i == 0 || strcmp(paths[i], paths[i - 1]) != 0) json_array_append_new(out, json_string(paths[i]));
    free(paths);
    return out;
bad:
    json_decref(out);
    fail(r, 400, "INVALID_REQUEST",
         "streams must be an array of stream paths (relative to /v1/stream/, not under __ds/, or a session's /v1/session/<id>)");
    return NULL;
}

/* The normalised configuration of a PUT body; NULL after answering 400. */
static json_t *config_of(route *r, json_t *in) {
    const char *type = json_string_value(json_object_get(in, "type"));
    json_t *pat = json_object_get(in, "pattern"), *desc = json_object_get(in, "description");
    json_t *ttl = json_object_get(in, "lease_ttl_ms");
    if (!type || (strcmp(type, "webhook") != 0 && strcmp(type, "pull-wake") != 0)) {
        fail(r, 400, "INVALID_REQUEST", "type must be \"webhook\" or \"pull-wake\"");
        return NULL;
    }
    if (pat && (!json_is_string(pat) || !path_ok(r->s, json_string_value(pat)))) {
        fail(r, 400, "INVALID_REQUEST", "pattern must be a glob over stream paths (not under __ds/)");
        return NULL;
    }
    if ((desc && !json_is_string(desc)) || (ttl && !json_is_integer(ttl))) {
        fail(r, 400, "INVALID_REQUEST", "description must be a string and lease_ttl_ms an integer");
        return NULL;
    }
    json_int_t lease = ttl ? json_integer_value(ttl) : SUBS_LEASE_DEFAULT_MS;
    if (lease < SUBS_LEASE_MIN_MS || lease > SUBS_LEASE_MAX_MS) {
        fail(r, 400, "INVALID_REQUEST", "lease_ttl_ms must be from 1000 (1 s) to 600000 (10 min)");
        return NULL;
    }
    json_t *paths = stream_list(r, json_object_get(in, "streams"));
    if (!paths) return NULL;
    if (!pat && json_array_size(paths) == 0) {
        json_decref(paths);
        fail(r, 400, "INVALID_REQUEST", "a subscription needs a pattern or streams");
        return NULL;
    }
    json_t *cfg = json_pack("{s:s,s:o,s:I}", "type", type, "streams", paths, "lease_ttl_ms", lease);
    if (pat) json_object_set(cfg, "pattern", pat);
    if (desc) json_object_set(cfg, "description", desc);
    if (strcmp(type, "webhook") == 0) {
        const char *url = json_string_value(json_object_get(json_object_get(in, "webhook"), "url"));
        const char *why = url ? urlcheck_url(url, r->s->cfg.allow_private) : "a webhook subscription needs webhook.url";
        if (why) {
            json_decref(cfg);
            fail(r, 400, url ? "WEBHOOK_URL_REJECTED" : "INVALID_REQUEST", why);
            return NULL;
        }
        json_object_set_new(cfg, "webhook", json_pack("{s:s}", "url", url));
    } else {
        const char *ws = json_string_value(json_object_get(in, "wake_stream"));
        if (!ws || ws[0] == '/' || !path_ok(r->s, ws)) {
            json_decref(cfg);
            fail(r, 400, "INVALID_REQUEST", "a pull-wake subscription needs wake_stream, a stream path");
            return NULL;
        }
        json_object_set_new(cfg, "wake_stream", json_string(ws));
    }
    return cfg;
}

static void created_now(char out[48]) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, 48, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000));
}

static void put_subscription(route *r) {
    json_t *in = body_object(r);
    json_t *cfg = in ? config_of(r, in) : NULL;
    json_decref(in);
    if (!cfg) return;
    subs *s = r->s;
    sub *b = sub_find(s, r->id);
    if (b) {
        if (json_equal(b->config, cfg)) answer(r, 200, serialize(r, b));
        else fail(r, 409, "SUBSCRIPTION_EXISTS", "a subscription with this id exists with another configuration");
        json_decref(cfg);
        return;
    }
    if (s->nsubs >= s->cfg.max_subscriptions) {
        json_decref(cfg);
        fail(r, 507, "LIMIT", "subscription limit reached (--max-subscriptions)");
        return;
    }
    char created[48];
    buf base;
    buf_init(&base);
    base_url(r, &base);
    created_now(created);
    b = sub_new(r->id, cfg, (const char *)base.data, created);
    buf_free(&base);
    sub_backfill(s, b, json_object_get(cfg, "streams"), true);
    json_decref(cfg);
    if (persist_snapshot(s, b, r->c) != 0) {
        fail_storage(r);
        sub_free(b);
        return;
    }
    if (s->nsubs == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->list = xrealloc(s->list, s->cap * sizeof *s->list);
    }
    s->list[s->nsubs++] = b;
    atomic_store(&s->nlive, s->nsubs);
    log_write(LOG_INFO, "subscription %s created (%s)", b->id, b->type == SUB_PULL ? "pull-wake" : "webhook");
    answer(r, 201, serialize(r, b));
    sub_maybe_wake(s, b);
}

static void delete_subscription(route *r, sub *b) {
    subs *s = r->s;
    if (persist_delete(s, b, r->c) != 0) {
        fail_storage(r);
        return;
    }
    b->gone = true;
    for (size_t i = 0; i < s->nsubs; i++)
        if (s->list[i] == b) s->list[i] = s->list[--s->nsubs];
    atomic_store(&s->nlive, s->nsubs);
    sub_unref(b);
    answer(r, 204, NULL);
}

static void add_streams(route *r, sub *b) {
    json_t *in = body_object(r);
    json_t *list = in ? stream_list(r, json_object_get(in, "streams")) : NULL;
    json_decref(in);
    if (!list) return;
    sub_backfill(r->s, b, list, false);
    json_t *links = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        sub_link *l = sub_link_find(b, json_string_value(v));
        json_array_append_new(links, json_pack("[s,i,I]", l->path, (int)l->kind, (json_int_t)l->acked));
    }
    json_decref(list);
    json_t *rec = json_pack("{s:s,s:o}", "t", "link", "l", links);
    int rc = persist_record(r->s, b, rec, r->c);
    json_decref(rec);
    if (rc != 0) fail_storage(r);
    else answer(r, 204, NULL);
    sub_maybe_wake(r->s, b);
}

static void remove_stream(route *r, sub *b, const char *enc, size_t n) {
    buf path;
    buf_init(&path);
    if (!http_percent_decode(enc, n, &path)) {
        buf_free(&path);
        fail(r, 400, "INVALID_REQUEST", "invalid percent-encoding in the stream path");
        return;
    }
    buf_append_byte(&path, 0);
    sub_link *l = sub_link_find(b, (const char *)path.data);
    int rc = 0;
    if (l && (l->kind & LINK_EXPLICIT)) {
        l->kind &= ~(unsigned)LINK_EXPLICIT;
        if (!l->kind && b->pattern && sub_pattern_matches(b->pattern, l->path)) l->kind = LINK_GLOB;
        json_t *rec = json_pack("{s:s,s:[[s,i,I]]}", "t", "link", "l", l->path, (int)l->kind, (json_int_t)l->acked);
        if (!l->kind) sub_link_drop(b, l);
        rc = persist_record(r->s, b, rec, r->c);
        json_decref(rec);
    }
    buf_free(&path);
    if (rc != 0) fail_storage(r);
    else answer(r, 204, NULL);
}

/* The wake a callback, ack or release names, checked against its token:
 * false after answering 401 or 409 FENCED. */
static bool wake_current(route *r, sub *b, json_t *in) {
    size_t n;
    const char *h = http_head_get(&r->req->head, "authorization", &n);
    uint64_t gen;
    char wake[24];
    if (!h || n < 8 || strncasecmp(h, "Bearer ", 7) != 0 || keys_token_check(r->s, h + 7, n - 7, b->id, &gen, wake) != 0) {
        fail(r, 401, "TOKEN_INVALID", "send the wake's token as Authorization: Bearer <token>");
        return false;
    }
    json_t *g = json_object_get(in, "generation");
    const char *w = json_string_value(json_object_get(in, "wake_id"));
    if (!b->wake_id[0] || gen != b->generation || !json_is_integer(g) ||
        (uint64_t)json_integer_value(g) != b->generation || !w || strcmp(w, b->wake_id) != 0 ||
        strcmp(wake, b->wake_id) != 0 || (b->type == SUB_PULL && !b->holder)) {
        fail(r, 409, "FENCED", "this wake is over: its generation or wake id is not the current one");
        return false;
    }
    return true;
}

/* Check every ack, then apply them all (logged with the answer held); false after answering. */
static bool apply_acks(route *r, sub *b, json_t *acks) {
    if (acks && !json_is_array(acks)) {
        fail(r, 400, "INVALID_REQUEST", "acks must be an array of {stream, offset}");
        return false;
    }
    size_t i;
    json_t *a;
    json_array_foreach(acks, i, a) {
        const char *p = json_string_value(json_object_get(a, "stream")) ?: json_string_value(json_object_get(a, "path"));
        const char *off = json_string_value(json_object_get(a, "offset"));
        sub_link *l = p ? sub_link_find(b, p) : NULL;
        int64_t v;
        const char *why = !l ? "an ack names a stream this subscription does not link"
                          : !off || !parse_offset_value(off, &v) ? "an ack's offset is not an offset"
                          : v == SUBS_BEFORE_FIRST ? "an ack's offset must not be -1"
                          : v < l->acked ? "an ack's offset is before the one already acked"
                          : v > l->tail ? "an ack's offset is beyond the stream's tail" : NULL;
        if (why) {
            fail(r, 409, "INVALID_OFFSET", why);
            return false;
        }
    }
    json_t *rec_acks = json_array();
    json_array_foreach(acks, i, a) {
        const char *p = json_string_value(json_object_get(a, "stream")) ?: json_string_value(json_object_get(a, "path"));
        sub_link *l = sub_link_find(b, p);
        parse_offset_value(json_string_value(json_object_get(a, "offset")), &l->acked);
        json_array_append_new(rec_acks, json_pack("[s,I]", l->path, (json_int_t)l->acked));
    }
    json_t *rec = json_pack("{s:s,s:o}", "t", "ack", "a", rec_acks);
    int rc = json_array_size(rec_acks) ? persist_record(r->s, b, rec, r->c) : 0;
    json_decref(rec);
    if (rc != 0) fail_storage(r);
    return rc == 0;
}

/* POST callback (webhook) or ack (pull-wake): acks, a heartbeat, or done. */
static void ack(route *r, sub *b, sub_type want) {
    if (b->type != want) {
        fail(r, 400, "INVALID_REQUEST", want == SUB_PULL ? "ack is for pull-wake subscriptions (webhooks call back)"
                                                         : "callback is for webhook subscriptions (pull-wake acks)");
        return;
    }
    json_t *in = body_object(r);
    if (!in) return;
    if (wake_current(r, b, in) && apply_acks(r, b, json_object_get(in, "acks"))) {
        b->lease_until = subs_now_ms() + (int64_t)b->lease_ttl_ms;
        if (b->failed) sub_delivered(r->s, b); /* a callback proves the wake arrived */
        bool next = json_is_true(json_object_get(in, "done")) && sub_wake_end(r->s, b);
        answer(r, 200, json_pack("{s:b,s:b}", "ok", 1, "next_wake", next));
    }
    json_decref(in);
}

static void claim(route *r, sub *b) {
    if (b->type != SUB_PULL) {
        fail(r, 400, "INVALID_REQUEST", "claim is for pull-wake subscriptions");
        return;
    }
    json_t *in = body_object(r);
    if (!in) return;
    const char *worker = json_string_value(json_object_get(in, "worker"));
    if (!worker || !*worker || strlen(worker) > 256) {
        fail(r, 400, "INVALID_REQUEST", "worker must name the claiming worker");
    } else if (b->holder) {
        fail_with(r, 409, "ALREADY_CLAIMED", "another worker holds this subscription's lease",
                  json_pack("{s:s,s:I}", "current_holder", b->holder, "generation", (json_int_t)b->generation));
    } else if (!b->wake_id[0] && !sub_has_pending(b)) {
        fail(r, 409, "NO_PENDING_WORK", "no linked stream has anything past its acked offset");
    } else {
        sub_maybe_wake(r->s, b);
        uint64_t logged;
        streams_hold_tail(r->s->st, b->log_path, r->c, &logged); /* answered once its generation is durable */
        b->holder = xstrndup(worker, strlen(worker));
        b->lease_until = subs_now_ms() + (int64_t)b->lease_ttl_ms;
        for (size_t i = 0; i < b->nlinks; i++) b->links[i].snap = b->links[i].tail;
        char *tok = keys_token_make(r->s, b->id, b->generation, b->wake_id);
        answer(r, 200, json_pack("{s:s,s:I,s:s,s:o,s:I}", "wake_id", b->wake_id, "generation", (json_int_t)b->generation,
                                 "token", tok, "streams", sub_streams_json(b, true), "lease_ttl_ms",
                                 (json_int_t)b->lease_ttl_ms));
        free(tok);
    }
    json_decref(in);
}

static void release(route *r, sub *b) {
    if (b->type != SUB_PULL) {
        fail(r, 400, "INVALID_REQUEST", "release is for pull-wake subscriptions");
        return;
    }
    json_t *in = body_object(r);
    if (!in) return;
    if (wake_current(r, b, in)) {
        sub_wake_end(r->s, b);
        answer(r, 204, NULL);
    }
    json_decref(in);
}

static bool is(const route *r, const char *action) {
    return r->action_len == strlen(action) && memcmp(r->action, action, r->action_len) == 0;
}

static void dispatch(route *r) {
    http_method m = r->req->head.method;
    subs_drain(r->s); /* what the streams reported before this request */
    sub *b = sub_find(r->s, r->id);
    if (r->action_len == 0 && m == HTTP_PUT) return put_subscription(r);
    if (!b) return fail(r, 404, "SUBSCRIPTION_NOT_FOUND", "no subscription with this id");
    if (r->action_len == 0 && (m == HTTP_GET || m == HTTP_HEAD)) return answer(r, 200, serialize(r, b));
    if (r->action_len == 0 && m == HTTP_DELETE) return delete_subscription(r, b);
    if (is(r, "streams") && m == HTTP_POST) return add_streams(r, b);
    if (r->action_len > 8 && memcmp(r->action, "streams/", 8) == 0 && m == HTTP_DELETE)
        return remove_stream(r, b, r->action + 8, r->action_len - 8);
    if (is(r, "callback") && m == HTTP_POST) return ack(r, b, SUB_WEBHOOK);
    if (is(r, "ack") && m == HTTP_POST) return ack(r, b, SUB_PULL);
    if (is(r, "claim") && m == HTTP_POST) return claim(r, b);
    if (is(r, "release") && m == HTTP_POST) return release(r, b);
    fail(r, 405, "METHOD_NOT_ALLOWED", "no such subscription operation");
}

static bool id_ok(const char *p, size_t n) {
    if (n == 0 || n > SUBS_MAX_ID) return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~", p[i])) return false;
    return true;
}

void subs_handle(void *ctx, http_conn *c, http_request *req) {
    subs *s = ctx;
    route r = {.s = s, .c = c, .req = req};
    streams_defer_wakes(s->st, c);
    const char *p = req->target.path + strlen(SUBS_PREFIX);
    size_t n = req->target.path_len - strlen(SUBS_PREFIX);
    pthread_mutex_lock(&s->mu);
    if (n == 9 && memcmp(p, "jwks.json", 9) == 0 && (req->head.method == HTTP_GET || req->head.method == HTTP_HEAD)) {
        streams_respond_begin(s->st, c, 200);
        http_respond_header(c, "Content-Type", "application/jwk-set+json");
        http_respond_header(c, "Cache-Control", "public, max-age=300");
        json_t *doc = keys_jwks(s);
        char *t = json_dumps(doc, JSON_COMPACT);
        http_respond_body(c, t, strlen(t));
        free(t);
        json_decref(doc);
        http_respond_end(c);
    } else if (n > 14 && memcmp(p, "subscriptions/", 14) == 0) {
        const char *id = p + 14, *slash = memchr(id, '/', n - 14);
        size_t idn = slash ? (size_t)(slash - id) : n - 14;
        if (!id_ok(id, idn)) {
            fail(&r, 400, "INVALID_REQUEST", "a subscription id is 1 to 128 of A-Z a-z 0-9 - _ . ~");
        } else {
            memcpy(r.id, id, idn);
            r.id[idn] = 0;
            r.action = slash ? slash + 1 : "";
            r.action_len = slash ? n - 14 - idn - 1 : 0;
            dispatch(&r);
        }
    } else {
        fail(&r, 404, "NOT_FOUND", "no such control route under /v1/stream/__ds/");
    }
    pthread_mutex_unlock(&s->mu);
}
