/* store.h — the embedded storage engine: durable, crash-safe storage for many
 * append-only byte streams in one data directory.
 *
 * Model. A stream is identified by a 64-bit id allocated by store_id_next()
 * (never reused, also across restarts). A stream has
 *   - name: immutable bytes given at creation (the stream layer's URL path);
 *   - meta: a mutable opaque blob (the stream layer's serialized metadata:
 *           content type, closure, producer state, fork links ...);
 *   - data: bytes [0, length), kept in the stream's own data file exactly as
 *           they are served. The file is written behind: recent appends are
 *           held in memory (the stream's tail) and written to the file later,
 *           many appends in one write. Bytes [0, store_written()) are in the
 *           file (sendfile them), the rest only in memory (store_read copies
 *           any range from wherever it is).
 *
 * Durability. Every mutation is first a checksummed record in a shared
 * write-ahead log (WAL). A mutation is durable once the WAL has been
 * fdatasync'ed past its LSN; a dedicated flusher thread does that for every
 * record written since its last sync at once (group commit) and then calls
 * options.on_durable(lsn). The WAL record carries an append's data, so the
 * data files are never needed for durability: a tail is written to its file
 * (page cache, no fsync) when it reaches options.tail_max bytes, at every
 * checkpoint and at store_close, by the store's own threads. When all tails
 * together pass options.tail_budget, the least recently appended move to
 * anonymous spill files instead, hundreds in one write, and reach their
 * data files at the next checkpoint: with many streams, a data file write
 * per few appends was most of an append's cost. Data can be read
 * (store_read) as soon as store_append returns — but the caller must not
 * expose it to readers before it is durable. While the file system has
 * little free space (less than 4 x tail_budget plus what is spilled),
 * appends are written to the data file before they are logged instead, so
 * a full disk fails the append rather than an acknowledged write-out later.
 * A deleted stream's bytes are kept until its delete is durable: a
 * checkpoint that counted the stream still writes them out.
 *
 * An append's data and its meta change (producer state, closure) are one WAL
 * record, so they become durable atomically.
 *
 * Checkpoints bound the WAL: when the WAL grows past options.checkpoint_bytes
 * (and, with many streams appended to, past 16 KiB for each of them, up to
 * 8 x checkpoint_bytes and an eighth of the free disk space; see checkpoint_due in
 * store.c)
 * the store asks the owner for a snapshot of every live stream
 * (options.snapshot), writes out the tails of the streams appended to since
 * the previous checkpoint and fdatasyncs their data files, writes the
 * catalog (atomically, via rename) and deletes the WAL segments it covers.
 * Deleted streams' data files are unlinked once their delete record is
 * durable. WAL segments are zero-filled ahead of time (a spare, prepared by
 * the checkpoint thread), so a group commit overwrites allocated blocks and
 * its fdatasync need not also persist a new file size.
 *
 * Recovery (store_open) loads the catalog, replays the WAL after it —
 * stopping at the first torn or corrupt record (checksum mismatch, short
 * record; a zero-filled remainder just ends a segment) and truncating it
 * away — rewrites every logged data byte into the data files (those written
 * behind may never have reached them), truncates every data file to its
 * recovered length, removes data files of streams that do not exist, and
 * reports every live stream through options.on_recover.
 *
 * Threads and locks. All store_* calls are thread-safe. The caller may hold
 * its own lock while calling into the store; the store never calls back into
 * the caller while holding its own internal lock, except options.snapshot
 * (see below). on_durable is called on the flusher thread.
 *
 * Files in the data directory:
 *   catalog            last checkpoint (streams, their meta and lengths)
 *   wal/NNNNNNNNNNNNNNNN.log   WAL segments
 *   wal/spare          zero-filled next segment (never replayed; removed at open)
 *   data/XX/<id hex>.dat      stream data files (XX = low byte of id, 256 dirs)
 *   LOCK               flock()ed while a store has the directory open
 * and, while it runs, spill files opened O_TMPFILE in the directory: they
 * have no name and vanish with the process.
 */
