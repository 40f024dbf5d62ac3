/* SPDX-License-Identifier: Apache-2.0 */
#include "shm/shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/log.h"

void ism_arena_init(struct ism_arena *a, void *base, size_t size)
{
	a->base = base;
	a->size = size;
	a->used = 0;
	a->mut = NULL;
}

void *ism_arena_alloc(struct ism_arena *a, size_t size, size_t align)
{
	size_t off;

	ISM_BUG_ON(align == 0 || (align & (align - 1)) != 0);
	off = (a->used + align - 1) & ~(align - 1);
	if (off > a->size || size > a->size - off)
		return NULL;
	a->used = off + size;
	memset(a->base + off, 0, size);
	return a->base + off;
}

char *ism_arena_strndup(struct ism_arena *a, const char *s, size_t len)
{
	char *p = ism_arena_alloc(a, len + 1, 1);

	if (p == NULL)
		return NULL;
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* The master's flags of an endpoint or outlier-detection slot (ep_flags,
 * od_flags). */
enum {
	SLOT_CURRENT = 1, /* the current generation's table has it */
	SLOT_BUILD = 2,	  /* given to the table being built */
	SLOT_RETIRED = 4, /* its key went to a newer slot: draining generations hold it */
	/* in use, as the master knows it: the region's in_use is for the
	 * workers, which can write it */
	SLOT_INUSE = 8,
};

static size_t round_page(size_t n)
{
	return (n + 4095) & ~(size_t)4095;
}

/* The master's private indexes of the slots. */
static void free_index(struct ism_shm *shm)
{
	free(shm->ep_slots);
	shm->ep_slots = NULL;
	free(shm->od_slots);
	shm->od_slots = NULL;
	for (uint32_t i = 0; shm->od_keys != NULL && i < ISM_MAX_OD_SLOTS; i++)
		free(shm->od_keys[i]);
	free(shm->od_keys);
	shm->od_keys = NULL;
	free(shm->ep_flags);
	shm->ep_flags = NULL;
	free(shm->od_flags);
	shm->od_flags = NULL;
}

/* The published part: a memfd mapped writable here, left out of the
 * children (each maps it read-only: ism_shm_worker_map). */
static int pub_create(struct ism_shm *shm, size_t gen_size)
{
	size_t pub_hdr = round_page(sizeof(struct ism_shm_pub));
	size_t total = pub_hdr + gen_size * ISM_GEN_SLOTS;
	unsigned char *base = MAP_FAILED;
	int fd = memfd_create("isthmus-tables", MFD_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)total) < 0 ||
	    (base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0)) ==
		MAP_FAILED ||
	    madvise(base, total, MADV_DONTFORK) < 0) {
		int err = -errno;

		if (base != MAP_FAILED)
			munmap(base, total);
		close(fd);
		return err;
	}
	shm->pub = (struct ism_shm_pub *)base;
	shm->pub_size = total;
	shm->pub_fd = fd;
	shm->pub->magic = ISM_SHM_MAGIC;
	shm->pub->layout_version = ISM_SHM_LAYOUT_VERSION;
	for (int i = 0; i < ISM_GEN_SLOTS; i++) {
		shm->own[i].base = base + pub_hdr + (size_t)i * gen_size;
		shm->own[i].size = gen_size;
	}
	return 0;
}

