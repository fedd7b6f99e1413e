/* fuzz_wal.c — libFuzzer target for the WAL scanner (store_wal_scan,
 * wal_scan_records).
 *
 * Recovery trusts whatever the scanner accepts, so on arbitrary bytes it
 * must never read outside its input and must be consistent with itself:
 *   - the valid prefix it returns is no longer than the input;
 *   - the records it reports lie inside that prefix, back to back from
 *     offset 0, with strictly increasing LSNs;
 *   - scanning a copy of exactly the valid prefix gives the same length and
 *     the same records (the copy is a fresh allocation, so ASan catches any
 *     read past the prefix);
 *   - scanning the prefix without its last byte stops at the last record's
 *     start.
 * Read as a segment file, the input either has no header (0) or scans to
 * the header plus exactly what its records region scans to under the
 * header's salt. The input is also read as a list of records to encode:
 * encoding, sealing and scanning them as a segment must give them all
 * back unchanged, and under any other salt none of them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/store_int.h"

typedef struct seen {
    const uint8_t *img;
    size_t len;
    size_t next;      /* where the next record must start */
    store_lsn last;
    store_rec recs[64];
    size_t offs[64];  /* record start offsets */
    size_t n;         /* records seen (recs keeps the first 64) */
} seen;

static void on_rec(void *arg, const store_rec *r) {
    seen *s = arg;
    const uint8_t *start = r->name - WAL_HDR_SIZE;
    if (r->name < s->img + WAL_HDR_SIZE || r->name > s->img + s->len) abort();
    size_t off = (size_t)(start - s->img);
    if (off != s->next) abort();
    if (r->meta != r->name + r->name_len || r->data != r->meta + r->meta_len) abort();
    if (r->name_len > s->len || r->meta_len > s->len || r->data_len > s->len) abort();
    size_t end = (size_t)(r->data - s->img) + r->data_len;
    if (end > s->len) abort();
    if (r->lsn <= s->last) abort();
    if (!r->has_meta && r->meta_len) abort();
    s->last = r->lsn;
    s->next = end;
    if (s->n < 64) {
        s->recs[s->n] = *r;
        s->offs[s->n] = off;
    }
    s->n++;
}

static size_t scan(const uint8_t *img, size_t len, seen *s) {
    memset(s, 0, sizeof *s);
    s->img = img;
    s->len = len;
    size_t n = wal_scan_records(img, len, 0, 0, on_rec, s);
    if (n > len || n != s->next) abort();
    return n;
}

static bool same_rec(const store_rec *a, const seen *sa, const store_rec *b, const seen *sb) {
    return a->type == b->type && a->lsn == b->lsn && a->id == b->id && a->pos == b->pos &&
           a->has_meta == b->has_meta && a->name_len == b->name_len &&
           a->meta_len == b->meta_len && a->data_len == b->data_len &&
           a->name - sa->img == b->name - sb->img;
}

static void check_segment(const uint8_t *data, size_t size) {
    uint64_t seg = 0;
    size_t n = store_wal_scan(data, size, &seg, NULL, NULL);
    wal_seg_hdr h;
    bool hdr = wal_seg_hdr_decode(data, size, &h);
    if (!hdr) {
        if (n != 0) abort();
        return;
    }
    if (seg != h.seg || n < WAL_SEG_HDR || n > size) abort();
    size_t recs = wal_scan_records(data + WAL_SEG_HDR, size - WAL_SEG_HDR, h.salt, 0, NULL, NULL);
    if (n != WAL_SEG_HDR + recs) abort();
}

static void check_scanner(const uint8_t *data, size_t size) {
    static seen first, again;
    size_t n = scan(data, size, &first);

    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, data, n);
    if (scan(copy, n, &again) != n || again.n != first.n) abort();
    for (size_t i = 0; i < first.n && i < 64; i++)
        if (!same_rec(&first.recs[i], &first, &again.recs[i], &again)) abort();
    if (n > 0 && first.n <= 64) {
        size_t last_start = first.offs[first.n - 1];
        if (scan(copy, n - 1, &again) != last_start) abort();
    }
    free(copy);
}

/* Read the input as record specs: per record a type byte, three length
 * bytes, then the lengths' worth of payload bytes taken from the input. */
static void check_roundtrip(const uint8_t *data, size_t size) {
    buf img;
    buf_init(&img);
    store_rec want[32];
    size_t n = 0, off = 0;
    store_lsn lsn = 0;
    while (n < 32 && size - off >= 5) {
        const uint8_t *p = data + off;
        store_rec r;
        memset(&r, 0, sizeof r);
        r.type = (store_rec_type)(1 + p[0] % 4);
        r.lsn = lsn += 1 + p[4];
        r.id = 1 + p[1];
        size_t name_len = p[1] % 16, meta_len = p[2] % 32, data_len = p[3];
        off += 5;
        const uint8_t *payload = data + off;
        size_t avail = size - off;
        switch (r.type) {
        case STORE_REC_CREATE:
            r.has_meta = true;
            r.name_len = name_len;
            r.meta_len = meta_len;
            r.data_len = data_len;
            break;
        case STORE_REC_APPEND:
            r.pos = p[2] * 1000u;
            r.has_meta = p[0] & 8;
            r.meta_len = r.has_meta ? meta_len : 0;
            r.data_len = data_len;
            break;
        case STORE_REC_META:
            r.has_meta = true;
            r.meta_len = meta_len;
            break;
        case STORE_REC_DELETE:
            break;
        }
        if (r.name_len + r.meta_len + r.data_len > avail) break;
        r.name = payload;
        r.meta = payload + r.name_len;
        r.data = r.meta + r.meta_len;
        off += r.name_len + r.meta_len + r.data_len;
        wal_encode(&img, &r);
        want[n++] = r;
    }
    uint32_t salt = size >= 4 ? codec_get_u32(data) : 0x5eedu;
    wal_seal(img.data, img.len, salt);
    buf seg;
    buf_init(&seg);
    wal_seg_hdr h = {.seg = 1 + size, .prev_end = size, .salt = salt};
    uint8_t hdr[WAL_SEG_HDR];
    wal_seg_hdr_encode(hdr, &h);
    buf_append(&seg, hdr, sizeof hdr);
    buf_append(&seg, img.data, img.len);
    static seen got;
    memset(&got, 0, sizeof got);
    got.img = seg.data + WAL_SEG_HDR;
    got.len = img.len;
    uint64_t segno = 0;
    if (store_wal_scan(seg.data, seg.len, &segno, on_rec, &got) != seg.len || got.n != n ||
        segno != h.seg)
        abort();
    if (n > 0 && wal_scan_records(img.data, img.len, salt ^ 1, 0, NULL, NULL) != 0) abort();
    for (size_t i = 0; i < n; i++) {
        const store_rec *a = &want[i], *b = &got.recs[i];
        if (a->type != b->type || a->lsn != b->lsn || a->id != b->id || a->pos != b->pos ||
            a->has_meta != b->has_meta || a->name_len != b->name_len ||
            a->meta_len != b->meta_len || a->data_len != b->data_len ||
            memcmp(a->name, b->name, a->name_len) != 0 ||
            memcmp(a->meta, b->meta, a->meta_len) != 0 ||
            memcmp(a->data, b->data, a->data_len) != 0)
            abort();
    }
    buf_free(&seg);
    buf_free(&img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_scanner(data, size);
    check_segment(data, size);
    check_roundtrip(data, size);
    return 0;
}
