/*
 * troupe.h - the whole public API of troupe, an actor runtime for C.
 * Include this one header; it includes only standard headers besides its own.
 */
#ifndef TROUPE_H
#define TROUPE_H

#include "troupe/core.h"
#include "troupe/fault.h"
#include "troupe/msg.h"
#include "troupe/status.h"
#include "troupe/sup.h"
#include "troupe/time.h"
#include "troupe/trace.h"

#define TROUPE_VERSION_MAJOR 0
#define TROUPE_VERSION_MINOR 1
#define TROUPE_VERSION_PATCH 0

#endif /* TROUPE_H */
