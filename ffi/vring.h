/* Split virtqueues (virtio 1.x, section 2.7): descriptor-chain walking with every limit the
 * spec and an untrusted guest call for, TX and RX bursts, used-ring updates and notification
 * suppression. Knows guest memory (mem.h) and nothing of sockets. */
#ifndef MVN_VRING_H
#define MVN_VRING_H

#include <stdbool.h>
#include <stdint.h>

#include "mem.h"

/* Largest queue size of a split virtqueue. */
#define MVN_VRING_MAX_NUM 32768u
/* Largest Ethernet frame either way, virtio-net header excluded: the largest IP packet a GSO
 * frame may carry (65535 bytes) behind an Ethernet header with a VLAN tag (18 bytes). */
#define MVN_MAX_FRAME 65553u
/* Bytes of per-frame offload metadata in the burst layout: the virtio-net header without
 * num_buffers (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset; virtio 1.x
 * section 5.1.6), little-endian as on the ring. */
#define MVN_META_SIZE 10u
/* The virtio-net header's flag that a checksum is partial (virtio 1.x section 5.1.6). */
#define MVN_HDR_F_NEEDS_CSUM 1u

/* Virtio feature bits the ring code looks at. */
#define MVN_F_GUEST_CSUM 1
#define MVN_F_GUEST_TSO4 7
#define MVN_F_GUEST_TSO6 8
#define MVN_F_GUEST_ECN 9
#define MVN_F_MRG_RXBUF 15
#define MVN_F_INDIRECT_DESC 28
#define MVN_F_EVENT_IDX 29
#define MVN_F_VERSION_1 32

/* Per-device counters, in the order of the u64 array mvn_dev_counters copies. rx is towards
 * the guest (virtio receiveq), tx from the guest (transmitq). The chain_* reasons count
 * descriptor chains returned to the guest unused, in either direction. */
enum mvn_counter {
	MVN_CTR_RX_PACKETS,
	MVN_CTR_RX_BYTES,
	MVN_CTR_TX_PACKETS,
	MVN_CTR_TX_BYTES,
	MVN_CTR_RX_DROP_NO_BUFFER,
	MVN_CTR_RX_DROP_NOT_READY,
	MVN_CTR_CHAIN_TOO_SMALL,
	MVN_CTR_RX_DROP_BAD_FRAME,
	MVN_CTR_CHAIN_BAD_ADDR,
	MVN_CTR_CHAIN_BAD_INDEX,
	MVN_CTR_CHAIN_LOOP,
	MVN_CTR_CHAIN_TOO_LONG,
	MVN_CTR_CHAIN_FRAME_TOO_LONG,
	MVN_CTR_CHAIN_BAD_INDIRECT,
	MVN_CTR_CHAIN_NESTED_INDIRECT,
	MVN_CTR_CHAIN_WRONG_DIRECTION,
	MVN_CTR_CHAIN_EMPTY,
	MVN_CTR_AVAIL_JUMP,
	MVN_CTR_CALLS,
	MVN_CTR_KICKS,
	MVN_CTR_RX_DROP_OFFLOAD, /* asks for an offload the guest did not negotiate */
	MVN_CTR_RX_WAIT_BUFFER,  /* frames held in the inbound ring until the guest adds buffers */
	MVN_CTR_COUNT
};

struct mvn_seg {
	uint64_t gpa;
	uint32_t len;
};

struct mvn_vring {
	uint32_t num; /* 0: not configured */
	bool addr_set;
	uint64_t desc_uva, avail_uva, used_uva;
	/* Host addresses of the three parts, resolved from the UVAs against the memory table;
	 * NULL while they do not resolve (the ring is then not usable). */
	uint8_t *desc, *avail, *used;
	uint16_t last_avail;
	uint16_t used_idx; /* our copy of used->idx, published with release semantics */
	bool broken;       /* avail->idx jumped by more than num; counted once per episode */
	bool started;      /* kick received, not stopped by GET_VRING_BASE */
	bool kicks_off;    /* the guest was asked not to kick: the owner polls (mvn_vring_set_kicks) */
	/* Receive queue: frames wait for buffers past wait_idx (mvn_vring_rx_wait); the guest is
	 * asked to kick when it adds one. */
	bool waiting;
	uint16_t wait_idx;
	bool enabled;      /* SET_VRING_ENABLE (only meaningful with protocol features) */
	int kick_fd, call_fd, err_fd;
	struct mvn_seg *segs; /* scratch of num entries for one chain */
	uint16_t *bad;        /* scratch of num heads of malformed chains met during one frame */
};

