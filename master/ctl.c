/* Control socket and admin listener (master).
 *
 * Both are served from the master's poll loop, one request per connection. A
 * client is a small state machine: it reads its request (bounded by a deadline),
 * then its answer is built at once and written as the socket takes it (POLLOUT),
 * bounded by another deadline, so a client that stops reading costs a slot and
 * its buffer, never the loop's time. */
#include "master/ctl.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/log.h"
#include "master/commands.h"
#include "master/master-t.h"

#define CTL_LINE_MAX	 4096	      /* a command line, or an admin request head */
#define CTL_REPLY_MAX	 (64u << 20)  /* one answer; more is an error, never a cut text */
#define CTL_REPLY_BUDGET (256u << 20) /* all the answers being written */

enum ctl_state {
	CTL_FREE = 0,
	CTL_READING, /* until the request is complete: POLLIN */
	CTL_WRITING, /* until the answer is sent: POLLOUT */
	CTL_WAITING, /* for the reload of its ticket to be over: only hang-ups polled */
};

struct ctl_client {
	enum ctl_state state;
	int fd;
	uint64_t since;	   /* accepted at: the oldest is dropped first */
	uint64_t deadline; /* of the current state */
	uint32_t len;
	uint64_t ticket;       /* CTL_WAITING: the reload's */
	int json;	       /* CTL_WAITING: the answer in JSON */
	struct ism_reply head; /* the admin answer's status line and header */
	struct ism_reply body; /* the page, or the command's answer */
	size_t sent;	       /* of head, then body */
	char line[CTL_LINE_MAX];
};

enum ctl_pool_id {
	CTL_CONTROL = 0, /* the unix control socket */
	CTL_ADMIN,	 /* the admin HTTP listener */
	CTL_POOLS,
};

enum ctl_drop_reason {
	CTL_DROP_FULL = 0, /* its slot went to a new client */
	CTL_DROP_TIMEOUT,
	CTL_DROP_MEMORY, /* its answer went over CTL_REPLY_BUDGET with the others' */
	CTL_DROP_REASONS,
};

/* A request refused before it is read as a command or a page. */
enum ctl_bad {
	CTL_BAD_NONE = 0,
	CTL_BAD_NUL,  /* a NUL byte in it */
	CTL_BAD_LONG, /* no end within CTL_LINE_MAX */
};

struct ctl_pool {
	int lfd; /* -1: none (no admin listener) */
	uint32_t size;
	struct ctl_client *cl;
	uint64_t dropped[CTL_DROP_REASONS];
};

