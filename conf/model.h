/* SPDX-License-Identifier: Apache-2.0 */
/* Private to conf/: the validated model (phase 2) and the validation helpers.
 *
 * Every string of the model points into the YAML tree or the pool of the
 * struct ism_conf that owns it; the model is freed at once with the pool. */
#ifndef ISM_CONF_MODEL_H
#define ISM_CONF_MODEL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "conf/defaults.h"
#include "conf/tree.h"
#include "lib/strmap.h"
#include "shm/table-t.h"

struct ism_cm_res {
	const char *kind;
	const char *ns;
	const char *name;
	const struct ism_node *at; /* the document's root */
	char label[352];	   /* "VirtualService default/reviews": kind, 63, 253 */
	/* metadata.creationTimestamp (a file exported from a cluster has it):
	 * seconds since the epoch, when has_created */
	bool has_created;
	int64_t created;
};

struct ism_cm_sm {
	enum ism_sm_kind kind;
	const char *s;
};

struct ism_cm_kv {
	const char *name;
	struct ism_cm_sm m;
};

struct ism_cm_label;

struct ism_cm_match {
	struct ism_cm_sm uri, scheme, method, authority;
	bool ignore_uri_case;
	uint32_t port;
	size_t n_headers, n_without, n_query;
	struct ism_cm_kv *headers, *without, *query;
	/* headers and withoutHeaders "@request.auth.claims.<a>.<b>" or
	 * "@request.auth.claims[<a>][<b>]": the verified JWT's claim (name: its
	 * names joined with ']'), as istiod's metadata matchers */
	size_t n_claims, n_without_claims;
	struct ism_cm_kv *claims, *without_claims;
	/* match.gateways: "<ns>/<name>" or "mesh"; none: every gateway the
	 * VirtualService is bound to. */
	size_t n_gateways;
	const char **gateways;
	const struct ism_node *gateways_at;
	/* sourceLabels / sourceNamespace: compared with the appliance's own
	 * labels and namespace, as Istio compares them with the proxy's. */
	size_t n_source_labels;
	struct ism_cm_label *source_labels;
	const char *source_ns;
};

struct ism_cm_se;

struct ism_cm_kvs {
	const char *name;
	const char *value;
	bool fmt; /* a header value with command operators: value as written */
};

/* Headers.HeaderOperations: names lowercased, values as sent ("%%" read as
 * "%"), or as written when they hold command operators (kvs.fmt, made for
 * each request: conf/hfmt.h); set and add sorted by the name as written, as
 * Istio sorts them. */
struct ism_cm_hdrops {
	size_t n_set, n_add, n_remove;
	struct ism_cm_kvs *set, *add;
	const char **remove;
};

/* Headers, of a route or of one of its destinations. */
struct ism_cm_headers {
	struct ism_cm_hdrops req, resp;
	/* request.set (else request.add) of host or :authority: Istio's way of
	 * writing an authority rewrite; NULL: none */
	const char *authority;
};

struct ism_cm_dest {
	const char *host;   /* FQDN, lowercased */
	const char *subset; /* NULL when none */
	uint32_t port;	    /* as written; 0 when absent */
	uint32_t weight;
	const struct ism_node *at, *host_at, *subset_at, *port_at;
	struct ism_cm_headers headers;
	/* Resolved by the cross-reference pass. */
	const struct ism_cm_se *se;
	/* the port written, else the ServiceEntry's only port; 0: the port of
	 * the listener routing to it, as istiod's GetDestinationCluster */
	uint16_t svc_port;
};

/* HTTPRewrite; NULL strings: not set. */
struct ism_cm_rewrite {
	const char *uri;
	const char *re, *sub; /* uriRegexRewrite match and rewrite */
	const char *authority;
};

/* HTTPRedirect; NULL strings: not set. */
struct ism_cm_redirect {
	bool set;
	const char *uri, *prefix_rewrite, *authority, *scheme;
	uint32_t port;		/* 0: none */
	bool port_from_request; /* derivePort FROM_REQUEST_PORT */
	uint32_t code;		/* 301 by default */
};

/* HTTPDirectResponse. */
struct ism_cm_direct {
	bool set;
	uint32_t status;
	const char *body; /* body.string, or body.bytes decoded; NULL: none */
	size_t body_len;
};

struct ism_cm_route {
	const char *name; /* NULL: "<ns>/<vs>#<index>" is made at compilation */
	size_t n_match;
	struct ism_cm_match *match;
	size_t n_dest;
	struct ism_cm_dest *dest;
	uint32_t timeout_ms;
	bool has_retry;		/* false: Istio's default policy */
	struct ism_retry retry; /* codes point into the pool */
	/* retryIgnorePreviousHosts was given; else a route of one destination
	 * whose cluster hashes retries to the same endpoint (compile_routes) */
	bool retry_prev_set;
	struct ism_cm_rewrite rewrite;
	struct ism_cm_headers headers;
	struct ism_cm_redirect redirect;
	struct ism_cm_direct direct;
	/* mirror (NULL: none) with mirrorPercentage and the deprecated
	 * mirrorPercent, in millionths (-1: not set), or mirrors[] (their
	 * weight: the percentage in millionths); conf/mirror.c */
	struct ism_cm_dest *mirror;
	int32_t mirror_pct, mirror_pct_old;
	size_t n_mirrors;
	struct ism_cm_dest *mirrors;
	/* delegate: "<ns>/<name>" of the VirtualService (one without hosts) whose
	 * routes take this one's place (conf/delegate.c); NULL when none. */
	const char *delegate;
	const struct ism_node *delegate_at;
	struct ism_fault *fault;  /* NULL: none */
	struct ism_cm_cors *cors; /* NULL: none */
};

/* An Istio L4MatchAttributes (tcp) or TLSMatchAttributes (tls). m holds
 * port, gateways, sourceLabels and sourceNamespace, read and answered as an
 * HTTP route's are (its HTTP conditions stay empty). */
struct ism_cm_l4match {
	struct ism_cm_match m;
	size_t n_sni; /* tls: sniHosts, lowercased */
	const char **sni;
	const struct ism_node *sni_at; /* the sniHosts list */
	size_t n_subnets;	       /* destinationSubnets */
	struct ism_subnet *subnets;
};

/* An Istio TCPRoute or TLSRoute. */
struct ism_cm_l4route {
	size_t n_match;
	struct ism_cm_l4match *match;
	size_t n_dest;
	struct ism_cm_dest *dest;
};

/* corsPolicy (conf/cors.c). */
struct ism_cm_cors {
	size_t n_origins;
	struct ism_cm_sm *origins;
	const char *methods, *headers, *expose; /* joined with ","; NULL: none */
	const char *max_age;			/* whole seconds; NULL: none */
	bool credentials;
	bool ignore_unmatched; /* unmatchedPreflights: IGNORE */
};

struct ism_cm_vs {
	struct ism_cm_res r;
	size_t n_hosts;
	const char **hosts;
	size_t n_gateways;
	const char **gateways; /* "<ns>/<name>" */
	const struct ism_node **gateway_at;
	size_t *gateway_idx; /* index in conf->gws, SIZE_MAX when none (cross-reference pass) */
	bool mesh;
	bool match_source;  /* some match has gateways or source conditions */
	bool delegate_only; /* no hosts: its routes serve through other's delegate */
	/* spec.exportTo as written: which namespaces' gateways it binds to */
	size_t n_export_to;
	const char **export_to;
	size_t n_routes;
	struct ism_cm_route *routes;
	size_t n_tcp, n_tls; /* spec.tcp, spec.tls */
	struct ism_cm_l4route *tcp, *tls;
};

