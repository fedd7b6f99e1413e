/* store_int.h — private declarations shared by the storage engine's files.
 *
 * The engine is split by job:
 *   wal.c        WAL record format: encoding and the recovery scanner
 *   flush.c      group-commit flusher thread, WAL segment files
 *   datafile.c   stream data files and the descriptor cache (store_file)
 *   tail.c       write-behind: appended bytes held in memory, the writer
 *                thread, store_read
 *   spill.c      scratch files that take tails off memory in big writes
 *   catalog.c    the checkpoint file: atomic write, verified load
 *   checkpoint.c checkpoint thread, snapshot protocol
 *   recover.c    recovery at open: catalog + WAL replay + data file repair
 *   idmap.c      hash map from 64-bit id to pointer (dirty set, recovery)
 *   io.c         small I/O helpers (full writes, directory fsync)
 *   codec.c      little-endian integers, CRC-32, hex file names
 *   store.c      open/close, the public mutations
 *
 * Locks. s->mu guards the WAL state (pending records, LSNs, segment
 * numbers, the dirty set, the spare segment, flags). s->files_mu guards the
 * descriptor cache, s->tails_mu the write-behind state (tail.c). s->ckpt_mu
 * serialises checkpoints and is the outermost: a checkpoint takes the
 * others (one at a time) while holding it. s->mu, s->files_mu and
 * s->tails_mu are never held together, and none of them is held across
 * file I/O. None is held while calling into the owner, except that the
 * snapshot callback runs under s->ckpt_mu (it takes s->mu itself in
 * store_snapshot_begin). That is safe as long as the owner does not call
 * store_checkpoint or store_close with its own lock held (the stream layer
 * does not); every other entry point only takes the inner locks, after the
 * owner's lock.
 */
#ifndef WEFT_STORE_INT_H
#define WEFT_STORE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../util/buf.h"
#include "store.h"

/* ---- idmap.c: open-addressing map id -> non-NULL pointer, no removal. */

typedef struct idmap {
    uint64_t *keys;
    void **vals; /* NULL marks an empty slot */
    size_t cap;  /* power of two, or 0 */
    size_t count;
} idmap;

void idmap_init(idmap *m);
void idmap_free(idmap *m); /* frees the table, not the values */
void *idmap_get(const idmap *m, uint64_t key);
void idmap_put(idmap *m, uint64_t key, void *val);

/* ---- codec.c */

void codec_put_u32(uint8_t *p, uint32_t v);
void codec_put_u64(uint8_t *p, uint64_t v);
uint32_t codec_get_u32(const uint8_t *p);
uint64_t codec_get_u64(const uint8_t *p);
/* Continue a CRC-32 (the gzip/zlib polynomial; start from 0) over n bytes. */
uint32_t codec_crc(uint32_t crc, const uint8_t *p, size_t n);
/* "<16 lower-case hex digits><suffix>" -> *v. */
bool codec_parse_hex_name(const char *name, const char *suffix, uint64_t *v);

/* ---- io.c */

/* Above this many data files to sync, one syncfs() is cheaper: each
 * fdatasync is a device cache flush of its own. */
#define SYNCFS_FILES 64

/* Write all of p (retrying short writes and EINTR). 0, or -1 with errno. */
int io_write_full(int fd, const void *p, size_t n);
int io_pwrite_full(int fd, const void *p, size_t n, uint64_t off);
/* Read all of [off, off + n); a file that ends first is EIO. */
int io_pread_full(int fd, void *p, size_t n, uint64_t off);
/* io_pwrite_full for n buffers written one after another from off; iov
 * is consumed (advanced past what was written). */
int io_pwritev_full(int fd, struct iovec *iov, size_t n, uint64_t off);
/* fsync a directory (relative to dirfd; "." for dirfd itself). */
int io_fsync_dir(int dirfd, const char *path);

