/* tail.c — write-behind: appended bytes wait in memory and reach the data
 * files later, many appends to one pwrite.
 *
 * Writing each append to its data file on the caller's thread cost an
 * ext4 write (and mtime update) per append, and with more streams than the
 * descriptor cache holds, an open and close too. So an append only copies
 * its bytes into the stream's tail here, under tails_mu; the WAL record
 * carries the same bytes, so durability never depends on the data files
 * being written (recovery rewrites them from the WAL).
 *
 * A write-out moves the tail "in flight" (appends go on into a new tail,
 * readers still find the bytes), pwrite()s it with no lock held, and only
 * then advances `written` and frees it: `written` only grows, and every byte
 * below it is in the file. Tails are written out
 *   - by the writer thread, when one (with what it spilled) reaches tail_max
 *     bytes;
 *   - by the writer thread, when all of them together pass tail_budget:
 *     then the least recently appended go until about half the budget is
 *     left (those are least likely to grow into a bigger write). They go to
 *     a spill file (spill.c), up to SPILL_BATCH at a time, and stay there,
 *     still read from there, until one of the other write-outs takes them
 *     to the data file; where spilling is not possible, each goes to its
 *     data file;
 *   - by the checkpoint, for each stream it covers, before the fdatasync
 *     (tails_sync), so everything the catalog covers is in synced files;
 *   - by an appending thread itself, for its own stream, once the tails
 *     hold twice the budget: the writer is not keeping up, and appends slow
 *     down to the old write-through pace instead of growing memory;
 *   - at store_close.
 *
 * Write-behind needs free disk space: bytes acknowledged from the WAL must
 * still find room in their data files, or recovery could not rebuild them.
 * While the file system has less than 4 x tail_budget free, plus what the
 * spill files hold for data files (checked at open and by the writer thread
 * each time it wakes, at least once a second), appends write through
 * instead, as before: the data goes to the file on the caller's thread
 * before the record is logged, so a full disk fails the append and nothing
 * is acknowledged that has no room; and every spilled stream is queued for
 * its data file while there is room. (Space another process takes faster
 * than that can still make a write-out fail: the store then stops taking
 * writes, and the WAL still has every acknowledged byte.)
 *
 * A failed write-out of a live stream is fatal for the store, like a failed
 * fsync: its bytes stay in memory (readers still get them) and in the WAL,
 * and nothing more is written or logged.
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "../util/log.h"
#include "../util/mem.h"

/* Tails one spill write takes at most (two iovecs each: IOV_MAX), and
 * bytes. */
#define SPILL_BATCH 512
#define SPILL_BATCH_BYTES (4u << 20)

static size_t bucket_of(const store *s, uint64_t id) {
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17) & (s->tnbuckets - 1);
}

void tails_init(store *s) {
    s->tnbuckets = 1024;
    s->tbuckets = xcalloc(s->tnbuckets, sizeof *s->tbuckets);
    spill_init(s);
}

tail_stream *tails_find_locked(store *s, uint64_t id) {
    for (tail_stream *e = s->tbuckets[bucket_of(s, id)]; e; e = e->hnext)
        if (e->id == id) return e;
    return NULL;
}

/* The stream as readers and appenders see it: not once it is deleted. */
static tail_stream *live_locked(store *s, uint64_t id) {
    tail_stream *e = tails_find_locked(s, id);
    return e && !e->dying ? e : NULL;
}

static void grow_table(store *s) {
    tail_stream **old = s->tbuckets;
    size_t n = s->tnbuckets;
    s->tnbuckets = n * 2;
    s->tbuckets = xcalloc(s->tnbuckets, sizeof *s->tbuckets);
    for (size_t i = 0; i < n; i++) {
        while (old[i]) {
            tail_stream *e = old[i];
            old[i] = e->hnext;
            size_t b = bucket_of(s, e->id);
            e->hnext = s->tbuckets[b];
            s->tbuckets[b] = e;
        }
    }
    free(old);
}

/* ---- the appended-to order and the writer's queue (tails_mu held) */

static void lru_unlink(store *s, tail_mem *m) {
    if (m->newer) m->newer->older = m->older;
    else s->tlru_head = m->older;
    if (m->older) m->older->newer = m->newer;
    else s->tlru_tail = m->newer;
    m->newer = m->older = NULL;
}

