/*
 * test_mailbox.c - the mailbox on its own: ring, spill, per-producer FIFO
 * across both, the horizon rule, counters, and many producers at once.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "../../mailbox/mailbox.h"

typedef struct item {
  tri_mbnode node; /* first: a node converts to an item */
  unsigned producer;
  uint64_t seq;
} item;

typedef struct box {
  tri_mailbox mb;
  ck_ring_buffer_t slots[64];
} box;

static void box_init(box *b, unsigned nslots) {
  cr_assert(nslots <= 64);
  tri_mailbox_init(&b->mb, b->slots, nslots);
}

static item *pop(box *b) { return (item *)tri_mailbox_pop_sc(&b->mb); }

Test(mailbox, ring_only_is_fifo) {
  box b;
  item it[7];
  box_init(&b, 8);
  for (unsigned i = 0; i < 7; i++) {
    it[i].seq = i;
    cr_assert_not(tri_mailbox_push_mp(&b.mb, &it[i].node), "item %u spilled with room left", i);
  }
  for (unsigned i = 0; i < 7; i++) {
    item *got = pop(&b);
    cr_assert_not_null(got);
    cr_assert_eq(got->seq, i);
  }
  cr_assert_null(pop(&b));
  cr_assert_not(tri_mailbox_ready_sc(&b.mb));
}

Test(mailbox, full_ring_spills_and_drains_in_order) {
  box b;
  enum { N = 100 };
  item it[N];
  box_init(&b, 8);
  unsigned spilled = 0;
  for (unsigned i = 0; i < N; i++) {
    it[i].seq = i;
    spilled += tri_mailbox_push_mp(&b.mb, &it[i].node);
  }
  cr_assert_eq(spilled, N - 7, "the ring holds size-1 = 7; the rest spill (got %u)", spilled);

  tri_mailbox_counters c;
  tri_mailbox_counters_any(&b.mb, &c);
  cr_assert_eq(c.depth, N);
  cr_assert_eq(c.spilled, N - 7);
  cr_assert_eq(c.received, N);

  tri_mailbox_begin_sc(&b.mb);
  for (unsigned i = 0; i < N; i++) {
    item *got = pop(&b);
    cr_assert_not_null(got, "item %u missing", i);
    cr_assert_eq(got->seq, i, "item %u came out as %llu", i, (unsigned long long)got->seq);
  }
  cr_assert_null(pop(&b));
  tri_mailbox_end_sc(&b.mb);

  tri_mailbox_counters_any(&b.mb, &c);
  cr_assert_eq(c.popped, N);
  cr_assert_eq(c.depth, 0);
  cr_assert_eq(c.received, N);
  cr_assert_eq(c.spilled, N - 7);
  cr_assert_geq(c.peak, N, "peak depth %llu < %d", (unsigned long long)c.peak, N);
}

/* Rule 1: while spilled items wait, new items spill too, even if the ring
 * has room again, so they cannot overtake the spilled ones. */
Test(mailbox, spill_mode_persists_until_consumer_catches_up) {
  box b;
  item it[30];
  box_init(&b, 8);
  for (unsigned i = 0; i < 10; i++) {
    it[i].seq = i;
    tri_mailbox_push_mp(&b.mb, &it[i].node);
  }
  /* Take 5 (the ring now has room), then push more. */
  for (unsigned i = 0; i < 5; i++)
    cr_assert_eq(pop(&b)->seq, i);
  for (unsigned i = 10; i < 20; i++) {
    it[i].seq = i;
    cr_assert(tri_mailbox_push_mp(&b.mb, &it[i].node), "item %u bypassed waiting spilled items", i);
  }
  for (unsigned i = 5; i < 20; i++)
    cr_assert_eq(pop(&b)->seq, i);
  cr_assert_null(pop(&b));
  tri_mailbox_end_sc(&b.mb);

  /* Everything taken and folded: the ring is the fast path again. */
  it[20].seq = 20;
  cr_assert_not(tri_mailbox_push_mp(&b.mb, &it[20].node));
  cr_assert_eq(pop(&b)->seq, 20);
}

/* Rule 2: a spilled item waits for ring slots reserved before it, even when
 * they are not yet published; the consumer does not spin meanwhile. */
