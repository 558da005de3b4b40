/*
 * troupe-trace - read a troupe event trace (docs/trace-format.md).
 *
 *   troupe-trace table FILE                 per-actor table
 *   troupe-trace perfetto FILE OUT.json     Chrome trace-event JSON (ui.perfetto.dev)
 *   troupe-trace svg FILE OUT.svg [--top K] throughput and mailbox depth over time
 *
 * The reader streams the file record by record (a trace can be larger than
 * memory); the outputs that need names before events read it twice. It
 * trusts nothing in the file: a bad header is an error, and records it
 * cannot make sense of (an unknown kind, a worker index out of range, a name
 * longer than the format allows, a cut-off tail) are counted, skipped and
 * reported on stderr, never a crash. Exit status: 0 done, 1 error, 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <troupe.h>

/* ---------------------------------------------------------------- format */

enum {
  EV_RUN = 1,
  EV_DEPTH = 2,
  EV_STEAL = 3,
  EV_PARK = 4,
  EV_DEAD = 5,
  EV_RESTART = 6,
  EV_NAME = 7,
  EV_COUNTERS = 8,
  EV_DROPPED = 9,
  EV_END = 10,
};

#define HEADER_MIN 64u
#define REC        32u
#define OUTSIDE    0xFFFFu
#define NAME_MAX_  255u

static const char *prog = "troupe-trace";

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", prog);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (p == NULL)
    die("out of memory");
  return p;
}

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (p == NULL)
    die("out of memory");
  return p;
}

static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* One decoded event; NAME and COUNTERS carry what followed them. */
typedef struct ev {
  uint64_t ts, actor, arg;
  uint32_t arg2;
  uint8_t kind, flags;
  uint16_t worker;
  char name[NAME_MAX_ + 1];
  uint64_t counters[4]; /* received, handled, spilled, peak depth */
} ev;

typedef struct reader {
  const char *path;
  FILE *f;
  uint32_t header_size, rec_size, workers, version, clock;
  uint64_t wall_ns;
  /* What the last pass found wrong. */
  uint64_t records, unknown, corrupt, tail_bytes;
  bool ended;
  uint64_t end_ts, lost;
  uint8_t *buf;
} reader;

static void reader_open(reader *r, const char *path) {
  memset(r, 0, sizeof *r);
  r->path = path;
  r->f = fopen(path, "rb");
  if (r->f == NULL)
    die("%s: %s", path, strerror(errno));
  uint8_t h[HEADER_MIN];
  size_t got = fread(h, 1, sizeof h, r->f);
  if (got < 8 || memcmp(h, "TROUPETR", 8) != 0)
    die("%s: not a troupe trace (no TROUPETR magic)", path);
  if (got < sizeof h)
    die("%s: truncated header (%zu of %u bytes)", path, got, HEADER_MIN);
  r->version = get32(h + 8);
  r->header_size = get32(h + 12);
  r->rec_size = get32(h + 16);
  r->workers = get32(h + 20);
  r->wall_ns = get64(h + 24);
  r->clock = get32(h + 36);
  if (r->version != 1)
    die("%s: trace format version %" PRIu32 " (this tool reads version 1)", path, r->version);
  if (r->header_size < HEADER_MIN || r->header_size > 4096)
    die("%s: corrupt header (header size %" PRIu32 ")", path, r->header_size);
  if (r->rec_size < REC || r->rec_size > 4096 || r->rec_size % 8 != 0)
    die("%s: corrupt header (record size %" PRIu32 ")", path, r->rec_size);
  if (r->workers == 0 || r->workers > 65534)
    die("%s: corrupt header (%" PRIu32 " workers)", path, r->workers);
  r->buf = xcalloc(1, r->rec_size);
}

static void reader_rewind(reader *r) {
  if (fseek(r->f, (long)r->header_size, SEEK_SET) != 0)
    die("%s: %s", r->path, strerror(errno));
  r->records = r->unknown = r->corrupt = r->tail_bytes = 0;
  r->ended = false;
  r->end_ts = r->lost = 0;
}

