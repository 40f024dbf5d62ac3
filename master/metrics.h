/* SPDX-License-Identifier: Apache-2.0 */
/* Private to master/: the admin listener's /metrics page, in the Prometheus
 * text format (0.0.4), and the writer every family goes through. Master only. */
#ifndef ISM_MASTER_METRICS_H
#define ISM_MASTER_METRICS_H

#include "master/reply.h"

struct ism_master;

/* What a family is: its name, type ("counter", "gauge", "histogram") and help. */
struct ism_metric {
	const char *name;
	const char *type;
	const char *help;
};

/* The family's "# HELP" and "# TYPE" lines. */
void ism_prom_family(struct ism_reply *r, const struct ism_metric *m);
/* One sample: name{key="value",...} v. The labels are (key, value) string
 * pairs ending with NULL; the values are escaped as the format wants. */
void ism_prom_u64(struct ism_reply *r, const char *name, unsigned long long v, ...)
    __attribute__((sentinel));
void ism_prom_f64(struct ism_reply *r, const char *name, double v, ...) __attribute__((sentinel));

/* Every family of the master's: traffic summed over the workers, the request
 * durations, responses by listener, route and cluster, reloads, workers,
 * limits, readiness, and per endpoint health, traffic and ejections. */
void ism_metrics_write(struct ism_master *m, struct ism_reply *r);

#endif
