/* libFuzzer target over the forwarding fast path's guest-facing code (ffi/fastpath.c): the
 * classification of a burst of guest frames against a forwarding table, the pushes into a peer's
 * frame ring (ffi/fring.c) and the compaction of the frames left; then the ring's consumer side
 * over a ring whose control words the input has overwritten (a peer's ring is shared memory: its
 * reader must stay inside it whatever it finds). The device calls fastpath.c makes are stubbed:
 * mvn_dev_tx_gather hands over the input's frames, the larger ones (as mvn_vring_tx_gather
 * does) as a snapshot in the burst and the rest in pieces the input cuts, and direct delivery is
 * refused, so every taken frame goes through the ring. The frames left must come back whole and
 * unchanged, and the chains must be released exactly once. See fuzz/README.md. */
#include "../ffi/fastpath.c"

#include <stdlib.h>

#include "../ffi/fring.h"
#include "input.h"

#define MAX_FRAMES 8
#define MAX_ENTRIES 4
#define RING_SLOTS 16u
#define RING_SLOT_BYTES 128u


static void take_bytes(struct input *in, uint8_t *dst, size_t len)
{
	for (size_t i = 0; i < len; i++)
		dst[i] = (uint8_t)take(in, 1);
}

/* The burst mvn_dev_tx_gather "received": filled from the input before each call, and for
 * each frame the number of pieces its rest comes in (0: copied whole) and where they are cut. */
static uint8_t burst[MAX_FRAMES * (4 + MVN_META_SIZE + 2048)];
static uint32_t burst_len, burst_count, pieces[MAX_FRAMES], cuts[MAX_FRAMES];
/* The "guest memory" the pieces point into: a copy of the burst, so the burst stays the
 * reference the frames left are compared with. */
static uint8_t guest[sizeof(burst)];
static int held; /* 1 between gather and release */

int32_t mvn_dev_tx_gather(int32_t h, uint8_t *out, uint32_t cap, uint32_t max,
			  struct mvn_frame_src *src, int32_t *held_idx)
{
	(void)h;
	if (burst_len > cap || burst_count > max || held)
		abort();
	memcpy(guest, burst, burst_len);
	memset(out, 0xee, burst_len);
	uint32_t off = 0;
	for (uint32_t i = 0; i < burst_count; i++) {
		uint32_t len;
		memcpy(&len, burst + off, 4);
		uint8_t *frame = out + off + 4 + MVN_META_SIZE;
		const uint8_t *g = guest + off + 4 + MVN_META_SIZE;
		memcpy(out + off, burst + off, 4 + MVN_META_SIZE);
		struct mvn_frame_src *fs = &src[i];
		fs->snap = frame;
		fs->snap_len = len;
		fs->nx = 0;
		if (len >= MVN_GATHER_MIN && pieces[i] > 0) {
			/* pieces[i] pieces of the rest, the last taking what is left. */
			uint32_t rest = len - MVN_SNAP_BYTES, at = MVN_SNAP_BYTES;
			for (uint32_t k = 0; k < pieces[i]; k++) {
				uint32_t c = k + 1 == pieces[i] ? rest : 1 + (cuts[i] + 97 * k) % rest;
				fs->x[fs->nx].p = g + at;
				fs->x[fs->nx].len = c;
				fs->nx++;
				at += c;
				rest -= c;
				if (rest == 0)
					break;
			}
			fs->snap_len = MVN_SNAP_BYTES;
		}
		memcpy(frame, g, fs->snap_len);
		off += 4 + MVN_META_SIZE + len;
	}
	*held_idx = 7;
	held = 1;
	return (int32_t)burst_count;
}

void mvn_dev_tx_release(int32_t h, int32_t held_idx)
{
	(void)h;
	if (!held || held_idx != 7)
		abort();
	held = 0;
}

int32_t mvn_dev_notify(int32_t h)
{
	(void)h;
	return 0;
}

bool mvn_direct_begin(struct mvn_direct *x, int32_t h)
{
	(void)x;
	(void)h;
	return false;
}

bool mvn_direct_accepts(const struct mvn_direct *x, const uint8_t *meta)
{
	(void)x;
	(void)meta;
	abort(); /* never begun */
}

bool mvn_direct_put_src(struct mvn_direct *x, const uint8_t *meta,
			const struct mvn_frame_src *fs, uint32_t len)
{
	(void)x;
	(void)meta;
	(void)fs;
	(void)len;
	abort(); /* never begun */
}

void mvn_direct_end(struct mvn_direct *x)
{
	(void)x;
	abort();
}

/* A ring laid out as routing/ring.ts FrameRing.allocate does. */
static _Alignas(8) uint8_t ring_mem[(2 + RING_SLOTS * 2) * 4 + RING_SLOTS * RING_SLOT_BYTES + 8];

