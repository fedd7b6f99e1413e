/* parser.c — HTTP/1.1 request head parser, chunked decoder and request-target
 * helpers (see parser.h).
 *
 * http_parse_head keeps no state between calls: every call scans the buffer
 * from the start, in one pass, and either reaches the blank line ending the
 * head or runs out of bytes (INCOMPLETE). Heads are small and usually arrive
 * in one read, so re-scanning is cheaper than carrying a resumable state
 * machine. Syntax errors are reported as soon as the offending byte is seen,
 * even before the head is complete, so garbage is rejected early.
 *
 * Line endings: only CRLF is accepted, in the head and in chunked framing.
 * RFC 9112 allows a recipient to take a bare LF as a line end, but an
 * intermediary in front of us that does not would see different message
 * boundaries than we do, which is how request smuggling works; every real
 * client sends CRLF. A bare LF and a bare CR are both errors.
 *
 * The chunked decoder, by contrast, is a byte-driven state machine: it always
 * consumes everything it is given (until the end of the body), so the caller
 * never has to keep partial size lines around. It only counts the length of
 * a size or trailer line, so its memory is bounded however the bytes arrive.
 */
#include "parser.h"

#include <limits.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* RFC 9110 tchar: the characters of a token (methods, field names). */
static const uint8_t tchar[256] = {
    /* 0x00-0x1f: control characters */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    /* SP !  "  #  $  %  &  '  (  )  *  +  ,  -  .  / */
    0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0,
    /* 0  1  2  3  4  5  6  7  8  9  :  ;  <  =  >  ? */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
    /* @  A  B  C  D  E  F  G  H  I  J  K  L  M  N  O */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* P  Q  R  S  T  U  V  W  X  Y  Z  [  \  ]  ^  _ */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1,
    /* `  a  b  c  d  e  f  g  h  i  j  k  l  m  n  o */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* p  q  r  s  t  u  v  w  x  y  z  {  |  }  ~  DEL */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0,
    /* 0x80-0xff: not tokens (zero-initialised) */
};

/* A byte allowed inside a field value: VCHAR, SP, HTAB or obs-text. Every
 * other control character, NUL and DEL included, is rejected. */
static bool is_field_byte(unsigned char c) {
    return (c >= 0x20 && c != 0x7f) || c == '\t';
}

/* The request target and the header values are most of a head's bytes.
 * These skip the bytes that need no attention 16 at a time (SSE2 is part
 * of x86-64); the byte loops after them stay the one definition of what
 * ends a run or is refused, and handle the rest. */

enum run_kind { RUN_TARGET, RUN_VALUE };

/* Skip the bytes of a run, stopping before `limit`: RUN_TARGET skips
 * 0x21..0x7e, RUN_VALUE field-value bytes (is_field_byte). */
static const unsigned char *skip_run(const unsigned char *p, const unsigned char *limit,
                                     enum run_kind kind) {
#ifdef __SSE2__
    const __m128i lo = _mm_set1_epi8(kind == RUN_TARGET ? 0x21 : 0x20);
    const __m128i hi = _mm_set1_epi8(0x7e), tab = _mm_set1_epi8('\t'), del = _mm_set1_epi8(0x7f);
    while (limit - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        __m128i ok = _mm_cmpeq_epi8(_mm_max_epu8(v, lo), v);
        if (kind == RUN_TARGET)
            ok = _mm_and_si128(ok, _mm_cmpeq_epi8(_mm_min_epu8(v, hi), v));
        else
            ok = _mm_andnot_si128(_mm_cmpeq_epi8(v, del), _mm_or_si128(ok, _mm_cmpeq_epi8(v, tab)));
        unsigned bad = ~(unsigned)_mm_movemask_epi8(ok) & 0xffff;
        if (bad) return p + __builtin_ctz(bad);
        p += 16;
    }
#else
    (void)limit;
    (void)kind;
#endif
    return p;
}

static int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Case-insensitive comparison of n bytes. Our own rather than strncasecmp
 * so the locale never gets a say. Header names are compared several times
 * per request and mostly agree byte for byte, so only bytes that differ
 * are folded: they match if they are the same letter. */
static bool same_nocase(const char *p, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)p[i], b = (unsigned char)s[i];
        if (a != b && ((a | 0x20) != (b | 0x20) || (unsigned)((a | 0x20) - 'a') > 'z' - 'a'))
            return false;
    }
    return true;
}

