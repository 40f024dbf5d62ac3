/* SPDX-License-Identifier: Apache-2.0 */
/* A DestinationRule's loadBalancer: simple, consistentHash (on a header, a
 * cookie, the source address or a query parameter; ring hash or maglev),
 * localityLbSetting or zoneAwareLbSetting (distribute, failover,
 * failoverPriority), and warmup. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/model.h"
#include "health/priority.h"
#include "lib/ascii.h"

static bool is_prime(uint32_t n)
{
	if (n < 2)
		return false;
	for (uint32_t d = 2; (uint64_t)d * d <= n; d++)
		if (n % d == 0)
			return false;
	return true;
}

/* Whether s may stand in a Set-Cookie attribute: no control character, no ';'
 * (which would start another attribute). */
static bool cookie_text_ok(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == ';')
			return false;
	return true;
}

/* httpCookie.attributes: "; name=value" (or "; name" when the value is
 * empty) each, in order, as Envoy appends them to the cookie it issues. */
static const char *parse_cookie_attrs(struct ism_vctx *v, const struct ism_node *c)
{
	static const char *const keys[] = {"name", "value", NULL};
	const struct ism_node *seq = ism_v_node(v, c, "attributes", false, ISM_NODE_SEQ);
	char *out = ism_v_strdup(v, "");
	struct ism_strmap *names; /* name -> its first entry (Istio's validateLoadBalancer) */
	uint32_t first;
	size_t old;

	if (seq == NULL || out == NULL || (names = ism_v_map(v, seq->n)) == NULL)
		return "";
	old = ism_v_push(v, ".attributes");
	for (size_t i = 0; i < seq->n; i++) {
		const struct ism_node *it = seq->items[i];
		const char *name = NULL, *value = "";
		size_t o2 = ism_v_push(v, "[%zu]", i);
		char *next;

		if (!ism_v_expect(v, it, ISM_NODE_MAP))
			goto next;
		ism_v_keys(v, it, keys, NULL);
		if (ism_v_str(v, it, "name", true, &name) > 0 && !ism_is_token(name))
			ism_v_err_key(v, it, "name",
				      "\"%s\" is not a cookie attribute name (RFC 9110 token)",
				      name);
		else if (name != NULL &&
			 ism_v_map_add(v, names, name, strlen(name), (uint32_t)i, &first) == 0)
			ism_v_err_key(
			    v, it, "name",
			    "duplicate cookie attribute name: %s (attributes[%u]; as Istio)", name,
			    first);
		if (ism_v_str(v, it, "value", false, &value) > 0 && !cookie_text_ok(value))
			ism_v_err_key(
			    v, it, "value",
			    "a cookie attribute value cannot hold ';' or a control character");
		if (name == NULL)
			goto next;
		next = ism_v_alloc(v, strlen(out) + strlen(name) + strlen(value) + 4, 1);
		if (next == NULL)
			goto next;
		sprintf(next, "%s; %s%s%s", out, name, *value ? "=" : "", value);
		out = next;
	next:
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
	return out;
}

static void parse_cookie(struct ism_vctx *v, const struct ism_node *ch, struct ism_cm_hash *h)
{
	static const char *const keys[] = {"name", "path", "ttl", "attributes", NULL};
	const struct ism_node *c = ism_v_node(v, ch, "httpCookie", false, ISM_NODE_MAP);
	size_t old;

	if (c == NULL)
		return;
	old = ism_v_push(v, ".httpCookie");
	ism_v_keys(v, c, keys, NULL);
	h->on = ISM_HASH_COOKIE;
	ism_v_str(v, c, "name", true, &h->name);
	if (h->name != NULL && !ism_is_token(h->name))
		ism_v_err_key(v, c, "name", "\"%s\" is not a cookie name (RFC 9110 token)",
			      h->name);
	if (ism_v_str(v, c, "path", false, &h->cookie_path) > 0 && !cookie_text_ok(h->cookie_path))
		ism_v_err_key(v, c, "path", "a cookie path cannot hold ';' or a control character");
	/* Envoy issues the cookie only when a ttl is given; 0s makes it a
	 * session cookie. */
	h->cookie_issue = ism_v_dur(v, c, "ttl", 0, &h->cookie_ttl_ms) > 0;
	h->cookie_attrs = parse_cookie_attrs(v, c);
	ism_v_pop(v, old);
}

/* The most points of a ring and entries of a Maglev table: 2^20. */
#define ISM_RING_MAX 1048576u

/* ringHash / maglev / minimumRingSize: the table the worker looks keys up in. */
static void parse_hash_algo(struct ism_vctx *v, const struct ism_node *ch, struct ism_cm_hash *h)
{
	static const char *const algos[] = {"ringHash", "maglev", NULL};
	static const char *const rkeys[] = {"minimumRingSize", NULL};
	static const char *const mkeys[] = {"tableSize", NULL};
	const struct ism_node *r, *m;
	uint64_t legacy;
	size_t old;

	ism_model_one_of(v, ch, algos, "ringHash, maglev");
	r = ism_v_node(v, ch, "ringHash", false, ISM_NODE_MAP);
	m = ism_v_node(v, ch, "maglev", false, ISM_NODE_MAP);
	if (r != NULL) {
		old = ism_v_push(v, ".ringHash");
		ism_v_keys(v, r, rkeys, NULL);
		/* isthmus's bound (Envoy's is 8M): every cluster's ring is in the
		 * route table's 16 MiB, 12 bytes a point. */
		ism_v_u32(v, r, "minimumRingSize", false, 0, ISM_RING_MAX, &h->ring_size);
		ism_v_pop(v, old);
	} else if (m != NULL) {
		uint32_t size = 0;
		int rc;

		h->lb = ISM_LB_MAGLEV;
		old = ism_v_push(v, ".maglev");
		ism_v_keys(v, m, mkeys, NULL);
		/* Istio's validateLoadBalancer: tableSize must be set. Envoy's
		 * bound is 5000011; a table is in the route table's 16 MiB, 4
		 * bytes an entry. */
		rc = ism_v_u32(v, m, "tableSize", false, 0, UINT32_MAX, &size);
		if (rc == 0)
			ism_v_err(v, m, "tableSize must be set for maglev (as Istio), e.g. 65537");
		else if (rc > 0 && (size == 0 || size > ISM_RING_MAX || !is_prime(size)))
			ism_v_err_key(
			    v, m, "tableSize", "must be %sa prime number below %u (e.g. 65537)",
			    size == 0 ? "set for maglev (as Istio): " : "", ISM_RING_MAX + 1);
		else if (rc > 0)
			h->table_size = size;
		ism_v_pop(v, old);
	}
	/* Istio's validateLoadBalancer: not both (a minimumRingSize of 0 is unset). */
	if (ism_v_u64(v, ch, "minimumRingSize", 0, ISM_RING_MAX, &legacy) > 0 && legacy != 0) {
		if (r != NULL || m != NULL)
			ism_v_err_key(
			    v, ch, "minimumRingSize",
			    "only one of MinimumRingSize or Maglev/Ringhash can be specified "
			    "(as Istio): %s is set",
			    r ? "ringHash" : "maglev");
		else
			h->ring_size = (uint32_t)legacy;
	}
	if (h->ring_size == 0)
		h->ring_size = 1024;
}

static void parse_hash(struct ism_vctx *v, const struct ism_node *lb, struct ism_cm_lb *p)
{
	static const char *const keys[] = {"httpHeaderName",	     "httpCookie", "useSourceIp",
					   "httpQueryParameterName", "ringHash",   "maglev",
					   "minimumRingSize",	     NULL};
	static const char *const hkeys[] = {"httpHeaderName", "httpCookie", "useSourceIp",
					    "httpQueryParameterName", NULL};
	const struct ism_node *ch = ism_v_node(v, lb, "consistentHash", false, ISM_NODE_MAP);
	struct ism_cm_hash *h = &p->hash;
	bool src = false;
	const char *s;
	size_t old;

	if (ch == NULL)
		return;
	p->has_hash = true;
	h->lb = ISM_LB_RING_HASH;
	h->ring_size = 1024;
	h->table_size = 65537;
	h->cookie_path = "";
	h->cookie_attrs = "";
	old = ism_v_push(v, ".consistentHash");
	ism_v_keys(v, ch, keys, NULL);
	ism_model_one_of(v, ch, hkeys,
			 "httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName");
	if (ism_v_str(v, ch, "httpHeaderName", false, &s) > 0) {
		h->on = ISM_HASH_HEADER;
		h->name = ism_model_lower_dup(v, s);
	}
	parse_cookie(v, ch, h);
	if (ism_v_bool(v, ch, "useSourceIp", &src) > 0 && src)
		h->on = ISM_HASH_SOURCE_IP;
	if (ism_v_str(v, ch, "httpQueryParameterName", false, &s) > 0) {
		h->on = ISM_HASH_QUERY_PARAM;
		h->name = s;
	}
	if (h->on == ISM_HASH_NONE && ism_node_get(ch, "httpCookie", NULL) == NULL)
		ism_v_err(v, ch,
			  "one of httpHeaderName, httpCookie, useSourceIp: true, "
			  "httpQueryParameterName is required");
	parse_hash_algo(v, ch, h);
	ism_v_pop(v, old);
}

/* A locality pattern of distribute: "region[/zone[/subzone]]" with non-empty
 * parts, where "*" may stand for the last part. */
static bool locality_pattern_ok(const char *s)
{
	struct ism_locality l;
	const char *part[] = {l.region, l.zone, l.subzone};
	int n = ism_locality_parse(s, false, &l);

	for (int i = 0; i < n; i++)
		if (strchr(part[i], '*') != NULL && !(i == n - 1 && strcmp(part[i], "*") == 0))
			return false;
	return n > 0;
}

static void bad_pattern(struct ism_vctx *v, const struct ism_node *at, const char *s)
{
	ism_v_err(v, at,
		  "\"%s\" is not a locality pattern: region[/zone[/subzone]] with non-empty "
		  "parts, \"*\" only as the last part",
		  s);
}

static void parse_distribute_entry(struct ism_vctx *v, const struct ism_node *it,
				   struct ism_cm_distribute *d)
{
	static const char *const keys[] = {"from", "to", NULL};
	const struct ism_node *to;
	uint64_t sum = 0;
	size_t old;

	if (!ism_v_expect(v, it, ISM_NODE_MAP))
		return;
	ism_v_keys(v, it, keys, NULL);
	if (ism_v_str(v, it, "from", true, &d->from) > 0 && !locality_pattern_ok(d->from)) {
		old = ism_v_push(v, ".from");
		bad_pattern(v, ism_node_get(it, "from", NULL), d->from);
		ism_v_pop(v, old);
	}
	to = ism_v_node(v, it, "to", true, ISM_NODE_MAP);
	if (to == NULL)
		return;
	d->to = ism_v_alloc(v, to->n, sizeof(*d->to));
	d->weight = ism_v_alloc(v, to->n, sizeof(*d->weight));
	if (d->to == NULL || d->weight == NULL)
		return;
	old = ism_v_push(v, ".to");
	for (size_t i = 0; i < to->n; i++) {
		const char *pat = to->pairs[i].key->str;
		uint32_t w = 0;

		if (!locality_pattern_ok(pat)) {
			size_t o2 = ism_v_push(v, ".%s", pat);

			bad_pattern(v, to->pairs[i].key, pat);
			ism_v_pop(v, o2);
			continue;
		}
		if (ism_v_u32(v, to, pat, true, 1, 100, &w) <= 0)
			continue;
		d->to[d->n_to] = pat;
		d->weight[d->n_to++] = w;
		sum += w;
	}
	if (d->n_to == to->n && sum != 100)
		ism_v_err(v, to, "the weights must sum to 100 (they sum to %llu)",
			  (unsigned long long)sum);
	ism_v_pop(v, old);
}

/* One locality part, no '*'. */
static bool region_ok(const char *s)
{
	struct ism_locality l;

	return ism_locality_parse(s, true, &l) == 1 && strchr(s, '*') == NULL;
}

static void parse_failover(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_llb *l)
{
	static const char *const keys[] = {"from", "to", NULL};
	const struct ism_node *seq = ism_v_node(v, n, "failover", false, ISM_NODE_SEQ);
	size_t old;

	if (seq == NULL)
		return;
	l->failover = ism_v_alloc(v, seq->n, sizeof(*l->failover));
	old = ism_v_push(v, ".failover");
	for (size_t i = 0; l->failover != NULL && i < seq->n; i++) {
		const struct ism_node *it = seq->items[i];
		struct ism_cm_region_pair *p = &l->failover[l->n_failover];
		size_t o2 = ism_v_push(v, "[%zu]", i);
		int a, b;

		if (!ism_v_expect(v, it, ISM_NODE_MAP))
			goto next;
		ism_v_keys(v, it, keys, NULL);
		a = ism_v_str(v, it, "from", true, &p->from);
		b = ism_v_str(v, it, "to", true, &p->to);
		if (a > 0 && !region_ok(p->from))
			ism_model_key_err(v, it, "from", "must be a region (no '/', no '*')");
		else if (b > 0 && !region_ok(p->to))
			ism_model_key_err(v, it, "to", "must be a region (no '/', no '*')");
		else if (a > 0 && b > 0 && strcmp(p->from, p->to) == 0)
			ism_model_key_err(v, it, "to", "must be a region other than from");
		else if (a > 0 && b > 0)
			l->n_failover++;
	next:
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* The locality part (enum ism_fprio_topo) a label name (up to any '=') stands for. */
static uint8_t topology_label(const char *s)
{
	static const char *const labels[] = {"topology.kubernetes.io/region",
					     "topology.kubernetes.io/zone",
					     "topology.istio.io/subzone"};
	size_t n = strcspn(s, "=");

	for (uint8_t i = 0; i < 3; i++)
		if (strlen(labels[i]) == n && strncmp(s, labels[i], n) == 0)
			return (uint8_t)(ISM_FPRIO_REGION + i);
	return ISM_FPRIO_LABEL;
}

static int fkey_cmp(const void *pa, const void *pb, void *ctx)
{
	const struct ism_cm_fkey *k = ctx;
	size_t a = k[*(const size_t *)pa].absent_fail, b = k[*(const size_t *)pb].absent_fail;

	return a < b ? -1 : a > b;
}

/* failoverPriority by label name (struct ism_cm_fkey), so that ranking an
 * endpoint looks at its own labels, not at every entry. */
static void plan_fprio(struct ism_vctx *v, struct ism_cm_llb *l)
{
	const struct ism_cm_appliance *a = &v->conf->app;
	const char *parts[] = {"", a->region, a->zone, a->subzone};

	for (int t = 0; t < 4; t++)
		l->topo_fkey[t] = SIZE_MAX;
	l->fkeys = ism_v_alloc(v, l->n_fprio, sizeof(*l->fkeys));
	l->fkey_ix = ism_v_map(v, l->n_fprio);
	l->absent_order = ism_v_alloc(v, l->n_fprio, sizeof(*l->absent_order));
	if (v->nomem)
		return;
	for (size_t j = 0; j < l->n_fprio; j++) {
		const char *key = l->fprio_key[j], *eq = strchr(l->fprio[j], '=');
		uint8_t topo = topology_label(key);
		const char *want;
		struct ism_cm_fkey *k;
		uint32_t at;

		/* What the endpoint must have: the value written, else the
		 * appliance's locality part or label ("" when it has none). */
		if (eq != NULL)
			want = eq + 1;
		else if (topo != ISM_FPRIO_LABEL)
			want = parts[topo];
		else
			want = ism_model_label(a->labels_at, key);
		if (ism_v_map_add(v, l->fkey_ix, key, strlen(key), (uint32_t)l->n_fkeys, &at) !=
		    0) {
			if (topo != ISM_FPRIO_LABEL)
				l->topo_fkey[topo] = l->n_fkeys;
			l->fkeys[l->n_fkeys++] = (struct ism_cm_fkey){.key = key,
								      .topo = topo,
								      .first = j,
								      .want = want,
								      .next_diff = SIZE_MAX};
			continue;
		}
		k = &l->fkeys[at];
		if (k->next_diff == SIZE_MAX && strcmp(want, k->want) != 0)
			k->next_diff = j;
	}
	for (size_t i = 0; i < l->n_fkeys; i++) {
		struct ism_cm_fkey *k = &l->fkeys[i];

		k->absent_fail = k->want[0] != '\0' ? k->first : k->next_diff;
		if (k->topo == ISM_FPRIO_LABEL)
			l->absent_order[l->n_absent++] = i;
	}
	qsort_r(l->absent_order, l->n_absent, sizeof(*l->absent_order), fkey_cmp, l->fkeys);
}

static void parse_fprio(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_llb *l)
{
	const struct ism_node *seq;

	l->fprio = ism_v_strlist(v, n, "failoverPriority", false, &l->n_fprio, &seq);
	l->fprio_key = l->fprio ? ism_v_alloc(v, l->n_fprio, sizeof(*l->fprio_key)) : NULL;
	for (size_t i = 0; l->fprio_key != NULL && i < l->n_fprio; i++) {
		const char *s = l->fprio[i], *eq = strchr(s, '=');
		size_t old = ism_v_push(v, ".failoverPriority[%zu]", i);
		char *key = ism_v_strdup(v, s);

		if (key != NULL && eq != NULL)
			key[eq - s] = '\0';
		l->fprio_key[i] = key != NULL ? key : "";

		if (eq == s || (eq != NULL && strchr(eq + 1, '=') != NULL))
			ism_v_err(v, seq->items[i], "must be a label name or \"key=value\"");
		else if (l->zone_aware && topology_label(s) != ISM_FPRIO_LABEL)
			ism_v_err(
			    v, seq->items[i],
			    "a region, zone or subzone label is not allowed in zoneAwareLbSetting "
			    "(it orders regions and zones itself)");
		else if (l->n_failover > 0 && topology_label(s) != ISM_FPRIO_LABEL)
			ism_v_err(
			    v, seq->items[i],
			    "a region, zone or subzone label cannot be combined with failover");
		ism_v_pop(v, old);
	}
	if (l->fprio_key != NULL)
		plan_fprio(v, l);
}

/* loadBalancer.localityLbSetting, or (key) zoneAwareLbSetting: its
 * failover and failoverPriority as the locality setting's, minClusterSize in
 * place of distribute. Istio allows one of them. */
static void parse_llb(struct ism_vctx *v, const struct ism_node *lb, const char *key,
		      struct ism_cm_llb *l)
{
	static const char *const keys[] = {"enabled", "distribute", "failover", "failoverPriority",
					   NULL};
	static const char *const zkeys[] = {"enabled", "failover", "failoverPriority",
					    "minClusterSize", NULL};
	const struct ism_node *n = ism_v_node(v, lb, key, false, ISM_NODE_MAP);
	const struct ism_node *seq, *k = NULL;
	const char *fo_key;
	uint32_t min_cluster_size;
	size_t old;

	if (n == NULL)
		return;
	old = ism_v_push(v, ".%s", key);
	if (l->set) {
		ism_v_err(v, n, "only one of localityLbSetting and zoneAwareLbSetting can be set");
		ism_v_pop(v, old);
		return;
	}
	l->set = true;
	l->enabled = true;
	l->zone_aware = strcmp(key, "zoneAwareLbSetting") == 0;
	ism_v_keys(v, n, l->zone_aware ? zkeys : keys, NULL);
	ism_v_bool(v, n, "enabled", &l->enabled);
	if (l->zone_aware)
		ism_v_u32(v, n, "minClusterSize", false, 0, UINT32_MAX, &min_cluster_size);
	if (l->zone_aware && l->enabled)
		ism_v_warn(
		    v, n,
		    "zone-aware routing between the region's zones needs the proxy's own "
		    "cluster (Istio's self-discovery), which an appliance does not have: the "
		    "region's endpoints share its traffic by their weights, as Envoy's do "
		    "without one; the regions' order applies");
	seq = l->zone_aware ? NULL : ism_v_node(v, n, "distribute", false, ISM_NODE_SEQ);
	if (seq != NULL) {
		l->distribute = ism_v_alloc(v, seq->n, sizeof(*l->distribute));
		for (size_t i = 0; l->distribute != NULL && i < seq->n; i++) {
			size_t o2 = ism_v_push(v, ".distribute[%zu]", i);

			parse_distribute_entry(v, seq->items[i], &l->distribute[l->n_distribute++]);
			ism_v_pop(v, o2);
		}
	}
	parse_failover(v, n, l);
	parse_fprio(v, n, l);
	fo_key = ism_node_get(n, "failover", NULL) != NULL ? "failover" : "failoverPriority";
	if (ism_node_get(n, fo_key, &k) != NULL) {
		if (seq != NULL)
			ism_model_key_err(
			    v, n, fo_key,
			    "distribute cannot be combined with failover or failoverPriority "
			    "(only one of them may be set)");
		l->fo_at = k;
		ism_v_push(v, ".%s", fo_key);
		l->fo_path = ism_v_strdup(v, v->path);
	}
	ism_v_pop(v, old);
}

/* loadBalancer.warmup {duration, minimumPercent, aggression}, or the older
 * warmupDurationSecs (Istio takes warmup when both are set), with Envoy's
 * defaults as Istio fills them in: aggression 1, minimum 10 %. */
static void parse_warmup(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_lb *p)
{
	static const char *const keys[] = {"duration", "minimumPercent", "aggression", NULL};
	const struct ism_node *w = ism_v_node(v, n, "warmup", false, ISM_NODE_MAP);
	double pct = 10;
	size_t old;

	p->warmup_aggression = 1;
	p->warmup_minimum = 0.1;
	if (w == NULL) {
		if (ism_v_dur(v, n, "warmupDurationSecs", 1, &p->warmup_ms) > 0)
			p->warmup_at = ism_node_get(n, "warmupDurationSecs", NULL);
		return;
	}
	p->warmup_at = ism_node_get(n, "warmup", NULL);
	old = ism_v_push(v, ".warmup");
	ism_v_keys(v, w, keys, NULL);
	if (ism_node_get(w, "duration", NULL) == NULL)
		ism_v_err(v, w, "duration is required (as Istio validates it)");
	ism_v_istio_dur(v, w, "duration", &p->warmup_ms);
	if (ism_v_double(v, w, "minimumPercent", 0, 100, false, &pct) > 0)
		p->warmup_minimum = pct / 100;
	ism_v_double(v, w, "aggression", 0, 1e6, true, &p->warmup_aggression);
	ism_v_pop(v, old);
}

void ism_model_parse_lb(struct ism_vctx *v, const struct ism_node *tp, struct ism_cm_lb *p)
{
	static const char *const keys[] = {"simple",
					   "consistentHash",
					   "localityLbSetting",
					   "zoneAwareLbSetting",
					   "warmup",
					   "warmupDurationSecs",
					   NULL};
	static const char *const kinds[] = {"simple", "consistentHash", "backendUtilization", NULL};
	/* backendUtilization: Envoy's client-side weighted round robin over the
	 * endpoints' ORCA load reports, which isthmus does not read. */
	static const char *const later_keys[] = {"backendUtilization", NULL};
	static const char *const ok[] = {"ROUND_ROBIN", "LEAST_REQUEST", "LEAST_CONN",
					 "RANDOM",	"UNSPECIFIED",	 NULL};
	static const char *const later[] = {"PASSTHROUGH", NULL};
	const struct ism_node *n = ism_v_node(v, tp, "loadBalancer", false, ISM_NODE_MAP);
	const char *s = NULL;
	size_t old;

	if (n == NULL)
		return;
	p->set = true;
	old = ism_v_push(v, ".loadBalancer");
	ism_v_keys(v, n, keys, later_keys);
	ism_model_one_of(v, n, kinds, "simple, consistentHash, backendUtilization");
	if (ism_v_enum(v, n, "simple", ok, later, &s) > 0) {
		p->has_simple = true;
		if (strcmp(s, "ROUND_ROBIN") == 0)
			p->simple = ISM_LB_ROUND_ROBIN;
		else if (strcmp(s, "RANDOM") == 0)
			p->simple = ISM_LB_RANDOM;
		else
			p->simple = ISM_LB_LEAST_REQUEST; /* Istio's default for UNSPECIFIED */
	}
	parse_hash(v, n, p);
	parse_llb(v, n, "localityLbSetting", &p->llb);
	parse_llb(v, n, "zoneAwareLbSetting", &p->llb);
	parse_warmup(v, n, p);
	if (p->warmup_ms && (p->has_hash || p->simple == ISM_LB_RANDOM)) {
		size_t o2 = ism_v_push(
		    v, ".%s", ism_node_get(n, "warmup", NULL) ? "warmup" : "warmupDurationSecs");

		ism_v_warn(v, p->warmup_at,
			   "has no effect with %s: Envoy warms endpoints up under ROUND_ROBIN "
			   "and LEAST_REQUEST only",
			   p->has_hash ? "consistentHash" : "RANDOM");
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}
