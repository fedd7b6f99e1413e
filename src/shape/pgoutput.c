/* pgoutput.c — see pgoutput.h. Integers are big-endian; strings are
 * NUL-terminated; the layouts are those of Postgres' "Logical Replication
 * Message Formats" (protocol version 1). */
#include "pgoutput.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/mem.h"

typedef struct reader {
    const uint8_t *p, *end;
    bool bad;
    const char *what; /* the first thing that did not fit */
} reader;

static bool need(reader *r, size_t n, const char *what) {
    if (r->bad) return false;
    if ((size_t)(r->end - r->p) < n) {
        r->bad = true;
        r->what = what;
        return false;
    }
    return true;
}

static uint64_t be(reader *r, size_t n, const char *what) {
    if (!need(r, n, what)) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v = v << 8 | r->p[i];
    r->p += n;
    return v;
}

static const char *str(reader *r, const char *what) {
    if (r->bad) return "";
    const uint8_t *nul = memchr(r->p, 0, (size_t)(r->end - r->p));
    if (!nul) {
        r->bad = true;
        r->what = what;
        return "";
    }
    const char *s = (const char *)r->p;
    r->p = nul + 1;
    return s;
}

static void tuple(reader *r, pgo_tuple *t) {
    t->ncols = (uint16_t)be(r, 2, "a tuple's column count");
    if (r->bad) return;
    t->values = xcalloc(t->ncols ? t->ncols : 1, sizeof *t->values);
    for (uint16_t i = 0; i < t->ncols && !r->bad; i++) {
        pgo_value *v = &t->values[i];
        v->kind = (char)be(r, 1, "a value's kind");
        if (v->kind == 't' || v->kind == 'b') {
            v->len = (uint32_t)be(r, 4, "a value's length");
            if (!need(r, v->len, "a value")) return;
            v->data = (const char *)r->p;
            r->p += v->len;
            if (v->kind == 'b') {
                r->bad = true;
                r->what = "a binary value (Weft asks for text)";
            }
        } else if (v->kind != 'n' && v->kind != 'u' && !r->bad) {
            r->bad = true;
            r->what = "a value of unknown kind";
        }
    }
}

int pgo_parse(const uint8_t *p, size_t n, pgo_message *m, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    reader r = {p, p + n, false, NULL};
    m->kind = (pgo_kind)be(&r, 1, "the message type");
    switch (m->kind) {
    case PGO_BEGIN:
        m->lsn = be(&r, 8, "the final LSN");
        m->timestamp = (int64_t)be(&r, 8, "the commit time");
        m->xid = (uint32_t)be(&r, 4, "the xid");
        break;
    case PGO_COMMIT:
        be(&r, 1, "the flags");
        m->lsn = be(&r, 8, "the commit LSN");
        m->end_lsn = be(&r, 8, "the end LSN");
        m->timestamp = (int64_t)be(&r, 8, "the commit time");
        break;
    case PGO_ORIGIN:
        m->lsn = be(&r, 8, "the origin LSN");
        str(&r, "the origin name");
        break;
    case PGO_TYPE:
        m->relid = (uint32_t)be(&r, 4, "the type oid");
        m->schema = str(&r, "the type's namespace");
        m->table = str(&r, "the type's name");
        break;
    case PGO_RELATION:
        m->relid = (uint32_t)be(&r, 4, "the relation id");
        m->schema = str(&r, "the namespace");
        m->table = str(&r, "the relation name");
        m->replica_identity = (char)be(&r, 1, "the replica identity");
        m->ncols = (uint16_t)be(&r, 2, "the column count");
        if (r.bad) break;
        m->cols = xcalloc(m->ncols ? m->ncols : 1, sizeof *m->cols);
        for (uint16_t i = 0; i < m->ncols && !r.bad; i++) {
            m->cols[i].key = be(&r, 1, "a column's flags") & 1;
            m->cols[i].name = str(&r, "a column's name");
            m->cols[i].type_oid = (uint32_t)be(&r, 4, "a column's type");
            m->cols[i].typmod = (int32_t)be(&r, 4, "a column's type modifier");
        }
        break;
    case PGO_INSERT:
        m->relid = (uint32_t)be(&r, 4, "the relation id");
        if (be(&r, 1, "the new tuple marker") != 'N' && !r.bad) r.bad = true, r.what = "the new tuple marker";
        tuple(&r, &m->new_row);
        break;
    case PGO_UPDATE:
    case PGO_DELETE: {
        m->relid = (uint32_t)be(&r, 4, "the relation id");
        char t = (char)be(&r, 1, "the tuple marker");
        if (t == 'K' || t == 'O') {
            m->old_kind = t;
            tuple(&r, &m->old);
            if (m->kind == PGO_UPDATE) t = (char)be(&r, 1, "the new tuple marker");
        } else if (m->kind == PGO_DELETE && !r.bad) {
            r.bad = true, r.what = "the old tuple marker";
        }
        if (m->kind == PGO_UPDATE) {
            if (t != 'N' && !r.bad) r.bad = true, r.what = "the new tuple marker";
            tuple(&r, &m->new_row);
        }
        break;
    }
    case PGO_TRUNCATE:
        m->ntruncated = (uint32_t)be(&r, 4, "the relation count");
        m->truncate_options = (uint8_t)be(&r, 1, "the options");
        if (!need(&r, (size_t)m->ntruncated * 4, "the relation ids")) break;
        m->truncated = xcalloc(m->ntruncated ? m->ntruncated : 1, sizeof *m->truncated);
        for (uint32_t i = 0; i < m->ntruncated; i++) m->truncated[i] = (uint32_t)be(&r, 4, "a relation id");
        break;
    default:
        if (!r.bad) {
            r.bad = true;
            r.what = "the message type";
        }
    }
    if (!r.bad && r.p != r.end) {
        r.bad = true;
        r.what = "the end (bytes left over)";
    }
    if (r.bad) {
        snprintf(err, errlen, "malformed pgoutput message '%c': %s", n ? p[0] : '?', r.what);
        return -1;
    }
    return 0;
}

void pgo_message_free(pgo_message *m) {
    free(m->cols);
    free(m->old.values);
    free(m->new_row.values);
    free(m->truncated);
    memset(m, 0, sizeof *m);
}
