/*
 * pipeline - producers, consumers and a staged pipeline with back-pressure.
 *
 * The problem. A producer that is faster than its consumer fills whatever
 * sits between them. With threads the primer's answer is a bounded queue:
 * put() blocks when it is full, get() blocks when it is empty. An actor must
 * not block (it would hold a worker hostage), and a troupe mailbox is
 * unbounded by default, so a fast sender simply piles messages up in a slow
 * receiver's mailbox: memory grows with the backlog, not with the work.
 *
 * Mode `buffer` is the primer's bounded buffer done with messages. P producer
 * actors, one buffer-manager actor that holds at most B items, C consumer
 * actors. Nobody blocks; waiting is a message not yet answered:
 *   - a producer asks for room with WANT(n) and sends n items (PUT) only
 *     once the manager has granted it CREDIT(n), then asks again. The
 *     manager grants no more credit than it has free slots (held + credit
 *     outstanding <= B), so "the producer waits while the buffer is full"
 *     is "its WANT sits in the manager's queue";
 *   - an idle consumer sends REQUEST and gets one ITEM back, at once if the
 *     buffer holds one, else when the next PUT arrives.
 * The protocol bounds every mailbox too: the manager's holds at most B PUTs,
 * P WANTs and C REQUESTs, whatever the speeds, and the sample checks that.
 *
 * Mode `stages` is a four-stage pipeline, each stage a pool of actors:
 *   generate -> parse -> aggregate -> sink
 * A generator makes text records "id,key,value" from a seeded hash of the
 * id; a parser turns the text into a msgpack array [id, key, value]; an
 * aggregator owns the keys routed to it (key % pool size) and keeps their
 * running sums, forwarding [id, key, value, running sum]; a sink tallies.
 * The mailboxes of parse, aggregate and sink are bounded with
 * TR_MAILBOX_HOLD_SENDER (--policy hold, the default): a send into a full
 * mailbox still succeeds, but the sending actor is not run again until the
 * receiver has drained to half its capacity. Back-pressure so travels
 * upstream stage by stage to the generators, which send one chunk (at most
 * half a mailbox) per turn and re-send themselves CONTINUE, as the counter
 * sample's producers do, so that a hold takes effect between chunks. The
 * bound is soft by design: to stay deadlock-free the runtime never holds an
 * actor whose own bounded mailbox is full, so a stage that is itself backed
 * up forwards past the next bound; the stage table counts that as overflow.
 * --policy unbounded runs the same pipeline on default mailboxes, to show
 * where the backlog goes without back-pressure: with a slow sink
 * (--slow-consumer 10) its peak RSS grows with --items, with hold it stays
 * flat.
 *
 * Exactly once. Every item is a pure function of (seed, id), so main
 * replays the generators and knows what must arrive. Each actor tallies
 * what it handled (count, sum of values, xor of a hash of each (id, value));
 * at the end main sends every actor REPORT, and each publishes its tallies
 * into the report slot its init argument pointed it to. Every stage must
 * match the replay, the per-key sums of aggregate and sink must match it key
 * by key, and the last running sum each key reached at the sink must equal
 * the key's total. Completion is tr_system_wait: quiescence means every
 * accepted message was handled (or dead-lettered, which the tallies catch).
 *
 *   pipeline [--mode buffer|stages] [--producers P] [--consumers C]
 *            [--parsers N] [--aggregators N] [--sinks N] [--items N]
 *            [--cost ITER] [--buffer B] [--slow-consumer F]
 *            [--policy hold|unbounded] [--threads T] [--seed S]
 */
#include <getopt.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <troupe.h>

#include "opt.h"

enum {
  START = 1, /* both modes: begin (producers, consumers, generators) */
  REPORT,    /* both modes: publish your tallies into your report slot */
  WANT,      /* producer -> manager: uint, items it would like to send */
  CREDIT,    /* manager -> producer: uint, items it may send now */
  PUT,       /* producer -> manager: uint, one item */
  REQUEST,   /* consumer -> manager: nil, "give me one item" */
  ITEM,      /* manager -> consumer: uint, one item */
  CONTINUE,  /* generator -> itself: send the next chunk */
  RECORD,    /* generator -> parser: str "id,key,value" */
  PARSED,    /* parser -> aggregator: [id, key, value] */
  TOTALLED,  /* aggregator -> sink: [id, key, value, running sum of key] */
};

#define KEYS      64u /* record keys in stages mode */
#define CHUNK_MAX 64  /* most items a producer or generator sends per turn */
#define VALUE_MAX 1000000
/* Main sends START and REPORT through a blocking ctx (tr_ctx_new_blocking):
 * to a full hold-sender mailbox the system's plain ctx gets TR_EFULL, a
 * blocking one waits for room, up to this long. */
#define CTX_WAIT_MS 10000

typedef struct options {
  unsigned threads, producers, consumers, parsers, aggregators, sinks;
  uint64_t items, cost, slow, seed;
  unsigned buffer, chunk;
  bool hold;
  bool buffer_mode, stages_mode;
} options;

/* ---------------------------------------------------------------- items */

/* splitmix64's finaliser: a bijection on 64 bits. */
static uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9u;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebu;
  x ^= x >> 31;
  return x;
}

/* Item `id`'s hash. id -> seed + (id + 1) * odd is a bijection too, so
 * distinct ids give distinct values in buffer mode. */
static uint64_t item_hash(uint64_t seed, uint64_t id) {
  return mix64(seed + (id + 1) * 0x9e3779b97f4a7c15u);
}
static uint64_t record_key(uint64_t h) { return h % KEYS; }
static uint64_t record_value(uint64_t h) { return (h >> 32) % VALUE_MAX; }

