/* append.c — POST: append to a stream and/or close it, with idempotent
 * producers (Producer-Id / -Epoch / -Seq) and Stream-Seq ordering.
 *
 * A request is checked in the protocol's order — the stream, closure,
 * content type, producer epoch and sequence, Stream-Seq, the JSON body —
 * then applied to the in-memory stream, logged as one WAL record (data and
 * meta together) and answered once that record is durable. If the log
 * refuses the record, the stream is put back as it was.
 */
#include <stdio.h>
#include <string.h>

#include "../util/json.h"
#include "../util/log.h"
#include "../util/mem.h"
#include "protocol.h"
#include "stream_int.h"

/* What a POST asks for, from its headers. */
typedef struct append_req {
    bool close;       /* Stream-Closed: true */
    bool producer;    /* the three Producer-* headers were sent */
    const char *id;   /* Producer-Id */
    size_t id_len;
    uint64_t epoch, seq;
    const char *ct;   /* Content-Type */
    size_t ct_len;
    const char *stream_seq;
    size_t stream_seq_len;
    bool has_body;
    bool json_body;   /* a JSON content type: the body was split before the lock */
    json_status json; /* how the split went */
    json_error jerr;
} append_req;

static const char *hdr(http_request *req, const char *name, size_t *len) {
    return http_head_get(&req->head, name, len);
}

/* Read and check the headers; returns what is wrong with them, or NULL. */
static const char *append_parse(http_request *req, append_req *a) {
    size_t n, el, sl;
    const char *v = hdr(req, "stream-closed", &n);
    a->close = value_is_true(v, n);
    a->id = hdr(req, "producer-id", &a->id_len);
    const char *ep = hdr(req, "producer-epoch", &el);
    const char *sq = hdr(req, "producer-seq", &sl);
    if (a->id || ep || sq) {
        if (!a->id || !ep || !sq) return "Producer-Id, Producer-Epoch and Producer-Seq must be sent together";
        if (a->id_len == 0) return "Producer-Id must not be empty";
        if (!u53_parse(ep, el, &a->epoch)) return "invalid Producer-Epoch: expected an integer 0..2^53-1";
        if (!u53_parse(sq, sl, &a->seq)) return "invalid Producer-Seq: expected an integer 0..2^53-1";
        a->producer = true;
    }
    a->ct = hdr(req, "content-type", &a->ct_len);
    a->stream_seq = hdr(req, "stream-seq", &a->stream_seq_len);
    a->has_body = req->body.len > 0;
    a->json_body = a->has_body && a->ct && media_type_eq(a->ct, a->ct_len, "application/json", 16);
    return NULL;
}

static bool same_id(const char *id, const char *p, size_t n) {
    return id && strlen(id) == n && memcmp(id, p, n) == 0;
}

static producer *find_producer(stream *s, const append_req *a) {
    for (uint32_t i = 0; i < s->nproducers; i++)
        if (same_id(s->producers[i].id, a->id, a->id_len)) return &s->producers[i];
    return NULL;
}

static void producer_headers(http_conn *c, uint64_t epoch, uint64_t seq) {
    http_respond_header_u64(c, "Producer-Epoch", epoch);
    http_respond_header_u64(c, "Producer-Seq", seq);
}

/* An answer with no body but its status line: logged like an error. */
static void respond_refusal(streams *st, http_conn *c, int status, const char *path,
                            const char *why) {
    log_write(LOG_ERROR, "POST %s: %d %s", path, status, why);
    respond_begin(st, c, status);
}

/* POST to a closed stream: a retry of the request that closed it (or a
 * close-only) succeeds again; anything else is 409. */
static void answer_closed(streams *st, http_conn *c, stream *s, const append_req *a,
                          const char *path) {
    bool same_closer = a->producer && same_id(s->closed_by_id, a->id, a->id_len) &&
                       s->closed_by_epoch == a->epoch && s->closed_by_seq == a->seq;
    if (same_closer || (!a->has_body && a->close)) {
        respond_begin(st, c, 204);
        respond_offset(c, "Stream-Next-Offset", s->tail);
        http_respond_header(c, "Stream-Closed", "true");
        if (a->producer) producer_headers(c, a->epoch, a->seq);
        respond_after_pending(st, c, s);
        return;
    }
    respond_refusal(st, c, 409, path, "stream is closed");
    http_respond_header(c, "Stream-Closed", "true");
    respond_offset(c, "Stream-Next-Offset", s->tail);
    http_respond_header(c, "Content-Type", "text/plain; charset=utf-8");
    http_respond_body(c, "stream is closed\n", 17);
    http_respond_end(c);
}