static void lru_push_head(store *s, tail_mem *m) {
    m->newer = NULL;
    m->older = s->tlru_head;
    if (s->tlru_head) s->tlru_head->newer = m;
    s->tlru_head = m;
    if (!s->tlru_tail) s->tlru_tail = m;
}

static void enqueue(store *s, tail_mem *m) {
    m->queued = true;
    m->qnext = NULL;
    if (s->tq_tail) s->tq_tail->qnext = m;
    else s->tq_head = m;
    s->tq_tail = m;
    pthread_cond_signal(&s->writer_cond);
}

/* Bytes of the stream not in its data file. */
static uint64_t held(const tail_mem *m) {
    return (m->owner ? m->owner->spill.bytes : 0) + m->flight_len + m->len;
}

/* Free m once nothing refers to it: no write-out, not queued, and either
 * its stream is gone or it holds nothing in memory (what it spilled is
 * the stream's). */
static void mem_release(tail_mem *m) {
    if (m->writing || m->queued || (m->owner && m->len > 0)) return;
    if (m->owner) m->owner->mem = NULL;
    free(m->buf);
    free(m);
}

/* The stream's tail_mem, made for a write-out of what it spilled if it
 * has none. */
static tail_mem *mem_of(tail_stream *e) {
    if (!e->mem) {
        e->mem = xcalloc(1, sizeof *e->mem);
        e->mem->owner = e;
    }
    return e->mem;
}

/* Queue every stream with spilled bytes for its data file. */
static void queue_chains(store *s) {
    for (size_t i = 0; i < s->tnbuckets; i++) {
        for (tail_stream *e = s->tbuckets[i]; e; e = e->hnext) {
            if (!e->spill.bytes || e->dying) continue;
            tail_mem *m = mem_of(e);
            if (!m->queued && !m->writing) enqueue(s, m);
        }
    }
}

/* ---- disk space */

uint64_t tails_headroom(const store *s) {
    uint64_t b = s->opt.tail_budget;
    return b > UINT64_MAX / 4 ? UINT64_MAX : b * 4;
}

static void check_space(store *s) {
    struct statvfs v;
    if (fstatvfs(s->dirfd, &v) < 0) return;
    uint64_t avail = (uint64_t)v.f_bavail * v.f_frsize;
    pthread_mutex_lock(&s->mu);
    s->disk_free = avail;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&s->tails_mu);
    /* Spilled bytes are owed to their data files too. */
    bool through = avail < tails_headroom(s) + s->spill_held;
    bool changed = through != s->write_through;
    s->write_through = through;
    s->disk_avail = avail;
    /* And go there while there is room. */
    if (through && s->spill_held) queue_chains(s);
    pthread_mutex_unlock(&s->tails_mu);
    if (changed)
        log_write(through ? LOG_WARN : LOG_INFO,
                  "store: %llu MiB free in %s: appends are written %s",
                  (unsigned long long)(avail >> 20), s->dir, through ? "through" : "behind");
}

/* ---- write-outs */

/* A write-out that did not happen: put its bytes back in front of the
 * tail, where readers find them. */
static void unflight(store *s, tail_mem *m) {
    size_t n = m->flight_len + m->len;
    if (n > 0) {
        uint8_t *all = xmalloc(n);
        if (m->flight_len) memcpy(all, m->flight, m->flight_len);
        if (m->len) memcpy(all + m->flight_len, m->buf, m->len);
        if (m->len) lru_unlink(s, m);
        free(m->buf);
        m->buf = all;
        m->len = m->cap = n;
        lru_push_head(s, m);
    }
    free(m->flight);
    m->flight = NULL;
    m->flight_len = 0;
    m->writing = false;
}

/* The fatal path of a failed write-out: keep the bytes where readers find
 * them and stop writing. Returns with tails_mu held, having dropped it to
 * mark the store failed. */
static void write_out_failed(store *s, tail_mem *m, uint64_t id, int err) {
    unflight(s, m);
    if (!s->tail_failed) s->tail_failed = err;
    pthread_cond_broadcast(&s->tails_cond);
    pthread_mutex_unlock(&s->tails_mu);
    log_write(LOG_ERROR, "store: cannot write data file of stream %llx: %s",
              (unsigned long long)id, strerror(err));
    pthread_mutex_lock(&s->mu);
    store_fail_locked(s, err, "data file write");
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&s->tails_mu);
}

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Whether write-outs wait: the last one found the disk full a moment ago. */
static bool paused(const store *s) { return s->tail_paused_until && now_ms() < s->tail_paused_until; }

