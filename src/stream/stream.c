/* stream.c — the stream registry, lifetime, durability bookkeeping and
 * live-reader wake-ups (see stream.h). */
#include "stream.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../util/hash.h"
#include "../util/log.h"
#include "../util/mem.h"

/* Adaptive: critical sections are a few microseconds, and on these machines
 * putting a thread to sleep and waking it costs more than spinning briefly. */
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
pthread_mutex_t streams_lock = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;
#else
pthread_mutex_t streams_lock = PTHREAD_MUTEX_INITIALIZER;
#endif
store *streams_store;
weft_limits streams_limits;

/* Registry: an intrusive chained hash table keyed by path. Paths are the
 * clients' choice, so the hash is keyed (util/hash.h). */
static stream **table;
static uint64_t table_size; /* power of two */
static uint64_t nstreams;

/* Mutations waiting for durability, in LSN order (a ring). */
typedef struct pending {
    store_lsn lsn;
    stream *s;
    uint64_t tail;
    bool closed;
    http_conn *conn;
} pending;
static pending *pend;
static size_t pend_head, pend_len, pend_cap;
static bool detached;

/* A checkpoint snapshot under way (see on_snapshot), and the number of the
 * latest one: a stream whose snap_epoch equals it is in that snapshot
 * already, or was created after it began. */
static store_snapshot *snap_active;
static uint64_t snap_epoch;
static buf snap_meta; /* scratch for one stream's encoded meta */

int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void table_grow(void) {
    uint64_t nsize = table_size ? table_size * 2 : 1024;
    stream **nt = xcalloc(nsize, sizeof *nt);
    for (uint64_t i = 0; i < table_size; i++) {
        stream *s = table[i];
        while (s) {
            stream *next = s->hnext;
            uint64_t b = s->path_hash & (nsize - 1);
            s->hnext = nt[b];
            nt[b] = s;
            s = next;
        }
    }
    free(table);
    table = nt;
    table_size = nsize;
}

stream *stream_lookup(const char *path, size_t len) {
    if (!table_size) return NULL;
    uint64_t h = hash_keyed(path, len);
    for (stream *s = table[h & (table_size - 1)]; s; s = s->hnext)
        if (s->path_hash == h && strncmp(s->path, path, len) == 0 && s->path[len] == 0) return s;
    return NULL;
}

uint64_t stream_count(void) { return nstreams; }

stream *stream_new(const char *path, size_t len, uint64_t id) {
    /* A snapshot walks the buckets between holds of the lock: growing would
     * move streams it has not reached behind it. */
    if (nstreams + 1 > table_size && !snap_active) table_grow();
    stream *s = xcalloc(1, sizeof *s);
    s->id = id;
    s->snap_epoch = snap_epoch;
    s->path = xstrndup(path, len);
    s->ttl = -1;
    s->refs = 1; /* the registry's */
    s->last_access = wall_ms();
    s->path_hash = hash_keyed(path, len);
    uint64_t b = s->path_hash & (table_size - 1);
    s->hnext = table[b];
    table[b] = s;
    nstreams++;
    return s;
}

static void table_remove(stream *s) {
    uint64_t b = s->path_hash & (table_size - 1);
    for (stream **pp = &table[b]; *pp; pp = &(*pp)->hnext) {
        if (*pp == s) {
            *pp = s->hnext;
            nstreams--;
            return;
        }
    }
}

void stream_ref(stream *s) { s->refs++; }

static void stream_free(stream *s) {
    for (uint32_t i = 0; i < s->nproducers; i++) free(s->producers[i].id);
    free(s->producers);
    free(s->path);
    free(s->content_type);
    free(s->expires_str);
    free(s->stream_seq);
    free(s->closed_by_id);
    sse_cache_free(s->sse_cache);
    free(s);
}

void stream_unref(stream *s) {
    if (--s->refs > 0) return;
    if (s->src) stream_unref(s->src);
    stream_free(s);
}