/* ---- wal.c: the segment and record formats.
 *
 * A segment file starts with a WAL_SEG_HDR-byte header, then holds records
 * back to back. All integers are little-endian.
 *
 *   0  8   magic     "WEFTWAL1"
 *   8  u64 seg       the segment's number (its file name)
 *  16  u64 prev_end  where the records of the last segment written before
 *                    this one ended, or 0 when this one starts the log (a
 *                    segment that got no records has no header either)
 *  24  u32 salt      random, drawn when the segment was opened
 *  28  u32 crc       crc32 of bytes [0, 28)
 *
 * Every record is a 48-byte header followed by name, meta and data bytes:
 *
 *   0  u32 crc       crc32 of bytes [4, len) of the record, XOR the salt
 *   4  u32 len       whole record length, header included
 *   8  u8  type      store_rec_type
 *   9  u8  flags     WAL_FLAG_META: the record carries a meta blob
 *  10  u16 zero
 *  12  u32 name_len
 *  16  u32 meta_len
 *  20  u32 data_len
 *  24  u64 lsn
 *  32  u64 id
 *  40  u64 pos       APPEND: position of data in the stream
 *
 * Segment files are reused: the checkpoint recycles a covered segment as
 * the next spare, so past the last record lie an older segment's bytes,
 * and clients chose many of them. The salt is why none of them can pass
 * for a record: an older segment's records, or a record a client wrote
 * into its data, check out only under their own segment's salt, which no
 * client can know. A later segment's prev_end tells recovery where this
 * one's log really ended, so an end before it is a torn or corrupt
 * record, not the end of the log. */

#define WAL_SEG_HDR 32
#define WAL_HDR_SIZE 48
#define WAL_FLAG_META 1u
#define WAL_REC_MAX (1u << 30) /* largest record, header included */

typedef struct wal_seg_hdr {
    uint64_t seg;
    uint64_t prev_end;
    uint32_t salt;
} wal_seg_hdr;

void wal_seg_hdr_encode(uint8_t out[WAL_SEG_HDR], const wal_seg_hdr *h);
/* False unless img starts with an intact segment header. */
bool wal_seg_hdr_decode(const uint8_t *img, size_t len, wal_seg_hdr *h);
/* Bytes the record will take. */
size_t wal_rec_size(const store_rec *r);
/* Append the encoded record (r->lsn already set) to out, its CRC not yet
 * salted: records are encoded before it is known which segment they go to. */
void wal_encode(buf *out, const store_rec *r);
/* Salt every record in p[0..n) (whole records, as wal_encode left them)
 * for the segment they are written to. */
void wal_seal(uint8_t *p, size_t n, uint32_t salt);
/* The records of a segment, after its header: calls fn for each intact
 * one, the first with an LSN > prev_lsn, and returns the bytes they span. */
size_t wal_scan_records(const uint8_t *img, size_t len, uint32_t salt, store_lsn prev_lsn,
                        void (*fn)(void *arg, const store_rec *r), void *arg);

/* WAL segment file name "wal/<16 hex>.log" and its parser. */
#define WAL_PATH_LEN 32
void wal_segment_path(char out[WAL_PATH_LEN], uint64_t seg);
/* Sorted segment numbers found in wal/. Caller frees *out. -1 + errno. */
int wal_list_segments(int dirfd, uint64_t **out, size_t *n);

/* ---- catalog.c */

typedef struct catalog_hdr {
    uint64_t next_id;
    uint64_t boundary_seg; /* first WAL segment not covered */
    store_lsn boundary_lsn; /* first LSN not covered */
    uint64_t count;        /* entries */
} catalog_hdr;

/* Serialise one stream entry onto the end of b. */
void catalog_entry_append(buf *b, uint64_t id, uint64_t length, const uint8_t *name,
                          size_t name_len, const uint8_t *meta, size_t meta_len);
/* Write catalog.tmp from h and the serialised entries, fsync (if sync),
 * rename over catalog, fsync the directory. 0, or -1 with errno. */
int catalog_write(int dirfd, const catalog_hdr *h, const buf *entries, bool sync);
/* Load and verify the catalog, calling fn per entry. Returns 1 if loaded, 0
 * if there is none, -1 (message in err) if it is unreadable or corrupt. */
int catalog_load(int dirfd, catalog_hdr *h,
                 void (*fn)(void *arg, uint64_t id, uint64_t length, const uint8_t *name,
                            size_t name_len, const uint8_t *meta, size_t meta_len),
                 void *arg, char *err, size_t errlen);

