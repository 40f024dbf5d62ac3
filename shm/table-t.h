/* SPDX-License-Identifier: Apache-2.0 */
/* The compiled route table: one immutable generation of the configuration.
 *
 * Types only. conf/ compiles the model into these structures inside an arena
 * (a shared-memory generation slot in the master, a heap block in `isthmus -c`
 * and in tests); after publication nothing in it is ever written again, so the
 * workers read it without locks. All pointers point inside the same arena and
 * are valid in every process because the region is mapped before fork(). */
#ifndef ISM_SHM_TABLE_T_H
#define ISM_SHM_TABLE_T_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
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
	ISM_SM_SUFFIX,	/* value ends with s (an AuthorizationPolicy's "*suffix") */
	/* s is Envoy's URI template (an AuthorizationPolicy's paths): literal
	 * segments, "{*}" one segment (ISM_PCHARS, at least one), "{**}" the
	 * rest (ISM_PCHARS and '/', maybe none) up to the literal segments after
	 * it; at most one "{**}", after every "{*}" */
	ISM_SM_TEMPLATE,
};

/* Besides letters and digits, the characters a segment of a URI template
 * holds and its operators match (RFC 3986 pchar, less '*'). */
#define ISM_PCHARS "-._~%!$&'()+,;:@="

/* Istio StringMatch. */
struct ism_strmatch {
	uint8_t kind;	     /* enum ism_sm_kind */
	uint8_t ignore_case; /* exact/prefix compare case-insensitively (ignoreUriCase) */
	struct ism_str s;    /* exact value, prefix, or the regex source */
	uint8_t search;	     /* ISM_SM_REGEX: found anywhere, not anchored (a rewrite's pattern) */
	const void *re;	     /* pcre2_code_8 *, compiled into the arena, for ISM_SM_REGEX */
	uint32_t re_idx;     /* ISM_SM_REGEX: 0..ism_table.n_regexes-1 (a worker's JIT copy) */
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
	/* VirtualService "@request.auth.claims..." headers: the verified
	 * JWT's claim at name (names joined with ']'; worker/authn.h), which
	 * must hold (claims) or must not (without_claims) */
	uint32_t n_claims, n_without_claims;
	const struct ism_kvmatch *claims, *without_claims;
};

/* Envoy retry_on conditions (Istio retries.retryOn), as bits. */
enum ism_retry_on {
	ISM_RETRY_5XX = 1u << 0,	     /* any 5xx, connect failure, reset */
	ISM_RETRY_GATEWAY_ERROR = 1u << 1,   /* 502, 503, 504 */
	ISM_RETRY_RESET = 1u << 2,	     /* connection reset / no response */
	ISM_RETRY_CONNECT_FAILURE = 1u << 3, /* connect failure or timeout */
	ISM_RETRY_RETRIABLE_4XX = 1u << 4,   /* 409 */
	ISM_RETRY_REFUSED_STREAM = 1u << 5,  /* HTTP/2 REFUSED_STREAM: never seen over HTTP/1.1 */
	ISM_RETRY_RETRIABLE_STATUS_CODES = 1u << 6, /* the codes in ism_retry.codes */
	ISM_RETRY_RESET_BEFORE_REQUEST = 1u << 7,   /* reset before the request was sent */
	ISM_RETRY_ENVOY_RATELIMITED = 1u << 8,	    /* never set by isthmus */
	ISM_RETRY_RETRIABLE_HEADERS = 1u << 9,	    /* never set: accepted with a warning */
	ISM_RETRY_GRPC_CANCELLED = 1u << 10,	    /* gRPC status in response headers */
	ISM_RETRY_GRPC_DEADLINE_EXCEEDED = 1u << 11,
	ISM_RETRY_GRPC_INTERNAL = 1u << 12,
	ISM_RETRY_GRPC_RESOURCE_EXHAUSTED = 1u << 13,
	ISM_RETRY_GRPC_UNAVAILABLE = 1u << 14,
};

/* Istio HTTPRetry, compiled. Istio's default policy when a route has none:
 * attempts 2, retry_on connect-failure|refused-stream|unavailable|cancelled|
 * retriable-status-codes with codes {503}. */
struct ism_retry {
	uint32_t attempts;	     /* retries after the first try; 0 = none */
	uint32_t per_try_timeout_ms; /* 0 = bounded by the route timeout only */
	uint32_t retry_on;	     /* enum ism_retry_on bits */
	uint32_t n_codes; /* retriable status codes (numeric retryOn entries and 503 by default) */
	const uint16_t *codes;
	uint8_t ignore_previous_hosts; /* retryIgnorePreviousHosts, default 1 */
	uint8_t remote_localities;     /* retryRemoteLocalities: Envoy's previous_priorities */
	uint32_t backoff_base_ms; /* 25 ms: retry N waits rand[0, (2^N-1)*base), at most 10*base */
};

/* Response counters by status class (1..5), written by the workers after
 * publication (in the arena, like struct ism_cluster_dyn). */
struct ism_counters {
	_Atomic uint64_t responses[6];
};

/* What a route does to the path the upstream gets (enum values of
 * ism_path_rewrite.kind). */
enum ism_path_rw {
	ISM_PATH_KEEP = 0,
	/* rewrite.uri (Envoy's prefix_rewrite): value replaces the part of the
	 * path the route's match matched: the prefix of a prefix match ("/" when
	 * the match has no uri), the whole path of an exact or regex match */
	ISM_PATH_PREFIX,
	/* uriRegexRewrite (Envoy's regex_rewrite): every match of re in the path
	 * is replaced by value, in which \0..\9 are its groups and \\ a backslash */
	ISM_PATH_REGEX,
	/* redirect.uri (Envoy's path_redirect): value replaces the whole path; the
	 * query is kept unless value has one */
	ISM_PATH_REPLACE,
};

/* A path rewrite; the query string is kept. */
struct ism_path_rewrite {
	uint8_t kind; /* enum ism_path_rw */
	struct ism_str value;
	struct ism_strmatch re; /* ISM_PATH_REGEX: searched (re.search) */
};

/* What one piece of a header value is: text, or one of Envoy's command
 * operators, whose value each request gives (worker/hvalue.c). */
enum ism_hval_kind {
	ISM_HV_LITERAL = 0,
	ISM_HV_CLIENT,		   /* %DOWNSTREAM_REMOTE_ADDRESS%: address:port */
	ISM_HV_CLIENT_IP,	   /* %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% */
	ISM_HV_CLIENT_PORT,	   /* %DOWNSTREAM_REMOTE_PORT% */
	ISM_HV_PEER,		   /* %DOWNSTREAM_DIRECT_REMOTE_ADDRESS%: the socket's peer */
	ISM_HV_PEER_IP,		   /* %DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT% */
	ISM_HV_PEER_PORT,	   /* %DOWNSTREAM_DIRECT_REMOTE_PORT% */
	ISM_HV_LOCAL,		   /* %DOWNSTREAM_LOCAL_ADDRESS% */
	ISM_HV_LOCAL_IP,	   /* %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% */
	ISM_HV_LOCAL_PORT,	   /* %DOWNSTREAM_LOCAL_PORT% */
	ISM_HV_SNI,		   /* %REQUESTED_SERVER_NAME% */
	ISM_HV_PROTOCOL,	   /* %PROTOCOL%: HTTP/1.1, HTTP/2 */
	ISM_HV_START_TIME,	   /* %START_TIME%: 2026-11-26T07:05:26.015Z */
	ISM_HV_REQ,		   /* %REQ(NAME?ALTERNATIVE):LENGTH% */
	ISM_HV_ROUTE_NAME,	   /* %ROUTE_NAME% */
	ISM_HV_UPSTREAM_CLUSTER,   /* %UPSTREAM_CLUSTER% */
	ISM_HV_TLS_VERSION,	   /* %DOWNSTREAM_TLS_VERSION%: TLSv1.3 */
	ISM_HV_PEER_URI_SAN,	   /* %DOWNSTREAM_PEER_URI_SAN%: comma-separated */
	ISM_HV_PEER_DNS_SAN,	   /* %DOWNSTREAM_PEER_DNS_SAN% */
	ISM_HV_PEER_SUBJECT,	   /* %DOWNSTREAM_PEER_SUBJECT%: RFC 2253 */
	ISM_HV_PEER_FINGERPRINT,   /* %DOWNSTREAM_PEER_FINGERPRINT_256%: hex */
	ISM_HV_PEER_FINGERPRINT_1, /* %DOWNSTREAM_PEER_FINGERPRINT_1%: SHA-1, hex */
	ISM_HV_PEER_ISSUER,	   /* %DOWNSTREAM_PEER_ISSUER%: RFC 2253 */
	ISM_HV_PEER_SERIAL,	   /* %DOWNSTREAM_PEER_SERIAL%: hex, lowercase */
	ISM_HV_PEER_CERT,	   /* %DOWNSTREAM_PEER_CERT%: the PEM, URL-encoded */
	ISM_HV_PEER_V_START,	   /* %DOWNSTREAM_PEER_CERT_V_START%: 2018-12-18T01:50:34.000Z */
	ISM_HV_PEER_V_END,	   /* %DOWNSTREAM_PEER_CERT_V_END% */
	ISM_HV_TLS_CIPHER,	   /* %DOWNSTREAM_TLS_CIPHER%: OpenSSL's name of the suite */
	ISM_HV_TLS_SESSION_ID,	   /* %DOWNSTREAM_TLS_SESSION_ID%: hex */
	ISM_HV_LOCAL_URI_SAN,	   /* %DOWNSTREAM_LOCAL_URI_SAN%: the appliance's certificate's */
	ISM_HV_LOCAL_DNS_SAN,	   /* %DOWNSTREAM_LOCAL_DNS_SAN% */
	ISM_HV_LOCAL_SUBJECT,	   /* %DOWNSTREAM_LOCAL_SUBJECT% */
	/* Known once the upstream answers (ism_hval_late): made then in a
	 * response's values, empty in a request's. */
	ISM_HV_UPSTREAM_HOST,	    /* %UPSTREAM_HOST%, %UPSTREAM_REMOTE_ADDRESS%: address:port */
	ISM_HV_UPSTREAM_IP,	    /* %UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% */
	ISM_HV_UPSTREAM_PORT,	    /* %UPSTREAM_REMOTE_PORT% */
	ISM_HV_UPSTREAM_LOCAL,	    /* %UPSTREAM_LOCAL_ADDRESS%: its connection's own */
	ISM_HV_UPSTREAM_LOCAL_IP,   /* %UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% */
	ISM_HV_UPSTREAM_LOCAL_PORT, /* %UPSTREAM_LOCAL_PORT% */
	ISM_HV_RESPONSE_CODE,	    /* %RESPONSE_CODE% */
	ISM_HV_RESP,		    /* %RESP(NAME?ALTERNATIVE):LENGTH% */
};