/* A write-out found the disk full: nothing is lost (the WAL has the bytes,
 * and so does memory again), so keep them, try again in a second, and
 * refuse new records until a write-out fits (tails_mu held; dropped to
 * tell the store). */
static void no_room_set(store *s, int err) {
    int was = atomic_exchange(&s->tail_nospace, err);
    if ((was != 0) != (err != 0)) store_nospace_log(s, err, "data file");
}

static void write_out_no_room(store *s, tail_mem *m, int err) {
    unflight(s, m);
    pthread_cond_broadcast(&s->tails_cond);
    if (!m->queued) enqueue(s, m);
    s->tail_paused_until = now_ms() + 1000;
    no_room_set(s, err);
}

/* The pause is over with nothing to try again (its stream was deleted,
 * say): accept records again; the next write-out tells if there is room. */
static void no_room_expire(store *s) {
    if (!s->tail_paused_until || paused(s)) return;
    s->tail_paused_until = 0;
    no_room_set(s, 0);
}

/* Move m's tail in flight for a write-out (tails_mu held). */
static void take_flight(store *s, tail_mem *m) {
    if (m->len) lru_unlink(s, m);
    m->flight = m->buf;
    m->flight_len = m->len;
    m->writing = true;
    m->buf = NULL;
    m->len = m->cap = 0;
}

/* The write-out is done with the flight. */
static void land(store *s, tail_mem *m) {
    s->tail_bytes -= m->flight_len;
    free(m->flight);
    m->flight = NULL;
    m->flight_len = 0;
    m->writing = false;
    if (m->owner && held(m) >= s->opt.tail_max && !m->queued) enqueue(s, m);
    pthread_cond_broadcast(&s->tails_cond);
    mem_release(m);
}

/* Write everything m holds, spilled and in memory, to its file (fd, or a
 * descriptor of its own if fd < 0). Called and returns with tails_mu held,
 * m->owner set, no write-out running and held(m) > 0; the lock is dropped
 * for the I/O. 0 or an errno. */
static int write_out(store *s, tail_mem *m, int fd) {
    tail_stream *e = m->owner;
    uint64_t id = e->id, off = e->written, spilled = e->spill.bytes;
    take_flight(s, m);
    spill_view *v = spilled ? spill_view_take(s, &e->spill) : NULL;
    pthread_mutex_unlock(&s->tails_mu);

    int err = 0;
    uint8_t *gathered = NULL;
    if (v) {
        gathered = xmalloc(spilled);
        if (spill_view_read(v, id, off + spilled, off, gathered, spilled) < 0) err = errno;
    }
    store_file *cached = NULL;
    int wfd = -1;
    if (!err) {
        wfd = fd >= 0 ? fd : datafile_open(s, id, &cached);
        struct iovec iov[2] = {{gathered, spilled}, {m->flight, m->flight_len}};
        int first = spilled ? 0 : 1;
        if (wfd < 0 || io_pwritev_full(wfd, iov + first, 2 - first, off) < 0) err = errno;
        /* Start writing the bytes back now. Left to the kernel they stay
         * dirty until the checkpoint's syncfs writes a whole checkpoint's
         * worth at once, and every WAL fdatasync queued behind that took
         * 20-80 ms instead of 0.2. A checkpoint's own write-outs (fd given)
         * are synced right after anyway. */
        if (!err && fd < 0 && s->sync)
            sync_file_range(wfd, (off_t)off, (off_t)(spilled + m->flight_len),
                            SYNC_FILE_RANGE_WRITE);
    }
    if (fd < 0 && wfd >= 0) datafile_close(s, wfd, cached);
    free(gathered);

    pthread_mutex_lock(&s->tails_mu);
    if (v) spill_view_release(s, v);
    /* A deleted stream's bytes are dropped whatever happened. */
    if (err && m->owner) {
        if (store_no_room(err)) write_out_no_room(s, m, err);
        else write_out_failed(s, m, id, err);
        return err;
    }
    if (!err && s->tail_paused_until) {
        s->tail_paused_until = 0;
        no_room_set(s, 0);
    }
    if (m->owner) {
        m->owner->written += spilled + m->flight_len;
        spill_chain_drop(s, &m->owner->spill);
    }
    s->tail_writes++;
    if (s->draining) pthread_cond_signal(&s->writer_cond);
    land(s, m);
    return 0;
}

