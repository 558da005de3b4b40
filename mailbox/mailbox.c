/*
 * mailbox.c - ring fast path, spill slow path, per-producer FIFO across both.
 *
 * The problem. An actor's mailbox has many producers (any worker, any
 * external thread) and one consumer (the worker running the actor). The fast
 * path is a Concurrency Kit ck_ring in MPSC mode: bounded, so small that an
 * idle actor stays cheap (8 slots = 64 bytes by default). A full ring must
 * never lose or refuse a message, and must never make a producer spin waiting
 * for room: on a 2-core machine a spinning producer can starve the very
 * consumer it waits for.
 *
 * The approach. When the ring is full the producer "spills": it appends the
 * message to an unbounded intrusive MPSC list (Vyukov's, as Pony's messageq
 * uses), which costs one atomic exchange and never waits. Two rules keep
 * messages from one producer in send order across the two paths:
 *
 *  1. While anything is on the spill list (spill_pending > 0), producers
 *     spill instead of using the ring. So once a producer has spilled, its
 *     later messages queue behind the spilled one. spill_pending only drops
 *     after the consumer has taken items off the list, so it never reads 0
 *     while one of that producer's items is still on it.
 *
 *  2. A spilled item records the ring's p_head at the moment it spills (its
 *     "horizon"). Every earlier ring message of the same producer holds a
 *     ticket below that horizon, because the producer's own reservation CAS
 *     came before (program order, one cache line: coherence). The consumer
 *     takes a spilled item only once it has consumed the ring up to the
 *     horizon. So an item in the ring is never overtaken by a later spilled
 *     item of the same producer, even if the consumer looked at the ring just
 *     before that ring item was published.
 *
 * Publication and the ticket convoy. ck_ring MP producers reserve a ticket by
 * CAS on p_head, write the slot, then publish by advancing p_tail in ticket
 * order: a producer preempted between reserve and publish holds back every
 * later one. We use ck's reserve and do our own commit, which spins briefly
 * and then yields the CPU (sched_yield), so the preempted predecessor can run
 * instead of being starved by its successors (prior-art.md §4 measured the
 * pure-spin version collapsing on 2 vCPUs). The consumer never waits at all:
 * an unpublished slot just looks empty, and the producer that publishes it
 * makes the owner runnable afterwards (the caller's duty, see mailbox.h).
 *
 * Invariants.
 *  - An item is in the ring or on the spill list, never both, and the
 *    consumer returns each exactly once.
 *  - spill_pending >= number of items on the spill list.
 *  - pop_sc returns NULL only when the ring looks empty and the spill list
 *    has no takeable head; it never spins.
 */
#include "mailbox.h"
#include "tsan.h"

#include <ck_pr.h>
#include <sched.h>
#include <stddef.h>

/* Spins before the committing producer starts yielding the CPU. */
#define COMMIT_SPINS 64

void tri_mailbox_init(tri_mailbox *mb, ck_ring_buffer_t *slots, unsigned nslots) {
  ck_ring_init(&mb->ring, nslots);
  mb->slots = slots;
  atomic_init(&mb->sentinel.next, NULL);
  mb->sentinel.horizon = 0;
  atomic_init(&mb->sentinel.aux, 0);
  atomic_init(&mb->spill_tail, &mb->sentinel);
  atomic_init(&mb->spill_pending, 0);
  atomic_init(&mb->peak, 0);
  atomic_init(&mb->popped, 0);
  atomic_init(&mb->spill_popped, 0);
  mb->spill_head = &mb->sentinel;
  mb->spill_taken = 0;
  mb->ring_taken = 0;
}

/*
 * Publish ticket `ticket` after every earlier ticket is published. This is
 * ck's _ck_ring_enqueue_commit_mp with a bounded spin: the fields are ck's and
 * are only touched with ck_pr operations, never <stdatomic.h>.
 */
