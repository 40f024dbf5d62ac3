/* The compiled route table: one immutable generation of the configuration.
 *
 * Types only. conf/ compiles the model into these structures inside an arena
 * (a shared-memory generation slot in the master, a heap block in `isthmus -c`
 * and in tests); after publication nothing in it is ever written again, so the
 * workers read it without locks. All pointers point inside the same arena and
 * are valid in every process because the region is mapped before fork(). */
#ifndef ISM_SHM_TABLE_T_H
#define ISM_SHM_TABLE_T_H

#include <stdint.h>
#include <sys/socket.h>

#define ISM_TABLE_MAGIC 0x49534d54u /* "ISMT" */

/* A string inside the arena; NUL-terminated as well, for convenience. */
struct ism_str {
	const char *p;
	uint32_t len;
};

enum ism_sm_kind {
	ISM_SM_ANY = 0, /* no condition */
	ISM_SM_EXACT,	/* s == value */
	ISM_SM_PREFIX,	/* value starts with s */
	ISM_SM_REGEX,	/* re matches the whole value (anchored at both ends) */
	ISM_SM_PRESENT, /* header/query parameter present, any value ({} in Istio) */
};

/* Istio StringMatch. */
struct ism_strmatch {
	uint8_t kind;	     /* enum ism_sm_kind */
	uint8_t ignore_case; /* exact/prefix compare case-insensitively (ignoreUriCase) */
	struct ism_str s;    /* exact value, prefix, or the regex source */
	const void *re;	     /* pcre2_code_8 *, compiled into the arena, for ISM_SM_REGEX */
};

/* A named condition: header (name lowercased) or query parameter (name as written). */
struct ism_kvmatch {
	struct ism_str name;
	struct ism_strmatch m;
};

/* One Istio HTTPMatchRequest: every condition must hold (AND). */
struct ism_match {
	struct ism_strmatch uri; /* path without the query string */
	struct ism_strmatch scheme;
	struct ism_strmatch method;
	struct ism_strmatch authority; /* Host header, port included as sent */
	uint32_t port;		       /* listener port; 0 = any */
	uint32_t n_headers;
	const struct ism_kvmatch *headers;
	uint32_t n_without_headers; /* a match here makes the request NOT match */
	const struct ism_kvmatch *without_headers;
	uint32_t n_query;
	const struct ism_kvmatch *query;
};

/* A weighted destination: index into ism_table.clusters. */
struct ism_dest {
	uint32_t cluster;
	uint32_t weight;
};

/* One Istio HTTPRoute. */
struct ism_route {
	struct ism_str name; /* route name, or "<vs-namespace>/<vs-name>#<index>" */
	uint32_t n_match;    /* 0: matches every request; else OR of the matches */
	const struct ism_match *match;
	uint32_t n_dest;
	const struct ism_dest *dest;
	uint32_t total_weight; /* sum of dest[].weight; 0 means every weight is 0 (503) */
	uint32_t timeout_ms;   /* VirtualService timeout; 0 = none (Istio's default) */
};

/* The routes one VirtualService contributes to one listener, and the host names
 * (domains) it serves there: "*", "*.suffix" or an exact name, lowercased, no port. */
struct ism_vhost {
	struct ism_str name; /* "<namespace>/<virtualservice>" */
	uint32_t n_domains;
	const struct ism_str *domains;
	uint32_t n_routes;
	const struct ism_route *routes;
};

/* One listening socket: a Gateway server port (servers sharing a port are merged). */
struct ism_listener {
	struct ism_str name;	      /* "<port>" or the server's port name */
	struct sockaddr_storage addr; /* bind address and port */
	socklen_t addrlen;
	uint16_t port;
	uint32_t n_vhosts;
	const struct ism_vhost *vhosts;
};

enum ism_lb_policy {
	ISM_LB_ROUND_ROBIN = 0,
	ISM_LB_LEAST_REQUEST,
	ISM_LB_RANDOM,
};

/* An upstream endpoint as one cluster sees it. */
struct ism_endpoint {
	uint32_t id; /* slot in the shared endpoint-state table; stable across generations */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct ism_str addr_text; /* "127.0.0.2:8080", for logs */
	struct ism_str locality;  /* "region/zone[/subzone]", may be empty */
	uint32_t weight;	  /* ServiceEntry weight, default 1 */
	uint8_t priority; /* 0: the appliance's own zone; 1: elsewhere (issue 2's first cut) */
};

/* Active HTTP health check of a service's endpoints, run by the master. */
struct ism_hc {
	struct ism_str path; /* request path, default "/" */
	struct ism_str host; /* Host header, default the service host */
	uint32_t interval_ms;
	uint32_t timeout_ms;
	uint32_t healthy_threshold;
	uint32_t unhealthy_threshold;
	uint32_t n_statuses; /* expected statuses as half-open ranges [lo, hi) */
	const uint16_t (*statuses)[2];
};

/* Istio's cluster: outbound|<port>|<subset>|<host>. */
struct ism_cluster {
	struct ism_str name;
	struct ism_str host;   /* service host (FQDN) */
	struct ism_str subset; /* empty when none */
	uint16_t port;	       /* service port */
	uint8_t lb;	       /* enum ism_lb_policy */
	uint32_t connect_timeout_ms;
	uint32_t idle_timeout_ms; /* pooled upstream connection idle timeout */
	uint32_t n_endpoints;
	const struct ism_endpoint *endpoints;
	const struct ism_hc *hc; /* NULL: no active health check */
};

struct ism_limits {
	uint32_t
	    max_request_header_bytes; /* request line + headers; over it: 431 (414 for the URI) */
	uint32_t max_request_headers; /* header count; over it: 431 */
	uint32_t max_uri_bytes;	      /* over it: 414 */
	uint64_t max_request_body_bytes;    /* 0 = unlimited; over it: 413 */
	uint32_t max_connections;	    /* per worker; beyond it new connections are closed */
	uint32_t max_response_header_bytes; /* upstream response head; over it: 502 */
};

struct ism_timeouts {
	uint32_t request_header_ms;   /* first byte to end of request head; 408 */
	uint32_t idle_ms;	      /* client keep-alive idle */
	uint32_t upstream_connect_ms; /* default for clusters without connectTimeout */
	uint32_t
	    upstream_response_ms; /* request sent to first response byte, and between reads; 504 */
	uint32_t drain_ms;	  /* graceful stop / old-generation drain bound */
};

/* One compiled generation. */
struct ism_table {
	uint32_t magic;	       /* ISM_TABLE_MAGIC */
	uint64_t gen;	       /* generation number, set at publication */
	struct ism_str name;   /* appliance name */
	struct ism_str region; /* appliance locality */
	struct ism_str zone;
	struct ism_str subzone;
	uint32_t workers;    /* 0 = one per CPU */
	struct ism_str user; /* empty: do not change user */
	struct ism_str group;
	struct ism_str control_socket;
	struct sockaddr_storage admin_addr; /* admin listener; ss_family 0 = none */
	socklen_t admin_addrlen;
	struct ism_limits limits;
	struct ism_timeouts timeouts;
	uint32_t n_listeners;
	const struct ism_listener *listeners;
	uint32_t n_clusters;
	const struct ism_cluster *clusters;
};

#endif
