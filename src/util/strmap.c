/* strmap.c — see strmap.h. Separate chaining; the table doubles when it
 * holds as many entries as buckets. */
#include "strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "mem.h"

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    void *value;
    char key[];
} entry;

struct strmap {
    entry **buckets;
    size_t nbuckets, n;
};

strmap *strmap_new(void) {
    strmap *m = xcalloc(1, sizeof *m);
    m->nbuckets = 16;
    m->buckets = xcalloc(m->nbuckets, sizeof *m->buckets);
    return m;
}

void strmap_free(strmap *m) {
    if (!m) return;
    for (size_t i = 0; i < m->nbuckets; i++)
        for (entry *e = m->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(m->buckets);
    free(m);
}

static entry **slot(const strmap *m, const char *key, uint64_t h) {
    entry **pp = &m->buckets[h & (m->nbuckets - 1)];
    while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0)) pp = &(*pp)->next;
    return pp;
}

void *strmap_get(const strmap *m, const char *key) {
    entry *e = *slot(m, key, hash_keyed(key, strlen(key)));
    return e ? e->value : NULL;
}

static void grow(strmap *m) {
    size_t nb = m->nbuckets * 2;
    entry **b = xcalloc(nb, sizeof *b);
    for (size_t i = 0; i < m->nbuckets; i++)
        for (entry *e = m->buckets[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = nb;
}

void strmap_put(strmap *m, const char *key, void *value) {
    size_t len = strlen(key);
    uint64_t h = hash_keyed(key, len);
    entry **pp = slot(m, key, h);
    if (*pp) {
        (*pp)->value = value;
        return;
    }
    entry *e = xmalloc(sizeof *e + len + 1);
    e->next = NULL;
    e->hash = h;
    e->value = value;
    memcpy(e->key, key, len + 1);
    *pp = e;
    if (++m->n > m->nbuckets) grow(m);
}

void *strmap_del(strmap *m, const char *key) {
    entry **pp = slot(m, key, hash_keyed(key, strlen(key)));
    entry *e = *pp;
    if (!e) return NULL;
    *pp = e->next;
    void *v = e->value;
    free(e);
    m->n--;
    return v;
}

size_t strmap_size(const strmap *m) { return m->n; }
