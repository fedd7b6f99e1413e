/* parser.h — incremental HTTP/1.1 request parser.
 *
 * Parses a request head (request line + header fields) out of a connection's
 * read buffer without copying: the parsed head points into the caller's
 * buffer, which must stay unchanged while the head is used. Bodies are framed
 * by Content-Length (the caller counts bytes) or chunked transfer coding
 * (decoded by http_chunked_decode). Also: request-target splitting, query
 * parameter lookup and percent-decoding.
 *
 * Strict where leniency is a request-smuggling risk (RFC 9112): both
 * Content-Length and Transfer-Encoding, duplicate differing Content-Length,
 * a Transfer-Encoding other than exactly "chunked" (or on HTTP/1.0, or
 * repeated, or empty), more than one Host, whitespace before the colon,
 * obs-fold, bare CR or bare LF line ends, NUL bytes — all are errors.
 *
 * Hand-written because it is the hot path; fuzzed by fuzz/fuzz_http.c.
 */
#ifndef WEFT_HTTP_PARSER_H
#define WEFT_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../util/buf.h"

#define HTTP_MAX_HEADERS 64

typedef enum http_method {
    HTTP_OTHER = 0, /* syntactically valid token we do not implement -> 405/501 */
    HTTP_GET,
    HTTP_HEAD,
    HTTP_POST,
    HTTP_PUT,
    HTTP_DELETE,
    HTTP_OPTIONS,
} http_method;

typedef struct http_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading/trailing OWS stripped */
    size_t value_len;
} http_header;

typedef struct http_request_head {
    http_method method;
    const char *method_str;
    size_t method_len;
    const char *target; /* raw request-target, e.g. "/v1/stream/a?offset=-1" */
    size_t target_len;
    int version_minor;  /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
    http_header headers[HTTP_MAX_HEADERS];
    size_t nheaders;
    /* Derived from the headers: */
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool keep_alive;        /* per version default and Connection header */
    bool expect_continue;   /* Expect: 100-continue */
    size_t head_len;        /* bytes of request line + headers incl. final CRLFCRLF */
} http_request_head;

/* Result codes of http_parse_head (negative). The status the server should
 * answer with is given by http_parse_status(). */
enum {
    HTTP_PARSE_INCOMPLETE = 0,
    HTTP_PARSE_BAD = -1,       /* 400 */
    HTTP_PARSE_TOO_LARGE = -2, /* 431: head exceeds max_head_bytes or too many headers */
    HTTP_PARSE_URI_TOO_LONG = -3, /* 414 */
    HTTP_PARSE_VERSION = -4,   /* 505 */
    HTTP_PARSE_NOT_IMPL = -5,  /* 501: unsupported Transfer-Encoding */
};

/* Parse a request head from buf[0..len). Returns head_len (> 0) when a full
 * head was parsed into *out, HTTP_PARSE_INCOMPLETE (0) when more bytes are
 * needed (and len < max_head_bytes), or a negative HTTP_PARSE_* code with
 * *err set to a short static message ("invalid header name", ...). Leading
 * empty lines (CRLF) before the request line are skipped, per RFC 9112. */
int http_parse_head(const char *buf, size_t len, size_t max_head_bytes, size_t max_target_len,
                    http_request_head *out, const char **err);

int http_parse_status(int code); /* maps HTTP_PARSE_* to 400/431/414/505/501 */

/* Point a parsed head at a copy of its bytes: from, the buffer it was parsed
 * from, and to, a copy of its first head_len bytes. Cheaper than parsing the
 * copy again. */
void http_head_move(http_request_head *h, const char *from, const char *to);

/* Case-insensitive header lookup; returns the first match's value or NULL. */
const char *http_head_get(const http_request_head *h, const char *name, size_t *value_len);

/* Chunked transfer-coding decoder; feed it bytes as they arrive. */
typedef struct http_chunked {
    int state;
    uint64_t remaining; /* bytes left in the current chunk */
    size_t line_len;    /* bytes of the current size/trailer line seen so far */
} http_chunked;

void http_chunked_init(http_chunked *c);

/* Decode from in[0..len), appending decoded body bytes to out. Returns the
 * number of input bytes consumed (may be < len only when *done becomes true,
 * i.e. the final 0-size chunk and the trailer section were consumed), or -1 on
 * a framing error with *err set, or -2 when the decoded body would exceed
 * max_body bytes (answer 413; out must start empty, since the limit is
 * checked against out->len). Chunk extensions are accepted and ignored;
 * trailer fields are accepted and discarded. */
ssize_t http_chunked_decode(http_chunked *c, const char *in, size_t len, buf *out,
                            uint64_t max_body, bool *done, const char **err);

/* Request-target handling. */
typedef struct http_target {
    const char *path; /* raw (still percent-encoded) path, no query */
    size_t path_len;
    const char *query; /* after '?', NULL if none */
    size_t query_len;
} http_target;

/* Split an origin-form target ("/path?query"). Returns false if it is not
 * origin-form (must start with '/'). */
bool http_target_split(const char *target, size_t len, http_target *out);

/* Percent-decode src into out (appending). Returns false on a malformed
 * escape or if the decoded bytes contain NUL. '+' is left as is. */
bool http_percent_decode(const char *src, size_t len, buf *out);
/* The same into dst, which has room for len bytes (decoding never grows
 * the input), setting *n to the decoded length. No allocation: the request
 * path is decoded this way on every request. */
bool http_percent_decode_to(const char *src, size_t len, char *dst, size_t *n);

/* Find query parameter `name` (exact, case-sensitive match of the raw key).
 * On success appends its percent-decoded value ('+' decoded as space) to
 * value and returns true. Returns false if absent or malformed. */
bool http_query_get(const char *query, size_t query_len, const char *name, buf *value);

#endif
