/* test_loop.c — the event loop: timer order, re-arming and cancelling,
 * posts from other threads, fd readiness, stop. */
#include <pthread.h>
#include <unistd.h>

#include "check.h"
#include "net/loop.h"

static loop *L;
static int order[8], norder;

static void record(void *arg) { order[norder++] = (int)(long)arg; }

static void stop_now(void *arg) {
    (void)arg;
    loop_stop(L);
}

static void test_timers(void) {
    L = loop_new(0);
    loop_timer a, b, c, d, stop;
    loop_timer_init(&a, record, (void *)1L);
    loop_timer_init(&b, record, (void *)2L);
    loop_timer_init(&c, record, (void *)3L);
    loop_timer_init(&d, record, (void *)4L);
    loop_timer_init(&stop, stop_now, NULL);
    loop_timer_set(L, &c, 30);
    loop_timer_set(L, &a, 10);
    loop_timer_set(L, &b, 20);
    loop_timer_set(L, &d, 15);
    loop_timer_cancel(L, &d);
    CHECK(!loop_timer_armed(&d));
    CHECK(loop_timer_armed(&a));
    loop_timer_set(L, &a, 25); /* re-arm moves it after b */
    loop_timer_set(L, &stop, 60);
    uint64_t t0 = loop_now_ms();
    loop_run(L);
    uint64_t took = loop_now_ms() - t0;
    CHECK_EQ_INT(norder, 3);
    CHECK_EQ_INT(order[0], 2);
    CHECK_EQ_INT(order[1], 1);
    CHECK_EQ_INT(order[2], 3);
    CHECK(took >= 60 && took < 1000);
    CHECK(!loop_timer_armed(&a) && !loop_timer_armed(&stop));
    loop_free(L);
}

static int posted_sum;

static void add(void *arg) { posted_sum += (int)(long)arg; }

static void *poster(void *arg) {
    (void)arg;
    for (long i = 1; i <= 1000; i++) loop_post(L, add, (void *)i);
    loop_post(L, stop_now, NULL);
    return NULL;
}

static void test_posts(void) {
    L = loop_new(1);
    CHECK_EQ_INT(loop_id(L), 1);
    pthread_t t;
    pthread_create(&t, NULL, poster, NULL);
    loop_run(L);
    pthread_join(t, NULL);
    CHECK_EQ_INT(posted_sum, 500500);
    loop_free(L);
}

static int readable;

static void on_read(void *arg, uint32_t ev) {
    int fd = (int)(long)arg;
    char buf[16];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0 && (ev & 1)) readable += (int)n;
    loop_stop(L);
}

static void test_io(void) {
    L = loop_new(2);
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(loop_add(L, p[0], 1 /* EPOLLIN */, on_read, (void *)(long)p[0]) == 0);
    CHECK(write(p[1], "abc", 3) == 3);
    loop_run(L);
    CHECK_EQ_INT(readable, 3);
    loop_del(L, p[0]);
    close(p[0]);
    close(p[1]);
    loop_free(L);
}

/* loop_defer: runs once per registration round, after the iteration's
 * callbacks and before the loop sleeps; deferring again from inside a
 * deferred function runs it in the next round, not never. */
static int deferred_runs, posts_seen_at_defer;
static int posts_run;

static void count_post(void *arg) {
    (void)arg;
    posts_run++;
}

static void deferred(void *arg) {
    (void)arg;
    deferred_runs++;
    posts_seen_at_defer = posts_run;
    if (deferred_runs == 1) loop_defer(L, deferred, NULL);
    else loop_stop(L);
}

static void post_and_defer(void *arg) {
    (void)arg;
    loop_defer(L, deferred, NULL);
    loop_defer(L, deferred, NULL); /* same fn and arg: once */
    posts_run++;
}

static void test_defer(void) {
    L = loop_new(0);
    deferred_runs = posts_seen_at_defer = posts_run = 0;
    loop_post(L, post_and_defer, NULL);
    loop_post(L, count_post, NULL);
    loop_run(L);
    CHECK_EQ_INT(deferred_runs, 2);
    CHECK_EQ_INT(posts_seen_at_defer, 2); /* both posts ran before it */
    loop_free(L);
}

/* loop_set_after_events: called once per batch of ready descriptors,
 * after all of their callbacks, and before deferred functions. */
static int noted, noted_seen, after_calls, noted_at_after, deferred_after;

static void note_ready(void *arg, uint32_t ev) {
    (void)ev;
    char buf[16];
    ssize_t n = read((int)(long)arg, buf, sizeof buf);
    if (n > 0) noted++;
}

static void after_batch(void *arg) {
    (void)arg;
    if (noted == noted_seen) return; /* a round that woke for something else */
    noted_seen = noted;
    after_calls++;
    noted_at_after = noted;
    loop_defer(L, stop_now, NULL);
}

static void stop_after(void *arg) {
    (void)arg;
    deferred_after = after_calls;
    loop_stop(L);
}

static void test_after_events(void) {
    L = loop_new(3);
    noted = noted_seen = after_calls = noted_at_after = deferred_after = 0;
    int p[2], q[2];
    CHECK(pipe(p) == 0 && pipe(q) == 0);
    CHECK(loop_add(L, p[0], 1, note_ready, (void *)(long)p[0]) == 0);
    CHECK(loop_add(L, q[0], 1, note_ready, (void *)(long)q[0]) == 0);
    loop_set_after_events(L, after_batch, NULL);
    CHECK(write(p[1], "a", 1) == 1 && write(q[1], "b", 1) == 1);
    loop_run(L);
    CHECK_EQ_INT(after_calls, 1);
    CHECK_EQ_INT(noted_at_after, 2); /* both callbacks ran before it */
    /* Cleared: a later round calls nothing. */
    loop_set_after_events(L, NULL, NULL);
    CHECK(write(p[1], "c", 1) == 1);
    loop_defer(L, stop_after, NULL);
    loop_run(L);
    CHECK_EQ_INT(deferred_after, 1);
    CHECK_EQ_INT(after_calls, 1);
    for (int i = 0; i < 2; i++) close(p[i]), close(q[i]);
    loop_free(L);
}

int main(void) {
    test_timers();
    test_posts();
    test_io();
    test_defer();
    test_after_events();
    return check_summary("test_loop");
}
