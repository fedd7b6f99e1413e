/* handler.c — the session routes (docs/sessions.md): each parses and checks
 * its request, builds the events it logs, and answers once they are
 * durable. Every error answers JSON {"error": "..."} naming what was wrong,
 * and nothing is logged for a refused request.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "../stream/protocol.h"
#include "../util/log.h"
#include "../util/mem.h"
#include "session_int.h"

/* A request being answered: what every route needs. */
typedef struct req_ctx {
    sessions *ss;
    http_conn *c;
    http_request *req;
    const char *id;     /* session id */
    const char *rest;   /* the path after the id ("" or "/messages" ...) */
    const char *client; /* the caller's identity, NULL if none */
} req_ctx;

static void begin(req_ctx *r, int status) { streams_respond_begin(r->ss->st, r->c, status); }

/* Answer JSON text; with an offset header if off != NULL. */
static void answer_text(req_ctx *r, int status, const char *text, size_t len, const char *off) {
    begin(r, status);
    http_respond_header(r->c, "Content-Type", "application/json");
    http_respond_header(r->c, "Cache-Control", "no-store");
    if (off) http_respond_header(r->c, "Stream-Next-Offset", off);
    http_respond_body(r->c, text, len);
    http_respond_body(r->c, "\n", 1);
    http_respond_end(r->c);
}

/* Answer body (stolen) as JSON; with an offset (header and member) if
 * offset != NULL. */
static void answer(req_ctx *r, int status, json_t *body, const uint64_t *offset) {
    char off[OFFSET_LEN + 1];
    if (offset) {
        offset_format(*offset, off);
        json_object_set_new(body, "offset", json_string(off));
    }
    char *s = json_dumps(body, JSON_COMPACT);
    answer_text(r, status, s, strlen(s), offset ? off : NULL);
    free(s);
    json_decref(body);
}

/* The attach answer: the snapshot text, which carries its own offset. */
static void answer_attach(req_ctx *r, session *s, uint64_t tail) {
    buf body;
    buf_init(&body);
    session_snapshot_text(s, tail, &body);
    char off[OFFSET_LEN + 1];
    offset_format(tail, off);
    answer_text(r, 200, (const char *)body.data, body.len, off);
    buf_free(&body);
}

static void fail(req_ctx *r, int status, const char *msg) {
    log_write(LOG_ERROR, "%.*s %s%s%s: %d %s", (int)r->req->head.method_len,
              r->req->head.method_str, SESSION_PREFIX, r->id ? r->id : "", r->rest ? r->rest : "",
              status, msg);
    answer(r, status, json_pack("{s:s}", "error", msg), NULL);
}

/* The store refused the write: nothing was logged. */
static void fail_storage(req_ctx *r) {
    char msg[160];
    if (errno == ENOENT) { /* its log expired or was deleted */
        session *gone = session_find(r->ss, r->id);
        if (gone) session_remove(r->ss, gone);
        fail(r, 404, "session not found");
        return;
    }
    if (errno == EMLINK) {
        fail(r, 507, "stream limit reached (--max-streams)");
        return;
    }
    snprintf(msg, sizeof msg, "storage error: %s; nothing was stored", strerror(errno));
    fail(r, errno == ENOSPC || errno == EDQUOT ? 507 : 500, msg);
}

/* --- identity: one function, so that tokens can replace the header --- */

/* The caller's client id: the Weft-Client header, or (for EventSource,
 * which cannot send headers) the client query parameter. */
/* The caller: a verified token's subject, else (no tokens configured) the
 * Weft-Client header or ?client=. */
static const char *identity(http_request *req, buf *scratch) {
    if (req->principal) return req->principal;
    size_t n;
    const char *h = http_head_get(&req->head, "weft-client", &n);
    buf_reset(scratch);
    if (h) buf_append(scratch, h, n);
    else if (!req->target.query || !http_query_get(req->target.query, req->target.query_len, "client", scratch))
        return NULL;
    if (scratch->len == 0 || scratch->len > 256 || memchr(scratch->data, 0, scratch->len)) return NULL;
    buf_append_byte(scratch, 0);
    return (const char *)scratch->data;
}

