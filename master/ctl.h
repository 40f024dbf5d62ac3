/* The control socket and the admin listener, served by the master.
 *
 * Control socket: a unix stream socket with a line protocol (one command per
 * connection; the answer, then the master closes), usable from socat:
 *   echo reload | socat - UNIX-CONNECT:/run/isthmus/isthmus.sock
 * Commands: "reload", "show info", "show endpoints", "help".
 * Admin listener (Appliance spec.admin.address): HTTP/1.x, one request per
 * connection: GET /healthz/ready (200 serving, 503 starting or stopping) and
 * GET /metrics (Prometheus text format). Master only. */
#ifndef ISM_MASTER_CTL_H
#define ISM_MASTER_CTL_H

#include <poll.h>
#include <stddef.h>

#define ISM_CTL_MAX_CLIENTS 16

struct ism_master;
struct ism_ctl;

struct ism_table;

/* Binds t's control socket (mode 0660; the parent directory is created if
 * missing) and its admin listener, if any. Returns 0 and *out, or -errno. */
int ism_ctl_create(struct ism_master *m, const struct ism_table *t, struct ism_ctl **out);
void ism_ctl_destroy(struct ism_ctl *c);
/* Fills up to max pollfds (the two listeners, then the clients); returns how many. */
size_t ism_ctl_pollfds(const struct ism_ctl *c, struct pollfd *pfd, size_t max);
/* Serves what poll reported on the descriptors ism_ctl_pollfds filled. */
void ism_ctl_run(struct ism_ctl *c, const struct pollfd *pfd, size_t n);

#endif