/* What a stage saw: exactly once means equal tallies. */
typedef struct tally {
  uint64_t count, sum, hash;
} tally;

static void tally_add(tally *t, uint64_t id, uint64_t value) {
  t->count++;
  t->sum += value;
  t->hash ^= mix64(mix64(id) + value);
}

static bool tally_eq(const tally *a, const tally *b) {
  return a->count == b->count && a->sum == b->sum && a->hash == b->hash;
}

/* `cost` iterations of busy work, standing in for real per-item work. */
static uint64_t burn(uint64_t x, uint64_t cost) {
  for (uint64_t i = 0; i < cost; i++) {
    x = x * 6364136223846793005u + 1442695040888963407u;
#if defined(__GNUC__)
    __asm__ volatile("" : "+r"(x)); /* keep the compiler from folding the loop away */
#endif
  }
  return x;
}

/* -------------------------------------------------------- report slots */

/*
 * Where an actor hands its results to main. Each actor writes only its own
 * slot, once, when it handles REPORT; main reads the slots after the
 * REPORT round is quiescent. `done` orders the two.
 */
typedef struct report {
  tally t;
  uint64_t key_count[KEYS], key_sum[KEYS], key_last[KEYS]; /* aggregate, sink */
  uint64_t held, peak_held, credits, idle;                 /* buffer manager */
  _Atomic bool done;
} report;

/* A pool: the actors of one stage, their refs and their report slots. */
typedef struct pool {
  const char *name;
  unsigned n;
  tr_ref *refs;
  report *reports;
} pool;

/* What every actor starts from (its spawn argument). */
typedef struct actor_arg {
  const options *opt;
  report *out;
  const tr_ref *next; /* downstream actors (or the buffer manager) */
  unsigned nnext;
  unsigned index;        /* this actor's place in its pool */
  uint64_t first, count; /* producers and generators: the ids they make */
} actor_arg;

/* The state every actor begins with. */
typedef struct base {
  const options *opt;
  report *out;
  const tr_ref *next;
  unsigned nnext, index;
  uint64_t next_id, end_id;
  tally t;
  uint64_t junk; /* burn()'s result, kept so the work is not optimised out */
} base;

static void base_init(base *b, const actor_arg *a) {
  b->opt = a->opt;
  b->out = a->out;
  b->next = a->next;
  b->nnext = a->nnext;
  b->index = a->index;
  b->next_id = a->first;
  b->end_id = a->first + a->count;
}

/* Every state starts with a base, so this init serves all but the manager's. */
static tr_status actor_init(void *state, const void *arg) {
  base_init(state, arg);
  return TR_OK;
}

/* Publish the tallies (role-specific fields were written just before). */
static tr_status publish(base *b) {
  b->out->t = b->t;
  /* Release: pairs with the acquire in report_round(), so every field written
   * above is visible to main once it sees `done`. */
  atomic_store_explicit(&b->out->done, true, memory_order_release);
  return TR_OK;
}

/* ====================================================== mode: buffer */

/* -------------------------------------------------------- producer */

static uint64_t left(const base *b) { return b->end_id - b->next_id; }

static tr_status want_more(tr_ctx *ctx, base *b) {
  uint64_t n = left(b) < b->opt->chunk ? left(b) : b->opt->chunk;
  return n > 0 ? tr_send_uint(ctx, b->next[0], WANT, n) : TR_OK;
}

static tr_status producer_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  base *b = state;
  uint64_t k;
  tr_status st;

  switch (tr_msg_tag(msg)) {
  case START:
    return want_more(ctx, b);
  case CREDIT:
    if ((st = tr_msg_get_uint(msg, &k)) != TR_OK)
      return st;
    if (k == 0 || k > left(b))
      return TR_EINVAL; /* more credit than it could use: a protocol bug */
    for (; k > 0; k--, b->next_id++) {
      uint64_t v = item_hash(b->opt->seed, b->next_id);
      b->junk = burn(b->junk ^ v, b->opt->cost);
      if ((st = tr_send_uint(ctx, b->next[0], PUT, v)) != TR_OK)
        return st;
      tally_add(&b->t, v, v);
    }
    return want_more(ctx, b);
  case REPORT:
    return publish(b);
  default:
    return TR_EINVAL; /* an unknown message is a bug: fail the actor */
  }
}

/* -------------------------------------------------------- consumer */

static tr_status consumer_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  base *b = state;
  uint64_t v;
  tr_status st;

  switch (tr_msg_tag(msg)) {
  case START:
    return tr_send(ctx, b->next[0], REQUEST);
  case ITEM:
    if ((st = tr_msg_get_uint(msg, &v)) != TR_OK)
      return st;
    b->junk = burn(b->junk ^ v, b->opt->cost * b->opt->slow);
    tally_add(&b->t, v, v);
    return tr_send(ctx, b->next[0], REQUEST); /* idle again: ask for the next */
  case REPORT:
    return publish(b);
  default:
    return TR_EINVAL;
  }
}

/* -------------------------------------------------------- buffer manager */

typedef struct waiter {
  tr_ref who;
  uint64_t n;
} waiter;

/*
 * Three FIFOs, all allocated at init and never grown: the buffered items
 * (at most B, because credit is never granted past B), the producers waiting
 * for credit (at most P: a producer has one WANT outstanding) and the idle
 * consumers (at most C: one REQUEST each).
 */
typedef struct manager {
  base b;
  uint64_t *items;
  size_t cap, head, held;
  waiter *wants;
  size_t nwants, whead, wlen;
  tr_ref *idle;
  size_t nidle, ihead, ilen;
  uint64_t credits; /* granted, not yet PUT */
  uint64_t peak_held;
} manager;