/* ---- datafile.c */

struct store_file {
    store *owner;
    uint64_t id;
    int fd;
    unsigned refs;   /* the cache holds one while cached */
    bool cached;
    store_file *hnext;          /* hash chain */
    store_file *newer, *older;  /* LRU list, newest at s->lru_head */
};

#define DATAFILE_PATH_LEN 32
void datafile_path(char out[DATAFILE_PATH_LEN], uint64_t id);
void files_init(store *s);
void files_shutdown(store *s);
/* Create (truncating) the data file with its initial bytes and cache it. */
int datafile_create(store *s, uint64_t id, const uint8_t *data, size_t len);
/* Drop the cache's reference (the fd closes when readers let go). */
void datafile_forget(store *s, uint64_t id);
/* Forget and unlink. A missing file is not an error. */
int datafile_unlink(store *s, uint64_t id);
/* fdatasync the data file; a missing file is not an error. */
int datafile_sync(store *s, uint64_t id);
/* A descriptor for writing the data file without caching it: the cached
 * one if there is one (*cached is then set, with a reference), else a new
 * one. -1 + errno. datafile_close gives it back. */
int datafile_open(store *s, uint64_t id, store_file **cached);
void datafile_close(store *s, int fd, store_file *cached);

/* ---- flush.c */

/* Direct WAL writes are whole blocks of this size at offsets aligned to it
 * (a multiple of any device's logical block size). */
#define WAL_BLOCK 4096
/* The direct-write stage's usual size (batches of hundreds of appends);
 * a burst grows it, and it shrinks back after. */
#define WAL_STAGE_CAP (64 * WAL_BLOCK)

/* The segment prepared for the next rotation: zero-filled, or an old one
 * a checkpoint recycled. Not a segment name, so recovery never reads it;
 * store_open removes a leftover one. */
#define WAL_SPARE_PATH "wal/spare"

/* Only the checkpoint thread makes the spare (NONE -> PREPARING -> READY
 * or back to NONE), only the flusher takes it (READY -> TAKEN -> NONE once
 * renamed into place), so neither touches a file the other is using. */
typedef enum spare_state { SPARE_NONE, SPARE_PREPARING, SPARE_READY, SPARE_TAKEN } spare_state;

void *flush_main(void *arg);
/* Make segment seg the one the flusher writes (s->seg_fd), from its start:
 * the spare renamed into place if use_spare, else the file opened or
 * created as it is. Its header gets the salt the records written to it
 * are sealed with, and is written with the first of them. */
int wal_open_segment(store *s, uint64_t seg, uint32_t salt, bool use_spare);
/* A new segment's salt (from the kernel's random source). */
uint32_t wal_salt_new(void);
/* Checkpoint thread: zero-fill and sync a new spare segment. */
void wal_prepare_spare(store *s);

/* ---- checkpoint.c */

struct store_snapshot {
    store *s;
    bool began;
    bool failed;          /* the store had already failed at begin */
    catalog_hdr hdr;
    idmap dirty;          /* data files written before the boundary */
    uint8_t dirty_dirs[32]; /* data/XX dirs with files created before it */
    buf entries;
};

void *checkpoint_main(void *arg);
int checkpoint_run(store *s);

/* ---- spill.c: scratch files for tails (tails_mu held unless noted).
 *
 * When the tails pass their budget, the writer thread moves hundreds of
 * them at once into a spill file, one pwritev, instead of one data file
 * write each. A spill file is anonymous (O_TMPFILE): it is never needed
 * for recovery, since the WAL holds every byte not yet in a data file, and
 * a crash leaves nothing behind. Each spilled piece of a stream (an extent)
 * is a SPILL_HDR_SIZE header, then its bytes:
 *
 *   0  u64 id          the stream
 *   8  u64 pos         where the bytes go in the stream
 *  16  u64 prev_addr   the stream's previous extent, or 0
 *  24  u32 len         bytes that follow
 *  28  u32 prev_len    the previous extent's len
 *
 * so memory keeps only the newest extent of each stream and reads walk
 * back from it. An extent's address is (file number << 32) | offset. */

#define SPILL_HDR_SIZE 32

