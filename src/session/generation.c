/* generation.c — compaction of a session's log, so that its history does
 * not grow without bound (token chunks of ended runs, presence churn,
 * objects rewritten again and again).
 *
 * A session's log is a chain of generations: /v1/session/<id> is the
 * first, /v1/session/<id>@<n> the n-th. When the current one has grown past
 * --session-compact-bytes and to more than twice the state it holds, the
 * next generation is created whose offsets start where the current one
 * ends, holding a snapshot of the state as State Protocol events between
 * snapshot-start and snapshot-end control messages (the start carries the
 * remembered batch ids; a running run's chunk entity carries every chunk
 * so far). New events go to it. Readers that are caught up continue at the
 * same offset (they read the snapshot again: inserts of what they have);
 * offset -1 reads the snapshot and what followed; older offsets answer 410
 * and the client attaches again. Once the new generation is durable the
 * old one is retired: its live readers get what is visible and reconnect.
 * At open, the newest generation of each session is replayed and older
 * ones are retired.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../util/log.h"
#include "../util/mem.h"
#include "session_int.h"

char *generation_path(const char *id, unsigned gen) {
    char path[256];
    if (gen == 0) snprintf(path, sizeof path, "%s%s", SESSION_PREFIX, id);
    else snprintf(path, sizeof path, "%s%s@%u", SESSION_PREFIX, id, gen);
    return xstrndup(path, strlen(path));
}

bool generation_parse(const char *path, char *id, size_t idlen, unsigned *gen) {
    const char *p = path + strlen(SESSION_PREFIX);
    const char *at = strchr(p, '@');
    size_t n = at ? (size_t)(at - p) : strlen(p);
    if (n == 0 || n >= idlen) return false;
    memcpy(id, p, n);
    id[n] = 0;
    *gen = 0;
    if (at && sscanf(at + 1, "%u", gen) != 1) return false;
    return true;
}

static void frame_table(session *s, const char *type, buf *out) {
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(s->state, type), key, v) {
        json_t *value = v;
        if (strcmp(type, "chunk") == 0) { /* the whole output so far */
            value = json_deep_copy(v);
            json_t *all = json_object_get(s->output, key);
            if (all) json_object_set(value, "chunks", all);
        } else {
            json_incref(value);
        }
        json_t *ev = session_event(type, key, "insert", value, NULL);
        session_event_frame(ev, out);
        json_decref(ev);
    }
}

/* The state as events: what the next generation starts with. */
static void snapshot_events(session *s, buf *out) {
    json_t *batches = json_array();
    const char *id;
    json_t *v;
    json_object_foreach(s->batches, id, v) json_array_append_new(batches, json_string(id));
    json_t *start = json_pack("{s:{s:s, s:o}}", "headers", "control", "snapshot-start", "batches", batches);
    session_event_frame(start, out);
    json_decref(start);
    static const char *const types[] = {"presence", "object", "message", "run", "chunk"};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) frame_table(s, types[i], out);
    json_t *end = json_pack("{s:{s:s}}", "headers", "control", "snapshot-end");
    session_event_frame(end, out);
    json_decref(end);
}

void generation_retire_old(sessions *ss, session *s) {
    if (!s->old_log || !streams_settled(ss->st, s->log_path)) return;
    if (streams_retire(ss->st, s->old_log) != 0)
        log_write(LOG_ERROR, "session %s: cannot retire %s: %s", s->id, s->old_log, strerror(errno));
    free(s->old_log);
    s->old_log = NULL;
}

void generation_maybe_compact(sessions *ss, session *s) {
    generation_retire_old(ss, s);
    if (s->old_log || s->log_bytes < ss->limits.compact_bytes || s->log_bytes < 2 * s->snap_bytes)
        return;
    uint64_t tail;
    if (streams_hold_tail(ss->st, s->log_path, NULL, &tail) != 0) return;
    buf snap;
    buf_init(&snap);
    snapshot_events(s, &snap);
    char *next = generation_path(s->id, s->gen + 1);
    int rc = streams_create_json(ss->st, next, streams_ttl(ss->st, s->log_path), tail, snap.data,
                                 snap.len, NULL);
    if (rc == 1) {
        log_write(LOG_INFO, "session %s: log compacted from %llu to %zu bytes (generation %u)", s->id,
                  (unsigned long long)s->log_bytes, snap.len, s->gen + 1);
        s->old_log = s->log_path;
        s->log_path = next;
        s->gen++;
        s->log_bytes = s->snap_bytes = snap.len;
    } else {
        /* Not now (storage full, or a stale stream at that path): tried
         * again once the log has doubled. */
        log_write(LOG_ERROR, "session %s: log not compacted: %s", s->id, strerror(errno));
        s->snap_bytes = s->log_bytes;
        free(next);
    }
    buf_free(&snap);
}