typedef struct manager_arg {
  actor_arg a;
  unsigned producers, consumers;
} manager_arg;

static void manager_fini(void *state) {
  manager *m = state;
  free(m->items);
  free(m->wants);
  free(m->idle);
}

static tr_status manager_init(void *state, const void *arg) {
  const manager_arg *ma = arg;
  manager *m = state;
  base_init(&m->b, &ma->a);
  m->cap = ma->a.opt->buffer;
  m->nwants = ma->producers;
  m->nidle = ma->consumers;
  m->items = malloc(m->cap * sizeof *m->items);
  m->wants = malloc(m->nwants * sizeof *m->wants);
  m->idle = malloc(m->nidle * sizeof *m->idle);
  if (!m->items || !m->wants || !m->idle) {
    manager_fini(m); /* a failed init gets no fini call: clean up here */
    return TR_ENOMEM;
  }
  return TR_OK;
}

/*
 * Grant credit to waiting producers, oldest first. A producer gets all it
 * asked for (at most half the buffer) once that much room is free, never a
 * slot at a time: otherwise each item a consumer takes would free one slot
 * and cost a CREDIT, a PUT and a WANT of one item each.
 */
static tr_status grant(tr_ctx *ctx, manager *m) {
  while (m->wlen > 0 && m->held + m->credits + m->wants[m->whead].n <= m->cap) {
    waiter *w = &m->wants[m->whead];
    tr_status st = tr_send_uint(ctx, w->who, CREDIT, w->n);
    if (st != TR_OK)
      return st;
    m->credits += w->n;
    m->whead = (m->whead + 1) % m->nwants;
    m->wlen--;
  }
  return TR_OK;
}

static tr_status manager_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  manager *m = state;
  uint64_t v;
  tr_status st;

  switch (tr_msg_tag(msg)) {
  case PUT:
    if ((st = tr_msg_get_uint(msg, &v)) != TR_OK)
      return st;
    if (m->credits == 0)
      return TR_EINVAL; /* a PUT without credit: a protocol bug */
    m->credits--;
    if (m->ilen > 0) { /* a consumer is waiting: hand it over directly */
      tr_ref c = m->idle[m->ihead];
      m->ihead = (m->ihead + 1) % m->nidle;
      m->ilen--;
      if ((st = tr_send_uint(ctx, c, ITEM, v)) != TR_OK)
        return st;
    } else {
      /* held + credits <= cap held before this PUT, so there is room. */
      m->items[(m->head + m->held) % m->cap] = v;
      if (++m->held > m->peak_held)
        m->peak_held = m->held;
    }
    return grant(ctx, m);
  case REQUEST:
    if (m->held > 0) {
      v = m->items[m->head];
      m->head = (m->head + 1) % m->cap;
      m->held--;
      if ((st = tr_send_uint(ctx, tr_msg_sender(msg), ITEM, v)) != TR_OK)
        return st;
      return grant(ctx, m); /* a slot came free */
    }
    if (m->ilen == m->nidle)
      return TR_EINVAL; /* more requests than consumers: a protocol bug */
    m->idle[(m->ihead + m->ilen++) % m->nidle] = tr_msg_sender(msg);
    return TR_OK;
  case WANT:
    if ((st = tr_msg_get_uint(msg, &v)) != TR_OK)
      return st;
    if (v == 0 || v > m->cap || m->wlen == m->nwants)
      return TR_EINVAL; /* more than fits, or a second WANT: a protocol bug */
    m->wants[(m->whead + m->wlen++) % m->nwants] = (waiter){tr_msg_sender(msg), v};
    return grant(ctx, m);
  case REPORT:
    m->b.out->held = m->held;
    m->b.out->peak_held = m->peak_held;
    m->b.out->credits = m->credits;
    m->b.out->idle = m->ilen;
    return publish(&m->b);
  default:
    return TR_EINVAL;
  }
}

/* ====================================================== mode: stages */

/* -------------------------------------------------------- generator */

/* Decimal digits of v at p; returns their number. */
static size_t put_u64(char *p, uint64_t v) {
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0);
  for (size_t i = 0; i < n; i++)
    p[i] = tmp[n - 1 - i];
  return n;
}

static tr_status generator_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  base *b = state;
  tr_status st;

  switch (tr_msg_tag(msg)) {
  case START:
  case CONTINUE: {
    uint64_t n = left(b) < b->opt->chunk ? left(b) : b->opt->chunk;
    for (; n > 0; n--, b->next_id++) {
      uint64_t id = b->next_id, h = item_hash(b->opt->seed, id);
      uint64_t key = record_key(h), value = record_value(h);
      char rec[64];
      size_t len = put_u64(rec, id);
      rec[len++] = ',';
      len += put_u64(rec + len, key);
      rec[len++] = ',';
      len += put_u64(rec + len, value);
      b->junk = burn(b->junk ^ h, b->opt->cost);
      /* Under hold, a full parser still takes the record; this generator is
       * then held after this turn, before its CONTINUE runs. */
      if ((st = tr_send_str(ctx, b->next[id % b->nnext], RECORD, rec, len)) != TR_OK)
        return st;
      tally_add(&b->t, id, value);
    }
    return left(b) > 0 ? tr_send(ctx, tr_self(ctx), CONTINUE) : TR_OK;
  }
  case REPORT:
    return publish(b);
  default:
    return TR_EINVAL;
  }
}

/* -------------------------------------------------------- parser */

