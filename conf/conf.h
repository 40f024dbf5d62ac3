/* SPDX-License-Identifier: Apache-2.0 */
/* The appliance file: loading, validation with positions, compilation.
 *
 * Phase 1: YAML (libyaml, several documents) becomes a tree whose nodes keep
 * their line and column. Phase 2: typed, per-field validation produces the model
 * (struct ism_conf, opaque, heap). Phase 3: compilation writes an immutable
 * struct ism_table into an arena (see shm/table-t.h). Loading is all or nothing:
 * on any error no model is returned and the diagnostics say why. */
#ifndef ISM_CONF_CONF_H
#define ISM_CONF_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "shm/shm.h"

enum ism_diag_severity {
	ISM_DIAG_ERROR = 0,
	ISM_DIAG_WARNING = 1,
};

/* One diagnostic: "<file>:<line>:<col>: error: <field>: <msg>". */
struct ism_diag {
	enum ism_diag_severity severity;
	char file[256];
	int line;	 /* 1-based; 0 when not tied to a position */
	int col;	 /* 1-based */
	char field[256]; /* field path, e.g. "VirtualService default/reviews:
			    spec.http[0].route[1].weight" */
	char msg[512];
};

struct ism_diags {
	size_t n;
	size_t n_errors;
	/* The first 64 are kept (an error displaces the last warning kept when
	 * full); n counts all. */
	struct ism_diag items[64];
};

void ism_diags_init(struct ism_diags *d);
/* Adds one diagnostic (counted in n_errors when sev is an error); past the 64
 * kept, only counted. */
