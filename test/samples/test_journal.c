/*
 * test_journal.c - the sample event journal (samples/journal.{c,h}).
 *
 * Every test works in a fresh temporary directory (mkdtemp) that the fixture
 * removes afterwards. Journals are built with tj_append and then damaged by
 * hand, byte by byte, the way a crash or a bad disk would.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/tr_test.h"
#include "journal.h"

/* ----------------------------------------------------------- fixture */

static char g_dir[256];

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
  (void)sb;
  (void)type;
  (void)ftw;
  return remove(path);
}

static void setup(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(g_dir, sizeof g_dir, "%s/troupe-journal.XXXXXX", tmp && *tmp ? tmp : "/tmp");
  cr_assert_not_null(mkdtemp(g_dir), "mkdtemp: %s", strerror(errno));
}

static void teardown(void) {
  if (g_dir[0] != '\0')
    nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  g_dir[0] = '\0';
}

TestSuite(journal, .init = setup, .fini = teardown);

static const char *path_of(const char *name) {
  static char buf[512];
  snprintf(buf, sizeof buf, "%s/%s", g_dir, name);
  return buf;
}

/* ----------------------------------------------------------- helpers */

/* The payload of event i: [i, "event-i", <i % 7 filler bytes>], so records
 * differ in size. */
static size_t event(unsigned i, unsigned char *buf, size_t cap) {
  char name[32], fill[8] = {0};
  size_t len;
  snprintf(name, sizeof name, "event-%u", i);
  tr_val v[3] = {tr_uint(i), tr_str(name), tr_bin(fill, i % 7)};
  OK(tr_mp_encode_vals(v, 3, true, buf, cap, &len));
  return len;
}

/* Records seen by a replay: copies of the payloads, in order. */
typedef struct seen {
  unsigned n;
  unsigned char payload[64][64];
  size_t len[64];
  unsigned fail_at; /* 0: never; k: return TR_EFAIL at the k-th record */
} seen;

static tr_status collect(const void *payload, size_t len, void *user) {
  seen *s = user;
  if (s->fail_at != 0 && s->n + 1 == s->fail_at)
    return TR_EFAIL;
  cr_assert_lt(s->n, 64u);
  cr_assert_leq(len, sizeof s->payload[0]);
  memcpy(s->payload[s->n], payload, len);
  s->len[s->n] = len;
  s->n++;
  return TR_OK;
}

/* Record i of a replay is event(i + first). */
static void expect_events(const seen *s, unsigned n, unsigned first) {
  unsigned char want[64];
  cr_assert_eq(s->n, n, "replayed %u records, want %u", s->n, n);
  for (unsigned i = 0; i < n; i++) {
    size_t len = event(i + first, want, sizeof want);
    cr_assert_eq(s->len[i], len, "record %u: length %zu, want %zu", i, s->len[i], len);
    cr_assert_eq(memcmp(s->payload[i], want, len), 0, "record %u differs", i);
  }
}

/* Create a journal at `path` holding events 0..n-1; return the offset at
 * which each record starts in `starts` (n + 1 entries: the last is the end). */
static void make_journal(const char *path, const tj_options *opts, unsigned n, uint64_t *starts) {
  tj_journal *j;
  unsigned char buf[64];
  OK(tj_open(path, opts, &j));
  OK(tj_replay(j, NULL, NULL, NULL));
  for (unsigned i = 0; i < n; i++) {
    if (starts)
      starts[i] = tj_size(j);
    OK(tj_append(j, buf, event(i, buf, sizeof buf)));
  }
  if (starts)
    starts[n] = tj_size(j);
  OK(tj_close(j));
}

static size_t slurp(const char *path, unsigned char *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
  size_t n = fread(buf, 1, cap, f);
  cr_assert_eq(fgetc(f), EOF, "%s is larger than %zu bytes", path, cap);
  fclose(f);
  return n;
}

static void spit(const char *path, const void *buf, size_t len) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
  cr_assert_eq(fwrite(buf, 1, len, f), len);
  cr_assert_eq(fclose(f), 0);
}

static uint64_t file_size(const char *path) {
  struct stat sb;
  cr_assert_eq(stat(path, &sb), 0, "stat %s: %s", path, strerror(errno));
  return (uint64_t)sb.st_size;
}

/* Open and replay `path`; expect `want` and fill `s` and `info`. */
static tr_status replay_file(const char *path, seen *s, tj_replay_info *info, tj_journal **keep) {
  tj_journal *j;
  OK(tj_open(path, NULL, &j));
  tr_status st = tj_replay(j, collect, s, info);
  if (keep)
    *keep = j;
  else
    OK(tj_close(j));
  return st;
}

