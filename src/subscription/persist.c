/* persist.c — each subscription's log: an internal JSON stream
 * (SUBS_LOG_PREFIX<id>@<n>, out of reach of HTTP clients) of records,
 * replayed at open:
 *   {"t":"config", "id", "config", "base", "created_at"}   first, then
 *   {"t":"state", "g", "n", "at", "links": [[path, kind, acked], ...]}
 *   {"t":"gen", "g"}                   a wake was issued
 *   {"t":"link", "l": [[path, kind, acked], ...]}   kind 0 unlinks
 *   {"t":"ack", "a": [[path, acked], ...]}
 *   {"t":"retry", "n", "at"}           webhook attempts failed in a row, next one
 * When a log has grown past COMPACT_MIN and four times its first two
 * records, the state is written to the next log (<id>@<n+1>) and the old
 * one deleted; the store keeps the two in order, so a crash leaves one or
 * both, and open keeps the newest.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/log.h"
#include "../util/mem.h"
#include "subs_int.h"

#define COMPACT_MIN (64 * 1024)

static void add_record(buf *out, json_t *rec) {
    char *t = json_dumps(rec, JSON_COMPACT);
    buf_append_str(out, t);
    buf_append_str(out, ",\n");
    free(t);
}

static json_t *links_json(const sub *b) {
    json_t *arr = json_array();
    for (size_t i = 0; i < b->nlinks; i++)
        json_array_append_new(arr, json_pack("[s,i,I]", b->links[i].path, (int)b->links[i].kind,
                                             (json_int_t)b->links[i].acked));
    return arr;
}

int persist_snapshot(subs *s, sub *b, http_conn *c) {
    buf data;
    buf_init(&data);
    json_t *cfg = json_pack("{s:s,s:s,s:O,s:s,s:s}", "t", "config", "id", b->id, "config", b->config, "base",
                            b->base, "created_at", b->created_at);
    json_t *state = json_pack("{s:s,s:I,s:i,s:I,s:o}", "t", "state", "g", (json_int_t)b->generation, "n",
                              (int)b->attempts, "at", (json_int_t)(b->failed ? b->deliver_at : 0), "links",
                              links_json(b));
    add_record(&data, cfg);
    add_record(&data, state);
    json_decref(cfg);
    json_decref(state);
    char path[SUBS_MAX_ID + 64];
    snprintf(path, sizeof path, "%s%s@%u", SUBS_LOG_PREFIX, b->id, b->log_gen + 1);
    int rc = streams_create_json(s->st, path, -1, 0, data.data, data.len, c);
    if (rc == 0) { /* left over from a subscription of this id deleted before: replace it */
        streams_delete(s->st, path, NULL);
        rc = streams_create_json(s->st, path, -1, 0, data.data, data.len, c);
    }
    if (rc == 1) {
        if (b->log_path) streams_delete(s->st, b->log_path, NULL);
        free(b->log_path);
        b->log_path = xstrndup(path, strlen(path));
        b->log_gen++;
        b->log_bytes = b->snap_bytes = data.len;
    }
    buf_free(&data);
    if (rc == 0) errno = EEXIST;
    return rc == 1 ? 0 : -1;
}

int persist_record(subs *s, sub *b, json_t *rec, http_conn *c) {
    if (!b->log_path) return -1;
    buf data;
    buf_init(&data);
    add_record(&data, rec);
    int rc = streams_append(s->st, b->log_path, data.data, data.len, c, NULL);
    if (rc == 0) b->log_bytes += data.len;
    else log_write(LOG_ERROR, "subscription %s: cannot log (%s): the change holds until a restart",
                   b->id, strerror(errno));
    buf_free(&data);
    if (rc == 0 && b->log_bytes > COMPACT_MIN && b->log_bytes > 4 * b->snap_bytes) persist_snapshot(s, b, NULL);
    return rc;
}

int persist_delete(subs *s, sub *b, http_conn *c) {
    return b->log_path ? streams_delete(s->st, b->log_path, c) : 0;
}

/* --- replay --- */

typedef struct found_log {
    char *path;
    unsigned gen;
    uint8_t *data;
    size_t len;
} found_log;

typedef struct found_logs {
    found_log *v;
    size_t n, cap;
} found_logs;

static void collect(void *arg, const char *path, const uint8_t *data, size_t len) {
    found_logs *f = arg;
    const char *at = strrchr(path, '@');
    if (!at) return;
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 16;
        f->v = xrealloc(f->v, f->cap * sizeof *f->v);
    }
    f->v[f->n++] = (found_log){xstrndup(path, strlen(path)), (unsigned)strtoul(at + 1, NULL, 10),
                               xmemdup(data, len ? len : 1), len};
}

