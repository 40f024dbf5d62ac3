/* SPDX-License-Identifier: Apache-2.0 */
/* Reloads off the loop: see master/reload.h. */
#include "master/reload.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "health/health.h"
#include "lib/log.h"
#include "master/commands.h"
#include "master/ctl.h"
#include "master/master-t.h"
#include "master/jwks.h"
#include "master/resolve.h"

int ism_reload_init(struct ism_master *m)
{
	struct ism_loader *l = &m->loader;

	*l = (struct ism_loader){.state = ISM_LOADER_IDLE, .built = {.slot = -1}};
	l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	return l->efd < 0 ? -errno : 0;
}

int ism_reload_fd(const struct ism_master *m)
{
	return m->loader.efd;
}

bool ism_reload_busy(const struct ism_master *m)
{
	return m->loader.state != ISM_LOADER_IDLE;
}

bool ism_reload_queued(const struct ism_master *m)
{
	return m->loader.queued != 0;
}

/* The thread: the file (or the running text) to a model, nothing else; for
 * a key set refresh, the fetches first (the running text only when one
 * changed). */
static void *loader_main(void *arg)
{
	struct ism_loader *l = arg;
	const char *text = l->text;
	size_t len = l->len;
	uint64_t one = 1;

	l->ret = 0;
	if (l->source == ISM_LOAD_JWKS)
		l->jwks_same = !ism_jwks_cache_refresh(l->jwks, &l->jwks_failed);
	if (l->source == ISM_LOAD_JWKS && l->jwks_same) {
		l->ret = 1;
		goto out;
	}
	if (l->source == ISM_LOAD_FILE) {
		l->ret = ism_master_read_file(l->path, &l->file_text, &l->file_len, l->d);
		text = l->file_text;
		len = l->file_len;
	}
	if (l->ret == 0)
		l->ret = ism_conf_load_buf(l->path, text, len, &l->conf, l->d);
out:
	if (write(l->efd, &one, sizeof(one)) < 0)
		ism_err("reload: cannot wake the master: %s", strerror(errno));
	return NULL;
}

