/* SPDX-License-Identifier: Apache-2.0 */
/* Private to master/: the recent events an operator asks about with
 * `show events`: reloads, worker exits, endpoint health, ejection and admin
 * changes, and priority-load (failover) changes, newest last. A fixed ring in
 * the master's memory; older events are overwritten. Master only. */
#ifndef ISM_MASTER_EVENTS_H
#define ISM_MASTER_EVENTS_H

#include <stdint.h>

#include "shm/shm-t.h"
#include "shm/table-t.h"

struct ism_shm;

#define ISM_EVENTS_MAX 256

struct ism_event {
	uint64_t wall_ms;
	char kind[16]; /* reload, worker, health, ejection, admin, failover */
	char text[200];
};

struct ism_events {
	struct ism_event ring[ISM_EVENTS_MAX];
	uint64_t n; /* events recorded since start */
	/* what the endpoints and clusters looked like at the last look: per
	 * endpoint slot, health, admin state and the slot's incarnation then
	 * (0: not seen; a slot given to another key is new) */
	uint8_t ep_health[ISM_MAX_ENDPOINTS];
	uint8_t ep_admin[ISM_MAX_ENDPOINTS];
	uint32_t ep_seen[ISM_MAX_ENDPOINTS];
	/* per outlier slot: ejected, and the slot's incarnation then (0: not
	 * seen; a slot given to another key is new) */
	uint8_t od_ejected[ISM_MAX_OD_SLOTS];
	uint32_t od_seen[ISM_MAX_OD_SLOTS];
	const struct ism_table *loads_of; /* table the load snapshot belongs to */
	uint8_t *loads;			  /* n_clusters * ISM_MAX_PRIORITIES */
};

/* Records an event in ev (NULL: none kept). */
void ism_event_add(struct ism_events *ev, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Compares the endpoint states and the cluster loads of t with the last look
 * and records what changed. Called by the master after each recomputation. */
void ism_events_observe(struct ism_events *ev, const struct ism_table *t,
			const struct ism_shm *shm);

void ism_events_free(struct ism_events *ev);

/* An enum ism_ep_admin as the operator writes it: "ready", "drain", "maint". */
const char *ism_events_admin_name(uint32_t admin);

#endif
