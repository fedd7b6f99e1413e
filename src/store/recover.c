/* recover.c — rebuilding the store's state at open.
 *
 *  1. Load the catalog (the streams at the last checkpoint boundary).
 *  2. Replay the WAL segments from the boundary on, in order, into an
 *     in-memory table id -> (name, meta, length). APPEND data is written
 *     again at its position: data files are written behind (tail.c), so
 *     they may lack anything logged after the catalog's boundary, and a
 *     power loss may have dropped page-cache writes too. The catalog's
 *     lengths are in synced files, and the first record after the boundary
 *     continues each stream exactly there, so the rewritten bytes join up.
 *     A stream's appends are gathered while its segment is scanned and
 *     written with one pwritev at the segment's end: with many streams, a
 *     write (and an open and close) per record made recovery take as long
 *     as the load that filled the WAL.
 *  3. A segment ends at its first record that is not intact: past it are
 *     zeros (a preallocated segment), an older segment's bytes (a recycled
 *     one, see flush.c) or a torn write. The next segment's header says
 *     where the log really ended; ending before that is a corrupt record,
 *     which ends the WAL: later segments are deleted (a later segment is
 *     only written after the previous one was synced, so records after a
 *     tear were never acknowledged). A segment without its header was
 *     never written to.
 *  4. Reconcile data files with the table: unlink files of streams that do
 *     not exist, truncate files longer than the recovered length (bytes of
 *     appends that never became durable).
 *  5. Checkpoint the recovered table, so the WAL just replayed is not
 *     replayed again, and report each stream through on_recover.
 *
 * A spare WAL segment (flush.c) left over is removed first: it was never
 * part of the log, and may be only partly zero-filled.
 *
 * Recovery runs before the store's threads start and needs no locking,
 * except through the descriptor cache it shares with them.
 */
#include "store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/log.h"
#include "../util/mem.h"

typedef struct rstream {
    uint64_t id;
    uint64_t length;
    uint8_t *name;
    size_t name_len;
    uint8_t *meta;
    size_t meta_len;
    bool live;
    bool touched; /* data file written or truncated: fdatasync it */
    bool seen;    /* data file found on disk */
    bool sized;   /* the file was checked to reach the first replayed append */
    bool broken;  /* bytes before a replayed append are lost: stop here */
    bool queued;  /* in recovery.runs */
    /* Appends of the segment being replayed, not yet written: pointers
     * into the mapped segment, to go to the file from run_pos on. */
    struct iovec *run;
    size_t run_n, run_cap;
    uint64_t run_pos, run_end;
} rstream;

typedef struct recovery {
    store *s;
    idmap table; /* id -> rstream, owned */
    rstream **runs; /* streams with a run to write */
    size_t nruns, runs_cap;
    uint64_t max_id;
    store_lsn last_lsn;
    uint64_t records;
    bool repaired; /* a length changed outside the WAL: the catalog is stale */
    uint8_t touched_dirs[32];
    int err; /* first failure while applying records */
    char err_msg[160];
} recovery;

static void touch_dir(recovery *rc, uint64_t id) {
    unsigned d = (unsigned)(id & 0xff);
    rc->touched_dirs[d / 8] |= (uint8_t)(1u << (d % 8));
}

static void set_meta(rstream *r, const uint8_t *meta, size_t len) {
    free(r->meta);
    r->meta = xmemdup(meta, len);
    r->meta_len = len;
}

static rstream *stream_get(recovery *rc, uint64_t id) {
    rstream *r = idmap_get(&rc->table, id);
    if (!r) {
        r = xcalloc(1, sizeof *r);
        r->id = id;
        idmap_put(&rc->table, id, r);
    }
    if (id > rc->max_id) rc->max_id = id;
    return r;
}

static void fail(recovery *rc, int err, const char *what, uint64_t id) {
    if (rc->err) return;
    rc->err = err;
    snprintf(rc->err_msg, sizeof rc->err_msg, "%s (stream %llx): %s", what,
             (unsigned long long)id, strerror(err));
}