#ifndef WEFT_STORE_H
#define WEFT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct store store;
typedef uint64_t store_lsn;

typedef enum store_durability {
    STORE_DURABLE = 0, /* fdatasync the WAL before reporting durable (default) */
    STORE_NOSYNC = 1,  /* report durable after write(2); no fsync at all */
} store_durability;

/* Passed to options.snapshot; the owner calls store_snapshot_add once per
 * live stream. */
typedef struct store_snapshot store_snapshot;

typedef struct store_options {
    const char *dir;
    store_durability durability;
    uint64_t checkpoint_bytes;  /* WAL size that triggers a checkpoint (at least;
                                   see Checkpoints); 0 = 64 MiB. WAL segments are
                                   preallocated to 1.25 x this. */
    unsigned max_open_files;    /* data-file descriptor cache size; 0 = 1024 */
    uint64_t tail_max;          /* a stream's tail is written out at this size; 0 = 64 KiB */
    uint64_t tail_budget;       /* all tails together; 0 = 32 MiB (see Durability) */
    uint64_t spill_file_bytes;  /* a spill file is replaced past this; 0 = 64 MiB */
    void *ctx;                  /* passed to the callbacks */

    /* Flusher thread: every record with LSN <= lsn is durable. LSNs reported
     * are strictly increasing. */
    void (*on_durable)(void *ctx, store_lsn lsn);

    /* Flusher thread, at most once: writing or syncing failed (err is the
     * errno). Records not yet reported durable never will be; every later
     * mutation fails. Called without the store's locks. */
    void (*on_failure)(void *ctx, int err);

    /* store_open only: called once per live stream after recovery. */
    void (*on_recover)(void *ctx, uint64_t id, const uint8_t *name, size_t name_len,
                       const uint8_t *meta, size_t meta_len, uint64_t length);

    /* Checkpoint thread: the owner must, while holding whatever lock
     * serializes its calls to store_create/append/set_meta/delete, call
     * store_snapshot_begin(s), and then store_snapshot_add() once for every
     * stream live at that moment, with its name, meta and length as they
     * were then, before returning. The adds need not all happen under that
     * one hold of the lock: the owner may release it and go on mutating, as
     * long as it adds each stream's state as of begin (for instance by
     * adding a stream just before its first change after begin). Calls are
     * serialized by the owner's lock. */
    void (*snapshot)(void *ctx, store_snapshot *s);
} store_options;

/* Open (creating if needed) and recover the data directory. Returns NULL with
 * a message in err on failure (e.g. directory locked by another process,
 * unreadable catalog). Starts the flusher and checkpoint threads. */
store *store_open(const store_options *opt, char *err, size_t errlen);

/* Make everything written so far durable, stop the threads, close files. */
void store_close(store *s);

uint64_t store_id_next(store *s);

/* Mutations. Each returns the LSN of its WAL record; it is durable once
 * on_durable reports an LSN >= it. A failed write to disk (ENOSPC, EIO) is
 * returned as LSN 0 with errno set; nothing is then logged. */
store_lsn store_create(store *s, uint64_t id, const uint8_t *name, size_t name_len,
                       const uint8_t *meta, size_t meta_len, const uint8_t *data, size_t data_len);
/* Append data at byte position pos (which must equal the stream's current
 * length: else EINVAL; ENOENT if there is no such stream) and, if meta !=
 * NULL, replace the meta blob in the same record. data_len may be 0 (a
 * meta-only change, e.g. close). The caller serialises the mutations of one
 * stream; different streams may be mutated concurrently. */
store_lsn store_append(store *s, uint64_t id, uint64_t pos, const uint8_t *data, size_t data_len,
                       const uint8_t *meta, size_t meta_len);
