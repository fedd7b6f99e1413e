/* shape.c — the shape layer's object: the registry of shapes, their logs
 * (internal JSON streams of Electric messages) and their definitions,
 * which are kept in one more internal stream so that shapes, with their
 * handles and offsets, survive a restart. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "../util/hash.h"
#include "../util/log.h"
#include "../util/json.h"
#include "../util/mem.h"
#include "../util/strmap.h"
#include "shape_int.h"

shape *shape_find_handle(shapes *sh, const char *handle) { return strmap_get(sh->by_handle, handle); }

shape *shape_find_key(shapes *sh, const char *key) {
    shape *s = strmap_get(sh->by_key, key);
    return s && !s->gone ? s : NULL;
}

static char *str_dup(const char *s) { return xstrndup(s, strlen(s)); }

static void shape_free(shape *s) {
    for (size_t i = 0; i < s->ncols; i++) free(s->cols[i].name), free(s->cols[i].type);
    free(s->cols);
    free(s->selected);
    where_free(s->where);
    json_decref(s->params);
    strmap_free(s->keys);
    free(s->xip);
    free(s->handle);
    free(s->def_key);
    free(s->schema);
    free(s->schema_header);
    free(s->table);
    free(s->where_sql);
    free(s->log_path);
    free(s);
}

void shape_unref(shape *s) {
    if (--s->refs == 0) shape_free(s);
}

where_expr *shape_where_compile(const shape *s, const char *sql, json_t *params, char *err, size_t errlen) {
    where_column *wc = xcalloc(s->ncols ? s->ncols : 1, sizeof *wc);
    for (size_t i = 0; i < s->ncols; i++) {
        where_type t = WHERE_TEXT;
        where_type_of(s->cols[i].type, &t);
        wc[i] = (where_column){s->cols[i].filterable ? s->cols[i].name : "", t};
    }
    size_t np = json_array_size(params);
    const char **pv = xcalloc(np ? np : 1, sizeof *pv);
    for (size_t i = 0; i < np; i++) pv[i] = json_string_value(json_array_get(params, i));
    where_expr *e = where_compile(sql, wc, s->ncols, pv, np, err, errlen);
    free(pv);
    free(wc);
    return e;
}

bool shape_value_same(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

json_t *shape_row_value(const shape *s, char **values, bool all, char **old) {
    json_t *v = json_object();
    for (size_t i = 0; i < s->ncols; i++)
        if (s->cols[i].pk_index >= 0 || (s->selected[i] && (all || (old && !shape_value_same(old[i], values[i])))))
            json_object_set_new(v, s->cols[i].name, values[i] ? json_string(values[i]) : json_null());
    return v;
}

/* Fill s from its definition: {"schema","table","where","params","columns": [{name,type,pk_index,filterable}],
 * "selected": [bool], "xmin","xmax","xip"}. */
