/* session.c — the sessions object: the registry of sessions by id, opening
 * (every session rebuilt by replaying its log) and closing, and the thread
 * that ends runs whose agent went quiet for longer than their lease. */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include "../util/hash.h"
#include "../util/log.h"
#include "../util/mem.h"
#include "session_int.h"

int64_t session_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

session *session_find(sessions *ss, const char *id) {
    uint64_t h = hash_keyed(id, strlen(id));
    for (session *s = ss->table[h & (ss->table_size - 1)]; s; s = s->hnext)
        if (s->hash == h && strcmp(s->id, id) == 0) return s;
    return NULL;
}

static void table_grow(sessions *ss) {
    size_t n = ss->table_size ? ss->table_size * 2 : 1024;
    free(ss->table);
    ss->table = xcalloc(n, sizeof *ss->table);
    ss->table_size = n;
    for (session *s = ss->list; s; s = s->next) {
        s->hnext = ss->table[s->hash & (n - 1)];
        ss->table[s->hash & (n - 1)] = s;
    }
}

session *session_add(sessions *ss, const char *id) {
    session *s = xcalloc(1, sizeof *s);
    s->id = xstrndup(id, strlen(id));
    s->hash = hash_keyed(id, strlen(id));
    s->log_path = generation_path(id, 0);
    s->state = json_pack("{s:{}, s:{}, s:{}, s:{}, s:{}}", "message", "run", "chunk", "object",
                         "presence");
    s->output = json_object();
    s->batches = json_object();
    s->wake_obj = json_object();
    s->next = ss->list;
    ss->list = s;
    ss->count++;
    if (ss->count > ss->table_size) {
        table_grow(ss); /* links s too */
    } else {
        s->hnext = ss->table[s->hash & (ss->table_size - 1)];
        ss->table[s->hash & (ss->table_size - 1)] = s;
    }
    return s;
}

static void session_free(session *s) {
    for (size_t i = 0; i < s->nruns; i++) {
        free(s->runs[i].id);
        free(s->runs[i].owner);
    }
    free(s->runs);
    presence_free(s);
    json_decref(s->batches);
    json_decref(s->state);
    free(s->messages_text);
    json_decref(s->output);
    json_decref(s->wake_obj);
    free(s->log_path);
    free(s->old_log);
    free(s->id);
    free(s);
}

/* Unlink s from a list threaded through the field at offset `link`. */
static void unlink_from(session **head, session *s, size_t link) {
    for (session **pp = head; *pp; pp = (session **)((char *)*pp + link)) {
        if (*pp == s) {
            *pp = *(session **)((char *)s + link);
            return;
        }
    }
}

void session_remove(sessions *ss, session *s) {
    unlink_from(&ss->list, s, offsetof(session, next));
    unlink_from(&ss->table[s->hash & (ss->table_size - 1)], s, offsetof(session, hnext));
    ss->count--;
    session_free(s);
}

/* --- recovery --- */

/* One generation of a session's log, replayed: each stored message is one
 * line. Of several generations the newest wins; the others are retired
 * once open. */
static void replay(void *arg, const char *path, const uint8_t *data, size_t len) {
    sessions *ss = arg;
    char id[160];
    unsigned gen;
    if (!generation_parse(path, id, sizeof id, &gen)) return;
    session *s = session_find(ss, id);
    if (s && s->gen > gen) { /* an older generation */
        json_array_append_new(ss->stale, json_string(path));
        return;
    }
    if (s) { /* a newer one */
        json_array_append_new(ss->stale, json_string(s->log_path));
        session_reset(s);
        free(s->log_path);
        s->log_path = xstrndup(path, strlen(path));
    } else {
        s = session_add(ss, id);
        free(s->log_path);
        s->log_path = xstrndup(path, strlen(path));
    }
    s->gen = gen;
    s->log_bytes = len;
    s->wake_msg = 0;
    json_object_clear(s->wake_obj);
    size_t skipped = 0;
    bool in_snapshot = false;
    for (size_t i = 0; i < len;) {
        const uint8_t *nl = memchr(data + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - data) : len;
        /* Stored form: the value, then ",\n". */
        size_t vlen = end - i >= 1 ? end - i - 1 : 0;
        json_t *ev = json_loadb((const char *)data + i, vlen, 0, NULL);
        const char *control = json_string_value(json_object_get(json_object_get(ev, "headers"), "control"));
        if (control) in_snapshot = strcmp(control, "snapshot-start") == 0;
        if (!ev || !session_apply(ss, s, ev)) skipped++;
        else if (!in_snapshot) wake_note(s, ev, end + 1); /* a snapshot repeats what woke agents before */
        json_decref(ev);
        i = end + 1;
    }
    if (skipped) log_write(LOG_ERROR, "session %s: %zu log entries not understood, skipped", s->id, skipped);
}