/* Read decimal digits at *p up to `term` (or to `end` when term is 0). */
static bool get_field(const char **p, const char *end, char term, uint64_t *out) {
  const char *s = *p;
  uint64_t v = 0;
  if (s == end || *s < '0' || *s > '9')
    return false;
  for (; s < end && *s >= '0' && *s <= '9'; s++) {
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10)
      return false;
    v = v * 10 + d;
  }
  if (term != 0) {
    if (s == end || *s != term)
      return false;
    s++;
  } else if (s != end) {
    return false;
  }
  *p = s;
  *out = v;
  return true;
}

static tr_status parser_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  base *b = state;
  const char *s;
  size_t len;
  uint64_t id, key, value;
  tr_status st;

  switch (tr_msg_tag(msg)) {
  case RECORD: {
    if ((st = tr_msg_get_str(msg, &s, &len)) != TR_OK)
      return st;
    const char *p = s, *end = s + len;
    if (!get_field(&p, end, ',', &id) || !get_field(&p, end, ',', &key) ||
        !get_field(&p, end, 0, &value) || key >= KEYS)
      return TR_EDECODE; /* a malformed record fails the parser (and the check) */
    b->junk = burn(b->junk ^ id, b->opt->cost);
    tr_val out[] = {tr_uint(id), tr_uint(key), tr_uint(value)};
    if ((st = tr_send_vals(ctx, b->next[key % b->nnext], PARSED, out, 3)) != TR_OK)
      return st;
    tally_add(&b->t, id, value);
    return TR_OK;
  }
  case REPORT:
    return publish(b);
  default:
    return TR_EINVAL;
  }
}

/* Decode an array of exactly `n` unsigned integers. */
static tr_status get_uints(const tr_msg *msg, uint64_t *out, size_t n) {
  tr_val v[4];
  size_t got;
  tr_status st = tr_msg_get_vals(msg, v, 4, &got);
  if (st != TR_OK)
    return st;
  if (got != n)
    return TR_EDECODE;
  for (size_t i = 0; i < n; i++)
    if ((st = tr_val_get_uint(&v[i], &out[i])) != TR_OK)
      return st;
  return TR_OK;
}

/* -------------------------------------------------------- aggregator */

typedef struct aggregator {
  base b;
  uint64_t count[KEYS], sum[KEYS];
} aggregator;

static tr_status aggregator_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  aggregator *a = state;
  uint64_t r[3]; /* id, key, value */
  tr_status st;

  switch (tr_msg_tag(msg)) {
  case PARSED: {
    if ((st = get_uints(msg, r, 3)) != TR_OK)
      return st;
    if (r[1] >= KEYS || r[1] % a->b.opt->aggregators != a->b.index)
      return TR_EDECODE; /* not one of this aggregator's keys: misrouted */
    a->b.junk = burn(a->b.junk ^ r[0], a->b.opt->cost);
    a->count[r[1]]++;
    a->sum[r[1]] += r[2];
    tr_val out[] = {tr_uint(r[0]), tr_uint(r[1]), tr_uint(r[2]), tr_uint(a->sum[r[1]])};
    if ((st = tr_send_vals(ctx, a->b.next[r[0] % a->b.nnext], TOTALLED, out, 4)) != TR_OK)
      return st;
    tally_add(&a->b.t, r[0], r[2]);
    return TR_OK;
  }
  case REPORT:
    memcpy(a->b.out->key_count, a->count, sizeof a->count);
    memcpy(a->b.out->key_sum, a->sum, sizeof a->sum);
    return publish(&a->b);
  default:
    return TR_EINVAL;
  }
}

/* -------------------------------------------------------- sink */

typedef struct sink {
  base b;
  uint64_t count[KEYS], sum[KEYS], last[KEYS];
} sink;

static tr_status sink_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  sink *k = state;
  uint64_t r[4]; /* id, key, value, running sum */
  tr_status st;
  (void)ctx;

  switch (tr_msg_tag(msg)) {
  case TOTALLED:
    if ((st = get_uints(msg, r, 4)) != TR_OK)
      return st;
    if (r[1] >= KEYS)
      return TR_EDECODE;
    /* The slow consumer: --slow-consumer multiplies the last stage's cost. */
    k->b.junk = burn(k->b.junk ^ r[0], k->b.opt->cost * k->b.opt->slow);
    k->count[r[1]]++;
    k->sum[r[1]] += r[2];
    if (r[3] > k->last[r[1]])
      k->last[r[1]] = r[3]; /* running sums only grow: the largest is the latest */
    tally_add(&k->b.t, r[0], r[2]);
    return TR_OK;
  case REPORT:
    memcpy(k->b.out->key_count, k->count, sizeof k->count);
    memcpy(k->b.out->key_sum, k->sum, sizeof k->sum);
    memcpy(k->b.out->key_last, k->last, sizeof k->last);
    return publish(&k->b);
  default:
    return TR_EINVAL;
  }
}

/* ====================================================== main */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int check(tr_status st, const char *what) {
  if (st != TR_OK)
    fprintf(stderr, "pipeline: %s: %s (%s)\n", what, tr_strerror(st), tr_status_name(st));
  return st != TR_OK;
}

/* Peak resident set of the whole process so far, in MiB. */
static double peak_rss_mib(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return 0;
  return (double)ru.ru_maxrss / 1024.0; /* Linux reports KiB */
}

static int pool_new(pool *p, const char *name, unsigned n) {
  p->name = name;
  p->n = n;
  p->refs = calloc(n, sizeof *p->refs);
  p->reports = calloc(n, sizeof *p->reports);
  if (p->refs && p->reports)
    return 0;
  fprintf(stderr, "pipeline: out of memory\n");
  return 1;
}

