/* store.c — opening and closing a store, and the mutations.
 *
 * A mutation takes, under s->mu, the next LSN and appends its encoded
 * record to the pending WAL buffer for the flusher (flush.c). The expensive
 * CRC of the payload is computed before taking the lock; only the copy
 * happens under it. An append's data bytes then go to the stream's tail in
 * memory (tail.c), to be written to its data file later; they are there
 * before store_append returns, so before the owner can know the LSN that
 * makes them visible. Only when the disk is too full to write behind do
 * they go to the file first, so that a full disk fails the append before
 * anything is logged.
 *
 * Ownership: the store copies everything it is given; pointers passed to
 * callbacks are valid only during the call.
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/log.h"
#include "../util/mem.h"

/* Any non-NULL value marks an id in the dirty set. */
static char dirty_mark;

/* Set by store_defer_wake on threads that call store_wake themselves;
 * wake_owed says such a thread logged something since its last store_wake,
 * so a loop iteration that logged nothing costs no lock. */
static _Thread_local bool defer_wake, wake_owed;

void store_defer_wake(bool on) { defer_wake = on; }

void store_wake(store *s) {
    if (defer_wake && !wake_owed) return;
    wake_owed = false;
    pthread_mutex_lock(&s->mu);
    if (s->pending.len > 0 && !s->wake_requested) {
        s->wake_requested = true;
        pthread_cond_signal(&s->flush_cond);
    }
    pthread_mutex_unlock(&s->mu);
}

void store_fail_locked(store *s, int err, const char *what) {
    if (!s->failed) {
        s->failed = err ? err : EIO;
        log_write(LOG_ERROR,
                  "store: %s failed: %s; no further writes are accepted (acknowledged data is "
                  "safe, unacknowledged writes are lost)",
                  what, strerror(s->failed));
    }
    pthread_cond_broadcast(&s->durable_cond);
    pthread_cond_signal(&s->flush_cond);
}

bool store_no_room(int err) { return err == ENOSPC || err == EDQUOT; }

int store_waiting_for_room(store *s) {
    pthread_mutex_lock(&s->mu);
    int err = s->wal_nospace;
    pthread_mutex_unlock(&s->mu);
    return err;
}

int store_refusing(store *s, bool *for_good) {
    pthread_mutex_lock(&s->mu);
    int err = s->failed ? s->failed : s->wal_nospace ? s->wal_nospace : atomic_load(&s->tail_nospace);
    *for_good = s->failed != 0;
    pthread_mutex_unlock(&s->mu);
    return err;
}

void store_nospace_log(const store *s, int err, const char *what) {
    if (err)
        log_write(LOG_ERROR,
                  "store: %s write in %s: %s; new writes are refused until space is freed "
                  "(acknowledged data is safe; waiting writes complete then)",
                  what, s->dir, strerror(err));
    else
        /* At the error's level: whoever saw it must see it end. */
        log_write(LOG_ERROR, "store: %s writes have room again in %s; new writes are accepted",
                  what, s->dir);
}

/* mkdir that tolerates an existing directory; *created tells which. */
static int make_dir(int dirfd, const char *path, bool *created) {
    if (mkdirat(dirfd, path, 0755) == 0) {
        *created = true;
        return 0;
    }
    return errno == EEXIST ? 0 : -1;
}

