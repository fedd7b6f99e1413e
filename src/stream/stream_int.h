/* stream_int.h — the stream layer's internals, shared by its own files only
 * (layers above include stream.h).
 *
 * Files. The request side, each calling only the ones below it:
 *   handler.c   routing, DELETE, HEAD, OPTIONS, /healthz
 *   api.c       the calls for the layers above (stream.h)
 *   create.c    PUT: create and fork
 *   append.c    POST: append and close, producers, Stream-Seq
 *   get.c       GET: the query, then a catch-up or live read
 *   live.c      long-poll and SSE readers
 *   read.c      catch-up answers (what a read of a range says)
 *   respond.c   the answer helpers every request uses
 * and under them the object itself, whose files call each other:
 *   stream.c    the object, the registry, a stream's lifetime and data
 *   commit.c    appends waiting for durability, live-reader wake-ups
 *   snapshot.c  recovery and checkpoint snapshots
 *   sweep.c     the expiry sweeper thread
 *   meta.c      a stream's persisted metadata
 *   protocol.c  the protocol's value formats (protocol.h)
 *
 * Every function here is called with st->lock held unless it says otherwise.
 */
#ifndef WEFT_STREAM_INT_H
#define WEFT_STREAM_INT_H

#include <pthread.h>

#include "../util/buf.h"
#include "stream.h"

/* Where streams live in the URL space. */

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
    bool retired;        /* replaced by a successor: live readers finish at the tail */
    uint64_t tail;       /* logical end, including not-yet-durable appends */
    uint64_t visible;    /* durable logical end */
    stream *src;         /* fork source (holds a ref) or NULL */
    uint64_t fork_off;   /* [0, fork_off) is read from src; without src, the
                            stream starts there (a log compacted by a layer above) */
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
    uint64_t snap_epoch; /* the checkpoint snapshot that has this stream (snapshot.c) */
    struct sse_cache *sse_cache; /* last SSE data event built (live.c) */
    waiter *waiters;
};

/* A live reader waiting for a stream to change (see live.c). */
struct waiter {
    waiter *prev, *next;
    streams *st;
    stream *s;        /* holds a ref while linked */
    http_conn *conn;  /* holds a ref */
    bool linked;
    void (*wake)(waiter *w); /* runs on the connection's loop, st->lock held */
};

/* A mutation waiting for durability (commit.c). */
typedef struct pending {
    store_lsn lsn;
    stream *s;
    uint64_t tail;
    bool closed;
    http_conn *conn;
} pending;

typedef struct wake_batch wake_batch;
enum { MAX_LOOPS = 64 };

/* A stream read back by recovery, and its fork source's id (snapshot.c). */
typedef struct recovered {
    stream *s;
    uint64_t src_id;
} recovered;

struct streams {
    pthread_mutex_t lock;
    store *store;
    streams_limits limits;
    bool detached; /* the server is going away: post nothing to connections */

    /* Registry: an intrusive chained hash table keyed by path. Paths are
     * the clients' choice, so the hash is keyed (util/hash.h). */
    stream **table;
    uint64_t table_size; /* power of two */
    uint64_t nstreams;

    /* Mutations waiting for durability, in LSN order (a ring), and the
     * wake-ups staged per loop while a durable batch is published. */
    pending *pend;
    size_t pend_head, pend_len, pend_cap;
    loop *staged_loop[MAX_LOOPS];
    wake_batch *staged[MAX_LOOPS];
    int nstaged;

    /* A checkpoint snapshot under way, and the number of the latest one:
     * a stream whose snap_epoch equals it is in that snapshot already, or
     * was created after it began. */
    store_snapshot *snap_active;
    uint64_t snap_epoch;
    buf snap_meta; /* scratch for one stream's encoded meta */
    recovered *recov; /* during streams_open only */
    size_t nrecov, recov_cap;

