/* server.c — HTTP/1.1 connections on per-thread event loops (see server.h).
 *
 * Connection life: read a request (head, then body), hand it to the handler,
 * write the response from an output queue of memory and file segments
 * (writev / sendfile), then either read the next request (keep-alive,
 * pipelining) or close. While a request is being handled, the socket is not
 * read: pipelined requests wait in the kernel buffer, which is the natural
 * backpressure, and responses stay in order.
 *
 * Sockets are registered once, edge-triggered, for input, output and peer
 * shutdown: no epoll_ctl per request. An input edge that arrives while a
 * request is being handled is remembered (`readable`) and the socket is read
 * when the response is done; output waits for the next output edge.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../net/iobatch.h"
#include "../util/log.h"
#include "../util/mem.h"

enum seg_kind { SEG_MEM, SEG_FILE };

typedef struct out_seg {
    enum seg_kind kind;
    buf mem;       /* SEG_MEM: bytes, sent from `off` */
    size_t off;
    int fd;        /* SEG_FILE */
    uint64_t foff, flen;
    void (*release)(void *);
    void *rarg;
} out_seg;

typedef struct seg_queue {
    out_seg *v;
    size_t head, len, cap;
} seg_queue;

enum conn_state {
    ST_HEAD,      /* waiting for / reading a request head */
    ST_BODY,      /* reading a Content-Length body */
    ST_CHUNKED,   /* reading a chunked body */
    ST_HANDLING,  /* request handed to the handler; response pending or being written */
    ST_STREAMING, /* chunked event stream */
};

typedef struct worker worker;

/* READ_SLOT: one batched read; a typical request fits, more is read with
 * read(2). */
enum { REQ_SPARE_MAX = 64, READ_SLOT = 4096 };

/* I/O buffers of BUF_CACHE_CAP bytes (a whole read slot) recycled per
 * worker; see wbuf_take. */
enum { BUF_CACHE_MAX = 256, BUF_CACHE_CAP = READ_SLOT };

typedef struct flush_queue {
    struct http_conn **v;
    size_t len, cap;
} flush_queue;

struct http_conn {
    worker *w;
    int fd;
    atomic_int refs;
    bool closed;
    bool close_after;   /* close once the current response is written */
    bool peer_closed;   /* client half-closed; finish the response then close */
    bool held;
    bool resp_done;     /* the whole response is queued */
    bool stream_ended;
    bool stream_raw;    /* HTTP/1.0 event stream: no chunking, ends with close */
    bool processing;    /* inside process_input (guards re-entrance) */
    bool receiving;     /* the request timeout (not the idle one) is armed */
    bool readable;      /* input may be waiting in the socket (edge seen, not drained) */
    bool rdhup;         /* the peer's FIN was signalled: read on until read() says 0 */
    bool flush_queued;  /* on the worker's flush list */
    bool read_queued;   /* on the worker's read list */
    enum conn_state state;
    char peer[64];

    buf in;
    buf head_copy;      /* the parsed head's bytes, stable while handled */
    /* The request being read or handled; NULL between requests and once an
     * event stream has started, so waiting connections stay small (the
     * parsed head alone is 2 KiB). */
    http_request *req;
    http_chunked chunked;

    buf resp_head;
    int resp_status;
    seg_queue resp_body; /* staged body of the response being built */
    uint64_t resp_body_len;

    seg_queue out;
    size_t out_bytes;

    void (*on_abort)(void *);
    void *abort_arg;
    void (*on_drain)(void *);
    void *drain_arg;

    loop_timer timer;
    http_conn *prev, *next; /* worker's connection list */
};

struct worker {
    http_server *srv;
    loop *l;
    pthread_t thread;
    int listen_fd;
    http_conn *conns;
    /* Connections with output queued during this loop iteration, written
     * when it ends (see conn_flush_later). */
    flush_queue flush_answers, flush_streams;
    /* Writes of one flush go to the kernel together (NULL: writev each;
     * see iobatch.h). Made on the worker's own thread, its only user. */
    io_batch *batch;
    /* Connections to read at the end of this round of events, and where
     * a batched read of each lands (see read_queue_run). */
    http_conn *reads[IO_BATCH_MAX];
    int nreads;
    uint8_t (*read_slots)[READ_SLOT];
    http_request *spare[REQ_SPARE_MAX]; /* see request_recycle */
    int nspare;
    uint8_t *bufs[BUF_CACHE_MAX]; /* see wbuf_take */
    int nbufs;
    /* Sockets are read into this and only the bytes that arrived are kept
     * per connection: an idle or streaming connection then holds no read
     * buffer at all. */
    uint8_t scratch[65536];
    buf handler_scratch; /* see http_conn_scratch */
};

struct http_server {
    http_server_config cfg;
    worker *workers;
    int nworkers;
    atomic_uint nconns;
    atomic_uint nheld;
};

static void conn_close(http_conn *c);
static void conn_flush(http_conn *c);
static void conn_flush_later(http_conn *c);
static void process_input(http_conn *c);
static void conn_read(http_conn *c);
static void conn_io(void *arg, uint32_t ev);

const char *http_status_reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    default: return "Unknown";
    }
}

/* --- I/O buffers ---
 *
 * Every request is read into a buffer, has its body in another and its
 * answer sent from a third, each freed when done. With dozens of
 * connections answered at once, those mallocs and frees overflowed glibc's
 * per-thread cache into its bins, which cost more than parsing the
 * request. So a worker keeps the freed ones, all of one size, and hands
 * them out again. Loop thread only. */

