/* test_json.c — unit tests for util/json.c.
 *
 * The stored form of a JSON stream is exactly what json_split_messages
 * appends, so most checks compare output bytes: flattening of one array
 * level, whitespace removal outside strings, strings copied verbatim. Error
 * checks cover every error class with its status, message and position, the
 * depth limit at its boundary, and that `out` is restored on failure.
 */
#include "check.h"
#include "util/buf.h"
#include "util/json.h"

#include <stdlib.h>

#define DEPTH 64 /* default max_depth for cases that are not about depth */

/* Report which input a failing helper was looking at: the CHECK lines point
 * into the helper, not at the case. */
static void note_input(int failed_before, const char *in, size_t len) {
    if (check_failed != failed_before) fprintf(stderr, "  input: \"%.*s\"\n", (int)len, in);
}

/* Expect `in` (len bytes) to split into exactly `want` with `want_count`
 * messages, and json_validate to agree. */
static void split_ok_n(const char *in, size_t len, int max_depth, const char *want,
                       size_t want_count) {
    int failed = check_failed;
    buf out;
    size_t count = 12345;
    json_error err = {NULL, 0};

    buf_init(&out);
    CHECK_EQ_INT(json_split_messages((const uint8_t *)in, len, max_depth, &out, &count, &err),
                 JSON_OK);
    CHECK_EQ_INT(count, want_count);
    CHECK_MEM_STR(out.data, out.len, want);
    CHECK_EQ_INT(json_validate((const uint8_t *)in, len, max_depth, NULL), JSON_OK);
    if (check_failed != failed && err.msg) fprintf(stderr, "  error: %s at %zu\n", err.msg, err.pos);
    note_input(failed, in, len);
    buf_free(&out);
}

static void split_ok(const char *in, const char *want, size_t want_count) {
    split_ok_n(in, strlen(in), DEPTH, want, want_count);
}

/* Expect failure with `want` status, message and position. `out` starts
 * with bytes already in it, which must survive untouched, and json_validate
 * must report the same error (or success, for an empty array). */
static void split_err_n(const char *in, size_t len, int max_depth, json_status want,
                        const char *want_msg, size_t want_pos) {
    int failed = check_failed;
    buf out;
    size_t count = 12345;
    json_error err = {NULL, 0}, verr = {NULL, 0};

    buf_init(&out);
    buf_append_str(&out, "kept");
    CHECK_EQ_INT(json_split_messages((const uint8_t *)in, len, max_depth, &out, &count, &err),
                 want);
    CHECK_EQ_INT(count, 0);
    CHECK_MEM_STR(out.data, out.len, "kept");
    CHECK(err.msg != NULL && strcmp(err.msg, want_msg) == 0);
    CHECK_EQ_INT(err.pos, want_pos);
    if (want == JSON_ERR_EMPTY_ARRAY) {
        /* Only splitting objects to an empty array: as a document it is valid. */
        CHECK_EQ_INT(json_validate((const uint8_t *)in, len, max_depth, &verr), JSON_OK);
    } else {
        CHECK_EQ_INT(json_validate((const uint8_t *)in, len, max_depth, &verr), want);
        CHECK(verr.msg == err.msg && verr.pos == err.pos);
    }
    if (check_failed != failed)
        fprintf(stderr, "  got error: %s at %zu\n", err.msg ? err.msg : "(none)", err.pos);
    note_input(failed, in, len);
    buf_free(&out);
}

static void split_err(const char *in, json_status want, const char *want_msg, size_t want_pos) {
    split_err_n(in, strlen(in), DEPTH, want, want_msg, want_pos);
}

static void syntax_err(const char *in, const char *want_msg, size_t want_pos) {
    split_err(in, JSON_ERR_SYNTAX, want_msg, want_pos);
}

/* `depth` nested containers around 1; objects where `objects` says so. */
static char *nested(int depth, int objects) {
    buf b;

    buf_init(&b);
    for (int i = 0; i < depth; i++) buf_append_str(&b, objects && i % 2 ? "{\"k\":" : "[");
    buf_append_byte(&b, '1');
    for (int i = depth - 1; i >= 0; i--) buf_append_byte(&b, objects && i % 2 ? '}' : ']');
    buf_append_byte(&b, 0);
    return (char *)b.data;
}

