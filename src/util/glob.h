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

#endif