/* The directory tree, made durable where it was created. */
static int open_dirs(store *s, char *err, size_t errlen) {
    bool created = false;
    if (make_dir(AT_FDCWD, s->dir, &created) < 0) {
        snprintf(err, errlen, "cannot create %s: %s", s->dir, strerror(errno));
        return -1;
    }
    if (created && s->sync) {
        /* The new directory's own name must survive a power loss too. */
        char *parent = xstrndup(s->dir, strlen(s->dir));
        char *slash = strrchr(parent, '/');
        const char *p = ".";
        if (slash == parent) p = "/";
        else if (slash) {
            *slash = 0;
            p = parent;
        }
        int rc = io_fsync_dir(AT_FDCWD, p);
        free(parent);
        if (rc < 0) {
            snprintf(err, errlen, "cannot sync parent of %s: %s", s->dir, strerror(errno));
            return -1;
        }
    }
    s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", s->dir, strerror(errno));
        return -1;
    }
    bool top = false, sub = false;
    if (make_dir(s->dirfd, "wal", &top) < 0 || make_dir(s->dirfd, "data", &top) < 0) {
        snprintf(err, errlen, "cannot create directories in %s: %s", s->dir, strerror(errno));
        return -1;
    }
    for (unsigned d = 0; d < 256; d++) {
        char path[8];
        snprintf(path, sizeof path, "data/%02x", d);
        if (make_dir(s->dirfd, path, &sub) < 0) {
            snprintf(err, errlen, "cannot create %s/%s: %s", s->dir, path, strerror(errno));
            return -1;
        }
    }
    if (s->sync && ((sub && io_fsync_dir(s->dirfd, "data") < 0) ||
                    (top && io_fsync_dir(s->dirfd, ".") < 0))) {
        snprintf(err, errlen, "cannot sync %s: %s", s->dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int lock_dir(store *s, char *err, size_t errlen) {
    s->lockfd = openat(s->dirfd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->lockfd < 0) {
        snprintf(err, errlen, "cannot open %s/LOCK: %s", s->dir, strerror(errno));
        return -1;
    }
    if (flock(s->lockfd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            snprintf(err, errlen, "data directory %s is in use by another weft process (LOCK held)",
                     s->dir);
        else
            snprintf(err, errlen, "cannot lock %s/LOCK: %s", s->dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* Release everything; works on a partly opened store. */
static void store_free(store *s) {
    if (s->seg_fd >= 0) close(s->seg_fd);
    free(s->wal_stage);
    tails_free(s);
    files_shutdown(s);
    if (s->lockfd >= 0) close(s->lockfd); /* releases the flock */
    if (s->dirfd >= 0) close(s->dirfd);
    buf_free(&s->pending);
    buf_free(&s->pending_deletes);
    idmap_free(&s->dirty);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->files_mu);
    pthread_mutex_destroy(&s->ckpt_mu);
    pthread_mutex_destroy(&s->tails_mu);
    pthread_cond_destroy(&s->tails_cond);
    pthread_cond_destroy(&s->writer_cond);
    pthread_cond_destroy(&s->flush_cond);
    pthread_cond_destroy(&s->durable_cond);
    pthread_cond_destroy(&s->ckpt_cond);
    free(s->dir);
    free(s);
}

store *store_open(const store_options *opt, char *err, size_t errlen) {
    if (!opt->dir || !*opt->dir) {
        snprintf(err, errlen, "no data directory given");
        return NULL;
    }
    store *s = xcalloc(1, sizeof *s);
    s->opt = *opt;
    s->dir = xstrndup(opt->dir, strlen(opt->dir));
    s->opt.dir = s->dir;
    if (!s->opt.checkpoint_bytes) s->opt.checkpoint_bytes = 64u << 20;
    if (!s->opt.max_open_files) s->opt.max_open_files = 1024;
    if (!s->opt.tail_max) s->opt.tail_max = 64u << 10;
    if (!s->opt.tail_budget) s->opt.tail_budget = 32u << 20;
    s->sync = opt->durability == STORE_DURABLE;
    /* A checkpoint rotates the WAL once checkpoint_bytes were logged since
     * the previous one (more with many streams, see checkpoint_due), plus
     * what arrives while its snapshot is taken: a quarter more keeps the
     * usual case inside one preallocated segment; past it the flusher
     * rotates into the spare. */
    uint64_t seg = s->opt.checkpoint_bytes + s->opt.checkpoint_bytes / 4;
    s->seg_size = (seg + 4095) & ~(uint64_t)4095;
    s->dirfd = s->lockfd = s->seg_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->files_mu, NULL);
    pthread_mutex_init(&s->ckpt_mu, NULL);
    pthread_mutex_init(&s->tails_mu, NULL);
    pthread_cond_init(&s->tails_cond, NULL);
    pthread_cond_init(&s->writer_cond, NULL);
    pthread_cond_init(&s->flush_cond, NULL);
    pthread_cond_init(&s->durable_cond, NULL);
    pthread_cond_init(&s->ckpt_cond, NULL);
    buf_init(&s->pending);
    buf_init(&s->pending_deletes);
    idmap_init(&s->dirty);
    s->dirty_epoch = 1;
    files_init(s);
    tails_init(s);

    if (open_dirs(s, err, errlen) < 0 || lock_dir(s, err, errlen) < 0 ||
        store_recover(s, err, errlen) < 0) {
        store_free(s);
        return NULL;
    }
    s->durable_lsn = s->next_lsn - 1;
    s->spare_wanted = s->sync;

    int rc = tails_start(s);
    if (rc == 0) {
        rc = pthread_create(&s->flusher, NULL, flush_main, s);
        if (rc != 0) tails_stop(s);
    }
    if (rc == 0) {
        rc = pthread_create(&s->checkpointer, NULL, checkpoint_main, s);
        if (rc != 0) {
            pthread_mutex_lock(&s->mu);
            s->flush_stop = true;
            pthread_cond_signal(&s->flush_cond);
            pthread_mutex_unlock(&s->mu);
            pthread_join(s->flusher, NULL);
            tails_stop(s);
        }
    }
    if (rc != 0) {
        snprintf(err, errlen, "cannot start store threads: %s", strerror(rc));
        store_free(s);
        return NULL;
    }
    return s;
}

void store_close(store *s) {
    if (!s) return;
    /* The checkpoint thread first: it may be mid-checkpoint, which needs the
     * flusher. Then a final checkpoint while the flusher still runs, so the
     * next open replays nothing (it writes out the tails it covers). Then
     * the flusher, which drains and syncs whatever is still pending before
     * it exits, and the tail writer, which leaves nothing in memory. */
    pthread_mutex_lock(&s->mu);
    s->ckpt_stop = true;
    pthread_cond_signal(&s->ckpt_cond);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->checkpointer, NULL);

    if (s->opt.snapshot && checkpoint_run(s) < 0)
        log_write(LOG_WARN, "store: final checkpoint failed: %s", strerror(errno));

    pthread_mutex_lock(&s->mu);
    s->flush_stop = true;
    pthread_cond_signal(&s->flush_cond);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->flusher, NULL);
    tails_stop(s);
    /* The next open would remove it anyway; do not leave it lying around. */
    if (s->spare == SPARE_READY) unlinkat(s->dirfd, WAL_SPARE_PATH, 0);
    store_free(s);
}

uint64_t store_id_next(store *s) {
    pthread_mutex_lock(&s->mu);
    uint64_t id = s->next_id++;
    pthread_mutex_unlock(&s->mu);
    return id;
}

store_lsn store_durable_lsn(store *s) {
    pthread_mutex_lock(&s->mu);
    store_lsn lsn = s->durable_lsn;
    pthread_mutex_unlock(&s->mu);
    return lsn;
}

void store_get_stats(store *s, store_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&s->tails_mu);
    out->tail_bytes = s->tail_bytes;
    out->tail_writes = s->tail_writes;
    out->spill_bytes = s->spill_disk;
    out->spill_writes = s->spill_writes;
    pthread_mutex_unlock(&s->tails_mu);
}

/* Records must fit the format's 32-bit lengths and WAL_REC_MAX. */
static bool too_big(size_t name_len, size_t meta_len, size_t data_len) {
    size_t room = WAL_REC_MAX - WAL_HDR_SIZE;
    return name_len > room || meta_len > room - name_len || data_len > room - name_len - meta_len;
}

/* WAL bytes after which a checkpoint is due (s->mu held). A checkpoint
 * writes each stream appended to since the last one to its data file, and
 * syncing those files writes at least a page each: with 100,000 streams
 * that is 400 MB of disk writes for 64 MiB of data, and the checkpoint
 * took a third of the CPU and stalled the WAL's fsyncs. So with many
 * streams written, wait until the WAL holds a page's worth for each, up to
 * 8 x checkpoint_bytes (which bounds the WAL on disk and the replay at
 * recovery), and never past an eighth of the free disk space (as last
 * seen, up to a second ago): the longer WAL must not be what fills it. */
/* With many streams appended to, a checkpoint waits for this much WAL per
 * stream: it writes out and syncs every such stream's data file, and at
 * 4 KiB per stream that cost 1.8 us per append with 10,000 streams, 16 KiB
 * 1.0 us (docs/benchmarks.md). */
#define CHECKPOINT_BYTES_PER_STREAM 16384

static uint64_t checkpoint_due(const store *s) {
    uint64_t base = s->opt.checkpoint_bytes, pages = (uint64_t)s->dirty.count * CHECKPOINT_BYTES_PER_STREAM;
    uint64_t most = base > UINT64_MAX / 8 ? UINT64_MAX : base * 8;
    if (most > s->disk_free / 8) most = s->disk_free / 8;
    if (pages > most) pages = most;
    return pages > base ? pages : base;
}

/* Assign the LSN and queue the record for the flusher. An append names
 * its stream's tail_stream (e), whose mark spares most appends the dirty
 * set's lookup, a cache miss with many streams. */
static store_lsn log_record(store *s, store_rec *r, tail_stream *e) {
    pthread_mutex_lock(&s->mu);
    int refused = s->failed        ? s->failed
                  : s->wal_nospace ? s->wal_nospace
                                   : atomic_load(&s->tail_nospace);
    if (refused) {
        pthread_mutex_unlock(&s->mu);
        errno = refused;
        return 0;
    }
    r->lsn = s->next_lsn++;
    wal_encode(&s->pending, r);
    s->wal_bytes += wal_rec_size(r);
    s->stats.records++;
    /* The dirty set is swapped by store_snapshot_begin under this same lock,
     * so a data write belongs to the checkpoint whose boundary its record
     * precedes. */
    if (r->type == STORE_REC_CREATE) {
        unsigned d = (unsigned)(r->id & 0xff);
        s->dirty_dirs[d / 8] |= (uint8_t)(1u << (d % 8));
        idmap_put(&s->dirty, r->id, &dirty_mark);
    } else if (r->type == STORE_REC_APPEND && r->data_len > 0 && e->dirty_epoch != s->dirty_epoch) {
        idmap_put(&s->dirty, r->id, &dirty_mark);
        e->dirty_epoch = s->dirty_epoch;
    } else if (r->type == STORE_REC_DELETE) {
        buf_append(&s->pending_deletes, &r->id, sizeof r->id);
    }
    if (s->opt.snapshot && !s->ckpt_requested && s->wal_bytes >= checkpoint_due(s)) {
        s->ckpt_requested = true;
        pthread_cond_signal(&s->ckpt_cond);
    }
    if (defer_wake) {
        wake_owed = true;
    } else if (!s->wake_requested) {
        s->wake_requested = true;
        pthread_cond_signal(&s->flush_cond);
    }
    store_lsn lsn = r->lsn;
    pthread_mutex_unlock(&s->mu);
    return lsn;
}

store_lsn store_create(store *s, uint64_t id, const uint8_t *name, size_t name_len,
                       const uint8_t *meta, size_t meta_len, const uint8_t *data, size_t data_len) {
    if (id == 0 || too_big(name_len, meta_len, data_len)) {
        errno = id == 0 ? EINVAL : EFBIG;
        return 0;
    }
    bool through = tails_through(s);
    if (datafile_create(s, id, through ? data : NULL, through ? data_len : 0) < 0) return 0;
    store_rec r = {.type = STORE_REC_CREATE, .id = id, .name = name, .name_len = name_len,
                   .meta = meta, .meta_len = meta_len, .has_meta = true,
                   .data = data, .data_len = data_len};
    store_lsn lsn = log_record(s, &r, NULL);
    if (lsn == 0) {
        int e = errno;
        datafile_unlink(s, id);
        errno = e;
        return 0;
    }
    tail_stream *e = tails_register(s, id, through ? data_len : 0);
    if (!through && data_len > 0) tails_append(s, e, data, data_len, false);
    return lsn;
}

store_lsn store_append(store *s, uint64_t id, uint64_t pos, const uint8_t *data, size_t data_len,
                       const uint8_t *meta, size_t meta_len) {
    if (id == 0 || pos > (uint64_t)INT64_MAX - data_len ||
        too_big(0, meta ? meta_len : 0, data_len)) {
        errno = id == 0 ? EINVAL : EFBIG;
        return 0;
    }
    bool through = false;
    tail_stream *e = NULL;
    if (data_len > 0) {
        if (!(e = tails_check(s, id, pos, &through))) return 0;
        if (through && tails_write_through(s, id, pos, data, data_len) < 0) return 0;
    }
    store_rec r = {.type = STORE_REC_APPEND, .id = id, .pos = pos, .data = data,
                   .data_len = data_len, .meta = meta, .meta_len = meta ? meta_len : 0,
                   .has_meta = meta != NULL};
    store_lsn lsn = log_record(s, &r, e);
    if (lsn && data_len > 0) tails_append(s, e, data, data_len, through);
    return lsn;
}

store_lsn store_set_meta(store *s, uint64_t id, const uint8_t *meta, size_t meta_len) {
    if (id == 0 || too_big(0, meta_len, 0)) {
        errno = id == 0 ? EINVAL : EFBIG;
        return 0;
    }
    store_rec r = {.type = STORE_REC_META, .id = id, .meta = meta, .meta_len = meta_len,
                   .has_meta = true};
    return log_record(s, &r, NULL);
}

store_lsn store_delete(store *s, uint64_t id) {
    if (id == 0) {
        errno = EINVAL;
        return 0;
    }
    /* Before logging: the flusher may make the delete durable, and forget
     * the stream, as soon as it is logged. */
    tails_doom(s, id, true);
    store_rec r = {.type = STORE_REC_DELETE, .id = id};
    store_lsn lsn = log_record(s, &r, NULL);
    if (!lsn) tails_doom(s, id, false);
    return lsn;
}

/* Runs the owner's snapshot callback on this thread, so the caller must not
 * hold the lock that callback takes. */
int store_checkpoint(store *s) { return checkpoint_run(s); }
