/* spill.c — scratch files that take the tails off memory in big writes.
 *
 * With more streams appended to than the tail budget holds a few appends
 * of (100,000 streams share 32 MiB: about one 256-byte append each), every
 * tail the writer thread wrote out was one data file: an open, a small
 * pwrite and a close, 7-12 us of ext4 work per append. Spilled instead,
 * hundreds of tails share one pwritev to a scratch file, and each stream's
 * data file is written once per checkpoint (or when its bytes reach
 * tail_max), with everything it gathered.
 *
 * Spill files are a cache, never a source of truth: every spilled byte is
 * in the WAL until a checkpoint has put it in its data file, so they are
 * opened O_TMPFILE (no name; gone with the process) and recovery does not
 * know them. Where O_TMPFILE is not supported, nothing is spilled and
 * tails go to their data files as before.
 *
 * Lifetime. A file is referenced by every chain whose range of file
 * numbers covers it (a range, not a list, keeps the chain small; it may
 * keep a file a little longer than needed), by readers walking a chain
 * without the lock (spill_view), and by being the current file. The last
 * reference moves it to the doomed list; the writer thread closes it there
 * without tails_mu, since closing a file's last descriptor frees its pages.
 *
 * The space spill files take on disk is capped at an eighth of the free
 * space (sampled each second by the writer thread, like the WAL's cap in
 * checkpoint_due), and what the chains owe their data files counts against
 * the free space kept for the tails (tail.c, check_space): past that, or
 * for a while after a failed write, tails go to their data files instead.
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../util/log.h"
#include "../util/mem.h"

/* After a failed spill write, tails go to their data files this long. */
#define SPILL_PAUSE_SEC 10

static int64_t mono_sec(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec;
}

void spill_init(store *s) {
    s->spill_next = 1;
    if (!s->opt.spill_file_bytes) s->opt.spill_file_bytes = 64u << 20;
    /* Offsets are 32 bits of an address. */
    if (s->opt.spill_file_bytes > (1ull << 31)) s->opt.spill_file_bytes = 1ull << 31;
}

void spill_free(store *s) {
    spill_file *lists[2] = {s->spill_files, s->spill_doomed};
    for (int i = 0; i < 2; i++) {
        while (lists[i]) {
            spill_file *f = lists[i];
            lists[i] = f->next;
            close(f->fd);
            free(f);
        }
    }
    s->spill_files = s->spill_cur = s->spill_doomed = NULL;
    s->spill_disk = 0;
}

bool spill_usable(store *s, uint64_t bytes) {
    uint64_t avail = s->disk_avail;
    return !s->write_through && !s->tail_failed && mono_sec() >= s->spill_paused_until &&
           s->spill_disk + bytes <= avail / 8 &&
           tails_headroom(s) + 2 * (s->spill_held + bytes) <= avail;
}

void spill_pause(store *s, int err) {
    bool unsupported = err == EOPNOTSUPP || err == EISDIR;
    s->spill_paused_until = unsupported ? INT64_MAX : mono_sec() + SPILL_PAUSE_SEC;
    if (unsupported)
        log_write(LOG_INFO, "store: %s has no O_TMPFILE: tails are written to their data files",
                  s->dir);
    else
        log_write(LOG_WARN, "store: cannot write spill file in %s: %s; tails go to their data "
                  "files for %d s", s->dir, strerror(err), SPILL_PAUSE_SEC);
}

static void unref(store *s, spill_file *f) {
    if (--f->refs > 0) return;
    spill_file **pp = &s->spill_files;
    while (*pp != f) pp = &(*pp)->next;
    *pp = f->next;
    f->next = s->spill_doomed;
    s->spill_doomed = f;
    pthread_cond_signal(&s->writer_cond);
}

