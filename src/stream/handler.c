/* handler.c — routing and the write side of the protocol: create (PUT, forks
 * included), append and close (POST), delete, metadata (HEAD), CORS
 * preflight. Reads live in read.c.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../util/json.h"
#include "../util/log.h"
#include "../util/mem.h"
#include "protocol.h"
#include "stream.h"

#define STREAM_PREFIX "/v1/stream/"

/* The headers every answer carries, formatted once. */
#define CORS_HEADERS                                                                              \
    "Access-Control-Allow-Origin: *\r\n"                                                          \
    "Access-Control-Expose-Headers: Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, "       \
    "Stream-Closed, Stream-TTL, Stream-Expires-At, Stream-Seq, ETag, Location, Content-Type, "    \
    "Producer-Epoch, Producer-Seq, Producer-Expected-Seq, Producer-Received-Seq, "                \
    "stream-sse-data-encoding\r\n"
#define SAFETY_HEADERS                                                                            \
    "X-Content-Type-Options: nosniff\r\n"                                                         \
    "Cross-Origin-Resource-Policy: cross-origin\r\n"

static const char headers_cors[] = CORS_HEADERS SAFETY_HEADERS;
static const char headers_plain[] = SAFETY_HEADERS;

void respond_begin(http_conn *c, int status) {
    http_respond_begin(c, status);
    if (streams_limits.cors) http_respond_header_lines(c, headers_cors, sizeof headers_cors - 1);
    else http_respond_header_lines(c, headers_plain, sizeof headers_plain - 1);
}

void respond_error(http_conn *c, int status, const char *path, const char *msg) {
    http_request *req = http_conn_request(c);
    log_write(LOG_ERROR, "%.*s %s: %d %s", (int)req->head.method_len, req->head.method_str,
              path ? path : "-", status, msg);
    respond_begin(c, status);
    http_respond_header(c, "Content-Type", "text/plain; charset=utf-8");
    http_respond_header(c, "Cache-Control", "no-store");
    http_respond_body(c, msg, strlen(msg));
    http_respond_body(c, "\n", 1);
    http_respond_end(c);
}

/* For load balancers and orchestrators: answering means serving. A store
 * that stopped taking writes for good (a failed write or fsync) is 503, so
 * that an orchestrator restarts weft, which recovers; a full disk is not,
 * as reads go on and a restart frees no space, but the body says so. */
static void handle_healthz(http_conn *c) {
    bool for_good = false;
    int err = streams_store ? store_refusing(streams_store, &for_good) : 0;
    char msg[200];
    if (!err)
        snprintf(msg, sizeof msg, "ok\n");
    else if (for_good)
        snprintf(msg, sizeof msg, "storage failed: %s; writes are refused until weft is restarted\n",
                 strerror(err));
    else
        snprintf(msg, sizeof msg, "ok; storage full: %s; writes are refused until space is freed\n",
                 strerror(err));
    respond_begin(c, for_good ? 503 : 200);
    http_respond_header(c, "Content-Type", "text/plain; charset=utf-8");
    http_respond_header(c, "Cache-Control", "no-store");
    http_respond_body(c, msg, strlen(msg));
    http_respond_end(c);
}

static const char *hdr(http_request *req, const char *name, size_t *len) {
    return http_head_get(&req->head, name, len);
}

static void offset_header(http_conn *c, const char *name, uint64_t pos) {
    char off[OFFSET_LEN + 1];
    offset_format(pos, off);
    http_respond_header(c, name, off);
}

/* Headers describing a stream's configuration (create, HEAD). */
static void config_headers(http_conn *c, const stream *s) {
    http_respond_header(c, "Content-Type", s->content_type);
    if (s->ttl >= 0) http_respond_headerf(c, "Stream-TTL", "%lld", (long long)s->ttl);
    if (s->expires_str) http_respond_header(c, "Stream-Expires-At", s->expires_str);
}

