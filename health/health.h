/* SPDX-License-Identifier: Apache-2.0 */
/* Active health checks, run by the master (Envoy's HealthCheck semantics).
 *
 * HTTP checks (a GET, success by expected status ranges; a status outside them
 * fails the endpoint at once) and TCP checks (a completed connect), both
 * through TLS where the service port originates it (ism_cluster.hc_tls, its
 * settings without a subset; a TCP check then passes once the handshake
 * completes), after the PROXY header where the service port sends one
 * (ism_cluster.hc_pp; v1 naming the check's own connection, v2 LOCAL, as
 * Envoy's transport socket without a downstream connection). Timeouts and
 * network failures count toward unhealthy_threshold; healthy_threshold passes
 * bring an endpoint back; a new endpoint starts unhealthy and its first check
 * decides. Waits follow Envoy's interval state machine (interval, unhealthy,
 * unhealthy-edge and healthy-edge intervals) plus the configured jitter, and
 * checks are spread over each interval, so many endpoints are not checked in
 * one burst. An endpoint in maintenance (admin state maint) is not checked and
 * counts as unhealthy; out of it, it is checked at once and its first check
 * decides.
 *
 * Non-blocking: the checker owns an epoll descriptor that the master's poll loop
 * waits on, and timers the master honours through ism_health_timeout_ms. Results
 * are written into the shared endpoint-state table (ism_ep_state.health); every
 * change, and every outlier ejection a passing check ends, bumps the region's
 * health epoch, so the master recomputes the priority loads. */
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
/* An endpoint's admin state changed (maintenance suspends its checks, ready
 * resumes them): looked at in the next ism_health_run rather than at the
 * next second's. */
void ism_health_admin_changed(struct ism_health *h);
/* Milliseconds until the next check or timeout is due (0: now; -1: none). */
int ism_health_timeout_ms(const struct ism_health *h, uint64_t now_ms);
/* Starts due checks, advances the ones in progress, records results. */
void ism_health_run(struct ism_health *h, uint64_t now_ms);
/* Whether every checked endpoint that is not healthy has had a result
 * (Envoy's first round, which it waits for before a cluster serves; one
 * healthy before its service got a check serves meanwhile). */
bool ism_health_settled(const struct ism_health *h);
/* When the endpoints ism_health_settled waits for will have had their first
 * result at the latest, a check ending at its timeout (monotonic ms; 0: none
 * waits). */
uint64_t ism_health_settle_by(const struct ism_health *h);
/* Warms t, a table built and not published yet, as Envoy warms a cluster, its
 * first health checks included, before it serves: the endpoints of its
 * checked services that have no check and are not healthy (new ones, which
 * the master interns unhealthy) are checked from now, besides the running
 * checks; ism_health_settled says when they have had their first results.
 * The next ism_health_set_table keeps them when its table has them and
 * forgets them otherwise. Returns how many endpoints it took, or -errno.
 * Master only. */
int ism_health_warm(struct ism_health *h, const struct ism_table *t);

#endif
