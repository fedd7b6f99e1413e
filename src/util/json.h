/* json.h — JSON validation and message splitting for JSON-mode streams,
 * and writing a JSON string.
 *
 * A stream created with Content-Type application/json stores one record per
 * message. An append body is one JSON value; if it is an array, exactly one
 * level is flattened so each element becomes its own message.
 *
 * Stored ("wire") form of a message: the message minified (all whitespace
 * outside strings removed) followed by the two bytes ",\n". A read of a
 * byte range of whole messages is then served as "[" + range minus its final
 * ",\n" + "]", which is valid JSON, without re-encoding. Because minified JSON
 * never contains a raw newline, '\n' in the stored bytes marks exactly the
 * message boundaries.
 *
 * The validator is a hand-written hot-path parser (RFC 8259, strict):
 * UTF-8 is validated (no overlongs, no surrogates, max U+10FFFF), control
 * characters in strings are rejected, numbers follow the RFC grammar, nesting
 * is limited by max_depth. It has a libFuzzer target in fuzz/fuzz_json.c.
 */
#ifndef WEFT_JSON_H
#define WEFT_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef enum json_status {
    JSON_OK = 0,
    JSON_ERR_SYNTAX,      /* not one valid JSON value */
    JSON_ERR_DEPTH,       /* nesting deeper than max_depth */
    JSON_ERR_EMPTY_ARRAY, /* top-level value is [] (zero messages) */
} json_status;

typedef struct json_error {
    const char *msg; /* static, short, lower-case: e.g. "unexpected character" */
    size_t pos;      /* byte offset in the input where the error was found */
} json_error;

/* Validate `in` as exactly one JSON value (surrounding whitespace allowed) and
 * append its messages in stored form to `out`, setting *count to the number
 * of messages appended. A top-level empty array yields JSON_ERR_EMPTY_ARRAY
 * with *count = 0 (the caller decides: PUT accepts it, POST rejects it).
 * On any error out->len and the bytes before it are restored (the buffer
 * may have grown) and `err` (may be NULL) describes the problem. */
json_status json_split_messages(const uint8_t *in, size_t len, int max_depth,
                                buf *out, size_t *count, json_error *err);

/* Append s (NUL-terminated UTF-8) to out as a JSON string: quoted, with
 * '"', '\\' and control characters escaped. */
void json_append_string(buf *out, const char *s);

/* Validate `in` as exactly one JSON value, without producing output. */
json_status json_validate(const uint8_t *in, size_t len, int max_depth, json_error *err);

#endif
