/* auth.h — capability tokens: who a request is and what it may do.
 *
 * A token is a JWT (compact JWS) signed with HS256 under a shared secret
 * (--auth-secret-file) or EdDSA (Ed25519) under a public key of a JWKS file
 * (--auth-jwks-file). Its claims:
 *   sub    the caller's client id: presence, messages and runs use it
 *   exp    expiry, nbf not-before (seconds since the epoch), each with
 *          --auth-leeway of clock skew allowed; exp is required
 *   caps   {"<path pattern>": ["read", "write", ...], ...}
 * A pattern is a path where '*' matches any run of characters except '/',
 * '**' any run at all, and a final slash-'**' also the path without it:
 * "/v1/session/trip-*" or "/v1/stream/chat/" followed by '**'. Capabilities: read, write
 * (append: messages, chunks, runs), create, delete, presence, objects,
 * cancel, subscribe, admin (all of them).
 *
 * Verification uses libsodium (HMAC-SHA-256, Ed25519, base64url) and
 * jansson for the claims; an auth object is immutable once opened, so any
 * thread may verify with it.
 */
#ifndef WEFT_AUTH_H
#define WEFT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    AUTH_READ = 1 << 0,
    AUTH_WRITE = 1 << 1,
    AUTH_CREATE = 1 << 2,
    AUTH_DELETE = 1 << 3,
    AUTH_PRESENCE = 1 << 4,
    AUTH_OBJECTS = 1 << 5,
    AUTH_CANCEL = 1 << 6,
    AUTH_SUBSCRIBE = 1 << 7,
    AUTH_ADMIN = 1 << 8,
};

typedef struct auth auth;
typedef struct auth_grant auth_grant;

/* Open with an HS256 secret (may be NULL) and/or a JWKS file of Ed25519
 * keys (may be NULL). NULL with a message in err on failure. */
auth *auth_open(const uint8_t *secret, size_t secret_len, const char *jwks_path, int leeway_s, char *err,
                size_t errlen);
void auth_close(auth *a);

/* Verify a token at now_s. The grant (freed by the caller), or NULL with
 * *why set to a short reason (malformed, bad signature, expired, ...). */
auth_grant *auth_verify(const auth *a, const char *token, size_t len, int64_t now_s, const char **why);
void auth_grant_free(auth_grant *g);
/* The token's subject. */
const char *auth_grant_subject(const auth_grant *g);
/* Whether the grant holds every capability of `caps` on `path`. */
bool auth_grant_allows(const auth_grant *g, const char *path, unsigned caps);

/* Whether g holds all of caps on every path a pattern (a subscription's)
 * matches; see glob_covers for how that is judged. */
bool auth_grant_allows_pattern(const auth_grant *g, const char *pattern, unsigned caps);

/* The name of one capability bit ("read", ...). */
const char *auth_cap_name(unsigned cap);
/* Parse a capability name; 0 if unknown. */
unsigned auth_cap_parse(const char *name);

/* A new HS256 token (malloc'd) for sub with caps (a JSON object text as in
 * the claims) expiring at exp_s; NULL with a message in err if caps is
 * not such an object. For `weft token`. */
char *auth_token_mint(const uint8_t *secret, size_t secret_len, const char *sub, const char *caps_json,
                      int64_t exp_s, char *err, size_t errlen);

#endif
