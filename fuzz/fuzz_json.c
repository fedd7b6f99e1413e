/* fuzz_json.c — libFuzzer target for util/json.c.
 *
 * Random bytes have no known answer, so this checks properties that must
 * hold for every input:
 *  - json_split_messages and json_validate agree on validity and on the
 *    error they report (validate calls a top-level [] valid);
 *  - a failed split leaves the output buffer as it was and counts nothing;
 *  - on success the stored form is what json.h promises: exactly `count`
 *    lines, each a valid message followed by ",\n", and "[" + stored bytes
 *    minus the final ",\n" + "]" is valid JSON;
 *  - the messages are the input with whitespace outside strings removed;
 *  - a smaller max_depth can only turn success into JSON_ERR_DEPTH, never
 *    change the output.
 * Failures abort() so libFuzzer records the input.
 */
#include "util/buf.h"
#include "util/json.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char prefix[] = "prefix";

/* The input with whitespace outside strings dropped. Only called on input
 * already known to be valid, so escapes are well formed. */
static void strip_ws(const uint8_t *in, size_t len, buf *out) {
    int in_string = 0;

    for (size_t i = 0; i < len; i++) {
        uint8_t c = in[i];
        if (in_string) {
            buf_append_byte(out, c);
            if (c == '\\') {
                buf_append_byte(out, in[++i]);
            } else if (c == '"') {
                in_string = 0;
            }
        } else if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            buf_append_byte(out, c);
            if (c == '"') in_string = 1;
        }
    }
}

/* Check the stored form of a successful split: msgs is the output past the
 * prefix. */
static void check_stored(const uint8_t *in, size_t len, int max_depth, const uint8_t *msgs,
                         size_t mlen, size_t count) {
    size_t lines = 0, start = 0;
    json_error err;

    if (count == 0 || mlen < 2 || msgs[mlen - 2] != ',' || msgs[mlen - 1] != '\n') abort();
    for (size_t i = 0; i < mlen; i++) {
        if (msgs[i] != '\n') continue;
        if (i < start + 2 || msgs[i - 1] != ',') abort();
        if (json_validate(msgs + start, i - 1 - start, max_depth, &err) != JSON_OK) abort();
        lines++;
        start = i + 1;
    }
    if (lines != count) abort();

    /* Reads are served as "[" + range minus final ",\n" + "]"; wrapping a
     * non-array value adds one level of nesting. */
    buf wrapped;
    buf_init(&wrapped);
    buf_append_byte(&wrapped, '[');
    buf_append(&wrapped, msgs, mlen - 2);
    buf_append_byte(&wrapped, ']');
    if (json_validate(wrapped.data, wrapped.len, max_depth + 1, &err) != JSON_OK) abort();
    buf_free(&wrapped);

    /* Rebuild the minified input from the messages: "m1,\nm2,\n" becomes
     * "[m1,m2]" for a top-level array and "m1" otherwise. */
    size_t first = 0;
    while (first < len && (in[first] == ' ' || in[first] == '\t' || in[first] == '\r' ||
                           in[first] == '\n'))
        first++;
    int top_array = first < len && in[first] == '[';
    if (!top_array && count != 1) abort();
    buf rebuilt, stripped;
    buf_init(&rebuilt);
    buf_init(&stripped);
    if (top_array) buf_append_byte(&rebuilt, '[');
    for (size_t i = 0; i < mlen - 2; i++)
        if (msgs[i] != '\n') buf_append_byte(&rebuilt, msgs[i]);
    if (top_array) buf_append_byte(&rebuilt, ']');
    strip_ws(in, len, &stripped);
    if (rebuilt.len != stripped.len || memcmp(rebuilt.data, stripped.data, rebuilt.len) != 0)
        abort();
    buf_free(&rebuilt);
    buf_free(&stripped);
}

/* Split and validate at one max_depth; returns the status and leaves the
 * messages (past the prefix) in *out. */
static json_status run(const uint8_t *data, size_t size, int max_depth, buf *out) {
    size_t count = 12345;
    json_error err = {NULL, 0}, verr = {NULL, 0};

    buf_init(out);
    buf_append(out, prefix, sizeof prefix - 1);
    json_status status = json_split_messages(data, size, max_depth, out, &count, &err);
    json_status vstatus = json_validate(data, size, max_depth, &verr);

    if (out->len < sizeof prefix - 1 || memcmp(out->data, prefix, sizeof prefix - 1) != 0) abort();
    if (status == JSON_ERR_EMPTY_ARRAY) {
        if (vstatus != JSON_OK) abort();
    } else if (status != vstatus) {
        abort();
    }
    if (status != JSON_OK) {
        if (out->len != sizeof prefix - 1 || count != 0) abort();
        if (err.msg == NULL || err.pos > size) abort();
        if (status != JSON_ERR_EMPTY_ARRAY && (verr.msg != err.msg || verr.pos != err.pos)) abort();
        return status;
    }
    check_stored(data, size, max_depth, out->data + sizeof prefix - 1,
                 out->len - (sizeof prefix - 1), count);
    return status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    buf deep, shallow;
    json_status deep_status = run(data, size, 64, &deep);
    json_status shallow_status = run(data, size, 2, &shallow);

    if (shallow_status != deep_status && shallow_status != JSON_ERR_DEPTH) abort();
    if (shallow_status == JSON_OK &&
        (deep.len != shallow.len || memcmp(deep.data, shallow.data, deep.len) != 0))
        abort();
    buf_free(&deep);
    buf_free(&shallow);
    return 0;
}
