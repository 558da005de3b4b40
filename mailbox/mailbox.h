/*
 * mailbox.h - an actor's mailbox: a bounded ck_ring (many producers, one
 * consumer) for the fast path, plus an unbounded, counted spill list for what
 * does not fit. Nothing here knows about actors, messages or schedulers: the
 * mailbox stores tri_mbnode links embedded in the caller's items.
 *
 * Discipline, carried in the names as Concurrency Kit does:
 *   *_mp  - any number of threads at once (producers);
 *   *_sc  - only the single consumer (the worker running the owning actor);
 *   *_any - any thread, racy snapshot.
 */
#ifndef TROUPE_MAILBOX_H
#define TROUPE_MAILBOX_H

#include <ck_ring.h>

/* See the top-level CMakeLists.txt: troupe builds ck_ring with 32-byte
 * padding and never links libck, so no compiled ck code sees the layout. */
_Static_assert(CK_MD_CACHELINE == 32, "build troupe with -DCK_MD_CACHELINE=32");
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* The statistics counters (popped, spilled, peak, runs) can be compiled out
 * (-DTROUPE_COUNTERS=0, CMake option TROUPE_COUNTERS=OFF) to measure what
 * they cost; they then read 0. */
#ifndef TROUPE_COUNTERS
#define TROUPE_COUNTERS 1
#endif

/* Embed one of these in every item that goes through a mailbox. */
typedef struct tri_mbnode {
  /* Spill-list link: written by the pushing producer (release), read by the
   * consumer (acquire). Unused while the item sits in the ring. */
  _Atomic(struct tri_mbnode *) next;
  /* Ring p_head seen when the item was spilled: the consumer takes it only
   * after the ring has been consumed up to this ticket (see mailbox.c). */
  uint32_t horizon;
  /* Unused in items: it fills what would be padding. The mailbox's own
   * sentinel node keeps the consumer's run count here (tri_mailbox_begin_sc),
   * so that counter costs an actor no space: its size is budgeted to the
   * byte. Written by the consumer only; read by any thread. */
  _Atomic uint32_t aux;
} tri_mbnode;

typedef struct tri_mailbox {
  /* ck_ring keeps c_head (consumer) and p_head/p_tail (producers) on separate
   * cache lines itself; size and mask are immutable after init. */
  struct ck_ring ring;
  ck_ring_buffer_t *slots; /* immutable after init; `ring.size` entries */

  /* --- written by any producer, atomic --- */
  _Atomic(tri_mbnode *) spill_tail; /* exchange by producers */
  _Atomic uint32_t spill_pending;   /* items spilled and not yet synced away */
  _Atomic uint32_t peak;            /* max depth seen (producers and consumer) */

  tri_mbnode sentinel; /* the spill list's permanent dummy node */

  /* --- written only by the consumer. Last, away from the producers'
   * fields: it writes spill_head for every spilled item it takes. The
   * counters are published once per run (end_sc), not per message. --- */
  tri_mbnode *spill_head;
  uint32_t spill_taken; /* this run; folded into spill_pending at end_sc */
  uint32_t ring_taken;  /* this run */
  _Atomic uint64_t popped;
  _Atomic uint64_t spill_popped; /* items taken off the spill list, ever */
} tri_mailbox;

/*
 * Initialise with a caller-provided slot array of `nslots` entries (a power
 * of two >= 4; the ring holds nslots - 1). Not thread-safe: before any use.
 */
void tri_mailbox_init(tri_mailbox *mb, ck_ring_buffer_t *slots, unsigned nslots);

/* Bytes of slot array needed for `nslots` slots. */
static inline size_t tri_mailbox_slots_size(unsigned nslots) {
  return (size_t)nslots * sizeof(ck_ring_buffer_t);
}

/*
 * Enqueue `node` (any thread). Never fails and never drops: when the ring is
 * full, or items already wait on the spill list, the node is spilled.
 * Returns true when it was spilled. After this returns, the caller must make
 * the owner runnable if it was idle (see sched's ordering argument): the
 * publication above is a release store that a seq_cst fence in the caller
 * orders before its read of the owner's state.
 */
bool tri_mailbox_push_mp(tri_mailbox *mb, tri_mbnode *node);

/*
 * Dequeue the next item in per-producer FIFO order, or NULL when nothing can
 * be taken *now*. NULL is returned without spinning also when a producer has
 * reserved a ring slot but not yet published it, or is half-way through a
 * spill push: that producer makes the owner runnable once it finishes.
 * Consumer only.
 */
tri_mbnode *tri_mailbox_pop_sc(tri_mailbox *mb);

/* True when pop_sc would return an item now. Consumer only. */
bool tri_mailbox_ready_sc(tri_mailbox *mb);

/*
 * Start of a run: record the current depth in the peak (mail piles up while
 * the owner is not running, so a run's start is where the depth peaks), and
 * count the run. Returns that depth. Consumer only.
 */
uint64_t tri_mailbox_begin_sc(tri_mailbox *mb); /* returns the depth */

/*
 * End of a run: fold the consumer's private count of items taken from the
 * spill list back into spill_pending, one atomic per run instead of one per
 * message. Must run before the owner is marked idle, or producers would keep
 * spilling after the spill list is empty. Consumer only.
 */
void tri_mailbox_end_sc(tri_mailbox *mb);

/* popped and spilled count what the consumer's runs have taken, as of the
 * end of its last run; everything is exact once the owner is idle. */
typedef struct tri_mailbox_counters {
  uint64_t received; /* popped + depth */
  uint64_t popped;
  uint64_t spilled;
  uint64_t depth;
  uint64_t peak;
  uint32_t runs; /* consumer runs (begin_sc calls), modulo 2^32 */
} tri_mailbox_counters;

/* Counters; a racy but per-field atomic snapshot. Any thread. */
void tri_mailbox_counters_any(tri_mailbox *mb, tri_mailbox_counters *out);

/* Items waiting now (ring + spill), racy estimate. Any thread. */
uint64_t tri_mailbox_depth_any(tri_mailbox *mb);

#endif /* TROUPE_MAILBOX_H */