static void test_flattening(void) {
    split_ok("[1,2,3]", "1,\n2,\n3,\n", 3);
    split_ok("[[1,2],[3,4]]", "[1,2],\n[3,4],\n", 2);
    split_ok("[[[1,2,3]]]", "[[1,2,3]],\n", 1);
    split_ok("[[]]", "[],\n", 1);
    split_ok("[{}]", "{},\n", 1);
    split_ok("[{},[],\"\"]", "{},\n[],\n\"\",\n", 3);
    split_ok("[{\"a\":1},{\"b\":[2,3]}]", "{\"a\":1},\n{\"b\":[2,3]},\n", 2);
    split_ok("[1,\"two\",{\"three\":3},[4],true,false,null]",
             "1,\n\"two\",\n{\"three\":3},\n[4],\ntrue,\nfalse,\nnull,\n", 7);
    split_ok("[[[]],[[1],[2]]]", "[[]],\n[[1],[2]],\n", 2);
    /* Anything but an array is one message, arrays inside it included. */
    split_ok("{\"a\":[1,2]}", "{\"a\":[1,2]},\n", 1);
    split_ok("{}", "{},\n", 1);
    split_ok("42", "42,\n", 1);
    split_ok("\"str\"", "\"str\",\n", 1);
    split_ok("true", "true,\n", 1);
    split_ok("false", "false,\n", 1);
    split_ok("null", "null,\n", 1);
}

static void test_whitespace(void) {
    split_ok("  [ 1 , 2 ]  ", "1,\n2,\n", 2);
    split_ok("[ [ 1 , 2 ] , [ ] ]", "[1,2],\n[],\n", 2);
    split_ok("\r\n{ \"a\" : [ 1 , { \"b\" : null } ] }\n", "{\"a\":[1,{\"b\":null}]},\n", 1);
    split_ok("[\n  {\n    \"id\": 1,\n    \"tags\": [ \"x\" ,\t\"y\" ]\n  },\n  {\n    \"id\": 2\n  }\n]\n",
             "{\"id\":1,\"tags\":[\"x\",\"y\"]},\n{\"id\":2},\n", 2);
    split_ok(" \"x\" ", "\"x\",\n", 1);
    split_ok("\t\t7\r\n", "7,\n", 1);
    split_ok("{ }", "{},\n", 1);
    split_ok("[ [\n] ]", "[],\n", 1);
    split_ok("[[ [ 1 ] ]]", "[[1]],\n", 1);
}

static void test_strings_verbatim(void) {
    split_ok("[\"a, b\", \"[c]\", \"{d}\"]", "\"a, b\",\n\"[c]\",\n\"{d}\",\n", 3);
    split_ok("{ \"k e y\" : \"v\\\"a l\\\\\\\"ue\" }", "{\"k e y\":\"v\\\"a l\\\\\\\"ue\"},\n", 1);
    split_ok("\"  spaced  \"", "\"  spaced  \",\n", 1);
    split_ok("[\"a\\nb\", \"]\"]", "\"a\\nb\",\n\"]\",\n", 2);
    split_ok("[\"\\\\\", \"\\\\\\\"\"]", "\"\\\\\",\n\"\\\\\\\"\",\n", 2);
    split_ok("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\uABCD\\uabcd\"",
             "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\uABCD\\uabcd\",\n", 1);
    /* Lone surrogate escapes are accepted, like JSON.parse does. */
    split_ok("[\"\\ud800\", \"\\uDFFF\"]", "\"\\ud800\",\n\"\\uDFFF\",\n", 2);
    split_ok("{\"\":\"\"}", "{\"\":\"\"},\n", 1);
    split_ok("\"\x7f\"", "\"\x7f\",\n", 1);
}

