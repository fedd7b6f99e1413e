/* stream.h — the stream layer: Durable Streams semantics over the store.
 *
 * Holds every stream's metadata in memory (a few hundred bytes each; the
 * data stays on disk), keyed by URL path. Decides what each protocol
 * operation means — content types, closure, idempotent producers, Stream-Seq,
 * forks and soft deletes, TTL/expiry — persists it through the store, and
 * makes an append visible to readers (and acknowledges it) only once the
 * store reports it durable.
 *
 * Locking: one mutex (streams_lock) guards all stream state. Handlers take it
 * for the non-waiting part of a request: lookups, checks, logging the
 * record, and reads (mostly copies from the store's in-memory tails; older
 * bytes by pread, or sendfile after the lock is released). An append's JSON
 * body is split into messages before the lock is taken (PUT's initial body
 * still under it). Answers are written after the handler returns, when the
 * loop iteration ends, so the lock is never held across a socket write, a
 * network wait or an fsync.
 *
 * Visibility: `tail` is where the next append goes; `visible` is the durable
 * prefix readers may see. The gap is closed by stream_on_durable(), called
 * on the store's flusher thread, which also releases held append responses
 * and wakes live readers (long-poll, SSE) through their loops.
 */
#ifndef WEFT_STREAM_H
#define WEFT_STREAM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../http/server.h"
#include "../store/store.h"
#include "../util/buf.h"

typedef struct stream stream;
typedef struct waiter waiter;

typedef struct producer {
    char *id;
    uint64_t epoch;
    uint64_t seq; /* highest accepted seq in epoch */
} producer;

struct stream {
    /* A lookup reads these three for each stream of a chain: one cache line
     * with the fields every request reads next. */
    stream *hnext;      /* hash chain */
    uint64_t path_hash; /* of path: a lookup skips other streams without reading their path */
    char *path;
    uint64_t id;
    char *content_type;
    bool json;           /* application/json: message framing */
    bool text;           /* text media types or json: SSE carries text, not base64 */
    bool closed;         /* closed (maybe not yet durable) */
    bool closed_visible; /* closure durable and observable */
    bool deleted;        /* soft-deleted: kept for its forks, 410 to clients */
    bool dead;           /* removed from the registry; freed at refs == 0 */
    uint64_t tail;       /* logical end, including not-yet-durable appends */
    uint64_t visible;    /* durable logical end */
    stream *src;         /* fork source (holds a ref) or NULL */
    uint64_t fork_off;   /* [0, fork_off) is read from src */
    uint32_t nforks;     /* live forks referencing this stream */
    uint32_t refs;       /* registry + forks + waiters + pending commits */
    int64_t ttl;         /* seconds, -1 if none */
    int64_t expires_at;  /* ms since epoch, 0 if none */
    char *expires_str;   /* Stream-Expires-At as given */
    int64_t last_access; /* ms since epoch, for TTL */
    char *stream_seq;    /* last Stream-Seq, NULL if none */
    producer *producers;
    uint32_t nproducers;
    /* The producer request that closed the stream, for idempotent retries. */
    char *closed_by_id;
    uint64_t closed_by_epoch, closed_by_seq;
    store_lsn last_lsn;  /* newest mutation logged for this stream */
    uint64_t snap_epoch; /* the checkpoint snapshot that has this stream (stream.c) */
    struct sse_cache *sse_cache; /* last SSE data event built (read.c) */
    waiter *waiters;
};

/* A live reader waiting for a stream to change (see read.c). */
struct waiter {
    waiter *prev, *next;
    stream *s;        /* holds a ref while linked */
    http_conn *conn;  /* holds a ref */
    bool linked;
    void (*wake)(waiter *w); /* runs on the connection's loop, streams_lock held */
};