/* Give the empty buffer b storage of BUF_CACHE_CAP bytes. */
static void wbuf_take(worker *w, buf *b) {
    b->data = w->nbufs > 0 ? w->bufs[--w->nbufs] : xmalloc(BUF_CACHE_CAP);
    b->len = 0;
    b->cap = BUF_CACHE_CAP;
}

/* Release b's storage: kept if it is of the cached size, else freed. */
static void wbuf_give(worker *w, buf *b) {
    if (b->cap == BUF_CACHE_CAP && w->nbufs < BUF_CACHE_MAX) {
        w->bufs[w->nbufs++] = b->data;
        buf_init(b);
    } else {
        buf_free(b);
    }
}

/* --- segment queues --- */

static out_seg *queue_push(seg_queue *q) {
    if (q->len == q->cap) {
        if (q->head > 0) {
            memmove(q->v, q->v + q->head, (q->len - q->head) * sizeof *q->v);
            q->len -= q->head;
            q->head = 0;
        }
        if (q->len == q->cap) {
            q->cap = q->cap ? q->cap * 2 : 8;
            q->v = xrealloc(q->v, q->cap * sizeof *q->v);
        }
    }
    out_seg *s = &q->v[q->len++];
    memset(s, 0, sizeof *s);
    return s;
}

static void seg_free(out_seg *s) {
    if (s->kind == SEG_MEM) buf_free(&s->mem);
    else if (s->release) s->release(s->rarg);
    s->release = NULL;
}

static void queue_clear(seg_queue *q) {
    for (size_t i = q->head; i < q->len; i++) seg_free(&q->v[i]);
    q->head = q->len = 0;
}

/* Append memory to the queue, merging into a trailing memory segment. */
static void queue_mem(worker *w, seg_queue *q, const void *p, size_t n) {
    if (n == 0) return;
    out_seg *last = q->len > q->head ? &q->v[q->len - 1] : NULL;
    if (!last || last->kind != SEG_MEM || last->mem.len > 65536) {
        last = queue_push(q);
        last->kind = SEG_MEM;
        if (n <= BUF_CACHE_CAP) wbuf_take(w, &last->mem);
        else buf_init(&last->mem);
    }
    buf_append(&last->mem, p, n);
}

/* --- connection plumbing --- */

static void request_free(http_conn *c) {
    if (!c->req) return;
    buf_free(&c->req->body);
    free(c->req);
    c->req = NULL;
}

/* Request structs (2 KiB: the parsed headers) are recycled per worker:
 * one per request through malloc costs more than parsing the request.
 * Loop thread only; the last unref of a connection, which may run on any
 * thread, frees instead (request_free). */
static void request_recycle(http_conn *c) {
    worker *w = c->w;
    if (c->req && w->nspare < REQ_SPARE_MAX) {
        wbuf_give(w, &c->req->body);
        w->spare[w->nspare++] = c->req;
        c->req = NULL;
    }
    request_free(c);
}

static http_request *request_new(worker *w) {
    http_request *r = w->nspare > 0 ? w->spare[--w->nspare] : xmalloc(sizeof *r);
    memset(r, 0, sizeof *r);
    return r;
}

void http_conn_ref(http_conn *c) { atomic_fetch_add(&c->refs, 1); }

void http_conn_unref(http_conn *c) {
    if (atomic_fetch_sub(&c->refs, 1) != 1) return;
    buf_free(&c->in);
    buf_free(&c->head_copy);
    request_free(c);
    buf_free(&c->resp_head);
    /* A handler may still have staged a body (or file) after the close. */
    queue_clear(&c->resp_body);
    queue_clear(&c->out);
    free(c->resp_body.v);
    free(c->out.v);
    free(c);
}

bool http_conn_closed(const http_conn *c) { return c->closed; }
loop *http_conn_loop(const http_conn *c) { return c->w->l; }
http_request *http_conn_request(http_conn *c) { return c->req; }
const char *http_conn_peer(const http_conn *c) { return c->peer; }
size_t http_conn_pending(const http_conn *c) { return c->out_bytes; }

buf *http_conn_scratch(http_conn *c) {
    buf *b = &c->w->handler_scratch;
    if (b->cap > 65536) buf_free(b); /* after a large body: don't keep it */
    buf_reset(b);
    return b;
}

void http_conn_on_drain(http_conn *c, void (*on_drain)(void *), void *arg) {
    c->on_drain = on_drain;
    c->drain_arg = arg;
}

static void conn_timeout(void *arg) {
    http_conn *c = arg;
    if (c->closed) return;
    if (c->state == ST_HEAD && c->in.len == 0 && c->out_bytes == 0) {
        log_write(LOG_DEBUG, "%s: idle keep-alive connection closed", c->peer);
    } else if (c->state == ST_HEAD || c->state == ST_BODY || c->state == ST_CHUNKED) {
        log_write(LOG_ERROR, "%s: request not received in time (408)", c->peer);
        /* Best effort: the client is slow, not necessarily gone. */
        const char *msg = "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\n"
                          "Content-Length: 16\r\nConnection: close\r\n\r\nrequest timeout\n";
        ssize_t wr = write(c->fd, msg, strlen(msg));
        (void)wr;
    } else {
        log_write(LOG_ERROR, "%s: client did not read the response in time", c->peer);
    }
    conn_close(c);
}

