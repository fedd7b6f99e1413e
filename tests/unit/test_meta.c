/* test_meta.c — the stream metadata blob the store persists (meta.c): its
 * bytes are on disk in every WAL and catalog, so the layout is pinned here,
 * and decoding what was encoded gives the same stream back. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "stream/stream_int.h"

/* Expected bytes, built independently of the encoder. */
typedef struct expect {
    uint8_t b[1024];
    size_t n;
} expect;

static void ex_u64(expect *e, uint64_t v) {
    for (int i = 0; i < 8; i++) e->b[e->n++] = (uint8_t)(v >> (8 * i));
}

static void ex_str(expect *e, const char *s) {
    uint32_t n = s ? (uint32_t)strlen(s) : 0;
    for (int i = 0; i < 4; i++) e->b[e->n++] = (uint8_t)(n >> (8 * i));
    memcpy(e->b + e->n, s ? s : "", n);
    e->n += n;
}

static void test_layout_and_round_trip(void) {
    stream src = {0};
    src.id = 0x0102030405060708ull;
    producer prs[2] = {{.id = "writer-a", .epoch = 3, .seq = 41}, {.id = "b", .epoch = 0, .seq = 0}};
    stream s = {0};
    s.content_type = "application/json";
    s.closed = true;
    s.ttl = 3600;
    s.expires_at = 1767225600000;
    s.expires_str = "2026-01-01T00:00:00Z";
    s.src = &src;
    s.fork_off = 77;
    s.stream_seq = "seq-9";
    s.closed_by_id = "writer-a";
    s.closed_by_epoch = 3;
    s.closed_by_seq = 41;
    s.producers = prs;
    s.nproducers = 2;

    expect e = {.n = 0};
    e.b[e.n++] = 1; /* version */
    e.b[e.n++] = 1; /* closed */
    ex_str(&e, "application/json");
    ex_u64(&e, 3600);
    ex_u64(&e, 1767225600000);
    ex_str(&e, "2026-01-01T00:00:00Z");
    ex_u64(&e, src.id);
    ex_u64(&e, 77);
    ex_str(&e, "seq-9");
    ex_str(&e, "writer-a");
    ex_u64(&e, 3);
    ex_u64(&e, 41);
    ex_u64(&e, 2);
    ex_str(&e, "writer-a");
    ex_u64(&e, 3);
    ex_u64(&e, 41);
    ex_str(&e, "b");
    ex_u64(&e, 0);
    ex_u64(&e, 0);

    /* Appended after what the buffer already holds. */
    buf out;
    buf_init(&out);
    buf_append(&out, "xy", 2);
    stream_meta_encode(&s, &out);
    CHECK_EQ_INT(out.len, 2 + e.n);
    CHECK(memcmp(out.data, "xy", 2) == 0);
    CHECK(out.len == 2 + e.n && memcmp(out.data + 2, e.b, e.n) == 0);

    stream d = {0};
    uint64_t src_id = 0;
    CHECK(stream_meta_decode(&d, out.data + 2, out.len - 2, &src_id));
    CHECK_EQ_INT(src_id, src.id);
    CHECK(d.closed && !d.deleted);
    CHECK(d.json);
    CHECK(d.content_type && strcmp(d.content_type, "application/json") == 0);
    CHECK_EQ_INT(d.ttl, 3600);
    CHECK_EQ_INT(d.expires_at, 1767225600000);
    CHECK(d.expires_str && strcmp(d.expires_str, "2026-01-01T00:00:00Z") == 0);
    CHECK_EQ_INT(d.fork_off, 77);
    CHECK(d.stream_seq && strcmp(d.stream_seq, "seq-9") == 0);
    CHECK(d.closed_by_id && strcmp(d.closed_by_id, "writer-a") == 0);
    CHECK_EQ_INT(d.closed_by_epoch, 3);
    CHECK_EQ_INT(d.closed_by_seq, 41);
    CHECK_EQ_INT(d.nproducers, 2);
    if (d.nproducers == 2) {
        CHECK(strcmp(d.producers[0].id, "writer-a") == 0);
        CHECK_EQ_INT(d.producers[0].epoch, 3);
        CHECK_EQ_INT(d.producers[0].seq, 41);
        CHECK(strcmp(d.producers[1].id, "b") == 0);
    }
    /* Every truncation is refused. */
    bool all_refused = true;
    for (size_t n = 0; n < out.len - 2; n++) {
        stream t = {0};
        uint64_t id;
        if (stream_meta_decode(&t, out.data + 2, n, &id)) all_refused = false;
        free(t.content_type);
        free(t.expires_str);
        free(t.stream_seq);
        free(t.closed_by_id);
        for (uint32_t i = 0; i < t.nproducers; i++) free(t.producers[i].id);
        free(t.producers);
    }
    CHECK(all_refused);

    free(d.content_type);
    free(d.expires_str);
    free(d.stream_seq);
    free(d.closed_by_id);
    for (uint32_t i = 0; i < d.nproducers; i++) free(d.producers[i].id);
    free(d.producers);
    buf_free(&out);
}

/* A stream with nothing optional: empty strings, no producers. */
static void test_minimal(void) {
    stream s = {0};
    s.content_type = "application/octet-stream";
    s.ttl = -1;
    buf out;
    buf_init(&out);
    stream_meta_encode(&s, &out);
    expect e = {.n = 0};
    e.b[e.n++] = 1;
    e.b[e.n++] = 0;
    ex_str(&e, "application/octet-stream");
    ex_u64(&e, (uint64_t)-1);
    ex_u64(&e, 0);
    ex_str(&e, NULL);
    ex_u64(&e, 0);
    ex_u64(&e, 0);
    ex_str(&e, NULL);
    ex_str(&e, NULL);
    ex_u64(&e, 0);
    ex_u64(&e, 0);
    ex_u64(&e, 0);
    CHECK(out.len == e.n && memcmp(out.data, e.b, e.n) == 0);
    stream d = {0};
    uint64_t src_id = 1;
    CHECK(stream_meta_decode(&d, out.data, out.len, &src_id));
    CHECK_EQ_INT(src_id, 0);
    CHECK_EQ_INT(d.ttl, -1);
    CHECK(!d.expires_str && !d.stream_seq && !d.closed_by_id && d.nproducers == 0);
    CHECK(!d.json);
    free(d.content_type);
    buf_free(&out);
}

int main(void) {
    test_layout_and_round_trip();
    test_minimal();
    return check_summary("test_meta");
}
