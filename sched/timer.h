/*
 * timer.h - the scheduler's timer heap and thread (internal to sched/; the
 * rest of troupe uses tri_sched_timer_* in sched.h).
 */
#ifndef TROUPE_TIMER_H
#define TROUPE_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#include "sched.h"

typedef struct tri_timers tri_timers;

int tri_timers_new(tri_sched *s, const tri_sched_ops *ops, tri_timers **out);
int tri_timers_start(tri_timers *t);
void tri_timers_stop(tri_timers *t);
/* Stops, then frees every pending timer's data (ops->timer_free). */
void tri_timers_free(tri_timers *t);
/* Arm; counts one unit of work for participant w or x. Returns the id, or 0
 * when out of memory (nothing counted then). */
uint64_t tri_timers_add(tri_timers *t, tri_worker *w, tri_ext *x, uint64_t delay_ns,
                        uint64_t period_ns, void *data);
bool tri_timers_cancel(tri_timers *t, uint64_t id);
void tri_timers_stats(tri_timers *t, uint64_t *armed, uint64_t *fired, uint64_t *cancelled);

#endif
