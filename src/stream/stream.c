/* stream.c — the streams object: opening and closing it, the registry of
 * streams by path, a stream's lifetime (references, delete, expiry) and
 * reads of its logical data through the fork chain (see stream.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../util/hash.h"
#include "../util/log.h"
#include "../util/mem.h"
#include "stream_int.h"

int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- registry --- */

static void table_grow(streams *st) {
    uint64_t nsize = st->table_size ? st->table_size * 2 : 1024;
    stream **nt = xcalloc(nsize, sizeof *nt);
    for (uint64_t i = 0; i < st->table_size; i++) {
        stream *s = st->table[i];
        while (s) {
            stream *next = s->hnext;
            uint64_t b = s->path_hash & (nsize - 1);
            s->hnext = nt[b];
            nt[b] = s;
            s = next;
        }
    }
    free(st->table);
    st->table = nt;
    st->table_size = nsize;
}

stream *stream_lookup(streams *st, const char *path, size_t len) {
    uint64_t h = hash_keyed(path, len);
    for (stream *s = st->table[h & (st->table_size - 1)]; s; s = s->hnext)
        if (s->path_hash == h && strncmp(s->path, path, len) == 0 && s->path[len] == 0) return s;
    return NULL;
}

uint64_t streams_count(streams *st) {
    pthread_mutex_lock(&st->lock);
    uint64_t n = st->nstreams;
    pthread_mutex_unlock(&st->lock);
    return n;
}

stream *stream_new(streams *st, const char *path, size_t len, uint64_t id) {
    /* A snapshot walks the buckets between holds of the lock: growing would
     * move streams it has not reached behind it. */
    if (st->nstreams + 1 > st->table_size && !st->snap_active) table_grow(st);
    stream *s = xcalloc(1, sizeof *s);
    s->id = id;
    s->snap_epoch = st->snap_epoch;
    s->path = xstrndup(path, len);
    s->ttl = -1;
    s->refs = 1; /* the registry's */
    s->last_access = wall_ms();
    s->path_hash = hash_keyed(path, len);
    uint64_t b = s->path_hash & (st->table_size - 1);
    s->hnext = st->table[b];
    st->table[b] = s;
    st->nstreams++;
    return s;
}

static void table_remove(streams *st, stream *s) {
    uint64_t b = s->path_hash & (st->table_size - 1);
    for (stream **pp = &st->table[b]; *pp; pp = &(*pp)->hnext) {
        if (*pp == s) {
            *pp = s->hnext;
            st->nstreams--;
            return;
        }
    }
}

/* --- lifetime --- */

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

store_lsn stream_destroy(streams *st, stream *s) {
    stream_will_change(st, s);
    store_lsn lsn = store_delete(st->store, s->id);
    if (lsn == 0) {
        log_write(LOG_ERROR, "%s: delete not logged: %s", s->path, strerror(errno));
        return 0;
    }
    table_remove(st, s);
    s->dead = true;
    streams_wake(st, s);
    stream *src = s->src;
    if (src) {
        src->nforks--;
        if (src->deleted && src->nforks == 0 && !src->dead) {
            store_lsn l2 = stream_destroy(st, src);
            if (l2 > lsn) lsn = l2;
        }
    }
    stream_unref(s);
    return lsn;
}

store_lsn stream_delete(streams *st, stream *s) {
    if (s->nforks == 0) return stream_destroy(st, s);
    stream_will_change(st, s);
    s->deleted = true;
    buf meta;
    buf_init(&meta);
    stream_meta_encode(s, &meta);
    store_lsn lsn = store_set_meta(st->store, s->id, meta.data, meta.len);
    buf_free(&meta);
    if (lsn == 0) {
        s->deleted = false;
        return 0;
    }
    streams_wake(st, s);
    return lsn;
}

void stream_discard(streams *st, stream *s) {
    table_remove(st, s);
    s->dead = true;
    if (s->src) s->src->nforks--;
    stream_unref(s);
}

