/* test_where.c — shape where clauses (src/shape/where.c) without a
 * database: parameters, literals typed by their context, three-valued
 * logic, and the errors a client gets for what is not supported (each
 * naming it); a subset's SQL text (src/shape/clause.c): parameters
 * renumbered where the parser found them, ORDER BY lists rebuilt.
 * tests/pg/where_diff.c checks the evaluator against Postgres. */
#include <stdlib.h>

#include "check.h"
#include "shape/clause.h"
#include "shape/where.h"

static const where_column COLS[] = {{"id", WHERE_INT}, {"name", WHERE_TEXT}, {"score", WHERE_FLOAT}, {"done", WHERE_BOOL}};

static int eval(const char *sql, const char *const *params, size_t np, const char *const *row) {
    char err[256];
    where_expr *e = where_compile(sql, COLS, 4, params, np, err, sizeof err);
    if (!e) {
        fprintf(stderr, "compile %s: %s\n", sql, err);
        return -1;
    }
    int r = where_eval(e, row);
    where_free(e);
    return r;
}

static void refused(const char *sql, const char *want) {
    char err[256] = "";
    where_expr *e = where_compile(sql, COLS, 4, NULL, 0, err, sizeof err);
    CHECK(e == NULL);
    if (!strstr(err, want)) fprintf(stderr, "%s: '%s' lacks '%s'\n", sql, err, want);
    CHECK(strstr(err, want) != NULL);
    where_free(e);
}