bool stream_expired(const stream *s, int64_t now_ms) {
    if (s->expires_at && now_ms >= s->expires_at) return true;
    if (s->ttl >= 0 && now_ms >= s->last_access + s->ttl * 1000) return true;
    return false;
}

void stream_touch(stream *s, int64_t now_ms) { s->last_access = now_ms; }

/* Remove a stream for good: its data goes, its source loses a fork. */
static store_lsn stream_destroy(stream *s) {
    stream_will_change(s);
    store_lsn lsn = store_delete(streams_store, s->id);
    if (lsn == 0) {
        log_write(LOG_ERROR, "%s: delete not logged: %s", s->path, strerror(errno));
        return 0;
    }
    table_remove(s);
    s->dead = true;
    streams_wake(s);
    stream *src = s->src;
    if (src) {
        src->nforks--;
        if (src->deleted && src->nforks == 0 && !src->dead) {
            store_lsn l2 = stream_destroy(src);
            if (l2 > lsn) lsn = l2;
        }
    }
    stream_unref(s);
    return lsn;
}

store_lsn stream_delete(stream *s) {
    if (s->nforks > 0) {
        stream_will_change(s);
        s->deleted = true;
        buf meta;
        buf_init(&meta);
        stream_meta_encode(s, &meta);
        store_lsn lsn = store_set_meta(streams_store, s->id, meta.data, meta.len);
        buf_free(&meta);
        if (lsn == 0) {
            s->deleted = false;
            return 0;
        }
        streams_wake(s);
        return lsn;
    }
    return stream_destroy(s);
}

void stream_discard(stream *s) {
    table_remove(s);
    s->dead = true;
    if (s->src) s->src->nforks--;
    stream_unref(s);
}

stream *stream_lookup_live(const char *path, size_t len, int64_t now_ms) {
    stream *s = stream_lookup(path, len);
    if (s && !s->deleted && stream_expired(s, now_ms)) {
        log_write(LOG_INFO, "%s: expired", s->path);
        stream_delete(s);
        s = stream_lookup(path, len);
    }
    return s;
}

/* --- durability --- */

void stream_commit(stream *s, store_lsn lsn, http_conn *c) {
    if (pend_len == pend_cap) {
        size_t ncap = pend_cap ? pend_cap * 2 : 256;
        pending *np = xmalloc(ncap * sizeof *np);
        for (size_t i = 0; i < pend_len; i++) np[i] = pend[(pend_head + i) % pend_cap];
        free(pend);
        pend = np;
        pend_head = 0;
        pend_cap = ncap;
    }
    pending *p = &pend[(pend_head + pend_len) % pend_cap];
    pend_len++;
    if (lsn > s->last_lsn) s->last_lsn = lsn;
    p->lsn = lsn;
    p->s = s;
    p->tail = s->tail;
    p->closed = s->closed;
    p->conn = c;
    stream_ref(s);
    if (c) {
        http_conn_ref(c);
        http_conn_hold(c);
    }
}

static void wake_stage(stream *s);
static void wake_stage_release(http_conn *c);
static void wake_post(void);

static void release_conn(void *arg) {
    http_conn *c = arg;
    if (!http_conn_closed(c)) http_conn_release(c);
    http_conn_unref(c);
}

static char failure_msg[160];

static void fail_conn(void *arg) {
    http_conn *c = arg;
    if (!http_conn_closed(c)) {
        http_request *req = http_conn_request(c);
        log_write(LOG_ERROR, "%.*s %.*s: 507 %s", (int)req->head.method_len, req->head.method_str,
                  (int)req->target.path_len, req->target.path, failure_msg);
        http_conn_fail(c, 507, failure_msg);
    }
    http_conn_unref(c);
}

/* The store can no longer make anything durable: every held answer becomes
 * an error instead of waiting forever. */
