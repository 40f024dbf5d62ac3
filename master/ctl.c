/* SPDX-License-Identifier: Apache-2.0 */
/* Control socket and admin listener (master).
 *
 * Both are served from the master's poll loop, one request per connection. A
 * client is a small state machine: it reads its request (bounded by a deadline),
 * then its answer is built and written as the socket takes it (POLLOUT),
 * bounded by another deadline, so a client that stops reading costs a slot and
 * its buffer, never the loop's time. A /metrics page costs the loop most (a
 * page of megabytes with thousands of endpoints): the scrapes wait for the
 * next build, which they share, and builds take at most a share of the loop's
 * time, so a client looping on /metrics cannot starve the health checks and
 * readiness probes the same loop answers. */
#include "master/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/log.h"
#include "master/commands.h"
#include "master/master-t.h"
#include "master/metrics.h"
#include "master/runfile.h"

#define CTL_LINE_MAX	 4096	      /* a command line, or an admin request head */
#define CTL_REPLY_MAX	 (64u << 20)  /* one answer; more is an error, never a cut text */
#define CTL_REPLY_BUDGET (256u << 20) /* all the answers being written */
/* After a /metrics build of T ms, the next starts T * CTL_METRICS_PAUSE ms
 * later at the earliest: builds take at most a fifth of the loop's time. */
#define CTL_METRICS_PAUSE 4

enum ctl_state {
	CTL_FREE = 0,
	CTL_READING, /* until the request is complete: POLLIN */
	CTL_WRITING, /* until the answer is sent: POLLOUT */
	CTL_PENDING, /* for the next /metrics build: only hang-ups polled */
	CTL_WAITING, /* for the reload of its ticket to be over: only hang-ups polled */
};

/* A built /metrics page, shared by the clients it answers. */
struct ctl_page {
	uint32_t refs;
	uint64_t pass; /* enforce_budget's pass that counted it last */
	struct ism_reply text;
};

struct ctl_client {
	enum ctl_state state;
	int fd;
	uint64_t since;	   /* its accept's number (ism_ctl.accepted): the oldest is dropped first */
	uint64_t deadline; /* of the current state */
	uint32_t len;
	uint64_t ticket;	     /* CTL_WAITING: the reload's */
	int json;		     /* CTL_WAITING: the answer in JSON */
	bool head_only;		     /* CTL_PENDING: a HEAD request */
	struct ism_reply head;	     /* the admin answer's status line and header */
	struct ism_reply body;	     /* the page, or the command's answer */
	struct ctl_page *page;	     /* else the /metrics page sent as the body */
	size_t sent;		     /* of head, then body */
	char line[CTL_LINE_MAX + 1]; /* 4095 bytes, the newline and a NUL */
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
	CTL_DROP_PEER,	 /* a process of the workers' user (control socket) */
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
	/* An accept found no descriptor with no client of the pool to give one
	 * up: the listener is not polled until then (it would wake the loop at
	 * once, again and again). */
	uint64_t accept_after;
};

struct ism_ctl {
	struct ism_master *m;
	struct ctl_pool pool[CTL_POOLS];
	uint64_t accepted;     /* clients accepted, both pools (their since) */
	size_t metrics_len;    /* of the last /metrics page: the next one is allocated at once */
	uint64_t metrics_next; /* the earliest time of the next /metrics build */
	uint64_t metrics_builds;
	uint64_t budget_pass; /* enforce_budget's: each shared page is counted once */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t dev; /* the socket file bound at path: only it is removed at the end */
	ino_t ino;
	bool adopted; /* the socket was handed over by an upgrading master */
	bool paused;  /* nothing is accepted (ism_ctl_pause) */
};

static const char *const pool_names[CTL_POOLS] = {"control", "admin"};
_Static_assert(CTL_POOLS == ISM_CTL_LISTENERS, "a listener per pool");

/* The control socket at path: the one an upgrading master handed over to up
 * (*adopted set), or one bound now. */
