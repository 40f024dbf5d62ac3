/* SPDX-License-Identifier: Apache-2.0 */
/* Names resolved on the master's loop: see master/resolve.h. */
#include "master/resolve.h"

#include <arpa/inet.h>
#include <ares.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/addr.h"
#include "lib/log.h"
#include "lib/strmap.h"
#include "master/events.h"
#include "master/metrics.h"

_Static_assert(ISM_RESOLVER_POLLFDS == ARES_GETSOCK_MAXNUM, "c-ares' socket count");

/* Queries running at once at most: a file of many names does not open as many
 * sockets' worth of queries in one turn. */
#define MAX_IN_FLIGHT 256

/* What a query's outcome counts as (isthmus_dns_resolutions_total{result}). */
enum result {
	RES_OK = 0,
	RES_NXDOMAIN,
	RES_NODATA,
	RES_SERVFAIL,
	RES_TIMEOUT,
	RES_ERROR,
	RES_N,
};

static const char *const result_names[RES_N] = {"ok",	    "nxdomain", "nodata",
						"servfail", "timeout",	"error"};

struct dname {
	struct ism_resolver *r;
	char *name;
	enum ism_dns_state state;
	bool used;	  /* by the running model (or one being published) */
	bool in_flight;	  /* a query runs */
	bool forced;	  /* asked again while a query ran: ask once more */
	uint64_t next_ms; /* monotonic: the next query */
	size_t n;
	struct ism_dns_addr addrs[ISM_RESOLVER_MAX_ADDRS];
	/* A DNS_ROUND_ROBIN endpoint's address: the first of an answer in the
	 * server's order (as Envoy's logical DNS cluster takes it, so that
	 * gateways behind one rotating server spread), kept while later answers
	 * hold it (a new address alone at each refresh would publish a
	 * generation each time); valid when picked. */
	struct ism_dns_addr pick;
	bool picked;
	uint64_t resolved_ms; /* wall: the last answer */
	uint32_t ttl_s;
	uint64_t failures; /* consecutive */
	char error[64];
};

struct ism_resolver {
	ares_channel ch;
	bool ch_ok;
	struct ism_conf_dns conf; /* servers NULL: applied as csv below */
	char servers[512];	  /* the csv applied; "" for the system's */
	struct ism_events *events;
	struct dname **names;
	size_t n, cap;
	struct ism_strmap ix; /* name -> index in names */
	size_t in_flight;
	size_t ask_from; /* where the next turn starts looking for names due */
	bool changed;
	uint64_t results[RES_N];
	uint64_t changes; /* answers whose addresses differ from the one before */
	uint64_t jitter;  /* xorshift state of the retries' spread */
};

const char *ism_dns_state_name(enum ism_dns_state s)
{
	switch (s) {
	case ISM_DNS_PENDING:
		return "pending";
	case ISM_DNS_RESOLVED:
		return "resolved";
	case ISM_DNS_STALE:
		return "stale";
	case ISM_DNS_FAILED:
		return "failed";
	case ISM_DNS_N_STATES:
		break;
	}
	return "?";
}

uint64_t ism_resolver_refresh_ms(uint32_t ttl_s, uint32_t min_ms, uint32_t max_ms)
{
	uint64_t ms = (uint64_t)ttl_s * 1000;

	if (ms < min_ms)
		ms = min_ms;
	if (ms > max_ms)
		ms = max_ms;
	return ms;
}

static const struct ism_conf_dns defaults = {.min_refresh_ms = ISM_DEFAULT_DNS_MIN_REFRESH_MS,
					     .max_refresh_ms = ISM_DEFAULT_DNS_MAX_REFRESH_MS,
					     .timeout_ms = ISM_DEFAULT_DNS_TIMEOUT_MS};

/* The servers a channel asks (the system's: /etc/resolv.conf's). */
static size_t server_count(ares_channel ch)
{
	struct ares_addr_port_node *list = NULL;
	size_t n = 0;

	if (ares_get_servers_ports(ch, &list) != ARES_SUCCESS)
		return 1;
	for (const struct ares_addr_port_node *p = list; p != NULL; p = p->next)
		n++;
	ares_free_data(list);
	return n ? n : 1;
}

