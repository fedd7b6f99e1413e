/* api.c — the stream layer's calls for the layers above (see stream.h):
 * create, append, hold, delete, read and walk streams by path, with the
 * same durability rules as the stream routes but no HTTP request of their
 * own to parse. */
#include <errno.h>
#include <string.h>

#include "../util/mem.h"
#include "protocol.h"
#include "stream_int.h"

int streams_create_json(streams *st, const char *path, int64_t ttl_s, uint64_t base,
                        const void *data, size_t len, http_conn *c) {
    size_t plen = strlen(path);
    int rc = -1;
    int64_t now = wall_ms();
    pthread_mutex_lock(&st->lock);
    stream *s = stream_lookup_live(st, path, plen, now);
    if (s) {
        if (s->json && !s->deleted) {
            if (c) respond_hold(st, c, s);
            rc = 0;
        } else {
            errno = EEXIST;
        }
    } else if (st->nstreams >= st->limits.max_streams) {
        errno = EMLINK;
    } else {
        s = stream_new(st, path, plen, store_id_next(st->store));
        s->content_type = xstrndup("application/json", 16);
        stream_set_content_type_flags(s);
        s->ttl = ttl_s;
        s->last_access = now;
        s->fork_off = s->visible = base;
        s->tail = base + len;
        store_lsn lsn = stream_log_create(st, s, data, len);
        if (lsn) {
            stream_commit(st, s, lsn, c);
            rc = 1;
        }
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int streams_append(streams *st, const char *path, const void *data, size_t len, http_conn *c,
                   uint64_t *end) {
    int rc = -1;
    pthread_mutex_lock(&st->lock);
    int64_t now = wall_ms();
    stream *s = stream_lookup_live(st, path, strlen(path), now);
    if (!s || s->deleted) {
        errno = ENOENT;
    } else if (s->closed) {
        errno = EPIPE;
    } else {
        stream_touch(s, now);
        stream_will_change(st, s);
        store_lsn lsn = store_append(st->store, s->id, s->tail - s->fork_off, data, len, NULL, 0);
        if (lsn) {
            s->tail += len;
            stream_commit(st, s, lsn, c);
            if (end) *end = s->tail;
            rc = 0;
        }
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int streams_hold_tail(streams *st, const char *path, http_conn *c, uint64_t *tail) {
    pthread_mutex_lock(&st->lock);
    int64_t now = wall_ms();
    stream *s = stream_lookup_live(st, path, strlen(path), now);
    bool ok = s && !s->deleted;
    if (ok) {
        stream_touch(s, now);
        *tail = s->tail;
        if (c) respond_hold(st, c, s);
    }
    pthread_mutex_unlock(&st->lock);
    if (!ok) errno = ENOENT;
    return ok ? 0 : -1;
}

bool streams_settled(streams *st, const char *path) {
    pthread_mutex_lock(&st->lock);
    stream *s = stream_lookup(st, path, strlen(path));
    bool yes = s && s->visible == s->tail && s->last_lsn <= store_durable_lsn(st->store);
    pthread_mutex_unlock(&st->lock);
    return yes;
}

void streams_retire(streams *st, const char *path) {
    pthread_mutex_lock(&st->lock);
    stream *s = stream_lookup(st, path, strlen(path));
    if (s) {
        s->retired = true;
        streams_wake(st, s);
    }
    pthread_mutex_unlock(&st->lock);
}

int64_t streams_ttl(streams *st, const char *path) {
    pthread_mutex_lock(&st->lock);
    stream *s = stream_lookup(st, path, strlen(path));
    int64_t ttl = s ? s->ttl : -1;
    pthread_mutex_unlock(&st->lock);
    return ttl;
}

bool streams_exists(streams *st, const char *path) {
    pthread_mutex_lock(&st->lock);
    stream *s = stream_lookup(st, path, strlen(path));
    bool yes = s && !s->deleted;
    pthread_mutex_unlock(&st->lock);
    return yes;
}

int streams_delete(streams *st, const char *path, http_conn *c) {
    int rc = -1;
    pthread_mutex_lock(&st->lock);
    stream *s = stream_lookup(st, path, strlen(path));
    if (!s || s->deleted) {
        errno = ENOENT;
    } else {
        stream_ref(s);
        store_lsn lsn = stream_delete(st, s);
        if (lsn) {
            stream_commit(st, s, lsn, c);
            rc = 0;
        }
        stream_unref(s);
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

void streams_respond_begin(streams *st, http_conn *c, int status) { respond_begin(st, c, status); }

bool streams_serve_read(streams *st, http_conn *c, http_request *req, const char *path,
                        void (*on_end)(void *arg), void *arg) {
    live_end end = {on_end, arg};
    return handle_get(st, c, req, path, strlen(path), &end);
}

void streams_each(streams *st, const char *prefix,
                  void (*fn)(void *arg, const char *path, const uint8_t *data, size_t len),
                  void *arg) {
    size_t plen = strlen(prefix);
    buf data;
    buf_init(&data);
    pthread_mutex_lock(&st->lock);
    for (uint64_t i = 0; i < st->table_size; i++) {
        for (stream *s = st->table[i]; s; s = s->hnext) {
            if (s->deleted || strncmp(s->path, prefix, plen) != 0) continue;
            uint64_t first = s->src ? 0 : s->fork_off; /* a compacted log starts later */
            size_t n = (size_t)(s->visible - first);
            buf_reset(&data);
            buf_reserve(&data, n);
            if (!stream_pread(st, s, first, n, data.data)) continue;
            fn(arg, s->path, data.data, n);
        }
    }
    pthread_mutex_unlock(&st->lock);
    buf_free(&data);
}

int streams_observe(streams *st, streams_observer_fn fn, void *arg) {
    pthread_mutex_lock(&st->lock);
    int rc = -1;
    for (int k = 0; k < STREAMS_MAX_OBSERVERS && rc < 0; k++)
        if (!st->observers[k].fn) {
            st->observers[k].fn = fn;
            st->observers[k].arg = arg;
            rc = 0;
        }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

void streams_unobserve(streams *st, void *arg) {
    pthread_mutex_lock(&st->lock);
    for (int k = 0; k < STREAMS_MAX_OBSERVERS; k++)
        if (st->observers[k].arg == arg) st->observers[k].fn = NULL, st->observers[k].arg = NULL;
    pthread_mutex_unlock(&st->lock);
}

int streams_read(streams *st, const char *path, uint64_t from, size_t max, buf *out, uint64_t *next,
                 uint64_t *end) {
    int rc = -1;
    pthread_mutex_lock(&st->lock);
    stream *s = stream_lookup(st, path, strlen(path));
    uint64_t first = s ? (s->src ? 0 : s->fork_off) : 0;
    if (!s || s->deleted) {
        errno = ENOENT;
    } else if (from < first || from > s->visible) {
        errno = ERANGE;
    } else {
        size_t n = (size_t)(s->visible - from < max ? s->visible - from : max);
        size_t at = out->len;
        buf_reserve(out, n);
        if (n && !stream_pread(st, s, from, n, out->data + at)) {
            errno = EIO;
        } else {
            out->len += n;
            if (s->json && n < s->visible - from) { /* whole messages only */
                while (out->len > at && out->data[out->len - 1] != '\n') out->len--;
                if (out->len == at) { /* one message longer than max: all of it */
                    size_t all = (size_t)(s->visible - from);
                    buf_reserve(out, all);
                    if (stream_pread(st, s, from, all, out->data + at)) {
                        uint8_t *nl = memchr(out->data + at, '\n', all);
                        out->len = at + (nl ? (size_t)(nl - (out->data + at)) + 1 : all);
                    }
                }
                n = out->len - at;
            }
            *next = from + n;
            *end = s->visible;
            rc = 0;
        }
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int streams_visible_end(streams *st, const char *path, uint64_t *end) {
    pthread_mutex_lock(&st->lock);
    stream *s = stream_lookup(st, path, strlen(path));
    bool ok = s && !s->deleted;
    if (ok) *end = s->visible;
    pthread_mutex_unlock(&st->lock);
    if (!ok) errno = ENOENT;
    return ok ? 0 : -1;
}

void streams_each_end(streams *st, const char *prefix,
                      void (*fn)(void *arg, const char *path, uint64_t end), void *arg) {
    size_t plen = strlen(prefix);
    pthread_mutex_lock(&st->lock);
    for (uint64_t i = 0; i < st->table_size; i++)
        for (stream *s = st->table[i]; s; s = s->hnext)
            if (!s->deleted && strncmp(s->path, prefix, plen) == 0) fn(arg, s->path, s->visible);
    pthread_mutex_unlock(&st->lock);
}
