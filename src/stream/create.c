/* create.c — PUT: create a stream, or fork one from another stream at an
 * offset. A PUT of a stream that exists with the same configuration is an
 * idempotent success; with another, 409.
 */
#include <stdio.h>
#include <string.h>

#include "../util/json.h"
#include "../util/mem.h"
#include "protocol.h"
#include "stream_int.h"

/* What a PUT asks for, from its headers. */
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
    buf fork_path; /* Stream-Forked-From, decoded and absolute */
} create_req;

static const char *hdr(http_request *req, const char *name, size_t *len) {
    return http_head_get(&req->head, name, len);
}

/* Read and check the headers; returns what is wrong with them, or NULL. */
static const char *create_parse(http_request *req, create_req *r) {
    size_t n;
    const char *v;
    r->ct = hdr(req, "content-type", &r->ct_len);
    if (r->ct && !media_type_valid(r->ct, r->ct_len)) return "invalid Content-Type";
    if ((v = hdr(req, "stream-ttl", &n)) && !ttl_parse(v, n, &r->ttl))
        return "invalid Stream-TTL: expected a non-negative integer of seconds";
    if ((r->expires = hdr(req, "stream-expires-at", &r->expires_len)) &&
        !rfc3339_parse(r->expires, r->expires_len, &r->expires_at))
        return "invalid Stream-Expires-At: expected an RFC 3339 timestamp";
    if (r->ttl >= 0 && r->expires) return "Stream-TTL and Stream-Expires-At are mutually exclusive";
    v = hdr(req, "stream-closed", &n);
    r->closed = value_is_true(v, n);
    r->fork_from = hdr(req, "stream-forked-from", &r->fork_from_len);
    r->fork_off = hdr(req, "stream-fork-offset", &r->fork_off_len);
    r->fork_sub = hdr(req, "stream-fork-sub-offset", &r->fork_sub_len);
    if (!r->fork_from) {
        if (r->fork_off || r->fork_sub) return "Stream-Fork-Offset requires Stream-Forked-From";
        return NULL;
    }
    /* Accept a full URL path or one relative to the stream root. */
    buf decoded;
    buf_init(&decoded);
    if (!http_percent_decode(r->fork_from, r->fork_from_len, &decoded) || decoded.len == 0) {
        buf_free(&decoded);
        return "invalid Stream-Forked-From";
    }
    if (decoded.data[0] != '/') buf_append_str(&r->fork_path, STREAM_PREFIX);
    buf_append(&r->fork_path, decoded.data, decoded.len);
    buf_free(&decoded);
    return NULL;
}

/* Count n whole messages of a JSON stream from pos (each stored message
 * ends in '\n'); returns the position after them or what went wrong. */
static const char *skip_messages(streams *st, stream *src, uint64_t *pos, int64_t n) {
    uint8_t chunk[4096];
    while (n > 0) {
        if (*pos >= src->visible) return "Stream-Fork-Sub-Offset is past the source's data";
        size_t len = src->visible - *pos < sizeof chunk ? (size_t)(src->visible - *pos) : sizeof chunk;
        if (!stream_pread(st, src, *pos, len, chunk)) return "cannot read source stream";
        size_t i = 0;
        for (; i < len && n > 0; i++)
            if (chunk[i] == '\n') n--;
        *pos += i;
    }
    return NULL;
}

/* Resolve Stream-Fork-Offset (+ sub-offset) against the source. Returns an
 * error message or NULL. A sub-offset counts bytes (messages, for JSON) past
 * the anchor; it is bounded by the source's tail, not by the extent of the
 * next append, which the data files do not record. */
