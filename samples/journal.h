/*
 * samples/journal.h - an append-only event journal for event-sourced actors.
 *
 * Sample code, not part of libtroupe: it uses only the public API
 * (<troupe.h>, for tr_status and tr_mp_check) and POSIX. An event-sourced
 * actor keeps no state on disk but the list of events that changed it; on
 * start (or restart) it folds the journal's records back into its state, and
 * then appends one record per accepted change.
 *
 * File format (all integers little-endian):
 *
 *   header   8 bytes magic "TRJOURNL", u32 version (1), u32 zero   16 bytes
 *   record   u32 len, u32 crc, len bytes of payload                 8 + len
 *   record   ...
 *
 * `payload` is exactly one msgpack value (tr_mp_check), 1 to max_record
 * bytes. `crc` is the CRC-32C (Castagnoli) of the 4 length bytes followed by
 * the payload, so a damaged length is caught by the checksum too, not only
 * by luck.
 *
 * What a crash leaves, and what replay does about it. tj_append writes a
 * whole record with one write() call on a file opened O_APPEND, so a process
 * killed at any instant (kill -9) leaves each record either entirely in the
 * page cache or not at all: the kernel survives the process, and the file is
 * intact. A power cut is different: the tail written since the last fsync
 * may be lost or half written (a short length, a short payload, zeros, or
 * garbage that fails its checksum). So one bad record at the END of the file
 * is an ordinary event: replay reports it (tj_replay_info.dropped_bytes) and
 * truncates the file to the last good record. A bad record anywhere else
 * means the stored history itself is damaged, and replay must not quietly
 * return a shorter one.
 *
 * Telling the two apart. Let B be the offset of the first record that fails
 * (length out of range or past the end of the file, bad checksum, or a
 * payload that is not one msgpack value). Replay then looks at every byte
 * offset after B for a complete valid record (its length fits before the end
 * of the file, its checksum matches, its payload is one msgpack value). If
 * there is one, the damage is in the middle: TR_ECORRUPT, with B in
 * tj_replay_info.corrupt_offset, and the file is left untouched. If there is
 * none, everything from B to the end is a torn tail and is cut off. The rule
 * errs on the safe side: a valid record after the damage, even one that
 * merely looks valid (a payload that embeds a framed record, or a 1 in 2^32
 * checksum match in garbage), makes replay refuse rather than drop it. Its
 * cost is one checksum per candidate offset after B, paid only when a bad
 * record was found. One more case is refused: with TJ_FLUSH_BATCH or
 * TJ_FLUSH_NONE a power cut can lose an unsynced page in the middle of the
 * unsynced tail while a later one survives; that is reported as TR_ECORRUPT
 * too, for a person to decide (the offset says where to cut).
 *
 * Replay is two passes: the first validates the whole file (and cuts a torn
 * tail), the second calls the callback for every record in order. So a
 * TR_ECORRUPT replay has called the callback for no record at all: an actor
 * never folds half a history and then finds out it was damaged.
 *
 * One writer: a journal file must be opened by one tj_journal at a time
 * (nothing checks this). A tj_journal is not thread-safe; in troupe it
 * belongs to the actor whose state holds it, which runs on one worker at a
 * time, so it needs no lock.
 */
#ifndef TROUPE_SAMPLES_JOURNAL_H
#define TROUPE_SAMPLES_JOURNAL_H

#include <stddef.h>
#include <stdint.h>
#include <troupe.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TJ_MAGIC       "TRJOURNL" /* 8 bytes, no NUL in the file */
#define TJ_VERSION     1u
#define TJ_HEADER_SIZE 16u
#define TJ_RECORD_HEAD 8u /* u32 len + u32 crc */
/* The default and largest record payload: a record is one write(), and an
 * event is small; a length over the limit is treated as damage. */
#define TJ_MAX_RECORD     ((size_t)1 << 20)
#define TJ_DEFAULT_BATCH  64u
#define TJ_MAX_RECORD_CAP ((size_t)1 << 30)

/*
 * When appended records are made durable (fsync; fdatasync where it exists).
 *
 * TJ_FLUSH_BATCH is the default: it fsyncs every `batch` records and on
 * tj_sync / tj_close. A kill -9 loses nothing under any policy (a record is
 * one write(), and the page cache outlives the process); the policies differ
 * only in what a power cut or kernel crash may lose. An fsync costs from
 * tens of microseconds (a good NVMe drive) to milliseconds (a laptop SSD, a
 * network disk); one per event caps an actor at a few hundred to a few
 * thousand events per second and stalls the worker thread it runs on. Batching
 * pays that once per `batch` records and bounds the loss on a power cut to
 * the last batch - 1 records of each journal. Choose TJ_FLUSH_EVENT when an
 * event must be on disk before anyone is told it happened (before the
 * reply), e.g. when several journals must agree after a power cut.
 */
typedef enum tj_flush {
  TJ_FLUSH_BATCH = 0, /* fsync every `batch` records, and on sync/close (default) */
  TJ_FLUSH_EVENT,     /* fsync after every record */
  TJ_FLUSH_NONE,      /* write() only: survives kill -9, not a power cut */
} tj_flush;