/* The next raw record; false at the end (a cut-off last record is counted). */
static bool read_rec(reader *r) {
  size_t got = fread(r->buf, 1, r->rec_size, r->f);
  if (got == r->rec_size) {
    r->records++;
    return true;
  }
  if (ferror(r->f))
    die("%s: %s", r->path, strerror(errno));
  r->tail_bytes += got;
  return false;
}

/* The next event that makes sense; false at the end of the file. */
static bool next_ev(reader *r, ev *e) {
  while (read_rec(r)) {
    const uint8_t *p = r->buf;
    *e = (ev){.ts = get64(p),
              .actor = get64(p + 8),
              .arg = get64(p + 16),
              .arg2 = get32(p + 24),
              .kind = p[28],
              .flags = p[29],
              .worker = (uint16_t)(p[30] | p[31] << 8)};
    if (e->kind == 0 || e->kind > EV_END) {
      r->unknown++;
      continue;
    }
    if (e->worker != OUTSIDE && e->worker >= r->workers) {
      r->corrupt++;
      continue;
    }
    if (e->kind == EV_NAME) {
      if (e->arg2 > NAME_MAX_) {
        r->corrupt++;
        continue;
      }
      uint32_t len = 0;
      bool ok = true;
      for (uint32_t done = 0; done < e->arg2; done += REC) {
        if (!read_rec(r)) {
          ok = false;
          break;
        }
        uint32_t n = e->arg2 - done < REC ? e->arg2 - done : REC;
        memcpy(e->name + len, r->buf, n);
        len += n;
      }
      if (!ok)
        return false;
      e->name[len] = '\0';
      /* A NUL inside a name would hide the rest: stop there. */
    } else if (e->kind == EV_COUNTERS) {
      if (!read_rec(r))
        return false;
      for (int i = 0; i < 4; i++)
        e->counters[i] = get64(r->buf + 8 * i);
    } else if (e->kind == EV_END) {
      r->ended = true;
      r->end_ts = e->ts;
      r->lost = e->arg;
    }
    /* Times beyond 2^62 ns (146 years) can only be corruption. */
    if (e->ts >> 62 || ((e->kind == EV_RUN || e->kind == EV_PARK) && e->arg >> 62)) {
      r->corrupt++;
      continue;
    }
    return true;
  }
  return false;
}

/* After a pass: say what was wrong with the file. */
static void reader_report(const reader *r, uint64_t dropped) {
  if (r->tail_bytes != 0)
    fprintf(stderr, "%s: %s: truncated: the last %" PRIu64 " bytes are not a whole record\n", prog,
            r->path, r->tail_bytes);
  if (!r->ended)
    fprintf(stderr,
            "%s: %s: no end record: the trace was cut short (process killed, or still "
            "running); what is there is shown\n",
            prog, r->path);
  if (r->unknown != 0)
    fprintf(stderr, "%s: %s: %" PRIu64 " records of unknown kinds skipped\n", prog, r->path,
            r->unknown);
  if (r->corrupt != 0)
    fprintf(stderr, "%s: %s: %" PRIu64 " corrupt records skipped\n", prog, r->path, r->corrupt);
  if (dropped != 0)
    fprintf(stderr,
            "%s: %s: %" PRIu64 " events were lost to full trace buffers: counts are lower "
            "bounds\n",
            prog, r->path, dropped);
}

/* ---------------------------------------------------------------- actors */

typedef struct sample {
  double ns_per_msg;
  uint32_t msgs;
} sample;

typedef struct actor {
  uint64_t id;
  char *name;
  uint64_t msgs, runs, run_ns;
  uint64_t depth_max, depth_sum, depth_n;
  bool counters0;
  uint64_t spilled0, spilled1; /* first and last COUNTERS seen */
  bool has_counters;
  uint64_t restarts, dead_to;
  sample *s;
  size_t ns, cap;
  unsigned top; /* svg: 1 + its index among the top K, or 0 */
} actor;

typedef struct actors {
  actor **slot;
  size_t cap, n;
} actors;

static uint64_t hash64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

