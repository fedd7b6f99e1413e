/* where_diff.c — a differential test of the where evaluator
 * (src/shape/where.c) against Postgres itself: random rows (NULLs
 * included) in a real table, random clauses; for each clause the rows
 * Postgres' SELECT returns must be exactly those where_eval says TRUE.
 * Clauses Postgres refuses or raises an error on are counted and skipped.
 *
 * Usage: where_diff [N clauses] with WEFT_TEST_DATABASE_URL set (run it
 * through tests/pg/pgtmp.py). Ends with "where_diff: N passed, N failed".
 */
#include "pgtest.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shape/where.h"

#define ROWS 200
#define COLS 7

static const where_column COLUMNS[COLS] = {
    {"i", WHERE_INT}, {"j", WHERE_INT}, {"f", WHERE_FLOAT}, {"n", WHERE_FLOAT},
    {"t", WHERE_TEXT}, {"u", WHERE_TEXT}, {"b", WHERE_BOOL},
};
static const char *const WORDS[] = {"", "a", "ab", "abc", "B", "Ab", "b_c", "a%b", "zz", "é"};
#define NWORDS (sizeof WORDS / sizeof WORDS[0])

static unsigned long long rng = 88172645463325252ull;
static unsigned rnd(unsigned n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

typedef struct sbuf {
    char s[4096];
    size_t n;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s + b->n, sizeof b->s - b->n, fmt, ap);
    va_end(ap);
    if (k > 0) b->n += (size_t)k < sizeof b->s - b->n ? (size_t)k : sizeof b->s - b->n - 1;
}

static void lit_int(sbuf *b) { put(b, "%d", (int)rnd(11) - 5); }
static void lit_float(sbuf *b) { put(b, "%d.%d", (int)rnd(7) - 3, (int)rnd(10)); }
static void lit_text(sbuf *b) { put(b, "'%s'", WORDS[rnd(NWORDS)]); }

static void num_expr(sbuf *b, int depth) {
    switch (rnd(depth > 0 ? 8 : 5)) {
    case 0: put(b, "i"); break;
    case 1: put(b, "j"); break;
    case 2: put(b, "f"); break;
    case 3: put(b, "n"); break;
    case 4: rnd(2) ? lit_int(b) : lit_float(b); break;
    case 5: put(b, "("); num_expr(b, depth - 1); put(b, " %c ", "+-*"[rnd(3)]); num_expr(b, depth - 1); put(b, ")"); break;
    case 6: put(b, "abs("); num_expr(b, depth - 1); put(b, ")"); break;
    default: put(b, "coalesce(i, "); lit_int(b); put(b, ")"); break;
    }
}

static void text_expr(sbuf *b) {
    switch (rnd(5)) {
    case 0: put(b, "t"); break;
    case 1: put(b, "u"); break;
    case 2: put(b, "lower(t)"); break;
    case 3: put(b, "upper(u)"); break;
    default: lit_text(b); break;
    }
}

static const char *const CMP[] = {"=", "<>", "<", "<=", ">", ">=", "!="};

static void pred(sbuf *b, int depth) {
    unsigned k = rnd(depth > 0 ? 16 : 13);
    switch (k) {
    case 0: num_expr(b, 1); put(b, " %s ", CMP[rnd(7)]); num_expr(b, 1); break;
    case 1: text_expr(b); put(b, " %s ", CMP[rnd(7)]); text_expr(b); break;
    case 2: put(b, "t %sLIKE '%s%%'", rnd(2) ? "NOT " : "", WORDS[rnd(NWORDS)]); break;
    case 3: put(b, "u %sILIKE '%%%s'", rnd(2) ? "NOT " : "", WORDS[rnd(NWORDS)]); break;
    case 4: put(b, "t LIKE '_%s'", WORDS[rnd(NWORDS)]); break;
    case 5: put(b, "i %sIN (", rnd(2) ? "NOT " : ""); lit_int(b); put(b, ", "); lit_int(b); put(b, rnd(3) ? ")" : ", NULL)"); break;
    case 6: put(b, "t IN ("); lit_text(b); put(b, ", "); lit_text(b); put(b, ")"); break;
    case 7: put(b, "%s IS %sNULL", COLUMNS[rnd(COLS)].name, rnd(2) ? "NOT " : ""); break;
    case 8: num_expr(b, 1); put(b, " %sBETWEEN ", rnd(2) ? "NOT " : ""); lit_int(b); put(b, " AND "); lit_int(b); break;
    case 9: put(b, "i IS %sDISTINCT FROM ", rnd(2) ? "NOT " : ""); rnd(2) ? lit_int(b) : put(b, "j"); break;
    case 10: put(b, rnd(2) ? "b" : "b IS %s", rnd(2) ? "NOT TRUE" : "FALSE"); break;
    case 11: put(b, "length(t) %s %d", CMP[rnd(6)], (int)rnd(4)); break;
    case 12: put(b, "t %s '%s'::text", CMP[rnd(6)], WORDS[rnd(NWORDS)]); break;
    case 13: put(b, "NOT ("); pred(b, depth - 1); put(b, ")"); break;
    default:
        put(b, "(");
        pred(b, depth - 1);
        put(b, rnd(2) ? " AND " : " OR ");
        pred(b, depth - 1);
        put(b, ")");
        break;
    }
}