typedef struct spill_file spill_file;
struct spill_file {
    uint32_t num;      /* from 1, never reused */
    int fd;
    unsigned refs;     /* chains whose range covers it, views, 1 while current */
    uint64_t end;      /* where the next extent goes */
    uint64_t size;     /* the most it held: its share of spill_disk */
    spill_file *next;  /* s->spill_files (ascending num), then s->spill_doomed */
};

/* One stream's extents: its bytes [written, written + bytes). */
typedef struct spill_chain {
    uint64_t addr;        /* newest extent, 0 if none */
    uint32_t len;         /* its length */
    uint32_t first, last; /* the files its extents may be in (each holds a ref) */
    uint64_t bytes;
} spill_chain;

/* Files a reader needs to walk a chain without tails_mu (one ref each). */
typedef struct spill_view {
    spill_chain chain;
    size_t n;
    spill_file *files[];
} spill_view;

void spill_init(store *s);
/* Close every file (store teardown, nothing else running). */
void spill_free(store *s);
/* Whether a batch of up to `bytes` may be spilled now: spilling works here,
 * has not failed lately, the spill files stay under an eighth of the free
 * disk space, and that space still holds the tails' headroom plus twice
 * what the chains owe their data files (once in the spill files, once in
 * the data files, until the first are closed). */
bool spill_usable(store *s, uint64_t bytes);
/* The current file, with room for `bytes` more (rotating: drops tails_mu
 * for the open). NULL if none can be made (spilling is then paused). */
spill_file *spill_current(store *s, uint64_t bytes);
/* A spill write failed (err): pause spilling for a while. */
void spill_pause(store *s, int err);
void spill_hdr_encode(uint8_t out[SPILL_HDR_SIZE], uint64_t id, uint64_t pos, uint32_t len,
                      const spill_chain *prev);
/* The extent of len bytes at addr in file f was written: it is now the
 * chain's newest. */
void spill_chain_add(store *s, spill_chain *c, const spill_file *f, uint64_t addr, uint32_t len);
/* The chain's bytes are in the data file, or the stream is gone. */
void spill_chain_drop(store *s, spill_chain *c);
spill_view *spill_view_take(store *s, const spill_chain *c);
void spill_view_release(store *s, spill_view *v);
/* No lock: copy [a, a + n) out of the view's chain, whose bytes end at
 * `end` in stream id. 0, or -1 with errno (EIO: an extent is not what the
 * chain says). */
int spill_view_read(const spill_view *v, uint64_t id, uint64_t end, uint64_t a, uint8_t *dst,
                    size_t n);
/* Called without tails_mu: close the files no one refers to any more. */
void spill_reap(store *s);

/* ---- tail.c: write-behind.
 *
 * Every live stream has a tail_stream. Its bytes [0, written) are in the
 * data file; [written, length) are not yet: first in spill files (spill),
 * then in memory: the part a write-out is copying (flight), then the tail
 * that appends extend (buf). */

typedef struct tail_mem tail_mem;
typedef struct tail_stream tail_stream;

struct tail_stream {
    uint64_t id;
    uint64_t written;
    uint64_t length;
    tail_stream *hnext;
    spill_chain spill;
    tail_mem *mem; /* NULL while nothing is in memory */
    bool dying;    /* deleted, the delete not yet durable */
    /* Under s->mu, not tails_mu: the s->dirty_epoch whose dirty set has
     * this stream, so an append need not look it up there again. */
    uint64_t dirty_epoch;
};

struct tail_mem {
    tail_stream *owner;         /* NULL once the stream is deleted */
    uint8_t *buf;               /* [written + flight_len, length) */
    size_t len, cap;
    uint8_t *flight;            /* [written + spill.bytes, + flight_len) */
    size_t flight_len;
    bool writing;               /* a write-out (to the file or a spill) owns
                                   the flight */
    bool queued;                /* on the writer's queue of full tails */
    tail_mem *qnext;
    tail_mem *newer, *older;    /* by last append; only while len > 0 */
};

void tails_init(store *s);
void tails_free(store *s);
/* Recovery and store_create: a live stream whose `length` bytes are all in
 * its data file. */