static actor *actor_get(actors *m, uint64_t id) {
  if (m->n * 2 >= m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 256;
    actor **slot = xcalloc(cap, sizeof *slot);
    for (size_t i = 0; i < m->cap; i++) {
      if (m->slot[i] == NULL)
        continue;
      size_t j = hash64(m->slot[i]->id) & (cap - 1);
      while (slot[j] != NULL)
        j = (j + 1) & (cap - 1);
      slot[j] = m->slot[i];
    }
    free(m->slot);
    m->slot = slot;
    m->cap = cap;
  }
  size_t j = hash64(id) & (m->cap - 1);
  while (m->slot[j] != NULL) {
    if (m->slot[j]->id == id)
      return m->slot[j];
    j = (j + 1) & (m->cap - 1);
  }
  actor *a = xcalloc(1, sizeof *a);
  a->id = id;
  m->slot[j] = a;
  m->n++;
  return a;
}

static actor *actor_find(const actors *m, uint64_t id) {
  if (m->cap == 0)
    return NULL;
  size_t j = hash64(id) & (m->cap - 1);
  while (m->slot[j] != NULL) {
    if (m->slot[j]->id == id)
      return m->slot[j];
    j = (j + 1) & (m->cap - 1);
  }
  return NULL;
}

/* Every actor, in a new array (the caller frees it). */
static actor **actor_list(const actors *m) {
  actor **v = xcalloc(m->n, sizeof *v);
  size_t k = 0;
  for (size_t i = 0; i < m->cap; i++)
    if (m->slot[i] != NULL)
      v[k++] = m->slot[i];
  return v;
}

static void actors_free(actors *m) {
  for (size_t i = 0; i < m->cap; i++) {
    if (m->slot[i] != NULL) {
      free(m->slot[i]->name);
      free(m->slot[i]->s);
      free(m->slot[i]);
    }
  }
  free(m->slot);
}

static void ref_str(char *buf, size_t len, uint64_t id) {
  snprintf(buf, len, "%" PRIu32 ".%" PRIu32, (uint32_t)id, (uint32_t)(id >> 32));
}

static const char *name_of(const actors *m, uint64_t id) {
  actor *a = actor_find(m, id);
  return a != NULL && a->name != NULL ? a->name : "?";
}

/* What one pass over the trace learns. */
typedef struct summary {
  actors act;
  uint64_t t_first, t_last; /* ns, over every timed event */
  bool any;
  uint64_t dropped, runs, dead, steals, parks, restarts;
} summary;

static void span(summary *s, uint64_t t0, uint64_t t1) {
  if (!s->any || t0 < s->t_first)
    s->t_first = t0;
  if (!s->any || t1 > s->t_last)
    s->t_last = t1;
  s->any = true;
}

static void summarise(reader *r, summary *s, bool samples) {
  ev e;
  memset(s, 0, sizeof *s);
  reader_rewind(r);
  while (next_ev(r, &e)) {
    actor *a;
    switch (e.kind) {
    case EV_RUN:
      a = actor_get(&s->act, e.actor);
      a->msgs += e.arg2;
      a->runs++;
      a->run_ns += e.arg;
      s->runs++;
      span(s, e.ts, e.ts + e.arg);
      if (samples && e.arg2 != 0) {
        if (a->ns == a->cap) {
          a->cap = a->cap ? a->cap * 2 : 64;
          a->s = xrealloc(a->s, a->cap * sizeof *a->s);
        }
        a->s[a->ns++] = (sample){(double)e.arg / e.arg2, e.arg2};
      }
      break;
    case EV_DEPTH:
      a = actor_get(&s->act, e.actor);
      if (e.arg > a->depth_max)
        a->depth_max = e.arg;
      a->depth_sum += e.arg;
      a->depth_n++;
      span(s, e.ts, e.ts);
      break;
    case EV_NAME:
      a = actor_get(&s->act, e.actor);
      if (a->name == NULL) /* the first name wins (walk and spawn may both name it) */
        a->name = strdup(e.name);
      if (a->name == NULL)
        die("out of memory");
      break;
    case EV_COUNTERS:
      a = actor_get(&s->act, e.actor);
      if (!a->has_counters)
        a->spilled0 = e.counters[2];
      a->spilled1 = e.counters[2];
      a->has_counters = true;
      break;
    case EV_DEAD:
      s->dead++;
      span(s, e.ts, e.ts);
      if (e.actor != 0)
        actor_get(&s->act, e.actor)->dead_to++;
      break;
    case EV_RESTART:
      s->restarts++;
      actor_get(&s->act, e.actor)->restarts++;
      span(s, e.ts, e.ts);
      break;
    case EV_STEAL:
      s->steals++;
      span(s, e.ts, e.ts);
      break;
    case EV_PARK:
      s->parks++;
      span(s, e.ts, e.ts + e.arg);
      break;
    case EV_DROPPED:
      s->dropped += e.arg;
      break;
    default:
      break;
    }
  }
  if (r->ended && (!s->any || r->end_ts > s->t_last)) {
    if (!s->any)
      s->t_first = 0;
    s->t_last = r->end_ts;
    s->any = true;
  }
}

