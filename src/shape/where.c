/* where.c — see where.h. The clause is parsed as "SELECT FROM t WHERE
 * <clause>" by libpg_query, whose JSON parse tree (read with jansson) is
 * turned into a small typed tree: columns resolved to indexes, literals
 * and parameters converted to the type they meet (as Postgres types an
 * unknown-typed literal by its context), every operator checked. */
#include "where.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../util/mem.h"
#include "clause.h"

typedef enum kind {
    N_CONST, N_COL, N_CMP, N_AND, N_OR, N_NOT, N_ARITH, N_NEG, N_LIKE, N_IN, N_ISNULL, N_ISBOOL,
    N_DISTINCT, N_CAST, N_FUNC, N_COALESCE
} kind;

enum { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE };
enum { F_LOWER, F_UPPER, F_LENGTH, F_ABS };

/* A value during evaluation; text points into the row, a constant or the
 * evaluation's scratch. */
typedef struct val {
    bool null;
    where_type t;
    bool b;
    int64_t i;
    double f;
    const char *s;
} val;

struct where_expr {
    kind k;
    const char **eq_values; /* where_equality's answer, made at compile time */
    size_t n_eq;
    int eq_col;
    where_type type;  /* of the result */
    bool unknown;     /* a literal or parameter still typed by its context */
    int op;           /* CMP_*, an arithmetic char, F_*, or flags (negate, insensitive, want) */
    int col;
    val c;            /* N_CONST */
    char *text;       /* owned text of a constant */
    where_expr **args;
    size_t nargs;
};

typedef struct compiler {
    const char *query; /* what was parsed: constants are read back from it */
    const where_column *cols;
    size_t ncols;
    const char *const *params;
    size_t nparams;
    char *err;
    size_t errlen;
} compiler;

static const char *TYPE_NAME[] = {"boolean", "integer", "double precision", "text"};

bool where_type_of(const char *t, where_type *out) {
    static const struct { const char *name; where_type type; } map[] = {
        {"boolean", WHERE_BOOL}, {"bool", WHERE_BOOL},
        {"smallint", WHERE_INT}, {"integer", WHERE_INT}, {"bigint", WHERE_INT}, {"int2", WHERE_INT},
        {"int4", WHERE_INT}, {"int8", WHERE_INT},
        {"real", WHERE_FLOAT}, {"double precision", WHERE_FLOAT}, {"float4", WHERE_FLOAT},
        {"float8", WHERE_FLOAT}, {"numeric", WHERE_FLOAT},
        {"text", WHERE_TEXT}, {"character varying", WHERE_TEXT}, {"varchar", WHERE_TEXT},
        {"character", WHERE_TEXT}, {"bpchar", WHERE_TEXT}, {"uuid", WHERE_TEXT}, {"name", WHERE_TEXT},
        {"citext", WHERE_TEXT},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(t, map[i].name) == 0) {
            *out = map[i].type;
            return true;
        }
    return false;
}

/* --- building --- */

static where_expr *node(kind k, where_type type, size_t nargs) {
    where_expr *e = xcalloc(1, sizeof *e);
    e->k = k;
    e->type = type;
    e->nargs = nargs;
    e->args = nargs ? xcalloc(nargs, sizeof *e->args) : NULL;
    return e;
}

void where_free(where_expr *e) {
    if (!e) return;
    for (size_t i = 0; i < e->n_eq; i++) free((char *)e->eq_values[i]);
    free(e->eq_values);
    for (size_t i = 0; i < e->nargs; i++) where_free(e->args[i]);
    free(e->args);
    free(e->text);
    free(e);
}

static where_expr *fail(compiler *c, const char *fmt, const char *what) {
    snprintf(c->err, c->errlen, fmt, what);
    return NULL;
}

/* fail, freeing e (after the message is made: `what` may come from it). */
static where_expr *refuse(compiler *c, where_expr *e, const char *fmt, const char *what) {
    fail(c, fmt, what);
    where_free(e);
    return NULL;
}

