/* SPDX-License-Identifier: Apache-2.0 */
/* A pick in total panic where one priority's endpoints are all kept out
 * (drained) and the other's all unhealthy. The loads count the drained
 * endpoints, as Envoy's count its excluded hosts, but no request goes to a
 * drained one: the drained priority's share falls back to the other's panic
 * set. It found nothing, and half the requests were answered 503, where
 * Envoy serves every request in total panic. */

#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "health/lbstate.h"
#include "health/priority.h"
#include "shm/shm-t.h"
#include "worker/balancer.h"

#define EP(i, p)                                                                                   \
	{                                                                                          \
		.id = (i), .od = (i), .weight = 1, .priority = (p)                                 \
	}

static const struct ism_endpoint eps[] = {EP(0, 0), EP(1, 0), EP(2, 1), EP(3, 1)};
static struct ism_cluster_dyn dyn;
static const struct ism_cluster clusters[] = {
    {.lb = ISM_LB_ROUND_ROBIN,
     .n_endpoints = 4,
     .endpoints = eps,
     .n_priorities = 2,
     .panic_threshold = 50,
     .dyn = &dyn},
};
static const struct ism_table table = {
    .magic = ISM_TABLE_MAGIC, .n_clusters = 1, .clusters = clusters};

static void test_total_panic_with_drained_priority(void **state)
{
	struct ism_shm_hdr *h = aligned_alloc(ISM_CACHELINE, sizeof(*h));
	struct ism_lb *lb;
	unsigned fails = 0;

	(void)state;
	assert_non_null(h);
	memset(h, 0, sizeof(*h));
	atomic_store(&h->eps[0].admin, ISM_EP_ADMIN_DRAIN);
	atomic_store(&h->eps[1].admin, ISM_EP_ADMIN_DRAIN);
	atomic_store(&h->eps[2].health, ISM_EP_UNHEALTHY);
	atomic_store(&h->eps[3].health, ISM_EP_UNHEALTHY);
	atomic_fetch_add(&h->health_epoch, 1);
	ism_lbstate_compute(&table, h);
	assert_int_equal(dyn.total_panic, 1);
	assert_true(dyn.healthy_load[0] > 0); /* the drained priority has a share */
	lb = ism_lb_new(&table);
	assert_non_null(lb);
	for (uint32_t r = 0; r < 1000; r++) {
		struct ism_lb_req rq = {.rnd = r * 2654435761u, .rnd2 = r * 40503u};
		int e = ism_lb_pick(lb, 0, h, &rq);

		if (e < 0)
			fails++;
		else
			assert_true(e == 2 || e == 3); /* never a drained endpoint */
	}
	ism_lb_free(lb);
	free(h);
	if (fails)
		fail_msg("%u of 1000 picks found no endpoint (503) in total panic", fails);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_total_panic_with_drained_priority)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
