/* flush.c — the group-commit flusher thread and the WAL segments it writes.
 *
 * Mutations append encoded records to s->pending under s->mu and signal
 * (or, on a thread that defers its wake-ups, leave that to store_wake).
 * The flusher takes the whole pending buffer at once (swapping in an empty
 * one, so new records keep accumulating for the next batch while it works),
 * writes it to the current segment with one pwrite(2), makes it durable with
 * one fdatasync, and reports the batch's last LSN through on_durable. One
 * fsync thus covers every record that arrived while the previous one ran:
 * the busier the store, the bigger the batches.
 *
 * Segments are preallocated. Appending to a file makes every fdatasync
 * write its inode (the new size, new blocks) as well, which costs about as
 * much again as the data; overwriting blocks that are already allocated
 * does not. So a rotation renames a spare segment into place. The
 * checkpoint keeps a segment it no longer needs as the spare (checkpoint.c)
 * and only without one, as at startup, does the checkpoint thread write a
 * new one full of zeros (wal_prepare_spare): 64 MiB of zeros per
 * checkpoint had made every fdatasync meanwhile wait behind them, 5-50 ms
 * instead of 0.2 here. Records go at a tracked offset; past the
 * preallocated end they simply extend the file (correct, only slower), and
 * the flusher moves on to a new segment at the next batch if a spare is
 * ready by then. That also covers the segment opened at startup, which is
 * not preallocated. A recycled spare still holds an older segment's bytes;
 * each segment's header has a fresh salt that its records are sealed with
 * as the flusher writes them (wal_seal), so recovery takes none of those
 * bytes for records of this segment (store_int.h has the format). Spares
 * are made on the checkpoint thread, never in the flusher's way; without
 * a ready spare a rotation creates an empty file, as before.
 *
 * A checkpoint asks for a new segment by recording where in the pending
 * buffer the new segment starts (store_snapshot_begin). The flusher writes
 * and syncs the part before it to the old segment, then opens the new one
 * (and fsyncs wal/ so its name survives a crash) before writing the rest.
 * A new segment is only written once the previous one is synced, so only
 * the last segment can end in a torn record; the new one's header records
 * where the previous one's records ended.
 *
 * In durable mode the segment is written with O_DIRECT. A buffered write
 * copies the batch into the page cache and fdatasync then finds, maps and
 * writes back those pages; a direct write goes to the device from one
 * aligned buffer, and fdatasync is left with the cache flush. That took a
 * fifth off the CPU time of each write and sync here. Direct writes cover
 * whole blocks, so the block the last batch ended in is written again with
 * the new records after it: its earlier bytes are the same, so a torn
 * write of it cannot change a record already made durable. Past the last
 * record the block is zero. A file system without
 * O_DIRECT, or one that refuses 4 KiB-aligned direct writes (larger
 * blocks), writes buffered from then on, as does --durability none, which
 * never syncs.
 *
 * A failed fsync is fatal: the kernel may have dropped the dirty pages, so
 * retrying could report lost data as durable. The store stops logging
 * (mutations fail with the errno) and the records of the failed batch are
 * never reported durable. So is a failed write, except one that found the
 * disk full (ENOSPC, EDQUOT): nothing was synced and the batch is still in
 * memory, so the flusher refuses new records (507 to clients) and writes
 * the batch again, at the same offset, every second or sooner, until it
 * fits; its writers get their answers then. Closing the store gives up.
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "../util/log.h"
#include "../util/mem.h"

int wal_open_segment(store *s, uint64_t seg, uint32_t salt, bool use_spare) {
    char path[WAL_PATH_LEN];
    wal_segment_path(path, seg);
    /* Without its spare the segment is just not preallocated. */
    if (use_spare && renameat(s->dirfd, WAL_SPARE_PATH, s->dirfd, path) < 0)
        log_write(LOG_WARN, "store: cannot rename %s to %s: %s", WAL_SPARE_PATH, path,
                  strerror(errno));
    bool direct = s->sync && !s->wal_buffered;
    int fd = direct ? openat(s->dirfd, path, O_WRONLY | O_CREAT | O_CLOEXEC | O_DIRECT, 0644) : -1;
    if (fd < 0) {
        direct = false;
        fd = openat(s->dirfd, path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    }
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || (s->sync && io_fsync_dir(s->dirfd, "wal") < 0)) {
        int saved = errno;
        if (fd >= 0) close(fd);
        errno = saved;
        return -1;
    }
    /* A segment that got no records has no header, and recovery passes
     * over it: the next one names the end of the last one written to. */
    uint64_t prev_end = s->seg_fd >= 0 && !s->seg_hdr_pending ? s->seg_off : s->seg_prev_end;
    wal_seg_hdr h = {.seg = seg, .prev_end = prev_end, .salt = salt};
    wal_seg_hdr_encode(s->seg_hdr, &h);
    s->seg_prev_end = prev_end;
    s->seg_hdr_pending = true;
    /* Written directly, the header is the start of the block the first
     * batch rewrites whole (write_direct). */
    if (direct && !s->wal_stage) {
        s->wal_stage = xaligned(WAL_BLOCK, WAL_STAGE_CAP);
        s->wal_stage_cap = WAL_STAGE_CAP;
    }
    if (direct) memcpy(s->wal_stage, s->seg_hdr, WAL_SEG_HDR);
    if (s->seg_fd >= 0) close(s->seg_fd);
    s->seg_fd = fd;
    s->seg_direct = direct;
    s->seg_off = WAL_SEG_HDR;
    s->seg_salt = salt;
    s->seg_alloc = (uint64_t)st.st_size;
    return 0;
}

