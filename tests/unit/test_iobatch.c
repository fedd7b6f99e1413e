/* test_iobatch.c — batched socket reads and writes (src/net/iobatch.c)
 * against real sockets: the bytes arrive, and full sockets, short writes,
 * closed peers and a full batch report what writev(2) would; empty sockets,
 * short buffers and ended input report what read(2) would. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "net/iobatch.h"

/* A connected TCP pair over loopback: fd[0] writes, fd[1] reads; both
 * non-blocking, as the server's sockets are. */
static void pair(int fd[2]) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) < 0) {
        perror("listen");
        exit(1);
    }
    fd[1] = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd[1], (struct sockaddr *)&a, sizeof a) < 0) {
        perror("connect");
        exit(1);
    }
    fd[0] = accept(l, NULL, NULL);
    close(l);
    fcntl(fd[0], F_SETFL, O_NONBLOCK);
    fcntl(fd[1], F_SETFL, O_NONBLOCK);
}

static size_t drain(int fd, char *out, size_t cap) {
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, out + n, cap - n);
        if (r <= 0) return n;
        n += (size_t)r;
    }
}

/* Fill fd's send buffer until a write would block; returns bytes written. */
static size_t fill(int fd) {
    static char junk[65536];
    size_t total = 0;
    for (;;) {
        ssize_t r = write(fd, junk, sizeof junk);
        if (r <= 0) return total;
        total += (size_t)r;
    }
}

static void test_delivery(io_batch *b) {
    int a[2], c[2], d[2];
    pair(a);
    pair(c);
    pair(d);
    struct iovec one = {.iov_base = "hello", .iov_len = 5};
    struct iovec three[3] = {{"HTTP/1.1 204 ", 13}, {"No Content\r\n", 12}, {"\r\n", 2}};
    int s0 = io_batch_send(b, a[0], &one, 1);
    int s1 = io_batch_send(b, c[0], three, 3);
    int s2 = io_batch_send(b, d[0], &one, 1);
    CHECK_EQ_INT(io_batch_count(b), 3);
    CHECK_EQ_INT(io_batch_run(b), 0);
    CHECK_EQ_INT(io_batch_count(b), 0);
    CHECK_EQ_INT(io_batch_result(b, s0), 5);
    CHECK_EQ_INT(io_batch_result(b, s1), 27);
    CHECK_EQ_INT(io_batch_result(b, s2), 5);
    char got[128];
    size_t n = drain(a[1], got, sizeof got);
    CHECK_MEM_STR(got, n, "hello");
    n = drain(c[1], got, sizeof got);
    CHECK_MEM_STR(got, n, "HTTP/1.1 204 No Content\r\n\r\n");
    n = drain(d[1], got, sizeof got);
    CHECK_MEM_STR(got, n, "hello");
    /* The batch is reusable, and slots restart at 0. */
    CHECK_EQ_INT(io_batch_send(b, a[0], &one, 1), 0);
    CHECK_EQ_INT(io_batch_run(b), 0);
    CHECK_EQ_INT(io_batch_result(b, 0), 5);
    n = drain(a[1], got, sizeof got);
    CHECK_MEM_STR(got, n, "hello");
    for (int i = 0; i < 2; i++) close(a[i]), close(c[i]), close(d[i]);
}

static void test_full_short_closed(io_batch *b) {
    int full[2], room[2], gone[2], ok[2];
    pair(full);
    pair(room);
    pair(gone);
    pair(ok);
    fill(full[0]);
    /* Leave a little room: read a few bytes off a full socket. */
    size_t filled = fill(room[0]);
    static char sink[4096], big[1 << 20];
    size_t freed = drain(room[1], sink, sizeof sink);
    CHECK(freed > 0 && freed < filled);
    usleep(20000); /* let the window update reach the sender */
    close(gone[1]);
    /* TCP learns that the peer is gone from the RST answering a write. */
    CHECK_EQ_INT(write(gone[0], "z", 1), 1);
    struct iovec x = {.iov_base = "x", .iov_len = 1};
    struct iovec large = {.iov_base = big, .iov_len = sizeof big};
    int sf = io_batch_send(b, full[0], &x, 1);
    int sr = io_batch_send(b, room[0], &large, 1);
    int sg = io_batch_send(b, gone[0], &x, 1);
    int so = io_batch_send(b, ok[0], &x, 1);
    CHECK_EQ_INT(io_batch_run(b), 0);
    CHECK_EQ_INT(io_batch_result(b, sf), -EAGAIN);
    ssize_t r = io_batch_result(b, sr);
    CHECK(r > 0 && (size_t)r < sizeof big); /* short, as writev would be */
    r = io_batch_result(b, sg); /* and no SIGPIPE */
    CHECK(r == -EPIPE || r == -ECONNRESET);
    CHECK_EQ_INT(io_batch_result(b, so), 1);
    for (int i = 0; i < 2; i++) close(full[i]), close(room[i]), close(gone[i]), close(ok[i]);
}

