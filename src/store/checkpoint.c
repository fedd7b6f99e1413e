/* checkpoint.c — bounding the WAL: snapshots, the catalog, old segments.
 *
 * A checkpoint runs in three steps.
 *
 * 1. The owner's snapshot callback, holding the lock that orders its
 *    mutations, calls store_snapshot_begin: under s->mu the WAL is switched
 *    to a new segment (the boundary), and the set of data files written
 *    since the previous checkpoint is taken. Every record before the
 *    boundary is then reflected in what the owner passes to
 *    store_snapshot_add, and every later record is in the new segment.
 *
 * 2. Without any store lock held, and while the flusher keeps committing
 *    new records: wait until the flusher has made everything before the
 *    boundary durable and opened the new segment; for every stream appended
 *    to before the boundary, write out what its tail holds (the bytes the
 *    snapshot counts, maybe a few more) and fdatasync its data file; fsync
 *    the directories where data files were created. With many streams
 *    written, one syncfs() replaces the per-file fdatasyncs: each of those
 *    is a device cache flush of its own, and 100,000 of them took most of a
 *    checkpoint's time.
 *
 * 3. Write the catalog atomically, then delete the segments it covers,
 *    but for one kept as the next spare segment (flush.c).
 *
 * A crash anywhere before the rename leaves the old catalog and all its
 * segments, so recovery simply replays more. A failed data file write or
 * fsync is fatal for the same reason as a failed WAL fsync (see flush.c),
 * except a write that found the disk full: the bytes are still held, and
 * the checkpoint is put off until a write-out fits (tail.c). Neither is a
 * failed catalog write: the old catalog and the WAL are still whole.
 *
 * Without a covered segment to keep, the checkpoint thread zero-fills a
 * spare between checkpoints instead, which may take a while but never
 * blocks a mutation.
 */
#include "store_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/log.h"
#include "../util/mem.h"

void store_snapshot_begin(store_snapshot *snap) {
    store *s = snap->s;
    if (snap->began) {
        log_write(LOG_ERROR, "store: store_snapshot_begin called twice");
        return;
    }
    pthread_mutex_lock(&s->mu);
    snap->began = true;
    if (s->failed) {
        snap->failed = true;
        pthread_mutex_unlock(&s->mu);
        return;
    }
    /* Checkpoints run one at a time and each waits for its rotation, unless
     * it gave up while the flusher waits for disk space: then this one
     * takes that rotation over, moved to here, so that no segment number
     * is skipped (recovery stops at a gap). */
    if (!s->rotate_pending) s->rotate_seg = ++s->seg_assigned;
    s->rotate_pending = true;
    s->rotate_at = s->pending.len;
    snap->hdr.boundary_seg = s->seg_assigned;
    snap->hdr.boundary_lsn = s->next_lsn;
    snap->hdr.next_id = s->next_id;
    snap->dirty = s->dirty;
    idmap_init(&s->dirty);
    s->dirty_epoch++;
    memcpy(snap->dirty_dirs, s->dirty_dirs, sizeof snap->dirty_dirs);
    memset(s->dirty_dirs, 0, sizeof s->dirty_dirs);
    s->wal_bytes = 0;
    pthread_cond_signal(&s->flush_cond);
    pthread_mutex_unlock(&s->mu);
}

void store_snapshot_add(store_snapshot *snap, uint64_t id, const uint8_t *name, size_t name_len,
                        const uint8_t *meta, size_t meta_len, uint64_t length) {
    if (!snap->began) {
        log_write(LOG_ERROR, "store: store_snapshot_add before store_snapshot_begin");
        return;
    }
    catalog_entry_append(&snap->entries, id, length, name, name_len, meta, meta_len);
    snap->hdr.count++;
}

/* Give an unfinished checkpoint's dirty files back, so the next one syncs
 * them. */
static void merge_dirty_back(store *s, store_snapshot *snap) {
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < snap->dirty.cap; i++)
        if (snap->dirty.vals[i]) idmap_put(&s->dirty, snap->dirty.keys[i], snap->dirty.vals[i]);
    for (size_t i = 0; i < sizeof s->dirty_dirs; i++) s->dirty_dirs[i] |= snap->dirty_dirs[i];
    pthread_mutex_unlock(&s->mu);
}

/* Wait until the flusher has synced everything before the boundary and
 * switched to the boundary segment. 0, or -1 if the store failed or the
 * flusher is waiting for disk space (which may be a long wait, and closing
 * the store must not hang on it). */
static int wait_for_boundary(store *s, const store_snapshot *snap) {
    pthread_mutex_lock(&s->mu);
    while (!s->failed && !s->wal_nospace && s->seg_open < snap->hdr.boundary_seg)
        pthread_cond_wait(&s->durable_cond, &s->mu);
    int err = s->failed ? s->failed : s->seg_open < snap->hdr.boundary_seg ? s->wal_nospace : 0;
    pthread_mutex_unlock(&s->mu);
    if (err) errno = err;
    return err ? -1 : 0;
}

/* 0, 1 if a write-out found the disk full (nothing failed for good), or
 * -1 + errno. */