static bool need_client(req_ctx *r) {
    if (r->client) return true;
    fail(r, 400, "missing caller identity: send a Weft-Client header (or ?client= on a read)");
    return false;
}

/* --- bodies --- */

/* The body as one JSON object; NULL after answering 400/413. */
static json_t *body_object(req_ctx *r, bool optional) {
    http_request *req = r->req;
    if (req->body.len == 0 && optional) return json_object();
    if (req->body.len > r->ss->limits.max_event_bytes) {
        fail(r, 413, "body too large (--session-max-event)");
        return NULL;
    }
    json_error_t err;
    json_t *v = json_loadb((const char *)req->body.data, req->body.len, JSON_REJECT_DUPLICATES, &err);
    if (!v) {
        char msg[300];
        snprintf(msg, sizeof msg, "invalid JSON at byte %d: %s", err.position, err.text);
        fail(r, 400, msg);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        fail(r, 400, "the body must be a JSON object");
        return NULL;
    }
    return v;
}

/* A string member, or NULL. *bad is set if present but not a non-empty string. */
static const char *str_member(json_t *o, const char *name, bool *bad) {
    json_t *v = json_object_get(o, name);
    if (!v || json_is_null(v)) return NULL;
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 256) {
        *bad = true;
        return NULL;
    }
    return json_string_value(v);
}

/* Session and run ids: 1-128 of A-Z a-z 0-9 - _ . ~ (they are path segments). */
static bool valid_id(const char *s, size_t n);

/* A fresh id for a message or run the caller did not name. */
static void new_id(const char *prefix, char out[48]) {
    uint8_t r[12];
    if (getrandom(r, sizeof r, 0) != sizeof r) memset(r, 0, sizeof r);
    int n = snprintf(out, 48, "%s_", prefix);
    for (size_t i = 0; i < sizeof r; i++) n += snprintf(out + n, (size_t)(48 - n), "%02x", r[i]);
}

/* --- the session itself --- */

static void session_put(req_ctx *r) {
    sessions *ss = r->ss;
    int64_t ttl = -1;
    size_t n;
    const char *v = http_head_get(&r->req->head, "stream-ttl", &n);
    if (v && !ttl_parse(v, n, &ttl)) {
        fail(r, 400, "invalid Stream-TTL: expected a non-negative integer of seconds");
        return;
    }
    session *s = session_find(ss, r->id);
    if (s && !streams_exists(ss->st, s->log_path)) { /* its log expired: a new session */
        session_remove(ss, s);
        s = NULL;
    }
    if (!s && ss->count >= ss->limits.max_sessions) {
        fail(r, 507, "session limit reached (--max-sessions)");
        return;
    }
    int rc = 0;
    uint64_t tail;
    if (s) { /* exists (maybe compacted into a later generation): idempotent */
        rc = streams_hold_tail(ss->st, s->log_path, r->c, &tail);
    } else {
        char *path = generation_path(r->id, 0);
        rc = streams_create_json(ss->st, path, ttl, 0, NULL, 0, r->c);
        free(path);
    }
    if (rc < 0) {
        fail_storage(r);
        return;
    }
    bool created = !s;
    if (!s) s = session_add(ss, r->id);
    begin(r, created ? 201 : 200);
    http_respond_header(r->c, "Content-Type", "application/json");
    char body[600];
    snprintf(body, sizeof body, "{\"id\":\"%s\"}\n", s->id);
    http_respond_body(r->c, body, strlen(body));
    http_respond_end(r->c);
}

/* The session, or NULL after answering 404. A session whose log is gone
 * (expired, deleted) is forgotten here. */
static session *find(req_ctx *r) {
    session *s = session_find(r->ss, r->id);
    if (!s) fail(r, 404, "session not found");
    return s;
}

