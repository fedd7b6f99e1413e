/* sweep.c — expired streams nobody touches must still go (and free their
 * disk): a background thread visits the streams that can expire a slice at
 * a time, so the lock is never held for long however many there are. Only
 * those are visited: walking the whole table took every stream's cache
 * lines from the request path, for streams that never expire. Each entry
 * holds a reference; a stream that is gone is dropped when next visited. */
#include <time.h>

#include "../util/log.h"
#include "../util/mem.h"
#include "stream_int.h"

#define SWEEP_PERIOD_MS 100
#define SWEEP_SLICE 4096

void stream_watch_expiry(streams *st, stream *s) {
    if (s->ttl < 0 && !s->expires_at) return;
    if (st->nwatch == st->watch_cap) {
        st->watch_cap = st->watch_cap ? st->watch_cap * 2 : 64;
        st->watch = xrealloc(st->watch, st->watch_cap * sizeof *st->watch);
    }
    stream_ref(s);
    st->watch[st->nwatch++] = s;
}

static void sweep_slice(streams *st, size_t *cursor) {
    pthread_mutex_lock(&st->lock);
    int64_t now = wall_ms();
    for (size_t k = 0; k < SWEEP_SLICE && st->nwatch; k++) {
        if (*cursor >= st->nwatch) *cursor = 0;
        stream *s = st->watch[*cursor];
        if (!s->dead && !s->deleted && stream_expired(s, now)) {
            log_write(LOG_INFO, "%s: expired", s->path);
            stream_delete(st, s);
        }
        /* Soft-deleted streams go with their last fork, not by expiry. */
        if (s->dead || s->deleted) {
            st->watch[*cursor] = st->watch[--st->nwatch];
            stream_unref(s);
        } else {
            (*cursor)++;
        }
    }
    pthread_mutex_unlock(&st->lock);
}

static void *sweep_main(void *arg) {
    streams *st = arg;
    pthread_setname_np(pthread_self(), "weft-sweep");
    size_t cursor = 0;
    pthread_mutex_lock(&st->sweep_mu);
    while (!st->sweep_quit) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += SWEEP_PERIOD_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&st->sweep_cv, &st->sweep_mu, &ts);
        if (st->sweep_quit) break;
        pthread_mutex_unlock(&st->sweep_mu);
        sweep_slice(st, &cursor);
        pthread_mutex_lock(&st->sweep_mu);
    }
    pthread_mutex_unlock(&st->sweep_mu);
    return NULL;
}

void sweep_start(streams *st) {
    st->sweep_quit = false;
    st->sweeper_running = pthread_create(&st->sweeper, NULL, sweep_main, st) == 0;
    if (!st->sweeper_running) log_write(LOG_ERROR, "cannot start the expiry sweeper thread");
}

void sweep_stop(streams *st) {
    if (!st->sweeper_running) return;
    pthread_mutex_lock(&st->sweep_mu);
    st->sweep_quit = true;
    pthread_cond_signal(&st->sweep_cv);
    pthread_mutex_unlock(&st->sweep_mu);
    pthread_join(st->sweeper, NULL);
    st->sweeper_running = false;
}

void sweep_forget(streams *st) {
    for (size_t i = 0; i < st->nwatch; i++) stream_unref(st->watch[i]);
    free(st->watch);
    st->watch = NULL;
    st->nwatch = st->watch_cap = 0;
}