static void ring_init(void)
{
	memset(ring_mem, 0, sizeof(ring_mem));
	int32_t *ctl = (int32_t *)(void *)ring_mem;
	for (uint32_t i = 0; i < RING_SLOTS; i++)
		ctl[2 + i * 2] = (int32_t)i;
	uint32_t geo[2] = { RING_SLOTS, RING_SLOT_BYTES };
	memcpy(ring_mem + sizeof(ring_mem) - 8, geo, 8);
}

static uint8_t table[FWD_HEADER + MAX_ENTRIES * FWD_ENTRY];
static uint8_t out[sizeof(burst)];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	ring_init();
	memset(table, 0, sizeof(table));
	uint32_t version = FWD_VERSION, flags = (uint32_t)take(&in, 1) & 3u;
	uint32_t mtu = (uint32_t)take(&in, 2), count = (uint32_t)take(&in, 1) % (MAX_ENTRIES + 1);
	memcpy(table, &version, 4);
	memcpy(table + 4, &flags, 4);
	memcpy(table + 8, &mtu, 4);
	memcpy(table + 12, &count, 4);
	take_bytes(&in, table + 16, 6 + 6 + 4 + 16); /* own MAC, gateway MAC, own IPv4, own IPv6 */
	for (uint32_t i = 0; i < count; i++) {
		uint8_t *e = table + FWD_HEADER + i * FWD_ENTRY;
		e[0] = take(&in, 1) & 1 ? 6 : 4;
		int32_t handle = (int32_t)(i + 1);
		memcpy(e + 4, &handle, 4);
		take_bytes(&in, e + 8, e[0] == 4 ? 4 : 16);
		take_bytes(&in, e + 24, 6);
		uint64_t ring = (uint64_t)(uintptr_t)ring_mem, ring_len = sizeof(ring_mem);
		memcpy(e + 32, &ring, 8);
		memcpy(e + 40, &ring_len, 8);
	}
	/* The table is sorted by its builder; the search must stay in bounds when it is not. */
	uint32_t nframes = 1 + (uint32_t)take(&in, 1) % MAX_FRAMES;
	burst_len = 0;
	burst_count = nframes;
	for (uint32_t i = 0; i < nframes; i++) {
		uint32_t len = (uint32_t)take(&in, 2) % 2048;
		pieces[i] = (uint32_t)take(&in, 1) % (MVN_SRC_EXTENTS + 1);
		cuts[i] = (uint32_t)take(&in, 2);
		memcpy(burst + burst_len, &len, 4);
		take_bytes(&in, burst + burst_len + 4, MVN_META_SIZE + len);
		burst_len += 4 + MVN_META_SIZE + len;
	}
	uint32_t res[4];
	int32_t left = mvn_fwd_tx(1, out, sizeof(out), MAX_FRAMES, table, sizeof(table), res);
	if (left < 0 || (uint32_t)left + res[0] + res[1] != nframes || res[2] != 0 ||
	    res[3] != 0 || held)
		abort();
	/* The frames left are the input's frames not taken, in order, whole and unchanged. */
	uint32_t o = 0, b = 0;
	for (int32_t i = 0; i < left; i++) {
		uint32_t len;
		memcpy(&len, out + o, 4);
		uint32_t rec = 4 + MVN_META_SIZE + len;
		bool found = false;
		while (!found && b < burst_len) {
			uint32_t blen;
			memcpy(&blen, burst + b, 4);
			uint32_t brec = 4 + MVN_META_SIZE + blen;
			found = brec == rec && memcmp(burst + b, out + o, rec) == 0;
			b += brec;
		}
		if (!found)
			abort();
		o += rec;
	}
	/* Overwrite control words of the ring, then read it as its owner would, bounded. */
	int32_t *ctl = (int32_t *)(void *)ring_mem;
	uint32_t ctl_words = 2 + RING_SLOTS * 2;
	for (uint32_t k = (uint32_t)take(&in, 1) % 8; k > 0; k--) {
		uint32_t w = (uint32_t)take(&in, 1) % ctl_words;
		ctl[w] = (int32_t)take(&in, 4);
	}
	struct mvn_fring r;
	if (!mvn_fring_open(&r, ring_mem, sizeof(ring_mem)))
		abort();
	for (int i = 0; i < 64; i++) {
		const uint8_t *meta, *frame;
		uint32_t len;
		if (mvn_fring_peek(&r, &meta, &frame, &len) != 1)
			break;
		if (frame < ring_mem || frame + len > ring_mem + sizeof(ring_mem) - 8 ||
		    meta + MVN_META_SIZE != frame)
			abort();
		volatile uint8_t sink = 0;
		for (uint32_t b = 0; b < len; b++)
			sink ^= frame[b];
		(void)sink;
		mvn_fring_release(&r, len);
	}
	return 0;
}