static void sequence_gap(streams *st, http_conn *c, const char *path, uint64_t expected,
                         uint64_t received) {
    respond_refusal(st, c, 409, path, "producer sequence gap");
    http_respond_header_u64(c, "Producer-Expected-Seq", expected);
    http_respond_header_u64(c, "Producer-Received-Seq", received);
    http_respond_end(c);
}

/* Check the producer's epoch and sequence against what the stream has seen.
 * Returns true to go on (with *pr the producer's state, NULL for a new
 * producer), false after answering (a duplicate, or a refusal). */
static bool check_producer(streams *st, http_conn *c, stream *s, const append_req *a,
                           const char *path, producer **pr) {
    *pr = find_producer(s, a);
    producer *p = *pr;
    if (p && a->epoch < p->epoch) {
        respond_refusal(st, c, 403, path, "stale producer epoch");
        http_respond_header_u64(c, "Producer-Epoch", p->epoch);
        http_respond_header(c, "Content-Type", "text/plain; charset=utf-8");
        http_respond_body(c, "stale producer epoch\n", 21);
        http_respond_end(c);
        return false;
    }
    if (!p || a->epoch > p->epoch) { /* a new epoch */
        if (a->seq == 0) return true;
        if (p) respond_error(st, c, 400, path, "a new Producer-Epoch must start at Producer-Seq 0");
        else sequence_gap(st, c, path, 0, a->seq);
        return false;
    }
    if (a->seq <= p->seq) { /* a retry of what was accepted: say so again */
        respond_begin(st, c, 204);
        respond_offset(c, "Stream-Next-Offset", s->tail);
        producer_headers(c, p->epoch, p->seq);
        respond_after_pending(st, c, s);
        return false;
    }
    if (a->seq > p->seq + 1) {
        sequence_gap(st, c, path, p->seq + 1, a->seq);
        return false;
    }
    return true;
}

/* Stream-Seq values compare byte-wise lexicographically. */
static bool seq_increases(const char *last, const char *next, size_t next_len) {
    size_t last_len = strlen(last);
    int cmp = memcmp(next, last, next_len < last_len ? next_len : last_len);
    return cmp > 0 || (cmp == 0 && next_len > last_len);
}

/* What an append changes besides the data, to put back if the log refuses. */
typedef struct saved_meta {
    producer pr;
    bool new_pr;
    char *stream_seq;
    char *closed_by_id;
    uint64_t closed_by_epoch, closed_by_seq;
} saved_meta;

static void apply_meta(stream *s, const append_req *a, producer *pr, saved_meta *saved) {
    *saved = (saved_meta){.pr = pr ? *pr : (producer){0}, .new_pr = a->producer && !pr,
                          .stream_seq = s->stream_seq, .closed_by_id = s->closed_by_id,
                          .closed_by_epoch = s->closed_by_epoch, .closed_by_seq = s->closed_by_seq};
    if (a->producer) {
        if (!pr) {
            s->producers = xrealloc(s->producers, (s->nproducers + 1) * sizeof *s->producers);
            pr = &s->producers[s->nproducers++];
            pr->id = xstrndup(a->id, a->id_len);
        }
        pr->epoch = a->epoch;
        pr->seq = a->seq;
    }
    if (a->stream_seq) s->stream_seq = xstrndup(a->stream_seq, a->stream_seq_len);
    if (a->close) {
        s->closed = true;
        if (a->producer) {
            s->closed_by_id = xstrndup(a->id, a->id_len);
            s->closed_by_epoch = a->epoch;
            s->closed_by_seq = a->seq;
        }
    }
}

static void restore_meta(stream *s, producer *pr, const saved_meta *saved) {
    if (saved->new_pr) free(s->producers[--s->nproducers].id);
    else if (pr) *pr = saved->pr;
    if (s->stream_seq != saved->stream_seq) free(s->stream_seq);
    s->stream_seq = saved->stream_seq;
    if (s->closed_by_id != saved->closed_by_id) free(s->closed_by_id);
    s->closed_by_id = saved->closed_by_id;
    s->closed_by_epoch = saved->closed_by_epoch;
    s->closed_by_seq = saved->closed_by_seq;
    s->closed = false;
}

static void drop_saved_meta(stream *s, const saved_meta *saved) {
    if (s->stream_seq != saved->stream_seq) free(saved->stream_seq);
    if (s->closed_by_id != saved->closed_by_id) free(saved->closed_by_id);
}

