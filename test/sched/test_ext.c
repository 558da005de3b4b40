/*
 * test_ext.c - threads outside the runtime: their participant records are
 * reused after they exit, a thread can talk to several systems, and their
 * message blocks come back to their pools instead of piling up.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>

#include "../../actor/internal.h"

static _Atomic uint64_t received;

static tr_status sink(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  (void)msg;
  atomic_fetch_add(&received, 1);
  return TR_OK;
}

static const tr_actor_spec sink_spec = {.name = "sink", .behaviour = sink};

static unsigned ext_records(tr_system *sys) {
  unsigned n = 0;
  while (tri_sched_ext_by_id(sys->sched, sys->cfg.threads + n) != NULL)
    n++;
  return n;
}

typedef struct one_shot {
  tr_system *sys;
  tr_ref to;
  tr_status st;
} one_shot;

static void *send_once(void *p) {
  one_shot *o = p;
  o->st = tr_send_int(tr_system_ctx(o->sys), o->to, 1, 42);
  return NULL;
}

Test(ext, records_of_exited_threads_are_reused) {
  tr_system *sys;
  tr_system_config cfg = {.threads = 2};
  tr_ref r;
  atomic_store(&received, 0);
  cr_assert_eq(tr_system_new(&cfg, &sys), TR_OK);
  cr_assert_eq(tr_spawn(tr_system_ctx(sys), &sink_spec, NULL, &r), TR_OK);
  cr_assert_eq(tr_system_start(sys), TR_OK);
  for (int i = 0; i < 200; i++) {
    pthread_t t;
    one_shot o = {sys, r, TR_EINVAL};
    cr_assert_eq(pthread_create(&t, NULL, send_once, &o), 0);
    pthread_join(t, NULL);
    cr_assert_eq(o.st, TR_OK);
  }
  cr_assert_eq(tr_system_wait(sys), TR_OK);
  cr_assert_eq(atomic_load(&received), 200);
  /* Sequential threads: each exits before the next starts and gives its
   * record back, so one record serves them all. */
  cr_assert_eq(ext_records(sys), 1, "%u records for 200 sequential threads", ext_records(sys));
  tr_system_free(sys);
}

Test(ext, one_thread_many_systems) {
  enum { NSYS = 6 }; /* more than a thread caches, so records get evicted */
  tr_system *sys[NSYS];
  tr_ref r[NSYS];
  tr_system_config cfg = {.threads = 1};
  atomic_store(&received, 0);
  for (int i = 0; i < NSYS; i++) {
    cr_assert_eq(tr_system_new(&cfg, &sys[i]), TR_OK);
    cr_assert_eq(tr_spawn(tr_system_ctx(sys[i]), &sink_spec, NULL, &r[i]), TR_OK);
    cr_assert_eq(tr_system_start(sys[i]), TR_OK);
  }
  for (int round = 0; round < 50; round++)
    for (int i = 0; i < NSYS; i++)
      cr_assert_eq(tr_send_int(tr_system_ctx(sys[i]), r[i], 1, round), TR_OK);
  for (int i = 0; i < NSYS; i++) {
    cr_assert_eq(tr_system_wait(sys[i]), TR_OK);
    cr_assert_leq(ext_records(sys[i]), 1);
  }
  cr_assert_eq(atomic_load(&received), 50 * NSYS);
  /* Free one system while this thread still caches its record, then keep
   * using the others: the stale cache entry must never be used. */
  tr_system_free(sys[0]);
  for (int i = 1; i < NSYS; i++)
    cr_assert_eq(tr_send_int(tr_system_ctx(sys[i]), r[i], 1, 0), TR_OK);
  for (int i = 1; i < NSYS; i++) {
    cr_assert_eq(tr_system_wait(sys[i]), TR_OK);
    tr_system_free(sys[i]);
  }
  cr_assert_eq(atomic_load(&received), 50 * NSYS + NSYS - 1);
}

Test(ext, external_message_blocks_return_to_their_pool) {
  tr_system *sys;
  tr_system_config cfg = {.threads = 2};
  tr_ref r;
  atomic_store(&received, 0);
  cr_assert_eq(tr_system_new(&cfg, &sys), TR_OK);
  cr_assert_eq(tr_spawn(tr_system_ctx(sys), &sink_spec, NULL, &r), TR_OK);
  cr_assert_eq(tr_system_start(sys), TR_OK);
  /* 200 bursts of 500: if blocks did not come back, the pool would need
   * 100000 blocks (1563 slabs). */
  for (int burst = 0; burst < 200; burst++) {
    for (int i = 0; i < 500; i++)
      cr_assert_eq(tr_send_int(tr_system_ctx(sys), r, 1, i), TR_OK);
    cr_assert_eq(tr_system_wait(sys), TR_OK);
  }
  cr_assert_eq(atomic_load(&received), 100000);
  tri_ext *e = tri_sched_ext_by_id(sys->sched, sys->cfg.threads);
  cr_assert_not_null(e);
  tri_local *l = tri_ext_local(e);
  cr_assert_lt(l->pool.nslabs, 100, "external pool grew to %zu slabs", l->pool.nslabs);
  tr_system_free(sys);
}
