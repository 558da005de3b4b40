/*
 * msg.c - message memory and the tr_msg_* readers.
 *
 * Memory. A small message (header + payload <= 64 bytes) comes from the
 * sender's pool: a free list that only that sender touches, refilled from
 * 4 KiB slabs. Senders are workers and external participants (one per
 * outside thread, see sched.h's tri_ext); each has a local area with a pool. The message is freed
 * by the worker that handled it, usually the same one (the scheduler keeps communicating actors
 * together). When it is another worker, the block is not freed across cores one by one (a malloc on
 * one core and free on another costs ~260 ns here): it is batched in an outbox per owner and handed
 * back 32 at a time by pushing the whole chain onto the owner's `returned` stack (a Treiber stack
 * that only the owner empties, by exchange, so it has no ABA problem). Blocks owned by external
 * participants are batched the same way, through a one-entry outbox (an outside thread usually
 * sends in bursts). Larger messages use malloc.
 *
 * Pool memory is kept until tr_system_free: slabs are never returned to the
 * system while it runs (a burst leaves its high-water mark in the pools).
 */
#include <stdlib.h>
#include <string.h>

#include "../sched/alloc.h"
#include "internal.h"
#include "mp.h"

#define SLAB_BLOCKS  64u
#define OUTBOX_BATCH 32u

static tri_msg *link_of(tri_msg *m) {
  return (tri_msg *)atomic_load_explicit(&m->node.next, memory_order_relaxed);
}
static void set_link(tri_msg *m, tri_msg *next) {
  atomic_store_explicit(&m->node.next, next != NULL ? &next->node : NULL, memory_order_relaxed);
}

void tri_local_start(tri_local *l, tr_system *sys, uint32_t id, unsigned nworkers) {
  tri_pool *p = &l->pool;
  l->sys = sys;
  l->id = id;
  atomic_init(&l->handled, 0);
  p->free = NULL;
  atomic_init(&p->returned, NULL);
  p->outbox = tri_calloc(nworkers, sizeof *p->outbox); /* NULL: hand back one by one */
  p->ext_ob = (tri_outbox){NULL, NULL, 0};
  p->ext_ob_owner = TRI_MSG_HEAP;
  p->slabs = NULL;
  p->nslabs = p->cap_slabs = 0;
}

void tri_local_destroy(tri_local *l) {
  tri_pool *p = &l->pool;
  for (size_t i = 0; i < p->nslabs; i++)
    free(p->slabs[i]);
  free(p->slabs);
  free(p->outbox);
  p->slabs = NULL;
  p->outbox = NULL;
  p->nslabs = p->cap_slabs = 0;
  p->free = NULL;
}

static bool pool_refill(tri_pool *p, unsigned owner) {
  /* Acquire: pairs with the release CAS in outbox_flush, so the chain's
   * links written by the other worker are visible. */
  tri_msg *chain = atomic_exchange_explicit(&p->returned, NULL, memory_order_acquire);
  if (chain != NULL) {
    p->free = chain;
    return true;
  }
  if (p->nslabs == p->cap_slabs) {
    size_t cap = p->cap_slabs ? p->cap_slabs * 2 : 16;
    void **slabs = tri_realloc(p->slabs, cap * sizeof *slabs);
    if (slabs == NULL)
      return false;
    p->slabs = slabs;
    p->cap_slabs = cap;
  }
  uint8_t *slab = tri_malloc((size_t)SLAB_BLOCKS * TRI_MSG_BLOCK);
  if (slab == NULL)
    return false;
  p->slabs[p->nslabs++] = slab;
  tri_msg *head = NULL;
  for (unsigned i = SLAB_BLOCKS; i-- > 0;) {
    tri_msg *m = (tri_msg *)(slab + (size_t)i * TRI_MSG_BLOCK);
    m->owner = owner;
    atomic_init(&m->node.next, NULL);
    set_link(m, head);
    head = m;
  }
  p->free = head;
  return true;
}