#define ISM_HV_KINDS (ISM_HV_RESP + 1)

struct ism_hval_part {
	uint8_t kind;	  /* enum ism_hval_kind */
	uint16_t max_len; /* at most this many bytes of its value; 0: all */
	struct ism_str a; /* the text; ISM_HV_REQ, ISM_HV_RESP: the header name (lowercase) */
	struct ism_str b; /* ISM_HV_REQ, ISM_HV_RESP: the alternative's name; empty: none */
};

/* A header value with command operators: its pieces in order. */
struct ism_hval {
	uint32_t n;
	const struct ism_hval_part *parts;
};

/* One header field as a route's header operations (Istio's headers: set, add,
 * remove) leave it, whatever order they came in: the message's own fields of
 * that name dropped (set, remove) or kept, then values sent after them. A
 * value with command operators is made for each request (n_parts > 0 in its
 * fmts entry); one that comes out empty is not sent, and when it is a set's
 * (values[0] without a remove of the name) the message's own fields stay, as
 * Envoy then skips the set. */
struct ism_hdr_edit {
	struct ism_str name; /* lowercase */
	uint8_t drop;
	uint8_t removed; /* a remove names it: dropped whatever the values come to */
	uint32_t n_values;
	const struct ism_str *values; /* as written when it has operators */
	const struct ism_hval *fmts;  /* per value; NULL: every value is text */
};

/* The header edits of one message; n 0: none. */
struct ism_hdr_edits {
	uint32_t n;
	uint8_t dynamic; /* a value has command operators */
	const struct ism_hdr_edit *e;
};

/* What a route does with a request (enum values of ism_route_actions.kind). */
enum ism_route_kind {
	ISM_ROUTE_FORWARD = 0, /* to its destinations */
	ISM_ROUTE_REDIRECT,    /* answered with a redirect */
	ISM_ROUTE_DIRECT,      /* answered with its direct response */
};

/* Istio HTTPDirectResponse. */
struct ism_direct {
	uint16_t status;     /* 200..599 */
	struct ism_str body; /* any bytes; len 0: no body */
};

/* Istio HTTPRedirect, as Istio has Envoy send it: Location is scheme "://"
 * host port path (path: ism_route_actions.path). */
struct ism_redirect {
	uint16_t code; /* 301 (the default), 302, 303, 307, 308 */
	uint16_t port; /* port (80 over http and 443 over https are left out); 0: none */
	uint8_t port_from_request; /* derivePort FROM_REQUEST_PORT: the listener's port */
	struct ism_str scheme;	   /* "http" or "https"; empty: the request's */
	struct ism_str authority;  /* the host; empty: the request's */
};

/* The actions of a route beyond choosing a destination; NULL in a route that
 * has none, so a plain route pays one test for them. */
struct ism_route_actions {
	uint8_t kind; /* enum ism_route_kind */
	/* forward: the rewrite; redirect: the path of Location (uri,
	 * prefixRewrite; ISM_PATH_KEEP: the request's) */
	struct ism_path_rewrite path;
	struct ism_redirect redirect;
	struct ism_direct direct;
	struct ism_hdr_edits resp; /* the route's response edits, on the answers made here */
};

/* What the request the upstream gets and its response change per destination:
 * the route's actions and the destination's own, composed as Istio and Envoy
 * compose them. */
struct ism_dest_actions {
	struct ism_str authority;  /* the Host (:authority) sent; empty: the client's */
	struct ism_hdr_edits req;  /* on the request the upstream gets */
	struct ism_hdr_edits resp; /* on the upstream's response */
};

/* A weighted destination: index into ism_table.clusters. */
struct ism_dest {
	uint32_t cluster;
	uint32_t weight;
	const struct ism_dest_actions *act; /* NULL: none */
};

/* A copy of a route's requests (Istio mirror, mirrors[]): to cluster, for
 * per_million of the requests, its response discarded (worker/mirror.c). */
struct ism_mirror {
	uint32_t cluster; /* index into ism_table.clusters */
	uint32_t per_million;
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
	struct ism_retry retry;
	uint32_t n_mirrors;
	const struct ism_mirror *mirrors;    /* NULL: none */
	const struct ism_route_actions *act; /* NULL: none */
	struct ism_counters *stats;	     /* mutable: responses of this route */
	const struct ism_cors *cors;	     /* corsPolicy; NULL: none */
	const struct ism_fault *fault;	     /* fault injection; NULL: none */
};

/* Istio CorsPolicy of a route, compiled: what Envoy's CORS filter gets from
 * Istio. The Access-Control-* values are as Istio renders them (lists joined
 * with ",", maxAge in seconds); "" when not set. */
struct ism_cors {
	uint32_t n_origins;
	const struct ism_strmatch *origins; /* allowOrigins (allowOrigin: exact matches) */
	uint8_t credentials;		    /* allowCredentials: true */
	uint8_t forward_unmatched; /* unmatchedPreflights FORWARD (the default), not IGNORE */
	struct ism_str methods;	   /* allowMethods; "*": the preflight's requested method */
	struct ism_str headers;	   /* allowHeaders; "*": the preflight's requested headers */
	struct ism_str expose;	   /* exposeHeaders */
	struct ism_str max_age;	   /* maxAge, whole seconds */
};

/* Istio HTTPFaultInjection of a route, compiled (Envoy's fault filter): a
 * delay before the request goes on, an abort answered in its place (after
 * the delay when both happen), each with its own share of requests. */
struct ism_fault {
	uint32_t delay_ms;     /* fixedDelay; 0: no delay */
	uint32_t delay_ppm;    /* requests delayed, per million */
	uint32_t abort_ppm;    /* requests aborted, per million */
	uint16_t abort_status; /* httpStatus, or 200 with abort_grpc; 0: no abort */
	int16_t abort_grpc;    /* grpcStatus code (0..16); -1: none */
};

/* The routes one VirtualService contributes to one listener, and the host names
 * (domains) it serves there: "*", "*.suffix" or an exact name, lowercased, no port.
 * A server with httpsRedirect adds one for all its hosts, without routes. */
struct ism_vhost {
	struct ism_str name;	/* "<namespace>/<virtualservice>", or the server's */
	uint8_t https_redirect; /* from a server with tls.httpsRedirect: 301 to https */
	uint32_t n_domains;
	const struct ism_str *domains;
	uint32_t n_routes;
	const struct ism_route *routes;
};

/* What the upstream's X-Forwarded-Client-Cert is (Istio's
 * gatewayTopology.forwardClientCertDetails, Envoy's forward_client_cert_details),
 * where the client connection is mutual TLS (it presented a certificate that
 * passed the checks): the client's field is otherwise always removed, but with
 * ALWAYS_FORWARD_ONLY. */
enum ism_fcc {
	ISM_FCC_SANITIZE_SET = 0,    /* this connection's certificate alone (Istio's default) */
	ISM_FCC_SANITIZE,	     /* none */
	ISM_FCC_FORWARD_ONLY,	     /* the client's, unchanged */
	ISM_FCC_APPEND_FORWARD,	     /* the client's, then this connection's */
	ISM_FCC_ALWAYS_FORWARD_ONLY, /* the client's, unchanged, mutual TLS or not */
};

/* TLS modes: Gateway ServerTLSSettings.mode, DestinationRule ClientTLSSettings.mode
 * and the mutual TLS PeerAuthentication asks of a plaintext listener. */
