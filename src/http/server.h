/* server.h — the HTTP/1.1 server: listeners, connections, responses.
 *
 * One event loop per thread; each thread has its own SO_REUSEPORT listener,
 * so the kernel spreads connections over the threads and a connection lives
 * on one thread for its whole life. Requests are read whole (head + body,
 * Content-Length or chunked) and passed to one handler function. Keep-alive
 * and pipelining: requests on one connection are handled strictly in order.
 *
 * A handler answers synchronously (http_respond_* ... http_respond_end) or
 * later: it may hold a finished response until something else happens
 * (http_conn_hold / http_conn_release — used to acknowledge an append only
 * once it is durable), park the connection (http_conn_park — long-poll), or
 * turn it into a chunked event stream (http_stream_* — SSE).
 *
 * Thread rules: every function here must be called on the connection's own
 * loop thread, except http_conn_ref/http_conn_unref/http_conn_loop. To act on
 * a connection from another thread, take a reference and loop_post() to
 * http_conn_loop(c).
 */
#ifndef WEFT_HTTP_SERVER_H
#define WEFT_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../net/loop.h"
#include "../util/buf.h"
#include "parser.h"

typedef struct http_conn http_conn;
typedef struct http_server http_server;

typedef struct http_request {
    http_request_head head;
    http_target target;
    buf body;
    uint64_t start_ms; /* loop_now_ms() when the head was complete */
    /* Who the caller is, when a layer above verified it (a token's
     * subject); NULL otherwise. Valid while the handler runs. */
    const char *principal;
} http_request;

/* The request is valid until the response is complete. */
typedef void (*http_handler_fn)(void *ctx, http_conn *c, http_request *req);

typedef struct http_server_config {
    const char *host;
    int port;
    int threads;
    size_t max_head_bytes;
    size_t max_target_len;
    uint64_t max_body;
    unsigned request_timeout_ms; /* to receive a whole request once it began */
    unsigned idle_timeout_ms;    /* keep-alive connection with no request */
    unsigned write_timeout_ms;   /* client not reading our response */
    unsigned max_conns;
    bool io_uring; /* batch socket reads and writes through io_uring where available */
    http_handler_fn handler;
    void *handler_ctx;
} http_server_config;

/* Bind listeners and start the loop threads. NULL + message on failure. */
http_server *http_server_start(const http_server_config *cfg, char *err, size_t errlen);
/* Stop accepting new connections (graceful shutdown, step 1). */
void http_server_stop_accepting(http_server *s);
/* Connections with a request in progress (read, handled, or held). */
unsigned http_server_busy(http_server *s);
/* Close every connection, stop and join the threads, free everything. */
void http_server_free(http_server *s);

/* --- responses (on the connection's thread) --- */
void http_respond_begin(http_conn *c, int status);
void http_respond_header(http_conn *c, const char *name, const char *value);
void http_respond_header_u64(http_conn *c, const char *name, uint64_t value);
/* Header lines already formatted ("Name: value\r\n" each), e.g. a constant block. */
void http_respond_header_lines(http_conn *c, const char *lines, size_t n);
void http_respond_headerf(http_conn *c, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void http_respond_body(http_conn *c, const void *p, size_t n);
/* Send len bytes of fd from off (sendfile). release(rarg) is called once the
 * bytes are sent or the connection is gone. */
void http_respond_file(http_conn *c, int fd, uint64_t off, uint64_t len,
                       void (*release)(void *), void *rarg);
/* Finish the head (adds Content-Length and Connection) and queue it. For a
 * HEAD request the body is dropped but Content-Length is kept. */
void http_respond_end(http_conn *c);
/* A complete error response with a short text/plain message. */
void http_respond_error(http_conn *c, int status, const char *msg);

/* Do not send the queued response until http_conn_release(). */
void http_conn_hold(http_conn *c);
void http_conn_release(http_conn *c);

/* Replace a held response with an error (what it promised cannot be kept). */
void http_conn_fail(http_conn *c, int status, const char *msg);

/* The handler will answer later; on_abort(arg) runs (on the connection's
 * thread) if the connection closes first. Cleared by the next respond_end or
 * stream_begin. */
void http_conn_park(http_conn *c, void (*on_abort)(void *), void *arg);

/* Forget the on_abort registered with `arg` (its owner is going away). */
void http_conn_unpark(http_conn *c, void *arg);

/* --- chunked event streams (SSE) --- */
void http_stream_begin(http_conn *c, int status); /* after respond_header calls */
/* One chunk holding the iovcnt pieces, copied: the caller keeps its memory. */
void http_stream_write(http_conn *c, const struct iovec *iov, int iovcnt);
/* Final zero-length chunk; the connection closes once it is sent. */
void http_stream_end(http_conn *c);
/* Bytes queued but not yet written to the socket. */
size_t http_conn_pending(const http_conn *c);
/* on_drain(arg) runs when the output queue becomes empty. */
void http_conn_on_drain(http_conn *c, void (*on_drain)(void *), void *arg);

/* --- lifetime --- */
void http_conn_ref(http_conn *c);
void http_conn_unref(http_conn *c);
bool http_conn_closed(const http_conn *c);
loop *http_conn_loop(const http_conn *c);
/* The request being handled (valid while parked or held). */
http_request *http_conn_request(http_conn *c);
/* Remote address as text, for logs. */
const char *http_conn_peer(const http_conn *c);
/* An empty buffer for bytes needed only until the caller returns to the
 * loop: owned by c's worker thread, the only thread that may call this,
 * and handed out again (emptied) by its next call, so one caller must be
 * done with it before another asks. Short-lived data then costs no
 * allocation per request. */
buf *http_conn_scratch(http_conn *c);

const char *http_status_reason(int status);

#endif
