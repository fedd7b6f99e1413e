/* http_client.h — the load generator's event loop and HTTP/1.1 client.
 *
 * A loop is one epoll instance plus a timer heap, driven by one thread; every
 * callback runs on that thread. An hc_conn is a keep-alive client connection
 * carrying one request at a time (no pipelining). Responses may be
 * Content-Length, chunked or close-delimited; bodies are handed to the owner
 * as they arrive, so endless responses (SSE) work as well as short ones.
 *
 * New sockets are only created from the timer phase of loop_poll(), never
 * while epoll events are being dispatched: a closed descriptor number cannot
 * be reused by another connection while stale events for it are pending. The
 * loop also limits how many connections are "opening" (connecting, until the
 * first response head arrives) so that thousands of clients do not overflow
 * the server's accept queue at once.
 */
#ifndef LOADGEN_HTTP_CLIENT_H
#define LOADGEN_HTTP_CLIENT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int64_t now_ns(void); /* CLOCK_MONOTONIC */

typedef struct loop loop;

typedef struct timer {
    int64_t due; /* CLOCK_MONOTONIC ns */
    void (*fn)(void *arg);
    void *arg;
    int index; /* position in the heap, -1 when not armed */
} timer;

/* recv_size: initial receive buffer per connection; max_opening: see above;
 * batch_io: read the sockets of one poll with one io_uring submission, and
 * write the requests made during it with another, where io_uring is
 * available (else one recv(2) or send(2) each). */
loop *loop_new(const struct sockaddr_in *addr, size_t recv_size, int max_opening, bool batch_io);
void loop_free(loop *l);
/* Wait up to max_wait_ms for events, dispatch them, then run due timers and
 * start queued connects. */
void loop_poll(loop *l, int max_wait_ms);

void timer_init(timer *t, void (*fn)(void *), void *arg);
void timer_set(loop *l, timer *t, int64_t due);

typedef struct hc_conn hc_conn;

typedef struct hc_ops {
    void (*head)(hc_conn *c);                           /* status and headers parsed; optional */
    void (*body)(hc_conn *c, const char *p, size_t n); /* decoded body bytes; optional */
    void (*done)(hc_conn *c);                           /* the response is complete */
    void (*fail)(hc_conn *c, const char *why);          /* connection lost with a request outstanding */
    void (*sent)(hc_conn *c);                           /* the request is fully written; optional */
} hc_ops;

/* Fields the owner may read from its callbacks. */
struct hc_conn {
    void *user;
    int status;
    bool up_to_date;             /* Stream-Up-To-Date: true */
    char next_offset[96];        /* Stream-Next-Offset, "" if absent */
    char cursor[32];             /* Stream-Cursor, "" if absent */
    char error_body[160];        /* start of the body of a non-2xx response */
    bool release_on_sent;        /* leave "opening" once the request is written, not at the head */
};

hc_conn *hc_new(loop *l, const hc_ops *ops, void *user);
void hc_free(hc_conn *c);
/* Queue one request (complete bytes); connects first if needed. */
void hc_request(hc_conn *c, const char *req, size_t len);

#endif