enum ism_tls_mode {
	ISM_TLS_NONE = 0,	 /* plaintext (DISABLE) */
	ISM_TLS_SIMPLE,		 /* server authentication only */
	ISM_TLS_MUTUAL,		 /* a valid client certificate is required */
	ISM_TLS_OPTIONAL_MUTUAL, /* requested; verified when sent */
	ISM_TLS_ISTIO_MUTUAL,	 /* mutual, with the appliance's mesh identity and CA */
};

/* PEM text read by the master when the generation was compiled (the workers
 * cannot read key files once they dropped privileges). */
struct ism_pem {
	struct ism_str path; /* file it was read from; empty: none */
	struct ism_str text; /* contents; empty: none */
};

struct ism_tls_cert {
	struct ism_pem cert; /* certificate chain, leaf first */
	struct ism_pem key;
};

#define ISM_TLS_MAX_CERTS 2 /* one RSA and one ECDSA, as Istio allows */

/* The application protocols (ALPN) of a TLS context, as bits.
 *
 * Server side (Gateway HTTPS servers, the mesh identity on plaintext
 * listeners): ISM_ALPN_H2 | ISM_ALPN_HTTP11, as Istio's gateway (its ALPNHttp):
 * the first of "h2", "http/1.1" the client offers is selected, in that order;
 * a client offering neither gets no ALPN (and HTTP/1.1). A TLS server that
 * terminates for tcp routes offers the same, as Istio's gateway does there
 * (an ISTIO_MUTUAL one without its istio-peer-exchange, whose metadata
 * exchange isthmus does not speak: as Istio with DISABLE_MXC_ALPN).
 *
 * Client side (a cluster's DestinationRule tls), what the ClientHello offers:
 *   ISM_ALPN_HTTP11                   "http/1.1"
 *   ISM_ALPN_H2                       "h2" (Istio's ALPNH2Only)
 *   ISM_ALPN_ISTIO | ISM_ALPN_HTTP11  "istio-http/1.1", "istio", "http/1.1"
 *   ISM_ALPN_ISTIO | ISM_ALPN_H2      "istio-h2", "istio", "h2"
 * (the ISTIO_MUTUAL lists are those of Istio's istio.alpn filter). Both H2 and
 * HTTP11 set (a cluster of ISM_UP_AS_CLIENT): each connection offers the list of
 * the protocol of the stream it is opened for, set on the SSL object. 0: no
 * ALPN (a plaintext cluster). */
enum ism_alpn {
	ISM_ALPN_HTTP11 = 1u << 0,
	ISM_ALPN_H2 = 1u << 1,
	ISM_ALPN_ISTIO = 1u << 2, /* client only: the istio-* values first */
};

/* A pinned client certificate (a Gateway server's verifyCertificateHash or
 * verifyCertificateSpki): the SHA-256 of the DER certificate, or of its DER
 * SubjectPublicKeyInfo. */
enum ism_pin_kind {
	ISM_PIN_CERT = 0,
	ISM_PIN_SPKI,
};

struct ism_pin {
	uint8_t kind; /* enum ism_pin_kind */
	uint8_t sha256[32];
};

/* One side of a TLS configuration, server (a Gateway server) or client (a
 * DestinationRule towards a cluster). Workers build one OpenSSL context per
 * distinct fingerprint and keep it while generations share it.
 * insecureSkipVerify: a client does not verify the upstream's certificate; a
 * server accepts any client certificate, though it still asks for one
 * (Envoy's ACCEPT_UNTRUSTED). */
struct ism_tls_conf {
	uint8_t mode;	     /* enum ism_tls_mode */
	uint16_t min_ver;    /* TLS1_2_VERSION etc.; 0: default (TLS 1.2) */
	uint16_t max_ver;    /* 0: the highest the library offers */
	uint8_t skip_verify; /* insecureSkipVerify (above) */
	uint8_t name_check;  /* client: the certificate must carry the server name */
	uint32_t n_certs;
	struct ism_tls_cert certs[ISM_TLS_MAX_CERTS];
	struct ism_pem ca;	/* client certificates (server) or the upstream's (client) */
	struct ism_pem crl;	/* caCrl */
	struct ism_str ciphers; /* OpenSSL cipher list for TLS <= 1.2; empty: default */
	struct ism_str curves;	/* server: OpenSSL groups list (ecdhCurves); empty: default */
	uint32_t n_sans;
	const struct ism_str *sans; /* subjectAltNames the peer must present one of */
	/* server: the client certificate must match one of them, when any */
	uint32_t n_pins;
	const struct ism_pin *pins;
	/* client: the server name sent; empty: the request's host. ISTIO_MUTUAL
	 * without one: "outbound_.<port>_.<subset>_.<host>", not in the fingerprint. */
	struct ism_str sni;
	uint8_t alpn;	      /* enum ism_alpn bits */
	uint64_t fingerprint; /* of everything above: equal means the same context */
	/* server: of what decides whether a client is taken (mode,
	 * insecureSkipVerify, CA, CRL, SANs, pins; not the certificates): a
	 * connection taken under another is not served on after a reload */
	uint64_t peer_auth;
};

/* Counters of a TCP or TLS route (mutable, like ism_counters). */
struct ism_l4counters {
	_Atomic uint64_t connections; /* tunnels opened to the route's destinations */
	_Atomic uint64_t bytes_in;    /* from clients */
	_Atomic uint64_t bytes_out;   /* to clients */
};

/* An IPv4 or IPv6 prefix (Istio's destinationSubnets entries). */
struct ism_subnet {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t prefix; /* bits */
	uint8_t addr[16];
};

/* One match of an Istio TCPRoute or TLSRoute, compiled: a connection it takes
 * goes to one of its weighted destinations, carried by the byte pump
 * (worker/tunnel.c). A route with several matches is several entries sharing
 * name, destinations and counters; a route without matches is one entry that
 * takes every connection. The first entry whose conditions all hold takes the
 * connection. TCP routes: entries in the order Istio evaluates them (the
 * VirtualServices' order, then the routes', then the matches'). TLS routes:
 * one entry per SNI host of a match, sorted as Envoy picks a filter chain by
 * server name (exact names, then wildcards by decreasing suffix length, then
 * "*"), ties in Istio's order; an SNI host is on one entry of a listener at
 * most (Istio drops a later match that repeats one). Match port and gateways
 * (and sourceLabels, sourceNamespace) are decided at load: an entry is only
 * where its match applies. */
struct ism_l4route {
	struct ism_str name; /* "<ns>/<vs>#tcp<i>" / "#tls<i>" (i: the route's index) */
	/* TLS routes: the match's sniHost ("*", "*.suffix" or exact, lowercased;
	 * n_sni 1), the ClientHello's server name must be; 0: any (TCP routes) */
	uint32_t n_sni;
	const struct ism_str *sni;
	/* match.destinationSubnets: the address the client connected to must be
	 * in one of them (addr: the prefix's bits, the rest 0; AF_INET: addr[0..3]);
	 * 0: any */
	uint32_t n_subnets;
	const struct ism_subnet *subnets;
	uint32_t n_dest;
	const struct ism_dest *dest; /* act NULL: L4 routes edit nothing */
	uint32_t total_weight;	     /* sum of dest[].weight; 0: every weight is 0 */
	struct ism_l4counters *stats;
};

/* Names ("*", "*.suffix" or exact, lowercased) by hash, each to the first
 * entry (a virtual host of a set, an HTTPS server of a listener) that has it,
 * so that finding a Host's virtual host or an SNI's server costs the same
 * however many there are, as Envoy's findVirtualHost (a Host no name took was
 * compared with every name of every entry). */
#define ISM_NAME_INDEX_MAX 256 /* a set with a longer name is scanned */
#define ISM_NAME_INDEX_MIN 16  /* a set of fewer names is scanned: as fast */

struct ism_name_slot {
	uint64_t hash;		    /* of the name's bytes; a wildcard's from its '.' */
	const struct ism_str *name; /* NULL: an empty slot */
	uint32_t entry;
	uint8_t wild; /* "*.suffix" */
};

struct ism_name_index {
	uint32_t cap; /* slots, a power of two; 0: none, the entries are scanned */
	int32_t any;  /* the first entry named "*"; -1: none */
	uint64_t seed;
	const struct ism_name_slot *slots;
	/* The lengths of the partial wildcards' suffixes, a bit each
	 * ("*-api.example.com": 16): a name is looked up by those suffixes too,
	 * beside the ones from each of its dots. */
	uint8_t partial[32];
};

