/* test_protocol.c — the protocol's value formats: offsets, media types,
 * TTL, RFC 3339 timestamps, producer integers, cursors, base64. */
#include <string.h>

#include "check.h"
#include "stream/protocol.h"
#include "util/base64.h"

static void test_offsets(void) {
    char out[OFFSET_LEN + 1];
    offset_format(0, out);
    CHECK_MEM_STR(out, strlen(out), "0000000000000000_0000000000000000");
    offset_format(1234, out);
    CHECK_MEM_STR(out, strlen(out), "0000000000000000_0000000000001234");
    offset_format(9999999999999999ull, out);
    CHECK_MEM_STR(out, strlen(out), "0000000000000000_9999999999999999");
    /* Fixed width: lexicographic order is numeric order. */
    char a[OFFSET_LEN + 1], b[OFFSET_LEN + 1];
    offset_format(9, a);
    offset_format(10, b);
    CHECK(strcmp(a, b) < 0);
    uint64_t pos = 0;
    CHECK_EQ_INT(offset_parse("-1", 2, &pos), OFFSET_START);
    CHECK_EQ_INT(offset_parse("now", 3, &pos), OFFSET_NOW);
    CHECK_EQ_INT(offset_parse("0000000000000000_0000000000001234", 33, &pos), OFFSET_AT);
    CHECK_EQ_INT(pos, 1234);
    CHECK_EQ_INT(offset_parse("0000000000000000_0000000000000000", 33, &pos), OFFSET_AT);
    CHECK_EQ_INT(pos, 0);
    CHECK_EQ_INT(offset_parse("0000000000000001_0000000000001234", 33, &pos), OFFSET_INVALID);
    CHECK_EQ_INT(offset_parse("0000000000000000-0000000000001234", 33, &pos), OFFSET_INVALID);
    CHECK_EQ_INT(offset_parse("0000000000000000_000000000000123a", 33, &pos), OFFSET_INVALID);
    CHECK_EQ_INT(offset_parse("0000000000000000_000000000000123", 32, &pos), OFFSET_INVALID);
    CHECK_EQ_INT(offset_parse("abc", 3, &pos), OFFSET_INVALID);
    CHECK_EQ_INT(offset_parse("", 0, &pos), OFFSET_INVALID);
    CHECK_EQ_INT(offset_parse("-2", 2, &pos), OFFSET_INVALID);
}

static void test_media_types(void) {
    CHECK(media_type_eq("application/json", 16, "Application/JSON; charset=utf-8", 31));
    CHECK(media_type_eq(" text/plain ", 12, "text/plain;charset=utf-8", 24));
    CHECK(!media_type_eq("text/plain", 10, "text/html", 9));
    CHECK(!media_type_eq("application/json", 16, "application/jsonx", 17));
    CHECK(media_type_valid("text/plain", 10));
    CHECK(media_type_valid("application/vnd.api+json; charset=utf-8", 39));
    CHECK(!media_type_valid("textplain", 9));
    CHECK(!media_type_valid("text/", 5));
    CHECK(!media_type_valid("/plain", 6));
    CHECK(!media_type_valid("text/pl ain", 11));
    CHECK(!media_type_valid("", 0));
}

static void test_numbers(void) {
    int64_t t = -1;
    CHECK(ttl_parse("3600", 4, &t));
    CHECK_EQ_INT(t, 3600);
    CHECK(ttl_parse("0", 1, &t));
    CHECK_EQ_INT(t, 0);
    CHECK(!ttl_parse("03600", 5, &t));
    CHECK(!ttl_parse("+3600", 5, &t));
    CHECK(!ttl_parse("3600.0", 6, &t));
    CHECK(!ttl_parse("3.6e3", 5, &t));
    CHECK(!ttl_parse("-1", 2, &t));
    CHECK(!ttl_parse("", 0, &t));
    CHECK(!ttl_parse("abc", 3, &t));
    uint64_t v = 0;
    CHECK(u53_parse("9007199254740991", 16, &v));
    CHECK_EQ_INT(v, 9007199254740991LL);
    CHECK(!u53_parse("9007199254740992", 16, &v));
    CHECK(!u53_parse("-1", 2, &v));
    CHECK(!u53_parse("1.5", 3, &v));
    CHECK(!u53_parse("", 0, &v));
    CHECK(value_is_true("true", 4));
    CHECK(value_is_true("TRUE", 4));
    CHECK(!value_is_true("yes", 3));
    CHECK(!value_is_true("1", 1));
    CHECK(!value_is_true(NULL, 0));
}

static void test_rfc3339(void) {
    int64_t ms = 0;
    CHECK(rfc3339_parse("1970-01-01T00:00:00Z", 20, &ms));
    CHECK_EQ_INT(ms, 0);
    CHECK(rfc3339_parse("2024-10-09T00:00:00Z", 20, &ms));
    CHECK_EQ_INT(ms, 1728432000000LL);
    CHECK(rfc3339_parse("2024-10-09T02:00:00.250+02:00", 29, &ms));
    CHECK_EQ_INT(ms, 1728432000250LL);
    CHECK(rfc3339_parse("2000-02-29T12:00:00z", 20, &ms));
    CHECK(!rfc3339_parse("2001-02-29T12:00:00Z", 20, &ms));
    CHECK(!rfc3339_parse("2024-13-01T00:00:00Z", 20, &ms));
    CHECK(!rfc3339_parse("2024-10-09", 10, &ms));
    CHECK(!rfc3339_parse("2024-10-09T00:00:00", 19, &ms));
    CHECK(!rfc3339_parse("tomorrow at noon!!!!", 20, &ms));
    CHECK(!rfc3339_parse("2024-10-09T00:00:00Zjunk", 24, &ms));
}

static void test_cursor(void) {
    int64_t now = 1728432000000LL + 20000 * 1000; /* interval 1000 */
    CHECK_EQ_INT(cursor_next(NULL, 0, now), 1000);
    CHECK_EQ_INT(cursor_next("999", 3, now), 1000);
    /* A client cursor at or past the current interval always moves forward. */
    for (int i = 0; i < 50; i++) {
        uint64_t c = cursor_next("1000", 4, now);
        CHECK(c > 1000 && c <= 1180);
    }
    CHECK(cursor_next("5000", 4, now) > 5000);
    CHECK_EQ_INT(cursor_next("junk", 4, now), 1000);
}

static void test_base64(void) {
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        buf b;
        buf_init(&b);
        base64_encode((const uint8_t *)in[i], strlen(in[i]), &b);
        CHECK_MEM_STR(b.data, b.len, out[i]);
        buf_free(&b);
    }
    uint8_t bin[] = {0x00, 0xff, 0xfe, 0x80};
    buf b;
    buf_init(&b);
    base64_encode(bin, 4, &b);
    CHECK_MEM_STR(b.data, b.len, "AP/+gA==");
    buf_free(&b);
}

int main(void) {
    test_offsets();
    test_media_types();
    test_numbers();
    test_rfc3339();
    test_cursor();
    test_base64();
    return check_summary("test_protocol");
}