tri_msg *tri_msg_alloc(tri_local *l, size_t len) {
  tri_msg *m;

  if (l != NULL && len <= TRI_MSG_INLINE) {
    tri_pool *p = &l->pool;
    if (p->free == NULL && !pool_refill(p, l->id))
      return NULL;
    m = p->free;
    p->free = link_of(m);
  } else {
    m = tri_malloc(sizeof *m + len);
    if (m == NULL)
      return NULL;
    m->owner = TRI_MSG_HEAP;
  }
  atomic_store_explicit(&m->node.next, NULL, memory_order_relaxed);
  m->len = (uint32_t)len;
  return m;
}

static void outbox_flush(tri_pool *owner_pool, tri_msg *head, tri_msg *tail) {
  tri_msg *top = atomic_load_explicit(&owner_pool->returned, memory_order_relaxed);
  do {
    set_link(tail, top);
    /* Release: the chain's links are visible before the chain is. */
  } while (!atomic_compare_exchange_weak_explicit(&owner_pool->returned, &top, head,
                                                  memory_order_release, memory_order_relaxed));
}

/* The pool that owns blocks of `owner` (a worker or an external record). */
static tri_pool *owner_pool(tri_local *l, uint32_t owner) {
  tri_sched *s = l->sys->sched;
  if (owner < tri_sched_threads(s))
    return &((tri_local *)tri_worker_local(tri_sched_worker(s, owner)))->pool;
  return &((tri_local *)tri_ext_local(tri_sched_ext_by_id(s, owner)))->pool;
}

static void outbox_add(tri_outbox *ob, tri_msg *m) {
  set_link(m, NULL);
  if (ob->tail != NULL)
    set_link(ob->tail, m);
  else
    ob->head = m;
  ob->tail = m;
  ob->n++;
}

static void outbox_send(tri_local *l, tri_outbox *ob, uint32_t owner) {
  if (ob->n != 0)
    outbox_flush(owner_pool(l, owner), ob->head, ob->tail);
  *ob = (tri_outbox){NULL, NULL, 0};
}

void tri_msg_free(tri_local *l, tri_msg *m) {
  if (m->owner == TRI_MSG_HEAP) {
    free(m);
    return;
  }
  if (l == NULL) /* shutdown: slabs are released wholesale */
    return;
  tri_pool *p = &l->pool;
  if (m->owner == l->id) {
    set_link(m, p->free);
    p->free = m;
    return;
  }
  if (m->owner < tri_sched_threads(l->sys->sched)) {
    if (p->outbox == NULL) {
      outbox_flush(owner_pool(l, m->owner), m, m);
      return;
    }
    tri_outbox *ob = &p->outbox[m->owner];
    outbox_add(ob, m);
    if (ob->n >= OUTBOX_BATCH)
      outbox_send(l, ob, m->owner);
    return;
  }
  if (p->ext_ob_owner != m->owner) {
    outbox_send(l, &p->ext_ob, p->ext_ob_owner);
    p->ext_ob_owner = m->owner;
  }
  outbox_add(&p->ext_ob, m);
  if (p->ext_ob.n >= OUTBOX_BATCH)
    outbox_send(l, &p->ext_ob, m->owner);
}

/* ------------------------------------------------------------ readers */

TR_API uint32_t tr_msg_tag(const tr_msg *msg) { return msg ? msg->tag : 0; }

TR_API tr_ref tr_msg_sender(const tr_msg *msg) {
  tr_ref r = TR_REF_NONE;
  if (msg != NULL)
    r.id = msg->sender;
  return r;
}

TR_API const void *tr_msg_payload(const tr_msg *msg, size_t *len) {
  if (msg == NULL) {
    if (len)
      *len = 0;
    return NULL;
  }
  if (len)
    *len = msg->len;
  return msg->bytes;
}

static tr_status get_val(const tr_msg *msg, tr_val *v) {
  if (msg == NULL)
    return TR_EINVAL;
  return tr_mp_get_val(msg->bytes, msg->len, v);
}

/* Decode the payload as one value; `want` (unless NIL, meaning "any")
 * names the only type accepted. Every getter goes through here. */
static tr_status get_typed(const tr_msg *msg, const void *out, tr_val_type want, tr_val *v) {
  if (out == NULL)
    return TR_EINVAL;
  tr_status st = get_val(msg, v);
  if (st == TR_OK && want != TR_VAL_NIL && v->type != want)
    return TR_EDECODE;
  return st;
}

