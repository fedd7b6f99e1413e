/* test_http_parser.c — unit tests for src/http/parser.c.
 *
 * Covers the request-head parser (syntax, limits, derived framing fields and
 * the request-smuggling cases it must refuse), the chunked decoder (whole
 * and byte at a time), and the request-target, percent-decoding and query
 * helpers.
 */
#include "http/parser.h"
#include "util/buf.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"

#define MAX_HEAD 8192
#define MAX_TARGET 1024

static int parse_n(const char *s, size_t len, http_request_head *h, const char **err) {
    *err = NULL;
    return http_parse_head(s, len, MAX_HEAD, MAX_TARGET, h, err);
}

static int parse(const char *s, http_request_head *h, const char **err) {
    return parse_n(s, strlen(s), h, err);
}

/* Parse a whole head that is expected to be valid; returns its result. */
static int parse_ok(const char *s, http_request_head *h) {
    const char *err;
    return parse(s, h, &err);
}

/* Same as parse, for callers that only want the result code. */
static int parse_code(const char *s) {
    http_request_head h;
    const char *err;
    return parse(s, &h, &err);
}

static int parse_code_n(const char *s, size_t len) {
    http_request_head h;
    const char *err;
    return parse_n(s, len, &h, &err);
}

static void test_simple_get(void) {
    http_request_head h;
    const char *err = "unset";
    const char *req = "GET /v1/stream/a?offset=-1 HTTP/1.1\r\nHost: example.com\r\n\r\n";
    int r = parse(req, &h, &err);
    CHECK_EQ_INT(r, strlen(req));
    CHECK_EQ_INT(h.head_len, strlen(req));
    CHECK(err == NULL);
    CHECK_EQ_INT(h.method, HTTP_GET);
    CHECK_MEM_STR(h.method_str, h.method_len, "GET");
    CHECK_MEM_STR(h.target, h.target_len, "/v1/stream/a?offset=-1");
    CHECK_EQ_INT(h.version_minor, 1);
    CHECK_EQ_INT(h.nheaders, 1);
    CHECK_MEM_STR(h.headers[0].name, h.headers[0].name_len, "Host");
    CHECK_MEM_STR(h.headers[0].value, h.headers[0].value_len, "example.com");
    CHECK_EQ_INT(h.content_length, -1);
    CHECK(!h.chunked);
    CHECK(h.keep_alive);
    CHECK(!h.expect_continue);
    /* Zero-copy: the parsed fields point into the caller's buffer. */
    CHECK(h.method_str == req);
    CHECK(h.target == req + 4);
}

static void test_http10_without_host(void) {
    http_request_head h;
    const char *req = "GET / HTTP/1.0\r\n\r\n";
    CHECK_EQ_INT(parse_ok(req, &h), strlen(req));
    CHECK_EQ_INT(h.version_minor, 0);
    CHECK_EQ_INT(h.nheaders, 0);
    CHECK(!h.keep_alive);
}

static void test_methods(void) {
    static const struct {
        const char *token;
        http_method method;
    } cases[] = {
        {"GET", HTTP_GET},         {"HEAD", HTTP_HEAD},     {"POST", HTTP_POST},
        {"PUT", HTTP_PUT},         {"DELETE", HTTP_DELETE}, {"OPTIONS", HTTP_OPTIONS},
        {"PATCH", HTTP_OTHER},     {"BREW", HTTP_OTHER},    {"get", HTTP_OTHER},
        {"Post", HTTP_OTHER},      {"GETS", HTTP_OTHER},    {"M-SEARCH", HTTP_OTHER},
        {"X!#$%&'*+.^_`|~", HTTP_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char req[128];
        snprintf(req, sizeof req, "%s / HTTP/1.1\r\nHost: h\r\n\r\n", cases[i].token);
        http_request_head h;
        int r = parse_ok(req, &h);
        CHECK_EQ_INT(r, strlen(req));
        CHECK_EQ_INT(h.method, cases[i].method);
        CHECK_MEM_STR(h.method_str, h.method_len, cases[i].token);
    }
}

/* Method bytes are exactly the RFC 9110 tchars. */
static void test_method_charset(void) {
    const char *specials = "!#$%&'*+-.^_`|~";
    int mismatches = 0;
    for (int c = 0; c < 256; c++) {
        /* A space would end the method early, leaving "B" as the target. */
        if (c == ' ') continue;
        char req[] = "AxB / HTTP/1.1\r\nHost: h\r\n\r\n";
        req[1] = (char)c;
        bool want = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c != 0 && strchr(specials, c) != NULL);
        int r = parse_code_n(req, sizeof req - 1);
        if (want != (r > 0)) mismatches++;
    }
    CHECK_EQ_INT(mismatches, 0);
}

