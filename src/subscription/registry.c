/* registry.c — subscriptions in memory: their links to streams, pending
 * work, wakes and their generations (PROTOCOL.md section 7). The routes
 * and the delivery thread change subscriptions only through here. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "../stream/protocol.h"
#include "../util/glob.h"
#include "../util/log.h"
#include "../util/mem.h"
#include "subs_int.h"

int64_t subs_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

sub *sub_find(subs *s, const char *id) {
    for (size_t i = 0; i < s->nsubs; i++)
        if (!s->list[i]->gone && strcmp(s->list[i]->id, id) == 0) return s->list[i];
    return NULL;
}

sub_link *sub_link_find(sub *b, const char *path) {
    for (size_t i = 0; i < b->nlinks; i++)
        if (strcmp(b->links[i].path, path) == 0) return &b->links[i];
    return NULL;
}

sub_link *sub_link_add(subs *s, sub *b, const char *path, unsigned kind, int64_t at) {
    (void)s;
    sub_link *l = sub_link_find(b, path);
    if (l) {
        l->kind |= kind;
        return l;
    }
    if (b->nlinks == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 8;
        b->links = xrealloc(b->links, b->cap * sizeof *b->links);
    }
    l = &b->links[b->nlinks++];
    *l = (sub_link){.path = xstrndup(path, strlen(path)), .kind = kind, .acked = at, .tail = at, .snap = -2};
    return l;
}

void sub_link_drop(sub *b, sub_link *l) {
    free(l->path);
    *l = b->links[--b->nlinks];
}

void sub_full_path(const char *path, buf *out) {
    buf_reset(out);
    if (path[0] != '/') buf_append_str(out, STREAM_PREFIX);
    buf_append_str(out, path);
    buf_append_byte(out, 0);
}

bool sub_has_pending(const sub *b) {
    for (size_t i = 0; i < b->nlinks; i++)
        if (b->links[i].tail > b->links[i].acked) return true;
    return false;
}

void offset_or_minus1(int64_t v, char out[40]) {
    if (v < 0) strcpy(out, "-1");
    else offset_format((uint64_t)v, out);
}

bool parse_offset_value(const char *str, int64_t *v) {
    uint64_t pos;
    if (strcmp(str, "-1") == 0) {
        *v = SUBS_BEFORE_FIRST;
        return true;
    }
    if (offset_parse(str, strlen(str), &pos) != OFFSET_AT || pos > INT64_MAX) return false;
    *v = (int64_t)pos;
    return true;
}

json_t *sub_streams_json(const sub *b, bool full) {
    json_t *arr = json_array();
    char off[40];
    for (size_t i = 0; i < b->nlinks; i++) {
        const sub_link *l = &b->links[i];
        offset_or_minus1(l->acked, off);
        json_t *o = json_pack("{s:s,s:s,s:s}", "path", l->path, "link_type",
                              l->kind & LINK_EXPLICIT ? "explicit" : "glob", "acked_offset", off);
        if (full) {
            offset_or_minus1(l->tail, off);
            json_object_set_new(o, "tail_offset", json_string(off));
            json_object_set_new(o, "has_pending", json_boolean(l->tail > l->acked));
        }
        json_array_append_new(arr, o);
    }
    return arr;
}

/* A pull-wake event on the subscription's wake stream (which the
 * application creates; without it the wake waits for a claim). */
static void wake_event(subs *s, sub *b) {
    const char *first = NULL;
    for (size_t i = 0; i < b->nlinks && !first; i++)
        if (b->links[i].tail > b->links[i].acked) first = b->links[i].path;
    json_t *ev = json_pack("{s:s,s:s,s:s?,s:I,s:I}", "type", "wake", "subscription_id", b->id, "stream", first,
                           "generation", (json_int_t)b->generation, "ts", (json_int_t)subs_now_ms());
    char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    buf rec, path;
    buf_init(&rec);
    buf_init(&path);
    buf_append_str(&rec, text);
    buf_append_str(&rec, ",\n");
    sub_full_path(b->wake_stream, &path);
    if (streams_append(s->st, (const char *)path.data, rec.data, rec.len, NULL, NULL) != 0)
        log_write(LOG_WARN, "subscription %s: cannot append a wake to %s: %s", b->id, b->wake_stream,
                  errno == ENOENT ? "no such stream (create it)" : strerror(errno));
    buf_free(&rec);
    buf_free(&path);
    free(text);
}

