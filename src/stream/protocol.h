/* protocol.h — the Durable Streams protocol's value formats: offsets,
 * cursors, content types, TTL and RFC 3339 timestamps, producer numbers.
 * Pure functions, no state; unit-tested in tests/unit/test_protocol.c. The
 * layers above use them too (a session's log offsets are stream offsets).
 */
#ifndef WEFT_PROTOCOL_H
#define WEFT_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>


/* Offsets are "<16 digits>_<16 digits>": zero, then the logical byte
 * position in decimal. Fixed width, so lexicographic order is stream order;
 * never "-1" or "now". The shape is the reference server's, which the
 * public conformance suite builds by hand ("0000000000000000_0000000000000000"
 * is the start of every stream). */
#define OFFSET_LEN 33
void offset_format(uint64_t pos, char out[OFFSET_LEN + 1]);

typedef enum offset_kind { OFFSET_INVALID, OFFSET_START, OFFSET_NOW, OFFSET_AT } offset_kind;
offset_kind offset_parse(const char *s, size_t n, uint64_t *pos);

/* Media type equality ignoring parameters, case and surrounding spaces. */
bool media_type_eq(const char *a, size_t an, const char *b, size_t bn);
/* A media type token/token, syntactically. */
bool media_type_valid(const char *s, size_t n);

/* Stream-TTL: non-negative decimal, no sign, no leading zeros. */
bool ttl_parse(const char *s, size_t n, int64_t *secs);
/* RFC 3339 date-time to milliseconds since the epoch. */
bool rfc3339_parse(const char *s, size_t n, int64_t *ms);
/* Non-negative integer <= 2^53-1 (producer epoch / seq). */
bool u53_parse(const char *s, size_t n, uint64_t *v);
/* Header value "true", case-insensitive. */
bool value_is_true(const char *s, size_t n);

/* The cursor for a live response given the client's cursor (may be NULL). */
uint64_t cursor_next(const char *client, size_t n, int64_t now_ms);

#endif
