/* pgoutput_test.c — the pgoutput decoder (src/shape/pgoutput.c) on what a
 * real Postgres sends: a table in a publication, a logical slot, inserts
 * (NULLs included), an update, an update of the primary key (the old key
 * comes along), a delete, a TRUNCATE (after which the relation is
 * described again), and an update that leaves a TOASTed
 * value unchanged; the slot's binary changes (pg_logical_slot_get_binary_
 * changes, the same bytes START_REPLICATION streams) are decoded and
 * compared message by message. Each message is rendered as a line:
 *   B | C | R schema.table identity col[*key]:oid ... | I new | U [K|O old] new | D K|O old | T n
 * with values joined by '|', NULL as ~ and an unchanged TOASTed value as ?.
 *
 * Usage: pgoutput_test with WEFT_TEST_DATABASE_URL set (tests/pg/pgtmp.py);
 * with PGOUTPUT_CORPUS_DIR it also writes each message there (fuzz seeds).
 * Ends with "pgoutput_test: N passed, N failed".
 */
#include "pgtest.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/check.h"
#include "shape/pgoutput.h"

static void exec(PGconn *c, const char *sql) {
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
        exit(2);
    }
    PQclear(r);
}

static void render_tuple(const pgo_tuple *t, char *out, size_t cap) {
    size_t n = strlen(out);
    for (uint16_t i = 0; i < t->ncols && n + 8 < cap; i++) {
        const pgo_value *v = &t->values[i];
        if (i) out[n++] = '|';
        if (v->kind == 'n') out[n++] = '~';
        else if (v->kind == 'u') out[n++] = '?';
        else n += (size_t)snprintf(out + n, cap - n, "%.*s", (int)(v->len > 12 ? 12 : v->len), v->data);
        out[n] = 0;
    }
}

static void render(const pgo_message *m, char *out, size_t cap) {
    out[0] = 0;
    switch (m->kind) {
    case PGO_RELATION: {
        size_t n = (size_t)snprintf(out, cap, "R %s.%s %c", m->schema, m->table, m->replica_identity);
        for (uint16_t i = 0; i < m->ncols && n < cap; i++)
            n += (size_t)snprintf(out + n, cap - n, " %s%s:%u", m->cols[i].name, m->cols[i].key ? "*" : "", m->cols[i].type_oid);
        break;
    }
    case PGO_INSERT: snprintf(out, cap, "I "); render_tuple(&m->new_row, out, cap); break;
    case PGO_UPDATE:
    case PGO_DELETE:
        snprintf(out, cap, "%c ", m->kind);
        if (m->old_kind) {
            size_t n = strlen(out);
            snprintf(out + n, cap - n, "%c:", m->old_kind);
            render_tuple(&m->old, out, cap);
            if (m->kind == PGO_UPDATE) strncat(out, " ", cap - strlen(out) - 1);
        }
        if (m->kind == PGO_UPDATE) render_tuple(&m->new_row, out, cap);
        break;
    case PGO_TRUNCATE: snprintf(out, cap, "T %u", m->ntruncated); break;
    default: snprintf(out, cap, "%c", m->kind); break;
    }
}

int main(void) {
    PGconn *c = pgtest_connect("pgoutput_test");
    exec(c, "CREATE TABLE items (id int PRIMARY KEY, title text, n bigint, note varchar(20))");
    exec(c, "CREATE PUBLICATION po_pub FOR TABLE items");
    exec(c, "SELECT pg_create_logical_replication_slot('po_slot', 'pgoutput')");
    exec(c, "BEGIN; INSERT INTO items VALUES (1, 'a', 10, NULL), (2, 'b', NULL, 'x'); COMMIT");
    exec(c, "UPDATE items SET title = 'a2' WHERE id = 1");
    exec(c, "UPDATE items SET id = 3 WHERE id = 2");
    exec(c, "DELETE FROM items WHERE id = 1");
    exec(c, "TRUNCATE items");
    exec(c, "INSERT INTO items SELECT 5, string_agg(md5(i::text), ''), 1, 'é' FROM generate_series(1, 400) i");
    exec(c, "UPDATE items SET n = 2 WHERE id = 5");
    static const char *const want[] = {
        "B", "R public.items d id*:23 title:25 n:20 note:1043", "I 1|a|10|~", "I 2|b|~|x", "C",
        "B", "U 1|a2|10|~", "C",
        "B", "U K:2|~|~|~ 3|b|~|x", "C",
        "B", "D K:1|~|~|~", "C",
        /* a TRUNCATE invalidates the relation: its description comes again */
        "B", "R public.items d id*:23 title:25 n:20 note:1043", "T 1", "C",
        "B", "R public.items d id*:23 title:25 n:20 note:1043", "I 5|c4ca4238a0b9|1|é", "C",
        "B", "U 5|?|2|é", "C",
    };
    size_t nwant = sizeof want / sizeof want[0];
    PGresult *r = PQexecParams(c, "SELECT data FROM pg_logical_slot_get_binary_changes('po_slot', NULL, NULL, "
                                  "'proto_version', '1', 'publication_names', 'po_pub')",
                               0, NULL, NULL, NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "pgoutput_test: %s", PQerrorMessage(c));
        return 2;
    }
    CHECK_EQ_INT(PQntuples(r), (int)nwant);
    uint32_t relid = 0, xid = 0;
    uint64_t begin_lsn = 0;
    for (int i = 0; i < PQntuples(r) && (size_t)i < nwant; i++) {
        const uint8_t *p = (const uint8_t *)PQgetvalue(r, i, 0);
        size_t n = (size_t)PQgetlength(r, i, 0);
        const char *corpus = getenv("PGOUTPUT_CORPUS_DIR"); /* seeds for fuzz/fuzz_pgoutput.c */
        if (corpus) {
            char path[512];
            snprintf(path, sizeof path, "%s/msg-%02d", corpus, i);
            FILE *f = fopen(path, "wb");
            if (f) fwrite(p, 1, n, f), fclose(f);
        }
        pgo_message m;
        char err[200], line[300];
        int rc = pgo_parse(p, n, &m, err, sizeof err);
        CHECK_EQ_INT(rc, 0);
        if (rc != 0) fprintf(stderr, "message %d: %s\n", i, err);
        render(&m, line, sizeof line);
        if (strcmp(line, want[i]) != 0) fprintf(stderr, "message %d: got '%s', want '%s'\n", i, line, want[i]);
        CHECK(strcmp(line, want[i]) == 0);
        if (m.kind == PGO_RELATION) relid = m.relid;
        if (m.kind == PGO_INSERT || m.kind == PGO_UPDATE || m.kind == PGO_DELETE) CHECK_EQ_INT(m.relid, relid);
        if (m.kind == PGO_TRUNCATE) CHECK(m.ntruncated == 1 && m.truncated[0] == relid);
        if (m.kind == PGO_BEGIN) {
            CHECK(m.xid > xid); /* transactions in commit order, here also xid order */
            CHECK(m.lsn > begin_lsn);
            xid = m.xid;
            begin_lsn = m.lsn;
        }
        if (m.kind == PGO_COMMIT) CHECK(m.lsn == begin_lsn && m.end_lsn > m.lsn);
        /* every shorter prefix of a message is refused, never over-read */
        for (size_t k = 0; k < n; k++) {
            pgo_message t;
            CHECK(pgo_parse(p, k, &t, err, sizeof err) == -1);
            pgo_message_free(&t);
        }
        pgo_message_free(&m);
    }
    PQclear(r);
    PQfinish(c);
    return check_summary("pgoutput_test");
}
