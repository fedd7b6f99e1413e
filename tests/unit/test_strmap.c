/* test_strmap.c — the string map (util/strmap.h): put, replace, get,
 * delete, growth past many resizes, and keys that share prefixes. */
#include <stdio.h>

#include "check.h"
#include "util/strmap.h"

int main(void) {
    strmap *m = strmap_new();
    int a = 1, b = 2;
    CHECK(strmap_get(m, "x") == NULL);
    strmap_put(m, "x", &a);
    CHECK(strmap_get(m, "x") == &a);
    strmap_put(m, "x", &b); /* replaces */
    CHECK(strmap_get(m, "x") == &b && strmap_size(m) == 1);
    CHECK(strmap_del(m, "x") == &b && strmap_get(m, "x") == NULL && strmap_size(m) == 0);
    CHECK(strmap_del(m, "x") == NULL);
    static int vals[20000];
    char key[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof key, "/v1/__shape/%d", i);
        strmap_put(m, key, &vals[i]);
    }
    CHECK(strmap_size(m) == 20000);
    int wrong = 0;
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof key, "/v1/__shape/%d", i);
        wrong += strmap_get(m, key) != &vals[i];
    }
    CHECK(wrong == 0);
    for (int i = 0; i < 20000; i += 2) {
        snprintf(key, sizeof key, "/v1/__shape/%d", i);
        wrong += strmap_del(m, key) != &vals[i];
    }
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof key, "/v1/__shape/%d", i);
        wrong += strmap_get(m, key) != (i % 2 ? &vals[i] : NULL);
    }
    CHECK(wrong == 0 && strmap_size(m) == 10000);
    CHECK(strmap_get(m, "/v1/__shape/1x") == NULL && strmap_get(m, "") == NULL);
    strmap_free(m);
    return check_summary("test_strmap");
}