static bool shape_define(shape *s, json_t *def, char *err, size_t errlen) {
    s->schema = str_dup(json_string_value(json_object_get(def, "schema")) ?: "public");
    s->table = str_dup(json_string_value(json_object_get(def, "table")) ?: "");
    const char *w = json_string_value(json_object_get(def, "where"));
    s->where_sql = w ? xstrndup(w, strlen(w)) : NULL;
    s->params = json_incref(json_object_get(def, "params") ?: json_array());
    s->replica_full = json_object_get(def, "replica") != NULL;
    s->changes_only = json_object_get(def, "log") != NULL;
    json_t *cols = json_object_get(def, "columns"), *sel = json_object_get(def, "selected");
    s->ncols = json_array_size(cols);
    s->cols = xcalloc(s->ncols ? s->ncols : 1, sizeof *s->cols);
    s->selected = xcalloc(s->ncols ? s->ncols : 1, sizeof *s->selected);
    for (size_t i = 0; i < s->ncols; i++) {
        json_t *c = json_array_get(cols, i);
        s->cols[i].name = str_dup(json_string_value(json_object_get(c, "name")) ?: "");
        s->cols[i].type = str_dup(json_string_value(json_object_get(c, "type")) ?: "text");
        s->cols[i].pk_index = (int)json_integer_value(json_object_get(c, "pk_index"));
        where_type t;
        s->cols[i].filterable = where_type_of(s->cols[i].type, &t);
        s->selected[i] = !sel || json_is_true(json_array_get(sel, i));
    }
    json_t *types = json_object();
    for (size_t i = 0; i < s->ncols; i++) {
        if (!s->selected[i]) continue;
        json_t *t = json_pack("{s:s}", "type", s->cols[i].type);
        if (s->cols[i].pk_index >= 0) json_object_set_new(t, "pk_index", json_integer(s->cols[i].pk_index));
        json_object_set_new(types, s->cols[i].name, t);
    }
    s->schema_header = json_dumps(types, JSON_COMPACT);
    json_decref(types);
    bool ok = true;
    if (s->where_sql) {
        s->where = shape_where_compile(s, s->where_sql, s->params, err, errlen);
        ok = s->where != NULL;
    }
    s->xmin = (uint64_t)json_integer_value(json_object_get(def, "xmin"));
    s->xmax = (uint64_t)json_integer_value(json_object_get(def, "xmax"));
    json_t *xip = json_object_get(def, "xip");
    s->nxip = json_array_size(xip);
    s->xip = xcalloc(s->nxip ? s->nxip : 1, sizeof *s->xip);
    for (size_t i = 0; i < s->nxip; i++) s->xip[i] = (uint32_t)json_integer_value(json_array_get(xip, i));
    return ok;
}

shape *shape_add(shapes *sh, const char *key, json_t *def, char *err, size_t errlen) {
    shape *s = xcalloc(1, sizeof *s);
    if (!shape_define(s, def, err, errlen)) {
        shape_free(s);
        return NULL;
    }
    char handle[64];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    static atomic_uint seq; /* two shapes of one key in one millisecond still differ */
    snprintf(handle, sizeof handle, "%llu-%lld%03u",
             (unsigned long long)(hash_keyed(key, strlen(key)) % 100000000ull),
             (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, atomic_fetch_add(&seq, 1) % 1000);
    s->handle = xstrndup(handle, strlen(handle));
    s->def_key = xstrndup(key, strlen(key));
    char path[128];
    snprintf(path, sizeof path, "%s%s", SHAPE_LOG_PREFIX, handle);
    s->log_path = xstrndup(path, strlen(path));
    s->keys = strmap_new();
    s->refs = 1;
    if (sh->n == sh->cap) {
        sh->cap = sh->cap ? sh->cap * 2 : 16;
        sh->list = xrealloc(sh->list, sh->cap * sizeof *sh->list);
    }
    sh->list[sh->n++] = s;
    strmap_put(sh->by_handle, s->handle, s);
    strmap_put(sh->by_key, key, s); /* the one before it for this key, if any, is gone */
    shape_index_add(sh, s);
    return s;
}

/* A part of a row key as Electric escapes it: '/' doubled (a value can
 * then not fake a separator) and, in a relation's names, '.' too. */
static void key_part(buf *out, const char *v, bool rel) {
    for (const char *p = v; *p; p++) {
        buf_append_byte(out, (uint8_t)*p);
        if (*p == '/' || (rel && *p == '.')) buf_append_byte(out, (uint8_t)*p);
    }
}

static void key_value(buf *out, const char *v) {
    if (!v) {
        buf_append_str(out, "/_"); /* NULL, told apart from the text "_" */
        return;
    }
    buf_append_str(out, "/\"");
    key_part(out, v, false);
    buf_append_byte(out, '"');
}

void shape_row_key(const shape *s, const char *const *values, buf *out) {
    buf_reset(out);
    buf_append_byte(out, '"');
    key_part(out, s->schema, true);
    buf_append_str(out, "\".\"");
    key_part(out, s->table, true);
    buf_append_byte(out, '"');
    bool any = false;
    for (int k = 0;; k++) { /* primary key columns in key order */
        size_t i = 0;
        while (i < s->ncols && s->cols[i].pk_index != k) i++;
        if (i == s->ncols) break;
        key_value(out, values[i]);
        any = true;
    }
    for (size_t i = 0; !any && i < s->ncols; i++) key_value(out, values[i]); /* no primary key: every column */
    buf_append_byte(out, 0);
}

void shape_insert_text(const shape *s, char **values, const char *key, long mark, buf *out) {
    buf_append_str(out, "{\"key\":");
    json_append_string(out, key);
    buf_append_str(out, ",\"value\":{");
    bool first = true;
    for (size_t i = 0; i < s->ncols; i++) {
        if (s->cols[i].pk_index < 0 && !s->selected[i]) continue;
        if (!first) buf_append_byte(out, ',');
        first = false;
        json_append_string(out, s->cols[i].name);
        buf_append_byte(out, ':');
        if (values[i]) json_append_string(out, values[i]);
        else buf_append_str(out, "null");
    }
    buf_append_str(out, "},\"headers\":{\"operation\":\"insert\",\"relation\":[");
    json_append_string(out, s->schema);
    buf_append_byte(out, ',');
    json_append_string(out, s->table);
    buf_append_byte(out, ']');
    if (mark >= 0) buf_printf(out, ",\"snapshot_mark\":%ld", mark);
    buf_append_str(out, "}}");
}

int shape_log_text(shapes *sh, shape *s, const buf *data) {
    int rc = data->len ? streams_append(sh->st, s->log_path, data->data, data->len, NULL, NULL) : 0;
    if (rc != 0) log_write(LOG_ERROR, "shape %s: cannot log: %s", s->handle, strerror(errno));
    return rc;
}

int shape_log(shapes *sh, shape *s, json_t *msgs) {
    buf data;
    buf_init(&data);
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        char *t = json_dumps(m, JSON_COMPACT);
        buf_append_str(&data, t);
        buf_append_str(&data, ",\n");
        free(t);
    }
    int rc = shape_log_text(sh, s, &data);
    buf_free(&data);
    return rc;
}

