/*
 * test/fuzz/fuzz_journal.c - libFuzzer target: replaying a journal file
 * (samples/journal.{c,h}) made of arbitrary bytes.
 *
 * Problem. A journal is read back after crashes, disk errors and hand
 * edits: replay must never read out of bounds, never pass a record that is
 * not one msgpack value, and keep its promises about what it changes on
 * disk.
 *
 * Approach. Each input is written to a scratch file three ways: as it is
 * (mostly not a journal: tj_open must say ECORRUPT), after a valid header
 * (a header followed by arbitrary records), and after a valid header with a
 * 48-byte record limit (so that over-long lengths are exercised). Then:
 *   - tj_open returns OK or ECORRUPT, and on OK tj_replay returns OK or
 *     ECORRUPT;
 *   - every record passed to the callback is one msgpack value within the
 *     record limit, and lies in the file where the framing says;
 *   - ECORRUPT: no callback was made, the file is byte-for-byte unchanged,
 *     corrupt_offset lies inside it, and appends are refused (ESTATE);
 *   - OK: the file is now exactly the first info.end bytes of what was
 *     written (replay only ever cuts a tail), info.dropped_bytes is what was
 *     cut; a second replay of the (possibly truncated) file gives the same
 *     records with nothing dropped; an append then works and a third replay
 *     gives one record more.
 * Any failed check aborts, so libFuzzer keeps the input.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      fail(__LINE__, #cond);                                                                       \
  } while (0)

static void fail(int line, const char *expr) {
  fprintf(stderr, "fuzz_journal.c:%d: check failed: %s\n", line, expr);
  abort();
}

static char dir[256];
static char path[300];

static void cleanup(void) {
  unlink(path);
  rmdir(dir);
}

/* What a replay saw: the records' count, and a hash of their offsets and
 * bytes (order-sensitive). */
typedef struct seen {
  uint64_t n;
  uint64_t hash;
  size_t max_record;
  const uint8_t *file; /* the bytes written, to find each record in */
  size_t file_len;
  uint64_t off; /* where the next record's payload should start */
} seen;

static uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
  return h;
}

static tr_status on_record(const void *payload, size_t len, void *user) {
  seen *s = user;
  CHECK(len > 0 && len <= s->max_record);
  CHECK(tr_mp_check(payload, len) == TR_OK);
  /* The framing: this record's payload follows its 8-byte head, right after
   * the previous record, and is the same bytes as in the file written. */
  s->off += TJ_RECORD_HEAD;
  CHECK(s->off + len <= s->file_len);
  CHECK(memcmp(s->file + s->off, payload, len) == 0);
  const uint8_t *p = payload;
  for (size_t i = 0; i < len; i++)
    s->hash = mix(s->hash, p[i]);
  s->hash = mix(s->hash, len);
  s->off += len;
  s->n++;
  return TR_OK;
}

static void write_file(const uint8_t *buf, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  CHECK(fd >= 0);
  CHECK(len == 0 || write(fd, buf, len) == (ssize_t)len);
  CHECK(close(fd) == 0);
}

/* The file's bytes now, into a malloc'd buffer. */
static uint8_t *read_file(size_t *len) {
  struct stat sb;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  CHECK(fd >= 0);
  CHECK(fstat(fd, &sb) == 0);
  *len = (size_t)sb.st_size;
  uint8_t *buf = malloc(*len ? *len : 1);
  CHECK(buf != NULL);
  CHECK(*len == 0 || read(fd, buf, *len) == (ssize_t)*len);
  close(fd);
  return buf;
}

static void one(const uint8_t *file, size_t file_len, size_t max_record) {
  const tj_options opts = {.flush = TJ_FLUSH_NONE, .max_record = max_record};
  tj_journal *j = NULL;
  tj_replay_info info;
  seen s = {.max_record = max_record, .file = file, .file_len = file_len, .off = TJ_HEADER_SIZE};

  tr_status st = tj_open(path, &opts, &j);
  CHECK(st == TR_OK || st == TR_ECORRUPT);
  if (st != TR_OK) {
    CHECK(j == NULL);
    return;
  }
  /* tj_open may have written a header into an empty or torn-header file. */
  size_t len;
  uint8_t *now = read_file(&len);
  if (file_len < TJ_HEADER_SIZE) {
    /* It held a prefix of the header, and now holds the header alone. */
    CHECK(len == TJ_HEADER_SIZE && memcmp(now, file, file_len) == 0);
    file = now;
    file_len = len;
    s.file = file;
    s.file_len = file_len;
  } else {
    CHECK(len == file_len && memcmp(now, file, len) == 0);
  }

  st = tj_replay(j, on_record, &s, &info);
  CHECK(st == TR_OK || st == TR_ECORRUPT);
  uint8_t *after = read_file(&len);
  if (st == TR_ECORRUPT) {
    CHECK(s.n == 0);
    CHECK(len == file_len && memcmp(after, file, len) == 0);
    CHECK(info.corrupt_offset >= TJ_HEADER_SIZE && info.corrupt_offset < file_len);
    CHECK(tj_append(j, "\xc0", 1) == TR_ESTATE);
  } else {
    CHECK(info.records == s.n);
    CHECK(info.end == len && info.end == s.off);
    CHECK(info.dropped_bytes == file_len - len);
    CHECK(len <= file_len && memcmp(after, file, len) == 0);
    /* A second replay: the same records, nothing more to drop. */
    seen again = {.max_record = max_record, .file = after, .file_len = len, .off = TJ_HEADER_SIZE};
    CHECK(tj_replay(j, on_record, &again, &info) == TR_OK);
    CHECK(again.n == s.n && again.hash == s.hash && info.dropped_bytes == 0);
    /* Appending continues the history. */
    CHECK(tj_append(j, "\x91\x2a", 2) == TR_OK);
    CHECK(tj_size(j) == len + TJ_RECORD_HEAD + 2);
    CHECK(tj_replay(j, NULL, NULL, &info) == TR_OK);
    CHECK(info.records == s.n + 1 && info.dropped_bytes == 0);
  }
  free(after);
  free(now);
  CHECK(tj_close(j) == TR_OK);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  /* Every input writes three files: prefer a memory-backed directory (on
   * ext4, rewriting a file through O_TRUNC forces its data out at close). */
  const char *tmp = getenv("TMPDIR");
  if (tmp == NULL || *tmp == '\0')
    tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  snprintf(dir, sizeof dir, "%s/fuzz-journal.XXXXXX", tmp);
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/j.tj", dir);
  atexit(cleanup);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const uint8_t header[TJ_HEADER_SIZE] = {'T', 'R', 'J', 'O', 'U', 'R', 'N', 'L',
                                                 1,   0,   0,   0,   0,   0,   0,   0};
  uint8_t *withhdr = malloc(TJ_HEADER_SIZE + size);
  CHECK(withhdr != NULL);
  memcpy(withhdr, header, TJ_HEADER_SIZE);
  if (size > 0)
    memcpy(withhdr + TJ_HEADER_SIZE, data, size);

  write_file(data, size);
  one(data, size, TJ_MAX_RECORD);
  write_file(withhdr, TJ_HEADER_SIZE + size);
  one(withhdr, TJ_HEADER_SIZE + size, TJ_MAX_RECORD);
  write_file(withhdr, TJ_HEADER_SIZE + size);
  one(withhdr, TJ_HEADER_SIZE + size, 48);
  free(withhdr);
  return 0;
}