spill_file *spill_current(store *s, uint64_t bytes) {
    spill_file *cur = s->spill_cur;
    if (cur && cur->refs == 1 && cur->size > 0) {
        /* No chain left in it: start over, and give its blocks and dirty
         * pages back first, so that neither writeback nor a checkpoint's
         * syncfs writes dead bytes. Only the writer thread uses it now. */
        pthread_mutex_unlock(&s->tails_mu);
        int rc = ftruncate(cur->fd, 0);
        int err = errno;
        pthread_mutex_lock(&s->tails_mu);
        if (rc < 0) {
            spill_pause(s, err);
            return NULL;
        }
        s->spill_disk -= cur->size;
        cur->size = cur->end = 0;
    }
    if (cur && cur->end + bytes <= s->opt.spill_file_bytes) return cur;
    /* Only the writer thread spills, so no one else rotates meanwhile. */
    pthread_mutex_unlock(&s->tails_mu);
    int fd = openat(s->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    int err = errno;
    pthread_mutex_lock(&s->tails_mu);
    if (fd < 0) {
        spill_pause(s, err);
        return NULL;
    }
    spill_file *f = xcalloc(1, sizeof *f);
    f->num = s->spill_next++;
    f->fd = fd;
    f->refs = 1;
    spill_file **pp = &s->spill_files;
    while (*pp) pp = &(*pp)->next;
    *pp = f;
    s->spill_cur = f;
    if (cur) unref(s, cur);
    return f;
}

void spill_hdr_encode(uint8_t out[SPILL_HDR_SIZE], uint64_t id, uint64_t pos, uint32_t len,
                      const spill_chain *prev) {
    codec_put_u64(out, id);
    codec_put_u64(out + 8, pos);
    codec_put_u64(out + 16, prev->addr);
    codec_put_u32(out + 24, len);
    codec_put_u32(out + 28, prev->len);
}

void spill_chain_add(store *s, spill_chain *c, const spill_file *f, uint64_t addr, uint32_t len) {
    uint32_t from = c->addr ? c->last + 1 : f->num;
    for (spill_file *g = s->spill_files; g && g->num <= f->num; g = g->next)
        if (g->num >= from) g->refs++;
    if (!c->addr) c->first = f->num;
    c->last = f->num;
    c->addr = addr;
    c->len = len;
    c->bytes += len;
    s->spill_held += len;
}

void spill_chain_drop(store *s, spill_chain *c) {
    if (!c->addr) return;
    spill_file *g = s->spill_files;
    while (g && g->num <= c->last) {
        spill_file *next = g->next;
        if (g->num >= c->first) unref(s, g);
        g = next;
    }
    s->spill_held -= c->bytes;
    memset(c, 0, sizeof *c);
}

spill_view *spill_view_take(store *s, const spill_chain *c) {
    size_t n = 0;
    for (spill_file *g = s->spill_files; g && g->num <= c->last; g = g->next)
        if (g->num >= c->first) n++;
    spill_view *v = xmalloc(sizeof *v + n * sizeof v->files[0]);
    v->chain = *c;
    v->n = 0;
    for (spill_file *g = s->spill_files; g && g->num <= c->last; g = g->next) {
        if (g->num < c->first) continue;
        g->refs++;
        v->files[v->n++] = g;
    }
    return v;
}

void spill_view_release(store *s, spill_view *v) {
    for (size_t i = 0; i < v->n; i++) unref(s, v->files[i]);
    free(v);
}

static int bad_extent(uint64_t id, uint64_t addr, const char *what) {
    log_write(LOG_ERROR, "store: spill extent %llx of stream %llx: %s",
              (unsigned long long)addr, (unsigned long long)id, what);
    errno = EIO;
    return -1;
}

int spill_view_read(const spill_view *v, uint64_t id, uint64_t end, uint64_t a, uint8_t *dst,
                    size_t n) {
    uint64_t b = a + n, addr = v->chain.addr;
    uint32_t len = v->chain.len;
    uint8_t *ext = NULL;
    size_t cap = 0;
    int rc = 0;
    /* Newest first: each extent ends where the one after it begins. */
    while (rc == 0 && end > a) {
        if (!addr || len > end) {
            rc = bad_extent(id, addr, "chain ends early");
            break;
        }
        uint64_t pos = end - len;
        const spill_file *f = NULL;
        for (size_t i = 0; i < v->n && !f; i++)
            if (v->files[i]->num == (uint32_t)(addr >> 32)) f = v->files[i];
        if (!f) {
            rc = bad_extent(id, addr, "file not in view");
            break;
        }
        /* Past the range only the header is needed, for the link. */
        size_t want = SPILL_HDR_SIZE + (pos < b ? len : 0);
        if (want > cap) {
            cap = want;
            ext = xrealloc(ext, cap);
        }
        if (io_pread_full(f->fd, ext, want, addr & 0xffffffffu) < 0) {
            rc = -1;
            break;
        }
        if (codec_get_u64(ext) != id || codec_get_u64(ext + 8) != pos ||
            codec_get_u32(ext + 24) != len) {
            rc = bad_extent(id, addr, "header does not match");
            break;
        }
        if (pos < b) {
            uint64_t from = pos > a ? pos : a, to = end < b ? end : b;
            memcpy(dst + (from - a), ext + SPILL_HDR_SIZE + (from - pos), (size_t)(to - from));
        }
        addr = codec_get_u64(ext + 16);
        len = codec_get_u32(ext + 28);
        end = pos;
    }
    int err = errno;
    free(ext);
    errno = err;
    return rc;
}

void spill_reap(store *s) {
    pthread_mutex_lock(&s->tails_mu);
    spill_file *list = s->spill_doomed;
    s->spill_doomed = NULL;
    for (spill_file *f = list; f; f = f->next) s->spill_disk -= f->size;
    pthread_mutex_unlock(&s->tails_mu);
    while (list) {
        spill_file *f = list;
        list = f->next;
        close(f->fd);
        free(f);
    }
}
