/* Public API of the mvirt-net shim (libmvnet.so), as ffi/binding.ts declares it.
 *
 * A device is one vhost-user virtio-net backend: a listening Unix socket, at most one
 * connected frontend (VMM), the guest memory it shared, and two split virtqueues (0: receiveq,
 * towards the guest; 1: transmitq, from the guest). Devices live in a process-global table
 * indexed by an integer handle, so a new JS Worker can adopt a device another one created.
 *
 * Threads: create/destroy/wake/notify/counters/exists may be called from any thread. Everything
 * else is the owner's fast path and must come from one thread at a time (the Worker that owns
 * the device); destroy must not race with the owner's calls.
 *
 * Errors are negative errno values. */
#ifndef MVN_MVNET_H
#define MVN_MVNET_H

#include <stdint.h>

/* Bits of mvn_dev_poll's result. */
#define MVN_EV_CONTROL 1u /* socket: a frontend connects, sends a message or hangs up */
#define MVN_EV_TX 2u      /* the guest sent frames (kick, or frames still pending) */
#define MVN_EV_RX 4u      /* the guest made receive buffers available (kick) */
#define MVN_EV_WAKE 8u    /* mvn_dev_wake was called */
#define MVN_EV_INBOUND 16u /* mvn_dev_notify was called */

/* Fields of mvn_dev_get / mvn_dev_set. */
enum mvn_dev_field {
	MVN_DEV_FEATURES,          /* acked virtio features (SET_FEATURES) */
	MVN_DEV_PROTOCOL_FEATURES, /* acked vhost-user protocol features */
	MVN_DEV_STATUS,            /* virtio device status (SET_STATUS) */
	MVN_DEV_OWNER,             /* SET_OWNER seen */
	MVN_DEV_MAC,               /* 48-bit MAC, first octet in the most significant byte */
	MVN_DEV_MTU,
	MVN_DEV_LINK_UP,
	MVN_DEV_CONNECTED,   /* read-only */
	MVN_DEV_MEM_REGIONS, /* read-only: regions mapped */
	MVN_DEV_ACTIVE,      /* set by the protocol handler: DRIVER_OK seen with rings ready */
	MVN_DEV_DIRECT_RX,   /* peers may deliver plain frames straight into the guest (direct.h) */
	MVN_DEV_FIELD_COUNT
};

/* Fields of mvn_vring_get. */
enum mvn_vring_field {
	MVN_VRING_NUM,
	MVN_VRING_LAST_AVAIL,
	MVN_VRING_STARTED,
	MVN_VRING_ENABLED,
	MVN_VRING_RESOLVED, /* the ring addresses translate through the memory table */
	MVN_VRING_READY,    /* moves packets now */
};

/* Which eventfd mvn_vring_set_fd sets. */
enum mvn_vring_fd { MVN_FD_KICK, MVN_FD_CALL, MVN_FD_ERR };

/* Creates a device listening on path (NUL-terminated; a stale socket there is removed).
 * mac as in MVN_DEV_MAC. Returns a handle > 0 or -errno. */
int32_t mvn_dev_create(const char *path, uint64_t mac, uint32_t mtu);
/* Closes everything, unmaps guest memory, removes the socket file. 0 or -ENOENT. */
int32_t mvn_dev_destroy(int32_t h);
/* 1 when h names a live device, else 0. */
int32_t mvn_dev_exists(int32_t h);
/* Makes a blocked (or the next) mvn_dev_poll return MVN_EV_WAKE. Any thread. */
int32_t mvn_dev_wake(int32_t h);
/* Makes a blocked (or the next) mvn_dev_poll return MVN_EV_INBOUND: frames were pushed into
 * the device's inbound ring. Any thread. Writes nothing while the owner runs between two
 * mvn_dev_poll_ring calls: it looks at the ring before it sleeps. */
