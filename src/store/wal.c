/* wal.c — the WAL segment and record formats: encoding, and the scanner
 * recovery trusts.
 *
 * The layout is documented in store_int.h. The scanner is the only code
 * that reads WAL bytes back, so it is written to be safe on any input (it is
 * fuzzed): every length is checked against the bytes present before it is
 * used, the CRC is checked before any field is believed, and the first bad
 * record ends the scan — after a torn write nothing later can be trusted.
 */
#include "store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "../util/log.h"
#include "../util/mem.h"

#define SEG_MAGIC "WEFTWAL1"

static void put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

void wal_seg_hdr_encode(uint8_t out[WAL_SEG_HDR], const wal_seg_hdr *h) {
    memcpy(out, SEG_MAGIC, 8);
    codec_put_u64(out + 8, h->seg);
    codec_put_u64(out + 16, h->prev_end);
    codec_put_u32(out + 24, h->salt);
    codec_put_u32(out + 28, codec_crc(0, out, 28));
}

bool wal_seg_hdr_decode(const uint8_t *img, size_t len, wal_seg_hdr *h) {
    if (len < WAL_SEG_HDR || memcmp(img, SEG_MAGIC, 8) != 0) return false;
    if (codec_crc(0, img, 28) != codec_get_u32(img + 28)) return false;
    h->seg = codec_get_u64(img + 8);
    h->prev_end = codec_get_u64(img + 16);
    h->salt = codec_get_u32(img + 24);
    return true;
}

uint32_t wal_salt_new(void) {
    /* Never 0: sealed with it, records would read like unsealed ones, which
     * a client can write into its data. */
    uint32_t salt;
    if (getrandom(&salt, sizeof salt, 0) == (ssize_t)sizeof salt) return salt ? salt : 1;
    /* Only on a kernel without getrandom (before 3.17): a salt from the
     * clock still differs from the segment before's, which is what keeps
     * an older segment's records out; chosen records it does not stop. */
    log_write(LOG_WARN, "store: getrandom failed; WAL salt from the clock");
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return ((uint32_t)t.tv_nsec ^ (uint32_t)t.tv_sec) | 1;
}

void wal_seal(uint8_t *p, size_t n, uint32_t salt) {
    for (size_t off = 0; n - off >= WAL_HDR_SIZE;) {
        uint32_t total = codec_get_u32(p + off + 4);
        if (total < WAL_HDR_SIZE || total > n - off) break;
        codec_put_u32(p + off, codec_get_u32(p + off) ^ salt);
        off += total;
    }
}

size_t wal_rec_size(const store_rec *r) {
    return WAL_HDR_SIZE + r->name_len + r->meta_len + r->data_len;
}

void wal_encode(buf *out, const store_rec *r) {
    size_t payload = r->name_len + r->meta_len + r->data_len;
    uint8_t h[WAL_HDR_SIZE];
    codec_put_u32(h + 4, (uint32_t)(WAL_HDR_SIZE + payload));
    h[8] = (uint8_t)r->type;
    h[9] = r->has_meta ? WAL_FLAG_META : 0;
    put_u16(h + 10, 0);
    codec_put_u32(h + 12, (uint32_t)r->name_len);
    codec_put_u32(h + 16, (uint32_t)r->meta_len);
    codec_put_u32(h + 20, (uint32_t)r->data_len);
    codec_put_u64(h + 24, r->lsn);
    codec_put_u64(h + 32, r->id);
    codec_put_u64(h + 40, r->pos);
    buf_reserve(out, WAL_HDR_SIZE + payload);
    size_t at = out->len;
    buf_append(out, h, sizeof h);
    buf_append(out, r->name, r->name_len);
    buf_append(out, r->meta, r->meta_len);
    buf_append(out, r->data, r->data_len);
    /* Summed in place, in one pass: with a carry-less multiply CRC that is
     * tens of nanoseconds for an append, cheap enough to do under the
     * store lock, where the LSN is assigned. */
    uint8_t *rec = (uint8_t *)out->data + at;
    codec_put_u32(rec, codec_crc(0, rec + 4, WAL_HDR_SIZE - 4 + payload));
}