/* Text in Postgres' input form to a value of type t; false if invalid. */
static bool parse_as(const char *s, where_type t, val *v) {
    char *end;
    *v = (val){.t = t, .s = s};
    while (isspace((unsigned char)*s)) s++;
    switch (t) {
    case WHERE_TEXT: return true;
    case WHERE_INT:
        errno = 0;
        v->i = strtoll(s, &end, 10);
        break;
    case WHERE_FLOAT:
        errno = 0;
        v->f = strtod(s, &end);
        if (errno == ERANGE && fabs(v->f) < 1) errno = 0; /* underflow to 0 is fine */
        break;
    case WHERE_BOOL: {
        static const char *const yes[] = {"t", "true", "y", "yes", "on", "1"}, *const no[] = {"f", "false", "n", "no", "off", "0"};
        size_t n = strlen(s);
        while (n && isspace((unsigned char)s[n - 1])) n--;
        for (size_t i = 0; i < 6; i++) {
            if (strlen(yes[i]) == n && strncasecmp(s, yes[i], n) == 0) return v->b = true, true;
            if (strlen(no[i]) == n && strncasecmp(s, no[i], n) == 0) return v->b = false, true;
        }
        return false;
    }
    }
    if (end == s || errno) return false;
    while (isspace((unsigned char)*end)) end++;
    return *end == 0;
}

/* Give an unknown-typed literal the type t (Postgres' rule for 'quoted' literals and parameters). */
static bool settle(compiler *c, where_expr *e, where_type t) {
    if (!e->unknown || t == WHERE_TEXT) {
        e->unknown = false;
        return true;
    }
    e->unknown = false;
    e->type = t;
    if (e->c.null) {
        e->c.t = t;
        return true;
    }
    if (!parse_as(e->text, t, &e->c)) {
        snprintf(c->err, c->errlen, "invalid input syntax for type %s: \"%.100s\"", TYPE_NAME[t], e->text);
        return false;
    }
    return true;
}

static bool numeric(where_type t) { return t == WHERE_INT || t == WHERE_FLOAT; }

/* Make a and b comparable: settle unknowns against each other, then check. */
static bool unify(compiler *c, where_expr *a, where_expr *b, const char *op) {
    if (a->unknown && !b->unknown && !settle(c, a, b->type)) return false;
    if (b->unknown && !a->unknown && !settle(c, b, a->type)) return false;
    if (a->unknown && b->unknown) settle(c, a, WHERE_TEXT), settle(c, b, WHERE_TEXT);
    if (a->type == b->type || (numeric(a->type) && numeric(b->type))) return true;
    snprintf(c->err, c->errlen, "operator does not exist: %s %s %s", TYPE_NAME[a->type], op, TYPE_NAME[b->type]);
    return false;
}

static where_expr *build(compiler *c, json_t *n);

/* A name list that names something in pg_catalog: "f" or "pg_catalog.f"
 * (anything else could be a user's function, operator or type). */
static bool catalog_name(json_t *list) {
    size_t n = json_array_size(list);
    if (n == 1) return true;
    const char *first = json_string_value(json_object_get(json_object_get(json_array_get(list, 0), "String"), "sval"));
    return n == 2 && first && strcmp(first, "pg_catalog") == 0;
}

static const char *first_name(json_t *list, size_t at) {
    return json_string_value(json_object_get(json_object_get(json_array_get(list, at), "String"), "sval"));
}

static where_expr *build_const(compiler *c, json_t *a) {
    where_expr *e = node(N_CONST, WHERE_INT, 0);
    json_t *v;
    if (json_is_true(json_object_get(a, "isnull"))) {
        e->c.null = true;
        e->unknown = true;
        e->type = WHERE_TEXT;
    } else if ((v = json_object_get(a, "ival"))) {
        /* libpg_query's JSON leaves out a negative integer's value: read
         * the literal at its location instead */
        json_int_t at = json_integer_value(json_object_get(a, "location"));
        e->c = (val){.t = WHERE_INT, .i = at >= 0 && (size_t)at < strlen(c->query) ? strtoll(c->query + at, NULL, 10)
                                                                                 : json_integer_value(json_object_get(v, "ival"))};
    } else if ((v = json_object_get(a, "fval"))) {
        const char *f = json_string_value(json_object_get(v, "fval"));
        e->type = WHERE_FLOAT;
        e->c = (val){.t = WHERE_FLOAT, .f = f ? strtod(f, NULL) : 0};
        if (f && parse_as(f, WHERE_INT, &e->c)) e->type = WHERE_INT; /* past int4 but a bigint: Postgres' int8 */
        else if (f) e->c = (val){.t = WHERE_FLOAT, .f = strtod(f, NULL)};
    } else if ((v = json_object_get(a, "boolval"))) {
        e->type = WHERE_BOOL;
        e->c = (val){.t = WHERE_BOOL, .b = json_is_true(json_object_get(v, "boolval"))};
    } else if ((v = json_object_get(a, "sval"))) {
        const char *s = json_string_value(json_object_get(v, "sval"));
        e->text = xstrndup(s ? s : "", s ? strlen(s) : 0);
        e->type = WHERE_TEXT;
        e->unknown = true;
        e->c = (val){.t = WHERE_TEXT, .s = e->text};
    } else {
        where_free(e);
        return fail(c, "unsupported constant%s", "");
    }
    return e;
}