static json_t *shape_def(const shape *s) {
    json_t *cols = json_array(), *sel = json_array(), *xip = json_array();
    for (size_t i = 0; i < s->ncols; i++) {
        json_array_append_new(cols, json_pack("{s:s,s:s,s:i}", "name", s->cols[i].name, "type", s->cols[i].type, "pk_index",
                                              s->cols[i].pk_index));
        json_array_append_new(sel, json_boolean(s->selected[i]));
    }
    for (size_t i = 0; i < s->nxip; i++) json_array_append_new(xip, json_integer(s->xip[i]));
    json_t *def = json_pack("{s:s,s:s,s:O,s:o,s:o,s:I,s:I,s:o}", "schema", s->schema, "table", s->table, "params",
                            s->params, "columns", cols, "selected", sel, "xmin", (json_int_t)s->xmin, "xmax",
                            (json_int_t)s->xmax, "xip", xip);
    if (s->where_sql) json_object_set_new(def, "where", json_string(s->where_sql));
    if (s->replica_full) json_object_set_new(def, "replica", json_string("full"));
    if (s->changes_only) json_object_set_new(def, "log", json_string("changes_only"));
    json_object_set_new(def, "key_format", json_integer(SHAPE_KEY_FORMAT));
    return def;
}

int shape_save_def(shapes *sh, shape *s) {
    json_t *rec = json_pack("{s:s,s:s,s:s,s:o}", "op", s->gone ? "remove" : "add", "handle", s->handle, "key",
                            s->def_key, "def", shape_def(s));
    char *t = json_dumps(rec, JSON_COMPACT);
    buf data;
    buf_init(&data);
    buf_append_str(&data, t);
    buf_append_str(&data, ",\n");
    int rc = streams_append(sh->st, SHAPE_DEFS_PATH, data.data, data.len, NULL, NULL);
    buf_free(&data);
    free(t);
    json_decref(rec);
    return rc;
}

