/* SPDX-License-Identifier: Apache-2.0 */
/* A route's actions on one request, as the route table compiled them
 * (shm/table-t.h: struct ism_route_actions, struct ism_dest_actions): the
 * path the upstream gets (rewrite). The stream (worker/stream.c) applies them,
 * so they are the same whatever the client and the upstream speak. Pure but
 * for the regex search, which runs on the router's scratch. Private to worker/;
 * the worker's process only. */
#ifndef ISM_WORKER_ACTIONS_H
#define ISM_WORKER_ACTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "shm/table-t.h"
#include "worker/worker-t.h"

struct ism_router_scratch;

/* The path the upstream gets after rewrite pr of path (path_len bytes, the
 * query excluded) when match block m chose the route (NULL: the route has
 * none, which Istio reads as the prefix "/"), as Envoy rewrites it: written
 * to out (emptied first), the query (query_len bytes after '?'; NULL: none)
 * appended, a '/' put first when the result would not start with one.
 * Returns the length of the path part of out; -E2BIG when out would pass
 * limit bytes, -EAGAIN when the pattern stopped at its match limit, -ENOMEM. */
int ism_act_rewrite_path(struct ism_router_scratch *rs, const struct ism_path_rewrite *pr,
			 const struct ism_match *m, const char *path, size_t path_len,
			 const char *query, size_t query_len, uint32_t limit, struct ism_buf *out);

#endif
