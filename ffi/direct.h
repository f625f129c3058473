/* Direct delivery: a peer's thread writes frames straight into a device's guest receive ring,
 * under the device's receive lock (device.c), instead of through its inbound frame ring and its
 * owner's loop. The fast path (fastpath.c) uses it for plain frames when the device allows it
 * (MVN_DEV_DIRECT_RX: its owner applies no filter on receive) and its inbound ring is empty, so
 * that frames of one sender keep their order. */
#ifndef MVN_DIRECT_H
#define MVN_DIRECT_H

#include <stdbool.h>
#include <stdint.h>

#include "vring.h"

struct mvn_dev;

struct mvn_direct {
	struct mvn_dev *dev; /* NULL: not begun */
	struct mvn_vring_env env;
	struct mvn_rx_batch batch;
};

/* Takes device h's receive lock without waiting; false (nothing held) when the device is gone,
 * busy, does not allow direct delivery, or its receive ring is not ready. */
bool mvn_direct_begin(struct mvn_direct *x, int32_t h);
/* True when the guest takes the frame's offloads as they are (else its owner must adapt it). */
bool mvn_direct_accepts(const struct mvn_direct *x, const uint8_t *meta);
/* Delivers one frame (MVN_META_SIZE bytes of metadata before it) as mvn_dev_rx_burst would,
 * true when it was taken (delivered, or dropped and counted on the device); false, and nothing
 * taken, when the guest has no buffer for it: the caller ends the delivery and queues it in the
 * device's inbound ring, where its owner keeps it until the guest adds buffers. */
bool mvn_direct_put(struct mvn_direct *x, const uint8_t *meta, const uint8_t *frame,
		    uint32_t len);
/* As mvn_direct_put for a frame in two places (mvn_vring_tx_gather). */
bool mvn_direct_put_src(struct mvn_direct *x, const uint8_t *meta,
			const struct mvn_frame_src *fs, uint32_t len);
/* Publishes what was delivered, signals the guest, releases the lock. */
void mvn_direct_end(struct mvn_direct *x);

/* The sending side of the fast path: mvn_dev_tx_burst of device h through
 * mvn_vring_tx_gather (vring.h), with src (max entries, or NULL: mvn_dev_tx_burst is that and
 * the release). The guest gets the chains back only at
 * mvn_dev_tx_release(h, *held), which the caller must call, on the same thread, before anything
 * else uses the device (*held is -1 when nothing is held). */
int32_t mvn_dev_tx_gather(int32_t h, uint8_t *out, uint32_t cap, uint32_t max,
			  struct mvn_frame_src *src, int32_t *held);
void mvn_dev_tx_release(int32_t h, int32_t held);

#endif
