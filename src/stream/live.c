/* live.c — live reads: long-poll and SSE.
 *
 * A live reader that is caught up parks a waiter on its stream; the wake-up
 * for a durable change (commit.c) is posted to the reader's loop, where the
 * waiter answers (long-poll) or sends the new events (SSE).
 *
 * Ownership: a reader is linked on its stream, or posted for wake-up, or
 * (SSE) waiting for the socket to drain — exactly one at a time. Only the
 * wake path (under the lock, from the flusher thread) moves it from linked
 * to posted; everything else runs on the connection's loop thread.
 */
#include <string.h>

#include "../util/base64.h"
#include "../util/log.h"
#include "../util/mem.h"
#include "protocol.h"
#include "stream_int.h"

#define SSE_EVENT_BYTES (1u << 20)
#define SSE_MAX_PENDING (1u << 20)

/* What long-poll and SSE readers share: the waiter, their own reference to
 * the stream (kept across wake-ups, while the waiter's comes and goes) and
 * a deadline. First in each reader, so a reader is its live. */
typedef struct live live;
struct live {
    waiter w;
    stream *s;
    loop_timer timer;
    bool draining;              /* SSE: waiting for the socket to drain */
    void (*destroy)(live *r);   /* release and free the whole reader */
    live_end end;               /* told when the reader ends, if it waited */
};

static void live_init(live *r, streams *st, http_conn *c, stream *s, void (*wake)(waiter *),
                      loop_fn on_timer, void (*destroy)(live *)) {
    r->destroy = destroy;
    r->w.st = st;
    r->w.conn = c;
    r->w.wake = wake;
    http_conn_ref(c);
    r->s = s;
    stream_ref(s);
    loop_timer_init(&r->timer, on_timer, r);
}

/* The connection closed first: a reader that is linked or waiting for the
 * socket goes now; one whose wake-up is posted goes when that runs (it
 * finds the connection closed). */
static void live_abort(void *arg) {
    live *r = arg;
    streams *st = r->w.st;
    pthread_mutex_lock(&st->lock);
    if (r->w.linked || r->draining) r->destroy(r);
    else loop_timer_cancel(http_conn_loop(r->w.conn), &r->timer);
    pthread_mutex_unlock(&st->lock);
}

/* Park the connection with the deadline armed. */
static void live_park(live *r, unsigned timeout_ms, const live_end *end) {
    if (end) r->end = *end;
    loop_timer_set(http_conn_loop(r->w.conn), &r->timer, timeout_ms);
    http_conn_park(r->w.conn, live_abort, r);
}

/* Drop everything the reader holds; the caller frees its memory. */
static void live_release(live *r) {
    if (r->end.fn) r->end.fn(r->end.arg);
    loop_timer_cancel(http_conn_loop(r->w.conn), &r->timer);
    http_conn_unpark(r->w.conn, r);
    waiter_unlink(&r->w);
    stream_unref(r->s);
    http_conn_unref(r->w.conn);
}

/* --- long-poll --- */

typedef struct lp_wait {
    live r;
    uint64_t start;
    buf cursor;
} lp_wait;

static void lp_free(live *r) {
    lp_wait *lp = (lp_wait *)r;
    live_release(r);
    buf_free(&lp->cursor);
    free(lp);
}

/* Answer if there is something to say; otherwise keep waiting. */
static bool lp_answer(lp_wait *lp) {
    streams *st = lp->r.w.st;
    http_conn *c = lp->r.w.conn;
    stream *s = lp->r.s;
    if ((s->dead || s->deleted) && !s->retired) {
        respond_error(st, c, s->dead ? 404 : 410, s->path, "stream was deleted");
        return true;
    }
    if (lp->start < s->visible) {
        read_respond_data(st, c, s, lp->start, true, &lp->cursor);
        return true;
    }
    if (s->closed_visible || (s->retired && s->visible == s->tail)) {
        read_respond_no_data(st, c, s, &lp->cursor);
        return true;
    }
    return false;
}

static void lp_wake(waiter *w) {
    lp_wait *lp = (lp_wait *)w;
    if (http_conn_closed(w->conn) || lp_answer(lp)) {
        lp_free(&lp->r);
    } else {
        waiter_link(w, lp->r.s);
        /* The deadline may have passed while the wake-up was in flight. */
        if (!loop_timer_armed(&lp->r.timer))
            loop_timer_set(http_conn_loop(w->conn), &lp->r.timer, 0);
    }
}

