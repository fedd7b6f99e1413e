/* idmap.c — hash map from a 64-bit id to a pointer.
 *
 * Used for the set of data files written since the last checkpoint (one
 * entry per stream, possibly a million) and for the stream table built
 * during recovery. Linear probing; nothing is ever removed, the whole map is
 * dropped instead, which keeps probing simple and tombstone-free.
 */
#include "store_int.h"

#include "../util/mem.h"

static size_t slot_of(uint64_t key, size_t cap) {
    /* Ids are sequential; multiply to spread them over the table. */
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

void idmap_init(idmap *m) {
    m->keys = NULL;
    m->vals = NULL;
    m->cap = 0;
    m->count = 0;
}

void idmap_free(idmap *m) {
    free(m->keys);
    free(m->vals);
    idmap_init(m);
}

void *idmap_get(const idmap *m, uint64_t key) {
    if (m->cap == 0) return NULL;
    for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (!m->vals[i]) return NULL;
        if (m->keys[i] == key) return m->vals[i];
    }
}

static void grow(idmap *m) {
    idmap old = *m;
    m->cap = old.cap ? old.cap * 2 : 64;
    m->keys = xcalloc(m->cap, sizeof *m->keys);
    m->vals = xcalloc(m->cap, sizeof *m->vals);
    m->count = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.vals[i]) idmap_put(m, old.keys[i], old.vals[i]);
    free(old.keys);
    free(old.vals);
}

void idmap_put(idmap *m, uint64_t key, void *val) {
    /* Keep the load under 3/4 so probes stay short. */
    if ((m->count + 1) * 4 > m->cap * 3) grow(m);
    for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (!m->vals[i]) {
            m->keys[i] = key;
            m->vals[i] = val;
            m->count++;
            return;
        }
        if (m->keys[i] == key) {
            m->vals[i] = val;
            return;
        }
    }
}