static void test_headers_ows(void) {
    http_request_head h;
    const char *req = "POST /x HTTP/1.1\r\n"
                      "Host:h\r\n"
                      "X-Spaced:   spaced  value \t \r\n"
                      "X-Tab:\tv\r\n"
                      "X-Empty:\r\n"
                      "X-Blank:   \t\r\n"
                      "X-Obs: caf\xc3\xa9\r\n"
                      "X-Colon: a:b: c\r\n"
                      "\r\n";
    CHECK_EQ_INT(parse_ok(req, &h), strlen(req));
    CHECK_EQ_INT(h.nheaders, 7);
    CHECK_MEM_STR(h.headers[0].value, h.headers[0].value_len, "h");
    CHECK_MEM_STR(h.headers[1].name, h.headers[1].name_len, "X-Spaced");
    CHECK_MEM_STR(h.headers[1].value, h.headers[1].value_len, "spaced  value");
    CHECK_MEM_STR(h.headers[2].value, h.headers[2].value_len, "v");
    CHECK_EQ_INT(h.headers[3].value_len, 0);
    CHECK_EQ_INT(h.headers[4].value_len, 0);
    CHECK_MEM_STR(h.headers[5].value, h.headers[5].value_len, "caf\xc3\xa9");
    CHECK_MEM_STR(h.headers[6].value, h.headers[6].value_len, "a:b: c");

    size_t n = 99;
    const char *v = http_head_get(&h, "x-spaced", &n);
    CHECK(v != NULL);
    CHECK_MEM_STR(v, n, "spaced  value");
    v = http_head_get(&h, "X-TAB", &n);
    CHECK_MEM_STR(v, n, "v");
    CHECK(http_head_get(&h, "X-Missing", &n) == NULL);
    CHECK(http_head_get(&h, "X-Spaced2", &n) == NULL);
    CHECK(http_head_get(&h, "X-Space", &n) == NULL);
    v = http_head_get(&h, "x-empty", &n);
    CHECK(v != NULL && n == 0);
}

static void test_head_get_first_match(void) {
    http_request_head h;
    CHECK(parse_ok("GET / HTTP/1.1\r\nHost: h\r\nX-A: one\r\nx-a: two\r\n\r\n", &h) > 0);
    size_t n;
    const char *v = http_head_get(&h, "X-A", &n);
    CHECK_MEM_STR(v, n, "one");
}

/* Case folds letters only: symbols that differ by the case bit are
 * different names. */
static void test_head_get_case(void) {
    http_request_head h;
    CHECK(parse_ok("GET / HTTP/1.1\r\nHost: h\r\nA~B: tilde\r\nContent-LENGTH: 0\r\n"
                   "x_y: under\r\n\r\n", &h) > 0);
    size_t n;
    const char *v = http_head_get(&h, "a~b", &n);
    CHECK_MEM_STR(v, n, "tilde");
    CHECK(http_head_get(&h, "a^b", &n) == NULL);
    v = http_head_get(&h, "content-length", &n);
    CHECK_MEM_STR(v, n, "0");
    v = http_head_get(&h, "CONTENT-length", &n);
    CHECK_MEM_STR(v, n, "0");
    CHECK(http_head_get(&h, "content-lengtH ", &n) == NULL);
    v = http_head_get(&h, "X_Y", &n);
    CHECK_MEM_STR(v, n, "under");
    CHECK(http_head_get(&h, "x\x7fy", &n) == NULL);
    /* The framing headers fold the same way. */
    CHECK(parse_ok("POST / HTTP/1.1\r\nhOST: h\r\ncONTENT-lENGTH: 5\r\n\r\n", &h) > 0);
    CHECK_EQ_INT(h.content_length, 5);
}

/* A head moved to a copy points into the copy only, with the same fields. */
static void test_head_move(void) {
    const char *req = "PUT /a/b?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nX-Y:  z \r\n\r\nabc";
    char *orig = strdup(req);
    http_request_head h;
    int len = parse_ok(orig, &h);
    CHECK_EQ_INT(len, strlen(req) - 3);
    char *copy = malloc((size_t)len);
    memcpy(copy, orig, (size_t)len);
    http_head_move(&h, orig, copy);
    memset(orig, '#', strlen(req));
    free(orig);
    CHECK(h.method_str == copy);
    CHECK_MEM_STR(h.method_str, h.method_len, "PUT");
    CHECK(h.target == copy + 4);
    CHECK_MEM_STR(h.target, h.target_len, "/a/b?x=1");
    CHECK_EQ_INT(h.nheaders, 3);
    for (size_t i = 0; i < h.nheaders; i++) {
        CHECK(h.headers[i].name >= copy && h.headers[i].name < copy + len);
        CHECK(h.headers[i].value >= copy && h.headers[i].value < copy + len);
    }
    size_t n;
    const char *v = http_head_get(&h, "x-y", &n);
    CHECK_MEM_STR(v, n, "z");
    CHECK_MEM_STR(h.headers[0].value, h.headers[0].value_len, "h");
    CHECK_EQ_INT(h.content_length, 3);
    free(copy);
}

static void test_pipelined(void) {
    const char *two = "GET /first HTTP/1.1\r\nHost: h\r\n\r\n"
                      "POST /second HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                      "DELETE /third HTTP/1.1\r\nHost: h\r\n\r\n";
    size_t len = strlen(two);
    http_request_head h;
    const char *err;

    int r1 = parse_n(two, len, &h, &err);
    CHECK_EQ_INT(r1, strlen("GET /first HTTP/1.1\r\nHost: h\r\n\r\n"));
    CHECK_EQ_INT(h.method, HTTP_GET);
    CHECK_MEM_STR(h.target, h.target_len, "/first");

    int r2 = parse_n(two + r1, len - (size_t)r1, &h, &err);
    CHECK(r2 > 0);
    CHECK_EQ_INT(h.method, HTTP_POST);
    CHECK_MEM_STR(h.target, h.target_len, "/second");
    CHECK_EQ_INT(h.content_length, 3);

    size_t off = (size_t)r1 + (size_t)r2;
    CHECK_MEM_STR(two + off, 3, "abc");
    off += 3;
    int r3 = parse_n(two + off, len - off, &h, &err);
    CHECK_EQ_INT(off + (size_t)r3, len);
    CHECK_EQ_INT(h.method, HTTP_DELETE);
    CHECK_MEM_STR(h.target, h.target_len, "/third");
}

