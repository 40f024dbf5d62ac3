/* SPDX-License-Identifier: Apache-2.0 */
/* The shared region: creation, the arena allocator, generation publish/reclaim,
 * endpoint-state ids.
 *
 * The master creates the region before fork(), so it sits at the same address in
 * every process. It has two parts. The published one (struct ism_shm_pub: the
 * generation slots, the compiled tables, the endpoints' keys) is a memfd the
 * master maps writable and does not pass to its children (MADV_DONTFORK);
 * each worker maps it again at the same address from a read-only descriptor
 * (ism_shm_worker_map), so that no mprotect can make it writable. The other
 * (struct ism_shm_hdr, and each generation's mutable arena: the clusters'
 * dynamic state and the counters a table points to) every process writes.
 * The master keeps its own copy of the slots and of the current generation,
 * and reads only numbers from the writable part.
 *
 * Generation protocol (hazard-pointer style, all seq_cst):
 *   worker:  g = current; store g in its slot; re-read current; retry until equal.
 *   master:  publish = store current; reclaim a slot only when it is not current and
 *            no live worker slot records its generation.
 * A worker therefore never reads a generation after its memory was reused. */
#ifndef ISM_SHM_SHM_H
#define ISM_SHM_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/strmap.h"
#include "shm/shm-t.h"
#include "shm/table-t.h"

/* A bump allocator over a fixed block. Nothing is freed one by one. */
struct ism_arena {
	unsigned char *base;
	size_t size;
	size_t used;
	/* Where what the workers write after publication goes (counters, a
	 * cluster's dynamic state); NULL: this arena (a table no worker uses). */
	struct ism_arena *mut;
};

/* An arena over base (mut NULL). */
void ism_arena_init(struct ism_arena *a, void *base, size_t size);
/* Zeroed memory aligned to align (a power of two); NULL when the arena is full. */
void *ism_arena_alloc(struct ism_arena *a, size_t size, size_t align);
/* Copies len bytes and a NUL into the arena; NULL when full. */
char *ism_arena_strndup(struct ism_arena *a, const char *s, size_t len);

/* The master's own record of a generation slot (what hdr and pub say of it
 * is for the workers). */
struct ism_gen_own {
	uint64_t gen; /* 0 = free, UINT64_MAX = being built */
	const struct ism_table *table;
	unsigned char *base; /* the table's arena, in the published part */
	size_t size;
	struct ism_arena mut; /* the mutable arena, in the writable part */
};

struct ism_shm {
	struct ism_shm_hdr *hdr; /* the writable part */
	size_t size;
	struct ism_shm_pub *pub; /* the published part (read-only in a worker) */
	size_t pub_size;
	int pub_fd; /* its memfd, until a worker mapped it (-1 after) */
	/* Master, process-local: the generation slots and the current word,
	 * and which worker slots have a process (ism_shm_worker_live). */
	struct ism_gen_own own[ISM_GEN_SLOTS];
	uint64_t cur;
	bool live[ISM_WORKER_SLOTS];
	uint64_t started_mono_ms; /* monotonic, at the region's creation: the uptime's */
	/* Master, process-local: the endpoint slots in use by key (-> id), and
	 * the lowest id that may be free (every one below is in use). */
	struct ism_strmap ep_ix;
	struct ism_strmap_slot *ep_slots;
	uint32_t ep_free;
	/* Master, process-local: the same for the outlier-detection slots, whose
	 * keys ("<cluster name>|<endpoint id>") live here, not in the region
	 * (workers name an ejection by its cluster and endpoint). */
	struct ism_strmap od_ix;
	struct ism_strmap_slot *od_slots;
	char **od_keys;
	uint32_t od_free;
	/* Master, process-local: ISM_SLOT_* flags of each endpoint and
	 * outlier-detection slot, and the current generation (cur)
	 * whose table ISM_SLOT_CURRENT marks. */
	unsigned char *ep_flags;
	unsigned char *od_flags;
	uint64_t flagged_current;
	/* Master, process-local: the session-ticket keys and their rotation
	 * time as ism_shm_tickets_set last wrote them, which the rotation and
	 * an upgrade's hand-over read (a worker may write the region's). */
	struct ism_ticket_keys tickets;
};

/* Maps a new shared region with gen_size bytes per generation slot (and a
 * quarter of it for each slot's mutable arena), and allocates the master's
 * endpoint index. Master only, before fork. Returns 0 or -errno. */
int ism_shm_create(struct ism_shm *shm, size_t gen_size);
void ism_shm_destroy(struct ism_shm *shm);
/* In a process forked from the master, first thing: maps the published part
 * read-only where the master has it, from a read-only descriptor (a mapping
 * of it can never be made writable), and closes the memfd. 0 or -errno. */
int ism_shm_worker_map(struct ism_shm *shm);

/* --- generations (master) --- */

/* Finds a free generation slot and prepares an empty arena in it: the
 * endpoints interned until it is published or dropped are the new table's.
 * Returns the slot index or -ENOSPC when every slot is held by a live generation. */
int ism_shm_gen_begin(struct ism_shm *shm, struct ism_arena *arena);
/* The table built in slot's arena is complete and waits to be published (a
 * reload warming it): until it is published or dropped, the sweep keeps the
 * endpoint and outlier-detection slots it holds. */
void ism_shm_gen_built(struct ism_shm *shm, int slot, const struct ism_table *table);
/* Publishes the table built in slot's arena as generation gen (> every earlier one). */
void ism_shm_gen_publish(struct ism_shm *shm, int slot, struct ism_table *table, uint64_t gen);
/* Drops a slot that was begun but not published, and the endpoint and
 * outlier-detection slots that no other generation holds. */