tail_stream *tails_register(store *s, uint64_t id, uint64_t length);
/* store_delete, before logging the delete: the stream is gone for readers
 * and appends (dying), but until the delete is durable a checkpoint that
 * counted it must still find its bytes (tails_sync). dying false undoes it
 * if the delete could not be logged. */
void tails_doom(store *s, uint64_t id, bool dying);
/* The delete is durable (flusher): drop what the stream holds. */
void tails_forget(store *s, uint64_t id);
/* Before logging an append of data at pos: the stream must exist (ENOENT)
 * and pos be its length (EINVAL). *through tells whether to write through
 * (tails_write_through before logging) instead of behind. Returns the
 * stream's tail_stream, which stays valid until the append is done (the
 * owner serialises an append with its stream's delete), or NULL + errno. */
tail_stream *tails_check(store *s, uint64_t id, uint64_t pos, bool *through);
int tails_write_through(store *s, uint64_t id, uint64_t pos, const uint8_t *data, size_t len);
/* After logging: the stream's length grows by len; the bytes are kept in
 * its tail unless they were written through. */
void tails_append(store *s, tail_stream *e, const uint8_t *data, size_t len, bool through);
/* Whether creates write their data through (see tails_check). */
bool tails_through(store *s);
/* Free disk space below which appends are written through; a spare WAL
 * segment is only prepared with this much left over. */
uint64_t tails_headroom(const store *s);
/* Checkpoint: write out every byte of the stream held in memory (waiting
 * for a running write-out), then fdatasync its file if sync. A stream that
 * no longer exists is not an error. 0; 1 with errno ENOSPC or EDQUOT when
 * the write found the disk full (the bytes are still held, and written
 * once there is room); or -1 + errno, a failure the store cannot go on
 * after. */
int tails_sync(store *s, uint64_t id, bool sync);
/* The writer thread: started after recovery; tails_stop joins it and
 * writes out whatever is still held. */
int tails_start(store *s);
void tails_stop(store *s);
/* The tail_stream of id, or NULL (tails_mu held). The tests use it to
 * look at a write-out in flight. */
tail_stream *tails_find_locked(store *s, uint64_t id);

/* ---- recover.c */

int store_recover(store *s, char *err, size_t errlen);

/* ---- the store */

typedef struct store_stats {
    uint64_t records;     /* WAL records logged */
    uint64_t batches;     /* flusher write batches */
    uint64_t syncs;       /* WAL fdatasync calls */
    uint64_t checkpoints; /* completed checkpoints */
    uint64_t spares;      /* zero-filled WAL segments prepared */
    uint64_t recycled;    /* covered WAL segments kept as the spare */
    uint64_t tail_bytes;  /* appended bytes held in memory now */
    uint64_t tail_writes; /* write-outs of tails to data files */
    uint64_t spill_bytes; /* in spill files now (headers and dropped extents too) */
    uint64_t spill_writes; /* batches of tails written to spill files */
} store_stats;

/* For the unit tests: counters since store_open. */
void store_get_stats(store *s, store_stats *out);

struct store {
    store_options opt; /* opt.dir points at dir below */
    char *dir;
    int dirfd;
    int lockfd;
    bool sync; /* durability == STORE_DURABLE */
    uint64_t seg_size; /* bytes a spare segment is zero-filled to */

    pthread_mutex_t mu;
    pthread_cond_t flush_cond;   /* work for the flusher */
    pthread_cond_t durable_cond; /* the flusher made progress or failed */
    pthread_cond_t ckpt_cond;    /* work for the checkpoint thread */

