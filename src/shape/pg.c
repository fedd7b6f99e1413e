/* pg.c — the Postgres thread: one control connection (catalog, the
 * publication and replica identity of a shape's table, each shape's
 * snapshot) and one logical replication connection (pgoutput), both
 * libpq. Requests for new shapes come as jobs; the replication stream's
 * transactions are matched to the shapes of their table, appended to
 * their logs, and confirmed to Postgres once those logs are durable.
 * Everything here runs on that one thread, so a shape's snapshot and the
 * changes after it are applied in order: a transaction the snapshot saw is
 * skipped for that shape, one it did not see is applied. If Postgres goes
 * away the thread reconnects with backoff; if the slot is gone, every
 * shape must be fetched again (must-refetch), never served stale.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../util/log.h"
#include "../util/mem.h"
#include "pgoutput.h"
#include "shape_int.h"

#define STATUS_EVERY_MS 1000

typedef struct relation {
    uint32_t id;
    char *schema, *table;
    uint16_t ncols;
    char **names;
} relation;

/* A confirmed position waiting for the logs it touched to be durable. */
typedef struct pending {
    uint64_t lsn;
    char **paths;
    size_t npaths;
} pending;

typedef struct pgstate {
    shapes *sh;
    pg_ctl ctl; /* the control connection (snapshot.c reads through it) */
    pthread_mutex_t cancel_mu; /* guards cancel: pg_stop cancels a long statement */
    PGcancel *cancel;
    PGconn *repl;
    relation *rels;
    size_t nrels;
    /* the transaction being received */
    uint32_t xid;
    uint64_t final_lsn;
    json_t *batches; /* shape handle -> array of messages */
    json_t *keys;    /* shape handle -> {key: true (in) | false (out)}: applied at commit */
    int op_position;
    bool in_txn; /* between a BEGIN and its COMMIT */
    uint64_t changes; /* counts changes, to consider each shape once per change */
    /* confirmation */
    pending *pend;
    size_t npend;
    uint64_t received, confirmed;
    int64_t last_status;
    unsigned backoff_ms;
    int64_t connected_at;
} pgstate;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_status(shapes *sh, const char *status, const char *error) {
    pthread_mutex_lock(&sh->mu);
    snprintf(sh->status, sizeof sh->status, "%s", status);
    if (error) snprintf(sh->last_error, sizeof sh->last_error, "%s", error);
    pthread_mutex_unlock(&sh->mu);
}

/* --- answers go back to each request's loop --- */

typedef struct reply {
    shapes *sh;
    shape *s; /* NULL: an error */
    http_conn *c;
    int status;
    const char *param; /* of a 400 */
    char msg[300];
    char *subset; /* a subset's answer, and the log's offset it goes with */
    uint64_t offset;
} reply;

static void reply_run(void *arg) {
    reply *r = arg;
    if (!http_conn_closed(r->c)) {
        if (r->s && r->status == 409) shape_answer_refetch(r->sh, r->c, r->s->handle);
        else if (r->s && r->subset) shape_answer_subset(r->sh, r->s, r->c, r->subset, r->offset);
        else if (r->s) shape_answer(r->sh, r->s, r->c);
        else shape_answer_error(r->sh, r->c, r->status, r->param, r->msg);
    }
    free(r->subset);
    if (r->s) {
        pthread_mutex_lock(&r->sh->mu);
        shape_unref(r->s);
        pthread_mutex_unlock(&r->sh->mu);
    }
    http_conn_unref(r->c);
    free(r);
}

/* Answer c on its loop: s (or the error if NULL), or subset's answer (taken). */
static void reply_post(shapes *sh, http_conn *c, shape *s, int status, const char *param, const char *msg, char *subset,
                       uint64_t offset) {
    reply *r = xcalloc(1, sizeof *r);
    r->param = param;
    r->sh = sh;
    r->c = c;
    http_conn_ref(c);
    r->s = s;
    r->subset = subset;
    r->offset = offset;
    if (s) {
        pthread_mutex_lock(&sh->mu);
        s->refs++;
        pthread_mutex_unlock(&sh->mu);
    }
    r->status = status;
    snprintf(r->msg, sizeof r->msg, "%s", msg ? msg : "");
    loop_post(http_conn_loop(c), reply_run, r);
}

