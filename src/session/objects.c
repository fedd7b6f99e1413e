/* objects.c — shared objects: maps, counters and lists, changed by batches
 * of ops that the server applies in log order, so every client converges.
 *
 * An object's kind is the JSON type of its value: a map is an object, a
 * list an array of {"id", "value"} items, a counter a number. The first op
 * on a name creates it. Every op applies to whatever state it meets, so
 * concurrent batches never conflict:
 *   map      set (creating missing parents) / remove, at a path of keys
 *   counter  increment by a number
 *   list     insert (after an item, at the start, or at the end), move,
 *            update and remove by item id; an anchor that is gone means
 *            the end, and a move, update or remove of an item that is gone
 *            does nothing (the remove won)
 *   any      delete the whole object
 * A batch is all or nothing: it is applied to copies of the objects it
 * touches, and the copies replace them only if every op was valid.
 * Pure functions of their input; fuzzed in fuzz/fuzz_session.c.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "session_int.h"

typedef struct batch_ctx {
    json_t *objects; /* the session's objects (read only) */
    json_t *work;    /* name -> working copy (json null: deleted) */
    json_t *ops;     /* name -> the ops applied to it, as normalised */
    char *err;
    size_t errlen;
} batch_ctx;

static const char *kind_of(json_t *v) {
    return json_is_object(v) ? "map" : json_is_array(v) ? "list" : json_is_number(v) ? "counter" : "nothing";
}

/* The working copy of name, created as `fresh` (stolen) if absent. */
static json_t *working(batch_ctx *b, const char *name, json_t *fresh) {
    json_t *w = json_object_get(b->work, name);
    if (!w || json_is_null(w)) {
        json_t *have = w ? NULL : json_object_get(b->objects, name);
        w = have ? json_deep_copy(have) : json_incref(fresh);
        json_object_set_new(b->work, name, w);
    }
    json_decref(fresh);
    return w;
}

/* The path as an array of keys: an array of strings, or one string. */
static json_t *path_of(json_t *op) {
    json_t *p = json_object_get(op, "path");
    if (json_is_string(p)) return json_pack("[O]", p);
    if (!json_is_array(p) || json_array_size(p) == 0) return NULL;
    size_t i;
    json_t *k;
    json_array_foreach(p, i, k) if (!json_is_string(k)) return NULL;
    return json_incref(p);
}

static const char *map_op(batch_ctx *b, const char *name, const char *op, json_t *o) {
    json_t *path = path_of(o);
    if (!path) return "path must be a key or a non-empty array of keys";
    json_t *value = json_object_get(o, "value");
    bool set = strcmp(op, "set") == 0;
    if (set && !value) {
        json_decref(path);
        return "set needs a value";
    }
    json_t *m = working(b, name, json_object());
    if (!json_is_object(m)) {
        json_decref(path);
        snprintf(b->err, b->errlen, "object '%s' is a %s, not a map", name, kind_of(m));
        return b->err;
    }
    size_t n = json_array_size(path);
    for (size_t i = 0; i + 1 < n; i++) {
        const char *key = json_string_value(json_array_get(path, i));
        json_t *next = json_object_get(m, key);
        if (!next && set) json_object_set_new(m, key, next = json_object());
        if (!next) { /* removing under a missing parent: nothing to do */
            json_decref(path);
            return NULL;
        }
        if (!json_is_object(next)) {
            json_decref(path);
            snprintf(b->err, b->errlen, "path into a non-object at '%s' of '%s'", key, name);
            return b->err;
        }
        m = next;
    }
    const char *last = json_string_value(json_array_get(path, n - 1));
    /* A copy: a later op of the batch may change what this one set, and
     * the op is recorded as it was sent. */
    if (set) json_object_set_new(m, last, json_deep_copy(value));
    else json_object_del(m, last);
    json_decref(path);
    return NULL;
}

static const char *counter_op(batch_ctx *b, const char *name, json_t *o) {
    json_t *by = json_object_get(o, "by");
    if (!by) by = json_integer(1);
    else if (json_is_number(by)) json_incref(by);
    else return "increment's by must be a number";
    json_t *c = working(b, name, json_integer(0));
    const char *err = NULL;
    json_int_t isum;
    double dsum = json_number_value(c) + json_number_value(by);
    if (!json_is_number(c)) {
        snprintf(b->err, b->errlen, "object '%s' is a %s, not a counter", name, kind_of(c));
        err = b->err;
    } else if (json_is_integer(c) && json_is_integer(by)) {
        if (__builtin_add_overflow(json_integer_value(c), json_integer_value(by), &isum)) {
            snprintf(b->err, b->errlen, "counter '%s' would overflow a 64-bit integer", name);
            err = b->err;
        } else {
            json_object_set_new(b->work, name, json_integer(isum));
        }
    } else if (!isfinite(dsum)) {
        snprintf(b->err, b->errlen, "counter '%s' would overflow a double", name);
        err = b->err;
    } else {
        json_object_set_new(b->work, name, json_real(dsum));
    }
    json_decref(by);
    return err;
}

static ssize_t item_index(json_t *list, const char *id) {
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it)
        if (strcmp(json_string_value(json_object_get(it, "id")), id) == 0) return (ssize_t)i;
    return -1;
}

/* Where "after" puts an item: absent = the end, null = the start, an id
 * = just after it (the end if it is gone). */
static size_t insert_at(json_t *list, json_t *after) {
    if (!after) return json_array_size(list);
    if (json_is_null(after)) return 0;
    ssize_t i = item_index(list, json_string_value(after));
    return i < 0 ? json_array_size(list) : (size_t)i + 1;
}