struct ism_cm_srvhost {
	const char *ns; /* NULL or "*": any; ".": the Gateway's namespace */
	const char *dns;
};

/* TLS settings as written (conf/tls.c). The ism_str fields of c point into the
 * pool; credentialName(s) are resolved against the Appliance's credentials by
 * the cross-reference pass. */
struct ism_cm_tls {
	bool set;
	bool https_redirect;
	bool passthrough; /* a server's mode PASSTHROUGH (Istio's default mode) */
	struct ism_tls_conf c;
	size_t n_creds;
	const char *creds[ISM_TLS_MAX_CERTS];
	const struct ism_node *creds_at;
	const char *ca_cred; /* a server's caCertCredentialName; NULL: none */
	const struct ism_node *ca_cred_at;
	const char *path; /* field path of the tls block, for later errors */
};

/* What a Gateway server is, by its port.protocol and tls.mode, as Istio's
 * gateway code tells them apart (IsHTTPServer, IsPassThroughServer, a
 * non-HTTP server without tls). */
enum ism_srv_kind {
	ISM_SRV_HTTP = 0,    /* HTTP, HTTP2, GRPC: plaintext HTTP */
	ISM_SRV_HTTPS,	     /* HTTPS: TLS terminated here, then HTTP */
	ISM_SRV_PASSTHROUGH, /* TLS or HTTPS with tls.mode PASSTHROUGH: by SNI to tls routes */
	ISM_SRV_TCP,	     /* TCP, MONGO, REDIS, MYSQL: bytes to tcp routes */
	ISM_SRV_TLS_TCP,     /* TLS with a mode that terminates: TLS here, then tcp routes */
};

/* Servers sharing a listener must be of one class: plaintext HTTP, TLS
 * (HTTPS, passthrough and TLS-terminating TCP servers, told apart by SNI),
 * or TCP. */
static inline uint8_t ism_srv_class(uint8_t kind)
{
	return kind == ISM_SRV_PASSTHROUGH || kind == ISM_SRV_TLS_TCP ? ISM_SRV_HTTPS : kind;
}

/* The kind of a server of protocol (as Istio names it): passthrough, its tls
 * mode PASSTHROUGH; a TLS server that terminates TLS is ISM_SRV_TLS_TCP. */
uint8_t ism_model_server_kind(const char *protocol, bool passthrough);

struct ism_cm_server {
	uint16_t port;
	uint8_t kind;	      /* enum ism_srv_kind */
	const char *protocol; /* as Istio names it (HTTP, HTTPS, TCP, ...); default HTTP */
	const char *name;
	const struct ism_node *at;
	struct ism_cm_tls tls;
	const char *port_name; /* NULL when absent */
	const char *bind;      /* NULL: the appliance's listenAddress */
	size_t n_hosts;
	struct ism_cm_srvhost *hosts;
};

struct ism_cm_gw {
	struct ism_cm_res r;
	size_t n_servers;
	struct ism_cm_server *servers;
	const struct ism_node *selector_at; /* spec.selector; NULL: none */
	struct ism_cm_label *selector;
	size_t n_selector;
};

/* consistentHash */
struct ism_cm_hash {
	uint8_t on;		  /* enum ism_hash_on */
	const char *name;	  /* header (lowercased), cookie or query parameter name */
	const char *cookie_path;  /* "" when none */
	const char *cookie_attrs; /* "; name=value; name", or "" */
	bool cookie_issue;	  /* a ttl was given: issue the cookie when absent */
	uint32_t cookie_ttl_ms;
	uint8_t lb; /* ISM_LB_RING_HASH or ISM_LB_MAGLEV */
	uint32_t ring_size, table_size;
};

/* localityLbSetting.distribute[] */
struct ism_cm_distribute {
	const char *from;
	size_t n_to;
	const char **to; /* locality patterns */
	uint32_t *weight;
};

struct ism_cm_region_pair {
	const char *from, *to;
};

/* What a failoverPriority label name stands for. */
enum ism_fprio_topo {
	ISM_FPRIO_LABEL = 0, /* a label of the endpoint */
	ISM_FPRIO_REGION,    /* topology.kubernetes.io/region: the locality's region */
	ISM_FPRIO_ZONE,	     /* topology.kubernetes.io/zone */
	ISM_FPRIO_SUBZONE,   /* topology.istio.io/subzone */
};

/* The failoverPriority entries of one label name. An endpoint agrees with an
 * entry when its value for the name is the entry's; where it has value x, the
 * first entry of the name it disagrees with is first when x differs from want,
 * else next_diff (SIZE_MAX: none). */
struct ism_cm_fkey {
	const char *key;
	uint8_t topo;	    /* enum ism_fprio_topo */
	size_t first;	    /* its first entry */
	const char *want;   /* the value the first entry asks for */
	size_t next_diff;   /* its first entry asking for another value */
	size_t absent_fail; /* the first entry an endpoint without the label disagrees with */
};

/* localityLbSetting */
struct ism_cm_llb {
	bool set;
	bool enabled; /* default true */
	/* zoneAwareLbSetting (Istio's, 2026) rather than localityLbSetting: the
	 * region's endpoints one priority, then the failover region's, then the
	 * others; no distribute (its minClusterSize is validated, nothing reads
	 * it: zone routing needs a local cluster an appliance has not) */
	bool zone_aware;
	size_t n_distribute;
	struct ism_cm_distribute *distribute;
	size_t n_failover;
	struct ism_cm_region_pair *failover;
	size_t n_fprio;
	const char **fprio;	/* label names or "key=value" */
	const char **fprio_key; /* per entry: the label name (the part before '=') */
	size_t n_fkeys;		/* the label names of fprio, in order of first entry */
	struct ism_cm_fkey *fkeys;
	struct ism_strmap *fkey_ix; /* label name -> index in fkeys */
	size_t n_absent;	    /* the ISM_FPRIO_LABEL ones by absent_fail */
	size_t *absent_order;
	size_t topo_fkey[4]; /* by enum ism_fprio_topo: index in fkeys, SIZE_MAX when none */
	/* The failover or failoverPriority field, for the warning when it has no effect. */
	const struct ism_node *fo_at;
	const char *fo_path;
};

struct ism_cm_lb {
	bool set; /* loadBalancer present */
	bool has_simple, has_hash;
	uint8_t simple; /* enum ism_lb_policy */
	/* warmup, or the older warmupDurationSecs: warmup_ms 0 when neither */
	uint32_t warmup_ms;
	double warmup_aggression, warmup_minimum;
	const struct ism_node *warmup_at;
	struct ism_cm_hash hash;
	struct ism_cm_llb llb;
};

/* connectionPool.http.h2UpgradePolicy */
enum ism_h2_upgrade {
	ISM_H2UP_DEFAULT = 0, /* the mesh default: Istio's is DO_NOT_UPGRADE */
	ISM_H2UP_DO_NOT_UPGRADE,
	ISM_H2UP_UPGRADE,
};

struct ism_cm_pool {
	bool set; /* connectionPool present */
	bool has_connect, has_idle;
	uint32_t connect_ms, idle_ms;
	struct ism_pool_limits limits; /* defaults filled in */
	uint8_t h2_upgrade;	       /* enum ism_h2_upgrade */
	bool use_client;	       /* useClientProtocol */
	uint32_t max_streams;	       /* maxConcurrentStreams; 0: the default */
	uint32_t ping_interval_ms;     /* http2KeepAlive; 0: none */
	uint32_t ping_timeout_ms;
	/* tcp.idleTimeout (0: none) and maxConnectionDuration (0: none), for
	 * tunnels; tcpKeepalive (keepalive), its probes and whole seconds (0:
	 * the system's). */
	bool has_tcp_idle;
	uint32_t tcp_idle_ms, tcp_max_ms;
	bool keepalive;
	uint32_t ka_probes, ka_time_s, ka_interval_s;
};