static void test_unicode(void) {
    split_ok("[\"caf\xc3\xa9\", \"\xe2\x82\xac\", \"\xf0\x9f\x98\x80\"]",
             "\"caf\xc3\xa9\",\n\"\xe2\x82\xac\",\n\"\xf0\x9f\x98\x80\",\n", 3);
    /* Boundaries of each sequence length and around the surrogate gap. */
    split_ok("\"\xc2\x80\xdf\xbf\"", "\"\xc2\x80\xdf\xbf\",\n", 1);             /* U+0080, U+07FF */
    split_ok("\"\xe0\xa0\x80\xef\xbf\xbf\"", "\"\xe0\xa0\x80\xef\xbf\xbf\",\n", 1); /* U+0800, U+FFFF */
    split_ok("\"\xed\x9f\xbf\xee\x80\x80\"", "\"\xed\x9f\xbf\xee\x80\x80\",\n", 1); /* U+D7FF, U+E000 */
    split_ok("\"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"", "\"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\",\n",
             1); /* U+10000, U+10FFFF */
    split_ok("{\"\xc3\xa9\":\"\xe6\x97\xa5\xe6\x9c\xac\"}",
             "{\"\xc3\xa9\":\"\xe6\x97\xa5\xe6\x9c\xac\"},\n", 1);
}

static void test_numbers(void) {
    split_ok("[0,-0,1.5,-1.5e10,1E+2,1e-2,0.0,0e0,-0.25E-3]",
             "0,\n-0,\n1.5,\n-1.5e10,\n1E+2,\n1e-2,\n0.0,\n0e0,\n-0.25E-3,\n", 9);
    split_ok("123456789012345678901234567890", "123456789012345678901234567890,\n", 1);
    split_ok("[10,909]", "10,\n909,\n", 2);

    syntax_err("01", "leading zero in number", 1);
    syntax_err("-01", "leading zero in number", 2);
    syntax_err("[00]", "leading zero in number", 2);
    syntax_err("1.", "unexpected end of input", 2);
    syntax_err("[1.]", "invalid number", 3);
    syntax_err("1.e5", "invalid number", 2);
    syntax_err(".5", "unexpected character", 0);
    syntax_err("+1", "unexpected character", 0);
    syntax_err("-", "unexpected end of input", 1);
    syntax_err("-a", "invalid number", 1);
    syntax_err("1e", "unexpected end of input", 2);
    syntax_err("1e+", "unexpected end of input", 3);
    syntax_err("[1e+]", "invalid number", 4);
    syntax_err("0x10", "trailing characters", 1);
    syntax_err("1.5.5", "trailing characters", 3);
    syntax_err("Infinity", "unexpected character", 0);
    syntax_err("NaN", "unexpected character", 0);
    syntax_err("- 1", "invalid number", 1);
}

static void test_literals(void) {
    syntax_err("tru", "unexpected end of input", 3);
    syntax_err("[nul", "unexpected end of input", 4);
    syntax_err("trUe", "invalid literal", 0);
    syntax_err("[fals]", "invalid literal", 1);
    syntax_err("nulll", "trailing characters", 4);
    syntax_err("True", "unexpected character", 0);
    /* A length that stops inside the buffer must be honoured. */
    split_err_n("true", 3, DEPTH, JSON_ERR_SYNTAX, "unexpected end of input", 3);
    split_ok_n("123456", 3, DEPTH, "123,\n", 1);
}