/* One spill write of the least recently appended tails, up to half the
 * budget left (tails_mu held; dropped for the I/O). Returns how many went,
 * 0 if none could (the caller writes one to its data file instead). */
static size_t spill_batch(store *s) {
    if (!spill_usable(s, SPILL_BATCH_BYTES)) return 0;
    spill_file *f = spill_current(s, SPILL_BATCH_BYTES);
    if (!f || s->writer_stop) return 0;
    struct spilled {
        tail_mem *m;
        uint64_t addr;
        uint8_t hdr[SPILL_HDR_SIZE];
    } *batch = xmalloc(SPILL_BATCH * sizeof *batch);
    struct iovec *iov = xmalloc(2 * SPILL_BATCH * sizeof *iov);
    uint64_t at = f->end, left = s->tail_bytes;
    size_t n = 0;
    for (tail_mem *m = s->tlru_tail, *next; m && n < SPILL_BATCH; m = next) {
        next = m->newer;
        if (left <= s->opt.tail_budget / 2) break;
        /* One going to its data file anyway, or too big for the batch. */
        if (m->writing || m->queued || held(m) >= s->opt.tail_max ||
            m->len > SPILL_BATCH_BYTES - SPILL_HDR_SIZE)
            continue;
        if (at - f->end + SPILL_HDR_SIZE + m->len > SPILL_BATCH_BYTES) break;
        tail_stream *e = m->owner;
        spill_hdr_encode(batch[n].hdr, e->id, e->written + e->spill.bytes, (uint32_t)m->len,
                         &e->spill);
        batch[n].m = m;
        batch[n].addr = ((uint64_t)f->num << 32) | at;
        left -= m->len;
        at += SPILL_HDR_SIZE + m->len;
        take_flight(s, m);
        iov[2 * n] = (struct iovec){batch[n].hdr, SPILL_HDR_SIZE};
        iov[2 * n + 1] = (struct iovec){m->flight, m->flight_len};
        n++;
    }
    if (n == 0) {
        free(batch);
        free(iov);
        return 0;
    }
    uint64_t from = f->end;
    pthread_mutex_unlock(&s->tails_mu);
    int rc = io_pwritev_full(f->fd, iov, 2 * n, from);
    int err = errno;
    pthread_mutex_lock(&s->tails_mu);
    if (rc < 0) {
        /* Not fatal: the bytes are still in memory and go to their data
         * files instead. Part of the batch may have taken blocks. */
        if (at > f->size) {
            s->spill_disk += at - f->size;
            f->size = at;
        }
        for (size_t i = 0; i < n; i++) {
            tail_mem *m = batch[i].m;
            if (m->owner) unflight(s, m);
            else land(s, m);
        }
        pthread_cond_broadcast(&s->tails_cond);
        spill_pause(s, err);
        free(batch);
        free(iov);
        return 0;
    }
    f->end = at;
    if (at > f->size) {
        s->spill_disk += at - f->size;
        f->size = at;
    }
    s->spill_writes++;
    for (size_t i = 0; i < n; i++) {
        tail_mem *m = batch[i].m;
        if (m->owner)
            spill_chain_add(s, &m->owner->spill, f, batch[i].addr, (uint32_t)m->flight_len);
        land(s, m);
    }
    free(batch);
    free(iov);
    return n;
}

/* The next full tail for its data file, or NULL. */
static tail_mem *pick_full(store *s) {
    if (s->tail_failed || paused(s)) return NULL;
    while (s->tq_head) {
        tail_mem *m = s->tq_head;
        s->tq_head = m->qnext;
        if (!s->tq_head) s->tq_tail = NULL;
        m->queued = false;
        /* One being written already goes back on the queue when done if
         * it is still full. */
        if (m->owner && !m->writing && held(m) > 0) return m;
        mem_release(m);
    }
    return NULL;
}