int ism_shm_create(struct ism_shm *shm, size_t gen_size)
{
	size_t hdr_size = round_page(sizeof(struct ism_shm_hdr));
	size_t mut_size, total;
	unsigned char *base;
	struct ism_shm_hdr *hdr;
	int ret;

	gen_size = round_page(gen_size);
	mut_size = round_page(gen_size / 4);
	total = hdr_size + mut_size * ISM_GEN_SLOTS;
	memset(shm->own, 0, sizeof(shm->own));
	memset(shm->live, 0, sizeof(shm->live));
	shm->cur = 0;
	shm->pub = NULL;
	shm->pub_fd = -1;
	/* Room for every endpoint slot's key, so that adding one never fails. */
	shm->ep_slots = malloc(ism_strmap_fixed_cap(ISM_MAX_ENDPOINTS) * sizeof(*shm->ep_slots));
	if (shm->ep_slots == NULL)
		return -ENOMEM;
	ism_strmap_init_fixed(&shm->ep_ix, ism_strmap_seed(), shm->ep_slots,
			      ism_strmap_fixed_cap(ISM_MAX_ENDPOINTS));
	shm->ep_free = 0;
	shm->od_slots = malloc(ism_strmap_fixed_cap(ISM_MAX_OD_SLOTS) * sizeof(*shm->od_slots));
	shm->od_keys = calloc(ISM_MAX_OD_SLOTS, sizeof(*shm->od_keys));
	shm->ep_flags = calloc(ISM_MAX_ENDPOINTS, 1);
	shm->od_flags = calloc(ISM_MAX_OD_SLOTS, 1);
	shm->flagged_current = 0;
	if (shm->od_slots == NULL || shm->od_keys == NULL || shm->ep_flags == NULL ||
	    shm->od_flags == NULL) {
		free_index(shm);
		return -ENOMEM;
	}
	ism_strmap_init_fixed(&shm->od_ix, ism_strmap_seed(), shm->od_slots,
			      ism_strmap_fixed_cap(ISM_MAX_OD_SLOTS));
	shm->od_free = 0;
	/* Anonymous and shared: inherited by fork() at the same address; pages are
	 * only backed once touched, so large generation slots cost nothing idle. */
	base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE,
		    -1, 0);
	if (base == MAP_FAILED) {
		int err = -errno;

		free_index(shm);
		return err;
	}
	ret = pub_create(shm, gen_size);
	if (ret < 0) {
		munmap(base, total);
		free_index(shm);
		return ret;
	}
	hdr = (struct ism_shm_hdr *)base;
	hdr->magic = ISM_SHM_MAGIC;
	hdr->layout_version = ISM_SHM_LAYOUT_VERSION;
	for (int i = 0; i < ISM_GEN_SLOTS; i++)
		ism_arena_init(&shm->own[i].mut, base + hdr_size + (size_t)i * mut_size, mut_size);
	atomic_store(&hdr->started_ms, ism_wall_ms());
	shm->started_mono_ms = ism_now_ms();
	shm->hdr = hdr;
	shm->size = total;
	return 0;
}

int ism_shm_worker_map(struct ism_shm *shm)
{
	char path[64];
	void *p;
	int fd, err = 0;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", shm->pub_fd);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		err = -errno;
	else {
		/* MAP_FIXED, not _NOREPLACE: nothing was mapped since the
		 * fork, and where the inherited writable view is there still
		 * (valgrind keeps it), the read-only one replaces it. */
		p = mmap(shm->pub, shm->pub_size, PROT_READ, MAP_SHARED | MAP_NORESERVE | MAP_FIXED,
			 fd, 0);
		if (p == MAP_FAILED)
			err = -errno;
		else if (p != shm->pub) {
			munmap(p, shm->pub_size);
			err = -EEXIST;
		}
		close(fd);
	}
	close(shm->pub_fd);
	shm->pub_fd = -1;
	return err;
}

void ism_shm_destroy(struct ism_shm *shm)
{
	if (shm->hdr != NULL)
		munmap(shm->hdr, shm->size);
	shm->hdr = NULL;
	if (shm->pub != NULL)
		munmap(shm->pub, shm->pub_size);
	shm->pub = NULL;
	if (shm->pub_fd >= 0)
		close(shm->pub_fd);
	shm->pub_fd = -1;
	free_index(shm);
	explicit_bzero(&shm->tickets, sizeof(shm->tickets));
}

/* The master's current word: its own, never the one a worker could write. */
static uint64_t current_word(const struct ism_shm *shm)
{
	return shm->cur;
}

