/* snapshot.c — the registry as the store persists it: rebuilt from what
 * recovery reads back, and copied into each checkpoint's snapshot. */
#include <stdlib.h>
#include <string.h>

#include "../util/log.h"
#include "../util/mem.h"
#include "stream_int.h"

void snapshot_on_recover(void *ctx, uint64_t id, const uint8_t *name, size_t name_len,
                         const uint8_t *meta, size_t meta_len, uint64_t length) {
    streams *st = ctx;
    stream *s = stream_new(st, (const char *)name, name_len, id);
    uint64_t src_id = 0;
    if (!stream_meta_decode(s, meta, meta_len, &src_id))
        log_write(LOG_ERROR, "%s: unreadable metadata, stream kept with defaults", s->path);
    s->tail = s->visible = s->fork_off + length;
    s->closed_visible = s->closed;
    if (st->nrecov == st->recov_cap) {
        st->recov_cap = st->recov_cap ? st->recov_cap * 2 : 64;
        st->recov = xrealloc(st->recov, st->recov_cap * sizeof *st->recov);
    }
    st->recov[st->nrecov++] = (recovered){s, src_id};
}

static int by_id(const void *a, const void *b) {
    uint64_t x = (*(stream *const *)a)->id, y = (*(stream *const *)b)->id;
    return x < y ? -1 : x > y;
}

/* Forks reference their source by id in the metadata; resolve to pointers. */
static void link_forks(streams *st) {
    size_t n = st->nrecov;
    stream **ids = xmalloc((n ? n : 1) * sizeof *ids);
    for (size_t i = 0; i < n; i++) ids[i] = st->recov[i].s;
    qsort(ids, n, sizeof *ids, by_id);
    for (size_t i = 0; i < n; i++) {
        recovered *r = &st->recov[i];
        if (!r->src_id) continue;
        stream key = {.id = r->src_id}, *kp = &key;
        stream **hit = bsearch(&kp, ids, n, sizeof *ids, by_id);
        if (!hit) {
            log_write(LOG_ERROR, "%s: fork source #%llu missing", r->s->path,
                      (unsigned long long)r->src_id);
            continue;
        }
        r->s->src = *hit;
        stream_ref(*hit);
        (*hit)->nforks++;
    }
    free(ids);
}

void snapshot_recovered(streams *st) {
    link_forks(st);
    /* A crash between a fork's delete and its soft-deleted source's leaves
     * the source with no forks: finish the cascade now. */
    for (size_t i = 0; i < st->nrecov; i++) stream_ref(st->recov[i].s); /* cascades free others */
    for (size_t i = 0; i < st->nrecov; i++) {
        stream *s = st->recov[i].s;
        if (s->deleted && s->nforks == 0 && !s->dead) stream_destroy(st, s);
        else if (!s->dead && !s->deleted) stream_watch_expiry(st, s);
    }
    for (size_t i = 0; i < st->nrecov; i++) stream_unref(st->recov[i].s);
    free(st->recov);
    st->recov = NULL;
    st->nrecov = st->recov_cap = 0;
}

static void snapshot_add(streams *st, stream *s) {
    buf_reset(&st->snap_meta);
    stream_meta_encode(s, &st->snap_meta);
    store_snapshot_add(st->snap_active, s->id, (const uint8_t *)s->path, strlen(s->path),
                       st->snap_meta.data, st->snap_meta.len, s->tail - s->fork_off);
    s->snap_epoch = st->snap_epoch;
}

void stream_will_change(streams *st, stream *s) {
    if (st->snap_active && s->snap_epoch != st->snap_epoch) snapshot_add(st, s);
}

/* Buckets copied per hold of the lock: well under a millisecond. */
#define SNAPSHOT_SLICE 256

/* The snapshot is the registry as it was when store_snapshot_begin cut the
 * WAL. Copying 100,000 streams takes about 150 ms, too long to stop every
 * append for, so it goes a slice of buckets at a time, and a stream about
 * to change before its slice is reached is copied first, as it still is
 * (stream_will_change). The table does not grow meanwhile. */
void snapshot_take(void *ctx, store_snapshot *snap) {
    streams *st = ctx;
    pthread_mutex_lock(&st->lock);
    store_snapshot_begin(snap);
    st->snap_active = snap;
    st->snap_epoch++;
    uint64_t size = st->table_size;
    pthread_mutex_unlock(&st->lock);
    for (uint64_t first = 0; first < size; first += SNAPSHOT_SLICE) {
        pthread_mutex_lock(&st->lock);
        for (uint64_t i = first; i < first + SNAPSHOT_SLICE && i < size; i++)
            for (stream *s = st->table[i]; s; s = s->hnext) stream_will_change(st, s);
        pthread_mutex_unlock(&st->lock);
    }
    pthread_mutex_lock(&st->lock);
    st->snap_active = NULL;
    buf_free(&st->snap_meta);
    pthread_mutex_unlock(&st->lock);
}
