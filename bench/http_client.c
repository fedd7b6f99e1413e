/* http_client.c — epoll loop, timers and HTTP/1.1 client connections (see
 * http_client.h). */
#include "http_client.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net/iobatch.h"

#define MAX_HEAD_BYTES (64 * 1024)
#define EVENTS_PER_WAIT 256

/* Where a connection is in reading its response. */
typedef enum rstate {
    R_IDLE,        /* no request outstanding */
    R_HEAD,        /* waiting for the status line and headers */
    R_LENGTH,      /* Content-Length body */
    R_CHUNK_SIZE,  /* chunked: size line */
    R_CHUNK_DATA,  /* chunked: chunk bytes */
    R_CHUNK_END,   /* chunked: CRLF after the chunk */
    R_TRAILER,     /* chunked: trailer lines up to the empty one */
    R_UNTIL_CLOSE, /* body delimited by the server closing */
} rstate;

typedef struct conn {
    hc_conn pub; /* first, so hc_conn * and conn * convert */
    loop *loop;
    const hc_ops *ops;
    int fd;
    unsigned gen; /* bumped on every close, so callers notice a close done by a callback */
    bool connecting, opening, queued, want_out, close_after;
    bool send_queued; /* on the loop's send queue (see flush_sends) */
    rstate state;
    uint64_t remaining;
    char *in;
    size_t in_start, in_end, in_cap;
    char *out;
    size_t out_off, out_len, out_cap;
    size_t error_len;
    struct conn *next_queued;
} conn;

struct loop {
    int epfd;
    struct sockaddr_in addr;
    size_t recv_size;
    int max_opening, opening;
    conn *queue_head, *queue_tail; /* waiting to connect */
    timer **heap;
    size_t nheap, heap_cap;
    /* The reads of one poll go to the kernel together, and so do the
     * writes (NULL: recv and send each).
     * Every server is measured through the same client, so this only
     * lowers the load generator's share of the machine. Made at the first
     * poll: the ring belongs to the thread that submits to it. */
    io_batch *batch;
    bool batch_tried;
    /* Requests made during one poll, written together at its end. */
    conn **sendq;
    size_t nsendq, sendq_cap;
};

static void *xalloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) {
        perror("loadgen: realloc");
        exit(2);
    }
    return q;
}

int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- timers: a binary min-heap of timers embedded in their owners ---- */

void timer_init(timer *t, void (*fn)(void *), void *arg) {
    t->due = 0;
    t->fn = fn;
    t->arg = arg;
    t->index = -1;
}

static void heap_place(loop *l, timer *t, size_t i) {
    l->heap[i] = t;
    t->index = (int)i;
}

static void heap_up(loop *l, size_t i) {
    timer *t = l->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (l->heap[parent]->due <= t->due) break;
        heap_place(l, l->heap[parent], i);
        i = parent;
    }
    heap_place(l, t, i);
}

static void heap_down(loop *l, size_t i) {
    timer *t = l->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= l->nheap) break;
        if (child + 1 < l->nheap && l->heap[child + 1]->due < l->heap[child]->due) child++;
        if (l->heap[child]->due >= t->due) break;
        heap_place(l, l->heap[child], i);
        i = child;
    }
    heap_place(l, t, i);
}

static void timer_cancel(loop *l, timer *t) {
    if (t->index < 0) return;
    size_t i = (size_t)t->index;
    t->index = -1;
    timer *last = l->heap[--l->nheap];
    if (last == t) return;
    heap_place(l, last, i);
    heap_up(l, i);
    heap_down(l, (size_t)last->index);
}

void timer_set(loop *l, timer *t, int64_t due) {
    timer_cancel(l, t);
    if (l->nheap == l->heap_cap) {
        l->heap_cap = l->heap_cap ? l->heap_cap * 2 : 64;
        l->heap = xalloc(l->heap, l->heap_cap * sizeof *l->heap);
    }
    t->due = due;
    heap_place(l, t, l->nheap++);
    heap_up(l, (size_t)t->index);
}

/* ---- loop ---- */

loop *loop_new(const struct sockaddr_in *addr, size_t recv_size, int max_opening, bool batch_io) {
    loop *l = xalloc(NULL, sizeof *l);
    memset(l, 0, sizeof *l);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        perror("loadgen: epoll_create1");
        exit(2);
    }
    l->addr = *addr;
    l->recv_size = recv_size;
    l->max_opening = max_opening;
    l->batch_tried = !batch_io;
    return l;
}

