/* SPDX-License-Identifier: Apache-2.0 */
/* Istio's and Envoy's defaults that more than one component relies on, in one
 * place: what the loader writes into a table when the file says nothing, and
 * what a reader assumes when it has no table (yet). Header only; any process. */
#ifndef ISM_CONF_DEFAULTS_H
#define ISM_CONF_DEFAULTS_H

/* Envoy's overprovisioning factor 1.4, in percent: a priority level counts as
 * wholly healthy while 1/1.4 (about 71 %) of its hosts are. */
#define ISM_DEFAULT_OVERPROVISIONING 140
/* Envoy's healthy_panic_threshold, which a cluster keeps where its
 * DestinationRule has no outlierDetection (istiod sets it to minHealthPercent,
 * default 0, only with one): a priority less than half healthy uses all its
 * endpoints. */
#define ISM_DEFAULT_PANIC_THRESHOLD 50
/* Envoy's connection-pool idle timeout, its common_http_protocol_options'
 * default of an hour (Istio's connectionPool.http and tcp.idleTimeout unset:
 * istiod sets none): an upstream connection unused this long is closed. */
#define ISM_DEFAULT_POOL_IDLE_MS 3600000u
/* Envoy's outlier_detection.max_ejection_time: the ejection time of an
 * endpoint ejected again and again stops growing here (or at the base time,
 * when that is longer). */
#define ISM_DEFAULT_MAX_EJECTION_MS 300000u
/* spec.timeouts.drain unset: the bound on a graceful stop's drain, as Istio's
 * terminationDrainDuration. */
#define ISM_DEFAULT_DRAIN_MS 30000u
/* spec.timeouts.streamIdle unset: Envoy's stream_idle_timeout default (and
 * Istio's EDGE connection profile); Istio's plain gateway sets 0, none. */
#define ISM_DEFAULT_STREAM_IDLE_MS 300000u
/* Istio's connectionPool.tcp.idleTimeout unset: a TCP or TLS-passthrough
 * tunnel without a byte either way for an hour is closed (Envoy's TCP proxy
 * idle_timeout as Istio sets it). */
#define ISM_DEFAULT_TCP_IDLE_MS 3600000u
/* spec.dns unset: a name's answer is kept for its TTL, but at least 5 s
 * (Envoy's dns_refresh_rate, also its retry after a failure) and at most
 * 300 s; one resolution, retries included, is given 5 s. */
#define ISM_DEFAULT_DNS_MIN_REFRESH_MS 5000u
#define ISM_DEFAULT_DNS_MAX_REFRESH_MS 300000u
#define ISM_DEFAULT_DNS_TIMEOUT_MS     5000u
#define ISM_DNS_MAX_SERVERS	       8 /* appliance.c says "at most 8 servers" */
/* The distinct names of DNS ServiceEntries the master resolves. */
#define ISM_DNS_MAX_NAMES 4096

#endif
