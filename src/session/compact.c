/* compact.c — a run's output, streamed as Vercel AI SDK UI message chunks,
 * folded into the one UI message those chunks build (as the SDK's client
 * does): text and reasoning deltas joined into parts, tool calls with their
 * input and output or error, step boundaries, sources, files, data parts
 * (a later one with the same type and id replaces the earlier) and message
 * metadata. Transient data parts and unknown chunk types leave no part.
 * When a run ends, this message replaces its chunks in the session state.
 */
#include <string.h>

#include "session_int.h"

/* The latest part of `type` whose `idkey` equals id, or NULL (a stream may
 * reuse a text id in a later step). */
static json_t *find_part(json_t *parts, const char *type, const char *idkey, const char *id) {
    for (size_t i = json_array_size(parts); i-- > 0;) {
        json_t *p = json_array_get(parts, i);
        const char *t = json_string_value(json_object_get(p, "type"));
        const char *v = json_string_value(json_object_get(p, idkey));
        if (t && v && id && strcmp(v, id) == 0 && (!type || strcmp(t, type) == 0)) return p;
    }
    return NULL;
}

/* Text or reasoning: start opens a part, deltas extend it, end closes it. */
static void fold_text(json_t *parts, const char *kind, const char *phase, json_t *c) {
    const char *id = json_string_value(json_object_get(c, "id"));
    json_t *part = find_part(parts, kind, "_id", id);
    if (strcmp(phase, "start") == 0 || !part) {
        part = json_pack("{s:s, s:s, s:s, s:[]}", "type", kind, "text", "", "state", "streaming",
                         "_deltas");
        if (id) json_object_set_new(part, "_id", json_string(id));
        json_t *pm = json_object_get(c, "providerMetadata");
        if (pm) json_object_set(part, "providerMetadata", pm);
        json_array_append_new(parts, part);
    }
    json_t *delta = json_object_get(c, "delta");
    if (strcmp(phase, "delta") == 0 && json_is_string(delta)) {
        /* Joined once at the end: a run may stream 100,000 deltas. */
        json_array_append(json_object_get(part, "_deltas"), delta);
    } else if (strcmp(phase, "end") == 0) {
        json_object_set_new(part, "state", json_string("done"));
    }
}

/* Tool calls: a part per toolCallId, its state moving from input-streaming
 * to input-available to output-available (or an error). */
static void fold_tool(json_t *parts, const char *type, json_t *c) {
    const char *call = json_string_value(json_object_get(c, "toolCallId"));
    if (!call) return;
    json_t *part = find_part(parts, NULL, "toolCallId", call);
    if (!part) {
        const char *name = json_string_value(json_object_get(c, "toolName"));
        bool dynamic = json_is_true(json_object_get(c, "dynamic"));
        char ptype[256];
        snprintf(ptype, sizeof ptype, "tool-%s", name ? name : "unknown");
        part = json_pack("{s:s, s:s, s:s}", "type", dynamic ? "dynamic-tool" : ptype,
                         "toolCallId", call, "state", "input-streaming");
        if (dynamic && name) json_object_set_new(part, "toolName", json_string(name));
        json_array_append_new(parts, part);
    }
    if (strcmp(type, "tool-input-available") == 0 || strcmp(type, "tool-input-error") == 0) {
        json_t *input = json_object_get(c, "input");
        json_object_set(part, "input", input ? input : json_null());
        json_object_set_new(part, "state", json_string(strcmp(type, "tool-input-available") == 0
                                                           ? "input-available"
                                                           : "output-error"));
    }
    if (strcmp(type, "tool-output-available") == 0) {
        json_t *output = json_object_get(c, "output");
        json_object_set(part, "output", output ? output : json_null());
        json_object_set_new(part, "state", json_string("output-available"));
    }
    if (strcmp(type, "tool-output-error") == 0 || strcmp(type, "tool-input-error") == 0) {
        json_t *err = json_object_get(c, "errorText");
        json_object_set_new(part, "errorText", err ? json_incref(err) : json_string(""));
        json_object_set_new(part, "state", json_string("output-error"));
    }
}

/* A chunk copied as a part of its own type, without the keys named. */
static void fold_copy(json_t *parts, json_t *c, const char *drop) {
    json_t *part = json_deep_copy(c);
    if (drop) json_object_del(part, drop);
    json_array_append_new(parts, part);
}

static void fold_data(json_t *parts, const char *type, json_t *c) {
    if (json_is_true(json_object_get(c, "transient"))) return;
    const char *id = json_string_value(json_object_get(c, "id"));
    json_t *same = id ? find_part(parts, type, "id", id) : NULL;
    if (same) json_object_set(same, "data", json_object_get(c, "data"));
    else fold_copy(parts, c, "transient");
}

static void merge_metadata(json_t *msg, json_t *c) {
    json_t *md = json_object_get(c, "messageMetadata");
    if (!json_is_object(md)) return;
    json_t *have = json_object_get(msg, "metadata");
    if (!have) json_object_set_new(msg, "metadata", have = json_object());
    json_object_update(have, md);
}

static void fold(json_t *msg, json_t *parts, json_t *c) {
    const char *type = json_string_value(json_object_get(c, "type"));
    if (!type) return;
    if (strncmp(type, "text-", 5) == 0) fold_text(parts, "text", type + 5, c);
    else if (strncmp(type, "reasoning-", 10) == 0) fold_text(parts, "reasoning", type + 10, c);
    else if (strncmp(type, "tool-", 5) == 0) fold_tool(parts, type, c);
    else if (strcmp(type, "start-step") == 0) json_array_append_new(parts, json_pack("{s:s}", "type", "step-start"));
    else if (strcmp(type, "source-url") == 0 || strcmp(type, "source-document") == 0 ||
             strcmp(type, "file") == 0)
        fold_copy(parts, c, NULL);
    else if (strncmp(type, "data-", 5) == 0) fold_data(parts, type, c);
    else if (strcmp(type, "start") == 0 || strcmp(type, "finish") == 0 ||
             strcmp(type, "message-metadata") == 0)
        merge_metadata(msg, c);
}

/* Join a text part's deltas into its text; drop the fold's own keys. */
static void finish_part(json_t *part) {
    json_t *deltas = json_object_get(part, "_deltas");
    if (deltas) {
        buf text;
        buf_init(&text);
        size_t i;
        json_t *d;
        json_array_foreach(deltas, i, d)
            buf_append(&text, json_string_value(d), json_string_length(d));
        json_object_set_new(part, "text", json_stringn(text.len ? (const char *)text.data : "", text.len));
        buf_free(&text);
        json_object_del(part, "_deltas");
    }
    json_object_del(part, "_id");
    /* A run cut short leaves its last text open: what was said stays. */
    const char *state = json_string_value(json_object_get(part, "state"));
    if (state && strcmp(state, "streaming") == 0) json_object_set_new(part, "state", json_string("done"));
}

json_t *compact_chunks(json_t *chunks, const char *message_id) {
    json_t *parts = json_array();
    json_t *msg = json_pack("{s:s, s:s}", "id", message_id, "role", "assistant");
    size_t i;
    json_t *c;
    json_array_foreach(chunks, i, c) fold(msg, parts, c);
    json_array_foreach(parts, i, c) finish_part(c);
    if (json_array_size(parts) == 0 && !json_object_get(msg, "metadata")) {
        json_decref(parts);
        json_decref(msg);
        return NULL;
    }
    json_object_set_new(msg, "parts", parts);
    return msg;
}
