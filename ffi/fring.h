/* The inbound frame ring of routing/ring.ts, from C: the same layout and the same lock-free
 * protocol (a bounded multi-producer single-consumer queue with a sequence number per slot), so
 * the shim's fast path (fastpath.c) and the TypeScript ends can share one ring. The comments
 * of routing/ring.ts describe the protocol; this file only mirrors it.
 *
 * Layout (int32 words): [0] tail, [1] head, per slot [seq, len], the byte area of
 * slots * slot_bytes (a record is MVN_META_SIZE bytes of metadata and the frame), and at the
 * very end [slots, slot_bytes]. */
#ifndef MVN_FRING_H
#define MVN_FRING_H

#include <stdbool.h>
#include <stdint.h>

struct mvn_fring {
	int32_t *ctl;
	uint8_t *data;
	uint32_t slots, slot_bytes;
};

/* Opens the ring in the len bytes at p; false when its geometry does not describe exactly
 * len bytes (then nothing may be read or written). */
bool mvn_fring_open(struct mvn_fring *r, uint8_t *p, uint64_t len);
/* Consumer: true when a record (a frame or a skip record) is ready at the head. */
bool mvn_fring_ready(const struct mvn_fring *r);
/* Producer: copies meta (MVN_META_SIZE bytes) and the frame in; false when the ring is full. */
bool mvn_fring_push(const struct mvn_fring *r, const uint8_t *meta, const uint8_t *frame,
		    uint32_t len);
/* Consumer: the next ready frame (skip records are consumed on the way); 1 with meta, frame
 * and len set, 0 when none is ready, -1 when the record at the head is inconsistent (left for
 * the TypeScript consumer, which then owns the ring). The frame stays valid until release. */
int mvn_fring_peek(const struct mvn_fring *r, const uint8_t **meta, const uint8_t **frame,
		   uint32_t *len);
/* Consumer: frees the frame peek returned. */
void mvn_fring_release(const struct mvn_fring *r, uint32_t len);

#endif
