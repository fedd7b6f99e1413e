/* shape_int.h — the shape layer's internals (its own files only).
 *
 * Files, each calling only the ones below it:
 *   routes.c    GET /v1/shape and /v1/health: parameters, answers, live waits
 *   pg.c        the Postgres thread: connections, replication, jobs
 *   snapshot.c  its control connection's reads: catalog, snapshots, subsets
 *   shape.c     the object, the registry, shape logs and their definitions
 *   index.c     which shapes a change concerns (by table, and by pinned values)
 *   where.c     where clauses (where.h)   clause.c  SQL text of subsets (clause.h)
 *   pgoutput.c  the replication messages (pgoutput.h)
 *
 * Functions here take sh->mu unless they say "with sh->mu held".
 */
#ifndef WEFT_SHAPE_INT_H
#define WEFT_SHAPE_INT_H

#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>

#include "../net/loop.h"
#include "../util/buf.h"
#include "../util/strmap.h"
#include "shape.h"
#include "where.h"

/* Internal paths: each shape's log, and the list of shape definitions. */
#define SHAPE_LOG_PREFIX "/v1/__shape/"
#define SHAPE_DEFS_PATH "/v1/__shapes"
/* How row keys are made (shape_row_key); a shape kept with another format
 * is refetched after a restart, never continued with keys that differ. */
#define SHAPE_KEY_FORMAT 2

typedef struct shape_column {
    char *name;
    char *type;   /* Postgres type name (udt), for electric-schema */
    int pk_index; /* -1 if not in the primary key */
    bool filterable; /* a type where clauses can use */
} shape_column;

typedef struct shape {
    char *handle;
    char *def_key;      /* table, where, params, columns, replica, log: equal keys share a shape */
    char *schema, *table;
    char *where_sql;    /* NULL: every row */
    json_t *params;     /* array of strings */
    shape_column *cols; /* the table's columns, in table order */
    size_t ncols;
    bool *selected;     /* per column: in `columns` (all if none given) */
    char *schema_header; /* electric-schema: each synced column's type (and pk_index) */
    where_expr *where;
    char *log_path;
    strmap *keys;       /* row key -> the shape: the rows in the shape now */
    uint64_t xmin, xmax; /* the snapshot: transactions it saw are skipped */
    uint32_t *xip;
    size_t nxip;
    uint64_t last_lsn;  /* newest commit applied (restart: skip up to it) */
    bool replica_full;  /* replica=full: whole rows and old values */
    bool changes_only;  /* log=changes_only: no rows in the snapshot, changes only */
    bool ready;         /* its snapshot is in its log */
    uint64_t mark;      /* the change it was last considered for (index.c) */
    bool gone;          /* truncated or its table changed: clients must refetch */
    unsigned refs;
} shape;

/* A request for a shape nobody has yet (pg.c makes it, or answers why not). */
typedef struct shape_job {
    struct shape_job *next;
    json_t *req;  /* schema, table, where?, params, columns?, replica?, log? */
    json_t *subset; /* NULL, or a subset to answer once the shape exists:
                     * {where?, params: [text], limit?, offset?, order_by?,
                     *  handle?, from?: the client's handle and log offset} */
    char *key;    /* the shape's definition key */
    http_conn *c; /* holds a ref */
    bool refetch; /* the client's handle is gone: answer 409 with the new one */
} shape_job;

/* The shapes of one table (index.c): those filed by a (column, value) their
 * where clause pins, and the rest. */
typedef struct shape_bucket {
    struct shape_bucket *next;
    int col;
    char *value; /* canonical (where_canonical) */
    shape **shapes;
    size_t n, cap;
} shape_bucket;

typedef struct shape_table {
    char *schema, *table;
    shape **rest; /* not indexed: considered for every change */
    size_t nrest, caprest;
    shape_bucket **buckets;
    size_t nb, nbuckets;
    int *cols; /* the columns some shape is filed by, and their types */
    where_type *types;
    size_t ncols;
} shape_table;

/* A live request waiting for its shape's log to grow (routes.c). */
typedef struct shape_waiter {
    struct shape_waiter *prev, *next;
    shapes *sh;
    http_conn *c; /* holds a ref */
    shape *s;     /* holds a ref */
    uint64_t offset;
    loop_timer timer; /* the long-poll timeout; for SSE, the connection's end */
    bool linked, done;
    bool sse, ending; /* an SSE connection (kept on, re-linked after each send) */
} shape_waiter;

struct shapes {
    pthread_mutex_t mu;
    streams *st;
    shapes_config cfg;
    char *url, *publication, *slot;
    bool on; /* a database URL was given */

    shape **list; /* every shape, gone ones too (handles never repeat) */
    size_t n, cap;
    strmap *by_handle; /* handle -> shape */
    strmap *by_key;    /* definition key -> its newest shape */
    shape_table **tables; /* index.c */
    size_t ntables;
    shape_job *jobs; /* for the Postgres thread */
    char status[32]; /* "starting", "active", "waiting" (Postgres unreachable) */
    char last_error[256];

    pthread_mutex_t wait_mu; /* innermost: the stream observer takes it */
    strmap *waiting;         /* log path -> the first of its waiters (a list) */

    pthread_t thread;
    bool running;
    atomic_bool quit;
    int wake_fd; /* eventfd: jobs for the Postgres thread */
    void *pg;    /* the Postgres thread's own state (pg.c) */
};