struct ism_cm_od {
	bool set; /* outlierDetection present */
	struct ism_outlier od;
	uint32_t min_health; /* percent */
};

/* The blocks of one TrafficPolicy; a block replaces the inherited one whole. */
/* trafficPolicy.retryBudget */
struct ism_cm_rbudget {
	bool set;
	uint32_t ppm;	      /* percent × 10^4; Istio's default 20 % */
	uint32_t min_retries; /* minRetryConcurrency; Istio's default 3 */
};

struct ism_cm_tp {
	struct ism_cm_lb lb;
	struct ism_cm_pool pool;
	struct ism_cm_od od;
	struct ism_cm_tls tls;
	/* Policy-wide (not in portLevelSettings, and kept when they apply, as
	 * Istio merges them): */
	struct ism_cm_rbudget rb;
	uint8_t pp; /* proxyProtocol (enum ism_upstream_pp; ISM_UPP_NONE: not set) */
	/* tunnel: a TCP or TLS route's bytes go through the endpoints (HTTP
	 * CONNECT proxies) to tunnel_host:tunnel_port; NULL: no tunnel. A
	 * subset's is its own, not the DestinationRule's (Istio's
	 * tunnelingconfig.Apply). tunnel_post: its protocol is POST (Envoy's
	 * use_post), not CONNECT. */
	const char *tunnel_host;
	uint32_t tunnel_port;
	bool tunnel_post;
};

struct ism_cm_port_tp {
	uint32_t port;
	struct ism_cm_tp tp;
};

struct ism_cm_policy {
	struct ism_cm_tp tp;
	size_t n_ports; /* portLevelSettings */
	struct ism_cm_port_tp *ports;
	struct ism_strmap *port_ix; /* port number (4 bytes) -> index in ports; NULL when none */
};

struct ism_cm_label {
	const char *key;
	const char *value;
};

struct ism_cm_subset {
	const char *name;
	size_t n_labels;
	struct ism_cm_label *labels;
	struct ism_cm_policy policy;
};

struct ism_dr_index;

struct ism_cm_dr {
	struct ism_cm_res r;
	const char *host;
	const struct ism_node *host_at;
	const struct ism_node *tp_at; /* spec.trafficPolicy; NULL: none */
	/* spec.workloadSelector.matchLabels (selector_at: spec.workloadSelector,
	 * NULL when none): the rule applies only where they are all the
	 * appliance's labels, in its own namespace (ism_model_xref) */
	const struct ism_node *selector_at;
	size_t n_selector;
	struct ism_cm_label *selector;
	/* spec.exportTo as written ("." and "*" included) */
	size_t n_export_to;
	const char **export_to;
	struct ism_cm_policy policy;
	size_t n_subsets;
	struct ism_cm_subset *subsets;
	struct ism_strmap *subset_ix; /* name -> index of the first subset; NULL when none */
};

struct ism_cm_se_port {
	uint32_t number;
	uint32_t target; /* 0: none */
	const char *name;
	uint8_t proto; /* enum ism_upstream_proto its protocol asks for */
};

struct ism_cm_named_port {
	const char *name;
	uint32_t number;
};

struct ism_cm_se_ep {
	const char *address;
	/* resolution DNS or DNS_ROUND_ROBIN and address a host name: the name,
	 * lowercased, resolved by the master (addr unset); NULL: addr holds it */
	const char *name;
	struct sockaddr_storage addr; /* port 0 */
	socklen_t addrlen;
	/* address unix://<path> (or unix://@<abstract name>): addr is an
	 * AF_UNIX one, which serves every service port */
	bool is_unix;
	size_t n_ports;
	struct ism_cm_named_port *ports;
	const struct ism_node *ports_at; /* the ports mapping (NULL when absent) */
	/* Its labels as Istio has them (AugmentLabels): those it writes, and
	 * last the n_topo it derives from its locality (region, zone, subzone:
	 * in place of any written) and network (where none is written). Look
	 * one up with ism_model_ep_label. */
	size_t n_labels, n_topo;
	struct ism_cm_label *labels;
	const struct ism_node *labels_at; /* the labels mapping (NULL when absent) */
	/* "" when absent; without the field, the one its labels give
	 * (topology.istio.io/locality, istio-locality) */
	const char *locality;
	uint32_t weight;	     /* >= 1: Istio reads 0 (or none) as 1 */
	const char *service_account; /* serviceAccount; NULL: none */
	const struct ism_node *at;   /* the endpoint's mapping (a WorkloadEntry's spec) */
};

/* ServiceEntry.resolution, as far as isthmus implements it. */
enum ism_cm_resolution {
	ISM_RES_STATIC = 0,
	ISM_RES_DNS,	/* every address of every name is an endpoint */
	ISM_RES_DNS_RR, /* one endpoint per name, connecting to its first address */
};

struct ism_cm_se {
	struct ism_cm_res r;
	size_t idx;	    /* in conf->ses */
	uint8_t resolution; /* enum ism_cm_resolution */
	size_t n_hosts;
	const char **hosts;
	size_t n_ports;
	struct ism_cm_se_port *ports;
	/* port number (4 bytes) and port name -> index in ports */
	struct ism_strmap *port_by_number, *port_by_name;
	/* spec.exportTo as written: which namespaces see the service */
	size_t n_export_to;
	const char **export_to;
	size_t n_eps;
	struct ism_cm_se_ep *eps;
	/* subjectAltNames: what an upstream certificate must carry when the
	 * DestinationRule's tls names none (Istio's service accounts) */
	uint32_t n_sans;
	const struct ism_str *sans;
	bool mesh_internal; /* location MESH_INTERNAL (the default is MESH_EXTERNAL) */
	const struct ism_node *location_at; /* NULL when absent */
	/* workloadSelector.labels: the endpoints are the WorkloadEntries of the
	 * namespace that carry them (eps, made by the cross-reference pass);
	 * selector_at: the workloadSelector, NULL when absent */
	size_t n_selector;
	struct ism_cm_label *selector;
	const struct ism_node *selector_at;
};

/* A WorkloadEntry: an endpoint of the ServiceEntries of its namespace whose
 * workloadSelector its labels match. */
struct ism_cm_we {
	struct ism_cm_res r;
	struct ism_cm_se_ep ep;
	bool matched; /* a ServiceEntry's selector matches its labels (cross references) */
};

struct ism_cm_hc {
	const char *host; /* FQDN */
	uint32_t port;	  /* 0: every port */
	const char *path;
	const char *host_header; /* NULL: the service host */
	const char *service;	 /* grpc: serviceName; NULL: "" */
	uint32_t interval_ms, timeout_ms, healthy, unhealthy;
	uint8_t type; /* enum ism_hc_type */
	uint32_t unhealthy_interval_ms, unhealthy_edge_interval_ms, healthy_edge_interval_ms;
	uint32_t initial_jitter_ms, interval_jitter_ms, interval_jitter_percent;
	size_t n_ranges;
	uint16_t (*ranges)[2];
	const struct ism_node *at;
};

/* spec.credentials[]: what credentialName refers to. */
struct ism_cm_cred {
	const char *name;
	struct ism_tls_cert cert; /* empty when the credential holds only a CA */
	struct ism_pem ca, crl;
	const struct ism_node *at;
};

enum ism_pa_mode {
	ISM_PA_UNSET = 0,
	ISM_PA_DISABLE,
	ISM_PA_PERMISSIVE,
	ISM_PA_STRICT,
};

struct ism_cm_pa_port {
	uint32_t port;
	uint8_t mode; /* enum ism_pa_mode */
	const struct ism_node *at;
};

