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
 * remembered batch ids and, for each running run, its chunks before the
 * latest batch, which its chunk entity holds). New events go to it. Readers that are caught up continue at the
 * same offset (they read the snapshot again: inserts of what they have);
 * offset -1 reads the snapshot and what followed; older offsets answer 410
 * and the client attaches again. The old generation is retired at once:
 * its live readers get all it holds as it becomes durable and reconnect;
 * reads from offsets in it go to it for GENERATION_MIN_MS more (a reader
 * between two polls), then it is deleted. At open, the newest generation of
 * each session is replayed and older ones are deleted.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../stream/protocol.h"
#include "../util/log.h"
#include "../util/mem.h"
#include "session_int.h"

#define GENERATION_MIN_MS 2000

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
        json_t *ev = session_event(type, key, "insert", json_incref(v), NULL);
        session_event_frame(ev, out);
        json_decref(ev);
    }
}

/* The chunks of each running run before its latest batch: with the chunk
 * entity (that batch) they rebuild its output. */
static json_t *output_before_latest(session *s) {
    json_t *prefixes = json_object();
    const char *run;
    json_t *all;
    json_object_foreach(s->output, run, all) {
        json_t *latest = json_object_get(json_object_get(json_object_get(s->state, "chunk"), run), "chunks");
        size_t keep = json_array_size(all) - json_array_size(latest);
        json_t *prefix = json_array();
        for (size_t i = 0; i < keep; i++) json_array_append(prefix, json_array_get(all, i));
        json_object_set_new(prefixes, run, prefix);
    }
    return prefixes;
}

/* The state as events: what the next generation starts with. */
static void snapshot_events(session *s, buf *out) {
    json_t *batches = json_array();
    const char *id;
    json_t *v;
    json_object_foreach(s->batches, id, v) json_array_append_new(batches, json_string(id));
    json_t *start = json_pack("{s:{s:s, s:o, s:o}}", "headers", "control", "snapshot-start", "batches",
                              batches, "output", output_before_latest(s));
    session_event_frame(start, out);
    json_decref(start);
    static const char *const types[] = {"presence", "object", "message", "run", "chunk"};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) frame_table(s, types[i], out);
    json_t *end = json_pack("{s:{s:s}}", "headers", "control", "snapshot-end");
    session_event_frame(end, out);
    json_decref(end);
}

void generation_drop_old(sessions *ss, session *s) {
    if (!s->old_log || session_now_ms() - s->compacted_at < GENERATION_MIN_MS ||
        !streams_settled(ss->st, s->old_log))
        return;
    if (streams_delete(ss->st, s->old_log, NULL) != 0 && errno != ENOENT) {
        log_write(LOG_ERROR, "session %s: cannot delete %s: %s", s->id, s->old_log, strerror(errno));
        return;
    }
    free(s->old_log);
    s->old_log = NULL;
}

const char *generation_for_read(session *s, http_request *req) {
    buf off;
    buf_init(&off);
    uint64_t pos;
    bool behind = s->old_log && req->target.query &&
                  http_query_get(req->target.query, req->target.query_len, "offset", &off) &&
                  offset_parse((const char *)off.data, off.len, &pos) == OFFSET_AT && pos < s->base;
    buf_free(&off);
    return behind ? s->old_log : s->log_path;
}

void generation_maybe_compact(sessions *ss, session *s) {
    generation_drop_old(ss, s);
    /* At most one generation per GENERATION_MIN_MS: a reader that followed
     * into the last one has that long to reconnect before its offset is
     * compacted away too. */
    int64_t now = session_now_ms();
    if (s->old_log || s->log_bytes < ss->limits.compact_bytes || s->log_bytes < 2 * s->snap_bytes ||
        now - s->compacted_at < GENERATION_MIN_MS)
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
        log_write(LOG_INFO, "session %s: log compacted from %llu to %zu bytes (generation %u, from offset %llu)",
                  s->id, (unsigned long long)s->log_bytes, snap.len, s->gen + 1, (unsigned long long)tail);
        streams_retire(ss->st, s->log_path);
        s->base = tail;
        s->old_log = s->log_path;
        s->log_path = next;
        s->gen++;
        s->log_bytes = s->snap_bytes = snap.len;
        s->compacted_at = now;
    } else {
        /* Not now (storage full, or a stale stream at that path): tried
         * again once the log has doubled. */
        log_write(LOG_ERROR, "session %s: log not compacted: %s", s->id, strerror(errno));
        s->snap_bytes = s->log_bytes;
        free(next);
    }
    buf_free(&snap);
}