static void run_abort(void *arg) {
    http_conn *c = arg;
    void (*fn)(void *) = c->on_abort;
    c->on_abort = NULL;
    if (fn) fn(c->abort_arg);
    http_conn_unref(c);
}

static void run_input(void *arg) {
    http_conn *c = arg;
    bool reading = c->state == ST_HEAD || c->state == ST_BODY || c->state == ST_CHUNKED;
    if (!c->closed && reading) {
        if (c->readable) conn_read(c);
        else process_input(c);
    }
    http_conn_unref(c);
}

static void conn_close(http_conn *c) {
    if (c->closed) return;
    c->closed = true;
    worker *w = c->w;
    loop_timer_cancel(w->l, &c->timer);
    loop_del(w->l, c->fd);
    close(c->fd);
    if (c->held) {
        c->held = false;
        atomic_fetch_sub(&w->srv->nheld, 1);
    }
    if (c->on_abort) {
        /* Posted, not called: conn_close can happen inside a handler that
         * holds its own locks (a failed write while sending). */
        http_conn_ref(c);
        loop_post(w->l, run_abort, c);
    }
    queue_clear(&c->out);
    queue_clear(&c->resp_body);
    if (c->prev) c->prev->next = c->next;
    else w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    atomic_fetch_sub(&w->srv->nconns, 1);
    http_conn_unref(c);
}

/* The current request is finished: reset and look at pipelined input. */
static void request_done(http_conn *c) {
    if (c->close_after || (c->peer_closed && c->in.len == 0)) {
        conn_close(c);
        return;
    }
    request_recycle(c);
    /* A keep-alive connection's next head needs the same room again; an
     * unusually large one is not kept. */
    if (c->head_copy.cap > 1024) buf_free(&c->head_copy);
    else buf_reset(&c->head_copy);
    c->resp_done = false;
    c->stream_ended = false;
    c->stream_raw = false;
    c->on_abort = NULL;
    c->on_drain = NULL;
    c->state = ST_HEAD;
    /* Pipelined input is parsed from the loop, never from inside whatever
     * completed this response (which may hold the handler's locks). */
    if (!c->processing && (c->in.len > 0 || c->readable)) {
        http_conn_ref(c);
        loop_post(c->w->l, run_input, c);
    } else if (c->in.len == 0) {
        loop_timer_set(c->w->l, &c->timer, c->w->srv->cfg.idle_timeout_ms);
    }
}

/* The memory segments at the head of c's output queue, as an iovec. */
static int conn_out_iov(http_conn *c, struct iovec *iov, int max) {
    seg_queue *q = &c->out;
    int niov = 0;
    for (size_t i = q->head; i < q->len && niov < max && q->v[i].kind == SEG_MEM; i++) {
        iov[niov].iov_base = q->v[i].mem.data + q->v[i].off;
        iov[niov].iov_len = q->v[i].mem.len - q->v[i].off;
        niov++;
    }
    return niov;
}

/* n bytes of the memory segments at the head of the queue were written. */
static void conn_out_consumed(http_conn *c, size_t n) {
    seg_queue *q = &c->out;
    c->out_bytes -= n;
    while (n > 0) {
        out_seg *t = &q->v[q->head];
        size_t avail = t->mem.len - t->off;
        if (n >= avail) {
            n -= avail;
            wbuf_give(c->w, &t->mem);
            q->head++;
        } else {
            t->off += n;
            n = 0;
        }
    }
}

/* A write to the socket failed with err: wait for room (EAGAIN) or close.
 * Returns true if the caller should try again (EINTR). */
static bool conn_write_failed(http_conn *c, int err) {
    if (err == EINTR) return true;
    if (err == EAGAIN || err == EWOULDBLOCK) {
        loop_timer_set(c->w->l, &c->timer, c->w->srv->cfg.write_timeout_ms);
        return false;
    }
    log_write(LOG_DEBUG, "%s: write failed: %s", c->peer, strerror(err));
    conn_close(c);
    return false;
}

static void conn_flush(http_conn *c) {
    if (c->closed || c->held) return;
    seg_queue *q = &c->out;
    while (q->head < q->len) {
        out_seg *s = &q->v[q->head];
        ssize_t n;
        if (s->kind == SEG_MEM) {
            struct iovec iov[IO_BATCH_IOV];
            n = writev(c->fd, iov, conn_out_iov(c, iov, IO_BATCH_IOV));
            if (n > 0) conn_out_consumed(c, (size_t)n);
        } else {
            off_t off = (off_t)s->foff;
            size_t want = s->flen > (1u << 30) ? (1u << 30) : (size_t)s->flen;
            n = sendfile(c->fd, s->fd, &off, want);
            if (n > 0) {
                s->foff += (uint64_t)n;
                s->flen -= (uint64_t)n;
                c->out_bytes -= (size_t)n;
                if (s->flen == 0) {
                    seg_free(s);
                    q->head++;
                }
            } else if (n == 0 && want > 0) {
                /* The file is shorter than promised: the response would be
                 * truncated, so the connection cannot continue. */
                log_write(LOG_ERROR, "%s: data file shorter than expected", c->peer);
                conn_close(c);
                return;
            }
        }
        if (n < 0) {
            if (conn_write_failed(c, errno)) continue;
            return;
        }
    }
    q->head = q->len = 0;
    if (c->state == ST_HANDLING || c->state == ST_STREAMING) loop_timer_cancel(c->w->l, &c->timer);
    if (c->on_drain) {
        void (*fn)(void *) = c->on_drain;
        c->on_drain = NULL;
        fn(c->drain_arg);
        /* The callback may have queued more (and hit EAGAIN again). */
        if (c->closed || c->out_bytes > 0) return;
    }
    if ((c->state == ST_HANDLING && c->resp_done) || (c->state == ST_STREAMING && c->stream_ended))
        request_done(c);
}

