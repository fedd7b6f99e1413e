/* loop.h — an epoll event loop with timers and a cross-thread post queue.
 *
 * One loop runs on one thread and owns the file descriptors registered with
 * it; every callback runs on that thread. The only loop function that may be
 * called from other threads is loop_post(), which queues a function to run on
 * the loop's thread (woken through an eventfd). Timers are kept in a binary
 * min-heap so that thousands of long-poll deadlines cost O(log n) each.
 */
#ifndef WEFT_LOOP_H
#define WEFT_LOOP_H

#include <stdbool.h>
#include <stdint.h>

typedef struct loop loop;

typedef void (*loop_io_fn)(void *arg, uint32_t events);
typedef void (*loop_fn)(void *arg);

/* A timer is embedded in its owner's struct; `index` is managed by the loop. */
typedef struct loop_timer {
    uint64_t due_ms; /* monotonic milliseconds */
    loop_fn fn;
    void *arg;
    int32_t index; /* position in the heap, -1 when not armed */
} loop_timer;

loop *loop_new(int id);
void loop_free(loop *l);
int loop_id(const loop *l);

/* Register / change / remove interest in fd (EPOLLIN, EPOLLOUT, EPOLLET ...). */
int loop_add(loop *l, int fd, uint32_t events, loop_io_fn fn, void *arg);
int loop_mod(loop *l, int fd, uint32_t events, loop_io_fn fn, void *arg);
void loop_del(loop *l, int fd);

void loop_timer_init(loop_timer *t, loop_fn fn, void *arg);
/* Arm (or re-arm) t to fire after ms milliseconds. */
void loop_timer_set(loop *l, loop_timer *t, uint64_t ms);
void loop_timer_cancel(loop *l, loop_timer *t);
static inline bool loop_timer_armed(const loop_timer *t) { return t->index >= 0; }

/* Thread-safe: run fn(arg) on the loop's thread soon. */
void loop_post(loop *l, loop_fn fn, void *arg);

/* Run fn(arg) on this loop's thread once the events of the current
 * iteration are handled, before the loop waits again (Redis's beforeSleep).
 * Must be called on the loop's thread; the same fn and arg registered twice
 * before then run once. Lets work queued by many callbacks be handed on in
 * one batch. */
void loop_defer(loop *l, loop_fn fn, void *arg);

/* Call fn(arg) on the loop's thread after the callbacks of each batch of
 * ready descriptors have run, before timers and deferred functions. Lets
 * callbacks only note what is ready and have the work for all of them done
 * at once (one system call for all the reads). One per loop; NULL clears. */
void loop_set_after_events(loop *l, loop_fn fn, void *arg);

/* Run until loop_stop(). */
void loop_run(loop *l);
/* Thread-safe. */
void loop_stop(loop *l);

/* Monotonic clock in milliseconds. */
uint64_t loop_now_ms(void);

#endif
