/* subs_int.h — the subscription layer's internals (its own files only).
 *
 * Files, each calling only the ones below it:
 *   routes.c    the HTTP routes under /v1/stream/__ds/
 *   deliver.c   the delivery thread: webhooks (libcurl), leases, retries, notices
 *   registry.c  subscriptions, links, pending work, wakes, acks, fencing
 *   persist.c   each subscription's log: records, replay, compaction
 *   subscription.c  open and close
 *   keys.c      the signing key, JWKS, webhook signatures, wake tokens
 *   urlcheck.c  which webhook targets are allowed
 *
 * Every function here is called with s->mu held unless it says otherwise.
 */
#ifndef WEFT_SUBS_INT_H
#define WEFT_SUBS_INT_H

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "../util/buf.h"
#include "subscription.h"

/* Internal paths of the subscriptions' logs: <prefix><id>@<generation>. */
#define SUBS_LOG_PREFIX "/v1/__subscription/"
#define SUBS_BEFORE_FIRST (-1) /* an acked offset before the first byte */
#define SUBS_MAX_ID 128
#define SUBS_LEASE_DEFAULT_MS 30000
#define SUBS_LEASE_MIN_MS 1000
#define SUBS_LEASE_MAX_MS 600000

enum { LINK_GLOB = 1, LINK_EXPLICIT = 2 };

typedef struct sub_link {
    char *path;    /* stream-root-relative, or absolute (subs_notify) */
    unsigned kind; /* LINK_GLOB | LINK_EXPLICIT */
    int64_t acked; /* last processed offset, inclusive; SUBS_BEFORE_FIRST */
    int64_t tail;  /* known visible end; SUBS_BEFORE_FIRST if none */
    int64_t snap;  /* tail when the current wake was issued; -2 if not in it */
} sub_link;

typedef enum sub_type { SUB_WEBHOOK, SUB_PULL } sub_type;

typedef struct sub {
    char *id;
    sub_type type;
    json_t *config;    /* normalised: type, pattern, streams, webhook, wake_stream, lease_ttl_ms, description */
    const char *pattern; /* in config, NULL if none */
    const char *url;     /* webhook.url, in config */
    const char *wake_stream;
    uint64_t lease_ttl_ms;
    char *base;        /* "http://host:port": callback URLs */
    char *created_at;

    sub_link *links;
    size_t nlinks, cap;

    uint64_t generation; /* of the latest wake */
    char wake_id[24];    /* the wake out now, "" if none */
    char *holder;        /* pull-wake: the worker holding the lease */
    int64_t lease_until; /* wall ms; 0 if no lease runs */

    int64_t deliver_at;  /* webhook: wall ms of the next attempt, 0 if none */
    unsigned attempts;   /* failed attempts in a row */
    bool in_flight;      /* a webhook request is out */
    bool failed;         /* the last attempt failed: status "failed" */

    char *log_path;      /* its log now */
    unsigned log_gen;
    uint64_t log_bytes, snap_bytes;
    bool gone;           /* deleted: freed when the last delivery returns */
    unsigned refs;       /* the registry + deliveries in flight */
} sub;

typedef struct subs_source {
    char *prefix;
    subs_each_fn each;
    void *arg;
} subs_source;

typedef struct delivery delivery; /* a webhook request out (deliver.c) */

typedef struct notice {
    char *path;
    uint64_t tail;
    bool event;
    bool from_streams; /* the stream layer's observer, else subs_notify */
} notice;

struct subs {
    pthread_mutex_t mu;
    streams *st;
    subs_config cfg;
    char *key_file, *public_url;

    sub **list;
    size_t nsubs, cap;
    atomic_size_t nlive; /* nsubs, read without the lock: no subscription, no notices */
    subs_source *sources;
    size_t nsources;

    /* Ed25519 signing key and the key of wake tokens (keys.c). */
    unsigned char pk[32], sk[64], token_key[32];
    char kid[32];

    /* Growth reported by the streams and the layers above (their locks
     * may be held): handled on the delivery thread, or first thing by a
     * request that must see it. */
    pthread_mutex_t q_mu;
    notice *queue;
    size_t qlen, qcap;

    CURLM *multi;
    delivery *inflight; /* the delivery thread's own */
    pthread_t thread;
    bool running;
    atomic_bool quit;
};

