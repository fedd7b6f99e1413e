/* presence.c — who is in a session, keyed by person (client id), not by
 * connection.
 *
 * A member enters, updates its data and leaves by request; each is one
 * event (an update with the same data logs nothing). Beside that the layer
 * counts each person's live connections to the session's log (long-poll
 * or SSE readers that named a client): two tabs are one member, and a
 * member whose last connection closed — or who entered without one — leaves
 * once it has had none for the grace period, so a refresh does not flap.
 * After a restart nobody has a connection: whoever reconnects within the
 * grace period stays.
 *
 * The counts have their own mutex, the innermost lock: a reader's end is
 * reported by the stream layer under its own lock, which the session lock
 * is taken before.
 */
#include <string.h>

#include "../util/mem.h"
#include "session_int.h"

/* The tracking entry of client in s, created if asked. */
static presence_conn *track(session *s, const char *client, bool create) {
    for (size_t i = 0; i < s->nconns; i++)
        if (strcmp(s->conns[i].client, client) == 0) return &s->conns[i];
    if (!create) return NULL;
    if (s->nconns == s->conns_cap) {
        s->conns_cap = s->conns_cap ? s->conns_cap * 2 : 4;
        s->conns = xrealloc(s->conns, s->conns_cap * sizeof *s->conns);
    }
    presence_conn *p = &s->conns[s->nconns++];
    *p = (presence_conn){.client = xstrndup(client, strlen(client)), .idle_since = session_now_ms()};
    return p;
}

/* A reader's end, as the stream layer reports it: queued under conn_mu
 * only, and counted by presence_drain under the session lock. */
typedef struct conn_note {
    sessions *ss;
    struct conn_note *next;
    char *sid, *client;
} conn_note;

static void on_reader_end(void *arg) {
    conn_note *n = arg;
    pthread_mutex_lock(&n->ss->conn_mu);
    n->next = n->ss->ended;
    n->ss->ended = n;
    pthread_mutex_unlock(&n->ss->conn_mu);
}

bool presence_serve_read(sessions *ss, session *s, const char *client, http_conn *c,
                         http_request *req, const char *log) {
    if (!client) return streams_serve_read(ss->st, c, req, log, NULL, NULL);
    conn_note *n = xcalloc(1, sizeof *n);
    *n = (conn_note){.ss = ss, .sid = xstrndup(s->id, strlen(s->id)),
                     .client = xstrndup(client, strlen(client))};
    presence_conn *p = track(s, client, true);
    p->live++;
    if (streams_serve_read(ss->st, c, req, log, on_reader_end, n)) return true;
    p->live--;
    free(n->sid);
    free(n->client);
    free(n);
    return false;
}

void presence_drain(sessions *ss) {
    pthread_mutex_lock(&ss->conn_mu);
    conn_note *n = ss->ended;
    ss->ended = NULL;
    pthread_mutex_unlock(&ss->conn_mu);
    while (n) {
        conn_note *next = n->next;
        session *s = session_find(ss, n->sid);
        presence_conn *p = s ? track(s, n->client, false) : NULL;
        if (p && p->live > 0 && --p->live == 0) p->idle_since = session_now_ms();
        free(n->sid);
        free(n->client);
        free(n);
        n = next;
    }
}

void presence_free(session *s) {
    for (size_t i = 0; i < s->nconns; i++) free(s->conns[i].client);
    free(s->conns);
}

int presence_set(sessions *ss, session *s, const char *client, json_t *data, http_conn *c,
                 uint64_t *offset, bool *changed) {
    json_t *have = json_object_get(json_object_get(s->state, "presence"), client);
    *changed = !have || !json_equal(json_object_get(have, "data"), data);
    if (!*changed) return streams_hold_tail(ss->st, s->log_path, c, offset);
    json_t *value = have ? json_deep_copy(have)
                         : json_pack("{s:s, s:o}", "client", client, "entered_at", session_timestamp());
    json_object_set(value, "data", data);
    json_t *events = json_pack("[o]", session_event("presence", client, have ? "update" : "insert",
                                                    value, client));
    int rc = session_commit(ss, s, events, c, offset);
    json_decref(events);
    if (rc == 0 && !have) { /* a new member's grace starts now, not at an old leave */
        presence_conn *p = track(s, client, true);
        if (p->live == 0) p->idle_since = session_now_ms();
    }
    return rc;
}

int presence_leave(sessions *ss, session *s, const char *client, http_conn *c, uint64_t *offset) {
    if (!json_object_get(json_object_get(s->state, "presence"), client))
        return streams_hold_tail(ss->st, s->log_path, c, offset);
    json_t *events = json_pack("[o]", session_event("presence", client, "delete", json_null(), client));
    int rc = session_commit(ss, s, events, c, offset);
    json_decref(events);
    return rc;
}

void presence_expire(sessions *ss, session *s, int64_t now) {
    json_t *members = json_object_get(s->state, "presence");
    const char *client;
    json_t *v;
    json_object_foreach(members, client, v) track(s, client, true); /* e.g. recovered ones */
    for (size_t i = 0; i < s->nconns;) {
        presence_conn *p = &s->conns[i];
        bool member = json_object_get(members, p->client) != NULL;
        bool idle = p->live == 0 && now - p->idle_since >= (int64_t)ss->limits.presence_grace_ms;
        if (idle && member && presence_leave(ss, s, p->client, NULL, NULL) != 0) {
            i++; /* not logged: try again next time */
            continue;
        }
        if (p->live == 0 && (idle || !member)) {
            free(p->client);
            *p = s->conns[--s->nconns];
        } else {
            i++;
        }
    }
}
