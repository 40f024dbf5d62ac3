/* SPDX-License-Identifier: Apache-2.0 */
/* The shared region's layout: types only, shared by the master and every worker.
 *
 * Writers: every field has one kind of writer, named beside it. Cross-process
 * writes are C11 atomics; nothing here is ever locked. */
#ifndef ISM_SHM_SHM_T_H
#define ISM_SHM_SHM_T_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define ISM_SHM_MAGIC	       0x49534d52u /* "ISMR" */
#define ISM_SHM_LAYOUT_VERSION 13u

#define ISM_MAX_WORKERS 64
/* Worker slots: a reload that replaces the workers starts the new set beside
 * the old one, still draining, so one replace at the most workers fits. */
#define ISM_WORKER_SLOTS  (2 * ISM_MAX_WORKERS)
#define ISM_MAX_ENDPOINTS 8192
/* Outlier-detection slots: one per endpoint of each cluster (an endpoint in a
 * service's default cluster and in two of its subsets takes three). */
#define ISM_MAX_OD_SLOTS (4 * ISM_MAX_ENDPOINTS)
#define ISM_GEN_SLOTS	 16
/* An endpoint's key "<service host>|<address>:<port>" with its NUL: a host
 * of 253 bytes made longer by a short name's namespace suffix (up to 335),
 * '|', and a DNS_ROUND_ROBIN name with its port (259). 5 MiB of keys. */
#define ISM_EP_KEY_MAX 640
#define ISM_CACHELINE  64
/* How many times a reader of a sequence counter (odd while its writer
 * writes) reads again before it gives up: a writer takes a few hundred
 * nanoseconds, a counter a worker left odd would keep readers for ever. */
#define ISM_SEQ_TRIES 4096

/* Request-duration histogram: upper bounds in milliseconds, the last one +Inf. */
#define ISM_LAT_BUCKETS 14
#define ISM_LAT_BOUNDS_MS                                                                          \
	{                                                                                          \
		1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, UINT32_MAX            \
	}

enum ism_ep_health {
	ISM_EP_HEALTHY = 0,   /* no check configured, or checks pass */
	ISM_EP_UNHEALTHY = 1, /* active checks fail, or not passed yet */
};

/* What the operator set (README "Control socket"): drain and maint take no new
 * requests; maint also suspends the endpoint's active health checks. */
enum ism_ep_admin {
	ISM_EP_ADMIN_READY = 0,
	ISM_EP_ADMIN_DRAIN = 1,
	ISM_EP_ADMIN_MAINT = 2,
};

/* ism_ep_state.weight: the control socket's weight, ISM_EP_WEIGHT_SET | w, w
 * from 0 (no new requests, as HAProxy's weight 0) to ISM_EP_WEIGHT_MAX; 0: none
 * set, the configured weight applies. */
#define ISM_EP_WEIGHT_SET (1u << 31)
#define ISM_EP_WEIGHT_MAX 1000000u

/* One upstream endpoint's live state, stable id across generations. */
struct ism_ep_state {
	_Atomic uint32_t in_use;      /* master: slot allocated */
	_Atomic uint32_t health;      /* master (health checker): enum ism_ep_health */
	_Atomic uint32_t admin;	      /* master (control socket): enum ism_ep_admin */
	_Atomic uint32_t inflight;    /* workers: requests in flight, all workers */
	_Atomic uint64_t requests;    /* workers: requests sent */
	_Atomic uint64_t failures;    /* workers: connect failures, resets, 5xx from the endpoint */
	_Atomic uint64_t hc_checks;   /* master: checks run */
	_Atomic uint64_t hc_failures; /* master: checks failed */
	_Atomic uint64_t health_changed_ms; /* master: wall time of the last health change */
	/* Clusters whose outlier detection has the endpoint ejected now (any
	 * process, with the ejection in its ism_od_state), and ejections in
	 * every cluster, ever. */
	_Atomic uint32_t ejected_in;
	_Atomic uint64_t ejections;
	_Atomic uint32_t connections; /* workers: upstream connections open, all workers */
	_Atomic uint32_t weight;      /* master (control socket): ISM_EP_WEIGHT_SET | w, or 0 */
	/* master: bumped each time the slot is given to an endpoint (a swept
	 * slot is reused): what a worker holds of the slot's earlier endpoint
	 * (pooled connections, in-flight counts) is not this one's */
	_Atomic uint32_t incarnation;
	/* master: monotonic ms when the endpoint last became healthy, or joined
	 * healthy (Envoy's last_hc_pass_time): a cluster with a warmup scales
	 * its weight up from then (worker/balancer.c); 0: never healthy */
	_Atomic uint64_t warm_since_ms;
} __attribute__((aligned(ISM_CACHELINE)));
_Static_assert(sizeof(struct ism_ep_state) == 2 * ISM_CACHELINE,
	       "endpoint state is two cache lines");

