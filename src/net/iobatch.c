/* iobatch.c — many socket reads or writes in one io_uring submission (see
 * iobatch.h).
 *
 * The ring is sized so that a full batch always fits both queues: every
 * operation gets its completion slot, and the completion queue can never
 * overflow because it is emptied before the next batch is queued.
 */
#include "iobatch.h"

#include <errno.h>
#include <liburing.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include "../util/log.h"
#include "../util/mem.h"

struct io_batch {
    struct io_uring ring;
    int n;
    struct msghdr msg[IO_BATCH_MAX];
    struct iovec iov[IO_BATCH_MAX][IO_BATCH_IOV];
    ssize_t res[IO_BATCH_MAX];
};

io_batch *io_batch_new(void) {
    io_batch *b = xcalloc(1, sizeof *b);
    /* COOP_TASKRUN: completions need no interrupt to the (only) thread
     * that uses the ring; SINGLE_ISSUER lets the kernel skip locking.
     * Older kernels reject the flags, so retry without them. */
    unsigned flags = 0;
#ifdef IORING_SETUP_COOP_TASKRUN
    flags |= IORING_SETUP_COOP_TASKRUN;
#endif
#ifdef IORING_SETUP_SINGLE_ISSUER
    flags |= IORING_SETUP_SINGLE_ISSUER;
#endif
    int rc = io_uring_queue_init(IO_BATCH_MAX, &b->ring, flags);
    if (rc == -EINVAL && flags) rc = io_uring_queue_init(IO_BATCH_MAX, &b->ring, 0);
    if (rc < 0) {
        free(b);
        errno = -rc;
        return NULL;
    }
    /* Kernels before 5.6 have the ring but not these operations. */
    struct io_uring_probe *probe = io_uring_get_probe_ring(&b->ring);
    bool ok = probe && io_uring_opcode_supported(probe, IORING_OP_SEND) &&
              io_uring_opcode_supported(probe, IORING_OP_SENDMSG) &&
              io_uring_opcode_supported(probe, IORING_OP_RECV);
    io_uring_free_probe(probe);
    if (!ok) {
        io_batch_free(b);
        errno = EOPNOTSUPP;
        return NULL;
    }
    return b;
}

void io_batch_free(io_batch *b) {
    if (!b) return;
    io_uring_queue_exit(&b->ring);
    free(b);
}

int io_batch_count(const io_batch *b) { return b->n; }

int io_batch_send(io_batch *b, int fd, const struct iovec *iov, int niov) {
    if (b->n == IO_BATCH_MAX || niov < 1 || niov > IO_BATCH_IOV) return -1;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
    if (!sqe) return -1;
    int slot = b->n++;
    b->res[slot] = IO_BATCH_UNDONE;
    if (niov == 1) {
        io_uring_prep_send(sqe, fd, iov[0].iov_base, iov[0].iov_len, MSG_DONTWAIT | MSG_NOSIGNAL);
    } else {
        memcpy(b->iov[slot], iov, (size_t)niov * sizeof *iov);
        b->msg[slot] = (struct msghdr){.msg_iov = b->iov[slot], .msg_iovlen = (size_t)niov};
        io_uring_prep_sendmsg(sqe, fd, &b->msg[slot], MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    io_uring_sqe_set_data64(sqe, (uint64_t)slot);
    return slot;
}

int io_batch_recv(io_batch *b, int fd, void *p, size_t len) {
    if (b->n == IO_BATCH_MAX) return -1;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
    if (!sqe) return -1;
    int slot = b->n++;
    b->res[slot] = IO_BATCH_UNDONE;
    io_uring_prep_recv(sqe, fd, p, len, MSG_DONTWAIT);
    io_uring_sqe_set_data64(sqe, (uint64_t)slot);
    return slot;
}

/* Move every available completion of the current batch into res;
 * returns how many. */
static int reap(io_batch *b) {
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&b->ring, head, cqe) {
        uint64_t slot = io_uring_cqe_get_data64(cqe);
        if (slot < (uint64_t)b->n) b->res[slot] = cqe->res;
        seen++;
    }
    io_uring_cq_advance(&b->ring, seen);
    return (int)seen;
}

int io_batch_run(io_batch *b) {
    int done = 0, rc = 0;
    while (done < b->n) {
        /* Submits whatever the kernel has not consumed yet, then waits. */
        rc = io_uring_submit_and_wait(&b->ring, (unsigned)(b->n - done));
        done += reap(b);
        if (rc < 0 && rc != -EINTR) break;
        rc = 0;
    }
    b->n = 0;
    if (rc < 0) {
        /* Operations the kernel never consumed stay IO_BATCH_UNDONE. */
        log_write(LOG_ERROR, "io_uring: %s; using read and writev from now on", strerror(-rc));
        return -1;
    }
    return 0;
}

ssize_t io_batch_result(const io_batch *b, int slot) { return b->res[slot]; }