static void apply_links(subs *s, sub *b, json_t *arr) {
    size_t i;
    json_t *l;
    json_array_foreach(arr, i, l) {
        const char *path = json_string_value(json_array_get(l, 0));
        unsigned kind = (unsigned)json_integer_value(json_array_get(l, 1));
        int64_t acked = json_integer_value(json_array_get(l, 2));
        if (!path) continue;
        sub_link *k = sub_link_find(b, path);
        if (kind == 0) {
            if (k) sub_link_drop(b, k);
            continue;
        }
        if (!k) k = sub_link_add(s, b, path, kind, acked);
        k->kind = kind;
        k->acked = acked;
    }
}

static void apply_record(subs *s, sub **bp, json_t *rec) {
    const char *t = json_string_value(json_object_get(rec, "t"));
    sub *b = *bp;
    if (!t) return;
    if (strcmp(t, "config") == 0 && !b) {
        const char *id = json_string_value(json_object_get(rec, "id"));
        const char *base = json_string_value(json_object_get(rec, "base"));
        const char *created = json_string_value(json_object_get(rec, "created_at"));
        json_t *cfg = json_object_get(rec, "config");
        if (id && base && created && json_is_object(cfg)) *bp = sub_new(id, cfg, base, created);
        return;
    }
    if (!b) return;
    if (strcmp(t, "state") == 0) {
        b->generation = (uint64_t)json_integer_value(json_object_get(rec, "g"));
        b->attempts = (unsigned)json_integer_value(json_object_get(rec, "n"));
        b->deliver_at = json_integer_value(json_object_get(rec, "at"));
        b->failed = b->attempts > 0;
        apply_links(s, b, json_object_get(rec, "links"));
    } else if (strcmp(t, "gen") == 0) {
        b->generation = (uint64_t)json_integer_value(json_object_get(rec, "g"));
    } else if (strcmp(t, "link") == 0) {
        apply_links(s, b, json_object_get(rec, "l"));
    } else if (strcmp(t, "ack") == 0) {
        size_t i;
        json_t *a;
        json_array_foreach(json_object_get(rec, "a"), i, a) {
            sub_link *k = sub_link_find(b, json_string_value(json_array_get(a, 0)) ?: "");
            if (k) k->acked = json_integer_value(json_array_get(a, 1));
        }
    } else if (strcmp(t, "retry") == 0) {
        b->attempts = (unsigned)json_integer_value(json_object_get(rec, "n"));
        b->deliver_at = json_integer_value(json_object_get(rec, "at"));
        b->failed = b->attempts > 0;
        if (!b->failed) b->deliver_at = 0;
    }
}

static sub *replay(subs *s, const found_log *f) {
    sub *b = NULL;
    const char *p = (const char *)f->data, *end = p + f->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        if (n && p[n - 1] == ',') n--;
        json_t *rec = json_loadb(p, n, 0, NULL);
        if (rec) apply_record(s, &b, rec);
        json_decref(rec);
        p = nl ? nl + 1 : end;
    }
    if (b) {
        b->log_path = xstrndup(f->path, strlen(f->path));
        b->log_gen = f->gen;
        b->log_bytes = b->snap_bytes = f->len;
    }
    return b;
}

/* Whether another log of the same subscription is newer than f. */
static bool superseded(const found_logs *all, const found_log *f) {
    size_t stem = (size_t)(strrchr(f->path, '@') - f->path);
    for (size_t i = 0; i < all->n; i++) {
        const found_log *g = &all->v[i];
        if (g != f && g->gen > f->gen && strncmp(g->path, f->path, stem + 1) == 0 && strlen(g->path) > stem &&
            g->path[stem] == '@')
            return true;
    }
    return false;
}

void persist_load(subs *s) {
    found_logs all = {0};
    streams_each(s->st, SUBS_LOG_PREFIX, collect, &all);
    buf full;
    buf_init(&full);
    for (size_t i = 0; i < all.n; i++) {
        found_log *f = &all.v[i];
        if (superseded(&all, f)) {
            streams_delete(s->st, f->path, NULL);
        } else {
            sub *b = replay(s, f);
            if (!b) {
                log_write(LOG_ERROR, "subscription log %s has no configuration: deleted", f->path);
                streams_delete(s->st, f->path, NULL);
            } else {
                for (size_t k = 0; k < b->nlinks; k++) { /* tails now: streams from the store, the rest as notified */
                    sub_link *l = &b->links[k];
                    uint64_t endpos;
                    sub_full_path(l->path, &full);
                    l->tail = l->path[0] != '/' && streams_visible_end(s->st, (const char *)full.data, &endpos) == 0
                                  ? (int64_t)endpos
                                  : l->acked;
                }
                if (s->nsubs == s->cap) {
                    s->cap = s->cap ? s->cap * 2 : 16;
                    s->list = xrealloc(s->list, s->cap * sizeof *s->list);
                }
                s->list[s->nsubs++] = b;
            }
        }
    }
    for (size_t i = 0; i < all.n; i++) {
        free(all.v[i].path);
        free(all.v[i].data);
    }
    free(all.v);
    buf_free(&full);
}