static where_expr *build_param(compiler *c, json_t *p) {
    json_int_t n = json_integer_value(json_object_get(p, "number"));
    if (n < 1 || (size_t)n > c->nparams) {
        char what[32];
        snprintf(what, sizeof what, "$%lld", (long long)n);
        return fail(c, "parameter %s has no value in params", what);
    }
    where_expr *e = node(N_CONST, WHERE_TEXT, 0);
    const char *s = c->params[n - 1];
    e->unknown = true;
    if (!s) {
        e->c.null = true;
    } else {
        e->text = xstrndup(s, strlen(s));
        e->c = (val){.t = WHERE_TEXT, .s = e->text};
    }
    return e;
}

static where_expr *build_column(compiler *c, json_t *r) {
    json_t *fields = json_object_get(r, "fields");
    const char *name = first_name(fields, json_array_size(fields) - 1);
    if (!name) return fail(c, "unsupported column reference%s", "");
    for (size_t i = 0; i < c->ncols; i++)
        if (strcmp(c->cols[i].name, name) == 0) {
            where_expr *e = node(N_COL, c->cols[i].type, 0);
            e->col = (int)i;
            return e;
        }
    return fail(c, "column \"%.100s\" does not exist (or has a type shapes cannot filter on)", name);
}

static where_expr *binary(compiler *c, kind k, int op, json_t *l, json_t *r) {
    where_expr *e = node(k, WHERE_BOOL, 2);
    if (!(e->args[0] = build(c, l)) || !(e->args[1] = build(c, r))) {
        where_free(e);
        return NULL;
    }
    e->op = op;
    return e;
}

static where_expr *build_aexpr(compiler *c, json_t *a) {
    if (!catalog_name(json_object_get(a, "name"))) return fail(c, "qualified operators are not supported%s", "");
    const char *k = json_string_value(json_object_get(a, "kind"));
    const char *op = first_name(json_object_get(a, "name"), json_array_size(json_object_get(a, "name")) - 1);
    json_t *l = json_object_get(a, "lexpr"), *r = json_object_get(a, "rexpr");
    if (!k || !op) return fail(c, "unsupported expression%s", "");
    where_expr *e = NULL;
    if (strcmp(k, "AEXPR_OP") == 0) {
        static const char *const cmps[] = {"=", "<>", "<", "<=", ">", ">="};
        for (int i = 0; i < 6; i++)
            if (strcmp(op, cmps[i]) == 0) {
                if (!(e = binary(c, N_CMP, i, l, r))) return NULL;
                if (!unify(c, e->args[0], e->args[1], op)) return where_free(e), NULL;
                return e;
            }
        if (strlen(op) == 1 && strchr("+-*/%", op[0])) {
            if (!l && op[0] == '-') {
                e = node(N_NEG, WHERE_INT, 1);
                if (!(e->args[0] = build(c, r)) || !settle(c, e->args[0], WHERE_INT)) return where_free(e), NULL;
                if (!numeric(e->args[0]->type)) return refuse(c, e, "operator does not exist: - %s", TYPE_NAME[e->args[0]->type]);
                e->type = e->args[0]->type;
                return e;
            }
            if (!(e = binary(c, N_ARITH, op[0], l, r))) return NULL;
            if (e->args[0]->unknown && e->args[1]->unknown && !settle(c, e->args[0], WHERE_INT)) return where_free(e), NULL;
            if (!unify(c, e->args[0], e->args[1], op)) return where_free(e), NULL;
            if (!numeric(e->args[0]->type))
                return refuse(c, e, "operator does not exist: %s", op);
            e->type = e->args[0]->type == WHERE_FLOAT || e->args[1]->type == WHERE_FLOAT ? WHERE_FLOAT : WHERE_INT;
            if (op[0] == '%' && e->type != WHERE_INT) return refuse(c, e, "operator does not exist: %s on floats", op);
            return e;
        }
        return fail(c, "operator %.40s is not supported in a shape's where clause", op);
    }
    if (strcmp(k, "AEXPR_LIKE") == 0 || strcmp(k, "AEXPR_ILIKE") == 0) {
        if (!(e = binary(c, N_LIKE, 0, l, r))) return NULL;
        e->op = (op[0] == '!' ? 1 : 0) | (k[6] == 'I' ? 2 : 0);
        if (!settle(c, e->args[0], WHERE_TEXT) || !settle(c, e->args[1], WHERE_TEXT)) return where_free(e), NULL;
        if (e->args[0]->type != WHERE_TEXT || e->args[1]->type != WHERE_TEXT)
            return refuse(c, e, "LIKE needs text on both sides%s", "");
        return e;
    }
    if (strcmp(k, "AEXPR_DISTINCT") == 0 || strcmp(k, "AEXPR_NOT_DISTINCT") == 0) {
        if (!(e = binary(c, N_DISTINCT, k[6] == 'N', l, r))) return NULL;
        if (!unify(c, e->args[0], e->args[1], "IS DISTINCT FROM")) return where_free(e), NULL;
        return e;
    }
    if (strcmp(k, "AEXPR_IN") == 0 || strcmp(k, "AEXPR_BETWEEN") == 0 || strcmp(k, "AEXPR_NOT_BETWEEN") == 0) {
        json_t *items = json_object_get(json_object_get(r, "List"), "items");
        if (!json_is_array(items)) items = r;
        bool in = k[6] == 'I';
        e = node(in ? N_IN : N_AND, WHERE_BOOL, json_array_size(items) + 1);
        e->op = in ? strcmp(op, "<>") == 0 : strcmp(k, "AEXPR_NOT_BETWEEN") == 0;
        if (!(e->args[0] = build(c, l))) return where_free(e), NULL;
        for (size_t i = 0; i < json_array_size(items); i++) {
            if (!(e->args[i + 1] = build(c, json_array_get(items, i)))) return where_free(e), NULL;
            if (!unify(c, e->args[0], e->args[i + 1], in ? "IN" : "BETWEEN")) return where_free(e), NULL;
        }
        if (!in) { /* x BETWEEN a AND b: x >= a AND x <= b, evaluated as N_IN's sibling */
            if (e->nargs != 3) return refuse(c, e, "BETWEEN needs two bounds%s", "");
            e->k = N_IN; /* marked by op bit 2 */
            e->op |= 2;
        }
        return e;
    }
    return fail(c, "%.60s is not supported in a shape's where clause", k);
}

