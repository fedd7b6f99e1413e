/* session.h — the session layer: one durable, addressable session per
 * conversation, on top of the stream layer.
 *
 * A session is one JSON stream (its log, at the internal path
 * /v1/session/<id>) plus the state that log materialises, kept in memory:
 * the conversation's messages, its runs (an agent's answer, streamed as AI
 * SDK UI message chunks, ended complete, cancelled or error) and the output
 * of the runs still going. Every change is one State Protocol event
 * ({type, key, value, headers: {operation, ...}}) appended to the log, so a
 * reader of the log — catch-up, long-poll or SSE, with the Durable Streams
 * read protocol — materialises the same state, and one SSE connection per
 * tab carries everything. docs/sessions.md is the protocol.
 *
 * Attach: one GET returns the state and the log offset it reflects, answered
 * once that offset is durable, so a client continues live from it with no
 * gap and no duplicate. Ended runs are compacted into messages, so attach
 * costs the size of the messages, not of the tokens streamed.
 *
 * Durability: an event is acknowledged once durable (the stream layer holds
 * the answer). At open, every session is rebuilt by replaying its log
 * through the same function that applies events live.
 *
 * Locking: one mutex guards every session; it is taken before the stream
 * layer's (the stream layer never calls up), and never held across I/O
 * other than the store's append, which does not wait for the disk.
 */
#ifndef WEFT_SESSION_H
#define WEFT_SESSION_H

#include <stdint.h>

#include "../http/server.h"
#include "../stream/stream.h"
#include "../subscription/subscription.h"

typedef struct sessions sessions;

/* Every limit of the layer; each is a `weft serve` flag. */
typedef struct sessions_limits {
    uint64_t max_event_bytes;  /* one message, chunk batch or run value */
    unsigned run_lease_ms;     /* a run with no chunk or heartbeat for this long ends in error */
    unsigned max_sessions;
    uint64_t max_object_bytes;  /* one shared object, as JSON */
    unsigned presence_grace_ms; /* a member with no connection leaves after this */
    uint64_t compact_bytes;     /* a log generation past this (and twice its state) is compacted */
} sessions_limits;

/* Open the layer on st and subs (which must outlive it) and rebuild every
 * session from its log. Starts the thread that ends runs whose lease ran
 * out. Publishes to wakes, for agents' subscriptions: /v1/session/<id>
 * grows when a person posts a message, /v1/session/<id>/objects/<name>
 * when that object changes (offsets of the session's log). */
sessions *sessions_open(streams *st, subs *wakes, const sessions_limits *limits);

/* Stop the lease thread and free every session (after the HTTP server has
 * stopped; before streams_close). */
void sessions_close(sessions *ss);

/* The HTTP handler for /v1/session/... (ctx is the sessions). */
void sessions_handle(void *ctx, http_conn *c, http_request *req);

/* The prefix of the session routes. */
#define SESSION_PREFIX "/v1/session/"

#endif
