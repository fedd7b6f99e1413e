/* run.c — how a run ends: by its owner (complete, cancelled or error), by
 * any participant's cancel, or by the server when the agent's lease runs
 * out. Whatever the way, the same three events are logged together: the
 * message its chunks build (the run's compacted output), the removal of its
 * chunk entity, and the run's final value. */
#include <string.h>

#include "session_int.h"

static json_t *ended_value(json_t *old, const char *reason, const char *error,
                           const char *cancelled_by) {
    json_t *v = json_deep_copy(old);
    json_object_set_new(v, "status", json_string(reason));
    json_object_set_new(v, "ended_at", session_timestamp());
    if (error) json_object_set_new(v, "error", json_string(error));
    if (cancelled_by) json_object_set_new(v, "cancelled_by", json_string(cancelled_by));
    return v;
}

int run_end(sessions *ss, session *s, const char *id, const char *reason, const char *error,
            const char *cancelled_by, const char *client, http_conn *c, uint64_t *offset) {
    json_t *run = json_object_get(json_object_get(s->state, "run"), id);
    const char *message_id = json_string_value(json_object_get(run, "message_id"));
    json_t *events = json_array();
    json_t *chunks = json_object_get(s->output, id);
    json_t *msg = chunks ? compact_chunks(chunks, message_id ? message_id : id) : NULL;
    if (msg)
        json_array_append_new(events, session_event("message", json_string_value(json_object_get(msg, "id")),
                                                    "insert", msg, client));
    if (json_object_get(json_object_get(s->state, "chunk"), id))
        json_array_append_new(events, session_event("chunk", id, "delete", json_null(), client));
    json_array_append_new(events, session_event("run", id, "update",
                                                 ended_value(run, reason, error, cancelled_by),
                                                 client));
    int rc = session_commit(ss, s, events, c, offset);
    json_decref(events);
    return rc;
}