/* A Gateway server with TLS on a listener: chosen by SNI, with its own routes. */
struct ism_tls_server {
	struct ism_str name; /* "<ns>/<gateway>#<index>" or the server's name */
	/* The names it is chosen by: "*", "*.suffix" or exact, lowercased. The
	 * server's hosts; passthrough: the sni of its l4 entries, in their order
	 * (what Envoy's filter chains for it match; its hosts only chose the
	 * VirtualServices), so none when it has no route; tcp: its hosts, none
	 * when it has no route (Istio makes no filter chain for it). */
	uint32_t n_sni;
	const struct ism_str *sni;
	struct ism_tls_conf tls; /* mode ISM_TLS_NONE when passthrough */
	uint32_t n_vhosts;
	const struct ism_vhost *vhosts;
	struct ism_name_index vhost_index; /* of vhosts' domains */
	/* Gateway protocol TLS with tls.mode PASSTHROUGH: TLS is not terminated;
	 * the ClientHello's SNI picks this server and then the first of its TLS
	 * routes (l4) whose match holds, and the connection's bytes, ClientHello
	 * first, go to that route's destination untouched. */
	uint8_t passthrough;
	/* Gateway protocol TLS with a mode that terminates it: TLS ends here
	 * (tls), then the first of its tcp routes (l4) whose match holds takes
	 * the connection's plaintext, as on a TCP listener. */
	uint8_t tcp;
	uint32_t n_l4;
	const struct ism_l4route *l4;
};

/* One listening socket: a Gateway server port (servers sharing a port are merged). */
struct ism_listener {
	/* The first server's port name, else "<port>"; a name other listeners
	 * have too is "<address>_<port>" instead (Envoy's listener name), so it
	 * is unique in a table unless a port is named so on purpose. */
	struct ism_str name;
	struct sockaddr_storage addr; /* bind address and port */
	socklen_t addrlen;
	uint16_t port;
	uint32_t n_vhosts; /* plaintext HTTP servers */
	const struct ism_vhost *vhosts;
	struct ism_name_index vhost_index; /* of vhosts' domains */
	uint32_t n_tls; /* HTTPS servers: the connection's server is chosen by SNI */
	const struct ism_tls_server *tls;
	struct ism_name_index sni_index; /* of tls' sni names */
	/* Plaintext listeners: the mutual TLS PeerAuthentication asks for
	 * (ISM_TLS_NONE: DISABLE; ISM_TLS_MUTUAL: STRICT; ISM_TLS_OPTIONAL_MUTUAL:
	 * PERMISSIVE, TLS told from plaintext by the first bytes), served with
	 * the table's mesh identity. */
	uint8_t peer_mtls;
	uint8_t proxy_protocol; /* a PROXY v1/v2 header starts every connection */
	/* Plaintext listeners: a connection that starts with the HTTP/2 connection
	 * preface (prior knowledge, RFC 9113 §3.3) is served as HTTP/2; any other
	 * as HTTP/1.1. Set for every plaintext listener (Gateway servers HTTP,
	 * HTTP2 and GRPC alike), as Envoy's codec AUTO behind Istio's gateway.
	 * `Upgrade: h2c` is not this. HTTPS listeners: 0 (ALPN decides, tls.alpn). */
	uint8_t h2c;
	/* A server of the port is GRPC-WEB: gRPC-Web requests (content-type
	 * application/grpc-web...) go upstream as gRPC, their responses come
	 * back as gRPC-Web (worker/grpcweb.h), as Envoy's grpc_web filter. */
	uint8_t grpc_web;
	struct ism_counters *stats; /* mutable: responses on this listener */
	/* Gateway protocol TCP: no HTTP; every connection is carried to the first
	 * of the port's TCP routes (tcp) whose match holds, or closed when none
	 * does. A port is TCP or HTTP(S)/TLS, never both (refused at load). */
	uint8_t tcp;
	uint32_t n_tcp;
	const struct ism_l4route *tcp_routes;
};

enum ism_lb_policy {
	ISM_LB_ROUND_ROBIN = 0,
	ISM_LB_LEAST_REQUEST,
	ISM_LB_RANDOM,
	ISM_LB_RING_HASH,
	ISM_LB_MAGLEV,
};

/* What a consistent-hash policy hashes (Istio consistentHash). */
enum ism_hash_on {
	ISM_HASH_NONE = 0,
	ISM_HASH_HEADER,      /* httpHeaderName */
	ISM_HASH_COOKIE,      /* httpCookie */
	ISM_HASH_SOURCE_IP,   /* useSourceIp */
	ISM_HASH_QUERY_PARAM, /* httpQueryParameterName */
};

struct ism_hash_policy {
	uint8_t on;		     /* enum ism_hash_on */
	struct ism_str name;	     /* header (lowercased), cookie or query parameter name */
	struct ism_str cookie_path;  /* len 0: no Path attribute */
	struct ism_str cookie_attrs; /* "; name=value; name" appended, or "" */
	/* A cookie is issued when absent and issue_cookie (a ttl was given);
	 * ttl 0 makes it a session cookie (no Max-Age). */
	uint8_t issue_cookie;
	uint32_t cookie_ttl_ms;
	uint32_t ring_size;    /* ringHash.minimumRingSize, default 1024 */
	uint32_t table_size;   /* maglev.tableSize, default 65537 (prime) */
	const uint32_t *table; /* ring or maglev table of endpoint indices, built at compile */
	const uint64_t *ring_hashes; /* ring hash: the sorted point hashes (same length as table) */
	uint32_t table_len;
};

#define ISM_NO_OD_SLOT UINT32_MAX

/* An upstream endpoint as one cluster sees it. */
struct ism_endpoint {
	uint32_t id; /* slot in the shared endpoint-state table; stable across generations */
	/* slot of its outlier-detection state in this cluster (ism_shm_hdr.ods),
	 * stable likewise; ISM_NO_OD_SLOT in a table never published */
	uint32_t od;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct ism_str addr_text; /* "127.0.0.2:8080", for logs */
	struct ism_str locality;  /* "region/zone[/subzone]", may be empty */
	uint32_t weight;	  /* ServiceEntry weight, default 1 */
	uint8_t priority;	  /* Envoy priority (0 highest), compacted; see ism_lgroup */
	uint32_t group;		  /* index of its ism_lgroup in the cluster */
	struct ism_str dns_name;  /* the ServiceEntry name it was resolved from; empty: none */
	uint64_t resolved_ms;	  /* wall ms of that name's answer; 0: none */
	/* Labelled security.istio.io/tlsMode: istio (or, without that label,
	 * with a serviceAccount): what Istio's automatic mutual TLS picks
	 * (ism_cluster.auto_tls). */
	uint8_t mesh_tls;
};

#define ISM_MAX_PRIORITIES 16
/* The longest spec.proxyHeaders.server value. */
#define ISM_SERVER_MAX 256
/* The highest status a configuration may name (outlierDetectionHttpErrorCodes). */
#define ISM_STATUS_MAX 599

/* Envoy's LocalityLbEndpoints: the endpoints of one locality at one priority.
 * A cluster's groups are sorted by priority, and each group's endpoints are
 * contiguous in the cluster's endpoint array. */
struct ism_lgroup {
	struct ism_str locality;
	uint8_t priority;
	uint32_t weight; /* locality LB weight: sum of endpoint weights, or as `distribute` says */
	uint32_t first;	 /* endpoints[first .. first + count) */
	uint32_t count;
};

/* Istio outlierDetection, compiled (Envoy field names in comments). */
struct ism_outlier {
	uint32_t consecutive_5xx;     /* consecutive_5xx; 0 = off. Istio default 5 */
	uint32_t consecutive_gateway; /* consecutive_gateway_failure; 0 = off (Istio default) */
	uint8_t split_local;	      /* split_external_local_origin_errors */
	uint32_t consecutive_local;   /* consecutive_local_origin_failure (split mode); default 5 */
	uint32_t interval_ms;	      /* sweep period, default 10 s */
	uint32_t base_ejection_ms;    /* default 30 s */
	uint32_t max_ejection_ms;     /* max(300 s, base) */
	uint32_t max_ejection_percent; /* default 10; at least one host may always be ejected */
	/* outlierDetectionHttpErrorCodes (Envoy's error matcher on the status):
	 * when has_error_codes, a response is an error only when its status is
	 * listed (bit status of error_codes), and any other one is a success. */
	uint8_t has_error_codes;
	uint64_t error_codes[ISM_STATUS_MAX / 64 + 1];
};

/* Istio connectionPool limits (Envoy circuit breakers, per cluster). */
struct ism_pool_limits {
	uint32_t max_connections;	/* tcp.maxConnections; UINT32_MAX = unlimited */
	uint32_t max_pending;		/* http.http1MaxPendingRequests; UINT32_MAX */
	uint32_t max_requests_per_conn; /* http.maxRequestsPerConnection; 0 = unlimited */
	uint32_t max_retries;		/* http.maxRetries: concurrent retries; UINT32_MAX */
	/* http.http2MaxRequests (Envoy's max_requests): requests in flight to the
	 * cluster, HTTP/1.1 and HTTP/2 alike; one more is answered 503 UO.
	 * UINT32_MAX = unlimited (Istio's default). */
	uint32_t max_requests;
	/* trafficPolicy.retryBudget (Envoy's retry_budget), in place of
	 * max_retries when retry_budget_min > 0: retries in flight at most
	 * max(requests in flight and pending × retry_budget_ppm / 10^6,
	 * retry_budget_min). */
	uint32_t retry_budget_ppm;
	uint32_t retry_budget_min;
};