struct ism_ctl {
	struct ism_master *m;
	struct ctl_pool pool[CTL_POOLS];
	size_t metrics_len; /* of the last /metrics page: the next one is allocated at once */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static const char *const pool_names[CTL_POOLS] = {"control", "admin"};

static int make_parent(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return 0;
	*slash = '\0';
	/* 0755 whatever the umask (the unit's is 0027): the socket's own mode
	 * (0660, root:<group>) keeps others out, and its group must reach it. */
	if (mkdir(dir, 0755) == 0)
		return chmod(dir, 0755) < 0 ? -errno : 0;
	return errno == EEXIST ? 0 : -errno;
}

static int bind_unix(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, ret;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ret = make_parent(path);
	if (ret < 0)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(path); /* a stale socket of an earlier run */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0660) < 0 ||
	    listen(fd, 64) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

static int bind_admin(const struct ism_table *t)
{
	int one = 1, fd, ret;

	fd = socket(t->admin_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* The backlog holds a burst of probes and scrapes beyond the pool. */
	if (bind(fd, (const struct sockaddr *)&t->admin_addr, t->admin_addrlen) < 0 ||
	    listen(fd, 1024) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

static int pool_init(struct ctl_pool *p, uint32_t size)
{
	p->lfd = -1;
	p->size = size;
	p->cl = calloc(size ? size : 1, sizeof(*p->cl));
	if (p->cl == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < size; i++)
		p->cl[i].fd = -1;
	return 0;
}

static void client_drop(struct ctl_client *cl);

static void pool_fini(struct ctl_pool *p)
{
	for (uint32_t i = 0; p->cl != NULL && i < p->size; i++)
		if (p->cl[i].state != CTL_FREE)
			client_drop(&p->cl[i]);
	free(p->cl);
	p->cl = NULL;
	if (p->lfd >= 0)
		close(p->lfd);
	p->lfd = -1;
}

int ism_ctl_create(struct ism_master *m, const struct ism_table *t, struct ism_ctl **out)
{
	struct ism_ctl *c = calloc(1, sizeof(*c));
	struct ctl_pool *cp, *ap;
	int ret;

	if (c == NULL)
		return -ENOMEM;
	c->m = m;
	cp = &c->pool[CTL_CONTROL];
	ap = &c->pool[CTL_ADMIN];
	if (pool_init(cp, ISM_CTL_CONTROL_CLIENTS) < 0 ||
	    pool_init(ap, t->admin_addr.ss_family != 0 ? ISM_CTL_ADMIN_CLIENTS : 0) < 0) {
		ret = -ENOMEM;
		goto out_pools;
	}
	snprintf(c->path, sizeof(c->path), "%s", t->control_socket.p);
	cp->lfd = bind_unix(t->control_socket.p);
	if (cp->lfd < 0) {
		ret = cp->lfd;
		ism_err("control socket %s: %s", t->control_socket.p, strerror(-ret));
		goto out_pools;
	}
	if (t->group.len) {
		/* root:<group> 0660: the operators of the isthmus group may use it. */
		struct group *gr = getgrnam(t->group.p);

		if (gr == NULL || chown(t->control_socket.p, 0, gr->gr_gid) < 0)
			ism_warn("control socket %s: cannot give it to group %s",
				 t->control_socket.p, t->group.p);
	}
	if (t->admin_addr.ss_family != 0) {
		ap->lfd = bind_admin(t);
		if (ap->lfd < 0) {
			ret = ap->lfd;
			ism_err("admin listener: %s", strerror(-ret));
			goto out_unlink;
		}
	}
	*out = c;
	return 0;
out_unlink:
	unlink(c->path);
out_pools:
	pool_fini(cp);
	pool_fini(ap);
	free(c);
	return ret;
}

void ism_ctl_destroy(struct ism_ctl *c)
{
	if (c == NULL)
		return;
	for (int p = 0; p < CTL_POOLS; p++)
		pool_fini(&c->pool[p]);
	unlink(c->path);
	free(c);
}

size_t ism_ctl_pollfds(const struct ism_ctl *c, struct pollfd *pfd, size_t max)
{
	size_t n = 0;

	if (c == NULL || max < CTL_POOLS)
		return 0;
	for (int p = 0; p < CTL_POOLS; p++)
		pfd[n++] = (struct pollfd){.fd = c->pool[p].lfd, .events = POLLIN};
	for (int p = 0; p < CTL_POOLS; p++)
		for (uint32_t i = 0; i < c->pool[p].size && n < max; i++) {
			const struct ctl_client *cl = &c->pool[p].cl[i];
			short ev = cl->state == CTL_READING   ? POLLIN
				   : cl->state == CTL_WRITING ? POLLOUT
							      : 0;

			pfd[n++] = (struct pollfd){.fd = cl->fd, .events = ev};
		}
	return n;
}

int ism_ctl_timeout_ms(const struct ism_ctl *c, uint64_t now, int cap)
{
	uint64_t t = cap > 0 ? (uint64_t)cap : 0;

	for (int p = 0; c != NULL && p < CTL_POOLS; p++)
		for (uint32_t i = 0; i < c->pool[p].size; i++) {
			const struct ctl_client *cl = &c->pool[p].cl[i];

			if (cl->state != CTL_FREE && cl->deadline)
				t = cl->deadline <= now	     ? 0
				    : cl->deadline - now < t ? cl->deadline - now
							     : t;
		}
	return (int)t;
}

/* ---------- metrics ---------- */

static void metric(struct ism_reply *r, const char *name, const char *type, const char *help,
		   unsigned long long v)
{
	ism_say(r, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, v);
}

/* One endpoint family: "<service>|<addr>:<port>" keys become labels. */
static void endpoint_family(struct ism_reply *r, const struct ism_shm_hdr *h, const char *name,
			    const char *type, const char *help, int which)
{
	ism_say(r, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	for (int i = 0; i < ISM_MAX_ENDPOINTS; i++) {
		const struct ism_ep_state *e = &h->eps[i];
		const char *key = h->ep_keys[i];
		const char *bar = strchr(key, '|');
		unsigned long long v;

		if (!atomic_load(&e->in_use) || bar == NULL)
			continue;
		switch (which) {
		case 0:
			v = atomic_load(&e->health) == ISM_EP_HEALTHY;
			break;
		case 1:
			v = atomic_load(&e->requests);
			break;
		case 2:
			v = atomic_load(&e->failures);
			break;
		case 3:
			v = atomic_load(&e->inflight);
			break;
		case 4:
			v = atomic_load(&e->hc_checks);
			break;
		case 6:
			v = atomic_load(&e->ejections);
			break;
		case 7:
			v = atomic_load(&e->ejected) != 0;
			break;
		default:
			v = atomic_load(&e->hc_failures);
			break;
		}
		ism_say(r, "%s{service=\"%.*s\",endpoint=\"%s\"} %llu\n", name, (int)(bar - key),
			key, bar + 1, v);
	}
}

static void latency_histogram(struct ism_reply *r, const struct ism_worker_stats *st)
{
	static const uint32_t bounds[ISM_LAT_BUCKETS] = ISM_LAT_BOUNDS_MS;
	uint64_t cum = 0;

	ism_say(r, "# HELP isthmus_request_duration_seconds Time from a complete request head to "
		   "the end of its response.\n# TYPE isthmus_request_duration_seconds histogram\n");
	for (int b = 0; b < ISM_LAT_BUCKETS; b++) {
		cum += st->latency_bucket[b];
		if (bounds[b] == UINT32_MAX)
			ism_say(r, "isthmus_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
				(unsigned long long)cum);
		else
			ism_say(r, "isthmus_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
				bounds[b] / 1000.0, (unsigned long long)cum);
	}
	ism_say(r,
		"isthmus_request_duration_seconds_sum %.3f\nisthmus_request_duration_seconds_count "
		"%llu\n",
		st->latency_sum_ms / 1000.0, (unsigned long long)cum);
}

/* One counter of struct ism_cluster_dyn (at offset off), per cluster. */
static void cluster_counter(struct ism_reply *r, const struct ism_table *t, const char *name,
			    const char *help, size_t off)
{
	ism_say(r, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
	for (uint32_t c = 0; t && c < t->n_clusters; c++) {
		_Atomic uint64_t *v = (_Atomic uint64_t *)((char *)t->clusters[c].dyn + off);

		ism_say(r, "%s{cluster=\"%s\"} %llu\n", name, t->clusters[c].name.p,
			(unsigned long long)atomic_load(v));
	}
}

/* Per cluster, for the published generation (they start again at a reload, as
 * Prometheus counters may). */
/* Whether route rt already appeared in an earlier vhost of listener l (before
 * vhost v of set): a VirtualService's routes are one object for all its vhosts. */
static bool route_listed(const struct ism_listener *l, uint32_t set, uint32_t v,
			 const struct ism_route *rt)
{
	for (uint32_t s = 0; s <= set; s++) {
		uint32_t nv;
		const struct ism_vhost *vh = ism_listener_set(l, s, &nv);

		for (uint32_t j = 0; j < (s == set ? v : nv); j++)
			if (rt >= vh[j].routes && rt < vh[j].routes + vh[j].n_routes)
				return true;
	}
	return false;
}

static void cluster_families(struct ism_master *m, struct ism_reply *r)
{
	static const char *const classes[] = {"", "1xx", "2xx", "3xx", "4xx", "5xx"};
	const struct ism_table *t = ism_shm_current(&m->shm);

	ism_say(r, "# HELP isthmus_cluster_responses_total Responses by cluster and status class.\n"
		   "# TYPE isthmus_cluster_responses_total counter\n");
	for (uint32_t c = 0; t && c < t->n_clusters; c++)
		for (int k = 1; k <= 5; k++)
			ism_say(r,
				"isthmus_cluster_responses_total{cluster=\"%s\",code_class=\"%s\"} "
				"%llu\n",
				t->clusters[c].name.p, classes[k],
				(unsigned long long)atomic_load(&t->clusters[c].dyn->responses[k]));
	ism_say(r,
		"# HELP isthmus_listener_responses_total Responses by listener and status class.\n"
		"# TYPE isthmus_listener_responses_total counter\n");
	for (uint32_t l = 0; t && l < t->n_listeners; l++)
		for (int k = 1; k <= 5; k++)
			ism_say(
			    r,
			    "isthmus_listener_responses_total{listener=\"%s\",code_class=\"%s\"} "
			    "%llu\n",
			    t->listeners[l].name.p, classes[k],
			    (unsigned long long)atomic_load(&t->listeners[l].stats->responses[k]));
	ism_say(r, "# HELP isthmus_route_responses_total Responses by route and status class.\n"
		   "# TYPE isthmus_route_responses_total counter\n");
	for (uint32_t l = 0; t && l < t->n_listeners; l++)
		for (uint32_t set = 0; set < ism_listener_sets(&t->listeners[l]); set++) {
			uint32_t nv;
			const struct ism_vhost *vh = ism_listener_set(&t->listeners[l], set, &nv);

			for (uint32_t v = 0; v < nv; v++)
				for (uint32_t i = 0; i < vh[v].n_routes; i++) {
					const struct ism_route *rt = &vh[v].routes[i];

					/* Shared by the vhosts of one VirtualService: once. */
					if (route_listed(&t->listeners[l], set, v, rt))
						continue;
					for (int k = 1; k <= 5; k++)
						ism_say(
						    r,
						    "isthmus_route_responses_total{listener=\"%s\","
						    "route=\"%s\",code_class=\"%s\"} %llu\n",
						    t->listeners[l].name.p, rt->name.p, classes[k],
						    (unsigned long long)atomic_load(
							&rt->stats->responses[k]));
				}
		}
	cluster_counter(r, t, "isthmus_cluster_retries_total", "Retries made, by cluster.",
			offsetof(struct ism_cluster_dyn, retries));
	cluster_counter(r, t, "isthmus_cluster_overflow_total",
			"Requests refused by a connection-pool limit, by cluster.",
			offsetof(struct ism_cluster_dyn, overflow));
}

/* The counters the workers keep in their shared slots, summed over workers. */
struct worker_metric {
	const char *name, *type, *help;
	size_t off; /* in struct ism_worker_stats */
};

#define WM(field, name, type, help)                                                                \
	{                                                                                          \
		name, type, help, offsetof(struct ism_worker_stats, field)                         \
	}
static const struct worker_metric worker_metrics[] = {
    WM(conn_active, "isthmus_connections_active", "gauge", "Client connections open."),
    WM(conn_accepted, "isthmus_connections_accepted_total", "counter",
       "Client connections accepted."),
    WM(conn_rejected, "isthmus_connections_rejected_total", "counter",
       "Client connections closed at once: maxConnectionsPerWorker reached."),
    WM(bytes_in, "isthmus_received_bytes_total", "counter", "Bytes received from clients."),
    WM(bytes_out, "isthmus_sent_bytes_total", "counter", "Bytes sent to clients."),
    WM(upstream_connects, "isthmus_upstream_connects_total", "counter",
       "Upstream connections opened."),
    WM(upstream_connect_fail, "isthmus_upstream_connect_failures_total", "counter",
       "Upstream connections that failed or timed out."),
    WM(upstream_reused, "isthmus_upstream_reused_total", "counter",
       "Requests sent on a pooled upstream connection."),
    WM(tls_handshakes, "isthmus_tls_handshakes_total", "counter",
       "TLS handshakes completed with clients (resumed ones included)."),
    WM(tls_resumed, "isthmus_tls_resumed_total", "counter",
       "Client TLS handshakes that resumed a session (tickets shared by the workers)."),
    WM(tls_handshake_fail, "isthmus_tls_handshake_failures_total", "counter",
       "TLS handshakes failed, with clients or upstreams (no SNI match, no or bad "
       "certificate, protocol)."),
    WM(proxy_protocol_errors, "isthmus_proxy_protocol_errors_total", "counter",
       "Connections closed for a missing or malformed PROXY protocol header."),
    WM(access_log_dropped, "isthmus_access_log_dropped_total", "counter",
       "Access-log lines dropped: buffers full, a write or a syslog send failed."),
    WM(accept_errors, "isthmus_accept_errors_total", "counter",
       "Accepts that failed for lack of descriptors or memory (accepting pauses, then retries)."),
    WM(send_parked, "isthmus_send_parked_total", "counter",
       "Sends a peer could not take at once, moved from the shared receive buffers to the "
       "connection's own memory."),
    WM(recv_buffer_waits, "isthmus_receive_buffer_waits_total", "counter",
       "Receives that found no free shared receive buffer and waited for one."),
    WM(regex_limit, "isthmus_route_regex_limit_total", "counter",
       "Requests answered 500 because a route regex reached its match limit."),
};
#undef WM

static void metrics(struct ism_master *m, struct ism_reply *r)
{
	const struct ism_table *t = ism_shm_current(&m->shm);
	struct rlimit rl;
	static const char *const classes[] = {"", "1xx", "2xx", "3xx", "4xx", "5xx"};
	const struct ism_shm_hdr *h = m->shm.hdr;
	struct ism_worker_stats st;

	ism_shm_stats_sum(&m->shm, &st);
	metric(r, "isthmus_requests_total", "counter", "Requests parsed by the workers.",
	       (unsigned long long)st.requests);
	ism_say(r, "# HELP isthmus_responses_total Responses sent, by status class.\n"
		   "# TYPE isthmus_responses_total counter\n");
	for (int i = 1; i <= 5; i++)
		ism_say(r, "isthmus_responses_total{code_class=\"%s\"} %llu\n", classes[i],
			(unsigned long long)st.resp_class[i]);
	latency_histogram(r, &st);
	cluster_families(m, r);
	for (size_t i = 0; i < sizeof(worker_metrics) / sizeof(worker_metrics[0]); i++) {
		const struct worker_metric *wm = &worker_metrics[i];

		metric(r, wm->name, wm->type, wm->help,
		       (unsigned long long)atomic_load(
			   (const _Atomic uint64_t *)((const char *)&st + wm->off)));
	}
	metric(r, "isthmus_config_generation", "gauge", "Generation of the configuration in use.",
	       (unsigned long long)m->gen);
	metric(r, "isthmus_reloads_total", "counter", "Successful reloads.",
	       (unsigned long long)atomic_load(&h->reloads));
	metric(r, "isthmus_reload_failures_total", "counter", "Refused reloads.",
	       (unsigned long long)atomic_load(&h->reload_failures));
	metric(r, "isthmus_workers", "gauge", "Worker processes configured.",
	       (unsigned long long)m->n_workers);
	metric(r, "isthmus_max_connections_per_worker", "gauge",
	       "Client connections a worker takes (spec.limits.maxConnectionsPerWorker, or the "
	       "default derived from the open-file limit).",
	       (unsigned long long)(t ? t->limits.max_connections : 0));
	metric(r, "isthmus_open_files_limit", "gauge",
	       "The open-file limit (RLIMIT_NOFILE) the workers run with.",
	       (unsigned long long)(getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 0));
	metric(r, "isthmus_worker_hangs_total", "counter",
	       "Workers killed (and restarted) for a heartbeat older than 5 s.",
	       (unsigned long long)m->worker_hangs);
	metric(r, "isthmus_ready", "gauge", "1 while serving (the readiness check answers 200).",
	       (unsigned long long)ism_master_ready(m));
	endpoint_family(r, h, "isthmus_endpoint_healthy", "gauge",
			"1 when the endpoint may be picked (active health).", 0);
	endpoint_family(r, h, "isthmus_endpoint_requests_total", "counter",
			"Requests sent to the endpoint.", 1);
	endpoint_family(r, h, "isthmus_endpoint_failures_total", "counter",
			"Connect failures, resets and 5xx responses from the endpoint.", 2);
	endpoint_family(r, h, "isthmus_endpoint_requests_in_flight", "gauge",
			"Requests in flight to the endpoint, all workers.", 3);
	endpoint_family(r, h, "isthmus_health_checks_total", "counter",
			"Active health checks run against the endpoint.", 4);
	endpoint_family(r, h, "isthmus_health_check_failures_total", "counter",
			"Active health checks that failed.", 5);
	endpoint_family(r, h, "isthmus_endpoint_ejections_total", "counter",
			"Outlier-detection ejections of the endpoint.", 6);
	endpoint_family(r, h, "isthmus_endpoint_ejected", "gauge",
			"1 while the endpoint is ejected by outlier detection.", 7);
}

/* The control socket's and the admin listener's own clients. */
static void ctl_metrics(const struct ism_ctl *c, struct ism_reply *r)
{
	static const char *const reasons[CTL_DROP_REASONS] = {"pool_full", "timeout", "memory"};

	ism_say(r, "# HELP isthmus_ctl_clients_dropped_total Control-socket and admin-listener "
		   "clients closed before their answer was sent: their slot went to a new client "
		   "(pool_full), or they were too slow to send the request or read the answer "
		   "(timeout), or their answers with the others' went over the memory budget "
		   "(memory).\n# TYPE isthmus_ctl_clients_dropped_total counter\n");
	for (int p = 0; p < CTL_POOLS; p++)
		for (int k = 0; k < CTL_DROP_REASONS; k++)
			ism_say(r,
				"isthmus_ctl_clients_dropped_total{listener=\"%s\",reason=\"%s\"} "
				"%llu\n",
				pool_names[p], reasons[k],
				(unsigned long long)c->pool[p].dropped[k]);
}

/* The status line and header of an admin answer whose body is body. */
static void http_head(struct ism_reply *head, int status, const char *ctype,
		      const struct ism_reply *body)
{
	const char *reason = status == 200   ? "OK"
			     : status == 400 ? "Bad Request"
			     : status == 404 ? "Not Found"
			     : status == 405 ? "Method Not Allowed"
			     : status == 431 ? "Request Header Fields Too Large"
			     : status == 503 ? "Service Unavailable"
					     : "Internal Server Error";

	ism_say(head,
		"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\n"
		"connection: close\r\n\r\n",
		status, reason, ctype, body->len);
}

/* Allocated at once at the size of the last page (and an eighth): a page of
 * megabytes is not copied at each doubling. */
static void metrics_page(struct ism_ctl *c, struct ism_reply *body)
{
	size_t hint = c->metrics_len + c->metrics_len / 8;

	ism_reply_reserve(body, hint < CTL_REPLY_MAX ? hint : CTL_REPLY_MAX);
	metrics(c->m, body);
	ctl_metrics(c, body);
	c->metrics_len = body->len;
}

/* The admin pages: readiness for the L4 balancer and Prometheus metrics. A
 * page larger than CTL_REPLY_MAX is a 500, never a cut 200. */
static void admin_page(struct ism_ctl *c, const char *req, struct ism_reply *head,
		       struct ism_reply *body)
{
	const char *ctype = "text/plain";
	int status = 200;

	if (strncmp(req, "GET /healthz/ready ", 19) == 0 ||
	    strncmp(req, "HEAD /healthz/ready ", 20) == 0) {
		status = ism_master_ready(c->m) ? 200 : 503;
		ism_say(body, "%s\n", status == 200 ? "ready" : "not ready");
	} else if (strncmp(req, "GET /metrics ", 13) == 0) {
		ctype = "text/plain; version=0.0.4";
		metrics_page(c, body);
	} else if (strncmp(req, "GET ", 4) != 0 && strncmp(req, "HEAD ", 5) != 0) {
		status = 405;
		ism_say(body, "method not allowed\n");
	} else {
		status = 404;
		ism_say(body, "not found: /healthz/ready, /metrics\n");
	}
	if (body->incomplete) {
		ism_warn("admin listener: a page over the %u MiB limit (or no memory): 500",
			 CTL_REPLY_MAX >> 20);
		ism_reply_free(body);
		status = 500;
		ctype = "text/plain";
		ism_say(body, "the page is larger than the %u MiB limit: not sent\n",
			CTL_REPLY_MAX >> 20);
	}
	http_head(head, status, ctype, body);
	if (strncmp(req, "HEAD ", 5) == 0)
		ism_reply_free(body);
}

/* ---------- clients ---------- */

static void client_drop(struct ctl_client *cl)
{
	if (cl->fd >= 0)
		close(cl->fd);
	ism_reply_free(&cl->head);
	ism_reply_free(&cl->body);
	*cl = (struct ctl_client){.state = CTL_FREE, .fd = -1};
}

/* Writes what the socket takes now (head, then body); the rest when poll says
 * POLLOUT. The client is dropped when all is sent or it went away. */
static void client_send(struct ctl_client *cl)
{
	size_t total = cl->head.len + cl->body.len;

	while (cl->sent < total) {
		struct iovec iov[2];
		struct msghdr msg = {.msg_iov = iov};
		ssize_t n;

		if (cl->sent < cl->head.len) {
			iov[msg.msg_iovlen++] =
			    (struct iovec){cl->head.p + cl->sent, cl->head.len - cl->sent};
			if (cl->body.len)
				iov[msg.msg_iovlen++] = (struct iovec){cl->body.p, cl->body.len};
		} else {
			size_t off = cl->sent - cl->head.len;

			iov[msg.msg_iovlen++] =
			    (struct iovec){cl->body.p + off, cl->body.len - off};
		}
		n = sendmsg(cl->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			cl->sent += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		break; /* the client went away */
	}
	client_drop(cl);
}

/* A command ends at a newline (or EOF); an admin request at its empty line. */
static int complete(const struct ctl_client *cl, int http)
{
	if (http)
		return memmem(cl->line, cl->len, "\r\n\r\n", 4) != NULL ||
		       memmem(cl->line, cl->len, "\n\n", 2) != NULL;
	return memchr(cl->line, '\n', cl->len) != NULL;
}

/* A NUL byte in a command line or a request head: the string functions that
 * read it would see a shorter text than was sent ("reload\0..." must not be
 * a reload), so it is refused instead. */
static int has_nul(const struct ctl_client *cl, int http)
{
	const char *nl = http ? NULL : memchr(cl->line, '\n', cl->len);

	return memchr(cl->line, '\0', nl ? (size_t)(nl - cl->line) : cl->len) != NULL;
}

/* The answers being written hold at most CTL_REPLY_BUDGET bytes: past it the
 * oldest of them (other than keep, the newest) are dropped. */
static void enforce_budget(struct ism_ctl *c, const struct ctl_client *keep)
{
	for (;;) {
		struct ctl_client *oldest = NULL;
		struct ctl_pool *op = NULL;
		size_t held = 0;

		for (int id = 0; id < CTL_POOLS; id++)
			for (uint32_t i = 0; i < c->pool[id].size; i++) {
				struct ctl_client *cl = &c->pool[id].cl[i];

				if (cl->state != CTL_WRITING)
					continue;
				held += cl->head.cap + cl->body.cap;
				if (cl != keep && (oldest == NULL || cl->since < oldest->since)) {
					oldest = cl;
					op = &c->pool[id];
				}
			}
		if (held <= CTL_REPLY_BUDGET || oldest == NULL)
			return;
		op->dropped[CTL_DROP_MEMORY]++;
		client_drop(oldest);
	}
}

/* The request is in (or refused: nul, too long): the answer is built now and
 * goes out as the client reads it. */
static void client_answer(struct ism_ctl *c, struct ctl_client *cl, int http, enum ctl_bad bad)
{
	static const char *const why[] = {"", "contains a NUL byte", "is too long"};
	struct ism_reply *r = &cl->body;

	ism_reply_init(&cl->head, 1024);
	ism_reply_init(r, CTL_REPLY_MAX);
	if (bad != CTL_BAD_NONE && http) {
		ism_say(r, "the request %s: refused\n", why[bad]);
		http_head(&cl->head, bad == CTL_BAD_NUL ? 400 : 431, "text/plain", r);
	} else if (bad != CTL_BAD_NONE) {
		ism_say(r, "error: the command line %s: refused\n", why[bad]);
	} else if (http) {
		admin_page(c, cl->line, &cl->head, r);
	} else {
		cl->ticket = ism_cmd_run(c->m, cl->line, r, &cl->json);
		if (cl->ticket != 0) {
			cl->state = CTL_WAITING;
			cl->deadline = 0;
			return;
		}
		if (r->incomplete) {
			ism_reply_free(r);
			ism_say(r, "error: the answer is larger than the %u MiB limit: not sent\n",
				CTL_REPLY_MAX >> 20);
		}
	}
	if (r->incomplete || cl->head.incomplete) { /* no memory even for the error */
		client_drop(cl);
		return;
	}
	cl->state = CTL_WRITING;
	cl->sent = 0;
	cl->deadline = ism_now_ms() + ISM_CTL_ANSWER_MS;
	enforce_budget(c, cl);
	client_send(cl);
}

static void client_read(struct ism_ctl *c, struct ctl_client *cl, int http)
{
	ssize_t r = recv(cl->fd, cl->line + cl->len, sizeof(cl->line) - 1 - cl->len, MSG_DONTWAIT);
	enum ctl_bad bad = CTL_BAD_NONE;
	int done;

	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (r < 0) {
		client_drop(cl);
		return;
	}
	cl->len += (uint32_t)r;
	cl->line[cl->len] = '\0';
	done = complete(cl, http);
	if (has_nul(cl, http))
		bad = CTL_BAD_NUL;
	else if (!done && cl->len == sizeof(cl->line) - 1)
		bad = CTL_BAD_LONG;
	if (!done && bad == CTL_BAD_NONE && r > 0)
		return;
	if (r == 0 && cl->len == 0) {
		client_drop(cl); /* connected and left */
		return;
	}
	if (!http && bad == CTL_BAD_NONE)
		cl->line[strcspn(cl->line, "\r\n")] = '\0';
	client_answer(c, cl, http, bad);
}

static void client_event(struct ism_ctl *c, struct ctl_client *cl, int http, short revents)
{
	switch (cl->state) {
	case CTL_READING:
		client_read(c, cl, http);
		break;
	case CTL_WRITING:
		if (revents & (POLLERR | POLLHUP | POLLNVAL))
			client_drop(cl);
		else
			client_send(cl);
		break;
	case CTL_WAITING:
		if (revents & (POLLERR | POLLHUP | POLLNVAL))
			client_drop(cl); /* gone: the reload goes on */
		break;
	case CTL_FREE:
	default:
		ISM_BUG_ON(1);
	}
}

/* A slot for a new client: a free one, else that of the oldest client still
 * sending its request (an idle connection), else that of the oldest one still
 * reading its answer (the slowest reader). */
static struct ctl_client *pool_slot(struct ctl_pool *p)
{
	struct ctl_client *oldest[CTL_WRITING + 1] = {NULL};

	for (uint32_t i = 0; i < p->size; i++) {
		struct ctl_client *cl = &p->cl[i];

		if (cl->state == CTL_FREE)
			return cl;
		if (cl->state == CTL_WAITING)
			continue;
		if (oldest[cl->state] == NULL || cl->since < oldest[cl->state]->since)
			oldest[cl->state] = cl;
	}
	for (int s = CTL_READING; s <= CTL_WRITING; s++)
		if (oldest[s] != NULL) {
			p->dropped[CTL_DROP_FULL]++;
			client_drop(oldest[s]);
			return oldest[s];
		}
	return NULL;
}

/* At most a pool's worth of connections per turn, so a flood of connections
 * cannot keep the loop accepting. */
static void accept_from(struct ism_ctl *c, int id, uint64_t now)
{
	struct ctl_pool *p = &c->pool[id];

	for (uint32_t k = 0; k < p->size; k++) {
		int fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct ctl_client *cl;

		if (fd < 0)
			return;
		cl = pool_slot(p);
		if (cl == NULL) {
			close(fd);
			continue;
		}
		*cl = (struct ctl_client){.state = CTL_READING,
					  .fd = fd,
					  .since = now,
					  .deadline = now + ISM_CTL_REQUEST_MS};
		/* The request usually came with the connection. */
		client_read(c, cl, id == CTL_ADMIN);
	}
}

void ism_ctl_run(struct ism_ctl *c, const struct pollfd *pfd, size_t n)
{
	uint64_t now = ism_now_ms();
	size_t k = CTL_POOLS;

	if (c == NULL || n < CTL_POOLS)
		return;
	for (int id = 0; id < CTL_POOLS; id++) {
		struct ctl_pool *p = &c->pool[id];

		for (uint32_t i = 0; i < p->size && k < n; i++, k++) {
			struct ctl_client *cl = &p->cl[i];

			if (cl->state != CTL_FREE && pfd[k].fd == cl->fd && pfd[k].revents)
				client_event(c, cl, id == CTL_ADMIN, pfd[k].revents);
			if (cl->state != CTL_FREE && cl->deadline && cl->deadline <= now) {
				p->dropped[CTL_DROP_TIMEOUT]++;
				client_drop(cl);
			}
		}
	}
	for (int id = 0; id < CTL_POOLS; id++)
		if (c->pool[id].lfd >= 0 && (pfd[id].revents & POLLIN))
			accept_from(c, id, now);
}

void ism_ctl_reload_done(struct ism_ctl *c, uint64_t ticket, const char *report)
{
	struct ctl_pool *p;

	if (c == NULL)
		return;
	p = &c->pool[CTL_CONTROL];
	for (uint32_t i = 0; i < p->size; i++) {
		struct ctl_client *cl = &p->cl[i];

		if (cl->state != CTL_WAITING || cl->ticket != ticket)
			continue;
		ism_cmd_reload_answer(report, cl->json, &cl->body);
		if (cl->body.incomplete) {
			client_drop(cl);
			continue;
		}
		cl->state = CTL_WRITING;
		cl->sent = 0;
		cl->deadline = ism_now_ms() + ISM_CTL_ANSWER_MS;
		client_send(cl);
	}
}
