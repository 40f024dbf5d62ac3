/* SPDX-License-Identifier: Apache-2.0 */
/* fault of an HTTP route (Istio HTTPFaultInjection), validated as Istio's
 * webhook validates it and kept as Istio hands it to Envoy's fault filter:
 * shares of requests per million, a fixed delay, an HTTP or a gRPC status. */
#include <string.h>

#include "conf/model.h"
#include "lib/grpc.h"

/* Whether percentage.value of n is above 0 yet below Istio's smallest share
 * (0.0001): a digit other than 0 where the share counts none. */
static bool tiny(const struct ism_node *n)
{
	const struct ism_node *p = ism_node_get(n, "percentage", NULL);
	const struct ism_node *val =
	    p != NULL && p->kind == ISM_NODE_MAP ? ism_node_get(p, "value", NULL) : NULL;

	return val != NULL && val->kind == ISM_NODE_SCALAR && strpbrk(val->str, "123456789");
}

/* The share of requests a fault applies to: percentage, or the deprecated
 * integer percent where the kind has one (delay). Without either Istio gives
 * Envoy 0 %: nothing happens, and a warning says so. */
static uint32_t share(struct ism_vctx *v, const struct ism_node *n, bool has_percent,
		      const char *what)
{
	uint32_t ppm = 0, pct;
	int rc = ism_v_percent(v, n, "percentage", &ppm);

	if (rc > 0 && ppm == 0 && tiny(n)) {
		size_t old = ism_v_push(v, ".percentage.value");

		ism_v_err(v, ism_node_get(ism_node_get(n, "percentage", NULL), "value", NULL),
			  "must be 0, or between 0.0001 and 100");
		ism_v_pop(v, old);
	}
	if (rc != 0) {
		if (has_percent && ism_node_get(n, "percent", NULL) != NULL) {
			size_t old = ism_v_push(v, ".percent");

			ism_v_warn(v, ism_node_get(n, "percent", NULL),
				   "ignored: percentage is set (as Istio reads them)");
			ism_v_pop(v, old);
		}
		return ppm;
	}
	if (has_percent) {
		rc = ism_v_u32(v, n, "percent", false, 0, 100, &pct);
		if (rc > 0)
			return pct * 10000;
		if (rc < 0)
			return 0;
	}
	ism_v_warn(v, n, "no percentage: no request is %s (Istio's default)", what);
	return 0;
}

static void parse_delay(struct ism_vctx *v, const struct ism_node *n, struct ism_fault *f)
{
	static const char *const keys[] = {"fixedDelay", "percentage", "percent", NULL};
	static const char *const unimpl[] = {"exponentialDelay", NULL};
	size_t old = ism_v_push(v, ".delay");

	ism_v_keys(v, n, keys, unimpl);
	if (ism_v_istio_dur(v, n, "fixedDelay", &f->delay_ms) == 0 &&
	    ism_node_get(n, "exponentialDelay", NULL) == NULL)
		ism_v_warn(v, n, "no fixedDelay: no request is delayed (Istio drops such a delay)");
	f->delay_ppm = share(v, n, true, "delayed");
	ism_v_pop(v, old);
}

static void parse_abort(struct ism_vctx *v, const struct ism_node *n, struct ism_fault *f)
{
	static const char *const keys[] = {"httpStatus", "grpcStatus", "percentage", NULL};
	static const char *const unimpl[] = {"http2Error", NULL};
	const struct ism_node *http = ism_node_get(n, "httpStatus", NULL);
	const struct ism_node *grpc = ism_node_get(n, "grpcStatus", NULL);
	const char *name = NULL;
	uint32_t status = 0;
	size_t old = ism_v_push(v, ".abort");

	ism_v_keys(v, n, keys, unimpl);
	f->abort_grpc = -1;
	if (http != NULL && grpc != NULL) {
		size_t o2 = ism_v_push(v, ".grpcStatus");

		ism_v_err(v, grpc, "only one of httpStatus, grpcStatus may be set");
		ism_v_pop(v, o2);
	} else if (http != NULL) {
		if (ism_v_u32(v, n, "httpStatus", false, 200, 599, &status) > 0)
			f->abort_status = (uint16_t)status;
	} else if (grpc != NULL) {
		if (ism_v_enum(v, n, "grpcStatus", ism_grpc_names, NULL, &name) > 0) {
			/* Envoy answers a gRPC abort with HTTP 200 and this grpc-status. */
			for (int16_t i = 0; ism_grpc_names[i] != NULL; i++)
				if (ism_grpc_names[i] == name)
					f->abort_grpc = i;
			f->abort_status = 200;
		}
	} else if (ism_node_get(n, "http2Error", NULL) == NULL) {
		ism_v_warn(v, n,
			   "no httpStatus or grpcStatus: no request is aborted (Istio drops "
			   "such an abort)");
	}
	f->abort_ppm = share(v, n, false, "aborted");
	ism_v_pop(v, old);
}

struct ism_fault *ism_model_fault(struct ism_vctx *v, const struct ism_node *route)
{
	static const char *const keys[] = {"delay", "abort", NULL};
	const struct ism_node *n = ism_v_node(v, route, "fault", false, ISM_NODE_MAP), *d, *a;
	struct ism_fault f = {.abort_grpc = -1}, *out;
	size_t old;
	bool known;

	if (n == NULL)
		return NULL;
	old = ism_v_push(v, ".fault");
	known = ism_v_keys(v, n, keys, NULL);
	d = ism_v_node(v, n, "delay", false, ISM_NODE_MAP);
	a = ism_v_node(v, n, "abort", false, ISM_NODE_MAP);
	if (d != NULL)
		parse_delay(v, d, &f);
	if (a != NULL)
		parse_abort(v, a, &f);
	/* A misspelt key was reported already: not one more error for it. */
	if (known && ism_node_get(n, "delay", NULL) == NULL &&
	    ism_node_get(n, "abort", NULL) == NULL)
		ism_v_err(v, n, "must set delay, abort or both");
	ism_v_pop(v, old);
	out = ism_v_alloc(v, 1, sizeof(*out));
	if (out != NULL)
		*out = f;
	return out;
}