/* A channel for conf: c-ares doubles a try's timeout each round over the
 * servers, so two tries of timeout / (3 x servers) end within the timeout.
 * With servers of its own, the hosts file is not read (the answers are the
 * servers'); without, the system's servers are counted once it read them.
 * EDNS with 1,232-byte answers (the DNS flag day's size): an answer of some
 * 70 addresses fits over UDP, where 512 bytes (28) sent it over TCP, whose
 * failure c-ares takes for its server's and so fails every query pending on
 * it (c-ares drops EDNS for a server that answers FORMERR to it). */
static int channel_open(ares_channel *ch, const struct ism_conf_dns *c, const char *csv)
{
	struct ares_options o = {.flags = ARES_FLAG_EDNS, .ednspsz = 1232};
	int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS | ARES_OPT_EDNSPSZ;
	size_t ns = c->n_servers ? c->n_servers : 1, got;
	int rc;

	if (csv[0] != '\0') {
		o.lookups = (char *)"b";
		mask |= ARES_OPT_LOOKUPS;
	}
	for (;;) {
		o.timeout = (int)(c->timeout_ms / (3 * ns));
		if (o.timeout < 50)
			o.timeout = 50;
		o.tries = 2;
		rc = ares_init_options(ch, &o, mask);
		if (rc != ARES_SUCCESS) {
			ism_err("dns: cannot start a resolver: %s", ares_strerror(rc));
			return -ENOMEM;
		}
		if (csv[0] != '\0' || (got = server_count(*ch)) <= ns)
			break;
		ns = got;
		ares_destroy(*ch);
	}
	if (csv[0] != '\0' && (rc = ares_set_servers_ports_csv(*ch, csv)) != ARES_SUCCESS) {
		ism_err("dns: servers %s: %s", csv, ares_strerror(rc));
		ares_destroy(*ch);
		return -EINVAL;
	}
	return 0;
}

int ism_resolver_create(struct ism_events *events, struct ism_resolver **out)
{
	struct ism_resolver *r = calloc(1, sizeof(*r));
	int rc;

	*out = NULL;
	if (r == NULL)
		return -ENOMEM;
	rc = ares_library_init(ARES_LIB_INIT_ALL);
	if (rc != ARES_SUCCESS) {
		free(r);
		return -ENOMEM;
	}
	r->events = events;
	r->conf = defaults;
	r->jitter = ism_now_ms() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)r;
	ism_strmap_init(&r->ix, ism_strmap_seed());
	rc = channel_open(&r->ch, &r->conf, "");
	r->ch_ok = rc == 0;
	if (rc < 0) {
		ism_strmap_free(&r->ix);
		ares_library_cleanup();
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

static void names_free(struct ism_resolver *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->names[i]->name);
		free(r->names[i]);
	}
	free(r->names);
	r->names = NULL;
	r->n = r->cap = 0;
}

void ism_resolver_destroy(struct ism_resolver *r)
{
	if (r == NULL)
		return;
	if (r->ch_ok)
		ares_destroy(r->ch); /* the callbacks run: names are still there */
	names_free(r);
	ism_strmap_free(&r->ix);
	ares_library_cleanup();
	free(r);
}

int ism_resolver_configure(struct ism_resolver *r, const struct ism_conf_dns *dns)
{
	char csv[sizeof(r->servers)] = "";
	ares_channel ch;
	size_t len = 0;
	int rc;

	for (size_t i = 0; i < dns->n_servers; i++) {
		int w =
		    snprintf(csv + len, sizeof(csv) - len, "%s%s", i ? "," : "", dns->servers[i]);

		if (w < 0 || (size_t)w >= sizeof(csv) - len)
			return -ENAMETOOLONG;
		len += (size_t)w;
	}
	if (r->ch_ok && strcmp(csv, r->servers) == 0 && dns->timeout_ms == r->conf.timeout_ms &&
	    dns->family == r->conf.family) {
		uint64_t latest = ism_now_ms() + dns->max_refresh_ms;

		r->conf.min_refresh_ms = dns->min_refresh_ms;
		r->conf.max_refresh_ms = dns->max_refresh_ms;
		/* A lower maxRefresh holds for the names already waiting too. */
		for (size_t i = 0; i < r->n; i++)
			if (!r->names[i]->in_flight && r->names[i]->next_ms > latest)
				r->names[i]->next_ms = latest;
		return 0;
	}
	/* The new channel first: one that cannot be made leaves the old one
	 * serving. Queries of the old end with ARES_EDESTRUCTION and are asked
	 * again on the new one. */
	rc = channel_open(&ch, dns, csv);
	if (rc < 0)
		return rc;
	if (r->ch_ok)
		ares_destroy(r->ch);
	r->ch = ch;
	r->ch_ok = true;
	r->conf = *dns;
	r->conf.servers = NULL;
	snprintf(r->servers, sizeof(r->servers), "%s", csv);
	/* Other servers (or another family) may answer otherwise: every name
	 * is asked again. */
	for (size_t i = 0; i < r->n; i++)
		if (!r->names[i]->in_flight)
			r->names[i]->next_ms = 0;
	ism_info("dns: resolving with %s (timeout %ums, refresh %u..%ums)",
		 csv[0] ? csv : "the system's resolver configuration", dns->timeout_ms,
		 dns->min_refresh_ms, dns->max_refresh_ms);
	return 0;
}