static void test_syntax_errors(void) {
    syntax_err("", "unexpected end of input", 0);
    syntax_err("   \n", "unexpected end of input", 4);
    syntax_err("[", "unexpected end of input", 1);
    syntax_err("{", "unexpected end of input", 1);
    syntax_err("[1", "unexpected end of input", 2);
    syntax_err("[1,", "unexpected end of input", 3);
    syntax_err("{\"a\"", "unexpected end of input", 4);
    syntax_err("{\"a\":", "unexpected end of input", 5);
    syntax_err("[[1]", "unexpected end of input", 4);
    syntax_err("[1,]", "unexpected character", 3);
    syntax_err("[,1]", "unexpected character", 1);
    syntax_err("[1 2]", "expected ',' or ']'", 3);
    syntax_err("[1}", "expected ',' or ']'", 2);
    syntax_err("{\"a\":1]", "expected ',' or '}'", 6);
    syntax_err("{\"a\"}", "expected ':'", 4);
    syntax_err("{\"a\" 1}", "expected ':'", 5);
    syntax_err("{\"a\":}", "unexpected character", 5);
    syntax_err("{a:1}", "expected string key", 1);
    syntax_err("{1:1}", "expected string key", 1);
    syntax_err("{\"a\":1,}", "expected string key", 7);
    syntax_err("]", "unexpected character", 0);
    syntax_err("'a'", "unexpected character", 0);
    syntax_err("1 2", "trailing characters", 2);
    syntax_err("[1][2]", "trailing characters", 3);
    syntax_err("{}x", "trailing characters", 2);
    syntax_err("[] x", "trailing characters", 3);
    /* Only space, tab, CR and LF are whitespace. */
    syntax_err("\f1", "unexpected character", 0);
    syntax_err("[1,\v2]", "unexpected character", 3);
    syntax_err("\xc2\xa0" "1", "unexpected character", 0);
    syntax_err("[\xc3\xa9]", "unexpected character", 1);
    split_err_n("1\0", 2, DEPTH, JSON_ERR_SYNTAX, "trailing characters", 1);
}

static void test_string_errors(void) {
    syntax_err("\"abc", "unterminated string", 4);
    syntax_err("[\"a\\", "unterminated string", 4);
    syntax_err("\"\\u00", "unterminated string", 5);
    syntax_err("\"\\a\"", "invalid escape", 1);
    syntax_err("\"\\x41\"", "invalid escape", 1);
    syntax_err("\"\\U0041\"", "invalid escape", 1);
    syntax_err("\"\\u12\"", "invalid escape", 1);
    syntax_err("\"ok\\u12G4\"", "invalid escape", 3);
    syntax_err("\"\\'\"", "invalid escape", 1);
    /* Raw control characters, including NUL, must be escaped. */
    syntax_err("\"a\tb\"", "control character in string", 2);
    syntax_err("[\"a\nb\"]", "control character in string", 3);
    syntax_err("\"\x1f\"", "control character in string", 1);
    split_err_n("\"a\0b\"", 5, DEPTH, JSON_ERR_SYNTAX, "control character in string", 2);
    syntax_err("{\"k\tey\":1}", "control character in string", 3);
}

static void test_utf8_errors(void) {
    syntax_err("\"\x80\"", "invalid utf-8", 1);                 /* lone continuation */
    syntax_err("\"a\xbf\"", "invalid utf-8", 2);
    syntax_err("\"\xc0\x80\"", "invalid utf-8", 1);             /* overlong NUL */
    syntax_err("\"\xc1\xbf\"", "invalid utf-8", 1);             /* overlong U+007F */
    syntax_err("\"\xe0\x80\x80\"", "invalid utf-8", 1);         /* overlong 3-byte */
    syntax_err("\"\xe0\x9f\xbf\"", "invalid utf-8", 1);         /* overlong U+07FF */
    syntax_err("\"\xed\xa0\x80\"", "invalid utf-8", 1);         /* U+D800 */
    syntax_err("\"\xed\xbf\xbf\"", "invalid utf-8", 1);         /* U+DFFF */
    syntax_err("\"\xf0\x80\x80\x80\"", "invalid utf-8", 1);     /* overlong 4-byte */
    syntax_err("\"\xf0\x8f\xbf\xbf\"", "invalid utf-8", 1);     /* overlong U+FFFF */
    syntax_err("\"\xf4\x90\x80\x80\"", "invalid utf-8", 1);     /* U+110000 */
    syntax_err("\"\xf5\x80\x80\x80\"", "invalid utf-8", 1);
    syntax_err("\"\xfe\"", "invalid utf-8", 1);
    syntax_err("\"\xff\"", "invalid utf-8", 1);
    syntax_err("\"\xc3\"", "invalid utf-8", 1);                 /* truncated by the quote */
    syntax_err("\"x\xe2\x82\"", "invalid utf-8", 2);
    syntax_err("\"\xf0\x9f\x98", "invalid utf-8", 1);           /* truncated by end of input */
    syntax_err("\"\xc3\x28\"", "invalid utf-8", 1);             /* bad continuation */
    syntax_err("\"\xe2\x28\xa1\"", "invalid utf-8", 1);
    syntax_err("\"\xf0\x9f\x98\x28\"", "invalid utf-8", 1);
    syntax_err("{\"\xed\xa0\x80\":1}", "invalid utf-8", 2);     /* in a key too */
}

