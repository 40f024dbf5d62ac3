/* The control socket: a unix stream socket with a line protocol (one command per
 * connection; the answer, then the master closes), usable from socat:
 *   echo reload | socat - UNIX-CONNECT:/run/isthmus/isthmus.sock
 * Commands: "reload", "show info", "show endpoints", "help". Master only. */
#ifndef ISM_MASTER_CTL_H
#define ISM_MASTER_CTL_H

#include <poll.h>
#include <stddef.h>

#define ISM_CTL_MAX_CLIENTS 16

struct ism_master;
struct ism_ctl;

/* Binds path (mode 0660; the parent directory is created if missing).
 * Returns 0 and *out, or -errno. */
int ism_ctl_create(struct ism_master *m, const char *path, struct ism_ctl **out);
void ism_ctl_destroy(struct ism_ctl *c);
/* Fills up to max pollfds (the listener and the clients); returns how many. */
size_t ism_ctl_pollfds(const struct ism_ctl *c, struct pollfd *pfd, size_t max);
/* Serves what poll reported on the descriptors ism_ctl_pollfds filled. */
void ism_ctl_run(struct ism_ctl *c, const struct pollfd *pfd, size_t n);

#endif