static void test_leading_empty_lines(void) {
    http_request_head h;
    const char *req = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    CHECK_EQ_INT(parse_ok(req, &h), strlen(req));
    CHECK_MEM_STR(h.method_str, h.method_len, "GET");
    CHECK_EQ_INT(parse_code("\r\n"), HTTP_PARSE_INCOMPLETE);
    CHECK_EQ_INT(parse_code("\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), HTTP_PARSE_BAD);
}

static void test_incremental(void) {
    const char *req = "PUT /v1/stream/x HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
                      "Content-Length: 10\r\n\r\n";
    size_t len = strlen(req);
    int not_incomplete = 0;
    for (size_t i = 0; i < len; i++)
        if (parse_code_n(req, i) != HTTP_PARSE_INCOMPLETE) not_incomplete++;
    CHECK_EQ_INT(not_incomplete, 0);
    http_request_head h;
    const char *err;
    CHECK_EQ_INT(parse_n(req, len, &h, &err), len);
    CHECK_EQ_INT(h.content_length, 10);

    /* Errors show up as soon as the offending byte arrives. */
    const char *bad = "GET / HTTP/1.1\r\nBad Name: x";
    CHECK_EQ_INT(parse_code(bad), HTTP_PARSE_BAD);
    CHECK_EQ_INT(parse_code("GET /\x01"), HTTP_PARSE_BAD);
    CHECK_EQ_INT(parse_code("GET / HTTP/1.1\r\nHost: h\r"), HTTP_PARSE_INCOMPLETE);
}

/* Each error class, its status code, and its message. */
static void test_errors(void) {
    static const struct {
        const char *req;
        int code;
    } cases[] = {
        {"GARBAGE\r\n\r\n", HTTP_PARSE_BAD},
        {" GET / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_PARSE_BAD},
        {"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_PARSE_BAD},
        {" / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_PARSE_BAD},
        {"GET  HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", HTTP_PARSE_BAD},
        {"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_PARSE_BAD},
        {"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_PARSE_BAD},
        {"GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_PARSE_BAD},
        {"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_PARSE_BAD},
        {"GET /\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTPS/1.1\r\nHost: h\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / http/1.1\r\nHost: h\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/11\r\nHost: h\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.10\r\nHost: h\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1\rHost: h\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1\nHost: h\n\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1\r\nHost: h\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1\r\nHost: h\r\n\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1\r\nHost: h\r\n\rX", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1\r\nHost : h\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n folded\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1\r\n\tX-A: a\r\nHost: h\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1\r\nHost: h\r\nBroken\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1\r\nHost: h\r\n: novalue\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01" "b\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7f" "b\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.2\r\nHost: h\r\n\r\n", HTTP_PARSE_VERSION},
        {"GET / HTTP/2.0\r\nHost: h\r\n\r\n", HTTP_PARSE_VERSION},
        {"GET / HTTP/0.9\r\n\r\n", HTTP_PARSE_VERSION},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", HTTP_PARSE_NOT_IMPL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_request_head h;
        const char *err = NULL;
        int r = parse(cases[i].req, &h, &err);
        if (r != cases[i].code) fprintf(stderr, "errors case %zu: got %d\n", i, r);
        CHECK_EQ_INT(r, cases[i].code);
        CHECK(err != NULL && err[0] != '\0');
    }

    /* NUL bytes, which strlen would hide. */
    static const char nul_target[] = "GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n";
    static const char nul_value[] = "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n";
    static const char nul_name[] = "GET / HTTP/1.1\r\nHost: h\r\nX\0A: ab\r\n\r\n";
    CHECK_EQ_INT(parse_code_n(nul_target, sizeof nul_target - 1), HTTP_PARSE_BAD);
    CHECK_EQ_INT(parse_code_n(nul_value, sizeof nul_value - 1), HTTP_PARSE_BAD);
    CHECK_EQ_INT(parse_code_n(nul_name, sizeof nul_name - 1), HTTP_PARSE_BAD);

    http_request_head h;
    const char *err;
    CHECK_EQ_INT(parse("GET / HTTP/1.1\r\nX-A: b\r\n\r\n", &h, &err), HTTP_PARSE_BAD);
    CHECK(err != NULL && strcmp(err, "missing host header") == 0);
    CHECK_EQ_INT(parse("GET / HTTP/1.1\r\nHost : h\r\n\r\n", &h, &err), HTTP_PARSE_BAD);
    CHECK(err != NULL && strcmp(err, "invalid header name") == 0);
    CHECK_EQ_INT(parse("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", &h, &err),
                 HTTP_PARSE_BAD);
    CHECK(err != NULL && strcmp(err, "obsolete line folding") == 0);
}

static void test_status_codes(void) {
    CHECK_EQ_INT(http_parse_status(HTTP_PARSE_BAD), 400);
    CHECK_EQ_INT(http_parse_status(HTTP_PARSE_TOO_LARGE), 431);
    CHECK_EQ_INT(http_parse_status(HTTP_PARSE_URI_TOO_LONG), 414);
    CHECK_EQ_INT(http_parse_status(HTTP_PARSE_VERSION), 505);
    CHECK_EQ_INT(http_parse_status(HTTP_PARSE_NOT_IMPL), 501);
}

static void test_target_limit(void) {
    http_request_head h;
    const char *err;
    const char *ok = "GET /0123456789abcde HTTP/1.1\r\nHost: h\r\n\r\n"; /* 16-byte target */
    const char *longer = "GET /0123456789abcdef HTTP/1.1\r\nHost: h\r\n\r\n";
    CHECK_EQ_INT(http_parse_head(ok, strlen(ok), MAX_HEAD, 16, &h, &err), strlen(ok));
    CHECK_EQ_INT(h.target_len, 16);
    CHECK_EQ_INT(http_parse_head(longer, strlen(longer), MAX_HEAD, 16, &h, &err),
                 HTTP_PARSE_URI_TOO_LONG);
    CHECK_EQ_INT(http_parse_status(HTTP_PARSE_URI_TOO_LONG), 414);
    /* Refused before the request line is even complete. */
    CHECK_EQ_INT(http_parse_head(longer, 22, MAX_HEAD, 16, &h, &err), HTTP_PARSE_URI_TOO_LONG);
}

/* The target and header values are skipped 16 bytes at a time: a byte
 * anywhere in them, before, inside or after a 16-byte run, is judged the
 * same, and the target's length limit is exact at every length. */
static void test_every_position(void) {
    char req[256], target[64], value[64];
    http_request_head h;
    const char *err;
    bool target_ok = true, value_ok = true, limit_ok = true;
    for (size_t len = 1; len <= 48; len++) {
        for (size_t i = 0; i < len; i++) {
            static const unsigned char bad_target[] = {0x7f, 0x80, 0x01, 0xff, '\t'};
            for (size_t k = 0; k < sizeof bad_target; k++) {
                memset(target, 'a', len);
                target[0] = '/';
                target[i ? i : 1] = (char)bad_target[k];
                if (len == 1) continue;
                int n = snprintf(req, sizeof req, "GET %.*s HTTP/1.1\r\nHost: h\r\n\r\n", (int)len, target);
                if (parse_n(req, (size_t)n, &h, &err) != HTTP_PARSE_BAD) target_ok = false;
            }
            static const unsigned char bad_value[] = {0x7f, 0x00, 0x01, 0x1f, '\n'};
            static const unsigned char good_value[] = {'\t', 0x80, 0xff, 0x20, '~'};
            /* Built with memcpy, as the value may hold a NUL; between two
             * letters, as whitespace at the ends is not the value's. */
            static const char pre[] = "GET / HTTP/1.1\r\nHost: h\r\nX-V: a", post[] = "z\r\n\r\n";
            size_t n = sizeof pre - 1 + len + sizeof post - 1;
            memcpy(req, pre, sizeof pre - 1);
            memcpy(req + sizeof pre - 1 + len, post, sizeof post - 1);
            for (size_t k = 0; k < sizeof bad_value; k++) {
                memset(value, 'v', len);
                value[i] = (char)bad_value[k];
                memcpy(req + sizeof pre - 1, value, len);
                if (parse_n(req, n, &h, &err) >= 0) value_ok = false;
                value[i] = (char)good_value[k];
                memcpy(req + sizeof pre - 1, value, len);
                size_t vl;
                const char *v;
                if (parse_n(req, n, &h, &err) != (int)n || !(v = http_head_get(&h, "x-v", &vl)) ||
                    vl != len + 2 || memcmp(v + 1, value, len) != 0)
                    value_ok = false;
            }
        }
        /* A target of len bytes under limits len - 1, len and len + 1. */
        memset(target, 'b', len);
        target[0] = '/';
        int n = snprintf(req, sizeof req, "GET %.*s HTTP/1.1\r\nHost: h\r\n\r\n", (int)len, target);
        for (size_t lim = len > 1 ? len - 1 : len; lim <= len + 1; lim++) {
            int want = lim < len ? HTTP_PARSE_URI_TOO_LONG : n;
            if (http_parse_head(req, (size_t)n, MAX_HEAD, lim, &h, &err) != want) limit_ok = false;
            if (want == n && h.target_len != len) limit_ok = false;
        }
    }
    CHECK(target_ok);
    CHECK(value_ok);
    CHECK(limit_ok);
}

static void test_head_limit(void) {
    http_request_head h;
    const char *err;
    const char *req = "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: aaaaaaaaaa\r\n\r\n";
    size_t len = strlen(req);
    CHECK_EQ_INT(http_parse_head(req, len, len, MAX_TARGET, &h, &err), len);
    CHECK_EQ_INT(http_parse_head(req, len, len - 1, MAX_TARGET, &h, &err), HTTP_PARSE_TOO_LARGE);
    /* Incomplete, but already at the limit. */
    CHECK_EQ_INT(http_parse_head(req, 20, 20, MAX_TARGET, &h, &err), HTTP_PARSE_TOO_LARGE);
    CHECK(err != NULL);
    CHECK_EQ_INT(http_parse_head(req, 19, 20, MAX_TARGET, &h, &err), HTTP_PARSE_INCOMPLETE);
    /* Bytes past the limit are not looked at. */
    CHECK_EQ_INT(http_parse_head(req, len, 10, MAX_TARGET, &h, &err), HTTP_PARSE_TOO_LARGE);
}

static void test_header_count(void) {
    buf b;
    buf_init(&b);
    buf_append_str(&b, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 1; i < HTTP_MAX_HEADERS; i++) buf_printf(&b, "X-%d: v\r\n", i);
    size_t before_end = b.len;
    buf_append_str(&b, "\r\n");

    http_request_head h;
    const char *err;
    int r = parse_n((const char *)b.data, b.len, &h, &err);
    CHECK_EQ_INT(r, b.len);
    CHECK_EQ_INT(h.nheaders, HTTP_MAX_HEADERS);

    b.len = before_end;
    buf_append_str(&b, "X-Over: v\r\n\r\n");
    r = parse_n((const char *)b.data, b.len, &h, &err);
    CHECK_EQ_INT(r, HTTP_PARSE_TOO_LARGE);
    CHECK_EQ_INT(http_parse_status(r), 431);
    buf_free(&b);
}

static void test_content_length(void) {
    http_request_head h;
    CHECK(parse_ok("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n", &h) > 0);
    CHECK_EQ_INT(h.content_length, 42);
    CHECK(parse_ok("POST / HTTP/1.1\r\nHost: h\r\ncontent-length:0\r\n\r\n", &h) > 0);
    CHECK_EQ_INT(h.content_length, 0);
    CHECK(parse_ok("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775807\r\n\r\n",
                   &h) > 0);
    CHECK_EQ_INT(h.content_length, INT64_MAX);
    CHECK(parse_ok("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                   &h) > 0);
    CHECK_EQ_INT(h.content_length, 5);

    static const char *bad[] = {
        "Content-Length: +5",   "Content-Length: -1",  "Content-Length: 0x10",
        "Content-Length: 5 5",  "Content-Length: 5,5", "Content-Length:",
        "Content-Length: 1.0",  "Content-Length: 9223372036854775808",
        "Content-Length: 99999999999999999999999",
        "Content-Length: 5\r\nContent-Length: 6",
        "Content-Length: 5\r\nContent-Length: 05x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char req[256];
        snprintf(req, sizeof req, "POST / HTTP/1.1\r\nHost: h\r\n%s\r\n\r\n", bad[i]);
        CHECK_EQ_INT(parse_code(req), HTTP_PARSE_BAD);
    }
}

static void test_transfer_encoding(void) {
    http_request_head h;
    CHECK(parse_ok("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", &h) > 0);
    CHECK(h.chunked);
    CHECK_EQ_INT(h.content_length, -1);
    CHECK(parse_ok("POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding:  ChUnKeD \r\n\r\n", &h) > 0);
    CHECK(h.chunked);

    /* Smuggling: framing that two parsers could read differently. */
    CHECK_EQ_INT(parse_code("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n"),
                 HTTP_PARSE_BAD);
    CHECK_EQ_INT(parse_code("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                            "Content-Length: 3\r\n\r\n"),
                 HTTP_PARSE_BAD);
    CHECK_EQ_INT(parse_code("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n"
                            "Content-Length: 3\r\n\r\n"),
                 HTTP_PARSE_BAD);
    CHECK_EQ_INT(parse_code("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                            "Content-Length: 4\r\n\r\n"),
                 HTTP_PARSE_BAD);
    CHECK_EQ_INT(parse_code("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n"),
                 HTTP_PARSE_BAD);
    CHECK_EQ_INT(parse_code("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n"),
                 HTTP_PARSE_BAD);
    CHECK_EQ_INT(parse_code("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
                 HTTP_PARSE_BAD);

    int r = parse_code("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n");
    CHECK_EQ_INT(r, HTTP_PARSE_NOT_IMPL);
    CHECK_EQ_INT(http_parse_status(r), 501);
    CHECK_EQ_INT(parse_code("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
                 HTTP_PARSE_NOT_IMPL);
    CHECK_EQ_INT(parse_code("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
                 HTTP_PARSE_NOT_IMPL);
    CHECK_EQ_INT(parse_code("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n"),
                 HTTP_PARSE_NOT_IMPL);
    CHECK_EQ_INT(parse_code("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n"),
                 HTTP_PARSE_NOT_IMPL);
}

static bool keep_alive_of(const char *req) {
    http_request_head h;
    int r = parse_ok(req, &h);
    return r > 0 && h.keep_alive;
}

static void test_keep_alive(void) {
    CHECK(keep_alive_of("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    CHECK(!keep_alive_of("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
    CHECK(!keep_alive_of("GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, CLOSE\r\n\r\n"));
    CHECK(!keep_alive_of("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nConnection: close\r\n\r\n"));
    CHECK(keep_alive_of("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n"));
    CHECK(keep_alive_of("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n"));
    CHECK(!keep_alive_of("GET / HTTP/1.0\r\n\r\n"));
    CHECK(keep_alive_of("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    CHECK(keep_alive_of("GET / HTTP/1.0\r\nConnection: foo ,  Keep-Alive ,\r\n\r\n"));
    CHECK(!keep_alive_of("GET / HTTP/1.0\r\nConnection: close\r\n\r\n"));
    CHECK(!keep_alive_of("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"));
    CHECK(!keep_alive_of("GET / HTTP/1.0\r\nConnection: keep-alives\r\n\r\n"));
}

static void test_expect(void) {
    http_request_head h;
    CHECK(parse_ok("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
                   &h) > 0);
    CHECK(h.expect_continue);
    CHECK(parse_ok("PUT / HTTP/1.1\r\nHost: h\r\nexpect: 100-Continue\r\n\r\n", &h) > 0);
    CHECK(h.expect_continue);
    CHECK(parse_ok("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n", &h) > 0);
    CHECK(!h.expect_continue);
    CHECK(parse_ok("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", &h) > 0);
    CHECK(!h.expect_continue);
}

/* ---- chunked ---- */

#define BIG_LIMIT (1u << 20)

/* Decode all of s at once into out. */
static ssize_t decode_once(const char *s, size_t len, buf *out, uint64_t max_body, bool *done,
                           const char **err) {
    http_chunked c;
    http_chunked_init(&c);
    *err = NULL;
    return http_chunked_decode(&c, s, len, out, max_body, done, err);
}

/* Decode s one byte per call. Returns total bytes consumed, or the first
 * negative result. */
static ssize_t decode_bytewise(const char *s, size_t len, buf *out, uint64_t max_body,
                               bool *done) {
    http_chunked c;
    http_chunked_init(&c);
    size_t total = 0;
    *done = false;
    for (size_t i = 0; i < len && !*done; i++) {
        const char *err = NULL;
        ssize_t n = http_chunked_decode(&c, s + i, 1, out, max_body, done, &err);
        if (n < 0) return n;
        if (n != 1) return -100; /* one byte offered, one must be consumed */
        total += (size_t)n;
    }
    return (ssize_t)total;
}

static void test_chunked_basic(void) {
    const char *body = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    buf out;
    buf_init(&out);
    bool done = false;
    const char *err;
    ssize_t n = decode_once(body, strlen(body), &out, BIG_LIMIT, &done, &err);
    CHECK_EQ_INT(n, strlen(body));
    CHECK(done);
    CHECK_MEM_STR(out.data, out.len, "hello world");

    /* Bytes after the body (the next pipelined request) are left alone. */
    const char *more = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    buf_reset(&out);
    n = decode_once(more, strlen(more), &out, BIG_LIMIT, &done, &err);
    CHECK_EQ_INT(n, strlen("3\r\nabc\r\n0\r\n\r\n"));
    CHECK(done);
    CHECK_MEM_STR(out.data, out.len, "abc");

    /* Upper/lower-case hex, leading zeros, sizes spanning calls. */
    http_chunked c;
    http_chunked_init(&c);
    buf_reset(&out);
    const char *part1 = "0A\r\n0123";
    const char *part2 = "456789\r\n";
    const char *part3 = "00b\r\nabcdefghijk\r\n0\r\n\r\n";
    n = http_chunked_decode(&c, part1, strlen(part1), &out, BIG_LIMIT, &done, &err);
    CHECK_EQ_INT(n, strlen(part1));
    CHECK(!done);
    n = http_chunked_decode(&c, part2, strlen(part2), &out, BIG_LIMIT, &done, &err);
    CHECK_EQ_INT(n, strlen(part2));
    CHECK(!done);
    n = http_chunked_decode(&c, part3, strlen(part3), &out, BIG_LIMIT, &done, &err);
    CHECK_EQ_INT(n, strlen(part3));
    CHECK(done);
    CHECK_MEM_STR(out.data, out.len, "0123456789abcdefghijk");
    /* Once done, further calls consume nothing. */
    n = http_chunked_decode(&c, "5\r\n", 3, &out, BIG_LIMIT, &done, &err);
    CHECK_EQ_INT(n, 0);
    CHECK(done);
    n = http_chunked_decode(&c, "", 0, &out, BIG_LIMIT, &done, &err);
    CHECK_EQ_INT(n, 0);
    buf_free(&out);
}

static void test_chunked_bytewise(void) {
    static const char *bodies[] = {
        "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        "1;ext=val\r\nx\r\n2 ; a ; b=\"q d\"\r\nyz\r\n0;last\r\n\r\n",
        "10\r\n0123456789ABCDEF\r\n0\r\nX-Sum: abc\r\nOther:\r\n\r\n",
        "0\r\n\r\n",
        "3\r\na\r\n\r\n0\r\nT: 1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        size_t len = strlen(bodies[i]);
        buf once, each;
        buf_init(&once);
        buf_init(&each);
        bool done_once = false, done_each = false;
        const char *err;
        ssize_t n1 = decode_once(bodies[i], len, &once, BIG_LIMIT, &done_once, &err);
        ssize_t n2 = decode_bytewise(bodies[i], len, &each, BIG_LIMIT, &done_each);
        CHECK_EQ_INT(n1, len);
        CHECK_EQ_INT(n2, len);
        CHECK(done_once && done_each);
        CHECK(once.len == each.len && (once.len == 0 || memcmp(once.data, each.data, once.len) == 0));
        buf_free(&once);
        buf_free(&each);
    }

    /* Byte by byte: done only at the very last byte. */
    const char *body = "2\r\nab\r\n0\r\n\r\n";
    http_chunked c;
    http_chunked_init(&c);
    buf out;
    buf_init(&out);
    int early_done = 0;
    bool done = false;
    for (size_t i = 0; i < strlen(body); i++) {
        const char *err;
        http_chunked_decode(&c, body + i, 1, &out, BIG_LIMIT, &done, &err);
        if (done && i + 1 < strlen(body)) early_done++;
    }
    CHECK_EQ_INT(early_done, 0);
    CHECK(done);
    CHECK_MEM_STR(out.data, out.len, "ab");
    buf_free(&out);
}

static void test_chunked_trailers(void) {
    const char *body = "4\r\nwxyz\r\n0\r\nX-Checksum: abc\r\nX-Empty:\r\nX-Tab:\tv\r\n\r\n";
    buf out;
    buf_init(&out);
    bool done;
    const char *err;
    ssize_t n = decode_once(body, strlen(body), &out, BIG_LIMIT, &done, &err);
    CHECK_EQ_INT(n, strlen(body));
    CHECK(done);
    CHECK_MEM_STR(out.data, out.len, "wxyz");

    static const char *bad[] = {
        "0\r\n folded: x\r\n\r\n",
        "0\r\nBad Name: x\r\n\r\n",
        "0\r\nNoColon\r\n\r\n",
        "0\r\nX: a\x01z\r\n\r\n",
        "0\r\nX: a\n\r\n",
        "0\r\n\rX",
        "0\r\nX: a\r\n\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        buf_reset(&out);
        n = decode_once(bad[i], strlen(bad[i]), &out, BIG_LIMIT, &done, &err);
        CHECK_EQ_INT(n, -1);
    }
    buf_free(&out);
}

static void test_chunked_errors(void) {
    static const char *bad[] = {
        "zz\r\nabc\r\n0\r\n\r\n",                 /* invalid hex */
        "\r\nabc\r\n0\r\n\r\n",                   /* empty size */
        "0x5\r\nhello\r\n0\r\n\r\n",              /* hex prefix */
        "-5\r\nhello\r\n0\r\n\r\n",               /* sign */
        " 5\r\nhello\r\n0\r\n\r\n",               /* leading space */
        "5 \r\nhello\r\n0\r\n\r\n",               /* whitespace without extension */
        "5\nhello\r\n0\r\n\r\n",                  /* bare LF */
        "5\rhello\r\n0\r\n\r\n",                  /* bare CR */
        "3\r\nabcdef\r\n0\r\n\r\n",               /* data longer than declared */
        "5\r\nhelloXY0\r\n\r\n",                  /* no CRLF after data */
        "5\r\nhello\n0\r\n\r\n",                  /* LF only after data */
        "5\r\nhello\r0\r\n\r\n",                  /* CR only after data */
        "5\r\nhelloX\n0\r\n\r\n",                 /* LF without its CR after data */
        "00000000000000001\r\nx\r\n0\r\n\r\n",    /* 17 hex digits */
        "10000000000000000\r\n",                  /* overflows 64 bits */
        "5;a\x01\r\nhello\r\n0\r\n\r\n",          /* control char in extension */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = strlen(bad[i]);
        buf out;
        buf_init(&out);
        bool done = false;
        const char *err = NULL;
        ssize_t n = decode_once(bad[i], len, &out, BIG_LIMIT, &done, &err);
        if (n != -1) fprintf(stderr, "chunked error case %zu: got %zd\n", i, n);
        CHECK_EQ_INT(n, -1);
        CHECK(err != NULL);
        CHECK(!done);
        /* The same error arrives when fed byte by byte. */
        buf_reset(&out);
        CHECK_EQ_INT(decode_bytewise(bad[i], len, &out, BIG_LIMIT, &done), -1);
        buf_free(&out);
    }

    static const char nul_ext[] = "5;a\0\r\nhello\r\n0\r\n\r\n";
    buf out;
    buf_init(&out);
    bool done;
    const char *err;
    CHECK_EQ_INT(decode_once(nul_ext, sizeof nul_ext - 1, &out, BIG_LIMIT, &done, &err), -1);
    static const char nul_data[] = "3\r\na\0b\r\n0\r\n\r\n";
    buf_reset(&out);
    CHECK_EQ_INT(decode_once(nul_data, sizeof nul_data - 1, &out, BIG_LIMIT, &done, &err),
                 sizeof nul_data - 1);
    CHECK(out.len == 3 && out.data[1] == 0);

    /* 16 digits is the most accepted. */
    buf_reset(&out);
    const char *sixteen = "0000000000000003\r\nabc\r\n0\r\n\r\n";
    CHECK_EQ_INT(decode_once(sixteen, strlen(sixteen), &out, BIG_LIMIT, &done, &err),
                 strlen(sixteen));
    CHECK_MEM_STR(out.data, out.len, "abc");

    /* A size line longer than the bound is refused, even if well formed. */
    buf line;
    buf_init(&line);
    buf_append_str(&line, "1;");
    for (int i = 0; i < 5000; i++) buf_append_byte(&line, 'e');
    buf_append_str(&line, "\r\nx\r\n0\r\n\r\n");
    buf_reset(&out);
    CHECK_EQ_INT(decode_once((const char *)line.data, line.len, &out, BIG_LIMIT, &done, &err), -1);
    buf_reset(&line);
    buf_append_str(&line, "0\r\nX: ");
    for (int i = 0; i < 5000; i++) buf_append_byte(&line, 'v');
    buf_append_str(&line, "\r\n\r\n");
    buf_reset(&out);
    CHECK_EQ_INT(decode_once((const char *)line.data, line.len, &out, BIG_LIMIT, &done, &err), -1);
    /* Many short trailer lines are fine: only each line is bounded. */
    buf_reset(&line);
    buf_append_str(&line, "0\r\n");
    for (int i = 0; i < 1000; i++) buf_append_str(&line, "X: v\r\n");
    buf_append_str(&line, "\r\n");
    buf_reset(&out);
    CHECK_EQ_INT(decode_once((const char *)line.data, line.len, &out, BIG_LIMIT, &done, &err),
                 line.len);
    buf_free(&line);

    /* An error sticks: the decoder does not resynchronise. */
    http_chunked c;
    http_chunked_init(&c);
    buf_reset(&out);
    CHECK_EQ_INT(http_chunked_decode(&c, "g\r\n", 3, &out, BIG_LIMIT, &done, &err), -1);
    CHECK_EQ_INT(http_chunked_decode(&c, "0\r\n\r\n", 5, &out, BIG_LIMIT, &done, &err), -1);
    buf_free(&out);
}

static void test_chunked_max_body(void) {
    buf out;
    buf_init(&out);
    bool done;
    const char *err;
    const char *exact = "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
    CHECK_EQ_INT(decode_once(exact, strlen(exact), &out, 10, &done, &err), strlen(exact));
    CHECK(done);

    const char *over = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    buf_reset(&out);
    CHECK_EQ_INT(decode_once(over, strlen(over), &out, 10, &done, &err), -2);
    CHECK(!done);
    buf_reset(&out);
    CHECK_EQ_INT(decode_bytewise(over, strlen(over), &out, 10, &done), -2);
    /* Refused at the size line, before any of the chunk is buffered. */
    CHECK_EQ_INT(out.len, 5);

    const char *huge = "ffffffffffffffff\r\n";
    buf_reset(&out);
    CHECK_EQ_INT(decode_once(huge, strlen(huge), &out, BIG_LIMIT, &done, &err), -2);
    buf_reset(&out);
    CHECK_EQ_INT(decode_once(huge, strlen(huge), &out, UINT64_MAX, &done, &err), strlen(huge));
    buf_free(&out);
}

/* ---- targets, percent-decoding, queries ---- */

static void test_target_split(void) {
    http_target t;
    const char *a = "/v1/stream/a?offset=-1&live=sse";
    CHECK(http_target_split(a, strlen(a), &t));
    CHECK_MEM_STR(t.path, t.path_len, "/v1/stream/a");
    CHECK(t.query != NULL);
    CHECK_MEM_STR(t.query, t.query_len, "offset=-1&live=sse");

    CHECK(http_target_split("/plain", 6, &t));
    CHECK_MEM_STR(t.path, t.path_len, "/plain");
    CHECK(t.query == NULL);

    CHECK(http_target_split("/?", 2, &t));
    CHECK_MEM_STR(t.path, t.path_len, "/");
    CHECK(t.query != NULL && t.query_len == 0);

    CHECK(http_target_split("/a?b?c", 6, &t));
    CHECK_MEM_STR(t.query, t.query_len, "b?c");

    CHECK(!http_target_split("*", 1, &t));
    CHECK(!http_target_split("http://x/a", 10, &t));
    CHECK(!http_target_split("", 0, &t));
}

/* Percent-decode s and compare with want; want NULL means it must fail. */
static bool pdecode_is(const char *s, const char *want) {
    buf out;
    buf_init(&out);
    buf_append_str(&out, "pre:");
    bool ok = http_percent_decode(s, strlen(s), &out);
    bool match;
    if (want) {
        match = ok && out.len == 4 + strlen(want) && memcmp(out.data + 4, want, strlen(want)) == 0;
    } else {
        /* A failed decode leaves the buffer as it was. */
        match = !ok && out.len == 4 && memcmp(out.data, "pre:", 4) == 0;
    }
    buf_free(&out);
    /* The same into memory of exactly the input's length (ASan: decoding
     * must never write more). */
    size_t n = strlen(s), got = 12345;
    char *dst = malloc(n ? n : 1);
    ok = http_percent_decode_to(s, n, dst, &got);
    if (want)
        match = match && ok && got == strlen(want) && memcmp(dst, want, got) == 0;
    else
        match = match && !ok && got == 12345;
    free(dst);
    return match;
}

static void test_percent_decode(void) {
    CHECK(pdecode_is("plain", "plain"));
    CHECK(pdecode_is("", ""));
    CHECK(pdecode_is("a%20b", "a b"));
    CHECK(pdecode_is("%41%42c", "ABc"));
    CHECK(pdecode_is("%2f%2F", "//"));
    CHECK(pdecode_is("a+b", "a+b"));
    CHECK(pdecode_is("%2B", "+"));
    CHECK(pdecode_is("%e2%82%ac", "\xe2\x82\xac"));
    CHECK(pdecode_is("%25zz", "%zz"));
    CHECK(pdecode_is("%zz", NULL));
    CHECK(pdecode_is("a%2", NULL));
    CHECK(pdecode_is("a%", NULL));
    CHECK(pdecode_is("%g0", NULL));
    CHECK(pdecode_is("%00", NULL));
    CHECK(pdecode_is("a%00b", NULL));
}

/* Look up name in query and compare with want; want NULL means not found. */
static bool query_is(const char *query, const char *name, const char *want) {
    buf v;
    buf_init(&v);
    bool ok = http_query_get(query, query ? strlen(query) : 0, name, &v);
    bool match;
    if (want)
        match = ok && v.len == strlen(want) && (v.len == 0 || memcmp(v.data, want, v.len) == 0);
    else
        match = !ok;
    buf_free(&v);
    return match;
}

static void test_query_get(void) {
    const char *q = "offset=-1&live=sse&name=a%20b+c&empty=&flag&plus=%2B&x=1=2&&last=end";
    CHECK(query_is(q, "offset", "-1"));
    CHECK(query_is(q, "live", "sse"));
    CHECK(query_is(q, "name", "a b c"));
    CHECK(query_is(q, "empty", ""));
    CHECK(query_is(q, "flag", ""));
    CHECK(query_is(q, "plus", "+"));
    CHECK(query_is(q, "x", "1=2"));
    CHECK(query_is(q, "last", "end"));
    CHECK(query_is(q, "missing", NULL));
    CHECK(query_is(q, "Offset", NULL));
    CHECK(query_is(q, "offse", NULL));
    CHECK(query_is(q, "fla", NULL));
    CHECK(query_is("a=1&a=2", "a", "1"));
    CHECK(query_is("bad=%zz&ok=1", "bad", NULL));
    CHECK(query_is("bad=%zz&ok=1", "ok", "1"));
    CHECK(query_is("nul=%00", "nul", NULL));
    /* Keys are matched raw, not decoded. */
    CHECK(query_is("a%62=1", "ab", NULL));
    CHECK(query_is("a%62=1", "a%62", "1"));
    CHECK(query_is(NULL, "a", NULL));
    CHECK(query_is("", "a", NULL));

    /* The value is appended to what the buffer already holds. */
    buf v;
    buf_init(&v);
    buf_append_str(&v, "x");
    CHECK(http_query_get("k=v+w", 5, "k", &v));
    CHECK_MEM_STR(v.data, v.len, "xv w");
    buf_free(&v);
}

int main(void) {
    test_simple_get();
    test_http10_without_host();
    test_methods();
    test_method_charset();
    test_headers_ows();
    test_head_get_first_match();
    test_head_get_case();
    test_every_position();
    test_head_move();
    test_pipelined();
    test_leading_empty_lines();
    test_incremental();
    test_errors();
    test_status_codes();
    test_target_limit();
    test_head_limit();
    test_header_count();
    test_content_length();
    test_transfer_encoding();
    test_keep_alive();
    test_expect();
    test_chunked_basic();
    test_chunked_bytewise();
    test_chunked_trailers();
    test_chunked_errors();
    test_chunked_max_body();
    test_target_split();
    test_percent_decode();
    test_query_get();
    return check_summary("test_http_parser");
}
