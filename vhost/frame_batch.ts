/**
 * A batch of Ethernet frames in one reusable buffer, laid out as the shim's burst calls take
 * and produce them: `[u32 length, little-endian][10 bytes of metadata][bytes]...`. The metadata
 * is the frame's virtio-net header without num_buffers (checksum and segmentation offloads,
 * see `routing/offload.ts`). One batch is allocated per loop, not per packet.
 *
 * @example
 * ```ts
 * const batch = new FrameBatch(64);
 * batch.push(new Uint8Array(60));
 * batch.frame(0).length; // 60
 * batch.meta(0); // 10 zero bytes: no offload
 * ```
 * @module
 */

import { MAX_FRAME, META_SIZE } from "../ffi/binding.ts";

/** Default buffer size: 64 full-size Ethernet frames, and always room for one of MAX_FRAME. */
const DEFAULT_BYTES = 256 * 1024;
/** Bytes in front of each frame: its length and its metadata. */
const RECORD_HEADER = 4 + META_SIZE;

/** Frames in one buffer; {@link offsets} and {@link lengths} index them without copies. */
export class FrameBatch {
  /** The raw buffer handed to the shim. */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** Where frame i's bytes start in {@link bytes} (its metadata is the 10 bytes before). */
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
    this.bytes = new Uint8Array(Math.max(bytes, RECORD_HEADER + MAX_FRAME));
    this.view = new DataView(this.bytes.buffer);
    this.offsets = new Uint32Array(capacity);
    this.lengths = new Uint32Array(capacity);
  }

  /** Empties the batch. */
  clear(): void {
    this.count = 0;
    this.used = 0;
  }

  /** True when a frame of `length` bytes still fits. */
  fits(length: number): boolean {
    return this.count < this.capacity && this.bytes.length - this.used >= RECORD_HEADER + length;
  }

  /** Appends a frame with its metadata (none: no offload); false when the batch is full. */
  push(frame: Uint8Array, meta?: Uint8Array): boolean {
    if (!this.fits(frame.length)) return false;
    const bytes = this.bytes;
    const at = this.used + 4;
    this.view.setUint32(this.used, frame.length, true);
    // Ten bytes: a loop is cheaper than a subarray and a set() or fill().
    if (meta) { for (let i = 0; i < META_SIZE; i++) bytes[at + i] = meta[i]; }
    else for (let i = 0; i < META_SIZE; i++) bytes[at + i] = 0;
    bytes.set(frame, this.used + RECORD_HEADER);
    this.offsets[this.count] = this.used + RECORD_HEADER;
    this.lengths[this.count] = frame.length;
    this.count++;
    this.used += RECORD_HEADER + frame.length;
    return true;
  }

  /** Indexes `count` frames the shim wrote into {@link bytes}. */
  index(count: number): void {
    let off = 0;
    for (let i = 0; i < count; i++) {
      const len = this.view.getUint32(off, true);
      this.offsets[i] = off + RECORD_HEADER;
      this.lengths[i] = len;
      off += RECORD_HEADER + len;
    }
    this.count = count;
    this.used = off;
  }

  /** Frame i as a view into the buffer (valid until the batch is reused). */
  frame(i: number): Uint8Array {
    return this.bytes.subarray(this.offsets[i], this.offsets[i] + this.lengths[i]);
  }

  /** Copies frame i's metadata into `out` (at least 10 bytes) and returns it: on a per-frame
   * path a 10-byte copy is cheaper than the view {@link meta} makes. */
  copyMeta(i: number, out: Uint8Array): Uint8Array {
    const bytes = this.bytes;
    const at = this.offsets[i] - META_SIZE;
    for (let k = 0; k < META_SIZE; k++) out[k] = bytes[at + k];
    return out;
  }

  /** Frame i's metadata (the virtio-net header without num_buffers) as a writable view. */
  meta(i: number): Uint8Array {
    return this.bytes.subarray(this.offsets[i] - META_SIZE, this.offsets[i]);
  }
}