static const char *fork_point(streams *st, stream *src, const create_req *r, uint64_t *point) {
    uint64_t off = src->visible;
    if (r->fork_off) {
        offset_kind k = offset_parse(r->fork_off, r->fork_off_len, &off);
        if (k == OFFSET_START) off = 0;
        else if (k == OFFSET_NOW) off = src->visible;
        else if (k != OFFSET_AT) return "invalid Stream-Fork-Offset";
        if (off > src->visible) return "Stream-Fork-Offset is beyond the source stream's tail";
        if (!stream_at_boundary(st, src, off)) return "Stream-Fork-Offset is not a message boundary";
    }
    if (r->fork_sub) {
        int64_t sub;
        if (!ttl_parse(r->fork_sub, r->fork_sub_len, &sub))
            return "invalid Stream-Fork-Sub-Offset: expected a non-negative integer";
        if (src->json) {
            const char *err = skip_messages(st, src, &off, sub);
            if (err) return err;
        } else {
            if ((uint64_t)sub > src->visible - off) return "Stream-Fork-Sub-Offset is past the source's data";
            off += (uint64_t)sub;
        }
    }
    *point = off;
    return NULL;
}

/* Does an existing stream have the configuration this PUT asks for? */
static bool same_config(streams *st, const stream *s, const create_req *r) {
    if (r->ct && !media_type_eq(s->content_type, strlen(s->content_type), r->ct, r->ct_len))
        return false;
    if (!r->ct && !s->src && !media_type_eq(s->content_type, strlen(s->content_type),
                                             "application/octet-stream", 24))
        return false;
    if (r->closed != s->closed) return false;
    if (!r->fork_from) return !s->src && r->ttl == s->ttl && r->expires_at == s->expires_at;
    if (!s->src || strlen(s->src->path) != r->fork_path.len ||
        memcmp(s->src->path, r->fork_path.data, r->fork_path.len) != 0)
        return false;
    if (r->ttl >= 0 && r->ttl != s->ttl) return false;
    if (r->expires && r->expires_at != s->expires_at) return false;
    if (r->fork_off || r->fork_sub) {
        uint64_t point;
        if (fork_point(st, s->src, r, &point) || point != s->fork_off) return false;
    }
    return true;
}

/* A PUT of a stream that exists: idempotent if nothing differs. */
static void answer_existing(streams *st, http_conn *c, stream *s, const create_req *r,
                            const char *path) {
    if (s->deleted) {
        respond_error(st, c, 409, path, "stream was deleted and still has forks; path cannot be reused");
    } else if (!same_config(st, s, r)) {
        respond_error(st, c, 409, path, "stream already exists with a different configuration");
    } else {
        respond_begin(st, c, 200);
        respond_config(c, s);
        respond_offset(c, "Stream-Next-Offset", s->tail);
        if (s->closed) http_respond_header(c, "Stream-Closed", "true");
        respond_after_pending(st, c, s);
    }
}

/* The fork source and the point to fork at; NULL after answering an error. */
static stream *fork_source(streams *st, http_conn *c, const create_req *r, const char *path,
                           int64_t now, uint64_t *point) {
    stream *src = stream_lookup_live(st, (const char *)r->fork_path.data, r->fork_path.len, now);
    const char *err = NULL;
    int status = 409;
    if (!src) {
        err = "fork source stream not found";
        status = 404;
    } else if (src->deleted) {
        err = "fork source stream was deleted";
    } else if (r->ct && !media_type_eq(r->ct, r->ct_len, src->content_type, strlen(src->content_type))) {
        err = "Content-Type differs from the fork source's";
    } else if ((err = fork_point(st, src, r, point))) {
        status = 400;
    }
    if (!err) return src;
    respond_error(st, c, status, path, err);
    return NULL;
}

/* The initial body as stored: a JSON body split into messages. Returns
 * false after answering 400. */
static bool initial_data(streams *st, http_conn *c, http_request *req, bool json,
                         const char *path, buf *data) {
    if (req->body.len == 0) return true;
    if (!json) {
        buf_append(data, req->body.data, req->body.len);
        return true;
    }
    size_t count;
    json_error jerr;
    json_status js = json_split_messages(req->body.data, req->body.len, st->limits.json_max_depth,
                                         data, &count, &jerr);
    if (js == JSON_OK || js == JSON_ERR_EMPTY_ARRAY) return true;
    char msg[160];
    snprintf(msg, sizeof msg, "invalid JSON at byte %zu: %s", jerr.pos, jerr.msg);
    respond_error(st, c, 400, path, msg);
    return false;
}

