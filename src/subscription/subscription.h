/* subscription.h — wake-ups: the Durable Streams subscriptions (PROTOCOL.md
 * sections 6 and 7), on top of the stream layer.
 *
 * A subscription is a durable cursor over a set of streams (a glob pattern,
 * explicit paths, or both): for each linked stream the offset its worker
 * has processed ("acked"). When a linked stream grows past that offset the
 * subscription has pending work, and unless a wake is already out it is
 * woken: a new generation and wake id, delivered as an Ed25519-signed
 * webhook POST (retried with backoff and jitter until the receiver answers
 * 2xx) or as a wake event appended to a pull-wake stream that workers
 * claim. The worker acks offsets with the wake's token; a stale generation
 * or wake id is refused (409 FENCED); a lease that runs out frees the wake
 * for another worker. docs/subscriptions.md is the protocol as Weft serves it.
 *
 * Paths: stream-root-relative ("events/a" is /v1/stream/events/a), or
 * absolute for what the layers above publish through subs_notify
 * ("/v1/session/<id>": a session, woken by what its agent cares about).
 *
 * Durability: a subscription's configuration, links, acks and generation
 * are logged to an internal stream of its own and rebuilt at open, so an
 * acknowledged wake is not repeated after a restart and fencing survives
 * it; wakes in flight are not (pending work wakes again after a restart).
 *
 * Threads and locking: one mutex guards every subscription. The delivery
 * thread (libcurl's multi interface) sends webhooks and runs the timers
 * (leases, retries). Streams and the layers above report growth through a
 * queue with a lock of its own, so they may call subs_notify while holding
 * their locks; the subscription lock is taken before the stream layer's.
 */
#ifndef WEFT_SUBSCRIPTION_H
#define WEFT_SUBSCRIPTION_H

#include <stdbool.h>
#include <stdint.h>

#include "../http/server.h"
#include "../stream/stream.h"

/* The reserved control routes: subscriptions and the webhook JWKS. */
#define SUBS_PREFIX "/v1/stream/__ds/"

typedef struct subs subs;

typedef struct subs_config {
    const char *key_file;       /* the webhook signing key (created if missing) */
    const char *public_url;     /* base of callback and JWKS URLs; NULL: from the Host header */
    bool allow_private;         /* webhooks to private and link-local addresses (and plain http) */
    unsigned webhook_timeout_ms; /* one delivery attempt */
    unsigned max_subscriptions;
} subs_config;

/* Open the layer on st (which must outlive it): load or create the signing
 * key, rebuild every subscription from its log, start the delivery thread
 * and observe the streams. NULL with a message in err on failure. */
subs *subs_open(streams *st, const subs_config *cfg, char *err, size_t errlen);

/* Stop the delivery thread and free everything (after the HTTP server has
 * stopped, before streams_close). */
void subs_close(subs *s);

/* The HTTP handler for SUBS_PREFIX (ctx is the subs). */
void subs_handle(void *ctx, http_conn *c, http_request *req);

/* --- For the layers above: streams of their own, by absolute path. --- */

/* `path` (absolute) has something for its subscribers up to offset `tail`:
 * `event` if it just happened, else the state found at start-up. A
 * subscription matching path by pattern but not yet linked to it links it
 * from before its first byte (the paths that existed when it was made were
 * linked then), so it wakes. Any thread, any locks held. */
void subs_notify(subs *s, const char *path, uint64_t tail, bool event);

/* How a new subscription finds the existing paths under prefix that the
 * layer above publishes: each(arg, fn, fnarg) calls fn(fnarg, path, tail)
 * for each. Called with the subscription lock held (the layer above must
 * never wait for it: subs_notify does not). Register before serving. */
typedef void (*subs_each_fn)(void *arg, void (*fn)(void *fnarg, const char *path, uint64_t tail),
                             void *fnarg);
void subs_add_source(subs *s, const char *prefix, subs_each_fn each, void *arg);

#endif