/* ------------------------------------------------------------- tests */

Test(journal, crc32c_check_value) {
  cr_assert_eq(tj_crc32c(0, "123456789", 9), 0xE3069283u);
  /* Continuing a checksum equals checksumming the concatenation. */
  cr_assert_eq(tj_crc32c(tj_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
  cr_assert_eq(tj_crc32c(0, "", 0), 0u);
}

Test(journal, replays_n_records_in_order) {
  const char *p = path_of("a.tj");
  seen s = {0};
  tj_replay_info info;
  uint64_t starts[41];
  make_journal(p, NULL, 40, starts);
  cr_assert_eq(file_size(p), starts[40]);
  OK(replay_file(p, &s, &info, NULL));
  expect_events(&s, 40, 0);
  cr_assert_eq(info.records, 40);
  cr_assert_eq(info.end, starts[40]);
  cr_assert_eq(info.dropped_bytes, 0);
  cr_assert_eq(info.corrupt_offset, 0);

  /* Appending after a replay continues the history; replaying twice on one
   * handle gives the same records. */
  tj_journal *j;
  unsigned char buf[64];
  OK(tj_open(p, NULL, &j));
  OK(tj_replay(j, NULL, NULL, &info));
  cr_assert_eq(info.records, 40);
  for (unsigned i = 40; i < 50; i++)
    OK(tj_append(j, buf, event(i, buf, sizeof buf)));
  memset(&s, 0, sizeof s);
  OK(tj_replay(j, collect, &s, &info));
  expect_events(&s, 50, 0);
  memset(&s, 0, sizeof s);
  OK(tj_replay(j, collect, &s, &info));
  expect_events(&s, 50, 0);
  OK(tj_close(j));
}

Test(journal, missing_journal_is_created_empty) {
  const char *p = path_of("new.tj");
  seen s = {0};
  tj_replay_info info;
  cr_assert_neq(access(p, F_OK), 0);
  OK(replay_file(p, &s, &info, NULL));
  cr_assert_eq(s.n, 0);
  cr_assert_eq(info.records, 0);
  cr_assert_eq(info.end, TJ_HEADER_SIZE);
  cr_assert_eq(file_size(p), TJ_HEADER_SIZE, "a new journal holds just its header");

  /* A missing directory is an I/O error, not an empty journal. */
  tj_journal *j = NULL;
  EXPECT_ST(tj_open(path_of("no-such-dir/x.tj"), NULL, &j), TR_ESYS);
  cr_assert_null(j);
}

Test(journal, empty_and_torn_header_files_are_empty_journals) {
  unsigned char hdr[TJ_HEADER_SIZE];
  seen s = {0};
  tj_replay_info info;
  const char *p = path_of("empty.tj");
  /* A zero-length file (created, then killed before the header). */
  spit(p, "", 0);
  OK(replay_file(p, &s, &info, NULL));
  cr_assert_eq(s.n, 0);
  cr_assert_eq(file_size(p), TJ_HEADER_SIZE);
  /* Every proper prefix of the header (killed while writing it). */
  cr_assert_eq(slurp(p, hdr, sizeof hdr), TJ_HEADER_SIZE);
  for (size_t k = 1; k < TJ_HEADER_SIZE; k++) {
    spit(p, hdr, k);
    OK(replay_file(p, &s, &info, NULL));
    cr_assert_eq(s.n, 0);
    cr_assert_eq(file_size(p), TJ_HEADER_SIZE, "prefix of %zu bytes", k);
  }
}

Test(journal, bad_header_is_corrupt) {
  unsigned char buf[512];
  tj_journal *j = NULL;
  const char *p = path_of("bad.tj");
  make_journal(p, NULL, 3, NULL);
  size_t n = slurp(p, buf, sizeof buf);

  /* Not a journal at all. */
  spit(p, "this is not a journal file\n", 27);
  EXPECT_ST(tj_open(p, NULL, &j), TR_ECORRUPT);
  cr_assert_null(j);
  cr_assert_eq(file_size(p), 27, "a rejected file is left alone");
  /* Short, but not a prefix of the header. */
  spit(p, "TRJX", 4);
  EXPECT_ST(tj_open(p, NULL, &j), TR_ECORRUPT);
  /* Each header byte damaged in turn (magic, version, reserved). */
  for (size_t k = 0; k < TJ_HEADER_SIZE; k++) {
    unsigned char bad[512];
    memcpy(bad, buf, n);
    bad[k] ^= 0x20;
    spit(p, bad, n);
    EXPECT_ST(tj_open(p, NULL, &j), TR_ECORRUPT);
    cr_assert_null(j);
  }
}

/* The heart of it: a journal cut at every byte inside its last record. */
Test(journal, torn_tail_at_every_offset) {
  enum { N = 6 };
  const char *tmpl = path_of("template.tj"), *p = path_of("torn.tj");
  unsigned char whole[1024], buf[64];
  uint64_t starts[N + 1];
  make_journal(tmpl, NULL, N, starts);
  size_t n = slurp(tmpl, whole, sizeof whole);
  cr_assert_eq(n, starts[N]);

  for (uint64_t cut = starts[N - 1]; cut < starts[N]; cut++) {
    seen s = {0};
    tj_replay_info info;
    tj_journal *j;
    spit(p, whole, (size_t)cut);
    OK(replay_file(p, &s, &info, &j));
    expect_events(&s, N - 1, 0);
    cr_assert_eq(info.records, N - 1);
    cr_assert_eq(info.end, starts[N - 1]);
    cr_assert_eq(info.dropped_bytes, cut - starts[N - 1], "cut at %llu", (unsigned long long)cut);
    cr_assert_eq(file_size(p), starts[N - 1], "the torn tail is truncated");
    /* Appending works again, after the last good record. */
    OK(tj_append(j, buf, event(100, buf, sizeof buf)));
    OK(tj_close(j));
    memset(&s, 0, sizeof s);
    OK(replay_file(p, &s, &info, NULL));
    cr_assert_eq(s.n, N);
    cr_assert_eq(info.dropped_bytes, 0);
    size_t len = event(100, buf, sizeof buf);
    cr_assert_eq(s.len[N - 1], len);
    cr_assert_eq(memcmp(s.payload[N - 1], buf, len), 0);
  }
}

Test(journal, torn_tail_of_zeros_or_garbage) {
  enum { N = 4 };
  const char *p = path_of("z.tj");
  unsigned char whole[2048];
  uint64_t starts[N + 1];
  make_journal(p, NULL, N, starts);
  size_t n = slurp(p, whole, sizeof whole);
  /* A power cut can leave the file longer, with zeros where data never
   * reached the disk. */
  memset(whole + n, 0, 300);
  spit(p, whole, n + 300);
  seen s = {0};
  tj_replay_info info;
  OK(replay_file(p, &s, &info, NULL));
  expect_events(&s, N, 0);
  cr_assert_eq(info.dropped_bytes, 300);
  cr_assert_eq(file_size(p), n);
  /* Garbage that holds no valid record: a torn tail too. */
  for (size_t i = 0; i < 500; i++)
    whole[n + i] = (unsigned char)(i * 131u + 7u);
  spit(p, whole, n + 500);
  memset(&s, 0, sizeof s);
  OK(replay_file(p, &s, &info, NULL));
  expect_events(&s, N, 0);
  cr_assert_eq(info.dropped_bytes, 500);
}

Test(journal, bad_checksum_in_last_record_is_a_torn_tail) {
  enum { N = 5 };
  const char *p = path_of("crc.tj");
  unsigned char whole[1024], damaged[1024];
  uint64_t starts[N + 1];
  make_journal(p, NULL, N, starts);
  size_t n = slurp(p, whole, sizeof whole);
  /* Every byte of the last record, one at a time: length, checksum, payload. */
  for (uint64_t off = starts[N - 1]; off < starts[N]; off++) {
    seen s = {0};
    tj_replay_info info;
    memcpy(damaged, whole, n);
    damaged[off] ^= 0x01;
    spit(p, damaged, n);
    OK(replay_file(p, &s, &info, NULL));
    expect_events(&s, N - 1, 0);
    cr_assert_eq(info.dropped_bytes, starts[N] - starts[N - 1]);
    cr_assert_eq(file_size(p), starts[N - 1]);
  }
}

Test(journal, corrupt_middle_record_is_refused) {
  enum { N = 6 };
  const char *p = path_of("mid.tj");
  unsigned char whole[1024], damaged[1024], after[1024], buf[64];
  uint64_t starts[N + 1];
  make_journal(p, NULL, N, starts);
  size_t n = slurp(p, whole, sizeof whole);
  /* Every byte of every record but the last. */
  for (unsigned r = 0; r + 1 < N; r++) {
    for (uint64_t off = starts[r]; off < starts[r + 1]; off++) {
      seen s = {0};
      tj_replay_info info;
      tj_journal *j;
      memcpy(damaged, whole, n);
      damaged[off] ^= 0x40;
      spit(p, damaged, n);
      EXPECT_ST(replay_file(p, &s, &info, &j), TR_ECORRUPT);
      cr_assert_eq(s.n, 0, "no callback before the damage is known");
      cr_assert_eq(info.corrupt_offset, starts[r], "record %u, byte %llu", r,
                   (unsigned long long)off);
      /* Nothing truncated, nothing appended. */
      EXPECT_ST(tj_append(j, buf, event(9, buf, sizeof buf)), TR_ESTATE);
      OK(tj_close(j));
      cr_assert_eq(slurp(p, after, sizeof after), n);
      cr_assert_eq(memcmp(after, damaged, n), 0, "the file is unchanged");
    }
  }
}

Test(journal, corrupt_middle_with_torn_tail_is_still_refused) {
  /* Damage in the middle and a torn last record: a valid record lies
   * between them, so this must not pass as one long torn tail. */
  enum { N = 5 };
  const char *p = path_of("both.tj");
  unsigned char whole[1024];
  uint64_t starts[N + 1];
  make_journal(p, NULL, N, starts);
  size_t n = slurp(p, whole, sizeof whole);
  whole[starts[1] + TJ_RECORD_HEAD] ^= 0xFF;
  spit(p, whole, n - 3);
  seen s = {0};
  tj_replay_info info;
  EXPECT_ST(replay_file(p, &s, &info, NULL), TR_ECORRUPT);
  cr_assert_eq(info.corrupt_offset, starts[1]);
  cr_assert_eq(file_size(p), n - 3);
}

Test(journal, flush_policies_write_identical_files) {
  const tj_options opts[] = {
      {.flush = TJ_FLUSH_EVENT},
      {.flush = TJ_FLUSH_BATCH},
      {.flush = TJ_FLUSH_BATCH, .batch = 3},
      {.flush = TJ_FLUSH_NONE},
  };
  unsigned char first[4096], other[4096];
  size_t n0 = 0;
  for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
    char name[32];
    snprintf(name, sizeof name, "policy-%zu.tj", i);
    const char *p = path_of(name);
    make_journal(p, &opts[i], 30, NULL);
    if (i == 0) {
      n0 = slurp(p, first, sizeof first);
      continue;
    }
    size_t n = slurp(p, other, sizeof other);
    cr_assert_eq(n, n0);
    cr_assert_eq(memcmp(first, other, n), 0, "policy %zu wrote a different file", i);
  }
}

Test(journal, append_rejects_bad_records) {
  const char *p = path_of("app.tj");
  tj_journal *j;
  unsigned char buf[256];
  const tj_options small = {.max_record = 64};
  OK(tj_open(p, &small, &j));
  /* Before a replay the tail is unknown: no appends. */
  EXPECT_ST(tj_append(j, buf, event(0, buf, sizeof buf)), TR_ESTATE);
  OK(tj_replay(j, NULL, NULL, NULL));
  EXPECT_ST(tj_append(NULL, buf, 1), TR_EINVAL);
  EXPECT_ST(tj_append(j, NULL, 1), TR_EINVAL);
  EXPECT_ST(tj_append(j, buf, 0), TR_EINVAL);
  /* 0xc1 is never used in msgpack; two values are not one. */
  EXPECT_ST(tj_append(j, "\xc1", 1), TR_EMALFORMED);
  EXPECT_ST(tj_append(j, "\x01\x02", 2), TR_EMALFORMED);
  EXPECT_ST(tj_append(j, "\x92\x01", 2), TR_EMALFORMED);
  /* A str of exactly the limit fits; one byte more does not. */
  memset(buf, 'x', sizeof buf);
  buf[0] = 0xd9; /* str8 */
  buf[1] = 62;
  OK(tj_append(j, buf, 64));
  buf[1] = 63;
  EXPECT_ST(tj_append(j, buf, 65), TR_ETOOBIG);
  cr_assert_eq(tj_size(j), TJ_HEADER_SIZE + TJ_RECORD_HEAD + 64);
  OK(tj_close(j));
  cr_assert_eq(file_size(p), TJ_HEADER_SIZE + TJ_RECORD_HEAD + 64);

  /* A record over the reader's limit is damage, not a record. */
  tj_journal *tight;
  const tj_options tighter = {.max_record = 32};
  tj_replay_info info;
  OK(tj_open(p, &tighter, &tight));
  OK(tj_replay(tight, NULL, NULL, &info));
  cr_assert_eq(info.records, 0);
  cr_assert_eq(info.dropped_bytes, TJ_RECORD_HEAD + 64);
  OK(tj_close(tight));

  EXPECT_ST(tj_open(NULL, NULL, &j), TR_EINVAL);
  EXPECT_ST(tj_open(p, NULL, NULL), TR_EINVAL);
  const tj_options bad = {.flush = (tj_flush)7};
  EXPECT_ST(tj_open(p, &bad, &j), TR_EINVAL);
  const tj_options huge = {.max_record = TJ_MAX_RECORD_CAP + 1};
  EXPECT_ST(tj_open(p, &huge, &j), TR_EINVAL);
  EXPECT_ST(tj_replay(NULL, NULL, NULL, NULL), TR_EINVAL);
  EXPECT_ST(tj_sync(NULL), TR_EINVAL);
  OK(tj_close(NULL));
}

Test(journal, callback_failure_stops_replay) {
  enum { N = 6 };
  const char *p = path_of("cb.tj");
  unsigned char whole[1024], buf[64];
  uint64_t starts[N + 1];
  make_journal(p, NULL, N, starts);
  size_t n = slurp(p, whole, sizeof whole);
  spit(p, whole, n - 2); /* and a torn tail, which stays until a replay succeeds */
  seen s = {.fail_at = 3};
  tj_replay_info info;
  tj_journal *j;
  EXPECT_ST(replay_file(p, &s, &info, &j), TR_EFAIL);
  cr_assert_eq(s.n, 2);
  cr_assert_eq(info.records, 2);
  EXPECT_ST(tj_append(j, buf, event(7, buf, sizeof buf)), TR_ESTATE);
  cr_assert_eq(file_size(p), n - 2);
  s = (seen){0};
  OK(tj_replay(j, collect, &s, &info));
  expect_events(&s, N - 1, 0);
  cr_assert_eq(file_size(p), starts[N - 1]);
  OK(tj_close(j));
}

Test(journal, sync_and_policies_survive_reopen) {
  const char *p = path_of("sync.tj");
  tj_journal *j;
  unsigned char buf[64];
  const tj_options none = {.flush = TJ_FLUSH_NONE};
  OK(tj_open(p, &none, &j));
  OK(tj_replay(j, NULL, NULL, NULL));
  for (unsigned i = 0; i < 5; i++)
    OK(tj_append(j, buf, event(i, buf, sizeof buf)));
  OK(tj_sync(j));
  OK(tj_sync(j)); /* nothing new: a no-op */
  OK(tj_close(j));
  seen s = {0};
  OK(replay_file(p, &s, NULL, NULL));
  expect_events(&s, 5, 0);
}

/* A write that fails half way (here: the file size limit; on a real system,
 * a full disk) appends nothing: the partial record is cut off again. Each
 * Criterion test runs in its own process, so the limit stays in this one. */
Test(journal, failed_write_appends_nothing) {
  const char *p = path_of("full.tj");
  unsigned char buf[64], big[48];
  tj_journal *j;
  struct rlimit rl;
  make_journal(p, NULL, 3, NULL);
  OK(tj_open(p, NULL, &j));
  OK(tj_replay(j, NULL, NULL, NULL));
  uint64_t size = tj_size(j);

  signal(SIGXFSZ, SIG_IGN); /* get EFBIG instead of the signal */
  cr_assert_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
  rlim_t saved = rl.rlim_cur;
  rl.rlim_cur = (rlim_t)size + 20;
  cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);

  memset(big, 'y', sizeof big);
  big[0] = 0xd9; /* str8 of 46 bytes: a 56-byte record, 20 of which fit */
  big[1] = 46;
  EXPECT_ST(tj_append(j, big, sizeof big), TR_ESYS);
  cr_assert_eq(tj_size(j), size);
  cr_assert_eq(file_size(p), size, "the partial record was cut off");
  /* The journal is still usable: a record that fits goes in. */
  OK(tj_append(j,
               "\xa3"
               "abc",
               4));
  cr_assert_eq(file_size(p), size + TJ_RECORD_HEAD + 4);

  rl.rlim_cur = saved;
  cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
  OK(tj_append(j, buf, event(3, buf, sizeof buf)));
  OK(tj_close(j));
  seen s = {0};
  tj_replay_info info;
  OK(replay_file(p, &s, &info, NULL));
  cr_assert_eq(s.n, 5);
  cr_assert_eq(info.dropped_bytes, 0);
  cr_assert_eq(s.len[3], 4);
  cr_assert_eq(memcmp(s.payload[3],
                      "\xa3"
                      "abc",
                      4),
               0);
}
