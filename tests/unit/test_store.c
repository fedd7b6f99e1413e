/* test_store.c — unit tests for the storage engine (src/store).
 *
 * Every test works in its own directory under /tmp. A small model of the
 * owner (tctx) mirrors what the stream layer does: it holds its own lock
 * around mutations and in the snapshot callback, keeps each stream's
 * expected name, meta and bytes, and records what on_durable and on_recover
 * report, so every check can be byte-exact.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "store/store.h"
#include "store/store_int.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/mem.h"

/* ---- file helpers ---- */

static void make_tmpdir(char *out, size_t len) {
    snprintf(out, len, "/tmp/weft-store-test.XXXXXX");
    if (!mkdtemp(out)) {
        perror("mkdtemp");
        exit(2);
    }
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static bool read_file(const char *path, buf *b) {
    buf_reset(b);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return false;
    for (;;) {
        buf_reserve(b, 65536);
        ssize_t r = read(fd, b->data + b->len, b->cap - b->len);
        if (r <= 0) {
            close(fd);
            return r == 0;
        }
        b->len += (size_t)r;
    }
}

static bool write_file(const char *path, const void *p, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return false;
    bool ok = io_write_full(fd, p, n) == 0;
    close(fd);
    return ok;
}

static const char *copy_src, *copy_dst;

static int copy_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)ftw;
    char dst[512];
    snprintf(dst, sizeof dst, "%s%s", copy_dst, path + strlen(copy_src));
    if (flag == FTW_D) return mkdir(dst, st->st_mode & 0777) == 0 || errno == EEXIST ? 0 : -1;
    buf b;
    buf_init(&b);
    bool ok = read_file(path, &b) && write_file(dst, b.data, b.len);
    buf_free(&b);
    return ok ? 0 : -1;
}

static bool copy_tree(const char *src, const char *dst) {
    copy_src = src;
    copy_dst = dst;
    return nftw(src, copy_one, 16, FTW_PHYS) == 0;
}

/* Copy a live store's directory as a crash would leave it. Only a copy
 * made while nothing rewrites the directory is one: a checkpoint writes
 * data files and the catalog and then renames a covered segment to the
 * spare, and a copy that read the old catalog but missed the renamed
 * segment lost records no crash could lose. So checkpoints (ckpt_mu) and
 * spare preparation (which starts under mu) wait; the caller has waited
 * for its appends to be durable. */
static bool copy_tree_quiet(store *s, const char *src, const char *dst) {
    pthread_mutex_lock(&s->ckpt_mu);
    pthread_mutex_lock(&s->mu);
    while (s->spare == SPARE_PREPARING) {
        pthread_mutex_unlock(&s->mu);
        poll(NULL, 0, 1);
        pthread_mutex_lock(&s->mu);
    }
    bool ok = copy_tree(src, dst);
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_unlock(&s->ckpt_mu);
    return ok;
}

/* Put dir back to the state saved in pristine. Recovery only rewrites
 * files (catalog, WAL segments, data files), so copying the saved files
 * over it after dropping the WAL is enough, and much cheaper than
 * recreating the 257 directories. */
static bool restore_tree(const char *pristine, const char *dir) {
    char wal[512];
    snprintf(wal, sizeof wal, "%s/wal", dir);
    rm_rf(wal);
    return copy_tree(pristine, dir);
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void data_path(char *out, size_t len, const char *dir, uint64_t id) {
    char rel[DATAFILE_PATH_LEN];
    datafile_path(rel, id);
    snprintf(out, len, "%s/%s", dir, rel);
}

/* The WAL segments in dir, as full paths (at most max). */
static size_t wal_files(const char *dir, char paths[][512], size_t max) {
    uint64_t *segs;
    size_t n;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0 || wal_list_segments(dfd, &segs, &n) < 0) {
        if (dfd >= 0) close(dfd);
        return 0;
    }
    close(dfd);
    size_t k = 0;
    for (size_t i = 0; i < n && k < max; i++, k++) {
        char rel[WAL_PATH_LEN];
        wal_segment_path(rel, segs[i]);
        snprintf(paths[k], 512, "%s/%s", dir, rel);
    }
    free(segs);
    return k;
}

/* Expected errors are logged; keep them out of the test output. */
static int saved_stderr = -1;

static void quiet(void) {
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    int fd = open("/dev/null", O_WRONLY);
    dup2(fd, STDERR_FILENO);
    close(fd);
}

static void loud(void) {
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
}

static int count_open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d) return -1;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

/* ---- the owner model ---- */

#define MAXS 128

typedef struct tstream {
    uint64_t id;
    char name[48];
    buf meta;
    buf data;
    bool live;
} tstream;

typedef struct trec {
    uint64_t id;
    buf name, meta;
    uint64_t length;
} trec;

typedef struct tctx {
    pthread_mutex_t mu; /* the owner's lock */
    pthread_cond_t cond;
    store *s;
    store_lsn durable;
    uint64_t nreports;
    bool order_ok;
    tstream st[MAXS];
    size_t n;
    trec rec[MAXS];
    size_t nrec;
    bool rec_overflow;
    /* test_delete_after_cut: a stream the snapshot deletes right after its
     * cut (-1: none), and on_durable reports past hold_after wait while
     * holding is set (the flusher then stands still before forgetting). */
    int delete_in_snapshot;
    store_lsn delete_lsn;
    bool holding;
    store_lsn hold_after;
} tctx;

static void ctx_init(tctx *c) {
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->order_ok = true;
    c->delete_in_snapshot = -1;
    for (int i = 0; i < MAXS; i++) {
        buf_init(&c->st[i].meta);
        buf_init(&c->st[i].data);
        buf_init(&c->rec[i].name);
        buf_init(&c->rec[i].meta);
    }
}