static void on_failure(void *ctx, int err) {
    (void)ctx;
    log_write(LOG_ERROR, "storage failed (%s): pending writes are answered 507", strerror(err));
    pthread_mutex_lock(&streams_lock);
    snprintf(failure_msg, sizeof failure_msg, "storage error: %s; the write was not stored",
             strerror(err));
    while (pend_len > 0) {
        pending p = pend[pend_head];
        pend_head = (pend_head + 1) % pend_cap;
        pend_len--;
        if (p.conn) {
            if (detached) http_conn_unref(p.conn);
            else loop_post(http_conn_loop(p.conn), fail_conn, p.conn);
        }
        stream_unref(p.s);
    }
    pthread_mutex_unlock(&streams_lock);
}

static void on_durable(void *ctx, store_lsn lsn) {
    (void)ctx;
    pthread_mutex_lock(&streams_lock);
    while (pend_len > 0 && pend[pend_head].lsn <= lsn) {
        pending p = pend[pend_head];
        pend_head = (pend_head + 1) % pend_cap;
        pend_len--;
        stream *s = p.s;
        bool changed = false;
        if (p.tail > s->visible) {
            s->visible = p.tail;
            changed = true;
        }
        if (p.closed && !s->closed_visible) {
            s->closed_visible = true;
            changed = true;
        }
        if (changed && !detached) wake_stage(s);
        if (p.conn) {
            if (detached) http_conn_unref(p.conn);
            else wake_stage_release(p.conn);
        }
        stream_unref(s);
    }
    wake_post();
    pthread_mutex_unlock(&streams_lock);
}

/* --- waiters --- */

void waiter_link(waiter *w, stream *s) {
    w->s = s;
    stream_ref(s);
    w->prev = NULL;
    w->next = s->waiters;
    if (s->waiters) s->waiters->prev = w;
    s->waiters = w;
    w->linked = true;
}

void waiter_unlink(waiter *w) {
    if (!w->linked) return;
    stream *s = w->s;
    if (w->prev) w->prev->next = w->next;
    else s->waiters = w->next;
    if (w->next) w->next->prev = w->prev;
    w->linked = false;
    w->s = NULL;
    stream_unref(s);
}

/* Wake-ups reach each loop as one batch: the waiters woken and the held
 * answers released by a whole durable batch (or one other change) are
 * staged per loop under streams_lock, then posted once per loop, where they
 * run under one acquisition of the lock. An append read by a thousand
 * subscribers, or a group commit of a hundred appends, costs each loop one
 * post and one lock round, not one per waiter or per answer. */
typedef struct wake_batch {
    waiter *waiters;
    http_conn **conns; /* held answers to release */
    size_t nconns, cap;
} wake_batch;

enum { MAX_LOOPS = 64 };
static loop *staged_loop[MAX_LOOPS];
static wake_batch *staged[MAX_LOOPS];
static int nstaged;

static void wake_run(void *arg) {
    wake_batch *b = arg;
    if (b->waiters) {
        pthread_mutex_lock(&streams_lock);
        for (waiter *w = b->waiters, *next; w; w = next) {
            next = w->next;
            w->wake(w);
        }
        pthread_mutex_unlock(&streams_lock);
    }
    for (size_t i = 0; i < b->nconns; i++) release_conn(b->conns[i]);
    free(b->conns);
    free(b);
}

static wake_batch *batch_for(loop *l) {
    for (int i = 0; i < nstaged; i++)
        if (staged_loop[i] == l) return staged[i];
    if (nstaged == MAX_LOOPS) wake_post();
    staged_loop[nstaged] = l;
    return staged[nstaged++] = xcalloc(1, sizeof(wake_batch));
}

static void wake_stage(stream *s) {
    while (s->waiters) {
        waiter *w = s->waiters;
        waiter_unlink(w);
        wake_batch *b = batch_for(http_conn_loop(w->conn));
        w->next = b->waiters;
        b->waiters = w;
    }
}

static void wake_stage_release(http_conn *c) {
    wake_batch *b = batch_for(http_conn_loop(c));
    if (b->nconns == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->conns = xrealloc(b->conns, b->cap * sizeof *b->conns);
    }
    b->conns[b->nconns++] = c;
}