int main(void) {
    const char *row[] = {"42", "Alice", "2.5", "t"}, *nulls[] = {NULL, NULL, NULL, NULL};
    CHECK_EQ_INT(eval("id = 42", NULL, 0, row), WHERE_TRUE);
    CHECK_EQ_INT(eval("id = '42'", NULL, 0, row), WHERE_TRUE); /* an unknown literal takes the column's type */
    CHECK_EQ_INT(eval("id = $1 AND name = $2", (const char *const[]){"42", "Alice"}, 2, row), WHERE_TRUE);
    CHECK_EQ_INT(eval("score > $1", (const char *const[]){"3"}, 1, row), WHERE_FALSE);
    CHECK_EQ_INT(eval("id = $1", (const char *const[]){NULL}, 1, row), WHERE_UNKNOWN);
    CHECK_EQ_INT(eval("name ILIKE 'al%' AND done", NULL, 0, row), WHERE_TRUE);
    CHECK_EQ_INT(eval("id = 1 OR name = 'x'", NULL, 0, nulls), WHERE_UNKNOWN);
    CHECK_EQ_INT(eval("id = 1 AND name = 'x'", NULL, 0, row), WHERE_FALSE);
    CHECK_EQ_INT(eval("id IS NULL AND name IS NULL", NULL, 0, nulls), WHERE_TRUE);
    CHECK_EQ_INT(eval("id IN (1, 2, NULL)", NULL, 0, row), WHERE_UNKNOWN);
    CHECK_EQ_INT(eval("id NOT IN (1, 2)", NULL, 0, row), WHERE_TRUE);
    CHECK_EQ_INT(eval("id BETWEEN 40 AND 50 AND score BETWEEN -1 AND 2.5", NULL, 0, row), WHERE_TRUE);
    CHECK_EQ_INT(eval("id IS DISTINCT FROM NULL", NULL, 0, row), WHERE_TRUE);
    CHECK_EQ_INT(eval("id / 0 = 1", NULL, 0, row), WHERE_UNKNOWN); /* Postgres raises: not a match */
    CHECK_EQ_INT(eval("id * 9223372036854775807 > 0", NULL, 0, row), WHERE_UNKNOWN);
    CHECK_EQ_INT(eval("-id = -42 AND abs(-id) = 42 AND length(name) = 5 AND upper(name) = 'ALICE'", NULL, 0, row), WHERE_TRUE);
    CHECK_EQ_INT(eval("'42'::int = id AND id::text = '42' AND coalesce(name, 'x') = 'Alice'", NULL, 0, row), WHERE_TRUE);
    CHECK_EQ_INT(eval("done IS NOT FALSE AND done IS TRUE", NULL, 0, row), WHERE_TRUE);
    {
        char err[256];
        int col = -1;
        const char *const *vals;
        size_t n = 0;
        where_expr *e = where_compile("name = 'Alice' AND score > 1", COLS, 4, NULL, 0, err, sizeof err);
        CHECK(e && where_equality(e, &col, &vals, &n) && col == 1 && n == 1 && strcmp(vals[0], "Alice") == 0);
        where_free(e);
        e = where_compile("id IN (007, $1, 3)", COLS, 4, (const char *const[]){"+42"}, 1, err, sizeof err);
        CHECK(e && where_equality(e, &col, &vals, &n) && col == 0 && n == 3 && strcmp(vals[0], "7") == 0 &&
              strcmp(vals[1], "42") == 0);
        where_free(e);
        e = where_compile("id = 1 OR id = 2", COLS, 4, NULL, 0, err, sizeof err);
        CHECK(e && !where_equality(e, &col, &vals, &n)); /* an OR: no single value */
        where_free(e);
        e = where_compile("score = 2.5", COLS, 4, NULL, 0, err, sizeof err);
        CHECK(e && !where_equality(e, &col, &vals, &n)); /* floats are not indexed */
        where_free(e);
        char buf[32];
        CHECK(strcmp(where_canonical(WHERE_INT, "0042", buf, sizeof buf), "42") == 0);
        CHECK(where_canonical(WHERE_INT, "x", buf, sizeof buf) == NULL);
    }
    refused("id = ANY(ARRAY[1,2])", "not supported");
    refused("id IN (SELECT 1)", "not supported");
    refused("nope = 1", "column \"nope\" does not exist");
    refused("name = 1", "operator does not exist: text = integer");
    refused("id = 'abc'", "invalid input syntax for type integer");
    refused("id = $2", "parameter $2 has no value");
    refused("id +", "invalid where clause");
    refused("id", "must be a boolean expression");
    refused("now() > '2020-01-01'", "function now is not supported");
    refused("id = 1; DROP TABLE t", "must be one expression");
    refused("name ~ 'a'", "operator ~ is not supported");
    refused("evil.lower(name) = 'a'", "qualified function names");
    refused("id OPERATOR(evil.=) 1", "qualified operators");
    refused("true OFFSET 1", "must be one expression");
    refused("true FOR UPDATE", "must be one expression");
    refused("true ORDER BY 1", "must be one expression");
    refused("count(DISTINCT id) > 1", "not supported");
    CHECK_EQ_INT(eval("pg_catalog.lower(name) = 'alice' AND id::pg_catalog.int8 = 42", NULL, 0, row), WHERE_TRUE);
    {
        char *t = clause_shift_params("id > $1 AND name = '$1' AND score < $12 -- $2", 3);
        CHECK(t && strcmp(t, "id > $4 AND name = '$1' AND score < $15 -- $2") == 0);
        free(t);
        CHECK(clause_shift_params("id >", 1) == NULL);
        const char *names[] = {"id", "na\"me"};
        char err[256] = "";
        t = clause_order_by("id DESC NULLS LAST, \"na\"\"me\" ASC, ID", names, 2, err, sizeof err);
        CHECK(t && strcmp(t, "\"id\" DESC NULLS LAST, \"na\"\"me\" ASC, \"id\"") == 0);
        free(t);
        const char *bad[][2] = {{"nope", "not a column"},        {"id; DELETE FROM t", "list of columns"},
                                {"lower(id)", "not a column"},   {"id USING <", "USING"},
                                {"id LIMIT 1", "list of columns"}, {"t.id", "not a column"}};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            err[0] = 0;
            CHECK(clause_order_by(bad[i][0], names, 2, err, sizeof err) == NULL && strstr(err, bad[i][1]));
        }
    }
    return check_summary("test_where");
}
