/* glob.h — path patterns, as capability tokens and subscriptions use them.
 *
 * '*' matches any run of characters except '/' (one segment, or part of
 * one), '**' any run at all, and a final slash-'**' also the path without
 * it: "events/" followed by '**' matches "events", "events/a" and
 * "events/a/b". Matching costs at most the pattern's length times the
 * path's (no backtracking blow-up on hostile patterns).
 */
#ifndef WEFT_GLOB_H
#define WEFT_GLOB_H

#include <stdbool.h>

/* Whether `path` matches `pattern`. */
bool glob_match(const char *pattern, const char *path);

/* Whether every path that `inner` (itself a pattern) matches also matches
 * `outer`, judged conservatively: inner has no wildcard and outer matches
 * it, or the two are equal, or outer is a literal prefix followed by
 * slash-'**' and inner starts with that prefix and a slash. */
bool glob_covers(const char *outer, const char *inner);

#endif