static void ring_commit(struct ck_ring *ring, unsigned ticket) {
  unsigned spins = 0;

  while (ck_pr_load_uint(&ring->p_tail) != ticket) {
    if (++spins < COMMIT_SPINS)
      ck_pr_stall();
    else
      sched_yield();
  }
  /* Store fence: the slot written by our caller must be visible before
   * p_tail says it is; pairs with the load fence in _ck_ring_dequeue_sc
   * between its p_tail load and its slot load. */
  ck_pr_fence_store();
  ck_pr_store_uint(&ring->p_tail, ticket + 1);
}

static void peak_raise(tri_mailbox *mb, uint64_t depth) {
#if TROUPE_COUNTERS
  uint32_t d = depth > UINT32_MAX ? UINT32_MAX : (uint32_t)depth;
  uint32_t cur = atomic_load_explicit(&mb->peak, memory_order_relaxed);

  /* Relaxed: the peak is a statistic and orders nothing. */
  while (d > cur && !atomic_compare_exchange_weak_explicit(&mb->peak, &cur, d, memory_order_relaxed,
                                                           memory_order_relaxed))
    ;
#else
  (void)mb, (void)depth;
#endif
}

static void spill_push(tri_mailbox *mb, tri_mbnode *node) {
  atomic_store_explicit(&node->next, NULL, memory_order_relaxed);
  /* acq_rel exchange. Release: our horizon and payload, written above, are
   * visible to whoever acquires the tail after us. Acquire: we may write to
   * prev->next, a node another producer just published. */
  tri_mbnode *prev = atomic_exchange_explicit(&mb->spill_tail, node, memory_order_acq_rel);
  /* Release: pairs with the acquire load of ->next in spill_front, so the
   * consumer that sees the link sees the whole node. */
  atomic_store_explicit(&prev->next, node, memory_order_release);
}

bool tri_mailbox_push_mp(tri_mailbox *mb, tri_mbnode *node) {
  /* Acquire: pairs with the release in tri_mailbox_end_sc; if we see the
   * count drop to 0, the items it counted have been taken. */
  if (atomic_load_explicit(&mb->spill_pending, memory_order_acquire) == 0) {
    unsigned ticket;
    ck_ring_buffer_t *slot = ck_ring_enqueue_reserve_mpsc(&mb->ring, mb->slots, &ticket);

    if (slot != NULL) {
      TRI_TSAN_RELEASE(node);
      ck_pr_store_ptr(&slot->value, node);
      ring_commit(&mb->ring, ticket);
      return false;
    }
  }

  /* Slow path: rule 1 or a full ring. Count first, so a producer that reads
   * spill_pending after our exchange below cannot see 0 (seq_cst RMW). */
  uint32_t before = atomic_fetch_add_explicit(&mb->spill_pending, 1, memory_order_seq_cst);
  node->horizon = ck_pr_load_uint(&mb->ring.p_head);
  spill_push(mb, node);
  /* A burst raises the peak as it crosses each power of two (one CAS per
   * doubling, not per message); run starts sample it exactly. */
  if ((before & (before + 1)) == 0)
    peak_raise(mb, (uint64_t)ck_ring_size(&mb->ring) + before + 1);
  return true;
}

/*
 * The spill list's head item if the consumer may take it now, else NULL.
 * Skips the sentinel, and re-inserts it behind a lone last item so that item can
 * be unlinked (Vyukov's algorithm). Never waits: a producer half-way through
 * spill_push (tail exchanged, link not yet stored) just makes this NULL.
 */
static tri_mbnode *spill_front(tri_mailbox *mb) {
  tri_mbnode *head = mb->spill_head;
  /* Acquire: pairs with the release store of prev->next in spill_push. */
  tri_mbnode *next = atomic_load_explicit(&head->next, memory_order_acquire);

  if (head == &mb->sentinel) {
    if (next == NULL)
      return NULL;
    mb->spill_head = next;
    head = next;
    next = atomic_load_explicit(&head->next, memory_order_acquire);
  }
  if (next != NULL)
    return head;
  /* head is the last linked node. If it is also the tail, put the sentinel
   * behind it so it can be unlinked; if not, a push is in progress. */
  if (atomic_load_explicit(&mb->spill_tail, memory_order_acquire) != head)
    return NULL;
  spill_push(mb, &mb->sentinel);
  next = atomic_load_explicit(&head->next, memory_order_acquire);
  return next != NULL ? head : NULL;
}