static void pool_free(pool *p) {
  free(p->refs);
  free(p->reports);
}

/* The spec of a stage's actors: bounded with HOLD_SENDER under --policy
 * hold when `bounded`, else the default unbounded mailbox. */
static tr_actor_spec stage_spec(const char *name, tr_behaviour behaviour, size_t state_size,
                                tr_status (*init)(void *, const void *), const options *o,
                                bool bounded) {
  tr_actor_spec spec = {
      .name = name, .behaviour = behaviour, .state_size = state_size, .init = init};
  if (bounded && o->hold) {
    spec.mailbox_policy = TR_MAILBOX_HOLD_SENDER;
    spec.mailbox_capacity = o->buffer;
  }
  return spec;
}

/* Spawn pool `p`: each actor gets `tmpl` with its own index and report
 * slot, and, when `items` > 0, its share of the ids [0, items). */
static int pool_spawn(tr_ctx *ctx, pool *p, const tr_actor_spec *spec, actor_arg tmpl,
                      uint64_t items) {
  uint64_t first = 0;
  for (unsigned i = 0; i < p->n; i++) {
    actor_arg a = tmpl;
    a.index = i;
    a.out = &p->reports[i];
    a.first = first;
    a.count = items / p->n + (i < items % p->n);
    first += a.count;
    char what[64];
    snprintf(what, sizeof what, "spawn %s %u", p->name, i);
    if (check(tr_spawn(ctx, spec, &a, &p->refs[i]), what))
      return 1;
  }
  return 0;
}

/* Send `tag` to every actor of a pool (to all that can be reached). */
static int pool_send(tr_ctx *ctx, const pool *p, uint32_t tag) {
  int bad = 0;
  for (unsigned i = 0; i < p->n; i++) {
    char what[64];
    snprintf(what, sizeof what, "send to %s %u", p->name, i);
    bad |= check(tr_send(ctx, p->refs[i], tag), what);
  }
  return bad;
}

/* A stage's mailbox counters: summed over its actors, peak depth the max. */
typedef struct stage_stats {
  uint64_t handled, spilled, peak, capacity, holds, overflow;
  unsigned stopped; /* actors that failed (their stats are gone) */
} stage_stats;

static int pool_stats(tr_ctx *ctx, const pool *p, stage_stats *s) {
  *s = (stage_stats){0};
  for (unsigned i = 0; i < p->n; i++) {
    tr_actor_stats as = {0};
    tr_status st = tr_actor_stats_get(ctx, p->refs[i], &as);
    if (st == TR_ESTALE) { /* it failed and stopped: say so, count the rest */
      s->stopped++;
      continue;
    }
    if (check(st, "actor stats"))
      return 1;
    s->handled += as.handled;
    s->spilled += as.spilled;
    s->peak = as.peak_depth > s->peak ? as.peak_depth : s->peak;
    s->capacity = as.capacity;
    s->holds += as.holds;
    s->overflow += as.overflow;
  }
  return s->stopped > 0;
}

static int print_stages(tr_ctx *ctx, pool *const *pools, size_t n, stage_stats *out) {
  int bad = 0;
  printf("  %-10s %6s %10s %8s %10s %8s %8s %8s\n", "stage", "actors", "handled", "bound",
         "peak depth", "spilled", "holds", "overflow");
  for (size_t i = 0; i < n; i++) {
    stage_stats s;
    if (pool_stats(ctx, pools[i], &s) && s.stopped == 0)
      return 1;
    char bound[24] = "-";
    if (s.capacity > 0)
      snprintf(bound, sizeof bound, "%llu", (unsigned long long)s.capacity);
    printf("  %-10s %6u %10llu %8s %10llu %8llu %8llu %8llu\n", pools[i]->name, pools[i]->n,
           (unsigned long long)s.handled, bound, (unsigned long long)s.peak,
           (unsigned long long)s.spilled, (unsigned long long)s.holds,
           (unsigned long long)s.overflow);
    if (s.stopped > 0) {
      printf("  %-10s %u of %u actors stopped (failed)\n", "", s.stopped, pools[i]->n);
      bad = 1;
    }
    if (out)
      out[i] = s;
  }
  return bad;
}

static int print_system(tr_system *sys) {
  tr_system_stats ss = {0};
  if (check(tr_system_stats_get(sys, &ss), "system stats"))
    return 1;
  uint64_t dead = 0;
  for (int r = 0; r < TR_DEAD_REASON_COUNT; r++)
    dead += ss.dead_letters[r];
  printf("system: sent %llu, handled %llu, holds %llu, refused %llu, dead letters %llu\n",
         (unsigned long long)ss.sent, (unsigned long long)ss.handled, (unsigned long long)ss.holds,
         (unsigned long long)ss.refused, (unsigned long long)dead);
  for (int r = 0; r < TR_DEAD_REASON_COUNT; r++)
    if (ss.dead_letters[r] > 0)
      printf("  dead letters %s: %llu\n", tr_dead_reason_name((tr_dead_reason)r),
             (unsigned long long)ss.dead_letters[r]);
  return dead > 0; /* this pipeline loses nothing: any dead letter is a failure */
}

/* Ask every actor of every pool to publish, wait, and check each did. */
static int report_round(tr_system *sys, tr_ctx *ctx, pool *const *pools, size_t n) {
  int bad = 0;
  for (size_t i = 0; i < n; i++)
    bad |= pool_send(ctx, pools[i], REPORT);
  bad |= check(tr_system_wait(sys), "wait for reports");
  for (size_t i = 0; i < n; i++)
    for (unsigned j = 0; j < pools[i]->n; j++)
      /* Acquire: pairs with the release in publish(). */
      if (!atomic_load_explicit(&pools[i]->reports[j].done, memory_order_acquire)) {
        fprintf(stderr, "pipeline: %s %u did not report (did it fail?)\n", pools[i]->name, j);
        bad = 1;
      }
  return bad;
}

