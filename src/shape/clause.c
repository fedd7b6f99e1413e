/* clause.c — see clause.h. Parameters are found by the parser's
 * ParamRef locations (never by scanning the text, where "$1" may sit in a
 * string literal); ORDER BY items are rebuilt from the parse tree. */
#include "clause.h"

#include <jansson.h>
#include <pg_query.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/buf.h"
#include "../util/mem.h"

static const char WHERE_PREFIX[] = "SELECT FROM t WHERE ";
static const char ORDER_PREFIX[] = "SELECT FROM t ORDER BY ";

/* The parse tree of `prefix sql` as JSON, or NULL if it does not parse. */
static json_t *parse(const char *prefix, const char *sql) {
    size_t n = strlen(prefix) + strlen(sql) + 1;
    char *q = xmalloc(n);
    snprintf(q, n, "%s%s", prefix, sql);
    PgQueryParseResult r = pg_query_parse(q);
    json_t *tree = r.error ? NULL : json_loads(r.parse_tree, 0, NULL);
    pg_query_free_parse_result(r);
    free(q);
    return tree;
}

json_t *clause_only_select(json_t *tree, const char *part) {
    json_t *stmts = json_object_get(tree, "stmts");
    json_t *sel = json_object_get(json_object_get(json_array_get(stmts, 0), "stmt"), "SelectStmt");
    if (json_array_size(stmts) != 1 || !json_object_get(sel, part)) return NULL;
    const char *key;
    json_t *v;
    json_object_foreach(sel, key, v) {
        bool ok = strcmp(key, part) == 0 || strcmp(key, "fromClause") == 0 || strcmp(key, "op") == 0 ||
                  (strcmp(key, "limitOption") == 0 && json_is_string(v) &&
                   strcmp(json_string_value(v), "LIMIT_OPTION_DEFAULT") == 0);
        if (!ok) return NULL;
    }
    return sel;
}

static void param_locations(json_t *n, long **at, size_t *count) {
    if (json_is_array(n)) {
        size_t i;
        json_t *v;
        json_array_foreach(n, i, v) param_locations(v, at, count);
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach(n, key, v) {
        if (strcmp(key, "ParamRef") == 0) {
            *at = xrealloc(*at, (*count + 1) * sizeof **at);
            (*at)[(*count)++] = (long)json_integer_value(json_object_get(v, "location"));
        }
        if (json_is_object(v) || json_is_array(v)) param_locations(v, at, count);
    }
}

static int by_value(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

char *clause_shift_params(const char *sql, int shift) {
    json_t *tree = parse(WHERE_PREFIX, sql);
    if (!tree) return NULL;
    long *at = NULL;
    size_t n = 0;
    param_locations(tree, &at, &n);
    json_decref(tree);
    if (n) qsort(at, n, sizeof *at, by_value);
    buf out;
    buf_init(&out);
    size_t len = strlen(sql), from = 0;
    for (size_t i = 0; i < n; i++) {
        long pos = at[i] - (long)(sizeof WHERE_PREFIX - 1);
        if (pos < (long)from || (size_t)pos >= len || sql[pos] != '$') continue;
        char *end;
        long k = strtol(sql + pos + 1, &end, 10);
        buf_append(&out, sql + from, (size_t)pos - from);
        buf_printf(&out, "$%ld", k + shift);
        from = (size_t)(end - sql);
    }
    buf_append(&out, sql + from, len - from);
    buf_append_byte(&out, 0);
    free(at);
    char *s = xstrndup((const char *)out.data, out.len - 1);
    buf_free(&out);
    return s;
}

static void quote_ident(buf *out, const char *name) {
    buf_append_byte(out, '"');
    for (const char *p = name; *p; p++) {
        if (*p == '"') buf_append_byte(out, '"');
        buf_append_byte(out, (uint8_t)*p);
    }
    buf_append_byte(out, '"');
}

char *clause_order_by(const char *sql, const char *const *names, size_t n, char *err, size_t errlen) {
    json_t *tree = parse(ORDER_PREFIX, sql);
    json_t *sel = tree ? clause_only_select(tree, "sortClause") : NULL;
    if (!sel) {
        snprintf(err, errlen, "order_by must be a list of columns, each with ASC or DESC and NULLS FIRST or LAST");
        json_decref(tree);
        return NULL;
    }
    buf out;
    buf_init(&out);
    size_t i;
    json_t *item;
    bool ok = true;
    json_array_foreach(json_object_get(sel, "sortClause"), i, item) {
        json_t *by = json_object_get(item, "SortBy");
        json_t *fields = json_object_get(json_object_get(json_object_get(by, "node"), "ColumnRef"), "fields");
        const char *name = json_array_size(fields) == 1
                               ? json_string_value(json_object_get(json_object_get(json_array_get(fields, 0), "String"), "sval"))
                               : NULL;
        size_t k = 0;
        while (name && k < n && strcmp(names[k], name) != 0) k++;
        const char *dir = json_string_value(json_object_get(by, "sortby_dir")) ?: "";
        const char *nulls = json_string_value(json_object_get(by, "sortby_nulls")) ?: "";
        if (!name || k == n) {
            snprintf(err, errlen, "order_by item %zu is not a column of the table", i + 1);
            ok = false;
            break;
        }
        if (json_object_get(by, "useOp") || strcmp(dir, "SORTBY_USING") == 0) {
            snprintf(err, errlen, "order_by: USING is not supported");
            ok = false;
            break;
        }
        if (i) buf_append_str(&out, ", ");
        quote_ident(&out, name);
        if (strcmp(dir, "SORTBY_DESC") == 0) buf_append_str(&out, " DESC");
        else if (strcmp(dir, "SORTBY_ASC") == 0) buf_append_str(&out, " ASC");
        if (strcmp(nulls, "SORTBY_NULLS_FIRST") == 0) buf_append_str(&out, " NULLS FIRST");
        else if (strcmp(nulls, "SORTBY_NULLS_LAST") == 0) buf_append_str(&out, " NULLS LAST");
    }
    json_decref(tree);
    char *s = ok ? xstrndup((const char *)out.data, out.len) : NULL;
    buf_free(&out);
    return s;
}
