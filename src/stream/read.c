/* read.c — the read side of the protocol: catch-up reads, long-poll and SSE.
 *
 * Catch-up responses are byte ranges of the data files (sendfile); a JSON
 * stream's range is wrapped in "[" ... "]" (see util/json.h for why the
 * stored form allows that). A live reader that is caught up parks a waiter on
 * the stream; stream_on_durable's wake-up is posted to the reader's loop,
 * where the waiter answers (long-poll) or sends the new events (SSE).
 *
 * Waiter ownership: a waiter is linked on its stream, or posted for wake-up,
 * or waiting for the socket to drain — exactly one at a time. Only the wake
 * path (under streams_lock, from the flusher thread) moves it from linked to
 * posted; everything else runs on the connection's loop thread.
 */
#include <stdio.h>
#include <string.h>

#include "../util/base64.h"
#include "../util/log.h"
#include "../util/mem.h"
#include "protocol.h"
#include "stream.h"

#define SSE_EVENT_BYTES (1u << 20)
#define SSE_MAX_PENDING (1u << 20)

static const char cache_public[] = "public, max-age=60, stale-while-revalidate=300";

/* End of a read starting at `start`: at most `limit` bytes, never past the
 * visible tail, and for JSON streams on a message boundary. */
static uint64_t read_end(stream *s, uint64_t start, uint64_t limit) {
    uint64_t end = s->visible - start > limit ? start + limit : s->visible;
    if (!s->json || end == s->visible) return end;
    uint8_t win[4096];
    for (uint64_t hi = end; hi > start;) {
        size_t n = hi - start > sizeof win ? sizeof win : (size_t)(hi - start);
        if (!stream_pread(s, hi - n, n, win)) return end;
        for (size_t i = n; i > 0; i--)
            if (win[i - 1] == '\n') return hi - n + i;
        hi -= n;
    }
    /* One message larger than the limit: send it whole. */
    for (uint64_t lo = end; lo < s->visible;) {
        size_t n = s->visible - lo > sizeof win ? sizeof win : (size_t)(s->visible - lo);
        if (!stream_pread(s, lo, n, win)) return s->visible;
        for (size_t i = 0; i < n; i++)
            if (win[i] == '\n') return lo + i + 1;
        lo += n;
    }
    return s->visible;
}

static void offset_header(http_conn *c, uint64_t pos) {
    char off[OFFSET_LEN + 1];
    offset_format(pos, off);
    http_respond_header(c, "Stream-Next-Offset", off);
}

static void cursor_header(http_conn *c, const buf *client_cursor) {
    uint64_t cur = cursor_next((const char *)client_cursor->data, client_cursor->len, wall_ms());
    http_respond_header_u64(c, "Stream-Cursor", cur);
}

/* Below this many bytes a response body is copied instead of sendfile'd:
 * the head and the data then leave in one writev, where sendfile would cost
 * a second system call and a second TCP segment for a few hundred bytes
 * (the common long-poll answer). */
#define COPY_MAX 32768

static bool respond_range(http_conn *c, stream *s, uint64_t a, uint64_t b) {
    if (b - a > COPY_MAX) return stream_respond_range(c, s, a, b);
    uint8_t tmp[COPY_MAX];
    if (!stream_pread(s, a, (size_t)(b - a), tmp)) return false;
    http_respond_body(c, tmp, (size_t)(b - a));
    return true;
}

/* 200 with the data from `start` (catch-up and long-poll). */
static void respond_data(http_conn *c, http_request *req, stream *s, uint64_t start, bool live,
                         const buf *cursor) {
    uint64_t end = read_end(s, start, streams_limits.read_chunk);
    bool up_to_date = end == s->visible;
    bool closed = up_to_date && s->closed_visible;
    char etag[96];
    snprintf(etag, sizeof etag, "\"%llx:%llx:%llx%s\"", (unsigned long long)s->id,
             (unsigned long long)start, (unsigned long long)end, closed ? ":c" : "");
    size_t inm_len;
    const char *inm = http_head_get(&req->head, "if-none-match", &inm_len);
    bool not_modified = inm && inm_len == strlen(etag) && memcmp(inm, etag, inm_len) == 0;
    respond_begin(c, not_modified ? 304 : 200);
    http_respond_header(c, "Content-Type", s->content_type);
    offset_header(c, end);
    if (up_to_date) http_respond_header(c, "Stream-Up-To-Date", "true");
    if (closed) http_respond_header(c, "Stream-Closed", "true");
    else if (live || up_to_date) cursor_header(c, cursor);
    http_respond_header(c, "ETag", etag);
    http_respond_header(c, "Cache-Control", cache_public);
    if (!not_modified) {
        bool ok = true;
        if (s->json) {
            http_respond_body(c, "[", 1);
            if (end > start) ok = respond_range(c, s, start, end - 2);
            http_respond_body(c, "]", 1);
        } else {
            ok = respond_range(c, s, start, end);
        }
        if (!ok) {
            respond_error(c, 500, s->path, "cannot read stream data");
            return;
        }
    }
    http_respond_end(c);
}

