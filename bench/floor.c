/* floor.c — what one small write to a loopback TCP socket costs on this
 * machine, with a reader draining the other end in another thread. This is
 * the floor under every fan-out number in the benchmark: an SSE event sent
 * to N subscribers is N such writes, whatever the server does around them.
 *
 *   build/floor [--sockets N] [--size BYTES] [--seconds S]
 *
 * One thread writes `size` bytes to each of N connected sockets in turn (one
 * write(2) each: a "round", like one event fanned out to N subscribers);
 * another thread reads them all with epoll, as the load generator does.
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

static int nsock = 1000;
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

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--sockets") == 0) nsock = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--size") == 0) size = (size_t)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0) seconds = atof(argv[i + 1]);
        else {
            fprintf(stderr, "usage: floor [--sockets N] [--size BYTES] [--seconds S]\n");
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
    double t0 = now_s(), c0 = thread_cpu_s();
    long rounds = 0;
    while (now_s() - t0 < seconds) {
        for (int i = 0; i < nsock; i++)
            if (write(wfd[i], msg, size) != (ssize_t)size) die("write");
        rounds++;
        usleep(1000); /* let the reader drain: no buffering effects */
    }
    double wall = now_s() - t0 - (double)rounds * 0.001, cpu = thread_cpu_s() - c0;
    atomic_store(&done, true);
    pthread_join(t, NULL);
    printf("floor: %d sockets, %zu-byte writes: %.2f us CPU per write, %.2f ms wall per round "
           "(%ld rounds)\n",
           nsock, size, cpu * 1e6 / ((double)rounds * nsock), wall * 1e3 / (double)rounds, rounds);
    return 0;
}
