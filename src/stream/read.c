/* read.c — what a read of a stream answers: a range of its data from an
 * offset, with the next offset, up-to-date, closure, cursor and caching
 * headers.
 *
 * Bodies are byte ranges of the data files (sendfile) or copies of small
 * ranges; a JSON stream's range is wrapped in "[" ... "]" (see util/json.h
 * for why the stored form allows that).
 */
#include <stdio.h>
#include <string.h>

#include "protocol.h"
#include "stream_int.h"

static const char cache_public[] = "public, max-age=60, stale-while-revalidate=300";

uint64_t read_end(streams *st, stream *s, uint64_t start, uint64_t limit) {
    uint64_t end = s->visible - start > limit ? start + limit : s->visible;
    if (!s->json || end == s->visible) return end;
    uint8_t win[4096];
    for (uint64_t hi = end; hi > start;) {
        size_t n = hi - start > sizeof win ? sizeof win : (size_t)(hi - start);
        if (!stream_pread(st, s, hi - n, n, win)) return end;
        for (size_t i = n; i > 0; i--)
            if (win[i - 1] == '\n') return hi - n + i;
        hi -= n;
    }
    /* One message larger than the limit: send it whole. */
    for (uint64_t lo = end; lo < s->visible;) {
        size_t n = s->visible - lo > sizeof win ? sizeof win : (size_t)(s->visible - lo);
        if (!stream_pread(st, s, lo, n, win)) return s->visible;
        for (size_t i = 0; i < n; i++)
            if (win[i] == '\n') return lo + i + 1;
        lo += n;
    }
    return s->visible;
}

static void cursor_header(http_conn *c, const buf *client_cursor) {
    uint64_t cur = cursor_next((const char *)client_cursor->data, client_cursor->len, wall_ms());
    http_respond_header_u64(c, "Stream-Cursor", cur);
}

void read_respond_data(streams *st, http_conn *c, stream *s, uint64_t start, bool live,
                       const buf *cursor) {
    uint64_t end = read_end(st, s, start, st->limits.read_chunk);
    bool up_to_date = end == s->visible;
    bool closed = up_to_date && s->closed_visible;
    char etag[96];
    snprintf(etag, sizeof etag, "\"%llx:%llx:%llx%s\"", (unsigned long long)s->id,
             (unsigned long long)start, (unsigned long long)end, closed ? ":c" : "");
    size_t inm_len;
    const char *inm = http_head_get(&http_conn_request(c)->head, "if-none-match", &inm_len);
    bool not_modified = inm && inm_len == strlen(etag) && memcmp(inm, etag, inm_len) == 0;
    respond_begin(st, c, not_modified ? 304 : 200);
    http_respond_header(c, "Content-Type", s->content_type);
    respond_offset(c, "Stream-Next-Offset", end);
    if (up_to_date) http_respond_header(c, "Stream-Up-To-Date", "true");
    if (closed) http_respond_header(c, "Stream-Closed", "true");
    else if (live || up_to_date) cursor_header(c, cursor);
    http_respond_header(c, "ETag", etag);
    http_respond_header(c, "Cache-Control", cache_public);
    if (!not_modified) {
        bool ok = true;
        if (s->json) {
            http_respond_body(c, "[", 1);
            if (end > start) ok = respond_range(st, c, s, start, end - 2);
            http_respond_body(c, "]", 1);
        } else {
            ok = respond_range(st, c, s, start, end);
        }
        if (!ok) {
            respond_error(st, c, 500, s->path, "cannot read stream data");
            return;
        }
    }
    http_respond_end(c);
}

void read_respond_now(streams *st, http_conn *c, stream *s) {
    respond_begin(st, c, 200);
    http_respond_header(c, "Content-Type", s->content_type);
    respond_offset(c, "Stream-Next-Offset", s->visible);
    http_respond_header(c, "Stream-Up-To-Date", "true");
    if (s->closed_visible) http_respond_header(c, "Stream-Closed", "true");
    http_respond_header(c, "Cache-Control", "no-store");
    if (s->json) http_respond_body(c, "[]", 2);
    http_respond_end(c);
}

void read_respond_no_data(streams *st, http_conn *c, stream *s, const buf *cursor) {
    respond_begin(st, c, 204);
    respond_offset(c, "Stream-Next-Offset", s->visible);
    http_respond_header(c, "Stream-Up-To-Date", "true");
    if (s->closed_visible) http_respond_header(c, "Stream-Closed", "true");
    else cursor_header(c, cursor);
    http_respond_header(c, "Cache-Control", "no-store");
    http_respond_end(c);
}
