/* fuzz_where.c — libFuzzer target for shape where clauses
 * (src/shape/where.c): untrusted SQL from the `where` parameter.
 *
 * The input is the clause. Properties checked: compiling never crashes and
 * either yields an expression or a non-empty message; an expression
 * evaluates on rows of values, NULLs and junk without crashing, to one of
 * the three results, the same twice in a row.
 * Failures abort() so libFuzzer records the input.
 */
#include <stdlib.h>
#include <string.h>

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
    where_free(e);
    free(sql);
    return 0;
}
