/* hist.c — log-linear latency histogram (see hist.h). */
#include "hist.h"

#include <stdio.h>
#include <stdlib.h>

hist *hist_new(void) {
    hist *h = calloc(1, sizeof *h);
    if (!h) {
        perror("loadgen: calloc");
        exit(2);
    }
    return h;
}

void hist_free(hist *h) { free(h); }

/* Values below HIST_SUB have a bucket each. Above, the top HIST_SUB_BITS bits
 * select the bucket: `shift` is how many low bits are dropped, and each shift
 * level owns HIST_HALF buckets (the leading bit is always set). */
static unsigned bucket_of(uint64_t v) {
    if (v < HIST_SUB) return (unsigned)v;
    unsigned shift = (unsigned)(63 - __builtin_clzll(v)) - (HIST_SUB_BITS - 1);
    return HIST_SUB + (shift - 1) * HIST_HALF + (unsigned)((v >> shift) - HIST_HALF);
}

/* The midpoint of bucket b, the value reported for everything in it. */
static uint64_t bucket_value(unsigned b) {
    if (b < HIST_SUB) return b;
    unsigned shift = (b - HIST_SUB) / HIST_HALF + 1;
    uint64_t low = (uint64_t)(HIST_HALF + (b - HIST_SUB) % HIST_HALF) << shift;
    return low + ((1ull << shift) >> 1);
}

void hist_record(hist *h, uint64_t v) {
    h->buckets[bucket_of(v)]++;
    h->count++;
    if (v > h->max) h->max = v;
}

void hist_merge(hist *dst, const hist *src) {
    for (unsigned i = 0; i < HIST_BUCKETS; i++) dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    if (src->max > dst->max) dst->max = src->max;
}

uint64_t hist_quantile(const hist *h, double q) {
    if (h->count == 0) return 0;
    /* The rank of the sample at q, counted from 1, as HdrHistogram does. */
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.5);
    if (rank < 1) rank = 1;
    if (rank > h->count) rank = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = bucket_value(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}