/* ---------------------------------------------------------------- table */

static int by_msgs(const void *x, const void *y) {
  const actor *a = *(actor *const *)x, *b = *(actor *const *)y;
  if (a->msgs != b->msgs)
    return a->msgs < b->msgs ? 1 : -1;
  return a->id < b->id ? -1 : a->id > b->id;
}

static int by_value(const void *x, const void *y) {
  double a = ((const sample *)x)->ns_per_msg, b = ((const sample *)y)->ns_per_msg;
  return (a > b) - (a < b);
}

/* The per-message time that 99% of the actor's messages did not exceed. */
static double p99(actor *a) {
  if (a->ns == 0)
    return 0;
  qsort(a->s, a->ns, sizeof *a->s, by_value);
  uint64_t total = 0, acc = 0;
  for (size_t i = 0; i < a->ns; i++)
    total += a->s[i].msgs;
  for (size_t i = 0; i < a->ns; i++) {
    acc += a->s[i].msgs;
    if ((double)acc >= 0.99 * (double)total)
      return a->s[i].ns_per_msg;
  }
  return a->s[a->ns - 1].ns_per_msg;
}

/* A duration in ns, in a short human form. */
static const char *dur_str(char *buf, size_t len, double ns) {
  if (ns < 1e3)
    snprintf(buf, len, "%.0f ns", ns);
  else if (ns < 1e6)
    snprintf(buf, len, "%.1f us", ns / 1e3);
  else if (ns < 1e9)
    snprintf(buf, len, "%.1f ms", ns / 1e6);
  else
    snprintf(buf, len, "%.2f s", ns / 1e9);
  return buf;
}