static int start(struct ism_master *m, enum ism_load_source src, uint64_t ticket)
{
	struct ism_loader *l = &m->loader;
	sigset_t all, old;
	int ret;

	l->d = calloc(1, sizeof(*l->d));
	if (l->d == NULL)
		return -ENOMEM;
	ism_diags_init(l->d);
	l->source = (uint8_t)src;
	l->ticket = ticket;
	l->jwks = m->jwks;
	l->jwks_same = l->jwks_failed = false;
	ism_jwks_cache_begin_load(m->jwks);
	l->path = m->conf_path;
	l->text = m->conf_text;
	l->len = m->conf_len;
	l->file_text = NULL;
	l->conf = NULL;
	l->started_ms = ism_now_ms();
	if (src == ISM_LOAD_FILE)
		ism_master_notify_reloading();
	/* The signals go to the loop's signalfd, never to this thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	ret = pthread_create(&l->thread, NULL, loader_main, l);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret != 0) {
		free(l->d);
		l->d = NULL;
		return -ret;
	}
	l->state = ISM_LOADER_RUNNING;
	return 0;
}

uint64_t ism_reload_request(struct ism_master *m, enum ism_load_source src, struct ism_reply *why)
{
	struct ism_loader *l = &m->loader;
	uint64_t ticket;
	int ret;

	if (m->stopping) {
		ism_warn("reload refused: isthmus is stopping");
		if (why != NULL)
			ism_say(why, "reload refused: isthmus is stopping\n");
		return 0;
	}
	if (l->state != ISM_LOADER_IDLE) {
		if (src != ISM_LOAD_FILE)
			return 0;
		if (l->queued == 0)
			l->queued = ++l->last_ticket;
		ism_info("reload: one is running; this one runs next");
		return l->queued;
	}
	ticket = ++l->last_ticket;
	ret = start(m, src, ticket);
	if (ret < 0) {
		ism_err("reload refused: cannot start loading: %s", strerror(-ret));
		atomic_fetch_add(&m->shm.hdr->reload_failures, 1);
		if (why != NULL)
			ism_say(why, "reload refused: cannot start loading: %s\n", strerror(-ret));
		return 0;
	}
	return ticket;
}

/* Every diagnostic of d, one per line (64 kept, about 1.3 kB each at most). */
static void say_diags(struct ism_reply *r, const struct ism_diags *d)
{
	size_t len = sizeof(d->items) / sizeof(d->items[0]) * 1400;
	char *buf = malloc(len);

	if (buf == NULL) {
		ism_say(r, "(out of memory formatting the diagnostics)\n");
		return;
	}
	ism_diags_format(buf, len, d);
	ism_say(r, "%s", buf);
	free(buf);
}

/* A reload's outcome: counted, in the events and the log, and to the clients
 * that wait for ticket. */
static void report_reload(struct ism_master *m, uint64_t ticket, int ret, const struct ism_diags *d,
			  uint64_t ms)
{
	struct ism_reply r;

	ism_reply_init(&r, 1u << 20);
	m->reload_refused = ret < 0;
	if (ret < 0) {
		atomic_fetch_add(&m->shm.hdr->reload_failures, 1);
		ism_event_add(&m->events, "reload",
			      "refused (%zu errors); generation %llu keeps serving", d->n_errors,
			      (unsigned long long)m->gen);
		ism_say(&r,
			"reload refused; the running configuration (generation %llu) keeps "
			"serving:\n",
			(unsigned long long)m->gen);
		say_diags(&r, d);
		ism_log_lines(ISM_LOG_ERR, r.p ? r.p : "reload refused");
	} else {
		atomic_fetch_add(&m->shm.hdr->reloads, 1);
		ism_event_add(&m->events, "reload", "generation %llu published",
			      (unsigned long long)m->gen);
		ism_say(&r, "reload: generation %llu published\n", (unsigned long long)m->gen);
		ism_notice("reload: generation %llu published (%llu ms)",
			   (unsigned long long)m->gen, (unsigned long long)ms);
		/* Its warnings go to whoever asked too (isthmus -c shows them):
		 * one may say every request of a route will fail. */
		if (d->n)
			say_diags(&r, d);
		if (d->n) {
			char warn[2048];

			ism_diags_format(warn, sizeof(warn), d);
			ism_log_lines(ISM_LOG_WARN, warn);
		}
	}
	ism_ctl_reload_done(m->ctl, ticket, r.p ? r.p : "reload refused: out of memory\n");
	ism_reply_free(&r);
}

/* The diagnostics of a refused publish, a log line each. */
static void log_diags(const struct ism_diags *d)
{
	char buf[4096];

	ism_diags_format(buf, sizeof(buf), d);
	ism_log_lines(ISM_LOG_ERR, buf);
}

/* A certificate rotation's outcome. */
static void report_rotation(struct ism_master *m, int ret, const struct ism_diags *d)
{
	if (ret < 0) {
		ism_err("certificate reload refused, the current certificates keep serving:");
		log_diags(d);
		ism_event_add(&m->events, "certificates", "reload refused: %s",
			      d->n ? d->items[0].msg : "error");
		atomic_fetch_add(&m->shm.hdr->reload_failures, 1);
	} else {
		ism_notice("certificates reloaded: generation %llu published",
			   (unsigned long long)m->gen);
		ism_event_add(&m->events, "certificates", "generation %llu published",
			      (unsigned long long)m->gen);
		atomic_fetch_add(&m->shm.hdr->reloads, 1);
	}
}

/* A publish for changed DNS answers: not an operator's reload, so not counted
 * in isthmus_reloads_total; the answers' changes are events of their own. One
 * refused (the running text no longer loads: a certificate file gone, say) is
 * said once and tried again every DNS_RETRY_MS, until one goes through. */
#define DNS_RETRY_MS 5000

static void report_dns(struct ism_master *m, int ret, const struct ism_diags *d)
{
	if (ret < 0) {
		m->dns_next_publish = ism_now_ms() + DNS_RETRY_MS;
		if (m->dns_publish_failing)
			return;
		m->dns_publish_failing = true;
		ism_err("dns: the new answers cannot be published; generation %llu keeps "
			"serving, tried again every %u s:",
			(unsigned long long)m->gen, DNS_RETRY_MS / 1000);
		log_diags(d);
		ism_event_add(&m->events, "dns", "publish refused: %s",
			      d->n ? d->items[0].msg : "error");
	} else {
		m->dns_publish_failing = false;
		ism_notice("dns: generation %llu published with the new answers",
			   (unsigned long long)m->gen);
		ism_event_add(&m->events, "dns", "generation %llu published",
			      (unsigned long long)m->gen);
	}
}

/* A publish for changed key sets, said as a DNS one. */
static void report_jwks(struct ism_master *m, int ret, const struct ism_diags *d)
{
	if (ret < 0) {
		ism_err("jwks: the changed key sets cannot be published; generation %llu keeps "
			"serving:",
			(unsigned long long)m->gen);
		log_diags(d);
		ism_event_add(&m->events, "jwks", "publish refused: %s",
			      d->n ? d->items[0].msg : "error");
	} else {
		ism_notice("jwks: generation %llu published with the changed key sets",
			   (unsigned long long)m->gen);
		ism_event_add(&m->events, "jwks", "generation %llu published",
			      (unsigned long long)m->gen);
	}
}

/* A publish after a worker died holding part of the clusters' counts. */
static void report_heal(struct ism_master *m, int ret, const struct ism_diags *d)
{
	if (ret < 0) {
		/* Tried again until a publish takes (its generation slots all
		 * held by draining workers, a file of the running text away):
		 * the counts left would keep a limit reached for ever. */
		if (!m->heal_failing)
			ism_warn("a dead worker's share of the clusters' counts stays until a "
				 "publish succeeds (tried every %u ms): %s",
				 ISM_HEAL_RETRY_MS, d->n ? d->items[0].msg : "error");
		m->heal_failing = true;
		m->heal_pending = true;
		m->heal_after = ism_now_ms() + ISM_HEAL_RETRY_MS;
		return;
	}
	m->heal_failing = false;
	ism_notice("generation %llu published: a worker died holding requests, its share of "
		   "the clusters' counts is left behind",
		   (unsigned long long)m->gen);
	ism_event_add(&m->events, "worker",
		      "generation %llu published without a dead worker's "
		      "share of the clusters' counts",
		      (unsigned long long)m->gen);
}

/* The load is over: published (or refused), reported, and the queued one
 * started. */
static void finish(struct ism_master *m)
{
	struct ism_loader *l = &m->loader;
	uint64_t ticket = l->ticket;
	enum ism_load_source src = l->source;
	int ret = l->ret;

	l->state = ISM_LOADER_IDLE;
	if (src == ISM_LOAD_JWKS && ret > 0) {
		free(l->d); /* no key set changed: nothing to publish */
		l->d = NULL;
		ret = 0;
		goto queued;
	}
	if (ret == 0 && m->stopping) {
		ism_conf_free(l->conf);
		ism_master_build_drop(m, &l->built);
		ism_diag_add(l->d, ISM_DIAG_ERROR, l->path, 0, 0, "", "isthmus is stopping");
		ret = -ECANCELED;
	} else if (ret == 0 && l->built.slot >= 0) {
		ret = ism_master_commit(m, &l->built, l->d); /* frees the model */
	} else if (ret == 0) {
		ret = ism_master_publish(m, l->conf, l->d); /* frees the model */
	}
	l->conf = NULL;
	if (ret == 0) /* what the served file no longer names is not kept */
		ism_jwks_cache_keep_loaded(m->jwks);
	if (src == ISM_LOAD_FILE && ret == 0) {
		ism_master_text_loaded(m, l->file_text, l->file_len);
		l->file_text = NULL;
	}
	free(l->file_text);
	l->file_text = NULL;
	switch (src) {
	case ISM_LOAD_FILE:
		report_reload(m, ticket, ret, l->d, ism_now_ms() - l->started_ms);
		break;
	case ISM_LOAD_TEXT:
		report_rotation(m, ret, l->d);
		break;
	case ISM_LOAD_DNS:
		report_dns(m, ret, l->d);
		break;
	case ISM_LOAD_JWKS:
		report_jwks(m, ret, l->d);
		break;
	case ISM_LOAD_HEAL:
		report_heal(m, ret, l->d);
		break;
	}
	free(l->d);
	l->d = NULL;
queued:
	m->jwks_next = ism_jwks_next(m->jwks, ism_now_ms(), m->jwks_next, src == ISM_LOAD_JWKS,
				     l->jwks_failed);
	ticket = l->queued;
	l->queued = 0;
	if (ticket != 0 && !m->stopping && start(m, ISM_LOAD_FILE, ticket) == 0)
		return;
	if (ticket != 0) {
		struct ism_diags *d = calloc(1, sizeof(*d));

		if (d != NULL) {
			ism_diags_init(d);
			ism_diag_add(d, ISM_DIAG_ERROR, m->conf_path, 0, 0, "", "%s",
				     m->stopping ? "isthmus is stopping" : "cannot start loading");
		}
		if (d != NULL)
			report_reload(m, ticket, -ECANCELED, d, 0);
		free(d);
	}
	if (src == ISM_LOAD_FILE || ticket != 0)
		ism_master_notify_ready(m);
}

/* A reload whose generation has new endpoints with an active health check
 * (a route moved to a checked service) is compiled now and published once
 * their first checks have ended, or their timeouts passed
 * (ISM_LOADER_CHECKING), as Envoy warms a cluster, its first health checks
 * included, before it replaces the one serving: the running generation
 * serves meanwhile, where the new one would answer 503 from endpoints not
 * checked yet. Others are published now. */
static void warm_checks(struct ism_master *m)
{
	struct ism_loader *l = &m->loader;
	uint64_t until, now = ism_now_ms();
	int n;

	if (l->ret != 0 || l->source != ISM_LOAD_FILE || m->stopping) {
		finish(m);
		return;
	}
	l->ret = ism_master_build(m, l->conf, &l->built, l->d); /* takes the model */
	l->conf = NULL;
	if (l->ret < 0) {
		finish(m);
		return;
	}
	n = ism_health_warm(m->health, l->built.t);
	if (n < 0)
		ism_warn("reload: the new endpoints are not checked before the publish: %s",
			 strerror(-n));
	until = ism_master_first_round_until(m);
	if (n <= 0 || until <= now) {
		finish(m);
		return;
	}
	/* The new endpoints' first look (unhealthy, as interned): their first
	 * results are events, as those of a start's endpoints are. */
	ism_events_observe(&m->events, ism_shm_current(&m->shm), &m->shm);
	l->state = ISM_LOADER_CHECKING;
	l->warm_until = until;
	l->warm_ms = (uint32_t)(until - now);
	ism_info("reload: waiting up to %u ms for the first health checks of %d new endpoints",
		 l->warm_ms, n);
}

void ism_reload_run(struct ism_master *m)
{
	struct ism_loader *l = &m->loader;
	uint64_t v;

	if (read(l->efd, &v, sizeof(v)) < 0 || l->state != ISM_LOADER_RUNNING)
		return;
	pthread_join(l->thread, NULL);
	/* A certificate rotation or a DNS publish names what runs already. */
	if (l->ret == 0 && l->source == ISM_LOAD_FILE && !m->stopping) {
		l->warm_ms = ism_master_dns_warm(m, l->conf);
		if (l->warm_ms > 0) {
			l->state = ISM_LOADER_WARMING;
			l->warm_until = ism_now_ms() + l->warm_ms;
			ism_info("reload: waiting up to %u ms for the first answers of new names",
				 l->warm_ms);
			return;
		}
	}
	warm_checks(m);
}

void ism_reload_warm(struct ism_master *m, uint64_t now)
{
	struct ism_loader *l = &m->loader;

	switch (l->state) {
	case ISM_LOADER_IDLE:
	case ISM_LOADER_RUNNING:
		return;
	case ISM_LOADER_WARMING:
		if (!ism_resolver_settled(m->dns) && now < l->warm_until && !m->stopping)
			return;
		ism_resolver_warn_pending(m->dns, l->warm_ms, "publishing");
		warm_checks(m);
		return;
	case ISM_LOADER_CHECKING:
		if (!ism_health_settled(m->health) && now < l->warm_until && !m->stopping)
			return;
		if (!ism_health_settled(m->health) && !m->stopping)
			ism_warn("reload: not every new endpoint had its first health check within "
				 "%u ms; publishing",
				 l->warm_ms);
		finish(m);
		return;
	}
	ISM_BUG_ON(1);
}

int ism_reload_timeout_ms(const struct ism_master *m, uint64_t now, int cap)
{
	const struct ism_loader *l = &m->loader;
	uint64_t due;

	if (l->state != ISM_LOADER_WARMING && l->state != ISM_LOADER_CHECKING)
		return cap;
	due = l->warm_until > now ? l->warm_until - now : 0;
	return due < (uint64_t)cap ? (int)due : cap;
}

void ism_reload_fini(struct ism_master *m)
{
	struct ism_loader *l = &m->loader;

	if (l->state != ISM_LOADER_IDLE) {
		if (l->state == ISM_LOADER_RUNNING)
			pthread_join(l->thread, NULL);
		l->state = ISM_LOADER_IDLE;
		ism_conf_free(l->conf);
		/* the region is gone by now: the slot goes with it */
		ism_conf_free(l->built.conf);
		l->built = (struct ism_build){.slot = -1};
		free(l->file_text);
		free(l->d);
		l->conf = NULL;
		l->file_text = NULL;
		l->d = NULL;
	}
	if (l->efd >= 0)
		close(l->efd);
	l->efd = -1;
}
