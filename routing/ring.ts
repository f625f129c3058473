/**
 * A bounded, lock-free, multi-producer single-consumer frame ring in a SharedArrayBuffer: how
 * vNIC actors (one Worker each) hand routed frames to a destination vNIC without postMessage.
 *
 * Each slot carries a sequence number (D. Vyukov's bounded queue): a producer claims a slot
 * with one compare-and-swap on the tail and publishes it by storing the slot's sequence, the
 * consumer reads slots in order. A full ring refuses the frame: the caller counts it as a drop
 * at the destination, so a slow guest never stalls the sender.
 *
 * Layout (Int32 words): [0] tail (next position to claim), [1] head (next to read, consumer's
 * own), then per slot: [seq, len], and a separate byte area of `slots * slotBytes`.
 * @module
 */

const TAIL = 0;
const HEAD = 1;
const HEADER_WORDS = 2;
const SLOT_WORDS = 2;

/** One end of a frame ring; both ends are built over the same buffer. */
export class FrameRing {
  readonly slots: number;
  readonly slotBytes: number;
  #ctl: Int32Array;
  #data: Uint8Array;

  /** Allocates a ring of `slots` (a power of two) frames of at most `slotBytes` each. */
  static allocate(slots: number, slotBytes: number): SharedArrayBuffer {
    if (slots < 2 || (slots & (slots - 1)) !== 0) {
      throw new RangeError(`slots must be a power of two, got ${slots}`);
    }
    const ctlBytes = (HEADER_WORDS + slots * SLOT_WORDS) * 4;
    const sab = new SharedArrayBuffer(ctlBytes + slots * slotBytes + 8);
    const meta = new Int32Array(sab, sab.byteLength - 8, 2);
    meta[0] = slots;
    meta[1] = slotBytes;
    const ctl = new Int32Array(sab, 0, HEADER_WORDS + slots * SLOT_WORDS);
    for (let i = 0; i < slots; i++) ctl[HEADER_WORDS + i * SLOT_WORDS] = i;
    return sab;
  }

  /** Opens a ring made by {@link FrameRing.allocate}. */
  constructor(sab: SharedArrayBuffer) {
    const meta = new Int32Array(sab, sab.byteLength - 8, 2);
    this.slots = meta[0];
    this.slotBytes = meta[1];
    const ctlWords = HEADER_WORDS + this.slots * SLOT_WORDS;
    this.#ctl = new Int32Array(sab, 0, ctlWords);
    this.#data = new Uint8Array(sab, ctlWords * 4, this.slots * this.slotBytes);
  }

  /** Copies `frame` in; false when the ring is full or the frame larger than a slot. */
  push(frame: Uint8Array): boolean {
    if (frame.length > this.slotBytes) return false;
    const ctl = this.#ctl;
    const mask = this.slots - 1;
    for (let spins = 0; spins < 64; spins++) {
      const pos = Atomics.load(ctl, TAIL);
      const s = HEADER_WORDS + (pos & mask) * SLOT_WORDS;
      const dif = (Atomics.load(ctl, s) - pos) | 0;
      if (dif === 0) {
        if (Atomics.compareExchange(ctl, TAIL, pos, (pos + 1) | 0) !== pos) continue;
        this.#data.set(frame, (pos & mask) * this.slotBytes);
        ctl[s + 1] = frame.length;
        Atomics.store(ctl, s, (pos + 1) | 0);
        return true;
      }
      if (dif < 0) return false;
    }
    // Other producers kept winning the slot: treat as full rather than spin without bound.
    return false;
  }

  /**
   * Hands each ready frame (a view, valid only during the call) to `fn`, up to `max` frames,
   * and frees the slots. Consumer only. Returns the number of frames read.
   */
  drain(max: number, fn: (frame: Uint8Array) => void): number {
    const ctl = this.#ctl;
    const mask = this.slots - 1;
    let n = 0;
    while (n < max) {
      const pos = ctl[HEAD];
      const s = HEADER_WORDS + (pos & mask) * SLOT_WORDS;
      if (((Atomics.load(ctl, s) - ((pos + 1) | 0)) | 0) !== 0) break;
      const off = (pos & mask) * this.slotBytes;
      fn(this.#data.subarray(off, off + ctl[s + 1]));
      Atomics.store(ctl, s, (pos + this.slots) | 0);
      ctl[HEAD] = (pos + 1) | 0;
      n++;
    }
    return n;
  }
}