/* Field rules per type, beyond the lengths adding up. A record that breaks
 * them cannot have been written by us, so it counts as corrupt. */
static bool rec_valid(const store_rec *r, uint8_t flags, uint16_t zero) {
    if (zero != 0 || (flags & ~WAL_FLAG_META) != 0) return false;
    if (!r->has_meta && r->meta_len != 0) return false;
    if (r->id == 0) return false;
    switch (r->type) {
    case STORE_REC_CREATE:
        return r->has_meta && r->pos == 0;
    case STORE_REC_APPEND:
        /* pos + data_len must stay a valid file offset. */
        return r->name_len == 0 && r->pos <= (uint64_t)INT64_MAX - r->data_len;
    case STORE_REC_META:
        return r->has_meta && r->name_len == 0 && r->data_len == 0 && r->pos == 0;
    case STORE_REC_DELETE:
        return !r->has_meta && r->name_len == 0 && r->data_len == 0 && r->pos == 0;
    }
    return false;
}

size_t wal_scan_records(const uint8_t *img, size_t len, uint32_t salt, store_lsn prev_lsn,
                        void (*fn)(void *arg, const store_rec *r), void *arg) {
    size_t off = 0;
    while (len - off >= WAL_HDR_SIZE) {
        const uint8_t *h = img + off;
        uint32_t total = codec_get_u32(h + 4);
        if (total < WAL_HDR_SIZE || total > WAL_REC_MAX || total > len - off) break;
        uint32_t crc = codec_crc(0, h + 4, total - 4);
        if ((crc ^ salt) != codec_get_u32(h)) break;

        store_rec r;
        r.type = (store_rec_type)h[8];
        r.has_meta = (h[9] & WAL_FLAG_META) != 0;
        r.name_len = codec_get_u32(h + 12);
        r.meta_len = codec_get_u32(h + 16);
        r.data_len = codec_get_u32(h + 20);
        r.lsn = codec_get_u64(h + 24);
        r.id = codec_get_u64(h + 32);
        r.pos = codec_get_u64(h + 40);
        /* Summed in 64 bits: three u32s cannot overflow it. */
        if ((uint64_t)WAL_HDR_SIZE + r.name_len + r.meta_len + r.data_len != total) break;
        if (!rec_valid(&r, h[9], get_u16(h + 10))) break;
        if (r.lsn <= prev_lsn) break;
        r.name = h + WAL_HDR_SIZE;
        r.meta = r.name + r.name_len;
        r.data = r.meta + r.meta_len;
        if (fn) fn(arg, &r);
        prev_lsn = r.lsn;
        off += total;
    }
    return off;
}

size_t store_wal_scan(const uint8_t *img, size_t len, uint64_t *seg,
                      void (*fn)(void *arg, const store_rec *r), void *arg) {
    wal_seg_hdr h;
    if (!wal_seg_hdr_decode(img, len, &h)) return 0;
    if (seg) *seg = h.seg;
    return WAL_SEG_HDR + wal_scan_records(img + WAL_SEG_HDR, len - WAL_SEG_HDR, h.salt, 0, fn, arg);
}

void wal_segment_path(char out[WAL_PATH_LEN], uint64_t seg) {
    snprintf(out, WAL_PATH_LEN, "wal/%016llx.log", (unsigned long long)seg);
}


static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int wal_list_segments(int dirfd, uint64_t **out, size_t *n) {
    int fd = openat(dirfd, "wal", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    uint64_t *segs = NULL;
    size_t len = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint64_t seg;
        if (!codec_parse_hex_name(e->d_name, ".log", &seg)) continue;
        if (len == cap) {
            cap = cap ? cap * 2 : 16;
            segs = xrealloc(segs, cap * sizeof *segs);
        }
        segs[len++] = seg;
    }
    closedir(d);
    if (len > 1) qsort(segs, len, sizeof *segs, cmp_u64);
    *out = segs;
    *n = len;
    return 0;
}