/* A request for a shape nobody has yet: make it, or answer its error. */
static void run_job(pgstate *p, shape_job *j) {
    shapes *sh = p->sh;
    char err[512] = "";
    int status = 503;
    const char *param = "table";
    pthread_mutex_lock(&sh->mu);
    shape *s = shape_find_key(sh, j->key);
    if (s) s->refs++;
    /* a subset of a shape that went while it waited: 409, as for the log */
    const char *was = json_string_value(json_object_get(j->subset, "handle"));
    if (was && (!s || strcmp(s->handle, was) != 0)) j->refetch = true;
    pthread_mutex_unlock(&sh->mu);
    if (!s) {
        json_t *def = pgctl_catalog(&p->ctl, j->req, &status, err, sizeof err);
        if (!def && strstr(err, "columns")) param = "columns";
        if (def) {
            pthread_mutex_lock(&sh->mu);
            s = shape_add(sh, j->key, def, err, sizeof err);
            if (s) s->refs++;
            else status = 400, param = "where";
            pthread_mutex_unlock(&sh->mu);
            json_decref(def);
        }
        if (s && !pgctl_snapshot(&p->ctl, s, &param, err, sizeof err)) {
            streams_delete(sh->st, s->log_path, NULL); /* nothing of it is kept */
            pthread_mutex_lock(&sh->mu);
            s->gone = true; /* never served: a new request makes a new one */
            shape_unref(s);
            s = NULL;
            pthread_mutex_unlock(&sh->mu);
            status = pgctl_error_status(&p->ctl);
        } else if (s) {
            /* answer once the snapshot is durable (and so readable) */
            for (int i = 0; i < 10000 && !streams_settled(sh->st, s->log_path); i++) usleep(500);
            pthread_mutex_lock(&sh->mu);
            s->ready = true;
            shape_save_def(sh, s);
            pthread_mutex_unlock(&sh->mu);
            log_write(LOG_INFO, "shape %s: %s.%s%s%s, %zu rows", s->handle, s->schema, s->table,
                      s->where_sql ? " where " : "", s->where_sql ? s->where_sql : "", strmap_size(s->keys));
        }
    }
    char *subset = NULL;
    uint64_t offset = 0;
    if (s && j->subset && !j->refetch) {
        param = "subset";
        subset = pgctl_subset(&p->ctl, s, j->subset, &offset, &status, err, sizeof err);
    }
    reply_post(sh, j->c, subset || !j->subset || j->refetch ? s : NULL, s && j->refetch ? 409 : status, param, err, subset,
               offset);
    if (s) {
        pthread_mutex_lock(&sh->mu);
        shape_unref(s);
        pthread_mutex_unlock(&sh->mu);
    }
}

/* Every request waiting for a new shape: made, or (Postgres away) 503. */
static void run_jobs(pgstate *p, bool reachable) {
    shapes *sh = p->sh;
    pthread_mutex_lock(&sh->mu);
    shape_job *jobs = sh->jobs;
    sh->jobs = NULL;
    pthread_mutex_unlock(&sh->mu);
    while (jobs) {
        shape_job *j = jobs;
        jobs = j->next;
        if (sh->quit) reply_post(sh, j->c, NULL, 503, NULL, "weft is shutting down", NULL, 0);
        else if (reachable && !http_conn_closed(j->c)) run_job(p, j); /* nobody waits for a closed one */
        else if (!reachable) reply_post(sh, j->c, NULL, 503, NULL, "Postgres is not reachable: try again", NULL, 0);
        shape_job_free(j);
    }
}

/* --- replication --- */

