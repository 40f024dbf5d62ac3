/* SPDX-License-Identifier: Apache-2.0 */
/* The control socket and the admin listener, served by the master.
 *
 * Control socket: a unix stream socket with a line protocol (one command per
 * connection; the answer, then the master closes), usable from socat:
 *   echo reload | socat - UNIX-CONNECT:/run/isthmus/isthmus.sock
 * Commands: see master/commands.h.
 * Admin listener (Appliance spec.admin.address): HTTP/1.x, one request per
 * connection: GET /healthz/live (200 while the master's loop answers),
 * GET /healthz/ready (200 serving, 503 starting or stopping) and GET /metrics
 * (Prometheus text format).
 *
 * Each has its own pool of clients (ISM_CTL_CONTROL_CLIENTS, ISM_CTL_ADMIN_CLIENTS):
 * a flood on one never locks the other out. A client has ISM_CTL_REQUEST_MS from
 * its connection to send its request, and ISM_CTL_ANSWER_MS to read the answer,
 * which is written as the client reads it, never blocking the master. A
 * `reload` client waits, without a deadline, for the reload to be over (it runs
 * off the loop). When a pool is full, a new client takes the slot of the
 * oldest one still sending its request, else of the oldest one still reading
 * its answer; a waiting one keeps its slot. The /metrics scrapes wait for the
 * next page and share it; pages take at most a fifth of the loop's time (the
 * next build is put off by 4 times the last one's duration), so that the
 * probes and health checks on the same loop never queue behind them. Master
 * only. */
#ifndef ISM_MASTER_CTL_H
#define ISM_MASTER_CTL_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ISM_CTL_CONTROL_CLIENTS 32
#define ISM_CTL_ADMIN_CLIENTS	256 /* L4 balancer probes and Prometheus scrapes */
#define ISM_CTL_REQUEST_MS	2000
/* How long a listener rests when an accept finds no descriptor and no
 * client of its pool can give one up (the worker's listeners rest a tick). */
#define ISM_CTL_ACCEPT_PAUSE_MS 100
#define ISM_CTL_ANSWER_MS	10000
/* The most pollfds ism_ctl_pollfds fills. */
#define ISM_CTL_POLLFDS (2 + ISM_CTL_CONTROL_CLIENTS + ISM_CTL_ADMIN_CLIENTS)

struct ism_master;
struct ism_ctl;

struct ism_table;

/* Binds t's control socket (mode 0660; the parent directory is created if
 * missing) and its admin listener, if any. Returns 0 and *out, or -errno. */
int ism_ctl_create(struct ism_master *m, const struct ism_table *t, struct ism_ctl **out);
void ism_ctl_destroy(struct ism_ctl *c);
/* The most listening sockets ism_ctl_listeners gives. */
#define ISM_CTL_LISTENERS 2
/* The listening sockets of c (the control socket, the admin listener when
 * there is one), stored at fds: how many. */
int ism_ctl_listeners(const struct ism_ctl *c, int *fds);
/* pause: nothing more is accepted (what connects waits in the backlogs),
 * until called again without. Whether a client is still being answered. */
bool ism_ctl_pause(struct ism_ctl *c, bool pause);
/* Fills up to max pollfds (the two listeners, then the clients); returns how many. */
size_t ism_ctl_pollfds(const struct ism_ctl *c, struct pollfd *pfd, size_t max);
/* Milliseconds until the earliest client deadline (for poll), at most cap. */
int ism_ctl_timeout_ms(const struct ism_ctl *c, uint64_t now, int cap);
/* Serves what poll reported on the descriptors ism_ctl_pollfds filled, and
 * closes the clients past their deadline. */
void ism_ctl_run(struct ism_ctl *c, const struct pollfd *pfd, size_t n);
/* The reload with this ticket is over: the clients waiting for it get the
 * answer made from report (master/commands.h). */
void ism_ctl_reload_done(struct ism_ctl *c, uint64_t ticket, const char *report);

#endif
