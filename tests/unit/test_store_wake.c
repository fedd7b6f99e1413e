/* test_store_wake.c — batched flusher wake-ups (store_defer_wake and
 * store_wake): on a deferring thread a record is not flushed until
 * store_wake, on any other thread it is flushed without being asked. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "store/store.h"
#include "util/log.h"

static atomic_ulong durable;

static void on_durable(void *ctx, store_lsn lsn) {
    (void)ctx;
    atomic_store(&durable, lsn);
}

/* Whether lsn became durable within ms milliseconds. */
static bool durable_within(store_lsn lsn, int ms) {
    for (int i = 0; i < ms; i++) {
        if (atomic_load(&durable) >= lsn) return true;
        usleep(1000);
    }
    return atomic_load(&durable) >= lsn;
}

int main(void) {
    log_threshold = LOG_ERROR;
    char dir[] = "/tmp/weft-wake-test.XXXXXX";
    if (!mkdtemp(dir)) return 2;
    char err[256];
    store_options opt = {.dir = dir, .on_durable = on_durable};
    store *s = store_open(&opt, err, sizeof err);
    CHECK(s != NULL);
    if (!s) return check_summary("test_store_wake");
    uint64_t id = store_id_next(s);
    store_lsn lsn = store_create(s, id, (const uint8_t *)"a", 1, (const uint8_t *)"m", 1, NULL, 0);
    CHECK(lsn > 0);
    CHECK(durable_within(lsn, 2000)); /* not deferring: flushed unasked */

    store_defer_wake(true);
    store_lsn l2 = store_append(s, id, 0, (const uint8_t *)"hello", 5, NULL, 0);
    CHECK(l2 > lsn);
    CHECK(!durable_within(l2, 200)); /* queued, the flusher not woken */
    store_wake(s);
    CHECK(durable_within(l2, 2000));

    store_defer_wake(false);
    store_lsn l3 = store_append(s, id, 5, (const uint8_t *)"world", 5, NULL, 0);
    CHECK(durable_within(l3, 2000));
    store_close(s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_summary("test_store_wake");
}
