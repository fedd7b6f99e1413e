/* test_hash.c — the keyed hash of client-chosen names: the same name hashes
 * the same within a process, and names chosen to share a bucket of a table
 * under the unkeyed FNV-1a the registry used before do not share one here. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "util/hash.h"

#define BUCKET_BITS 16
#define FLOOD 64

static uint64_t fnv1a(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void test_stable(void) {
    const char *a = "/v1/stream/chat/42", *b = "/v1/stream/chat/43";
    CHECK(hash_keyed(a, strlen(a)) == hash_keyed(a, strlen(a)));
    CHECK(hash_keyed(a, strlen(a)) != hash_keyed(b, strlen(b)));
    /* The length is part of the input, not just the bytes up to a NUL. */
    CHECK(hash_keyed("ab\0", 3) != hash_keyed("ab", 2));
    CHECK(hash_keyed("", 0) == hash_keyed("", 0));
}

/* What an attacker does offline against an unkeyed hash: search for paths
 * that all fall in bucket 0 of a 65,536-bucket table. */
static void test_flood(void) {
    static char paths[FLOOD][48];
    int found = 0;
    for (unsigned long i = 0; found < FLOOD; i++) {
        char p[48];
        int n = snprintf(p, sizeof p, "/v1/stream/flood-%lu", i);
        if ((fnv1a(p, (size_t)n) & ((1u << BUCKET_BITS) - 1)) == 0) memcpy(paths[found++], p, sizeof p);
    }
    static unsigned char count[1u << BUCKET_BITS];
    int most = 0;
    for (int i = 0; i < FLOOD; i++) {
        uint64_t h = hash_keyed(paths[i], strlen(paths[i]));
        int c = ++count[h & ((1u << BUCKET_BITS) - 1)];
        if (c > most) most = c;
    }
    /* 64 keys in 65,536 buckets: a bucket with 4 is already a 1-in-10^8
     * event. */
    CHECK(most <= 3);
    if (most > 3) fprintf(stderr, "%d of %d chosen paths share a bucket\n", most, FLOOD);
}

int main(void) {
    test_stable();
    test_flood();
    return check_summary("test_hash");
}