static int reindex(struct ism_resolver *r)
{
	ism_strmap_free(&r->ix);
	ism_strmap_init(&r->ix, ism_strmap_seed());
	for (size_t i = 0; i < r->n; i++)
		if (ism_strmap_add(&r->ix, r->names[i]->name, strlen(r->names[i]->name),
				   (uint32_t)i, NULL) < 0)
			return -ENOMEM;
	return 0;
}

static struct dname *find(const struct ism_resolver *r, const char *name)
{
	uint32_t at;

	if (!ism_strmap_get(&r->ix, name, strlen(name), &at))
		return NULL;
	return r->names[at];
}

static int add_name(void *ctx, const char *name)
{
	struct ism_resolver *r = ctx;
	struct dname *n = find(r, name);

	if (n != NULL) {
		n->used = true;
		return 0;
	}
	if (r->n >= ISM_RESOLVER_MAX_NAMES)
		return -ENOSPC;
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		struct dname **p = realloc(r->names, cap * sizeof(*p));

		if (p == NULL)
			return -ENOMEM;
		r->names = p;
		r->cap = cap;
	}
	n = calloc(1, sizeof(*n));
	if (n == NULL || (n->name = strdup(name)) == NULL) {
		free(n);
		return -ENOMEM;
	}
	n->r = r;
	n->used = true;
	n->state = ISM_DNS_PENDING;
	r->names[r->n] = n;
	if (ism_strmap_add(&r->ix, n->name, strlen(n->name), (uint32_t)r->n, NULL) < 0) {
		free(n->name);
		free(n);
		return -ENOMEM;
	}
	r->n++;
	return 0;
}

static int mark_name(void *ctx, const char *name)
{
	struct dname *n = find(ctx, name);

	if (n != NULL)
		n->used = true;
	return 0;
}

/* Names no ServiceEntry names any more go, before new ones are added: a file
 * that swaps many names for others must not find the old ones in the count. */
static int forget_unused(struct ism_resolver *r)
{
	size_t kept = 0;

	/* A name whose query runs goes when it has ended, at a later publish. */
	for (size_t i = 0; i < r->n; i++) {
		struct dname *n = r->names[i];

		if (n->used || n->in_flight) {
			r->names[kept++] = n;
			continue;
		}
		ism_info("dns %s: no longer resolved (no ServiceEntry names it)", n->name);
		free(n->name);
		free(n);
	}
	if (kept == r->n)
		return 0;
	r->n = kept;
	return reindex(r);
}

int ism_resolver_names(struct ism_resolver *r, const struct ism_conf *conf, bool retain)
{
	int rc;

	if (retain) {
		for (size_t i = 0; i < r->n; i++)
			r->names[i]->used = false;
		rc = ism_conf_dns_names(conf, mark_name, r);
		if (rc == 0)
			rc = forget_unused(r);
		if (rc < 0)
			return rc;
	}
	return ism_conf_dns_names(conf, add_name, r);
}

static int addr_cmp(const void *pa, const void *pb)
{
	const struct ism_dns_addr *a = pa, *b = pb;

	if (a->addr.ss_family != b->addr.ss_family)
		return a->addr.ss_family == AF_INET ? -1 : 1;
	if (a->addr.ss_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)&a->addr)->sin_addr,
			      &((const struct sockaddr_in *)&b->addr)->sin_addr, 4);
	return memcmp(&((const struct sockaddr_in6 *)&a->addr)->sin6_addr,
		      &((const struct sockaddr_in6 *)&b->addr)->sin6_addr, 16);
}