static void test_depth(void) {
    char *s;

    /* A scalar has depth 0, so max_depth 0 allows only scalars. */
    split_ok_n("5", 1, 0, "5,\n", 1);
    split_err_n("[1]", 3, 0, JSON_ERR_DEPTH, "nesting too deep", 0);
    split_err_n("{}", 2, 0, JSON_ERR_DEPTH, "nesting too deep", 0);
    split_err_n("[]", 2, 0, JSON_ERR_DEPTH, "nesting too deep", 0);
    split_err_n("[1]", 3, -1, JSON_ERR_DEPTH, "nesting too deep", 0);
    split_ok_n("[1]", 3, 1, "1,\n", 1);
    split_ok_n("{\"a\":1}", 7, 1, "{\"a\":1},\n", 1);
    split_err_n("[[1]]", 5, 1, JSON_ERR_DEPTH, "nesting too deep", 1);
    split_err_n("{\"a\":{}}", 8, 1, JSON_ERR_DEPTH, "nesting too deep", 5);
    split_ok_n("[[1]]", 5, 2, "[1],\n", 1);
    split_ok_n("[[[1]]]", 7, 3, "[[1]],\n", 1);
    split_err_n("[[[[1]]]]", 9, 3, JSON_ERR_DEPTH, "nesting too deep", 3);
    /* The limit is hit before the input turns out to be malformed. */
    split_err_n("[[[[1]]", 7, 2, JSON_ERR_DEPTH, "nesting too deep", 2);
    /* Depth is measured on the whole input, even though the messages of a
     * top-level array are one level shallower. */
    split_ok_n("[{\"a\":[]},[2]]", 14, 3, "{\"a\":[]},\n[2],\n", 2);
    split_err_n("[{\"a\":[[]]},[2]]", 16, 3, JSON_ERR_DEPTH, "nesting too deep", 7);

    s = nested(128, 0);
    CHECK_EQ_INT(json_validate((const uint8_t *)s, strlen(s), 128, NULL), JSON_OK);
    CHECK_EQ_INT(json_validate((const uint8_t *)s, strlen(s), 127, NULL), JSON_ERR_DEPTH);
    free(s);

    /* Deeper than the parser's inline stack, with objects and arrays
     * alternating so a wrong bit anywhere breaks the closing order. */
    s = nested(5000, 1);
    CHECK_EQ_INT(json_validate((const uint8_t *)s, strlen(s), 5000, NULL), JSON_OK);
    CHECK_EQ_INT(json_validate((const uint8_t *)s, strlen(s), 4999, NULL), JSON_ERR_DEPTH);
    buf out;
    size_t count = 0;
    buf_init(&out);
    CHECK_EQ_INT(json_split_messages((const uint8_t *)s, strlen(s), 5000, &out, &count, NULL),
                 JSON_OK);
    CHECK_EQ_INT(count, 1);
    /* Outer '[' and its ']' are dropped, ",\n" added. */
    CHECK(out.len == strlen(s) && memcmp(out.data, s + 1, out.len - 2) == 0 &&
          memcmp(out.data + out.len - 2, ",\n", 2) == 0);
    buf_free(&out);
    /* Swap one closing bracket deep inside for the other kind. */
    size_t len = strlen(s);
    s[len - 1500] = s[len - 1500] == ']' ? '}' : ']';
    CHECK_EQ_INT(json_validate((const uint8_t *)s, len, 5000, NULL), JSON_ERR_SYNTAX);
    free(s);
}

