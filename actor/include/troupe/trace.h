/*
 * troupe/trace.h - looking inside a running system: a snapshot of every
 * actor's counters in one call, and the event trace.
 *
 * Counters are always on and cheap: each mailbox counts what it received,
 * handled and spilled and how deep it got, and each actor how long its
 * behaviour ran (two clock reads per run, not per message) and how many
 * runs it had (tr_actor_stats). tr_snapshot_take gathers them for every
 * live actor, with the per-worker counters, while the system runs.
 *
 * The event trace records behaviour runs, mailbox depths, steals, parks,
 * dead letters, restarts and actor names into per-worker buffers that a
 * background thread writes to a binary file (docs/trace-format.md);
 * tools/trace/troupe-trace turns it into a table, a Perfetto timeline or an
 * SVG plot. When the trace is off, each hook costs one load and a branch.
 *
 * Environment, read by tr_system_start:
 *   TROUPE_TRACE=path    trace the system into `path` (the process's later
 *                        systems into path.2, path.3, ...), until
 *                        tr_system_stop or tr_system_free;
 *   TROUPE_STATS=ms      print a top-like table of the busiest actors, the
 *                        deepest mailboxes, system totals and per-worker
 *                        runs/steals/parks to stderr every `ms`
 *                        milliseconds, until tr_system_stop or _free;
 *   TROUPE_CLOCK=monotonic   time runs with clock_gettime instead of the
 *                        TSC (see sched/clock.h).
 * A value that cannot be used (a file that cannot be created, a bad number)
 * is reported on stderr and the system starts without it.
 */
#ifndef TROUPE_TRACE_H
#define TROUPE_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of an actor's name kept in a snapshot, the terminating NUL included. */
#define TR_SNAPSHOT_NAME 48

typedef struct tr_actor_snapshot {
  tr_ref ref;
  char name[TR_SNAPSHOT_NAME]; /* the spec's name, cut to fit, NUL-terminated ("" if none) */
  tr_actor_stats stats;        /* as tr_actor_stats_get gives them */
} tr_actor_snapshot;

typedef struct tr_worker_snapshot {
  uint64_t runs;    /* actor runs */
  uint64_t steals;  /* actors it took from another worker's queue */
  uint64_t parks;   /* times it went to sleep */
  uint64_t wakes;   /* times it was woken for work */
  uint64_t handled; /* behaviour calls that returned TR_OK on it */
} tr_worker_snapshot;

typedef struct tr_snapshot {
  uint64_t time_ns; /* CLOCK_MONOTONIC when it was taken */
  bool counters;    /* false in a build with the per-actor counters compiled out
                     * (CMake TROUPE_COUNTERS=OFF): they then read 0 */
  tr_system_stats system;
  size_t nworkers;
  tr_worker_snapshot *workers; /* nworkers entries, by worker index */
  size_t nactors;
  tr_actor_snapshot *actors; /* nactors entries, in ref index order */
} tr_snapshot;

/*
 * tr_snapshot_take - every live actor's counters, the per-worker counters
 * and tr_system_stats, in one call. The system may be running: the actors
 * are visited one after the other, so the snapshot is not taken at one
 * instant (an actor spawned or stopped meanwhile may be in it or not), and
 * each actor's counters are as tr_actor_stats_get describes. It never
 * blocks the workers: it reads the registry without its lock, inside
 * read sections that keep the actors it finds alive.
 * Ownership: `*out` is the caller's; release it with tr_snapshot_free.
 * Errors: TR_EINVAL (NULL), TR_ESTATE (the system is being freed),
 * TR_ENOMEM. Thread-safety: any thread (also inside a behaviour).
 */
TR_API TR_NODISCARD tr_status tr_snapshot_take(tr_system *sys, tr_snapshot **out);

/* Release a snapshot. NULL is a no-op. Any thread. */
TR_API void tr_snapshot_free(tr_snapshot *snap);

/*
 * tr_trace_start - start the event trace into the file at `path` (created
 * or truncated). Its first records name every live actor and give its
 * counters; actors spawned later are named at spawn.
 * The trace's buffers (about 2 MiB per worker) are kept until
 * tr_system_free, for the next trace.
 * Errors: TR_EINVAL (NULL sys or path, empty path), TR_ESTATE (a trace is
 * already running, or the system is stopping or being freed), TR_ESYS (the
 * file cannot be created or written, errno tells why; or the writer thread
 * cannot be started), TR_ENOMEM. An error means no trace is running.
 * Thread-safety: any thread; not concurrently with tr_system_free.
 */
TR_API TR_NODISCARD tr_status tr_trace_start(tr_system *sys, const char *path);

/*
 * tr_trace_stop - stop the trace: write what the buffers hold, every live
 * actor's counters and the end record, and close the file. Events that a
 * worker records while the trace stops may miss the file. tr_system_stop
 * and tr_system_free stop a running trace themselves.
 * Errors: TR_EINVAL (NULL), TR_ESTATE (no trace running), TR_ESYS (writing
 * the file failed at some point: it is incomplete; the trace is stopped
 * anyway). Thread-safety: any thread; not concurrently with tr_system_free.
 */
TR_API tr_status tr_trace_stop(tr_system *sys);

#ifdef __cplusplus
}
#endif

#endif /* TROUPE_TRACE_H */