/* Responses are written when the loop iteration ends, not when the handler
 * finishes them (Redis's pending-writes list): handlers run under the
 * stream layer's lock, and a fan-out to thousands of subscribers must not
 * hold it for thousands of writev calls. Answers to requests go first, and
 * at most FLUSH_BATCH event streams are written per round: between rounds
 * the loop reads new requests, so a writer is not starved while its last
 * event goes out to 10,000 readers (who then get events in fewer, larger
 * writes). */
#define FLUSH_BATCH 512

static void flush_queue_push(flush_queue *q, http_conn *c) {
    if (q->len == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 64;
        q->v = xrealloc(q->v, q->cap * sizeof *q->v);
    }
    q->v[q->len++] = c;
}

/* Start the writes of v[0..n) as one send batch: each connection whose
 * output begins with memory gets one send, and its result is applied as a
 * writev's would be. Returns which connections conn_flush must still see
 * (ok[i]: the batch wrote all it was given, or did not try), so that a
 * socket found full costs no second system call. */
static void flush_batch(worker *w, http_conn **v, size_t n, bool *ok) {
    int slot[IO_BATCH_MAX];
    size_t given[IO_BATCH_MAX];
    for (size_t i = 0; i < n; i++) {
        http_conn *c = v[i];
        slot[i] = -1;
        if (c->closed || c->held || c->out.head == c->out.len) continue;
        struct iovec iov[IO_BATCH_IOV];
        int niov = conn_out_iov(c, iov, IO_BATCH_IOV);
        if (niov == 0) continue;
        given[i] = 0;
        for (int k = 0; k < niov; k++) given[i] += iov[k].iov_len;
        slot[i] = io_batch_send(w->batch, c->fd, iov, niov);
    }
    bool failed = io_batch_run(w->batch) < 0;
    for (size_t i = 0; i < n; i++) {
        http_conn *c = v[i];
        ok[i] = true;
        if (slot[i] < 0) continue;
        ssize_t r = io_batch_result(w->batch, slot[i]);
        if (r == IO_BATCH_UNDONE) continue;
        if (r >= 0) {
            conn_out_consumed(c, (size_t)r);
            /* Short: the socket is full (as after a short writev), and its
             * next output edge says when there is room. */
            if ((size_t)r < given[i]) {
                loop_timer_set(w->l, &c->timer, w->srv->cfg.write_timeout_ms);
                ok[i] = false;
            }
        } else if (!conn_write_failed(c, (int)-r)) {
            ok[i] = false;
        }
    }
    if (failed) {
        io_batch_free(w->batch);
        w->batch = NULL;
    }
}

/* Write the first n of q; a flush may queue more (re-read q->v). */
static void flush_queue_run(worker *w, flush_queue *q, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t k = n - i < IO_BATCH_MAX ? n - i : IO_BATCH_MAX;
        bool ok[IO_BATCH_MAX];
        if (w->batch && k > 1) flush_batch(w, q->v + i, k, ok);
        else memset(ok, 1, k * sizeof *ok);
        for (size_t j = 0; j < k; j++) {
            http_conn *c = q->v[i + j];
            c->flush_queued = false;
            if (ok[j]) conn_flush(c);
            http_conn_unref(c);
        }
        i += k;
    }
    q->len -= n;
    if (n > 0 && q->len > 0) memmove(q->v, q->v + n, q->len * sizeof *q->v);
}

static void flush_pending(void *arg) {
    worker *w = arg;
    flush_queue_run(w, &w->flush_answers, w->flush_answers.len);
    flush_queue_run(w, &w->flush_streams,
                    w->flush_streams.len < FLUSH_BATCH ? w->flush_streams.len : FLUSH_BATCH);
    if (w->flush_answers.len > 0 || w->flush_streams.len > 0) loop_defer(w->l, flush_pending, w);
}

static void conn_flush_later(http_conn *c) {
    if (c->closed || c->flush_queued) return;
    worker *w = c->w;
    loop_defer(w->l, flush_pending, w);
    http_conn_ref(c);
    c->flush_queued = true;
    flush_queue_push(c->state == ST_STREAMING ? &w->flush_streams : &w->flush_answers, c);
}

/* --- responses --- */

void http_respond_begin(http_conn *c, int status) {
    buf_reset(&c->resp_head);
    queue_clear(&c->resp_body);
    c->resp_body_len = 0;
    c->resp_status = status;
    buf_append(&c->resp_head, "HTTP/1.1 ", 9);
    buf_append_u64(&c->resp_head, (uint64_t)status);
    buf_append_byte(&c->resp_head, ' ');
    buf_append_str(&c->resp_head, http_status_reason(status));
    buf_append(&c->resp_head, "\r\n", 2);
}

void http_respond_header(http_conn *c, const char *name, const char *value) {
    buf_append_str(&c->resp_head, name);
    buf_append(&c->resp_head, ": ", 2);
    buf_append_str(&c->resp_head, value);
    buf_append(&c->resp_head, "\r\n", 2);
}

void http_respond_header_lines(http_conn *c, const char *lines, size_t n) {
    buf_append(&c->resp_head, lines, n);
}

