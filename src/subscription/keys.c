/* keys.c — the webhook signing key (Ed25519, libsodium), its JWKS, the
 * Webhook-Signature header and the wake tokens that callbacks, acks and
 * releases carry.
 *
 * The key is a 32-byte seed in a file of its own (created 0600 at first
 * start), so receivers keep verifying across restarts. Its kid is "ds_"
 * and the start of its RFC 7638 thumbprint. Wake tokens are
 * "<id>.<generation>.<wake id>" in base64url and an HMAC-SHA-256 of it
 * under a key derived from the seed: a stale but genuine token can then be
 * told apart (409 FENCED) from a forged one (401).
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../util/mem.h"
#include "subs_int.h"

void keys_b64url(const unsigned char *p, size_t n, buf *out) {
    size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    buf_reserve(out, cap);
    sodium_bin2base64((char *)out->data + out->len, cap, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    out->len += strlen((char *)out->data + out->len);
}

static int seed_read_or_create(const char *file, unsigned char seed[32], char *err, size_t errlen) {
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, seed, 32);
        close(fd);
        if (n == 32) return 0;
        snprintf(err, errlen, "%s: a 32-byte Ed25519 seed expected", file);
        return -1;
    }
    if (errno != ENOENT) {
        snprintf(err, errlen, "cannot read %s: %s", file, strerror(errno));
        return -1;
    }
    randombytes_buf(seed, 32);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", file);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, seed, 32) != 32 || fsync(fd) != 0 || close(fd) != 0 || rename(tmp, file) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", file, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    /* the rename itself must survive a power loss, or receivers lose the key */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    int dfd = open(slash ? (dir[0] ? dir : "/") : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

int keys_load(subs *s, const char *file, char *err, size_t errlen) {
    unsigned char seed[32];
    if (seed_read_or_create(file, seed, err, errlen) != 0) return -1;
    crypto_sign_seed_keypair(s->pk, s->sk, seed);
    crypto_generichash(s->token_key, sizeof s->token_key, (const unsigned char *)"weft wake tokens", 16, seed,
                       sizeof seed);
    sodium_memzero(seed, sizeof seed);
    /* RFC 7638: SHA-256 of the required members in lexicographic order */
    buf x, thumb;
    buf_init(&x);
    buf_init(&thumb);
    keys_b64url(s->pk, sizeof s->pk, &x);
    buf_printf(&thumb, "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%.*s\"}", (int)x.len, (char *)x.data);
    unsigned char h[32];
    crypto_hash_sha256(h, thumb.data, thumb.len);
    buf_reset(&x);
    keys_b64url(h, sizeof h, &x);
    snprintf(s->kid, sizeof s->kid, "ds_%.16s", (char *)x.data);
    buf_free(&x);
    buf_free(&thumb);
    return 0;
}

json_t *keys_jwks(const subs *s) {
    buf x;
    buf_init(&x);
    keys_b64url(s->pk, sizeof s->pk, &x);
    buf_append_byte(&x, 0);
    json_t *doc = json_pack("{s:[{s:s,s:s,s:s,s:s,s:s,s:s}]}", "keys", "kty", "OKP", "crv", "Ed25519", "kid",
                            s->kid, "use", "sig", "alg", "EdDSA", "x", (char *)x.data);
    buf_free(&x);
    return doc;
}

void keys_sign(const subs *s, const char *body, size_t len, int64_t t, buf *out) {
    buf msg;
    buf_init(&msg);
    buf_printf(&msg, "%lld.", (long long)t);
    buf_append(&msg, body, len);
    unsigned char sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, NULL, msg.data, msg.len, s->sk);
    buf_printf(out, "t=%lld,kid=%s,ed25519=", (long long)t, s->kid);
    keys_b64url(sig, sizeof sig, out);
    buf_free(&msg);
}

static void token_mac(const subs *s, const char *payload, size_t n, unsigned char mac[32]) {
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, s->token_key, sizeof s->token_key);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)payload, n);
    crypto_auth_hmacsha256_final(&st, mac);
}

char *keys_token_make(const subs *s, const char *id, uint64_t generation, const char *wake_id) {
    buf payload, out;
    buf_init(&payload);
    buf_init(&out);
    buf_printf(&payload, "%s\n%llu\n%s", id, (unsigned long long)generation, wake_id);
    unsigned char mac[32];
    token_mac(s, (const char *)payload.data, payload.len, mac);
    keys_b64url(payload.data, payload.len, &out);
    buf_append_byte(&out, '.');
    keys_b64url(mac, sizeof mac, &out);
    buf_append_byte(&out, 0);
    buf_free(&payload);
    return (char *)out.data;
}

int keys_token_check(const subs *s, const char *tok, size_t n, const char *id, uint64_t *generation,
                     char wake_id[24]) {
    const char *dot = memchr(tok, '.', n);
    if (!dot || n > 1024) return -1;
    unsigned char payload[768], mac[40], want[32];
    size_t plen, mlen;
    if (sodium_base642bin(payload, sizeof payload - 1, tok, (size_t)(dot - tok), NULL, &plen, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        sodium_base642bin(mac, sizeof mac, dot + 1, n - (size_t)(dot + 1 - tok), NULL, &mlen, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || mlen != 32)
        return -1;
    token_mac(s, (const char *)payload, plen, want);
    if (sodium_memcmp(want, mac, 32) != 0) return -1;
    payload[plen] = 0;
    char *nl1 = strchr((char *)payload, '\n'), *nl2 = nl1 ? strchr(nl1 + 1, '\n') : NULL;
    if (!nl2) return -1;
    *nl1 = 0;
    if (strcmp((char *)payload, id) != 0 || strlen(nl2 + 1) >= 24) return -1;
    *generation = strtoull(nl1 + 1, NULL, 10);
    strcpy(wake_id, nl2 + 1);
    return 0;
}