int ism_shm_gen_begin(struct ism_shm *shm, struct ism_arena *arena)
{
	uint64_t cur = current_word(shm);

	for (int i = 0; i < ISM_GEN_SLOTS; i++) {
		struct ism_gen_own *o = &shm->own[i];

		if (o->gen != 0)
			continue;
		if (cur != 0 && (int)(cur & 0xff) == i)
			continue;
		/* Mark the slot busy with a generation no worker can hold. */
		o->gen = UINT64_MAX;
		o->table = NULL;
		atomic_store(&shm->pub->gens[i].gen, UINT64_MAX);
		shm->pub->gens[i].table = NULL;
		for (uint32_t e = 0; e < ISM_MAX_ENDPOINTS; e++)
			shm->ep_flags[e] &= ~SLOT_BUILD;
		for (uint32_t od = 0; od < ISM_MAX_OD_SLOTS; od++)
			shm->od_flags[od] &= ~SLOT_BUILD;
		ism_arena_init(arena, o->base, o->size);
		ism_arena_init(&o->mut, o->mut.base, o->mut.size);
		arena->mut = &o->mut;
		return i;
	}
	return -ENOSPC;
}

void ism_shm_gen_built(struct ism_shm *shm, int slot, const struct ism_table *table)
{
	ISM_BUG_ON(slot < 0 || slot >= ISM_GEN_SLOTS || shm->own[slot].gen != UINT64_MAX);
	shm->own[slot].table = table;
}

void ism_shm_gen_publish(struct ism_shm *shm, int slot, struct ism_table *table, uint64_t gen)
{
	struct ism_gen_slot *g = &shm->pub->gens[slot];

	ISM_BUG_ON(slot < 0 || slot >= ISM_GEN_SLOTS || gen == 0 || gen >= (UINT64_MAX >> 8) ||
		   shm->own[slot].gen != UINT64_MAX);
	table->gen = gen;
	shm->own[slot].table = table;
	shm->own[slot].gen = gen;
	g->table = table;
	atomic_store(&g->gen, gen);
	shm->cur = (gen << 8) | (uint64_t)slot;
	atomic_store(&shm->pub->current, shm->cur);
}

/* A slot given up: its pages go back to the kernel (a hole is punched in
 * the memfd and in the mutable arena for every process that maps them; the
 * next table built there starts on zero pages). A table of many routes
 * would otherwise keep its slot resident after every reload, up to
 * ISM_GEN_SLOTS of them. */
static void gen_release(struct ism_shm *shm, int i)
{
	struct ism_gen_own *o = &shm->own[i];

	o->table = NULL;
	shm->pub->gens[i].table = NULL;
	(void)madvise(o->base, o->size, MADV_REMOVE);
	(void)madvise(o->mut.base, o->mut.size, MADV_REMOVE);
	o->gen = 0;
	atomic_store(&shm->pub->gens[i].gen, 0);
}

void ism_shm_gen_abort(struct ism_shm *shm, int slot)
{
	gen_release(shm, slot);
	/* The slots the build took for endpoints no generation has go now: the
	 * next build would not take them back (no published table has them),
	 * so a reload refused for want of ids, tried again in two steps, found
	 * them taken still. */
	ism_shm_ep_sweep(shm);
}

/* Whether a live worker records generation gen (a number a worker writes:
 * one that lies only keeps a slot from being reused). */
static int gen_in_use(const struct ism_shm *shm, uint64_t gen)
{
	for (int w = 0; w < ISM_WORKER_SLOTS; w++) {
		const struct ism_worker_slot *ws = &shm->hdr->workers[w];

		if (shm->live[w] &&
		    (atomic_load(&ws->gen) == gen || atomic_load(&ws->gen_next) == gen))
			return 1;
	}
	return 0;
}

int ism_shm_gen_reclaim(struct ism_shm *shm)
{
	return ism_shm_gen_reclaim_with(shm, NULL, NULL);
}