/* What the ring code needs from its device on each call. */
struct mvn_vring_env {
	const struct mvn_mem *mem;
	uint64_t features;
	uint64_t *ctr; /* MVN_CTR_COUNT entries */
};

void mvn_vring_init(struct mvn_vring *vr);
/* Sets the queue size (1..MVN_VRING_MAX_NUM). 0 or -errno. */
int mvn_vring_set_num(struct mvn_vring *vr, uint32_t num);
/* Resolves the ring addresses against mem; false (and NULL pointers) when they do not. */
bool mvn_vring_resolve(struct mvn_vring *vr, const struct mvn_mem *mem);
/* Frees the scratch and forgets everything but the fds, which the caller owns. */
void mvn_vring_forget(struct mvn_vring *vr);
/* Asks the guest not to kick for new buffers (on = false: the owner polls the ring) or to kick
 * again: VRING_USED_F_NO_NOTIFY, and with EVENT_IDX an avail_event far ahead. Turning kicks on
 * is ordered before the caller's next mvn_vring_pending, so a buffer added meanwhile is either
 * seen there or kicked. */
void mvn_vring_set_kicks(struct mvn_vring *vr, uint64_t features, bool on);
/* Ready to move packets: configured, resolved, started and enabled. */
bool mvn_vring_ready(const struct mvn_vring *vr, bool protocol_features);
/* The guest made buffers available that we have not consumed yet. */
bool mvn_vring_pending(const struct mvn_vring *vr);

/* Pops up to max frames the guest sent into out as [u32 len][MVN_META_SIZE bytes of virtio-net
 * header][len bytes of frame]... Stops early when the next frame does not fit in cap. Returns
 * the frame count. */
uint32_t mvn_vring_tx_burst(struct mvn_vring *vr, const struct mvn_vring_env *env, uint8_t *out,
			    uint32_t cap, uint32_t max);

/*
 * A frame whose bytes lie in two places: [0, snap_len) in snap, the rest in order in the
 * extents (host addresses in the sending guest's memory). The fast path (fastpath.c) reads and
 * rewrites the headers in the snapshot and copies the rest straight from the sender's buffers
 * into the receiver's: one copy of the payload instead of two. The guest may change its buffers
 * meanwhile; what it changes then is its own payload, which nothing here interprets.
 */
#define MVN_SNAP_BYTES 128u
/* Frames shorter than this are copied whole: the bookkeeping would cost more than the copy. */
#define MVN_GATHER_MIN 512u
/* A chain whose rest needs more extents than this is copied whole. */
#define MVN_SRC_EXTENTS 8u
struct mvn_extent {
	const uint8_t *p;
	uint32_t len;
};
struct mvn_frame_src {
	const uint8_t *snap;
	uint32_t snap_len;
	uint32_t nx;
	struct mvn_extent x[MVN_SRC_EXTENTS];
};
/* mvn_vring_tx_burst in two steps (it is this with src NULL, then mvn_vring_tx_release). With
 * src (max entries), each frame of MVN_GATHER_MIN bytes or more whose rest fits in
 * MVN_SRC_EXTENTS extents gets only its first MVN_SNAP_BYTES copied into out (its record still
 * takes len bytes there); src[i] says where frame i's bytes are. Without, every frame is copied
 * whole. The chains
 * are given back to the guest (their used entries written) but not published: the extents stay
 * valid, and the guest does not reuse the buffers, until mvn_vring_tx_release(*old_used). Until
 * then nothing else may use the ring or change the memory table. */
