/* fuzz_pgoutput.c — libFuzzer target for the pgoutput decoder
 * (src/shape/pgoutput.c): the bytes of Postgres' replication stream.
 *
 * Properties checked: decoding never crashes or reads past the input (ASan
 * watches every string and value it hands back, which this target reads
 * whole); a failure always says why; a message that decodes, decodes the
 * same again. Seeds are real messages (tests/pg/pgoutput_test.c writes
 * them). Failures abort() so libFuzzer records the input.
 */
#include <stdlib.h>
#include <string.h>

#include "shape/pgoutput.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t touch(const char *s) { return s ? strlen(s) : 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1); /* exactly size bytes: any over-read is caught */
    memcpy(copy, data, size);
    pgo_message m, again;
    char err[200] = "";
    int rc = pgo_parse(copy, size, &m, err, sizeof err);
    if (rc != 0 && !err[0]) abort();
    if (rc == 0) {
        volatile size_t sum = touch(m.schema) + touch(m.table);
        for (uint16_t i = 0; i < m.ncols; i++) sum += touch(m.cols[i].name);
        const pgo_tuple *ts[] = {&m.old, &m.new_row};
        for (int k = 0; k < 2; k++)
            for (uint16_t i = 0; i < ts[k]->ncols; i++)
                for (uint32_t j = 0; ts[k]->values[i].kind == 't' && j < ts[k]->values[i].len; j++) sum += (uint8_t)ts[k]->values[i].data[j];
        for (uint32_t i = 0; i < m.ntruncated; i++) sum += m.truncated[i];
        (void)sum;
        if (pgo_parse(copy, size, &again, err, sizeof err) != 0 || again.kind != m.kind || again.relid != m.relid ||
            again.new_row.ncols != m.new_row.ncols)
            abort();
        pgo_message_free(&again);
    }
    pgo_message_free(&m);
    free(copy);
    return 0;
}