static int sync_data(store *s, const store_snapshot *snap) {
    bool whole_fs = s->sync && snap->dirty.count > SYNCFS_FILES;
    for (size_t i = 0; i < snap->dirty.cap; i++) {
        if (!snap->dirty.vals[i]) continue;
        int rc = tails_sync(s, snap->dirty.keys[i], s->sync && !whole_fs);
        if (rc != 0) return rc;
    }
    if (!s->sync) return 0;
    if (whole_fs) return syncfs(s->dirfd); /* files, their sizes and directories */
    for (unsigned d = 0; d < 256; d++) {
        if (!(snap->dirty_dirs[d / 8] & (1u << (d % 8)))) continue;
        char path[8];
        snprintf(path, sizeof path, "data/%02x", d);
        if (io_fsync_dir(s->dirfd, path) < 0) return -1;
    }
    return 0;
}

/* Unlink the segments below `below`, which the catalog covers, but make
 * one of them the spare if none is ready: its blocks are allocated and
 * synced, so the flusher overwrites them as cheaply as zeros, and nobody
 * has to write a segment's worth of zeros (a segment the startup or a
 * rotation without a spare created is too short to be worth keeping). */
static void retire_segments(store *s, uint64_t below) {
    uint64_t *segs;
    size_t n;
    if (wal_list_segments(s->dirfd, &segs, &n) < 0) {
        log_write(LOG_WARN, "store: cannot list WAL segments: %s", strerror(errno));
        return;
    }
    pthread_mutex_lock(&s->mu);
    bool keep = s->sync && s->spare == SPARE_NONE;
    if (keep) s->spare = SPARE_PREPARING;
    pthread_mutex_unlock(&s->mu);
    bool kept = false;
    for (size_t i = 0; i < n && segs[i] < below; i++) {
        char path[WAL_PATH_LEN];
        wal_segment_path(path, segs[i]);
        struct stat st;
        if (keep && !kept && fstatat(s->dirfd, path, &st, 0) == 0 &&
            (uint64_t)st.st_size >= s->seg_size &&
            renameat(s->dirfd, path, s->dirfd, WAL_SPARE_PATH) == 0) {
            kept = true;
            continue;
        }
        if (unlinkat(s->dirfd, path, 0) < 0)
            log_write(LOG_WARN, "store: cannot remove %s: %s", path, strerror(errno));
    }
    free(segs);
    if (!keep) return;
    pthread_mutex_lock(&s->mu);
    s->spare = kept ? SPARE_READY : SPARE_NONE;
    if (kept) s->stats.recycled++;
    pthread_mutex_unlock(&s->mu);
}

int checkpoint_run(store *s) {
    if (!s->opt.snapshot) {
        errno = EINVAL;
        return -1;
    }
    pthread_mutex_lock(&s->ckpt_mu);
    store_snapshot snap;
    memset(&snap, 0, sizeof snap);
    snap.s = s;
    idmap_init(&snap.dirty);
    buf_init(&snap.entries);

    s->opt.snapshot(s->opt.ctx, &snap);

    int rc = -1, err = EIO;
    if (!snap.began) {
        log_write(LOG_ERROR, "store: snapshot callback did not call store_snapshot_begin");
        err = EINVAL;
    } else if (snap.failed) {
        err = EIO;
    } else if (wait_for_boundary(s, &snap) < 0) {
        err = errno;
        merge_dirty_back(s, &snap);
    } else if ((rc = sync_data(s, &snap)) != 0) {
        if (rc > 0) {
            err = ENOSPC;
            log_write(LOG_WARN, "store: checkpoint postponed: no room for the data files");
            merge_dirty_back(s, &snap);
        } else {
            err = errno;
            pthread_mutex_lock(&s->mu);
            store_fail_locked(s, err, "data file write-out or fsync");
            pthread_mutex_unlock(&s->mu);
        }
        rc = -1;
    } else if (catalog_write(s->dirfd, &snap.hdr, &snap.entries, s->sync) < 0) {
        err = errno;
        log_write(LOG_ERROR, "store: cannot write catalog: %s (will retry)", strerror(err));
        merge_dirty_back(s, &snap);
    } else {
        retire_segments(s, snap.hdr.boundary_seg);
        pthread_mutex_lock(&s->mu);
        s->stats.checkpoints++;
        /* A spare that could not be prepared before (no room) is tried
         * again once per checkpoint. */
        if (s->sync && s->spare == SPARE_NONE && !s->spare_wanted) {
            s->spare_wanted = true;
            pthread_cond_signal(&s->ckpt_cond);
        }
        pthread_mutex_unlock(&s->mu);
        log_write(LOG_DEBUG, "store: checkpoint at segment %llu, %llu streams",
                  (unsigned long long)snap.hdr.boundary_seg, (unsigned long long)snap.hdr.count);
        rc = 0;
    }
    idmap_free(&snap.dirty);
    buf_free(&snap.entries);
    pthread_mutex_unlock(&s->ckpt_mu);
    if (rc < 0) errno = err;
    return rc;
}

void *checkpoint_main(void *arg) {
    store *s = arg;
    pthread_setname_np(pthread_self(), "weft-checkpoint");
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->ckpt_requested && !s->spare_wanted && !s->ckpt_stop)
            pthread_cond_wait(&s->ckpt_cond, &s->mu);
        if (s->ckpt_stop) break;
        bool ckpt = s->ckpt_requested;
        if (ckpt) s->ckpt_requested = false;
        else s->spare_wanted = false;
        pthread_mutex_unlock(&s->mu);
        if (ckpt) checkpoint_run(s);
        else wal_prepare_spare(s);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}
