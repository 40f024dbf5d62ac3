/* SPDX-License-Identifier: Apache-2.0 */
/* Request mirroring in the configuration model (conf/mirror.c). Private to
 * conf/; called by the loader, in the master and in `isthmus -c`. */
#ifndef ISM_CONF_MIRROR_H
#define ISM_CONF_MIRROR_H

#include <stdint.h>

#include "conf/model.h"

/* A route's mirror, mirrorPercentage, mirrorPercent (or mirror_percent) and
 * mirrors[] into r, each error reported with its position. */
void ism_model_mirrors(struct ism_vctx *v, const struct ism_node *route, const char *ns,
		       struct ism_cm_route *r);
/* Istio's mergeHTTPRoute: what the delegate route out leaves unset of them
 * comes from root. */
void ism_model_mirrors_merge(const struct ism_cm_route *root, struct ism_cm_route *out);
/* The share of requests route r's mirror gets, in millionths (Istio's
 * MirrorPercent: 100 % unless a percentage says otherwise). */
uint32_t ism_model_mirror_pct(const struct ism_cm_route *r);

#endif