static tally pool_tally(const pool *p) {
  tally t = {0};
  for (unsigned i = 0; i < p->n; i++) {
    t.count += p->reports[i].t.count;
    t.sum += p->reports[i].t.sum;
    t.hash ^= p->reports[i].t.hash;
  }
  return t;
}

static int expect_tally(const pool *p, const tally *want) {
  tally got = pool_tally(p);
  bool ok = tally_eq(&got, want);
  printf("  %-10s count %llu of %llu, sum %llu, hash %016llx: %s\n", p->name,
         (unsigned long long)got.count, (unsigned long long)want->count,
         (unsigned long long)got.sum, (unsigned long long)got.hash, ok ? "OK" : "MISMATCH");
  return !ok;
}

static void print_timing(const options *o, double t0, double t1, double rss0) {
  double s = t1 - t0;
  printf("throughput: %llu items in %.3f s = %.0f items/s\n", (unsigned long long)o->items, s,
         s > 0 ? (double)o->items / s : 0.0);
  printf("peak RSS: %.1f MiB (process peak before this run: %.1f MiB)\n", peak_rss_mib(), rss0);
}

/* ------------------------------------------------------- mode: buffer */

static int run_buffer(const options *o) {
  double rss0 = peak_rss_mib(), t0 = 0, t1 = 0;
  tr_system *sys;
  tr_system_config cfg = {.threads = o->threads};
  if (check(tr_system_new(&cfg, &sys), "system"))
    return 1;
  tr_ctx *ctx = tr_system_ctx(sys), *bctx = NULL;
  pool prod = {0}, mgr = {0}, cons = {0};
  pool *const pools[] = {&prod, &mgr, &cons};
  int bad = check(tr_ctx_new_blocking(sys, CTX_WAIT_MS, &bctx), "blocking ctx");
  bad |= pool_new(&prod, "producer", o->producers) | pool_new(&mgr, "buffer", 1) |
         pool_new(&cons, "consumer", o->consumers);
  if (bad)
    goto out;

  /* Producers and consumers need no bounded mailbox: the credit protocol
   * bounds what any of them can be sent. */
  tr_actor_spec mgr_spec =
      stage_spec("buffer", manager_behaviour, sizeof(manager), manager_init, o, false);
  mgr_spec.fini = manager_fini;
  tr_actor_spec prod_spec =
      stage_spec("producer", producer_behaviour, sizeof(base), actor_init, o, false);
  tr_actor_spec cons_spec =
      stage_spec("consumer", consumer_behaviour, sizeof(base), actor_init, o, false);
  manager_arg ma = {.a = {.opt = o, .out = &mgr.reports[0]},
                    .producers = o->producers,
                    .consumers = o->consumers};
  if ((bad = check(tr_spawn(ctx, &mgr_spec, &ma, &mgr.refs[0]), "spawn buffer")))
    goto out;
  actor_arg tmpl = {.opt = o, .next = mgr.refs, .nnext = 1};
  if ((bad = pool_spawn(ctx, &cons, &cons_spec, tmpl, 0) |
             pool_spawn(ctx, &prod, &prod_spec, tmpl, o->items)))
    goto out;
  if ((bad = check(tr_system_start(sys), "start")))
    goto out;

  printf("pipeline buffer: %u worker threads, %u producers -> buffer of %u items -> %u "
         "consumers\n  %llu items, cost %llu per item, consumers x%llu slower, seed %llu\n",
         tr_system_threads(sys), o->producers, o->buffer, o->consumers,
         (unsigned long long)o->items, (unsigned long long)o->cost, (unsigned long long)o->slow,
         (unsigned long long)o->seed);
  t0 = now();
  bad |= pool_send(bctx, &cons, START) | pool_send(bctx, &prod, START);
  bad |= check(tr_system_wait(sys), "wait");
  t1 = now();
  stage_stats st[3];
  bad |= print_stages(ctx, pools, 3, st);
  print_timing(o, t0, t1, rss0);
  bad |= print_system(sys);
  bad |= report_round(sys, bctx, pools, 3);
  if (bad)
    goto out;

  tally want = {0};
  for (uint64_t id = 0; id < o->items; id++) {
    uint64_t v = item_hash(o->seed, id);
    tally_add(&want, v, v);
  }
  printf("check (against a replay of the producers):\n");
  bad |= expect_tally(&prod, &want) | expect_tally(&cons, &want);
  /* The protocol also bounds the manager's mailbox by B + P + C (PUTs
   * against credit, one WANT per producer, one REQUEST per consumer). That
   * is printed, not checked: peak_depth is a statistic sampled at run
   * starts and spills, and may run a little above the true peak. */
  const report *m = &mgr.reports[0];
  bool buf_ok =
      m->peak_held <= o->buffer && m->held == 0 && m->credits == 0 && m->idle == o->consumers;
  printf("  buffer     peak %llu of %u items held, %llu left, %llu credit outstanding, %llu of %u "
         "consumers idle: %s\n",
         (unsigned long long)m->peak_held, o->buffer, (unsigned long long)m->held,
         (unsigned long long)m->credits, (unsigned long long)m->idle, o->consumers,
         buf_ok ? "OK" : "MISMATCH");
  printf("  buffer     mailbox peak depth %llu (protocol bound B + P + C = %llu)\n",
         (unsigned long long)st[1].peak,
         (unsigned long long)o->buffer + o->producers + o->consumers);
  bad |= !buf_ok;

out:
  if (bctx)
    tr_ctx_free(bctx);
  tr_system_free(sys);
  for (size_t i = 0; i < 3; i++)
    pool_free(pools[i]);
  return bad;
}

