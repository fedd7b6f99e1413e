/* mem.h — allocation that never returns NULL.
 *
 * Out-of-memory aborts with a message: every caller would otherwise need a
 * recovery path it cannot test, and a half-served request is worse than a
 * restart that the storage engine recovers from cleanly.
 */
#ifndef WEFT_MEM_H
#define WEFT_MEM_H

#include <stddef.h>
#include <stdlib.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);
/* n bytes aligned to `align` (a power of two, a multiple of sizeof(void *)),
 * for O_DIRECT buffers; released with free(). */
void *xaligned(size_t align, size_t n);

#endif
