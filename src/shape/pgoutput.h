/* pgoutput.h — Postgres' logical replication messages (the pgoutput
 * plugin, protocol version 1), decoded: what the replication stream says
 * about transactions, relations (tables and their columns) and row
 * changes, with column values in Postgres' text form.
 *
 * A pure decoder: no connection, no state. A decoded message points into
 * the bytes it came from (strings and values are not copied), so it lives
 * as long as they do; pgo_message_free releases only its arrays.
 * Every length and string is bounds-checked: a malformed message is an
 * error, never a read past its end (fuzz/fuzz_pgoutput.c).
 */
#ifndef WEFT_PGOUTPUT_H
#define WEFT_PGOUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum pgo_kind {
    PGO_BEGIN = 'B',
    PGO_COMMIT = 'C',
    PGO_RELATION = 'R',
    PGO_TYPE = 'Y',
    PGO_ORIGIN = 'O',
    PGO_INSERT = 'I',
    PGO_UPDATE = 'U',
    PGO_DELETE = 'D',
    PGO_TRUNCATE = 'T',
} pgo_kind;

/* A column value: 'n' NULL, 'u' an unchanged TOASTed value (not sent), or
 * 't' text (data, len; not NUL-terminated). */
typedef struct pgo_value {
    char kind;
    const char *data;
    uint32_t len;
} pgo_value;

typedef struct pgo_tuple {
    uint16_t ncols;
    pgo_value *values;
} pgo_tuple;

typedef struct pgo_column {
    const char *name;
    uint32_t type_oid;
    int32_t typmod;
    bool key; /* part of the replica identity */
} pgo_column;

typedef struct pgo_message {
    pgo_kind kind;
    /* BEGIN: the transaction's final LSN, commit time (microseconds since
     * 2000-01-01) and xid; COMMIT: the commit's LSN and end LSN. */
    uint64_t lsn, end_lsn;
    int64_t timestamp;
    uint32_t xid;
    /* RELATION, INSERT, UPDATE, DELETE */
    uint32_t relid;
    /* RELATION */
    const char *schema, *table;
    char replica_identity; /* 'd' default, 'n' nothing, 'f' full, 'i' index */
    uint16_t ncols;
    pgo_column *cols;
    /* UPDATE / DELETE: the old row ('K' its key only, 'O' all of it, 0 none
     * sent: the key did not change); INSERT / UPDATE: the new row. */
    char old_kind;
    pgo_tuple old, new_row;
    /* TRUNCATE: the relations, and options (1 CASCADE, 2 RESTART IDENTITY) */
    uint32_t *truncated;
    uint32_t ntruncated;
    uint8_t truncate_options;
} pgo_message;

/* Decode one pgoutput message (the payload of an XLogData). 0, or -1 with
 * a message in err. m must be released with pgo_message_free either way. */
int pgo_parse(const uint8_t *p, size_t n, pgo_message *m, char *err, size_t errlen);

void pgo_message_free(pgo_message *m);

#endif