    /* The streams that can expire, each holding a reference, and the
     * thread that deletes them once expired (sweep.c). */
    stream **watch;
    size_t nwatch, watch_cap;
    pthread_t sweeper;
    bool sweeper_running, sweep_quit;
    pthread_mutex_t sweep_mu;
    pthread_cond_t sweep_cv;

    buf append_meta; /* an append's encoded meta: one buffer, not one allocation each */

    /* Told when a stream's appends become visible (streams_observe). */
    struct {
        streams_observer_fn fn;
        void *arg;
    } observers[STREAMS_MAX_OBSERVERS];
};

/* --- stream.c: registry, lifetime, data --- */
stream *stream_lookup(streams *st, const char *path, size_t len);
/* Expired streams are deleted on access; returns NULL if it expired. */
stream *stream_lookup_live(streams *st, const char *path, size_t len, int64_t now_ms);
/* A new registered stream with one reference (the registry's). */
stream *stream_new(streams *st, const char *path, size_t len, uint64_t id);
void stream_ref(stream *s);
void stream_unref(stream *s);
/* Delete (soft if it has forks); cascades to soft-deleted sources. Returns
 * the LSN that makes it durable (0 with errno on a write failure). */
store_lsn stream_delete(streams *st, stream *s);
/* Remove a stream for good: its data goes, its source loses a fork. */
store_lsn stream_destroy(streams *st, stream *s);
/* Forget a stream whose creation was never logged. */
void stream_discard(streams *st, stream *s);
/* Log the creation of a new stream with its initial data (s->tail must
 * already count it) and hand it to the sweeper. Returns the LSN, or 0 with
 * errno after discarding s (the store refused). */
store_lsn stream_log_create(streams *st, stream *s, const uint8_t *data, size_t len);
void stream_touch(stream *s, int64_t now_ms);
bool stream_expired(const stream *s, int64_t now_ms);
/* Copy bytes [off, off+len) of the stream's logical data (through the fork
 * chain) into dst. Returns false on I/O error. */
bool stream_pread(streams *st, stream *s, uint64_t off, size_t len, uint8_t *dst);
/* A JSON stream may only be read (or forked) from a message boundary; any
 * position is a boundary of other streams. */
bool stream_at_boundary(streams *st, stream *s, uint64_t pos);
int64_t wall_ms(void);

/* --- protocol.c --- */
/* Set s->json and s->text from s->content_type. */
void stream_set_content_type_flags(stream *s);

/* --- meta.c --- */
void stream_meta_encode(const stream *s, buf *out);
bool stream_meta_decode(stream *s, const uint8_t *p, size_t n, uint64_t *src_id);

/* --- snapshot.c --- */
/* Call before changing anything a checkpoint records (meta, length, the
 * registry): a snapshot under way takes the stream's state first. */
void stream_will_change(streams *st, stream *s);
/* store_options callbacks: a stream read back by store_open, and a
 * checkpoint's snapshot (called without the lock). */
void snapshot_on_recover(void *ctx, uint64_t id, const uint8_t *name, size_t name_len,
                         const uint8_t *meta, size_t meta_len, uint64_t length);
void snapshot_take(void *ctx, store_snapshot *snap);
/* After store_open: link recovered forks to their sources, finish deletes
 * a crash interrupted, hand streams that can expire to the sweeper. */
void snapshot_recovered(streams *st);

/* --- sweep.c --- */
/* Hand a registered stream with a TTL or an expiry time to the sweeper,
 * which deletes it once it expires untouched (no-op without either). Call
 * once, when ttl and expires_at are final. */
void stream_watch_expiry(streams *st, stream *s);
/* Start / stop the sweeper thread (without the lock). */
void sweep_start(streams *st);
void sweep_stop(streams *st);
/* Drop the watch list's references (streams_close). */
void sweep_forget(streams *st);

/* --- commit.c --- */
/* Register a mutation: once lsn is durable, `visible` advances to the current
 * tail, closure becomes visible, waiters wake and (if c) the held response is
 * released. */