/* Adds a to out, n addresses sorted without repeats, keeping the
 * ISM_RESOLVER_MAX_ADDRS lowest. Returns the new count. */
static size_t keep_lowest(struct ism_dns_addr *out, size_t n, const struct ism_dns_addr *a)
{
	size_t i = n;

	while (i > 0 && addr_cmp(&out[i - 1], a) > 0)
		i--;
	if ((i > 0 && addr_cmp(&out[i - 1], a) == 0) || i == ISM_RESOLVER_MAX_ADDRS)
		return n; /* a repeat, or above the lowest kept */
	if (n == ISM_RESOLVER_MAX_ADDRS)
		n--; /* the highest goes */
	memmove(&out[i + 1], &out[i], (n - i) * sizeof(*out));
	out[i] = *a;
	return n + 1;
}

/* The family fam takes from an answer: AF_INET, AF_INET6 or AF_UNSPEC. */
static int family_taken(const struct ares_addrinfo *ai, enum ism_dns_family fam)
{
	int first = AF_UNSPEC, other = AF_UNSPEC;

	switch (fam) {
	case ISM_DNS_V4_ONLY:
		return AF_INET;
	case ISM_DNS_V6_ONLY:
		return AF_INET6;
	case ISM_DNS_ALL:
		return AF_UNSPEC;
	case ISM_DNS_AUTO:
		first = AF_INET6;
		other = AF_INET;
		break;
	case ISM_DNS_V4_PREFERRED:
		first = AF_INET;
		other = AF_INET6;
		break;
	}
	for (const struct ares_addrinfo_node *p = ai ? ai->nodes : NULL; p != NULL; p = p->ai_next)
		if (p->ai_family == first)
			return first;
	return other;
}

/* Whether the sorted a[0..k) holds x. */
static bool holds(const struct ism_dns_addr *a, size_t k, const struct ism_dns_addr *x)
{
	for (size_t i = 0; i < k; i++)
		if (addr_cmp(&a[i], x) == 0)
			return true;
	return false;
}

/* Node p's address into *a (port 0), false for a family other than IPv4 and
 * IPv6. */
static bool node_addr(const struct ares_addrinfo_node *p, struct ism_dns_addr *a)
{
	const void *raw;

	memset(a, 0, sizeof(*a));
	if (p->ai_family == AF_INET && p->ai_addrlen >= sizeof(struct sockaddr_in)) {
		struct sockaddr_in *s = (struct sockaddr_in *)&a->addr;

		*s = *(const struct sockaddr_in *)p->ai_addr;
		s->sin_port = 0;
		a->len = sizeof(*s);
		raw = &s->sin_addr;
	} else if (p->ai_family == AF_INET6 && p->ai_addrlen >= sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&a->addr;

		*s = *(const struct sockaddr_in6 *)p->ai_addr;
		s->sin6_port = 0;
		a->len = sizeof(*s);
		raw = &s->sin6_addr;
	} else {
		return false;
	}
	inet_ntop(p->ai_family, raw, a->text, sizeof(a->text));
	return true;
}

size_t ism_resolver_answer_addrs(const struct ares_addrinfo *ai, enum ism_dns_family fam,
				 struct ism_dns_addr *out, uint32_t *ttl,
				 struct ism_dns_addr *first)
{
	int taken = family_taken(ai, fam);
	size_t n = 0;
	struct ism_dns_addr a;

	*ttl = UINT32_MAX;
	for (const struct ares_addrinfo_node *p = ai ? ai->nodes : NULL; p != NULL;
	     p = p->ai_next) {
		if ((taken != AF_UNSPEC && p->ai_family != taken) || !node_addr(p, &a))
			continue;
		if (p->ai_ttl >= 0 && (uint32_t)p->ai_ttl < *ttl)
			*ttl = (uint32_t)p->ai_ttl;
		n = keep_lowest(out, n, &a);
	}
	if (*ttl == UINT32_MAX)
		*ttl = 0;
	/* the first kept, in the server's order */
	for (const struct ares_addrinfo_node *p = ai ? ai->nodes : NULL; first != NULL && p != NULL;
	     p = p->ai_next)
		if ((taken == AF_UNSPEC || p->ai_family == taken) && node_addr(p, &a) &&
		    holds(out, n, &a)) {
			*first = a;
			break;
		}
	return n;
}

