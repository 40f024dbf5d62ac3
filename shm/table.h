/* SPDX-License-Identifier: Apache-2.0 */
/* Reading the compiled route table (shm/table-t.h): accessors every process
 * uses, inline; the types stay apart in table-t.h. */
#ifndef ISM_SHM_TABLE_H
#define ISM_SHM_TABLE_H

#include <stdbool.h>
#include <stdint.h>

#include "shm/table-t.h"

/* Whether an operator of this kind has its value only once the upstream answers. */
static inline bool ism_hval_late(uint8_t kind)
{
	return kind >= ISM_HV_UPSTREAM_HOST;
}

/* Whether route r forwards to its destinations (not a redirect nor a direct
 * response, where Envoy's route entry and its CORS filter are absent). */
static inline bool ism_route_forwards(const struct ism_route *r)
{
	return r->act == NULL || r->act->kind == ISM_ROUTE_FORWARD;
}

/* Istio's name of a mode. */
static inline const char *ism_tls_mode_name(uint8_t mode)
{
	static const char *const names[] = {"DISABLE", "SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL",
					    "ISTIO_MUTUAL"};

	return mode < sizeof(names) / sizeof(names[0]) ? names[mode] : "?";
}

/* A listener's virtual hosts come in sets: set 0 is its plaintext servers',
 * set 1 + i its HTTPS server i's. */
static inline uint32_t ism_listener_sets(const struct ism_listener *l)
{
	return 1 + l->n_tls;
}

static inline const struct ism_vhost *ism_listener_set(const struct ism_listener *l, uint32_t set,
						       uint32_t *n)
{
	*n = set == 0 ? l->n_vhosts : l->tls[set - 1].n_vhosts;
	return set == 0 ? l->vhosts : l->tls[set - 1].vhosts;
}

/* d's count of priorities bounded by its arrays (a worker can write it). */
static inline uint32_t ism_dyn_priorities(const struct ism_cluster_dyn *d)
{
	return d->n_priorities < ISM_MAX_PRIORITIES ? d->n_priorities : ISM_MAX_PRIORITIES;
}

/* The TLS settings connections of cluster cl to its endpoint ep speak. */
static inline const struct ism_tls_conf *ism_ep_tls(const struct ism_cluster *cl,
						    const struct ism_endpoint *ep)
{
	return ep->mesh_tls && cl->auto_tls != NULL ? cl->auto_tls : &cl->tls;
}

/* What cl's active health check speaks to ep (NULL: plaintext). */
static inline const struct ism_tls_conf *ism_ep_hc_tls(const struct ism_cluster *cl,
						       const struct ism_endpoint *ep)
{
	return ep->mesh_tls && cl->hc_auto_tls != NULL ? cl->hc_auto_tls : cl->hc_tls;
}

#endif
