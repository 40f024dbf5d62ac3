/* SPDX-License-Identifier: Apache-2.0 */
/* Consistent hashing for ism_cluster.hash, the lookup side: the tables are
 * built at compile time (conf/hashring.h); lookups are pure. */
#ifndef ISM_WORKER_HASH_H
#define ISM_WORKER_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "lib/strmap.h" /* ism_hash64 */
#include "shm/table-t.h"

/* The ring position for hash h: the first point >= h, wrapping. */
uint32_t ism_ring_lookup(const uint64_t *points, uint32_t n_points, uint64_t h);

#endif
