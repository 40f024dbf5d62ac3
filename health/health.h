/* Active health checks, run by the master.
 *
 * Non-blocking: the checker owns an epoll descriptor that the master's poll loop
 * waits on, and timers the master honours through ism_health_timeout_ms. Results
 * are written into the shared endpoint-state table (ism_ep_state.health), so every
 * worker sees them on its next pick. Checks are spread over each interval (a
 * per-endpoint offset), so many endpoints are not checked in one burst. */
#ifndef ISM_HEALTH_HEALTH_H
#define ISM_HEALTH_HEALTH_H

#include <stdint.h>

#include "shm/shm.h"

struct ism_health;

/* Returns 0 and *out, or -errno. */
int ism_health_create(struct ism_shm *shm, struct ism_health **out);
void ism_health_destroy(struct ism_health *h);

/* Takes the endpoints and checks of a newly published table. Endpoints that keep
 * their id keep their counters and health; endpoints whose service no longer has
 * a check become healthy; new ones with a check start unhealthy and are checked
 * at once. Master only. */
int ism_health_set_table(struct ism_health *h, const struct ism_table *t);

/* The epoll descriptor to wait on (readable when ism_health_run has work). */
int ism_health_fd(const struct ism_health *h);
/* Milliseconds until the next check or timeout is due (0: now; -1: none). */
int ism_health_timeout_ms(const struct ism_health *h, uint64_t now_ms);
/* Starts due checks, advances the ones in progress, records results. */
void ism_health_run(struct ism_health *h, uint64_t now_ms);

#endif