uint32_t mvn_vring_tx_gather(struct mvn_vring *vr, const struct mvn_vring_env *env, uint8_t *out,
			     uint32_t cap, uint32_t max, struct mvn_frame_src *src,
			     uint16_t *old_used);
/* Publishes the used entries written since old_used and signals the guest as needed. */
void mvn_vring_tx_release(struct mvn_vring *vr, const struct mvn_vring_env *env,
			  uint16_t old_used);
/* Copies a gathered frame's extents into dst (its frame in out, from offset snap_len on), so
 * that dst holds the whole frame; s then describes dst alone. */
void mvn_frame_src_fill(struct mvn_frame_src *s, uint8_t *dst);
/* Delivers count frames laid out as [u32 len][MVN_META_SIZE bytes of header][len bytes]... in
 * `in` (len bytes) to the guest, each with its header (num_buffers added). Frames without room,
 * and frames whose header asks for an offload the guest did not negotiate, are dropped and
 * counted. Returns the frames delivered. */
uint32_t mvn_vring_rx_burst(struct mvn_vring *vr, const struct mvn_vring_env *env,
			    const uint8_t *in, uint32_t len, uint32_t count);

/* True when a guest with these features takes a frame with this metadata as it is, as
 * vhost/receive.ts decides (GSO only together with GUEST_CSUM); else it must be adapted. */
bool mvn_vring_rx_accepts(const uint8_t *meta, uint64_t features);
/* A receive burst in steps, for callers whose frames are not in the burst layout (the inbound
 * frame ring, device.c): start, put each frame, finish (publishes and signals the guest once). */
struct mvn_rx_batch {
	uint16_t avail, old_used;
	bool dry; /* the guest ran out of buffers: the rest of the burst is dropped */
};
void mvn_vring_rx_start(struct mvn_vring *vr, const struct mvn_vring_env *env,
			struct mvn_rx_batch *b);
/* Delivers one frame with its MVN_META_SIZE bytes of metadata; false when it was dropped (and
 * counted, as mvn_vring_rx_burst does). */
bool mvn_vring_rx_put(struct mvn_vring *vr, const struct mvn_vring_env *env,
		      struct mvn_rx_batch *b, const uint8_t *meta, const uint8_t *frame,
		      uint32_t flen);
/* As mvn_vring_rx_put, but a frame the guest has no buffer for is neither taken nor counted:
 * the caller keeps it (MVN_RX_NO_BUFFER, and so for the rest of the batch). */
enum mvn_rx_offer { MVN_RX_DELIVERED, MVN_RX_DROPPED, MVN_RX_NO_BUFFER };
enum mvn_rx_offer mvn_vring_rx_offer(struct mvn_vring *vr, const struct mvn_vring_env *env,
				     struct mvn_rx_batch *b, const uint8_t *meta,
				     const uint8_t *frame, uint32_t flen);
/* As mvn_vring_rx_offer for a frame of flen bytes in two places (mvn_vring_tx_gather). */
enum mvn_rx_offer mvn_vring_rx_offer_src(struct mvn_vring *vr, const struct mvn_vring_env *env,
					 struct mvn_rx_batch *b, const uint8_t *meta,
					 const struct mvn_frame_src *fs, uint32_t flen);
/* After a batch ended on MVN_RX_NO_BUFFER: asks the guest to kick when it adds a buffer past
 * those it offers now (which did not hold the frame), whatever else the ring's kicks are set to.
 * True when it added one meanwhile: the caller should try again. */
bool mvn_vring_rx_wait(struct mvn_vring *vr, uint64_t features);
/* A waiting receive queue got buffers past wait_idx (or is not waiting). */
bool mvn_vring_rx_refilled(const struct mvn_vring *vr);
void mvn_vring_rx_finish(struct mvn_vring *vr, const struct mvn_vring_env *env,
			 const struct mvn_rx_batch *b);

#endif