static relation *rel_find(pgstate *p, uint32_t id) {
    for (size_t i = 0; i < p->nrels; i++)
        if (p->rels[i].id == id) return &p->rels[i];
    return NULL;
}

static void rel_forget(relation *r) {
    free(r->schema);
    free(r->table);
    for (uint16_t i = 0; i < r->ncols; i++) free(r->names[i]);
    free(r->names);
}

/* Whether transaction xid is visible in s's snapshot (then s has it). */
static bool seen(const shape *s, uint32_t xid) {
    uint32_t xmin = (uint32_t)s->xmin, xmax = (uint32_t)s->xmax;
    if ((int32_t)(xid - xmin) < 0) return true;
    if ((int32_t)(xid - xmax) >= 0) return false;
    for (size_t i = 0; i < s->nxip; i++)
        if (s->xip[i] == xid) return false;
    return true;
}


/* A tuple as NUL-terminated text values in the shape's column order
 * (found by name); 'u' (an unchanged TOASTed value) from the old row. */
static char **tuple_values(const shape *s, const relation *r, const pgo_tuple *t, char **old) {
    char **v = xcalloc(s->ncols ? s->ncols : 1, sizeof *v);
    for (uint16_t k = 0; k < t->ncols && k < r->ncols; k++) {
        size_t i = 0;
        while (i < s->ncols && strcmp(s->cols[i].name, r->names[k]) != 0) i++;
        if (i == s->ncols) continue;
        const pgo_value *x = &t->values[k];
        if (x->kind == 't') v[i] = xstrndup(x->data, x->len);
        else if (x->kind == 'u' && old && old[i]) v[i] = xstrndup(old[i], strlen(old[i]));
    }
    return v;
}

static void values_free(const shape *s, char **v) {
    if (!v) return;
    for (size_t i = 0; i < s->ncols; i++) free(v[i]);
    free(v);
}

static bool matches(const shape *s, char **v) {
    return !s->where || where_eval(s->where, (const char *const *)v) == WHERE_TRUE;
}

static void emit(pgstate *p, shape *s, const char *op, const char *key, json_t *value, json_t *old_value) {
    json_t *arr = json_object_get(p->batches, s->handle);
    if (!arr) {
        arr = json_array();
        json_object_set_new(p->batches, s->handle, arr);
    }
    char lsn[24];
    snprintf(lsn, sizeof lsn, "%llu", (unsigned long long)p->final_lsn);
    json_t *m = json_pack("{s:s,s:o,s:{s:s,s:[s,s],s:[I],s:s,s:i}}", "key", key, "value", value, "headers", "operation", op,
                          "relation", s->schema, s->table, "txids", (json_int_t)p->xid, "lsn", lsn, "op_position",
                          p->op_position++);
    if (old_value) json_object_set_new(m, "old_value", old_value);
    json_array_append_new(arr, m);
}