int ism_shm_gen_reclaim_with(struct ism_shm *shm,
			     void (*gone)(const struct ism_table *t, void *ctx), void *ctx)
{
	uint64_t cur = current_word(shm);
	int freed = 0;

	for (int i = 0; i < ISM_GEN_SLOTS; i++) {
		const struct ism_gen_own *o = &shm->own[i];

		/* Free, being built (UINT64_MAX), or the published one: keep. */
		if (o->gen == 0 || o->gen == UINT64_MAX || o->gen == cur >> 8)
			continue;
		if (gen_in_use(shm, o->gen))
			continue;
		if (gone != NULL && o->table != NULL)
			gone(o->table, ctx);
		gen_release(shm, i);
		freed++;
	}
	return freed;
}

const struct ism_table *ism_shm_current(const struct ism_shm *shm)
{
	uint64_t cur = current_word(shm);

	if (cur == 0)
		return NULL;
	return shm->own[cur & 0xff].table;
}

/* Hazard protocol (workers): announce the generation in *hazard, then
 * confirm it is still the published one. If the master published in
 * between, it may already have scanned past our slot, so what we announced
 * must not be used. Returns the confirmed current word (0: nothing
 * published). */
static uint64_t announce(struct ism_shm *shm, _Atomic uint64_t *hazard)
{
	uint64_t cur = atomic_load(&shm->pub->current), again;

	for (;;) {
		if (cur == 0) {
			atomic_store(hazard, 0);
			return 0;
		}
		atomic_store(hazard, cur >> 8);
		again = atomic_load(&shm->pub->current);
		if (again == cur)
			return cur;
		cur = again;
	}
}

const struct ism_table *ism_shm_acquire(struct ism_shm *shm, int w)
{
	uint64_t cur = announce(shm, &shm->hdr->workers[w].gen);

	return cur ? shm->pub->gens[cur & 0xff].table : NULL;
}

const struct ism_table *ism_shm_peek(struct ism_shm *shm, int w)
{
	uint64_t cur = announce(shm, &shm->hdr->workers[w].gen_next);

	return cur ? shm->pub->gens[cur & 0xff].table : NULL;
}

void ism_shm_commit(struct ism_shm *shm, int w, int take)
{
	struct ism_worker_slot *ws = &shm->hdr->workers[w];

	if (take)
		atomic_store(&ws->gen, atomic_load(&ws->gen_next));
	atomic_store(&ws->gen_next, 0);
}

int ism_table_same_listeners(const struct ism_table *a, const struct ism_table *b)
{
	if (a->n_listeners != b->n_listeners)
		return 0;
	for (uint32_t i = 0; i < a->n_listeners; i++)
		if (a->listeners[i].addrlen != b->listeners[i].addrlen ||
		    memcmp(&a->listeners[i].addr, &b->listeners[i].addr, a->listeners[i].addrlen))
			return 0;
	return 1;
}

int ism_shm_gen_changed(const struct ism_shm *shm, int w)
{
	return (atomic_load_explicit(&shm->pub->current, memory_order_relaxed) >> 8) !=
	       atomic_load_explicit(&shm->hdr->workers[w].gen, memory_order_relaxed);
}

void ism_shm_release(struct ism_shm *shm, int w)
{
	atomic_store(&shm->hdr->workers[w].gen, 0);
}

static void mark_table(const struct ism_table *t, unsigned char *used, unsigned char *od_used,
		       unsigned char bit)
{
	for (uint32_t c = 0; c < t->n_clusters; c++) {
		for (uint32_t e = 0; e < t->clusters[c].n_endpoints; e++) {
			const struct ism_endpoint *ep = &t->clusters[c].endpoints[e];

			used[ep->id] |= bit;
			if (ep->od < ISM_MAX_OD_SLOTS)
				od_used[ep->od] |= bit;
		}
	}
}