stream *stream_for_client(http_conn *c, const char *path, size_t path_len, int64_t now) {
    stream *s = stream_lookup_live(path, path_len, now);
    if (!s) {
        respond_error(c, 404, path, "stream not found");
        return NULL;
    }
    if (s->deleted) {
        respond_error(c, 410, path, "stream was deleted");
        return NULL;
    }
    return s;
}

/* The store refused a write (disk full, I/O error): nothing was stored. */
static void respond_storage_error(http_conn *c, const char *path) {
    char msg[160];
    if (errno == ENOSPC || errno == EDQUOT)
        snprintf(msg, sizeof msg, "storage full: %s; not stored, retry once the server has room",
                 strerror(errno));
    else
        snprintf(msg, sizeof msg, "storage error: %s", strerror(errno));
    respond_error(c, 507, path, msg);
}

/* Answer only once everything the stream has logged so far is durable: an
 * idempotent retry must not be told "stored" before the original is. */
static void respond_after_pending(http_conn *c, stream *s) {
    if (s->last_lsn > store_durable_lsn(streams_store)) stream_commit(s, s->last_lsn, c);
    http_respond_end(c);
}

/* Send the prepared response once `lsn` is durable. Always through the
 * pending queue, even if the store already reports lsn durable: the
 * on_durable call that publishes it to readers is then still waiting for
 * streams_lock, and the client must not get ahead of the readers. */
static void respond_when_durable(http_conn *c, stream *s, store_lsn lsn) {
    stream_commit(s, lsn, c);
    http_respond_end(c);
}

/* --- PUT --- */

typedef struct create_req {
    const char *ct;
    size_t ct_len;
    int64_t ttl;
    int64_t expires_at;
    const char *expires;
    size_t expires_len;
    bool closed;
    const char *fork_from;
    size_t fork_from_len;
    const char *fork_off;
    size_t fork_off_len;
    const char *fork_sub;
    size_t fork_sub_len;
} create_req;

/* Resolve Stream-Fork-Offset (+ sub-offset) against the source. Returns an
 * error message or NULL. A sub-offset counts bytes (messages, for JSON) past
 * the anchor; it is bounded by the source's tail, not by the extent of the
 * next append, which the data files do not record. */
static const char *fork_point(stream *src, const create_req *r, uint64_t *point) {
    uint64_t off = src->visible;
    if (r->fork_off) {
        offset_kind k = offset_parse(r->fork_off, r->fork_off_len, &off);
        if (k == OFFSET_START) off = 0;
        else if (k == OFFSET_NOW) off = src->visible;
        else if (k != OFFSET_AT) return "invalid Stream-Fork-Offset";
        if (off > src->visible) return "Stream-Fork-Offset is beyond the source stream's tail";
        if (!stream_at_boundary(src, off)) return "Stream-Fork-Offset is not a message boundary";
    }
    if (r->fork_sub) {
        int64_t sub;
        if (!ttl_parse(r->fork_sub, r->fork_sub_len, &sub))
            return "invalid Stream-Fork-Sub-Offset: expected a non-negative integer";
        if (src->json) {
            /* Count whole messages: each stored message ends in '\n'. */
            uint8_t chunk[4096];
            uint64_t pos = off;
            while (sub > 0) {
                if (pos >= src->visible) return "Stream-Fork-Sub-Offset is past the source's data";
                size_t n = src->visible - pos < sizeof chunk ? (size_t)(src->visible - pos) : sizeof chunk;
                if (!stream_pread(src, pos, n, chunk)) return "cannot read source stream";
                size_t i = 0;
                for (; i < n && sub > 0; i++)
                    if (chunk[i] == '\n') sub--;
                pos += i;
            }
            off = pos;
        } else {
            if ((uint64_t)sub > src->visible - off) return "Stream-Fork-Sub-Offset is past the source's data";
            off += (uint64_t)sub;
        }
    }
    *point = off;
    return NULL;
}

