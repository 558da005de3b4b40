/*
 * backpressure.c - a fast producer, a slow consumer, bounded memory.
 *
 * The problem. With an unbounded mailbox, a producer faster than its
 * consumer queues everything it makes: memory grows with the backlog until
 * the process dies. A HOLD_SENDER mailbox (troupe/core.h) must instead hold
 * the producer actor whenever the consumer has `capacity` messages waiting,
 * so the backlog, and with it the resident memory, stays bounded however
 * many items go through, and nothing is lost or duplicated on the way.
 *
 * The program. P producer actors each send their share of N items (a uint
 * encoding producer id and sequence number), CHUNK per behaviour call, to
 * one consumer whose per-item cost is 10x a producer's (its own busy time
 * plus the measured cost of a send; the send cost is calibrated at start-up
 * inside a behaviour, so the ratio also holds under a sanitizer). The main
 * thread samples the resident set (/proc/self/statm) while it waits for
 * quiescence. Checked at the end:
 *   - every item arrived exactly once: count, per-producer order, checksum;
 *   - the runtime held a producer (holds > 0) and never refused one;
 *   - RSS grew by less than -b MiB (default 64; 192 under TSan, whose own
 *     memory grows) over the baseline taken after start-up and calibration.
 * The consumer's peak depth is printed, not checked here: the exact bound
 * (capacity + one behaviour call's sends per producer) is checked by
 * test_flow's hold_sender_from_actor tests.
 * With -u the consumer's mailbox is unbounded, for comparison: the RSS
 * growth is printed but not bounded, and holds are not expected.
 *
 * Several producers by default: the scheduler keeps one producer and its
 * consumer on one core and alternates them fairly (a producer flooding a
 * busy receiver yields its run), which by itself bounds a single pair's
 * backlog to about one run's sends (~128 here). Producers on other workers
 * outrun the consumer for real (with -u the RSS then grows by ~100 MiB per
 * 2M items); on one worker the default capacity (64) is below what one
 * producer run queues, so producers are held there too.
 *
 * A plain program (no Criterion) so that it also runs under ThreadSanitizer.
 *
 *   backpressure [-n items] [-w workers] [-p producers] [-c capacity]
 *                [-s producer busy ns per item] [-b RSS bound MiB] [-u]
 * Prints "backpressure: N passed, N failed"; exits non-zero on any failure.
 */
#include <getopt.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <troupe.h>
#include <unistd.h>

#include "check.h"

enum { GO = 1, MORE, DATA, CALIBRATE };

#define CHUNK     64u     /* items a producer sends per behaviour call */
#define CAL_SENDS 20000u  /* sends timed by the calibration */
#define ID_SHIFT  40      /* item = producer id << ID_SHIFT | sequence */
#define DEADLINE  550000u /* ms the whole run may take */

/* ThreadSanitizer's own memory (shadow, traces) grows by tens of MiB in a
 * run's first seconds whatever the program does (15-45 MiB measured here,
 * against none in the plain build): the default bound leaves it room. */
#if defined(__SANITIZE_THREAD__)
#define TSAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSAN_BUILD 1
#endif
#endif
#ifdef TSAN_BUILD
#define DEFAULT_BOUND_MIB 192u
#else
#define DEFAULT_BOUND_MIB 64u
#endif

typedef struct config {
  unsigned workers, producers, capacity;
  uint64_t items, producer_ns, bound_mib;
  int unbounded;
} config;

static config cfg;
static uint64_t consumer_ns; /* set before any item is sent */

/* Written by the consumer only (single writer), read by main at the end. */
static _Atomic uint64_t got_items, got_sum, order_errors, decode_errors, send_errors;
static _Atomic uint64_t cal_ns_per_send;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void busy_ns(uint64_t ns) {
  uint64_t end = now_ns() + ns;
  while (now_ns() < end)
    ;
}

/* The checksum's per-item term: a bijective mix, so a swapped or repeated
 * item changes the sum. */
static uint64_t mix(uint64_t x) {
  x ^= x >> 31;
  x *= 0x7fb5d329728ea185ull;
  x ^= x >> 27;
  x *= 0x81dadef4bc2dd44dull;
  return x ^ (x >> 33);
}

static uint64_t share(unsigned id) {
  uint64_t base = cfg.items / cfg.producers;
  return base + (id < cfg.items % cfg.producers ? 1 : 0);
}

static uint64_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long long size = 0, resident = 0;
  if (f == NULL)
    return 0;
  if (fscanf(f, "%llu %llu", &size, &resident) != 2)
    resident = 0;
  fclose(f);
  return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* ------------------------------------------------------------ actors */

typedef struct producer {
  uint64_t id, next, total;
} producer;

static tr_ref consumer_ref;

