/* fuzz_http.c — libFuzzer target for http/parser.c.
 *
 * Input layout: the first byte chooses where the body is split (scaled to
 * the body's length, see below); the rest is the bytes of a connection: a
 * request head, then whatever follows it.
 *
 * Properties checked, for every input:
 *  - a parsed head is consistent: head_len within the input and the limits,
 *    every pointer inside the head, content_length >= -1, never both chunked
 *    and a Content-Length, header values without surrounding whitespace;
 *  - re-parsing exactly head_len bytes gives the same head (the server
 *    re-parses from a copy), and one byte less is INCOMPLETE, not an error;
 *  - a failed parse sets a message and maps to one of the documented codes;
 *  - the chunked decoder gives the same output, the same consumed count and
 *    the same done / error result whether the body arrives all at once or
 *    in two pieces, and it only stops short of its input when done.
 * The body is what follows a parsed head, or the whole input when the head
 * does not parse, so the decoder gets fuzzed directly too. The target, when
 * there is one, goes through the target/query helpers for crash coverage.
 * Failures abort() so libFuzzer records the input.
 */
#include "http/parser.h"
#include "util/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small limits, so the fuzzer reaches them. */
#define FUZZ_MAX_HEAD 1024
#define FUZZ_MAX_TARGET 128
#define FUZZ_MAX_BODY 4096

static void fail(const char *what) {
    fprintf(stderr, "fuzz_http: %s\n", what);
    abort();
}

static bool within(const char *p, size_t n, const char *start, size_t len) {
    return p >= start && n <= len && (size_t)(p - start) <= len - n;
}

static bool is_ows(char c) { return c == ' ' || c == '\t'; }

static void check_head(const char *in, size_t len, int r, const http_request_head *h) {
    if ((size_t)r != h->head_len) fail("return value differs from head_len");
    if (h->head_len > len || h->head_len > FUZZ_MAX_HEAD) fail("head_len out of range");
    if (h->nheaders > HTTP_MAX_HEADERS) fail("too many headers accepted");
    if (h->content_length < -1) fail("content_length below -1");
    if (h->chunked && h->content_length >= 0) fail("both chunked and content-length");
    if (h->version_minor != 0 && h->version_minor != 1) fail("bad version_minor");
    if (h->method_len == 0 || !within(h->method_str, h->method_len, in, h->head_len))
        fail("method outside the head");
    if (h->target_len == 0 || h->target_len > FUZZ_MAX_TARGET ||
        !within(h->target, h->target_len, in, h->head_len))
        fail("target outside the head or too long");
    for (size_t i = 0; i < h->nheaders; i++) {
        const http_header *f = &h->headers[i];
        if (f->name_len == 0 || !within(f->name, f->name_len, in, h->head_len))
            fail("header name outside the head");
        if (!within(f->value, f->value_len, in, h->head_len)) fail("header value outside the head");
        if (f->value_len > 0 && (is_ows(f->value[0]) || is_ows(f->value[f->value_len - 1])))
            fail("header value not stripped");
        if (memchr(f->value, '\r', f->value_len) || memchr(f->value, '\n', f->value_len))
            fail("line break inside a header value");
    }

    http_request_head again;
    const char *err = NULL;
    if (http_parse_head(in, h->head_len, FUZZ_MAX_HEAD, FUZZ_MAX_TARGET, &again, &err) != r ||
        again.nheaders != h->nheaders || again.content_length != h->content_length ||
        again.chunked != h->chunked || again.keep_alive != h->keep_alive ||
        again.method != h->method)
        fail("re-parsing head_len bytes gives a different head");
    if (http_parse_head(in, h->head_len - 1, FUZZ_MAX_HEAD, FUZZ_MAX_TARGET, &again, &err) !=
        HTTP_PARSE_INCOMPLETE)
        fail("a truncated head is not INCOMPLETE");
}