static void lp_timeout(void *arg) {
    lp_wait *lp = arg;
    streams *st = lp->r.w.st;
    pthread_mutex_lock(&st->lock);
    if (lp->r.w.linked) {
        read_respond_no_data(st, lp->r.w.conn, lp->r.s, &lp->cursor);
        lp_free(&lp->r);
    }
    /* Not linked: a wake-up is already posted and will answer. */
    pthread_mutex_unlock(&st->lock);
}

bool live_long_poll(streams *st, http_conn *c, stream *s, uint64_t start, const buf *cursor,
                    const live_end *end) {
    if (start < s->visible) {
        read_respond_data(st, c, s, start, true, cursor);
        return false;
    }
    if (s->closed_visible) {
        read_respond_no_data(st, c, s, cursor);
        return false;
    }
    lp_wait *lp = xcalloc(1, sizeof *lp);
    live_init(&lp->r, st, c, s, lp_wake, lp_timeout, lp_free);
    lp->start = start;
    buf_init(&lp->cursor);
    buf_append(&lp->cursor, cursor->data, cursor->len);
    waiter_link(&lp->r.w, s);
    live_park(&lp->r, st->limits.long_poll_timeout_ms, end);
    return true;
}

/* --- SSE --- */

typedef struct sse_reader {
    live r;
    uint64_t pos;
    uint64_t cursor;
    bool ending;   /* max duration reached: end at the next chance */
} sse_reader;

static void sse_free(live *r) {
    live_release(r);
    free(r);
}

/* One data event for raw->data. SSE treats CR, LF and CRLF alike as line
 * ends, so every one of them starts a new "data:" line; a client joins the
 * lines with LF. JSON messages never contain raw line ends. */
static void sse_data_event(const stream *s, const buf *raw, buf *ev) {
    buf_append_str(ev, "event: data\n");
    if (s->json) {
        buf_append_str(ev, "data:[");
        size_t i = 0;
        while (i < raw->len) {
            size_t j = i;
            while (j < raw->len && raw->data[j] != '\n') j++;
            if (j == raw->len || j == i) break; /* not whole messages: start was checked */
            bool last = j + 1 == raw->len;
            if (i > 0) buf_append_str(ev, "data:");
            if (last) {
                buf_append(ev, raw->data + i, j - i - 1); /* drop the ',' */
                buf_append_str(ev, "]\n");
            } else {
                buf_append(ev, raw->data + i, j - i + 1);
            }
            i = j + 1;
        }
    } else if (s->text) {
        size_t i = 0;
        for (;;) {
            size_t j = i;
            while (j < raw->len && raw->data[j] != '\n' && raw->data[j] != '\r') j++;
            buf_append_str(ev, "data:");
            buf_append(ev, raw->data + i, j - i);
            buf_append_byte(ev, '\n');
            if (j >= raw->len) break;
            if (raw->data[j] == '\r' && j + 1 < raw->len && raw->data[j + 1] == '\n') j++;
            i = j + 1;
        }
    } else {
        buf_append_str(ev, "data:");
        base64_encode(raw->data, raw->len, ev);
        buf_append_byte(ev, '\n');
    }
    buf_append_byte(ev, '\n');
}

/* The longest control event sse_control_event writes is 132 bytes. */
#define SSE_CONTROL_MAX 160