static void session_attach(req_ctx *r) {
    session *s = find(r);
    if (!s) return;
    uint64_t tail;
    if (streams_hold_tail(r->ss->st, s->log_path, r->c, &tail) != 0) fail_storage(r);
    else answer_attach(r, s, tail);
}

static void session_delete(req_ctx *r) {
    session *s = find(r);
    if (!s) return;
    if (streams_delete(r->ss->st, s->log_path, r->c) != 0 && errno != ENOENT) {
        fail_storage(r);
        return;
    }
    if (s->old_log) streams_delete(r->ss->st, s->old_log, NULL);
    session_remove(r->ss, s);
    begin(r, 204);
    http_respond_end(r->c);
}

/* --- messages --- */

static const char *check_message(json_t *m) {
    bool bad = false;
    const char *role = str_member(m, "role", &bad);
    if (!role || bad) return "message.role must be \"user\", \"assistant\" or \"system\"";
    if (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "system"))
        return "message.role must be \"user\", \"assistant\" or \"system\"";
    if (!json_is_array(json_object_get(m, "parts"))) return "message.parts must be an array";
    str_member(m, "id", &bad);
    if (bad) return "message.id must be a non-empty string of at most 256 bytes";
    json_t *md = json_object_get(m, "metadata");
    if (md && !json_is_object(md) && !json_is_null(md)) return "message.metadata must be an object";
    return NULL;
}

static void post_message(req_ctx *r, session *s) {
    if (!need_client(r)) return;
    json_t *m = body_object(r, false);
    if (!m) return;
    const char *bad = check_message(m);
    if (bad) {
        fail(r, 400, bad);
        json_decref(m);
        return;
    }
    char id[48];
    if (!json_is_string(json_object_get(m, "id"))) { /* absent or null: the server names it */
        new_id("msg", id);
        json_object_set_new(m, "id", json_string(id));
    }
    const char *mid = json_string_value(json_object_get(m, "id"));
    json_t *have = json_object_get(json_object_get(s->state, "message"), mid);
    if (have) { /* a retry: applied once */
        uint64_t tail;
        if (!json_equal(have, m)) fail(r, 409, "a different message with this id exists");
        else if (streams_hold_tail(r->ss->st, s->log_path, r->c, &tail) != 0) fail_storage(r);
        else answer(r, 200, json_pack("{s:s}", "id", mid), &tail);
        json_decref(m);
        return;
    }
    json_t *events = json_pack("[o]", session_event("message", mid, "insert", json_incref(m), r->client));
    uint64_t off;
    if (session_commit(r->ss, s, events, r->c, &off) != 0) fail_storage(r);
    else answer(r, 201, json_pack("{s:s}", "id", mid), &off);
    json_decref(events);
    json_decref(m);
}

/* --- runs --- */

