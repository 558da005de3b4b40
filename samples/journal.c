/*
 * samples/journal.c - the append-only event journal (see journal.h).
 *
 * Problem. An event-sourced actor must be able to trust its history: after
 * a crash it folds the journal back into its state, and a wrong fold is a
 * wrong balance. Two kinds of damage look alike on disk and must be told
 * apart: the tail a power cut leaves (expected; drop it), and damage inside
 * the history (unexpected; refuse it).
 *
 * Approach.
 *  - Appending: a record (length, checksum, payload) is built in one buffer
 *    and written with one write() on an O_APPEND descriptor. A process
 *    killed at any point leaves the record whole or absent, because the
 *    page cache belongs to the kernel. If a write fails half way (a full
 *    disk), the partial record is cut off again with ftruncate, so an error
 *    still means nothing was appended. fsync (fdatasync: the size is data
 *    for this purpose) follows as the flush policy says.
 *  - Replaying: the file is mapped read-only and walked twice. Pass one
 *    validates every record and finds the first bad one, if any; a bad one
 *    followed by any complete valid record is middle damage (TR_ECORRUPT,
 *    nothing called back, nothing changed), otherwise it starts a torn
 *    tail. Pass two calls back for each good record. Then a torn tail is
 *    cut off, and the journal accepts appends.
 *
 * Invariants. `end` is the size of the file as far as this journal knows:
 * the header plus whole valid records. `ready` is true only after a replay
 * validated everything up to `end`, so an append never lands after
 * garbage. `broken` is set when an I/O error left the file in a state we do
 * not know (a failed truncate after a failed write, a failed fsync); it
 * stops appends until the file is reopened and replayed.
 */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct tj_journal {
  int fd;
  char *path;
  tj_flush flush;
  unsigned batch;
  size_t max_record;
  uint64_t end;       /* see the invariants above */
  unsigned unsynced;  /* records written since the last fsync */
  bool ready;         /* a replay succeeded: appends allowed */
  bool broken;        /* an I/O error left the file unknown: appends refused */
  unsigned char *buf; /* the record being appended */
  size_t cap;
};

/* ------------------------------------------------------------- CRC-32C */

/* CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, the checksum of
 * iSCSI, ext4 metadata and many log formats; check value
 * crc32c("123456789") = 0xE3069283. A byte-wise table is fast enough for a
 * sample (about 1 GB/s); real systems use the SSE4.2 instruction. */
static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++)
      c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    crc_table[i] = c;
  }
}

uint32_t tj_crc32c(uint32_t crc, const void *data, size_t len) {
  const unsigned char *p = data;
  pthread_once(&crc_once, crc_init);
  crc = ~crc;
  for (size_t i = 0; i < len; i++)
    crc = crc_table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

/* ------------------------------------------------------------- helpers */

static void put_u32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void make_header(unsigned char h[TJ_HEADER_SIZE]) {
  memcpy(h, TJ_MAGIC, 8);
  put_u32(h + 8, TJ_VERSION);
  put_u32(h + 12, 0);
}

/* The checksum a record stores: over its 4 length bytes, then the payload. */
static uint32_t record_crc(const unsigned char *len_bytes, const void *payload, size_t len) {
  return tj_crc32c(tj_crc32c(0, len_bytes, 4), payload, len);
}

/* Write all of `len` bytes: one write() unless the kernel writes less. */
static bool write_all(int fd, const void *buf, size_t len, size_t *done) {
  const unsigned char *p = buf;
  *done = 0;
  while (*done < len) {
    ssize_t n = write(fd, p + *done, len - *done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0)
        errno = EIO; /* a regular file does not write 0 bytes without a reason */
      return false;
    }
    *done += (size_t)n;
  }
  return true;
}

static bool read_all_at(int fd, void *buf, size_t len, off_t off) {
  unsigned char *p = buf;
  size_t got = 0;
  while (got < len) {
    ssize_t n = pread(fd, p + got, len - got, off + (off_t)got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0)
        errno = EIO;
      return false;
    }
    got += (size_t)n;
  }
  return true;
}

static int sync_fd(int fd) {
  int rc;
  do
    rc = fdatasync(fd);
  while (rc != 0 && errno == EINTR);
  return rc;
}

/* Make a new file's directory entry durable: fsync its directory. */
static int sync_parent_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir;
  int fd, rc, saved;
  if (slash == NULL)
    dir = strdup(".");
  else if (slash == path)
    dir = strdup("/");
  else
    dir = strndup(path, (size_t)(slash - path));
  if (dir == NULL)
    return -1;
  fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  free(dir);
  if (fd < 0)
    return -1;
  rc = fsync(fd);
  saved = errno;
  close(fd);
  errno = saved;
  return rc;
}

/* -------------------------------------------------------------- open */

