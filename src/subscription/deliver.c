/* deliver.c — the delivery thread: webhook POSTs through libcurl's multi
 * interface (many in flight, none blocking a request thread), the notices
 * the streams queue, lease expiry and retries with backoff.
 *
 * A webhook attempt that fails (no connection, a timeout, a non-2xx
 * answer) is retried after 1 s, 2 s, 4 s ... up to 60 s, each +-20%
 * jitter; the count and the next time are logged, so a restart keeps the
 * schedule. An answer {"done": true} acks what the wake carried.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "../util/log.h"
#include "../util/mem.h"
#include "subs_int.h"

#define MAX_ANSWER (64 * 1024)
#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 60000

struct delivery {
    delivery *next, *prev; /* s->inflight */
    subs *s;
    sub *b; /* holds a ref */
    uint64_t generation;
    char wake_id[24];
    bool loopback_ok; /* the URL names loopback itself */
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    buf answer;
};

void deliver_kick(subs *s) {
    if (s->multi) curl_multi_wakeup(s->multi);
}

static size_t on_answer(char *p, size_t size, size_t n, void *arg) {
    delivery *d = arg;
    size_t len = size * n;
    if (d->answer.len + len > MAX_ANSWER) return 0; /* too long: fails the attempt */
    buf_append(&d->answer, p, len);
    return len;
}

/* Connect only where the URL check allows: host names are resolved now. */
static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a) {
    delivery *d = arg;
    (void)purpose;
    if (!urlcheck_addr(&a->addr, d->s->cfg.allow_private, d->loopback_ok)) {
        log_write(LOG_WARN, "webhook: refused to connect to a private or link-local address");
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* The wake's body: what it covers now is its snapshot (auto-acked on done). */
static char *wake_body(subs *s, sub *b) {
    for (size_t i = 0; i < b->nlinks; i++) b->links[i].snap = b->links[i].tail;
    char *token = keys_token_make(s, b->id, b->generation, b->wake_id);
    buf url;
    buf_init(&url);
    buf_printf(&url, "%s%ssubscriptions/%s/callback", b->base, SUBS_PREFIX, b->id);
    buf_append_byte(&url, 0);
    json_t *o = json_pack("{s:s,s:s,s:I,s:o,s:s,s:s}", "subscription_id", b->id, "wake_id", b->wake_id,
                          "generation", (json_int_t)b->generation, "streams", sub_streams_json(b, true),
                          "callback_url", (char *)url.data, "callback_token", token);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    buf_free(&url);
    free(token);
    return text;
}

static void start(subs *s, sub *b) {
    delivery *d = xcalloc(1, sizeof *d);
    d->s = s;
    d->b = b;
    b->refs++;
    b->in_flight = true;
    d->generation = b->generation;
    strcpy(d->wake_id, b->wake_id);
    d->loopback_ok = urlcheck_loopback_host(b->url);
    d->body = wake_body(s, b);
    size_t len = strlen(d->body);
    buf sig;
    buf_init(&sig);
    buf_append_str(&sig, "Webhook-Signature: ");
    keys_sign(s, d->body, len, subs_now_ms() / 1000, &sig);
    buf_append_byte(&sig, 0);
    d->headers = curl_slist_append(NULL, "Content-Type: application/json");
    d->headers = curl_slist_append(d->headers, (const char *)sig.data);
    d->headers = curl_slist_append(d->headers, "Expect:");
    buf_free(&sig);
    CURL *e = d->easy = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, b->url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, d->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "weft-webhook/1");
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)s->cfg.webhook_timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_answer);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, d);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, d);
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* never through a proxy from the environment */
    curl_easy_setopt(e, CURLOPT_PRIVATE, d);
    d->next = s->inflight;
    if (d->next) d->next->prev = d;
    s->inflight = d;
    curl_multi_add_handle(s->multi, e);
}

static void retry_later(subs *s, sub *b, const char *why) {
    b->attempts++;
    uint64_t base = RETRY_MIN_MS << (b->attempts - 1 < 6 ? b->attempts - 1 : 6);
    if (base > RETRY_MAX_MS) base = RETRY_MAX_MS;
    uint32_t r;
    if (getrandom(&r, sizeof r, 0) != sizeof r) r = 0;
    double jitter = ((double)r / UINT32_MAX * 2 - 1) * 0.2;
    b->deliver_at = subs_now_ms() + (int64_t)((double)base * (1 + jitter));
    b->failed = true;
    log_write(LOG_WARN, "subscription %s: webhook to %s failed (%s); attempt %u again in %lld ms", b->id, b->url,
              why, b->attempts + 1, (long long)(b->deliver_at - subs_now_ms()));
    json_t *rec = json_pack("{s:s,s:i,s:I}", "t", "retry", "n", (int)b->attempts, "at", (json_int_t)b->deliver_at);
    persist_record(s, b, rec, NULL);
    json_decref(rec);
}

void sub_delivered(subs *s, sub *b) {
    if (b->failed) {
        b->failed = false;
        json_t *rec = json_pack("{s:s,s:i,s:i}", "t", "retry", "n", 0, "at", 0);
        persist_record(s, b, rec, NULL);
        json_decref(rec);
    }
    b->attempts = 0;
    b->deliver_at = 0;
}

