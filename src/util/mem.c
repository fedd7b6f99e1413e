/* mem.c — allocation that never returns NULL (see mem.h). */
#include "mem.h"

#include <stdio.h>
#include <string.h>

static void oom(size_t n) {
    fprintf(stderr, "weft: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) oom(count * size);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *xstrndup(const char *s, size_t n) {
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void *xmemdup(const void *p, size_t n) {
    void *q = xmalloc(n);
    if (n) memcpy(q, p, n);
    return q;
}

void *xaligned(size_t align, size_t n) {
    void *p;
    if (posix_memalign(&p, align, n ? n : 1) != 0) oom(n);
    return p;
}
