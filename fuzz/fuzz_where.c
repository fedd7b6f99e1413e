/* fuzz_where.c — libFuzzer target for shape where clauses
 * (src/shape/where.c) and subsets' SQL text (src/shape/clause.c):
 * untrusted SQL from the `where`, `subset__where` and `subset__order_by`
 * parameters.
 *
 * The input is the clause. Properties checked: compiling never crashes and
 * either yields an expression or a non-empty message; an expression
 * evaluates on rows of values, NULLs and junk without crashing, to one of
 * the three results, the same twice in a row. A clause that compiles has
 * its parameters renumbered, and the result compiles against parameters
 * shifted the same way. An ORDER BY list either fails with a message or
 * is rewritten into one that reads back the same.
 * Failures abort() so libFuzzer records the input.
 */
#include <stdlib.h>
#include <string.h>

#include "shape/clause.h"
#include "shape/where.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const where_column COLS[] = {{"id", WHERE_INT}, {"name", WHERE_TEXT}, {"score", WHERE_FLOAT}, {"done", WHERE_BOOL}};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *sql = malloc(size + 1);
    memcpy(sql, data, size);
    sql[size] = 0;
    char err[256] = "";
    const char *params[] = {"1", "x", NULL};
    where_expr *e = where_compile(sql, COLS, 4, params, 3, err, sizeof err);
    if (!e && !err[0]) abort();
    if (e) {
        const char *rows[][4] = {{"42", "Alice", "2.5", "t"}, {NULL, NULL, NULL, NULL}, {"x", "", "nan", "maybe"},
                                 {"-9223372036854775808", "%_\\", "-1e308", "f"}};
        for (size_t i = 0; i < 4; i++) {
            where_result a = where_eval(e, rows[i]), b = where_eval(e, rows[i]);
            if (a != b || (a != WHERE_TRUE && a != WHERE_FALSE && a != WHERE_UNKNOWN)) abort();
        }
    }
    if (e) {
        char *shifted = clause_shift_params(sql, 2);
        const char *more[] = {"7", "y", "1", "x", NULL};
        char err2[256];
        where_expr *e2 = shifted ? where_compile(shifted, COLS, 4, more, 5, err2, sizeof err2) : NULL;
        if (!e2) abort();
        where_free(e2);
        free(shifted);
    }
    const char *names[] = {"id", "name", "score", "done"};
    char *order = clause_order_by(sql, names, 4, err, sizeof err);
    if (order) {
        char *again = clause_order_by(order, names, 4, err, sizeof err);
        if (!again || strcmp(again, order) != 0) abort();
        free(again);
    } else if (!err[0]) {
        abort();
    }
    free(order);
    where_free(e);
    free(sql);
    return 0;
}
