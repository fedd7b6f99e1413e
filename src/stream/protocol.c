/* protocol.c — value formats of the Durable Streams protocol (see protocol.h). */
#include "protocol.h"
#include "stream_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../util/mem.h"

void offset_format(uint64_t pos, char out[OFFSET_LEN + 1]) {
    memset(out, '0', OFFSET_LEN);
    out[16] = '_';
    for (int i = OFFSET_LEN - 1; i > 16 && pos; i--) {
        out[i] = (char)('0' + pos % 10);
        pos /= 10;
    }
    out[OFFSET_LEN] = 0;
}

offset_kind offset_parse(const char *s, size_t n, uint64_t *pos) {
    if (n == 2 && memcmp(s, "-1", 2) == 0) return OFFSET_START;
    if (n == 3 && memcmp(s, "now", 3) == 0) return OFFSET_NOW;
    if (n != OFFSET_LEN || s[16] != '_') return OFFSET_INVALID;
    for (size_t i = 0; i < 16; i++)
        if (s[i] != '0') return OFFSET_INVALID; /* never minted by this server */
    uint64_t v = 0;
    for (size_t i = 17; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return OFFSET_INVALID;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *pos = v;
    return OFFSET_AT;
}

static void media_type_span(const char *s, size_t n, size_t *start, size_t *len) {
    size_t a = 0;
    while (a < n && (s[a] == ' ' || s[a] == '\t')) a++;
    const char *semi = a < n ? memchr(s + a, ';', n - a) : NULL;
    size_t b = semi ? (size_t)(semi - s) : n;
    while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t')) b--;
    *start = a;
    *len = b - a;
}

bool media_type_eq(const char *a, size_t an, const char *b, size_t bn) {
    /* Appends usually repeat the stream's Content-Type byte for byte. */
    if (an == bn && memcmp(a, b, an) == 0) return true;
    size_t as, al, bs, bl;
    media_type_span(a, an, &as, &al);
    media_type_span(b, bn, &bs, &bl);
    return al == bl && strncasecmp(a + as, b + bs, al) == 0;
}

static bool is_tchar(char c) {
    return isalnum((unsigned char)c) || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

bool media_type_valid(const char *s, size_t n) {
    size_t st, len;
    media_type_span(s, n, &st, &len);
    size_t i = st, e = st + len, slash = 0;
    for (; i < e; i++) {
        if (s[i] == '/') {
            if (slash || i == st || i + 1 == e) return false;
            slash = i;
        } else if (!is_tchar(s[i])) {
            return false;
        }
    }
    return slash != 0;
}

void stream_set_content_type_flags(stream *s) {
    const char *ct = s->content_type;
    size_t n = strlen(ct);
    s->json = media_type_eq(ct, n, "application/json", 16);
    size_t st, len;
    media_type_span(ct, n, &st, &len);
    s->text = s->json || (len >= 5 && strncasecmp(ct + st, "text/", 5) == 0);
}

bool ttl_parse(const char *s, size_t n, int64_t *secs) {
    if (n == 0 || n > 15) return false;
    if (n > 1 && s[0] == '0') return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    *secs = v;
    return true;
}

bool u53_parse(const char *s, size_t n, uint64_t *v) {
    if (n == 0 || n > 16) return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    if (x > 9007199254740991ull) return false;
    *v = x;
    return true;
}

bool value_is_true(const char *s, size_t n) { return s && n == 4 && strncasecmp(s, "true", 4) == 0; }

static bool digits(const char *s, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static int64_t days_from_civil(int y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

bool rfc3339_parse(const char *s, size_t n, int64_t *ms) {
    int y, mo, d, h, mi, sec;
    if (n < 20) return false;
    if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &sec))
        return false;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
        return false;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return false;
    size_t i = 19;
    int frac_ms = 0;
    if (i < n && s[i] == '.') {
        i++;
        size_t fs = i;
        int scale = 100;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            frac_ms += (s[i] - '0') * scale;
            scale /= 10;
            i++;
        }
        if (i == fs) return false;
    }
    int64_t off_min = 0;
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i + 6 == n && (s[i] == '+' || s[i] == '-')) {
        int oh, om;
        if (!digits(s + i + 1, 2, &oh) || s[i + 3] != ':' || !digits(s + i + 4, 2, &om) ||
            oh > 23 || om > 59)
            return false;
        off_min = (s[i] == '+' ? 1 : -1) * (oh * 60 + om);
        i += 6;
    } else {
        return false;
    }
    if (i != n) return false;
    int64_t days = days_from_civil(y, mo, d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - off_min * 60;
    *ms = secs * 1000 + frac_ms;
    return true;
}

uint64_t cursor_next(const char *client, size_t n, int64_t now_ms) {
    /* 20-second intervals counted from 2024-10-09T00:00:00Z. */
    const int64_t epoch_ms = 1728432000000LL;
    uint64_t interval = now_ms > epoch_ms ? (uint64_t)((now_ms - epoch_ms) / 20000) : 0;
    uint64_t theirs;
    if (client && n > 0 && n <= 19 && u53_parse(client, n, &theirs) && theirs >= interval) {
        /* Never repeat or go back: jump ahead by 1..3600 s of intervals. */
        uint64_t jitter_s = 1 + (uint64_t)(rand() % 3600);
        uint64_t step = jitter_s / 20 ? jitter_s / 20 : 1;
        return theirs + step;
    }
    return interval;
}
