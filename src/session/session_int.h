/* session_int.h — the session layer's internals, shared by its own files
 * only (the server includes session.h).
 *
 * Files, each calling only the ones below it:
 *   handler.c   the routes: parse, check, build events, answer
 *   session.c   the registry, open and close, recovery, the lease thread
 *   presence.c  members, their connections and grace period
 *   objects.c   batches of ops on maps, counters and lists
 *   run.c       a run's end (by its owner, a cancel, or a lost lease)
 *   generation.c  the log compacted into a new generation
 *   apply.c     events logged and applied to a session's state (live and
 *               replay, one function); the attach snapshot
 *   compact.c   a run's UI message chunks folded into one UI message
 *
 * State is JSON (jansson), kept exactly as the log's State Protocol
 * materialises it: state[type][key] = value, in insertion order.
 */
#ifndef WEFT_SESSION_INT_H
#define WEFT_SESSION_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>

#include "../util/buf.h"
#include "session.h"

typedef struct session session;

/* A run still going: who may stream into it, and until when it is alive
 * without a chunk or heartbeat. */
typedef struct live_run {
    char *id;
    char *owner;
    int64_t lease_until; /* ms since the epoch */
} live_run;

/* A person's live connections to a session's log (presence.c). */
typedef struct presence_conn {
    char *client;
    unsigned live;      /* readers waiting on the log */
    int64_t idle_since; /* ms since the epoch when live last became 0 */
} presence_conn;

typedef struct conn_note conn_note;

struct session {
    session *next;  /* registry list */
    session *hnext; /* hash chain */
    uint64_t hash;  /* of id */
    char *id;
    char *log_path; /* the log's current generation (generation.c) */
    char *old_log;  /* the one it replaced, kept a while for readers behind */
    uint64_t base;  /* where the current generation starts (while old_log) */
    unsigned gen;
    uint64_t log_bytes;  /* in the current generation */
    uint64_t snap_bytes; /* the snapshot it started with */
    int64_t compacted_at; /* ms since the epoch */
    json_t *state;   /* {"message", "run", "chunk", "object", "presence": {key: value}} */
    char *messages_text; /* state.message serialised, NULL after a change (attach) */
    json_t *output;  /* run id -> every chunk so far, for runs still going */
    json_t *batches; /* object batch ids applied (newest last), for retries */
    live_run *runs;
    size_t nruns, runs_cap;
    presence_conn *conns;
    size_t nconns, conns_cap;
    /* What wakes its agents (wake.c): the offset after the last message a
     * person posted, and after the last change of each object. */
    uint64_t wake_msg;
    json_t *wake_obj; /* name -> offset */
};

struct sessions {
    pthread_mutex_t lock;
    streams *st;
    subs *subs;
    sessions_limits limits;
    session *list;
    session **table; /* by id: a chained hash, grown at load 1 */
    size_t count, table_size;
    pthread_t leaser;
    bool leaser_running, leaser_quit;
    pthread_cond_t leaser_cv;
    /* Innermost lock: readers' ends reported by the stream layer, waiting
     * to be counted (presence.c). */
    pthread_mutex_t conn_mu;
    conn_note *ended;
    json_t *stale; /* at open: log generations replaced by newer ones */
};

/* Object batch ids remembered per session for retries. */
#define SESSION_BATCHES_KEPT 10000
/* Ops in one object batch. */
#define OBJECTS_MAX_OPS 1000

/* --- session.c --- */
session *session_find(sessions *ss, const char *id);
session *session_add(sessions *ss, const char *id);
void session_remove(sessions *ss, session *s);
int64_t session_now_ms(void);

/* --- apply.c --- */
/* Remember an object batch id (the newest SESSION_BATCHES_KEPT), so that a
 * retry is answered, not applied again. */
void session_remember_batch(session *s, const char *id);
/* Forget all of s's state (a snapshot follows). */
void session_reset(session *s);
/* Apply one State Protocol event (as logged) to s. Returns false if it is
 * not an event this layer writes (replay logs and skips it). */
bool session_apply(sessions *ss, session *s, json_t *ev);
/* An event: {type, key, value, headers: {operation, client?, timestamp}};
 * steals value. */
