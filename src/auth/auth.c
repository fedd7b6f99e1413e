/* auth.c — see auth.h. JWTs verified with libsodium, claims read with
 * jansson. */
#include "auth.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../util/glob.h"
#include "../util/mem.h"

#define TOKEN_MAX 8192
#define SUB_MAX 256
#define CAPS_MAX 64
#define PATTERN_MAX 512

typedef struct auth_key {
    char kid[128];
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
} auth_key;

struct auth {
    uint8_t *secret;
    size_t secret_len;
    auth_key *keys;
    size_t nkeys;
    int leeway_s;
};

struct auth_grant {
    char *sub;
    json_t *caps;
};

static const char *const CAP_NAMES[] = {"read",    "write",  "create",    "delete", "presence",
                                        "objects", "cancel", "subscribe", "admin"};
#define NCAPS (sizeof CAP_NAMES / sizeof *CAP_NAMES)

const char *auth_cap_name(unsigned cap) {
    for (size_t i = 0; i < NCAPS; i++)
        if (cap == 1u << i) return CAP_NAMES[i];
    return "?";
}

unsigned auth_cap_parse(const char *name) {
    for (size_t i = 0; i < NCAPS; i++)
        if (strcmp(name, CAP_NAMES[i]) == 0) return 1u << i;
    return 0;
}

/* base64url without padding into out (at most max bytes). */
static bool b64url_decode(const char *in, size_t n, uint8_t *out, size_t max, size_t *len) {
    return sodium_base642bin(out, max, in, n, NULL, len, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0;
}

static char *b64url_encode(const void *in, size_t n) {
    size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = xmalloc(cap);
    sodium_bin2base64(out, cap, in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return out;
}

static void hs256(const uint8_t *key, size_t keylen, const char *msg, size_t n, uint8_t mac[32]) {
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, keylen);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)msg, n);
    crypto_auth_hmacsha256_final(&st, mac);
}

/* The Ed25519 keys of a JWKS file: {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ..., "kid"?}]}. */
static bool load_jwks(auth *a, const char *path, char *err, size_t errlen) {
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    if (!doc) {
        snprintf(err, errlen, "%s: %s (line %d)", path, je.text, je.line);
        return false;
    }
    json_t *keys = json_object_get(doc, "keys");
    size_t i;
    json_t *k;
    if (!json_is_array(keys)) {
        snprintf(err, errlen, "%s: expected a JWKS document {\"keys\": [...]}", path);
        json_decref(doc);
        return false;
    }
    a->keys = xcalloc(json_array_size(keys) + 1, sizeof *a->keys);
    json_array_foreach(keys, i, k) {
        const char *kty = json_string_value(json_object_get(k, "kty"));
        const char *crv = json_string_value(json_object_get(k, "crv"));
        const char *x = json_string_value(json_object_get(k, "x"));
        const char *kid = json_string_value(json_object_get(k, "kid"));
        if (!kty || strcmp(kty, "OKP") || !crv || strcmp(crv, "Ed25519")) continue; /* not ours */
        auth_key *key = &a->keys[a->nkeys];
        size_t len = 0;
        if (!x || !b64url_decode(x, strlen(x), key->pk, sizeof key->pk, &len) || len != sizeof key->pk) {
            snprintf(err, errlen, "%s: keys[%zu]: x must be a base64url Ed25519 public key", path, i);
            json_decref(doc);
            return false;
        }
        snprintf(key->kid, sizeof key->kid, "%s", kid ? kid : "");
        a->nkeys++;
    }
    json_decref(doc);
    if (a->nkeys == 0) {
        snprintf(err, errlen, "%s: no Ed25519 (OKP) key in it", path);
        return false;
    }
    return true;
}

auth *auth_open(const uint8_t *secret, size_t secret_len, const char *jwks_path, int leeway_s, char *err,
                size_t errlen) {
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to start");
        return NULL;
    }
    auth *a = xcalloc(1, sizeof *a);
    a->leeway_s = leeway_s;
    if (secret && secret_len) {
        if (secret_len < 32) {
            snprintf(err, errlen, "the HS256 secret has %zu bytes: use at least 32", secret_len);
            free(a);
            return NULL;
        }
        a->secret = xmalloc(secret_len);
        memcpy(a->secret, secret, secret_len);
        a->secret_len = secret_len;
    }
    if (jwks_path && !load_jwks(a, jwks_path, err, errlen)) {
        auth_close(a);
        return NULL;
    }
    return a;
}

