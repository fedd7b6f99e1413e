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

#endif