/* What the connections to a cluster's endpoints speak: the ServiceEntry port's
 * protocol (HTTP2, GRPC, GRPC-WEB: HTTP/2, as Istio's IsHTTP2), unless the
 * DestinationRule's connectionPool.http says otherwise (h2UpgradePolicy
 * UPGRADE: HTTP/2; useClientProtocol: the client's). */
enum ism_upstream_proto {
	ISM_UP_HTTP1 = 0, /* HTTP/1.1 */
	ISM_UP_HTTP2,	  /* HTTP/2: prior knowledge in plaintext; ALPN "h2" over TLS */
	ISM_UP_AS_CLIENT, /* an HTTP/2 stream over HTTP/2, an HTTP/1.1 one over HTTP/1.1 */
};

/* The PROXY protocol header an upstream connection of a cluster starts with
 * (DestinationRule trafficPolicy.proxyProtocol; Istio's V1 = 0, V2 = 1 are
 * these values less one). */
enum ism_upstream_pp {
	ISM_UPP_NONE = 0, /* none */
	ISM_UPP_V1,	  /* v1, text */
	ISM_UPP_V2,	  /* v2, binary */
};

/* The most streams isthmus runs at once on one HTTP/2 connection: the bound of
 * spec.limits.http2MaxConcurrentStreams (client side) and the cap on a
 * DestinationRule's maxConcurrentStreams (upstream side). */
#define ISM_H2_MAX_STREAMS 1000u

/* The one part of a generation written after publication: per-cluster state in
 * the generation's arena. Writers are named per field; the load fields are
 * guarded by a sequence counter (odd while the master writes them). */
struct ism_cluster_dyn {
	_Atomic uint32_t seq;			  /* master */
	uint8_t n_priorities;			  /* master */
	uint8_t total_panic;			  /* master */
	uint8_t healthy_load[ISM_MAX_PRIORITIES]; /* master: percent per priority, sums to 100 */
	uint8_t panic[ISM_MAX_PRIORITIES];	  /* master: priority in panic */
	uint8_t health[ISM_MAX_PRIORITIES];	  /* master: availability per priority, 0..100 */
	_Atomic uint32_t pending;		  /* workers: requests waiting for a connection */
	/* any process: while one decides an ejection of the cluster's, when it
	 * took the lease (monotonic ms; 0: free), health/outlier.c */
	_Atomic uint64_t eject_lease_ms;
	_Atomic uint32_t retries_active; /* workers */
	_Atomic uint32_t in_flight;	 /* workers: requests, for pool.max_requests (when set) */
	_Atomic uint64_t overflow;	 /* workers: requests refused by a pool limit */
	_Atomic uint64_t retries;	 /* workers: retries made */
	_Atomic uint64_t
	    responses[6]; /* workers: responses by status class (1..5) for this generation */
};

/* The longest gRPC health check serviceName. */
#define ISM_HC_SERVICE_MAX 1024

enum ism_hc_type {
	ISM_HC_HTTP = 0,
	ISM_HC_TCP,  /* connect only */
	ISM_HC_GRPC, /* grpc.health.v1.Health/Check over HTTP/2 (health/grpccheck.h) */
};

/* Active health check of a service's endpoints, run by the master (Envoy's
 * HealthCheck; the interval fields default as Envoy's do). */
struct ism_hc {
	uint8_t type;		/* enum ism_hc_type */
	struct ism_str path;	/* request path, default "/" */
	struct ism_str host;	/* Host header (gRPC: :authority), default the service host */
	struct ism_str service; /* gRPC: the HealthCheckRequest's service, "" the server's */
	uint32_t interval_ms;
	uint32_t timeout_ms;
	uint32_t healthy_threshold;
	uint32_t unhealthy_threshold;
	uint32_t n_statuses; /* expected statuses as half-open ranges [lo, hi) */
	const uint16_t (*statuses)[2];
	uint32_t unhealthy_interval_ms;	     /* default interval */
	uint32_t unhealthy_edge_interval_ms; /* default unhealthy_interval */
	uint32_t healthy_edge_interval_ms;   /* default interval */
	uint32_t initial_jitter_ms;	     /* first check delayed by rand[0, it) */
	uint32_t interval_jitter_ms;	     /* every wait += rand % it */
	uint32_t interval_jitter_percent;    /* every wait += rand % (interval * it / 100) */
};

/* Istio's cluster: outbound|<port>|<subset>|<host>. */
struct ism_cluster {
	struct ism_str name;
	struct ism_str host;   /* service host (FQDN) */
	struct ism_str subset; /* empty when none */
	uint16_t port;	       /* service port */
	uint8_t lb;	       /* enum ism_lb_policy */
	/* loadBalancer.warmup (Envoy's slow start; ROUND_ROBIN and
	 * LEAST_REQUEST only): an endpoint healthy for t < warmup_ms has its
	 * weight scaled by max((t / warmup_ms)^(1 / aggression), minimum);
	 * warmup_ms 0: none */
	uint32_t warmup_ms;
	double warmup_aggression; /* > 0; 1: linear */
	double warmup_minimum;	  /* minimumPercent / 100 */
	uint32_t connect_timeout_ms;
	uint32_t idle_timeout_ms; /* pooled upstream connection idle timeout */
	uint32_t n_endpoints;
	const struct ism_endpoint *endpoints;
	/* a name of its ServiceEntry that has no answer yet (its endpoints are
	 * missing, a 503 says so); empty: none */
	struct ism_str unresolved;
	/* No ServiceEntry has its host and port: istiod makes no such cluster,
	 * and Envoy's router answers 503 NC (cluster_not_found). */
	uint8_t missing;
	uint32_t n_groups;
	const struct ism_lgroup *groups;
	uint8_t n_priorities;
	uint8_t locality_weighted; /* Envoy locality_weighted_lb_config: pick a group by weight */
	uint8_t zone_aware;	 /* priorities by region (zoneAwareLbSetting), no outlier needed */
	uint8_t panic_threshold; /* percent; outlierDetection.minHealthPercent (default 0),
				  * Envoy's 50 without outlierDetection */
	uint32_t overprovisioning;    /* percent, 140 */
	const struct ism_outlier *od; /* NULL: no outlier detection (and no locality failover) */
	struct ism_hash_policy hash;  /* lb is ISM_LB_RING_HASH or ISM_LB_MAGLEV */
	struct ism_pool_limits pool;
	struct ism_cluster_dyn *dyn; /* mutable: see struct ism_cluster_dyn */
	uint32_t *eff_weight;	     /* mutable, master: per lgroup, effective locality weight */
	struct ism_tls_conf tls;     /* DestinationRule tls; mode ISM_TLS_NONE: plaintext */
	const struct ism_hc *hc;     /* NULL: no active health check */
	/* hc set: the TLS settings the check speaks, the service port's without
	 * a subset (tls itself when this cluster has none): one check serves an
	 * endpoint for every subset. NULL: plaintext. */
	const struct ism_tls_conf *hc_tls;
	/* The PROXY protocol header its connections start with, before TLS (enum
	 * ism_upstream_pp); hc_pp: the one its active health check sends, the
	 * service port's without a subset, as hc_tls. */
	uint8_t pp;
	uint8_t hc_pp;
	uint8_t proto; /* enum ism_upstream_proto */
	/* proto ISM_UP_HTTP2 (Istio applies them to explicit HTTP/2 clusters only;
	 * ISM_UP_AS_CLIENT gets the defaults): streams at once on one upstream
	 * connection (maxConcurrentStreams, default and cap ISM_H2_MAX_STREAMS;
	 * the upstream's SETTINGS_MAX_CONCURRENT_STREAMS may lower it), and
	 * http2KeepAlive: a PING every interval, the connection closed when one
	 * is not answered within timeout (0: no PINGs). */
	uint32_t h2_max_streams;
	uint32_t h2_ping_interval_ms;
	uint32_t h2_ping_timeout_ms;
	/* connectionPool.tcp, for tunnels (TCP and TLS routes; WebSocket
	 * upgrades are bounded by timeouts.idle instead): idleTimeout (Istio's
	 * default 1 h; 0: none) closes a tunnel without bytes either way;
	 * maxConnectionDuration (0: none) closes it after that long. tcpKeepalive
	 * (keepalive 1) on every upstream socket of the cluster: probes, time and
	 * interval (0: the system's). */
	uint32_t tcp_idle_ms;
	uint32_t tcp_max_duration_ms;
	/* tunnel: a TCP or TLS route's connection to an endpoint (an HTTP proxy)
	 * first asks "CONNECT <tunnel> HTTP/1.1" (tunnel: "host:port", an IPv6
	 * address in brackets), or with tunnel_post "POST / HTTP/1.1" with Host
	 * <tunnel>, and carries the bytes once a 2xx answers, as Envoy's
	 * tcp_proxy tunneling_config; empty: no tunnel. */
	struct ism_str tunnel;
	uint8_t tunnel_post;
	uint8_t keepalive;
	uint32_t keepalive_probes;
	uint32_t keepalive_time_s;
	uint32_t keepalive_interval_s;
	/* Istio's automatic mutual TLS (enableAutoMtls): a cluster of a
	 * MESH_INTERNAL service whose policy sets no tls speaks this ISTIO_MUTUAL
	 * to its endpoints with mesh_tls, plaintext (tls) to the others, as
	 * Envoy's transport socket matches; hc_auto_tls: what its check speaks
	 * to them (the service port's, as hc_tls). NULL: none. */
	const struct ism_tls_conf *auto_tls;
	const struct ism_tls_conf *hc_auto_tls;
};

