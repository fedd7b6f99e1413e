/* json.c — strict RFC 8259 validation and message splitting (see json.h).
 *
 * Every append to a JSON stream passes its body through here, so the parser
 * is a single pass with no recursion: a goto-driven state machine walks the
 * tokens, open containers live in a bit stack (1 = object, 0 = array) whose
 * height is bounded by max_depth, and string bodies are scanned with a
 * byte-class table so that plain ASCII costs one lookup per byte. Hostile
 * nesting therefore cannot exhaust the C stack.
 *
 * Minifying never rewrites a byte, it only drops whitespace between tokens.
 * Rather than copying byte by byte, `mark` remembers where the pending run of
 * output bytes begins, and the run is appended in one piece when whitespace
 * or the end of a message interrupts it.
 */
#include "json.h"
#include "mem.h"

#include <string.h>

/* Byte classes inside a string: the values of string_class[]. */
enum {
    SC_PLAIN = 0, /* printable ASCII other than '"' and '\\': copied as is */
    SC_QUOTE,
    SC_BACKSLASH,
    SC_CONTROL,  /* 00..1F: RFC 8259 requires these to be escaped */
    SC_BAD_UTF8, /* 80..BF (stray continuation), C0..C1 (always overlong), F5..FF */
    SC_LEAD      /* SC_LEAD + i is a multi-byte lead described by utf8_lead[i] */
};

static const uint8_t string_class[256] = {
     3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3, /* 0_ */
     3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3, /* 1_ */
     0,  0,  1,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0, /* 2_ */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0, /* 3_ */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0, /* 4_ */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  2,  0,  0,  0, /* 5_ */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0, /* 6_ */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0, /* 7_ */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4, /* 8_ */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4, /* 9_ */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4, /* A_ */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4, /* B_ */
     4,  4,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5, /* C_ */
     5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5, /* D_ */
     6,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  8,  7,  7, /* E_ */
     9, 10, 10, 10, 11,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4, /* F_ */
};

/* Per multi-byte lead class: sequence length and the allowed range of the
 * second byte. Narrowing the second byte is what rejects overlong forms (E0,
 * F0), UTF-16 surrogates D800..DFFF (ED) and code points above U+10FFFF (F4);
 * later continuation bytes are always 80..BF. */
static const struct {
    uint8_t len, lo, hi;
} utf8_lead[] = {
    {2, 0x80, 0xBF}, /* C2..DF */
    {3, 0xA0, 0xBF}, /* E0 */
    {3, 0x80, 0xBF}, /* E1..EC, EE..EF */
    {3, 0x80, 0x9F}, /* ED */
    {4, 0x90, 0xBF}, /* F0 */
    {4, 0x80, 0xBF}, /* F1..F3 */
    {4, 0x80, 0x8F}, /* F4 */
};

static inline int is_digit(uint8_t c) { return (unsigned)(c - '0') < 10; }

static inline int is_hex(uint8_t c) {
    return (unsigned)(c - '0') < 10 || (unsigned)((c | 0x20) - 'a') < 6;
}

static inline int is_ws(uint8_t c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

/* The scanners below share one convention: on success they return NULL and
 * leave *pp just past the token; on failure they return the error message
 * and leave *pp at the offending byte. */

/* Scan a string whose opening quote is at *pp. */
static inline const char *scan_string(const uint8_t **pp, const uint8_t *end) {
    const uint8_t *p = *pp + 1;

    for (;;) {
        while (p < end && string_class[*p] == SC_PLAIN) p++;
        if (p == end) {
            *pp = p;
            return "unterminated string";
        }
        unsigned cls = string_class[*p];
        if (cls == SC_QUOTE) {
            *pp = p + 1;
            return NULL;
        }
        if (cls == SC_BACKSLASH) {
            if (end - p < 2) {
                *pp = end;
                return "unterminated string";
            }
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                continue;
            case 'u':
                /* Lone surrogates such as \ud800 are accepted, as JSON.parse
                 * does: the bytes are stored verbatim and never decoded. */
                for (int i = 2; i < 6; i++) {
                    if (p + i == end) {
                        *pp = end;
                        return "unterminated string";
                    }
                    if (!is_hex(p[i])) {
                        *pp = p;
                        return "invalid escape";
                    }
                }
                p += 6;
                continue;
            default:
                *pp = p;
                return "invalid escape";
            }
        }
        if (cls == SC_CONTROL) {
            *pp = p;
            return "control character in string";
        }
        if (cls == SC_BAD_UTF8) {
            *pp = p;
            return "invalid utf-8";
        }
        size_t n = utf8_lead[cls - SC_LEAD].len;
        if ((size_t)(end - p) < n || p[1] < utf8_lead[cls - SC_LEAD].lo ||
            p[1] > utf8_lead[cls - SC_LEAD].hi) {
            *pp = p;
            return "invalid utf-8";
        }
        for (size_t i = 2; i < n; i++) {
            if ((p[i] & 0xC0) != 0x80) {
                *pp = p;
                return "invalid utf-8";
            }
        }
        p += n;
    }
}