static int cmd_table(const char *path) {
  reader r;
  summary s;
  reader_open(&r, path);
  summarise(&r, &s, true);
  double secs = s.any && s.t_last > s.t_first ? (double)(s.t_last - s.t_first) / 1e9 : 0;
  printf("trace %s: %" PRIu32 " workers, %.6f s, %" PRIu64 " runs, %" PRIu64 " steals, %" PRIu64
         " parks, %" PRIu64 " dead letters, %" PRIu64 " restarts, %" PRIu64 " events lost\n",
         path, r.workers, secs, s.runs, s.steals, s.parks, s.dead, s.restarts, s.dropped);
  actor **v = actor_list(&s.act);
  qsort(v, s.act.n, sizeof *v, by_msgs);
  printf("%-12s %-20s %12s %12s %10s %10s %10s %12s %12s %12s %10s\n", "actor", "name", "messages",
         "msg/s", "runs", "peak depth", "mean depth", "mean/msg", "p99/msg", "est. wait",
         "spilled");
  for (size_t i = 0; i < s.act.n; i++) {
    actor *a = v[i];
    if (a->runs == 0 && a->depth_n == 0 && !a->has_counters)
      continue; /* named, never seen doing anything */
    char ref[24], m1[24], m2[24], m3[24], sp[24];
    ref_str(ref, sizeof ref, a->id);
    double rate = secs > 0 ? (double)a->msgs / secs : 0;
    double mean_depth = a->depth_n ? (double)a->depth_sum / (double)a->depth_n : 0;
    double mean = a->msgs ? (double)a->run_ns / (double)a->msgs : 0;
    /* Little's law: time in the mailbox = messages waiting / arrival rate.
     * Arrivals ~ handled messages over the trace; waiting ~ the mean depth
     * sampled at run starts (where it peaks: an overestimate). */
    double wait = rate > 0 ? mean_depth / rate * 1e9 : 0;
    if (a->has_counters)
      snprintf(sp, sizeof sp, "%" PRIu64, a->spilled1 - a->spilled0);
    else
      snprintf(sp, sizeof sp, "-");
    printf("%-12s %-20.20s %12" PRIu64 " %12.0f %10" PRIu64 " %10" PRIu64 " %10.1f %12s %12s %12s "
           "%10s\n",
           ref, a->name != NULL ? a->name : "?", a->msgs, rate, a->runs, a->depth_max, mean_depth,
           dur_str(m1, sizeof m1, mean), dur_str(m2, sizeof m2, p99(a)),
           rate > 0 ? dur_str(m3, sizeof m3, wait) : "-", sp);
  }
  printf("messages: behaviour calls that returned TR_OK; mean/msg, p99/msg: run time / messages "
         "in the run\n(p99 over messages); depth: sampled at each run's start; est. wait: "
         "mean depth / msg/s\n(Little's law, an estimate that runs high); spilled: between the "
         "trace's first and last\ncounters record of the actor ('-': none)\n");
  free(v);
  reader_report(&r, s.dropped);
  actors_free(&s.act);
  fclose(r.f);
  free(r.buf);
  return 0;
}

/* ---------------------------------------------------------------- JSON */

/* Write a JSON string: quotes, backslashes and control bytes escaped, and
 * bytes >= 0x80 as \u00XX (names are bytes, not necessarily UTF-8). */
static void json_str(FILE *o, const char *s) {
  fputc('"', o);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(o, "\\%c", *p);
    else if (*p < 0x20 || *p >= 0x7f)
      fprintf(o, "\\u%04x", *p);
    else
      fputc(*p, o);
  }
  fputc('"', o);
}

static double us(uint64_t ns) { return (double)ns / 1000.0; }