void auth_close(auth *a) {
    if (!a) return;
    if (a->secret) sodium_memzero(a->secret, a->secret_len);
    free(a->secret);
    free(a->keys);
    free(a);
}

/* A JSON object from one base64url part. */
static json_t *json_part(const char *p, size_t n) {
    uint8_t raw[TOKEN_MAX];
    size_t len;
    if (!b64url_decode(p, n, raw, sizeof raw, &len)) return NULL;
    json_t *v = json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, NULL);
    if (v && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

static const char *check_signature(const auth *a, json_t *header, const char *signed_part, size_t n,
                                   const char *sig64, size_t sig64_len) {
    const char *alg = json_string_value(json_object_get(header, "alg"));
    const char *kid = json_string_value(json_object_get(header, "kid"));
    uint8_t sig[crypto_sign_BYTES];
    size_t siglen;
    if (!alg) return "malformed token: no alg";
    if (!b64url_decode(sig64, sig64_len, sig, sizeof sig, &siglen)) return "malformed token: signature";
    if (strcmp(alg, "HS256") == 0) {
        if (!a->secret) return "HS256 tokens are not accepted (no --auth-secret-file)";
        uint8_t mac[32];
        hs256(a->secret, a->secret_len, signed_part, n, mac);
        return siglen == sizeof mac && sodium_memcmp(mac, sig, sizeof mac) == 0 ? NULL : "bad signature";
    }
    if (strcmp(alg, "EdDSA") == 0) {
        if (!a->nkeys) return "EdDSA tokens are not accepted (no --auth-jwks-file)";
        if (siglen != crypto_sign_BYTES) return "bad signature";
        for (size_t i = 0; i < a->nkeys; i++) {
            if (kid && strcmp(kid, a->keys[i].kid) != 0) continue;
            if (crypto_sign_verify_detached(sig, (const uint8_t *)signed_part, n, a->keys[i].pk) == 0) return NULL;
        }
        return kid ? "bad signature (or unknown kid)" : "bad signature";
    }
    return "unsupported alg: HS256 or EdDSA";
}

static const char *check_claims(const auth *a, json_t *claims, int64_t now) {
    json_t *sub = json_object_get(claims, "sub");
    json_t *exp = json_object_get(claims, "exp");
    json_t *nbf = json_object_get(claims, "nbf");
    json_t *caps = json_object_get(claims, "caps");
    if (!json_is_string(sub) || json_string_length(sub) == 0 || json_string_length(sub) > SUB_MAX ||
        memchr(json_string_value(sub), 0, json_string_length(sub)))
        return "malformed token: sub must be a client id of 1-256 bytes";
    /* Integers only, compared without overflow: now and the leeway are small. */
    if (!json_is_integer(exp)) return "malformed token: exp is required (an integer)";
    if (json_integer_value(exp) < now - a->leeway_s) return "token expired";
    if (nbf && !json_is_integer(nbf)) return "malformed token: nbf must be an integer";
    if (nbf && json_integer_value(nbf) > now + a->leeway_s) return "token not yet valid (nbf)";
    if (caps && !json_is_object(caps)) return "malformed token: caps must be an object";
    const char *pattern;
    json_t *list;
    if (json_object_size(caps) > CAPS_MAX) return "malformed token: more than 64 caps entries";
    json_object_foreach(caps, pattern, list) {
        if (strlen(pattern) > PATTERN_MAX) return "malformed token: a caps pattern longer than 512 bytes";
        if (!json_is_array(list)) return "malformed token: each caps entry is an array of names";
        size_t i;
        json_t *name;
        json_array_foreach(list, i, name) if (!json_is_string(name) || !auth_cap_parse(json_string_value(name)))
            return "malformed token: unknown capability (read, write, create, delete, presence, objects, "
                   "cancel, subscribe, admin)";
    }
    return NULL;
}

auth_grant *auth_verify(const auth *a, const char *token, size_t len, int64_t now_s, const char **why) {
    const char *dot1 = len < TOKEN_MAX ? memchr(token, '.', len) : NULL;
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot1 || !dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token))) {
        *why = len >= TOKEN_MAX ? "token too long" : "malformed token: expected header.payload.signature";
        return NULL;
    }
    json_t *header = json_part(token, (size_t)(dot1 - token));
    json_t *claims = header ? json_part(dot1 + 1, (size_t)(dot2 - dot1 - 1)) : NULL;
    *why = !header ? "malformed token: header" : !claims ? "malformed token: payload" : NULL;
    if (!*why) *why = check_signature(a, header, token, (size_t)(dot2 - token), dot2 + 1, len - (size_t)(dot2 + 1 - token));
    if (!*why) *why = check_claims(a, claims, now_s);
    auth_grant *g = NULL;
    if (!*why) {
        g = xcalloc(1, sizeof *g);
        const char *sub = json_string_value(json_object_get(claims, "sub"));
        g->sub = xstrndup(sub, strlen(sub));
        g->caps = json_incref(json_object_get(claims, "caps"));
    }
    json_decref(header);
    json_decref(claims);
    return g;
}