/* ------------------------------------------------------- mode: stages */

static int run_stages(const options *o) {
  double rss0 = peak_rss_mib(), t0 = 0, t1 = 0;
  tr_system *sys;
  tr_system_config cfg = {.threads = o->threads};
  if (check(tr_system_new(&cfg, &sys), "system"))
    return 1;
  tr_ctx *ctx = tr_system_ctx(sys), *bctx = NULL;
  pool gen = {0}, par = {0}, agg = {0}, snk = {0};
  pool *const pools[] = {&gen, &par, &agg, &snk};
  int bad = check(tr_ctx_new_blocking(sys, CTX_WAIT_MS, &bctx), "blocking ctx");
  bad |= pool_new(&gen, "generate", o->producers) | pool_new(&par, "parse", o->parsers) |
         pool_new(&agg, "aggregate", o->aggregators) | pool_new(&snk, "sink", o->sinks);
  if (bad)
    goto out;

  /* Downstream first, so each stage is spawned knowing the refs of the next
   * (the arrays are not written again once an upstream actor has them). */
  tr_actor_spec gen_spec =
      stage_spec("generate", generator_behaviour, sizeof(base), actor_init, o, false);
  tr_actor_spec par_spec = stage_spec("parse", parser_behaviour, sizeof(base), actor_init, o, true);
  tr_actor_spec agg_spec =
      stage_spec("aggregate", aggregator_behaviour, sizeof(aggregator), actor_init, o, true);
  tr_actor_spec snk_spec = stage_spec("sink", sink_behaviour, sizeof(sink), actor_init, o, true);
  if ((bad = pool_spawn(ctx, &snk, &snk_spec, (actor_arg){.opt = o}, 0)))
    goto out;
  if ((bad = pool_spawn(ctx, &agg, &agg_spec,
                        (actor_arg){.opt = o, .next = snk.refs, .nnext = snk.n}, 0)))
    goto out;
  if ((bad = pool_spawn(ctx, &par, &par_spec,
                        (actor_arg){.opt = o, .next = agg.refs, .nnext = agg.n}, 0)))
    goto out;
  if ((bad = pool_spawn(ctx, &gen, &gen_spec,
                        (actor_arg){.opt = o, .next = par.refs, .nnext = par.n}, o->items)))
    goto out;
  if ((bad = check(tr_system_start(sys), "start")))
    goto out;

  char policy[64] = "unbounded mailboxes";
  if (o->hold)
    snprintf(policy, sizeof policy, "hold-sender mailboxes of %u", o->buffer);
  printf("pipeline stages: %u worker threads, generate %u -> parse %u -> aggregate %u -> sink "
         "%u\n  %llu items, cost %llu per item per stage, sink x%llu slower, %s, seed %llu\n",
         tr_system_threads(sys), o->producers, o->parsers, o->aggregators, o->sinks,
         (unsigned long long)o->items, (unsigned long long)o->cost, (unsigned long long)o->slow,
         policy, (unsigned long long)o->seed);
  t0 = now();
  bad |= pool_send(bctx, &gen, START);
  bad |= check(tr_system_wait(sys), "wait");
  t1 = now();
  bad |= print_stages(ctx, pools, 4, NULL);
  print_timing(o, t0, t1, rss0);
  bad |= print_system(sys);
  bad |= report_round(sys, bctx, pools, 4);
  if (bad)
    goto out;

  tally want = {0};
  uint64_t count[KEYS] = {0}, sum[KEYS] = {0};
  for (uint64_t id = 0; id < o->items; id++) {
    uint64_t h = item_hash(o->seed, id);
    tally_add(&want, id, record_value(h));
    count[record_key(h)]++;
    sum[record_key(h)] += record_value(h);
  }
  printf("check (against a replay of the generators):\n");
  for (size_t i = 0; i < 4; i++)
    bad |= expect_tally(pools[i], &want);
  /* Key by key: the aggregators' sums, the sinks' sums, and the last
   * running sum the sinks saw must all be the replay's. */
  unsigned agg_bad = 0, snk_bad = 0, last_bad = 0;
  for (unsigned k = 0; k < KEYS; k++) {
    uint64_t ac = 0, as = 0, sc = 0, ss = 0, last = 0;
    for (unsigned i = 0; i < agg.n; i++) {
      ac += agg.reports[i].key_count[k];
      as += agg.reports[i].key_sum[k];
    }
    for (unsigned i = 0; i < snk.n; i++) {
      sc += snk.reports[i].key_count[k];
      ss += snk.reports[i].key_sum[k];
      if (snk.reports[i].key_last[k] > last)
        last = snk.reports[i].key_last[k];
    }
    agg_bad += ac != count[k] || as != sum[k];
    snk_bad += sc != count[k] || ss != sum[k];
    last_bad += last != sum[k];
  }
  printf("  per key    %u keys: aggregate sums %s, sink sums %s, last running sums %s\n", KEYS,
         agg_bad ? "MISMATCH" : "OK", snk_bad ? "MISMATCH" : "OK", last_bad ? "MISMATCH" : "OK");
  bad |= agg_bad || snk_bad || last_bad;

out:
  if (bctx)
    tr_ctx_free(bctx);
  tr_system_free(sys);
  for (size_t i = 0; i < 4; i++)
    pool_free(pools[i]);
  return bad;
}

/* ------------------------------------------------------- options */

