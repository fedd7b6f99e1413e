/* fuzz_auth.c — libFuzzer target for the capability-token parser
 * (src/auth/auth.c): untrusted JWTs and path patterns.
 *
 * The input is "<token>\n<pattern>\n<path>". Properties checked:
 *  - verifying never crashes; a grant comes back only for a token signed
 *    with the secret (the fuzzer cannot forge one, so none should pass
 *    unless the input carries a token this target minted itself);
 *  - a token minted here for the input's pattern always verifies, and
 *    grants on a path exactly when the pattern matches it;
 *  - a pattern without '*' matches exactly the equal path.
 * Failures abort() so libFuzzer records the input.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "auth/auth.h"
#include "util/glob.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t SECRET[] = "fuzzing-secret-fuzzing-secret-fuzzing-secret";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static auth *a;
    char err[256];
    if (!a && !(a = auth_open(SECRET, sizeof SECRET - 1, NULL, 0, err, sizeof err))) abort();
    char *in = malloc(size + 1);
    memcpy(in, data, size);
    in[size] = 0;
    char *pattern = strchr(in, '\n');
    char *path = pattern ? strchr(pattern + 1, '\n') : NULL;
    if (pattern) *pattern++ = 0;
    if (path) *path++ = 0;
    const char *why = NULL;
    auth_grant *g = auth_verify(a, in, strlen(in), 1000, &why);
    if (!g && !why) abort();
    auth_grant_free(g);
    if (pattern && path && strlen(pattern) < 200 && strlen(path) < 200) {
        bool m = glob_match(pattern, path);
        if (!strchr(pattern, '*') && m != (strcmp(pattern, path) == 0)) abort();
        json_t *caps = json_pack("{s:[s]}", pattern, "read");
        if (!caps) { /* not UTF-8: no such claim can exist */
            free(in);
            return 0;
        }
        char *caps_text = json_dumps(caps, JSON_COMPACT);
        char *tok = auth_token_mint(SECRET, sizeof SECRET - 1, "fuzz", caps_text, 2000, err, sizeof err);
        if (!tok) abort();
        g = auth_verify(a, tok, strlen(tok), 1000, &why);
        if (!g || auth_grant_allows(g, path, AUTH_READ) != m || auth_grant_allows(g, path, AUTH_WRITE)) abort();
        auth_grant_free(g);
        free(tok);
        free(caps_text);
        json_decref(caps);
    }
    free(in);
    return 0;
}
