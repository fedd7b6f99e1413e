/* fuzz_session.c — libFuzzer target for the session layer's parsers of
 * untrusted JSON: object op batches (objects.c), a run's UI message chunks
 * (compact.c) and log events replayed at recovery (apply.c).
 *
 * The input is one JSON document. Properties checked for every input:
 *  - a batch either fails, leaving the objects exactly as they were, or
 *    succeeds with every touched object a map, list (of items with unique
 *    string ids) or counter, or deleted, and none over the size limit;
 *  - folding chunks yields NULL or a message whose parts are an array;
 *  - replaying an event never breaks the session's state shape.
 * Failures abort() so libFuzzer records the input.
 */
#include <stdlib.h>
#include <string.h>

#include "session/session_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_OBJECT 4096

static void check_object(json_t *v) {
    if (json_is_null(v) || json_is_object(v) || json_is_number(v)) return;
    if (!json_is_array(v)) abort();
    size_t i, j;
    json_t *a, *b;
    json_array_foreach(v, i, a) {
        const char *id = json_string_value(json_object_get(a, "id"));
        if (!id || !json_object_get(a, "value")) abort();
        json_array_foreach(v, j, b) if (j > i && strcmp(id, json_string_value(json_object_get(b, "id"))) == 0) abort();
    }
    if (json_dumpb(v, NULL, 0, JSON_COMPACT) > MAX_OBJECT) abort();
}

static void fuzz_batch(json_t *doc) {
    json_t *objects = json_pack("{s:{s:i}, s:i, s:[{s:s, s:i}]}", "m", "a", 1, "c", 5, "l", "id", "x",
                                "value", 1);
    char *before = json_dumps(objects, JSON_COMPACT);
    json_t *result = NULL, *applied = NULL;
    char err[400];
    int status;
    const char *why = objects_batch(objects, json_object_get(doc, "ops"), MAX_OBJECT, &result,
                                    &applied, err, sizeof err, &status);
    char *after = json_dumps(objects, JSON_COMPACT);
    if (strcmp(before, after) != 0) abort(); /* the batch works on copies */
    if (why && status != 400 && status != 413) abort();
    if (!why) {
        const char *name;
        json_t *v;
        json_object_foreach(result, name, v) check_object(v);
        json_decref(result);
        json_decref(applied);
    }
    free(before);
    free(after);
    json_decref(objects);
}

static void fuzz_chunks(json_t *doc) {
    json_t *msg = compact_chunks(doc, "m1");
    if (msg && !json_is_array(json_object_get(msg, "parts"))) abort();
    json_decref(msg);
}

static void fuzz_replay(json_t *doc) {
    sessions ss = {.limits = {.run_lease_ms = 1000}};
    session *s = calloc(1, sizeof *s);
    s->id = "f";
    s->state = json_pack("{s:{}, s:{}, s:{}, s:{}, s:{}}", "message", "run", "chunk", "object", "presence");
    s->output = json_object();
    s->batches = json_object();
    size_t i;
    json_t *ev;
    json_array_foreach(doc, i, ev) session_apply(&ss, s, ev);
    if (json_object_size(s->state) != 5) abort();
    for (size_t k = 0; k < s->nruns; k++) {
        free(s->runs[k].id);
        free(s->runs[k].owner);
    }
    free(s->runs);
    json_decref(s->state);
    json_decref(s->output);
    json_decref(s->batches);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!doc) return 0;
    if (json_is_object(doc)) fuzz_batch(doc);
    if (json_is_array(doc)) {
        fuzz_chunks(doc);
        fuzz_replay(doc);
    }
    json_decref(doc);
    return 0;
}