/* Istio's meshConfig.pathNormalization, in the order of its names (worker/pathnorm.h
 * does the work). Istio's default is BASE. */
enum ism_pathnorm_mode {
	ISM_PATHNORM_NONE = 0,
	ISM_PATHNORM_BASE,
	ISM_PATHNORM_MERGE_SLASHES,
	ISM_PATHNORM_DECODE_AND_MERGE_SLASHES,
};

/* spec.limits.receiveBuffersPerWorker: its default and largest value (a power
 * of two, as io_uring's provided-buffer rings need; each buffer is 16 KiB). */
#define ISM_RECV_BUFFERS_DEFAULT 1024u
#define ISM_RECV_BUFFERS_MAX	 32768u

struct ism_limits {
	uint32_t
	    max_request_header_bytes; /* request line + headers; over it: 431 (414 for the URI) */
	uint32_t max_request_headers; /* header count; over it: 431 */
	uint32_t max_uri_bytes;	      /* over it: 414 */
	uint64_t max_request_body_bytes;    /* 0 = unlimited; over it: 413 */
	uint32_t max_connections;	    /* per worker; beyond it new connections are closed */
	uint32_t max_response_header_bytes; /* upstream response head; over it: 502 */
	/* HTTP/2 client connections: SETTINGS_MAX_CONCURRENT_STREAMS (a stream
	 * past it is refused, RST_STREAM REFUSED_STREAM); SETTINGS_INITIAL_WINDOW_SIZE
	 * (bytes a stream may send before a WINDOW_UPDATE); the connection's receive
	 * window (raised from 65535 by a WINDOW_UPDATE on stream 0 at the start:
	 * what bounds the request bodies buffered per connection); and
	 * SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 size: name + value + 32 per
	 * field; over it: 431). The windows are also what isthmus advertises to
	 * HTTP/2 upstreams. */
	uint32_t h2_max_concurrent_streams;
	uint32_t h2_initial_stream_window;
	uint32_t h2_initial_conn_window;
	uint32_t h2_max_header_list;
	/* Request mirroring, per worker: copies in flight at most (more are
	 * dropped), and the request body a copy carries at most (a larger
	 * body: not mirrored). */
	uint32_t mirror_max_in_flight;
	uint32_t mirror_max_body_bytes;
	/* The shared 16 KiB receive buffers of each worker, sized as it
	 * starts (a reload that changes it starts a new set of workers). */
	uint32_t receive_buffers;
};

struct ism_timeouts {
	uint32_t request_header_ms;   /* first byte to end of request head; 408 */
	uint32_t idle_ms;	      /* client keep-alive idle */
	uint32_t upstream_connect_ms; /* default for clusters without connectTimeout */
	/* the request's end to the first response byte, for routes without a
	 * timeout (nor a gRPC deadline); 504 */
	uint32_t upstream_response_ms;
	/* no byte either way on a stream in progress (its body coming, the wait
	 * under a route's timeout, between response reads): 408, or the
	 * response cut, SI (Envoy's stream idle timeout); 0: none */
	uint32_t stream_idle_ms;
	uint32_t drain_ms; /* graceful stop / old-generation drain bound */
};

/* --- the access log (spec.accessLog) --- */

enum ism_alog_dest {
	ISM_ALOG_OFF = 0,
	ISM_ALOG_FILE,
	ISM_ALOG_STDOUT,
	ISM_ALOG_SYSLOG, /* RFC 3164 datagrams to a unix datagram socket or over UDP */
};

enum ism_alog_format {
	ISM_ALOG_JSON = 0, /* the fixed JSON object of README's "Access log" */
	ISM_ALOG_TEXT,	   /* an Envoy format string, compiled into ism_alog_op */
	/* Istio's JSON encoding: an Envoy format dictionary (jsonFormat, or
	 * Istio's default keys), its members' ops in one list, each member's
	 * begun by an ISM_ALOG_F_KEY op (a list's items by ISM_ALOG_F_ITEM),
	 * nested objects and lists between ISM_ALOG_F_OPEN and _CLOSE; values
	 * typed as Envoy's json_format */
	ISM_ALOG_DICT,
};

/* The request headers a line can show, as %REQ(NAME)% names them (lower case;
 * the pseudo-headers come from the request line and Host). X-macro: the conf
 * parser and the worker's capture expand it into their name tables. */
#define ISM_ALOG_HEADERS(X)                                                                        \
	X(METHOD, ":method")                                                                       \
	X(PATH, ":path")                                                                           \
	X(AUTHORITY, ":authority")                                                                 \
	X(USER_AGENT, "user-agent")                                                                \
	X(X_REQUEST_ID, "x-request-id")                                                            \
	X(X_FORWARDED_FOR, "x-forwarded-for")                                                      \
	X(REFERER, "referer")                                                                      \
	X(X_ENVOY_ORIGINAL_PATH, "x-envoy-original-path")

#define ISM_ALOG_HDR_ENUM(id, name) ISM_ALOG_H_##id,
enum ism_alog_hdr {
	ISM_ALOG_HEADERS(ISM_ALOG_HDR_ENUM) ISM_ALOG_H_COUNT,
	/* then the format's other request fields, by name (ISM_ALOG_NAMED_MAX) */
	ISM_ALOG_H_NONE = 0xff, /* never present */
};
/* The request fields a format names beyond the list above: slots
 * ISM_ALOG_H_COUNT + 0 .. ISM_ALOG_NAMED_MAX - 1, in the order they come. */
#define ISM_ALOG_NAMED_MAX 8
#define ISM_ALOG_H_ALL	   (ISM_ALOG_H_COUNT + ISM_ALOG_NAMED_MAX)
#undef ISM_ALOG_HDR_ENUM

/* What one operator of a line shows. */
/* How %GRPC_STATUS(FORMAT)% writes a status, as Envoy's formatter. */
enum ism_alog_grpc {
	ISM_ALOG_GRPC_CAMEL = 0, /* CAMEL_STRING (the default): DeadlineExceeded */
	ISM_ALOG_GRPC_SNAKE,	 /* SNAKE_STRING: DEADLINE_EXCEEDED */
	ISM_ALOG_GRPC_NUMBER,	 /* NUMBER: 4 */
};