static where_expr *build_cast(compiler *c, json_t *tc) {
    json_t *names = json_object_get(json_object_get(tc, "typeName"), "names");
    if (!catalog_name(names) || json_object_get(json_object_get(tc, "typeName"), "arrayBounds"))
        return fail(c, "casts to that type are not supported%s", "");
    const char *t = first_name(names, json_array_size(names) - 1);
    where_type to;
    if (!t || !where_type_of(t, &to)) return fail(c, "cast to %.60s is not supported", t ? t : "?");
    where_expr *e = node(N_CAST, to, 1);
    if (!(e->args[0] = build(c, json_object_get(tc, "arg")))) return where_free(e), NULL;
    if (e->args[0]->unknown) { /* 'x'::int is the literal read as an int */
        where_expr *lit = e->args[0];
        e->args[0] = NULL;
        where_free(e);
        return settle(c, lit, to) ? lit : (where_free(lit), NULL);
    }
    return e;
}

static where_expr *build_func(compiler *c, json_t *f) {
    json_t *names = json_object_get(f, "funcname"), *args = json_object_get(f, "args");
    if (!catalog_name(names)) return fail(c, "qualified function names are not supported%s", "");
    if (json_object_size(f) > 4 || json_object_get(f, "agg_order") || json_object_get(f, "over") ||
        json_object_get(f, "agg_filter") || json_is_true(json_object_get(f, "agg_star")) ||
        json_is_true(json_object_get(f, "agg_distinct")) || json_is_true(json_object_get(f, "func_variadic")))
        return fail(c, "function call options (DISTINCT, ORDER BY, FILTER, OVER, VARIADIC) are not supported%s", "");
    const char *name = first_name(names, json_array_size(names) - 1);
    static const char *const known[] = {"lower", "upper", "length", "abs"};
    for (int i = 0; name && i < 4; i++) {
        if (strcmp(name, known[i]) != 0) continue;
        if (json_array_size(args) != 1) return fail(c, "%s takes one argument", known[i]);
        where_expr *e = node(N_FUNC, i == F_LENGTH ? WHERE_INT : WHERE_TEXT, 1);
        e->op = i;
        if (!(e->args[0] = build(c, json_array_get(args, 0)))) return where_free(e), NULL;
        where_type want = i == F_ABS ? (e->args[0]->unknown ? WHERE_INT : e->args[0]->type) : WHERE_TEXT;
        if (!settle(c, e->args[0], want) || (i == F_ABS ? !numeric(e->args[0]->type) : e->args[0]->type != WHERE_TEXT))
            return refuse(c, e, "function %s does not take that type", known[i]);
        if (i == F_ABS) e->type = e->args[0]->type;
        return e;
    }
    return fail(c, "function %.60s is not supported in a shape's where clause", name ? name : "?");
}