void http_respond_header_u64(http_conn *c, const char *name, uint64_t value) {
    buf_append_str(&c->resp_head, name);
    buf_append(&c->resp_head, ": ", 2);
    buf_append_u64(&c->resp_head, value);
    buf_append(&c->resp_head, "\r\n", 2);
}

void http_respond_headerf(http_conn *c, const char *name, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        http_respond_header(c, name, small);
        return;
    }
    char *big = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    http_respond_header(c, name, big);
    free(big);
}

void http_respond_body(http_conn *c, const void *p, size_t n) {
    queue_mem(c->w, &c->resp_body, p, n);
    c->resp_body_len += n;
}

void http_respond_file(http_conn *c, int fd, uint64_t off, uint64_t len,
                       void (*release)(void *), void *rarg) {
    out_seg *s = queue_push(&c->resp_body);
    s->kind = SEG_FILE;
    s->fd = fd;
    s->foff = off;
    s->flen = len;
    s->release = release;
    s->rarg = rarg;
    c->resp_body_len += len;
}

static void queue_response(http_conn *c, bool with_body) {
    queue_mem(c->w, &c->out, c->resp_head.data, c->resp_head.len);
    c->out_bytes += c->resp_head.len;
    seg_queue *b = &c->resp_body;
    for (size_t i = b->head; i < b->len; i++) {
        out_seg *s = &b->v[i];
        if (!with_body) {
            seg_free(s);
            continue;
        }
        if (s->kind == SEG_MEM) {
            queue_mem(c->w, &c->out, s->mem.data, s->mem.len);
            c->out_bytes += s->mem.len;
            wbuf_give(c->w, &s->mem);
        } else {
            *queue_push(&c->out) = *s;
            c->out_bytes += s->flen;
        }
    }
    b->head = b->len = 0;
}

void http_respond_end(http_conn *c) {
    if (c->closed) return;
    bool head_only = c->req->head.method == HTTP_HEAD;
    bool no_body = c->resp_status == 204 || c->resp_status == 304 ||
                   (c->resp_status >= 100 && c->resp_status < 200);
    if (!no_body) {
        buf_append_str(&c->resp_head, "Content-Length: ");
        buf_append_u64(&c->resp_head, c->resp_body_len);
        buf_append(&c->resp_head, "\r\n", 2);
    }
    if (!c->req->head.keep_alive) c->close_after = true;
    if (c->close_after || c->peer_closed) buf_append_str(&c->resp_head, "Connection: close\r\n");
    else if (c->req->head.version_minor == 0) buf_append_str(&c->resp_head, "Connection: keep-alive\r\n");
    buf_append(&c->resp_head, "\r\n", 2);
    queue_response(c, !head_only && !no_body);
    c->on_abort = NULL;
    c->resp_done = true;
    conn_flush_later(c);
}

void http_respond_error(http_conn *c, int status, const char *msg) {
    http_respond_begin(c, status);
    http_respond_header(c, "Content-Type", "text/plain; charset=utf-8");
    http_respond_header(c, "X-Content-Type-Options", "nosniff");
    http_respond_body(c, msg, strlen(msg));
    http_respond_body(c, "\n", 1);
    http_respond_end(c);
}

void http_conn_hold(http_conn *c) {
    if (c->held) return;
    c->held = true;
    atomic_fetch_add(&c->w->srv->nheld, 1);
}

void http_conn_release(http_conn *c) {
    if (!c->held) return;
    c->held = false;
    atomic_fetch_sub(&c->w->srv->nheld, 1);
    conn_flush_later(c);
}

void http_conn_fail(http_conn *c, int status, const char *msg) {
    if (c->closed || !c->held) return;
    queue_clear(&c->out);
    c->out_bytes = 0;
    c->held = false;
    atomic_fetch_sub(&c->w->srv->nheld, 1);
    c->close_after = true;
    http_respond_error(c, status, msg);
}

void http_conn_park(http_conn *c, void (*on_abort)(void *), void *arg) {
    c->on_abort = on_abort;
    c->abort_arg = arg;
}

void http_conn_unpark(http_conn *c, void *arg) {
    if (c->abort_arg == arg) {
        c->on_abort = NULL;
        c->abort_arg = NULL;
    }
}

void http_stream_begin(http_conn *c, int status) {
    (void)status;
    if (!c->req->head.keep_alive) c->close_after = true;
    c->stream_raw = c->req->head.version_minor == 0;
    if (c->stream_raw) {
        c->close_after = true;
        buf_append_str(&c->resp_head, "Connection: close\r\n\r\n");
    } else {
        buf_append_str(&c->resp_head, "Transfer-Encoding: chunked\r\n");
        if (c->close_after) buf_append_str(&c->resp_head, "Connection: close\r\n");
        buf_append_str(&c->resp_head, "\r\n");
    }
    queue_mem(c->w, &c->out, c->resp_head.data, c->resp_head.len);
    c->out_bytes += c->resp_head.len;
    buf_free(&c->resp_head); /* a stream can live for long: keep it small */
    request_recycle(c);
    buf_free(&c->head_copy);
    c->state = ST_STREAMING;
    c->on_abort = NULL;
    conn_flush_later(c);
}

