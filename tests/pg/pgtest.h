/* pgtest.h — what the tests against a real Postgres share: the connection
 * to the database tests/pg/pgtmp.py started (WEFT_TEST_DATABASE_URL). */
#ifndef WEFT_PGTEST_H
#define WEFT_PGTEST_H

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

/* Connect, or exit 2 saying why (`name` is the test's). */
static inline PGconn *pgtest_connect(const char *name) {
    const char *url = getenv("WEFT_TEST_DATABASE_URL");
    if (!url) {
        fprintf(stderr, "%s: set WEFT_TEST_DATABASE_URL (run it through tests/pg/pgtmp.py)\n", name);
        exit(2);
    }
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "%s: %s", name, PQerrorMessage(c));
        exit(2);
    }
    return c;
}

#endif