static void on_catalog_entry(void *arg, uint64_t id, uint64_t length, const uint8_t *name,
                             size_t name_len, const uint8_t *meta, size_t meta_len) {
    recovery *rc = arg;
    rstream *r = stream_get(rc, id);
    free(r->name);
    r->name = xmemdup(name, name_len);
    r->name_len = name_len;
    set_meta(r, meta, meta_len);
    r->length = length;
    r->live = true;
}

static void replay_create(recovery *rc, const store_rec *rec) {
    rstream *r = stream_get(rc, rec->id);
    free(r->name);
    r->name = xmemdup(rec->name, rec->name_len);
    r->name_len = rec->name_len;
    set_meta(r, rec->meta, rec->meta_len);
    r->length = rec->data_len;
    r->live = true;
    r->touched = true;
    r->sized = true;
    touch_dir(rc, rec->id);
    /* No O_TRUNC: the file's tail is cut to the recovered length later. */
    char path[DATAFILE_PATH_LEN];
    datafile_path(path, rec->id);
    datafile_forget(rc->s, rec->id);
    int fd = openat(rc->s->dirfd, path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fail(rc, errno, "cannot create data file", rec->id);
        return;
    }
    if (io_pwrite_full(fd, rec->data, rec->data_len, 0) < 0)
        fail(rc, errno, "cannot write data file", rec->id);
    close(fd);
}

/* Write out r's run (if its stream is still live and its file there). */
static void run_write(recovery *rc, rstream *r) {
    if (r->run_n > 0 && r->live && !rc->err) {
        store_file *f = store_file_acquire(rc->s, r->id);
        if (!f) {
            /* A missing file is reported when the data files are reconciled. */
            if (errno != ENOENT) fail(rc, errno, "cannot open data file", r->id);
        } else {
            if (io_pwritev_full(store_file_fd(f), r->run, r->run_n, r->run_pos) < 0)
                fail(rc, errno, "cannot write data file", r->id);
            r->touched = true;
            store_file_release(rc->s, f);
        }
    }
    r->run_n = 0;
}

static void run_add(recovery *rc, rstream *r, const uint8_t *p, size_t n, uint64_t pos) {
    if (r->run_n > 0 && pos != r->run_end) run_write(rc, r);
    if (r->run_n == 0) {
        r->run_pos = r->run_end = pos;
        if (!r->queued) {
            if (rc->nruns == rc->runs_cap) {
                rc->runs_cap = rc->runs_cap ? rc->runs_cap * 2 : 256;
                rc->runs = xrealloc(rc->runs, rc->runs_cap * sizeof *rc->runs);
            }
            rc->runs[rc->nruns++] = r;
            r->queued = true;
        }
    }
    if (r->run_n == r->run_cap) {
        r->run_cap = r->run_cap ? r->run_cap * 2 : 8;
        r->run = xrealloc(r->run, r->run_cap * sizeof *r->run);
    }
    r->run[r->run_n++] = (struct iovec){.iov_base = (void *)p, .iov_len = n};
    r->run_end += n;
}

/* Before the segment the runs point into is unmapped. */
static void runs_write(recovery *rc) {
    for (size_t i = 0; i < rc->nruns; i++) {
        run_write(rc, rc->runs[i]);
        rc->runs[i]->queued = false;
    }
    rc->nruns = 0;
}

/* The checkpoint synced r's file up to the catalog's length, where the
 * first append after it starts. A shorter file lost bytes the WAL no
 * longer has; writing at pos would leave a hole of zeros. */