static void ctx_free(tctx *c) {
    for (int i = 0; i < MAXS; i++) {
        buf_free(&c->st[i].meta);
        buf_free(&c->st[i].data);
        buf_free(&c->rec[i].name);
        buf_free(&c->rec[i].meta);
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
}

static void cb_durable(void *ctx, store_lsn lsn) {
    tctx *c = ctx;
    pthread_mutex_lock(&c->mu);
    while (c->holding && lsn > c->hold_after) pthread_cond_wait(&c->cond, &c->mu);
    if (lsn <= c->durable) c->order_ok = false;
    c->durable = lsn;
    c->nreports++;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

static void cb_recover(void *ctx, uint64_t id, const uint8_t *name, size_t name_len,
                       const uint8_t *meta, size_t meta_len, uint64_t length) {
    tctx *c = ctx;
    if (c->nrec == MAXS) {
        c->rec_overflow = true;
        return;
    }
    trec *r = &c->rec[c->nrec++];
    r->id = id;
    buf_reset(&r->name);
    buf_append(&r->name, name, name_len);
    buf_reset(&r->meta);
    buf_append(&r->meta, meta, meta_len);
    r->length = length;
}

static void cb_snapshot(void *ctx, store_snapshot *snap) {
    tctx *c = ctx;
    pthread_mutex_lock(&c->mu);
    store_snapshot_begin(snap);
    for (size_t i = 0; i < c->n; i++) {
        tstream *t = &c->st[i];
        if (!t->live) continue;
        store_snapshot_add(snap, t->id, (const uint8_t *)t->name, strlen(t->name), t->meta.data,
                           t->meta.len, t->data.len);
    }
    if (c->delete_in_snapshot >= 0) {
        tstream *t = &c->st[c->delete_in_snapshot];
        t->live = false;
        c->delete_lsn = store_delete(c->s, t->id);
        c->delete_in_snapshot = -1;
    }
    pthread_mutex_unlock(&c->mu);
}

/* Write-behind limits for open_store (0 = the store's defaults). */
static uint64_t opt_tail_max, opt_tail_budget, opt_spill_file;

static store *open_store(tctx *c, const char *dir, store_durability d, uint64_t ckpt_bytes,
                         bool with_snapshot, char *err, size_t errlen) {
    c->nrec = 0;
    c->durable = 0;
    store_options opt = {
        .dir = dir,
        .durability = d,
        .checkpoint_bytes = ckpt_bytes,
        .tail_max = opt_tail_max,
        .tail_budget = opt_tail_budget,
        .spill_file_bytes = opt_spill_file,
        .ctx = c,
        .on_durable = cb_durable,
        .on_recover = cb_recover,
        .snapshot = with_snapshot ? cb_snapshot : NULL,
    };
    char local[256];
    if (!err) {
        err = local;
        errlen = sizeof local;
    }
    err[0] = 0;
    c->s = store_open(&opt, err, errlen);
    if (!c->s) fprintf(stderr, "store_open(%s): %s\n", dir, err);
    else c->durable = store_durable_lsn(c->s);
    return c->s;
}

static void close_store(tctx *c) {
    store_close(c->s);
    c->s = NULL;
}

static int t_create(tctx *c, const char *name, const char *meta, const void *data, size_t len,
                    store_lsn *lsn_out) {
    pthread_mutex_lock(&c->mu);
    int i = (int)c->n++;
    tstream *t = &c->st[i];
    t->id = store_id_next(c->s);
    snprintf(t->name, sizeof t->name, "%s", name);
    buf_reset(&t->meta);
    buf_append_str(&t->meta, meta);
    buf_reset(&t->data);
    buf_append(&t->data, data, len);
    t->live = true;
    store_lsn lsn = store_create(c->s, t->id, (const uint8_t *)name, strlen(name),
                                 (const uint8_t *)meta, strlen(meta), data, len);
    pthread_mutex_unlock(&c->mu);
    if (lsn_out) *lsn_out = lsn;
    return i;
}

static store_lsn t_append(tctx *c, int i, const void *data, size_t len, const char *meta) {
    pthread_mutex_lock(&c->mu);
    tstream *t = &c->st[i];
    store_lsn lsn = store_append(c->s, t->id, t->data.len, data, len, (const uint8_t *)meta,
                                 meta ? strlen(meta) : 0);
    if (lsn) {
        buf_append(&t->data, data, len);
        if (meta) {
            buf_reset(&t->meta);
            buf_append_str(&t->meta, meta);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return lsn;
}

static store_lsn t_meta(tctx *c, int i, const char *meta) {
    pthread_mutex_lock(&c->mu);
    tstream *t = &c->st[i];
    store_lsn lsn = store_set_meta(c->s, t->id, (const uint8_t *)meta, strlen(meta));
    buf_reset(&t->meta);
    buf_append_str(&t->meta, meta);
    pthread_mutex_unlock(&c->mu);
    return lsn;
}

static store_lsn t_delete(tctx *c, int i) {
    pthread_mutex_lock(&c->mu);
    c->st[i].live = false;
    store_lsn lsn = store_delete(c->s, c->st[i].id);
    pthread_mutex_unlock(&c->mu);
    return lsn;
}

static bool wait_durable(tctx *c, store_lsn lsn) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 20;
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    while (c->durable < lsn && rc == 0) rc = pthread_cond_timedwait(&c->cond, &c->mu, &dl);
    bool ok = c->durable >= lsn;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

/* The stream's data file holds exactly its expected bytes (after recovery
 * or a checkpoint, when nothing is left in memory). */
static bool file_exact_ok(tctx *c, int i) {
    tstream *t = &c->st[i];
    store_file *f = store_file_acquire(c->s, t->id);
    if (!f) return false;
    struct stat st;
    bool ok = fstat(store_file_fd(f), &st) == 0 && (size_t)st.st_size == t->data.len &&
              store_written(c->s, t->id) == t->data.len;
    if (ok && t->data.len) {
        uint8_t *got = xmalloc(t->data.len);
        ok = pread(store_file_fd(f), got, t->data.len, 0) == (ssize_t)t->data.len &&
             memcmp(got, t->data.data, t->data.len) == 0;
        free(got);
    }
    store_file_release(c->s, f);
    return ok;
}

/* store_read returns the stream's expected bytes, and the part its data
 * file is said to hold (below store_written) really is in the file. */
static bool read_back_ok(tctx *c, int i) {
    tstream *t = &c->st[i];
    size_t n = t->data.len;
    uint8_t *got = xmalloc(n + 1);
    bool ok = store_read(c->s, t->id, 0, got, n) == 0 &&
              (n == 0 || memcmp(got, t->data.data, n) == 0);
    uint64_t w = store_written(c->s, t->id);
    ok = ok && w <= n;
    store_file *f = ok && w ? store_file_acquire(c->s, t->id) : NULL;
    if (ok && w) {
        memset(got, 0, n);
        ok = f && pread(store_file_fd(f), got, w, 0) == (ssize_t)w &&
             memcmp(got, t->data.data, w) == 0;
    }
    if (f) store_file_release(c->s, f);
    free(got);
    return ok;
}

/* What on_recover reported equals the model's live streams, and their data
 * files hold exactly their bytes. */
static bool recovered_matches(tctx *c) {
    size_t live = 0;
    if (c->rec_overflow) return false;
    for (size_t i = 0; i < c->n; i++) {
        tstream *t = &c->st[i];
        if (!t->live) continue;
        live++;
        trec *r = NULL;
        for (size_t k = 0; k < c->nrec; k++)
            if (c->rec[k].id == t->id) r = &c->rec[k];
        if (!r) {
            fprintf(stderr, "stream %s not recovered\n", t->name);
            return false;
        }
        if (r->name.len != strlen(t->name) || memcmp(r->name.data, t->name, r->name.len) != 0 ||
            r->meta.len != t->meta.len ||
            (t->meta.len && memcmp(r->meta.data, t->meta.data, t->meta.len) != 0) ||
            r->length != t->data.len) {
            fprintf(stderr, "stream %s recovered wrong (length %llu, want %zu)\n", t->name,
                    (unsigned long long)r->length, t->data.len);
            return false;
        }
        if (!file_exact_ok(c, (int)i) || !read_back_ok(c, (int)i)) {
            fprintf(stderr, "stream %s: data file differs\n", t->name);
            return false;
        }
    }
    return live == c->nrec;
}

/* Close the store and open it again (durable, default checkpoints): it must
 * recover what the test wrote, and is closed again. */
static void reopen_matches(tctx *c, const char *dir) {
    close_store(c);
    CHECK(open_store(c, dir, STORE_DURABLE, 0, true, NULL, 0) != NULL);
    if (c->s) {
        CHECK(recovered_matches(c));
        close_store(c);
    }
}

static void fill(uint8_t *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(seed * 31 + i * 7 + (i >> 8));
}

/* ---- the record format ---- */

typedef struct scan_log {
    store_rec r[16];
    size_t n;
} scan_log;

static void log_rec(void *arg, const store_rec *r) {
    scan_log *l = arg;
    if (l->n < 16) l->r[l->n++] = *r;
}

static void test_wal_format(void) {
    /* The on-disk checksum is CRC-32 with the gzip polynomial: the standard
     * check value, whole and continued, pins it across implementations. */
    const uint8_t digits[] = "123456789";
    CHECK_EQ_INT(codec_crc(0, digits, 9), 0xCBF43926u);
    CHECK_EQ_INT(codec_crc(codec_crc(0, digits, 4), digits + 4, 5), 0xCBF43926u);
    CHECK_EQ_INT(codec_crc(codec_crc(0, digits, 9), NULL, 0), 0xCBF43926u);

    buf img;
    buf_init(&img);
    const uint8_t name[] = "/s/one", meta[] = "M1", data[] = "hello world";
    store_rec a = {.type = STORE_REC_CREATE, .lsn = 5, .id = 7, .name = name, .name_len = 6,
                   .meta = meta, .meta_len = 2, .has_meta = true, .data = data, .data_len = 11};
    store_rec b = {.type = STORE_REC_APPEND, .lsn = 6, .id = 7, .pos = 11, .data = data,
                   .data_len = 5};
    store_rec m = {.type = STORE_REC_META, .lsn = 9, .id = 7, .meta = meta, .meta_len = 2,
                   .has_meta = true};
    store_rec d = {.type = STORE_REC_DELETE, .lsn = 10, .id = 7};
    wal_encode(&img, &a);
    wal_encode(&img, &b);
    wal_encode(&img, &m);
    wal_encode(&img, &d);
    size_t total = wal_rec_size(&a) + wal_rec_size(&b) + wal_rec_size(&m) + wal_rec_size(&d);
    CHECK_EQ_INT(img.len, total);

    scan_log l = {.n = 0};
    CHECK_EQ_INT(wal_scan_records(img.data, img.len, 0, 0, log_rec, &l), total);
    CHECK_EQ_INT(l.n, 4);
    CHECK_EQ_INT(l.r[0].type, STORE_REC_CREATE);
    CHECK_EQ_INT(l.r[0].lsn, 5);
    CHECK_EQ_INT(l.r[0].id, 7);
    CHECK_MEM_STR(l.r[0].name, l.r[0].name_len, "/s/one");
    CHECK_MEM_STR(l.r[0].meta, l.r[0].meta_len, "M1");
    CHECK_MEM_STR(l.r[0].data, l.r[0].data_len, "hello world");
    CHECK_EQ_INT(l.r[1].type, STORE_REC_APPEND);
    CHECK_EQ_INT(l.r[1].pos, 11);
    CHECK(!l.r[1].has_meta);
    CHECK_MEM_STR(l.r[1].data, l.r[1].data_len, "hello");
    CHECK(l.r[2].type == STORE_REC_META && l.r[2].has_meta && l.r[2].meta_len == 2);
    CHECK(l.r[3].type == STORE_REC_DELETE && l.r[3].lsn == 10);

    /* A zero-filled tail (preallocated or never written) ends the scan. */
    size_t good = img.len;
    uint8_t zeros[100] = {0};
    buf_append(&img, zeros, sizeof zeros);
    CHECK_EQ_INT(wal_scan_records(img.data, img.len, 0, 0, NULL, NULL), good);
    img.len = good;

    /* Every truncation stops at the last whole record. */
    size_t ends[4] = {wal_rec_size(&a), 0, 0, total};
    ends[1] = ends[0] + wal_rec_size(&b);
    ends[2] = ends[1] + wal_rec_size(&m);
    bool all_ok = true;
    for (size_t cut = 0; cut <= total; cut++) {
        size_t want = 0;
        for (int k = 0; k < 4; k++)
            if (ends[k] <= cut) want = ends[k];
        if (wal_scan_records(img.data, cut, 0, 0, NULL, NULL) != want) all_ok = false;
    }
    CHECK(all_ok);

    /* Any flipped bit in the second record ends the scan before it. */
    all_ok = true;
    for (size_t i = ends[0]; i < ends[1]; i++) {
        for (int bit = 0; bit < 8; bit++) {
            img.data[i] ^= (uint8_t)(1 << bit);
            if (wal_scan_records(img.data, img.len, 0, 0, NULL, NULL) != ends[0]) all_ok = false;
            img.data[i] ^= (uint8_t)(1 << bit);
        }
    }
    CHECK(all_ok);

    /* LSNs must increase strictly, even with valid checksums. */
    buf dup;
    buf_init(&dup);
    wal_encode(&dup, &a);
    store_rec same = b;
    same.lsn = 5;
    wal_encode(&dup, &same);
    CHECK_EQ_INT(wal_scan_records(dup.data, dup.len, 0, 0, NULL, NULL), wal_rec_size(&a));
    CHECK_EQ_INT(wal_scan_records(img.data, img.len, 0, 5, NULL, NULL), 0);
    CHECK_EQ_INT(wal_scan_records(img.data, img.len, 0, 4, NULL, NULL), total);

    /* Records that break the per-type rules are corrupt even if intact. */
    buf_reset(&dup);
    store_rec bad = d;
    bad.data = data;
    bad.data_len = 3; /* a delete never carries data */
    wal_encode(&dup, &bad);
    CHECK_EQ_INT(wal_scan_records(dup.data, dup.len, 0, 0, NULL, NULL), 0);
    buf_reset(&dup);
    bad = a;
    bad.id = 0;
    wal_encode(&dup, &bad);
    CHECK_EQ_INT(wal_scan_records(dup.data, dup.len, 0, 0, NULL, NULL), 0);

    /* A segment: its header, then records sealed with its salt. */
    buf seg;
    buf_init(&seg);
    wal_seg_hdr h = {.seg = 3, .prev_end = 777, .salt = 0x9e3779b9u}, got;
    uint8_t hdr[WAL_SEG_HDR];
    wal_seg_hdr_encode(hdr, &h);
    buf_append(&seg, hdr, sizeof hdr);
    buf_append(&seg, img.data, img.len);
    wal_seal(seg.data + WAL_SEG_HDR, img.len, h.salt);
    CHECK(wal_seg_hdr_decode(seg.data, seg.len, &got));
    CHECK(got.seg == 3 && got.prev_end == 777 && got.salt == h.salt);
    uint64_t segno = 0;
    l.n = 0;
    CHECK_EQ_INT(store_wal_scan(seg.data, seg.len, &segno, log_rec, &l), WAL_SEG_HDR + total);
    CHECK(segno == 3 && l.n == 4 && l.r[3].lsn == 10);
    /* Unsealed, or sealed for another segment, no record counts. */
    CHECK_EQ_INT(wal_scan_records(img.data, img.len, h.salt, 0, NULL, NULL), 0);
    CHECK_EQ_INT(wal_scan_records(seg.data + WAL_SEG_HDR, img.len, h.salt ^ 1, 0, NULL, NULL), 0);
    /* Any flipped bit in the header: not a segment. */
    all_ok = true;
    for (size_t i = 0; i < WAL_SEG_HDR; i++)
        for (int bit = 0; bit < 8; bit++) {
            seg.data[i] ^= (uint8_t)(1 << bit);
            if (store_wal_scan(seg.data, seg.len, NULL, NULL, NULL) != 0) all_ok = false;
            seg.data[i] ^= (uint8_t)(1 << bit);
        }
    CHECK(all_ok);

    /* Recycled: a new segment written over an old one. Right after the new
     * segment's last record lie either an old record, intact under its own
     * segment's salt and with a higher LSN, or a record a client put in its
     * data (unsealed): neither counts. Sealed with the new segment's salt,
     * the same bytes would. */
    store_rec fresh = {.type = STORE_REC_META, .lsn = 2, .id = 7, .meta = meta, .meta_len = 2,
                       .has_meta = true};
    store_rec later = {.type = STORE_REC_DELETE, .lsn = 1000, .id = 7};
    wal_seg_hdr h2 = {.seg = 9, .prev_end = 0, .salt = 0x1234u};
    buf over;
    buf_init(&over);
    for (int k = 0; k < 3; k++) {
        buf_reset(&over);
        wal_seg_hdr_encode(hdr, &h2);
        buf_append(&over, hdr, sizeof hdr);
        wal_encode(&over, &fresh);
        size_t fresh_end = over.len;
        wal_encode(&over, &later);
        wal_seal(over.data + WAL_SEG_HDR, fresh_end - WAL_SEG_HDR, h2.salt);
        uint32_t salt = k == 0 ? h.salt : k == 1 ? 0 : h2.salt;
        wal_seal(over.data + fresh_end, over.len - fresh_end, salt);
        l.n = 0;
        size_t want = k < 2 ? fresh_end : over.len;
        CHECK_EQ_INT(store_wal_scan(over.data, over.len, &segno, log_rec, &l), want);
        CHECK(segno == 9 && l.n == (k < 2 ? 1 : 2) && l.r[0].lsn == 2);
    }
    buf_free(&over);
    buf_free(&seg);
    buf_free(&dup);
    buf_free(&img);
}

/* ---- basic operation ---- */

static void test_basic(void) {
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    tctx c;
    ctx_init(&c);
    CHECK(open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0) != NULL);
    if (!c.s) goto out;
    CHECK_EQ_INT(c.nrec, 0);

    store_lsn l1, lsns[8];
    int a = t_create(&c, "/v1/stream/a", "ct=text/plain", "first ", 6, &l1);
    CHECK(l1 > 0);
    CHECK(read_back_ok(&c, a));
    lsns[0] = t_append(&c, a, "second ", 7, NULL);
    lsns[1] = t_append(&c, a, "third", 5, "ct=text/plain;closed");
    lsns[2] = t_append(&c, a, "", 0, "meta-only");
    lsns[3] = t_meta(&c, a, "replaced meta");
    CHECK(lsns[0] > l1 && lsns[1] > lsns[0] && lsns[2] > lsns[1] && lsns[3] > lsns[2]);
    CHECK(read_back_ok(&c, a));
    CHECK_EQ_INT(c.st[a].data.len, 18);

    int b = t_create(&c, "/v1/stream/b", "", NULL, 0, &lsns[4]);
    CHECK(lsns[4] > lsns[3]);
    CHECK(read_back_ok(&c, b));
    CHECK(wait_durable(&c, lsns[4]));
    CHECK(store_durable_lsn(c.s) >= lsns[4]);

    /* Appending to a stream that does not exist fails without logging. */
    errno = 0;
    CHECK_EQ_INT(store_append(c.s, 999999, 0, (const uint8_t *)"x", 1, NULL, 0), 0);
    CHECK_EQ_INT(errno, ENOENT);
    CHECK(store_file_acquire(c.s, 999999) == NULL);

    close_store(&c);
    CHECK(c.order_ok);

    /* Reopen: names, metas, lengths, bytes; LSNs continue. */
    CHECK(open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0) != NULL);
    if (!c.s) goto out;
    CHECK(recovered_matches(&c));
    CHECK_EQ_INT(c.nrec, 2);
    CHECK_MEM_STR(c.rec[0].meta.data, c.rec[0].meta.len, "replaced meta");
    store_lsn l2 = t_append(&c, b, "after reopen", 12, NULL);
    CHECK(l2 > lsns[4]);
    uint64_t id = store_id_next(c.s);
    CHECK(id > c.st[b].id);
    close_store(&c);

    CHECK(open_store(&c, dir, STORE_NOSYNC, 0, true, NULL, 0) != NULL);
    if (!c.s) goto out;
    CHECK(recovered_matches(&c));
    close_store(&c);
out:
    ctx_free(&c);
    rm_rf(dir);
}

/* on_durable: strictly increasing, and it covers every mutation. */
static void test_durable_reports(void) {
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    tctx c;
    ctx_init(&c);
    if (!open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0)) goto out;
    store_lsn last = 0, lsn;
    bool increasing = true;
    int i = t_create(&c, "/r", "m", "x", 1, &lsn);
    for (int k = 0; k < 300; k++) {
        char meta[32];
        snprintf(meta, sizeof meta, "k=%d", k);
        lsn = (k % 3 == 0) ? t_meta(&c, i, meta) : t_append(&c, i, meta, strlen(meta), NULL);
        if (lsn <= last) increasing = false;
        last = lsn;
    }
    CHECK(increasing);
    CHECK(wait_durable(&c, last));
    CHECK_EQ_INT(c.durable, last);
    CHECK(c.order_ok);
    CHECK(c.nreports >= 1 && c.nreports <= 301);
    reopen_matches(&c, dir);
out:
    ctx_free(&c);
    rm_rf(dir);
}

/* ---- group commit ---- */

#define GC_THREADS 8
#define GC_APPENDS 40

typedef struct gc_arg {
    tctx *c;
    int idx;
    bool ok;
} gc_arg;

static void *gc_writer(void *p) {
    gc_arg *g = p;
    g->ok = true;
    for (int k = 0; k < GC_APPENDS; k++) {
        uint8_t data[100];
        size_t n = 1 + (size_t)(k * 13 + g->idx) % sizeof data;
        fill(data, n, (unsigned)(g->idx * 1000 + k));
        store_lsn lsn = t_append(g->c, g->idx, data, n, NULL);
        /* Like a client waiting for its acknowledgement. */
        if (!lsn || !wait_durable(g->c, lsn)) g->ok = false;
    }
    return NULL;
}

static void test_group_commit(void) {
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    tctx c;
    ctx_init(&c);
    if (!open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0)) goto out;
    for (int i = 0; i < GC_THREADS; i++) {
        char name[32];
        snprintf(name, sizeof name, "/gc/%d", i);
        t_create(&c, name, "", NULL, 0, NULL);
    }
    store_stats before;
    store_get_stats(c.s, &before);
    pthread_t th[GC_THREADS];
    gc_arg args[GC_THREADS];
    for (int i = 0; i < GC_THREADS; i++) {
        args[i] = (gc_arg){.c = &c, .idx = i};
        pthread_create(&th[i], NULL, gc_writer, &args[i]);
    }
    bool all_ok = true;
    for (int i = 0; i < GC_THREADS; i++) {
        pthread_join(th[i], NULL);
        all_ok = all_ok && args[i].ok;
    }
    CHECK(all_ok);
    store_stats after;
    store_get_stats(c.s, &after);
    uint64_t records = after.records - before.records, syncs = after.syncs - before.syncs;
    CHECK_EQ_INT(records, GC_THREADS * GC_APPENDS);
    /* Concurrent waiters share fsyncs. */
    CHECK(syncs < records);
    fprintf(stderr, "group commit: %llu records, %llu fsyncs\n", (unsigned long long)records,
            (unsigned long long)syncs);
    CHECK(c.order_ok);
    bool data_ok = true;
    for (int i = 0; i < GC_THREADS; i++) data_ok = data_ok && read_back_ok(&c, i);
    CHECK(data_ok);
    reopen_matches(&c, dir);
out:
    ctx_free(&c);
    rm_rf(dir);
}