static void post_run(req_ctx *r, session *s) {
    if (!need_client(r)) return;
    json_t *b = body_object(r, true);
    if (!b) return;
    bool bad = false;
    const char *id = str_member(b, "id", &bad);
    const char *answers = str_member(b, "answers", &bad);
    const char *message_id = str_member(b, "message_id", &bad);
    json_t *md = json_object_get(b, "metadata");
    if (bad || (md && !json_is_object(md))) {
        fail(r, 400, "id, answers and message_id must be non-empty strings; metadata an object");
        json_decref(b);
        return;
    }
    char rid[48], mid[48];
    if (!id) new_id("run", rid);
    if (!message_id) new_id("msg", mid);
    id = id ? id : rid;
    message_id = message_id ? message_id : mid;
    if (!valid_id(id, strlen(id))) {
        fail(r, 400, "invalid run id: 1-128 of A-Z a-z 0-9 - _ . ~");
        json_decref(b);
        return;
    }
    if (json_object_get(json_object_get(s->state, "run"), id)) {
        fail(r, 409, "a run with this id exists");
        json_decref(b);
        return;
    }
    bool taken = json_object_get(json_object_get(s->state, "message"), message_id) != NULL;
    const char *rk;
    json_t *rv;
    json_object_foreach(json_object_get(s->state, "run"), rk, rv) {
        const char *other = json_string_value(json_object_get(rv, "message_id"));
        if (other && strcmp(other, message_id) == 0) taken = true;
    }
    if (taken) {
        fail(r, 409, "message_id names a message the session has, or another run's");
        json_decref(b);
        return;
    }
    if (answers && !json_object_get(json_object_get(s->state, "message"), answers)) {
        fail(r, 404, "the message the run answers is not in the session");
        json_decref(b);
        return;
    }
    json_t *run = json_pack("{s:s, s:s, s:s, s:s?, s:s, s:o}", "id", id, "owner", r->client,
                            "status", "running", "answers", answers, "message_id", message_id,
                            "started_at", session_timestamp());
    if (md) json_object_set(run, "metadata", md);
    json_t *events = json_pack("[o]", session_event("run", id, "insert", run, r->client));
    uint64_t off;
    if (session_commit(r->ss, s, events, r->c, &off) != 0) fail_storage(r);
    else answer(r, 201, json_pack("{s:s, s:s}", "id", id, "message_id", message_id), &off);
    json_decref(events);
    json_decref(b);
}

/* The run named in the path; NULL after answering. Ended runs are 409
 * with their status, so an agent learns a cancel from its next write. */
static json_t *find_run(req_ctx *r, session *s, const char *rid, bool owner_only, live_run **lr) {
    json_t *run = json_object_get(json_object_get(s->state, "run"), rid);
    if (!run) {
        fail(r, 404, "run not found");
        return NULL;
    }
    *lr = session_live_run(s, rid);
    if (!*lr) {
        char msg[128];
        snprintf(msg, sizeof msg, "run already ended (%s)",
                 json_string_value(json_object_get(run, "status")));
        fail(r, 409, msg);
        return NULL;
    }
    if (owner_only && strcmp((*lr)->owner, r->client) != 0) {
        fail(r, 403, "only the run's owner may stream into or end it");
        return NULL;
    }
    return run;
}

static bool valid_chunks(json_t *chunks) {
    size_t i;
    json_t *c;
    if (json_array_size(chunks) == 0) return false;
    json_array_foreach(chunks, i, c) if (!json_is_string(json_object_get(c, "type"))) return false;
    return true;
}

static void post_chunks(req_ctx *r, session *s, const char *rid) {
    live_run *lr;
    if (!need_client(r) || !find_run(r, s, rid, true, &lr)) return;
    json_t *b = body_object(r, false);
    if (!b) return;
    json_t *chunks = json_object_get(b, "chunks");
    if (!chunks && json_is_string(json_object_get(b, "type"))) chunks = json_pack("[O]", b);
    else if (json_is_array(chunks)) json_incref(chunks);
    else chunks = NULL;
    if (!chunks || !valid_chunks(chunks)) {
        fail(r, 400, "expected a UI message chunk ({\"type\": ...}) or {\"chunks\": [...]} of them");
        json_decref(chunks);
        json_decref(b);
        return;
    }
    json_t *last = json_object_get(json_object_get(s->state, "chunk"), rid);
    json_int_t seq = last ? json_integer_value(json_object_get(last, "seq")) + 1 : 0;
    json_t *want = json_is_array(json_object_get(b, "chunks")) ? json_object_get(b, "seq") : NULL;
    if (want && (!json_is_integer(want) || json_integer_value(want) < 0)) {
        fail(r, 400, "seq must be an integer: the batch's number, from 0");
        json_decref(chunks);
        json_decref(b);
        return;
    }
    if (want && json_integer_value(want) != seq) {
        uint64_t off;
        if (last && json_integer_value(want) == seq - 1 && json_equal(json_object_get(last, "chunks"), chunks)) {
            /* a retry of the batch applied last: applied once */
            if (streams_hold_tail(r->ss->st, s->log_path, r->c, &off) != 0) fail_storage(r);
            else answer(r, 200, json_pack("{s:I, s:b}", "seq", seq - 1, "duplicate", 1), &off);
        } else {
            char msg[160];
            snprintf(msg, sizeof msg, "chunk batch seq %lld is out of order: the run expects %lld%s",
                     (long long)json_integer_value(want), (long long)seq,
                     json_integer_value(want) == seq - 1 ? " (and this is not a retry of its last batch)" : "");
            fail(r, 409, msg);
        }
        json_decref(chunks);
        json_decref(b);
        return;
    }
    json_t *value = json_pack("{s:s, s:I, s:o}", "run", rid, "seq", seq, "chunks", chunks);
    json_t *events = json_pack("[o]", session_event("chunk", rid, last ? "update" : "insert", value, r->client));
    uint64_t off;
    if (session_commit(r->ss, s, events, r->c, &off) != 0) {
        fail_storage(r);
    } else {
        lr->lease_until = session_now_ms() + r->ss->limits.run_lease_ms;
        answer(r, 200, json_pack("{s:I}", "seq", seq), &off);
    }
    json_decref(events);
    json_decref(b);
}