/* p[0..n) against the string s, ignoring case. */
static bool equals_nocase(const char *p, size_t n, const char *s) {
    return n == strlen(s) && same_nocase(p, s, n);
}

static int fail(const char **err, const char *msg, int code) {
    if (err) *err = msg;
    return code;
}

/* ------------------------------------------------------------------------- */
/* Request head                                                              */
/* ------------------------------------------------------------------------- */

static http_method method_from_token(const char *p, size_t n) {
    switch (n) {
    case 3:
        if (memcmp(p, "GET", 3) == 0) return HTTP_GET;
        if (memcmp(p, "PUT", 3) == 0) return HTTP_PUT;
        break;
    case 4:
        if (memcmp(p, "HEAD", 4) == 0) return HTTP_HEAD;
        if (memcmp(p, "POST", 4) == 0) return HTTP_POST;
        break;
    case 6:
        if (memcmp(p, "DELETE", 6) == 0) return HTTP_DELETE;
        break;
    case 7:
        if (memcmp(p, "OPTIONS", 7) == 0) return HTTP_OPTIONS;
        break;
    }
    return HTTP_OTHER;
}

/* Content-Length: 1*DIGIT and nothing else. A sign, spaces or a list are
 * refused rather than interpreted, since another parser might read them
 * differently. */