static char *put(char *p, const char *s) {
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

/* Built on the stack, one per subscriber and event: a heap buffer and
 * printf for each were a tenth of the fan-out's CPU time in user space. */
static size_t sse_control_event(const sse_reader *r, const stream *s, char out[SSE_CONTROL_MAX]) {
    char *p = put(out, "event: control\ndata:{\"streamNextOffset\":\"");
    offset_format(r->pos, p);
    p = put(p + OFFSET_LEN, "\"");
    bool at_tail = r->pos == s->visible;
    if (at_tail && s->closed_visible) {
        p = put(p, ",\"streamClosed\":true");
    } else {
        p = put(p, ",\"streamCursor\":\"");
        p += u64_format(p, r->cursor);
        p = put(p, "\"");
    }
    if (at_tail) p = put(p, ",\"upToDate\":true");
    p = put(p, "}\n\n");
    return (size_t)(p - out);
}

/* The data event for [start, end) of a stream, encoded once and shared by
 * every subscriber that needs the same range (all of those at the tail, in
 * the common case): fan-out costs a copy, not a read and an encode each. */
struct sse_cache {
    uint64_t start, end;
    buf ev;
};

void sse_cache_free(struct sse_cache *sc) {
    if (!sc) return;
    buf_free(&sc->ev);
    free(sc);
}

static const buf *sse_event_for(streams *st, stream *s, uint64_t start, uint64_t end, buf *raw) {
    struct sse_cache *sc = s->sse_cache;
    if (sc && sc->start == start && sc->end == end) return &sc->ev;
    buf_reserve(raw, (size_t)(end - start));
    if (!stream_pread(st, s, start, (size_t)(end - start), raw->data)) return NULL;
    raw->len = (size_t)(end - start);
    if (!sc) {
        sc = s->sse_cache = xcalloc(1, sizeof *sc);
        buf_init(&sc->ev);
    }
    sc->start = start;
    sc->end = end;
    buf_reset(&sc->ev);
    sse_data_event(s, raw, &sc->ev);
    return &sc->ev;
}

static void sse_on_drain(void *arg);

/* Send what is new, then wait. Returns false once finished. */
static bool sse_pump(sse_reader *r, bool first) {
    streams *st = r->r.w.st;
    http_conn *c = r->r.w.conn;
    stream *s = r->r.s;
    if ((s->dead || s->deleted) && !s->retired) {
        http_stream_end(c);
        return false;
    }
    bool sent = false;
    char ctl[SSE_CONTROL_MAX];
    while (r->pos < s->visible) {
        if (http_conn_pending(c) > SSE_MAX_PENDING) {
            r->r.draining = true;
            http_conn_on_drain(c, sse_on_drain, r);
            return true;
        }
        uint64_t end = read_end(st, s, r->pos, SSE_EVENT_BYTES);
        const buf *data = sse_event_for(st, s, r->pos, end, http_conn_scratch(c));
        if (!data) {
            log_write(LOG_ERROR, "%s: SSE read failed", s->path);
            http_stream_end(c);
            return false;
        }
        r->pos = end;
        uint64_t cursor = cursor_next(NULL, 0, wall_ms());
        if (cursor > r->cursor) r->cursor = cursor;
        struct iovec iov[2] = {{(void *)data->data, data->len},
                               {ctl, sse_control_event(r, s, ctl)}};
        http_stream_write(c, iov, 2);
        sent = true;
    }
    if (first && !sent) {
        struct iovec iov = {ctl, sse_control_event(r, s, ctl)};
        http_stream_write(c, &iov, 1);
    }
    if (s->closed_visible || r->ending || (s->retired && s->visible == s->tail)) {
        http_stream_end(c);
        return false;
    }
    waiter_link(&r->r.w, s);
    return true;
}

static void sse_on_drain(void *arg) {
    sse_reader *r = arg;
    streams *st = r->r.w.st;
    pthread_mutex_lock(&st->lock);
    r->r.draining = false;
    if (!sse_pump(r, false)) sse_free(&r->r);
    pthread_mutex_unlock(&st->lock);
}

static void sse_wake(waiter *w) {
    sse_reader *r = (sse_reader *)w;
    if (http_conn_closed(w->conn) || !sse_pump(r, false)) sse_free(&r->r);
}

static void sse_timeout(void *arg) {
    sse_reader *r = arg;
    streams *st = r->r.w.st;
    pthread_mutex_lock(&st->lock);
    r->ending = true;
    if (r->r.w.linked) {
        http_stream_end(r->r.w.conn);
        sse_free(&r->r);
    }
    pthread_mutex_unlock(&st->lock);
}

bool live_sse(streams *st, http_conn *c, stream *s, uint64_t start, const buf *cursor,
              const live_end *end) {
    respond_begin(st, c, 200);
    http_respond_header(c, "Content-Type", "text/event-stream");
    http_respond_header(c, "Cache-Control", "no-cache");
    if (!s->text) http_respond_header(c, "stream-sse-data-encoding", "base64");
    http_stream_begin(c, 200);
    sse_reader *r = xcalloc(1, sizeof *r);
    live_init(&r->r, st, c, s, sse_wake, sse_timeout, sse_free);
    r->pos = start;
    r->cursor = cursor_next((const char *)cursor->data, cursor->len, wall_ms());
    if (!sse_pump(r, true)) {
        sse_free(&r->r);
        return false;
    }
    live_park(&r->r, st->limits.sse_max_duration_ms, end);
    return true;
}
