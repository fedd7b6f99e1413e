/* log.h — one-line log records to stderr.
 *
 * Levels: error (default: one line per failed request, with the stream path),
 * info (start-up, shutdown, recovery), debug (one line per request).
 * Thread-safe: each record is written with a single write(2).
 */
#ifndef WEFT_LOG_H
#define WEFT_LOG_H

typedef enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 } log_level;

extern log_level log_threshold;

/* Parse "error", "warn", "info", "debug"; returns -1 if unknown. */
int log_level_parse(const char *s);
void log_write(log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_enabled(lvl) ((lvl) <= log_threshold)

#endif