/* ---- delete ---- */

static void test_delete(void) {
    char dir[64], path[512];
    make_tmpdir(dir, sizeof dir);
    tctx c;
    ctx_init(&c);
    if (!open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0)) goto out;
    int keep = t_create(&c, "/keep", "k", "keep", 4, NULL);
    int del = t_create(&c, "/del", "d", "doomed ", 7, NULL);
    t_append(&c, del, "bytes", 5, NULL);
    data_path(path, sizeof path, dir, c.st[del].id);
    /* A checkpoint writes the tail out. */
    CHECK_EQ_INT(store_checkpoint(c.s), 0);
    CHECK_EQ_INT(file_size(path), 12);

    /* A reader's file stays usable after the stream is deleted. */
    store_file *f = store_file_acquire(c.s, c.st[del].id);
    CHECK(f != NULL);
    store_lsn lsn = t_delete(&c, del);
    CHECK(lsn > 0);
    CHECK(wait_durable(&c, lsn));
    /* The unlink follows the durable report on the flusher thread. */
    for (int k = 0; k < 200 && file_size(path) >= 0; k++) usleep(5000);
    CHECK_EQ_INT(file_size(path), -1);
    if (f) {
        char got[12];
        CHECK_EQ_INT(pread(store_file_fd(f), got, 12, 0), 12);
        CHECK(memcmp(got, "doomed bytes", 12) == 0);
        store_file_release(c.s, f);
    }
    CHECK(store_file_acquire(c.s, c.st[del].id) == NULL);
    close_store(&c);

    CHECK(open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0) != NULL);
    if (c.s) {
        CHECK_EQ_INT(c.nrec, 1);
        CHECK(recovered_matches(&c));
        CHECK(read_back_ok(&c, keep));
        close_store(&c);
    }
out:
    ctx_free(&c);
    rm_rf(dir);
}

/* ---- checkpoints ---- */

static void sleep_ms(int ms) { usleep((useconds_t)ms * 1000); }

static void test_checkpoint(void) {
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    tctx c;
    ctx_init(&c);
    if (!open_store(&c, dir, STORE_DURABLE, 4096, true, NULL, 0)) goto out;
    for (int i = 0; i < 10; i++) {
        char name[32];
        snprintf(name, sizeof name, "/ck/%d", i);
        t_create(&c, name, "m0", "init", 4, NULL);
    }
    store_lsn lsn = 0;
    for (int k = 0; k < 400; k++) {
        uint8_t data[300];
        size_t n = 1 + (size_t)(k * 37) % sizeof data;
        fill(data, n, (unsigned)k);
        char meta[32];
        snprintf(meta, sizeof meta, "m%d", k);
        int i = k % 10;
        if (i == 3 && k > 200) i = 4; /* deleted below */
        lsn = t_append(&c, i, data, n, (k % 4 == 0) ? meta : NULL);
        if (k == 200) t_delete(&c, 3);
    }
    CHECK(wait_durable(&c, lsn));
    /* The WAL passed checkpoint_bytes: one starts by itself. */
    store_stats st;
    for (int k = 0; k < 2000; k++) {
        store_get_stats(c.s, &st);
        if (st.checkpoints >= 1) break;
        sleep_ms(2);
    }
    CHECK(st.checkpoints >= 1);
    CHECK_EQ_INT(store_checkpoint(c.s), 0);
    store_get_stats(c.s, &st);
    CHECK(st.checkpoints >= 2);
    char segs[8][512];
    /* The checkpoint thread may have rotated again meanwhile. */
    CHECK(wal_files(dir, segs, 8) <= 2);
    /* More after the checkpoint; these live only in the WAL. */
    for (int k = 0; k < 20; k++) lsn = t_append(&c, k % 10 == 3 ? 4 : k % 10, "tail", 4, "mt");
    int late = t_create(&c, "/ck/late", "L", "late data", 9, NULL);
    t_meta(&c, late, "L2");
    CHECK(wait_durable(&c, lsn));
    CHECK(c.order_ok);
    close_store(&c);

    CHECK(open_store(&c, dir, STORE_DURABLE, 4096, true, NULL, 0) != NULL);
    if (!c.s) goto out;
    CHECK_EQ_INT(c.nrec, 10);
    CHECK(recovered_matches(&c));
    close_store(&c);
    CHECK(open_store(&c, dir, STORE_DURABLE, 4096, false, NULL, 0) != NULL);
    if (c.s) {
        CHECK(recovered_matches(&c));
        CHECK_EQ_INT(store_checkpoint(c.s), -1);
        close_store(&c);
    }
out:
    ctx_free(&c);
    rm_rf(dir);
}

/* Writers keep going while checkpoints run underneath them. */
typedef struct ck_arg {
    tctx *c;
    int idx;
    store_lsn last;
} ck_arg;

static void *ck_writer(void *p) {
    ck_arg *g = p;
    for (int k = 0; k < 300; k++) {
        uint8_t data[200];
        size_t n = 1 + (size_t)(k * 17 + g->idx) % sizeof data;
        fill(data, n, (unsigned)(g->idx + k));
        char meta[24];
        snprintf(meta, sizeof meta, "w%d-%d", g->idx, k);
        g->last = t_append(g->c, g->idx, data, n, meta);
    }
    return NULL;
}

static void test_checkpoint_concurrent(void) {
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    tctx c;
    ctx_init(&c);
    if (!open_store(&c, dir, STORE_DURABLE, 8192, true, NULL, 0)) goto out;
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof name, "/cc/%d", i);
        t_create(&c, name, "", NULL, 0, NULL);
    }
    pthread_t th[4];
    ck_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (ck_arg){.c = &c, .idx = i};
        pthread_create(&th[i], NULL, ck_writer, &args[i]);
    }
    for (int k = 0; k < 5; k++) store_checkpoint(c.s);
    store_lsn max = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        if (args[i].last > max) max = args[i].last;
    }
    CHECK(max > 0 && wait_durable(&c, max));
    store_stats st;
    store_get_stats(c.s, &st);
    CHECK(st.checkpoints >= 3);
    close_store(&c);
    CHECK(open_store(&c, dir, STORE_DURABLE, 8192, true, NULL, 0) != NULL);
    if (c.s) {
        CHECK(recovered_matches(&c));
        close_store(&c);
    }
out:
    ctx_free(&c);
    rm_rf(dir);
}

/* ---- torn WAL tails ---- */

typedef struct offsets {
    size_t start[4096];
    size_t n;
    const uint8_t *img;
} offsets;

static void rec_offset(void *arg, const store_rec *r) {
    offsets *o = arg;
    if (o->n < 4096) o->start[o->n++] = (size_t)(r->name - o->img) - WAL_HDR_SIZE;
}

static void test_torn_tail(void) {
    char dir[64], pristine[80], seg[1][512];
    make_tmpdir(dir, sizeof dir);
    snprintf(pristine, sizeof pristine, "%s.pristine", dir);
    tctx c;
    ctx_init(&c);
    buf img, meta_after;
    buf_init(&img);
    buf_init(&meta_after);
    /* No snapshot callback: nothing checkpoints, the WAL keeps it all. */
    if (!open_store(&c, dir, STORE_NOSYNC, 0, false, NULL, 0)) goto out;
    int a = t_create(&c, "/torn/a", "ma", "0123456789", 10, NULL);
    int b = t_create(&c, "/torn/b", "mb", "bbbb", 4, NULL);
    int gone = t_create(&c, "/torn/gone", "", "x", 1, NULL);
    t_append(&c, a, "abcdef", 6, "ma2");
    t_meta(&c, b, "mb2");
    t_delete(&c, gone);
    size_t len_before = c.st[a].data.len;
    buf meta_before;
    buf_init(&meta_before);
    buf_append(&meta_before, c.st[a].meta.data, c.st[a].meta.len);
    store_lsn last = t_append(&c, a, "LAST-APPEND-DATA", 16, "m-last");
    buf_append(&meta_after, c.st[a].meta.data, c.st[a].meta.len);
    size_t len_after = c.st[a].data.len;
    CHECK(wait_durable(&c, last));
    close_store(&c);

    CHECK_EQ_INT(wal_files(dir, seg, 1), 1);
    CHECK(read_file(seg[0], &img));
    offsets o = {.n = 0, .img = img.data};
    CHECK_EQ_INT(store_wal_scan(img.data, img.len, NULL, rec_offset, &o), img.len);
    CHECK_EQ_INT(o.n, 7);
    size_t rec_start = o.start[o.n - 1], rec_end = img.len;
    CHECK_EQ_INT(rec_end - rec_start, WAL_HDR_SIZE + 6 + 16);
    CHECK(copy_tree(dir, pristine));

    /* Cut the last record at every byte: exactly the records before it come
     * back, and the append's bytes are cut off the data file. Flip each of
     * its bytes: the same. */
    int cut_ok = 0, cut_bad = 0, flip_ok = 0, flip_bad = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t from = rec_start, to = pass == 0 ? rec_end + 1 : rec_end;
        for (size_t pos = from; pos < to; pos++) {
            restore_tree(pristine, dir);
            bool whole = pass == 0 && pos == rec_end;
            if (pass == 0) {
                if (truncate(seg[0], (off_t)pos) < 0) cut_bad++;
            } else {
                buf_reset(&img);
                read_file(seg[0], &img);
                img.data[pos] ^= 0x5a;
                write_file(seg[0], img.data, img.len);
            }
            c.st[a].data.len = whole ? len_after : len_before;
            buf_reset(&c.st[a].meta);
            if (whole) buf_append(&c.st[a].meta, meta_after.data, meta_after.len);
            else buf_append(&c.st[a].meta, meta_before.data, meta_before.len);
            bool ok = open_store(&c, dir, STORE_NOSYNC, 0, false, NULL, 0) != NULL;
            ok = ok && recovered_matches(&c) && c.nrec == 2;
            /* The next record must not trip over leftovers of the torn one. */
            store_lsn l = ok ? t_append(&c, b, "", 0, "mb2") : 0;
            ok = ok && l > 0 && wait_durable(&c, l);
            if (c.s) close_store(&c);
            if (pass == 0 && ok) cut_ok++;
            else if (pass == 0) cut_bad++;
            else if (ok) flip_ok++;
            else flip_bad++;
        }
    }
    CHECK_EQ_INT(cut_bad, 0);
    CHECK_EQ_INT(cut_ok, (int)(rec_end - rec_start + 1));
    CHECK_EQ_INT(flip_bad, 0);
    CHECK_EQ_INT(flip_ok, (int)(rec_end - rec_start));

    /* A later segment that continues the log: its header says segment 1
     * ended at rec_end. Applied after a whole segment 1; after a torn one
     * it is not applied (it cannot hold acknowledged records) and is
     * removed. The same with a segment 2 in between that got no records
     * (no header): recovery passes over it. */
    char seg2[512], seg3[512];
    snprintf(seg2, sizeof seg2, "%.*s2.log", (int)(strlen(seg[0]) - 5), seg[0]);
    snprintf(seg3, sizeof seg3, "%.*s3.log", (int)(strlen(seg[0]) - 5), seg[0]);
    store_rec m3 = {.type = STORE_REC_META, .lsn = last + 1, .id = c.st[b].id,
                    .meta = (const uint8_t *)"mb3", .meta_len = 3, .has_meta = true};
    buf next;
    buf_init(&next);
    for (int k = 0; k < 4; k++) {
        bool torn = k & 1, gap = k & 2;
        rm_rf(dir);
        copy_tree(pristine, dir);
        buf_reset(&next);
        wal_seg_hdr h2 = {.seg = gap ? 3 : 2, .prev_end = rec_end, .salt = 0x51u};
        uint8_t hdr2[WAL_SEG_HDR];
        wal_seg_hdr_encode(hdr2, &h2);
        buf_append(&next, hdr2, sizeof hdr2);
        wal_encode(&next, &m3);
        wal_seal(next.data + WAL_SEG_HDR, next.len - WAL_SEG_HDR, h2.salt);
        CHECK(write_file(gap ? seg3 : seg2, next.data, next.len));
        static const uint8_t unwritten[WAL_BLOCK];
        if (gap) CHECK(write_file(seg2, unwritten, sizeof unwritten));
        if (torn) CHECK_EQ_INT(truncate(seg[0], (off_t)(rec_start + 5)), 0);
        c.st[a].data.len = torn ? len_before : len_after;
        buf_reset(&c.st[a].meta);
        if (torn) buf_append(&c.st[a].meta, meta_before.data, meta_before.len);
        else buf_append(&c.st[a].meta, meta_after.data, meta_after.len);
        buf_reset(&c.st[b].meta);
        buf_append(&c.st[b].meta, torn ? "mb2" : "mb3", 3);
        CHECK(open_store(&c, dir, STORE_NOSYNC, 0, false, NULL, 0) != NULL);
        if (!c.s) continue;
        CHECK(recovered_matches(&c));
        /* Torn: that segment is now the fresh one after the checkpoint. */
        if (torn) CHECK_EQ_INT(file_size(gap ? seg3 : seg2), 0);
        close_store(&c);
    }
    buf_free(&next);

    /* A segment from before segments had headers, with a record that
     * continues the log: refused, not taken for an unwritten segment. */
    rm_rf(dir);
    copy_tree(pristine, dir);
    buf legacy;
    buf_init(&legacy);
    wal_encode(&legacy, &m3);
    CHECK(write_file(seg2, legacy.data, legacy.len));
    buf_free(&legacy);
    char err[256];
    CHECK(open_store(&c, dir, STORE_NOSYNC, 0, false, err, sizeof err) == NULL);
    CHECK(strstr(err, "older weft") != NULL);
    if (c.s) close_store(&c);
    rm_rf(pristine);
    buf_free(&meta_before);