static void apply_change(pgstate *p, shape *s, const relation *r, const pgo_message *m) {
    buf kold, knew;
    buf_init(&kold);
    buf_init(&knew);
    char **oldv = m->old_kind ? tuple_values(s, r, &m->old, NULL) : NULL;
    char **newv = m->kind != PGO_DELETE ? tuple_values(s, r, &m->new_row, oldv) : NULL;
    if (newv) shape_row_key(s, (const char *const *)newv, &knew);
    if (oldv) shape_row_key(s, (const char *const *)oldv, &kold);
    else if (newv) shape_row_key(s, (const char *const *)newv, &kold);
    json_t *overlay = json_object_get(p->keys, s->handle);
    if (!overlay) {
        overlay = json_object();
        json_object_set_new(p->keys, s->handle, overlay);
    }
    json_t *staged = json_object_get(overlay, (const char *)kold.data);
    /* a changes_only shape never listed the rows it started with: the old
     * row (REPLICA IDENTITY FULL) says whether it was in the shape */
    bool was = m->kind != PGO_INSERT &&
               (staged                                             ? json_is_true(staged)
                : s->changes_only && oldv && m->old_kind == 'O' ? matches(s, oldv)
                                             : strmap_get(s->keys, (const char *)kold.data) != NULL);
    bool now = newv && matches(s, newv);
    bool same = newv && strcmp((const char *)kold.data, (const char *)knew.data) == 0;
    /* replica=default: deletes carry the key, updates the key and what changed;
     * replica=full: whole rows, and an update's old values of what changed */
    if (was && (!now || !same)) { /* moved out, deleted, or its key changed */
        emit(p, s, "delete", (const char *)kold.data, shape_row_value(s, oldv ? oldv : newv, s->replica_full, NULL), NULL);
        json_object_set_new(overlay, (const char *)kold.data, json_false());
    }
    if (now && was && same) {
        json_t *old_value = NULL;
        if (s->replica_full && oldv) {
            old_value = json_object();
            for (size_t i = 0; i < s->ncols; i++)
                if (s->selected[i] && !shape_value_same(oldv[i], newv[i]))
                    json_object_set_new(old_value, s->cols[i].name, oldv[i] ? json_string(oldv[i]) : json_null());
        }
        emit(p, s, "update", (const char *)knew.data, shape_row_value(s, newv, s->replica_full || !oldv, oldv), old_value);
    } else if (now) {
        emit(p, s, "insert", (const char *)knew.data, shape_row_value(s, newv, true, NULL), NULL);
        json_object_set_new(overlay, (const char *)knew.data, json_true());
    }
    values_free(s, oldv);
    values_free(s, newv);
    buf_free(&kold);
    buf_free(&knew);
}

/* Apply a change to s if s can have it (once per change: mark). */
static void consider(pgstate *p, shape *s, const relation *r, const pgo_message *m, uint64_t mark) {
    if (s->mark == mark) return;
    s->mark = mark;
    if (s->gone || !s->ready || seen(s, p->xid) || p->final_lsn <= s->last_lsn) return;
    apply_change(p, s, r, m);
}

static void on_relation(pgstate *p, const pgo_message *m) {
    relation *r = rel_find(p, m->relid);
    if (r) rel_forget(r);
    else {
        p->rels = xrealloc(p->rels, (p->nrels + 1) * sizeof *p->rels);
        r = &p->rels[p->nrels++];
    }
    r->id = m->relid;
    r->schema = xstrndup(m->schema, strlen(m->schema));
    r->table = xstrndup(m->table, strlen(m->table));
    r->ncols = m->ncols;
    r->names = xcalloc(m->ncols ? m->ncols : 1, sizeof *r->names);
    for (uint16_t i = 0; i < m->ncols; i++) r->names[i] = xstrndup(m->cols[i].name, strlen(m->cols[i].name));
    /* a shape of this table whose columns changed cannot go on */
    shapes *sh = p->sh;
    pthread_mutex_lock(&sh->mu);
    for (size_t i = 0; i < sh->n; i++) {
        shape *s = sh->list[i];
        if (s->gone || strcmp(s->schema, r->schema) != 0 || strcmp(s->table, r->table) != 0) continue;
        bool same = s->ncols == r->ncols;
        for (size_t k = 0; same && k < s->ncols; k++) same = strcmp(s->cols[k].name, r->names[k]) == 0;
        if (!same) shape_invalidate(p->sh, s, "its table's columns changed");
    }
    pthread_mutex_unlock(&sh->mu);
}

