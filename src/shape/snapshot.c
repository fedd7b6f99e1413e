/* snapshot.c — what the Postgres thread reads on its control connection:
 * a requested table's columns (the catalog), its place in the publication,
 * a new shape's initial snapshot (written to its log), and subset
 * snapshots (a page of a shape's rows, answered to one client, never
 * logged). Each runs in a REPEATABLE READ transaction whose snapshot
 * (xmin, xmax, in-progress xids) says which later changes it already saw.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/mem.h"
#include "clause.h"
#include "shape_int.h"

#define ROWS_PER_FETCH "1000" /* rows per FETCH of a snapshot, and per append to its log */

PGresult *pgctl_query(pg_ctl *p, const char *sql, int n, const char *const *params, char *err, size_t errlen) {
    PGresult *r = PQexecParams(p->conn, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType t = PQresultStatus(r);
    if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        snprintf(p->sqlstate, sizeof p->sqlstate, "%s", state ? state : "");
        const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY), *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
        if (msg) snprintf(err, errlen, "%s%s%s", msg, detail ? ": " : "", detail ? detail : "");
        else snprintf(err, errlen, "%s", PQresultErrorMessage(r)); /* the connection's, not a statement's */
        size_t k = strlen(err);
        while (k && (err[k - 1] == '\n')) err[--k] = 0;
        PQclear(r);
        return NULL;
    }
    return r;
}

int pgctl_error_status(const pg_ctl *p) {
    /* the request's fault, the same on every retry: data exceptions (22),
     * syntax, undefined or wrong objects and privileges (42), unsupported
     * features (0A), parameters that do not fit the query (08P01) */
    static const char *const client[] = {"22", "42", "0A"};
    for (size_t i = 0; i < sizeof client / sizeof *client; i++)
        if (strncmp(p->sqlstate, client[i], 2) == 0) return 400;
    return strcmp(p->sqlstate, "08P01") == 0 ? 400 : 503;
}

bool pgctl_exec(pg_ctl *p, const char *sql, char *err, size_t errlen) {
    PGresult *r = pgctl_query(p, sql, 0, NULL, err, errlen);
    PQclear(r);
    return r != NULL;
}

char *pgctl_quote_ident(pg_ctl *p, const char *s) {
    char *q = PQescapeIdentifier(p->conn, s, strlen(s));
    char *out = xstrndup(q ? q : "\"\"", q ? strlen(q) : 2);
    PQfreemem(q);
    return out;
}

/* The definition of a requested shape, from the catalog: NULL (answered
 * 400 or 503 by the caller through err/status) if the table or a column
 * does not exist or Postgres failed. */
json_t *pgctl_catalog(pg_ctl *p, json_t *req, int *status, char *err, size_t errlen) {
    const char *schema = json_string_value(json_object_get(req, "schema"));
    const char *table = json_string_value(json_object_get(req, "table"));
    char *qs = pgctl_quote_ident(p, schema), *qt = pgctl_quote_ident(p, table);
    char rel[600];
    snprintf(rel, sizeof rel, "%s.%s", qs, qt);
    free(qs);
    free(qt);
    const char *params[] = {rel};
    PGresult *r = pgctl_query(p,
                        "SELECT a.attname, t.typname, coalesce((SELECT k.n - 1 FROM unnest(i.indkey::int2[]) WITH ORDINALITY "
                        "k(att, n) WHERE k.att = a.attnum), -1) "
                        "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                        "LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary "
                        "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' "
                        "ORDER BY a.attnum",
                        1, params, err, errlen);
    *status = 503;
    if (!r) return NULL;
    if (PQntuples(r) == 0) {
        snprintf(err, errlen, "table %.200s does not exist", rel);
        *status = 400;
        PQclear(r);
        return NULL;
    }
    json_t *cols = json_array(), *sel = json_array();
    json_t *want = json_object_get(req, "columns");
    size_t found = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *name = PQgetvalue(r, i, 0);
        int pk = atoi(PQgetvalue(r, i, 2));
        json_array_append_new(cols, json_pack("{s:s,s:s,s:i}", "name", name, "type", PQgetvalue(r, i, 1), "pk_index", pk));
        bool in = !want || pk >= 0;
        size_t k;
        json_t *w;
        json_array_foreach(want, k, w) if (strcmp(json_string_value(w), name) == 0) in = true, found++;
        json_array_append_new(sel, json_boolean(in));
    }
    PQclear(r);
    if (want && found != json_array_size(want)) {
        snprintf(err, errlen, "columns names a column that %s.%s does not have", schema, table);
        *status = 400;
        json_decref(cols);
        json_decref(sel);
        return NULL;
    }
    json_t *def = json_pack("{s:s,s:s,s:o,s:o,s:O}", "schema", schema, "table", table, "columns", cols, "selected", sel,
                            "params", json_object_get(req, "params") ?: json_array());
    if (json_object_get(req, "where")) json_object_set(def, "where", json_object_get(req, "where"));
    if (json_object_get(req, "replica")) json_object_set(def, "replica", json_object_get(req, "replica"));
    if (json_object_get(req, "log")) json_object_set(def, "log", json_object_get(req, "log"));
    return def;
}

