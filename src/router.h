/* router.h — which layer answers a request: the session routes under
 * /v1/session/, everything else (streams, /healthz, CORS preflight) by the
 * stream layer. The HTTP server's handler; its ctx is a router. */
#ifndef WEFT_ROUTER_H
#define WEFT_ROUTER_H

#include "http/server.h"
#include "session/session.h"
#include "stream/stream.h"

typedef struct router {
    streams *st;
    sessions *ss;
} router;

void router_handle(void *ctx, http_conn *c, http_request *req);

#endif