/* The receiver answered 2xx: {"done": true} acks the wake's snapshot. */
static void delivered(subs *s, sub *b, const buf *answer) {
    sub_delivered(s, b);
    json_t *v = json_loadb((const char *)answer->data, answer->len, 0, NULL);
    bool done = json_is_true(json_object_get(v, "done"));
    json_decref(v);
    if (!done) {
        b->lease_until = subs_now_ms() + (int64_t)b->lease_ttl_ms;
        return;
    }
    json_t *acks = json_array();
    for (size_t i = 0; i < b->nlinks; i++) {
        sub_link *l = &b->links[i];
        if (l->snap > l->acked) {
            l->acked = l->snap;
            json_array_append_new(acks, json_pack("[s,I]", l->path, (json_int_t)l->acked));
        }
    }
    json_t *rec = json_pack("{s:s,s:o}", "t", "ack", "a", acks);
    persist_record(s, b, rec, NULL);
    json_decref(rec);
    sub_wake_end(s, b);
}

/* Free d and its request (its subscription's ref with the lock). */
static void drop(subs *s, delivery *d) {
    if (d->prev) d->prev->next = d->next;
    else s->inflight = d->next;
    if (d->next) d->next->prev = d->prev;
    pthread_mutex_lock(&s->mu);
    d->b->in_flight = false;
    sub_unref(d->b);
    pthread_mutex_unlock(&s->mu);
    curl_multi_remove_handle(s->multi, d->easy);
    curl_easy_cleanup(d->easy);
    curl_slist_free_all(d->headers);
    free(d->body);
    buf_free(&d->answer);
    free(d);
}

static void finish(subs *s, delivery *d, CURLcode rc) {
    long status = 0;
    curl_easy_getinfo(d->easy, CURLINFO_RESPONSE_CODE, &status);
    pthread_mutex_lock(&s->mu);
    sub *b = d->b;
    b->in_flight = false;
    bool current = !b->gone && b->generation == d->generation && strcmp(b->wake_id, d->wake_id) == 0;
    if (current) {
        char why[96];
        if (rc != CURLE_OK) snprintf(why, sizeof why, "%s", curl_easy_strerror(rc));
        else snprintf(why, sizeof why, "answered %ld", status);
        if (rc == CURLE_OK && status >= 200 && status < 300) delivered(s, b, &d->answer);
        else retry_later(s, b, why);
    }
    pthread_mutex_unlock(&s->mu);
    drop(s, d);
}

/* Leases run out, deliveries fall due; returns ms until the next timer. */
static int timers(subs *s) {
    int64_t now = subs_now_ms(), next = now + 1000;
    for (size_t i = 0; i < s->nsubs; i++) {
        sub *b = s->list[i];
        if (b->gone) continue;
        if (b->wake_id[0] && b->lease_until && now >= b->lease_until && !b->in_flight && !b->failed) {
            log_write(LOG_INFO, "subscription %s: the lease of wake %s ran out", b->id, b->wake_id);
            sub_wake_end(s, b);
        }
        if (b->type == SUB_WEBHOOK && b->wake_id[0] && !b->in_flight && b->deliver_at) {
            if (b->deliver_at > now) {
                if (b->deliver_at < next) next = b->deliver_at;
            } else if (!b->log_path || streams_settled(s->st, b->log_path)) { /* its generation is durable */
                start(s, b);
            } else if (now + 1 < next) {
                next = now + 1;
            }
        }
        if (b->wake_id[0] && b->lease_until && !b->in_flight && !b->failed && b->lease_until < next)
            next = b->lease_until;
    }
    return next > now ? (int)(next - now) : 1;
}

static void *run(void *arg) {
    subs *s = arg;
    while (!s->quit) {
        int running = 0, left;
        curl_multi_perform(s->multi, &running);
        CURLMsg *m;
        while ((m = curl_multi_info_read(s->multi, &left))) {
            if (m->msg != CURLMSG_DONE) continue;
            delivery *d = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&d);
            finish(s, d, m->data.result);
        }
        pthread_mutex_lock(&s->mu);
        subs_drain(s);
        int wait = timers(s);
        pthread_mutex_unlock(&s->mu);
        if (wait > 0) curl_multi_poll(s->multi, NULL, 0, wait, NULL);
    }
    return NULL;
}

int deliver_start(subs *s, char *err, size_t errlen) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(s->multi = curl_multi_init())) {
        snprintf(err, errlen, "cannot start libcurl");
        return -1;
    }
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        snprintf(err, errlen, "cannot start the delivery thread");
        return -1;
    }
    s->running = true;
    return 0;
}

void deliver_stop(subs *s) {
    if (s->running) {
        s->quit = true;
        deliver_kick(s);
        pthread_join(s->thread, NULL);
        s->running = false;
    }
    if (!s->multi) return;
    /* deliveries still out are dropped: their wakes go out again after a restart */
    while (s->inflight) drop(s, s->inflight);
    curl_multi_cleanup(s->multi);
    s->multi = NULL;
    curl_global_cleanup();
}