out:
    buf_free(&img);
    buf_free(&meta_after);
    ctx_free(&c);
    rm_rf(dir);
}

/* ---- data files disagreeing with the log ---- */

static void test_data_repair(void) {
    char dir[64], pristine[80], path[512];
    make_tmpdir(dir, sizeof dir);
    snprintf(pristine, sizeof pristine, "%s.pristine", dir);
    tctx c;
    ctx_init(&c);
    uint8_t data[300];
    fill(data, sizeof data, 9);

    /* Longer than recorded (say, lost metadata after a crash): cut back. */
    if (!open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0)) goto out;
    int x = t_create(&c, "/x", "mx", data, 100, NULL);
    t_append(&c, x, data + 100, 50, NULL);
    close_store(&c);
    data_path(path, sizeof path, dir, c.st[x].id);
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0 && write(fd, "GARBAGE", 7) == 7);
    if (fd >= 0) close(fd);
    CHECK_EQ_INT(file_size(path), 157);
    CHECK(open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0) != NULL);
    if (!c.s) goto out;
    CHECK(recovered_matches(&c));
    CHECK_EQ_INT(file_size(path), 150);
    close_store(&c);

    /* Shorter than logged, or gone: rewritten from the WAL. */
    rm_rf(dir);
    c.n = 0;
    if (!open_store(&c, dir, STORE_DURABLE, 0, false, NULL, 0)) goto out;
    int y = t_create(&c, "/y", "my", data, 100, NULL);
    t_append(&c, y, data + 100, 200, "my2");
    close_store(&c);
    CHECK(copy_tree(dir, pristine));
    data_path(path, sizeof path, dir, c.st[y].id);
    CHECK_EQ_INT(truncate(path, 50), 0);
    CHECK(open_store(&c, dir, STORE_DURABLE, 0, false, NULL, 0) != NULL);
    if (!c.s) goto out;
    CHECK(recovered_matches(&c));
    CHECK_EQ_INT(file_size(path), 300);
    close_store(&c);

    rm_rf(dir);
    copy_tree(pristine, dir);
    CHECK_EQ_INT(unlink(path), 0);
    CHECK(open_store(&c, dir, STORE_DURABLE, 0, false, NULL, 0) != NULL);
    if (!c.s) goto out;
    CHECK(recovered_matches(&c));
    close_store(&c);

    /* Bytes lost from a file the catalog covers cannot be rebuilt: the
     * stream is cut to what is left rather than served with a hole. */
    CHECK_EQ_INT(truncate(path, 120), 0);
    quiet(); /* the lost bytes are logged */
    bool reopened = open_store(&c, dir, STORE_DURABLE, 0, false, NULL, 0) != NULL;
    loud();
    CHECK(reopened);
    if (!c.s) goto out;
    CHECK_EQ_INT(c.nrec, 1);
    CHECK_EQ_INT(c.rec[0].length, 120);
    c.st[y].data.len = 120;
    CHECK(recovered_matches(&c));
    close_store(&c);
    /* The cut was checkpointed: the next open has nothing to report. */
    CHECK(open_store(&c, dir, STORE_DURABLE, 0, false, NULL, 0) != NULL);
    if (!c.s) goto out;
    CHECK(recovered_matches(&c));
    close_store(&c);

    /* Bytes lost under the catalog, and the WAL appends after them: the
     * append is not replayed over a hole of zeros; the stream is cut. */
    rm_rf(dir);
    c.n = 0;
    if (!open_store(&c, dir, STORE_DURABLE, 0, false, NULL, 0)) goto out;
    int z = t_create(&c, "/z", "mz", data, 100, NULL);
    close_store(&c);
    CHECK(open_store(&c, dir, STORE_DURABLE, 0, false, NULL, 0) != NULL); /* checkpoints z */
    if (!c.s) goto out;
    t_append(&c, z, data + 100, 50, "mz2");
    close_store(&c);
    data_path(path, sizeof path, dir, c.st[z].id);
    CHECK_EQ_INT(truncate(path, 40), 0);
    quiet();
    reopened = open_store(&c, dir, STORE_DURABLE, 0, false, NULL, 0) != NULL;
    loud();
    CHECK(reopened);
    if (!c.s) goto out;
    CHECK_EQ_INT(c.nrec, 1);
    CHECK_EQ_INT(c.rec[0].length, 40);
    CHECK_MEM_STR(c.rec[0].meta.data, c.rec[0].meta.len, "mz");
    c.st[z].data.len = 40;
    buf_reset(&c.st[z].meta);
    buf_append_str(&c.st[z].meta, "mz");
    CHECK(recovered_matches(&c));
    close_store(&c);

    /* Data files of streams that do not exist are removed. */
    char stray[512];
    data_path(stray, sizeof stray, dir, 0xabcdef01);
    CHECK(write_file(stray, "stray", 5));
    CHECK(open_store(&c, dir, STORE_DURABLE, 0, false, NULL, 0) != NULL);
    if (c.s) {
        CHECK_EQ_INT(file_size(stray), -1);
        /* Ids are never reused, not even a stray file's. */
        CHECK(store_id_next(c.s) > 0xabcdef01);
        close_store(&c);
    }
out:
    ctx_free(&c);
    rm_rf(dir);
    rm_rf(pristine);
}

/* ---- the data directory: lock, catalog damage ---- */

static void test_dir_guard(void) {
    char dir[64], path[512], err[256];
    make_tmpdir(dir, sizeof dir);
    tctx c, c2;
    ctx_init(&c);
    ctx_init(&c2);
    buf cat;
    buf_init(&cat);
    if (!open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0)) goto out;
    t_create(&c, "/g", "meta", "data", 4, NULL);
    quiet();
    store *second = open_store(&c2, dir, STORE_DURABLE, 0, true, err, sizeof err);
    loud();
    CHECK(second == NULL);
    CHECK(strstr(err, "in use") != NULL);
    close_store(&c);

    snprintf(path, sizeof path, "%s/catalog", dir);
    CHECK(read_file(path, &cat) && cat.len > 60);
    cat.data[52] ^= 1;
    CHECK(write_file(path, cat.data, cat.len));
    quiet();
    second = open_store(&c2, dir, STORE_DURABLE, 0, true, err, sizeof err);
    loud();
    CHECK(second == NULL);
    CHECK(strstr(err, "catalog checksum") != NULL);
    cat.data[52] ^= 1;
    CHECK(write_file(path, cat.data, cat.len));
    CHECK(open_store(&c, dir, STORE_DURABLE, 0, true, err, sizeof err) != NULL);
    if (c.s) {
        CHECK(recovered_matches(&c));
        close_store(&c);
    }

    CHECK_EQ_INT(unlink(path), 0);
    quiet();
    second = open_store(&c2, dir, STORE_DURABLE, 0, true, err, sizeof err);
    loud();
    CHECK(second == NULL);
    CHECK(strstr(err, "catalog is missing") != NULL);
out:
    buf_free(&cat);
    ctx_free(&c);
    ctx_free(&c2);
    rm_rf(dir);
}

/* ---- the descriptor cache ---- */

static void test_fd_cache(void) {
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    tctx c;
    ctx_init(&c);
    int base = count_open_fds();
    store_options opt = {.dir = dir, .max_open_files = 4, .ctx = &c, .on_durable = cb_durable,
                         .on_recover = cb_recover, .snapshot = cb_snapshot};
    char err[256];
    c.s = store_open(&opt, err, sizeof err);
    CHECK(c.s != NULL);
    if (!c.s) goto out;
    /* More streams than SYNCFS_FILES: the checkpoint syncs with syncfs. */
    for (int i = 0; i < 100; i++) {
        char name[32], data[32];
        snprintf(name, sizeof name, "/fd/%d", i);
        snprintf(data, sizeof data, "stream %d", i);
        t_create(&c, name, "", data, strlen(data), NULL);
    }
    /* Store: directory, LOCK, WAL segment, the spare WAL segment while it
     * is zero-filled, at most 4 cached data files. */
    CHECK(count_open_fds() - base <= 4 + 4);
    /* The data is in the files once a checkpoint wrote the tails out. */
    CHECK_EQ_INT(store_checkpoint(c.s), 0);
    store_file *held[12];
    for (int i = 0; i < 12; i++) held[i] = store_file_acquire(c.s, c.st[i].id);
    /* Evicted files stay open while held. */
    bool ok = true;
    for (int i = 0; i < 12; i++) {
        char want[32], got[32] = {0};
        snprintf(want, sizeof want, "stream %d", i);
        ok = ok && held[i] &&
             pread(store_file_fd(held[i]), got, sizeof got, 0) == (ssize_t)strlen(want) &&
             strcmp(got, want) == 0;
    }
    CHECK(ok);
    CHECK(count_open_fds() - base >= 12);
    for (int i = 0; i < 12; i++)
        if (held[i]) store_file_release(c.s, held[i]);
    CHECK(count_open_fds() - base <= 4 + 4);
    ok = true;
    for (int i = 0; i < 100; i++) ok = ok && read_back_ok(&c, i);
    CHECK(ok);
    close_store(&c);
    CHECK_EQ_INT(count_open_fds(), base);
out:
    ctx_free(&c);
    rm_rf(dir);
}

/* ---- write failure ---- */

static void test_write_failure(void) {
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    tctx c;
    ctx_init(&c);
    if (!open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0)) goto out;
    int a = t_create(&c, "/fail", "m", "ok", 2, NULL);
    store_lsn good = t_append(&c, a, "good", 4, NULL);
    CHECK(wait_durable(&c, good));

    /* A file size limit makes the WAL write fail (EFBIG) like a full disk:
     * only the WAL grows past it, the big record is all meta. */
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 1 << 20;
    signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    quiet();
    size_t big = 2 << 20;
    char *meta = xmalloc(big + 1);
    memset(meta, 'm', big);
    meta[big] = 0;
    pthread_mutex_lock(&c.mu);
    store_lsn bad = store_append(c.s, c.st[a].id, 6, (const uint8_t *)"lost", 4,
                                 (const uint8_t *)meta, big);
    pthread_mutex_unlock(&c.mu);
    free(meta);
    bool failed = false;
    for (int k = 0; k < 5000 && !failed; k++) {
        pthread_mutex_lock(&c.s->mu);
        failed = c.s->failed != 0;
        pthread_mutex_unlock(&c.s->mu);
        if (!failed) usleep(1000);
    }
    store_lsn durable_after = store_durable_lsn(c.s);
    errno = 0;
    store_lsn after = t_meta(&c, a, "after");
    int after_errno = errno;
    int ckpt = store_checkpoint(c.s);
    close_store(&c);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_DFL);
    loud();
    CHECK(bad > good);
    CHECK(failed);
    CHECK(durable_after < bad);
    CHECK_EQ_INT(after, 0);
    CHECK_EQ_INT(after_errno, EFBIG);
    CHECK_EQ_INT(ckpt, -1);
    CHECK(c.durable < bad);

    /* What was acknowledged before the failure is all there. */
    buf_reset(&c.st[a].meta);
    buf_append_str(&c.st[a].meta, "m");
    log_threshold = LOG_ERROR; /* the torn record is reported */
    CHECK(open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0) != NULL);
    log_threshold = LOG_WARN;
    if (c.s) {
        CHECK(recovered_matches(&c));
        CHECK_MEM_STR(c.rec[0].meta.data, c.rec[0].meta.len, "m");
        close_store(&c);
    }
out:
    ctx_free(&c);
    rm_rf(dir);
}

/* Write zeros to path until the file system is full. */
static void fill_disk(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    static const uint8_t zeros[65536];
    while (fd >= 0 && write(fd, zeros, sizeof zeros) > 0) {}
    if (fd >= 0) close(fd);
}

static bool wait_for_room_state(tctx *c, int want) {
    for (int k = 0; k < 2000; k++) {
        if (store_waiting_for_room(c->s) == want) return true;
        sleep_ms(1);
    }
    return false;
}

/* A WAL write that finds the disk full waits for room instead of stopping
 * the store: new records are refused with ENOSPC, checkpoints give up
 * (twice here, which must not skip a segment number: recovery stops at a
 * gap), and once space is freed the waiting record becomes durable and
 * writes go on. A crash image taken then recovers everything. Needs a
 * tmpfs of its own, so root. */
