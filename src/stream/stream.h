/* stream.h — the stream layer: Durable Streams semantics over the store.
 *
 * Holds every stream's metadata in memory (a few hundred bytes each; the
 * data stays on disk), keyed by URL path. Decides what each protocol
 * operation means — content types, closure, idempotent producers, Stream-Seq,
 * forks and soft deletes, TTL/expiry — persists it through the store, and
 * makes an append visible to readers (and acknowledges it) only once the
 * store reports it durable.
 *
 * The layer is one object, `streams`, opened on a data directory and
 * closed: it owns the store, the stream registry, the appends waiting for
 * durability, the live readers and the expiry sweeper. Nothing is global;
 * two can be open in one process (on two directories). The server holds
 * one, and so do the layers built on it.
 *
 * Locking: one mutex per object guards all its stream state. Handlers take
 * it for the non-waiting part of a request: lookups, checks, logging the
 * record, and reads (mostly copies from the store's in-memory tails; older
 * bytes by pread, or sendfile after the lock is released). An append's JSON
 * body is split into messages before the lock is taken. Answers are written
 * after the handler returns, when the loop iteration ends, so the lock is
 * never held across a socket write, a network wait or an fsync.
 *
 * Visibility: an append is logged at once but readers see it, and its
 * writer is answered, only once the store reports it durable (on the
 * store's flusher thread, which also wakes the live readers — long-poll,
 * SSE — through their loops).
 *
 * Threads: streams_open and streams_close on the main thread; the request
 * entry points on an HTTP loop thread, for a connection of that loop.
 */
#ifndef WEFT_STREAM_H
#define WEFT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../http/server.h"
#include "../store/store.h"

/* Where streams live: /v1/stream/<path>. */
#define STREAM_PREFIX "/v1/stream/"

typedef struct streams streams;

/* Every limit of the layer; each is a `weft serve` flag. */
typedef struct streams_limits {
    unsigned long_poll_timeout_ms;
    unsigned sse_max_duration_ms;
    uint64_t read_chunk; /* max bytes of a catch-up response */
    int json_max_depth;
    uint64_t max_streams;
    size_t max_path;
    bool cors;
} streams_limits;

typedef struct streams_config {
    const char *dir;
    store_durability durability;
    uint64_t checkpoint_bytes; /* see store_options; 0 = the store's default */
    streams_limits limits;
} streams_config;

/* Open the store in cfg->dir and recover every stream; starts the expiry
 * sweeper. NULL with a message in err on failure (e.g. the directory is
 * locked by another process). */
streams *streams_open(const streams_config *cfg, char *err, size_t errlen);

/* Stop posting to connections: the HTTP server is going away. Answers still
 * held for durability are dropped with their connections. */
void streams_detach(streams *st);

/* Whether the store waits for disk space: writes in flight may not finish
 * soon, so shutting down need not wait for them. */
bool streams_waiting_for_space(streams *st);

/* After the HTTP server has stopped: stop the sweeper, flush and close the
 * store, free everything. */
void streams_close(streams *st);

/* Streams that exist (soft-deleted ones included). */
uint64_t streams_count(streams *st);

/* The HTTP handler (server.h's http_handler_fn; ctx is the streams): the
 * stream routes under /v1/stream/, CORS preflight and /healthz. */
void streams_handle(void *ctx, http_conn *c, http_request *req);

/* --- For the layers above (sessions): streams by path, without the stream
 * routes. Paths outside /v1/stream/ are theirs: HTTP clients cannot write
 * to them directly. Each call takes the lock; call it without. Calls that
 * take an http_conn make its answer wait until what they logged is durable:
 * the caller then writes the answer and ends it as usual. --- */

/* Begin an answer: the status line and the headers every answer of this
 * server carries (CORS when on, browser security headers). */
void streams_respond_begin(streams *st, http_conn *c, int status);

/* Records logged while handling c's request reach the flusher when its
 * loop iteration ends, with the others of that iteration (one write and
 * one fdatasync for all). Call first in a handler that logs through here. */
void streams_defer_wakes(streams *st, http_conn *c);

/* Create a JSON stream at path unless it exists; ttl_s < 0 for none. Its
 * offsets start at `base` (0, or the end of the log it succeeds: reads
 * from before it answer 410, and offset -1 reads from it) with `len` bytes
 * of messages in stored form. Returns 1 if created, 0 if a JSON stream was
 * there, -1 with errno: EEXIST (a stream of another type is there), EMLINK
 * (--max-streams), ENOSPC / EIO (the store refused). */