/* Write p[0..n) at s->seg_off through the O_DIRECT descriptor: whole
 * blocks from s->wal_stage, whose first seg_off % WAL_BLOCK bytes are
 * those of the block the previous write ended in. 0; -1 with errno; or 1
 * if direct writes do not work here (EINVAL: blocks larger than ours; a
 * short write that ends inside a block), for the caller to write buffered,
 * which also tells the reason for a short write (ENOSPC, EFBIG). */
static int write_direct(store *s, const uint8_t *p, size_t n) {
    size_t head = (size_t)(s->seg_off % WAL_BLOCK), total = head + n;
    size_t len = (total + WAL_BLOCK - 1) / WAL_BLOCK * WAL_BLOCK;
    if (len > s->wal_stage_cap) {
        size_t cap = s->wal_stage_cap ? s->wal_stage_cap : WAL_STAGE_CAP;
        while (cap < len) cap *= 2;
        uint8_t *stage = xaligned(WAL_BLOCK, cap);
        if (head) memcpy(stage, s->wal_stage, head);
        free(s->wal_stage);
        s->wal_stage = stage;
        s->wal_stage_cap = cap;
    }
    memcpy(s->wal_stage + head, p, n);
    memset(s->wal_stage + total, 0, len - total);
    /* A short write stopped at a block boundary (a full disk): the rest,
     * from there, fails with the reason. */
    uint64_t at = s->seg_off - head;
    for (size_t done = 0; done < len;) {
        ssize_t w = pwrite(s->seg_fd, s->wal_stage + done, len - done, (off_t)(at + done));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return errno == EINVAL ? 1 : -1;
        if (w == 0 || w % WAL_BLOCK != 0) return 1;
        done += (size_t)w;
    }
    size_t keep = total % WAL_BLOCK;
    memmove(s->wal_stage, s->wal_stage + (total - keep), keep);
    /* A burst made it big; the next batches are small again. */
    if (s->wal_stage_cap > 4 * WAL_STAGE_CAP) {
        uint8_t *stage = xaligned(WAL_BLOCK, WAL_STAGE_CAP);
        memcpy(stage, s->wal_stage, keep);
        free(s->wal_stage);
        s->wal_stage = stage;
        s->wal_stage_cap = WAL_STAGE_CAP;
    }
    return 0;
}

/* Direct writes do not work on this file system: write this segment, and
 * every later one, through the page cache. The bytes before seg_off are
 * on disk already, whichever way they went, but for a header still to be
 * written. */
static void direct_stop(store *s) {
    int fl = fcntl(s->seg_fd, F_GETFL);
    if (fl >= 0) fcntl(s->seg_fd, F_SETFL, fl & ~O_DIRECT);
    s->seg_direct = false;
    s->wal_buffered = true;
    log_write(LOG_WARN, "store: %s: direct WAL writes failed; writing through the page cache",
              s->dir);
}

/* Write and sync one run of records. Returns 0 or an errno; *retry says
 * whether the run may be written again (a write that found no room) or the
 * store must stop (anything else, a failed fsync above all). */