void stream_commit(streams *st, stream *s, store_lsn lsn, http_conn *c);
/* store_options callbacks (flusher thread, without the lock). */
void commit_on_durable(void *ctx, store_lsn lsn);
void commit_on_failure(void *ctx, int err);
/* Drop every pending mutation's references (streams_close). */
void commit_forget(streams *st);
void waiter_link(waiter *w, stream *s);
void waiter_unlink(waiter *w);
/* Wake every waiter of s (a change other than a durable append). */
void streams_wake(streams *st, stream *s);

/* --- respond.c --- */
/* Status line plus the headers every answer carries (CORS, browser
 * security headers). */
void respond_begin(streams *st, http_conn *c, int status);
/* An error answer with a short text message; logs one line naming the
 * method and the stream path. */
void respond_error(streams *st, http_conn *c, int status, const char *path, const char *msg);
/* 507: the store refused a write (disk full, I/O error; from errno). */
void respond_storage_error(streams *st, http_conn *c, const char *path);
void respond_offset(http_conn *c, const char *name, uint64_t pos);
/* The headers describing a stream's configuration (create, HEAD). */
void respond_config(http_conn *c, const stream *s);
/* The live stream at path, or NULL after answering 404 (none) or 410
 * (soft-deleted). */
stream *stream_for_client(streams *st, http_conn *c, const char *path, size_t path_len,
                          int64_t now);
/* Hold c's answer until everything logged for s so far is durable and
 * visible to readers. */
void respond_hold(streams *st, http_conn *c, stream *s);
/* Send the prepared answer once everything logged for s so far is durable
 * (an idempotent retry must not be told "stored" before the original is). */
void respond_after_pending(streams *st, http_conn *c, stream *s);
/* Send the prepared answer once lsn is durable. */
void respond_when_durable(streams *st, http_conn *c, stream *s, store_lsn lsn);
/* Queue [a, b) of the stream's logical data as the answer's body: copied
 * if small, else by sendfile from the data files. */
bool respond_range(streams *st, http_conn *c, stream *s, uint64_t a, uint64_t b);

/* --- read.c --- */
/* End of a read starting at `start`: at most `limit` bytes, never past the
 * visible tail, and for JSON streams on a message boundary. */
uint64_t read_end(streams *st, stream *s, uint64_t start, uint64_t limit);
/* 200 with the data from start (catch-up, and long-poll once there is some). */
void read_respond_data(streams *st, http_conn *c, stream *s, uint64_t start, bool live,
                       const buf *cursor);
/* offset=now without live: an empty, uncacheable answer at the tail. */
void read_respond_now(streams *st, http_conn *c, stream *s);
/* Long-poll finished with no data: 204 at the tail. */
void read_respond_no_data(streams *st, http_conn *c, stream *s, const buf *cursor);

/* --- live.c --- */
/* Called once when a live reader that waited ends (see streams_serve_read). */
typedef struct live_end {
    void (*fn)(void *arg);
    void *arg;
} live_end;
/* Each returns true if the reader waits (then end, if any, is called once
 * when it ends), false if the request was answered at once. */
bool live_long_poll(streams *st, http_conn *c, stream *s, uint64_t start, const buf *cursor,
                    const live_end *end);
bool live_sse(streams *st, http_conn *c, stream *s, uint64_t start, const buf *cursor,
              const live_end *end);
void sse_cache_free(struct sse_cache *sc);

/* --- create.c, append.c, get.c (called without the lock) --- */
void handle_put(streams *st, http_conn *c, http_request *req, const char *path, size_t path_len);
void handle_post(streams *st, http_conn *c, http_request *req, const char *path, size_t path_len);
/* Returns whether the request became a waiting live reader. */
bool handle_get(streams *st, http_conn *c, http_request *req, const char *path, size_t path_len,
                const live_end *end);

#endif