void loop_free(loop *l) {
    io_batch_free(l->batch);
    free(l->sendq);
    close(l->epfd);
    free(l->heap);
    free(l);
}

static void conn_event(conn *c, uint32_t events);
static void poll_batched(loop *l, const struct epoll_event *ev, int n);
static void flush_sends(loop *l);
static void conn_connect(conn *c);

static void start_queued(loop *l) {
    while (l->queue_head && l->opening < l->max_opening) {
        conn *c = l->queue_head;
        l->queue_head = c->next_queued;
        if (!l->queue_head) l->queue_tail = NULL;
        c->queued = false;
        c->next_queued = NULL;
        if (c->fd >= 0) continue;
        conn_connect(c);
    }
}

void loop_poll(loop *l, int max_wait_ms) {
    int wait = max_wait_ms;
    if (l->nheap) {
        int64_t until = l->heap[0]->due - now_ns();
        if (until <= 0)
            wait = 0;
        else if (until / 1000000 < wait)
            wait = (int)((until + 999999) / 1000000);
    }
    if (l->queue_head && l->opening < l->max_opening) wait = 0;
    if (!l->batch_tried) {
        l->batch_tried = true;
        l->batch = io_batch_new();
    }
    struct epoll_event ev[EVENTS_PER_WAIT];
    int n = epoll_wait(l->epfd, ev, EVENTS_PER_WAIT, wait);
    if (l->batch && n > 1) poll_batched(l, ev, n);
    else
        for (int i = 0; i < n; i++) conn_event(ev[i].data.ptr, ev[i].events);
    /* Timers due now run once each; one re-armed for the past waits for the
     * next poll, so a late timer cannot spin here. */
    int64_t now = now_ns();
    size_t budget = l->nheap;
    while (l->nheap && l->heap[0]->due <= now && budget--) {
        timer *t = l->heap[0];
        timer_cancel(l, t);
        t->fn(t->arg);
    }
    flush_sends(l);
    start_queued(l);
}

/* ---- connections ---- */

hc_conn *hc_new(loop *l, const hc_ops *ops, void *user) {
    conn *c = xalloc(NULL, sizeof *c);
    memset(c, 0, sizeof *c);
    c->pub.user = user;
    c->loop = l;
    c->ops = ops;
    c->fd = -1;
    return &c->pub;
}

static void release_opening(conn *c) {
    if (!c->opening) return;
    c->opening = false;
    c->loop->opening--;
}

static void close_fd(conn *c) {
    if (c->fd >= 0) {
        close(c->fd); /* also leaves the epoll set */
        c->fd = -1;
    }
    c->gen++;
    release_opening(c);
    c->connecting = c->want_out = c->close_after = false;
    c->in_start = c->in_end = 0;
}

static void reset_request(conn *c) {
    c->state = R_IDLE;
    c->out_off = c->out_len = 0;
}

void hc_free(hc_conn *hc) {
    if (!hc) return;
    conn *c = (conn *)hc;
    loop *l = c->loop;
    for (size_t i = 0; c->send_queued && i < l->nsendq; i++)
        if (l->sendq[i] == c) l->sendq[i] = l->sendq[--l->nsendq];
    close_fd(c);
    free(c->in);
    free(c->out);
    free(c);
}

static void conn_fail(conn *c, const char *what, int err) {
    char why[160];
    if (err)
        snprintf(why, sizeof why, "%s: %s", what, strerror(err));
    else
        snprintf(why, sizeof why, "%s", what);
    bool outstanding = c->state != R_IDLE;
    close_fd(c);
    reset_request(c);
    if (outstanding) c->ops->fail(&c->pub, why);
}

static void set_events(conn *c, bool want_out) {
    if (c->want_out == want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(c->loop->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want_out;
}

static void conn_connect(conn *c) {
    loop *l = c->loop;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        conn_fail(c, "socket", errno);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&l->addr, sizeof l->addr) < 0 && errno != EINPROGRESS) {
        conn_fail(c, "connect", errno);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        conn_fail(c, "epoll_ctl", errno);
        return;
    }
    c->want_out = true;
    c->connecting = true;
    c->opening = true;
    l->opening++;
}

/* Take one send's result (bytes or -errno). Returns true if the request
 * is not fully written yet and the socket may take more. */