static void test_no_room(void) {
    if (geteuid() != 0) {
        printf("no_room: skipped (mounting a tmpfs needs root)\n");
        return;
    }
    char dir[64], crash[80], filler[96];
    make_tmpdir(dir, sizeof dir);
    snprintf(crash, sizeof crash, "%s.crash", dir);
    snprintf(filler, sizeof filler, "%s/filler", dir);
    if (mount("tmpfs", dir, "tmpfs", 0, "size=4m") != 0) {
        CHECK(!"mount tmpfs");
        rmdir(dir);
        return;
    }
    tctx c;
    ctx_init(&c);
    if (!open_store(&c, dir, STORE_DURABLE, 64 << 10, true, NULL, 0)) goto out;
    store_lsn l0;
    int a = t_create(&c, "/room", "m0", "first", 5, &l0);
    CHECK(wait_durable(&c, l0));

    /* Meta only: a record for the WAL alone, bigger than any room left. */
    quiet();
    fill_disk(filler);
    size_t big = 300 << 10;
    char *meta = xmalloc(big + 1);
    memset(meta, 'M', big);
    meta[big] = 0;
    store_lsn l1 = t_meta(&c, a, meta);
    free(meta);
    CHECK(l1 > l0);
    CHECK(wait_for_room_state(&c, ENOSPC));
    CHECK(store_durable_lsn(c.s) < l1);
    errno = 0;
    CHECK_EQ_INT(store_set_meta(c.s, c.st[a].id, (const uint8_t *)"no", 2), 0);
    CHECK_EQ_INT(errno, ENOSPC);
    CHECK_EQ_INT(store_checkpoint(c.s), -1);
    CHECK_EQ_INT(store_checkpoint(c.s), -1);
    pthread_mutex_lock(&c.s->mu);
    CHECK(c.s->failed == 0);
    pthread_mutex_unlock(&c.s->mu);

    unlink(filler);
    CHECK(wait_durable(&c, l1));
    CHECK(wait_for_room_state(&c, 0));
    store_lsn l2 = t_append(&c, a, " after", 6, "m2");
    CHECK(l2 > l1);
    CHECK(wait_durable(&c, l2));
    loud();

    rm_rf(crash);
    CHECK(copy_tree_quiet(c.s, dir, crash));
    close_store(&c);
    CHECK(open_store(&c, crash, STORE_DURABLE, 64 << 10, true, NULL, 0) != NULL);
    if (c.s) {
        CHECK(recovered_matches(&c));
        close_store(&c);
    }
    CHECK(open_store(&c, dir, STORE_DURABLE, 64 << 10, true, NULL, 0) != NULL);
    if (c.s) {
        CHECK(recovered_matches(&c));
        close_store(&c);
    }
    rm_rf(crash);
out:
    ctx_free(&c);
    umount2(dir, MNT_DETACH);
    rmdir(dir);
}

/* ---- write-behind ---- */


/* Poll until stream i's written bytes reach want (the writer thread runs
 * on its own time). */
static bool wait_written(tctx *c, int i, uint64_t want) {
    for (int k = 0; k < 2000; k++) {
        if (store_written(c->s, c->st[i].id) >= want) return true;
        sleep_ms(2);
    }
    return false;
}

/* Stream i's bytes [pos, pos + n) read with store_read equal the model's. */
static bool range_ok(tctx *c, int i, uint64_t pos, size_t n) {
    uint8_t *got = xmalloc(n + 1);
    bool ok = store_read(c->s, c->st[i].id, pos, got, n) == 0 &&
              memcmp(got, c->st[i].data.data + pos, n) == 0;
    free(got);
    return ok;
}

/* Every range of the stream whose ends are multiples of step. */
static bool all_ranges_ok(tctx *c, int i, size_t step) {
    size_t len = c->st[i].data.len;
    for (size_t a = 0; a <= len; a += step)
        for (size_t b = a; b <= len; b += step)
            if (!range_ok(c, i, a, b - a)) return false;
    return range_ok(c, i, 0, len);
}

static bool in_flight(tctx *c, int i) {
    pthread_mutex_lock(&c->s->tails_mu);
    tail_stream *e = tails_find_locked(c->s, c->st[i].id);
    bool f = e && e->mem && e->mem->writing;
    pthread_mutex_unlock(&c->s->tails_mu);
    return f;
}

/* Holding files_mu stops a write-out after it moved the tail in flight,
 * before it can open the data file: the test's window into a write-out.
 * Only reads above store_written (memory only) may run meanwhile. */
static bool wait_in_flight(tctx *c, int i) {
    for (int k = 0; k < 2000; k++) {
        if (in_flight(c, i)) return true;
        sleep_ms(1);
    }
    return false;
}

static void append_filled(tctx *c, int i, size_t n, unsigned seed) {
    uint8_t data[4096];
    fill(data, n, seed);
    CHECK(t_append(c, i, data, n, NULL) > 0);
}

static void test_tail_reads(void) {
    char dir[64], path[512];
    make_tmpdir(dir, sizeof dir);
    tctx c;
    ctx_init(&c);
    opt_tail_max = 1000;
    opt_tail_budget = 1 << 20;
    if (!open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0)) goto out;
    int a = t_create(&c, "/wb/a", "m", "init", 4, NULL);
    data_path(path, sizeof path, dir, c.st[a].id);
    for (int k = 0; k < 3; k++) append_filled(&c, a, 300, (unsigned)k);
    /* Under tail_max: nothing reached the file, everything reads. */
    CHECK_EQ_INT(store_written(c.s, c.st[a].id), 0);
    CHECK_EQ_INT(file_size(path), 0);
    CHECK(all_ranges_ok(&c, a, 50));

    /* The append that makes the tail reach tail_max: one write-out. */
    store_stats st;
    store_get_stats(c.s, &st);
    CHECK_EQ_INT(st.tail_bytes, 904);
    uint64_t writes = st.tail_writes;
    append_filled(&c, a, 300, 3);
    CHECK(wait_written(&c, a, 1204));
    CHECK_EQ_INT(store_written(c.s, c.st[a].id), 1204);
    CHECK_EQ_INT(file_size(path), 1204);
    store_get_stats(c.s, &st);
    CHECK_EQ_INT(st.tail_writes, writes + 1);
    CHECK_EQ_INT(st.tail_bytes, 0);
    CHECK(read_back_ok(&c, a));

    /* Part in the file, part in the tail: every range across the boundary. */
    append_filled(&c, a, 300, 4);
    append_filled(&c, a, 300, 5);
    CHECK_EQ_INT(store_written(c.s, c.st[a].id), 1204);
    CHECK(all_ranges_ok(&c, a, 43));
    CHECK(range_ok(&c, a, 1203, 2) && range_ok(&c, a, 1204, 1) && range_ok(&c, a, 1000, 800));
    uint8_t b[16];
    errno = 0;
    CHECK_EQ_INT(store_read(c.s, c.st[a].id, 1800, b, 5), -1);
    CHECK_EQ_INT(errno, EINVAL);
    errno = 0;
    CHECK_EQ_INT(store_read(c.s, 424242, 0, b, 1), -1);
    CHECK_EQ_INT(errno, ENOENT);
    CHECK_EQ_INT(store_written(c.s, 424242), 0);

    /* A write-out stopped in flight: its bytes and the newer tail read
     * from memory, written has not moved. */
    pthread_mutex_lock(&c.s->files_mu);
    append_filled(&c, a, 400, 6); /* tail 1000: the writer takes it */
    bool flying = wait_in_flight(&c, a);
    CHECK(flying);
    append_filled(&c, a, 300, 7); /* into a new tail behind the flight */
    uint64_t w = store_written(c.s, c.st[a].id);
    bool mem_ok = w == 1204;
    for (size_t x = 1204; x <= 2504; x += 37)
        for (size_t y = x; y <= 2504; y += 91) mem_ok = mem_ok && range_ok(&c, a, x, y - x);
    mem_ok = mem_ok && range_ok(&c, a, 1204, 1300) && range_ok(&c, a, 2203, 2);
    pthread_mutex_unlock(&c.s->files_mu);
    CHECK(mem_ok);
    CHECK(wait_written(&c, a, 2204));
    CHECK_EQ_INT(store_written(c.s, c.st[a].id), 2204);
    CHECK(all_ranges_ok(&c, a, 97));
    CHECK(read_back_ok(&c, a));

    reopen_matches(&c, dir);
out:
    opt_tail_max = opt_tail_budget = 0;
    ctx_free(&c);
    rm_rf(dir);
}

static bool wait_tail_bytes(tctx *c, uint64_t want) {
    store_stats st;
    for (int k = 0; k < 2000; k++) {
        store_get_stats(c->s, &st);
        if (st.tail_bytes == want) return true;
        sleep_ms(2);
    }
    fprintf(stderr, "tail_bytes %llu, want %llu\n", (unsigned long long)st.tail_bytes,
            (unsigned long long)want);
    return false;
}

/* What stream i has in spill files (-1 if it has no tail). */
static int64_t spilled_of(tctx *c, int i) {
    pthread_mutex_lock(&c->s->tails_mu);
    tail_stream *e = tails_find_locked(c->s, c->st[i].id);
    int64_t n = e ? (int64_t)e->spill.bytes : -1;
    pthread_mutex_unlock(&c->s->tails_mu);
    return n;
}

/* Spill files not yet closed. */
static int spill_files_open(tctx *c) {
    int n = 0;
    pthread_mutex_lock(&c->s->tails_mu);
    for (const spill_file *f = c->s->spill_files; f; f = f->next) n++;
    for (const spill_file *f = c->s->spill_doomed; f; f = f->next) n++;
    pthread_mutex_unlock(&c->s->tails_mu);
    return n;
}

static bool wait_stats(tctx *c, store_stats *st, uint64_t spill_writes, uint64_t tail_bytes_at_most) {
    for (int k = 0; k < 2000; k++) {
        store_get_stats(c->s, st);
        if (st->spill_writes >= spill_writes && st->tail_bytes <= tail_bytes_at_most) return true;
        sleep_ms(2);
    }
    return false;
}

/* Over the budget the least recently appended tails go first, until half
 * of it is left: all in one write to a spill file, where they are read
 * from, extent after extent, until a checkpoint (or tail_max) takes them to
 * their data files. */
static void test_tail_budget(void) {
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    tctx c;
    ctx_init(&c);
    opt_tail_max = 4000;
    opt_tail_budget = 8192;
    if (!open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0)) goto out;
    int n = 20;
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "/budget/%d", i);
        t_create(&c, name, "", NULL, 0, NULL);
    }
    /* 10000 bytes in all: over the budget, under twice it (where appends
     * would write their own tails). */
    for (int i = 0; i < n; i++) append_filled(&c, i, 500, (unsigned)i);
    store_stats st;
    CHECK(wait_stats(&c, &st, 1, 8192 / 2 + 3 * 500));
    CHECK(st.tail_bytes <= 8192);
    CHECK_EQ_INT(st.spill_writes, 1);
    CHECK_EQ_INT(st.tail_writes, 0);
    /* The oldest went, the newest stayed in memory; none reached a file. */
    CHECK_EQ_INT(spilled_of(&c, 0), 500);
    CHECK_EQ_INT(spilled_of(&c, n - 1), 0);
    int went = 0;
    bool ok = true;
    for (int i = 0; i < n; i++) {
        int64_t sp = spilled_of(&c, i);
        ok = ok && (sp == 0 || sp == 500) && store_written(c.s, c.st[i].id) == 0;
        went += sp == 500;
        ok = ok && read_back_ok(&c, i);
    }
    CHECK(ok);
    CHECK_EQ_INT(st.tail_bytes + 500 * (uint64_t)went, 500 * (uint64_t)n);
    CHECK_EQ_INT(st.spill_bytes, (500 + SPILL_HDR_SIZE) * (uint64_t)went);
    CHECK(all_ranges_ok(&c, 0, 37));

    /* Spilled again: stream 0's chain has two extents; reads walk it and
     * go on into memory. */
    append_filled(&c, 0, 300, 100);
    for (int k = 0; k < 20 && spilled_of(&c, 0) != 800; k++) {
        for (int i = 1; i < n; i++) append_filled(&c, i, 200, (unsigned)(100 + k * n + i));
        wait_stats(&c, &st, 2, 8192);
    }
    CHECK_EQ_INT(spilled_of(&c, 0), 800);
    append_filled(&c, 0, 100, 7);
    CHECK(all_ranges_ok(&c, 0, 29));
    CHECK(range_ok(&c, 0, 499, 2) && range_ok(&c, 0, 799, 2) && range_ok(&c, 0, 0, 900));
    ok = true;
    for (int i = 0; i < n; i++) ok = ok && read_back_ok(&c, i);
    CHECK(ok);

    /* Reaching tail_max with what it spilled: the writer takes everything
     * to the data file in one write, and the chain is gone. */
    uint64_t before = st.tail_writes;
    for (int k = 0; k < 4; k++) append_filled(&c, 0, 800, (unsigned)(200 + k));
    CHECK(wait_written(&c, 0, c.st[0].data.len));
    CHECK_EQ_INT(spilled_of(&c, 0), 0);
    store_get_stats(c.s, &st);
    CHECK_EQ_INT(st.tail_writes, before + 1);
    CHECK(file_exact_ok(&c, 0));

    /* A checkpoint takes every chain to its data file. */
    CHECK_EQ_INT(store_checkpoint(c.s), 0);
    ok = true;
    for (int i = 0; i < n; i++) ok = ok && spilled_of(&c, i) == 0 && file_exact_ok(&c, i);
    CHECK(ok);
    reopen_matches(&c, dir);
out:
    opt_tail_max = opt_tail_budget = 0;
    ctx_free(&c);
    rm_rf(dir);
}