/* --- restart: definitions, then each log's keys and last position --- */

/* fn(arg, record) for each JSON record of a log in stored form. */
static void each_record(const uint8_t *data, size_t len, void (*fn)(void *arg, json_t *rec), void *arg) {
    const char *p = (const char *)data, *end = p + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        if (n && p[n - 1] == ',') n--;
        json_t *rec = json_loadb(p, n, 0, NULL);
        if (rec) fn(arg, rec);
        json_decref(rec);
        p = nl ? nl + 1 : end;
    }
}

typedef struct replay_ctx {
    shape *s;
} replay_ctx;

static void replay_message(void *arg, json_t *m) {
    replay_ctx *x = arg;
    {
        json_t *h = json_object_get(m, "headers");
        const char *op = json_string_value(json_object_get(h, "operation"));
        const char *key = json_string_value(json_object_get(m, "key"));
        if (op && key) {
            if (strcmp(op, "delete") == 0) strmap_del(x->s->keys, key);
            else strmap_put(x->s->keys, key, x->s);
        }
        const char *lsn = json_string_value(json_object_get(h, "lsn"));
        if (lsn && strtoull(lsn, NULL, 10) > x->s->last_lsn) x->s->last_lsn = strtoull(lsn, NULL, 10);
        if (json_object_get(h, "control") && strcmp(json_string_value(json_object_get(h, "control")) ?: "", "snapshot-end") == 0)
            x->s->ready = true;
        if (json_object_get(h, "control") && strcmp(json_string_value(json_object_get(h, "control")) ?: "", "must-refetch") == 0)
            x->s->gone = true;
    }
}

static void replay_log(void *arg, const char *path, const uint8_t *data, size_t len) {
    replay_ctx *x = arg;
    if (strcmp(path, x->s->log_path) == 0) each_record(data, len, replay_message, x);
}

static void def_record(void *arg, json_t *rec) {
    shapes *sh = arg;
    {
        const char *op = json_string_value(json_object_get(rec, "op"));
        const char *handle = json_string_value(json_object_get(rec, "handle"));
        const char *key = json_string_value(json_object_get(rec, "key"));
        shape *old = handle ? shape_find_handle(sh, handle) : NULL;
        if (op && strcmp(op, "remove") == 0 && old) {
            old->gone = true;
        } else if (op && strcmp(op, "add") == 0 && handle && key && !old) {
            char err[256];
            json_t *def = json_object_get(rec, "def");
            shape *s = shape_add(sh, key, def, err, sizeof err);
            if (!s) log_write(LOG_ERROR, "shape %s: %s", handle, err);
            /* its log's row keys are of another format than new changes would get: refetch */
            if (s && json_integer_value(json_object_get(def, "key_format")) != SHAPE_KEY_FORMAT) s->gone = true;
            if (s) {
                strmap_del(sh->by_handle, s->handle);
                strmap_put(sh->by_handle, handle, s);
                free(s->handle);
                s->handle = xstrndup(handle, strlen(handle));
                char lp[128];
                snprintf(lp, sizeof lp, "%s%s", SHAPE_LOG_PREFIX, handle);
                free(s->log_path);
                s->log_path = xstrndup(lp, strlen(lp));
            }
        }
    }
}

static void defs_replay(void *arg, const char *path, const uint8_t *data, size_t len) {
    if (strcmp(path, SHAPE_DEFS_PATH) == 0) each_record(data, len, def_record, arg);
}

static void load(shapes *sh) {
    streams_each(sh->st, SHAPE_DEFS_PATH, defs_replay, sh);
    for (size_t i = 0; i < sh->n; i++) {
        replay_ctx x = {sh->list[i]};
        streams_each(sh->st, sh->list[i]->log_path, replay_log, &x);
        if (!sh->list[i]->ready) sh->list[i]->gone = true; /* its snapshot never finished */
    }
    if (sh->n) log_write(LOG_INFO, "shapes: %zu recovered", sh->n);
}