static void test_limits(io_batch *b) {
    int p[2];
    pair(p);
    struct iovec x = {.iov_base = "y", .iov_len = 1};
    struct iovec many[IO_BATCH_IOV + 1];
    for (int i = 0; i <= IO_BATCH_IOV; i++) many[i] = x;
    CHECK_EQ_INT(io_batch_send(b, p[0], many, IO_BATCH_IOV + 1), -1);
    CHECK_EQ_INT(io_batch_send(b, p[0], many, 0), -1);
    int added = 0;
    while (io_batch_send(b, p[0], &x, 1) >= 0) added++;
    CHECK_EQ_INT(added, IO_BATCH_MAX);
    CHECK_EQ_INT(io_batch_run(b), 0);
    long sum = 0;
    for (int i = 0; i < IO_BATCH_MAX; i++) sum += io_batch_result(b, i);
    CHECK_EQ_INT(sum, IO_BATCH_MAX);
    char got[IO_BATCH_MAX + 16];
    CHECK_EQ_INT(drain(p[1], got, sizeof got), IO_BATCH_MAX);
    /* A send to a descriptor that is not a socket fails alone. */
    int bad = io_batch_send(b, 0x7fff, &x, 1);
    int good = io_batch_send(b, p[0], &x, 1);
    CHECK_EQ_INT(io_batch_run(b), 0);
    CHECK_EQ_INT(io_batch_result(b, bad), -EBADF);
    CHECK_EQ_INT(io_batch_result(b, good), 1);
    close(p[0]);
    close(p[1]);
}

static void test_recv(io_batch *b) {
    int data[2], empty[2], ended[2], big[2];
    pair(data);
    pair(empty);
    pair(ended);
    pair(big);
    CHECK_EQ_INT(write(data[1], "POST /a HTTP/1.1\r\n", 18), 18);
    CHECK_EQ_INT(write(ended[1], "bye", 3), 3);
    shutdown(ended[1], SHUT_WR);
    CHECK_EQ_INT(write(big[1], "0123456789", 10), 10);
    usleep(20000); /* let loopback deliver everything */
    char got_data[64], got_empty[64], got_ended[64], got_big[4];
    int sd = io_batch_recv(b, data[0], got_data, sizeof got_data);
    int se = io_batch_recv(b, empty[0], got_empty, sizeof got_empty);
    int sx = io_batch_recv(b, ended[0], got_ended, sizeof got_ended);
    int sb = io_batch_recv(b, big[0], got_big, sizeof got_big);
    int sbad = io_batch_recv(b, 0x7fff, got_big, sizeof got_big);
    /* Reads and writes mix in one batch. */
    struct iovec x = {.iov_base = "ok", .iov_len = 2};
    int sw = io_batch_send(b, empty[1], &x, 1);
    CHECK_EQ_INT(io_batch_count(b), 6);
    CHECK_EQ_INT(io_batch_run(b), 0);
    CHECK_EQ_INT(io_batch_result(b, sd), 18);
    CHECK_MEM_STR(got_data, 18, "POST /a HTTP/1.1\r\n");
    CHECK_EQ_INT(io_batch_result(b, se), -EAGAIN);
    CHECK_EQ_INT(io_batch_result(b, sx), 3);
    CHECK_MEM_STR(got_ended, 3, "bye");
    CHECK_EQ_INT(io_batch_result(b, sb), 4); /* the buffer's size, the rest stays */
    CHECK_MEM_STR(got_big, 4, "0123");
    CHECK_EQ_INT(io_batch_result(b, sbad), -EBADF);
    CHECK_EQ_INT(io_batch_result(b, sw), 2);
    /* The next reads: end of input, and what the first one left. */
    sx = io_batch_recv(b, ended[0], got_ended, sizeof got_ended);
    sb = io_batch_recv(b, big[0], got_data, sizeof got_data);
    CHECK_EQ_INT(io_batch_run(b), 0);
    CHECK_EQ_INT(io_batch_result(b, sx), 0);
    CHECK_EQ_INT(io_batch_result(b, sb), 6);
    CHECK_MEM_STR(got_data, 6, "456789");
    char got[8];
    CHECK_EQ_INT(drain(empty[0], got, sizeof got), 2);
    CHECK_MEM_STR(got, 2, "ok");
    for (int i = 0; i < 2; i++) close(data[i]), close(empty[i]), close(ended[i]), close(big[i]);
}

int main(void) {
    io_batch *b = io_batch_new();
    if (!b) {
        /* The server falls back to read and writev here; nothing to test. */
        printf("test_iobatch: io_uring unavailable (%s), skipped\n", strerror(errno));
        return 0;
    }
    test_delivery(b);
    test_full_short_closed(b);
    test_limits(b);
    test_recv(b);
    io_batch_free(b);
    return check_summary("iobatch");
}
