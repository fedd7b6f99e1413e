/* respond.c — the answer helpers every stream request uses: the headers
 * every answer carries, errors, the stream a request names, answers held
 * until durable, and a stream's bytes as a body. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../util/log.h"
#include "../util/mem.h"
#include "protocol.h"
#include "stream_int.h"

/* The headers every answer carries, formatted once. */
#define CORS_HEADERS                                                                              \
    "Access-Control-Allow-Origin: *\r\n"                                                          \
    "Access-Control-Expose-Headers: Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, "       \
    "Stream-Closed, Stream-TTL, Stream-Expires-At, Stream-Seq, ETag, Location, Content-Type, "    \
    "Producer-Epoch, Producer-Seq, Producer-Expected-Seq, Producer-Received-Seq, "                \
    "stream-sse-data-encoding, electric-handle, electric-offset, electric-schema, electric-cursor, "  \
    "electric-up-to-date, electric-snapshot\r\n"
#define SAFETY_HEADERS                                                                            \
    "X-Content-Type-Options: nosniff\r\n"                                                         \
    "Cross-Origin-Resource-Policy: cross-origin\r\n"

static const char headers_cors[] = CORS_HEADERS SAFETY_HEADERS;
static const char headers_plain[] = SAFETY_HEADERS;

void respond_begin(streams *st, http_conn *c, int status) {
    http_respond_begin(c, status);
    if (st->limits.cors) http_respond_header_lines(c, headers_cors, sizeof headers_cors - 1);
    else http_respond_header_lines(c, headers_plain, sizeof headers_plain - 1);
}

void respond_error(streams *st, http_conn *c, int status, const char *path, const char *msg) {
    http_request *req = http_conn_request(c);
    log_write(LOG_ERROR, "%.*s %s: %d %s", (int)req->head.method_len, req->head.method_str,
              path ? path : "-", status, msg);
    respond_begin(st, c, status);
    http_respond_header(c, "Content-Type", "text/plain; charset=utf-8");
    http_respond_header(c, "Cache-Control", "no-store");
    http_respond_body(c, msg, strlen(msg));
    http_respond_body(c, "\n", 1);
    http_respond_end(c);
}

void respond_storage_error(streams *st, http_conn *c, const char *path) {
    char msg[160];
    if (errno == ENOSPC || errno == EDQUOT)
        snprintf(msg, sizeof msg, "storage full: %s; not stored, retry once the server has room",
                 strerror(errno));
    else
        snprintf(msg, sizeof msg, "storage error: %s", strerror(errno));
    respond_error(st, c, 507, path, msg);
}

void respond_offset(http_conn *c, const char *name, uint64_t pos) {
    char off[OFFSET_LEN + 1];
    offset_format(pos, off);
    http_respond_header(c, name, off);
}

void respond_config(http_conn *c, const stream *s) {
    http_respond_header(c, "Content-Type", s->content_type);
    if (s->ttl >= 0) http_respond_headerf(c, "Stream-TTL", "%lld", (long long)s->ttl);
    if (s->expires_str) http_respond_header(c, "Stream-Expires-At", s->expires_str);
}

stream *stream_for_client(streams *st, http_conn *c, const char *path, size_t path_len,
                          int64_t now) {
    stream *s = stream_lookup_live(st, path, path_len, now);
    if (!s) {
        respond_error(st, c, 404, path, "stream not found");
        return NULL;
    }
    if (s->deleted) {
        respond_error(st, c, 410, path, "stream was deleted");
        return NULL;
    }
    return s;
}

/* Logged but not yet published to readers: either not durable, or durable
 * with the call that publishes it waiting for the lock (it then also takes
 * this entry, whose LSN is no newer). */
void respond_hold(streams *st, http_conn *c, stream *s) {
    if (s->visible != s->tail || s->last_lsn > store_durable_lsn(st->store))
        stream_commit(st, s, s->last_lsn, c);
}

void respond_after_pending(streams *st, http_conn *c, stream *s) {
    respond_hold(st, c, s);
    http_respond_end(c);
}

/* Always through the pending queue, even if the store already reports lsn
 * durable: the call that publishes it to readers is then still waiting for
 * the lock, and the writer must not get ahead of the readers. */
void respond_when_durable(streams *st, http_conn *c, stream *s, store_lsn lsn) {
    stream_commit(st, s, lsn, c);
    http_respond_end(c);
}

/* [a, b) as file segments of the answer, through the fork chain: what is in
 * a data file goes by sendfile; recent bytes the store still holds in
 * memory are copied. */
static bool respond_files(streams *st, http_conn *c, stream *s, uint64_t a, uint64_t b) {
    if (a < s->fork_off) {
        if (!s->src) return false; /* source lost (see snapshot_recovered) */
        uint64_t e = b < s->fork_off ? b : s->fork_off;
        if (!respond_files(st, c, s->src, a, e)) return false;
        a = e;
    }
    if (a >= b) return true;
    uint64_t off = a - s->fork_off, end = b - s->fork_off;
    uint64_t written = store_written(st->store, s->id);
    if (off < written) {
        uint64_t n = end < written ? end - off : written - off;
        store_file *f = store_file_acquire(st->store, s->id);
        if (!f) {
            log_write(LOG_ERROR, "%s: cannot open data file: %s", s->path, strerror(errno));
            return false;
        }
        http_respond_file(c, store_file_fd(f), off, n, store_file_done, f);
        off += n;
    }
    if (off < end) {
        size_t n = (size_t)(end - off);
        uint8_t *mem = xmalloc(n);
        bool ok = store_read(st->store, s->id, off, mem, n) == 0;
        if (ok) http_respond_body(c, mem, n);
        else log_write(LOG_ERROR, "%s: cannot read data: %s", s->path, strerror(errno));
        free(mem);
        if (!ok) return false;
    }
    return true;
}

/* Below this many bytes a body is copied instead of sendfile'd: the head
 * and the data then leave in one writev, where sendfile would cost a second
 * system call and a second TCP segment for a few hundred bytes (the common
 * long-poll answer). */
#define COPY_MAX 32768

bool respond_range(streams *st, http_conn *c, stream *s, uint64_t a, uint64_t b) {
    if (b - a > COPY_MAX) return respond_files(st, c, s, a, b);
    uint8_t tmp[COPY_MAX];
    if (!stream_pread(st, s, a, (size_t)(b - a), tmp)) return false;
    http_respond_body(c, tmp, (size_t)(b - a));
    return true;
}