/* Does an existing stream have the configuration this PUT asks for? */
static bool same_config(const stream *s, const create_req *r, const buf *fork_path) {
    if (r->ct && !media_type_eq(s->content_type, strlen(s->content_type), r->ct, r->ct_len))
        return false;
    if (!r->ct && !s->src && !media_type_eq(s->content_type, strlen(s->content_type),
                                            "application/octet-stream", 24))
        return false;
    if (r->closed != s->closed) return false;
    if (!r->fork_from) return !s->src && r->ttl == s->ttl && r->expires_at == s->expires_at;
    if (!s->src || strlen(s->src->path) != fork_path->len ||
        memcmp(s->src->path, fork_path->data, fork_path->len) != 0)
        return false;
    if (r->ttl >= 0 && r->ttl != s->ttl) return false;
    if (r->expires && r->expires_at != s->expires_at) return false;
    if (r->fork_off || r->fork_sub) {
        uint64_t point;
        if (fork_point(s->src, r, &point) || point != s->fork_off) return false;
    }
    return true;
}

static void handle_put(http_conn *c, http_request *req, const char *path, size_t path_len) {
    create_req r = {.ttl = -1};
    size_t n;
    const char *v;
    r.ct = hdr(req, "content-type", &r.ct_len);
    if (r.ct && !media_type_valid(r.ct, r.ct_len)) {
        respond_error(c, 400, path, "invalid Content-Type");
        return;
    }
    if ((v = hdr(req, "stream-ttl", &n)) && !ttl_parse(v, n, &r.ttl)) {
        respond_error(c, 400, path, "invalid Stream-TTL: expected a non-negative integer of seconds");
        return;
    }
    if ((r.expires = hdr(req, "stream-expires-at", &r.expires_len)) &&
        !rfc3339_parse(r.expires, r.expires_len, &r.expires_at)) {
        respond_error(c, 400, path, "invalid Stream-Expires-At: expected an RFC 3339 timestamp");
        return;
    }
    if (r.ttl >= 0 && r.expires) {
        respond_error(c, 400, path, "Stream-TTL and Stream-Expires-At are mutually exclusive");
        return;
    }
    v = hdr(req, "stream-closed", &n);
    r.closed = value_is_true(v, n);
    r.fork_from = hdr(req, "stream-forked-from", &r.fork_from_len);
    r.fork_off = hdr(req, "stream-fork-offset", &r.fork_off_len);
    r.fork_sub = hdr(req, "stream-fork-sub-offset", &r.fork_sub_len);
    buf fork_path;
    buf_init(&fork_path);
    if (r.fork_from) {
        /* Accept a full URL path or one relative to the stream root. */
        if (!http_percent_decode(r.fork_from, r.fork_from_len, &fork_path) || fork_path.len == 0) {
            buf_free(&fork_path);
            respond_error(c, 400, path, "invalid Stream-Forked-From");
            return;
        }
        if (fork_path.data[0] != '/') {
            buf rel = fork_path;
            buf_init(&fork_path);
            buf_append_str(&fork_path, STREAM_PREFIX);
            buf_append(&fork_path, rel.data, rel.len);
            buf_free(&rel);
        }
    } else if (r.fork_off || r.fork_sub) {
        respond_error(c, 400, path, "Stream-Fork-Offset requires Stream-Forked-From");
        return;
    }

    int64_t now = wall_ms();
    pthread_mutex_lock(&streams_lock);
    stream *s = stream_lookup_live(path, path_len, now);
    if (s) {
        if (s->deleted) {
            respond_error(c, 409, path, "stream was deleted and still has forks; path cannot be reused");
        } else if (!same_config(s, &r, &fork_path)) {
            respond_error(c, 409, path, "stream already exists with a different configuration");
        } else {
            respond_begin(c, 200);
            config_headers(c, s);
            offset_header(c, "Stream-Next-Offset", s->tail);
            if (s->closed) http_respond_header(c, "Stream-Closed", "true");
            respond_after_pending(c, s);
        }
        goto out;
    }
    stream *src = NULL;
    uint64_t point = 0;
    if (r.fork_from) {
        src = stream_lookup_live((const char *)fork_path.data, fork_path.len, now);
        if (!src) {
            respond_error(c, 404, path, "fork source stream not found");
            goto out;
        }
        if (src->deleted) {
            respond_error(c, 409, path, "fork source stream was deleted");
            goto out;
        }
        if (r.ct && !media_type_eq(r.ct, r.ct_len, src->content_type, strlen(src->content_type))) {
            respond_error(c, 409, path, "Content-Type differs from the fork source's");
            goto out;
        }
        const char *err = fork_point(src, &r, &point);
        if (err) {
            respond_error(c, 400, path, err);
            goto out;
        }
    }
    if (stream_count() >= streams_limits.max_streams) {
        respond_error(c, 507, path, "stream limit reached (--max-streams)");
        goto out;
    }
    const char *ct = src ? src->content_type : r.ct ? NULL : "application/octet-stream";
    char *ctype = ct ? xstrndup(ct, strlen(ct)) : xstrndup(r.ct, r.ct_len);
    bool json = media_type_eq(ctype, strlen(ctype), "application/json", 16);
    buf data;
    buf_init(&data);
    if (req->body.len > 0) {
        if (json) {
            size_t count;
            json_error jerr;
            json_status st = json_split_messages(req->body.data, req->body.len,
                                                 streams_limits.json_max_depth, &data, &count, &jerr);
            if (st != JSON_OK && st != JSON_ERR_EMPTY_ARRAY) {
                char msg[160];
                snprintf(msg, sizeof msg, "invalid JSON at byte %zu: %s", jerr.pos, jerr.msg);
                respond_error(c, 400, path, msg);
                free(ctype);
                buf_free(&data);
                goto out;
            }
        } else {
            buf_append(&data, req->body.data, req->body.len);
        }
    }
    s = stream_new(path, path_len, store_id_next(streams_store));
    s->content_type = ctype;
    stream_set_content_type_flags(s);
    s->closed = r.closed;
    s->last_access = now;
    if (src) {
        s->src = src;
        stream_ref(src);
        src->nforks++;
        s->fork_off = point;
        /* Without its own expiry a fork inherits the source's. */
        if (r.ttl < 0 && !r.expires) {
            s->ttl = src->ttl;
            s->expires_at = src->expires_at;
            if (src->expires_str) s->expires_str = xstrndup(src->expires_str, strlen(src->expires_str));
        }
    }
    if (r.ttl >= 0) s->ttl = r.ttl;
    if (r.expires) {
        s->expires_at = r.expires_at;
        s->expires_str = xstrndup(r.expires, r.expires_len);
    }
    s->tail = s->fork_off + data.len;
    s->visible = s->fork_off;
    buf meta;
    buf_init(&meta);
    stream_meta_encode(s, &meta);
    store_lsn lsn = store_create(streams_store, s->id, (const uint8_t *)path, path_len, meta.data,
                                 meta.len, data.data, data.len);
    buf_free(&meta);
    buf_free(&data);
    if (lsn == 0) {
        stream_discard(s);
        respond_storage_error(c, path);
        goto out;
    }
    stream_watch_expiry(s);
    respond_begin(c, 201);
    size_t host_len;
    const char *host = hdr(req, "host", &host_len);
    http_respond_headerf(c, "Location", "http://%.*s%s", host ? (int)host_len : 9,
                         host ? host : "localhost", s->path);
    config_headers(c, s);
    offset_header(c, "Stream-Next-Offset", s->tail);
    if (s->closed) http_respond_header(c, "Stream-Closed", "true");
    respond_when_durable(c, s, lsn);
out:
    pthread_mutex_unlock(&streams_lock);
    buf_free(&fork_path);
}

