/* iobatch.h — many socket reads and writes in one system call (io_uring).
 *
 * A fan-out writes one small event to thousands of sockets, and every
 * append is one small request read and one small response written. Each
 * read(2) or write(2) pays the cost of entering the kernel, which on virtual
 * machines is about half of the whole call (bench/floor.c: 9.7 -> 4.6 us of
 * CPU per 300-byte loopback write at 1,000 sockets). An I/O batch queues the
 * reads or writes of one loop iteration and submits them together with one
 * io_uring_enter(2).
 *
 * Every operation is non-blocking (MSG_DONTWAIT): it completes inside the
 * submission, moving what it can, or fails with -EAGAIN, exactly like
 * read(2) and writev(2) on a non-blocking socket. Nothing stays in flight
 * after io_batch_run() returns, so callers keep ordinary read/writev
 * semantics.
 *
 * One batch belongs to one thread. io_batch_new() returns NULL where
 * io_uring is unavailable (old kernel, disabled by sysctl or seccomp);
 * callers then use read(2) and writev(2).
 */
#ifndef WEFT_NET_IOBATCH_H
#define WEFT_NET_IOBATCH_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct io_batch io_batch;

/* Most operations one batch holds, and most iovec entries per send. */
enum { IO_BATCH_MAX = 256, IO_BATCH_IOV = 16 };

/* The result of an operation that was never attempted (the batch failed
 * as a whole): the caller reads or writes itself. */
#define IO_BATCH_UNDONE ((ssize_t)-1000000)

/* NULL (errno set) if io_uring cannot be used here. */
io_batch *io_batch_new(void);
void io_batch_free(io_batch *b);

/* Queue a send of iov[0..niov) (niov <= IO_BATCH_IOV; copied) to fd.
 * The bytes must stay valid until io_batch_run() returns. Returns the
 * send's slot, or -1 when the batch is full. */
int io_batch_send(io_batch *b, int fd, const struct iovec *iov, int niov);

/* Queue a receive of up to len bytes from fd into p, which must stay valid
 * until io_batch_run() returns. Returns the slot, or -1 when the batch is
 * full. The result is the byte count, 0 at end of input, or -errno. */
int io_batch_recv(io_batch *b, int fd, void *p, size_t len);

/* Queued operations, not yet run. */
int io_batch_count(const io_batch *b);

/* Submit every queued operation and wait for all of them. Afterwards
 * io_batch_result(b, slot) is each one's byte count or -errno (or
 * IO_BATCH_UNDONE), until the next operation is queued. Returns 0, or -1 if
 * io_uring failed: the batch is then unusable (free it and use read and
 * writev). */
int io_batch_run(io_batch *b);
ssize_t io_batch_result(const io_batch *b, int slot);

#endif