static tr_status producer_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  producer *p = state;
  if (tr_msg_tag(msg) == GO) {
    if (tr_msg_get_uint(msg, &p->id) != TR_OK)
      return TR_EDECODE;
    p->total = share((unsigned)p->id);
  }
  for (unsigned i = 0; i < CHUNK && p->next < p->total; i++) {
    busy_ns(cfg.producer_ns);
    if (tr_send_uint(ctx, consumer_ref, DATA, p->id << ID_SHIFT | p->next) != TR_OK)
      atomic_fetch_add(&send_errors, 1);
    p->next++;
  }
  if (p->next < p->total)
    return tr_send(ctx, tr_self(ctx), MORE);
  return TR_OK;
}

typedef struct consumer {
  uint64_t items, sum;
  uint64_t next[]; /* per producer: the sequence number expected next */
} consumer;

static tr_status consumer_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  consumer *c = state;
  uint64_t v;
  if (tr_msg_get_uint(msg, &v) != TR_OK || (v >> ID_SHIFT) >= cfg.producers) {
    atomic_fetch_add(&decode_errors, 1);
    return TR_OK;
  }
  uint64_t id = v >> ID_SHIFT, seq = v & ((1ull << ID_SHIFT) - 1);
  if (seq != c->next[id])
    atomic_fetch_add(&order_errors, 1);
  c->next[id] = seq + 1;
  c->items++;
  c->sum += mix(v);
  /* Single writer: plain stores publish the running totals. */
  atomic_store_explicit(&got_items, c->items, memory_order_relaxed);
  atomic_store_explicit(&got_sum, c->sum, memory_order_relaxed);
  busy_ns(consumer_ns);
  return TR_OK;
}

static tr_status sink_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  (void)msg;
  return TR_OK;
}

/* Time CAL_SENDS sends from inside a behaviour, where the producers send. */
static tr_status calibrate_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  tr_ref sink = {0};
  if (tr_msg_get_uint(msg, &sink.id) != TR_OK)
    return TR_EDECODE;
  uint64_t t0 = now_ns();
  for (unsigned i = 0; i < CAL_SENDS; i++)
    if (tr_send_uint(ctx, sink, DATA, i) != TR_OK)
      atomic_fetch_add(&send_errors, 1);
  atomic_store(&cal_ns_per_send, (now_ns() - t0) / CAL_SENDS);
  return TR_OK;
}

/* ------------------------------------------------------------ main */

static int usage(void) {
  fprintf(stderr, "usage: backpressure [-n items] [-w workers] [-p producers] [-c capacity]\n"
                  "                    [-s producer busy ns per item] [-b RSS bound MiB] [-u]\n");
  return 2;
}