/* SLOT_CURRENT on the current table's slots, marked again after each publish. */
static void flag_current(struct ism_shm *shm)
{
	uint64_t cur = current_word(shm);

	if (cur == shm->flagged_current)
		return;
	for (uint32_t e = 0; e < ISM_MAX_ENDPOINTS; e++)
		shm->ep_flags[e] &= ~SLOT_CURRENT;
	for (uint32_t o = 0; o < ISM_MAX_OD_SLOTS; o++)
		shm->od_flags[o] &= ~SLOT_CURRENT;
	if (cur != 0 && shm->own[cur & 0xff].table != NULL)
		mark_table(shm->own[cur & 0xff].table, shm->ep_flags, shm->od_flags, SLOT_CURRENT);
	shm->flagged_current = cur;
}

/* Whether the slot found by key serves the table being built: the current
 * table has it (a reload keeps its endpoint, and its state), or the build
 * took it already. Otherwise a reload removed the endpoint and this one adds
 * it back, and a draining generation, or one not yet reclaimed, holds the
 * slot still: the endpoint gets a new one, as Envoy makes a new host, where
 * the old slot's ejection, admin state and warmup came back with it, or not,
 * depending on whether the sweep had run in between. */
static bool slot_kept(unsigned char *flags)
{
	if ((*flags & (SLOT_CURRENT | SLOT_BUILD)) == 0)
		return false;
	*flags |= SLOT_BUILD;
	return true;
}

/* The key's index entry, given to the new slot id: the slot old it had
 * before (UINT32_MAX: none) is retired (no longer found by key, left out of
 * the index's rebuilds). */
static void slot_rekey(struct ism_strmap *ix, unsigned char *flags, uint32_t old, const char *key,
		       uint32_t id)
{
	flags[id] = SLOT_BUILD | SLOT_INUSE;
	if (old != UINT32_MAX) {
		flags[old] |= SLOT_RETIRED;
		ism_strmap_replace(ix, key, strlen(key), id);
		return;
	}
	/* Cannot fail: the index has room for every slot. */
	ism_strmap_add(ix, key, strlen(key), id, NULL);
}

int ism_shm_ep_intern(struct ism_shm *shm, const char *key, uint32_t initial_health, uint32_t *id)
{
	struct ism_shm_hdr *h = shm->hdr;
	uint32_t free_slot = shm->ep_free, inc, old = UINT32_MAX;

	if (strlen(key) >= ISM_EP_KEY_MAX)
		return -ENAMETOOLONG;
	/* A reload interns every endpoint of the file: by hash, not by a scan
	 * of the table per endpoint. Slots are taken here only and freed by the
	 * sweep only, which rebuilds the index. */
	flag_current(shm);
	if (ism_strmap_get(&shm->ep_ix, key, strlen(key), &old) && slot_kept(&shm->ep_flags[old])) {
		*id = old;
		return 0;
	}
	while (free_slot < ISM_MAX_ENDPOINTS && (shm->ep_flags[free_slot] & SLOT_INUSE))
		free_slot++;
	if (free_slot == ISM_MAX_ENDPOINTS)
		return -ENOSPC;
	shm->ep_free = free_slot + 1;
	inc = atomic_load(&h->eps[free_slot].incarnation);
	memset(&h->eps[free_slot], 0, sizeof(h->eps[free_slot]));
	atomic_store(&h->eps[free_slot].incarnation, inc + 1);
	snprintf(shm->pub->ep_keys[free_slot], ISM_EP_KEY_MAX, "%s", key);
	atomic_store(&h->eps[free_slot].health, initial_health);
	atomic_store(&h->eps[free_slot].health_changed_ms, ism_wall_ms());
	/* A new endpoint without a check starts its warmup now (Envoy: a host
	 * added healthy); a checked one when its checks pass. */
	if (initial_health == ISM_EP_HEALTHY)
		atomic_store(&h->eps[free_slot].warm_since_ms, ism_now_ms());
	atomic_store(&h->eps[free_slot].in_use, 1);
	slot_rekey(&shm->ep_ix, shm->ep_flags, old, shm->pub->ep_keys[free_slot], free_slot);
	*id = free_slot;
	return 0;
}

bool ism_shm_ep_find(const struct ism_shm *shm, const char *key, uint32_t *id)
{
	return ism_strmap_get(&shm->ep_ix, key, strlen(key), id);
}