/* One endpoint's outlier detection in one cluster (Envoy: each cluster's
 * detector has its own state per host, so an endpoint ejected through one
 * subset still serves another), stable across generations like the endpoint
 * slots. Counters written by workers with atomics, ejection by whichever
 * process decides it (a CAS on ejected, health/outlier.c). */
struct ism_od_state {
	_Atomic uint32_t in_use;       /* master: slot allocated */
	uint32_t ep;		       /* master, before in_use: the endpoint's slot */
	_Atomic uint32_t cons_5xx;     /* workers */
	_Atomic uint32_t cons_gateway; /* workers */
	_Atomic uint32_t cons_local;   /* workers */
	_Atomic uint32_t ejected;    /* 0 no; 2 being ejected (CAS 0->2 by the ejecting process); 1
					ejected; master returns (1->0) */
	_Atomic uint32_t eject_mult; /* ejection-time multiplier (Envoy's backoff k) */
	uint32_t incarnation;	     /* master: bumped each time the slot is given to a key */
	_Atomic uint64_t ejected_until_ms; /* monotonic; set with ejected */
	_Atomic uint64_t ejected_at_ms;	   /* monotonic */
	_Atomic uint64_t returned_at_ms;   /* master: last return from ejection */
	_Atomic uint64_t ejections;	   /* total ejections in this cluster */
} __attribute__((aligned(ISM_CACHELINE)));
_Static_assert(sizeof(struct ism_od_state) == ISM_CACHELINE, "outlier state is one cache line");

/* Why a request's mirrored copy was not sent, or went wrong (worker/mirror.c). */
enum ism_mirror_drop {
	ISM_MIRROR_DROP_IN_FLIGHT = 0, /* limits.mirrorMaxInFlight copies already in flight */
	ISM_MIRROR_DROP_BODY,	       /* the body is over limits.mirrorMaxBodyBytes */
	ISM_MIRROR_DROP_NO_HEALTHY,    /* no healthy endpoint in the mirror cluster */
	ISM_MIRROR_DROP_FAILED,	       /* connect failure, reset, timeout, request not complete */
	ISM_MIRROR_DROP_N,
};

/* What an external authorizer's check came to (Envoy's ext_authz stats). */
enum ism_xa_result {
	ISM_XA_R_OK = 0,    /* allowed (200) */
	ISM_XA_R_DENIED,    /* denied: its answer went to the client */
	ISM_XA_R_ERROR,	    /* 5xx, failure, timeout: statusOnError went to the client */
	ISM_XA_R_FAIL_OPEN, /* an error, and failOpen let the request go on */
	ISM_XA_R_N,
};

/* Counters one worker writes (relaxed atomics, single writer); the master sums them.
 * The worker adds with ism_wstat_add, not atomic_fetch_add. */