static void wake_post(void) {
    for (int i = 0; i < nstaged; i++) loop_post(staged_loop[i], wake_run, staged[i]);
    nstaged = 0;
}

void streams_wake(stream *s) {
    /* Shutting down: waiters stay linked so their connection's abort
     * (posted as the server closes it) finds and frees them. */
    if (detached) return;
    wake_stage(s);
    wake_post();
}

/* --- data access --- */

typedef struct file_ref {
    store_file *f;
} file_ref;

static void file_ref_release(void *arg) {
    store_file_release(streams_store, arg);
}

bool stream_respond_range(http_conn *c, stream *s, uint64_t a, uint64_t b) {
    while (a < b) {
        if (a < s->fork_off) {
            if (!s->src) return false; /* source lost (see link_forks) */
            uint64_t e = b < s->fork_off ? b : s->fork_off;
            if (!stream_respond_range(c, s->src, a, e)) return false;
            a = e;
            continue;
        }
        /* What is in the data file goes by sendfile; recent bytes the
         * store still holds in memory are copied into the response. */
        uint64_t off = a - s->fork_off, end = b - s->fork_off;
        uint64_t written = store_written(streams_store, s->id);
        if (off < written) {
            uint64_t n = end < written ? end - off : written - off;
            store_file *f = store_file_acquire(streams_store, s->id);
            if (!f) {
                log_write(LOG_ERROR, "%s: cannot open data file: %s", s->path, strerror(errno));
                return false;
            }
            http_respond_file(c, store_file_fd(f), off, n, file_ref_release, f);
            off += n;
        }
        if (off < end) {
            size_t n = (size_t)(end - off);
            uint8_t *mem = xmalloc(n);
            bool ok = store_read(streams_store, s->id, off, mem, n) == 0;
            if (ok) http_respond_body(c, mem, n);
            else log_write(LOG_ERROR, "%s: cannot read data: %s", s->path, strerror(errno));
            free(mem);
            if (!ok) return false;
        }
        a = b;
    }
    return true;
}

bool stream_pread(stream *s, uint64_t off, size_t len, uint8_t *dst) {
    while (len > 0) {
        if (off < s->fork_off) {
            if (!s->src) return false;
            size_t n = off + len <= s->fork_off ? len : (size_t)(s->fork_off - off);
            if (!stream_pread(s->src, off, n, dst)) return false;
            off += n;
            dst += n;
            len -= n;
            continue;
        }
        return store_read(streams_store, s->id, off - s->fork_off, dst, len) == 0;
    }
    return true;
}

bool stream_at_boundary(stream *s, uint64_t pos) {
    if (!s->json || pos == 0) return true;
    uint8_t prev;
    return stream_pread(s, pos - 1, 1, &prev) && prev == '\n';
}

/* --- recovery and checkpoints --- */

typedef struct recovered {
    stream *s;
    uint64_t src_id;
} recovered;
static recovered *recov;
static size_t nrecov, recov_cap;

static void on_recover(void *ctx, uint64_t id, const uint8_t *name, size_t name_len,
                       const uint8_t *meta, size_t meta_len, uint64_t length) {
    (void)ctx;
    stream *s = stream_new((const char *)name, name_len, id);
    uint64_t src_id = 0;
    if (!stream_meta_decode(s, meta, meta_len, &src_id))
        log_write(LOG_ERROR, "%s: unreadable metadata, stream kept with defaults", s->path);
    s->tail = s->visible = s->fork_off + length;
    s->closed_visible = s->closed;
    if (nrecov == recov_cap) {
        recov_cap = recov_cap ? recov_cap * 2 : 64;
        recov = xrealloc(recov, recov_cap * sizeof *recov);
    }
    recov[nrecov++] = (recovered){s, src_id};
}

static int by_id(const void *a, const void *b) {
    uint64_t x = (*(stream *const *)a)->id, y = (*(stream *const *)b)->id;
    return x < y ? -1 : x > y;
}