json_t *session_event(const char *type, const char *key, const char *op, json_t *value,
                      const char *client);
/* Now, as an RFC 3339 JSON string (UTC, seconds). */
json_t *session_timestamp(void);
/* Append ev in stored form (minified, then ",\n") to out. */
void session_event_frame(json_t *ev, buf *out);
/* Log events (an array, one store record: all or none) to s's log and
 * apply them. If c, its answer waits until they are durable. *offset gets
 * the log's offset after them. 0, or -1 with errno (see streams_append). */
int session_commit(sessions *ss, session *s, json_t *events, http_conn *c, uint64_t *offset);
/* The attach body, {id, offset, state, output}, as JSON text appended to
 * out. */
void session_snapshot_text(session *s, uint64_t offset, buf *out);
live_run *session_live_run(session *s, const char *id);

/* --- run.c --- */
/* End a running run: its compacted message, the removal of its chunk
 * entity and the run's new value (status = reason; error and cancelled_by
 * if given), logged together as caused by client (NULL: the server). */
int run_end(sessions *ss, session *s, const char *id, const char *reason, const char *error,
            const char *cancelled_by, const char *client, http_conn *c, uint64_t *offset);

/* --- presence.c --- */
/* Serve a read of s's log (the generation at path log); a live one counts
 * as a connection of client (if not NULL) until it ends. Returns whether
 * it waits. */
bool presence_serve_read(sessions *ss, session *s, const char *client, http_conn *c,
                         http_request *req, const char *log);
/* Count the readers that ended since the last call. */
void presence_drain(sessions *ss);
/* Enter or update client's data (no event if unchanged: *changed false). */
int presence_set(sessions *ss, session *s, const char *client, json_t *data, http_conn *c,
                 uint64_t *offset, bool *changed);
int presence_leave(sessions *ss, session *s, const char *client, http_conn *c, uint64_t *offset);
/* Members with no connection for the grace period leave. */
void presence_expire(sessions *ss, session *s, int64_t now);
void presence_free(session *s);

/* --- objects.c --- */
/* Apply a batch of ops to copies of the objects they touch. On success
 * *result maps each touched name to its new value (json null: deleted) and
 * *applied each to its ops as applied (with the item ids the server
 * chose); returns NULL. Else the error (in err) and *status 400 or 413. */
const char *objects_batch(json_t *objects, json_t *ops, size_t max_object_bytes, json_t **result,
                          json_t **applied, char *err, size_t errlen, int *status);

/* --- generation.c --- */
/* The log path of a session's generation gen (malloc'ed). */
char *generation_path(const char *id, unsigned gen);
/* A session's id and generation from a log path. */
bool generation_parse(const char *path, char *id, size_t idlen, unsigned *gen);
/* Start a new generation if the log has grown enough (after a commit). */
void generation_maybe_compact(sessions *ss, session *s);
/* Delete the replaced generation once all of it is durable and readers
 * behind have had time to read it. */
void generation_drop_old(sessions *ss, session *s);
/* The generation a read from this request's offset goes to. */
const char *generation_for_read(session *s, http_request *req);

/* --- wake.c --- */
/* Note what ev (logged to s, ending at offset end) changes for agents
 * woken by it: a person's message, an object. */
void wake_note(session *s, json_t *ev, uint64_t end);
/* After a replay that noted offsets from 0: they start at `start`. */
void wake_shift(session *s, uint64_t start);
/* Tell the subscription layer what s's events since `since` (an offset of
 * this log, before them) changed; event: they just happened (else: the
 * state at start-up). */
void wake_publish(sessions *ss, session *s, uint64_t since, bool event);
/* subs_each_fn: every session's paths and offsets. */
void wake_each(void *arg, void (*fn)(void *fnarg, const char *path, uint64_t tail), void *fnarg);

/* --- compact.c --- */
/* The UI message (role assistant, id message_id) that the chunks build, as
 * the AI SDK's client would; NULL if the chunks build nothing. */
json_t *compact_chunks(json_t *chunks, const char *message_id);

#endif