/* Whether the tails are over the budget and not yet down to half of it. */
static bool drain_wanted(store *s) {
    if (!s->draining || s->tail_failed || paused(s)) return false;
    if (s->tail_bytes > s->opt.tail_budget / 2) return true;
    s->draining = false;
    return false;
}

/* Drain by one write-out: a spill batch, or else the least recently
 * appended tail to its data file. Whether anything was written. */
static bool drain_some(store *s) {
    if (spill_batch(s) > 0) return true;
    for (tail_mem *m = s->tlru_tail; m; m = m->newer) {
        if (!m->writing) {
            write_out(s, m, -1);
            return true;
        }
    }
    return false;
}

static time_t now_sec(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec;
}

static void *writer_main(void *arg) {
    store *s = arg;
    pthread_setname_np(pthread_self(), "weft-tails");
    time_t checked = now_sec();
    pthread_mutex_lock(&s->tails_mu);
    while (!s->writer_stop) {
        tail_mem *m = pick_full(s);
        bool worked = true;
        if (m) write_out(s, m, -1);
        else worked = drain_wanted(s) && drain_some(s);
        if (s->spill_doomed) {
            pthread_mutex_unlock(&s->tails_mu);
            spill_reap(s);
            pthread_mutex_lock(&s->tails_mu);
        }
        if (!worked) {
            no_room_expire(s);
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_sec += 1;
            pthread_cond_timedwait(&s->writer_cond, &s->tails_mu, &dl);
        }
        time_t now = now_sec();
        if (now != checked) {
            checked = now;
            pthread_mutex_unlock(&s->tails_mu);
            check_space(s);
            pthread_mutex_lock(&s->tails_mu);
        }
    }
    pthread_mutex_unlock(&s->tails_mu);
    return NULL;
}

/* Write out everything id holds in memory or spill files through fd,
 * waiting for a write-out another thread has under way (tails_mu held). 0
 * or an errno. */
static int flush_locked(store *s, uint64_t id, int fd) {
    for (;;) {
        tail_stream *e = tails_find_locked(s, id);
        if (!e || (!e->mem && !e->spill.bytes)) return 0;
        if (s->tail_failed) return s->tail_failed;
        tail_mem *m = mem_of(e);
        if (m->writing) {
            pthread_cond_wait(&s->tails_cond, &s->tails_mu);
            continue;
        }
        return held(m) > 0 ? write_out(s, m, fd) : 0;
    }
}

int tails_sync(store *s, uint64_t id, bool sync) {
    store_file *cached = NULL;
    int fd = datafile_open(s, id, &cached);
    if (fd < 0) {
        if (errno != ENOENT) return -1;
        pthread_mutex_lock(&s->tails_mu);
        bool live = live_locked(s, id) != NULL;
        pthread_mutex_unlock(&s->tails_mu);
        if (live) log_write(LOG_ERROR, "store: data file of stream %llx is missing",
                            (unsigned long long)id);
        errno = ENOENT;
        return live ? -1 : 0;
    }
    pthread_mutex_lock(&s->tails_mu);
    int err = flush_locked(s, id, fd);
    bool no_room = store_no_room(err) && !s->tail_failed;
    pthread_mutex_unlock(&s->tails_mu);
    if (no_room) {
        datafile_close(s, fd, cached);
        errno = err;
        return 1;
    }
    if (!err && sync && fdatasync(fd) < 0) err = errno;
    datafile_close(s, fd, cached);
    if (err) errno = err;
    return err ? -1 : 0;
}

/* ---- the store's side */

tail_stream *tails_register(store *s, uint64_t id, uint64_t length) {
    pthread_mutex_lock(&s->tails_mu);
    if (s->tcount >= s->tnbuckets) grow_table(s);
    tail_stream *e = xcalloc(1, sizeof *e);
    e->id = id;
    e->written = e->length = length;
    size_t b = bucket_of(s, id);
    e->hnext = s->tbuckets[b];
    s->tbuckets[b] = e;
    s->tcount++;
    pthread_mutex_unlock(&s->tails_mu);
    return e;
}

void tails_doom(store *s, uint64_t id, bool dying) {
    pthread_mutex_lock(&s->tails_mu);
    tail_stream *e = tails_find_locked(s, id);
    if (e) e->dying = dying;
    pthread_mutex_unlock(&s->tails_mu);
}