/* offset=now without live: an empty, uncacheable answer at the tail. */
static void respond_now(http_conn *c, stream *s) {
    respond_begin(c, 200);
    http_respond_header(c, "Content-Type", s->content_type);
    offset_header(c, s->visible);
    http_respond_header(c, "Stream-Up-To-Date", "true");
    if (s->closed_visible) http_respond_header(c, "Stream-Closed", "true");
    http_respond_header(c, "Cache-Control", "no-store");
    if (s->json) http_respond_body(c, "[]", 2);
    http_respond_end(c);
}

/* Long-poll finished with no data: 204 at the tail. */
static void respond_no_data(http_conn *c, stream *s, const buf *cursor) {
    respond_begin(c, 204);
    offset_header(c, s->visible);
    http_respond_header(c, "Stream-Up-To-Date", "true");
    if (s->closed_visible) http_respond_header(c, "Stream-Closed", "true");
    else cursor_header(c, cursor);
    http_respond_header(c, "Cache-Control", "no-store");
    http_respond_end(c);
}

/* --- long-poll --- */

typedef struct lp_wait {
    waiter w;
    stream *s; /* own ref, kept across wake-ups */
    uint64_t start;
    buf cursor;
    loop_timer timer;
} lp_wait;

/* streams_lock held. */
static void lp_free(lp_wait *lp) {
    loop_timer_cancel(http_conn_loop(lp->w.conn), &lp->timer);
    http_conn_unpark(lp->w.conn, lp);
    waiter_unlink(&lp->w);
    stream_unref(lp->s);
    http_conn_unref(lp->w.conn);
    buf_free(&lp->cursor);
    free(lp);
}

/* Answer if there is something to say; otherwise keep waiting. Lock held. */
static bool lp_answer(lp_wait *lp) {
    http_conn *c = lp->w.conn;
    stream *s = lp->s;
    if (s->dead || s->deleted) {
        respond_error(c, s->dead ? 404 : 410, s->path, "stream was deleted");
        return true;
    }
    if (lp->start < s->visible) {
        respond_data(c, http_conn_request(c), s, lp->start, true, &lp->cursor);
        return true;
    }
    if (s->closed_visible) {
        respond_no_data(c, s, &lp->cursor);
        return true;
    }
    return false;
}

static void lp_wake(waiter *w) {
    lp_wait *lp = (lp_wait *)w;
    if (http_conn_closed(w->conn) || lp_answer(lp)) {
        lp_free(lp);
    } else {
        waiter_link(&lp->w, lp->s);
        /* The deadline may have passed while the wake-up was in flight. */
        if (!loop_timer_armed(&lp->timer)) loop_timer_set(http_conn_loop(w->conn), &lp->timer, 0);
    }
}

static void lp_timeout(void *arg) {
    lp_wait *lp = arg;
    pthread_mutex_lock(&streams_lock);
    if (lp->w.linked) {
        respond_no_data(lp->w.conn, lp->s, &lp->cursor);
        lp_free(lp);
    }
    /* Not linked: a wake-up is already posted and will answer. */
    pthread_mutex_unlock(&streams_lock);
}

static void lp_abort(void *arg) {
    lp_wait *lp = arg;
    pthread_mutex_lock(&streams_lock);
    if (lp->w.linked) lp_free(lp);
    else loop_timer_cancel(http_conn_loop(lp->w.conn), &lp->timer);
    pthread_mutex_unlock(&streams_lock);
}

