/* datafile.c — stream data files and the descriptor cache.
 *
 * Each stream's bytes live in data/XX/<16 hex id>.dat (XX = low byte of the
 * id, so no directory holds more than 1/256 of the streams). There may be a
 * million streams but only max_open_files descriptors are kept open: an LRU
 * cache maps id -> store_file.
 *
 * A store_file is reference counted. The cache owns one reference while the
 * file is cached; every store_file_acquire adds one. Eviction (or deletion
 * of the stream) only drops the cache's reference, so a descriptor that a
 * reader is still using for pread/sendfile is closed by its last release,
 * never under the reader's feet.
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "../util/mem.h"

void datafile_path(char out[DATAFILE_PATH_LEN], uint64_t id) {
    snprintf(out, DATAFILE_PATH_LEN, "data/%02x/%016llx.dat", (unsigned)(id & 0xff),
             (unsigned long long)id);
}

static size_t bucket_of(const store *s, uint64_t id) {
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17) & (s->fnbuckets - 1);
}

void files_init(store *s) {
    size_t n = 16;
    while (n < (size_t)s->opt.max_open_files * 2) n *= 2;
    s->fbuckets = xcalloc(n, sizeof *s->fbuckets);
    s->fnbuckets = n;
    s->fcount = 0;
    s->lru_head = s->lru_tail = NULL;
}

/* Drop one reference; the caller holds files_mu. Returns the fd to close
 * (after unlocking) or -1. */
static int unref_locked(store_file *f) {
    if (--f->refs > 0) return -1;
    int fd = f->fd;
    free(f);
    return fd;
}

static void lru_unlink(store *s, store_file *f) {
    if (f->newer) f->newer->older = f->older;
    else s->lru_head = f->older;
    if (f->older) f->older->newer = f->newer;
    else s->lru_tail = f->newer;
    f->newer = f->older = NULL;
}

static void lru_push_head(store *s, store_file *f) {
    f->newer = NULL;
    f->older = s->lru_head;
    if (s->lru_head) s->lru_head->newer = f;
    s->lru_head = f;
    if (!s->lru_tail) s->lru_tail = f;
}

static store_file *find_locked(store *s, uint64_t id) {
    for (store_file *f = s->fbuckets[bucket_of(s, id)]; f; f = f->hnext)
        if (f->id == id) return f;
    return NULL;
}

/* Take f out of the cache; the cache's reference is the caller's to drop. */
static void remove_locked(store *s, store_file *f) {
    store_file **pp = &s->fbuckets[bucket_of(s, f->id)];
    while (*pp != f) pp = &(*pp)->hnext;
    *pp = f->hnext;
    lru_unlink(s, f);
    f->cached = false;
    s->fcount--;
}

/* Cache a new descriptor for id, returning it with one reference for the
 * caller (plus the cache's). If another thread cached the id meanwhile, its
 * entry wins and fd is closed. */
static store_file *insert(store *s, uint64_t id, int fd) {
    int to_close[2];
    int nclose = 0;
    pthread_mutex_lock(&s->files_mu);
    store_file *f = find_locked(s, id);
    if (f) {
        to_close[nclose++] = fd;
        lru_unlink(s, f);
        lru_push_head(s, f);
    } else {
        f = xcalloc(1, sizeof *f);
        f->owner = s;
        f->id = id;
        f->fd = fd;
        f->refs = 1;
        f->cached = true;
        size_t b = bucket_of(s, id);
        f->hnext = s->fbuckets[b];
        s->fbuckets[b] = f;
        lru_push_head(s, f);
        s->fcount++;
        /* One in, at most one out: evict the least recently used. */
        if (s->fcount > s->opt.max_open_files) {
            store_file *old = s->lru_tail;
            remove_locked(s, old);
            int cfd = unref_locked(old);
            if (cfd >= 0) to_close[nclose++] = cfd;
        }
    }
    f->refs++;
    pthread_mutex_unlock(&s->files_mu);
    for (int i = 0; i < nclose; i++) close(to_close[i]);
    return f;
}

store_file *store_file_acquire(store *s, uint64_t id) {
    pthread_mutex_lock(&s->files_mu);
    store_file *f = find_locked(s, id);
    if (f) {
        f->refs++;
        lru_unlink(s, f);
        lru_push_head(s, f);
        pthread_mutex_unlock(&s->files_mu);
        return f;
    }
    pthread_mutex_unlock(&s->files_mu);

    /* Open outside the lock: it may block on the disk. */
    char path[DATAFILE_PATH_LEN];
    datafile_path(path, id);
    int fd = openat(s->dirfd, path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return NULL;
    return insert(s, id, fd);
}

int store_file_fd(const store_file *f) { return f->fd; }

void store_file_release(store *s, store_file *f) {
    pthread_mutex_lock(&s->files_mu);
    int fd = unref_locked(f);
    pthread_mutex_unlock(&s->files_mu);
    if (fd >= 0) close(fd);
}

void store_file_done(void *f) {
    store_file *file = f;
    store_file_release(file->owner, file);
}

int datafile_create(store *s, uint64_t id, const uint8_t *data, size_t len) {
    char path[DATAFILE_PATH_LEN];
    datafile_path(path, id);
    int fd = openat(s->dirfd, path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    if (io_pwrite_full(fd, data, len, 0) < 0) {
        int saved = errno;
        close(fd);
        unlinkat(s->dirfd, path, 0);
        errno = saved;
        return -1;
    }
    /* A stale entry for this id (a create retried after a failure) would
     * point at the unlinked inode. */
    datafile_forget(s, id);
    store_file_release(s, insert(s, id, fd));
    return 0;
}

void datafile_forget(store *s, uint64_t id) {
    int fd = -1;
    pthread_mutex_lock(&s->files_mu);
    store_file *f = find_locked(s, id);
    if (f) {
        remove_locked(s, f);
        fd = unref_locked(f);
    }
    pthread_mutex_unlock(&s->files_mu);
    if (fd >= 0) close(fd);
}

int datafile_unlink(store *s, uint64_t id) {
    datafile_forget(s, id);
    char path[DATAFILE_PATH_LEN];
    datafile_path(path, id);
    if (unlinkat(s->dirfd, path, 0) < 0 && errno != ENOENT) return -1;
    return 0;
}

int datafile_open(store *s, uint64_t id, store_file **cached) {
    /* Write-outs and syncs touch every file written since the last
     * checkpoint; caching those descriptors would flush the hot readers'
     * out of the LRU. */
    pthread_mutex_lock(&s->files_mu);
    store_file *f = find_locked(s, id);
    if (f) f->refs++;
    pthread_mutex_unlock(&s->files_mu);
    *cached = f;
    if (f) return f->fd;
    char path[DATAFILE_PATH_LEN];
    datafile_path(path, id);
    return openat(s->dirfd, path, O_RDWR | O_CLOEXEC);
}

void datafile_close(store *s, int fd, store_file *cached) {
    int saved = errno;
    if (cached) store_file_release(s, cached);
    else close(fd);
    errno = saved;
}

int datafile_sync(store *s, uint64_t id) {
    store_file *cached;
    int fd = datafile_open(s, id, &cached);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    int rc = fdatasync(fd);
    datafile_close(s, fd, cached);
    return rc;
}

void files_shutdown(store *s) {
    /* Readers must have released their files by now; only the cache's
     * references remain. */
    while (s->lru_head) {
        store_file *f = s->lru_head;
        remove_locked(s, f);
        int fd = unref_locked(f);
        if (fd >= 0) close(fd);
    }
    free(s->fbuckets);
    s->fbuckets = NULL;
    s->fnbuckets = 0;
}
