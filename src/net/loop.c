/* loop.c — epoll event loop, timer heap and cross-thread posts (see loop.h). */
#include "loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "../util/log.h"
#include "../util/mem.h"

/* epoll_data carries a pointer to one of these per registered fd. */
typedef struct loop_watch {
    int fd;
    loop_io_fn fn;
    void *arg;
} loop_watch;

typedef struct loop_post_item {
    loop_fn fn;
    void *arg;
} loop_post_item;

struct loop {
    int id;
    int epfd;
    int wakefd;
    atomic_bool stopping;

    loop_watch **watches; /* indexed by fd */
    int nwatches;
    /* Watches removed during the current epoll batch: freed after it, so a
     * stale event for a closed (and maybe reused) fd finds a dead watch
     * instead of the fd's new owner. */
    loop_watch **dead;
    int ndead, dead_cap;

    loop_timer **heap;
    int32_t heap_len, heap_cap;

    loop_post_item after_events; /* loop_set_after_events */
    loop_post_item *deferred; /* loop_defer: run before the next wait */
    size_t ndeferred, deferred_cap;

    pthread_mutex_t post_lock;
    loop_post_item *posts;
    size_t nposts, posts_cap;
    bool wake_pending;
};

uint64_t loop_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

loop *loop_new(int id) {
    loop *l = xcalloc(1, sizeof *l);
    l->id = id;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->epfd < 0 || l->wakefd < 0) {
        log_write(LOG_ERROR, "loop: cannot create epoll/eventfd: %s", strerror(errno));
        abort();
    }
    pthread_mutex_init(&l->post_lock, NULL);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev);
    return l;
}

void loop_free(loop *l) {
    for (int i = 0; i < l->nwatches; i++) free(l->watches[i]);
    free(l->watches);
    for (int i = 0; i < l->ndead; i++) free(l->dead[i]);
    free(l->dead);
    free(l->heap);
    free(l->posts);
    free(l->deferred);
    close(l->epfd);
    close(l->wakefd);
    pthread_mutex_destroy(&l->post_lock);
    free(l);
}

int loop_id(const loop *l) { return l->id; }

static loop_watch *watch_for(loop *l, int fd) {
    if (fd >= l->nwatches) {
        int n = l->nwatches ? l->nwatches : 64;
        while (n <= fd) n *= 2;
        l->watches = xrealloc(l->watches, (size_t)n * sizeof *l->watches);
        memset(l->watches + l->nwatches, 0, (size_t)(n - l->nwatches) * sizeof *l->watches);
        l->nwatches = n;
    }
    if (!l->watches[fd]) l->watches[fd] = xcalloc(1, sizeof(loop_watch));
    return l->watches[fd];
}

static int loop_ctl(loop *l, int op, int fd, uint32_t events, loop_io_fn fn, void *arg) {
    loop_watch *w = watch_for(l, fd);
    w->fd = fd;
    w->fn = fn;
    w->arg = arg;
    struct epoll_event ev = {.events = events, .data.ptr = w};
    return epoll_ctl(l->epfd, op, fd, &ev);
}

int loop_add(loop *l, int fd, uint32_t events, loop_io_fn fn, void *arg) {
    return loop_ctl(l, EPOLL_CTL_ADD, fd, events, fn, arg);
}

int loop_mod(loop *l, int fd, uint32_t events, loop_io_fn fn, void *arg) {
    return loop_ctl(l, EPOLL_CTL_MOD, fd, events, fn, arg);
}

void loop_del(loop *l, int fd) {
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
    if (fd < l->nwatches && l->watches[fd]) {
        loop_watch *w = l->watches[fd];
        w->fn = NULL;
        w->arg = NULL;
        l->watches[fd] = NULL;
        if (l->ndead == l->dead_cap) {
            l->dead_cap = l->dead_cap ? l->dead_cap * 2 : 16;
            l->dead = xrealloc(l->dead, (size_t)l->dead_cap * sizeof *l->dead);
        }
        l->dead[l->ndead++] = w;
    }
}

/* --- timer heap --- */

static void heap_swap(loop *l, int32_t a, int32_t b) {
    loop_timer *t = l->heap[a];
    l->heap[a] = l->heap[b];
    l->heap[b] = t;
    l->heap[a]->index = a;
    l->heap[b]->index = b;
}

static void heap_up(loop *l, int32_t i) {
    while (i > 0) {
        int32_t p = (i - 1) / 2;
        if (l->heap[p]->due_ms <= l->heap[i]->due_ms) break;
        heap_swap(l, i, p);
        i = p;
    }
}

static void heap_down(loop *l, int32_t i) {
    for (;;) {
        int32_t c = 2 * i + 1, m = i;
        if (c < l->heap_len && l->heap[c]->due_ms < l->heap[m]->due_ms) m = c;
        if (c + 1 < l->heap_len && l->heap[c + 1]->due_ms < l->heap[m]->due_ms) m = c + 1;
        if (m == i) return;
        heap_swap(l, i, m);
        i = m;
    }
}

void loop_timer_init(loop_timer *t, loop_fn fn, void *arg) {
    t->due_ms = 0;
    t->fn = fn;
    t->arg = arg;
    t->index = -1;
}