/* Spill files are replaced as they fill, closed once no chain needs them,
 * and gone from disk after a crash; deleting a stream drops its chain. */
static void test_spill_files(void) {
    char dir[64], crash[80];
    make_tmpdir(dir, sizeof dir);
    snprintf(crash, sizeof crash, "%s.crash", dir);
    tctx c;
    ctx_init(&c);
    opt_tail_max = 1 << 20;
    opt_tail_budget = 4096;
    opt_spill_file = 1; /* every batch in a file of its own */
    if (!open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0)) goto out;
    int n = 16;
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "/spill/%d", i);
        t_create(&c, name, "", NULL, 0, NULL);
    }
    store_stats st;
    uint64_t peak = 0;
    for (int round = 0; round < 6; round++) {
        for (int i = 0; i < n; i++) append_filled(&c, i, 400, (unsigned)(round * n + i));
        CHECK(wait_stats(&c, &st, (uint64_t)round + 1, 4096));
        if (st.spill_bytes > peak) peak = st.spill_bytes;
    }
    bool ok = true;
    for (int i = 0; i < n; i++) ok = ok && read_back_ok(&c, i) && all_ranges_ok(&c, i, 211);
    CHECK(ok);
    CHECK(spilled_of(&c, 0) >= 800);
    /* A deleted stream's chain goes with it. */
    CHECK(wait_durable(&c, t_delete(&c, 0)));
    for (int k = 0; k < 2000 && spilled_of(&c, 0) != -1; k++) sleep_ms(2);
    CHECK_EQ_INT(spilled_of(&c, 0), -1);
    ok = true;
    for (int i = 1; i < n; i++) ok = ok && read_back_ok(&c, i);
    CHECK(ok);

    /* The crash image: every byte comes back from the WAL, and no spill
     * file is left in the directory. */
    store_lsn last = t_append(&c, 1, "x", 1, NULL);
    CHECK(wait_durable(&c, last));
    rm_rf(crash);
    CHECK(copy_tree_quiet(c.s, dir, crash));

    /* After the checkpoint only the current file is left open. */
    CHECK(spill_files_open(&c) >= 3);
    CHECK(peak >= 3 * (400 + SPILL_HDR_SIZE));
    CHECK_EQ_INT(store_checkpoint(c.s), 0);
    bool reaped = false;
    for (int k = 0; k < 2000 && !reaped; k++) {
        reaped = spill_files_open(&c) == 1;
        if (!reaped) sleep_ms(2);
    }
    CHECK(reaped);
    store_get_stats(c.s, &st);
    CHECK(st.spill_bytes < peak);
    ok = true;
    for (int i = 1; i < n; i++) ok = ok && file_exact_ok(&c, i);
    CHECK(ok);
    close_store(&c);

    CHECK(open_store(&c, crash, STORE_DURABLE, 0, true, NULL, 0) != NULL);
    if (c.s) {
        CHECK(recovered_matches(&c));
        close_store(&c);
    }
    DIR *d = opendir(crash);
    CHECK(d != NULL);
    for (struct dirent *de; d && (de = readdir(d));) {
        const char *e = de->d_name;
        bool known = !strcmp(e, ".") || !strcmp(e, "..") || !strcmp(e, "catalog") ||
                     !strcmp(e, "wal") || !strcmp(e, "data") || !strcmp(e, "LOCK");
        if (!known) fprintf(stderr, "unexpected %s in %s\n", e, crash);
        CHECK(known);
    }
    if (d) closedir(d);
out:
    opt_tail_max = opt_tail_budget = opt_spill_file = 0;
    ctx_free(&c);
    rm_rf(dir);
    rm_rf(crash);
}

/* A stream whose bytes are all spilled (no tail in memory) appended to in
 * write-through mode (low disk, forced here): its spilled bytes go to the
 * data file first, so the file has no hole where they belong. */
static void test_spill_through(void) {
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    tctx c;
    ctx_init(&c);
    opt_tail_max = 1 << 20;
    opt_tail_budget = 4096;
    if (!open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0)) goto out;
    int n = 16;
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "/wt/%d", i);
        t_create(&c, name, "", NULL, 0, NULL);
    }
    for (int i = 0; i < n; i++) append_filled(&c, i, 400, (unsigned)i);
    store_stats st;
    CHECK(wait_stats(&c, &st, 1, 4096));
    int victim = -1;
    pthread_mutex_lock(&c.s->tails_mu);
    for (int i = 0; i < n && victim < 0; i++) {
        tail_stream *e = tails_find_locked(c.s, c.st[i].id);
        if (e && !e->mem && e->spill.bytes == 400) victim = i;
    }
    c.s->write_through = true;
    pthread_mutex_unlock(&c.s->tails_mu);
    CHECK(victim >= 0);
    if (victim < 0) goto close;
    append_filled(&c, victim, 10, 99);
    pthread_mutex_lock(&c.s->tails_mu);
    c.s->write_through = false;
    pthread_mutex_unlock(&c.s->tails_mu);
    CHECK_EQ_INT(spilled_of(&c, victim), 0);
    CHECK(file_exact_ok(&c, victim));
    CHECK(read_back_ok(&c, victim));
    CHECK_EQ_INT(store_checkpoint(c.s), 0);
close:
    reopen_matches(&c, dir);
out:
    opt_tail_max = opt_tail_budget = 0;
    ctx_free(&c);
    rm_rf(dir);
}

/* A checkpoint writes every tail out before it syncs; bytes appended after
 * it live only in tails and the WAL, and a crash (the directory copied
 * while the store runs) must get them back from the WAL byte for byte.
 * Run with a few streams, and with more than SYNCFS_FILES (recovery then
 * syncs the whole file system instead of each file). */
static int tail_crash_streams;

static void test_tail_crash(void) {
    char dir[64], crash[80], path[512];
    make_tmpdir(dir, sizeof dir);
    snprintf(crash, sizeof crash, "%s.crash", dir);
    tctx c;
    ctx_init(&c);
    opt_tail_max = 1 << 20;
    opt_tail_budget = 64 << 20;
    if (!open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0)) goto out;
    int n = tail_crash_streams;
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "/crash/%d", i);
        t_create(&c, name, "m0", "head", 4, NULL);
    }
    for (int k = 0; k < 10 * n; k++) {
        char meta[16];
        snprintf(meta, sizeof meta, "m%d", k);
        uint8_t data[700];
        size_t len = 1 + (size_t)(k * 53) % sizeof data;
        fill(data, len, (unsigned)k);
        t_append(&c, k % n, data, len, k % 3 ? NULL : meta);
    }
    bool in_mem = true;
    for (int i = 0; i < n; i++) in_mem = in_mem && store_written(c.s, c.st[i].id) == 0;
    CHECK(in_mem);
    CHECK_EQ_INT(store_checkpoint(c.s), 0);
    uint64_t at_ckpt[MAXS];
    bool ok = true;
    for (int i = 0; i < n; i++) {
        ok = ok && file_exact_ok(&c, i);
        at_ckpt[i] = c.st[i].data.len;
    }
    CHECK(ok);
    store_stats st;
    store_get_stats(c.s, &st);
    CHECK_EQ_INT(st.tail_bytes, 0);

    store_lsn last = 0;
    for (int k = 0; k < 15 * n; k++) {
        uint8_t data[900];
        size_t len = 1 + (size_t)(k * 71) % sizeof data;
        fill(data, len, (unsigned)(k + 100));
        last = t_append(&c, k % n, data, len, k % 5 ? NULL : "after");
    }
    int late = t_create(&c, "/crash/late", "L", "late bytes", 10, NULL);
    last = t_append(&c, late, "and more", 8, NULL);
    CHECK(wait_durable(&c, last));
    rm_rf(crash);
    CHECK(copy_tree_quiet(c.s, dir, crash));
    /* The image really lacks the tails: its files stop at the checkpoint. */
    ok = true;
    for (int i = 0; i < n; i++) {
        data_path(path, sizeof path, crash, c.st[i].id);
        ok = ok && file_size(path) == (long)at_ckpt[i] && at_ckpt[i] < c.st[i].data.len;
    }
    data_path(path, sizeof path, crash, c.st[late].id);
    CHECK(ok && file_size(path) == 0);
    close_store(&c);

    /* The cleanly closed original and the crash image recover the same. */
    CHECK(open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0) != NULL);
    if (!c.s) goto out;
    CHECK(recovered_matches(&c));
    close_store(&c);
    CHECK(open_store(&c, crash, STORE_DURABLE, 0, true, NULL, 0) != NULL);
    if (!c.s) goto out;
    CHECK(recovered_matches(&c));
    CHECK_EQ_INT(c.nrec, n + 1);
    append_filled(&c, late, 100, 9);
    close_store(&c);
    CHECK(open_store(&c, crash, STORE_DURABLE, 0, true, NULL, 0) != NULL);
    if (c.s) {
        CHECK(recovered_matches(&c));
        close_store(&c);
    }
out:
    opt_tail_max = opt_tail_budget = 0;
    ctx_free(&c);
    rm_rf(dir);
    rm_rf(crash);
}

/* Every checkpoint writes out each stream appended to since the one
 * before: an append marks its stream dirty once per checkpoint (the mark
 * lives in the stream's tail), and a checkpoint that gave its dirty set
 * back must still have those streams written by the next one. */
static void test_checkpoint_rounds(void) {
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    tctx c;
    ctx_init(&c);
    opt_tail_max = 1 << 20;
    opt_tail_budget = 64 << 20;
    if (!open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0)) goto out;
    enum { N = 6 };
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "/rounds/%d", i);
        t_create(&c, name, "m", "", 0, NULL);
    }
    for (int round = 0; round < 4; round++) {
        /* Round 2 leaves streams 0 and 1 alone: they stay as they were. */
        for (int k = 0; k < 3 * N; k++) {
            int i = k % N;
            if (round == 2 && i < 2) continue;
            uint8_t data[300];
            size_t len = 1 + (size_t)(k * 37 + round * 11) % sizeof data;
            fill(data, len, (unsigned)(round * 1000 + k));
            t_append(&c, i, data, len, NULL);
        }
        bool held = true;
        for (int i = 0; i < N; i++)
            held = held && store_written(c.s, c.st[i].id) < c.st[i].data.len;
        CHECK(round == 2 || held);
        CHECK_EQ_INT(store_checkpoint(c.s), 0);
        bool ok = true;
        for (int i = 0; i < N; i++) ok = ok && file_exact_ok(&c, i);
        CHECK(ok);
    }
    reopen_matches(&c, dir);
out:
    opt_tail_max = opt_tail_budget = 0;
    ctx_free(&c);
    rm_rf(dir);
}

/* Deleting a stream drops its tail, also while a write-out of it runs. */
static void test_tail_delete(void) {
    char dir[64], path[512];
    make_tmpdir(dir, sizeof dir);
    tctx c;
    ctx_init(&c);
    opt_tail_max = 1000;
    opt_tail_budget = 1 << 20;
    if (!open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0)) goto out;
    int keep = t_create(&c, "/td/keep", "", "kept", 4, NULL);
    int a = t_create(&c, "/td/a", "", NULL, 0, NULL);
    append_filled(&c, a, 600, 1);
    store_stats st;
    store_get_stats(c.s, &st);
    CHECK_EQ_INT(st.tail_bytes, 604);
    store_lsn lsn = t_delete(&c, a);
    CHECK(lsn > 0);
    /* Gone for readers and appends at once... */
    uint8_t b[8];
    errno = 0;
    CHECK_EQ_INT(store_read(c.s, c.st[a].id, 0, b, 8), -1);
    CHECK_EQ_INT(errno, ENOENT);
    CHECK_EQ_INT(store_written(c.s, c.st[a].id), 0);
    errno = 0;
    CHECK_EQ_INT(store_append(c.s, c.st[a].id, 600, b, 8, NULL, 0), 0);
    CHECK_EQ_INT(errno, ENOENT);
    /* ...its bytes once the delete is durable. */
    CHECK(wait_durable(&c, lsn));
    CHECK(wait_tail_bytes(&c, 4));
    /* The flusher drops the deleted stream's file (under files_mu) after
     * reporting it durable: a record made durable after that one proves it
     * is done, before this test holds files_mu below (else the flusher
     * waits on it and the next delete never becomes durable). */
    store_lsn sync;
    t_create(&c, "/td/sync", "", NULL, 0, &sync);
    CHECK(sync > 0 && wait_durable(&c, sync));

    /* Deleted in flight: the write-out finishes into the doomed file and
     * frees what it held. */
    int f = t_create(&c, "/td/flying", "", NULL, 0, NULL);
    data_path(path, sizeof path, dir, c.st[f].id);
    pthread_mutex_lock(&c.s->files_mu);
    append_filled(&c, f, 1200, 2);
    bool flying = wait_in_flight(&c, f);
    append_filled(&c, f, 100, 3);
    lsn = t_delete(&c, f);
    bool forgotten = lsn > 0 && wait_durable(&c, lsn) && wait_tail_bytes(&c, 4 + 1200);
    pthread_mutex_unlock(&c.s->files_mu);
    CHECK(flying);
    CHECK(forgotten); /* the flight stays until it lands */
    CHECK(wait_tail_bytes(&c, 4));
    for (int k = 0; k < 200 && file_size(path) >= 0; k++) sleep_ms(5);
    CHECK_EQ_INT(file_size(path), -1);
    CHECK(read_back_ok(&c, keep));
    close_store(&c);
    CHECK(open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0) != NULL);
    if (c.s) {
        CHECK_EQ_INT(c.nrec, 2); /* keep and sync */
        CHECK(recovered_matches(&c));
        close_store(&c);
    }
out:
    opt_tail_max = opt_tail_budget = 0;
    ctx_free(&c);
    rm_rf(dir);
}