static int write_run(store *s, const uint8_t *p, size_t n, uint64_t *syncs, bool *retry) {
    *retry = false;
    if (n == 0) return 0;
    int rc = s->seg_direct ? write_direct(s, p, n) : 1;
    if (rc > 0) {
        if (s->seg_direct) direct_stop(s);
        /* The segment's first records: its header goes in front, in the
         * same write, so that a retry writes it again too. */
        size_t hl = s->seg_hdr_pending ? WAL_SEG_HDR : 0;
        struct iovec iov[2] = {{s->seg_hdr, hl}, {(void *)p, n}};
        rc = io_pwritev_full(s->seg_fd, iov, 2, s->seg_off - hl);
    }
    if (rc < 0) {
        *retry = store_no_room(errno);
        return errno;
    }
    s->seg_hdr_pending = false;
    s->seg_off += n;
    if (s->sync) {
        if (fdatasync(s->seg_fd) < 0) return errno;
        (*syncs)++;
    }
    return 0;
}

/* Where a batch stands: a retry after a full disk resumes there. */
typedef struct batch_progress {
    size_t done;     /* bytes written and synced */
    bool opened;     /* the new segment, if the batch rotates, is open */
    bool use_spare;  /* renaming the spare into place is still to try */
    uint32_t salt;   /* the new segment's */
} batch_progress;

/* Write the batch: data[0..split) to the open segment, then, rotating, the
 * rest to new_seg. 0 or an errno, with *retry as for write_run. */
static int write_batch(store *s, const buf *b, size_t split, uint64_t new_seg, batch_progress *bp,
                       uint64_t *syncs, bool *retry) {
    int err;
    if (bp->done < split) {
        if ((err = write_run(s, b->data + bp->done, split - bp->done, syncs, retry))) return err;
        bp->done = split;
    }
    if (!bp->opened) {
        bool spare = bp->use_spare;
        bp->use_spare = false;
        if (wal_open_segment(s, new_seg, bp->salt, spare) < 0) {
            *retry = store_no_room(errno);
            return errno;
        }
        bp->opened = true;
    }
    if (bp->done < b->len) {
        if ((err = write_run(s, b->data + bp->done, b->len - bp->done, syncs, retry))) return err;
        bp->done = b->len;
    }
    return 0;
}

/* The disk is full: refuse new records and wait a little before the batch
 * is tried again. False when the store is closing instead. */
static bool wait_for_room(store *s, int err, unsigned ms) {
    pthread_mutex_lock(&s->mu);
    bool first = !s->wal_nospace;
    s->wal_nospace = err;
    /* A checkpoint waiting for the flusher gives up rather than wait. */
    pthread_cond_broadcast(&s->durable_cond);
    pthread_mutex_unlock(&s->mu);
    if (first) store_nospace_log(s, err, "WAL");
    pthread_mutex_lock(&s->mu);
    if (!s->flush_stop) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_nsec += (long)ms * 1000000L;
        dl.tv_sec += dl.tv_nsec / 1000000000L;
        dl.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&s->flush_cond, &s->mu, &dl);
    }
    bool stop = s->flush_stop;
    pthread_mutex_unlock(&s->mu);
    return !stop;
}