/* --- POST --- */

typedef struct producer_req {
    bool present;
    const char *id;
    size_t id_len;
    uint64_t epoch, seq;
} producer_req;

static producer *find_producer(stream *s, const producer_req *p) {
    for (uint32_t i = 0; i < s->nproducers; i++)
        if (strlen(s->producers[i].id) == p->id_len && memcmp(s->producers[i].id, p->id, p->id_len) == 0)
            return &s->producers[i];
    return NULL;
}

static void producer_headers(http_conn *c, uint64_t epoch, uint64_t seq) {
    http_respond_header_u64(c, "Producer-Epoch", epoch);
    http_respond_header_u64(c, "Producer-Seq", seq);
}

/* Stream-Seq values compare byte-wise lexicographically. */
static bool seq_increases(const char *last, const char *next, size_t next_len) {
    size_t last_len = strlen(last);
    int cmp = memcmp(next, last, next_len < last_len ? next_len : last_len);
    return cmp > 0 || (cmp == 0 && next_len > last_len);
}

static void closed_conflict(http_conn *c, stream *s, const char *path) {
    log_write(LOG_ERROR, "POST %s: 409 stream is closed", path);
    respond_begin(c, 409);
    http_respond_header(c, "Stream-Closed", "true");
    offset_header(c, "Stream-Next-Offset", s->tail);
    http_respond_header(c, "Content-Type", "text/plain; charset=utf-8");
    http_respond_body(c, "stream is closed\n", 17);
    http_respond_end(c);
}