/* --- registry.c --- */
/* Wall-clock milliseconds (leases and retry times are logged). */
int64_t subs_now_ms(void);
/* A subscription of a normalised configuration (the caller adds it to the list). */
sub *sub_new(const char *id, json_t *config, const char *base, const char *created_at);
sub *sub_find(subs *s, const char *id);
sub_link *sub_link_find(sub *b, const char *path);
/* The link for path, created (acked and tail at `at`) if missing; kind added. */
sub_link *sub_link_add(subs *s, sub *b, const char *path, unsigned kind, int64_t at);
void sub_link_drop(sub *b, sub_link *l);
/* Whether a subscription's pattern matches path: relative patterns match
 * stream paths, absolute ones the paths of the layers above. */
bool sub_pattern_matches(const char *pattern, const char *path);
/* The absolute internal path of a subscription path. */
void sub_full_path(const char *path, buf *out);
bool sub_has_pending(const sub *b);
/* Issue a wake if there is pending work and none is out. */
void sub_maybe_wake(subs *s, sub *b);
/* End the current wake (done, released, lease over); wake again if pending. Returns whether it did. */
bool sub_wake_end(subs *s, sub *b);
/* Queue a notice (any thread, any lock; takes only q_mu). */
void subs_queue(subs *s, const char *path, uint64_t tail, bool event, bool from_streams);
/* Link and wake for every queued notice. */
void subs_drain(subs *s);
/* Link explicit_paths and (with_pattern) the streams that match b's
 * pattern now, each at its tail (or before the first byte if none). */
void sub_backfill(subs *s, sub *b, json_t *explicit_paths, bool with_pattern);
void sub_free(sub *b);
void sub_unref(sub *b);
/* The streams array of a wake or a GET: path, link_type, acked_offset (and tail_offset, has_pending if full). */
json_t *sub_streams_json(const sub *b, bool full);
void offset_or_minus1(int64_t v, char out[40]);
bool parse_offset_value(const char *s, int64_t *v);

/* --- persist.c --- */
/* Start b's log with its configuration and state (a new subscription, or a
 * compaction). c (may be NULL) waits until it is durable. 0 or -1 with errno. */
int persist_snapshot(subs *s, sub *b, http_conn *c);
/* Append one record; c (may be NULL) waits for it. Compacts when the log has grown. */
int persist_record(subs *s, sub *b, json_t *rec, http_conn *c);
/* Delete b's log. */
int persist_delete(subs *s, sub *b, http_conn *c);
/* Rebuild every subscription from its log. */
void persist_load(subs *s);

/* --- keys.c --- */
int keys_load(subs *s, const char *file, char *err, size_t errlen);
/* The JWKS document. */
json_t *keys_jwks(const subs *s);
/* The Webhook-Signature header value for body sent at unix time t. */
void keys_sign(const subs *s, const char *body, size_t len, int64_t t, buf *out);
/* A wake token for (id, generation, wake id). */
char *keys_token_make(const subs *s, const char *id, uint64_t generation, const char *wake_id);
/* 0 if tok is a token of ours for id (generation and wake id out), -1 if not. */
int keys_token_check(const subs *s, const char *tok, size_t n, const char *id, uint64_t *generation,
                     char wake_id[24]);
void keys_b64url(const unsigned char *p, size_t n, buf *out);

/* --- urlcheck.c (no lock needed) --- */
/* NULL if url may receive webhooks, else why not. */
const char *urlcheck_url(const char *url, bool allow_private);
/* Whether url's host is loopback as written (localhost, 127.0.0.0/8, ::1):
 * only then may its connection go to a loopback address. */
bool urlcheck_loopback_host(const char *url);
/* Whether a resolved address may be connected to. */
bool urlcheck_addr(const struct sockaddr *sa, bool allow_private, bool allow_loopback);

/* --- deliver.c --- */
int deliver_start(subs *s, char *err, size_t errlen); /* without s->mu */
void deliver_stop(subs *s);                           /* without s->mu */
/* The wake reached its receiver: no retry is due (logged if one was). */
void sub_delivered(subs *s, sub *b);
/* Something changed for the delivery thread (a wake, a notice). Any lock. */
void deliver_kick(subs *s);

#endif
