/* test_buf.c — the growable buffer: appends across reallocation, consume,
 * and decimal formatting (buf_append_u64, used for response headers). */
#include <stdint.h>

#include "check.h"
#include "util/buf.h"

static void check_u64(uint64_t v, const char *want) {
    buf b;
    buf_init(&b);
    buf_append_str(&b, "x=");
    buf_append_u64(&b, v);
    CHECK(b.len == 2 + strlen(want) && memcmp(b.data + 2, want, strlen(want)) == 0);
    buf_free(&b);
}

static void test_u64(void) {
    check_u64(0, "0");
    check_u64(7, "7");
    check_u64(10, "10");
    check_u64(4437, "4437");
    check_u64(9007199254740991ull, "9007199254740991");
    check_u64(UINT64_MAX, "18446744073709551615");
}

static void test_grow_consume(void) {
    buf b;
    buf_init(&b);
    for (int i = 0; i < 10000; i++) buf_append_byte(&b, (uint8_t)('a' + i % 26));
    CHECK_EQ_INT(b.len, 10000);
    CHECK(b.data[9999] == (uint8_t)('a' + 9999 % 26));
    buf_consume(&b, 9990);
    CHECK_EQ_INT(b.len, 10);
    CHECK(b.data[0] == (uint8_t)('a' + 9990 % 26));
    buf_reset(&b);
    CHECK_EQ_INT(b.len, 0);
    buf_free(&b);
}

int main(void) {
    test_u64();
    test_grow_consume();
    return check_summary("test_buf");
}