enum ism_alog_field {
	ISM_ALOG_F_LITERAL = 0,	      /* text of the template */
	ISM_ALOG_F_START_TIME,	      /* %START_TIME%: 2026-11-26T07:05:26.015Z */
	ISM_ALOG_F_REQ,		      /* %REQ(H?ALT):N%: a request header */
	ISM_ALOG_F_PROTOCOL,	      /* HTTP/1.1 */
	ISM_ALOG_F_RESPONSE_CODE,     /* 0: no response */
	ISM_ALOG_F_RESPONSE_FLAGS,    /* NR, UH, ... */
	ISM_ALOG_F_BYTES_RECEIVED,    /* body bytes from the client (a tunnel's bytes) */
	ISM_ALOG_F_BYTES_SENT,	      /* body bytes to the client (a tunnel's bytes) */
	ISM_ALOG_F_DURATION,	      /* ms, complete request head to end of response */
	ISM_ALOG_F_UPSTREAM_HOST,     /* address:port of the last attempt's endpoint */
	ISM_ALOG_F_UPSTREAM_ENDPOINT, /* "<service>|<address>:<port>" (JSON "upstream") */
	ISM_ALOG_F_UPSTREAM_CLUSTER,  /* outbound|<port>|<subset>|<host> */
	ISM_ALOG_F_ATTEMPTS,	      /* %UPSTREAM_REQUEST_ATTEMPT_COUNT% */
	ISM_ALOG_F_CLIENT,	      /* %DOWNSTREAM_REMOTE_ADDRESS%: address:port */
	ISM_ALOG_F_CLIENT_IP,	      /* %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% */
	ISM_ALOG_F_ROUTE_NAME,
	ISM_ALOG_F_SNI,		  /* %REQUESTED_SERVER_NAME%: the TLS ClientHello's SNI */
	ISM_ALOG_F_CODE_DETAILS,  /* %RESPONSE_CODE_DETAILS%: via_upstream, route_not_found, ... */
	ISM_ALOG_F_LOCAL,	  /* %DOWNSTREAM_LOCAL_ADDRESS%: address:port the client reached */
	ISM_ALOG_F_LOCAL_IP,	  /* %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% */
	ISM_ALOG_F_LOCAL_PORT,	  /* %DOWNSTREAM_LOCAL_PORT% */
	ISM_ALOG_F_UP_LOCAL,	  /* %UPSTREAM_LOCAL_ADDRESS%: of the connection that answered */
	ISM_ALOG_F_UP_LOCAL_IP,	  /* %UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% */
	ISM_ALOG_F_UP_LOCAL_PORT, /* %UPSTREAM_LOCAL_PORT% */
	ISM_ALOG_F_RESP,	  /* %RESP(H?ALT):N%: a field of the response the client got */
	ISM_ALOG_F_TRAILER,	  /* %TRAILER(H?ALT):N%: a trailer field of the response */
	ISM_ALOG_F_TRANSPORT_FAILURE, /* %UPSTREAM_TRANSPORT_FAILURE_REASON% */
	ISM_ALOG_F_TERMINATION,	      /* %CONNECTION_TERMINATION_DETAILS%: always absent */
	ISM_ALOG_F_HOSTNAME,	      /* %HOSTNAME%: the system's host name */
	ISM_ALOG_F_UP_PROTOCOL,	      /* %UPSTREAM_PROTOCOL%: HTTP/1.1, HTTP/2 */
	ISM_ALOG_F_REQ_DURATION,      /* %REQUEST_DURATION%: ms to the request's last byte */
	ISM_ALOG_F_REQ_TX_DURATION,   /* %REQUEST_TX_DURATION%: ms to its last byte sent upstream */
	ISM_ALOG_F_RESP_DURATION,     /* %RESPONSE_DURATION%: ms to the upstream's head */
	ISM_ALOG_F_RESP_TX_DURATION,  /* %RESPONSE_TX_DURATION%: ms from it to the last byte out */
	ISM_ALOG_F_CONNECTION_ID,     /* %CONNECTION_ID%: the client connection's */
	ISM_ALOG_F_UP_CONNECTION_ID,  /* %UPSTREAM_CONNECTION_ID%: the answer's connection's */
	ISM_ALOG_F_STREAM_ID,	      /* %STREAM_ID%: the request's id (X-Request-Id) */
	/* %GRPC_STATUS(FORMAT)%, %GRPC_STATUS_NUMBER%: a gRPC request's status
	 * (hdr: enum ism_alog_grpc) */
	ISM_ALOG_F_GRPC_STATUS,
	ISM_ALOG_F_METER, /* a byte meter's count (hdr: enum ism_meter) */
	ISM_ALOG_F_ENV,	  /* %ENVIRONMENT(NAME):N%: lit, the variable's value at load; "": absent */
	/* %DOWNSTREAM_HANDSHAKE_DURATION%: ms from the client connection's accept
	 * to its TLS handshake's end */
	ISM_ALOG_F_HANDSHAKE,
	/* An operator the header values make too (hdr: enum ism_hval_kind): the
	 * client's TLS connection and certificate, the socket's peer, the
	 * upstream's address and port */
	ISM_ALOG_F_HVAL,
	ISM_ALOG_F_KEY, /* ISM_ALOG_DICT: a member's key (lit), its ops follow */
	/* ISM_ALOG_DICT: an item of a list (its ops follow); "{" or "[" (lit)
	 * opening a nested value, the members or items of which follow; "}" or
	 * "]" (lit) ending it; a value written as it is (lit: a number, true,
	 * false, null) */
	ISM_ALOG_F_ITEM,
	ISM_ALOG_F_OPEN,
	ISM_ALOG_F_CLOSE,
	ISM_ALOG_F_JSON,
	ISM_ALOG_F_COUNT,
};

/* Envoy's byte meters of a stream, on the client's side (down) and the
 * upstream's (up, all attempts together): the bytes of its heads (HEADERS
 * frames in HTTP/2), and all its bytes as framed (wire: heads, bodies with
 * their chunk or frame framing, the stream's other frames; not TLS's). */
enum ism_meter {
	ISM_M_DOWN_HEAD_IN, /* %DOWNSTREAM_HEADER_BYTES_RECEIVED% */
	ISM_M_DOWN_HEAD_OUT,
	ISM_M_DOWN_WIRE_IN, /* %DOWNSTREAM_WIRE_BYTES_RECEIVED% */
	ISM_M_DOWN_WIRE_OUT,
	ISM_M_UP_HEAD_IN, /* %UPSTREAM_HEADER_BYTES_RECEIVED% */
	ISM_M_UP_HEAD_OUT,
	ISM_M_UP_WIRE_IN, /* %UPSTREAM_WIRE_BYTES_RECEIVED% */
	ISM_M_UP_WIRE_OUT,
	ISM_M_COUNT,
};

/* The %RESP()% and %TRAILER()% operators one format may hold. */
#define ISM_ALOG_RESP_MAX 8

struct ism_alog_op {
	uint8_t field; /* enum ism_alog_field */
	/* ISM_ALOG_F_REQ: enum ism_alog_hdr, or a named slot (below ISM_ALOG_H_ALL),
	 * or ISM_ALOG_H_NONE; ISM_ALOG_F_RESP, _TRAILER: its slot among the
	 * format's RESP and TRAILER operators (< ISM_ALOG_RESP_MAX); ISM_ALOG_F_HVAL: enum
	 * ism_hval_kind; ISM_ALOG_F_METER: enum ism_meter */
	uint8_t hdr;
	uint8_t alt;	  /* ISM_ALOG_F_REQ: shown when hdr is absent; ISM_ALOG_H_NONE: none */
	uint16_t max_len; /* ISM_ALOG_F_REQ, _RESP, _TRAILER: at most this many bytes of the value;
			     0: all */
	/* ISM_ALOG_F_LITERAL: the text; ISM_ALOG_F_KEY: the key, as written;
	 * ISM_ALOG_F_RESP, _TRAILER, and ISM_ALOG_F_REQ with a named slot in hdr: the
	 * field's name */
	struct ism_str lit;
	struct ism_str alt_name; /* the same for alt; empty: none */
};

struct ism_alog_conf {
	uint8_t dest;	     /* enum ism_alog_dest */
	uint8_t format;	     /* enum ism_alog_format */
	struct ism_str path; /* ISM_ALOG_FILE */
	/* ISM_ALOG_SYSLOG: the socket (AF_UNIX: datagram; AF_INET/AF_INET6: UDP), the
	 * address as written, the facility number (local0 = 16) and the tag. */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct ism_str address;
	uint8_t facility;
	struct ism_str tag;
	uint32_t n_ops; /* ISM_ALOG_TEXT, _DICT: the template, parsed once at load */
	const struct ism_alog_op *ops;
	/* A Telemetry's filter (conf/cel.h, compiled against conf/logattrs.h):
	 * a line is written only when it is true; NULL: every line. */
	const void *filter;
	uint32_t filter_size;
	/* the filter reads request.headers, or one of the request's values the
	 * access log cuts at 1 KiB (path, host, method, referer, user agent):
	 * each request's fields are kept for it, whole */
	uint8_t filter_headers;
};

/* --- AuthorizationPolicy: Envoy's RBAC filters, as istiod writes them --- */

/* What a condition of a rule looks at. */
enum ism_az_attr {
	ISM_AZ_SRC_IP,	  /* ipBlocks, source.ip: the connection's peer (a PROXY header's) */
	ISM_AZ_REMOTE_IP, /* remoteIpBlocks, remote.ip: X-Forwarded-For's client
			     (numTrustedProxies), else the peer */
	ISM_AZ_DEST_IP,	  /* destination.ip: the address the client connected to */
	ISM_AZ_DEST_PORT, /* ports, destination.port: the port it connected to */
	ISM_AZ_PEER_ID,	  /* principals, namespaces, serviceAccounts, trustDomains,
			     source.*: the client certificate's URI SANs (then DNS
			     SANs, then subject); none without a certificate */
	ISM_AZ_SNI,	  /* connection.sni: the ClientHello's server name ("" none) */
	ISM_AZ_HOST,	  /* hosts: the Host (:authority) as sent */
	ISM_AZ_METHOD,	  /* methods */
	ISM_AZ_PATH,	  /* paths: the normalised path, without the query */
	ISM_AZ_HEADER,	  /* request.headers[name]: its values joined with "," */
	/* requestPrincipals, request.auth.principal: the request's verified
	 * JWT (RequestAuthentication), its iss matched by m and its sub by
	 * sub; none without a token */
	ISM_AZ_REQ_PRINCIPAL,
	/* request.auth.claims[a][b], .audiences (aud), .presenter (azp): the
	 * claim at name (its names joined with ']'), a string or one string
	 * of a list; a provider's spaceDelimitedClaims split at spaces */
	ISM_AZ_CLAIM,
};

/* The longest claim path of an ISM_AZ_CLAIM condition. */
#define ISM_AZ_CLAIM_NAME_MAX 480

/* One value of a condition: m for the string attributes (kind
 * ISM_SM_PRESENT: the field is there), net for the addresses, port. */
struct ism_az_val {
	struct ism_strmatch m;
	struct ism_strmatch sub; /* ISM_AZ_REQ_PRINCIPAL: the subject's */
	struct ism_subnet net;
	uint32_t port;
};