/* A new stream's configuration, from the request and (for a fork) its source. */
static void configure(stream *s, const create_req *r, stream *src, uint64_t point, int64_t now) {
    s->closed = r->closed;
    s->last_access = now;
    if (src) {
        s->src = src;
        stream_ref(src);
        src->nforks++;
        s->fork_off = point;
        /* Without its own expiry a fork inherits the source's. */
        if (r->ttl < 0 && !r->expires) {
            s->ttl = src->ttl;
            s->expires_at = src->expires_at;
            if (src->expires_str) s->expires_str = xstrndup(src->expires_str, strlen(src->expires_str));
        }
    }
    if (r->ttl >= 0) s->ttl = r->ttl;
    if (r->expires) {
        s->expires_at = r->expires_at;
        s->expires_str = xstrndup(r->expires, r->expires_len);
    }
}

/* Create, log and answer 201 once durable. */
static void create_stream(streams *st, http_conn *c, http_request *req, const create_req *r,
                          stream *src, uint64_t point, const char *path, size_t path_len,
                          int64_t now) {
    char *ctype = src ? xstrndup(src->content_type, strlen(src->content_type))
                  : r->ct ? xstrndup(r->ct, r->ct_len)
                          : xstrndup("application/octet-stream", 24);
    bool json = media_type_eq(ctype, strlen(ctype), "application/json", 16);
    buf data;
    buf_init(&data);
    if (!initial_data(st, c, req, json, path, &data)) {
        free(ctype);
        buf_free(&data);
        return;
    }
    stream *s = stream_new(st, path, path_len, store_id_next(st->store));
    s->content_type = ctype;
    stream_set_content_type_flags(s);
    configure(s, r, src, point, now);
    s->tail = s->fork_off + data.len;
    s->visible = s->fork_off;
    store_lsn lsn = stream_log_create(st, s, data.data, data.len);
    buf_free(&data);
    if (lsn == 0) {
        respond_storage_error(st, c, path);
        return;
    }
    respond_begin(st, c, 201);
    size_t host_len;
    const char *host = hdr(req, "host", &host_len);
    http_respond_headerf(c, "Location", "http://%.*s%s", host ? (int)host_len : 9,
                         host ? host : "localhost", s->path);
    respond_config(c, s);
    respond_offset(c, "Stream-Next-Offset", s->tail);
    if (s->closed) http_respond_header(c, "Stream-Closed", "true");
    respond_when_durable(st, c, s, lsn);
}

static void create_new(streams *st, http_conn *c, http_request *req, const create_req *r,
                       const char *path, size_t path_len, int64_t now) {
    stream *src = NULL;
    uint64_t point = 0;
    if (r->fork_from && !(src = fork_source(st, c, r, path, now, &point))) return;
    if (st->nstreams >= st->limits.max_streams) {
        respond_error(st, c, 507, path, "stream limit reached (--max-streams)");
        return;
    }
    create_stream(st, c, req, r, src, point, path, path_len, now);
}

void handle_put(streams *st, http_conn *c, http_request *req, const char *path, size_t path_len) {
    create_req r = {.ttl = -1};
    buf_init(&r.fork_path);
    const char *bad = create_parse(req, &r);
    if (bad) {
        respond_error(st, c, 400, path, bad);
        buf_free(&r.fork_path);
        return;
    }
    int64_t now = wall_ms();
    pthread_mutex_lock(&st->lock);
    stream *s = stream_lookup_live(st, path, path_len, now);
    if (s) answer_existing(st, c, s, &r, path);
    else create_new(st, c, req, &r, path, path_len, now);
    pthread_mutex_unlock(&st->lock);
    buf_free(&r.fork_path);
}
