/* libFuzzer target over the guest-facing native code: address translation (mem.c) and the
 * split-ring walker with its TX and RX bursts (vring.c). The input describes a memory table
 * (regions carved out of one arena, with gaps and their own UVAs), ring placement, features
 * and indices, and then becomes the guest memory itself, so the fuzzer writes descriptor
 * tables, rings and indirect tables freely. Last, a gathered TX burst (mvn_vring_tx_gather) is
 * delivered from the guest's own buffers into the same ring as a receive queue. See
 * fuzz/README.md. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../ffi/mem.h"
#include "../ffi/vring.h"
#include "input.h"

#define ARENA_SIZE (64 * 1024)


static _Alignas(64) uint8_t arena[ARENA_SIZE];
static uint8_t out[4 + MVN_MAX_FRAME + 4096];
static uint8_t frames[3 * (4 + MVN_META_SIZE) + 60 + 1514 + 9000];
static struct mvn_frame_src src[64];

/* Frames of 60, 1514 and 9000 bytes in the burst layout, with zero (no offload) headers. */
static uint32_t make_frames(void)
{
	const uint32_t lens[3] = { 60, 1514, 9000 };
	uint32_t off = 0;
	for (int i = 0; i < 3; i++) {
		memcpy(frames + off, &lens[i], 4);
		memset(frames + off + 4, 0, MVN_META_SIZE);
		memset(frames + off + 4 + MVN_META_SIZE, 0xa0 + i, lens[i]);
		off += 4 + MVN_META_SIZE + lens[i];
	}
	return off;
}

static void place_ring_part(struct input *in, const struct mvn_mem *mem, uint64_t *uva)
{
	const struct mvn_region *r = &mem->r[take(in, 1) % mem->n];
	*uva = r->uva + take(in, 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	uint8_t cfg = (uint8_t)take(&in, 1);
	uint64_t features = 0;
	if (cfg & 1)
		features |= 1ull << MVN_F_MRG_RXBUF;
	if (cfg & 2)
		features |= 1ull << MVN_F_EVENT_IDX;
	if (cfg & 4)
		features |= 1ull << MVN_F_INDIRECT_DESC;
	if (cfg & 8)
		features |= 1ull << MVN_F_VERSION_1;

	struct mvn_mem mem = { .n = 0 };
	uint32_t nreg = (uint32_t)take(&in, 1) % 4 + 1;
	uint64_t gpa = 0;
	size_t used = 0;
	for (uint32_t i = 0; i < nreg && used < ARENA_SIZE; i++) {
		size_t len = ((size_t)take(&in, 2) % (ARENA_SIZE / 2) + 16) & ~(size_t)15;
		if (len > ARENA_SIZE - used)
			len = ARENA_SIZE - used;
		gpa += take(&in, 1) * 64; /* a gap before the region */
		if (cfg & 16)
			gpa = take(&in, 8); /* anywhere, including near 2^64 */
		struct mvn_region r = { .gpa = gpa, .size = len, .host = arena + used,
					.uva = 0x10000000ull * (i + 1) + take(&in, 2) * 16 };
		if (mvn_region_check(&r) != 0 || mvn_mem_overlaps(&mem, &r))
			continue;
		mem.r[mem.n++] = r;
		gpa += len;
		used += len;
	}
	if (mem.n == 0)
		return 0;

	struct mvn_vring vr;
	mvn_vring_init(&vr);
	if (mvn_vring_set_num(&vr, (uint32_t)take(&in, 2) % 512 + 1) != 0)
		return 0;
	place_ring_part(&in, &mem, &vr.desc_uva);
	place_ring_part(&in, &mem, &vr.avail_uva);
	place_ring_part(&in, &mem, &vr.used_uva);
	vr.addr_set = true;
	vr.last_avail = vr.used_idx = (uint16_t)take(&in, 2);
	vr.started = vr.enabled = true;
	uint64_t probe_addr = take(&in, 8);
	uint32_t probe_len = (uint32_t)take(&in, 2);

	/* The rest of the input is guest memory. */
	memset(arena, 0, sizeof(arena));
	memcpy(arena, in.p, in.n < ARENA_SIZE ? in.n : ARENA_SIZE);

	uint8_t tmp[65536];
	if (mvn_mem_read(&mem, probe_addr, tmp, probe_len) == 0)
		mvn_mem_write(&mem, probe_addr, tmp, probe_len);
	mvn_mem_covers(&mem, probe_addr, probe_len);

	uint64_t ctr[MVN_CTR_COUNT] = { 0 };
	struct mvn_vring_env env = { .mem = &mem, .features = features, .ctr = ctr };
	if (mvn_vring_resolve(&vr, &mem)) {
		mvn_vring_pending(&vr);
		mvn_vring_tx_burst(&vr, &env, out, sizeof(out), 64);
		/* The same ring as a receive queue: the walker in the other direction. */
		mvn_vring_rx_burst(&vr, &env, frames, make_frames(), 3);
		mvn_vring_tx_burst(&vr, &env, out, sizeof(out), 64);
		/* Guest to guest in one copy (the fast path's direct delivery): gather, deliver
		 * each frame from its pieces into the same ring as a receive queue (so the pieces
		 * may overlap the buffers written), then give the chains back. */
		uint16_t held;
		uint32_t n = mvn_vring_tx_gather(&vr, &env, out, sizeof(out), 64, src, &held);
		struct mvn_rx_batch b;
		mvn_vring_rx_start(&vr, &env, &b);
		uint32_t off = 0;
		for (uint32_t i = 0; i < n; i++) {
			uint32_t len;
			memcpy(&len, out + off, 4);
			mvn_vring_rx_offer_src(&vr, &env, &b, out + off + 4, &src[i], len);
			if (i % 2 == 1)
				mvn_frame_src_fill(&src[i], out + off + 4 + MVN_META_SIZE);
			off += 4 + MVN_META_SIZE + len;
		}
		mvn_vring_rx_finish(&vr, &env, &b);
		mvn_vring_tx_release(&vr, &env, held);
	}
	mvn_vring_forget(&vr);
	return 0;
}
