/* subscription.c — the layer's lifetime: open (key, replay, delivery
 * thread, stream observer) and close. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/mem.h"
#include "subs_int.h"

/* The stream layer's observer: a queue push (its lock is held). */
static void on_visible(void *arg, const char *path, uint64_t visible) {
    subs *s = arg;
    if (atomic_load_explicit(&s->nlive, memory_order_relaxed)) subs_queue(s, path, visible, true, true);
}

subs *subs_open(streams *st, const subs_config *cfg, char *err, size_t errlen) {
    subs *s = xcalloc(1, sizeof *s);
    s->st = st;
    s->cfg = *cfg;
    s->key_file = xstrndup(cfg->key_file, strlen(cfg->key_file));
    s->public_url = cfg->public_url && *cfg->public_url ? xstrndup(cfg->public_url, strlen(cfg->public_url)) : NULL;
    if (s->public_url && s->public_url[strlen(s->public_url) - 1] == '/') s->public_url[strlen(s->public_url) - 1] = 0;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->q_mu, NULL);
    if (keys_load(s, s->key_file, err, errlen) != 0) {
        subs_close(s);
        return NULL;
    }
    persist_load(s);
    atomic_store(&s->nlive, s->nsubs);
    if (streams_observe(st, on_visible, s) != 0) {
        snprintf(err, errlen, "too many stream observers");
        subs_close(s);
        return NULL;
    }
    if (deliver_start(s, err, errlen) != 0) {
        subs_close(s);
        return NULL;
    }
    pthread_mutex_lock(&s->mu); /* work left pending before a restart */
    for (size_t i = 0; i < s->nsubs; i++) sub_maybe_wake(s, s->list[i]);
    pthread_mutex_unlock(&s->mu);
    return s;
}

void subs_close(subs *s) {
    if (!s) return;
    streams_unobserve(s->st, s);
    deliver_stop(s);
    for (size_t i = 0; i < s->nsubs; i++) sub_unref(s->list[i]);
    free(s->list);
    for (size_t i = 0; i < s->nsources; i++) free(s->sources[i].prefix);
    free(s->sources);
    for (size_t i = 0; i < s->qlen; i++) free(s->queue[i].path);
    free(s->queue);
    sodium_memzero(s->sk, sizeof s->sk);
    sodium_memzero(s->token_key, sizeof s->token_key);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->q_mu);
    free(s->key_file);
    free(s->public_url);
    free(s);
}