static bool parse_content_length(const char *p, size_t n, int64_t *out) {
    if (n == 0) return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        int d = p[i] - '0';
        if (v > (INT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* Scan a Connection value (a comma separated token list) for "close" and
 * "keep-alive". Empty list elements are allowed, as RFC 9110 5.6.1 says. */
static void scan_connection(const char *p, size_t n, bool *close, bool *keep_alive) {
    size_t i = 0;
    while (i < n) {
        while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == ',')) i++;
        size_t start = i;
        while (i < n && p[i] != ',') i++;
        size_t end = i;
        while (end > start && (p[end - 1] == ' ' || p[end - 1] == '\t')) end--;
        if (equals_nocase(p + start, end - start, "close")) *close = true;
        if (equals_nocase(p + start, end - start, "keep-alive")) *keep_alive = true;
    }
}

/* Fill the fields derived from the headers and apply the message framing
 * rules of RFC 9112 6.3. Returns 0 or a negative HTTP_PARSE_* code. */
static int derive_fields(http_request_head *h, const char **err) {
    bool has_host = false, conn_close = false, conn_keep_alive = false;
    const http_header *te = NULL;

    h->content_length = -1;
    h->chunked = false;
    h->expect_continue = false;
    /* The name's length picks the one name it can be, so each header costs
     * at most one comparison. */
    for (size_t i = 0; i < h->nheaders; i++) {
        const http_header *f = &h->headers[i];
        switch (f->name_len) {
        case 14:
            if (same_nocase(f->name, "content-length", 14)) {
                int64_t n;
                if (!parse_content_length(f->value, f->value_len, &n))
                    return fail(err, "invalid content-length", HTTP_PARSE_BAD);
                if (h->content_length >= 0 && n != h->content_length)
                    return fail(err, "conflicting content-length headers", HTTP_PARSE_BAD);
                h->content_length = n;
            }
            break;
        case 17:
            /* Two Transfer-Encoding lines are one list; "chunked, chunked"
             * is not allowed, and any other combination is not chunked. */
            if (same_nocase(f->name, "transfer-encoding", 17)) {
                if (te) return fail(err, "repeated transfer-encoding", HTTP_PARSE_BAD);
                te = f;
            }
            break;
        case 4:
            if (same_nocase(f->name, "host", 4)) {
                if (has_host) return fail(err, "duplicate host header", HTTP_PARSE_BAD);
                has_host = true;
            }
            break;
        case 10:
            if (same_nocase(f->name, "connection", 10))
                scan_connection(f->value, f->value_len, &conn_close, &conn_keep_alive);
            break;
        case 6:
            /* RFC 9110 10.1.1: an HTTP/1.0 client cannot expect 100. */
            if (same_nocase(f->name, "expect", 6) && h->version_minor == 1 &&
                equals_nocase(f->value, f->value_len, "100-continue"))
                h->expect_continue = true;
            break;
        }
    }

    if (te) {
        if (h->content_length >= 0)
            return fail(err, "both content-length and transfer-encoding", HTTP_PARSE_BAD);
        /* RFC 9112 6.1: HTTP/1.0 has no transfer codings, so the framing of
         * such a message cannot be trusted. */
        if (h->version_minor == 0)
            return fail(err, "transfer-encoding in HTTP/1.0 request", HTTP_PARSE_BAD);
        if (te->value_len == 0) return fail(err, "empty transfer-encoding", HTTP_PARSE_BAD);
        if (!equals_nocase(te->value, te->value_len, "chunked"))
            return fail(err, "unsupported transfer-encoding", HTTP_PARSE_NOT_IMPL);
        h->chunked = true;
    }
    if (h->version_minor == 1 && !has_host)
        return fail(err, "missing host header", HTTP_PARSE_BAD);
    if (h->version_minor == 1)
        h->keep_alive = !conn_close;
    else
        h->keep_alive = conn_keep_alive && !conn_close;
    return 0;
}

int http_parse_head(const char *data, size_t len, size_t max_head_bytes, size_t max_target_len,
                    http_request_head *out, const char **err) {
    /* The head length is returned as an int. */
    if (max_head_bytes > INT_MAX) max_head_bytes = INT_MAX;
    /* Never look past max_head_bytes: a head that does not end within them
     * is too large, whatever follows. */
    const unsigned char *start = (const unsigned char *)data;
    const unsigned char *end = start + (len < max_head_bytes ? len : max_head_bytes);
    const unsigned char *p = start;

    /* RFC 9112 2.2: ignore empty lines before the request line. */
    for (;;) {
        if (p == end) goto need_more;
        if (*p != '\r') break;
        if (p + 1 == end) goto need_more;
        if (p[1] != '\n') return fail(err, "bare CR in request", HTTP_PARSE_BAD);
        p += 2;
    }

    /* method SP */
    const unsigned char *method = p;
    for (;;) {
        if (p == end) goto need_more;
        if (*p == ' ') break;
        if (!tchar[*p]) return fail(err, "invalid method", HTTP_PARSE_BAD);
        p++;
    }
    if (p == method) return fail(err, "invalid method", HTTP_PARSE_BAD);
    out->method_str = (const char *)method;
    out->method_len = (size_t)(p - method);
    out->method = method_from_token(out->method_str, out->method_len);
    p++;

    /* request-target SP */
    const unsigned char *target = p;
    /* Only as far as the length limit, which the byte loop checks. */
    p = skip_run(p, (size_t)(end - p) > max_target_len ? p + max_target_len : end, RUN_TARGET);
    for (;;) {
        if (p == end) goto need_more;
        if (*p == ' ') break;
        if (*p < 0x21 || *p > 0x7e) return fail(err, "invalid request target", HTTP_PARSE_BAD);
        p++;
        if ((size_t)(p - target) > max_target_len)
            return fail(err, "request target too long", HTTP_PARSE_URI_TOO_LONG);
    }
    if (p == target) return fail(err, "invalid request target", HTTP_PARSE_BAD);
    out->target = (const char *)target;
    out->target_len = (size_t)(p - target);
    p++;

    /* HTTP-version CRLF, where HTTP-version is "HTTP/" DIGIT "." DIGIT. */
    static const char version_pattern[] = "HTTP/0.0";
    int major = 0, minor = 0;
    for (int i = 0; i < 8; i++, p++) {
        if (p == end) goto need_more;
        if (version_pattern[i] == '0') {
            if (*p < '0' || *p > '9') return fail(err, "invalid HTTP version", HTTP_PARSE_BAD);
            if (i == 5)
                major = *p - '0';
            else
                minor = *p - '0';
        } else if (*p != (unsigned char)version_pattern[i]) {
            return fail(err, "invalid HTTP version", HTTP_PARSE_BAD);
        }
    }
    if (p == end) goto need_more;
    if (*p != '\r') return fail(err, "invalid request line", HTTP_PARSE_BAD);
    if (p + 1 == end) goto need_more;
    if (p[1] != '\n') return fail(err, "bare CR in request", HTTP_PARSE_BAD);
    p += 2;
    if (major != 1 || minor > 1) return fail(err, "unsupported HTTP version", HTTP_PARSE_VERSION);
    out->version_minor = minor;

    /* *( field-line CRLF ) CRLF */
    out->nheaders = 0;
    for (;;) {
        if (p == end) goto need_more;
        if (*p == '\r') {
            if (p + 1 == end) goto need_more;
            if (p[1] != '\n') return fail(err, "bare CR in request", HTTP_PARSE_BAD);
            p += 2;
            break;
        }
        /* Also catches whitespace between the request line and the first
         * field, which RFC 9112 2.2 says to reject too. */
        if (*p == ' ' || *p == '\t') return fail(err, "obsolete line folding", HTTP_PARSE_BAD);
        if (out->nheaders == HTTP_MAX_HEADERS)
            return fail(err, "too many headers", HTTP_PARSE_TOO_LARGE);

        const unsigned char *name = p;
        for (;;) {
            if (p == end) goto need_more;
            if (*p == ':') break;
            if (!tchar[*p]) return fail(err, "invalid header name", HTTP_PARSE_BAD);
            p++;
        }
        if (p == name) return fail(err, "invalid header name", HTTP_PARSE_BAD);
        size_t name_len = (size_t)(p - name);
        p++;

        for (;;) {
            if (p == end) goto need_more;
            if (*p != ' ' && *p != '\t') break;
            p++;
        }
        /* The value runs to the CR; trailing OWS is stripped afterwards,
         * which keeps the per-byte loop to one test. */
        const unsigned char *value = p;
        p = skip_run(p, end, RUN_VALUE);
        while (p < end && is_field_byte(*p)) p++;
        if (p == end) goto need_more;
        if (*p != '\r') return fail(err, "invalid header value", HTTP_PARSE_BAD);
        const unsigned char *value_end = p;
        while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t')) value_end--;
        if (p + 1 == end) goto need_more;
        if (p[1] != '\n') return fail(err, "bare CR in request", HTTP_PARSE_BAD);
        p += 2;

        http_header *h = &out->headers[out->nheaders++];
        h->name = (const char *)name;
        h->name_len = name_len;
        h->value = (const char *)value;
        h->value_len = (size_t)(value_end - value);
    }

    int rc = derive_fields(out, err);
    if (rc < 0) return rc;
    out->head_len = (size_t)(p - start);
    if (err) *err = NULL;
    return (int)out->head_len;

need_more:
    if (len >= max_head_bytes) return fail(err, "request head too large", HTTP_PARSE_TOO_LARGE);
    return HTTP_PARSE_INCOMPLETE;
}

int http_parse_status(int code) {
    switch (code) {
    case HTTP_PARSE_TOO_LARGE: return 431;
    case HTTP_PARSE_URI_TOO_LONG: return 414;
    case HTTP_PARSE_VERSION: return 505;
    case HTTP_PARSE_NOT_IMPL: return 501;
    default: return 400;
    }
}

void http_head_move(http_request_head *h, const char *from, const char *to) {
    h->method_str = to + (h->method_str - from);
    h->target = to + (h->target - from);
    for (size_t i = 0; i < h->nheaders; i++) {
        http_header *f = &h->headers[i];
        f->name = to + (f->name - from);
        f->value = to + (f->value - from);
    }
}

const char *http_head_get(const http_request_head *h, const char *name, size_t *value_len) {
    /* Called several times per request, each time over every header: the
     * length test first skips nearly all of them. */
    size_t name_len = strlen(name);
    for (size_t i = 0; i < h->nheaders; i++) {
        const http_header *f = &h->headers[i];
        if (f->name_len == name_len && same_nocase(f->name, name, name_len)) {
            if (value_len) *value_len = f->value_len;
            return f->value;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------- */
/* Chunked transfer coding                                                   */
/* ------------------------------------------------------------------------- */

/* Longest chunk-size line (size plus extensions) or trailer line accepted.
 * Both are discarded, but without a bound a client could keep us parsing a
 * single line forever. */
#define CHUNK_MAX_LINE 4096

/* 16 hex digits fill a uint64_t; more are refused even if they are leading
 * zeros, which no sane client sends. */
#define CHUNK_MAX_SIZE_DIGITS 16

enum chunked_state {
    CH_SIZE_START,    /* before the first digit of a chunk-size */
    CH_SIZE,          /* in the chunk-size digits */
    CH_SIZE_WS,       /* whitespace after the size; only ';' may follow */
    CH_EXT,           /* chunk extensions, skipped up to CR */
    CH_SIZE_LF,       /* CR of the size line seen */
    CH_DATA,          /* chunk data, `remaining` bytes to go */
    CH_DATA_CR,       /* CRLF after the chunk data */
    CH_DATA_LF,
    CH_TRAILER_START, /* start of a trailer field line or of the final CRLF */
    CH_TRAILER_NAME,
    CH_TRAILER_VALUE,
    CH_TRAILER_LF,    /* CR of a trailer line seen */
    CH_END_LF,        /* CR of the final empty line seen */
    CH_DONE,
    CH_FAILED,        /* an error was returned; it sticks */
};

void http_chunked_init(http_chunked *c) {
    c->state = CH_SIZE_START;
    c->remaining = 0;
    c->line_len = 0;
}

static ssize_t chunked_fail(http_chunked *c, const char **err, const char *msg) {
    c->state = CH_FAILED;
    if (err) *err = msg;
    return -1;
}

ssize_t http_chunked_decode(http_chunked *c, const char *in, size_t len, buf *out,
                            uint64_t max_body, bool *done, const char **err) {
    const unsigned char *p = (const unsigned char *)in;
    const unsigned char *end = p + len;

    *done = false;
    if (c->state == CH_DONE) {
        *done = true;
        return 0;
    }
    if (c->state == CH_FAILED) return chunked_fail(c, err, "invalid chunked encoding");

    while (p < end) {
        unsigned char ch = *p;

        if (c->state == CH_DATA) {
            size_t avail = (size_t)(end - p);
            size_t n = c->remaining < avail ? (size_t)c->remaining : avail;
            buf_append(out, p, n);
            p += n;
            c->remaining -= n;
            if (c->remaining == 0) c->state = CH_DATA_CR;
            continue;
        }

        /* Everything else is a size or trailer line, walked a byte at a
         * time; only their length is remembered. */
        if (c->state != CH_DATA_CR && c->state != CH_DATA_LF) {
            c->line_len++;
            if (c->line_len > CHUNK_MAX_LINE) return chunked_fail(c, err, "chunk line too long");
        }

        switch (c->state) {
        case CH_SIZE_START:
        case CH_SIZE: {
            int d = hex_value(ch);
            if (d >= 0) {
                /* In these states line_len counts digits only. */
                if (c->line_len > CHUNK_MAX_SIZE_DIGITS)
                    return chunked_fail(c, err, "chunk size too large");
                c->remaining = (c->remaining << 4) | (uint64_t)d;
                c->state = CH_SIZE;
            } else if (c->state == CH_SIZE_START) {
                return chunked_fail(c, err, "invalid chunk size");
            } else if (ch == ';') {
                c->state = CH_EXT;
            } else if (ch == ' ' || ch == '\t') {
                c->state = CH_SIZE_WS;
            } else if (ch == '\r') {
                c->state = CH_SIZE_LF;
            } else {
                return chunked_fail(c, err, "invalid chunk size");
            }
            break;
        }
        case CH_SIZE_WS:
            /* RFC 9112 7.1.1 allows BWS only before a chunk extension. */
            if (ch == ';')
                c->state = CH_EXT;
            else if (ch != ' ' && ch != '\t')
                return chunked_fail(c, err, "invalid chunk size");
            break;
        case CH_EXT:
            if (ch == '\r')
                c->state = CH_SIZE_LF;
            else if (!is_field_byte(ch))
                return chunked_fail(c, err, "invalid chunk extension");
            break;
        case CH_SIZE_LF:
            if (ch != '\n') return chunked_fail(c, err, "bare CR in chunk size line");
            c->line_len = 0;
            if (c->remaining == 0) {
                c->state = CH_TRAILER_START;
                break;
            }
            /* Refuse an oversized chunk before reading any of it. The
             * struct keeps no running total, so the limit is checked against
             * `out`, which holds the body decoded so far. */
            if (out->len > max_body || c->remaining > max_body - out->len) {
                c->state = CH_FAILED;
                if (err) *err = "chunked body too large";
                return -2;
            }
            c->state = CH_DATA;
            break;
        case CH_DATA_CR:
            if (ch != '\r') return chunked_fail(c, err, "missing CRLF after chunk data");
            c->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (ch != '\n') return chunked_fail(c, err, "missing CRLF after chunk data");
            c->state = CH_SIZE_START;
            break;
        case CH_TRAILER_START:
            if (ch == '\r') {
                c->state = CH_END_LF;
            } else if (tchar[ch]) {
                c->state = CH_TRAILER_NAME;
            } else {
                return chunked_fail(c, err, "invalid trailer field");
            }
            break;
        case CH_TRAILER_NAME:
            if (ch == ':')
                c->state = CH_TRAILER_VALUE;
            else if (!tchar[ch])
                return chunked_fail(c, err, "invalid trailer field");
            break;
        case CH_TRAILER_VALUE:
            if (ch == '\r')
                c->state = CH_TRAILER_LF;
            else if (!is_field_byte(ch))
                return chunked_fail(c, err, "invalid trailer field");
            break;
        case CH_TRAILER_LF:
            if (ch != '\n') return chunked_fail(c, err, "bare CR in trailer");
            c->line_len = 0;
            c->state = CH_TRAILER_START;
            break;
        case CH_END_LF:
            if (ch != '\n') return chunked_fail(c, err, "bare CR in trailer");
            c->state = CH_DONE;
            *done = true;
            return (ssize_t)(p + 1 - (const unsigned char *)in);
        }
        p++;
    }
    return (ssize_t)len;
}

/* ------------------------------------------------------------------------- */
/* Request target                                                            */
/* ------------------------------------------------------------------------- */

bool http_target_split(const char *target, size_t len, http_target *out) {
    if (len == 0 || target[0] != '/') return false;
    const char *q = memchr(target, '?', len);
    out->path = target;
    if (q) {
        out->path_len = (size_t)(q - target);
        out->query = q + 1;
        out->query_len = len - out->path_len - 1;
    } else {
        out->path_len = len;
        out->query = NULL;
        out->query_len = 0;
    }
    return true;
}

/* Shared by path and query decoding; they differ only in what '+' means.
 * Decodes into dst (room for len bytes: decoding never grows the input) and
 * sets *n; on failure *n is not set. */
static bool percent_decode(const char *src, size_t len, bool plus_is_space, uint8_t *dst,
                           size_t *n) {
    if (len == 0) {
        *n = 0;
        return true;
    }
    /* Most paths have nothing to decode: copy them whole. */
    if (!plus_is_space && !memchr(src, '%', len) && !memchr(src, 0, len)) {
        memcpy(dst, src, len);
        *n = len;
        return true;
    }
    uint8_t *out = dst;
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)src[i];
        if (c == '%') {
            if (len - i < 3) return false;
            int hi = hex_value((unsigned char)src[i + 1]);
            int lo = hex_value((unsigned char)src[i + 2]);
            if (hi < 0 || lo < 0) return false;
            c = (unsigned char)(hi << 4 | lo);
            i += 3;
        } else {
            if (c == '+' && plus_is_space) c = ' ';
            i++;
        }
        if (c == 0) return false;
        *out++ = c;
    }
    *n = (size_t)(out - dst);
    return true;
}

/* percent_decode appending to out, which is left as it was on failure. */
static bool percent_decode_buf(const char *src, size_t len, bool plus_is_space, buf *out) {
    if (len == 0) return true;
    buf_reserve(out, len);
    size_t n;
    if (!percent_decode(src, len, plus_is_space, out->data + out->len, &n)) return false;
    out->len += n;
    return true;
}

bool http_percent_decode(const char *src, size_t len, buf *out) {
    return percent_decode_buf(src, len, false, out);
}

bool http_percent_decode_to(const char *src, size_t len, char *dst, size_t *n) {
    return percent_decode(src, len, false, (uint8_t *)dst, n);
}

bool http_query_get(const char *query, size_t query_len, const char *name, buf *value) {
    if (!query) return false;
    size_t name_len = strlen(name);
    const char *p = query, *end = query + query_len;
    for (;;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pair_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pair_end - p));
        const char *key_end = eq ? eq : pair_end;
        if ((size_t)(key_end - p) == name_len && memcmp(p, name, name_len) == 0) {
            const char *v = eq ? eq + 1 : pair_end;
            return percent_decode_buf(v, (size_t)(pair_end - v), true, value);
        }
        if (!amp) return false;
        p = amp + 1;
    }
}