static bool conn_sent(conn *c, ssize_t n) {
    if (n < 0) {
        if (n == -EINTR) return true;
        if (n == -EAGAIN) {
            set_events(c, true);
            return false;
        }
        conn_fail(c, "send", (int)-n);
        return false;
    }
    c->out_off += (size_t)n;
    if (c->out_off < c->out_len) return true;
    c->out_off = c->out_len = 0;
    set_events(c, false);
    if (c->pub.release_on_sent) release_opening(c);
    if (c->ops->sent) c->ops->sent(&c->pub);
    return false;
}

static void conn_write(conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (!conn_sent(c, n < 0 ? -errno : n)) return;
    }
}

/* Write the queued requests, up to IO_BATCH_MAX per submission. Callbacks
 * may queue more meanwhile; those go in the next round. */
static void flush_sends(loop *l) {
    while (l->nsendq > 0) {
        conn *v[IO_BATCH_MAX];
        int slot[IO_BATCH_MAX];
        size_t n = l->nsendq < IO_BATCH_MAX ? l->nsendq : IO_BATCH_MAX;
        memcpy(v, l->sendq + l->nsendq - n, n * sizeof *v);
        l->nsendq -= n;
        for (size_t i = 0; i < n; i++) {
            conn *c = v[i];
            c->send_queued = false;
            slot[i] = -1;
            if (c->fd < 0 || c->connecting || c->out_off >= c->out_len) continue;
            struct iovec iov = {c->out + c->out_off, c->out_len - c->out_off};
            slot[i] = io_batch_send(l->batch, c->fd, &iov, 1);
        }
        bool failed = io_batch_run(l->batch) < 0;
        for (size_t i = 0; i < n; i++) {
            if (slot[i] < 0) continue;
            ssize_t r = io_batch_result(l->batch, slot[i]);
            if (r == IO_BATCH_UNDONE) conn_write(v[i]);
            else if (conn_sent(v[i], r)) conn_write(v[i]);
        }
        if (failed) {
            io_batch_free(l->batch);
            l->batch = NULL;
            for (size_t i = 0; i < l->nsendq; i++) l->sendq[i]->send_queued = false;
            for (size_t i = 0; i < l->nsendq; i++) conn_write(l->sendq[i]);
            l->nsendq = 0;
        }
    }
}

/* Write c's request now, or with the others at the end of this poll. */
static void conn_write_soon(conn *c) {
    loop *l = c->loop;
    if (!l->batch) {
        conn_write(c);
        return;
    }
    if (c->send_queued) return;
    if (l->nsendq == l->sendq_cap) {
        l->sendq_cap = l->sendq_cap ? l->sendq_cap * 2 : 64;
        l->sendq = xalloc(l->sendq, l->sendq_cap * sizeof *l->sendq);
    }
    c->send_queued = true;
    l->sendq[l->nsendq++] = c;
}

void hc_request(hc_conn *hc, const char *req, size_t len) {
    conn *c = (conn *)hc;
    if (c->out_len + len > c->out_cap) {
        c->out_cap = c->out_len + len + 256;
        c->out = xalloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, req, len);
    c->out_len += len;
    c->state = R_HEAD;
    c->pub.status = 0;
    c->pub.up_to_date = false;
    c->pub.next_offset[0] = 0;
    c->pub.cursor[0] = 0;
    c->pub.error_body[0] = 0;
    c->error_len = 0;
    if (c->fd >= 0) {
        if (!c->connecting) conn_write_soon(c);
        return;
    }
    if (c->queued) return;
    c->queued = true;
    loop *l = c->loop;
    if (l->queue_tail)
        l->queue_tail->next_queued = c;
    else
        l->queue_head = c;
    l->queue_tail = c;
}

/* Copies the value of a header into dst (NUL-terminated, truncated). */
static void copy_value(char *dst, size_t size, const char *v, size_t n) {
    if (n >= size) n = size - 1;
    memcpy(dst, v, n);
    dst[n] = 0;
}