static int bind_unix(struct ism_upgrade *up, const char *path, bool *adopted, char *bad, size_t cap)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	mode_t mask;
	int fd, ret;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = ism_upgrade_adopt_addr(up, (struct sockaddr *)&sa, sizeof(sa));
	*adopted = fd >= 0;
	if (fd >= 0)
		return fd;
	ret = ism_runfile_make_parent(path, bad, cap);
	if (ret < 0)
		return ret;
	/* Only a socket is ever removed there: a file named by mistake stays. */
	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
		return -ENOTSOCK;
	/* A socket a running master answers on is its, not to be taken (a
	 * second start on the same file would leave it without one); one
	 * nobody answers is a stale one of an earlier run. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ret = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : errno;
	close(fd);
	if (ret == 0 || ret == EAGAIN)
		return -EADDRINUSE;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	/* Made 0660 as it is bound (a chmod by path after would follow a
	 * link put in its place meanwhile). */
	mask = umask(0117);
	ret = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(mask);
	if (ret < 0 || listen(fd, 64) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

/* Removes the control socket at c->path if it is still the one c bound:
 * another master may have taken the path since. One handed over by an
 * upgrade that did not start stays, for the wait mode's next try. */
static void unlink_own(const struct ism_ctl *c)
{
	struct stat st;

	if (c->adopted && c->m->up.n_listen > 0)
		return;
	if (c->ino != 0 && stat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
		unlink(c->path);
}

/* The admin listener: as bind_unix. */
static int bind_admin(struct ism_upgrade *up, const struct ism_table *t)
{
	int one = 1, fd, ret;

	fd = ism_upgrade_adopt_addr(up, (const struct sockaddr *)&t->admin_addr, t->admin_addrlen);
	if (fd >= 0)
		return fd;
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
	char bad[PATH_MAX], why[PATH_MAX + 128];
	struct stat st;
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
	cp->lfd = bind_unix(&m->up, t->control_socket.p, &c->adopted, bad, sizeof(bad));
	if (cp->lfd < 0) {
		ret = cp->lfd;
		ism_err("control socket %s: %s", t->control_socket.p,
			ret == -EADDRINUSE ? "in use (a running isthmus answers on it)"
			: ret == -ENOTSOCK
			    ? "it exists and is not a socket (only a stale socket is "
			      "replaced)"
			    : ism_runfile_why(ret, bad, why, sizeof(why)));
		goto out_pools;
	}
	if (stat(c->path, &st) == 0) {
		c->dev = st.st_dev;
		c->ino = st.st_ino;
	}
	if (t->group.len) {
		/* root:<group> 0660: the operators of the isthmus group may use it. */
		struct group *gr = getgrnam(t->group.p);

		if (gr == NULL || lchown(t->control_socket.p, 0, gr->gr_gid) < 0)
			ism_warn("control socket %s: cannot give it to group %s",
				 t->control_socket.p, t->group.p);
	}
	if (t->admin_addr.ss_family != 0) {
		ap->lfd = bind_admin(&m->up, t);
		if (ap->lfd < 0) {
			ret = ap->lfd;
			ism_err("admin listener: %s", strerror(-ret));
			goto out_unlink;
		}
	}
	*out = c;
	return 0;
out_unlink:
	unlink_own(c);
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
	unlink_own(c);
	free(c);
}

int ism_ctl_listeners(const struct ism_ctl *c, int *fds)
{
	int n = 0;

	for (int p = 0; c != NULL && p < CTL_POOLS; p++)
		if (c->pool[p].lfd >= 0)
			fds[n++] = c->pool[p].lfd;
	return n;
}

bool ism_ctl_pause(struct ism_ctl *c, bool pause)
{
	bool busy = false;

	if (c == NULL)
		return false;
	c->paused = pause;
	for (int p = 0; p < CTL_POOLS; p++)
		for (uint32_t i = 0; i < c->pool[p].size; i++)
			busy |= c->pool[p].cl[i].state == CTL_READING ||
				c->pool[p].cl[i].state == CTL_WRITING ||
				c->pool[p].cl[i].state == CTL_PENDING;
	return busy;
}

size_t ism_ctl_pollfds(const struct ism_ctl *c, struct pollfd *pfd, size_t max)
{
	uint64_t now = ism_now_ms();
	size_t n = 0;

	if (c == NULL || max < CTL_POOLS)
		return 0;
	for (int p = 0; p < CTL_POOLS; p++)
		pfd[n++] = (struct pollfd){
		    .fd = c->pool[p].lfd,
		    .events = c->paused || now < c->pool[p].accept_after ? 0 : POLLIN};
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

	for (int p = 0; c != NULL && p < CTL_POOLS; p++) {
		uint64_t after = c->pool[p].accept_after;

		if (after > now && after - now < t)
			t = after - now;
		for (uint32_t i = 0; i < c->pool[p].size; i++) {
			const struct ctl_client *cl = &c->pool[p].cl[i];
			/* A scrape waits for the next build too. */
			uint64_t due = cl->deadline;

			if (cl->state == CTL_PENDING && c->metrics_next < due)
				due = c->metrics_next;
			if (cl->state != CTL_FREE && cl->deadline)
				t = due <= now ? 0 : due - now < t ? due - now : t;
		}
	}
	return (int)t;
}

/* ---------- the admin pages ---------- */

/* The control socket's and the admin listener's own clients. */
static void ctl_metrics(const struct ism_ctl *c, struct ism_reply *r)
{
	static const char *const reasons[CTL_DROP_REASONS] = {"pool_full", "timeout", "memory",
							      "worker_user"};
	static const struct ism_metric dropped = {
	    "isthmus_ctl_clients_dropped_total", "counter",
	    "Control-socket and admin-listener clients closed before their answer was sent: "
	    "their slot went to a new client (pool_full), or they were too slow to send the "
	    "request or read the answer (timeout), or their answers with the others' went over "
	    "the memory budget (memory), or they run as the workers' user (worker_user: refused "
	    "at once)."};
	static const struct ism_metric builds = {
	    "isthmus_metrics_builds_total", "counter",
	    "/metrics pages built, this one included: the scrapes waiting for the next build "
	    "share it."};

	ism_prom_family(r, &dropped);
	for (int p = 0; p < CTL_POOLS; p++)
		for (int k = 0; k < CTL_DROP_REASONS; k++)
			ism_prom_u64(r, dropped.name, c->pool[p].dropped[k], "listener",
				     pool_names[p], "reason", reasons[k], NULL);
	ism_prom_family(r, &builds);
	ism_prom_u64(r, builds.name, c->metrics_builds, NULL);
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

	/* RFC 9110 15.5.6: a 405 says which methods are. */
	ism_say(head,
		"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\n%s"
		"connection: close\r\n\r\n",
		status, reason, ctype, body->len, status == 405 ? "allow: GET, HEAD\r\n" : "");
}

/* The text of an answer refused for its size. */
static void too_large(struct ism_reply *body)
{
	ism_reply_free(body);
	ism_say(body, "the page is larger than the %u MiB limit: not sent\n", CTL_REPLY_MAX >> 20);
}

/* The admin pages but /metrics (ctl_serve_metrics): liveness, readiness for
 * the L4 balancer, 404 and 405. Whether the request is a scrape instead,
 * nothing answered then: it waits for the next page. */
static bool admin_page(struct ism_ctl *c, struct ctl_client *cl)
{
	const char *req = cl->line, *ctype = "text/plain";
	struct ism_reply *head = &cl->head, *body = &cl->body;
	bool head_only = strncmp(req, "HEAD ", 5) == 0;
	const char *path = head_only ? req + 5 : req + 4;
	size_t plen = strcspn(path, " ?"); /* the query is not part of the page */
	int status = 200;

#define PAGE_IS(p) (plen == sizeof(p) - 1 && memcmp(path, p, plen) == 0)
	if (!head_only && strncmp(req, "GET ", 4) != 0) {
		status = 405;
		ism_say(body, "method not allowed\n");
	} else if (PAGE_IS("/healthz/ready")) {
		status = ism_master_ready(c->m) ? 200 : 503;
		ism_say(body, "%s\n", status == 200 ? "ready" : "not ready");
	} else if (PAGE_IS("/healthz/live")) {
		/* The master's loop answered: it is alive, starting and stopping too. */
		ism_say(body, "live\n");
	} else if (PAGE_IS("/metrics")) {
		cl->head_only = head_only;
		return true;
	} else {
		status = 404;
		ism_say(body, "not found: /healthz/live, /healthz/ready, /metrics\n");
	}
#undef PAGE_IS
	http_head(head, status, ctype, body);
	if (head_only)
		ism_reply_free(body);
	return false;
}

static void page_put(struct ctl_page *pg)
{
	if (pg != NULL && --pg->refs == 0) {
		ism_reply_free(&pg->text);
		free(pg);
	}
}

/* A /metrics page, allocated at once at the size of the last one (and an
 * eighth): a page of megabytes is not copied at each doubling. The next
 * build is put off by CTL_METRICS_PAUSE times what this one took. NULL when
 * there is no memory. */
static struct ctl_page *metrics_build(struct ism_ctl *c)
{
	struct ctl_page *pg = calloc(1, sizeof(*pg));
	size_t hint = c->metrics_len + c->metrics_len / 8;
	uint64_t start = ism_now_ms(), end;

	if (pg == NULL)
		return NULL;
	pg->refs = 1;
	ism_reply_init(&pg->text, CTL_REPLY_MAX);
	ism_reply_reserve(&pg->text, hint < CTL_REPLY_MAX ? hint : CTL_REPLY_MAX);
	c->metrics_builds++;
	ism_metrics_write(c->m, &pg->text);
	ctl_metrics(c, &pg->text);
	c->metrics_len = pg->text.len;
	if (pg->text.incomplete)
		ism_warn("admin listener: a page over the %u MiB limit (or no memory): 500",
			 CTL_REPLY_MAX >> 20);
	end = ism_now_ms();
	c->metrics_next = end + (end - start) * CTL_METRICS_PAUSE;
	return pg;
}

/* ---------- clients ---------- */

static void client_drop(struct ctl_client *cl)
{
	if (cl->fd >= 0)
		close(cl->fd);
	ism_reply_free(&cl->head);
	ism_reply_free(&cl->body);
	page_put(cl->page);
	*cl = (struct ctl_client){.state = CTL_FREE, .fd = -1};
}

/* Writes what the socket takes now (head, then body); the rest when poll says
 * POLLOUT. The client is dropped when all is sent or it went away. */
static void client_send(struct ctl_client *cl)
{
	const struct ism_reply *body = cl->page != NULL ? &cl->page->text : &cl->body;
	size_t total = cl->head.len + body->len;

	while (cl->sent < total) {
		struct iovec iov[2];
		struct msghdr msg = {.msg_iov = iov};
		ssize_t n;

		if (cl->sent < cl->head.len) {
			iov[msg.msg_iovlen++] =
			    (struct iovec){cl->head.p + cl->sent, cl->head.len - cl->sent};
			if (body->len)
				iov[msg.msg_iovlen++] = (struct iovec){body->p, body->len};
		} else {
			size_t off = cl->sent - cl->head.len;

			iov[msg.msg_iovlen++] = (struct iovec){body->p + off, body->len - off};
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

/* The answers being written hold at most CTL_REPLY_BUDGET bytes (a page
 * shared by several clients counted once): past it the oldest of them (other
 * than keep, the newest) are dropped. */
static void enforce_budget(struct ism_ctl *c, const struct ctl_client *keep)
{
	for (;;) {
		struct ctl_client *oldest = NULL;
		struct ctl_pool *op = NULL;
		size_t held = 0;

		c->budget_pass++;
		for (int id = 0; id < CTL_POOLS; id++)
			for (uint32_t i = 0; i < c->pool[id].size; i++) {
				struct ctl_client *cl = &c->pool[id].cl[i];

				if (cl->state != CTL_WRITING)
					continue;
				held += cl->head.cap + cl->body.cap;
				if (cl->page != NULL && cl->page->pass != c->budget_pass) {
					cl->page->pass = c->budget_pass;
					held += cl->page->text.cap;
				}
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

/* The answer is in cl: it goes out as the client reads it. */
static void client_write(struct ism_ctl *c, struct ctl_client *cl)
{
	if (cl->body.incomplete || cl->head.incomplete) { /* no memory even for the error */
		client_drop(cl);
		return;
	}
	cl->state = CTL_WRITING;
	cl->sent = 0;
	cl->deadline = ism_now_ms() + ISM_CTL_ANSWER_MS;
	enforce_budget(c, cl);
	client_send(cl);
}

/* The request is in (or refused: nul, too long): the answer is built now
 * (a scrape's when the next page is: ctl_serve_metrics). */
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
		if (admin_page(c, cl)) {
			cl->state = CTL_PENDING;
			cl->deadline = ism_now_ms() + ISM_CTL_ANSWER_MS;
			return;
		}
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
	client_write(c, cl);
}

/* The scrapes waiting get one page built now, unless the last build was too
 * recent (metrics_next): all of them share it, so that any number of scrapes
 * cost the loop one build, and a page is never older than its request. A
 * page larger than CTL_REPLY_MAX is a 500, never a cut 200. */
static void ctl_serve_metrics(struct ism_ctl *c, uint64_t now)
{
	struct ctl_pool *p = &c->pool[CTL_ADMIN];
	struct ctl_page *pg = NULL;

	if (now < c->metrics_next)
		return;
	for (uint32_t i = 0; i < p->size; i++) {
		struct ctl_client *cl = &p->cl[i];

		if (cl->state != CTL_PENDING)
			continue;
		if (pg == NULL)
			pg = metrics_build(c);
		if (pg == NULL || pg->text.incomplete) {
			too_large(&cl->body);
			http_head(&cl->head, 500, "text/plain", &cl->body);
		} else {
			http_head(&cl->head, 200, "text/plain; version=0.0.4", &pg->text);
			if (!cl->head_only) {
				cl->page = pg;
				pg->refs++;
			}
		}
		if (cl->head_only)
			ism_reply_free(&cl->body);
		client_write(c, cl);
	}
	page_put(pg);
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
	case CTL_PENDING:
		if (revents & (POLLERR | POLLHUP | POLLNVAL))
			client_drop(cl); /* gone: the reload or the next page goes on */
		break;
	case CTL_FREE:
	default:
		ISM_BUG_ON(1);
	}
}

/* A free slot of the pool, else the slot of the client that gives its up
 * (dropped, its descriptor closed): the oldest one still sending its
 * request, else still reading its answer, else waiting for a page, else
 * waiting for a reload (which goes on without it): clients parked on a slow
 * reload cannot lock the operator out. With busy_only, a busy client's slot
 * only (a descriptor freed). */
static struct ctl_client *pool_slot(struct ctl_pool *p, bool busy_only)
{
	struct ctl_client *oldest[CTL_WAITING + 1] = {NULL};

	for (uint32_t i = 0; i < p->size; i++) {
		struct ctl_client *cl = &p->cl[i];

		if (cl->state == CTL_FREE) {
			if (!busy_only)
				return cl;
			continue;
		}
		if (oldest[cl->state] == NULL || cl->since < oldest[cl->state]->since)
			oldest[cl->state] = cl;
	}
	for (int s = CTL_READING; s <= CTL_WAITING; s++)
		if (oldest[s] != NULL) {
			p->dropped[CTL_DROP_FULL]++;
			client_drop(oldest[s]);
			return oldest[s];
		}
	return NULL;
}

/* Whether the control socket's peer runs as the workers' user (spec.user,
 * not root): a worker, which parses what the network sends, is no operator,
 * though the socket's group may be its group too. */
static bool worker_peer(const struct ism_ctl *c, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uid_t uid = c->m->run_uid;

	if (uid == (uid_t)-1 || uid == 0)
		return false;
	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.uid == uid;
}

/* An accept's error that a closed descriptor may cure. */
static bool no_descriptor(int e)
{
	return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

/* At most a pool's worth of connections per turn, so a flood of connections
 * cannot keep the loop accepting. */
static void accept_from(struct ism_ctl *c, int id, uint64_t now)
{
	struct ctl_pool *p = &c->pool[id];

	for (uint32_t k = 0; k < p->size; k++) {
		int fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct ctl_client *cl;

		/* Out of descriptors: a client of the pool gives its up for
		 * the new one, as a full pool's rule says; with none to, the
		 * listener rests. */
		if (fd < 0 && no_descriptor(errno) && pool_slot(p, true) != NULL)
			fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (no_descriptor(errno))
				p->accept_after = now + ISM_CTL_ACCEPT_PAUSE_MS;
			return;
		}
		if (id == CTL_CONTROL && worker_peer(c, fd)) {
			p->dropped[CTL_DROP_PEER]++;
			close(fd);
			continue;
		}
		cl = pool_slot(p, false);
		if (cl == NULL) {
			close(fd);
			continue;
		}
		*cl = (struct ctl_client){.state = CTL_READING,
					  .fd = fd,
					  .since = ++c->accepted,
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
	/* Last, when the probes of this turn are answered. */
	ctl_serve_metrics(c, ism_now_ms());
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