/* A stream the checkpoint counts, deleted just after its cut: until the
 * delete is durable, the checkpoint must still write the stream's tail to
 * its file, since a crash before then recovers the stream from the new
 * catalog. The crash image is the directory after the checkpoint, with the
 * delete record (the only one after the cut) never written. */
static void test_delete_after_cut(void) {
    char dir[64], crash[80], segs[8][512];
    make_tmpdir(dir, sizeof dir);
    snprintf(crash, sizeof crash, "%s.crash", dir);
    tctx c;
    ctx_init(&c);
    opt_tail_max = 1 << 20;
    opt_tail_budget = 1 << 20;
    if (!open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0)) goto out;
    int keep = t_create(&c, "/dc/keep", "", "kept", 4, NULL);
    int x = t_create(&c, "/dc/x", "mx", NULL, 0, NULL);
    append_filled(&c, x, 600, 5);
    CHECK(wait_durable(&c, t_append(&c, keep, "more", 4, NULL)));
    CHECK_EQ_INT(store_written(c.s, c.st[x].id), 0);

    pthread_mutex_lock(&c.mu);
    c.delete_in_snapshot = x;
    c.holding = true;
    c.hold_after = c.durable;
    pthread_mutex_unlock(&c.mu);
    CHECK_EQ_INT(store_checkpoint(c.s), 0);
    CHECK(c.delete_lsn > 0);
    rm_rf(crash);
    CHECK(copy_tree(dir, crash));
    pthread_mutex_lock(&c.mu);
    c.holding = false;
    pthread_cond_broadcast(&c.cond);
    pthread_mutex_unlock(&c.mu);
    CHECK(wait_durable(&c, c.delete_lsn));

    size_t nseg = wal_files(crash, segs, 8);
    CHECK(nseg >= 1);
    if (nseg >= 1) {
        int fd = open(segs[nseg - 1], O_WRONLY);
        CHECK(fd >= 0 && ftruncate(fd, 0) == 0);
        if (fd >= 0) close(fd);
    }
    close_store(&c);

    /* The original: the delete is durable, the stream gone. */
    CHECK(open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0) != NULL);
    if (c.s) {
        CHECK_EQ_INT(c.nrec, 1);
        CHECK(recovered_matches(&c));
        close_store(&c);
    }
    /* The crash image: the stream is there, every byte of it. */
    c.st[x].live = true;
    CHECK(open_store(&c, crash, STORE_DURABLE, 0, true, NULL, 0) != NULL);
    if (c.s) {
        CHECK_EQ_INT(c.nrec, 2);
        CHECK(recovered_matches(&c));
        close_store(&c);
    }
out:
    opt_tail_max = opt_tail_budget = 0;
    ctx_free(&c);
    rm_rf(dir);
    rm_rf(crash);
}

/* With less free space than the budget needs (here: a budget no disk
 * has), appends are written to the file before they are logged. */
static void test_write_through(void) {
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    tctx c;
    ctx_init(&c);
    opt_tail_budget = 1ull << 50;
    log_threshold = LOG_ERROR; /* the switch to write-through is logged */
    bool opened = open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0) != NULL;
    log_threshold = LOG_WARN;
    CHECK(opened);
    if (!opened) goto out;
    int a = t_create(&c, "/wt/a", "", "created ", 8, NULL);
    CHECK(file_exact_ok(&c, a));
    bool ok = true;
    for (int k = 0; k < 20; k++) {
        append_filled(&c, a, 100 + (size_t)k, (unsigned)k);
        ok = ok && file_exact_ok(&c, a);
    }
    CHECK(ok);
    store_stats st;
    store_get_stats(c.s, &st);
    CHECK_EQ_INT(st.tail_bytes, 0);
    CHECK_EQ_INT(st.tail_writes, 0);
    close_store(&c);
    log_threshold = LOG_ERROR;
    CHECK(open_store(&c, dir, STORE_DURABLE, 0, true, NULL, 0) != NULL);
    log_threshold = LOG_WARN;
    if (c.s) {
        CHECK(recovered_matches(&c));
        close_store(&c);
    }
out:
    opt_tail_budget = 0;
    ctx_free(&c);
    rm_rf(dir);
}

/* ---- preallocated WAL segments ---- */

static bool spare_ready(tctx *c) {
    for (int k = 0; k < 5000; k++) {
        pthread_mutex_lock(&c->s->mu);
        bool ready = c->s->spare == SPARE_READY;
        pthread_mutex_unlock(&c->s->mu);
        if (ready) return true;
        sleep_ms(2);
    }
    return false;
}

/* The segment's records end where its zeros begin (a preallocated one), or
 * at its end. */
static bool segment_shape(const char *path, size_t *valid, size_t *size) {
    buf img;
    buf_init(&img);
    bool ok = read_file(path, &img);
    *size = img.len;
    *valid = ok ? store_wal_scan(img.data, img.len, NULL, NULL, NULL) : 0;
    for (size_t i = *valid; ok && i < img.len; i++)
        if (img.data[i]) ok = false;
    buf_free(&img);
    return ok;
}

#define PA_CKPT (256u << 10)
#define PA_SEG (320u << 10) /* 1.25 x PA_CKPT */

static void test_prealloc(void) {
    char dir[64], crash[80], path[512], segs[16][512];
    make_tmpdir(dir, sizeof dir);
    snprintf(crash, sizeof crash, "%s.crash", dir);
    tctx c;
    ctx_init(&c);
    buf img;
    buf_init(&img);
    if (!open_store(&c, dir, STORE_DURABLE, PA_CKPT, true, NULL, 0)) goto out;
    CHECK(spare_ready(&c));
    snprintf(path, sizeof path, "%s/" WAL_SPARE_PATH, dir);
    CHECK_EQ_INT(file_size(path), PA_SEG);
    /* The segment opened at startup is not preallocated: the first batch
     * moves on to the spare. */
    int a = t_create(&c, "/pa/a", "m", "first", 5, NULL);
    store_lsn lsn = t_append(&c, a, "-second", 7, "m2");
    CHECK(wait_durable(&c, lsn));
    size_t n = wal_files(dir, segs, 16), valid = 0, size = 0;
    CHECK(n >= 1);
    CHECK(n >= 1 && segment_shape(segs[n - 1], &valid, &size));
    CHECK_EQ_INT(size, PA_SEG);
    CHECK(valid > 0 && valid < size);
    store_stats st;
    store_get_stats(c.s, &st);
    CHECK(st.spares >= 1);

    /* Crash image with a zero-filled segment end and a leftover spare that
     * holds a valid record: recovery must not replay it. */
    CHECK(spare_ready(&c));
    rm_rf(crash);
    CHECK(copy_tree_quiet(c.s, dir, crash));
    buf_reset(&img);
    store_rec evil = {.type = STORE_REC_APPEND, .lsn = lsn + 1, .id = c.st[a].id, .pos = 12,
                      .data = (const uint8_t *)"EVIL", .data_len = 4};
    wal_encode(&img, &evil);
    snprintf(path, sizeof path, "%s/" WAL_SPARE_PATH, crash);
    CHECK(write_file(path, img.data, img.len));
    close_store(&c);
    CHECK(open_store(&c, crash, STORE_DURABLE, PA_CKPT, true, NULL, 0) != NULL);
    if (!c.s) goto out;
    CHECK(recovered_matches(&c));
    /* LSNs go on right after the last record logged, and the spare is
     * replaced by a zero-filled one. */
    lsn = t_append(&c, a, "-third", 6, NULL);
    CHECK_EQ_INT(lsn, evil.lsn);
    CHECK(wait_durable(&c, lsn));
    CHECK(spare_ready(&c));
    CHECK(segment_shape(path, &valid, &size) && valid == 0 && size == PA_SEG);
    rm_rf(dir);
    CHECK(copy_tree(crash, dir));
    close_store(&c);
    CHECK(open_store(&c, dir, STORE_DURABLE, PA_CKPT, true, NULL, 0) != NULL);
    if (!c.s) goto out;
    CHECK(recovered_matches(&c));

    /* A clean close rotates into the spare: the next open keeps that empty
     * preallocated segment and writes it from offset 0. */
    CHECK(spare_ready(&c));
    close_store(&c);
    n = wal_files(dir, segs, 16);
    CHECK_EQ_INT(n, 1);
    CHECK(n == 1 && segment_shape(segs[0], &valid, &size) && valid == 0 && size == PA_SEG);
    CHECK(open_store(&c, dir, STORE_DURABLE, PA_CKPT, true, NULL, 0) != NULL);
    if (!c.s) goto out;
    CHECK(recovered_matches(&c));
    lsn = t_append(&c, a, "-fourth", 7, "m4");
    CHECK(wait_durable(&c, lsn));
    CHECK(segment_shape(segs[0], &valid, &size) && valid > 0 && size == PA_SEG);
    rm_rf(crash);
    CHECK(copy_tree_quiet(c.s, dir, crash));
    close_store(&c);
    CHECK(open_store(&c, crash, STORE_DURABLE, PA_CKPT, true, NULL, 0) != NULL);
    if (c.s) {
        CHECK(recovered_matches(&c));
        close_store(&c);
    }
out:
    buf_free(&img);
    ctx_free(&c);
    rm_rf(dir);
    rm_rf(crash);
}

/* Without checkpoints the log spans many segments; each filled one ends in
 * zeros where the flusher moved on to the spare, and recovery reads on
 * through all of them. */
static void test_prealloc_segments(void) {
    char dir[64], crash[80], segs[64][512];
    make_tmpdir(dir, sizeof dir);
    snprintf(crash, sizeof crash, "%s.crash", dir);
    tctx c;
    ctx_init(&c);
    if (!open_store(&c, dir, STORE_DURABLE, 64 << 10, false, NULL, 0)) goto out;
    int a = t_create(&c, "/ps/a", "m", NULL, 0, NULL);
    int b = t_create(&c, "/ps/b", "m", NULL, 0, NULL);
    for (int k = 0; k < 400; k++) {
        if (k % 40 == 0) spare_ready(&c);
        uint8_t data[1000];
        fill(data, sizeof data, (unsigned)k);
        store_lsn lsn = t_append(&c, k % 2 ? b : a, data, sizeof data, k % 7 ? NULL : "m7");
        if (k % 10 == 9) wait_durable(&c, lsn);
    }
    store_lsn lsn = t_meta(&c, a, "last");
    CHECK(wait_durable(&c, lsn));
    size_t n = wal_files(dir, segs, 64), zero_ended = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        size_t valid, size;
        if (segment_shape(segs[i], &valid, &size) && valid < size) zero_ended++;
    }
    CHECK(n >= 4);
    CHECK(zero_ended >= 2);
    rm_rf(crash);
    CHECK(copy_tree_quiet(c.s, dir, crash));
    close_store(&c);
    CHECK(open_store(&c, crash, STORE_DURABLE, 64 << 10, false, NULL, 0) != NULL);
    if (c.s) {
        CHECK(recovered_matches(&c));
        CHECK_MEM_STR(c.rec[0].meta.data, c.rec[0].meta.len, "last");
        close_store(&c);
    }
out:
    ctx_free(&c);
    rm_rf(dir);
    rm_rf(crash);
}

/* Checkpoints keep a covered segment as the next spare instead of writing
 * a new one full of zeros, so a live segment holds an older segment's
 * bytes past its last record. Recovery reads on up to the last record and
 * not a byte further: a record placed right there counts only when sealed
 * with the segment's own salt. */