static bool name_is(const char *name, size_t n, const char *want) {
    return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

/* Parses the response head in [p, end) (the final CRLF excluded). Sets the
 * body framing; returns false if the status line is unusable. */
static bool parse_head(conn *c, const char *p, const char *end, bool *has_length, uint64_t *length,
                       bool *chunked) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    if (end - p < 12 || strncmp(p, "HTTP/1.", 7) != 0) return false;
    int status = atoi(p + 9);
    if (status < 100 || status > 999) return false;
    c->pub.status = status;
    if (p[7] == '0') c->close_after = true;
    *has_length = *chunked = false;
    *length = 0;
    for (p = eol < end ? eol + 1 : end; p < end;) {
        const char *line_end = memchr(p, '\n', (size_t)(end - p));
        if (!line_end) line_end = end;
        const char *le = line_end;
        if (le > p && le[-1] == '\r') le--;
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon) {
            const char *v = colon + 1;
            while (v < le && (*v == ' ' || *v == '\t')) v++;
            const char *ve = le;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            size_t nlen = (size_t)(colon - p), vlen = (size_t)(ve - v);
            if (name_is(p, nlen, "content-length")) {
                *has_length = true;
                *length = strtoull(v, NULL, 10);
            } else if (name_is(p, nlen, "transfer-encoding")) {
                *chunked = memmem(v, vlen, "chunked", 7) != NULL;
            } else if (name_is(p, nlen, "connection")) {
                if (vlen == 5 && strncasecmp(v, "close", 5) == 0) c->close_after = true;
            } else if (name_is(p, nlen, "stream-next-offset")) {
                copy_value(c->pub.next_offset, sizeof c->pub.next_offset, v, vlen);
            } else if (name_is(p, nlen, "stream-cursor")) {
                copy_value(c->pub.cursor, sizeof c->pub.cursor, v, vlen);
            } else if (name_is(p, nlen, "stream-up-to-date")) {
                c->pub.up_to_date = vlen == 4 && strncasecmp(v, "true", 4) == 0;
            }
        }
        p = line_end + 1;
    }
    return true;
}

/* The response is complete: hand it over, then close if the server said so. */
static void finish(conn *c) {
    c->state = R_IDLE;
    if (c->close_after) close_fd(c);
    c->ops->done(&c->pub);
}

static void deliver(conn *c, const char *p, size_t n) {
    if (c->pub.status >= 300 && c->error_len + 1 < sizeof c->pub.error_body) {
        size_t take = sizeof c->pub.error_body - 1 - c->error_len;
        if (take > n) take = n;
        memcpy(c->pub.error_body + c->error_len, p, take);
        c->error_len += take;
        c->pub.error_body[c->error_len] = 0;
    }
    if (c->ops->body) c->ops->body(&c->pub, p, n);
}

/* Consumes whatever of the buffered input forms the response. */
static void parse(conn *c) {
    unsigned gen = c->gen;
    while (c->gen == gen) {
        char *p = c->in + c->in_start;
        size_t avail = c->in_end - c->in_start;
        switch (c->state) {
        case R_IDLE:
            if (avail) conn_fail(c, "data from the server without a request", 0);
            return;
        case R_HEAD: {
            char *end = avail >= 4 ? memmem(p, avail, "\r\n\r\n", 4) : NULL;
            if (!end) {
                if (avail > MAX_HEAD_BYTES) conn_fail(c, "response head too large", 0);
                return;
            }
            bool has_length, chunked;
            uint64_t length;
            if (!parse_head(c, p, end, &has_length, &length, &chunked)) {
                conn_fail(c, "malformed response", 0);
                return;
            }
            c->in_start += (size_t)(end + 4 - p);
            if (c->pub.status < 200) continue; /* 100 Continue and friends */
            release_opening(c);
            if (c->ops->head) {
                c->ops->head(&c->pub);
                if (c->gen != gen) return;
            }
            if (c->pub.status == 204 || c->pub.status == 304) {
                finish(c);
            } else if (chunked) {
                c->state = R_CHUNK_SIZE;
            } else if (has_length) {
                c->remaining = length;
                c->state = R_LENGTH;
                if (length == 0) finish(c);
            } else {
                c->close_after = true;
                c->state = R_UNTIL_CLOSE;
            }
            break;
        }
        case R_LENGTH:
        case R_CHUNK_DATA: {
            if (!avail) return;
            size_t take = avail < c->remaining ? avail : (size_t)c->remaining;
            c->in_start += take;
            c->remaining -= take;
            deliver(c, p, take);
            if (c->gen != gen || c->remaining) break;
            if (c->state == R_CHUNK_DATA)
                c->state = R_CHUNK_END;
            else
                finish(c);
            break;
        }
        case R_CHUNK_SIZE:
        case R_CHUNK_END:
        case R_TRAILER: {
            char *nl = memchr(p, '\n', avail);
            if (!nl) {
                if (avail > 1024) conn_fail(c, "malformed chunked body", 0);
                return;
            }
            c->in_start += (size_t)(nl + 1 - p);
            bool empty = nl == p || (nl == p + 1 && p[0] == '\r');
            if (c->state == R_CHUNK_END) {
                if (!empty) {
                    conn_fail(c, "malformed chunked body", 0);
                    return;
                }
                c->state = R_CHUNK_SIZE;
            } else if (c->state == R_TRAILER) {
                if (empty) finish(c);
            } else {
                char *e;
                c->remaining = strtoull(p, &e, 16);
                if (e == p) {
                    conn_fail(c, "malformed chunk size", 0);
                    return;
                }
                c->state = c->remaining ? R_CHUNK_DATA : R_TRAILER;
            }
            break;
        }
        case R_UNTIL_CLOSE:
            if (!avail) return;
            c->in_start = c->in_end;
            deliver(c, p, avail);
            break;
        }
    }
}