/* --- shape.c --- */
shape *shape_find_handle(shapes *sh, const char *handle); /* with sh->mu held */
shape *shape_find_key(shapes *sh, const char *key);       /* with sh->mu held */
/* A new shape (not yet ready) of a definition from the catalog, in the
 * registry; with sh->mu held. NULL with a message in err if its where
 * clause does not compile. */
shape *shape_add(shapes *sh, const char *key, json_t *def, char *err, size_t errlen);
void shape_unref(shape *s);
/* Row key, as Electric makes it: "schema"."table"/"pk1"/"pk2" with '/'
 * doubled in values ('.' too in names), NULL as /_, and every column (in
 * table order) for a table without a primary key. values in table order. */
void shape_row_key(const shape *s, const char *const *values, buf *out);
/* Append Electric messages (each a JSON object) to s's log. 0 or -1. */
int shape_log(shapes *sh, shape *s, json_t *msgs);
/* Append messages already in stored form ("m1,\nm2,\n") to s's log. 0 or -1. */
int shape_log_text(shapes *sh, shape *s, const buf *data);
/* A snapshot row's insert message as JSON text (no separator) onto out:
 * key, the synced columns' values, operation and relation, and
 * snapshot_mark unless mark < 0. */
void shape_insert_text(const shape *s, char **values, const char *key, long mark, buf *out);
/* s is over (truncated, deleted, ...): must-refetch in its log, gone. */
void shape_invalidate(shapes *sh, shape *s, const char *why);
/* Persist s's definition (so it survives a restart). */
int shape_save_def(shapes *sh, shape *s);
/* Wake the live readers of the log at path (the stream observer). */
void shape_waiters_wake(shapes *sh, const char *path, uint64_t visible);
/* Hand a request to the Postgres thread (req, key and subset are taken;
 * subset may be NULL); with sh->mu held. */
void shape_job_push(shapes *sh, json_t *req, char *key, json_t *subset, http_conn *c, bool refetch);
void shape_job_free(shape_job *j);
/* A where clause on s's table (s's own, or a subset's) with params (an
 * array of text); NULL with a message in err. */
where_expr *shape_where_compile(const shape *s, const char *sql, json_t *params, char *err, size_t errlen);
bool shape_value_same(const char *a, const char *b);
/* A row's value for a message: every synced column (all), or the primary
 * key and, when `old` is given, the columns that differ from it. */
json_t *shape_row_value(const shape *s, char **values, bool all, char **old);

/* --- index.c (with sh->mu held) --- */
shape_table *shape_table_of(shapes *sh, const char *schema, const char *table);
/* The bucket of (col, value), made if create; NULL if none. */
shape_bucket *shape_table_bucket(shape_table *t, int col, const char *value, bool create);
/* File a new shape (when it is added to the registry). */
void shape_index_add(shapes *sh, shape *s);
void shape_index_free(shapes *sh);

/* --- snapshot.c: on the Postgres thread, through its control connection --- */
typedef struct pg_ctl {
    shapes *sh;
    PGconn *conn;
    char sqlstate[6]; /* of the last statement that failed ("" if none, or not Postgres') */
} pg_ctl;
/* A statement's result (tuples or command), or NULL with Postgres' message in err. */
PGresult *pgctl_query(pg_ctl *p, const char *sql, int n, const char *const *params, char *err, size_t errlen);
bool pgctl_exec(pg_ctl *p, const char *sql, char *err, size_t errlen);
/* 400 if the last failure is the request's (the same on every retry:
 * bad data, an unknown object, a where clause Postgres refuses), else 503. */
int pgctl_error_status(const pg_ctl *p);
char *pgctl_quote_ident(pg_ctl *p, const char *s); /* malloc'd */
/* The definition of a requested shape from the catalog; NULL with err and
 * *status (400: no such table or column, 503: Postgres failed). */
json_t *pgctl_catalog(pg_ctl *p, json_t *req, int *status, char *err, size_t errlen);
/* Publish s's table and write s's snapshot to its new log (rows unless
 * changes_only, then snapshot-end); false with err and *param, the request
 * parameter at fault (table: it cannot be published; where). */
bool pgctl_snapshot(pg_ctl *p, shape *s, const char **param, char *err, size_t errlen);
/* A subset of s's rows as Electric's subset answer ({metadata, data}, a
 * malloc'd JSON text) and *offset: the subset's "from" (the client's
 * offset in s's log) if it has one, else the end of s's log before the snapshot;
 * NULL with err and *status (400 or 503). */
char *pgctl_subset(pg_ctl *p, shape *s, json_t *subset, uint64_t *offset, int *status, char *err, size_t errlen);

/* --- pg.c --- */
int pg_start(shapes *sh, char *err, size_t errlen);
void pg_stop(shapes *sh);

/* --- routes.c --- */
/* Answer a request for s (ready) from its log; on the connection's loop. */
void shape_answer(shapes *sh, shape *s, http_conn *c);
/* 200 with a subset's answer (body from pgctl_subset). */
void shape_answer_subset(shapes *sh, shape *s, http_conn *c, const char *body, uint64_t offset);
/* 409 must-refetch, naming the shape to start again with (if any). */
void shape_answer_refetch(shapes *sh, http_conn *c, const char *new_handle);
/* A request whose shape could not be made: its error (for a 400, the
 * parameter at fault); on the connection's loop. */
void shape_answer_error(shapes *sh, http_conn *c, int status, const char *param, const char *msg);

#endif