void tails_forget(store *s, uint64_t id) {
    pthread_mutex_lock(&s->tails_mu);
    tail_stream **pp = &s->tbuckets[bucket_of(s, id)];
    while (*pp && (*pp)->id != id) pp = &(*pp)->hnext;
    tail_stream *e = *pp;
    if (e) {
        *pp = e->hnext;
        s->tcount--;
        tail_mem *m = e->mem;
        if (m) {
            if (m->len) lru_unlink(s, m);
            s->tail_bytes -= m->len;
            free(m->buf);
            m->buf = NULL;
            m->len = m->cap = 0;
            /* A write-out under way or the queue frees it later. */
            m->owner = NULL;
            mem_release(m);
        }
        spill_chain_drop(s, &e->spill);
        free(e);
    }
    pthread_mutex_unlock(&s->tails_mu);
}

bool tails_through(store *s) {
    pthread_mutex_lock(&s->tails_mu);
    bool through = s->write_through;
    pthread_mutex_unlock(&s->tails_mu);
    return through;
}

tail_stream *tails_check(store *s, uint64_t id, uint64_t pos, bool *through) {
    pthread_mutex_lock(&s->tails_mu);
    tail_stream *e = live_locked(s, id);
    int err = !e ? ENOENT : pos != e->length ? EINVAL : 0;
    *through = s->write_through;
    pthread_mutex_unlock(&s->tails_mu);
    if (!err) return e;
    errno = err;
    return NULL;
}

int tails_write_through(store *s, uint64_t id, uint64_t pos, const uint8_t *data, size_t len) {
    /* Bytes written behind before the switch go first: written must reach
     * pos, as the bytes below it are read from the file. */
    pthread_mutex_lock(&s->tails_mu);
    tail_stream *e = live_locked(s, id);
    bool held = e && (e->mem || e->spill.bytes);
    pthread_mutex_unlock(&s->tails_mu);
    if (held) {
        if (tails_sync(s, id, false) != 0) return -1;
    }
    store_file *f = store_file_acquire(s, id);
    if (!f) return -1;
    int rc = io_pwrite_full(store_file_fd(f), data, len, pos);
    int err = errno;
    store_file_release(s, f);
    /* Nothing was logged, so this append is just refused; but an error
     * other than a full disk stops the store as it does behind (write_out),
     * which health checks then report. */
    if (rc < 0 && !store_no_room(err)) {
        log_write(LOG_ERROR, "store: cannot write data file of stream %llx: %s",
                  (unsigned long long)id, strerror(err));
        pthread_mutex_lock(&s->mu);
        store_fail_locked(s, err, "data file write");
        pthread_mutex_unlock(&s->mu);
    }
    errno = err;
    return rc;
}

void tails_append(store *s, tail_stream *e, const uint8_t *data, size_t len, bool through) {
    pthread_mutex_lock(&s->tails_mu);
    e->length += len;
    if (through) {
        e->written = e->length;
        pthread_mutex_unlock(&s->tails_mu);
        return;
    }
    tail_mem *m = e->mem;
    if (!m) {
        m = xcalloc(1, sizeof *m);
        m->owner = e;
        e->mem = m;
    }
    if (m->cap - m->len < len) {
        size_t cap = m->cap ? m->cap : 256;
        while (cap - m->len < len) cap *= 2;
        m->buf = xrealloc(m->buf, cap);
        m->cap = cap;
    }
    memcpy(m->buf + m->len, data, len);
    if (m->len) lru_unlink(s, m);
    lru_push_head(s, m);
    m->len += len;
    s->tail_bytes += len;
    /* A write-out under way checks again as it lands. */
    if (!m->writing && held(m) >= s->opt.tail_max && !m->queued) enqueue(s, m);
    if (s->tail_bytes > s->opt.tail_budget && !s->draining) {
        s->draining = true;
        pthread_cond_signal(&s->writer_cond);
    }
    bool behind = s->tail_bytes / 2 > s->opt.tail_budget && !m->writing && !s->tail_failed &&
                  !paused(s);
    if (behind) write_out(s, m, -1);
    pthread_mutex_unlock(&s->tails_mu);
}

/* ---- the writer thread */

int tails_start(store *s) {
    check_space(s);
    int rc = pthread_create(&s->writer, NULL, writer_main, s);
    s->writer_started = rc == 0;
    return rc;
}