/* Give an empty (or torn-at-creation) file its header. */
static tr_status write_header(tj_journal *j) {
  unsigned char h[TJ_HEADER_SIZE];
  size_t done;
  make_header(h);
  if (ftruncate(j->fd, 0) != 0 || !write_all(j->fd, h, sizeof h, &done))
    return TR_ESYS;
  if (j->flush != TJ_FLUSH_NONE && (sync_fd(j->fd) != 0 || sync_parent_dir(j->path) != 0))
    return TR_ESYS;
  j->end = TJ_HEADER_SIZE;
  return TR_OK;
}

/* Check the header of a file of `size` bytes; give an empty one its header. */
static tr_status check_header(tj_journal *j, uint64_t size) {
  unsigned char want[TJ_HEADER_SIZE], got[TJ_HEADER_SIZE];
  size_t n = size < TJ_HEADER_SIZE ? (size_t)size : TJ_HEADER_SIZE;
  make_header(want);
  if (n > 0 && !read_all_at(j->fd, got, n, 0))
    return TR_ESYS;
  if (memcmp(got, want, n) != 0)
    return TR_ECORRUPT;
  /* A prefix of the header is what a crash while creating the file leaves:
   * it held no record, so it is an empty journal. */
  if (size < TJ_HEADER_SIZE)
    return write_header(j);
  j->end = size;
  return TR_OK;
}

tr_status tj_open(const char *path, const tj_options *opts, tj_journal **out) {
  tj_options o = {0};
  struct stat sb;
  tr_status st;
  if (path == NULL || out == NULL)
    return TR_EINVAL;
  if (opts != NULL)
    o = *opts;
  if ((unsigned)o.flush > TJ_FLUSH_NONE || o.max_record > TJ_MAX_RECORD_CAP)
    return TR_EINVAL;
  tj_journal *j = calloc(1, sizeof *j);
  if (j == NULL)
    return TR_ENOMEM;
  j->fd = -1;
  j->flush = o.flush;
  j->batch = o.batch ? o.batch : TJ_DEFAULT_BATCH;
  j->max_record = o.max_record ? o.max_record : TJ_MAX_RECORD;
  j->path = strdup(path);
  if (j->path == NULL) {
    free(j);
    return TR_ENOMEM;
  }
  /* O_APPEND: every write goes to the end of the file, wherever it is. */
  j->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (j->fd < 0)
    st = TR_ESYS;
  else if (fstat(j->fd, &sb) != 0)
    st = TR_ESYS;
  else if (!S_ISREG(sb.st_mode))
    st = (errno = EINVAL, TR_ESYS);
  else
    st = check_header(j, (uint64_t)sb.st_size);
  if (st != TR_OK) {
    int saved = errno;
    if (j->fd >= 0)
      close(j->fd);
    free(j->path);
    free(j);
    errno = saved;
    return st;
  }
  *out = j;
  return TR_OK;
}

/* ------------------------------------------------------------ replay */

/* Is there a complete valid record at `off` in `map` (of `size` bytes)?
 * On yes, `*next` is the offset just past it. */
static bool record_at(const tj_journal *j, const unsigned char *map, uint64_t size, uint64_t off,
                      uint64_t *next) {
  if (size - off < TJ_RECORD_HEAD)
    return false;
  uint32_t len = get_u32(map + off);
  if (len == 0 || len > j->max_record || size - off - TJ_RECORD_HEAD < len)
    return false;
  const unsigned char *payload = map + off + TJ_RECORD_HEAD;
  if (record_crc(map + off, payload, len) != get_u32(map + off + 4))
    return false;
  if (tr_mp_check(payload, len) != TR_OK)
    return false;
  *next = off + TJ_RECORD_HEAD + len;
  return true;
}

