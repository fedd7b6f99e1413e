/* router.c — see router.h. The prefix is matched on the raw path: a
 * percent-encoded one is no session route, and the stream layer answers it
 * (404). */
#include "router.h"

#include <string.h>

void router_handle(void *ctx, http_conn *c, http_request *req) {
    router *r = ctx;
    const http_target *t = &req->target;
    size_t n = sizeof SESSION_PREFIX - 1;
    if (t->path_len >= n && memcmp(t->path, SESSION_PREFIX, n) == 0) sessions_handle(r->ss, c, req);
    else streams_handle(r->st, c, req);
}