/* Accepted: apply, log, answer once durable — or put the stream back and
 * answer 507 if the log refuses (nothing was stored). */
static void append_apply(streams *st, http_conn *c, stream *s, const append_req *a,
                         producer *pr, const uint8_t *bytes, size_t nbytes, const char *path) {
    stream_will_change(st, s);
    saved_meta saved;
    apply_meta(s, a, pr, &saved);
    bool meta_changed = a->producer || a->stream_seq || a->close;
    buf *meta = &st->append_meta;
    buf_reset(meta);
    if (meta_changed) stream_meta_encode(s, meta);
    store_lsn lsn = store_append(st->store, s->id, s->tail - s->fork_off, bytes, nbytes,
                                 meta_changed ? meta->data : NULL, meta->len);
    if (meta->cap > 65536) buf_free(meta);
    if (lsn == 0) {
        restore_meta(s, pr, &saved);
        respond_storage_error(st, c, path);
        return;
    }
    drop_saved_meta(s, &saved);
    s->tail += nbytes;
    /* 200 tells a producer its data was new; a close-only has none. */
    respond_begin(st, c, a->producer && nbytes > 0 ? 200 : 204);
    respond_offset(c, "Stream-Next-Offset", s->tail);
    if (s->closed) http_respond_header(c, "Stream-Closed", "true");
    if (a->producer) producer_headers(c, a->epoch, a->seq);
    respond_when_durable(st, c, s, lsn);
}

/* Every check after the stream is found, in the protocol's order; true to
 * go on with *pr set (see check_producer), false after answering. */
static bool append_check(streams *st, http_conn *c, stream *s, const append_req *a,
                         const char *path, producer **pr) {
    *pr = NULL;
    if (!a->has_body && !a->close) {
        respond_error(st, c, 400, path, "empty body: an append needs data (or Stream-Closed: true)");
        return false;
    }
    if (s->closed) {
        answer_closed(st, c, s, a, path);
        return false;
    }
    if (a->has_body && !a->ct) {
        respond_error(st, c, 400, path, "missing Content-Type");
        return false;
    }
    if (a->has_body && !media_type_eq(a->ct, a->ct_len, s->content_type, strlen(s->content_type))) {
        respond_error(st, c, 409, path, "Content-Type does not match the stream's");
        return false;
    }
    if (a->producer && !check_producer(st, c, s, a, path, pr)) return false;
    if (a->stream_seq && s->stream_seq && !seq_increases(s->stream_seq, a->stream_seq, a->stream_seq_len)) {
        respond_error(st, c, 409, path, "Stream-Seq must increase");
        return false;
    }
    if (a->json_body && a->json == JSON_ERR_EMPTY_ARRAY) {
        respond_error(st, c, 400, path, "empty JSON array: nothing to append");
        return false;
    }
    if (a->json_body && a->json != JSON_OK) {
        char msg[160];
        snprintf(msg, sizeof msg, "invalid JSON at byte %zu: %s", a->jerr.pos, a->jerr.msg);
        respond_error(st, c, 400, path, msg);
        return false;
    }
    return true;
}

void handle_post(streams *st, http_conn *c, http_request *req, const char *path, size_t path_len) {
    append_req a = {0};
    const char *bad = append_parse(req, &a);
    if (bad) {
        respond_error(st, c, 400, path, bad);
        return;
    }
    /* A JSON body is split into messages before taking the lock, on the
     * assumption that it goes to a JSON stream; whether it does (else 409),
     * and what comes first when both are wrong, is decided under the lock.
     * A non-JSON body is stored as it came. */
    const uint8_t *bytes = req->body.data;
    size_t nbytes = req->body.len;
    if (a.json_body) {
        buf *data = http_conn_scratch(c);
        size_t count;
        a.json = json_split_messages(req->body.data, req->body.len, st->limits.json_max_depth,
                                     data, &count, &a.jerr);
        bytes = data->data;
        nbytes = data->len;
    }
    pthread_mutex_lock(&st->lock);
    int64_t now = wall_ms();
    stream *s = stream_for_client(st, c, path, path_len, now);
    producer *pr;
    if (s) {
        stream_touch(s, now);
        if (append_check(st, c, s, &a, path, &pr)) append_apply(st, c, s, &a, pr, bytes, nbytes, path);
    }
    pthread_mutex_unlock(&st->lock);
}
