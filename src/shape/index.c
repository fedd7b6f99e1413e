/* index.c — which shapes a change can concern, without looking at every
 * shape: shapes are grouped by table, and a shape whose where clause pins
 * a column to a few values (`col = c`, `col IN (...)`, or an AND with one,
 * where_equality) is filed under each (column, value); the rest of a
 * table's shapes are checked on every change of it. A change then costs
 * the table's unindexed shapes plus the shapes filed under its row's
 * values (old and new), so 10,000 `owner = $1` shapes cost about what 10
 * do. All with sh->mu held. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/hash.h"
#include "../util/mem.h"
#include "shape_int.h"

static void push(shape ***v, size_t *n, size_t *cap, shape *s) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        *v = xrealloc(*v, *cap * sizeof **v);
    }
    (*v)[(*n)++] = s;
}

shape_table *shape_table_of(shapes *sh, const char *schema, const char *table) {
    for (size_t i = 0; i < sh->ntables; i++)
        if (strcmp(sh->tables[i]->schema, schema) == 0 && strcmp(sh->tables[i]->table, table) == 0) return sh->tables[i];
    return NULL;
}

static uint64_t bucket_hash(int col, const char *value) {
    char head[16];
    int n = snprintf(head, sizeof head, "%d\x1f", col);
    buf b;
    buf_init(&b);
    buf_append(&b, head, (size_t)n);
    buf_append_str(&b, value);
    uint64_t h = hash_keyed(b.data, b.len);
    buf_free(&b);
    return h;
}

shape_bucket *shape_table_bucket(shape_table *t, int col, const char *value, bool create) {
    if (!t->nb) {
        if (!create) return NULL;
        t->nb = 64;
        t->buckets = xcalloc(t->nb, sizeof *t->buckets);
    }
    uint64_t h = bucket_hash(col, value);
    for (shape_bucket *b = t->buckets[h & (t->nb - 1)]; b; b = b->next)
        if (b->col == col && strcmp(b->value, value) == 0) return b;
    if (!create) return NULL;
    if (t->nbuckets + 1 > t->nb) { /* grow at load 1 */
        size_t nb = t->nb * 2;
        shape_bucket **nt = xcalloc(nb, sizeof *nt);
        for (size_t i = 0; i < t->nb; i++)
            for (shape_bucket *b = t->buckets[i], *next; b; b = next) {
                next = b->next;
                uint64_t bh = bucket_hash(b->col, b->value) & (nb - 1);
                b->next = nt[bh];
                nt[bh] = b;
            }
        free(t->buckets);
        t->buckets = nt;
        t->nb = nb;
    }
    shape_bucket *b = xcalloc(1, sizeof *b);
    b->col = col;
    b->value = xstrndup(value, strlen(value));
    b->next = t->buckets[h & (t->nb - 1)];
    t->buckets[h & (t->nb - 1)] = b;
    t->nbuckets++;
    return b;
}

void shape_index_add(shapes *sh, shape *s) {
    shape_table *t = shape_table_of(sh, s->schema, s->table);
    if (!t) {
        t = xcalloc(1, sizeof *t);
        t->schema = xstrndup(s->schema, strlen(s->schema));
        t->table = xstrndup(s->table, strlen(s->table));
        sh->tables = xrealloc(sh->tables, (sh->ntables + 1) * sizeof *sh->tables);
        sh->tables[sh->ntables++] = t;
    }
    int col;
    const char *const *values;
    size_t n;
    if (!s->where || !where_equality(s->where, &col, &values, &n)) {
        push(&t->rest, &t->nrest, &t->caprest, s);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        shape_bucket *b = shape_table_bucket(t, col, values[i], true);
        push(&b->shapes, &b->n, &b->cap, s);
    }
    bool known = false;
    for (size_t i = 0; i < t->ncols; i++) known |= t->cols[i] == col;
    if (!known) {
        where_type type = WHERE_TEXT;
        where_type_of(s->cols[col].type, &type);
        t->cols = xrealloc(t->cols, (t->ncols + 1) * sizeof *t->cols);
        t->types = xrealloc(t->types, (t->ncols + 1) * sizeof *t->types);
        t->types[t->ncols] = type;
        t->cols[t->ncols++] = col;
    }
}

void shape_index_free(shapes *sh) {
    for (size_t i = 0; i < sh->ntables; i++) {
        shape_table *t = sh->tables[i];
        for (size_t k = 0; k < t->nb; k++)
            for (shape_bucket *b = t->buckets[k], *next; b; b = next) {
                next = b->next;
                free(b->value);
                free(b->shapes);
                free(b);
            }
        free(t->buckets);
        free(t->rest);
        free(t->cols);
        free(t->types);
        free(t->schema);
        free(t->table);
        free(t);
    }
    free(sh->tables);
}