void ism_diag_add(struct ism_diags *d, enum ism_diag_severity sev, const char *file, int line,
		  int col, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
/* Prints every diagnostic, one per line, in the form above. */
void ism_diags_print(FILE *out, const struct ism_diags *d);
/* Formats them into buf (NUL-terminated, truncated to len); returns bytes written. */
size_t ism_diags_format(char *buf, size_t len, const struct ism_diags *d);

struct ism_conf;

/* Bounds on what the loader reads; each is an error naming it when exceeded.
 * A configuration loads in time and memory linear in its size (about 100
 * bytes of memory per YAML node while loading). The file bound also keeps a
 * wrong path (a device, a huge log) from being read whole. */
#define ISM_CONF_MAX_FILE  (16u << 20) /* bytes of the appliance file */
#define ISM_CONF_MAX_DEPTH 64	       /* nested mappings and lists */
#define ISM_CONF_MAX_NODES (1u << 21)  /* YAML nodes: keys, values, list items */

/* OpenSSL calls made on a thread beside the master's loop (the loader's:
 * certificate checks, key sets) go between these: fork() waits until none is
 * under way, so that no worker inherits a lock OpenSSL held (conf/tls.c). Not
 * around a wait: a worker's start would wait as long. */
void ism_conf_ssl_enter(void);
void ism_conf_ssl_leave(void);

/* Loads and validates the file at path. 0 and *out on success (warnings may be
 * in d); -EINVAL with errors in d; -errno when the file cannot be read (also
 * reported in d). */
int ism_conf_load(const char *path, struct ism_conf **out, struct ism_diags *d);
/* Same, from memory; name is used in diagnostics. */
int ism_conf_load_buf(const char *name, const char *buf, size_t len, struct ism_conf **out,
		      struct ism_diags *d);
void ism_conf_free(struct ism_conf *conf);
/* Where the key sets of RequestAuthentication rules without jwks come from
 * (their jwksUri, or their issuer's OpenID discovery): the master's cache
 * (master/jwks.h). get returns the key set's text, kept by the source until
 * the next load, or NULL with why; uri NULL: the issuer's discovery. With no
 * source (isthmus -c), nothing is fetched: such a rule loads with a warning
 * and no keys. Set before loads, never while one runs. */
struct ism_jwks_source {
	const char *(*get)(void *ctx, const char *issuer, const char *uri, uint32_t timeout_ms,
			   char *why, size_t cap);
	void *ctx;
};
void ism_conf_jwks_source(const struct ism_jwks_source *src);

/* A duration as the file writes one ("10s", "250ms", "1.5s", "2m", "1h",
 * "100us", "1m30s") in milliseconds, a positive value under 1 ms rounding up
 * to 1 ms; 0, -ERANGE for a well-formed one over UINT32_MAX ms
 * (1193h2m47.295s), -EINVAL for anything else. */
int ism_parse_duration_ms(const char *s, uint32_t *out);
/* The same in nanoseconds, unrounded (at most 2^32 - 1 ms). */
int ism_parse_duration_ns(const char *s, uint64_t *out);

/* Reads a file of at most max bytes (NUL-terminated); 0 or -errno: -EINVAL
 * for what is not a regular file (a FIFO is refused, not waited on), -EFBIG
 * over max. */
int ism_conf_read_file(const char *path, size_t max, char **buf, size_t *len);
/* Why ism_conf_read_file failed with rc, in words: max is the size limit it
 * was given; buf holds the text when it needs one. */
const char *ism_conf_read_why(int rc, size_t max, char buf[64]);
/* The certificate and key files the model was loaded with (for a watch). */
size_t ism_conf_files(const struct ism_conf *conf, const char *const **files);
/* The first Gateway server of port: the position of its port.number and its
 * field ("Gateway default/gw: spec.servers[0].port.number", into field), for
 * a diagnostic about the listener it asks for. false when none has it. */
bool ism_conf_server_port_at(const struct ism_conf *conf, uint16_t port, int *line, int *col,
			     char *field, size_t len);
/* spec.limits.maxConnectionsPerWorker as the file sets it: the value, with its
 * position and its resource's label ("Appliance edge-1") for a diagnostic; 0
 * when the file does not set it (the default applies, which the master derives
 * from its open-file limit). */
uint32_t ism_conf_max_connections(const struct ism_conf *conf, int *line, int *col,
				  const char **res);

/* What a slot id is asked for. */
enum ism_conf_slot {
	/* an endpoint: key "<service-host>|<address>:<port>"; has_hc says
	 * whether its service has an active health check */
	ISM_CONF_SLOT_ENDPOINT = 0,
	/* an endpoint's outlier-detection state in one cluster: key "<cluster
	 * name>|<endpoint id>", asked right after the endpoint's own id */
	ISM_CONF_SLOT_OUTLIER,
};

/* Maps a slot key to a stable id. Returns 0 or -errno (-ENOSPC when the
 * table of that kind is full). */
typedef int (*ism_conf_ep_id_cb)(void *ctx, enum ism_conf_slot kind, const char *key, bool has_hc,
				 uint32_t *id);

/* One current address of a resolved name. */
struct ism_dns_addr {
	struct sockaddr_storage addr; /* port 0 */
	socklen_t len;
	char text[48]; /* "127.0.0.2", "::1" */
};

/* The current answer for a host name of a DNS ServiceEntry: the number of
 * addresses (0: not resolved yet, or no address), *addrs (valid until the
 * compilation returns) and the wall time in ms of the answer. logical: for a
 * DNS_ROUND_ROBIN endpoint, the one address it connects to. */
typedef size_t (*ism_conf_dns_cb)(void *ctx, const char *name, bool logical,
				  const struct ism_dns_addr **addrs, uint64_t *resolved_ms);
/* Called once for each distinct host name the model resolves; 0 or -errno
 * (which stops the walk and is returned by ism_conf_dns_names). */
typedef int (*ism_conf_name_cb)(void *ctx, const char *name);
int ism_conf_dns_names(const struct ism_conf *conf, ism_conf_name_cb cb, void *ctx);

/* spec.dns.lookupFamily: which addresses of a name are its endpoints
 * (Envoy's DnsLookupFamily). */
enum ism_dns_family {
	ISM_DNS_V4_ONLY, /* the default, as istiod sets it for IPv4 and dual-stack proxies */
	ISM_DNS_V6_ONLY,
	ISM_DNS_ALL,
	ISM_DNS_AUTO,	      /* IPv6 ones, else IPv4 ones */
	ISM_DNS_V4_PREFERRED, /* IPv4 ones, else IPv6 ones */
};

/* spec.dns of the Appliance, defaults applied. */
struct ism_conf_dns {
	size_t n_servers;	    /* 0: the system's resolver configuration */
	const char *const *servers; /* "ADDRESS[:PORT]", valid while the model is */
	uint32_t min_refresh_ms, max_refresh_ms, timeout_ms;
	enum ism_dns_family family;
};
void ism_conf_dns_settings(const struct ism_conf *conf, struct ism_conf_dns *out);

/* Where the Appliance's field f is written (*line, *col; 0 when it is not)
 * and the Appliance's label ("Appliance NAME"), for an error the master finds
 * about it on this machine (the workers cannot write the log, no such user). */
enum ism_app_field {
	ISM_APP_ACCESS_LOG_PATH,
	ISM_APP_USER,
	ISM_APP_GROUP,
	ISM_APP_CONTROL_SOCKET,
	ISM_APP_PID_FILE,
	ISM_APP_LISTEN_ADDRESS,
	ISM_APP_ADMIN_ADDRESS,
};
/* Whether a's address (its port aside) is spec.listenAddress as the file
 * writes it: a listener bound there because its servers name no bind. */
bool ism_conf_listen_is(const struct ism_conf *conf, const struct sockaddr_storage *a);
const char *ism_conf_app_field_at(const struct ism_conf *conf, enum ism_app_field f, int *line,
				  int *col);

/* Compiles the model into arena. Regexes are compiled with PCRE2 into the arena
 * too, so the table is self-contained. Returns 0 and *out, or -ENOMEM when the
 * arena is full / -errno from ep_id, with a diagnostic in d. */
int ism_conf_compile(const struct ism_conf *conf, struct ism_arena *arena, ism_conf_ep_id_cb ep_id,
		     void *ctx, const struct ism_table **out, struct ism_diags *d);
/* Same, with the host names of DNS ServiceEntries resolved by dns (ism_conf_compile
 * resolves none: their clusters have no endpoint from them). Endpoints of
 * resolution DNS are keyed "<service-host>|<address>:<port>" as STATIC ones,
 * those of DNS_ROUND_ROBIN "<service-host>|<name>:<port>". */
int ism_conf_compile_dns(const struct ism_conf *conf, struct ism_arena *arena,
			 ism_conf_ep_id_cb ep_id, void *ctx, ism_conf_dns_cb dns, void *dns_ctx,
			 const struct ism_table **out, struct ism_diags *d);

#endif
