/* Split virtqueue processing. See vring.h; layout facts from virtio 1.x section 2.7. */
#include "vring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "virtio 1.x rings are little-endian; this shim reads them natively"
#endif

#define DESC_F_NEXT 1u
#define DESC_F_WRITE 2u
#define DESC_F_INDIRECT 4u
#define AVAIL_F_NO_INTERRUPT 1u
#define DESC_SIZE 16u

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

_Static_assert(sizeof(struct desc) == DESC_SIZE, "virtq_desc is 16 bytes");

static bool has(uint64_t features, unsigned bit)
{
	return (features >> bit) & 1u;
}

/* The virtio-net header: 12 bytes once num_buffers exists (VERSION_1 or MRG_RXBUF), else 10. */
static uint32_t net_hdr_len(uint64_t features)
{
	return has(features, MVN_F_VERSION_1) || has(features, MVN_F_MRG_RXBUF) ? 12 : 10;
}

/* Ring part sizes including the trailing event field (present whether or not EVENT_IDX is
 * negotiated, so mapping it is always allowed). */
static uint64_t desc_bytes(uint32_t num)
{
	return (uint64_t)DESC_SIZE * num;
}
static uint64_t avail_bytes(uint32_t num)
{
	return 6 + 2 * (uint64_t)num;
}
static uint64_t used_bytes(uint32_t num)
{
	return 6 + 8 * (uint64_t)num;
}

static uint16_t load16(const uint8_t *p)
{
	return __atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_RELAXED);
}

static uint16_t avail_idx_acquire(const struct mvn_vring *vr)
{
	return __atomic_load_n((const uint16_t *)(const void *)(vr->avail + 2), __ATOMIC_ACQUIRE);
}

void mvn_vring_init(struct mvn_vring *vr)
{
	memset(vr, 0, sizeof(*vr));
	vr->kick_fd = -1;
	vr->call_fd = -1;
	vr->err_fd = -1;
}

int mvn_vring_set_num(struct mvn_vring *vr, uint32_t num)
{
	if (num == 0 || num > MVN_VRING_MAX_NUM)
		return -EINVAL;
	struct mvn_seg *segs = calloc(num, sizeof(*segs));
	uint16_t *bad = calloc(num, sizeof(*bad));
	if (segs == NULL || bad == NULL) {
		free(segs);
		free(bad);
		return -ENOMEM;
	}
	free(vr->segs);
	free(vr->bad);
	vr->segs = segs;
	vr->bad = bad;
	vr->num = num;
	return 0;
}

static bool aligned(const void *p, uintptr_t a)
{
	return ((uintptr_t)p & (a - 1)) == 0;
}

bool mvn_vring_resolve(struct mvn_vring *vr, const struct mvn_mem *mem)
{
	vr->desc = vr->avail = vr->used = NULL;
	if (vr->num == 0 || !vr->addr_set)
		return false;
	uint8_t *d = mvn_mem_uva_ptr(mem, vr->desc_uva, desc_bytes(vr->num));
	uint8_t *a = mvn_mem_uva_ptr(mem, vr->avail_uva, avail_bytes(vr->num));
	uint8_t *u = mvn_mem_uva_ptr(mem, vr->used_uva, used_bytes(vr->num));
	/* The spec's alignments (16, 2, 4) checked on the host address: an odd mmap_offset could
	 * misalign an aligned UVA. */
	if (d == NULL || a == NULL || u == NULL || !aligned(d, 16) || !aligned(a, 2) ||
	    !aligned(u, 4))
		return false;
	vr->desc = d;
	vr->avail = a;
	vr->used = u;
	return true;
}

void mvn_vring_forget(struct mvn_vring *vr)
{
	int kick = vr->kick_fd, call = vr->call_fd, err = vr->err_fd;
	free(vr->segs);
	free(vr->bad);
	mvn_vring_init(vr);
	vr->kick_fd = kick;
	vr->call_fd = call;
	vr->err_fd = err;
}

bool mvn_vring_ready(const struct mvn_vring *vr, bool protocol_features)
{
	/* Without VHOST_USER_F_PROTOCOL_FEATURES a ring is enabled as soon as it starts. */
	return vr->num != 0 && vr->desc != NULL && vr->started &&
	       (vr->enabled || !protocol_features);
}