static void handle_post(http_conn *c, http_request *req, const char *path, size_t path_len) {
    size_t n;
    const char *v = hdr(req, "stream-closed", &n);
    bool close_req = value_is_true(v, n);
    producer_req p = {0};
    size_t el, sl;
    p.id = hdr(req, "producer-id", &p.id_len);
    const char *ep = hdr(req, "producer-epoch", &el);
    const char *sq = hdr(req, "producer-seq", &sl);
    if (p.id || ep || sq) {
        if (!p.id || !ep || !sq) {
            respond_error(c, 400, path, "Producer-Id, Producer-Epoch and Producer-Seq must be sent together");
            return;
        }
        if (p.id_len == 0) {
            respond_error(c, 400, path, "Producer-Id must not be empty");
            return;
        }
        if (!u53_parse(ep, el, &p.epoch)) {
            respond_error(c, 400, path, "invalid Producer-Epoch: expected an integer 0..2^53-1");
            return;
        }
        if (!u53_parse(sq, sl, &p.seq)) {
            respond_error(c, 400, path, "invalid Producer-Seq: expected an integer 0..2^53-1");
            return;
        }
        p.present = true;
    }
    size_t ct_len;
    const char *ct = hdr(req, "content-type", &ct_len);
    size_t seq_len;
    const char *stream_seq = hdr(req, "stream-seq", &seq_len);
    bool has_body = req->body.len > 0;

    /* A JSON body is split into messages before taking the lock, on the
     * assumption that it goes to a JSON stream; whether it does (else 409),
     * and what comes first when both are wrong, is decided under the lock. */
    buf *data = http_conn_scratch(c);
    bool json_body = has_body && ct && media_type_eq(ct, ct_len, "application/json", 16);
    json_status jst = JSON_OK;
    json_error jerr = {0};
    if (json_body) {
        size_t count;
        jst = json_split_messages(req->body.data, req->body.len, streams_limits.json_max_depth,
                                  data, &count, &jerr);
    }

    pthread_mutex_lock(&streams_lock);
    int64_t now = wall_ms();
    stream *s = stream_for_client(c, path, path_len, now);
    if (!s) goto out;
    stream_touch(s, now);
    if (!has_body && !close_req) {
        respond_error(c, 400, path, "empty body: an append needs data (or Stream-Closed: true)");
        goto out;
    }
    if (s->closed) {
        bool same_closer = p.present && s->closed_by_id && strlen(s->closed_by_id) == p.id_len &&
                           memcmp(s->closed_by_id, p.id, p.id_len) == 0 &&
                           s->closed_by_epoch == p.epoch && s->closed_by_seq == p.seq;
        if (same_closer || (!has_body && close_req)) {
            respond_begin(c, 204);
            offset_header(c, "Stream-Next-Offset", s->tail);
            http_respond_header(c, "Stream-Closed", "true");
            if (p.present) producer_headers(c, p.epoch, p.seq);
            respond_after_pending(c, s);
        } else {
            closed_conflict(c, s, path);
        }
        goto out;
    }
    if (has_body) {
        if (!ct) {
            respond_error(c, 400, path, "missing Content-Type");
            goto out;
        }
        if (!media_type_eq(ct, ct_len, s->content_type, strlen(s->content_type))) {
            respond_error(c, 409, path, "Content-Type does not match the stream's");
            goto out;
        }
    }
    producer *pr = NULL;
    if (p.present) {
        pr = find_producer(s, &p);
        if (pr && p.epoch < pr->epoch) {
            log_write(LOG_ERROR, "POST %s: 403 stale producer epoch", path);
            respond_begin(c, 403);
            http_respond_header_u64(c, "Producer-Epoch", pr->epoch);
            http_respond_header(c, "Content-Type", "text/plain; charset=utf-8");
            http_respond_body(c, "stale producer epoch\n", 21);
            http_respond_end(c);
            goto out;
        }
        bool new_epoch = !pr || p.epoch > pr->epoch;
        if (new_epoch && p.seq != 0) {
            if (pr) {
                respond_error(c, 400, path, "a new Producer-Epoch must start at Producer-Seq 0");
                goto out;
            }
            log_write(LOG_ERROR, "POST %s: 409 producer sequence gap", path);
            respond_begin(c, 409);
            http_respond_header(c, "Producer-Expected-Seq", "0");
            http_respond_header_u64(c, "Producer-Received-Seq", p.seq);
            http_respond_end(c);
            goto out;
        }
        if (!new_epoch) {
            if (p.seq <= pr->seq) {
                respond_begin(c, 204);
                offset_header(c, "Stream-Next-Offset", s->tail);
                producer_headers(c, pr->epoch, pr->seq);
                respond_after_pending(c, s);
                goto out;
            }
            if (p.seq > pr->seq + 1) {
                log_write(LOG_ERROR, "POST %s: 409 producer sequence gap", path);
                respond_begin(c, 409);
                http_respond_header_u64(c, "Producer-Expected-Seq", pr->seq + 1);
                http_respond_header_u64(c, "Producer-Received-Seq", p.seq);
                http_respond_end(c);
                goto out;
            }
        }
    }
    if (stream_seq && s->stream_seq && !seq_increases(s->stream_seq, stream_seq, seq_len)) {
        respond_error(c, 409, path, "Stream-Seq must increase");
        goto out;
    }
    /* A non-JSON body is stored as it came; a JSON one as split above (the
     * content types matched, so the stream is JSON exactly when it is). */
    const uint8_t *bytes = req->body.data;
    size_t nbytes = req->body.len;
    if (json_body) {
        if (jst == JSON_ERR_EMPTY_ARRAY) {
            respond_error(c, 400, path, "empty JSON array: nothing to append");
            goto out;
        }
        if (jst != JSON_OK) {
            char msg[160];
            snprintf(msg, sizeof msg, "invalid JSON at byte %zu: %s", jerr.pos, jerr.msg);
            respond_error(c, 400, path, msg);
            goto out;
        }
        bytes = data->data;
        nbytes = data->len;
    }
    /* Accepted: apply to the in-memory state, log it, and put the state back
     * if the log refuses (the client is told nothing was stored). */
    stream_will_change(s);
    bool meta_changed = p.present || stream_seq || close_req;
    producer saved_pr = pr ? *pr : (producer){0};
    bool new_pr = p.present && !pr;
    char *saved_seq = s->stream_seq;
    char *saved_closer = s->closed_by_id;
    uint64_t saved_closer_epoch = s->closed_by_epoch, saved_closer_seq = s->closed_by_seq;
    if (p.present) {
        if (!pr) {
            s->producers = xrealloc(s->producers, (s->nproducers + 1) * sizeof *s->producers);
            pr = &s->producers[s->nproducers++];
            pr->id = xstrndup(p.id, p.id_len);
        }
        pr->epoch = p.epoch;
        pr->seq = p.seq;
    }
    if (stream_seq) s->stream_seq = xstrndup(stream_seq, seq_len);
    if (close_req) {
        s->closed = true;
        if (p.present) {
            s->closed_by_id = xstrndup(p.id, p.id_len);
            s->closed_by_epoch = p.epoch;
            s->closed_by_seq = p.seq;
        }
    }
    /* Appends with producer headers change the meta every time; one buffer,
     * guarded by streams_lock, saves an allocation per append (the store
     * copies the bytes). */
    static buf meta;
    buf_reset(&meta);
    if (meta_changed) stream_meta_encode(s, &meta);
    store_lsn lsn = store_append(streams_store, s->id, s->tail - s->fork_off, bytes, nbytes,
                                 meta_changed ? meta.data : NULL, meta.len);
    if (meta.cap > 65536) buf_free(&meta);
    if (lsn == 0) {
        if (new_pr) {
            free(s->producers[--s->nproducers].id);
        } else if (pr) {
            *pr = saved_pr;
        }
        if (s->stream_seq != saved_seq) free(s->stream_seq);
        s->stream_seq = saved_seq;
        if (s->closed_by_id != saved_closer) free(s->closed_by_id);
        s->closed_by_id = saved_closer;
        s->closed_by_epoch = saved_closer_epoch;
        s->closed_by_seq = saved_closer_seq;
        s->closed = false;
        respond_storage_error(c, path);
        goto out;
    }
    if (s->stream_seq != saved_seq) free(saved_seq);
    if (s->closed_by_id != saved_closer) free(saved_closer);
    s->tail += nbytes;
    /* 200 tells a producer its data was new; a close-only has none. */
    respond_begin(c, p.present && nbytes > 0 ? 200 : 204);
    offset_header(c, "Stream-Next-Offset", s->tail);
    if (s->closed) http_respond_header(c, "Stream-Closed", "true");
    if (p.present) producer_headers(c, p.epoch, p.seq);
    respond_when_durable(c, s, lsn);
out:
    pthread_mutex_unlock(&streams_lock);
}