void ism_shm_gen_abort(struct ism_shm *shm, int slot);
/* Frees every unpublished-or-superseded slot that no live worker records.
 * Returns how many slots were freed. */
int ism_shm_gen_reclaim(struct ism_shm *shm);
/* The same, gone called first with each freed slot's table (its counts are
 * final then: no worker counts in it). */
int ism_shm_gen_reclaim_with(struct ism_shm *shm,
			     void (*gone)(const struct ism_table *t, void *ctx), void *ctx);
/* The table of generation slot i (0 <= i < ISM_GEN_SLOTS) while workers may
 * use it: the current one, or one superseded and not yet reclaimed; else
 * NULL. Valid until the next reclaim. */
const struct ism_table *ism_shm_gen_table(const struct ism_shm *shm, int i);
/* The published table (master's view), or NULL. */
const struct ism_table *ism_shm_current(const struct ism_shm *shm);

/* --- generations (worker) --- */

/* Acquires the current table for worker slot w: records its generation in the
 * slot, then returns it. The returned table stays valid until the next acquire
 * or release by the same worker. NULL when nothing is published. */
const struct ism_table *ism_shm_acquire(struct ism_shm *shm, int w);
/* Two-step move, for a worker that must look at a new table before deciding to
 * use it: peek announces the current generation in a second hazard (gen_next)
 * and returns its table, which stays valid until commit; commit(take) then
 * moves to it (take) or drops it, keeping the generation in use. */
const struct ism_table *ism_shm_peek(struct ism_shm *shm, int w);
void ism_shm_commit(struct ism_shm *shm, int w, int take);

/* True when a newer generation than the one w holds is published (cheap, one load). */
int ism_shm_gen_changed(const struct ism_shm *shm, int w);
void ism_shm_release(struct ism_shm *shm, int w);

/* Whether two tables have the same listeners (address and port, in order): the
 * listening sockets of one serve the other. */
int ism_table_same_listeners(const struct ism_table *a, const struct ism_table *b);

/* --- session-ticket keys (master) --- */

/* keys become the workers' session-ticket keys (keys[0] encrypting), rotated
 * at rotated_ms (monotonic, not 0), under the sequence counter. */
void ism_shm_tickets_set(struct ism_shm *shm, const struct ism_ticket_key keys[ISM_TICKET_KEYS],
			 uint64_t rotated_ms);

/* --- endpoint state (master) --- */

/* Returns the id for key in the table being built (ism_shm_gen_begin): the
 * slot key has in the current table or was given earlier in this build, else
 * a new one (the lowest free), which starts with health `initial` and nothing
 * else of an earlier endpoint of that key: one that a reload removed and
 * this one adds back is new, as Envoy makes a new host, even while a
 * generation still draining holds its old slot (which keeps its state for
 * that generation, and is no longer found by key). -ENOSPC when the table is
 * full. Constant time on average. */
int ism_shm_ep_intern(struct ism_shm *shm, const char *key, uint32_t initial_health, uint32_t *id);
/* The id of the endpoint slot that key holds; false when none does. */
bool ism_shm_ep_find(const struct ism_shm *shm, const char *key, uint32_t *id);
/* Whether endpoint slot id is in use (the master's own record). */
bool ism_shm_ep_in_use(const struct ism_shm *shm, uint32_t id);
/* Whether endpoint slot id is in use and is its key's: false for a slot that
 * only a draining generation holds and whose key a newer slot took (what
 * lists endpoints by key leaves it out, as a name is listed once). */
bool ism_shm_ep_listed(const struct ism_shm *shm, uint32_t id);
/* The outlier-detection slot for key ("<cluster name>|<endpoint id>") in the
 * table being built, kept and allocated as ism_shm_ep_intern's (an endpoint
 * that a reload takes out of a cluster and the next puts back has a new
 * one), for endpoint slot ep. -ENOSPC when the table is full, -ENOMEM. */
int ism_shm_od_intern(struct ism_shm *shm, const char *key, uint32_t ep, uint32_t *id);
/* Frees endpoint and outlier-detection slots that neither the current nor any
 * live generation, nor a table built and waiting (ism_shm_gen_built),
 * references. */
void ism_shm_ep_sweep(struct ism_shm *shm);

/* --- workers (master) --- */
struct ism_worker_slot *ism_shm_worker(struct ism_shm *shm, int w);
/* Worker slot w has process pid (0: none any more). Only the generations a
 * live slot records are kept from reclaim (a worker can write any slot's). */
void ism_shm_worker_live(struct ism_shm *shm, int w, pid_t pid);
/* Worker slot w's process is gone: what it held of the endpoints' shared
 * counts (its struct ism_ep_held records) is taken off them, unless the
 * endpoint's slot went to another endpoint since; the records are cleared.
 * Whether it held requests in flight or places in the clusters' counted
 * capacity (waiting, retrying: slot's cluster_holds; connections alone hold
 * no cluster count): a new generation then starts the clusters' counts from
 * the living workers' share. */
bool ism_shm_worker_give_back(struct ism_shm *shm, int w);
/* Sums every worker's counters into out. */
void ism_shm_stats_sum(const struct ism_shm *shm, struct ism_worker_stats *out);

/* Adds n (taken away: (uint64_t)-n) to a counter that only this process
 * writes: a relaxed load and store, which a reader sees whole, instead of a
 * locked read-modify-write (some 20 cycles each, a few dozen a request). Not
 * for counters several workers share (endpoints', clusters', routes'). */
static inline void ism_wstat_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

#endif
