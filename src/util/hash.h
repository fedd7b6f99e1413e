/* hash.h — keyed hashing of names that clients choose.
 *
 * A hash table keyed by client-chosen strings (stream paths) with an
 * unkeyed hash lets a client pick names that all land in one bucket, and
 * turn every lookup there into a walk of the whole chain. hash_keyed is
 * SipHash-2-4 (libsodium's crypto_shorthash) under a key drawn from the
 * kernel's random source once per process, so which names collide cannot
 * be known from outside.
 */
#ifndef WEFT_UTIL_HASH_H
#define WEFT_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

/* The keyed hash of p[0..n). Thread-safe; the first call draws the key. */
uint64_t hash_keyed(const void *p, size_t n);

#endif