store_lsn store_set_meta(store *s, uint64_t id, const uint8_t *meta, size_t meta_len);
store_lsn store_delete(store *s, uint64_t id);

/* Batching wake-ups. A mutation normally wakes the flusher at once. After
 * store_defer_wake(true), mutations made on the calling thread only queue
 * their records, and store_wake() hands everything queued to the flusher.
 * An event loop calls store_wake once per iteration, so the records of a
 * whole iteration share one write and one fdatasync, and the flusher is not
 * woken for each. A deferring thread must call store_wake before it blocks. */
void store_defer_wake(bool on);
void store_wake(store *s);

/* Highest LSN known durable. */
store_lsn store_durable_lsn(store *s);

/* ENOSPC or EDQUOT while logged records wait for room in the WAL: they
 * are written (and reported durable) once there is, and mutations fail
 * with this errno until then. Else 0. (A full disk behind the WAL refuses
 * mutations too, but logged records are durable meanwhile.) */
int store_waiting_for_room(store *s);

/* Whether mutations are refused, for health checks: 0, or the errno they
 * fail with, and *for_good whether only a restart (recovery) ends it, after
 * a failed write or fsync, rather than freed disk space. */
int store_refusing(store *s, bool *for_good);

/* Copy bytes [pos, pos + len) of the stream's data into dst, from memory
 * and/or the data file. Returns 0, or -1 with errno: ENOENT (no such
 * stream), EINVAL (the range passes the stream's length), EIO (the data
 * file is shorter than it must be) or a read error; never part of the
 * range. */
int store_read(store *s, uint64_t id, uint64_t pos, void *dst, size_t len);

/* How many leading bytes of the stream are in its data file (0 for no such
 * stream). It only grows, and those bytes stay in the file: a caller may
 * sendfile below it (store_file_acquire) and must use store_read above. */
uint64_t store_written(store *s, uint64_t id);

/* A reference-counted open data file, for pread/sendfile below
 * store_written(). Valid until store_file_release even if the stream is
 * deleted meanwhile. */
typedef struct store_file store_file;
store_file *store_file_acquire(store *s, uint64_t id);  /* NULL + errno on failure */
int store_file_fd(const store_file *f);
void store_file_release(store *s, store_file *f);
/* store_file_release for a callback that takes one pointer (a response's
 * release function): a file knows its store. */
void store_file_done(void *f);

/* Snapshot (see options.snapshot). */
void store_snapshot_begin(store_snapshot *snap);
void store_snapshot_add(store_snapshot *snap, uint64_t id, const uint8_t *name, size_t name_len,
                        const uint8_t *meta, size_t meta_len, uint64_t length);

/* Force a checkpoint now (tests; graceful shutdown). */
int store_checkpoint(store *s);

/* Recovery reader, exposed for the unit tests and fuzz/fuzz_wal.c: scan a
 * WAL segment file's image, calling fn for each intact record in order.
 * Returns the byte length of the valid prefix (the header and the records
 * up to where a torn, corrupt or older tail begins), or 0 if the image
 * does not start with a segment header; *seg (if not NULL) gets the
 * header's segment number. */
typedef enum store_rec_type {
    STORE_REC_CREATE = 1,
    STORE_REC_APPEND = 2,
    STORE_REC_META = 3,
    STORE_REC_DELETE = 4,
} store_rec_type;

typedef struct store_rec {
    store_rec_type type;
    store_lsn lsn;
    uint64_t id;
    uint64_t pos; /* APPEND: data position */
    const uint8_t *name; size_t name_len;  /* CREATE */
    const uint8_t *meta; size_t meta_len;  /* CREATE, META, APPEND (meta_len may be 0 with has_meta false) */
    bool has_meta;
    const uint8_t *data; size_t data_len;  /* CREATE, APPEND */
} store_rec;

size_t store_wal_scan(const uint8_t *img, size_t len, uint64_t *seg,
                      void (*fn)(void *arg, const store_rec *r), void *arg);

#endif
