/* routes.c — Electric's HTTP API for shapes: GET /v1/shape (the initial
 * sync from offset -1, catch-up from an offset, live long-polls and SSE,
 * subsets), POST /v1/shape (a subset), DELETE /v1/shape and
 * GET /v1/health. A shape nobody has asked for yet is made by the Postgres
 * thread (the request waits for its snapshot); every other request is
 * answered from the shape's log, on the connection's loop. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../stream/protocol.h"
#include "../util/log.h"
#include "../util/mem.h"
#include "shape_int.h"

#define MAX_PARAMS 100

static void begin(shapes *sh, http_conn *c, int status) {
    streams_respond_begin(sh->st, c, status);
    http_respond_header(c, "Content-Type", "application/json");
}

static void answer_json(shapes *sh, http_conn *c, int status, json_t *body) {
    begin(sh, c, status);
    http_respond_header(c, "Cache-Control", "no-store");
    char *t = body ? json_dumps(body, JSON_COMPACT) : NULL; /* NULL: a message that was not UTF-8 */
    const char *text = t ? t : "{\"message\":\"invalid request\"}";
    http_respond_body(c, text, strlen(text));
    free(t);
    json_decref(body);
    http_respond_end(c);
}

/* 400 in Electric's shape: {"message", "errors": {param: [why]}}. */
static void bad_request(shapes *sh, http_conn *c, const char *param, const char *why) {
    http_request *req = http_conn_request(c);
    log_write(LOG_INFO, "%.*s %.*s: 400 %s: %s", (int)req->head.method_len, req->head.method_str,
              (int)req->target.path_len, req->target.path, param, why);
    answer_json(sh, c, 400, json_pack("{s:s,s:{s:[s]}}", "message", "Invalid request", "errors", param, why));
}

void shape_answer_error(shapes *sh, http_conn *c, int status, const char *param_name, const char *msg) {
    if (status == 400) bad_request(sh, c, param_name, msg);
    else answer_json(sh, c, status, json_pack("{s:s}", "message", msg));
}

/* A query parameter, decoded, or NULL; `name` also matched percent-encoded
 * (the client sends params[1] as params%5B1%5D). */
static const char *param(http_request *req, const char *name, buf *b) {
    buf_reset(b);
    if (!req->target.query) return NULL;
    bool got = http_query_get(req->target.query, req->target.query_len, name, b);
    if (!got && strchr(name, '[')) {
        char enc[64];
        size_t k = 0;
        for (const char *p = name; *p && k + 4 < sizeof enc; p++) {
            if (*p == '[') k += (size_t)snprintf(enc + k, sizeof enc - k, "%%5B");
            else if (*p == ']') k += (size_t)snprintf(enc + k, sizeof enc - k, "%%5D");
            else enc[k++] = *p;
        }
        enc[k] = 0;
        got = http_query_get(req->target.query, req->target.query_len, enc, b);
    }
    if (!got) return NULL;
    buf_append_byte(b, 0);
    return (const char *)b->data;
}

static bool is_true(const char *v) { return v && strcmp(v, "true") == 0; }

/* The shape a request asks for, as {schema, table, where?, params, columns?}
 * and its key; NULL after answering 400. */