struct ism_worker_stats {
	_Atomic uint64_t conn_accepted;
	_Atomic uint64_t conn_active;
	_Atomic uint64_t conn_rejected; /* over max_connections */
	_Atomic uint64_t requests;
	_Atomic uint64_t resp_class[6]; /* [1..5] = 1xx..5xx */
	_Atomic uint64_t bytes_in;	/* from clients */
	_Atomic uint64_t bytes_out;	/* to clients */
	_Atomic uint64_t upstream_connects;
	_Atomic uint64_t upstream_connect_fail;
	_Atomic uint64_t upstream_reused; /* requests sent on a pooled connection */
	_Atomic uint64_t
	    latency_bucket[ISM_LAT_BUCKETS]; /* exchanges by duration, see ISM_LAT_BOUNDS_MS */
	_Atomic uint64_t latency_sum_ms;
	_Atomic uint64_t tls_handshakes;	/* client handshakes completed */
	_Atomic uint64_t tls_resumed;		/* of which resumed sessions */
	_Atomic uint64_t tls_handshake_fail;	/* client or upstream handshakes failed */
	_Atomic uint64_t proxy_protocol_errors; /* connections closed for a bad PROXY header */
	_Atomic uint64_t access_log_dropped; /* lines dropped: buffers full, write or send failed */
	_Atomic uint64_t accept_errors;	     /* accepts failed for lack of descriptors or memory */
	_Atomic uint64_t accept_kicks;	     /* accepts added at the tick for a queued connection */
	_Atomic uint64_t
	    send_parked; /* sends the peer could not take at once, moved to private memory */
	_Atomic uint64_t recv_buffer_waits; /* receives that waited for a free ring buffer */
	_Atomic uint64_t regex_limit; /* requests answered 500: a route regex hit its match limit */
	_Atomic uint64_t mirror_sent; /* mirrored copies that went to a mirror's endpoint */
	_Atomic uint64_t mirror_resp_class[6];		    /* their responses, [1..5] = 1xx..5xx */
	_Atomic uint64_t mirror_dropped[ISM_MIRROR_DROP_N]; /* enum ism_mirror_drop */
	/* tunnels (worker/tunnel.c): WebSocket and other upgrades, TCP and TLS
	 * passthrough routes */
	_Atomic uint64_t tunnels_active;
	_Atomic uint64_t tunnels_total;	   /* opened: both sides connected */
	_Atomic uint64_t tunnel_bytes_in;  /* carried from clients to upstreams */
	_Atomic uint64_t tunnel_bytes_out; /* carried from upstreams to clients */
	_Atomic uint64_t tunnel_ms;	   /* how long the closed ones lasted, summed */
	/* TCP and TLS-passthrough connections closed without a tunnel: no SNI, no
	 * route, no healthy upstream, connect failures, maxConnections */
	_Atomic uint64_t tunnels_refused;
	/* requests (403) and TCP connections (closed) an AuthorizationPolicy
	 * denied, Envoy's RBAC filters' "denied" */
	_Atomic uint64_t authz_denied;
	/* requests (401, 403) whose JWT a RequestAuthentication's provider
	 * refused, Envoy's jwt_authn filter's "denied" */
	_Atomic uint64_t jwt_denied;
	/* checks of a CUSTOM policy's provider (worker/extauthz.c), by result */
	_Atomic uint64_t ext_authz[ISM_XA_R_N];
	/* HTTP/2 client connections (worker/h2.c) and the heap they hold:
	 * libnghttp2's blocks, their output buffers and isthmus's structs (less
	 * the pages an idle one gave back), not their streams' body buffers */
	_Atomic uint64_t h2_sessions;
	_Atomic uint64_t h2_heap_bytes;
	/* streams' slots in use: a request's from its head to its end, and a
	 * stream given up until its timer (a fault's delay, a back-off) is
	 * removed */
	_Atomic uint64_t streams;
};

/* What one worker holds of an endpoint's shared counts, in its slot, so that
 * the master gives back the share of a worker that died without doing so
 * itself (a crash, a kill): requests in flight (eps[].inflight) and
 * connections (eps[].connections) of the endpoint slot's incarnation inc.
 * Written by that worker only; read by the master once it is gone. */
