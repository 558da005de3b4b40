/*
 * opt.h - command-line number parsing shared by the samples (not part of
 * troupe's API).
 */
#ifndef TROUPE_SAMPLES_OPT_H
#define TROUPE_SAMPLES_OPT_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

/* A decimal number in [min, max], with an optional k (10^3) or M (10^6). */
static inline bool parse_num(const char *s, uint64_t min, uint64_t max, uint64_t *out) {
  uint64_t v = 0, scale = 1;
  const char *p = s;
  if (*p < '0' || *p > '9')
    return false;
  for (; *p >= '0' && *p <= '9'; p++) {
    unsigned d = (unsigned)(*p - '0');
    if (v > (UINT64_MAX - d) / 10)
      return false;
    v = v * 10 + d;
  }
  if (*p == 'k')
    scale = 1000, p++;
  else if (*p == 'M')
    scale = 1000000, p++;
  if (*p != '\0' || v > UINT64_MAX / scale || v * scale < min || v * scale > max)
    return false;
  *out = v * scale;
  return true;
}

/* The long name of option `val` in a getopt_long table ("?" if none). */
static inline const char *opt_name(const struct option *opts, int val) {
  for (const struct option *o = opts; o->name != NULL; o++)
    if (o->val == val)
      return o->name;
  return "?";
}

#endif /* TROUPE_SAMPLES_OPT_H */
