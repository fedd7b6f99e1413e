/* io.c — small I/O helpers: reads and writes that finish, directory fsync.
 *
 * A short write is not an error by itself (signals, pipes, quotas near the
 * limit); only a failing write(2) is. The helpers keep going until every
 * byte is moved or the kernel reports an error.
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

int io_write_full(int fd, const void *p, size_t n) {
    const uint8_t *q = p;
    while (n > 0) {
        ssize_t w = write(fd, q, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        q += w;
        n -= (size_t)w;
    }
    return 0;
}

int io_pwrite_full(int fd, const void *p, size_t n, uint64_t off) {
    const uint8_t *q = p;
    while (n > 0) {
        ssize_t w = pwrite(fd, q, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        q += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

int io_pread_full(int fd, void *p, size_t n, uint64_t off) {
    uint8_t *q = p;
    while (n > 0) {
        ssize_t r = pread(fd, q, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r == 0) errno = EIO;
            return -1;
        }
        q += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

int io_pwritev_full(int fd, struct iovec *iov, size_t n, uint64_t off) {
    while (n > 0) {
        int chunk = n < IOV_MAX ? (int)n : IOV_MAX;
        ssize_t w = pwritev(fd, iov, chunk, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        off += (uint64_t)w;
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

int io_fsync_dir(int dirfd, const char *path) {
    int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}