void loop_timer_cancel(loop *l, loop_timer *t) {
    if (t->index < 0) return;
    int32_t i = t->index;
    l->heap_len--;
    if (i != l->heap_len) {
        l->heap[i] = l->heap[l->heap_len];
        l->heap[i]->index = i;
        heap_down(l, i);
        heap_up(l, i);
    }
    t->index = -1;
}

void loop_timer_set(loop *l, loop_timer *t, uint64_t ms) {
    loop_timer_cancel(l, t);
    t->due_ms = loop_now_ms() + ms;
    if (l->heap_len == l->heap_cap) {
        l->heap_cap = l->heap_cap ? l->heap_cap * 2 : 64;
        l->heap = xrealloc(l->heap, (size_t)l->heap_cap * sizeof *l->heap);
    }
    t->index = l->heap_len++;
    l->heap[t->index] = t;
    heap_up(l, t->index);
}

static void run_timers(loop *l) {
    uint64_t now = loop_now_ms();
    while (l->heap_len > 0 && l->heap[0]->due_ms <= now) {
        loop_timer *t = l->heap[0];
        loop_timer_cancel(l, t);
        t->fn(t->arg);
    }
}

/* --- posts --- */

void loop_post(loop *l, loop_fn fn, void *arg) {
    pthread_mutex_lock(&l->post_lock);
    if (l->nposts == l->posts_cap) {
        l->posts_cap = l->posts_cap ? l->posts_cap * 2 : 64;
        l->posts = xrealloc(l->posts, l->posts_cap * sizeof *l->posts);
    }
    l->posts[l->nposts++] = (loop_post_item){fn, arg};
    bool need_wake = !l->wake_pending;
    l->wake_pending = true;
    pthread_mutex_unlock(&l->post_lock);
    if (need_wake) {
        uint64_t one = 1;
        ssize_t w = write(l->wakefd, &one, sizeof one);
        (void)w;
    }
}

static void run_posts(loop *l) {
    uint64_t v;
    ssize_t r = read(l->wakefd, &v, sizeof v);
    (void)r;
    pthread_mutex_lock(&l->post_lock);
    loop_post_item *items = l->posts;
    size_t n = l->nposts;
    l->posts = NULL;
    l->nposts = l->posts_cap = 0;
    l->wake_pending = false;
    pthread_mutex_unlock(&l->post_lock);
    for (size_t i = 0; i < n; i++) items[i].fn(items[i].arg);
    free(items);
}

void loop_defer(loop *l, loop_fn fn, void *arg) {
    for (size_t i = 0; i < l->ndeferred; i++)
        if (l->deferred[i].fn == fn && l->deferred[i].arg == arg) return;
    if (l->ndeferred == l->deferred_cap) {
        l->deferred_cap = l->deferred_cap ? l->deferred_cap * 2 : 8;
        l->deferred = xrealloc(l->deferred, l->deferred_cap * sizeof *l->deferred);
    }
    l->deferred[l->ndeferred++] = (loop_post_item){fn, arg};
}

/* A deferred function may defer again; that runs in the next round. */
static void run_deferred(loop *l) {
    loop_post_item *items = l->deferred;
    size_t n = l->ndeferred, cap = l->deferred_cap;
    l->deferred = NULL;
    l->ndeferred = l->deferred_cap = 0;
    for (size_t i = 0; i < n; i++) items[i].fn(items[i].arg);
    if (l->deferred) {
        free(items);
    } else {
        l->deferred = items; /* keep the array: no allocation per round */
        l->deferred_cap = cap;
    }
}

void loop_set_after_events(loop *l, loop_fn fn, void *arg) {
    l->after_events = (loop_post_item){fn, arg};
}

void loop_stop(loop *l) {
    atomic_store(&l->stopping, true);
    uint64_t one = 1;
    ssize_t w = write(l->wakefd, &one, sizeof one);
    (void)w;
}

void loop_run(loop *l) {
    struct epoll_event evs[256];
    while (!atomic_load(&l->stopping)) {
        run_deferred(l);
        int timeout = l->ndeferred > 0 ? 0 : -1;
        if (timeout < 0 && l->heap_len > 0) {
            uint64_t now = loop_now_ms(), due = l->heap[0]->due_ms;
            timeout = due <= now ? 0 : (int)(due - now > 60000 ? 60000 : due - now);
        }
        int n = epoll_wait(l->epfd, evs, 256, timeout);
        if (n < 0 && errno != EINTR) {
            log_write(LOG_ERROR, "loop: epoll_wait: %s", strerror(errno));
            abort();
        }
        for (int i = 0; i < n; i++) {
            loop_watch *w = evs[i].data.ptr;
            if (!w) {
                run_posts(l);
                continue;
            }
            if (w->fn) w->fn(w->arg, evs[i].events);
        }
        if (l->after_events.fn) l->after_events.fn(l->after_events.arg);
        run_timers(l);
        for (int i = 0; i < l->ndead; i++) free(l->dead[i]);
        l->ndead = 0;
    }
    /* Work posted during shutdown (connection clean-ups, and whatever they
     * post in turn) still runs. */
    for (;;) {
        pthread_mutex_lock(&l->post_lock);
        size_t n = l->nposts;
        pthread_mutex_unlock(&l->post_lock);
        if (n == 0 && l->ndeferred == 0) break;
        if (n > 0) run_posts(l);
        run_deferred(l);
    }
}