Test(mailbox, horizon_orders_spill_behind_reserved_ring_slots) {
  box b;
  item ring_items[3], spilled[10];
  box_init(&b, 4); /* holds 3 */

  /* Three producers reserve the three slots and stall before publishing
   * (one thread cannot publish out of ticket order, so we play all three). */
  unsigned ticket[3];
  ck_ring_buffer_t *slot[3];
  for (unsigned i = 0; i < 3; i++) {
    slot[i] = ck_ring_enqueue_reserve_mpsc(&b.mb.ring, b.mb.slots, &ticket[i]);
    cr_assert_not_null(slot[i]);
    ring_items[i].seq = i;
  }
  /* Others find the ring full and spill, with horizon = 3. */
  for (unsigned i = 0; i < 10; i++) {
    spilled[i].seq = 100 + i;
    cr_assert(tri_mailbox_push_mp(&b.mb, &spilled[i].node));
  }
  /* Nothing can be taken: the ring's head is unpublished and the spilled
   * items must not overtake it. pop returns at once (no spinning). */
  cr_assert_null(pop(&b));
  cr_assert_not(tri_mailbox_ready_sc(&b.mb));

  /* The first stalled producer publishes: its item comes out, and then
   * nothing again, since ticket 1 is still unpublished. */
  ck_pr_store_ptr(&slot[0]->value, &ring_items[0].node);
  ck_ring_enqueue_commit_mpsc(&b.mb.ring, ticket[0]);
  cr_assert(tri_mailbox_ready_sc(&b.mb));
  cr_assert_eq(pop(&b)->seq, 0);
  cr_assert_null(pop(&b), "a spilled item overtook an unpublished earlier ring slot");

  for (unsigned i = 1; i < 3; i++) {
    ck_pr_store_ptr(&slot[i]->value, &ring_items[i].node);
    ck_ring_enqueue_commit_mpsc(&b.mb.ring, ticket[i]);
  }
  cr_assert_eq(pop(&b)->seq, 1);
  cr_assert_eq(pop(&b)->seq, 2);
  for (unsigned i = 0; i < 10; i++)
    cr_assert_eq(pop(&b)->seq, 100 + i);
  cr_assert_null(pop(&b));
}

/* ------------------------------------------------ many producers at once */

enum { PRODUCERS = 4, PER_PRODUCER = 50000 };

typedef struct shared {
  box b;
  item *items;
  _Atomic unsigned started;
} shared;

typedef struct producer_arg {
  shared *s;
  unsigned id;
} producer_arg;

static void *producer(void *p) {
  producer_arg *a = p;
  atomic_fetch_add(&a->s->started, 1);
  while (atomic_load(&a->s->started) < PRODUCERS)
    ;
  for (uint64_t i = 0; i < PER_PRODUCER; i++) {
    item *it = &a->s->items[(size_t)a->id * PER_PRODUCER + i];
    it->producer = a->id;
    it->seq = i;
    tri_mailbox_push_mp(&a->s->b.mb, &it->node);
    if ((i & 1023) == 0)
      sched_yield(); /* let the consumer interleave, so both paths are used */
  }
  return NULL;
}

static void run_many_producers(unsigned nslots) {
  shared *s = calloc(1, sizeof *s);
  s->items = calloc((size_t)PRODUCERS * PER_PRODUCER, sizeof *s->items);
  box_init(&s->b, nslots);
  pthread_t t[PRODUCERS];
  producer_arg args[PRODUCERS];
  for (unsigned i = 0; i < PRODUCERS; i++) {
    args[i] = (producer_arg){s, i};
    pthread_create(&t[i], NULL, producer, &args[i]);
  }
  int64_t next[PRODUCERS] = {0};
  uint64_t got = 0, out_of_order = 0, empty_polls = 0;
  while (got < (uint64_t)PRODUCERS * PER_PRODUCER) {
    tri_mailbox_begin_sc(&s->b.mb);
    for (int k = 0; k < 100; k++) {
      item *it = pop(&s->b);
      if (it == NULL) {
        empty_polls++;
        sched_yield();
        break;
      }
      if ((int64_t)it->seq != next[it->producer])
        out_of_order++;
      next[it->producer] = (int64_t)it->seq + 1;
      got++;
    }
    tri_mailbox_end_sc(&s->b.mb);
  }
  for (unsigned i = 0; i < PRODUCERS; i++)
    pthread_join(t[i], NULL);
  cr_assert_null(pop(&s->b), "more items came out than went in");
  cr_assert_eq(out_of_order, 0, "%llu items out of per-producer order",
               (unsigned long long)out_of_order);
  for (unsigned i = 0; i < PRODUCERS; i++)
    cr_assert_eq(next[i], PER_PRODUCER);
  tri_mailbox_counters c;
  tri_mailbox_counters_any(&s->b.mb, &c);
  cr_assert_eq(c.popped, (uint64_t)PRODUCERS * PER_PRODUCER);
  cr_assert_eq(c.received, c.popped);
  cr_assert_eq(c.depth, 0);
  free(s->items);
  free(s);
}

Test(mailbox, many_producers_small_ring, .timeout = 60) { run_many_producers(4); }
Test(mailbox, many_producers_default_ring, .timeout = 60) { run_many_producers(8); }
Test(mailbox, many_producers_large_ring, .timeout = 60) { run_many_producers(64); }