int ism_resolver_seed(struct ism_resolver *r, const char *name, enum ism_dns_state state,
		      const char *const *addrs, size_t n, uint64_t resolved_ms, uint32_t ttl_s)
{
	struct ism_dns_addr a[ISM_RESOLVER_MAX_ADDRS];
	size_t k = 0;
	struct dname *d;
	int rc;

	if ((state != ISM_DNS_RESOLVED && state != ISM_DNS_STALE) || n == 0 ||
	    n > ISM_RESOLVER_MAX_ADDRS)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		struct ism_dns_addr x;

		if (!ism_addr_parse(addrs[i], &x.addr, &x.len))
			return -EINVAL;
		snprintf(x.text, sizeof(x.text), "%s", addrs[i]);
		k = keep_lowest(a, k, &x);
	}
	rc = add_name(r, name);
	if (rc < 0)
		return rc;
	d = find(r, name);
	d->used = false; /* until a load names it */
	d->state = state;
	d->n = k;
	memcpy(d->addrs, a, k * sizeof(a[0]));
	d->picked = false; /* until ism_resolver_seed_pick, or the next answer */
	d->resolved_ms = resolved_ms;
	d->ttl_s = ttl_s;
	d->next_ms = 0;
	return 0;
}

int ism_resolver_seed_pick(struct ism_resolver *r, const char *name, const char *addr)
{
	struct dname *d = find(r, name);
	struct ism_dns_addr a = {0};

	if (d == NULL)
		return -ENOENT;
	if (!ism_addr_parse(addr, &a.addr, &a.len))
		return -EINVAL;
	snprintf(a.text, sizeof(a.text), "%s", addr);
	if (!holds(d->addrs, d->n, &a))
		return -EINVAL;
	d->pick = a;
	d->picked = true;
	return 0;
}

/* "a,b,c" or "(none)". */
/* The addresses a[0..n) into buf, "a,b,c"; those that do not fit whole are
 * said as ",... (+N more)" (cap holds at least that much). */
static void addrs_text(const struct ism_dns_addr *a, size_t n, char *buf, size_t cap)
{
	char more[48];
	size_t len = 0, i;

	snprintf(buf, cap, "(none)");
	for (i = 0; i < n; i++) {
		size_t need = strlen(a[i].text) + (i ? 1 : 0);

		snprintf(more, sizeof(more), ",... (+%zu more)", n - i);
		/* room kept for the marker unless this is the last address */
		if (len + need + (i + 1 < n ? strlen(more) : 0) >= cap)
			break;
		len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? "," : "", a[i].text);
	}
	if (i < n)
		snprintf(buf + len, cap - len, "%s", i ? more : more + 1);
}

static bool same_addrs(const struct dname *n, const struct ism_dns_addr *a, size_t k)
{
	if (k != n->n)
		return false;
	for (size_t i = 0; i < k; i++)
		if (addr_cmp(&n->addrs[i], &a[i]) != 0)
			return false;
	return true;
}

