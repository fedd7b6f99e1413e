/* commit.c — durability bookkeeping and live-reader wake-ups.
 *
 * Every logged mutation is queued with the LSN that makes it durable; when
 * the store reports an LSN durable (on its flusher thread), the mutations up
 * to it become visible to readers, their held answers are released and the
 * live readers of the streams they changed are woken.
 *
 * Wake-ups reach each loop as one batch: the waiters woken and the held
 * answers released by a whole durable batch (or one other change) are
 * staged per loop under the lock, then posted once per loop, where they run
 * under one acquisition of the lock. An append read by a thousand
 * subscribers, or a group commit of a hundred appends, costs each loop one
 * post and one lock round, not one per waiter or per answer.
 */
#include <stdio.h>
#include <string.h>

#include "../util/log.h"
#include "../util/mem.h"
#include "stream_int.h"

struct wake_batch {
    streams *st;
    waiter *waiters;
    http_conn **conns; /* held answers to release */
    size_t nconns, cap;
};

static pending pending_pop(streams *st) {
    pending p = st->pend[st->pend_head];
    st->pend_head = (st->pend_head + 1) % st->pend_cap;
    st->pend_len--;
    return p;
}

void stream_commit(streams *st, stream *s, store_lsn lsn, http_conn *c) {
    if (st->pend_len == st->pend_cap) {
        size_t ncap = st->pend_cap ? st->pend_cap * 2 : 256;
        pending *np = xmalloc(ncap * sizeof *np);
        for (size_t i = 0; i < st->pend_len; i++)
            np[i] = st->pend[(st->pend_head + i) % st->pend_cap];
        free(st->pend);
        st->pend = np;
        st->pend_head = 0;
        st->pend_cap = ncap;
    }
    pending *p = &st->pend[(st->pend_head + st->pend_len) % st->pend_cap];
    st->pend_len++;
    if (lsn > s->last_lsn) s->last_lsn = lsn;
    *p = (pending){.lsn = lsn, .s = s, .tail = s->tail, .closed = s->closed, .conn = c};
    stream_ref(s);
    if (c) {
        http_conn_ref(c);
        http_conn_hold(c);
    }
}

void commit_forget(streams *st) {
    while (st->pend_len > 0) {
        pending p = pending_pop(st);
        if (p.conn) http_conn_unref(p.conn);
        stream_unref(p.s);
    }
    free(st->pend);
    st->pend = NULL;
    st->pend_cap = 0;
}

/* --- wake batches --- */

static void release_conn(http_conn *c) {
    if (!http_conn_closed(c)) http_conn_release(c);
    http_conn_unref(c);
}

static void wake_run(void *arg) {
    wake_batch *b = arg;
    if (b->waiters) {
        pthread_mutex_lock(&b->st->lock);
        for (waiter *w = b->waiters, *next; w; w = next) {
            next = w->next;
            w->wake(w);
        }
        pthread_mutex_unlock(&b->st->lock);
    }
    for (size_t i = 0; i < b->nconns; i++) release_conn(b->conns[i]);
    free(b->conns);
    free(b);
}

static void wake_post(streams *st) {
    for (int i = 0; i < st->nstaged; i++) loop_post(st->staged_loop[i], wake_run, st->staged[i]);
    st->nstaged = 0;
}

static wake_batch *batch_for(streams *st, loop *l) {
    for (int i = 0; i < st->nstaged; i++)
        if (st->staged_loop[i] == l) return st->staged[i];
    if (st->nstaged == MAX_LOOPS) wake_post(st);
    wake_batch *b = xcalloc(1, sizeof *b);
    b->st = st;
    st->staged_loop[st->nstaged] = l;
    st->staged[st->nstaged++] = b;
    return b;
}

static void wake_stage(streams *st, stream *s) {
    while (s->waiters) {
        waiter *w = s->waiters;
        waiter_unlink(w);
        wake_batch *b = batch_for(st, http_conn_loop(w->conn));
        w->next = b->waiters;
        b->waiters = w;
    }
}

static void wake_stage_release(streams *st, http_conn *c) {
    wake_batch *b = batch_for(st, http_conn_loop(c));
    if (b->nconns == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->conns = xrealloc(b->conns, b->cap * sizeof *b->conns);
    }
    b->conns[b->nconns++] = c;
}

void streams_wake(streams *st, stream *s) {
    /* Shutting down: waiters stay linked so their connection's abort
     * (posted as the server closes it) finds and frees them. */
    if (st->detached) return;
    wake_stage(st, s);
    wake_post(st);
}

/* --- the store's callbacks --- */

void commit_on_durable(void *ctx, store_lsn lsn) {
    streams *st = ctx;
    pthread_mutex_lock(&st->lock);
    while (st->pend_len > 0 && st->pend[st->pend_head].lsn <= lsn) {
        pending p = pending_pop(st);
        stream *s = p.s;
        bool grew = p.tail > s->visible, changed = grew;
        if (grew) s->visible = p.tail;
        if (p.closed && !s->closed_visible) {
            s->closed_visible = true;
            changed = true;
        }
        if (changed && !st->detached) wake_stage(st, s);
        for (int k = 0; grew && k < STREAMS_MAX_OBSERVERS; k++)
            if (st->observers[k].fn) st->observers[k].fn(st->observers[k].arg, s->path, s->visible);
        if (p.conn) {
            if (st->detached) http_conn_unref(p.conn);
            else wake_stage_release(st, p.conn);
        }
        stream_unref(s);
    }
    wake_post(st);
    pthread_mutex_unlock(&st->lock);
}

typedef struct failed_answer {
    http_conn *conn;
    char msg[160];
} failed_answer;

static void fail_conn(void *arg) {
    failed_answer *f = arg;
    http_conn *c = f->conn;
    if (!http_conn_closed(c)) {
        http_request *req = http_conn_request(c);
        log_write(LOG_ERROR, "%.*s %.*s: 507 %s", (int)req->head.method_len, req->head.method_str,
                  (int)req->target.path_len, req->target.path, f->msg);
        http_conn_fail(c, 507, f->msg);
    }
    http_conn_unref(c);
    free(f);
}

/* The store can no longer make anything durable: every held answer becomes
 * an error instead of waiting forever. */
void commit_on_failure(void *ctx, int err) {
    streams *st = ctx;
    log_write(LOG_ERROR, "storage failed (%s): pending writes are answered 507", strerror(err));
    pthread_mutex_lock(&st->lock);
    while (st->pend_len > 0) {
        pending p = pending_pop(st);
        if (p.conn && st->detached) {
            http_conn_unref(p.conn);
        } else if (p.conn) {
            failed_answer *f = xmalloc(sizeof *f);
            f->conn = p.conn;
            snprintf(f->msg, sizeof f->msg, "storage error: %s; the write was not stored",
                     strerror(err));
            loop_post(http_conn_loop(p.conn), fail_conn, f);
        }
        stream_unref(p.s);
    }
    pthread_mutex_unlock(&st->lock);
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