static where_expr *build(compiler *c, json_t *n) {
    const char *type;
    json_t *v;
    json_object_foreach(n, type, v) {
        if (strcmp(type, "A_Const") == 0) return build_const(c, v);
        if (strcmp(type, "ColumnRef") == 0) return build_column(c, v);
        if (strcmp(type, "ParamRef") == 0) return build_param(c, v);
        if (strcmp(type, "A_Expr") == 0) return build_aexpr(c, v);
        if (strcmp(type, "TypeCast") == 0) return build_cast(c, v);
        if (strcmp(type, "FuncCall") == 0) return build_func(c, v);
        if (strcmp(type, "BoolExpr") == 0 || strcmp(type, "CoalesceExpr") == 0) {
            const char *op = json_string_value(json_object_get(v, "boolop"));
            json_t *args = json_object_get(v, "args");
            kind k = !op ? N_COALESCE : strcmp(op, "AND_EXPR") == 0 ? N_AND : strcmp(op, "OR_EXPR") == 0 ? N_OR : N_NOT;
            where_expr *e = node(k, WHERE_BOOL, json_array_size(args));
            for (size_t i = 0; i < e->nargs; i++) {
                if (!(e->args[i] = build(c, json_array_get(args, i)))) return where_free(e), NULL;
                if (k != N_COALESCE && !settle(c, e->args[i], WHERE_BOOL)) return where_free(e), NULL;
                if (k != N_COALESCE && e->args[i]->type != WHERE_BOOL)
                    return refuse(c, e, "argument of %s must be boolean", k == N_AND ? "AND" : k == N_OR ? "OR" : "NOT");
                if (k == N_COALESCE && i > 0 && !unify(c, e->args[0], e->args[i], "COALESCE")) return where_free(e), NULL;
            }
            if (k == N_COALESCE) e->type = e->args[0]->type;
            return e;
        }
        if (strcmp(type, "NullTest") == 0 || strcmp(type, "BooleanTest") == 0) {
            bool null = type[0] == 'N';
            where_expr *e = node(null ? N_ISNULL : N_ISBOOL, WHERE_BOOL, 1);
            const char *t = json_string_value(json_object_get(v, null ? "nulltesttype" : "booltesttype"));
            if (!t) return refuse(c, e, "unsupported %s", type);
            /* op: bit0 negate; for IS TRUE/FALSE/UNKNOWN: bits 1-2 what */
            e->op = strstr(t, "NOT") ? 1 : 0;
            if (!null) e->op |= strstr(t, "TRUE") ? 2 : strstr(t, "FALSE") ? 4 : 6;
            if (!(e->args[0] = build(c, json_object_get(v, "arg")))) return where_free(e), NULL;
            if (!null && (!settle(c, e->args[0], WHERE_BOOL) || e->args[0]->type != WHERE_BOOL))
                return refuse(c, e, "argument of IS TRUE/FALSE must be boolean%s", "");
            settle(c, e->args[0], WHERE_TEXT);
            return e;
        }
        return fail(c, "%.60s is not supported in a shape's where clause", type);
    }
    return fail(c, "empty expression%s", "");
}

where_expr *where_compile(const char *sql, const where_column *cols, size_t ncols, const char *const *params,
                          size_t nparams, char *err, size_t errlen) {
    size_t n = strlen(sql);
    char *q = xmalloc(n + 32);
    snprintf(q, n + 32, "SELECT FROM t WHERE %s", sql);
    compiler c = {q, cols, ncols, params, nparams, err, errlen};
    PgQueryParseResult r = pg_query_parse(q);
    where_expr *e = NULL;
    if (r.error) {
        snprintf(err, errlen, "invalid where clause: %s", r.error->message);
    } else {
        json_t *tree = json_loads(r.parse_tree, 0, NULL);
        json_t *w = json_object_get(clause_only_select(tree, "whereClause"), "whereClause");
        if (!w) /* anything but FROM t WHERE <clause> */
            snprintf(err, errlen, "the where clause must be one expression");
        else if ((e = build(&c, w)) && (!settle(&c, e, WHERE_BOOL) || e->type != WHERE_BOOL)) {
            snprintf(err, errlen, "the where clause must be a boolean expression, not %s", TYPE_NAME[e->type]);
            where_free(e);
            e = NULL;
        } else if (e) { /* work out where_equality's answer now: the tree is immutable once returned */
            int col;
            const char *const *vals;
            size_t nvals;
            where_equality(e, &col, &vals, &nvals);
        }
        json_decref(tree);
    }
    pg_query_free_parse_result(r);
    free(q);
    return e;
}