/* Scan one or more digits; the grammar needs at least one after '.', 'e'
 * and the exponent sign. */
static inline const char *scan_digits(const uint8_t **pp, const uint8_t *end) {
    const uint8_t *p = *pp;

    if (p == end) {
        *pp = p;
        return "unexpected end of input";
    }
    if (!is_digit(*p)) return "invalid number";
    while (p < end && is_digit(*p)) p++;
    *pp = p;
    return NULL;
}

/* Scan -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? starting at *pp. */
static inline const char *scan_number(const uint8_t **pp, const uint8_t *end) {
    const uint8_t *p = *pp;
    const char *msg;

    if (*p == '-') p++;
    if (p < end && *p == '0') {
        p++;
        /* Caught here because otherwise "01" would surface later as a
         * puzzling "trailing characters". */
        if (p < end && is_digit(*p)) {
            *pp = p;
            return "leading zero in number";
        }
    } else if ((msg = scan_digits(&p, end))) {
        *pp = p;
        return msg;
    }
    if (p < end && *p == '.') {
        p++;
        if ((msg = scan_digits(&p, end))) {
            *pp = p;
            return msg;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if ((msg = scan_digits(&p, end))) {
            *pp = p;
            return msg;
        }
    }
    *pp = p;
    return NULL;
}

/* Scan the literal `word` (n bytes) at *pp. */
static inline const char *scan_literal(const uint8_t **pp, const uint8_t *end, const char *word,
                                       size_t n) {
    size_t avail = (size_t)(end - *pp);

    if (avail >= n && memcmp(*pp, word, n) == 0) {
        *pp += n;
        return NULL;
    }
    if (avail < n && memcmp(*pp, word, avail) == 0) {
        *pp = end;
        return "unexpected end of input";
    }
    return "invalid literal";
}

/* Skip whitespace at p. `sink` is the output buffer when the whitespace lies
 * inside a message, NULL otherwise: inside a message the whitespace splits
 * the output, so the run before it is appended and a new run starts after. */
static inline const uint8_t *skip_ws(const uint8_t *p, const uint8_t *end, buf *sink,
                                     const uint8_t **mark) {
    const uint8_t *q = p;

    while (q < end && is_ws(*q)) q++;
    if (sink && q != p) {
        buf_append(sink, *mark, (size_t)(p - *mark));
        *mark = q;
    }
    return q;
}

/* Double the nesting stack, moving it to the heap the first time. */
static uint64_t *grow_stack(uint64_t *stack, const uint64_t *inline_stack, size_t *bits) {
    size_t words = *bits / 64;
    uint64_t *bigger;

    if (stack == inline_stack) {
        bigger = xmalloc(words * 2 * sizeof *bigger);
        memcpy(bigger, stack, words * sizeof *stack);
    } else {
        bigger = xrealloc(stack, words * 2 * sizeof *bigger);
    }
    *bits *= 2;
    return bigger;
}

/* The one parser behind both entry points. With out == NULL it only
 * validates, and then a top-level [] is simply valid. */
static json_status parse(const uint8_t *in, size_t len, int max_depth, buf *out,
                         size_t *count_out, json_error *err) {
    /* `in` may be NULL when len is 0, and NULL + 0 is undefined. */
    const uint8_t *end = len ? in + len : in;
    const uint8_t *p = in, *mark = in, *top;
    size_t out_len = out ? out->len : 0;
    size_t count = 0;
    int depth = 0, msg_depth, is_object;
    /* 1024 levels inline: more than any sane document, no allocation. */
    uint64_t inline_stack[16];
    uint64_t *stack = inline_stack;
    size_t stack_bits = sizeof inline_stack * 8;
    uint64_t bit;
    uint8_t open;
    json_status status = JSON_ERR_SYNTAX;
    const char *msg;

    p = skip_ws(p, end, NULL, &mark);
    top = p;
    /* The elements of a top-level array are the messages; any other value
     * is a message by itself. A message's own whitespace is therefore at a
     * depth greater than msg_depth. */
    msg_depth = (p < end && *p == '[') ? 1 : 0;

value:
    if (p == end) {
        msg = "unexpected end of input";
        goto fail;
    }
    if (depth == msg_depth) mark = p;
    switch (*p) {
    case '{':
    case '[':
        if (depth >= max_depth) {
            status = JSON_ERR_DEPTH;
            msg = "nesting too deep";
            goto fail;
        }
        if ((size_t)depth == stack_bits) stack = grow_stack(stack, inline_stack, &stack_bits);
        bit = (uint64_t)1 << (depth & 63);
        if (*p == '{')
            stack[depth >> 6] |= bit;
        else
            stack[depth >> 6] &= ~bit;
        depth++;
        open = *p++;
        p = skip_ws(p, end, depth > msg_depth ? out : NULL, &mark);
        if (p < end && *p == (open == '{' ? '}' : ']')) {
            p++;
            depth--;
            goto after_value;
        }
        if (open == '{') goto key;
        goto value;
    case '"':
        msg = scan_string(&p, end);
        break;
    case 't':
        msg = scan_literal(&p, end, "true", 4);
        break;
    case 'f':
        msg = scan_literal(&p, end, "false", 5);
        break;
    case 'n':
        msg = scan_literal(&p, end, "null", 4);
        break;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        msg = scan_number(&p, end);
        break;
    default:
        msg = "unexpected character";
        break;
    }
    if (msg) goto fail;

after_value:
    if (depth == msg_depth) {
        if (out) {
            buf_append(out, mark, (size_t)(p - mark));
            buf_append(out, ",\n", 2);
        }
        count++;
    }
    if (depth == 0) goto done;
    p = skip_ws(p, end, depth > msg_depth ? out : NULL, &mark);
    if (p == end) {
        msg = "unexpected end of input";
        goto fail;
    }
    is_object = (stack[(depth - 1) >> 6] >> ((depth - 1) & 63)) & 1;
    if (*p == ',') {
        p++;
        p = skip_ws(p, end, depth > msg_depth ? out : NULL, &mark);
        if (is_object) goto key;
        goto value;
    }
    if (*p == (is_object ? '}' : ']')) {
        p++;
        depth--;
        goto after_value;
    }
    msg = is_object ? "expected ',' or '}'" : "expected ',' or ']'";
    goto fail;

key:
    if (p == end) {
        msg = "unexpected end of input";
        goto fail;
    }
    if (*p != '"') {
        msg = "expected string key";
        goto fail;
    }
    if ((msg = scan_string(&p, end))) goto fail;
    p = skip_ws(p, end, depth > msg_depth ? out : NULL, &mark);
    if (p == end) {
        msg = "unexpected end of input";
        goto fail;
    }
    if (*p != ':') {
        msg = "expected ':'";
        goto fail;
    }
    p++;
    p = skip_ws(p, end, depth > msg_depth ? out : NULL, &mark);
    goto value;

done:
    p = skip_ws(p, end, NULL, &mark);
    if (p != end) {
        msg = "trailing characters";
        goto fail;
    }
    /* Only a top-level array can end with no messages. */
    if (count == 0 && out) {
        status = JSON_ERR_EMPTY_ARRAY;
        msg = "empty array";
        p = top;
        goto fail;
    }
    status = JSON_OK;
    goto finish;

fail:
    if (out) out->len = out_len;
    count = 0;
    if (err) {
        err->msg = msg;
        err->pos = (size_t)(p - in);
    }
finish:
    if (stack != inline_stack) free(stack);
    if (count_out) *count_out = count;
    return status;
}

json_status json_split_messages(const uint8_t *in, size_t len, int max_depth, buf *out,
                                size_t *count, json_error *err) {
    return parse(in, len, max_depth, out, count, err);
}

json_status json_validate(const uint8_t *in, size_t len, int max_depth, json_error *err) {
    return parse(in, len, max_depth, NULL, NULL, err);
}

void json_append_string(buf *out, const char *s) {
    static const char hex[] = "0123456789abcdef";
    buf_append_byte(out, '"');
    const char *run = s;
    for (const char *p = s;; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
        buf_append(out, run, (size_t)(p - run));
        if (!ch) break;
        if (ch == '"' || ch == '\\') {
            buf_append_byte(out, '\\');
            buf_append_byte(out, ch);
        } else {
            char esc[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            buf_append(out, esc, sizeof esc);
        }
        run = p + 1;
    }
    buf_append_byte(out, '"');
}