struct ism_ep_held {
	uint32_t inc;
	uint32_t inflight;
	uint32_t conns;
};

struct ism_worker_slot {
	_Atomic int32_t pid;	/* master at fork; 0 = free */
	_Atomic uint32_t index; /* master */
	_Atomic uint64_t gen;	/* worker: generation in use (hazard); 0 = none */
	_Atomic uint64_t
	    gen_next; /* worker: generation being looked at before moving to it (hazard) */
	_Atomic uint64_t heartbeat_ms; /* worker: monotonic time of its last loop turn */
	_Atomic uint32_t draining;     /* worker: 1 once it stopped accepting */
	struct ism_worker_stats stats;
	/* worker: its streams holding places in clusters' counted capacity
	 * (waiting for a connection, a retry, a request under http2MaxRequests);
	 * the master reads it once the worker is gone */
	uint32_t cluster_holds;
	struct ism_ep_held held[ISM_MAX_ENDPOINTS]; /* worker: its share, by endpoint */
} __attribute__((aligned(ISM_CACHELINE)));

/* One generation slot as the workers see it: a fixed arena of the published
 * part (struct ism_shm_pub) holding one compiled ism_table. */
struct ism_gen_slot {
	_Atomic uint64_t gen; /* master: generation held; 0 = free */
	void *table;	      /* master: struct ism_table * inside the arena */
} __attribute__((aligned(ISM_CACHELINE)));

/* TLS session-ticket keys, shared by every worker so that a session resumes on
 * whichever worker the connection lands. keys[0] encrypts new tickets; all
 * three decrypt (a ticket made before a rotation still resumes). The master
 * rotates them under the sequence counter (odd while it writes). */
#define ISM_TICKET_KEYS 3
struct ism_ticket_key {
	uint8_t name[16];
	uint8_t aes[32];
	uint8_t hmac[32];
};

struct ism_ticket_keys {
	_Atomic uint32_t seq;
	struct ism_ticket_key keys[ISM_TICKET_KEYS];
	uint64_t rotated_ms; /* master, monotonic */
};

/* The published part: what only the master writes and every worker reads
 * through a mapping it cannot make writable (shm/shm.h), followed by the
 * generation slots' arenas. The master never takes a pointer, a count or an
 * index from what a worker can write (struct ism_shm_hdr): a worker parses
 * what the network sends and runs as spec.user, the master as root. */
struct ism_shm_pub {
	uint32_t magic;
	uint32_t layout_version;
	/* master: (generation << 8) | slot of the published table; 0 = none yet. */
	_Atomic uint64_t current;
	struct ism_gen_slot gens[ISM_GEN_SLOTS];
	char ep_keys[ISM_MAX_ENDPOINTS][ISM_EP_KEY_MAX]; /* master: "<service>|<address>:<port>" */
};

/* The part every process writes: counters, endpoint and outlier state, the
 * workers' slots, followed by each generation slot's mutable arena (the
 * struct ism_cluster_dyn and counters its table points to). */
struct ism_shm_hdr {
	uint32_t magic;
	uint32_t layout_version;
	_Atomic uint64_t started_ms;	  /* master: wall time of start */
	_Atomic uint32_t stopping;	  /* master: 1 once a graceful stop began */
	_Atomic uint32_t n_workers;	  /* master */
	_Atomic uint64_t reloads;	  /* master: successful reloads */
	_Atomic uint64_t reload_failures; /* master */
	/* Any process: bumped on every change of endpoint health, ejection or
	 * admin state; the master recomputes priority loads when it moves. */
	_Atomic uint64_t health_epoch;
	struct ism_ticket_keys tickets;
	struct ism_worker_slot workers[ISM_WORKER_SLOTS];
	struct ism_ep_state eps[ISM_MAX_ENDPOINTS];
	struct ism_od_state ods[ISM_MAX_OD_SLOTS];
};

#endif