struct ism_cm_pa {
	struct ism_cm_res r;
	const struct ism_node *selector_at; /* spec.selector; NULL: none */
	const struct ism_node *mode_at;	    /* spec.mtls.mode; NULL: none */
	bool has_selector;
	size_t n_sel;
	struct ism_cm_label *sel;
	uint8_t mode; /* enum ism_pa_mode */
	size_t n_ports;
	struct ism_cm_pa_port *ports;
};

/* A ProxyConfig (networking.istio.io/v1beta1): of what it sets for a proxy,
 * concurrency (the worker threads of Envoy) decides the appliance's workers
 * (ism_model_xref). */
struct ism_cm_pc {
	struct ism_cm_res r;
	const struct ism_node *selector_at; /* spec.selector; NULL: none */
	size_t n_sel;
	struct ism_cm_label *sel;
	int64_t concurrency; /* -1: not set */
	const struct ism_node *concurrency_at;
};

/* A Telemetry (telemetry.istio.io): of what it sets, its accessLogging
 * decides whether the appliance writes its access log (conf/telemetry.c). */
enum ism_tel_mode { ISM_TEL_CLIENT_AND_SERVER, ISM_TEL_CLIENT, ISM_TEL_SERVER };

struct ism_cm_tel_log {
	uint8_t mode; /* enum ism_tel_mode (match.mode; none: CLIENT_AND_SERVER) */
	bool disabled;
	size_t n_providers;
	const char **providers;
	const struct ism_node **provider_at; /* each one's providers[] item */
	/* filter.expression, compiled (conf/cel.h; in the loader's memory); NULL: none */
	const void *filter;
	uint32_t filter_size;
};

struct ism_cm_tel {
	struct ism_cm_res r;
	const struct ism_node *selector_at; /* spec.selector; NULL: none */
	size_t n_sel;			    /* selector.matchLabels */
	struct ism_cm_label *sel;
	bool targets; /* targetRef(s): Kubernetes resources, not this appliance */
	size_t n_logs;
	struct ism_cm_tel_log *logs;
};

/* spec.dns: how the master resolves the names of DNS ServiceEntries. */
struct ism_cm_dns {
	size_t n_servers;			 /* 0: the system's resolver configuration */
	const char **servers;			 /* "ADDRESS[:PORT]", "[IPv6]:PORT" */
	uint32_t min_refresh_ms, max_refresh_ms; /* the TTL is clamped between them */
	uint32_t timeout_ms;			 /* of one resolution, retries included */
	uint8_t family;				 /* enum ism_dns_family */
};

struct ism_cm_appliance {
	struct ism_cm_res r;
	const char *region, *zone, *subzone;
	const char *ns;
	uint32_t workers;		   /* 0: one per CPU */
	const struct ism_node *workers_at; /* spec.workers; NULL: not written */
	const char *user, *group, *control_socket, *pid_file;
	struct ism_alog_conf access_log;	   /* strings and ops point into the model */
	const struct ism_node *access_log_at;	   /* spec.accessLog.path; NULL: not written */
	const struct ism_node *access_log_spec_at; /* spec.accessLog; NULL: not written */
	const struct ism_node *user_at, *group_at; /* spec.user, spec.group, likewise */
	const struct ism_node *control_socket_at, *pid_file_at, *listen_at; /* likewise */
	const struct ism_node *admin_at; /* spec.admin.address, likewise */
	struct sockaddr_storage admin;
	socklen_t admin_len;
	const char *listen;
	struct ism_limits limits;
	struct ism_timeouts timeouts;
	size_t n_hcs;
	struct ism_cm_hc *hcs;
	size_t n_labels; /* spec.labels, for failoverPriority */
	struct ism_cm_label *labels;
	const struct ism_node *labels_at;
	size_t n_creds;
	struct ism_cm_cred *creds;
	struct ism_strmap *cred_ix; /* name -> index of the first credential; NULL when none */
	/* health checks by service (cross-reference pass): "<port>|<host>" -> the
	 * first check of that port, and host -> the first check of every port */
	struct ism_strmap *hc_by_port, *hc_any_port;
	bool has_mesh;		  /* spec.meshIdentity */
	struct ism_tls_conf mesh; /* certs[0] and ca */
	const char *root_ns;	  /* spec.meshRootNamespace, default istio-system */
	const char *trust_domain; /* spec.trustDomain, default cluster.local ('@' read as '.') */
	size_t n_td_aliases;	  /* spec.trustDomainAliases */
	const char **td_aliases;
	bool auto_mtls;	   /* spec.enableAutoMtls, default true */
	size_t n_pp_ports; /* spec.proxyProtocol.ports */
	bool pp_all;	   /* spec.gatewayTopology.proxyProtocol: every listener */
	uint32_t *pp_ports;
	const struct ism_node *pp_at;
	uint8_t path_norm;	  /* spec.pathNormalization: enum ism_pathnorm_mode */
	uint32_t trusted_proxies; /* spec.gatewayTopology.numTrustedProxies */
	uint8_t fcc;		  /* spec.gatewayTopology.forwardClientCertDetails: enum ism_fcc */
	bool preserve_rid;	  /* spec.preserveExternalRequestId */
	const char *server;	  /* spec.proxyHeaders.server: "" when disabled */
	bool debug_headers;	  /* not spec.proxyHeaders.envoyDebugHeaders.disabled */
	uint8_t log_level;	  /* spec.logging.level: enum ism_log_level */
	bool attempt_count;	  /* not spec.proxyHeaders.attemptCount.disabled */
	bool request_id;	  /* not spec.proxyHeaders.requestId.disabled */
	bool xf_port;		  /* spec.proxyHeaders.xForwardedPort.enabled */
	bool xf_host;		  /* spec.proxyHeaders.xForwardedHost.enabled */
	struct ism_cm_dns dns;	  /* spec.dns */
	size_t n_xas;		  /* spec.extensionProviders */
	struct ism_cm_xa *xas;
};

/* --- spec.extensionProviders (conf/extauthz.c) --- */

/* A list of field-name patterns as istiod writes them (exact; "x-*" a
 * prefix; "*-id" a suffix), lowercased. */
struct ism_cm_xa_pats {
	size_t n;
	const char **p;
	bool set; /* written (an empty list is not set) */
};

/* One entry of spec.extensionProviders: an envoyExtAuthzHttp or an
 * envoyExtAuthzGrpc, checked as istiod's buildExtAuthzHTTP and
 * buildExtAuthzGRPC check them. */
struct ism_cm_xa {
	const char *name;
	bool grpc; /* envoyExtAuthzGrpc: the fields of the HTTP one below are unset */
	const struct ism_node *at, *service_at;
	struct ism_cm_dest dest; /* the service's host and port, resolved by xref */
	uint32_t timeout_ms;
	const char *path_prefix; /* "": none */
	bool fail_open;
	uint16_t status_on_error;
	struct ism_cm_xa_pats req, up, down_allow, down_deny;
	size_t n_add; /* includeAdditionalHeadersInCheck, by name */
	const char **add_name, **add_value;
	/* includeRequestBodyInCheck: maxRequestBytes (0: unset), allowPartialMessage,
	 * packAsBytes */
	uint32_t body_max;
	bool body_partial, body_bytes;
};

struct ism_vctx;

/* spec.extensionProviders of the Appliance. */
void ism_model_parse_extauthz(struct ism_vctx *v, const struct ism_node *spec,
			      struct ism_cm_appliance *a);
/* The providers' services resolved, and the CUSTOM policies that apply
 * checked against them (a provider they name, one provider for all). */