/* --- the timer thread: leases and presence --- */

/* A run whose agent sent no chunk or heartbeat for its lease ends in
 * error, so that no reader waits for it forever. */
static void end_expired(sessions *ss, session *s, live_run *r) {
    char msg[128];
    snprintf(msg, sizeof msg, "agent lost: no chunk or heartbeat for %u ms", ss->limits.run_lease_ms);
    char *id = xstrndup(r->id, strlen(r->id));
    if (run_end(ss, s, id, "error", msg, NULL, NULL, NULL, NULL) != 0) {
        log_write(LOG_ERROR, "session %s: run %s: lease ended but not logged: %s", s->id, id,
                  strerror(errno));
        r->lease_until = session_now_ms() + 1000; /* try again */
    } else {
        log_write(LOG_INFO, "session %s: run %s ended: %s", s->id, id, msg);
    }
    free(id);
}

static void *lease_main(void *arg) {
    sessions *ss = arg;
    pthread_setname_np(pthread_self(), "weft-sessions");
    int64_t next_check = 0;
    pthread_mutex_lock(&ss->lock);
    while (!ss->leaser_quit) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ss->leaser_cv, &ss->lock, &ts);
        presence_drain(ss);
        int64_t now = session_now_ms();
        if (now >= next_check) { /* sessions whose log expired go */
            next_check = now + 5000;
            for (session *s = ss->list, *next; s; s = next) {
                next = s->next;
                if (!streams_exists(ss->st, s->log_path)) session_remove(ss, s);
            }
        }
        for (session *s = ss->list; s; s = s->next) {
            for (size_t i = 0; i < s->nruns;)
                if (s->runs[i].lease_until <= now) end_expired(ss, s, &s->runs[i]);
                else i++;
            presence_expire(ss, s, now);
            generation_drop_old(ss, s);
        }
    }
    pthread_mutex_unlock(&ss->lock);
    return NULL;
}

sessions *sessions_open(streams *st, subs *wakes, const sessions_limits *limits) {
    sessions *ss = xcalloc(1, sizeof *ss);
    pthread_mutex_init(&ss->lock, NULL);
    pthread_cond_init(&ss->leaser_cv, NULL);
    pthread_mutex_init(&ss->conn_mu, NULL);
    ss->st = st;
    ss->subs = wakes;
    ss->limits = *limits;
    table_grow(ss);
    subs_add_source(wakes, SESSION_PREFIX, wake_each, ss); /* first: the notices below need it */
    pthread_mutex_lock(&ss->lock);
    ss->stale = json_array();
    streams_each(st, SESSION_PREFIX, replay, ss);
    size_t i;
    json_t *path;
    json_array_foreach(ss->stale, i, path) streams_delete(st, json_string_value(path), NULL);
    json_decref(ss->stale);
    ss->stale = NULL;
    for (session *s = ss->list; s; s = s->next) { /* offsets noted from the generation's start */
        uint64_t end;
        if (streams_visible_end(st, s->log_path, &end) == 0 && end >= s->log_bytes) wake_shift(s, end - s->log_bytes);
        wake_publish(ss, s, 0, false);
    }
    pthread_mutex_unlock(&ss->lock);
    if (ss->count) log_write(LOG_INFO, "sessions: %zu recovered", ss->count);
    ss->leaser_running = pthread_create(&ss->leaser, NULL, lease_main, ss) == 0;
    if (!ss->leaser_running) log_write(LOG_ERROR, "cannot start the run lease thread");
    return ss;
}

void sessions_close(sessions *ss) {
    if (ss->leaser_running) {
        pthread_mutex_lock(&ss->lock);
        ss->leaser_quit = true;
        pthread_cond_signal(&ss->leaser_cv);
        pthread_mutex_unlock(&ss->lock);
        pthread_join(ss->leaser, NULL);
    }
    presence_drain(ss);
    while (ss->list) session_remove(ss, ss->list);
    free(ss->table);
    pthread_mutex_destroy(&ss->conn_mu);
    pthread_cond_destroy(&ss->leaser_cv);
    pthread_mutex_destroy(&ss->lock);
    free(ss);
}