void http_stream_write(http_conn *c, const struct iovec *iov, int iovcnt) {
    size_t n = 0;
    for (int i = 0; i < iovcnt; i++) n += iov[i].iov_len;
    if (c->closed || n == 0) return;
    if (!c->stream_raw) {
        char hdr[20];
        size_t h = sizeof hdr - 2;
        memcpy(hdr + h, "\r\n", 2);
        for (size_t v = n; v; v >>= 4) hdr[--h] = "0123456789abcdef"[v & 15];
        queue_mem(c->w, &c->out, hdr + h, sizeof hdr - h);
        c->out_bytes += sizeof hdr - h + 2;
    }
    for (int i = 0; i < iovcnt; i++) queue_mem(c->w, &c->out, iov[i].iov_base, iov[i].iov_len);
    if (!c->stream_raw) queue_mem(c->w, &c->out, "\r\n", 2);
    c->out_bytes += n;
    conn_flush_later(c);
}

void http_stream_end(http_conn *c) {
    if (c->closed) return;
    if (!c->stream_raw) {
        queue_mem(c->w, &c->out, "0\r\n\r\n", 5);
        c->out_bytes += 5;
    }
    c->stream_ended = true;
    conn_flush_later(c);
}

/* --- reading requests --- */

static void fail_request(http_conn *c, int status, const char *msg) {
    log_write(LOG_ERROR, "%s: %d %s", c->peer, status, msg);
    c->close_after = true;
    c->state = ST_HANDLING;
    c->req->head.method = HTTP_GET;
    c->req->head.keep_alive = false;
    http_respond_error(c, status, msg);
}

static void dispatch(http_conn *c) {
    if (c->in.len == 0) wbuf_give(c->w, &c->in);
    c->state = ST_HANDLING;
    c->receiving = false;
    loop_timer_cancel(c->w->l, &c->timer);
    c->req->start_ms = loop_now_ms();
    c->req->principal = NULL;
    c->w->srv->cfg.handler(c->w->srv->cfg.handler_ctx, c, c->req);
}

/* Returns false only when the head is incomplete (more bytes needed). */
static bool start_request(http_conn *c) {
    const http_server_config *cfg = &c->w->srv->cfg;
    if (!c->req) c->req = request_new(c->w);
    const char *err = NULL;
    int r = http_parse_head((const char *)c->in.data, c->in.len, cfg->max_head_bytes,
                            cfg->max_target_len, &c->req->head, &err);
    if (r == HTTP_PARSE_INCOMPLETE) {
        if (c->in.len > 0 && !c->receiving) {
            c->receiving = true;
            loop_timer_set(c->w->l, &c->timer, cfg->request_timeout_ms);
        }
        return false;
    }
    if (r < 0) {
        fail_request(c, http_parse_status(r), err ? err : "malformed request");
        return true;
    }
    /* Move the head to a private copy so it stays valid while more input
     * is read into (and possibly reallocates) the input buffer. */
    buf_reset(&c->head_copy);
    buf_append(&c->head_copy, c->in.data, (size_t)r);
    http_head_move(&c->req->head, (const char *)c->in.data, (const char *)c->head_copy.data);
    buf_consume(&c->in, (size_t)r);
    if (!http_target_split(c->req->head.target, c->req->head.target_len, &c->req->target)) {
        fail_request(c, 400, "request target must be an absolute path");
        return true;
    }
    buf_init(&c->req->body);
    if (c->req->head.content_length > 0 && (uint64_t)c->req->head.content_length > cfg->max_body) {
        fail_request(c, 413, "request body too large");
        return true;
    }
    bool has_body = c->req->head.chunked || c->req->head.content_length > 0;
    if (has_body && c->req->head.expect_continue) {
        const char *cont = "HTTP/1.1 100 Continue\r\n\r\n";
        ssize_t wr = write(c->fd, cont, strlen(cont));
        (void)wr;
    }
    if (c->req->head.chunked) {
        http_chunked_init(&c->chunked);
        c->state = ST_CHUNKED;
    } else if (c->req->head.content_length > 0) {
        /* Grow with the data, not with what the client claims. */
        size_t cl = (size_t)c->req->head.content_length;
        if (cl <= BUF_CACHE_CAP) wbuf_take(c->w, &c->req->body);
        else buf_reserve(&c->req->body, cl < 65536 ? cl : 65536);
        c->state = ST_BODY;
    } else {
        dispatch(c);
        return true;
    }
    if (!c->receiving) {
        c->receiving = true;
        loop_timer_set(c->w->l, &c->timer, cfg->request_timeout_ms);
    }
    return true;
}

static void process_input(http_conn *c) {
    c->processing = true;
    while (!c->closed) {
        if (c->state == ST_HEAD) {
            if (c->in.len == 0) {
                loop_timer_set(c->w->l, &c->timer, c->w->srv->cfg.idle_timeout_ms);
                break;
            }
            if (!start_request(c)) break; /* need more bytes */
        } else if (c->state == ST_BODY) {
            size_t want = (size_t)c->req->head.content_length - c->req->body.len;
            size_t n = c->in.len < want ? c->in.len : want;
            buf_append(&c->req->body, c->in.data, n);
            buf_consume(&c->in, n);
            if (c->req->body.len < (size_t)c->req->head.content_length) break;
            dispatch(c);
        } else if (c->state == ST_CHUNKED) {
            bool done = false;
            const char *err = NULL;
            ssize_t n = http_chunked_decode(&c->chunked, (const char *)c->in.data, c->in.len,
                                            &c->req->body, c->w->srv->cfg.max_body, &done, &err);
            if (n == -2) {
                fail_request(c, 413, "request body too large");
                continue;
            }
            if (n < 0) {
                fail_request(c, 400, err ? err : "invalid chunked encoding");
                continue;
            }
            buf_consume(&c->in, (size_t)n);
            if (!done) break;
            dispatch(c);
        } else {
            break; /* handling or streaming: wait for the response */
        }
        if (c->state == ST_HANDLING && !(c->resp_done && c->out_bytes == 0)) break;
    }
    c->processing = false;
}