/* Make the table's changes reach us whole: in the publication, with
 * REPLICA IDENTITY FULL (old rows come with updates and deletes). */
static bool publish(pg_ctl *p, const shape *s, char *err, size_t errlen) {
    char *qs = pgctl_quote_ident(p, s->schema), *qt = pgctl_quote_ident(p, s->table), *qp = pgctl_quote_ident(p, p->sh->publication);
    char sql[2048];
    const char *params[] = {p->sh->publication, s->schema, s->table};
    PGresult *r = pgctl_query(p,
                        "SELECT (SELECT relreplident FROM pg_class WHERE oid = to_regclass(quote_ident($2) || '.' || quote_ident($3))), "
                        "EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)",
                        3, params, err, errlen);
    bool ok = r != NULL;
    if (ok && strcmp(PQgetvalue(r, 0, 0), "f") != 0) {
        snprintf(sql, sizeof sql, "ALTER TABLE %s.%s REPLICA IDENTITY FULL", qs, qt);
        ok = pgctl_exec(p, sql, err, errlen);
    }
    if (ok && strcmp(PQgetvalue(r, 0, 1), "t") != 0) {
        snprintf(sql, sizeof sql, "ALTER PUBLICATION %s ADD TABLE %s.%s", qp, qs, qt);
        ok = pgctl_exec(p, sql, err, errlen);
    }
    PQclear(r);
    free(qs);
    free(qt);
    free(qp);
    return ok;
}

/* The transaction's snapshot and the WAL position it was taken at. */
typedef struct pg_snap {
    uint64_t xmin, xmax;
    uint64_t *xip;
    size_t nxip;
    char lsn[24]; /* decimal */
} pg_snap;