static void on_change(pgstate *p, const pgo_message *m) {
    shapes *sh = p->sh;
    pthread_mutex_lock(&sh->mu);
    if (m->kind == PGO_TRUNCATE) {
        for (uint32_t t = 0; t < m->ntruncated; t++) {
            const relation *r = rel_find(p, m->truncated[t]);
            for (size_t i = 0; r && i < sh->n; i++)
                if (strcmp(sh->list[i]->schema, r->schema) == 0 && strcmp(sh->list[i]->table, r->table) == 0 &&
                    !seen(sh->list[i], p->xid))
                    shape_invalidate(p->sh, sh->list[i], "its table was truncated");
        }
    } else {
        const relation *r = rel_find(p, m->relid);
        shape_table *t = r ? shape_table_of(sh, r->schema, r->table) : NULL;
        uint64_t mark = ++p->changes;
        for (size_t i = 0; t && i < t->nrest; i++) consider(p, t->rest[i], r, m, mark);
        const pgo_tuple *rows[] = {&m->new_row, &m->old};
        buf v;
        buf_init(&v);
        for (size_t k = 0; t && k < t->ncols; k++) {
            for (int w = 0; w < 2; w++) { /* the shapes filed under the row's value, before and after */
                int col = t->cols[k];
                if (col >= rows[w]->ncols || rows[w]->values[col].kind != 't') continue;
                buf_reset(&v);
                buf_append(&v, rows[w]->values[col].data, rows[w]->values[col].len);
                buf_append_byte(&v, 0);
                char num[32];
                const char *canon = where_canonical(t->types[k], (const char *)v.data, num, sizeof num);
                shape_bucket *b = canon ? shape_table_bucket(t, col, canon, false) : NULL;
                for (size_t i = 0; b && i < b->n; i++) consider(p, b->shapes[i], r, m, mark);
            }
        }
        buf_free(&v);
    }
    pthread_mutex_unlock(&sh->mu);
}

static void on_commit(pgstate *p, const pgo_message *m) {
    shapes *sh = p->sh;
    pending pd = {.lsn = m->end_lsn};
    pthread_mutex_lock(&sh->mu);
    const char *handle;
    json_t *msgs;
    json_object_foreach(p->batches, handle, msgs) {
        shape *s = shape_find_handle(sh, handle);
        if (!s || s->gone) continue; /* deleted or truncated meanwhile: nothing more goes to it */
        json_object_set_new(json_object_get(json_array_get(msgs, json_array_size(msgs) - 1), "headers"), "last", json_true());
        if (shape_log(sh, s, msgs) != 0) { /* not stored: its clients must start again, never miss it */
            shape_invalidate(sh, s, "a change could not be stored");
            continue;
        }
        const char *key;
        json_t *in;
        json_object_foreach(json_object_get(p->keys, handle), key, in) {
            if (json_is_true(in)) strmap_put(s->keys, key, s);
            else strmap_del(s->keys, key);
        }
        s->last_lsn = p->final_lsn;
        pd.paths = xrealloc(pd.paths, (pd.npaths + 1) * sizeof *pd.paths);
        pd.paths[pd.npaths++] = xstrndup(s->log_path, strlen(s->log_path));
    }
    pthread_mutex_unlock(&sh->mu);
    json_object_clear(p->batches);
    json_object_clear(p->keys);
    p->pend = xrealloc(p->pend, (p->npend + 1) * sizeof *p->pend);
    p->pend[p->npend++] = pd;
    if (m->end_lsn > p->received) p->received = m->end_lsn;
}

static void on_message(pgstate *p, const uint8_t *data, size_t n) {
    pgo_message m;
    char err[200];
    if (pgo_parse(data, n, &m, err, sizeof err) != 0) {
        log_write(LOG_ERROR, "replication: %s", err);
    } else {
        switch (m.kind) {
        case PGO_BEGIN:
            p->in_txn = true;
            p->xid = m.xid;
            p->final_lsn = m.lsn;
            p->op_position = 0;
            json_object_clear(p->batches);
            json_object_clear(p->keys);
            break;
        case PGO_RELATION: on_relation(p, &m); break;
        case PGO_INSERT:
        case PGO_UPDATE:
        case PGO_DELETE:
        case PGO_TRUNCATE: on_change(p, &m); break;
        case PGO_COMMIT:
            p->in_txn = false;
            on_commit(p, &m);
            break;
        default: break;
        }
    }
    pgo_message_free(&m);
}

