/* hash.c — the process-wide key and hash_keyed (see hash.h). */
#include "hash.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"

static unsigned char key[crypto_shorthash_KEYBYTES];
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void key_init(void) {
    size_t got = 0;
    while (got < sizeof key) {
        ssize_t n = getrandom(key + got, sizeof key - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            /* Only on a kernel without getrandom (before 3.17): the table
             * still works, it is just not protected. */
            log_write(LOG_WARN, "hash: no random key (getrandom failed); names hash unkeyed");
            memset(key, 0, sizeof key);
            return;
        }
        got += (size_t)n;
    }
}

uint64_t hash_keyed(const void *p, size_t n) {
    pthread_once(&key_once, key_init);
    unsigned char out[crypto_shorthash_BYTES];
    crypto_shorthash(out, p, n, key);
    uint64_t h;
    memcpy(&h, out, sizeof h);
    return h;
}