/* --- evaluation --- */

typedef struct evalctx {
    const char *const *row;
    bool error;   /* what Postgres would raise an error on */
    char **scratch;
    size_t nscratch;
} evalctx;

static char *scratch(evalctx *x, size_t n) {
    x->scratch = xrealloc(x->scratch, (x->nscratch + 1) * sizeof *x->scratch);
    return x->scratch[x->nscratch++] = xmalloc(n);
}

static val eval(evalctx *x, const where_expr *e);

static val nullval(where_type t) { return (val){.null = true, .t = t}; }
static val boolval(bool b) { return (val){.t = WHERE_BOOL, .b = b}; }
static double as_float(val v) { return v.t == WHERE_INT ? (double)v.i : v.f; }

/* -1, 0, 1; both non-null and comparable */
static int compare(val a, val b) {
    if (a.t == WHERE_TEXT) {
        int r = strcmp(a.s, b.s);
        return (r > 0) - (r < 0);
    }
    if (a.t == WHERE_BOOL) return (a.b > b.b) - (a.b < b.b);
    if (a.t == WHERE_INT && b.t == WHERE_INT) return (a.i > b.i) - (a.i < b.i);
    double fa = as_float(a), fb = as_float(b);
    return (fa > fb) - (fa < fb);
}

static bool cmp_holds(int op, int r) {
    switch (op) {
    case CMP_EQ: return r == 0;
    case CMP_NE: return r != 0;
    case CMP_LT: return r < 0;
    case CMP_LE: return r <= 0;
    case CMP_GT: return r > 0;
    default: return r >= 0;
    }
}

static bool like(const char *s, const char *p, bool fold) {
    while (*p) {
        if (*p == '%') {
            while (*p == '%') p++;
            if (!*p) return true;
            for (; *s; s++)
                if (like(s, p, fold)) return true;
            return false;
        }
        if (!*s) return false;
        if (*p == '\\' && p[1]) p++;
        else if (*p == '_') {
            s++, p++;
            while ((*s & 0xc0) == 0x80) s++; /* one character, not one byte */
            continue;
        }
        char a = *s, b = *p;
        if (fold) a = (char)tolower((unsigned char)a), b = (char)tolower((unsigned char)b);
        if (a != b) return false;
        s++, p++;
    }
    return !*s;
}

static val arith(evalctx *x, int op, val a, val b, where_type t) {
    if (t == WHERE_INT) {
        int64_t r = 0;
        bool bad = op == '+' ? __builtin_add_overflow(a.i, b.i, &r)
                   : op == '-' ? __builtin_sub_overflow(a.i, b.i, &r)
                   : op == '*' ? __builtin_mul_overflow(a.i, b.i, &r)
                   : b.i == 0 || (a.i == INT64_MIN && b.i == -1);
        if (!bad && op == '/') r = a.i / b.i;
        if (!bad && op == '%') r = a.i % b.i;
        if (bad) x->error = true;
        return (val){.t = WHERE_INT, .i = r};
    }
    double fa = as_float(a), fb = as_float(b), r;
    if (op == '/' && fb == 0) x->error = true;
    r = op == '+' ? fa + fb : op == '-' ? fa - fb : op == '*' ? fa * fb : fb == 0 ? 0 : fa / fb;
    return (val){.t = WHERE_FLOAT, .f = r};
}