/* The newest position all of whose logs are durable. */
static void settle(pgstate *p) {
    size_t done = 0;
    while (done < p->npend) {
        pending *pd = &p->pend[done];
        bool all = true;
        for (size_t i = 0; all && i < pd->npaths; i++) all = streams_settled(p->sh->st, pd->paths[i]);
        if (!all) break;
        p->confirmed = pd->lsn;
        for (size_t i = 0; i < pd->npaths; i++) free(pd->paths[i]);
        free(pd->paths);
        done++;
    }
    if (done) memmove(p->pend, p->pend + done, (p->npend - done) * sizeof *p->pend);
    p->npend -= done;
}

static void put64(uint8_t *b, uint64_t v) {
    for (int i = 7; i >= 0; i--) b[7 - i] = (uint8_t)(v >> (i * 8));
}

static void send_status(pgstate *p) {
    uint8_t b[34];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t pg_us = ((int64_t)ts.tv_sec - 946684800) * 1000000 + ts.tv_nsec / 1000; /* since 2000-01-01 */
    b[0] = 'r';
    put64(b + 1, p->confirmed);
    put64(b + 9, p->confirmed);
    put64(b + 17, p->confirmed);
    put64(b + 25, (uint64_t)pg_us);
    b[33] = 0;
    if (PQputCopyData(p->repl, (const char *)b, sizeof b) == 1) PQflush(p->repl);
    p->last_status = now_ms();
}

static void disconnect(pgstate *p) {
    pthread_mutex_lock(&p->cancel_mu);
    if (p->cancel) PQfreeCancel(p->cancel);
    p->cancel = NULL;
    pthread_mutex_unlock(&p->cancel_mu);
    if (p->repl) PQfinish(p->repl);
    if (p->ctl.conn) PQfinish(p->ctl.conn);
    p->repl = p->ctl.conn = NULL;
    for (size_t i = 0; i < p->nrels; i++) rel_forget(&p->rels[i]);
    p->nrels = 0;
    p->in_txn = false; /* a transaction cut off is sent again from the slot */
    json_object_clear(p->batches);
    json_object_clear(p->keys);
}

