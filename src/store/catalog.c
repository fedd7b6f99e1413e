/* catalog.c — the checkpoint file: every live stream at a WAL boundary.
 *
 * Layout (little-endian):
 *   header   "WEFTCAT1", u32 version, u32 zero, u64 next_id,
 *            u64 boundary_seg, u64 boundary_lsn, u64 count      (48 bytes)
 *   entries  u64 id, u64 length, u32 name_len, u32 meta_len, name, meta
 *   trailer  u32 crc32 of everything before it
 *
 * It is written to catalog.tmp, fsynced and renamed over catalog, then the
 * directory is fsynced, so a reader sees either the old or the new file,
 * whole. A catalog that fails its checks is therefore not a torn write but
 * damage, and recovery refuses to guess (the WAL it summarised is gone).
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/mem.h"

#define CATALOG_MAGIC "WEFTCAT1"
#define CATALOG_VERSION 1
#define CATALOG_HDR_SIZE 48
#define CATALOG_ENTRY_SIZE 24






void catalog_entry_append(buf *b, uint64_t id, uint64_t length, const uint8_t *name,
                          size_t name_len, const uint8_t *meta, size_t meta_len) {
    uint8_t e[CATALOG_ENTRY_SIZE];
    codec_put_u64(e, id);
    codec_put_u64(e + 8, length);
    codec_put_u32(e + 16, (uint32_t)name_len);
    codec_put_u32(e + 20, (uint32_t)meta_len);
    buf_reserve(b, sizeof e + name_len + meta_len);
    buf_append(b, e, sizeof e);
    buf_append(b, name, name_len);
    buf_append(b, meta, meta_len);
}

int catalog_write(int dirfd, const catalog_hdr *h, const buf *entries, bool sync) {
    uint8_t hdr[CATALOG_HDR_SIZE];
    memcpy(hdr, CATALOG_MAGIC, 8);
    codec_put_u32(hdr + 8, CATALOG_VERSION);
    codec_put_u32(hdr + 12, 0);
    codec_put_u64(hdr + 16, h->next_id);
    codec_put_u64(hdr + 24, h->boundary_seg);
    codec_put_u64(hdr + 32, h->boundary_lsn);
    codec_put_u64(hdr + 40, h->count);
    uint32_t crc = codec_crc(0, hdr, sizeof hdr);
    crc = codec_crc(crc, entries->data, entries->len);
    uint8_t trailer[4];
    codec_put_u32(trailer, crc);

    int fd = openat(dirfd, "catalog.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    if (io_write_full(fd, hdr, sizeof hdr) < 0 ||
        io_write_full(fd, entries->data, entries->len) < 0 ||
        io_write_full(fd, trailer, sizeof trailer) < 0 || (sync && fsync(fd) < 0)) {
        int saved = errno;
        close(fd);
        unlinkat(dirfd, "catalog.tmp", 0);
        errno = saved;
        return -1;
    }
    if (close(fd) < 0 || renameat(dirfd, "catalog.tmp", dirfd, "catalog") < 0) {
        int saved = errno;
        unlinkat(dirfd, "catalog.tmp", 0);
        errno = saved;
        return -1;
    }
    if (sync && io_fsync_dir(dirfd, ".") < 0) return -1;
    return 0;
}

/* Read the whole file into b. 0, or -1 with errno. */
static int read_file(int fd, buf *b) {
    struct stat st;
    if (fstat(fd, &st) < 0) return -1;
    buf_reserve(b, (size_t)st.st_size + 1);
    for (;;) {
        if (b->cap - b->len < 4096) buf_reserve(b, 65536);
        ssize_t r = read(fd, b->data + b->len, b->cap - b->len);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) return 0;
        b->len += (size_t)r;
    }
}

int catalog_load(int dirfd, catalog_hdr *h,
                 void (*fn)(void *arg, uint64_t id, uint64_t length, const uint8_t *name,
                            size_t name_len, const uint8_t *meta, size_t meta_len),
                 void *arg, char *err, size_t errlen) {
    int fd = openat(dirfd, "catalog", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return 0;
        snprintf(err, errlen, "cannot open catalog: %s", strerror(errno));
        return -1;
    }
    buf b;
    buf_init(&b);
    int rc = read_file(fd, &b);
    int saved = errno;
    close(fd);
    if (rc < 0) {
        snprintf(err, errlen, "cannot read catalog: %s", strerror(saved));
        buf_free(&b);
        return -1;
    }

    const uint8_t *p = b.data;
    size_t len = b.len;
    if (len < CATALOG_HDR_SIZE + 4 || memcmp(p, CATALOG_MAGIC, 8) != 0) {
        snprintf(err, errlen, "catalog is not a weft catalog (%zu bytes); refusing to open", len);
        goto bad;
    }
    uint32_t crc = codec_crc(0, p, len - 4);
    if (crc != codec_get_u32(p + len - 4)) {
        snprintf(err, errlen,
                 "catalog checksum mismatch: the file is damaged; refusing to open "
                 "(restore the data directory from a backup)");
        goto bad;
    }
    if (codec_get_u32(p + 8) != CATALOG_VERSION) {
        snprintf(err, errlen, "catalog version %u is not supported", codec_get_u32(p + 8));
        goto bad;
    }
    h->next_id = codec_get_u64(p + 16);
    h->boundary_seg = codec_get_u64(p + 24);
    h->boundary_lsn = codec_get_u64(p + 32);
    h->count = codec_get_u64(p + 40);
    if (h->boundary_seg == 0 || h->boundary_lsn == 0) {
        snprintf(err, errlen, "catalog header is invalid; refusing to open");
        goto bad;
    }

    size_t off = CATALOG_HDR_SIZE, end = len - 4;
    for (uint64_t i = 0; i < h->count; i++) {
        if (end - off < CATALOG_ENTRY_SIZE) {
            snprintf(err, errlen, "catalog entry %llu is truncated", (unsigned long long)i);
            goto bad;
        }
        const uint8_t *e = p + off;
        uint32_t name_len = codec_get_u32(e + 16), meta_len = codec_get_u32(e + 20);
        off += CATALOG_ENTRY_SIZE;
        if ((uint64_t)name_len + meta_len > end - off) {
            snprintf(err, errlen, "catalog entry %llu is truncated", (unsigned long long)i);
            goto bad;
        }
        fn(arg, codec_get_u64(e), codec_get_u64(e + 8), p + off, name_len, p + off + name_len, meta_len);
        off += (size_t)name_len + meta_len;
    }
    if (off != end) {
        snprintf(err, errlen, "catalog has %zu unexpected trailing bytes", end - off);
        goto bad;
    }
    buf_free(&b);
    return 1;

bad:
    buf_free(&b);
    return -1;
}