/* --- DELETE, HEAD --- */

static void handle_delete(http_conn *c, const char *path, size_t path_len) {
    pthread_mutex_lock(&streams_lock);
    stream *s = stream_for_client(c, path, path_len, wall_ms());
    if (s) {
        stream_ref(s);
        store_lsn lsn = stream_delete(s);
        if (lsn == 0) {
            respond_storage_error(c, path);
        } else {
            respond_begin(c, 204);
            respond_when_durable(c, s, lsn);
        }
        stream_unref(s);
    }
    pthread_mutex_unlock(&streams_lock);
}

static void handle_head(http_conn *c, const char *path, size_t path_len) {
    pthread_mutex_lock(&streams_lock);
    stream *s = stream_for_client(c, path, path_len, wall_ms());
    if (s) {
        respond_begin(c, 200);
        config_headers(c, s);
        offset_header(c, "Stream-Next-Offset", s->visible);
        if (s->closed_visible) http_respond_header(c, "Stream-Closed", "true");
        http_respond_header(c, "Cache-Control", "no-store");
        http_respond_end(c);
    }
    pthread_mutex_unlock(&streams_lock);
}

static void handle_options(http_conn *c, http_request *req) {
    respond_begin(c, 204);
    http_respond_header(c, "Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, DELETE, OPTIONS");
    size_t n;
    const char *h = hdr(req, "access-control-request-headers", &n);
    if (h) http_respond_headerf(c, "Access-Control-Allow-Headers", "%.*s", (int)n, h);
    else http_respond_header(c, "Access-Control-Allow-Headers", "*");
    http_respond_header(c, "Access-Control-Max-Age", "86400");
    http_respond_end(c);
}