int32_t mvn_dev_notify(int32_t h);
/* Waits up to timeout_ms (-1: forever) and returns the MVN_EV_* bits ready (0 on timeout). */
int32_t mvn_dev_poll(int32_t h, int32_t timeout_ms);
/* mvn_dev_poll for an owner that drains the device's inbound frame ring (ring_len bytes at
 * ring, fring.h) on every return: reports MVN_EV_INBOUND without waiting while a frame is
 * ready (held frames, see mvn_fwd_rx, once the guest added buffers), and until the next call
 * tells mvn_dev_notify that no event is needed. */
int32_t mvn_dev_poll_ring(int32_t h, int32_t timeout_ms, uint8_t *ring, uint32_t ring_len);

/* Accepts a waiting frontend: 1 accepted, 0 none waiting (or already connected), -errno. */
int32_t mvn_dev_accept(int32_t h);
/* Drops the frontend and every piece of state it set up; listens for the next one. */
int32_t mvn_dev_disconnect(int32_t h);
/* Receives one vhost-user message (header + payload) without blocking for its start.
 * fds: 9 int32 slots: [count, fd...]; the caller owns the fds received. Returns the message
 * length, 0 when none is waiting, -EPIPE when the frontend hung up, another -errno when the
 * message is malformed (the caller should then disconnect). */
int32_t mvn_dev_recv(int32_t h, uint8_t *buf, uint32_t cap, int32_t *fds);
/* Sends len bytes to the frontend / on the backend request channel. 0 or -errno. */
int32_t mvn_dev_send(int32_t h, const uint8_t *buf, uint32_t len);
int32_t mvn_dev_backend_send(int32_t h, const uint8_t *buf, uint32_t len);
/* Takes the backend request channel fd (SET_BACKEND_REQ_FD); -1 drops it. */
int32_t mvn_dev_set_backend_fd(int32_t h, int32_t fd);

uint64_t mvn_dev_get(int32_t h, int32_t field);
int32_t mvn_dev_set(int32_t h, int32_t field, uint64_t value);
/* Device reset (RESET_OWNER, RESET_DEVICE): rings stopped and unconfigured, status 0; memory,
 * connection, call/err eventfds and MVN_DEV_ACTIVE (the protocol handler's) kept. */
int32_t mvn_dev_reset(int32_t h);

/* Replaces the memory table with n regions of 32 bytes each (gpa, size, uva, mmap_offset, u64
 * little-endian) backed by fds[i]. Takes ownership of the n fds in every case. On failure the
 * old table stays. 0 or -errno. */
int32_t mvn_dev_mem_set(int32_t h, const uint8_t *regions, uint32_t n, const int32_t *fds);
/* Adds one region (32 bytes as above) backed by fd (taken). 0 or -errno. */
int32_t mvn_dev_mem_add(int32_t h, const uint8_t *region, int32_t fd);
/* Removes the region with this gpa and size. 0 or -ENOENT. */
int32_t mvn_dev_mem_remove(int32_t h, const uint8_t *region);
/* Highest number of regions a device maps. */
uint32_t mvn_mem_max_regions(void);

int32_t mvn_queue_set_num(int32_t h, uint32_t q, uint32_t num);
int32_t mvn_queue_set_addr(int32_t h, uint32_t q, uint64_t desc, uint64_t used, uint64_t avail);
int32_t mvn_queue_set_base(int32_t h, uint32_t q, uint32_t base);
/* Stops the ring (GET_VRING_BASE) and returns its next avail index, or -errno. */
int32_t mvn_queue_stop(int32_t h, uint32_t q);
/* Takes fd (-1: none; for KICK that means the frontend will not kick and the ring is polled)
 * and closes the fd it replaces. Setting KICK starts the ring. */
int32_t mvn_queue_set_fd(int32_t h, uint32_t q, int32_t which, int32_t fd);
int32_t mvn_queue_set_enable(int32_t h, uint32_t q, uint32_t enable);
uint64_t mvn_queue_get(int32_t h, uint32_t q, int32_t field);