void tails_stop(store *s) {
    if (s->writer_started) {
        pthread_mutex_lock(&s->tails_mu);
        s->writer_stop = true;
        pthread_cond_signal(&s->writer_cond);
        pthread_mutex_unlock(&s->tails_mu);
        pthread_join(s->writer, NULL);
        s->writer_started = false;
    }
    /* Nothing else runs now. After a failure the WAL has the bytes. */
    pthread_mutex_lock(&s->mu);
    bool failed = s->failed != 0;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&s->tails_mu);
    for (size_t i = 0; i < s->tnbuckets && !failed && !s->tail_failed; i++)
        for (tail_stream *e = s->tbuckets[i]; e && !s->tail_failed; e = e->hnext)
            if (!e->dying && ((e->mem && e->mem->len) || e->spill.bytes))
                write_out(s, mem_of(e), -1);
    pthread_mutex_unlock(&s->tails_mu);
    spill_reap(s);
}

void tails_free(store *s) {
    while (s->tq_head) {
        tail_mem *m = s->tq_head;
        s->tq_head = m->qnext;
        m->queued = false;
        if (!m->owner) mem_release(m);
    }
    s->tq_tail = NULL;
    for (size_t i = 0; i < s->tnbuckets; i++) {
        while (s->tbuckets[i]) {
            tail_stream *e = s->tbuckets[i];
            s->tbuckets[i] = e->hnext;
            if (e->mem) {
                free(e->mem->buf);
                free(e->mem->flight);
                free(e->mem);
            }
            free(e);
        }
    }
    free(s->tbuckets);
    s->tbuckets = NULL;
    s->tnbuckets = s->tcount = 0;
    spill_free(s);
}

/* ---- reads */

int store_read(store *s, uint64_t id, uint64_t pos, void *dst, size_t len) {
    uint8_t *out = dst;
    pthread_mutex_lock(&s->tails_mu);
    tail_stream *e = live_locked(s, id);
    if (!e || pos > e->length || len > e->length - pos) {
        pthread_mutex_unlock(&s->tails_mu);
        errno = e ? EINVAL : ENOENT;
        return -1;
    }
    const tail_mem *m = e->mem;
    uint64_t end = pos + len, w = e->written, mem_at = w + e->spill.bytes;
    if (end > mem_at) {
        /* Above the spilled bytes everything is in memory: the flight,
         * then the tail. */
        uint64_t tail_at = mem_at + m->flight_len;
        for (uint64_t at = pos > mem_at ? pos : mem_at; at < end;) {
            const uint8_t *src = at < tail_at ? m->flight + (at - mem_at) : m->buf + (at - tail_at);
            uint64_t stop = at < tail_at && end > tail_at ? tail_at : end;
            memcpy(out + (at - pos), src, (size_t)(stop - at));
            at = stop;
        }
    }
    /* Spilled bytes are read without the lock, through a view that keeps
     * their files open. */
    uint64_t sa = pos > w ? pos : w, sb = end < mem_at ? end : mem_at;
    spill_view *v = sa < sb ? spill_view_take(s, &e->spill) : NULL;
    pthread_mutex_unlock(&s->tails_mu);
    if (v) {
        int rc = spill_view_read(v, id, mem_at, sa, out + (sa - pos), (size_t)(sb - sa));
        int err = errno;
        pthread_mutex_lock(&s->tails_mu);
        spill_view_release(s, v);
        pthread_mutex_unlock(&s->tails_mu);
        if (rc < 0) {
            errno = err;
            return -1;
        }
    }
    if (pos >= w) return 0;

    /* Bytes below written stay in the file: no lock needed to read them. */
    size_t n = (size_t)((end < w ? end : w) - pos);
    store_file *f = store_file_acquire(s, id);
    if (!f) return -1;
    /* A file shorter than written lost bytes outside the store (EIO). */
    int rc = io_pread_full(store_file_fd(f), out, n, pos);
    int err = errno;
    store_file_release(s, f);
    errno = err;
    return rc;
}

uint64_t store_written(store *s, uint64_t id) {
    pthread_mutex_lock(&s->tails_mu);
    tail_stream *e = live_locked(s, id);
    uint64_t w = e ? e->written : 0;
    pthread_mutex_unlock(&s->tails_mu);
    return w;
}