/* Rule 2: the ring must be consumed up to the item's horizon. */
static bool horizon_reached(const tri_mailbox *mb, const tri_mbnode *n) {
  /* c_head is written only by us, the consumer: a plain read is exact.
   * Wrap-safe: both are free-running 32-bit ticket counters. */
  return (int32_t)(mb->ring.c_head - n->horizon) >= 0;
}

tri_mbnode *tri_mailbox_pop_sc(tri_mailbox *mb) {
  void *item;

  if (ck_ring_dequeue_mpsc(&mb->ring, mb->slots, &item)) {
    TRI_TSAN_ACQUIRE(item);
    mb->ring_taken++;
    return item;
  }
  tri_mbnode *n = spill_front(mb);
  if (n == NULL || !horizon_reached(mb, n))
    return NULL;
  mb->spill_head = atomic_load_explicit(&n->next, memory_order_relaxed);
  mb->spill_taken++;
  return n;
}

bool tri_mailbox_ready_sc(tri_mailbox *mb) {
  if (ck_ring_size(&mb->ring) != 0)
    return true;
  tri_mbnode *n = spill_front(mb);
  return n != NULL && horizon_reached(mb, n);
}

uint64_t tri_mailbox_begin_sc(tri_mailbox *mb) {
  uint64_t depth = tri_mailbox_depth_any(mb);
  peak_raise(mb, depth);
#if TROUPE_COUNTERS
  /* Single writer (the consumer): a plain add that readers load atomically.
   * Relaxed: a statistic; it orders nothing. */
  atomic_store_explicit(&mb->sentinel.aux,
                        atomic_load_explicit(&mb->sentinel.aux, memory_order_relaxed) + 1,
                        memory_order_relaxed);
#endif
  return depth;
}

void tri_mailbox_end_sc(tri_mailbox *mb) {
  /* Single writer: plain adds that stats readers may load atomically. */
  uint64_t taken = (uint64_t)mb->ring_taken + mb->spill_taken;
  if (TROUPE_COUNTERS && taken != 0) {
    atomic_store_explicit(&mb->popped,
                          atomic_load_explicit(&mb->popped, memory_order_relaxed) + taken,
                          memory_order_relaxed);
    atomic_store_explicit(&mb->spill_popped,
                          atomic_load_explicit(&mb->spill_popped, memory_order_relaxed) +
                              mb->spill_taken,
                          memory_order_relaxed);
    mb->ring_taken = 0;
  }
  if (mb->spill_taken != 0) {
    /* Release: pairs with the acquire load in tri_mailbox_push_mp. */
    atomic_fetch_sub_explicit(&mb->spill_pending, mb->spill_taken, memory_order_release);
    mb->spill_taken = 0;
  }
}

uint64_t tri_mailbox_depth_any(tri_mailbox *mb) {
  /* ck_ring_size is itself a racy estimate (two separate loads). Pending
   * spills still include what the consumer took this run (spill_taken), so
   * subtracting is right only on the consumer; elsewhere it is an estimate. */
  return (uint64_t)ck_ring_size(&mb->ring) +
         atomic_load_explicit(&mb->spill_pending, memory_order_relaxed);
}

void tri_mailbox_counters_any(tri_mailbox *mb, tri_mailbox_counters *out) {
  out->popped = atomic_load_explicit(&mb->popped, memory_order_relaxed);
  /* Items spilled = taken off the list + still counted as pending there
   * (pending still includes this run's takes until end_sc: exact at rest). */
  out->spilled = atomic_load_explicit(&mb->spill_popped, memory_order_relaxed) +
                 atomic_load_explicit(&mb->spill_pending, memory_order_relaxed);
  out->depth = tri_mailbox_depth_any(mb);
  out->peak = atomic_load_explicit(&mb->peak, memory_order_relaxed);
  out->received = out->popped + out->depth;
  out->runs = atomic_load_explicit(&mb->sentinel.aux, memory_order_relaxed);
}