/* A query answered with k addresses, first the first in the server's order. */
static void answered(struct dname *n, const struct ism_dns_addr *a, size_t k,
		     const struct ism_dns_addr *first, uint32_t ttl, uint64_t now)
{
	struct ism_resolver *r = n->r;
	bool same = same_addrs(n, a, k);
	char was[256], is[256];
	/* The DNS_ROUND_ROBIN address: unpicked, the compiler took the lowest
	 * (an answer an older binary handed over). A change publishes. */
	struct ism_dns_addr rr = n->picked ? n->pick : n->n > 0 ? n->addrs[0] : *first;

	if (!n->picked || !holds(a, k, &n->pick)) {
		n->pick = *first;
		n->picked = true;
	}
	if (addr_cmp(&rr, &n->pick) != 0)
		r->changed = true;

	addrs_text(n->addrs, n->n, was, sizeof(was));
	addrs_text(a, k, is, sizeof(is));
	switch (n->state) {
	case ISM_DNS_PENDING:
	case ISM_DNS_RESOLVED:
		break;
	case ISM_DNS_STALE:
		ism_notice("dns %s: answers again after %llu failures", n->name,
			   (unsigned long long)n->failures);
		ism_event_add(r->events, "dns", "%s: answers again (%s)", n->name, is);
		break;
	case ISM_DNS_FAILED:
		ism_notice("dns %s: resolved after %llu failures", n->name,
			   (unsigned long long)n->failures);
		break;
	case ISM_DNS_N_STATES:
		ISM_BUG_ON(1);
	}
	if (!same) {
		ism_notice("dns %s: %s -> %s (ttl %us)", n->name, was, is, ttl);
		ism_event_add(r->events, "dns", "%s: %s -> %s", n->name, was, is);
		r->changes++;
		r->changed = true;
		memcpy(n->addrs, a, k * sizeof(*a));
		n->n = k;
	}
	n->state = ISM_DNS_RESOLVED;
	n->failures = 0;
	n->error[0] = '\0';
	n->ttl_s = ttl;
	n->resolved_ms = ism_wall_ms();
	n->next_ms =
	    now + ism_resolver_refresh_ms(ttl, r->conf.min_refresh_ms, r->conf.max_refresh_ms);
}

/* minRefresh and up to half of it more: names that failed together (all the
 * queries of a server c-ares gave up on) are not asked together again, as
 * Envoy jitters its failure refresh. */
static uint64_t retry_ms(struct ism_resolver *r)
{
	uint64_t x = r->jitter | 1;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	r->jitter = x;
	return r->conf.min_refresh_ms + x % (r->conf.min_refresh_ms / 2 + 1);
}

/* A query failed: the last good answer, if any, keeps serving. Logged when the
 * state changes, not at every retry. */
static void failed(struct dname *n, const char *why, uint64_t now)
{
	struct ism_resolver *r = n->r;
	char was[256];

	n->failures++;
	snprintf(n->error, sizeof(n->error), "%s", why);
	n->next_ms = now + retry_ms(r);
	switch (n->state) {
	case ISM_DNS_PENDING:
		ism_warn("dns %s: %s; no endpoint from it until it resolves", n->name, why);
		ism_event_add(r->events, "dns", "%s: %s; not resolved", n->name, why);
		n->state = ISM_DNS_FAILED;
		break;
	case ISM_DNS_RESOLVED:
		addrs_text(n->addrs, n->n, was, sizeof(was));
		ism_warn("dns %s: %s; the last answer (%s) keeps serving", n->name, why, was);
		ism_event_add(r->events, "dns", "%s: %s; keeping %s", n->name, why, was);
		n->state = ISM_DNS_STALE;
		break;
	case ISM_DNS_STALE:
	case ISM_DNS_FAILED:
		break;
	case ISM_DNS_N_STATES:
		ISM_BUG_ON(1);
	}
}

static enum result classify(int status, size_t k)
{
	switch (status) {
	case ARES_SUCCESS:
		return k > 0 ? RES_OK : RES_NODATA;
	case ARES_ENOTFOUND:
	case ARES_ENONAME:
		return RES_NXDOMAIN;
	case ARES_ENODATA:
		return RES_NODATA;
	case ARES_ESERVFAIL:
		return RES_SERVFAIL;
	case ARES_ETIMEOUT:
		return RES_TIMEOUT;
	default:
		return RES_ERROR;
	}
}

static void on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
	struct dname *n = arg;
	struct ism_resolver *r = n->r;
	struct ism_dns_addr a[ISM_RESOLVER_MAX_ADDRS], first;
	uint64_t now = ism_now_ms();
	uint32_t ttl = 0;
	size_t k = 0;
	enum result res;

	(void)timeouts;
	n->in_flight = false;
	r->in_flight--;
	if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) {
		n->next_ms = 0; /* asked again on the next channel */
		goto out;
	}
	if (status == ARES_SUCCESS)
		k = ism_resolver_answer_addrs(ai, r->conf.family, a, &ttl, &first);
	res = classify(status, k);
	r->results[res]++;
	if (res == RES_OK)
		answered(n, a, k, &first, ttl, now);
	else
		failed(n,
		       res == RES_NODATA && status == ARES_SUCCESS ? "no address"
								   : ares_strerror(status),
		       now);
	if (n->forced)
		n->next_ms = now;
	n->forced = false;
out:
	if (ai != NULL)
		ares_freeaddrinfo(ai);
}