static val cast(evalctx *x, val v, where_type to) {
    if (v.null || v.t == to) {
        v.t = to;
        return v;
    }
    val out = {.t = to};
    if (v.t == WHERE_TEXT) {
        if (!parse_as(v.s, to, &out)) x->error = true;
        return out;
    }
    if (to == WHERE_TEXT) {
        char *buf = scratch(x, 40);
        if (v.t == WHERE_INT) snprintf(buf, 40, "%lld", (long long)v.i);
        else if (v.t == WHERE_FLOAT) snprintf(buf, 40, "%.15g", v.f);
        else snprintf(buf, 40, "%s", v.b ? "true" : "false");
        out.s = buf;
    } else if (to == WHERE_FLOAT) {
        out.f = v.t == WHERE_INT ? (double)v.i : v.b;
    } else if (to == WHERE_INT) {
        if (v.t == WHERE_FLOAT && (isnan(v.f) || fabs(v.f) >= 9.2e18)) x->error = true;
        else out.i = v.t == WHERE_FLOAT ? (int64_t)llrint(v.f) : v.b;
    } else { /* to bool */
        if (v.t == WHERE_INT) out.b = v.i != 0;
        else x->error = true;
    }
    return out;
}

static val eval_in(evalctx *x, const where_expr *e) {
    val v = eval(x, e->args[0]);
    if (e->op & 2) { /* BETWEEN: x >= a AND x <= b */
        val lo = eval(x, e->args[1]), hi = eval(x, e->args[2]);
        int r1 = v.null || lo.null ? 2 : compare(v, lo) >= 0, r2 = v.null || hi.null ? 2 : compare(v, hi) <= 0;
        int r = r1 == 0 || r2 == 0 ? 0 : r1 == 2 || r2 == 2 ? 2 : 1;
        if (r == 2) return nullval(WHERE_BOOL);
        return boolval((e->op & 1) ? !r : r);
    }
    bool unknown = v.null, found = false;
    for (size_t i = 1; i < e->nargs && !found && !v.null; i++) {
        val w = eval(x, e->args[i]);
        if (w.null) unknown = true;
        else if (compare(v, w) == 0) found = true;
    }
    if (found) return boolval(!(e->op & 1));
    if (unknown) return nullval(WHERE_BOOL);
    return boolval(e->op & 1);
}

static val eval(evalctx *x, const where_expr *e) {
    switch (e->k) {
    case N_CONST: return e->c;
    case N_COL: {
        const char *s = x->row[e->col];
        if (!s) return nullval(e->type);
        val v;
        if (!parse_as(s, e->type, &v)) x->error = true;
        return v;
    }
    case N_CMP: {
        val a = eval(x, e->args[0]), b = eval(x, e->args[1]);
        if (a.null || b.null) return nullval(WHERE_BOOL);
        return boolval(cmp_holds(e->op, compare(a, b)));
    }
    case N_AND:
    case N_OR: {
        bool unknown = false, and = e->k == N_AND;
        for (size_t i = 0; i < e->nargs; i++) {
            val v = eval(x, e->args[i]);
            if (v.null) unknown = true;
            else if (v.b != and) return boolval(!and);
        }
        return unknown ? nullval(WHERE_BOOL) : boolval(and);
    }
    case N_NOT: {
        val v = eval(x, e->args[0]);
        return v.null ? v : boolval(!v.b);
    }
    case N_ARITH: {
        val a = eval(x, e->args[0]), b = eval(x, e->args[1]);
        if (a.null || b.null) return nullval(e->type);
        return arith(x, e->op, a, b, e->type);
    }
    case N_NEG: {
        val v = eval(x, e->args[0]);
        if (v.null) return v;
        if (v.t == WHERE_INT) {
            if (v.i == INT64_MIN) x->error = true;
            else v.i = -v.i;
        } else {
            v.f = -v.f;
        }
        return v;
    }
    case N_LIKE: {
        val s = eval(x, e->args[0]), p = eval(x, e->args[1]);
        if (s.null || p.null) return nullval(WHERE_BOOL);
        bool m = like(s.s, p.s, e->op & 2);
        return boolval((e->op & 1) ? !m : m);
    }
    case N_IN: return eval_in(x, e);
    case N_ISNULL: {
        bool n = eval(x, e->args[0]).null;
        return boolval((e->op & 1) ? !n : n);
    }
    case N_ISBOOL: {
        val v = eval(x, e->args[0]);
        int what = e->op & 6;
        bool r = what == 2 ? (!v.null && v.b) : what == 4 ? (!v.null && !v.b) : v.null;
        return boolval((e->op & 1) ? !r : r);
    }
    case N_DISTINCT: {
        val a = eval(x, e->args[0]), b = eval(x, e->args[1]);
        bool distinct = a.null != b.null || (!a.null && compare(a, b) != 0);
        return boolval(e->op ? !distinct : distinct);
    }
    case N_CAST: return cast(x, eval(x, e->args[0]), e->type);
    case N_COALESCE:
        for (size_t i = 0; i < e->nargs; i++) {
            val v = eval(x, e->args[i]);
            if (!v.null) return cast(x, v, e->type == WHERE_FLOAT && v.t == WHERE_INT ? WHERE_FLOAT : v.t);
        }
        return nullval(e->type);
    case N_FUNC: {
        val v = eval(x, e->args[0]);
        if (v.null) return nullval(e->type);
        if (e->op == F_ABS) {
            if (v.t == WHERE_INT && v.i == INT64_MIN) x->error = true;
            else if (v.t == WHERE_INT) v.i = v.i < 0 ? -v.i : v.i;
            else v.f = fabs(v.f);
            return v;
        }
        if (e->op == F_LENGTH) {
            int64_t n = 0;
            for (const char *p = v.s; *p; p++) n += (*p & 0xc0) != 0x80;
            return (val){.t = WHERE_INT, .i = n};
        }
        size_t n = strlen(v.s);
        char *out = scratch(x, n + 1);
        for (size_t i = 0; i <= n; i++)
            out[i] = (char)(e->op == F_LOWER ? tolower((unsigned char)v.s[i]) : toupper((unsigned char)v.s[i]));
        return (val){.t = WHERE_TEXT, .s = out};
    }
    }
    return nullval(WHERE_BOOL);
}