/* Begin a read-only REPEATABLE READ transaction and read its snapshot. */
static bool snap_begin(pg_ctl *p, pg_snap *snap, char *err, size_t errlen) {
    memset(snap, 0, sizeof *snap);
    if (!pgctl_exec(p, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", err, errlen)) return false;
    PGresult *r = pgctl_query(p, "SELECT pg_current_snapshot()::text, (pg_current_wal_lsn() - '0/0'::pg_lsn)::text", 0,
                              NULL, err, errlen);
    if (!r) return false;
    const char *t = PQgetvalue(r, 0, 0); /* "xmin:xmax:xip1,xip2" */
    char *end;
    snap->xmin = strtoull(t, &end, 10);
    snap->xmax = strtoull(end + 1, &end, 10);
    if (*end == ':') /* the in-progress list (possibly empty) */
        for (const char *x = end + 1; *x;) {
            char *after;
            uint64_t xid = strtoull(x, &after, 10);
            if (after == x) break;
            snap->xip = xrealloc(snap->xip, (snap->nxip + 1) * sizeof *snap->xip);
            snap->xip[snap->nxip++] = xid;
            x = *after == ',' ? after + 1 : after;
        }
    snprintf(snap->lsn, sizeof snap->lsn, "%s", PQgetvalue(r, 0, 1));
    PQclear(r);
    return true;
}

static json_t *snap_xip(const pg_snap *snap) {
    json_t *xip = json_array();
    for (size_t i = 0; i < snap->nxip; i++) json_array_append_new(xip, json_sprintf("%llu", (unsigned long long)snap->xip[i]));
    return xip;
}

/* "SELECT <every column> FROM ONLY <table>[ WHERE (<the shape's where>)]"
 * appended to sql; the clause sits on lines of its own, so no comment in it can
 * reach what follows. */
static void select_rows_sql_onto(pg_ctl *p, const shape *s, buf *sql) {
    buf_append_str(sql, "SELECT ");
    for (size_t i = 0; i < s->ncols; i++) {
        char *q = pgctl_quote_ident(p, s->cols[i].name);
        buf_printf(sql, "%s%s", i ? ", " : "", q);
        free(q);
    }
    char *qs = pgctl_quote_ident(p, s->schema), *qt = pgctl_quote_ident(p, s->table);
    buf_printf(sql, " FROM ONLY %s.%s", qs, qt);
    free(qs);
    free(qt);
    if (s->where_sql) buf_printf(sql, " WHERE (\n%s\n)", s->where_sql);
}

/* Run sql with the shape's params followed by `more`; NULL with err. */
static PGresult *select_rows(pg_ctl *p, const shape *s, buf *sql, json_t *more, char *err, size_t errlen) {
    buf_append_byte(sql, 0);
    size_t ns = json_array_size(s->params), nm = json_array_size(more);
    const char **pv = xcalloc(ns + nm + 1, sizeof *pv);
    for (size_t i = 0; i < ns; i++) pv[i] = json_string_value(json_array_get(s->params, i));
    for (size_t i = 0; i < nm; i++) pv[ns + i] = json_string_value(json_array_get(more, i));
    PGresult *rows = pgctl_query(p, (const char *)sql->data, (int)(ns + nm), pv, err, errlen);
    free(pv);
    return rows;
}

/* Row r of rows as values in the shape's column order (they point into rows). */
static void row_values(const shape *s, PGresult *rows, int r, char **values) {
    for (size_t i = 0; i < s->ncols; i++) values[i] = PQgetisnull(rows, r, (int)i) ? NULL : PQgetvalue(rows, r, (int)i);
}

bool pgctl_snapshot(pg_ctl *p, shape *s, const char **param, char *err, size_t errlen) {
    shapes *sh = p->sh;
    p->sqlstate[0] = 0;
    *param = "table";
    if (streams_create_json(sh->st, s->log_path, -1, 0, NULL, 0, NULL) < 0) {
        snprintf(err, errlen, "storage error: %s", strerror(errno));
        return false;
    }
    pg_snap snap = {0};
    bool published = publish(p, s, err, errlen);
    if (published) *param = "where";
    if (!published || !snap_begin(p, &snap, err, errlen)) {
        free(snap.xip);
        pgctl_exec(p, "ROLLBACK", err, 0);
        return false;
    }
    s->xmin = snap.xmin;
    s->xmax = snap.xmax;
    s->xip = xrealloc(s->xip, (snap.nxip ? snap.nxip : 1) * sizeof *s->xip);
    for (size_t i = 0; i < snap.nxip; i++) s->xip[i] = (uint32_t)snap.xip[i];
    s->nxip = snap.nxip;
    bool ok = true;
    buf sql, key;
    buf_init(&sql);
    buf_init(&key);
    json_t *msgs = json_array();
    {
        /* read through a cursor, ROWS_PER_FETCH rows at a time: a big
         * table never sits whole in one result. changes_only: the log
         * starts with the changes after this snapshot, but Postgres still
         * checks the where clause (LIMIT 0). */
        buf_append_str(&sql, "DECLARE weft_snapshot NO SCROLL CURSOR FOR ");
        buf text;
        buf_init(&text);
        select_rows_sql_onto(p, s, &sql);
        if (s->changes_only) buf_append_str(&sql, " LIMIT 0");
        PGresult *rows = select_rows(p, s, &sql, NULL, err, errlen);
        ok = rows != NULL;
        PQclear(rows);
        char **values = xcalloc(s->ncols ? s->ncols : 1, sizeof *values);
        for (int n = 1; ok && n > 0;) {
            if (sh->quit) { /* shutting down: the snapshot is dropped, the request answered 503 */
                snprintf(err, errlen, "weft is shutting down");
                ok = false;
                break;
            }
            rows = pgctl_query(p, "FETCH " ROWS_PER_FETCH " FROM weft_snapshot", 0, NULL, err, errlen);
            ok = rows != NULL;
            n = ok ? PQntuples(rows) : 0;
            for (int r = 0; r < n; r++) {
                row_values(s, rows, r, values);
                shape_row_key(s, (const char *const *)values, &key);
                strmap_put(s->keys, (const char *)key.data, s);
                shape_insert_text(s, values, (const char *)key.data, -1, &text);
                buf_append_str(&text, ",\n");
            }
            PQclear(rows);
            if (n && shape_log_text(sh, s, &text) != 0) {
                snprintf(err, errlen, "storage error: %s", strerror(errno));
                ok = false;
            }
            buf_reset(&text);
        }
        buf_free(&text);
        free(values);
    }
    pgctl_exec(p, ok ? "COMMIT" : "ROLLBACK", err, ok ? errlen : 0);
    if (ok) {
        char xmin[24], xmax[24];
        snprintf(xmin, sizeof xmin, "%llu", (unsigned long long)snap.xmin);
        snprintf(xmax, sizeof xmax, "%llu", (unsigned long long)snap.xmax);
        json_array_append_new(msgs, json_pack("{s:{s:s,s:s,s:s,s:o}}", "headers", "control", "snapshot-end", "xmin", xmin,
                                              "xmax", xmax, "xip_list", snap_xip(&snap)));
        ok = shape_log(sh, s, msgs) == 0;
        if (!ok) snprintf(err, errlen, "storage error: %s", strerror(errno));
    }
    free(snap.xip);
    json_decref(msgs);
    buf_free(&sql);
    buf_free(&key);
    return ok;
}

/* The subset's where clause checked like a shape's (against the table's
 * columns, with its params), then written after the shape's params. */
static char *subset_where(const shape *s, json_t *subset, char *err, size_t errlen) {
    const char *w = json_string_value(json_object_get(subset, "where"));
    if (!w) return NULL;
    where_expr *e = shape_where_compile(s, w, json_object_get(subset, "params"), err, errlen);
    if (!e) return NULL;
    where_free(e);
    char *shifted = clause_shift_params(w, (int)json_array_size(s->params));
    if (!shifted) snprintf(err, errlen, "invalid where clause");
    return shifted;
}

char *pgctl_subset(pg_ctl *p, shape *s, json_t *subset, uint64_t *offset, int *status, char *err, size_t errlen) {
    *status = 400;
    p->sqlstate[0] = 0;
    char *where = subset_where(s, subset, err, errlen);
    if (!where && json_object_get(subset, "where")) return NULL;
    char *order = NULL;
    const char *ob = json_string_value(json_object_get(subset, "order_by"));
    if (ob) {
        const char **names = xcalloc(s->ncols ? s->ncols : 1, sizeof *names);
        for (size_t i = 0; i < s->ncols; i++) names[i] = s->cols[i].name;
        order = clause_order_by(ob, names, s->ncols, err, errlen);
        free(names);
        if (!order) {
            free(where);
            return NULL;
        }
    }
    buf sql, key;
    buf_init(&sql);
    buf_init(&key);
    select_rows_sql_onto(p, s, &sql);
    if (where) buf_printf(&sql, "%s (\n%s\n)", s->where_sql ? " AND" : " WHERE", where);
    if (order) buf_printf(&sql, " ORDER BY %s", order);
    json_t *limit = json_object_get(subset, "limit"), *skip = json_object_get(subset, "offset");
    if (limit) buf_printf(&sql, " LIMIT %lld", (long long)json_integer_value(limit));
    if (skip) buf_printf(&sql, " OFFSET %lld", (long long)json_integer_value(skip));
    /* the client goes on from where it was in the log (its offset), or from
     * the log's end before the snapshot: a change after that offset that the
     * snapshot saw is dropped by the client (by the snapshot's xids) */
    *status = 503;
    char *body = NULL;
    pg_snap snap = {0};
    PGresult *rows = NULL;
    json_t *from = json_object_get(subset, "from");
    int got_end = from ? (*offset = (uint64_t)json_integer_value(from), 0) : streams_visible_end(p->sh->st, s->log_path, offset);
    if (got_end == 0 && snap_begin(p, &snap, err, errlen))
        rows = select_rows(p, s, &sql, json_object_get(subset, "params"), err, errlen);
    pgctl_exec(p, rows ? "COMMIT" : "ROLLBACK", err, rows ? errlen : 0);
    if (rows) {
        /* tells a client's snapshots apart, also across restarts of weft */
        int mark = (int)randombytes_uniform(0x7fffffff);
        char xmin[24], xmax[24];
        snprintf(xmin, sizeof xmin, "%llu", (unsigned long long)snap.xmin);
        snprintf(xmax, sizeof xmax, "%llu", (unsigned long long)snap.xmax);
        json_t *meta = json_pack("{s:s,s:s,s:o,s:i,s:s}", "xmin", xmin, "xmax", xmax, "xip_list", snap_xip(&snap),
                                 "snapshot_mark", mark, "database_lsn", snap.lsn);
        char *mt = json_dumps(meta, JSON_COMPACT);
        json_decref(meta);
        buf text;
        buf_init(&text);
        buf_printf(&text, "{\"metadata\":%s,\"data\":[", mt);
        free(mt);
        char **values = xcalloc(s->ncols ? s->ncols : 1, sizeof *values);
        for (int r = 0; r < PQntuples(rows); r++) {
            row_values(s, rows, r, values);
            shape_row_key(s, (const char *const *)values, &key);
            if (r) buf_append_byte(&text, ',');
            shape_insert_text(s, values, (const char *)key.data, mark, &text);
        }
        free(values);
        buf_append_str(&text, "]}");
        body = xstrndup((const char *)text.data, text.len);
        buf_free(&text);
        *status = 200;
    } else {
        *status = pgctl_error_status(p);
    }
    PQclear(rows);
    free(snap.xip);
    free(where);
    free(order);
    buf_free(&sql);
    buf_free(&key);
    return body;
}
