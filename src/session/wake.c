/* wake.c — what in a session wakes an agent, published to the
 * subscription layer: /v1/session/<id> grows when a person posts a message
 * (not with every token of a run, nor with the agent's own answer), and
 * /v1/session/<id>/objects/<name> when that object changes. An agent
 * subscribes with a pattern ("/v1/session/trip-*") or explicit paths, and
 * acks the offsets it has handled, as with streams.
 */
#include <string.h>

#include "../util/mem.h"
#include "session_int.h"

void wake_note(session *s, json_t *ev, uint64_t end) {
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *op = json_string_value(json_object_get(json_object_get(ev, "headers"), "operation"));
    if (!type || !op) return;
    if (strcmp(type, "message") == 0 && strcmp(op, "insert") == 0) {
        const char *role = json_string_value(json_object_get(json_object_get(ev, "value"), "role"));
        if (role && strcmp(role, "user") == 0) s->wake_msg = end;
    } else if (strcmp(type, "object") == 0) {
        const char *key = json_string_value(json_object_get(ev, "key"));
        if (key) json_object_set_new(s->wake_obj, key, json_integer((json_int_t)end));
    }
}

void wake_shift(session *s, uint64_t start) {
    if (s->wake_msg) s->wake_msg += start;
    const char *k;
    json_t *v;
    json_object_foreach(s->wake_obj, k, v) json_integer_set(v, json_integer_value(v) + (json_int_t)start);
}

static void object_path(const session *s, const char *name, buf *out) {
    buf_reset(out);
    buf_printf(out, "%s%s/objects/%s", SESSION_PREFIX, s->id, name);
    buf_append_byte(out, 0);
}

void wake_publish(sessions *ss, session *s, uint64_t since, bool event) {
    buf path;
    buf_init(&path);
    if (s->wake_msg > since) {
        buf_printf(&path, "%s%s", SESSION_PREFIX, s->id);
        buf_append_byte(&path, 0);
        subs_notify(ss->subs, (const char *)path.data, s->wake_msg, event);
    }
    const char *k;
    json_t *v;
    json_object_foreach(s->wake_obj, k, v) {
        if ((uint64_t)json_integer_value(v) <= since) continue;
        object_path(s, k, &path);
        subs_notify(ss->subs, (const char *)path.data, (uint64_t)json_integer_value(v), event);
    }
    buf_free(&path);
}

void wake_each(void *arg, void (*fn)(void *fnarg, const char *path, uint64_t tail), void *fnarg) {
    sessions *ss = arg;
    buf path;
    buf_init(&path);
    pthread_mutex_lock(&ss->lock);
    for (session *s = ss->list; s; s = s->next) {
        buf_reset(&path);
        buf_printf(&path, "%s%s", SESSION_PREFIX, s->id);
        buf_append_byte(&path, 0);
        fn(fnarg, (const char *)path.data, s->wake_msg);
        const char *k;
        json_t *v;
        json_object_foreach(s->wake_obj, k, v) {
            object_path(s, k, &path);
            fn(fnarg, (const char *)path.data, (uint64_t)json_integer_value(v));
        }
    }
    pthread_mutex_unlock(&ss->lock);
}
