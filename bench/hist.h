/* hist.h — latency histogram for the load generator.
 *
 * HDR-style log-linear buckets over unsigned microsecond values: exact below
 * 256, and above that every power of two is split into 128 equal buckets, so
 * a reported value is within 0.4% of the true one (bucket midpoint). Each
 * thread records into its own histogram; hist_merge() adds them up at the end.
 */
#ifndef LOADGEN_HIST_H
#define LOADGEN_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 8
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_HALF (HIST_SUB / 2)
/* Buckets up to 2^63: the exact range, then one row of HIST_HALF per power of two. */
#define HIST_BUCKETS (HIST_SUB + (64 - HIST_SUB_BITS) * HIST_HALF)

typedef struct hist {
    uint64_t count;
    uint64_t max;
    uint64_t buckets[HIST_BUCKETS];
} hist;

hist *hist_new(void);
void hist_free(hist *h);
void hist_record(hist *h, uint64_t v);
void hist_merge(hist *dst, const hist *src);
/* The value at quantile q (0..1); 0 for an empty histogram. */
uint64_t hist_quantile(const hist *h, double q);

#endif
