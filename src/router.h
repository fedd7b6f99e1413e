/* router.h — which layer answers a request: the session routes under
 * /v1/session/, the subscription routes under /v1/stream/__ds/, shapes
 * (/v1/shape, /v1/health) by the shape layer, everything
 * else (streams, /healthz, CORS preflight) by the stream layer. With
 * capability tokens configured (auth != NULL), every request but a CORS
 * preflight, /healthz, the webhook JWKS and a wake's own callback, ack or
 * release (which carry the wake's token) first shows a token that grants
 * what it asks for (401 without a valid one, 403 naming the capability it
 * lacks); its subject is the caller's identity for the layers below. The
 * HTTP server's handler; its ctx is a router. */
#ifndef WEFT_ROUTER_H
#define WEFT_ROUTER_H

#include "auth/auth.h"
#include "http/server.h"
#include "session/session.h"
#include "stream/stream.h"
#include "shape/shape.h"
#include "subscription/subscription.h"

typedef struct router {
    streams *st;
    sessions *ss;
    subs *subs;
    shapes *shapes;
    auth *auth; /* NULL: open to anyone */
} router;

void router_handle(void *ctx, http_conn *c, http_request *req);

#endif