static void lp_park(http_conn *c, stream *s, uint64_t start, const buf *cursor) {
    lp_wait *lp = xcalloc(1, sizeof *lp);
    lp->w.conn = c;
    lp->w.wake = lp_wake;
    http_conn_ref(c);
    lp->s = s;
    stream_ref(s);
    lp->start = start;
    buf_init(&lp->cursor);
    buf_append(&lp->cursor, cursor->data, cursor->len);
    waiter_link(&lp->w, s);
    loop_timer_init(&lp->timer, lp_timeout, lp);
    loop_timer_set(http_conn_loop(c), &lp->timer, streams_limits.long_poll_timeout_ms);
    http_conn_park(c, lp_abort, lp);
}

/* --- SSE --- */

typedef struct sse_reader {
    waiter w;
    stream *s;
    uint64_t pos;
    uint64_t cursor;
    bool draining; /* waiting for the socket to drain */
    bool ending;   /* max duration reached: end at the next chance */
    bool done;
    loop_timer timer;
} sse_reader;

static void sse_free(sse_reader *r) {
    loop_timer_cancel(http_conn_loop(r->w.conn), &r->timer);
    http_conn_unpark(r->w.conn, r);
    waiter_unlink(&r->w);
    stream_unref(r->s);
    http_conn_unref(r->w.conn);
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

static void sse_on_drain(void *arg);

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

static const buf *sse_event_for(stream *s, uint64_t start, uint64_t end, buf *raw) {
    struct sse_cache *sc = s->sse_cache;
    if (sc && sc->start == start && sc->end == end) return &sc->ev;
    buf_reserve(raw, (size_t)(end - start));
    if (!stream_pread(s, start, (size_t)(end - start), raw->data)) return NULL;
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

/* Send what is new, then wait. Lock held. Returns false once finished. */
static bool sse_pump(sse_reader *r, bool first) {
    http_conn *c = r->w.conn;
    stream *s = r->s;
    if (s->dead || s->deleted) {
        http_stream_end(c);
        return false;
    }
    bool sent = false;
    while (r->pos < s->visible) {
        if (http_conn_pending(c) > SSE_MAX_PENDING) {
            r->draining = true;
            http_conn_on_drain(c, sse_on_drain, r);
            return true;
        }
        uint64_t end = read_end(s, r->pos, SSE_EVENT_BYTES);
        const buf *data = sse_event_for(s, r->pos, end, http_conn_scratch(c));
        if (!data) {
            log_write(LOG_ERROR, "%s: SSE read failed", s->path);
            http_stream_end(c);
            return false;
        }
        r->pos = end;
        uint64_t cursor = cursor_next(NULL, 0, wall_ms());
        if (cursor > r->cursor) r->cursor = cursor;
        char ctl[SSE_CONTROL_MAX];
        struct iovec iov[2] = {{(void *)data->data, data->len},
                               {ctl, sse_control_event(r, s, ctl)}};
        http_stream_write(c, iov, 2);
        sent = true;
    }
    if (first && !sent) {
        char ctl[SSE_CONTROL_MAX];
        struct iovec iov = {ctl, sse_control_event(r, s, ctl)};
        http_stream_write(c, &iov, 1);
    }
    if (s->closed_visible || r->ending) {
        http_stream_end(c);
        return false;
    }
    waiter_link(&r->w, s);
    return true;
}

static void sse_on_drain(void *arg) {
    sse_reader *r = arg;
    pthread_mutex_lock(&streams_lock);
    r->draining = false;
    if (!sse_pump(r, false)) sse_free(r);
    pthread_mutex_unlock(&streams_lock);
}

static void sse_wake(waiter *w) {
    sse_reader *r = (sse_reader *)w;
    if (http_conn_closed(w->conn) || !sse_pump(r, false)) sse_free(r);
}

static void sse_timeout(void *arg) {
    sse_reader *r = arg;
    pthread_mutex_lock(&streams_lock);
    r->ending = true;
    if (r->w.linked) {
        http_stream_end(r->w.conn);
        sse_free(r);
    }
    pthread_mutex_unlock(&streams_lock);
}

static void sse_abort(void *arg) {
    sse_reader *r = arg;
    pthread_mutex_lock(&streams_lock);
    if (r->w.linked || r->draining) sse_free(r);
    else loop_timer_cancel(http_conn_loop(r->w.conn), &r->timer);
    pthread_mutex_unlock(&streams_lock);
}

static void sse_start(http_conn *c, stream *s, uint64_t start, const buf *cursor) {
    respond_begin(c, 200);
    http_respond_header(c, "Content-Type", "text/event-stream");
    http_respond_header(c, "Cache-Control", "no-cache");
    if (!s->text) http_respond_header(c, "stream-sse-data-encoding", "base64");
    http_stream_begin(c, 200);
    sse_reader *r = xcalloc(1, sizeof *r);
    r->w.conn = c;
    r->w.wake = sse_wake;
    http_conn_ref(c);
    r->s = s;
    stream_ref(s);
    r->pos = start;
    r->cursor = cursor_next((const char *)cursor->data, cursor->len, wall_ms());
    loop_timer_init(&r->timer, sse_timeout, r);
    if (!sse_pump(r, true)) {
        sse_free(r);
        return;
    }
    loop_timer_set(http_conn_loop(c), &r->timer, streams_limits.sse_max_duration_ms);
    http_conn_park(c, sse_abort, r);
}

/* --- GET --- */

/* 1 with the decoded value if `name` occurs once, 0 if it does not occur,
 * -1 if it occurs more than once or does not decode (a NUL, say). */
static int query_param(const http_target *t, const char *name, buf *value) {
    if (!t->query) return 0;
    size_t n = strlen(name), count = 0;
    const char *q = t->query, *end = t->query + t->query_len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *e = amp ? amp : end;
        if ((size_t)(e - q) >= n && memcmp(q, name, n) == 0 && (q + n == e || q[n] == '=')) count++;
        q = e + 1;
    }
    if (count == 0) return 0;
    if (count > 1 || !http_query_get(t->query, t->query_len, name, value)) return -1;
    return 1;
}

void handle_get(http_conn *c, http_request *req, const char *path, size_t path_len) {
    const http_target *t = &req->target;
    buf off, live, cursor;
    buf_init(&off);
    buf_init(&live);
    buf_init(&cursor);
    int has_off = query_param(t, "offset", &off);
    int has_live = query_param(t, "live", &live);
    if (query_param(t, "cursor", &cursor) < 0) buf_reset(&cursor);
    enum { LIVE_NONE, LIVE_LP, LIVE_SSE } mode = LIVE_NONE;
    offset_kind kind = OFFSET_START;
    uint64_t pos = 0;
    const char *bad = NULL;
    if (has_off < 0) bad = "invalid offset: give it once, URL-encoded";
    else if (has_live < 0) bad = "invalid live parameter";
    else if (has_live) {
        if (live.len == 9 && memcmp(live.data, "long-poll", 9) == 0) mode = LIVE_LP;
        else if (live.len == 3 && memcmp(live.data, "sse", 3) == 0) mode = LIVE_SSE;
        else bad = "invalid live mode: expected long-poll or sse";
    }
    if (!bad && has_off > 0) {
        kind = offset_parse((const char *)off.data, off.len, &pos);
        if (kind == OFFSET_INVALID) bad = "invalid offset";
    } else if (!bad && mode != LIVE_NONE) {
        bad = "live reads need an offset";
    }
    if (bad) {
        respond_error(c, 400, path, bad);
        goto done;
    }
    pthread_mutex_lock(&streams_lock);
    int64_t now = wall_ms();
    stream *s = stream_for_client(c, path, path_len, now);
    if (s) {
        stream_touch(s, now);
        uint64_t start = kind == OFFSET_START ? 0 : kind == OFFSET_NOW ? s->visible : pos;
        if (start > s->visible) {
            respond_error(c, 400, path, "offset is beyond the end of the stream");
        } else if (!stream_at_boundary(s, start)) {
            respond_error(c, 400, path, "offset is not a message boundary of this JSON stream");
        } else if (mode == LIVE_NONE) {
            if (kind == OFFSET_NOW) respond_now(c, s);
            else respond_data(c, req, s, start, false, &cursor);
        } else if (mode == LIVE_LP) {
            if (start < s->visible) respond_data(c, req, s, start, true, &cursor);
            else if (s->closed_visible) respond_no_data(c, s, &cursor);
            else lp_park(c, s, start, &cursor);
        } else {
            sse_start(c, s, start, &cursor);
        }
    }
    pthread_mutex_unlock(&streams_lock);
done:
    buf_free(&off);
    buf_free(&live);
    buf_free(&cursor);
}