/* Forks reference their source by id in the metadata; resolve to pointers. */
static void link_forks(void) {
    stream **ids = xmalloc((nrecov ? nrecov : 1) * sizeof *ids);
    for (size_t i = 0; i < nrecov; i++) ids[i] = recov[i].s;
    qsort(ids, nrecov, sizeof *ids, by_id);
    for (size_t i = 0; i < nrecov; i++) {
        if (!recov[i].src_id) continue;
        stream key = {.id = recov[i].src_id}, *kp = &key;
        stream **hit = bsearch(&kp, ids, nrecov, sizeof *ids, by_id);
        if (!hit) {
            log_write(LOG_ERROR, "%s: fork source #%llu missing", recov[i].s->path,
                      (unsigned long long)recov[i].src_id);
            continue;
        }
        recov[i].s->src = *hit;
        stream_ref(*hit);
        (*hit)->nforks++;
    }
    /* A crash between a fork's delete and its soft-deleted source's leaves
     * the source with no forks: finish the cascade now. */
    for (size_t i = 0; i < nrecov; i++) stream_ref(recov[i].s); /* cascades free others */
    for (size_t i = 0; i < nrecov; i++) {
        stream *s = recov[i].s;
        if (s->deleted && s->nforks == 0 && !s->dead) stream_destroy(s);
        else if (!s->dead && !s->deleted) stream_watch_expiry(s);
    }
    for (size_t i = 0; i < nrecov; i++) stream_unref(recov[i].s);
    free(ids);
    free(recov);
    recov = NULL;
    nrecov = recov_cap = 0;
}

static void snapshot_add(stream *s) {
    buf_reset(&snap_meta);
    stream_meta_encode(s, &snap_meta);
    store_snapshot_add(snap_active, s->id, (const uint8_t *)s->path, strlen(s->path),
                       snap_meta.data, snap_meta.len, s->tail - s->fork_off);
    s->snap_epoch = snap_epoch;
}

void stream_will_change(stream *s) {
    if (snap_active && s->snap_epoch != snap_epoch) snapshot_add(s);
}

/* Buckets copied per hold of the lock: well under a millisecond. */
#define SNAPSHOT_SLICE 256

/* The snapshot is the registry as it was when store_snapshot_begin cut the
 * WAL. Copying 100,000 streams takes about 150 ms, too long to stop every
 * append for, so it goes a slice of buckets at a time, and a stream about
 * to change before its slice is reached is copied first, as it still is
 * (stream_will_change). The table does not grow meanwhile. */
static void on_snapshot(void *ctx, store_snapshot *snap) {
    (void)ctx;
    pthread_mutex_lock(&streams_lock);
    store_snapshot_begin(snap);
    snap_active = snap;
    snap_epoch++;
    uint64_t size = table_size;
    pthread_mutex_unlock(&streams_lock);
    for (uint64_t first = 0; first < size; first += SNAPSHOT_SLICE) {
        pthread_mutex_lock(&streams_lock);
        for (uint64_t i = first; i < first + SNAPSHOT_SLICE && i < size; i++)
            for (stream *s = table[i]; s; s = s->hnext) stream_will_change(s);
        pthread_mutex_unlock(&streams_lock);
    }
    pthread_mutex_lock(&streams_lock);
    snap_active = NULL;
    buf_free(&snap_meta);
    pthread_mutex_unlock(&streams_lock);
}

/* Expired streams nobody touches must still go (and free their disk): a
 * background thread visits the streams that can expire a slice at a time,
 * so the lock is never held for long however many there are. Only those
 * are visited: walking the whole table took every stream's cache lines
 * from the request path, for streams that never expire. Each entry holds a
 * reference; a stream that is gone is dropped when next visited. */
static stream **watch;
static size_t nwatch, watch_cap;
static pthread_t sweeper;
static bool sweeper_running;
static pthread_mutex_t sweep_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sweep_cv = PTHREAD_COND_INITIALIZER;
static bool sweep_stop;