/* --- routing --- */

/* Decode and vet the stream path: no NUL (the decoder refuses it), no "."
 * or ".." segments, no empty stream name. */
static const char *check_path(const char *s, size_t len) {
    size_t plen = sizeof STREAM_PREFIX - 1;
    if (len <= plen) return "missing stream name";
    if (len > streams_limits.max_path) return "stream path too long";
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return "control characters are not allowed in stream paths";
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && s[j] != '/') j++;
        size_t seg = j - i;
        if ((seg == 1 && s[i] == '.') || (seg == 2 && s[i] == '.' && s[i + 1] == '.'))
            return "path segments '.' and '..' are not allowed";
        i = j + 1;
    }
    return NULL;
}

static void wake_store(void *arg) {
    (void)arg;
    store_wake(streams_store);
}

/* The records that handlers log during one loop iteration go to the flusher
 * together when the iteration ends: one fdatasync and one flusher wake-up
 * for all of them, instead of a wake-up per request. */
static void batch_store_wakes(http_conn *c) {
    static _Thread_local bool deferring;
    if (!deferring) {
        store_defer_wake(true);
        deferring = true;
    }
    loop_defer(http_conn_loop(c), wake_store, NULL);
}

/* Route a request whose path p (NUL-terminated, len bytes) is decoded. */
static void route(http_conn *c, http_request *req, const char *p, size_t len) {
    if (len < sizeof STREAM_PREFIX - 1 || memcmp(p, STREAM_PREFIX, sizeof STREAM_PREFIX - 1) != 0) {
        if (req->head.method == HTTP_OPTIONS) {
            handle_options(c, req);
        } else if (strcmp(p, "/healthz") == 0 &&
                   (req->head.method == HTTP_GET || req->head.method == HTTP_HEAD)) {
            handle_healthz(c);
        }
        else respond_error(c, 404, p, "not found: streams live under " STREAM_PREFIX);
        return;
    }
    const char *bad = check_path(p, len);
    if (bad) {
        respond_error(c, 400, p, bad);
        return;
    }
    if (log_enabled(LOG_DEBUG))
        log_write(LOG_DEBUG, "%s %.*s %s (%zu body bytes)", http_conn_peer(c),
                  (int)req->head.method_len, req->head.method_str, p, req->body.len);
    switch (req->head.method) {
    case HTTP_PUT: handle_put(c, req, p, len); break;
    case HTTP_POST: handle_post(c, req, p, len); break;
    case HTTP_DELETE: handle_delete(c, p, len); break;
    case HTTP_HEAD: handle_head(c, p, len); break;
    case HTTP_GET: handle_get(c, req, p, len); break;
    case HTTP_OPTIONS: handle_options(c, req); break;
    default:
        respond_begin(c, 405);
        http_respond_header(c, "Allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS");
        http_respond_header(c, "Content-Type", "text/plain; charset=utf-8");
        http_respond_body(c, "method not allowed\n", 19);
        log_write(LOG_ERROR, "%.*s %s: 405 method not allowed", (int)req->head.method_len,
                  req->head.method_str, p);
        http_respond_end(c);
        break;
    }
}

void streams_handle(void *ctx, http_conn *c, http_request *req) {
    (void)ctx;
    batch_store_wakes(c);
    /* Decoded on the stack unless the path is long: this runs per request. */
    const http_target *t = &req->target;
    char small[512];
    char *p = t->path_len < sizeof small ? small : xmalloc(t->path_len + 1);
    size_t len;
    if (!http_percent_decode_to(t->path, t->path_len, p, &len)) {
        respond_error(c, 400, NULL, "invalid percent-encoding in path");
    } else {
        p[len] = 0;
        route(c, req, p, len);
    }
    if (p != small) free(p);
}
