/* SPDX-License-Identifier: Apache-2.0 */
/* Open-file planning: see master/fds.h. */
#include "master/fds.h"

#include <errno.h>

uint64_t ism_fds_need(uint32_t max_conn, uint32_t n_listeners)
{
	return (uint64_t)max_conn * ISM_FDS_PER_CONN + ISM_FDS_RESERVE + n_listeners;
}

int ism_fds_plan(uint32_t explicit_max, uint32_t n_listeners, uint64_t soft, uint64_t hard,
		 enum ism_fds_raise raise, struct ism_fds_plan *p)
{
	uint64_t fixed = ism_fds_need(0, n_listeners);

	*p = (struct ism_fds_plan){.soft = soft, .hard = hard};
	if (explicit_max == 0) {
		uint64_t room = raise == ISM_FDS_RAISE && hard > soft ? hard : soft;
		uint64_t fit = room > fixed ? (room - fixed) / ISM_FDS_PER_CONN : 0;

		p->max_conn = fit < ISM_FDS_DEFAULT_MAX ? (uint32_t)fit : ISM_FDS_DEFAULT_MAX;
		p->need = ism_fds_need(p->max_conn ? p->max_conn : 1, n_listeners);
		if (p->max_conn == 0)
			return -EMFILE;
		if (p->need > soft)
			p->soft = p->need;
		return 0;
	}
	p->max_conn = explicit_max;
	p->need = ism_fds_need(explicit_max, n_listeners);
	if (p->need <= soft)
		return 0;
	if (raise != ISM_FDS_RAISE)
		return -EMFILE;
	p->soft = p->need;
	if (p->need > hard)
		p->hard = p->need; /* the master tries; unprivileged, it is refused */
	return 0;
}