store_lsn stream_log_create(streams *st, stream *s, const uint8_t *data, size_t len) {
    buf meta;
    buf_init(&meta);
    stream_meta_encode(s, &meta);
    store_lsn lsn = store_create(st->store, s->id, (const uint8_t *)s->path, strlen(s->path),
                                 meta.data, meta.len, data, len);
    buf_free(&meta);
    if (lsn == 0) {
        int err = errno;
        stream_discard(st, s);
        errno = err;
        return 0;
    }
    stream_watch_expiry(st, s);
    return lsn;
}

stream *stream_lookup_live(streams *st, const char *path, size_t len, int64_t now_ms) {
    stream *s = stream_lookup(st, path, len);
    if (s && !s->deleted && stream_expired(s, now_ms)) {
        log_write(LOG_INFO, "%s: expired", s->path);
        stream_delete(st, s);
        s = stream_lookup(st, path, len);
    }
    return s;
}

/* --- data --- */

bool stream_pread(streams *st, stream *s, uint64_t off, size_t len, uint8_t *dst) {
    while (len > 0) {
        if (off < s->fork_off) {
            if (!s->src) return false; /* source lost (see snapshot_recovered) */
            size_t n = off + len <= s->fork_off ? len : (size_t)(s->fork_off - off);
            if (!stream_pread(st, s->src, off, n, dst)) return false;
            off += n;
            dst += n;
            len -= n;
            continue;
        }
        return store_read(st->store, s->id, off - s->fork_off, dst, len) == 0;
    }
    return true;
}

bool stream_at_boundary(streams *st, stream *s, uint64_t pos) {
    if (!s->json || pos == 0 || (!s->src && pos == s->fork_off)) return true;
    uint8_t prev;
    return stream_pread(st, s, pos - 1, 1, &prev) && prev == '\n';
}

/* --- the object --- */

streams *streams_open(const streams_config *cfg, char *err, size_t errlen) {
    streams *st = xcalloc(1, sizeof *st);
    /* Adaptive: critical sections are a few microseconds, and on these
     * machines putting a thread to sleep and waking it costs more than
     * spinning briefly. */
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
    pthread_mutex_init(&st->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    pthread_mutex_init(&st->sweep_mu, NULL);
    pthread_cond_init(&st->sweep_cv, NULL);
    st->limits = cfg->limits;
    buf_init(&st->snap_meta);
    buf_init(&st->append_meta);
    table_grow(st);
    store_options opt = {
        .dir = cfg->dir,
        .durability = cfg->durability,
        .checkpoint_bytes = cfg->checkpoint_bytes,
        .ctx = st,
        .on_durable = commit_on_durable,
        .on_failure = commit_on_failure,
        .on_recover = snapshot_on_recover,
        .snapshot = snapshot_take,
    };
    pthread_mutex_lock(&st->lock);
    st->store = store_open(&opt, err, errlen);
    if (st->store) snapshot_recovered(st);
    pthread_mutex_unlock(&st->lock);
    if (!st->store) {
        streams_close(st);
        return NULL;
    }
    sweep_start(st);
    return st;
}

void streams_detach(streams *st) {
    pthread_mutex_lock(&st->lock);
    st->detached = true;
    pthread_mutex_unlock(&st->lock);
}

bool streams_waiting_for_space(streams *st) { return store_waiting_for_room(st->store) != 0; }

void streams_close(streams *st) {
    sweep_stop(st);
    if (st->store) store_close(st->store);
    st->store = NULL;
    pthread_mutex_lock(&st->lock);
    commit_forget(st);
    sweep_forget(st);
    for (uint64_t i = 0; i < st->table_size; i++) {
        stream *s = st->table[i];
        while (s) {
            stream *next = s->hnext;
            while (s->waiters) waiter_unlink(s->waiters);
            stream_unref(s);
            s = next;
        }
    }
    free(st->table);
    free(st->recov);
    buf_free(&st->snap_meta);
    buf_free(&st->append_meta);
    pthread_mutex_unlock(&st->lock);
    pthread_mutex_destroy(&st->lock);
    pthread_mutex_destroy(&st->sweep_mu);
    pthread_cond_destroy(&st->sweep_cv);
    free(st);
}