void ism_model_xref_extauthz(struct ism_vctx *v);
/* conf/listen.c: the Gateway servers' listening addresses and the admin
 * listener's, refused where the master could not bind them all (a wildcard
 * beside another address of its port, the admin listener on a server's). */
void ism_model_xref_listeners(struct ism_vctx *v);
/* Refuses more distinct DNS names than the master resolves (conf/se.c). */
void ism_model_xref_dns_names(struct ism_vctx *v);

/* --- AuthorizationPolicy (conf/authz.c) --- */

enum ism_az_action { ISM_AZ_ALLOW, ISM_AZ_DENY, ISM_AZ_AUDIT, ISM_AZ_CUSTOM };

/* One key of a rule with its values and notValues (Istio's rule of a
 * ruleList); http_only: an attribute only HTTP has (hosts, methods, paths,
 * request.headers), which a TCP port's filter leaves out. */
struct ism_cm_az_cond {
	enum ism_az_attr attr;
	bool http_only;
	const char *name; /* ISM_AZ_HEADER: lowercased */
	size_t n_values, n_nots;
	struct ism_az_val *values, *nots; /* m.s: the model's strings */
};

/* Conditions that all hold. */
struct ism_cm_az_and {
	size_t n;
	struct ism_cm_az_cond *c;
};

/* spec.rules[i]: its sources and operations (each one's fields), and its when
 * keys, split as Istio splits them between permissions (destination.*,
 * connection.sni) and principals (the rest). */
struct ism_cm_az_rule {
	size_t n_from, n_to;
	struct ism_cm_az_and *from, *to;
	struct ism_cm_az_and when_perm, when_prin;
};

struct ism_cm_az {
	enum ism_az_action action;
	bool dry_run; /* annotation istio.io/dry-run "true": not enforced */
	bool has_rules;
	/* CUSTOM: the provider's name (spec.provider.name) and where it is */
	const char *provider;
	const struct ism_node *provider_at;
	size_t n_rules;
	struct ism_cm_az_rule *rules;
};

/* --- RequestAuthentication (conf/authn.c) --- */

/* One jwtRule, checked as Istio's validation checks it. */
struct ism_cm_jwt_rule {
	const char *issuer; /* "": none */
	size_t n_aud;
	const char **aud;
	const char *jwks; /* the key set, parsed once here to check it */
	size_t n_loc;
	struct ism_jwt_loc *loc; /* strings: the model's */
	bool forward;
	const char *payload_header; /* lowercased; NULL: none */
	size_t n_claim_hdrs;
	struct ism_jwt_claim_hdr *claim_hdrs;
	size_t n_spaced;
	const char **spaced; /* with scope and permission */
};

struct ism_cm_ra {
	size_t n_rules;
	struct ism_cm_jwt_rule *rules;
};

/* A mesh policy (AuthorizationPolicy, RequestAuthentication) or a document
 * of a kind isthmus does not implement yet (EnvoyFilter, WasmPlugin): what
 * decides whether it applies to the appliance (conf/later.c). */
struct ism_cm_later {
	struct ism_cm_res r;
	const struct ism_node *kind_at;
	const struct ism_node *spec;
	const struct ism_node *selector_at; /* spec.selector (EnvoyFilter: workloadSelector) */
	size_t n_sel;			    /* its matchLabels (EnvoyFilter: labels) */
	struct ism_cm_label *sel;
	const char *target_key; /* "targetRef" or "targetRefs" when set; NULL */
	bool sidecar_only;	/* EnvoyFilter: every configPatch's match.context a sidecar's */
	bool ignored;		/* it does not apply: its spec checked, not applied */
	struct ism_cm_az *az;	/* AuthorizationPolicy: its spec, checked, when it applies */
	struct ism_cm_ra *ra;	/* RequestAuthentication: the same */
};

struct ism_conf {
	struct ism_pool pool;
	const char *file;
	struct ism_cm_appliance app;
	size_t n_gws, n_vss, n_drs, n_ses, n_pas, n_wes, n_pcs, n_tels, n_laters;
	struct ism_cm_gw **gws;
	struct ism_cm_vs **vss;
	struct ism_cm_dr **drs;
	struct ism_cm_se **ses;
	struct ism_cm_pa **pas;
	struct ism_cm_we **wes;
	struct ism_cm_pc **pcs;
	struct ism_cm_tel **tels;
	struct ism_cm_later **laters;
	size_t n_files; /* certificate files read, for the rotation watch */
	const char **files;
	size_t cap_files;
	struct ism_strmap files_ix; /* path -> index in files (malloc'd) */
	uint64_t seed;		    /* of every map of this model */
	/* Lookups by name, built by the cross-reference pass (first one wins). */
	struct ism_strmap *se_by_host;	     /* -> index in ses */
	const struct ism_dr_index *dr_index; /* which rule a host gets (conf/drindex.c) */
	/* "<ns>/<name>" -> index in gws; GW_ELSEWHERE for a Gateway that
	 * selects other proxies (left out of gws). */
	struct ism_strmap *gw_by_name;
};

/* --- validation context and field helpers (conf/fields.c) --- */

struct ism_vctx {
	struct ism_conf *conf;
	struct ism_diags *d;
	const char *file;
	const char *res; /* resource label or "" */
	char path[256];
	size_t plen;
	int nomem; /* set when an allocation failed */
	/* A VirtualService bound to no gateway is parsed: Istio refuses its
	 * header matches on JWT claims. */
	bool claims_refused;
};