static void post_heartbeat(req_ctx *r, session *s, const char *rid) {
    live_run *lr;
    if (!need_client(r) || !find_run(r, s, rid, true, &lr)) return;
    lr->lease_until = session_now_ms() + r->ss->limits.run_lease_ms;
    begin(r, 204);
    http_respond_end(r->c);
}

static void post_end(req_ctx *r, session *s, const char *rid, bool cancel) {
    live_run *lr;
    if (!need_client(r) || !find_run(r, s, rid, !cancel, &lr)) return;
    json_t *b = body_object(r, true);
    if (!b) return;
    bool bad = false;
    const char *reason = cancel ? "cancelled" : str_member(b, "reason", &bad);
    json_t *jerr = json_object_get(b, "error");
    const char *error = json_string_value(jerr);
    if (jerr && !json_is_null(jerr) && (!error || json_string_length(jerr) > 4096)) {
        fail(r, 400, "error must be a string of at most 4096 bytes");
        json_decref(b);
        return;
    }
    if (!reason || (strcmp(reason, "complete") && strcmp(reason, "cancelled") && strcmp(reason, "error"))) {
        fail(r, 400, "reason must be \"complete\", \"cancelled\" or \"error\"");
        json_decref(b);
        return;
    }
    uint64_t off;
    if (run_end(r->ss, s, rid, reason, error, cancel ? r->client : NULL, r->client, r->c, &off) != 0)
        fail_storage(r);
    else
        answer(r, 200, json_pack("{s:s, s:s}", "id", rid, "status", reason), &off);
    json_decref(b);
}

/* --- shared objects --- */