    /* Under mu. */
    buf pending;            /* encoded records not yet handed to the flusher */
    buf pending_deletes;    /* ids (uint64_t) deleted by records in pending */
    bool wake_requested;    /* pending holds records someone wants flushed now */
    bool rotate_pending;    /* pending[rotate_at..] goes to segment rotate_seg */
    size_t rotate_at;
    uint64_t rotate_seg;
    uint64_t next_id;
    store_lsn next_lsn;
    store_lsn durable_lsn;
    uint64_t seg_assigned;  /* segment new records go to */
    uint64_t seg_open;      /* segment the flusher writes (after its last batch) */
    uint64_t wal_bytes;     /* logged since the last snapshot began */
    uint64_t disk_free;     /* bytes free for us at the writer's last look */
    idmap dirty;            /* ids whose data file was written since then */
    uint64_t dirty_epoch;   /* counts the dirty sets taken by snapshots, from 1 */
    uint8_t dirty_dirs[32];
    int failed;             /* errno of a fatal write failure, else 0 */
    /* ENOSPC or EDQUOT while the flusher retries a batch that found the
     * disk full, else 0. New records are refused with it meanwhile. */
    int wal_nospace;
    bool flush_stop, ckpt_stop, ckpt_requested;
    spare_state spare;      /* WAL_SPARE_PATH */
    bool spare_wanted;      /* the checkpoint thread should prepare one */
    store_stats stats;      /* tail_* are kept under tails_mu instead */

    /* Flusher thread only (and recovery, before it starts). */
    int seg_fd;
    bool seg_direct;        /* seg_fd is O_DIRECT (flush.c) */
    bool wal_buffered;      /* direct writes failed here: segments are buffered */
    uint8_t *wal_stage;     /* WAL_BLOCK-aligned buffer for direct writes */
    size_t wal_stage_cap;
    uint64_t seg_off;       /* where the next record goes */
    uint32_t seg_salt;      /* the open segment's salt */
    uint8_t seg_hdr[WAL_SEG_HDR]; /* its header, */
    bool seg_hdr_pending;   /* not written yet: it goes with the first records */
    uint64_t seg_prev_end;  /* the header's prev_end */
    uint64_t seg_alloc;     /* size of the segment file when opened: zeros
                               past seg_off that writes overwrite cheaply */

    /* Descriptor cache, under files_mu. */
    pthread_mutex_t files_mu;
    store_file **fbuckets;
    size_t fnbuckets; /* power of two */
    size_t fcount;
    store_file *lru_head, *lru_tail;

    /* Write-behind (tail.c), under tails_mu. */
    pthread_mutex_t tails_mu;
    pthread_cond_t tails_cond;  /* a write-out finished */
    pthread_cond_t writer_cond; /* work for the writer thread */
    tail_stream **tbuckets;
    size_t tnbuckets; /* power of two */
    size_t tcount;
    tail_mem *tlru_head, *tlru_tail; /* most recently appended at the head */
    tail_mem *tq_head, *tq_tail;     /* tails that reached tail_max */
    uint64_t tail_bytes;             /* in every tail and flight */
    uint64_t tail_writes;
    bool draining;      /* over the budget: write out until half is left */
    bool write_through; /* too little free disk space to write behind */
    bool writer_stop;
    int tail_failed;    /* errno of a failed write-out; nothing more is written */
    int64_t tail_paused_until; /* CLOCK_MONOTONIC ms: a write-out found the disk
                                  full; none is tried before then. 0: not full */
    _Atomic int tail_nospace;  /* its errno meanwhile: new records are refused
                                  with it (read without the lock) */
    pthread_t writer;
    bool writer_started;

    /* Spill files (spill.c), under tails_mu. */
    spill_file *spill_files, *spill_cur, *spill_doomed;
    uint32_t spill_next;      /* number of the next file */
    uint64_t spill_disk;      /* bytes in the files not yet closed */
    uint64_t spill_held;      /* bytes of all chains: owed to data files */
    uint64_t disk_avail;      /* free space, as last seen */
    uint64_t spill_writes;
    int64_t spill_paused_until; /* CLOCK_MONOTONIC seconds; INT64_MAX: for good */

    pthread_mutex_t ckpt_mu;
    pthread_t flusher, checkpointer;
};

/* Mark the store failed for good (under mu): nothing more is logged. */
void store_fail_locked(store *s, int err, const char *what);

/* Whether a failed write can be tried again once space is freed: the disk
 * was full, and nothing was lost, as no fsync failed. */
bool store_no_room(int err);

/* Log that what's writes found the disk full (err) or have room again (0).
 * Meanwhile mutations fail with err, which the owner answers as "no
 * space" (507). */
void store_nospace_log(const store *s, int err, const char *what);

#endif