enum { OPT_PARSERS = 256, OPT_AGGREGATORS, OPT_SINKS, OPT_POLICY, OPT_SEED };

static const struct option long_options[] = {
    {"mode", required_argument, NULL, 'm'},
    {"producers", required_argument, NULL, 'p'},
    {"consumers", required_argument, NULL, 'c'},
    {"parsers", required_argument, NULL, OPT_PARSERS},
    {"aggregators", required_argument, NULL, OPT_AGGREGATORS},
    {"sinks", required_argument, NULL, OPT_SINKS},
    {"items", required_argument, NULL, 'n'},
    {"cost", required_argument, NULL, 'w'},
    {"buffer", required_argument, NULL, 'b'},
    {"slow-consumer", required_argument, NULL, 's'},
    {"policy", required_argument, NULL, OPT_POLICY},
    {"threads", required_argument, NULL, 't'},
    {"seed", required_argument, NULL, OPT_SEED},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *f, const char *argv0) {
  fprintf(f,
          "usage: %s [options]\n"
          "  -m, --mode buffer|stages   one mode (default: both, one after the other)\n"
          "  -p, --producers N          producer / generator actors (2)\n"
          "  -c, --consumers N          consumer actors; default parse and aggregate pools (2)\n"
          "      --parsers N            parse actors (= consumers)\n"
          "      --aggregators N        aggregate actors (= consumers)\n"
          "      --sinks N              sink actors (1)\n"
          "  -n, --items N              items in all, k and M suffixes allowed (1M)\n"
          "  -w, --cost N               busy-loop iterations per item per stage (200)\n"
          "  -b, --buffer B             buffer size / stage mailbox capacity (64)\n"
          "  -s, --slow-consumer F      consumers (buffer) / sink (stages) do F x the cost (1)\n"
          "      --policy hold|unbounded  mailboxes between stages (hold)\n"
          "  -t, --threads N            worker threads, 0 = one per CPU (0)\n"
          "      --seed S               record generator seed (1)\n",
          argv0);
}

static int parse_options(int argc, char **argv, options *o) {
  *o = (options){.producers = 2,
                 .consumers = 2,
                 .sinks = 1,
                 .items = 1000000,
                 .cost = 200,
                 .slow = 1,
                 .seed = 1,
                 .buffer = 64,
                 .hold = true,
                 .buffer_mode = true,
                 .stages_mode = true};
  int opt;
  while ((opt = getopt_long(argc, argv, "m:p:c:n:w:b:s:t:h", long_options, NULL)) != -1) {
    uint64_t v = 0;
    bool ok = true;
    switch (opt) {
    case 'm':
      o->buffer_mode = strcmp(optarg, "buffer") == 0;
      o->stages_mode = strcmp(optarg, "stages") == 0;
      ok = o->buffer_mode || o->stages_mode;
      break;
    case OPT_POLICY:
      o->hold = strcmp(optarg, "hold") == 0;
      ok = o->hold || strcmp(optarg, "unbounded") == 0;
      break;
    case 'p':
      ok = parse_num(optarg, 1, 1024, &v), o->producers = (unsigned)v;
      break;
    case 'c':
      ok = parse_num(optarg, 1, 1024, &v), o->consumers = (unsigned)v;
      break;
    case OPT_PARSERS:
      ok = parse_num(optarg, 1, 1024, &v), o->parsers = (unsigned)v;
      break;
    case OPT_AGGREGATORS:
      ok = parse_num(optarg, 1, 1024, &v), o->aggregators = (unsigned)v;
      break;
    case OPT_SINKS:
      ok = parse_num(optarg, 1, 1024, &v), o->sinks = (unsigned)v;
      break;
    case 'n':
      ok = parse_num(optarg, 0, (uint64_t)1 << 40, &o->items);
      break;
    case 'w':
      ok = parse_num(optarg, 0, 10000000, &o->cost);
      break;
    case 'b':
      ok = parse_num(optarg, 1, (uint64_t)1 << 20, &v), o->buffer = (unsigned)v;
      break;
    case 's':
      ok = parse_num(optarg, 1, 1000, &o->slow);
      break;
    case 't':
      ok = parse_num(optarg, 0, TR_MAX_THREADS, &v), o->threads = (unsigned)v;
      break;
    case OPT_SEED:
      ok = parse_num(optarg, 0, UINT64_MAX, &o->seed);
      break;
    case 'h':
      usage(stdout, argv[0]);
      exit(0);
    default:
      usage(stderr, argv[0]);
      return 1;
    }
    if (!ok) {
      fprintf(stderr, "pipeline: bad value '%s' for --%s (see --help)\n", optarg,
              opt_name(long_options, opt));
      return 1;
    }
  }
  if (optind < argc) {
    usage(stderr, argv[0]);
    return 1;
  }
  if (o->parsers == 0)
    o->parsers = o->consumers;
  if (o->aggregators == 0)
    o->aggregators = o->consumers;
  /* A producer or generator sends at most half a mailbox per turn, so one
   * held at the end of a turn has overshot a bound by at most that. */
  o->chunk = o->buffer / 2 < CHUNK_MAX ? o->buffer / 2 : CHUNK_MAX;
  if (o->chunk == 0)
    o->chunk = 1;
  return 0;
}

int main(int argc, char **argv) {
  options o;
  if (parse_options(argc, argv, &o))
    return 2;
  int bad = 0;
  if (o.buffer_mode)
    bad |= run_buffer(&o);
  if (o.buffer_mode && o.stages_mode)
    printf("\n");
  if (o.stages_mode)
    bad |= run_stages(&o);
  printf("pipeline: %s\n", bad ? "FAILED" : "OK");
  return bad != 0;
}