int main(int argc, char **argv) {
  cfg = (config){.workers = 2,
                 .producers = 4,
                 .capacity = 64,
                 .items = 2000000,
                 .producer_ns = 100,
                 .bound_mib = DEFAULT_BOUND_MIB};
  int opt;
  while ((opt = getopt(argc, argv, "n:w:p:c:s:b:u")) != -1) {
    unsigned long long v = optarg != NULL ? strtoull(optarg, NULL, 10) : 0;
    switch (opt) {
    case 'n':
      cfg.items = v;
      break;
    case 'w':
      cfg.workers = (unsigned)v;
      break;
    case 'p':
      cfg.producers = (unsigned)v;
      break;
    case 'c':
      cfg.capacity = (unsigned)v;
      break;
    case 's':
      cfg.producer_ns = v;
      break;
    case 'b':
      cfg.bound_mib = v;
      break;
    case 'u':
      cfg.unbounded = 1;
      break;
    default:
      return usage();
    }
  }
  if (cfg.producers == 0 || cfg.producers > 1024 || cfg.capacity == 0 || cfg.items >> ID_SHIFT != 0)
    return usage();

  tr_system *sys = NULL;
  tr_system_config sc = {.threads = cfg.workers};
  if (tr_system_new(&sc, &sys) != TR_OK) {
    fprintf(stderr, "backpressure: tr_system_new failed\n");
    return 1;
  }
  tr_ctx *ctx = tr_system_ctx(sys);
  int setup_ok = 1;

  /* Calibration: the cost of one send inside a behaviour. */
  tr_actor_spec sink_spec = {.name = "sink", .behaviour = sink_behaviour};
  tr_actor_spec cal_spec = {.name = "calibrate", .behaviour = calibrate_behaviour};
  tr_ref sink, cal;
  setup_ok &= tr_spawn(ctx, &sink_spec, NULL, &sink) == TR_OK;
  setup_ok &= tr_spawn(ctx, &cal_spec, NULL, &cal) == TR_OK;
  setup_ok &= tr_system_start(sys) == TR_OK;
  setup_ok &= tr_send_uint(ctx, cal, CALIBRATE, sink.id) == TR_OK;
  setup_ok &= tr_system_wait_for(sys, 60000) == TR_OK;
  uint64_t send_ns = atomic_load(&cal_ns_per_send);
  /* 10x slower than a producer's whole per-item cost. */
  consumer_ns = 10 * (cfg.producer_ns + send_ns);

  tr_actor_spec cspec = {.name = "consumer",
                         .behaviour = consumer_behaviour,
                         .state_size = sizeof(consumer) + cfg.producers * sizeof(uint64_t),
                         .mailbox_policy =
                             cfg.unbounded ? TR_MAILBOX_UNBOUNDED : TR_MAILBOX_HOLD_SENDER,
                         .mailbox_capacity = cfg.unbounded ? 0 : cfg.capacity};
  tr_actor_spec pspec = {
      .name = "producer", .behaviour = producer_behaviour, .state_size = sizeof(producer)};
  setup_ok &= tr_spawn(ctx, &cspec, NULL, &consumer_ref) == TR_OK;
  tr_ref *producers = calloc(cfg.producers, sizeof *producers);
  for (unsigned i = 0; i < cfg.producers; i++)
    setup_ok &= tr_spawn(ctx, &pspec, NULL, &producers[i]) == TR_OK;
  tr_system_stats before;
  setup_ok &= tr_system_stats_get(sys, &before) == TR_OK;

  printf("backpressure: %s mailbox, capacity %u, %llu items, %u producer(s), %u workers; "
         "send %llu ns, producer %llu ns + send, consumer %llu ns per item\n",
         cfg.unbounded ? "UNBOUNDED" : "HOLD_SENDER", cfg.capacity, (unsigned long long)cfg.items,
         cfg.producers, cfg.workers, (unsigned long long)send_ns,
         (unsigned long long)cfg.producer_ns, (unsigned long long)consumer_ns);

  uint64_t baseline = rss_bytes(), peak = baseline;
  uint64_t t0 = now_ns();
  for (unsigned i = 0; i < cfg.producers; i++)
    setup_ok &= tr_send_uint(ctx, producers[i], GO, i) == TR_OK;
  tr_status st;
  unsigned samples = 0;
  while ((st = tr_system_wait_for(sys, 20)) == TR_ETIMEDOUT) {
    uint64_t r = rss_bytes();
    peak = r > peak ? r : peak;
    samples++;
    if ((now_ns() - t0) / 1000000u > DEADLINE)
      break;
  }
  double secs = (double)(now_ns() - t0) / 1e9;
  uint64_t r = rss_bytes();
  peak = r > peak ? r : peak;
  expect(st == TR_OK, "reached quiescence before the deadline", st, TR_OK);
  expect(setup_ok, "set-up calls all returned TR_OK", setup_ok, 1);

  uint64_t want_sum = 0;
  for (unsigned id = 0; id < cfg.producers; id++)
    for (uint64_t seq = 0; seq < share(id); seq++)
      want_sum += mix((uint64_t)id << ID_SHIFT | seq);
  expect(atomic_load(&send_errors) == 0, "send errors", atomic_load(&send_errors), 0);
  expect(atomic_load(&got_items) == cfg.items, "items received", atomic_load(&got_items),
         cfg.items);
  expect(atomic_load(&got_sum) == want_sum, "checksum", atomic_load(&got_sum), want_sum);
  expect(atomic_load(&order_errors) == 0, "per-producer order violations",
         atomic_load(&order_errors), 0);
  expect(atomic_load(&decode_errors) == 0, "decode errors", atomic_load(&decode_errors), 0);

  tr_system_stats s;
  tr_actor_stats as = {0};
  expect(tr_system_stats_get(sys, &s) == TR_OK, "system stats", 0, 0);
  expect(tr_actor_stats_get(ctx, consumer_ref, &as) == TR_OK, "consumer stats", 0, 0);
  uint64_t dead = 0;
  for (unsigned i = 0; i < TR_DEAD_REASON_COUNT; i++)
    dead += s.dead_letters[i];
  expect(dead == 0, "dead letters", dead, 0);
  expect(s.sent == s.handled, "runtime: sent == handled", s.sent, s.handled);
  expect(s.refused == 0, "sends refused", s.refused, 0);
  expect(as.handled == cfg.items, "consumer handled", as.handled, cfg.items);

  uint64_t growth = peak > baseline ? peak - baseline : 0;
  uint64_t holds = s.holds - before.holds;
  printf("backpressure: %.2f s, %.0f items/s; RSS baseline %.1f MiB, peak %.1f MiB, "
         "growth %.1f MiB (%u samples); holds %llu, consumer peak depth %llu, overflow %llu\n",
         secs, (double)cfg.items / secs, (double)baseline / 1048576.0, (double)peak / 1048576.0,
         (double)growth / 1048576.0, samples, (unsigned long long)holds,
         (unsigned long long)as.peak_depth, (unsigned long long)as.overflow);
  if (!cfg.unbounded) {
    expect(holds > 0, "producers held (holds > 0)", holds, 1);
    expect(as.holds > 0, "consumer's mailbox holds > 0", as.holds, 1);
    uint64_t bound = cfg.bound_mib << 20;
    expect(growth < bound, "RSS growth (bytes) under the bound", growth, bound);
  }

  tr_system_free(sys);
  free(producers);
  return check_report("backpressure");
}
