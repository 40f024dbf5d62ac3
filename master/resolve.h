/* SPDX-License-Identifier: Apache-2.0 */
/* Private to master/: the names of DNS ServiceEntries, resolved on the
 * master's loop with c-ares (DESIGN.md, "Endpoints that move").
 *
 * Each host name the running model resolves (an endpoint address of a
 * `resolution: DNS` or `DNS_ROUND_ROBIN` ServiceEntry, or its hosts when it has
 * no endpoints) has an answer: its A and AAAA addresses, sorted, kept for the
 * answer's smallest TTL clamped between spec.dns.minRefresh and maxRefresh,
 * then asked again. A failed query (timeout, SERVFAIL, NXDOMAIN, no address)
 * keeps the last good answer, retried every minRefresh. A changed answer is
 * logged, counted and recorded as an event, and ism_resolver_changed says so
 * until the master compiles a generation with it.
 *
 * Nothing here blocks but ism_resolver_settle, which the start uses before the
 * first generation. Master only, on the loop. */
#ifndef ISM_MASTER_RESOLVE_H
#define ISM_MASTER_RESOLVE_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "conf/defaults.h"
#include "master/reply.h"

/* Descriptors the loop polls for the resolver at most (c-ares' own limit). */
#define ISM_RESOLVER_POLLFDS 16
/* Names resolved at most, and addresses kept per answer. */
#define ISM_RESOLVER_MAX_NAMES ISM_DNS_MAX_NAMES
#define ISM_RESOLVER_MAX_ADDRS 64

struct ism_resolver;
struct ism_events;

/* What a name's answer is, for `show dns`, the metrics and the log. */
enum ism_dns_state {
	ISM_DNS_PENDING = 0, /* never answered; its first query is due or running */
	ISM_DNS_RESOLVED,    /* its last query answered */
	ISM_DNS_STALE,	     /* its last query failed: the last good answer serves */
	ISM_DNS_FAILED,	     /* never answered, its queries fail: no endpoint */
	ISM_DNS_N_STATES,
};

const char *ism_dns_state_name(enum ism_dns_state s);

/* The refresh delay of an answer: its TTL in seconds clamped to [min_ms,
 * max_ms]. */
uint64_t ism_resolver_refresh_ms(uint32_t ttl_s, uint32_t min_ms, uint32_t max_ms);

/* 0 and *out, or -errno. events (may be NULL) receives the changes. */
int ism_resolver_create(struct ism_events *events, struct ism_resolver **out);
void ism_resolver_destroy(struct ism_resolver *r);

/* Applies spec.dns: a new channel when servers or timeout change (queries
 * running then are asked again). 0 or -errno (logged; the old channel stays). */
int ism_resolver_configure(struct ism_resolver *r, const struct ism_conf_dns *dns);
/* Adds the names conf resolves (new ones are asked at the next run), and when
 * retain, forgets those it does not (after a publish). 0 or -errno. */
int ism_resolver_names(struct ism_resolver *r, const struct ism_conf *conf, bool retain);

/* Fills up to max pollfds (ISM_RESOLVER_POLLFDS is enough); returns how many. */
int ism_resolver_pollfds(struct ism_resolver *r, struct pollfd *pfd, int max);
/* The milliseconds until the resolver needs a run (a refresh or a c-ares
 * timeout), at most cap. */
int ism_resolver_timeout_ms(struct ism_resolver *r, uint64_t now, int cap);
/* Reads what the descriptors of pfd[0..n) say, handles timeouts, starts the
 * queries that are due. */
void ism_resolver_run(struct ism_resolver *r, const struct pollfd *pfd, int n, uint64_t now);
/* Runs until every name has had a first answer or failed, or timeout_ms
 * passed (the start, before anything serves). */
void ism_resolver_settle(struct ism_resolver *r, uint32_t timeout_ms);
/* Whether every name has had a first answer or failed (none is
 * ISM_DNS_PENDING): a reload's new names, warming, do not hold it up any more. */
bool ism_resolver_settled(const struct ism_resolver *r);
/* Logs each name still pending after timeout_ms: "...; <doing> without it". */
void ism_resolver_warn_pending(const struct ism_resolver *r, uint32_t timeout_ms,
			       const char *doing);

/* Whether an answer changed since the last ism_resolver_compiled. */
bool ism_resolver_changed(const struct ism_resolver *r);
/* A generation is compiled with the current answers. */
void ism_resolver_compiled(struct ism_resolver *r);
/* The compiler's lookup (ism_conf_dns_cb, ctx the resolver). */
size_t ism_resolver_lookup(void *ctx, const char *name, bool logical,
			   const struct ism_dns_addr **addrs, uint64_t *resolved_ms);

struct ares_addrinfo;
/* The addresses of an answer into out (ISM_RESOLVER_MAX_ADDRS), sorted,
 * without repeats: the lowest when there are more, so a server that rotates
 * a long answer gives the same set each time; of the families fam takes (for
 * AUTO and V4_PREFERRED, the other family's only where the answer has none of
 * the first). The smallest TTL of those in *ttl; in *first (NULL: not
 * wanted), the first of those kept in the server's order, when there is one. */
size_t ism_resolver_answer_addrs(const struct ares_addrinfo *ai, enum ism_dns_family fam,
				 struct ism_dns_addr *out, uint32_t *ttl,
				 struct ism_dns_addr *first);

/* A binary upgrade: name's answer as the old master had it (state
 * RESOLVED or STALE; addresses as text), serving from the
 * first load on and asked again at once, as a reload keeps an answer. 0, -EINVAL (an address that
 * is none, a state without an answer), or -errno. */
int ism_resolver_seed(struct ism_resolver *r, const char *name, enum ism_dns_state state,
		      const char *const *addrs, size_t n, uint64_t resolved_ms, uint32_t ttl_s);
/* And the address its DNS_ROUND_ROBIN endpoint connected to (one of the
 * answer's), kept as a later answer keeps it; without it (an older binary
 * handed over) the next answer's first in the server's order is taken. 0,
 * -ENOENT (no such name seeded), -EINVAL. */
int ism_resolver_seed_pick(struct ism_resolver *r, const char *name, const char *addr);

/* Asks name again now (every name when name is "*"). 0, or -ENOENT when
 * no ServiceEntry resolves it. */
int ism_resolver_force(struct ism_resolver *r, const char *name);

/* One name, for `show dns`; valid until the resolver next runs. */
struct ism_dns_view {
	const char *name;
	bool used; /* false: no ServiceEntry names it any more, forgotten soon */
	enum ism_dns_state state;
	size_t n_addrs;
	const struct ism_dns_addr *addrs; /* the answer serving, sorted */
	const struct ism_dns_addr *pick;  /* a DNS_ROUND_ROBIN endpoint's address, or NULL */
	uint64_t resolved_ms;		  /* wall ms of that answer; 0: none */
	uint64_t next_in_ms;		  /* until the next query; 0: due or running */
	uint32_t ttl_s;			  /* of that answer */
	uint64_t failures;		  /* consecutive failed queries */
	const char *error;		  /* of the last failed query; "" when it answered */
};
/* The i-th name (0..): true and *out, false past the last. */
bool ism_resolver_view(const struct ism_resolver *r, size_t i, uint64_t now,
		       struct ism_dns_view *out);
/* The isthmus_dns_* metric families. */
void ism_resolver_metrics(const struct ism_resolver *r, struct ism_reply *out);

#endif