void auth_grant_free(auth_grant *g) {
    if (!g) return;
    free(g->sub);
    json_decref(g->caps);
    free(g);
}

const char *auth_grant_subject(const auth_grant *g) { return g->sub; }

/* The capabilities g holds on what `covered` says its patterns cover. */
static bool grant_allows(const auth_grant *g, const char *what, unsigned caps,
                         bool (*covered)(const char *pattern, const char *what)) {
    unsigned have = 0;
    const char *pattern;
    json_t *list;
    json_object_foreach(g->caps, pattern, list) {
        if (!covered(pattern, what)) continue;
        size_t i;
        json_t *name;
        json_array_foreach(list, i, name) have |= auth_cap_parse(json_string_value(name));
    }
    if (have & AUTH_ADMIN) return true;
    return (have & caps) == caps;
}

bool auth_grant_allows(const auth_grant *g, const char *path, unsigned caps) {
    return grant_allows(g, path, caps, glob_match);
}

bool auth_grant_allows_pattern(const auth_grant *g, const char *pattern, unsigned caps) {
    return grant_allows(g, pattern, caps, glob_covers);
}

char *auth_token_mint(const uint8_t *secret, size_t secret_len, const char *sub, const char *caps_json,
                      int64_t exp_s, char *err, size_t errlen) {
    json_error_t je;
    json_t *caps = json_loads(caps_json, 0, &je);
    if (!json_is_object(caps)) {
        snprintf(err, errlen, "caps must be a JSON object {\"<path pattern>\": [\"read\", ...]}: %s",
                 caps ? "not an object" : je.text);
        json_decref(caps);
        return NULL;
    }
    json_t *claims = json_pack("{s:s, s:I, s:I, s:o}", "sub", sub, "iat", (json_int_t)time(NULL), "exp",
                               (json_int_t)exp_s, "caps", caps);
    const char *why = check_claims(&(auth){.leeway_s = 0}, claims, 0);
    if (why) {
        snprintf(err, errlen, "%s", why);
        json_decref(claims);
        return NULL;
    }
    char *payload = json_dumps(claims, JSON_COMPACT);
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char *h64 = b64url_encode(header, sizeof header - 1), *p64 = b64url_encode(payload, strlen(payload));
    size_t n = strlen(h64) + 1 + strlen(p64);
    char *signing = xmalloc(n + 1);
    snprintf(signing, n + 1, "%s.%s", h64, p64);
    uint8_t mac[32];
    hs256(secret, secret_len, signing, n, mac);
    char *s64 = b64url_encode(mac, sizeof mac);
    size_t total = n + 1 + strlen(s64) + 1;
    char *token = xmalloc(total);
    snprintf(token, total, "%s.%s", signing, s64);
    free(payload);
    free(h64);
    free(p64);
    free(signing);
    free(s64);
    json_decref(claims);
    return token;
}
