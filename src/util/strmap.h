/* strmap.h — a hash map from strings to pointers, for tables keyed by
 * names that clients choose (shape handles, definitions, log paths).
 * Hashed with hash_keyed (hash.h), so no client can pick keys that all
 * collide. Keys are copied; values are the caller's.
 *
 * Not thread-safe: the owner's lock guards it.
 */
#ifndef WEFT_UTIL_STRMAP_H
#define WEFT_UTIL_STRMAP_H

#include <stddef.h>

typedef struct strmap strmap;

strmap *strmap_new(void);
void strmap_free(strmap *m); /* the map, not the values */

/* The value of key, or NULL. */
void *strmap_get(const strmap *m, const char *key);
/* Set key to value (replacing any). */
void strmap_put(strmap *m, const char *key, void *value);
/* Remove key; its value, or NULL if it had none. */
void *strmap_del(strmap *m, const char *key);
size_t strmap_size(const strmap *m);

#endif