static void test_empty_array(void) {
    split_err("[]", JSON_ERR_EMPTY_ARRAY, "empty array", 0);
    split_err("[ ]", JSON_ERR_EMPTY_ARRAY, "empty array", 0);
    split_err(" \r\n[\n\t] \n", JSON_ERR_EMPTY_ARRAY, "empty array", 3);

    /* Validation alone has no messages to count: [] is just valid. */
    json_error err = {NULL, 0};
    CHECK_EQ_INT(json_validate((const uint8_t *)"[ ]", 3, DEPTH, &err), JSON_OK);
    CHECK(err.msg == NULL);
}

static void test_out_handling(void) {
    buf out;
    size_t count = 0;
    json_error err;

    /* Output is appended after what the buffer already holds. */
    buf_init(&out);
    buf_append_str(&out, "abc");
    CHECK_EQ_INT(json_split_messages((const uint8_t *)"[1, 2]", 6, DEPTH, &out, &count, &err),
                 JSON_OK);
    CHECK_MEM_STR(out.data, out.len, "abc1,\n2,\n");
    CHECK_EQ_INT(json_split_messages((const uint8_t *)"{\"x\" : 3}", 9, DEPTH, &out, &count, NULL),
                 JSON_OK);
    CHECK_EQ_INT(count, 1);
    CHECK_MEM_STR(out.data, out.len, "abc1,\n2,\n{\"x\":3},\n");

    /* An error after several messages were written rolls all of them back. */
    CHECK_EQ_INT(json_split_messages((const uint8_t *)"[1, [2, 3], 4, x]", 17, DEPTH, &out,
                                     &count, &err),
                 JSON_ERR_SYNTAX);
    CHECK_EQ_INT(count, 0);
    CHECK_MEM_STR(out.data, out.len, "abc1,\n2,\n{\"x\":3},\n");
    CHECK_EQ_INT(err.pos, 15);

    /* An empty array leaves the buffer alone as well. */
    CHECK_EQ_INT(json_split_messages((const uint8_t *)"[]", 2, DEPTH, &out, &count, NULL),
                 JSON_ERR_EMPTY_ARRAY);
    CHECK_MEM_STR(out.data, out.len, "abc1,\n2,\n{\"x\":3},\n");
    buf_free(&out);

    /* Many messages: output grows well past any initial capacity. */
    buf in, want;
    buf_init(&in);
    buf_init(&want);
    buf_append_str(&in, "[ ");
    for (int i = 0; i < 1000; i++) {
        buf_printf(&in, "%s{ \"n\" : %d }", i ? " , " : "", i);
        buf_printf(&want, "{\"n\":%d},\n", i);
    }
    buf_append_str(&in, " ]");
    buf_append_byte(&want, 0);
    split_ok_n((const char *)in.data, in.len, DEPTH, (const char *)want.data, 1000);
    buf_free(&in);
    buf_free(&want);

    /* A zero-length input may come with a NULL pointer. */
    CHECK_EQ_INT(json_validate(NULL, 0, DEPTH, &err), JSON_ERR_SYNTAX);
    CHECK_EQ_INT(err.pos, 0);
}

/* json_append_string: what it writes is a JSON string that reads back as
 * the input (checked with the validator), escaping only what must be. */
static void test_append_string(void) {
    buf b;
    buf_init(&b);
    json_append_string(&b, "a\"b\\c\n\x01/é");
    const char want[] = "\"a\\\"b\\\\c\\u000a\\u0001/é\"";
    CHECK(b.len == sizeof want - 1 && memcmp(b.data, want, b.len) == 0);
    CHECK(json_validate(b.data, b.len, 8, NULL) == JSON_OK);
    buf_reset(&b);
    json_append_string(&b, "");
    CHECK(b.len == 2 && memcmp(b.data, "\"\"", 2) == 0);
    buf_free(&b);
}

int main(void) {
    test_append_string();
    test_flattening();
    test_whitespace();
    test_strings_verbatim();
    test_unicode();
    test_numbers();
    test_literals();
    test_syntax_errors();
    test_string_errors();
    test_utf8_errors();
    test_depth();
    test_empty_array();
    test_out_handling();
    return check_summary("test_json");
}
