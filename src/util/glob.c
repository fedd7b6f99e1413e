/* glob.c — see glob.h. */
#include "glob.h"

#include <stdlib.h>
#include <string.h>

#include "mem.h"

/* One row of a dynamic program over the path per pattern token. */
static bool match_all(const char *p, size_t plen, const char *s) {
    size_t m = strlen(s);
    bool *row = xcalloc(m + 1, sizeof *row), *next = xcalloc(m + 1, sizeof *next);
    row[0] = true;
    const char *end = p + plen;
    while (p < end) {
        bool star = *p == '*', any = star && p + 1 < end && p[1] == '*';
        next[0] = star && row[0];
        for (size_t j = 1; j <= m; j++) {
            if (!star) next[j] = row[j - 1] && s[j - 1] == *p;
            else next[j] = row[j] || (next[j - 1] && (any || s[j - 1] != '/'));
        }
        bool *t = row;
        row = next;
        next = t;
        p += any ? 2 : 1;
    }
    bool yes = row[m];
    free(row);
    free(next);
    return yes;
}

bool glob_match(const char *pattern, const char *path) {
    size_t n = strlen(pattern);
    if (match_all(pattern, n, path)) return true;
    /* "a" followed by slash-'**' also covers "a" itself */
    return n >= 3 && strcmp(pattern + n - 3, "/**") == 0 && match_all(pattern, n - 3, path);
}

bool glob_covers(const char *outer, const char *inner) {
    if (!strchr(inner, '*')) return glob_match(outer, inner);
    if (strcmp(outer, inner) == 0) return true;
    size_t n = strlen(outer);
    return n >= 3 && strcmp(outer + n - 3, "/**") == 0 && !memchr(outer, '*', n - 3) &&
           strncmp(inner, outer, n - 2) == 0;
}
