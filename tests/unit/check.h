/* check.h — the unit tests' assertion macros.
 *
 * Each CHECK counts as one assertion; a failure prints file:line and the
 * expression and the test binary exits non-zero at the end. main() calls
 * check_summary(), which prints "N passed, N failed".
 */
#ifndef WEFT_CHECK_H
#define WEFT_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (cond) {                                                              \
            check_passed++;                                                      \
        } else {                                                                 \
            check_failed++;                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                \
    do {                                                                                  \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                   \
        if (check_a_ == check_b_) {                                                       \
            check_passed++;                                                               \
        } else {                                                                          \
            check_failed++;                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__,    \
                    __LINE__, #a, #b, check_a_, check_b_);                                \
        }                                                                                 \
    } while (0)

/* Compare a byte range with a C string. */
#define CHECK_MEM_STR(p, n, s)                                                            \
    do {                                                                                  \
        size_t check_n_ = (n);                                                            \
        const char *check_s_ = (s);                                                       \
        if (check_n_ == strlen(check_s_) && (check_n_ == 0 || memcmp((p), check_s_, check_n_) == 0)) { \
            check_passed++;                                                               \
        } else {                                                                          \
            check_failed++;                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s == \"%s\" (got \"%.*s\")\n", __FILE__, \
                    __LINE__, #p, check_s_, (int)check_n_, (const char *)(p));            \
        }                                                                                 \
    } while (0)

static inline int check_summary(const char *name) {
    printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