static void check_size(recovery *rc, rstream *r, uint64_t pos) {
    store_file *f = store_file_acquire(rc->s, r->id);
    if (!f) {
        /* A missing file is reported when the data files are reconciled. */
        if (errno != ENOENT) fail(rc, errno, "cannot open data file", r->id);
        return;
    }
    struct stat st;
    if (fstat(store_file_fd(f), &st) < 0) {
        fail(rc, errno, "cannot stat data file", r->id);
    } else if ((uint64_t)st.st_size < pos) {
        log_write(LOG_ERROR,
                  "store: data file of stream %llx has %llu bytes, the WAL continues at "
                  "%llu: bytes lost outside the WAL; the stream is cut to what is left",
                  (unsigned long long)r->id, (unsigned long long)st.st_size,
                  (unsigned long long)pos);
        r->broken = true;
        r->length = (uint64_t)st.st_size;
        rc->repaired = true;
    }
    r->sized = true;
    store_file_release(rc->s, f);
}

static void replay_append(recovery *rc, const store_rec *rec) {
    rstream *r = idmap_get(&rc->table, rec->id);
    if (!r || !r->live) {
        log_write(LOG_WARN, "store: WAL append to unknown stream %llx at LSN %llu ignored",
                  (unsigned long long)rec->id, (unsigned long long)rec->lsn);
        return;
    }
    if (!r->broken && !r->sized) check_size(rc, r, rec->pos);
    if (r->broken) return;
    if (rec->has_meta) set_meta(r, rec->meta, rec->meta_len);
    r->length = rec->pos + rec->data_len;
    if (rec->data_len > 0) run_add(rc, r, rec->data, rec->data_len, rec->pos);
}

static void replay(void *arg, const store_rec *rec) {
    recovery *rc = arg;
    rc->last_lsn = rec->lsn;
    rc->records++;
    if (rc->err) return;
    if (rec->id > rc->max_id) rc->max_id = rec->id;
    switch (rec->type) {
    case STORE_REC_CREATE:
        replay_create(rc, rec);
        break;
    case STORE_REC_APPEND:
        replay_append(rc, rec);
        break;
    case STORE_REC_META: {
        rstream *r = idmap_get(&rc->table, rec->id);
        if (r && r->live) set_meta(r, rec->meta, rec->meta_len);
        break;
    }
    case STORE_REC_DELETE: {
        /* The owner may log a delete for a create that failed. */
        rstream *r = idmap_get(&rc->table, rec->id);
        if (r && r->live) {
            r->live = false;
            free(r->name);
            free(r->meta);
            r->name = r->meta = NULL;
            r->name_len = r->meta_len = 0;
        }
        break;
    }
    }
}

/* Replay one segment file; *end gets where its records end, or 0 if it has
 * no header of its own (it was never written to). With prev_end, the
 * header must say that the last segment written before this one ended
 * there; otherwise that one ended early, at a torn or corrupt record, so
 * this segment cannot be trusted: nothing is replayed and *stale is set.
 * -1 with a message on an I/O error. */
