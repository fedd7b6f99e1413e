/* fuzz_subscription.c — libFuzzer target for what the subscription layer
 * parses from untrusted input (src/subscription/): webhook URLs and the
 * wake tokens of callbacks, acks and releases.
 *
 * The input is "<url>\n<token>". Properties checked:
 *  - checking a URL never crashes; a URL allowed without
 *    --webhook-allow-private is also allowed with it;
 *  - checking a token never crashes and never accepts one this target did
 *    not make (the fuzzer cannot forge the HMAC);
 *  - a token made here for the input's text as a wake id checks back to
 *    the same generation and wake id, and fails for another subscription.
 * Failures abort() so libFuzzer records the input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "subscription/subs_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static subs s; /* only the token key is used */
    memset(s.token_key, 7, sizeof s.token_key);
    char *in = malloc(size + 1);
    memcpy(in, data, size);
    in[size] = 0;
    char *tok = strchr(in, '\n');
    if (tok) *tok++ = 0;
    if (!urlcheck_url(in, false) && urlcheck_url(in, true)) abort();
    if (tok) {
        uint64_t gen;
        char wake[24];
        if (keys_token_check(&s, tok, strlen(tok), "sub-1", &gen, wake) == 0) abort();
        char id[32];
        snprintf(id, sizeof id, "w_%.20s", tok);
        if (!strchr(id, '\n')) {
            char *made = keys_token_make(&s, "sub-1", size, id);
            if (keys_token_check(&s, made, strlen(made), "sub-1", &gen, wake) != 0 || gen != size ||
                strcmp(wake, id) != 0)
                abort();
            if (keys_token_check(&s, made, strlen(made), "sub-2", &gen, wake) == 0) abort();
            free(made);
        }
    }
    free(in);
    return 0;
}