/* One key of a rule: one of its values holds, or with negate none does. */
struct ism_az_cond {
	uint8_t attr;	     /* enum ism_az_attr */
	uint8_t negate;	     /* notValues, not* fields */
	struct ism_str name; /* ISM_AZ_HEADER: the field's name, lowercased */
	uint32_t n;
	const struct ism_az_val *v;
};

/* Conditions that all hold (Envoy's and_rules); none: every request. */
struct ism_az_and {
	uint32_t n;
	const struct ism_az_cond *c;
};

/* Envoy's response code details of a denial begin so; then the rule's name
 * ("ns[N]-policy[P]-rule[I]", or "none") and "]". */
#define ISM_AZ_DETAILS "rbac_access_denied_matched_policy["

/* One rule of a policy, Envoy's RBAC policy "ns[N]-policy[P]-rule[I]": it
 * matches when one of its permissions (to and the when keys of the
 * request's destination) and one of its principals (from and the other when
 * keys) hold. No permission: it never matches (an ALLOW policy without
 * rules). */
struct ism_az_policy {
	struct ism_str details; /* ISM_AZ_DETAILS "<name>]" */
	uint32_t n_perm, n_prin;
	const struct ism_az_and *perm, *prin;
};

/* One RBAC filter: the rules of the policies of one action, by name (the
 * first that matches names the denial, as Envoy's engine). on: a policy of the
 * action applies, even when none of its rules is left here (an ALLOW filter
 * without a rule denies everything). */
struct ism_az_rbac {
	uint8_t on;
	uint32_t n;
	const struct ism_az_policy *p;
};

/* The appliance's AuthorizationPolicies (conf/authz.c): DENY first, then
 * ALLOW, for HTTP requests and, built apart as istiod builds them (no HTTP
 * attribute there), for the connections of TCP and TLS passthrough ports. */
struct ism_authz {
	struct ism_az_rbac deny, allow;
	struct ism_az_rbac tcp_deny, tcp_allow;
	/* CUSTOM: the requests the rules match are checked by xa (HTTP only) */
	struct ism_az_rbac custom;
	const struct ism_extauthz *xa;
};

/* Field names of an external authorizer's lists: istiod's patterns (exact,
 * "x-*" a prefix, "*-id" a suffix) as string matches without regard to
 * case. */
struct ism_xa_pats {
	uint32_t n;
	const struct ism_strmatch *m;
};

struct ism_xa_field {
	struct ism_str name; /* lowercase */
	struct ism_str value;
};

/* The external authorizer of the CUSTOM policies (Istio's envoyExtAuthzHttp,
 * Envoy's ext_authz HTTP service; conf/extauthz.c, worker/extauthz.c). */
struct ism_extauthz {
	uint32_t cluster; /* the checks go to this cluster */
	uint32_t timeout_ms;
	uint16_t status_on_error;
	uint8_t fail_open;
	uint8_t deny_all; /* headersToDownstreamOnDeny unset: all fields but host */
	uint8_t grpc;	  /* envoyExtAuthzGrpc: Authorization/Check over HTTP/2 */
	struct ism_str name;
	struct ism_str path_prefix;
	/* includeRequestBodyInCheck: the body is read before the check, which
	 * carries body_max bytes of it at most; a longer one is answered 413
	 * unless body_partial; body_bytes: the gRPC check's raw_body, no body in
	 * an HTTP one. body_max 0: the body is not in the check. */
	uint32_t body_max;
	uint8_t body_partial;
	uint8_t body_bytes;
	struct ism_xa_pats req;	       /* request fields the check carries */
	struct ism_xa_pats up;	       /* an allowing answer's fields that go upstream */
	struct ism_xa_pats down_allow; /* and to the client */
	struct ism_xa_pats down_deny;  /* a denying answer's fields the client gets */
	uint32_t n_add;		       /* includeAdditionalHeadersInCheck */
	const struct ism_xa_field *add;
};

/* --- RequestAuthentication: Envoy's jwt_authn filter, as istiod writes it --- */

/* Where a provider's token is looked for. */
enum ism_jwt_where {
	ISM_JWT_HEADER, /* a request field: its value after prefix */
	ISM_JWT_PARAM,	/* a query parameter */
	ISM_JWT_COOKIE, /* a cookie */
};

struct ism_jwt_loc {
	uint8_t where;	       /* enum ism_jwt_where */
	struct ism_str name;   /* ISM_JWT_HEADER: lowercased */
	struct ism_str prefix; /* ISM_JWT_HEADER: the value's prefix ("Bearer "); may be empty */
};

/* outputClaimToHeaders: claim (names joined with '.') into field header. */
struct ism_jwt_claim_hdr {
	struct ism_str claim;
	struct ism_str header; /* lowercased */
};

#define ISM_JWT_AUD_MAX 64

/* One jwtRule of the RequestAuthentications that apply (Envoy's provider
 * "origins-<i>", by issuer as istiod sorts them). */
struct ism_jwt_provider {
	struct ism_str issuer; /* empty: any (a rule with only jwksUri) */
	uint32_t n_aud;	       /* audiences (at most ISM_JWT_AUD_MAX); 0: any */
	const struct ism_str *aud;
	/* The JSON Web Key Set, as given or fetched: each worker parses it
	 * (lib/jose.h) once per generation. Empty: it could not be fetched,
	 * every token fails (istiod's fail-closed key set). */
	struct ism_str jwks;
	uint32_t n_loc; /* where tokens are: fromHeaders, fromParams, fromCookies, or
			   Envoy's defaults (Authorization "Bearer ", access_token) */
	const struct ism_jwt_loc *loc;
	uint8_t forward;	       /* forwardOriginalToken: the token's field stays */
	struct ism_str payload_header; /* outputPayloadToHeader (lowercased); empty: none */
	uint32_t n_claim_hdrs;
	const struct ism_jwt_claim_hdr *claim_hdrs;
	/* claims whose string value is a list of words for the policies
	 * (spaceDelimitedClaims, with scope and permission) */
	uint32_t n_spaced;
	const struct ism_str *spaced;
};

struct ism_jwt_authn {
	uint32_t n; /* 0: no RequestAuthentication applies */
	const struct ism_jwt_provider *p;
	uint8_t routes; /* a route matches claims: found again once a token is verified */
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
	struct ism_str pid_file; /* empty: none */
	struct ism_alog_conf access_log;
	struct sockaddr_storage admin_addr; /* admin listener; ss_family 0 = none */
	socklen_t admin_addrlen;
	struct ism_limits limits;
	struct ism_timeouts timeouts;
	uint8_t path_norm;	  /* enum ism_pathnorm_mode (worker/pathnorm.h) */
	uint32_t n_regexes;	  /* regex string matches, numbered by ism_strmatch.re_idx */
	uint32_t trusted_proxies; /* gatewayTopology.numTrustedProxies: X-Forwarded-For hops */
	uint8_t fcc;		  /* enum ism_fcc: gatewayTopology.forwardClientCertDetails */
	uint8_t preserve_rid;	  /* preserveExternalRequestId: the client's X-Request-Id goes on */
	/* proxyHeaders.server (at most ISM_SERVER_MAX bytes): the Server field of every response,
	 * the upstream's replaced (Envoy's OVERWRITE, as Istio sets it); len 0 (disabled): the
	 * upstream's passes, answers made here have none. */
	struct ism_str server;
	/* not proxyHeaders.envoyDebugHeaders.disabled: x-envoy-upstream-service-time
	 * on the responses of upstreams (Envoy's router, as Istio leaves it) */
	uint8_t log_level; /* spec.logging.level: enum ism_log_level (lib/log.h) */
	uint8_t debug_headers;
	/* not proxyHeaders.attemptCount.disabled: x-envoy-attempt-count on each
	 * attempt's request (Envoy's include_request_attempt_count, as Istio sets it) */
	uint8_t attempt_count;
	uint8_t request_id; /* not proxyHeaders.requestId.disabled: X-Request-Id made */
	uint8_t xf_port;    /* proxyHeaders.xForwardedPort.enabled: X-Forwarded-Port set */
	uint8_t xf_host;    /* proxyHeaders.xForwardedHost.enabled: the Host a rewrite
			       replaced joins X-Forwarded-Host */
	/* What an HTTP/1.1 head from an upstream gets of the two, written at
	 * compile: "server: V\r\n" (own_h1_server bytes; 0 when off), then
	 * "x-envoy-upstream-service-time: " when debug_headers (the worker
	 * writes the number and the line end). */
	struct ism_str own_h1;
	uint32_t own_h1_server;
#define ISM_SVC_TIME_NAME  "x-envoy-upstream-service-time"
#define ISM_SVC_TIME_FIELD ISM_SVC_TIME_NAME ": " /* own_h1's end */
	struct ism_tls_conf mesh; /* the mesh identity (ISTIO_MUTUAL, PeerAuthentication) */
	struct ism_authz authz;
	struct ism_jwt_authn jwt;
	uint32_t n_listeners;
	const struct ism_listener *listeners;
	uint32_t n_clusters;
	const struct ism_cluster *clusters;
	/* The compiled table's bytes in its arena, and the arena's size. */
	uint64_t arena_used, arena_size;
};

#endif
