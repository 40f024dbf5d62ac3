/* SPDX-License-Identifier: Apache-2.0 */
/* The per-cluster balancing state the master keeps in shared memory: priority
 * loads and effective locality weights (struct ism_cluster_dyn), recomputed from
 * the endpoint states whenever the health epoch moves, and the outlier-detection
 * sweeps. Master only. */
#ifndef ISM_HEALTH_LBSTATE_H
#define ISM_HEALTH_LBSTATE_H

#include <stdint.h>

#include "shm/shm-t.h"
#include "shm/table-t.h"

/* Recomputes the dyn state of every cluster of t from the endpoint and outlier
 * states in h. Safe while workers read it (sequence counter). */
void ism_lbstate_compute(const struct ism_table *t, const struct ism_shm_hdr *h);

/* Runs the outlier sweeps of t's clusters that are due at now_ms (monotonic).
 * next_sweep holds one due time per cluster (zeroed for a new table: all due).
 * Returns how many endpoints changed state; *next_due_ms is the earliest next
 * due time (UINT64_MAX: no cluster has outlier detection). */
int ism_lbstate_sweep(const struct ism_table *t, struct ism_shm_hdr *h,
		      const struct ism_shm_pub *pub, uint64_t *next_sweep, uint64_t now_ms,
		      uint64_t *next_due_ms);

#endif