bool ism_shm_ep_in_use(const struct ism_shm *shm, uint32_t id)
{
	return id < ISM_MAX_ENDPOINTS && (shm->ep_flags[id] & SLOT_INUSE);
}

bool ism_shm_ep_listed(const struct ism_shm *shm, uint32_t id)
{
	return id < ISM_MAX_ENDPOINTS &&
	       (shm->ep_flags[id] & (SLOT_INUSE | SLOT_RETIRED)) == SLOT_INUSE;
}

void ism_shm_tickets_set(struct ism_shm *shm, const struct ism_ticket_key keys[ISM_TICKET_KEYS],
			 uint64_t rotated_ms)
{
	struct ism_ticket_keys *tk = &shm->hdr->tickets;
	/* Odd while writing, even after, whatever a worker wrote in it. */
	uint32_t s = (atomic_load_explicit(&tk->seq, memory_order_relaxed) + 1) | 1u;

	atomic_store_explicit(&tk->seq, s, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	memcpy(tk->keys, keys, sizeof(tk->keys));
	atomic_store_explicit(&tk->seq, s + 1, memory_order_release);
	tk->rotated_ms = rotated_ms;
	memcpy(shm->tickets.keys, keys, sizeof(shm->tickets.keys));
	shm->tickets.rotated_ms = rotated_ms;
}

int ism_shm_od_intern(struct ism_shm *shm, const char *key, uint32_t ep, uint32_t *id)
{
	struct ism_od_state *ods = shm->hdr->ods;
	uint32_t free_slot = shm->od_free, inc, old = UINT32_MAX;
	char *copy;

	flag_current(shm);
	if (ism_strmap_get(&shm->od_ix, key, strlen(key), &old) && slot_kept(&shm->od_flags[old])) {
		*id = old;
		return 0;
	}
	while (free_slot < ISM_MAX_OD_SLOTS && (shm->od_flags[free_slot] & SLOT_INUSE))
		free_slot++;
	if (free_slot == ISM_MAX_OD_SLOTS)
		return -ENOSPC;
	copy = strdup(key);
	if (copy == NULL)
		return -ENOMEM;
	shm->od_free = free_slot + 1;
	free(shm->od_keys[free_slot]);
	shm->od_keys[free_slot] = copy;
	inc = ods[free_slot].incarnation;
	memset(&ods[free_slot], 0, sizeof(ods[free_slot]));
	ods[free_slot].incarnation = inc + 1;
	ods[free_slot].ep = ep;
	atomic_store(&ods[free_slot].in_use, 1);
	slot_rekey(&shm->od_ix, shm->od_flags, old, copy, free_slot);
	*id = free_slot;
	return 0;
}

/* An outlier slot no generation holds any more: no worker can eject through
 * it, so an ejection it still has is taken off its endpoint's count here. */
static void od_sweep(struct ism_shm *shm, const unsigned char *od_used)
{
	struct ism_shm_hdr *h = shm->hdr;

	for (uint32_t i = 0; i < ISM_MAX_OD_SLOTS; i++) {
		struct ism_od_state *o = &h->ods[i];

		if (od_used[i] || !(shm->od_flags[i] & SLOT_INUSE))
			continue;
		if (atomic_load(&o->ejected) != 0 && o->ep < ISM_MAX_ENDPOINTS &&
		    atomic_load(&h->eps[o->ep].ejected_in) > 0)
			atomic_fetch_sub(&h->eps[o->ep].ejected_in, 1);
		atomic_store(&o->in_use, 0);
		shm->od_flags[i] = 0;
	}
	/* A retired slot's key is its newer slot's. */
	ism_strmap_init_fixed(&shm->od_ix, shm->od_ix.seed, shm->od_slots, shm->od_ix.cap);
	for (uint32_t i = 0; i < ISM_MAX_OD_SLOTS; i++)
		if ((shm->od_flags[i] & (SLOT_INUSE | SLOT_RETIRED)) == SLOT_INUSE)
			ism_strmap_add(&shm->od_ix, shm->od_keys[i], strlen(shm->od_keys[i]), i,
				       NULL);
	shm->od_free = 0;
}

const struct ism_table *ism_shm_gen_table(const struct ism_shm *shm, int i)
{
	const struct ism_gen_own *o = &shm->own[i];

	return o->gen != 0 && o->gen != UINT64_MAX ? o->table : NULL;
}

void ism_shm_ep_sweep(struct ism_shm *shm)
{
	static unsigned char used[ISM_MAX_ENDPOINTS]; /* master-only scratch */
	static unsigned char od_used[ISM_MAX_OD_SLOTS];

	memset(used, 0, sizeof(used));
	memset(od_used, 0, sizeof(od_used));
	/* The live generations, and a table built that waits to be published
	 * (a slot being built has one once ism_shm_gen_built gave it). */
	for (int i = 0; i < ISM_GEN_SLOTS; i++)
		if (shm->own[i].gen != 0 && shm->own[i].table != NULL)
			mark_table(shm->own[i].table, used, od_used, 1);
	for (int i = 0; i < ISM_MAX_ENDPOINTS; i++)
		if (!used[i] && (shm->ep_flags[i] & SLOT_INUSE)) {
			atomic_store(&shm->hdr->eps[i].in_use, 0);
			shm->ep_flags[i] = 0;
		}
	ism_strmap_init_fixed(&shm->ep_ix, shm->ep_ix.seed, shm->ep_slots, shm->ep_ix.cap);
	for (uint32_t i = 0; i < ISM_MAX_ENDPOINTS; i++)
		if (ism_shm_ep_listed(shm, i))
			ism_strmap_add(&shm->ep_ix, shm->pub->ep_keys[i],
				       strlen(shm->pub->ep_keys[i]), i, NULL);
	shm->ep_free = 0;
	od_sweep(shm, od_used);
}

bool ism_shm_worker_give_back(struct ism_shm *shm, int w)
{
	struct ism_worker_slot *ws = ism_shm_worker(shm, w);
	bool held = false;

	for (uint32_t i = 0; i < ISM_MAX_ENDPOINTS; i++) {
		struct ism_ep_held *h = &ws->held[i];
		struct ism_ep_state *es = &shm->hdr->eps[i];

		if (h->inflight == 0 && h->conns == 0)
			continue;
		held = held || h->inflight > 0;
		if (h->inc == atomic_load(&es->incarnation)) {
			atomic_fetch_sub(&es->inflight, h->inflight);
			atomic_fetch_sub(&es->connections, h->conns);
		}
		*h = (struct ism_ep_held){0};
	}
	held = held || ws->cluster_holds > 0;
	ws->cluster_holds = 0;
	return held;
}

void ism_shm_worker_live(struct ism_shm *shm, int w, pid_t pid)
{
	ISM_BUG_ON(w < 0 || w >= ISM_WORKER_SLOTS);
	atomic_store(&shm->hdr->workers[w].pid, pid);
	shm->live[w] = pid != 0;
}

struct ism_worker_slot *ism_shm_worker(struct ism_shm *shm, int w)
{
	ISM_BUG_ON(w < 0 || w >= ISM_WORKER_SLOTS);
	return &shm->hdr->workers[w];
}

void ism_shm_stats_sum(const struct ism_shm *shm, struct ism_worker_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (int w = 0; w < ISM_WORKER_SLOTS; w++) {
		const struct ism_worker_stats *s = &shm->hdr->workers[w].stats;
		_Atomic uint64_t *dst = (_Atomic uint64_t *)out;
		const _Atomic uint64_t *src = (const _Atomic uint64_t *)s;

		for (size_t i = 0; i < sizeof(*s) / sizeof(uint64_t); i++)
			atomic_store_explicit(
			    &dst[i],
			    atomic_load_explicit(&dst[i], memory_order_relaxed) +
				atomic_load_explicit(&src[i], memory_order_relaxed),
			    memory_order_relaxed);
	}
}