int ism_resolver_pollfds(struct ism_resolver *r, struct pollfd *pfd, int max)
{
	ares_socket_t socks[ARES_GETSOCK_MAXNUM];
	unsigned bits;
	int n = 0;

	if (!r->ch_ok)
		return 0;
	/* Bit i: socket i readable; bit i + ARES_GETSOCK_MAXNUM: writable. The
	 * c-ares macros shift a signed 1 into bit 31, so they are not used. */
	bits = (unsigned)ares_getsock(r->ch, socks, ARES_GETSOCK_MAXNUM);
	for (int i = 0; i < ARES_GETSOCK_MAXNUM && n < max; i++) {
		short ev = (short)(((bits >> i) & 1u ? POLLIN : 0) |
				   ((bits >> (i + ARES_GETSOCK_MAXNUM)) & 1u ? POLLOUT : 0));

		if (ev)
			pfd[n++] = (struct pollfd){.fd = socks[i], .events = ev};
	}
	return n;
}

int ism_resolver_timeout_ms(struct ism_resolver *r, uint64_t now, int cap)
{
	struct timeval max = {.tv_sec = cap / 1000, .tv_usec = (cap % 1000) * 1000}, tv, *t;
	int ms = cap;

	if (!r->ch_ok)
		return cap; /* nothing can be asked */
	t = ares_timeout(r->ch, &max, &tv);
	ms = (int)(t->tv_sec * 1000 + (t->tv_usec + 999) / 1000);
	/* At the cap, names due wait for a query to end, which c-ares' own
	 * timeout or a socket wakes the loop for: counting them would spin it. */
	for (size_t i = 0; i < r->n && r->in_flight < MAX_IN_FLIGHT; i++) {
		const struct dname *n = r->names[i];
		uint64_t due;

		if (!n->used || n->in_flight)
			continue;
		due = n->next_ms > now ? n->next_ms - now : 0;
		if (due < (uint64_t)ms)
			ms = (int)due;
	}
	return ms < cap ? ms : cap;
}

static void ask(struct ism_resolver *r, struct dname *n)
{
	/* One family asked where one is taken (answer_addrs sorts out the rest). */
	struct ares_addrinfo_hints h = {.ai_family = r->conf.family == ISM_DNS_V4_ONLY ? AF_INET
						     : r->conf.family == ISM_DNS_V6_ONLY
							 ? AF_INET6
							 : AF_UNSPEC,
					.ai_flags = ARES_AI_NOSORT};

	n->in_flight = true;
	n->next_ms = UINT64_MAX;
	r->in_flight++;
	ares_getaddrinfo(r->ch, n->name, NULL, &h, on_answer, n); /* may answer at once */
}

void ism_resolver_run(struct ism_resolver *r, const struct pollfd *pfd, int n, uint64_t now)
{
	if (!r->ch_ok)
		return;
	for (int i = 0; i < n; i++) {
		short ev = pfd[i].revents;

		if (ev == 0)
			continue;
		ares_process_fd(r->ch,
				ev & (POLLIN | POLLERR | POLLHUP) ? pfd[i].fd : ARES_SOCKET_BAD,
				ev & POLLOUT ? pfd[i].fd : ARES_SOCKET_BAD);
	}
	ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* timeouts */
	now = ism_now_ms();
	/* Round the list from where the last turn stopped: at the cap, names
	 * that fail and come due again early in it must not keep the later
	 * ones from ever being asked. */
	for (size_t k = 0; k < r->n && r->in_flight < MAX_IN_FLIGHT; k++) {
		size_t i = (r->ask_from + k) % r->n;
		struct dname *d = r->names[i];

		if (d->used && !d->in_flight && d->next_ms <= now) {
			ask(r, d);
			r->ask_from = i + 1;
		}
	}
}

bool ism_resolver_settled(const struct ism_resolver *r)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->names[i]->used && r->names[i]->state == ISM_DNS_PENDING)
			return false;
	return true;
}

void ism_resolver_warn_pending(const struct ism_resolver *r, uint32_t timeout_ms, const char *doing)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->names[i]->used && r->names[i]->state == ISM_DNS_PENDING)
			ism_warn("dns %s: no answer within %ums; %s without it", r->names[i]->name,
				 timeout_ms, doing);
}