/* Connect both connections, make the publication and the slot; false with err. */
static bool connect_all(pgstate *p, char *err, size_t errlen) {
    shapes *sh = p->sh;
    const char *ckeys[] = {"dbname", "connect_timeout", "client_encoding", NULL}, *cvals[] = {sh->url, "10", "UTF8", NULL};
    p->ctl.conn = PQconnectdbParams(ckeys, cvals, 1);
    if (PQstatus(p->ctl.conn) != CONNECTION_OK) {
        snprintf(err, errlen, "%s", PQerrorMessage(p->ctl.conn));
        return false;
    }
    pthread_mutex_lock(&p->cancel_mu);
    p->cancel = PQgetCancel(p->ctl.conn);
    pthread_mutex_unlock(&p->cancel_mu);
    /* names resolve in pg_catalog only (a where clause cannot reach a user's
     * function), literals are standard, and nothing waits forever */
    static const char *const settings[] = {"SET search_path = pg_catalog", "SET standard_conforming_strings = on",
                                           "SET lock_timeout = '10s'", "SET statement_timeout = '10min'"};
    for (size_t i = 0; i < sizeof settings / sizeof *settings; i++)
        if (!pgctl_exec(&p->ctl, settings[i], err, errlen)) return false;
    PGresult *r = pgctl_query(&p->ctl, "SHOW wal_level", 0, NULL, err, errlen);
    if (!r) return false;
    bool logical = strcmp(PQgetvalue(r, 0, 0), "logical") == 0;
    PQclear(r);
    if (!logical) {
        snprintf(err, errlen, "Postgres runs with wal_level = %s: shapes need wal_level = logical", "replica");
        return false;
    }
    const char *pub[] = {sh->publication}, *slot[] = {sh->slot};
    r = pgctl_query(&p->ctl, "SELECT 1 FROM pg_publication WHERE pubname = $1", 1, pub, err, errlen);
    if (!r) return false;
    bool have_pub = PQntuples(r) > 0;
    PQclear(r);
    if (!have_pub) {
        char *q = pgctl_quote_ident(&p->ctl, sh->publication), sql[300];
        snprintf(sql, sizeof sql, "CREATE PUBLICATION %s", q);
        free(q);
        if (!pgctl_exec(&p->ctl, sql, err, errlen)) return false;
    }
    r = pgctl_query(&p->ctl, "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", 1, slot, err, errlen);
    if (!r) return false;
    bool have_slot = PQntuples(r) > 0;
    PQclear(r);
    if (!have_slot) {
        pthread_mutex_lock(&sh->mu); /* what was derived from a lost slot is stale */
        for (size_t i = 0; i < sh->n; i++) shape_invalidate(p->sh, sh->list[i], "the replication slot is new");
        pthread_mutex_unlock(&sh->mu);
        r = pgctl_query(&p->ctl, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", 1, slot, err, errlen);
        if (!r) return false;
        PQclear(r);
    }
    /* values arrive as UTF-8 whatever the database's encoding (JSON needs it) */
    const char *keys[] = {"dbname", "replication", "connect_timeout", "client_encoding", NULL},
               *vals[] = {sh->url, "database", "10", "UTF8", NULL};
    p->repl = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(p->repl) != CONNECTION_OK) {
        snprintf(err, errlen, "replication connection: %s", PQerrorMessage(p->repl));
        return false;
    }
    char *qs = PQescapeIdentifier(p->repl, sh->slot, strlen(sh->slot));
    char *qp = PQescapeLiteral(p->repl, sh->publication, strlen(sh->publication));
    char sql[600];
    snprintf(sql, sizeof sql, "START_REPLICATION SLOT %s LOGICAL 0/0 (proto_version '1', publication_names %s)", qs, qp);
    PQfreemem(qs);
    PQfreemem(qp);
    r = PQexec(p->repl, sql);
    bool copying = PQresultStatus(r) == PGRES_COPY_BOTH;
    if (!copying) snprintf(err, errlen, "%s", PQresultErrorMessage(r));
    PQclear(r);
    return copying;
}

/* Read what the replication connection has; false if it broke. */
static bool consume(pgstate *p) {
    if (!PQconsumeInput(p->repl)) return false;
    for (;;) {
        char *data = NULL;
        int n = PQgetCopyData(p->repl, &data, 1);
        if (n == 0) return true;
        if (n < 0) return false;
        const uint8_t *b = (const uint8_t *)data;
        if (b[0] == 'w' && n >= 25) {
            on_message(p, b + 25, (size_t)n - 25);
        } else if (b[0] == 'k' && n >= 18) {
            uint64_t end = 0;
            for (int i = 1; i <= 8; i++) end = end << 8 | b[i];
            /* the walsender's sent position: every transaction before it has
             * reached us; if none is half received and all are durable, it
             * is confirmed too (or WAL of unrelated tables piles up) */
            if (p->npend == 0 && !p->in_txn && end > p->received) p->received = p->confirmed = end;
            if (b[17]) send_status(p);
        }
        PQfreemem(data);
    }
}

static void drain_wakes(shapes *sh) {
    uint64_t v;
    if (read(sh->wake_fd, &v, sizeof v) < 0) { /* EAGAIN: nothing */
    }
}

/* Sleep out the backoff before the next connection attempt; requests that
 * come meanwhile are answered 503 at once (and their wake consumed, or the
 * wait would return at once for ever). */
static void wait_backoff(pgstate *p) {
    shapes *sh = p->sh;
    int64_t until = now_ms() + p->backoff_ms, left;
    while (!sh->quit && (left = until - now_ms()) > 0) {
        struct pollfd w = {sh->wake_fd, POLLIN, 0};
        if (poll(&w, 1, (int)left) > 0) drain_wakes(sh);
        run_jobs(p, false);
    }
}