/*
 * The common case, a payload that is exactly one msgpack integer (what
 * tr_send_int and tr_send_uint write), decoded without the general walk.
 * Returns false for anything else, which then takes the general path (and
 * gets its error statuses); where it returns true, the result is the one
 * the general path gives (test_mp checks both on every integer encoding).
 */
static bool int_fast(const tr_msg *msg, uint64_t *u, bool *neg) {
  if (msg == NULL || msg->len == 0)
    return false;
  const uint8_t *p = msg->bytes;
  uint8_t b = p[0];
  if (b <= 0x7f || b >= 0xe0) { /* positive or negative fixint */
    *neg = b >= 0xe0;
    *u = *neg ? (uint64_t)(int64_t)(int8_t)b : b;
    return msg->len == 1;
  }
  if (b < 0xcc || b > 0xd3)
    return false;
  unsigned n = 1u << ((b - 0xcc) & 3); /* 1, 2, 4, 8 bytes */
  if (msg->len != 1 + n)
    return false;
  uint64_t x = 0;
  for (unsigned i = 1; i <= n; i++)
    x = x << 8 | p[i];
  *neg = false;
  if (b >= 0xd0 && n < 8 && (x >> (8 * n - 1)) != 0) { /* sign-extend */
    x |= ~(uint64_t)0 << (8 * n);
    *neg = true;
  } else if (b >= 0xd0 && n == 8) {
    *neg = (int64_t)x < 0;
  }
  *u = x;
  return true;
}

TR_API tr_status tr_msg_get_int(const tr_msg *msg, int64_t *out) {
  uint64_t u;
  bool neg;
  if (out != NULL && int_fast(msg, &u, &neg)) {
    if (!neg && u > INT64_MAX)
      return TR_ERANGE;
    *out = (int64_t)u;
    return TR_OK;
  }
  tr_val v;
  tr_status st = get_typed(msg, out, TR_VAL_NIL, &v);
  return st != TR_OK ? st : tr_val_get_int(&v, out);
}

TR_API tr_status tr_msg_get_uint(const tr_msg *msg, uint64_t *out) {
  uint64_t u;
  bool neg;
  if (out != NULL && int_fast(msg, &u, &neg)) {
    if (neg)
      return TR_ERANGE;
    *out = u;
    return TR_OK;
  }
  tr_val v;
  tr_status st = get_typed(msg, out, TR_VAL_NIL, &v);
  return st != TR_OK ? st : tr_val_get_uint(&v, out);
}

TR_API tr_status tr_msg_get_double(const tr_msg *msg, double *out) {
  tr_val v;
  tr_status st = get_typed(msg, out, TR_VAL_DOUBLE, &v);
  if (st == TR_OK)
    *out = v.as.d;
  return st;
}

TR_API tr_status tr_msg_get_bool(const tr_msg *msg, bool *out) {
  tr_val v;
  tr_status st = get_typed(msg, out, TR_VAL_BOOL, &v);
  if (st == TR_OK)
    *out = v.as.b;
  return st;
}

static tr_status get_bytes(const tr_msg *msg, tr_val_type type, const void **ptr, size_t *len) {
  tr_val v;
  tr_status st = ptr == NULL ? TR_EINVAL : get_typed(msg, len, type, &v);
  if (st == TR_OK) {
    *ptr = v.as.bytes.ptr;
    *len = v.as.bytes.len;
  }
  return st;
}

TR_API tr_status tr_msg_get_str(const tr_msg *msg, const char **ptr, size_t *len) {
  return get_bytes(msg, TR_VAL_STR, (const void **)ptr, len);
}

TR_API tr_status tr_msg_get_bin(const tr_msg *msg, const void **ptr, size_t *len) {
  return get_bytes(msg, TR_VAL_BIN, ptr, len);
}

TR_API bool tr_msg_is_nil(const tr_msg *msg) {
  tr_val v;
  return get_val(msg, &v) == TR_OK && v.type == TR_VAL_NIL;
}

TR_API tr_status tr_msg_get_vals(const tr_msg *msg, tr_val *out, size_t cap, size_t *n) {
  if (msg == NULL || n == NULL)
    return TR_EINVAL;
  return tr_mp_get_vals(msg->bytes, msg->len, out, cap, n);
}
