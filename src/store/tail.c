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
 *   - by the writer thread, when one reaches tail_max bytes, and when all of
 *     them together pass tail_budget: then the least recently appended go
 *     until about half the budget is left (those are least likely to grow
 *     into a bigger write);
 *   - by the checkpoint, for each stream it covers, before the fdatasync
 *     (tails_sync), so everything the catalog covers is in synced files;
 *   - by an appending thread itself, for its own stream, once the tails
 *     hold twice the budget: the writer is not keeping up, and appends slow
 *     down to the old write-through pace instead of growing memory;
 *   - at store_close.
 *
 * Write-behind needs free disk space: bytes acknowledged from the WAL must
 * still find room in their data files, or recovery could not rebuild them.
 * While the file system has less than 4 x tail_budget free (checked at open
 * and by the writer thread each time it wakes, at least once a second),
 * appends write through instead, as before: the data goes to the file on
 * the caller's thread before the record is logged, so a full disk fails the
 * append and nothing is acknowledged that has no room.
 *
 * A failed write-out of a live stream is fatal for the store, like a failed
 * fsync: its bytes stay in memory (readers still get them) and in the WAL,
 * and nothing more is written or logged.
 */
#include "store_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "../util/log.h"
#include "../util/mem.h"

static size_t bucket_of(const store *s, uint64_t id) {
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17) & (s->tnbuckets - 1);
}

void tails_init(store *s) {
    s->tnbuckets = 1024;
    s->tbuckets = xcalloc(s->tnbuckets, sizeof *s->tbuckets);
}

tail_stream *tails_find_locked(store *s, uint64_t id) {
    for (tail_stream *e = s->tbuckets[bucket_of(s, id)]; e; e = e->hnext)
        if (e->id == id) return e;
    return NULL;
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

/* Free m once nothing refers to it: no write-out, not queued, and either
 * its stream is gone or it holds nothing. */
static void mem_release(tail_mem *m) {
    if (m->flight || m->queued || (m->owner && m->len > 0)) return;
    if (m->owner) m->owner->mem = NULL;
    free(m->buf);
    free(m);
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
    bool through = avail < tails_headroom(s);
    pthread_mutex_lock(&s->mu);
    s->disk_free = avail;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&s->tails_mu);
    bool changed = through != s->write_through;
    s->write_through = through;
    pthread_mutex_unlock(&s->tails_mu);
    if (changed)
        log_write(through ? LOG_WARN : LOG_INFO,
                  "store: %llu MiB free in %s: appends are written %s",
                  (unsigned long long)(avail >> 20), s->dir, through ? "through" : "behind");
}

/* ---- write-outs */

/* The fatal path of a failed write-out: put the bytes back in front of the
 * tail, where readers find them, and stop writing. Returns with tails_mu
 * held, having dropped it to mark the store failed. */