tr_status tj_replay(tj_journal *j, tj_record_fn fn, void *user, tj_replay_info *info) {
  tj_replay_info dummy;
  struct stat sb;
  tr_status st = TR_OK;
  unsigned char *map = NULL;
  uint64_t size, off, next, good_end;
  if (info == NULL)
    info = &dummy;
  memset(info, 0, sizeof *info);
  if (j == NULL)
    return TR_EINVAL;
  j->ready = false;
  if (fstat(j->fd, &sb) != 0)
    return TR_ESYS;
  size = (uint64_t)sb.st_size;
  /* The header was checked at open; check it again, in case the file was
   * replaced or cut since (the cheap half of "one writer"). */
  if (size < TJ_HEADER_SIZE) {
    info->end = size;
    return TR_ECORRUPT;
  }
  if (size > TJ_HEADER_SIZE) {
    map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, j->fd, 0);
    if (map == MAP_FAILED)
      return TR_ESYS;
  }
  unsigned char want[TJ_HEADER_SIZE], got[TJ_HEADER_SIZE];
  make_header(want);
  if (map != NULL)
    memcpy(got, map, TJ_HEADER_SIZE);
  else if (!read_all_at(j->fd, got, TJ_HEADER_SIZE, 0))
    return TR_ESYS;
  if (memcmp(got, want, TJ_HEADER_SIZE) != 0) {
    st = TR_ECORRUPT;
    goto out;
  }

  /* Pass one: validate. */
  off = TJ_HEADER_SIZE;
  while (off < size && record_at(j, map, size, off, &next)) {
    off = next;
    info->records++;
  }
  good_end = off;
  if (good_end < size) {
    /* A bad record at good_end. Any complete valid record after it means the
     * damage is not a torn tail. */
    for (uint64_t o = good_end + 1; o + TJ_RECORD_HEAD < size; o++) {
      if (record_at(j, map, size, o, &next)) {
        info->corrupt_offset = good_end;
        info->end = good_end;
        info->records = 0;
        st = TR_ECORRUPT;
        goto out;
      }
    }
  }
  info->end = good_end;

  /* Pass two: call back, in order. */
  if (fn != NULL) {
    uint64_t n = 0;
    for (off = TJ_HEADER_SIZE; off < good_end; off = next) {
      uint32_t len = get_u32(map + off);
      next = off + TJ_RECORD_HEAD + len;
      st = fn(map + off + TJ_RECORD_HEAD, len, user);
      if (st != TR_OK) {
        info->records = n;
        goto out;
      }
      n++;
    }
  }

  /* Cut the torn tail (after unmapping: no page of the mapping may lie past
   * the new end of the file), and make the cut durable before anything is
   * appended after it. */
  if (map != NULL) {
    munmap(map, (size_t)size);
    map = NULL;
  }
  if (good_end < size) {
    if (ftruncate(j->fd, (off_t)good_end) != 0 ||
        (j->flush != TJ_FLUSH_NONE && sync_fd(j->fd) != 0)) {
      j->broken = true;
      return TR_ESYS;
    }
    info->dropped_bytes = size - good_end;
  }
  j->end = good_end;
  j->unsynced = 0;
  j->broken = false;
  j->ready = true;
  return TR_OK;

out:
  if (map != NULL)
    munmap(map, (size_t)size);
  return st;
}

/* ------------------------------------------------------------ append */

tr_status tj_append(tj_journal *j, const void *payload, size_t len) {
  tr_status st;
  size_t total, done;
  if (j == NULL || payload == NULL || len == 0)
    return TR_EINVAL;
  if (!j->ready || j->broken)
    return TR_ESTATE;
  if (len > j->max_record)
    return TR_ETOOBIG;
  if ((st = tr_mp_check(payload, len)) != TR_OK)
    return st;
  total = TJ_RECORD_HEAD + len;
  if (total > j->cap) {
    unsigned char *nb = realloc(j->buf, total);
    if (nb == NULL)
      return TR_ENOMEM;
    j->buf = nb;
    j->cap = total;
  }
  put_u32(j->buf, (uint32_t)len);
  put_u32(j->buf + 4, record_crc(j->buf, payload, len));
  memcpy(j->buf + TJ_RECORD_HEAD, payload, len);

  if (!write_all(j->fd, j->buf, total, &done)) {
    int saved = errno;
    /* Take back a partial record, so that the error means "nothing was
     * appended" and the next append does not land after garbage. */
    if (done > 0 && ftruncate(j->fd, (off_t)j->end) != 0)
      j->broken = true;
    errno = saved;
    return TR_ESYS;
  }
  j->end += total;
  j->unsynced++;
  if (j->flush == TJ_FLUSH_EVENT || (j->flush == TJ_FLUSH_BATCH && j->unsynced >= j->batch))
    return tj_sync(j);
  return TR_OK;
}

tr_status tj_sync(tj_journal *j) {
  if (j == NULL)
    return TR_EINVAL;
  if (j->unsynced == 0)
    return TR_OK;
  if (sync_fd(j->fd) != 0) {
    /* After a failed fsync the kernel may have dropped the dirty pages and
     * marked them clean: a retry could "succeed" without the data. */
    j->broken = true;
    return TR_ESYS;
  }
  j->unsynced = 0;
  return TR_OK;
}

tr_status tj_close(tj_journal *j) {
  tr_status st = TR_OK;
  if (j == NULL)
    return TR_OK;
  if (j->flush != TJ_FLUSH_NONE && !j->broken && tj_sync(j) != TR_OK)
    st = TR_ESYS;
  if (close(j->fd) != 0 && st == TR_OK)
    st = TR_ESYS;
  free(j->buf);
  free(j->path);
  free(j);
  return st;
}

uint64_t tj_size(const tj_journal *j) { return j ? j->end : 0; }
