/* where.h — a shape's where clause: parsed by Postgres' own parser
 * (libpg_query), checked against the table's columns, and evaluated by
 * Weft on replicated rows, whose values come in Postgres' text form.
 *
 * Supported: comparisons (= <> != < <= > >=), AND / OR / NOT with SQL's
 * three-valued logic, + - * / % and unary minus, [NOT] LIKE / ILIKE
 * (with % _ and backslash escapes), [NOT] IN (list), IS [NOT] NULL,
 * IS [NOT] TRUE / FALSE, IS [NOT] DISTINCT FROM, [NOT] BETWEEN, casts
 * (::int, ::bigint, ::float8, ::numeric, ::text, ::bool), the functions
 * lower, upper, length, abs and coalesce, positional parameters $1..$n,
 * on columns of boolean, integer (int2/4/8), floating (float4/8, numeric)
 * and text-like (text, varchar, char, uuid, ...) types. Text compares
 * byte by byte (C collation). Numerics are compared as doubles. Anything
 * else is refused when the shape is requested, naming what it was.
 *
 * A compiled clause is immutable: any thread may evaluate it.
 */
#ifndef WEFT_WHERE_H
#define WEFT_WHERE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum where_type { WHERE_BOOL, WHERE_INT, WHERE_FLOAT, WHERE_TEXT } where_type;

/* A column of the table, with its type mapped from the Postgres type name
 * (where_type_of). */
typedef struct where_column {
    const char *name;
    where_type type;
} where_column;

/* The where type of a Postgres type (as information_schema or pg_type
 * name it: "integer", "int4", "character varying", ...); false if no
 * supported type. */
bool where_type_of(const char *pg_type, where_type *out);

typedef struct where_expr where_expr;

/* Compile `sql` (the clause alone, no WHERE) against cols; params are the
 * values of $1..$n, as text. NULL with a message in err naming what is
 * wrong or not supported. */
where_expr *where_compile(const char *sql, const where_column *cols, size_t ncols, const char *const *params,
                          size_t nparams, char *err, size_t errlen);

typedef enum where_result { WHERE_FALSE = 0, WHERE_TRUE = 1, WHERE_UNKNOWN = 2 } where_result;

/* Evaluate on a row: values[i] is column i in Postgres' text form, or NULL
 * for SQL NULL. A row matches a shape only on WHERE_TRUE. An expression
 * Postgres would raise an error on (division by zero, overflow) is
 * WHERE_UNKNOWN. */
where_result where_eval(const where_expr *e, const char *const *values);

/* A clause that can only hold for rows whose column *col has one of a few
 * values: `col = constant`, `col IN (constants)`, or an AND with such a
 * part, on an integer or text column. Then true, with the values in the
 * canonical text form where_canonical gives a row's value (for an index of
 * shapes by value); false for any other clause. The strings belong to e. */
bool where_equality(const where_expr *e, int *col, const char *const **values, size_t *nvalues);

/* The canonical text of a value of a column of type t, as where_equality
 * gives its constants: integers without leading zeros or '+', text as is.
 * NULL if the value does not parse as t. Returns out (of outlen bytes) or NULL. */
const char *where_canonical(where_type t, const char *value, char *out, size_t outlen);

void where_free(where_expr *e);

#endif