static PGresult *run(PGconn *c, const char *sql) {
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
        exit(2);
    }
    return r;
}

int main(int argc, char **argv) {
    int clauses = argc > 1 ? atoi(argv[1]) : 2000;
    PGconn *c = pgtest_connect("where_diff");
    PQclear(run(c, "DROP TABLE IF EXISTS wd; CREATE TABLE wd (id int PRIMARY KEY, i int, j bigint, f float8, "
                   "n numeric, t text, u varchar(10), b bool)"));
    for (int r = 0; r < ROWS; r++) {
        sbuf s = {0};
        put(&s, "INSERT INTO wd VALUES (%d", r);
        for (int k = 0; k < COLS; k++) {
            put(&s, ", ");
            if (rnd(6) == 0) { put(&s, "NULL"); continue; }
            switch (COLUMNS[k].type) {
            case WHERE_INT: lit_int(&s); break;
            case WHERE_FLOAT: lit_float(&s); break;
            case WHERE_TEXT: lit_text(&s); break;
            case WHERE_BOOL: put(&s, rnd(2) ? "true" : "false"); break;
            }
        }
        put(&s, ")");
        PQclear(run(c, s.s));
    }
    PGresult *rows = run(c, "SELECT id, i, j, f, n, t, u, b FROM wd ORDER BY id");
    int passed = 0, failed = 0, skipped = 0;
    for (int q = 0; q < clauses; q++) {
        sbuf w = {0}, sql = {0};
        pred(&w, 3);
        put(&sql, "SELECT id FROM wd WHERE %s ORDER BY id", w.s);
        PGresult *pr = PQexec(c, sql.s);
        if (PQresultStatus(pr) != PGRES_TUPLES_OK) { /* Postgres refused it (an error on some row) */
            skipped++;
            PQclear(pr);
            continue;
        }
        char err[256];
        where_expr *e = where_compile(w.s, COLUMNS, COLS, NULL, 0, err, sizeof err);
        if (!e) {
            failed++;
            fprintf(stderr, "FAIL: Postgres ran it, Weft refused: %s: %s\n", w.s, err);
            PQclear(pr);
            continue;
        }
        bool want[ROWS] = {0};
        for (int k = 0; k < PQntuples(pr); k++) want[atoi(PQgetvalue(pr, k, 0))] = true;
        int bad = -1;
        for (int r = 0; r < ROWS && bad < 0; r++) {
            const char *vals[COLS];
            for (int k = 0; k < COLS; k++) vals[k] = PQgetisnull(rows, r, k + 1) ? NULL : PQgetvalue(rows, r, k + 1);
            if ((where_eval(e, vals) == WHERE_TRUE) != want[r]) bad = r;
        }
        if (bad < 0) {
            passed++;
        } else {
            failed++;
            fprintf(stderr, "FAIL: %s: row %d (i=%s j=%s f=%s n=%s t='%s' u='%s' b=%s): Postgres %s it\n", w.s, bad,
                    PQgetvalue(rows, bad, 1), PQgetvalue(rows, bad, 2), PQgetvalue(rows, bad, 3), PQgetvalue(rows, bad, 4),
                    PQgetvalue(rows, bad, 5), PQgetvalue(rows, bad, 6), PQgetvalue(rows, bad, 7),
                    want[bad] ? "returns" : "leaves out");
        }
        where_free(e);
        PQclear(pr);
    }
    PQclear(rows);
    PQfinish(c);
    printf("where_diff: %d clauses skipped (Postgres raised an error)\n", skipped);
    printf("where_diff: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