void stream_watch_expiry(stream *s) {
    if (s->ttl < 0 && !s->expires_at) return;
    if (nwatch == watch_cap) {
        watch_cap = watch_cap ? watch_cap * 2 : 64;
        watch = xrealloc(watch, watch_cap * sizeof *watch);
    }
    stream_ref(s);
    watch[nwatch++] = s;
}

static void sweep_slice(size_t *cursor, size_t n) {
    pthread_mutex_lock(&streams_lock);
    int64_t now = wall_ms();
    for (size_t k = 0; k < n && nwatch; k++) {
        if (*cursor >= nwatch) *cursor = 0;
        stream *s = watch[*cursor];
        if (!s->dead && !s->deleted && stream_expired(s, now)) {
            log_write(LOG_INFO, "%s: expired", s->path);
            stream_delete(s);
        }
        /* Soft-deleted streams go with their last fork, not by expiry. */
        if (s->dead || s->deleted) {
            watch[*cursor] = watch[--nwatch];
            stream_unref(s);
        } else {
            (*cursor)++;
        }
    }
    pthread_mutex_unlock(&streams_lock);
}

static void *sweep_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "weft-sweep");
    size_t cursor = 0;
    pthread_mutex_lock(&sweep_mu);
    while (!sweep_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&sweep_cv, &sweep_mu, &ts);
        if (sweep_stop) break;
        pthread_mutex_unlock(&sweep_mu);
        sweep_slice(&cursor, 4096);
        pthread_mutex_lock(&sweep_mu);
    }
    pthread_mutex_unlock(&sweep_mu);
    return NULL;
}

int streams_open(const char *dir, store_durability durability, uint64_t checkpoint_bytes,
                 char *err, size_t errlen) {
    store_options opt = {
        .dir = dir,
        .durability = durability,
        .checkpoint_bytes = checkpoint_bytes,
        .on_durable = on_durable,
        .on_failure = on_failure,
        .on_recover = on_recover,
        .snapshot = on_snapshot,
    };
    pthread_mutex_lock(&streams_lock);
    if (!table_size) table_grow();
    streams_store = store_open(&opt, err, errlen);
    if (streams_store) link_forks();
    pthread_mutex_unlock(&streams_lock);
    if (!streams_store) return -1;
    sweep_stop = false;
    sweeper_running = pthread_create(&sweeper, NULL, sweep_main, NULL) == 0;
    return 0;
}

void streams_detach(void) {
    pthread_mutex_lock(&streams_lock);
    detached = true;
    pthread_mutex_unlock(&streams_lock);
}

bool streams_waiting_for_space(void) {
    return streams_store && store_waiting_for_room(streams_store) != 0;
}

void streams_close(void) {
    if (sweeper_running) {
        pthread_mutex_lock(&sweep_mu);
        sweep_stop = true;
        pthread_cond_signal(&sweep_cv);
        pthread_mutex_unlock(&sweep_mu);
        pthread_join(sweeper, NULL);
        sweeper_running = false;
    }
    store_close(streams_store);
    streams_store = NULL;
    pthread_mutex_lock(&streams_lock);
    while (pend_len > 0) {
        pending p = pend[pend_head];
        pend_head = (pend_head + 1) % pend_cap;
        pend_len--;
        if (p.conn) http_conn_unref(p.conn);
        stream_unref(p.s);
    }
    free(pend);
    pend = NULL;
    pend_cap = 0;
    for (size_t i = 0; i < nwatch; i++) stream_unref(watch[i]);
    free(watch);
    watch = NULL;
    nwatch = watch_cap = 0;
    for (uint64_t i = 0; i < table_size; i++) {
        stream *s = table[i];
        while (s) {
            stream *next = s->hnext;
            while (s->waiters) waiter_unlink(s->waiters);
            stream_unref(s);
            s = next;
        }
    }
    free(table);
    table = NULL;
    table_size = nstreams = 0;
    pthread_mutex_unlock(&streams_lock);
}
