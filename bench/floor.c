/* floor.c — what one small write to a loopback TCP socket costs on this
 * machine, with a reader draining the other end in another thread. This is
 * the floor under every fan-out number in the benchmark: an SSE event sent
 * to N subscribers is N such writes, whatever the server does around them.
 *
 *   build/floor [--sockets N] [--size BYTES] [--seconds S] [--uring]
 *
 * One thread writes `size` bytes to each of N connected sockets in turn (one
 * write(2) each: a "round", like one event fanned out to N subscribers);
 * another thread reads them all with epoll, as the load generator does.
 * With --uring the round's writes go to the kernel together, up to 256 per
 * io_uring submission, as weft's src/net/iobatch.c sends them: the
 * difference is what entering the kernel costs per write on this machine.
 * Prints the writer's CPU time per write and the wall time per round.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

static int nsock = 1000;
static bool uring;
static size_t size = 300;
static double seconds = 5;
static int *rfd, *wfd;
static atomic_bool done;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double thread_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void *reader(void *arg) {
    (void)arg;
    int ep = epoll_create1(0);
    for (int i = 0; i < nsock; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = rfd[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, rfd[i], &ev);
    }
    struct epoll_event evs[256];
    char buf[65536];
    while (!atomic_load(&done)) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++)
            while (read(evs[i].data.fd, buf, sizeof buf) == (ssize_t)sizeof buf) {
            }
    }
    close(ep);
    return NULL;
}

static void die(const char *what) {
    fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* One round as batches of up to 256 sends, one submission each. */
static void round_uring(struct io_uring *ring, const char *msg) {
    for (int i = 0; i < nsock;) {
        int n = 0;
        for (; i < nsock && n < 256; i++, n++)
            io_uring_prep_send(io_uring_get_sqe(ring), wfd[i], msg, size, MSG_DONTWAIT);
        int rc = io_uring_submit_and_wait(ring, (unsigned)n);
        if (rc < 0) {
            errno = -rc;
            die("io_uring_submit");
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(ring, head, cqe) {
            if (cqe->res != (int)size) {
                errno = cqe->res < 0 ? -cqe->res : EIO;
                die("send");
            }
            seen++;
        }
        io_uring_cq_advance(ring, seen);
    }
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        bool has_value = i + 1 < argc;
        if (strcmp(argv[i], "--uring") == 0) uring = true;
        else if (has_value && strcmp(argv[i], "--sockets") == 0) nsock = atoi(argv[++i]);
        else if (has_value && strcmp(argv[i], "--size") == 0) size = (size_t)atoi(argv[++i]);
        else if (has_value && strcmp(argv[i], "--seconds") == 0) seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: floor [--sockets N] [--size BYTES] [--seconds S] [--uring]\n");
            return 2;
        }
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 4096) < 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) < 0)
        die("listen");
    rfd = calloc((size_t)nsock, sizeof *rfd);
    wfd = calloc((size_t)nsock, sizeof *wfd);
    int one = 1;
    for (int i = 0; i < nsock; i++) {
        rfd[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (rfd[i] < 0) die("socket");
        if (connect(rfd[i], (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) die("connect");
        wfd[i] = accept(lfd, NULL, NULL);
        if (wfd[i] < 0) die("accept");
        setsockopt(wfd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    pthread_t t;
    pthread_create(&t, NULL, reader, NULL);
    char *msg = malloc(size);
    memset(msg, 'x', size);
    struct io_uring ring;
    int rc = uring ? io_uring_queue_init(256, &ring, 0) : 0;
    if (rc < 0) {
        errno = -rc;
        die("io_uring");
    }
    double t0 = now_s(), c0 = thread_cpu_s();
    long rounds = 0;
    while (now_s() - t0 < seconds) {
        if (uring) round_uring(&ring, msg);
        else
            for (int i = 0; i < nsock; i++)
                if (write(wfd[i], msg, size) != (ssize_t)size) die("write");
        rounds++;
        usleep(1000); /* let the reader drain: no buffering effects */
    }
    double wall = now_s() - t0 - (double)rounds * 0.001, cpu = thread_cpu_s() - c0;
    atomic_store(&done, true);
    pthread_join(t, NULL);
    printf("floor%s: %d sockets, %zu-byte writes: %.2f us CPU per write, %.2f ms wall per round "
           "(%ld rounds)\n",
           uring ? " (io_uring)" : "", nsock, size, cpu * 1e6 / ((double)rounds * nsock), wall * 1e3 / (double)rounds, rounds);
    return 0;
}