void ism_resolver_settle(struct ism_resolver *r, uint32_t timeout_ms)
{
	uint64_t deadline = ism_now_ms() + timeout_ms;
	struct pollfd pfd[ISM_RESOLVER_POLLFDS];

	ism_resolver_run(r, NULL, 0, ism_now_ms());
	for (;;) {
		uint64_t now = ism_now_ms();
		int n, ms;

		if (ism_resolver_settled(r) || now >= deadline)
			break;
		n = ism_resolver_pollfds(r, pfd, ISM_RESOLVER_POLLFDS);
		ms = ism_resolver_timeout_ms(r, now, (int)(deadline - now));
		if (poll(pfd, (nfds_t)n, ms) < 0 && errno != EINTR)
			break;
		ism_resolver_run(r, pfd, n, ism_now_ms());
	}
	ism_resolver_warn_pending(r, timeout_ms, "starting");
}

bool ism_resolver_changed(const struct ism_resolver *r)
{
	return r->changed;
}

void ism_resolver_compiled(struct ism_resolver *r)
{
	r->changed = false;
}

size_t ism_resolver_lookup(void *ctx, const char *name, bool logical,
			   const struct ism_dns_addr **addrs, uint64_t *resolved_ms)
{
	const struct dname *n = find(ctx, name);

	*addrs = NULL;
	*resolved_ms = 0;
	if (n == NULL || n->n == 0)
		return 0;
	if (logical && n->picked) {
		*addrs = &n->pick;
		*resolved_ms = n->resolved_ms;
		return 1;
	}
	*addrs = n->addrs;
	*resolved_ms = n->resolved_ms;
	return n->n;
}

int ism_resolver_force(struct ism_resolver *r, const char *name)
{
	bool all = strcmp(name, "*") == 0, hit = false;

	for (size_t i = 0; i < r->n; i++) {
		struct dname *n = r->names[i];

		if (!n->used || (!all && strcmp(n->name, name) != 0))
			continue;
		hit = true;
		if (n->in_flight)
			n->forced = true;
		else
			n->next_ms = 0;
	}
	return hit ? 0 : -ENOENT;
}

bool ism_resolver_view(const struct ism_resolver *r, size_t i, uint64_t now,
		       struct ism_dns_view *out)
{
	const struct dname *n;

	if (i >= r->n)
		return false;
	n = r->names[i];
	*out = (struct ism_dns_view){.name = n->name,
				     .used = n->used,
				     .state = n->state,
				     .n_addrs = n->n,
				     .addrs = n->addrs,
				     .pick = n->picked ? &n->pick : NULL,
				     .resolved_ms = n->resolved_ms,
				     .next_in_ms =
					 n->in_flight || n->next_ms <= now ? 0 : n->next_ms - now,
				     .ttl_s = n->ttl_s,
				     .failures = n->failures,
				     .error = n->error};
	return true;
}

void ism_resolver_metrics(const struct ism_resolver *r, struct ism_reply *out)
{
	static const struct ism_metric res = {
	    "isthmus_dns_resolutions_total", "counter",
	    "DNS queries of ServiceEntry names answered, by result (ok, nxdomain, nodata, "
	    "servfail, timeout, error)."};
	static const struct ism_metric names = {
	    "isthmus_dns_names", "gauge",
	    "Names resolved, by state: pending (never answered yet), resolved, stale (failing, "
	    "the last good answer serves), failed (never answered, failing)."};
	static const struct ism_metric changes = {
	    "isthmus_dns_changes_total", "counter",
	    "Answers whose addresses differed from the name's previous answer."};
	uint64_t by_state[ISM_DNS_N_STATES] = {0};

	ism_prom_family(out, &res);
	for (int i = 0; i < RES_N; i++)
		ism_prom_u64(out, res.name, r->results[i], "result", result_names[i], NULL);
	for (size_t i = 0; i < r->n; i++)
		if (r->names[i]->used)
			by_state[r->names[i]->state]++;
	ism_prom_family(out, &names);
	for (int s = 0; s < ISM_DNS_N_STATES; s++)
		ism_prom_u64(out, names.name, by_state[s], "state",
			     ism_dns_state_name((enum ism_dns_state)s), NULL);
	ism_prom_family(out, &changes);
	ism_prom_u64(out, changes.name, r->changes, NULL);
}