static json_t *request_def(shapes *sh, http_conn *c, http_request *req, char **key) {
    buf b;
    buf_init(&b);
    json_t *def = NULL;
    const char *table = param(req, "table", &b);
    if (!table || !*table) {
        bad_request(sh, c, "table", "table is required: ?table=<name> (or schema.name)");
        goto out;
    }
    const char *dot = strchr(table, '.');
    char schema[256] = "public", name[256];
    if (dot) snprintf(schema, sizeof schema, "%.*s", (int)(dot - table), table);
    snprintf(name, sizeof name, "%s", dot ? dot + 1 : table);
    for (char *p = schema; *p && !strchr(table, '"'); p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    for (char *p = name; *p && !strchr(table, '"'); p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    def = json_pack("{s:s,s:s,s:[]}", "schema", schema, "table", name, "params");
    const char *where = param(req, "where", &b);
    json_t *wv = where && *where ? json_string(where) : NULL;
    if (where && *where && !wv) {
        bad_request(sh, c, "where", "where must be UTF-8");
        json_decref(def);
        def = NULL;
        goto out;
    }
    if (wv) json_object_set_new(def, "where", wv);
    for (int i = 1; i <= MAX_PARAMS; i++) {
        char pn[32];
        snprintf(pn, sizeof pn, "params[%d]", i);
        const char *v = param(req, pn, &b);
        if (!v) break;
        json_t *pvj = json_string(v);
        if (!pvj) {
            bad_request(sh, c, "params", "params must be UTF-8");
            json_decref(def);
            def = NULL;
            goto out;
        }
        json_array_append_new(json_object_get(def, "params"), pvj);
    }
    const char *cols = param(req, "columns", &b);
    if (cols && *cols) {
        json_t *list = json_array();
        for (const char *p = cols; *p;) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            char col[256];
            if (n >= sizeof col) {
                json_decref(list);
                bad_request(sh, c, "columns", "a column name is longer than 255 bytes");
                json_decref(def);
                def = NULL;
                goto out;
            }
            memcpy(col, p, n);
            col[n] = 0;
            if (col[0] == '"' && n >= 2 && col[n - 1] == '"') memmove(col, col + 1, n - 2), col[n - 2] = 0;
            json_t *cname = json_string(col);
            if (!cname) {
                json_decref(list);
                bad_request(sh, c, "columns", "columns must be UTF-8");
                json_decref(def);
                def = NULL;
                goto out;
            }
            json_array_append_new(list, cname);
            p += n + (comma ? 1 : 0);
        }
        json_object_set_new(def, "columns", list);
    }
    const char *replica = param(req, "replica", &b);
    if (replica && strcmp(replica, "default") != 0 && strcmp(replica, "full") != 0) {
        bad_request(sh, c, "replica", "replica must be default or full");
        json_decref(def);
        def = NULL;
        goto out;
    }
    if (replica && strcmp(replica, "full") == 0) json_object_set_new(def, "replica", json_string("full"));
    const char *mode = param(req, "log", &b);
    if (mode && strcmp(mode, "full") != 0 && strcmp(mode, "changes_only") != 0) {
        bad_request(sh, c, "log", "log must be full or changes_only");
        json_decref(def);
        def = NULL;
        goto out;
    }
    if (mode && strcmp(mode, "changes_only") == 0) json_object_set_new(def, "log", json_string("changes_only"));
    *key = json_dumps(def, JSON_COMPACT | JSON_SORT_KEYS);
out:
    buf_free(&b);
    return def;
}

/* --- subsets: a page of a shape's rows, from Postgres --- */

static const char *const SUBSET_NAMES[] = {"where", "params", "limit", "offset", "order_by", "where_expr", "order_by_expr"};

/* A whole number >= min, given as a JSON integer or a decimal string. */
static bool whole(json_t *v, long long min, long long *out) {
    char *end = NULL;
    if (json_is_integer(v)) *out = json_integer_value(v);
    else if (json_is_string(v) && *json_string_value(v)) *out = strtoll(json_string_value(v), &end, 10);
    else return false;
    return (!end || !*end) && *out >= min;
}

/* The subset's params as an array of text: {"1": v1, "2": v2, ...} (or [v1, v2, ...]). */
static json_t *subset_params(json_t *v, const char **why) {
    json_t *out = json_array();
    size_t n = json_is_object(v) ? json_object_size(v) : json_array_size(v);
    for (size_t i = 0; i < n && n <= MAX_PARAMS; i++) {
        char k[24];
        snprintf(k, sizeof k, "%zu", i + 1);
        json_t *x = json_is_object(v) ? json_object_get(v, k) : json_array_get(v, i);
        if (json_is_string(x)) json_array_append(out, x);
        else if (json_is_integer(x)) json_array_append_new(out, json_sprintf("%lld", (long long)json_integer_value(x)));
        else if (json_is_real(x)) json_array_append_new(out, json_sprintf("%.17g", json_real_value(x)));
        else if (json_is_boolean(x)) json_array_append_new(out, json_string(json_is_true(x) ? "true" : "false"));
        else break;
    }
    if (v && (!(json_is_object(v) || json_is_array(v)) || json_array_size(out) != n)) {
        *why = n > MAX_PARAMS ? "subset params: at most 100" : "subset params must be {\"1\": value, ...}, numbered from 1";
        json_decref(out);
        return NULL;
    }
    return out;
}

/* The subset a request asks for (GET: subset__* parameters; POST: a JSON
 * body), or NULL if none; false after answering 400. */
static bool subset_request(shapes *sh, http_conn *c, http_request *req, json_t **out) {
    *out = NULL;
    json_t *in = NULL;
    if (req->head.method == HTTP_POST) {
        in = json_loadb((const char *)req->body.data, req->body.len, 0, NULL);
        if (!json_is_object(in)) {
            json_decref(in);
            bad_request(sh, c, "subset", "POST /v1/shape takes a JSON object: {where, params, limit, offset, order_by}");
            return false;
        }
    } else {
        buf b;
        buf_init(&b);
        for (size_t i = 0; i < sizeof SUBSET_NAMES / sizeof *SUBSET_NAMES; i++) {
            char name[32];
            snprintf(name, sizeof name, "subset__%s", SUBSET_NAMES[i]);
            const char *v = param(req, name, &b);
            if (!v) continue;
            if (!in) in = json_object();
            bool params = strcmp(SUBSET_NAMES[i], "params") == 0;
            json_t *val = params ? json_loads(v, 0, NULL) : json_string(v);
            if (!val) {
                buf_free(&b);
                json_decref(in);
                bad_request(sh, c, "subset", params ? "subset__params must be JSON: {\"1\": value, ...}"
                                                    : "subset parameters must be UTF-8");
                return false;
            }
            json_object_set_new(in, SUBSET_NAMES[i], val);
        }
        buf_free(&b);
        if (!in) return true;
    }
    const char *why = NULL;
    json_t *sub = json_object(), *v;
    long long n;
    if ((v = json_object_get(in, "where")) && !json_is_null(v)) {
        if (json_is_string(v)) json_object_set(sub, "where", v);
        else why = "subset where must be a string (SQL)";
    }
    json_t *params = subset_params(json_object_get(in, "params"), &why);
    if (params) json_object_set_new(sub, "params", params);
    if (!why && (v = json_object_get(in, "limit")) && !json_is_null(v)) {
        if (whole(v, 1, &n)) json_object_set_new(sub, "limit", json_integer(n));
        else why = "subset limit must be a whole number above 0";
    }
    if (!why && (v = json_object_get(in, "offset")) && !json_is_null(v)) {
        if (whole(v, 0, &n)) json_object_set_new(sub, "offset", json_integer(n));
        else why = "subset offset must be a whole number, 0 or more";
    }
    if (!why && (v = json_object_get(in, "order_by")) && !json_is_null(v)) {
        if (json_is_string(v)) json_object_set(sub, "order_by", v);
        else why = "subset order_by must be a string (SQL)";
    }
    if (!why && (json_object_get(sub, "limit") || json_object_get(sub, "offset")) && !json_object_get(sub, "order_by"))
        why = "a subset with a limit or an offset needs order_by";
    json_decref(in);
    if (why) {
        json_decref(sub);
        bad_request(sh, c, "subset", why);
        return false;
    }
    *out = sub;
    return true;
}

/* --- answers from a shape's log --- */

/* An offset this server gave: an electric-offset header's, or the
 * "<position>_0" a client makes of an SSE up-to-date message. */
static offset_kind shape_offset(const char *off, uint64_t *pos) {
    offset_kind k = offset_parse(off, strlen(off), pos);
    if (k != OFFSET_INVALID) return k;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(off, &end, 10);
    if (end == off || errno || strcmp(end, "_0") != 0) return OFFSET_INVALID;
    *pos = v;
    return OFFSET_AT;
}

static void waiter_fire(void *arg);
static void waiter_timeout(void *arg);
static void waiter_abort(void *arg);
static void sse_open(shapes *sh, shape *s, http_conn *c, uint64_t from);

/* A live reader of s's log from offset `from`, parked on c (its timer not yet armed). */
static shape_waiter *waiter_new(shapes *sh, shape *s, http_conn *c, uint64_t from, bool sse) {
    shape_waiter *w = xcalloc(1, sizeof *w);
    w->sh = sh;
    w->c = c;
    http_conn_ref(c);
    pthread_mutex_lock(&sh->mu);
    s->refs++;
    pthread_mutex_unlock(&sh->mu);
    w->s = s;
    w->offset = from;
    w->sse = sse;
    loop_timer_init(&w->timer, waiter_timeout, w);
    http_conn_park(c, waiter_abort, w);
    return w;
}

static void free_waiter(shape_waiter *w) {
    http_conn_unref(w->c);
    pthread_mutex_lock(&w->sh->mu);
    shape_unref(w->s);
    pthread_mutex_unlock(&w->sh->mu);
    free(w);
}

/* Take w off its log's list of waiters; with sh->wait_mu held. */
static void waiter_detach(shapes *sh, shape_waiter *w) {
    if (w->prev) w->prev->next = w->next;
    else if (w->next) strmap_put(sh->waiting, w->s->log_path, w->next);
    else strmap_del(sh->waiting, w->s->log_path);
    if (w->next) w->next->prev = w->prev;
    w->linked = false;
}

/* Wait for the log to grow past w->offset (or wake at once if it already has). */
static void waiter_link(shape_waiter *w) {
    shapes *sh = w->sh;
    const char *path = w->s->log_path;
    pthread_mutex_lock(&sh->wait_mu);
    w->next = strmap_get(sh->waiting, path);
    w->prev = NULL;
    if (w->next) w->next->prev = w;
    strmap_put(sh->waiting, path, w);
    w->linked = true;
    pthread_mutex_unlock(&sh->wait_mu);
    uint64_t now_end; /* it may have grown between the read and the link */
    if (streams_visible_end(sh->st, path, &now_end) == 0 && now_end > w->offset) shape_waiters_wake(sh, path, now_end);
}

static void schema_header(http_conn *c, const shape *s) { http_respond_header(c, "electric-schema", s->schema_header); }

void shape_answer_subset(shapes *sh, shape *s, http_conn *c, const char *body, uint64_t offset) {
    char noff[OFFSET_LEN + 1];
    offset_format(offset, noff);
    begin(sh, c, 200);
    http_respond_header(c, "electric-handle", s->handle);
    http_respond_header(c, "electric-offset", noff);
    http_respond_header(c, "electric-snapshot", "true");
    schema_header(c, s);
    http_respond_header(c, "Cache-Control", "no-cache");
    http_respond_body(c, body, strlen(body));
    http_respond_end(c);
}

/* 409: the handle is gone (truncated, schema change, lost slot, restart of
 * a shape that never finished): start again from -1. */
void shape_answer_refetch(shapes *sh, http_conn *c, const char *new_handle) {
    begin(sh, c, 409);
    http_respond_header(c, "Cache-Control", "no-store");
    if (new_handle) http_respond_header(c, "electric-handle", new_handle);
    static const char body[] = "[{\"headers\":{\"control\":\"must-refetch\"}}]";
    http_respond_body(c, body, sizeof body - 1);
    http_respond_end(c);
}

void shape_answer(shapes *sh, shape *s, http_conn *c) {
    http_request *req = http_conn_request(c);
    buf b, body;
    buf_init(&b);
    buf_init(&body);
    const char *off = param(req, "offset", &b);
    uint64_t from = 0;
    bool start = !off || strcmp(off, "-1") == 0;
    offset_kind k = start ? OFFSET_START : shape_offset(off, &from);
    bool live = is_true(param(req, "live", &b)) && !start;
    bool sse = live && (is_true(param(req, "live_sse", &b)) || is_true(param(req, "experimental_live_sse", &b)));
    const char *cursor = param(req, "cursor", &b);
    char client_cursor[64] = "";
    if (cursor) snprintf(client_cursor, sizeof client_cursor, "%s", cursor);
    if (k == OFFSET_INVALID || k == OFFSET_NOW) {
        uint64_t end;
        if (k == OFFSET_NOW && streams_visible_end(sh->st, s->log_path, &end) == 0) from = end;
        else {
            bad_request(sh, c, "offset", "offset must be -1, now, or an offset this server gave");
            goto out;
        }
    }
    if (sse) {
        sse_open(sh, s, c, from);
        goto out;
    }
    uint64_t next = from, end = from;
    buf_append_byte(&body, '[');
    if (streams_read(sh->st, s->log_path, from, sh->cfg.read_chunk, &body, &next, &end) != 0) {
        if (errno == ERANGE) bad_request(sh, c, "offset", "offset is not one of this shape's");
        else shape_answer_refetch(sh, c, NULL);
        goto out;
    }
    if (next == from && live) { /* nothing new: wait for it */
        shape_waiter *w = waiter_new(sh, s, c, from, false);
        loop_timer_set(http_conn_loop(c), &w->timer, sh->cfg.long_poll_ms);
        waiter_link(w);
        goto out;
    }
    /* stored form "m1,\nm2,\n": drop the last separator, end with up-to-date if caught up */
    if (body.len > 1) body.len -= 2;
    bool up_to_date = next == end;
    if (up_to_date) {
        if (body.len > 1) buf_append_byte(&body, ',');
        buf_append_str(&body, "{\"headers\":{\"control\":\"up-to-date\"}}");
    }
    buf_append_byte(&body, ']');
    char noff[OFFSET_LEN + 1], etag[160];
    offset_format(next, noff);
    begin(sh, c, 200);
    http_respond_header(c, "electric-handle", s->handle);
    http_respond_header(c, "electric-offset", noff);
    schema_header(c, s);
    if (up_to_date) http_respond_header(c, "electric-up-to-date", "");
    if (live) {
        char cur[24];
        snprintf(cur, sizeof cur, "%llu", (unsigned long long)cursor_next(client_cursor, strlen(client_cursor), (int64_t)time(NULL) * 1000));
        http_respond_header(c, "electric-cursor", cur);
        http_respond_header(c, "Cache-Control", "public, max-age=5, stale-while-revalidate=5");
    } else {
        http_respond_header(c, "Cache-Control", up_to_date ? "public, max-age=5, stale-while-revalidate=5" : "public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746");
    }
    snprintf(etag, sizeof etag, "\"%s:%llu:%llu\"", s->handle, (unsigned long long)from, (unsigned long long)next);
    http_respond_header(c, "ETag", etag);
    http_respond_body(c, body.data, body.len);
    http_respond_end(c);
out:
    buf_free(&b);
    buf_free(&body);
}

/* --- live waits: whichever of wake, timeout and abort comes first answers --- */

static bool waiter_unlink(shape_waiter *w) {
    shapes *sh = w->sh;
    pthread_mutex_lock(&sh->wait_mu);
    bool was = w->linked;
    if (was) waiter_detach(sh, w);
    pthread_mutex_unlock(&sh->wait_mu);
    return was;
}

/* Answer a live request again now that its shape has more (or at the end
 * of its wait, up-to-date with nothing new). */
static void waiter_answer(shape_waiter *w, bool timed_out) {
    shapes *sh = w->sh;
    http_conn *c = w->c;
    http_conn_unpark(c, w);
    loop_timer_cancel(http_conn_loop(c), &w->timer);
    if (http_conn_closed(c)) return;
    shape *s = w->s;
    if (timed_out) {
        char noff[OFFSET_LEN + 1], cur[24];
        offset_format(w->offset, noff);
        http_request *req = http_conn_request(c);
        buf b;
        buf_init(&b);
        const char *cursor = param(req, "cursor", &b);
        snprintf(cur, sizeof cur, "%llu", (unsigned long long)cursor_next(cursor, cursor ? strlen(cursor) : 0, (int64_t)time(NULL) * 1000));
        buf_free(&b);
        begin(sh, c, 200);
        http_respond_header(c, "electric-handle", s->handle);
        http_respond_header(c, "electric-offset", noff);
        http_respond_header(c, "electric-up-to-date", "");
        http_respond_header(c, "electric-cursor", cur);
        http_respond_header(c, "Cache-Control", "public, max-age=5, stale-while-revalidate=5");
        static const char body[] = "[{\"headers\":{\"control\":\"up-to-date\"}}]";
        http_respond_body(c, body, sizeof body - 1);
        http_respond_end(c);
    } else {
        shape_answer(sh, s, c);
    }
}

static bool sse_pump(shape_waiter *w);

static void sse_finish(shape_waiter *w) {
    http_conn_unpark(w->c, w);
    loop_timer_cancel(http_conn_loop(w->c), &w->timer);
    if (!http_conn_closed(w->c)) http_stream_end(w->c);
    free_waiter(w);
}

static void waiter_fire(void *arg) {
    shape_waiter *w = arg;
    if (w->done) {
        free_waiter(w);
    } else if (w->sse) {
        if (w->ending || http_conn_closed(w->c) || !sse_pump(w)) sse_finish(w);
    } else {
        waiter_answer(w, false);
        free_waiter(w);
    }
}

static void waiter_timeout(void *arg) {
    shape_waiter *w = arg;
    if (!waiter_unlink(w)) { /* a wake is on its way: it answers (or ends the SSE) */
        w->ending = true;
        return;
    }
    if (w->sse) {
        sse_finish(w);
        return;
    }
    waiter_answer(w, true);
    free_waiter(w);
}

static void waiter_abort(void *arg) {
    shape_waiter *w = arg;
    loop_timer_cancel(http_conn_loop(w->c), &w->timer);
    if (waiter_unlink(w)) free_waiter(w);
    else w->done = true; /* the wake on its way frees it */
}

void shape_waiters_wake(shapes *sh, const char *path, uint64_t visible) {
    pthread_mutex_lock(&sh->wait_mu);
    for (shape_waiter *w = strmap_get(sh->waiting, path), *next; w; w = next) {
        next = w->next;
        if (w->offset >= visible) continue;
        waiter_detach(sh, w);
        loop_post(http_conn_loop(w->c), waiter_fire, w);
    }
    pthread_mutex_unlock(&sh->wait_mu);
}

/* --- SSE: one event per message, an up-to-date after each batch --- */

/* Send what the log has past w->offset, then wait again; false if it cannot go on. */
static bool sse_pump(shape_waiter *w) {
    shapes *sh = w->sh;
    buf data, ev;
    buf_init(&data);
    buf_init(&ev);
    bool ok = true;
    for (int rounds = 0; rounds < 64; rounds++) {
        uint64_t next = w->offset, end = w->offset;
        buf_reset(&data);
        if (streams_read(sh->st, w->s->log_path, w->offset, sh->cfg.read_chunk, &data, &next, &end) != 0) {
            ok = false;
            break;
        }
        if (next == w->offset && rounds > 0) break;
        buf_reset(&ev);
        for (size_t i = 0; i < data.len;) { /* stored form: "m,\n" each */
            uint8_t *nl = memchr(data.data + i, '\n', data.len - i);
            size_t n = (size_t)((nl ? nl - data.data : (ptrdiff_t)data.len) - (ptrdiff_t)i);
            size_t m = n && data.data[i + n - 1] == ',' ? n - 1 : n;
            buf_append_str(&ev, "data: ");
            buf_append(&ev, data.data + i, m);
            buf_append_str(&ev, "\n\n");
            i += n + 1;
        }
        w->offset = next;
        if (next == end) /* caught up: the client takes its next offset from this */
            buf_printf(&ev, "data: {\"headers\":{\"control\":\"up-to-date\",\"global_last_seen_lsn\":\"%llu\"}}\n\n",
                       (unsigned long long)next);
        struct iovec iov = {ev.data, ev.len};
        if (ev.len) http_stream_write(w->c, &iov, 1);
        if (next == end) break;
    }
    buf_free(&data);
    buf_free(&ev);
    if (ok) waiter_link(w);
    return ok;
}

static void sse_open(shapes *sh, shape *s, http_conn *c, uint64_t from) {
    char off[OFFSET_LEN + 1], cur[24];
    offset_format(from, off);
    http_request *req = http_conn_request(c);
    buf b;
    buf_init(&b);
    const char *cursor = param(req, "cursor", &b);
    snprintf(cur, sizeof cur, "%llu", (unsigned long long)cursor_next(cursor, cursor ? strlen(cursor) : 0, (int64_t)time(NULL) * 1000));
    buf_free(&b);
    streams_respond_begin(sh->st, c, 200);
    http_respond_header(c, "Content-Type", "text/event-stream");
    http_respond_header(c, "Cache-Control", "no-cache");
    http_respond_header(c, "X-Accel-Buffering", "no");
    http_respond_header(c, "electric-handle", s->handle);
    http_respond_header(c, "electric-offset", off);
    http_respond_header(c, "electric-cursor", cur);
    schema_header(c, s);
    http_stream_begin(c, 200);
    shape_waiter *w = waiter_new(sh, s, c, from, true);
    loop_timer_set(http_conn_loop(c), &w->timer, sh->cfg.sse_max_ms);
    if (!sse_pump(w)) sse_finish(w);
}

/* --- the routes --- */

static void noop_abort(void *arg) { (void)arg; }

/* GET (or, for a subset, POST) /v1/shape. */
static void get_shape(shapes *sh, http_conn *c, http_request *req) {
    char *key = NULL;
    json_t *def = request_def(sh, c, req, &key), *subset = NULL;
    if (!def) return;
    if (!subset_request(sh, c, req, &subset)) {
        json_decref(def);
        free(key);
        return;
    }
    if (req->head.method == HTTP_POST && !subset) subset = json_object(); /* an empty body: every row */
    buf b;
    buf_init(&b);
    const char *off = param(req, "offset", &b);
    /* -1 and now start over (a handle with them is ignored, as Electric does) */
    bool start = !off || strcmp(off, "-1") == 0 || strcmp(off, "now") == 0;
    uint64_t from = 0;
    bool at = !start && shape_offset(off, &from) == OFFSET_AT;
    const char *handle = param(req, "handle", &b);
    char hcopy[64] = "";
    if (handle) snprintf(hcopy, sizeof hcopy, "%s", handle);
    buf_free(&b);
    if (subset && !hcopy[0]) start = true;
    if (subset && !start) { /* the client's place in this shape's log: the subset goes on from there */
        json_object_set_new(subset, "handle", json_string(hcopy));
        if (at) json_object_set_new(subset, "from", json_integer((json_int_t)from));
    }
    pthread_mutex_lock(&sh->mu);
    shape *s = start ? shape_find_key(sh, key) : shape_find_handle(sh, hcopy);
    if (!start && (!s || s->gone || strcmp(s->def_key, key) != 0)) {
        shape *now = shape_find_key(sh, key);
        char nh[64] = "";
        if (now) snprintf(nh, sizeof nh, "%s", now->handle);
        pthread_mutex_unlock(&sh->mu);
        if (!hcopy[0]) {
            bad_request(sh, c, "handle", "a request with an offset needs the shape's handle");
        } else if (nh[0]) {
            shape_answer_refetch(sh, c, nh);
        } else { /* make the new shape first: the 409 names it */
            http_conn_park(c, noop_abort, NULL);
            pthread_mutex_lock(&sh->mu);
            shape_job_push(sh, def, key, subset, c, true);
            pthread_mutex_unlock(&sh->mu);
            return;
        }
        json_decref(def);
        json_decref(subset);
        free(key);
        return;
    }
    if (s && s->ready && !subset) {
        s->refs++;
        pthread_mutex_unlock(&sh->mu);
        shape_answer(sh, s, c);
        pthread_mutex_lock(&sh->mu);
        shape_unref(s);
        pthread_mutex_unlock(&sh->mu);
        json_decref(def);
        free(key);
        return;
    }
    /* answered by the Postgres thread, through its loop: a new shape once
     * its snapshot is in its log, a subset once Postgres answered it */
    http_conn_park(c, noop_abort, NULL);
    shape_job_push(sh, def, key, subset, c, false);
    pthread_mutex_unlock(&sh->mu);
}

/* DELETE /v1/shape?table=..&handle=..: the shape goes (its clients get
 * must-refetch); the next request for it makes a new one. */
static void delete_shape(shapes *sh, http_conn *c, http_request *req) {
    buf b;
    buf_init(&b);
    const char *handle = param(req, "handle", &b);
    pthread_mutex_lock(&sh->mu);
    shape *s = handle ? shape_find_handle(sh, handle) : NULL;
    buf t;
    buf_init(&t);
    const char *table = param(req, "table", &t);
    char want[600];
    if (s) snprintf(want, sizeof want, "%s.%s", s->schema, s->table);
    bool found = s && !s->gone && table && (strcmp(table, want) == 0 || (strcmp(s->schema, "public") == 0 && strcmp(table, s->table) == 0));
    buf_free(&t);
    if (found) shape_invalidate(sh, s, "deleted");
    pthread_mutex_unlock(&sh->mu);
    if (!handle) bad_request(sh, c, "handle", "DELETE needs the shape's handle");
    else if (!found) answer_json(sh, c, 404, json_pack("{s:s}", "message", "no shape of this table with this handle"));
    else {
        streams_respond_begin(sh->st, c, 202);
        http_respond_end(c);
    }
    buf_free(&b);
}

void shapes_handle(void *ctx, http_conn *c, http_request *req) {
    shapes *sh = ctx;
    const http_target *t = &req->target;
    bool health = t->path_len == sizeof SHAPE_HEALTH - 1 && memcmp(t->path, SHAPE_HEALTH, t->path_len) == 0;
    if (req->head.method == HTTP_OPTIONS) {
        streams_respond_begin(sh->st, c, 204);
        http_respond_header(c, "Access-Control-Allow-Methods", "GET, POST, HEAD, DELETE, OPTIONS");
        http_respond_header(c, "Access-Control-Allow-Headers", "Authorization, Content-Type, If-None-Match");
        http_respond_header(c, "Access-Control-Max-Age", "86400");
        http_respond_end(c);
        return;
    }
    bool post = req->head.method == HTTP_POST;
    if (req->head.method != HTTP_GET && req->head.method != HTTP_HEAD && req->head.method != HTTP_DELETE &&
        !(post && !health)) {
        answer_json(sh, c, 405, json_pack("{s:s}", "message", "GET or DELETE a shape, or POST a subset of one"));
        return;
    }
    if (health) {
        pthread_mutex_lock(&sh->mu);
        char status[32];
        snprintf(status, sizeof status, "%s", sh->on ? sh->status : "active");
        pthread_mutex_unlock(&sh->mu);
        answer_json(sh, c, strcmp(status, "active") == 0 ? 200 : 503, json_pack("{s:s}", "status", status));
        return;
    }
    if (t->path_len != sizeof SHAPE_PREFIX - 1 || memcmp(t->path, SHAPE_PREFIX, t->path_len) != 0) {
        answer_json(sh, c, 404, json_pack("{s:s}", "message", "no such route: shapes are at /v1/shape"));
        return;
    }
    if (!sh->on) {
        answer_json(sh, c, 503, json_pack("{s:s}", "message",
                                          "Postgres sync is off: start weft with --database-url postgres://... "
                                          "(or WEFT_DATABASE_URL)"));
        return;
    }
    if (req->head.method == HTTP_DELETE) delete_shape(sh, c, req);
    else get_shape(sh, c, req);
}