static int cmd_perfetto(const char *path, const char *out) {
  reader r;
  summary s;
  reader_open(&r, path);
  summarise(&r, &s, false);
  FILE *o = fopen(out, "w");
  if (o == NULL)
    die("%s: %s", out, strerror(errno));
  unsigned outside = r.workers; /* the outside threads' track */
  fprintf(o, "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"trace\":");
  json_str(o, path);
  fprintf(o, ",\"workers\":%" PRIu32 "},\"traceEvents\":[\n", r.workers);
  fprintf(o, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"args\":{\"name\":\"troupe\"}}");
  for (unsigned w = 0; w <= outside; w++) {
    char tname[32];
    if (w == outside)
      snprintf(tname, sizeof tname, "outside threads");
    else
      snprintf(tname, sizeof tname, "worker %u", w);
    fprintf(o,
            ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":%u,\"args\":{\"name\":"
            "\"%s\"}}",
            w, tname);
    fprintf(o,
            ",\n{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":1,\"tid\":%u,\"args\":{"
            "\"sort_index\":%u}}",
            w, w);
  }
  reader_rewind(&r);
  ev e;
  char ref[24], ref2[24];
  while (next_ev(&r, &e)) {
    unsigned tid = e.worker == OUTSIDE ? outside : e.worker;
    switch (e.kind) {
    case EV_RUN:
      ref_str(ref, sizeof ref, e.actor);
      fprintf(o, ",\n{\"name\":");
      json_str(o, name_of(&s.act, e.actor));
      fprintf(o,
              ",\"cat\":\"run\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,\"pid\":1,\"tid\":%u,"
              "\"args\":{\"actor\":\"%s\",\"messages\":%" PRIu32 "}}",
              us(e.ts), us(e.arg), tid, ref, e.arg2);
      break;
    case EV_DEPTH: {
      ref_str(ref, sizeof ref, e.actor);
      char track[NAME_MAX_ + 64];
      snprintf(track, sizeof track, "mailbox %s %s", name_of(&s.act, e.actor), ref);
      fprintf(o, ",\n{\"name\":");
      json_str(o, track);
      fprintf(o, ",\"ph\":\"C\",\"ts\":%.3f,\"pid\":1,\"args\":{\"depth\":%" PRIu64 "}}", us(e.ts),
              e.arg);
      break;
    }
    case EV_STEAL:
      ref_str(ref, sizeof ref, e.actor);
      fprintf(o,
              ",\n{\"name\":\"steal\",\"cat\":\"sched\",\"ph\":\"i\",\"s\":\"t\",\"ts\":%.3f,"
              "\"pid\":1,\"tid\":%u,\"args\":{\"actor\":\"%s\",\"name\":",
              us(e.ts), tid, ref);
      json_str(o, name_of(&s.act, e.actor));
      fprintf(o, ",\"from worker\":%" PRIu64 "}}", e.arg);
      break;
    case EV_PARK:
      fprintf(o,
              ",\n{\"name\":\"parked\",\"cat\":\"sched\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,"
              "\"pid\":1,\"tid\":%u,\"args\":{\"woken for work\":%s}}",
              us(e.ts), us(e.arg), tid, e.arg2 ? "true" : "false");
      break;
    case EV_DEAD: {
      ref_str(ref, sizeof ref, e.actor);
      ref_str(ref2, sizeof ref2, e.arg);
      const char *why = tr_dead_reason_name((tr_dead_reason)e.flags);
      fprintf(o,
              ",\n{\"name\":\"dead letter %s\",\"cat\":\"dead letter\",\"ph\":\"i\",\"s\":\"t\","
              "\"ts\":%.3f,\"pid\":1,\"tid\":%u,\"args\":{\"reason\":\"%s\",\"to\":\"%s\",\"from\":"
              "\"%s\",\"tag\":%" PRIu32 "}}",
              why, us(e.ts), tid, why, e.actor ? ref : "unknown", ref2, e.arg2);
      break;
    }
    case EV_RESTART:
      ref_str(ref, sizeof ref, e.actor);
      fprintf(o, ",\n{\"name\":");
      char label[NAME_MAX_ + 16];
      snprintf(label, sizeof label, "restart %s", name_of(&s.act, e.actor));
      json_str(o, label);
      fprintf(o,
              ",\"cat\":\"supervision\",\"ph\":\"i\",\"s\":\"p\",\"ts\":%.3f,\"pid\":1,\"tid\":%u,"
              "\"args\":{\"actor\":\"%s\"}}",
              us(e.ts), tid, ref);
      break;
    case EV_DROPPED:
      fprintf(o,
              ",\n{\"name\":\"%" PRIu64 " events lost\",\"cat\":\"trace\",\"ph\":\"i\",\"s\":\"g\","
              "\"ts\":%.3f,\"pid\":1,\"tid\":%u,\"args\":{\"buffer\":\"%s\"}}",
              e.arg, us(e.ts), tid, tid == outside ? "outside threads" : "worker");
      break;
    default:
      break;
    }
  }
  fprintf(o, "\n]}\n");
  if (ferror(o) | (fclose(o) != 0))
    die("%s: write failed", out);
  reader_report(&r, s.dropped);
  actors_free(&s.act);
  fclose(r.f);
  free(r.buf);
  return 0;
}

/* ---------------------------------------------------------------- SVG */

#define BINS 120

static void xml_str(FILE *o, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '&':
      fputs("&amp;", o);
      break;
    case '<':
      fputs("&lt;", o);
      break;
    case '>':
      fputs("&gt;", o);
      break;
    case '"':
      fputs("&quot;", o);
      break;
    case '\'':
      fputs("&apos;", o);
      break;
    default:
      /* XML 1.0 allows no control bytes; non-ASCII bytes may not be UTF-8. */
      fputc(*p < 0x20 || *p >= 0x7f ? '?' : *p, o);
    }
  }
}