static void wake_issue(subs *s, sub *b) {
    unsigned char rnd[8];
    if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd) memset(rnd, 0, sizeof rnd);
    b->generation++;
    snprintf(b->wake_id, sizeof b->wake_id, "w_%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
             rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    for (size_t i = 0; i < b->nlinks; i++) b->links[i].snap = b->links[i].tail;
    json_t *rec = json_pack("{s:s,s:I}", "t", "gen", "g", (json_int_t)b->generation);
    persist_record(s, b, rec, NULL);
    json_decref(rec);
    int64_t now = subs_now_ms();
    if (b->type == SUB_WEBHOOK) {
        b->lease_until = now + (int64_t)b->lease_ttl_ms;
        if (b->deliver_at < now) b->deliver_at = now; /* a retry already scheduled keeps its time */
        deliver_kick(s);
    } else {
        b->lease_until = 0;
        wake_event(s, b);
    }
}

void sub_maybe_wake(subs *s, sub *b) {
    if (b->gone || b->wake_id[0] || b->holder || !sub_has_pending(b)) return;
    wake_issue(s, b);
}

bool sub_wake_end(subs *s, sub *b) {
    b->wake_id[0] = 0;
    free(b->holder);
    b->holder = NULL;
    b->lease_until = 0;
    if (!b->failed) b->deliver_at = 0;
    for (size_t i = 0; i < b->nlinks; i++) b->links[i].snap = -2;
    bool again = !b->gone && sub_has_pending(b);
    if (again) wake_issue(s, b);
    return again;
}

bool sub_pattern_matches(const char *pattern, const char *path) {
    return (pattern[0] == '/') == (path[0] == '/') && glob_match(pattern, path);
}

/* The subscription path of an internal path, or NULL if no subscription
 * can watch it. */
static const char *watchable(subs *s, const char *path, bool from_streams) {
    size_t k = strlen(STREAM_PREFIX);
    if (from_streams)
        return strncmp(path, STREAM_PREFIX, k) != 0 || strncmp(path + k, "__ds/", 5) == 0 ? NULL : path + k;
    for (size_t i = 0; i < s->nsources; i++)
        if (strncmp(path, s->sources[i].prefix, strlen(s->sources[i].prefix)) == 0) return path;
    return NULL;
}

static void link_record(subs *s, sub *b, const sub_link *l) {
    json_t *rec = json_pack("{s:s,s:[[s,i,I]]}", "t", "link", "l", l->path, (int)l->kind, (json_int_t)l->acked);
    persist_record(s, b, rec, NULL);
    json_decref(rec);
}

static void notice_apply(subs *s, const notice *n) {
    const char *path = watchable(s, n->path, n->from_streams);
    if (!path) return;
    for (size_t i = 0; i < s->nsubs; i++) {
        sub *b = s->list[i];
        if (b->gone || (b->wake_stream && strcmp(b->wake_stream, path) == 0)) continue;
        sub_link *l = sub_link_find(b, path);
        if (!l && b->pattern && sub_pattern_matches(b->pattern, path)) {
            /* a path that matched when the subscription was made was linked
             * then (durably); one it meets now is newer: all of it is pending,
             * also when met at start-up (its link record may not have been
             * durable before a crash) */
            l = sub_link_add(s, b, path, LINK_GLOB, SUBS_BEFORE_FIRST);
            link_record(s, b, l);
        }
        if (!l) continue;
        if ((int64_t)n->tail > l->tail) l->tail = (int64_t)n->tail;
        sub_maybe_wake(s, b);
    }
}

void subs_drain(subs *s) {
    pthread_mutex_lock(&s->q_mu);
    notice *q = s->queue;
    size_t n = s->qlen;
    s->queue = NULL;
    s->qlen = s->qcap = 0;
    pthread_mutex_unlock(&s->q_mu);
    for (size_t i = 0; i < n; i++) {
        notice_apply(s, &q[i]);
        free(q[i].path);
    }
    free(q);
}

void subs_notify(subs *s, const char *path, uint64_t tail, bool event) { subs_queue(s, path, tail, event, false); }

void subs_queue(subs *s, const char *path, uint64_t tail, bool event, bool from_streams) {
    pthread_mutex_lock(&s->q_mu);
    if (s->qlen == s->qcap) {
        s->qcap = s->qcap ? s->qcap * 2 : 64;
        s->queue = xrealloc(s->queue, s->qcap * sizeof *s->queue);
    }
    s->queue[s->qlen++] = (notice){.path = xstrndup(path, strlen(path)), .tail = tail, .event = event, .from_streams = from_streams};
    pthread_mutex_unlock(&s->q_mu);
    deliver_kick(s);
}

