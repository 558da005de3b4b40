/*
 * registry.c - refs to actors: index + generation, never a pointer.
 *
 * A tr_ref names a slot (index) and the generation of the actor that held it
 * when the ref was made. Lookup succeeds only while that very actor is still
 * published in its slot, so a ref to a stopped actor is an error, never a
 * dangling pointer, even after the slot is reused (new generation).
 *
 * Slots live in fixed-size chunks reached through a fixed directory; chunks
 * are allocated on demand and never moved or freed before the system, so a
 * reader needs no lock: it loads the directory entry and the slot's actor
 * pointer with acquire. Writers (spawn, stop) take the mutex; they are not on
 * any per-message path. Keeping the actor's memory valid after it was looked
 * up is the scheduler's QSBR's job (sched.c), not this file's.
 */
#include <stdlib.h>

#include "../sched/alloc.h"
#include "internal.h"

void tri_registry_init(tri_registry *r) {
  for (unsigned i = 0; i < TRI_REG_DIR; i++)
    atomic_init(&r->dir[i], NULL);
  pthread_mutex_init(&r->lock, NULL);
  r->free_head = 0;
  r->used = 0;
  r->live = 0;
}

void tri_registry_destroy(tri_registry *r) {
  for (unsigned i = 0; i < TRI_REG_DIR; i++)
    free(atomic_load_explicit(&r->dir[i], memory_order_relaxed));
  pthread_mutex_destroy(&r->lock);
}

static tri_slot *slot_at(tri_registry *r, uint32_t idx) {
  /* Acquire: pairs with the release store that published the chunk. */
  tri_slot *chunk = atomic_load_explicit(&r->dir[idx >> TRI_REG_CHUNK_BITS], memory_order_acquire);
  return chunk == NULL ? NULL : &chunk[idx & (TRI_REG_CHUNK - 1)];
}

tr_status tri_registry_add(tri_registry *r, tri_actor *a) {
  uint32_t idx;
  tr_status st = TR_OK;

  pthread_mutex_lock(&r->lock);
  if (r->free_head != 0) {
    idx = r->free_head - 1;
    r->free_head = slot_at(r, idx)->next_free;
  } else if (r->used < TRI_REG_MAX) {
    idx = r->used;
    unsigned d = idx >> TRI_REG_CHUNK_BITS;
    if (atomic_load_explicit(&r->dir[d], memory_order_relaxed) == NULL) {
      tri_slot *chunk = tri_calloc(TRI_REG_CHUNK, sizeof *chunk);
      if (chunk == NULL) {
        st = TR_ENOMEM;
        goto out;
      }
      /* Release: the zeroed chunk is visible before the pointer to it. */
      atomic_store_explicit(&r->dir[d], chunk, memory_order_release);
    }
    r->used++;
  } else {
    st = TR_ELIMIT;
    goto out;
  }
  tri_slot *s = slot_at(r, idx);
  uint32_t gen = s->gen + 1;
  if (gen == 0) /* 0 means "no ref" */
    gen = 1;
  s->gen = gen;
  a->idx = idx;
  a->gen = gen;
  r->live++;
  /* Release: the actor, fully built by the spawner, is visible before it
   * can be found; pairs with the acquire in tri_registry_get. */
  atomic_store_explicit(&s->actor, a, memory_order_release);
out:
  pthread_mutex_unlock(&r->lock);
  return st;
}

void tri_registry_remove(tri_registry *r, tri_actor *a) {
  pthread_mutex_lock(&r->lock);
  tri_slot *s = slot_at(r, a->idx);
  /* Seq_cst: unpublishing comes before the reclamation epoch is taken
   * (tri_sched_defer), so a worker that has seen that epoch cannot find a. */
  atomic_store_explicit(&s->actor, NULL, memory_order_seq_cst);
  s->next_free = r->free_head;
  r->free_head = a->idx + 1;
  r->live--;
  pthread_mutex_unlock(&r->lock);
}

tri_actor *tri_registry_get(tri_registry *r, tr_ref ref) {
  uint32_t idx = (uint32_t)ref.id;
  uint32_t gen = (uint32_t)(ref.id >> 32);

  if (gen == 0 || idx >= TRI_REG_MAX)
    return NULL;
  tri_slot *s = slot_at(r, idx);
  if (s == NULL)
    return NULL;
  tri_actor *a = atomic_load_explicit(&s->actor, memory_order_acquire);
  return a != NULL && a->gen == gen ? a : NULL;
}

void tri_registry_each(tri_registry *r, void (*fn)(tri_actor *a, void *arg), void *arg) {
  for (uint32_t idx = 0; idx < r->used; idx++) {
    tri_slot *s = slot_at(r, idx);
    tri_actor *a = atomic_load_explicit(&s->actor, memory_order_acquire);
    if (a != NULL)
      fn(a, arg);
  }
}

uint32_t tri_registry_used(tri_registry *r) {
  pthread_mutex_lock(&r->lock);
  uint32_t n = r->used;
  pthread_mutex_unlock(&r->lock);
  return n;
}

tri_actor *tri_registry_at(tri_registry *r, uint32_t idx) {
  tri_slot *s = slot_at(r, idx);
  /* Acquire: pairs with the release store in tri_registry_add. */
  return s == NULL ? NULL : atomic_load_explicit(&s->actor, memory_order_acquire);
}