/* --- live readers --- */

static void on_visible(void *arg, const char *path, uint64_t visible) {
    if (strncmp(path, SHAPE_LOG_PREFIX, sizeof SHAPE_LOG_PREFIX - 1) == 0) shape_waiters_wake(arg, path, visible);
}

/* --- lifetime --- */

shapes *shapes_open(streams *st, const shapes_config *cfg, char *err, size_t errlen) {
    shapes *sh = xcalloc(1, sizeof *sh);
    sh->st = st;
    sh->cfg = *cfg;
    sh->wake_fd = -1;
    pthread_mutex_init(&sh->mu, NULL);
    pthread_mutex_init(&sh->wait_mu, NULL);
    sh->by_handle = strmap_new();
    sh->by_key = strmap_new();
    sh->waiting = strmap_new();
    snprintf(sh->status, sizeof sh->status, "starting");
    if (!cfg->database_url || !*cfg->database_url) return sh;
    sh->on = true;
    sh->url = xstrndup(cfg->database_url, strlen(cfg->database_url));
    sh->publication = xstrndup(cfg->publication, strlen(cfg->publication));
    sh->slot = xstrndup(cfg->slot, strlen(cfg->slot));
    if (streams_create_json(st, SHAPE_DEFS_PATH, -1, 0, NULL, 0, NULL) < 0) {
        snprintf(err, errlen, "cannot create %s: %s", SHAPE_DEFS_PATH, strerror(errno));
        shapes_close(sh);
        return NULL;
    }
    load(sh);
    sh->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (sh->wake_fd < 0 || streams_observe(st, on_visible, sh) != 0 || pg_start(sh, err, errlen) != 0) {
        if (!*err) snprintf(err, errlen, "cannot start the Postgres thread");
        shapes_close(sh);
        return NULL;
    }
    return sh;
}

void shapes_detach(shapes *sh) {
    if (!sh) return;
    streams_unobserve(sh->st, sh);
    pg_stop(sh);
}

void shapes_close(shapes *sh) {
    if (!sh) return;
    shapes_detach(sh);
    while (sh->jobs) {
        shape_job *j = sh->jobs;
        sh->jobs = j->next;
        shape_job_free(j);
    }
    shape_index_free(sh);
    for (size_t i = 0; i < sh->n; i++) shape_unref(sh->list[i]);
    free(sh->list);
    strmap_free(sh->by_handle);
    strmap_free(sh->by_key);
    strmap_free(sh->waiting);
    if (sh->wake_fd >= 0) close(sh->wake_fd);
    pthread_mutex_destroy(&sh->mu);
    pthread_mutex_destroy(&sh->wait_mu);
    free(sh->url);
    free(sh->publication);
    free(sh->slot);
    free(sh);
}

void shape_job_push(shapes *sh, json_t *req, char *key, json_t *subset, http_conn *c, bool refetch) {
    shape_job *j = xcalloc(1, sizeof *j);
    j->refetch = refetch;
    j->req = req;
    j->subset = subset;
    j->key = key;
    j->c = c;
    http_conn_ref(c);
    j->next = sh->jobs;
    sh->jobs = j;
    uint64_t one = 1;
    if (write(sh->wake_fd, &one, sizeof one) < 0) { /* the counter is full: the thread is awake anyway */
    }
}

void shape_job_free(shape_job *j) {
    http_conn_unref(j->c);
    json_decref(j->req);
    json_decref(j->subset);
    free(j->key);
    free(j);
}

void shape_invalidate(shapes *sh, shape *s, const char *why) {
    if (s->gone) return;
    s->gone = true;
    json_t *m = json_pack("[{s:{s:s}}]", "headers", "control", "must-refetch");
    shape_log(sh, s, m);
    json_decref(m);
    shape_save_def(sh, s);
    log_write(LOG_INFO, "shape %s: %s: clients must refetch", s->handle, why);
}