/* Stop preparing: the store is closing. */
static bool spare_abandoned(store *s) {
    pthread_mutex_lock(&s->mu);
    bool stop = s->ckpt_stop;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

/* Append n zeros to the spare. A file system that opens it O_DIRECT but
 * refuses our block size gets them through the page cache instead. */
static int write_zeros(int fd, const uint8_t *zeros, size_t n) {
    if (io_write_full(fd, zeros, n) == 0) return 0;
    int err = errno, fl = fcntl(fd, F_GETFL);
    if (err == EINVAL && fl >= 0 && (fl & O_DIRECT) && fcntl(fd, F_SETFL, fl & ~O_DIRECT) == 0)
        return io_write_full(fd, zeros, n);
    errno = err;
    return -1;
}

void wal_prepare_spare(store *s) {
    pthread_mutex_lock(&s->mu);
    bool start = s->spare == SPARE_NONE;
    if (start) s->spare = SPARE_PREPARING;
    pthread_mutex_unlock(&s->mu);
    if (!start) return;

    /* On a nearly full disk the space is worth more than the speed (need
     * wraps around only for an absurd tail_budget: no spare then). */
    struct statvfs v;
    uint64_t need = tails_headroom(s) + s->seg_size;
    bool ok = fstatvfs(s->dirfd, &v) == 0 && need >= s->seg_size &&
              (uint64_t)v.f_bavail * v.f_frsize >= need;
    /* Zeros written through the page cache were copied there first, and
     * that was a tenth of the checkpoint thread's time: written directly,
     * the device reads them from one buffer. */
    int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
    int fd = ok ? openat(s->dirfd, WAL_SPARE_PATH, flags | O_DIRECT, 0644) : -1;
    if (ok && fd < 0) fd = openat(s->dirfd, WAL_SPARE_PATH, flags, 0644);
    if (ok && fd < 0) {
        log_write(LOG_WARN, "store: cannot create %s: %s", WAL_SPARE_PATH, strerror(errno));
        ok = false;
    }
    size_t chunk = 1u << 20;
    uint8_t *zeros = ok ? xaligned(WAL_BLOCK, chunk) : NULL;
    if (zeros) memset(zeros, 0, chunk);
    for (uint64_t off = 0; ok && off < s->seg_size; off += chunk) {
        size_t n = s->seg_size - off < chunk ? (size_t)(s->seg_size - off) : chunk;
        if (spare_abandoned(s)) {
            ok = false;
        } else if (write_zeros(fd, zeros, n) < 0) {
            log_write(LOG_WARN, "store: cannot fill %s: %s", WAL_SPARE_PATH, strerror(errno));
            ok = false;
        }
    }
    /* fsync, not fdatasync: the size and block map must be durable now,
     * so that the flusher's syncs never have to write them. */
    if (ok && fsync(fd) < 0) {
        log_write(LOG_WARN, "store: cannot sync %s: %s", WAL_SPARE_PATH, strerror(errno));
        ok = false;
    }
    free(zeros);
    if (fd >= 0) close(fd);
    if (fd >= 0 && !ok) unlinkat(s->dirfd, WAL_SPARE_PATH, 0);
    pthread_mutex_lock(&s->mu);
    s->spare = ok ? SPARE_READY : SPARE_NONE;
    if (ok) s->stats.spares++;
    pthread_mutex_unlock(&s->mu);
}

void *flush_main(void *arg) {
    store *s = arg;
    pthread_setname_np(pthread_self(), "weft-flush");
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
        if (!rotate && s->spare == SPARE_READY && s->seg_off + batch.len > s->seg_alloc) {
            /* Out of preallocated room: the whole batch goes to the spare.
             * Checkpoints number their boundary after this one. */
            rotate = true;
            split = 0;
            new_seg = ++s->seg_assigned;
        }
        bool use_spare = rotate && s->spare == SPARE_READY;
        if (use_spare) s->spare = SPARE_TAKEN;
        s->rotate_pending = false;
        s->wake_requested = false;
        pthread_mutex_unlock(&s->mu);

        uint64_t syncs = 0;
        batch_progress bp = {.done = 0, .opened = !rotate, .use_spare = use_spare};
        /* Sealed once, before any attempt: a retry writes the same bytes. */
        wal_seal(batch.data, split, s->seg_salt);
        if (rotate) {
            bp.salt = wal_salt_new();
            wal_seal(batch.data + split, batch.len - split, bp.salt);
        }
        int err;
        bool retry;
        for (unsigned ms = 50;; ms = ms < 1000 ? ms * 2 : 1000) {
            err = write_batch(s, &batch, split, new_seg, &bp, &syncs, &retry);
            if (!err || !retry || !wait_for_room(s, err, ms)) break;
        }

        pthread_mutex_lock(&s->mu);
        int was_full = err ? 0 : s->wal_nospace;
        if (!err) s->wal_nospace = 0;
        s->stats.syncs += syncs;
        s->stats.batches++;
        if (err) {
            store_fail_locked(s, err, "WAL write");
            break;
        }
        if (rotate) s->seg_open = new_seg;
        if (use_spare) {
            s->spare = SPARE_NONE;
            s->spare_wanted = true;
            pthread_cond_signal(&s->ckpt_cond);
        }
        /* Published before on_durable runs: an owner that checks
         * store_durable_lsn after logging must not miss this batch. */
        s->durable_lsn = last;
        pthread_cond_broadcast(&s->durable_cond);
        pthread_mutex_unlock(&s->mu);
        if (was_full) store_nospace_log(s, 0, "WAL");

        if (last > reported) {
            if (s->opt.on_durable) s->opt.on_durable(s->opt.ctx, last);
            reported = last;
        }
        /* Deleted streams' bytes and data files go once the delete is
         * durable: a checkpoint may still need them until then. */
        const uint64_t *ids = (const uint64_t *)deletes.data;
        for (size_t i = 0; i < deletes.len / sizeof *ids; i++) {
            tails_forget(s, ids[i]);
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