/* A "nice" upper bound for an axis and its tick step. */
static double nice_max(double v, double *step) {
  if (v <= 0) {
    *step = 0.25;
    return 1;
  }
  double mag = pow(10, floor(log10(v)));
  double f = v / mag, top = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  *step = top * mag / (top == 2 ? 4 : top == 5 ? 5 : 5);
  return top * mag;
}

static const char *si_str(char *buf, size_t len, double v) {
  if (v >= 1e9)
    snprintf(buf, len, "%gG", v / 1e9);
  else if (v >= 1e6)
    snprintf(buf, len, "%gM", v / 1e6);
  else if (v >= 1e3)
    snprintf(buf, len, "%gk", v / 1e3);
  else
    snprintf(buf, len, "%g", v);
  return buf;
}

static const char *colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

/* One panel: K series of BINS values each, from x0 over width w. */
static void panel(FILE *o, double x0, double y0, double w, double h, const char *title,
                  const char *unit, double *const *series, unsigned k, double secs) {
  double maxv = 0, step;
  for (unsigned i = 0; i < k; i++)
    for (unsigned b = 0; b < BINS; b++)
      if (series[i][b] > maxv)
        maxv = series[i][b];
  double top = nice_max(maxv, &step);
  fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" font-weight=\"bold\">", x0, y0 - 8);
  xml_str(o, title);
  fprintf(o, "</text>\n");
  fprintf(o,
          "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
          "stroke=\"#888\"/>\n",
          x0, y0, w, h);
  char buf[32];
  for (double v = 0; v <= top * 1.0001; v += step) {
    double y = y0 + h - v / top * h;
    fprintf(o,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
            "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\">%s</text>\n",
            x0, y, x0 + w, y, x0 - 4, y + 3, si_str(buf, sizeof buf, v));
  }
  fprintf(o,
          "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" transform=\"rotate(-90 %.1f %.1f)\" "
          "text-anchor=\"middle\">%s</text>\n",
          x0 - 48, y0 + h / 2, x0 - 48, y0 + h / 2, unit);
  double tstep;
  nice_max(secs, &tstep);
  for (double t = 0; secs > 0 && t <= secs * 1.0001; t += tstep) {
    double x = x0 + w * t / secs;
    fprintf(o,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888\"/>"
            "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\">%g</text>\n",
            x, y0 + h, x, y0 + h + 4, x, y0 + h + 15, t);
  }
  for (unsigned i = 0; i < k; i++) {
    fprintf(o, "<polyline fill=\"none\" stroke-width=\"1.5\" stroke=\"%s\" points=\"",
            colours[i % 10]);
    for (unsigned b = 0; b < BINS; b++)
      fprintf(o, "%s%.1f,%.1f", b ? " " : "", x0 + w * (b + 0.5) / BINS,
              y0 + h - series[i][b] / top * h);
    fprintf(o, "\"/>\n");
  }
}