static void *run(void *arg) {
    pgstate *p = arg;
    shapes *sh = p->sh;
    p->backoff_ms = 100;
    while (!sh->quit) {
        char err[512] = "";
        if (!p->repl) {
            if (!connect_all(p, err, sizeof err)) {
                log_write(LOG_WARN, "shapes: Postgres: %s (again in %u ms)", err, p->backoff_ms);
                set_status(sh, "waiting", err);
                disconnect(p);
                wait_backoff(p);
                p->backoff_ms = p->backoff_ms * 2 > 10000 ? 10000 : p->backoff_ms * 2;
                continue;
            }
            p->connected_at = now_ms();
            set_status(sh, "active", NULL);
            log_write(LOG_INFO, "shapes: replicating from Postgres (slot %s, publication %s)", sh->slot, sh->publication);
        }
        struct pollfd fds[2] = {{PQsocket(p->repl), POLLIN, 0}, {sh->wake_fd, POLLIN, 0}};
        poll(fds, 2, 100);
        if (fds[1].revents & POLLIN) drain_wakes(sh);
        run_jobs(p, true);
        PGconn *broke = !consume(p) ? p->repl : PQstatus(p->ctl.conn) != CONNECTION_OK ? p->ctl.conn : NULL;
        if (broke) { /* reconnect both, after the backoff: a connection that breaks at once must not spin */
            snprintf(err, sizeof err, "the %s connection broke: %s", broke == p->repl ? "replication" : "control",
                     PQerrorMessage(broke));
            log_write(LOG_WARN, "shapes: %s (again in %u ms)", err, p->backoff_ms);
            set_status(sh, "waiting", err);
            disconnect(p);
            wait_backoff(p);
            p->backoff_ms = p->backoff_ms * 2 > 10000 ? 10000 : p->backoff_ms * 2;
            continue;
        }
        if (p->backoff_ms > 100 && now_ms() - p->connected_at > 10000) p->backoff_ms = 100; /* healthy again */
        settle(p);
        if (now_ms() - p->last_status >= STATUS_EVERY_MS) send_status(p);
    }
    disconnect(p);
    return NULL;
}

static pgstate *the_state(shapes *sh) { return (pgstate *)sh->pg; }

int pg_start(shapes *sh, char *err, size_t errlen) {
    pgstate *p = xcalloc(1, sizeof *p);
    p->sh = sh;
    p->ctl.sh = sh;
    pthread_mutex_init(&p->cancel_mu, NULL);
    p->batches = json_object();
    p->keys = json_object();
    sh->pg = p;
    if (pthread_create(&sh->thread, NULL, run, p) != 0) {
        snprintf(err, errlen, "cannot start the Postgres thread");
        return -1;
    }
    sh->running = true;
    return 0;
}

void pg_stop(shapes *sh) {
    pgstate *p = the_state(sh);
    if (!p) return;
    if (sh->running) {
        sh->quit = true;
        uint64_t one = 1;
        if (write(sh->wake_fd, &one, sizeof one) < 0) { /* full: awake anyway */
        }
        pthread_mutex_lock(&p->cancel_mu); /* a subset or snapshot running: stop it */
        char why[128];
        if (p->cancel) PQcancel(p->cancel, why, sizeof why);
        pthread_mutex_unlock(&p->cancel_mu);
        pthread_join(sh->thread, NULL);
    }
    for (size_t i = 0; i < p->npend; i++) {
        for (size_t k = 0; k < p->pend[i].npaths; k++) free(p->pend[i].paths[k]);
        free(p->pend[i].paths);
    }
    free(p->pend);
    free(p->rels);
    json_decref(p->batches);
    json_decref(p->keys);
    pthread_mutex_lock(&p->cancel_mu);
    if (p->cancel) PQfreeCancel(p->cancel);
    pthread_mutex_unlock(&p->cancel_mu);
    pthread_mutex_destroy(&p->cancel_mu);
    free(p);
    sh->pg = NULL;
}