bool mvn_vring_pending(const struct mvn_vring *vr)
{
	if (vr->avail == NULL)
		return false;
	/* Pairs with the avail_event store: either the guest sees our new avail_event and kicks,
	 * or we see its new avail->idx here. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return avail_idx_acquire(vr) != vr->last_avail;
}

/* One chain's walk state. */
struct walk {
	uint32_t nsegs;
	uint64_t bytes;
	uint64_t max_bytes;
	bool device_writes;
};

/* Appends one buffer descriptor to the chain's segment list after checking it. */
static int add_seg(struct mvn_vring *vr, const struct mvn_mem *mem, struct walk *w,
		   const struct desc *d, enum mvn_counter *why)
{
	if (((d->flags & DESC_F_WRITE) != 0) != w->device_writes) {
		*why = MVN_CTR_CHAIN_WRONG_DIRECTION;
		return -1;
	}
	if (w->nsegs >= vr->num) {
		*why = MVN_CTR_CHAIN_TOO_LONG;
		return -1;
	}
	if (d->len != 0 && !mvn_mem_covers(mem, d->addr, d->len)) {
		*why = MVN_CTR_CHAIN_BAD_ADDR;
		return -1;
	}
	w->bytes += d->len;
	if (w->bytes > w->max_bytes) {
		*why = MVN_CTR_CHAIN_FRAME_TOO_LONG;
		return -1;
	}
	vr->segs[w->nsegs].gpa = d->addr;
	vr->segs[w->nsegs].len = d->len;
	w->nsegs++;
	return 0;
}

/* Walks an indirect table (the last descriptor of a chain). Its entries are read through the
 * memory table one by one, so a table that spans regions works and one that leaves guest
 * memory fails. */
static int walk_indirect(struct mvn_vring *vr, const struct mvn_vring_env *env, struct walk *w,
			 const struct desc *t, enum mvn_counter *why)
{
	if (!has(env->features, MVN_F_INDIRECT_DESC) || (t->flags & DESC_F_NEXT) != 0 ||
	    t->len == 0 || t->len % DESC_SIZE != 0 || t->len / DESC_SIZE > vr->num) {
		*why = MVN_CTR_CHAIN_BAD_INDIRECT;
		return -1;
	}
	if (!mvn_mem_covers(env->mem, t->addr, t->len)) {
		*why = MVN_CTR_CHAIN_BAD_ADDR;
		return -1;
	}
	uint32_t n = t->len / DESC_SIZE;
	uint32_t i = 0;
	for (uint32_t steps = 1;; steps++) {
		if (steps > n) {
			*why = MVN_CTR_CHAIN_LOOP;
			return -1;
		}
		struct desc d;
		if (mvn_mem_read(env->mem, t->addr + (uint64_t)i * DESC_SIZE, &d, sizeof(d)) != 0) {
			*why = MVN_CTR_CHAIN_BAD_ADDR;
			return -1;
		}
		if ((d.flags & DESC_F_INDIRECT) != 0) {
			*why = MVN_CTR_CHAIN_NESTED_INDIRECT;
			return -1;
		}
		if (add_seg(vr, env->mem, w, &d, why) != 0)
			return -1;
		if ((d.flags & DESC_F_NEXT) == 0)
			return 0;
		if (d.next >= n) {
			*why = MVN_CTR_CHAIN_BAD_INDEX;
			return -1;
		}
		i = d.next;
	}
}

/* Walks the chain starting at head into vr->segs. Each descriptor is copied out of guest
 * memory once, so the guest cannot change it between check and use. A chain visits at most
 * num descriptors of the table; one more means it loops. */
static int walk_chain(struct mvn_vring *vr, const struct mvn_vring_env *env, uint16_t head,
		      struct walk *w, enum mvn_counter *why)
{
	uint32_t i = head;
	for (uint32_t steps = 1;; steps++) {
		if (steps > vr->num) {
			*why = MVN_CTR_CHAIN_LOOP;
			return -1;
		}
		struct desc d;
		memcpy(&d, vr->desc + (size_t)i * DESC_SIZE, sizeof(d));
		if ((d.flags & DESC_F_INDIRECT) != 0)
			return walk_indirect(vr, env, w, &d, why);
		if (add_seg(vr, env->mem, w, &d, why) != 0)
			return -1;
		if ((d.flags & DESC_F_NEXT) == 0)
			return 0;
		if (d.next >= vr->num) {
			*why = MVN_CTR_CHAIN_BAD_INDEX;
			return -1;
		}
		i = d.next;
	}
}

/* Copies n bytes between a chain (from chain offset `at`) and a host buffer. The segments were
 * checked by add_seg, so failures here mean the memory table changed, which it cannot
 * between walk and copy (same thread); the result is still checked. */
static int chain_copy(const struct mvn_mem *mem, const struct mvn_seg *s, uint32_t nsegs,
		      uint64_t at, uint8_t *buf, uint64_t n, bool to_guest)
{
	for (uint32_t k = 0; k < nsegs && n > 0; k++) {
		if (at >= s[k].len) {
			at -= s[k].len;
			continue;
		}
		uint64_t c = s[k].len - at;
		if (c > n)
			c = n;
		int rc = to_guest ? mvn_mem_write(mem, s[k].gpa + at, buf, c)
				  : mvn_mem_read(mem, s[k].gpa + at, buf, c);
		if (rc != 0)
			return -1;
		buf += c;
		n -= c;
		at = 0;
	}
	return n == 0 ? 0 : -1;
}

/* Guest address of the byte at chain offset `at` (which must lie in the chain). */
static uint64_t chain_addr(const struct mvn_seg *s, uint32_t nsegs, uint64_t at)
{
	for (uint32_t k = 0; k < nsegs; k++) {
		if (at < s[k].len)
			return s[k].gpa + at;
		at -= s[k].len;
	}
	return 0;
}

static void put_used(struct mvn_vring *vr, uint16_t head, uint32_t len)
{
	uint32_t e[2] = { head, len };
	memcpy(vr->used + 4 + 8 * (size_t)(vr->used_idx % vr->num), e, sizeof(e));
	vr->used_idx++;
}

/* Publishes the used entries added since `old` and signals the guest unless it asked not to
 * be (used_event with EVENT_IDX, else VRING_AVAIL_F_NO_INTERRUPT). */
static void publish_used(struct mvn_vring *vr, const struct mvn_vring_env *env, uint16_t old)
{
	uint16_t now = vr->used_idx;
	__atomic_store_n((uint16_t *)(void *)(vr->used + 2), now, __ATOMIC_RELEASE);
	/* The guest's suppression fields must be read after the index store is visible. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	bool notify;
	if (has(env->features, MVN_F_EVENT_IDX)) {
		uint16_t ev = load16(vr->avail + 4 + 2 * (size_t)vr->num);
		notify = (uint16_t)(now - ev - 1) < (uint16_t)(now - old);
	} else {
		notify = (load16(vr->avail) & AVAIL_F_NO_INTERRUPT) == 0;
	}
	if (!notify || vr->call_fd < 0)
		return;
	uint64_t one = 1;
	if (write(vr->call_fd, &one, sizeof(one)) == (ssize_t)sizeof(one))
		env->ctr[MVN_CTR_CALLS]++;
}

/* How far ahead of what we consumed avail_event points while kicks are off: half the index
 * space, which no guest crosses between two of our polls. */
#define KICKS_OFF_DISTANCE 0x8000u
#define USED_F_NO_NOTIFY 1u

static void store_avail_event(struct mvn_vring *vr)
{
	uint16_t ev = vr->waiting ? vr->wait_idx
				  : (uint16_t)(vr->last_avail + (vr->kicks_off ? KICKS_OFF_DISTANCE : 0));
	/* Sequentially consistent (a full barrier on x86): the next read of avail->idx must not
	 * pass this store, or a guest adding a buffer meanwhile reads the old avail_event, does
	 * not kick, and the ring sits idle until a timeout. */
	__atomic_store_n((uint16_t *)(void *)(vr->used + 4 + 8 * (size_t)vr->num), ev,
			 __ATOMIC_SEQ_CST);
}

/* With EVENT_IDX, asks the guest to kick for the first buffer after what we consumed. */
static void set_avail_event(struct mvn_vring *vr, const struct mvn_vring_env *env)
{
	if (has(env->features, MVN_F_EVENT_IDX))
		store_avail_event(vr);
}

void mvn_vring_set_kicks(struct mvn_vring *vr, uint64_t features, bool on)
{
	if (vr->used == NULL)
		return;
	vr->kicks_off = !on;
	uint16_t *flags = (uint16_t *)(void *)vr->used;
	uint16_t f = __atomic_load_n(flags, __ATOMIC_RELAXED);
	f = on ? (uint16_t)(f & ~USED_F_NO_NOTIFY) : (uint16_t)(f | USED_F_NO_NOTIFY);
	__atomic_store_n(flags, f, __ATOMIC_SEQ_CST);
	if (has(features, MVN_F_EVENT_IDX))
		store_avail_event(vr);
}

/* Reads avail->idx; a jump by more than num means a broken ring (counted once per episode),
 * reported as no new buffers. */
static bool fetch_avail(struct mvn_vring *vr, const struct mvn_vring_env *env, uint16_t *idx)
{
	uint16_t a = avail_idx_acquire(vr);
	if ((uint16_t)(a - vr->last_avail) > vr->num) {
		if (!vr->broken)
			env->ctr[MVN_CTR_AVAIL_JUMP]++;
		vr->broken = true;
		return false;
	}
	vr->broken = false;
	*idx = a;
	return true;
}

static uint16_t next_head(struct mvn_vring *vr)
{
	uint16_t head = load16(vr->avail + 4 + 2 * (size_t)(vr->last_avail % vr->num));
	vr->last_avail++;
	return head;
}

/*
 * Cache hints for the chains a burst is about to take. The guest's core wrote the avail
 * entries, descriptors and buffers last, so the first touch of each waits for a line from
 * another core; that wait was most of a small frame's cost (the copies' first loads and stores
 * held 87 % of memmove's samples in the 64-byte loop). Two stages ahead of the chain being
 * walked: the descriptor of the entry PREFETCH_DESC_AHEAD on, and the buffer of the entry
 * PREFETCH_BUF_AHEAD on, whose descriptor the first stage asked for earlier.
 *
 * The whole buffer is asked for, every line of it up to `want` bytes (at most
 * PREFETCH_MAX_BYTES): on transmit the descriptor's length, which is the frame's; on receive the
 * bytes of the frame being delivered, the best guess for the next one, since a receive buffer is
 * usually larger than what it gets (asking for all of a 2 KiB buffer would fetch 32 lines for a
 * 64-byte frame). Measured in the 1500-byte loop (six alternating runs each): the first two
 * lines only, leaving the rest to the hardware prefetcher, 1.40-1.79 Mpps; every line, 1.71-2.01;
 * and with the fast path's one-copy delivery (vring.h, mvn_vring_tx_gather) 1.71-2.22.
 *
 * Nothing read here is relied on: walk_chain reads and checks every descriptor again, and a
 * prefetch cannot fault whatever the address. Only direct (non-indirect) heads are followed, and
 * only a buffer that lies in one memory region.
 */
#define PREFETCH_DESC_AHEAD 4u
#define PREFETCH_BUF_AHEAD 2u
#define PREFETCH_MAX_BYTES 2048u

static void prefetch_ahead(const struct mvn_vring *vr, const struct mvn_vring_env *env,
			   uint16_t avail, uint16_t pos, int write, uint32_t want)
{
	uint16_t left = (uint16_t)(avail - pos);
	if (left > PREFETCH_DESC_AHEAD) {
		uint16_t h = load16(vr->avail + 4 + 2 * (size_t)((uint16_t)(pos + PREFETCH_DESC_AHEAD) %
								  vr->num));
		if (h < vr->num)
			__builtin_prefetch(vr->desc + (size_t)h * DESC_SIZE, 0, 3);
	}
	if (left > PREFETCH_BUF_AHEAD) {
		uint16_t h = load16(vr->avail + 4 + 2 * (size_t)((uint16_t)(pos + PREFETCH_BUF_AHEAD) %
								  vr->num));
		if (h >= vr->num)
			return;
		struct desc d;
		memcpy(&d, vr->desc + (size_t)h * DESC_SIZE, sizeof(d));
		if ((d.flags & DESC_F_INDIRECT) != 0 || d.len == 0)
			return;
		uint32_t span = d.len < want ? d.len : want;
		uint8_t *p = mvn_mem_gpa_ptr(env->mem, d.addr, span);
		if (p == NULL)
			return;
		if (write) {
			for (uint32_t o = 0; o < span; o += 64)
				__builtin_prefetch(p + o, 1, 3);
		} else {
			for (uint32_t o = 0; o < span; o += 64)
				__builtin_prefetch(p + o, 0, 3);
		}
	}
}

/* The extents of chain bytes [at, at + n) in host memory, into s->x; false when a piece does not
 * lie in one region or they need more than MVN_SRC_EXTENTS (the frame is then copied whole). */
static bool chain_extents(const struct mvn_mem *mem, const struct mvn_seg *segs, uint32_t nsegs,
			  uint64_t at, uint64_t n, struct mvn_frame_src *s)
{
	s->nx = 0;
	for (uint32_t k = 0; k < nsegs && n > 0; k++) {
		if (at >= segs[k].len) {
			at -= segs[k].len;
			continue;
		}
		uint64_t c = segs[k].len - at;
		if (c > n)
			c = n;
		const uint8_t *p = mvn_mem_gpa_ptr(mem, segs[k].gpa + at, c);
		if (p == NULL || s->nx == MVN_SRC_EXTENTS)
			return false;
		s->x[s->nx].p = p;
		s->x[s->nx].len = (uint32_t)c;
		s->nx++;
		n -= c;
		at = 0;
	}
	return n == 0;
}

uint32_t mvn_vring_tx_gather(struct mvn_vring *vr, const struct mvn_vring_env *env, uint8_t *out,
			     uint32_t cap, uint32_t max, struct mvn_frame_src *src,
			     uint16_t *old_used)
{
	uint16_t avail;
	*old_used = vr->used_idx;
	if (vr->desc == NULL || !fetch_avail(vr, env, &avail))
		return 0;
	uint32_t hl = net_hdr_len(env->features);
	uint32_t n = 0, off = 0;
	while (n < max && vr->last_avail != avail) {
		prefetch_ahead(vr, env, avail, vr->last_avail, 0, PREFETCH_MAX_BYTES);
		uint16_t head = load16(vr->avail + 4 + 2 * (size_t)(vr->last_avail % vr->num));
		if (head >= vr->num) {
			/* No chain to give back: the entry is consumed and counted. */
			vr->last_avail++;
			env->ctr[MVN_CTR_CHAIN_BAD_INDEX]++;
			continue;
		}
		struct walk w = { .max_bytes = (uint64_t)hl + MVN_MAX_FRAME, .device_writes = false };
		enum mvn_counter why = MVN_CTR_CHAIN_EMPTY;
		int rc = walk_chain(vr, env, head, &w, &why);
		if (rc == 0 && w.bytes <= hl)
			rc = -1;
		if (rc != 0) {
			vr->last_avail++;
			env->ctr[why]++;
			put_used(vr, head, 0);
			continue;
		}
		uint64_t flen = w.bytes - hl;
		/* Leave the frame in the ring for the next call when it does not fit. */
		if ((uint64_t)cap - off < 4 + MVN_META_SIZE + flen)
			break;
		/* The header is carried as the guest wrote it; what it claims is checked where it is
		 * used (routing/offload.ts), num_buffers (meaningless on TX) is left out. */
		uint8_t *frame = out + off + 4 + MVN_META_SIZE;
		uint64_t copy = flen;
		if (src != NULL) {
			struct mvn_frame_src *fs = &src[n];
			fs->snap = frame;
			fs->snap_len = (uint32_t)flen;
			if (flen >= MVN_GATHER_MIN &&
			    chain_extents(env->mem, vr->segs, w.nsegs, hl + MVN_SNAP_BYTES,
					  flen - MVN_SNAP_BYTES, fs)) {
				fs->snap_len = MVN_SNAP_BYTES;
				copy = MVN_SNAP_BYTES;
			} else {
				fs->nx = 0; /* too short, or chain_extents stopped part way */
			}
		}
		if (chain_copy(env->mem, vr->segs, w.nsegs, 0, out + off + 4, MVN_META_SIZE, false) !=
			    0 ||
		    chain_copy(env->mem, vr->segs, w.nsegs, hl, frame, copy, false) != 0) {
			vr->last_avail++;
			env->ctr[MVN_CTR_CHAIN_BAD_ADDR]++;
			put_used(vr, head, 0);
			continue;
		}
		uint32_t len32 = (uint32_t)flen;
		memcpy(out + off, &len32, 4);
		off += 4 + MVN_META_SIZE + len32;
		vr->last_avail++;
		put_used(vr, head, 0);
		env->ctr[MVN_CTR_TX_PACKETS]++;
		env->ctr[MVN_CTR_TX_BYTES] += flen;
		n++;
	}
	set_avail_event(vr, env);
	return n;
}

void mvn_vring_tx_release(struct mvn_vring *vr, const struct mvn_vring_env *env,
			  uint16_t old_used)
{
	if (vr->used_idx != old_used)
		publish_used(vr, env, old_used);
}

uint32_t mvn_vring_tx_burst(struct mvn_vring *vr, const struct mvn_vring_env *env, uint8_t *out,
			    uint32_t cap, uint32_t max)
{
	uint16_t old_used;
	uint32_t n = mvn_vring_tx_gather(vr, env, out, cap, max, NULL, &old_used);
	mvn_vring_tx_release(vr, env, old_used);
	return n;
}

void mvn_frame_src_fill(struct mvn_frame_src *s, uint8_t *dst)
{
	uint32_t at = s->snap_len;
	for (uint32_t k = 0; k < s->nx; k++) {
		memcpy(dst + at, s->x[k].p, s->x[k].len);
		at += s->x[k].len;
	}
	s->snap = dst;
	s->snap_len = at;
	s->nx = 0;
}

/* Writes stream bytes [from, from + n) of (header ++ frame) into a chain at chain offset 0. */
static int write_stream(const struct mvn_mem *mem, const struct mvn_seg *s, uint32_t nsegs,
			const uint8_t *hdr, uint32_t hl, const struct mvn_frame_src *fs,
			uint64_t from, uint64_t n)
{
	uint64_t at = 0;
	if (from < hl) {
		uint64_t c = hl - from < n ? hl - from : n;
		if (chain_copy(mem, s, nsegs, 0, (uint8_t *)hdr + from, c, true) != 0)
			return -1;
		at = c;
		from += c;
		n -= c;
	}
	/* Frame bytes from fo on, piece by piece: the snapshot, then the extents. */
	uint64_t fo = from - hl;
	for (uint32_t k = 0; n > 0; k++) {
		if (k > fs->nx)
			return -1;
		const uint8_t *p = k == 0 ? fs->snap : fs->x[k - 1].p;
		uint64_t plen = k == 0 ? fs->snap_len : fs->x[k - 1].len;
		if (fo >= plen) {
			fo -= plen;
			continue;
		}
		uint64_t c = plen - fo < n ? plen - fo : n;
		if (chain_copy(mem, s, nsegs, at, (uint8_t *)p + fo, c, true) != 0)
			return -1;
		at += c;
		n -= c;
		fo = 0;
	}
	return 0;
}

/* Keeps a malformed chain's head to give back after the current frame. A guest that keeps
 * posting bad heads while a frame is gathered could exceed num of them: those go back at once
 * (the frame's used entries may then be interleaved, which only hurts that guest). */
static void defer_bad(struct mvn_vring *vr, uint16_t head, uint32_t *nbad)
{
	if (*nbad < vr->num)
		vr->bad[(*nbad)++] = head;
	else
		put_used(vr, head, 0);
}

enum rx_result { RX_DELIVERED, RX_NO_BUFFER };

/* virtio_net_hdr flags and gso_type values (virtio 1.x section 5.1.6); NEEDS_CSUM is in
 * vring.h. */
#define HDR_F_DATA_VALID 2u
#define HDR_GSO_NONE 0u
#define HDR_GSO_TCPV4 1u
#define HDR_GSO_TCPV6 4u
#define HDR_GSO_ECN 0x80u

/* Builds the header a guest receives from a frame's metadata: num_buffers 1 (fixed up when
 * merged), DATA_VALID dropped where the guest cannot take it. False when the metadata asks for
 * an offload the guest did not negotiate: such a frame would be corrupt in the guest. */
static bool rx_header(const uint8_t *meta, uint64_t features, uint8_t hdr[12])
{
	memcpy(hdr, meta, MVN_META_SIZE);
	hdr[10] = 1;
	hdr[11] = 0;
	bool csum = has(features, MVN_F_GUEST_CSUM);
	if (!csum)
		hdr[0] &= (uint8_t)~HDR_F_DATA_VALID;
	if ((hdr[0] & ~(MVN_HDR_F_NEEDS_CSUM | HDR_F_DATA_VALID)) != 0 ||
	    ((hdr[0] & MVN_HDR_F_NEEDS_CSUM) != 0 && !csum))
		return false;
	uint8_t gso = hdr[1] & (uint8_t)~HDR_GSO_ECN;
	if ((hdr[1] & HDR_GSO_ECN) != 0 && !has(features, MVN_F_GUEST_ECN))
		return false;
	if (gso == HDR_GSO_NONE)
		return (hdr[1] & HDR_GSO_ECN) == 0;
	if (gso == HDR_GSO_TCPV4)
		return has(features, MVN_F_GUEST_TSO4);
	if (gso == HDR_GSO_TCPV6)
		return has(features, MVN_F_GUEST_TSO6);
	return false;
}

bool mvn_vring_rx_accepts(const uint8_t *meta, uint64_t features)
{
	uint8_t hdr[12];
	return rx_header(meta, features, hdr) &&
	       (meta[1] == HDR_GSO_NONE || has(features, MVN_F_GUEST_CSUM));
}

/* Delivers one frame, over several chains with MRG_RXBUF. Chains found malformed while
 * gathering are given back after the frame's own chains: the guest reads a merged frame's
 * num_buffers used entries in a row. When the ring runs dry mid-frame nothing is consumed. */
static enum rx_result rx_one(struct mvn_vring *vr, const struct mvn_vring_env *env,
			     uint16_t *avail, const uint8_t *hdr, const struct mvn_frame_src *fs,
			     uint32_t flen, uint32_t *nbad)
{
	bool mrg = has(env->features, MVN_F_MRG_RXBUF);
	uint32_t hl = net_hdr_len(env->features);
	uint64_t need = (uint64_t)hl + flen, done = 0;
	/* Two loads, not one: the compiler would merge them into a 32-bit load of two fields just
	 * written by separate 16-bit stores, which the store buffer cannot forward (measured: that
	 * one load was 8 % of the dataplane's time in the 64-byte loop benchmark). */
	uint16_t start_avail = __atomic_load_n(&vr->last_avail, __ATOMIC_RELAXED);
	uint16_t start_used = __atomic_load_n(&vr->used_idx, __ATOMIC_RELAXED);
	uint32_t start_bad = *nbad;
	uint16_t nbufs = 0;
	uint64_t nb_addr[2] = { 0, 0 };
	while (done < need) {
		if (vr->last_avail == *avail && (!fetch_avail(vr, env, avail) ||
						 vr->last_avail == *avail)) {
			vr->last_avail = start_avail;
			vr->used_idx = start_used;
			*nbad = start_bad;
			return RX_NO_BUFFER;
		}
		prefetch_ahead(vr, env, *avail, vr->last_avail, 1,
			       need < PREFETCH_MAX_BYTES ? (uint32_t)need : PREFETCH_MAX_BYTES);
		uint16_t head = next_head(vr);
		if (head >= vr->num) {
			env->ctr[MVN_CTR_CHAIN_BAD_INDEX]++;
			continue;
		}
		struct walk w = { .max_bytes = UINT64_MAX, .device_writes = true };
		enum mvn_counter why = MVN_CTR_CHAIN_EMPTY;
		int rc = walk_chain(vr, env, head, &w, &why);
		if (rc == 0 && w.bytes == 0)
			rc = -1;
		if (rc != 0) {
			env->ctr[why]++;
			defer_bad(vr, head, nbad);
			continue;
		}
		/* The header must sit in the first buffer, and without MRG_RXBUF the whole frame. */
		if (nbufs == 0 && (w.bytes < hl || (!mrg && w.bytes < need))) {
			env->ctr[MVN_CTR_CHAIN_TOO_SMALL]++;
			defer_bad(vr, head, nbad);
			continue;
		}
		uint64_t chunk = w.bytes < need - done ? w.bytes : need - done;
		if (write_stream(env->mem, vr->segs, w.nsegs, hdr, hl, fs, done, chunk) != 0) {
			env->ctr[MVN_CTR_CHAIN_BAD_ADDR]++;
			defer_bad(vr, head, nbad);
			continue;
		}
		if (nbufs == 0 && hl == 12) {
			nb_addr[0] = chain_addr(vr->segs, w.nsegs, 10);
			nb_addr[1] = chain_addr(vr->segs, w.nsegs, 11);
		}
		put_used(vr, head, (uint32_t)chunk);
		nbufs++;
		done += chunk;
	}
	if (nbufs > 1) {
		uint8_t nb[2] = { (uint8_t)nbufs, (uint8_t)(nbufs >> 8) };
		if (mvn_mem_write(env->mem, nb_addr[0], &nb[0], 1) != 0 ||
		    mvn_mem_write(env->mem, nb_addr[1], &nb[1], 1) != 0)
			env->ctr[MVN_CTR_CHAIN_BAD_ADDR]++;
	}
	env->ctr[MVN_CTR_RX_PACKETS]++;
	env->ctr[MVN_CTR_RX_BYTES] += flen;
	return RX_DELIVERED;
}

void mvn_vring_rx_start(struct mvn_vring *vr, const struct mvn_vring_env *env,
			struct mvn_rx_batch *b)
{
	b->avail = vr->last_avail;
	b->old_used = vr->used_idx;
	b->dry = false;
	if (vr->desc != NULL)
		fetch_avail(vr, env, &b->avail);
}

enum mvn_rx_offer mvn_vring_rx_offer(struct mvn_vring *vr, const struct mvn_vring_env *env,
				     struct mvn_rx_batch *b, const uint8_t *meta,
				     const uint8_t *frame, uint32_t flen)
{
	/* Set field by field: an initializer would clear the unused extents for every frame. */
	struct mvn_frame_src fs;
	fs.snap = frame;
	fs.snap_len = flen;
	fs.nx = 0;
	return mvn_vring_rx_offer_src(vr, env, b, meta, &fs, flen);
}

enum mvn_rx_offer mvn_vring_rx_offer_src(struct mvn_vring *vr, const struct mvn_vring_env *env,
					 struct mvn_rx_batch *b, const uint8_t *meta,
					 const struct mvn_frame_src *fs, uint32_t flen)
{
	if (flen == 0 || flen > MVN_MAX_FRAME) {
		env->ctr[MVN_CTR_RX_DROP_BAD_FRAME]++;
		return MVN_RX_DROPPED;
	}
	uint8_t hdr[12];
	if (!rx_header(meta, env->features, hdr)) {
		env->ctr[MVN_CTR_RX_DROP_OFFLOAD]++;
		return MVN_RX_DROPPED;
	}
	if (vr->desc == NULL) {
		env->ctr[MVN_CTR_RX_DROP_NOT_READY]++;
		return MVN_RX_DROPPED;
	}
	if (b->dry)
		return MVN_RX_NO_BUFFER;
	uint32_t nbad = 0;
	enum rx_result r = rx_one(vr, env, &b->avail, hdr, fs, flen, &nbad);
	for (uint32_t k = 0; k < nbad; k++)
		put_used(vr, vr->bad[k], 0);
	if (r == RX_NO_BUFFER) {
		b->dry = true;
		return MVN_RX_NO_BUFFER;
	}
	return MVN_RX_DELIVERED;
}

bool mvn_vring_rx_put(struct mvn_vring *vr, const struct mvn_vring_env *env,
		      struct mvn_rx_batch *b, const uint8_t *meta, const uint8_t *frame,
		      uint32_t flen)
{
	enum mvn_rx_offer r = mvn_vring_rx_offer(vr, env, b, meta, frame, flen);
	if (r == MVN_RX_NO_BUFFER)
		env->ctr[MVN_CTR_RX_DROP_NO_BUFFER]++;
	return r == MVN_RX_DELIVERED;
}

bool mvn_vring_rx_wait(struct mvn_vring *vr, uint64_t features)
{
	if (vr->avail == NULL || vr->used == NULL)
		return false;
	uint16_t seen = avail_idx_acquire(vr);
	vr->waiting = true;
	vr->wait_idx = seen;
	/* Kicks on, and with EVENT_IDX for the first buffer after `seen` (store_avail_event);
	 * then a look at avail->idx that the kick request is ordered before. */
	mvn_vring_set_kicks(vr, features, true);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return avail_idx_acquire(vr) != seen;
}

bool mvn_vring_rx_refilled(const struct mvn_vring *vr)
{
	if (!vr->waiting)
		return true;
	if (vr->avail == NULL)
		return false;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return avail_idx_acquire(vr) != vr->wait_idx;
}

void mvn_vring_rx_finish(struct mvn_vring *vr, const struct mvn_vring_env *env,
			 const struct mvn_rx_batch *b)
{
	if (vr->desc == NULL)
		return;
	set_avail_event(vr, env);
	if (vr->used_idx != b->old_used)
		publish_used(vr, env, b->old_used);
}

uint32_t mvn_vring_rx_burst(struct mvn_vring *vr, const struct mvn_vring_env *env,
			    const uint8_t *in, uint32_t len, uint32_t count)
{
	struct mvn_rx_batch b;
	uint32_t delivered = 0, off = 0;
	mvn_vring_rx_start(vr, env, &b);
	for (uint32_t i = 0; i < count; i++) {
		uint32_t flen;
		if (len - off < 4) {
			env->ctr[MVN_CTR_RX_DROP_BAD_FRAME] += count - i;
			break;
		}
		memcpy(&flen, in + off, 4);
		if (len - off - 4 < MVN_META_SIZE || flen > len - off - 4 - MVN_META_SIZE) {
			env->ctr[MVN_CTR_RX_DROP_BAD_FRAME] += count - i;
			break;
		}
		const uint8_t *meta = in + off + 4;
		off += 4 + MVN_META_SIZE + flen;
		if (mvn_vring_rx_put(vr, env, &b, meta, meta + MVN_META_SIZE, flen))
			delivered++;
	}
	mvn_vring_rx_finish(vr, env, &b);
	return delivered;
}