static int cmd_svg(const char *path, const char *out, unsigned k) {
  reader r;
  summary s;
  reader_open(&r, path);
  summarise(&r, &s, false);
  actor **v = actor_list(&s.act);
  qsort(v, s.act.n, sizeof *v, by_msgs);
  unsigned n = 0;
  while (n < k && n < s.act.n && v[n]->msgs > 0) {
    v[n]->top = n + 1;
    n++;
  }
  double secs = s.any && s.t_last > s.t_first ? (double)(s.t_last - s.t_first) / 1e9 : 0;
  double bin_s = secs > 0 ? secs / BINS : 1;
  double **rate = xcalloc(n ? n : 1, sizeof *rate), **depth = xcalloc(n ? n : 1, sizeof *depth);
  for (unsigned i = 0; i < n; i++) {
    rate[i] = xcalloc(BINS, sizeof **rate);
    depth[i] = xcalloc(BINS, sizeof **depth);
  }
  if (n > 0 && secs > 0) {
    reader_rewind(&r);
    ev e;
    while (next_ev(&r, &e)) {
      if (e.kind != EV_RUN && e.kind != EV_DEPTH)
        continue;
      actor *a = actor_find(&s.act, e.actor);
      if (a == NULL || a->top == 0 || e.ts < s.t_first)
        continue;
      unsigned b = (unsigned)((double)(e.ts - s.t_first) / 1e9 / bin_s);
      if (b >= BINS)
        b = BINS - 1;
      if (e.kind == EV_RUN)
        rate[a->top - 1][b] += e.arg2 / bin_s; /* a run's messages, at its start */
      else if ((double)e.arg > depth[a->top - 1][b])
        depth[a->top - 1][b] = (double)e.arg; /* the deepest sample in the bin */
    }
  }
  FILE *o = fopen(out, "w");
  if (o == NULL)
    die("%s: %s", out, strerror(errno));
  const double W = 960, H = 640, X0 = 80, PW = 640, PH = 230;
  fprintf(o,
          "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
          "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\">\n"
          "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
          "<text x=\"%.0f\" y=\"22\" font-size=\"15\">troupe trace ",
          W, H, W, H, X0);
  xml_str(o, path);
  fprintf(o, ": top %u actors by messages, %.3f s</text>\n", n, secs);
  if (n == 0) {
    fprintf(o,
            "<text x=\"%.0f\" y=\"80\" font-size=\"13\">no behaviour runs in this trace</text>\n",
            X0);
  } else {
    panel(o, X0, 60, PW, PH, "throughput (messages/s, by run start)", "msg/s", rate, n, secs);
    panel(o, X0, 60 + PH + 70, PW, PH, "mailbox depth (deepest sample at a run start)", "messages",
          depth, n, secs);
    fprintf(o,
            "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"middle\">time (s)</text>\n",
            X0 + PW / 2, 60 + 2 * PH + 70 + 32);
    for (unsigned i = 0; i < n; i++) {
      char ref[24];
      ref_str(ref, sizeof ref, v[i]->id);
      double y = 70 + i * 18;
      fprintf(o,
              "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"%s\" "
              "stroke-width=\"3\"/><text x=\"%.0f\" y=\"%.1f\" font-size=\"11\">",
              X0 + PW + 20, y, X0 + PW + 40, y, colours[i % 10], X0 + PW + 46, y + 4);
      xml_str(o, v[i]->name != NULL ? v[i]->name : "?");
      fprintf(o, " %s (%" PRIu64 " msgs)</text>\n", ref, v[i]->msgs);
    }
  }
  fprintf(o, "</svg>\n");
  if (ferror(o) | (fclose(o) != 0))
    die("%s: write failed", out);
  for (unsigned i = 0; i < n; i++) {
    free(rate[i]);
    free(depth[i]);
  }
  free(rate);
  free(depth);
  free(v);
  reader_report(&r, s.dropped);
  actors_free(&s.act);
  fclose(r.f);
  free(r.buf);
  return 0;
}

/* ---------------------------------------------------------------- main */

static int usage(void) {
  fprintf(stderr,
          "usage: %s table FILE\n"
          "       %s perfetto FILE OUT.json\n"
          "       %s svg FILE OUT.svg [--top K]\n"
          "FILE is a trace written with TROUPE_TRACE=FILE or tr_trace_start.\n",
          prog, prog, prog);
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 3)
    return usage();
  const char *cmd = argv[1];
  if (strcmp(cmd, "table") == 0 && argc == 3)
    return cmd_table(argv[2]);
  if (strcmp(cmd, "perfetto") == 0 && argc == 4)
    return cmd_perfetto(argv[2], argv[3]);
  if (strcmp(cmd, "svg") == 0 && (argc == 4 || argc == 6)) {
    unsigned long k = 5;
    if (argc == 6) {
      char *end;
      errno = 0;
      k = strtoul(argv[5], &end, 10);
      if (strcmp(argv[4], "--top") != 0 || errno != 0 || *end != '\0' || k == 0 || k > 10)
        return usage();
    }
    return cmd_svg(argv[2], argv[3], (unsigned)k);
  }
  return usage();
}