static void new_item_id(char out[32]) {
    uint8_t r[8];
    if (getrandom(r, sizeof r, 0) != sizeof r) memset(r, 0, sizeof r);
    int n = snprintf(out, 32, "i_");
    for (size_t i = 0; i < sizeof r; i++) n += snprintf(out + n, (size_t)(32 - n), "%02x", r[i]);
}

static const char *list_op(batch_ctx *b, const char *name, const char *op, json_t *o) {
    json_t *after = json_object_get(o, "after");
    json_t *id = json_object_get(o, "id");
    json_t *value = json_object_get(o, "value");
    if (after && !json_is_null(after) && !json_is_string(after)) return "after must be an item id or null";
    if (id && (!json_is_string(id) || json_string_length(id) == 0 || json_string_length(id) > 128))
        return "id must be a non-empty string of at most 128 bytes";
    bool insert = strcmp(op, "insert") == 0;
    if (!insert && !id) return "move, update and remove need the item's id";
    if ((insert || strcmp(op, "update") == 0) && !value) return "insert and update need a value";
    json_t *l = working(b, name, json_array());
    if (!json_is_array(l)) {
        snprintf(b->err, b->errlen, "object '%s' is a %s, not a list", name, kind_of(l));
        return b->err;
    }
    if (insert) {
        char gen[32];
        if (!id) { /* the normalised op records the id the server chose */
            new_item_id(gen);
            json_object_set_new(o, "id", id = json_string(gen));
        }
        if (item_index(l, json_string_value(id)) >= 0) {
            snprintf(b->err, b->errlen, "list '%s' already has an item '%s'", name, json_string_value(id));
            return b->err;
        }
        json_array_insert_new(l, insert_at(l, after),
                              json_pack("{s:O, s:o}", "id", id, "value", json_deep_copy(value)));
        return NULL;
    }
    ssize_t i = item_index(l, json_string_value(id));
    if (i < 0) return NULL; /* gone: the remove won */
    if (strcmp(op, "remove") == 0) {
        json_array_remove(l, (size_t)i);
    } else if (strcmp(op, "update") == 0) {
        json_object_set_new(json_array_get(l, (size_t)i), "value", json_deep_copy(value));
    } else if (!json_is_string(after) || strcmp(json_string_value(after), json_string_value(id)) != 0) {
        /* (a move after itself stays where it is) */
        json_t *item = json_incref(json_array_get(l, (size_t)i));
        json_array_remove(l, (size_t)i);
        json_array_insert_new(l, insert_at(l, after), item);
    }
    return NULL;
}

static const char *one_op(batch_ctx *b, json_t *o) {
    if (!json_is_object(o)) return "an op must be an object";
    json_t *jname = json_object_get(o, "object");
    const char *op = json_string_value(json_object_get(o, "op"));
    if (!json_is_string(jname) || json_string_length(jname) == 0 || json_string_length(jname) > 128)
        return "object must be a name of 1-128 bytes";
    if (!op) return "op must be a string";
    const char *name = json_string_value(jname);
    const char *err;
    if (strcmp(op, "set") == 0) {
        err = map_op(b, name, op, o);
    } else if (strcmp(op, "remove") == 0) {
        /* remove with an id is a list's, with a path a map's */
        err = json_object_get(o, "id") && !json_object_get(o, "path") ? list_op(b, name, op, o)
                                                                        : map_op(b, name, op, o);
    } else if (strcmp(op, "increment") == 0) {
        err = counter_op(b, name, o);
    } else if (strcmp(op, "insert") == 0 || strcmp(op, "move") == 0 || strcmp(op, "update") == 0) {
        err = list_op(b, name, op, o);
    } else if (strcmp(op, "delete") == 0) {
        json_object_set_new(b->work, name, json_null());
        err = NULL;
    } else {
        snprintf(b->err, b->errlen, "unknown op '%.40s': expected set, remove, increment, insert, "
                 "move, update or delete", op);
        return b->err;
    }
    if (!err) {
        json_t *list = json_object_get(b->ops, name);
        if (!list) json_object_set_new(b->ops, name, list = json_array());
        json_array_append(list, o);
    }
    return err;
}

const char *objects_batch(json_t *objects, json_t *ops, size_t max_object_bytes, json_t **result,
                          json_t **applied, char *err, size_t errlen, int *status) {
    *status = 400;
    if (!json_is_array(ops) || json_array_size(ops) == 0) return "ops must be a non-empty array";
    if (json_array_size(ops) > OBJECTS_MAX_OPS) return "too many ops in one batch (at most 1000)";
    char why[200];
    batch_ctx b = {.objects = objects, .work = json_object(), .ops = json_object(), .err = why,
                   .errlen = sizeof why};
    size_t i;
    json_t *o;
    json_array_foreach(ops, i, o) {
        const char *e = one_op(&b, o);
        if (e) {
            snprintf(err, errlen, "ops[%zu]: %s", i, e);
            json_decref(b.work);
            json_decref(b.ops);
            return err;
        }
    }
    const char *name;
    json_t *v;
    json_object_foreach(b.work, name, v) {
        size_t size = json_dumpb(v, NULL, 0, JSON_COMPACT);
        if (size > max_object_bytes) {
            snprintf(err, errlen, "object '%s' would be %zu bytes (limit %zu, --session-max-object)",
                     name, size, max_object_bytes);
            *status = 413;
            json_decref(b.work);
            json_decref(b.ops);
            return err;
        }
    }
    *result = b.work;
    *applied = b.ops;
    return NULL;
}