typedef struct weft_limits {
    uint64_t max_body;
    unsigned long_poll_timeout_ms;
    unsigned sse_max_duration_ms;
    uint64_t read_chunk;       /* max bytes of a catch-up response */
    int json_max_depth;
    uint64_t max_streams;
    size_t max_path;
    bool cors;
} weft_limits;

extern pthread_mutex_t streams_lock;
extern store *streams_store;
extern weft_limits streams_limits;

/* Open the store in dir, recover all streams. checkpoint_bytes: see
 * store_options (0 = the store's default). */
int streams_open(const char *dir, store_durability durability, uint64_t checkpoint_bytes,
                 char *err, size_t errlen);
/* After the HTTP server has stopped: flush and close the store. */
void streams_close(void);
/* Stop posting to connections (the server is going away). */
void streams_detach(void);
/* Whether the store waits for disk space: writes in flight may not finish
 * soon, so shutting down need not wait for them. */
bool streams_waiting_for_space(void);

/* The HTTP handler (server.h's http_handler_fn). */
void streams_handle(void *ctx, http_conn *c, http_request *req);

/* --- internals shared by the stream layer's files (lock held) --- */
stream *stream_lookup(const char *path, size_t len);
/* Expired streams are deleted on access; returns NULL if it expired. */
stream *stream_lookup_live(const char *path, size_t len, int64_t now_ms);
stream *stream_new(const char *path, size_t len, uint64_t id);
void stream_ref(stream *s);
void stream_unref(stream *s);
/* Delete (soft if it has forks); cascades to soft-deleted sources. Returns
 * the LSN that makes it durable (0 with errno on a write failure). */
store_lsn stream_delete(stream *s);
/* Call before changing anything a checkpoint records (meta, length, the
 * registry): a snapshot under way takes the stream's state first. */
void stream_will_change(stream *s);
/* Forget a stream whose creation was never logged. */
void stream_discard(stream *s);
void stream_touch(stream *s, int64_t now_ms);
bool stream_expired(const stream *s, int64_t now_ms);
/* Hand a registered stream with a TTL or an expiry time to the sweeper,
 * which deletes it once it expires untouched (no-op without either). Call
 * once, when ttl and expires_at are final. */
void stream_watch_expiry(stream *s);
uint64_t stream_count(void);

void stream_meta_encode(const stream *s, buf *out);
bool stream_meta_decode(stream *s, const uint8_t *p, size_t n, uint64_t *src_id);

/* Register a mutation: once lsn is durable, `visible` advances to the current
 * tail, closure becomes visible, waiters wake and (if c) the held response is
 * released. */
void stream_commit(stream *s, store_lsn lsn, http_conn *c);

void waiter_link(waiter *w, stream *s);
void waiter_unlink(waiter *w);
void streams_wake(stream *s);

/* Copy bytes [off, off+len) of the stream's logical data (through the fork
 * chain) into dst. Returns false on I/O error. */
bool stream_pread(stream *s, uint64_t off, size_t len, uint8_t *dst);
/* A JSON stream may only be read (or forked) from a message boundary; any
 * position is a boundary of other streams. */
bool stream_at_boundary(stream *s, uint64_t pos);
/* Queue [a, b) of the stream's logical data as file segments of the response. */
bool stream_respond_range(http_conn *c, stream *s, uint64_t a, uint64_t b);

int64_t wall_ms(void);

/* Responses from the stream layer: status line plus the headers every
 * response carries (CORS, browser security headers). */
void respond_begin(http_conn *c, int status);
/* An error response; logs one line with the stream path. */
void respond_error(http_conn *c, int status, const char *path, const char *msg);

/* The live stream at path, or NULL after answering 404 (none) or 410
 * (soft-deleted). Lock held. */
stream *stream_for_client(http_conn *c, const char *path, size_t path_len, int64_t now);

void sse_cache_free(struct sse_cache *sc);

/* Request handlers (handler.c, read.c), called with streams_lock NOT held. */
void handle_get(http_conn *c, http_request *req, const char *path, size_t path_len);

#endif
