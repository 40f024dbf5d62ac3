/* SPDX-License-Identifier: Apache-2.0 */
/* A route's actions on one request, as the route table compiled them
 * (shm/table-t.h: struct ism_route_actions, struct ism_dest_actions): the
 * path the upstream gets (rewrite), the header fields of the request and the
 * response (headers), the Location of a redirect. The stream (worker/stream.c) applies them,
 * so they are the same whatever the client and the upstream speak. Pure but
 * for the regex search, which runs on the router's scratch. Private to worker/;
 * the worker's process only. */
#ifndef ISM_WORKER_ACTIONS_H
#define ISM_WORKER_ACTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/table-t.h"
#include "worker/worker-t.h"

struct ism_router_scratch;

/* The path the upstream gets after rewrite pr of path (path_len bytes, the
 * query excluded) when match block m chose the route (NULL: the route has
 * none, which Istio reads as the prefix "/"), as Envoy rewrites it, or the
 * path of a redirect (ISM_PATH_REPLACE: a value with a query replaces the
 * request's; ISM_PATH_KEEP: the request's): written to out (emptied first),
 * the query (query_len bytes after '?'; NULL: none) appended, a '/' put first
 * when the result would not start with one.
 * Returns the length of the path part of out; -E2BIG when out would pass
 * limit bytes, -EAGAIN when the pattern stopped at its match limit, -ENOMEM;
 * -ENODATA when a regex rewrite comes out empty (no rewrite, as Envoy's). */
int ism_act_rewrite_path(struct ism_router_scratch *rs, const struct ism_path_rewrite *pr,
			 const struct ism_match *m, const char *path, size_t path_len,
			 const char *query, size_t query_len, uint32_t limit, struct ism_buf *out);

/* The Location of redirect rd (NULL: none, the request's own URL, which
 * Envoy gives a direct 201 or 3xx answer), as Envoy's newUri writes it: the
 * scheme (rd's, else the request's: https on a TLS connection), "://", the
 * host (rd's authority, else the request's host, its port dropped when a port
 * is written or when the scheme changes away from the one its port is the
 * default of), ":port" (rd's, or with port_from_request the listener's;
 * Istio leaves out 80 over http and 443 over https), then path (path and
 * query). Written to out (emptied first); 0, -E2BIG past limit bytes, or
 * -ENOMEM. */
int ism_act_location(const struct ism_redirect *rd, uint16_t listener_port, bool tls,
		     const char *host, size_t host_len, const char *path, size_t path_len,
		     uint32_t limit, struct ism_buf *out);

/* The edit of field name (len bytes, any case) in e; NULL: none. */
const struct ism_hdr_edit *ism_act_edit(const struct ism_hdr_edits *e, const char *name,
					size_t len);

/* Whether e drops the message's own fields called name. */
static inline bool ism_act_drops(const struct ism_hdr_edits *e, const char *name, size_t len)
{
	const struct ism_hdr_edit *x = ism_act_edit(e, name, len);

	return x != NULL && x->drop;
}

/* How many values e sends. */
size_t ism_act_n_values(const struct ism_hdr_edits *e);

/* The fields in[0..n) as e leaves them: those it does not drop, in order,
 * then its values, written to out (cap fields: n + ism_act_n_values(e) is
 * enough). Returns how many; they point into in and e. */
size_t ism_act_apply(const struct ism_hdr_edits *e, const struct ism_http_header *in, size_t n,
		     struct ism_http_header *out, size_t cap);

/* A value with command operators is made at most this long (cut there). */
#define ISM_HVAL_MAX 8192u

/* The value of command operator p for the request at hand (arg): at most cap
 * bytes of it written to out; returns its length, 0 when it has none, or
 * ISM_HVAL_LATE when it is to be made later (ism_act_edits_dup). */
typedef size_t (*ism_hval_cb)(void *arg, const struct ism_hval_part *p, char *out, size_t cap);
#define ISM_HVAL_LATE SIZE_MAX

/* A copy of e in one allocation, for a stream (a reload may release the
 * route table before the response comes); free() frees it. With cb, its
 * values with command operators are made (cb giving each operator's value,
 * cut at the part's max_len): one that comes out empty is left out, and when
 * it was a set's the message's own fields stay (struct ism_hdr_edit); without
 * cb they are copied as written. A value with an operator cb answers
 * ISM_HVAL_LATE for stays one with operators, the others' values made: the
 * copy is then dynamic, for a copy of it made later. NULL without memory. */
struct ism_hdr_edits *ism_act_edits_dup(const struct ism_hdr_edits *e, ism_hval_cb cb, void *arg);

#endif
