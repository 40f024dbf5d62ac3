/* SPDX-License-Identifier: Apache-2.0 */
#include "health/warmup.h"

#include <math.h>
#include <stdatomic.h>

double ism_warmup_factor(const struct ism_cluster *cl, const struct ism_ep_state *st,
			 uint64_t now_ms)
{
	uint64_t since = atomic_load_explicit(&st->warm_since_ms, memory_order_relaxed), t;
	double f;

	if (cl->warmup_ms == 0 || since == 0 || now_ms >= since + cl->warmup_ms ||
	    atomic_load_explicit(&st->health, memory_order_relaxed) != ISM_EP_HEALTHY)
		return 1.0;
	t = now_ms > since ? now_ms - since : 0;
	f = (double)(t ? t : 1) / (double)cl->warmup_ms;
	if (cl->warmup_aggression != 1.0)
		f = pow(f, 1.0 / cl->warmup_aggression);
	return f > cl->warmup_minimum ? f : cl->warmup_minimum;
}