static int replay_segment(recovery *rc, uint64_t seg, const uint64_t *prev_end, uint64_t *end,
                          bool *stale, char *err, size_t errlen) {
    store *s = rc->s;
    char path[WAL_PATH_LEN];
    wal_segment_path(path, seg);
    int fd = openat(s->dirfd, path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    *end = 0;
    *stale = false;
    void *img = size > 0 ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (img == MAP_FAILED) {
        snprintf(err, errlen, "cannot map %s: %s", path, strerror(errno));
        return -1;
    }
    wal_seg_hdr h;
    bool has_hdr = img && wal_seg_hdr_decode(img, size, &h);
    if (has_hdr && h.seg == seg) {
        if (prev_end && h.prev_end != *prev_end) {
            log_write(LOG_WARN,
                      "store: the WAL segment before %s ends at offset %llu, not at %llu: "
                      "a torn or corrupt record",
                      path, (unsigned long long)*prev_end, (unsigned long long)h.prev_end);
            *stale = true;
        } else {
            const uint8_t *recs = (const uint8_t *)img + WAL_SEG_HDR;
            *end = WAL_SEG_HDR +
                   wal_scan_records(recs, size - WAL_SEG_HDR, h.salt, rc->last_lsn, replay, rc);
            runs_write(rc);
        }
    } else if (img && !has_hdr && wal_scan_records(img, size, 0, rc->last_lsn, NULL, NULL) > 0) {
        /* Records with no header before them: a segment from before
         * segments had headers. Taken for an unwritten one, its records
         * would be lost. */
        snprintf(err, errlen,
                 "%s was written by an older weft (no segment header); open the data "
                 "directory with that version and stop it cleanly first",
                 path);
        munmap(img, size);
        return -1;
    }
    if (img) munmap(img, size);
    if (rc->err) {
        snprintf(err, errlen, "WAL replay failed: %s", rc->err_msg);
        return -1;
    }
    return 0;
}

/* Make one existing data file agree with the table. */
static int reconcile_file(recovery *rc, int dfd, const char *name, uint64_t id) {
    if (id > rc->max_id) rc->max_id = id;
    rstream *r = idmap_get(&rc->table, id);
    if (!r || !r->live) {
        if (unlinkat(dfd, name, 0) < 0) return -1;
        touch_dir(rc, id);
        return 0;
    }
    r->seen = true;
    struct stat st;
    if (fstatat(dfd, name, &st, 0) < 0) return -1;
    uint64_t size = (uint64_t)st.st_size;
    if (size > r->length) {
        store_file *f = store_file_acquire(rc->s, id);
        if (!f) return -1;
        int res = ftruncate(store_file_fd(f), (off_t)r->length);
        store_file_release(rc->s, f);
        if (res < 0) return -1;
        r->touched = true;
    } else if (size < r->length) {
        log_write(LOG_ERROR,
                  "store: data file of stream %llx has %llu bytes, %llu were recorded: "
                  "bytes lost outside the WAL; the stream is cut to what is left",
                  (unsigned long long)id, (unsigned long long)size,
                  (unsigned long long)r->length);
        r->length = size;
        rc->repaired = true;
    }
    return 0;
}

static int reconcile_data(recovery *rc, char *err, size_t errlen) {
    store *s = rc->s;
    for (unsigned d = 0; d < 256; d++) {
        char path[8];
        snprintf(path, sizeof path, "data/%02x", d);
        int dfd = openat(s->dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *dir = dfd >= 0 ? fdopendir(dfd) : NULL;
        if (!dir) {
            snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
            if (dfd >= 0) close(dfd);
            return -1;
        }
        struct dirent *e;
        while ((e = readdir(dir)) != NULL) {
            uint64_t id;
            if (!codec_parse_hex_name(e->d_name, ".dat", &id) || (id & 0xff) != d) continue;
            if (reconcile_file(rc, dfd, e->d_name, id) < 0) {
                snprintf(err, errlen, "cannot repair %s/%s: %s", path, e->d_name, strerror(errno));
                closedir(dir);
                return -1;
            }
        }
        closedir(dir);
    }
    /* Live streams whose file is gone: start them again empty rather than
     * let a read hit a missing file. */
    for (size_t i = 0; i < rc->table.cap; i++) {
        rstream *r = rc->table.vals[i];
        if (!r || !r->live || r->seen) continue;
        if (r->length > 0)
            log_write(LOG_ERROR, "store: data file of stream %llx is missing: %llu bytes lost",
                      (unsigned long long)r->id, (unsigned long long)r->length);
        if (datafile_create(s, r->id, NULL, 0) < 0) {
            snprintf(err, errlen, "cannot create data file of stream %llx: %s",
                     (unsigned long long)r->id, strerror(errno));
            return -1;
        }
        r->length = 0;
        r->touched = true;
        rc->repaired = true;
        touch_dir(rc, r->id);
    }
    if (!s->sync) return 0;
    size_t touched = 0;
    for (size_t i = 0; i < rc->table.cap; i++) {
        rstream *r = rc->table.vals[i];
        touched += r && r->live && r->touched;
    }
    if (touched > SYNCFS_FILES) {
        if (syncfs(s->dirfd) == 0) return 0; /* files, their sizes and directories */
        snprintf(err, errlen, "cannot sync %s: %s", s->dir, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < rc->table.cap; i++) {
        rstream *r = rc->table.vals[i];
        if (r && r->live && r->touched && datafile_sync(s, r->id) < 0) {
            snprintf(err, errlen, "cannot sync data file of stream %llx: %s",
                     (unsigned long long)r->id, strerror(errno));
            return -1;
        }
    }
    for (unsigned d = 0; d < 256; d++) {
        if (!(rc->touched_dirs[d / 8] & (1u << (d % 8)))) continue;
        char path[8];
        snprintf(path, sizeof path, "data/%02x", d);
        if (io_fsync_dir(s->dirfd, path) < 0) {
            snprintf(err, errlen, "cannot sync %s: %s", path, strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int by_id(const void *a, const void *b) {
    uint64_t x = (*(rstream *const *)a)->id, y = (*(rstream *const *)b)->id;
    return x < y ? -1 : x > y;
}

/* Live streams sorted by id (caller frees the array, not the streams). */
static rstream **live_streams(recovery *rc, size_t *n) {
    rstream **v = xmalloc((rc->table.count ? rc->table.count : 1) * sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < rc->table.cap; i++) {
        rstream *r = rc->table.vals[i];
        if (r && r->live) v[k++] = r;
    }
    qsort(v, k, sizeof *v, by_id);
    *n = k;
    return v;
}

/* Steps 2-3 over every segment; fills *last_seg with the last one kept. */
static int replay_wal(recovery *rc, uint64_t boundary_seg, uint64_t *last_seg, char *err,
                      size_t errlen) {
    store *s = rc->s;
    uint64_t *segs;
    size_t n;
    if (wal_list_segments(s->dirfd, &segs, &n) < 0) {
        snprintf(err, errlen, "cannot list WAL segments: %s", strerror(errno));
        return -1;
    }
    bool stale = false, have_prev = false;
    uint64_t expected = boundary_seg, prev_end = 0;
    *last_seg = boundary_seg;
    int res = 0;
    for (size_t i = 0; i < n; i++) {
        char path[WAL_PATH_LEN];
        wal_segment_path(path, segs[i]);
        if (segs[i] < boundary_seg) {
            /* Covered by the catalog; a crash came before their removal. */
            unlinkat(s->dirfd, path, 0);
            continue;
        }
        if (!stale && segs[i] != expected) {
            log_write(LOG_WARN, "store: WAL segment %llx missing, later segments dropped",
                      (unsigned long long)expected);
            stale = true;
        }
        if (!stale) {
            uint64_t end;
            if (replay_segment(rc, segs[i], have_prev ? &prev_end : NULL, &end, &stale, err,
                               errlen) < 0) {
                res = -1;
                break;
            }
            if (!stale) {
                *last_seg = segs[i];
                expected++;
                if (end) {
                    prev_end = end;
                    have_prev = true;
                }
                continue;
            }
        }
        log_write(LOG_WARN, "store: dropping %s (after a torn WAL)", path);
        if (unlinkat(s->dirfd, path, 0) < 0) {
            snprintf(err, errlen, "cannot remove %s: %s", path, strerror(errno));
            res = -1;
            break;
        }
    }
    free(segs);
    return res;
}

static void free_table(recovery *rc) {
    for (size_t i = 0; i < rc->table.cap; i++) {
        rstream *r = rc->table.vals[i];
        if (!r) continue;
        free(r->name);
        free(r->meta);
        free(r->run);
        free(r);
    }
    idmap_free(&rc->table);
    free(rc->runs);
}

int store_recover(store *s, char *err, size_t errlen) {
    recovery rc;
    memset(&rc, 0, sizeof rc);
    rc.s = s;
    idmap_init(&rc.table);
    unlinkat(s->dirfd, "catalog.tmp", 0);
    if (unlinkat(s->dirfd, WAL_SPARE_PATH, 0) < 0 && errno != ENOENT) {
        snprintf(err, errlen, "cannot remove %s: %s", WAL_SPARE_PATH, strerror(errno));
        goto fail;
    }

    catalog_hdr hdr = {.next_id = 1, .boundary_seg = 1, .boundary_lsn = 1, .count = 0};
    int have_cat = catalog_load(s->dirfd, &hdr, on_catalog_entry, &rc, err, errlen);
    if (have_cat < 0) goto fail;
    if (!have_cat) {
        uint64_t *segs;
        size_t n;
        if (wal_list_segments(s->dirfd, &segs, &n) < 0) {
            snprintf(err, errlen, "cannot list WAL segments: %s", strerror(errno));
            goto fail;
        }
        free(segs);
        if (n > 0) {
            snprintf(err, errlen, "catalog is missing but the WAL is not; refusing to open");
            goto fail;
        }
    }

    rc.last_lsn = hdr.boundary_lsn - 1;
    uint64_t last_seg;
    if (replay_wal(&rc, hdr.boundary_seg, &last_seg, err, errlen) < 0) goto fail;
    if (reconcile_data(&rc, err, errlen) < 0) goto fail;

    s->next_lsn = rc.last_lsn + 1;
    s->next_id = hdr.next_id > rc.max_id ? hdr.next_id : rc.max_id + 1;

    size_t nlive;
    rstream **live = live_streams(&rc, &nlive);
    /* With nothing replayed and nothing repaired the catalog is still
     * exact: keep it and keep writing into its boundary segment. */
    uint64_t seg = rc.records ? last_seg + 1 : hdr.boundary_seg;
    if (rc.records || rc.repaired || !have_cat) {
        catalog_hdr nh = {.next_id = s->next_id, .boundary_seg = seg, .boundary_lsn = s->next_lsn,
                          .count = nlive};
        buf entries;
        buf_init(&entries);
        for (size_t i = 0; i < nlive; i++)
            catalog_entry_append(&entries, live[i]->id, live[i]->length, live[i]->name,
                                 live[i]->name_len, live[i]->meta, live[i]->meta_len);
        int res = catalog_write(s->dirfd, &nh, &entries, s->sync);
        buf_free(&entries);
        if (res < 0) {
            snprintf(err, errlen, "cannot write catalog: %s", strerror(errno));
            free(live);
            goto fail;
        }
    }
    /* Every other segment is now covered by the catalog or empty. A kept
     * boundary segment holds no record, so writing starts at its start,
     * under a new salt. */
    uint64_t *segs;
    size_t n;
    if (wal_list_segments(s->dirfd, &segs, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            if (segs[i] == seg) continue;
            char path[WAL_PATH_LEN];
            wal_segment_path(path, segs[i]);
            unlinkat(s->dirfd, path, 0);
        }
        free(segs);
    }
    if (wal_open_segment(s, seg, wal_salt_new(), false) < 0) {
        snprintf(err, errlen, "cannot open WAL segment: %s", strerror(errno));
        free(live);
        goto fail;
    }
    s->seg_assigned = s->seg_open = seg;

    for (size_t i = 0; i < nlive; i++) tails_register(s, live[i]->id, live[i]->length);
    log_write(LOG_INFO, "store: %s: %zu streams, %llu WAL records replayed", s->dir, nlive,
              (unsigned long long)rc.records);
    if (s->opt.on_recover) {
        for (size_t i = 0; i < nlive; i++) {
            rstream *r = live[i];
            s->opt.on_recover(s->opt.ctx, r->id, r->name, r->name_len, r->meta, r->meta_len,
                              r->length);
        }
    }
    free(live);
    free_table(&rc);
    return 0;

fail:
    free_table(&rc);
    return -1;
}