static void post_objects(req_ctx *r, session *s) {
    if (!need_client(r)) return;
    json_t *b = body_object(r, false);
    if (!b) return;
    bool bad = false;
    const char *batch = str_member(b, "batch", &bad);
    if (bad) {
        fail(r, 400, "batch must be a non-empty string of at most 256 bytes");
        json_decref(b);
        return;
    }
    uint64_t off;
    if (batch && json_object_get(s->batches, batch)) { /* a retry: applied once */
        if (streams_hold_tail(r->ss->st, s->log_path, r->c, &off) != 0) fail_storage(r);
        else answer(r, 200, json_pack("{s:s, s:b}", "batch", batch, "duplicate", 1), &off);
        json_decref(b);
        return;
    }
    json_t *objects = json_object_get(s->state, "object"), *result, *applied;
    char err[400];
    int status;
    const char *why = objects_batch(objects, json_object_get(b, "ops"), r->ss->limits.max_object_bytes,
                                    &result, &applied, err, sizeof err, &status);
    if (why) {
        fail(r, status, why);
        json_decref(b);
        return;
    }
    json_t *events = json_array();
    const char *name;
    json_t *v;
    json_object_foreach(result, name, v) {
        bool had = json_object_get(objects, name) != NULL;
        if (json_is_null(v) && !had) continue;
        json_t *ev = session_event("object", name, json_is_null(v) ? "delete" : had ? "update" : "insert",
                                   json_incref(v), r->client);
        json_t *h = json_object_get(ev, "headers");
        if (batch) json_object_set_new(h, "txid", json_string(batch));
        json_object_set(h, "ops", json_object_get(applied, name));
        json_array_append_new(events, ev);
    }
    int rc = json_array_size(events) ? session_commit(r->ss, s, events, r->c, &off)
                                     : streams_hold_tail(r->ss->st, s->log_path, r->c, &off);
    if (rc == 0 && batch && !json_array_size(events)) /* changed nothing: nothing logged */
        session_remember_batch(s, batch);
    if (rc != 0) fail_storage(r);
    else answer(r, 200, json_pack("{s:s?, s:O}", "batch", batch, "applied", applied), &off);
    json_decref(events);
    json_decref(result);
    json_decref(applied);
    json_decref(b);
}

/* A snapshot read of the objects (all, or one by name). */
static void get_objects(req_ctx *r, session *s, const char *name) {
    json_t *objects = json_object_get(s->state, "object");
    json_t *v = name ? json_object_get(objects, name) : objects;
    uint64_t off;
    if (!v) fail(r, 404, "no such object");
    else if (streams_hold_tail(r->ss->st, s->log_path, r->c, &off) != 0) fail_storage(r);
    else answer(r, 200, json_pack("{s:O}", name ? "value" : "objects", v), &off);
}

/* --- presence --- */

static void post_presence(req_ctx *r, session *s) {
    if (!need_client(r)) return;
    json_t *b = body_object(r, false);
    if (!b) return;
    const char *action = json_string_value(json_object_get(b, "action"));
    json_t *data = json_object_get(b, "data");
    uint64_t off;
    bool changed = true;
    int rc;
    if (action && strcmp(action, "leave") == 0) {
        changed = json_object_get(json_object_get(s->state, "presence"), r->client) != NULL;
        rc = presence_leave(r->ss, s, r->client, r->c, &off);
    } else if (action && (strcmp(action, "enter") == 0 || strcmp(action, "update") == 0)) {
        rc = presence_set(r->ss, s, r->client, data ? data : json_null(), r->c, &off, &changed);
    } else {
        fail(r, 400, "action must be \"enter\", \"update\" or \"leave\"");
        json_decref(b);
        return;
    }
    if (rc != 0) fail_storage(r);
    else answer(r, 200, json_pack("{s:s, s:s, s:b}", "client", r->client, "action", action, "changed", changed), &off);
    json_decref(b);
}

/* --- routing --- */

static bool valid_id(const char *s, size_t n) {
    if (n == 0 || n > 128) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.' || ch == '~'))
            return false;
    }
    return true;
}

static void options(req_ctx *r) {
    begin(r, 204);
    http_respond_header(r->c, "Access-Control-Allow-Methods", "GET, PUT, POST, DELETE, OPTIONS");
    http_respond_header(r->c, "Access-Control-Allow-Headers", "Authorization, Content-Type, Weft-Client, Stream-TTL");
    http_respond_header(r->c, "Access-Control-Max-Age", "86400");
    http_respond_end(r->c);
}

/* Routes under a session's runs: /runs/<run>/<action>. */
static void route_run(req_ctx *r, session *s, const char *rest) {
    const char *slash = strchr(rest, '/');
    char rid[160];
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    if (!slash || !valid_id(rest, n)) {
        fail(r, 404, "not found: expected /runs/<run id>/chunks, heartbeat, end or cancel");
        return;
    }
    snprintf(rid, sizeof rid, "%.*s", (int)n, rest);
    const char *action = slash + 1;
    if (strcmp(action, "chunks") == 0) post_chunks(r, s, rid);
    else if (strcmp(action, "heartbeat") == 0) post_heartbeat(r, s, rid);
    else if (strcmp(action, "end") == 0) post_end(r, s, rid, false);
    else if (strcmp(action, "cancel") == 0) post_end(r, s, rid, true);
    else fail(r, 404, "not found: expected /runs/<run id>/chunks, heartbeat, end or cancel");
}