void subs_add_source(subs *s, const char *prefix, subs_each_fn each, void *arg) {
    pthread_mutex_lock(&s->mu);
    s->sources = xrealloc(s->sources, (s->nsources + 1) * sizeof *s->sources);
    s->sources[s->nsources++] = (subs_source){xstrndup(prefix, strlen(prefix)), each, arg};
    pthread_mutex_unlock(&s->mu);
}

/* --- backfill --- */

typedef struct found {
    subs *s;
    sub *b;
    bool from_streams;
    char **paths;
    int64_t *tails;
    size_t n, cap;
} found;

static void found_add(void *arg, const char *path, uint64_t tail) {
    found *f = arg;
    const char *p = watchable(f->s, path, f->from_streams);
    if (!p || !sub_pattern_matches(f->b->pattern, p) || (f->b->wake_stream && strcmp(p, f->b->wake_stream) == 0)) return;
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 16;
        f->paths = xrealloc(f->paths, f->cap * sizeof *f->paths);
        f->tails = xrealloc(f->tails, f->cap * sizeof *f->tails);
    }
    f->paths[f->n] = xstrndup(p, strlen(p));
    f->tails[f->n++] = (int64_t)tail;
}

static void note_published(void *arg, const char *path, uint64_t tail) {
    json_object_set_new(arg, path, json_integer((json_int_t)tail));
}

void sub_backfill(subs *s, sub *b, json_t *explicit_paths, bool with_pattern) {
    if (with_pattern && b->pattern) {
        found f = {.s = s, .b = b, .from_streams = b->pattern[0] != '/'};
        if (b->pattern[0] == '/') {
            for (size_t i = 0; i < s->nsources; i++) s->sources[i].each(s->sources[i].arg, found_add, &f);
        } else {
            streams_each_end(s->st, STREAM_PREFIX, found_add, &f);
        }
        for (size_t i = 0; i < f.n; i++) {
            sub_link_add(s, b, f.paths[i], LINK_GLOB, f.tails[i]);
            free(f.paths[i]);
        }
        free(f.paths);
        free(f.tails);
    }
    size_t i;
    json_t *v;
    buf full;
    buf_init(&full);
    json_t *published = NULL; /* absolute paths: their offsets, from the layers above */
    json_array_foreach(explicit_paths, i, v) {
        const char *p = json_string_value(v);
        if (sub_link_find(b, p)) {
            sub_link_add(s, b, p, LINK_EXPLICIT, 0);
            continue;
        }
        uint64_t end;
        int64_t at = SUBS_BEFORE_FIRST;
        if (p[0] == '/') {
            if (!published) {
                published = json_object();
                for (size_t k = 0; k < s->nsources; k++) s->sources[k].each(s->sources[k].arg, note_published, published);
            }
            json_t *t = json_object_get(published, p);
            if (t) at = json_integer_value(t);
        } else {
            sub_full_path(p, &full);
            if (streams_visible_end(s->st, (const char *)full.data, &end) == 0) at = (int64_t)end;
        }
        sub_link_add(s, b, p, LINK_EXPLICIT, at);
    }
    json_decref(published);
    buf_free(&full);
}

void sub_free(sub *b) {
    for (size_t i = 0; i < b->nlinks; i++) free(b->links[i].path);
    free(b->links);
    json_decref(b->config);
    free(b->id);
    free(b->base);
    free(b->created_at);
    free(b->holder);
    free(b->log_path);
    free(b);
}

void sub_unref(sub *b) {
    if (--b->refs == 0) sub_free(b);
}

sub *sub_new(const char *id, json_t *config, const char *base, const char *created_at) {
    sub *b = xcalloc(1, sizeof *b);
    b->id = xstrndup(id, strlen(id));
    b->config = json_incref(config);
    const char *type = json_string_value(json_object_get(config, "type"));
    b->type = type && strcmp(type, "pull-wake") == 0 ? SUB_PULL : SUB_WEBHOOK;
    b->pattern = json_string_value(json_object_get(config, "pattern"));
    b->url = json_string_value(json_object_get(json_object_get(config, "webhook"), "url"));
    b->wake_stream = json_string_value(json_object_get(config, "wake_stream"));
    b->lease_ttl_ms = (uint64_t)json_integer_value(json_object_get(config, "lease_ttl_ms"));
    b->base = xstrndup(base, strlen(base));
    b->created_at = xstrndup(created_at, strlen(created_at));
    b->refs = 1;
    return b;
}
