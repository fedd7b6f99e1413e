/* codec.c — the on-disk encodings shared by the WAL and the catalog:
 * little-endian integers, CRC-32 (the gzip polynomial, libdeflate's fast
 * implementation) over any length, and the
 * "<16 hex digits><suffix>" file names of segments and data files. */
#include "store_int.h"

#include <libdeflate.h>
#include <string.h>

void codec_put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

void codec_put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

uint32_t codec_get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

uint64_t codec_get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

uint32_t codec_crc(uint32_t crc, const uint8_t *p, size_t n) {
    /* libdeflate answers a NULL buffer with the initial value, dropping
     * crc; an empty buffer (often NULL, as in an empty buf) changes nothing. */
    if (n == 0) return crc;
    return libdeflate_crc32(crc, p, n);
}

bool codec_parse_hex_name(const char *name, const char *suffix, uint64_t *v) {
    size_t sl = strlen(suffix);
    if (strlen(name) != 16 + sl || strcmp(name + 16, suffix) != 0) return false;
    uint64_t x = 0;
    for (int i = 0; i < 16; i++) {
        char c = name[i];
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else return false;
        x = x << 4 | (uint64_t)d;
    }
    *v = x;
    return true;
}
