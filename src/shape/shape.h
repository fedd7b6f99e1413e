/* shape.h — Postgres sync: shapes (a table and a where clause) replicated
 * from Postgres into Weft's store and served with Electric's HTTP API, so
 * that @electric-sql/client works against Weft unchanged.
 *
 * A shape's log is one internal JSON stream of Electric messages (the
 * initial snapshot's inserts, then the changes that touch the shape), kept
 * once however many clients read it. One thread talks to Postgres: a
 * control connection (the catalog, publication membership, each shape's
 * snapshot) and a logical replication connection (pgoutput) whose changes
 * it matches to the shapes of their table and appends to their logs. A
 * transaction the snapshot already saw (by its xmin, xmax and in-progress
 * list) is left out of that shape, so nothing is lost or applied twice.
 * The position is confirmed to Postgres only once every log it touched is
 * durable; after a restart the slot replays from there and each shape
 * skips what its log already holds.
 *
 * Without a database URL the layer answers /v1/shape with 503 and a
 * message saying how to turn it on. docs/shapes.md is the API.
 *
 * Locking: one mutex guards the registry (taken before the stream
 * layer's); waiting readers have a lock of their own that the stream
 * layer's observer takes (it is innermost).
 */
#ifndef WEFT_SHAPE_H
#define WEFT_SHAPE_H

#include "../http/server.h"
#include "../stream/stream.h"

#define SHAPE_PREFIX "/v1/shape"
#define SHAPE_HEALTH "/v1/health"

typedef struct shapes shapes;

typedef struct shapes_config {
    const char *database_url; /* NULL or "": shapes off */
    const char *publication;  /* created if missing */
    const char *slot;         /* logical replication slot, created if missing */
    unsigned long_poll_ms;
    unsigned sse_max_ms;      /* an SSE connection is closed after this (clients reconnect) */
    uint64_t read_chunk;      /* most bytes of one answer */
} shapes_config;

/* Open the layer: with a database URL, rebuild the shapes kept in the
 * store and start the Postgres thread (it connects, and reconnects, by
 * itself: start-up does not wait for Postgres). NULL with a message in
 * err on a bad configuration. */
shapes *shapes_open(streams *st, const shapes_config *cfg, char *err, size_t errlen);

/* Stop the Postgres thread and the live readers' wake-ups: before the HTTP
 * server is freed (nothing may be posted to its loops after). */
void shapes_detach(shapes *sh);

/* Free everything (after the HTTP server has stopped, before
 * streams_close); detaches first if that was not done. */
void shapes_close(shapes *sh);

/* The HTTP handler for SHAPE_PREFIX and SHAPE_HEALTH (ctx is the shapes). */
void shapes_handle(void *ctx, http_conn *c, http_request *req);

#endif