/* What one read of the socket leaves to do. */
enum read_step { READ_MORE, READ_DONE, READ_CLOSED };

/* Take the result of one read into p (of at most cap bytes): a byte
 * count, 0 at end of input, or -errno. */
static enum read_step conn_read_step(http_conn *c, const uint8_t *p, ssize_t n, size_t cap) {
    if (n > 0) {
        if (!c->in.data && (size_t)n <= BUF_CACHE_CAP) wbuf_take(c->w, &c->in);
        buf_append(&c->in, p, (size_t)n);
        /* A short read drained the socket; more data makes a new edge.
         * That saves the read() that would only say EAGAIN — unless a
         * FIN is pending, which only a read returning 0 reports. */
        if ((size_t)n < cap && !c->rdhup) {
            c->readable = false;
            return READ_DONE;
        }
        return READ_MORE;
    }
    if (n == 0) {
        c->readable = false;
        c->peer_closed = true;
        if (c->state == ST_HEAD && c->in.len == 0) {
            conn_close(c);
            return READ_CLOSED;
        }
        return READ_DONE;
    }
    if (n == -EINTR) return READ_MORE;
    if (n == -EAGAIN || n == -EWOULDBLOCK) {
        c->readable = false;
        return READ_DONE;
    }
    conn_close(c);
    return READ_CLOSED;
}

/* Read on from `step` (total bytes read so far), then handle the input. */
static void conn_read_from(http_conn *c, enum read_step step, size_t total) {
    while (step == READ_MORE) {
        if (total >= 262144) {
            /* Edge-triggered: the rest must be read without a new edge, but
             * one fast sender must not hold the loop — continue later. */
            http_conn_ref(c);
            loop_post(c->w->l, run_input, c);
            break;
        }
        ssize_t n = read(c->fd, c->w->scratch, sizeof c->w->scratch);
        if (n > 0) total += (size_t)n;
        step = conn_read_step(c, c->w->scratch, n < 0 ? -errno : n, sizeof c->w->scratch);
    }
    if (step == READ_CLOSED) return;
    process_input(c);
    if (!c->closed && c->peer_closed &&
        (c->state == ST_HEAD || c->state == ST_BODY || c->state == ST_CHUNKED)) {
        /* The client ended its side in the middle of a request. */
        conn_close(c);
    }
}

static void conn_read(http_conn *c) { conn_read_from(c, READ_MORE, 0); }

static bool conn_wants_read(const http_conn *c) {
    return !c->closed && c->readable &&
           (c->state == ST_HEAD || c->state == ST_BODY || c->state == ST_CHUNKED);
}

/* Read every connection queued by conn_read_soon: with more than one, all
 * in one io_uring submission, each into its own slot of w->read_slots. */
static void read_queue_run(void *arg) {
    worker *w = arg;
    int n = w->nreads, wanted = 0;
    w->nreads = 0;
    for (int i = 0; i < n; i++) wanted += conn_wants_read(w->reads[i]);
    io_batch *b = wanted > 1 ? w->batch : NULL;
    int slot[IO_BATCH_MAX];
    for (int i = 0; i < n; i++)
        slot[i] = b && conn_wants_read(w->reads[i])
                      ? io_batch_recv(b, w->reads[i]->fd, w->read_slots[i], READ_SLOT)
                      : -1;
    bool failed = b && io_batch_run(b) < 0;
    for (int i = 0; i < n; i++) {
        http_conn *c = w->reads[i];
        c->read_queued = false;
        ssize_t r = slot[i] < 0 ? IO_BATCH_UNDONE : io_batch_result(b, slot[i]);
        /* A connection closed meanwhile has nothing left to read. */
        if (conn_wants_read(c) && r == IO_BATCH_UNDONE) {
            conn_read(c);
        } else if (conn_wants_read(c)) {
            conn_read_from(c, conn_read_step(c, w->read_slots[i], r, READ_SLOT),
                           r > 0 ? (size_t)r : 0);
        }
        http_conn_unref(c);
    }
    if (failed) {
        io_batch_free(w->batch);
        w->batch = NULL;
    }
}

/* Read c once the loop has seen every ready socket of this round (see
 * loop_set_after_events), so that one system call reads them all. */
static void conn_read_soon(http_conn *c) {
    worker *w = c->w;
    if (!w->batch) {
        conn_read(c);
        return;
    }
    if (c->read_queued) return;
    if (w->nreads == IO_BATCH_MAX) read_queue_run(w);
    c->read_queued = true;
    http_conn_ref(c);
    w->reads[w->nreads++] = c;
}

static void conn_events(http_conn *c, uint32_t ev) {
    if (ev & (EPOLLERR | EPOLLHUP)) {
        conn_close(c);
        return;
    }
    if ((ev & EPOLLOUT) && c->out_bytes > 0) conn_flush(c);
    if (c->closed) return;
    if (ev & (EPOLLIN | EPOLLRDHUP)) c->readable = true;
    if (ev & EPOLLRDHUP) c->rdhup = true;
    bool reading = c->state == ST_HEAD || c->state == ST_BODY || c->state == ST_CHUNKED;
    if (reading) {
        if (c->readable) conn_read_soon(c);
    } else if (ev & EPOLLRDHUP) {
        /* The client is gone (or half-closed) while we are answering: a
         * waiting reader is abandoned; a normal answer is still sent. */
        c->peer_closed = true;
        if (c->on_abort || c->state == ST_STREAMING) conn_close(c);
    }
}