static void write_out_failed(store *s, tail_mem *m, uint64_t id, int err) {
    size_t n = m->flight_len + m->len;
    uint8_t *all = xmalloc(n);
    memcpy(all, m->flight, m->flight_len);
    if (m->len) memcpy(all + m->flight_len, m->buf, m->len);
    if (m->len) lru_unlink(s, m);
    free(m->flight);
    free(m->buf);
    m->flight = NULL;
    m->flight_len = 0;
    m->buf = all;
    m->len = m->cap = n;
    lru_push_head(s, m);
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

/* Write m's tail to its file (fd, or a descriptor of its own if fd < 0).
 * Called and returns with tails_mu held, m->owner set, nothing in flight and
 * m->len > 0; the lock is dropped for the I/O. 0 or an errno. */
static int write_out(store *s, tail_mem *m, int fd) {
    uint64_t id = m->owner->id, off = m->owner->written;
    m->flight = m->buf;
    m->flight_len = m->len;
    lru_unlink(s, m);
    m->buf = NULL;
    m->len = m->cap = 0;
    pthread_mutex_unlock(&s->tails_mu);

    int err = 0;
    store_file *cached = NULL;
    int wfd = fd >= 0 ? fd : datafile_open(s, id, &cached);
    if (wfd < 0 || io_pwrite_full(wfd, m->flight, m->flight_len, off) < 0) err = errno;
    if (fd < 0 && wfd >= 0) datafile_close(s, wfd, cached);

    pthread_mutex_lock(&s->tails_mu);
    /* A deleted stream's bytes are dropped whatever happened. */
    if (err && m->owner) {
        write_out_failed(s, m, id, err);
        return err;
    }
    if (m->owner) m->owner->written += m->flight_len;
    s->tail_bytes -= m->flight_len;
    s->tail_writes++;
    free(m->flight);
    m->flight = NULL;
    m->flight_len = 0;
    if (m->owner && m->len >= s->opt.tail_max && !m->queued) enqueue(s, m);
    else if (s->draining) pthread_cond_signal(&s->writer_cond);
    pthread_cond_broadcast(&s->tails_cond);
    mem_release(m);
    return 0;
}

/* The writer's next job, or NULL. */
static tail_mem *pick(store *s) {
    if (s->tail_failed) return NULL;
    while (s->tq_head) {
        tail_mem *m = s->tq_head;
        s->tq_head = m->qnext;
        if (!s->tq_head) s->tq_tail = NULL;
        m->queued = false;
        /* One being written already goes back on the queue when done if
         * it is still full. */
        if (m->owner && !m->flight && m->len > 0) return m;
        mem_release(m);
    }
    if (!s->draining) return NULL;
    if (s->tail_bytes <= s->opt.tail_budget / 2) {
        s->draining = false;
        return NULL;
    }
    for (tail_mem *m = s->tlru_tail; m; m = m->newer)
        if (!m->flight) return m;
    return NULL;
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
        tail_mem *m = pick(s);
        if (m) {
            write_out(s, m, -1);
        } else {
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

/* Write out everything id holds in memory through fd, waiting for a
 * write-out another thread has under way (tails_mu held). 0 or an errno. */
static int flush_locked(store *s, uint64_t id, int fd) {
    for (;;) {
        tail_stream *e = tails_find_locked(s, id);
        tail_mem *m = e ? e->mem : NULL;
        if (!m) return 0;
        if (s->tail_failed) return s->tail_failed;
        if (m->flight) {
            pthread_cond_wait(&s->tails_cond, &s->tails_mu);
            continue;
        }
        return m->len > 0 ? write_out(s, m, fd) : 0;
    }
}

int tails_sync(store *s, uint64_t id, bool sync) {
    store_file *cached = NULL;
    int fd = datafile_open(s, id, &cached);
    if (fd < 0) {
        if (errno != ENOENT) return -1;
        pthread_mutex_lock(&s->tails_mu);
        bool live = tails_find_locked(s, id) != NULL;
        pthread_mutex_unlock(&s->tails_mu);
        if (live) log_write(LOG_ERROR, "store: data file of stream %llx is missing",
                            (unsigned long long)id);
        errno = ENOENT;
        return live ? -1 : 0;
    }
    pthread_mutex_lock(&s->tails_mu);
    int err = flush_locked(s, id, fd);
    pthread_mutex_unlock(&s->tails_mu);
    if (!err && sync && fdatasync(fd) < 0) err = errno;
    datafile_close(s, fd, cached);
    if (err) errno = err;
    return err ? -1 : 0;
}

/* ---- the store's side */

void tails_register(store *s, uint64_t id, uint64_t length) {
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

int tails_check(store *s, uint64_t id, uint64_t pos, bool *through) {
    pthread_mutex_lock(&s->tails_mu);
    tail_stream *e = tails_find_locked(s, id);
    int err = !e ? ENOENT : pos != e->length ? EINVAL : 0;
    *through = s->write_through;
    pthread_mutex_unlock(&s->tails_mu);
    if (err) errno = err;
    return err ? -1 : 0;
}

int tails_write_through(store *s, uint64_t id, uint64_t pos, const uint8_t *data, size_t len) {
    /* Bytes written behind before the switch go first: written must reach
     * pos, as the bytes below it are read from the file. */
    pthread_mutex_lock(&s->tails_mu);
    tail_stream *e = tails_find_locked(s, id);
    bool held = e && e->mem;
    pthread_mutex_unlock(&s->tails_mu);
    if (held && tails_sync(s, id, false) < 0) return -1;
    store_file *f = store_file_acquire(s, id);
    if (!f) return -1;
    int rc = io_pwrite_full(store_file_fd(f), data, len, pos);
    int err = errno;
    store_file_release(s, f);
    errno = err;
    return rc;
}

void tails_append(store *s, uint64_t id, const uint8_t *data, size_t len, bool through) {
    pthread_mutex_lock(&s->tails_mu);
    /* Present: the owner serialises an append with its stream's delete. */
    tail_stream *e = tails_find_locked(s, id);
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
    if (m->len >= s->opt.tail_max && !m->queued) enqueue(s, m);
    if (s->tail_bytes > s->opt.tail_budget && !s->draining) {
        s->draining = true;
        pthread_cond_signal(&s->writer_cond);
    }
    bool behind = s->tail_bytes / 2 > s->opt.tail_budget && !m->flight && !s->tail_failed;
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
    while (!failed && !s->tail_failed && s->tlru_tail) write_out(s, s->tlru_tail, -1);
    pthread_mutex_unlock(&s->tails_mu);
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
}

/* ---- reads */

int store_read(store *s, uint64_t id, uint64_t pos, void *dst, size_t len) {
    uint8_t *out = dst;
    pthread_mutex_lock(&s->tails_mu);
    tail_stream *e = tails_find_locked(s, id);
    if (!e || pos > e->length || len > e->length - pos) {
        pthread_mutex_unlock(&s->tails_mu);
        errno = e ? EINVAL : ENOENT;
        return -1;
    }
    uint64_t end = pos + len, w = e->written;
    if (end > w) {
        /* Above written everything is in memory: the flight, then the tail. */
        const tail_mem *m = e->mem;
        uint64_t tail_at = w + m->flight_len;
        for (uint64_t at = pos > w ? pos : w; at < end;) {
            const uint8_t *src = at < tail_at ? m->flight + (at - w) : m->buf + (at - tail_at);
            uint64_t stop = at < tail_at && end > tail_at ? tail_at : end;
            memcpy(out + (at - pos), src, (size_t)(stop - at));
            at = stop;
        }
    }
    pthread_mutex_unlock(&s->tails_mu);
    if (pos >= w) return 0;

    /* Bytes below written stay in the file: no lock needed to read them. */
    size_t n = (size_t)((end < w ? end : w) - pos), done = 0;
    store_file *f = store_file_acquire(s, id);
    if (!f) return -1;
    while (done < n) {
        ssize_t r = pread(store_file_fd(f), out + done, n - done, (off_t)(pos + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            /* A file shorter than written lost bytes outside the store. */
            int err = r < 0 ? errno : EIO;
            store_file_release(s, f);
            errno = err;
            return -1;
        }
        done += (size_t)r;
    }
    store_file_release(s, f);
    return 0;
}

uint64_t store_written(store *s, uint64_t id) {
    pthread_mutex_lock(&s->tails_mu);
    tail_stream *e = tails_find_locked(s, id);
    uint64_t w = e ? e->written : 0;
    pthread_mutex_unlock(&s->tails_mu);
    return w;
}
