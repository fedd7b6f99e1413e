/* flush.c — the group-commit flusher thread and the WAL segment it writes.
 *
 * Mutations append encoded records to s->pending under s->mu and signal
 * (or, on a thread that defers its wake-ups, leave that to store_wake).
 * The flusher takes the whole pending buffer at once (swapping in an empty
 * one, so new records keep accumulating for the next batch while it works),
 * writes it to the current segment with one write(2), makes it durable with
 * one fdatasync, and reports the batch's last LSN through on_durable. One
 * fsync thus covers every record that arrived while the previous one ran:
 * the busier the store, the bigger the batches.
 *
 * A checkpoint asks for a new segment by recording where in the pending
 * buffer the new segment starts (store_snapshot_begin). The flusher writes
 * and syncs the part before it to the old segment, then creates the new one
 * (and fsyncs wal/ so its name survives a crash) before writing the rest.
 *
 * A failed write or fsync is fatal: after a failed fsync the kernel may
 * have dropped the dirty pages, so retrying could report lost data as
 * durable. The store stops logging (mutations fail with the errno) and the
 * records of the failed batch are never reported durable.
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "../util/log.h"

int wal_open_segment(store *s, uint64_t seg) {
    char path[WAL_PATH_LEN];
    wal_segment_path(path, seg);
    int fd = openat(s->dirfd, path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    if (s->sync && io_fsync_dir(s->dirfd, "wal") < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    if (s->seg_fd >= 0) close(s->seg_fd);
    s->seg_fd = fd;
    return 0;
}

/* Write and sync one run of records. Returns 0 or an errno. */
static int write_run(store *s, const uint8_t *p, size_t n, uint64_t *syncs) {
    if (n == 0) return 0;
    if (io_write_full(s->seg_fd, p, n) < 0) return errno;
    if (s->sync) {
        if (fdatasync(s->seg_fd) < 0) return errno;
        (*syncs)++;
    }
    return 0;
}

void *flush_main(void *arg) {
    store *s = arg;
    buf batch, deletes;
    buf_init(&batch);
    buf_init(&deletes);

    pthread_mutex_lock(&s->mu);
    store_lsn reported = s->durable_lsn;
    for (;;) {
        while (!s->failed && !(s->wake_requested && s->pending.len > 0) && !s->rotate_pending &&
               !s->flush_stop)
            pthread_cond_wait(&s->flush_cond, &s->mu);
        if (s->failed || (s->pending.len == 0 && !s->rotate_pending)) break;

        buf t = batch;
        batch = s->pending;
        s->pending = t;
        t = deletes;
        deletes = s->pending_deletes;
        s->pending_deletes = t;
        store_lsn last = s->next_lsn - 1;
        bool rotate = s->rotate_pending;
        size_t split = rotate ? s->rotate_at : batch.len;
        uint64_t new_seg = s->rotate_seg;
        s->rotate_pending = false;
        s->wake_requested = false;
        pthread_mutex_unlock(&s->mu);

        uint64_t syncs = 0;
        int err = write_run(s, batch.data, split, &syncs);
        if (!err && rotate && wal_open_segment(s, new_seg) < 0) err = errno;
        if (!err) err = write_run(s, batch.data + split, batch.len - split, &syncs);

        pthread_mutex_lock(&s->mu);
        s->stats.syncs += syncs;
        s->stats.batches++;
        if (err) {
            store_fail_locked(s, err, "WAL write");
            break;
        }
        if (rotate) s->seg_open = new_seg;
        /* Published before on_durable runs: an owner that checks
         * store_durable_lsn after logging must not miss this batch. */
        s->durable_lsn = last;
        pthread_cond_broadcast(&s->durable_cond);
        pthread_mutex_unlock(&s->mu);

        if (last > reported) {
            if (s->opt.on_durable) s->opt.on_durable(s->opt.ctx, last);
            reported = last;
        }
        /* Deleted streams' data files go once the delete is durable. */
        const uint64_t *ids = (const uint64_t *)deletes.data;
        for (size_t i = 0; i < deletes.len / sizeof *ids; i++) {
            if (datafile_unlink(s, ids[i]) < 0)
                log_write(LOG_WARN, "store: cannot remove data file of stream %llx: %s",
                          (unsigned long long)ids[i], strerror(errno));
        }
        /* Keep the buffers for the next batch unless a burst made them huge. */
        if (batch.cap > (4u << 20)) buf_free(&batch);
        buf_reset(&batch);
        buf_reset(&deletes);

        pthread_mutex_lock(&s->mu);
    }
    int failed = s->failed;
    pthread_mutex_unlock(&s->mu);
    if (failed && s->opt.on_failure) s->opt.on_failure(s->opt.ctx, failed);
    buf_free(&batch);
    buf_free(&deletes);
    return NULL;
}
