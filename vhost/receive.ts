/**
 * The receive side of a vNIC with offloads: frames (each with its offload metadata) go into the
 * batch for the guest's RX ring in the form the guest negotiated. A GSO frame or a partial
 * checksum reaches a guest that accepted the matching GUEST_* feature as it is; for one that
 * did not, the checksum is completed or the segment cut in software (`routing/offload.ts`).
 * A full batch is delivered and reused, so a burst of large frames never overflows it.
 *
 * @example
 * ```ts
 * const rx = new GuestReceiver(dev, dev.frameBuffer(128), (why) => drops[why]++);
 * rx.begin();
 * ring.drain(64, (frame, meta) => rx.push(frame, meta));
 * rx.flush();
 * ```
 * @module
 */

import {
  adaptForReceiver,
  capsFromFeatures,
  hasOffload,
  MAX_SEGMENT,
  NO_CAPS,
  type OffloadCaps,
} from "../routing/offload.ts";
import type { FrameBatch } from "./frame_batch.ts";
import type { VhostNetDevice } from "./device.ts";

/** Frames for one guest, adapted to its offloads and delivered in batches. */
export class GuestReceiver {
  #caps: OffloadCaps = NO_CAPS;
  #features = -1n;
  readonly #scratch = new Uint8Array(MAX_SEGMENT);
  readonly #sink = (meta: Uint8Array, frame: Uint8Array): boolean => {
    if (!this.out.fits(frame.length)) this.flush();
    return this.out.push(frame, meta);
  };

  /** `onDrop` counts a frame that could not be delivered, by reason. */
  constructor(
    readonly dev: VhostNetDevice,
    readonly out: FrameBatch,
    private readonly onDrop: (reason: string) => void,
  ) {}

  /** Starts a loop iteration: an empty batch and the offloads the driver negotiated now (a
   * driver renegotiates on reset). */
  begin(): void {
    this.out.clear();
    const f = this.dev.features;
    if (f !== this.#features) {
      this.#features = f;
      this.#caps = capsFromFeatures(f);
    }
  }

  /** Queues a frame (with its metadata, none for a plain frame) for the guest. False when it
   * was dropped (and counted). */
  push(frame: Uint8Array, meta?: Uint8Array): boolean {
    if (!meta || !hasOffload(meta)) return this.#sink(meta ?? NO_META, frame);
    const r = adaptForReceiver(this.#caps, meta, frame, this.#sink, this.#scratch);
    if (r.kind !== "dropped") return true;
    this.onDrop(r.reason);
    return false;
  }

  /** Delivers what is queued. */
  flush(): void {
    if (this.out.count > 0) this.dev.sendBurst(this.out);
    this.out.clear();
  }
}

const NO_META = new Uint8Array(10);