static void conn_io(void *arg, uint32_t ev) {
    http_conn *c = arg;
    if (c->closed) return;
    /* The connection may close (and drop the loop's reference) anywhere
     * below; keep it alive until we are out. */
    http_conn_ref(c);
    conn_events(c, ev);
    http_conn_unref(c);
}

/* --- accepting --- */

static void accept_ready(void *arg, uint32_t ev) {
    (void)ev;
    worker *w = arg;
    http_server *srv = w->srv;
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(w->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_write(LOG_ERROR, "accept: %s", strerror(errno));
            return;
        }
        if (atomic_load(&srv->nconns) >= srv->cfg.max_conns) {
            const char *msg = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 21\r\n"
                              "Connection: close\r\n\r\ntoo many connections\n";
            ssize_t wr = write(fd, msg, strlen(msg));
            (void)wr;
            close(fd);
            log_write(LOG_ERROR, "connection refused: --max-connections (%u) reached",
                      srv->cfg.max_conns);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        http_conn *c = xcalloc(1, sizeof *c);
        c->w = w;
        c->fd = fd;
        atomic_init(&c->refs, 1);
        c->state = ST_HEAD;
        loop_timer_init(&c->timer, conn_timeout, c);
        char host[INET6_ADDRSTRLEN] = "?";
        int port = 0;
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
            port = ntohs(a->sin6_port);
        }
        snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
        c->next = w->conns;
        if (w->conns) w->conns->prev = c;
        w->conns = c;
        atomic_fetch_add(&srv->nconns, 1);
        loop_add(w->l, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, conn_io, c);
        loop_timer_set(w->l, &c->timer, srv->cfg.idle_timeout_ms);
    }
}

static int listen_socket(const http_server_config *cfg, char *err, size_t errlen) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->port);
    int rc = getaddrinfo(cfg->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve --host %s: %s", cfg->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 4096) == 0) break;
        snprintf(err, errlen, "cannot listen on %s:%d: %s", cfg->host, cfg->port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    pthread_setname_np(pthread_self(), "weft-http");
    if (w->srv->cfg.io_uring) {
        w->batch = io_batch_new();
        if (!w->batch)
            log_write(LOG_WARN, "io_uring unavailable (%s); using read and writev",
                      strerror(errno));
    }
    if (w->batch) {
        w->read_slots = xmalloc(IO_BATCH_MAX * sizeof *w->read_slots);
        loop_set_after_events(w->l, read_queue_run, w);
    }
    loop_run(w->l);
    io_batch_free(w->batch);
    free(w->read_slots);
    return NULL;
}

http_server *http_server_start(const http_server_config *cfg, char *err, size_t errlen) {
    http_server *s = xcalloc(1, sizeof *s);
    s->cfg = *cfg;
    s->nworkers = cfg->threads > 0 ? cfg->threads : 1;
    s->workers = xcalloc((size_t)s->nworkers, sizeof *s->workers);
    for (int i = 0; i < s->nworkers; i++) {
        worker *w = &s->workers[i];
        w->srv = s;
        w->listen_fd = listen_socket(cfg, err, errlen);
        if (w->listen_fd < 0) {
            for (int j = 0; j < i; j++) {
                close(s->workers[j].listen_fd);
                loop_free(s->workers[j].l);
            }
            free(s->workers);
            free(s);
            return NULL;
        }
        w->l = loop_new(i);
        loop_add(w->l, w->listen_fd, EPOLLIN, accept_ready, w);
    }
    for (int i = 0; i < s->nworkers; i++)
        pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]);
    return s;
}

static void worker_stop_accepting(void *arg) {
    worker *w = arg;
    if (w->listen_fd >= 0) {
        loop_del(w->l, w->listen_fd);
        close(w->listen_fd);
        w->listen_fd = -1;
    }
}

void http_server_stop_accepting(http_server *s) {
    for (int i = 0; i < s->nworkers; i++) loop_post(s->workers[i].l, worker_stop_accepting, &s->workers[i]);
}

unsigned http_server_busy(http_server *s) { return atomic_load(&s->nheld); }

static void worker_shutdown(void *arg) {
    worker *w = arg;
    worker_stop_accepting(w);
    flush_pending(w); /* answers finished in this iteration go out first */
    while (w->conns) conn_close(w->conns);
    loop_stop(w->l);
}

void http_server_free(http_server *s) {
    for (int i = 0; i < s->nworkers; i++) loop_post(s->workers[i].l, worker_shutdown, &s->workers[i]);
    for (int i = 0; i < s->nworkers; i++) {
        pthread_join(s->workers[i].thread, NULL);
        loop_free(s->workers[i].l);
        free(s->workers[i].flush_answers.v);
        free(s->workers[i].flush_streams.v);
        for (int k = 0; k < s->workers[i].nspare; k++) free(s->workers[i].spare[k]);
        for (int k = 0; k < s->workers[i].nbufs; k++) free(s->workers[i].bufs[k]);
        buf_free(&s->workers[i].handler_scratch);
    }
    free(s->workers);
    free(s);
}
