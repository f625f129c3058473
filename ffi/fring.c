/* The frame ring from C (see fring.h and routing/ring.ts). Positions and sequence numbers are
 * int32 words that wrap; they are compared by their signed difference, as the TypeScript side
 * does with `| 0`. The protocol needs acquire loads and release stores of the sequence numbers
 * (a record's bytes are published by its first slot's store, a freed run by its last slot's)
 * and an atomic compare-and-swap of the tail; JavaScript's Atomics are sequentially consistent,
 * which is stronger, so both sides may meet on one ring. Release stores instead of sequentially
 * consistent ones matter here: each of those is a full barrier on x86 (measured: freeing slots
 * took 6 % of the dataplane's time in the 64-byte loop benchmark). */
#include "fring.h"

#include <string.h>

#include "vring.h"

#define TAIL 0
#define HEAD 1
#define HEADER_WORDS 2u
#define SLOT_WORDS 2u
#define GEOMETRY_WORDS 2u
/* As MAX_SPINS in routing/ring.ts: a producer that keeps losing the race calls the ring full. */
#define MAX_SPINS 64

static int32_t *seq_of(const struct mvn_fring *r, uint32_t pos)
{
	return &r->ctl[HEADER_WORDS + (pos & (r->slots - 1)) * SLOT_WORDS];
}

static int32_t load(const int32_t *w)
{
	return __atomic_load_n(w, __ATOMIC_ACQUIRE);
}

static void store(int32_t *w, uint32_t v)
{
	__atomic_store_n(w, (int32_t)v, __ATOMIC_RELEASE);
}

/* Slots a record of a frame of len bytes takes. */
static uint32_t slots_for(const struct mvn_fring *r, uint32_t len)
{
	return (uint32_t)(((uint64_t)MVN_META_SIZE + len + r->slot_bytes - 1) / r->slot_bytes);
}

bool mvn_fring_open(struct mvn_fring *r, uint8_t *p, uint64_t len)
{
	if (p == NULL || len < (HEADER_WORDS + GEOMETRY_WORDS) * 4 || ((uintptr_t)p & 3) != 0)
		return false;
	uint32_t geo[2];
	memcpy(geo, p + len - GEOMETRY_WORDS * 4, sizeof(geo));
	uint32_t slots = geo[0], slot_bytes = geo[1];
	if (slots < 2 || (slots & (slots - 1)) != 0 || slot_bytes <= MVN_META_SIZE)
		return false;
	uint64_t ctl_bytes = (HEADER_WORDS + (uint64_t)slots * SLOT_WORDS) * 4;
	uint64_t data_bytes = ((uint64_t)slots * slot_bytes + 3) / 4 * 4;
	if (ctl_bytes + data_bytes + GEOMETRY_WORDS * 4 != len)
		return false;
	r->ctl = (int32_t *)(void *)p;
	r->data = p + ctl_bytes;
	r->slots = slots;
	r->slot_bytes = slot_bytes;
	return true;
}

bool mvn_fring_push(const struct mvn_fring *r, const uint8_t *meta, const uint8_t *frame,
		    uint32_t len)
{
	uint32_t need = slots_for(r, len);
	if (need > r->slots)
		return false;
	for (int spins = 0; spins < MAX_SPINS; spins++) {
		uint32_t pos = (uint32_t)load(&r->ctl[TAIL]);
		uint32_t idx = pos & (r->slots - 1);
		uint32_t skip = idx + need > r->slots ? r->slots - idx : 0;
		uint32_t take = skip > 0 ? skip : need;
		uint32_t last = pos + take - 1;
		int32_t dif = (int32_t)((uint32_t)load(seq_of(r, last)) - last);
		if (dif < 0)
			return false;
		if (dif > 0)
			continue;
		int32_t expect = (int32_t)pos;
		if (!__atomic_compare_exchange_n(&r->ctl[TAIL], &expect, (int32_t)(pos + take), false,
						 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
			continue;
		int32_t *s = seq_of(r, pos);
		if (skip > 0) {
			/* The run up to the end becomes a skip record; the frame starts at slot 0. */
			s[1] = -(int32_t)skip;
			store(s, pos + 1);
			continue;
		}
		uint8_t *at = r->data + (uint64_t)idx * r->slot_bytes;
		memcpy(at, meta, MVN_META_SIZE);
		memcpy(at + MVN_META_SIZE, frame, len);
		s[1] = (int32_t)len;
		store(s, pos + 1);
		return true;
	}
	return false;
}

/* Frees take slots from the head on, the last one last (producers test a run by its last). */
static void free_slots(const struct mvn_fring *r, uint32_t pos, uint32_t take)
{
	for (uint32_t i = 0; i < take; i++)
		store(seq_of(r, pos + i), pos + i + r->slots);
	r->ctl[HEAD] = (int32_t)(pos + take);
}

bool mvn_fring_ready(const struct mvn_fring *r)
{
	uint32_t pos = (uint32_t)r->ctl[HEAD];
	return (int32_t)((uint32_t)load(seq_of(r, pos)) - (pos + 1)) == 0;
}

int mvn_fring_peek(const struct mvn_fring *r, const uint8_t **meta, const uint8_t **frame,
		   uint32_t *len)
{
	for (;;) {
		uint32_t pos = (uint32_t)r->ctl[HEAD];
		uint32_t idx = pos & (r->slots - 1);
		int32_t *s = seq_of(r, pos);
		if ((int32_t)((uint32_t)load(s) - (pos + 1)) != 0)
			return 0;
		int32_t l = s[1];
		if (l < 0) {
			uint32_t skip = (uint32_t)-(int64_t)l;
			if (skip > r->slots - idx)
				return -1;
			free_slots(r, pos, skip);
			continue;
		}
		/* A record never wraps: it ends inside the byte area. */
		if ((uint64_t)idx * r->slot_bytes + MVN_META_SIZE + (uint32_t)l >
		    (uint64_t)r->slots * r->slot_bytes)
			return -1;
		*meta = r->data + (uint64_t)idx * r->slot_bytes;
		*frame = *meta + MVN_META_SIZE;
		*len = (uint32_t)l;
		return 1;
	}
}

void mvn_fring_release(const struct mvn_fring *r, uint32_t len)
{
	free_slots(r, (uint32_t)r->ctl[HEAD], slots_for(r, len));
}