typedef struct tj_options {
  tj_flush flush;    /* 0: TJ_FLUSH_BATCH */
  unsigned batch;    /* records per fsync under TJ_FLUSH_BATCH; 0: TJ_DEFAULT_BATCH */
  size_t max_record; /* payload limit in bytes; 0: TJ_MAX_RECORD; at most TJ_MAX_RECORD_CAP */
} tj_options;

typedef struct tj_journal tj_journal;

/* What a replay found. */
typedef struct tj_replay_info {
  uint64_t records;        /* good records, each passed to the callback; 0 after TR_ECORRUPT */
  uint64_t end;            /* offset just past the last good record: after TR_OK, the
                            * file's size; after TR_ECORRUPT, the damage's offset */
  uint64_t dropped_bytes;  /* torn tail cut off (0: the file ended cleanly) */
  uint64_t corrupt_offset; /* TR_ECORRUPT: the offset of the first bad record; else 0 */
} tj_replay_info;

/* Called by tj_replay for each record, in order. `payload` is one msgpack
 * value, borrowed for the call. A non-OK return stops the replay, which
 * returns that status. */
typedef tr_status (*tj_record_fn)(const void *payload, size_t len, void *user);

/*
 * tj_open - open the journal at `path`, creating it (mode 0644) if missing.
 * A new or empty file gets the header (made durable with the file's
 * directory entry, unless the policy is TJ_FLUSH_NONE). A file shorter than
 * the header whose bytes are a prefix of it (a crash while creating it)
 * holds no record and is treated as empty. `opts` may be NULL (defaults).
 * The journal accepts appends only after a successful tj_replay.
 * Ownership: `*out` is the caller's; release it with tj_close. `path` is
 * copied.
 * Errors: TR_EINVAL (NULL path/out, flush out of range, max_record over
 * TJ_MAX_RECORD_CAP), TR_ECORRUPT (not a journal: a bad magic, version or
 * reserved field), TR_ESYS (open, read or write failed; errno tells),
 * TR_ENOMEM. On error nothing is left open.
 */
TR_NODISCARD tr_status tj_open(const char *path, const tj_options *opts, tj_journal **out);

/*
 * tj_replay - read every record from the start of the file, validate all of
 * them, cut a torn tail (see the top of this file), then call `fn(payload,
 * len, user)` for each good record in order. After TR_OK the journal accepts
 * appends, which go after the last good record. Can be called again at any
 * time; it always reads the whole file. `fn` may be NULL (validate and
 * count only). `info` may be NULL; when given it is filled in on return,
 * whatever the status.
 * Errors: TR_EINVAL (NULL j), TR_ECORRUPT (damage before the last record:
 * no callback was made, the file is unchanged, and appends are refused
 * until a later replay succeeds), TR_ESYS (read, truncate or fsync failed),
 * TR_ENOMEM, or the status the callback returned (the records before it
 * were passed; appends are refused).
 */
TR_NODISCARD tr_status tj_replay(tj_journal *j, tj_record_fn fn, void *user, tj_replay_info *info);

/*
 * tj_append - append one record holding `payload` (exactly one msgpack
 * value), with one write() call, retried on EINTR and continued on a short
 * write; then fsync as the flush policy says.
 * Ownership: the payload is copied; the caller keeps its buffer.
 * Errors (nothing was appended): TR_EINVAL (NULL j or payload, len 0),
 * TR_ETOOBIG (len over max_record), TR_EMALFORMED (not one msgpack value),
 * TR_ESTATE (no successful replay yet, or the journal was broken by an
 * earlier I/O error), TR_ENOMEM, TR_ESYS (the write failed; the partial
 * record was cut off again). One exception: TR_ESYS from the fsync that
 * follows a complete write means the record is in the file but may not be
 * durable; the journal then refuses further appends (TR_ESTATE), since after a
 * failed fsync the kernel may have dropped dirty pages: reopen and replay to
 * learn what is on disk.
 */
TR_NODISCARD tr_status tj_append(tj_journal *j, const void *payload, size_t len);

/*
 * tj_sync - make every appended record durable now (fsync), whatever the
 * policy. Errors: TR_EINVAL (NULL), TR_ESYS (the journal then refuses
 * appends, as for tj_append).
 */
TR_NODISCARD tr_status tj_sync(tj_journal *j);

/*
 * tj_close - fsync what is not yet durable (unless the policy is
 * TJ_FLUSH_NONE), close the file and free the journal. NULL is a no-op.
 * Errors: TR_ESYS (the final fsync or close failed; the journal is freed
 * anyway).
 */
tr_status tj_close(tj_journal *j);

/* The byte offset where the next record will go (the file's size as this
 * journal knows it). */
uint64_t tj_size(const tj_journal *j);

/* The CRC-32C of `len` bytes, continuing from `crc` (0 to start). Exposed
 * for tests and tools that build journal files by hand. */
uint32_t tj_crc32c(uint32_t crc, const void *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* TROUPE_SAMPLES_JOURNAL_H */
