/* test_glob.c — path patterns (util/glob.h): what a pattern matches, and
 * when one pattern covers another (a subscription's pattern against a
 * token's grant). */
#include "check.h"
#include "util/glob.h"

static void test_match(void) {
    CHECK(glob_match("events/*", "events/a"));
    CHECK(!glob_match("events/*", "events/a/b"));
    CHECK(glob_match("events/**", "events/a/b"));
    CHECK(glob_match("events/**", "events"));
    CHECK(!glob_match("events/**", "eventsx"));
    CHECK(glob_match("/v1/session/trip-*", "/v1/session/trip-42"));
    CHECK(!glob_match("/v1/session/trip-*", "/v1/session/chat-1"));
    CHECK(glob_match("/v1/session/*/objects/plan", "/v1/session/t/objects/plan"));
    CHECK(!glob_match("a", "ab"));
    CHECK(glob_match("", ""));
}

static void test_covers(void) {
    CHECK(glob_covers("/v1/session/**", "/v1/session/*"));
    CHECK(glob_covers("/v1/session/**", "/v1/session/*/objects/plan"));
    CHECK(glob_covers("/v1/**", "/v1/stream/events/**"));
    CHECK(glob_covers("/v1/stream/*", "/v1/stream/*"));
    CHECK(glob_covers("/v1/stream/*", "/v1/stream/a"));
    CHECK(!glob_covers("/v1/stream/*", "/v1/stream/**"));    /* '*' is one segment; '**' any */
    CHECK(!glob_covers("/v1/stream/*", "/v1/stream/*/x"));
    CHECK(!glob_covers("/v1/session/trip-*", "/v1/session/*")); /* wider */
    CHECK(!glob_covers("/v1/stream/a*/**", "/v1/stream/a/*"));  /* a wildcard prefix: not judged */
    CHECK(!glob_covers("/v1/session/**", "/v1/sessionx/*"));
}

int main(void) {
    test_match();
    test_covers();
    return check_summary("test_glob");
}