/* Burst layout, both ways: per frame [u32 len][10 bytes of virtio-net header: flags u8,
 * gso_type u8, hdr_len u16, gso_size u16, csum_start u16, csum_offset u16, little-endian]
 * [len bytes of Ethernet frame]. The header carries the checksum and segmentation offloads.
 *
 * TX burst: frames the guest sent into out (cap bytes, at least 14 + MVN_MAX_FRAME), each with
 * the header the guest wrote (unchecked). Returns the number of frames or -errno. */
int32_t mvn_dev_tx_burst(int32_t h, uint8_t *out, uint32_t cap, uint32_t max);
/* RX burst: count frames (len bytes in all) to the guest, each with its header. Returns the
 * number delivered; the others are dropped and counted (rx_drop_offload: the header asks for an
 * offload the guest did not negotiate). */
int32_t mvn_dev_rx_burst(int32_t h, const uint8_t *in, uint32_t len, uint32_t count);
/* Copies up to n counters (enum mvn_counter order) into out; returns how many exist. */
int32_t mvn_dev_counters(int32_t h, uint64_t *out, uint32_t n);
/* Closes an fd received from the frontend that no handler took. */
int32_t mvn_fd_close(int32_t fd);

/* Forwarding fast path (fastpath.c). mvn_fwd_tx is mvn_dev_tx_burst, after which the frames
 * the table (layout in fastpath.c) routes to a peer are rewritten and pushed into the peer's
 * inbound frame ring (fring.h) and the peers woken (mvn_dev_notify), or delivered straight
 * into the peer's guest (direct.h); the other frames stay in out, in order and in the burst
 * layout. res (4 u32): [0] frames handed to peers, [1] frames a full peer ring refused
 * (dropped), [2] of [0], those delivered straight, [3] of [2], those copied once, from the
 * sender's buffers into the receiver's (mvn_vring_tx_gather). Takes at most 64 frames whatever
 * max says. Returns the frames left in out, or -errno. A table that does not parse leaves every
 * frame. */
int32_t mvn_fwd_tx(int32_t h, uint8_t *out, uint32_t cap, uint32_t max, const uint8_t *tbl,
		   uint32_t tbl_len, uint32_t *res);
/* Delivers up to max frames from the device's inbound frame ring (ring_len bytes at ring) to
 * the guest, as mvn_dev_rx_burst would. Stops at the first frame with offloads the guest did
 * not negotiate, and takes nothing while the receive queue is not up: MVN_FWD_RX_REST set in
 * the result, the rest of the ring is the caller's (to adapt, or to drop and count). A frame
 * the guest has no buffer for stays in the ring: MVN_FWD_RX_HELD set, the guest is asked to
 * kick when it adds buffers, and mvn_dev_poll_ring reports the ring again only then. Returns
 * the frames taken from the ring (delivered or dropped and counted) with those flags, -EINVAL
 * for a ring that does not parse, -ENOENT. */
#define MVN_FWD_RX_HELD 0x40000000
#define MVN_FWD_RX_REST 0x20000000
int32_t mvn_fwd_rx(int32_t h, uint8_t *ring, uint32_t ring_len, uint32_t max);

/* TUN device of public networks (tun.c). */
/* Opens (creating) the TUN device `name`, IFF_TUN | IFF_NO_PI, non-blocking. fd or -errno. */
int32_t mvn_tun_open(const char *name);
/* Waits for the TUN fd to be readable (bit 1) or the wake eventfd signalled (bit 2, drained). */
int32_t mvn_tun_wait(int32_t tun_fd, int32_t wake_fd, int32_t timeout_ms);
/* Reads up to max packets as [u32 len][bytes]... into out. Count or -errno. */
int32_t mvn_tun_read_burst(int32_t fd, uint8_t *out, uint32_t cap, uint32_t max);
/* Writes one IP packet. Bytes written or -errno. */
int32_t mvn_tun_write(int32_t fd, const uint8_t *buf, uint32_t len);
/* A non-blocking eventfd, and a signal on it (any thread). */
int32_t mvn_eventfd_new(void);
int32_t mvn_eventfd_signal(int32_t fd);

/* The address of the shim's function `name` (names starting "mvn_" only), or NULL (symbols.c). */
void *mvn_symbol(const char *name);

#endif