where_result where_eval(const where_expr *e, const char *const *values) {
    evalctx x = {.row = values};
    val v = eval(&x, e);
    for (size_t i = 0; i < x.nscratch; i++) free(x.scratch[i]);
    free(x.scratch);
    if (x.error || v.null) return WHERE_UNKNOWN;
    return v.b ? WHERE_TRUE : WHERE_FALSE;
}

/* --- an index of shapes by value --- */

const char *where_canonical(where_type t, const char *value, char *out, size_t outlen) {
    if (t == WHERE_TEXT) return value;
    val v;
    if (t != WHERE_INT || !parse_as(value, WHERE_INT, &v)) return NULL;
    snprintf(out, outlen, "%lld", (long long)v.i);
    return out;
}

/* The column and constants of `col = c` or `col IN (c, ...)`; false if e is not that. */
static bool equality_of(const where_expr *e, int *col, const where_expr *const **consts, size_t *n) {
    if (e->k == N_CMP && e->op == CMP_EQ) {
        const where_expr *a = e->args[0], *b = e->args[1];
        if (a->k == N_CONST) {
            const where_expr *t = a;
            a = b;
            b = t;
        }
        if (a->k != N_COL || b->k != N_CONST || b->c.null || b->type != a->type) return false;
        *col = a->col;
        *consts = (const where_expr *const *)&e->args[a == e->args[0] ? 1 : 0];
        *n = 1;
        return true;
    }
    if (e->k == N_IN && e->op == 0 && e->args[0]->k == N_COL) {
        for (size_t i = 1; i < e->nargs; i++)
            if (e->args[i]->k != N_CONST || e->args[i]->c.null || e->args[i]->type != e->args[0]->type) return false;
        *col = e->args[0]->col;
        *consts = (const where_expr *const *)&e->args[1];
        *n = e->nargs - 1;
        return true;
    }
    return false;
}

bool where_equality(const where_expr *e, int *col, const char *const **values, size_t *nvalues) {
    if (e->n_eq) {
        *col = e->eq_col;
        *values = e->eq_values;
        *nvalues = e->n_eq;
        return true;
    }
    const where_expr *const *parts = &e;
    size_t nparts = 1;
    if (e->k == N_AND) parts = (const where_expr *const *)e->args, nparts = e->nargs;
    for (size_t p = 0; p < nparts; p++) {
        const where_expr *const *consts;
        size_t n;
        int c;
        if (!equality_of(parts[p], &c, &consts, &n)) continue;
        where_type t = consts[0]->type;
        if (t != WHERE_INT && t != WHERE_TEXT) continue;
        where_expr *m = (where_expr *)e; /* only from where_compile, before anyone else sees e */
        m->eq_values = xcalloc(n, sizeof *m->eq_values);
        for (size_t i = 0; i < n; i++) {
            char num[32];
            const char *v = t == WHERE_INT ? (snprintf(num, sizeof num, "%lld", (long long)consts[i]->c.i), num) : consts[i]->c.s;
            m->eq_values[i] = xstrndup(v, strlen(v));
        }
        m->n_eq = n;
        m->eq_col = c;
        *col = c;
        *values = m->eq_values;
        *nvalues = n;
        return true;
    }
    return false;
}
