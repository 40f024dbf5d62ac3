/* SPDX-License-Identifier: Apache-2.0 */
/* The attributes an access-log filter's CEL expression may read (Istio's
 * Telemetry accessLogging[].filter, evaluated as Envoy's CEL access-log filter
 * does): Envoy's names and CEL types. conf/telemetry.c compiles expressions
 * against them; worker/logfilter.c gives their values for one exchange. */
#ifndef ISM_CONF_LOGATTRS_H
#define ISM_CONF_LOGATTRS_H

#include "conf/cel.h"

/* X(id, Envoy's name, CEL type) */
#define ISM_LOG_ATTRS(X)                                                                           \
	X(REQ_PATH, "request.path", ISM_CEL_STRING)                                                \
	X(REQ_URL_PATH, "request.url_path", ISM_CEL_STRING)                                        \
	X(REQ_HOST, "request.host", ISM_CEL_STRING)                                                \
	X(REQ_SCHEME, "request.scheme", ISM_CEL_STRING)                                            \
	X(REQ_METHOD, "request.method", ISM_CEL_STRING)                                            \
	X(REQ_HEADERS, "request.headers", ISM_CEL_MAP)                                             \
	X(REQ_REFERER, "request.referer", ISM_CEL_STRING)                                          \
	X(REQ_USERAGENT, "request.useragent", ISM_CEL_STRING)                                      \
	X(REQ_ID, "request.id", ISM_CEL_STRING)                                                    \
	X(REQ_PROTOCOL, "request.protocol", ISM_CEL_STRING)                                        \
	X(REQ_QUERY, "request.query", ISM_CEL_STRING)                                              \
	X(REQ_DURATION, "request.duration", ISM_CEL_DURATION)                                      \
	X(REQ_SIZE, "request.size", ISM_CEL_INT)                                                   \
	X(RESP_CODE, "response.code", ISM_CEL_INT)                                                 \
	X(RESP_CODE_DETAILS, "response.code_details", ISM_CEL_STRING)                              \
	X(RESP_SIZE, "response.size", ISM_CEL_INT)                                                 \
	X(RESP_FLAGS, "response.flags", ISM_CEL_INT)                                               \
	X(RESP_HEADERS, "response.headers", ISM_CEL_MAP)                                           \
	X(RESP_TRAILERS, "response.trailers", ISM_CEL_MAP)                                         \
	X(RESP_GRPC_STATUS, "response.grpc_status", ISM_CEL_INT)                                   \
	X(SRC_ADDRESS, "source.address", ISM_CEL_STRING)                                           \
	X(SRC_PORT, "source.port", ISM_CEL_INT)                                                    \
	X(DST_ADDRESS, "destination.address", ISM_CEL_STRING)                                      \
	X(DST_PORT, "destination.port", ISM_CEL_INT)                                               \
	X(CONN_ID, "connection.id", ISM_CEL_UINT)                                                  \
	X(CONN_MTLS, "connection.mtls", ISM_CEL_BOOL)                                              \
	X(CONN_SNI, "connection.requested_server_name", ISM_CEL_STRING)                            \
	X(CONN_TLS_VERSION, "connection.tls_version", ISM_CEL_STRING)                              \
	X(CONN_TERMINATION, "connection.termination_details", ISM_CEL_STRING)                      \
	X(CONN_SUBJECT_LOCAL, "connection.subject_local_certificate", ISM_CEL_STRING)              \
	X(CONN_SUBJECT_PEER, "connection.subject_peer_certificate", ISM_CEL_STRING)                \
	X(CONN_URI_SAN_LOCAL, "connection.uri_san_local_certificate", ISM_CEL_STRING)              \
	X(CONN_URI_SAN_PEER, "connection.uri_san_peer_certificate", ISM_CEL_STRING)                \
	X(CONN_DNS_SAN_LOCAL, "connection.dns_san_local_certificate", ISM_CEL_STRING)              \
	X(CONN_DNS_SAN_PEER, "connection.dns_san_peer_certificate", ISM_CEL_STRING)                \
	X(CONN_SHA256_PEER, "connection.sha256_peer_certificate_digest", ISM_CEL_STRING)           \
	X(UP_ADDRESS, "upstream.address", ISM_CEL_STRING)                                          \
	X(UP_PORT, "upstream.port", ISM_CEL_INT)                                                   \
	X(UP_LOCAL_ADDRESS, "upstream.local_address", ISM_CEL_STRING)                              \
	X(UP_TRANSPORT_FAILURE, "upstream.transport_failure_reason", ISM_CEL_STRING)               \
	X(UP_ATTEMPTS, "upstream.request_attempt_count", ISM_CEL_UINT)                             \
	X(XDS_CLUSTER, "xds.cluster_name", ISM_CEL_STRING)                                         \
	X(XDS_ROUTE, "xds.route_name", ISM_CEL_STRING)

#define ISM_LOG_ATTR_ENUM(id, name, type) ISM_LA_##id,
enum ism_log_attr { ISM_LOG_ATTRS(ISM_LOG_ATTR_ENUM) ISM_LA_COUNT };
#undef ISM_LOG_ATTR_ENUM

/* Envoy's attributes that isthmus does not give yet: an expression that
 * reads one is refused as "not implemented yet" (conf/telemetry.c), not as
 * unknown. */
#define ISM_LOG_ATTRS_LATER                                                                        \
	"request.time", "request.total_size", "response.total_size", "response.backend_latency",   \
	    "connection.transport_failure_reason", "upstream.tls_version", "xds.node",             \
	    "xds.cluster_metadata", "xds.route_metadata", "xds.upstream_host_metadata",            \
	    "xds.filter_chain_name", "metadata", "filter_state"

#endif
