/* apply.c — a session's state as its log materialises it.
 *
 * One function applies an event to the state, live (after the event is
 * logged) and at recovery (replaying the log), so the two cannot differ.
 * The state follows the State Protocol exactly: insert and update set
 * state[type][key] to the value, delete removes it. Beside it the layer
 * keeps what the protocol does not carry: every chunk of the runs still
 * going (a late joiner gets their output so far at attach) and, for those
 * runs, their owner and lease.
 */
#include <string.h>
#include <time.h>

#include "../stream/protocol.h"
#include "../util/mem.h"
#include "session_int.h"

json_t *session_timestamp(void) {
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(ts);
}

json_t *session_event(const char *type, const char *key, const char *op, json_t *value,
                      const char *client) {
    json_t *headers = json_pack("{s:s, s:o}", "operation", op, "timestamp", session_timestamp());
    if (client) json_object_set_new(headers, "client", json_string(client));
    return json_pack("{s:s, s:s, s:o, s:o}", "type", type, "key", key, "value",
                     value ? value : json_null(), "headers", headers);
}

void session_event_frame(json_t *ev, buf *out) {
    char *s = json_dumps(ev, JSON_COMPACT | JSON_ENSURE_ASCII);
    buf_append_str(out, s);
    buf_append(out, ",\n", 2);
    free(s);
}

live_run *session_live_run(session *s, const char *id) {
    for (size_t i = 0; i < s->nruns; i++)
        if (strcmp(s->runs[i].id, id) == 0) return &s->runs[i];
    return NULL;
}

/* The run entity changed: track it while it is running. */
static void track_run(sessions *ss, session *s, const char *id, json_t *value) {
    const char *status = json_string_value(json_object_get(value, "status"));
    live_run *r = session_live_run(s, id);
    bool running = status && strcmp(status, "running") == 0;
    if (running && !r) {
        if (s->nruns == s->runs_cap) {
            s->runs_cap = s->runs_cap ? s->runs_cap * 2 : 4;
            s->runs = xrealloc(s->runs, s->runs_cap * sizeof *s->runs);
        }
        const char *owner = json_string_value(json_object_get(value, "owner"));
        s->runs[s->nruns++] = (live_run){
            .id = xstrndup(id, strlen(id)),
            .owner = xstrndup(owner ? owner : "", owner ? strlen(owner) : 0),
            .lease_until = session_now_ms() + ss->limits.run_lease_ms,
        };
    } else if (!running && r) {
        free(r->id);
        free(r->owner);
        *r = s->runs[--s->nruns];
        json_object_del(s->output, id);
    }
}

/* An object batch's id, kept (the newest SESSION_BATCHES_KEPT) so that a
 * retry is answered, not applied again. */
void session_remember_batch(session *s, const char *id) {
    if (json_object_get(s->batches, id)) return;
    if (json_object_size(s->batches) >= SESSION_BATCHES_KEPT) {
        void *oldest = json_object_iter(s->batches);
        json_object_del(s->batches, json_object_iter_key(oldest));
    }
    json_object_set_new(s->batches, id, json_true());
}

void session_reset(session *s) {
    const char *type;
    json_t *table;
    json_object_foreach(s->state, type, table) json_object_clear(table);
    json_object_clear(s->output);
    json_object_clear(s->batches);
    free(s->messages_text);
    s->messages_text = NULL;
    for (size_t i = 0; i < s->nruns; i++) {
        free(s->runs[i].id);
        free(s->runs[i].owner);
    }
    s->nruns = 0;
}

/* A control message: a snapshot starts (a new generation of the log, see
 * generation.c) with the batch ids remembered so far. */
static bool apply_control(session *s, const char *control, json_t *headers) {
    if (strcmp(control, "snapshot-start") == 0) {
        session_reset(s);
        size_t i;
        json_t *id;
        json_array_foreach(json_object_get(headers, "batches"), i, id)
            if (json_is_string(id)) session_remember_batch(s, json_string_value(id));
        const char *run;
        json_t *chunks;
        json_object_foreach(json_object_get(headers, "output"), run, chunks)
            if (json_is_array(chunks)) json_object_set(s->output, run, chunks);
        return true;
    }
    return strcmp(control, "snapshot-end") == 0;
}

bool session_apply(sessions *ss, session *s, json_t *ev) {
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *key = json_string_value(json_object_get(ev, "key"));
    json_t *value = json_object_get(ev, "value");
    json_t *headers = json_object_get(ev, "headers");
    const char *op = json_string_value(json_object_get(headers, "operation"));
    const char *control = json_string_value(json_object_get(headers, "control"));
    if (!type && control) return apply_control(s, control, headers);
    if (!type || !key || !op || !value) return false;
    json_t *table = json_object_get(s->state, type);
    if (!table) return false;
    bool del = strcmp(op, "delete") == 0;
    if (!del && strcmp(op, "insert") != 0 && strcmp(op, "update") != 0) return false;
    if (del) json_object_del(table, key);
    else json_object_set(table, key, value);
    if (strcmp(type, "message") == 0) {
        free(s->messages_text);
        s->messages_text = NULL;
    }
    if (strcmp(type, "run") == 0 && !del) {
        track_run(ss, s, key, value);
    } else if (strcmp(type, "object") == 0 && json_is_string(json_object_get(headers, "txid"))) {
        session_remember_batch(s, json_string_value(json_object_get(headers, "txid")));
    } else if (strcmp(type, "chunk") == 0 && !del) {
        json_t *out = json_object_get(s->output, key);
        if (!out) json_object_set_new(s->output, key, out = json_array());
        json_array_extend(out, json_object_get(value, "chunks"));
    }
    return true;
}

int session_commit(sessions *ss, session *s, json_t *events, http_conn *c, uint64_t *offset) {
    buf out;
    buf_init(&out);
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev) session_event_frame(ev, &out);
    uint64_t end = 0;
    int rc = streams_append(ss->st, s->log_path, out.data, out.len, c, &end);
    if (rc == 0) {
        if (offset) *offset = end;
        json_array_foreach(events, i, ev) {
            session_apply(ss, s, ev);
            wake_note(s, ev, end);
        }
        wake_publish(ss, s, end - out.len, true);
        s->log_bytes += out.len;
        generation_maybe_compact(ss, s);
    }
    buf_free(&out);
    return rc;
}

static void append_json(buf *out, json_t *v) {
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    buf_append_str(out, text);
    free(text);
}

/* The message table is most of a long session's attach (every ended run is
 * a message) and changes least often: it is serialised once per change,
 * not once per attach. */
void session_snapshot_text(session *s, uint64_t offset, buf *out) {
    char off[OFFSET_LEN + 1];
    offset_format(offset, off);
    json_t *head = json_pack("{s:s, s:s}", "id", s->id, "offset", off);
    char *text = json_dumps(head, JSON_COMPACT);
    buf_append(out, text, strlen(text) - 1); /* without its closing brace */
    free(text);
    json_decref(head);
    if (!s->messages_text) s->messages_text = json_dumps(json_object_get(s->state, "message"), JSON_COMPACT);
    buf_append_str(out, ",\"state\":{\"message\":");
    buf_append_str(out, s->messages_text);
    const char *type;
    json_t *table;
    json_object_foreach(s->state, type, table) {
        if (strcmp(type, "message") == 0) continue;
        buf_append_str(out, ",\"");
        buf_append_str(out, type); /* one of the five table names: plain ASCII */
        buf_append_str(out, "\":");
        append_json(out, table);
    }
    buf_append_str(out, "},\"output\":");
    append_json(out, s->output);
    buf_append_str(out, "}");
}
