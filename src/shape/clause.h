/* clause.h — SQL text for a subset query (docs/shapes.md, "Subsets"):
 * a shape's where clause and a subset's where clause in one query, and a
 * subset's ORDER BY list. Both are read with Postgres' own parser
 * (libpg_query) and written back only from what was understood, so what
 * reaches Postgres is what Weft checked.
 *
 * Pure functions of their arguments: any thread may call them.
 */
#ifndef WEFT_CLAUSE_H
#define WEFT_CLAUSE_H

#include <jansson.h>
#include <stddef.h>

/* In libpg_query's JSON parse tree of "SELECT FROM t <part> ...", the
 * only statement's SelectStmt if it holds nothing but `part` (and FROM t,
 * so no LIMIT, ORDER BY, UNION, ... was smuggled in); else NULL. */
json_t *clause_only_select(json_t *tree, const char *part);

/* The where clause `sql` with each parameter $k written $(k + shift), so
 * that it can follow another clause's parameters in one query. A malloc'd
 * string, or NULL if sql does not parse. */
char *clause_shift_params(const char *sql, int shift);

/* An ORDER BY list: columns of `names` (n of them), each optionally ASC
 * or DESC and NULLS FIRST or LAST, written back with quoted identifiers
 * ("a" DESC NULLS LAST, "b"). A malloc'd string, or NULL with a message in
 * err naming what is not a column or not supported. */
char *clause_order_by(const char *sql, const char *const *names, size_t n, char *err, size_t errlen);

#endif