static void route_post(req_ctx *r, session *s) {
    if (strcmp(r->rest, "/messages") == 0) post_message(r, s);
    else if (strcmp(r->rest, "/runs") == 0) post_run(r, s);
    else if (strcmp(r->rest, "/objects") == 0) post_objects(r, s);
    else if (strcmp(r->rest, "/presence") == 0) post_presence(r, s);
    else if (strncmp(r->rest, "/runs/", 6) == 0) route_run(r, s, r->rest + 6);
    else fail(r, 404, "not found: no such session route");
}

/* PUT, GET (attach) and DELETE of the session itself. */
static void route_session(req_ctx *r, http_method m) {
    if (m == HTTP_PUT) session_put(r);
    else if (m == HTTP_GET || m == HTTP_HEAD) session_attach(r);
    else if (m == HTTP_DELETE) session_delete(r);
    else fail(r, 405, "method not allowed: PUT, GET or DELETE a session");
}

static void route(req_ctx *r) {
    http_method m = r->req->head.method;
    session *s;
    if (m == HTTP_OPTIONS) {
        options(r);
    } else if (r->rest[0] == 0) {
        route_session(r, m);
    } else if (strcmp(r->rest, "/log") == 0) {
        if (m != HTTP_GET && m != HTTP_HEAD) fail(r, 405, "method not allowed: GET the log");
        else if ((s = find(r))) presence_serve_read(r->ss, s, r->client, r->c, r->req,
                                                        generation_for_read(s, r->req));
    } else if (strncmp(r->rest, "/objects", 8) == 0 && (m == HTTP_GET || m == HTTP_HEAD)) {
        const char *name = r->rest[8] == '/' && r->rest[9] ? r->rest + 9 : NULL;
        if (r->rest[8] && !name) fail(r, 404, "not found: no such session route");
        else if ((s = find(r))) get_objects(r, s, name);
    } else if (strcmp(r->rest, "/messages") && strcmp(r->rest, "/runs") && strcmp(r->rest, "/objects") &&
               strcmp(r->rest, "/presence") && strncmp(r->rest, "/runs/", 6)) {
        fail(r, 404, "not found: no such session route");
    } else if (m != HTTP_POST) {
        fail(r, 405, "method not allowed: POST");
    } else if ((s = find(r))) {
        route_post(r, s);
    }
}

void sessions_handle(void *ctx, http_conn *c, http_request *req) {
    sessions *ss = ctx;
    streams_defer_wakes(ss->st, c);
    buf path, who;
    buf_init(&path);
    buf_init(&who);
    req_ctx r = {.ss = ss, .c = c, .req = req};
    if (!http_percent_decode(req->target.path, req->target.path_len, &path)) {
        fail(&r, 400, "invalid percent-encoding in path");
    } else {
        buf_append_byte(&path, 0);
        const char *p = (const char *)path.data + strlen(SESSION_PREFIX);
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        char id[160];
        snprintf(id, sizeof id, "%.*s", (int)(n < 159 ? n : 159), p);
        r.id = id;
        r.rest = p + n;
        r.client = identity(req, &who);
        if (!valid_id(p, n)) {
            r.id = NULL;
            fail(&r, 400, "invalid session id: 1-128 of A-Z a-z 0-9 - _ . ~");
        } else {
            pthread_mutex_lock(&ss->lock);
            presence_drain(ss);
            route(&r);
            pthread_mutex_unlock(&ss->lock);
        }
    }
    buf_free(&path);
    buf_free(&who);
}