/* Make room for the next read; returns how much there is at
 * c->in + c->in_end. */
static size_t conn_in_room(conn *c) {
    if (c->in_start == c->in_end) c->in_start = c->in_end = 0;
    if (c->in_end == c->in_cap) {
        if (c->in_start > 0) {
            memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);
            c->in_end -= c->in_start;
            c->in_start = 0;
        } else {
            c->in_cap = c->in_cap ? c->in_cap * 2 : c->loop->recv_size;
            c->in = xalloc(c->in, c->in_cap);
        }
    }
    return c->in_cap - c->in_end;
}

/* Take one read of at most room bytes: a byte count, 0 when the server
 * closed, or -errno. Returns true if the socket may hold more. */
static bool conn_received(conn *c, ssize_t n, size_t room) {
    unsigned gen = c->gen;
    if (n > 0) {
        c->in_end += (size_t)n;
        parse(c);
        /* A short read emptied the socket; epoll (level-triggered) says
         * when there is more. Saves a recv that would say EAGAIN. */
        return c->gen == gen && (size_t)n == room;
    }
    if (n == 0) {
        if (c->state == R_UNTIL_CLOSE) {
            finish(c);
        } else if (c->state == R_IDLE) {
            close_fd(c); /* the server ended an idle keep-alive connection */
        } else {
            conn_fail(c, "connection closed by the server", 0);
        }
        return false;
    }
    if (n == -EINTR) return true;
    if (n != -EAGAIN) conn_fail(c, "recv", (int)-n);
    return false;
}

static void conn_read(conn *c) {
    for (;;) {
        size_t room = conn_in_room(c);
        ssize_t n = recv(c->fd, c->in + c->in_end, room, 0);
        if (!conn_received(c, n < 0 ? -errno : n, room)) return;
    }
}

/* Write what waits for room, unless the connection changed meanwhile. */
static void conn_event_out(conn *c, unsigned gen, uint32_t events) {
    if (c->gen == gen && c->fd >= 0 && (events & EPOLLOUT) && c->want_out) conn_write(c);
}

static void conn_event(conn *c, uint32_t events) {
    if (c->fd < 0) return; /* closed earlier in this batch */
    if (c->connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err) {
            conn_fail(c, "connect", err);
            return;
        }
        if (!(events & (EPOLLOUT | EPOLLIN))) return;
        c->connecting = false;
        conn_write(c);
        if (c->fd < 0) return;
    }
    unsigned gen = c->gen;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) conn_read(c);
    conn_event_out(c, gen, events);
}

/* The events of one poll with every first read in one submission. */
static void poll_batched(loop *l, const struct epoll_event *ev, int n) {
    int slot[EVENTS_PER_WAIT];
    unsigned gen[EVENTS_PER_WAIT];
    size_t room[EVENTS_PER_WAIT];
    for (int i = 0; i < n; i++) {
        conn *c = ev[i].data.ptr;
        slot[i] = -1;
        gen[i] = c->gen;
        if (c->fd < 0 || c->connecting || !(ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
            continue;
        room[i] = conn_in_room(c);
        slot[i] = io_batch_recv(l->batch, c->fd, c->in + c->in_end, room[i]);
    }
    bool failed = io_batch_run(l->batch) < 0;
    for (int i = 0; i < n; i++) {
        conn *c = ev[i].data.ptr;
        ssize_t r = slot[i] < 0 ? IO_BATCH_UNDONE : io_batch_result(l->batch, slot[i]);
        /* These events are stale for a connection an earlier one's
         * callbacks closed (and maybe reopened) meanwhile. */
        if (c->gen != gen[i]) continue;
        if (r == IO_BATCH_UNDONE) {
            conn_event(c, ev[i].events);
        } else {
            if (conn_received(c, r, room[i])) conn_read(c);
            conn_event_out(c, gen[i], ev[i].events);
        }
    }
    if (failed) {
        io_batch_free(l->batch);
        l->batch = NULL;
    }
}
