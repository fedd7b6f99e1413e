/* sendbatch.h — many socket writes in one system call (io_uring).
 *
 * A fan-out writes one small event to thousands of sockets, and every
 * acknowledged append is one small response. Each write(2) pays the cost of
 * entering the kernel, which on virtual machines is about half of the whole
 * write (bench/floor.c: 9.7 -> 4.6 us of CPU per 300-byte loopback write at
 * 1,000 sockets). A send batch queues the writes of one loop iteration and
 * submits them together with one io_uring_enter(2).
 *
 * Every send is non-blocking (MSG_DONTWAIT): it completes inside the
 * submission, writing what fits, or fails with -EAGAIN, exactly like
 * writev(2) on a non-blocking socket. Nothing stays in flight after
 * send_batch_run() returns, so callers keep ordinary writev semantics.
 *
 * One batch belongs to one thread. send_batch_new() returns NULL where
 * io_uring is unavailable (old kernel, disabled by sysctl or seccomp);
 * callers then write with writev(2).
 */
#ifndef WEFT_NET_SENDBATCH_H
#define WEFT_NET_SENDBATCH_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct send_batch send_batch;

/* Most sends one batch holds, and most iovec entries per send. */
enum { SEND_BATCH_MAX = 256, SEND_BATCH_IOV = 16 };

/* The result of a send that was never attempted (the batch failed as a
 * whole): the caller writes it itself. */
#define SEND_BATCH_UNSENT ((ssize_t)-1000000)

/* NULL (errno set) if io_uring cannot be used here. */
send_batch *send_batch_new(void);
void send_batch_free(send_batch *b);

/* Queue a send of iov[0..niov) (niov <= SEND_BATCH_IOV; copied) to fd.
 * The bytes must stay valid until send_batch_run() returns. Returns the
 * send's slot, or -1 when the batch is full. */
int send_batch_add(send_batch *b, int fd, const struct iovec *iov, int niov);

/* Queued sends, not yet run. */
int send_batch_count(const send_batch *b);

/* Submit every queued send and wait for all of them. Afterwards
 * send_batch_result(b, slot) is each send's byte count or -errno (or
 * SEND_BATCH_UNSENT), until the next send_batch_add(). Returns 0, or -1 if
 * io_uring failed: the batch is then unusable (free it and use writev). */
int send_batch_run(send_batch *b);
ssize_t send_batch_result(const send_batch *b, int slot);

#endif