/* Appends to the field path; returns the old length for ism_v_pop. */
size_t ism_v_push(struct ism_vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ism_v_pop(struct ism_vctx *v, size_t old);
/* Whether a match has conditions on where the request comes from (gateways,
 * sourceLabels, sourceNamespace), decided per gateway at compilation. */
bool ism_model_match_source(const struct ism_cm_match *m);
/* Whether match.gateways names gw ("<ns>/<name>" or "mesh"). */
bool ism_model_match_names_gateway(const struct ism_cm_match *m, const char *gw);

/* conf/delegate.c: the routes that delegate replaced by those of their
 * delegate VirtualService, merged as Istio merges them. After the cross
 * references. */
void ism_model_delegate(struct ism_vctx *v);

void ism_v_err(struct ism_vctx *v, const struct ism_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An error at map's field key, its path pushed. */
void ism_v_err_key(struct ism_vctx *v, const struct ism_node *map, const char *key, const char *fmt,
		   ...) __attribute__((format(printf, 4, 5)));
void ism_v_warn(struct ism_vctx *v, const struct ism_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void *ism_v_alloc(struct ism_vctx *v, size_t n, size_t size);
char *ism_v_strdup(struct ism_vctx *v, const char *s);
/* An empty map for up to n keys, in the model's pool (never freed on its own);
 * NULL (and v->nomem) when memory runs out. */
struct ism_strmap *ism_v_map(struct ism_vctx *v, size_t n);
/* ism_strmap_add for a map from ism_v_map: 1 added, 0 present (*found), -1
 * (v->nomem) when it does not fit. */
int ism_v_map_add(struct ism_vctx *v, struct ism_strmap *m, const char *key, size_t len,
		  uint32_t value, uint32_t *found);

/* True when n is of kind k; otherwise reports "expected ..." at n. */
bool ism_v_expect(struct ism_vctx *v, const struct ism_node *n, enum ism_node_kind k);
/* A scalar where a string goes (a StringMatch's, a header or label value):
 * not a YAML null, number or boolean, which the Kubernetes API server drops
 * or refuses there. false when refused (reported). */
bool ism_v_string_scalar(struct ism_vctx *v, const struct ism_node *n);
/* Reports every key of map that is neither in known nor in unimpl (NULL-ended
 * lists): "unknown field"; keys in unimpl: "not implemented yet". Returns false
 * when any was reported. */
bool ism_v_keys(struct ism_vctx *v, const struct ism_node *map, const char *const *known,
		const char *const *unimpl);

/* Field getters: look key up in map (a mapping). Return 1 when present and
 * valid (*out set), 0 when absent (*out untouched; "required field missing"
 * reported at map when required), -1 when invalid (reported). */
int ism_v_str(struct ism_vctx *v, const struct ism_node *map, const char *key, bool required,
	      const char **out);
int ism_v_u32(struct ism_vctx *v, const struct ism_node *map, const char *key, bool required,
	      uint32_t lo, uint32_t hi, uint32_t *out);
int ism_v_u64(struct ism_vctx *v, const struct ism_node *map, const char *key, uint64_t lo,
	      uint64_t hi, uint64_t *out);
int ism_v_bool(struct ism_vctx *v, const struct ism_node *map, const char *key, bool *out);
/* Durations: "10s", "250ms", "1.5s", "2m", "1h", "100us", "1m30s"; to
 * milliseconds, a positive value under 1 ms rounding up to 1 ms. */
int ism_v_dur(struct ism_vctx *v, const struct ism_node *map, const char *key, uint32_t min_ms,
	      uint32_t *out);
/* A duration of an Istio resource, as Istio's ValidateDuration
 * (pkg/config/validation/agent/validation.go) has it: at least 1 ms, and a
 * whole number of milliseconds. */
int ism_v_istio_dur(struct ism_vctx *v, const struct ism_node *map, const char *key, uint32_t *out);
/* A number (a double) at map.key in [lo, hi] ((lo, hi] when lo_open): 1 and
 * *out when present and valid, 0 when absent, -1 when invalid (reported). */
int ism_v_double(struct ism_vctx *v, const struct ism_node *map, const char *key, double lo,
		 double hi, bool lo_open, double *out);
/* An Istio Percent ({value: 0..100}, a double in decimal; {} is 0) at map.key,
 * as the share per million Istio gives Envoy (value × 10000, truncated). 1
 * when present and valid, 0 when absent (*ppm untouched), -1 when invalid
 * (reported). */
int ism_v_percent(struct ism_vctx *v, const struct ism_node *map, const char *key, uint32_t *ppm);
/* A list of non-empty strings; NULL when absent (*n = 0). *listp: the list node. */
const char **ism_v_strlist(struct ism_vctx *v, const struct ism_node *map, const char *key,
			   bool required, size_t *n, const struct ism_node **listp);
/* An enum: 1 and *out when one of ok[], -1 when in unimpl[] ("not implemented
 * yet") or unknown (reported with the values of ok[]), 0 when absent. */
int ism_v_enum(struct ism_vctx *v, const struct ism_node *map, const char *key,
	       const char *const *ok, const char *const *unimpl, const char **out);
/* The same, the value compared without regard to case (Istio's port protocols);
 * *out is the entry of ok[] it matched. */
int ism_v_enum_nocase(struct ism_vctx *v, const struct ism_node *map, const char *key,
		      const char *const *ok, const char *const *unimpl, const char **out);
/* The value node when present and of kind k; NULL when absent or wrong (reported). */
const struct ism_node *ism_v_node(struct ism_vctx *v, const struct ism_node *map, const char *key,
				  bool required, enum ism_node_kind k);

/* False, with the error at n, when n is a plain integer that YAML 1.1 (as
 * Kubernetes reads a file) reads otherwise than as the decimal it looks like:
 * a leading 0 (octal: 075 is 61), 0x, 0o, 0b, or a '_' (dropped). True for
 * anything else, whatever its type. */
bool ism_v_yaml_int(struct ism_vctx *v, const struct ism_node *n);
/* Whether n may be read as an integer: not quoted nor tagged !!str
 * (a string to Kubernetes), and ism_v_yaml_int; else said (false). */
bool ism_v_plain_int(struct ism_vctx *v, const struct ism_node *n);

/* Parsing helpers shared by model and tests of the model (and
 * ism_parse_duration_ms, in conf/conf.h). */
int ism_parse_u64(const char *s, uint64_t *out);
/* "region/zone[/subzone]" with non-empty parts of at most
 * ISM_LOCALITY_PART_MAX (63) bytes, or
 * "region" alone where min_parts is 1 (an endpoint's, as Istio's
 * ConvertLocality reads one). */
bool ism_locality_valid(const char *s, int min_parts);

/* Whether a route sets rewrite, headers (Istio's delegate merge takes the
 * root route's when it does not). */
static inline bool ism_model_rewrite_set(const struct ism_cm_rewrite *r)
{
	return r->uri != NULL || r->re != NULL || r->authority != NULL;
}

static inline bool ism_model_headers_set(const struct ism_cm_headers *h)
{
	return h->authority != NULL || h->req.n_set + h->req.n_add + h->req.n_remove +
					       h->resp.n_set + h->resp.n_add + h->resp.n_remove >
					   0;
}

/* --- resources (conf/model.c, and a file per kind) --- */

/* Validates one document; adds it to v->conf. */
void ism_model_doc(struct ism_vctx *v, const struct ism_node *doc);

/* Each kind's spec (the path at "spec"), into v->conf->app or the resource
 * ism_model_doc made for it: conf/appliance.c, gateway.c, vs.c, dr.c, se.c. */
void ism_model_parse_appliance(struct ism_vctx *v, const struct ism_node *spec);
void ism_model_parse_gateway(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_gw *g);
void ism_model_parse_vs(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_vs *vs);
void ism_model_parse_dr(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_dr *dr);
void ism_model_parse_se(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_se *se);
/* A ServiceEntry's endpoint n into e; se NULL: a WorkloadEntry's spec, whose
 * address may be a name and whose ports may name any port (conf/se.c). */
void ism_model_parse_endpoint(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_se *se,
			      struct ism_cm_se_ep *e);
/* An Appliance's spec.accessLog into l; nothing when absent (conf/accesslog.c). */
void ism_model_parse_access_log(struct ism_vctx *v, const struct ism_node *spec,
				struct ism_alog_conf *l);
/* tp.loadBalancer, of a DestinationRule's trafficPolicy or one of its
 * portLevelSettings (tp), into p (conf/lb.c). */
void ism_model_parse_lb(struct ism_vctx *v, const struct ism_node *tp, struct ism_cm_lb *p);
/* A Destination {host, subset, port.number} of namespace ns into d (conf/vs.c). */
void ism_model_destination(struct ism_vctx *v, const struct ism_node *n, const char *ns,
			   struct ism_cm_dest *d);
/* headers of a route or a destination (map) into h; authority: what the
 * route's rewrite.authority set already (NULL: nothing) (conf/headers.c). */
void ism_model_headers(struct ism_vctx *v, const struct ism_node *map, struct ism_cm_headers *h,
		       const char *authority);

/* --- what the kinds' parsers share (conf/model.c) --- */

/* What an error says of a field or a kind isthmus does not implement yet. */
#define ISM_NOT_IMPL "not implemented yet"
/* Istio's prefix of a Unix domain socket address. */
#define ISM_UNIX_PREFIX "unix://"

/* Port protocols as Istio names them (protocol.Parse, any case), by what isthmus
 * does with them. A Gateway server of one of ISM_PROTOS_TCP carries bytes (tcp
 * routes, or tls routes for TLS): Istio's gateway proxies MONGO, REDIS and
 * MYSQL servers with Envoy's TCP proxy as it does TCP ones (its Redis and
 * MySQL filters are off by default; the Mongo one only decodes for
 * statistics). */
#define ISM_PROTOS_TCP	 "TCP", "TLS", "MONGO", "REDIS", "MYSQL"
#define ISM_PROTOS_LATER "UDP", "HTTP_PROXY"

/* Host name as Istio resolves it: lowercased; a short name (no dot, not a
 * wildcard) becomes "<name>.<ns>.svc.cluster.local". NULL on allocation failure. */
const char *ism_model_host(struct ism_vctx *v, const char *host, const char *ns);
/* A lowercase copy of s in the model's pool; NULL (and v->nomem) without memory. */
char *ism_model_lower_dup(struct ism_vctx *v, const char *s);
/* What Istio's ValidateWildcardDomain (pkg/config/validation/agent/
 * validation.go) says of host name s: "*", or DNS-1123 labels (either case)
 * the first of which may be "*", or "*" or "*-" and a label (a partial
 * wildcard: "*-api.example.com"), the top level one not all digits, a last
 * empty label allowed ("istio.io."); NULL when valid. */
const char *ism_model_domain_err(const char *s);
/* Whether host s is a partial wildcard (Istio's ValidatePartialWildCard
 * refuses it): a '*' other than "*" or a leading "*.". */
bool ism_model_partial_wild(const char *s);
/* What Istio's ValidateFQDN says of host name s: DNS-1123 labels (either
 * case), no wildcard, the top level one not all digits, a last empty label
 * allowed; NULL when valid. */
const char *ism_model_fqdn_err(const char *s);
/* Istio's labels.IsDNS1123Label: letters (either case), digits and '-',
 * starting and ending with a letter or digit, at most 63. */
bool ism_model_istio_label(const char *s);
/* A DNS-1123 subdomain (Kubernetes' rule for the names of service accounts). */
bool ism_model_dns1123_subdomain(const char *s);
/* Whether s is a DNS-1123 label (a Kubernetes namespace); what one is. */
bool ism_model_dns1123_label(const char *s);
/* An RFC 3339 time (Kubernetes' metav1.Time: 2024-05-01T12:00:00Z; a
 * fraction and an offset taken too) as seconds since the epoch. */
bool ism_model_parse_time(const char *s, int64_t *out);
/* istiod's configCompareByCreationTime: creation time (none before any),
 * then name, then namespace; 0 only for one resource. */
int ism_model_by_creation(const struct ism_cm_res *a, const struct ism_cm_res *b);
#define ISM_DNS1123_LABEL_RULE                                                                     \
	"must be at most 63 lower case letters, digits and '-', starting and ending with a "       \
	"letter or digit"
/* A trust domain: a DNS name, letters of either case. */
bool ism_model_trust_domain_ok(const char *s);
/* An IPv4 or IPv6 address (no port) into *ss and *len; false when s is none. */
bool ism_model_parse_ip(const char *s, struct sockaddr_storage *ss, socklen_t *len);
/* "host:port" or "[v6]:port" with an IP literal host. */
bool ism_model_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len);
/* An authority as a Host header carries it: a host name or an IP address
 * (IPv6 in brackets), and an optional port (RFC 3986 reg-name, IP-literal)
 * (conf/headers.c). */
bool ism_model_authority_ok(const char *s);
/* The mapping of strings to strings (labels) at map.key into *out, *n of
 * them (NULL and 0 when absent); the mapping node, NULL when absent. */
const struct ism_node *ism_model_labels_field(struct ism_vctx *v, const struct ism_node *map,
					      const char *key, struct ism_cm_label **out,
					      size_t *n);
/* The same, each label checked as Istio's labels.Instance.Validate (a
 * subset's labels, an endpoint's, a match's sourceLabels). */
const struct ism_node *ism_model_istio_labels(struct ism_vctx *v, const struct ism_node *map,
					      const char *key, struct ism_cm_label **out,
					      size_t *n);
/* An error at map.key (the key node), with the path pushed. */
void ism_model_key_err(struct ism_vctx *v, const struct ism_node *map, const char *key,
		       const char *msg);
/* Reports the second (and later) of the keys in set[] present in map: only one
 * of them may be set. Returns how many are present. */
size_t ism_model_one_of(struct ism_vctx *v, const struct ism_node *map, const char *const *set,
			const char *what);

/* What kind of resource's exportTo ism_model_parse_export reads. */
enum ism_export_kind {
	ISM_EXPORT_ANY,
	ISM_EXPORT_SELECTOR, /* a DestinationRule with a workloadSelector: its own namespace only */
	ISM_EXPORT_SE,	     /* a ServiceEntry: "~" (no one) allowed, alone */
};

/* spec.exportTo of a resource of namespace ns, validated as Istio's
 * validateExportTo: ".", "*" or a namespace name, each once ("." counts as
 * the namespace itself), "*" alone; what kind allows beside. The list as
 * written into *list, its length into *n. */
void ism_model_parse_export(struct ism_vctx *v, const struct ism_node *spec, const char *ns,
			    enum ism_export_kind kind, const char ***list, size_t *n);

/* --- route actions: corsPolicy (conf/cors.c) and fault (conf/fault.c) --- */

/* An Istio StringMatch at n (exactly one of exact, prefix, regex; `{}` means
 * "present" where allow_present), reported where wrong. */
void ism_model_sm(struct ism_vctx *v, const struct ism_node *n, bool allow_present,
		  struct ism_cm_sm *m);
/* route.corsPolicy; NULL when absent. */
struct ism_cm_cors *ism_model_cors(struct ism_vctx *v, const struct ism_node *route);
/* route.fault; NULL when absent (one that can do nothing is kept: a warning
 * says why, and compilation drops it). */
struct ism_fault *ism_model_fault(struct ism_vctx *v, const struct ism_node *route);

/* --- TLS (conf/tls.c) --- */

/* Gateway server tls; protocol: the server's port protocol (HTTPS terminates
 * TLS; the others are plaintext, where only httpsRedirect applies). */
void ism_tls_parse_server(struct ism_vctx *v, const struct ism_node *srv, const char *protocol,
			  struct ism_cm_tls *t);
/* DestinationRule trafficPolicy tls (ClientTLSSettings). */
void ism_tls_parse_client(struct ism_vctx *v, const struct ism_node *tp, struct ism_cm_tls *t);
/* A subjectAltNames list at n (DestinationRule and Gateway tls, ServiceEntry). */
void ism_tls_parse_sans(struct ism_vctx *v, const struct ism_node *n, const struct ism_str **sans,
			uint32_t *n_sans);
/* Appliance spec.credentials and spec.meshIdentity. */
void ism_tls_parse_appliance(struct ism_vctx *v, const struct ism_node *spec,
			     struct ism_cm_appliance *a);
/* Cross references: credentialName(s), ISTIO_MUTUAL's mesh identity;
 * ism_tls_xref_drs those of every DestinationRule, before the rules are
 * merged (ism_model_dr_index). */
void ism_tls_xref(struct ism_vctx *v);
void ism_tls_xref_drs(struct ism_vctx *v);
/* The mutual TLS PeerAuthentication asks of the plaintext listener on each port:
 * modes[port] for every port 0..65535 (enum ism_tls_mode: NONE, MUTUAL for
 * STRICT, OPTIONAL_MUTUAL for PERMISSIVE). */
void ism_tls_peer_mtls(const struct ism_conf *c, uint8_t *modes);
/* The mode (enum ism_pa_mode) PeerAuthentication gives namespace ns, as Istio
 * infers a service's for automatic mutual TLS: the namespace's policy without
 * selector when it sets one, else the mesh's; ISM_PA_UNSET when neither does. */
uint8_t ism_tls_ns_mtls(const struct ism_conf *c, const char *ns);
/* Whether ServiceEntry endpoint e takes Istio's automatic mutual TLS: labelled
 * security.istio.io/tlsMode: istio, or, without that label, with a
 * serviceAccount (Istio's getTLSModeFromWorkloadEntry). */
bool ism_model_ep_mesh_tls(const struct ism_cm_se_ep *e);
/* Whether Istio's automatic mutual TLS applies to service se, whatever its
 * DestinationRule and the appliance's identity: MESH_INTERNAL, enableAutoMtls
 * on, its namespace's PeerAuthentication not DISABLE, and an endpoint in the
 * mesh (the first one's index into *first, when not NULL). */
bool ism_model_se_auto_mtls(const struct ism_conf *c, const struct ism_cm_se *se, size_t *first);

/* Whether service se's endpoints are its hosts themselves, resolved: DNS (or
 * DNS_ROUND_ROBIN) with neither endpoints nor a workloadSelector, as Istio. */
static inline bool ism_model_se_self(const struct ism_cm_se *se)
{
	return se->resolution != ISM_RES_STATIC && se->n_eps == 0 && se->selector_at == NULL;
}

/* --- cross references and look-ups (conf/load.c) --- */
void ism_model_xref(struct ism_vctx *v);
const struct ism_cm_se *ism_model_find_se(const struct ism_conf *c, const char *host);
/* conf/telemetry.c: a Telemetry's spec (parse), and the access logging the
 * Telemetries give this appliance, applied to its access log (xref). */
void ism_model_parse_telemetry(struct ism_vctx *v, const struct ism_node *spec,
			       struct ism_cm_tel *t);
void ism_model_telemetry(struct ism_vctx *v);
/* A policy of namespace r->ns (ProxyConfig, Telemetry) that applies to no
 * proxy of the appliance, warned: one of a namespace other than the
 * appliance's and the root, or whose selector (sel_at, NULL: none; n_sel
 * labels, none selecting nothing) does not select the appliance. False when
 * it is neither (conf/load.c). */
bool ism_model_warn_elsewhere(struct ism_vctx *v, const struct ism_cm_res *r,
			      const struct ism_node *sel_at, const struct ism_cm_label *sel,
			      size_t n_sel);
/* A workload selector's matchLabels (of selector n), validated as Istio
 * validates one (conf/model.c). */
void ism_model_selector_labels(struct ism_vctx *v, const struct ism_node *n,
			       struct ism_cm_label **labels, size_t *n_labels);
/* A policy's spec.selector (its matchLabels into *sel, *n_sel), spec.targetRef
 * and spec.targetRefs, validated as Istio validates them for the kinds that
 * have all three (validateOneOfSelectorType, validateWorkloadSelector,
 * validatePolicyTargetReference(s)): at most one of the three, references to
 * a Service, ServiceEntry, Gateway or GatewayClass of the policy's namespace.
 * Returns the selector node, NULL when absent (conf/model.c). */
const struct ism_node *ism_model_policy_selector(struct ism_vctx *v, const struct ism_node *spec,
						 struct ism_cm_label **sel, size_t *n_sel);
/* The access log Istio's "envoy" provider writes: standard output, Istio's
 * default text format (conf/accesslog.c). */
void ism_model_alog_stdout(struct ism_vctx *v, struct ism_alog_conf *l);

/* conf/drindex.c: the DestinationRules indexed as Istio indexes them for
 * this appliance (after the maps of the cross-reference pass; warns about
 * each rule no service host gets), and the rule host gets (merged), as
 * Istio picks it for a gateway; NULL when none. */
void ism_model_dr_index(struct ism_vctx *v);
/* Whether rule dr may apply here at all: it selects the appliance (or has no
 * selector) and the appliance's namespace sees it. */
bool ism_model_dr_visible(const struct ism_conf *c, const struct ism_cm_dr *dr);
const struct ism_cm_dr *ism_model_find_dr(const struct ism_conf *c, const char *host);
const struct ism_cm_subset *ism_model_find_subset(const struct ism_cm_dr *dr, const char *name);
/* The index in app.hcs of the first health check of host whose port is port or
 * 0 (every port); SIZE_MAX when none. */
size_t ism_model_find_hc(const struct ism_conf *c, const char *host, uint32_t port);
/* The TrafficPolicy a cluster of dr (may be NULL), subset s (may be NULL) and
 * service port gets, as Istio merges it: the rule's policy, replaced whole by
 * its portLevelSettings entry for port; then each block the subset sets
 * (loadBalancer, connectionPool, outlierDetection) replaces the inherited one;
 * then the subset's portLevelSettings entry for port replaces all of them. A
 * block absent from a port-level entry takes its defaults, not the rule's.
 * The policy-wide fields (retryBudget, proxyProtocol), which a port-level
 * entry does not have, are the rule's unless the subset sets them (Istio's
 * MergeTrafficPolicy). */
void ism_model_policy(const struct ism_cm_dr *dr, const struct ism_cm_subset *s, uint32_t port,
		      struct ism_cm_tp *out);
/* Istio's circuit-breaker defaults (connectionPool absent, or a field 0). */
void ism_model_pool_defaults(struct ism_pool_limits *l);
/* True when every label of want (key and value) is among have (a labels
 * mapping, NULL when absent): a subset's labels on an endpoint, a selector's on
 * the appliance. */
bool ism_model_labels_include(const struct ism_node *have, const struct ism_cm_label *want,
			      size_t n_want);
/* Whether exportTo list (n entries, of a resource of namespace own) names
 * namespace ns: "." is own; "*" is every namespace. */
bool ism_model_names_ns(const char *const *list, size_t n, const char *own, const char *ns);
/* The value of label key in have (a labels mapping, may be NULL); "" when absent. */
const char *ism_model_label(const struct ism_node *have, const char *key);
/* The value of endpoint e's label key, among those Istio gives it (written
 * and derived, struct ism_cm_se_ep); NULL when it has none. */
const char *ism_model_ep_label(const struct ism_cm_se_ep *e, const char *key);
/* True when endpoint e has every label of want (key and value): a subset's,
 * a workloadSelector's. */
bool ism_model_ep_labels_include(const struct ism_cm_se_ep *e, const struct ism_cm_label *want,
				 size_t n_want);
/* True when host pattern pat ("*", "*.suffix", "*-partial.suffix" or a name)
 * covers host h (a name or a pattern itself), as Istio's SubsetOf (h of pat)
 * compares configuration: "*.example.com" covers "a.example.com" and
 * "*.a.example.com", not "example.com"; "*-api.example.com" covers
 * "-api.example.com" and "*api.example.com" covers "api.example.com", which
 * a request's name never matches (a wildcard takes one byte at least there:
 * the router's). */
bool ism_model_host_covers(const char *pat, const char *h);
/* True when gateway server host pattern s (with its namespace part) admits
 * VirtualService host h of namespace vs_ns; *domain is the effective domain. */
bool ism_model_bind_host(const struct ism_cm_srvhost *s, const char *gw_ns, const char *h,
			 const char *vs_ns, const char **domain);

/* The document of a kind isthmus does not implement yet, its spec (the path
 * at "spec"): what decides whether it applies (conf/later.c). */
void ism_model_parse_later(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_later *l);
/* conf/authz.c: an AuthorizationPolicy's spec (l->r.at its document), checked
 * as Istio's validation checks it, into l->az. */
void ism_model_parse_authz(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_later *l);
/* conf/authn.c: a RequestAuthentication's spec, checked, into l->ra. */
void ism_model_parse_authn(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_later *l);
/* "a.b.c.d/n", "a::b/n" or an address alone (all its bits), the address kept
 * masked to its prefix; false when s is none of these (conf/vs.c). */
bool ism_model_subnet(const char *s, struct ism_subnet *out);
/* Each such document: an error where it applies to the appliance, else a
 * warning saying why it does not (cross-reference pass). */
void ism_model_laters(struct ism_vctx *v);

#endif