static void test_recycle(void) {
    char dir[64], crash[80], pristine[96], segs[16][512];
    make_tmpdir(dir, sizeof dir);
    snprintf(crash, sizeof crash, "%s.crash", dir);
    snprintf(pristine, sizeof pristine, "%s.pristine", dir);
    tctx c;
    ctx_init(&c);
    buf img;
    buf_init(&img);
    if (!open_store(&c, dir, STORE_DURABLE, PA_CKPT, true, NULL, 0)) goto out;
    int a = t_create(&c, "/rc/a", "m", NULL, 0, NULL);
    int b = t_create(&c, "/rc/b", "m", NULL, 0, NULL);
    store_stats st;
    store_get_stats(c.s, &st);
    for (int k = 0; k < 4000 && st.recycled < 3; k++) {
        uint8_t data[1000];
        fill(data, sizeof data, (unsigned)k);
        store_lsn lsn = t_append(&c, k % 2 ? b : a, data, sizeof data, k % 5 ? NULL : "m5");
        if (k % 10 == 9) wait_durable(&c, lsn);
        store_get_stats(c.s, &st);
    }
    store_lsn lsn = t_meta(&c, b, "last");
    CHECK(wait_durable(&c, lsn));
    CHECK(st.recycled >= 3);
    /* Zero-filled spares only at startup (the segment opened then is not
     * preallocated and hands over to one at once); recycled ones after. */
    CHECK(st.spares <= 2);
    size_t n = wal_files(dir, segs, 16), old_tail = 0;
    for (size_t i = 0; i < n; i++) {
        size_t valid, size;
        if (!segment_shape(segs[i], &valid, &size) && valid > WAL_SEG_HDR) old_tail++;
    }
    CHECK(old_tail >= 1);
    rm_rf(pristine);
    CHECK(copy_tree_quiet(c.s, dir, pristine));
    close_store(&c);

    /* A clean close rotates into the spare, a recycled segment with an
     * older segment's header and records: the next open writes it from
     * its start, and the one after that finds only the new records. */
    CHECK(open_store(&c, dir, STORE_DURABLE, PA_CKPT, true, NULL, 0) != NULL);
    if (!c.s) goto out;
    CHECK(recovered_matches(&c));
    uint8_t more[300];
    fill(more, sizeof more, 99);
    CHECK(wait_durable(&c, t_append(&c, a, more, sizeof more, "after")));
    close_store(&c);
    CHECK(open_store(&c, dir, STORE_DURABLE, PA_CKPT, true, NULL, 0) != NULL);
    if (!c.s) goto out;
    CHECK(recovered_matches(&c));
    close_store(&c);
    c.st[a].data.len -= sizeof more;
    buf_reset(&c.st[a].meta);
    buf_append(&c.st[a].meta, "m5", 2);

    /* After the last record: nothing, a record unsealed (as a client could
     * have written it into its data), sealed with another salt (an older
     * segment's), or with the segment's own. */
    n = wal_files(pristine, segs, 16);
    CHECK(n >= 1);
    if (n < 1) goto out;
    /* the segment written last: the highest whose header names it (a
     * recycled spare keeps an older segment's header, and recovery passes
     * over it; its name may still be the highest) */
    size_t tail = n;
    for (size_t i = n; i-- > 0 && tail == n;) {
        buf_reset(&img);
        wal_seg_hdr h;
        const char *base = strrchr(segs[i], '/') + 1;
        if (read_file(segs[i], &img) && wal_seg_hdr_decode(img.data, img.len, &h) && h.seg == strtoull(base, NULL, 16))
            tail = i;
    }
    CHECK(tail < n);
    if (tail == n) goto out;
    char last_seg[512];
    snprintf(last_seg, sizeof last_seg, "%s/wal/%s", crash, strrchr(segs[tail], '/') + 1);
    for (int k = 0; k < 4; k++) {
        rm_rf(crash);
        CHECK(copy_tree(pristine, crash));
        buf_reset(&img);
        CHECK(read_file(last_seg, &img));
        wal_seg_hdr h;
        CHECK(wal_seg_hdr_decode(img.data, img.len, &h));
        size_t end = store_wal_scan(img.data, img.len, NULL, NULL, NULL);
        CHECK(end > WAL_SEG_HDR);
        if (k > 0) {
            store_rec evil = {.type = STORE_REC_APPEND, .lsn = lsn + 1000, .id = c.st[a].id,
                              .pos = c.st[a].data.len, .data = (const uint8_t *)"EVIL",
                              .data_len = 4};
            buf rec;
            buf_init(&rec);
            wal_encode(&rec, &evil);
            wal_seal(rec.data, rec.len, k == 1 ? 0 : k == 2 ? h.salt ^ 0x80u : h.salt);
            if (img.len < end + rec.len) {
                buf_reserve(&img, end + rec.len - img.len);
                img.len = end + rec.len;
            }
            memcpy(img.data + end, rec.data, rec.len);
            buf_free(&rec);
            CHECK(write_file(last_seg, img.data, img.len));
        }
        if (k == 3) buf_append(&c.st[a].data, "EVIL", 4);
        CHECK(open_store(&c, crash, STORE_DURABLE, PA_CKPT, true, NULL, 0) != NULL);
        if (!c.s) break;
        CHECK(recovered_matches(&c));
        close_store(&c);
        if (k == 3) c.st[a].data.len -= 4;
    }
out:
    buf_free(&img);
    ctx_free(&c);
    rm_rf(dir);
    rm_rf(crash);
    rm_rf(pristine);
}

/* ---- kill -9 ---- */

/* Child -> parent messages. */
typedef struct kmsg {
    uint32_t kind; /* 1 = appended, 2 = durable */
    uint32_t stream;
    uint64_t lsn;
    uint64_t end; /* appended: stream length after the append */
} kmsg;

#define KSTREAMS 4

/* Stream k's byte at offset i. Any prefix is valid, torn bytes are not. */
static uint8_t kbyte(int k, uint64_t i) { return (uint8_t)(k * 41 + i * 13 + (i >> 7)); }

static size_t kchunk(uint64_t end) { return 1 + (size_t)((end * 2654435761u) % 700); }

typedef struct kchild {
    pthread_mutex_t mu;
    int fd;
    store *s;
    uint64_t id[KSTREAMS];
    uint64_t len[KSTREAMS];
    char meta[KSTREAMS][32];
    int n;
} kchild;

static void k_send(kchild *k, const kmsg *m) {
    if (io_write_full(k->fd, m, sizeof *m) < 0) _exit(3);
}

static void k_durable(void *ctx, store_lsn lsn) {
    kmsg m = {.kind = 2, .lsn = lsn};
    k_send(ctx, &m);
}

static void k_recover(void *ctx, uint64_t id, const uint8_t *name, size_t name_len,
                      const uint8_t *meta, size_t meta_len, uint64_t length) {
    kchild *k = ctx;
    (void)meta;
    (void)meta_len;
    if (k->n == KSTREAMS || name_len != 3) _exit(4);
    int i = name[2] - '0';
    k->id[i] = id;
    k->len[i] = length;
    k->n++;
}

static void k_snapshot(void *ctx, store_snapshot *snap) {
    kchild *k = ctx;
    pthread_mutex_lock(&k->mu);
    store_snapshot_begin(snap);
    for (int i = 0; i < KSTREAMS; i++) {
        char name[4] = {'/', 'k', (char)('0' + i), 0};
        store_snapshot_add(snap, k->id[i], (const uint8_t *)name, 3, (const uint8_t *)k->meta[i],
                           strlen(k->meta[i]), k->len[i]);
    }
    pthread_mutex_unlock(&k->mu);
}

typedef struct kwriter {
    kchild *k;
    int i;
} kwriter;

static void *k_writer(void *p) {
    kwriter *w = p;
    kchild *k = w->k;
    uint8_t data[800];
    for (;;) {
        pthread_mutex_lock(&k->mu);
        uint64_t pos = k->len[w->i];
        size_t n = kchunk(pos);
        for (size_t j = 0; j < n; j++) data[j] = kbyte(w->i, pos + j);
        char meta[32];
        snprintf(meta, sizeof meta, "n=%llu", (unsigned long long)(pos + n));
        store_lsn lsn =
            store_append(k->s, k->id[w->i], pos, data, n, (const uint8_t *)meta, strlen(meta));
        if (lsn == 0) _exit(5);
        k->len[w->i] = pos + n;
        memcpy(k->meta[w->i], meta, sizeof meta);
        pthread_mutex_unlock(&k->mu);
        kmsg m = {.kind = 1, .stream = (uint32_t)w->i, .lsn = lsn, .end = pos + n};
        k_send(k, &m);
    }
    return NULL;
}

static void k_child(const char *dir, int fd) {
    kchild k;
    memset(&k, 0, sizeof k);
    pthread_mutex_init(&k.mu, NULL);
    k.fd = fd;
    store_options opt = {.dir = dir, .checkpoint_bytes = 64 << 10, .ctx = &k,
                         .on_durable = k_durable, .on_recover = k_recover,
                         .snapshot = k_snapshot};
    char err[256];
    k.s = store_open(&opt, err, sizeof err);
    if (!k.s) _exit(6);
    if (k.n == 0) {
        for (int i = 0; i < KSTREAMS; i++) {
            char name[4] = {'/', 'k', (char)('0' + i), 0};
            pthread_mutex_lock(&k.mu);
            k.id[i] = store_id_next(k.s);
            snprintf(k.meta[i], sizeof k.meta[i], "n=0");
            store_lsn lsn = store_create(k.s, k.id[i], (const uint8_t *)name, 3,
                                         (const uint8_t *)"n=0", 3, NULL, 0);
            pthread_mutex_unlock(&k.mu);
            if (!lsn) _exit(7);
        }
    } else {
        for (int i = 0; i < KSTREAMS; i++)
            snprintf(k.meta[i], sizeof k.meta[i], "n=%llu", (unsigned long long)k.len[i]);
    }
    pthread_t th[KSTREAMS];
    kwriter w[KSTREAMS];
    for (int i = 0; i < KSTREAMS; i++) {
        w[i] = (kwriter){&k, i};
        pthread_create(&th[i], NULL, k_writer, &w[i]);
    }
    for (;;) pause();
}

static void test_kill9(void) {
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    int rounds_ok = 0;
    uint64_t total_checked = 0;
    for (int round = 0; round < 4; round++) {
        int p[2];
        if (pipe(p) < 0) break;
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            k_child(dir, p[1]);
            _exit(0);
        }
        close(p[1]);
        /* Collect reports for a while, kill, then drain what was sent. */
        uint64_t end_at_durable[KSTREAMS] = {0};
        kmsg *msgs = NULL;
        size_t nmsgs = 0, cap = 0;
        store_lsn durable = 0, first_append = 0;
        int run_ms = 150 + rand() % 600;
        struct timespec t0, now;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        bool killed = false;
        buf in;
        buf_init(&in);
        for (;;) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            long ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
            /* Not before an append is durable (and with it the streams'
             * creates): on a loaded machine the child may not have got
             * that far. */
            bool started = first_append && durable >= first_append;
            if (!killed && ms >= run_ms && (started || ms >= 30000)) {
                kill(pid, SIGKILL);
                killed = true;
            }
            struct pollfd pf = {.fd = p[0], .events = POLLIN};
            if (poll(&pf, 1, 10) <= 0) continue;
            buf_reserve(&in, 65536);
            ssize_t r = read(p[0], in.data + in.len, in.cap - in.len);
            if (r <= 0) break;
            in.len += (size_t)r;
            size_t used = 0;
            for (; in.len - used >= sizeof(kmsg); used += sizeof(kmsg)) {
                kmsg m;
                memcpy(&m, in.data + used, sizeof m);
                if (m.kind == 2 && m.lsn > durable) durable = m.lsn;
                if (m.kind == 1) {
                    if (!first_append) first_append = m.lsn;
                    if (nmsgs == cap) {
                        cap = cap ? cap * 2 : 1024;
                        msgs = xrealloc(msgs, cap * sizeof *msgs);
                    }
                    msgs[nmsgs++] = m;
                }
            }
            buf_consume(&in, used);
        }
        buf_free(&in);
        close(p[0]);
        int status;
        waitpid(pid, &status, 0);
        bool was_killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
        for (size_t i = 0; i < nmsgs; i++)
            if (msgs[i].lsn <= durable && msgs[i].end > end_at_durable[msgs[i].stream])
                end_at_durable[msgs[i].stream] = msgs[i].end;
        free(msgs);

        /* Recover: every append reported durable is there, byte for byte,
         * with the meta written in the same record; nothing torn. */
        tctx c;
        ctx_init(&c);
        bool ok = was_killed && open_store(&c, dir, STORE_DURABLE, 0, false, NULL, 0) != NULL;
        ok = ok && c.nrec == KSTREAMS;
        for (size_t r = 0; ok && r < c.nrec; r++) {
            trec *t = &c.rec[r];
            int i = t->name.data[2] - '0';
            char want_meta[32];
            snprintf(want_meta, sizeof want_meta, "n=%llu", (unsigned long long)t->length);
            if (t->length < end_at_durable[i] || t->meta.len != strlen(want_meta) ||
                memcmp(t->meta.data, want_meta, t->meta.len) != 0) {
                fprintf(stderr, "kill9: stream %d length %llu, durable end %llu\n", i,
                        (unsigned long long)t->length, (unsigned long long)end_at_durable[i]);
                ok = false;
                break;
            }
            /* The length must fall on an append boundary. */
            uint64_t b = 0;
            while (b < t->length) b += kchunk(b);
            if (b != t->length) ok = false;
            store_file *f = store_file_acquire(c.s, t->id);
            uint8_t *got = xmalloc(t->length + 1);
            struct stat st;
            ok = ok && f && fstat(store_file_fd(f), &st) == 0 &&
                 (uint64_t)st.st_size == t->length &&
                 pread(store_file_fd(f), got, t->length, 0) == (ssize_t)t->length;
            for (uint64_t j = 0; ok && j < t->length; j++)
                if (got[j] != kbyte(i, j)) ok = false;
            free(got);
            if (f) store_file_release(c.s, f);
            total_checked += end_at_durable[i];
        }
        if (c.s) close_store(&c);
        ctx_free(&c);
        if (ok) rounds_ok++;
        else fprintf(stderr, "kill9: round %d failed (durable lsn %llu)\n", round,
                     (unsigned long long)durable);
    }
    CHECK_EQ_INT(rounds_ok, 4);
    CHECK(total_checked > 0);
    fprintf(stderr, "kill9: %llu durable bytes verified over 4 kills\n",
            (unsigned long long)total_checked);
    rm_rf(dir);
}

static void run(const char *name, void (*fn)(void)) {
    const char *only = getenv("STORE_TEST_ONLY");
    if (only && strcmp(only, name) != 0) return;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fn();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (getenv("STORE_TEST_TIMES"))
        fprintf(stderr, "%s: %.0f ms\n", name,
                (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    log_threshold = LOG_WARN;
    run("wal_format", test_wal_format);
    run("basic", test_basic);
    run("durable_reports", test_durable_reports);
    run("group_commit", test_group_commit);
    run("delete", test_delete);
    run("checkpoint", test_checkpoint);
    run("checkpoint_concurrent", test_checkpoint_concurrent);
    log_threshold = LOG_ERROR; /* the torn-tail warnings are expected */
    run("torn_tail", test_torn_tail);
    run("data_repair", test_data_repair);
    log_threshold = LOG_WARN;
    run("dir_guard", test_dir_guard);
    run("fd_cache", test_fd_cache);
    run("write_failure", test_write_failure);
    run("no_room", test_no_room);
    run("tail_reads", test_tail_reads);
    run("tail_budget", test_tail_budget);
    run("spill_files", test_spill_files);
    run("spill_through", test_spill_through);
    run("delete_after_cut", test_delete_after_cut);
    tail_crash_streams = 4;
    run("tail_crash", test_tail_crash);
    tail_crash_streams = SYNCFS_FILES + 36;
    run("tail_crash (many streams)", test_tail_crash);
    run("checkpoint_rounds", test_checkpoint_rounds);
    run("tail_delete", test_tail_delete);
    run("write_through", test_write_through);
    run("prealloc", test_prealloc);
    run("prealloc_segments", test_prealloc_segments);
    run("recycle", test_recycle);
    run("kill9", test_kill9);
    return check_summary("test_store");
}