static void check_failure(int r, const char *err) {
    if (err == NULL || err[0] == '\0') fail("error without a message");
    int status = http_parse_status(r);
    if (status != 400 && status != 431 && status != 414 && status != 505 && status != 501)
        fail("unexpected status");
    if (r < HTTP_PARSE_NOT_IMPL) fail("unknown result code");
}

static void exercise_target(const http_request_head *h) {
    http_target t;
    if (!http_target_split(h->target, h->target_len, &t)) return;
    if (t.path_len > h->target_len || t.path[0] != '/') fail("bad path split");
    buf out;
    buf_init(&out);
    if (http_percent_decode(t.path, t.path_len, &out)) {
        if (out.len > t.path_len) fail("percent-decoding grew the path");
        if (memchr(out.data, '\0', out.len)) fail("percent-decoding let a NUL through");
    } else if (out.len != 0) {
        fail("failed percent-decoding changed the buffer");
    }
    buf_reset(&out);
    if (!http_query_get(t.query, t.query_len, "offset", &out) && out.len != 0)
        fail("failed query lookup changed the buffer");
    buf_free(&out);
}

typedef struct decode_result {
    ssize_t r; /* consumed bytes, or -1 / -2 */
    bool done;
} decode_result;

static decode_result decode_split(const char *in, size_t len, size_t split, buf *out) {
    http_chunked c;
    http_chunked_init(&c);
    decode_result res = {0, false};
    const char *err = NULL;
    ssize_t r = http_chunked_decode(&c, in, split, out, FUZZ_MAX_BODY, &res.done, &err);
    if (r < 0 || res.done || split == len) {
        if (r == -1 && err == NULL) fail("decode error without a message");
        if (r >= 0 && !res.done && (size_t)r != split) fail("decoder stopped short before done");
        res.r = r;
        return res;
    }
    err = NULL;
    ssize_t r2 = http_chunked_decode(&c, in + split, len - split, out, FUZZ_MAX_BODY, &res.done,
                                     &err);
    if (r2 == -1 && err == NULL) fail("decode error without a message");
    if (r2 >= 0 && !res.done && (size_t)r2 != len - split) fail("decoder stopped short before done");
    res.r = r2 < 0 ? r2 : r + r2;
    return res;
}

static void check_chunked(const char *in, size_t len, uint8_t split_byte) {
    size_t split = len * split_byte / 255;
    buf whole, parts;
    buf_init(&whole);
    buf_init(&parts);
    decode_result a = decode_split(in, len, len, &whole);
    decode_result b = decode_split(in, len, split, &parts);
    if (a.r != b.r) fail("split decoding consumed a different count or failed differently");
    if (a.done != b.done) fail("split decoding disagrees on done");
    if (whole.len != parts.len || (whole.len && memcmp(whole.data, parts.data, whole.len) != 0))
        fail("split decoding produced different output");
    if (whole.len > FUZZ_MAX_BODY) fail("decoded body over max_body");
    if (a.r >= 0 && (size_t)a.r > len) fail("consumed more than given");
    buf_free(&whole);
    buf_free(&parts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t split_byte = data[0];
    /* A private copy, so ASan catches any read past the end. */
    size_t len = size - 1;
    char *in = malloc(len ? len : 1);
    if (!in) return 0;
    memcpy(in, data + 1, len);

    http_request_head h;
    const char *err = NULL;
    int r = http_parse_head(in, len, FUZZ_MAX_HEAD, FUZZ_MAX_TARGET, &h, &err);
    const char *body = in;
    size_t body_len = len;
    if (r > 0) {
        check_head(in, len, r, &h);
        exercise_target(&h);
        body = in + r;
        body_len = len - (size_t)r;
    } else if (r < 0) {
        check_failure(r, err);
    } else if (len >= FUZZ_MAX_HEAD) {
        fail("INCOMPLETE at or over max_head_bytes");
    }
    check_chunked(body, body_len, split_byte);
    free(in);
    return 0;
}