int streams_create_json(streams *st, const char *path, int64_t ttl_s, uint64_t base,
                        const void *data, size_t len, http_conn *c);

/* Whether everything logged to path is durable and visible to readers. */
bool streams_settled(streams *st, const char *path);

/* The stream at path was replaced by a successor and gets no more appends:
 * its live readers get everything logged to it as it becomes durable, then
 * long-polls answer 204 at its end and SSE streams close, so clients
 * reconnect (to the successor) at once. Delete it once it has settled. */
void streams_retire(streams *st, const char *path);

/* Append JSON messages already in stored form (each minified value followed
 * by ",
", see util/json.h) to the JSON stream at path. *end (if not NULL)
 * gets the stream's offset after them. 0, or -1 with errno: ENOENT (no such
 * stream), EPIPE (closed), ENOSPC / EIO. */
int streams_append(streams *st, const char *path, const void *data, size_t len, http_conn *c,
                   uint64_t *end);

/* The offset after everything logged to path (durable or not), and a touch
 * (as a read) for its TTL; hold c's answer (if any) until all of it is
 * durable. 0, or -1 with errno ENOENT. */
int streams_hold_tail(streams *st, const char *path, http_conn *c, uint64_t *tail);

/* The TTL of the stream at path in seconds, -1 if none (or no stream). */
int64_t streams_ttl(streams *st, const char *path);

/* Whether a stream is at path (expiry is left to the sweeper). */
bool streams_exists(streams *st, const char *path);

/* Delete the stream at path. 0, or -1 with errno ENOENT, ENOSPC / EIO. */
int streams_delete(streams *st, const char *path, http_conn *c);

/* Answer a Durable Streams read (GET with offset, live and cursor in the
 * query) of the stream at path, as the stream routes do. Returns true if
 * the request became a live reader waiting for the stream (long-poll or
 * SSE): then on_end(arg), if given, is called once when that reader ends
 * (answered, timed out, or its connection closed) — with the layer's lock
 * held, so it must only take locks no other call here is made under. */
bool streams_serve_read(streams *st, http_conn *c, http_request *req, const char *path,
                        void (*on_end)(void *arg), void *arg);

/* Told that appends to the stream at path are visible to readers up to
 * `visible` (its new durable end). Called on the store's flusher thread
 * with the layer's lock held: it must not call into the layer, and may
 * only take a lock of its own that is never held across a call here. */
typedef void (*streams_observer_fn)(void *arg, const char *path, uint64_t visible);

/* Add an observer (before the server starts): 0, or -1 if there are
 * STREAMS_MAX_OBSERVERS already. streams_unobserve removes the one of arg. */
#define STREAMS_MAX_OBSERVERS 4
int streams_observe(streams *st, streams_observer_fn fn, void *arg);
void streams_unobserve(streams *st, void *arg);

/* Append to out the visible bytes of the stream at path from offset
 * `from`, at most max (for a JSON stream: whole messages, in stored form,
 * unless one alone is longer); *next gets the offset after them and *end
 * the visible end. 0, or -1 with errno ENOENT (no stream), ERANGE (from is
 * outside it), EIO. */
int streams_read(streams *st, const char *path, uint64_t from, size_t max, buf *out, uint64_t *next,
                 uint64_t *end);

/* The visible (durable) end of the stream at path. 0, or -1 with errno
 * ENOENT (none, or deleted). */
int streams_visible_end(streams *st, const char *path, uint64_t *end);

/* Call fn(arg, path, visible end) for every stream whose path starts with
 * prefix (soft-deleted ones left out). fn runs with the lock held and must
 * not call back into the layer. */
void streams_each_end(streams *st, const char *prefix,
                      void (*fn)(void *arg, const char *path, uint64_t end), void *arg);

/* Call fn for every stream whose path starts with prefix, with its whole
 * durable data (from its first offset) (at open, to rebuild state kept beside the streams). fn runs
 * with the lock held and must not call back into the layer. */
void streams_each(streams *st, const char *prefix,
                  void (*fn)(void *arg, const char *path, const uint8_t *data, size_t len),
                  void *arg);

#endif
