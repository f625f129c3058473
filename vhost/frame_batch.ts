/**
 * A batch of Ethernet frames in one reusable buffer, laid out as the shim's burst calls take
 * and produce them: `[u32 length, little-endian][bytes]...`. One batch is allocated per loop,
 * not per packet.
 *
 * @example
 * ```ts
 * const batch = new FrameBatch(64);
 * batch.push(new Uint8Array(60));
 * batch.frame(0).length; // 60
 * ```
 * @module
 */

import { MAX_FRAME } from "../ffi/binding.ts";

/** Default buffer size: 64 full-size Ethernet frames, and always room for one of MAX_FRAME. */
const DEFAULT_BYTES = 256 * 1024;

/** Frames in one buffer; {@link offsets} and {@link lengths} index them without copies. */
export class FrameBatch {
  /** The raw buffer handed to the shim. */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** Where frame i's bytes start in {@link bytes}. */
  readonly offsets: Uint32Array;
  /** Frame i's length. */
  readonly lengths: Uint32Array;
  /** Frames in the batch. */
  count = 0;
  /** Bytes of {@link bytes} in use. */
  used = 0;
  private readonly view: DataView;

  /** A batch of up to `capacity` frames in `bytes` bytes (at least one maximal frame). */
  constructor(readonly capacity: number, bytes = DEFAULT_BYTES) {
    this.bytes = new Uint8Array(Math.max(bytes, 4 + MAX_FRAME));
    this.view = new DataView(this.bytes.buffer);
    this.offsets = new Uint32Array(capacity);
    this.lengths = new Uint32Array(capacity);
  }

  /** Empties the batch. */
  clear(): void {
    this.count = 0;
    this.used = 0;
  }

  /** Appends a frame; false when the batch is full. */
  push(frame: Uint8Array): boolean {
    if (this.count >= this.capacity || this.bytes.length - this.used < 4 + frame.length) {
      return false;
    }
    this.view.setUint32(this.used, frame.length, true);
    this.bytes.set(frame, this.used + 4);
    this.offsets[this.count] = this.used + 4;
    this.lengths[this.count] = frame.length;
    this.count++;
    this.used += 4 + frame.length;
    return true;
  }

  /** Indexes `count` frames the shim wrote into {@link bytes}. */
  index(count: number): void {
    let off = 0;
    for (let i = 0; i < count; i++) {
      const len = this.view.getUint32(off, true);
      this.offsets[i] = off + 4;
      this.lengths[i] = len;
      off += 4 + len;
    }
    this.count = count;
    this.used = off;
  }

  /** Frame i as a view into the buffer (valid until the batch is reused). */
  frame(i: number): Uint8Array {
    return this.bytes.subarray(this.offsets[i], this.offsets[i] + this.lengths[i]);
  }
}
